/* op_argmax.c: planning of BE_OP_ARGMAX (shaders/argmax.comp): one
 * workgroup per row of src0 (n, T) writes (index, max, second max,
 * log-sum-exp) into dst (4, T). Rows are cut into dispatches along T so
 * that both windows fit maxStorageBufferRange; a single row larger than
 * the binding limit runs on the CPU. Shared memory is only the reduction's
 * scratch (reduce.glsl), so every limits profile fits. */
#include "backends/vulkan/ops_impl.h"
#include "quant/quant.h"

/* Values per row: the index must stay exact as a float (backend.h). */
#define ARGMAX_MAX_N (1 << 24)
/* More invocations than rms_norm: vocabulary rows are long and there is
 * one row per token. */
#define ARGMAX_WG 256u

elm_status elmi_op_plan_argmax(vk_planner *p, const be_node *nd) {
    const be_tensor *x = nd->src[0], *d = nd->dst;
    ELM_TRY(elmi_op_check_f32(p, x, "src0"));
    ELM_TRY(elmi_op_check_f32(p, d, "dst"));
    if (x->ne[0] < 1 || x->ne[0] >= ARGMAX_MAX_N || x->ne[2] != 1 || x->ne[3] != 1)
        return elmi_op_invalid(p, "src0 '%s': rows of %lld values, expected 1 to 2^24 - 1 per row", x->name,
                          (long long)x->ne[0]);
    if (d->ne[0] != 4 || d->ne[1] != x->ne[1] || d->ne[2] != 1 || d->ne[3] != 1)
        return elmi_op_invalid(p, "dst '%s' must be (4, %lld)", d->name, (long long)x->ne[1]);
    tview vx, vd;
    ELM_TRY(elmi_op_resolve(p, x, "src0", &vx));
    ELM_TRY(elmi_op_resolve(p, d, "dst", &vd));
    if (vx.w && vx.w->n_pieces != 1) return elmi_op_unsupported(p, "src0 is a host tensor split in pieces");
    if (!vx.w && vx.w_rows_per_piece && vx.w_rows_per_piece < x->ne[1])
        return elmi_op_unsupported(p, "src0 is a host tensor split in pieces");
    size_t sx = x->nb[1], sd = d->nb[1];
    if (sx % 4 || sd % 4) return elmi_op_unsupported(p, "row strides are not multiples of 4 bytes");
    uint32_t wg = elmi_op_reduce_wg(p, ARGMAX_WG, 0);
    if (!wg)
        return elmi_op_unsupported(p, "no workgroup size fits %u bytes of shared memory", p->vk->caps.max_shared);
    int64_t rows = x->ne[1];
    VkDeviceSize wx = (VkDeviceSize)x->ne[0] * 4, wd = 16;
    VkDeviceSize strides[2] = {sx, sd}, widths[2] = {wx, wd};
    int64_t chunk = elmi_op_token_chunk(p, rows, strides, widths, 2);
    if (chunk < 1) return elmi_op_unsupported(p, "a row exceeds maxStorageBufferRange");
    for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
        int64_t n = rows - r0 < chunk ? rows - r0 : chunk;
        disp_build db;
        elmi_op_disp_init(p, &db);
        db.shader = elmi_op_use_sg(p) ? "argmax_sg" : "argmax_sh";
        db.spec[0] = wg, db.spec[1] = elmi_op_nsg(p, wg), db.n_spec = 2;
        pc_argmax pc = {.n = (uint32_t)x->ne[0], .n_rows = (uint32_t)n, .x_stride = (uint32_t)(sx / 4),
                        .d_stride = (uint32_t)(sd / 4)};
        ELM_TRY(elmi_op_bind_view(p, &vx, r0 * sx, (r0 + n - 1) * sx + wx, 4, &db.d.b[0], &pc.x_base));
        ELM_TRY(elmi_op_bind_view(p, &vd, r0 * sd, (r0 + n - 1) * sd + wd, 4, &db.d.b[3], &pc.d_base));
        ELM_TRY(elmi_op_set_groups(p, &db, (uint64_t)n, 1));
        ELM_TRY(elmi_op_emit(p, &db, &pc, sizeof pc));
    }
    return ELM_OK;
}
