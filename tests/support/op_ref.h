/*
 * op_ref.h: scalar references of the graph ops, in double, written from the
 * op definitions in backends/backend.h and nothing else. Every backend's op
 * tests compare against these (test_cpu_ops.c, test_vk_ops.c).
 *
 * Arrays are dense and row-major with the first index contiguous, as the
 * backend tensors: x (n, rows) is x[i + r * n]. Caches are passed as F32
 * values (convert an F16 cache first), row j at cache + j * row_len.
 */
#ifndef ELM_TEST_OP_REF_H
#define ELM_TEST_OP_REF_H

#include <stdbool.h>
#include <stdint.h>

/* RMS_NORM: out (n, rows) = x / sqrt(mean(x^2) + eps) * w, per row of n. */
void elm_ref_rms_norm(const float *x, const float *w, float eps, int64_t n, int64_t rows,
                      double *out);

/* GLU: out[i] = act(g[i]) * u[i], act BE_GLU_SILU or BE_GLU_GELU_TANH. */
void elm_ref_glu(int act, const float *g, const float *u, int64_t n, double *out);
/* The activations alone. */
double elm_ref_silu(double x);
double elm_ref_gelu_tanh(double x);

/* SCALE: out = s * x, then c * tanh(out / c) when c > 0. */
void elm_ref_scale(const float *x, int64_t n, float s, float softcap, double *out);

/* MUL: out (n, rows) = x * y, y (n, rows), or (n) when y_rows is 1. */
void elm_ref_mul(const float *x, const float *y, int64_t n, int64_t rows, int64_t y_rows,
                 double *out);

/* SOFTMAX: each row of n of x (n, rows): out = exp(s x - max) / sum. */
void elm_ref_softmax(const float *x, float s, int64_t n, int64_t rows, double *out);

/* MUL_MAT: out (N, T) = w (K, N) . x (K, T) + bias (N, or NULL), the weights
 * given as their dequantized F32 values. */
void elm_ref_mul_mat(const float *w, const float *x, const float *bias, int64_t K, int64_t N,
                     int64_t T, double *out);

/* ROPE without YaRN: x (hd, nh, T), positions pos (T), optional frequency
 * factors ff (n_rot / 2); mode BE_ROPE_NORM or BE_ROPE_NEOX; out as x. */
typedef struct elm_ref_rope {
    int mode, n_rot, hd, nh, T;
    double freq_base, freq_scale, attn_factor;
} elm_ref_rope;
void elm_ref_rope_apply(const elm_ref_rope *r, const float *x, const int32_t *pos, const float *ff,
                        double *out);

/* The rows of the cache a KV_STORE of T tokens at pos writes: row[t]. */
void elm_ref_kv_rows(int pos, int T, int n_rows, bool ring, int64_t *row);

/* ATTENTION, as backend.h defines it. q (hd, nh, T); K, V (hd * nkv, n_rows)
 * as F32 values; out (hd * nh, T). window 0 = none. */
typedef struct elm_ref_attn {
    int hd, nh, nkv, T, pos, n_rows, window;
    bool ring;
    double scale, softcap;
} elm_ref_attn;
void elm_ref_attention(const elm_ref_attn *a, const float *q, const float *K, const float *V,
                       double *out);

/* SHORTCONV, as backend.h defines it. bcx (3n, T); w (L, n); state (n,
 * n_rows), read and updated in place (the stored bx rows are rounded to
 * F32 as the op stores them); out (n, T). */
void elm_ref_shortconv(const float *bcx, const float *w, float *state, int n, int L, int T,
                       int pos, int n_rows, double *out);

/* Quantizes rows x k values of src to `type` with quant/'s scalar
 * reference (malloc'd, rows of elmi_qtype_row_bytes); deq (rows x k)
 * receives their exact dequantization, the values a kernel must multiply.
 * NULL for an unknown type, rows not whole blocks, or no memory. */
void *elm_ref_quantize_rows(int type, const float *src, int64_t rows, int64_t k, float *deq);

#endif
