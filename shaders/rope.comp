#version 450
#extension GL_GOOGLE_include_directive : require
// Rotary embedding of x (head_dim, n_head, T), NORM or NEOX pairs, with
// frequency factors and YaRN, following the CPU backend's formulas (see
// backends/cpu/rope.c): for pair i at position p,
//   theta = p * base^(-2i/n_rot) / ff[i] * (freq_scale (1 - ramp) + ramp)
// with ramp the YaRN blend (0 without YaRN), and both cos and sin scaled
// by mscale. One invocation per pair; values past n_rot are copied.

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

const float INV_2PI = 0.15915493667125702;

// Turns per position of pair i.
float pair_turns(uint i) {
    float f = exp2(float(i) * p.log2_theta_scale);
    if (p.has_ff != 0u) f /= ff[p.ff_base + i];
    float mix = p.freq_scale;
    if (p.yarn != 0u) {
        float y = (float(i) - p.corr_low) / max(0.001, p.corr_high - p.corr_low);
        float ramp = (1.0 - clamp(y, 0.0, 1.0)) * p.ext_factor;
        mix = p.freq_scale * (1.0 - ramp) + ramp;
    }
    return f * mix * INV_2PI;
}

void main() {
    uint half_dim = p.head_dim / 2u, s = wg_linear() * WG + gl_LocalInvocationIndex;
    uint t = gl_WorkGroupID.z;
    if (s >= half_dim * p.n_head) return;
    uint h = s / half_dim, i = s % half_dim;
    uint xb = p.x_base + t * p.x_ts + h * p.x_rs, db = p.d_base + t * p.d_ts + h * p.d_rs;
    if (i >= p.n_rot / 2u) {
        float x0 = x[xb + 2u * i], x1 = x[xb + 2u * i + 1u];
        dst[db + 2u * i] = x0;
        dst[db + 2u * i + 1u] = x1;
        return;
    }
    int pos = positions[p.pos_base + t];
    vec2 cs = cos_sin_turns(pos_turns(uint(abs(pos)), pair_turns(i))) * p.mscale;
    if (pos < 0) cs.y = -cs.y;
    uint a = p.neox != 0u ? i : 2u * i, b = p.neox != 0u ? i + p.n_rot / 2u : 2u * i + 1u;
    float x0 = x[xb + a], x1 = x[xb + b];
    dst[db + a] = x0 * cs.x - x1 * cs.y;
    dst[db + b] = x0 * cs.y + x1 * cs.x;
}
