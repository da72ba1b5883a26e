/*
 * fuzz_template.c: libFuzzer target for the chat-template interpreter
 * (engine/jinja*.c): the input is a template, rendered for a fixed
 * conversation (unicode, quotes, braces). Seeds: the chat templates of
 * ../shared/chat/templates (scripts/fuzz.sh copies them).
 * fuzz-srcs: engine/jinja_builtins.c engine/jinja_eval.c engine/jinja_exec.c engine/jinja_format.c engine/jinja_lex.c engine/jinja_methods.c engine/jinja_parse.c engine/jinja_stmt.c engine/jinja_value.c common/alloc.c common/status.c
 * fuzz-options: -max_len=32768
 *
 * Checks, besides crashes, leaks and undefined behaviour: the status is
 * ELM_OK or ELM_ERR_TEMPLATE (never another), a failure has a message, the
 * output is NUL-terminated at its length, nothing stays allocated, and the
 * same input renders the same way twice.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "engine/jinja.h"

#define CHECK(c)                                                                                  \
    do {                                                                                          \
        if (!(c)) {                                                                               \
            fprintf(stderr, "check failed: %s (line %d)\n", #c, __LINE__);                       \
            abort();                                                                              \
        }                                                                                         \
    } while (0)


static const elm_chat_message conv[] = {
    {"system", "You are {{ helpful }} {% if %}"},
    {"user", "Grüße 👋 \"hi\" 'bye' \\ \n\t"},
    {"assistant", "  <think>x</think> answer  "},
    {"user", ""},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    elmi_jinja_input in = {
        .src = (const char *)data, .src_len = size, .msgs = conv, .n_msgs = 4,
        .add_generation_prompt = size & 1, .bos_token = "<s>", .eos_token = "</s>", .now = 1768435200};
    char *out = NULL, *out2 = NULL, err[512] = "", err2[512] = "";
    size_t len = 0, len2 = 0;
    elm_status st = elmi_jinja_render(&in, &out, &len, err, sizeof err);
    CHECK(st == ELM_OK || st == ELM_ERR_TEMPLATE);
    if (st == ELM_OK) {
        CHECK(out && out[len] == 0);
    } else {
        CHECK(!out && err[0]);
    }
    elm_status st2 = elmi_jinja_render(&in, &out2, &len2, err2, sizeof err2);
    CHECK(st2 == st && len2 == len && strcmp(err, err2) == 0);
    if (st == ELM_OK) CHECK(memcmp(out, out2, len) == 0);
    elmi_free(out);
    elmi_free(out2);
    CHECK(elm_allocations_live() == 0);
    return 0;
}
