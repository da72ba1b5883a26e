/*
 * test_cpu_matmul.c: elmi_cpu_mul_mat for every weight type and both modes, the
 * SIMD dot kernels against the quant module's scalar references, and the
 * thread pool.
 *
 * References are computed here, independently of the code under test:
 *   exact mode  vs  sum over k of (double)to_float(w)[k] * x[k]  (+ bias)
 *   fast mode   vs  the reference vec_dot of w with x quantized by the
 *                   reference from_float of the vec_dot_type (+ bias)
 * Error metric: NMSE = sum (got - want)^2 / sum want^2 over the output.
 * Bounds: exact 1e-10 (F32 accumulation over K < 1000 terms vs double),
 * fast 1e-10 (same operands, only the float summation order differs),
 * kernels per dot |got - want| <= 1e-5 * sum |w_k * y_k| (+ 1e-30).
 * Where a level has tiled kernels (gemm.h), fast mode and its dot kernels
 * must equal the reference vec_dot bit for bit, and the exact mode's SIMD
 * dequantization must equal the reference to_float bit for bit.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/backend.h"
#include "backends/cpu/gemm.h"
#include "backends/cpu/matmul.h"
#include "backends/cpu/threadpool.h"
#include "backends/cpu/vec_dot.h"
#include "quant/quant.h"

#define NMSE_EXACT 1e-10
#define NMSE_FAST 1e-10
#define KERNEL_REL 1e-5

static const int weight_types[] = {QT_F32,  QT_F16,  QT_BF16, QT_Q4_0, QT_Q4_1, QT_Q5_0,
                                   QT_Q5_1, QT_Q8_0, QT_Q4_K, QT_Q5_K, QT_Q6_K};
#define N_WEIGHT_TYPES (int)(sizeof weight_types / sizeof weight_types[0])

/* ------------------------------------------------------------ helpers */

static uint64_t rng = 0x2545F4914F6CDD1Dull;

static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (2.0 / 16777216.0) - 1.0);
}

static const qtype_traits *traits(int type) {
    const qtype_traits *tr = elmi_qtype_get(type);
    cr_assert_not_null(tr);
    return tr;
}

static size_t row_bytes(int type, int64_t n) {
    size_t b = 0;
    cr_assert(elmi_qtype_row_bytes(type, n, &b), "%s rows of %lld", elmi_qtype_name(type), (long long)n);
    return b;
}

/* K with a few blocks, odd block counts (the kernels pair blocks) and, for
 * the float types, a tail that is not a multiple of the vector width. */
static int64_t pick_k(int type) {
    int64_t bs = traits(type)->block_size;
    if (bs == QK_K) return 3 * QK_K;
    if (bs == 32) return 11 * 32;
    return 357;
}

typedef struct mat {
    be_tensor t;
    void *mem;
} mat;

/* n1 rows of n0 values of `type`, rows `pad` bytes apart beyond their size. */
static void mat_init(mat *m, int type, int64_t n0, int64_t n1, size_t pad) {
    memset(m, 0, sizeof *m);
    m->t.type = type;
    m->t.ne[0] = n0;
    m->t.ne[1] = n1;
    m->t.ne[2] = m->t.ne[3] = 1;
    m->t.nb[0] = traits(type)->type_size;
    m->t.nb[1] = row_bytes(type, n0) + pad;
    m->t.nb[2] = m->t.nb[3] = m->t.nb[1] * (size_t)n1;
    m->mem = calloc(1, m->t.nb[2]);
    cr_assert_not_null(m->mem);
    m->t.data = m->mem;
}

static void *mat_row(const mat *m, int64_t r) { return (char *)m->mem + (size_t)r * m->t.nb[1]; }

/* Random weights of `type`: values with a per-row scale and offset (so the
 * k-quant minimums matter), quantized by the reference quantizer. */
static void fill_weights(mat *w) {
    int64_t K = w->t.ne[0];
    float *tmp = malloc((size_t)K * sizeof *tmp);
    for (int64_t r = 0; r < w->t.ne[1]; r++) {
        float scale = 0.1f + 2.0f * fabsf(frand()), off = 0.3f * frand();
        for (int64_t k = 0; k < K; k++) tmp[k] = scale * frand() + off;
        traits(w->t.type)->from_float(tmp, mat_row(w, r), K);
    }
    free(tmp);
}

static void fill_f32(mat *x) {
    for (int64_t r = 0; r < x->t.ne[1]; r++) {
        float *row = mat_row(x, r);
        for (int64_t k = 0; k < x->t.ne[0]; k++) row[k] = frand();
    }
}

static double nmse(const float *got, const double *want, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += (got[i] - want[i]) * (got[i] - want[i]);
        den += want[i] * want[i];
    }
    return den > 0 ? num / den : num;
}

/* dst column t as a contiguous copy of N floats into out[t * N ...]. */
static void gather(const mat *dst, float *out) {
    int64_t N = dst->t.ne[0];
    for (int64_t t = 0; t < dst->t.ne[1]; t++) memcpy(out + t * N, mat_row(dst, t), (size_t)N * 4);
}

/* ---------------------------------------------------------- references */

static void ref_exact(const mat *w, const mat *x, const float *bias, double *want) {
    int64_t K = w->t.ne[0], N = w->t.ne[1], T = x->t.ne[1];
    float *deq = malloc((size_t)K * sizeof *deq);
    for (int64_t r = 0; r < N; r++) {
        traits(w->t.type)->to_float(mat_row(w, r), deq, K);
        for (int64_t t = 0; t < T; t++) {
            const float *xt = mat_row(x, t);
            double s = bias ? bias[r] : 0.0;
            for (int64_t k = 0; k < K; k++) s += (double)deq[k] * xt[k];
            want[t * N + r] = s;
        }
    }
    free(deq);
}

static void ref_fast(const mat *w, const mat *x, const float *bias, double *want) {
    const qtype_traits *wt = traits(w->t.type), *vt = traits(wt->vec_dot_type);
    int64_t K = w->t.ne[0], N = w->t.ne[1], T = x->t.ne[1];
    size_t yb = row_bytes(wt->vec_dot_type, K);
    char *y = malloc(yb * (size_t)T);
    for (int64_t t = 0; t < T; t++) vt->from_float(mat_row(x, t), y + (size_t)t * yb, K);
    for (int64_t r = 0; r < N; r++) {
        for (int64_t t = 0; t < T; t++) {
            float s;
            wt->vec_dot(K, &s, mat_row(w, r), y + (size_t)t * yb);
            want[t * N + r] = bias ? (double)(s + bias[r]) : s;
        }
    }
    free(y);
}

/* ----------------------------------------------------- running matmul */

typedef struct problem {
    int type;
    int64_t K, N, T;
    mat w, x;
    float *bias;
    be_tensor bias_t;
} problem;

static void problem_init(problem *p, int type, int64_t N, int64_t T, bool with_bias) {
    memset(p, 0, sizeof *p);
    p->type = type;
    p->K = pick_k(type);
    p->N = N;
    p->T = T;
    /* Padded rows: strides are honoured, not assumed. */
    mat_init(&p->w, type, p->K, N, 64);
    mat_init(&p->x, QT_F32, p->K, T, 12);
    fill_weights(&p->w);
    fill_f32(&p->x);
    if (!with_bias) return;
    p->bias = malloc((size_t)N * sizeof *p->bias);
    for (int64_t r = 0; r < N; r++) p->bias[r] = frand();
    size_t nb = (size_t)N * 4;
    p->bias_t =
        (be_tensor){.type = QT_F32, .ne = {N, 1, 1, 1}, .nb = {4, nb, nb, nb}, .data = p->bias};
}

static void problem_free(problem *p) {
    free(p->w.mem);
    free(p->x.mem);
    free(p->bias);
}

/* Runs elmi_cpu_mul_mat with a work buffer of exactly the requested size into a
 * fresh (N, T) output with padded rows; out gets the contiguous result. */
static elm_status run_mm(elm_threadpool *tp, problem *p, bool exact, float *out) {
    mat dst;
    mat_init(&dst, QT_F32, p->N, p->T, 20);
    size_t ws = elmi_cpu_mul_mat_work_size(&p->w.t, &p->x.t, exact, elmi_tp_n_threads(tp));
    void *work = ws ? malloc(ws) : NULL;
    elm_status st =
        elmi_cpu_mul_mat(tp, &p->w.t, &p->x.t, p->bias ? &p->bias_t : NULL, &dst.t, exact, work, ws);
    if (st == ELM_OK) gather(&dst, out);
    free(work);
    free(dst.mem);
    return st;
}

static elm_threadpool *pool(int n) {
    elm_threadpool *tp = NULL;
    cr_assert_eq(elmi_tp_new(n, false, &tp), ELM_OK);
    return tp;
}

/* One weight type: both modes, T in {1, 2, 7, 33}, 1 and 2 threads. N = 211
 * is ragged for every chunking, and 1 and 2 threads chunk it differently
 * (26 and 16 rows), so equal results show chunking does not matter. */
static void check_type(int type) {
    static const int64_t Ts[] = {1, 2, 7, 33};
    elm_threadpool *tp1 = pool(1), *tp2 = pool(2);
    for (int mode = 0; mode < 2; mode++) {
        bool exact = mode == 0;
        for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++) {
            problem p;
            problem_init(&p, type, 211, Ts[ti], ti % 2 == 0);
            int64_t n = p.N * p.T;
            float *got1 = malloc((size_t)n * 4), *got2 = malloc((size_t)n * 4);
            double *want = malloc((size_t)n * sizeof *want);
            cr_assert_eq(run_mm(tp1, &p, exact, got1), ELM_OK);
            cr_assert_eq(run_mm(tp2, &p, exact, got2), ELM_OK);
            if (exact)
                ref_exact(&p.w, &p.x, p.bias, want);
            else
                ref_fast(&p.w, &p.x, p.bias, want);
            double e = nmse(got1, want, n), bound = exact ? NMSE_EXACT : NMSE_FAST;
            cr_log_info("%-5s %-5s T=%-2lld nmse %.3g", elmi_qtype_name(type), exact ? "exact" : "fast",
                        (long long)p.T, e);
            cr_expect_leq(e, bound, "%s %s T=%lld: nmse %g > %g", elmi_qtype_name(type),
                          exact ? "exact" : "fast", (long long)p.T, e, bound);
            cr_expect(memcmp(got1, got2, (size_t)n * 4) == 0, "%s %s T=%lld: 1 vs 2 threads differ",
                      elmi_qtype_name(type), exact ? "exact" : "fast", (long long)p.T);
            free(got1);
            free(got2);
            free(want);
            problem_free(&p);
        }
    }
    elmi_tp_free(tp1);
    elmi_tp_free(tp2);
}

#define TYPE_TEST(T)                                                                               \
    Test(elmi_cpu_mul_mat, T) { check_type(QT_##T); }
TYPE_TEST(F32)
TYPE_TEST(F16)
TYPE_TEST(BF16)
TYPE_TEST(Q4_0)
TYPE_TEST(Q4_1)
TYPE_TEST(Q5_0)
TYPE_TEST(Q5_1)
TYPE_TEST(Q8_0)
TYPE_TEST(Q4_K)
TYPE_TEST(Q5_K)
TYPE_TEST(Q6_K)

/* Fast mode: a token's result does not depend on the batch it came in, for
 * batches of two or more (one token may take the row kernels; it equals the
 * batched result where elmi_cpu_vec_dot_is_reference). */
Test(elmi_cpu_mul_mat, token_grouping_is_invisible) {
    static const int types[] = {QT_Q4_0, QT_Q8_0, QT_Q4_K, QT_Q6_K, QT_F16};
    elm_threadpool *tp = pool(2);
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        problem p;
        problem_init(&p, types[i], 45, 7, true);
        float *all = malloc((size_t)(p.N * p.T) * 4), two[2 * 45];
        cr_assert_eq(run_mm(tp, &p, false, all), ELM_OK);
        bool one_too = elmi_cpu_vec_dot_is_reference(types[i], elmi_cpu_simd_active());
        for (int64_t t = 0; t < p.T; t++) {
            for (int64_t n_tok = one_too ? 1 : 2; n_tok <= 2; n_tok++) {
                int64_t t0 = n_tok == 1 || t + 1 < p.T ? t : t - 1;
                problem q = p;
                q.T = n_tok;
                q.x.t.ne[1] = n_tok;
                q.x.t.data = mat_row(&p.x, t0);
                cr_assert_eq(run_mm(tp, &q, false, two), ELM_OK);
                cr_expect(memcmp(two + (t - t0) * p.N, all + t * p.N, 45 * 4) == 0,
                          "%s token %lld in a batch of %lld", elmi_qtype_name(types[i]), (long long)t,
                          (long long)n_tok);
            }
        }
        free(all);
        problem_free(&p);
    }
    elmi_tp_free(tp);
}

/* The bias is added to the product, in every path. */
Test(elmi_cpu_mul_mat, bias_is_added) {
    static const int64_t Ts[] = {1, 5};
    elm_threadpool *tp = pool(2);
    for (int mode = 0; mode < 2; mode++) {
        for (int i = 0; i < 2; i++) {
            problem p;
            problem_init(&p, i ? QT_Q4_0 : QT_F32, 70, Ts[i], true);
            int64_t n = p.N * p.T;
            float *with = malloc((size_t)n * 4), *without = malloc((size_t)n * 4);
            cr_assert_eq(run_mm(tp, &p, mode == 0, with), ELM_OK);
            float *bias = p.bias;
            p.bias = NULL;
            cr_assert_eq(run_mm(tp, &p, mode == 0, without), ELM_OK);
            for (int64_t t = 0; t < p.T; t++)
                for (int64_t r = 0; r < p.N; r++)
                    cr_assert_eq(with[t * p.N + r], without[t * p.N + r] + bias[r]);
            p.bias = bias;
            free(with);
            free(without);
            problem_free(&p);
        }
    }
    elmi_tp_free(tp);
}

/* A NULL pool runs on the calling thread. */
Test(elmi_cpu_mul_mat, null_pool_runs_inline) {
    problem p;
    problem_init(&p, QT_Q8_0, 20, 3, false);
    float got[60];
    double want[60];
    cr_assert_eq(run_mm(NULL, &p, false, got), ELM_OK);
    ref_fast(&p.w, &p.x, NULL, want);
    cr_expect_leq(nmse(got, want, 60), NMSE_FAST);
    problem_free(&p);
}

Test(elmi_cpu_mul_mat, unsupported_types) {
    static const int types[] = {QT_Q2_K, QT_Q3_K, QT_Q8_K, QT_Q8_1, QT_I32, QT_IQ4_NL, 4, 99, -1};
    float xs[QK_K], out[2];
    char wbuf[2 * 292];
    memset(wbuf, 0, sizeof wbuf);
    for (int i = 0; i < QK_K; i++) xs[i] = 0.0f;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        be_tensor w = {
            .type = types[i], .ne = {QK_K, 2, 1, 1}, .nb = {1, 292, 584, 584}, .data = wbuf};
        be_tensor x = {.type = QT_F32,
                       .ne = {QK_K, 1, 1, 1},
                       .nb = {4, QK_K * 4, QK_K * 4, QK_K * 4},
                       .data = xs};
        be_tensor d = {.type = QT_F32, .ne = {2, 1, 1, 1}, .nb = {4, 8, 8, 8}, .data = out};
        for (int exact = 0; exact < 2; exact++) {
            char work[1 << 14];
            cr_expect_eq(elmi_cpu_mul_mat(NULL, &w, &x, NULL, &d, exact, work, sizeof work),
                         ELM_ERR_UNSUPPORTED, "type %d", types[i]);
        }
    }
}

Test(elmi_cpu_mul_mat, invalid_arguments) {
    elm_threadpool *tp = pool(2);
    problem p;
    problem_init(&p, QT_Q4_K, 16, 3, false);
    mat dst;
    mat_init(&dst, QT_F32, p.N, p.T, 0);
    for (int exact = 0; exact < 2; exact++) {
        size_t ws = elmi_cpu_mul_mat_work_size(&p.w.t, &p.x.t, exact, 2);
        cr_assert_gt(ws, 0);
        char *work = malloc(ws);
        cr_expect_eq(elmi_cpu_mul_mat(tp, &p.w.t, &p.x.t, NULL, &dst.t, exact, work, ws - 1),
                     ELM_ERR_INVALID_ARG, "short work buffer");
        cr_expect_eq(elmi_cpu_mul_mat(tp, &p.w.t, &p.x.t, NULL, &dst.t, exact, NULL, ws),
                     ELM_ERR_INVALID_ARG, "no work buffer");
        /* Sized for one thread, run on two. */
        size_t ws1 = elmi_cpu_mul_mat_work_size(&p.w.t, &p.x.t, exact, 1);
        if (ws1 < ws)
            cr_expect_eq(elmi_cpu_mul_mat(tp, &p.w.t, &p.x.t, NULL, &dst.t, exact, work, ws1),
                         ELM_ERR_INVALID_ARG, "work sized for fewer threads");
        be_tensor bad = dst.t;
        bad.ne[1] = p.T + 1;
        cr_expect_eq(elmi_cpu_mul_mat(tp, &p.w.t, &p.x.t, NULL, &bad, exact, work, ws),
                     ELM_ERR_INVALID_ARG, "dst tokens");
        bad = p.x.t;
        bad.ne[0] = p.K - QK_K;
        cr_expect_eq(elmi_cpu_mul_mat(tp, &p.w.t, &bad, NULL, &dst.t, exact, work, ws),
                     ELM_ERR_INVALID_ARG, "x length");
        be_tensor w = p.w.t;
        w.ne[0] = p.K - 1;
        cr_expect_eq(elmi_cpu_mul_mat(tp, &w, &p.x.t, NULL, &dst.t, exact, work, ws),
                     ELM_ERR_INVALID_ARG, "K not whole blocks");
        be_tensor bias = {
            .type = QT_F32, .ne = {p.N - 1, 1, 1, 1}, .nb = {4, 4, 4, 4}, .data = work};
        cr_expect_eq(elmi_cpu_mul_mat(tp, &p.w.t, &p.x.t, &bias, &dst.t, exact, work, ws),
                     ELM_ERR_INVALID_ARG, "bias length");
        cr_expect_eq(elmi_cpu_mul_mat(tp, NULL, &p.x.t, NULL, &dst.t, exact, work, ws),
                     ELM_ERR_INVALID_ARG);
        cr_expect_eq(elmi_cpu_mul_mat(tp, &p.w.t, &p.x.t, NULL, &dst.t, exact, work, ws), ELM_OK);
        free(work);
    }
    free(dst.mem);
    problem_free(&p);
    elmi_tp_free(tp);
}

/* ----------------------------------------------------- kernels vs scalar */

/* sum |w_k * y_k| over dequantized operands: the scale of rounding errors. */
static double abs_dot(int type, const void *w, const void *y, int64_t K) {
    const qtype_traits *wt = traits(type), *vt = traits(wt->vec_dot_type);
    float *a = malloc((size_t)K * 4), *b = malloc((size_t)K * 4);
    wt->to_float(w, a, K);
    vt->to_float(y, b, K);
    double s = 0;
    for (int64_t k = 0; k < K; k++) s += fabs((double)a[k] * b[k]);
    free(a);
    free(b);
    return s;
}

/* Extreme but valid bytes: Q8_0 weights of -128. */
static void poke_extremes(int type, void *row, int64_t K) {
    if (type != QT_Q8_0) return;
    block_q8_0 *b = row;
    for (int64_t i = 0; i < K / QK8_0; i += 3) b[i].qs[i % 32] = -128;
}

static void check_kernel(int type, cpu_simd level, int64_t K) {
    const qtype_traits *wt = traits(type), *vt = traits(wt->vec_dot_type);
    cpu_dot_fn fn = elmi_cpu_vec_dot_at(type, level);
    cr_assert_not_null(fn);
    enum { NR = 3, SS = NR + 2 }; /* rows per call; output stride with a gap */
    size_t wb = row_bytes(type, K) + 8, yb = row_bytes(wt->vec_dot_type, K) + 4;
    char *w = malloc(wb * NR), *y = malloc(yb * CPU_DOT_MAX_NT);
    float *tmp = malloc((size_t)K * 4);
    for (int rep = 0; rep < 4; rep++) {
        for (int r = 0; r < NR; r++) {
            for (int64_t k = 0; k < K; k++) tmp[k] = (rep + r + 1) * frand() + 0.2f * rep;
            wt->from_float(tmp, w + r * wb, K);
            poke_extremes(type, w + r * wb, K);
        }
        for (int j = 0; j < CPU_DOT_MAX_NT; j++) {
            for (int64_t k = 0; k < K; k++) tmp[k] = frand() * (j + 1);
            vt->from_float(tmp, y + j * yb, K);
        }
        float s[SS * CPU_DOT_MAX_NT];
        for (int nt = 1; nt <= CPU_DOT_MAX_NT; nt++) {
            fn(K, NR, w, wb, y, yb, nt, s, SS);
            for (int r = 0; r < NR; r++) {
                for (int j = 0; j < nt; j++) {
                    const char *wr = w + r * wb, *yj = y + j * yb;
                    float want, alone, got = s[r + j * SS];
                    wt->vec_dot(K, &want, wr, yj);
                    fn(K, 1, wr, 0, yj, 0, 1, &alone, 0);
                    double tol = KERNEL_REL * abs_dot(type, wr, yj, K) + 1e-30;
                    cr_expect_leq(fabs((double)got - want), tol, "%s at %s K=%lld: %.9g vs %.9g",
                                  elmi_qtype_name(type), elmi_cpu_simd_name(level), (long long)K, got, want);
                    if (elmi_cpu_vec_dot_is_reference(type, level))
                        cr_expect(memcmp(&got, &want, sizeof got) == 0,
                                  "%s at %s K=%lld: %.9g is not the reference's %.9g",
                                  elmi_qtype_name(type), elmi_cpu_simd_name(level), (long long)K, got, want);
                    cr_expect(got == alone,
                              "%s at %s: row %d token %d of %d differs from a lone call",
                              elmi_qtype_name(type), elmi_cpu_simd_name(level), r, j, nt);
                }
            }
        }
    }
    free(w);
    free(y);
    free(tmp);
}

Test(vec_dot, every_level_matches_scalar) {
    int checked = 0;
    for (int l = 0; l < CPU_SIMD_COUNT; l++) {
        if (!elmi_cpu_simd_supported((cpu_simd)l)) continue;
        for (int i = 0; i < N_WEIGHT_TYPES; i++) {
            int type = weight_types[i];
            if (!elmi_cpu_vec_dot_native(type, (cpu_simd)l)) continue;
            int64_t bs = traits(type)->block_size;
            /* One block, an odd and an even count of blocks, a float tail;
             * for 32-value blocks also rows longer than the row kernels'
             * activation chunk (512 blocks), with an odd tail. */
            int64_t ks[] = {bs == 1 ? 1 : bs, bs == 1 ? 45 : bs * 7, bs == 1 ? 4096 + 13 : bs * 16,
                            bs * 1029};
            for (int k = 0; k < (bs == 32 ? 4 : 3); k++) check_kernel(type, (cpu_simd)l, ks[k]);
            checked++;
        }
    }
    cr_log_info("%d native kernels checked; active level %s", checked, elmi_cpu_simd_level());
    cr_expect_gt(checked, 0);
}

Test(vec_dot, forcing_levels) {
    cr_expect(elmi_cpu_vec_dot_force_level("scalar"));
    cr_expect_str_eq(elmi_cpu_simd_level(), "scalar");
    cr_expect(!elmi_cpu_vec_dot_force_level("no-such-level"));
    cr_expect_str_eq(elmi_cpu_simd_level(), "scalar");
    cr_expect(elmi_cpu_vec_dot_force_level(NULL));
    cr_expect_str_neq(elmi_cpu_simd_level(), "unknown");
    for (int l = 0; l < CPU_SIMD_COUNT; l++)
        if (!elmi_cpu_simd_supported((cpu_simd)l))
            cr_expect(!elmi_cpu_vec_dot_force_level(elmi_cpu_simd_name((cpu_simd)l)));
}

/* End to end at every level: the same products within the fast bound. */
Test(vec_dot, matmul_at_every_level) {
    elm_threadpool *tp = pool(2);
    for (int l = 0; l < CPU_SIMD_COUNT; l++) {
        if (!elmi_cpu_simd_supported((cpu_simd)l)) continue;
        cr_assert(elmi_cpu_vec_dot_force_level(elmi_cpu_simd_name((cpu_simd)l)));
        for (int i = 0; i < N_WEIGHT_TYPES; i++) {
            problem p;
            problem_init(&p, weight_types[i], 37, 5, true);
            int64_t n = p.N * p.T;
            float *got = malloc((size_t)n * 4);
            double *want = malloc((size_t)n * sizeof *want);
            cr_assert_eq(run_mm(tp, &p, false, got), ELM_OK);
            ref_fast(&p.w, &p.x, p.bias, want);
            cr_expect_leq(nmse(got, want, n), NMSE_FAST, "%s at %s", elmi_qtype_name(p.type),
                          elmi_cpu_simd_name((cpu_simd)l));
            free(got);
            free(want);
            problem_free(&p);
        }
    }
    elmi_cpu_vec_dot_force_level(NULL);
    elmi_tp_free(tp);
}

/* Tiled kernels, end to end: at every level that has them, each product
 * equals the reference vec_dot (+ bias) bit for bit, for ragged row counts
 * (panels of 32 rows, halves of 16, units of 8), token counts that are not
 * multiples of a group, rows long enough to be cut into several block
 * ranges, and 1 and 2 threads. */
static void check_gemm_exact(int type, cpu_simd level, elm_threadpool *tp1, elm_threadpool *tp2) {
    static const int64_t Ts[] = {1, 2, 5, 9, 33};
    static const int64_t Ns[] = {77, 32, 7};
    const int64_t K = traits(type)->block_size == QK_K ? 7 * QK_K : 61 * 32;
    for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++) {
        problem p;
        problem_init(&p, type, Ns[ti % 3], Ts[ti], ti % 2 == 0);
        /* problem_init picks a small K; use a long row instead. */
        problem_free(&p);
        memset(&p, 0, sizeof p);
        p.type = type;
        p.K = K;
        p.N = Ns[ti % 3];
        p.T = Ts[ti];
        mat_init(&p.w, type, p.K, p.N, 64);
        mat_init(&p.x, QT_F32, p.K, p.T, 12);
        fill_weights(&p.w);
        fill_f32(&p.x);
        if (ti % 2 == 0) {
            p.bias = malloc((size_t)p.N * sizeof *p.bias);
            for (int64_t r = 0; r < p.N; r++) p.bias[r] = frand();
            size_t nb = (size_t)p.N * 4;
            p.bias_t = (be_tensor){
                .type = QT_F32, .ne = {p.N, 1, 1, 1}, .nb = {4, nb, nb, nb}, .data = p.bias};
        }
        int64_t n = p.N * p.T;
        float *got1 = malloc((size_t)n * 4), *got2 = malloc((size_t)n * 4);
        double *want = malloc((size_t)n * sizeof *want);
        cr_assert_eq(run_mm(tp1, &p, false, got1), ELM_OK);
        cr_assert_eq(run_mm(tp2, &p, false, got2), ELM_OK);
        ref_fast(&p.w, &p.x, p.bias, want);
        int64_t bad = 0;
        /* One token may take the row kernels, which round their own way
         * (checked against the reference with a bound in vec_dot's tests). */
        bool exact_one = p.T > 1 || elmi_cpu_vec_dot_is_reference(type, level);
        for (int64_t i = 0; i < n && exact_one; i++) {
            float w = (float)want[i];
            if (memcmp(&got1[i], &w, 4) != 0) bad++;
        }
        cr_expect_eq(bad, 0, "%s at %s N=%lld T=%lld: %lld products differ from the reference",
                     elmi_qtype_name(type), elmi_cpu_simd_name(level), (long long)p.N, (long long)p.T,
                     (long long)bad);
        cr_expect(memcmp(got1, got2, (size_t)n * 4) == 0, "%s at %s T=%lld: 1 vs 2 threads differ",
                  elmi_qtype_name(type), elmi_cpu_simd_name(level), (long long)p.T);
        free(got1);
        free(got2);
        free(want);
        problem_free(&p);
    }
}

Test(gemm, tiled_kernels_equal_the_reference) {
    elm_threadpool *tp1 = pool(1), *tp2 = pool(2);
    int checked = 0;
    for (int l = 0; l < CPU_SIMD_COUNT; l++) {
        if (!elmi_cpu_simd_supported((cpu_simd)l)) continue;
        cr_assert(elmi_cpu_vec_dot_force_level(elmi_cpu_simd_name((cpu_simd)l)));
        for (int i = 0; i < N_WEIGHT_TYPES; i++) {
            if (!elmi_cpu_gemm_at(weight_types[i], (cpu_simd)l)) continue;
            check_gemm_exact(weight_types[i], (cpu_simd)l, tp1, tp2);
            checked++;
        }
    }
    elmi_cpu_vec_dot_force_level(NULL);
    cr_log_info("%d tiled kernels checked", checked);
    elmi_tp_free(tp1);
    elmi_tp_free(tp2);
}

/* The exact mode's dequantization: bit-identical to to_float, on weights
 * from the quantizer and on random bytes (NaN, infinite and subnormal
 * scales included). */
Test(gemm, dequantization_equals_to_float) {
    const int64_t K = 4 * QK_K;
    float *tmp = malloc(K * 4), *want = malloc(K * 4), *got = malloc(K * 4);
    for (int l = 0; l < CPU_SIMD_COUNT; l++) {
        if (!elmi_cpu_simd_supported((cpu_simd)l)) continue;
        cr_assert(elmi_cpu_vec_dot_force_level(elmi_cpu_simd_name((cpu_simd)l)));
        for (int i = 0; i < N_WEIGHT_TYPES; i++) {
            const int type = weight_types[i];
            const qtype_traits *tr = traits(type);
            qt_to_float_fn deq = elmi_cpu_dequant_get(type);
            cr_assert_not_null(deq);
            size_t rb = row_bytes(type, K);
            unsigned char *w = malloc(rb);
            for (int rep = 0; rep < 40; rep++) {
                if (rep % 2) {
                    for (int64_t k = 0; k < K; k++) tmp[k] = (rep + 1) * frand();
                    tr->from_float(tmp, w, K);
                } else {
                    for (size_t b = 0; b < rb; b++) w[b] = (unsigned char)(frand() * 128 + 128);
                }
                tr->to_float(w, want, K);
                deq(w, got, K);
                cr_expect(memcmp(got, want, (size_t)K * 4) == 0, "%s at %s rep %d",
                          elmi_qtype_name(type), elmi_cpu_simd_name((cpu_simd)l), rep);
            }
            free(w);
        }
    }
    elmi_cpu_vec_dot_force_level(NULL);
    free(tmp);
    free(want);
    free(got);
}

/* Activation quantizers: bit-identical to the reference, ties included. */
Test(vec_dot, quantizers_match_reference) {
    static const int vdts[] = {QT_Q8_0, QT_Q8_1, QT_Q8_K, QT_F16, QT_BF16};
    const int64_t K = 4 * QK_K;
    static const float specials[] = {NAN,      -NAN,      INFINITY, -INFINITY, 65519.0f,
                                     65520.0f, -70000.0f, 1e-8f,    6e-8f,     3e-5f,
                                     1e-45f,   -0.0f,     3.0f,     -2.5f};
    float *x = malloc(K * 4);
    for (int64_t k = 0; k < K; k++) x[k] = 3.0f * frand();
    for (int k = 0; k < 32; k++) x[k] = k - 16 + 0.5f; /* Q8_0 scale 1: exact .5 ties */
    x[5] = 127.0f;
    for (int k = 32; k < 64; k++) x[k] = 0.0f;
    for (int k = 64; k < 96; k++) x[k] = specials[k % (sizeof specials / sizeof specials[0])];
    x[96] = 1e-40f; /* a block of float denormals */
    x[100] = -3e-39f;
    for (int k = 101; k < 128; k++) x[k] = 1e-41f * k;
    for (int k = 512; k < 768; k++) x[k] = (k % 200) - 100.5f; /* Q8_K scale 1: ties */
    x[600] = -127.0f;
    for (int k = 768; k < K; k++) x[k] *= (k % 7) ? 1e-3f : 1e3f;
    for (int l = 0; l < CPU_SIMD_COUNT; l++) {
        if (!elmi_cpu_simd_supported((cpu_simd)l)) continue;
        for (size_t i = 0; i < sizeof vdts / sizeof vdts[0]; i++) {
            cpu_quantize_fn q = elmi_cpu_quantize_at(vdts[i], (cpu_simd)l);
            cr_assert_not_null(q, "%s", elmi_qtype_name(vdts[i]));
            size_t rb = row_bytes(vdts[i], K);
            char *got = calloc(1, rb), *want = calloc(1, rb);
            q(x, got, K);
            traits(vdts[i])->from_float(x, want, K);
            cr_expect(memcmp(got, want, rb) == 0, "%s at %s", elmi_qtype_name(vdts[i]),
                      elmi_cpu_simd_name((cpu_simd)l));
            free(got);
            free(want);
        }
    }
    free(x);
}

/* ----------------------------------------------------------- thread pool */

typedef struct count_task {
    _Atomic int hits[8];
    _Atomic long total;
    elm_threadpool *tp;
    int phase_ok;
    _Atomic int arrived;
} count_task;

static void count_fn(void *arg, int ith, int nth) {
    count_task *c = arg;
    atomic_fetch_add(&c->hits[ith], 1);
    atomic_fetch_add(&c->total, nth);
}

Test(threadpool, runs_every_share_once) {
    for (int n = 1; n <= 4; n++) {
        elm_threadpool *tp = pool(n);
        cr_assert_eq(elmi_tp_n_threads(tp), n);
        count_task c = {0};
        for (int i = 0; i < 2000; i++) elmi_tp_run(tp, count_fn, &c);
        for (int i = 0; i < n; i++) cr_expect_eq(atomic_load(&c.hits[i]), 2000);
        cr_expect_eq(atomic_load(&c.total), 2000L * n * n);
        elmi_tp_free(tp);
    }
}

static void barrier_fn(void *arg, int ith, int nth) {
    count_task *c = arg;
    for (int round = 1; round <= 50; round++) {
        atomic_fetch_add(&c->arrived, 1);
        elmi_tp_barrier(c->tp);
        if (atomic_load(&c->arrived) != round * nth) atomic_store(&c->hits[ith], -1);
        elmi_tp_barrier(c->tp);
    }
}

Test(threadpool, barrier_separates_phases) {
    for (int n = 1; n <= 3; n++) {
        elm_threadpool *tp = pool(n);
        for (int rep = 0; rep < 20; rep++) {
            count_task c = {.tp = tp};
            elmi_tp_run(tp, barrier_fn, &c);
            for (int i = 0; i < n; i++) cr_expect_eq(atomic_load(&c.hits[i]), 0);
        }
        elmi_tp_free(tp);
    }
}

/* Workers that went to sleep wake up for the next run. */
Test(threadpool, wakes_sleeping_workers) {
    elm_threadpool *tp = pool(2);
    count_task c = {0};
    for (int i = 0; i < 3; i++) {
        struct timespec ts = {0, 5000000}; /* beyond the spin time */
        nanosleep(&ts, NULL);
        elmi_tp_run(tp, count_fn, &c);
    }
    cr_expect_eq(atomic_load(&c.hits[1]), 3);
    elmi_tp_free(tp);
}

Test(threadpool, arguments_and_pinning) {
    elm_threadpool *tp = NULL;
    cr_expect_eq(elmi_tp_new(0, false, &tp), ELM_ERR_INVALID_ARG);
    cr_expect_eq(elmi_tp_new(2, false, NULL), ELM_ERR_INVALID_ARG);
    cr_assert_eq(elmi_tp_new(2, true, &tp), ELM_OK);
    count_task c = {0};
    elmi_tp_run(tp, count_fn, &c);
    cr_expect_eq(atomic_load(&c.hits[1]), 1);
    elmi_tp_free(tp);
    elmi_tp_free(NULL);
    cr_expect_geq(elmi_be_cpu_physical_cores(), 1);
}
