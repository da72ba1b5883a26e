/* serve_api.c: request parsing and the JSON of responses (tools/serve.h).
 * Pure: no model and no network, so that the fuzz target can drive it. */
#define _POSIX_C_SOURCE 200809L
#include "tools/serve.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void serve_default_limits(serve_limits *l) {
    *l = (serve_limits){.max_body = 1u << 20,
                        .max_tokens = 512,
                        .max_messages = 1024,
                        .max_stop = 4,
                        .max_stop_len = 256,
                        .max_top_logprobs = 20};
}

void serve_request_free(serve_request *r) {
    if (!r) return;
    free(r->msgs);
    free(r->stop);
    json_decref(r->root);
    memset(r, 0, sizeof *r);
}

/* Records a 400 with its message; returns 400. */
static int bad(char *err, size_t n, const char **code, const char *c, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int bad(char *err, size_t n, const char **code, const char *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
    *code = c;
    return 400;
}

static const char *const ROLES[] = {"system", "user", "assistant", "developer", "tool"};

static const char *known_role(const char *r) {
    for (size_t i = 0; i < sizeof ROLES / sizeof *ROLES; i++)
        if (strcmp(r, ROLES[i]) == 0) return ROLES[i];
    return NULL;
}

/* A string with no NUL byte inside (Jansson allows "\u0000"). */
static bool clean_string(const json_t *v) {
    return json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v);
}

static int parse_messages(json_t *root, const serve_limits *lim, serve_request *r, char *err,
                          size_t n, const char **code) {
    json_t *msgs = json_object_get(root, "messages");
    if (!json_is_array(msgs)) return bad(err, n, code, "invalid_type", "'messages' must be an array");
    size_t count = json_array_size(msgs);
    if (count == 0) return bad(err, n, code, "invalid_value", "'messages' is empty");
    if (count > lim->max_messages)
        return bad(err, n, code, "invalid_value", "'messages' has %zu entries; at most %u",
                   count, lim->max_messages);
    r->msgs = calloc(count, sizeof *r->msgs);
    if (!r->msgs) return bad(err, n, code, "server_error", "out of memory");
    for (size_t i = 0; i < count; i++) {
        json_t *m = json_array_get(msgs, i);
        if (!json_is_object(m))
            return bad(err, n, code, "invalid_type", "messages[%zu] must be an object", i);
        json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        if (!clean_string(role))
            return bad(err, n, code, "invalid_type", "messages[%zu].role must be a string", i);
        const char *known = known_role(json_string_value(role));
        if (!known)
            return bad(err, n, code, "invalid_value",
                       "messages[%zu].role: unknown role (system, user, assistant, developer, tool)", i);
        if (json_is_null(content) && strcmp(known, "assistant") == 0) content = NULL;
        else if (!clean_string(content))
            return bad(err, n, code, "invalid_type",
                       "messages[%zu].content must be a string without NUL bytes", i);
        r->msgs[i] = (elm_chat_message){known, content ? json_string_value(content) : ""};
    }
    r->n_msgs = count;
    return 0;
}

static int parse_prompt(json_t *root, serve_request *r, char *err, size_t n, const char **code) {
    json_t *p = json_object_get(root, "prompt");
    if (json_is_array(p) && json_array_size(p) == 1) p = json_array_get(p, 0);
    if (!clean_string(p))
        return bad(err, n, code, "invalid_type", "'prompt' must be a string without NUL bytes");
    r->prompt = json_string_value(p);
    r->prompt_len = json_string_length(p);
    if (r->prompt_len == 0) return bad(err, n, code, "invalid_value", "'prompt' is empty");
    return 0;
}

/* An optional number in [lo, hi]; *out unchanged when absent or null. */
static int get_number(json_t *root, const char *key, double lo, double hi, double *out, char *err,
                      size_t n, const char **code) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return bad(err, n, code, "invalid_type", "'%s' must be a number", key);
    double d = json_number_value(v);
    if (!isfinite(d) || d < lo || d > hi)
        return bad(err, n, code, "invalid_value", "'%s' must be between %g and %g", key, lo, hi);
    *out = d;
    return 0;
}

static int get_integer(json_t *root, const char *key, double lo, double hi, double *out,
                       char *err, size_t n, const char **code) {
    json_t *v = json_object_get(root, key);
    if (v && !json_is_null(v) && !json_is_integer(v))
        return bad(err, n, code, "invalid_type", "'%s' must be an integer", key);
    return get_number(root, key, lo, hi, out, err, n, code);
}

static int get_bool(json_t *root, const char *key, bool *out, char *err, size_t n,
                    const char **code) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return bad(err, n, code, "invalid_type", "'%s' must be a boolean", key);
    *out = json_is_true(v);
    return 0;
}

static int parse_stop(json_t *root, const serve_limits *lim, serve_request *r, char *err,
                      size_t n, const char **code) {
    json_t *v = json_object_get(root, "stop");
    if (!v || json_is_null(v)) return 0;
    size_t count = json_is_array(v) ? json_array_size(v) : 1;
    if (!json_is_array(v) && !json_is_string(v))
        return bad(err, n, code, "invalid_type", "'stop' must be a string or an array of strings");
    if (count > lim->max_stop)
        return bad(err, n, code, "invalid_value", "'stop' has %zu strings; at most %u", count,
                   lim->max_stop);
    r->stop = calloc(count ? count : 1, sizeof *r->stop);
    if (!r->stop) return bad(err, n, code, "server_error", "out of memory");
    for (size_t i = 0; i < count; i++) {
        json_t *s = json_is_array(v) ? json_array_get(v, i) : v;
        if (!clean_string(s))
            return bad(err, n, code, "invalid_type", "'stop' must hold strings without NUL bytes");
        size_t len = json_string_length(s);
        if (len == 0 || len > lim->max_stop_len)
            return bad(err, n, code, "invalid_value", "a stop string must have 1 to %u bytes",
                       lim->max_stop_len);
        r->stop[r->n_stop++] = json_string_value(s);
    }
    return 0;
}

/* logprobs: a boolean for chat (with top_logprobs beside it), an integer
 * (the number of alternatives) for completions. */
static int parse_logprobs(json_t *root, const serve_limits *lim, serve_request *r, char *err,
                          size_t n, const char **code) {
    double top = 0;
    int st;
    if (r->chat) {
        if ((st = get_bool(root, "logprobs", &r->logprobs, err, n, code))) return st;
        if ((st = get_integer(root, "top_logprobs", 0, lim->max_top_logprobs, &top, err, n, code)))
            return st;
        if (top > 0 && !r->logprobs)
            return bad(err, n, code, "invalid_value", "'top_logprobs' needs 'logprobs': true");
    } else {
        top = -1;
        if ((st = get_integer(root, "logprobs", 0, lim->max_top_logprobs, &top, err, n, code)))
            return st;
        r->logprobs = top >= 0;
        if (top < 0) top = 0;
    }
    r->top_logprobs = (uint32_t)top;
    return 0;
}

static int parse_sampling(json_t *root, const serve_limits *lim, serve_request *r, char *err,
                          size_t n, const char **code) {
    double max_tokens = lim->max_tokens, temp = 1, top_p = 1, seed = 0, count = 1;
    int st;
    const char *mt = json_object_get(root, "max_completion_tokens") ? "max_completion_tokens"
                                                                    : "max_tokens";
    if ((st = get_integer(root, mt, 0, lim->max_tokens, &max_tokens, err, n, code))) return st;
    if ((st = get_number(root, "temperature", 0, 2, &temp, err, n, code))) return st;
    if ((st = get_number(root, "top_p", 0, 1, &top_p, err, n, code))) return st;
    if ((st = get_integer(root, "seed", -9007199254740991.0, 9007199254740991.0, &seed, err, n,
                          code)))
        return st;
    if ((st = get_integer(root, "n", 1, 1, &count, err, n, code))) return st;
    if ((st = get_bool(root, "stream", &r->stream, err, n, code))) return st;
    r->max_tokens = (uint32_t)max_tokens;
    r->temperature = (float)temp;
    r->top_p = top_p > 0 ? (float)top_p : 1e-6f;
    r->seed = (uint64_t)(int64_t)seed;
    return 0;
}

int serve_parse_request(const char *body, size_t len, bool chat, const serve_limits *lim,
                        serve_request *out, char *err, size_t err_size, const char **code) {
    memset(out, 0, sizeof *out);
    out->chat = chat;
    *code = "invalid_request_error";
    if (len > lim->max_body) {
        snprintf(err, err_size, "the request body is larger than %zu bytes", lim->max_body);
        *code = "request_too_large";
        return 413;
    }
    json_error_t je;
    out->root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!out->root)
        return bad(err, err_size, code, "invalid_json", "malformed JSON at line %d, column %d: %s",
                   je.line, je.column, je.text);
    if (!json_is_object(out->root))
        return bad(err, err_size, code, "invalid_type", "the request body must be a JSON object");
    json_t *model = json_object_get(out->root, "model");
    if (model && !json_is_null(model) && !json_is_string(model))
        return bad(err, err_size, code, "invalid_type", "'model' must be a string");
    int st = chat ? parse_messages(out->root, lim, out, err, err_size, code)
                  : parse_prompt(out->root, out, err, err_size, code);
    if (!st) st = parse_sampling(out->root, lim, out, err, err_size, code);
    if (!st) st = parse_stop(out->root, lim, out, err, err_size, code);
    if (!st) st = parse_logprobs(out->root, lim, out, err, err_size, code);
    return st;
}

/* ----------------------------------------------------------- responses */

static const char *error_type(int status) {
    switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 429:
    case 503: return "server_busy";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

char *serve_error_json(int http_status, const char *message, const char *code) {
    json_t *e = json_pack("{s:{s:s,s:s,s:s}}", "error", "message", message, "type",
                          error_type(http_status), "code", code ? code : error_type(http_status));
    char *s = e ? json_dumps(e, JSON_COMPACT) : NULL;
    json_decref(e);
    return s;
}

json_t *serve_output_extension(const serve_output *o) {
    json_t *conf = json_pack("{s:i,s:f,s:f,s:f,s:f}", "n_tokens", (json_int_t)o->conf_n,
                             "mean_logprob", o->conf_mean_logprob, "min_margin",
                             isfinite(o->conf_min_margin) ? (double)o->conf_min_margin : 1e30,
                             "frac_below", (double)o->conf_frac_below, "margin_threshold", 1.0);
    json_t *ext = json_pack("{s:o,s:s,s:i,s:f,s:f}", "confidence", conf, "answered_by",
                            o->answered_by ? o->answered_by : "local", "prompt_tokens_reused",
                            (json_int_t)o->n_reused, "ttft_ms", o->ttft_ms, "total_ms",
                            o->total_ms);
    if (ext && o->escalation) json_object_set_new(ext, "escalation", json_string(o->escalation));
    return ext;
}

static json_t *usage(const serve_output *o) {
    return json_pack("{s:i,s:i,s:i}", "prompt_tokens", (json_int_t)o->n_prompt,
                     "completion_tokens", (json_int_t)o->n_gen, "total_tokens",
                     (json_int_t)(o->n_prompt + o->n_gen));
}

static char *dump_and_free(json_t *j) {
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return s;
}

char *serve_response_json(const serve_request *r, const serve_output *o, const char *id,
                          const char *model_name, long created) {
    json_t *choice;
    json_t *lp = o->logprobs ? json_incref(o->logprobs) : json_null();
    if (r->chat)
        choice = json_pack("{s:i,s:{s:s,s:s%},s:o,s:s}", "index", 0, "message", "role",
                           "assistant", "content", o->text, o->len, "logprobs", lp,
                           "finish_reason", o->finish_reason);
    else
        choice = json_pack("{s:i,s:s%,s:o,s:s}", "index", 0, "text", o->text, o->len,
                           "logprobs", lp, "finish_reason", o->finish_reason);
    json_t *resp = json_pack("{s:s,s:s,s:i,s:s,s:[o],s:o,s:o}", "id", id, "object",
                             r->chat ? "chat.completion" : "text_completion", "created",
                             (json_int_t)created, "model", model_name, "choices", choice,
                             "usage", usage(o), "edgelm", serve_output_extension(o));
    return dump_and_free(resp);
}

char *serve_chunk_json(const serve_request *r, const char *id, const char *model_name,
                       long created, const char *text, size_t len, const serve_output *final) {
    json_t *choice;
    if (r->chat) {
        json_t *delta = text ? json_pack("{s:s%}", "content", text, len) : json_object();
        choice = json_pack("{s:i,s:o,s:o}", "index", 0, "delta", delta, "finish_reason",
                           final ? json_string(final->finish_reason) : json_null());
    } else {
        choice = json_pack("{s:i,s:s%,s:o}", "index", 0, "text", text ? text : "",
                           text ? len : 0, "finish_reason",
                           final ? json_string(final->finish_reason) : json_null());
    }
    if (choice && final && final->logprobs)
        json_object_set(choice, "logprobs", final->logprobs);
    json_t *resp = json_pack("{s:s,s:s,s:i,s:s,s:[o]}", "id", id, "object",
                             r->chat ? "chat.completion.chunk" : "text_completion", "created",
                             (json_int_t)created, "model", model_name, "choices", choice);
    if (resp && final) {
        json_object_set_new(resp, "usage", usage(final));
        json_object_set_new(resp, "edgelm", serve_output_extension(final));
    }
    return dump_and_free(resp);
}
