/*
 * vk_internal.h: what the Vulkan backend's files share. Layers, bottom up:
 *   limits.c   limits specs (profiles and overrides)
 *   device.c   instance, physical-device capabilities, device creation
 *   memory.c   segments, buffers, staging transfers, the host-weight cache
 *   pipeline.c shader modules, pipelines, the persistent pipeline cache
 *   ops.c, ops_matmul.c, ops_util.c (ops_impl.h)
 *              per-op planning: shader variant, bindings, dispatches
 *   graph.c    plans (recorded command buffers), barriers, execution
 *   shared_device.c  the device shared by the backends of one model
 *   backend.c  the be_iface and the entry points of vk_backend.h
 */
#ifndef ELM_VK_INTERNAL_H
#define ELM_VK_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <vulkan/vulkan.h>

#include "backends/backend.h"
#include "backends/vulkan/spirv.h"
#include "backends/vulkan/vk_backend.h"
#include "common/status.h"

#define VK_ERR_LEN 512

/* ------------------------------------------------------------------ limits */

/* Caps a limits spec puts on a device; 0 / false: unchanged. */
typedef struct vk_limits {
    uint64_t max_shared, max_invocations, max_range, max_alloc;
    /* tuning choices, not caps (0: the planner's default): mat-vec rows per
     * lane group, lanes per row (1: a lane per row, else the workgroup) */
    uint64_t mv_rows, mv_lanes, mv_tokens;
    bool no_fp16, no_storage16, no_storage8, no_subgroup, no_uma;
    bool no_import; /* never import host memory (VK_EXT_external_memory_host) */
    bool no_fuse;   /* plan every node on its own (fuse.c off) */
    bool fuse;      /* on a CPU device, fuse every type, not just into texel kernels */
    bool no_idot;   /* no shaderIntegerDotProduct */
    bool idot;      /* tuning, not a cap: integer-dot mat-vecs even where not accelerated */
    bool no_vtiles; /* flash attention reads V from the cache, no F16 tiles */
    bool no_repack; /* copied weights keep the file layout (memory.c) */
    bool mm_f16;    /* tuning: F16 products in mat-mat tiles on a CPU device too */
    bool no_mm_f16; /* mat-mat tiles multiply in F32 (F16 only staged) */
    bool tex;       /* tuning: mat-vecs read through texel buffers on a GPU too */
    bool no_tex;    /* mat-vecs read storage buffers only */
    uint64_t max_storage_buffers; /* storage buffers one dispatch may bind */
} vk_limits;

/* Parses a limits spec (NULL or "" is no limit). */
elm_status elmi_vk_limits_parse(const char *spec, vk_limits *out, char *err, size_t err_size);
/* The spec of the environment: EDGELM_VK_LIMITS plus EDGELM_VK_MAX_*. */
elm_status elmi_vk_limits_from_env(vk_limits *out, char *err, size_t err_size);

/* ------------------------------------------------------------------ device */

/* What the backend plans with: the device's capabilities, limits applied. */
typedef struct vk_caps {
    uint32_t api_version;
    VkPhysicalDeviceType type;
    uint32_t vendor_id, device_id;
    uint8_t cache_uuid[VK_UUID_SIZE];
    uint32_t max_shared, max_invocations;
    uint32_t max_wg_size[3], max_wg_count[3];
    uint32_t subgroup_size, min_subgroup_size;
    uint32_t mv_rows, mv_lanes, mv_tokens; /* vk_limits' mat-vec tuning; 0: the planner's default */
    /* VK_EXT_subgroup_size_control (or 1.3) for compute: a pipeline may
     * require any power-of-two size in [min_subgroup_size, max_subgroup_size] */
    bool sg_control, ext_sg_control; /* ext_: enabled as an extension (before 1.3) */
    uint32_t max_subgroup_size;
    bool subgroup_arith; /* basic + arithmetic in compute shaders */
    bool subgroup_shuffle; /* and shuffles */
    bool fp16, storage16, storage8, int_dot;
    bool int_dot_accel; /* integerDotProduct4x8BitPackedSignedAccelerated */
    bool ext_int_dot;   /* int_dot through VK_KHR_shader_integer_dot_product (before 1.3) */
    /* fast mat-vecs of the int-dot types quantize activations to 8 bits
     * (int_dot, and accelerated or forced by the idot profile) */
    bool mv_idot;
    /* fast mat-mats of Q4_0 and Q8_0 take integer-dot tiles (as mv_idot) */
    bool mm_idot;
    /* fast mat-mat tiles multiply staged halves in F16 (fp16 and 16-bit
     * storage; on GPUs, or forced by mm_f16; never under nomm_f16) */
    bool mm_f16;
    /* mat-vecs may read weights and activations through uniform texel
     * buffers (RGBA32 formats, VK_BIND_TEX_*): on CPU devices, or forced by
     * the tex profile; never under notex. max_texel: maxTexelBufferElements,
     * texel_align: minTexelBufferOffsetAlignment */
    bool mv_tex;
    uint64_t max_texel, texel_align;
    uint64_t max_range, max_alloc;
    uint64_t offset_align; /* minStorageBufferOffsetAlignment, at least 4 */
    uint32_t max_push;
    /* storage buffers a compute stage may bind, and the data slots the
     * backend's layout has (VK_N_BIND when that allows, else VK_N_BIND_CORE) */
    uint32_t max_storage_buffers, n_slots;
    bool fuse; /* fuse.c may merge nodes into one dispatch */
    bool fuse_texel_only; /* ...but mat-vecs only into the texel kernels */
    bool fa_vtiles; /* flash attention may stage F16 V tiles (vk_limits' novtiles: not) */
    bool repack;    /* copied Q4_0/Q8_0/Q6_K weights take the split layout (memory.c) */
    float timestamp_period;   /* nanoseconds per timestamp tick */
    uint32_t timestamp_bits;  /* valid bits of the chosen queue's timestamps; 0: none */
    bool uma;
    /* extensions the device offers that the backend may enable */
    bool ext_f16i8, ext_budget, ext_portability;
    bool ext_host_import; /* VK_EXT_external_memory_host (import.c) */
} vk_caps;

typedef struct vk_instance {
    VkInstance inst;
    VkDebugUtilsMessengerEXT messenger;
    bool validation;
    uint32_t api_version;
} vk_instance;

/* Creates an instance; `validation` asks for the Khronos layer and a
 * messenger that counts errors into *error_count (may be NULL when off).
 * A missing loader or driver gives ELM_ERR_UNSUPPORTED; a failed host
 * allocation ELM_ERR_NO_MEMORY. */
elm_status elmi_vk_instance_create(bool validation, bool quiet, _Atomic uint64_t *error_count,
                              vk_instance *out, char *err, size_t err_size);
void elmi_vk_instance_destroy(vk_instance *vi);

/* The physical devices of an instance (an array from elmi_malloc). */
elm_status elmi_vk_physical_devices(VkInstance inst, VkPhysicalDevice **out, uint32_t *n);

/* Capabilities and the listing entry of device `index`, limits applied.
 * ELM_ERR_NO_MEMORY when the extension list cannot be allocated. */
elm_status elmi_vk_query_device(VkPhysicalDevice pd, int index, const vk_limits *lim, vk_caps *caps,
                           elm_device_info *info);

/* ------------------------------------------------------------------ memory */

/* One VkBuffer bound to its own memory. */
typedef struct vk_seg {
    VkBuffer buf;
    VkDeviceMemory mem;
    VkDeviceSize size;
    void *map;   /* host address when the backend maps it, else NULL */
    uint32_t id; /* unique per backend, for dependency tracking */
    VkDeviceSize base; /* byte of buf where the content starts: 0, or the
                          alignment slack before imported host memory */
    bool imported;     /* mem is imported host memory (import.c): never
                          written, not counted in device_bytes */
} vk_seg;

/* A backend buffer: segments of at most seg_size bytes (the allocation
 * limit), so a tensor lies in one segment unless it straddles a boundary. */
struct be_buffer {
    vk_seg *segs;
    uint32_t n_segs;
    size_t size;
    VkDeviceSize seg_size;
    void *host; /* one mapped segment: its address */
    struct be_buffer *prev, *next;
};

/* A host tensor's device copy, split by rows into pieces that each fit the
 * allocation and binding limits. Piece i holds rows [row0[i], row0[i+1]). */
typedef struct vk_weight {
    const void *data;
    size_t bytes, row_bytes;
    int64_t n_rows;
    uint32_t n_pieces;
    vk_seg *pieces;
    int64_t *row0; /* n_pieces + 1 entries */
    bool imported; /* the pieces import the host memory instead of copying it */
    int type;        /* the tensor's type (BE_TYPE_*) */
    bool dense_rows; /* row_bytes is exactly one row of blocks, no padding */
    /* Rows in the split layout (elmi_vk_split_layout): every block's fp16
     * scale d moves to the end of its row, the rest of the blocks stay in
     * order before it, so quants start 4-byte aligned. Copies only:
     * imported weights keep the file layout. */
    bool split;
} vk_weight;

/* Small writes to unmapped memory, carried by the next submission (ring.c). */
#define VK_RING_MAX_WRITE 4096
#define VK_RING_MAX_PENDING 32

typedef struct vk_ring_copy {
    VkBuffer dst;
    VkBufferCopy region; /* srcOffset: in the ring */
} vk_ring_copy;

typedef struct vk_ring {
    vk_seg seg;          /* host-visible, mapped; allocated on first use */
    VkCommandBuffer cmd; /* the pending copies, recorded at the next submission */
    vk_ring_copy pending[VK_RING_MAX_PENDING];
    uint32_t n_pending;
    VkDeviceSize used;   /* ring bytes the pending copies hold */
} vk_ring;

/* ---------------------------------------------------------------- pipeline */

#define VK_MAX_SPEC 9

typedef struct vk_pipe {
    const elmi_spv *spv;
    uint32_t spec[VK_MAX_SPEC];
    uint32_t n_spec;
    uint32_t subgroup; /* required subgroup size, 0: the driver's choice */
    VkPipeline pipe;
} vk_pipe;

typedef struct vk_module {
    const elmi_spv *spv;
    VkShaderModule mod;
} vk_module;

/* ------------------------------------------------------------------- plans */

/* Data slots of a dispatch: slots 0..3 are bindings 0..3 (src0, src1, src2,
 * dst of a plain op); binding 4 is the per-call values; slots 4..10 are
 * bindings 5..11, used only by fused dispatches (fuse.c) on devices whose
 * descriptor limits allow 12 storage buffers (vk_caps.n_slots). */
#define VK_N_BIND 11
#define VK_N_BIND_CORE 4
#define VK_BIND_DYN 4
/* Uniform texel buffers of the _tex mat-vec variants (caps.mv_tex only):
 * slot 0's bytes as RGBA32UI texels and as R32UI words, slot 1's floats
 * as RGBA32F texels; the fused ones (12-binding layout) also view slots 4
 * and 5 (matrices 1 and 2) as the weights, and slot 2 (norm weights) as
 * RGBA32F. A dispatch writes the first vk_disp.tex of them. */
#define VK_BIND_TEX_W 12
#define VK_BIND_TEX_X 13
#define VK_BIND_TEX_W1 14
#define VK_BIND_TEX_M1 15
#define VK_BIND_TEX_M1W 16
#define VK_BIND_TEX_M2 17
#define VK_BIND_TEX_M2W 18
#define VK_BIND_TEX_NW 19
#define VK_N_TEX 3
#define VK_N_TEX_FUSED 8
/* Usage every data buffer gets so that texel views of it are valid. */
static inline VkBufferUsageFlags elmi_vk_texel_usage(const vk_caps *c) {
    return c->mv_tex ? VK_BUFFER_USAGE_UNIFORM_TEXEL_BUFFER_BIT : 0;
}
static inline uint32_t elmi_vk_slot_binding(uint32_t slot) {
    return slot < VK_N_BIND_CORE ? slot : slot + 1;
}
#define VK_PC_WORDS 32   /* 128 bytes of push constants, the guaranteed minimum */
#define VK_MAX_PLANS 64

typedef struct vk_bind {
    VkBuffer buf;
    VkDeviceSize offset, range;
    uint32_t seg_id; /* 0: the dummy buffer */
    /* range rounded up to whole 16-byte texels where the buffer has the
     * room, else 0 (no texel view of this window) */
    VkDeviceSize tex_range;
} vk_bind;

typedef struct vk_disp {
    VkPipeline pipe;
    vk_bind b[VK_N_BIND];
    uint16_t written; /* bit i: slot i is written */
    uint8_t tex;      /* texel views at VK_BIND_TEX_*: 0, VK_N_TEX or VK_N_TEX_FUSED */
    uint32_t pc[VK_PC_WORDS];
    uint32_t groups[3];
    VkDescriptorSet set;
    uint8_t op;      /* the be_op of its node (profiling) */
    bool barrier;    /* a dependency barrier is recorded before it */
} vk_disp;

/* A run of dispatches, one command buffer. */
typedef struct vk_step {
    uint32_t d0, d1;  /* dispatches [d0, d1) */
    uint32_t q0;      /* profiled step: timestamp queries [q0, q0 + d1 - d0] */
    VkCommandBuffer cmd;
} vk_step;

typedef struct vk_plan {
    uint8_t *key;
    size_t key_len;
    uint64_t hash, last_use;
    vk_disp *disp;
    uint32_t n_disp, cap_disp;
    vk_step *steps;
    uint32_t n_steps, cap_steps;
    int *dyn_node; /* node whose iparams[0] fills per-call slot i */
    uint32_t n_dyn, cap_dyn;
    vk_seg dyn;    /* host-visible int32 slots, rewritten before each run */
    vk_seg *scratch; /* device-local intermediates of nodes (split attention), owned */
    uint32_t n_scratch;
    VkDescriptorPool pool;
    VkBufferView *views; /* texel views of the dispatches' sets, owned */
    uint32_t n_views;
    int n_nodes;
    uint32_t n_fused; /* nodes planned inside fused groups (fuse.h) */
    /* profiling (profile.c): a timestamp before each step's first dispatch
     * and after each dispatch; VK_NULL_HANDLE when the plan is not profiled
     * or the queue has no timestamps */
    bool profiled;
    VkQueryPool qpool;
    /* submit splitting: GPU steps hold at most max_disp dispatches (0: no
     * limit); resplit: a submit ran over the bound, re-record before the
     * next run */
    uint32_t max_disp;
    bool resplit;
} vk_plan;

/* ------------------------------------------------------------------ device */

/*
 * One opened device, shared by every backend created on it (the contexts of
 * one model): the instance, the VkDevice and its queue, the pipelines and
 * the device copies of host tensors. A backend owns only its buffers, its
 * recorded plans, its command pool and its staging memory. Reference
 * counted: the opener holds one reference and each backend one more.
 * `lock` (recursive) guards the pipelines, the weight cache and the import
 * probe; `queue_lock` guards vkQueueSubmit and vkQueueWaitIdle, which need
 * external synchronization of the one VkQueue.
 */
struct be_device {
    _Atomic int refs;
    pthread_mutex_t lock, queue_lock;
    vk_instance vi;
    VkPhysicalDevice phys;
    VkDevice dev;
    VkQueue queue;
    uint32_t queue_family;
    int index;
    vk_caps caps;
    elm_device_info info;
    VkPhysicalDeviceMemoryProperties mem_props;
    bool quiet;
    atomic_bool lost;
    _Atomic uint64_t validation_errors;
    _Atomic uint32_t next_seg_id;

    /* pipelines */
    VkDescriptorSetLayout dsl;
    VkPipelineLayout layout;
    VkPipelineCache pcache;
    vk_module *modules;
    uint32_t n_modules, cap_modules;
    vk_pipe *pipes;
    uint32_t n_pipes, cap_pipes;

    /* host-tensor copies; pointers, so a cached weight never moves */
    vk_weight **weights;
    uint32_t n_weights, cap_weights;
    uint64_t weight_device_bytes; /* device memory the copies hold */

    /* pipeline and weight counters (the shared fields of be_vk_stats) */
    be_vk_stats stats;

    /* import.c: VK_EXT_external_memory_host, probed on first use */
    struct {
        bool probed, usable;
        VkDeviceSize align; /* minImportedHostPointerAlignment */
        VkExternalMemoryHandleTypeFlagBits types[2];
        uint32_t n_types;
        PFN_vkGetMemoryHostPointerPropertiesEXT get_props;
    } import;
};
typedef struct be_device vk_device;

/* ----------------------------------------------------------------- backend */

typedef struct vk_backend {
    be_backend be;
    vk_device *d; /* shared; this backend holds one reference */
    /* copies of d's immutable fields, for brevity */
    VkPhysicalDevice phys;
    VkDevice dev;
    VkQueue queue;
    uint32_t queue_family;
    int index;
    vk_caps caps;
    elm_device_info info;
    VkPhysicalDeviceMemoryProperties mem_props;
    bool quiet, lost;

    /* memory */
    be_buffer *buffers;
    vk_seg staging, dummy;
    uint64_t device_bytes; /* buffers, staging and dummy of this backend */
    VkCommandPool cmd_pool;
    VkCommandBuffer xfer_cmd;
    VkFence fence;
    vk_ring ring;

    /* graphs */
    vk_plan *plans[VK_MAX_PLANS];
    uint64_t clock;

    /* Fault injection (EDGELM_VK_FAULT_AFTER): of the queue submissions
     * made while running graphs (in_graph), the first fault_after succeed
     * and the next reports VK_ERROR_DEVICE_LOST; -1: off. */
    int64_t fault_after;
    uint64_t n_graph_submits;
    bool in_graph;

    /* Profiling (profile.c): on, and the figures since the last read. */
    bool prof_on;
    be_profile prof;
    /* Submit bound (EDGELM_VK_SUBMIT_MS, default 100): a graph submit whose
     * device time exceeds it makes its plan split later runs; <= 0: never. */
    double submit_ms;
    /* Fault injection (EDGELM_VK_FAULT_OP): results of nodes of this op are
     * corrupted after each graph; -1: off. */
    int fault_op;

    be_stats stats;
    be_vk_stats vstats; /* this backend's graph counters */
    char last_error[VK_ERR_LEN];
    char why[VK_ERR_LEN]; /* why the last supports_op said no */
} vk_backend;

/* Whether this backend's device was lost (here or through another backend). */
static inline bool elmi_vk_lost(const vk_backend *vk) {
    return vk->lost || atomic_load(&vk->d->lost);
}

static inline vk_backend *vk_of(be_backend *be) {
    return (vk_backend *)be->impl;
}

/* Formats into vk->last_error and returns st. */
elm_status elmi_vk_fail(vk_backend *vk, elm_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* ELM_ERR_DEVICE for lost devices, ELM_ERR_NO_MEMORY for exhausted memory,
 * else ELM_ERR_DEVICE; records `what` and the VkResult. Marks the device
 * lost on VK_ERROR_DEVICE_LOST. */
elm_status elmi_vk_check(vk_backend *vk, VkResult r, const char *what);
const char *elmi_vk_result_name(VkResult r);
/* Copies vk->last_error into err. */
void elmi_vk_copy_error(const vk_backend *vk, char *err, size_t err_size);

/* device.c */
elm_status elmi_vk_device_open(vk_backend *vk, int index, const vk_limits *lim, char *err,
                          size_t err_size);
/* shared_device.c: vk takes a reference on d and copies its fields. */
void elmi_vk_backend_attach(vk_backend *vk, vk_device *d);
/* Waits until the shared queue is idle. */
void elmi_vk_wait_idle(vk_backend *vk);
/* backend.c: the index "vulkan" selects (-1: no device). */
elm_status elmi_vk_default_index(int *index);

/* memory.c */
elm_status elmi_vk_memory_init(vk_backend *vk);
void elmi_vk_memory_free(vk_backend *vk);
/* A segment of `size` bytes; host_visible asks for host-visible coherent
 * memory (mapped), else device memory (mapped only on UMA devices). */
elm_status elmi_vk_seg_alloc(vk_backend *vk, VkDeviceSize size, bool host_visible, vk_seg *out);
void elmi_vk_seg_free(vk_backend *vk, vk_seg *s);
elm_status elmi_vk_buffer_alloc(vk_backend *vk, size_t size, void *host_ptr, be_buffer **out);
void elmi_vk_buffer_free(vk_backend *vk, be_buffer *b);
bool elmi_vk_owns_buffer(const vk_backend *vk, const be_buffer *b);
/* Copies between host memory and bytes [offset, offset + size) of a segment. */
elm_status elmi_vk_seg_write(vk_backend *vk, const vk_seg *s, VkDeviceSize offset, const void *src,
                        size_t size);
elm_status elmi_vk_seg_read(vk_backend *vk, const vk_seg *s, VkDeviceSize offset, void *dst,
                       size_t size);
/* The same over a buffer's bytes, across segments. */
elm_status elmi_vk_buffer_write(vk_backend *vk, be_buffer *b, size_t offset, const void *src,
                           size_t size);
elm_status elmi_vk_buffer_read(vk_backend *vk, be_buffer *b, size_t offset, void *dst, size_t size);
/* The cached device copy of a host tensor, uploading it on first use. */
elm_status elmi_vk_weight_get(vk_backend *vk, const be_tensor *t, const vk_weight **out);
/* Frees every cached host-tensor copy (plans that bind them must be gone). */
void elmi_vk_weights_clear(vk_backend *vk);
/* Rows per piece a host tensor of this geometry would be split into. */
int64_t elmi_vk_weight_rows_per_piece(const vk_backend *vk, size_t row_bytes);
/* import.c: makes every piece of w (geometry set, no segment yet) import
 * its host rows in place; false (nothing allocated) when the device
 * cannot, and the caller copies instead. */
bool elmi_vk_weight_import(vk_backend *vk, vk_weight *w);
/* ring.c. elmi_vk_ring_write: true when the write of an unmapped segment
 * was deferred (small enough, room left); false: the caller stages it. */
bool elmi_vk_ring_write(vk_backend *vk, const vk_seg *s, VkDeviceSize offset, const void *src, size_t size);
/* The pending copies recorded into the ring's command buffer (*out), or
 * VK_NULL_HANDLE when none is pending. */
elm_status elmi_vk_ring_record(vk_backend *vk, VkCommandBuffer *out);
/* The submission carrying the copies has completed: the ring is free. */
void elmi_vk_ring_done(vk_backend *vk);
/* Submits the pending copies on their own, and waits. */
elm_status elmi_vk_ring_flush(vk_backend *vk);
/* Flushes when a pending copy writes buf (about to be destroyed). */
void elmi_vk_ring_release(vk_backend *vk, VkBuffer buf);
void elmi_vk_ring_free(vk_backend *vk);
/* Submits cmd (VK_NULL_HANDLE: none) after the ring's pending copies, and
 * waits. */
elm_status elmi_vk_submit_wait(vk_backend *vk, VkCommandBuffer cmd, const char *what);
/* Device-side copy between two buffers, timed (elmi_be_vk_copy_buffer). */
elm_status elmi_vk_buffer_copy_timed(vk_backend *vk, be_buffer *dst, be_buffer *src, size_t size,
                                uint32_t reps, double *ms);

/* pipeline.c */
elm_status elmi_vk_pipeline_init(vk_backend *vk, const char *cache_dir);
void elmi_vk_pipeline_free(vk_backend *vk); /* saves the cache file */
/* The pipeline of module `name` with these specialization constants;
 * subgroup: the subgroup size it must run with (caps.sg_control), 0: any. */
elm_status elmi_vk_pipeline_get(vk_backend *vk, const char *name, const uint32_t *spec,
                           uint32_t n_spec, uint32_t subgroup, VkPipeline *out);

/* ops.c: planning of one node. */
typedef struct vk_planner {
    vk_backend *vk;
    vk_plan *plan;  /* NULL: only decide whether the node can run */
    bool exact;
    int node_index;
    int label;      /* fused groups: 1 + the op their dispatches count as in profiles (0: node i's) */
    char why[160];  /* why a node cannot run on the device */
} vk_planner;

/* ELM_OK: the node's dispatches were appended (or would be). Unsupported:
 * the device cannot run it (fallback; p->why says why). Invalid: the node
 * itself is malformed. */
elm_status elmi_vk_plan_node(vk_planner *p, const be_node *node);
/* Bytes from element 0 to the end of the last row; false when malformed. */
bool elmi_vk_tensor_extent(const be_tensor *t, VkDeviceSize *out);
/* True when iparams[0] of the node is a per-call value (a cache position:
 * KV_STORE, ATTENTION, SHORTCONV). */
bool elmi_vk_node_has_dyn(const be_node *node);
/* ATTENTION at a position whose queries see too few keys for a split
 * (ops_attention.c): plans are recorded apart for such positions (the
 * graph key holds this class), so short contexts run without the reduce
 * pass and its barrier. */
bool elmi_vk_attention_short(const be_node *node);

/* graph.c */
elm_status elmi_vk_graph_prepare(vk_backend *vk, const be_graph *g, vk_plan **out);
elm_status elmi_vk_graph_compute(vk_backend *vk, const be_graph *g);
void elmi_vk_plans_clear(vk_backend *vk);
/* profile.c */
/* Creates plan->qpool when the plan is profiled and the queue has timestamps. */
elm_status elmi_vk_profile_plan(vk_backend *vk, vk_plan *plan);
/* Records the reset of a step's queries and the timestamp before its
 * dispatches; elmi_vk_profile_stamp writes the one after dispatch i. */
void elmi_vk_profile_begin(const vk_plan *plan, vk_step *s, VkCommandBuffer cmd);
void elmi_vk_profile_stamp(const vk_plan *plan, const vk_step *s, VkCommandBuffer cmd, uint32_t i);
/* After a GPU step ran for wall_ms: adds its dispatches' figures to vk->prof
 * and returns the step's device time (timestamps, else wall_ms). */
double elmi_vk_profile_step(vk_backend *vk, const vk_plan *plan, const vk_step *s, double wall_ms);
/* After the whole graph ran: node counts and bytes. */
void elmi_vk_profile_graph(vk_backend *vk, const be_graph *g);
/* Corrupts the results of the nodes of vk->fault_op (EDGELM_VK_FAULT_OP). */
elm_status elmi_vk_fault_op_apply(vk_backend *vk, const be_graph *g);
elm_status elmi_vk_profile_enable(be_backend *be, bool on);
void elmi_vk_profile_read(be_backend *be, be_profile *acc);
double elmi_vk_now_ms(void);

/* Appends a dispatch to the plan under construction. */
elm_status elmi_vk_plan_add_dispatch(vk_backend *vk, vk_plan *plan, const vk_disp *d);
/* Reserves the per-call slot of the node; returns its index. */
elm_status elmi_vk_plan_add_dyn(vk_plan *plan, int node, uint32_t *slot);
/* A device-local scratch segment of at least `bytes` for a node's
 * intermediates, alive as long as the plan: the plan's latest one when it
 * is large enough (nodes share it; graph.c orders their accesses like any
 * other), else a new one. */
elm_status elmi_vk_plan_scratch(vk_backend *vk, vk_plan *plan, VkDeviceSize bytes, const vk_seg **out);

#endif /* ELM_VK_INTERNAL_H */
