/*
 * edgelm_ops.h: edgelm's kernels for other runtimes. A runtime that keeps
 * its own model format, scheduler or graph can call edgelm's quantized
 * matrix products, attention and row ops on the CPU or on a Vulkan GPU,
 * one op at a time or as a graph submitted once.
 *
 * The conventions of edgelm.h hold here too: elm_status returns and
 * elm_strerror(); every pointer parameter is *borrowed* unless its comment
 * says *owned* or *kept*; *_free(NULL) is a no-op; structs that cross the
 * boundary start with `size_t struct_size` and only ever grow at their end
 * (set it with the init macro); nothing calls exit() or abort(). Only
 * functions named elm_* are exported, and the ABI check covers this header.
 *
 * Objects:
 *  - elm_dev: one device ("cpu", "vulkan:0", ...; elm_devices() of edgelm.h
 *    lists the ids). It holds the message of its last failure
 *    (elm_dev_last_error), which every call on it, its buffers and its
 *    graphs sets. A device and everything made from it must be used by one
 *    thread at a time; two devices are independent.
 *  - elm_dev_buffer: device memory (or host memory the device works in
 *    place), owned by the caller, freed before its device.
 *  - elm_op_tensor: a plain struct describing a tensor: element type,
 *    shape, strides and where its bytes are (a buffer and an offset, or
 *    read-only host memory). It owns nothing; the functions below read it
 *    and keep no reference to it.
 *  - elm_op_graph: a recorded sequence of ops on one device, run with one
 *    submission each time elm_op_graph_compute is called.
 *
 * Tensors are row-major with ne[0] the contiguous dimension, as in GGUF and
 * ggml: a matrix of N rows of K values is (K, N). Quantized types hold
 * whole blocks per row (ne[0] a multiple of the block's values, 32 or 256).
 *
 * Host tensors (buf == NULL, host != NULL) are weights the caller keeps in
 * memory (a memory-mapped GGUF file, for example): read-only, and the
 * device may read them in place (CPU), import them, or copy them once the
 * first time an op reads them, keyed by address (Vulkan). Their content must
 * not change and they must outlive the device. Only sources may be host
 * tensors; every destination is in a buffer.
 *
 * Errors: ELM_ERR_INVALID_ARG for a NULL, inconsistent or out-of-range
 * argument (shapes, types, strides, a tensor outside its buffer, a buffer
 * of another device), with the reason in elm_dev_last_error();
 * ELM_ERR_UNSUPPORTED for a valid request the device cannot run (a weight
 * type without kernels); ELM_ERR_NO_MEMORY; ELM_ERR_DEVICE when the device
 * failed or was lost (it is then unusable: free it).
 */
#ifndef EDGELM_OPS_H
#define EDGELM_OPS_H

#include "edgelm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------- types */

/* Element types: the GGUF type ids (ggml_type), so a GGUF tensor's type
 * field converts by cast. Only the ones edgelm computes with are named;
 * enumerators are only appended. */
typedef enum elm_type {
    ELM_TYPE_F32 = 0,
    ELM_TYPE_F16 = 1,
    ELM_TYPE_Q4_0 = 2,
    ELM_TYPE_Q4_1 = 3,
    ELM_TYPE_Q5_0 = 6,
    ELM_TYPE_Q5_1 = 7,
    ELM_TYPE_Q8_0 = 8,
    ELM_TYPE_Q2_K = 10,
    ELM_TYPE_Q3_K = 11,
    ELM_TYPE_Q4_K = 12,
    ELM_TYPE_Q5_K = 13,
    ELM_TYPE_Q6_K = 14,
    ELM_TYPE_I32 = 26,   /* token ids and positions */
    ELM_TYPE_BF16 = 30,
} elm_type;

/* The type's name ("Q4_0"), or "unknown"; static. */
ELM_API const char *elm_type_name(elm_type type);

/* Bytes of one row of n values of `type` into *bytes. ELM_ERR_INVALID_ARG
 * for an unknown type, n < 0, n not a whole number of blocks, or an
 * overflow. */
ELM_API elm_status elm_type_row_bytes(elm_type type, int64_t n, size_t *bytes);

/* Converts n F32 values to `type` (F16, BF16 or a quantized block type,
 * with edgelm's reference quantizer), writing elm_type_row_bytes(type, n)
 * bytes to dst; and back. Both borrowed. ELM_ERR_INVALID_ARG as
 * elm_type_row_bytes, ELM_ERR_UNSUPPORTED for a type without a converter. */
ELM_API elm_status elm_type_quantize(elm_type type, const float *src, void *dst, int64_t n);
ELM_API elm_status elm_type_dequantize(elm_type type, const void *src, float *dst, int64_t n);

/* ----------------------------------------------------------------- devices */

typedef struct elm_dev elm_dev;

typedef struct elm_dev_params {
    size_t struct_size; /* set by elm_dev_default_params */
    int n_threads;      /* CPU: worker threads, 0 = the physical cores; others ignore it */
} elm_dev_params;

ELM_API void elm_dev_params_init(elm_dev_params *p, size_t struct_size);
#define elm_dev_default_params(p) elm_dev_params_init((p), sizeof *(p))

/*
 * Creates the device `id` (borrowed): "cpu", "vulkan" (the first Vulkan
 * device), "vulkan:N" or "auto" (the best GPU; the CPU when there is none
 * or it fails to start; elm_dev_id tells which), as listed by
 * elm_devices(). params may be NULL for the defaults. *out receives an
 * owned device, or NULL on failure, when err (err_size bytes) receives the
 * message. Errors: ELM_ERR_INVALID_ARG (an unknown id, a device that does
 * not exist), ELM_ERR_UNSUPPORTED (no such device on this machine),
 * ELM_ERR_DEVICE, ELM_ERR_NO_MEMORY.
 */
ELM_API elm_status elm_dev_new(const char *id, const elm_dev_params *params, elm_dev **out,
                               char *err, size_t err_size);

/* Frees the device. Its buffers and graphs must be freed first. */
ELM_API void elm_dev_free(elm_dev *dev);

/* The message of the last failure on this device ("" when none); owned by
 * the device, valid until the next call on it. */
ELM_API const char *elm_dev_last_error(const elm_dev *dev);

/* The device's id as elm_devices() lists it ("cpu", "vulkan:0"); owned by
 * the device. "" for NULL. */
ELM_API const char *elm_dev_id(const elm_dev *dev);

/* Fills *out (out->struct_size set by the caller) with the device's entry
 * of elm_devices(). */
ELM_API elm_status elm_dev_get_info(elm_dev *dev, elm_device_info *out);

/* A device counter by name (borrowed): on every device "nodes" (ops run)
 * and "fallback_nodes" (ops the device handed to the CPU), and the
 * device's own, as elm_context_device_stat_find lists them
 * ("vulkan.validation_errors", "vulkan.dispatches", ...).
 * ELM_ERR_INVALID_ARG when the device has no counter by that name. */
ELM_API elm_status elm_dev_stat_find(elm_dev *dev, const char *name, double *value);

/* ----------------------------------------------------------------- buffers */

typedef struct elm_dev_buffer elm_dev_buffer;

/* A buffer of `size` bytes of device memory, zero-filled on the CPU and
 * undefined on other devices. *out receives an owned buffer. */
ELM_API elm_status elm_dev_buffer_alloc(elm_dev *dev, size_t size, elm_dev_buffer **out);

/*
 * A buffer over `size` bytes of the caller's memory at `host` (kept: it
 * must outlive the buffer), which ops read and write in place: no copy.
 * Only where the device works in host memory (the CPU);
 * ELM_ERR_UNSUPPORTED elsewhere: use elm_dev_buffer_alloc and copy, or
 * pass read-only weights as host tensors (see the top of this file).
 */
ELM_API elm_status elm_dev_buffer_wrap(elm_dev *dev, void *host, size_t size,
                                       elm_dev_buffer **out);

/* Frees a buffer; the device must not be running a graph that uses it.
 * Graphs that recorded tensors in it must not be run again. */
ELM_API void elm_dev_buffer_free(elm_dev_buffer *buf);

ELM_API size_t elm_dev_buffer_size(const elm_dev_buffer *buf);

/* The host address of the buffer's byte 0 where the device maps it into
 * host memory (the CPU; integrated GPUs), else NULL. Reading it is valid
 * only while no op runs. */
ELM_API void *elm_dev_buffer_host(const elm_dev_buffer *buf);

/* ----------------------------------------------------------------- tensors */

typedef struct elm_op_tensor {
    size_t struct_size;   /* set by elm_op_tensor_init */
    elm_type type;
    int64_t ne[4];        /* values per dimension; unused ones 1 */
    /* Strides in bytes: nb[0] the size of one element (of one block for
     * quantized types), nb[1..3] between rows, planes, ... Rows are
     * contiguous; nb[1..3] may leave gaps (views) but rows may not overlap. */
    size_t nb[4];
    elm_dev_buffer *buf;  /* borrowed; NULL for a host tensor */
    size_t offset;        /* bytes from the buffer's start to element 0 */
    /* F32, F16, BF16 and I32 tensors: offset and nb[] are multiples of the
     * element size (blocks of quantized types may start at any byte). */
    const void *host;     /* host tensor: element 0 (borrowed, kept; see the top) */
    const char *name;     /* for messages; borrowed, may be NULL */
} elm_op_tensor;

/*
 * Describes a dense tensor of `type` and shape (ne0, ne1, ne2, ne3) in `buf`
 * at `offset` (or, with buf NULL, a host tensor at `host`): sets every
 * field and the struct_size given. Checks that the type is known, that
 * rows are whole blocks, and that the tensor lies inside the buffer.
 * ELM_ERR_INVALID_ARG otherwise; the message then goes to the buffer's
 * device (or nowhere for host tensors). Use the macro:
 *   elm_op_tensor x; elm_op_tensor_dense(&x, ELM_TYPE_F32, 4096, 1, 1, 1, buf, 0, NULL);
 */
ELM_API elm_status elm_op_tensor_init(elm_op_tensor *t, size_t struct_size, elm_type type,
                                      int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3,
                                      elm_dev_buffer *buf, size_t offset, const void *host);
#define elm_op_tensor_dense(t, type, ne0, ne1, ne2, ne3, buf, offset, host) \
    elm_op_tensor_init((t), sizeof *(t), (type), (ne0), (ne1), (ne2), (ne3), (buf), (offset), (host))

/* Bytes from element 0 to the end of the tensor's last row (its size when
 * dense); 0 for an invalid description. */
ELM_API size_t elm_op_tensor_nbytes(const elm_op_tensor *t);

/* Copies `size` bytes between host memory (borrowed) and the tensor's bytes
 * [offset, offset + size) (counted from element 0, over its whole extent).
 * The tensor must be in a buffer of `dev`. Waits for the copy. */
ELM_API elm_status elm_op_tensor_write(elm_dev *dev, const elm_op_tensor *t, const void *src,
                                       size_t offset, size_t size);
ELM_API elm_status elm_op_tensor_read(elm_dev *dev, const elm_op_tensor *t, void *dst,
                                      size_t offset, size_t size);

/* ------------------------------------------------------------------ graphs */

typedef struct elm_op_graph elm_op_graph;

typedef struct elm_op_graph_params {
    size_t struct_size; /* set by elm_op_graph_default_params */
    /* ELM_MODE_EXACT (the default): weights dequantized exactly, F32
     * products. ELM_MODE_FAST: the device may quantize activations to the
     * weight type's 8-bit dot-product format (CPU) or stage products in
     * F16 (Vulkan), as edgelm's own fast mode does. */
    elm_mode mode;
} elm_op_graph_params;

ELM_API void elm_op_graph_params_init(elm_op_graph_params *p, size_t struct_size);
#define elm_op_graph_default_params(p) elm_op_graph_params_init((p), sizeof *(p))

/* An empty graph on `dev` (borrowed; it must outlive the graph); params may
 * be NULL for the defaults. *out receives an owned graph. */
ELM_API elm_status elm_op_graph_new(elm_dev *dev, const elm_op_graph_params *params,
                                    elm_op_graph **out);
ELM_API void elm_op_graph_free(elm_op_graph *graph);
/* Removes every op (the graph can be recorded again). */
ELM_API void elm_op_graph_clear(elm_op_graph *graph);
ELM_API size_t elm_op_graph_n_ops(const elm_op_graph *graph);
/*
 * Runs the recorded ops in order, as one submission, and waits for them.
 * The first run of a graph plans it (pipelines, uploads of host tensors);
 * later runs of the same graph replay that plan. The tensors' bytes may
 * change between runs; their descriptions are fixed when recorded.
 */
ELM_API elm_status elm_op_graph_compute(elm_op_graph *graph);

/* -------------------------------------------------------------------- ops
 *
 * Every op takes `dev` and `graph`: with graph NULL the op runs at once and
 * the call waits for it; otherwise the op is checked and appended to the
 * graph (of that device), which runs it at elm_op_graph_compute. The
 * elm_op_tensor structs are read during the call only. Sources and
 * destinations are F32 unless said otherwise; T is a number of tokens.
 * "dst may alias x" means the same tensor may be passed for both.
 */

/* dst (N, T) = w (K, N) . x (K, T) + bias (N, may be NULL). w: F32, F16,
 * BF16 or a quantized type; the others F32. T = 1 is the matrix-vector
 * product. Run at once, or in an exact graph: the weights dequantized
 * exactly and the sums in F32 (see elm_op_graph_params for fast graphs). */
ELM_API elm_status elm_op_mul_mat(elm_dev *dev, elm_op_graph *graph, const elm_op_tensor *w,
                                  const elm_op_tensor *x, const elm_op_tensor *bias,
                                  const elm_op_tensor *dst);

/* Each row of n values of x (n, d1, d2, d3): dst = x / sqrt(mean(x^2) + eps)
 * * w, w (n). eps >= 0. dst may alias x. */
ELM_API elm_status elm_op_rms_norm(elm_dev *dev, elm_op_graph *graph, const elm_op_tensor *x,
                                   const elm_op_tensor *w, float eps, const elm_op_tensor *dst);

typedef enum elm_rope_style {
    ELM_ROPE_NORM = 0, /* pairs (2i, 2i + 1): llama */
    ELM_ROPE_NEOX = 2, /* pairs (i, i + n_rot / 2): NeoX, qwen2, phi3 */
} elm_rope_style;

typedef struct elm_rope_params {
    size_t struct_size;   /* set by elm_rope_default_params */
    elm_rope_style style; /* default ELM_ROPE_NORM */
    int32_t n_rot;        /* rotated dimensions (even, <= head_dim); 0 = head_dim */
    float freq_base;      /* theta; default 10000 */
    float freq_scale;     /* 1 / linear scaling factor; default 1 */
    float attn_factor;    /* multiplies cos and sin; default 1 */
} elm_rope_params;

ELM_API void elm_rope_params_init(elm_rope_params *p, size_t struct_size);
#define elm_rope_default_params(p) elm_rope_params_init((p), sizeof *(p))

/* Rotary embedding of x (head_dim, n_head, T) at positions pos (I32, T):
 * pair k of a head turns by pos * freq_scale * freq_base^(-2k / n_rot)
 * (divided by ff[k] when the frequency factors ff (n_rot / 2) are given;
 * may be NULL). params may be NULL for the defaults. dst may alias x. */
ELM_API elm_status elm_op_rope(elm_dev *dev, elm_op_graph *graph, const elm_op_tensor *x,
                               const elm_op_tensor *pos, const elm_op_tensor *ff,
                               const elm_rope_params *params, const elm_op_tensor *dst);

/* Stores x (row_len, T) into rows [pos, pos + T) of the cache (row_len,
 * n_rows), F32 or F16 (converted); pos + T <= n_rows. */
ELM_API elm_status elm_op_kv_store(elm_dev *dev, elm_op_graph *graph, const elm_op_tensor *x,
                                   const elm_op_tensor *cache, int32_t pos);

typedef struct elm_attn_params {
    size_t struct_size; /* set by elm_attn_default_params */
    int32_t pos;        /* position of the first query; queries attend causally */
    float scale;        /* score scale; 0 = 1 / sqrt(head_dim) (the default) */
    float softcap;      /* > 0: scores become c * tanh(s / c); default 0 (none) */
    int32_t window;     /* > 0: each query sees only the last `window` keys; default 0 */
} elm_attn_params;

ELM_API void elm_attn_params_init(elm_attn_params *p, size_t struct_size);
#define elm_attn_default_params(p) elm_attn_params_init((p), sizeof *(p))

/*
 * Causal flash attention with grouped-query heads over a KV cache:
 * q (head_dim, n_head, T); k and v (head_dim * n_head_kv, n_rows), F32 or
 * F16, both of one type, rows written by elm_op_kv_store; dst (head_dim *
 * n_head, T). n_head_kv = k's ne[0] / head_dim must divide n_head; query
 * head h reads KV head h / (n_head / n_head_kv). Query t sits at position
 * pos + t and attends to cache rows [0, pos + t] (pos + T <= n_rows).
 */
ELM_API elm_status elm_op_attention(elm_dev *dev, elm_op_graph *graph, const elm_op_tensor *q,
                                    const elm_op_tensor *k, const elm_op_tensor *v,
                                    const elm_attn_params *params, const elm_op_tensor *dst);

typedef enum elm_glu_act {
    ELM_GLU_SILU = 0,      /* SwiGLU: silu(g) * u */
    ELM_GLU_GELU_TANH = 1, /* GeGLU with the tanh approximation of GELU */
} elm_glu_act;

/* dst = act(gate) * up, all three (n, T) of one shape. dst may alias
 * gate or up. */
ELM_API elm_status elm_op_glu(elm_dev *dev, elm_op_graph *graph, const elm_op_tensor *gate,
                              const elm_op_tensor *up, elm_glu_act act,
                              const elm_op_tensor *dst);

/* Softmax of each row of x (n, d1, d2, d3) scaled by `scale` (finite; 1 for
 * the plain softmax). dst may alias x. */
ELM_API elm_status elm_op_softmax(elm_dev *dev, elm_op_graph *graph, const elm_op_tensor *x,
                                  float scale, const elm_op_tensor *dst);

/* dst = a + b, three tensors of one shape. dst may alias a. */
ELM_API elm_status elm_op_add(elm_dev *dev, elm_op_graph *graph, const elm_op_tensor *a,
                              const elm_op_tensor *b, const elm_op_tensor *dst);

/* dst = a * b element-wise; b has a's shape, or is one row (n) multiplied
 * into every row of a. dst may alias a. */
ELM_API elm_status elm_op_mul(elm_dev *dev, elm_op_graph *graph, const elm_op_tensor *a,
                              const elm_op_tensor *b, const elm_op_tensor *dst);

/* dst (n, T) = rows ids[t] of table (n, n_rows) of any type, dequantized;
 * ids I32 (T). An id outside [0, n_rows) is an error on the CPU and gives
 * a zero row on Vulkan (the ids are in device memory). */
ELM_API elm_status elm_op_get_rows(elm_dev *dev, elm_op_graph *graph, const elm_op_tensor *table,
                                   const elm_op_tensor *ids, const elm_op_tensor *dst);

#ifdef __cplusplus
}
#endif

#endif /* EDGELM_OPS_H */
