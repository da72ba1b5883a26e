/*
 * simd_x86.h: what the x86 kernel files share. Only for files compiled on
 * x86; every function carries its target attribute, so callers must have
 * one that includes it.
 */
#ifndef ELM_CPU_SIMD_X86_H
#define ELM_CPU_SIMD_X86_H

#include <immintrin.h>
#include <string.h>

#include "backends/cpu/vec_dot.h"

#define TGT_AVX2 __attribute__((target("avx2,fma,f16c")))
#define TGT_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define INLINE static inline __attribute__((always_inline))
#define PRAGMA(x) _Pragma(#x)
/* Full unrolling keeps per-token accumulators in registers. */
#define UNROLL(n) PRAGMA(GCC unroll n)

_Static_assert(CPU_DOT_MAX_NT == 4, "DISPATCH_NT handles 1..4 tokens");

/* The cpu_dot_fn parameters, named as DISPATCH_NT expects them. */
#define DOT_PARAMS                                                                                 \
    int64_t n, int nr, const void *restrict x, size_t bx, const void *restrict y, size_t by,       \
        int nt, float *restrict s, size_t ss

/* Runs a kernel body (n, out, x_row, y, by, nt) row by row, instantiated for
 * a constant nt so its accumulators stay in registers; each instance does
 * the same arithmetic per token. */
#define DISPATCH_NT(body)                                                                          \
    for (int r = 0; r < nr; r++) {                                                                 \
        const void *xr = (const char *)x + (size_t)r * bx;                                         \
        float out[CPU_DOT_MAX_NT];                                                                 \
        switch (nt) {                                                                              \
        case 1: body(n, out, xr, y, by, 1); break;                                                 \
        case 2: body(n, out, xr, y, by, 2); break;                                                 \
        case 3: body(n, out, xr, y, by, 3); break;                                                 \
        default: body(n, out, xr, y, by, 4); break;                                                \
        }                                                                                          \
        for (int j = 0; j < nt; j++) s[r + (size_t)j * ss] = out[j];                               \
    }

#define YROW(type, j) ((const type *)(const void *)((const char *)vy + (size_t)(j)*by))

TGT_AVX2 INLINE float fp16(elm_fp16 h) { return _cvtsh_ss(h); }

/* Fixed order: halves, then pairs, then the last two lanes. */
TGT_AVX2 INLINE float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The 8 six-bit scales (as int16) and the 8 mins, each twice (to pair with
 * the 16 bsums of Q8_K), of a packed Q4_K/Q5_K `scales` array: the layout of
 * get_scale_min_k4, four values per 32-bit word. */
TGT_AVX2 INLINE void k4_scales_mins(const uint8_t *packed, __m128i *sc, __m256i *mins2) {
    uint32_t u[3];
    memcpy(u, packed, sizeof u);
    const uint32_t m6 = 0x3F3F3F3F, m4 = 0x0F0F0F0F, m2 = 0x03030303;
    uint32_t sc_lo = u[0] & m6, mn_lo = u[1] & m6;
    uint32_t sc_hi = (u[2] & m4) | ((u[0] >> 6) & m2) << 4;
    uint32_t mn_hi = ((u[2] >> 4) & m4) | ((u[1] >> 6) & m2) << 4;
    __m128i m8 = _mm_setr_epi32((int)mn_lo, (int)mn_hi, 0, 0);
    *sc = _mm_cvtepu8_epi16(_mm_setr_epi32((int)sc_lo, (int)sc_hi, 0, 0));
    *mins2 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8));
}

INLINE elm_fp16 ld16(const void *p) {
    elm_fp16 h;
    memcpy(&h, p, sizeof h);
    return h;
}

/* Kernels of vec_dot_x86_k.c for `level`: Q5_K, and the AVX2 one-token
 * row kernels of Q4_K and Q6_K (filled after the tiled kernels' dots). */
void elmi_cpu_fill_x86_k(cpu_simd level, cpu_dot_fn dot[QT_COUNT]);
void elmi_cpu_fill_x86_k_rows(cpu_simd level, cpu_dot_fn dot[QT_COUNT]);
/* The one-token row kernels of matvec_x86.c for `level` (they replace the
 * tiled kernels' dots where they exist). */
void elmi_cpu_fill_matvec_x86(cpu_simd level, cpu_dot_fn dot[QT_COUNT]);
bool elmi_cpu_matvec_x86_has(int type, cpu_simd level);

#endif
