#version 450
#extension GL_GOOGLE_include_directive : require
// One token through up to three weight matrices of one type that read the
// same activations, in one dispatch (backends/vulkan/fuse_matvec.c):
//   norm (flag NORM): x is RMS-normalized first, xn = x * s * nw with
//     s = 1 / sqrt(mean(x^2) + eps); every workgroup sums the squares from
//     the loads its dot products make anyway and scales the sums by s at
//     the end; xn itself is not stored, so the planner absorbs a norm only
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
// order of the sums. TEX (CPU devices, block types): the weights, x and
// the norm weights through texel buffers, and a lane per ROWS rows over
// all of each row's chunks, as matvec.comp's texel kernel does there: no
// reduction, and every lane sums the norm's squares itself.

#define MV_MULTI 1
#include "common/common.glsl"
#include "common/blocks.glsl"
#include "common/act.glsl"

#if defined(SG)
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

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
#if defined(TEX)
layout(binding = 13) uniform samplerBuffer xt;
layout(binding = 19) uniform samplerBuffer nwt;
#endif

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

// Slots reduced over the workgroup: ROWS rows of matrix m, then (GLU) of
// matrix 1, then the sum of squares of x (the norm).
const uint NA = ROWS * NM + 1u;

#if defined(TEX)
#elif defined(SG)
shared float red[NA * NSG];
#else
shared float red[NA * WG];
#endif

// x's values i..i+3 of chunk c, and (norm) times the norm weights.
vec4 load_x(uint c, uint j, bool v4, bool norm, out vec4 raw) {
    uint i = c * CH + 4u * j;
#if defined(TEX)
    // The planner takes TEX only for 16-byte aligned x and norm weights.
    raw = texelFetch(xt, int((p.x_base + i) >> 2));
    return norm ? raw * texelFetch(nwt, int((p.n_base + i) >> 2)) : raw;
#else
    if (v4) {
        raw = x4[((p.x_base + i) >> 2)];
        return norm ? raw * nw4[((p.n_base + i) >> 2)] : raw;
    }
    uint b = p.x_base + i, n = p.n_base + i;
    raw = vec4(x[b], x[b + 1u], x[b + 2u], x[b + 3u]);
    return norm ? raw * vec4(nw[n], nw[n + 1u], nw[n + 2u], nw[n + 3u]) : raw;
#endif
}

// Partial sums of this invocation (see NA).
float acc[NA];

// Sums acc over the workgroup, in place (every invocation calls it).
void reduce_all() {
#if defined(TEX)
#elif defined(SG)
    for (uint r = 0u; r < NA; r++) acc[r] = subgroupAdd(acc[r]);
    if (gl_NumSubgroups > 1u) {
        if (subgroupElect())
            for (uint r = 0u; r < NA; r++) red[r * NSG + gl_SubgroupID] = acc[r];
        barrier();
        for (uint r = 0u; r < NA; r++) {
            float s = 0.0;
            for (uint i = 0u; i < gl_NumSubgroups; i++) s += red[r * NSG + i];
            acc[r] = s;
        }
    }
#else
    uint lid = gl_LocalInvocationIndex;
    for (uint r = 0u; r < NA; r++) red[r * WG + lid] = acc[r];
    barrier();
    for (uint s = WG / 2u; s > 0u; s >>= 1) {
        if (lid < s)
            for (uint r = 0u; r < NA; r++) red[r * WG + lid] += red[r * WG + lid + s];
        barrier();
    }
    for (uint r = 0u; r < NA; r++) acc[r] = red[r * WG];
#endif
}

// The lanes' share of the dot products with matrix m (a constant at each
// call, so the weight loads select no buffer at run time). The norm's scale
// s is left out, dot(w, x * s * nw) = s * dot(w, x * nw), and its sum of
// squares comes from the same loads: the norm costs no pass of its own.
void accumulate(uint m, uint wb, uint row0, uint N, bool norm) {
    // Rows past N read row N - 1 again, keeping the reductions uniform.
    uint rb[ROWS];
    for (uint r = 0u; r < ROWS; r++) rb[r] = wb + min(row0 + r, N - 1u) * p.row_bytes;
    bool v4 = ((p.x_base | p.n_base) & 3u) == 0u;
    uint nc = p.K / CH;
#if defined(TEX)
    for (uint c = 0u; c < nc; c++) {
#else
    for (uint c = gl_LocalInvocationIndex; c < nc; c += WG) {
#endif
        vec4 xv[NV], raw;
        for (uint j = 0u; j < NV; j++) {
            xv[j] = load_x(c, j, v4, norm, raw);
            acc[NA - 1u] += dot(raw, raw);
        }
        chunk_prep(xv);
        for (uint r = 0u; r < ROWS; r++) acc[r] += chunk_dot(m, rb[r], c, xv);
#if defined(GLU)
        for (uint r = 0u; r < ROWS; r++) acc[ROWS + r] += chunk_dot(1u, rb[r] - p.w_base0 + p.w_base1, c, xv);
#endif
    }
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
    w_nb = p.K / QK;
    uint lid = gl_LocalInvocationIndex, wl = wg_linear();
#if defined(GLU)
    uint m = 0u, g0 = 0u, N = p.N0;
#else
    uint m = wl < p.g1 ? 0u : wl < p.g2 ? 1u : 2u;
    uint g0 = m == 0u ? 0u : m == 1u ? p.g1 : p.g2;
    uint N = m == 0u ? p.N0 : m == 1u ? p.N1 : p.N2;
#endif
#if defined(TEX)
    // A lane per ROWS rows; no barriers, so lanes past the last row leave.
    uint row0 = ((wl - g0) * WG + lid) * ROWS;
    if (row0 >= N) return;
#else
    // Workgroups past the last row (the x * y layout of wg_linear, or a
    // matrix 1 or 2 with no rows) leave as a whole, so barriers stay uniform.
    if ((wl - g0) * ROWS >= N) return;
    uint row0 = (wl - g0) * ROWS;
#endif
    bool norm = (p.flags & FLAG_NORM) != 0u;
    for (uint r = 0u; r < NA; r++) acc[r] = 0.0;
#if defined(GLU)
    accumulate(0u, p.w_base0, row0, N, norm);
#else
    if (m == 0u) accumulate(0u, p.w_base0, row0, N, norm);
    else if (m == 1u) accumulate(1u, p.w_base1, row0, N, norm);
    else accumulate(2u, p.w_base2, row0, N, norm);
#endif
    reduce_all();
    float s = norm ? inversesqrt(acc[NA - 1u] / float(p.K) + p.eps) : 1.0;
    for (uint r = 0u; r < ROWS * NM; r++) acc[r] *= s;
#if !defined(TEX)
    if (lid != 0u) return;
#endif
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
