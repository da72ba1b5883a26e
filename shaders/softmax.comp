#version 450
#extension GL_GOOGLE_include_directive : require
// dst[r] = softmax(s * x[r]) (BE_OP_SOFTMAX): one workgroup per row, over
// every row of (n, ne1, ne2, ne3) addressed by their strides. Three passes
// over the row: the maximum, the sum of exponentials, the normalized
// values. dst may alias x: each invocation writes only the values it read.

#include "common/common.glsl"
#include "common/reduce.glsl"

layout(std430, binding = 0) readonly buffer XBuf { float x[]; };
layout(std430, binding = 3) buffer DBuf { float dst[]; };

layout(push_constant) uniform Params {
    uint x_base, d_base;
    uint n, n_rows;     // values per row; rows in this dispatch
    uint ne1, ne2;      // rows per dims 1 and 2 in this dispatch
    uint x_s1, x_s2, x_s3, d_s1, d_s2, d_s3; // floats between rows along dims 1..3
    float s;
} p;

void main() {
    uint r = wg_linear();
    if (r >= p.n_rows) return;
    uint xb = p.x_base + row_offset(r, p.ne1, p.ne2, uvec3(p.x_s1, p.x_s2, p.x_s3));
    uint db = p.d_base + row_offset(r, p.ne1, p.ne2, uvec3(p.d_s1, p.d_s2, p.d_s3));
    float m = -3.4028235e38;
    for (uint i = gl_LocalInvocationIndex; i < p.n; i += WG) m = max(m, p.s * x[xb + i]);
    m = wg_max(m);
    float sum = 0.0;
    for (uint i = gl_LocalInvocationIndex; i < p.n; i += WG) sum += exp(p.s * x[xb + i] - m);
    float inv = 1.0 / wg_sum(sum);
    for (uint i = gl_LocalInvocationIndex; i < p.n; i += WG) dst[db + i] = exp(p.s * x[xb + i] - m) * inv;
}
