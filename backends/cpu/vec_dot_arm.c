/*
 * vec_dot_arm.c: AArch64 NEON dot kernels. Advanced SIMD is part of every
 * AArch64 CPU; the dot-product instructions are used when the build targets
 * them (-march=armv8.2-a+dotprod or later), the widening multiplies otherwise.
 * Per block the integer sum is exact, and blocks are accumulated in order,
 * as the reference does.
 */
#include "backends/cpu/vec_dot.h"

#if defined(__aarch64__) && defined(__ARM_NEON)

#include <arm_neon.h>

static inline float fp16(elm_fp16 h) {
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

/* Sum of the 32 products a[i] * b[i] (a0/b0 values 0..15, a1/b1 16..31). */
static inline int32_t dot32_s8(int8x16_t a0, int8x16_t a1, int8x16_t b0, int8x16_t b1) {
#if defined(__ARM_FEATURE_DOTPROD)
    int32x4_t p = vdotq_s32(vdotq_s32(vdupq_n_s32(0), a0, b0), a1, b1);
#else
    int16x8_t p0 = vmull_s8(vget_low_s8(a0), vget_low_s8(b0));
    p0 = vmlal_s8(p0, vget_high_s8(a0), vget_high_s8(b0));
    int16x8_t p1 = vmull_s8(vget_low_s8(a1), vget_low_s8(b1));
    p1 = vmlal_s8(p1, vget_high_s8(a1), vget_high_s8(b1));
    int32x4_t p = vaddq_s32(vpaddlq_s16(p0), vpaddlq_s16(p1));
#endif
    return vaddvq_s32(p);
}

static float dot1_q4_0(int64_t n, const block_q4_0 *x, const block_q8_0 *y) {
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        uint8x16_t b = vld1q_u8(x[i].qs);
        int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(b, vdupq_n_u8(0x0F))), vdupq_n_s8(8));
        int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(b, 4)), vdupq_n_s8(8));
        int32_t p = dot32_s8(lo, hi, vld1q_s8(y[i].qs), vld1q_s8(y[i].qs + 16));
        sum += (float)p * (fp16(x[i].d) * fp16(y[i].d));
    }
    return sum;
}

static float dot1_q8_0(int64_t n, const block_q8_0 *x, const block_q8_0 *y) {
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        int32_t p = dot32_s8(vld1q_s8(x[i].qs), vld1q_s8(x[i].qs + 16), vld1q_s8(y[i].qs),
                             vld1q_s8(y[i].qs + 16));
        sum += (float)p * (fp16(x[i].d) * fp16(y[i].d));
    }
    return sum;
}

/* Four accumulators over 16-value steps, one over the 4-value rest, then
 * element by element. */
static float dot1_f32(int64_t n, const float *x, const float *y) {
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = vfmaq_f32(a0, vld1q_f32(x + i), vld1q_f32(y + i));
        a1 = vfmaq_f32(a1, vld1q_f32(x + i + 4), vld1q_f32(y + i + 4));
        a2 = vfmaq_f32(a2, vld1q_f32(x + i + 8), vld1q_f32(y + i + 8));
        a3 = vfmaq_f32(a3, vld1q_f32(x + i + 12), vld1q_f32(y + i + 12));
    }
    for (; i + 4 <= n; i += 4) a0 = vfmaq_f32(a0, vld1q_f32(x + i), vld1q_f32(y + i));
    float sum = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    for (; i < n; i++) sum += x[i] * y[i];
    return sum;
}

#define NEON_DOT(T, wtype, ytype)                                                                  \
    static void dot_##T##_neon(int64_t n, int nr, const void *restrict x, size_t bx,               \
                               const void *restrict y, size_t by, int nt, float *restrict s,       \
                               size_t ss) {                                                        \
        for (int r = 0; r < nr; r++)                                                               \
            for (int j = 0; j < nt; j++)                                                           \
                s[r + (size_t)j * ss] = dot1_##T(n, (const wtype *)((const char *)x + r * bx),     \
                                                 (const ytype *)((const char *)y + j * by));       \
    }
NEON_DOT(q4_0, block_q4_0, block_q8_0)
NEON_DOT(q8_0, block_q8_0, block_q8_0)
NEON_DOT(f32, float, float)

bool cpu_arm_supports(cpu_simd level) { return level == CPU_SIMD_NEON; }

void cpu_fill_arm(cpu_simd level, cpu_dot_fn dot[QT_COUNT], cpu_quantize_fn quant[QT_COUNT]) {
    (void)quant;
    if (level != CPU_SIMD_NEON) return;
    dot[QT_Q4_0] = dot_q4_0_neon;
    dot[QT_Q8_0] = dot_q8_0_neon;
    dot[QT_F32] = dot_f32_neon;
}

#else /* not AArch64 */

bool cpu_arm_supports(cpu_simd level) {
    (void)level;
    return false;
}

void cpu_fill_arm(cpu_simd level, cpu_dot_fn dot[QT_COUNT], cpu_quantize_fn quant[QT_COUNT]) {
    (void)level;
    (void)dot;
    (void)quant;
}

#endif
