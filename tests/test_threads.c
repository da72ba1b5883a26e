/*
 * test_threads.c: one model shared by concurrent contexts, and determinism
 * across thread counts.
 *
 * The checks report through an `outcome` instead of Criterion assertions so
 * that the same code runs under ThreadSanitizer, where Criterion's runner
 * cannot start (its fork arena maps at addresses TSan reserves: Criterion
 * issue #274). Under TSan this file brings its own main(); otherwise each
 * check is a Criterion test.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgelm.h"
#include "support/paths.h"

#if defined(__has_include)
#if __has_include("support/tiny_model.h")
#include "support/tiny_model.h"
#define HAVE_TINY_MODEL 1
#endif
#endif

#if defined(__SANITIZE_THREAD__)
#define ELM_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ELM_TSAN 1
#endif
#endif

#define N_EVAL 64
#define N_GEN 32

typedef enum check_result { CHECK_PASS, CHECK_FAIL, CHECK_SKIP } check_result;

typedef struct outcome {
    check_result result;
    char msg[1024];
} outcome;

/* Records the first failure or skip; later ones would only be consequences. */
static bool set_outcome(outcome *o, check_result r, const char *fmt, ...) {
    if (o->result != CHECK_PASS) return false;
    o->result = r;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->msg, sizeof o->msg, fmt, ap);
    va_end(ap);
    return false;
}

typedef struct workload {
    const elm_model *model;
    elm_mode mode;
    int n_threads;
    pthread_barrier_t *start; /* NULL when run alone */
    /* results */
    elm_status status;
    char err[512];
    float *logits; /* N_EVAL rows of n_vocab */
    size_t n_vocab;
    elm_token gen[N_GEN];
    size_t n_gen;
} workload;

/* ------------------------------------------------------------ model choice */

static const char *tiny_model_path(char *buf, size_t cap, outcome *o) {
#ifdef HAVE_TINY_MODEL
    tiny_model_opts opts = tiny_model_default();
    snprintf(buf, cap, "%s/threads-tiny.gguf", test_tmp_dir());
    if (tiny_model_write(&opts, buf) == 0) return buf;
    set_outcome(o, CHECK_FAIL, "tiny_model_write(%s) failed", buf);
#else
    (void)buf;
    (void)cap;
    set_outcome(o, CHECK_SKIP, "no ../shared and no tiny model builder: nothing to load");
#endif
    return NULL;
}

/* stories260K, a real trained model; without ../shared, a generated one. */
static elm_model *load_test_model(outcome *o) {
    static char path[4096];
    const char *p = path;
    if (!test_shared_path("models/stories260K.gguf", path, sizeof path))
        p = tiny_model_path(path, sizeof path, o);
    if (!p) return NULL;
    elm_model *m = NULL;
    char err[512] = "";
    elm_status st = elm_model_load(p, NULL, &m, err, sizeof err);
    if (st != ELM_OK)
        set_outcome(o, CHECK_FAIL, "loading %s: %s (%s)", p, elm_strerror(st), err);
    else
        snprintf(o->msg, sizeof o->msg, "model %.900s", p); /* a failure overwrites it */
    return m;
}

/* ---------------------------------------------------------------- workload */

static bool record_token(const elm_token_info *info, void *user) {
    workload *w = user;
    if (w->n_gen < N_GEN) w->gen[w->n_gen++] = info->token;
    return true;
}

static void fill_tokens(const elm_model *m, elm_token *toks, size_t n_vocab) {
    elm_model_info info = ELM_INIT(elm_model_info);
    elm_model_get_info(m, &info);
    for (size_t i = 0; i < N_EVAL; i++) toks[i] = (elm_token)((i * 37 + 11) % n_vocab);
    if (info.bos >= 0) toks[0] = info.bos;
}

/* Records the failure; the detail is the context's message, else what err holds. */
static elm_status fail(workload *w, const elm_context *ctx, elm_status st, const char *what) {
    char detail[sizeof w->err];
    snprintf(detail, sizeof detail, "%s", ctx ? elm_context_last_error(ctx) : w->err);
    snprintf(w->err, sizeof w->err, "%.40s: %.60s (%.400s)", what, elm_strerror(st), detail);
    return st;
}

static elm_status teacher_forced(workload *w, elm_context *ctx) {
    elm_token toks[N_EVAL];
    fill_tokens(w->model, toks, w->n_vocab);
    elm_status st = elm_decode(ctx, toks, N_EVAL);
    if (st != ELM_OK) return fail(w, ctx, st, "elm_decode");
    w->logits = malloc(N_EVAL * w->n_vocab * sizeof *w->logits);
    if (!w->logits) return fail(w, NULL, ELM_ERR_NO_MEMORY, "malloc");
    for (size_t i = 0; i < N_EVAL; i++) {
        const float *row = elm_get_logits(ctx, (int32_t)i);
        if (!row) return fail(w, ctx, ELM_ERR_INTERNAL, "elm_get_logits returned NULL");
        memcpy(w->logits + i * w->n_vocab, row, w->n_vocab * sizeof *row);
    }
    return ELM_OK;
}

static elm_status greedy(workload *w, elm_context *ctx) {
    elm_status st = elm_context_reset(ctx);
    if (st != ELM_OK) return fail(w, ctx, st, "elm_context_reset");
    elm_generate_params gp;
    elm_generate_default_params(&gp);
    elm_sampler_params sp;
    elm_sampler_default_params(&sp);
    gp.sampler = &sp;
    gp.n_predict = N_GEN;
    gp.ignore_eos = true;
    sp.temperature = 0;
    gp.callback = record_token;
    gp.user_data = w;
    const char *prompt = "Once upon a time";
    st = elm_generate(ctx, prompt, strlen(prompt), &gp, NULL);
    return st == ELM_OK ? ELM_OK : fail(w, ctx, st, "elm_generate");
}

static elm_status run_workload(workload *w) {
    elm_model_info info = ELM_INIT(elm_model_info);
    elm_model_get_info(w->model, &info);
    w->n_vocab = info.n_vocab;
    elm_context_params cp;
    elm_context_default_params(&cp);
    cp.mode = w->mode;
    cp.n_threads = w->n_threads;
    cp.n_ctx = 256;
    cp.n_batch = N_EVAL;
    cp.logits_all = true;
    elm_context *ctx = NULL;
    elm_status st = elm_context_new(w->model, &cp, &ctx, w->err, sizeof w->err);
    /* Wait even after a failure, or the other worker would wait forever. */
    if (w->start) pthread_barrier_wait(w->start);
    if (st != ELM_OK) return fail(w, NULL, st, "elm_context_new");
    st = teacher_forced(w, ctx);
    if (st == ELM_OK) st = greedy(w, ctx);
    elm_context_free(ctx);
    return st;
}

static void *worker(void *arg) {
    workload *w = arg;
    w->status = run_workload(w);
    return NULL;
}

/* ------------------------------------------------------------- comparisons */

static bool ran_ok(outcome *o, const char *who, const workload *w) {
    if (w->status == ELM_OK) return true;
    return set_outcome(o, CHECK_FAIL, "%s: %s", who, w->err);
}

static bool same_logits(outcome *o, const char *who, const workload *a, const workload *b) {
    size_t n = N_EVAL * a->n_vocab, i = 0;
    while (i < n && memcmp(&a->logits[i], &b->logits[i], sizeof(float)) == 0) i++;
    if (i == n) return true;
    return set_outcome(o, CHECK_FAIL, "%s: logits differ first at token %zu, vocab id %zu: %.9g vs %.9g",
                       who, i / a->n_vocab, i % a->n_vocab, a->logits[i], b->logits[i]);
}

static bool same_tokens(outcome *o, const char *who, const workload *a, const workload *b) {
    size_t k = 0;
    while (k < a->n_gen && k < b->n_gen && a->gen[k] == b->gen[k]) k++;
    if (a->n_gen == N_GEN && b->n_gen == N_GEN && k == N_GEN) return true;
    return set_outcome(o, CHECK_FAIL,
                       "%s: greedy tokens differ (counts %zu and %zu) at step %zu: %d vs %d", who,
                       a->n_gen, b->n_gen, k, k < a->n_gen ? a->gen[k] : -1,
                       k < b->n_gen ? b->gen[k] : -1);
}

static void expect_same(outcome *o, const char *who, const workload *a, const workload *b) {
    if (same_logits(o, who, a, b)) same_tokens(o, who, a, b);
}

static workload alone(const elm_model *m, elm_mode mode, int n_threads) {
    workload w = {.model = m, .mode = mode, .n_threads = n_threads};
    w.status = run_workload(&w);
    return w;
}

static const char *mode_name(elm_mode mode) {
    return mode == ELM_MODE_EXACT ? "exact" : "fast";
}

/* ------------------------------------------------------------------ checks */

static void run_pair(const elm_model *m, elm_mode mode, workload w[2], outcome *o) {
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 2);
    pthread_t th[2];
    int started = 0;
    for (int i = 0; i < 2; i++) {
        w[i] = (workload){.model = m, .mode = mode, .n_threads = 1, .start = &start};
        if (pthread_create(&th[i], NULL, worker, &w[i]) != 0) break;
        started++;
    }
    if (started == 1) pthread_barrier_wait(&start); /* release the lone worker */
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
    if (started < 2) set_outcome(o, CHECK_FAIL, "pthread_create failed");
}

/* Two threads, each with its own context on one shared model, give the bits
 * of a lone run. */
static outcome check_concurrent(elm_mode mode) {
    outcome o = {CHECK_PASS, ""};
    elm_model *m = load_test_model(&o);
    if (!m) return o;
    workload base = alone(m, mode, 1), w[2] = {{0}};
    if (ran_ok(&o, "alone", &base)) {
        run_pair(m, mode, w, &o);
        char who[64];
        for (int i = 0; i < 2 && o.result == CHECK_PASS; i++) {
            snprintf(who, sizeof who, "%s: thread %d vs alone", mode_name(mode), i);
            if (ran_ok(&o, who, &w[i])) expect_same(&o, who, &base, &w[i]);
        }
    }
    free(w[0].logits);
    free(w[1].logits);
    free(base.logits);
    elm_model_free(m);
    return o;
}

static outcome check_thread_counts(elm_mode mode) {
    outcome o = {CHECK_PASS, ""};
    elm_model *m = load_test_model(&o);
    if (!m) return o;
    workload one = alone(m, mode, 1), two = alone(m, mode, 2);
    char who[64];
    snprintf(who, sizeof who, "%s: n_threads 1 vs 2", mode_name(mode));
    if (ran_ok(&o, "n_threads 1", &one) && ran_ok(&o, "n_threads 2", &two))
        expect_same(&o, who, &one, &two);
    free(one.logits);
    free(two.logits);
    elm_model_free(m);
    return o;
}

/* ------------------------------------------------------------------ runner */

#define CHECKS(X)                                                           \
    X(shared_model_concurrent_fast, check_concurrent(ELM_MODE_FAST))        \
    X(shared_model_concurrent_exact, check_concurrent(ELM_MODE_EXACT))      \
    X(deterministic_across_thread_counts_fast, check_thread_counts(ELM_MODE_FAST)) \
    X(deterministic_across_thread_counts_exact, check_thread_counts(ELM_MODE_EXACT))

#ifdef ELM_TSAN

int main(void) {
    int failed = 0;
#define RUN(name, call)                                                              \
    {                                                                                \
        outcome o = call;                                                            \
        static const char *tags[] = {"PASS", "FAIL", "SKIP"};                         \
        printf("[%s] threads::%s%s%s\n", tags[o.result], #name, o.msg[0] ? ": " : "", \
               o.msg);                                                               \
        failed += o.result == CHECK_FAIL;                                            \
    }
    CHECKS(RUN)
#undef RUN
    return failed ? 1 : 0;
}

#else

#include <criterion/criterion.h>
#include <criterion/logging.h>

static void report(outcome o) {
    if (o.result == CHECK_SKIP) cr_skip_test("%s", o.msg);
    cr_assert(o.result == CHECK_PASS, "%s", o.msg);
    cr_log_info("%s", o.msg);
}

#define TEST(name, call) \
    Test(threads, name) { report(call); }
CHECKS(TEST)
#undef TEST

#endif
