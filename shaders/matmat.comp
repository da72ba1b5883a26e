#version 450
#extension GL_GOOGLE_include_directive : require
// dst (N, T) = W (K, N) x X (K, T) (+ bias) for T > 1, tiled: a workgroup
// computes a BM (weight rows) x BN (tokens) tile, staging BK-deep slices of
// dequantized weights and of activations in shared memory; each invocation
// accumulates TM x TN outputs in F32. The host picks the tile sizes
// (specialization constants 2..6) so the tiles fit the device's shared
// memory and invocation limits. FP16 (fast graphs on devices with
// shaderFloat16) stages the tiles as halves: half the shared memory, the
// products still accumulated in F32.

#include "common/common.glsl"
#include "common/blocks.glsl"

layout(constant_id = 2) const uint BM = 64u;
layout(constant_id = 3) const uint BN = 64u;
layout(constant_id = 4) const uint BK = 16u;
layout(constant_id = 5) const uint TM = 4u;
layout(constant_id = 6) const uint TN = 4u;

layout(std430, binding = 1) readonly buffer XBuf { float x[]; };
layout(std430, binding = 2) readonly buffer BBuf { float bias[]; };
layout(std430, binding = 3) writeonly buffer DBuf { float dst[]; };

layout(push_constant) uniform Params {
    uint w_base;    // bytes
    uint x_base, b_base, d_base;
    uint K, N, n_tok;
    uint row_bytes;
    uint x_stride, d_stride;
    uint has_bias;
} p;

#if defined(FP16)
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#define STYPE float16_t
// Activations beyond the half range would become infinities.
#define TO_S(v) float16_t(clamp(v, -65504.0, 65504.0))
#else
#define STYPE float
#define TO_S(v) (v)
#endif

shared STYPE a_sh[BK * BM]; // [k][m]
shared STYPE b_sh[BK * BN]; // [k][n]

void load_tiles(uint m0, uint n0, uint k0, uint tid) {
    for (uint e = tid; e < BM * (BK / 4u); e += WG) {
        uint m = e / (BK / 4u), g = e % (BK / 4u), row = m0 + m, k = k0 + 4u * g;
        vec4 v = vec4(0.0);
        if (row < p.N && k < p.K) v = dequant4(p.w_base + row * p.row_bytes + (k / QK) * QB, k % QK);
        for (uint c = 0u; c < 4u; c++) a_sh[(4u * g + c) * BM + m] = TO_S(v[c]);
    }
    for (uint e = tid; e < BN * (BK / 4u); e += WG) {
        uint n = e / (BK / 4u), g = e % (BK / 4u), tok = n0 + n, k = k0 + 4u * g;
        vec4 v = vec4(0.0);
        if (tok < p.n_tok && k < p.K) {
            uint xo = p.x_base + tok * p.x_stride + k;
            v = vec4(x[xo], x[xo + 1u], x[xo + 2u], x[xo + 3u]);
        }
        for (uint c = 0u; c < 4u; c++) b_sh[(4u * g + c) * BN + n] = TO_S(v[c]);
    }
}

void main() {
    uint tid = gl_LocalInvocationIndex;
    uint m0 = gl_WorkGroupID.x * BM, n0 = gl_WorkGroupID.y * BN;
    uint tm = tid % (BM / TM), tn = tid / (BM / TM);
    float acc[TM * TN];
    for (uint i = 0u; i < TM * TN; i++) acc[i] = 0.0;
    for (uint k0 = 0u; k0 < p.K; k0 += BK) {
        load_tiles(m0, n0, k0, tid);
        barrier();
        for (uint k = 0u; k < BK; k++) {
            float a[TM], b[TN];
            for (uint i = 0u; i < TM; i++) a[i] = float(a_sh[k * BM + tm + i * (BM / TM)]);
            for (uint j = 0u; j < TN; j++) b[j] = float(b_sh[k * BN + tn + j * (BN / TN)]);
            for (uint i = 0u; i < TM; i++)
                for (uint j = 0u; j < TN; j++) acc[i * TN + j] += a[i] * b[j];
        }
        barrier();
    }
    for (uint i = 0u; i < TM; i++) {
        uint row = m0 + tm + i * (BM / TM);
        if (row >= p.N) continue;
        float bv = p.has_bias != 0u ? bias[p.b_base + row] : 0.0;
        for (uint j = 0u; j < TN; j++) {
            uint tok = n0 + tn + j * (BN / TN);
            if (tok < p.n_tok) dst[p.d_base + tok * p.d_stride + row] = acc[i * TN + j] + bv;
        }
    }
}
