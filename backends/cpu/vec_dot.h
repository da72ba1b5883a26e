/*
 * vec_dot.h: the CPU backend's dot-product kernels and activation quantizers,
 * one table per SIMD level, picked once at run time from what the CPU has.
 *
 * A level without its own kernel for a type uses the next lower level's
 * (avx512vnni -> avx2 -> scalar, neon -> scalar); the scalar level is the
 * quant module's reference vec_dot / from_float.
 */
#ifndef ELM_CPU_VEC_DOT_H
#define ELM_CPU_VEC_DOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quant/quant.h"

/* Tokens one kernel call handles, so the weight row is read and unpacked once. */
#define CPU_DOT_MAX_NT 4

/*
 * s[r + j * ss] = dot(x_r, y_j) for r < nr and j < nt (1 <= nt <=
 * CPU_DOT_MAX_NT), where x_r = (const char *)x + r * bx is a row of n values
 * of the weight type and y_j = (const char *)y + j * by a row of its
 * vec_dot_type; n is a multiple of the block size. Each result is
 * bit-identical to that of a call with nr = nt = 1 on x_r and y_j, so results
 * never depend on how rows and tokens are grouped. Where
 * elmi_cpu_vec_dot_is_reference says so, the results are also the reference
 * vec_dot's, bit for bit (the x86 kernels made of the tiled kernels of
 * gemm.h); otherwise they are within the rounding bound the tests check
 * (the AVX-512 row kernels of matvec_x86.c, made for one token).
 */
typedef void (*cpu_dot_fn)(int64_t n, int nr, const void *restrict x, size_t bx,
                           const void *restrict y, size_t by, int nt, float *restrict s, size_t ss);

/* n floats to a row of a vec_dot_type, bit-identical to its reference from_float. */
typedef void (*cpu_quantize_fn)(const float *restrict src, void *restrict dst, int64_t n);

typedef enum cpu_simd {
    CPU_SIMD_SCALAR,
    CPU_SIMD_AVX2,       /* AVX2 + FMA + F16C */
    CPU_SIMD_AVX512VNNI, /* AVX-512 F/BW/VL + VNNI */
    CPU_SIMD_NEON, /* AArch64 Advanced SIMD, with SDOT where the CPU has it (chosen at run time) */
    CPU_SIMD_COUNT
} cpu_simd;

const char *elmi_cpu_simd_name(cpu_simd level);
/* Whether this CPU (and OS) can run the level's kernels. */
bool elmi_cpu_simd_supported(cpu_simd level);
/* The level in use: the best supported one, or the one forced. */
cpu_simd elmi_cpu_simd_active(void);

/* Makes every later lookup use level `name` ("scalar", "avx2", ...); NULL
 * restores the detected level. Returns false (and changes nothing) for an
 * unknown or unsupported level. Global: meant for tests and benchmarks.
 * The environment variable EDGELM_SIMD does the same at start-up. */
bool elmi_cpu_vec_dot_force_level(const char *name);

/* The kernel for weight type `type` at `level` (with fallback to lower
 * levels), or NULL when there is none at all. */
cpu_dot_fn elmi_cpu_vec_dot_at(int type, cpu_simd level);
/* Whether `level` has its own kernel for `type` (not a fallback). */
bool elmi_cpu_vec_dot_native(int type, cpu_simd level);
/* Whether the kernel for `type` at `level` rounds exactly as the reference
 * vec_dot (so it equals the batched tiled kernels, token by token). */
bool elmi_cpu_vec_dot_is_reference(int type, cpu_simd level);
/* The activation quantizer for vec_dot_type `vdt` at `level`, or NULL. */
cpu_quantize_fn elmi_cpu_quantize_at(int vdt, cpu_simd level);

static inline cpu_dot_fn cpu_vec_dot(int type) { return elmi_cpu_vec_dot_at(type, elmi_cpu_simd_active()); }
static inline cpu_quantize_fn cpu_quantize(int vdt) {
    return elmi_cpu_quantize_at(vdt, elmi_cpu_simd_active());
}

/* Filled by the per-architecture files: entries they have kernels for at
 * `level`; the others are left alone. */
void elmi_cpu_fill_x86(cpu_simd level, cpu_dot_fn dot[QT_COUNT], cpu_quantize_fn quant[QT_COUNT]);
void elmi_cpu_fill_arm(cpu_simd level, cpu_dot_fn dot[QT_COUNT], cpu_quantize_fn quant[QT_COUNT]);
void elmi_cpu_fill_quantize_x86(cpu_simd level, cpu_quantize_fn quant[QT_COUNT]);
bool elmi_cpu_x86_supports(cpu_simd level);
bool elmi_cpu_arm_supports(cpu_simd level);

#endif
