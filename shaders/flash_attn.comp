#version 450
#extension GL_GOOGLE_include_directive : require
// Flash attention (BE_OP_ATTENTION) with an online softmax. A workgroup
// takes HB query heads of one GQA group (they share a KV head) for TB
// tokens: R = HB * TB query rows, row r = head hh = r % HB, token
// tt = r / HB. It walks the keys the rows need, [lo of its first token,
// position of its last token], or, with a split (n_split > 1, decode), the
// split-th chunk of them, in steps of NK = WG / TPR keys:
//  1. a team of TPR lanes reads each key row with vector loads, each lane
//     NV vec4s of the head (lanes split the head dimension; neighbouring
//     lanes read neighbouring 16 bytes), and dots them with every row's
//     query (scaled, F32 in shared memory): one K read serves all R rows;
//  2. the team's partial dots are summed, masked per row (causal, window)
//     and softcapped;
//  3. each row updates its running max and sum (online softmax);
//  4. lanes own (row, vec4 of the head) outputs and fold the step's
//     weighted V rows, read as vec4s, into them.
// Without a split the output is acc / l into dst; with one, acc, m and l
// go to the scratch (binding 3) for flash_attn_reduce.comp. Key position j
// is cache row j % ring_rows (ring_rows = 0xffffffff without a ring).
// Cache: CACHE_F32 as vec4; CACHE_F16 as f16vec4 (S16) or as uvec2 words
// of four halves. VTILE (F16 caches): step 1 also stages the step's V rows
// in shared memory, and step 4 reads them there. The host guarantees D % 4 == 0 and that every cache
// row and base is a whole vec4 of elements.
//
// SG defined: the team's sums (step 2) and each row's max and sum over the
// step's keys (step 3, a team of TPR lanes per row) are subgroup shuffle
// butterflies, so neither the partial dots nor a barrier go through shared
// memory. The host picks SG only when a team lies within one subgroup
// (TPR <= the smallest subgroup size the pipeline may run). Without SG:
// the partials go through shared memory and one lane per row does step 3.

#include "common/common.glsl"
#include "common/tanh.glsl"

layout(constant_id = 2) const uint D = 64u;    // head size, D % (4 * TPR) == 0
layout(constant_id = 3) const uint TPR = 8u;   // lanes per key (a power of two dividing WG)
layout(constant_id = 4) const uint RMAX = 4u;  // query rows per workgroup, at most
const uint D4 = D / 4u, NV = D4 / TPR, NK = WG / TPR;
const uint UO = (RMAX * D4 + WG - 1u) / WG;    // output vec4s per lane

layout(std430, binding = 0) readonly buffer QBuf { float q[]; };
layout(std430, binding = 3) writeonly buffer DBuf { float dst[]; };
#if defined(CACHE_F32)
layout(std430, binding = 1) readonly buffer KBuf { vec4 kc[]; };
layout(std430, binding = 2) readonly buffer VBuf { vec4 vc[]; };
vec4 k4(uint i) { return kc[i]; }
vec4 v4(uint i) { return vc[i]; }
#elif defined(S16)
#extension GL_EXT_shader_16bit_storage : require
layout(std430, binding = 1) readonly buffer KBuf { f16vec4 kc[]; };
layout(std430, binding = 2) readonly buffer VBuf { f16vec4 vc[]; };
vec4 k4(uint i) { return vec4(kc[i]); }
vec4 v4(uint i) { return vec4(vc[i]); }
uvec2 v_raw(uint i) { vec4 v = v4(i); return uvec2(packHalf2x16(v.xy), packHalf2x16(v.zw)); } // exact for halves
#else
layout(std430, binding = 1) readonly buffer KBuf { uvec2 kc[]; };
layout(std430, binding = 2) readonly buffer VBuf { uvec2 vc[]; };
vec4 k4(uint i) { uvec2 w = kc[i]; return vec4(unpackHalf2x16(w.x), unpackHalf2x16(w.y)); }
vec4 v4(uint i) { uvec2 w = vc[i]; return vec4(unpackHalf2x16(w.x), unpackHalf2x16(w.y)); }
uvec2 v_raw(uint i) { return vc[i]; }
#endif

layout(push_constant) uniform Params {
    uint q_base, k_base, v_base, d_base; // q, d: floats; k, v: vec4s
    uint n_head, n_head_kv;
    uint q_rs, q_ts;      // floats between heads, between tokens
    uint kv_stride;       // vec4s per cache row
    uint d_ts;            // floats between tokens of dst
    uint tok0, dyn_idx;
    uint window;          // 0: none
    uint ring_rows;       // cache rows of a ring cache, 0xffffffff without
    float scale;          // applied to q
    float softcap;        // 0: none
    uint hb, tb;          // heads and tokens per workgroup
    uint n_tok;           // tokens of this dispatch
    uint n_split;         // chunks of the keys; 1: no split
    uint ml_base;         // split: floats of the scratch before (m, l) pairs
    uint min_chunk;       // split: the fewest keys of a chunk
} p;

#if defined(SG)
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
// Butterflies over the aligned team of TPR lanes: every lane gets the result.
float team_sum(float v) {
    for (uint o = TPR / 2u; o > 0u; o >>= 1) v += subgroupShuffleXor(v, o);
    return v;
}
float team_max(float v) {
    for (uint o = TPR / 2u; o > 0u; o >>= 1) v = max(v, subgroupShuffleXor(v, o));
    return v;
}
#else
shared float red_sh[RMAX * WG];
#endif

shared vec4 q_sh[RMAX * D4];
shared float p_sh[RMAX * NK];
shared float m_sh[RMAX], l_sh[RMAX], c_sh[RMAX];

// No score: a finite sentinel, so nothing relies on infinities (which
// drivers may assume away); real scores are far above it.
const float NEG_INF = -3.0e38;

uint row_of(uint j) { return j % p.ring_rows; }
uint first_key(uint P) { return p.window != 0u && P >= p.window ? P + 1u - p.window : 0u; }

#if defined(VTILE)
// The step's V rows as packed halves (uint words need no 16-bit shared
// types), read by all R rows from shared memory instead of R times from
// the cache.
shared uvec2 vt_sh[NK * D4];

void stage_v(uint c0, uint n, uint vb, uint tid) {
    for (uint i = tid; i < n * D4; i += WG) vt_sh[i] = v_raw(vb + row_of(c0 + i / D4) * p.kv_stride + i % D4);
}

// V element vec4 t of the step's tile, g in the cache.
vec4 v_step(uint t, uint g) {
    uvec2 w = vt_sh[t];
    return vec4(unpackHalf2x16(w.x), unpackHalf2x16(w.y));
}
#else
vec4 v_step(uint t, uint g) { return v4(g); }
#endif

void load_q(uint R, uint h0, uint t0, uint tid) {
    for (uint i = tid; i < R * D4; i += WG) {
        uint r = i / D4, d = (i % D4) * 4u;
        uint b = p.q_base + (t0 + r / p.hb) * p.q_ts + (h0 + r % p.hb) * p.q_rs + d;
        q_sh[i] = vec4(q[b], q[b + 1u], q[b + 2u], q[b + 3u]) * p.scale;
    }
    for (uint r = tid; r < RMAX; r += WG) {
        m_sh[r] = NEG_INF;
        l_sh[r] = 0.0;
    }
}

// Step 1: this lane's slice of key c (zeros when c is past the step).
void load_key(uint c, bool valid, uint kb, uint s, out vec4 kv[NV]) {
    for (uint j = 0u; j < NV; j++) kv[j] = vec4(0.0);
    if (!valid) return; // past the cache: no load
    uint b = kb + row_of(c) * p.kv_stride + s;
    for (uint j = 0u; j < NV; j++) kv[j] = k4(b + j * TPR);
}

float partial_dot(uint r, uint s, vec4 kv[NV]) {
    float a = 0.0;
    for (uint j = 0u; j < NV; j++) a += dot(q_sh[r * D4 + s + j * TPR], kv[j]);
    return a;
}

// Step 2 for one score: the sentinel where row r's token (position P) may
// not see key c.
float masked(float s, uint c, uint c_end, uint P) {
    if (c >= c_end || c > P || c < first_key(P)) return NEG_INF;
    return p.softcap > 0.0 ? p.softcap * tanh_safe(s / p.softcap) : s;
}

#if defined(SG)
// Steps 1-2: the team sums its partials in registers; its first lane
// stores the scores of key c0 + k.
void step_scores(uint R, uint c0, uint c_end, uint P0, uint kb, uint tid) {
    uint s = tid % TPR, k = tid / TPR, c = c0 + k;
    vec4 kv[NV];
    load_key(c, c < c_end, kb, s, kv);
    for (uint r = 0u; r < R; r++) {
        float a = team_sum(partial_dot(r, s, kv));
        if (s == 0u) p_sh[r * NK + k] = masked(a, c, c_end, P0 + r / p.hb);
    }
}
#else
void step_scores(uint R, uint c0, uint c_end, uint P0, uint kb, uint tid) {
    uint c = c0 + tid / TPR;
    vec4 kv[NV];
    load_key(c, c < c_end, kb, tid % TPR, kv);
    for (uint r = 0u; r < R; r++) red_sh[r * WG + tid] = partial_dot(r, tid % TPR, kv);
    barrier();
    for (uint i = tid; i < R * NK; i += WG) {
        uint r = i / NK, k = i % NK;
        float a = 0.0;
        for (uint u = 0u; u < TPR; u++) a += red_sh[r * WG + k * TPR + u];
        p_sh[i] = masked(a, c0 + k, c_end, P0 + r / p.hb);
    }
}
#endif

// Step 3 for row r: exponentiates the scores of keys k0, k0 + dk, ...
// against the new max mx and returns their sum.
float exp_scores(uint r, uint k0, uint dk, float mx) {
    float sum = 0.0;
    for (uint k = k0; k < NK; k += dk) {
        float s = p_sh[r * NK + k];
        float e = s == NEG_INF ? 0.0 : exp(s - mx);
        p_sh[r * NK + k] = e;
        sum += e;
    }
    return sum;
}

float max_scores(uint r, uint k0, uint dk, float mx) {
    for (uint k = k0; k < NK; k += dk) mx = max(mx, p_sh[r * NK + k]);
    return mx;
}

// Step 3: the online softmax of each row over the step's NK scores, by a
// team of TPR lanes per row with SG (whole teams enter each iteration, as
// WG and R * TPR are multiples of TPR), by one lane per row without.
void softmax_step(uint R, uint tid) {
#if defined(SG)
    const uint L = TPR;
#else
    const uint L = 1u;
#endif
    for (uint i = tid; i < R * L; i += WG) {
        uint r = i / L, u = i % L;
        float mo = m_sh[r], mx = max_scores(r, u, L, mo);
#if defined(SG)
        mx = team_max(mx);
        float sum = team_sum(exp_scores(r, u, L, mx));
#else
        float sum = exp_scores(r, u, L, mx);
#endif
        if (u == 0u) {
            float corr = mo == NEG_INF ? 0.0 : exp(mo - mx);
            l_sh[r] = l_sh[r] * corr + sum;
            m_sh[r] = mx;
            c_sh[r] = corr;
        }
    }
}

void main() {
    uint tid = gl_LocalInvocationIndex, wl = wg_linear();
    uint split = wl % p.n_split, h0 = (wl / p.n_split) * p.hb;
    if (h0 >= p.n_head) return;
    uint kvh = h0 / (p.n_head / p.n_head_kv);
    uint t0 = gl_WorkGroupID.z * p.tb, nt = min(p.tb, p.n_tok - t0), R = p.hb * nt;
    uint P0 = uint(dyn[p.dyn_idx]) + p.tok0 + t0; // position of the first token
    uint lo = first_key(P0), end = P0 + nt;
    uint c_begin = lo, c_end = end;
    if (p.n_split > 1u) {
        uint chunk = max((end - lo + p.n_split - 1u) / p.n_split, p.min_chunk);
        chunk = (chunk + NK - 1u) / NK * NK;
        c_begin = min(end, lo + split * chunk);
        c_end = min(end, c_begin + chunk);
    }
    load_q(R, h0, t0, tid);
    vec4 acc[UO];
    for (uint u = 0u; u < UO; u++) acc[u] = vec4(0.0);
    barrier();

    uint kb = p.k_base + kvh * D4, vb = p.v_base + kvh * D4;
    for (uint c0 = c_begin; c0 < c_end; c0 += NK) {
        step_scores(R, c0, c_end, P0, kb, tid);
#if defined(VTILE)
        stage_v(c0, min(NK, c_end - c0), vb, tid);
#endif
        barrier();
        softmax_step(R, tid);
        barrier();
        uint n = min(NK, c_end - c0), r0 = row_of(c0);
        for (uint u = 0u; u < UO; u++) {
            uint o = tid + u * WG;
            if (o >= R * D4) break;
            uint r = o / D4, d = o % D4;
            vec4 a = acc[u] * c_sh[r];
            for (uint k = 0u, row = r0; k < n; k++, row++) {
                if (row == p.ring_rows) row = 0u; // a step wraps at most once
                a += p_sh[r * NK + k] * v_step(k * D4 + d, vb + row * p.kv_stride + d);
            }
            acc[u] = a;
        }
        barrier();
    }

    uint n_rows = p.n_tok * p.n_head;
    for (uint u = 0u; u < UO; u++) {
        uint o = tid + u * WG;
        if (o >= R * D4) break;
        uint r = o / D4, d = (o % D4) * 4u, t = t0 + r / p.hb, h = h0 + r % p.hb;
        vec4 v = acc[u];
        uint b;
        if (p.n_split > 1u) {
            b = p.d_base + ((split * n_rows) + t * p.n_head + h) * D + d;
        } else {
            v /= l_sh[r];
            b = p.d_base + t * p.d_ts + h * D + d;
        }
        dst[b] = v.x;
        dst[b + 1u] = v.y;
        dst[b + 2u] = v.z;
        dst[b + 3u] = v.w;
    }
    if (p.n_split > 1u) {
        for (uint r = tid; r < R; r += WG) {
            uint b = p.d_base + p.ml_base + (split * n_rows + (t0 + r / p.hb) * p.n_head + h0 + r % p.hb) * 2u;
            dst[b] = m_sh[r];
            dst[b + 1u] = l_sh[r];
        }
    }
}
