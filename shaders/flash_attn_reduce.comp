#version 450
#extension GL_GOOGLE_include_directive : require
// The reduce pass of a split flash attention (flash_attn.comp with
// n_split > 1): one workgroup per (token, query head) row. Split s left
// acc_s (D floats, unnormalized), m_s and l_s (m_s = the sentinel and
// l_s = 0 for a chunk the row saw no key of); the output is
// sum_s w_s acc_s / sum_s w_s l_s with w_s = exp(m_s - max m). The max and
// the sum over splits are workgroup reductions (subgroup arithmetic with
// SG), so n_split <= WG.

#include "common/common.glsl"
#include "common/reduce.glsl"

layout(constant_id = 2) const uint D = 64u;

layout(std430, binding = 0) readonly buffer SBuf { float sc[]; };
layout(std430, binding = 3) writeonly buffer DBuf { float dst[]; };

layout(push_constant) uniform Params {
    uint s_base, d_base;  // floats
    uint n_head, n_rows;  // rows = tokens * n_head
    uint d_ts;            // floats between tokens of dst
    uint n_split;
    uint ml_base;         // floats of the scratch before (m, l) pairs
} p;

const float NEG_INF = -3.0e38;
shared float w_sh[WG];

void main() {
    uint row = wg_linear(), tid = gl_LocalInvocationIndex;
    if (row >= p.n_rows) return;
    float m = NEG_INF, l = 0.0;
    if (tid < p.n_split) {
        uint b = p.s_base + p.ml_base + (tid * p.n_rows + row) * 2u;
        m = sc[b];
        l = sc[b + 1u];
    }
    float mx = wg_max(m);
    float w = m == NEG_INF ? 0.0 : exp(m - mx);
    float L = wg_sum(w * l);
    w_sh[tid] = w;
    barrier();
    uint t = row / p.n_head, h = row % p.n_head;
    for (uint d = tid; d < D; d += WG) {
        float a = 0.0;
        for (uint s = 0u; s < p.n_split; s++) {
            float ws = w_sh[s];
            if (ws != 0.0) a += ws * sc[p.s_base + (s * p.n_rows + row) * D + d];
        }
        dst[p.d_base + t * p.d_ts + h * D + d] = a / L;
    }
}
