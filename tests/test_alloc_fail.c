/*
 * test_alloc_fail.c: every allocation the library makes may fail, as sqlite
 * and libuv test it. A test allocator installed with elm_set_allocator()
 * fails the k-th allocation (malloc or realloc, counting from 1) of one
 * operation, for k = 1, 2, ... until the operation runs without reaching the
 * failure. For every k:
 *  - the status is ELM_OK or ELM_ERR_NO_MEMORY with a message (the err
 *    buffer of loads and context creation, elm_context_last_error() of
 *    decode and generate), and no failure is reported unless an
 *    allocation failed;
 *  - once what the operation made is freed, elm_allocations_live() is back
 *    to its value before the operation (nothing leaked);
 *  - a model loaded and a context created before the loop stay usable: the
 *    context gives logits bit-identical to those it gave before the loop
 *    (after every k), and so does a new context (at the end of the loop);
 *  - a context whose decode or generate failed keeps its n_past and then
 *    decodes and generates as a fresh one does;
 *  - what an operation that succeeded made works (same logits, tokens).
 * The operations: model load (GGUF parse, hyperparameters, tokenizer,
 * weights binding) of a tiny model written by tests/support/tiny_model.c,
 * for the CPU and for device "vulkan", and of
 * <shared>/models/stories260K.gguf; a vocabulary-only load of a byte-level
 * BPE model and its tokenization (PCRE2's allocations); context creation
 * (KV cache, scratch, thread pool or Vulkan device), the first elm_decode
 * and elm_generate, on the CPU and on device "vulkan" (skipped only when
 * there is no Vulkan device).
 *
 * Each loop prints how many allocation points it covered; at the time of
 * writing: load tiny 44 (47 for vulkan), stories260K 71, BPE vocabulary 86
 * and tokenization 4; context 14 (CPU) and 98 (lavapipe, validation on);
 * first decode 6 and 10; generate 16 and 46. Every index is failed, no
 * stride: the largest loop (a Vulkan context) has ~100 points, though each
 * costs a Vulkan context on lavapipe, hence no new context after every k.
 */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgelm.h"
#include "support/paths.h"
#include "support/tiny_model.h"

/* ------------------------------------------------------ failing allocator */

static atomic_long n_allocs;  /* allocations since arm() */
static atomic_long fail_at;   /* the allocation that fails; 0: none */
static atomic_bool fail_hit;  /* the failure was injected */

static bool should_fail(void) {
    long k = atomic_fetch_add(&n_allocs, 1) + 1;
    long f = atomic_load(&fail_at);
    if (f == 0 || k != f) return false;
    atomic_store(&fail_hit, true);
    return true;
}

static void *fa_malloc(void *user, size_t size) {
    (void)user;
    return should_fail() ? NULL : malloc(size);
}

static void *fa_realloc(void *user, void *ptr, size_t size) {
    (void)user;
    return should_fail() ? NULL : realloc(ptr, size);
}

static void fa_free(void *user, void *ptr) {
    (void)user;
    free(ptr);
}

static void arm(long k) {
    atomic_store(&fail_hit, false);
    atomic_store(&n_allocs, 0);
    atomic_store(&fail_at, k);
}

/* Returns whether the k-th allocation was reached (and failed). */
static bool disarm(void) {
    atomic_store(&fail_at, 0);
    return atomic_load(&fail_hit);
}

static void install(void) {
    static const elm_allocator a = {
        .struct_size = sizeof(elm_allocator),
        .malloc = fa_malloc,
        .realloc = fa_realloc,
        .free = fa_free,
    };
    cr_assert_eq(elm_set_allocator(&a), ELM_OK, "%zu allocations live before the test",
                 elm_allocations_live());
}

static void uninstall(void) {
    size_t live = elm_allocations_live();
    cr_assert_eq(live, 0, "%zu allocations live after the test", live);
    cr_assert_eq(elm_set_allocator(NULL), ELM_OK);
}

TestSuite(alloc_fail, .init = install, .fini = uninstall, .timeout = 600);

/* The status of one armed operation: OK, or NO_MEMORY with a message when
 * the injected failure was reached. */
static void check_status(const char *what, long k, elm_status st, bool hit, const char *msg) {
    if (st == ELM_OK) return;
    cr_assert(hit, "%s, k=%ld: %s (%s) though no allocation failed", what, k, elm_strerror(st),
              msg);
    cr_assert_eq(st, ELM_ERR_NO_MEMORY, "%s, k=%ld: %s (%s), want ELM_ERR_NO_MEMORY", what, k,
                 elm_strerror(st), msg);
    cr_assert(msg && msg[0], "%s, k=%ld: failed without a message", what, k);
}

static void check_live(const char *what, long k, size_t live0) {
    size_t live = elm_allocations_live();
    cr_assert_eq(live, live0, "%s, k=%ld: %zu allocations live after, %zu before (leak)", what, k,
                 live, live0);
}

static void report(const char *what, long n) {
    fprintf(stderr, "alloc_fail: %s: %ld allocation points\n", what, n);
}

/* ----------------------------------------------------------------- models */

/* Token ids below the vocabulary size of every model used here. */
static const elm_token k_tokens[] = {1, 45, 100, 7, 260, 33};
#define N_TOKENS (sizeof k_tokens / sizeof *k_tokens)
#define N_CTX 64
#define N_PREDICT 6
static const char k_prompt[] = "Once upon a time, the cat";

static const char *tiny_path(void) {
    static char path[4096];
    if (!path[0]) {
        snprintf(path, sizeof path, "%s/alloc-fail-tiny.gguf", test_tmp_dir());
        tiny_model_opts o = tiny_model_default();
        cr_assert_eq(tiny_model_write(&o, path), 0, "tiny_model_write(%s)", path);
    }
    return path;
}

static bool have_vulkan(void) {
    elm_device_info info[16];
    info[0].struct_size = sizeof info[0];
    size_t n = 0;
    cr_assert_eq(elm_devices(info, 16, &n), ELM_OK);
    for (size_t i = 0; i < n && i < 16; i++)
        if (!strcmp(info[i].backend, "vulkan")) return true;
    return false;
}

static const char *device_or_skip(const char *device) {
    if (!strcmp(device, "vulkan") && !have_vulkan()) cr_skip_test("no Vulkan device");
    return device;
}

static elm_context_params ctx_params(void) {
    elm_context_params cp;
    elm_context_default_params(&cp);
    cp.n_ctx = N_CTX;
    cp.n_threads = 2;
    return cp;
}

static elm_model *load(const char *path, const char *device) {
    elm_model_params mp;
    elm_model_default_params(&mp);
    mp.device = device;
    elm_model *m = NULL;
    char err[512] = "";
    cr_assert_eq(elm_model_load(path, &mp, &m, err, sizeof err), ELM_OK, "%s: %s", path, err);
    return m;
}

static elm_context *new_ctx(const elm_model *m) {
    elm_context_params cp = ctx_params();
    elm_context *c = NULL;
    char err[512] = "";
    cr_assert_eq(elm_context_new(m, &cp, &c, err, sizeof err), ELM_OK, "%s", err);
    return c;
}

static size_t n_vocab(const elm_model *m) {
    elm_model_info info = ELM_INIT(elm_model_info);
    cr_assert_eq(elm_model_get_info(m, &info), ELM_OK);
    return info.n_vocab;
}

/* Decodes k_tokens after what the context holds and checks the last
 * token's logits against ref (when ref is not NULL) or copies them to out. */
static void decode_check(elm_context *c, const float *ref, float *out, size_t nv, const char *what,
                         long k) {
    elm_status st = elm_decode(c, k_tokens, N_TOKENS);
    cr_assert_eq(st, ELM_OK, "%s, k=%ld: decode: %s", what, k, elm_context_last_error(c));
    const float *l = elm_get_logits(c, -1);
    cr_assert(l, "%s, k=%ld: no logits", what, k);
    if (out) memcpy(out, l, nv * sizeof *l);
    if (ref)
        cr_assert(memcmp(l, ref, nv * sizeof *l) == 0,
                  "%s, k=%ld: the logits differ from those before the loop", what, k);
}

/* A model and a context created before a loop, with their logits. */
typedef struct fixture {
    elm_model *m;
    elm_context *c0;
    float *ref;
    size_t nv;
} fixture;

static fixture fixture_open(const char *path, const char *device) {
    fixture f = {.m = load(path, device)};
    f.nv = n_vocab(f.m);
    f.c0 = new_ctx(f.m);
    f.ref = malloc(f.nv * sizeof *f.ref);
    cr_assert(f.ref);
    decode_check(f.c0, NULL, f.ref, f.nv, "baseline", 0);
    return f;
}

/* The fixture's context (reset) gives the same logits; after every k. */
static void fixture_check(const fixture *f, const char *what, long k) {
    cr_assert_eq(elm_context_reset(f->c0), ELM_OK);
    decode_check(f->c0, f->ref, NULL, f->nv, what, k);
}

/* At the end of a loop, a new context on the fixture's model does too (not
 * after every k: a Vulkan context costs a tenth of a second on lavapipe). */
static void fixture_close(fixture *f, const char *what, long k) {
    fixture_check(f, what, k);
    elm_context *c = new_ctx(f->m);
    decode_check(c, f->ref, NULL, f->nv, what, k);
    elm_context_free(c);
    elm_context_free(f->c0);
    elm_model_free(f->m);
    free(f->ref);
}

/* ------------------------------------------------------------------ loads */

static void load_loop(const char *path, const char *device, const char *what) {
    fixture f = fixture_open(path, device);
    for (long k = 1;; k++) {
        size_t live0 = elm_allocations_live();
        elm_model_params mp;
        elm_model_default_params(&mp);
        mp.device = device;
        elm_model *m = NULL;
        char err[512] = "";
        arm(k);
        elm_status st = elm_model_load(path, &mp, &m, err, sizeof err);
        bool hit = disarm();
        check_status(what, k, st, hit, err);
        cr_assert(st == ELM_OK ? m != NULL : m == NULL, "%s, k=%ld: *out", what, k);
        if (m) { /* a load that got past the failure works as well */
            elm_context *c = new_ctx(m);
            decode_check(c, f.ref, NULL, f.nv, what, k);
            elm_context_free(c);
        }
        elm_model_free(m);
        check_live(what, k, live0);
        fixture_check(&f, what, k);
        if (!hit) {
            cr_assert_eq(st, ELM_OK);
            report(what, k - 1);
            fixture_close(&f, what, k);
            return;
        }
    }
}

Test(alloc_fail, load_tiny) {
    load_loop(tiny_path(), "cpu", "load tiny");
}

/* The same with device "vulkan": choosing the device lists the Vulkan devices. */
Test(alloc_fail, load_tiny_vulkan) {
    load_loop(tiny_path(), device_or_skip("vulkan"), "load tiny for vulkan");
}

Test(alloc_fail, load_stories260K) {
    char path[4096];
    if (!test_shared_path("models/stories260K.gguf", path, sizeof path))
        cr_skip_test("%s/models/stories260K.gguf is absent", test_shared_dir());
    load_loop(path, "cpu", "load stories260K");
}

/* A byte-level BPE vocabulary: the pre-tokenizer is a PCRE2 regex, whose
 * compiled code and match data come from the library's allocator too. */
Test(alloc_fail, bpe_vocab_and_tokenize) {
    char path[4096];
    if (!test_shared_path("models/synth-bpe-q-Q8_0.gguf", path, sizeof path))
        cr_skip_test("%s/models/synth-bpe-q-Q8_0.gguf is absent", test_shared_dir());
    elm_model_params mp;
    elm_model_default_params(&mp);
    mp.vocab_only = true;
    static const char text[] = "Hello world, it's 2024: don't   stop\n\tnow!";
    elm_token ref[64], toks[64];
    size_t n_ref = 0, n = 0;
    elm_model *m0 = NULL;
    char err[512] = "";
    cr_assert_eq(elm_model_load(path, &mp, &m0, err, sizeof err), ELM_OK, "%s", err);
    cr_assert_eq(elm_tokenize(m0, text, strlen(text), true, true, ref, 64, &n_ref), ELM_OK);

    long k = 1;
    for (;; k++) {
        size_t live0 = elm_allocations_live();
        elm_model *m = NULL;
        err[0] = 0;
        arm(k);
        elm_status st = elm_model_load(path, &mp, &m, err, sizeof err);
        bool hit = disarm();
        check_status("bpe vocab load", k, st, hit, err);
        if (m) {
            cr_assert_eq(elm_tokenize(m, text, strlen(text), true, true, toks, 64, &n), ELM_OK);
            cr_assert(n == n_ref && !memcmp(toks, ref, n * sizeof *toks),
                      "bpe vocab load, k=%ld: other tokens", k);
        }
        elm_model_free(m);
        check_live("bpe vocab load", k, live0);
        if (!hit) break;
    }
    report("bpe vocab load", k - 1);

    for (k = 1;; k++) {
        size_t live0 = elm_allocations_live();
        arm(k);
        elm_status st = elm_tokenize(m0, text, strlen(text), true, true, toks, 64, &n);
        bool hit = disarm();
        check_status("bpe tokenize", k, st, hit, elm_strerror(st));
        if (st == ELM_OK)
            cr_assert(n == n_ref && !memcmp(toks, ref, n * sizeof *toks),
                      "bpe tokenize, k=%ld: other tokens", k);
        check_live("bpe tokenize", k, live0);
        if (!hit) break;
    }
    report("bpe tokenize", k - 1);
    cr_assert_eq(elm_tokenize(m0, text, strlen(text), true, true, toks, 64, &n), ELM_OK);
    cr_assert(n == n_ref && !memcmp(toks, ref, n * sizeof *toks));
    elm_model_free(m0);
}

/* --------------------------------------------------------------- contexts */

static void context_loop(const char *device) {
    char what[64];
    snprintf(what, sizeof what, "context on %s", device);
    fixture f = fixture_open(tiny_path(), device);
    long k = 1;
    for (;; k++) {
        size_t live0 = elm_allocations_live();
        elm_context_params cp = ctx_params();
        elm_context *c = NULL;
        char err[512] = "";
        arm(k);
        elm_status st = elm_context_new(f.m, &cp, &c, err, sizeof err);
        bool hit = disarm();
        check_status(what, k, st, hit, err);
        cr_assert(st == ELM_OK ? c != NULL : c == NULL, "%s, k=%ld: *out", what, k);
        if (c) {
            cr_assert_str_eq(elm_context_device(c), elm_context_device(f.c0));
            decode_check(c, f.ref, NULL, f.nv, what, k);
        }
        elm_context_free(c);
        check_live(what, k, live0);
        fixture_check(&f, what, k);
        if (!hit) break;
    }
    report(what, k - 1);
    fixture_close(&f, what, k);
}

Test(alloc_fail, context_cpu) {
    context_loop("cpu");
}

Test(alloc_fail, context_vulkan) {
    context_loop(device_or_skip("vulkan"));
}

/* ----------------------------------------------------------------- decode */

/* The first decode of a new context (k_tokens in one batch). */
static void decode_loop(const char *device) {
    char what[64];
    snprintf(what, sizeof what, "first decode on %s", device);
    fixture f = fixture_open(tiny_path(), device);
    long k = 1;
    for (;; k++) {
        size_t live0 = elm_allocations_live();
        elm_context *c = new_ctx(f.m);
        arm(k);
        elm_status st = elm_decode(c, k_tokens, N_TOKENS);
        bool hit = disarm();
        check_status(what, k, st, hit, elm_context_last_error(c));
        if (st == ELM_OK) {
            const float *l = elm_get_logits(c, -1);
            cr_assert(l && !memcmp(l, f.ref, f.nv * sizeof *l), "%s, k=%ld: other logits", what,
                      k);
        } else { /* the failed call is forgotten; the context still works */
            cr_assert_eq(elm_context_n_past(c), 0, "%s, k=%ld: n_past %u after a failure", what, k,
                         elm_context_n_past(c));
            cr_assert_null(elm_get_logits(c, -1), "%s, k=%ld: logits after a failure", what, k);
            decode_check(c, f.ref, NULL, f.nv, what, k);
        }
        elm_context_free(c);
        check_live(what, k, live0);
        fixture_check(&f, what, k);
        if (!hit) break;
    }
    report(what, k - 1);
    fixture_close(&f, what, k);
}

Test(alloc_fail, decode_cpu) {
    decode_loop("cpu");
}

Test(alloc_fail, decode_vulkan) {
    decode_loop(device_or_skip("vulkan"));
}

/* --------------------------------------------------------------- generate */

typedef struct gen_out {
    elm_token tok[N_PREDICT];
    size_t n;
} gen_out;

static bool collect(const elm_token_info *info, void *user) {
    gen_out *g = user;
    if (g->n < N_PREDICT) g->tok[g->n++] = info->token;
    return true;
}

static elm_status generate(elm_context *c, gen_out *out) {
    elm_generate_params gp;
    elm_generate_default_params(&gp);
    elm_sampler_params sp;
    elm_sampler_default_params(&sp);
    gp.sampler = &sp;
    gp.n_predict = N_PREDICT;
    sp.temperature = 0.8f; /* the sampler's path, with every logit */
    sp.top_k = 40;
    sp.seed = 7;
    gp.callback = collect;
    gp.user_data = out;
    out->n = 0;
    return elm_generate(c, k_prompt, strlen(k_prompt), &gp, NULL);
}

static void generate_loop(const char *device) {
    char what[64];
    snprintf(what, sizeof what, "generate on %s", device);
    fixture f = fixture_open(tiny_path(), device);
    gen_out ref, out;
    elm_context *c = new_ctx(f.m);
    cr_assert_eq(generate(c, &ref), ELM_OK, "%s", elm_context_last_error(c));
    cr_assert_eq(ref.n, N_PREDICT);
    elm_context_free(c);
    long k = 1;
    for (;; k++) {
        size_t live0 = elm_allocations_live();
        c = new_ctx(f.m);
        arm(k);
        elm_status st = generate(c, &out);
        bool hit = disarm();
        check_status(what, k, st, hit, elm_context_last_error(c));
        if (st == ELM_OK) {
            cr_assert(out.n == ref.n && !memcmp(out.tok, ref.tok, sizeof ref.tok),
                      "%s, k=%ld: other tokens", what, k);
        } else { /* the failed call is forgotten; the context still works */
            cr_assert_eq(elm_context_n_past(c), 0, "%s, k=%ld: n_past %u after a failure", what, k,
                         elm_context_n_past(c));
            decode_check(c, f.ref, NULL, f.nv, what, k);
            cr_assert_eq(elm_context_reset(c), ELM_OK);
            cr_assert_eq(generate(c, &out), ELM_OK, "%s", elm_context_last_error(c));
            cr_assert(out.n == ref.n && !memcmp(out.tok, ref.tok, sizeof ref.tok),
                      "%s, k=%ld: other tokens after a failure", what, k);
        }
        elm_context_free(c);
        check_live(what, k, live0);
        fixture_check(&f, what, k);
        if (!hit) break;
    }
    report(what, k - 1);
    fixture_close(&f, what, k);
}

Test(alloc_fail, generate_cpu) {
    generate_loop("cpu");
}

Test(alloc_fail, generate_vulkan) {
    generate_loop(device_or_skip("vulkan"));
}
