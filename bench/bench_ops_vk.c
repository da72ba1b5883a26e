/* bench_ops_vk.c: what bench --ops needs to drive a Vulkan device: the
 * backend on device N of "vulkan:N", and the device's own copy bandwidth
 * (vkCmdCopyBuffer between two device buffers, timed with timestamp
 * queries where the queue has them). The matrix products and attention go
 * through the backend interface like the CPU's (bench_ops_kernels.c). */
#include <stdlib.h>
#include <string.h>

#include "bench/bench_ops.h"

#if defined(ELM_HAVE_VULKAN) && ELM_HAVE_VULKAN
#include "backends/vulkan/vk_backend.h"

#define COPY_REPS 4
#define COPY_MAX_RUNS 64

elm_status bench_vk_create(const elm_device_info *dev, int n_threads, be_backend **out) {
    (void)n_threads;
    be_vk_options o = elmi_be_vk_default_options();
    const char *colon = strchr(dev->id, ':');
    o.device = colon ? atoi(colon + 1) : -1;
    o.quiet = true;
    char err[256];
    return elmi_be_vk_new(&o, out, err, sizeof err);
}

elm_status bench_vk_copy_gbps(be_backend *be, int n_threads, size_t bytes, double budget_ms,
                              double *ms, double *gbps) {
    (void)n_threads;
    *ms = *gbps = 0;
    be_buffer *src = NULL, *dst = NULL;
    const be_iface *bi = be->iface;
    double t[COPY_MAX_RUNS], spent = 0, one = 0;
    int n = 0;
    elm_status st = bi->buffer_alloc(be, bytes, NULL, &src);
    if (st != ELM_OK) goto done;
    st = bi->buffer_alloc(be, bytes, NULL, &dst);
    if (st != ELM_OK) goto done;
    /* A warm-up submission, then submissions of COPY_REPS copies until the
     * budget is spent (at least three); the figure is the median per copy. */
    st = elmi_be_vk_copy_buffer(be, dst, src, bytes, 1, &one);
    if (st != ELM_OK) goto done;
    while (n < COPY_MAX_RUNS && (n < 3 || spent < budget_ms)) {
        double t0 = bench_now_ms();
        st = elmi_be_vk_copy_buffer(be, dst, src, bytes, COPY_REPS, &t[n]);
        if (st != ELM_OK) goto done;
        spent += bench_now_ms() - t0;
        n++;
    }
    *ms = bench_median(t, n);
    *gbps = *ms > 0 ? 2.0 * (double)bytes / (*ms * 1e-3) / 1e9 : 0;
done:
    if (dst) bi->buffer_free(be, dst);
    if (src) bi->buffer_free(be, src);
    return st;
}
#endif
