/*
 * vec_dot_x86.c: AVX2 and AVX-512 (VNNI) dot kernels. Each function carries
 * its own target attribute, so the library builds for baseline x86-64 and
 * the kernels run only where vec_dot.c found the instructions.
 */
#include "backends/cpu/vec_dot.h"

#if defined(__x86_64__) || defined(__i386__)

#include <cpuid.h>
#include <immintrin.h>
#include <string.h>

#define TGT_AVX2 __attribute__((target("avx2,fma,f16c")))
#define TGT_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define INLINE static inline __attribute__((always_inline))

_Static_assert(CPU_DOT_MAX_NT == 4, "DISPATCH_NT handles 1..4 tokens");

/* Instantiates a kernel body for a constant nt, so its accumulators stay in
 * registers; each instance does the same arithmetic per token. */
#define DISPATCH_NT(body)                                                                    \
    switch (nt) {                                                                            \
    case 1: body(n, s, x, y, by, 1); break;                                                  \
    case 2: body(n, s, x, y, by, 2); break;                                                  \
    case 3: body(n, s, x, y, by, 3); break;                                                  \
    default: body(n, s, x, y, by, 4); break;                                                 \
    }

#define YROW(type, j) ((const type *)(const void *)((const char *)vy + (size_t)(j) * by))

/* ------------------------------------------------------------------ helpers */

TGT_AVX2 INLINE float fp16(elm_fp16 h) { return _cvtsh_ss(h); }

/* Fixed order: halves, then pairs, then the last two lanes. */
TGT_AVX2 INLINE float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

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
    const __m256i spread = _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202,
                                              0x0303030303030303);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), spread);
    /* Byte b of each 8: all bits but bit b set, so only bit b decides. */
    v = _mm256_or_si256(v, _mm256_set1_epi64x(0x7FBFDFEFF7FBFDFE));
    return _mm256_cmpeq_epi8(v, _mm256_set1_epi8(-1));
}

TGT_AVX2 INLINE __m256i q4_values(const uint8_t *qs) {
    return _mm256_sub_epi8(nibbles(qs), _mm256_set1_epi8(8));
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

/* ------------------------------------------------------- Q4_K x Q8_K */

/* 16 int16: each of the 8 mins twice, to pair with the 16 bsums. */
INLINE void q4_K_scales(const uint8_t *packed, uint8_t sc[8], int16_t mins2[16]) {
    for (int k = 0; k < 8; k++) {
        uint8_t m;
        get_scale_min_k4(k, packed, &sc[k], &m);
        mins2[2 * k] = mins2[2 * k + 1] = m;
    }
}

/* The fields Q4_K and Q5_K share; qh is NULL for Q4_K. */
typedef struct q45_block {
    elm_fp16 d, dmin;
    const uint8_t *scales, *qs, *qh;
} q45_block;

INLINE q45_block q45_get(const void *vx, int64_t i, bool five) {
    if (five) {
        const block_q5_K *b = (const block_q5_K *)vx + i;
        return (q45_block){b->d, b->dmin, b->scales, b->qs, b->qh};
    }
    const block_q4_K *b = (const block_q4_K *)vx + i;
    return (q45_block){b->d, b->dmin, b->scales, b->qs, NULL};
}

/* Sub-block 2g + h of a Q4_K/Q5_K block as 32 unsigned bytes. */
TGT_AVX2 INLINE __m256i q45_values(const q45_block *b, __m256i q4, __m256i qh, int g, int h) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256i v = _mm256_and_si256(h ? _mm256_srli_epi16(q4, 4) : q4, m4);
    if (!b->qh) return v;
    const __m256i bit = _mm256_set1_epi8((char)(1 << (2 * g + h)));
    __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit);
    return _mm256_or_si256(v, _mm256_and_si256(set, _mm256_set1_epi8(16)));
}

TGT_AVX2 INLINE void q45_K_body(int64_t n, float *restrict s, const void *restrict vx,
                                const void *restrict vy, size_t by, const int nt, bool five) {
    const int64_t nb = n / QK_K;
    __m256 acc[CPU_DOT_MAX_NT];
    for (int j = 0; j < nt; j++) acc[j] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        q45_block b = q45_get(vx, i, five);
        uint8_t sc[8];
        int16_t mins2[16];
        q4_K_scales(b.scales, sc, mins2);
        __m256i qh = five ? _mm256_loadu_si256((const __m256i *)b.qh) : _mm256_setzero_si256();
        __m256i sumi[CPU_DOT_MAX_NT];
        for (int j = 0; j < nt; j++) sumi[j] = _mm256_setzero_si256();
        for (int g = 0; g < 4; g++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(b.qs + 32 * g));
            __m256i lo = q45_values(&b, q, qh, g, 0), hi = q45_values(&b, q, qh, g, 1);
            __m256i slo = _mm256_set1_epi16(sc[2 * g]), shi = _mm256_set1_epi16(sc[2 * g + 1]);
            for (int j = 0; j < nt; j++) {
                const int8_t *yq = YROW(block_q8_K, j)[i].qs + 64 * g;
                __m256i plo = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)yq));
                __m256i phi = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(yq + 32)));
                __m256i p = _mm256_add_epi32(_mm256_madd_epi16(plo, slo), _mm256_madd_epi16(phi, shi));
                sumi[j] = _mm256_add_epi32(sumi[j], p);
            }
        }
        const __m256i mins = _mm256_loadu_si256((const __m256i *)mins2);
        const float dx = fp16(b.d), dmx = fp16(b.dmin);
        for (int j = 0; j < nt; j++) {
            const block_q8_K *y = &YROW(block_q8_K, j)[i];
            __m256i bs = _mm256_loadu_si256((const __m256i *)y->bsums);
            __m256 m = _mm256_cvtepi32_ps(_mm256_madd_epi16(bs, mins));
            acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(dx * y->d), _mm256_cvtepi32_ps(sumi[j]), acc[j]);
            acc[j] = _mm256_fnmadd_ps(_mm256_set1_ps(dmx * y->d), m, acc[j]);
        }
    }
    for (int j = 0; j < nt; j++) s[j] = hsum_ps(acc[j]);
}

TGT_AVX2 INLINE void q4_K_body(int64_t n, float *restrict s, const void *restrict vx,
                               const void *restrict vy, size_t by, const int nt) {
    q45_K_body(n, s, vx, vy, by, nt, false);
}

TGT_AVX2 INLINE void q5_K_body(int64_t n, float *restrict s, const void *restrict vx,
                               const void *restrict vy, size_t by, const int nt) {
    q45_K_body(n, s, vx, vy, by, nt, true);
}

TGT_AVX2 static void dot_q4_K_avx2(int64_t n, float *restrict s, const void *restrict x,
                                   const void *restrict y, size_t by, int nt) {
    DISPATCH_NT(q4_K_body);
}

TGT_AVX2 static void dot_q5_K_avx2(int64_t n, float *restrict s, const void *restrict x,
                                   const void *restrict y, size_t by, int nt) {
    DISPATCH_NT(q5_K_body);
}

/* ------------------------------------------------------- Q6_K x Q8_K */

/* Scales of sub-blocks b and b + 1 for the two 16-value halves of a 32-lane product. */
TGT_AVX2 INLINE __m256i scale_pair(const int8_t *sc, int b) {
    return _mm256_set_m128i(_mm_set1_epi16(sc[b + 1]), _mm_set1_epi16(sc[b]));
}

/* The four 32-value rows of 6-bit q (0..63) of half h of a Q6_K block. */
TGT_AVX2 INLINE void q6_K_unpack(const block_q6_K *x, int h, __m256i q[4]) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x30);
    __m256i l0 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h));
    __m256i l1 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h + 32));
    __m256i qh = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * h));
    q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2));
    q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2));
    q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m2));
    q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                           _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2));
}

/* q is stored +32: the integer sum is corrected by 32 * sum(scale * bsum). */
TGT_AVX2 INLINE __m256i q6_K_offset(const block_q6_K *x, const block_q8_K *y) {
    __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
    __m256i bs = _mm256_loadu_si256((const __m256i *)y->bsums);
    return _mm256_slli_epi32(_mm256_madd_epi16(sc, bs), 5);
}

TGT_AVX2 INLINE void q6_K_body(int64_t n, float *restrict s, const void *restrict vx,
                               const void *restrict vy, size_t by, const int nt) {
    const block_q6_K *x = vx;
    const int64_t nb = n / QK_K;
    __m256 acc[CPU_DOT_MAX_NT];
    for (int j = 0; j < nt; j++) acc[j] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        __m256i sumi[CPU_DOT_MAX_NT];
        for (int j = 0; j < nt; j++)
            sumi[j] = _mm256_sub_epi32(_mm256_setzero_si256(), q6_K_offset(&x[i], &YROW(block_q8_K, j)[i]));
        for (int h = 0; h < 2; h++) {
            __m256i q[4];
            q6_K_unpack(&x[i], h, q);
            for (int j = 0; j < nt; j++) {
                const int8_t *yq = YROW(block_q8_K, j)[i].qs + 128 * h;
                for (int k = 0; k < 4; k++) {
                    __m256i yv = _mm256_loadu_si256((const __m256i *)(yq + 32 * k));
                    __m256i p = _mm256_maddubs_epi16(q[k], yv);
                    p = _mm256_madd_epi16(p, scale_pair(x[i].scales, 8 * h + 2 * k));
                    sumi[j] = _mm256_add_epi32(sumi[j], p);
                }
            }
        }
        const float dx = fp16(x[i].d);
        for (int j = 0; j < nt; j++) {
            float d = dx * YROW(block_q8_K, j)[i].d;
            acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi[j]), acc[j]);
        }
    }
    for (int j = 0; j < nt; j++) s[j] = hsum_ps(acc[j]);
}

TGT_AVX2 static void dot_q6_K_avx2(int64_t n, float *restrict s, const void *restrict x,
                                   const void *restrict y, size_t by, int nt) {
    DISPATCH_NT(q6_K_body);
}

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
#define FLOAT_DOT(T, ctype)                                                                  \
    TGT_AVX2 static float dot1_##T(int64_t n, const ctype *x, const ctype *y) {              \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                          \
        int64_t i = 0;                                                                       \
        for (; i + 32 <= n; i += 32) {                                                       \
            a0 = _mm256_fmadd_ps(load8_##T(x + i), load8_##T(y + i), a0);                    \
            a1 = _mm256_fmadd_ps(load8_##T(x + i + 8), load8_##T(y + i + 8), a1);            \
            a2 = _mm256_fmadd_ps(load8_##T(x + i + 16), load8_##T(y + i + 16), a2);          \
            a3 = _mm256_fmadd_ps(load8_##T(x + i + 24), load8_##T(y + i + 24), a3);          \
        }                                                                                    \
        for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(load8_##T(x + i), load8_##T(y + i), a0); \
        float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));    \
        for (; i < n; i++) sum += load1_##T(x + i) * load1_##T(y + i);                       \
        return sum;                                                                          \
    }                                                                                        \
    TGT_AVX2 static void dot_##T##_avx2(int64_t n, float *restrict s, const void *restrict x, \
                                        const void *restrict vy, size_t by, int nt) {        \
        for (int j = 0; j < nt; j++) s[j] = dot1_##T(n, x, YROW(ctype, j));                  \
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
    bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28), f16c = c & (1u << 29);
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
    if (level == CPU_SIMD_AVX2) {
        dot[QT_F32] = dot_f32_avx2;
        dot[QT_F16] = dot_f16_avx2;
        dot[QT_BF16] = dot_bf16_avx2;
        dot[QT_Q4_0] = dot_q4_0_avx2;
        dot[QT_Q4_1] = dot_q4_1_avx2;
        dot[QT_Q5_0] = dot_q5_0_avx2;
        dot[QT_Q5_1] = dot_q5_1_avx2;
        dot[QT_Q8_0] = dot_q8_0_avx2;
        dot[QT_Q4_K] = dot_q4_K_avx2;
        dot[QT_Q5_K] = dot_q5_K_avx2;
        dot[QT_Q6_K] = dot_q6_K_avx2;
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
