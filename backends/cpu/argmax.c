/* argmax.c: the per-row summary greedy decoding reads instead of the logits. */
#include <math.h>

#include "backends/cpu/ops.h"
#include "common/status.h"
#include "quant/quant.h"

elm_status elmi_cpu_argmax_check(const cpu_check *c) {
    const be_tensor *x = c->node->src[0];
    ELM_TRY(elmi_cpu_check_tensor(c, x, "src0", QT_F32));
    if (x->ne[0] < 1 || x->ne[0] >= (1 << 24) || x->ne[2] != 1 || x->ne[3] != 1)
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, x, "src0",
                              "rows of %lld values: expected 1 to 2^24 - 1 per row",
                              (long long)x->ne[0]);
    return elmi_cpu_check_f32(c, c->node->dst, "dst", 4, x->ne[1], 1, 1);
}

/* One thread per row, so the sum's order never depends on the thread count. */
void elmi_cpu_argmax(const be_node *node, int ith, int nth) {
    const be_tensor *x = node->src[0];
    int64_t n = x->ne[0], r0, r1;
    elmi_cpu_split(x->ne[1], ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        const float *v = cpu_row(x, r, 0, 0);
        float *out = cpu_row(node->dst, r, 0, 0);
        int64_t best = 0;
        float top1 = v[0], top2 = -INFINITY;
        for (int64_t i = 1; i < n; i++) {
            if (v[i] > top1) {
                top2 = top1;
                top1 = v[i];
                best = i;
            } else if (v[i] > top2) {
                top2 = v[i];
            }
        }
        double sum = 0.0;
        for (int64_t i = 0; i < n; i++) sum += exp((double)v[i] - (double)top1);
        out[0] = (float)best;
        out[1] = top1;
        out[2] = top2;
        out[3] = (float)((double)top1 + log(sum));
    }
}
