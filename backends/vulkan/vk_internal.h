/*
 * vk_internal.h: what the Vulkan backend's files share. Layers, bottom up:
 *   limits.c   limits specs (profiles and overrides)
 *   device.c   instance, physical-device capabilities, device creation
 *   memory.c   segments, buffers, staging transfers, the host-weight cache
 *   pipeline.c shader modules, pipelines, the persistent pipeline cache
 *   ops.c, ops_matmul.c, ops_util.c (ops_impl.h)
 *              per-op planning: shader variant, bindings, dispatches
 *   graph.c    plans (recorded command buffers), barriers, execution
 *   fallback.c nodes the device cannot run, on the CPU backend
 *   backend.c  the be_iface and the entry points of vk_backend.h
 */
#ifndef ELM_VK_INTERNAL_H
#define ELM_VK_INTERNAL_H

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
    uint64_t mv_rows, mv_lanes;
    bool no_fp16, no_storage16, no_storage8, no_subgroup, no_uma;
    bool no_import; /* never import host memory (VK_EXT_external_memory_host) */
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
    uint32_t mv_rows, mv_lanes; /* vk_limits' mat-vec tuning; 0: the planner's default */
    /* VK_EXT_subgroup_size_control (or 1.3) for compute: a pipeline may
     * require any power-of-two size in [min_subgroup_size, max_subgroup_size] */
    bool sg_control, ext_sg_control; /* ext_: enabled as an extension (before 1.3) */
    uint32_t max_subgroup_size;
    bool subgroup_arith; /* basic + arithmetic in compute shaders */
    bool fp16, storage16, storage8, int_dot;
    uint64_t max_range, max_alloc;
    uint64_t offset_align; /* minStorageBufferOffsetAlignment, at least 4 */
    uint32_t max_push;
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
} vk_weight;

/* ---------------------------------------------------------------- pipeline */

#define VK_MAX_SPEC 8

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

#define VK_N_BIND 4      /* src0, src1, src2, dst; binding 4 is the per-call values */
#define VK_PC_WORDS 32   /* 128 bytes of push constants, the guaranteed minimum */
#define VK_MAX_PLANS 8

typedef struct vk_bind {
    VkBuffer buf;
    VkDeviceSize offset, range;
    uint32_t seg_id; /* 0: the dummy buffer */
} vk_bind;

typedef struct vk_disp {
    VkPipeline pipe;
    vk_bind b[VK_N_BIND];
    uint8_t written; /* bit i: binding i is written */
    uint32_t pc[VK_PC_WORDS];
    uint32_t groups[3];
    VkDescriptorSet set;
} vk_disp;

/* A run of GPU dispatches (one command buffer) or one node on the CPU. */
typedef struct vk_step {
    bool cpu;
    int node;         /* CPU step: the node index */
    uint32_t d0, d1;  /* GPU step: dispatches [d0, d1) */
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
    VkDescriptorPool pool;
    int n_nodes, n_cpu;
} vk_plan;

/* ----------------------------------------------------------------- backend */

typedef struct vk_backend {
    be_backend be;
    vk_instance vi;
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
    vk_weight *weights;
    uint32_t n_weights, cap_weights;
    vk_seg staging, dummy;
    uint32_t next_seg_id;
    uint64_t device_bytes;
    VkCommandPool cmd_pool;
    VkCommandBuffer xfer_cmd;
    VkFence fence;

    /* pipelines */
    VkDescriptorSetLayout dsl;
    VkPipelineLayout layout;
    VkPipelineCache pcache;
    vk_module *modules;
    uint32_t n_modules, cap_modules;
    vk_pipe *pipes;
    uint32_t n_pipes, cap_pipes;

    /* graphs */
    vk_plan *plans[VK_MAX_PLANS];
    uint64_t clock;
    be_backend *cpu; /* fallback, created on first need */
    uint32_t fallback_logged; /* bit per op */

    /* Fault injection (EDGELM_VK_FAULT_AFTER): of the queue submissions
     * made while running graphs (in_graph), the first fault_after succeed
     * and the next reports VK_ERROR_DEVICE_LOST; -1: off. */
    int64_t fault_after;
    uint64_t n_graph_submits;
    bool in_graph;

    _Atomic uint64_t validation_errors;
    be_stats stats;
    be_vk_stats vstats;
    char last_error[VK_ERR_LEN];

    /* import.c: VK_EXT_external_memory_host, probed on first use */
    struct {
        bool probed, usable;
        VkDeviceSize align; /* minImportedHostPointerAlignment */
        VkExternalMemoryHandleTypeFlagBits types[2];
        uint32_t n_types;
        PFN_vkGetMemoryHostPointerPropertiesEXT get_props;
    } import;
} vk_backend;

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
void elmi_vk_device_close(vk_backend *vk);

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
/* Submits the transfer command buffer and waits. */
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

/* graph.c */
elm_status elmi_vk_graph_prepare(vk_backend *vk, const be_graph *g, vk_plan **out);
elm_status elmi_vk_graph_compute(vk_backend *vk, const be_graph *g);
void elmi_vk_plans_clear(vk_backend *vk);
/* fallback.c: runs node `index` of g on the CPU backend, through host
 * copies of the device tensors it touches. */
elm_status elmi_vk_run_cpu_node(vk_backend *vk, const be_graph *g, int index);
/* Appends a dispatch to the plan under construction. */
elm_status elmi_vk_plan_add_dispatch(vk_backend *vk, vk_plan *plan, const vk_disp *d);
/* Reserves the per-call slot of the node; returns its index. */
elm_status elmi_vk_plan_add_dyn(vk_plan *plan, int node, uint32_t *slot);

#endif /* ELM_VK_INTERNAL_H */
