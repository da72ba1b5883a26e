#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/abi.h"
#include "common/alloc.h"
#include "common/status.h"
#include "engine/internal.h"
#include "engine/selfcheck.h"
#include "quant/quant.h"

elm_status elmi_ctx_error(elm_context *ctx, elm_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->last_error, sizeof ctx->last_error, fmt, ap);
    va_end(ap);
    return st;
}

const char *elm_context_last_error(const elm_context *ctx) {
    return ctx ? ctx->last_error : "";
}

static elm_status resolve_params(const elm_model *m, elm_context_params *p, char *err,
                                 size_t err_size) {
    if (p->mode != ELM_MODE_FAST && p->mode != ELM_MODE_EXACT)
        return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "unknown mode %d", (int)p->mode);
    if (p->n_ctx == 0) p->n_ctx = m->hp.n_ctx_train < 4096 ? m->hp.n_ctx_train : 4096;
    if (p->n_ctx > (1u << 24))
        return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "n_ctx %u is too large", p->n_ctx);
    if (p->n_batch == 0) p->n_batch = 512;
    if (p->n_batch > p->n_ctx) p->n_batch = p->n_ctx;
    if (p->n_threads <= 0) p->n_threads = elmi_be_cpu_physical_cores();
    if (p->n_threads > 256)
        return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "n_threads %d is too large",
                           p->n_threads);
    return ELM_OK;
}

/* Lays the context's tensors out in one scratch buffer; returns its size. */
static size_t layout_scratch(elm_context *ctx, bool assign, char *base) {
    const elm_hparams *hp = &ctx->model->hp;
    elm_graph_bufs *g = &ctx->g;
    const int64_t B = ctx->step;
    const int64_t n_kv = (int64_t)hp->head_dim * hp->n_head_kv;
    struct {
        be_tensor *t;
        int type;
        int64_t ne0, ne1, ne2;
        const char *name;
    } specs[] = {
        {&g->ids, BE_TYPE_I32, B, 1, 1, "ids"},
        {&g->pos, BE_TYPE_I32, B, 1, 1, "pos"},
        {&g->x, QT_F32, hp->n_embd, B, 1, "x"},
        {&g->xb, QT_F32, hp->n_embd, B, 1, "xb"},
        {&g->q, QT_F32, (int64_t)hp->head_dim * hp->n_head, B, 1, "q"},
        {&g->k, QT_F32, n_kv, B, 1, "k"},
        {&g->v, QT_F32, n_kv, B, 1, "v"},
        {&g->att, QT_F32, (int64_t)hp->head_dim * hp->n_head, B, 1, "att"},
        {&g->proj, QT_F32, hp->n_embd, B, 1, "proj"},
        {&g->bcx, QT_F32, hp->conv_L ? 3 * (int64_t)hp->n_embd : 1, hp->conv_L ? B : 1, 1, "bcx"},
        {&g->conv, QT_F32, hp->conv_L ? hp->n_embd : 1, hp->conv_L ? B : 1, 1, "conv"},
        {&g->gate, QT_F32, hp->n_ff, B, 1, "gate"},
        {&g->up, QT_F32, hp->n_ff, B, 1, "up"},
        {&g->logits, QT_F32, hp->n_vocab, g->n_logits, 1, "logits"},
        {&g->summary, QT_F32, 4, 1, 1, "summary"},
    };
    size_t offs = 0;
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) {
        be_tensor t;
        elmi_be_tensor_init(&t, specs[i].type, specs[i].ne0, specs[i].ne1, specs[i].ne2, 1,
                       specs[i].name);
        if (assign) {
            t.buf = g->buf;
            t.offs = offs;
            t.data = base ? base + offs : NULL;
            *specs[i].t = t;
        }
        offs += (elmi_be_tensor_nbytes(&t) + 63) & ~(size_t)63;
    }
    if (assign) {
        be_tensor *views[2][2] = {{&g->q3, &g->q}, {&g->k3, &g->k}};
        uint32_t heads[2] = {hp->n_head, hp->n_head_kv};
        for (int i = 0; i < 2; i++) {
            be_tensor *v = views[i][0], *base = views[i][1];
            elmi_be_tensor_init(v, QT_F32, hp->head_dim, heads[i], B, 1, i ? "k3" : "q3");
            v->buf = base->buf;
            v->offs = base->offs;
            v->data = base->data;
        }
    }
    return offs;
}

/* Rows of each layer's per-context state. A sliding-window layer keeps
 * only the keys its queries can see: window + step - 1 rows as a ring (a
 * pass of `step` queries reaches back window - 1 keys before it), so the
 * pass is kept to a quarter of the window (at least 64 tokens) for the
 * ring to stay near the window. A convolution layer keeps the last
 * conv_L - 1 bx rows before a pass. */
static void plan_rows(elm_context *ctx) {
    const elm_hparams *hp = &ctx->model->hp;
    ctx->step = ctx->params.n_batch;
    bool has_swa = false;
    for (uint32_t il = 0; il < hp->n_layer; il++) has_swa = has_swa || hp->layer[il].swa;
    uint32_t cap = hp->n_swa / 4 > 64 ? hp->n_swa / 4 : 64;
    if (has_swa && ctx->step > cap) ctx->step = cap;
    const uint64_t n_ctx = ctx->params.n_ctx, B = ctx->step;
    uint64_t swa = (uint64_t)hp->n_swa + B - 1;
    ctx->kv_rows_swa = (uint32_t)(hp->n_swa && swa < n_ctx ? swa : n_ctx);
    ctx->conv_rows = hp->conv_L ? (uint32_t)(B + hp->conv_L - 1) : 0;
}

typedef struct state_spec {
    be_tensor *t;
    int type;
    int64_t ne0, ne1;
    char name[32];
} state_spec;

/* The KV caches of the attention layers and the states of the convolution
 * layers, in one buffer. */
static size_t list_states(elm_context *ctx, state_spec *specs) {
    const elm_hparams *hp = &ctx->model->hp;
    const int kv_type = ctx->params.mode == ELM_MODE_EXACT ? QT_F32 : QT_F16;
    const int64_t n_kv = (int64_t)hp->head_dim * hp->n_head_kv;
    size_t n = 0;
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        if (!hp->layer[il].attn) {
            specs[n] = (state_spec){&ctx->conv_state[il], QT_F32, hp->n_embd, ctx->conv_rows, ""};
            snprintf(specs[n++].name, 32, "conv_state.%u", il);
            continue;
        }
        int64_t rows = hp->layer[il].swa ? ctx->kv_rows_swa : ctx->params.n_ctx;
        for (int j = 0; j < 2; j++) {
            specs[n] = (state_spec){j ? &ctx->v_cache[il] : &ctx->k_cache[il], kv_type, n_kv, rows, ""};
            snprintf(specs[n++].name, 32, "%s_cache.%u", j ? "v" : "k", il);
        }
    }
    return n;
}

size_t elmi_context_states(elm_context *ctx, be_tensor **out, bool *ring) {
    const elm_hparams *hp = &ctx->model->hp;
    size_t n = 0;
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        if (!hp->layer[il].attn) {
            ring[n] = true;
            out[n++] = &ctx->conv_state[il];
            continue;
        }
        bool is_ring = hp->layer[il].swa && ctx->kv_rows_swa < ctx->params.n_ctx;
        ring[n] = ring[n + 1] = is_ring;
        out[n++] = &ctx->k_cache[il];
        out[n++] = &ctx->v_cache[il];
    }
    return n;
}

static elm_status alloc_kv(elm_context *ctx, char *err, size_t err_size) {
    const elm_hparams *hp = &ctx->model->hp;
    const be_iface *bi = ctx->be->iface;
    plan_rows(ctx);
    ctx->k_cache = elmi_calloc(hp->n_layer, sizeof *ctx->k_cache);
    ctx->v_cache = elmi_calloc(hp->n_layer, sizeof *ctx->v_cache);
    ctx->conv_state = elmi_calloc(hp->n_layer, sizeof *ctx->conv_state);
    state_spec *specs = elmi_calloc(2 * (size_t)hp->n_layer, sizeof *specs);
    if (!ctx->k_cache || !ctx->v_cache || !ctx->conv_state || !specs) {
        elmi_free(specs);
        return elmi_errorf(err, err_size, ELM_ERR_NO_MEMORY, "out of memory");
    }
    size_t n = list_states(ctx, specs), total = 0;
    for (size_t i = 0; i < n; i++) {
        elmi_be_tensor_init(specs[i].t, specs[i].type, specs[i].ne0, specs[i].ne1, 1, 1, specs[i].name);
        specs[i].t->offs = total;
        total += (elmi_be_tensor_nbytes(specs[i].t) + 63) & ~(size_t)63;
    }
    elm_status st = bi->buffer_alloc(ctx->be, total ? total : 64, NULL, &ctx->kv_buf);
    if (st != ELM_OK) {
        elmi_free(specs);
        return elmi_errorf(err, err_size, st, "cannot allocate the KV cache (%zu bytes)", total);
    }
    ctx->kv_bytes = total;
    char *base = bi->buffer_host(ctx->be, ctx->kv_buf);
    for (size_t i = 0; i < n; i++) {
        specs[i].t->buf = ctx->kv_buf;
        specs[i].t->data = base ? base + specs[i].t->offs : NULL;
    }
    elmi_free(specs);
    /* LongRoPE: the long factors when the context reaches beyond the
     * trained window, as the widely used engine decides it. */
    const elm_weights *w = &ctx->model->w;
    ctx->rope_factors = w->has_rope_freqs ? &w->rope_freqs
                        : w->has_longrope ? (ctx->params.n_ctx > hp->rope_n_ctx_orig ? &w->rope_long
                                                                                     : &w->rope_short)
                                          : NULL;
    return ELM_OK;
}

static elm_status alloc_scratch(elm_context *ctx, char *err, size_t err_size) {
    const elm_hparams *hp = &ctx->model->hp;
    const be_iface *bi = ctx->be->iface;
    uint32_t B = ctx->step;
    ctx->g.n_logits = ctx->params.logits_all ? B : 1;
    size_t size = layout_scratch(ctx, false, NULL);
    elm_status st = bi->buffer_alloc(ctx->be, size, NULL, &ctx->g.buf);
    if (st != ELM_OK)
        return elmi_errorf(err, err_size, st, "cannot allocate %zu bytes of activations", size);
    layout_scratch(ctx, true, bi->buffer_host(ctx->be, ctx->g.buf));
    ctx->scratch_bytes = size;
    ctx->nodes_cap = 24 * (int)hp->n_layer + 16;
    ctx->nodes = elmi_calloc((size_t)ctx->nodes_cap, sizeof *ctx->nodes);
    size_t host_rows = ctx->params.logits_all ? ctx->params.n_batch : 1;
    ctx->logits = elmi_malloc((size_t)hp->n_vocab * host_rows * sizeof(float));
    ctx->ids_host = elmi_malloc(B * sizeof(int32_t));
    ctx->pos_host = elmi_malloc(B * sizeof(int32_t));
    ctx->tokens = elmi_malloc((size_t)ctx->params.n_ctx * sizeof *ctx->tokens);
    if (!ctx->nodes || !ctx->logits || !ctx->ids_host || !ctx->pos_host || !ctx->tokens)
        return elmi_errorf(err, err_size, ELM_ERR_NO_MEMORY, "out of memory");
    return ELM_OK;
}

/* Plans a one-token graph and asks the backend whether it can run every
 * node, so an unsupported weight type fails here, not mid-generation. */
static elm_status check_support(elm_context *ctx, char *err, size_t err_size) {
    be_graph graph;
    if (elmi_graph_build(ctx, 1, ELM_OUT_SUMMARY, &graph) < 0)
        return elmi_errorf(err, err_size, ELM_ERR_INTERNAL, "graph node storage too small");
    /* Plans the device/CPU split and prepares the device's parts. */
    char msg[ELM_ERR_LEN] = "";
    elm_status st = elmi_sched_compute(&ctx->sched, &graph, true, msg, sizeof msg);
    if (st != ELM_OK) return elmi_errorf(err, err_size, st, "%s: %s", ctx->model->path, msg);
    return ELM_OK;
}

/* Frees everything setup_device made, leaving the context as calloc made it. */
static void release_device(elm_context *ctx) {
    elmi_sched_free(&ctx->sched);
    if (ctx->be) {
        if (ctx->kv_buf) ctx->be->iface->buffer_free(ctx->be, ctx->kv_buf);
        if (ctx->g.buf) ctx->be->iface->buffer_free(ctx->be, ctx->g.buf);
        be_free(ctx->be);
    }
    ctx->be = NULL;
    ctx->kv_buf = NULL;
    ctx->g.buf = NULL;
    elmi_free(ctx->k_cache);
    elmi_free(ctx->v_cache);
    elmi_free(ctx->conv_state);
    ctx->conv_state = NULL;
    elmi_free(ctx->nodes);
    elmi_free(ctx->logits);
    elmi_free(ctx->ids_host);
    elmi_free(ctx->pos_host);
    elmi_free(ctx->tokens);
    ctx->tokens = NULL;
    ctx->k_cache = ctx->v_cache = NULL;
    ctx->nodes = NULL;
    ctx->logits = NULL;
    ctx->ids_host = ctx->pos_host = NULL;
}

static elm_status setup_device(elm_context *ctx, const elm_device_choice *c, char *err,
                               size_t err_size) {
    char msg[ELM_ERR_LEN] = "";
    elm_status st = elmi_device_backend_new(ctx->model, c, ctx->params.n_threads, ctx->params.pin_threads, &ctx->be, msg,
                                       sizeof msg);
    if (st != ELM_OK)
        return elmi_errorf(err, err_size, st, "%s: device %s: %s", ctx->model->path, c->id, msg);
    snprintf(ctx->device_id, sizeof ctx->device_id, "%s", c->id);
    elmi_sched_init(&ctx->sched, ctx->be, c->reg == NULL, ctx->params.n_threads, ctx->params.pin_threads);
    ELM_TRY(alloc_kv(ctx, err, err_size));
    ELM_TRY(alloc_scratch(ctx, err, err_size));
    return check_support(ctx, err, err_size);
}

elm_status elm_context_new(const elm_model *model, const elm_context_params *params,
                           elm_context **out, char *err, size_t err_size) {
    if (err && err_size) err[0] = 0;
    if (!out) return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!model) return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "model is NULL");
    if (model->vocab_only)
        return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG,
                           "%s: the model was loaded vocabulary-only", model->path);
    elm_context *ctx = elmi_calloc(1, sizeof *ctx);
    if (!ctx) return elmi_errorf(err, err_size, ELM_ERR_NO_MEMORY, "out of memory");
    ctx->model = model;
    ctx->params = elmi_context_defaults;
    if (params && !elmi_struct_in(&ctx->params, sizeof ctx->params, params,
                                  ELMI_MIN_CONTEXT_PARAMS)) {
        elmi_free(ctx);
        return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG,
                          "elm_context_params.struct_size is %zu: initialize the struct with "
                          "elm_context_default_params", params->struct_size);
    }
    elm_status st = resolve_params(model, &ctx->params, err, err_size);
    if (st != ELM_OK) goto fail;
    st = setup_device(ctx, &model->device, err, err_size);
    if (st == ELM_OK && model->device.automatic && model->device.reg)
        st = elmi_device_selfcheck(ctx->be, err, err_size);
    if (st != ELM_OK && model->device.automatic && model->device.reg) {
        /* "auto" promises a working context: say why the GPU was left. */
        release_device(ctx);
        snprintf(ctx->notice, sizeof ctx->notice,
                 "device auto: %s could not be used (%s); running on the CPU backend",
                 model->device.id, err && err_size ? err : elm_strerror(st));
        elm_device_choice cpu = {.reg = NULL, .index = -1, .id = "cpu"};
        if (err && err_size) err[0] = 0;
        st = setup_device(ctx, &cpu, err, err_size);
    }
    if (st != ELM_OK) goto fail;
    if (!ctx->notice[0] && ctx->sched.first_fallback[0])
        snprintf(ctx->notice, sizeof ctx->notice, "%s", ctx->sched.first_fallback);
    *out = ctx;
    return ELM_OK;
fail:
    elm_context_free(ctx);
    return st;
}

void elm_context_free(elm_context *ctx) {
    if (!ctx) return;
    release_device(ctx);
    elmi_free(ctx);
}

const char *elm_context_notice(const elm_context *ctx) {
    return ctx ? ctx->notice : "";
}

elm_status elm_context_reset(elm_context *ctx) {
    if (!ctx) return ELM_ERR_INVALID_ARG;
    if (ctx->broken) return elmi_ctx_error(ctx, ELM_ERR_DEVICE, "the context is unusable after a device error");
    ctx->n_past = 0;
    ctx->ring_lo = 0;
    ctx->n_logits_valid = 0;
    ctx->last_error[0] = 0;
    return ELM_OK;
}

uint32_t elm_context_n_ctx(const elm_context *ctx) {
    return ctx ? ctx->params.n_ctx : 0;
}

elm_status elm_context_memory(const elm_context *ctx, elm_memory_usage *out) {
    if (!ctx || !out) return ELM_ERR_INVALID_ARG;
    elm_memory_usage m = {.struct_size = sizeof m};
    m.weights_bytes = ctx->model->info.weights_bytes;
    m.kv_bytes = ctx->kv_bytes;
    m.scratch_bytes = ctx->scratch_bytes;
    m.device_bytes = ctx->kv_bytes + ctx->scratch_bytes;
    return elmi_struct_out(out, &m, sizeof m, ELMI_MIN_MEMORY_USAGE) ? ELM_OK : ELM_ERR_INVALID_ARG;
}

const char *elm_context_device(const elm_context *ctx) {
    return ctx ? ctx->device_id : "";
}

uint32_t elm_context_n_past(const elm_context *ctx) {
    return ctx ? ctx->n_past : 0;
}

const elm_token *elm_context_tokens(const elm_context *ctx) {
    return ctx && ctx->n_past ? ctx->tokens : NULL;
}

uint64_t elm_context_n_evaluated(const elm_context *ctx) {
    return ctx ? ctx->n_evaluated : 0;
}

elm_status elm_context_truncate(elm_context *ctx, uint32_t n) {
    if (!ctx) return ELM_ERR_INVALID_ARG;
    ctx->last_error[0] = 0;
    if (ctx->broken) return elmi_ctx_error(ctx, ELM_ERR_DEVICE, "the context is unusable after a device error");
    if (n > ctx->n_past)
        return elmi_ctx_error(ctx, ELM_ERR_INVALID_ARG,
                              "cannot truncate to %u tokens: the context holds %u", n, ctx->n_past);
    ctx->n_past = n;
    ctx->n_logits_valid = 0;
    ctx->summary_valid = false;
    return ELM_OK;
}

elm_status elm_context_reuse_prefix(elm_context *ctx, const elm_token *tokens, size_t n,
                                    uint32_t *n_kept) {
    if (n_kept) *n_kept = 0;
    if (!ctx) return ELM_ERR_INVALID_ARG;
    if (!tokens && n)
        return elmi_ctx_error(ctx, ELM_ERR_INVALID_ARG, "tokens is NULL with n = %zu", n);
    size_t keep = 0;
    while (keep < ctx->n_past && keep < n && ctx->tokens[keep] == tokens[keep]) keep++;
    if (keep > 0 && keep == n) keep--; /* one token is left to evaluate, for its logits */
    ELM_TRY(elm_context_truncate(ctx, (uint32_t)keep));
    if (n_kept) *n_kept = (uint32_t)keep;
    return ELM_OK;
}

static elm_status check_logits(elm_context *ctx, uint32_t row0, uint32_t rows) {
    const uint32_t n_vocab = ctx->model->hp.n_vocab;
    for (size_t i = (size_t)row0 * n_vocab; i < (size_t)(row0 + rows) * n_vocab; i++)
        if (!isfinite(ctx->logits[i]))
            return elmi_ctx_error(ctx, ELM_ERR_NUMERIC, "logit %zu of token %zu is not finite",
                             i % n_vocab, i / n_vocab);
    return ELM_OK;
}

/* One forward pass of n <= step tokens; with ELM_OUT_ALL their logits go
 * to rows [row0, row0 + n) of ctx->logits. */
static elm_status decode_batch(elm_context *ctx, const elm_token *tokens, uint32_t n,
                               elm_output output, uint32_t row0) {
    const be_iface *bi = ctx->be->iface;
    for (uint32_t i = 0; i < n; i++) {
        ctx->ids_host[i] = tokens[i];
        ctx->pos_host[i] = (int32_t)(ctx->n_past + i);
    }
    be_graph graph;
    if (elmi_graph_build(ctx, n, output, &graph) < 0)
        return elmi_ctx_error(ctx, ELM_ERR_INTERNAL, "graph node storage too small");
    char msg[ELM_ERR_LEN] = "";
    uint32_t rows = output == ELM_OUT_ALL ? n : 1;
    elm_status st = bi->tensor_set(ctx->be, &ctx->g.ids, ctx->ids_host, 0, n * sizeof(int32_t));
    if (st != ELM_OK) goto fail;
    st = bi->tensor_set(ctx->be, &ctx->g.pos, ctx->pos_host, 0, n * sizeof(int32_t));
    if (st != ELM_OK) goto fail;
    st = elmi_sched_compute(&ctx->sched, &graph, false, msg, sizeof msg);
    if (st != ELM_OK) goto fail;
    elmi_profile_after_pass(ctx, n);
    if (output == ELM_OUT_SUMMARY)
        st = bi->tensor_get(ctx->be, &ctx->g.summary, ctx->summary, 0, sizeof ctx->summary);
    else
        st = bi->tensor_get(ctx->be, &ctx->g.logits, ctx->logits + (size_t)row0 * ctx->model->hp.n_vocab,
                            0, (size_t)rows * ctx->model->hp.n_vocab * sizeof(float));
    if (st != ELM_OK) goto fail;
    memmove(ctx->tokens + ctx->n_past, tokens, n * sizeof *tokens);
    ctx->n_past += n;
    ctx->n_evaluated += n;
    if (output == ELM_OUT_SUMMARY) {
        for (int i = 0; i < 4; i++)
            if (!isfinite(ctx->summary[i]))
                return elmi_ctx_error(ctx, ELM_ERR_NUMERIC, "the logits are not finite");
        ctx->summary_valid = true;
        return ELM_OK;
    }
    ctx->n_logits_valid = row0 + rows;
    return check_logits(ctx, row0, rows);
fail:
    if (st == ELM_ERR_DEVICE) ctx->broken = true;
    return elmi_ctx_error(ctx, st, "forward pass failed on %s: %s", ctx->device_id,
                     msg[0] ? msg : elm_strerror(st));
}

/* Rows of the smallest ring (sliding-window cache or convolution state), or
 * 0 when the context has none. */
static uint32_t ring_rows(const elm_context *ctx) {
    uint32_t r = 0;
    if (ctx->kv_rows_swa < ctx->params.n_ctx) r = ctx->kv_rows_swa;
    if (ctx->conv_rows && (r == 0 || ctx->conv_rows < r)) r = ctx->conv_rows;
    return r;
}

/* Whether every ring still holds what a decode at position n reads before
 * n: the window - 1 keys of a sliding-window layer, the conv_L - 1 bx rows
 * of a convolution layer. Writing position p overwrote p - rows, so each
 * decode raises ring_lo; a rollback below what it left needs a replay. */
static bool rings_hold(const elm_context *ctx, uint32_t n) {
    const elm_hparams *hp = &ctx->model->hp;
    uint32_t back = 0;
    if (ctx->kv_rows_swa < ctx->params.n_ctx && hp->n_swa > back + 1) back = hp->n_swa - 1;
    if (ctx->conv_rows && hp->conv_L > back + 1) back = hp->conv_L - 1;
    uint32_t need = n > back ? n - back : 0;
    return ring_rows(ctx) == 0 || n == 0 || need >= ctx->ring_lo;
}

static void note_ring_writes(elm_context *ctx, uint32_t end) {
    uint32_t r = ring_rows(ctx);
    if (r && end > r && end - r > ctx->ring_lo) ctx->ring_lo = end - r;
}

static elm_status decode_batches(elm_context *ctx, const elm_token *tokens, size_t n,
                                 elm_output output) {
    const uint32_t n_past0 = ctx->n_past;
    for (size_t done = 0; done < n;) {
        uint32_t chunk = (uint32_t)(n - done < ctx->step ? n - done : ctx->step);
        note_ring_writes(ctx, ctx->n_past + chunk);
        elm_status st = decode_batch(ctx, tokens + done, chunk, output,
                                     output == ELM_OUT_ALL ? (uint32_t)done : 0);
        if (st != ELM_OK) {
            /* The tokens of a failed call are forgotten, as if it never ran
             * (rings it overwrote are replayed by the next decode). */
            ctx->n_past = n_past0;
            ctx->n_logits_valid = 0;
            ctx->summary_valid = false;
            return st;
        }
        done += chunk;
    }
    return ELM_OK;
}

/* Recomputes the context's own tokens from position 0, after a rollback
 * deeper than its rings reach. */
static elm_status replay(elm_context *ctx) {
    uint32_t n = ctx->n_past;
    ctx->n_past = 0;
    ctx->ring_lo = 0;
    elm_status st = decode_batches(ctx, ctx->tokens, n, ELM_OUT_SUMMARY);
    if (st != ELM_OK) ctx->n_past = n; /* the tokens are intact: a later decode replays again */
    ctx->summary_valid = false;
    return st;
}

elm_status elmi_context_decode(elm_context *ctx, const elm_token *tokens, size_t n, elm_output output) {
    ctx->last_error[0] = 0;
    if (ctx->broken) return elmi_ctx_error(ctx, ELM_ERR_DEVICE, "the context is unusable after a device error");
    if (!tokens || n == 0) return elmi_ctx_error(ctx, ELM_ERR_INVALID_ARG, "no tokens to decode");
    const elm_context_params *p = &ctx->params;
    if (n > p->n_ctx - ctx->n_past)
        return elmi_ctx_error(ctx, ELM_ERR_CONTEXT_FULL,
                         "%zu tokens do not fit: the context holds %u and %u are used", n,
                         p->n_ctx, ctx->n_past);
    if (output == ELM_OUT_ALL && n > p->n_batch)
        return elmi_ctx_error(ctx, ELM_ERR_INVALID_ARG,
                         "%zu tokens exceed n_batch %u with logits_all", n, p->n_batch);
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= ctx->model->hp.n_vocab)
            return elmi_ctx_error(ctx, ELM_ERR_INVALID_ARG, "token %zu has id %d, outside [0, %u)", i,
                             tokens[i], ctx->model->hp.n_vocab);
    ctx->n_logits_valid = 0;
    ctx->summary_valid = false;
    if (!rings_hold(ctx, ctx->n_past)) ELM_TRY(replay(ctx));
    return decode_batches(ctx, tokens, n, output);
}

elm_status elm_decode(elm_context *ctx, const elm_token *tokens, size_t n) {
    if (!ctx) return ELM_ERR_INVALID_ARG;
    return elmi_context_decode(ctx, tokens, n, ctx->params.logits_all ? ELM_OUT_ALL : ELM_OUT_LAST);
}

const float *elm_get_logits(const elm_context *ctx, int32_t i) {
    if (!ctx || ctx->n_logits_valid == 0) return NULL;
    if (i < 0) i = (int32_t)ctx->n_logits_valid - 1;
    if ((uint32_t)i >= ctx->n_logits_valid) return NULL;
    return ctx->logits + (size_t)i * ctx->model->hp.n_vocab;
}
