/* generate.c: prompt evaluation, sampling and streaming of generated text. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/abi.h"
#include "common/alloc.h"
#include "common/status.h"
#include "engine/internal.h"
#include "engine/utf8.h"

/* Log-probability of `tok`, the top logit and the top-1 minus top-2 margin. */
static void token_confidence(const float *logits, uint32_t n_vocab, elm_token tok,
                             elm_token_info *info) {
    float top1 = -INFINITY, top2 = -INFINITY;
    for (uint32_t i = 0; i < n_vocab; i++) {
        float v = logits[i];
        if (v > top1) {
            top2 = top1;
            top1 = v;
        } else if (v > top2) {
            top2 = v;
        }
    }
    double sum = 0.0;
    for (uint32_t i = 0; i < n_vocab; i++) sum += exp((double)logits[i] - top1);
    double lse = top1 + log(sum);
    info->logprob = (float)(logits[tok] - lse);
    info->top1_logit = top1;
    info->margin = n_vocab > 1 ? top1 - top2 : 0.0f;
}

typedef struct gen_state {
    elm_context *ctx;
    const elm_generate_params *p;
    bool greedy;        /* argmax without penalty: the device's summary suffices */
    elm_sampler *sampler;
    utf8_stream utf8;
    elm_stats st;
    double t_start, t_first;
} gen_state;

/* The caller's prompt ids (params->prompt_tokens), copied. */
static elm_status copy_prompt_tokens(gen_state *g, elm_token **out, size_t *n) {
    *n = g->p->n_prompt_tokens;
    *out = elmi_malloc((*n ? *n : 1) * sizeof(elm_token));
    if (!*out) return elmi_ctx_error(g->ctx, ELM_ERR_NO_MEMORY, "out of memory");
    if (*n) memcpy(*out, g->p->prompt_tokens, *n * sizeof(elm_token));
    return ELM_OK;
}

static elm_status tokenize_prompt(gen_state *g, const char *prompt, size_t len, elm_token **out,
                                  size_t *n) {
    elm_context *ctx = g->ctx;
    if (g->p->prompt_tokens) {
        ELM_TRY(copy_prompt_tokens(g, out, n));
    } else {
        size_t cap = len + 8;
        *out = elmi_malloc(cap * sizeof(elm_token));
        if (!*out) return elmi_ctx_error(ctx, ELM_ERR_NO_MEMORY, "out of memory");
        elm_status st = elm_tokenize(ctx->model, prompt, len, g->p->add_bos, g->p->parse_special,
                                     *out, cap, n);
        if (st != ELM_OK)
            return elmi_ctx_error(ctx, st, "cannot tokenize the prompt: %s", elm_strerror(st));
    }
    if (*n == 0) return elmi_ctx_error(ctx, ELM_ERR_INVALID_ARG, "the prompt has no tokens");
    uint32_t room = ctx->params.n_ctx - ctx->n_past;
    if (*n > room)
        return elmi_ctx_error(ctx, ELM_ERR_CONTEXT_FULL,
                         "the prompt has %zu tokens but the context has room for %u (n_ctx %u)",
                         *n, room, ctx->params.n_ctx);
    return ELM_OK;
}

/* Tokenizes and evaluates the prompt; *toks is the caller's to free. */
static elm_status prefill(gen_state *g, const char *prompt, size_t len, elm_token **toks) {
    elm_context *ctx = g->ctx;
    size_t n = 0;
    ELM_TRY(tokenize_prompt(g, prompt, len, toks, &n));
    elm_status st = elmi_sampler_new(g->p->sampler, ctx->model->hp.n_vocab, &g->sampler);
    if (st != ELM_OK) return elmi_ctx_error(ctx, st, "cannot create the sampler");
    for (size_t i = 0; i < n; i++) elmi_sampler_accept(g->sampler, (*toks)[i]);
    double t0 = elmi_now_ms();
    st = elmi_context_decode(ctx, *toks, n, g->greedy ? ELM_OUT_SUMMARY : ELM_OUT_LAST);
    g->st.prompt_ms = elmi_now_ms() - t0;
    g->st.n_prompt = (uint32_t)n;
    return st;
}

/* Samples, reports and (unless it is the last) evaluates one token. Returns
 * ELM_OK and sets *done when generation ends. */
/* The next token and what the callback learns of it. */
static elm_status pick(gen_state *g, elm_token_info *info) {
    elm_context *ctx = g->ctx;
    if (g->greedy) {
        if (!ctx->summary_valid) return elmi_ctx_error(ctx, ELM_ERR_INTERNAL, "no logits to sample from");
        const float *s = ctx->summary;
        info->token = (elm_token)s[0];
        info->top1_logit = s[1];
        info->margin = ctx->model->hp.n_vocab > 1 ? s[1] - s[2] : 0.0f;
        info->logprob = s[1] - s[3];
        return ELM_OK;
    }
    const float *logits = elm_get_logits(ctx, -1);
    if (!logits) return elmi_ctx_error(ctx, ELM_ERR_INTERNAL, "no logits to sample from");
    info->token = elmi_sampler_sample(g->sampler, logits);
    if (info->token < 0)
        return elmi_ctx_error(ctx, ELM_ERR_NUMERIC, "the logits hold no finite value to sample");
    token_confidence(logits, ctx->model->hp.n_vocab, info->token, info);
    return ELM_OK;
}

static elm_status step(gen_state *g, uint32_t index, bool *done) {
    elm_context *ctx = g->ctx;
    const elm_model *m = ctx->model;
    elm_token_info info = {.struct_size = sizeof info, .index = index};
    elm_status pst = pick(g, &info);
    if (pst != ELM_OK) return pst;
    elm_token tok = info.token;
    if (index == 0) g->t_first = elmi_now_ms();
    g->st.n_gen++;

    bool eog = !g->p->ignore_eos && elm_token_is_eog(m, tok);
    bool last_n = g->p->n_predict >= 0 && index + 1 >= (uint32_t)g->p->n_predict;
    bool full = ctx->n_past >= ctx->params.n_ctx;
    char piece[256];
    size_t plen = 0;
    elm_status st = elm_token_to_piece(m, tok, piece, sizeof piece, &plen);
    if (st != ELM_OK) plen = 0; /* a piece longer than 256 bytes is not text we can stream */
    if (!elmi_utf8_push(&g->utf8, piece, plen, eog || last_n || full, &info.text, &info.text_len))
        return elmi_ctx_error(ctx, ELM_ERR_NO_MEMORY, "out of memory");

    *done = true;
    if (g->p->callback && !g->p->callback(&info, g->p->user_data)) g->st.stop = ELM_STOP_CALLBACK;
    else if (eog) g->st.stop = ELM_STOP_EOG;
    else if (last_n) g->st.stop = ELM_STOP_N_PREDICT;
    else if (full) g->st.stop = ELM_STOP_CONTEXT_FULL;
    else *done = false;
    if (*done) return ELM_OK;
    elmi_sampler_accept(g->sampler, tok);
    return elmi_context_decode(ctx, &tok, 1, g->greedy ? ELM_OUT_SUMMARY : ELM_OUT_LAST);
}

static void finish_stats(gen_state *g, elm_stats *out) {
    double now = elmi_now_ms();
    elm_stats *st = &g->st;
    st->load_ms = g->ctx->model->load_ms;
    if (st->n_gen > 0) {
        st->ttft_ms = g->t_first - g->t_start;
        st->gen_ms = now - g->t_first;
    }
    st->prompt_tps = st->prompt_ms > 0 ? st->n_prompt / (st->prompt_ms / 1e3) : 0;
    st->gen_tps = st->n_gen > 1 && st->gen_ms > 0 ? (st->n_gen - 1) / (st->gen_ms / 1e3) : 0;
    st->peak_rss_bytes = elm_peak_rss();
    snprintf(st->device, sizeof st->device, "%s", g->ctx->device_id);
    elmi_device_backend_stats(g->ctx, st);
    if (out) elmi_struct_out(out, st, sizeof *st, ELMI_MIN_STATS);
}

elm_status elm_generate(elm_context *ctx, const char *prompt, size_t len,
                        const elm_generate_params *params, elm_stats *stats) {
    if (!ctx) return ELM_ERR_INVALID_ARG;
    ctx->last_error[0] = 0;
    if (stats && stats->struct_size < ELMI_MIN_STATS)
        return elmi_ctx_error(ctx, ELM_ERR_INVALID_ARG,
                         "elm_stats.struct_size is %zu: declare it with ELM_INIT(elm_stats)",
                         stats->struct_size);
    elm_generate_params p = elmi_generate_defaults;
    if (params && !elmi_struct_in(&p, sizeof p, params, ELMI_MIN_GENERATE_PARAMS))
        return elmi_ctx_error(ctx, ELM_ERR_INVALID_ARG,
                         "elm_generate_params.struct_size is %zu: initialize the struct with "
                         "elm_generate_default_params", params->struct_size);
    elm_sampler_params sp = elmi_sampler_defaults;
    if (p.sampler && !elmi_struct_in(&sp, sizeof sp, p.sampler, ELMI_MIN_SAMPLER_PARAMS))
        return elmi_ctx_error(ctx, ELM_ERR_INVALID_ARG,
                         "elm_sampler_params.struct_size is %zu: initialize the struct with "
                         "elm_sampler_default_params", p.sampler->struct_size);
    p.sampler = &sp;
    if (!p.prompt_tokens && !prompt && len) return elmi_ctx_error(ctx, ELM_ERR_INVALID_ARG, "prompt is NULL");
    gen_state g = {.ctx = ctx, .p = &p, .t_start = elmi_now_ms()};
    g.st.struct_size = sizeof g.st;
    const uint32_t n_past0 = ctx->n_past;
    /* Greedy without a penalty needs only the argmax summary, which the
     * device computes, instead of every logit. Ties go to the lower id either way. */
    g.greedy = sp.temperature <= 0.0f && (sp.repeat_penalty == 1.0f || sp.repeat_last_n == 0);
    elm_token *toks = NULL;
    elm_status st = prefill(&g, prompt ? prompt : "", len, &toks);
    elmi_utf8_init(&g.utf8);
    bool done = p.n_predict == 0;
    if (done) g.st.stop = ELM_STOP_N_PREDICT;
    for (uint32_t i = 0; st == ELM_OK && !done; i++) st = step(&g, i, &done);
    if (st != ELM_OK) {
        /* As with elm_decode, the tokens of a failed call are forgotten. */
        ctx->n_past = n_past0;
        ctx->n_logits_valid = 0;
        ctx->summary_valid = false;
    }
    finish_stats(&g, stats);
    elmi_utf8_free(&g.utf8);
    elmi_sampler_free(g.sampler);
    elmi_free(toks);
    return st;
}

/* The summary starts empty (ELM_INIT zeroes it): min_margin counts as +inf
 * until the first token, and a zero threshold means 1.0. */
elm_status elm_confidence_add(elm_confidence *c, const elm_token_info *info) {
    if (!c || !info || c->struct_size < ELMI_MIN_CONFIDENCE ||
        info->struct_size < ELMI_MIN_TOKEN_INFO_MARGIN || isnan(info->logprob) ||
        isnan(info->margin))
        return ELM_ERR_INVALID_ARG;
    elm_confidence s = {0};
    elmi_struct_in(&s, sizeof s, c, ELMI_MIN_CONFIDENCE);
    const float threshold = s.margin_threshold == 0.0f ? 1.0f : s.margin_threshold;
    if (s.n_tokens == 0 || info->margin < s.min_margin) s.min_margin = info->margin;
    s.n_tokens++;
    s.sum_logprob += info->logprob;
    if (info->margin < threshold) s.n_below++;
    s.mean_logprob = s.sum_logprob / s.n_tokens;
    s.frac_below = (float)((double)s.n_below / s.n_tokens);
    elmi_struct_out(c, &s, sizeof s, ELMI_MIN_CONFIDENCE);
    return ELM_OK;
}
