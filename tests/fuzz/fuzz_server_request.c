/*
 * fuzz_server_request.c: libFuzzer target for the request parser of
 * `edgelm serve` (tools/serve_api.c): the input is a request body; its
 * first byte's low bit picks /v1/chat/completions or /v1/completions.
 * fuzz-srcs: tools/serve_api.c
 * fuzz-libs: -ljansson
 * fuzz-options: -max_len=8192
 *
 * Checks, besides crashes, leaks and undefined behaviour: the status is 0,
 * 400 or 413; a refusal has a message and a code, and its error object is
 * valid JSON; an accepted request respects every limit, and its response
 * and stream chunks (for a made-up output) are valid JSON.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/serve.h"

#define CHECK(c)                                                                                  \
    do {                                                                                          \
        if (!(c)) {                                                                               \
            fprintf(stderr, "check failed: %s (line %d)\n", #c, __LINE__);                       \
            abort();                                                                              \
        }                                                                                         \
    } while (0)

static void check_json(char *s) {
    CHECK(s);
    json_t *j = json_loads(s, 0, NULL);
    CHECK(j);
    json_decref(j);
    free(s);
}

static void check_accepted(const serve_request *r, const serve_limits *lim) {
    CHECK(r->max_tokens <= lim->max_tokens);
    CHECK(r->temperature >= 0 && r->temperature <= 2);
    CHECK(r->top_p > 0 && r->top_p <= 1);
    CHECK(r->n_stop <= lim->max_stop && r->top_logprobs <= lim->max_top_logprobs);
    for (size_t i = 0; i < r->n_stop; i++)
        CHECK(strlen(r->stop[i]) > 0 && strlen(r->stop[i]) <= lim->max_stop_len);
    if (r->chat) {
        CHECK(r->n_msgs > 0 && r->n_msgs <= lim->max_messages);
        for (size_t i = 0; i < r->n_msgs; i++) CHECK(r->msgs[i].role && r->msgs[i].content);
    } else {
        CHECK(r->prompt && r->prompt_len > 0 && strlen(r->prompt) == r->prompt_len);
    }
    serve_output o = {.text = "made-up output", .len = 14, .n_prompt = 3, .n_gen = 2,
                      .finish_reason = "stop", .conf_n = 2, .conf_min_margin = 0.5f};
    check_json(serve_response_json(r, &o, "cmpl-1", "model", 1));
    check_json(serve_chunk_json(r, "cmpl-1", "model", 1, "tok", 3, NULL));
    check_json(serve_chunk_json(r, "cmpl-1", "model", 1, NULL, 0, &o));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    serve_limits lim;
    serve_default_limits(&lim);
    lim.max_body = 4096;
    serve_request r;
    char err[512] = "";
    const char *code = NULL;
    int st = serve_parse_request((const char *)data + 1, size - 1, data[0] & 1, &lim, &r, err,
                                 sizeof err, &code);
    CHECK(st == 0 || st == 400 || st == 413);
    if (st) {
        CHECK(err[0] && code);
        check_json(serve_error_json(st, err, code));
    } else {
        check_accepted(&r, &lim);
    }
    serve_request_free(&r);
    return 0;
}
