/* ops_api_ops.c: the ops of include/edgelm_ops.h. Each checks its tensors'
 * types and shapes and its parameters here, with a message naming the
 * function and the argument, before a backend sees the node; the backends
 * check again for their own limits. */
#include <math.h>
#include <string.h>

#include "common/abi.h"
#include "common/status.h"
#include "engine/ops_api.h"

#define MIN_ROPE_PARAMS ELMI_SIZE_UNTIL(elm_rope_params, attn_factor)
#define MIN_ATTN_PARAMS ELMI_SIZE_UNTIL(elm_attn_params, window)

typedef struct call {
    elm_dev *dev;
    const char *op;
    op_rec rec;
} call;

static elm_status begin(call *c, elm_dev *dev, const char *op, be_op kind) {
    if (!dev) return ELM_ERR_INVALID_ARG;
    memset(c, 0, sizeof *c);
    c->dev = dev;
    c->op = op;
    c->rec.nd.op = kind;
    dev->last_error[0] = 0;
    return ELM_OK;
}

static const be_tensor *T(const call *c, int slot) {
    return &c->rec.t[slot];
}

static elm_status bad(call *c, const char *role, const char *what) {
    return elmi_ops_fail(c->dev, ELM_ERR_INVALID_ARG, "%s: %s %s", c->op, role, what);
}

/* Takes tensor t (may be NULL when optional) into slot 0 (dst) or 1 + i
 * (source i), requiring type `type` (-1: any but I32). */
static elm_status take(call *c, int slot, const char *role, const elm_op_tensor *t, int type,
                       bool optional) {
    if (!t && optional) return ELM_OK;
    be_tensor *bt = &c->rec.t[slot];
    ELM_TRY(elmi_ops_tensor(c->dev, c->op, role, t, slot == 0, bt));
    c->rec.used[slot] = true;
    bool ok = type >= 0 ? bt->type == type : bt->type != ELM_TYPE_I32;
    if (!ok)
        return elmi_ops_fail(c->dev, ELM_ERR_INVALID_ARG, "%s: %s '%s' is %s, expected %s", c->op,
                             role, bt->name, elm_type_name(bt->type),
                             type >= 0 ? elm_type_name(type) : "a floating-point or quantized type");
    return ELM_OK;
}

/* The tensor in `slot` must have shape (n0, n1, n2, n3). */
static elm_status shape(call *c, int slot, const char *role, int64_t n0, int64_t n1, int64_t n2,
                        int64_t n3) {
    const be_tensor *t = T(c, slot);
    if (t->ne[0] == n0 && t->ne[1] == n1 && t->ne[2] == n2 && t->ne[3] == n3) return ELM_OK;
    return elmi_ops_fail(c->dev, ELM_ERR_INVALID_ARG,
                         "%s: %s '%s' has shape (%lld, %lld, %lld, %lld), expected (%lld, %lld, %lld, %lld)",
                         c->op, role, t->name, (long long)t->ne[0], (long long)t->ne[1],
                         (long long)t->ne[2], (long long)t->ne[3], (long long)n0, (long long)n1,
                         (long long)n2, (long long)n3);
}

static elm_status same_shape(call *c, int slot, const char *role, int like) {
    const int64_t *ne = T(c, like)->ne;
    return shape(c, slot, role, ne[0], ne[1], ne[2], ne[3]);
}

static elm_status finish(call *c, elm_op_graph *graph) {
    return elmi_ops_submit(c->dev, graph, &c->rec);
}

/* ------------------------------------------------------------------- ops */

elm_status elm_op_mul_mat(elm_dev *dev, elm_op_graph *graph, const elm_op_tensor *w,
                          const elm_op_tensor *x, const elm_op_tensor *bias,
                          const elm_op_tensor *dst) {
    call c;
    ELM_TRY(begin(&c, dev, "elm_op_mul_mat", BE_OP_MUL_MAT));
    ELM_TRY(take(&c, 1, "w", w, -1, false));
    ELM_TRY(take(&c, 2, "x", x, ELM_TYPE_F32, false));
    ELM_TRY(take(&c, 3, "bias", bias, ELM_TYPE_F32, true));
    ELM_TRY(take(&c, 0, "dst", dst, ELM_TYPE_F32, false));
    int64_t K = T(&c, 1)->ne[0], N = T(&c, 1)->ne[1], Tn = T(&c, 2)->ne[1];
    ELM_TRY(shape(&c, 1, "w", K, N, 1, 1));
    ELM_TRY(shape(&c, 2, "x", K, Tn, 1, 1));
    if (bias) ELM_TRY(shape(&c, 3, "bias", N, 1, 1, 1));
    ELM_TRY(shape(&c, 0, "dst", N, Tn, 1, 1));
    return finish(&c, graph);
}

elm_status elm_op_rms_norm(elm_dev *dev, elm_op_graph *graph, const elm_op_tensor *x,
                           const elm_op_tensor *w, float eps, const elm_op_tensor *dst) {
    call c;
    ELM_TRY(begin(&c, dev, "elm_op_rms_norm", BE_OP_RMS_NORM));
    ELM_TRY(take(&c, 1, "x", x, ELM_TYPE_F32, false));
    ELM_TRY(take(&c, 2, "w", w, ELM_TYPE_F32, false));
    ELM_TRY(take(&c, 0, "dst", dst, ELM_TYPE_F32, false));
    ELM_TRY(shape(&c, 2, "w", T(&c, 1)->ne[0], 1, 1, 1));
    ELM_TRY(same_shape(&c, 0, "dst", 1));
    if (!(eps >= 0.0f) || !isfinite(eps))
        return elmi_ops_fail(dev, ELM_ERR_INVALID_ARG, "%s: eps %g (finite, >= 0)", c.op, eps);
    c.rec.nd.fparams[0] = eps;
    return finish(&c, graph);
}

void elm_rope_params_init(elm_rope_params *p, size_t struct_size) {
    const elm_rope_params def = {.struct_size = sizeof def, .style = ELM_ROPE_NORM, .n_rot = 0,
                                 .freq_base = 10000.0f, .freq_scale = 1.0f, .attn_factor = 1.0f};
    elmi_struct_init(p, struct_size, &def, sizeof def);
}

static elm_status rope_params(call *c, const elm_rope_params *params, int64_t hd) {
    elm_rope_params p;
    elm_rope_default_params(&p);
    if (params && !elmi_struct_in(&p, sizeof p, params, MIN_ROPE_PARAMS))
        return elmi_ops_fail(c->dev, ELM_ERR_INVALID_ARG, "%s: params->struct_size too small", c->op);
    int64_t n_rot = p.n_rot ? p.n_rot : hd;
    if (p.style != ELM_ROPE_NORM && p.style != ELM_ROPE_NEOX)
        return elmi_ops_fail(c->dev, ELM_ERR_INVALID_ARG, "%s: unknown style %d", c->op, (int)p.style);
    if (n_rot < 2 || n_rot % 2 || n_rot > hd)
        return elmi_ops_fail(c->dev, ELM_ERR_INVALID_ARG,
                             "%s: n_rot %lld (even, 2 to head_dim %lld)", c->op, (long long)n_rot,
                             (long long)hd);
    if (!(p.freq_base > 0.0f) || !isfinite(p.freq_base) || !(p.freq_scale > 0.0f) ||
        !isfinite(p.freq_scale) || !isfinite(p.attn_factor))
        return elmi_ops_fail(c->dev, ELM_ERR_INVALID_ARG,
                             "%s: freq_base %g, freq_scale %g (both > 0), attn_factor %g (finite)",
                             c->op, p.freq_base, p.freq_scale, p.attn_factor);
    be_node *nd = &c->rec.nd;
    nd->iparams[0] = p.style == ELM_ROPE_NEOX ? BE_ROPE_NEOX : BE_ROPE_NORM;
    nd->iparams[1] = (int32_t)n_rot;
    const float f[6] = {p.freq_base, p.freq_scale, 0.0f, p.attn_factor, 32.0f, 1.0f};
    memcpy(nd->fparams, f, sizeof f);
    return ELM_OK;
}

elm_status elm_op_rope(elm_dev *dev, elm_op_graph *graph, const elm_op_tensor *x,
                       const elm_op_tensor *pos, const elm_op_tensor *ff,
                       const elm_rope_params *params, const elm_op_tensor *dst) {
    call c;
    ELM_TRY(begin(&c, dev, "elm_op_rope", BE_OP_ROPE));
    ELM_TRY(take(&c, 1, "x", x, ELM_TYPE_F32, false));
    ELM_TRY(take(&c, 2, "pos", pos, ELM_TYPE_I32, false));
    ELM_TRY(take(&c, 3, "ff", ff, ELM_TYPE_F32, true));
    ELM_TRY(take(&c, 0, "dst", dst, ELM_TYPE_F32, false));
    const be_tensor *tx = T(&c, 1);
    if (tx->ne[3] != 1) return bad(&c, "x", "must be (head_dim, n_head, T)");
    ELM_TRY(shape(&c, 2, "pos", tx->ne[2], 1, 1, 1));
    ELM_TRY(same_shape(&c, 0, "dst", 1));
    ELM_TRY(rope_params(&c, params, tx->ne[0]));
    if (ff) ELM_TRY(shape(&c, 3, "ff", c.rec.nd.iparams[1] / 2, 1, 1, 1));
    return finish(&c, graph);
}

/* A 2-D F32 or F16 cache in `slot`. */
static elm_status cache(call *c, int slot, const char *role, const elm_op_tensor *t) {
    ELM_TRY(take(c, slot, role, t, -1, false));
    const be_tensor *bt = T(c, slot);
    if (bt->type != ELM_TYPE_F32 && bt->type != ELM_TYPE_F16)
        return elmi_ops_fail(c->dev, ELM_ERR_INVALID_ARG, "%s: %s '%s' is %s, expected F32 or F16",
                             c->op, role, bt->name, elm_type_name(bt->type));
    if (bt->ne[2] != 1 || bt->ne[3] != 1)
        return elmi_ops_fail(c->dev, ELM_ERR_INVALID_ARG, "%s: %s '%s' must be 2-D (row_len, n_rows)",
                             c->op, role, bt->name);
    return ELM_OK;
}

elm_status elm_op_kv_store(elm_dev *dev, elm_op_graph *graph, const elm_op_tensor *x,
                           const elm_op_tensor *cache_t, int32_t pos) {
    call c;
    ELM_TRY(begin(&c, dev, "elm_op_kv_store", BE_OP_KV_STORE));
    ELM_TRY(take(&c, 1, "x", x, ELM_TYPE_F32, false));
    ELM_TRY(cache(&c, 0, "cache", cache_t));
    int64_t Tn = T(&c, 1)->ne[1], rows = T(&c, 0)->ne[1];
    ELM_TRY(shape(&c, 1, "x", T(&c, 0)->ne[0], Tn, 1, 1));
    if (pos < 0 || pos + Tn > rows)
        return elmi_ops_fail(dev, ELM_ERR_INVALID_ARG,
                             "%s: rows [%d, %lld) outside the cache's %lld", c.op, (int)pos,
                             (long long)(pos + Tn), (long long)rows);
    c.rec.nd.iparams[0] = pos;
    return finish(&c, graph);
}

void elm_attn_params_init(elm_attn_params *p, size_t struct_size) {
    const elm_attn_params def = {.struct_size = sizeof def};
    elmi_struct_init(p, struct_size, &def, sizeof def);
}

static elm_status attn_shapes(call *c, int64_t *n_kv) {
    const be_tensor *q = T(c, 1), *k = T(c, 2), *v = T(c, 3);
    int64_t hd = q->ne[0], nh = q->ne[1];
    if (q->ne[3] != 1) return bad(c, "q", "must be (head_dim, n_head, T)");
    if (k->type != v->type)
        return elmi_ops_fail(c->dev, ELM_ERR_INVALID_ARG, "%s: k is %s but v is %s", c->op,
                             elm_type_name(k->type), elm_type_name(v->type));
    ELM_TRY(same_shape(c, 3, "v", 2));
    if (k->ne[0] % hd || nh % (k->ne[0] / hd))
        return elmi_ops_fail(c->dev, ELM_ERR_INVALID_ARG,
                             "%s: k rows of %lld values are not whole heads of %lld dividing the "
                             "%lld query heads", c->op, (long long)k->ne[0], (long long)hd,
                             (long long)nh);
    *n_kv = k->ne[0] / hd;
    return shape(c, 0, "dst", hd * nh, q->ne[2], 1, 1);
}

elm_status elm_op_attention(elm_dev *dev, elm_op_graph *graph, const elm_op_tensor *q,
                            const elm_op_tensor *k, const elm_op_tensor *v,
                            const elm_attn_params *params, const elm_op_tensor *dst) {
    call c;
    ELM_TRY(begin(&c, dev, "elm_op_attention", BE_OP_ATTENTION));
    ELM_TRY(take(&c, 1, "q", q, ELM_TYPE_F32, false));
    ELM_TRY(cache(&c, 2, "k", k));
    ELM_TRY(cache(&c, 3, "v", v));
    ELM_TRY(take(&c, 0, "dst", dst, ELM_TYPE_F32, false));
    int64_t n_kv = 1;
    ELM_TRY(attn_shapes(&c, &n_kv));
    elm_attn_params p;
    elm_attn_default_params(&p);
    if (params && !elmi_struct_in(&p, sizeof p, params, MIN_ATTN_PARAMS))
        return elmi_ops_fail(dev, ELM_ERR_INVALID_ARG, "%s: params->struct_size too small", c.op);
    int64_t Tn = T(&c, 1)->ne[2], rows = T(&c, 2)->ne[1];
    if (p.pos < 0 || p.pos + Tn > rows)
        return elmi_ops_fail(dev, ELM_ERR_INVALID_ARG,
                             "%s: positions [%d, %lld) outside the cache's %lld rows", c.op,
                             (int)p.pos, (long long)(p.pos + Tn), (long long)rows);
    if (!isfinite(p.scale) || !isfinite(p.softcap) || p.softcap < 0.0f || p.window < 0)
        return elmi_ops_fail(dev, ELM_ERR_INVALID_ARG, "%s: scale %g, softcap %g, window %d", c.op,
                             p.scale, p.softcap, (int)p.window);
    be_node *nd = &c.rec.nd;
    nd->iparams[0] = p.pos;
    nd->iparams[1] = (int32_t)n_kv;
    nd->iparams[2] = p.window;
    nd->fparams[0] = p.scale != 0.0f ? p.scale : (float)(1.0 / sqrt((double)T(&c, 1)->ne[0]));
    nd->fparams[1] = p.softcap;
    return finish(&c, graph);
}

/* Three F32 tensors: a, b (of a's shape, or one row when `row` allows)
 * and dst of a's shape. */
static elm_status binary(call *c, const elm_op_tensor *a, const elm_op_tensor *b,
                         const elm_op_tensor *dst, const char *na, const char *nb, bool row) {
    ELM_TRY(take(c, 1, na, a, ELM_TYPE_F32, false));
    ELM_TRY(take(c, 2, nb, b, ELM_TYPE_F32, false));
    ELM_TRY(take(c, 0, "dst", dst, ELM_TYPE_F32, false));
    const be_tensor *tb = T(c, 2);
    if (!(row && tb->ne[1] * tb->ne[2] * tb->ne[3] == 1 && tb->ne[0] == T(c, 1)->ne[0]))
        ELM_TRY(same_shape(c, 2, nb, 1));
    return same_shape(c, 0, "dst", 1);
}

elm_status elm_op_glu(elm_dev *dev, elm_op_graph *graph, const elm_op_tensor *gate,
                      const elm_op_tensor *up, elm_glu_act act, const elm_op_tensor *dst) {
    call c;
    ELM_TRY(begin(&c, dev, "elm_op_glu", BE_OP_GLU));
    ELM_TRY(binary(&c, gate, up, dst, "gate", "up", false));
    if (act != ELM_GLU_SILU && act != ELM_GLU_GELU_TANH)
        return elmi_ops_fail(dev, ELM_ERR_INVALID_ARG, "%s: unknown activation %d", c.op, (int)act);
    c.rec.nd.iparams[0] = act == ELM_GLU_SILU ? BE_GLU_SILU : BE_GLU_GELU_TANH;
    return finish(&c, graph);
}

elm_status elm_op_softmax(elm_dev *dev, elm_op_graph *graph, const elm_op_tensor *x, float scale,
                          const elm_op_tensor *dst) {
    call c;
    ELM_TRY(begin(&c, dev, "elm_op_softmax", BE_OP_SOFTMAX));
    ELM_TRY(take(&c, 1, "x", x, ELM_TYPE_F32, false));
    ELM_TRY(take(&c, 0, "dst", dst, ELM_TYPE_F32, false));
    ELM_TRY(same_shape(&c, 0, "dst", 1));
    if (!isfinite(scale))
        return elmi_ops_fail(dev, ELM_ERR_INVALID_ARG, "%s: scale %g (finite)", c.op, scale);
    c.rec.nd.fparams[0] = scale;
    return finish(&c, graph);
}

elm_status elm_op_add(elm_dev *dev, elm_op_graph *graph, const elm_op_tensor *a,
                      const elm_op_tensor *b, const elm_op_tensor *dst) {
    call c;
    ELM_TRY(begin(&c, dev, "elm_op_add", BE_OP_ADD));
    ELM_TRY(binary(&c, a, b, dst, "a", "b", false));
    return finish(&c, graph);
}

elm_status elm_op_mul(elm_dev *dev, elm_op_graph *graph, const elm_op_tensor *a,
                      const elm_op_tensor *b, const elm_op_tensor *dst) {
    call c;
    ELM_TRY(begin(&c, dev, "elm_op_mul", BE_OP_MUL));
    ELM_TRY(binary(&c, a, b, dst, "a", "b", true));
    return finish(&c, graph);
}

elm_status elm_op_get_rows(elm_dev *dev, elm_op_graph *graph, const elm_op_tensor *table,
                           const elm_op_tensor *ids, const elm_op_tensor *dst) {
    call c;
    ELM_TRY(begin(&c, dev, "elm_op_get_rows", BE_OP_GET_ROWS));
    ELM_TRY(take(&c, 1, "table", table, -1, false));
    ELM_TRY(take(&c, 2, "ids", ids, ELM_TYPE_I32, false));
    ELM_TRY(take(&c, 0, "dst", dst, ELM_TYPE_F32, false));
    const be_tensor *tt = T(&c, 1);
    int64_t Tn = T(&c, 2)->ne[0];
    ELM_TRY(shape(&c, 1, "table", tt->ne[0], tt->ne[1], 1, 1));
    ELM_TRY(shape(&c, 2, "ids", Tn, 1, 1, 1));
    ELM_TRY(shape(&c, 0, "dst", tt->ne[0], Tn, 1, 1));
    return finish(&c, graph);
}
