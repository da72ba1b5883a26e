/* op_shortconv.c: planning of BE_OP_SHORTCONV (shaders/shortconv.comp):
 * one invocation per channel walks the tokens in order, storing b * x into
 * the state ring (src2, written in place: binding 2 is marked written so
 * graph.c orders it against every other access) and convolving. The
 * position is a per-call value, so decode steps replay. Tokens are cut
 * into dispatches (in order; the state makes consecutive ones dependent)
 * so that the bcx and dst windows fit; the kernel and the state are bound
 * whole. */
#include "backends/vulkan/ops_impl.h"

static elm_status shortconv_check(vk_planner *p, const be_node *nd) {
    const be_tensor *bcx = nd->src[0], *w = nd->src[1], *st = nd->src[2], *d = nd->dst;
    ELM_TRY(elmi_op_check_f32(p, bcx, "src0"));
    ELM_TRY(elmi_op_check_f32(p, w, "src1"));
    ELM_TRY(elmi_op_check_f32(p, st, "src2"));
    ELM_TRY(elmi_op_check_f32(p, d, "dst"));
    int64_t n = d->ne[0], T = d->ne[1], L = w->ne[0];
    for (int k = 2; k < 4; k++)
        if (bcx->ne[k] != 1 || w->ne[k] != 1 || st->ne[k] != 1 || d->ne[k] != 1)
            return elmi_op_invalid(p, "SHORTCONV tensors are 2-D");
    if (bcx->ne[0] != 3 * n || bcx->ne[1] != T || w->ne[1] != n || st->ne[0] != n)
        return elmi_op_invalid(p, "shapes do not match: bcx (3n, T), kernel (L, n), state (n, rows), dst (n, T)");
    if (T + L - 1 > st->ne[1])
        return elmi_op_invalid(p, "%lld tokens and %lld taps need more than the state's %lld rows", (long long)T,
                               (long long)L, (long long)st->ne[1]);
    if (!st->buf) return elmi_op_invalid(p, "the state '%s' is not in a buffer", st->name);
    if (w->nb[1] != (size_t)L * 4) return elmi_op_unsupported(p, "the kernel's rows are not dense");
    if (bcx->nb[1] % 4 || st->nb[1] % 4 || d->nb[1] % 4)
        return elmi_op_unsupported(p, "row strides are not whole floats");
    return ELM_OK;
}

elm_status elmi_op_plan_shortconv(vk_planner *p, const be_node *nd) {
    ELM_TRY(shortconv_check(p, nd));
    const be_tensor *bcx = nd->src[0], *w = nd->src[1], *st = nd->src[2], *d = nd->dst;
    int64_t n = d->ne[0], T = d->ne[1];
    tview vb, vw, vs, vd;
    ELM_TRY(elmi_op_resolve(p, bcx, "src0", &vb));
    ELM_TRY(elmi_op_resolve(p, w, "src1", &vw));
    ELM_TRY(elmi_op_resolve(p, st, "src2", &vs));
    ELM_TRY(elmi_op_resolve(p, d, "dst", &vd));
    uint32_t slot = 0;
    if (p->plan) ELM_TRY(elmi_vk_plan_add_dyn(p->plan, p->node_index, &slot));
    if (vs.extent > elmi_op_window_budget(p) || vw.extent > elmi_op_window_budget(p))
        return elmi_op_unsupported(p, "the state or the kernel exceeds maxStorageBufferRange");
    VkDeviceSize wb = (VkDeviceSize)n * 12, wd = (VkDeviceSize)n * 4;
    VkDeviceSize strides[2] = {bcx->nb[1], d->nb[1]}, widths[2] = {wb, wd};
    int64_t chunk = elmi_op_token_chunk(p, T, strides, widths, 2);
    if (chunk < 1) return elmi_op_unsupported(p, "a token's columns exceed maxStorageBufferRange");
    uint32_t wg = elmi_op_wg_size(p, WG_DEFAULT);
    for (int64_t t0 = 0; t0 < T; t0 += chunk) {
        int64_t nt = T - t0 < chunk ? T - t0 : chunk;
        disp_build db;
        elmi_op_disp_init(p, &db);
        db.d.written |= 1u << 2; /* the state */
        db.shader = "shortconv";
        db.spec[0] = wg, db.spec[1] = 1, db.n_spec = 2;
        pc_shortconv pc = {.n = (uint32_t)n, .L = (uint32_t)w->ne[0], .n_tok = (uint32_t)nt,
                           .bcx_stride = (uint32_t)(bcx->nb[1] / 4), .d_stride = (uint32_t)(d->nb[1] / 4),
                           .s_stride = (uint32_t)(st->nb[1] / 4), .s_rows = (uint32_t)st->ne[1],
                           .tok0 = (uint32_t)t0, .dyn_idx = slot};
        ELM_TRY(elmi_op_bind_view(p, &vb, t0 * bcx->nb[1], (t0 + nt - 1) * bcx->nb[1] + wb, 4, &db.d.b[0],
                                  &pc.bcx_base));
        ELM_TRY(elmi_op_bind_view(p, &vw, 0, vw.extent, 4, &db.d.b[1], &pc.w_base));
        ELM_TRY(elmi_op_bind_view(p, &vs, 0, vs.extent, 4, &db.d.b[2], &pc.s_base));
        ELM_TRY(elmi_op_bind_view(p, &vd, t0 * d->nb[1], (t0 + nt - 1) * d->nb[1] + wd, 4, &db.d.b[3],
                                  &pc.d_base));
        ELM_TRY(elmi_op_set_groups(p, &db, ((uint64_t)n + wg - 1) / wg, 1));
        ELM_TRY(elmi_op_emit(p, &db, &pc, sizeof pc));
    }
    return ELM_OK;
}
