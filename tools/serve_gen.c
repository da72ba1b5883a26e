/* serve_gen.c: one generation on one slot (tools/serve.h).
 *
 * The confidence summary is computed here from elm_token_info (mean
 * log-probability of the chosen tokens, smallest top-1 margin, fraction of
 * tokens whose margin is below 1.0), the same three figures elm_confidence
 * defines: this branch's library does not implement elm_confidence_add yet.
 * top_logprobs come from the logits of the step (elm_get_logits) where the
 * context keeps them; where it does not, only the chosen token is listed. */
#define _POSIX_C_SOURCE 200809L
#include "tools/serve.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define MARGIN_THRESHOLD 1.0f

typedef struct gen_run {
    serve_state *s;
    serve_live *live; /* the job's generation */
    const serve_request *r;
    elm_context *ctx;
    int fd;
    atomic_bool *cancelled;
    serve_emit_fn emit;
    void *user;
    char *text;
    size_t len, cap, emitted, max_stop;
    bool hit_stop, hit_eot, cancel, failed;
    double t0, deadline, t_first;
    json_t *lp; /* chat: the content array; completions: the logprobs object */
    uint32_t n_conf, n_below;
    double sum_lp;
    float min_margin;
    const char *extra_stop; /* "<|im_end|>" under the ChatML fallback */
} gen_run;

/* --------------------------------------------------------------- prompt */

/* The prompt's ids (malloc'd). A template that writes bos_token itself on a
 * vocabulary that adds BOS would give two: one is dropped. */
static int prompt_tokens(serve_state *srv, serve_live *s, const serve_request *r, elm_token **ids,
                         size_t *n, char *err, size_t err_size) {
    char *text = NULL;
    size_t len = 0;
    char terr[512] = "";
    if (r->chat) {
        elm_status st = cli_render_chat(s->model, s->tmpl, r->msgs, r->n_msgs, NULL, &text, &len,
                                        terr, sizeof terr);
        if (st != ELM_OK) {
            snprintf(err, err_size, "the chat template failed: %s", terr[0] ? terr : elm_strerror(st));
            return st == ELM_ERR_NO_MEMORY ? 500 : 400;
        }
    }
    if (srv->o.log_prompts)
        fprintf(stderr, "edgelm serve: prompt: %.*s\n", (int)(r->chat ? len : r->prompt_len),
                r->chat ? text : r->prompt);
    elm_status st = r->chat ? cli_tokenize(s->model, text, len, true, ids, n)
                            : cli_tokenize(s->model, r->prompt, r->prompt_len, true, ids, n);
    free(text);
    if (st != ELM_OK) {
        snprintf(err, err_size, "cannot tokenize the prompt: %s", elm_strerror(st));
        return st == ELM_ERR_NO_MEMORY ? 500 : 400;
    }
    cli_drop_double_bos(*ids, n, s->bos);
    uint32_t n_ctx = elm_context_n_ctx(s->pool.slots[0].ctx);
    if (*n == 0) {
        snprintf(err, err_size, "the prompt has no tokens");
        return 400;
    }
    if (*n >= n_ctx) {
        snprintf(err, err_size, "the prompt is %zu tokens long; the context holds %u", *n, n_ctx);
        return 400;
    }
    return 0;
}

/* ------------------------------------------------------------ callbacks */

static bool is_eot(const serve_live *s, elm_token t) {
    for (size_t i = 0; i < s->n_eot; i++)
        if (s->eot[i] == t) return true;
    return false;
}

static bool peer_closed(int fd) {
    if (fd < 0) return false;
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return true;
    return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

static bool should_stop(gen_run *g) {
    return atomic_load(&g->s->cancel_all) || (g->cancelled && atomic_load(g->cancelled)) ||
           serve_now_ms() > g->deadline || peer_closed(g->fd);
}

static bool append(gen_run *g, const char *t, size_t n) {
    if (g->len + n + 1 > g->cap) {
        size_t cap = (g->len + n + 1) * 2;
        char *grown = realloc(g->text, cap);
        if (!grown) return false;
        g->text = grown;
        g->cap = cap;
    }
    memcpy(g->text + g->len, t, n);
    g->len += n;
    g->text[g->len] = 0;
    return true;
}

/* The first stop string in text[from, len): its position, or -1. */
static long find_stop(const gen_run *g, size_t from) {
    long best = -1;
    for (size_t i = 0; i <= g->r->n_stop; i++) {
        const char *stop = i < g->r->n_stop ? g->r->stop[i] : g->extra_stop;
        if (!stop) continue;
        const char *hit = strstr(g->text + from, stop);
        if (hit && (best < 0 || hit - g->text < best)) best = hit - g->text;
    }
    return best;
}

/* Bytes at the end of the text that could begin a stop string: held back. */
static size_t held_back(const gen_run *g) {
    size_t hold = 0;
    for (size_t i = 0; i <= g->r->n_stop; i++) {
        const char *stop = i < g->r->n_stop ? g->r->stop[i] : g->extra_stop;
        if (!stop) continue;
        size_t sl = strlen(stop);
        for (size_t k = sl - 1; k > hold; k--)
            if (k <= g->len && memcmp(g->text + g->len - k, stop, k) == 0) {
                hold = k;
                break;
            }
    }
    return hold;
}

static void flush(gen_run *g, size_t upto) {
    if (upto <= g->emitted) return;
    if (g->emit && !g->emit(g->text + g->emitted, upto - g->emitted, g->user)) g->cancel = true;
    g->emitted = upto;
}

static json_t *bytes_array(const char *p, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) json_array_append_new(a, json_integer((unsigned char)p[i]));
    return a;
}

static json_t *piece_string(const elm_model *m, elm_token t, char *buf, size_t cap, size_t *n) {
    if (elm_token_to_piece(m, t, buf, cap, n) != ELM_OK) *n = 0;
    json_t *s = json_stringn(buf, *n);
    return s ? s : json_string("");
}

/* The k most likely tokens of the step, as {token, logprob} pairs, when the
 * context still has its logits. */
static json_t *top_alternatives(gen_run *g, uint32_t k, bool chat) {
    const float *logits = elm_get_logits(g->ctx, -1);
    elm_model_info info = ELM_INIT(elm_model_info);
    if (!logits || k == 0 || elm_model_get_info(g->live->model, &info) != ELM_OK) return NULL;
    uint32_t V = info.n_vocab;
    double mx = -INFINITY, sum = 0;
    for (uint32_t i = 0; i < V; i++) mx = fmax(mx, logits[i]);
    for (uint32_t i = 0; i < V; i++) sum += exp((double)logits[i] - mx);
    double lse = mx + log(sum);
    json_t *out = chat ? json_array() : json_object();
    elm_token picked[32];
    uint32_t n_picked = 0;
    for (uint32_t j = 0; j < k && j < V && j < 32; j++) {
        int32_t best = -1;
        for (uint32_t i = 0; i < V; i++) {
            bool used = false;
            for (uint32_t q = 0; q < n_picked; q++) used |= picked[q] == (elm_token)i;
            if (!used && (best < 0 || logits[i] > logits[best])) best = (int32_t)i;
        }
        picked[n_picked++] = best;
        char buf[256];
        size_t n = 0;
        json_t *tok = piece_string(g->live->model, best, buf, sizeof buf, &n);
        double lp = logits[best] - lse;
        if (chat)
            json_array_append_new(out, json_pack("{s:o,s:f,s:o}", "token", tok, "logprob", lp,
                                                 "bytes", bytes_array(buf, n)));
        else {
            json_object_set_new(out, json_string_value(tok), json_real(lp));
            json_decref(tok);
        }
    }
    return out;
}

static void add_logprob(gen_run *g, const elm_token_info *info, size_t text_offset) {
    char buf[256];
    size_t n = 0;
    json_t *tok = piece_string(g->live->model, info->token, buf, sizeof buf, &n);
    json_t *top = top_alternatives(g, g->r->top_logprobs, g->r->chat);
    if (!top) { /* no logits kept: the chosen token alone */
        top = g->r->chat ? json_pack("[{s:O,s:f,s:o}]", "token", tok, "logprob",
                                     (double)info->logprob, "bytes", bytes_array(buf, n))
                         : json_pack("{s:f}", json_string_value(tok), (double)info->logprob);
        if (g->r->top_logprobs == 0) json_decref(top), top = NULL;
    }
    if (g->r->chat) {
        json_t *e = json_pack("{s:o,s:f,s:o}", "token", tok, "logprob", (double)info->logprob,
                              "bytes", bytes_array(buf, n));
        json_object_set_new(e, "top_logprobs", top ? top : json_array());
        json_array_append_new(g->lp, e);
    } else {
        json_array_append_new(json_object_get(g->lp, "tokens"), tok);
        json_array_append_new(json_object_get(g->lp, "token_logprobs"), json_real(info->logprob));
        json_array_append_new(json_object_get(g->lp, "top_logprobs"), top ? top : json_null());
        json_array_append_new(json_object_get(g->lp, "text_offset"), json_integer((json_int_t)text_offset));
    }
}

static bool on_token(const elm_token_info *info, void *user) {
    gen_run *g = user;
    if (info->index == 0) g->t_first = serve_now_ms();
    if (is_eot(g->live, info->token)) {
        g->hit_eot = true;
        return false;
    }
    if (should_stop(g)) {
        g->cancel = true;
        return false;
    }
    g->n_conf++;
    g->sum_lp += info->logprob;
    if (info->margin < g->min_margin) g->min_margin = info->margin;
    if (info->margin < MARGIN_THRESHOLD) g->n_below++;
    size_t before = g->len;
    if (!append(g, info->text, info->text_len)) {
        g->failed = true;
        return false;
    }
    if (g->lp) add_logprob(g, info, before);
    size_t from = before > g->max_stop ? before - g->max_stop : 0;
    long at = find_stop(g, from);
    if (at >= 0) {
        g->len = (size_t)at;
        g->text[g->len] = 0;
        g->hit_stop = true;
        flush(g, g->len);
        return false;
    }
    flush(g, g->len - held_back(g));
    return !g->cancel;
}

/* ----------------------------------------------------------- generation */

static void setup_run(gen_run *g, serve_state *s, serve_live *live, const serve_request *r,
                      int fd, atomic_bool *cancelled, serve_emit_fn emit, void *user) {
    *g = (gen_run){.s = s, .live = live, .r = r, .fd = fd, .cancelled = cancelled, .emit = emit, .user = user,
                   .min_margin = INFINITY, .t0 = serve_now_ms()};
    g->deadline = g->t0 + s->o.request_seconds * 1e3;
    g->t_first = -1;
    if (live->chatml_fallback && r->chat) g->extra_stop = "<|im_end|>";
    g->max_stop = g->extra_stop ? strlen(g->extra_stop) : 0;
    for (size_t i = 0; i < r->n_stop; i++)
        if (strlen(r->stop[i]) > g->max_stop) g->max_stop = strlen(r->stop[i]);
    if (r->logprobs)
        g->lp = r->chat ? json_array()
                        : json_pack("{s:[],s:[],s:[],s:[]}", "tokens", "token_logprobs",
                                    "top_logprobs", "text_offset");
}

static elm_status run_on_slot(gen_run *g, serve_slot *slot, const elm_token *ids, size_t n,
                              uint32_t *reused, elm_stats *st) {
    g->ctx = slot->ctx;
    size_t common = serve_common_prefix(ids, n, elm_context_tokens(slot->ctx),
                                        elm_context_n_past(slot->ctx));
    if (common == n) common--; /* the last token is evaluated again for its logits */
    *reused = (uint32_t)common;
    elm_status rc = elm_context_truncate(slot->ctx, (uint32_t)common);
    if (rc != ELM_OK) return rc;
    elm_sampler_params sp;
    elm_sampler_default_params(&sp);
    sp.temperature = g->r->temperature;
    sp.top_p = g->r->top_p;
    sp.top_k = 0;
    sp.min_p = 0;
    sp.repeat_penalty = 1;
    sp.seed = g->r->seed ? g->r->seed : (uint64_t)(serve_now_ms() * 1e3) ^ (uint64_t)slot->id;
    elm_generate_params gp;
    elm_generate_default_params(&gp);
    gp.n_predict = (int32_t)g->r->max_tokens;
    gp.sampler = &sp;
    gp.callback = on_token;
    gp.user_data = g;
    gp.prompt_tokens = ids + common;
    gp.n_prompt_tokens = n - common;
    return elm_generate(slot->ctx, NULL, 0, &gp, st);
}

static int slot_error(int rc, char *err, size_t err_size) {
    if (rc == SERVE_QUEUE_FULL) snprintf(err, err_size, "the server is busy: the queue is full");
    else if (rc == SERVE_CLOSING) snprintf(err, err_size, "the server is shutting down");
    else snprintf(err, err_size, "no slot became free in time");
    return 503;
}

static void finish_output(gen_run *g, const elm_stats *st, serve_output *out) {
    out->text = g->text;
    out->len = g->len;
    g->text = NULL;
    out->n_gen = st->n_gen;
    out->finish_reason = g->cancel               ? "cancelled"
                         : g->hit_stop || g->hit_eot || st->stop == ELM_STOP_EOG ? "stop"
                                                                                 : "length";
    out->logprobs = g->lp && g->r->chat ? json_pack("{s:o}", "content", g->lp) : g->lp;
    out->conf_n = g->n_conf;
    out->conf_mean_logprob = g->n_conf ? g->sum_lp / g->n_conf : 0;
    out->conf_min_margin = g->min_margin;
    out->conf_frac_below = g->n_conf ? (float)g->n_below / (float)g->n_conf : 0;
    out->total_ms = serve_now_ms() - g->t0;
    out->ttft_ms = g->t_first >= 0 ? g->t_first - g->t0 : -1;
}

int serve_prepare(serve_state *s, const serve_request *r, serve_job *job, char *err,
                  size_t err_size) {
    memset(job, 0, sizeof *job);
    job->t0 = serve_now_ms();
    job->deadline = job->t0 + s->o.request_seconds * 1e3;
    job->live = serve_live_get(s);
    int http = prompt_tokens(s, job->live, r, &job->ids, &job->n, err, err_size);
    if (!http) {
        int rc = serve_pool_acquire(&job->live->pool, job->ids, job->n, job->deadline, &job->slot);
        if (rc != SERVE_SLOT_OK) http = slot_error(rc, err, err_size);
    }
    if (http) {
        bool too_long = job->n >= elm_context_n_ctx(job->live->pool.slots[0].ctx);
        serve_job_abandon(s, job);
        job->too_long = too_long;
    }
    return http;
}

void serve_job_abandon(serve_state *s, serve_job *job) {
    (void)s;
    if (job->slot) serve_pool_release(&job->live->pool, job->slot);
    serve_live_put(job->live);
    free(job->ids);
    memset(job, 0, sizeof *job);
}

int serve_run(serve_state *s, const serve_request *r, serve_job *job, int fd,
              atomic_bool *cancelled, serve_emit_fn emit, void *user, serve_output *out,
              char *err, size_t err_size) {
    memset(out, 0, sizeof *out);
    gen_run g;
    setup_run(&g, s, job->live, r, fd, cancelled, emit, user);
    snprintf(out->model_name, sizeof out->model_name, "%s", job->live->model_name);
    g.t0 = job->t0;
    g.deadline = job->deadline;
    elm_stats st = ELM_INIT(elm_stats);
    elm_status rc = run_on_slot(&g, job->slot, job->ids, job->n, &out->n_reused, &st);
    if (rc != ELM_OK)
        snprintf(err, err_size, "generation failed: %s", elm_context_last_error(job->slot->ctx));
    out->n_prompt = (uint32_t)job->n;
    serve_job_abandon(s, job);
    if (rc == ELM_OK && g.failed) rc = ELM_ERR_NO_MEMORY, snprintf(err, err_size, "out of memory");
    if (rc == ELM_OK && !g.text && !append(&g, "", 0))
        rc = ELM_ERR_NO_MEMORY, snprintf(err, err_size, "out of memory");
    if (rc != ELM_OK) {
        free(g.text);
        json_decref(g.lp);
        return 500;
    }
    flush(&g, g.len);
    finish_output(&g, &st, out);
    serve_metrics_tokens(out->n_prompt, out->n_gen, out->n_reused);
    serve_metrics_latency(out->total_ms, out->ttft_ms);
    return 0;
}

void serve_output_free(serve_output *o) {
    free(o->text);
    json_decref(o->logprobs);
    memset(o, 0, sizeof *o);
}
