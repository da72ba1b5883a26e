/*
 * quant_legacy.c: the 32-value block formats Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and
 * Q8_1. The quantizers reproduce the widely used reference semantics exactly
 * (files and activations must agree bit for bit with other tools).
 *
 * Dot products, the ground truth for SIMD kernels: per block an exact int32
 * sum of q_x * q_y, then in block order
 *   Q4_0, Q5_0, Q8_0:  sumf += (d_x * d_y) * (float)isum
 *   Q4_1, Q5_1:        sumf += (d_x * d_y) * (float)isum + m_x * s_y
 * with sumf a float starting at 0 and d, m, s the fp16 fields widened.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "quant/quant.h"
#include "quant/quant_impl.h"

#define F16(h) elmi_fp16_to_f32(h)

static uint32_t load_qh(const uint8_t qh[4]) {
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}

static void store_qh(uint8_t qh[4], uint32_t v) {
    for (int i = 0; i < 4; i++) qh[i] = (uint8_t)(v >> (8 * i));
}

/* The value of largest magnitude, sign kept; the first one wins ties. */
static float signed_absmax(const float *x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < n; i++) {
        if (amax < fabsf(x[i])) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    return max;
}

static void min_max(const float *x, int n, float *lo, float *hi) {
    *lo = FLT_MAX;
    *hi = -FLT_MAX;
    for (int i = 0; i < n; i++) {
        if (x[i] < *lo) *lo = x[i];
        if (x[i] > *hi) *hi = x[i];
    }
}

/* Unpacks the 32 4-bit (and optional fifth-bit) values of a block. */
static void unpack_nibbles(const uint8_t qs[16], uint32_t qh, int q[32]) {
    for (int j = 0; j < 16; j++) {
        q[j] = (qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
        q[j + 16] = (qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
    }
}

static void pack_nibbles(const int q[32], uint8_t qs[16], uint32_t *qh) {
    *qh = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 0xF) | (q[j + 16] & 0xF) << 4);
        *qh |= (uint32_t)(q[j] >> 4) << j | (uint32_t)(q[j + 16] >> 4) << (j + 16);
    }
}

/* ------------------------------------------------------------------ Q4_0 */

void elmi_qref_q4_0_to_float(const void *restrict src, float *restrict dst, int64_t n) {
    const block_q4_0 *b = src;
    for (int64_t i = 0; i < n / QK4_0; i++, dst += QK4_0) {
        const float d = F16(b[i].d);
        int q[32];
        unpack_nibbles(b[i].qs, 0, q);
        for (int j = 0; j < QK4_0; j++) dst[j] = (q[j] - 8) * d;
    }
}

void elmi_qref_q4_0_from_float(const float *restrict src, void *restrict dst, int64_t n) {
    block_q4_0 *b = dst;
    for (int64_t i = 0; i < n / QK4_0; i++, src += QK4_0) {
        const float d = signed_absmax(src, QK4_0) / -8;
        const float id = d ? 1.0f / d : 0.0f;
        int q[32];
        uint32_t qh;
        for (int j = 0; j < QK4_0; j++) q[j] = qref_clamp_trunc(src[j] * id + 8.5f, 0, 15);
        b[i].d = elmi_f32_to_fp16(d);
        pack_nibbles(q, b[i].qs, &qh);
    }
}

/* ------------------------------------------------------------------ Q4_1 */

void elmi_qref_q4_1_to_float(const void *restrict src, float *restrict dst, int64_t n) {
    const block_q4_1 *b = src;
    for (int64_t i = 0; i < n / QK4_1; i++, dst += QK4_1) {
        const float d = F16(b[i].d), m = F16(b[i].m);
        int q[32];
        unpack_nibbles(b[i].qs, 0, q);
        for (int j = 0; j < QK4_1; j++) dst[j] = q[j] * d + m;
    }
}

void elmi_qref_q4_1_from_float(const float *restrict src, void *restrict dst, int64_t n) {
    block_q4_1 *b = dst;
    for (int64_t i = 0; i < n / QK4_1; i++, src += QK4_1) {
        float lo, hi;
        min_max(src, QK4_1, &lo, &hi);
        const float d = (hi - lo) / 15;
        const float id = d ? 1.0f / d : 0.0f;
        int q[32];
        uint32_t qh;
        for (int j = 0; j < QK4_1; j++) q[j] = qref_clamp_trunc((src[j] - lo) * id + 0.5f, 0, 15);
        b[i].d = elmi_f32_to_fp16(d);
        b[i].m = elmi_f32_to_fp16(lo);
        pack_nibbles(q, b[i].qs, &qh);
    }
}

/* ------------------------------------------------------------------ Q5_0 */

void elmi_qref_q5_0_to_float(const void *restrict src, float *restrict dst, int64_t n) {
    const block_q5_0 *b = src;
    for (int64_t i = 0; i < n / QK5_0; i++, dst += QK5_0) {
        const float d = F16(b[i].d);
        int q[32];
        unpack_nibbles(b[i].qs, load_qh(b[i].qh), q);
        for (int j = 0; j < QK5_0; j++) dst[j] = (q[j] - 16) * d;
    }
}

void elmi_qref_q5_0_from_float(const float *restrict src, void *restrict dst, int64_t n) {
    block_q5_0 *b = dst;
    for (int64_t i = 0; i < n / QK5_0; i++, src += QK5_0) {
        const float d = signed_absmax(src, QK5_0) / -16;
        const float id = d ? 1.0f / d : 0.0f;
        int q[32];
        uint32_t qh;
        for (int j = 0; j < QK5_0; j++) q[j] = qref_clamp_trunc(src[j] * id + 16.5f, 0, 31);
        b[i].d = elmi_f32_to_fp16(d);
        pack_nibbles(q, b[i].qs, &qh);
        store_qh(b[i].qh, qh);
    }
}

/* ------------------------------------------------------------------ Q5_1 */

void elmi_qref_q5_1_to_float(const void *restrict src, float *restrict dst, int64_t n) {
    const block_q5_1 *b = src;
    for (int64_t i = 0; i < n / QK5_1; i++, dst += QK5_1) {
        const float d = F16(b[i].d), m = F16(b[i].m);
        int q[32];
        unpack_nibbles(b[i].qs, load_qh(b[i].qh), q);
        for (int j = 0; j < QK5_1; j++) dst[j] = q[j] * d + m;
    }
}

void elmi_qref_q5_1_from_float(const float *restrict src, void *restrict dst, int64_t n) {
    block_q5_1 *b = dst;
    for (int64_t i = 0; i < n / QK5_1; i++, src += QK5_1) {
        float lo, hi;
        min_max(src, QK5_1, &lo, &hi);
        const float d = (hi - lo) / 31;
        const float id = d ? 1.0f / d : 0.0f;
        int q[32];
        uint32_t qh;
        for (int j = 0; j < QK5_1; j++) q[j] = qref_clamp_trunc((src[j] - lo) * id + 0.5f, 0, 31);
        b[i].d = elmi_f32_to_fp16(d);
        b[i].m = elmi_f32_to_fp16(lo);
        pack_nibbles(q, b[i].qs, &qh);
        store_qh(b[i].qh, qh);
    }
}

/* ------------------------------------------------------------- Q8_0/Q8_1 */

/* q = roundf(x / d), d = amax / 127; returns d (unrounded) and sum(q). */
static float quantize_q8_block(const float *x, int8_t qs[32], int *sum) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    const float d = amax / 127;
    const float id = d ? 1.0f / d : 0.0f;
    *sum = 0;
    for (int j = 0; j < 32; j++) {
        const float v = roundf(x[j] * id);
        qs[j] = (int8_t)(v >= -127.0f && v <= 127.0f ? v : 0);
        *sum += qs[j];
    }
    return d;
}

void elmi_qref_q8_0_to_float(const void *restrict src, float *restrict dst, int64_t n) {
    const block_q8_0 *b = src;
    for (int64_t i = 0; i < n / QK8_0; i++, dst += QK8_0) {
        const float d = F16(b[i].d);
        for (int j = 0; j < QK8_0; j++) dst[j] = b[i].qs[j] * d;
    }
}

void elmi_qref_q8_0_from_float(const float *restrict src, void *restrict dst, int64_t n) {
    block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / QK8_0; i++, src += QK8_0) {
        int sum;
        b[i].d = elmi_f32_to_fp16(quantize_q8_block(src, b[i].qs, &sum));
    }
}

void elmi_qref_q8_1_to_float(const void *restrict src, float *restrict dst, int64_t n) {
    const block_q8_1 *b = src;
    for (int64_t i = 0; i < n / QK8_1; i++, dst += QK8_1) {
        const float d = F16(b[i].d);
        for (int j = 0; j < QK8_1; j++) dst[j] = b[i].qs[j] * d;
    }
}

void elmi_qref_q8_1_from_float(const float *restrict src, void *restrict dst, int64_t n) {
    block_q8_1 *b = dst;
    for (int64_t i = 0; i < n / QK8_1; i++, src += QK8_1) {
        int sum;
        const float d = quantize_q8_block(src, b[i].qs, &sum);
        b[i].d = elmi_f32_to_fp16(d);
        b[i].s = elmi_f32_to_fp16(sum * d);
    }
}

/* ---------------------------------------------------------- dot products */

static int32_t dot32(const int q[32], const int8_t y[32], int offset) {
    int32_t s = 0;
    for (int j = 0; j < 32; j++) s += (q[j] - offset) * y[j];
    return s;
}

void elmi_qref_q4_0_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                       const void *restrict vy) {
    const block_q4_0 *x = vx;
    const block_q8_0 *y = vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        int q[32];
        unpack_nibbles(x[i].qs, 0, q);
        sumf += (F16(x[i].d) * F16(y[i].d)) * (float)dot32(q, y[i].qs, 8);
    }
    *s = sumf;
}

void elmi_qref_q5_0_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                       const void *restrict vy) {
    const block_q5_0 *x = vx;
    const block_q8_0 *y = vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK5_0; i++) {
        int q[32];
        unpack_nibbles(x[i].qs, load_qh(x[i].qh), q);
        sumf += (F16(x[i].d) * F16(y[i].d)) * (float)dot32(q, y[i].qs, 16);
    }
    *s = sumf;
}

void elmi_qref_q8_0_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                       const void *restrict vy) {
    const block_q8_0 *x = vx;
    const block_q8_0 *y = vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        int q[32];
        for (int j = 0; j < 32; j++) q[j] = x[i].qs[j];
        sumf += (F16(x[i].d) * F16(y[i].d)) * (float)dot32(q, y[i].qs, 0);
    }
    *s = sumf;
}

void elmi_qref_q4_1_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                       const void *restrict vy) {
    const block_q4_1 *x = vx;
    const block_q8_1 *y = vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK4_1; i++) {
        int q[32];
        unpack_nibbles(x[i].qs, 0, q);
        sumf +=
            (F16(x[i].d) * F16(y[i].d)) * (float)dot32(q, y[i].qs, 0) + F16(x[i].m) * F16(y[i].s);
    }
    *s = sumf;
}

void elmi_qref_q5_1_vec_dot(int64_t n, float *restrict s, const void *restrict vx,
                       const void *restrict vy) {
    const block_q5_1 *x = vx;
    const block_q8_1 *y = vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK5_1; i++) {
        int q[32];
        unpack_nibbles(x[i].qs, load_qh(x[i].qh), q);
        sumf +=
            (F16(x[i].d) * F16(y[i].d)) * (float)dot32(q, y[i].qs, 0) + F16(x[i].m) * F16(y[i].s);
    }
    *s = sumf;
}
