/*
 * quantize_x86.c: AVX2 activation quantizers, bit-identical to the quant
 * module's reference from_float (rounding, clamping, NaN and tie handling
 * included): every float operation is the one the reference performs, on
 * the same operands, only eight at a time.
 */
#include "backends/cpu/vec_dot.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <string.h>

#define TGT_AVX2 __attribute__((target("avx2,fma,f16c")))
#define INLINE static inline __attribute__((always_inline))

/* Keeps the compiler from fusing a product into a later add (FMA
 * contraction), which would round differently from the reference. */
TGT_AVX2 INLINE __m256 opaque(__m256 v) {
    __asm__("" : "+x"(v));
    return v;
}

TGT_AVX2 INLINE __m256 abs_ps(__m256 v) {
    return _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF)));
}

/* fmaxf(acc, |v|) per lane: a NaN lane of v leaves acc (maxps returns its
 * second operand when either is NaN). */
TGT_AVX2 INLINE __m256 max_abs(__m256 v, __m256 acc) { return _mm256_max_ps(abs_ps(v), acc); }

TGT_AVX2 INLINE float hmax_ps(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* roundf: to nearest, halves away from zero. v - trunc(v) is exact. */
TGT_AVX2 INLINE __m256 roundf_ps(__m256 v) {
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 half = _mm256_cmp_ps(abs_ps(_mm256_sub_ps(v, t)), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    __m256 sign = _mm256_andnot_ps(_mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF)), v);
    return _mm256_add_ps(t, _mm256_and_ps(half, _mm256_or_ps(_mm256_set1_ps(1.0f), sign)));
}

/* 32 int32 (four vectors, in order) to 32 int8; values fit. */
TGT_AVX2 INLINE __m256i pack_i8(const __m256i i[4]) {
    __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(i[0], i[1]), _mm256_packs_epi32(i[2], i[3]));
    return _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

TGT_AVX2 INLINE int hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/* ---------------------------------------------------------- Q8_0, Q8_1 */

/* One 32-value block: q = roundf(x * id), out of [-127, 127] (or NaN) -> 0.
 * Returns d = amax / 127 and stores sum(q). */
TGT_AVX2 INLINE float q8_block(const float *x, int8_t *qs, int *sum) {
    __m256 v[4], amax = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++) {
        v[k] = _mm256_loadu_ps(x + 8 * k);
        amax = max_abs(v[k], amax);
    }
    const float d = hmax_ps(amax) / 127;
    const float id = d ? 1.0f / d : 0.0f;
    __m256i q[4], total = _mm256_setzero_si256();
    for (int k = 0; k < 4; k++) {
        __m256 r = roundf_ps(opaque(_mm256_mul_ps(v[k], _mm256_set1_ps(id))));
        __m256 ok = _mm256_and_ps(_mm256_cmp_ps(r, _mm256_set1_ps(-127.0f), _CMP_GE_OQ),
                                  _mm256_cmp_ps(r, _mm256_set1_ps(127.0f), _CMP_LE_OQ));
        q[k] = _mm256_cvttps_epi32(_mm256_and_ps(r, ok));
        total = _mm256_add_epi32(total, q[k]);
    }
    _mm256_storeu_si256((__m256i *)qs, pack_i8(q));
    *sum = hsum_i32(total);
    return d;
}

TGT_AVX2 static void quantize_q8_0_avx2(const float *restrict x, void *restrict vy, int64_t n) {
    block_q8_0 *y = vy;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        int sum;
        y[i].d = elmi_f32_to_fp16(q8_block(x + QK8_0 * i, y[i].qs, &sum));
    }
}

TGT_AVX2 static void quantize_q8_1_avx2(const float *restrict x, void *restrict vy, int64_t n) {
    block_q8_1 *y = vy;
    for (int64_t i = 0; i < n / QK8_1; i++) {
        int sum;
        const float d = q8_block(x + QK8_1 * i, y[i].qs, &sum);
        y[i].d = elmi_f32_to_fp16(d);
        y[i].s = elmi_f32_to_fp16(sum * d);
    }
}

/* ---------------------------------------------------------------- Q8_K */

/* The first value of largest magnitude, sign kept (0 when all are 0 or NaN). */
TGT_AVX2 INLINE float first_absmax(const float *x) {
    __m256 amax = _mm256_setzero_ps();
    for (int k = 0; k < QK_K / 8; k++) amax = max_abs(_mm256_loadu_ps(x + 8 * k), amax);
    const __m256 m = _mm256_set1_ps(hmax_ps(amax));
    for (int k = 0; k < QK_K / 8; k++) {
        int hit =
            _mm256_movemask_ps(_mm256_cmp_ps(abs_ps(_mm256_loadu_ps(x + 8 * k)), m, _CMP_EQ_OQ));
        if (hit) return x[8 * k + __builtin_ctz((unsigned)hit)];
    }
    return 0.0f;
}

/* q = nearest (ties to even) of iscale * x, clamped to [-128, 127], NaN -> -128. */
TGT_AVX2 INLINE __m256i q8_K_values(const float *x, float iscale) {
    __m256 p = opaque(_mm256_mul_ps(_mm256_set1_ps(iscale), _mm256_loadu_ps(x)));
    __m256 r = _mm256_round_ps(p, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r = _mm256_blendv_ps(r, _mm256_set1_ps(127.0f),
                         _mm256_cmp_ps(p, _mm256_set1_ps(127.0f), _CMP_GE_OQ));
    r = _mm256_blendv_ps(r, _mm256_set1_ps(-128.0f),
                         _mm256_cmp_ps(p, _mm256_set1_ps(-128.0f), _CMP_NGE_UQ));
    return _mm256_cvttps_epi32(r);
}

TGT_AVX2 static void quantize_q8_K_avx2(const float *restrict x, void *restrict vy, int64_t n) {
    block_q8_K *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        const float max = first_absmax(x);
        memset(&y[i], 0, sizeof y[i]);
        if (max == 0.0f) continue;
        const float iscale = -127.f / max;
        for (int g = 0; g < QK_K / 32; g++) {
            __m256i q[4];
            for (int k = 0; k < 4; k++) q[k] = q8_K_values(x + 32 * g + 8 * k, iscale);
            y[i].bsums[2 * g] = (int16_t)hsum_i32(_mm256_add_epi32(q[0], q[1]));
            y[i].bsums[2 * g + 1] = (int16_t)hsum_i32(_mm256_add_epi32(q[2], q[3]));
            _mm256_storeu_si256((__m256i *)(y[i].qs + 32 * g), pack_i8(q));
        }
        y[i].d = 1 / iscale;
    }
}

/* ------------------------------------------- AVX-512: Q8_0, Q8_1, Q8_K
 *
 * The same operations as the AVX2 versions above, sixteen lanes at a time
 * (measured: the AVX2 Q8_0 quantizer took 11% of a prompt's CPU time). */

#define TGT_512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl")))

TGT_512 INLINE __m512 opaque512(__m512 v) {
    __asm__("" : "+v"(v));
    return v;
}

TGT_512 INLINE __m512 abs512(__m512 v) {
    return _mm512_castsi512_ps(
        _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7FFFFFFF)));
}

/* roundf: to nearest, halves away from zero (as roundf_ps). */
TGT_512 INLINE __m512 roundf512(__m512 v) {
    __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __mmask16 half = _mm512_cmp_ps_mask(abs512(_mm512_sub_ps(v, t)), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    __m512i sign = _mm512_andnot_si512(_mm512_set1_epi32(0x7FFFFFFF), _mm512_castps_si512(v));
    __m512 one = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(_mm512_set1_ps(1.0f)), sign));
    return _mm512_mask_add_ps(t, half, t, one);
}

/* The float nearest to f as fp16, as elmi_f32_to_fp16 (vcvtps2ph). */
TGT_512 INLINE elm_fp16 to_fp16(float f) {
    return (elm_fp16)_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(f), _MM_FROUND_TO_NEAREST_INT), 0);
}

/* One 32-value block, as q8_block. */
TGT_512 INLINE float q8_block512(const float *x, int8_t *qs, int *sum) {
    __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    __m512 amax = _mm512_max_ps(abs512(v1), _mm512_max_ps(abs512(v0), _mm512_setzero_ps()));
    __m256 a8 = _mm256_max_ps(_mm512_castps512_ps256(amax),
                              _mm256_castsi256_ps(_mm512_extracti64x4_epi64(_mm512_castps_si512(amax), 1)));
    const float d = hmax_ps(a8) / 127;
    const float id = d ? 1.0f / d : 0.0f;
    __m512i q[2], total = _mm512_setzero_si512();
    const __m512 v[2] = {v0, v1};
    for (int k = 0; k < 2; k++) {
        __m512 r = roundf512(opaque512(_mm512_mul_ps(v[k], _mm512_set1_ps(id))));
        __mmask16 ok = _mm512_cmp_ps_mask(r, _mm512_set1_ps(-127.0f), _CMP_GE_OQ) &
                       _mm512_cmp_ps_mask(r, _mm512_set1_ps(127.0f), _CMP_LE_OQ);
        q[k] = _mm512_maskz_cvttps_epi32(ok, r);
        total = _mm512_add_epi32(total, q[k]);
    }
    _mm_storeu_si128((__m128i *)qs, _mm512_cvtepi32_epi8(q[0]));
    _mm_storeu_si128((__m128i *)(qs + 16), _mm512_cvtepi32_epi8(q[1]));
    *sum = _mm512_reduce_add_epi32(total);
    return d;
}

TGT_512 static void quantize_q8_0_avx512(const float *restrict x, void *restrict vy, int64_t n) {
    block_q8_0 *y = vy;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        int sum;
        y[i].d = to_fp16(q8_block512(x + QK8_0 * i, y[i].qs, &sum));
    }
}

TGT_512 static void quantize_q8_1_avx512(const float *restrict x, void *restrict vy, int64_t n) {
    block_q8_1 *y = vy;
    for (int64_t i = 0; i < n / QK8_1; i++) {
        int sum;
        const float d = q8_block512(x + QK8_1 * i, y[i].qs, &sum);
        y[i].d = to_fp16(d);
        y[i].s = to_fp16(sum * d);
    }
}

/* As q8_K_values, sixteen at a time. */
TGT_512 INLINE __m512i q8_K_values512(const float *x, float iscale) {
    __m512 p = opaque512(_mm512_mul_ps(_mm512_set1_ps(iscale), _mm512_loadu_ps(x)));
    __m512 r = _mm512_roundscale_ps(p, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r = _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(p, _mm512_set1_ps(127.0f), _CMP_GE_OQ),
                           _mm512_set1_ps(127.0f));
    r = _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(p, _mm512_set1_ps(-128.0f), _CMP_NGE_UQ),
                           _mm512_set1_ps(-128.0f));
    return _mm512_cvttps_epi32(r);
}

TGT_512 static void quantize_q8_K_avx512(const float *restrict x, void *restrict vy, int64_t n) {
    block_q8_K *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        const float max = first_absmax(x);
        memset(&y[i], 0, sizeof y[i]);
        if (max == 0.0f) continue;
        const float iscale = -127.f / max;
        for (int g = 0; g < QK_K / 16; g++) {
            __m512i q = q8_K_values512(x + 16 * g, iscale);
            y[i].bsums[g] = (int16_t)_mm512_reduce_add_epi32(q);
            _mm_storeu_si128((__m128i *)(y[i].qs + 16 * g), _mm512_cvtepi32_epi8(q));
        }
        y[i].d = 1 / iscale;
    }
}

/* ---------------------------------------------------------- F16, BF16 */

/* vcvtps2ph rounds to nearest even and quiets NaNs keeping the top payload
 * bits, as elmi_f32_to_fp16 does. */
TGT_AVX2 static void quantize_f16_avx2(const float *restrict x, void *restrict vy, int64_t n) {
    elm_fp16 *y = vy;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) y[i] = elmi_f32_to_fp16(x[i]);
}

TGT_AVX2 static void quantize_bf16_avx2(const float *restrict x, void *restrict vy, int64_t n) {
    elm_bf16 *y = vy;
    const __m256i abs = _mm256_set1_epi32(0x7FFFFFFF), inf = _mm256_set1_epi32(0x7F800000);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i h[2];
        for (int k = 0; k < 2; k++) {
            __m256i u = _mm256_castps_si256(_mm256_loadu_ps(x + i + 8 * k));
            __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
            __m256i rounded = _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7FFF)), odd);
            __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs), inf);
            __m256i quiet = _mm256_or_si256(u, _mm256_set1_epi32(0x400000));
            h[k] = _mm256_srli_epi32(_mm256_blendv_epi8(rounded, quiet, nan), 16);
        }
        __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(h[0], h[1]), 0xD8);
        _mm256_storeu_si256((__m256i *)(y + i), p);
    }
    for (; i < n; i++) y[i] = elmi_f32_to_bf16(x[i]);
}

void elmi_cpu_fill_quantize_x86(cpu_simd level, cpu_quantize_fn quant[QT_COUNT]) {
    if (level == CPU_SIMD_AVX512VNNI) {
        quant[QT_Q8_0] = quantize_q8_0_avx512;
        quant[QT_Q8_1] = quantize_q8_1_avx512;
        quant[QT_Q8_K] = quantize_q8_K_avx512;
        return;
    }
    if (level != CPU_SIMD_AVX2) return;
    quant[QT_Q8_0] = quantize_q8_0_avx2;
    quant[QT_Q8_1] = quantize_q8_1_avx2;
    quant[QT_Q8_K] = quantize_q8_K_avx2;
    quant[QT_F16] = quantize_f16_avx2;
    quant[QT_BF16] = quantize_bf16_avx2;
}

#else

void elmi_cpu_fill_quantize_x86(cpu_simd level, cpu_quantize_fn quant[QT_COUNT]) {
    (void)level;
    (void)quant;
}

#endif
