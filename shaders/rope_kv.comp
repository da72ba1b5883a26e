#version 450
#extension GL_GOOGLE_include_directive : require
// ROPE q, ROPE k, KV_STORE K <- k, KV_STORE V <- v in one dispatch, for the
// tokens of workgroup row z: q (head_dim, n_head) and k (head_dim,
// n_head_kv, heads dense) rotated in place as rope.comp does
// (common/rope_pair.glsl), the rotated k and v (v_n values) written to cache
// rows (dyn[k_dyn or v_dyn] + tok0 + t) % ring_rows, converted as
// kv_store.comp does: CACHE_F32, or CACHE_F16 as halves (S16) or as pairs of
// halves in 32-bit words (without 16-bit storage; rows, strides and bases
// even, and n_rot a multiple of 4 for NEOX). Invocations along x: q pairs,
// then k pairs, then v values (v words).

#include "common/common.glsl"
#include "common/half.glsl"
#include "common/rope_angle.glsl"

layout(std430, binding = 0) buffer QBuf { float q[]; };
layout(std430, binding = 1) readonly buffer PosBuf { int positions[]; };
layout(std430, binding = 2) readonly buffer FBuf { float ff[]; };
layout(std430, binding = 3) buffer KBuf { float k[]; };
layout(std430, binding = 5) readonly buffer VBuf { float v[]; };
#if defined(CACHE_F32)
layout(std430, binding = 6) writeonly buffer KCBuf { float kc[]; };
layout(std430, binding = 7) writeonly buffer VCBuf { float vc[]; };
#elif defined(S16)
#extension GL_EXT_shader_16bit_storage : require
layout(std430, binding = 6) writeonly buffer KCBuf { uint16_t kc[]; };
layout(std430, binding = 7) writeonly buffer VCBuf { uint16_t vc[]; };
#else
#define WORDS
layout(std430, binding = 6) writeonly buffer KCBuf { uint kc[]; };
layout(std430, binding = 7) writeonly buffer VCBuf { uint vc[]; };
#endif

layout(push_constant) uniform Params {
    uint q_base, pos_base, ff_base, k_base, v_base, kc_base, vc_base; // floats; cache elements
    uint head_dim, n_head, n_head_kv, v_n;
    uint q_rs, q_ts, k_ts, v_ts, kc_stride, vc_stride;
    uint tok0, k_dyn, v_dyn, ring_rows;
    uint neox, n_rot, has_ff, yarn;
    float log2_theta_scale, freq_scale, ext_factor, corr_low, corr_high, mscale;
} p;

#include "common/rope_pair.glsl"

uint cache_row(uint slot, uint t) { return (uint(dyn[slot]) + p.tok0 + t) % p.ring_rows; }

void rope_q(uint h, uint i, uint t) {
    if (!pair_rotated(i)) return; // in place: the copy past n_rot changes nothing
    uint b = p.q_base + t * p.q_ts + h * p.q_rs;
    uvec2 e = pair_elems(i);
    vec2 y = pair_rotate(i, positions[p.pos_base + t], vec2(q[b + e.x], q[b + e.y]));
    q[b + e.x] = y.x;
    q[b + e.y] = y.y;
}

// Rotates pair i of k's head h in place; returns the values.
vec2 rope_k(uint h, uint i, uint t) {
    uint b = p.k_base + t * p.k_ts + h * p.head_dim;
    uvec2 e = pair_elems(i);
    vec2 x = vec2(k[b + e.x], k[b + e.y]);
    if (!pair_rotated(i)) return x;
    vec2 y = pair_rotate(i, positions[p.pos_base + t], x);
    k[b + e.x] = y.x;
    k[b + e.y] = y.y;
    return y;
}

#ifdef WORDS
uint f16_word(float lo, float hi) { return f32_to_f16_rne(lo) | (f32_to_f16_rne(hi) << 16); }

// A word holds values 2m and 2m + 1: NORM pairs and the copied ones are
// words; a NEOX pair is not, so even pair i also takes pair i + 1.
void store_k(uint h, uint i, uint t) {
    uint c = (p.kc_base + cache_row(p.k_dyn, t) * p.kc_stride + h * p.head_dim) >> 1;
    if (p.neox != 0u && pair_rotated(i)) {
        if ((i & 1u) != 0u) return;
        vec2 a = rope_k(h, i, t), b = rope_k(h, i + 1u, t);
        kc[c + i / 2u] = f16_word(a.x, b.x);
        kc[c + (i + p.n_rot / 2u) / 2u] = f16_word(a.y, b.y);
        return;
    }
    vec2 y = rope_k(h, i, t);
    kc[c + i] = f16_word(y.x, y.y);
}

void store_v(uint i, uint t) {
    if (2u * i >= p.v_n) return;
    uint x = p.v_base + t * p.v_ts + 2u * i;
    vc[((p.vc_base + cache_row(p.v_dyn, t) * p.vc_stride) >> 1) + i] = f16_word(v[x], v[x + 1u]);
}
#else
#if defined(CACHE_F32)
#define TO_CACHE(f) (f)
#else
#define TO_CACHE(f) uint16_t(f32_to_f16_rne(f))
#endif

void store_k(uint h, uint i, uint t) {
    uint c = p.kc_base + cache_row(p.k_dyn, t) * p.kc_stride + h * p.head_dim;
    uvec2 e = pair_elems(i);
    vec2 y = rope_k(h, i, t);
    kc[c + e.x] = TO_CACHE(y.x);
    kc[c + e.y] = TO_CACHE(y.y);
}

void store_v(uint i, uint t) {
    if (i >= p.v_n) return;
    vc[p.vc_base + cache_row(p.v_dyn, t) * p.vc_stride + i] = TO_CACHE(v[p.v_base + t * p.v_ts + i]);
}
#endif

void main() {
    uint s = wg_linear() * WG + gl_LocalInvocationIndex, t = gl_WorkGroupID.z;
    uint half_dim = p.head_dim / 2u, nq = half_dim * p.n_head, nk = half_dim * p.n_head_kv;
    if (s < nq) rope_q(s / half_dim, s % half_dim, t);
    else if (s < nq + nk) store_k((s - nq) / half_dim, (s - nq) % half_dim, t);
    else store_v(s - nq - nk, t);
}
