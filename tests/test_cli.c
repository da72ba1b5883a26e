/*
 * test_cli.c: the command-line contract that scripts rely on, checked by
 * running the built `edgelm` ($ELM_CLI) as a separate process.
 *
 *   run       prompt echoed verbatim, then the generated text, then at most
 *             one newline; -n counts new tokens; early stop at an
 *             end-of-generation id unless --ignore-eos; a prompt longer than
 *             the context is an error with stdout empty; a full context stops
 *             with a message and exit 0; the figures on stderr; seeds.
 *   eval      the JSON shape, K entries sorted (ties: lower id), precision,
 *             and agreement with the independent reference in exact mode.
 *   tokenize  byte-exact stdin, one line of ids, against a selection of the
 *             shared tokenizer vectors.
 *   info      architecture, hyperparameters, tokenizer, tensor table.
 *   chat      one reply per line of a pipe; each turn evaluates only the
 *             tokens the context does not hold (checked against `template`
 *             and `tokenize`); replies stop at the template's end-of-turn
 *             token, unwritten; run --chat gives chat's first reply, which
 *             is what run generates after the rendering; --template wins.
 *   errors    exit 1 with a message naming the file and the problem; usage
 *             errors exit 2; --version and --help exit 0.
 *
 * Expectations come from ../shared (models, references and tokenizer vectors
 * made by another engine) or from the contract itself, never from edgelm's
 * own earlier output. Tests that need ../shared skip with a message without
 * it; the rest use small models written by tests/support/tiny_model.
 */
#define _GNU_SOURCE /* strcasestr */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgelm.h"
#include "engine/gguf.h"
#include "quant/quant.h"
#include "support/json.h"
#include "support/paths.h"
#include "support/tiny_model.h"

/* ============================================================== running */

typedef struct result {
    int rc;
    char *out, *err;
} result;

#define MAX_ARGS 48

static const char *cli_path(void) {
    const char *cli = test_cli();
    if (!cli) cr_skip_test("ELM_CLI is not set: run this test through ctest");
    return cli;
}

/* Runs edgelm with the given arguments (NULL-terminated) and stdin. A crash
 * or a sanitizer report fails the test at once. */
static result run_args(const char *input, size_t input_len, const char *const *args) {
    const char *argv[MAX_ARGS + 2];
    size_t n = 0;
    argv[n++] = cli_path();
    for (; args[n - 1] && n <= MAX_ARGS; n++) argv[n] = args[n - 1];
    cr_assert(n <= MAX_ARGS, "too many arguments");
    argv[n] = NULL;
    result r = {0};
    r.rc = test_run(argv, input, input_len, &r.out, &r.err);
    const char *e = r.err ? r.err : "";
    cr_assert(r.out && r.err, "could not capture the output of %s", argv[1] ? argv[1] : "edgelm");
    cr_assert_neq(r.rc, -1, "edgelm %s crashed; stderr:\n%s", argv[1] ? argv[1] : "", e);
    cr_assert(!strstr(e, "Sanitizer") && !strstr(e, "runtime error:"),
              "edgelm %s: sanitizer report:\n%s", argv[1] ? argv[1] : "", e);
    return r;
}

#define EDGELM(...) run_args(NULL, 0, (const char *const[]){__VA_ARGS__, NULL})
#define EDGELM_IN(in, len, ...) run_args(in, len, (const char *const[]){__VA_ARGS__, NULL})

static void result_free(result *r) {
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

/* ============================================================ test data */

static const char *shared_or_skip(const char *rel, char *buf, size_t cap) {
    if (!test_shared_path(rel, buf, cap))
        cr_skip_test("%s not found (set ELM_SHARED_DIR to the shared directory)", buf);
    return buf;
}

static const char *stories(void) {
    static char p[4096];
    return shared_or_skip("models/stories260K.gguf", p, sizeof p);
}

static json_value *load_json(const char *rel) {
    char path[4096], err[256];
    shared_or_skip(rel, path, sizeof path);
    json_value *v = json_parse_file(path, err, sizeof err);
    cr_assert_not_null(v, "%s: %s", path, err);
    return v;
}

/* The reference of stories260K (teacher-forced logits, greedy ids). */
static json_value *stories_ref(void) { return load_json("reference/stories260K.json"); }

/* The exact-mode tolerance for stories260K from tolerances.json. */
static double exact_tolerance(void) {
    json_value *t = load_json("reference/tolerances.json");
    const json_value *v = json_path(t, "exact.stories260K");
    cr_assert(json_is(v, JSON_NUMBER), "tolerances.json has no exact.stories260K");
    double tol = json_num(v, 0);
    json_free(t);
    cr_assert(tol > 0 && tol < 1, "implausible tolerance %g", tol);
    return tol;
}

/* "Once upon a time" followed by the reference's 48 greedy tokens. */
static char *greedy48_text(void) {
    json_value *ref = stories_ref();
    const char *prompt = json_str(json_get(ref, "prompt"));
    const char *gen = json_str(json_get(ref, "generated_text"));
    cr_assert(prompt && gen, "stories260K.json lacks prompt or generated_text");
    cr_assert_eq(json_num(json_get(ref, "first_eog_index"), 0), -1,
                 "the reference's 48 greedy tokens hold an end-of-generation id");
    char *s = NULL;
    cr_assert(asprintf(&s, "%s%s", prompt, gen) > 0);
    json_free(ref);
    return s;
}

/* The 196-token greedy text of shared/README.md (its file ends with the one
 * newline that ends a text file, which is not part of the text). */
static char *greedy196_text(void) {
    char path[4096];
    shared_or_skip("reference/stories260K-greedy196.txt", path, sizeof path);
    size_t len;
    char *s = test_read_file(path, &len);
    cr_assert_not_null(s, "cannot read %s", path);
    if (len && s[len - 1] == '\n') s[--len] = 0;
    return s;
}

/* A tiny llama model (tests/support/tiny_model.h) in this process's
 * temporary directory: vocabulary of 300, context 256. */
static const char *tiny_llama(void) {
    static char path[512];
    if (!path[0]) {
        snprintf(path, sizeof path, "%s/tiny-llama.gguf", test_tmp_dir());
        tiny_model_opts o = tiny_model_default();
        cr_assert_eq(tiny_model_write(&o, path), 0, "cannot write %s", path);
    }
    return path;
}

static const char *tiny_qwen2(void) {
    static char path[512];
    if (!path[0]) {
        snprintf(path, sizeof path, "%s/tiny-qwen2.gguf", test_tmp_dir());
        tiny_model_opts o = tiny_model_qwen2();
        cr_assert_eq(tiny_model_write(&o, path), 0, "cannot write %s", path);
    }
    return path;
}

/* A 2-D F32 tensor of `fill`; output.weight gives row `top` 0.1 and row 3
 * (when not top) 0.05 everywhere instead. */
static void put_f32_top(gguf_writer *w, const char *name, int64_t ne0, int64_t ne1, float fill,
                        int top) {
    size_t n = (size_t)(ne0 * ne1);
    float *x = malloc(n * sizeof *x);
    cr_assert_not_null(x);
    for (size_t i = 0; i < n; i++) x[i] = fill;
    if (strcmp(name, "output.weight") == 0)
        for (int64_t i = 0; i < ne0; i++) {
            x[top * ne0 + i] = 0.1f;
            if (top != 3) x[3 * ne0 + i] = 0.05f;
        }
    const int64_t ne[2] = {ne0, ne1};
    cr_assert_eq(elmi_gguf_add_tensor(w, name, QT_F32, 2, ne, x, n * sizeof *x), ELM_OK, "%s", name);
    free(x);
}

/* Makes the model of writer `w` predict token `top` after anything: every
 * embedding is all ones, no layer adds anything to the residual stream
 * (attn_output and ffn_down are zero), so the final normalized state is all
 * ones, and output.weight gives `top` the logit 0.1 * n_embd, token 3 half of
 * that and every other token 0. */
static void always_predict(gguf_writer *w, const tiny_model_opts *o, int top) {
    put_f32_top(w, "token_embd.weight", o->n_embd, o->n_vocab, 1.0f, top);
    for (int il = 0; il < o->n_layer; il++) {
        char name[64];
        snprintf(name, sizeof name, "blk.%d.attn_output.weight", il);
        put_f32_top(w, name, o->n_embd, o->n_embd, 0.0f, top);
        snprintf(name, sizeof name, "blk.%d.ffn_down.weight", il);
        put_f32_top(w, name, o->n_ff, o->n_embd, 0.0f, top);
    }
    put_f32_top(w, "output.weight", o->n_embd, o->n_vocab, 0.0f, top);
}

/* A tiny model whose most likely next token is always EOS (id 2). */
static const char *eos_model(void) {
    static char path[512];
    if (path[0]) return path;
    snprintf(path, sizeof path, "%s/tiny-eos.gguf", test_tmp_dir());
    tiny_model_opts o = tiny_model_default();
    gguf_writer *w = tiny_model_build(&o);
    cr_assert_not_null(w);
    always_predict(w, &o, 2);
    char err[256];
    cr_assert_eq(elmi_gguf_write_file(w, path, err, sizeof err), ELM_OK, "%s", err);
    elmi_gguf_writer_free(w);
    return path;
}

/* Chat models: the tiny llama whose last two tokens are a turn's opening,
 * <|turn_start|> (a control token, written as ""), and its end,
 * <|turn_end|> (a user-defined token, written as its text, and not an
 * end-of-generation token), with a ChatML-shaped template using them. */
#define TURN_START 298
#define TURN_END 299
static const char CHAT_TEMPLATE[] =
    "{% for m in messages %}<|turn_start|>{{ m.role }}\n{{ m.content }}<|turn_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|turn_start|>assistant\n{% endif %}";

static void add_chat_vocab(gguf_writer *w, int n_vocab) {
    char(*text)[32] = calloc((size_t)n_vocab, sizeof *text);
    const char **ptrs = calloc((size_t)n_vocab, sizeof *ptrs);
    int32_t *types = calloc((size_t)n_vocab, sizeof *types);
    cr_assert(text && ptrs && types);
    for (int i = 0; i < n_vocab; i++) {
        tiny_model_token(i, text[i], sizeof text[i]);
        types[i] = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1; /* unknown, control, byte, normal */
        ptrs[i] = text[i];
    }
    snprintf(text[TURN_START], sizeof text[0], "<|turn_start|>");
    snprintf(text[TURN_END], sizeof text[0], "<|turn_end|>");
    types[TURN_START] = 3;
    types[TURN_END] = 4;
    cr_assert_eq(elmi_gguf_set_arr_str(w, "tokenizer.ggml.tokens", ptrs, (uint64_t)n_vocab), ELM_OK);
    cr_assert_eq(elmi_gguf_set_arr_data(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types,
                                        (uint64_t)n_vocab), ELM_OK);
    cr_assert_eq(elmi_gguf_set_str(w, "tokenizer.chat_template", CHAT_TEMPLATE), ELM_OK);
    free(text);
    free(ptrs);
    free(types);
}

/* With random weights (replies of a few tokens), or always ending the turn
 * at once (empty replies). */
static const char *chat_model(bool ends_turn) {
    static char paths[2][512];
    char *path = paths[ends_turn];
    if (path[0]) return path;
    snprintf(path, 512, "%s/tiny-chat%s.gguf", test_tmp_dir(), ends_turn ? "-end" : "");
    tiny_model_opts o = tiny_model_default();
    gguf_writer *w = tiny_model_build(&o);
    cr_assert_not_null(w);
    add_chat_vocab(w, o.n_vocab);
    if (ends_turn) always_predict(w, &o, TURN_END);
    char err[256];
    cr_assert_eq(elmi_gguf_write_file(w, path, err, sizeof err), ELM_OK, "%s", err);
    elmi_gguf_writer_free(w);
    return path;
}

/* ============================================================== helpers */

#define WORDS(...) ((const char *const[]){__VA_ARGS__, NULL})

static bool has_any(const char *text, const char *const *words) {
    for (; *words; words++)
        if (strcasestr(text, *words)) return true;
    return false;
}

/* stdout is `want`, optionally followed by one newline. */
static bool is_text_opt_nl(const char *got, const char *want) {
    size_t n = strlen(want), g = strlen(got);
    return strncmp(got, want, n) == 0 && (g == n || (g == n + 1 && got[n] == '\n'));
}

/* The one line of figures of `run` (README: "edgelm: load X ms | ttft X ms |
 * prompt X tok/s (N tok) | gen X tok/s (N tok) | peak RSS X MiB"). */
typedef struct run_stats {
    double load_ms, ttft_ms, prompt_tps, gen_tps, rss_mib;
    unsigned n_prompt, n_gen;
} run_stats;

static run_stats parse_stats(const char *err) {
    run_stats s = {0};
    const char *line = strstr(err, "edgelm: load ");
    cr_assert_not_null(line, "no line of figures on stderr:\n%s", err);
    int k = sscanf(line,
                   "edgelm: load %lf ms | ttft %lf ms | prompt %lf tok/s (%u tok) | "
                   "gen %lf tok/s (%u tok) | peak RSS %lf MiB",
                   &s.load_ms, &s.ttft_ms, &s.prompt_tps, &s.n_prompt, &s.gen_tps, &s.n_gen,
                   &s.rss_mib);
    cr_assert_eq(k, 7, "cannot read the figures (%d fields) in:\n%s", k, line);
    cr_expect(isfinite(s.load_ms) && s.load_ms >= 0, "load time %g", s.load_ms);
    cr_expect(isfinite(s.ttft_ms) && s.ttft_ms >= 0, "time to first token %g", s.ttft_ms);
    cr_expect(isfinite(s.prompt_tps) && s.prompt_tps >= 0, "prompt tok/s %g", s.prompt_tps);
    cr_expect(isfinite(s.gen_tps) && s.gen_tps >= 0, "generation tok/s %g", s.gen_tps);
    cr_expect(s.rss_mib > 0 && s.rss_mib < 1e6, "peak RSS %g MiB", s.rss_mib);
    return s;
}

/* ================================================ --version and --help */

Test(cli_meta, version) {
    result r = EDGELM("--version");
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", ELM_VERSION_MAJOR, ELM_VERSION_MINOR,
             ELM_VERSION_PATCH);
    cr_expect_eq(r.rc, 0, "--version exited %d; stderr: %s", r.rc, r.err);
    cr_expect(strstr(r.out, want), "--version printed '%s', which lacks %s", r.out, want);
    result_free(&r);
}

Test(cli_meta, help) {
    result r = EDGELM("--help");
    cr_expect_eq(r.rc, 0, "--help exited %d; stderr: %s", r.rc, r.err);
    const char *const cmds[] = {"run", "eval", "tokenize", "info", "chat", "template"};
    for (size_t i = 0; i < 6; i++)
        cr_expect(strstr(r.out, cmds[i]), "--help does not mention '%s':\n%s", cmds[i], r.out);
    result_free(&r);

    /* The options of one command, both ways. */
    r = EDGELM("run", "--help");
    cr_expect_eq(r.rc, 0, "run --help exited %d", r.rc);
    const char *const opts[] = {"--temp", "--top-k", "--top-p", "--min-p", "--seed",
                                "--ignore-eos", "--exact", "--ctx-size", "--threads"};
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i++)
        cr_expect(strstr(r.out, opts[i]), "run --help does not mention %s", opts[i]);
    result_free(&r);
    r = EDGELM("help", "eval");
    cr_expect_eq(r.rc, 0, "help eval exited %d", r.rc);
    cr_expect(strstr(r.out, "--tokens") && strstr(r.out, "--top"), "help eval:\n%s", r.out);
    result_free(&r);
}

/* ================================================================ usage */

/* Each must be a usage error: exit 2, nothing on stdout, a usage line. */
static void expect_usage(const char *const *args) {
    char shown[512] = "";
    for (size_t i = 0, k = 0; args[i] && k < sizeof shown; i++)
        k += (size_t)snprintf(shown + k, sizeof shown - k, " '%s'", args[i]);
    result r = run_args(NULL, 0, args);
    cr_expect_eq(r.rc, 2, "edgelm%s exited %d (want 2); stderr:\n%s", shown, r.rc, r.err);
    cr_expect_str_empty(r.out, "edgelm%s wrote to stdout: %s", shown, r.out);
    cr_expect(strcasestr(r.err, "usage"), "edgelm%s: no usage line on stderr:\n%s", shown, r.err);
    result_free(&r);
}

#define USAGE(...) expect_usage((const char *const[]){__VA_ARGS__, NULL})

Test(cli_usage, run_options) {
    const char *m = tiny_llama();
    USAGE("run", "-m", m, "-p", "x", "--bogus");
    USAGE("run", "-m", m, "-p", "x", "-q");
    USAGE("run", "-p", "x");     /* missing -m */
    USAGE("run", "-m", m);       /* missing -p */
    USAGE("run", "-m", m, "-p", "x", "-n", "abc");
    USAGE("run", "-m", m, "-p", "x", "-n", "5x");
    USAGE("run", "-m", m, "-p", "x", "-n", "");
    USAGE("run", "-m", m, "-p", "x", "-n", "1.5");
    USAGE("run", "-m", m, "-p", "x", "-n", "99999999999999999999");
    USAGE("run", "-m", m, "-p", "x", "-n");      /* no value */
    USAGE("run", "-m", m, "-p", "x", "-t", "-1");
    USAGE("run", "-m", m, "-p", "x", "--threads=two");
    USAGE("run", "-m", m, "-p", "x", "--temp", "hot");
    USAGE("run", "-m", m, "-p", "x", "--temp", "-0.5");
    USAGE("run", "-m", m, "-p", "x", "--temp", "nan");
    USAGE("run", "-m", m, "-p", "x", "--top-k", "-3");
    USAGE("run", "-m", m, "-p", "x", "--top-p", "1.5");
    USAGE("run", "-m", m, "-p", "x", "--min-p", "x");
    USAGE("run", "-m", m, "-p", "x", "--seed", "-3");
    USAGE("run", "-m", m, "-p", "x", "-c", "-5");
    USAGE("run", "-m", m, "-p", "x", "stray");
}

Test(cli_usage, other_commands) {
    const char *m = tiny_llama();
    USAGE("frobnicate");
    USAGE("eval", "--tokens", "1,2");  /* missing -m */
    USAGE("eval", "-m", m);            /* missing --tokens */
    USAGE("eval", "-m", m, "--tokens", "1", "--top", "x");
    USAGE("eval", "-m", m, "--tokens", "1", "-t", "-1");
    USAGE("eval", "-m", m, "--tokens", "1", "--bogus");
    USAGE("tokenize");
    USAGE("tokenize", "-m", m, "--bogus");
    USAGE("info");
    USAGE("info", "-m", m, "extra");
}

/* Malformed --tokens: anything but comma-separated non-negative integers. */
Test(cli_usage, eval_malformed_tokens) {
    const char *m = tiny_llama();
    const char *const bad[] = {"",    "1,,2", ",1",  "1,",  "a",   "-1",  "1;2",
                               "1 2", " 1",   "1.0", "+1",  "0x1", "1,b", "1,-2"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        USAGE("eval", "-m", m, "--tokens", bad[i]);
}

/* =============================================================== errors */

/* An error: exit 1, nothing on stdout, a message naming the file and one of
 * `words` (the problem). */
static void expect_error(const char *path, const char *const *words, const char *const *args) {
    result r = run_args("text", 4, args);
    cr_expect_eq(r.rc, 1, "edgelm %s on %s exited %d (want 1); stderr:\n%s", args[0], path, r.rc,
                 r.err);
    cr_expect_str_empty(r.out, "edgelm %s on %s wrote to stdout: %s", args[0], path, r.out);
    cr_expect(strstr(r.err, path), "edgelm %s: the message does not name %s:\n%s", args[0], path,
              r.err);
    cr_expect(has_any(r.err, words), "edgelm %s: the message does not say what is wrong:\n%s",
              args[0], r.err);
    result_free(&r);
}

static void expect_error_everywhere(const char *path, const char *const *words) {
    expect_error(path, words, (const char *const[]){"run", "-m", path, "-p", "Hi", "-n", "2", NULL});
    expect_error(path, words, (const char *const[]){"eval", "-m", path, "--tokens", "1,2", NULL});
    expect_error(path, words, (const char *const[]){"tokenize", "-m", path, NULL});
    expect_error(path, words, (const char *const[]){"info", "-m", path, NULL});
}

Test(cli_errors, missing_file) {
    char path[600];
    snprintf(path, sizeof path, "%s/no-such-model.gguf", test_tmp_dir());
    expect_error_everywhere(path, WORDS("no such file", "not found", "does not exist"));
}

Test(cli_errors, truncated_file) {
    size_t size;
    char *full = test_read_file(tiny_llama(), &size);
    cr_assert_not_null(full);
    char path[600];
    /* Cut in the tensor data, and in the header. */
    snprintf(path, sizeof path, "%s/truncated.gguf", test_tmp_dir());
    cr_assert_eq(tiny_write_bytes(path, full, size * 3 / 4), 0);
    expect_error_everywhere(path, WORDS("truncated", "past the end", "too short", "end of file"));
    snprintf(path, sizeof path, "%s/truncated-header.gguf", test_tmp_dir());
    cr_assert_eq(tiny_write_bytes(path, full, 64), 0);
    expect_error_everywhere(path, WORDS("truncated", "past the end", "too short", "end of file"));
    free(full);
}

Test(cli_errors, not_gguf) {
    char path[600];
    snprintf(path, sizeof path, "%s/notes.txt", test_tmp_dir());
    const char text[] = "these are not the weights you are looking for\n";
    cr_assert_eq(tiny_write_bytes(path, text, sizeof text - 1), 0);
    expect_error_everywhere(path, WORDS("gguf", "magic"));
}

Test(cli_errors, eval_id_out_of_range) {
    const char *m = tiny_llama(); /* vocabulary of 300 */
    const char *const bad[] = {"300", "1,2,300", "299,4000000000", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        result r = EDGELM("eval", "-m", m, "--tokens", bad[i]);
        cr_expect_eq(r.rc, 1, "--tokens %s exited %d (want 1); stderr:\n%s", bad[i], r.rc, r.err);
        cr_expect_str_empty(r.out, "--tokens %s: stdout: %s", bad[i], r.out);
        cr_expect(strstr(r.err, m), "--tokens %s: the message does not name the file:\n%s",
                  bad[i], r.err);
        result_free(&r);
    }
    result r = EDGELM("eval", "-m", m, "--tokens", "0,299", "--top", "3");
    cr_expect_eq(r.rc, 0, "--tokens 0,299 (the last id) exited %d: %s", r.rc, r.err);
    result_free(&r);
}

/* ================================================================== run */

Test(cli_run, greedy_196_exact) {
    char *want = greedy196_text();
    result r = EDGELM("run", "-m", stories(), "-p", "Once upon a time", "-n", "196", "--temp", "0",
                      "--exact", "-t", "2", "--device", "cpu");
    cr_assert_eq(r.rc, 0, "exit %d; stderr:\n%s", r.rc, r.err);
    cr_expect(is_text_opt_nl(r.out, want), "greedy text differs from the reference.\ngot:\n%s\nwant:\n%s",
              r.out, want);
    run_stats s = parse_stats(r.err);
    cr_expect_eq(s.n_gen, 196, "gen count %u", s.n_gen);
    result_free(&r);
    free(want);
}

/* Fast mode: the reference margins of the first 48 greedy steps all exceed
 * the fast tolerance, so the text must match too (shared README, rule 3). */
Test(cli_run, greedy_48_fast_and_figures) {
    char *want = greedy48_text();
    json_value *ref = stories_ref();
    size_t n_prompt = json_len(json_get(ref, "prompt_tokens"));
    json_free(ref);
    result r = EDGELM("run", "-m", stories(), "-p", "Once upon a time", "-n", "48", "--temp", "0",
                      "-t", "1");
    cr_assert_eq(r.rc, 0, "exit %d; stderr:\n%s", r.rc, r.err);
    cr_expect(is_text_opt_nl(r.out, want), "got:\n%s\nwant:\n%s", r.out, want);
    run_stats s = parse_stats(r.err);
    cr_expect_eq(s.n_prompt, n_prompt, "prompt tokens %u, want %zu (BOS + the prompt's ids)",
                 s.n_prompt, n_prompt);
    cr_expect_eq(s.n_gen, 48, "gen count %u", s.n_gen);
    result_free(&r);
    free(want);
}

/* Top-k 1, min-p 1 and a tiny top-p each leave only the most likely token,
 * so sampling at any temperature and seed is greedy decoding. */
Test(cli_run, truncating_samplers_are_greedy) {
    char *want = greedy48_text();
    const char *const *cases[] = {
        (const char *const[]){"--top-k", "1", NULL},
        (const char *const[]){"--min-p", "1", NULL},
        (const char *const[]){"--top-p", "0.01", NULL},
    };
    for (size_t i = 0; i < 3; i++) {
        result r = EDGELM("run", "-m", stories(), "-p", "Once upon a time", "-n", "48", "--temp",
                          "0.8", "--seed", "99", cases[i][0], cases[i][1]);
        cr_expect_eq(r.rc, 0, "%s %s: exit %d; stderr:\n%s", cases[i][0], cases[i][1], r.rc, r.err);
        cr_expect(is_text_opt_nl(r.out, want), "%s %s:\ngot:\n%s\nwant:\n%s", cases[i][0],
                  cases[i][1], r.out, want);
        result_free(&r);
    }
    free(want);
}

/* -n counts new tokens: 0 gives the prompt alone, 47 a proper prefix of 48. */
Test(cli_run, n_predict_counts_new_tokens) {
    char *want = greedy48_text();
    result r = EDGELM("run", "-m", stories(), "-p", "Once upon a time", "-n", "0", "--temp", "0");
    cr_expect_eq(r.rc, 0, "-n 0: exit %d; stderr:\n%s", r.rc, r.err);
    cr_expect(is_text_opt_nl(r.out, "Once upon a time"), "-n 0 printed '%s'", r.out);
    result_free(&r);

    r = EDGELM("run", "-m", stories(), "-p", "Once upon a time", "-n", "47", "--temp", "0",
               "--exact");
    cr_expect_eq(r.rc, 0, "-n 47: exit %d; stderr:\n%s", r.rc, r.err);
    size_t n = strlen(r.out);
    if (n && r.out[n - 1] == '\n') n--;
    cr_expect(n > strlen("Once upon a time") && n < strlen(want) && !strncmp(r.out, want, n),
              "-n 47 is not a proper prefix of the 48-token text:\n%s", r.out);
    result_free(&r);
    free(want);
}

/* The prompt is echoed byte for byte, spaces, tabs, UTF-8 and special-token
 * text included. */
Test(cli_run, prompt_echoed_verbatim) {
    const char *const prompts[] = {
        "  two leading spaces, a\ttab and two trailing  ",
        "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x99\x82",
        "<s>looks special</s>",
        "line one\nline two",
    };
    for (size_t i = 0; i < sizeof prompts / sizeof *prompts; i++) {
        result r = EDGELM("run", "-m", tiny_llama(), "-p", prompts[i], "-n", "0");
        cr_expect_eq(r.rc, 0, "prompt %zu: exit %d; stderr:\n%s", i, r.rc, r.err);
        cr_expect(is_text_opt_nl(r.out, prompts[i]), "prompt %zu: stdout '%s'", i, r.out);
        result_free(&r);
        r = EDGELM("run", "-m", tiny_llama(), "-p", prompts[i], "-n", "3", "--seed", "5");
        cr_expect_eq(r.rc, 0, "prompt %zu, -n 3: exit %d; stderr:\n%s", i, r.rc, r.err);
        cr_expect(!strncmp(r.out, prompts[i], strlen(prompts[i])),
                  "prompt %zu, -n 3: stdout does not start with the prompt: '%s'", i, r.out);
        result_free(&r);
    }
}

Test(cli_run, stops_at_end_of_generation) {
    const char *m = eos_model();
    result r = EDGELM("run", "-m", m, "-p", "a", "-n", "20", "--temp", "0");
    cr_assert_eq(r.rc, 0, "exit %d; stderr:\n%s", r.rc, r.err);
    cr_expect(is_text_opt_nl(r.out, "a"), "EOS first: stdout '%s'", r.out);
    run_stats s = parse_stats(r.err);
    cr_expect_leq(s.n_gen, 1, "generation went on past EOS: %u tokens", s.n_gen);
    result_free(&r);

    r = EDGELM("run", "-m", m, "-p", "a", "-n", "20", "--temp", "0", "--ignore-eos");
    cr_assert_eq(r.rc, 0, "--ignore-eos: exit %d; stderr:\n%s", r.rc, r.err);
    cr_expect(!strncmp(r.out, "a", 1), "--ignore-eos: stdout '%s'", r.out);
    s = parse_stats(r.err);
    cr_expect_eq(s.n_gen, 20, "--ignore-eos -n 20 generated %u tokens", s.n_gen);
    result_free(&r);
}

/* A full context stops generation, says so on stderr, exits 0; what was
 * generated is the start of the greedy text. */
Test(cli_run, context_full_stops) {
    char *want = greedy48_text();
    result r = EDGELM("run", "-m", stories(), "-p", "Once upon a time", "-c", "16", "-n", "100",
                      "--temp", "0", "--exact", "--ignore-eos");
    cr_expect_eq(r.rc, 0, "exit %d; stderr:\n%s", r.rc, r.err);
    size_t n = strlen(r.out);
    if (n && r.out[n - 1] == '\n') n--;
    cr_expect(n > strlen("Once upon a time") && n < strlen(want) && !strncmp(r.out, want, n),
              "not a proper prefix of the greedy text:\n%s", r.out);
    cr_expect(strcasestr(r.err, "context"), "no message about the context on stderr:\n%s", r.err);
    run_stats s = parse_stats(r.err);
    /* 16 positions, 5 for the prompt: 11 new tokens fill it (12 when the
     * last one sampled need not be evaluated). */
    cr_expect(s.n_gen >= 11 && s.n_gen <= 12, "generated %u tokens in a context of 16", s.n_gen);
    result_free(&r);
    free(want);
}

Test(cli_run, prompt_longer_than_context) {
    char prompt[2048] = "";
    for (int i = 0; i < 40; i++) strcat(prompt, "Once upon a time there was ");
    const char *m = tiny_llama();
    result r = EDGELM("run", "-m", m, "-p", prompt, "-c", "16", "-n", "4");
    cr_expect_eq(r.rc, 1, "exit %d (want 1); stderr:\n%s", r.rc, r.err);
    cr_expect_str_empty(r.out, "stdout: '%.200s'", r.out);
    cr_expect(strstr(r.err, m), "the message does not name the file:\n%s", r.err);
    result_free(&r);
}

Test(cli_run, seeds) {
    const char *s = stories();
#define SAMPLE(seed)                                                                             \
    EDGELM("run", "-m", s, "-p", "Once upon a time", "-n", "64", "--ignore-eos", "--temp", "0.8", \
           "--seed", seed)
    result a = SAMPLE("1234"), b = SAMPLE("1234"), c = SAMPLE("4321");
#undef SAMPLE
    cr_assert(a.rc == 0 && b.rc == 0 && c.rc == 0, "exit %d %d %d; stderr:\n%s", a.rc, b.rc, c.rc,
              a.err);
    cr_expect_str_eq(a.out, b.out, "the same seed gave different text");
    cr_expect_str_neq(a.out, c.out, "seeds 1234 and 4321 gave the same 64 tokens");
    cr_expect(!strncmp(a.out, "Once upon a time", 16) && !strncmp(c.out, "Once upon a time", 16));
    result_free(&a);
    result_free(&b);
    result_free(&c);
}

/* ================================================================= eval */

typedef struct eval_pos {
    size_t k;
    int32_t id[512];
    double logit[512];
    double lse;
} eval_pos;

/* Parses and checks the shape of eval's JSON: the tokens echoed, one
 * position per token with pos = index, min(K, n_vocab) entries, ids in
 * range, sorted (highest first, ties by lower id), lse >= the top logit. */
static eval_pos *parse_eval(const char *text, const int32_t *tokens, size_t n, size_t k,
                            int n_vocab) {
    char err[256];
    json_value *v = json_parse(text, strlen(text), err, sizeof err);
    cr_assert_not_null(v, "eval printed invalid JSON (%s):\n%.500s", err, text);
    cr_assert(json_is(v, JSON_OBJECT));
    const json_value *toks = json_get(v, "tokens"), *pos = json_get(v, "positions");
    cr_assert_eq(json_len(toks), n, "tokens has %zu ids, want %zu", json_len(toks), n);
    for (size_t i = 0; i < n; i++)
        cr_expect_eq(json_num(json_at(toks, i), -1), tokens[i], "tokens[%zu]", i);
    cr_assert_eq(json_len(pos), n, "%zu positions for %zu tokens", json_len(pos), n);
    eval_pos *out = calloc(n, sizeof *out);
    cr_assert_not_null(out);
    for (size_t i = 0; i < n; i++) {
        const json_value *p = json_at(pos, i), *top = json_get(p, "top");
        cr_expect_eq(json_num(json_get(p, "pos"), -1), (double)i, "positions[%zu].pos", i);
        cr_assert(json_is(json_get(p, "lse"), JSON_NUMBER), "positions[%zu] has no lse", i);
        out[i].lse = json_num(json_get(p, "lse"), NAN);
        cr_assert_eq(json_len(top), k, "positions[%zu].top has %zu entries, want %zu", i,
                     json_len(top), k);
        out[i].k = k;
        for (size_t j = 0; j < k; j++) {
            const json_value *e = json_at(top, j);
            cr_assert(json_len(e) == 2 && json_is(json_at(e, 0), JSON_NUMBER) &&
                          json_is(json_at(e, 1), JSON_NUMBER),
                      "positions[%zu].top[%zu] is not [id, logit]", i, j);
            double id = json_num(json_at(e, 0), -1);
            cr_assert(id >= 0 && id < n_vocab && id == floor(id), "id %g", id);
            out[i].id[j] = (int32_t)id;
            out[i].logit[j] = json_num(json_at(e, 1), NAN);
            cr_assert(isfinite(out[i].logit[j]));
            if (j > 0) {
                double a = out[i].logit[j - 1], b = out[i].logit[j];
                cr_expect(a > b || (a == b && out[i].id[j - 1] < out[i].id[j]),
                          "positions[%zu].top is not sorted at %zu: [%d,%.9g] then [%d,%.9g]", i,
                          j, out[i].id[j - 1], a, out[i].id[j], b);
            }
        }
        cr_expect(out[i].lse >= out[i].logit[0] - 1e-6 &&
                      out[i].lse <= out[i].logit[0] + log((double)n_vocab) + 1e-6,
                  "positions[%zu]: lse %.9g impossible for a top logit of %.9g", i, out[i].lse,
                  out[i].logit[0]);
    }
    json_free(v);
    return out;
}

/* Floating-point numbers in `text` printed with fewer than 7 significant
 * digits, out of *total. */
static size_t count_short_numbers(const char *text, size_t *total) {
    size_t shorts = 0;
    *total = 0;
    for (const char *p = text; *p; p++) {
        if (!(p > text && strchr("[,:", p[-1]) && (*p == '-' || (*p >= '0' && *p <= '9'))))
            continue;
        size_t len = strspn(p, "-+0123456789.eE");
        size_t mant = strcspn(p, "eE");
        if (mant > len) mant = len;
        if (!memchr(p, '.', len) && mant == len) continue; /* an integer: an id or pos */
        int digits = 0;
        bool started = false;
        for (size_t i = 0; i < mant; i++) {
            if (p[i] < '0' || p[i] > '9') continue;
            if (p[i] != '0') started = true;
            if (started) digits++;
        }
        (*total)++;
        if (digits < 7) shorts++;
        p += len - 1;
    }
    return shorts;
}

static char *ids_arg(const json_value *arr, int32_t *ids, size_t *n) {
    *n = json_len(arr);
    char *s = malloc(*n * 12 + 1);
    cr_assert_not_null(s);
    size_t k = 0;
    s[0] = 0;
    for (size_t i = 0; i < *n; i++) {
        ids[i] = (int32_t)json_num(json_at(arr, i), -1);
        k += (size_t)sprintf(s + k, "%s%d", i ? "," : "", ids[i]);
    }
    return s;
}

/* Every logit of the whole vocabulary (--top 512) against the reference's
 * top 20 and lse, within the exact tolerance; lse is the log-sum-exp of
 * the printed logits. */
Test(cli_eval, stories_reference_exact) {
    json_value *ref = stories_ref();
    double tol = exact_tolerance();
    int n_vocab = (int)json_num(json_get(ref, "n_vocab"), 0);
    cr_assert_eq(n_vocab, 512);
    int32_t ids[256];
    size_t n;
    cr_assert_leq(json_len(json_get(ref, "tokens")), 256);
    char *arg = ids_arg(json_get(ref, "tokens"), ids, &n);
    cr_assert_eq(n, 64);
    result r = EDGELM("eval", "-m", stories(), "--tokens", arg, "--top", "512", "--exact");
    cr_assert_eq(r.rc, 0, "exit %d; stderr:\n%s", r.rc, r.err);
    eval_pos *pos = parse_eval(r.out, ids, n, 512, n_vocab);
    const json_value *rpos = json_get(ref, "positions");
    cr_assert_eq(json_len(rpos), n);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double all[512];
        for (int t = 0; t < 512; t++) all[t] = NAN;
        for (size_t j = 0; j < 512; j++) all[pos[i].id[j]] = pos[i].logit[j];
        for (int t = 0; t < 512; t++) cr_assert(!isnan(all[t]), "pos %zu: id %d missing", i, t);
        const json_value *rtop = json_get(json_at(rpos, i), "top");
        for (size_t j = 0; j < json_len(rtop); j++) {
            int id = (int)json_num(json_at(json_at(rtop, j), 0), -1);
            cr_assert(id >= 0 && id < 512, "reference id %d", id);
            double want = json_num(json_at(json_at(rtop, j), 1), NAN);
            if (!(fabs(all[id] - want) <= tol) && bad++ < 10)
                cr_expect(false, "pos %zu id %d: logit %.9g, reference %.9g", i, id, all[id],
                          want);
        }
        double rlse = json_num(json_get(json_at(rpos, i), "lse"), NAN);
        if (!(fabs(pos[i].lse - rlse) <= tol) && bad++ < 10)
            cr_expect(false, "pos %zu: lse %.9g, reference %.9g", i, pos[i].lse, rlse);
        double r0 = json_num(json_at(json_at(rtop, 0), 1), NAN);
        double r1 = json_num(json_at(json_at(rtop, 1), 1), NAN);
        int rid = (int)json_num(json_at(json_at(rtop, 0), 0), -1);
        if (r0 - r1 > tol)
            cr_expect_eq(pos[i].id[0], rid, "pos %zu: top-1 %d, reference %d", i, pos[i].id[0],
                         rid);
        /* lse as defined: the log-sum-exp over all the printed logits. */
        double mx = pos[i].logit[0], sum = 0;
        for (int t = 0; t < 512; t++) sum += exp(all[t] - mx);
        double lse = mx + log(sum);
        cr_expect(fabs(lse - pos[i].lse) <= 1e-4, "pos %zu: lse %.9g but the logits give %.9g", i,
                  pos[i].lse, lse);
    }
    cr_expect_eq(bad, 0, "%d values outside the exact tolerance %g", bad, tol);
    size_t total, shorts = count_short_numbers(r.out, &total);
    cr_expect(total >= 64 * 513 && shorts * 100 <= total,
              "%zu of %zu numbers have fewer than 7 significant digits", shorts, total);
    free(pos);
    result_free(&r);
    free(arg);
    json_free(ref);
}

/* The default K is 20; the listed ids are the reference's top 20 wherever
 * the reference separates them by more than the tolerance. */
Test(cli_eval, default_top_20) {
    json_value *ref = stories_ref();
    double tol = exact_tolerance();
    int32_t ids[256];
    size_t n;
    char *arg = ids_arg(json_get(ref, "tokens"), ids, &n);
    result r = EDGELM("eval", "-m", stories(), "--tokens", arg, "--exact");
    cr_assert_eq(r.rc, 0, "exit %d; stderr:\n%s", r.rc, r.err);
    eval_pos *pos = parse_eval(r.out, ids, n, 20, 512);
    for (size_t i = 0; i < n; i++) {
        const json_value *rtop = json_get(json_at(json_get(ref, "positions"), i), "top");
        double r20 = json_num(json_at(json_at(rtop, 19), 1), NAN);
        for (size_t j = 0; j < 20; j++) {
            int rid = (int)json_num(json_at(json_at(rtop, j), 0), -1);
            double rv = json_num(json_at(json_at(rtop, j), 1), NAN);
            bool found = false;
            for (size_t q = 0; q < 20; q++)
                if (pos[i].id[q] == rid) {
                    found = true;
                    cr_expect(fabs(pos[i].logit[q] - rv) <= tol, "pos %zu id %d: %.9g vs %.9g", i,
                              rid, pos[i].logit[q], rv);
                }
            if (rv > r20 + 2 * tol)
                cr_expect(found, "pos %zu: reference top-20 id %d (%.6g) is not listed", i, rid,
                          rv);
        }
    }
    free(pos);
    result_free(&r);
    free(arg);
    json_free(ref);
}

/* Self-contained: the shape on a tiny model, --top K, one batch of ids. */
Test(cli_eval, shape_on_tiny_model) {
    const int32_t ids[] = {1, 5, 9, 200, 299, 0};
    result r = EDGELM("eval", "-m", tiny_llama(), "--tokens", "1,5,9,200,299,0", "--top", "7");
    cr_assert_eq(r.rc, 0, "exit %d; stderr:\n%s", r.rc, r.err);
    eval_pos *pos = parse_eval(r.out, ids, 6, 7, 300);
    free(pos);
    size_t total, shorts = count_short_numbers(r.out, &total);
    cr_expect(total >= 6 * 8 && shorts * 10 <= total,
              "%zu of %zu numbers have fewer than 7 significant digits:\n%s", shorts, total, r.out);
    result_free(&r);

    const int32_t one[] = {42};
    r = EDGELM("eval", "-m", tiny_qwen2(), "--tokens", "42", "--top", "1", "--exact");
    cr_assert_eq(r.rc, 0, "qwen2: exit %d; stderr:\n%s", r.rc, r.err);
    pos = parse_eval(r.out, one, 1, 1, 300);
    free(pos);
    result_free(&r);
}

/* ============================================================= tokenize */

typedef struct vec_case {
    const char *text;
    size_t len;
    char *want; /* the .out line, ids separated by spaces */
} vec_case;

typedef struct vectors {
    char *inp, *out;
    vec_case c[64];
    size_t n;
} vectors;

/* <shared>/tokenizer/NAME.gguf.inp and .out (shared/README.md). */
static void load_vectors(const char *gguf, vectors *v) {
    char path[4200];
    snprintf(path, sizeof path, "%s.inp", gguf);
    size_t len;
    v->inp = test_read_file(path, &len);
    cr_assert_not_null(v->inp, "cannot read %s", path);
    snprintf(path, sizeof path, "%s.out", gguf);
    v->out = test_read_file(path, NULL);
    cr_assert_not_null(v->out, "cannot read %s", path);
    static const char sep[] = "\n__ggml_vocab_test__\n";
    v->n = 0;
    for (size_t pos = 0; pos < len && v->n < 64;) {
        char *end = strstr(v->inp + pos, sep);
        cr_assert_not_null(end, "unterminated case in %s", gguf);
        v->c[v->n].text = v->inp + pos;
        v->c[v->n].len = (size_t)(end - (v->inp + pos));
        v->n++;
        pos = (size_t)(end - v->inp) + strlen(sep);
    }
    char *line = v->out;
    for (size_t i = 0; i < v->n; i++) {
        cr_assert_not_null(line, "%s.out has too few lines", gguf);
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        while (*line == ' ') line++; /* .out lines start with a space */
        v->c[i].want = line;
        line = nl ? nl + 1 : NULL;
    }
}

/* The output is exactly one line: ids separated by single spaces. */
static void expect_id_line(const char *out, const char *what) {
    size_t n = strlen(out);
    cr_assert(n >= 1 && out[n - 1] == '\n', "%s: output does not end with a newline: '%s'", what,
              out);
    cr_expect(strchr(out, '\n') == out + n - 1, "%s: more than one line: '%s'", what, out);
    for (size_t i = 0; i + 1 < n; i++) {
        bool digit = out[i] >= '0' && out[i] <= '9';
        cr_assert(digit || (out[i] == ' ' && i > 0 && out[i - 1] != ' ' && i + 2 < n),
                  "%s: not ids separated by single spaces: '%s'", what, out);
    }
}

/* A selection of the 46 cases (test_tokenizer.c runs them all through the
 * library): accented text, the empty string, spaces, newlines (a trailing
 * one included), emoji, code, digits, Vietnamese, a mix of whitespace. */
static const size_t picked[] = {0, 1, 2, 3, 7, 8, 10, 18, 22, 28, 32, 38, 43, 45};

static void check_vectors(const char *name) {
    char rel[256], gguf[4096];
    snprintf(rel, sizeof rel, "tokenizer/%s.gguf", name);
    shared_or_skip(rel, gguf, sizeof gguf);
    vectors v;
    load_vectors(gguf, &v);
    cr_assert_eq(v.n, 46, "%s: %zu cases", name, v.n);
    int bad = 0;
    for (size_t k = 0; k < sizeof picked / sizeof *picked; k++) {
        size_t i = picked[k];
        result r = EDGELM_IN(v.c[i].text, v.c[i].len, "tokenize", "-m", gguf, "--no-special");
        cr_expect_eq(r.rc, 0, "%s case %zu: exit %d; stderr:\n%s", name, i, r.rc, r.err);
        char what[64];
        snprintf(what, sizeof what, "%s case %zu", name, i);
        expect_id_line(r.out, what);
        size_t n = strlen(r.out);
        if (n) r.out[n - 1] = 0;
        if (strcmp(r.out, v.c[i].want) != 0) {
            bad++;
            cr_expect(false, "%s case %zu '%.*s':\n  got  %s\n  want %s", name, i,
                      (int)v.c[i].len, v.c[i].text, r.out, v.c[i].want);
        }
        result_free(&r);
    }
    cr_expect_eq(bad, 0, "%s: %d of %zu cases differ", name, bad,
                 sizeof picked / sizeof *picked);
    free(v.inp);
    free(v.out);
}

Test(cli_tokenize, spm_vectors) { check_vectors("ggml-vocab-llama-spm"); }
Test(cli_tokenize, gpt2_vectors) { check_vectors("ggml-vocab-gpt-2"); }

static char *tokenize_text(const char *gguf, const char *text, size_t len, bool no_special) {
    result r = no_special ? EDGELM_IN(text, len, "tokenize", "-m", gguf, "--no-special")
                          : EDGELM_IN(text, len, "tokenize", "-m", gguf);
    cr_assert_eq(r.rc, 0, "tokenize exit %d; stderr:\n%s", r.rc, r.err);
    expect_id_line(r.out, "tokenize");
    free(r.err);
    return r.out;
}

/* Byte-exact stdin: a trailing newline and a NUL byte are text. */
Test(cli_tokenize, stdin_is_byte_exact) {
    char spm[4096];
    shared_or_skip("tokenizer/ggml-vocab-llama-spm.gguf", spm, sizeof spm);
    char *a = tokenize_text(spm, "Hello", 5, true);
    char *b = tokenize_text(spm, "Hello\n", 6, true);
    cr_expect_str_neq(a, b, "a trailing newline was dropped");
    cr_expect(!strncmp(b, a, strlen(a) - 1) && b[strlen(a) - 1] == ' ',
              "'Hello\\n' should be the ids of 'Hello' and then more: '%s' vs '%s'", b, a);
    /* LLaMA's SentencePiece vocabulary holds <0x00> at id 3 (byte fallback). */
    char *c = tokenize_text(spm, "a\0b", 3, true);
    cr_expect(strstr(c, " 3 "), "the NUL byte is not <0x00> (3): '%s'", c);
    free(a);
    free(b);
    free(c);
}

/* Empty input: an empty line, BOS or not. BOS and special-token text by
 * default, neither with --no-special. */
Test(cli_tokenize, bos_special_and_empty) {
    char spm[4096], gpt2[4096];
    shared_or_skip("tokenizer/ggml-vocab-llama-spm.gguf", spm, sizeof spm);
    shared_or_skip("tokenizer/ggml-vocab-gpt-2.gguf", gpt2, sizeof gpt2);
    const char *files[] = {spm, gpt2};
    for (int i = 0; i < 2; i++) {
        for (int ns = 0; ns < 2; ns++) {
            char *e = tokenize_text(files[i], "", 0, ns);
            cr_expect_str_eq(e, "\n", "%s%s: empty input gave '%s'", files[i],
                             ns ? " --no-special" : "", e);
            free(e);
        }
    }
    char *plain = tokenize_text(spm, "Hello world", 11, true);
    char *bos = tokenize_text(spm, "Hello world", 11, false);
    char want[512];
    snprintf(want, sizeof want, "1 %s", plain); /* BOS is 1 in LLaMA's vocabulary */
    cr_expect_str_eq(bos, want, "SentencePiece: BOS is added by default");
    free(plain);
    free(bos);
    char *sp = tokenize_text(spm, "<s>Hi", 5, false);
    cr_expect(!strncmp(sp, "1 1 ", 4), "'<s>' should be the BOS id after the added BOS: '%s'", sp);
    free(sp);
    sp = tokenize_text(spm, "<s>Hi", 5, true);
    cr_expect(strncmp(sp, "1 ", 2) != 0 && !strstr(sp, " 1 "),
              "--no-special: '<s>' must be plain text: '%s'", sp);
    free(sp);
    /* GPT-2 adds no BOS: the default equals --no-special for plain text. */
    plain = tokenize_text(gpt2, "Hello world", 11, true);
    bos = tokenize_text(gpt2, "Hello world", 11, false);
    cr_expect_str_eq(bos, plain, "GPT-2 vocabulary: no BOS is added");
    free(plain);
    free(bos);
}

/* A model file works too: the reference's prompt ids, BOS included. */
Test(cli_tokenize, model_file_prompt_ids) {
    json_value *ref = stories_ref();
    int32_t ids[64];
    size_t n;
    char *want = ids_arg(json_get(ref, "prompt_tokens"), ids, &n);
    for (char *p = want; *p; p++)
        if (*p == ',') *p = ' ';
    const char *prompt = json_str(json_get(ref, "prompt"));
    char *got = tokenize_text(stories(), prompt, strlen(prompt), false);
    size_t g = strlen(got);
    got[g - 1] = 0;
    cr_expect_str_eq(got, want, "the prompt's ids");
    free(got);
    free(want);
    json_free(ref);
}

/* ================================================================= info */

static bool has_word(const char *text, const char *word) {
    size_t n = strlen(word);
    for (const char *p = text; (p = strstr(p, word)); p++) {
        bool left = p == text || !((p[-1] >= '0' && p[-1] <= '9') || p[-1] == '.');
        bool right = !((p[n] >= '0' && p[n] <= '9') || (p[n] == '.' && p[n + 1] >= '0' &&
                                                         p[n + 1] <= '9'));
        if (left && right) return true;
    }
    return false;
}

Test(cli_info, stories) {
    result r = EDGELM("info", "-m", stories());
    cr_assert_eq(r.rc, 0, "exit %d; stderr:\n%s", r.rc, r.err);
    const char *const names[] = {"llama", "token_embd.weight", "output_norm.weight",
                                 "output.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight",
                                 "blk.4.ffn_down.weight", "blk.4.ffn_norm.weight"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        cr_expect(strstr(r.out, names[i]), "info does not name %s:\n%s", names[i], r.out);
    cr_expect(!strstr(r.out, "blk.5."), "stories260K has 5 layers, not more");
    /* shared/README.md: dim 64, 5 layers, 8 heads, 4 KV heads, FFN 172,
     * vocabulary 512, context 2048. */
    const char *const numbers[] = {"64", "5", "8", "4", "172", "512", "2048"};
    for (size_t i = 0; i < sizeof numbers / sizeof *numbers; i++)
        cr_expect(has_word(r.out, numbers[i]), "info does not show %s:\n%s", numbers[i], r.out);
    result_free(&r);
}

Test(cli_info, tiny_models) {
    result r = EDGELM("info", "-m", tiny_qwen2());
    cr_assert_eq(r.rc, 0, "exit %d; stderr:\n%s", r.rc, r.err);
    cr_expect(strstr(r.out, "qwen2"), "no architecture:\n%s", r.out);
    cr_expect(strstr(r.out, "blk.0.attn_q.bias") && strstr(r.out, "blk.1.ffn_up.weight"),
              "tensor table:\n%s", r.out);
    cr_expect(has_word(r.out, "300") && has_word(r.out, "256") && has_word(r.out, "128"),
              "hyperparameters (vocabulary 300, context 256, FFN 128):\n%s", r.out);
    result_free(&r);
}

Test(cli_info, vocabulary_only) {
    char gpt2[4096];
    shared_or_skip("tokenizer/ggml-vocab-gpt-2.gguf", gpt2, sizeof gpt2);
    result r = EDGELM("info", "-m", gpt2);
    cr_assert_eq(r.rc, 0, "exit %d; stderr:\n%s", r.rc, r.err);
    cr_expect(strstr(r.out, "gpt2") && has_word(r.out, "50257"), "tokenizer:\n%s", r.out);
    result_free(&r);
}

/* ============================================================ template */

static char *write_tmp(const char *name, const char *text) {
    static char path[4][512];
    static int k;
    char *p = path[k++ % 4];
    snprintf(p, 512, "%s/%s", test_tmp_dir(), name);
    FILE *f = fopen(p, "wb");
    cr_assert(f);
    fputs(text, f);
    fclose(f);
    return p;
}

Test(cli_template, renders_exactly) {
    const char *t = write_tmp("chatml.jinja",
                              "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
                              "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}{{ bos_token }}{{ eos_token }}\n");
    const char *msgs = write_tmp("msgs.json", "[{\"role\": \"user\", \"content\": \"Gr\u00fc\u00dfe {{ x }}\"}]");
    result r = EDGELM("template", "--template", t, "--messages", msgs);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert_str_eq(r.out, "<|im_start|>user\nGrüße {{ x }}<|im_end|>\n<|im_start|>assistant\n");
    result_free(&r);
    const char *obj = write_tmp("obj.json", "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}]}");
    r = EDGELM("template", "--template", t, "--messages", obj, "--no-generation-prompt", "--bos", "B", "--eos", "E");
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert_str_eq(r.out, "<|im_start|>user\na<|im_end|>\nBE");
    result_free(&r);
}

Test(cli_template, errors) {
    const char *t = write_tmp("raise.jinja", "{{ raise_exception('Conversation roles must alternate') }}");
    const char *msgs = write_tmp("msgs2.json", "[]");
    result r = EDGELM("template", "--template", t, "--messages", msgs);
    cr_assert_eq(r.rc, 1);
    cr_assert(strstr(r.err, "Conversation roles must alternate"), "%s", r.err);
    cr_assert_str_eq(r.out, "");
    result_free(&r);
    const char *bad = write_tmp("bad.json", "[{\"role\": 1}]");
    r = EDGELM("template", "--template", t, "--messages", bad);
    cr_assert_eq(r.rc, 1);
    result_free(&r);
    r = EDGELM("template", "--messages", msgs);
    cr_assert_eq(r.rc, 2, "neither -m nor --template is a usage error");
    result_free(&r);
    r = EDGELM("template", "-m", tiny_llama(), "--messages", msgs);
    cr_assert_eq(r.rc, 1);
    cr_assert(strstr(r.err, "the model has no chat template"), "%s", r.err);
    result_free(&r);
}

/* ================================================================= chat */

/* `s` as a JSON string literal, malloc'd. */
static char *json_quote(const char *s) {
    char *q = malloc(strlen(s) * 6 + 3), *o = q;
    cr_assert_not_null(q);
    *o++ = '"';
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') *o++ = '\\', *o++ = (char)*c;
        else if (*c < 0x20) o += sprintf(o, "\\u%04x", *c);
        else *o++ = (char)*c;
    }
    *o++ = '"';
    *o = 0;
    return q;
}

/* The conversation `json` (an array of messages) as `edgelm template`
 * renders it with the model's template, or with the file `tmpl`. */
static char *render_conversation(const char *model, const char *tmpl, const char *json) {
    const char *f = write_tmp("conversation.json", json);
    result r = tmpl ? EDGELM("template", "--template", tmpl, "--messages", f)
                    : EDGELM("template", "-m", model, "--messages", f);
    cr_assert_eq(r.rc, 0, "edgelm template failed on %s:\n%s", json, r.err);
    free(r.err);
    return r.out;
}

/* The ids of `text` as `edgelm tokenize` gives them; returns their count. */
static size_t chat_token_ids(const char *model, const char *text, int *ids, size_t cap) {
    result r = EDGELM_IN(text, strlen(text), "tokenize", "-m", model);
    cr_assert_eq(r.rc, 0, "edgelm tokenize failed:\n%s", r.err);
    size_t n = 0;
    for (char *p = r.out, *end; n < cap; p = end) {
        long v = strtol(p, &end, 10);
        if (end == p) break;
        ids[n++] = (int)v;
    }
    cr_assert(n < cap, "too many tokens");
    result_free(&r);
    return n;
}

static size_t common_prefix(const int *a, size_t na, const int *b, size_t nb) {
    size_t i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    return i;
}

/* The -v lines of `edgelm chat`, turns 1, 2, ... in order: the tokens each
 * evaluated (k) and the context's tokens after it (p). Returns the count. */
static size_t turn_lines(const char *err, unsigned long long *k, unsigned *p, size_t cap) {
    size_t n = 0;
    for (const char *l = strstr(err, "edgelm: turn "); l && n < cap; l = strstr(l + 1, "edgelm: turn ")) {
        unsigned t = 0;
        int got = sscanf(l, "edgelm: turn %u: evaluated %llu new tokens (context %u)", &t, &k[n], &p[n]);
        cr_assert_eq(got, 3, "cannot read the line: %.100s", l);
        cr_assert_eq(t, n + 1, "turn %u where %zu was due:\n%s", t, n + 1, err);
        n++;
    }
    return n;
}

static size_t count_char(const char *s, char c) {
    size_t n = 0;
    for (; *s; s++) n += *s == c;
    return n;
}

#define CHAT_SYSTEM "You are a helpful assistant who tells short stories about cats and dogs."

/* With replies that end at once, the context holds exactly the rendered
 * conversation, so what each turn evaluates is known from `edgelm template`
 * and `edgelm tokenize` alone: all of turn 1, and of turn 2 only what
 * follows the tokens it shares with turn 1. */
Test(cli_chat, evaluates_only_new_tokens) {
    const char *m = chat_model(true);
    const char in[] = "Hello there\nHow are you\n";
    result r = EDGELM_IN(in, strlen(in), "chat", "-m", m, "--system", CHAT_SYSTEM, "-n", "4",
                         "--temp", "0", "-v");
    cr_assert_eq(r.rc, 0, "exit %d; stderr:\n%s", r.rc, r.err);
    cr_expect_str_eq(r.out, "\n\n", "the replies should be empty (the turn ends at once)");
    unsigned long long k[4];
    unsigned p[4];
    cr_assert_eq(turn_lines(r.err, k, p, 4), 2, "want 2 turn lines:\n%s", r.err);

    char *r1 = render_conversation(m, NULL, "[{\"role\": \"system\", \"content\": \"" CHAT_SYSTEM "\"},"
                                            " {\"role\": \"user\", \"content\": \"Hello there\"}]");
    char *r2 = render_conversation(m, NULL, "[{\"role\": \"system\", \"content\": \"" CHAT_SYSTEM "\"},"
                                            " {\"role\": \"user\", \"content\": \"Hello there\"},"
                                            " {\"role\": \"assistant\", \"content\": \"\"},"
                                            " {\"role\": \"user\", \"content\": \"How are you\"}]");
    int t1[512], t2[512];
    size_t n1 = chat_token_ids(m, r1, t1, 512), n2 = chat_token_ids(m, r2, t2, 512);
    size_t shared = common_prefix(t1, n1, t2, n2);
    cr_expect_eq(k[0], n1, "turn 1 evaluated %llu tokens; its rendering has %zu", k[0], n1);
    cr_expect_eq(p[0], n1, "after turn 1 the context holds %u tokens, want %zu", p[0], n1);
    cr_expect_eq(k[1], n2 - shared, "turn 2 evaluated %llu tokens; want %zu (%zu in all, %zu shared)",
                 k[1], n2 - shared, n2, shared);
    cr_expect_eq(p[1], n2, "after turn 2 the context holds %u tokens, want %zu", p[1], n2);
    cr_expect(k[1] * 2 < n2, "turn 2 evaluated %llu of %zu tokens: the context was not reused", k[1], n2);
    free(r1);
    free(r2);
    result_free(&r);
}

/* Three lines, three replies; turn 1's reply is `run --chat`'s; later turns
 * evaluate at most what the context cannot already hold. */
Test(cli_chat, multi_turn_over_a_pipe) {
    const char *m = chat_model(false);
    const char in[] = "Hello there\nHow are you\n\nTell me more\n";
    result r = EDGELM_IN(in, strlen(in), "chat", "-m", m, "-n", "6", "--temp", "0", "-v");
    cr_assert_eq(r.rc, 0, "exit %d; stderr:\n%s", r.rc, r.err);
    unsigned long long k[4];
    unsigned p[4];
    cr_assert_eq(turn_lines(r.err, k, p, 4), 3, "want 3 turns (the empty line is skipped):\n%s", r.err);
    cr_expect(p[0] < p[1] && p[1] < p[2], "the context does not grow: %u %u %u", p[0], p[1], p[2]);
    size_t n = strlen(r.out);
    cr_expect(n >= 3 && r.out[n - 1] == '\n' && count_char(r.out, '\n') >= 3, "stdout:\n%s", r.out);

    result one = EDGELM("run", "--chat", "-m", m, "-p", "Hello there", "-n", "6", "--temp", "0");
    cr_assert_eq(one.rc, 0, "run --chat: exit %d; stderr:\n%s", one.rc, one.err);
    size_t n1 = strlen(one.out);
    cr_assert(n1 > 1 && one.out[n1 - 1] == '\n', "run --chat: stdout '%s'", one.out);
    cr_expect(strncmp(r.out, one.out, n1) == 0, "chat's first reply differs from run --chat's:\n%s\nvs\n%s",
              r.out, one.out);

    /* Turn 2's context starts with turn 1's rendering at least. */
    one.out[n1 - 1] = 0;
    char *reply = json_quote(one.out), *conv = NULL;
    cr_assert(asprintf(&conv, "[{\"role\": \"user\", \"content\": \"Hello there\"}, {\"role\": "
                              "\"assistant\", \"content\": %s}, {\"role\": \"user\", \"content\": "
                              "\"How are you\"}]", reply) > 0);
    char *r1 = render_conversation(m, NULL, "[{\"role\": \"user\", \"content\": \"Hello there\"}]");
    char *r2 = render_conversation(m, NULL, conv);
    int t1[512], t2[512];
    size_t c1 = chat_token_ids(m, r1, t1, 512), c2 = chat_token_ids(m, r2, t2, 512);
    size_t shared = common_prefix(t1, c1, t2, c2);
    cr_expect(shared * 2 > c1, "turn 2's rendering does not extend turn 1's (%zu of %zu tokens)", shared, c1);
    cr_expect_eq(k[0], c1, "turn 1 evaluated %llu tokens, its rendering has %zu", k[0], c1);
    cr_expect_leq(k[1], c2 - shared, "turn 2 evaluated %llu tokens; at most %zu are new (%zu in all)",
                  k[1], c2 - shared, c2);
    free(reply);
    free(conv);
    free(r1);
    free(r2);
    result_free(&one);
    result_free(&r);
}

/* The reply of `run --chat` is what plain `run` generates after the
 * rendered conversation, up to the end-of-turn token. */
Test(cli_chat, run_chat_is_run_on_the_rendering) {
    const char *m = chat_model(false);
    char *r1 = render_conversation(m, NULL, "[{\"role\": \"system\", \"content\": \"Be kind.\"},"
                                            " {\"role\": \"user\", \"content\": \"Hello there\"}]");
    result plain = EDGELM("run", "-m", m, "-p", r1, "-n", "8", "--temp", "0");
    result chat = EDGELM("run", "--chat", "--system", "Be kind.", "-m", m, "-p", "Hello there", "-n",
                         "8", "--temp", "0");
    cr_assert_eq(plain.rc, 0, "run: %s", plain.err);
    cr_assert_eq(chat.rc, 0, "run --chat: %s", chat.err);
    cr_assert(!strncmp(plain.out, r1, strlen(r1)), "run does not echo the prompt");
    const char *gen = plain.out + strlen(r1);
    size_t n = strlen(chat.out);
    cr_assert(n >= 1 && chat.out[n - 1] == '\n', "run --chat: stdout '%s'", chat.out);
    chat.out[--n] = 0;
    cr_expect(!strncmp(gen, chat.out, n), "run --chat replied '%s'; run generated '%s'", chat.out, gen);
    const char *rest = gen + n;
    cr_expect(!strcmp(rest, "\n") || !strncmp(rest, "<|turn_end|>", 12),
              "the reply '%s' stops before the end of the turn: run went on with '%s'", chat.out, rest);
    free(r1);
    result_free(&plain);
    result_free(&chat);
}

/* A model that always ends the turn: plain run writes <|turn_end|> (a
 * user-defined token, not an end of generation); the chat stops there and
 * does not write it. */
Test(cli_chat, stops_at_end_of_turn) {
    const char *m = chat_model(true);
    result r = EDGELM("run", "-m", m, "-p", "a", "-n", "3", "--temp", "0");
    cr_assert_eq(r.rc, 0, "run: %s", r.err);
    cr_expect_str_eq(r.out, "a<|turn_end|><|turn_end|><|turn_end|>\n");
    result_free(&r);

    r = EDGELM_IN("hi\n", 3, "chat", "-m", m, "-n", "5", "--temp", "0", "-v");
    cr_assert_eq(r.rc, 0, "chat: %s", r.err);
    cr_expect_str_eq(r.out, "\n", "the end of the turn was written");
    unsigned long long k[2];
    unsigned p[2];
    cr_assert_eq(turn_lines(r.err, k, p, 2), 1);
    cr_expect_eq(p[0], k[0], "the context keeps generated tokens after the end of the turn");
    result_free(&r);

    r = EDGELM("run", "--chat", "-m", m, "-p", "hi", "-n", "5", "--temp", "0");
    cr_assert_eq(r.rc, 0, "run --chat: %s", r.err);
    cr_expect_str_eq(r.out, "\n");
    cr_expect_eq(parse_stats(r.err).n_gen, 1, "generation went on past the end of the turn");
    result_free(&r);

    r = EDGELM("run", "--chat", "-m", m, "-p", "hi", "-n", "2", "--temp", "0", "--ignore-eos");
    cr_assert_eq(r.rc, 0, "run --chat --ignore-eos: %s", r.err);
    cr_expect_str_eq(r.out, "<|turn_end|><|turn_end|>\n");
    result_free(&r);
}

/* --template replaces the model's own template. */
Test(cli_chat, template_file_overrides) {
    const char *m = chat_model(true);
    const char *t = write_tmp("bracket.jinja", "{% for m in messages %}[{{ m.role }}] {{ m.content }}<|turn_end|>{% endfor %}"
                                               "{% if add_generation_prompt %}[assistant] {% endif %}");
    result r = EDGELM_IN("Hello there\n", 12, "chat", "-m", m, "--template", t, "-n", "2", "--temp", "0", "-v");
    cr_assert_eq(r.rc, 0, "exit %d: %s", r.rc, r.err);
    cr_expect_str_eq(r.out, "\n");
    unsigned long long k[2];
    unsigned p[2];
    cr_assert_eq(turn_lines(r.err, k, p, 2), 1);
    char *text = render_conversation(NULL, t, "[{\"role\": \"user\", \"content\": \"Hello there\"}]");
    cr_assert(!strncmp(text, "[user] Hello there", 18), "%s", text);
    int ids[256];
    cr_expect_eq(k[0], chat_token_ids(m, text, ids, 256), "the prompt is not the --template rendering");
    free(text);
    result_free(&r);
}

/* A message that makes the conversation longer than the context fails
 * alone: an empty reply line, a message, exit 1 at the end; the next one is
 * answered. */
Test(cli_chat, message_longer_than_context) {
    char in[2048] = "";
    for (int i = 0; i < 30; i++) strcat(in, "Once upon a time there was ");
    strcat(in, "\nhi\n");
    const char *m = chat_model(false);
    result r = EDGELM_IN(in, strlen(in), "chat", "-m", m, "-c", "64", "-n", "3", "--temp", "0", "-v");
    cr_expect_eq(r.rc, 1, "exit %d (want 1); stderr:\n%s", r.rc, r.err);
    cr_expect(r.out[0] == '\n' && count_char(r.out, '\n') >= 2, "stdout: '%s'", r.out);
    cr_expect(strstr(r.err, "turn 1") && strcasestr(r.err, "context"), "no message about turn 1:\n%s", r.err);
    cr_expect(strstr(r.err, "edgelm: turn 2: evaluated"), "turn 2 was not answered:\n%s", r.err);
    result_free(&r);
}

static void expect_chat_error(const char *what, const char *const *words, const char *const *args) {
    result r = run_args("hi\n", 3, args);
    cr_expect_eq(r.rc, 1, "%s: exit %d (want 1); stderr:\n%s", what, r.rc, r.err);
    cr_expect_str_empty(r.out, "%s: stdout '%s'", what, r.out);
    for (; *words; words++) cr_expect(strstr(r.err, *words), "%s: the message lacks '%s':\n%s", what, *words, r.err);
    result_free(&r);
}

Test(cli_chat, errors) {
    const char *plain = tiny_llama(), *m = chat_model(false);
    expect_chat_error("no template", WORDS("no chat template", "--template", plain),
                      WORDS("chat", "-m", plain));
    expect_chat_error("run --chat, no template", WORDS("no chat template", "--template"),
                      WORDS("run", "--chat", "-m", plain, "-p", "hi"));
    char missing[600];
    snprintf(missing, sizeof missing, "%s/no-such-template.jinja", test_tmp_dir());
    expect_chat_error("missing template file", WORDS(missing), WORDS("chat", "-m", m, "--template", missing));
    const char *bad = write_tmp("broken.jinja", "{% for m in messages %}{{ m.content ");
    expect_chat_error("bad template", WORDS("broken.jinja", "line 1"), WORDS("chat", "-m", m, "--template", bad));
    const char *raise = write_tmp("raise-always.jinja", "{{ raise_exception('roles must alternate') }}");
    expect_chat_error("raising template", WORDS("roles must alternate"), WORDS("chat", "-m", m, "--template", raise));
    USAGE("chat", "-m", m, "--bogus");
    USAGE("chat", "--system", "x");      /* missing -m */
    USAGE("chat", "-m", m, "-n", "x");
    USAGE("run", "-m", m, "-p", "x", "--system", "s"); /* --system needs --chat */
    USAGE("run", "-m", m, "-p", "x", "--template", "t");
}
