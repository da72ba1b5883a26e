/*
 * vec_dot_arm.c: AArch64 NEON dot kernels for Q4_0, Q4_1, Q5_0, Q8_0, Q4_K,
 * Q5_K, Q6_K, F32, F16 and BF16 weights.
 *
 * Advanced SIMD is part of every AArch64 CPU. The integer kernels are built
 * twice from the same source (the second half of this file, included twice):
 * once with the dot-product instructions (SDOT, FEAT_DotProd: optional from
 * Armv8.2, e.g. Cortex-A55/A76, Neoverse, Apple M), used when the kernel
 * reports HWCAP_ASIMDDP, and once with widening multiplies for the CPUs
 * without them (Cortex-A53/A57/A72). The widening path adds every 16-bit
 * product pair into 32 bits, so even -128 * -128 cannot overflow.
 *
 * Per block (or super-block) the integer sums are exact. The K-quant kernels
 * then accumulate in float as the quant module's reference does; the
 * 32-value formats keep four float lanes per token (whose split of a block's
 * sum differs between the two paths, hence the last bits; Q4_1's min term
 * goes to lane 0). A kernel reads and
 * unpacks each weight block once for up to CPU_DOT_MAX_NT tokens; the
 * operations for one (row, token) pair are the same whatever the number of
 * tokens, so results never depend on the grouping.
 */
#ifndef ELM_ARM_PASS

#include "backends/cpu/vec_dot.h"

#if defined(__aarch64__) && defined(__ARM_NEON)

#include <arm_neon.h>
#include <stdbool.h>
#if defined(__linux__)
#include <sys/auxv.h>
#endif

#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20)
#endif

#define INLINE static inline __attribute__((always_inline))
/* Loops over the NT tokens (and other short ones) are unrolled, so that the
 * per-token accumulators stay in registers. */
#define UNROLL_STR(x) #x
#define UNROLL(n) _Pragma(UNROLL_STR(GCC unroll n))

/* The dot-product kernels' target: nothing to add when the whole build
 * already targets FEAT_DotProd. Clang's arm_neon.h (14, at least) declares
 * vdotq_s32 only in that case, so Clang gets SDOT through inline assembly. */
#if defined(__ARM_FEATURE_DOTPROD)
#define TGT_DOTPROD
#define SDOT_ASM 0
#elif defined(__clang__)
#define TGT_DOTPROD __attribute__((target("dotprod")))
#define SDOT_ASM 1
#else
#define TGT_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
#define SDOT_ASM 0
#endif

INLINE float fp16(elm_fp16 h) {
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

/* acc + the 16 products a[i] * b[i], 4 to a lane, with widening multiplies:
 * lane l gets those of i = 2l, 2l + 1, 2l + 8, 2l + 9. */
INLINE int32x4_t dot16_mull(int32x4_t acc, int8x16_t a, int8x16_t b) {
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    return vpadalq_s16(acc, vmull_high_s8(a, b));
}

/* The same with SDOT: lane l gets those of i = 4l .. 4l + 3. */
TGT_DOTPROD INLINE int32x4_t dot16_sdot(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if SDOT_ASM
    __asm__("sdot %0.4s, %1.16b, %2.16b" : "+w"(acc) : "w"(a), "w"(b));
    return acc;
#else
    return vdotq_s32(acc, a, b);
#endif
}

/* ------------------------------------------------------ weight unpacking */

typedef struct i8x32 {
    int8x16_t lo, hi; /* values 0..15, 16..31 */
} i8x32;

typedef enum blk32 { BLK_Q4_0, BLK_Q4_1, BLK_Q5_0, BLK_Q8_0 } blk32;

INLINE size_t blk32_bytes(blk32 k) {
    switch (k) {
    case BLK_Q4_0: return sizeof(block_q4_0);
    case BLK_Q4_1: return sizeof(block_q4_1);
    case BLK_Q5_0: return sizeof(block_q5_0);
    default: return sizeof(block_q8_0);
    }
}

/* The activations: Q8_1 (d, s, qs) for Q4_1, Q8_0 (d, qs) for the others. */
INLINE size_t blk32_ybytes(blk32 k) {
    return k == BLK_Q4_1 ? sizeof(block_q8_1) : sizeof(block_q8_0);
}

INLINE const int8_t *blk32_yqs(blk32 k, const char *yb) {
    return k == BLK_Q4_1 ? ((const block_q8_1 *)yb)->qs : ((const block_q8_0 *)yb)->qs;
}

/* Sixteen nibbles of qs as signed bytes: low (shift 0) or high (shift 4). */
INLINE int8x16_t nibbles(uint8x16_t q, int shift) {
    return vreinterpretq_s8_u8(shift ? vshrq_n_u8(q, 4) : vandq_u8(q, vdupq_n_u8(0x0F)));
}

/* Q5_0's fifth bits of values 16h .. 16h + 15 (bits 16h.. of qh), as 0x10
 * where clear: the value is then the nibble minus these, q - 16. */
INLINE int8x16_t q5_0_minus(const uint8_t qh[4], int h) {
    static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t b = vcombine_u8(vdup_n_u8(qh[2 * h]), vdup_n_u8(qh[2 * h + 1]));
    return vreinterpretq_s8_u8(vbicq_u8(vdupq_n_u8(0x10), vtstq_u8(b, vld1q_u8(bit))));
}

/* The 32 values of a block, as the reference multiplies them with the
 * activations: q - 8 (Q4_0), q (Q4_1), q - 16 (Q5_0) or q (Q8_0). All four
 * formats start with d. */
INLINE i8x32 blk32_values(blk32 k, const char *b) {
    if (k == BLK_Q8_0) {
        const int8_t *q = ((const block_q8_0 *)b)->qs;
        return (i8x32){vld1q_s8(q), vld1q_s8(q + 16)};
    }
    if (k == BLK_Q5_0) {
        const block_q5_0 *q5 = (const block_q5_0 *)b;
        const uint8x16_t q = vld1q_u8(q5->qs);
        return (i8x32){vsubq_s8(nibbles(q, 0), q5_0_minus(q5->qh, 0)),
                       vsubq_s8(nibbles(q, 4), q5_0_minus(q5->qh, 1))};
    }
    const uint8x16_t q = vld1q_u8(k == BLK_Q4_1 ? ((const block_q4_1 *)b)->qs
                                                : ((const block_q4_0 *)b)->qs);
    if (k == BLK_Q4_1) return (i8x32){nibbles(q, 0), nibbles(q, 4)};
    const int8x16_t eight = vdupq_n_s8(8);
    return (i8x32){vsubq_s8(nibbles(q, 0), eight), vsubq_s8(nibbles(q, 4), eight)};
}

INLINE elm_fp16 blk32_d(const char *b) { return ((const block_q4_0 *)b)->d; }

/* The 6-bit scales and mins of a Q4_K super-block (get_scale_min_k4). */
INLINE void q4_K_scales(const uint8_t q[12], uint8_t sc[8], uint8_t mn[8]) {
    for (int j = 0; j < 4; j++) {
        sc[j] = q[j] & 63;
        mn[j] = q[j + 4] & 63;
        sc[j + 4] = (uint8_t)((q[j + 8] & 0xF) | ((q[j] >> 6) << 4));
        mn[j + 4] = (uint8_t)((q[j + 8] >> 4) | ((q[j + 4] >> 6) << 4));
    }
}

/* Sixteen Q6_K values (q - 32): low nibbles (shift 0) or high (shift 4) of
 * ql, bits 4..5 already in place in h. */
INLINE int8x16_t q6_values(uint8x16_t ql, int shift, uint8x16_t h) {
    const uint8x16_t lo = shift ? vshrq_n_u8(ql, 4) : vandq_u8(ql, vdupq_n_u8(0x0F));
    const uint8x16_t q = vorrq_u8(lo, vandq_u8(h, vdupq_n_u8(0x30)));
    return vsubq_s8(vreinterpretq_s8_u8(q), vdupq_n_s8(32));
}

/* ------------------------------------------------ F32, F16 and BF16 */

typedef enum flt { FLT_F32, FLT_F16, FLT_BF16 } flt;

INLINE size_t flt_bytes(flt k) { return k == FLT_F32 ? 4 : 2; }

/* Four values at p, as floats. */
INLINE float32x4_t flt_load4(flt k, const char *p) {
    if (k == FLT_F32) return vld1q_f32((const float *)p);
    const uint16x4_t h = vld1_u16((const uint16_t *)p);
    if (k == FLT_F16) return vcvt_f32_f16(vreinterpret_f16_u16(h));
    return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
}

INLINE float flt_load1(flt k, const char *p) {
    if (k == FLT_F32) return *(const float *)p;
    const uint16_t h = *(const uint16_t *)p;
    if (k == FLT_F16) return fp16(h);
    return vgetq_lane_f32(vreinterpretq_f32_u32(vshll_n_u16(vdup_n_u16(h), 16)), 0);
}

/* Four accumulators over 16-value steps, one over the 4-value rest, then
 * element by element; the x values are loaded once for the NT tokens. */
INLINE void row_flt(flt k, int64_t n, const char *x, const char *y, size_t by, float *s,
                    size_t ss, const int NT) {
    const size_t e = flt_bytes(k);
    float32x4_t a[CPU_DOT_MAX_NT][4];
    UNROLL(4) for (int j = 0; j < NT; j++)
        UNROLL(4) for (int q = 0; q < 4; q++) a[j][q] = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const char *xi = x + i * e;
        const float32x4_t x0 = flt_load4(k, xi), x1 = flt_load4(k, xi + 4 * e);
        const float32x4_t x2 = flt_load4(k, xi + 8 * e), x3 = flt_load4(k, xi + 12 * e);
        UNROLL(4) for (int j = 0; j < NT; j++) {
            const char *yj = y + j * by + i * e;
            a[j][0] = vfmaq_f32(a[j][0], x0, flt_load4(k, yj));
            a[j][1] = vfmaq_f32(a[j][1], x1, flt_load4(k, yj + 4 * e));
            a[j][2] = vfmaq_f32(a[j][2], x2, flt_load4(k, yj + 8 * e));
            a[j][3] = vfmaq_f32(a[j][3], x3, flt_load4(k, yj + 12 * e));
        }
    }
    for (; i + 4 <= n; i += 4) {
        const float32x4_t x0 = flt_load4(k, x + i * e);
        UNROLL(4) for (int j = 0; j < NT; j++)
            a[j][0] = vfmaq_f32(a[j][0], x0, flt_load4(k, y + j * by + i * e));
    }
    UNROLL(4) for (int j = 0; j < NT; j++) {
        float sum = vaddvq_f32(vaddq_f32(vaddq_f32(a[j][0], a[j][1]), vaddq_f32(a[j][2], a[j][3])));
        for (int64_t q = i; q < n; q++)
            sum = __builtin_fmaf(flt_load1(k, x + q * e), flt_load1(k, y + j * by + q * e), sum);
        s[j * ss] = sum;
    }
}

#define FLT_KERNEL(name, kind)                                                                     \
    static void name(int64_t n, int nr, const void *restrict x, size_t bx,                         \
                     const void *restrict y, size_t by, int nt, float *restrict s, size_t ss) {    \
        for (int r = 0; r < nr; r++) {                                                             \
            const char *xr = (const char *)x + r * bx;                                             \
            switch (nt) {                                                                          \
            case 1: row_flt(kind, n, xr, y, by, s + r, ss, 1); break;                              \
            case 2: row_flt(kind, n, xr, y, by, s + r, ss, 2); break;                              \
            case 3: row_flt(kind, n, xr, y, by, s + r, ss, 3); break;                              \
            default: row_flt(kind, n, xr, y, by, s + r, ss, 4); break;                             \
            }                                                                                      \
        }                                                                                          \
    }
FLT_KERNEL(dot_f32_neon, FLT_F32)
FLT_KERNEL(dot_f16_neon, FLT_F16)
FLT_KERNEL(dot_bf16_neon, FLT_BF16)
#undef FLT_KERNEL

/* ----------------------------------------- the integer kernels, twice */

#define ARM_CAT2(a, b) a##b
#define ARM_CAT(a, b) ARM_CAT2(a, b)
#define ARM_FN(name) ARM_CAT(name, ARM_SFX)

#define ELM_ARM_PASS 1
#define ARM_SFX _mull
#define ARM_TGT
#define ARM_DOT16 dot16_mull
#include __FILE__
#undef ARM_SFX
#undef ARM_TGT
#undef ARM_DOT16
#undef ELM_ARM_PASS

#define ELM_ARM_PASS 2
#define ARM_SFX _sdot
#define ARM_TGT TGT_DOTPROD
#define ARM_DOT16 dot16_sdot
#include __FILE__
#undef ARM_SFX
#undef ARM_TGT
#undef ARM_DOT16
#undef ELM_ARM_PASS

/* ---------------------------------------------------------- run time */

static bool arm_has_dotprod(void) {
#if defined(__ARM_FEATURE_DOTPROD)
    return true;
#elif defined(__linux__)
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#else
    return false;
#endif
}

bool elmi_cpu_arm_supports(cpu_simd level) { return level == CPU_SIMD_NEON; }

void elmi_cpu_fill_arm(cpu_simd level, cpu_dot_fn dot[QT_COUNT], cpu_quantize_fn quant[QT_COUNT]) {
    (void)quant;
    if (level != CPU_SIMD_NEON) return;
    const bool sdot = arm_has_dotprod();
    dot[QT_Q4_0] = sdot ? dot_q4_0_sdot : dot_q4_0_mull;
    dot[QT_Q4_1] = sdot ? dot_q4_1_sdot : dot_q4_1_mull;
    dot[QT_Q5_0] = sdot ? dot_q5_0_sdot : dot_q5_0_mull;
    dot[QT_Q8_0] = sdot ? dot_q8_0_sdot : dot_q8_0_mull;
    dot[QT_Q4_K] = sdot ? dot_q4_K_sdot : dot_q4_K_mull;
    dot[QT_Q5_K] = sdot ? dot_q5_K_sdot : dot_q5_K_mull;
    dot[QT_Q6_K] = sdot ? dot_q6_K_sdot : dot_q6_K_mull;
    dot[QT_F32] = dot_f32_neon;
    dot[QT_F16] = dot_f16_neon;
    dot[QT_BF16] = dot_bf16_neon;
}

#else /* not AArch64 */

bool elmi_cpu_arm_supports(cpu_simd level) {
    (void)level;
    return false;
}

void elmi_cpu_fill_arm(cpu_simd level, cpu_dot_fn dot[QT_COUNT], cpu_quantize_fn quant[QT_COUNT]) {
    (void)level;
    (void)dot;
    (void)quant;
}

#endif

#else /* ELM_ARM_PASS: the integer kernels, with ARM_DOT16 for the 16-byte
       * dot product, ARM_TGT for the target and ARM_SFX for the names. */

/* One row of 32-value blocks (Q4_0, Q4_1, Q5_0, Q8_0) against NT rows of
 * Q8_0 or Q8_1 activations. Per token, even and odd blocks go to two float
 * accumulators of 4 lanes; Q4_1's m * s goes to lane 0, in one fma. */
ARM_TGT INLINE void ARM_FN(blk32_step)(blk32 k, const char *wb, int64_t i, const char *y,
                                       size_t by, float32x4_t *acc, const int NT) {
    const i8x32 v = blk32_values(k, wb);
    const float dw = fp16(blk32_d(wb));
    const float32x4_t mw =
        k == BLK_Q4_1 ? vsetq_lane_f32(fp16(((const block_q4_1 *)wb)->m), vdupq_n_f32(0.0f), 0)
                      : vdupq_n_f32(0.0f);
    UNROLL(4) for (int j = 0; j < NT; j++) {
        const char *yb = y + j * by + i * blk32_ybytes(k);
        const int8_t *yq = blk32_yqs(k, yb);
        int32x4_t p = ARM_DOT16(vdupq_n_s32(0), v.lo, vld1q_s8(yq));
        p = ARM_DOT16(p, v.hi, vld1q_s8(yq + 16));
        /* Q8_0 and Q8_1 both start with d. */
        acc[j] = vfmaq_n_f32(acc[j], vcvtq_f32_s32(p), dw * fp16(((const block_q8_0 *)yb)->d));
        if (k == BLK_Q4_1) acc[j] = vfmaq_n_f32(acc[j], mw, fp16(((const block_q8_1 *)yb)->s));
    }
}

ARM_TGT INLINE void ARM_FN(row32)(blk32 k, int64_t nb, const char *w, const char *y, size_t by,
                                  float *s, size_t ss, const int NT) {
    const size_t wsz = blk32_bytes(k);
    float32x4_t a0[CPU_DOT_MAX_NT], a1[CPU_DOT_MAX_NT];
    UNROLL(4) for (int j = 0; j < NT; j++) a0[j] = a1[j] = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        ARM_FN(blk32_step)(k, w + i * wsz, i, y, by, a0, NT);
        ARM_FN(blk32_step)(k, w + (i + 1) * wsz, i + 1, y, by, a1, NT);
    }
    if (i < nb) ARM_FN(blk32_step)(k, w + i * wsz, i, y, by, a0, NT);
    UNROLL(4) for (int j = 0; j < NT; j++) s[j * ss] = vaddvq_f32(vaddq_f32(a0[j], a1[j]));
}

#define ARM_KIND_KERNEL(name, row, kind, bs)                                                      \
    ARM_TGT static void ARM_FN(name)(int64_t n, int nr, const void *restrict x, size_t bx,        \
                                     const void *restrict y, size_t by, int nt,                   \
                                     float *restrict s, size_t ss) {                              \
        const int64_t nb = n / (bs);                                                              \
        for (int r = 0; r < nr; r++) {                                                            \
            const char *w = (const char *)x + r * bx;                                             \
            switch (nt) {                                                                         \
            case 1: ARM_FN(row)(kind, nb, w, y, by, s + r, ss, 1); break;                         \
            case 2: ARM_FN(row)(kind, nb, w, y, by, s + r, ss, 2); break;                         \
            case 3: ARM_FN(row)(kind, nb, w, y, by, s + r, ss, 3); break;                         \
            default: ARM_FN(row)(kind, nb, w, y, by, s + r, ss, 4); break;                        \
            }                                                                                     \
        }                                                                                         \
    }
ARM_KIND_KERNEL(dot_q4_0, row32, BLK_Q4_0, 32)
ARM_KIND_KERNEL(dot_q4_1, row32, BLK_Q4_1, 32)
ARM_KIND_KERNEL(dot_q5_0, row32, BLK_Q5_0, 32)
ARM_KIND_KERNEL(dot_q8_0, row32, BLK_Q8_0, 32)

/* One row of Q4_K or Q5_K (q5) against NT rows of Q8_K. Per super-block and
 * token, the exact integer sums of the reference: isum = sum_j sc[j] * (q . y
 * over sub-block j), msum = sum_j m[j] * (bsums of sub-block j). */
ARM_TGT INLINE void ARM_FN(row_q45_K)(bool q5, int64_t nb, const char *w, const char *y,
                                      size_t by, float *s, size_t ss, const int NT) {
    const size_t wsz = q5 ? sizeof(block_q5_K) : sizeof(block_q4_K);
    float sum[CPU_DOT_MAX_NT];
    UNROLL(4) for (int j = 0; j < NT; j++) sum[j] = 0.0f;
    const uint8x16_t m4 = vdupq_n_u8(0x0F), bit4 = vdupq_n_u8(0x10);
    for (int64_t i = 0; i < nb; i++) {
        /* Both formats start with d, dmin and scales; Q5_K has qh before qs. */
        const block_q4_K *b = (const block_q4_K *)(w + i * wsz);
        const block_q5_K *b5 = (const block_q5_K *)b;
        const uint8_t *qs = q5 ? b5->qs : b->qs;
        uint8_t sc[8], mn[8];
        q4_K_scales(b->scales, sc, mn);
        /* Q5_K: the fifth bits of values 0..15 (qh0) and 16..31 (qh1) of
         * every sub-block, shifted down by 2 per group. */
        uint8x16_t qh0 = vdupq_n_u8(0), qh1 = vdupq_n_u8(0);
        if (q5) {
            qh0 = vld1q_u8(b5->qh);
            qh1 = vld1q_u8(b5->qh + 16);
        }
        int32x4_t isum[CPU_DOT_MAX_NT];
        UNROLL(4) for (int j = 0; j < NT; j++) isum[j] = vdupq_n_s32(0);
        for (int g = 0; g < 4; g++) { /* sub-blocks 2g (low nibbles), 2g + 1 (high) */
            const uint8x16_t q0 = vld1q_u8(qs + 32 * g), q1 = vld1q_u8(qs + 32 * g + 16);
            uint8x16_t l0 = vandq_u8(q0, m4), l1 = vandq_u8(q1, m4);
            uint8x16_t h0 = vshrq_n_u8(q0, 4), h1 = vshrq_n_u8(q1, 4);
            if (q5) { /* bits 2g and 2g + 1 of qh (now bits 0 and 1), to bit 4 */
                l0 = vorrq_u8(l0, vandq_u8(vshlq_n_u8(qh0, 4), bit4));
                l1 = vorrq_u8(l1, vandq_u8(vshlq_n_u8(qh1, 4), bit4));
                h0 = vorrq_u8(h0, vandq_u8(vshlq_n_u8(qh0, 3), bit4));
                h1 = vorrq_u8(h1, vandq_u8(vshlq_n_u8(qh1, 3), bit4));
                qh0 = vshrq_n_u8(qh0, 2);
                qh1 = vshrq_n_u8(qh1, 2);
            }
            UNROLL(4) for (int j = 0; j < NT; j++) {
                const int8_t *yq = ((const block_q8_K *)(y + j * by) + i)->qs + 64 * g;
                int32x4_t lo = ARM_DOT16(vdupq_n_s32(0), vreinterpretq_s8_u8(l0), vld1q_s8(yq));
                lo = ARM_DOT16(lo, vreinterpretq_s8_u8(l1), vld1q_s8(yq + 16));
                int32x4_t hi =
                    ARM_DOT16(vdupq_n_s32(0), vreinterpretq_s8_u8(h0), vld1q_s8(yq + 32));
                hi = ARM_DOT16(hi, vreinterpretq_s8_u8(h1), vld1q_s8(yq + 48));
                isum[j] = vmlaq_n_s32(isum[j], lo, sc[2 * g]);
                isum[j] = vmlaq_n_s32(isum[j], hi, sc[2 * g + 1]);
            }
        }
        const int16x8_t mins = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(mn)));
        const float d = fp16(b->d), dmin = fp16(b->dmin);
        UNROLL(4) for (int j = 0; j < NT; j++) {
            const block_q8_K *yb = (const block_q8_K *)(y + j * by) + i;
            /* Pair sums of the 16 bsums: the 8 sub-blocks' sums (|.| <= 4096). */
            const int16x8_t bs = vpaddq_s16(vld1q_s16(yb->bsums), vld1q_s16(yb->bsums + 8));
            int32x4_t mp = vmull_s16(vget_low_s16(bs), vget_low_s16(mins));
            mp = vmlal_high_s16(mp, bs, mins);
            const int32_t msum = vaddvq_s32(mp), is = vaddvq_s32(isum[j]);
            sum[j] = __builtin_fmaf(d * yb->d, (float)is, sum[j]);
            sum[j] = __builtin_fmaf(-(dmin * yb->d), (float)msum, sum[j]);
        }
    }
    UNROLL(4) for (int j = 0; j < NT; j++) s[j * ss] = sum[j];
}

ARM_KIND_KERNEL(dot_q4_K, row_q45_K, false, QK_K)
ARM_KIND_KERNEL(dot_q5_K, row_q45_K, true, QK_K)
#undef ARM_KIND_KERNEL

/* One row of Q6_K against NT rows of Q8_K: isum = sum_j scales[j] *
 * ((q - 32) . y over the 16 values of sub-block j). Each half n of the
 * super-block holds sub-blocks 8n..8n+7, value 16m + l of the half in
 * sub-block 8n + m. */
ARM_TGT INLINE void ARM_FN(row_q6_K)(int64_t nb, const block_q6_K *w, const char *y, size_t by,
                                     float *s, size_t ss, const int NT) {
    float sum[CPU_DOT_MAX_NT];
    UNROLL(4) for (int j = 0; j < NT; j++) sum[j] = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        const block_q6_K *b = &w[i];
        int32x4_t isum[CPU_DOT_MAX_NT];
        UNROLL(4) for (int j = 0; j < NT; j++) isum[j] = vdupq_n_s32(0);
        for (int n = 0; n < 2; n++) {
            const uint8_t *ql = b->ql + 64 * n, *qh = b->qh + 32 * n;
            const int8_t *sc = b->scales + 8 * n;
            const uint8x16_t L0 = vld1q_u8(ql), L1 = vld1q_u8(ql + 16);
            const uint8x16_t L2 = vld1q_u8(ql + 32), L3 = vld1q_u8(ql + 48);
            const uint8x16_t H0 = vld1q_u8(qh), H1 = vld1q_u8(qh + 16);
            /* Group k of 32 values: high bits 2k..2k+1 of qh, moved to bits 4..5. */
            int8x16_t q[8];
            q[0] = q6_values(L0, 0, vshlq_n_u8(H0, 4));
            q[1] = q6_values(L1, 0, vshlq_n_u8(H1, 4));
            q[2] = q6_values(L2, 0, vshlq_n_u8(H0, 2));
            q[3] = q6_values(L3, 0, vshlq_n_u8(H1, 2));
            q[4] = q6_values(L0, 4, H0);
            q[5] = q6_values(L1, 4, H1);
            q[6] = q6_values(L2, 4, vshrq_n_u8(H0, 2));
            q[7] = q6_values(L3, 4, vshrq_n_u8(H1, 2));
            UNROLL(4) for (int j = 0; j < NT; j++) {
                const int8_t *yq = ((const block_q8_K *)(y + j * by) + i)->qs + 128 * n;
                UNROLL(8) for (int m = 0; m < 8; m++) {
                    const int32x4_t p = ARM_DOT16(vdupq_n_s32(0), q[m], vld1q_s8(yq + 16 * m));
                    isum[j] = vmlaq_n_s32(isum[j], p, sc[m]);
                }
            }
        }
        const float d = fp16(b->d);
        UNROLL(4) for (int j = 0; j < NT; j++) {
            const block_q8_K *yb = (const block_q8_K *)(y + j * by) + i;
            sum[j] = __builtin_fmaf(d * yb->d, (float)vaddvq_s32(isum[j]), sum[j]);
        }
    }
    UNROLL(4) for (int j = 0; j < NT; j++) s[j * ss] = sum[j];
}

#define ARM_K_KERNEL(name, wtype, row)                                                            \
    ARM_TGT static void ARM_FN(name)(int64_t n, int nr, const void *restrict x, size_t bx,        \
                                     const void *restrict y, size_t by, int nt,                   \
                                     float *restrict s, size_t ss) {                              \
        const int64_t nb = n / QK_K;                                                              \
        for (int r = 0; r < nr; r++) {                                                            \
            const wtype *w = (const wtype *)((const char *)x + r * bx);                           \
            switch (nt) {                                                                         \
            case 1: ARM_FN(row)(nb, w, y, by, s + r, ss, 1); break;                               \
            case 2: ARM_FN(row)(nb, w, y, by, s + r, ss, 2); break;                               \
            case 3: ARM_FN(row)(nb, w, y, by, s + r, ss, 3); break;                               \
            default: ARM_FN(row)(nb, w, y, by, s + r, ss, 4); break;                              \
            }                                                                                     \
        }                                                                                         \
    }
ARM_K_KERNEL(dot_q6_K, block_q6_K, row_q6_K)
#undef ARM_K_KERNEL

#endif /* ELM_ARM_PASS */
