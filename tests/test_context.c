/*
 * test_context.c: rolling a context back (elm_context_truncate) computes
 * exactly as if it had only seen the kept tokens, for every kind of
 * per-context state: the plain KV cache, the ring caches of sliding-window
 * layers (gemma3) and the convolution state (lfm2), with shallow rollbacks
 * (the rings still hold what is needed) and deep ones (the context replays
 * its remembered tokens), and after the context has seen other tokens.
 *
 * Expected values are the logits of a fresh context fed the same tokens;
 * the forward passes split differently, so the comparison allows 1e-3
 * (exact mode: F32 sums in another order), while stale state gives errors
 * of order 0.1 or more on these models.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgelm.h"
#include "support/paths.h"

#define N_TOK 48
#define N_BATCH 8

static elm_model *load(const char *name) {
    char path[1024], rel[256];
    snprintf(rel, sizeof rel, "models/%s.gguf", name);
    if (!test_shared_path(rel, path, sizeof path)) return NULL;
    elm_model_params mp;
    elm_model_default_params(&mp);
    const char *dev = getenv("ELM_TEST_DEVICE"); /* test_context_vulkan sets "vulkan" */
    if (dev && *dev) {
        if (!strncmp(dev, "vulkan", 6) && !test_have_vulkan_device())
            cr_skip_test("ELM_TEST_DEVICE=%s but there is no Vulkan device: skipped", dev);
        mp.device = dev;
    }
    elm_model *m = NULL;
    char err[512];
    cr_assert_eq(elm_model_load(path, &mp, &m, err, sizeof err), ELM_OK, "%s", err);
    return m;
}

static elm_context *new_ctx(const elm_model *m) {
    elm_context_params cp;
    elm_context_default_params(&cp);
    cp.n_ctx = 128;
    cp.n_batch = N_BATCH;
    cp.mode = ELM_MODE_EXACT;
    cp.n_threads = 2;
    elm_context *c = NULL;
    char err[512];
    cr_assert_eq(elm_context_new(m, &cp, &c, err, sizeof err), ELM_OK, "%s", err);
    return c;
}

static void make_tokens(const elm_model *m, elm_token *t, size_t n, unsigned salt) {
    elm_model_info info = ELM_INIT(elm_model_info);
    cr_assert_eq(elm_model_get_info(m, &info), ELM_OK);
    uint32_t span = info.n_vocab > 1000 ? 1000 : info.n_vocab - 3;
    for (size_t i = 0; i < n; i++) t[i] = (elm_token)(3 + (i * 7919u + salt * 104729u) % span);
}

static void decode(elm_context *c, const elm_token *t, size_t n) {
    cr_assert_eq(elm_decode(c, t, n), ELM_OK, "%s", elm_context_last_error(c));
}

static double max_diff(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

typedef struct fixture {
    elm_model *m;
    size_t n_vocab;
    elm_token tok[N_TOK];
    float *want; /* the last logits of a fresh context fed tok */
} fixture;

static bool fixture_open(fixture *f, const char *name) {
    memset(f, 0, sizeof *f);
    f->m = load(name);
    if (!f->m) return false;
    elm_model_info info = ELM_INIT(elm_model_info);
    elm_model_get_info(f->m, &info);
    f->n_vocab = info.n_vocab;
    make_tokens(f->m, f->tok, N_TOK, 1);
    elm_context *c = new_ctx(f->m);
    decode(c, f->tok, N_TOK);
    f->want = malloc(f->n_vocab * sizeof *f->want);
    memcpy(f->want, elm_get_logits(c, -1), f->n_vocab * sizeof *f->want);
    elm_context_free(c);
    return true;
}

static void fixture_close(fixture *f) {
    free(f->want);
    elm_model_free(f->m);
}

static void expect_want(const fixture *f, elm_context *c, const char *what) {
    const float *got = elm_get_logits(c, -1);
    cr_assert_not_null(got);
    double d = max_diff(got, f->want, f->n_vocab);
    cr_expect_leq(d, 1e-3, "%s: max |dlogit| %g against a fresh context", what, d);
    cr_expect_eq(elm_context_n_past(c), N_TOK);
    cr_expect_eq(memcmp(elm_context_tokens(c), f->tok, sizeof f->tok), 0, "%s: tokens", what);
}

/* keep < seen: decode `seen` tokens, roll back to `keep`, finish. */
static void rollback_case(const fixture *f, size_t seen, size_t keep, bool replays) {
    elm_context *c = new_ctx(f->m);
    decode(c, f->tok, seen);
    cr_assert_eq(elm_context_truncate(c, (uint32_t)keep), ELM_OK, "%s", elm_context_last_error(c));
    cr_assert_eq(elm_context_n_past(c), keep);
    cr_assert_null(elm_get_logits(c, -1), "logits must be gone after a rollback");
    decode(c, f->tok + keep, N_TOK - keep);
    char what[96];
    snprintf(what, sizeof what, "seen %zu, kept %zu", seen, keep);
    expect_want(f, c, what);
    uint64_t expected = seen + (replays ? keep : 0) + (N_TOK - keep);
    cr_expect_eq(elm_context_n_evaluated(c), expected, "%s: evaluated %llu tokens, expected %llu",
                 what, (unsigned long long)elm_context_n_evaluated(c),
                 (unsigned long long)expected);
    elm_context_free(c);
}

/* The context first sees a different continuation after a shared prefix. */
static void divergent_case(const fixture *f, size_t prefix) {
    elm_token other[N_TOK];
    memcpy(other, f->tok, prefix * sizeof *other);
    make_tokens(f->m, other + prefix, N_TOK - prefix, 2);
    elm_context *c = new_ctx(f->m);
    decode(c, other, N_TOK);
    cr_assert_eq(elm_context_truncate(c, (uint32_t)prefix), ELM_OK);
    decode(c, f->tok + prefix, N_TOK - prefix);
    char what[96];
    snprintf(what, sizeof what, "other tokens after a prefix of %zu", prefix);
    expect_want(f, c, what);
    elm_context_free(c);
}

static void check_model(const char *name, bool has_rings) {
    fixture f;
    if (!fixture_open(&f, name)) {
        fprintf(stderr, "test_context: models/%s.gguf not found in %s: skipped\n", name,
                test_shared_dir());
        cr_skip_test("models/%s.gguf not found", name);
    }
    rollback_case(&f, 40, 36, false);                   /* shallower than a pass */
    rollback_case(&f, N_TOK, 5, has_rings);             /* deep: rings must replay */
    rollback_case(&f, 20, 0, false);                    /* back to nothing */
    divergent_case(&f, 21);
    divergent_case(&f, 45);
    /* A rollback that would grow the context is refused, and harmless. */
    elm_context *c = new_ctx(f.m);
    decode(c, f.tok, 10);
    cr_expect_eq(elm_context_truncate(c, 11), ELM_ERR_INVALID_ARG);
    cr_expect_neq(elm_context_last_error(c)[0], 0);
    cr_expect_eq(elm_context_n_past(c), 10);
    decode(c, f.tok + 10, N_TOK - 10);
    expect_want(&f, c, "after a refused rollback");
    elm_context_free(c);
    fixture_close(&f);
}

Test(truncate, null_context) {
    cr_expect_eq(elm_context_truncate(NULL, 0), ELM_ERR_INVALID_ARG);
    cr_expect_null(elm_context_tokens(NULL));
    cr_expect_eq(elm_context_n_evaluated(NULL), 0);
}

Test(truncate, kv_cache_llama) { check_model("stories260K", false); }
Test(truncate, kv_cache_qwen3) { check_model("synth-qwen3-Q8_0", false); }
Test(truncate, sliding_window_rings_gemma3) { check_model("synth-gemma3-Q8_0", true); }
Test(truncate, convolution_state_lfm2) { check_model("synth-lfm2-Q8_0", true); }

/* Sliding-window layers hold about their window, not the context: for a
 * 4096-token context the KV rows of gemma3 come to about
 * 1/6 x 4096 + 5/6 x window per layer (issue 10), here within 10%. */
Test(memory, sliding_window_layers_do_not_grow_with_the_context) {
    elm_model *m = load("synth-gemma3-Q8_0");
    if (!m) cr_skip_test("models/synth-gemma3-Q8_0.gguf not found");
    elm_model_info info = ELM_INIT(elm_model_info);
    cr_assert_eq(elm_model_get_info(m, &info), ELM_OK);
    const double window = 16, n_ctx = 4096, layers = info.n_layer;
    const double row_bytes = 2.0 /* K and V */ * info.head_dim * info.n_head_kv * 2 /* F16 */;
    elm_context_params cp;
    elm_context_default_params(&cp);
    cp.n_ctx = (uint32_t)n_ctx;
    elm_context *c = NULL;
    char err[512];
    cr_assert_eq(elm_context_new(m, &cp, &c, err, sizeof err), ELM_OK, "%s", err);
    elm_memory_usage mu = ELM_INIT(elm_memory_usage);
    cr_assert_eq(elm_context_memory(c, &mu), ELM_OK);
    double rows_per_layer = (double)mu.kv_bytes / row_bytes / layers;
    double ideal = n_ctx / 6 + 5 * window / 6;
    fprintf(stderr, "test_context: gemma3, n_ctx 4096: %.0f KV rows per layer (ideal %.0f, "
            "full %.0f), %llu bytes\n", rows_per_layer, ideal, n_ctx,
            (unsigned long long)mu.kv_bytes);
    cr_expect_geq(rows_per_layer, ideal * 0.999);
    cr_expect_leq(rows_per_layer, ideal * 1.10, "%.0f rows per layer, ideal %.0f", rows_per_layer,
                  ideal);
    elm_context_free(c);
    elm_model_free(m);
}
