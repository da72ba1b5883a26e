#version 450
#extension GL_GOOGLE_include_directive : require
// dst[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w: one workgroup per row.

#include "common/common.glsl"
#include "common/reduce.glsl"

layout(std430, binding = 0) readonly buffer XBuf { float x[]; };
layout(std430, binding = 1) readonly buffer WBuf { float w[]; };
layout(std430, binding = 3) buffer DBuf { float dst[]; }; // may alias x

layout(push_constant) uniform Params {
    uint x_base, w_base, d_base;
    uint n, n_rows;
    uint x_stride, d_stride;
    float eps;
} p;

void main() {
    uint r = wg_linear();
    if (r >= p.n_rows) return;
    uint xb = p.x_base + r * p.x_stride, db = p.d_base + r * p.d_stride;
    float ss = 0.0;
    for (uint i = gl_LocalInvocationIndex; i < p.n; i += WG) ss += x[xb + i] * x[xb + i];
    ss = wg_sum(ss);
    float scale = inversesqrt(ss / float(p.n) + p.eps);
    for (uint i = gl_LocalInvocationIndex; i < p.n; i += WG) dst[db + i] = x[xb + i] * scale * w[p.w_base + i];
}
