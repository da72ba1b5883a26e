// matvec_chunk.glsl: dot products of weight-row chunks with activations,
// shared by matvec.comp and matvec_fused.comp. Include after
// common/blocks.glsl. A row is cut into chunks of CH values: one block, or
// one 32-value sub-block of a K-quant block, so a lane decodes each scale
// once per chunk. Weight bytes are read as aligned 32-bit words and
// stitched where a field is only 2-byte aligned (never in the split
// layout, common/blocks.glsl).
//
// chunk_prep(xv) once per chunk of activations, then chunk_dot(m, rb, c,
// xv) for each row: chunk c of the row at byte rb of matrix m
// (always 0 unless MV_MULTI), against xv, the chunk's activations.

#if defined(TYPE_F32) || defined(TYPE_F16) || defined(TYPE_BF16)
const uint CH = 4u;
#else
const uint CH = 32u;
#endif
const uint NV = CH / 4u;

// The weights again as 32-bit words, for any storage path: the chunk
// kernels read a 2-byte aligned run of n words as n + 1 aligned loads (the
// last clamped to the buffer) and stitch them, instead of 2n 16-bit loads.
// And as 16-byte quads, for aligned runs (WQUAD, or the split layout).
#if defined(TEX) && defined(MV_MULTI)
// Through texel buffers: matrix 0 those of common/blocks.glsl, matrices 1
// and 2 (bindings 5 and 6) the same two views at 15..18; m is a constant
// at each call.
layout(binding = 15) uniform usamplerBuffer wt_m1;
layout(binding = 16) uniform usamplerBuffer wt1_m1;
layout(binding = 17) uniform usamplerBuffer wt_m2;
layout(binding = 18) uniform usamplerBuffer wt1_m2;
uint ww_at(uint m, uint i) {
    if (m == 0u) return wt_word(i);
    if (m == 1u) return fetch_clamped(wt1_m1, i).x;
    return fetch_clamped(wt1_m2, i).x;
}
uvec4 wq_at(uint m, uint i) {
    if (m == 0u) return fetch_clamped(wt, i);
    if (m == 1u) return fetch_clamped(wt_m1, i);
    return fetch_clamped(wt_m2, i);
}
#elif defined(TEX)
// Through the texel buffers of common/blocks.glsl.
uint ww_at(uint m, uint i) { return wt_word(i); }
uvec4 wq_at(uint m, uint i) { return fetch_clamped(wt, i); }
#else
layout(std430, binding = 0) readonly buffer WWords { uint ww[]; };
layout(std430, binding = 0) readonly buffer WQuads { uvec4 wq[]; };
#endif
#if defined(MV_MULTI) && !defined(TEX)
// Fused dispatches (matvec_fused.comp) read up to three matrices, at
// bindings 0, 5 and 6; m is uniform over the workgroup.
layout(std430, binding = 5) readonly buffer WWords1 { uint ww1[]; };
layout(std430, binding = 6) readonly buffer WWords2 { uint ww2[]; };
layout(std430, binding = 5) readonly buffer WQuads1 { uvec4 wq1[]; };
layout(std430, binding = 6) readonly buffer WQuads2 { uvec4 wq2[]; };
uint ww_at(uint m, uint i) {
    if (m == 0u) return ww[min(i, uint(ww.length()) - 1u)];
    if (m == 1u) return ww1[min(i, uint(ww1.length()) - 1u)];
    return ww2[min(i, uint(ww2.length()) - 1u)];
}
uvec4 wq_at(uint m, uint i) {
    if (m == 0u) return wq[min(i, uint(wq.length()) - 1u)];
    if (m == 1u) return wq1[min(i, uint(wq1.length()) - 1u)];
    return wq2[min(i, uint(wq2.length()) - 1u)];
}
#elif !defined(TEX)
uint ww_at(uint m, uint i) { return ww[min(i, uint(ww.length()) - 1u)]; }
uvec4 wq_at(uint m, uint i) { return wq[min(i, uint(wq.length()) - 1u)]; }
#endif
// The 16-bit field at byte b (2-byte aligned) of matrix m, and as a half.
uint ww16(uint m, uint b) { return (ww_at(m, b >> 2) >> ((b & 2u) * 8u)) & 0xFFFFu; }
float wwh(uint m, uint b) { return unpackHalf2x16(ww16(m, b)).x; }
// Runs of n words: n / 4 16-byte loads where the run is known to start
// 16-byte aligned (WQUAD, a constant) or is found so in the split layout;
// n word loads elsewhere in the split layout (bodies are word-aligned);
// else n + 1 loads stitched at 2-byte offsets (the file layout).
#define WORDS(b, n, out_w)                                                      \
    if ((WQUAD != 0u || (WSPLIT != 0u && ((b) & 15u) == 0u)) && ((n) & 3u) == 0u) { \
        for (uint k_ = 0u; k_ < (n) / 4u; k_++) {                               \
            uvec4 q_ = wq_at(m, ((b) >> 4) + k_);                                \
            out_w[4u * k_] = q_.x, out_w[4u * k_ + 1u] = q_.y;                  \
            out_w[4u * k_ + 2u] = q_.z, out_w[4u * k_ + 3u] = q_.w;             \
        }                                                                       \
    } else if (WSPLIT != 0u) {                                                  \
        for (uint k_ = 0u; k_ < (n); k_++) out_w[k_] = ww_at(m, ((b) >> 2) + k_);  \
    } else {                                                                    \
        uint i0_ = (b) >> 2, a_[(n) + 1u];                                      \
        for (uint k_ = 0u; k_ <= (n); k_++) a_[k_] = ww_at(m, i0_ + k_);           \
        bool odd_ = ((b) & 2u) != 0u;                                           \
        for (uint k_ = 0u; k_ < (n); k_++)                                      \
            out_w[k_] = odd_ ? (a_[k_] >> 16) | (a_[k_ + 1u] << 16) : a_[k_];   \
    }

#if defined(IDOT)
#if !defined(TYPE_Q4_0) && !defined(TYPE_Q8_0) && !defined(TYPE_Q4_K) && !defined(TYPE_Q5_K) && !defined(TYPE_Q6_K)
#error "integer-dot variants exist only for Q4_0, Q8_0, Q4_K, Q5_K and Q6_K"
#endif
// Integer dot products (SPV_KHR_integer_dot_product). glslang here lacks
// GL_EXT_integer_dot_product, so OpSDotAccSat is declared directly:
// acc + the dot of two words of 4 packed signed bytes.
#extension GL_EXT_spirv_intrinsics : require
spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"], capabilities = [6019, 6018], id = 4453)
int sdot_acc(int a, int b, int acc, spirv_literal int packed_4x8);
int idot4(uint w, int xq, int acc) { return sdot_acc(int(w), xq, acc, 0); }

// The chunk's activations as Q8_0 quantizes them (quant/quant_legacy.c):
// d = amax / 127, q = x / d rounded half away from zero, 4 per word; done
// once per chunk for all the rows that read it. cx_s: the sums of q over
// each half, for the weight types with offsets or mins.
int cx_q[8], cx_s[2];
float cx_d;
int pack_i8(ivec4 q) { return (q.x & 255) | (q.y & 255) << 8 | (q.z & 255) << 16 | q.w << 24; }
void chunk_prep(vec4 xv[NV]) {
    vec4 a = abs(xv[0]);
    for (uint j = 1u; j < 8u; j++) a = max(a, abs(xv[j]));
    cx_d = max(max(a.x, a.y), max(a.z, a.w)) / 127.0;
    float id = cx_d != 0.0 ? 1.0 / cx_d : 0.0;
    cx_s[0] = 0, cx_s[1] = 0;
    for (uint j = 0u; j < 8u; j++) {
        vec4 v = xv[j] * id;
        ivec4 q = ivec4(sign(v) * floor(abs(v) + 0.5));
        cx_q[j] = pack_i8(q);
        cx_s[j >> 2] += q.x + q.y + q.z + q.w;
    }
}
#elif defined(TYPE_Q4_0) || defined(TYPE_Q4_1) || defined(TYPE_Q5_0) || defined(TYPE_Q5_1) || defined(TYPE_Q4_K) || \
    defined(TYPE_Q5_K) || defined(TYPE_Q6_K)
// Float path for packed quants: the chunk's activations scaled by the
// inverse place value of each byte of a word (1, 2^-8, 2^-16, 2^-24), so a
// kernel masks a value where it sits (w & 0xF00) and converts it, with no
// shift down (placed()): a mask, a conversion and an FMA per value. The
// scaling is exact (unless an activation is below about 2^-102, where
// 2^-24 of it would be subnormal) and done once per chunk for all rows.
// cx_h: the sums of the chunk's two halves, for offsets and mins, applied
// once per row.
vec4 cx_p[NV];
float cx_h[2];
const vec4 PLACE = vec4(1.0, 1.0 / 256.0, 1.0 / 65536.0, 1.0 / 16777216.0);
void chunk_prep(vec4 xv[NV]) {
    vec4 h0 = vec4(0.0), h1 = vec4(0.0);
    for (uint j = 0u; j < 4u; j++) h0 += xv[j], h1 += xv[j + 4u];
    cx_h[0] = h0.x + h0.y + h0.z + h0.w, cx_h[1] = h1.x + h1.y + h1.z + h1.w;
    for (uint j = 0u; j < NV; j++) cx_p[j] = xv[j] * PLACE;
}
// The bytes of w under mask m, each left at its place value: exact in F32
// while every byte is below 128 (the top one must not set the sign).
vec4 placed(uint w, uint m) {
    return vec4(ivec4(uvec4(w) & (uvec4(m) & uvec4(0xFFu, 0xFF00u, 0xFF0000u, 0xFF000000u))));
}
float hsum(vec4 a) { return a.x + a.y + a.z + a.w; }
#else
void chunk_prep(vec4 xv[NV]) {}
#endif

// Chunk c of the row at byte rb, against xv (the chunk's activations; with
// IDOT, chunk_prep's quantization of them).
#if defined(TYPE_Q4_0)
float chunk_dot(uint m, uint rb, uint c, vec4 xv[NV]) {
    uint w[4];
    WORDS(blk_body(rb, c), 4u, w);
#if defined(IDOT)
    // Nibbles are non-negative bytes as they are; the -8 comes off the sum.
    int s = -8 * (cx_s[0] + cx_s[1]);
    for (uint j = 0u; j < 4u; j++) s = idot4((w[j] >> 4) & 0x0F0F0F0Fu, cx_q[j + 4u], idot4(w[j] & 0x0F0F0F0Fu, cx_q[j], s));
    return wwh(m, blk_d(rb, c)) * cx_d * float(s);
#else
    vec4 acc = vec4(0.0);
    for (uint j = 0u; j < 4u; j++)
        acc += placed(w[j], 0x0F0F0F0Fu) * cx_p[j] + placed(w[j] >> 4, 0x0F0F0F0Fu) * cx_p[j + 4u];
    return wwh(m, blk_d(rb, c)) * (hsum(acc) - 8.0 * (cx_h[0] + cx_h[1]));
#endif
}

#elif defined(TYPE_Q4_1) || defined(TYPE_Q5_0) || defined(TYPE_Q5_1)
// Bits 0..3 of h at bit 0 of bytes 0..3: the product's terms (bit k at
// k + 7i) meet the mask only where i = k, and never carry.
uint spread4(uint h) { return ((h & 0xFu) * 0x00204081u) & 0x01010101u; }
float chunk_dot(uint m, uint rb, uint c, vec4 xv[NV]) {
    uint bo = rb + c * QB, w[4];
#if defined(TYPE_Q4_1)
    WORDS(bo + U(ELM_OFF_Q4_1_QS), 4u, w);
#else
    uint qh[1];
#if defined(TYPE_Q5_0)
    WORDS(bo + U(ELM_OFF_Q5_0_QS), 4u, w);
    WORDS(bo + U(ELM_OFF_Q5_0_QH), 1u, qh);
#else
    WORDS(bo + U(ELM_OFF_Q5_1_QS), 4u, w);
    WORDS(bo + U(ELM_OFF_Q5_1_QH), 1u, qh);
#endif
#endif
    vec4 acc = vec4(0.0);
    for (uint j = 0u; j < 4u; j++) {
#if defined(TYPE_Q4_1)
        acc += placed(w[j], 0x0F0F0F0Fu) * cx_p[j] + placed(w[j] >> 4, 0x0F0F0F0Fu) * cx_p[j + 4u];
#else
        uint lo = (w[j] & 0x0F0F0F0Fu) | spread4(qh[0] >> (4u * j)) << 4;
        uint hi = ((w[j] >> 4) & 0x0F0F0F0Fu) | spread4(qh[0] >> (16u + 4u * j)) << 4;
        acc += placed(lo, 0xFFFFFFFFu) * cx_p[j] + placed(hi, 0xFFFFFFFFu) * cx_p[j + 4u];
#endif
    }
    float sx = cx_h[0] + cx_h[1];
#if defined(TYPE_Q5_0)
    return wwh(m, bo) * (hsum(acc) - 16.0 * sx);
#else
    // m (the block's minimum) follows d in both.
    return wwh(m, bo) * hsum(acc) + wwh(m, bo + 2u) * sx;
#endif
}

#elif defined(TYPE_Q8_0)
float chunk_dot(uint m, uint rb, uint c, vec4 xv[NV]) {
    uint w[8];
    WORDS(blk_body(rb, c), 8u, w);
#if defined(IDOT)
    int s = 0;
    for (uint j = 0u; j < 8u; j++) s = idot4(w[j], cx_q[j], s);
    return wwh(m, blk_d(rb, c)) * cx_d * float(s);
#else
    vec4 acc = vec4(0.0);
    for (uint j = 0u; j < 8u; j++) {
        int v = int(w[j]);
        acc += vec4(bitfieldExtract(v, 0, 8), bitfieldExtract(v, 8, 8), bitfieldExtract(v, 16, 8),
                    bitfieldExtract(v, 24, 8)) * xv[j];
    }
    return wwh(m, blk_d(rb, c)) * (acc.x + acc.y + acc.z + acc.w);
#endif
}

#elif defined(TYPE_Q4_K) || defined(TYPE_Q5_K)
// Sub-block j of 8: one 6-bit scale and min, decoded once. The header
// (d, dmin, scales[12]) is four words. Q5_K adds bit j of qh[l] as bit 4
// of value l of the sub-block.
float chunk_dot(uint m, uint rb, uint c, vec4 xv[NV]) {
    uint bo = rb + (c >> 3) * QB, j = c & 7u, h[4], w[8];
    WORDS(bo, 4u, h);
    WORDS(bo + QS_OFF + 32u * (j >> 1), 8u, w);
    // scales[j & 3], [4 + (j & 3)] and [8 + (j & 3)]: every byte either
    // sub-block half needs, selected without a branch (lavapipe would run
    // both sides) or a dynamically indexed array.
    uint sh8 = 8u * (j & 3u);
    uint a = (h[1] >> sh8) & 0xFFu, b = (h[2] >> sh8) & 0xFFu, e = (h[3] >> sh8) & 0xFFu;
    bool lo4 = j < 4u;
    uint sc = lo4 ? a & 63u : (e & 15u) | ((a >> 6) << 4);
    uint mn = lo4 ? b & 63u : (e >> 4) | ((b >> 6) << 4);
    vec2 dm = unpackHalf2x16(h[0]);
    float dl = dm.x * float(sc), ml = dm.y * float(mn);
    uint sh = 4u * (j & 1u);
#if defined(TYPE_Q5_K)
    uint qh[8];
    WORDS(bo + U(ELM_OFF_Q5_K_QH), 8u, qh);
#endif
    vec4 acc = vec4(0.0);
    int s = 0;
    for (uint i = 0u; i < 8u; i++) {
        uint q = (w[i] >> sh) & 0x0F0F0F0Fu;
#if defined(TYPE_Q5_K)
        q |= ((qh[i] >> j) & 0x01010101u) << 4;
#endif
#if defined(IDOT)
        s = idot4(q, cx_q[i], s);
#else
        acc += placed(q, 0xFFFFFFFFu) * cx_p[i];
#endif
    }
#if defined(IDOT)
    return cx_d * (dl * float(s) - ml * float(cx_s[0] + cx_s[1]));
#else
    return dl * hsum(acc) - ml * (cx_h[0] + cx_h[1]);
#endif
}

#elif defined(TYPE_Q6_K)
// Four 6-bit values of a word of low nibbles and one of high bit pairs.
uint q6(uint lo, uint hi, uint sl, uint shh) { return ((lo >> sl) & 0x0F0F0F0Fu) | ((hi >> shh) & 0x03030303u) << 4; }

// 32 values v0 = 32(c % 8) of a block: two int8 scales, one per 16.
float chunk_dot(uint m, uint rb, uint c, vec4 xv[NV]) {
    uint bo = blk_body(rb, c >> 3), cc = c & 7u, n = cc >> 2, k = cc & 3u, wl[8], wh[8];
    WORDS(bo + 64u * n + 32u * (k & 1u), 8u, wl);
    WORDS(bo + U(ELM_OFF_Q6_K_QH) + 32u * n, 8u, wh);
    uint sl = 4u * (k >> 1), shh = 2u * k;
    int s2 = int(ww16(m, bo + U(ELM_OFF_Q6_K_SCALES) + 2u * cc));
    float d = wwh(m, blk_d(rb, c >> 3));
    float d0 = d * float(bitfieldExtract(s2, 0, 8)), d1 = d * float(bitfieldExtract(s2, 8, 8));
#if defined(IDOT)
    int i0 = -32 * cx_s[0], i1 = -32 * cx_s[1];
    for (uint i = 0u; i < 4u; i++) {
        i0 = idot4(q6(wl[i], wh[i], sl, shh), cx_q[i], i0);
        i1 = idot4(q6(wl[i + 4u], wh[i + 4u], sl, shh), cx_q[i + 4u], i1);
    }
    return cx_d * (d0 * float(i0) + d1 * float(i1));
#else
    vec4 a0 = vec4(0.0), a1 = vec4(0.0);
    for (uint i = 0u; i < 4u; i++) {
        a0 += placed(q6(wl[i], wh[i], sl, shh), 0xFFFFFFFFu) * cx_p[i];
        a1 += placed(q6(wl[i + 4u], wh[i + 4u], sl, shh), 0xFFFFFFFFu) * cx_p[i + 4u];
    }
    return d0 * (hsum(a0) - 32.0 * cx_h[0]) + d1 * (hsum(a1) - 32.0 * cx_h[1]);
#endif
}

#elif defined(TYPE_F32) || defined(TYPE_F16)
float chunk_dot(uint m, uint rb, uint c, vec4 xv[NV]) {
    uint w[QB / 4u];
    WORDS(rb + c * QB, QB / 4u, w);
#if defined(TYPE_F32)
    return dot(uintBitsToFloat(uvec4(w[0], w[1], w[2], w[3])), xv[0]);
#else
    return dot(vec4(unpackHalf2x16(w[0]), unpackHalf2x16(w[1])), xv[0]);
#endif
}

#elif defined(MV_MULTI)
#error "fused mat-vec variants exist only for the types with chunk kernels"
#else
// Every other type: dequant4 over the chunk (binding 0 only).
float chunk_dot(uint m, uint rb, uint c, vec4 xv[NV]) {
    uint v = c * CH, bo = rb + (v / QK) * QB, i0 = v % QK;
    vec4 acc = vec4(0.0);
    for (uint j = 0u; j < NV; j++) acc += dequant4(bo, i0 + 4u * j) * xv[j];
    return acc.x + acc.y + acc.z + acc.w;
}
#endif

// Chunk c of the row at byte rb (matrix 0), dequantized: the multi-token
// path, where each decode serves several tokens.
void chunk_deq(uint rb, uint c, out vec4 wv[NV]) {
    uint v = c * CH, blk = v / QK, i0 = v % QK;
    for (uint j = 0u; j < NV; j++) wv[j] = dequant4r(rb, blk, i0 + 4u * j);
}
