/*
 * quant_k.c: the 256-value super-block formats Q4_K, Q5_K, Q6_K and the
 * activation format Q8_K.
 *
 * Dot products with Q8_K, the ground truth for SIMD kernels. Per
 * super-block, exact int32 sums (they cannot overflow: |isum| < 2^27):
 *   Q4_K, Q5_K: isum = sum_j sc[j] * sum_{32 values of j} q * y.qs
 *               msum = sum_j m[j] * (y.bsums[2j] + y.bsums[2j+1])
 *     then      sumf += (d * y.d) * (float)isum;
 *               sumf -= (dmin * y.d) * (float)msum;
 *   Q6_K:       isum = sum_j scales[j] * sum_{16 values of j} (q - 32) * y.qs
 *     then      sumf += (d * y.d) * (float)isum;
 * with sumf a float starting at 0, super-blocks in order, d and dmin the
 * fp16 fields widened.
 */
#include <math.h>
#include <string.h>

#include "quant/quant.h"
#include "quant/quant_impl.h"

#define F16(h) elmi_fp16_to_f32(h)

/* ----------------------------------------------------------- Q4_K / Q5_K */

/* Value v of a Q4_K/Q5_K super-block: the 4 low bits, plus the fifth. */
static int q45_value(const uint8_t *qs, const uint8_t *qh, int v) {
    int byte = qs[32 * (v / 64) + v % 32];
    int q = (v / 32) & 1 ? byte >> 4 : byte & 0xF;
    if (qh) q |= ((qh[v % 32] >> (v / 32)) & 1) << 4;
    return q;
}

static void q45_store(uint8_t *qs, uint8_t *qh, int v, int q) {
    uint8_t *byte = &qs[32 * (v / 64) + v % 32];
    *byte |= (uint8_t)((q & 0xF) << ((v / 32) & 1 ? 4 : 0));
    if (qh) qh[v % 32] |= (uint8_t)(((q >> 4) & 1) << (v / 32));
}

static void q45_dequant(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh, float d,
                        float dmin, float *dst) {
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        get_scale_min_k4(j, scales, &sc, &m);
        const float d1 = d * sc, m1 = dmin * m;
        for (int l = 0; l < 32; l++) dst[32 * j + l] = d1 * q45_value(qs, qh, 32 * j + l) - m1;
    }
}

static void pack_scales6(const uint8_t sc[8], const uint8_t mn[8], uint8_t out[12]) {
    for (int j = 0; j < 4; j++) {
        out[j] = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);
        out[j + 4] = (uint8_t)(mn[j] | (mn[j + 4] >> 4) << 6);
        out[j + 8] = (uint8_t)((sc[j + 4] & 0xF) | (mn[j + 4] & 0xF) << 4);
    }
}

/* Scales (or mins) v[0..n) -> unsigned integers of `levels` steps with an
 * fp16 super-scale; returns the widened super-scale. */
static float quantize_uscales(const float *v, int n, int levels, elm_fp16 *h, uint8_t *out) {
    float vmax = 0.0f;
    for (int j = 0; j < n; j++) vmax = fmaxf(vmax, v[j]);
    *h = elmi_f32_to_fp16(vmax / levels);
    const float d = F16(*h);
    for (int j = 0; j < n; j++)
        out[j] = (uint8_t)(d > 0 ? qref_clamp_nearest(v[j] / d, 0, levels) : 0);
    return d;
}

/* Shared Q4_K / Q5_K quantizer: nmax is 15 or 31; qh is NULL for Q4_K. */
static void q45_quantize(const float *x, int nmax, elm_fp16 *d16, elm_fp16 *dmin16,
                         uint8_t scales[12], uint8_t *qs, uint8_t *qh) {
    float s[8], m[8];
    uint8_t sc[8], mn[8];
    for (int j = 0; j < 8; j++) s[j] = elmi_qfit_asym(x + 32 * j, 32, nmax, &m[j]);
    const float d = quantize_uscales(s, 8, 63, d16, sc);
    const float dmin = quantize_uscales(m, 8, 63, dmin16, mn);
    pack_scales6(sc, mn, scales);
    memset(qs, 0, QK_K / 2);
    if (qh) memset(qh, 0, QK_K / 8);
    for (int j = 0; j < 8; j++) {
        const float ds = d * sc[j], dm = dmin * mn[j];
        for (int l = 0; l < 32; l++) {
            int q = ds > 0 ? qref_clamp_nearest((x[32 * j + l] + dm) / ds, 0, nmax) : 0;
            q45_store(qs, qh, 32 * j + l, q);
        }
    }
}

static void q45_dot_sums(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh,
                         const block_q8_K *y, int32_t *isum, int32_t *msum) {
    *isum = 0;
    *msum = 0;
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        get_scale_min_k4(j, scales, &sc, &m);
        int32_t s = 0;
        for (int l = 0; l < 32; l++) s += q45_value(qs, qh, 32 * j + l) * y->qs[32 * j + l];
        *isum += sc * s;
        *msum += m * (y->bsums[2 * j] + y->bsums[2 * j + 1]);
    }
}

void elmi_qref_q4_K_to_float(const void *restrict src, float *restrict dst, int64_t n) {
    const block_q4_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++)
        q45_dequant(b[i].scales, b[i].qs, NULL, F16(b[i].d), F16(b[i].dmin), dst + QK_K * i);
}

void elmi_qref_q4_K_from_float(const float *restrict src, void *restrict dst, int64_t n) {
    block_q4_K *b = dst;
    for (int64_t i = 0; i < n / QK_K; i++)
        q45_quantize(src + QK_K * i, 15, &b[i].d, &b[i].dmin, b[i].scales, b[i].qs, NULL);
}

void elmi_qref_q4_K_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                       const void *restrict vy) {
    const block_q4_K *x = vx;
    const block_q8_K *y = vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32_t isum, msum;
        q45_dot_sums(x[i].scales, x[i].qs, NULL, &y[i], &isum, &msum);
        sumf += (F16(x[i].d) * y[i].d) * (float)isum;
        sumf -= (F16(x[i].dmin) * y[i].d) * (float)msum;
    }
    *s = sumf;
}

void elmi_qref_q5_K_to_float(const void *restrict src, float *restrict dst, int64_t n) {
    const block_q5_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++)
        q45_dequant(b[i].scales, b[i].qs, b[i].qh, F16(b[i].d), F16(b[i].dmin), dst + QK_K * i);
}

void elmi_qref_q5_K_from_float(const float *restrict src, void *restrict dst, int64_t n) {
    block_q5_K *b = dst;
    for (int64_t i = 0; i < n / QK_K; i++)
        q45_quantize(src + QK_K * i, 31, &b[i].d, &b[i].dmin, b[i].scales, b[i].qs, b[i].qh);
}

void elmi_qref_q5_K_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                       const void *restrict vy) {
    const block_q5_K *x = vx;
    const block_q8_K *y = vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32_t isum, msum;
        q45_dot_sums(x[i].scales, x[i].qs, x[i].qh, &y[i], &isum, &msum);
        sumf += (F16(x[i].d) * y[i].d) * (float)isum;
        sumf -= (F16(x[i].dmin) * y[i].d) * (float)msum;
    }
    *s = sumf;
}

/* ------------------------------------------------------------------ Q6_K */

/* Value v of a Q6_K super-block, already minus 32. */
static int q6_value(const block_q6_K *b, int v) {
    const int n = v / 128, k = (v % 128) / 32, l = v % 32;
    const int lo = b->ql[64 * n + 32 * (k & 1) + l] >> (k >= 2 ? 4 : 0) & 0xF;
    const int hi = b->qh[32 * n + l] >> (2 * k) & 3;
    return (lo | hi << 4) - 32;
}

static void q6_store(block_q6_K *b, int v, int q) {
    const int n = v / 128, k = (v % 128) / 32, l = v % 32;
    b->ql[64 * n + 32 * (k & 1) + l] |= (uint8_t)((q & 0xF) << (k >= 2 ? 4 : 0));
    b->qh[32 * n + l] |= (uint8_t)((q >> 4) << (2 * k));
}

void elmi_qref_q6_K_to_float(const void *restrict src, float *restrict dst, int64_t n) {
    const block_q6_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        const float d = F16(b[i].d);
        for (int v = 0; v < QK_K; v++) dst[v] = d * b[i].scales[v / 16] * q6_value(&b[i], v);
    }
}

static void q6_quantize(const float *x, block_q6_K *b) {
    float s[16], smax = 0.0f;
    for (int j = 0; j < 16; j++) {
        s[j] = elmi_qfit_sym(x + 16 * j, 16, 32);
        if (fabsf(s[j]) > fabsf(smax)) smax = s[j];
    }
    memset(b, 0, sizeof *b);
    /* The largest scale takes the extra level -128. */
    b->d = elmi_f32_to_fp16(smax / -128);
    const float d = F16(b->d);
    for (int j = 0; j < 16; j++) {
        b->scales[j] = (int8_t)(d != 0 ? qref_clamp_nearest(s[j] / d, -128, 127) : 0);
        const float ds = d * b->scales[j];
        for (int l = 0; l < 16; l++) {
            int q = ds != 0 ? qref_clamp_nearest(x[16 * j + l] / ds, -32, 31) : 0;
            q6_store(b, 16 * j + l, q + 32);
        }
    }
}

void elmi_qref_q6_K_from_float(const float *restrict src, void *restrict dst, int64_t n) {
    block_q6_K *b = dst;
    for (int64_t i = 0; i < n / QK_K; i++) q6_quantize(src + QK_K * i, &b[i]);
}

void elmi_qref_q6_K_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                       const void *restrict vy) {
    const block_q6_K *x = vx;
    const block_q8_K *y = vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32_t isum = 0;
        for (int j = 0; j < 16; j++) {
            int32_t sj = 0;
            for (int l = 0; l < 16; l++) sj += q6_value(&x[i], 16 * j + l) * y[i].qs[16 * j + l];
            isum += x[i].scales[j] * sj;
        }
        sumf += (F16(x[i].d) * y[i].d) * (float)isum;
    }
    *s = sumf;
}

/* ------------------------------------------------------------------ Q8_K */

void elmi_qref_q8_K_to_float(const void *restrict src, float *restrict dst, int64_t n) {
    const block_q8_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K)
        for (int j = 0; j < QK_K; j++) dst[j] = b[i].d * b[i].qs[j];
}

/* Reference semantics other engines use for k-quant activations: the
 * signed extreme maps to -127 (so d may be negative), ties round to even. */
static void q8_K_quantize(const float *x, block_q8_K *b) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < QK_K; j++) {
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    memset(b, 0, sizeof *b);
    if (amax == 0.0f) return;
    const float iscale = -127.f / max;
    for (int j = 0; j < QK_K; j++) b->qs[j] = (int8_t)qref_clamp_nearest(iscale * x[j], -128, 127);
    for (int j = 0; j < QK_K / 16; j++) {
        int sum = 0;
        for (int l = 0; l < 16; l++) sum += b->qs[16 * j + l];
        b->bsums[j] = (int16_t)sum;
    }
    b->d = 1 / iscale;
}

void elmi_qref_q8_K_from_float(const float *restrict src, void *restrict dst, int64_t n) {
    block_q8_K *b = dst;
    for (int64_t i = 0; i < n / QK_K; i++) q8_K_quantize(src + QK_K * i, &b[i]);
}
