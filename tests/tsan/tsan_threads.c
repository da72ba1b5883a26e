/* tsan_threads.c: two contexts on one shared model, in two threads at once.
 * A standalone program (not Criterion) so it can run under ThreadSanitizer,
 * whose shadow memory Criterion's sandbox cannot coexist with. Each thread's
 * logits and greedy tokens must be bit-identical to a run done alone. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgelm.h"
#include "support/paths.h"
#include "support/tiny_model.h"

#define N_EVAL 24
#define N_GEN 16

typedef struct run_result {
    elm_status st;
    float *logits; /* N_EVAL * n_vocab */
    elm_token gen[N_GEN];
    int n_gen;
    int n_threads;
    char err[256];
} run_result;

static const elm_model *g_model;
static uint32_t g_vocab;

static bool collect(const elm_token_info *info, void *ud) {
    run_result *r = ud;
    if (r->n_gen < N_GEN) r->gen[r->n_gen++] = info->token;
    return true;
}

static void *run(void *arg) {
    run_result *r = arg;
    elm_context_params cp = elm_context_default_params();
    cp.n_threads = r->n_threads;
    cp.n_ctx = 128;
    cp.logits_all = true;
    elm_context *ctx = NULL;
    r->st = elm_context_new(g_model, &cp, &ctx, r->err, sizeof r->err);
    if (r->st != ELM_OK) return NULL;
    elm_token toks[N_EVAL];
    for (int i = 0; i < N_EVAL; i++) toks[i] = (elm_token)((i * 37 + 5) % (int)g_vocab);
    r->st = elm_decode(ctx, toks, N_EVAL);
    if (r->st == ELM_OK) {
        r->logits = malloc(sizeof(float) * N_EVAL * g_vocab);
        for (int i = 0; i < N_EVAL; i++)
            memcpy(r->logits + (size_t)i * g_vocab, elm_get_logits(ctx, i), sizeof(float) * g_vocab);
        elm_context_reset(ctx);
        elm_generate_params gp = elm_generate_default_params();
        gp.n_predict = N_GEN;
        gp.ignore_eos = true;
        gp.sampler.temperature = 0;
        gp.callback = collect;
        gp.user_data = r;
        r->st = elm_generate(ctx, "Once upon a time", 16, &gp, NULL);
    }
    if (r->st != ELM_OK) snprintf(r->err, sizeof r->err, "%s", elm_context_last_error(ctx));
    elm_context_free(ctx);
    return NULL;
}

static int same(const run_result *a, const run_result *b, const char *what) {
    if (a->st != ELM_OK || b->st != ELM_OK) {
        fprintf(stderr, "FAIL %s: run failed: %s %s\n", what, a->err, b->err);
        return 0;
    }
    if (memcmp(a->logits, b->logits, sizeof(float) * N_EVAL * g_vocab) != 0 ||
        a->n_gen != b->n_gen || memcmp(a->gen, b->gen, sizeof a->gen) != 0) {
        fprintf(stderr, "FAIL %s: results differ\n", what);
        return 0;
    }
    return 1;
}

int main(void) {
    char path[4096], err[512];
    if (!test_shared_path("models/stories260K.gguf", path, sizeof path)) {
        snprintf(path, sizeof path, "%s/tiny.gguf", test_tmp_dir());
        tiny_model_opts o = tiny_model_default();
        if (tiny_model_write(&o, path) != 0) {
            fprintf(stderr, "cannot write a tiny model\n");
            return 1;
        }
        fprintf(stderr, "note: shared models absent; using a tiny generated model\n");
    }
    elm_model *m = NULL;
    if (elm_model_load(path, NULL, &m, err, sizeof err) != ELM_OK) {
        fprintf(stderr, "load failed: %s\n", err);
        return 1;
    }
    elm_model_info info;
    elm_model_get_info(m, &info);
    g_model = m;
    g_vocab = info.n_vocab;

    run_result solo = {.n_threads = 1}, a = {.n_threads = 1}, b = {.n_threads = 2};
    run(&solo);
    pthread_t ta, tb;
    pthread_create(&ta, NULL, run, &a);
    pthread_create(&tb, NULL, run, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    int passed = same(&solo, &a, "thread A (1 worker) vs solo") +
                 same(&solo, &b, "thread B (2 workers) vs solo");
    free(solo.logits);
    free(a.logits);
    free(b.logits);
    elm_model_free(m);
    printf("tsan_threads: %d passed, %d failed\n", passed, 2 - passed);
    return passed == 2 ? 0 : 1;
}
