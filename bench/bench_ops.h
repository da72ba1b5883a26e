/* bench_ops.h: the op micro-benchmarks' shared parts. */
#ifndef ELM_BENCH_OPS_H
#define ELM_BENCH_OPS_H

#include "backends/backend.h"
#include "bench/bench_internal.h"

#define BENCH_OP_TIME_MS 300.0 /* timed runs per op, after the warm-up */

/* How the ops harness drives one kind of device. */
typedef struct ops_device {
    const char *id; /* "cpu"; "vulkan" matches "vulkan:N" */
    elm_status (*create)(const elm_device_info *dev, int n_threads, be_backend **out);
    /* Copy bandwidth over `bytes`-byte buffers, counting bytes read plus
     * written; *ms the median time of one copy. NULL: not measured. */
    elm_status (*copy_gbps)(be_backend *be, int n_threads, size_t bytes, double budget_ms,
                            double *ms, double *gbps);
    /* Read-only bandwidth over a `bytes`-byte buffer (every byte read once,
     * summed); *ms the median time of one pass. NULL: not measured. */
    elm_status (*read_gbps)(be_backend *be, int n_threads, size_t bytes, double budget_ms,
                            double *ms, double *gbps);
    /* Forgets the backend's copies of host tensors before their memory is
     * freed (a device caches them by address). NULL: nothing to do. */
    void (*release_weights)(be_backend *be);
} ops_device;

/* The state of one device's op run, in the measuring child. */
typedef struct bench_ops_ctx {
    int fd;
    const char *device;
    const ops_device *dev;
    be_backend *be;
    int n_threads;
    double deadline_ms;
    double copy_gbps, read_gbps;
} bench_ops_ctx;

typedef elm_status (*bench_run_fn)(void *arg);

/* Runs fn once to warm up, then repeatedly for about budget_ms (at least a
 * few times); *ms receives the median time of one run. */
elm_status bench_time_median(bench_run_fn fn, void *arg, double budget_ms, double *ms);
/* The same, with *ms the median or (best) the fastest run. */
elm_status bench_time_runs(bench_run_fn fn, void *arg, double budget_ms, bool best, double *ms);
double bench_median(double *v, int n);
/* Bytes a buffer must have to stream from memory rather than a cache. */
size_t bench_stream_bytes(void);

elm_status bench_cpu_copy_gbps(be_backend *be, int n_threads, size_t bytes, double budget_ms,
                               double *ms, double *gbps);
elm_status bench_cpu_read_gbps(be_backend *be, int n_threads, size_t bytes, double budget_ms,
                               double *ms, double *gbps);
#if defined(ELM_HAVE_VULKAN) && ELM_HAVE_VULKAN
/* bench_ops_vk.c: the backend on device N of "vulkan:N", and the device's
 * buffer-to-buffer copy bandwidth (bytes read plus written). */
elm_status bench_vk_create(const elm_device_info *dev, int n_threads, be_backend **out);
elm_status bench_vk_copy_gbps(be_backend *be, int n_threads, size_t bytes, double budget_ms,
                              double *ms, double *gbps);
#endif
/* Times dst = W x X for weights of `type`, 4096 columns, and n_tokens
 * columns of X; sends the figure. */
void bench_op_mul_mat(bench_ops_ctx *c, int type, int64_t n_tokens);
/* Times decode attention (one query over n_ctx cached positions). */
void bench_op_attention(bench_ops_ctx *c, int64_t n_ctx, int64_t n_tok);

#endif
