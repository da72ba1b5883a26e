/*
 * quant.h: the tensor types of GGUF files, their block layouts and the scalar
 * reference conversions. This module depends on nothing else in edgelm and is
 * the single source of truth for block layouts: the GGUF reader, the CPU
 * kernels and the shaders follow it. The numbers (values and bytes per block,
 * field offsets) live in quant/layout.h, which the shaders include too
 * (shaders/common/blocks.glsl); the structs below are checked against them.
 *
 * Every layout is bit-compatible with GGUF files written by other tools.
 * Within a block, values are stored as the comments describe; the scalar
 * reference functions in quant.c are the ground truth every fast kernel is
 * tested against.
 */
#ifndef ELM_QUANT_H
#define ELM_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quant/layout.h"

/* Type ids as stored in GGUF tensor infos. Ids 4 and 5 (Q4_2, Q4_3) and
 * 31-33, 36-38 (the repacked Q4_0_x_y / IQ4_NL_x_y) were removed from the
 * format and are refused. */
typedef enum qtype {
    QT_F32 = 0,
    QT_F16 = 1,
    QT_Q4_0 = 2,
    QT_Q4_1 = 3,
    QT_Q5_0 = 6,
    QT_Q5_1 = 7,
    QT_Q8_0 = 8,
    QT_Q8_1 = 9,
    QT_Q2_K = 10,
    QT_Q3_K = 11,
    QT_Q4_K = 12,
    QT_Q5_K = 13,
    QT_Q6_K = 14,
    QT_Q8_K = 15,
    QT_IQ2_XXS = 16,
    QT_IQ2_XS = 17,
    QT_IQ3_XXS = 18,
    QT_IQ1_S = 19,
    QT_IQ4_NL = 20,
    QT_IQ3_S = 21,
    QT_IQ2_S = 22,
    QT_IQ4_XS = 23,
    QT_I8 = 24,
    QT_I16 = 25,
    QT_I32 = 26,
    QT_I64 = 27,
    QT_F64 = 28,
    QT_IQ1_M = 29,
    QT_BF16 = 30,
    QT_TQ1_0 = 34,
    QT_TQ2_0 = 35,
    QT_MXFP4 = 39,
    QT_COUNT = 40, /* upper bound on ids this table knows */
} qtype;

#define QK4_0 ELM_QK_Q4_0
#define QK4_1 ELM_QK_Q4_1
#define QK5_0 ELM_QK_Q5_0
#define QK5_1 ELM_QK_Q5_1
#define QK8_0 ELM_QK_Q8_0
#define QK8_1 32
#define QK_K ELM_QK_K
#define K_SCALE_SIZE ELM_K_SCALE_SIZE

typedef uint16_t elm_fp16; /* IEEE half, stored bits */
typedef uint16_t elm_bf16; /* bfloat16, stored bits */

/* x[i] = d * (q[i] - 8); q[i] for i < 16 in the low nibbles of qs[i], for
 * i >= 16 in the high nibbles of qs[i - 16]. */
typedef struct {
    elm_fp16 d;
    uint8_t qs[QK4_0 / 2];
} block_q4_0;
_Static_assert(sizeof(block_q4_0) == ELM_QB_Q4_0, "block_q4_0 size");
_Static_assert(offsetof(block_q4_0, qs) == ELM_OFF_Q4_0_QS, "block_q4_0.qs");

/* x[i] = d * q[i] + m, nibbles as in Q4_0. */
typedef struct {
    elm_fp16 d;
    elm_fp16 m;
    uint8_t qs[QK4_1 / 2];
} block_q4_1;
_Static_assert(sizeof(block_q4_1) == ELM_QB_Q4_1, "block_q4_1 size");
_Static_assert(offsetof(block_q4_1, m) == ELM_OFF_Q4_1_M, "block_q4_1.m");
_Static_assert(offsetof(block_q4_1, qs) == ELM_OFF_Q4_1_QS, "block_q4_1.qs");

/* x[i] = d * (q[i] - 16); the low 4 bits as in Q4_0, bit 4 of q[i] is bit i
 * of the little-endian 32-bit qh. */
typedef struct {
    elm_fp16 d;
    uint8_t qh[4];
    uint8_t qs[QK5_0 / 2];
} block_q5_0;
_Static_assert(sizeof(block_q5_0) == ELM_QB_Q5_0, "block_q5_0 size");
_Static_assert(offsetof(block_q5_0, qh) == ELM_OFF_Q5_0_QH, "block_q5_0.qh");
_Static_assert(offsetof(block_q5_0, qs) == ELM_OFF_Q5_0_QS, "block_q5_0.qs");

/* x[i] = d * q[i] + m, bits as in Q5_0. */
typedef struct {
    elm_fp16 d;
    elm_fp16 m;
    uint8_t qh[4];
    uint8_t qs[QK5_1 / 2];
} block_q5_1;
_Static_assert(sizeof(block_q5_1) == ELM_QB_Q5_1, "block_q5_1 size");
_Static_assert(offsetof(block_q5_1, m) == ELM_OFF_Q5_1_M, "block_q5_1.m");
_Static_assert(offsetof(block_q5_1, qh) == ELM_OFF_Q5_1_QH, "block_q5_1.qh");
_Static_assert(offsetof(block_q5_1, qs) == ELM_OFF_Q5_1_QS, "block_q5_1.qs");

/* x[i] = d * qs[i]. */
typedef struct {
    elm_fp16 d;
    int8_t qs[QK8_0];
} block_q8_0;
_Static_assert(sizeof(block_q8_0) == ELM_QB_Q8_0, "block_q8_0 size");
_Static_assert(offsetof(block_q8_0, qs) == ELM_OFF_Q8_0_QS, "block_q8_0.qs");

/* Activation format for Q4_1/Q5_1 dot products: s = d * sum(qs). */
typedef struct {
    elm_fp16 d;
    elm_fp16 s;
    int8_t qs[QK8_1];
} block_q8_1;
_Static_assert(sizeof(block_q8_1) == 36, "block_q8_1 size");

/* Super-block of 256 = 16 sub-blocks of 16; x = d * (scales[j] & 0xF) * q -
 * dmin * (scales[j] >> 4), q 2-bit. Value v = 128n + 32k + 16h + l (n < 2,
 * k < 4, h < 2, l < 16) is bits 2k..2k+1 of qs[32n + 16h + l]; j = v / 16. */
typedef struct {
    uint8_t scales[QK_K / 16];
    uint8_t qs[QK_K / 4];
    elm_fp16 d;
    elm_fp16 dmin;
} block_q2_K;
_Static_assert(sizeof(block_q2_K) == ELM_QB_Q2_K, "block_q2_K size");
_Static_assert(offsetof(block_q2_K, qs) == ELM_OFF_Q2_K_QS, "block_q2_K.qs");
_Static_assert(offsetof(block_q2_K, d) == ELM_OFF_Q2_K_D, "block_q2_K.d");
_Static_assert(offsetof(block_q2_K, dmin) == ELM_OFF_Q2_K_DMIN, "block_q2_K.dmin");

/* Super-block of 256 = 16 sub-blocks of 16; x = d * (sc[j] - 32) * q, q in
 * -4..3. The low 2 bits of q are placed in qs as in Q2_K; q gets -4 unless
 * bit 4n + k of hmask[16h + l] is set. The 6-bit sc[j]: low 4 bits are the
 * nibble j / 8 of scales[j % 8], high 2 bits are bits 2(j / 4).. of
 * scales[8 + j % 4]. */
typedef struct {
    uint8_t hmask[QK_K / 8];
    uint8_t qs[QK_K / 4];
    uint8_t scales[K_SCALE_SIZE];
    elm_fp16 d;
} block_q3_K;
_Static_assert(sizeof(block_q3_K) == ELM_QB_Q3_K, "block_q3_K size");
_Static_assert(offsetof(block_q3_K, qs) == ELM_OFF_Q3_K_QS, "block_q3_K.qs");
_Static_assert(offsetof(block_q3_K, scales) == ELM_OFF_Q3_K_SCALES, "block_q3_K.scales");
_Static_assert(offsetof(block_q3_K, d) == ELM_OFF_Q3_K_D, "block_q3_K.d");

/* Super-block of 256 = 8 sub-blocks of 32. Each sub-block j has a 6-bit scale
 * sc[j] and 6-bit min m[j] packed in `scales` (see get_scale_min_k4);
 * x = d * sc[j] * q - dmin * m[j]. qs holds 4-bit q: for each 64-value group
 * g, the low nibbles of qs[32g .. 32g+31] are sub-block 2g and the high
 * nibbles sub-block 2g+1. */
typedef struct {
    elm_fp16 d;
    elm_fp16 dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qs[QK_K / 2];
} block_q4_K;
_Static_assert(sizeof(block_q4_K) == ELM_QB_Q4_K, "block_q4_K size");
_Static_assert(offsetof(block_q4_K, dmin) == ELM_OFF_Q4_K_DMIN, "block_q4_K.dmin");
_Static_assert(offsetof(block_q4_K, scales) == ELM_OFF_Q4_K_SCALES, "block_q4_K.scales");
_Static_assert(offsetof(block_q4_K, qs) == ELM_OFF_Q4_K_QS, "block_q4_K.qs");

/* As Q4_K with a fifth bit: for group g, bit 2g of qh[l] is the high bit of
 * sub-block 2g's value l, bit 2g+1 of sub-block 2g+1's. */
typedef struct {
    elm_fp16 d;
    elm_fp16 dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} block_q5_K;
_Static_assert(sizeof(block_q5_K) == ELM_QB_Q5_K, "block_q5_K size");
_Static_assert(offsetof(block_q5_K, dmin) == ELM_OFF_Q5_K_DMIN, "block_q5_K.dmin");
_Static_assert(offsetof(block_q5_K, scales) == ELM_OFF_Q5_K_SCALES, "block_q5_K.scales");
_Static_assert(offsetof(block_q5_K, qh) == ELM_OFF_Q5_K_QH, "block_q5_K.qh");
_Static_assert(offsetof(block_q5_K, qs) == ELM_OFF_Q5_K_QS, "block_q5_K.qs");

/* 16 sub-blocks of 16 with int8 scales; x = d * scales[v / 16] * (q - 32), q
 * 6-bit. Value v = 128n + 32k + l (n < 2, k < 4, l < 32): low 4 bits are the
 * low (k < 2) or high (k >= 2) nibble of ql[64n + 32(k & 1) + l], high 2
 * bits are bits 2k..2k+1 of qh[32n + l]. */
typedef struct {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    elm_fp16 d;
} block_q6_K;
_Static_assert(sizeof(block_q6_K) == ELM_QB_Q6_K, "block_q6_K size");
_Static_assert(offsetof(block_q6_K, qh) == ELM_OFF_Q6_K_QH, "block_q6_K.qh");
_Static_assert(offsetof(block_q6_K, scales) == ELM_OFF_Q6_K_SCALES, "block_q6_K.scales");
_Static_assert(offsetof(block_q6_K, d) == ELM_OFF_Q6_K_D, "block_q6_K.d");

/* Activation format for k-quant dot products. bsums[j] = sum of qs[16j..16j+15]. */
typedef struct {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
} block_q8_K;
_Static_assert(sizeof(block_q8_K) == 292, "block_q8_K size");

/* Converts `n` values; n must be a multiple of the type's block size. */
typedef void (*qt_to_float_fn)(const void *restrict src, float *restrict dst, int64_t n);
typedef void (*qt_from_float_fn)(const float *restrict src, void *restrict dst, int64_t n);
/* *s = dot(x, y) over n values: x is a row of this type, y a row of the
 * type's vec_dot_type. n is a multiple of the block size. The reference
 * accumulation order (the ground truth for fast kernels) is documented at the
 * top of quant/quant_legacy.c, quant_k.c, quant_k_low.c and quant_float.c. */
typedef void (*qt_vec_dot_fn)(int64_t n, float *restrict s, const void *restrict x,
                              const void *restrict y);

typedef struct qtype_traits {
    const char *name;         /* "Q4_0" */
    int64_t block_size;       /* values per block */
    size_t type_size;         /* bytes per block */
    bool is_quantized;
    qt_to_float_fn to_float;      /* scalar reference dequantize; NULL if unsupported */
    qt_from_float_fn from_float;  /* scalar reference quantize; NULL if unsupported */
    qtype vec_dot_type;           /* activation type of the fast dot product */
    qt_vec_dot_fn vec_dot;        /* scalar reference dot with vec_dot_type; NULL if none */
} qtype_traits;

/* Traits of type id `t`, or NULL for an id that is unknown or removed. A
 * non-NULL result with to_float == NULL is a known type edgelm cannot compute
 * with (for example Q2_K, I32). */
const qtype_traits *elmi_qtype_get(int t);

/* Name of a type id ("Q4_0"), or "unknown". */
const char *elmi_qtype_name(int t);

/* True when edgelm can hold weights of this type (to_float != NULL). */
bool elmi_qtype_supported(int t);

/* Bytes of a row of n values of type t. Returns false (and leaves *out
 * alone) for an unknown type, an n that is not a multiple of the block
 * size, or an overflow. */
bool elmi_qtype_row_bytes(int t, int64_t n, size_t *out);

/* Half and bfloat16 conversions (round to nearest even, NaN-preserving). */
float elmi_fp16_to_f32(elm_fp16 h);
elm_fp16 elmi_f32_to_fp16(float f);
float elmi_bf16_to_f32(elm_bf16 h);
elm_bf16 elmi_f32_to_bf16(float f);

/* Scale and min j (0..7) of a Q4_K/Q5_K `scales` array. */
static inline void get_scale_min_k4(int j, const uint8_t *restrict q, uint8_t *restrict d,
                                    uint8_t *restrict m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
    }
}

#endif /* ELM_QUANT_H */
