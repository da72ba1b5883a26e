/* test_vk_profile.c: per-op profiling (elm_context_profile), the submit
 * bound (EDGELM_VK_SUBMIT_MS) and the self-check of device "auto", through
 * the public API, on the CPU and on the Vulkan device (lavapipe).
 *
 * - Profiling: the figures count what ran (passes, tokens, nodes, bytes),
 *   the ops' times add up to the total, and on Vulkan the dispatches and
 *   barriers of a profiled one-token pass equal what the backend recorded
 *   for it (the vulkan.dispatches and vulkan.barriers device counters).
 * - Submit splitting: with a bound of a nanosecond every later pass is cut
 *   into one dispatch per submit; its logits equal the unsplit run's bit
 *   for bit, and the submit count rises.
 * - Self-check: with EDGELM_VK_FAULT_OP corrupting one op's results, device
 *   "auto" falls back to the CPU and the notice names the op; without it,
 *   "auto" keeps the device and says nothing.
 * - Ring: under the discrete profile, token ids and positions reach the
 *   device through the host-visible ring, with the same logits.
 * Vulkan runs use the validation layer; a validation error fails a decode. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgelm.h"
#include "support/paths.h"

#define MODEL "stories260K"

static void setup(bool vulkan) {
    char path[4096];
    if (!test_shared_path("models/" MODEL ".gguf", path, sizeof path))
        cr_skip_test("shared model not found at %s (set ELM_SHARED_DIR)", path);
    if (vulkan && !test_have_vulkan_device()) cr_skip_test("no Vulkan device (or no Vulkan backend)");
    static const char *const unset[] = {"EDGELM_VK_LIMITS", "EDGELM_VK_FAULT_AFTER", "EDGELM_VK_FAULT_OP",
                                        "EDGELM_VK_SUBMIT_MS", "EDGELM_VK_AUTO_CPU"};
    for (size_t i = 0; i < sizeof unset / sizeof *unset; i++) unsetenv(unset[i]);
    setenv("EDGELM_VK_VALIDATION", "1", 1);
    setenv("XDG_CACHE_HOME", test_tmp_dir(), 1);
}

static elm_model *load(const char *device) {
    char path[4096], err[512] = "";
    test_shared_path("models/" MODEL ".gguf", path, sizeof path);
    elm_model_params mp;
    elm_model_default_params(&mp);
    mp.device = device;
    elm_model *m = NULL;
    elm_status st = elm_model_load(path, &mp, &m, err, sizeof err);
    cr_assert_eq(st, ELM_OK, "loading %s on %s: %s", path, device, err);
    return m;
}

static elm_context *new_ctx(const elm_model *m, uint32_t n_batch, bool all) {
    elm_context_params cp;
    elm_context_default_params(&cp);
    cp.n_ctx = 128;
    cp.n_batch = n_batch;
    cp.logits_all = all;
    cp.n_threads = 1;
    elm_context *ctx = NULL;
    char err[512] = "";
    elm_status st = elm_context_new(m, &cp, &ctx, err, sizeof err);
    cr_assert_eq(st, ELM_OK, "elm_context_new: %s", err);
    return ctx;
}

static double stat(const elm_context *ctx, const char *name) {
    double v = -1;
    cr_assert_eq(elm_context_device_stat_find(ctx, name, &v), ELM_OK, "no device stat %s", name);
    return v;
}

static void decode(elm_context *ctx, const elm_token *t, size_t n) {
    elm_status st = elm_decode(ctx, t, n);
    cr_assert_eq(st, ELM_OK, "decode on %s: %s (%s)", elm_context_device(ctx), elm_strerror(st),
                 elm_context_last_error(ctx));
}

static void tokens(elm_token *t, size_t n) {
    for (size_t i = 0; i < n; i++) t[i] = (elm_token)(1 + (i * 37) % 500);
}

/* The phase's summary and ops, checked for consistency with each other. */
static elm_profile read_phase(const elm_context *ctx, elm_profile_phase ph, elm_profile_op *ops,
                              size_t cap, size_t *n) {
    elm_profile s = ELM_INIT(elm_profile);
    ops[0].struct_size = sizeof ops[0];
    cr_assert_eq(elm_context_profile(ctx, ph, &s, ops, cap, n), ELM_OK);
    cr_assert(*n <= cap);
    double ms = 0, share = 0;
    uint64_t disp = 0, barriers = 0;
    for (size_t i = 0; i < *n; i++) {
        cr_assert(ops[i].n_nodes > 0, "%s ran no node", ops[i].op);
        cr_assert(ops[i].ms >= 0 && ops[i].bytes > 0, "%s: ms %g bytes %llu", ops[i].op, ops[i].ms,
                  (unsigned long long)ops[i].bytes);
        if (i) cr_assert(ops[i - 1].ms >= ops[i].ms, "not the slowest first");
        ms += ops[i].ms;
        disp += ops[i].n_dispatches;
        barriers += ops[i].n_barriers;
    }
    for (size_t i = 0; i < *n; i++) share += ops[i].ms / s.ms;
    cr_assert(s.ms > 0, "no device time");
    cr_assert(fabs(share - 1.0) < 1e-9, "shares sum to %g", share);
    cr_assert(fabs(ms - s.ms) <= 1e-9 * s.ms);
    cr_assert_eq(disp, s.n_dispatches);
    cr_assert_eq(barriers, s.n_barriers);
    return s;
}

static bool has_op(const elm_profile_op *ops, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(ops[i].op, name)) return true;
    return false;
}

Test(profile, off_until_enabled) {
    setup(false);
    elm_model *m = load("cpu");
    elm_context *ctx = new_ctx(m, 16, false);
    elm_token t[4];
    tokens(t, 4);
    decode(ctx, t, 4);
    elm_profile s = ELM_INIT(elm_profile);
    size_t n = 99;
    cr_assert_eq(elm_context_profile(ctx, ELM_PROFILE_PROMPT, &s, NULL, 0, &n), ELM_OK);
    cr_assert_eq(s.n_passes, 0);
    cr_assert_eq(n, 0);
    cr_assert_eq(elm_context_profile(ctx, (elm_profile_phase)7, &s, NULL, 0, &n), ELM_ERR_INVALID_ARG);
    elm_profile tiny = {.struct_size = 4};
    cr_assert_eq(elm_context_profile(ctx, ELM_PROFILE_PROMPT, &tiny, NULL, 0, &n), ELM_ERR_INVALID_ARG);
    elm_context_free(ctx);
    elm_model_free(m);
}

/* A prompt pass of 8 tokens, then 4 one-token passes. */
static void run_profiled(elm_context *ctx, elm_profile *prompt, elm_profile *dec, elm_profile_op *ops,
                         size_t cap, size_t *n) {
    elm_token t[12];
    tokens(t, 12);
    cr_assert_eq(elm_context_profile_enable(ctx, true), ELM_OK);
    decode(ctx, t, 8);
    for (int i = 8; i < 12; i++) decode(ctx, t + i, 1);
    *prompt = read_phase(ctx, ELM_PROFILE_PROMPT, ops, cap, n);
    *dec = read_phase(ctx, ELM_PROFILE_DECODE, ops, cap, n);
    cr_assert_eq(prompt->n_passes, 1);
    cr_assert_eq(prompt->n_tokens, 8);
    cr_assert_eq(dec->n_passes, 4);
    cr_assert_eq(dec->n_tokens, 4);
    cr_assert(dec->n_layer > 0);
    cr_assert(has_op(ops, *n, "mul_mat") && has_op(ops, *n, "attention") && has_op(ops, *n, "rms_norm"));
}

Test(profile, cpu) {
    setup(false);
    elm_model *m = load("cpu");
    elm_context *ctx = new_ctx(m, 16, false);
    elm_profile p, d;
    elm_profile_op ops[16];
    size_t n = 0;
    run_profiled(ctx, &p, &d, ops, 16, &n);
    uint64_t nodes = 0;
    for (size_t i = 0; i < n; i++) nodes += ops[i].n_nodes;
    cr_assert_eq(d.n_dispatches, nodes, "the CPU counts a dispatch per node");
    cr_assert_eq(d.n_submits, 0);
    cr_assert(!d.timestamps);
    /* Off keeps the figures and stops adding to them. */
    cr_assert_eq(elm_context_profile_enable(ctx, false), ELM_OK);
    elm_token t = 5;
    decode(ctx, &t, 1);
    elm_profile again = ELM_INIT(elm_profile);
    cr_assert_eq(elm_context_profile(ctx, ELM_PROFILE_DECODE, &again, NULL, 0, NULL), ELM_OK);
    cr_assert_eq(again.n_passes, 4);
    elm_context_free(ctx);
    elm_model_free(m);
}

/* Under limits profile `limits` (NULL: none). */
static void check_counts(const char *limits) {
    if (limits) setenv("EDGELM_VK_LIMITS", limits, 1);
    else unsetenv("EDGELM_VK_LIMITS");
    elm_model *m = load("vulkan");
    elm_context *ctx = new_ctx(m, 16, false);
    elm_token t[16];
    tokens(t, 16);
    decode(ctx, t, 1); /* the plain one-token plan exists: profiling records its own */
    cr_assert_eq(elm_context_profile_enable(ctx, true), ELM_OK);
    double d0 = stat(ctx, "vulkan.dispatches"), b0 = stat(ctx, "vulkan.barriers");
    decode(ctx, t + 1, 1);
    double d1 = stat(ctx, "vulkan.dispatches"), b1 = stat(ctx, "vulkan.barriers");
    cr_assert(d1 > d0, "the profiled plan was not recorded");
    for (int i = 2; i < 5; i++) decode(ctx, t + i, 1);
    cr_assert_eq(stat(ctx, "vulkan.dispatches"), d1, "a replay recorded again");
    elm_profile_op ops[16];
    size_t n = 0;
    elm_profile s = read_phase(ctx, ELM_PROFILE_DECODE, ops, 16, &n);
    cr_assert_eq(s.n_passes, 4);
    cr_assert_eq((double)s.n_dispatches, 4 * (d1 - d0), "profile %llu dispatches, recorded %g per pass",
                 (unsigned long long)s.n_dispatches, d1 - d0);
    cr_assert_eq((double)s.n_barriers, 4 * (b1 - b0));
    cr_assert(s.n_submits >= 4);
    cr_assert(has_op(ops, n, "mul_mat") && has_op(ops, n, "attention"));
    cr_assert_eq(stat(ctx, "vulkan.validation_errors"), 0);
    elm_context_free(ctx);
    elm_model_free(m);
}

Test(profile, vulkan_counts_match_the_recorded_dispatches) {
    setup(true);
    check_counts(NULL);
}

/* The timestamp queries under every limits profile, with the validation
 * layer (small-buffers puts nodes on the CPU between GPU steps). */
Test(profile, vulkan_counts_under_the_limits_profiles) {
    setup(true);
    static const char *const profiles[] = {"pi5", "mali", "adreno", "nofp16", "nosubgroup",
                                           "small-buffers", "discrete", "noimport"};
    for (size_t i = 0; i < sizeof profiles / sizeof *profiles; i++) check_counts(profiles[i]);
}

Test(profile, vulkan_prompt_and_decode) {
    setup(true);
    elm_model *m = load("vulkan");
    elm_context *ctx = new_ctx(m, 16, false);
    elm_profile p, d;
    elm_profile_op ops[16];
    size_t n = 0;
    run_profiled(ctx, &p, &d, ops, 16, &n);
    cr_assert(d.n_dispatches > 0 && d.n_barriers > 0);
    cr_assert_eq(stat(ctx, "vulkan.validation_errors"), 0);
    elm_context_free(ctx);
    elm_model_free(m);
}

/* ------------------------------------------------------- submit bound */

/* Logits of 3 passes of 8 tokens then 3 one-token passes, under bound
 * `submit_ms` ("0": none); the submits the context made into *submits. */
static float *split_run(const char *submit_ms, size_t *n_floats, double *submits) {
    setenv("EDGELM_VK_SUBMIT_MS", submit_ms, 1);
    elm_model *m = load("vulkan");
    elm_context *ctx = new_ctx(m, 8, true);
    elm_model_info info = ELM_INIT(elm_model_info);
    cr_assert_eq(elm_model_get_info(m, &info), ELM_OK);
    size_t nv = info.n_vocab, rows = 3 * 8 + 3, k = 0;
    float *out = malloc(rows * nv * sizeof *out);
    elm_token t[27];
    tokens(t, 27);
    for (int pass = 0; pass < 6; pass++) {
        size_t n = pass < 3 ? 8 : 1, first = pass < 3 ? (size_t)pass * 8 : 24 + (size_t)(pass - 3);
        decode(ctx, t + first, n);
        for (size_t i = 0; i < n; i++) memcpy(out + nv * k++, elm_get_logits(ctx, (int32_t)i), nv * sizeof *out);
    }
    *n_floats = rows * nv;
    *submits = stat(ctx, "vulkan.submits");
    cr_assert_eq(stat(ctx, "vulkan.validation_errors"), 0);
    elm_context_free(ctx);
    elm_model_free(m);
    return out;
}

Test(submit_bound, split_results_are_bit_identical) {
    setup(true);
    size_t n0, n1;
    double s0, s1;
    float *whole = split_run("0", &n0, &s0);
    float *split = split_run("0.000001", &n1, &s1);
    cr_assert_eq(n0, n1);
    cr_assert(s1 > 2 * s0, "submits: %g split, %g whole", s1, s0);
    cr_assert(memcmp(whole, split, n0 * sizeof *whole) == 0, "split logits differ from the whole run's");
    free(whole);
    free(split);
}

Test(submit_bound, bad_value_is_refused) {
    setup(true);
    setenv("EDGELM_VK_SUBMIT_MS", "soon", 1);
    char path[4096], err[512] = "";
    test_shared_path("models/" MODEL ".gguf", path, sizeof path);
    elm_model_params mp;
    elm_model_default_params(&mp);
    mp.device = "vulkan";
    elm_model *m = NULL;
    elm_context *ctx = NULL;
    elm_status st = elm_model_load(path, &mp, &m, err, sizeof err);
    if (st == ELM_OK) st = elm_context_new(m, NULL, &ctx, err, sizeof err);
    cr_assert_eq(st, ELM_ERR_INVALID_ARG, "%s", err);
    cr_assert(strstr(err, "EDGELM_VK_SUBMIT_MS"), "%s", err);
    elm_model_free(m);
}

/* ---------------------------------------------------------- self-check */

static elm_context *auto_ctx(elm_model **m) {
    setenv("EDGELM_VK_AUTO_CPU", "1", 1);
    *m = load("auto");
    return new_ctx(*m, 16, false);
}

Test(selfcheck, passes_on_a_sound_device) {
    setup(true);
    elm_model *m;
    elm_context *ctx = auto_ctx(&m);
    cr_assert_str_eq(elm_context_device(ctx), "vulkan:0");
    cr_assert_str_eq(elm_context_notice(ctx), "");
    elm_token t[4];
    tokens(t, 4);
    decode(ctx, t, 4);
    cr_assert_eq(stat(ctx, "vulkan.validation_errors"), 0);
    elm_context_free(ctx);
    elm_model_free(m);
}

/* No false alarm where the device plans within tighter limits. */
Test(selfcheck, passes_under_the_limits_profiles) {
    setup(true);
    static const char *const profiles[] = {"pi5", "mali", "adreno", "nofp16", "nosubgroup",
                                           "small-buffers", "discrete", "nofp16,nosubgroup,discrete", "fuse"};
    for (size_t i = 0; i < sizeof profiles / sizeof *profiles; i++) {
        setenv("EDGELM_VK_LIMITS", profiles[i], 1);
        elm_model *m;
        elm_context *ctx = auto_ctx(&m);
        cr_assert_str_eq(elm_context_device(ctx), "vulkan:0", "[%s] %s", profiles[i], elm_context_notice(ctx));
        elm_token t[2] = {1, 2};
        decode(ctx, t, 2);
        elm_context_free(ctx);
        elm_model_free(m);
    }
}

static void expect_fallback(const char *fault, const char *named) {
    setup(true);
    setenv("EDGELM_VK_FAULT_OP", fault, 1);
    elm_model *m;
    elm_context *ctx = auto_ctx(&m);
    cr_assert_str_eq(elm_context_device(ctx), "cpu");
    const char *note = elm_context_notice(ctx);
    cr_assert(strstr(note, "self-check") && strstr(note, named) && strstr(note, "vulkan:0"),
              "notice: %s", note);
    elm_token t[4];
    tokens(t, 4);
    decode(ctx, t, 4);
    elm_context_free(ctx);
    elm_model_free(m);
}

Test(selfcheck, corrupted_mat_vec_falls_back_to_the_cpu) {
    expect_fallback("MUL_MAT", "mul_mat (mat-vec");
}

Test(selfcheck, corrupted_attention_falls_back_to_the_cpu) {
    expect_fallback("attention", "attention");
}

/* The decode feed-forward block: its last node's result corrupted. */
Test(selfcheck, corrupted_feed_forward_falls_back_to_the_cpu) {
    expect_fallback("RMS_NORM", "decode feed-forward");
}

/* An explicit device is trusted: no self-check, the corruption shows. */
Test(selfcheck, explicit_device_is_not_checked) {
    setup(true);
    setenv("EDGELM_VK_FAULT_OP", "MUL_MAT", 1);
    elm_model *m = load("vulkan");
    elm_context *ctx = new_ctx(m, 16, false);
    cr_assert_str_eq(elm_context_device(ctx), "vulkan:0");
    cr_assert_str_eq(elm_context_notice(ctx), "");
    elm_context_free(ctx);
    elm_model_free(m);
}

/* ---------------------------------------------------- the upload ring */

/* Logits of an 8-token pass then 3 one-token passes under `limits`; the
 * ring writes the context made into *ring. */
static float *ring_run(const char *limits, size_t *n_floats, double *ring) {
    if (limits) setenv("EDGELM_VK_LIMITS", limits, 1);
    else unsetenv("EDGELM_VK_LIMITS");
    elm_model *m = load("vulkan");
    elm_context *ctx = new_ctx(m, 8, true);
    elm_model_info info = ELM_INIT(elm_model_info);
    cr_assert_eq(elm_model_get_info(m, &info), ELM_OK);
    size_t nv = info.n_vocab, k = 0;
    float *out = malloc(11 * nv * sizeof *out);
    elm_token t[11];
    tokens(t, 11);
    double ring0 = stat(ctx, "vulkan.ring_writes");
    for (int pass = 0; pass < 4; pass++) {
        size_t n = pass == 0 ? 8 : 1, first = pass == 0 ? 0 : 7 + (size_t)pass;
        decode(ctx, t + first, n);
        for (size_t i = 0; i < n; i++) memcpy(out + nv * k++, elm_get_logits(ctx, (int32_t)i), nv * sizeof *out);
    }
    *n_floats = 11 * nv;
    *ring = stat(ctx, "vulkan.ring_writes") - ring0;
    cr_assert_eq(stat(ctx, "vulkan.validation_errors"), 0);
    elm_context_free(ctx);
    elm_model_free(m);
    return out;
}

/* Under `discrete` (device memory never mapped) the token ids and positions
 * of each pass go through the ring, not a staged submit each, and the
 * logits are those of mapped memory, bit for bit. */
Test(ring, discrete_ids_and_positions_go_through_the_ring) {
    setup(true);
    size_t n0, n1;
    double r0, r1;
    float *mapped = ring_run(NULL, &n0, &r0);
    float *ring = ring_run("discrete", &n1, &r1);
    cr_assert_eq(n0, n1);
    cr_assert_eq(r0, 0, "mapped memory needs no ring (%g writes)", r0);
    cr_assert(r1 >= 2 * 4, "%g ring writes for 4 passes", r1);
    cr_assert(memcmp(mapped, ring, n0 * sizeof *mapped) == 0, "logits differ under discrete");
    free(mapped);
    free(ring);
}
