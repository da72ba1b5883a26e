/*
 * matvec_x86.c: one-token dot kernels for AVX-512 VNNI that read the
 * weights in their file layout, row by row (Q4_0, Q8_0, Q4_K, Q6_K).
 *
 * Why not the tiled kernels (gemm_x86.c) for one token: they repack every
 * panel before use, which pays off across a batch but not for one token;
 * these kernels read 1.2-1.6x the weight bandwidth of the tiled dots, from
 * cache and from DRAM (docs/measurements.md, "One-token row kernels", which
 * also has the trials behind MV_PF, MV_HINT and MV_KC).
 *
 * Arithmetic. Integer sums per block are exact; each row keeps one vector
 * of 16 float partial sums, updated in block order with one FMA per step,
 * and reduced in a fixed order at the end. The result depends only on the
 * row, the activations and K: not on the thread count, the chunking or the
 * tokens alongside. It is not the scalar reference's rounding (that is the
 * tiled kernels' contract for batches); tests bound the difference.
 *
 * AVX2 (for CPUs without AVX-512): row kernels for Q4_0 and Q8_0 here, for
 * Q4_K and Q6_K in vec_dot_x86_k.c, with the same prefetch: 1.3-1.8x the
 * tiled dots' bandwidth, except Q4_0, which its per-block shuffle-port work
 * (scale conversion and broadcast) keeps at the tiled dots' level
 * (docs/measurements.md).
 *
 * Q4_0 and Q8_0 work in steps of 4 (Q4_0) or 2 (Q8_0) blocks, one 128- or
 * 256-bit lane per block. The activations of a step, and what every row
 * needs from them (the offset correction of the unsigned weights, the
 * activation scales laid out per lane), are prepared once per call and
 * chunk of blocks, on the stack, and shared by the call's rows.
 */
#include "backends/cpu/vec_dot.h"

#if defined(__x86_64__) || defined(__i386__)

#include <stdalign.h>
#include <string.h>

#include "backends/cpu/simd_x86.h"

/* Blocks per prepared activation chunk: rows of up to 16384 values are read
 * in one pass (a row cut into chunks is read in as many passes, which the
 * prefetchers follow less well: K = 8192 with 128-block chunks lost 20%).
 * The chunk lives on the stack: 32 KB at most. */
#define MV_KC 512
#define MV_ROWS 16
#ifndef MV_PF
#define MV_PF 4096 /* bytes ahead of the weights being read */
#endif
#ifndef MV_HINT
#define MV_HINT 2 /* into L2: the L1 is busy with the activations */
#endif
#define PREFETCH(p) __builtin_prefetch((const char *)(p) + MV_PF, 0, MV_HINT)
/* For steps of 64 to 128 bytes: one prefetch per step would skip a line now
 * and then, and every skipped line is a full miss. */
#define PREFETCH2(p)                                                                               \
    do {                                                                                           \
        PREFETCH(p);                                                                               \
        PREFETCH((const char *)(p) + 64);                                                          \
    } while (0)

TGT_VNNI INLINE float reduce16(__m512 v) {
    __m256 s = _mm256_add_ps(_mm512_castps512_ps256(v),
                             _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    return hsum_ps(s);
}

/* The 16 fp16 at word positions idx of v, as floats. */
TGT_VNNI INLINE __m512 words_f32(__m512i v, __m512i idx) {
    return _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(idx, v)));
}

/* ------------------------------------------------------------------ Q4_0 */

typedef struct q40_step {
    __m512i xlo, xhi; /* lane b: activations 0..15 / 16..31 of block b */
    __m512i negc;     /* -8 * sums of the activations (the weights' offset) */
    __m512 dx;        /* lane b: d of activation block b, four times */
} q40_step;

TGT_VNNI static void q40_prep(const block_q8_0 *y, int64_t nb, q40_step *st) {
    const __m512i eight = _mm512_set1_epi8(8);
    for (int64_t s = 0; s < (nb + 3) / 4; s++) {
        alignas(64) int8_t lo[64], hi[64];
        alignas(64) float dx[16];
        for (int i = 0; i < 4; i++) {
            int64_t b = 4 * s + i;
            if (b < nb) {
                memcpy(lo + 16 * i, y[b].qs, 16);
                memcpy(hi + 16 * i, y[b].qs + 16, 16);
            } else {
                memset(lo + 16 * i, 0, 16);
                memset(hi + 16 * i, 0, 16);
            }
            float d = b < nb ? fp16(y[b].d) : 0.0f;
            for (int k = 0; k < 4; k++) dx[4 * i + k] = d;
        }
        st[s].xlo = _mm512_load_si512(lo);
        st[s].xhi = _mm512_load_si512(hi);
        __m512i c = _mm512_dpbusd_epi32(_mm512_setzero_si512(), eight, st[s].xlo);
        c = _mm512_dpbusd_epi32(c, eight, st[s].xhi);
        st[s].negc = _mm512_sub_epi32(_mm512_setzero_si512(), c);
        st[s].dx = _mm512_load_ps(dx);
    }
}

/* One step: 4 blocks (72 bytes) at p. */
TGT_VNNI INLINE __m512 q40_step_fma(const char *p, const q40_step *st, __m512 acc) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    static const alignas(64)
        int16_t d_at[32] = {0, 0, 0, 0, 9, 9, 9, 9, 18, 18, 18, 18, 27, 27, 27, 27};
    const __m512i didx = _mm512_load_si512(d_at);
    __m512i a = _mm512_loadu_si512(p);
    __m512i q = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(p + 2)));
    q = _mm512_inserti32x4(q, _mm_loadu_si128((const __m128i *)(p + 20)), 1);
    q = _mm512_inserti32x4(q, _mm_loadu_si128((const __m128i *)(p + 38)), 2);
    q = _mm512_inserti32x4(q, _mm_loadu_si128((const __m128i *)(p + 56)), 3);
    __m512i lo = _mm512_and_si512(q, m4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
    __m512i isum = _mm512_dpbusd_epi32(st->negc, lo, st->xlo);
    isum = _mm512_dpbusd_epi32(isum, hi, st->xhi);
    __m512 scale = _mm512_mul_ps(words_f32(a, didx), st->dx);
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), scale, acc);
}

TGT_VNNI static __m512 q40_row(const char *row, const block_q8_0 *y, int64_t nb, const q40_step *st,
                               __m512 acc) {
    (void)y; /* q40_prep copied what the rows need */
    int64_t s = 0;
    for (; 4 * s + 4 <= nb; s++) {
        PREFETCH2(row + 72 * s); /* 72 bytes: two lines may start in them */
        acc = q40_step_fma(row + 72 * s, &st[s], acc);
    }
    if (4 * s < nb) {
        alignas(64) char tail[128] = {0};
        memcpy(tail, row + 72 * s, (size_t)(nb - 4 * s) * 18);
        acc = q40_step_fma(tail, &st[s], acc);
    }
    return acc;
}

/* ------------------------------------------------------------------ Q8_0 */

typedef struct q80_step {
    __m512i negc; /* -128 * sums of the activations (weights taken + 128) */
    __m512 dx;    /* 256-bit lane b: d of activation block b */
} q80_step;

/* The 64 activations of blocks 2s and 2s + 1 (zeros past nb). */
TGT_VNNI INLINE __m512i q80_pair(const block_q8_0 *y) {
    __m512i q = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)y[0].qs));
    return _mm512_inserti64x4(q, _mm256_loadu_si256((const __m256i *)y[1].qs), 1);
}

TGT_VNNI static void q80_prep(const block_q8_0 *y, int64_t nb, q80_step *st) {
    const __m512i off = _mm512_set1_epi8((char)0x80);
    for (int64_t s = 0; s < (nb + 1) / 2; s++) {
        alignas(64) int8_t q[64];
        alignas(64) float dx[16];
        for (int i = 0; i < 2; i++) {
            int64_t b = 2 * s + i;
            if (b < nb)
                memcpy(q + 32 * i, y[b].qs, 32);
            else
                memset(q + 32 * i, 0, 32);
            float d = b < nb ? fp16(y[b].d) : 0.0f;
            for (int k = 0; k < 8; k++) dx[8 * i + k] = d;
        }
        st[s].negc = _mm512_sub_epi32(
            _mm512_setzero_si512(),
            _mm512_dpbusd_epi32(_mm512_setzero_si512(), off, _mm512_load_si512(q)));
        st[s].dx = _mm512_load_ps(dx);
    }
}

/* One step: 2 blocks (68 bytes) at p. */
TGT_VNNI INLINE __m512 q80_step_fma(const char *p, const q80_step *st, __m512i xq, __m512 acc) {
    static const alignas(64)
        int16_t d_at[32] = {0, 0, 0, 0, 0, 0, 0, 0, 17, 17, 17, 17, 17, 17, 17, 17};
    const __m512i didx = _mm512_load_si512(d_at);
    __m512i a = _mm512_loadu_si512(p);
    __m512i q = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(p + 2)));
    q = _mm512_inserti64x4(q, _mm256_loadu_si256((const __m256i *)(p + 36)), 1);
    __m512i u = _mm512_xor_si512(q, _mm512_set1_epi8((char)0x80));
    __m512i isum = _mm512_dpbusd_epi32(st->negc, u, xq);
    __m512 scale = _mm512_mul_ps(words_f32(a, didx), st->dx);
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), scale, acc);
}

TGT_VNNI static __m512 q80_row(const char *row, const block_q8_0 *y, int64_t nb, const q80_step *st,
                               __m512 acc) {
    int64_t s = 0;
    for (; 2 * s + 2 <= nb; s++) {
        PREFETCH2(row + 68 * s);
        acc = q80_step_fma(row + 68 * s, &st[s], q80_pair(y + 2 * s), acc);
    }
    if (2 * s < nb) {
        alignas(64) char tail[128] = {0};
        memcpy(tail, row + 68 * s, 34);
        __m512i xq = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)y[2 * s].qs));
        xq = _mm512_inserti64x4(xq, _mm256_setzero_si256(), 1);
        acc = q80_step_fma(tail, &st[s], xq, acc);
    }
    return acc;
}

/* Rows of Q4_0/Q8_0: chunks of MV_KC blocks prepared once and shared by
 * up to MV_ROWS rows, whose sums carry over from chunk to chunk. */
#define LEGACY_DOT(name, step_t, per_step, wbytes)                                                 \
    TGT_VNNI static void name##_dot_rows(DOT_PARAMS) {                                             \
        step_t st[MV_KC / per_step];                                                               \
        const int64_t nb = n / 32;                                                                 \
        for (int j = 0; j < nt; j++) {                                                             \
            const block_q8_0 *yj = (const block_q8_0 *)((const char *)y + (size_t)j * by);         \
            for (int r0 = 0; r0 < nr; r0 += MV_ROWS) {                                             \
                const int rn = nr - r0 < MV_ROWS ? nr - r0 : MV_ROWS;                              \
                __m512 acc[MV_ROWS];                                                               \
                for (int r = 0; r < rn; r++) acc[r] = _mm512_setzero_ps();                         \
                for (int64_t b0 = 0; b0 < nb; b0 += MV_KC) {                                       \
                    const int64_t nk = nb - b0 < MV_KC ? nb - b0 : MV_KC;                          \
                    name##_prep(yj + b0, nk, st);                                                  \
                    for (int r = 0; r < rn; r++) {                                                 \
                        const char *row = (const char *)x + (size_t)(r0 + r) * bx;                 \
                        acc[r] = name##_row(row + (size_t)b0 * (wbytes), yj + b0, nk, st, acc[r]); \
                    }                                                                              \
                }                                                                                  \
                for (int r = 0; r < rn; r++) s[r0 + r + (size_t)j * ss] = reduce16(acc[r]);        \
            }                                                                                      \
        }                                                                                          \
    }
LEGACY_DOT(q40, q40_step, 4, sizeof(block_q4_0))
LEGACY_DOT(q80, q80_step, 2, sizeof(block_q8_0))

/* ------------------------------------------------------------------ Q4_K */

/* Words 0..15 = scale 2g, 16..31 = scale 2g + 1, of the 8 scales in sc. */
TGT_VNNI INLINE __m512i pair_scales(__m512i sc, int g) {
    return _mm512_permutexvar_epi16(
        _mm512_set_epi16(2 * g + 1, 2 * g + 1, 2 * g + 1, 2 * g + 1, 2 * g + 1, 2 * g + 1,
                         2 * g + 1, 2 * g + 1, 2 * g + 1, 2 * g + 1, 2 * g + 1, 2 * g + 1,
                         2 * g + 1, 2 * g + 1, 2 * g + 1, 2 * g + 1, 2 * g, 2 * g, 2 * g, 2 * g,
                         2 * g, 2 * g, 2 * g, 2 * g, 2 * g, 2 * g, 2 * g, 2 * g, 2 * g, 2 * g,
                         2 * g, 2 * g),
        sc);
}

TGT_VNNI static float q4k_row(const block_q4_K *x, const block_q8_K *y, int64_t nb) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i nib = _mm512_setr_epi64(0, 0, 0, 0, 4, 4, 4, 4);
    __m512 acc = _mm512_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        __m128i sc8;
        __m256i mins2;
        k4_scales_mins(x[i].scales, &sc8, &mins2);
        const __m512i sc = _mm512_castsi128_si512(sc8);
        __m512i isum = _mm512_setzero_si512();
        PREFETCH(x + i);
        PREFETCH((const char *)(x + i) + 64);
        PREFETCH((const char *)(x + i) + 128);
        UNROLL(4) for (int g = 0; g < 4; g++) {
            /* Sub-blocks 2g (low nibbles) and 2g + 1 (high): values 64g.. in order. */
            __m512i q =
                _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * g)));
            __m512i w = _mm512_and_si512(_mm512_srlv_epi64(q, nib), m4);
            __m512i p = _mm512_maddubs_epi16(w, _mm512_loadu_si512(y[i].qs + 64 * g));
            isum = _mm512_dpwssd_epi32(isum, p, pair_scales(sc, g));
        }
        __m256i mm = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y[i].bsums), mins2);
        const float d = y[i].d * fp16(x[i].d), dmin = y[i].d * fp16(x[i].dmin);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d), acc);
        accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mm), _mm256_set1_ps(dmin), accm);
    }
    return reduce16(acc) - hsum_ps(accm);
}

/* ------------------------------------------------------------------ Q6_K */

/* Words 8k..8k+7 (k < 4) = scale 4q + k of the 16 in sc. */
TGT_VNNI INLINE __m512i quad_scales(__m512i sc, int q) {
    const int b = 4 * q;
    return _mm512_permutexvar_epi16(
        _mm512_set_epi16(b + 3, b + 3, b + 3, b + 3, b + 3, b + 3, b + 3, b + 3, b + 2, b + 2,
                         b + 2, b + 2, b + 2, b + 2, b + 2, b + 2, b + 1, b + 1, b + 1, b + 1,
                         b + 1, b + 1, b + 1, b + 1, b, b, b, b, b, b, b, b),
        sc);
}

TGT_VNNI static float q6k_row(const block_q6_K *x, const block_q8_K *y, int64_t nb) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(0x30);
    const __m512i shl = _mm512_setr_epi64(4, 4, 4, 4, 2, 2, 2, 2);
    const __m512i shr = _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[i].scales));
        const __m512i sc = _mm512_castsi256_si512(sc16);
        /* The values are stored + 32: start from -32 * sum(scale * bsum). */
        __m256i off = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)y[i].bsums));
        __m512i isum = _mm512_zextsi256_si512(
            _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(off, 5)));
        PREFETCH(x + i);
        PREFETCH((const char *)(x + i) + 64);
        PREFETCH((const char *)(x + i) + 128);
        PREFETCH((const char *)(x + i) + 192);
        UNROLL(2) for (int h = 0; h < 2; h++) {
            __m512i l = _mm512_loadu_si512(x[i].ql + 64 * h);
            __m512i qh =
                _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x[i].qh + 32 * h)));
            /* Values 128h + 0..63, then 128h + 64..127, in order. */
            __m512i v0 = _mm512_or_si512(_mm512_and_si512(l, m4),
                                         _mm512_and_si512(_mm512_sllv_epi64(qh, shl), m2));
            __m512i v1 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                                         _mm512_and_si512(_mm512_srlv_epi64(qh, shr), m2));
            const int8_t *yq = y[i].qs + 128 * h;
            __m512i p0 = _mm512_maddubs_epi16(v0, _mm512_loadu_si512(yq));
            __m512i p1 = _mm512_maddubs_epi16(v1, _mm512_loadu_si512(yq + 64));
            isum = _mm512_dpwssd_epi32(isum, p0, quad_scales(sc, 2 * h));
            isum = _mm512_dpwssd_epi32(isum, p1, quad_scales(sc, 2 * h + 1));
        }
        const float d = y[i].d * fp16(x[i].d);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d), acc);
    }
    return reduce16(acc);
}

/* A cpu_dot_fn `fn` from a one-row function: float row(w, y, n_blocks). */
#define ROW_DOT(tgt, fn, row, wblock, yblock, block)                                               \
    tgt static void fn(DOT_PARAMS) {                                                               \
        const int64_t nb = n / (block);                                                            \
        for (int j = 0; j < nt; j++) {                                                             \
            const yblock *yj = (const yblock *)((const char *)y + (size_t)j * by);                 \
            for (int r = 0; r < nr; r++)                                                           \
                s[r + (size_t)j * ss] =                                                            \
                    row((const wblock *)((const char *)x + (size_t)r * bx), yj, nb);               \
        }                                                                                          \
    }
ROW_DOT(TGT_VNNI, q4k_dot_rows, q4k_row, block_q4_K, block_q8_K, QK_K)
ROW_DOT(TGT_VNNI, q6k_dot_rows, q6k_row, block_q6_K, block_q8_K, QK_K)

/* ------------------------------------------------------ AVX2, Q4_0 and Q8_0
 *
 * One block per step: the integer dot of the signed values through
 * vpmaddubsw (|w| times x with w's sign; no pair of products can saturate:
 * at most 2 * 128 * 127), then one FMA into 8 float lanes per row. */

TGT_AVX2 INLINE __m256 avx2_block(__m256i w, const block_q8_0 *y, float dw, __m256 acc) {
    const __m256i x = _mm256_loadu_si256((const __m256i *)y->qs);
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    p = _mm256_madd_epi16(p, _mm256_set1_epi16(1));
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * fp16(y->d)), acc);
}

/* The nibbles of a Q4_0 block in value order, 0..15: qs in both lanes (a
 * broadcast load, no shuffle-port work), the high lane shifted. */
TGT_AVX2 INLINE __m256i q40_nibbles(const block_q4_0 *w) {
    const __m256i q = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)w->qs));
    return _mm256_and_si256(_mm256_srlv_epi64(q, _mm256_setr_epi64x(0, 0, 4, 4)),
                            _mm256_set1_epi8(0x0F));
}

TGT_AVX2 static float q40_row_avx2(const block_q4_0 *w, const block_q8_0 *y, int64_t nb) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        if (b % 4 == 0) PREFETCH2(w + b); /* 72 bytes: two lines may start in them */
        __m256i v = _mm256_sub_epi8(q40_nibbles(&w[b]), _mm256_set1_epi8(8));
        acc = avx2_block(v, &y[b], fp16(w[b].d), acc);
    }
    return hsum_ps(acc);
}

/* The same sums with the weights' offset taken from the activations once
 * per call: (q - 8) . x = q . x - 8 . x, pairwise in int16 (at most 3810
 * and 2032), so the unsigned nibbles go to vpmaddubsw as they are. */
TGT_AVX2 static float q40_row_avx2_prep(const block_q4_0 *w, const block_q8_0 *y, const __m256i *x8,
                                        const float *dx, int64_t nb) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        if (b % 4 == 0) PREFETCH2(w + b); /* 72 bytes: two lines may start in them */
        const __m256i x = _mm256_loadu_si256((const __m256i *)y[b].qs);
        __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(q40_nibbles(&w[b]), x), x8[b]);
        p = _mm256_madd_epi16(p, _mm256_set1_epi16(1));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(fp16(w[b].d) * dx[b]), acc);
    }
    return hsum_ps(acc);
}

TGT_AVX2 static void q40_dot_avx2(DOT_PARAMS) {
    const int64_t nb = n / 32;
    for (int j = 0; j < nt; j++) {
        const block_q8_0 *yj = (const block_q8_0 *)((const char *)y + (size_t)j * by);
        if (nb > MV_KC) { /* past the stack buffers: the offset per block */
            for (int r = 0; r < nr; r++)
                s[r + (size_t)j * ss] =
                    q40_row_avx2((const block_q4_0 *)((const char *)x + (size_t)r * bx), yj, nb);
            continue;
        }
        __m256i x8[MV_KC];
        float dx[MV_KC];
        for (int64_t b = 0; b < nb; b++) {
            x8[b] = _mm256_maddubs_epi16(_mm256_set1_epi8(8),
                                         _mm256_loadu_si256((const __m256i *)yj[b].qs));
            dx[b] = fp16(yj[b].d);
        }
        for (int r = 0; r < nr; r++)
            s[r + (size_t)j * ss] = q40_row_avx2_prep(
                (const block_q4_0 *)((const char *)x + (size_t)r * bx), yj, x8, dx, nb);
    }
}

TGT_AVX2 static float q80_row_avx2(const block_q8_0 *w, const block_q8_0 *y, int64_t nb) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        if (b % 2 == 0) PREFETCH2(w + b);
        acc = avx2_block(_mm256_loadu_si256((const __m256i *)w[b].qs), &y[b], fp16(w[b].d), acc);
    }
    return hsum_ps(acc);
}

ROW_DOT(TGT_AVX2, q80_dot_avx2, q80_row_avx2, block_q8_0, block_q8_0, 32)

bool elmi_cpu_matvec_x86_has(int type, cpu_simd level) {
    return (level == CPU_SIMD_AVX512VNNI || level == CPU_SIMD_AVX2) &&
           (type == QT_Q4_0 || type == QT_Q8_0 || type == QT_Q4_K || type == QT_Q6_K);
}

void elmi_cpu_fill_matvec_x86(cpu_simd level, cpu_dot_fn dot[QT_COUNT]) {
    if (level == CPU_SIMD_AVX2) {
        dot[QT_Q4_0] = q40_dot_avx2;
        dot[QT_Q8_0] = q80_dot_avx2;
        elmi_cpu_fill_x86_k_rows(level, dot);
        return;
    }
    if (level != CPU_SIMD_AVX512VNNI) return;
    dot[QT_Q4_0] = q40_dot_rows;
    dot[QT_Q8_0] = q80_dot_rows;
    dot[QT_Q4_K] = q4k_dot_rows;
    dot[QT_Q6_K] = q6k_dot_rows;
}

#else

typedef int elm_no_x86_matvec; /* ISO C wants a declaration in every file */

#endif
