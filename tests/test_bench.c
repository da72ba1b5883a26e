/*
 * test_bench.c: `edgelm bench` and `edgelm make-model` through the CLI
 * ($ELM_CLI): the JSON schema and the consistency of its figures, CSV, a
 * well-formed SVG, --compare, the stored best device, the time budget, and
 * a make-model file that loads, runs and round-trips through the GGUF reader.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "edgelm.h"
#include "support/json.h"
#include "support/paths.h"

/* smollm-135m: 30 layers, 3 KV heads of 64. */
#define SMOL_LAYERS 30
#define SMOL_KV_DIM (3 * 64)

typedef struct run_out {
    int rc;
    char *out, *err;
} run_out;

static const char *cli(void) {
    const char *c = test_cli();
    cr_assert_not_null(c, "ELM_CLI is not set: run the tests through ctest");
    return c;
}

/* Runs the CLI with up to 31 arguments (NULL-terminated list). */
static run_out run_cli(const char *first, ...) {
    const char *argv[32] = {cli(), first};
    va_list ap;
    va_start(ap, first);
    int n = 2;
    for (const char *a; n < 31 && (a = va_arg(ap, const char *));) argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    run_out r = {0};
    r.rc = test_run(argv, NULL, 0, &r.out, &r.err);
    return r;
}

static void run_free(run_out *r) {
    free(r->out);
    free(r->err);
}

static void tmp_path(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", test_tmp_dir(), name);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------ well-formed XML check */

typedef struct xml {
    const char *s;
    size_t pos;
    const char *why;
} xml;

static bool xml_fail(xml *x, const char *why) {
    if (!x->why) x->why = why;
    return false;
}

static bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == ':' || c == '.';
}

static size_t xml_name(xml *x) {
    size_t start = x->pos;
    while (is_name_char(x->s[x->pos])) x->pos++;
    return x->pos - start;
}

static void xml_ws(xml *x) {
    while (x->s[x->pos] && strchr(" \t\r\n", x->s[x->pos])) x->pos++;
}

/* An entity reference at x->pos ('&'). */
static bool xml_entity(xml *x) {
    static const char *const named[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
    for (size_t i = 0; i < 5; i++)
        if (!strncmp(x->s + x->pos, named[i], strlen(named[i]))) {
            x->pos += strlen(named[i]);
            return true;
        }
    if (x->s[x->pos + 1] != '#') return xml_fail(x, "bad entity");
    size_t p = x->pos + 2;
    bool hex = x->s[p] == 'x';
    p += hex;
    size_t digits = strspn(x->s + p, hex ? "0123456789abcdefABCDEF" : "0123456789");
    if (!digits || x->s[p + digits] != ';') return xml_fail(x, "bad character reference");
    x->pos = p + digits + 1;
    return true;
}

/* Character data up to the next '<' (or the end). */
static bool xml_text(xml *x) {
    while (x->s[x->pos] && x->s[x->pos] != '<') {
        if (x->s[x->pos] == '&') {
            if (!xml_entity(x)) return false;
        } else if (x->s[x->pos] == '>' && x->pos >= 2 && !strncmp(x->s + x->pos - 2, "]]", 2)) {
            return xml_fail(x, "]]> in text");
        } else {
            x->pos++;
        }
    }
    return true;
}

static bool xml_attrs(xml *x) {
    for (;;) {
        xml_ws(x);
        char c = x->s[x->pos];
        if (c == '>' || c == '/' || !c) return true;
        if (!xml_name(x)) return xml_fail(x, "bad attribute name");
        xml_ws(x);
        if (x->s[x->pos++] != '=') return xml_fail(x, "attribute without '='");
        xml_ws(x);
        char q = x->s[x->pos++];
        if (q != '"' && q != '\'') return xml_fail(x, "unquoted attribute");
        while (x->s[x->pos] && x->s[x->pos] != q) {
            if (x->s[x->pos] == '<') return xml_fail(x, "'<' in an attribute");
            if (x->s[x->pos] == '&' ? !xml_entity(x) : (x->pos++, false)) return false;
        }
        if (!x->s[x->pos++]) return xml_fail(x, "unterminated attribute");
    }
}

static bool xml_skip(xml *x, const char *open, const char *close) {
    if (strncmp(x->s + x->pos, open, strlen(open))) return false;
    const char *end = strstr(x->s + x->pos, close);
    if (!end) return xml_fail(x, "unterminated declaration or comment");
    x->pos = (size_t)(end - x->s) + strlen(close);
    return true;
}

/* An element at '<'; its name goes to root when root is not NULL. */
static bool xml_element(xml *x, char *root, size_t cap, int depth) {
    if (depth > 100) return xml_fail(x, "too deep");
    x->pos++;
    size_t start = x->pos, n = xml_name(x);
    if (!n) return xml_fail(x, "bad element name");
    if (root) snprintf(root, cap, "%.*s", (int)n, x->s + start);
    if (!xml_attrs(x)) return false;
    if (x->s[x->pos] == '/')
        return x->s[x->pos + 1] == '>' ? (x->pos += 2, true) : xml_fail(x, "bad />");
    if (x->s[x->pos++] != '>') return xml_fail(x, "unterminated start tag");
    for (;;) {
        if (!xml_text(x)) return false;
        if (!x->s[x->pos]) return xml_fail(x, "unclosed element");
        if (xml_skip(x, "<!--", "-->")) continue;
        if (x->why) return false;
        if (x->s[x->pos + 1] == '/') break;
        if (!xml_element(x, NULL, 0, depth + 1)) return false;
    }
    x->pos += 2;
    size_t end_start = x->pos, end_n = xml_name(x);
    if (end_n != n || strncmp(x->s + start, x->s + end_start, n))
        return xml_fail(x, "mismatched end tag");
    xml_ws(x);
    return x->s[x->pos++] == '>' || xml_fail(x, "bad end tag");
}

/* Well-formed XML with one root element; its name goes to root. */
static bool xml_well_formed(const char *s, char *root, size_t cap, const char **why) {
    xml x = {.s = s};
    xml_ws(&x);
    xml_skip(&x, "<?xml", "?>");
    for (;;) {
        xml_ws(&x);
        if (!xml_skip(&x, "<!--", "-->")) break;
    }
    bool ok = !x.why && x.s[x.pos] == '<' && xml_element(&x, root, cap, 0);
    if (ok) {
        xml_ws(&x);
        ok = !x.s[x.pos] || xml_fail(&x, "content after the root element");
    }
    if (!ok && !x.why) x.why = "no root element";
    *why = x.why;
    return ok;
}

/* --------------------------------------------------------- JSON checks */

static const char *const RESULT_KEYS[] = {
    "device",          "backend",           "model",         "n_prompt",
    "n_gen",           "n_threads",         "load_ms",       "ttft_ms",
    "prompt_tps",      "prompt_tps_stddev", "gen_tps",       "gen_tps_stddev",
    "peak_host_bytes", "device_bytes",      "weights_bytes", "kv_bytes",
    "scratch_bytes",   "budget_exhausted",
};

static double num(const json_value *row, const char *key) {
    const json_value *v = json_get(row, key);
    cr_assert(json_is(v, JSON_NUMBER), "key %s is not a number", key);
    return v->number;
}

static void check_system(const json_value *root) {
    const json_value *sys = json_get(root, "system");
    cr_assert(json_is(sys, JSON_OBJECT), "no system object");
    const char *keys[] = {"cpu", "os", "edgelm_version", "git_commit", "time"};
    for (size_t i = 0; i < 5; i++)
        cr_expect(json_str(json_get(sys, keys[i])) && json_str(json_get(sys, keys[i]))[0],
                  "system.%s missing or empty", keys[i]);
    cr_expect(num(sys, "n_cores") >= 1);
    cr_expect_str_eq(json_str(json_get(sys, "edgelm_version")), elm_version());
    const char *t = json_str(json_get(sys, "time"));
    cr_expect(t && strlen(t) == 20 && t[4] == '-' && t[10] == 'T' && t[19] == 'Z',
              "time is not ISO 8601 UTC: %s", t ? t : "(null)");
}

static void check_schema(const json_value *row) {
    for (size_t i = 0; i < sizeof RESULT_KEYS / sizeof *RESULT_KEYS; i++)
        cr_assert_not_null(json_get(row, RESULT_KEYS[i]), "result lacks key %s", RESULT_KEYS[i]);
    cr_expect(json_is(json_get(row, "device"), JSON_STRING));
    cr_expect(json_is(json_get(row, "model"), JSON_STRING));
    cr_expect(json_is(json_get(row, "budget_exhausted"), JSON_BOOL));
}

/* The figures of a CPU row of smollm-135m, -p 8 -n 4 -r 2. */
static void check_cpu_figures(const json_value *row) {
    cr_assert_str_eq(json_str(json_get(row, "device")), "cpu");
    cr_assert_str_eq(json_str(json_get(row, "error")), "", "cpu failed: %s",
                     json_str(json_get(row, "error")));
    cr_expect_str_eq(json_str(json_get(row, "model")), "shape:smollm-135m:Q8_0");
    cr_expect_eq(num(row, "n_prompt"), 8);
    cr_expect_eq(num(row, "n_gen"), 4);
    cr_expect_eq(num(row, "n_reps"), 2);
    cr_expect(num(row, "n_threads") >= 1);
    cr_expect(!json_get(row, "budget_exhausted")->boolean);
    const char *pos[] = {"load_ms",         "ttft_ms",       "prompt_tps", "gen_tps",
                         "peak_host_bytes", "weights_bytes", "kv_bytes",   "scratch_bytes"};
    for (size_t i = 0; i < sizeof pos / sizeof *pos; i++)
        cr_expect(num(row, pos[i]) > 0, "%s = %g is not positive", pos[i], num(row, pos[i]));
    cr_expect(num(row, "gen_tps_stddev") >= 0 && num(row, "prompt_tps_stddev") >= 0);
    double one_prompt_ms = num(row, "n_prompt") / num(row, "prompt_tps") * 1000.0;
    cr_expect(num(row, "ttft_ms") >= 0.9 * one_prompt_ms, "ttft %g ms < one prompt (%g ms)",
              num(row, "ttft_ms"), one_prompt_ms);
    /* F16 cache (fast mode) of n_ctx = 12; rows may be padded to 64 bytes. */
    double kv = 2.0 * SMOL_LAYERS * 12 * SMOL_KV_DIM * 2;
    cr_expect(num(row, "kv_bytes") >= kv && num(row, "kv_bytes") <= kv + 2 * SMOL_LAYERS * 64,
              "kv_bytes %g, expected %g", num(row, "kv_bytes"), kv);
    cr_expect_eq(num(row, "device_bytes"), num(row, "kv_bytes") + num(row, "scratch_bytes"));
    cr_expect(num(row, "peak_host_bytes") >= num(row, "kv_bytes"));
    /* The decode roofline of the same run. */
    double bpt = num(row, "gen_bytes_per_token"), read = num(row, "read_gbps");
    cr_expect(read > 0, "read_gbps %g", read);
    cr_expect(bpt > 0 && bpt <= num(row, "weights_bytes"), "gen_bytes_per_token %g", bpt);
    double gbps = num(row, "gen_tps") * bpt / 1e9;
    cr_expect(fabs(num(row, "gen_gbps") - gbps) <= 1e-3 * gbps, "gen_gbps inconsistent");
    cr_expect(fabs(num(row, "gen_pct_read_bw") - 100 * gbps / read) <= 1e-3 * 100 * gbps / read,
              "gen_pct_read_bw inconsistent");
}

/* ------------------------------------------------------------ CSV */

static size_t csv_fields(const char *line, size_t len) {
    size_t n = 1;
    bool quoted = false;
    for (size_t i = 0; i < len; i++) {
        if (line[i] == '"')
            quoted = !quoted;
        else if (line[i] == ',' && !quoted)
            n++;
    }
    return n;
}

static void check_csv(const char *path, size_t n_rows) {
    char *text = test_read_file(path, NULL);
    cr_assert_not_null(text, "no CSV written");
    cr_expect(!strncmp(text, "device,backend,", 15), "CSV header: %.60s", text);
    cr_expect(strstr(text, ",gen_tps,") && strstr(text, ",budget_exhausted"));
    size_t lines = 0, header = 0;
    for (char *p = text, *nl; *p; p = nl + 1) {
        nl = strchr(p, '\n');
        cr_assert_not_null(nl, "CSV line without newline");
        size_t f = csv_fields(p, (size_t)(nl - p));
        if (lines++ == 0)
            header = f;
        else
            cr_expect_eq(f, header, "CSV row %zu has %zu fields, header %zu", lines, f, header);
    }
    cr_expect_eq(lines, n_rows + 1);
    free(text);
}

static void check_svg(const char *path) {
    char *text = test_read_file(path, NULL);
    cr_assert_not_null(text, "no SVG written");
    char root[32] = "";
    const char *why = NULL;
    cr_expect(xml_well_formed(text, root, sizeof root, &why), "SVG is not well-formed XML: %s",
              why ? why : "?");
    cr_expect_str_eq(root, "svg");
    cr_expect(strstr(text, "xmlns=\"http://www.w3.org/2000/svg\""));
    free(text);
}

/* Every ratio of a file compared with itself is 1.00. */
static void check_compare_self(const char *json) {
    run_out r = run_cli("bench", "--compare", json, json, NULL);
    cr_assert_eq(r.rc, 0, "--compare failed: %s", r.err);
    size_t n = 0;
    for (char *line = strtok(r.out, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] != '|' || strstr(line, "---") || strstr(line, "new/old")) continue;
        char *last = strrchr(line, '|');
        *last = 0;
        char *cell = strrchr(line, '|') + 1;
        while (*cell == ' ') cell++;
        cr_expect(!strncmp(cell, "1.00", 4) || !strncmp(cell, "same", 4), "ratio '%s' in %s", cell,
                  line);
        n++;
    }
    cr_expect(n >= 10, "only %zu ratios printed", n);
    run_free(&r);
}

static void check_store(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/cache/edgelm/bench/shape_smollm-135m_Q8_0.json",
             test_tmp_dir());
    char err[256];
    json_value *v = json_parse_file(path, err, sizeof err);
    cr_assert_not_null(v, "stored results: %s", err);
    cr_expect_str_eq(json_str(json_path(v, "model")), "shape:smollm-135m:Q8_0");
    cr_expect_str_eq(json_str(json_path(v, "best.gen_tps")), "cpu");
    json_free(v);
}

Test(bench, report_json_csv_svg_compare_store) {
    char json[512], csv[512], svg[512], cache[512];
    tmp_path(json, sizeof json, "r.json");
    tmp_path(csv, sizeof csv, "r.csv");
    tmp_path(svg, sizeof svg, "r.svg");
    tmp_path(cache, sizeof cache, "cache");
    setenv("XDG_CACHE_HOME", cache, 1);
    run_out r =
        run_cli("bench", "--shape", "smollm-135m", "--type", "Q8_0", "-p", "8", "-n", "4", "-r",
                "2", "--device", "cpu,nosuch", "--json", json, "--csv", csv, "--svg", svg, NULL);
    cr_assert_eq(r.rc, 0, "bench failed (%d): %s", r.rc, r.err);
    cr_expect(strstr(r.out, "| device |"), "no table:\n%s", r.out);
    cr_expect(strstr(r.out, "highest generation speed: cpu"), "no recommendation:\n%s", r.out);
    cr_expect(strstr(r.out, "lowest time to first token: cpu"));
    cr_expect(strstr(r.out, "lowest memory: cpu"));
    char err[256];
    json_value *root = json_parse_file(json, err, sizeof err);
    cr_assert_not_null(root, "JSON: %s", err);
    check_system(root);
    const json_value *res = json_get(root, "results");
    cr_assert_eq(json_len(res), 2, "one row per device asked for");
    for (size_t i = 0; i < 2; i++) check_schema(json_at(res, i));
    check_cpu_figures(json_at(res, 0));
    cr_expect(strlen(json_str(json_get(json_at(res, 1), "error"))) > 0,
              "unknown device without error");
    json_free(root);
    check_csv(csv, 2);
    check_svg(svg);
    check_compare_self(json);
    check_store();
    run_free(&r);
}

Test(bench, budget_is_enforced) {
    char json[512];
    tmp_path(json, sizeof json, "budget.json");
    double t0 = now_s();
    run_out r =
        run_cli("bench", "--shape", "tinyllama-1.1b", "--type", "Q4_0", "--device", "cpu", "-p",
                "8", "-n", "4", "-r", "1", "--budget", "0.5", "--no-store", "--json", json, NULL);
    double took = now_s() - t0;
    cr_assert_eq(r.rc, 0, "bench failed (%d): %s", r.rc, r.err);
    cr_expect(took < 8.0, "a 0.5 s budget took %.1f s", took);
    json_value *root = json_parse_file(json, NULL, 0);
    cr_assert_not_null(root);
    const json_value *row = json_at(json_get(root, "results"), 0);
    cr_assert(json_is(json_get(row, "budget_exhausted"), JSON_BOOL));
    cr_expect(json_get(row, "budget_exhausted")->boolean, "budget_exhausted is false");
    cr_expect(strstr(r.out, "budget exhausted"), "the table does not say so:\n%s", r.out);
    json_free(root);
    run_free(&r);
}

/* ------------------------------------------------------- make-model */

static void check_round_trip(const char *path) {
    elm_model *m = NULL;
    char err[256];
    cr_assert_eq(elm_model_load(path, NULL, &m, err, sizeof err), ELM_OK, "%s", err);
    elm_model_info info = ELM_INIT(elm_model_info);
    cr_assert_eq(elm_model_get_info(m, &info), ELM_OK);
    cr_expect_eq(info.n_embd, 576);
    cr_expect_eq(info.n_layer, 30);
    cr_expect_eq(info.n_head, 9);
    cr_expect_eq(info.n_head_kv, 3);
    cr_expect_eq(info.n_ff, 1536);
    cr_expect_eq(info.n_vocab, 1000);
    bool found = false;
    for (uint32_t i = 0; i < elm_model_n_tensors(m); i++) {
        elm_tensor_info t = ELM_INIT(elm_tensor_info);
        cr_assert_eq(elm_model_tensor(m, i, &t), ELM_OK);
        if (strcmp(t.name, "blk.0.attn_q.weight")) continue;
        found = true;
        cr_expect_str_eq(t.type, "Q4_0");
        cr_expect(t.ne[0] == 576 && t.ne[1] == 576);
    }
    cr_expect(found, "no blk.0.attn_q.weight");
    elm_model_free(m);
}

Test(bench, make_model_loads_runs_and_benches) {
    char model[512], json[512];
    tmp_path(model, sizeof model, "smol.gguf");
    tmp_path(json, sizeof json, "file.json");
    run_out r = run_cli("make-model", "--shape", "smollm-135m", "--type", "Q4_0", "--vocab-size",
                        "1000", "-o", model, NULL);
    cr_assert_eq(r.rc, 0, "make-model failed (%d): %s", r.rc, r.err);
    run_free(&r);
    check_round_trip(model);
    r = run_cli("run", "-m", model, "-p", "hi", "-n", "4", NULL);
    cr_expect_eq(r.rc, 0, "edgelm run failed (%d): %s", r.rc, r.err);
    run_free(&r);
    r = run_cli("info", "-m", model, NULL);
    cr_expect_eq(r.rc, 0, "edgelm info failed (%d): %s", r.rc, r.err);
    run_free(&r);
    r = run_cli("bench", "--model", model, "--device", "cpu", "-p", "4", "-n", "2", "-r", "1",
                "--no-store", "--json", json, NULL);
    cr_assert_eq(r.rc, 0, "bench --model failed (%d): %s", r.rc, r.err);
    json_value *root = json_parse_file(json, NULL, 0);
    const json_value *row = json_at(json_get(root, "results"), 0);
    cr_expect_str_eq(json_str(json_get(row, "model")), "smol.gguf");
    cr_expect(json_num(json_get(row, "gen_tps"), 0) > 0);
    json_free(root);
    run_free(&r);
}

/* Several models in one run: a row per model, in the order given. */
Test(bench, several_models_in_one_run) {
    char a[512], b[512], list[1100], json[512];
    tmp_path(a, sizeof a, "first.gguf");
    tmp_path(b, sizeof b, "second.gguf");
    tmp_path(json, sizeof json, "two.json");
    const char *shapes[2] = {"smollm-135m", "qwen2-0.5b"}, *paths[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        run_out r = run_cli("make-model", "--shape", shapes[i], "--type", "Q8_0", "--vocab-size",
                            "1000", "-o", paths[i], NULL);
        cr_assert_eq(r.rc, 0, "make-model failed (%d): %s", r.rc, r.err);
        run_free(&r);
    }
    snprintf(list, sizeof list, "%s,%s", a, b);
    run_out r = run_cli("bench", "--model", list, "--device", "cpu", "-p", "4", "-n", "2", "-r",
                        "1", "--no-store", "--json", json, NULL);
    cr_assert_eq(r.rc, 0, "bench --model A,B failed (%d): %s", r.rc, r.err);
    json_value *root = json_parse_file(json, NULL, 0);
    const json_value *rows = json_get(root, "results");
    cr_expect_str_eq(json_str(json_get(json_at(rows, 0), "model")), "first.gguf");
    cr_expect_str_eq(json_str(json_get(json_at(rows, 1), "model")), "second.gguf");
    cr_expect(json_num(json_get(json_at(rows, 1), "gen_tps"), 0) > 0);
    cr_expect(strstr(r.out, "Recommendation for second.gguf") != NULL, "%s", r.out);
    json_free(root);
    run_free(&r);
}

/* ------------------------------------------------------------- ops */

Test(bench, ops_json_schema) {
    char json[512];
    tmp_path(json, sizeof json, "ops.json");
    run_out r = run_cli("bench", "--ops", "--device", "cpu", "--budget", "3", "--json", json, NULL);
    cr_assert_eq(r.rc, 0, "bench --ops failed (%d): %s", r.rc, r.err);
    json_value *root = json_parse_file(json, NULL, 0);
    cr_assert_not_null(root, "no ops JSON");
    check_system(root);
    const json_value *ops = json_get(root, "ops");
    cr_assert(json_len(ops) >= 2, "fewer than two ops measured");
    const char *keys[] = {"device", "op",     "type",        "rows",
                          "cols",   "gbps",   "pct_copy_bw", "pct_read_bw"};
    for (size_t i = 0; i < json_len(ops); i++)
        for (size_t k = 0; k < sizeof keys / sizeof *keys; k++)
            cr_expect_not_null(json_get(json_at(ops, i), keys[k]), "op %zu lacks %s", i, keys[k]);
    cr_assert(json_len(ops) >= 3, "fewer than three ops measured");
    const json_value *copy = json_at(ops, 0), *read = json_at(ops, 1), *mv = json_at(ops, 2);
    cr_expect_str_eq(json_str(json_get(read, "op")), "read");
    cr_expect(num(read, "gbps") > 0);
    cr_expect_eq(num(read, "pct_read_bw"), 100);
    cr_expect_str_eq(json_str(json_get(copy, "op")), "copy");
    cr_expect(num(copy, "gbps") > 0);
    cr_expect_eq(num(copy, "pct_copy_bw"), 100);
    cr_expect_str_eq(json_str(json_get(mv, "op")), "mul_mat_vec");
    cr_expect(num(mv, "gbps") > 0 && num(mv, "pct_copy_bw") > 0);
    double pct = num(mv, "gbps") / num(copy, "gbps") * 100;
    cr_expect(fabs(pct - num(mv, "pct_copy_bw")) < 0.01 * pct + 1e-3, "pct_copy_bw inconsistent");
    pct = num(mv, "gbps") / num(read, "gbps") * 100;
    cr_expect(fabs(pct - num(mv, "pct_read_bw")) < 0.01 * pct + 1e-3, "pct_read_bw inconsistent");
    json_free(root);
    run_free(&r);
}

/* ----------------------------------------------------------- errors */

Test(bench, usage_errors_exit_2) {
    const char *bad[][4] = {
        {"bench", "--shape", "nosuch", NULL},           {"bench", "-p", "x", NULL},
        {"bench", "--frobnicate", "1", NULL},           {"bench", "-r", "0", NULL},
        {"make-model", "--shape", "smollm-135m", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        run_out r = run_cli(bad[i][0], bad[i][1], bad[i][2], NULL);
        cr_expect_eq(r.rc, 2, "%s %s %s: exit %d", bad[i][0], bad[i][1], bad[i][2], r.rc);
        run_free(&r);
    }
}

Test(bench, compare_rejects_bad_files) {
    char bad[512];
    tmp_path(bad, sizeof bad, "bad.json");
    FILE *f = fopen(bad, "w");
    cr_assert_not_null(f);
    fputs("{\"results\": [", f);
    fclose(f);
    run_out r = run_cli("bench", "--compare", bad, bad, NULL);
    cr_expect_eq(r.rc, 1, "truncated JSON accepted");
    run_free(&r);
    r = run_cli("bench", "--compare", "/nonexistent/a.json", bad, NULL);
    cr_expect_eq(r.rc, 1);
    run_free(&r);
}

/* make-model --layers keeps the first layers of a shape (here lfm2-350m's
 * two convolution layers and its first attention one); the shape list in
 * the usage message names the newer shapes; out-of-range depths exit 2. */
Test(bench, make_model_layers_and_shape_list) {
    char model[512];
    tmp_path(model, sizeof model, "lfm2-3.gguf");
    run_out r = run_cli("make-model", "--shape", "lfm2-350m", "--type", "Q8_0", "--vocab-size",
                        "300", "--layers", "3", "-o", model, NULL);
    cr_assert_eq(r.rc, 0, "make-model failed (%d): %s", r.rc, r.err);
    run_free(&r);
    elm_model *m = NULL;
    char err[512] = "";
    cr_assert_eq(elm_model_load(model, NULL, &m, err, sizeof err), ELM_OK, "%s", err);
    elm_model_info in = ELM_INIT(elm_model_info);
    cr_assert_eq(elm_model_get_info(m, &in), ELM_OK);
    cr_expect_eq(in.n_layer, 3);
    cr_expect_eq(in.n_embd, 1024);
    cr_expect_str_eq(in.arch, "lfm2");
    elm_model_free(m);
    remove(model);
    r = run_cli("make-model", "--shape", "nosuch", "-o", model, NULL);
    cr_expect_eq(r.rc, 2);
    static const char *const shapes[] = {"qwen3-0.6b", "gemma3-270m", "gemma3-1b", "phi4-mini",
                                         "smollm3-3b", "lfm2-350m", "tiny-gemma3"};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        cr_expect(r.err && strstr(r.err, shapes[i]), "usage does not list %s: %s", shapes[i],
                  r.err ? r.err : "");
    run_free(&r);
    static const char *const depths[] = {"0", "3", "x"};
    for (size_t i = 0; i < sizeof depths / sizeof *depths; i++) {
        r = run_cli("make-model", "--shape", "tiny-qwen3", "--layers", depths[i], "-o", model, NULL);
        cr_expect_eq(r.rc, 2, "--layers %s: exit %d", depths[i], r.rc);
        run_free(&r);
    }
}
