#version 450
#extension GL_GOOGLE_include_directive : require
// Element-wise ops on rows of n floats: OP_ADD dst = a + b,
// OP_SWIGLU dst = silu(a) * b. dst may alias a.

#include "common/common.glsl"

layout(std430, binding = 0) readonly buffer ABuf { float a[]; };
layout(std430, binding = 1) readonly buffer BBuf { float b[]; };
layout(std430, binding = 3) buffer DBuf { float dst[]; };

layout(push_constant) uniform Params {
    uint a_base, b_base, d_base;
    uint n, n_rows;
    uint a_stride, b_stride, d_stride;
} p;

void main() {
    uint i = wg_linear() * WG + gl_LocalInvocationIndex, r = gl_WorkGroupID.z;
    if (i >= p.n) return;
    float x = a[p.a_base + r * p.a_stride + i], y = b[p.b_base + r * p.b_stride + i];
#if defined(OP_ADD)
    dst[p.d_base + r * p.d_stride + i] = x + y;
#else
    dst[p.d_base + r * p.d_stride + i] = x / (1.0 + exp(-x)) * y;
#endif
}
