/*
 * push_constants.h: the push constants of every shader, as the host fills
 * them. The struct for shaders/<family>.comp is pc_<family>, member for
 * member the shader's `layout(push_constant) uniform Params` block.
 *
 * The build checks that correspondence: shaders/pc_layout.cmake reads the
 * block of every compiled SPIR-V module (spirv-dis) and generates
 * pc_layout.h, whose offsets, sizes and types pc_check.c compares with
 * these structs by _Static_assert. A member added, removed, renamed,
 * retyped or moved on one side only fails the build.
 */
#ifndef ELM_VK_PUSH_CONSTANTS_H
#define ELM_VK_PUSH_CONSTANTS_H

#include <stdint.h>

typedef struct pc_binary {
    uint32_t a_base, b_base, d_base, n, n_rows, a_stride, b_stride, d_stride;
    uint32_t act; /* GLU: BE_GLU_SILU or BE_GLU_GELU_TANH */
} pc_binary;

/* Row ops over (n, ne1, ne2, ne3): row strides along dims 1..3, in floats. */
typedef struct pc_rms_norm {
    uint32_t x_base, w_base, d_base, n, n_rows, ne1, ne2;
    uint32_t x_s1, x_s2, x_s3, d_s1, d_s2, d_s3;
    float eps;
} pc_rms_norm;

typedef struct pc_scale {
    uint32_t x_base, d_base, n, n_rows, ne1, ne2;
    uint32_t x_s1, x_s2, x_s3, d_s1, d_s2, d_s3;
    float s, softcap;
} pc_scale;

typedef struct pc_softmax {
    uint32_t x_base, d_base, n, n_rows, ne1, ne2;
    uint32_t x_s1, x_s2, x_s3, d_s1, d_s2, d_s3;
    float s;
} pc_softmax;

typedef struct pc_rope {
    uint32_t x_base, pos_base, ff_base, d_base, head_dim, n_head, x_rs, x_ts, d_rs, d_ts;
    uint32_t neox, n_rot, has_ff, yarn;
    float log2_theta_scale, freq_scale, ext_factor, corr_low, corr_high, mscale;
} pc_rope;

/* ROPE q, ROPE k and the two KV_STOREs (op_rope_kv.c): the rope fields as
 * pc_rope's; k's heads are dense (head_dim floats apart); bases in floats
 * and cache elements; k_dyn, v_dyn: the stores' per-call slots. */
typedef struct pc_rope_kv {
    uint32_t q_base, pos_base, ff_base, k_base, v_base, kc_base, vc_base;
    uint32_t head_dim, n_head, n_head_kv, v_n;
    uint32_t q_rs, q_ts, k_ts, v_ts, kc_stride, vc_stride;
    uint32_t tok0, k_dyn, v_dyn, ring_rows;
    uint32_t neox, n_rot, has_ff, yarn;
    float log2_theta_scale, freq_scale, ext_factor, corr_low, corr_high, mscale;
} pc_rope_kv;

/* ring_rows: the cache's rows for a ring cache, VK_NO_RING otherwise. */
typedef struct pc_kv_store {
    uint32_t x_base, d_base, n, x_stride, d_stride, tok0, dyn_idx, ring_rows;
} pc_kv_store;

typedef struct pc_attention {
    uint32_t q_base, k_base, v_base, d_base, n_head, n_head_kv, q_rs, q_ts, kv_stride, d_ts, tok0, dyn_idx;
    uint32_t window, ring_rows;
    float scale, softcap;
} pc_attention;

typedef struct pc_flash_attn {
    uint32_t q_base, k_base, v_base, d_base, n_head, n_head_kv, q_rs, q_ts, kv_stride, d_ts, tok0, dyn_idx;
    uint32_t window, ring_rows;
    float scale, softcap;
    uint32_t hb, tb, n_tok, n_split, ml_base, min_chunk;
} pc_flash_attn;

typedef struct pc_flash_attn_reduce {
    uint32_t s_base, d_base, n_head, n_rows, d_ts, n_split, ml_base;
} pc_flash_attn_reduce;

typedef struct pc_shortconv {
    uint32_t bcx_base, w_base, s_base, d_base, n, L, n_tok, bcx_stride, d_stride, s_stride, s_rows;
    uint32_t tok0, dyn_idx;
} pc_shortconv;

/* ring_rows of a cache that is not a ring: j % VK_NO_RING == j. */
#define VK_NO_RING 0xffffffffu

typedef struct pc_get_rows {
    uint32_t w_base, id_base, d_base, n, row_bytes, d_stride, row0, n_rows, n_table;
} pc_get_rows;

typedef struct pc_matvec {
    uint32_t w_base, x_base, b_base, d_base, K, N, row_bytes, x_stride, d_stride, has_bias, n_tok;
} pc_matvec;

/* matvec_fused.comp: up to three matrices of one type over one token,
 * with an RMS-norm prologue, biases, a GLU or a residual-add epilogue
 * (flags: VK_MVF_*). g1, g2: the first workgroups of matrices 1 and 2. */
typedef struct pc_matvec_fused {
    uint32_t w_base0, w_base1, w_base2, x_base, n_base, d_base0, d_base1, d_base2;
    uint32_t b_base0, b_base1, b_base2, K, N0, N1, N2, row_bytes, g1, g2, flags;
    float eps;
    uint32_t act;
} pc_matvec_fused;

enum {
    VK_MVF_NORM = 1,   /* RMS-normalize x by the weights at n_base first */
    VK_MVF_RESID = 4,  /* dst0 += result */
    VK_MVF_PROJ = 8,   /* RESID: the result also into dst1 */
    VK_MVF_UP = 16,    /* GLU: up into dst1 */
    VK_MVF_BIAS0 = 32, /* bias of matrix m: VK_MVF_BIAS0 << m */
};

typedef struct pc_matmat {
    uint32_t w_base, x_base, b_base, d_base, K, N, n_tok, row_bytes, x_stride, d_stride, has_bias;
} pc_matmat;

typedef struct pc_argmax {
    uint32_t x_base, d_base, n, n_rows, x_stride, d_stride;
} pc_argmax;

#endif
