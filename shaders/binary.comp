#version 450
#extension GL_GOOGLE_include_directive : require
// Element-wise ops on rows of n floats: OP_ADD dst = a + b; OP_MUL
// dst = a * b (b_stride 0 broadcasts one row of b); otherwise the
// gated linear unit dst = act(a) * b (BE_OP_GLU), act = silu (act 0,
// BE_GLU_SILU) or gelu with the tanh approximation (act 1,
// BE_GLU_GELU_TANH). dst may alias a or b: each invocation reads its two
// values before writing the one.

#include "common/common.glsl"
#include "common/act.glsl"

layout(std430, binding = 0) readonly buffer ABuf { float a[]; };
layout(std430, binding = 1) readonly buffer BBuf { float b[]; };
layout(std430, binding = 3) buffer DBuf { float dst[]; };

layout(push_constant) uniform Params {
    uint a_base, b_base, d_base;
    uint n, n_rows;
    uint a_stride, b_stride, d_stride;
    uint act; // GLU only: 0 silu, 1 gelu (tanh)
} p;

void main() {
    uint i = wg_linear() * WG + gl_LocalInvocationIndex, r = gl_WorkGroupID.z;
    if (i >= p.n) return;
    float x = a[p.a_base + r * p.a_stride + i], y = b[p.b_base + r * p.b_stride + i];
#if defined(OP_ADD)
    dst[p.d_base + r * p.d_stride + i] = x + y;
#elif defined(OP_MUL)
    dst[p.d_base + r * p.d_stride + i] = x * y;
#else
    dst[p.d_base + r * p.d_stride + i] = glu_act(x, p.act) * y;
#endif
}
