/*
 * state.c: saved sessions (elm_state_save/load and the _buffer forms).
 *
 * A state is, all integers little-endian:
 *
 *   header   "ELMSTATE" | u32 version | u32 mode | u64 model fingerprint |
 *            char arch[32] | u32 n_ctx | u32 kv_type | u32 n_past |
 *            u32 ring_lo | u32 n_tensors | u32 flags | u32 n_vocab | u32 0
 *   tokens   n_past x i32
 *   table    n_tensors x (char name[32] | u32 type | u32 0 | u64 row_bytes |
 *            u64 rows | u64 rows_saved)
 *   data     each tensor's rows [0, rows_saved), in table order
 *   extras   flags & 1: the last logits row (n_vocab x f32);
 *            flags & 2: the argmax summary (4 x f32)
 *   trailer  u64 checksum of every byte before it
 *
 * The tensors are the context's per-layer states in list order (context.c:
 * elmi_context_states). A ring (a sliding-window cache, a convolution state)
 * is written whole; a plain KV cache only up to n_past, since rows beyond
 * are never read before being written again. Loading validates everything
 * (sizes, counts, checksum, then that the state fits this model, mode and
 * context) before touching the context.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/status.h"
#include "engine/internal.h"
#include "quant/quant.h"

#define STATE_MAGIC "ELMSTATE"
#define STATE_VERSION 1u
#define HEADER_BYTES 96u
#define ENTRY_BYTES 64u
#define NAME_BYTES 32u
#define FLAG_LOGITS 1u
#define FLAG_SUMMARY 2u
#define STAGE_BYTES ((size_t)1 << 20)

/* ------------------------------------------------------------------ hashing */

/* A streaming 64-bit hash: four lanes of xor-multiply-xorshift over 8-byte
 * words. Every step is a bijection of a lane, so any change of one input
 * byte changes the result (a checksum against damage, not an adversary). */
typedef struct hasher {
    uint64_t lane[4];
    uint8_t tail[32];
    size_t n_tail;
    uint64_t total;
} hasher;

#define HASH_MUL 0x9E3779B97F4A7C15ull

static uint64_t rd64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void wr64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t mix(uint64_t h, uint64_t w) {
    h = (h ^ w) * HASH_MUL;
    return h ^ (h >> 31);
}

static void hash_init(hasher *h) {
    memset(h, 0, sizeof *h);
    for (int i = 0; i < 4; i++) h->lane[i] = 0x243F6A8885A308D3ull + (uint64_t)i * 0x13198A2E03707344ull;
}

static void hash_block(hasher *h, const uint8_t *p) {
    for (int i = 0; i < 4; i++) h->lane[i] = mix(h->lane[i], rd64(p + 8 * i));
}

static void hash_update(hasher *h, const void *data, size_t n) {
    const uint8_t *p = data;
    h->total += n;
    if (h->n_tail) {
        size_t take = 32 - h->n_tail < n ? 32 - h->n_tail : n;
        memcpy(h->tail + h->n_tail, p, take);
        h->n_tail += take;
        p += take;
        n -= take;
        if (h->n_tail < 32) return;
        hash_block(h, h->tail);
        h->n_tail = 0;
    }
    for (; n >= 32; p += 32, n -= 32) hash_block(h, p);
    memcpy(h->tail, p, n);
    h->n_tail = n;
}

static uint64_t hash_final(hasher *h) {
    memset(h->tail + h->n_tail, 0, 32 - h->n_tail);
    hash_block(h, h->tail);
    uint64_t f = mix(h->total, 0x452821E638D01377ull);
    for (int i = 0; i < 4; i++) f = mix(f, h->lane[i]);
    return f;
}

uint64_t elmi_state_checksum(const void *data, size_t n) {
    hasher h;
    hash_init(&h);
    hash_update(&h, data, n);
    return hash_final(&h);
}

static void hash_u64(hasher *h, uint64_t v) {
    uint8_t b[8];
    wr64(b, v);
    hash_update(h, b, 8);
}

static void hash_f32(hasher *h, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    hash_u64(h, u);
}

static void hash_str(hasher *h, const char *s, size_t n) {
    hash_u64(h, n);
    hash_update(h, s, n);
}

/* The model's identity: its hyperparameters, its tensor table and a sample
 * of every tensor's bytes (the first and last 64), so that two fine-tunes
 * of one architecture differ too. */
static uint64_t model_fingerprint(const elm_model *m) {
    const elm_hparams *hp = &m->hp;
    hasher h;
    hash_init(&h);
    hash_str(&h, m->arch_name, strlen(m->arch_name));
    const uint32_t u[] = {hp->arch, hp->n_vocab, hp->n_ctx_train, hp->n_embd, hp->n_layer,
                          hp->n_head, hp->n_head_kv, hp->n_ff, hp->head_dim, hp->n_rot,
                          (uint32_t)hp->rope_mode, (uint32_t)hp->rope_scaling, hp->rope_n_ctx_orig,
                          hp->has_bias_qkv, hp->qk_norm, hp->post_norms, hp->fused_qkv,
                          hp->fused_gate_up, (uint32_t)hp->ffn_act, hp->n_swa, hp->conv_L};
    for (size_t i = 0; i < sizeof u / sizeof *u; i++) hash_u64(&h, u[i]);
    const float f[] = {hp->rms_eps, hp->rope_theta, hp->rope_freq_scale, hp->yarn_ext_factor,
                       hp->yarn_attn_factor, hp->yarn_beta_fast, hp->yarn_beta_slow, hp->embd_scale,
                       hp->attn_scale, hp->attn_softcap, hp->final_softcap, hp->rope_theta_swa};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) hash_f32(&h, f[i]);
    for (uint32_t il = 0; il < hp->n_layer && il < ELM_MAX_LAYERS; il++)
        hash_u64(&h, hp->layer[il].attn | hp->layer[il].rope << 8 | hp->layer[il].swa << 16);
    uint64_t n = elmi_gguf_n_tensors(m->gguf);
    hash_u64(&h, n);
    for (uint64_t i = 0; i < n; i++) {
        const gguf_tensor *t = elmi_gguf_tensor_at(m->gguf, i);
        hash_str(&h, t->name.ptr, t->name.len);
        hash_u64(&h, t->n_dims);
        for (int d = 0; d < GGUF_MAX_DIMS; d++) hash_u64(&h, (uint64_t)t->ne[d]);
        hash_u64(&h, (uint64_t)t->type);
        hash_u64(&h, t->nbytes);
        size_t sample = t->nbytes < 64 ? (size_t)t->nbytes : 64;
        hash_update(&h, t->data, sample);
        hash_update(&h, (const uint8_t *)t->data + t->nbytes - sample, sample);
    }
    return hash_final(&h);
}

/* ---------------------------------------------------------------- the plan */

/* What a state of this context holds, tensor by tensor. */
typedef struct state_plan {
    size_t n;            /* tensors */
    be_tensor **t;       /* (n) the context's state tensors, borrowed */
    uint64_t *rows;      /* (n) rows of each */
    uint64_t *rows_saved;/* (n) rows written: all for a ring, n_past otherwise */
    bool *ring;          /* (n) whether a tensor is a ring (rows reused modulo its size) */
    uint64_t row_bytes_max;
    size_t size;         /* bytes of the whole state */
} state_plan;

static void plan_free(state_plan *p) {
    elmi_free(p->t);
    elmi_free(p->rows);
    elmi_free(p->rows_saved);
    elmi_free(p->ring);
    memset(p, 0, sizeof *p);
}

static uint64_t row_bytes(const be_tensor *t) {
    return t->nb[1];
}

static uint32_t kv_type(const elm_context *ctx) {
    return ctx->params.mode == ELM_MODE_EXACT ? QT_F32 : QT_F16;
}

/* Sizes of a state of ctx holding n_past tokens with the given flags. */
static elm_status plan_state(elm_context *ctx, uint32_t n_past, uint32_t flags, state_plan *p) {
    memset(p, 0, sizeof *p);
    const uint32_t n_layer = ctx->model->hp.n_layer;
    p->t = elmi_calloc(2 * (size_t)n_layer + 1, sizeof *p->t);
    p->rows = elmi_calloc(2 * (size_t)n_layer + 1, sizeof *p->rows);
    p->rows_saved = elmi_calloc(2 * (size_t)n_layer + 1, sizeof *p->rows_saved);
    p->ring = elmi_calloc(2 * (size_t)n_layer + 1, sizeof *p->ring);
    if (!p->t || !p->rows || !p->rows_saved || !p->ring) {
        plan_free(p);
        return elmi_ctx_error(ctx, ELM_ERR_NO_MEMORY, "out of memory");
    }
    p->n = elmi_context_states(ctx, p->t, p->ring);
    size_t size = HEADER_BYTES + (size_t)n_past * 4 + p->n * ENTRY_BYTES;
    for (size_t i = 0; i < p->n; i++) {
        const be_tensor *t = p->t[i];
        p->rows[i] = (uint64_t)t->ne[1];
        p->rows_saved[i] = p->ring[i] ? p->rows[i] : n_past;
        if (row_bytes(t) > p->row_bytes_max) p->row_bytes_max = row_bytes(t);
        size += p->rows_saved[i] * row_bytes(t);
    }
    if (flags & FLAG_LOGITS) size += (size_t)ctx->model->hp.n_vocab * 4;
    if (flags & FLAG_SUMMARY) size += 16;
    p->size = size + 8;
    return ELM_OK;
}

/* --------------------------------------------------------------- writing */

/* Where a state goes: a caller's buffer or a file, hashed on the way. */
typedef struct sink {
    uint8_t *buf;
    size_t pos;
    FILE *f;
    hasher h;
    bool failed;
} sink;

static void put(sink *s, const void *data, size_t n) {
    hash_update(&s->h, data, n);
    if (s->f) {
        if (!s->failed && fwrite(data, 1, n, s->f) != n) s->failed = true;
    } else {
        memcpy(s->buf + s->pos, data, n);
    }
    s->pos += n;
}

static uint32_t state_flags(const elm_context *ctx) {
    return (ctx->n_logits_valid ? FLAG_LOGITS : 0) | (ctx->summary_valid ? FLAG_SUMMARY : 0);
}

static void put_header(sink *s, elm_context *ctx, const state_plan *p, uint32_t flags) {
    uint8_t hd[HEADER_BYTES] = {0};
    memcpy(hd, STATE_MAGIC, 8);
    wr32(hd + 8, STATE_VERSION);
    wr32(hd + 12, (uint32_t)ctx->params.mode);
    wr64(hd + 16, model_fingerprint(ctx->model));
    memcpy(hd + 24, ctx->model->arch_name, strnlen(ctx->model->arch_name, NAME_BYTES - 1));
    wr32(hd + 56, ctx->params.n_ctx);
    wr32(hd + 60, kv_type(ctx));
    wr32(hd + 64, ctx->n_past);
    wr32(hd + 68, ctx->ring_lo);
    wr32(hd + 72, (uint32_t)p->n);
    wr32(hd + 76, flags);
    wr32(hd + 80, ctx->model->hp.n_vocab);
    put(s, hd, sizeof hd);
    for (uint32_t i = 0; i < ctx->n_past; i++) {
        uint8_t b[4];
        wr32(b, (uint32_t)ctx->tokens[i]);
        put(s, b, 4);
    }
    for (size_t i = 0; i < p->n; i++) {
        uint8_t e[ENTRY_BYTES] = {0};
        memcpy(e, p->t[i]->name, strnlen(p->t[i]->name, NAME_BYTES - 1));
        wr32(e + 32, (uint32_t)p->t[i]->type);
        wr64(e + 40, row_bytes(p->t[i]));
        wr64(e + 48, p->rows[i]);
        wr64(e + 56, p->rows_saved[i]);
        put(s, e, sizeof e);
    }
}

/* The tensors' bytes, read from the backend through a staging buffer. */
static elm_status put_tensors(sink *s, elm_context *ctx, const state_plan *p) {
    size_t stage_cap = STAGE_BYTES > p->row_bytes_max ? STAGE_BYTES : (size_t)p->row_bytes_max;
    uint8_t *stage = elmi_malloc(stage_cap);
    if (!stage) return elmi_ctx_error(ctx, ELM_ERR_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < p->n; i++) {
        size_t total = (size_t)(p->rows_saved[i] * row_bytes(p->t[i]));
        for (size_t off = 0; off < total;) {
            size_t chunk = total - off < stage_cap ? total - off : stage_cap;
            elm_status st = ctx->be->iface->tensor_get(ctx->be, p->t[i], stage, off, chunk);
            if (st != ELM_OK) {
                elmi_free(stage);
                return elmi_ctx_error(ctx, st, "cannot read %s from %s", p->t[i]->name,
                                      ctx->device_id);
            }
            put(s, stage, chunk);
            off += chunk;
        }
    }
    elmi_free(stage);
    return ELM_OK;
}

static elm_status put_state(sink *s, elm_context *ctx, const state_plan *p, uint32_t flags) {
    hash_init(&s->h);
    put_header(s, ctx, p, flags);
    ELM_TRY(put_tensors(s, ctx, p));
    if (flags & FLAG_LOGITS) {
        const float *row = ctx->logits + (size_t)(ctx->n_logits_valid - 1) * ctx->model->hp.n_vocab;
        for (uint32_t i = 0; i < ctx->model->hp.n_vocab; i++) {
            uint32_t u;
            memcpy(&u, &row[i], 4);
            uint8_t b[4];
            wr32(b, u);
            put(s, b, 4);
        }
    }
    for (int i = 0; i < 4 && (flags & FLAG_SUMMARY); i++) {
        uint32_t u;
        memcpy(&u, &ctx->summary[i], 4);
        uint8_t b[4];
        wr32(b, u);
        put(s, b, 4);
    }
    uint8_t b[8];
    wr64(b, hash_final(&s->h));
    if (s->f) {
        if (!s->failed && fwrite(b, 1, 8, s->f) != 8) s->failed = true;
    } else {
        memcpy(s->buf + s->pos, b, 8);
    }
    s->pos += 8;
    return ELM_OK;
}

static elm_status check_usable(elm_context *ctx) {
    ctx->last_error[0] = 0;
    if (ctx->broken)
        return elmi_ctx_error(ctx, ELM_ERR_DEVICE, "the context is unusable after a device error");
    return ELM_OK;
}

elm_status elm_state_save_buffer(elm_context *ctx, void *buf, size_t cap, size_t *len) {
    if (!ctx) return ELM_ERR_INVALID_ARG;
    if (!len || (!buf && cap))
        return elmi_ctx_error(ctx, ELM_ERR_INVALID_ARG, "len is NULL, or buf is NULL with cap > 0");
    ELM_TRY(check_usable(ctx));
    uint32_t flags = state_flags(ctx);
    state_plan p;
    ELM_TRY(plan_state(ctx, ctx->n_past, flags, &p));
    *len = p.size;
    if (cap < p.size) {
        plan_free(&p);
        return elmi_ctx_error(ctx, ELM_ERR_BUFFER_TOO_SMALL,
                              "the state needs %zu bytes, the buffer has %zu", *len, cap);
    }
    sink s = {.buf = buf};
    elm_status st = put_state(&s, ctx, &p, flags);
    plan_free(&p);
    return st;
}

elm_status elm_state_save(elm_context *ctx, const char *path) {
    if (!ctx) return ELM_ERR_INVALID_ARG;
    if (!path) return elmi_ctx_error(ctx, ELM_ERR_INVALID_ARG, "path is NULL");
    ELM_TRY(check_usable(ctx));
    uint32_t flags = state_flags(ctx);
    state_plan p;
    ELM_TRY(plan_state(ctx, ctx->n_past, flags, &p));
    /* Written beside the target and renamed over it: a crash mid-write
     * leaves the previous state intact. */
    size_t tmp_len = strlen(path) + 16;
    char *tmp = elmi_malloc(tmp_len);
    if (!tmp) {
        plan_free(&p);
        return elmi_ctx_error(ctx, ELM_ERR_NO_MEMORY, "out of memory");
    }
    snprintf(tmp, tmp_len, "%s.tmp", path);
    sink s = {.f = fopen(tmp, "wb")};
    elm_status st = ELM_OK;
    if (!s.f) {
        st = elmi_ctx_error(ctx, ELM_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
        goto done;
    }
    st = put_state(&s, ctx, &p, flags);
    bool bad = fclose(s.f) != 0 || s.failed;
    if (st == ELM_OK && bad) st = elmi_ctx_error(ctx, ELM_ERR_IO, "cannot write %s", tmp);
    if (st == ELM_OK && rename(tmp, path) != 0)
        st = elmi_ctx_error(ctx, ELM_ERR_IO, "cannot rename %s to %s: %s", tmp, path,
                            strerror(errno));
    if (st != ELM_OK) remove(tmp);
done:
    elmi_free(tmp);
    plan_free(&p);
    return st;
}

/* --------------------------------------------------------------- reading */

static const char *mode_name(uint32_t mode) {
    return mode == ELM_MODE_EXACT ? "exact" : mode == ELM_MODE_FAST ? "fast" : "unknown";
}

/* The header's fields against this context: STATE_MISMATCH for a state of
 * another model, mode or size. */
static elm_status check_identity(elm_context *ctx, const uint8_t *hd) {
    char arch[NAME_BYTES + 1] = {0};
    memcpy(arch, hd + 24, NAME_BYTES);
    for (size_t i = 0; arch[i]; i++)
        if (arch[i] < 0x20 || arch[i] > 0x7e) arch[i] = '?';
    if (rd64(hd + 16) != model_fingerprint(ctx->model))
        return elmi_ctx_error(ctx, ELM_ERR_STATE_MISMATCH,
                              "the state was saved by another model (a %s model; this one is %s "
                              "%s): its fingerprint differs",
                              arch, ctx->model->arch_name, ctx->model->name ? ctx->model->name : "");
    uint32_t mode = rd32(hd + 12), n_ctx = rd32(hd + 56), kvt = rd32(hd + 60);
    if (mode != (uint32_t)ctx->params.mode)
        return elmi_ctx_error(ctx, ELM_ERR_STATE_MISMATCH,
                              "the state was saved in %s mode, this context runs in %s mode",
                              mode_name(mode), mode_name((uint32_t)ctx->params.mode));
    if (n_ctx != ctx->params.n_ctx)
        return elmi_ctx_error(ctx, ELM_ERR_STATE_MISMATCH,
                              "the state was saved with n_ctx %u, this context has n_ctx %u", n_ctx,
                              ctx->params.n_ctx);
    if (kvt != kv_type(ctx))
        return elmi_ctx_error(ctx, ELM_ERR_STATE_MISMATCH,
                              "the state's KV cache is %s, this context's is %s",
                              kvt < QT_COUNT ? elmi_qtype_name((int)kvt) : "of an unknown type",
                              elmi_qtype_name((int)kv_type(ctx)));
    return ELM_OK;
}

/* The tensor table against the plan of this context. */
static elm_status check_table(elm_context *ctx, const uint8_t *tab, const state_plan *p) {
    for (size_t i = 0; i < p->n; i++) {
        const uint8_t *e = tab + i * ENTRY_BYTES;
        const be_tensor *t = p->t[i];
        char name[NAME_BYTES + 1] = {0};
        memcpy(name, e, NAME_BYTES);
        if (strncmp(name, t->name, NAME_BYTES) || rd32(e + 32) != (uint32_t)t->type ||
            rd64(e + 40) != row_bytes(t))
            return elmi_ctx_error(ctx, ELM_ERR_FORMAT,
                                  "state tensor %zu is not %s as this model's context has it", i,
                                  t->name);
        if (rd64(e + 48) != p->rows[i])
            return elmi_ctx_error(ctx, ELM_ERR_STATE_MISMATCH,
                                  "the state's %s has %llu rows, this context's %llu (the "
                                  "contexts differ in n_batch)",
                                  t->name, (unsigned long long)rd64(e + 48),
                                  (unsigned long long)p->rows[i]);
        if (rd64(e + 56) != p->rows_saved[i])
            return elmi_ctx_error(ctx, ELM_ERR_FORMAT, "the state's %s holds %llu rows, not %llu",
                                  t->name, (unsigned long long)rd64(e + 56),
                                  (unsigned long long)p->rows_saved[i]);
    }
    return ELM_OK;
}

/* Everything about a state that can be checked without touching the
 * context: on success *p is its plan (the caller frees it). */
static elm_status validate(elm_context *ctx, const uint8_t *b, size_t len, state_plan *p) {
    if (len < HEADER_BYTES + 8 || memcmp(b, STATE_MAGIC, 8))
        return elmi_ctx_error(ctx, ELM_ERR_FORMAT, "not an edgelm state (no ELMSTATE header)");
    if (rd32(b + 8) != STATE_VERSION)
        return elmi_ctx_error(ctx, ELM_ERR_FORMAT, "state version %u; this edgelm reads version %u",
                              rd32(b + 8), STATE_VERSION);
    if (elmi_state_checksum(b, len - 8) != rd64(b + len - 8))
        return elmi_ctx_error(ctx, ELM_ERR_FORMAT,
                              "the state is damaged or truncated (checksum mismatch, %zu bytes)", len);
    ELM_TRY(check_identity(ctx, b));
    uint32_t n_past = rd32(b + 64), ring_lo = rd32(b + 68), flags = rd32(b + 76);
    if (n_past > ctx->params.n_ctx || ring_lo > ctx->params.n_ctx || (flags & ~3u) ||
        rd32(b + 80) != ctx->model->hp.n_vocab || rd32(b + 84) != 0)
        return elmi_ctx_error(ctx, ELM_ERR_FORMAT,
                              "the state's header is inconsistent (n_past %u, ring_lo %u, flags %u)",
                              n_past, ring_lo, flags);
    if ((flags & FLAG_LOGITS) && n_past == 0)
        return elmi_ctx_error(ctx, ELM_ERR_FORMAT, "the state has logits but no tokens");
    ELM_TRY(plan_state(ctx, n_past, flags, p));
    elm_status st = ELM_OK;
    if (rd32(b + 72) != p->n)
        st = elmi_ctx_error(ctx, ELM_ERR_FORMAT, "the state holds %u tensors, not %zu", rd32(b + 72),
                            p->n);
    else if (len < HEADER_BYTES + (size_t)n_past * 4 + p->n * ENTRY_BYTES + 8)
        st = elmi_ctx_error(ctx, ELM_ERR_FORMAT, "the state ends inside its tensor table");
    else
        st = check_table(ctx, b + HEADER_BYTES + (size_t)n_past * 4, p);
    if (st == ELM_OK && len != p->size)
        st = elmi_ctx_error(ctx, ELM_ERR_FORMAT, "the state has %zu bytes, not the %zu it describes",
                            len, p->size);
    for (uint32_t i = 0; st == ELM_OK && i < n_past; i++) {
        uint32_t tok = rd32(b + HEADER_BYTES + (size_t)i * 4);
        if (tok >= ctx->model->hp.n_vocab)
            st = elmi_ctx_error(ctx, ELM_ERR_FORMAT, "the state's token %u has id %u, outside [0, %u)",
                                i, tok, ctx->model->hp.n_vocab);
    }
    if (st != ELM_OK) plan_free(p);
    return st;
}

static void read_floats(float *dst, const uint8_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u = rd32(src + 4 * i);
        memcpy(&dst[i], &u, 4);
    }
}

/* Writes a validated state into the context. */
static elm_status apply(elm_context *ctx, const uint8_t *b, const state_plan *p) {
    uint32_t n_past = rd32(b + 64), flags = rd32(b + 76);
    const uint8_t *data = b + HEADER_BYTES + (size_t)n_past * 4 + p->n * ENTRY_BYTES;
    for (size_t i = 0; i < p->n; i++) {
        size_t bytes = (size_t)(p->rows_saved[i] * row_bytes(p->t[i]));
        elm_status st = bytes ? ctx->be->iface->tensor_set(ctx->be, p->t[i], data, 0, bytes) : ELM_OK;
        if (st != ELM_OK) {
            /* Half-written: the context forgets its tokens rather than mix states. */
            ctx->n_past = ctx->ring_lo = 0;
            ctx->n_logits_valid = 0;
            ctx->summary_valid = false;
            if (st == ELM_ERR_DEVICE) ctx->broken = true;
            return elmi_ctx_error(ctx, st, "cannot write %s to %s", p->t[i]->name, ctx->device_id);
        }
        data += bytes;
    }
    for (uint32_t i = 0; i < n_past; i++)
        ctx->tokens[i] = (elm_token)rd32(b + HEADER_BYTES + (size_t)i * 4);
    ctx->n_past = n_past;
    ctx->ring_lo = rd32(b + 68);
    ctx->n_logits_valid = 0;
    ctx->summary_valid = false;
    if (flags & FLAG_LOGITS) {
        read_floats(ctx->logits, data, ctx->model->hp.n_vocab);
        data += (size_t)ctx->model->hp.n_vocab * 4;
        ctx->n_logits_valid = 1;
    }
    if (flags & FLAG_SUMMARY) {
        read_floats(ctx->summary, data, 4);
        ctx->summary_valid = true;
    }
    return ELM_OK;
}

elm_status elm_state_load_buffer(elm_context *ctx, const void *buf, size_t len) {
    if (!ctx) return ELM_ERR_INVALID_ARG;
    if (!buf && len) return elmi_ctx_error(ctx, ELM_ERR_INVALID_ARG, "buf is NULL");
    ELM_TRY(check_usable(ctx));
    state_plan p = {0};
    ELM_TRY(validate(ctx, buf ? buf : "", len, &p));
    elm_status st = apply(ctx, buf, &p);
    plan_free(&p);
    return st;
}

/* The largest state this context can hold, to refuse absurd files before
 * reading them. */
static size_t max_state_size(elm_context *ctx) {
    state_plan p;
    if (plan_state(ctx, ctx->params.n_ctx, FLAG_LOGITS | FLAG_SUMMARY, &p) != ELM_OK) return 0;
    size_t size = p.size;
    plan_free(&p);
    return size;
}

elm_status elm_state_load(elm_context *ctx, const char *path) {
    if (!ctx) return ELM_ERR_INVALID_ARG;
    if (!path) return elmi_ctx_error(ctx, ELM_ERR_INVALID_ARG, "path is NULL");
    ELM_TRY(check_usable(ctx));
    FILE *f = fopen(path, "rb");
    if (!f) return elmi_ctx_error(ctx, ELM_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    elm_status st = ELM_OK;
    uint8_t *buf = NULL;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
        st = elmi_ctx_error(ctx, ELM_ERR_IO, "cannot read %s", path);
        goto done;
    }
    size_t max = max_state_size(ctx);
    if ((unsigned long)size > max) {
        st = elmi_ctx_error(ctx, ELM_ERR_FORMAT,
                            "%s has %ld bytes; a state of this context has at most %zu", path, size,
                            max);
        goto done;
    }
    buf = elmi_malloc(size ? (size_t)size : 1);
    if (!buf) {
        st = elmi_ctx_error(ctx, ELM_ERR_NO_MEMORY, "out of memory reading %s (%ld bytes)", path, size);
        goto done;
    }
    if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
        st = elmi_ctx_error(ctx, ELM_ERR_IO, "cannot read %s", path);
        goto done;
    }
    st = elm_state_load_buffer(ctx, buf, (size_t)size);
    if (st != ELM_OK) {
        char msg[ELM_ERR_LEN];
        snprintf(msg, sizeof msg, "%s", ctx->last_error);
        elmi_ctx_error(ctx, st, "%s: %s", path, msg);
    }
done:
    elmi_free(buf);
    fclose(f);
    return st;
}
