/*
 * test_reference.c: edgelm against independent references (../shared).
 *
 * The four agreement rules of shared/README.md, one Criterion test per
 * (model, mode, rule), with the tolerances read from
 * shared/reference/tolerances.json. Also unit tests of the JSON reader the
 * checks rely on.
 *
 * Fast mode is compared with whichever reference it is closer to: per model,
 * the one (NAME.json or NAME.deqf32.json) with the smaller maximum error over
 * the top-20 logits of the teacher-forced evaluation. Rule 3 in fast mode uses
 * that same reference's greedy sequence, because the two references' greedy
 * sequences part ways after a low-margin step on some models.
 *
 * Device: ELM_TEST_DEVICE ("cpu" when unset; "vulkan", "vulkan:N", "auto")
 * goes to elm_model_params.device and to the CLI's --device (rule 4); every
 * message names it, with the EDGELM_VK_LIMITS profile in force, e.g.
 * "[vulkan limits=pi5]". A Vulkan device that does not exist skips the
 * tests with a message; a context that silently ran elsewhere fails them.
 * Run with EDGELM_VK_VALIDATION=1, a validation error fails every decode
 * (the engine returns ELM_ERR_INTERNAL). ELM_TEST_MODELS, a comma-separated
 * list of model names (e.g. "stories260K,stories260K-f16,synth-spm-a-Q4_0"),
 * restricts the model tests to those models (the others skip, saying why);
 * unset or empty runs them all.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "edgelm.h"
#include "support/json.h"
#include "support/paths.h"

#if ELM_HAVE_VULKAN
#include "backends/vulkan/vk_backend.h"
#endif

/* ============================================================ JSON reader */

static json_value *parse_str(const char *s) {
    char err[256];
    return json_parse(s, strlen(s), err, sizeof err);
}

static void expect_rejected(const char *s) {
    char err[256] = "";
    json_value *v = json_parse(s, strlen(s), err, sizeof err);
    cr_expect_null(v, "accepted invalid JSON: %s", s);
    cr_expect(err[0] != 0, "no error message for: %s", s);
    json_free(v);
}

Test(json, scalars_and_nesting) {
    json_value *v = parse_str(" {\"a\": [1, -0.5, 1.5E+2, 2e-3, 0, true, false, null],"
                              " \"b\": {\"c\": {\"d\": \"x\"}}, \"e\": []} ");
    cr_assert_not_null(v);
    const json_value *a = json_get(v, "a");
    cr_assert_eq(json_len(a), 8);
    cr_expect_eq(json_num(json_at(a, 0), 0), 1.0);
    cr_expect_eq(json_num(json_at(a, 1), 0), -0.5);
    cr_expect_eq(json_num(json_at(a, 2), 0), 150.0);
    cr_expect_eq(json_num(json_at(a, 3), 0), 2e-3);
    cr_expect(json_is(json_at(a, 5), JSON_BOOL) && json_at(a, 5)->boolean);
    cr_expect(json_is(json_at(a, 6), JSON_BOOL) && !json_at(a, 6)->boolean);
    cr_expect(json_is(json_at(a, 7), JSON_NULL));
    cr_expect_null(json_at(a, 8));
    cr_expect_str_eq(json_str(json_path(v, "b.c.d")), "x");
    cr_expect_eq(json_num(json_path(v, "a.2"), 0), 150.0);
    cr_expect_null(json_path(v, "a.x"));
    cr_expect_null(json_get(v, "missing"));
    cr_expect(json_is(json_get(v, "e"), JSON_ARRAY) && json_len(json_get(v, "e")) == 0);
    json_free(v);
}

Test(json, number_precision) {
    json_value *v = parse_str("[25.4968338, -1234567.890625, 1e308, 5e-324]");
    cr_assert_not_null(v);
    cr_expect_eq(json_num(json_at(v, 0), 0), 25.4968338);
    cr_expect_eq(json_num(json_at(v, 1), 0), -1234567.890625);
    cr_expect_eq(json_num(json_at(v, 2), 0), 1e308);
    cr_expect_eq(json_num(json_at(v, 3), 0), 5e-324);
    json_free(v);
}

Test(json, string_escapes) {
    json_value *v = parse_str("[\"q\\\"b\\\\s\\/\\b\\f\\n\\r\\t\", \"\\u00e9\\u20AC\","
                              " \"\\ud83d\\ude00\", \"a\\u0000b\", \"caf\xc3\xa9\"]");
    cr_assert_not_null(v);
    cr_expect_str_eq(json_str(json_at(v, 0)), "q\"b\\s/\b\f\n\r\t");
    cr_expect_str_eq(json_str(json_at(v, 1)), "\xc3\xa9\xe2\x82\xac");
    cr_expect_str_eq(json_str(json_at(v, 2)), "\xf0\x9f\x98\x80");
    const json_value *nul = json_at(v, 3);
    cr_expect_eq(nul->len, 3);
    cr_expect(memcmp(nul->string, "a\0b", 3) == 0);
    cr_expect_str_eq(json_str(json_at(v, 4)), "caf\xc3\xa9");
    json_free(v);
}

Test(json, object_keys) {
    json_value *v = parse_str("{\"k\": 1, \"k\": 2, \"\\u006b2\": 3, \"\": 4}");
    cr_assert_not_null(v);
    cr_expect_eq(json_num(json_get(v, "k"), 0), 1.0, "the first of repeated keys wins");
    cr_expect_eq(json_num(json_get(v, "k2"), 0), 3.0, "escaped keys are decoded");
    cr_expect_eq(json_num(json_get(v, ""), 0), 4.0);
    cr_expect_eq(json_len(v), 4);
    json_free(v);
}

Test(json, rejects_malformed) {
    static const char *bad[] = {
        "", " ", "[1,]", "{\"a\":1,}", "[1 2]", "01", ".5", "+1", "1.", "1e", "-",
        "0x10", "NaN", "Infinity", "1e999", "tru", "nul", "'a'", "\"abc", "\"a\nb\"",
        "\"\\x\"", "\"\\u12\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"",
        "\"\xff\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "{1:2}", "{\"a\" 1}", "[", "{",
        "1 2", "[1]]", "{\"a\":}", "\"a\\",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) expect_rejected(bad[i]);
}

Test(json, deep_nesting_fails_cleanly) {
    size_t n = 100000;
    char *s = malloc(n + 1);
    memset(s, '[', n);
    s[n] = 0;
    char err[256] = "";
    cr_expect_null(json_parse(s, n, err, sizeof err));
    cr_expect(strstr(err, "deep") != NULL, "message: %s", err);
    free(s);
}

Test(json, not_nul_terminated) {
    const char text[] = {'[', '1', '2', ']', '3', '4'};
    json_value *v = json_parse(text, 4, NULL, 0);
    cr_assert_not_null(v);
    cr_expect_eq(json_num(json_at(v, 0), 0), 12.0);
    json_free(v);
    v = json_parse(text, 2, NULL, 0);
    cr_expect_null(v);
}

/* ========================================================= reference data */

typedef struct model_case {
    const char *name;
    bool has_deq; /* a NAME.deqf32.json exists (quantized and F16 models) */
} model_case;

#define N_TOP 20

typedef struct reference {
    json_value *root;
    char file[128];
    size_t n_vocab;
    elm_token *tokens;
    size_t n_tokens;
    /* positions: n_tokens rows of N_TOP [id, logit] pairs, and lse */
    elm_token *top_ids;
    double *top_logits;
    double *lse;
    elm_token *prompt_tokens;
    size_t n_prompt;
    elm_token *generated;
    double *gen_margin;
    size_t n_gen;
    const char *text;
    const char *prompt;
} reference;

typedef struct tolerances {
    double exact, fast_max, fast_rms, fast_lse;
} tolerances;

/* ================================================================ device */

/* The device under test: ELM_TEST_DEVICE, or "cpu". */
static const char *test_device(void) {
    const char *d = getenv("ELM_TEST_DEVICE");
    return d && *d ? d : "cpu";
}

static bool device_is_vulkan(void) {
    return strncmp(test_device(), "vulkan", 6) == 0;
}

/* "[cpu]", "[vulkan]" or "[vulkan limits=pi5]": the prefix of every message. */
static const char *device_label(void) {
    static _Thread_local char label[192];
    const char *lim = getenv("EDGELM_VK_LIMITS");
    if (strcmp(test_device(), "cpu") != 0 && lim && *lim)
        snprintf(label, sizeof label, "[%s limits=%s]", test_device(), lim);
    else
        snprintf(label, sizeof label, "[%s]", test_device());
    return label;
}

static void require_device(void) {
    if (device_is_vulkan() && !test_have_vulkan_device())
        cr_skip_test("%s ELM_TEST_DEVICE=%s but this machine has no Vulkan device (or this "
                     "build has no Vulkan backend): skipped",
                     device_label(), test_device());
}

/* Whether `model` is in ELM_TEST_MODELS (a comma-separated list; unset or
 * empty: every model). */
static bool model_selected(const char *model) {
    const char *list = getenv("ELM_TEST_MODELS");
    if (!list || !*list) return true;
    size_t n = strlen(model);
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ", ");
        if (len == n && !strncmp(p, model, n)) return true;
        p += len;
        p += strspn(p, ", ");
    }
    return false;
}

static void require_shared(const char *model) {
    char path[4096];
    if (!test_shared_path("models", path, sizeof path))
        cr_skip_test("shared ground truth not found at %s (set ELM_SHARED_DIR)", path);
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s.gguf", model);
    cr_assert(test_shared_path(rel, path, sizeof path), "model missing: %s", path);
}

/* A model test: the shared files, the device, and the model selection. */
static void require_model(const char *model) {
    require_shared(model);
    require_device();
    if (!model_selected(model))
        cr_skip_test("%s %s is not in ELM_TEST_MODELS=%s: skipped", device_label(), model,
                     getenv("ELM_TEST_MODELS"));
}

static json_value *load_json(const char *rel) {
    char path[4096], err[512];
    cr_assert(test_shared_path(rel, path, sizeof path), "reference missing: %s", path);
    json_value *v = json_parse_file(path, err, sizeof err);
    cr_assert_not_null(v, "%s: %s", path, err);
    return v;
}

static double lookup_tol(const json_value *tab, const char *model, const char *key) {
    const json_value *entry = json_get(tab, model);
    if (!entry) entry = json_get(tab, "default");
    const json_value *v = key ? json_get(entry, key) : entry;
    cr_assert(json_is(v, JSON_NUMBER), "tolerances.json: no %s for %s", key ? key : "value",
              model);
    return v->number;
}

static tolerances load_tolerances(const char *model) {
    json_value *root = load_json("reference/tolerances.json");
    const json_value *fast = json_get(root, "fast");
    tolerances t = {
        .exact = lookup_tol(json_get(root, "exact"), model, NULL),
        .fast_max = lookup_tol(fast, model, "fast_max"),
        .fast_rms = lookup_tol(fast, model, "fast_rms"),
        .fast_lse = lookup_tol(fast, model, "fast_lse"),
    };
    json_free(root);
    return t;
}

/* Reads a JSON array of integers into a malloc'd array. */
static elm_token *read_ids(const reference *r, const char *key, size_t *n) {
    const json_value *a = json_get(r->root, key);
    cr_assert(json_is(a, JSON_ARRAY) && a->len > 0, "%s: `%s` is not a non-empty array",
              r->file, key);
    elm_token *ids = malloc(a->len * sizeof *ids);
    for (size_t i = 0; i < a->len; i++) {
        const json_value *e = json_at(a, i);
        cr_assert(json_is(e, JSON_NUMBER) && e->number >= 0 && e->number == floor(e->number) &&
                      e->number < (double)r->n_vocab,
                  "%s: %s[%zu] is not an id below n_vocab", r->file, key, i);
        ids[i] = (elm_token)e->number;
    }
    *n = a->len;
    return ids;
}

static double *read_numbers(const reference *r, const char *key, size_t n) {
    const json_value *a = json_get(r->root, key);
    cr_assert(json_len(a) == n, "%s: `%s` should have %zu entries", r->file, key, n);
    double *out = malloc(n * sizeof *out);
    for (size_t i = 0; i < n; i++) {
        cr_assert(json_is(json_at(a, i), JSON_NUMBER), "%s: %s[%zu]", r->file, key, i);
        out[i] = json_at(a, i)->number;
    }
    return out;
}

static void read_position(reference *r, size_t i) {
    const json_value *pos = json_at(json_get(r->root, "positions"), i);
    const json_value *top = json_get(pos, "top");
    cr_assert(json_is(json_get(pos, "lse"), JSON_NUMBER) && json_len(top) == N_TOP,
              "%s: positions[%zu] needs lse and %d top pairs", r->file, i, N_TOP);
    r->lse[i] = json_get(pos, "lse")->number;
    for (size_t k = 0; k < N_TOP; k++) {
        const json_value *pair = json_at(top, k);
        const json_value *id = json_at(pair, 0), *logit = json_at(pair, 1);
        cr_assert(json_is(id, JSON_NUMBER) && json_is(logit, JSON_NUMBER) &&
                      id->number >= 0 && id->number < (double)r->n_vocab,
                  "%s: positions[%zu].top[%zu] is not an [id, logit] pair", r->file, i, k);
        r->top_ids[i * N_TOP + k] = (elm_token)id->number;
        r->top_logits[i * N_TOP + k] = logit->number;
    }
}

static void load_reference(reference *r, const char *model, bool deq) {
    memset(r, 0, sizeof *r);
    snprintf(r->file, sizeof r->file, "%s%s.json", model, deq ? ".deqf32" : "");
    char rel[256];
    snprintf(rel, sizeof rel, "reference/%s", r->file);
    r->root = load_json(rel);
    r->n_vocab = (size_t)json_num(json_get(r->root, "n_vocab"), 0);
    r->text = json_str(json_get(r->root, "text"));
    r->prompt = json_str(json_get(r->root, "prompt"));
    cr_assert(r->n_vocab > 0 && r->text && r->prompt, "%s: n_vocab, text, prompt", r->file);
    r->tokens = read_ids(r, "tokens", &r->n_tokens);
    cr_assert_eq(json_len(json_get(r->root, "positions")), r->n_tokens,
                 "%s: one position per token", r->file);
    r->top_ids = malloc(r->n_tokens * N_TOP * sizeof *r->top_ids);
    r->top_logits = malloc(r->n_tokens * N_TOP * sizeof *r->top_logits);
    r->lse = malloc(r->n_tokens * sizeof *r->lse);
    for (size_t i = 0; i < r->n_tokens; i++) read_position(r, i);
    r->prompt_tokens = read_ids(r, "prompt_tokens", &r->n_prompt);
    r->generated = read_ids(r, "generated", &r->n_gen);
    r->gen_margin = read_numbers(r, "generated_margin", r->n_gen);
}

static void free_reference(reference *r) {
    json_free(r->root);
    free(r->tokens);
    free(r->top_ids);
    free(r->top_logits);
    free(r->lse);
    free(r->prompt_tokens);
    free(r->generated);
    free(r->gen_margin);
}

/* ================================================================= engine */

static elm_model *load_model(const char *name) {
    char rel[256], path[4096], err[512] = "";
    snprintf(rel, sizeof rel, "models/%s.gguf", name);
    test_shared_path(rel, path, sizeof path);
    elm_model_params mp;
    elm_model_default_params(&mp);
    mp.device = test_device();
    elm_model *m = NULL;
    elm_status st = elm_model_load(path, &mp, &m, err, sizeof err);
    cr_assert_eq(st, ELM_OK, "%s loading %s: %s (%s)", device_label(), path, elm_strerror(st),
                 err);
    return m;
}

static size_t model_vocab(const elm_model *m) {
    elm_model_info info = ELM_INIT(elm_model_info);
    cr_assert_eq(elm_model_get_info(m, &info), ELM_OK);
    return info.n_vocab;
}

/* Runs `n` tokens in one batch from position 0 and returns all n rows of
 * logits (malloc'd, n * n_vocab). */
static float *eval_batch(const elm_model *m, elm_mode mode, const elm_token *toks, size_t n) {
    elm_context_params cp;
    elm_context_default_params(&cp);
    cp.mode = mode;
    cp.logits_all = true;
    cp.n_batch = (uint32_t)n;
    cp.n_ctx = n < 256 ? 256 : (uint32_t)n;
    /* One thread: the references are single-threaded, and test_threads
     * proves that more threads give the same bits. */
    cp.n_threads = 1;
    elm_context *ctx = NULL;
    char err[512] = "";
    elm_status st = elm_context_new(m, &cp, &ctx, err, sizeof err);
    cr_assert_eq(st, ELM_OK, "%s elm_context_new: %s (%s)", device_label(), elm_strerror(st), err);
    /* The context must run where it was asked to, not quietly elsewhere. */
    const char *ran_on = elm_context_device(ctx);
    const char *want = test_device();
    bool where_asked = strchr(want, ':') ? strcmp(ran_on, want) == 0
                                         : strncmp(ran_on, want, strlen(want)) == 0;
    if (strcmp(want, "auto") != 0)
        cr_assert(where_asked, "%s the context runs on %s (%s)", device_label(), ran_on,
                  elm_context_notice(ctx));
    st = elm_decode(ctx, toks, n);
    cr_assert_eq(st, ELM_OK, "%s elm_decode of %zu tokens on %s: %s (%s)", device_label(), n,
                 ran_on, elm_strerror(st), elm_context_last_error(ctx));
    size_t nv = model_vocab(m);
    float *out = malloc(n * nv * sizeof *out);
    for (size_t i = 0; i < n; i++) {
        const float *row = elm_get_logits(ctx, (int32_t)i);
        cr_assert_not_null(row, "no logits for token %zu", i);
        memcpy(out + i * nv, row, nv * sizeof *out);
    }
    elm_context_free(ctx);
    return out;
}

static size_t argmax(const float *row, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (row[i] > row[best]) best = i; /* strict: ties go to the lower id */
    return best;
}

static double log_sum_exp(const float *row, size_t n) {
    double mx = row[argmax(row, n)], sum = 0;
    for (size_t i = 0; i < n; i++) sum += exp((double)row[i] - mx);
    return mx + log(sum);
}

/* ============================================================ comparisons */

typedef struct worst {
    double err, ref, got;
    size_t pos;
    elm_token id;
} worst;

typedef struct comparison {
    worst logit, lse;
    double rms;
    size_t n_logit_over, n_lse_over;
    size_t top1_checked, top1_bad;
    worst top1; /* first disagreement: ref = reference margin, id = got id */
    elm_token top1_expected;
} comparison;

static void note(worst *w, double ref, double got, size_t pos, elm_token id) {
    double err = fabs(got - ref);
    if (err > w->err || isnan(err)) *w = (worst){err, ref, got, pos, id};
}

typedef struct limits {
    double logit, lse;
    double top1_margin; /* top-1 must agree where the reference margin exceeds this */
} limits;

static void compare_position(const reference *r, const float *row, size_t nv, size_t i,
                             limits lim, comparison *c, double *sq) {
    for (size_t k = 0; k < N_TOP; k++) {
        double ref = r->top_logits[i * N_TOP + k], got = row[r->top_ids[i * N_TOP + k]];
        note(&c->logit, ref, got, i, r->top_ids[i * N_TOP + k]);
        *sq += (got - ref) * (got - ref);
        c->n_logit_over += !(fabs(got - ref) <= lim.logit);
    }
    double lse = log_sum_exp(row, nv);
    note(&c->lse, r->lse[i], lse, i, -1);
    c->n_lse_over += !(fabs(lse - r->lse[i]) <= lim.lse);
    double margin = r->top_logits[i * N_TOP] - r->top_logits[i * N_TOP + 1];
    if (!(margin > lim.top1_margin)) return;
    c->top1_checked++;
    elm_token got = (elm_token)argmax(row, nv);
    if (got != r->top_ids[i * N_TOP] && c->top1_bad++ == 0) {
        c->top1 = (worst){0, margin, row[got], i, got};
        c->top1_expected = r->top_ids[i * N_TOP];
    }
}

/* Compares teacher-forced logits (one row per reference token) with a reference. */
static comparison compare(const reference *r, const float *logits, limits lim) {
    comparison c;
    memset(&c, 0, sizeof c);
    double sq = 0;
    for (size_t i = 0; i < r->n_tokens; i++)
        compare_position(r, logits + i * r->n_vocab, r->n_vocab, i, lim, &c, &sq);
    c.rms = sqrt(sq / (double)(r->n_tokens * N_TOP));
    return c;
}

static void expect_logits(const char *what, const comparison *c, double lim) {
    cr_expect(c->n_logit_over == 0,
              "%s: %zu top-20 logits off by more than %g; worst at position %zu, id %d: "
              "expected %.6f, got %.6f (|d| %.6f)",
              what, c->n_logit_over, lim, c->logit.pos, c->logit.id, c->logit.ref,
              c->logit.got, c->logit.err);
}

static void expect_lse(const char *what, const comparison *c, double lim) {
    cr_expect(c->n_lse_over == 0,
              "%s: %zu positions with lse off by more than %g; worst at position %zu: "
              "expected %.6f, got %.6f (|d| %.6f)",
              what, c->n_lse_over, lim, c->lse.pos, c->lse.ref, c->lse.got, c->lse.err);
}

static void expect_top1(const char *what, const comparison *c) {
    cr_expect(c->top1_bad == 0,
              "%s: top-1 differs at %zu of %zu positions with a clear reference margin; "
              "first at position %zu: expected id %d (margin %.4f), got id %d (logit %.4f)",
              what, c->top1_bad, c->top1_checked, c->top1.pos, c->top1_expected, c->top1.ref,
              c->top1.id, c->top1.got);
}

static float *teacher_forced(const elm_model *m, const reference *r, elm_mode mode) {
    cr_assert_eq(model_vocab(m), r->n_vocab, "%s: n_vocab of model and reference differ",
                 r->file);
    return eval_batch(m, mode, r->tokens, r->n_tokens);
}

/* ================================================================= rules */

static void check_rule1(const model_case *mc) {
    require_model(mc->name);
    tolerances t = load_tolerances(mc->name);
    reference r;
    load_reference(&r, mc->name, mc->has_deq);
    elm_model *m = load_model(mc->name);
    float *logits = teacher_forced(m, &r, ELM_MODE_EXACT);
    comparison c = compare(&r, logits, (limits){t.exact, t.exact, t.exact});
    char what[256];
    snprintf(what, sizeof what, "%s %s exact vs %s", device_label(), mc->name, r.file);
    cr_log_info("%s: max|dlogit| %.6f rms %.6f max|dlse| %.6f, top-1 %zu/%zu (tol %g)", what,
                c.logit.err, c.rms, c.lse.err, c.top1_checked - c.top1_bad, c.top1_checked,
                t.exact);
    expect_logits(what, &c, t.exact);
    expect_lse(what, &c, t.exact);
    expect_top1(what, &c);
    free(logits);
    elm_model_free(m);
    free_reference(&r);
}

/* `r` holds NAME.json; replaces it with NAME.deqf32.json when the fast-mode
 * logits are closer to that one (smaller max error over the top-20 ids). */
static void pick_closer(const model_case *mc, const float *logits, reference *r) {
    if (!mc->has_deq) return;
    reference deq;
    load_reference(&deq, mc->name, true);
    limits none = {INFINITY, INFINITY, INFINITY};
    comparison a = compare(r, logits, none), b = compare(&deq, logits, none);
    cr_log_info("%s %s fast: max|dlogit| %.6f vs %s, %.6f vs %s", device_label(), mc->name,
                a.logit.err, r->file, b.logit.err, deq.file);
    if (b.logit.err < a.logit.err) {
        free_reference(r);
        *r = deq;
    } else {
        free_reference(&deq);
    }
}

/* Fast-mode teacher-forced logits, and the reference they are closer to. */
static float *fast_vs_closer(const model_case *mc, const elm_model *m, reference *r) {
    load_reference(r, mc->name, false);
    float *logits = teacher_forced(m, r, ELM_MODE_FAST);
    pick_closer(mc, logits, r);
    return logits;
}

static void check_rule2(const model_case *mc) {
    require_model(mc->name);
    tolerances t = load_tolerances(mc->name);
    reference r;
    elm_model *m = load_model(mc->name);
    float *logits = fast_vs_closer(mc, m, &r);
    comparison c = compare(&r, logits, (limits){t.fast_max, t.fast_lse, t.fast_max});
    char what[256];
    snprintf(what, sizeof what, "%s %s fast vs %s", device_label(), mc->name, r.file);
    cr_log_info("%s: max|dlogit| %.6f rms %.6f max|dlse| %.6f, top-1 %zu/%zu "
                "(tol max %g rms %g lse %g)",
                what, c.logit.err, c.rms, c.lse.err, c.top1_checked - c.top1_bad,
                c.top1_checked, t.fast_max, t.fast_rms, t.fast_lse);
    expect_logits(what, &c, t.fast_max);
    cr_expect(c.rms <= t.fast_rms, "%s: RMS logit error %.6f exceeds %g", what, c.rms, t.fast_rms);
    expect_lse(what, &c, t.fast_lse);
    expect_top1(what, &c);
    free(logits);
    elm_model_free(m);
    free_reference(&r);
}

/* Forced greedy decoding: prompt, then the reference's generated ids but the
 * last, in one batch; the row predicting generated[i] is n_prompt - 1 + i. */
static void check_forced(const char *what, const elm_model *m, const reference *r,
                         elm_mode mode, double lim) {
    size_t n = r->n_prompt + r->n_gen - 1;
    elm_token *seq = malloc(n * sizeof *seq);
    memcpy(seq, r->prompt_tokens, r->n_prompt * sizeof *seq);
    memcpy(seq + r->n_prompt, r->generated, (r->n_gen - 1) * sizeof *seq);
    float *logits = eval_batch(m, mode, seq, n);
    size_t checked = 0, bad = 0;
    for (size_t i = 0; i < r->n_gen; i++) {
        if (!(r->gen_margin[i] > lim)) continue;
        checked++;
        const float *row = logits + (r->n_prompt - 1 + i) * r->n_vocab;
        size_t got = argmax(row, r->n_vocab);
        if (got == (size_t)r->generated[i]) continue;
        if (++bad > 5) continue; /* the count below tells the rest */
        cr_expect_fail("%s: step %zu (reference margin %.4f): expected id %d (logit %.4f), "
                       "got id %zu (logit %.4f)",
                       what, i, r->gen_margin[i], r->generated[i], row[r->generated[i]], got,
                       row[got]);
    }
    cr_log_info("%s: %zu/%zu greedy steps with margin > %g agree", what, checked - bad, checked,
                lim);
    cr_expect(bad == 0, "%s: %zu of %zu steps with margin > %g disagree", what, bad, checked,
              lim);
    cr_expect(checked > 0, "%s: no step has a margin above %g", what, lim);
    free(logits);
    free(seq);
}

static void check_rule3(const model_case *mc, elm_mode mode) {
    require_model(mc->name);
    tolerances t = load_tolerances(mc->name);
    elm_model *m = load_model(mc->name);
    reference r;
    if (mode == ELM_MODE_EXACT) {
        load_reference(&r, mc->name, mc->has_deq);
    } else {
        free(fast_vs_closer(mc, m, &r));
    }
    char what[256];
    snprintf(what, sizeof what, "%s %s %s forced greedy vs %s", device_label(), mc->name,
             mode == ELM_MODE_EXACT ? "exact" : "fast", r.file);
    check_forced(what, m, &r, mode, mode == ELM_MODE_EXACT ? t.exact : t.fast_max);
    elm_model_free(m);
    free_reference(&r);
}

static void expect_tokens(const char *what, const elm_token *got, size_t n_got,
                          const elm_token *want, size_t n_want, bool prefix) {
    size_t n = n_got < n_want ? n_got : n_want;
    size_t i = 0;
    while (i < n && got[i] == want[i]) i++;
    if (i == n_want && (prefix || n_got == n_want)) return;
    if (i < n)
        cr_expect_fail("%s: token %zu: expected id %d, got id %d", what, i, want[i], got[i]);
    else
        cr_expect_fail("%s: expected %s%zu tokens, got %zu", what, prefix ? "at least " : "",
                       n_want, n_got);
}

static elm_token *tokenize(const elm_model *m, const char *text, size_t *n) {
    size_t cap = strlen(text) + 8;
    elm_token *toks = malloc(cap * sizeof *toks);
    elm_status st = elm_tokenize(m, text, strlen(text), true, false, toks, cap, n);
    cr_assert_eq(st, ELM_OK, "elm_tokenize: %s", elm_strerror(st));
    return toks;
}

static void check_tokenizer(const model_case *mc) {
    require_model(mc->name);
    reference r;
    load_reference(&r, mc->name, false);
    elm_model *m = load_model(mc->name);
    size_t n;
    elm_token *toks = tokenize(m, r.text, &n);
    size_t n_text = n;
    char what[256];
    snprintf(what, sizeof what, "%s %s: tokenize(text) vs %s `tokens`", device_label(), mc->name,
             r.file);
    expect_tokens(what, toks, n, r.tokens, r.n_tokens, true);
    /* `tokens` holds only the first ids; text_n_tokens counts them all. */
    const json_value *total = json_get(r.root, "text_n_tokens");
    cr_expect(json_is(total, JSON_NUMBER) && (double)n == total->number,
              "%s: tokenize(text) gave %zu tokens, %s says text_n_tokens = %g", mc->name, n,
              r.file, json_num(total, -1));
    free(toks);
    toks = tokenize(m, r.prompt, &n);
    snprintf(what, sizeof what, "%s %s: tokenize(\"%s\") vs %s `prompt_tokens`", device_label(),
             mc->name, r.prompt, r.file);
    expect_tokens(what, toks, n, r.prompt_tokens, r.n_prompt, false);
    cr_log_info("%s %s: text gave %zu tokens (reference holds the first %zu); prompt gave %zu of %zu",
                device_label(), mc->name, n_text, r.n_tokens, n, r.n_prompt);
    free(toks);
    elm_model_free(m);
    free_reference(&r);
}

/* ================================================================= tests */

static const model_case STORIES = {"stories260K", false};
static const model_case STORIES_F16 = {"stories260K-f16", true};
static const model_case SPM_Q8 = {"synth-spm-a-Q8_0", true};
static const model_case SPM_Q4 = {"synth-spm-a-Q4_0", true};
static const model_case BPE_Q8 = {"synth-bpe-q-Q8_0", true};
static const model_case QWEN3 = {"synth-qwen3-Q8_0", true};
static const model_case GEMMA3 = {"synth-gemma3-Q8_0", true};
static const model_case PHI3 = {"synth-phi3-Q4_0", true};
static const model_case SMOLLM3 = {"synth-smollm3-Q8_0", true};
static const model_case LFM2 = {"synth-lfm2-Q8_0", true};

#define MODEL_TESTS(id, mc)                                          \
    Test(rule1_exact, id) { check_rule1(&(mc)); }                    \
    Test(rule2_fast, id) { check_rule2(&(mc)); }                     \
    Test(rule3_exact, id) { check_rule3(&(mc), ELM_MODE_EXACT); }    \
    Test(rule3_fast, id) { check_rule3(&(mc), ELM_MODE_FAST); }      \
    Test(tokenizer, id) { check_tokenizer(&(mc)); }

MODEL_TESTS(stories260K, STORIES)
MODEL_TESTS(stories260K_f16, STORIES_F16)
MODEL_TESTS(synth_spm_a_Q8_0, SPM_Q8)
MODEL_TESTS(synth_spm_a_Q4_0, SPM_Q4)
MODEL_TESTS(synth_bpe_q_Q8_0, BPE_Q8)
MODEL_TESTS(synth_qwen3_Q8_0, QWEN3)
MODEL_TESTS(synth_gemma3_Q8_0, GEMMA3)
MODEL_TESTS(synth_phi3_Q4_0, PHI3)
MODEL_TESTS(synth_smollm3_Q8_0, SMOLLM3)
MODEL_TESTS(synth_lfm2_Q8_0, LFM2)

/* ============================================================ rule 4: text */

static void chop_newline(char *s) {
    size_t n = strlen(s);
    if (n && s[n - 1] == '\n') s[n - 1] = 0;
}

/* Up to 80 bytes of s on one line, newlines shown as \\n. */
static void excerpt(const char *s, char *out) {
    size_t n = 0;
    for (size_t i = 0; s[i] && i < 80; i++) {
        if (s[i] == '\n') out[n++] = '\\';
        out[n++] = s[i] == '\n' ? 'n' : s[i];
    }
    out[n] = 0;
}

static void expect_same_text(const char *got, const char *want) {
    size_t i = 0;
    while (got[i] && got[i] == want[i]) i++;
    if (!got[i] && !want[i]) return;
    size_t from = i > 40 ? i - 40 : 0;
    char w[161], g[161];
    excerpt(want + from, w);
    excerpt(got + from, g);
    cr_expect_fail("%s CLI text differs from stories260K-greedy196.txt at byte %zu "
                   "(lengths %zu and %zu):\nexpected: ...%s\ngot:      ...%s",
                   device_label(), i, strlen(want), strlen(got), w, g);
}

Test(rule4_text, stories260K_greedy196) {
    require_model(STORIES.name);
    const char *cli = test_cli();
    if (!cli) cr_skip_test("ELM_CLI is not set (run through ctest)");
    cr_assert(access(cli, X_OK) == 0, "ELM_CLI=%s is not an executable file", cli);
    char model[4096], ref_path[4096];
    test_shared_path("models/stories260K.gguf", model, sizeof model);
    cr_assert(test_shared_path("reference/stories260K-greedy196.txt", ref_path, sizeof ref_path),
              "missing %s", ref_path);
    char *want = test_read_file(ref_path, NULL);
    cr_assert_not_null(want);
    const char *argv[] = {cli, "run", "-m", model, "-p", "Once upon a time", "-n", "196",
                          "--exact", "--temp", "0", "--device", test_device(), NULL};
    char *out = NULL, *err = NULL;
    int rc = test_run(argv, NULL, 0, &out, &err);
    cr_assert_eq(rc, 0, "%s edgelm run --device %s exited with %d; stderr:\n%s", device_label(),
                 test_device(), rc, err ? err : "");
    /* The CLI reports where it ran; it must be the device under test. */
    if (device_is_vulkan())
        cr_expect(err && strstr(err, "device vulkan"), "%s the CLI did not run on Vulkan; stderr:\n%s",
                  device_label(), err ? err : "");
    chop_newline(out);
    chop_newline(want);
    expect_same_text(out, want);
    cr_log_info("%s rule 4: %zu bytes of CLI text %s the reference", device_label(), strlen(out),
                strcmp(out, want) == 0 ? "match" : "DIFFER from");
    free(out);
    free(err);
    free(want);
}

/* ================================================================ device */

/* Names the device and limits under test, and checks that they are what
 * the variant asks for: the device exists and, with EDGELM_VK_VALIDATION=1,
 * the validation layer is really on (else "zero validation errors" would
 * prove nothing). */
Test(device, under_test) {
    require_device();
    elm_device_info info[16];
    info[0].struct_size = sizeof info[0];
    size_t n = 0;
    cr_assert_eq(elm_devices(info, 16, &n), ELM_OK);
    const char *want = test_device();
    if (device_is_vulkan()) {
        size_t idx = 0;
        if (want[6] == ':') idx = (size_t)strtoul(want + 7, NULL, 10);
        size_t seen = 0;
        const elm_device_info *d = NULL;
        for (size_t i = 0; i < n && i < 16; i++)
            if (!strcmp(info[i].backend, "vulkan") && (want[6] != ':' || seen++ == idx)) {
                d = &info[i];
                if (want[6] != ':') break;
            }
        cr_assert_not_null(d, "%s no such Vulkan device", device_label());
        cr_log_info("%s %s (%s), shared memory %u B, max range %llu B, fp16 %d, storage16 %d, "
                    "subgroup arithmetic %d",
                    device_label(), d->name, d->type, d->shared_memory_bytes,
                    (unsigned long long)d->max_storage_buffer_range, d->fp16, d->storage16,
                    d->subgroup_arithmetic);
#if ELM_HAVE_VULKAN
        const char *val = getenv("EDGELM_VK_VALIDATION");
        if (val && !strcmp(val, "1")) {
            be_vk_options o = elmi_be_vk_default_options();
            o.quiet = true;
            o.cache_dir = "";
            be_backend *be = NULL;
            char err[512] = "";
            cr_assert_eq(elmi_be_vk_new(&o, &be, err, sizeof err), ELM_OK, "%s %s", device_label(), err);
            bool on = elmi_be_vk_validation_enabled(be);
            be_free(be);
            cr_expect(on, "%s EDGELM_VK_VALIDATION=1 but the Khronos validation layer is not "
                          "available",
                      device_label());
        }
#endif
    } else {
        cr_log_info("%s %s", device_label(), info[0].name);
    }
}

/* The reader copes with the real reference files. */
Test(json, reads_reference_files) {
    require_shared(STORIES.name);
    reference r;
    load_reference(&r, BPE_Q8.name, true);
    cr_expect_eq(r.n_tokens, 64);
    cr_expect_eq(r.n_vocab, 50257);
    cr_expect_str_eq(r.prompt, "Once upon a time");
    free_reference(&r);
}
