/* vec.c: the small vector loops the CPU ops share. Each has an AVX2 (or
 * F16C) body compiled with a target attribute, used when the active SIMD
 * level of vec_dot.h is AVX2 or above (so EDGELM_SIMD=scalar forces the
 * fallback here too), and a scalar fallback; gcc -O2 does not vectorize
 * loops of unknown length, so the hot ones are written with intrinsics. */
#include <math.h>

#include "backends/cpu/ops.h"
#include "backends/cpu/vec_dot.h"
#include "quant/quant.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_X86 1
#else
#define CPU_X86 0
#endif

#define GELU_K 0.79788456080286535588f /* sqrt(2 / pi) */
#define GELU_C 0.044715f

void elmi_cpu_split(int64_t n, int ith, int nth, int64_t *begin, int64_t *end) {
    int64_t per = n / nth, extra = n % nth;
    *begin = ith * per + (ith < extra ? ith : extra);
    *end = *begin + per + (ith < extra ? 1 : 0);
}

#if CPU_X86
/* The AVX2 level includes FMA and F16C. */
static bool has_avx2(void) {
    cpu_simd l = elmi_cpu_simd_active();
    return l == CPU_SIMD_AVX2 || l == CPU_SIMD_AVX512VNNI;
}

static bool has_f16c(void) {
    return has_avx2();
}

__attribute__((target("avx2,fma"))) static float hsum_avx(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma"))) static float dot_avx2(const float *restrict x,
                                                          const float *restrict y, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
    }
    if (i + 8 <= n) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
        i += 8;
    }
    float s = hsum_avx(_mm256_add_ps(a0, a1));
    for (; i < n; i++) s += x[i] * y[i];
    return s;
}

__attribute__((target("avx2,fma"))) static void mad_avx2(float *restrict y, const float *restrict x,
                                                         float a, int64_t n) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i,
                         _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

__attribute__((target("avx2,fma"))) static void scale_avx2(float *y, float a, int64_t n) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(va, _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] *= a;
}

__attribute__((target("avx2,fma"))) static void scale_to_avx2(float *z, const float *x, float a,
                                                              int64_t n) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(z + i, _mm256_mul_ps(va, _mm256_loadu_ps(x + i)));
    for (; i < n; i++) z[i] = a * x[i];
}

__attribute__((target("avx2,fma"))) static void add_avx2(float *z, const float *x, const float *y,
                                                         int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(z + i, _mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) z[i] = x[i] + y[i];
}

__attribute__((target("avx2,fma"))) static void scale_mul_avx2(float *z, const float *x, float a,
                                                               const float *w, int64_t n) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), va);
        _mm256_storeu_ps(z + i, _mm256_mul_ps(v, _mm256_loadu_ps(w + i)));
    }
    for (; i < n; i++) z[i] = x[i] * a * w[i];
}

__attribute__((target("avx2,fma,f16c"))) static float
dot_f16_avx2(const float *restrict x, const uint16_t *restrict y, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 y0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(y + i)));
        __m256 y1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(y + i + 8)));
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), y0, a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), y1, a1);
    }
    if (i + 8 <= n) {
        __m256 y0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(y + i)));
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), y0, a0);
        i += 8;
    }
    float s = hsum_avx(_mm256_add_ps(a0, a1));
    for (; i < n; i++) s += x[i] * elmi_fp16_to_f32(y[i]);
    return s;
}

__attribute__((target("avx2,fma,f16c"))) static void
mad_f16_avx2(float *restrict y, const uint16_t *restrict x, float a, int64_t n) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i)));
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, v, _mm256_loadu_ps(y + i)));
    }
    for (; i < n; i++) y[i] += a * elmi_fp16_to_f32(x[i]);
}

__attribute__((target("avx,f16c"))) static void fp16_to_f32_f16c(const uint16_t *restrict x,
                                                                 float *restrict y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
    for (; i < n; i++) y[i] = elmi_fp16_to_f32(x[i]);
}

__attribute__((target("avx,f16c"))) static void f32_to_fp16_f16c(const float *restrict x,
                                                                 uint16_t *restrict y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) y[i] = elmi_f32_to_fp16(x[i]);
}

/* One call per tile of cache rows, so the per-call cost (dispatch,
 * horizontal sum setup) is paid once per tile, not per row. */
__attribute__((target("avx2,fma,f16c"))) static void dot_rows_avx2(int type, const float *x,
                                                                   const char *rows, size_t stride,
                                                                   int64_t n_rows, int64_t n,
                                                                   float *out) {
    for (int64_t j = 0; j < n_rows; j++, rows += stride)
        out[j] = type == QT_F16 ? dot_f16_avx2(x, (const uint16_t *)rows, n)
                                : dot_avx2(x, (const float *)rows, n);
}

__attribute__((target("avx2,fma,f16c"))) static void mad_rows_avx2(int type, float *y,
                                                                   const char *rows, size_t stride,
                                                                   const float *a, int64_t n_rows,
                                                                   int64_t n) {
    for (int64_t j = 0; j < n_rows; j++, rows += stride) {
        if (type == QT_F16)
            mad_f16_avx2(y, (const uint16_t *)rows, a[j], n);
        else
            mad_avx2(y, (const float *)rows, a[j], n);
    }
}

/* exp(x) for 8 lanes: x = n ln2 + r with |r| <= ln2 / 2 (ln2 split in two
 * parts, so r is exact enough), exp(r) by a degree-7 polynomial (Horner
 * with FMA; relative error about 1 ulp), times 2^n as two factors of
 * exponent bits (so subnormal results come out right). Inputs are clamped
 * to [-104, ln(FLT_MAX)]: below, the result is 0 anyway; NaN stays NaN
 * (min/max return their second operand, x, for a NaN). */
__attribute__((target("avx2,fma"))) static inline __m256 exp_avx2(__m256 x) {
    x = _mm256_max_ps(_mm256_set1_ps(-104.0f), x);
    x = _mm256_min_ps(_mm256_set1_ps(88.7228f), x);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
    p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
    /* n in [-150, 128]: 2^n = 2^e1 * 2^e2, each factor a normal float. */
    __m256i e = _mm256_cvtps_epi32(n);
    __m256i e1 = _mm256_srai_epi32(e, 1), e2 = _mm256_sub_epi32(e, e1);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e1, _mm256_set1_epi32(127)), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e2, _mm256_set1_epi32(127)), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

/* Up to 8 floats from p, zeros past n. */
__attribute__((target("avx2,fma"))) static inline __m256 load_part(const float *p, int64_t n) {
    float b[8] = {0};
    for (int64_t i = 0; i < n; i++) b[i] = p[i];
    return _mm256_loadu_ps(b);
}

__attribute__((target("avx2,fma"))) static inline void store_part(float *p, __m256 v, int64_t n) {
    float b[8];
    _mm256_storeu_ps(b, v);
    for (int64_t i = 0; i < n; i++) p[i] = b[i];
}

__attribute__((target("avx2,fma"))) static float exp_sum_avx2(float *y, const float *x, float m,
                                                              int64_t n) {
    const __m256 vm = _mm256_set1_ps(m);
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(y + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    if (i < n) {
        __m256 e = exp_avx2(_mm256_sub_ps(load_part(x + i, n - i), vm));
        store_part(y + i, e, n - i);
        /* lanes past n hold exp(-m): keep them out of the sum */
        __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        __m256 keep = _mm256_castsi256_ps(
            _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n - i)), lane));
        acc = _mm256_add_ps(acc, _mm256_and_ps(e, keep));
    }
    return hsum_avx(acc);
}

__attribute__((target("avx2,fma"))) static inline __m256 swiglu8(__m256 x, __m256 g) {
    __m256 e = exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), x));
    return _mm256_mul_ps(_mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), g);
}

__attribute__((target("avx2,fma"))) static void swiglu_avx2(float *z, const float *x,
                                                            const float *g, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(z + i, swiglu8(_mm256_loadu_ps(x + i), _mm256_loadu_ps(g + i)));
    if (i < n) store_part(z + i, swiglu8(load_part(x + i, n - i), load_part(g + i, n - i)), n - i);
}

/* gelu(x) * g, as x / (1 + exp(-2u)) * g with u = sqrt(2/pi) (x + 0.044715 x^3):
 * 0.5 (1 + tanh(u)) = 1 / (1 + exp(-2u)), which has no cancellation for
 * negative x. Huge |x| saturate through exp's clamp (x or a signed tiny). */
__attribute__((target("avx2,fma"))) static inline __m256 geglu8(__m256 x, __m256 g) {
    __m256 inner = _mm256_fmadd_ps(_mm256_set1_ps(GELU_C), _mm256_mul_ps(x, x), _mm256_set1_ps(1.0f));
    __m256 t = _mm256_mul_ps(_mm256_mul_ps(x, inner), _mm256_set1_ps(-2.0f * GELU_K));
    __m256 e = exp_avx2(t);
    return _mm256_mul_ps(_mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), g);
}

__attribute__((target("avx2,fma"))) static void geglu_avx2(float *z, const float *x,
                                                           const float *g, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(z + i, geglu8(_mm256_loadu_ps(x + i), _mm256_loadu_ps(g + i)));
    if (i < n) store_part(z + i, geglu8(load_part(x + i, n - i), load_part(g + i, n - i)), n - i);
}

/* tanh for 8 lanes (the Cephes tanhf scheme): below |y| = 0.625 an odd
 * polynomial, y + y^3 P(y^2); above, 1 - 2 / (exp(2|y|) + 1) with y's sign.
 * A few ulp either way; saturates to +-1, NaN stays NaN. */
__attribute__((target("avx2,fma"))) static inline __m256 tanh_avx2(__m256 y) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 a = _mm256_andnot_ps(sign, y);
    __m256 z = _mm256_mul_ps(y, y);
    __m256 p = _mm256_set1_ps(-5.70498872745e-3f);
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(2.06390887954e-2f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-5.37397155531e-2f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.33314422036e-1f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.33332819422e-1f));
    __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), y, y);
    __m256 e = exp_avx2(_mm256_add_ps(a, a));
    __m256 big = _mm256_sub_ps(_mm256_set1_ps(1.0f),
                               _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, _mm256_set1_ps(1.0f))));
    big = _mm256_or_ps(big, _mm256_and_ps(sign, y));
    return _mm256_blendv_ps(big, small, _mm256_cmp_ps(a, _mm256_set1_ps(0.625f), _CMP_LT_OQ));
}

__attribute__((target("avx2,fma"))) static inline __m256 softcap8(__m256 y, __m256 c, __m256 inv_c) {
    return _mm256_mul_ps(c, tanh_avx2(_mm256_mul_ps(y, inv_c)));
}

__attribute__((target("avx2,fma"))) static void scale_softcap_avx2(float *z, const float *x,
                                                                   float s, float c, int64_t n) {
    const __m256 vs = _mm256_set1_ps(s), vc = _mm256_set1_ps(c), vi = _mm256_set1_ps(1.0f / c);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(z + i, softcap8(_mm256_mul_ps(vs, _mm256_loadu_ps(x + i)), vc, vi));
    if (i < n) store_part(z + i, softcap8(_mm256_mul_ps(vs, load_part(x + i, n - i)), vc, vi), n - i);
}
#endif

/* The scalar paths keep 8 independent lanes, like the SIMD ones, so their
 * sums do not depend on one long dependency chain. */
float elmi_cpu_vec_dot_f32(const float *restrict x, const float *restrict y, int64_t n) {
#if CPU_X86
    if (has_avx2()) return dot_avx2(x, y, n);
#endif
    float lane[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) lane[j] += x[i + j] * y[i + j];
    float s = 0.0f;
    for (int j = 0; j < 8; j++) s += lane[j];
    for (; i < n; i++) s += x[i] * y[i];
    return s;
}

static float dot_f16_scalar(const float *restrict x, const uint16_t *restrict y, int64_t n) {
    float lane[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) lane[j] += x[i + j] * elmi_fp16_to_f32(y[i + j]);
    float s = 0.0f;
    for (int j = 0; j < 8; j++) s += lane[j];
    for (; i < n; i++) s += x[i] * elmi_fp16_to_f32(y[i]);
    return s;
}

void elmi_cpu_vec_dot_rows(int type, const float *x, const void *rows, size_t stride, int64_t n_rows,
                      int64_t n, float *out) {
#if CPU_X86
    if (has_avx2()) {
        dot_rows_avx2(type, x, rows, stride, n_rows, n, out);
        return;
    }
#endif
    const char *r = rows;
    for (int64_t j = 0; j < n_rows; j++, r += stride)
        out[j] = type == QT_F16 ? dot_f16_scalar(x, (const uint16_t *)r, n)
                                : elmi_cpu_vec_dot_f32(x, (const float *)r, n);
}

void elmi_cpu_vec_mad_rows(int type, float *y, const void *rows, size_t stride, const float *a,
                      int64_t n_rows, int64_t n) {
#if CPU_X86
    if (has_avx2()) {
        mad_rows_avx2(type, y, rows, stride, a, n_rows, n);
        return;
    }
#endif
    const char *r = rows;
    for (int64_t j = 0; j < n_rows; j++, r += stride) {
        if (type == QT_F16) {
            const uint16_t *v = (const uint16_t *)r;
            for (int64_t i = 0; i < n; i++) y[i] += a[j] * elmi_fp16_to_f32(v[i]);
        } else {
            elmi_cpu_vec_mad_f32(y, (const float *)r, a[j], n);
        }
    }
}

void elmi_cpu_vec_mad_f32(float *restrict y, const float *restrict x, float a, int64_t n) {
#if CPU_X86
    if (has_avx2()) {
        mad_avx2(y, x, a, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

void elmi_cpu_vec_scale_f32(float *y, float a, int64_t n) {
#if CPU_X86
    if (has_avx2()) {
        scale_avx2(y, a, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) y[i] *= a;
}

void elmi_cpu_vec_add_f32(float *z, const float *x, const float *y, int64_t n) {
#if CPU_X86
    if (has_avx2()) {
        add_avx2(z, x, y, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) z[i] = x[i] + y[i];
}

void elmi_cpu_vec_scale_mul_f32(float *z, const float *x, float a, const float *w, int64_t n) {
#if CPU_X86
    if (has_avx2()) {
        scale_mul_avx2(z, x, a, w, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) z[i] = x[i] * a * w[i];
}

void elmi_cpu_fp16_to_f32_row(const uint16_t *restrict x, float *restrict y, int64_t n) {
#if CPU_X86
    if (has_f16c()) {
        fp16_to_f32_f16c(x, y, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) y[i] = elmi_fp16_to_f32(x[i]);
}

void elmi_cpu_f32_to_fp16_row(const float *restrict x, uint16_t *restrict y, int64_t n) {
#if CPU_X86
    if (has_f16c()) {
        f32_to_fp16_f16c(x, y, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) y[i] = elmi_f32_to_fp16(x[i]);
}

/* y[i] = exp(x[i] - m), returns their sum. The AVX2 path computes every
 * element the same way wherever it falls in the row (the tail goes through
 * the same 8-lane code), so results do not depend on how rows are cut. */
float elmi_cpu_vec_exp_sum_f32(float *y, const float *x, float m, int64_t n) {
#if CPU_X86
    if (has_avx2()) return exp_sum_avx2(y, x, m, n);
#endif
    float lane[8] = {0};
    for (int64_t i = 0; i < n; i++) {
        y[i] = expf(x[i] - m);
        lane[i % 8] += y[i];
    }
    float s = 0.0f;
    for (int j = 0; j < 8; j++) s += lane[j];
    return s;
}

void elmi_cpu_vec_swiglu_f32(float *z, const float *x, const float *g, int64_t n) {
#if CPU_X86
    if (has_avx2()) {
        swiglu_avx2(z, x, g, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) z[i] = x[i] / (1.0f + expf(-x[i])) * g[i];
}

void elmi_cpu_vec_geglu_f32(float *z, const float *x, const float *g, int64_t n) {
#if CPU_X86
    if (has_avx2()) {
        geglu_avx2(z, x, g, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) {
        float v = x[i], t = v * (1.0f + GELU_C * (v * v)) * (-2.0f * GELU_K);
        z[i] = v / (1.0f + expf(t)) * g[i];
    }
}

/* Scalar: 1 / c rounded once, as the AVX2 path, then tanhf. */
void elmi_cpu_vec_scale_softcap_f32(float *z, const float *x, float s, float c, int64_t n) {
#if CPU_X86
    if (has_avx2()) {
        scale_softcap_avx2(z, x, s, c, n);
        return;
    }
#endif
    float inv_c = 1.0f / c;
    for (int64_t i = 0; i < n; i++) z[i] = c * tanhf((s * x[i]) * inv_c);
}

void elmi_cpu_vec_scale_to_f32(float *z, const float *x, float s, int64_t n) {
#if CPU_X86
    if (has_avx2()) {
        scale_to_avx2(z, x, s, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) z[i] = s * x[i];
}
