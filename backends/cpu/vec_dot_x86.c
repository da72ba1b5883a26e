/*
 * vec_dot_x86.c: AVX2 and AVX-512 (VNNI) dot kernels. Each function carries
 * its own target attribute, so the library builds for baseline x86-64 and
 * the kernels run only where vec_dot.c found the instructions.
 */
#include "backends/cpu/vec_dot.h"

#if defined(__x86_64__) || defined(__i386__)

#include <cpuid.h>

#include "backends/cpu/simd_x86.h"

/* The 32 values of a Q4_0/Q4_1 nibble array (low nibbles first), 0..15. */
TGT_AVX2 INLINE __m256i nibbles(const uint8_t *qs) {
    __m128i b = _mm_loadu_si128((const __m128i *)qs);
    __m256i v = _mm256_set_m128i(_mm_srli_epi16(b, 4), b);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

/* 0xFF in byte j where bit j of the 32-bit little-endian qh is set. */
TGT_AVX2 INLINE __m256i fifth_bits(const uint8_t qh[4]) {
    uint32_t bits;
    memcpy(&bits, qh, sizeof bits);
    const __m256i spread =
        _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), spread);
    /* Byte b of each 8: all bits but bit b set, so only bit b decides. */
    v = _mm256_or_si256(v, _mm256_set1_epi64x(0x7FBFDFEFF7FBFDFE));
    return _mm256_cmpeq_epi8(v, _mm256_set1_epi8(-1));
}

/* The halves at p, p + stride, ..., p + 7 * stride, widened. (Inserts:
 * gathers are slow on CPUs with the gather data sampling mitigation, and
 * assembling them in general registers makes a longer dependency chain.) */
TGT_AVX2 INLINE __m256 fp16x8(const char *p, size_t stride) {
    __m128i h = _mm_setr_epi16((short)ld16(p), (short)ld16(p + stride), (short)ld16(p + 2 * stride),
                               (short)ld16(p + 3 * stride), (short)ld16(p + 4 * stride),
                               (short)ld16(p + 5 * stride), (short)ld16(p + 6 * stride),
                               (short)ld16(p + 7 * stride));
    return _mm256_cvtph_ps(h);
}

/* The 32-value block formats; every one starts with its fp16 d, the *_1
 * ones follow it with their fp16 m (and the Q8_1 activations with s). */
typedef enum blk_kind { BLK_Q4_0, BLK_Q5_0, BLK_Q8_0, BLK_Q4_1, BLK_Q5_1 } blk_kind;

INLINE bool blk_has_min(blk_kind k) { return k == BLK_Q4_1 || k == BLK_Q5_1; }

INLINE size_t blk_bytes(blk_kind k) {
    switch (k) {
    case BLK_Q4_0: return sizeof(block_q4_0);
    case BLK_Q5_0: return sizeof(block_q5_0);
    case BLK_Q8_0: return sizeof(block_q8_0);
    case BLK_Q4_1: return sizeof(block_q4_1);
    default: return sizeof(block_q5_1);
    }
}

/* The 32 values of a block: signed q for the *_0 formats, unsigned for *_1. */
TGT_AVX2 INLINE __m256i blk_values(const char *b, blk_kind k) {
    switch (k) {
    case BLK_Q4_0: return _mm256_sub_epi8(nibbles((const uint8_t *)b + 2), _mm256_set1_epi8(8));
    case BLK_Q5_0: {
        __m256i clear =
            _mm256_andnot_si256(fifth_bits((const uint8_t *)b + 2), _mm256_set1_epi8(-16));
        return _mm256_add_epi8(nibbles((const uint8_t *)b + 6), clear);
    }
    case BLK_Q8_0: return _mm256_loadu_si256((const __m256i *)(b + 2));
    case BLK_Q4_1: return nibbles((const uint8_t *)b + 4);
    default: {
        __m256i set = _mm256_and_si256(fifth_bits((const uint8_t *)b + 4), _mm256_set1_epi8(16));
        return _mm256_or_si256(nibbles((const uint8_t *)b + 8), set);
    }
    }
}

TGT_AVX2 INLINE __m256i dot_u8s8_avx2(__m256i a, __m256i b) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1));
}

TGT_VNNI INLINE __m256i dot_u8s8_vnni(__m256i a, __m256i b) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), a, b);
}

/* ------------------------------------------- 32-value blocks, per level */

#define I8_TGT TGT_AVX2
#define I8_SFX avx2
#define I8_DOT dot_u8s8_avx2
#include "backends/cpu/vec_dot_x86_i8.inc"
#undef I8_TGT
#undef I8_SFX
#undef I8_DOT

#define I8_TGT TGT_VNNI
#define I8_SFX vnni
#define I8_DOT dot_u8s8_vnni
#include "backends/cpu/vec_dot_x86_i8.inc"
#undef I8_TGT
#undef I8_SFX
#undef I8_DOT

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

bool cpu_x86_supports(cpu_simd level) {
    x86_features f = x86_detect();
    if (level == CPU_SIMD_AVX2) return f.avx2;
    if (level == CPU_SIMD_AVX512VNNI) return f.avx512;
    return false;
}

void cpu_fill_x86(cpu_simd level, cpu_dot_fn dot[QT_COUNT], cpu_quantize_fn quant[QT_COUNT]) {
    (void)quant;
    cpu_fill_x86_k(level, dot);
    if (level == CPU_SIMD_AVX2) {
        dot[QT_F32] = dot_f32_avx2;
        dot[QT_F16] = dot_f16_avx2;
        dot[QT_BF16] = dot_bf16_avx2;
        dot[QT_Q4_0] = dot_q4_0_avx2;
        dot[QT_Q4_1] = dot_q4_1_avx2;
        dot[QT_Q5_0] = dot_q5_0_avx2;
        dot[QT_Q5_1] = dot_q5_1_avx2;
        dot[QT_Q8_0] = dot_q8_0_avx2;
    } else if (level == CPU_SIMD_AVX512VNNI) {
        dot[QT_Q4_0] = dot_q4_0_vnni;
        dot[QT_Q4_1] = dot_q4_1_vnni;
        dot[QT_Q5_0] = dot_q5_0_vnni;
        dot[QT_Q5_1] = dot_q5_1_vnni;
        dot[QT_Q8_0] = dot_q8_0_vnni;
    }
}

#else /* not x86 */

bool cpu_x86_supports(cpu_simd level) {
    (void)level;
    return false;
}

void cpu_fill_x86(cpu_simd level, cpu_dot_fn dot[QT_COUNT], cpu_quantize_fn quant[QT_COUNT]) {
    (void)level;
    (void)dot;
    (void)quant;
}

#endif
