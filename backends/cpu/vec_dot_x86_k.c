/*
 * vec_dot_x86_k.c: AVX2 row kernels for the k-quants x Q8_K: Q5_K at every
 * token count, Q4_K and Q6_K for one token (several take the tiled kernels
 * of gemm_x86.c; elmi_cpu_fill_matvec_x86 installs these over their dots).
 *
 * Per super-block the integer sums are exact (int32 lanes: at most a few
 * million each); they are scaled into one float accumulator per token, super-
 * blocks in order, and reduced with the fixed horizontal sum at the end.
 */
#if defined(__x86_64__) || defined(__i386__)

#include "backends/cpu/simd_x86.h"

/* The next super-blocks, into L2 (see matvec_x86.c): 4 KB ahead. */
#define K_PREFETCH(p, bytes)                                                                       \
    do {                                                                                           \
        for (size_t o_ = 0; o_ < (bytes); o_ += 64)                                                \
            __builtin_prefetch((const char *)(p) + 4096 + o_, 0, 2);                               \
    } while (0)

/* A vector whose every int16 is element e of the 128-bit lane it sits in. */
TGT_AVX2 INLINE __m256i splat16(__m256i v, int e) {
    return _mm256_shuffle_epi8(v, _mm256_set1_epi16((short)(0x0100 + 0x0202 * e)));
}

/* ------------------------------------------------------ Q4_K, Q5_K */

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

/* The scales as int16 in both lanes, and the mins each twice. */
TGT_AVX2 INLINE void q45_scales(const uint8_t *packed, __m256i *sc, __m256i *mins2) {
    __m128i sc8;
    k4_scales_mins(packed, &sc8, mins2);
    *sc = _mm256_broadcastsi128_si256(sc8);
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
    UNROLL(4) for (int j = 0; j < nt; j++) acc[j] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        K_PREFETCH((const char *)vx + (size_t)i * (five ? sizeof(block_q5_K) : sizeof(block_q4_K)),
                   five ? sizeof(block_q5_K) : sizeof(block_q4_K));
        q45_block b = q45_get(vx, i, five);
        __m256i sc, mins;
        q45_scales(b.scales, &sc, &mins);
        __m256i qh = five ? _mm256_loadu_si256((const __m256i *)b.qh) : _mm256_setzero_si256();
        __m256i sumi[CPU_DOT_MAX_NT];
        UNROLL(4) for (int j = 0; j < nt; j++) sumi[j] = _mm256_setzero_si256();
        UNROLL(4) for (int g = 0; g < 4; g++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(b.qs + 32 * g));
            __m256i lo = q45_values(&b, q, qh, g, 0), hi = q45_values(&b, q, qh, g, 1);
            __m256i slo = splat16(sc, 2 * g), shi = splat16(sc, 2 * g + 1);
            UNROLL(4) for (int j = 0; j < nt; j++) {
                const int8_t *yq = YROW(block_q8_K, j)[i].qs + 64 * g;
                __m256i plo = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)yq));
                __m256i phi =
                    _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(yq + 32)));
                __m256i p =
                    _mm256_add_epi32(_mm256_madd_epi16(plo, slo), _mm256_madd_epi16(phi, shi));
                sumi[j] = _mm256_add_epi32(sumi[j], p);
            }
        }
        const float dx = fp16(b.d), dmx = fp16(b.dmin);
        UNROLL(4) for (int j = 0; j < nt; j++) {
            const block_q8_K *y = &YROW(block_q8_K, j)[i];
            __m256i bs = _mm256_loadu_si256((const __m256i *)y->bsums);
            __m256 m = _mm256_cvtepi32_ps(_mm256_madd_epi16(bs, mins));
            acc[j] =
                _mm256_fmadd_ps(_mm256_set1_ps(dx * y->d), _mm256_cvtepi32_ps(sumi[j]), acc[j]);
            acc[j] = _mm256_fnmadd_ps(_mm256_set1_ps(dmx * y->d), m, acc[j]);
        }
    }
    UNROLL(4) for (int j = 0; j < nt; j++) s[j] = hsum_ps(acc[j]);
}

TGT_AVX2 INLINE void q5_K_body(int64_t n, float *restrict s, const void *restrict vx,
                               const void *restrict vy, size_t by, const int nt) {
    q45_K_body(n, s, vx, vy, by, nt, true);
}

TGT_AVX2 INLINE void q4_K_body(int64_t n, float *restrict s, const void *restrict vx,
                               const void *restrict vy, size_t by, const int nt) {
    q45_K_body(n, s, vx, vy, by, nt, false);
}

TGT_AVX2 static void dot_q5_K_avx2(DOT_PARAMS) { DISPATCH_NT(q5_K_body); }
TGT_AVX2 static void dot_q4_K_avx2(DOT_PARAMS) { DISPATCH_NT(q4_K_body); }

/* ------------------------------------------------------------ Q6_K */

/* The four 32-value rows of 6-bit q (0..63) of half h of a Q6_K block. */
TGT_AVX2 INLINE void q6_K_unpack(const block_q6_K *x, int h, __m256i q[4]) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x30);
    __m256i l0 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h));
    __m256i l1 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h + 32));
    __m256i qh = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * h));
    q[0] =
        _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2));
    q[1] =
        _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2));
    q[2] =
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m2));
    q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                           _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2));
}

/* Row k of half h covers sub-blocks 8h + 2k (its first 16 values, the low
 * lane of the product) and 8h + 2k + 1 (the high lane); `half` holds
 * scales 8h..8h+7 as int16 in both lanes. */
TGT_AVX2 INLINE __m256i q6_K_scale_pair(__m256i half, int k) {
    __m256i ctl = _mm256_set_m128i(_mm_set1_epi16((short)(0x0302 + 0x0404 * k)),
                                   _mm_set1_epi16((short)(0x0100 + 0x0404 * k)));
    return _mm256_shuffle_epi8(half, ctl);
}

TGT_AVX2 INLINE void q6_K_body(int64_t n, float *restrict s, const void *restrict vx,
                               const void *restrict vy, size_t by, const int nt) {
    const block_q6_K *x = vx;
    const int64_t nb = n / QK_K;
    __m256 acc[CPU_DOT_MAX_NT];
    UNROLL(4) for (int j = 0; j < nt; j++) acc[j] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        K_PREFETCH(x + i, sizeof *x);
        const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[i].scales));
        __m256i sumi[CPU_DOT_MAX_NT];
        /* q is stored + 32: start from -32 * sum(scale * bsum). */
        UNROLL(4) for (int j = 0; j < nt; j++) {
            __m256i bs = _mm256_loadu_si256((const __m256i *)YROW(block_q8_K, j)[i].bsums);
            sumi[j] = _mm256_sub_epi32(_mm256_setzero_si256(),
                                       _mm256_slli_epi32(_mm256_madd_epi16(sc, bs), 5));
        }
        UNROLL(2) for (int h = 0; h < 2; h++) {
            __m256i q[4];
            q6_K_unpack(&x[i], h, q);
            const __m256i half = h ? _mm256_permute2x128_si256(sc, sc, 0x11)
                                   : _mm256_permute2x128_si256(sc, sc, 0x00);
            UNROLL(4) for (int k = 0; k < 4; k++) {
                const __m256i pair = q6_K_scale_pair(half, k);
                UNROLL(4) for (int j = 0; j < nt; j++) {
                    const int8_t *yq = YROW(block_q8_K, j)[i].qs + 128 * h + 32 * k;
                    __m256i p = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *)yq));
                    sumi[j] = _mm256_add_epi32(sumi[j], _mm256_madd_epi16(p, pair));
                }
            }
        }
        const float dx = fp16(x[i].d);
        UNROLL(4) for (int j = 0; j < nt; j++) {
            float d = dx * YROW(block_q8_K, j)[i].d;
            acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi[j]), acc[j]);
        }
    }
    UNROLL(4) for (int j = 0; j < nt; j++) s[j] = hsum_ps(acc[j]);
}

TGT_AVX2 static void dot_q6_K_avx2(DOT_PARAMS) { DISPATCH_NT(q6_K_body); }

void elmi_cpu_fill_x86_k(cpu_simd level, cpu_dot_fn dot[QT_COUNT]) {
    if (level != CPU_SIMD_AVX2) return;
    dot[QT_Q5_K] = dot_q5_K_avx2;
}

void elmi_cpu_fill_x86_k_rows(cpu_simd level, cpu_dot_fn dot[QT_COUNT]) {
    if (level != CPU_SIMD_AVX2) return;
    dot[QT_Q4_K] = dot_q4_K_avx2;
    dot[QT_Q6_K] = dot_q6_K_avx2;
}

#else

typedef int elm_no_x86_k; /* ISO C wants a declaration in every file */

#endif
