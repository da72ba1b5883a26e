#version 450
#extension GL_GOOGLE_include_directive : require
// One token through up to three weight matrices of one type that read the
// same activations, in one dispatch (backends/vulkan/fuse_matvec.c):
//   prologue (flag NORM): x is first RMS-normalized, xn = x * s * nw with
//     s = 1 / sqrt(mean(x^2) + eps), computed by every workgroup (x is one
//     row); xn itself is not stored, so the planner absorbs a norm only
//     when no later node reads xn;
//   split (default): workgroups [0, g1) compute rows of matrix 0 into dst0,
//     [g1, g2) matrix 1 into dst1, [g2, ...) matrix 2 into dst2, each with
//     its bias (BIAS0 << m);
//   GLU defined: every workgroup computes the same rows of matrices 0 (gate)
//     and 1 (up) and stores act(gate) * up into dst0, and up into dst1 when
//     a later node reads it (UP);
//   epilogue (flag RESID, one matrix): dst0 += the result (a residual add),
//     the result itself also into dst1 when a later node reads it (PROJ).
// The dot products are matvec.comp's (lanes split each row's chunks; one
// workgroup is ROWS rows), so results match the unfused kernels up to the
// order of the sums.

#define MV_MULTI 1
#include "common/common.glsl"
#include "common/blocks.glsl"
#include "common/reduce.glsl"
#include "common/act.glsl"

layout(constant_id = 2) const uint ROWS = 4u;

layout(std430, binding = 1) readonly buffer XBuf { float x[]; };
layout(std430, binding = 1) readonly buffer XBuf4 { vec4 x4[]; };
layout(std430, binding = 2) readonly buffer NBuf { float nw[]; };
layout(std430, binding = 2) readonly buffer NBuf4 { vec4 nw4[]; };
layout(std430, binding = 3) buffer D0Buf { float dst0[]; };
layout(std430, binding = 7) writeonly buffer D1Buf { float dst1[]; };
layout(std430, binding = 8) writeonly buffer D2Buf { float dst2[]; };
layout(std430, binding = 9) readonly buffer B0Buf { float bias0[]; };
layout(std430, binding = 10) readonly buffer B1Buf { float bias1[]; };
layout(std430, binding = 11) readonly buffer B2Buf { float bias2[]; };

layout(push_constant) uniform Params {
    uint w_base0, w_base1, w_base2; // bytes
    uint x_base, n_base;            // floats
    uint d_base0, d_base1, d_base2;
    uint b_base0, b_base1, b_base2;
    uint K, N0, N1, N2;             // values per row; rows of each matrix
    uint row_bytes;
    uint g1, g2;                    // first workgroups of matrices 1 and 2
    uint flags;                     // FLAG_* below
    float eps;
    uint act;                       // GLU: BE_GLU_SILU or BE_GLU_GELU_TANH
} p;

const uint FLAG_NORM = 1u, FLAG_RESID = 4u, FLAG_PROJ = 8u, FLAG_UP = 16u, FLAG_BIAS0 = 32u;

#include "common/matvec_chunk.glsl"

#if defined(GLU)
const uint NM = 2u; // gate and up rows per workgroup
#else
const uint NM = 1u;
#endif

#if defined(SG)
shared float red[ROWS * NM * NSG];
#else
shared float red[ROWS * NM * WG];
#endif

float norm_scale() {
    float ss = 0.0;
    for (uint i = gl_LocalInvocationIndex; i < p.K; i += WG) {
        float v = x[p.x_base + i];
        ss += v * v;
    }
#if defined(SG)
    // A workgroup of one subgroup (the usual case) needs no barrier, which
    // CPU drivers pay for dearly.
    ss = gl_NumSubgroups == 1u ? subgroupAdd(ss) : wg_sum(ss);
#else
    ss = wg_sum(ss);
#endif
    return inversesqrt(ss / float(p.K) + p.eps);
}

vec4 load_x(uint c, uint j, bool v4, bool norm, float s) {
    uint i = c * CH + 4u * j;
    vec4 v, w;
    if (v4) {
        v = x4[((p.x_base + i) >> 2)];
        if (!norm) return v;
        w = nw4[((p.n_base + i) >> 2)];
    } else {
        uint b = p.x_base + i, n = p.n_base + i;
        v = vec4(x[b], x[b + 1u], x[b + 2u], x[b + 3u]);
        if (!norm) return v;
        w = vec4(nw[n], nw[n + 1u], nw[n + 2u], nw[n + 3u]);
    }
    return v * s * w;
}

// Partial sums of this invocation: rows of matrix m, then (GLU) of matrix 1.
float acc[ROWS * NM];

// Sums acc over the workgroup, in place (every invocation calls it).
void reduce_rows() {
#if defined(SG)
    for (uint r = 0u; r < ROWS * NM; r++) acc[r] = subgroupAdd(acc[r]);
    if (gl_NumSubgroups > 1u) {
        if (subgroupElect())
            for (uint r = 0u; r < ROWS * NM; r++) red[r * NSG + gl_SubgroupID] = acc[r];
        barrier();
        for (uint r = 0u; r < ROWS * NM; r++) {
            float s = 0.0;
            for (uint i = 0u; i < gl_NumSubgroups; i++) s += red[r * NSG + i];
            acc[r] = s;
        }
    }
#else
    uint lid = gl_LocalInvocationIndex;
    for (uint r = 0u; r < ROWS * NM; r++) red[r * WG + lid] = acc[r];
    barrier();
    for (uint s = WG / 2u; s > 0u; s >>= 1) {
        if (lid < s)
            for (uint r = 0u; r < ROWS * NM; r++) red[r * WG + lid] += red[r * WG + lid + s];
        barrier();
    }
    for (uint r = 0u; r < ROWS * NM; r++) acc[r] = red[r * WG];
#endif
}

float bias_at(uint m, uint row) {
    if ((p.flags & (FLAG_BIAS0 << m)) == 0u) return 0.0;
    if (m == 0u) return bias0[p.b_base0 + row];
    if (m == 1u) return bias1[p.b_base1 + row];
    return bias2[p.b_base2 + row];
}

void store(uint m, uint row, float v) {
    if (m == 0u) dst0[p.d_base0 + row] = v;
    else if (m == 1u) dst1[p.d_base1 + row] = v;
    else dst2[p.d_base2 + row] = v;
}

void main() {
    uint lid = gl_LocalInvocationIndex, wl = wg_linear();
#if defined(GLU)
    uint m = 0u, g0 = 0u, N = p.N0;
#else
    uint m = wl < p.g1 ? 0u : wl < p.g2 ? 1u : 2u;
    uint g0 = m == 0u ? 0u : m == 1u ? p.g1 : p.g2;
    uint N = m == 0u ? p.N0 : m == 1u ? p.N1 : p.N2;
#endif
    // Workgroups past the last row (the x * y layout of wg_linear, or a
    // matrix 1 or 2 with no rows) leave as a whole, so barriers stay uniform.
    if ((wl - g0) * ROWS >= N) return;
    bool norm = (p.flags & FLAG_NORM) != 0u;
    float s = norm ? norm_scale() : 1.0;

    uint row0 = (wl - g0) * ROWS, wb = m == 0u ? p.w_base0 : m == 1u ? p.w_base1 : p.w_base2;
    // Rows past N read row N - 1 again, keeping the reductions uniform.
    uint rb[ROWS];
    for (uint r = 0u; r < ROWS; r++) rb[r] = wb + min(row0 + r, N - 1u) * p.row_bytes;
    for (uint r = 0u; r < ROWS * NM; r++) acc[r] = 0.0;
    bool v4 = ((p.x_base | p.n_base) & 3u) == 0u;
    uint nc = p.K / CH;
    for (uint c = lid; c < nc; c += WG) {
        vec4 xv[NV];
        for (uint j = 0u; j < NV; j++) xv[j] = load_x(c, j, v4, norm, s);
        chunk_prep(xv);
        for (uint r = 0u; r < ROWS; r++) acc[r] += chunk_dot(m, rb[r], c, xv);
#if defined(GLU)
        for (uint r = 0u; r < ROWS; r++) acc[ROWS + r] += chunk_dot(1u, rb[r] - p.w_base0 + p.w_base1, c, xv);
#endif
    }
    reduce_rows();
    if (lid != 0u) return;
    for (uint r = 0u; r < ROWS; r++) {
        uint row = row0 + r;
        if (row >= N) break;
#if defined(GLU)
        float g = acc[r], u = acc[ROWS + r];
        if ((p.flags & FLAG_UP) != 0u) dst1[p.d_base1 + row] = u;
        dst0[p.d_base0 + row] = glu_act(g, p.act) * u;
#else
        float v = acc[r] + bias_at(m, row);
        if ((p.flags & FLAG_RESID) != 0u) {
            if ((p.flags & FLAG_PROJ) != 0u) dst1[p.d_base1 + row] = v;
            dst0[p.d_base0 + row] = dst0[p.d_base0 + row] + v;
        } else {
            store(m, row, v);
        }
#endif
    }
}
