#version 450
#extension GL_GOOGLE_include_directive : require
// dst (N, T) = W (K, N) x X (K, T) (+ bias) for T > 1, register-blocked: a
// workgroup computes a BM (weight rows) x BN (tokens) tile; each invocation
// owns TM consecutive rows x TN consecutive tokens (TM, TN multiples of 4)
// and accumulates them in F32 registers. BK-deep slices of dequantized
// weights and of activations are staged in shared memory as vec4s along the
// row / token axis, so an invocation reads one vec4 of weights and TN/4
// vec4s of activations per k for TM * TN products (today's GPUs: 4 FMAs per
// loaded value). Each slice row is padded by one vec4, which spreads the
// transposing stores over the banks. The host picks the tile (constants
// 2..6) to fit the device's shared memory and invocation limits. FP16 (fast
// graphs on devices with shaderFloat16) stages halves: half the shared
// memory, the products still accumulated in F32. FP16A (with FP16) also
// multiplies in halves: f16vec4 partial sums over HK = 8 values of k,
// added into the F32 accumulators, which bounds their rounding.
// IDOT (Q4_0, Q8_0): integer dot products, see the end of the file.

#include "common/common.glsl"
#include "common/blocks.glsl"

layout(constant_id = 2) const uint BM = 64u;
layout(constant_id = 3) const uint BN = 64u;
layout(constant_id = 4) const uint BK = 16u;
layout(constant_id = 5) const uint TM = 4u;
layout(constant_id = 6) const uint TN = 8u;

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

#if defined(IDOT)
#include "common/matmat_idot.glsl"
#else

#if defined(FP16A) && !defined(FP16)
#error "FP16A multiplies the halves FP16 stages"
#endif
#if defined(FP16)
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#define SVEC f16vec4
// FP16A: products summed in halves over HK consecutive k (BK is a
// multiple), then in F32. Over a whole 32-deep slice the F16 sums moved
// stories260K-f16's fast logits by 0.063 (the model tests allow 0.05).
const uint HK = 8u;
// Activations beyond the half range would become infinities.
#define TO_S(v) f16vec4(clamp(v, vec4(-65504.0), vec4(65504.0)))
#else
#define SVEC vec4
#define TO_S(v) (v)
#endif

const uint AS = BM / 4u + 1u; // vec4s per padded slice row
const uint BS = BN / 4u + 1u;
shared SVEC a_sh[BK * AS]; // [k][m / 4]
shared SVEC b_sh[BK * BS]; // [k][n / 4]

// A 4 x 4 block: four consecutive k (a vec4 of one weight row, or of one
// token) for four rows (tokens), transposed into four slice rows k..k+3 of
// vec4s along the rows (tokens).
void load_tiles(uint m0, uint n0, uint k0, uint tid) {
    for (uint e = tid; e < (BM / 4u) * (BK / 4u); e += WG) {
        uint mq = e / (BK / 4u), g = e % (BK / 4u), k = k0 + 4u * g;
        vec4 v[4];
        for (uint c = 0u; c < 4u; c++) {
            uint row = m0 + 4u * mq + c;
            v[c] = row < p.N && k < p.K ? dequant4r(p.w_base + row * p.row_bytes, k / QK, k % QK)
                                        : vec4(0.0);
        }
        for (uint r = 0u; r < 4u; r++)
            a_sh[(4u * g + r) * AS + mq] = TO_S(vec4(v[0][r], v[1][r], v[2][r], v[3][r]));
    }
    for (uint e = tid; e < (BN / 4u) * (BK / 4u); e += WG) {
        uint nq = e / (BK / 4u), g = e % (BK / 4u), k = k0 + 4u * g;
        vec4 v[4];
        for (uint c = 0u; c < 4u; c++) {
            uint tok = n0 + 4u * nq + c, xo = p.x_base + tok * p.x_stride + k;
            v[c] = tok < p.n_tok && k < p.K ? vec4(x[xo], x[xo + 1u], x[xo + 2u], x[xo + 3u]) : vec4(0.0);
        }
        for (uint r = 0u; r < 4u; r++)
            b_sh[(4u * g + r) * BS + nq] = TO_S(vec4(v[0][r], v[1][r], v[2][r], v[3][r]));
    }
}

void main() {
    w_nb = p.K / QK;
    uint tid = gl_LocalInvocationIndex;
    uint m0 = gl_WorkGroupID.x * BM, n0 = gl_WorkGroupID.y * BN;
    uint tm = tid % (BM / TM), tn = tid / (BM / TM);
    vec4 acc[TM * (TN / 4u)]; // [row][token / 4]
    for (uint i = 0u; i < TM * (TN / 4u); i++) acc[i] = vec4(0.0);
    for (uint k0 = 0u; k0 < p.K; k0 += BK) {
        load_tiles(m0, n0, k0, tid);
        barrier();
#if defined(FP16A)
        for (uint kh = 0u; kh < BK; kh += HK) {
            f16vec4 hacc[TM * (TN / 4u)];
            for (uint i = 0u; i < TM * (TN / 4u); i++) hacc[i] = f16vec4(0.0hf);
            for (uint k = kh; k < kh + HK; k++) {
                f16vec4 b[TN / 4u];
                for (uint j = 0u; j < TN / 4u; j++) b[j] = b_sh[k * BS + tn * (TN / 4u) + j];
                for (uint i = 0u; i < TM / 4u; i++) {
                    f16vec4 a = a_sh[k * AS + tm * (TM / 4u) + i];
                    for (uint r = 0u; r < 4u; r++)
                        for (uint j = 0u; j < TN / 4u; j++) {
                            uint o = (4u * i + r) * (TN / 4u) + j;
                            hacc[o] = fma(f16vec4(a[r]), b[j], hacc[o]);
                        }
                }
            }
            for (uint i = 0u; i < TM * (TN / 4u); i++) acc[i] += vec4(hacc[i]);
        }
#else
        for (uint k = 0u; k < BK; k++) {
            vec4 b[TN / 4u];
            for (uint j = 0u; j < TN / 4u; j++) b[j] = vec4(b_sh[k * BS + tn * (TN / 4u) + j]);
            for (uint i = 0u; i < TM / 4u; i++) {
                vec4 a = vec4(a_sh[k * AS + tm * (TM / 4u) + i]);
                for (uint r = 0u; r < 4u; r++)
                    for (uint j = 0u; j < TN / 4u; j++) acc[(4u * i + r) * (TN / 4u) + j] += a[r] * b[j];
            }
        }
#endif
        barrier();
    }
    for (uint i = 0u; i < TM; i++) {
        uint row = m0 + tm * TM + i;
        if (row >= p.N) continue;
        float bv = p.has_bias != 0u ? bias[p.b_base + row] : 0.0;
        for (uint j = 0u; j < TN; j++) {
            uint tok = n0 + tn * TN + j;
            if (tok < p.n_tok) dst[p.d_base + tok * p.d_stride + row] = acc[i * (TN / 4u) + j / 4u][j % 4u] + bv;
        }
    }
}
#endif
