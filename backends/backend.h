/*
 * backend.h: the one interface between the engine and the compute backends.
 *
 * The engine describes a forward pass as a graph (an ordered list of nodes,
 * each an op with its source and destination tensors) and hands the whole
 * graph to a backend in one graph_compute call. A backend never includes
 * engine headers; everything it needs is defined here.
 *
 * Tensors are dense, row-major, with ne[0] the contiguous dimension. A tensor
 * lives in a backend buffer at byte offset `offs`; for host-addressable
 * buffers `data` is the address of element 0.
 *
 * Host tensors: a tensor with buf == NULL and data != NULL is immutable host
 * memory (the memory-mapped weights) that outlives the backend. The CPU
 * backend reads it in place; a device backend uploads (or imports) each such
 * tensor once, keyed by its data address, and reuses the copy afterwards.
 */
#ifndef ELM_BACKEND_H
#define ELM_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edgelm.h"

#define BE_MAX_SRC 4
#define BE_MAX_PARAMS 8

/* Element types beyond the qtype ids of quant.h. */
#define BE_TYPE_I32 26 /* QT_I32 of quant.h (checked in backend.c) */

typedef struct be_buffer be_buffer;

typedef struct be_tensor {
    int type;        /* qtype id, or BE_TYPE_I32 */
    int64_t ne[4];   /* elements per dimension, unused ones 1 */
    size_t nb[4];    /* strides in bytes; nb[0] is the block size in bytes for quantized rows */
    be_buffer *buf;  /* the buffer holding the tensor */
    size_t offs;     /* byte offset in buf */
    void *data;      /* host address of element 0, or NULL for device memory */
    char name[64];
} be_tensor;

/*
 * Ops. F32 unless said otherwise; shapes as (ne0, ne1, ...). T is the number
 * of tokens in the batch. "dst may alias src0" means in-place is allowed.
 */
typedef enum be_op {
    /* dst (n, T) = rows src1[t] of table src0 (any type, (n, n_rows)),
     * dequantized. src1: I32 (T). */
    BE_OP_GET_ROWS,
    /* Each row of n values of src0 (n, d1, d2, d3), over all d1*d2*d3 rows:
     * dst = src0 / sqrt(mean(src0^2) + eps) * src1; src1 (n) F32. The same
     * op normalizes whole embeddings (n_embd, T) and, on a (head_dim,
     * n_heads, T) view, each head separately (qwen3/gemma3/lfm2 Q/K norms).
     * fparams[0] = eps. dst may alias src0. */
    BE_OP_RMS_NORM,
    /* dst (N, T) = src0 (type, (K, N)) x src1 (K, T) + src2 (N, optional).
     * In exact graphs the weights are dequantized exactly and multiplied in
     * F32; in fast graphs activations may be quantized to the weight type's
     * vec_dot_type first. */
    BE_OP_MUL_MAT,
    /* dst = src0 + src1, same shapes. dst may alias src0. */
    BE_OP_ADD,
    /* Rotary embedding of src0 (head_dim, n_heads, T) in place or into dst.
     * src1: I32 positions (T). src2: optional F32 frequency factors
     * (n_rot / 2), dividing each pair's frequency.
     * iparams: [0] mode (BE_ROPE_NORM pairs (2i, 2i+1), BE_ROPE_NEOX pairs
     * (i, i + n_rot/2)), [1] n_rot, [2] n_ctx_orig (YaRN).
     * fparams: [0] freq_base, [1] freq_scale, [2] ext_factor (YaRN, 0 = off),
     * [3] attn_factor, [4] beta_fast, [5] beta_slow. dst may alias src0. */
    BE_OP_ROPE,
    /* Stores src0 (n_embd_kv, T) into the cache dst (n_embd_kv, n_rows),
     * converting to the cache type (F32 or F16): token t (position pos + t)
     * goes to row pos + t, or, when iparams[1] (ring) is 1, to row
     * (pos + t) % n_rows. Without ring, pos + T <= n_rows; with it, T <= n_rows.
     * iparams: [0] pos, [1] ring (0 or 1). */
    BE_OP_KV_STORE,
    /* Causal attention. src0: q (head_dim, n_head, T); src1: K cache,
     * src2: V cache, both (head_dim * n_head_kv, n_rows) of F32 or F16.
     * Query t sits at position p = pos + t and attends the key positions
     * [lo, p], lo = 0, or lo = max(0, p - window + 1) with a sliding window.
     * Key position j is in cache row j, or row j % n_rows when ring is 1
     * (a ring cache, written by KV_STORE with ring 1).
     * Without ring, pos + T <= n_rows; with it, window + T - 1 <= n_rows, so
     * no key a query needs has been overwritten by a later token's.
     * Query head h uses KV head h / (n_head / n_head_kv).
     * Scores are s = scale * q.k; with a softcap c > 0, s = c * tanh(s / c).
     * iparams: [0] pos, [1] n_head_kv, [2] window (0 = none), [3] ring (0, 1;
     * ring needs a window).
     * fparams: [0] scale (1/sqrt(head_dim)), [1] softcap (0 = none).
     * dst (head_dim * n_head, T). */
    BE_OP_ATTENTION,
    /* Gated linear unit: dst (n, T) = act(src0) * src1, src0 and src1 (n, T).
     * iparams[0] = act: BE_GLU_SILU, silu(x) = x / (1 + exp(-x)) (SwiGLU);
     * BE_GLU_GELU_TANH, gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
     * (GeGLU, gemma). dst may alias src0 or src1. */
    BE_OP_GLU,
    /* A summary of each row t of src0 (n, T), so greedy decoding reads back
     * four numbers instead of every logit. dst (4, T): [0] the index of the
     * highest value (the lowest index among equals; n < 2^24 so it is exact
     * as a float), [1] that value, [2] the highest of the other values
     * (-inf when n == 1), [3] the log-sum-exp of the row. */
    BE_OP_ARGMAX,
    /* dst (n, d1, d2, d3) = s * src0, then, when c = fparams[1] > 0,
     * dst = c * tanh(dst / c) (logit softcapping). fparams[0] = s.
     * dst may alias src0. */
    BE_OP_SCALE,
    /* Gated short convolution (lfm2). src0: bcx (3n, T), each column the
     * three n-vectors b, c, x; src1: the kernel (L, n) F32, tap k of channel
     * i at k + i * L; src2: the state (n, n_rows) F32, a ring of bx = b * x
     * rows, position p at row p % n_rows, with T + L - 1 <= n_rows.
     * The op first stores bx of positions [pos, pos + T) into src2, then
     *   dst[i, t] = c[i, t] * sum_{k < L} w[k, i] * bx[i, pos + t - (L - 1) + k]
     * where bx of a position below 0 is 0 (so a fresh or reset context
     * needs no clearing). dst (n, T). iparams[0] = pos. */
    BE_OP_SHORTCONV,
    /* dst = src0 * src1 element-wise, src0 (n, d1, d2, d3); src1 has src0's
     * shape, or is one row (n) that multiplies every row of src0.
     * dst may alias src0. */
    BE_OP_MUL,
    /* Softmax of each row of src0 (n, d1, d2, d3) scaled by s = fparams[0]:
     * dst[i] = exp(s x[i] - m) / sum_j exp(s x[j] - m), m = max_j s x[j].
     * dst may alias src0. */
    BE_OP_SOFTMAX,
    BE_OP_COUNT
} be_op;

enum { BE_ROPE_NORM = 0, BE_ROPE_NEOX = 2 };
enum { BE_GLU_SILU = 0, BE_GLU_GELU_TANH = 1 };

typedef struct be_node {
    be_op op;
    be_tensor *dst;
    be_tensor *src[BE_MAX_SRC]; /* unused ones NULL */
    int32_t iparams[BE_MAX_PARAMS];
    float fparams[BE_MAX_PARAMS];
} be_node;

typedef struct be_graph {
    be_node *nodes;  /* borrowed by the backend for the call */
    int n_nodes;
    bool exact;      /* ELM_MODE_EXACT: F32 activations, exact dequantization */
} be_graph;

const char *elmi_be_op_name(be_op op);

/* Fills t's type, shape, strides and name (buf, offs and data are zeroed).
 * Returns false when the type is unknown or a row is not whole blocks. */
bool elmi_be_tensor_init(be_tensor *t, int type, int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3,
                    const char *name);
/* Bytes of the whole tensor (contiguous). */
size_t elmi_be_tensor_nbytes(const be_tensor *t);
/* Number of elements. */
int64_t elmi_be_tensor_nelements(const be_tensor *t);

typedef struct be_backend be_backend;

typedef struct be_stats {
    uint64_t n_graphs;          /* graph_compute calls */
    uint64_t n_nodes;           /* nodes executed */
    uint64_t n_validation_errors; /* errors a validation layer reported (0 without one) */
} be_stats;

/* One device-specific counter ("vulkan.pipeline_ms", ...); name is static. */
typedef struct be_stat {
    const char *name;
    double value;
} be_stat;

/* Profiling figures of one op kind, summed over the graphs run while
 * profiling was on. */
typedef struct be_profile_op {
    double ms;             /* device time: GPU timestamps where the device has them,
                              else host wall time */
    uint64_t bytes;        /* bytes read + written, estimated from the nodes' tensors
                              (elmi_be_node_bytes) */
    uint64_t n_nodes;      /* nodes of this op run */
    uint64_t n_dispatches; /* device dispatches (the CPU backend: nodes) */
    uint64_t n_barriers;   /* barriers before its dispatches (the CPU: thread barriers) */
} be_profile_op;

typedef struct be_profile {
    be_profile_op op[BE_OP_COUNT];
    uint64_t n_graphs;  /* graph_compute calls measured */
    uint64_t n_submits; /* queue submissions (0 on the CPU) */
    bool timestamps;    /* ms came from device timestamps */
} be_profile;

/* Bytes a node reads and writes, estimated from its tensors: every source
 * and the destination once, except that only the rows touched count of the
 * caches ATTENTION reads, the cache KV_STORE writes and the table GET_ROWS
 * gathers from. */
uint64_t elmi_be_node_bytes(const be_node *nd);
/* Adds src into acc (op figures and counts; timestamps if either has them). */
void elmi_be_profile_add(be_profile *acc, const be_profile *src);

/* The function table every backend fills with designated initializers. */
typedef struct be_iface {
    const char *name;
    void (*free)(be_backend *be);
    /* Can this backend run `node` within its limits, in exact and in fast
     * graphs? Asked by the engine when it plans a graph (engine/sched.c):
     * a backend never receives a node it said no to; the engine runs those
     * on the CPU backend. */
    bool (*supports_op)(be_backend *be, const be_node *node);
    /* Optional: why the last supports_op said no ("" when unknown). */
    const char *(*unsupported_why)(be_backend *be);
    /* A buffer of `size` bytes. host_ptr, when not NULL, is memory the buffer
     * should wrap or import (memory-mapped weights); its content is valid and
     * it outlives the buffer. */
    elm_status (*buffer_alloc)(be_backend *be, size_t size, void *host_ptr, be_buffer **out);
    void (*buffer_free)(be_backend *be, be_buffer *buf);
    /* Host address of the buffer's byte 0, or NULL when not host-visible. */
    void *(*buffer_host)(be_backend *be, be_buffer *buf);
    /* Copies between host memory and a tensor's bytes [offset, offset + size). */
    elm_status (*tensor_set)(be_backend *be, be_tensor *t, const void *src, size_t offset, size_t size);
    elm_status (*tensor_get)(be_backend *be, const be_tensor *t, void *dst, size_t offset, size_t size);
    /* Optional (NULL for host backends). Plans a graph before its first run:
     * uploads the host weights it reads (see "host tensors" above) and
     * creates pipelines. A graph with the same structure may then run many
     * times. Every node must be one supports_op accepted. */
    elm_status (*graph_prepare)(be_backend *be, const be_graph *graph, char *err, size_t err_size);
    /* Runs every node in order. Writes a message to err on failure. A
     * backend with a validation layer fails the call (ELM_ERR_INTERNAL)
     * when the layer reported errors during it. */
    elm_status (*graph_compute)(be_backend *be, const be_graph *graph, char *err, size_t err_size);
    void (*get_stats)(be_backend *be, be_stats *out);
    /* Optional. Writes at most `cap` device-specific counters to out and
     * returns how many the backend has (elm_context_device_stat). */
    size_t (*device_stats)(be_backend *be, be_stat *out, size_t cap);
    /* Optional (both or neither). profile_enable: from the next
     * graph_compute on, measure each node (on) or stop (off); either way the
     * figures collected so far are dropped. profile_read: adds the figures
     * measured since the last read into *acc and clears them. Profiling may
     * slow graphs down; it never changes their results. */
    elm_status (*profile_enable)(be_backend *be, bool on);
    void (*profile_read)(be_backend *be, be_profile *acc);
} be_iface;

struct be_backend {
    const be_iface *iface;
    void *impl;
};

/* The CPU backend. n_threads <= 0: the number of physical cores. */
elm_status elmi_be_cpu_new(int n_threads, be_backend **out);
/* As elmi_be_cpu_new; pin: keep worker thread i on physical core i. */
elm_status elmi_be_cpu_new_ex(int n_threads, bool pin, be_backend **out);
/* Physical cores of this machine (at least 1). */
int elmi_be_cpu_physical_cores(void);

/* One opened device (a VkDevice with its pipelines and weight copies),
 * shared by every backend created on it: the contexts of one model. */
typedef struct be_device be_device;

/* What a shared device holds once for all its backends. */
typedef struct be_device_memory {
    uint64_t weight_bytes;        /* host tensors the device reads, copied or imported */
    uint64_t weight_device_bytes; /* device memory holding copies of them */
    uint32_t n_weights;           /* host tensors cached */
    uint32_t n_users;             /* references: the opener and each live backend */
} be_device_memory;

/*
 * The device registry (backends/registry.c). Each device backend of the
 * build has an entry; the engine lists, picks and creates devices only
 * through these, never through a backend's own header. The CPU backend is
 * not in it: it is always there (elmi_be_cpu_new_ex).
 */
typedef struct be_reg {
    const char *name; /* "vulkan": its device ids read "NAME:N" */
    /* Describes at most cap devices and writes how many there are. No
     * loader, driver or device: *n = 0 and ELM_OK. */
    elm_status (*enumerate)(elm_device_info *out, size_t cap, size_t *n, char *err,
                            size_t err_size);
    /* The device for spec, "NAME", "NAME:N" or "auto" (the best GPU): an
     * index, or -1 when none matches (not an error). ELM_ERR_INVALID_ARG:
     * "NAME:N" does not exist or the spec is unknown. */
    elm_status (*select)(const char *spec, int *index);
    /* Opens device `index` for sharing; *out holds one reference. err
     * receives a message on failure. */
    elm_status (*open)(int index, be_device **out, char *err, size_t err_size);
    /* Drops one reference (NULL: no-op); the last one closes the device. */
    void (*release)(be_device *dev);
    /* A backend on an open device; it holds its own reference, so it may
     * outlive the opener's. err receives a message on failure. */
    elm_status (*create)(be_device *dev, int n_threads, bool pin, be_backend **out, char *err,
                         size_t err_size);
    /* What the device holds once for all its backends. */
    void (*memory)(be_device *dev, be_device_memory *out);
} be_reg;

/* The registered device backends, in order of preference; NULL past the
 * last (always NULL in a build without device backends). */
const be_reg *elmi_be_reg_at(size_t i);

static inline void be_free(be_backend *be) {
    if (be) be->iface->free(be);
}

#endif /* ELM_BACKEND_H */
