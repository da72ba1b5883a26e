/*
 * gemm_x86.c: the tiled integer kernels of gemm.h for x86: AVX-512 VNNI
 * (a 32-row panel is two 16-row halves, one zmm lane per row) and AVX2
 * (four 8-row units, one ymm lane per row).
 *
 * Panels. Per block and half (unit), one vector per 4-value step: lane r
 * holds values 4s..4s+3 of row r as unsigned bytes (Q4_0 and Q5_0 q, Q8_0
 * q + 128 at VNNI; see each type), then the rows' scales, lane r for row r.
 * Activation groups (pack_act): per block, the 4 tokens' entries side by
 * side: the 32 q of a Q8_0/Q8_1 block, its d as a float and, for the types
 * stored with an offset, -offset * sum(q), so that sum((q + offset) * y) -
 * offset * sum(y) is the exact signed sum; Q8_K blocks as they are. The
 * kernels broadcast an activation's 4-byte group to every lane.
 *
 * Exactness. Every integer sum is exact (bounds at each kernel). The float
 * operations per block are those of the reference (quant/quant_legacy.c,
 * quant_k.c), in the same order, each product rounded before it is added:
 * opaque512() keeps the compiler from contracting a product and a sum into
 * an FMA (the test catches it: remove one and it fails). The results are
 * therefore the reference's, bit for bit, at both levels.
 *
 * The design follows from instruction costs measured on an Ice Lake Xeon
 * (docs/measurements.md, "Tiled int8 kernels"): 512-bit loads, not
 * vpdpbusd, are the limit, so VNNI panels have 32 rows and each activation
 * broadcast feeds both 16-row halves; two accumulation chains per token;
 * panels repacked unrolled, with scalar loads of the row scales.
 */
#include "backends/cpu/gemm.h"

#if defined(__x86_64__) || defined(__i386__)

#include <stdalign.h>

#include "backends/cpu/simd_x86.h"

/* Keeps a product from being fused into a later sum (the reference rounds
 * both). */
TGT_VNNI INLINE __m512 opaque512(__m512 v) {
    __asm__("" : "+v"(v));
    return v;
}

TGT_VNNI INLINE __m512i bcast32(const void *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm512_set1_epi32(v);
}

TGT_VNNI INLINE __m512 bcastf(const void *p) {
    float v;
    memcpy(&v, p, sizeof v);
    return _mm512_set1_ps(v);
}

/* ------------------------------------------------------ panel building */

/* The 16 rows of a panel half; lanes past nrows repeat the last row. */
typedef struct rows16 {
    const char *p[16];
} rows16;

TGT_VNNI INLINE void rows_init(rows16 *R, const void *w, size_t w_stride, int nrows) {
    UNROLL(16) for (int r = 0; r < 16; r++) {
        R->p[r] = (const char *)w + (size_t)(r < nrows ? r : nrows - 1) * w_stride;
    }
}

/* The dword at byte `at` of each lane's row. (Scalar loads: faster here
 * than vpgatherdd, see docs/measurements.md.) */
TGT_VNNI INLINE __m512i rows_dword(const rows16 *R, size_t at) {
    alignas(64) int32_t v[16];
    UNROLL(16) for (int r = 0; r < 16; r++) memcpy(&v[r], R->p[r] + at, 4);
    return _mm512_load_si512(v);
}

/* The fp16 in the low half of each dword, widened. */
TGT_VNNI INLINE __m512 lo_fp16(__m512i v) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v)); }
TGT_VNNI INLINE __m512 hi_fp16(__m512i v) {
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(v, 16)));
}

/* X[k], k < 4: dword k of the 16 bytes at byte `at` of each row. */
TGT_VNNI INLINE void rows_t4(const rows16 *R, size_t at, __m512i X[4]) {
    __m512i Z[4];
    UNROLL(4) for (int i = 0; i < 4; i++) {
        __m512i z = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(R->p[4 * i] + at)));
        z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(R->p[4 * i + 1] + at)), 1);
        z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(R->p[4 * i + 2] + at)), 2);
        Z[i] = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(R->p[4 * i + 3] + at)), 3);
    }
    /* Z[i] dword 4c + k is dword k of row 4i + c. A: rows 0..7 dword 0 in
     * lanes 0..7, dword 1 in lanes 8..15; B: dwords 2, 3. */
    const __m512i ia = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29);
    const __m512i ib = _mm512_add_epi32(ia, _mm512_set1_epi32(2));
    __m512i A = _mm512_permutex2var_epi32(Z[0], ia, Z[1]);
    __m512i B = _mm512_permutex2var_epi32(Z[0], ib, Z[1]);
    __m512i C = _mm512_permutex2var_epi32(Z[2], ia, Z[3]);
    __m512i D = _mm512_permutex2var_epi32(Z[2], ib, Z[3]);
    X[0] = _mm512_shuffle_i64x2(A, C, 0x44);
    X[1] = _mm512_shuffle_i64x2(A, C, 0xEE);
    X[2] = _mm512_shuffle_i64x2(B, D, 0x44);
    X[3] = _mm512_shuffle_i64x2(B, D, 0xEE);
}

TGT_VNNI INLINE __m512i lo_nib(__m512i v) { return _mm512_and_si512(v, _mm512_set1_epi8(0x0F)); }
TGT_VNNI INLINE __m512i hi_nib(__m512i v) {
    return _mm512_and_si512(_mm512_srli_epi32(v, 4), _mm512_set1_epi8(0x0F));
}

/* 0x10 in byte i of each lane where bit 4s + i of the lane's qh is set. */
TGT_VNNI INLINE __m512i fifth_bits4(__m512i qh, int s) {
    /* Byte s / 2 of the lane to all four bytes (shuffles index the 16
     * bytes of a 128-bit chunk, 4 lanes), then one bit per byte. */
    const __m512i spread = _mm512_add_epi32(
        _mm512_set1_epi32((s / 2) * 0x01010101),
        _mm512_set4_epi32(0x0C0C0C0C, 0x08080808, 0x04040404, 0));
    const __m512i bit = _mm512_set1_epi32((int)(0x08040201u << (4 * (s % 2))));
    __mmask64 k = _mm512_test_epi8_mask(_mm512_shuffle_epi8(qh, spread), bit);
    return _mm512_maskz_mov_epi8(k, _mm512_set1_epi8(0x10));
}

/* ------------------------------------------------ 32-value block types */

typedef enum leg_kind { LEG_Q4_0, LEG_Q5_0, LEG_Q8_0, LEG_Q4_1, LEG_Q5_1 } leg_kind;

INLINE bool leg_min(leg_kind k) { return k == LEG_Q4_1 || k == LEG_Q5_1; }

#define LEG_XBYTES(k)                                                                              \
    ((k) == LEG_Q4_0   ? sizeof(block_q4_0)                                                        \
     : (k) == LEG_Q5_0 ? sizeof(block_q5_0)                                                        \
     : (k) == LEG_Q8_0 ? sizeof(block_q8_0)                                                        \
     : (k) == LEG_Q4_1 ? sizeof(block_q4_1)                                                        \
                       : sizeof(block_q5_1))

INLINE size_t leg_xbytes(leg_kind k) {
    switch (k) {
    case LEG_Q4_0: return sizeof(block_q4_0);
    case LEG_Q5_0: return sizeof(block_q5_0);
    case LEG_Q8_0: return sizeof(block_q8_0);
    case LEG_Q4_1: return sizeof(block_q4_1);
    default: return sizeof(block_q5_1);
    }
}

/* vec_dot_type block bytes and the offset of its qs. */
INLINE size_t leg_ybytes(leg_kind k) { return leg_min(k) ? sizeof(block_q8_1) : sizeof(block_q8_0); }
INLINE size_t leg_yqs(leg_kind k) { return leg_min(k) ? 4 : 2; }

/* Panel bytes per block and 16-row half: 8 steps, d (and m). */
#define LEG_PBYTES(k) (((k) == LEG_Q4_1 || (k) == LEG_Q5_1 ? 10 : 9) * 64)
INLINE size_t leg_pbytes(leg_kind k) { return LEG_PBYTES(k); }

/* The value offset of the *_0 types at VNNI (q + offset is unsigned). */
INLINE int leg_offset(leg_kind k) {
    switch (k) {
    case LEG_Q4_0: return 8;
    case LEG_Q5_0: return 16;
    case LEG_Q8_0: return 128;
    default: return 0;
    }
}

/* A token's block in a group: the 32 q, the float d, then -offset * sum(q)
 * (*_0) or the float s (*_1). */
#define LEG_ENTRY 40
#define LEG_NT 4 /* tokens per group */

/* One 16-row half of a panel block: the 8 steps, d (and m). */
TGT_VNNI INLINE void leg_prep_half_vnni(const rows16 *R, size_t at, __m512i *out,
                                        const leg_kind k) {
    __m512i X[4], x[8];
    __m512i head = rows_dword(R, at); /* d, and m for *_1 */
    switch (k) {
    case LEG_Q8_0: {
        const __m512i flip = _mm512_set1_epi8((char)0x80);
        rows_t4(R, at + 2, X);
        UNROLL(4) for (int s = 0; s < 4; s++) x[s] = _mm512_xor_si512(X[s], flip);
        rows_t4(R, at + 18, X);
        UNROLL(4) for (int s = 0; s < 4; s++) x[4 + s] = _mm512_xor_si512(X[s], flip);
        break;
    }
    case LEG_Q4_0:
    case LEG_Q4_1:
        rows_t4(R, at + (k == LEG_Q4_0 ? 2 : 4), X);
        UNROLL(4) for (int s = 0; s < 4; s++) {
            x[s] = lo_nib(X[s]);
            x[4 + s] = hi_nib(X[s]);
        }
        break;
    default: { /* Q5_0, Q5_1 */
        const size_t qh_at = at + (k == LEG_Q5_0 ? 2 : 4);
        __m512i qh = rows_dword(R, qh_at);
        rows_t4(R, qh_at + 4, X);
        UNROLL(4) for (int s = 0; s < 4; s++) {
            x[s] = _mm512_or_si512(lo_nib(X[s]), fifth_bits4(qh, s));
            x[4 + s] = _mm512_or_si512(hi_nib(X[s]), fifth_bits4(qh, 4 + s));
        }
        break;
    }
    }
    UNROLL(8) for (int s = 0; s < 8; s++) _mm512_storeu_si512(out + s, x[s]);
    _mm512_storeu_ps(out + 8, lo_fp16(head));
    if (leg_min(k)) _mm512_storeu_ps(out + 9, hi_fp16(head));
}

/* Panel of nrows <= 32 rows: per block, the half of rows 0..15, then (when
 * nrows > 16) the half of rows 16..31. */
TGT_VNNI INLINE void leg_prep_panel_vnni(const void *restrict w, size_t w_stride, int nrows,
                                         int64_t b0, int64_t nblk, void *restrict panel,
                                         const leg_kind k) {
    const int H = nrows > 16 ? 2 : 1;
    rows16 R[2];
    for (int h = 0; h < H; h++)
        rows_init(&R[h], (const char *)w + (size_t)(16 * h) * w_stride, w_stride,
                  h ? nrows - 16 : (nrows < 16 ? nrows : 16));
    const size_t xb = leg_xbytes(k), hw = leg_pbytes(k) / 64;
    __m512i *out = panel;
    for (int64_t b = b0; b < b0 + nblk; b++)
        for (int h = 0; h < H; h++, out += hw) leg_prep_half_vnni(&R[h], (size_t)b * xb, out, k);
}

/* Packs nt tokens' blocks into a group (LEG_ENTRY bytes each). */
TGT_AVX2 INLINE void leg_pack_act(const void *restrict y, size_t ys, int nt, int64_t nblk,
                                       void *restrict g, const leg_kind k) {
    const size_t yb = leg_ybytes(k);
    for (int j = 0; j < nt; j++) {
        const char *src = (const char *)y + (size_t)j * ys;
        char *e = (char *)g + (size_t)j * LEG_ENTRY;
        for (int64_t b = 0; b < nblk; b++, src += yb, e += LEG_NT * LEG_ENTRY) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(src + leg_yqs(k)));
            _mm256_storeu_si256((__m256i *)e, q);
            float d = fp16(ld16(src));
            memcpy(e + 32, &d, 4);
            if (leg_min(k)) {
                float s = fp16(ld16(src + 2));
                memcpy(e + 36, &s, 4);
                continue;
            }
            /* sum(q) = sum(q + 128) - 32 * 128, the former from byte sums. */
            __m256i u = _mm256_xor_si256(q, _mm256_set1_epi8((char)0x80));
            __m256i sad = _mm256_sad_epu8(u, _mm256_setzero_si256());
            __m128i s2 =
                _mm_add_epi64(_mm256_castsi256_si128(sad), _mm256_extracti128_si256(sad, 1));
            s2 = _mm_add_epi64(s2, _mm_unpackhi_epi64(s2, s2));
            int32_t corr = -leg_offset(k) * (_mm_cvtsi128_si32(s2) - 32 * 128);
            memcpy(e + 36, &corr, 4);
        }
    }
}

/*
 * Kernel, VNNI. Per block and token: the integer sums of 16 rows start
 * from -offset * sum(y) and take 8 vpdpbusd (|sum| <= 32 * 255 * 128 for
 * Q8_0, no overflow), then sumf = sumf + (d_x * d_y) * (float)isum, and
 * for the *_1 types sumf = sumf + ((d_x * d_y) * (float)isum + m_x * s_y),
 * as the reference.
 */

TGT_VNNI INLINE void leg_kernel_vnni(const void *restrict panel, int64_t nblk,
                                     const void *restrict act, const int nt, float *restrict out,
                                     size_t os, int nrows, bool first, const leg_kind k,
                                     const int H) {
    const __mmask16 m[2] = {
        (__mmask16)(nrows >= 16 ? 0xFFFF : (1u << nrows) - 1),
        (__mmask16)(nrows >= 32 ? 0xFFFF : nrows > 16 ? (1u << (nrows - 16)) - 1 : 0)};
    const size_t hb = leg_pbytes(k);
    __m512 sum[LEG_NT][2];
    UNROLL(8) for (int j = 0; j < nt; j++) UNROLL(2) for (int h = 0; h < H; h++) {
        sum[j][h] = first ? _mm512_setzero_ps()
                          : _mm512_maskz_loadu_ps(m[h], out + (size_t)j * os + 16 * h);
    }
    const char *p = panel, *a = act;
    for (int64_t b = 0; b < nblk; b++, p += H * hb, a += LEG_NT * LEG_ENTRY) {
        __m512i x[2][8];
        __m512 dx[2];
        UNROLL(2) for (int h = 0; h < H; h++) {
            UNROLL(8) for (int s = 0; s < 8; s++) x[h][s] = _mm512_loadu_si512(p + h * hb + 64 * s);
            dx[h] = _mm512_loadu_ps((const float *)(p + h * hb + 512));
        }
        UNROLL(8) for (int j = 0; j < nt; j++) {
            const char *e = a + j * LEG_ENTRY;
            __m512i acc[2];
            UNROLL(2) for (int h = 0; h < H; h++) {
                acc[h] = leg_min(k) ? _mm512_setzero_si512() : bcast32(e + 36);
            }
            __m512i acc2[2];
            UNROLL(2) for (int h = 0; h < H; h++) acc2[h] = _mm512_setzero_si512();
            UNROLL(4) for (int s = 0; s < 4; s++) {
                const __m512i yb = bcast32(e + 4 * s), yb2 = bcast32(e + 16 + 4 * s);
                UNROLL(2) for (int h = 0; h < H; h++) {
                    acc[h] = _mm512_dpbusd_epi32(acc[h], x[h][s], yb);
                    acc2[h] = _mm512_dpbusd_epi32(acc2[h], x[h][4 + s], yb2);
                }
            }
            UNROLL(2) for (int h = 0; h < H; h++) acc[h] = _mm512_add_epi32(acc[h], acc2[h]);
            const __m512 dy = bcastf(e + 32);
            UNROLL(2) for (int h = 0; h < H; h++) {
                const __m512 d = _mm512_mul_ps(dx[h], dy);
                __m512 t = opaque512(_mm512_mul_ps(d, _mm512_cvtepi32_ps(acc[h])));
                if (leg_min(k)) {
                    const __m512 mx = _mm512_loadu_ps((const float *)(p + h * hb + 576));
                    __m512 ms = opaque512(_mm512_mul_ps(mx, bcastf(e + 36)));
                    t = _mm512_add_ps(t, ms);
                }
                sum[j][h] = _mm512_add_ps(sum[j][h], t);
            }
        }
    }
    UNROLL(8) for (int j = 0; j < nt; j++) UNROLL(2) for (int h = 0; h < H; h++) {
        _mm512_mask_storeu_ps(out + (size_t)j * os + 16 * h, m[h], sum[j][h]);
    }
}

#define GEMM_KERNEL_PARAMS                                                                         \
    const void *restrict panel, int64_t nblk, const void *restrict act, int nt,                    \
        float *restrict out, size_t os, int nrows, bool first
#define GEMM_KERNEL_ARGS panel, nblk, act, nt, out, os, nrows, first

/* One instance per token count (and panel height), so the accumulators
 * stay in registers. */
#define NT_CASE(body, n, ...)                                                                      \
    case n: body(panel, nblk, act, n, out, os, nrows, first, __VA_ARGS__); break;
#define SWITCH_NT4(body, ...)                                                                      \
    switch (nt) {                                                                                  \
        NT_CASE(body, 1, __VA_ARGS__)                                                              \
        NT_CASE(body, 2, __VA_ARGS__)                                                              \
        NT_CASE(body, 3, __VA_ARGS__)                                                              \
    default: body(panel, nblk, act, 4, out, os, nrows, first, __VA_ARGS__); break;                 \
    }
#define SWITCH_H(body, ...)                                                                        \
    if (nrows > 16) {                                                                              \
        SWITCH_NT4(body, __VA_ARGS__, 2)                                                           \
    } else {                                                                                       \
        SWITCH_NT4(body, __VA_ARGS__, 1)                                                           \
    }

#define LEG_VNNI(name, kind, qt)                                                                     \
    TGT_VNNI static void name##_panel_vnni(const void *restrict w, size_t w_stride, int nrows,     \
                                           int64_t b0, int64_t nblk, void *restrict panel) {       \
        leg_prep_panel_vnni(w, w_stride, nrows, b0, nblk, panel, kind);                            \
    }                                                                                              \
    TGT_AVX2 static void name##_act(const void *restrict y, size_t ys, int nt, int64_t nblk,       \
                                    void *restrict g) {                                            \
        leg_pack_act(y, ys, nt, nblk, g, kind);                                               \
    }                                                                                              \
    TGT_VNNI static void name##_kernel_vnni(GEMM_KERNEL_PARAMS) {                                  \
        SWITCH_H(leg_kernel_vnni, kind)                                                          \
    }                                                                                              \
    static const cpu_gemm name##_gemm_vnni = {                                                     \
        .type = qt,                                                                                \
        .block = 32,                                                                               \
        .w_block_bytes = LEG_XBYTES(kind),                                                         \
        .panel_block_bytes = 2 * LEG_PBYTES(kind),                                                     \
        .group = LEG_NT,                                                                           \
        .act_entry_bytes = LEG_ENTRY,                                                              \
        .pack_act = name##_act,                                                                    \
        .prep_panel = name##_panel_vnni,                                                           \
        .kernel = name##_kernel_vnni,                                                              \
    };
LEG_VNNI(q4_0, LEG_Q4_0, QT_Q4_0)
LEG_VNNI(q5_0, LEG_Q5_0, QT_Q5_0)
LEG_VNNI(q8_0, LEG_Q8_0, QT_Q8_0)
LEG_VNNI(q4_1, LEG_Q4_1, QT_Q4_1)
LEG_VNNI(q5_1, LEG_Q5_1, QT_Q5_1)

/* ------------------------------------------------------ k-quant types
 *
 * Activations: Q8_K blocks copied as they are into the groups (d, qs,
 * bsums). Panels per super-block and 16-row half:
 *   Q4_K: 64 steps (sub-block j, step s at 8j + s: q, 0..15), sc_j as int32
 *         (8), m_j as the int16 pair (m_j, m_j) (8), d, dmin (floats);
 *   Q6_K: 64 steps (sub-block j of 16 values, step s at 4j + s: q, 0..63),
 *         sc_j as int32 (16), (sc_2p, sc_2p+1) as int16 pairs (8), d.
 */
#define KQ_ENTRY ((size_t)sizeof(block_q8_K))
#define KQ_NT 4
#define Q4K_HALF ((64 + 8 + 8 + 2) * 64)
#define Q6K_HALF ((64 + 16 + 8 + 1) * 64)

TGT_AVX2 INLINE void kq_pack_act(const void *restrict y, size_t ys, int nt, int64_t nblk,
                                 void *restrict g) {
    for (int j = 0; j < nt; j++) {
        const char *src = (const char *)y + (size_t)j * ys;
        char *e = (char *)g + (size_t)j * KQ_ENTRY;
        for (int64_t b = 0; b < nblk; b++, src += KQ_ENTRY, e += KQ_NT * KQ_ENTRY)
            memcpy(e, src, KQ_ENTRY);
    }
}

/* Byte j (0..3) of each dword, zero- or sign-extended. */
TGT_VNNI INLINE __m512i byte_u(__m512i v, int j) {
    return _mm512_and_si512(_mm512_srli_epi32(v, 8 * j), _mm512_set1_epi32(0xFF));
}
TGT_VNNI INLINE __m512i byte_s(__m512i v, int j) {
    return _mm512_srai_epi32(_mm512_slli_epi32(v, 24 - 8 * j), 24);
}
/* (v, v) as int16 pairs, for v in 0..0x7FFF. */
TGT_VNNI INLINE __m512i dup16(__m512i v) { return _mm512_or_si512(v, _mm512_slli_epi32(v, 16)); }

TGT_VNNI INLINE void q4_K_half(const rows16 *R, size_t at, __m512i *out) {
    const __m512i m6 = _mm512_set1_epi8(0x3F), m4 = _mm512_set1_epi8(0x0F),
                  m2 = _mm512_set1_epi8(0x03);
    __m512i head = rows_dword(R, at), u0 = rows_dword(R, at + 4), u1 = rows_dword(R, at + 8),
            u2 = rows_dword(R, at + 12);
    /* The layout of get_scale_min_k4, four values per dword. */
    __m512i sc_lo = _mm512_and_si512(u0, m6), mn_lo = _mm512_and_si512(u1, m6);
    __m512i sc_hi = _mm512_or_si512(_mm512_and_si512(u2, m4),
                                    _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u0, 6), m2), 4));
    __m512i mn_hi =
        _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u2, 4), m4),
                        _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u1, 6), m2), 4));
    UNROLL(4) for (int c = 0; c < 8; c++) {
        __m512i X[4];
        rows_t4(R, at + 16 + 16 * (size_t)c, X);
        const int g = c / 2;
        UNROLL(4) for (int k = 0; k < 4; k++) {
            const int st = 4 * (c % 2) + k;
            _mm512_storeu_si512(out + 8 * (2 * g) + st, lo_nib(X[k]));
            _mm512_storeu_si512(out + 8 * (2 * g + 1) + st, hi_nib(X[k]));
        }
    }
    UNROLL(8) for (int j = 0; j < 8; j++) {
        __m512i sc = byte_u(j < 4 ? sc_lo : sc_hi, j % 4), mn = byte_u(j < 4 ? mn_lo : mn_hi, j % 4);
        _mm512_storeu_si512(out + 64 + j, sc);
        _mm512_storeu_si512(out + 72 + j, dup16(mn));
    }
    _mm512_storeu_ps(out + 80, lo_fp16(head));
    _mm512_storeu_ps(out + 81, hi_fp16(head));
}

TGT_VNNI INLINE void q6_K_half(const rows16 *R, size_t at, __m512i *out) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), h2 = _mm512_set1_epi8(0x30);
    UNROLL(2) for (int n = 0; n < 2; n++) {
        UNROLL(2) for (int half = 0; half < 2; half++) { /* l4 = 4 * half + k4 */
            __m512i L0[4], L1[4], QH[4];
            rows_t4(R, at + 64 * (size_t)n + 16 * (size_t)half, L0);      /* ql dwords 16n + l4 */
            rows_t4(R, at + 64 * (size_t)n + 32 + 16 * (size_t)half, L1); /* 16n + 8 + l4 */
            rows_t4(R, at + 128 + 32 * (size_t)n + 16 * (size_t)half, QH); /* qh 8n + l4 */
            UNROLL(4) for (int k4 = 0; k4 < 4; k4++) {
                const int l4 = 4 * half + k4, s4 = l4 % 4, jb = 8 * n + l4 / 4;
                __m512i q0 = _mm512_or_si512(_mm512_and_si512(L0[k4], m4),
                                             _mm512_and_si512(_mm512_slli_epi32(QH[k4], 4), h2));
                __m512i q1 = _mm512_or_si512(_mm512_and_si512(L1[k4], m4),
                                             _mm512_and_si512(_mm512_slli_epi32(QH[k4], 2), h2));
                __m512i q2 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(L0[k4], 4), m4),
                                             _mm512_and_si512(QH[k4], h2));
                __m512i q3 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(L1[k4], 4), m4),
                                             _mm512_and_si512(_mm512_srli_epi32(QH[k4], 2), h2));
                _mm512_storeu_si512(out + 4 * (jb + 0) + s4, q0);
                _mm512_storeu_si512(out + 4 * (jb + 2) + s4, q1);
                _mm512_storeu_si512(out + 4 * (jb + 4) + s4, q2);
                _mm512_storeu_si512(out + 4 * (jb + 6) + s4, q3);
            }
        }
    }
    UNROLL(4) for (int u = 0; u < 4; u++) {
        __m512i v = rows_dword(R, at + 192 + 4 * (size_t)u);
        __m512i sc[4];
        UNROLL(4) for (int i = 0; i < 4; i++) {
            sc[i] = byte_s(v, i);
            _mm512_storeu_si512(out + 64 + 4 * u + i, sc[i]);
        }
        UNROLL(2) for (int p = 0; p < 2; p++) {
            __m512i pair = _mm512_or_si512(_mm512_and_si512(sc[2 * p], _mm512_set1_epi32(0xFFFF)),
                                           _mm512_slli_epi32(sc[2 * p + 1], 16));
            _mm512_storeu_si512(out + 80 + 2 * u + p, pair);
        }
    }
    /* d: the high half of the dword that ends the block (so nothing past
     * the block is read). */
    _mm512_storeu_ps(out + 88, hi_fp16(rows_dword(R, at + 206)));
}

#define KQ_PREP(name, blk, half_fn, HB)                                                            \
    TGT_VNNI static void name##_panel_vnni(const void *restrict w, size_t w_stride, int nrows,     \
                                           int64_t b0, int64_t nblk, void *restrict panel) {       \
        const int H = nrows > 16 ? 2 : 1;                                                          \
        rows16 R[2];                                                                               \
        for (int h = 0; h < H; h++)                                                                \
            rows_init(&R[h], (const char *)w + (size_t)(16 * h) * w_stride, w_stride,              \
                      h ? nrows - 16 : (nrows < 16 ? nrows : 16));                                 \
        __m512i *out = panel;                                                                      \
        for (int64_t b = b0; b < b0 + nblk; b++)                                                   \
            for (int h = 0; h < H; h++, out += (HB) / 64)                                          \
                half_fn(&R[h], (size_t)b * sizeof(blk), out);                                      \
    }
KQ_PREP(q4_K, block_q4_K, q4_K_half, Q4K_HALF)
KQ_PREP(q6_K, block_q6_K, q6_K_half, Q6K_HALF)

TGT_VNNI INLINE __mmask16 half_mask(int nrows, int h) {
    int n = nrows - 16 * h;
    return (__mmask16)(n >= 16 ? 0xFFFF : n > 0 ? (1u << n) - 1 : 0);
}

/*
 * Q4_K, VNNI. Per sub-block j and 16-value half, t = sum q * y (|t| <=
 * 16 * 15 * 128 < 2^15), so t * sc_j is one vpdpwssd against (sc_j, 0)
 * (the int32 sc_j read as int16 pairs; t's upper int16 is its sign, times
 * 0). isum and msum are then the reference's exact integers, and
 *   sumf = sumf + (d * y.d) * (float)isum;  sumf = sumf - (dmin * y.d) * (float)msum.
 */
TGT_VNNI INLINE void q4_K_kernel_body(const void *restrict panel, int64_t nblk,
                                      const void *restrict act, const int nt, float *restrict out,
                                      size_t os, int nrows, bool first, const int H) {
    const __mmask16 m[2] = {half_mask(nrows, 0), half_mask(nrows, 1)};
    __m512 sum[KQ_NT][2];
    UNROLL(4) for (int j = 0; j < nt; j++) UNROLL(2) for (int h = 0; h < H; h++) {
        sum[j][h] = first ? _mm512_setzero_ps()
                          : _mm512_maskz_loadu_ps(m[h], out + (size_t)j * os + 16 * h);
    }
    const char *p = panel, *a = act;
    for (int64_t b = 0; b < nblk; b++, p += H * Q4K_HALF, a += KQ_NT * KQ_ENTRY) {
        __m512i isum[KQ_NT][2];
        UNROLL(4) for (int j = 0; j < nt; j++) UNROLL(2) for (int h = 0; h < H; h++) {
            isum[j][h] = _mm512_setzero_si512();
        }
        for (int sb = 0; sb < 8; sb++) {
            __m512i sc[2];
            UNROLL(2) for (int h = 0; h < H; h++) {
                sc[h] = _mm512_loadu_si512(p + h * Q4K_HALF + 64 * (64 + sb));
            }
            UNROLL(2) for (int part = 0; part < 2; part++) {
                __m512i x[2][4];
                UNROLL(2) for (int h = 0; h < H; h++) UNROLL(4) for (int s = 0; s < 4; s++) {
                    x[h][s] = _mm512_loadu_si512(p + h * Q4K_HALF + 64 * (8 * sb + 4 * part + s));
                }
                UNROLL(4) for (int j = 0; j < nt; j++) {
                    const char *yq = a + j * KQ_ENTRY + 4 + 32 * sb + 16 * part;
                    __m512i t[2];
                    UNROLL(2) for (int h = 0; h < H; h++) t[h] = _mm512_setzero_si512();
                    UNROLL(4) for (int s = 0; s < 4; s++) {
                        const __m512i yb = bcast32(yq + 4 * s);
                        UNROLL(2) for (int h = 0; h < H; h++) t[h] = _mm512_dpbusd_epi32(t[h], x[h][s], yb);
                    }
                    UNROLL(2) for (int h = 0; h < H; h++) {
                        isum[j][h] = _mm512_dpwssd_epi32(isum[j][h], t[h], sc[h]);
                    }
                }
            }
        }
        UNROLL(4) for (int j = 0; j < nt; j++) {
            const char *e = a + j * KQ_ENTRY;
            const __m512 yd = bcastf(e);
            UNROLL(2) for (int h = 0; h < H; h++) {
                const char *ph = p + h * Q4K_HALF;
                __m512i msum = _mm512_setzero_si512();
                UNROLL(8) for (int sb = 0; sb < 8; sb++) {
                    msum = _mm512_dpwssd_epi32(msum, _mm512_loadu_si512(ph + 64 * (72 + sb)),
                                               bcast32(e + 4 + 256 + 4 * sb));
                }
                const __m512 d = _mm512_mul_ps(_mm512_loadu_ps((const float *)(ph + 64 * 80)), yd);
                const __m512 dm = _mm512_mul_ps(_mm512_loadu_ps((const float *)(ph + 64 * 81)), yd);
                __m512 t = opaque512(_mm512_mul_ps(d, _mm512_cvtepi32_ps(isum[j][h])));
                __m512 u = opaque512(_mm512_mul_ps(dm, _mm512_cvtepi32_ps(msum)));
                sum[j][h] = _mm512_sub_ps(_mm512_add_ps(sum[j][h], t), u);
            }
        }
    }
    UNROLL(4) for (int j = 0; j < nt; j++) UNROLL(2) for (int h = 0; h < H; h++) {
        _mm512_mask_storeu_ps(out + (size_t)j * os + 16 * h, m[h], sum[j][h]);
    }
}

/*
 * Q6_K, VNNI. Per 16-value sub-block j, t = sum q * y with q = stored + 32
 * in 0..63 (|t| <= 16 * 63 * 128), times sc_j (vpmulld; |sc_j * t| < 2^24);
 * the +32 is taken back once per super-block: isum -= 32 * sum_j sc_j *
 * bsums[j] (vpdpwssd on the int16 pairs). Then
 *   sumf = sumf + (d * y.d) * (float)isum.
 */
TGT_VNNI INLINE void q6_K_kernel_body(const void *restrict panel, int64_t nblk,
                                      const void *restrict act, const int nt, float *restrict out,
                                      size_t os, int nrows, bool first, const int H) {
    const __mmask16 m[2] = {half_mask(nrows, 0), half_mask(nrows, 1)};
    __m512 sum[KQ_NT][2];
    UNROLL(4) for (int j = 0; j < nt; j++) UNROLL(2) for (int h = 0; h < H; h++) {
        sum[j][h] = first ? _mm512_setzero_ps()
                          : _mm512_maskz_loadu_ps(m[h], out + (size_t)j * os + 16 * h);
    }
    const char *p = panel, *a = act;
    for (int64_t b = 0; b < nblk; b++, p += H * Q6K_HALF, a += KQ_NT * KQ_ENTRY) {
        __m512i isum[KQ_NT][2];
        UNROLL(4) for (int j = 0; j < nt; j++) UNROLL(2) for (int h = 0; h < H; h++) {
            isum[j][h] = _mm512_setzero_si512();
        }
        for (int sb = 0; sb < 16; sb++) {
            __m512i sc[2], x[2][4];
            UNROLL(2) for (int h = 0; h < H; h++) {
                sc[h] = _mm512_loadu_si512(p + h * Q6K_HALF + 64 * (64 + sb));
                UNROLL(4) for (int s = 0; s < 4; s++) {
                    x[h][s] = _mm512_loadu_si512(p + h * Q6K_HALF + 64 * (4 * sb + s));
                }
            }
            UNROLL(4) for (int j = 0; j < nt; j++) {
                const char *yq = a + j * KQ_ENTRY + 4 + 16 * sb;
                __m512i t[2];
                UNROLL(2) for (int h = 0; h < H; h++) t[h] = _mm512_setzero_si512();
                UNROLL(4) for (int s = 0; s < 4; s++) {
                    const __m512i yb = bcast32(yq + 4 * s);
                    UNROLL(2) for (int h = 0; h < H; h++) t[h] = _mm512_dpbusd_epi32(t[h], x[h][s], yb);
                }
                UNROLL(2) for (int h = 0; h < H; h++) {
                    isum[j][h] = _mm512_add_epi32(isum[j][h], _mm512_mullo_epi32(t[h], sc[h]));
                }
            }
        }
        UNROLL(4) for (int j = 0; j < nt; j++) {
            const char *e = a + j * KQ_ENTRY;
            const __m512 yd = bcastf(e);
            UNROLL(2) for (int h = 0; h < H; h++) {
                const char *ph = p + h * Q6K_HALF;
                __m512i corr = _mm512_setzero_si512();
                UNROLL(8) for (int q = 0; q < 8; q++) {
                    corr = _mm512_dpwssd_epi32(corr, _mm512_loadu_si512(ph + 64 * (80 + q)),
                                               bcast32(e + 4 + 256 + 4 * q));
                }
                __m512i is = _mm512_sub_epi32(isum[j][h], _mm512_slli_epi32(corr, 5));
                const __m512 d = _mm512_mul_ps(_mm512_loadu_ps((const float *)(ph + 64 * 88)), yd);
                __m512 t = opaque512(_mm512_mul_ps(d, _mm512_cvtepi32_ps(is)));
                sum[j][h] = _mm512_add_ps(sum[j][h], t);
            }
        }
    }
    UNROLL(4) for (int j = 0; j < nt; j++) UNROLL(2) for (int h = 0; h < H; h++) {
        _mm512_mask_storeu_ps(out + (size_t)j * os + 16 * h, m[h], sum[j][h]);
    }
}

#define KQ_VNNI(name, qt, HB)                                                                      \
    TGT_AVX2 static void name##_act(const void *restrict y, size_t ys, int nt, int64_t nblk,       \
                                    void *restrict g) {                                            \
        kq_pack_act(y, ys, nt, nblk, g);                                                           \
    }                                                                                              \
    TGT_VNNI static void name##_kernel_vnni(GEMM_KERNEL_PARAMS) {                                  \
        if (nrows > 16) {                                                                          \
            SWITCH_NT4(name##_kernel_body, 2)                                                      \
        } else {                                                                                   \
            SWITCH_NT4(name##_kernel_body, 1)                                                      \
        }                                                                                          \
    }                                                                                              \
    static const cpu_gemm name##_gemm_vnni = {                                                     \
        .type = qt,                                                                                \
        .block = QK_K,                                                                             \
        .w_block_bytes = (qt) == QT_Q4_K ? sizeof(block_q4_K) : sizeof(block_q6_K),                \
        .panel_block_bytes = 2 * (HB),                                                             \
        .group = KQ_NT,                                                                            \
        .act_entry_bytes = KQ_ENTRY,                                                               \
        .pack_act = name##_act,                                                                    \
        .prep_panel = name##_panel_vnni,                                                           \
        .kernel = name##_kernel_vnni,                                                              \
    };
KQ_VNNI(q4_K, QT_Q4_K, Q4K_HALF)
KQ_VNNI(q6_K, QT_Q6_K, Q6K_HALF)

/* ============================================================== AVX2
 *
 * The same activation groups; panels in units of 8 rows (one ymm lane per
 * row), a 32-row panel being 4 units per block. vpmaddubsw forms the
 * products in int16 pairs, which never saturate here (|q| * |y| pairs: Q4
 * <= 2 * 15 * 127, Q5 <= 2 * 31 * 127, Q6_K <= 2 * 63 * 128), and they are
 * summed in int16 over as many steps as stay below 2^15 (8 for 4-bit, 4 for
 * 5-bit, 2 for 6-bit values), then widened by vpmaddwd. Q8_0 takes the
 * sign trick (|x| times y with x's sign) and widens every step. The integer
 * sums are the same exact sums as at VNNI, the float part the same, so
 * both levels give the reference's results.
 * Measured (one core, kernel only, L1): docs/measurements.md.
 */
typedef struct rows8 {
    const char *p[8];
} rows8;

TGT_AVX2 INLINE void rows8_init(rows8 *R, const void *w, size_t w_stride, int nrows) {
    UNROLL(8) for (int r = 0; r < 8; r++) {
        R->p[r] = (const char *)w + (size_t)(r < nrows ? r : nrows - 1) * w_stride;
    }
}

TGT_AVX2 INLINE __m256i rows8_dword(const rows8 *R, size_t at) {
    alignas(32) int32_t v[8];
    UNROLL(8) for (int r = 0; r < 8; r++) memcpy(&v[r], R->p[r] + at, 4);
    return _mm256_load_si256((const __m256i *)v);
}

/* The fp16 at byte `at` of each row (hi: at + 2), widened. */
TGT_AVX2 INLINE __m256 rows8_fp16(const rows8 *R, size_t at) {
    alignas(16) uint16_t v[8];
    UNROLL(8) for (int r = 0; r < 8; r++) memcpy(&v[r], R->p[r] + at, 2);
    return _mm256_cvtph_ps(_mm_load_si128((const __m128i *)v));
}

/* X[k], k < 4: dword k of the 16 bytes at `at` of the 8 rows, rows in order. */
TGT_AVX2 INLINE void rows8_t4(const rows8 *R, size_t at, __m256i X[4]) {
    __m256i A[4];
    UNROLL(4) for (int i = 0; i < 4; i++) {
        A[i] = _mm256_loadu2_m128i((const __m128i *)(R->p[i + 4] + at),
                                   (const __m128i *)(R->p[i] + at));
    }
    __m256i t0 = _mm256_unpacklo_epi32(A[0], A[1]), t1 = _mm256_unpackhi_epi32(A[0], A[1]);
    __m256i t2 = _mm256_unpacklo_epi32(A[2], A[3]), t3 = _mm256_unpackhi_epi32(A[2], A[3]);
    X[0] = _mm256_unpacklo_epi64(t0, t2);
    X[1] = _mm256_unpackhi_epi64(t0, t2);
    X[2] = _mm256_unpacklo_epi64(t1, t3);
    X[3] = _mm256_unpackhi_epi64(t1, t3);
}

TGT_AVX2 INLINE __m256i lo_nib8(__m256i v) { return _mm256_and_si256(v, _mm256_set1_epi8(0x0F)); }
TGT_AVX2 INLINE __m256i hi_nib8(__m256i v) {
    return _mm256_and_si256(_mm256_srli_epi32(v, 4), _mm256_set1_epi8(0x0F));
}

/* 0x10 in byte i of each lane where bit 4s + i of its qh is set. */
TGT_AVX2 INLINE __m256i fifth_bits8(__m256i qh, int s) {
    const __m256i spread = _mm256_add_epi32(
        _mm256_set1_epi32((s / 2) * 0x01010101),
        _mm256_setr_epi32(0, 0x04040404, 0x08080808, 0x0C0C0C0C, 0, 0x04040404, 0x08080808,
                          0x0C0C0C0C));
    const __m256i bit = _mm256_set1_epi32((int)(0x08040201u << (4 * (s % 2))));
    __m256i v = _mm256_and_si256(_mm256_shuffle_epi8(qh, spread), bit);
    return _mm256_and_si256(_mm256_cmpeq_epi8(v, bit), _mm256_set1_epi8(0x10));
}

TGT_AVX2 INLINE __m256 opaque256x(__m256 v) {
    __asm__("" : "+x"(v));
    return v;
}

TGT_AVX2 INLINE __m256i bcast32y(const void *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm256_set1_epi32(v);
}

TGT_AVX2 INLINE __m256 bcastfy(const void *p) {
    float v;
    memcpy(&v, p, sizeof v);
    return _mm256_set1_ps(v);
}

/* int32 lanes holding v | v << 16 (v 0..0x7FFF, or a sign-extended byte
 * kept to its low 16 bits). */
TGT_AVX2 INLINE __m256i pair16(__m256i lo, __m256i hi) {
    return _mm256_or_si256(_mm256_and_si256(lo, _mm256_set1_epi32(0xFFFF)), _mm256_slli_epi32(hi, 16));
}

TGT_AVX2 INLINE __m256i mask8(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* ---------------------------------------- 32-value block types, AVX2 */

/* Unit bytes: 8 steps, d, (m); Q8_0 also |x| (8 more steps). */
#define LEG8_UNIT(k) ((k) == LEG_Q8_0 ? 17 * 32 : (k) == LEG_Q4_1 || (k) == LEG_Q5_1 ? 10 * 32 : 9 * 32)

TGT_AVX2 INLINE void leg_prep_unit_avx2(const rows8 *R, size_t at, __m256i *out, const leg_kind k) {
    __m256i X[4], x[8];
    switch (k) {
    case LEG_Q8_0:
        rows8_t4(R, at + 2, X);
        UNROLL(4) for (int s = 0; s < 4; s++) x[s] = X[s];
        rows8_t4(R, at + 18, X);
        UNROLL(4) for (int s = 0; s < 4; s++) x[4 + s] = X[s];
        UNROLL(8) for (int s = 0; s < 8; s++) _mm256_storeu_si256(out + 9 + s, _mm256_abs_epi8(x[s]));
        break;
    case LEG_Q4_0:
    case LEG_Q4_1:
        rows8_t4(R, at + (k == LEG_Q4_0 ? 2 : 4), X);
        UNROLL(4) for (int s = 0; s < 4; s++) {
            x[s] = lo_nib8(X[s]);
            x[4 + s] = hi_nib8(X[s]);
        }
        break;
    default: { /* Q5_0, Q5_1 */
        const size_t qh_at = at + (k == LEG_Q5_0 ? 2 : 4);
        __m256i qh = rows8_dword(R, qh_at);
        rows8_t4(R, qh_at + 4, X);
        UNROLL(4) for (int s = 0; s < 4; s++) {
            x[s] = _mm256_or_si256(lo_nib8(X[s]), fifth_bits8(qh, s));
            x[4 + s] = _mm256_or_si256(hi_nib8(X[s]), fifth_bits8(qh, 4 + s));
        }
        break;
    }
    }
    UNROLL(8) for (int s = 0; s < 8; s++) _mm256_storeu_si256(out + s, x[s]);
    _mm256_storeu_ps((float *)(out + 8), rows8_fp16(R, at));
    if (leg_min(k)) _mm256_storeu_ps((float *)(out + 9), rows8_fp16(R, at + 2));
}

TGT_AVX2 INLINE void leg_prep_panel_avx2(const void *restrict w, size_t w_stride, int nrows,
                                         int64_t b0, int64_t nblk, void *restrict panel,
                                         const leg_kind k) {
    const int U = (nrows + 7) / 8;
    rows8 R[4];
    for (int u = 0; u < U; u++) {
        int left = nrows - 8 * u;
        rows8_init(&R[u], (const char *)w + (size_t)(8 * u) * w_stride, w_stride, left < 8 ? left : 8);
    }
    const size_t xb = leg_xbytes(k);
    __m256i *out = panel;
    for (int64_t b = b0; b < b0 + nblk; b++)
        for (int u = 0; u < U; u++, out += LEG8_UNIT(k) / 32)
            leg_prep_unit_avx2(&R[u], (size_t)b * xb, out, k);
}

/* One unit, NTP (1 or 2) tokens j0.. of the group, over nblk blocks. */
TGT_AVX2 INLINE void leg_unit_avx2(const char *restrict panel, int64_t nblk, int U, int u,
                                   const char *restrict act, int j0, const int NTP,
                                   float *restrict out, size_t os, int rows, bool first,
                                   const leg_kind k) {
    const __m256i mk = mask8(rows), ones = _mm256_set1_epi16(1);
    const size_t ub = LEG8_UNIT(k);
    __m256 sum[2];
    UNROLL(2) for (int t = 0; t < NTP; t++) {
        sum[t] = first ? _mm256_setzero_ps()
                       : _mm256_maskload_ps(out + (size_t)(j0 + t) * os + 8 * u, mk);
    }
    const char *p = panel + (size_t)u * ub, *a = act + (size_t)j0 * LEG_ENTRY;
    for (int64_t b = 0; b < nblk; b++, p += (size_t)U * ub, a += LEG_NT * LEG_ENTRY) {
        __m256i isum[2];
        UNROLL(2) for (int t = 0; t < NTP; t++) {
            const char *e = a + t * LEG_ENTRY;
            if (k == LEG_Q8_0) {
                __m256i acc = _mm256_setzero_si256();
                UNROLL(8) for (int s = 0; s < 8; s++) {
                    __m256i x = _mm256_loadu_si256((const __m256i *)(p + 32 * s));
                    __m256i ax = _mm256_loadu_si256((const __m256i *)(p + 32 * (9 + s)));
                    __m256i sy = _mm256_sign_epi8(bcast32y(e + 4 * s), x);
                    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), ones));
                }
                isum[t] = acc;
            } else {
                const bool five = k == LEG_Q5_0 || k == LEG_Q5_1;
                __m256i a16[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
                UNROLL(8) for (int s = 0; s < 8; s++) {
                    __m256i x = _mm256_loadu_si256((const __m256i *)(p + 32 * s));
                    __m256i pr = _mm256_maddubs_epi16(x, bcast32y(e + 4 * s));
                    const int h = five ? s / 4 : 0;
                    a16[h] = _mm256_add_epi16(a16[h], pr);
                }
                __m256i acc = _mm256_madd_epi16(a16[0], ones);
                if (five) acc = _mm256_add_epi32(acc, _mm256_madd_epi16(a16[1], ones));
                if (!leg_min(k)) acc = _mm256_add_epi32(acc, bcast32y(e + 36));
                isum[t] = acc;
            }
        }
        const __m256 dx = _mm256_loadu_ps((const float *)(p + 256));
        UNROLL(2) for (int t = 0; t < NTP; t++) {
            const char *e = a + t * LEG_ENTRY;
            const __m256 d = _mm256_mul_ps(dx, bcastfy(e + 32));
            __m256 v = opaque256x(_mm256_mul_ps(d, _mm256_cvtepi32_ps(isum[t])));
            if (leg_min(k)) {
                const __m256 mx = _mm256_loadu_ps((const float *)(p + 288));
                v = _mm256_add_ps(v, opaque256x(_mm256_mul_ps(mx, bcastfy(e + 36))));
            }
            sum[t] = _mm256_add_ps(sum[t], v);
        }
    }
    UNROLL(2) for (int t = 0; t < NTP; t++) {
        _mm256_maskstore_ps(out + (size_t)(j0 + t) * os + 8 * u, mk, sum[t]);
    }
}

TGT_AVX2 INLINE void leg_kernel_avx2(GEMM_KERNEL_PARAMS, const leg_kind k) {
    const int U = (nrows + 7) / 8;
    for (int u = 0; u < U; u++) {
        const int rows = nrows - 8 * u < 8 ? nrows - 8 * u : 8;
        int j = 0;
        for (; j + 2 <= nt; j += 2)
            leg_unit_avx2(panel, nblk, U, u, act, j, 2, out, os, rows, first, k);
        if (j < nt) leg_unit_avx2(panel, nblk, U, u, act, j, 1, out, os, rows, first, k);
    }
}

#define LEG_AVX2(name, kind, qt)                                                                   \
    TGT_AVX2 static void name##_panel_avx2(const void *restrict w, size_t w_stride, int nrows,     \
                                           int64_t b0, int64_t nblk, void *restrict panel) {       \
        leg_prep_panel_avx2(w, w_stride, nrows, b0, nblk, panel, kind);                            \
    }                                                                                              \
    TGT_AVX2 static void name##_kernel_avx2(GEMM_KERNEL_PARAMS) {                                  \
        leg_kernel_avx2(GEMM_KERNEL_ARGS, kind);                                                   \
    }                                                                                              \
    static const cpu_gemm name##_gemm_avx2 = {                                                     \
        .type = qt,                                                                                \
        .block = 32,                                                                               \
        .w_block_bytes = LEG_XBYTES(kind),                                                         \
        .panel_block_bytes = 4 * LEG8_UNIT(kind),                                                  \
        .group = LEG_NT,                                                                           \
        .act_entry_bytes = LEG_ENTRY,                                                              \
        .pack_act = name##_act,                                                                    \
        .prep_panel = name##_panel_avx2,                                                           \
        .kernel = name##_kernel_avx2,                                                              \
    };
LEG_AVX2(q4_0, LEG_Q4_0, QT_Q4_0)
LEG_AVX2(q5_0, LEG_Q5_0, QT_Q5_0)
LEG_AVX2(q8_0, LEG_Q8_0, QT_Q8_0)
LEG_AVX2(q4_1, LEG_Q4_1, QT_Q4_1)
LEG_AVX2(q5_1, LEG_Q5_1, QT_Q5_1)

/* ---------------------------------------------------- k-quants, AVX2
 * Units: Q4_K: 64 steps, (sc_j, sc_j) int16 pairs (8), (m_j, m_j) (8), d,
 * dmin; Q6_K: 64 steps, (sc_j, sc_j) (16), (sc_2p, sc_2p+1) (8), d. */
#define Q4K_UNIT ((64 + 8 + 8 + 2) * 32)
#define Q6K_UNIT ((64 + 16 + 8 + 1) * 32)

TGT_AVX2 INLINE __m256i byte_u8(__m256i v, int j) {
    return _mm256_and_si256(_mm256_srli_epi32(v, 8 * j), _mm256_set1_epi32(0xFF));
}
TGT_AVX2 INLINE __m256i byte_s8(__m256i v, int j) {
    return _mm256_srai_epi32(_mm256_slli_epi32(v, 24 - 8 * j), 24);
}

TGT_AVX2 INLINE void q4_K_unit(const rows8 *R, size_t at, __m256i *out) {
    const __m256i m6 = _mm256_set1_epi8(0x3F), m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x03);
    __m256i u0 = rows8_dword(R, at + 4), u1 = rows8_dword(R, at + 8), u2 = rows8_dword(R, at + 12);
    __m256i sc_lo = _mm256_and_si256(u0, m6), mn_lo = _mm256_and_si256(u1, m6);
    __m256i sc_hi = _mm256_or_si256(_mm256_and_si256(u2, m4),
                                    _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(u0, 6), m2), 4));
    __m256i mn_hi =
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(u2, 4), m4),
                        _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(u1, 6), m2), 4));
    UNROLL(8) for (int c = 0; c < 8; c++) {
        __m256i X[4];
        rows8_t4(R, at + 16 + 16 * (size_t)c, X);
        const int g = c / 2;
        UNROLL(4) for (int kk = 0; kk < 4; kk++) {
            const int st = 4 * (c % 2) + kk;
            _mm256_storeu_si256(out + 8 * (2 * g) + st, lo_nib8(X[kk]));
            _mm256_storeu_si256(out + 8 * (2 * g + 1) + st, hi_nib8(X[kk]));
        }
    }
    UNROLL(8) for (int j = 0; j < 8; j++) {
        __m256i sc = byte_u8(j < 4 ? sc_lo : sc_hi, j % 4), mn = byte_u8(j < 4 ? mn_lo : mn_hi, j % 4);
        _mm256_storeu_si256(out + 64 + j, pair16(sc, sc));
        _mm256_storeu_si256(out + 72 + j, pair16(mn, mn));
    }
    _mm256_storeu_ps((float *)(out + 80), rows8_fp16(R, at));
    _mm256_storeu_ps((float *)(out + 81), rows8_fp16(R, at + 2));
}

TGT_AVX2 INLINE void q6_K_unit(const rows8 *R, size_t at, __m256i *out) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), h2 = _mm256_set1_epi8(0x30);
    UNROLL(2) for (int n = 0; n < 2; n++) {
        UNROLL(2) for (int half = 0; half < 2; half++) {
            __m256i L0[4], L1[4], QH[4];
            rows8_t4(R, at + 64 * (size_t)n + 16 * (size_t)half, L0);
            rows8_t4(R, at + 64 * (size_t)n + 32 + 16 * (size_t)half, L1);
            rows8_t4(R, at + 128 + 32 * (size_t)n + 16 * (size_t)half, QH);
            UNROLL(4) for (int k4 = 0; k4 < 4; k4++) {
                const int l4 = 4 * half + k4, s4 = l4 % 4, jb = 8 * n + l4 / 4;
                __m256i q0 = _mm256_or_si256(_mm256_and_si256(L0[k4], m4),
                                             _mm256_and_si256(_mm256_slli_epi32(QH[k4], 4), h2));
                __m256i q1 = _mm256_or_si256(_mm256_and_si256(L1[k4], m4),
                                             _mm256_and_si256(_mm256_slli_epi32(QH[k4], 2), h2));
                __m256i q2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(L0[k4], 4), m4),
                                             _mm256_and_si256(QH[k4], h2));
                __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(L1[k4], 4), m4),
                                             _mm256_and_si256(_mm256_srli_epi32(QH[k4], 2), h2));
                _mm256_storeu_si256(out + 4 * (jb + 0) + s4, q0);
                _mm256_storeu_si256(out + 4 * (jb + 2) + s4, q1);
                _mm256_storeu_si256(out + 4 * (jb + 4) + s4, q2);
                _mm256_storeu_si256(out + 4 * (jb + 6) + s4, q3);
            }
        }
    }
    UNROLL(4) for (int u = 0; u < 4; u++) {
        __m256i v = rows8_dword(R, at + 192 + 4 * (size_t)u), sc[4];
        UNROLL(4) for (int i = 0; i < 4; i++) {
            sc[i] = byte_s8(v, i);
            _mm256_storeu_si256(out + 64 + 4 * u + i, pair16(sc[i], sc[i]));
        }
        UNROLL(2) for (int p = 0; p < 2; p++) {
            _mm256_storeu_si256(out + 80 + 2 * u + p, pair16(sc[2 * p], sc[2 * p + 1]));
        }
    }
    _mm256_storeu_ps((float *)(out + 88), rows8_fp16(R, at + 208));
}

#define KQ_PREP8(name, blk, unit_fn, UB)                                                           \
    TGT_AVX2 static void name##_panel_avx2(const void *restrict w, size_t w_stride, int nrows,     \
                                           int64_t b0, int64_t nblk, void *restrict panel) {       \
        const int U = (nrows + 7) / 8;                                                             \
        rows8 R[4];                                                                                \
        for (int u = 0; u < U; u++) {                                                              \
            int left = nrows - 8 * u;                                                              \
            rows8_init(&R[u], (const char *)w + (size_t)(8 * u) * w_stride, w_stride,              \
                       left < 8 ? left : 8);                                                       \
        }                                                                                          \
        __m256i *out = panel;                                                                      \
        for (int64_t b = b0; b < b0 + nblk; b++)                                                   \
            for (int u = 0; u < U; u++, out += (UB) / 32) unit_fn(&R[u], (size_t)b * sizeof(blk), out); \
    }
KQ_PREP8(q4_K, block_q4_K, q4_K_unit, Q4K_UNIT)
KQ_PREP8(q6_K, block_q6_K, q6_K_unit, Q6K_UNIT)

/* Q4_K: per sub-block, the 8 steps summed in int16 (<= 32 * 15 * 127),
 * widened against (sc_j, sc_j); msum against (m_j, m_j) and the bsums. */
TGT_AVX2 static void q4_K_kernel_avx2(GEMM_KERNEL_PARAMS) {
    const int U = (nrows + 7) / 8;
    for (int u = 0; u < U; u++) {
        const __m256i mk = mask8(nrows - 8 * u);
        for (int j = 0; j < nt; j++) {
            float *o = out + (size_t)j * os + 8 * u;
            __m256 sum = first ? _mm256_setzero_ps() : _mm256_maskload_ps(o, mk);
            const char *p = (const char *)panel + (size_t)u * Q4K_UNIT;
            const char *e = (const char *)act + (size_t)j * KQ_ENTRY;
            for (int64_t b = 0; b < nblk; b++, p += (size_t)U * Q4K_UNIT, e += KQ_NT * KQ_ENTRY) {
                __m256i isum = _mm256_setzero_si256(), msum = _mm256_setzero_si256();
                UNROLL(8) for (int sb = 0; sb < 8; sb++) {
                    __m256i a16 = _mm256_setzero_si256();
                    UNROLL(8) for (int s = 0; s < 8; s++) {
                        __m256i x = _mm256_loadu_si256((const __m256i *)(p + 32 * (8 * sb + s)));
                        a16 = _mm256_add_epi16(a16, _mm256_maddubs_epi16(x, bcast32y(e + 4 + 32 * sb + 4 * s)));
                    }
                    isum = _mm256_add_epi32(isum, _mm256_madd_epi16(a16, _mm256_loadu_si256((const __m256i *)(p + 32 * (64 + sb)))));
                    msum = _mm256_add_epi32(msum, _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(p + 32 * (72 + sb))),
                                                                    bcast32y(e + 4 + 256 + 4 * sb)));
                }
                const __m256 yd = bcastfy(e);
                const __m256 d = _mm256_mul_ps(_mm256_loadu_ps((const float *)(p + 32 * 80)), yd);
                const __m256 dm = _mm256_mul_ps(_mm256_loadu_ps((const float *)(p + 32 * 81)), yd);
                __m256 t = opaque256x(_mm256_mul_ps(d, _mm256_cvtepi32_ps(isum)));
                __m256 v = opaque256x(_mm256_mul_ps(dm, _mm256_cvtepi32_ps(msum)));
                sum = _mm256_sub_ps(_mm256_add_ps(sum, t), v);
            }
            _mm256_maskstore_ps(o, mk, sum);
        }
    }
}

/* Q6_K: per sub-block, two steps summed in int16 (<= 2 * 2 * 63 * 128 <
 * 2^15), widened against (sc_j, sc_j); the +32 taken back per super-block. */
TGT_AVX2 static void q6_K_kernel_avx2(GEMM_KERNEL_PARAMS) {
    const int U = (nrows + 7) / 8;
    for (int u = 0; u < U; u++) {
        const __m256i mk = mask8(nrows - 8 * u);
        for (int j = 0; j < nt; j++) {
            float *o = out + (size_t)j * os + 8 * u;
            __m256 sum = first ? _mm256_setzero_ps() : _mm256_maskload_ps(o, mk);
            const char *p = (const char *)panel + (size_t)u * Q6K_UNIT;
            const char *e = (const char *)act + (size_t)j * KQ_ENTRY;
            for (int64_t b = 0; b < nblk; b++, p += (size_t)U * Q6K_UNIT, e += KQ_NT * KQ_ENTRY) {
                __m256i isum = _mm256_setzero_si256(), corr = _mm256_setzero_si256();
                UNROLL(16) for (int sb = 0; sb < 16; sb++) {
                    const __m256i sc = _mm256_loadu_si256((const __m256i *)(p + 32 * (64 + sb)));
                    UNROLL(2) for (int h = 0; h < 2; h++) {
                        const int s0 = 4 * sb + 2 * h;
                        __m256i x0 = _mm256_loadu_si256((const __m256i *)(p + 32 * s0));
                        __m256i x1 = _mm256_loadu_si256((const __m256i *)(p + 32 * (s0 + 1)));
                        __m256i a16 = _mm256_add_epi16(
                            _mm256_maddubs_epi16(x0, bcast32y(e + 4 + 16 * sb + 8 * h)),
                            _mm256_maddubs_epi16(x1, bcast32y(e + 4 + 16 * sb + 8 * h + 4)));
                        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(a16, sc));
                    }
                }
                UNROLL(8) for (int q = 0; q < 8; q++) {
                    corr = _mm256_add_epi32(corr, _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(p + 32 * (80 + q))),
                                                                    bcast32y(e + 4 + 256 + 4 * q)));
                }
                isum = _mm256_sub_epi32(isum, _mm256_slli_epi32(corr, 5));
                const __m256 d = _mm256_mul_ps(_mm256_loadu_ps((const float *)(p + 32 * 88)), bcastfy(e));
                sum = _mm256_add_ps(sum, opaque256x(_mm256_mul_ps(d, _mm256_cvtepi32_ps(isum))));
            }
            _mm256_maskstore_ps(o, mk, sum);
        }
    }
}

#define KQ_AVX2(name, qt, UB)                                                                      \
    static const cpu_gemm name##_gemm_avx2 = {                                                     \
        .type = qt,                                                                                \
        .block = QK_K,                                                                             \
        .w_block_bytes = (qt) == QT_Q4_K ? sizeof(block_q4_K) : sizeof(block_q6_K),                \
        .panel_block_bytes = 4 * (UB),                                                             \
        .group = KQ_NT,                                                                            \
        .act_entry_bytes = KQ_ENTRY,                                                               \
        .pack_act = name##_act,                                                                    \
        .prep_panel = name##_panel_avx2,                                                           \
        .kernel = name##_kernel_avx2,                                                              \
    };
KQ_AVX2(q4_K, QT_Q4_K, Q4K_UNIT)
KQ_AVX2(q6_K, QT_Q6_K, Q6K_UNIT)

/* ----------------------------------------------------------- the table */

static const cpu_gemm *gemm_table(int type, cpu_simd level) {
    if (level == CPU_SIMD_AVX512VNNI) {
        switch (type) {
        case QT_Q4_0: return &q4_0_gemm_vnni;
        case QT_Q5_0: return &q5_0_gemm_vnni;
        case QT_Q8_0: return &q8_0_gemm_vnni;
        case QT_Q4_1: return &q4_1_gemm_vnni;
        case QT_Q5_1: return &q5_1_gemm_vnni;
        case QT_Q4_K: return &q4_K_gemm_vnni;
        case QT_Q6_K: return &q6_K_gemm_vnni;
        default: return NULL;
        }
    }
    if (level == CPU_SIMD_AVX2) {
        switch (type) {
        case QT_Q4_0: return &q4_0_gemm_avx2;
        case QT_Q5_0: return &q5_0_gemm_avx2;
        case QT_Q8_0: return &q8_0_gemm_avx2;
        case QT_Q4_1: return &q4_1_gemm_avx2;
        case QT_Q5_1: return &q5_1_gemm_avx2;
        case QT_Q4_K: return &q4_K_gemm_avx2;
        case QT_Q6_K: return &q6_K_gemm_avx2;
        default: return NULL;
        }
    }
    return NULL;
}

/* (No support check here: it costs a cpuid, and the callers pass the
 * active level, which is supported.) */
const cpu_gemm *elmi_cpu_gemm_at(int type, cpu_simd level) { return gemm_table(type, level); }

/* ------------------------------------------- one-token dot kernels */

/* The panel and the activation group of the dot kernels live on the
 * stack: blocks go in ranges whose panel and group fit these sizes. */
/* 12 KB: of the sizes tried, the fastest while streaming weights, as short
 * ranges keep the panel and the 16 rows' lines in L1 (docs/measurements.md,
 * "Dot kernels on the tiles"). */
#ifndef DOT_PANEL_BYTES
#define DOT_PANEL_BYTES (12 * 1024)
#endif
#ifndef DOT_GROUP_BYTES
#define DOT_GROUP_BYTES (12 * 1024)
#endif

static void gemm_dot(const cpu_gemm *g, int vdt_size, DOT_PARAMS) {
    alignas(64) char panel[DOT_PANEL_BYTES];
    alignas(64) char act[DOT_GROUP_BYTES];
    const int64_t nb = n / g->block;
    int64_t kc = (int64_t)(DOT_PANEL_BYTES / g->panel_block_bytes);
    const int64_t kg = (int64_t)(DOT_GROUP_BYTES / (g->act_entry_bytes * (size_t)g->group));
    if (kc > kg) kc = kg;
    _Static_assert(DOT_PANEL_BYTES >= 2 * (Q6K_HALF) && DOT_GROUP_BYTES >= KQ_NT * KQ_ENTRY,
                   "the dot buffers hold a block of every type");
    for (int64_t b0 = 0; b0 < nb; b0 += kc) {
        const int64_t nk = nb - b0 < kc ? nb - b0 : kc;
        const char *yb = (const char *)y + (size_t)b0 * (size_t)vdt_size;
        g->pack_act(yb, by, nt, nk, act);
        for (int r0 = 0; r0 < nr; r0 += CPU_GEMM_ROWS) {
            const int rows = nr - r0 < CPU_GEMM_ROWS ? nr - r0 : CPU_GEMM_ROWS;
            /* Prefetch what comes next: the next block range of these rows,
             * or after the last one the first range of the rows that follow
             * (the callers go through the rows in order; a prefetch past the
             * matrix is harmless). The rows are read in lockstep, 16 short
             * streams that the hardware prefetcher follows less well than
             * the one long stream of a row-by-row kernel; this prefetch
             * gains about 45% at AVX2 (docs/measurements.md). */
            const char *nx = (const char *)x + (size_t)r0 * bx + (size_t)(b0 + nk) * g->w_block_bytes;
            int pr = rows;
            if (b0 + nk >= nb) {
                nx = (const char *)x + (size_t)(r0 + rows) * bx;
                pr = CPU_GEMM_ROWS;
            }
            const size_t pbytes = (size_t)(nb - b0 - nk < kc && b0 + nk < nb ? nb - b0 - nk : kc) * g->w_block_bytes;
            for (int r = 0; r < pr; r++)
                for (size_t o = 0; o < pbytes; o += 64) __builtin_prefetch(nx + (size_t)r * bx + o, 0, 3);
            g->prep_panel((const char *)x + (size_t)r0 * bx, bx, rows, b0, nk, panel);
            g->kernel(panel, nk, act, nt, s + r0, ss, rows, b0 == 0);
        }
    }
}

#define GEMM_DOT(name, vdt_block)                                                                  \
    static void name##_dot_vnni(DOT_PARAMS) {                                                      \
        gemm_dot(&name##_gemm_vnni, sizeof(vdt_block), n, nr, x, bx, y, by, nt, s, ss);            \
    }                                                                                              \
    static void name##_dot_avx2(DOT_PARAMS) {                                                      \
        gemm_dot(&name##_gemm_avx2, sizeof(vdt_block), n, nr, x, bx, y, by, nt, s, ss);            \
    }
GEMM_DOT(q4_0, block_q8_0)
GEMM_DOT(q5_0, block_q8_0)
GEMM_DOT(q8_0, block_q8_0)
GEMM_DOT(q4_1, block_q8_1)
GEMM_DOT(q5_1, block_q8_1)
GEMM_DOT(q4_K, block_q8_K)
GEMM_DOT(q6_K, block_q8_K)

void elmi_cpu_fill_gemm_dots_x86(cpu_simd level, cpu_dot_fn dot[QT_COUNT]) {
    if (level == CPU_SIMD_AVX512VNNI) {
        dot[QT_Q4_0] = q4_0_dot_vnni;
        dot[QT_Q5_0] = q5_0_dot_vnni;
        dot[QT_Q8_0] = q8_0_dot_vnni;
        dot[QT_Q4_1] = q4_1_dot_vnni;
        dot[QT_Q5_1] = q5_1_dot_vnni;
        dot[QT_Q4_K] = q4_K_dot_vnni;
        dot[QT_Q6_K] = q6_K_dot_vnni;
    } else if (level == CPU_SIMD_AVX2) {
        dot[QT_Q4_0] = q4_0_dot_avx2;
        dot[QT_Q5_0] = q5_0_dot_avx2;
        dot[QT_Q8_0] = q8_0_dot_avx2;
        dot[QT_Q4_1] = q4_1_dot_avx2;
        dot[QT_Q5_1] = q5_1_dot_avx2;
        dot[QT_Q4_K] = q4_K_dot_avx2;
        dot[QT_Q6_K] = q6_K_dot_avx2;
    }
}

#else /* not x86 */

const cpu_gemm *elmi_cpu_gemm_at(int type, cpu_simd level) {
    (void)type;
    (void)level;
    return NULL;
}

void elmi_cpu_fill_gemm_dots_x86(cpu_simd level, cpu_dot_fn dot[QT_COUNT]) {
    (void)level;
    (void)dot;
}

#endif
