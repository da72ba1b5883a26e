#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/status.h"
#include "engine/internal.h"
#include "quant/quant.h"

typedef struct binder {
    const gguf_file *f;
    char *err;
    size_t err_size;
} binder;

static void shape_str(const int64_t *ne, uint32_t n, char *buf, size_t cap) {
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (uint32_t i = 0; i < n && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? ", " : "", (long long)ne[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

/* Binds tensor `name` with the expected shape (ne1 = 0 for a vector). A
 * missing optional tensor leaves *t zeroed and returns ELM_OK. */
static elm_status bind(const binder *b, be_tensor *t, const char *name, int64_t ne0, int64_t ne1,
                       bool required, bool f32_only) {
    memset(t, 0, sizeof *t);
    const gguf_tensor *g = elmi_gguf_find_tensor(b->f, name);
    if (!g) {
        if (!required) return ELM_OK;
        return elmi_errorf(b->err, b->err_size, ELM_ERR_FORMAT, "missing tensor '%s'", name);
    }
    uint32_t want_dims = ne1 ? 2 : 1;
    int64_t want[2] = {ne0, ne1};
    bool ok = g->n_dims == want_dims && g->ne[0] == ne0 && (ne1 == 0 || g->ne[1] == ne1);
    for (uint32_t i = want_dims; i < GGUF_MAX_DIMS; i++) ok = ok && g->ne[i] == 1;
    if (!ok) {
        char got[96], exp[96];
        shape_str(g->ne, g->n_dims, got, sizeof got);
        shape_str(want, want_dims, exp, sizeof exp);
        return elmi_errorf(b->err, b->err_size, ELM_ERR_FORMAT,
                           "tensor '%s' has shape %s, expected %s", name, got, exp);
    }
    if (!elmi_qtype_supported(g->type))
        return elmi_errorf(b->err, b->err_size, ELM_ERR_UNSUPPORTED,
                           "tensor '%s' has unsupported type %s", name, elmi_qtype_name(g->type));
    if (f32_only && g->type != QT_F32)
        return elmi_errorf(b->err, b->err_size, ELM_ERR_UNSUPPORTED,
                           "tensor '%s' has type %s; norms and biases must be F32", name,
                           elmi_qtype_name(g->type));
    if (!elmi_be_tensor_init(t, g->type, g->ne[0], ne1 ? g->ne[1] : 1, 1, 1, name) ||
        elmi_be_tensor_nbytes(t) != g->nbytes)
        return elmi_errorf(b->err, b->err_size, ELM_ERR_FORMAT, "tensor '%s' has an invalid size",
                           name);
    t->data = (void *)g->data;
    return ELM_OK;
}

static elm_status bind_layer(const binder *b, const elm_hparams *hp, uint32_t il, elm_layer *l) {
    const int64_t n_embd = hp->n_embd, n_q = (int64_t)hp->head_dim * hp->n_head;
    const int64_t n_kv = (int64_t)hp->head_dim * hp->n_head_kv, n_ff = hp->n_ff;
    char name[96];
#define NAME(s) (snprintf(name, sizeof name, "blk.%u." s, il), name)
    ELM_TRY(bind(b, &l->attn_norm, NAME("attn_norm.weight"), n_embd, 0, true, true));
    ELM_TRY(bind(b, &l->wq, NAME("attn_q.weight"), n_embd, n_q, true, false));
    ELM_TRY(bind(b, &l->wk, NAME("attn_k.weight"), n_embd, n_kv, true, false));
    ELM_TRY(bind(b, &l->wv, NAME("attn_v.weight"), n_embd, n_kv, true, false));
    ELM_TRY(bind(b, &l->wo, NAME("attn_output.weight"), n_q, n_embd, true, false));
    ELM_TRY(bind(b, &l->ffn_norm, NAME("ffn_norm.weight"), n_embd, 0, true, true));
    ELM_TRY(bind(b, &l->w_gate, NAME("ffn_gate.weight"), n_embd, n_ff, true, false));
    ELM_TRY(bind(b, &l->w_up, NAME("ffn_up.weight"), n_embd, n_ff, true, false));
    ELM_TRY(bind(b, &l->w_down, NAME("ffn_down.weight"), n_ff, n_embd, true, false));
    bool bias = hp->has_bias_qkv;
    ELM_TRY(bind(b, &l->bq, NAME("attn_q.bias"), n_q, 0, bias, true));
    ELM_TRY(bind(b, &l->bk, NAME("attn_k.bias"), n_kv, 0, bias, true));
    ELM_TRY(bind(b, &l->bv, NAME("attn_v.bias"), n_kv, 0, bias, true));
#undef NAME
    return ELM_OK;
}

elm_status elmi_weights_bind(elm_model *m, char *err, size_t err_size) {
    const elm_hparams *hp = &m->hp;
    elm_weights *w = &m->w;
    binder b = {m->gguf, err, err_size};
    ELM_TRY(bind(&b, &w->tok_embd, "token_embd.weight", hp->n_embd, hp->n_vocab, true, false));
    ELM_TRY(bind(&b, &w->output_norm, "output_norm.weight", hp->n_embd, 0, true, true));
    ELM_TRY(bind(&b, &w->output, "output.weight", hp->n_embd, hp->n_vocab, false, false));
    w->tied = w->output.data == NULL;
    if (w->tied) w->output = w->tok_embd;
    ELM_TRY(bind(&b, &w->rope_freqs, "rope_freqs.weight", hp->n_rot / 2, 0, false, true));
    w->has_rope_freqs = w->rope_freqs.data != NULL;
    w->layers = elmi_calloc(hp->n_layer, sizeof *w->layers);
    if (!w->layers) return elmi_errorf(err, err_size, ELM_ERR_NO_MEMORY, "out of memory");
    for (uint32_t il = 0; il < hp->n_layer; il++) ELM_TRY(bind_layer(&b, hp, il, &w->layers[il]));
    return ELM_OK;
}
