/* test_cpu_argmax.c: BE_OP_ARGMAX on the CPU backend against a direct
 * double-precision computation. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "backends/backend.h"
#include "quant/quant.h"

static void reference(const float *v, int64_t n, double out[4]) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    double second = -INFINITY, sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (i != best && v[i] > second) second = v[i];
        sum += exp((double)v[i] - v[best]);
    }
    out[0] = (double)best;
    out[1] = v[best];
    out[2] = second;
    out[3] = v[best] + log(sum);
}

static void run_case(int64_t n, int64_t rows, int n_threads, bool ties) {
    float *x = malloc(sizeof(float) * (size_t)(n * rows));
    float *y = malloc(sizeof(float) * (size_t)(4 * rows));
    srand(7);
    for (int64_t i = 0; i < n * rows; i++)
        x[i] = ties ? (float)(rand() % 5) : (float)rand() / RAND_MAX * 40.0f - 20.0f;
    be_backend *be = NULL;
    cr_assert_eq(elmi_be_cpu_new(n_threads, &be), ELM_OK);
    be_tensor xt, yt;
    elmi_be_tensor_init(&xt, QT_F32, n, rows, 1, 1, "logits");
    elmi_be_tensor_init(&yt, QT_F32, 4, rows, 1, 1, "summary");
    xt.data = x;
    yt.data = y;
    be_node nd = {.op = BE_OP_ARGMAX, .dst = &yt, .src = {&xt}};
    be_graph g = {.nodes = &nd, .n_nodes = 1};
    char err[256] = "";
    cr_assert_eq(be->iface->graph_compute(be, &g, err, sizeof err), ELM_OK, "%s", err);
    for (int64_t r = 0; r < rows; r++) {
        double want[4];
        reference(x + r * n, n, want);
        cr_assert_eq(y[4 * r], (float)want[0], "row %lld: argmax %g, want %g", (long long)r,
                     y[4 * r], want[0]);
        cr_assert_eq(y[4 * r + 1], (float)want[1]);
        if (n > 1) cr_assert_eq(y[4 * r + 2], (float)want[2], "row %lld: second", (long long)r);
        cr_assert(fabs(y[4 * r + 3] - want[3]) <= 1e-5 * fabs(want[3]) + 1e-5,
                  "row %lld: lse %g, want %g", (long long)r, y[4 * r + 3], want[3]);
    }
    be_free(be);
    free(x);
    free(y);
}

Test(argmax, matches_reference_on_ragged_rows) {
    run_case(32000, 1, 1, false);
    run_case(50257, 3, 2, false);
    run_case(1, 2, 2, false);
    run_case(7, 5, 2, false);
}

Test(argmax, ties_go_to_the_lowest_index) {
    run_case(1000, 4, 2, true);
}

Test(argmax, rejects_bad_shapes) {
    float x[8] = {0}, y[8];
    be_backend *be = NULL;
    cr_assert_eq(elmi_be_cpu_new(1, &be), ELM_OK);
    be_tensor xt, yt;
    elmi_be_tensor_init(&xt, QT_F32, 8, 1, 1, 1, "logits");
    elmi_be_tensor_init(&yt, QT_F32, 3, 1, 1, 1, "summary"); /* needs 4 */
    xt.data = x;
    yt.data = y;
    be_node nd = {.op = BE_OP_ARGMAX, .dst = &yt, .src = {&xt}};
    be_graph g = {.nodes = &nd, .n_nodes = 1};
    char err[256] = "";
    cr_assert_neq(be->iface->graph_compute(be, &g, err, sizeof err), ELM_OK);
    cr_assert(err[0], "an error message is expected");
    be_free(be);
}
