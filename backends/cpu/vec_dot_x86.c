/*
 * vec_dot_x86.c: AVX2 and AVX-512 (VNNI) dot kernels, and the x86 feature
 * detection. Each function carries its own target attribute, so the library
 * builds for baseline x86-64 and the kernels run only where vec_dot.c found
 * the instructions.
 *
 * The quantized types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K and Q6_K take the
 * dot kernels made of the tiled kernels (gemm_x86.c: bit-identical to the
 * reference vec_dot, so a token's products are the same alone or in a
 * batch of any size). This file keeps the float rows; vec_dot_x86_k.c Q5_K.
 */
#include "backends/cpu/vec_dot.h"

#if defined(__x86_64__) || defined(__i386__)

#include <cpuid.h>
#include <stdatomic.h>

#include "backends/cpu/gemm.h"
#include "backends/cpu/simd_x86.h"

/* ------------------------------------------------- F32, F16, BF16 rows */

TGT_AVX2 INLINE __m256 load8_f32(const float *p) { return _mm256_loadu_ps(p); }
TGT_AVX2 INLINE __m256 load8_f16(const elm_fp16 *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}
TGT_AVX2 INLINE __m256 load8_bf16(const elm_bf16 *p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}
TGT_AVX2 INLINE float load1_f32(const float *p) { return *p; }
TGT_AVX2 INLINE float load1_f16(const elm_fp16 *p) { return fp16(*p); }
TGT_AVX2 INLINE float load1_bf16(const elm_bf16 *p) {
    uint32_t u = (uint32_t)*p << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Four accumulators over 32-value steps, one over the 8-value rest, then
 * element by element: a fixed order for a given n. */
#define FLOAT_DOT(T, ctype)                                                                        \
    TGT_AVX2 static float dot1_##T(int64_t n, const ctype *x, const ctype *y) {                    \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                                \
        int64_t i = 0;                                                                             \
        for (; i + 32 <= n; i += 32) {                                                             \
            a0 = _mm256_fmadd_ps(load8_##T(x + i), load8_##T(y + i), a0);                          \
            a1 = _mm256_fmadd_ps(load8_##T(x + i + 8), load8_##T(y + i + 8), a1);                  \
            a2 = _mm256_fmadd_ps(load8_##T(x + i + 16), load8_##T(y + i + 16), a2);                \
            a3 = _mm256_fmadd_ps(load8_##T(x + i + 24), load8_##T(y + i + 24), a3);                \
        }                                                                                          \
        for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(load8_##T(x + i), load8_##T(y + i), a0);   \
        float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));          \
        for (; i < n; i++) sum += load1_##T(x + i) * load1_##T(y + i);                             \
        return sum;                                                                                \
    }                                                                                              \
    TGT_AVX2 static void dot_##T##_avx2(DOT_PARAMS) {                                              \
        for (int r = 0; r < nr; r++)                                                               \
            for (int j = 0; j < nt; j++)                                                           \
                s[r + (size_t)j * ss] = dot1_##T(n, (const ctype *)((const char *)x + r * bx),     \
                                                 (const ctype *)((const char *)y + j * by));       \
    }
FLOAT_DOT(f32, float)
FLOAT_DOT(f16, elm_fp16)
FLOAT_DOT(bf16, elm_bf16)

/* ------------------------------------------------------------ detection */

typedef struct x86_features {
    bool avx2, avx512;
} x86_features;

static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ __volatile__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static x86_features x86_detect(void) {
    x86_features f = {0};
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
    bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28),
         f16c = c & (1u << 29);
    if (!osxsave || !avx) return f;
    uint64_t xcr0 = xgetbv0();
    if ((xcr0 & 0x6) != 0x6) return f; /* the OS saves the YMM state */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
    f.avx2 = (b & (1u << 5)) && fma && f16c;
    bool avx512 = (b & (1u << 16)) && (b & (1u << 30)) && (b & (1u << 31)); /* F, BW, VL */
    bool vnni = c & (1u << 11);
    f.avx512 = f.avx2 && avx512 && vnni && (xcr0 & 0xE0) == 0xE0; /* and the ZMM state */
    return f;
}

/* cpuid is slow (a VM exit under a hypervisor): detect once. */
static x86_features x86_features_once(void) {
    static _Atomic int done; /* 0: not yet, 1 + avx2 + 2 * avx512 after */
    int v = atomic_load_explicit(&done, memory_order_relaxed);
    if (!v) {
        x86_features f = x86_detect();
        v = 1 + (f.avx2 ? 1 : 0) + (f.avx512 ? 2 : 0);
        atomic_store_explicit(&done, v, memory_order_relaxed);
    }
    return (x86_features){.avx2 = (v - 1) & 1, .avx512 = (v - 1) & 2};
}

bool elmi_cpu_x86_supports(cpu_simd level) {
    x86_features f = x86_features_once();
    if (level == CPU_SIMD_AVX2) return f.avx2;
    if (level == CPU_SIMD_AVX512VNNI) return f.avx512;
    return false;
}

void elmi_cpu_fill_x86(cpu_simd level, cpu_dot_fn dot[QT_COUNT], cpu_quantize_fn quant[QT_COUNT]) {
    (void)quant;
    elmi_cpu_fill_x86_k(level, dot);
    if (level == CPU_SIMD_AVX2) {
        dot[QT_F32] = dot_f32_avx2;
        dot[QT_F16] = dot_f16_avx2;
        dot[QT_BF16] = dot_bf16_avx2;
    }
    elmi_cpu_fill_gemm_dots_x86(level, dot);
    elmi_cpu_fill_matvec_x86(level, dot);
}

bool elmi_cpu_vec_dot_is_reference(int type, cpu_simd level) {
    if (level == CPU_SIMD_SCALAR) return true;
    return elmi_cpu_gemm_at(type, level) && !elmi_cpu_matvec_x86_has(type, level);
}

#else /* not x86 */

bool elmi_cpu_vec_dot_is_reference(int type, cpu_simd level) {
    (void)type;
    return level == CPU_SIMD_SCALAR;
}

bool elmi_cpu_x86_supports(cpu_simd level) {
    (void)level;
    return false;
}

void elmi_cpu_fill_x86(cpu_simd level, cpu_dot_fn dot[QT_COUNT], cpu_quantize_fn quant[QT_COUNT]) {
    (void)level;
    (void)dot;
    (void)quant;
}

#endif
