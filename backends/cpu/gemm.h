/*
 * gemm.h: tiled integer matrix products of quantized weights with quantized
 * activations (the fast mode for several tokens), and the one-token dot
 * kernels built from the same pieces.
 *
 * A weight "panel" is CPU_GEMM_ROWS rows over a range of blocks, repacked
 * so that one SIMD lane holds one row: for every 4-value step of a block,
 * the 4 bytes of each row side by side. The integer dot products then run
 * with the activation bytes broadcast to every lane (VNNI vpdpbusd, or
 * maddubs on AVX2), and each lane ends a block with that row's exact
 * integer sum. The float part is then the scalar reference's, one block at
 * a time in block order, for a vector of rows at once:
 *   sumf = sumf + (d_x * d_y) * (float)isum     (and the types' min terms)
 * with every product and sum rounded as the reference rounds it (no FMA
 * contraction). So every result is bit-identical to the quant module's
 * reference vec_dot, whatever the tiling, token grouping or thread count.
 *
 * Use: per call, quantize the activations to the weight type's vec_dot_type
 * (cpu_quantize) and pack them in groups of tokens, interleaved by block,
 * with per-block extras (pack_act); per thread, repack a panel (prep_panel)
 * for a range of blocks and run the kernel on it for each group. A kernel
 * continues the sums it finds in `out` (first == false), so a long row can
 * be cut into block ranges.
 */
#ifndef ELM_CPU_GEMM_H
#define ELM_CPU_GEMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/cpu/vec_dot.h"

#define CPU_GEMM_ROWS 32 /* rows per panel */

typedef struct cpu_gemm {
    int type;                 /* weight type */
    int64_t block;            /* values per block */
    size_t w_block_bytes;     /* bytes per weight block */
    size_t panel_block_bytes; /* panel bytes per block (CPU_GEMM_ROWS rows) */
    int group;                /* tokens per activation group: the most per kernel call */
    size_t act_entry_bytes;   /* bytes of one token's block in a group */
    /* Packs tokens j < nt (rows y + j * ys of the vec_dot_type, from their
     * block 0) into the group at g: block b of token j at
     * g + (b * group + j) * act_entry_bytes, for b < nblk. */
    void (*pack_act)(const void *restrict y, size_t ys, int nt, int64_t nblk, void *restrict g);
    /* Panel of rows w + r * w_stride (r < nrows <= CPU_GEMM_ROWS), blocks
     * [b0, b0 + nblk). Rows beyond nrows are filled with copies. */
    void (*prep_panel)(const void *restrict w, size_t w_stride, int nrows, int64_t b0,
                       int64_t nblk, void *restrict panel);
    /* out[r + j * os] for r < nrows, j < nt (1 <= nt <= group): the sums of
     * the panel's nblk blocks with token j of the group at `act` (at the
     * panel's first block), continuing from the value in out unless `first`. */
    void (*kernel)(const void *restrict panel, int64_t nblk, const void *restrict act, int nt,
                   float *restrict out, size_t os, int nrows, bool first);
} cpu_gemm;

/* The tiled kernels for weight type `type` at `level`, or NULL (no fallback
 * to a lower level: the caller then uses the dot kernels). `level` must be
 * supported by this CPU (elmi_cpu_simd_supported). */
const cpu_gemm *elmi_cpu_gemm_at(int type, cpu_simd level);
static inline const cpu_gemm *cpu_gemm_get(int type) {
    return elmi_cpu_gemm_at(type, elmi_cpu_simd_active());
}

/* Bytes of one activation group for rows of n values. */
static inline size_t cpu_gemm_group_bytes(const cpu_gemm *g, int64_t n) {
    return g->act_entry_bytes * (size_t)g->group * (size_t)(n / g->block);
}

/* Row dequantization for the exact mode: a SIMD version bit-identical to
 * the reference to_float of `type` where the active level has one, else
 * the reference itself (NULL for a type without to_float). */
qt_to_float_fn elmi_cpu_dequant_get(int type);

/* Filled by gemm_x86.c: the one-token dot kernels (cpu_dot_fn) made of the
 * gemm pieces, for the types that have them at `level`. */
void elmi_cpu_fill_gemm_dots_x86(cpu_simd level, cpu_dot_fn dot[QT_COUNT]);

#endif
