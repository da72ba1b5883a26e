/*
 * ops.h: the CPU backend's graph ops other than MUL_MAT (which lives in
 * matmul.c), their validation and the small vector helpers they share.
 *
 * Every op is written as one thread's share of one node: elmi_cpu_op_compute
 * (node, work, ith, nth) does the part of the node that belongs to thread
 * ith of nth, so a caller can dispatch a node with one elmi_tp_run, or later
 * fuse several nodes into one dispatch. Nodes must pass elmi_cpu_op_check first;
 * the compute functions trust their shapes.
 */
#ifndef ELM_CPU_OPS_H
#define ELM_CPU_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/backend.h"

/* Alignment of buffers and of each thread's slice of the work buffer. */
#define CPU_ALIGN 64

/* The longest SHORTCONV kernel (taps per channel) the checks accept. */
#define SHORTCONV_MAX_L 64

/* ---------------------------------------------------------- validation */

/* Where a check is, for messages naming the node index, op and tensor. */
typedef struct cpu_check {
    int index;
    const be_node *node;
    char *err;
    size_t err_size;
} cpu_check;

/* Writes "node <index> (<op>): tensor '<name>' (<role>): <message>" to
 * c->err and returns `status`. t may be NULL (no tensor part). */
elm_status elmi_cpu_check_fail(const cpu_check *c, elm_status status, const be_tensor *t,
                          const char *role, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* A present, host-addressable tensor of `type` whose strides hold rows of
 * ne[0] values without overlap. `role` names it in messages ("src0"). */
elm_status elmi_cpu_check_tensor(const cpu_check *c, const be_tensor *t, const char *role, int type);

/* elmi_cpu_check_tensor of an F32 tensor of exactly (n0, n1, n2, n3). */
elm_status elmi_cpu_check_f32(const cpu_check *c, const be_tensor *t, const char *role, int64_t n0,
                         int64_t n1, int64_t n2, int64_t n3);

/* A 2-D F32 or F16 KV cache (any size). */
elm_status elmi_cpu_check_cache(const cpu_check *c, const be_tensor *t, const char *role);

/* Bytes from a tensor's element 0 to the end of its last row. False for an
 * unknown type, a row length that is not a multiple of the block size, a
 * non-positive dimension or an overflow. */
bool elmi_cpu_tensor_extent(const be_tensor *t, size_t *bytes);

/* Bytes of a row of n values of type t (F32, F16, BF16, I32 or any quant
 * type); false when unknown or not a whole number of blocks. */
bool elmi_cpu_row_bytes(int type, int64_t n, size_t *out);

/* Full validation of a node other than MUL_MAT's kernel support: shapes,
 * types, params and, where the input is data (token ids), its range.
 * Returns ELM_OK, ELM_ERR_INVALID_ARG or ELM_ERR_UNSUPPORTED. */
elm_status elmi_cpu_op_check(const be_node *node, int index, char *err, size_t err_size);

/* Whether the op/type combination is implemented (no shape checks). */
bool elmi_cpu_op_supported(const be_node *node);

/* --------------------------------------------------------------- compute */

/* Scratch bytes a validated non-MUL_MAT node needs with nth threads. */
size_t elmi_cpu_op_work_size(const be_node *node, int nth);

/* Thread ith's share of a validated non-MUL_MAT node. `work` holds at least
 * elmi_cpu_op_work_size(node, nth) bytes, CPU_ALIGN aligned. */
void elmi_cpu_op_compute(const be_node *node, void *work, int ith, int nth);

/* Fused pairs of adjacent nodes (cpu_backend.c decides when the data allows
 * it); each computes exactly what the two nodes compute one after another.
 * rope_store: a ROPE writing a contiguous (hd, nh, T) tensor, then the
 * KV_STORE of that tensor as (hd * nh, T): each thread rotates its heads and
 * stores them. add_rms_norm: an ADD, then the RMS_NORM of its sum: each
 * thread adds and normalizes whole rows. */
void elmi_cpu_rope_store(const be_node *rope, const be_node *store, int ith, int nth);
void elmi_cpu_add_rms_norm(const be_node *add, const be_node *norm, int ith, int nth);

/* Per-op entry points, for the dispatcher and the checks. */
elm_status elmi_cpu_rope_check(const cpu_check *c);
void elmi_cpu_rope(const be_node *node, int ith, int nth);
elm_status elmi_cpu_attention_check(const cpu_check *c);
elm_status elmi_cpu_argmax_check(const cpu_check *c);
void elmi_cpu_argmax(const be_node *node, int ith, int nth);
size_t elmi_cpu_attention_work_size(const be_node *node, int nth);
void elmi_cpu_attention(const be_node *node, void *work, int ith, int nth);
/* The batched path of attention_batch.c (several tokens, x86 SIMD), which
 * elmi_cpu_attention takes when it applies. */
bool elmi_cpu_attention_batch_applies(const be_node *node);
/* The first key position a query at position p reads: 0, or with a
 * window > 0, max(0, p - window + 1). */
int64_t elmi_cpu_attn_lo(int64_t p, int64_t window);
/* The next run of key positions [j0, j0 + n) of those below `end`: at most
 * `tile` of them, in consecutive cache rows from *row0 (ring_rows > 0: a
 * ring cache of that many rows, where a run ends at the wrap). Returns n. */
int64_t elmi_cpu_attn_run(int64_t j0, int64_t end, int64_t tile, int64_t ring_rows,
                          int64_t *row0);
/* One step of the online softmax over n scores of a query: rescales its
 * running sum l and accumulator acc (hd values) to the new running max m,
 * and leaves exp(score - m) in score. */
void elmi_cpu_softmax_fold(float *score, int64_t n, float *m, float *l, float *acc, int64_t hd);
size_t elmi_cpu_attention_batch_work_size(const be_node *node, int nth);
void elmi_cpu_attention_batch(const be_node *node, void *work, int ith, int nth);

/* --------------------------------------------------------------- helpers */

/* The cache row a validated KV_STORE writes token t of its batch to:
 * pos + t, or (pos + t) % n_rows with iparams[1] (ring). */
int64_t elmi_cpu_kv_row(const be_node *store, const be_tensor *cache, int64_t t);

/* [*begin, *end): thread ith's share of n items split as evenly as possible. */
void elmi_cpu_split(int64_t n, int ith, int nth, int64_t *begin, int64_t *end);

/* Rounds n up to a multiple of CPU_ALIGN. */
static inline size_t cpu_align_up(size_t n) {
    return (n + CPU_ALIGN - 1) & ~(size_t)(CPU_ALIGN - 1);
}

/* Row i1, i2, i3 of a tensor. */
static inline void *cpu_row(const be_tensor *t, int64_t i1, int64_t i2, int64_t i3) {
    return (char *)t->data + (size_t)i1 * t->nb[1] + (size_t)i2 * t->nb[2] + (size_t)i3 * t->nb[3];
}

/* y[i] = exp(x[i] - m) for i < n; returns the sum of the y[i]. */
float elmi_cpu_vec_exp_sum_f32(float *y, const float *x, float m, int64_t n);
/* z[i] = silu(x[i]) * g[i] = x[i] / (1 + exp(-x[i])) * g[i]; z may be x or g.
 * Each element's result does not depend on n or its place in the row. */
void elmi_cpu_vec_swiglu_f32(float *z, const float *x, const float *g, int64_t n);
/* z[i] = gelu(x[i]) * g[i], gelu the tanh form of backend.h, computed as
 * x / (1 + exp(-2u)) (u the tanh argument); z may be x or g. Within ~2e-6
 * of the value relative, or 1e-7 of |x * g| where the exponent's rounding
 * dominates (x around -3..-10, a tiny result). Each element's result does not
 * depend on n or its place in the row. */
void elmi_cpu_vec_geglu_f32(float *z, const float *x, const float *g, int64_t n);
/* z[i] = c * tanh(s * x[i] / c) (c > 0: a softcap of the scaled value);
 * z may be x. tanh within a few ulp; per element as the above. */
void elmi_cpu_vec_scale_softcap_f32(float *z, const float *x, float s, float c, int64_t n);
/* z[i] = s * x[i] (one rounding); z may be x. */
void elmi_cpu_vec_scale_to_f32(float *z, const float *x, float s, int64_t n);

/* IEEE half rows to and from F32 (round to nearest even), F16C when the
 * CPU has it. */
void elmi_cpu_fp16_to_f32_row(const uint16_t *restrict x, float *restrict y, int64_t n);
void elmi_cpu_f32_to_fp16_row(const float *restrict x, uint16_t *restrict y, int64_t n);

/* sum x[i] * y[i], accumulated in F32 lanes in a fixed order. */
float elmi_cpu_vec_dot_f32(const float *restrict x, const float *restrict y, int64_t n);
/* y[i] += a * x[i]. */
void elmi_cpu_vec_mad_f32(float *restrict y, const float *restrict x, float a, int64_t n);
/* Over n_rows rows of n values of type F32 or F16 (converted in registers),
 * row j at (const char *)rows + j * stride:
 * dot_rows: out[j] = dot(x, row j); mad_rows: y += sum_j a[j] * row j. */
void elmi_cpu_vec_dot_rows(int type, const float *x, const void *rows, size_t stride, int64_t n_rows,
                      int64_t n, float *out);
void elmi_cpu_vec_mad_rows(int type, float *y, const void *rows, size_t stride, const float *a,
                      int64_t n_rows, int64_t n);
/* y[i] *= a. */
void elmi_cpu_vec_scale_f32(float *y, float a, int64_t n);
/* z[i] = x[i] + y[i]; z may be x or y. */
void elmi_cpu_vec_add_f32(float *z, const float *x, const float *y, int64_t n);
/* z[i] = x[i] * a * w[i]; z may be x. */
void elmi_cpu_vec_scale_mul_f32(float *z, const float *x, float a, const float *w, int64_t n);

#endif /* ELM_CPU_OPS_H */
