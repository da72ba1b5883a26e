/* fuse_matvec.c: one token through the mat-vecs that read the same
 * activations, as one dispatch per weight type (shaders/matvec_fused.comp),
 * absorbing the RMS norm before them and a GLU or residual add after:
 *   RMS_NORM? MUL_MAT{1..8} (GLU | ADD)?
 * The norm is absorbed only when no later node reads its output: the
 * kernel does not store it (a store from one workgroup made the whole
 * dispatch 2-3x slower on lavapipe).
 * The usual decode layer thus becomes norm+QKV, norm+gate+up+GLU and two
 * mat-vecs with their residual adds. Prefill (T > 1) is left to the tiled
 * kernels. */
#include <stdio.h>
#include <string.h>

#include "backends/vulkan/fuse.h"
#include "quant/quant.h"

#define MAX_MM 8 /* consumers of one activation looked at */
#define MAX_PER_DISPATCH 3

typedef struct mv_group {
    const be_graph *g;
    const be_node *norm; /* absorbed RMS_NORM, or NULL */
    const be_node *mm[MAX_MM];
    int n_mm, first_mm;  /* the MUL_MATs, nodes [first_mm, first_mm + n_mm) */
    const be_node *glu;  /* absorbed GLU (two matrices: gate then up) */
    const be_node *add;  /* absorbed residual ADD (one matrix) */
    const be_tensor *resid; /* ADD: the tensor the product is added into */
    int last;            /* index of the last node absorbed */
} mv_group;

static bool fusable_type(int type) {
    switch (type) {
    case QT_F32: case QT_F16: case QT_Q4_0: case QT_Q8_0: case QT_Q4_K: case QT_Q5_K: case QT_Q6_K: return true;
    default: return false;
    }
}

static bool one_row(const be_tensor *t) {
    return t && t->type == QT_F32 && t->ne[1] == 1 && t->ne[2] == 1 && t->ne[3] == 1;
}

static bool overlaps(const be_tensor *a, const be_tensor *b) {
    VkDeviceSize ea, eb;
    if (!a || !b || !a->buf || a->buf != b->buf || !elmi_vk_tensor_extent(a, &ea) || !elmi_vk_tensor_extent(b, &eb))
        return false;
    return a->offs < b->offs + eb && b->offs < a->offs + ea;
}

/* A mat-vec of one token the fused kernel can take. */
static bool fusable_mm(vk_planner *p, const be_node *nd, const be_tensor *x) {
    if (nd->op != BE_OP_MUL_MAT || !elmi_fuse_same(nd->src[1], x) || !one_row(x)) return false;
    const be_tensor *w = nd->src[0];
    if (!w || !fusable_type(w->type) || !one_row(nd->dst) || overlaps(nd->dst, x)) return false;
    return elmi_op_mul_mat_check(p, nd) == ELM_OK;
}

/* An RMS norm of one whole row into another tensor. */
static bool fusable_norm(const be_node *nd) {
    const be_tensor *x = nd->src[0], *w = nd->src[1], *d = nd->dst;
    return nd->op == BE_OP_RMS_NORM && one_row(x) && one_row(d) && w && w->type == QT_F32 &&
           w->ne[0] == x->ne[0] && d->ne[0] == x->ne[0] && !overlaps(x, d);
}

/* The epilogue after the mat-vecs, if one applies. */
static void match_epilogue(mv_group *f) {
    const be_graph *g = f->g;
    int j = f->first_mm + f->n_mm;
    if (j >= g->n_nodes) return;
    const be_node *nd = &g->nodes[j];
    if (nd->op == BE_OP_GLU && f->n_mm == 2) {
        const be_node *gate = f->mm[0], *up = f->mm[1];
        bool same = gate->src[0]->type == up->src[0]->type && gate->dst->ne[0] == up->dst->ne[0];
        /* In place into the gate: the gate's value before the activation is gone anyway. */
        if (same && !gate->src[2] && !up->src[2] && elmi_fuse_same(nd->src[0], gate->dst) &&
            elmi_fuse_same(nd->src[1], up->dst) && elmi_fuse_same(nd->dst, gate->dst)) {
            f->glu = nd;
            f->last = j;
        }
    } else if (nd->op == BE_OP_ADD && f->n_mm == 1) {
        const be_tensor *prod = f->mm[0]->dst;
        const be_tensor *other = elmi_fuse_same(nd->src[1], prod) ? nd->src[0]
                                 : elmi_fuse_same(nd->src[0], prod) ? nd->src[1] : NULL;
        /* dst += product: the residual must be the ADD's dst and touch
         * nothing the mat-vec (or its norm) reads. */
        if (other && elmi_fuse_same(other, nd->dst) && one_row(other) && other->ne[0] == prod->ne[0] &&
            !overlaps(other, f->mm[0]->src[1]) && !overlaps(other, prod) &&
            !(f->norm && overlaps(other, f->norm->src[0]))) {
            f->add = nd;
            f->resid = other;
            f->last = j;
        }
    }
}

/* The group's mat-vecs run at once, in no order: nd may join only if its
 * output touches nothing the group reads or writes, and its inputs nothing
 * the group writes. */
static bool independent(const mv_group *f, const be_node *nd) {
    if (f->norm && (overlaps(nd->dst, f->norm->src[0]) || overlaps(nd->dst, f->norm->src[1]))) return false;
    for (int a = 0; a < f->n_mm; a++) {
        const be_node *o = f->mm[a];
        if (overlaps(nd->dst, o->dst)) return false;
        for (int s = 0; s < 3; s++)
            if (overlaps(nd->dst, o->src[s]) || overlaps(o->dst, nd->src[s])) return false;
    }
    return !overlaps(nd->dst, nd->src[0]) && !overlaps(nd->dst, nd->src[2]);
}

static bool match(vk_planner *p, const be_graph *g, int i, mv_group *f) {
    memset(f, 0, sizeof *f);
    f->g = g;
    const be_node *nd = &g->nodes[i];
    const be_tensor *x;
    if (nd->op == BE_OP_RMS_NORM) {
        if (!fusable_norm(nd)) return false;
        f->norm = nd;
        x = nd->dst;
        f->first_mm = i + 1;
    } else if (nd->op == BE_OP_MUL_MAT) {
        x = nd->src[1];
        f->first_mm = i;
    } else {
        return false;
    }
    for (int j = f->first_mm; j < g->n_nodes && f->n_mm < MAX_MM; j++) {
        if (!fusable_mm(p, &g->nodes[j], x) || !independent(f, &g->nodes[j])) break;
        f->mm[f->n_mm++] = &g->nodes[j];
    }
    if (f->n_mm == 0) return false;
    for (int a = 0; a < f->n_mm; a++)
        if (f->mm[a]->src[0]->ne[0] != f->mm[0]->src[0]->ne[0]) return false;
    f->last = f->first_mm + f->n_mm - 1;
    match_epilogue(f);
    if (f->norm && !elmi_fuse_dead(g, f->last, f->norm->dst)) return false;
    /* A lone mat-vec gains nothing. */
    return f->norm || f->n_mm > 1 || f->glu || f->add;
}

/* ------------------------------------------------------------- planning */

typedef struct fused_disp {
    const be_node *mm[MAX_PER_DISPATCH];
    int n;
} fused_disp;

/* *split: the layout of the group's weights so far (-1: none yet); one
 * dispatch reads them all in one layout. */
static elm_status bind_weight(vk_planner *p, const be_tensor *w, vk_bind *b, uint32_t *base, int *split) {
    tview v;
    ELM_TRY(elmi_op_resolve(p, w, "weights", &v));
    int s = v.w && v.w->split;
    if (*split >= 0 && s != *split)
        return elmi_op_unsupported(p, "the weights '%s' are in another row layout than the group's", w->name);
    *split = s;
    rows_iter it;
    rows_piece rp;
    if (!elmi_op_rows_init(p, &v, w->ne[1], w->nb[1], INT64_MAX, &it) || !elmi_op_rows_next(&it, &rp) ||
        rp.n != w->ne[1])
        return elmi_op_unsupported(p, "the weights '%s' do not fit one binding", w->name);
    return elmi_op_bind(p, rp.seg, rp.offs, rp.offs + (VkDeviceSize)rp.n * w->nb[1], 1, b, base);
}

static elm_status bind_row(vk_planner *p, const be_tensor *t, vk_bind *b, uint32_t *base) {
    tview v;
    ELM_TRY(elmi_op_resolve(p, t, t->name, &v));
    return elmi_op_bind_view(p, &v, 0, (VkDeviceSize)t->ne[0] * 4, 4, b, base);
}

/* Slots of matvec_fused.comp's bindings (slot s is binding s, or s + 1 from 4 on). */
enum { S_W0 = 0, S_X = 1, S_NW = 2, S_D0 = 3, S_W1 = 4, S_W2 = 5, S_D1 = 6, S_D2 = 7, S_B0 = 8 };

static const uint8_t w_slot[3] = {S_W0, S_W1, S_W2}, d_slot[3] = {S_D0, S_D1, S_D2};

static elm_status bind_matrices(vk_planner *p, const mv_group *f, const fused_disp *fd, disp_build *db,
                                pc_matvec_fused *pc) {
    uint32_t *wb[3] = {&pc->w_base0, &pc->w_base1, &pc->w_base2}, *dbase[3] = {&pc->d_base0, &pc->d_base1, &pc->d_base2};
    uint32_t *bb[3] = {&pc->b_base0, &pc->b_base1, &pc->b_base2}, *nr[3] = {&pc->N0, &pc->N1, &pc->N2};
    int split = -1;
    bool quads = true;
    for (int m = 0; m < fd->n; m++) {
        const be_node *mm = fd->mm[m];
        ELM_TRY(bind_weight(p, mm->src[0], &db->d.b[w_slot[m]], wb[m], &split));
        quads = quads && elmi_op_quad_runs(mm->src[0]->type, split > 0, *wb[m], mm->src[0]->nb[1]);
        *nr[m] = (uint32_t)mm->src[0]->ne[1];
        if (mm->src[2]) {
            ELM_TRY(bind_row(p, mm->src[2], &db->d.b[S_B0 + m], bb[m]));
            pc->flags |= (uint32_t)VK_MVF_BIAS0 << m;
        }
        /* GLU and residual adds route the outputs themselves. */
        if (f->glu || f->add) continue;
        ELM_TRY(bind_row(p, mm->dst, &db->d.b[d_slot[m]], dbase[m]));
        db->d.written |= (uint16_t)(1u << d_slot[m]);
    }
    elmi_op_spec_split(db, split > 0);
    if (quads) elmi_op_spec_wquad(db);
    return ELM_OK;
}

/* Workgroups of per_wg rows for each matrix, in turn (GLU: gate and up
 * rows together). */
static elm_status set_groups(vk_planner *p, const mv_group *f, disp_build *db, pc_matvec_fused *pc, uint32_t per_wg) {
    uint32_t n[3] = {pc->N0, f->glu ? 0 : pc->N1, pc->N2}, groups[3];
    for (int m = 0; m < 3; m++) groups[m] = (n[m] + per_wg - 1) / per_wg;
    pc->g1 = groups[0];
    pc->g2 = groups[0] + groups[1];
    return elmi_op_set_groups(p, db, (uint64_t)pc->g2 + groups[2], 1);
}

/* The texel variant (CPU devices with texel reads, block types, float
 * path): a lane per rows, the shape the plain texel mat-vec takes there
 * (elmi_op_mv_lane_rows), which measured 1.2-1.5x splitting rows over the
 * lanes; its rows per lane, or 0 where it does not apply. */
static uint32_t tex_rows(const vk_planner *p, int type) {
    return elmi_op_mv_dot(p, type)[0] ? 0 : elmi_op_mv_lane_rows(p, type, 1);
}

/* Whether every window the texel variant views can be viewed: the
 * matrices as words and quads, x and the norm weights as 16-byte aligned
 * vec4s. If so, absent matrices and norm weights are bound to slot 0's
 * and x's windows (the kernel declares every view). */
static bool tex_views(vk_planner *p, const fused_disp *fd, disp_build *db, const pc_matvec_fused *pc, bool norm) {
    const vk_caps *c = &p->vk->caps;
    vk_bind b[VK_N_BIND];
    memcpy(b, db->d.b, sizeof b);
    for (int m = fd->n; m < 3; m++) b[w_slot[m]] = b[S_W0];
    if (!norm) b[S_NW] = b[S_X];
    for (int m = 0; m < 3; m++)
        if (!elmi_op_texel_ok(c, &b[w_slot[m]], 4)) return false;
    bool ok = pc->x_base % 4 == 0 && (!norm || pc->n_base % 4 == 0) && elmi_op_texel_ok(c, &b[S_X], 16) &&
              elmi_op_texel_ok(c, &b[S_NW], 16);
    if (ok) memcpy(db->d.b, b, sizeof b);
    return ok;
}

static elm_status bind_epilogue(vk_planner *p, const mv_group *f, disp_build *db, pc_matvec_fused *pc) {
    const be_graph *g = f->g;
    if (f->glu) {
        pc->act = (uint32_t)f->glu->iparams[0];
        ELM_TRY(bind_row(p, f->glu->dst, &db->d.b[S_D0], &pc->d_base0));
        const be_tensor *up = f->mm[1]->dst;
        if (!elmi_fuse_dead(g, f->last, up)) {
            ELM_TRY(bind_row(p, up, &db->d.b[S_D1], &pc->d_base1));
            db->d.written |= 1u << S_D1;
            pc->flags |= VK_MVF_UP;
        }
    } else if (f->add) {
        pc->flags |= VK_MVF_RESID;
        ELM_TRY(bind_row(p, f->resid, &db->d.b[S_D0], &pc->d_base0));
        const be_tensor *prod = f->mm[0]->dst;
        if (!elmi_fuse_dead(g, f->last, prod)) {
            ELM_TRY(bind_row(p, prod, &db->d.b[S_D1], &pc->d_base1));
            db->d.written |= 1u << S_D1;
            pc->flags |= VK_MVF_PROJ;
        }
    }
    return ELM_OK;
}

static elm_status emit(vk_planner *p, const mv_group *f, const fused_disp *fd) {
    const be_tensor *w0 = fd->mm[0]->src[0];
    uint32_t wg, rows;
    /* One more reduced slot than rows: the norm's sum of squares. */
    if (!elmi_op_mv_shape(p, f->glu ? 2 : 1, 1, &wg, &rows))
        return elmi_op_unsupported(p, "no fused mat-vec workgroup fits shared memory");
    const vk_caps *c = &p->vk->caps;
    bool sg = elmi_op_use_sg(p);
    disp_build db;
    elmi_op_disp_init(p, &db);
    db.d.written = 0;
    char shader[48];
    snprintf(shader, sizeof shader, "matvec_%s_%s_%s_%s%s", f->glu ? "glu" : "fused", elmi_op_type_suffix(w0->type),
             elmi_op_storage(p), sg ? "sg" : "sh", elmi_op_mv_dot(p, w0->type));
    db.shader = shader;
    db.subgroup = sg && c->sg_control && wg >= c->min_subgroup_size && wg <= c->max_subgroup_size ? wg : 0;
    db.spec[0] = wg, db.spec[1] = db.subgroup ? 1 : elmi_op_nsg(p, wg), db.spec[2] = rows, db.n_spec = 3;
    pc_matvec_fused pc = {.K = (uint32_t)w0->ne[0], .row_bytes = (uint32_t)w0->nb[1]};
    if (!f->norm) {
        ELM_TRY(bind_row(p, fd->mm[0]->src[1], &db.d.b[S_X], &pc.x_base));
    } else {
        const be_node *n = f->norm;
        pc.flags |= VK_MVF_NORM;
        pc.eps = n->fparams[0];
        ELM_TRY(bind_row(p, n->src[0], &db.d.b[S_X], &pc.x_base));
        ELM_TRY(bind_row(p, n->src[1], &db.d.b[S_NW], &pc.n_base));
    }
    ELM_TRY(bind_matrices(p, f, fd, &db, &pc));
    ELM_TRY(bind_epilogue(p, f, &db, &pc));
    if (f->glu || f->add) db.d.written |= 1u << S_D0;
    uint32_t per_wg = rows, trows = tex_rows(p, w0->type);
    bool tex = trows && tex_views(p, fd, &db, &pc, f->norm != NULL);
    if (!tex && c->fuse_texel_only)
        return elmi_op_unsupported(p, "this device fuses mat-vecs only through texel reads, and %s cannot take them",
                                   w0->name);
    if (tex) {
        snprintf(shader, sizeof shader, "matvec_%s_%s_tex", f->glu ? "glu" : "fused", elmi_op_type_suffix(w0->type));
        db.d.tex = VK_N_TEX_FUSED;
        db.subgroup = 0;
        db.spec[1] = elmi_op_nsg(p, wg), db.spec[2] = trows;
        per_wg = trows * wg;
    }
    ELM_TRY(set_groups(p, f, &db, &pc, per_wg));
    return elmi_op_emit(p, &db, &pc, sizeof pc);
}

/* The mat-vecs in dispatches of up to three of one type (each computes
 * the norm itself). */
static elm_status plan_group(vk_planner *p, const mv_group *f) {
    bool done[MAX_MM] = {false};
    if (f->glu) {
        fused_disp fd = {.mm = {f->mm[0], f->mm[1]}, .n = 2};
        return emit(p, f, &fd);
    }
    for (int a = 0; a < f->n_mm; a++) {
        if (done[a]) continue;
        fused_disp fd = {0};
        for (int b = a; b < f->n_mm && fd.n < MAX_PER_DISPATCH; b++)
            if (!done[b] && f->mm[b]->src[0]->type == f->mm[a]->src[0]->type) {
                fd.mm[fd.n++] = f->mm[b];
                done[b] = true;
            }
        ELM_TRY(emit(p, f, &fd));
    }
    return ELM_OK;
}

elm_status elmi_fuse_matvec(vk_planner *p, const be_graph *g, int i, int *n) {
    mv_group f;
    *n = 0;
    if (!match(p, g, i, &f)) return ELM_OK;
    /* Without a norm every output is written as it would be: only the
     * absorbed epilogue's intermediates may be skipped. */
    ELM_TRY(plan_group(p, &f));
    p->label = 1 + BE_OP_MUL_MAT;
    *n = f.last - i + 1;
    return ELM_OK;
}
