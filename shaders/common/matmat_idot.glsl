// matmat_idot.glsl: the integer-dot body of matmat.comp (IDOT; Q4_0 and
// Q8_0 weights, fast graphs). Included by matmat.comp after its push
// constants, bindings and tile constants; BK is unused: a slice is one
// 32-value block. Per slice a workgroup stages
//   the weights: 8 words of 4 signed bytes per row (q_word_i8: Q8_0's
//     quants, Q4_0's nibbles - 8) and the row's block scale,
//   the activations: each token's 32 values quantized as Q8_0 does
//     (quant/quant_legacy.c: d = amax / 127, q = x / d rounded half away
//     from zero), packed 4 per word, and d (F32, not rounded to a half),
// ((BM + BN) * 9 words in all), then each invocation sums TM x TN integer
// dot products of the block and adds d_w * d_x * sum to its F32
// accumulators.
#if !defined(TYPE_Q4_0) && !defined(TYPE_Q8_0)
#error "integer-dot mat-mat variants exist only for Q4_0 and Q8_0"
#endif
// glslang here lacks GL_EXT_integer_dot_product: OpSDotAccSat directly,
// acc + the dot of two words of 4 packed signed bytes.
#extension GL_EXT_spirv_intrinsics : require
spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"], capabilities = [6019, 6018], id = 4453)
int sdot_acc(int a, int b, int acc, spirv_literal int packed_4x8);

shared uint a_q[8u * BM]; // [word][row]
shared float a_d[BM];
shared uint b_q[8u * BN]; // [word][token]
shared float b_d[BN];

uint pack_i8(ivec4 q) { return uint((q.x & 255) | (q.y & 255) << 8 | (q.z & 255) << 16 | (q.w & 255) << 24); }

// Token tok's block blk as Q8_0 quantizes it, into column n of the tile.
void quant_token(uint n, uint tok, uint blk) {
    if (tok >= p.n_tok) {
        for (uint j = 0u; j < 8u; j++) b_q[j * BN + n] = 0u;
        b_d[n] = 0.0;
        return;
    }
    uint xo = p.x_base + tok * p.x_stride + blk * 32u;
    vec4 v[8];
    vec4 a = vec4(0.0);
    for (uint j = 0u; j < 8u; j++) {
        v[j] = vec4(x[xo + 4u * j], x[xo + 4u * j + 1u], x[xo + 4u * j + 2u], x[xo + 4u * j + 3u]);
        a = max(a, abs(v[j]));
    }
    float d = max(max(a.x, a.y), max(a.z, a.w)) / 127.0;
    float id = d != 0.0 ? 1.0 / d : 0.0;
    for (uint j = 0u; j < 8u; j++) {
        vec4 s = v[j] * id;
        b_q[j * BN + n] = pack_i8(ivec4(sign(s) * floor(abs(s) + 0.5)));
    }
    b_d[n] = d;
}

void load_block(uint m0, uint n0, uint blk, uint tid) {
    for (uint e = tid; e < 8u * BM; e += WG) {
        uint m = e / 8u, j = e % 8u, row = m0 + m;
        uint rb = p.w_base + row * p.row_bytes;
        a_q[j * BM + m] = row < p.N ? q_word_i8(blk_body(rb, blk), j) : 0u;
        if (j == 0u) a_d[m] = row < p.N ? q_scale(blk_d(rb, blk)) : 0.0;
    }
    for (uint e = tid; e < BN; e += WG) quant_token(e, n0 + e, blk);
}

void main() {
    w_nb = p.K / QK;
    uint tid = gl_LocalInvocationIndex;
    uint m0 = gl_WorkGroupID.x * BM, n0 = gl_WorkGroupID.y * BN;
    uint tm = tid % (BM / TM), tn = tid / (BM / TM);
    float acc[TM * TN]; // [row][token]
    for (uint i = 0u; i < TM * TN; i++) acc[i] = 0.0;
    for (uint blk = 0u; blk < p.K / QK; blk++) {
        load_block(m0, n0, blk, tid);
        barrier();
        int s[TM * TN];
        for (uint i = 0u; i < TM * TN; i++) s[i] = 0;
        for (uint j = 0u; j < 8u; j++) {
            int b[TN];
            for (uint t = 0u; t < TN; t++) b[t] = int(b_q[j * BN + tn * TN + t]);
            for (uint r = 0u; r < TM; r++) {
                int a = int(a_q[j * BM + tm * TM + r]);
                for (uint t = 0u; t < TN; t++) s[r * TN + t] = sdot_acc(a, b[t], s[r * TN + t], 0);
            }
        }
        for (uint r = 0u; r < TM; r++) {
            float da = a_d[tm * TM + r];
            for (uint t = 0u; t < TN; t++) acc[r * TN + t] += da * (b_d[tn * TN + t] * float(s[r * TN + t]));
        }
        barrier();
    }
    for (uint r = 0u; r < TM; r++) {
        uint row = m0 + tm * TM + r;
        if (row >= p.N) continue;
        float bv = p.has_bias != 0u ? bias[p.b_base + row] : 0.0;
        for (uint t = 0u; t < TN; t++) {
            uint tok = n0 + tn * TN + t;
            if (tok < p.n_tok) dst[p.d_base + tok * p.d_stride + row] = acc[r * TN + t] + bv;
        }
    }
}
