#version 450
#extension GL_GOOGLE_include_directive : require
// dst[t][r] = dot(row r of the weights, x[t]) (+ bias[r]): one workgroup per
// weight row and token; invocations walk the row four values at a time, so
// neighbours read neighbouring words of a block, then reduce.

#include "common/common.glsl"
#include "common/blocks.glsl"
#include "common/reduce.glsl"

layout(std430, binding = 1) readonly buffer XBuf { float x[]; };
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

void main() {
    uint row = wg_linear(), t = gl_WorkGroupID.z;
    if (row >= p.N) return;
    uint rb = p.w_base + row * p.row_bytes, xb = p.x_base + t * p.x_stride;
    float acc = 0.0;
    for (uint g = gl_LocalInvocationIndex; g < p.K / 4u; g += WG) {
        uint bo = rb + (g / QG) * QB, xo = xb + 4u * g;
        vec4 w = dequant4(bo, (g % QG) * 4u);
        acc += dot(w, vec4(x[xo], x[xo + 1u], x[xo + 2u], x[xo + 3u]));
    }
    acc = wg_sum(acc);
    if (gl_LocalInvocationIndex == 0u) {
        if (p.has_bias != 0u) acc += bias[p.b_base + row];
        dst[p.d_base + t * p.d_stride + row] = acc;
    }
}
