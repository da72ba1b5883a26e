/* ops_util.c: what every op's planning shares (see ops_impl.h): tensor
 * views, binding windows within the device's limits, row and token chunks,
 * workgroup sizes and dispatch assembly. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "backends/vulkan/ops_impl.h"
#include "quant/quant.h"

elm_status elmi_op_unsupported(vk_planner *p, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->why, sizeof p->why, fmt, ap);
    va_end(ap);
    return ELM_ERR_UNSUPPORTED;
}

elm_status elmi_op_invalid(vk_planner *p, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char msg[VK_ERR_LEN];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return elmi_vk_fail(p->vk, ELM_ERR_INVALID_ARG, "node %d: %s", p->node_index, msg);
}

bool elmi_vk_node_has_dyn(const be_node *node) {
    return node->op == BE_OP_KV_STORE || node->op == BE_OP_ATTENTION || node->op == BE_OP_SHORTCONV;
}

/* ------------------------------------------------------------- type info */

const char *elmi_op_type_suffix(int type) {
    for (size_t i = 0; i < elmi_vk_n_weight_types; i++)
        if (elmi_vk_weight_types[i].type == type) return elmi_vk_weight_types[i].suffix;
    return NULL;
}

bool elmi_op_row_bytes(int type, int64_t n, size_t *out) {
    if (type == BE_TYPE_I32) {
        *out = (size_t)n * 4;
        return n >= 0;
    }
    return elmi_qtype_row_bytes(type, n, out);
}

size_t elmi_op_elem_bytes(int type) {
    const qtype_traits *tr = elmi_qtype_get(type);
    return type == BE_TYPE_I32 ? 4 : tr ? tr->type_size : 0;
}

/* Values per dequant4 group: every weight row must be whole groups. */
bool elmi_op_whole_groups(int type, int64_t n) {
    const qtype_traits *tr = elmi_qtype_get(type);
    return tr && (tr->block_size > 1 || n % 4 == 0);
}

/* ---------------------------------------------------------------- views */

bool elmi_vk_tensor_extent(const be_tensor *t, VkDeviceSize *out) {
    size_t span;
    if (!elmi_op_row_bytes(t->type, t->ne[0], &span) || t->ne[0] < 1) return false;
    for (int d = 1; d < 4; d++) {
        if (t->ne[d] < 1) return false;
        size_t step;
        if (__builtin_mul_overflow(t->nb[d], (size_t)(t->ne[d] - 1), &step) ||
            __builtin_add_overflow(span, step, &span))
            return false;
    }
    *out = span;
    return true;
}

elm_status elmi_op_resolve(vk_planner *p, const be_tensor *t, const char *role, tview *v) {
    memset(v, 0, sizeof *v);
    if (!t) return elmi_op_invalid(p, "%s is missing", role);
    if (!elmi_vk_tensor_extent(t, &v->extent) || t->nb[0] != elmi_op_elem_bytes(t->type))
        return elmi_op_invalid(p, "%s '%s': bad shape or strides", role, t->name);
    if (t->buf) {
        const be_buffer *b = t->buf;
        if (!elmi_vk_owns_buffer(p->vk, b))
            return elmi_op_unsupported(p, "%s '%s' is in a buffer of another backend", role, t->name);
        if (t->offs > b->size || v->extent > b->size - t->offs)
            return elmi_op_invalid(p, "%s '%s' lies outside its buffer", role, t->name);
        if (t->offs % 4)
            return elmi_op_unsupported(p, "%s '%s' starts at an offset that is not a multiple of 4", role, t->name);
        VkDeviceSize s0 = t->offs / b->seg_size, s1 = (t->offs + v->extent - 1) / b->seg_size;
        if (s0 != s1)
            return elmi_op_unsupported(p, "%s '%s' straddles two device allocations", role, t->name);
        v->seg = &b->segs[s0];
        v->offs = t->offs - s0 * b->seg_size;
        return ELM_OK;
    }
    if (!t->data) return elmi_op_invalid(p, "%s '%s' has neither a buffer nor host data", role, t->name);
    if (!p->plan) {
        v->w_rows_per_piece = elmi_vk_weight_rows_per_piece(p->vk, t->nb[1]);
        if (v->w_rows_per_piece < 1)
            return elmi_op_unsupported(p, "a row of %s '%s' exceeds the device's buffer limits", role, t->name);
        return ELM_OK;
    }
    elm_status st = elmi_vk_weight_get(p->vk, t, &v->w);
    if (st == ELM_ERR_UNSUPPORTED) return elmi_op_unsupported(p, "%s", p->vk->last_error);
    return st;
}

/* Rows of a tensor counted over dims 1..3 and their common stride, when the
 * rows are evenly spaced. */
bool elmi_op_flat_rows(const be_tensor *t, int64_t *rows, size_t *stride) {
    int64_t r = 1;
    size_t s = 0;
    for (int d = 1; d < 4; d++) {
        if (t->ne[d] == 1) continue;
        if (s == 0) s = t->nb[d];
        else if (t->nb[d] != s * (size_t)r) return false;
        r *= t->ne[d];
    }
    *rows = r;
    *stride = s ? s : t->nb[1];
    return true;
}

/* ------------------------------------------------------------- bindings */

/* Bytes a window may span so that alignment slack still fits the range. */
VkDeviceSize elmi_op_window_budget(const vk_planner *p) {
    VkDeviceSize slack = p->vk->caps.offset_align + 4;
    return p->vk->caps.max_range > slack ? p->vk->caps.max_range - slack : 0;
}

/* Binds bytes [lo, hi) of a segment; *base is lo's index in `unit`s from the
 * bound offset. */
elm_status elmi_op_bind(vk_planner *p, const vk_seg *seg, VkDeviceSize lo, VkDeviceSize hi,
                       uint32_t unit, vk_bind *b, uint32_t *base) {
    lo += seg->base, hi += seg->base; /* imported host memory starts at an aligned address before */
    VkDeviceSize align = p->vk->caps.offset_align;
    VkDeviceSize off = lo / align * align, end = (hi + 3) / 4 * 4;
    if (end > seg->size) end = seg->size;
    if (end - off > p->vk->caps.max_range)
        return elmi_op_unsupported(p, "a window of %llu bytes exceeds maxStorageBufferRange %llu",
                           (unsigned long long)(end - off), (unsigned long long)p->vk->caps.max_range);
    b->buf = seg->buf;
    b->offset = off;
    b->range = end - off;
    b->seg_id = seg->id;
    VkDeviceSize texels = (b->range + 15) / 16 * 16;
    b->tex_range = off + texels <= seg->size ? texels : 0;
    *base = (uint32_t)((lo - off) / unit);
    return ELM_OK;
}

/* Binds bytes [lo, hi) of a tensor's view (relative to element 0). */
elm_status elmi_op_bind_view(vk_planner *p, const tview *v, VkDeviceSize lo, VkDeviceSize hi,
                            uint32_t unit, vk_bind *b, uint32_t *base) {
    if (!p->plan) return hi - lo <= elmi_op_window_budget(p) ? ELM_OK : elmi_op_unsupported(p, "a tensor exceeds maxStorageBufferRange");
    if (v->w) {
        if (v->w->n_pieces != 1) return elmi_op_unsupported(p, "a host tensor bound whole is split in pieces");
        return elmi_op_bind(p, &v->w->pieces[0], lo, hi, unit, b, base);
    }
    return elmi_op_bind(p, v->seg, v->offs + lo, v->offs + hi, unit, b, base);
}

static void op_bind_dummy(vk_planner *p, vk_bind *b) {
    const vk_seg *d = &p->vk->dummy;
    *b = (vk_bind){d->buf, 0, d->size, 0, 0};
}

bool elmi_op_rows_init(const vk_planner *p, const tview *v, int64_t n_rows, size_t rb, int64_t most,
                      rows_iter *it) {
    int64_t fit = rb ? (int64_t)(elmi_op_window_budget(p) / rb) : 0;
    *it = (rows_iter){v, n_rows, fit < most ? fit : most, 0, rb, 0};
    if (v->w) it->per_piece = v->w->n_pieces == 1 ? n_rows : v->w->row0[1];
    else it->per_piece = v->w_rows_per_piece ? v->w_rows_per_piece : n_rows;
    return it->fit >= 1 && it->per_piece >= 1;
}

/* The most rows one run can have. */
int64_t elmi_op_rows_most(const rows_iter *it) {
    int64_t m = it->fit < it->per_piece ? it->fit : it->per_piece;
    return m < it->n_rows ? m : it->n_rows;
}

bool elmi_op_rows_next(rows_iter *it, rows_piece *out) {
    if (it->r >= it->n_rows) return false;
    /* Pieces are equal runs of per_piece rows (memory.c), the last one shorter. */
    int64_t piece = it->r / it->per_piece, a = piece * it->per_piece;
    int64_t b = a + it->per_piece < it->n_rows ? a + it->per_piece : it->n_rows;
    int64_t n = b - it->r < it->fit ? b - it->r : it->fit;
    const tview *v = it->v;
    if (v->w) *out = (rows_piece){it->r, n, &v->w->pieces[piece], (VkDeviceSize)(it->r - a) * it->rb};
    else *out = (rows_piece){it->r, n, v->seg, v->offs + (VkDeviceSize)it->r * it->rb};
    it->r += n;
    return true;
}

/* ---------------------------------------------------------- dispatching */

void elmi_op_disp_init(vk_planner *p, disp_build *db) {
    memset(db, 0, sizeof *db);
    for (int i = 0; i < VK_N_BIND; i++) op_bind_dummy(p, &db->d.b[i]);
    db->d.written = 1u << 3;
}

/* Workgroups for n items laid out on x then y; z given. */
elm_status elmi_op_set_groups(vk_planner *p, disp_build *db, uint64_t n, uint64_t z) {
    const uint32_t *mx = p->vk->caps.max_wg_count;
    if (n == 0) n = 1;
    uint64_t x = n < mx[0] ? n : mx[0], y = (n + x - 1) / x;
    if (y > mx[1] || z > mx[2] || z == 0)
        return elmi_op_unsupported(p, "%llu x %llu workgroups exceed the device's counts",
                           (unsigned long long)n, (unsigned long long)z);
    db->d.groups[0] = (uint32_t)x;
    db->d.groups[1] = (uint32_t)y;
    db->d.groups[2] = (uint32_t)z;
    return ELM_OK;
}

elm_status elmi_op_emit(vk_planner *p, disp_build *db, const void *pc, size_t pc_bytes) {
    if (!p->plan) return ELM_OK;
    memcpy(db->d.pc, pc, pc_bytes);
    ELM_TRY(elmi_vk_pipeline_get(p->vk, db->shader, db->spec, db->n_spec, db->subgroup, &db->d.pipe));
    return elmi_vk_plan_add_dispatch(p->vk, p->plan, &db->d);
}

static uint32_t op_pow2_floor(uint32_t v) {
    uint32_t r = 1;
    while (r * 2 <= v) r *= 2;
    return r;
}

/* Workgroup size for simple kernels: a power of two within the limits. */
uint32_t elmi_op_wg_size(const vk_planner *p, uint32_t want) {
    const vk_caps *c = &p->vk->caps;
    uint32_t lim = c->max_invocations < c->max_wg_size[0] ? c->max_invocations : c->max_wg_size[0];
    return op_pow2_floor(want < lim ? want : lim);
}

/* Subgroup slots of reduce.glsl for a workgroup of wg. */
uint32_t elmi_op_nsg(const vk_planner *p, uint32_t wg) {
    uint32_t m = p->vk->caps.min_subgroup_size;
    uint32_t n = m ? (wg + m - 1) / m : wg;
    return n ? n : 1;
}

bool elmi_op_use_sg(const vk_planner *p) {
    return p->vk->caps.subgroup_arith;
}

const char *elmi_op_storage(const vk_planner *p) {
    return p->vk->caps.storage16 ? "s16" : "u32";
}

/* Shared bytes of reduce.glsl. */
uint32_t elmi_op_reduce_shared(const vk_planner *p, uint32_t wg) {
    return 4 * (elmi_op_use_sg(p) ? elmi_op_nsg(p, wg) : wg);
}

/* The largest workgroup (from `want` down) whose reduction fits shared memory. */
uint32_t elmi_op_reduce_wg(const vk_planner *p, uint32_t want, uint32_t extra_shared) {
    for (uint32_t wg = elmi_op_wg_size(p, want); wg >= 1; wg /= 2)
        if (elmi_op_reduce_shared(p, wg) + extra_shared <= p->vk->caps.max_shared) return wg;
    return 0;
}

/* Tokens per dispatch so that every per-token window fits: window i spans
 * (c - 1) * stride[i] + width[i] bytes. */
int64_t elmi_op_token_chunk(const vk_planner *p, int64_t T, const VkDeviceSize *stride,
                           const VkDeviceSize *width, int n) {
    VkDeviceSize budget = elmi_op_window_budget(p);
    int64_t c = T < p->vk->caps.max_wg_count[2] ? T : p->vk->caps.max_wg_count[2];
    for (int i = 0; i < n; i++) {
        if (width[i] > budget) return 0;
        if (stride[i] && (int64_t)((budget - width[i]) / stride[i] + 1) < c)
            c = (int64_t)((budget - width[i]) / stride[i] + 1);
    }
    return c;
}

elm_status elmi_op_check_f32(vk_planner *p, const be_tensor *t, const char *role) {
    if (!t) return elmi_op_invalid(p, "%s is missing", role);
    if (t->type != QT_F32) return elmi_op_invalid(p, "%s '%s' must be F32", role, t->name);
    return ELM_OK;
}

bool elmi_op_same_shape(const be_tensor *a, const be_tensor *b) {
    return !memcmp(a->ne, b->ne, sizeof a->ne);
}

/* Constant id = v, the ones between it and the last set ones 0. */
static void spec_at(disp_build *db, uint32_t id, uint32_t v) {
    for (uint32_t i = db->n_spec; i < id; i++) db->spec[i] = 0;
    db->spec[id] = v;
    if (db->n_spec < id + 1) db->n_spec = id + 1;
}

void elmi_op_spec_split(disp_build *db, bool split) {
    _Static_assert(VK_SPEC_WSPLIT < VK_MAX_SPEC, "WSPLIT must fit the constants of a dispatch");
    if (split) spec_at(db, VK_SPEC_WSPLIT, 1);
}

bool elmi_op_texel_ok(const vk_caps *c, const vk_bind *b, uint32_t texel_bytes) {
    return b->tex_range && b->offset % c->texel_align == 0 && b->tex_range / texel_bytes <= c->max_texel;
}

bool elmi_op_quad_runs(int type, bool split, uint32_t w_base, size_t row_bytes) {
    /* Block sizes (split: body sizes) and field offsets that are multiples
     * of 16: F32 4-value chunks, Q4_K 144 and Q5_K 176, split Q4_0 16,
     * Q8_0 32 and Q6_K 208 (shaders/common/matvec_chunk.glsl). */
    bool runs = type == QT_F32 || type == QT_Q4_K || type == QT_Q5_K ||
                (split && (type == QT_Q4_0 || type == QT_Q8_0 || type == QT_Q6_K));
    return runs && w_base % 16 == 0 && row_bytes % 16 == 0;
}

void elmi_op_spec_wquad(disp_build *db) {
    _Static_assert(VK_SPEC_WQUAD < VK_MAX_SPEC, "WQUAD must fit the constants of a dispatch");
    spec_at(db, VK_SPEC_WQUAD, 1);
}
