#version 450
#extension GL_GOOGLE_include_directive : require
// dst[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w: one workgroup per row, over
// every row of (n, ne1, ne2, ne3) (whole embeddings (n_embd, T), or each
// head of a (head_dim, n_head, T) view), rows addressed by their strides.

#include "common/common.glsl"
#include "common/reduce.glsl"

layout(std430, binding = 0) readonly buffer XBuf { float x[]; };
layout(std430, binding = 1) readonly buffer WBuf { float w[]; };
layout(std430, binding = 3) buffer DBuf { float dst[]; }; // may alias x

layout(push_constant) uniform Params {
    uint x_base, w_base, d_base;
    uint n, n_rows;     // values per row; rows in this dispatch
    uint ne1, ne2;      // rows per dims 1 and 2 in this dispatch
    uint x_s1, x_s2, x_s3, d_s1, d_s2, d_s3; // floats between rows along dims 1..3
    float eps;
} p;

void main() {
    uint r = wg_linear();
    if (r >= p.n_rows) return;
    uint xb = p.x_base + row_offset(r, p.ne1, p.ne2, uvec3(p.x_s1, p.x_s2, p.x_s3));
    uint db = p.d_base + row_offset(r, p.ne1, p.ne2, uvec3(p.d_s1, p.d_s2, p.d_s3));
    float ss = 0.0;
    for (uint i = gl_LocalInvocationIndex; i < p.n; i += WG) ss += x[xb + i] * x[xb + i];
    ss = wg_sum(ss);
    float scale = inversesqrt(ss / float(p.n) + p.eps);
    for (uint i = gl_LocalInvocationIndex; i < p.n; i += WG) dst[db + i] = x[xb + i] * scale * w[p.w_base + i];
}
