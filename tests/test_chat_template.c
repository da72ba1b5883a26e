/* test_chat_template.c: every case of ../shared/chat/cases.jsonl (exact text,
 * or the expected error; raise_exception's exact message), and the public
 * API's argument and buffer rules. Feature, reference-renderer and hostile
 * templates are in test_chat_features.c and test_chat_hostile.c. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgelm.h"
#include "support/json.h"
#include "support/paths.h"

#define FIXED_NOW 1768435200 /* 2026-01-15 00:00:00 UTC */

typedef struct conv {
    elm_chat_message *msgs;
    size_t n;
} conv;

static conv load_conv(const json_value *convs, const char *name) {
    const json_value *m = json_get(json_get(convs, name), "messages");
    conv c = {calloc(json_len(m) + 1, sizeof(elm_chat_message)), json_len(m)};
    for (size_t i = 0; i < c.n; i++) {
        c.msgs[i].role = json_str(json_get(json_at(m, i), "role"));
        c.msgs[i].content = json_str(json_get(json_at(m, i), "content"));
    }
    return c;
}

/* Runs one case; returns true when it matches, printing why not. */
static bool run_case(const json_value *cs, const json_value *convs, int line) {
    char path[4096], rel[1024];
    snprintf(rel, sizeof rel, "chat/%s", json_str(json_get(cs, "template_file")));
    cr_assert(test_shared_path(rel, path, sizeof path), "missing %s", rel);
    char *tmpl = test_read_file(path, NULL);
    cr_assert(tmpl);
    conv c = load_conv(convs, json_str(json_get(cs, "conversation")));
    elm_chat_params p;
    elm_chat_default_params(&p);
    p.add_generation_prompt = json_get(cs, "add_generation_prompt")->boolean;
    p.bos_token = json_str(json_get(cs, "bos_token"));
    p.eos_token = json_str(json_get(cs, "eos_token"));
    p.now = FIXED_NOW;
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap), err[1024];
    elm_status st = elm_chat_apply_template(NULL, tmpl, c.msgs, c.n, &p, buf, cap, &len, err, sizeof err);
    const char *expected = json_str(json_get(cs, "expected"));
    const char *error = json_str(json_get(cs, "error"));
    const char *name = json_str(json_get(cs, "template_name")), *cv = json_str(json_get(cs, "conversation"));
    bool ok = true;
    if (expected) {
        ok = st == ELM_OK && len == strlen(expected) && memcmp(buf, expected, len) == 0;
        if (!ok && st != ELM_OK) fprintf(stderr, "line %d %s %s: error %s\n", line, name, cv, err);
        else if (!ok) {
            size_t k = 0;
            while (k < len && buf[k] == expected[k]) k++;
            fprintf(stderr, "line %d %s %s: differs at byte %zu:\n got: %.80s\nwant: %.80s\n", line, name, cv, k,
                    buf + k, expected + k);
        }
    } else {
        ok = st == ELM_ERR_TEMPLATE;
        /* Errors other than UndefinedError/TypeError/... come from raise_exception. */
        if (ok && error && !strchr(error, ':')) ok = strcmp(err, error) == 0;
        if (!ok) fprintf(stderr, "line %d %s %s: want error '%s', got status %d '%s'\n", line, name, cv, error, st, err);
    }
    free(buf);
    free(c.msgs);
    free(tmpl);
    return ok;
}

Test(chat_template, shared_cases, .timeout = 120) {
    char cases_path[4096], conv_path[4096];
    if (!test_shared_path("chat/cases.jsonl", cases_path, sizeof cases_path) ||
        !test_shared_path("chat/conversations.json", conv_path, sizeof conv_path)) {
        cr_skip_test("no shared dir (%s): the chat-template cases are skipped", test_shared_dir());
    }
    char jerr[256];
    json_value *convs = json_parse_file(conv_path, jerr, sizeof jerr);
    cr_assert(convs, "%s", jerr);
    size_t len;
    char *text = test_read_file(cases_path, &len);
    cr_assert(text);
    int total = 0, failed = 0, line = 0;
    for (char *p = text; p < text + len;) {
        char *e = memchr(p, '\n', (size_t)(text + len - p));
        if (!e) e = text + len;
        line++;
        if (e > p) {
            json_value *cs = json_parse(p, (size_t)(e - p), jerr, sizeof jerr);
            cr_assert(cs, "line %d: %s", line, jerr);
            total++;
            if (!run_case(cs, convs, line)) failed++;
            json_free(cs);
        }
        p = e + 1;
    }
    free(text);
    json_free(convs);
    fprintf(stderr, "chat template cases: %d of %d pass\n", total - failed, total);
    cr_assert_eq(failed, 0, "%d of %d chat-template cases fail (listed above)", failed, total);
    cr_assert_eq(total, 230);
}

static const elm_chat_message two[] = {{"user", "Hi"}, {"assistant", "Hello"}};

Test(chat_template, buffer_rules) {
    const char *t = "{% for m in messages %}{{ m.role }}:{{ m.content }};{% endfor %}";
    char buf[64], err[256];
    size_t len = 0;
    cr_assert_eq(elm_chat_apply_template(NULL, t, two, 2, NULL, buf, sizeof buf, &len, err, sizeof err), ELM_OK, "%s", err);
    cr_assert_str_eq(buf, "user:Hi;assistant:Hello;");
    cr_assert_eq(len, 24);
    cr_assert_eq(elm_chat_apply_template(NULL, t, two, 2, NULL, buf, 10, &len, err, sizeof err), ELM_ERR_BUFFER_TOO_SMALL);
    cr_assert_eq(len, 24);
    cr_assert_eq(elm_chat_apply_template(NULL, t, two, 2, NULL, NULL, 0, &len, NULL, 0), ELM_ERR_BUFFER_TOO_SMALL);
    cr_assert_eq(len, 24);
}

Test(chat_template, invalid_arguments) {
    char buf[64], err[256];
    size_t len;
    cr_assert_eq(elm_chat_apply_template(NULL, NULL, two, 2, NULL, buf, sizeof buf, &len, err, sizeof err), ELM_ERR_INVALID_ARG);
    cr_assert_eq(elm_chat_apply_template(NULL, "x", NULL, 2, NULL, buf, sizeof buf, &len, err, sizeof err), ELM_ERR_INVALID_ARG);
    cr_assert_eq(elm_chat_apply_template(NULL, "x", two, 2, NULL, buf, sizeof buf, NULL, err, sizeof err), ELM_ERR_INVALID_ARG);
    elm_chat_message bad[] = {{"user", NULL}};
    cr_assert_eq(elm_chat_apply_template(NULL, "x", bad, 1, NULL, buf, sizeof buf, &len, err, sizeof err), ELM_ERR_INVALID_ARG);
    elm_chat_params p = {.struct_size = 4};
    cr_assert_eq(elm_chat_apply_template(NULL, "x", two, 2, &p, buf, sizeof buf, &len, err, sizeof err), ELM_ERR_INVALID_ARG);
    cr_assert_eq(elm_chat_end_of_turn(NULL, "x", NULL, 0, &len, err, sizeof err), ELM_ERR_INVALID_ARG);
}

Test(chat_template, raise_exception_message) {
    char buf[64], err[256];
    size_t len;
    const char *t = "{% if messages[0].role != 'system' %}{{ raise_exception('Need a \"system\" first') }}{% endif %}";
    cr_assert_eq(elm_chat_apply_template(NULL, t, two, 2, NULL, buf, sizeof buf, &len, err, sizeof err), ELM_ERR_TEMPLATE);
    cr_assert_str_eq(err, "Need a \"system\" first");
    cr_assert_str_eq(elm_strerror(ELM_ERR_TEMPLATE), "chat template error");
}
