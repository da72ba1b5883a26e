/* ops_attention.c: planning of BE_OP_ATTENTION.
 *
 * Flash attention (shaders/flash_attn.comp) when the head size is whole
 * vec4s and the caches are vec4-aligned: a workgroup takes the query heads
 * of one GQA group (or as many of them as fit) for a block of tokens, so
 * every K/V row it reads serves all those query rows. Its shared memory
 * (queries, partial dots, scores) is sized to fit 16 KiB whatever the
 * device offers. Where the device has subgroup shuffles and a key's team
 * of lanes fits one subgroup, the _sg variant sums the team's partial dots
 * and each row's softmax max and sum by butterflies in registers, which
 * also frees the partial dots' shared memory for more query rows. With
 * an F16 cache and several query rows per workgroup, the _vt variant
 * stages each step's V rows in shared memory as packed halves, so the
 * rows read them there rather than each from the cache: in prefill
 * blocks, where on lavapipe it measured 1.2x faster than the direct
 * loads; at decode it measured even, so decode keeps the direct loads
 * (docs/measurements.md). At
 * decode (one token block) over a long cache the keys are split into
 * chunks, each a workgroup, and flash_attn_reduce.comp merges them; the
 * chunks live in a plan scratch segment. The split count is fixed when
 * the plan is recorded (the position is a per-call value), so it is
 * chosen from the keys a query may see at most (the cache rows, or the
 * window) and how few workgroups the unsplit dispatch would have; the
 * shader sizes the chunks from the actual position, and chunks past the
 * end are empty.
 *
 * Otherwise (odd head sizes, unaligned caches) the row-per-invocation
 * kernel of shaders/attention.comp runs, one workgroup per (query head,
 * token). */
#include <stdio.h>

#include "backends/vulkan/ops_impl.h"
#include "quant/quant.h"

#define MAX_HEAD_DIM 1024
#define MAX_DIMS_PER_INVOCATION 16

#define FA_SHARED_CAP 16384u   /* the budget of the smallest targets (pi5) */
#define FA_WG 128u
#define FA_MAX_ROWS 16u        /* query rows per workgroup: bounds the accumulators */
#define FA_MAX_VEC4_PER_LANE 16u
#define FA_SPLIT_KEYS 128      /* keys a chunk should have at least, planned */
#define FA_MIN_CHUNK 64u       /* and at run time */
#define FA_TARGET_WG 64        /* workgroups a split aims for: several per core of a mobile GPU */
#define FA_REDUCE_WG 64u

static bool is_cache(const be_tensor *t) {
    return t && (t->type == QT_F32 || t->type == QT_F16) && t->ne[2] == 1 && t->ne[3] == 1;
}

static elm_status attention_check(vk_planner *p, const be_node *nd) {
    const be_tensor *q = nd->src[0], *K = nd->src[1], *V = nd->src[2], *d = nd->dst;
    ELM_TRY(elmi_op_check_f32(p, q, "src0"));
    ELM_TRY(elmi_op_check_f32(p, d, "dst"));
    int64_t n_kv = nd->iparams[1];
    if (!is_cache(K) || !is_cache(V)) return elmi_op_invalid(p, "caches must be 2-D F32 or F16");
    if (n_kv < 1 || q->ne[1] % n_kv || q->ne[3] != 1 || K->ne[0] != q->ne[0] * n_kv ||
        V->ne[0] != K->ne[0] || V->ne[1] != K->ne[1] || d->ne[0] != q->ne[0] * q->ne[1] ||
        d->ne[1] != q->ne[2] || d->ne[2] != 1 || d->ne[3] != 1)
        return elmi_op_invalid(p, "shapes do not match");
    int window = nd->iparams[2], ring = nd->iparams[3];
    if (window < 0 || (ring != 0 && ring != 1) || (ring && window == 0))
        return elmi_op_invalid(p, "window %d, ring %d (a ring needs a window)", window, ring);
    if (ring && (int64_t)window + q->ne[2] - 1 > K->ne[1])
        return elmi_op_invalid(p, "window %d and %lld tokens need more than the ring's %lld rows", window,
                               (long long)q->ne[2], (long long)K->ne[1]);
    if (K->type != V->type || K->nb[1] != V->nb[1])
        return elmi_op_unsupported(p, "K and V caches of different types or strides");
    if (q->ne[0] > MAX_HEAD_DIM) return elmi_op_unsupported(p, "head size %lld above %d", (long long)q->ne[0], MAX_HEAD_DIM);
    if (K->type == QT_F16 && !p->vk->caps.storage16 && (q->ne[0] % 2 || K->nb[1] % 4 || V->nb[1] % 4))
        return elmi_op_unsupported(p, "odd F16 heads need 16-bit storage");
    return ELM_OK;
}

/* What every dispatch of an ATTENTION node shares. */
typedef struct attn_plan {
    const be_node *nd;
    tview vq, vk, vv, vd;
    uint32_t slot, D, unit;
    VkDeviceSize wq, wd; /* bytes of one token's queries, outputs */
    int64_t chunk;       /* tokens per dispatch */
} attn_plan;

static elm_status attn_prepare(vk_planner *p, const be_node *nd, uint32_t unit, attn_plan *a) {
    const be_tensor *q = nd->src[0], *d = nd->dst;
    *a = (attn_plan){.nd = nd, .D = (uint32_t)q->ne[0], .unit = unit};
    ELM_TRY(elmi_op_resolve(p, q, "src0", &a->vq));
    ELM_TRY(elmi_op_resolve(p, nd->src[1], "src1", &a->vk));
    ELM_TRY(elmi_op_resolve(p, nd->src[2], "src2", &a->vv));
    ELM_TRY(elmi_op_resolve(p, d, "dst", &a->vd));
    if (a->vk.extent > elmi_op_window_budget(p) || a->vv.extent > elmi_op_window_budget(p))
        return elmi_op_unsupported(p, "a cache exceeds maxStorageBufferRange");
    a->wq = (q->ne[1] - 1) * q->nb[1] + a->D * 4, a->wd = (VkDeviceSize)d->ne[0] * 4;
    VkDeviceSize strides[2] = {q->nb[2], d->nb[1]}, widths[2] = {a->wq, a->wd};
    a->chunk = elmi_op_token_chunk(p, q->ne[2], strides, widths, 2);
    if (a->chunk < 1) return elmi_op_unsupported(p, "a token's queries exceed maxStorageBufferRange");
    if (p->plan) ELM_TRY(elmi_vk_plan_add_dyn(p->plan, p->node_index, &a->slot));
    return ELM_OK;
}

/* ------------------------------------------------- row-per-invocation kernel */

static uint32_t rows_wg(const vk_planner *p, uint32_t D) {
    for (uint32_t wg = elmi_op_wg_size(p, 64); wg >= 1; wg /= 2) {
        if ((D + wg - 1) / wg > MAX_DIMS_PER_INVOCATION) return 0;
        if (4 * (D + wg) + elmi_op_reduce_shared(p, wg) <= p->vk->caps.max_shared) return wg;
    }
    return 0;
}

static elm_status plan_rows(vk_planner *p, const attn_plan *ap) {
    const be_node *nd = ap->nd;
    const be_tensor *q = nd->src[0], *K = nd->src[1], *d = nd->dst;
    uint32_t D = (uint32_t)q->ne[0], wg = rows_wg(p, D);
    if (!wg)
        return elmi_op_unsupported(p, "head size %u needs more than %u bytes of shared memory", D, p->vk->caps.max_shared);
    bool f16 = K->type == QT_F16;
    attn_plan a = *ap;
    char shader[48];
    snprintf(shader, sizeof shader, "attention_%s_%s", !f16 ? "f32" : p->vk->caps.storage16 ? "f16_s16" : "f16_u32",
             elmi_op_use_sg(p) ? "sg" : "sh");
    int64_t T = q->ne[2];
    for (int64_t t0 = 0; t0 < T; t0 += a.chunk) {
        int64_t n = T - t0 < a.chunk ? T - t0 : a.chunk;
        disp_build db;
        elmi_op_disp_init(p, &db);
        db.shader = shader;
        db.spec[0] = wg, db.spec[1] = elmi_op_nsg(p, wg), db.spec[2] = D, db.n_spec = 3;
        pc_attention pc = {.n_head = (uint32_t)q->ne[1], .n_head_kv = (uint32_t)nd->iparams[1],
                           .q_rs = (uint32_t)(q->nb[1] / 4), .q_ts = (uint32_t)(q->nb[2] / 4),
                           .kv_stride = (uint32_t)(K->nb[1] / a.unit), .d_ts = (uint32_t)(d->nb[1] / 4),
                           .tok0 = (uint32_t)t0, .dyn_idx = a.slot, .window = (uint32_t)nd->iparams[2],
                           .ring_rows = nd->iparams[3] ? (uint32_t)K->ne[1] : VK_NO_RING,
                           .scale = nd->fparams[0], .softcap = nd->fparams[1]};
        ELM_TRY(elmi_op_bind_view(p, &a.vq, t0 * q->nb[2], (t0 + n - 1) * q->nb[2] + a.wq, 4, &db.d.b[0], &pc.q_base));
        ELM_TRY(elmi_op_bind_view(p, &a.vk, 0, a.vk.extent, a.unit, &db.d.b[1], &pc.k_base));
        ELM_TRY(elmi_op_bind_view(p, &a.vv, 0, a.vv.extent, a.unit, &db.d.b[2], &pc.v_base));
        ELM_TRY(elmi_op_bind_view(p, &a.vd, t0 * d->nb[1], (t0 + n - 1) * d->nb[1] + a.wd, 4, &db.d.b[3], &pc.d_base));
        ELM_TRY(elmi_op_set_groups(p, &db, q->ne[1], (uint64_t)n));
        ELM_TRY(elmi_op_emit(p, &db, &pc, sizeof pc));
    }
    return ELM_OK;
}

/* ------------------------------------------------------------ flash kernel */

/* How a flash dispatch is cut. */
typedef struct fa_shape {
    uint32_t wg, tpr, rmax, hb, tb, n_split, red_wg;
    bool sg;          /* the team sums in subgroup registers (the _sg variant) */
    bool vt;          /* F16 V tiles in shared memory (the _vt variant) */
    uint32_t sg_size; /* the subgroup size that pipeline requires, 0: the driver's */
} fa_shape;

/* Shared bytes per query row: q_sh, p_sh, m/l/c and, without SG, red_sh. */
static uint32_t fa_row_bytes(const fa_shape *s, uint32_t D) {
    return 4 * D + 4 * (s->wg / s->tpr) + 12 + (s->sg ? 0 : 4 * s->wg);
}

/* The team butterflies need each team of tpr lanes inside one
 * subgroup: teams are aligned, so any subgroup of at least tpr lanes
 * holds whole teams. Without size control the driver may run subgroups
 * as narrow as min_subgroup_size (1 when unknown); with it the pipeline
 * can require a wide enough one. */
static void fa_pick_sg(const vk_planner *p, fa_shape *s) {
    const vk_caps *c = &p->vk->caps;
    s->sg = false, s->sg_size = 0;
    if (!elmi_op_use_sg(p) || !c->subgroup_shuffle) return;
    if (s->tpr <= c->min_subgroup_size) {
        s->sg = true;
        return;
    }
    if (c->sg_control && s->tpr <= c->max_subgroup_size) s->sg = true, s->sg_size = s->tpr;
}

/* Lanes per key: a power of two dividing D / 4, at most 8 unless a lane
 * would hold more than FA_MAX_VEC4_PER_LANE vec4s; 0 when none fits. */
static uint32_t fa_tpr(uint32_t D, uint32_t wg) {
    uint32_t d4 = D / 4, tpr = 1;
    while (tpr < 8 && d4 % (tpr * 2) == 0 && tpr * 2 <= wg) tpr *= 2;
    while (d4 / tpr > FA_MAX_VEC4_PER_LANE && d4 % (tpr * 2) == 0 && tpr * 2 <= wg) tpr *= 2;
    return d4 / tpr > FA_MAX_VEC4_PER_LANE ? 0 : tpr;
}

bool elmi_vk_attention_short(const be_node *nd) {
    int64_t T = nd->src[0] ? nd->src[0]->ne[2] : 0;
    return nd->op == BE_OP_ATTENTION && nd->iparams[0] >= 0 && nd->iparams[0] + T < 2 * FA_SPLIT_KEYS;
}

/* The number of key chunks at decode, 1 for none. */
static uint32_t fa_splits(const be_node *nd, const fa_shape *s, int64_t n_tok) {
    const be_tensor *K = nd->src[1];
    if (elmi_vk_attention_short(nd)) return 1;
    int64_t keys = nd->iparams[2] && nd->iparams[2] < K->ne[1] ? nd->iparams[2] : K->ne[1];
    int64_t base_wg = (nd->src[0]->ne[1] / s->hb) * ((n_tok + s->tb - 1) / s->tb);
    if (n_tok > s->tb || keys < 2 * FA_SPLIT_KEYS || base_wg * 2 > FA_TARGET_WG || !s->red_wg) return 1;
    int64_t n = keys / FA_SPLIT_KEYS, most = FA_TARGET_WG / base_wg;
    if (n > most) n = most;
    if (n > s->red_wg) n = s->red_wg;
    return n < 2 ? 1 : (uint32_t)n;
}

/* A V tile (the step's keys, D halves each) is worth its shared memory
 * only where it costs no query rows: fewer rows would read each K row
 * for fewer queries. */
static bool fa_tile_fits(const fa_shape *s, uint32_t D, uint32_t budget) {
    uint32_t tile = (s->wg / s->tpr) * D * 2;
    return tile < budget && s->rmax <= (budget - tile) / fa_row_bytes(s, D);
}

static bool fa_shape_of(const vk_planner *p, const be_node *nd, fa_shape *s) {
    const be_tensor *q = nd->src[0];
    uint32_t D = (uint32_t)q->ne[0], G = (uint32_t)(q->ne[1] / nd->iparams[1]);
    if (D % 4) return false;
    uint32_t budget = p->vk->caps.max_shared < FA_SHARED_CAP ? p->vk->caps.max_shared : FA_SHARED_CAP;
    s->wg = elmi_op_wg_size(p, FA_WG);
    s->tpr = fa_tpr(D, s->wg);
    if (!s->tpr) return false;
    fa_pick_sg(p, s);
    uint32_t fit = budget / fa_row_bytes(s, D);
    if (fit > FA_MAX_ROWS) fit = FA_MAX_ROWS;
    if (fit < 1) return false;
    s->hb = 1;
    for (uint32_t h = fit < G ? fit : G; h >= 1; h--)
        if (G % h == 0) {
            s->hb = h;
            break;
        }
    int64_t T = q->ne[2];
    s->tb = fit / s->hb;
    if (s->tb > T) s->tb = (uint32_t)T;
    s->rmax = s->hb * s->tb;
    s->vt = p->vk->caps.fa_vtiles && nd->src[2]->type == QT_F16 && s->tb > 1 && fa_tile_fits(s, D, budget);
    s->red_wg = elmi_op_reduce_wg(p, FA_REDUCE_WG, 4 * FA_REDUCE_WG);
    return true;
}

/* The caches' element 0 and rows are whole vec4s of elements. */
static bool fa_aligned(const attn_plan *a, const be_node *nd) {
    VkDeviceSize v4 = 4 * a->unit;
    const be_tensor *K = nd->src[1];
    if (K->nb[1] % v4) return false;
    if (a->vk.seg && (a->vk.seg->base + a->vk.offs) % v4) return false;
    if (a->vv.seg && (a->vv.seg->base + a->vv.offs) % v4) return false;
    return true;
}

static elm_status fa_reduce(vk_planner *p, const attn_plan *a, const fa_shape *s, const vk_seg *scr,
                            VkDeviceSize scr_bytes, const pc_flash_attn *fp, int64_t t0, int64_t n) {
    const be_tensor *d = a->nd->dst;
    disp_build db;
    elmi_op_disp_init(p, &db);
    db.shader = elmi_op_use_sg(p) ? "flash_attn_reduce_sg" : "flash_attn_reduce_sh";
    db.spec[0] = s->red_wg, db.spec[1] = elmi_op_nsg(p, s->red_wg), db.spec[2] = a->D, db.n_spec = 3;
    pc_flash_attn_reduce pc = {.n_head = fp->n_head, .n_rows = (uint32_t)n * fp->n_head,
                               .d_ts = (uint32_t)(d->nb[1] / 4), .n_split = s->n_split, .ml_base = fp->ml_base};
    if (p->plan) ELM_TRY(elmi_op_bind(p, scr, 0, scr_bytes, 4, &db.d.b[0], &pc.s_base));
    ELM_TRY(elmi_op_bind_view(p, &a->vd, t0 * d->nb[1], (t0 + n - 1) * d->nb[1] + a->wd, 4, &db.d.b[3], &pc.d_base));
    ELM_TRY(elmi_op_set_groups(p, &db, (uint64_t)n * fp->n_head, 1));
    return elmi_op_emit(p, &db, &pc, sizeof pc);
}

/* One dispatch (and its reduce pass when split) for tokens [t0, t0 + n). */
static elm_status fa_dispatch(vk_planner *p, const attn_plan *a, const fa_shape *s, const char *shader, int64_t t0,
                              int64_t n) {
    const be_node *nd = a->nd;
    const be_tensor *q = nd->src[0], *K = nd->src[1], *d = nd->dst;
    uint32_t n_head = (uint32_t)q->ne[1];
    disp_build db;
    elmi_op_disp_init(p, &db);
    db.shader = shader;
    db.subgroup = s->sg_size;
    db.spec[0] = s->wg, db.spec[1] = 1, db.spec[2] = a->D, db.spec[3] = s->tpr, db.spec[4] = s->rmax, db.n_spec = 5;
    pc_flash_attn pc = {.n_head = n_head, .n_head_kv = (uint32_t)nd->iparams[1],
                        .q_rs = (uint32_t)(q->nb[1] / 4), .q_ts = (uint32_t)(q->nb[2] / 4),
                        .kv_stride = (uint32_t)(K->nb[1] / (4 * a->unit)), .d_ts = (uint32_t)(d->nb[1] / 4),
                        .tok0 = (uint32_t)t0, .dyn_idx = a->slot, .window = (uint32_t)nd->iparams[2],
                        .ring_rows = nd->iparams[3] ? (uint32_t)K->ne[1] : VK_NO_RING,
                        .scale = nd->fparams[0], .softcap = nd->fparams[1], .hb = s->hb, .tb = s->tb,
                        .n_tok = (uint32_t)n, .n_split = s->n_split, .min_chunk = FA_MIN_CHUNK};
    ELM_TRY(elmi_op_bind_view(p, &a->vq, t0 * q->nb[2], (t0 + n - 1) * q->nb[2] + a->wq, 4, &db.d.b[0], &pc.q_base));
    ELM_TRY(elmi_op_bind_view(p, &a->vk, 0, a->vk.extent, 4 * a->unit, &db.d.b[1], &pc.k_base));
    ELM_TRY(elmi_op_bind_view(p, &a->vv, 0, a->vv.extent, 4 * a->unit, &db.d.b[2], &pc.v_base));
    const vk_seg *scr = NULL;
    VkDeviceSize rows = (VkDeviceSize)n * n_head, scr_bytes = s->n_split * rows * (a->D + 2) * 4;
    if (s->n_split > 1) {
        pc.ml_base = (uint32_t)(s->n_split * rows * a->D);
        if (p->plan) {
            ELM_TRY(elmi_vk_plan_scratch(p->vk, p->plan, scr_bytes, &scr));
            ELM_TRY(elmi_op_bind(p, scr, 0, scr_bytes, 4, &db.d.b[3], &pc.d_base));
        }
    } else {
        ELM_TRY(elmi_op_bind_view(p, &a->vd, t0 * d->nb[1], (t0 + n - 1) * d->nb[1] + a->wd, 4, &db.d.b[3],
                                  &pc.d_base));
    }
    ELM_TRY(elmi_op_set_groups(p, &db, (uint64_t)(n_head / s->hb) * s->n_split, (uint64_t)((n + s->tb - 1) / s->tb)));
    ELM_TRY(elmi_op_emit(p, &db, &pc, sizeof pc));
    return s->n_split > 1 ? fa_reduce(p, a, s, scr, scr_bytes, &pc, t0, n) : ELM_OK;
}

static elm_status plan_flash(vk_planner *p, const attn_plan *ap, const fa_shape *shape) {
    const be_node *nd = ap->nd;
    const be_tensor *q = nd->src[0], *K = nd->src[1];
    bool f16 = K->type == QT_F16;
    attn_plan a = *ap;
    char shader[32];
    snprintf(shader, sizeof shader, "flash_attn_%s_%s%s", !f16 ? "f32" : p->vk->caps.storage16 ? "f16_s16" : "f16_u32",
             shape->sg ? "sg" : "sh", shape->vt ? "_vt" : "");
    int64_t T = q->ne[2];
    for (int64_t t0 = 0; t0 < T; t0 += a.chunk) {
        int64_t n = T - t0 < a.chunk ? T - t0 : a.chunk;
        fa_shape s = *shape;
        s.n_split = fa_splits(nd, &s, n);
        VkDeviceSize scr = (VkDeviceSize)s.n_split * n * q->ne[1] * (a.D + 2) * 4;
        if (s.n_split > 1 && scr > elmi_op_window_budget(p)) s.n_split = 1;
        ELM_TRY(fa_dispatch(p, &a, &s, shader, t0, n));
    }
    return ELM_OK;
}

elm_status elmi_op_plan_attention(vk_planner *p, const be_node *nd) {
    ELM_TRY(attention_check(p, nd));
    attn_plan a;
    ELM_TRY(attn_prepare(p, nd, nd->src[1]->type == QT_F16 ? 2 : 4, &a));
    fa_shape s;
    if (fa_shape_of(p, nd, &s) && fa_aligned(&a, nd)) return plan_flash(p, &a, &s);
    return plan_rows(p, &a);
}
