/* ops.c: how each op runs on the device: which shader variant, with which
 * specialization constants, bound to which byte windows, in how many
 * dispatches.
 *
 * Every binding must fit maxStorageBufferRange, so work is cut along its
 * independent dimension (tokens, and weight rows for MUL_MAT/GET_ROWS)
 * into dispatches whose windows fit; host weights are already split into
 * row pieces by memory.c. Shared memory and workgroup sizes come from the
 * (possibly emulated) limits. Whatever cannot be made to fit is reported
 * as ELM_ERR_UNSUPPORTED with a reason, and graph.c runs the node on the
 * CPU instead. Planning with p->plan == NULL only answers that question. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "backends/vulkan/ops_impl.h"
#include "quant/quant.h"


/* ------------------------------------------------------- element-wise ops */

static elm_status plan_binary(vk_planner *p, const be_node *nd) {
    const be_tensor *a = nd->src[0], *b = nd->src[1], *d = nd->dst;
    ELM_TRY(elmi_op_check_f32(p, a, "src0"));
    ELM_TRY(elmi_op_check_f32(p, b, "src1"));
    ELM_TRY(elmi_op_check_f32(p, d, "dst"));
    /* MUL may broadcast one row of src1 over every row of src0. */
    bool bcast = nd->op == BE_OP_MUL && b->ne[0] == a->ne[0] && b->ne[1] * b->ne[2] * b->ne[3] == 1;
    if ((!bcast && !elmi_op_same_shape(a, b)) || !elmi_op_same_shape(a, d)) return elmi_op_invalid(p, "shapes differ");
    int act = nd->iparams[0];
    if (nd->op == BE_OP_GLU && act != BE_GLU_SILU && act != BE_GLU_GELU_TANH)
        return elmi_op_invalid(p, "unknown GLU activation %d", act);
    tview va, vb, vd;
    ELM_TRY(elmi_op_resolve(p, a, "src0", &va));
    ELM_TRY(elmi_op_resolve(p, b, "src1", &vb));
    ELM_TRY(elmi_op_resolve(p, d, "dst", &vd));
    int64_t rows, rb, rd;
    size_t sa, sb, sd;
    if (!elmi_op_flat_rows(a, &rows, &sa) || !elmi_op_flat_rows(b, &rb, &sb) || !elmi_op_flat_rows(d, &rd, &sd))
        return elmi_op_unsupported(p, "rows are not evenly spaced");
    if (bcast) sb = 0;
    VkDeviceSize w = (VkDeviceSize)a->ne[0] * 4, strides[3] = {sa, sb, sd}, widths[3] = {w, w, w};
    int64_t chunk = elmi_op_token_chunk(p, rows, strides, widths, 3);
    if (chunk < 1) return elmi_op_unsupported(p, "a row exceeds maxStorageBufferRange");
    uint32_t wg = elmi_op_wg_size(p, WG_DEFAULT);
    for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
        int64_t n = rows - r0 < chunk ? rows - r0 : chunk;
        disp_build db;
        elmi_op_disp_init(p, &db);
        db.shader = nd->op == BE_OP_ADD ? "add" : nd->op == BE_OP_MUL ? "mul" : "glu";
        db.spec[0] = wg, db.spec[1] = 1, db.n_spec = 2;
        pc_binary pc = {.n = (uint32_t)a->ne[0], .n_rows = (uint32_t)n, .a_stride = (uint32_t)(sa / 4),
                        .b_stride = (uint32_t)(sb / 4), .d_stride = (uint32_t)(sd / 4),
                        .act = nd->op == BE_OP_GLU ? (uint32_t)act : 0};
        ELM_TRY(elmi_op_bind_view(p, &va, r0 * sa, (r0 + n - 1) * sa + w, 4, &db.d.b[0], &pc.a_base));
        ELM_TRY(elmi_op_bind_view(p, &vb, r0 * sb, (r0 + n - 1) * sb + w, 4, &db.d.b[1], &pc.b_base));
        ELM_TRY(elmi_op_bind_view(p, &vd, r0 * sd, (r0 + n - 1) * sd + w, 4, &db.d.b[3], &pc.d_base));
        ELM_TRY(elmi_op_set_groups(p, &db, (a->ne[0] + wg - 1) / wg, (uint64_t)n));
        ELM_TRY(elmi_op_emit(p, &db, &pc, sizeof pc));
    }
    return ELM_OK;
}

/* Row ops over every row of (n, ne1, ne2, ne3), rows at any strides (a
 * (head_dim, n_head, T) view of heads, or whole rows (n, T)): a dispatch
 * takes a chunk of indices along the outermost dimension o with more than
 * one row, and every row below it. */
typedef struct rows3 {
    int o;
    int64_t inner;        /* rows per index along o */
    int64_t chunk;        /* indices along o per dispatch */
    VkDeviceSize wx, wd;  /* bytes one index along o spans in x and in d */
} rows3;

/* Bytes of one index along dimension o: a row of n F32 and the dims below. */
static VkDeviceSize slice_bytes(const be_tensor *t, int o) {
    VkDeviceSize b = (VkDeviceSize)t->ne[0] * 4;
    for (int k = 1; k < o; k++) b += (VkDeviceSize)(t->ne[k] - 1) * t->nb[k];
    return b;
}

static elm_status rows3_plan(vk_planner *p, const be_tensor *x, const be_tensor *d, rows3 *r) {
    for (int k = 1; k < 4; k++)
        if (x->nb[k] % 4 || d->nb[k] % 4) return elmi_op_unsupported(p, "row strides are not whole floats");
    int o = 3;
    while (o > 1 && x->ne[o] == 1) o--;
    r->o = o;
    r->inner = 1;
    for (int k = 1; k < o; k++) r->inner *= x->ne[k];
    r->wx = slice_bytes(x, o);
    r->wd = slice_bytes(d, o);
    VkDeviceSize strides[2] = {x->nb[o], d->nb[o]}, widths[2] = {r->wx, r->wd};
    r->chunk = elmi_op_token_chunk(p, x->ne[o], strides, widths, 2);
    if (r->chunk < 1) return elmi_op_unsupported(p, "rows exceed maxStorageBufferRange");
    return ELM_OK;
}

/* The rows of chunk [c0, c0 + n) along o: counts and strides in floats. */
typedef struct rows3_pc {
    uint32_t n_rows, ne1, ne2, xs[3], ds[3];
} rows3_pc;

static rows3_pc rows3_chunk(const rows3 *r, const be_tensor *x, const be_tensor *d, int64_t n) {
    rows3_pc c = {.n_rows = (uint32_t)(r->inner * n)};
    int64_t ne[3];
    for (int k = 1; k < 4; k++) {
        ne[k - 1] = k < r->o ? x->ne[k] : k == r->o ? n : 1;
        c.xs[k - 1] = (uint32_t)(x->nb[k] / 4);
        c.ds[k - 1] = (uint32_t)(d->nb[k] / 4);
    }
    c.ne1 = (uint32_t)ne[0];
    c.ne2 = (uint32_t)ne[1];
    return c;
}

static elm_status plan_rms_norm(vk_planner *p, const be_node *nd) {
    const be_tensor *x = nd->src[0], *w = nd->src[1], *d = nd->dst;
    ELM_TRY(elmi_op_check_f32(p, x, "src0"));
    ELM_TRY(elmi_op_check_f32(p, w, "src1"));
    ELM_TRY(elmi_op_check_f32(p, d, "dst"));
    if (w->ne[0] != x->ne[0] || !elmi_op_same_shape(x, d)) return elmi_op_invalid(p, "shapes differ");
    if (!(nd->fparams[0] >= 0.0f) || !isfinite(nd->fparams[0])) return elmi_op_invalid(p, "eps %g", nd->fparams[0]);
    tview vx, vw, vd;
    ELM_TRY(elmi_op_resolve(p, x, "src0", &vx));
    ELM_TRY(elmi_op_resolve(p, w, "src1", &vw));
    ELM_TRY(elmi_op_resolve(p, d, "dst", &vd));
    rows3 r;
    ELM_TRY(rows3_plan(p, x, d, &r));
    uint32_t wg = elmi_op_reduce_wg(p, WG_DEFAULT, 0);
    if (!wg) return elmi_op_unsupported(p, "no workgroup size fits %u bytes of shared memory", p->vk->caps.max_shared);
    VkDeviceSize width = (VkDeviceSize)x->ne[0] * 4, sx = x->nb[r.o], sd = d->nb[r.o];
    for (int64_t c0 = 0; c0 < x->ne[r.o]; c0 += r.chunk) {
        int64_t n = x->ne[r.o] - c0 < r.chunk ? x->ne[r.o] - c0 : r.chunk;
        disp_build db;
        elmi_op_disp_init(p, &db);
        db.shader = elmi_op_use_sg(p) ? "rms_norm_sg" : "rms_norm_sh";
        db.spec[0] = wg, db.spec[1] = elmi_op_nsg(p, wg), db.n_spec = 2;
        rows3_pc c = rows3_chunk(&r, x, d, n);
        pc_rms_norm pc = {.n = (uint32_t)x->ne[0], .n_rows = c.n_rows, .ne1 = c.ne1, .ne2 = c.ne2,
                          .x_s1 = c.xs[0], .x_s2 = c.xs[1], .x_s3 = c.xs[2],
                          .d_s1 = c.ds[0], .d_s2 = c.ds[1], .d_s3 = c.ds[2], .eps = nd->fparams[0]};
        ELM_TRY(elmi_op_bind_view(p, &vx, c0 * sx, (c0 + n - 1) * sx + r.wx, 4, &db.d.b[0], &pc.x_base));
        ELM_TRY(elmi_op_bind_view(p, &vw, 0, width, 4, &db.d.b[1], &pc.w_base));
        ELM_TRY(elmi_op_bind_view(p, &vd, c0 * sd, (c0 + n - 1) * sd + r.wd, 4, &db.d.b[3], &pc.d_base));
        ELM_TRY(elmi_op_set_groups(p, &db, c.n_rows, 1));
        ELM_TRY(elmi_op_emit(p, &db, &pc, sizeof pc));
    }
    return ELM_OK;
}

static elm_status plan_softmax(vk_planner *p, const be_node *nd) {
    const be_tensor *x = nd->src[0], *d = nd->dst;
    ELM_TRY(elmi_op_check_f32(p, x, "src0"));
    ELM_TRY(elmi_op_check_f32(p, d, "dst"));
    if (!elmi_op_same_shape(x, d)) return elmi_op_invalid(p, "shapes differ");
    if (!isfinite(nd->fparams[0])) return elmi_op_invalid(p, "scale %g", nd->fparams[0]);
    tview vx, vd;
    ELM_TRY(elmi_op_resolve(p, x, "src0", &vx));
    ELM_TRY(elmi_op_resolve(p, d, "dst", &vd));
    rows3 r;
    ELM_TRY(rows3_plan(p, x, d, &r));
    uint32_t wg = elmi_op_reduce_wg(p, WG_DEFAULT, 0);
    if (!wg) return elmi_op_unsupported(p, "no workgroup size fits %u bytes of shared memory", p->vk->caps.max_shared);
    VkDeviceSize sx = x->nb[r.o], sd = d->nb[r.o];
    for (int64_t c0 = 0; c0 < x->ne[r.o]; c0 += r.chunk) {
        int64_t n = x->ne[r.o] - c0 < r.chunk ? x->ne[r.o] - c0 : r.chunk;
        disp_build db;
        elmi_op_disp_init(p, &db);
        db.shader = elmi_op_use_sg(p) ? "softmax_sg" : "softmax_sh";
        db.spec[0] = wg, db.spec[1] = elmi_op_nsg(p, wg), db.n_spec = 2;
        rows3_pc c = rows3_chunk(&r, x, d, n);
        pc_softmax pc = {.n = (uint32_t)x->ne[0], .n_rows = c.n_rows, .ne1 = c.ne1, .ne2 = c.ne2,
                         .x_s1 = c.xs[0], .x_s2 = c.xs[1], .x_s3 = c.xs[2],
                         .d_s1 = c.ds[0], .d_s2 = c.ds[1], .d_s3 = c.ds[2], .s = nd->fparams[0]};
        ELM_TRY(elmi_op_bind_view(p, &vx, c0 * sx, (c0 + n - 1) * sx + r.wx, 4, &db.d.b[0], &pc.x_base));
        ELM_TRY(elmi_op_bind_view(p, &vd, c0 * sd, (c0 + n - 1) * sd + r.wd, 4, &db.d.b[3], &pc.d_base));
        ELM_TRY(elmi_op_set_groups(p, &db, c.n_rows, 1));
        ELM_TRY(elmi_op_emit(p, &db, &pc, sizeof pc));
    }
    return ELM_OK;
}

static elm_status plan_scale(vk_planner *p, const be_node *nd) {
    const be_tensor *x = nd->src[0], *d = nd->dst;
    ELM_TRY(elmi_op_check_f32(p, x, "src0"));
    ELM_TRY(elmi_op_check_f32(p, d, "dst"));
    if (!elmi_op_same_shape(x, d)) return elmi_op_invalid(p, "shapes differ");
    tview vx, vd;
    ELM_TRY(elmi_op_resolve(p, x, "src0", &vx));
    ELM_TRY(elmi_op_resolve(p, d, "dst", &vd));
    rows3 r;
    ELM_TRY(rows3_plan(p, x, d, &r));
    uint32_t wg = elmi_op_wg_size(p, WG_DEFAULT);
    uint64_t blocks = ((uint64_t)x->ne[0] + wg - 1) / wg;
    VkDeviceSize sx = x->nb[r.o], sd = d->nb[r.o];
    for (int64_t c0 = 0; c0 < x->ne[r.o]; c0 += r.chunk) {
        int64_t n = x->ne[r.o] - c0 < r.chunk ? x->ne[r.o] - c0 : r.chunk;
        disp_build db;
        elmi_op_disp_init(p, &db);
        db.shader = "scale";
        db.spec[0] = wg, db.spec[1] = 1, db.n_spec = 2;
        rows3_pc c = rows3_chunk(&r, x, d, n);
        pc_scale pc = {.n = (uint32_t)x->ne[0], .n_rows = c.n_rows, .ne1 = c.ne1, .ne2 = c.ne2,
                       .x_s1 = c.xs[0], .x_s2 = c.xs[1], .x_s3 = c.xs[2],
                       .d_s1 = c.ds[0], .d_s2 = c.ds[1], .d_s3 = c.ds[2],
                       .s = nd->fparams[0], .softcap = nd->fparams[1]};
        ELM_TRY(elmi_op_bind_view(p, &vx, c0 * sx, (c0 + n - 1) * sx + r.wx, 4, &db.d.b[0], &pc.x_base));
        ELM_TRY(elmi_op_bind_view(p, &vd, c0 * sd, (c0 + n - 1) * sd + r.wd, 4, &db.d.b[3], &pc.d_base));
        ELM_TRY(elmi_op_set_groups(p, &db, blocks * c.n_rows, 1));
        ELM_TRY(elmi_op_emit(p, &db, &pc, sizeof pc));
    }
    return ELM_OK;
}

/* ------------------------------------------------------------------- ROPE */

static double yarn_dim(int n_rot, int n_ctx_orig, double beta, double base) {
    return n_rot * log(n_ctx_orig / (beta * 2.0 * M_PI)) / (2.0 * log(base));
}

static elm_status rope_params(vk_planner *p, const be_node *nd, int64_t head_dim, pc_rope *pc) {
    int mode = nd->iparams[0], n_rot = nd->iparams[1];
    const float *f = nd->fparams;
    if ((mode != BE_ROPE_NORM && mode != BE_ROPE_NEOX) || n_rot < 2 || n_rot % 2 || n_rot > head_dim ||
        head_dim % 2 || !(f[0] > 0.0f) || f[0] == 1.0f || !(f[1] > 0.0f) || !isfinite(f[2]) || !isfinite(f[3]))
        return elmi_op_unsupported(p, "rope parameters outside what the shader handles");
    pc->neox = mode == BE_ROPE_NEOX;
    pc->n_rot = (uint32_t)n_rot;
    pc->log2_theta_scale = (float)(-2.0 / n_rot * log2((double)f[0]));
    pc->freq_scale = f[1];
    pc->ext_factor = f[2];
    pc->yarn = f[2] != 0.0f;
    double mscale = f[3];
    if (pc->yarn) {
        if (nd->iparams[2] <= 0 || !(f[4] > 0.0f) || !(f[5] > 0.0f))
            return elmi_op_unsupported(p, "YaRN parameters outside what the shader handles");
        double lo = floor(yarn_dim(n_rot, nd->iparams[2], f[4], f[0]));
        double hi = ceil(yarn_dim(n_rot, nd->iparams[2], f[5], f[0]));
        pc->corr_low = (float)fmax(0.0, lo);
        pc->corr_high = (float)fmin(n_rot - 1.0, hi);
        mscale *= 1.0 + 0.1 * log(1.0 / f[1]);
    }
    pc->mscale = (float)mscale;
    return ELM_OK;
}

elm_status elmi_op_rope_check(vk_planner *p, const be_node *nd, pc_rope *pc) {
    const be_tensor *x = nd->src[0], *pos = nd->src[1], *ff = nd->src[2], *d = nd->dst;
    ELM_TRY(elmi_op_check_f32(p, x, "src0"));
    ELM_TRY(elmi_op_check_f32(p, d, "dst"));
    if (ff) ELM_TRY(elmi_op_check_f32(p, ff, "src2"));
    if (!pos || pos->type != BE_TYPE_I32 || pos->ne[0] != x->ne[2] || !elmi_op_same_shape(x, d) || x->ne[3] != 1)
        return elmi_op_invalid(p, "shapes do not match");
    *pc = (pc_rope){.head_dim = (uint32_t)x->ne[0], .n_head = (uint32_t)x->ne[1], .has_ff = ff != NULL};
    ELM_TRY(rope_params(p, nd, x->ne[0], pc));
    if (ff && ff->ne[0] < pc->n_rot / 2) return elmi_op_invalid(p, "too few frequency factors");
    return ELM_OK;
}

static elm_status plan_rope(vk_planner *p, const be_node *nd) {
    const be_tensor *x = nd->src[0], *pos = nd->src[1], *ff = nd->src[2], *d = nd->dst;
    pc_rope pc;
    ELM_TRY(elmi_op_rope_check(p, nd, &pc));
    tview vx, vp, vf, vd;
    ELM_TRY(elmi_op_resolve(p, x, "src0", &vx));
    ELM_TRY(elmi_op_resolve(p, pos, "src1", &vp));
    if (ff) ELM_TRY(elmi_op_resolve(p, ff, "src2", &vf));
    ELM_TRY(elmi_op_resolve(p, d, "dst", &vd));
    pc.x_rs = (uint32_t)(x->nb[1] / 4), pc.x_ts = (uint32_t)(x->nb[2] / 4);
    pc.d_rs = (uint32_t)(d->nb[1] / 4), pc.d_ts = (uint32_t)(d->nb[2] / 4);
    VkDeviceSize wx = (x->ne[1] - 1) * x->nb[1] + x->ne[0] * 4, wd = (d->ne[1] - 1) * d->nb[1] + d->ne[0] * 4;
    VkDeviceSize strides[3] = {x->nb[2], d->nb[2], 4}, widths[3] = {wx, wd, 4};
    int64_t T = x->ne[2], chunk = elmi_op_token_chunk(p, T, strides, widths, 3);
    if (chunk < 1) return elmi_op_unsupported(p, "a token's heads exceed maxStorageBufferRange");
    uint32_t wg = elmi_op_wg_size(p, WG_DEFAULT);
    uint64_t slots = (uint64_t)x->ne[0] / 2 * (uint64_t)x->ne[1];
    for (int64_t t0 = 0; t0 < T; t0 += chunk) {
        int64_t n = T - t0 < chunk ? T - t0 : chunk;
        disp_build db;
        elmi_op_disp_init(p, &db);
        db.shader = "rope";
        db.spec[0] = wg, db.spec[1] = 1, db.n_spec = 2;
        pc_rope q = pc;
        ELM_TRY(elmi_op_bind_view(p, &vx, t0 * x->nb[2], (t0 + n - 1) * x->nb[2] + wx, 4, &db.d.b[0], &q.x_base));
        ELM_TRY(elmi_op_bind_view(p, &vp, t0 * 4, (t0 + n) * 4, 4, &db.d.b[1], &q.pos_base));
        if (ff) ELM_TRY(elmi_op_bind_view(p, &vf, 0, pc.n_rot / 2 * 4, 4, &db.d.b[2], &q.ff_base));
        ELM_TRY(elmi_op_bind_view(p, &vd, t0 * d->nb[2], (t0 + n - 1) * d->nb[2] + wd, 4, &db.d.b[3], &q.d_base));
        ELM_TRY(elmi_op_set_groups(p, &db, (slots + wg - 1) / wg, (uint64_t)n));
        ELM_TRY(elmi_op_emit(p, &db, &q, sizeof q));
    }
    return ELM_OK;
}

/* --------------------------------------------------------------- KV_STORE */

static bool is_cache(const be_tensor *t) {
    return t && (t->type == QT_F32 || t->type == QT_F16) && t->ne[2] == 1 && t->ne[3] == 1;
}

elm_status elmi_op_kv_check(vk_planner *p, const be_node *nd, bool *words) {
    const be_tensor *x = nd->src[0], *c = nd->dst;
    ELM_TRY(elmi_op_check_f32(p, x, "src0"));
    if (!is_cache(c)) return elmi_op_invalid(p, "dst must be a 2-D F32 or F16 cache");
    if (x->ne[0] != c->ne[0] || x->ne[2] != 1 || x->ne[3] != 1) return elmi_op_invalid(p, "shapes do not match");
    int ring = nd->iparams[1];
    if (ring != 0 && ring != 1) return elmi_op_invalid(p, "ring %d (0 or 1)", ring);
    if (ring && x->ne[1] > c->ne[1])
        return elmi_op_invalid(p, "%lld tokens into a ring of %lld rows", (long long)x->ne[1], (long long)c->ne[1]);
    *words = c->type == QT_F16 && !p->vk->caps.storage16;
    if (*words && (x->ne[0] % 2 || c->nb[1] % 4))
        return elmi_op_unsupported(p, "odd F16 rows need 16-bit storage");
    return ELM_OK;
}

static elm_status plan_kv_store(vk_planner *p, const be_node *nd) {
    const be_tensor *x = nd->src[0], *c = nd->dst;
    bool words, f16 = c && c->type == QT_F16;
    ELM_TRY(elmi_op_kv_check(p, nd, &words));
    int ring = nd->iparams[1];
    tview vx, vc;
    ELM_TRY(elmi_op_resolve(p, x, "src0", &vx));
    ELM_TRY(elmi_op_resolve(p, c, "dst", &vc));
    uint32_t slot = 0;
    if (p->plan) ELM_TRY(elmi_vk_plan_add_dyn(p->plan, p->node_index, &slot));
    VkDeviceSize w = (VkDeviceSize)x->ne[0] * 4;
    int64_t T = x->ne[1], chunk = elmi_op_token_chunk(p, T, &(VkDeviceSize){x->nb[1]}, &w, 1);
    if (chunk < 1 || vc.extent > elmi_op_window_budget(p)) return elmi_op_unsupported(p, "the cache exceeds maxStorageBufferRange");
    uint32_t wg = elmi_op_wg_size(p, WG_DEFAULT), unit = f16 ? 2 : 4;
    uint64_t items = words ? (uint64_t)x->ne[0] / 2 : (uint64_t)x->ne[0];
    for (int64_t t0 = 0; t0 < T; t0 += chunk) {
        int64_t n = T - t0 < chunk ? T - t0 : chunk;
        disp_build db;
        elmi_op_disp_init(p, &db);
        db.shader = !f16 ? "kv_store_f32" : words ? "kv_store_f16_u32" : "kv_store_f16_s16";
        db.spec[0] = wg, db.spec[1] = 1, db.n_spec = 2;
        pc_kv_store pc = {.n = (uint32_t)x->ne[0], .x_stride = (uint32_t)(x->nb[1] / 4),
                          .d_stride = (uint32_t)(c->nb[1] / unit), .tok0 = (uint32_t)t0, .dyn_idx = slot,
                          .ring_rows = ring ? (uint32_t)c->ne[1] : VK_NO_RING};
        ELM_TRY(elmi_op_bind_view(p, &vx, t0 * x->nb[1], (t0 + n - 1) * x->nb[1] + w, 4, &db.d.b[0], &pc.x_base));
        ELM_TRY(elmi_op_bind_view(p, &vc, 0, vc.extent, unit, &db.d.b[3], &pc.d_base));
        ELM_TRY(elmi_op_set_groups(p, &db, (items + wg - 1) / wg, (uint64_t)n));
        ELM_TRY(elmi_op_emit(p, &db, &pc, sizeof pc));
    }
    return ELM_OK;
}

/* -------------------------------------------------------------- ATTENTION */

/* The workgroup size whose scratch fits shared memory, or 0. */
/* ------------------------------------------------------------------ entry */

elm_status elmi_vk_plan_node(vk_planner *p, const be_node *node) {
    p->why[0] = '\0';
    if (!node || !node->dst) return elmi_op_invalid(p, "node without a destination");
    if (!node->dst->buf) return elmi_op_invalid(p, "the destination '%s' is not in a buffer", node->dst->name);
    switch (node->op) {
    case BE_OP_GET_ROWS: return elmi_op_plan_get_rows(p, node);
    case BE_OP_RMS_NORM: return plan_rms_norm(p, node);
    case BE_OP_MUL_MAT: return elmi_op_plan_mul_mat(p, node);
    case BE_OP_ADD:
    case BE_OP_MUL:
    case BE_OP_GLU: return plan_binary(p, node);
    case BE_OP_SOFTMAX: return plan_softmax(p, node);
    case BE_OP_ROPE: return plan_rope(p, node);
    case BE_OP_KV_STORE: return plan_kv_store(p, node);
    case BE_OP_ATTENTION: return elmi_op_plan_attention(p, node);
    case BE_OP_ARGMAX: return elmi_op_plan_argmax(p, node);
    case BE_OP_SCALE: return plan_scale(p, node);
    case BE_OP_SHORTCONV: return elmi_op_plan_shortconv(p, node);
    default:
        /* An op of backend.h without a Vulkan kernel (yet) runs on the CPU,
         * which validates it; only values outside the enum are malformed. */
        if ((int)node->op >= 0 && node->op < BE_OP_COUNT)
            return elmi_op_unsupported(p, "no Vulkan kernel for %s", elmi_be_op_name(node->op));
        return elmi_op_invalid(p, "unknown op %d", (int)node->op);
    }
}
