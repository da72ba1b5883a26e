/* cpu_fixture.h: a CPU backend, one host buffer and tensors carved from it,
 * for the one-node (and few-node) graph tests of the test_cpu_* files.
 * Header-only, like vk_fixture.h: only those tests link the CPU backend. */
#ifndef ELM_TEST_CPU_FIXTURE_H
#define ELM_TEST_CPU_FIXTURE_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "backends/backend.h"
#include "quant/quant.h"

typedef struct fx {
    be_backend *be;
    be_buffer *buf;
    char *base;
    size_t cap, used;
    be_tensor t[32];
    int n_t;
    char err[512];
} fx;

static inline void fx_init(fx *f, int n_threads, size_t cap) {
    memset(f, 0, sizeof *f);
    cr_assert_eq(elmi_be_cpu_new(n_threads, &f->be), ELM_OK);
    cr_assert_eq(f->be->iface->buffer_alloc(f->be, cap, NULL, &f->buf), ELM_OK);
    f->base = f->be->iface->buffer_host(f->be, f->buf);
    cr_assert_not_null(f->base);
    f->cap = cap;
}

static inline void fx_free(fx *f) {
    f->be->iface->buffer_free(f->be, f->buf);
    be_free(f->be);
}

static inline size_t row_bytes(int type, int64_t n) {
    if (type == QT_F32 || type == BE_TYPE_I32) return (size_t)n * 4;
    size_t b = 0;
    cr_assert(elmi_qtype_row_bytes(type, n, &b), "row bytes of %s x %lld", elmi_qtype_name(type),
              (long long)n);
    return b;
}

static inline be_tensor *fx_tensor(fx *f, int type, int64_t n0, int64_t n1, int64_t n2,
                                   const char *name) {
    cr_assert_lt(f->n_t, 32);
    be_tensor *t = &f->t[f->n_t++];
    memset(t, 0, sizeof *t);
    t->type = type;
    t->ne[0] = n0, t->ne[1] = n1, t->ne[2] = n2, t->ne[3] = 1;
    const qtype_traits *tr = elmi_qtype_get(type);
    t->nb[0] = tr ? tr->type_size : 4;
    t->nb[1] = row_bytes(type, n0);
    t->nb[2] = t->nb[1] * (size_t)n1;
    t->nb[3] = t->nb[2] * (size_t)n2;
    size_t size = t->nb[3];
    cr_assert_leq(f->used + size, f->cap, "fixture buffer too small");
    t->buf = f->buf;
    t->offs = f->used;
    t->data = f->base + f->used;
    f->used = (f->used + size + 63) & ~(size_t)63;
    snprintf(t->name, sizeof t->name, "%s", name);
    return t;
}

static inline elm_status fx_run(fx *f, be_node *nodes, int n, bool exact) {
    be_graph g = {.nodes = nodes, .n_nodes = n, .exact = exact};
    f->err[0] = '\0';
    return f->be->iface->graph_compute(f->be, &g, f->err, sizeof f->err);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static inline float frand(void) { /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / 8388608.0) - 1.0);
}

static inline void fill(float *x, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) x[i] = frand() * scale;
}

static inline float *f32(const be_tensor *t) {
    return t->data;
}

static inline double max_abs_diff(const float *a, const double *b, int64_t n) {
    double m = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d; /* NaN propagates as a failure */
    }
    return m;
}

static inline float cache_value(const be_tensor *c, int64_t i) {
    return c->type == QT_F16 ? elmi_fp16_to_f32(((uint16_t *)c->data)[i]) : f32(c)[i];
}

static inline void set_cache(be_tensor *c, int64_t row, int64_t n, float v_scale, bool poison) {
    for (int64_t i = 0; i < n; i++) {
        float v = poison ? NAN : frand() * v_scale;
        if (c->type == QT_F16)
            ((uint16_t *)c->data)[row * n + i] = elmi_f32_to_fp16(v);
        else
            f32(c)[row * n + i] = v;
    }
}

static inline void expect_error(fx *f, be_node *nodes, int n, const char *needle) {
    elm_status st = fx_run(f, nodes, n, true);
    cr_assert_neq(st, ELM_OK, "expected an error containing '%s'", needle);
    cr_assert(strstr(f->err, needle), "message '%s' lacks '%s'", f->err, needle);
}

#endif
