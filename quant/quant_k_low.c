/*
 * quant_k_low.c: Q2_K and Q3_K, 16 sub-blocks of 16 values per super-block.
 *
 * Dot products with Q8_K (ground truth for SIMD kernels), per super-block:
 *   Q2_K: isum = sum_j (scales[j] & 0xF) * sum_{16 values of j} q * y.qs
 *         msum = sum_j (scales[j] >> 4) * y.bsums[j]
 *         sumf += (d * y.d) * (float)isum; sumf -= (dmin * y.d) * (float)msum;
 *   Q3_K: isum = sum_j (sc[j] - 32) * sum_{16 values of j} q * y.qs
 *         sumf += (d * y.d) * (float)isum;
 * with sumf a float starting at 0 and super-blocks in order.
 */
#include <math.h>
#include <string.h>

#include "quant/quant.h"
#include "quant/quant_impl.h"

#define F16(h) elmi_fp16_to_f32(h)

/* Both formats keep the low 2 bits of value v in the same place. */
static int low2(const uint8_t *qs, int v) {
    return qs[32 * (v / 128) + v % 32] >> (2 * ((v % 128) / 32)) & 3;
}

static void low2_store(uint8_t *qs, int v, int q) {
    qs[32 * (v / 128) + v % 32] |= (uint8_t)((q & 3) << (2 * ((v % 128) / 32)));
}

/* ------------------------------------------------------------------ Q2_K */

void elmi_qref_q2_K_to_float(const void *restrict src, float *restrict dst, int64_t n) {
    const block_q2_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        const float d = F16(b[i].d), dmin = F16(b[i].dmin);
        for (int j = 0; j < 16; j++) {
            const float dl = d * (b[i].scales[j] & 0xF), ml = dmin * (b[i].scales[j] >> 4);
            for (int l = 0; l < 16; l++) dst[16 * j + l] = dl * low2(b[i].qs, 16 * j + l) - ml;
        }
    }
}

static float quantize_u4(const float *v, elm_fp16 *h, uint8_t out[16]) {
    float vmax = 0.0f;
    for (int j = 0; j < 16; j++) vmax = fmaxf(vmax, v[j]);
    *h = elmi_f32_to_fp16(vmax / 15);
    const float d = F16(*h);
    for (int j = 0; j < 16; j++)
        out[j] = (uint8_t)(d > 0 ? qref_clamp_nearest(v[j] / d, 0, 15) : 0);
    return d;
}

static void q2_quantize(const float *x, block_q2_K *b) {
    float s[16], m[16];
    uint8_t sc[16], mn[16];
    for (int j = 0; j < 16; j++) s[j] = elmi_qfit_asym(x + 16 * j, 16, 3, &m[j]);
    memset(b, 0, sizeof *b);
    const float d = quantize_u4(s, &b->d, sc);
    const float dmin = quantize_u4(m, &b->dmin, mn);
    for (int j = 0; j < 16; j++) {
        b->scales[j] = (uint8_t)(sc[j] | mn[j] << 4);
        const float dl = d * sc[j], ml = dmin * mn[j];
        for (int l = 0; l < 16; l++) {
            int q = dl > 0 ? qref_clamp_nearest((x[16 * j + l] + ml) / dl, 0, 3) : 0;
            low2_store(b->qs, 16 * j + l, q);
        }
    }
}

void elmi_qref_q2_K_from_float(const float *restrict src, void *restrict dst, int64_t n) {
    block_q2_K *b = dst;
    for (int64_t i = 0; i < n / QK_K; i++) q2_quantize(src + QK_K * i, &b[i]);
}

void elmi_qref_q2_K_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                       const void *restrict vy) {
    const block_q2_K *x = vx;
    const block_q8_K *y = vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32_t isum = 0, msum = 0;
        for (int j = 0; j < 16; j++) {
            int32_t sj = 0;
            for (int l = 0; l < 16; l++) sj += low2(x[i].qs, 16 * j + l) * y[i].qs[16 * j + l];
            isum += (x[i].scales[j] & 0xF) * sj;
            msum += (x[i].scales[j] >> 4) * y[i].bsums[j];
        }
        sumf += (F16(x[i].d) * y[i].d) * (float)isum;
        sumf -= (F16(x[i].dmin) * y[i].d) * (float)msum;
    }
    *s = sumf;
}

/* ------------------------------------------------------------------ Q3_K */

/* The 6-bit scale j, still offset by 32. */
static int q3_scale(const uint8_t *scales, int j) {
    const int lo = scales[j % 8] >> (4 * (j / 8)) & 0xF;
    const int hi = scales[8 + j % 4] >> (2 * (j / 4)) & 3;
    return lo | hi << 4;
}

static void q3_scale_store(uint8_t *scales, int j, int u) {
    scales[j % 8] |= (uint8_t)((u & 0xF) << (4 * (j / 8)));
    scales[8 + j % 4] |= (uint8_t)((u >> 4) << (2 * (j / 4)));
}

/* Value v in -4..3. */
static int q3_value(const block_q3_K *b, int v) {
    const int high = b->hmask[v % 32] >> (v / 32) & 1;
    return low2(b->qs, v) - (high ? 0 : 4);
}

void elmi_qref_q3_K_to_float(const void *restrict src, float *restrict dst, int64_t n) {
    const block_q3_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        const float d = F16(b[i].d);
        for (int j = 0; j < 16; j++) {
            const float dl = d * (q3_scale(b[i].scales, j) - 32);
            for (int l = 0; l < 16; l++) dst[16 * j + l] = dl * q3_value(&b[i], 16 * j + l);
        }
    }
}

static void q3_quantize(const float *x, block_q3_K *b) {
    float s[16], smax = 0.0f;
    for (int j = 0; j < 16; j++) {
        s[j] = elmi_qfit_sym(x + 16 * j, 16, 4);
        if (fabsf(s[j]) > fabsf(smax)) smax = s[j];
    }
    memset(b, 0, sizeof *b);
    b->d = elmi_f32_to_fp16(smax / -32);
    const float d = F16(b->d);
    for (int j = 0; j < 16; j++) {
        const int sc = d != 0 ? qref_clamp_nearest(s[j] / d, -32, 31) : 0;
        q3_scale_store(b->scales, j, sc + 32);
        const float dl = d * sc;
        for (int l = 0; l < 16; l++) {
            const int v = 16 * j + l;
            const int u = (dl != 0 ? qref_clamp_nearest(x[v] / dl, -4, 3) : 0) + 4;
            low2_store(b->qs, v, u);
            b->hmask[v % 32] |= (uint8_t)((u >> 2) << (v / 32));
        }
    }
}

void elmi_qref_q3_K_from_float(const float *restrict src, void *restrict dst, int64_t n) {
    block_q3_K *b = dst;
    for (int64_t i = 0; i < n / QK_K; i++) q3_quantize(src + QK_K * i, &b[i]);
}

void elmi_qref_q3_K_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                       const void *restrict vy) {
    const block_q3_K *x = vx;
    const block_q8_K *y = vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32_t isum = 0;
        for (int j = 0; j < 16; j++) {
            int32_t sj = 0;
            for (int l = 0; l < 16; l++) sj += q3_value(&x[i], 16 * j + l) * y[i].qs[16 * j + l];
            isum += (q3_scale(x[i].scales, j) - 32) * sj;
        }
        sumf += (F16(x[i].d) * y[i].d) * (float)isum;
    }
    *s = sumf;
}
