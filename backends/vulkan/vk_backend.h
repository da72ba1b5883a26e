/*
 * vk_backend.h: the Vulkan backend as the engine sees it. Everything else
 * goes through the be_iface of backends/backend.h; this header adds device
 * listing and selection, creation options, and Vulkan-specific statistics.
 * It does not include Vulkan headers, so any module may include it; the
 * functions exist only when the build defines ELM_HAVE_VULKAN=1.
 *
 * Limits emulation. A limits spec is a comma-separated list of profiles and
 * overrides; the backend then plans (and enumeration reports) as if the
 * device had at most these capabilities (it never claims more than the
 * device has):
 *   pi5            16 KiB shared memory, 256 invocations per workgroup
 *   mali           32 KiB shared memory, no 8-bit storage
 *   adreno         32 KiB shared memory, 1024 invocations per workgroup
 *   nofp16         no shaderFloat16, no 16-bit storage (32-bit word paths)
 *   nosubgroup     no subgroup arithmetic (shared-memory reductions)
 *   small-buffers  maxStorageBufferRange = maxMemoryAllocationSize = 1 MiB
 *   discrete       device memory is never mapped: staging for every
 *                  transfer, as on a discrete GPU; host memory is never
 *                  imported
 *   noimport       host tensors are copied, never imported
 *   nofuse         not a cap: every node is planned on its own (no fused
 *                  dispatches, fuse.c), for tests and comparisons
 *   fuse           not a cap: a CPU device fuses mat-vecs of every type
 *                  (by default it fuses them only into its texel
 *                  kernels, GPUs every type; nofuse wins over fuse)
 *   noidot         no shaderIntegerDotProduct: mat-vecs are float only
 *   idot           not a cap: fast graphs' mat-vecs of Q4_0, Q8_0, Q4_K,
 *                  Q5_K and Q6_K weights, and mat-mat tiles of Q4_0 and
 *                  Q8_0 weights, use integer dot products (8-bit
 *                  activations) wherever the device has them, not only
 *                  where 4x8-bit signed dots are reported accelerated
 *   mm_f16         not a cap: fast graphs' mat-mat tiles multiply in F16
 *                  (partial sums over 8 values of K, then F32) on a CPU
 *                  device too; by default only GPUs with shaderFloat16
 *                  and 16-bit storage do
 *   nomm_f16       not a cap: mat-mat tiles never multiply in F16 (F16
 *                  staging stays); wins over mm_f16
 *   novtiles       not a cap: flash attention reads V from the cache in
 *                  prefill too, no F16 V tiles in shared memory, for tests
 *                  and comparisons
 *   norepack       not a cap: copied Q4_0/Q8_0/Q6_K weights keep the
 *                  file layout (by default their rows are repacked at
 *                  upload, scales after quants: see README.md)
 *   tex            not a cap: mat-vecs read weights and activations
 *                  through uniform texel buffers on a GPU too (by default
 *                  only CPU devices do, see README.md); results are the
 *                  same bits either way
 *   notex          mat-vecs read storage buffers only; wins over tex
 *   max_shared=N, max_invocations=N, max_range=N, max_alloc=N   (bytes or counts)
 *   max_storage_buffers=N  storage buffers per compute stage; under 12 the
 *                  backend keeps a 5-binding layout and fuses nothing
 *   mv_rows=N      not a cap: weight rows per mat-vec lane group (at most
 *                  64, halved until the reduction fits), for tests and tuning
 *   mv_lanes=N     not a cap: 1 gives each mat-vec row one lane; more
 *                  (the default) splits each row over the workgroup
 *   mv_tokens=N    not a cap: tokens per mat-vec workgroup for products of
 *                  several tokens (at most 8; 1: those always use tiles);
 *                  by default GPUs take up to 4 tokens this way, CPU
 *                  devices none
 * Features the profile removes are also left disabled at device creation,
 * so the validation layer reports any shader that would still use them.
 * Environment (read when be_vk_options.limits is NULL, and by
 * elmi_be_vk_enumerate): EDGELM_VK_LIMITS holds a spec; EDGELM_VK_MAX_SHARED,
 * EDGELM_VK_MAX_INVOCATIONS, EDGELM_VK_MAX_RANGE and EDGELM_VK_MAX_ALLOC
 * add the matching override.
 *
 * Fault injection (a test hook, read by elmi_be_vk_new): EDGELM_VK_FAULT_AFTER=N
 * counts the queue submissions made while graphs run (command buffers of
 * GPU steps, and the transfers of CPU fallback steps); the first N succeed,
 * the next waits for its work and then reports VK_ERROR_DEVICE_LOST, as a
 * lost device would: graph_compute returns ELM_ERR_DEVICE, and every later
 * call on the backend fails with ELM_ERR_DEVICE. Submissions outside graphs
 * (uploads at context creation) are not counted, so N does not depend on
 * the limits profile's memory layout.
 * EDGELM_VK_FAULT_OP=NAME (an op name of elmi_be_op_name, any case, e.g.
 * MUL_MAT) corrupts results instead: after each graph has run, the first
 * value of the F32 result of every node of that op gains 1e30. Only the
 * graph's own output sees it (later nodes of the graph ran before), which is
 * what the one-node problems of the engine's device self-check need. An
 * unknown name makes elmi_be_vk_new fail with ELM_ERR_INVALID_ARG.
 * EDGELM_VK_AUTO_CPU=1 lets "auto" (elmi_be_vk_select) pick a CPU-type
 * device such as lavapipe, so tests reach the auto path.
 *
 * Submit bound (the GPU watchdog): EDGELM_VK_SUBMIT_MS=T (milliseconds;
 * default 100 on GPUs, 0 = no bound, the default on CPU-type devices). Each
 * graph submit is timed (device timestamps when the graph is profiled, else
 * wall time); when one takes longer than T, its plan is recorded again with
 * its dispatch runs cut to n * T / time dispatches per submit (at least
 * one), for every later run. Results do not change: the same dispatches
 * run in the same order, with a full barrier between submits.
 */
#ifndef ELM_VK_BACKEND_H
#define ELM_VK_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/backend.h"
#include "edgelm.h"

/*
 * Every Vulkan physical device (CPU-type ones such as lavapipe included), in
 * enumeration order, with ids "vulkan:0", "vulkan:1", ... and the limits of
 * EDGELM_VK_LIMITS applied. Writes at most `cap` entries and the total to
 * *n. Without a loader, a driver or a device: *n = 0 and ELM_OK. A bad
 * EDGELM_VK_LIMITS gives ELM_ERR_INVALID_ARG with a message in err.
 */
elm_status elmi_be_vk_enumerate(elm_device_info *out, size_t cap, size_t *n, char *err,
                           size_t err_size);

/*
 * Resolves a device spec to an index into elmi_be_vk_enumerate's list:
 *   "vulkan"    the first GPU (discrete, integrated, virtual or other), else
 *               the first device of any type (a CPU-type one);
 *   "vulkan:N"  device N (ELM_ERR_INVALID_ARG when there is no such device);
 *   "auto"      the first discrete GPU, else the first integrated one, else
 *               the first virtual/other GPU; never a CPU-type device.
 * *index = -1 when no device matches ("auto", or "vulkan" without devices);
 * that is not an error. Unknown specs give ELM_ERR_INVALID_ARG.
 */
elm_status elmi_be_vk_select(const char *device_spec, int *index);

typedef struct be_vk_options {
    int device;             /* index into the list; -1 selects as "vulkan" does */
    const char *limits;     /* limits spec (see above); NULL: from the environment */
    const char *cache_dir;  /* pipeline cache directory; NULL: $XDG_CACHE_HOME/edgelm,
                               else ~/.cache/edgelm; "": no cache file */
    int validation;         /* 1: VK_LAYER_KHRONOS_validation on, 0: off,
                               -1: on when EDGELM_VK_VALIDATION=1 */
    bool quiet;             /* no notes on stderr (fallbacks, discarded caches) */
} be_vk_options;

/* device -1, limits NULL, cache_dir NULL, validation -1, quiet false. */
be_vk_options elmi_be_vk_default_options(void);

/*
 * Creates a backend on its own device (elmi_be_vk_device_open, then
 * elmi_be_vk_new_on; the backend holds the only reference). Errors: ELM_ERR_INVALID_ARG (bad index or
 * limits spec), ELM_ERR_UNSUPPORTED (no Vulkan device, or one below Vulkan
 * 1.1 or without a compute queue), ELM_ERR_DEVICE (device creation failed),
 * ELM_ERR_NO_MEMORY; err receives a message.
 */
elm_status elmi_be_vk_new(const be_vk_options *opt, be_backend **out, char *err, size_t err_size);

/*
 * Opens a device once for many backends (the contexts of one model): the
 * VkDevice, its pipelines and the device copies of host tensors are shared;
 * each backend created on it with elmi_be_vk_new_on owns only its buffers,
 * plans and command buffers. *out holds one reference, released with
 * elmi_be_vk_device_release; each backend holds its own, so backends and
 * the opener may go in any order. Errors as elmi_be_vk_new. Thread-safe:
 * backends on one device may run in different threads.
 */
elm_status elmi_be_vk_device_open(const be_vk_options *opt, be_device **out, char *err, size_t err_size);
void elmi_be_vk_device_release(be_device *dev); /* NULL: no-op */
/* A backend on an open device (it takes a reference). */
elm_status elmi_be_vk_new_on(be_device *dev, be_backend **out, char *err, size_t err_size);
/* The host-tensor copies the device holds now, once for all its backends. */
void elmi_be_vk_device_memory(be_device *dev, be_device_memory *out);

/* True when be is a Vulkan backend (the functions below accept nothing else). */
bool elmi_be_vk_is(const be_backend *be);

/* The device the backend runs on, as listed (limits applied). */
elm_status elmi_be_vk_device_info(be_backend *be, elm_device_info *out);

/* Validation-layer errors reported so far (0 when validation is off). */
uint64_t elmi_be_vk_validation_errors(be_backend *be);

/* Whether the validation layer is active on this backend. */
bool elmi_be_vk_validation_enabled(be_backend *be);

/* The message of the last failure inside the backend ("" when none), e.g.
 * why buffer_alloc returned ELM_ERR_NO_MEMORY. */
const char *elmi_be_vk_last_error(be_backend *be);

typedef struct be_vk_stats {
    /* Pipelines */
    uint32_t n_pipelines;       /* created so far */
    double pipeline_ms;         /* wall time spent creating them */
    bool cache_loaded;          /* a cache file passed the header checks and seeded the
                                   VkPipelineCache every pipeline is created with */
    size_t cache_load_bytes;    /* its size */
    bool cache_rejected;        /* a cache file existed but was discarded */
    char cache_note[160];       /* why it was discarded or not found ("" when loaded) */
    char cache_path[512];       /* the file ("" when persistence is off) */
    /* Graphs */
    uint64_t n_records;         /* command buffers recorded (one per graph shape and CPU split) */
    uint64_t n_replays;         /* graph_compute calls served by already recorded buffers */
    uint64_t n_submits;         /* queue submissions for graphs */
    uint64_t n_dispatches;      /* dispatches recorded */
    uint64_t n_barriers;        /* dependency barriers recorded between dispatches */
    uint64_t n_fused_nodes;     /* nodes planned inside fused dispatches (fuse.h), summed
                                   over the plans built */
    uint64_t n_texel_dispatches; /* mat-vec dispatches planned to read through texel
                                    buffers (caps.mv_tex), summed over the plans built */
    /* Memory */
    uint64_t weight_bytes;      /* host tensors uploaded (once each) */
    uint64_t weight_import_bytes; /* of which imported in place (VK_EXT_external_memory_host) */
    uint64_t weight_copy_bytes;   /* of which copied into device memory */
    uint64_t weight_split_bytes;  /* of the copies, repacked into the split layout */
    uint32_t n_weights;         /* host tensors cached on the device */
    uint64_t device_bytes;      /* device memory allocated by this backend now */
    /* Transfers */
    uint64_t n_ring_writes;     /* small writes to unmapped memory carried by the next
                                   submission instead of a staged submit each */
} be_vk_stats;

elm_status elmi_be_vk_get_stats(be_backend *be, be_vk_stats *out);

/*
 * Copies bytes [0, size) of `src` to bytes [0, size) of `dst` (two buffers
 * of this backend) on the device with vkCmdCopyBuffer, `reps` times in one
 * submission with a barrier between repetitions, and waits. *ms receives the
 * time of one copy: from timestamp queries where the queue has them, else
 * the submission's wall time divided by reps. For bench --ops (device copy
 * bandwidth = 2 * size / time).
 */
elm_status elmi_be_vk_copy_buffer(be_backend *be, be_buffer *dst, be_buffer *src, size_t size,
                             uint32_t reps, double *ms);

/*
 * Frees the device copies of every host tensor (and the recorded plans that
 * bind them), so that their host memory may be freed or reused while the
 * backend lives on. The next graph uploads what it reads again. For
 * bench --ops, which times one weight matrix after another.
 */
void elmi_be_vk_release_weights(be_backend *be);

/*
 * Whether fast graphs' mat-vecs of Q4_0, Q8_0, Q4_K, Q5_K and Q6_K weights
 * (and mat-mat tiles of Q4_0 and Q8_0 weights) run the integer-dot
 * kernels (activations quantized through Q8_0, 32 values a block): the device has shaderIntegerDotProduct and reports
 * 4x8-bit signed dots accelerated, or the limits say "idot" (and not
 * "noidot"). Tests pick their fast-graph reference with it.
 */
bool elmi_be_vk_int_dot_matvec(be_backend *be);

/* Whether copied weights of `type` take the split row layout (memory.c,
 * README.md "Weight layout"): true for Q4_0, Q8_0 and Q6_K, with *d_off the
 * offset of the block's fp16 scale d in the file block; false otherwise. */
bool elmi_vk_split_layout(int type, size_t *d_off);

#endif /* ELM_VK_BACKEND_H */
