#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "common/abi.h"
#include "engine/internal.h"

const char *elm_strerror(elm_status st) {
    switch (st) {
    case ELM_OK: return "success";
    case ELM_ERR_INVALID_ARG: return "invalid argument";
    case ELM_ERR_IO: return "input/output error";
    case ELM_ERR_FORMAT: return "malformed file";
    case ELM_ERR_UNSUPPORTED: return "unsupported";
    case ELM_ERR_NO_MEMORY: return "out of memory";
    case ELM_ERR_CONTEXT_FULL: return "context full";
    case ELM_ERR_BUFFER_TOO_SMALL: return "buffer too small";
    case ELM_ERR_DEVICE: return "device error";
    case ELM_ERR_NUMERIC: return "non-finite value";
    case ELM_ERR_INTERNAL: return "internal error";
    case ELM_ERR_TEMPLATE: return "chat template error";
    case ELM_ERR_SIGNATURE: return "model signature missing or invalid";
    case ELM_ERR_STATE_MISMATCH: return "saved state does not match this model, mode or context size";
    }
    return "unknown status";
}

const char *elm_version(void) {
#define ELM_STR2(x) #x
#define ELM_STR(x) ELM_STR2(x)
    return ELM_STR(ELM_VERSION_MAJOR) "." ELM_STR(ELM_VERSION_MINOR) "." ELM_STR(ELM_VERSION_PATCH);
}

double elmi_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

uint64_t elm_peak_rss(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (f) {
        char line[256];
        unsigned long long kb = 0;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "VmHWM: %llu kB", &kb) == 1) break;
        fclose(f);
        if (kb) return kb * 1024ull;
    }
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) return (uint64_t)ru.ru_maxrss * 1024ull;
    return 0;
}

elm_status elm_tokenize(const elm_model *m, const char *text, size_t len, bool add_bos,
                        bool parse_special, elm_token *tokens, size_t cap, size_t *n_tokens) {
    if (!m || (!text && len) || !n_tokens || (!tokens && cap)) return ELM_ERR_INVALID_ARG;
    return elmi_vocab_tokenize(m->vocab, text ? text : "", len, add_bos, parse_special, tokens, cap,
                          n_tokens);
}

elm_status elm_token_to_piece(const elm_model *m, elm_token token, char *buf, size_t cap,
                              size_t *len) {
    if (!m || !len || (!buf && cap)) return ELM_ERR_INVALID_ARG;
    return elmi_vocab_token_to_piece(m->vocab, token, buf, cap, len);
}

elm_status elm_detokenize(const elm_model *m, const elm_token *tokens, size_t n, char *buf,
                          size_t cap, size_t *len) {
    if (!m || !len || (!tokens && n) || (!buf && cap)) return ELM_ERR_INVALID_ARG;
    return elmi_vocab_detokenize(m->vocab, tokens, n, buf, cap, len);
}

bool elm_token_is_eog(const elm_model *m, elm_token token) {
    return m && elmi_vocab_is_eog(m->vocab, token);
}

const elm_sampler_params elmi_sampler_defaults = {
    .struct_size = sizeof(elm_sampler_params), .temperature = 0.8f, .top_k = 40, .top_p = 0.95f,
    .min_p = 0.05f, .repeat_penalty = 1.0f, .repeat_last_n = 64, .seed = 0x5eed};

const elm_generate_params elmi_generate_defaults = {
    .struct_size = sizeof(elm_generate_params), .n_predict = 128, .add_bos = true,
    .parse_special = true, .ignore_eos = false, .sampler = NULL};

const elm_context_params elmi_context_defaults = {
    .struct_size = sizeof(elm_context_params), .n_ctx = 0, .n_batch = 0, .n_threads = 0,
    .mode = ELM_MODE_FAST, .logits_all = false, .pin_threads = false};

void elm_sampler_params_init(elm_sampler_params *p, size_t struct_size) {
    elmi_struct_init(p, struct_size, &elmi_sampler_defaults, sizeof elmi_sampler_defaults);
}

void elm_generate_params_init(elm_generate_params *p, size_t struct_size) {
    elmi_struct_init(p, struct_size, &elmi_generate_defaults, sizeof elmi_generate_defaults);
}

void elm_context_params_init(elm_context_params *p, size_t struct_size) {
    elmi_struct_init(p, struct_size, &elmi_context_defaults, sizeof elmi_context_defaults);
}
