/* graph.c: the transformer forward pass as a backend graph. */
#include <math.h>
#include <string.h>

#include "engine/internal.h"

typedef struct builder {
    be_node *nodes;
    int n, cap;
} builder;

static be_node *add_node(builder *b, be_op op, be_tensor *dst, be_tensor *s0, be_tensor *s1,
                         be_tensor *s2) {
    if (b->n >= b->cap) return NULL;
    be_node *nd = &b->nodes[b->n++];
    memset(nd, 0, sizeof *nd);
    nd->op = op;
    nd->dst = dst;
    nd->src[0] = s0;
    nd->src[1] = s1;
    nd->src[2] = s2;
    return nd;
}

/* Sets the token dimension (the outermost used one) of t to n. */
static void set_tokens(be_tensor *t, int dim, int64_t n) {
    t->ne[dim] = n;
    for (int d = 2; d < 4; d++) t->nb[d] = t->nb[d - 1] * (size_t)t->ne[d - 1];
}

static be_tensor *opt(be_tensor *t) {
    return t->data || t->buf ? t : NULL;
}

static void add_norm(builder *b, elm_context *ctx, be_tensor *dst, be_tensor *src, be_tensor *w) {
    be_node *nd = add_node(b, BE_OP_RMS_NORM, dst, src, w, NULL);
    if (nd) nd->fparams[0] = ctx->model->hp.rms_eps;
}

static void add_rope(builder *b, elm_context *ctx, be_tensor *t, uint32_t il) {
    const elm_hparams *hp = &ctx->model->hp;
    bool swa = hp->layer[il].swa;
    be_node *nd = add_node(b, BE_OP_ROPE, t, t, &ctx->g.pos, (be_tensor *)ctx->rope_factors);
    if (!nd) return;
    nd->iparams[0] = hp->rope_mode;
    nd->iparams[1] = (int32_t)hp->n_rot;
    nd->iparams[2] = (int32_t)hp->rope_n_ctx_orig;
    /* Sliding-window layers (gemma3) rotate with their own base, unscaled. */
    nd->fparams[0] = swa ? hp->rope_theta_swa : hp->rope_theta;
    nd->fparams[1] = swa ? 1.0f : hp->rope_freq_scale;
    nd->fparams[2] = swa ? 0.0f : hp->yarn_ext_factor;
    nd->fparams[3] = hp->yarn_attn_factor;
    nd->fparams[4] = hp->yarn_beta_fast;
    nd->fparams[5] = hp->yarn_beta_slow;
}

/* Self-attention of layer il from g->xb into g->proj. */
static void add_attention(builder *b, elm_context *ctx, uint32_t il) {
    const elm_hparams *hp = &ctx->model->hp;
    elm_layer *l = &ctx->model->w.layers[il];
    elm_graph_bufs *g = &ctx->g;
    const elm_layer_kind *kind = &hp->layer[il];
    be_tensor *K = &ctx->k_cache[il], *V = &ctx->v_cache[il];
    const bool ring = kind->swa && K->ne[1] < (int64_t)ctx->params.n_ctx;
    be_node *nd;
    add_node(b, BE_OP_MUL_MAT, &g->q, &l->wq, &g->xb, opt(&l->bq));
    add_node(b, BE_OP_MUL_MAT, &g->k, &l->wk, &g->xb, opt(&l->bk));
    add_node(b, BE_OP_MUL_MAT, &g->v, &l->wv, &g->xb, opt(&l->bv));
    if (hp->qk_norm) {
        add_norm(b, ctx, &g->q3, &g->q3, &l->q_norm);
        add_norm(b, ctx, &g->k3, &g->k3, &l->k_norm);
    }
    if (kind->rope) {
        add_rope(b, ctx, &g->q3, il);
        add_rope(b, ctx, &g->k3, il);
    }
    if ((nd = add_node(b, BE_OP_KV_STORE, K, &g->k, NULL, NULL))) {
        nd->iparams[0] = (int32_t)ctx->n_past;
        nd->iparams[1] = ring;
    }
    if ((nd = add_node(b, BE_OP_KV_STORE, V, &g->v, NULL, NULL))) {
        nd->iparams[0] = (int32_t)ctx->n_past;
        nd->iparams[1] = ring;
    }
    if ((nd = add_node(b, BE_OP_ATTENTION, &g->att, &g->q3, K, V))) {
        nd->iparams[0] = (int32_t)ctx->n_past;
        nd->iparams[1] = (int32_t)hp->n_head_kv;
        nd->iparams[2] = kind->swa ? (int32_t)hp->n_swa : 0;
        nd->iparams[3] = ring;
        nd->fparams[0] = hp->attn_scale;
        nd->fparams[1] = hp->attn_softcap;
    }
    add_node(b, BE_OP_MUL_MAT, &g->proj, &l->wo, &g->att, NULL);
}

/* The gated short convolution of layer il (lfm2) from g->xb into g->proj. */
static void add_shortconv(builder *b, elm_context *ctx, uint32_t il) {
    elm_layer *l = &ctx->model->w.layers[il];
    elm_graph_bufs *g = &ctx->g;
    add_node(b, BE_OP_MUL_MAT, &g->bcx, &l->conv_in, &g->xb, NULL);
    be_node *nd = add_node(b, BE_OP_SHORTCONV, &g->conv, &g->bcx, &l->conv_w, &ctx->conv_state[il]);
    if (nd) nd->iparams[0] = (int32_t)ctx->n_past;
    add_node(b, BE_OP_MUL_MAT, &g->proj, &l->conv_out, &g->conv, NULL);
}

static void add_layer(builder *b, elm_context *ctx, uint32_t il) {
    const elm_hparams *hp = &ctx->model->hp;
    elm_layer *l = &ctx->model->w.layers[il];
    elm_graph_bufs *g = &ctx->g;
    be_node *nd;
    add_norm(b, ctx, &g->xb, &g->x, &l->attn_norm);
    if (hp->layer[il].attn)
        add_attention(b, ctx, il);
    else
        add_shortconv(b, ctx, il);
    if (hp->post_norms) add_norm(b, ctx, &g->proj, &g->proj, &l->post_attn_norm);
    add_node(b, BE_OP_ADD, &g->x, &g->x, &g->proj, NULL);
    add_norm(b, ctx, &g->xb, &g->x, &l->ffn_norm);
    add_node(b, BE_OP_MUL_MAT, &g->gate, &l->w_gate, &g->xb, NULL);
    add_node(b, BE_OP_MUL_MAT, &g->up, &l->w_up, &g->xb, NULL);
    if ((nd = add_node(b, BE_OP_GLU, &g->gate, &g->gate, &g->up, NULL))) nd->iparams[0] = hp->ffn_act;
    add_node(b, BE_OP_MUL_MAT, &g->proj, &l->w_down, &g->gate, NULL);
    if (hp->post_norms) add_norm(b, ctx, &g->proj, &g->proj, &l->post_ffn_norm);
    add_node(b, BE_OP_ADD, &g->x, &g->x, &g->proj, NULL);
}

/* Points x_out/xb_out at the rows whose logits are wanted. */
static void set_outputs(elm_graph_bufs *g, uint32_t n, bool all_logits) {
    uint32_t n_out = all_logits ? n : 1;
    size_t first = all_logits ? 0 : (size_t)(n - 1);
    be_tensor *views[2][2] = {{&g->x_out, &g->x}, {&g->xb_out, &g->xb}};
    for (int i = 0; i < 2; i++) {
        be_tensor *v = views[i][0], *base = views[i][1];
        *v = *base;
        v->offs = base->offs + first * base->nb[1];
        if (base->data) v->data = (char *)base->data + first * base->nb[1];
        set_tokens(v, 1, n_out);
    }
    set_tokens(&g->logits, 1, n_out);
}

int elmi_graph_build(elm_context *ctx, uint32_t n, elm_output output, be_graph *out) {
    bool all_logits = output == ELM_OUT_ALL;
    elm_graph_bufs *g = &ctx->g;
    const elm_weights *w = &ctx->model->w;
    set_tokens(&g->ids, 0, n);
    set_tokens(&g->pos, 0, n);
    be_tensor *per_token[] = {&g->x,   &g->xb,  &g->q,   &g->k,    &g->v, &g->att,
                              &g->proj, &g->gate, &g->up, &g->bcx, &g->conv};
    for (size_t i = 0; i < sizeof per_token / sizeof *per_token; i++) set_tokens(per_token[i], 1, n);
    set_tokens(&g->q3, 2, n);
    set_tokens(&g->k3, 2, n);
    set_outputs(g, n, all_logits);

    builder b = {ctx->nodes, 0, ctx->nodes_cap};
    const elm_hparams *hp = &ctx->model->hp;
    be_node *nd;
    add_node(&b, BE_OP_GET_ROWS, &g->x, (be_tensor *)&w->tok_embd, &g->ids, NULL);
    if (hp->embd_scale != 1.0f && (nd = add_node(&b, BE_OP_SCALE, &g->x, &g->x, NULL, NULL)))
        nd->fparams[0] = hp->embd_scale;
    for (uint32_t il = 0; il < hp->n_layer; il++) add_layer(&b, ctx, il);
    add_norm(&b, ctx, &g->xb_out, &g->x_out, (be_tensor *)&w->output_norm);
    add_node(&b, BE_OP_MUL_MAT, &g->logits, (be_tensor *)&w->output, &g->xb_out, NULL);
    if (hp->final_softcap > 0 && (nd = add_node(&b, BE_OP_SCALE, &g->logits, &g->logits, NULL, NULL))) {
        nd->fparams[0] = 1.0f;
        nd->fparams[1] = hp->final_softcap;
    }
    if (output == ELM_OUT_SUMMARY) add_node(&b, BE_OP_ARGMAX, &g->summary, &g->logits, NULL, NULL);
    out->nodes = ctx->nodes;
    out->n_nodes = b.n;
    out->exact = ctx->params.mode == ELM_MODE_EXACT;
    return b.n < b.cap ? b.n : -1;
}
