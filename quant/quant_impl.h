/*
 * quant_impl.h: the scalar reference kernels behind the traits table. Private
 * to quant/; everything else reaches them through elmi_qtype_get().
 */
#ifndef ELM_QUANT_IMPL_H
#define ELM_QUANT_IMPL_H

#include <stdint.h>

#include "quant/quant.h"

#define QREF_DECL(t)                                                                               \
    void elmi_qref_##t##_to_float(const void *restrict src, float *restrict dst, int64_t n);            \
    void elmi_qref_##t##_from_float(const float *restrict src, void *restrict dst, int64_t n)
#define QREF_DOT(t)                                                                                \
    void elmi_qref_##t##_vec_dot(int64_t n, float *restrict s, const void *restrict x,                  \
                            const void *restrict y)

QREF_DECL(f32);
QREF_DECL(f16);
QREF_DECL(bf16);
QREF_DECL(q4_0);
QREF_DECL(q4_1);
QREF_DECL(q5_0);
QREF_DECL(q5_1);
QREF_DECL(q8_0);
QREF_DECL(q8_1);
QREF_DECL(q2_K);
QREF_DECL(q3_K);
QREF_DECL(q4_K);
QREF_DECL(q5_K);
QREF_DECL(q6_K);
QREF_DECL(q8_K);

QREF_DOT(f32);
QREF_DOT(f16);
QREF_DOT(bf16);
QREF_DOT(q4_0);
QREF_DOT(q4_1);
QREF_DOT(q5_0);
QREF_DOT(q5_1);
QREF_DOT(q8_0);
QREF_DOT(q2_K);
QREF_DOT(q3_K);
QREF_DOT(q4_K);
QREF_DOT(q5_K);
QREF_DOT(q6_K);

/* Round to nearest, ties to even, for |v| < 2^22 (the float magic-number
 * trick, so it never depends on the FPU rounding mode). */
static inline int qref_nearest_int(float v) {
    union {
        float f;
        int32_t i;
    } u = {v + 12582912.f};
    return (u.i & 0x007fffff) - 0x00400000;
}

/* Clamps v to [lo, hi]; NaN maps to lo, so no float->int conversion is UB. */
static inline int qref_clamp_trunc(float v, int lo, int hi) {
    if (!(v >= (float)lo)) return lo;
    if (v >= (float)hi) return hi;
    return (int)v;
}

static inline int qref_clamp_nearest(float v, int lo, int hi) {
    if (!(v >= (float)lo)) return lo;
    if (v >= (float)hi) return hi;
    return qref_nearest_int(v);
}

/* Best x ~ s * q - m with q in [0, nmax], s >= 0, m >= 0 (least squares over
 * a sweep of candidate grids). Returns s, stores m. */
float elmi_qfit_asym(const float *x, int n, int nmax, float *m);

/* Best x ~ s * q with q in [-nmax, nmax - 1]. Returns s (any sign). */
float elmi_qfit_sym(const float *x, int n, int nmax);

#endif /* ELM_QUANT_IMPL_H */
