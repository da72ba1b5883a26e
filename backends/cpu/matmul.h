/* matmul.h: quantized matrix-vector and matrix-matrix products on the CPU. */
#ifndef ELM_CPU_MATMUL_H
#define ELM_CPU_MATMUL_H

#include <stdbool.h>
#include <stddef.h>

#include "backends/backend.h"
#include "backends/cpu/threadpool.h"

/*
 * dst (N, T) F32 = w (type, (K, N)) x x (K, T) F32 + bias (N, F32, may be NULL).
 * exact: weights dequantized exactly and multiplied in F32 (BLAS for large T).
 * fast: x quantized once per call to the type's vec_dot_type, then the fused
 * SIMD dot products. Rows are split across the pool's threads.
 * `work` (work_size bytes, from elmi_cpu_mul_mat_work_size) holds the quantized
 * activations and per-thread dequantization tiles; no allocation happens here.
 * Returns ELM_ERR_UNSUPPORTED for a weight type without kernels,
 * ELM_ERR_INVALID_ARG for inconsistent shapes or too small a work buffer.
 */
elm_status elmi_cpu_mul_mat(elm_threadpool *tp, const be_tensor *w, const be_tensor *x,
                       const be_tensor *bias, be_tensor *dst, bool exact, void *work,
                       size_t work_size);

/* Whether elmi_cpu_mul_mat has kernels for this weight type on this CPU: the one
 * list of the types the CPU backend multiplies (ops_check.c asks here). */
bool elmi_cpu_mul_mat_supported(int weight_type);

/* Bytes of `work` elmi_cpu_mul_mat needs for these shapes with n_threads threads. */
size_t elmi_cpu_mul_mat_work_size(const be_tensor *w, const be_tensor *x, bool exact, int n_threads);

/* The SIMD level the kernels picked at run time: "avx512vnni", "avx2", "neon", "scalar". */
const char *elmi_cpu_simd_level(void);

#endif
