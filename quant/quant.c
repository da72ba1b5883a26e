/*
 * quant.c: the table of GGUF tensor types. Block sizes and bytes per block
 * follow the ggml block structs (including types edgelm cannot compute with,
 * so files holding them are recognised and refused by name).
 */
#include "quant/quant.h"

#include <stdint.h>

#include "quant/quant_impl.h"

#define KNOWN(id, nm, bs, ts, quantized)                                                           \
    [id] = {.name = nm,                                                                            \
            .block_size = bs,                                                                      \
            .type_size = ts,                                                                       \
            .is_quantized = quantized,                                                             \
            .vec_dot_type = id}

#define FULL(id, nm, bs, ts, quantized, fn, dot_type, dot)                                         \
    [id] = {.name = nm,                                                                            \
            .block_size = bs,                                                                      \
            .type_size = ts,                                                                       \
            .is_quantized = quantized,                                                             \
            .to_float = elmi_qref_##fn##_to_float,                                                      \
            .from_float = elmi_qref_##fn##_from_float,                                                  \
            .vec_dot_type = dot_type,                                                              \
            .vec_dot = dot}

static const qtype_traits g_traits[QT_COUNT] = {
    FULL(QT_F32, "F32", 1, 4, false, f32, QT_F32, elmi_qref_f32_vec_dot),
    FULL(QT_F16, "F16", 1, 2, false, f16, QT_F16, elmi_qref_f16_vec_dot),
    FULL(QT_Q4_0, "Q4_0", QK4_0, sizeof(block_q4_0), true, q4_0, QT_Q8_0, elmi_qref_q4_0_vec_dot),
    FULL(QT_Q4_1, "Q4_1", QK4_1, sizeof(block_q4_1), true, q4_1, QT_Q8_1, elmi_qref_q4_1_vec_dot),
    FULL(QT_Q5_0, "Q5_0", QK5_0, sizeof(block_q5_0), true, q5_0, QT_Q8_0, elmi_qref_q5_0_vec_dot),
    FULL(QT_Q5_1, "Q5_1", QK5_1, sizeof(block_q5_1), true, q5_1, QT_Q8_1, elmi_qref_q5_1_vec_dot),
    FULL(QT_Q8_0, "Q8_0", QK8_0, sizeof(block_q8_0), true, q8_0, QT_Q8_0, elmi_qref_q8_0_vec_dot),
    FULL(QT_Q8_1, "Q8_1", QK8_1, sizeof(block_q8_1), true, q8_1, QT_Q8_1, NULL),
    FULL(QT_Q2_K, "Q2_K", QK_K, sizeof(block_q2_K), true, q2_K, QT_Q8_K, elmi_qref_q2_K_vec_dot),
    FULL(QT_Q3_K, "Q3_K", QK_K, sizeof(block_q3_K), true, q3_K, QT_Q8_K, elmi_qref_q3_K_vec_dot),
    FULL(QT_Q4_K, "Q4_K", QK_K, sizeof(block_q4_K), true, q4_K, QT_Q8_K, elmi_qref_q4_K_vec_dot),
    FULL(QT_Q5_K, "Q5_K", QK_K, sizeof(block_q5_K), true, q5_K, QT_Q8_K, elmi_qref_q5_K_vec_dot),
    FULL(QT_Q6_K, "Q6_K", QK_K, sizeof(block_q6_K), true, q6_K, QT_Q8_K, elmi_qref_q6_K_vec_dot),
    FULL(QT_Q8_K, "Q8_K", QK_K, sizeof(block_q8_K), true, q8_K, QT_Q8_K, NULL),
    KNOWN(QT_IQ2_XXS, "IQ2_XXS", QK_K, 66, true),
    KNOWN(QT_IQ2_XS, "IQ2_XS", QK_K, 74, true),
    KNOWN(QT_IQ3_XXS, "IQ3_XXS", QK_K, 98, true),
    KNOWN(QT_IQ1_S, "IQ1_S", QK_K, 50, true),
    KNOWN(QT_IQ4_NL, "IQ4_NL", 32, 18, true),
    KNOWN(QT_IQ3_S, "IQ3_S", QK_K, 110, true),
    KNOWN(QT_IQ2_S, "IQ2_S", QK_K, 82, true),
    KNOWN(QT_IQ4_XS, "IQ4_XS", QK_K, 136, true),
    KNOWN(QT_I8, "I8", 1, 1, false),
    KNOWN(QT_I16, "I16", 1, 2, false),
    KNOWN(QT_I32, "I32", 1, 4, false),
    KNOWN(QT_I64, "I64", 1, 8, false),
    KNOWN(QT_F64, "F64", 1, 8, false),
    KNOWN(QT_IQ1_M, "IQ1_M", QK_K, 56, true),
    FULL(QT_BF16, "BF16", 1, 2, false, bf16, QT_BF16, elmi_qref_bf16_vec_dot),
    KNOWN(QT_TQ1_0, "TQ1_0", QK_K, 54, true),
    KNOWN(QT_TQ2_0, "TQ2_0", QK_K, 66, true),
    KNOWN(QT_MXFP4, "MXFP4", 32, 17, true),
};

const qtype_traits *elmi_qtype_get(int t) {
    if (t < 0 || t >= QT_COUNT || !g_traits[t].name) return NULL;
    return &g_traits[t];
}

const char *elmi_qtype_name(int t) {
    const qtype_traits *tr = elmi_qtype_get(t);
    return tr ? tr->name : "unknown";
}

bool elmi_qtype_supported(int t) {
    const qtype_traits *tr = elmi_qtype_get(t);
    return tr && tr->to_float;
}

bool elmi_qtype_row_bytes(int t, int64_t n, size_t *out) {
    const qtype_traits *tr = elmi_qtype_get(t);
    if (!tr || n < 0 || n % tr->block_size != 0) return false;
    uint64_t blocks = (uint64_t)(n / tr->block_size);
    if (blocks > SIZE_MAX / tr->type_size) return false;
    *out = (size_t)blocks * tr->type_size;
    return true;
}
