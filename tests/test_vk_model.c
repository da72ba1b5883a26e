/* test_vk_model.c: whole models on the Vulkan backend, through the public
 * API only (edgelm.h).
 *
 * Fallbacks never change results: under limits that push nodes onto the
 * CPU (attention beyond shared memory, tensors straddling two allocations,
 * weights split into pieces), a context must report CPU fallback nodes
 * (elm_stats.n_fallback_nodes > 0) and its exact-mode logits, every one of
 * the vocabulary at each of the 64 positions of the reference text, must
 * equal the CPU backend's within the exact tolerance of
 * shared/reference/tolerances.json.
 *
 * Device loss: EDGELM_VK_FAULT_AFTER=N makes a backend's submission N + 1
 * report VK_ERROR_DEVICE_LOST. A generation that meets it fails with
 * ELM_ERR_DEVICE; the context then refuses every call with ELM_ERR_DEVICE
 * and frees cleanly, while the model, contexts made before and after it
 * (Vulkan and CPU) and the process carry on, and still produce the CPU's
 * greedy tokens.
 *
 * Every Vulkan context runs with the validation layer (EDGELM_VK_VALIDATION=1):
 * a validation error fails the decode. The pipeline cache goes to this
 * process's temporary directory. Tests skip only without a Vulkan device
 * or without the shared models. */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgelm.h"
#include "support/json.h"
#include "support/paths.h"

/* ------------------------------------------------------------- set-up */

/* Skips without a device or the model; sets the environment every Vulkan
 * backend of this test reads: `limits` (NULL: none), validation on, the
 * pipeline cache in the temporary directory, no fault injection. */
static void setup(const char *model, const char *limits) {
    char path[4096], rel[256];
    if (!test_shared_path("models", path, sizeof path))
        cr_skip_test("shared ground truth not found at %s (set ELM_SHARED_DIR)", path);
    snprintf(rel, sizeof rel, "models/%s.gguf", model);
    cr_assert(test_shared_path(rel, path, sizeof path), "model missing: %s", path);
    if (!test_have_vulkan_device()) cr_skip_test("no Vulkan device (or no Vulkan backend in this build)");
    static const char *const overrides[] = {"EDGELM_VK_MAX_SHARED", "EDGELM_VK_MAX_INVOCATIONS",
                                            "EDGELM_VK_MAX_RANGE", "EDGELM_VK_MAX_ALLOC",
                                            "EDGELM_VK_FAULT_AFTER"};
    for (size_t i = 0; i < sizeof overrides / sizeof *overrides; i++) unsetenv(overrides[i]);
    if (limits) setenv("EDGELM_VK_LIMITS", limits, 1);
    else unsetenv("EDGELM_VK_LIMITS");
    setenv("EDGELM_VK_VALIDATION", "1", 1);
    setenv("XDG_CACHE_HOME", test_tmp_dir(), 1);
}

static elm_model *load(const char *name, const char *device) {
    char rel[256], path[4096], err[512] = "";
    snprintf(rel, sizeof rel, "models/%s.gguf", name);
    test_shared_path(rel, path, sizeof path);
    elm_model_params mp;
    elm_model_default_params(&mp);
    mp.device = device;
    elm_model *m = NULL;
    elm_status st = elm_model_load(path, &mp, &m, err, sizeof err);
    cr_assert_eq(st, ELM_OK, "loading %s on %s: %s (%s)", path, device, elm_strerror(st), err);
    return m;
}

static elm_context *new_ctx(const elm_model *m, elm_mode mode, uint32_t n_batch, bool all) {
    elm_context_params cp;
    elm_context_default_params(&cp);
    cp.mode = mode;
    cp.logits_all = all;
    cp.n_batch = n_batch;
    cp.n_ctx = 256;
    cp.n_threads = 1;
    elm_context *ctx = NULL;
    char err[512] = "";
    elm_status st = elm_context_new(m, &cp, &ctx, err, sizeof err);
    cr_assert_eq(st, ELM_OK, "elm_context_new: %s (%s)", elm_strerror(st), err);
    return ctx;
}

static uint32_t vocab(const elm_model *m) {
    elm_model_info info = ELM_INIT(elm_model_info);
    cr_assert_eq(elm_model_get_info(m, &info), ELM_OK);
    return info.n_vocab;
}

/* The reference text's token ids (shared/reference/NAME.json `tokens`). */
static elm_token *reference_tokens(const char *model, size_t *n) {
    char rel[256], path[4096], err[512];
    snprintf(rel, sizeof rel, "reference/%s.json", model);
    cr_assert(test_shared_path(rel, path, sizeof path), "missing %s", path);
    json_value *root = json_parse_file(path, err, sizeof err);
    cr_assert_not_null(root, "%s: %s", path, err);
    const json_value *a = json_get(root, "tokens");
    cr_assert(json_len(a) > 0, "%s: no tokens", path);
    elm_token *t = malloc(json_len(a) * sizeof *t);
    for (size_t i = 0; i < json_len(a); i++) t[i] = (elm_token)json_num(json_at(a, i), -1);
    *n = json_len(a);
    json_free(root);
    return t;
}

/* tolerances.json: the exact-mode limit of the model. */
static double exact_tolerance(const char *model) {
    char path[4096], err[512];
    cr_assert(test_shared_path("reference/tolerances.json", path, sizeof path));
    json_value *root = json_parse_file(path, err, sizeof err);
    cr_assert_not_null(root, "%s: %s", path, err);
    const json_value *ex = json_get(root, "exact");
    const json_value *v = json_get(ex, model);
    if (!v) v = json_get(ex, "default");
    cr_assert(json_is(v, JSON_NUMBER), "tolerances.json: no exact limit for %s", model);
    double tol = v->number;
    json_free(root);
    return tol;
}

/* Teacher-forced logits of `n` tokens in one batch (malloc'd, n * n_vocab). */
static float *logits_of(elm_context *ctx, const elm_model *m, const elm_token *t, size_t n) {
    elm_status st = elm_decode(ctx, t, n);
    cr_assert_eq(st, ELM_OK, "decode on %s: %s (%s)", elm_context_device(ctx), elm_strerror(st),
                 elm_context_last_error(ctx));
    size_t nv = vocab(m);
    float *out = malloc(n * nv * sizeof *out);
    for (size_t i = 0; i < n; i++) {
        const float *row = elm_get_logits(ctx, (int32_t)i);
        cr_assert_not_null(row);
        memcpy(out + i * nv, row, nv * sizeof *out);
    }
    return out;
}

/* Evaluates a one-token prompt after what the context holds and returns
 * the run's statistics (the fallback count is the backend's, cumulative). */
static elm_stats stats_of(elm_context *ctx) {
    elm_generate_params gp;
    elm_generate_default_params(&gp);
    elm_sampler_params sp;
    elm_sampler_default_params(&sp);
    gp.sampler = &sp;
    gp.n_predict = 0;
    gp.add_bos = false;
    elm_stats st = ELM_INIT(elm_stats);
    elm_status rc = elm_generate(ctx, "a", 1, &gp, &st);
    cr_assert_eq(rc, ELM_OK, "elm_generate on %s: %s (%s)", elm_context_device(ctx),
                 elm_strerror(rc), elm_context_last_error(ctx));
    return st;
}

/* ---------------------------------------------------- fallback vs CPU */

/* The model's exact logits on Vulkan under `limits` against the CPU's,
 * over the first `most` tokens of the reference text. */
static void fallback_matches_cpu(const char *model, const char *limits, size_t most) {
    setup(model, limits);
    double tol = exact_tolerance(model);
    size_t n;
    elm_token *toks = reference_tokens(model, &n);
    if (n > most) n = most;
    elm_model *mc = load(model, "cpu"), *mv = load(model, "vulkan");
    elm_context *cc = new_ctx(mc, ELM_MODE_EXACT, (uint32_t)n, true);
    /* The same run without the limits: what falls back regardless. A model
     * opens its device once, for all its contexts, so this one has its own. */
    unsetenv("EDGELM_VK_LIMITS");
    elm_model *mp = load(model, "vulkan");
    elm_context *plain = new_ctx(mp, ELM_MODE_EXACT, (uint32_t)n, true);
    free(logits_of(plain, mp, toks, n));
    uint64_t base = stats_of(plain).n_fallback_nodes;
    elm_context_free(plain);
    elm_model_free(mp);
    setenv("EDGELM_VK_LIMITS", limits, 1);
    elm_context *cv = new_ctx(mv, ELM_MODE_EXACT, (uint32_t)n, true);
    cr_assert(!strncmp(elm_context_device(cv), "vulkan", 6), "the context runs on %s",
              elm_context_device(cv));
    float *lc = logits_of(cc, mc, toks, n), *lv = logits_of(cv, mv, toks, n);
    size_t nv = vocab(mc), worst_at = 0, over = 0;
    double worst = 0;
    for (size_t i = 0; i < n * nv; i++) {
        double d = fabs((double)lv[i] - lc[i]);
        if (!(d <= tol)) over++;
        if (d > worst || isnan(d)) worst = d, worst_at = i;
    }
    elm_stats st = stats_of(cv);
    cr_log_info("%s [%s]: %llu CPU fallback nodes (%llu without the limits); max |vulkan - cpu| "
                "over %zu logits %.3g (tolerance %g)",
                model, limits, (unsigned long long)st.n_fallback_nodes, (unsigned long long)base,
                n * nv, worst, tol);
    cr_expect_str_eq(st.device, elm_context_device(cv));
    cr_expect_gt(st.n_fallback_nodes, base,
                 "%s [%s]: no more nodes fell back than without the limits (%llu); the test "
                 "proves nothing",
                 model, limits, (unsigned long long)base);
    cr_expect_eq(over, 0,
                 "%s [%s]: %zu logits differ from the CPU's by more than %g; worst at position "
                 "%zu, id %zu: cpu %.6f, vulkan %.6f",
                 model, limits, over, tol, worst_at / nv, worst_at % nv, lc[worst_at],
                 lv[worst_at]);
    free(lc), free(lv), free(toks);
    elm_context_free(cc), elm_context_free(cv);
    elm_model_free(mc), elm_model_free(mv);
}

/* 32 bytes of shared memory: the attention kernel fits no workgroup for
 * heads of 8, so ATTENTION runs on the CPU between GPU steps (products run
 * as matrix-vector per token, as no tile fits either). */
Test(vk_model, attention_fallback_matches_cpu) {
    fallback_matches_cpu("stories260K", "max_shared=32", 64);
}

/* The same with grouped-query heads of 32 over a 32000-token vocabulary
 * (128 bytes). Matrix-vector per token is slow on a CPU-type device, so
 * 8 positions. */
Test(vk_model, attention_fallback_matches_cpu_gqa_q4_0) {
    fallback_matches_cpu("synth-spm-a-Q4_0", "max_shared=128", 8);
}

/* 1 MiB allocations and bindings: the 64 x 32000 logits straddle
 * allocations (the output product runs on the CPU), and the embedding
 * table is split into row pieces. */
Test(vk_model, straddling_tensors_fallback_matches_cpu) {
    fallback_matches_cpu("synth-spm-a-Q8_0", "small-buffers", 64);
}

/* 64 KiB allocations on the F32 model (the tightest tolerance): most
 * activations straddle, so nearly every step alternates between the GPU
 * and the CPU, through staging buffers as on a discrete GPU. */
Test(vk_model, fragmented_fallback_matches_cpu_f32) {
    fallback_matches_cpu("stories260K", "max_alloc=65536,max_range=65536,discrete", 64);
}

/* -------------------------------------------------------- device loss */

typedef struct collected {
    elm_token tok[256];
    int n;
} collected;

static bool collect(const elm_token_info *info, void *user) {
    collected *c = user;
    if (c->n < 256) c->tok[c->n++] = info->token;
    return true;
}

static elm_status greedy(elm_context *ctx, int n_predict, collected *out, elm_stats *st) {
    memset(out, 0, sizeof *out);
    elm_generate_params gp;
    elm_generate_default_params(&gp);
    elm_sampler_params sp;
    elm_sampler_default_params(&sp);
    gp.sampler = &sp;
    gp.n_predict = n_predict;
    gp.ignore_eos = true;
    sp.temperature = 0;
    gp.callback = collect;
    gp.user_data = out;
    const char *prompt = "Once upon a time";
    return elm_generate(ctx, prompt, strlen(prompt), &gp, st);
}

static void expect_same_tokens(const collected *a, const collected *b, const char *what) {
    cr_expect_eq(a->n, b->n, "%s: %d tokens vs %d", what, a->n, b->n);
    for (int i = 0; i < a->n && i < b->n; i++)
        if (a->tok[i] != b->tok[i]) {
            cr_expect_fail("%s: token %d differs: %d vs %d", what, i, a->tok[i], b->tok[i]);
            return;
        }
}

/* Every entry point of a context after a device error answers ELM_ERR_DEVICE. */
static void expect_unusable(elm_context *ctx, const char *what) {
    elm_token t = 1;
    collected c;
    elm_stats st = ELM_INIT(elm_stats);
    cr_expect_eq(elm_decode(ctx, &t, 1), ELM_ERR_DEVICE, "%s: decode after the loss", what);
    cr_expect(strstr(elm_context_last_error(ctx), "unusable"), "%s: message '%s'", what,
              elm_context_last_error(ctx));
    cr_expect_eq(greedy(ctx, 4, &c, &st), ELM_ERR_DEVICE, "%s: generate after the loss", what);
    cr_expect_eq(c.n, 0, "%s: tokens generated after the loss", what);
    cr_expect_eq(elm_context_reset(ctx), ELM_ERR_DEVICE, "%s: reset after the loss", what);
    cr_expect_null(elm_get_logits(ctx, -1), "%s: logits after the loss", what);
    cr_expect_eq(elm_decode(ctx, &t, 1), ELM_ERR_DEVICE, "%s: decode after the reset", what);
}

/* Loses the device of one context after `after` submissions while it
 * generates 24 greedy tokens of stories260K (exact mode); the other
 * contexts must be unaffected. */
static void device_loss(const char *limits, const char *after, bool mid_generation) {
    setup("stories260K", limits);
    elm_model *mv = load("stories260K", "vulkan"), *mc = load("stories260K", "cpu");
    const int N = 24;
    collected want, got;
    elm_stats st = ELM_INIT(elm_stats);
    elm_context *cpu = new_ctx(mc, ELM_MODE_EXACT, 64, false);
    cr_assert_eq(greedy(cpu, N, &want, &st), ELM_OK);

    elm_context *before = new_ctx(mv, ELM_MODE_EXACT, 64, false);
    char mid[32];
    if (!after) {
        /* Mid-generation: half the graph submissions a whole run makes. */
        elm_context *probe = new_ctx(mv, ELM_MODE_EXACT, 64, false);
        cr_assert_eq(greedy(probe, N, &got, &st), ELM_OK);
        double submits = 0;
        cr_assert_eq(elm_context_device_stat_find(probe, "vulkan.submits", &submits), ELM_OK);
        elm_context_free(probe);
        snprintf(mid, sizeof mid, "%llu", (unsigned long long)(submits / 2) | 1);
        after = mid;
    }
    setenv("EDGELM_VK_FAULT_AFTER", after, 1);
    elm_context *doomed = new_ctx(mv, ELM_MODE_EXACT, 64, false);
    unsetenv("EDGELM_VK_FAULT_AFTER");

    elm_status rc = greedy(doomed, N, &got, &st);
    char what[128];
    snprintf(what, sizeof what, "[%s] fault after %s submissions", limits ? limits : "", after);
    cr_assert_eq(rc, ELM_ERR_DEVICE, "%s: generate gave %s (%s)", what, elm_strerror(rc),
                 elm_context_last_error(doomed));
    cr_expect(strstr(elm_context_last_error(doomed), "VK_ERROR_DEVICE_LOST"), "%s: message '%s'",
              what, elm_context_last_error(doomed));
    if (mid_generation)
        cr_expect(got.n > 0 && got.n < N, "%s: %d tokens before the loss; expected it mid-way",
                  what, got.n);
    else
        cr_expect_eq(got.n, 0, "%s: tokens despite a lost prompt", what);
    for (int i = 0; i < got.n; i++)
        cr_expect_eq(got.tok[i], want.tok[i], "%s: token %d before the loss", what, i);
    expect_unusable(doomed, what);
    elm_context_free(doomed);

    /* The model, the other contexts and new ones carry on. */
    elm_context *after_ctx = new_ctx(mv, ELM_MODE_EXACT, 64, false);
    cr_assert_eq(greedy(before, N, &got, &st), ELM_OK, "%s: a context made before the loss: %s",
                 what, elm_context_last_error(before));
    expect_same_tokens(&want, &got, "vulkan context made before the loss vs cpu");
    cr_assert_eq(greedy(after_ctx, N, &got, &st), ELM_OK, "%s: a context made after the loss: %s",
                 what, elm_context_last_error(after_ctx));
    expect_same_tokens(&want, &got, "vulkan context made after the loss vs cpu");
    cr_expect(!strncmp(st.device, "vulkan", 6), "ran on %s", st.device);
    cr_assert_eq(elm_context_reset(cpu), ELM_OK);
    cr_assert_eq(greedy(cpu, N, &got, &st), ELM_OK);
    expect_same_tokens(&want, &got, "cpu context, again");
    elm_context_free(before);
    elm_context_free(after_ctx);
    elm_context_free(cpu);
    elm_model_free(mv);
    elm_model_free(mc);
}

/* One submission per graph: the prompt and two tokens, then the loss. */
Test(vk_model, device_loss_during_generation) {
    device_loss(NULL, "3", true);
}

/* The first submission: the prompt's evaluation fails. */
Test(vk_model, device_loss_on_the_prompt) {
    device_loss(NULL, "0", false);
}

/* Graphs split into many device runs by CPU fallback nodes, with staged
 * transfers: the loss lands inside a decode step, between two of its
 * device runs (half the submissions of a whole run). */
Test(vk_model, device_loss_between_fallback_steps) {
    device_loss("max_alloc=65536,max_range=65536,discrete", NULL, true);
}

/* A malformed EDGELM_VK_FAULT_AFTER is refused at context creation. */
Test(vk_model, bad_fault_variable_is_refused) {
    setup("stories260K", NULL);
    elm_model *m = load("stories260K", "vulkan");
    setenv("EDGELM_VK_FAULT_AFTER", "soon", 1);
    elm_context_params cp;
    elm_context_default_params(&cp);
    cp.n_ctx = 64;
    elm_context *ctx = NULL;
    char err[512] = "";
    elm_status st = elm_context_new(m, &cp, &ctx, err, sizeof err);
    cr_expect_eq(st, ELM_ERR_INVALID_ARG, "got %s (%s)", elm_strerror(st), err);
    cr_expect(strstr(err, "EDGELM_VK_FAULT_AFTER"), "message: %s", err);
    cr_expect_null(ctx);
    elm_model_free(m);
}

/* ------------------------------------------------ one device per model */

typedef struct gen_job {
    elm_context *ctx;
    collected got;
    elm_status rc;
} gen_job;

static void *gen_thread(void *p) {
    gen_job *j = p;
    elm_stats st = ELM_INIT(elm_stats);
    j->rc = greedy(j->ctx, 16, &j->got, &st);
    return NULL;
}

static double stat_of(elm_context *ctx, const char *name) {
    double v = -1;
    cr_assert_eq(elm_context_device_stat_find(ctx, name, &v), ELM_OK, "no stat %s", name);
    return v;
}

/* Two contexts on one model share one device: the weights are copied to
 * it once (noimport forces copies), each context holds only its KV cache
 * and scratch, and both generate at once, in two threads, what the CPU
 * does. A second model of the same file gets a device of its own. */
Test(vk_model, two_contexts_hold_the_weights_once) {
    setup("synth-spm-a-Q8_0", "noimport");
    elm_model *mv = load("synth-spm-a-Q8_0", "vulkan"), *mc = load("synth-spm-a-Q8_0", "cpu");
    elm_memory_usage mm = ELM_INIT(elm_memory_usage);
    cr_assert_eq(elm_model_memory(mv, &mm), ELM_OK);
    cr_expect_eq(mm.weights_bytes, 0, "weights on the device before any context");
    elm_context *cpu = new_ctx(mc, ELM_MODE_EXACT, 64, false);
    collected want;
    elm_stats st = ELM_INIT(elm_stats);
    cr_assert_eq(greedy(cpu, 16, &want, &st), ELM_OK);

    gen_job a = {.ctx = new_ctx(mv, ELM_MODE_EXACT, 64, false)};
    cr_assert_eq(greedy(a.ctx, 1, &a.got, &st), ELM_OK, "%s", elm_context_last_error(a.ctx));
    cr_assert_eq(elm_model_memory(mv, &mm), ELM_OK);
    uint64_t once = mm.device_bytes;
    elm_model_info info = ELM_INIT(elm_model_info);
    cr_assert_eq(elm_model_get_info(mv, &info), ELM_OK);
    cr_expect_eq(mm.weights_bytes, info.weights_bytes, "device weights %llu vs the file's %llu",
                 (unsigned long long)mm.weights_bytes, (unsigned long long)info.weights_bytes);
    cr_expect_geq(once, info.weights_bytes, "copies of %llu bytes hold only %llu",
                  (unsigned long long)info.weights_bytes, (unsigned long long)once);

    gen_job b = {.ctx = new_ctx(mv, ELM_MODE_EXACT, 64, false)};
    cr_assert_eq(elm_context_reset(a.ctx), ELM_OK);
    pthread_t ta, tb;
    cr_assert_eq(pthread_create(&ta, NULL, gen_thread, &a), 0);
    cr_assert_eq(pthread_create(&tb, NULL, gen_thread, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    cr_assert_eq(a.rc, ELM_OK, "%s", elm_context_last_error(a.ctx));
    cr_assert_eq(b.rc, ELM_OK, "%s", elm_context_last_error(b.ctx));
    expect_same_tokens(&want, &a.got, "first vulkan context vs cpu");
    expect_same_tokens(&want, &b.got, "second vulkan context vs cpu");

    cr_assert_eq(elm_model_memory(mv, &mm), ELM_OK);
    cr_expect_eq(mm.device_bytes, once, "the second context changed the device's weight bytes: %llu -> %llu",
                 (unsigned long long)once, (unsigned long long)mm.device_bytes);
    elm_memory_usage ca = ELM_INIT(elm_memory_usage), cb = ELM_INIT(elm_memory_usage);
    cr_assert_eq(elm_context_memory(a.ctx, &ca), ELM_OK);
    cr_assert_eq(elm_context_memory(b.ctx, &cb), ELM_OK);
    double dev_a = stat_of(a.ctx, "vulkan.context_device_bytes"), dev_b = stat_of(b.ctx, "vulkan.context_device_bytes");
    double all = stat_of(a.ctx, "vulkan.device_bytes");
    cr_expect_lt(dev_a, (double)once, "context A holds %.0f bytes, as much as the weights (%llu)", dev_a,
                 (unsigned long long)once);
    cr_expect_lt(dev_b, (double)once, "context B holds %.0f bytes", dev_b);
    cr_expect_eq(all, dev_a + (double)once, "vulkan.device_bytes %.0f != context %.0f + weights %llu", all,
                 dev_a, (unsigned long long)once);
    /* The copies of the Q8_0 matrices take the split layout, and the two
     * contexts above generated as the CPU does from them. */
    double split = stat_of(a.ctx, "vulkan.weight_split_bytes");
    cr_expect(split > 0 && split <= (double)once, "vulkan.weight_split_bytes %.0f of %llu", split,
              (unsigned long long)once);
    cr_log_info("two contexts: weights %llu bytes once on the device; context A %.0f, B %.0f bytes "
                "(kv %llu + scratch %llu)", (unsigned long long)once, dev_a, dev_b,
                (unsigned long long)ca.kv_bytes, (unsigned long long)ca.scratch_bytes);

    /* Another load of the file: another device, its own copy. */
    elm_model *mv2 = load("synth-spm-a-Q8_0", "vulkan");
    elm_context *c2 = new_ctx(mv2, ELM_MODE_EXACT, 64, false);
    collected got2;
    cr_assert_eq(greedy(c2, 4, &got2, &st), ELM_OK);
    elm_memory_usage m2 = ELM_INIT(elm_memory_usage);
    cr_assert_eq(elm_model_memory(mv2, &m2), ELM_OK);
    cr_expect_eq(m2.device_bytes, once);
    cr_assert_eq(elm_model_memory(mv, &mm), ELM_OK);
    cr_expect_eq(mm.device_bytes, once, "a second model changed the first's device");
    elm_context_free(c2);
    elm_model_free(mv2);

    /* Contexts may go before or after each other; the device stays with
     * the model until it is freed. */
    elm_context_free(a.ctx);
    cr_assert_eq(elm_model_memory(mv, &mm), ELM_OK);
    cr_expect_eq(mm.device_bytes, once);
    elm_context_free(b.ctx);
    elm_context_free(cpu);
    elm_model_free(mv);
    elm_model_free(mc);
}

/* The CPU: the weights are the mapped file, nothing on a device. */
Test(vk_model, model_memory_on_the_cpu) {
    setup("stories260K", NULL);
    elm_model *mc = load("stories260K", "cpu");
    elm_memory_usage mm = ELM_INIT(elm_memory_usage);
    elm_model_info info = ELM_INIT(elm_model_info);
    cr_assert_eq(elm_model_get_info(mc, &info), ELM_OK);
    cr_assert_eq(elm_model_memory(mc, &mm), ELM_OK);
    cr_expect_eq(mm.weights_bytes, info.weights_bytes);
    cr_expect_eq(mm.device_bytes, 0);
    cr_expect_eq(elm_model_memory(NULL, &mm), ELM_ERR_INVALID_ARG);
    cr_expect_eq(elm_model_memory(mc, NULL), ELM_ERR_INVALID_ARG);
    elm_model_free(mc);
}
