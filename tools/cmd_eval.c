/* cmd_eval.c: `edgelm eval`: teacher-forced logits of given ids, as JSON. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/cli.h"
#include "tools/cli_parse.h"

typedef struct eval_opts {
    const char *model, *tokens, *device;
    int32_t top, n_threads;
    bool exact, pin;
} eval_opts;

static const char ABOUT[] =
    "Feeds exactly the given token ids (nothing is added) in one batch and prints\n"
    "{\"tokens\":[...],\"positions\":[{\"pos\":0,\"top\":[[id,logit],...],\"lse\":x},...]}\n"
    "where top holds the K highest logits after each position, highest first (ties:\n"
    "lower id), and lse is the log-sum-exp over all logits. A non-finite logit is\n"
    "an error. Ids that are not numbers are a usage error (2); ids outside the\n"
    "vocabulary are an error (1).";

/* ---------------------------------------------------------------- ids */

/* Parses "ID,ID,...": non-empty runs of digits (elmi_parse_ids), reporting
 * a malformed list as a usage error. */
static int parse_ids(const cli_spec *spec, const char *text, uint64_t **out, size_t *n) {
    char bad = 0;
    switch (elmi_parse_ids(text, out, n, &bad)) {
    case ELMI_IDS_OK: return CLI_OK;
    case ELMI_IDS_NO_MEMORY: return cli_error(spec->name, "out of memory");
    case ELMI_IDS_NOT_AN_ID:
        return cli_usage_error(spec, "--tokens: expected comma-separated ids >= 0, got '%s'", text);
    case ELMI_IDS_UNEXPECTED: break;
    }
    return cli_usage_error(spec, "--tokens: unexpected '%c' in '%s'", bad, text);
}

/* --------------------------------------------------------------- top-k */

typedef struct scored {
    float v;
    int32_t id;
} scored;

static bool ahead(scored a, scored b) { return a.v > b.v || (a.v == b.v && a.id < b.id); }

static int by_rank(const void *a, const void *b) {
    return ahead(*(const scored *)a, *(const scored *)b) ? -1 : 1;
}

/* A heap whose root is the candidate every other one is ahead of. */
static void sift(scored *h, size_t n, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < n && ahead(h[m], h[l])) m = l;
        if (l + 1 < n && ahead(h[m], h[l + 1])) m = l + 1;
        if (m == i) return;
        scored t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

/* The k highest logits of the row into h, highest first, in O(n log k). */
static void top_k(const float *row, uint32_t n, scored *h, size_t k) {
    for (size_t i = 0; i < k; i++) h[i] = (scored){row[i], (int32_t)i};
    for (size_t i = k / 2; i-- > 0;) sift(h, k, i);
    for (uint32_t i = (uint32_t)k; i < n; i++) {
        scored x = {row[i], (int32_t)i};
        if (ahead(x, h[0])) {
            h[0] = x;
            sift(h, k, 0);
        }
    }
    qsort(h, k, sizeof *h, by_rank);
}

static double log_sum_exp(const float *row, uint32_t n) {
    double max = row[0], sum = 0;
    for (uint32_t i = 1; i < n; i++) max = row[i] > max ? row[i] : max;
    for (uint32_t i = 0; i < n; i++) sum += exp((double)row[i] - max);
    return max + log(sum);
}

/* ---------------------------------------------------------------- output */

/* Every row first, so that an error leaves stdout empty, never half a JSON. */
static int check_rows(const elm_context *ctx, const eval_opts *o, size_t n, uint32_t n_vocab) {
    for (size_t i = 0; i < n; i++) {
        const float *row = elm_get_logits(ctx, (int32_t)i);
        if (!row) return cli_error(o->model, "no logits for position %zu", i);
        for (uint32_t t = 0; t < n_vocab; t++)
            if (!isfinite(row[t]))
                return cli_error(o->model, "non-finite logit (%g) for token %u at position %zu",
                                 row[t], t, i);
    }
    return CLI_OK;
}

static void print_json(const elm_context *ctx, const elm_token *ids, size_t n, uint32_t n_vocab,
                       scored *top, size_t k) {
    printf("{\"tokens\":[");
    for (size_t i = 0; i < n; i++) printf("%s%d", i ? "," : "", ids[i]);
    printf("],\n\"positions\":[\n");
    for (size_t i = 0; i < n; i++) {
        const float *row = elm_get_logits(ctx, (int32_t)i);
        top_k(row, n_vocab, top, k);
        printf("{\"pos\":%zu,\"top\":[", i);
        for (size_t j = 0; j < k; j++) printf("%s[%d,%.9g]", j ? "," : "", top[j].id, top[j].v);
        printf("],\"lse\":%.9g}%s\n", log_sum_exp(row, n_vocab), i + 1 < n ? "," : "");
    }
    printf("]}\n");
}

static int evaluate(const elm_model *m, const eval_opts *o, const elm_token *ids, size_t n,
                    uint32_t n_vocab) {
    elm_context_params cp;
    elm_context_default_params(&cp);
    cp.n_ctx = cp.n_batch = (uint32_t)n;
    cp.n_threads = o->n_threads;
    cp.pin_threads = o->pin;
    cp.logits_all = true;
    cp.mode = o->exact ? ELM_MODE_EXACT : ELM_MODE_FAST;
    elm_context *ctx = cli_new_context(m, o->model, &cp);
    if (!ctx) return CLI_ERROR;
    int rc = CLI_OK;
    elm_status st = elm_decode(ctx, ids, n);
    if (st != ELM_OK) rc = cli_lib_error(o->model, st, elm_context_last_error(ctx));
    if (rc == CLI_OK) rc = check_rows(ctx, o, n, n_vocab);
    size_t k = (uint32_t)o->top < n_vocab ? (size_t)o->top : n_vocab;
    scored *top = rc == CLI_OK ? malloc(k * sizeof *top) : NULL;
    if (rc == CLI_OK && !top) rc = cli_error(o->model, "out of memory");
    if (rc == CLI_OK) {
        print_json(ctx, ids, n, n_vocab, top, k);
        if (fflush(stdout) != 0 || ferror(stdout)) rc = cli_error("stdout", "write error");
    }
    free(top);
    elm_context_free(ctx);
    return rc;
}

/* Ids outside the vocabulary are an error (1), found before any context is
 * made. */
static int check_range(const eval_opts *o, uint32_t n_vocab, const uint64_t *raw, elm_token *ids,
                       size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (raw[i] == UINT64_MAX)
            return cli_error(o->model, "token id at index %zu is out of range [0, %u)", i, n_vocab);
        if (raw[i] >= n_vocab)
            return cli_error(o->model, "token id %llu at index %zu is out of range [0, %u)",
                             (unsigned long long)raw[i], i, n_vocab);
        ids[i] = (elm_token)raw[i];
    }
    return CLI_OK;
}

int cmd_eval(int argc, char **argv) {
    eval_opts o = {.top = 20};
    const cli_opt opts[] = {
        CLI_REQ("-m", "--model", CLI_STR, &o.model, "FILE", "GGUF model file"),
        CLI_REQ(NULL, "--tokens", CLI_STR, &o.tokens, "ID,ID,...", "the token ids to feed"),
        CLI_NUM(NULL, "--top", CLI_INT, &o.top, "K", "logits listed per position", 1, INT32_MAX),
        CLI_OPT(NULL, "--exact", CLI_FLAG, &o.exact, NULL, "the exact (reference) arithmetic path"),
        CLI_OPT(NULL, "--pin", CLI_FLAG, &o.pin, NULL, "pin CPU worker threads to cores"),
        CLI_OPT(NULL, "--device", CLI_STR, &o.device, "DEV", "cpu, auto, best, vulkan or vulkan:N"),
        CLI_NUM("-t", "--threads", CLI_INT, &o.n_threads, "N", "CPU threads (0: physical cores)", 0,
                4096),
        {0},
    };
    const cli_spec spec = {"eval", "-m FILE --tokens ID,ID,... [options]", ABOUT, opts};
    int rc;
    if (!cli_parse(&spec, argc, argv, &rc)) return rc;
    uint64_t *raw = NULL;
    size_t n = 0;
    if ((rc = parse_ids(&spec, o.tokens, &raw, &n)) != CLI_OK) return rc;

    elm_token *ids = malloc(n * sizeof *ids);
    elm_model *m = ids ? cli_load_model(o.model, o.device, false) : NULL;
    elm_model_info info = ELM_INIT(elm_model_info);
    elm_status st = m ? elm_model_get_info(m, &info) : ELM_OK;
    if (!ids)
        rc = cli_error(o.model, "out of memory");
    else if (!m)
        rc = CLI_ERROR;
    else if (st != ELM_OK)
        rc = cli_lib_error(o.model, st, NULL);
    else if ((rc = check_range(&o, info.n_vocab, raw, ids, n)) == CLI_OK)
        rc = evaluate(m, &o, ids, n, info.n_vocab);
    elm_model_free(m);
    free(ids);
    free(raw);
    return rc;
}
