#version 450
#extension GL_GOOGLE_include_directive : require
// dst = s * x over every row of (n, ne1, ne2, ne3), then, when softcap > 0,
// dst = softcap * tanh(dst / softcap) (BE_OP_SCALE). Workgroups cover the
// rows in blocks of WG values (g = row * blocks + block). dst may alias x.

#include "common/common.glsl"
#include "common/tanh.glsl"

layout(std430, binding = 0) readonly buffer XBuf { float x[]; };
layout(std430, binding = 3) buffer DBuf { float dst[]; };

layout(push_constant) uniform Params {
    uint x_base, d_base;
    uint n, n_rows;     // values per row; rows in this dispatch
    uint ne1, ne2;      // rows per dims 1 and 2 in this dispatch
    uint x_s1, x_s2, x_s3, d_s1, d_s2, d_s3; // floats between rows along dims 1..3
    float s, softcap;
} p;

void main() {
    uint blocks = (p.n + WG - 1u) / WG, g = wg_linear(), r = g / blocks;
    uint i = (g % blocks) * WG + gl_LocalInvocationIndex;
    if (r >= p.n_rows || i >= p.n) return;
    uint xo = p.x_base + row_offset(r, p.ne1, p.ne2, uvec3(p.x_s1, p.x_s2, p.x_s3)) + i;
    float v = p.s * x[xo];
    if (p.softcap > 0.0) v = p.softcap * tanh_safe(v / p.softcap);
    dst[p.d_base + row_offset(r, p.ne1, p.ne2, uvec3(p.d_s1, p.d_s2, p.d_s3)) + i] = v;
}
