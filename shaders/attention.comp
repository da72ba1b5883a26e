#version 450
#extension GL_GOOGLE_include_directive : require
// Causal attention with an online softmax over the cache, one workgroup per
// (query head, token). Per tile of WG cache rows, each invocation scores
// one row; the tile's max rescales what was accumulated so far, then each
// invocation folds the tile's weighted V rows into the output dimensions
// it owns. Query head h reads KV head h / (n_head / n_head_kv); query t at
// position P = pos + tok0 + t (pos a per-call value) attends the key
// positions [lo, P], lo = 0 or, with a sliding window, max(0, P - window + 1),
// so the work per query is bounded by the window. Key position j is cache
// row j % ring_rows (ring_rows = 0xffffffff without a ring cache); the
// host guarantees window <= ring_rows, so a tile wraps at most once.
// Scores s = scale * q.k, then softcap * tanh(s / softcap) when softcap > 0.
// Cache: CACHE_F32, or CACHE_F16 read as halves (S16) or as 32-bit words
// of two halves. D (specialization constant 2) is the head size.

#include "common/common.glsl"
#include "common/reduce.glsl"
#include "common/tanh.glsl"

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
    uint window;          // 0: none
    uint ring_rows;       // cache rows of a ring cache, 0xffffffff without
    float scale;          // applied to q
    float softcap;        // 0: none
} p;

shared float q_sh[D];
shared float p_sh[WG];

float score(uint row_base) {
    float s = 0.0;
    for (uint d = 0u; d < D; d++) s += q_sh[d] * k_at(row_base + d);
    return s;
}

// Cache row of key position j.
uint row_of(uint j) { return j % p.ring_rows; }

void main() {
    uint h = wg_linear(), t = gl_WorkGroupID.z, tid = gl_LocalInvocationIndex;
    if (h >= p.n_head) return;
    uint kvh = h / (p.n_head / p.n_head_kv);
    uint P = uint(dyn[p.dyn_idx]) + p.tok0 + t, end = P + 1u;
    uint lo = p.window != 0u && P >= p.window ? P + 1u - p.window : 0u;
    uint qb = p.q_base + t * p.q_ts + h * p.q_rs;
    for (uint d = tid; d < D; d += WG) q_sh[d] = q[qb + d] * p.scale;
    barrier();

    float acc[DPT];
    for (uint c = 0u; c < DPT; c++) acc[c] = 0.0;
    float m = -1.0 / 0.0, l = 0.0;
    uint kb = p.k_base + kvh * D, vb = p.v_base + kvh * D;
    for (uint j0 = lo; j0 < end; j0 += WG) {
        uint j = j0 + tid, n = min(WG, end - j0);
        float s = -1.0 / 0.0;
        if (j < end) {
            s = score(kb + row_of(j) * p.kv_stride);
            if (p.softcap > 0.0) s = p.softcap * tanh_safe(s / p.softcap);
        }
        float m_new = max(m, wg_max(s));
        float corr = exp(m - m_new);
        float pj = j < end ? exp(s - m_new) : 0.0;
        l = l * corr + wg_sum(pj);
        p_sh[tid] = pj;
        barrier();
        // Rows of the tile: r0 onwards, wrapping once at ring_rows.
        uint r0 = row_of(j0);
        for (uint c = 0u; c < DPT; c++) {
            uint d = tid + c * WG;
            if (d >= D) break;
            float a = acc[c] * corr;
            for (uint jj = 0u, r = r0; jj < n; jj++, r++) {
                if (r == p.ring_rows) r = 0u;
                a += p_sh[jj] * v_at(vb + r * p.kv_stride + d);
            }
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
