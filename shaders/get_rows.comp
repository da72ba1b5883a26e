#version 450
#extension GL_GOOGLE_include_directive : require
// dst[t] = row ids[t] of the table, dequantized. A table too large for one
// binding is split by rows into pieces, one dispatch each: a dispatch
// writes only the tokens whose id falls in its piece [row0, row0 + n_rows).
// Ids outside the whole table give a row of zeros (written by the first
// piece) rather than an out-of-bounds read.

#include "common/common.glsl"
#include "common/blocks.glsl"

layout(std430, binding = 1) readonly buffer IdBuf { int ids[]; };
layout(std430, binding = 3) writeonly buffer DBuf { float dst[]; };

layout(push_constant) uniform Params {
    uint w_base;  // bytes
    uint id_base, d_base;
    uint n;       // values per row
    uint row_bytes;
    uint d_stride;
    uint row0, n_rows, n_table; // this piece, and the whole table
} p;

void main() {
    w_nb = p.n / QK;
    uint g = wg_linear() * WG + gl_LocalInvocationIndex, t = gl_WorkGroupID.z;
    if (g >= p.n / 4u) return;
    int id = ids[p.id_base + t];
    uint o = p.d_base + t * p.d_stride + 4u * g;
    vec4 v;
    if (id < 0 || uint(id) >= p.n_table) {
        if (p.row0 != 0u) return;
        v = vec4(0.0);
    } else {
        uint r = uint(id) - p.row0;
        if (uint(id) < p.row0 || r >= p.n_rows) return;
        v = dequant4r(p.w_base + r * p.row_bytes, g / QG, (g % QG) * 4u);
    }
    dst[o] = v.x;
    dst[o + 1u] = v.y;
    dst[o + 2u] = v.z;
    dst[o + 3u] = v.w;
}
