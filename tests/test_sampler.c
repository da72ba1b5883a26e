/* test_sampler.c: the sampler against expectations computed here independently. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sampler.h"

static elm_sampler_params plain(float temp) {
    return (elm_sampler_params){.temperature = temp, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f,
                                .repeat_penalty = 1.0f, .repeat_last_n = 64, .seed = 1234};
}

static elm_sampler *make(const elm_sampler_params *p, uint32_t n) {
    elm_sampler *s = NULL;
    cr_assert_eq(elmi_sampler_new(p, n, &s), ELM_OK);
    cr_assert_not_null(s);
    return s;
}

/* A test-local generator, unrelated to the sampler's own. */
static uint32_t lcg(uint64_t *x) {
    *x = *x * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(*x >> 33);
}

static void random_logits(float *l, uint32_t n, uint64_t seed, float scale) {
    for (uint32_t i = 0; i < n; i++) l[i] = ((float)lcg(&seed) / 2147483648.0f - 0.5f) * scale;
}

/* Logits whose softmax at temperature 1 is exactly p (up to rounding). */
static void logits_from_probs(float *l, const double *p, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) l[i] = p[i] > 0 ? (float)log(p[i]) : -INFINITY;
}

static void count_draws(elm_sampler *s, const float *l, uint32_t n, long draws, long *counts) {
    memset(counts, 0, n * sizeof *counts);
    for (long d = 0; d < draws; d++) {
        int32_t t = elmi_sampler_sample(s, l);
        cr_assert(t >= 0 && (uint32_t)t < n, "drew %d", t);
        counts[t]++;
    }
}

/* Pearson's chi-square of observed counts against probabilities p. */
static double chi_square(const long *counts, const double *p, uint32_t n, long draws) {
    double chi = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (p[i] == 0) {
            cr_assert_eq(counts[i], 0, "token %u has probability 0 but was drawn", i);
            continue;
        }
        double e = p[i] * (double)draws, d = (double)counts[i] - e;
        chi += d * d / e;
    }
    return chi;
}

/* 99.9% quantiles of the chi-square distribution, by degrees of freedom. */
static double chi_critical(int df) {
    static const double q[] = {0, 10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32, 26.12};
    cr_assert(df >= 1 && df <= 8);
    return q[df];
}

static void expect_distribution(elm_sampler *s, const float *l, const double *p, uint32_t n) {
    enum { DRAWS = 200000 };
    long counts[16];
    cr_assert(n <= 16);
    count_draws(s, l, n, DRAWS, counts);
    int df = -1;
    for (uint32_t i = 0; i < n; i++) df += p[i] > 0;
    if (df == 0) {
        for (uint32_t i = 0; i < n; i++) cr_assert_eq(counts[i], p[i] > 0 ? DRAWS : 0);
        return;
    }
    double chi = chi_square(counts, p, n, DRAWS);
    cr_expect_lt(chi, chi_critical(df), "chi-square %.2f with %d dof", chi, df);
}

static void normalize(double *p, uint32_t n) {
    double sum = 0;
    for (uint32_t i = 0; i < n; i++) sum += p[i];
    for (uint32_t i = 0; i < n; i++) p[i] /= sum;
}

/* ---------------------------------------------------------------- greedy */

Test(sampler, greedy_ties_go_to_lower_id) {
    elm_sampler_params p = plain(0.0f);
    elm_sampler *s = make(&p, 6);
    float l[6] = {1.0f, 3.0f, -2.0f, 3.0f, 2.9f, 3.0f};
    cr_expect_eq(elmi_sampler_sample(s, l), 1);
    float m[6] = {-INFINITY, -5.0f, -5.0f, -INFINITY, -6.0f, -5.0f};
    cr_expect_eq(elmi_sampler_sample(s, m), 1);
    elmi_sampler_free(s);
}

Test(sampler, negative_temperature_is_greedy) {
    elm_sampler_params p = plain(-1.0f);
    elm_sampler *s = make(&p, 4);
    float l[4] = {0.5f, 0.1f, 0.7f, 0.7f};
    for (int i = 0; i < 100; i++) cr_assert_eq(elmi_sampler_sample(s, l), 2);
    elmi_sampler_free(s);
}

Test(sampler, top_k_one_equals_greedy) {
    enum { N = 5000 };
    static float l[N];
    elm_sampler_params p = plain(1.5f);
    p.top_k = 1;
    elm_sampler *s = make(&p, N);
    for (uint64_t row = 0; row < 50; row++) {
        random_logits(l, N, row + 1, 20.0f);
        if (row % 5 == 0) l[N - 1] = l[7] = 100.0f; /* a tie: the lower id wins */
        uint32_t best = 0;
        for (uint32_t i = 1; i < N; i++)
            if (l[i] > l[best]) best = i;
        cr_assert_eq(elmi_sampler_sample(s, l), (int32_t)best, "row %llu", (unsigned long long)row);
    }
    elmi_sampler_free(s);
}

Test(sampler, logits_are_not_modified) {
    enum { N = 1000 };
    static float l[N], copy[N];
    random_logits(l, N, 99, 10.0f);
    memcpy(copy, l, sizeof l);
    elm_sampler_params p = plain(0.8f);
    p.top_k = 40;
    p.top_p = 0.9f;
    p.min_p = 0.05f;
    p.repeat_penalty = 1.3f;
    elm_sampler *s = make(&p, N);
    for (int32_t i = 0; i < 20; i++) elmi_sampler_accept(s, i * 37);
    for (int i = 0; i < 10; i++) elmi_sampler_sample(s, l);
    cr_expect_eq(memcmp(l, copy, sizeof l), 0);
    elmi_sampler_free(s);
}

/* ----------------------------------------------------------- determinism */

static void sequence(uint64_t seed, int32_t *out, int n) {
    enum { V = 100 };
    float l[V];
    random_logits(l, V, 5, 1.0f);
    elm_sampler_params p = plain(1.0f);
    p.seed = seed;
    elm_sampler *s = make(&p, V);
    for (int i = 0; i < n; i++) out[i] = elmi_sampler_sample(s, l);
    elmi_sampler_free(s);
}

Test(sampler, same_seed_same_sequence_different_seed_different) {
    enum { K = 200 };
    int32_t a[K], b[K], c[K];
    sequence(42, a, K);
    sequence(42, b, K);
    sequence(43, c, K);
    cr_expect_eq(memcmp(a, b, sizeof a), 0);
    int same = 0;
    for (int i = 0; i < K; i++) same += a[i] == c[i];
    /* 100 nearly uniform tokens: chance agreement is about 1%. */
    cr_expect_lt(same, 20, "%d of %d draws agree across seeds", same, K);
}

Test(sampler, reset_reseeds_and_forgets) {
    enum { V = 50, K = 64 };
    float l[V];
    random_logits(l, V, 8, 2.0f);
    elm_sampler_params p = plain(1.0f);
    p.repeat_penalty = 2.0f;
    elm_sampler *s = make(&p, V);
    int32_t a[K], b[K];
    for (int i = 0; i < K; i++) a[i] = elmi_sampler_sample(s, l);
    for (int i = 0; i < 10; i++) elmi_sampler_accept(s, i);
    elmi_sampler_reset(s);
    for (int i = 0; i < K; i++) b[i] = elmi_sampler_sample(s, l);
    cr_expect_eq(memcmp(a, b, sizeof a), 0);
    elmi_sampler_free(s);
}

/* ---------------------------------------------------------- distribution */

Test(sampler, frequencies_match_softmax) {
    double p[5] = {0.5, 0.25, 0.125, 0.0625, 0.0625};
    float l[5];
    logits_from_probs(l, p, 5);
    elm_sampler_params sp = plain(1.0f);
    elm_sampler *s = make(&sp, 5);
    expect_distribution(s, l, p, 5);
    elmi_sampler_free(s);
}

Test(sampler, temperature_scales_logits) {
    float l[4] = {2.0f, 1.0f, 0.0f, -1.0f};
    double p[4];
    const float temp = 2.5f;
    for (int i = 0; i < 4; i++) p[i] = exp(l[i] / temp);
    normalize(p, 4);
    elm_sampler_params sp = plain(temp);
    elm_sampler *s = make(&sp, 4);
    expect_distribution(s, l, p, 4);
    elmi_sampler_free(s);
}

Test(sampler, masked_tokens_are_never_drawn) {
    double p[6] = {0.2, 0, 0.3, 0, 0.5, 0};
    float l[6];
    logits_from_probs(l, p, 6);
    elm_sampler_params sp = plain(0.7f);
    for (int i = 0; i < 6; i++) p[i] = p[i] > 0 ? exp(l[i] / 0.7) : 0;
    normalize(p, 6);
    elm_sampler *s = make(&sp, 6);
    expect_distribution(s, l, p, 6);
    elmi_sampler_free(s);
}

Test(sampler, top_k_renormalizes_over_the_k_best) {
    double p[6] = {0.05, 0.3, 0.1, 0.25, 0.2, 0.1};
    float l[6];
    logits_from_probs(l, p, 6);
    elm_sampler_params sp = plain(1.0f);
    sp.top_k = 3;
    elm_sampler *s = make(&sp, 6);
    double q[6] = {0, 0.3, 0, 0.25, 0.2, 0};
    normalize(q, 6);
    expect_distribution(s, l, q, 6);
    elmi_sampler_free(s);
}

/* Probabilities 0.4, 0.3, 0.2, 0.1 spread over shuffled ids. */
static const int32_t ids4[4] = {5, 2, 7, 0};
static const double probs4[4] = {0.4, 0.3, 0.2, 0.1};

static void run_cut(float top_p, float min_p, int32_t top_k, int n_kept) {
    double p[8] = {0}, q[8] = {0};
    for (int r = 0; r < 4; r++) p[ids4[r]] = probs4[r];
    for (int r = 0; r < n_kept; r++) q[ids4[r]] = probs4[r];
    normalize(q, 8);
    float l[8];
    logits_from_probs(l, p, 8);
    elm_sampler_params sp = plain(1.0f);
    sp.top_p = top_p;
    sp.min_p = min_p;
    sp.top_k = top_k;
    elm_sampler *s = make(&sp, 8);
    expect_distribution(s, l, q, 8);
    elmi_sampler_free(s);
}

Test(sampler, top_p_keeps_smallest_set_reaching_p) {
    run_cut(0.65f, 0, 0, 2); /* 0.4 < 0.65 <= 0.7 */
    run_cut(0.75f, 0, 0, 3); /* 0.7 < 0.75 <= 0.9 */
    run_cut(0.35f, 0, 0, 1);
    run_cut(0.95f, 0, 0, 4);
    run_cut(0.0f, 0, 0, 1); /* keeps at least one */
    run_cut(0.75f, 0, 6, 3); /* the same after top-k, which sorts */
}

Test(sampler, min_p_keeps_tokens_near_the_best) {
    run_cut(1.0f, 0.6f, 0, 2);  /* floor 0.24 */
    run_cut(1.0f, 0.3f, 0, 3);  /* floor 0.12 */
    run_cut(1.0f, 0.2f, 0, 4);  /* floor 0.08 */
    run_cut(1.0f, 5.0f, 0, 1);  /* only the best */
    run_cut(1.0f, 0.6f, 3, 2);
}

Test(sampler, top_p_then_min_p_keeps_the_shorter_prefix) {
    run_cut(0.65f, 0.3f, 0, 2);
    run_cut(0.95f, 0.6f, 0, 2);
    run_cut(0.95f, 0.3f, 0, 3);
}

/* Expected top-p set over a large vocabulary by a full sort. */
static int by_logit_desc(const void *a, const void *b, void *l) {
    const float *lg = l;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (lg[x] != lg[y]) return lg[x] < lg[y] ? 1 : -1;
    return x < y ? -1 : 1;
}

Test(sampler, top_p_on_a_large_vocabulary) {
    enum { N = 150000 };
    static float l[N];
    static int32_t rank[N];
    static long counts[N];
    random_logits(l, N, 77, 4.0f);
    for (int i = 0; i < 12; i++) l[(i * 12347 + 11) % N] = 14.0f - (float)i * 0.25f;
    for (int32_t i = 0; i < N; i++) rank[i] = i;
    qsort_r(rank, N, sizeof *rank, by_logit_desc, l);
    double sum = 0, cum = 0;
    for (int32_t i = 0; i < N; i++) sum += exp((double)l[i] - l[rank[0]]);
    const double top_p = 0.8;
    int kept = 0;
    while (cum < top_p * sum) cum += exp((double)l[rank[kept++]] - l[rank[0]]);
    cr_assert(kept > 3 && kept < 12, "test distribution kept %d", kept);

    elm_sampler_params sp = plain(1.0f);
    sp.top_p = (float)top_p;
    elm_sampler *s = make(&sp, N);
    memset(counts, 0, sizeof counts);
    /* The smallest kept probability is about 5%: 1000 draws see every one. */
    for (int d = 0; d < 1000; d++) counts[elmi_sampler_sample(s, l)]++;
    for (int i = 0; i < kept; i++) cr_expect_gt(counts[rank[i]], 0, "rank %d never drawn", i);
    long inside = 0;
    for (int i = 0; i < kept; i++) inside += counts[rank[i]];
    cr_expect_eq(inside, 1000, "drew tokens outside the top-p set");
    elmi_sampler_free(s);
}

/* ------------------------------------------------------ repetition penalty */

Test(sampler, penalty_divides_positive_logits) {
    elm_sampler_params p = plain(0.0f);
    p.repeat_penalty = 1.1f;
    elm_sampler *s = make(&p, 4);
    float l[4] = {2.0f, 1.9f, -1.0f, 0.0f}; /* 2.0 / 1.1 = 1.82 < 1.9 */
    cr_expect_eq(elmi_sampler_sample(s, l), 0);
    elmi_sampler_accept(s, 0);
    cr_expect_eq(elmi_sampler_sample(s, l), 1);
    elmi_sampler_free(s);
}

Test(sampler, penalty_multiplies_negative_logits) {
    elm_sampler_params p = plain(0.0f);
    p.repeat_penalty = 1.1f;
    elm_sampler *s = make(&p, 3);
    float l[3] = {-1.0f, -1.05f, -3.0f}; /* -1.0 * 1.1 = -1.1 < -1.05 */
    elmi_sampler_accept(s, 0);
    cr_expect_eq(elmi_sampler_sample(s, l), 1);
    elmi_sampler_free(s);
}

Test(sampler, penalty_counts_each_token_once) {
    elm_sampler_params p = plain(0.0f);
    p.repeat_penalty = 1.1f;
    elm_sampler *s = make(&p, 2);
    float l[2] = {2.0f, 1.7f}; /* once: 1.82 > 1.7; twice would be 1.65 */
    elmi_sampler_accept(s, 0);
    elmi_sampler_accept(s, 0);
    elmi_sampler_accept(s, 0);
    cr_expect_eq(elmi_sampler_sample(s, l), 0);
    elmi_sampler_free(s);
}

Test(sampler, penalty_window_is_repeat_last_n) {
    elm_sampler_params p = plain(0.0f);
    p.repeat_penalty = 1.5f;
    p.repeat_last_n = 2;
    elm_sampler *s = make(&p, 5);
    float l[5] = {2.0f, 1.5f, 0.0f, 0.0f, 0.0f};
    elmi_sampler_accept(s, 0);
    elmi_sampler_accept(s, 3);
    cr_expect_eq(elmi_sampler_sample(s, l), 1); /* 0 is in the window */
    elmi_sampler_accept(s, 4);
    cr_expect_eq(elmi_sampler_sample(s, l), 0); /* 0 slid out */
    elmi_sampler_reset(s);
    elmi_sampler_accept(s, 0);
    p.repeat_last_n = 0;
    elm_sampler *off = make(&p, 5);
    elmi_sampler_accept(off, 0);
    cr_expect_eq(elmi_sampler_sample(off, l), 0);
    cr_expect_eq(elmi_sampler_sample(s, l), 1);
    elmi_sampler_free(off);
    elmi_sampler_free(s);
}

Test(sampler, penalty_applies_before_top_k) {
    elm_sampler_params p = plain(1.0f);
    p.repeat_penalty = 4.0f;
    p.top_k = 1;
    elm_sampler *s = make(&p, 3);
    float l[3] = {3.0f, 1.0f, 2.0f};
    elmi_sampler_accept(s, 0);
    for (int i = 0; i < 50; i++) cr_assert_eq(elmi_sampler_sample(s, l), 2);
    elmi_sampler_free(s);
}

/* ---------------------------------------------------------------- errors */

Test(sampler, non_finite_logits_give_minus_one) {
    elm_sampler_params p = plain(0.8f);
    elm_sampler *s = make(&p, 3);
    float nan_row[3] = {1.0f, NAN, 0.0f};
    float inf_row[3] = {1.0f, INFINITY, 0.0f};
    float masked[3] = {-INFINITY, -INFINITY, -INFINITY};
    cr_expect_eq(elmi_sampler_sample(s, nan_row), -1);
    cr_expect_eq(elmi_sampler_sample(s, inf_row), -1);
    cr_expect_eq(elmi_sampler_sample(s, masked), -1);
    elmi_sampler_free(s);
    p.temperature = 0;
    s = make(&p, 3);
    cr_expect_eq(elmi_sampler_sample(s, masked), -1);
    cr_expect_eq(elmi_sampler_sample(s, nan_row), -1);
    elmi_sampler_free(s);
}

Test(sampler, invalid_params_are_rejected) {
    elm_sampler *s = (elm_sampler *)&s;
    elm_sampler_params ok = plain(1.0f), p;
    cr_expect_eq(elmi_sampler_new(&ok, 0, &s), ELM_ERR_INVALID_ARG);
    cr_expect_null(s);
    cr_expect_eq(elmi_sampler_new(NULL, 10, &s), ELM_ERR_INVALID_ARG);
    cr_expect_eq(elmi_sampler_new(&ok, 10, NULL), ELM_ERR_INVALID_ARG);
    p = ok, p.temperature = NAN;
    cr_expect_eq(elmi_sampler_new(&p, 10, &s), ELM_ERR_INVALID_ARG);
    p = ok, p.temperature = INFINITY;
    cr_expect_eq(elmi_sampler_new(&p, 10, &s), ELM_ERR_INVALID_ARG);
    p = ok, p.repeat_penalty = 0;
    cr_expect_eq(elmi_sampler_new(&p, 10, &s), ELM_ERR_INVALID_ARG);
    p = ok, p.repeat_last_n = -1;
    cr_expect_eq(elmi_sampler_new(&p, 10, &s), ELM_ERR_INVALID_ARG);
    p = ok, p.top_p = NAN;
    cr_expect_eq(elmi_sampler_new(&p, 10, &s), ELM_ERR_INVALID_ARG);
    elmi_sampler_free(NULL);
    elmi_sampler_accept(NULL, 3);
    cr_expect_eq(elmi_sampler_sample(NULL, NULL), -1);
}

Test(sampler, out_of_range_history_is_ignored) {
    elm_sampler_params p = plain(0.0f);
    p.repeat_penalty = 2.0f;
    elm_sampler *s = make(&p, 2);
    elmi_sampler_accept(s, -5);
    elmi_sampler_accept(s, 2);
    elmi_sampler_accept(s, INT32_MAX);
    float l[2] = {2.0f, 1.5f};
    cr_expect_eq(elmi_sampler_sample(s, l), 0);
    elmi_sampler_free(s);
}
