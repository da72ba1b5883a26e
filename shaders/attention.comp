#version 450
#extension GL_GOOGLE_include_directive : require
// Causal attention with an online softmax over the cache, one workgroup per
// (query head, token). Per tile of WG cache rows, each invocation scores
// one row; the tile's max rescales what was accumulated so far, then each
// invocation folds the tile's weighted V rows into the output dimensions
// it owns. Query head h reads KV head h / (n_head / n_head_kv); query t
// attends rows [0, pos + tok0 + t], pos being a per-call value.
// Cache: CACHE_F32, or CACHE_F16 read as halves (S16) or as 32-bit words
// of two halves. D (specialization constant 2) is the head size.

#include "common/common.glsl"
#include "common/reduce.glsl"

layout(constant_id = 2) const uint D = 64u;
const uint DPT = (D + WG - 1u) / WG; // output dimensions per invocation

layout(std430, binding = 0) readonly buffer QBuf { float q[]; };
layout(std430, binding = 3) writeonly buffer DBuf { float dst[]; };
#if defined(CACHE_F32)
layout(std430, binding = 1) readonly buffer KBuf { float kc[]; };
layout(std430, binding = 2) readonly buffer VBuf { float vc[]; };
float k_at(uint e) { return kc[e]; }
float v_at(uint e) { return vc[e]; }
#elif defined(S16)
#extension GL_EXT_shader_16bit_storage : require
layout(std430, binding = 1) readonly buffer KBuf { float16_t kc[]; };
layout(std430, binding = 2) readonly buffer VBuf { float16_t vc[]; };
float k_at(uint e) { return float(kc[e]); }
float v_at(uint e) { return float(vc[e]); }
#else
layout(std430, binding = 1) readonly buffer KBuf { uint kc[]; };
layout(std430, binding = 2) readonly buffer VBuf { uint vc[]; };
float k_at(uint e) { return unpackHalf2x16(kc[e >> 1])[e & 1u]; }
float v_at(uint e) { return unpackHalf2x16(vc[e >> 1])[e & 1u]; }
#endif

layout(push_constant) uniform Params {
    uint q_base, k_base, v_base, d_base; // elements
    uint n_head, n_head_kv;
    uint q_rs, q_ts;      // floats between heads, between tokens
    uint kv_stride;       // cache elements per row
    uint d_ts;
    uint tok0, dyn_idx;
    float scale;
} p;

shared float q_sh[D];
shared float p_sh[WG];

float score(uint row_base) {
    float s = 0.0;
    for (uint d = 0u; d < D; d++) s += q_sh[d] * k_at(row_base + d);
    return s;
}

void main() {
    uint h = wg_linear(), t = gl_WorkGroupID.z, tid = gl_LocalInvocationIndex;
    if (h >= p.n_head) return;
    uint kvh = h / (p.n_head / p.n_head_kv);
    uint n_kv = uint(dyn[p.dyn_idx]) + p.tok0 + t + 1u;
    uint qb = p.q_base + t * p.q_ts + h * p.q_rs;
    for (uint d = tid; d < D; d += WG) q_sh[d] = q[qb + d] * p.scale;
    barrier();

    float acc[DPT];
    for (uint c = 0u; c < DPT; c++) acc[c] = 0.0;
    float m = -1.0 / 0.0, l = 0.0;
    uint kb = p.k_base + kvh * D, vb = p.v_base + kvh * D;
    for (uint j0 = 0u; j0 < n_kv; j0 += WG) {
        uint j = j0 + tid, n = min(WG, n_kv - j0);
        float s = j < n_kv ? score(kb + j * p.kv_stride) : -1.0 / 0.0;
        float m_new = max(m, wg_max(s));
        float corr = exp(m - m_new);
        float pj = j < n_kv ? exp(s - m_new) : 0.0;
        l = l * corr + wg_sum(pj);
        p_sh[tid] = pj;
        barrier();
        for (uint c = 0u; c < DPT; c++) {
            uint d = tid + c * WG;
            if (d >= D) break;
            float a = acc[c] * corr;
            for (uint jj = 0u; jj < n; jj++) a += p_sh[jj] * v_at(vb + (j0 + jj) * p.kv_stride + d);
            acc[c] = a;
        }
        barrier();
        m = m_new;
    }
    uint ob = p.d_base + t * p.d_ts + h * D;
    for (uint c = 0u; c < DPT; c++) {
        uint d = tid + c * WG;
        if (d < D) dst[ob + d] = acc[c] / l;
    }
}
