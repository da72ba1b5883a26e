#version 450
#extension GL_GOOGLE_include_directive : require
// Gated short convolution (BE_OP_SHORTCONV, lfm2). Column t of bcx holds
// b, c and x (n values each). For the tokens t of this dispatch, at
// positions P = pos + tok0 + t (pos a per-call value), in order:
//   state[P % s_rows] = bx = b * x
//   dst[t] = c * sum_{k < L} w[k, i] * state[(P - (L - 1) + k) % s_rows]
// where a position below 0 contributes 0 (its row is never read). One
// invocation per channel i walks the tokens in order: it alone reads and
// writes channel i of the state, so there is no dependency between
// invocations. The host guarantees T + L - 1 <= s_rows, so no position a
// token needs has been overwritten by a later one.

#include "common/common.glsl"

layout(std430, binding = 0) readonly buffer BcxBuf { float bcx[]; };
layout(std430, binding = 1) readonly buffer WBuf { float w[]; };
layout(std430, binding = 2) buffer SBuf { float state[]; };
layout(std430, binding = 3) writeonly buffer DBuf { float dst[]; };

layout(push_constant) uniform Params {
    uint bcx_base, w_base, s_base, d_base;
    uint n, L, n_tok;        // channels, taps, tokens in this dispatch
    uint bcx_stride, d_stride;
    uint s_stride, s_rows;   // state: floats per row, rows of the ring
    uint tok0, dyn_idx;
} p;

void main() {
    uint i = wg_linear() * WG + gl_LocalInvocationIndex;
    if (i >= p.n) return;
    uint pos = uint(dyn[p.dyn_idx]) + p.tok0, sb = p.s_base + i, wb = p.w_base + i * p.L;
    for (uint t = 0u; t < p.n_tok; t++) {
        uint col = p.bcx_base + t * p.bcx_stride, P = pos + t;
        state[sb + (P % p.s_rows) * p.s_stride] = bcx[col + i] * bcx[col + 2u * p.n + i];
        float acc = 0.0;
        for (uint k = 0u; k < p.L; k++) {
            uint back = p.L - 1u - k; // tap k reads position P - back
            if (P >= back) acc += w[wb + k] * state[sb + ((P - back) % p.s_rows) * p.s_stride];
        }
        dst[p.d_base + t * p.d_stride + i] = bcx[col + p.n + i] * acc;
    }
}
