/* op_rope_kv.c: ROPE q, ROPE k, KV_STORE K <- k, KV_STORE V <- v (the
 * attention layer's nodes between the projections and ATTENTION, see
 * engine/graph.c) as one dispatch of shaders/rope_kv.comp. Both ropes are
 * in place, so the group leaves q and k rotated and both caches written,
 * as the four nodes would. */
#include <string.h>

#include "backends/vulkan/fuse.h"
#include "quant/quant.h"

/* The group's nodes and tensors: q and k are the ropes' (head_dim, n_head,
 * T) views, k_row the K store's (n, T) view of k's bytes. */
typedef struct rope_kv {
    const be_node *rq, *rk, *sk, *sv;
    const be_tensor *q, *k, *k_row, *v, *kc, *vc;
} rope_kv;

static bool in_place(const be_node *nd) {
    const be_tensor *x = nd->src[0], *d = nd->dst;
    return elmi_fuse_same_bytes(x, d) && !memcmp(x->ne, d->ne, sizeof x->ne) && !memcmp(x->nb, d->nb, sizeof x->nb);
}

static bool same_opt(const be_tensor *a, const be_tensor *b) {
    return (!a && !b) || elmi_fuse_same(a, b);
}

static bool same_params(const be_node *a, const be_node *b) {
    return !memcmp(a->iparams, b->iparams, sizeof a->iparams) && !memcmp(a->fparams, b->fparams, sizeof a->fparams);
}

static bool is_pattern(const be_graph *g, int i, rope_kv *r) {
    if (i + 3 >= g->n_nodes) return false;
    const be_node *nd = &g->nodes[i];
    if (nd[0].op != BE_OP_ROPE || nd[1].op != BE_OP_ROPE || nd[2].op != BE_OP_KV_STORE || nd[3].op != BE_OP_KV_STORE)
        return false;
    *r = (rope_kv){&nd[0], &nd[1], &nd[2], &nd[3], nd[0].src[0], nd[1].src[0], nd[2].src[0], nd[3].src[0],
                   nd[2].dst, nd[3].dst};
    if (!r->q || !r->k || !r->k_row || !r->v || !r->kc || !r->vc) return false;
    return in_place(r->rq) && in_place(r->rk) && same_params(r->rq, r->rk) &&
           same_opt(r->rq->src[1], r->rk->src[1]) && same_opt(r->rq->src[2], r->rk->src[2]) &&
           elmi_fuse_same_bytes(r->k, r->k_row) && same_params(r->sk, r->sv) && r->kc->type == r->vc->type;
}

/* Node checks of the planners alone; a malformed node is left to them. */
static elm_status check_nodes(vk_planner *p, int i, const rope_kv *r, pc_rope *rope, bool *words) {
    const be_node *nd[4] = {r->rq, r->rk, r->sk, r->sv};
    pc_rope other;
    elm_status st = ELM_OK;
    for (int j = 0; j < 4 && st == ELM_OK; j++) {
        p->node_index = i + j;
        st = j < 2 ? elmi_op_rope_check(p, nd[j], j ? &other : rope) : elmi_op_kv_check(p, nd[j], words);
    }
    p->node_index = i;
    return st == ELM_ERR_INVALID_ARG ? ELM_ERR_UNSUPPORTED : st;
}

/* What one dispatch can do: k's heads dense and k_row the same values,
 * one token count, one cache height, and no tensor written over another's
 * bytes (the nodes alone would see each other's writes). */
static bool fits(const rope_kv *r) {
    const be_tensor *q = r->q, *k = r->k, *kr = r->k_row, *v = r->v;
    int64_t T = q->ne[2];
    if (k->ne[0] != q->ne[0] || k->nb[1] != (size_t)k->ne[0] * 4 || k->ne[0] * k->ne[1] != kr->ne[0] ||
        k->ne[2] != T || kr->ne[1] != T || kr->nb[1] != k->nb[2] || v->ne[1] != T)
        return false;
    if (r->kc->ne[1] != r->vc->ne[1] || q->nb[1] % 4 || q->nb[2] % 4 || k->nb[2] % 4 || v->nb[1] % 4) return false;
    const be_tensor *rw[4] = {q, k, r->kc, r->vc}, *all[5] = {q, k, v, r->kc, r->vc};
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 5; b++)
            if (rw[a] != all[b] && elmi_fuse_overlap(rw[a], all[b])) return false;
    return true;
}

static pc_rope_kv push_constants(const rope_kv *r, const pc_rope *rope, uint32_t unit) {
    const be_tensor *q = r->q, *v = r->v;
    return (pc_rope_kv){
        .head_dim = rope->head_dim, .n_head = (uint32_t)q->ne[1], .n_head_kv = (uint32_t)r->k->ne[1],
        .v_n = (uint32_t)v->ne[0], .q_rs = (uint32_t)(q->nb[1] / 4), .q_ts = (uint32_t)(q->nb[2] / 4),
        .k_ts = (uint32_t)(r->k->nb[2] / 4), .v_ts = (uint32_t)(v->nb[1] / 4),
        .kc_stride = (uint32_t)(r->kc->nb[1] / unit), .vc_stride = (uint32_t)(r->vc->nb[1] / unit),
        .ring_rows = r->sk->iparams[1] ? (uint32_t)r->kc->ne[1] : VK_NO_RING,
        .neox = rope->neox, .n_rot = rope->n_rot, .has_ff = rope->has_ff, .yarn = rope->yarn,
        .log2_theta_scale = rope->log2_theta_scale, .freq_scale = rope->freq_scale,
        .ext_factor = rope->ext_factor, .corr_low = rope->corr_low, .corr_high = rope->corr_high,
        .mscale = rope->mscale};
}

/* Byte views of q, positions, frequency factors, k, v and the caches, and
 * the bytes one token of q, k and v spans. */
typedef struct rope_kv_views {
    tview q, pos, ff, k, v, kc, vc;
    VkDeviceSize wq, wk, wv;
} rope_kv_views;

static elm_status resolve(vk_planner *p, const rope_kv *r, rope_kv_views *w) {
    const be_tensor *ff = r->rq->src[2];
    ELM_TRY(elmi_op_resolve(p, r->q, "q", &w->q));
    ELM_TRY(elmi_op_resolve(p, r->rq->src[1], "positions", &w->pos));
    if (ff) ELM_TRY(elmi_op_resolve(p, ff, "frequency factors", &w->ff));
    ELM_TRY(elmi_op_resolve(p, r->k, "k", &w->k));
    ELM_TRY(elmi_op_resolve(p, r->v, "v", &w->v));
    ELM_TRY(elmi_op_resolve(p, r->kc, "K cache", &w->kc));
    ELM_TRY(elmi_op_resolve(p, r->vc, "V cache", &w->vc));
    const be_tensor *q = r->q;
    w->wq = (q->ne[1] - 1) * q->nb[1] + q->ne[0] * 4;
    w->wk = r->k->nb[1] * r->k->ne[1];
    w->wv = r->v->ne[0] * 4;
    VkDeviceSize budget = elmi_op_window_budget(p);
    if (w->kc.extent > budget || w->vc.extent > budget)
        return elmi_op_unsupported(p, "the cache exceeds maxStorageBufferRange");
    return ELM_OK;
}

/* Slots 0, 1, 2, 3: q, positions, frequency factors, k (bindings 0..3);
 * 4, 5, 6: v, K cache, V cache (bindings 5..7). */
static elm_status emit_chunk(vk_planner *p, const rope_kv *r, const rope_kv_views *w, pc_rope_kv pc,
                             const char *shader, uint64_t items, int64_t t0, int64_t n) {
    const be_tensor *q = r->q, *k = r->k, *v = r->v;
    uint32_t unit = r->kc->type == QT_F16 ? 2 : 4, wg = elmi_op_wg_size(p, WG_DEFAULT);
    disp_build db;
    elmi_op_disp_init(p, &db);
    db.shader = shader;
    db.spec[0] = wg, db.spec[1] = 1, db.n_spec = 2;
    db.d.written = 1u << 0 | 1u << 3 | 1u << 5 | 1u << 6;
    pc.tok0 = (uint32_t)t0;
    ELM_TRY(elmi_op_bind_view(p, &w->q, t0 * q->nb[2], (t0 + n - 1) * q->nb[2] + w->wq, 4, &db.d.b[0], &pc.q_base));
    ELM_TRY(elmi_op_bind_view(p, &w->pos, t0 * 4, (t0 + n) * 4, 4, &db.d.b[1], &pc.pos_base));
    if (r->rq->src[2]) ELM_TRY(elmi_op_bind_view(p, &w->ff, 0, pc.n_rot / 2 * 4, 4, &db.d.b[2], &pc.ff_base));
    ELM_TRY(elmi_op_bind_view(p, &w->k, t0 * k->nb[2], (t0 + n - 1) * k->nb[2] + w->wk, 4, &db.d.b[3], &pc.k_base));
    ELM_TRY(elmi_op_bind_view(p, &w->v, t0 * v->nb[1], (t0 + n - 1) * v->nb[1] + w->wv, 4, &db.d.b[4], &pc.v_base));
    ELM_TRY(elmi_op_bind_view(p, &w->kc, 0, w->kc.extent, unit, &db.d.b[5], &pc.kc_base));
    ELM_TRY(elmi_op_bind_view(p, &w->vc, 0, w->vc.extent, unit, &db.d.b[6], &pc.vc_base));
    ELM_TRY(elmi_op_set_groups(p, &db, (items + wg - 1) / wg, (uint64_t)n));
    return elmi_op_emit(p, &db, &pc, sizeof pc);
}

elm_status elmi_fuse_rope_kv(vk_planner *p, const be_graph *g, int i, int *n) {
    rope_kv r;
    pc_rope rope;
    bool words;
    *n = 0;
    if (!is_pattern(g, i, &r)) return ELM_OK;
    ELM_TRY(check_nodes(p, i, &r, &rope, &words));
    if (!fits(&r)) return ELM_OK;
    /* A NEOX pair's halves lie n_rot / 2 apart; with words, pairs go two by two. */
    if (words && rope.neox && rope.n_rot % 4) return elmi_op_unsupported(p, "NEOX n_rot %u into F16 words", rope.n_rot);
    rope_kv_views w;
    ELM_TRY(resolve(p, &r, &w));
    bool f16 = r.kc->type == QT_F16;
    pc_rope_kv pc = push_constants(&r, &rope, f16 ? 2 : 4);
    ELM_TRY(elmi_vk_plan_add_dyn(p->plan, i + 2, &pc.k_dyn));
    ELM_TRY(elmi_vk_plan_add_dyn(p->plan, i + 3, &pc.v_dyn));
    VkDeviceSize strides[4] = {r.q->nb[2], r.k->nb[2], r.v->nb[1], 4}, widths[4] = {w.wq, w.wk, w.wv, 4};
    int64_t T = r.q->ne[2], chunk = elmi_op_token_chunk(p, T, strides, widths, 4);
    if (chunk < 1) return elmi_op_unsupported(p, "a token's q, k or v exceeds maxStorageBufferRange");
    const char *shader = !f16 ? "rope_kv_f32" : words ? "rope_kv_f16_u32" : "rope_kv_f16_s16";
    uint64_t items = (uint64_t)(rope.head_dim / 2) * (pc.n_head + pc.n_head_kv) + (words ? pc.v_n / 2 : pc.v_n);
    for (int64_t t0 = 0; t0 < T; t0 += chunk)
        ELM_TRY(emit_chunk(p, &r, &w, pc, shader, items, t0, T - t0 < chunk ? T - t0 : chunk));
    p->label = 1 + BE_OP_ROPE;
    *n = 4;
    return ELM_OK;
}
