/* ops_matmul.c: planning of the ops that read weight matrices, GET_ROWS
 * and MUL_MAT. Weights too large for one binding are walked in row runs
 * (host weights are already split into pieces by memory.c); MUL_MAT uses
 * the matrix-vector kernel for one token and shared-memory tiles sized
 * from the device's limits for more (matrix-vector per token when no tile
 * fits). */
#include <stdio.h>
#include <string.h>

#include "backends/vulkan/ops_impl.h"
#include "quant/quant.h"

/* --------------------------------------------------------------- GET_ROWS */

typedef struct gr_ctx {
    const be_tensor *tab, *d;
    tview vi, vd;
    bool split; /* the table's rows are in the split layout */
    uint32_t wg;
    char shader[48];
} gr_ctx;

static elm_status gr_dispatch(vk_planner *p, const gr_ctx *g, const rows_piece *rp, int64_t t0, int64_t n) {
    const be_tensor *tab = g->tab, *d = g->d;
    disp_build db;
    elmi_op_disp_init(p, &db);
    db.shader = g->shader;
    db.spec[0] = g->wg, db.spec[1] = 1, db.n_spec = 2;
    elmi_op_spec_split(&db, g->split);
    pc_get_rows pc = {.n = (uint32_t)tab->ne[0], .row_bytes = (uint32_t)tab->nb[1],
                      .d_stride = (uint32_t)(d->nb[1] / 4), .row0 = (uint32_t)rp->r0,
                      .n_rows = (uint32_t)rp->n, .n_table = (uint32_t)tab->ne[1]};
    VkDeviceSize width = (VkDeviceSize)d->ne[0] * 4, rb = (VkDeviceSize)rp->n * tab->nb[1];
    uint32_t groups = (uint32_t)(tab->ne[0] / 4);
    if (p->plan) ELM_TRY(elmi_op_bind(p, rp->seg, rp->offs, rp->offs + rb, 1, &db.d.b[0], &pc.w_base));
    ELM_TRY(elmi_op_bind_view(p, &g->vi, t0 * 4, (t0 + n) * 4, 4, &db.d.b[1], &pc.id_base));
    ELM_TRY(elmi_op_bind_view(p, &g->vd, t0 * d->nb[1], (t0 + n - 1) * d->nb[1] + width, 4, &db.d.b[3], &pc.d_base));
    ELM_TRY(elmi_op_set_groups(p, &db, (groups + g->wg - 1) / g->wg, (uint64_t)n));
    return elmi_op_emit(p, &db, &pc, sizeof pc);
}

elm_status elmi_op_plan_get_rows(vk_planner *p, const be_node *nd) {
    gr_ctx g = {.tab = nd->src[0], .d = nd->dst};
    const be_tensor *tab = g.tab, *ids = nd->src[1], *d = g.d;
    if (!tab || !ids) return elmi_op_invalid(p, "missing tensor");
    ELM_TRY(elmi_op_check_f32(p, d, "dst"));
    if (ids->type != BE_TYPE_I32) return elmi_op_invalid(p, "src1 must be I32");
    if (tab->ne[2] != 1 || tab->ne[3] != 1 || d->ne[0] != tab->ne[0] || d->ne[1] != ids->ne[0])
        return elmi_op_invalid(p, "shapes do not match");
    if (!elmi_op_type_suffix(tab->type) || !elmi_op_whole_groups(tab->type, tab->ne[0]))
        return elmi_op_unsupported(p, "no kernel for %s rows of %lld", elmi_qtype_name(tab->type), (long long)tab->ne[0]);
    tview vt;
    ELM_TRY(elmi_op_resolve(p, tab, "src0", &vt));
    g.split = vt.w && vt.w->split;
    ELM_TRY(elmi_op_resolve(p, ids, "src1", &g.vi));
    ELM_TRY(elmi_op_resolve(p, d, "dst", &g.vd));
    rows_iter it;
    if (!elmi_op_rows_init(p, &vt, tab->ne[1], tab->nb[1], INT64_MAX, &it))
        return elmi_op_unsupported(p, "a table row exceeds maxStorageBufferRange");
    int64_t T = ids->ne[0];
    VkDeviceSize strides[2] = {4, d->nb[1]}, widths[2] = {4, (VkDeviceSize)d->ne[0] * 4};
    int64_t chunk = elmi_op_token_chunk(p, T, strides, widths, 2);
    if (chunk < 1) return elmi_op_unsupported(p, "a row exceeds maxStorageBufferRange");
    g.wg = elmi_op_wg_size(p, WG_DEFAULT);
    snprintf(g.shader, sizeof g.shader, "get_rows_%s_%s", elmi_op_type_suffix(tab->type), elmi_op_storage(p));
    for (rows_piece piece; elmi_op_rows_next(&it, &piece);)
        for (int64_t t0 = 0; t0 < T; t0 += chunk)
            ELM_TRY(gr_dispatch(p, &g, &piece, t0, T - t0 < chunk ? T - t0 : chunk));
    return ELM_OK;
}

/* ---------------------------------------------------------------- MUL_MAT */

#define MV_ROWS 4u
#define MV_WG_SHARED 32u
#define MV_WG_MIN 4u

typedef struct tile {
    uint32_t bm, bn, bk, tm, tn;
} tile;

/* Register blocks of TM x TN (multiples of 4: the shader reads vec4s),
 * largest first. Shared memory: (BM + BN + 8) * BK values (one vec4 of
 * padding per slice row of each tile). */
static const tile tiles[] = {
    {64, 64, 32, 8, 8}, {64, 64, 16, 8, 8}, {64, 64, 16, 4, 8}, {64, 32, 16, 4, 4}, {32, 32, 16, 4, 4}, {32, 16, 16, 4, 4},
    {16, 16, 16, 4, 4}, {16, 16, 8, 4, 4},
};

/* The first tile configuration that fits the device, or NULL. Integer-dot
 * tiles (bk unused) stage 8 words and a scale per row and per token. */
static const tile *pick_tile(const vk_planner *p, bool half, bool idot) {
    const vk_caps *c = &p->vk->caps;
    for (size_t i = 0; i < sizeof tiles / sizeof *tiles; i++) {
        const tile *t = &tiles[i];
        uint32_t wg = (t->bm / t->tm) * (t->bn / t->tn), shared = (t->bm + t->bn + 8) * t->bk * (half ? 2 : 4);
        if (idot) shared = (t->bm + t->bn) * 9 * 4;
        if (wg <= c->max_invocations && wg <= c->max_wg_size[0] && shared <= c->max_shared) return t;
    }
    return NULL;
}

typedef struct mm_ctx {
    const be_tensor *w, *x, *bias, *d;
    tview vx, vb, vd;
    const tile *tl; /* NULL: matvec */
    bool half;      /* tiles: F16 staging */
    uint32_t wg, rows, lpr; /* matvec: invocations, rows per lane group, lanes per row (wg or 1) */
    uint32_t tex_rows, tex_lpr; /* the same for tex_shader */
    uint32_t sg;            /* matvec: required subgroup size (= wg), 0: the driver's */
    uint32_t nt;            /* matvec: tokens per workgroup */
    bool split;             /* the weights' rows are in the split layout */
    char shader[48];
    char tex_shader[48];    /* matvec through texel buffers (caps.mv_tex), or "" */
} mm_ctx;


static elm_status mm_dispatch(vk_planner *p, const mm_ctx *m, const rows_piece *rp, int64_t t0,
                              int64_t n) {
    disp_build db;
    elmi_op_disp_init(p, &db);
    db.shader = m->shader;
    const be_tensor *w = m->w, *x = m->x, *d = m->d;
    uint32_t wb = 0, xb, bb = 0, dbase;
    VkDeviceSize xs = x->nb[1], ds = d->nb[1];
    if (p->plan) ELM_TRY(elmi_op_bind(p, rp->seg, rp->offs, rp->offs + (VkDeviceSize)rp->n * w->nb[1], 1, &db.d.b[0], &wb));
    ELM_TRY(elmi_op_bind_view(p, &m->vx, t0 * xs, (t0 + n - 1) * xs + x->ne[0] * 4, 4, &db.d.b[1], &xb));
    ELM_TRY(elmi_op_bind_view(p, &m->vd, t0 * ds + rp->r0 * 4, (t0 + n - 1) * ds + (rp->r0 + rp->n) * 4, 4, &db.d.b[3], &dbase));
    if (m->bias) ELM_TRY(elmi_op_bind_view(p, &m->vb, rp->r0 * 4, (rp->r0 + rp->n) * 4, 4, &db.d.b[2], &bb));
    if (!m->tl) {
        const vk_caps *c = &p->vk->caps;
        bool x_quads = (xb | (uint32_t)(xs / 4)) % 4 == 0;
        uint32_t rows = m->rows, lpr = m->lpr, sg = m->sg;
        if (p->plan && m->tex_shader[0] && x_quads && elmi_op_texel_ok(c, &db.d.b[0], 4) && elmi_op_texel_ok(c, &db.d.b[1], 16)) {
            db.shader = m->tex_shader;
            db.d.tex = VK_N_TEX;
            rows = m->tex_rows, lpr = m->tex_lpr, sg = lpr > 1 ? sg : 0;
        }
        db.spec[0] = m->wg, db.spec[1] = sg ? 1 : elmi_op_nsg(p, m->wg), db.spec[2] = rows, db.spec[3] = lpr;
        db.spec[4] = m->nt;
        db.subgroup = sg;
        db.n_spec = 5;
        elmi_op_spec_split(&db, m->split);
        if (elmi_op_quad_runs(w->type, m->split, wb, w->nb[1])) elmi_op_spec_wquad(&db);
        uint64_t per_wg = (uint64_t)rows * (m->wg / lpr);
        pc_matvec pc = {wb, xb, bb, dbase, (uint32_t)w->ne[0], (uint32_t)rp->n, (uint32_t)w->nb[1],
                        (uint32_t)(xs / 4), (uint32_t)(ds / 4), m->bias != NULL, (uint32_t)n};
        ELM_TRY(elmi_op_set_groups(p, &db, ((uint64_t)rp->n + per_wg - 1) / per_wg, ((uint64_t)n + m->nt - 1) / m->nt));
        return elmi_op_emit(p, &db, &pc, sizeof pc);
    }
    const tile *t = m->tl;
    db.spec[0] = (t->bm / t->tm) * (t->bn / t->tn), db.spec[1] = 1;
    db.spec[2] = t->bm, db.spec[3] = t->bn, db.spec[4] = t->bk, db.spec[5] = t->tm, db.spec[6] = t->tn;
    db.n_spec = 7;
    elmi_op_spec_split(&db, m->split);
    pc_matmat pc = {wb, xb, bb, dbase, (uint32_t)w->ne[0], (uint32_t)rp->n, (uint32_t)n, (uint32_t)w->nb[1],
                    (uint32_t)(xs / 4), (uint32_t)(ds / 4), m->bias != NULL};
    db.d.groups[0] = (uint32_t)((rp->n + t->bm - 1) / t->bm);
    db.d.groups[1] = (uint32_t)((n + t->bn - 1) / t->bn);
    db.d.groups[2] = 1;
    return elmi_op_emit(p, &db, &pc, sizeof pc);
}

static elm_status mm_check(vk_planner *p, const be_node *nd, mm_ctx *m);

elm_status elmi_op_mul_mat_check(vk_planner *p, const be_node *nd) {
    mm_ctx m;
    return mm_check(p, nd, &m);
}

static elm_status mm_check(vk_planner *p, const be_node *nd, mm_ctx *m) {
    m->w = nd->src[0], m->x = nd->src[1], m->bias = nd->src[2], m->d = nd->dst;
    if (!m->w) return elmi_op_invalid(p, "src0 is missing");
    ELM_TRY(elmi_op_check_f32(p, m->x, "src1"));
    ELM_TRY(elmi_op_check_f32(p, m->d, "dst"));
    if (m->bias) ELM_TRY(elmi_op_check_f32(p, m->bias, "src2"));
    const be_tensor *w = m->w, *x = m->x, *d = m->d;
    if (w->ne[2] != 1 || w->ne[3] != 1 || x->ne[0] != w->ne[0] || x->ne[2] != 1 || x->ne[3] != 1 ||
        d->ne[0] != w->ne[1] || d->ne[1] != x->ne[1] || d->ne[2] != 1 || d->ne[3] != 1 ||
        (m->bias && m->bias->ne[0] != w->ne[1]))
        return elmi_op_invalid(p, "shapes do not match");
    if (!elmi_op_type_suffix(w->type) || !elmi_op_whole_groups(w->type, w->ne[0]))
        return elmi_op_unsupported(p, "no kernel for %s rows of %lld", elmi_qtype_name(w->type), (long long)w->ne[0]);
    return ELM_OK;
}

/* The matrix-vector kernel's workgroup: one subgroup (the reduction then
 * stays in registers), or 32 invocations for the shared-memory tree, and
 * MV_ROWS rows per lane group sharing each activation load; both shrink
 * until the reduction's sets * ROWS + extra slots per subgroup (or per
 * invocation) fit. */
bool elmi_op_mv_shape(const vk_planner *p, uint32_t sets, uint32_t extra, uint32_t *wg, uint32_t *rows) {
    const vk_caps *c = &p->vk->caps;
    uint32_t want = elmi_op_use_sg(p) ? c->subgroup_size : MV_WG_SHARED;
    want = want < MV_WG_MIN ? MV_WG_MIN : want > WG_DEFAULT ? WG_DEFAULT : want;
    uint32_t r = c->mv_rows ? c->mv_rows : MV_ROWS;
    for (uint32_t w = elmi_op_wg_size(p, want); w >= 1; w /= 2)
        for (uint32_t k = r; k >= 1; k /= 2)
            if (((uint64_t)k * sets + extra) * elmi_op_reduce_shared(p, w) <= c->max_shared) {
                *wg = w, *rows = k;
                return true;
            }
    return false;
}

/* Tokens per workgroup of the mat-vec kernel for T tokens; 1: tiles (or
 * one token). A few tokens (a speculative batch, the last piece of a
 * prompt) fill little of a tile, so GPUs take up to MV_TOKENS_GPU_MAX of
 * them through the mat-vec kernel, decoding each weight chunk once for
 * all. On lavapipe the storage-buffer kernel measured 1.5-2x slower than
 * the tiles even at 64 tokens (docs/measurements.md), the texel one faster
 * (below). mv_tokens=N in the limits spec forces N tokens per workgroup on
 * any device (1: never). */
#define MV_TOKENS_GPU_MAX 4

#define MV_TOKENS_TEX 8

/* The texel kernel's shape on a CPU device, for block-quantized weights.
 * There a texel fetch with the same coordinates in every lane costs no
 * more than one with different ones, so for one token a lane per row (no
 * reduction) measured 1.2-1.5x the split rows for every block type, and 8
 * rows per lane (each activation chunk shared by more rows) a further
 * 1.1-1.2x for all of them but Q8_0, whose 8-word chunks spill at 8. With
 * several tokens (prefill) 8 rows measured 1.2x for Q4_0 and 1.1-1.2x end
 * to end; a lane per row did not help there. F32 and 16-bit weights keep
 * the general shape, which measured faster for F32 (docs/measurements.md,
 * issue 12, fifth session). The fused texel kernels (fuse_matvec.c) take
 * the one-token shape. The limits items mv_lanes= and mv_rows= override
 * it. */
#define MV_TEX_ROWS_BLOCK 8u

uint32_t elmi_op_mv_lane_rows(const vk_planner *p, int type, uint32_t nt) {
    const vk_caps *c = &p->vk->caps;
    bool block = type != QT_F32 && type != QT_F16 && type != QT_BF16;
    if (!c->mv_tex || c->type != VK_PHYSICAL_DEVICE_TYPE_CPU || !block || (nt == 1 && c->mv_lanes > 1)) return 0;
    if (c->mv_rows) return c->mv_rows;
    return nt == 1 && type == QT_Q8_0 ? MV_ROWS : MV_TEX_ROWS_BLOCK;
}

static void mv_tex_shape(const vk_planner *p, mm_ctx *m) {
    m->tex_rows = m->rows, m->tex_lpr = m->lpr;
    uint32_t rows = elmi_op_mv_lane_rows(p, m->w->type, m->nt);
    if (!rows) return;
    if (m->nt == 1) m->tex_lpr = 1;
    /* The kernel declares its reduction's shared memory whatever the lanes. */
    if ((uint64_t)rows * m->nt * elmi_op_reduce_shared(p, m->wg) <= p->vk->caps.max_shared) m->tex_rows = rows;
}

/* x_quads: the activation rows start 16-byte aligned, so the texel kernel
 * can take them (mm_dispatch checks each window again). */
static uint32_t mv_tokens(const vk_planner *p, int64_t T, int type, bool x_quads) {
    const vk_caps *c = &p->vk->caps;
    if (T < 2 || c->mv_tokens == 1) return 1;
    if (c->mv_tokens) return T < c->mv_tokens ? (uint32_t)T : c->mv_tokens;
    /* Through texel buffers the multi-token kernel measured 1.6-2.2x the
     * tiles on lavapipe (no shared memory, whose loads are per-lane loops
     * there; docs/measurements.md), so CPU devices that read texels take
     * it for prefill too; its storage-buffer version is slower than the
     * tiles there, so activations that texels cannot take keep the tiles. */
    bool tex = c->mv_tex && x_quads && !elmi_op_mv_dot(p, type)[0];
    if (tex && c->type == VK_PHYSICAL_DEVICE_TYPE_CPU) return T < MV_TOKENS_TEX ? (uint32_t)T : MV_TOKENS_TEX;
    if (c->type == VK_PHYSICAL_DEVICE_TYPE_CPU || T > MV_TOKENS_GPU_MAX) return 1;
    return (uint32_t)T;
}

const char *elmi_op_mv_dot(const vk_planner *p, int type) {
    /* Exact graphs promise F32 activations (backend.h, BE_OP_MUL_MAT). */
    if (p->exact || !p->vk->caps.mv_idot) return "";
    bool has = type == QT_Q4_0 || type == QT_Q8_0 || type == QT_Q4_K || type == QT_Q5_K || type == QT_Q6_K;
    return has ? "_idot" : "";
}

static elm_status mm_select(vk_planner *p, mm_ctx *m, int64_t T) {
    const vk_caps *c = &p->vk->caps;
    const char *ts = elmi_op_type_suffix(m->w->type);
    const tview *vx = &m->vx;
    bool x_quads = vx->seg && (vx->seg->base + vx->offs) % 16 == 0 && m->x->nb[1] % 16 == 0;
    m->nt = mv_tokens(p, T, m->w->type, x_quads);
    /* F16 tiles round the weights and the activations to halves (clamped
     * to the half range). Fast graphs may round activations to the weight
     * type's vec_dot_type (backend.h): fine for F16 and quantized weights,
     * but F32 weights promise F32 products and BF16 ones the BF16 range,
     * so those keep F32 tiles. */
    bool half_ok = m->w->type != QT_F32 && m->w->type != QT_BF16;
    m->half = !p->exact && half_ok && c->fp16 && c->storage16;
    /* Integer-dot tiles round the activations through Q8_0, the
     * vec_dot_type of Q4_0 and Q8_0 (backend.h): fast graphs only. */
    bool idot = !p->exact && c->mm_idot && (m->w->type == QT_Q4_0 || m->w->type == QT_Q8_0);
    m->tl = T > 1 && m->nt == 1 && idot ? pick_tile(p, false, true) : NULL;
    if (m->tl) {
        snprintf(m->shader, sizeof m->shader, "matmat_%s_%s_idot", ts, elmi_op_storage(p));
        return ELM_OK;
    }
    m->tl = T > 1 && m->nt == 1 ? pick_tile(p, m->half, false) : NULL;
    /* F16 products (mm_f16): F16 partial sums over 8 terms, then F32. */
    if (m->tl && m->half) snprintf(m->shader, sizeof m->shader, "matmat_%s_s16_h%s", ts, c->mm_f16 ? "a" : "");
    else if (m->tl) snprintf(m->shader, sizeof m->shader, "matmat_%s_%s", ts, elmi_op_storage(p));
    if (m->tl) return ELM_OK;
    /* The matrix-vector kernel: T = 1, a few tokens, or no tile fits the
     * device. */
    while (!elmi_op_mv_shape(p, m->nt, 0, &m->wg, &m->rows))
        if ((m->nt /= 2) == 0) return elmi_op_unsupported(p, "no workgroup size fits %u bytes of shared memory", c->max_shared);
    /* A lane per row (mv_lanes=1) makes the activation loads uniform, but
     * through storage buffers on lavapipe it measured 2-3x slower than
     * splitting rows over the workgroup (docs/measurements.md), so
     * splitting is the default; texel reads differ (mv_tex_shape). */
    m->lpr = c->mv_lanes == 1 ? 1 : m->wg;
    /* With size control the workgroup is exactly one subgroup, so the
     * reduction never goes through shared memory. */
    bool fits = m->wg >= c->min_subgroup_size && m->wg <= c->max_subgroup_size;
    m->sg = elmi_op_use_sg(p) && c->sg_control && fits && m->lpr > 1 ? m->wg : 0;
    snprintf(m->shader, sizeof m->shader, "matvec_%s_%s_%s%s", ts, elmi_op_storage(p), elmi_op_use_sg(p) ? "sg" : "sh",
             elmi_op_mv_dot(p, m->w->type));
    m->tex_shader[0] = '\0';
    if (c->mv_tex && !elmi_op_mv_dot(p, m->w->type)[0])
        snprintf(m->tex_shader, sizeof m->tex_shader, "matvec_%s_tex_%s", ts, elmi_op_use_sg(p) ? "sg" : "sh");
    mv_tex_shape(p, m);
    return ELM_OK;
}

elm_status elmi_op_plan_mul_mat(vk_planner *p, const be_node *nd) {
    mm_ctx m;
    ELM_TRY(mm_check(p, nd, &m));
    tview vw;
    ELM_TRY(elmi_op_resolve(p, m.w, "src0", &vw));
    m.split = vw.w && vw.w->split;
    ELM_TRY(elmi_op_resolve(p, m.x, "src1", &m.vx));
    ELM_TRY(elmi_op_resolve(p, m.d, "dst", &m.vd));
    if (m.bias) ELM_TRY(elmi_op_resolve(p, m.bias, "src2", &m.vb));
    int64_t T = m.x->ne[1], N = m.w->ne[1];
    ELM_TRY(mm_select(p, &m, T));
    const vk_caps *c = &p->vk->caps;
    int64_t most = m.tl ? (int64_t)m.tl->bm * c->max_wg_count[0] : (int64_t)c->max_wg_count[0] * c->max_wg_count[1];
    rows_iter it;
    if (!elmi_op_rows_init(p, &vw, N, m.w->nb[1], most, &it))
        return elmi_op_unsupported(p, "a weight row exceeds maxStorageBufferRange");
    VkDeviceSize strides[2] = {m.x->nb[1], m.d->nb[1]};
    VkDeviceSize widths[2] = {(VkDeviceSize)m.x->ne[0] * 4, (VkDeviceSize)elmi_op_rows_most(&it) * 4};
    int64_t chunk = elmi_op_token_chunk(p, T, strides, widths, 2);
    if (m.tl && chunk > (int64_t)m.tl->bn * c->max_wg_count[1]) chunk = (int64_t)m.tl->bn * c->max_wg_count[1];
    if (chunk < 1) return elmi_op_unsupported(p, "an activation row exceeds maxStorageBufferRange");
    for (rows_piece piece; elmi_op_rows_next(&it, &piece);)
        for (int64_t t0 = 0; t0 < T; t0 += chunk)
            ELM_TRY(mm_dispatch(p, &m, &piece, t0, T - t0 < chunk ? T - t0 : chunk));
    return ELM_OK;
}
