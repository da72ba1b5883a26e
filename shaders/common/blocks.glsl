// blocks.glsl: the block layouts of quant/quant.h, as byte offsets inside a
// block, and dequant4r(), which expands four consecutive values of a row.
// Block sizes and field offsets come from quant/layout.h, the header the C
// structs are checked against; U(x) makes one of its numbers a uint.
//
// The weights are bound at binding 0 and addressed in bytes. Every block
// size is even and every field we read is 2-byte aligned, so two access
// paths cover all devices:
//   S16 defined: 16-bit storage (uint16_t loads),
//   otherwise:   32-bit words only (devices without 16-bit storage), with
//                a 2-byte aligned 32-bit load stitched from two words.
// Bytes are always extracted from 16/32-bit loads, so 8-bit storage is
// never required.
//
// Exactly one TYPE_* must be defined. Each defines
//   QK: values per block (4 for F32/F16/BF16, which are read four at a time),
//   QB: bytes per block,
//   vec4 dequant4r(uint rb, uint blk, uint i): values i..i+3 of block blk
//   of the row at byte rb, in either row layout (see WSPLIT at the end);
//   i is a multiple of 4 below QK.
// Q4_0 and Q8_0 (the integer-dot mat-mat) also define, on a block's body
// and d addresses (blk_body, blk_d at the end):
//   float q_scale(uint bd): the block's scale,
//   uint q_word_i8(uint bq, uint j): values 4j..4j+3 (j < 8) as 4 packed
//   signed bytes, the quants without the scale.
// Values are computed in F32 exactly as the scalar references do.

#include "quant/layout.h"
#define U(x) uint(x)

#if defined(TEX)
// The weights through uniform texel buffers, two views of binding 0's
// bytes: 16-byte texels at binding 12, words at 14. On lavapipe a texel
// fetch is one vector gather, a storage-buffer load a loop over the lanes
// (backends/vulkan/README.md).
layout(binding = 12) uniform usamplerBuffer wt;
layout(binding = 14) uniform usamplerBuffer wt1;
// Texel i of t, clamped to the view (the last quad's words past the
// window read the window's last texel instead).
uvec4 fetch_clamped(usamplerBuffer t, uint i) { return texelFetch(t, int(min(i, uint(textureSize(t)) - 1u))); }
uint wt_word(uint i) { return fetch_clamped(wt1, i).x; }
uint ld16(uint b) { return (wt_word(b >> 2) >> ((b & 2u) * 8u)) & 0xFFFFu; }
// Branch-free: lavapipe would run both sides of a branch on b anyway.
uint ld32(uint b) {
    uint i = b >> 2, lo = wt_word(i), hi = wt_word(i + 1u);
    return (b & 2u) == 0u ? lo : (lo >> 16) | (hi << 16);
}
#elif defined(S16)
#extension GL_EXT_shader_16bit_storage : require
layout(std430, binding = 0) readonly buffer WBuf { uint16_t w16[]; };
uint ld16(uint b) { return uint(w16[b >> 1]); }
uint ld32(uint b) { return uint(w16[b >> 1]) | (uint(w16[(b >> 1) + 1u]) << 16); }
#else
layout(std430, binding = 0) readonly buffer WBuf { uint w32[]; };
uint ld16(uint b) { return (w32[b >> 2] >> ((b & 2u) * 8u)) & 0xFFFFu; }
uint ld32(uint b) {
    uint i = b >> 2;
    // Aligned loads never touch the next word, which may lie past the end.
    if ((b & 2u) == 0u) return w32[i];
    return (w32[i] >> 16) | (w32[i + 1u] << 16);
}
#endif

uint ld8(uint b) { return (ld16(b & ~1u) >> ((b & 1u) * 8u)) & 0xFFu; }
float ldh(uint b) { return unpackHalf2x16(ld16(b)).x; }
uvec4 bytes4(uint w) { return uvec4(w & 0xFFu, (w >> 8) & 0xFFu, (w >> 16) & 0xFFu, w >> 24); }
// Bit 0 of each byte of w, for the fifth bit of Q5 values.
uvec4 bits4(uint w) { return uvec4(w & 1u, (w >> 8) & 1u, (w >> 16) & 1u, (w >> 24) & 1u); }

#if defined(TYPE_F32)
const uint QK = 4u, QB = 16u;
vec4 dequant4(uint bo, uint i) {
    return uintBitsToFloat(uvec4(ld32(bo), ld32(bo + 4u), ld32(bo + 8u), ld32(bo + 12u)));
}

#elif defined(TYPE_F16)
const uint QK = 4u, QB = 8u;
vec4 dequant4(uint bo, uint i) {
    return vec4(unpackHalf2x16(ld32(bo)), unpackHalf2x16(ld32(bo + 4u)));
}

#elif defined(TYPE_BF16)
const uint QK = 4u, QB = 8u;
vec4 dequant4(uint bo, uint i) {
    uint a = ld32(bo), b = ld32(bo + 4u);
    return uintBitsToFloat(uvec4(a << 16, a & 0xFFFF0000u, b << 16, b & 0xFFFF0000u));
}

#elif defined(TYPE_Q4_0)
// d (fp16) | qs[16]; value i < 16 is the low nibble of qs[i], i >= 16 the high one of qs[i-16].
const uint QK = U(ELM_QK_Q4_0), QB = U(ELM_QB_Q4_0), D_OFF = 0u;
#define SPLIT_TYPE
// bq: the block's body (qs), bd: its d.
vec4 dequant4_bd(uint bq, uint bd, uint i) {
    uint q = (ld32(bq + (i & 15u)) >> ((i & 16u) >> 2)) & 0x0F0F0F0Fu;
    return ldh(bd) * (vec4(bytes4(q)) - 8.0);
}
// Values 4j..4j+3 (j < 8) of the body at bq as 4 packed signed bytes,
// nibble - 8: adding 0x78 and flipping bit 7 maps 0..15 to 0xF8..0x07
// without carries.
uint q_word_i8(uint bq, uint j) {
    uint q = (ld32(bq + 4u * (j & 3u)) >> ((j & 4u) != 0u ? 4u : 0u)) & 0x0F0F0F0Fu;
    return (q + 0x78787878u) ^ 0x80808080u;
}
float q_scale(uint bd) { return ldh(bd); }

#elif defined(TYPE_Q4_1)
// d | m | qs[16]
const uint QK = U(ELM_QK_Q4_1), QB = U(ELM_QB_Q4_1);
vec4 dequant4(uint bo, uint i) {
    uint q = (ld32(bo + U(ELM_OFF_Q4_1_QS) + (i & 15u)) >> ((i & 16u) >> 2)) & 0x0F0F0F0Fu;
    return ldh(bo) * vec4(bytes4(q)) + ldh(bo + U(ELM_OFF_Q4_1_M));
}

#elif defined(TYPE_Q5_0)
// d | qh (u32: bit i is bit 4 of value i) | qs[16]
const uint QK = U(ELM_QK_Q5_0), QB = U(ELM_QB_Q5_0);
vec4 dequant4(uint bo, uint i) {
    uint q = (ld32(bo + U(ELM_OFF_Q5_0_QS) + (i & 15u)) >> ((i & 16u) >> 2)) & 0x0F0F0F0Fu;
    uint h = ld32(bo + U(ELM_OFF_Q5_0_QH)) >> i;
    uvec4 v = bytes4(q) | uvec4(h & 1u, (h >> 1) & 1u, (h >> 2) & 1u, (h >> 3) & 1u) << 4;
    return ldh(bo) * (vec4(v) - 16.0);
}

#elif defined(TYPE_Q5_1)
// d | m | qh | qs[16]
const uint QK = U(ELM_QK_Q5_1), QB = U(ELM_QB_Q5_1);
vec4 dequant4(uint bo, uint i) {
    uint q = (ld32(bo + U(ELM_OFF_Q5_1_QS) + (i & 15u)) >> ((i & 16u) >> 2)) & 0x0F0F0F0Fu;
    uint h = ld32(bo + U(ELM_OFF_Q5_1_QH)) >> i;
    uvec4 v = bytes4(q) | uvec4(h & 1u, (h >> 1) & 1u, (h >> 2) & 1u, (h >> 3) & 1u) << 4;
    return ldh(bo) * vec4(v) + ldh(bo + U(ELM_OFF_Q5_1_M));
}

#elif defined(TYPE_Q8_0)
// d | qs[32] (int8)
const uint QK = U(ELM_QK_Q8_0), QB = U(ELM_QB_Q8_0), D_OFF = 0u;
#define SPLIT_TYPE
vec4 dequant4_bd(uint bq, uint bd, uint i) {
    int w = int(ld32(bq + i));
    ivec4 q = ivec4(bitfieldExtract(w, 0, 8), bitfieldExtract(w, 8, 8), bitfieldExtract(w, 16, 8),
                    bitfieldExtract(w, 24, 8));
    return ldh(bd) * vec4(q);
}
uint q_word_i8(uint bq, uint j) { return ld32(bq + 4u * j); }
float q_scale(uint bd) { return ldh(bd); }

#elif defined(TYPE_Q2_K)
// scales[16] | qs[64] | d | dmin. Value v: bits 2k..2k+1 of qs[32n + v%32],
// n = v/128, k = (v%128)/32; sub-block j = v/16 (scale low nibble, min high).
const uint QK = U(ELM_QK_K), QB = U(ELM_QB_Q2_K);
vec4 dequant4(uint bo, uint i) {
    uint n = i >> 7, k = (i >> 5) & 3u, sc = ld8(bo + (i >> 4));
    uint q = (ld32(bo + U(ELM_OFF_Q2_K_QS) + 32u * n + (i & 31u)) >> (2u * k)) & 0x03030303u;
    float dl = ldh(bo + U(ELM_OFF_Q2_K_D)) * float(sc & 15u);
    float ml = ldh(bo + U(ELM_OFF_Q2_K_DMIN)) * float(sc >> 4);
    return dl * vec4(bytes4(q)) - ml;
}

#elif defined(TYPE_Q3_K)
// hmask[32] | qs[64] | scales[12] | d. Low 2 bits as Q2_K; the value is
// low - 4 unless bit v/32 of hmask[v%32] is set; 6-bit scales offset by 32.
const uint QK = U(ELM_QK_K), QB = U(ELM_QB_Q3_K), SC_OFF = U(ELM_OFF_Q3_K_SCALES);
vec4 dequant4(uint bo, uint i) {
    uint n = i >> 7, k = (i >> 5) & 3u, j = i >> 4;
    uint q = (ld32(bo + U(ELM_OFF_Q3_K_QS) + 32u * n + (i & 31u)) >> (2u * k)) & 0x03030303u;
    uint h = (ld32(bo + (i & 31u)) >> (i >> 5)) & 0x01010101u;
    uint lo = (ld8(bo + SC_OFF + (j & 7u)) >> (4u * (j >> 3))) & 15u;
    uint hi = (ld8(bo + SC_OFF + 8u + (j & 3u)) >> (2u * (j >> 2))) & 3u;
    float dl = ldh(bo + U(ELM_OFF_Q3_K_D)) * float(int(lo | hi << 4) - 32);
    return dl * (vec4(bytes4(q | h << 2)) - 4.0);
}

#elif defined(TYPE_Q4_K) || defined(TYPE_Q5_K)
// d | dmin | scales[12] | (Q5_K: qh[32]) | qs[128]. Sub-block j = v/32 has a
// 6-bit scale and min; its values are the low (j even) or high (j odd)
// nibbles of qs[32(j/2) .. +31]; Q5_K adds bit j of qh[v%32] as bit 4.
#if defined(TYPE_Q4_K)
const uint QK = U(ELM_QK_K), QB = U(ELM_QB_Q4_K), QS_OFF = U(ELM_OFF_Q4_K_QS);
const uint SC_OFF = U(ELM_OFF_Q4_K_SCALES), DMIN_OFF = U(ELM_OFF_Q4_K_DMIN);
#else
const uint QK = U(ELM_QK_K), QB = U(ELM_QB_Q5_K), QS_OFF = U(ELM_OFF_Q5_K_QS);
const uint SC_OFF = U(ELM_OFF_Q5_K_SCALES), DMIN_OFF = U(ELM_OFF_Q5_K_DMIN);
#endif
vec2 scale_min_k4(uint bo, uint j) {
    uint s = bo + SC_OFF;
    if (j < 4u) return vec2(ld8(s + j) & 63u, ld8(s + j + 4u) & 63u);
    uint sc = (ld8(s + j + 4u) & 15u) | ((ld8(s + j - 4u) >> 6) << 4);
    uint mn = (ld8(s + j + 4u) >> 4) | ((ld8(s + j) >> 6) << 4);
    return vec2(sc, mn);
}
vec4 dequant4(uint bo, uint i) {
    uint j = i >> 5;
    uint q = (ld32(bo + QS_OFF + 32u * (j >> 1) + (i & 31u)) >> (4u * (j & 1u))) & 0x0F0F0F0Fu;
#if defined(TYPE_Q5_K)
    q |= ((ld32(bo + U(ELM_OFF_Q5_K_QH) + (i & 31u)) >> j) & 0x01010101u) << 4;
#endif
    vec2 sm = scale_min_k4(bo, j);
    return ldh(bo) * sm.x * vec4(bytes4(q)) - ldh(bo + DMIN_OFF) * sm.y;
}

#elif defined(TYPE_Q6_K)
// ql[128] | qh[64] | scales[16] (int8) | d. Value v = 128n + 32k + l: low
// nibble from ql[64n + 32(k&1) + l] (high nibble when k >= 2), bits 4..5
// from bits 2k.. of qh[32n + l]; x = d * scales[v/16] * (q - 32).
const uint QK = U(ELM_QK_K), QB = U(ELM_QB_Q6_K), D_OFF = U(ELM_OFF_Q6_K_D);
#define SPLIT_TYPE
vec4 dequant4_bd(uint bo, uint bd, uint i) {
    uint n = i >> 7, k = (i >> 5) & 3u, l = i & 31u;
    uint lo = (ld32(bo + 64u * n + 32u * (k & 1u) + l) >> (4u * (k >> 1))) & 0x0F0F0F0Fu;
    uint hi = (ld32(bo + U(ELM_OFF_Q6_K_QH) + 32u * n + l) >> (2u * k)) & 0x03030303u;
    int sc = bitfieldExtract(int(ld8(bo + U(ELM_OFF_Q6_K_SCALES) + (i >> 4))), 0, 8);
    return ldh(bd) * float(sc) * (vec4(bytes4(lo | hi << 4)) - 32.0);
}

#else
#error "blocks.glsl: define one TYPE_*"
#endif

// Groups of four values per block.
const uint QG = QK / 4u;

// Rows in the split layout (backends/vulkan memory.c, vk_weight): for the
// types that define SPLIT_TYPE, every block's fp16 d moves to the end of
// its row, and the rest of each block (its body: the block without d)
// stays in order before it:
//   body 0 | body 1 | ... | body nb-1 | d 0 | d 1 | ... | d nb-1
// so bodies start 4-byte aligned in rows of whole words. WSPLIT (constant
// 7, set by the host for split weights) says binding 0 holds that layout;
// w_nb, blocks per row, is set by the shader's main. A body keeps the
// block's field offsets less the 2 bytes of d where d came first.
layout(constant_id = 7) const uint WSPLIT = 0u;
// WQUAD (constant 8, mat-vecs only): every run of whole 16-byte quads a
// chunk kernel reads starts 16-byte aligned; the dispatch checked the base
// and the row stride for a type whose runs are whole quads (F32, Q4_K,
// Q5_K; split Q4_0, Q8_0, Q6_K: elmi_op_quad_runs). It makes the aligned
// path a constant: 16-byte loads on GPUs, and no branch on the address,
// whose both sides lavapipe would run.
layout(constant_id = 8) const uint WQUAD = 0u;
uint w_nb = 0u;
#if defined(SPLIT_TYPE)
const uint QBODY = QB - 2u, BODY_SKIP = D_OFF == 0u ? 2u : 0u;
uint blk_body(uint rb, uint blk) { return WSPLIT != 0u ? rb + blk * QBODY : rb + blk * QB + BODY_SKIP; }
uint blk_d(uint rb, uint blk) { return WSPLIT != 0u ? rb + w_nb * QBODY + 2u * blk : rb + blk * QB + D_OFF; }
vec4 dequant4r(uint rb, uint blk, uint i) { return dequant4_bd(blk_body(rb, blk), blk_d(rb, blk), i); }
#else
vec4 dequant4r(uint rb, uint blk, uint i) { return dequant4(rb + blk * QB, i); }
#endif
