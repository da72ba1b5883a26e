#version 450
#extension GL_GOOGLE_include_directive : require
// Rotary embedding of x (head_dim, n_head, T), NORM or NEOX pairs, with
// frequency factors and YaRN (common/rope_pair.glsl). One invocation per
// pair; values past n_rot are copied.

#include "common/common.glsl"
#include "common/rope_angle.glsl"

layout(std430, binding = 0) readonly buffer XBuf { float x[]; };
layout(std430, binding = 1) readonly buffer PosBuf { int positions[]; };
layout(std430, binding = 2) readonly buffer FBuf { float ff[]; };
layout(std430, binding = 3) buffer DBuf { float dst[]; }; // may alias x

layout(push_constant) uniform Params {
    uint x_base, pos_base, ff_base, d_base;
    uint head_dim, n_head;
    uint x_rs, x_ts, d_rs, d_ts; // floats between heads, between tokens
    uint neox, n_rot, has_ff, yarn;
    float log2_theta_scale, freq_scale, ext_factor, corr_low, corr_high, mscale;
} p;

#include "common/rope_pair.glsl"

void main() {
    uint half_dim = p.head_dim / 2u, s = wg_linear() * WG + gl_LocalInvocationIndex;
    uint t = gl_WorkGroupID.z;
    if (s >= half_dim * p.n_head) return;
    uint h = s / half_dim, i = s % half_dim;
    uint xb = p.x_base + t * p.x_ts + h * p.x_rs, db = p.d_base + t * p.d_ts + h * p.d_rs;
    uvec2 e = pair_elems(i);
    int pos = pair_rotated(i) ? positions[p.pos_base + t] : 0;
    vec2 y = pair_rotate(i, pos, vec2(x[xb + e.x], x[xb + e.y]));
    dst[db + e.x] = y.x;
    dst[db + e.y] = y.y;
}
