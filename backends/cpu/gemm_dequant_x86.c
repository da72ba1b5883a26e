/*
 * gemm_dequant_x86.c: AVX2 dequantization of weight rows to F32 for the
 * exact mode (the tiles cblas_sgemm multiplies), bit-identical to the quant
 * module's reference to_float for every input, NaN and infinite scales
 * included: each value is produced by the reference's float operations on
 * the same operands (a product and a sum are never fused; fp16 scales
 * widened by vcvtph2ps, which differs from elmi_fp16_to_f32 only in quieting
 * a signalling NaN, and a NaN scale makes every value of its block that
 * NaN, quieted, either way). F16 weights are converted by vcvtph2ps with the
 * NaN lanes rebuilt as elmi_fp16_to_f32 builds them.
 */
#include "backends/cpu/gemm.h"

#if defined(__x86_64__) || defined(__i386__)

#include "backends/cpu/simd_x86.h"

TGT_AVX2 INLINE __m256 opaque256(__m256 v) {
    __asm__("" : "+x"(v));
    return v;
}

/* 32 bytes (signed or unsigned values) to 4 x 8 floats, times d, stored. */
TGT_AVX2 INLINE void store_scaled(float *dst, __m256i q, bool is_signed, __m256 d) {
    __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    __m128i part[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
    for (int k = 0; k < 4; k++) {
        __m256i v = is_signed ? _mm256_cvtepi8_epi32(part[k]) : _mm256_cvtepu8_epi32(part[k]);
        _mm256_storeu_ps(dst + 8 * k, _mm256_mul_ps(_mm256_cvtepi32_ps(v), d));
    }
}

/* As store_scaled, then + m (q * d + m, the product rounded first). */
TGT_AVX2 INLINE void store_scaled_add(float *dst, __m256i q, __m256 d, __m256 m) {
    __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    __m128i part[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
    for (int k = 0; k < 4; k++) {
        __m256 p = opaque256(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(part[k])), d));
        _mm256_storeu_ps(dst + 8 * k, _mm256_add_ps(p, m));
    }
}

/* The 32 4-bit values (low nibbles first), 0..15. */
TGT_AVX2 INLINE __m256i nibbles32(const uint8_t *qs) {
    __m128i b = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(b, 4), b), _mm256_set1_epi8(0x0F));
}

/* 16 in byte j where bit j of the 32-bit qh is set. */
TGT_AVX2 INLINE __m256i fifth16(const uint8_t qh[4]) {
    uint32_t bits;
    memcpy(&bits, qh, sizeof bits);
    const __m256i spread =
        _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), spread);
    v = _mm256_or_si256(v, _mm256_set1_epi64x(0x7FBFDFEFF7FBFDFE));
    return _mm256_and_si256(_mm256_cmpeq_epi8(v, _mm256_set1_epi8(-1)), _mm256_set1_epi8(16));
}

TGT_AVX2 static void deq_q4_0(const void *restrict src, float *restrict dst, int64_t n) {
    const block_q4_0 *b = src;
    for (int64_t i = 0; i < n / QK4_0; i++, dst += QK4_0) {
        __m256i q = _mm256_sub_epi8(nibbles32(b[i].qs), _mm256_set1_epi8(8));
        store_scaled(dst, q, true, _mm256_set1_ps(fp16(b[i].d)));
    }
}

TGT_AVX2 static void deq_q5_0(const void *restrict src, float *restrict dst, int64_t n) {
    const block_q5_0 *b = src;
    for (int64_t i = 0; i < n / QK5_0; i++, dst += QK5_0) {
        __m256i q = _mm256_or_si256(nibbles32(b[i].qs), fifth16(b[i].qh));
        q = _mm256_sub_epi8(q, _mm256_set1_epi8(16));
        store_scaled(dst, q, true, _mm256_set1_ps(fp16(b[i].d)));
    }
}

TGT_AVX2 static void deq_q8_0(const void *restrict src, float *restrict dst, int64_t n) {
    const block_q8_0 *b = src;
    for (int64_t i = 0; i < n / QK8_0; i++, dst += QK8_0) {
        __m256i q = _mm256_loadu_si256((const __m256i *)b[i].qs);
        store_scaled(dst, q, true, _mm256_set1_ps(fp16(b[i].d)));
    }
}

TGT_AVX2 static void deq_q4_1(const void *restrict src, float *restrict dst, int64_t n) {
    const block_q4_1 *b = src;
    for (int64_t i = 0; i < n / QK4_1; i++, dst += QK4_1)
        store_scaled_add(dst, nibbles32(b[i].qs), _mm256_set1_ps(fp16(b[i].d)),
                         _mm256_set1_ps(fp16(b[i].m)));
}

TGT_AVX2 static void deq_q5_1(const void *restrict src, float *restrict dst, int64_t n) {
    const block_q5_1 *b = src;
    for (int64_t i = 0; i < n / QK5_1; i++, dst += QK5_1) {
        __m256i q = _mm256_or_si256(nibbles32(b[i].qs), fifth16(b[i].qh));
        store_scaled_add(dst, q, _mm256_set1_ps(fp16(b[i].d)), _mm256_set1_ps(fp16(b[i].m)));
    }
}

/* Q4_K, Q5_K: x = (d * sc) * q - dmin * m per sub-block, each product
 * rounded, then the difference. */
TGT_AVX2 INLINE void deq_q45_K(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh,
                               float d, float dmin, float *dst) {
    for (int g = 0; g < 4; g++) {
        __m256i q4 = _mm256_loadu_si256((const __m256i *)(qs + 32 * g));
        for (int h = 0; h < 2; h++) {
            const int j = 2 * g + h;
            uint8_t sc, m;
            get_scale_min_k4(j, scales, &sc, &m);
            const __m256 d1 = _mm256_set1_ps(d * sc), m1 = _mm256_set1_ps(dmin * m);
            __m256i q = _mm256_and_si256(h ? _mm256_srli_epi16(q4, 4) : q4, _mm256_set1_epi8(0x0F));
            if (qh) {
                const __m256i bit = _mm256_set1_epi8((char)(1 << j));
                __m256i hb = _mm256_loadu_si256((const __m256i *)qh);
                __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(hb, bit), bit);
                q = _mm256_or_si256(q, _mm256_and_si256(set, _mm256_set1_epi8(16)));
            }
            __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
            __m128i part[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
            for (int k = 0; k < 4; k++) {
                __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(part[k]));
                __m256 p = opaque256(_mm256_mul_ps(d1, v));
                _mm256_storeu_ps(dst + 32 * j + 8 * k, _mm256_sub_ps(p, m1));
            }
        }
    }
}

TGT_AVX2 static void deq_q4_K(const void *restrict src, float *restrict dst, int64_t n) {
    const block_q4_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++)
        deq_q45_K(b[i].scales, b[i].qs, NULL, fp16(b[i].d), fp16(b[i].dmin), dst + QK_K * i);
}

TGT_AVX2 static void deq_q5_K(const void *restrict src, float *restrict dst, int64_t n) {
    const block_q5_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++)
        deq_q45_K(b[i].scales, b[i].qs, b[i].qh, fp16(b[i].d), fp16(b[i].dmin), dst + QK_K * i);
}

/* Q6_K: x = (d * scale) * (q - 32), value v = 128n + 32k + l. */
TGT_AVX2 static void deq_q6_K(const void *restrict src, float *restrict dst, int64_t n) {
    const block_q6_K *b = src;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x30);
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        const float d = fp16(b[i].d);
        for (int h = 0; h < 2; h++) {
            __m256i l0 = _mm256_loadu_si256((const __m256i *)(b[i].ql + 64 * h));
            __m256i l1 = _mm256_loadu_si256((const __m256i *)(b[i].ql + 64 * h + 32));
            __m256i qh = _mm256_loadu_si256((const __m256i *)(b[i].qh + 32 * h));
            __m256i q[4] = {
                _mm256_or_si256(_mm256_and_si256(l0, m4),
                                _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2)),
                _mm256_or_si256(_mm256_and_si256(l1, m4),
                                _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                _mm256_and_si256(qh, m2)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2))};
            for (int k = 0; k < 4; k++) {
                __m256i v = _mm256_sub_epi8(q[k], _mm256_set1_epi8(32));
                __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
                /* 32 values: sub-blocks 8h + 2k (first 16) and 8h + 2k + 1. */
                for (int s = 0; s < 2; s++) {
                    const __m256 ds = _mm256_set1_ps(d * (float)b[i].scales[8 * h + 2 * k + s]);
                    __m128i part = s ? hi : lo;
                    float *o = dst + 128 * h + 32 * k + 16 * s;
                    _mm256_storeu_ps(o, _mm256_mul_ps(ds, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(part))));
                    _mm256_storeu_ps(o + 8, _mm256_mul_ps(ds, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
                                                                 _mm_srli_si128(part, 8)))));
                }
            }
        }
    }
}

/* F16: vcvtph2ps, with NaN lanes rebuilt as sign | 0x7f800000 | man << 13
 * (the signalling ones stay signalling, as in elmi_fp16_to_f32). */
TGT_AVX2 static void deq_f16(const void *restrict src, float *restrict dst, int64_t n) {
    const elm_fp16 *h = src;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i v = _mm_loadu_si128((const __m128i *)(h + i));
        __m256 f = _mm256_cvtph_ps(v);
        __m256i w = _mm256_cvtepu16_epi32(v);
        __m256i mag = _mm256_and_si256(w, _mm256_set1_epi32(0x7FFF));
        __m256i nan = _mm256_cmpgt_epi32(mag, _mm256_set1_epi32(0x7C00));
        if (!_mm256_testz_si256(nan, nan)) {
            __m256i bits = _mm256_or_si256(
                _mm256_slli_epi32(_mm256_and_si256(w, _mm256_set1_epi32(0x8000)), 16),
                _mm256_or_si256(_mm256_set1_epi32(0x7F800000),
                                _mm256_slli_epi32(_mm256_and_si256(w, _mm256_set1_epi32(0x3FF)), 13)));
            f = _mm256_blendv_ps(f, _mm256_castsi256_ps(bits), _mm256_castsi256_ps(nan));
        }
        _mm256_storeu_ps(dst + i, f);
    }
    for (; i < n; i++) dst[i] = elmi_fp16_to_f32(h[i]);
}

TGT_AVX2 static void deq_bf16(const void *restrict src, float *restrict dst, int64_t n) {
    const elm_bf16 *h = src;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(h + i)));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_slli_epi32(w, 16));
    }
    for (; i < n; i++) dst[i] = elmi_bf16_to_f32(h[i]);
}

qt_to_float_fn elmi_cpu_dequant_get(int type) {
    if (elmi_cpu_simd_active() == CPU_SIMD_AVX2 || elmi_cpu_simd_active() == CPU_SIMD_AVX512VNNI) {
        switch (type) {
        case QT_F16: return deq_f16;
        case QT_BF16: return deq_bf16;
        case QT_Q4_0: return deq_q4_0;
        case QT_Q4_1: return deq_q4_1;
        case QT_Q5_0: return deq_q5_0;
        case QT_Q5_1: return deq_q5_1;
        case QT_Q8_0: return deq_q8_0;
        case QT_Q4_K: return deq_q4_K;
        case QT_Q5_K: return deq_q5_K;
        case QT_Q6_K: return deq_q6_K;
        default: break;
        }
    }
    const qtype_traits *tr = elmi_qtype_get(type);
    return tr ? tr->to_float : NULL;
}

#else /* not x86 */

qt_to_float_fn elmi_cpu_dequant_get(int type) {
    const qtype_traits *tr = elmi_qtype_get(type);
    return tr ? tr->to_float : NULL;
}

#endif
