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
                           "tensor '%s' has type %s, expected F32 (as norms, biases, "
                           "RoPE factors and convolution kernels are)", name,
                           elmi_qtype_name(g->type));
    if (!elmi_be_tensor_init(t, g->type, g->ne[0], ne1 ? g->ne[1] : 1, 1, 1, name) ||
        elmi_be_tensor_nbytes(t) != g->nbytes)
        return elmi_errorf(b->err, b->err_size, ELM_ERR_FORMAT, "tensor '%s' has an invalid size",
                           name);
    t->data = (void *)g->data;
    return ELM_OK;
}

/* dst = rows [row0, row0 + n) of a bound 2-D tensor: the parts of a fused
 * tensor (phi3's attn_qkv and gate/up ffn_up), which are whole rows. */
static void bind_rows(be_tensor *dst, const be_tensor *src, int64_t row0, int64_t n,
                      const char *name) {
    *dst = *src;
    dst->ne[1] = n;
    for (int d = 2; d < 4; d++) dst->nb[d] = dst->nb[d - 1] * (size_t)dst->ne[d - 1];
    dst->data = (char *)src->data + (size_t)row0 * src->nb[1];
    snprintf(dst->name, sizeof dst->name, "%s", name);
}

#define NAME(s) (snprintf(name, sizeof name, "blk.%u." s, il), name)

static elm_status bind_attention(const binder *b, const elm_hparams *hp, uint32_t il,
                                 elm_layer *l) {
    const int64_t n_embd = hp->n_embd, n_q = (int64_t)hp->head_dim * hp->n_head;
    const int64_t n_kv = (int64_t)hp->head_dim * hp->n_head_kv;
    char name[96];
    if (hp->fused_qkv) {
        be_tensor qkv;
        ELM_TRY(bind(b, &qkv, NAME("attn_qkv.weight"), n_embd, n_q + 2 * n_kv, true, false));
        bind_rows(&l->wq, &qkv, 0, n_q, NAME("attn_qkv.weight[q]"));
        bind_rows(&l->wk, &qkv, n_q, n_kv, NAME("attn_qkv.weight[k]"));
        bind_rows(&l->wv, &qkv, n_q + n_kv, n_kv, NAME("attn_qkv.weight[v]"));
    } else {
        ELM_TRY(bind(b, &l->wq, NAME("attn_q.weight"), n_embd, n_q, true, false));
        ELM_TRY(bind(b, &l->wk, NAME("attn_k.weight"), n_embd, n_kv, true, false));
        ELM_TRY(bind(b, &l->wv, NAME("attn_v.weight"), n_embd, n_kv, true, false));
    }
    ELM_TRY(bind(b, &l->wo, NAME("attn_output.weight"), n_q, n_embd, true, false));
    bool bias = hp->has_bias_qkv;
    ELM_TRY(bind(b, &l->bq, NAME("attn_q.bias"), n_q, 0, bias, true));
    ELM_TRY(bind(b, &l->bk, NAME("attn_k.bias"), n_kv, 0, bias, true));
    ELM_TRY(bind(b, &l->bv, NAME("attn_v.bias"), n_kv, 0, bias, true));
    bool qk = hp->qk_norm;
    ELM_TRY(bind(b, &l->q_norm, NAME("attn_q_norm.weight"), hp->head_dim, 0, qk, true));
    ELM_TRY(bind(b, &l->k_norm, NAME("attn_k_norm.weight"), hp->head_dim, 0, qk, true));
    return ELM_OK;
}

static elm_status bind_conv(const binder *b, const elm_hparams *hp, uint32_t il, elm_layer *l) {
    const int64_t n_embd = hp->n_embd;
    char name[96];
    ELM_TRY(bind(b, &l->conv_in, NAME("shortconv.in_proj.weight"), n_embd, 3 * n_embd, true,
                 false));
    ELM_TRY(bind(b, &l->conv_w, NAME("shortconv.conv.weight"), hp->conv_L, n_embd, true, true));
    ELM_TRY(bind(b, &l->conv_out, NAME("shortconv.out_proj.weight"), n_embd, n_embd, true,
                 false));
    return ELM_OK;
}

static elm_status bind_layer(const binder *b, const elm_hparams *hp, uint32_t il, elm_layer *l) {
    const int64_t n_embd = hp->n_embd, n_ff = hp->n_ff;
    char name[96];
    ELM_TRY(bind(b, &l->attn_norm, NAME("attn_norm.weight"), n_embd, 0, true, true));
    if (hp->layer[il].attn)
        ELM_TRY(bind_attention(b, hp, il, l));
    else
        ELM_TRY(bind_conv(b, hp, il, l));
    ELM_TRY(bind(b, &l->ffn_norm, NAME("ffn_norm.weight"), n_embd, 0, true, true));
    if (hp->fused_gate_up) {
        be_tensor gate_up;
        ELM_TRY(bind(b, &gate_up, NAME("ffn_up.weight"), n_embd, 2 * n_ff, true, false));
        bind_rows(&l->w_gate, &gate_up, 0, n_ff, NAME("ffn_up.weight[gate]"));
        bind_rows(&l->w_up, &gate_up, n_ff, n_ff, NAME("ffn_up.weight[up]"));
    } else {
        ELM_TRY(bind(b, &l->w_gate, NAME("ffn_gate.weight"), n_embd, n_ff, true, false));
        ELM_TRY(bind(b, &l->w_up, NAME("ffn_up.weight"), n_embd, n_ff, true, false));
    }
    ELM_TRY(bind(b, &l->w_down, NAME("ffn_down.weight"), n_ff, n_embd, true, false));
    bool post = hp->post_norms;
    ELM_TRY(bind(b, &l->post_attn_norm, NAME("post_attention_norm.weight"), n_embd, 0, post, true));
    ELM_TRY(bind(b, &l->post_ffn_norm, NAME("post_ffw_norm.weight"), n_embd, 0, post, true));
    return ELM_OK;
}
#undef NAME

static elm_status bind_rope_factors(const binder *b, const elm_hparams *hp, elm_weights *w) {
    ELM_TRY(bind(b, &w->rope_freqs, "rope_freqs.weight", hp->n_rot / 2, 0, false, true));
    w->has_rope_freqs = w->rope_freqs.data != NULL;
    ELM_TRY(bind(b, &w->rope_long, "rope_factors_long.weight", hp->n_rot / 2, 0, false, true));
    ELM_TRY(bind(b, &w->rope_short, "rope_factors_short.weight", hp->n_rot / 2, 0, false, true));
    bool has_long = w->rope_long.data != NULL, has_short = w->rope_short.data != NULL;
    if (has_long != has_short)
        return elmi_errorf(b->err, b->err_size, ELM_ERR_FORMAT,
                           "tensor 'rope_factors_%s.weight' is missing: LongRoPE needs both the "
                           "long and the short factors", has_long ? "short" : "long");
    w->has_longrope = has_long;
    if (w->has_longrope && w->has_rope_freqs)
        return elmi_errorf(b->err, b->err_size, ELM_ERR_FORMAT,
                           "the file has both rope_freqs and LongRoPE factors");
    return ELM_OK;
}

elm_status elmi_weights_bind(elm_model *m, char *err, size_t err_size) {
    const elm_hparams *hp = &m->hp;
    elm_weights *w = &m->w;
    binder b = {m->gguf, err, err_size};
    ELM_TRY(bind(&b, &w->tok_embd, "token_embd.weight", hp->n_embd, hp->n_vocab, true, false));
    /* lfm2 names its final norm after the embeddings. */
    const char *out_norm = hp->arch == ELM_ARCH_LFM2 ? "token_embd_norm.weight" : "output_norm.weight";
    ELM_TRY(bind(&b, &w->output_norm, out_norm, hp->n_embd, 0, true, true));
    ELM_TRY(bind(&b, &w->output, "output.weight", hp->n_embd, hp->n_vocab, false, false));
    w->tied = w->output.data == NULL;
    if (w->tied) w->output = w->tok_embd;
    ELM_TRY(bind_rope_factors(&b, hp, w));
    w->layers = elmi_calloc(hp->n_layer, sizeof *w->layers);
    if (!w->layers) return elmi_errorf(err, err_size, ELM_ERR_NO_MEMORY, "out of memory");
    for (uint32_t il = 0; il < hp->n_layer; il++) ELM_TRY(bind_layer(&b, hp, il, &w->layers[il]));
    return ELM_OK;
}
