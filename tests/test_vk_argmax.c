/* test_vk_argmax.c: BE_OP_ARGMAX on the Vulkan backend (shaders/argmax.comp)
 * against a double-precision reference computed here, for rows of 1, 7,
 * 32000, 50257 and 151936 values (vocabulary sizes), T in {1, 3}, random
 * values and values full of ties, under limits profiles that select every
 * shader variant (subgroup and shared-memory reductions), workgroup sizes
 * from 16 to 256, and binding windows cut along T.
 *
 * Bounds: the index, the maximum and the second value are exact (they are
 * comparisons, no arithmetic); the log-sum-exp within 1e-5 relative (plus
 * 1e-5 absolute for values near 0), where F32 sums of 10^5 terms give about
 * 1e-7. The node must run on the device (no CPU fallback) whenever its
 * tensors fit one allocation, and the validation layer must report nothing. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if ELM_HAVE_VULKAN
#include "backends/backend.h"
#include "engine/sched.h"
#include "backends/vulkan/vk_backend.h"
#include "support/vk_fixture.h"
#include "quant/quant.h"

static const char *const PROFILES[] = {
    "", "pi5", "mali", "adreno", "nosubgroup", "small-buffers", "discrete",
    "nofp16,nosubgroup,discrete", "max_shared=768,max_invocations=64", "max_invocations=16,nosubgroup",
};
#define N_PROFILES (sizeof PROFILES / sizeof *PROFILES)

static const int64_t SIZES[] = {1, 7, 32000, 50257, 151936};
#define N_SIZES (sizeof SIZES / sizeof *SIZES)

/* ---------------------------------------------------------------- fixture */

typedef struct afx {
    be_backend *be;
    elm_sched sched; /* CPU fallback nodes, as the engine plans them */
    const be_iface *bi;
    const char *limits;
    uint64_t max_alloc;
    char err[1024];
} afx;

static void afx_open(afx *f, const char *limits) {
    memset(f, 0, sizeof *f);
    f->be = vk_test_open(limits, f->err, sizeof f->err);
    f->bi = f->be->iface;
    f->limits = limits;
    elmi_sched_init(&f->sched, f->be, false, 1, false);
    elm_device_info info = ELM_INIT(elm_device_info);
    cr_assert_eq(elmi_be_vk_device_info(f->be, &info), ELM_OK);
    f->max_alloc = info.max_memory_allocation_size;
}

static void afx_close(afx *f) {
    uint64_t errors = elmi_be_vk_validation_errors(f->be);
    elmi_sched_free(&f->sched);
    be_free(f->be);
    cr_assert_eq(errors, 0, "[%s] %llu validation errors", f->limits, (unsigned long long)errors);
}

static uint64_t fallbacks(afx *f) {
    return f->sched.n_fallback_nodes;
}

/* ------------------------------------------------------------- reference */

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint64_t next_u64(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Uniform in [-1, 1). */
static double unit(void) {
    return (double)(next_u64() >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0;
}

typedef enum { FILL_RANDOM, FILL_TIES, FILL_MASKED } fill_kind;

/* RANDOM: logits in [-20, 20). TIES: 6 distinct integer values, so the
 * maximum appears thousands of times in long rows (and the second value
 * equals it). MASKED: random, with about half the values -inf. Every row
 * also gets one planted feature: the maximum at the last index, at index
 * 0, or twice at two far apart places. */
static void fill(float *x, int64_t n, int64_t rows, fill_kind kind) {
    for (int64_t r = 0; r < rows; r++) {
        float *v = x + r * n;
        for (int64_t i = 0; i < n; i++) {
            if (kind == FILL_TIES) v[i] = (float)(int)(3.0 * (unit() + 1.0)) - 2.0f;
            else if (kind == FILL_MASKED && unit() < 0.0) v[i] = -INFINITY;
            else v[i] = (float)(20.0 * unit());
        }
        if (kind == FILL_TIES || n < 3) continue;
        switch (r % 3) {
        case 0: v[n - 1] = 25.0f; break;
        case 1: v[0] = 25.0f; break;
        default: v[n / 3] = v[2 * n / 3 + 1] = 25.0f; break;
        }
    }
}

/* Straight from the definition in backends/backend.h, in double. */
static void reference(const float *v, int64_t n, double out[4]) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    double second = -INFINITY, sum = 0.0, top = v[best];
    for (int64_t i = 0; i < n; i++) {
        if (i != best && v[i] > second) second = v[i];
        sum += exp((double)v[i] - top);
    }
    out[0] = (double)best;
    out[1] = top;
    out[2] = second;
    /* A row of -inf only (masked): log-sum-exp -inf, not the NaN of -inf - -inf. */
    out[3] = top == -INFINITY ? -INFINITY : top + log(sum);
}

static void check_row(const char *what, const float got[4], const float *v, int64_t n) {
    double want[4];
    reference(v, n, want);
    cr_assert_eq(got[0], (float)want[0], "%s: index %.9g, want %.9g", what, got[0], want[0]);
    cr_assert_eq(got[1], (float)want[1], "%s: max %.9g, want %.9g", what, got[1], want[1]);
    cr_assert_eq(got[2], (float)want[2], "%s: second %.9g, want %.9g", what, got[2], want[2]);
    cr_assert(got[3] == want[3] || fabs(got[3] - want[3]) <= 1e-5 * fabs(want[3]) + 1e-5,
              "%s: lse %.9g, want %.9g (error %.3g)", what, got[3], want[3], fabs(got[3] - want[3]));
}

/* --------------------------------------------------------------- one case */

/* ARGMAX of x (n, T) with row stride `stride` values, written to a (4, T)
 * summary placed `d_off` bytes into its buffer. With `via_add`, x is first
 * computed on the device as a + b (so the argmax dispatch must wait for
 * the add's writes). */
static void run_case(afx *f, int64_t n, int64_t T, fill_kind kind, int64_t stride, size_t d_off, bool via_add) {
    char what[160];
    size_t xbytes = (size_t)(stride * (T - 1) + n) * sizeof(float);
    float *x = calloc((size_t)(stride * T), sizeof(float)), *b = NULL;
    fill(x, stride, T, kind);
    be_buffer *xb, *db, *bb = NULL, *ab = NULL;
    cr_assert_eq(f->bi->buffer_alloc(f->be, xbytes, NULL, &xb), ELM_OK, "[%s] %s", f->limits,
                 elmi_be_vk_last_error(f->be));
    cr_assert_eq(f->bi->buffer_alloc(f->be, d_off + 16 * (size_t)T, NULL, &db), ELM_OK);
    be_tensor xt, dt, at, bt;
    cr_assert(elmi_be_tensor_init(&xt, QT_F32, n, T, 1, 1, "logits"));
    cr_assert(elmi_be_tensor_init(&dt, QT_F32, 4, T, 1, 1, "summary"));
    xt.nb[1] = (size_t)stride * sizeof(float);
    xt.nb[2] = xt.nb[3] = xt.nb[1] * (size_t)T;
    xt.buf = xb, dt.buf = db, dt.offs = d_off;
    be_node nodes[2];
    int n_nodes = 0;
    if (via_add) {
        /* x = a + b, b small integers; the reference reads the F32 sums
         * (Vulkan rounds additions correctly, as C does here). */
        cr_assert_eq(stride, n);
        b = malloc(xbytes);
        float *a = malloc(xbytes);
        for (int64_t i = 0; i < n * T; i++) {
            b[i] = isinf(x[i]) ? 0.0f : (float)(int)(4.0 * unit());
            a[i] = x[i] - b[i];
            x[i] = a[i] + b[i];
        }
        cr_assert_eq(f->bi->buffer_alloc(f->be, xbytes, NULL, &ab), ELM_OK);
        cr_assert_eq(f->bi->buffer_alloc(f->be, xbytes, NULL, &bb), ELM_OK);
        at = xt, bt = xt;
        at.buf = ab, bt.buf = bb;
        cr_assert_eq(f->bi->tensor_set(f->be, &at, a, 0, xbytes), ELM_OK);
        cr_assert_eq(f->bi->tensor_set(f->be, &bt, b, 0, xbytes), ELM_OK);
        nodes[n_nodes++] = (be_node){.op = BE_OP_ADD, .dst = &xt, .src = {&at, &bt}};
        free(a);
    } else {
        cr_assert_eq(f->bi->tensor_set(f->be, &xt, x, 0, xbytes), ELM_OK, "[%s] %s", f->limits,
                     elmi_be_vk_last_error(f->be));
    }
    nodes[n_nodes++] = (be_node){.op = BE_OP_ARGMAX, .dst = &dt, .src = {&xt}};
    /* A stale summary must not pass for a computed one. */
    float *got = malloc(16 * (size_t)T);
    for (int64_t i = 0; i < 4 * T; i++) got[i] = NAN;
    cr_assert_eq(f->bi->tensor_set(f->be, &dt, got, 0, 16 * (size_t)T), ELM_OK);
    uint64_t fb0 = fallbacks(f);
    bool fits = xbytes + 4096 <= f->max_alloc;
    if (fits) cr_assert(f->bi->supports_op(f->be, &nodes[n_nodes - 1]), "[%s] n %lld T %lld: not supported",
                        f->limits, (long long)n, (long long)T);
    be_graph g = {.nodes = nodes, .n_nodes = n_nodes, .exact = (n + T) % 2 == 0};
    cr_assert_eq(elmi_sched_compute(&f->sched, &g, false, f->err, sizeof f->err), ELM_OK, "[%s] %s", f->limits,
                 f->err);
    if (fits) cr_assert_eq(fallbacks(f), fb0, "[%s] n %lld T %lld ran on the CPU", f->limits, (long long)n,
                           (long long)T);
    cr_assert_eq(f->bi->tensor_get(f->be, &dt, got, 0, 16 * (size_t)T), ELM_OK);
    for (int64_t r = 0; r < T; r++) {
        snprintf(what, sizeof what, "[%s] n %lld T %lld kind %d stride %lld%s row %lld", f->limits, (long long)n,
                 (long long)T, (int)kind, (long long)stride, via_add ? " after add" : "", (long long)r);
        check_row(what, got + 4 * r, x + r * stride, n);
    }
    f->bi->buffer_free(f->be, xb);
    f->bi->buffer_free(f->be, db);
    if (ab) f->bi->buffer_free(f->be, ab);
    if (bb) f->bi->buffer_free(f->be, bb);
    free(x), free(b), free(got);
}

/* ------------------------------------------------------------------ tests */

Test(vk_argmax, sizes_kinds_and_profiles, .timeout = 1800) {
    for (size_t p = 0; p < N_PROFILES; p++) {
        afx f;
        afx_open(&f, PROFILES[p]);
        for (size_t s = 0; s < N_SIZES; s++)
            for (int64_t T = 1; T <= 3; T += 2)
                for (int k = 0; k < 3; k++) run_case(&f, SIZES[s], T, (fill_kind)k, SIZES[s], 0, false);
        afx_close(&f);
    }
}

/* Rows that are not contiguous, a summary at an offset that is not a
 * multiple of the binding alignment, and an argmax that reads what the
 * previous dispatch wrote. */
Test(vk_argmax, strided_rows_offsets_and_dependencies) {
    for (size_t p = 0; p < N_PROFILES; p++) {
        afx f;
        afx_open(&f, PROFILES[p]);
        run_case(&f, 7, 3, FILL_RANDOM, 9, 20, false);
        run_case(&f, 32000, 3, FILL_TIES, 32001, 4, false);
        run_case(&f, 50257, 3, FILL_MASKED, 50257, 48, true);
        run_case(&f, 1, 3, FILL_RANDOM, 1, 0, true);
        afx_close(&f);
    }
}

/* Many tokens: more rows than one binding window holds (64 KiB: 4 rows
 * of 4000 values), so the node is cut into dispatches along T. */
Test(vk_argmax, many_rows_split_into_dispatches) {
    const char *const profiles[] = {"", "max_range=65536,nosubgroup", "max_range=65536,pi5"};
    for (size_t p = 0; p < 3; p++) {
        afx f;
        afx_open(&f, profiles[p]);
        for (int k = 0; k < 3; k++) run_case(&f, 4000, 61, (fill_kind)k, 4000, 16, false);
        afx_close(&f);
    }
}

/* Malformed nodes are errors, not fallbacks. */
Test(vk_argmax, rejects_bad_shapes) {
    afx f;
    afx_open(&f, "");
    be_buffer *b;
    cr_assert_eq(f.bi->buffer_alloc(f.be, 4096, NULL, &b), ELM_OK);
    be_tensor xt, dt;
    elmi_be_tensor_init(&xt, QT_F32, 8, 2, 1, 1, "logits");
    elmi_be_tensor_init(&dt, QT_F32, 3, 2, 1, 1, "summary");
    xt.buf = dt.buf = b, dt.offs = 1024;
    be_node nd = {.op = BE_OP_ARGMAX, .dst = &dt, .src = {&xt}};
    be_graph g = {.nodes = &nd, .n_nodes = 1};
    cr_expect_neq(f.bi->graph_compute(f.be, &g, f.err, sizeof f.err), ELM_OK, "dst of 3 values per row");
    elmi_be_tensor_init(&dt, QT_F32, 4, 3, 1, 1, "summary");
    dt.buf = b, dt.offs = 1024;
    cr_expect_neq(f.bi->graph_compute(f.be, &g, f.err, sizeof f.err), ELM_OK, "3 summaries of 2 rows");
    f.bi->buffer_free(f.be, b);
    afx_close(&f);
}

#else

Test(vk_argmax, vulkan_not_built) {
    cr_skip_test("built without Vulkan (ELM_HAVE_VULKAN=0)");
}

#endif
