#version 450
#extension GL_GOOGLE_include_directive : require
// dst[r] = (argmax, max, second max, log-sum-exp) of row r of x: one
// workgroup per row (BE_OP_ARGMAX of backends/backend.h).
//
// Each invocation reads the values i = lid, lid + WG, ... in increasing
// order and keeps its highest value m1 with the lowest index holding it
// (strict >), the highest of its other values m2, and an online sum
// s = sum exp(v - mx) rescaled whenever its running maximum mx grows
// (-inf values add exactly nothing and are skipped, so a row may hold
// masked values). The workgroup then combines the invocations with
// reduce.glsl's max and sum (subgroup or shared-memory variant):
//   M  = max m1
//   I  = the lowest index among invocations whose m1 == M (a max over
//        -index; indices < 2^24 are exact as floats)
//   S2 = max over invocations of (holds I ? m2 : m1): the highest value
//        other than element I (equal to M when M occurs twice)
//   L  = M + log(sum s * exp(mx - M))

#include "common/common.glsl"
#include "common/reduce.glsl"

layout(std430, binding = 0) readonly buffer XBuf { float x[]; };
layout(std430, binding = 3) writeonly buffer DBuf { float dst[]; };

layout(push_constant) uniform Params {
    uint x_base, d_base;
    uint n, n_rows;
    uint x_stride, d_stride;
} p;

const uint NONE = 0xffffffffu;
const float NO_INDEX = -16777216.0; // -2^24: below -index for every valid index

void main() {
    const float NEG_INF = uintBitsToFloat(0xff800000u); // not a constant expression for glslang
    uint r = wg_linear();
    // Uniform per workgroup: every invocation of a workgroup leaves together.
    if (r >= p.n_rows) return;
    uint lid = gl_LocalInvocationIndex, xb = p.x_base + r * p.x_stride;
    float m1 = NEG_INF, m2 = NEG_INF, mx = NEG_INF, s = 0.0;
    uint idx = NONE;
    for (uint i = lid; i < p.n; i += WG) {
        float v = x[xb + i];
        if (idx == NONE || v > m1) {
            m2 = m1;
            m1 = v;
            idx = i;
        } else if (v > m2) {
            m2 = v;
        }
        if (v > mx) {
            s = s * exp(mx - v) + 1.0;
            mx = v;
        } else if (v > NEG_INF) {
            s += exp(v - mx);
        }
    }
    float M = wg_max(m1);
    float I = -wg_max(idx != NONE && m1 == M ? -float(idx) : NO_INDEX);
    float S2 = wg_max(idx != NONE && float(idx) == I ? m2 : m1);
    float total = wg_sum(s > 0.0 ? s * exp(mx - M) : 0.0);
    if (lid == 0u) {
        uint db = p.d_base + r * p.d_stride;
        dst[db] = I;
        dst[db + 1u] = M;
        dst[db + 2u] = S2;
        dst[db + 3u] = M + log(total);
    }
}
