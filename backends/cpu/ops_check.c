/* ops_check.c: validation of graph nodes before the CPU backend runs them.
 * Anything that comes from the engine (shapes, strides, params, token ids)
 * is checked here so that the compute functions can trust it. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#include "backends/cpu/matmul.h"
#include "backends/cpu/ops.h"
#include "common/status.h"
#include "quant/quant.h"

elm_status elmi_cpu_check_fail(const cpu_check *c, elm_status status, const be_tensor *t,
                          const char *role, const char *fmt, ...) {
    if (!c->err || c->err_size == 0) return status;
    int n = snprintf(c->err, c->err_size, "node %d (%s): ", c->index,
                     c->node ? elmi_be_op_name(c->node->op) : "?");
    if (n >= 0 && (size_t)n < c->err_size && role) {
        /* The name is not trusted to be NUL-terminated. */
        int m = t ? snprintf(c->err + n, c->err_size - n,
                             "tensor '%.*s' (%s): ", (int)sizeof t->name, t->name, role)
                  : snprintf(c->err + n, c->err_size - n, "%s: ", role);
        n = m >= 0 ? n + m : n;
    }
    if (n >= 0 && (size_t)n < c->err_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err + n, c->err_size - n, fmt, ap);
        va_end(ap);
    }
    return status;
}

static bool block_info(int type, int64_t *block, size_t *bytes) {
    switch (type) {
    case QT_F32:
    case BE_TYPE_I32: *block = 1, *bytes = 4; return true;
    case QT_F16:
    case QT_BF16: *block = 1, *bytes = 2; return true;
    default: break;
    }
    const qtype_traits *tr = elmi_qtype_get(type);
    if (!tr || tr->block_size <= 0 || tr->type_size == 0) return false;
    *block = tr->block_size;
    *bytes = tr->type_size;
    return true;
}

bool elmi_cpu_row_bytes(int type, int64_t n, size_t *out) {
    int64_t block;
    size_t bytes;
    if (!block_info(type, &block, &bytes) || n < 0 || n % block != 0) return false;
    return !__builtin_mul_overflow((size_t)(n / block), bytes, out);
}

/* The extent of dims 0..d, checking that consecutive indices of dim d do not
 * overlap the extent of the dims below it. */
static bool extent_up_to(const be_tensor *t, size_t *span) {
    if (!elmi_cpu_row_bytes(t->type, t->ne[0], span) || t->ne[0] < 1) return false;
    for (int d = 1; d < 4; d++) {
        if (t->ne[d] < 1) return false;
        if (t->ne[d] == 1) continue;
        size_t step;
        if (t->nb[d] < *span) return false;
        if (__builtin_mul_overflow(t->nb[d], (size_t)(t->ne[d] - 1), &step)) return false;
        if (__builtin_add_overflow(*span, step, span)) return false;
    }
    return true;
}

bool elmi_cpu_tensor_extent(const be_tensor *t, size_t *bytes) {
    return t && extent_up_to(t, bytes);
}

elm_status elmi_cpu_check_tensor(const cpu_check *c, const be_tensor *t, const char *role, int type) {
    if (!t) return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, NULL, role, "missing tensor");
    if (t->type != type)
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, t, role, "type %s, expected %s",
                              elmi_qtype_name(t->type), elmi_qtype_name(type));
    int64_t block;
    size_t bytes;
    if (!block_info(t->type, &block, &bytes))
        return elmi_cpu_check_fail(c, ELM_ERR_UNSUPPORTED, t, role, "unknown type %d", t->type);
    if (t->nb[0] != bytes)
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, t, role,
                              "nb[0] = %zu, expected %zu (rows must be contiguous)", t->nb[0],
                              bytes);
    size_t extent;
    if (!extent_up_to(t, &extent))
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, t, role,
                              "bad shape (%lld, %lld, %lld, %lld) or strides for %s",
                              (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                              (long long)t->ne[3], elmi_qtype_name(t->type));
    if (!t->data) return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, t, role, "not in host memory");
    return ELM_OK;
}

elm_status elmi_cpu_check_f32(const cpu_check *c, const be_tensor *t, const char *role, int64_t n0,
                         int64_t n1, int64_t n2, int64_t n3) {
    ELM_TRY(elmi_cpu_check_tensor(c, t, role, QT_F32));
    if (t->ne[0] != n0 || t->ne[1] != n1 || t->ne[2] != n2 || t->ne[3] != n3)
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, t, role,
                              "shape (%lld, %lld, %lld, %lld), expected (%lld, %lld, %lld, %lld)",
                              (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                              (long long)t->ne[3], (long long)n0, (long long)n1, (long long)n2,
                              (long long)n3);
    return ELM_OK;
}

/* A tensor of a type with a dequantizer (F32, F16, BF16 or a quant type). */
static bool dequantizable(int type) {
    if (type == QT_F32 || type == QT_F16 || type == QT_BF16) return true;
    const qtype_traits *tr = elmi_qtype_get(type);
    return tr && tr->to_float;
}

static elm_status check_any_type(const cpu_check *c, const be_tensor *t, const char *role) {
    if (!t) return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, NULL, role, "missing tensor");
    if (!dequantizable(t->type))
        return elmi_cpu_check_fail(c, ELM_ERR_UNSUPPORTED, t, role, "type %s not supported",
                              elmi_qtype_name(t->type));
    return elmi_cpu_check_tensor(c, t, role, t->type);
}

static elm_status check_get_rows(const cpu_check *c) {
    const be_node *nd = c->node;
    const be_tensor *table = nd->src[0], *ids = nd->src[1];
    ELM_TRY(check_any_type(c, table, "src0"));
    ELM_TRY(elmi_cpu_check_tensor(c, ids, "src1", BE_TYPE_I32));
    if (table->ne[2] != 1 || table->ne[3] != 1)
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, table, "src0", "table must be 2-D");
    if (ids->ne[1] != 1 || ids->ne[2] != 1 || ids->ne[3] != 1)
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, ids, "src1", "ids must be 1-D");
    ELM_TRY(elmi_cpu_check_f32(c, nd->dst, "dst", table->ne[0], ids->ne[0], 1, 1));
    const int32_t *id = ids->data;
    for (int64_t t = 0; t < ids->ne[0]; t++)
        if (id[t] < 0 || id[t] >= table->ne[1])
            return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, ids, "src1",
                                  "id %d at %lld outside the table's %lld rows", (int)id[t],
                                  (long long)t, (long long)table->ne[1]);
    return ELM_OK;
}

static elm_status check_same_f32(const cpu_check *c, const be_tensor *t, const char *role,
                                 const be_tensor *like) {
    return elmi_cpu_check_f32(c, t, role, like->ne[0], like->ne[1], like->ne[2], like->ne[3]);
}

static elm_status check_rms_norm(const cpu_check *c) {
    const be_node *nd = c->node;
    ELM_TRY(elmi_cpu_check_tensor(c, nd->src[0], "src0", QT_F32));
    ELM_TRY(elmi_cpu_check_f32(c, nd->src[1], "src1", nd->src[0]->ne[0], 1, 1, 1));
    ELM_TRY(check_same_f32(c, nd->dst, "dst", nd->src[0]));
    float eps = nd->fparams[0];
    if (!(eps >= 0.0f) || !isfinite(eps))
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, NULL, "fparams[0]", "eps %g", eps);
    return ELM_OK;
}

/* ADD and GLU: three F32 tensors of one shape. */
static elm_status check_binary(const cpu_check *c) {
    const be_node *nd = c->node;
    ELM_TRY(elmi_cpu_check_tensor(c, nd->src[0], "src0", QT_F32));
    ELM_TRY(check_same_f32(c, nd->src[1], "src1", nd->src[0]));
    return check_same_f32(c, nd->dst, "dst", nd->src[0]);
}

static elm_status check_mul(const cpu_check *c) {
    const be_node *nd = c->node;
    const be_tensor *a = nd->src[0], *b = nd->src[1];
    ELM_TRY(elmi_cpu_check_tensor(c, a, "src0", QT_F32));
    if (b && b->ne[1] * b->ne[2] * b->ne[3] == 1)
        ELM_TRY(elmi_cpu_check_f32(c, b, "src1", a->ne[0], 1, 1, 1));
    else
        ELM_TRY(check_same_f32(c, b, "src1", a));
    return check_same_f32(c, nd->dst, "dst", a);
}

static elm_status check_softmax(const cpu_check *c) {
    const be_node *nd = c->node;
    ELM_TRY(elmi_cpu_check_tensor(c, nd->src[0], "src0", QT_F32));
    ELM_TRY(check_same_f32(c, nd->dst, "dst", nd->src[0]));
    float s = nd->fparams[0];
    if (!isfinite(s))
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, NULL, "fparams[0]", "scale %g", s);
    return ELM_OK;
}

static elm_status check_glu(const cpu_check *c) {
    int act = c->node->iparams[0];
    if (act != BE_GLU_SILU && act != BE_GLU_GELU_TANH)
        return elmi_cpu_check_fail(c, ELM_ERR_UNSUPPORTED, NULL, "iparams[0]",
                                   "unknown activation %d", act);
    return check_binary(c);
}

static elm_status check_scale(const cpu_check *c) {
    const be_node *nd = c->node;
    ELM_TRY(elmi_cpu_check_tensor(c, nd->src[0], "src0", QT_F32));
    ELM_TRY(check_same_f32(c, nd->dst, "dst", nd->src[0]));
    float s = nd->fparams[0], cap = nd->fparams[1];
    if (!isfinite(s))
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, NULL, "fparams[0]", "scale %g", s);
    if (!isfinite(cap) || cap < 0.0f)
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, NULL, "fparams[1]", "softcap %g", cap);
    return ELM_OK;
}

/* Whether the byte ranges of two valid tensors meet. */
static bool tensors_overlap(const be_tensor *a, const be_tensor *b) {
    size_t ea, eb;
    if (!elmi_cpu_tensor_extent(a, &ea) || !elmi_cpu_tensor_extent(b, &eb)) return true;
    uintptr_t a0 = (uintptr_t)a->data, b0 = (uintptr_t)b->data;
    return a0 < b0 + eb && b0 < a0 + ea;
}

static elm_status check_shortconv(const cpu_check *c) {
    const be_node *nd = c->node;
    const be_tensor *bcx = nd->src[0], *w = nd->src[1], *st = nd->src[2], *d = nd->dst;
    ELM_TRY(elmi_cpu_check_tensor(c, d, "dst", QT_F32));
    int64_t n = d->ne[0], T = d->ne[1];
    if (d->ne[2] != 1 || d->ne[3] != 1)
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, d, "dst", "must be 2-D (n, T)");
    ELM_TRY(elmi_cpu_check_f32(c, bcx, "src0", 3 * n, T, 1, 1));
    ELM_TRY(elmi_cpu_check_tensor(c, w, "src1", QT_F32));
    int64_t L = w->ne[0];
    if (L < 1 || L > SHORTCONV_MAX_L)
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, w, "src1",
                                   "kernel length %lld outside [1, %d]", (long long)L,
                                   SHORTCONV_MAX_L);
    ELM_TRY(elmi_cpu_check_f32(c, w, "src1", L, n, 1, 1));
    ELM_TRY(elmi_cpu_check_tensor(c, st, "src2", QT_F32));
    if (st->ne[0] != n || st->ne[2] != 1 || st->ne[3] != 1)
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, st, "src2",
                                   "shape (%lld, %lld, %lld, %lld), expected (%lld, n_rows)",
                                   (long long)st->ne[0], (long long)st->ne[1],
                                   (long long)st->ne[2], (long long)st->ne[3], (long long)n);
    if (st->ne[1] < T + L - 1)
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, st, "src2",
                                   "a state ring of %lld rows, fewer than T + L - 1 = %lld",
                                   (long long)st->ne[1], (long long)(T + L - 1));
    if (nd->iparams[0] < 0)
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, NULL, "iparams[0]", "pos %d",
                                   nd->iparams[0]);
    /* The op writes dst and the state while other threads read bcx, the
     * kernel and the state: none of them may share memory. */
    if (tensors_overlap(d, bcx) || tensors_overlap(d, w) || tensors_overlap(d, st))
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, d, "dst", "overlaps a source");
    if (tensors_overlap(st, bcx) || tensors_overlap(st, w))
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, st, "src2",
                                   "overlaps src0 or src1");
    return ELM_OK;
}

elm_status elmi_cpu_check_cache(const cpu_check *c, const be_tensor *t, const char *role) {
    if (!t) return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, NULL, role, "missing tensor");
    if (t->type != QT_F32 && t->type != QT_F16)
        return elmi_cpu_check_fail(c, ELM_ERR_UNSUPPORTED, t, role, "cache type %s not supported",
                              elmi_qtype_name(t->type));
    ELM_TRY(elmi_cpu_check_tensor(c, t, role, t->type));
    if (t->ne[2] != 1 || t->ne[3] != 1)
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, t, role, "cache must be 2-D");
    return ELM_OK;
}

static elm_status check_kv_store(const cpu_check *c) {
    const be_node *nd = c->node;
    const be_tensor *src = nd->src[0], *cache = nd->dst;
    ELM_TRY(elmi_cpu_check_cache(c, cache, "dst"));
    ELM_TRY(elmi_cpu_check_tensor(c, src, "src0", QT_F32));
    if (src->ne[0] != cache->ne[0] || src->ne[2] != 1 || src->ne[3] != 1)
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, src, "src0",
                              "shape (%lld, %lld, %lld, %lld) does not match the cache row of %lld",
                              (long long)src->ne[0], (long long)src->ne[1], (long long)src->ne[2],
                              (long long)src->ne[3], (long long)cache->ne[0]);
    int64_t pos = nd->iparams[0], T = src->ne[1];
    int ring = nd->iparams[1];
    if (ring != 0 && ring != 1)
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, NULL, "iparams[1]", "ring %d (0 or 1)",
                                   ring);
    if (pos < 0)
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, cache, "dst", "pos %lld",
                                   (long long)pos);
    if (ring && T > cache->ne[1])
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, cache, "dst",
                                   "%lld tokens do not fit a ring of %lld rows", (long long)T,
                                   (long long)cache->ne[1]);
    if (!ring && pos + T > cache->ne[1])
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, cache, "dst",
                              "rows [%lld, %lld) outside the cache's %lld", (long long)pos,
                              (long long)(pos + T), (long long)cache->ne[1]);
    return ELM_OK;
}

static elm_status check_mul_mat(const cpu_check *c) {
    const be_node *nd = c->node;
    const be_tensor *w = nd->src[0], *x = nd->src[1];
    if (w && !elmi_cpu_mul_mat_supported(w->type))
        return elmi_cpu_check_fail(c, ELM_ERR_UNSUPPORTED, w, "src0", "no kernels for weight type %s",
                              elmi_qtype_name(w->type));
    ELM_TRY(check_any_type(c, w, "src0"));
    if (w->ne[2] != 1 || w->ne[3] != 1)
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, w, "src0", "weights must be 2-D");
    ELM_TRY(elmi_cpu_check_tensor(c, x, "src1", QT_F32));
    if (x->ne[0] != w->ne[0] || x->ne[2] != 1 || x->ne[3] != 1)
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, x, "src1",
                              "shape (%lld, %lld, %lld, %lld) does not match K = %lld",
                              (long long)x->ne[0], (long long)x->ne[1], (long long)x->ne[2],
                              (long long)x->ne[3], (long long)w->ne[0]);
    if (nd->src[2]) ELM_TRY(elmi_cpu_check_f32(c, nd->src[2], "src2", w->ne[1], 1, 1, 1));
    return elmi_cpu_check_f32(c, nd->dst, "dst", w->ne[1], x->ne[1], 1, 1);
}

elm_status elmi_cpu_op_check(const be_node *node, int index, char *err, size_t err_size) {
    cpu_check c = {.index = index, .node = node, .err = err, .err_size = err_size};
    if (!node) return elmi_cpu_check_fail(&c, ELM_ERR_INVALID_ARG, NULL, NULL, "NULL node");
    switch (node->op) {
    case BE_OP_GET_ROWS: return check_get_rows(&c);
    case BE_OP_RMS_NORM: return check_rms_norm(&c);
    case BE_OP_MUL_MAT: return check_mul_mat(&c);
    case BE_OP_ADD: return check_binary(&c);
    case BE_OP_MUL: return check_mul(&c);
    case BE_OP_SOFTMAX: return check_softmax(&c);
    case BE_OP_GLU: return check_glu(&c);
    case BE_OP_SCALE: return check_scale(&c);
    case BE_OP_SHORTCONV: return check_shortconv(&c);
    case BE_OP_ROPE: return elmi_cpu_rope_check(&c);
    case BE_OP_KV_STORE: return check_kv_store(&c);
    case BE_OP_ATTENTION: return elmi_cpu_attention_check(&c);
    case BE_OP_ARGMAX: return elmi_cpu_argmax_check(&c);
    default: break;
    }
    return elmi_cpu_check_fail(&c, ELM_ERR_INVALID_ARG, NULL, NULL, "unknown op %d", (int)node->op);
}

static bool is_type(const be_tensor *t, int type) {
    return t && t->type == type;
}

static bool is_cache(const be_tensor *t) {
    return is_type(t, QT_F32) || is_type(t, QT_F16);
}

bool elmi_cpu_op_supported(const be_node *node) {
    if (!node || !node->dst) return false;
    const be_tensor *const *s = (const be_tensor *const *)node->src;
    if (node->op != BE_OP_KV_STORE && !is_type(node->dst, QT_F32)) return false;
    switch (node->op) {
    case BE_OP_GET_ROWS: return s[0] && dequantizable(s[0]->type) && is_type(s[1], BE_TYPE_I32);
    case BE_OP_MUL_MAT: return s[0] && elmi_cpu_mul_mat_supported(s[0]->type) && is_type(s[1], QT_F32);
    case BE_OP_KV_STORE: return is_type(s[0], QT_F32) && is_cache(node->dst);
    case BE_OP_ATTENTION: return is_type(s[0], QT_F32) && is_cache(s[1]) && is_cache(s[2]);
    case BE_OP_ROPE: return is_type(s[0], QT_F32) && is_type(s[1], BE_TYPE_I32);
    case BE_OP_RMS_NORM:
    case BE_OP_ADD:
    case BE_OP_MUL:
    case BE_OP_GLU: return is_type(s[0], QT_F32) && is_type(s[1], QT_F32);
    case BE_OP_ARGMAX:
    case BE_OP_SOFTMAX:
    case BE_OP_SCALE: return is_type(s[0], QT_F32);
    case BE_OP_SHORTCONV:
        return is_type(s[0], QT_F32) && is_type(s[1], QT_F32) && is_type(s[2], QT_F32);
    default: return false;
    }
}
