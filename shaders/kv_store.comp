#version 450
#extension GL_GOOGLE_include_directive : require
// cache row (pos + tok0 + t) % ring_rows = x[t] (x (n, T)), converted to
// the cache type (ring_rows = 0xffffffff without a ring cache):
// CACHE_F32, or CACHE_F16 written as halves (S16) or as pairs of halves in
// 32-bit words (without 16-bit storage; n, strides and bases even).
// pos is a per-call value (dyn[dyn_idx]) so the dispatch can be replayed.

#include "common/common.glsl"
#include "common/half.glsl"

layout(std430, binding = 0) readonly buffer XBuf { float x[]; };
#if defined(CACHE_F32)
layout(std430, binding = 3) writeonly buffer DBuf { float cache[]; };
#elif defined(S16)
#extension GL_EXT_shader_16bit_storage : require
layout(std430, binding = 3) writeonly buffer DBuf { uint16_t cache[]; };
#else
layout(std430, binding = 3) writeonly buffer DBuf { uint cache[]; };
#endif

layout(push_constant) uniform Params {
    uint x_base, d_base;   // floats; cache elements
    uint n;                // values per row
    uint x_stride, d_stride;
    uint tok0, dyn_idx;
    uint ring_rows;
} p;

void main() {
    uint i = wg_linear() * WG + gl_LocalInvocationIndex, t = gl_WorkGroupID.z;
    uint row = (uint(dyn[p.dyn_idx]) + p.tok0 + t) % p.ring_rows;
    uint xo = p.x_base + t * p.x_stride, co = p.d_base + row * p.d_stride;
#if defined(CACHE_F16) && !defined(S16)
    if (2u * i >= p.n) return;
    uint lo = f32_to_f16_rne(x[xo + 2u * i]), hi = f32_to_f16_rne(x[xo + 2u * i + 1u]);
    cache[(co >> 1) + i] = lo | (hi << 16);
#else
    if (i >= p.n) return;
#if defined(CACHE_F32)
    cache[co + i] = x[xo + i];
#else
    cache[co + i] = uint16_t(f32_to_f16_rne(x[xo + i]));
#endif
#endif
}
