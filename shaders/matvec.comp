#version 450
#extension GL_GOOGLE_include_directive : require
// dst[t][r] = dot(row r of the weights, x[t]) (+ bias[r]), weights in the
// file layout. A workgroup (one subgroup where the device's subgroup is at
// least WG wide) handles ROWS * WG / LPR rows of one token, a row cut into
// chunks (common/matvec_chunk.glsl). With LPR = WG (the default) lane l takes chunks l, l + WG, ... of ROWS rows, loads
// each chunk of x once (vec4 loads where x is 16-byte aligned) for all
// ROWS rows, and the partial sums are reduced once per workgroup: with
// subgroup arithmetic in registers (through shared memory only when the
// workgroup holds several subgroups), otherwise in a shared-memory tree
// over all rows at once. With LPR = 1 a lane owns whole rows and nothing
// is reduced.

#include "common/common.glsl"
#include "common/blocks.glsl"

layout(constant_id = 2) const uint ROWS = 4u; // rows per lane group
layout(constant_id = 3) const uint LPR = 64u;  // lanes per row: WG or 1

layout(std430, binding = 1) readonly buffer XBuf { float x[]; };
layout(std430, binding = 1) readonly buffer XBuf4 { vec4 x4[]; };
layout(std430, binding = 2) readonly buffer BBuf { float bias[]; };
layout(std430, binding = 3) writeonly buffer DBuf { float dst[]; };

layout(push_constant) uniform Params {
    uint w_base;    // bytes
    uint x_base, b_base, d_base; // floats
    uint K, N;      // values per row, rows in this dispatch
    uint row_bytes; // weight row stride
    uint x_stride, d_stride; // floats per token
    uint has_bias;
} p;

#include "common/matvec_chunk.glsl"

#if defined(SG)
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
shared float red[ROWS * NSG];
#else
shared float red[ROWS * WG];
#endif

void main() {
    // LPR lanes share each row: WG (lanes split a row's chunks, then
    // reduce) or 1 (a lane owns whole rows; every lane reads the same
    // activations, so no reduction and, on CPU devices, uniform x loads).
    uint lid = gl_LocalInvocationIndex, lane = lid % LPR;
    uint row0 = (wg_linear() * (WG / LPR) + lid / LPR) * ROWS, t = gl_WorkGroupID.z;
    uint xb = p.x_base + t * p.x_stride, nc = p.K / CH;
    // Rows past N (the last workgroup) read row N - 1 again, so every
    // invocation stays in the reductions' uniform control flow.
    uint rb[ROWS];
    for (uint r = 0u; r < ROWS; r++) rb[r] = p.w_base + min(row0 + r, p.N - 1u) * p.row_bytes;
    float acc[ROWS];
    for (uint r = 0u; r < ROWS; r++) acc[r] = 0.0;
    bool v4 = ((xb | p.x_stride) & 3u) == 0u;
    for (uint c = lane; c < nc; c += LPR) {
        vec4 xv[NV];
        uint xo = xb + c * CH;
        if (v4) {
            for (uint j = 0u; j < NV; j++) xv[j] = x4[(xo >> 2) + j];
        } else {
            for (uint j = 0u; j < NV; j++)
                xv[j] = vec4(x[xo + 4u * j], x[xo + 4u * j + 1u], x[xo + 4u * j + 2u], x[xo + 4u * j + 3u]);
        }
        chunk_prep(xv);
        for (uint r = 0u; r < ROWS; r++) acc[r] += chunk_dot(0u, rb[r], c, xv);
    }
    if (LPR > 1u) {
#if defined(SG)
        for (uint r = 0u; r < ROWS; r++) acc[r] = subgroupAdd(acc[r]);
        if (gl_NumSubgroups > 1u) {
            if (subgroupElect())
                for (uint r = 0u; r < ROWS; r++) red[r * NSG + gl_SubgroupID] = acc[r];
            barrier();
            for (uint r = 0u; r < ROWS; r++) {
                float s = 0.0;
                for (uint i = 0u; i < gl_NumSubgroups; i++) s += red[r * NSG + i];
                acc[r] = s;
            }
        }
#else
        for (uint r = 0u; r < ROWS; r++) red[r * WG + lid] = acc[r];
        barrier();
        for (uint s = WG / 2u; s > 0u; s >>= 1) {
            if (lid < s)
                for (uint r = 0u; r < ROWS; r++) red[r * WG + lid] += red[r * WG + lid + s];
            barrier();
        }
        for (uint r = 0u; r < ROWS; r++) acc[r] = red[r * WG];
#endif
    }
    if (lane == 0u) {
        for (uint r = 0u; r < ROWS; r++) {
            uint row = row0 + r;
            if (row >= p.N) break;
            float v = acc[r];
            if (p.has_bias != 0u) v += bias[p.b_base + row];
            dst[p.d_base + t * p.d_stride + row] = v;
        }
    }
}
