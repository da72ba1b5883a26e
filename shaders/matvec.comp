#version 450
#extension GL_GOOGLE_include_directive : require
// dst[t][r] = dot(row r of the weights, x[t]) (+ bias[r]), weights in the
// file layout. A workgroup (one subgroup where the device's subgroup is at
// least WG wide) handles ROWS * WG / LPR rows of NT tokens, a row cut into
// chunks (common/matvec_chunk.glsl). With LPR = WG (the default) lane l takes chunks l, l + WG, ... of ROWS rows, loads
// each chunk of x once (vec4 loads where x is 16-byte aligned) for all
// ROWS rows, and the partial sums are reduced once per workgroup: with
// subgroup arithmetic in registers (through shared memory only when the
// workgroup holds several subgroups), otherwise in a shared-memory tree
// over all rows at once. With LPR = 1 a lane owns whole rows and nothing
// is reduced. With NT > 1 (a short prompt, or prefill on a CPU device)
// each chunk of weights is dequantized once for NT tokens, a register-
// blocked product without shared-memory tiles or barriers.

#include "common/common.glsl"
#include "common/blocks.glsl"

layout(constant_id = 2) const uint ROWS = 4u; // rows per lane group
layout(constant_id = 3) const uint LPR = 64u;  // lanes per row: WG or 1
layout(constant_id = 4) const uint NT = 1u;    // tokens per workgroup

layout(std430, binding = 1) readonly buffer XBuf { float x[]; };
layout(std430, binding = 1) readonly buffer XBuf4 { vec4 x4[]; };
#if defined(TEX)
// Binding 1's floats as vec4 texels (the weights: common/blocks.glsl).
layout(binding = 13) uniform samplerBuffer xt;
#endif
layout(std430, binding = 2) readonly buffer BBuf { float bias[]; };
layout(std430, binding = 3) writeonly buffer DBuf { float dst[]; };

layout(push_constant) uniform Params {
    uint w_base;    // bytes
    uint x_base, b_base, d_base; // floats
    uint K, N;      // values per row, rows in this dispatch
    uint row_bytes; // weight row stride
    uint x_stride, d_stride; // floats per token
    uint has_bias;
    uint n_tok;     // tokens in this dispatch
} p;

#include "common/matvec_chunk.glsl"

#if defined(SG)
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
shared float red[ROWS * NT * NSG];
#else
shared float red[ROWS * NT * WG];
#endif

// The activations of one chunk for each token of the workgroup.
vec4 xv[NT * NV];

// Activations of chunk c for token t into xv[o .. o + NV).
void load_x(uint t, uint c, bool v4, uint o) {
    uint xo = p.x_base + t * p.x_stride + c * CH;
#if defined(TEX)
    // The planner takes _tex variants only for 16-byte aligned activation
    // rows; a branch on v4 would run both sides on lavapipe.
    for (uint j = 0u; j < NV; j++) xv[o + j] = texelFetch(xt, int((xo >> 2) + j));
#else
    if (v4) {
        for (uint j = 0u; j < NV; j++) xv[o + j] = x4[(xo >> 2) + j];
    } else {
        for (uint j = 0u; j < NV; j++)
            xv[o + j] = vec4(x[xo + 4u * j], x[xo + 4u * j + 1u], x[xo + 4u * j + 2u], x[xo + 4u * j + 3u]);
    }
#endif
}

// Partial sums of this invocation: acc[r * NT + k] for row r, token t0 + k.
float acc[ROWS * NT];

void main() {
    w_nb = p.K / QK;
    // LPR lanes share each row: WG (lanes split a row's chunks, then
    // reduce) or 1 (a lane owns whole rows; every lane reads the same
    // activations, so no reduction and, on CPU devices, uniform x loads).
    uint lid = gl_LocalInvocationIndex, lane = lid % LPR;
    uint row0 = (wg_linear() * (WG / LPR) + lid / LPR) * ROWS, t0 = gl_WorkGroupID.z * NT;
    uint nc = p.K / CH;
    // Rows past N (the last workgroup) read row N - 1 again, and tokens
    // past n_tok token n_tok - 1, so every invocation stays in the
    // reductions' uniform control flow.
    uint rb[ROWS];
    for (uint r = 0u; r < ROWS; r++) rb[r] = p.w_base + min(row0 + r, p.N - 1u) * p.row_bytes;
    for (uint r = 0u; r < ROWS * NT; r++) acc[r] = 0.0;
    bool v4 = ((p.x_base | p.x_stride) & 3u) == 0u;
    for (uint c = lane; c < nc; c += LPR) {
#if defined(TEX)
        if (NT > 1u) {
            // Several tokens through texel buffers (prefill on lavapipe):
            // registers there are 8-wide vectors, so the live set is one
            // vec4 of each row and of each token at a time, not the whole
            // chunk for every token (which spills to per-lane memory).
            uint v = c * CH, blk = v / QK, i0 = v % QK;
            for (uint j = 0u; j < NV; j++) {
                vec4 w4[ROWS];
                for (uint r = 0u; r < ROWS; r++) w4[r] = dequant4r(rb[r], blk, i0 + 4u * j);
                for (uint k = 0u; k < NT; k++) {
                    uint xo = p.x_base + min(t0 + k, p.n_tok - 1u) * p.x_stride + v + 4u * j;
                    vec4 xk = texelFetch(xt, int(xo >> 2));
                    for (uint r = 0u; r < ROWS; r++) acc[r * NT + k] += dot(w4[r], xk);
                }
            }
            continue;
        }
#endif
        for (uint k = 0u; k < NT; k++) load_x(min(t0 + k, p.n_tok - 1u), c, v4, k * NV);
        if (NT == 1u) {
            vec4 x1[NV];
            for (uint j = 0u; j < NV; j++) x1[j] = xv[j];
            chunk_prep(x1);
            for (uint r = 0u; r < ROWS; r++) acc[r] += chunk_dot(0u, rb[r], c, x1);
        } else {
            // Several tokens: each chunk of weights decoded once for all
            // (in F32, also in the int-dot variants).
            for (uint r = 0u; r < ROWS; r++) {
                vec4 wv[NV];
                chunk_deq(rb[r], c, wv);
                for (uint k = 0u; k < NT; k++) {
                    vec4 a = vec4(0.0);
                    for (uint j = 0u; j < NV; j++) a += wv[j] * xv[k * NV + j];
                    acc[r * NT + k] += a.x + a.y + a.z + a.w;
                }
            }
        }
    }
    if (LPR > 1u) {
#if defined(SG)
        for (uint r = 0u; r < ROWS * NT; r++) acc[r] = subgroupAdd(acc[r]);
        if (gl_NumSubgroups > 1u) {
            if (subgroupElect())
                for (uint r = 0u; r < ROWS * NT; r++) red[r * NSG + gl_SubgroupID] = acc[r];
            barrier();
            for (uint r = 0u; r < ROWS * NT; r++) {
                float s = 0.0;
                for (uint i = 0u; i < gl_NumSubgroups; i++) s += red[r * NSG + i];
                acc[r] = s;
            }
        }
#else
        for (uint r = 0u; r < ROWS * NT; r++) red[r * WG + lid] = acc[r];
        barrier();
        for (uint s = WG / 2u; s > 0u; s >>= 1) {
            if (lid < s)
                for (uint r = 0u; r < ROWS * NT; r++) red[r * WG + lid] += red[r * WG + lid + s];
            barrier();
        }
        for (uint r = 0u; r < ROWS * NT; r++) acc[r] = red[r * WG];
#endif
    }
    if (lane == 0u) {
        for (uint r = 0u; r < ROWS; r++) {
            uint row = row0 + r;
            if (row >= p.N) break;
            for (uint k = 0u; k < NT && t0 + k < p.n_tok; k++) {
                float v = acc[r * NT + k];
                if (p.has_bias != 0u) v += bias[p.b_base + row];
                dst[p.d_base + (t0 + k) * p.d_stride + row] = v;
            }
        }
    }
}
