/*
 * quant_float.c: IEEE half and bfloat16 conversions (pure integer code, no
 * _Float16) and the F32 / F16 / BF16 reference kernels.
 */
#include <string.h>

#include "quant/quant.h"
#include "quant/quant_impl.h"

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float elmi_fp16_to_f32(elm_fp16 h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp != 0) return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
    /* Zero or subnormal: man * 2^-24 is exact and never a float subnormal. */
    const float v = (float)man * 0x1p-24f;
    return sign ? -v : v;
}

/* Shifts m right by `shift` (1..31), rounding to nearest, ties to even. */
static uint32_t shift_rne(uint32_t m, int shift) {
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    return q;
}

elm_fp16 elmi_f32_to_fp16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffff;
    if (a > 0x7f800000u) /* NaN: keep the top payload bits, force quiet */
        return (elm_fp16)(sign | 0x7e00 | ((a >> 13) & 0x3ff));
    if (a >= 0x477ff000u) /* >= 65520 rounds past 65504 */
        return (elm_fp16)(sign | 0x7c00);
    uint32_t exp = a >> 23;
    if (exp < 113) { /* below 2^-14: half subnormal or zero */
        int shift = 126 - (int)exp;
        if (shift > 24) return sign; /* under half of 2^-24 */
        return (elm_fp16)(sign | shift_rne((a & 0x7fffff) | 0x800000, shift));
    }
    /* A carry out of the mantissa correctly bumps the exponent. */
    uint32_t h = ((exp - 112) << 10) + shift_rne(a & 0x7fffff, 13);
    return (elm_fp16)(sign | h);
}

float elmi_bf16_to_f32(elm_bf16 h) {
    return bits_f32((uint32_t)h << 16);
}

elm_bf16 elmi_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffff) > 0x7f800000u) /* NaN whose payload may sit in the low half */
        return (elm_bf16)((u >> 16) | 0x40);
    return (elm_bf16)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

void elmi_qref_f32_to_float(const void *restrict src, float *restrict dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

void elmi_qref_f32_from_float(const float *restrict src, void *restrict dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

void elmi_qref_f16_to_float(const void *restrict src, float *restrict dst, int64_t n) {
    const elm_fp16 *h = src;
    for (int64_t i = 0; i < n; i++) dst[i] = elmi_fp16_to_f32(h[i]);
}

void elmi_qref_f16_from_float(const float *restrict src, void *restrict dst, int64_t n) {
    elm_fp16 *h = dst;
    for (int64_t i = 0; i < n; i++) h[i] = elmi_f32_to_fp16(src[i]);
}

void elmi_qref_bf16_to_float(const void *restrict src, float *restrict dst, int64_t n) {
    const elm_bf16 *h = src;
    for (int64_t i = 0; i < n; i++) dst[i] = elmi_bf16_to_f32(h[i]);
}

void elmi_qref_bf16_from_float(const float *restrict src, void *restrict dst, int64_t n) {
    elm_bf16 *h = dst;
    for (int64_t i = 0; i < n; i++) h[i] = elmi_f32_to_bf16(src[i]);
}

/*
 * Float dot products: each product is exact in double (at most 24+24
 * significant bits), summed in double in index order and rounded to float
 * once, so the reference is as close to the true dot as a float can be.
 */
void elmi_qref_f32_vec_dot(int64_t n, float *restrict s, const void *restrict x,
                      const void *restrict y) {
    const float *a = x, *b = y;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)a[i] * (double)b[i];
    *s = (float)sum;
}

void elmi_qref_f16_vec_dot(int64_t n, float *restrict s, const void *restrict x,
                      const void *restrict y) {
    const elm_fp16 *a = x, *b = y;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)elmi_fp16_to_f32(a[i]) * (double)elmi_fp16_to_f32(b[i]);
    *s = (float)sum;
}

void elmi_qref_bf16_vec_dot(int64_t n, float *restrict s, const void *restrict x,
                       const void *restrict y) {
    const elm_bf16 *a = x, *b = y;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)elmi_bf16_to_f32(a[i]) * (double)elmi_bf16_to_f32(b[i]);
    *s = (float)sum;
}
