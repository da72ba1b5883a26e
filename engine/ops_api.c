/* ops_api.c: devices, buffers, tensor descriptions and graphs of the op
 * API (include/edgelm_ops.h). The ops themselves are in ops_api_ops.c. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/abi.h"
#include "common/alloc.h"
#include "common/status.h"
#include "engine/ops_api.h"
#include "quant/quant.h"

#define MIN_DEV_PARAMS ELMI_SIZE_UNTIL(elm_dev_params, n_threads)
#define MIN_GRAPH_PARAMS ELMI_SIZE_UNTIL(elm_op_graph_params, mode)
#define MIN_TENSOR ELMI_SIZE_UNTIL(elm_op_tensor, name)

elm_status elmi_ops_fail(elm_dev *dev, elm_status st, const char *fmt, ...) {
    if (dev) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(dev->last_error, sizeof dev->last_error, fmt, ap);
        va_end(ap);
    }
    return st;
}

/* ------------------------------------------------------------------- types */

static bool type_known(int type) {
    switch (type) {
    case ELM_TYPE_F32: case ELM_TYPE_F16: case ELM_TYPE_BF16: case ELM_TYPE_I32:
    case ELM_TYPE_Q4_0: case ELM_TYPE_Q4_1: case ELM_TYPE_Q5_0: case ELM_TYPE_Q5_1:
    case ELM_TYPE_Q8_0: case ELM_TYPE_Q2_K: case ELM_TYPE_Q3_K: case ELM_TYPE_Q4_K:
    case ELM_TYPE_Q5_K: case ELM_TYPE_Q6_K: return true;
    default: return false;
    }
}

_Static_assert((int)ELM_TYPE_I32 == BE_TYPE_I32 && (int)ELM_TYPE_Q4_K == (int)QT_Q4_K &&
                   (int)ELM_TYPE_BF16 == (int)QT_BF16,
               "elm_type must be the GGUF ids of quant.h");

const char *elm_type_name(elm_type type) {
    return type_known(type) ? elmi_qtype_name(type) : "unknown";
}

/* Values and bytes of one element or block. */
static bool block_of(int type, int64_t *values, size_t *bytes) {
    if (!type_known(type)) return false;
    if (type == ELM_TYPE_I32) {
        *values = 1, *bytes = 4;
        return true;
    }
    const qtype_traits *tr = elmi_qtype_get(type);
    if (!tr || tr->block_size <= 0) return false;
    *values = tr->block_size, *bytes = tr->type_size;
    return true;
}

elm_status elm_type_row_bytes(elm_type type, int64_t n, size_t *bytes) {
    int64_t values;
    size_t b;
    if (!bytes || n < 0 || !block_of(type, &values, &b) || n % values) return ELM_ERR_INVALID_ARG;
    return __builtin_mul_overflow((size_t)(n / values), b, bytes) ? ELM_ERR_INVALID_ARG : ELM_OK;
}

static elm_status convert(elm_type type, const void *src, void *dst, int64_t n, bool to_type) {
    size_t bytes;
    if (!src || !dst || type == ELM_TYPE_I32) return ELM_ERR_INVALID_ARG;
    ELM_TRY(elm_type_row_bytes(type, n, &bytes));
    if (type == ELM_TYPE_F32) {
        memcpy(dst, src, bytes);
        return ELM_OK;
    }
    const qtype_traits *tr = elmi_qtype_get(type);
    if (to_type ? !tr->from_float : !tr->to_float) return ELM_ERR_UNSUPPORTED;
    if (to_type)
        tr->from_float(src, dst, n);
    else
        tr->to_float(src, dst, n);
    return ELM_OK;
}

elm_status elm_type_quantize(elm_type type, const float *src, void *dst, int64_t n) {
    return convert(type, src, dst, n, true);
}

elm_status elm_type_dequantize(elm_type type, const void *src, float *dst, int64_t n) {
    return convert(type, src, dst, n, false);
}

/* ----------------------------------------------------------------- devices */

void elm_dev_params_init(elm_dev_params *p, size_t struct_size) {
    const elm_dev_params def = {.struct_size = sizeof def, .n_threads = 0};
    elmi_struct_init(p, struct_size, &def, sizeof def);
}

/* The one place the op API creates a backend, so that a change to how
 * backends are created (the registry's create) is made here only. */
static elm_status dev_backend_new(const elm_device_choice *c, int n_threads, be_backend **out,
                                  char *err, size_t err_size) {
    return elmi_device_backend_new(NULL, c, n_threads, false, out, err, err_size);
}

elm_status elm_dev_new(const char *id, const elm_dev_params *params, elm_dev **out, char *err,
                       size_t err_size) {
    if (!out) return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "elm_dev_new: out is NULL");
    *out = NULL;
    if (!id) return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "elm_dev_new: id is NULL");
    elm_dev_params p;
    elm_dev_default_params(&p);
    if (params && !elmi_struct_in(&p, sizeof p, params, MIN_DEV_PARAMS))
        return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG,
                           "elm_dev_new: params->struct_size %zu is too small", params->struct_size);
    elm_device_choice c;
    ELM_TRY(elmi_device_resolve(id, &c, err, err_size));
    elm_dev *dev = elmi_calloc(1, sizeof *dev);
    if (!dev) return elmi_errorf(err, err_size, ELM_ERR_NO_MEMORY, "out of memory");
    char msg[ELM_ERR_LEN] = "";
    elm_status st = dev_backend_new(&c, p.n_threads, &dev->be, msg, sizeof msg);
    if (st != ELM_OK && c.automatic && c.reg) { /* "auto": a GPU that fails gives way to the CPU */
        elmi_device_resolve("cpu", &c, err, err_size);
        st = dev_backend_new(&c, p.n_threads, &dev->be, msg, sizeof msg);
    }
    if (st != ELM_OK) {
        elmi_free(dev);
        return elmi_errorf(err, err_size, st, "device %s: %s", c.id, msg);
    }
    snprintf(dev->id, sizeof dev->id, "%s", c.id);
    elmi_sched_init(&dev->sched, dev->be, c.reg == NULL, p.n_threads, false);
    *out = dev;
    return ELM_OK;
}

void elm_dev_free(elm_dev *dev) {
    if (!dev) return;
    elmi_sched_free(&dev->sched);
    be_free(dev->be);
    elmi_free(dev);
}

const char *elm_dev_last_error(const elm_dev *dev) {
    return dev ? dev->last_error : "";
}

const char *elm_dev_id(const elm_dev *dev) {
    return dev ? dev->id : "";
}

elm_status elm_dev_get_info(elm_dev *dev, elm_device_info *out) {
    if (!dev) return ELM_ERR_INVALID_ARG;
    if (!out || out->struct_size < sizeof(size_t))
        return elmi_ops_fail(dev, ELM_ERR_INVALID_ARG, "elm_dev_get_info: out or its struct_size");
    size_t n = 0;
    ELM_TRY(elm_devices(NULL, 0, &n));
    elm_device_info *all = elmi_calloc(n ? n : 1, sizeof *all);
    if (!all) return elmi_ops_fail(dev, ELM_ERR_NO_MEMORY, "out of memory");
    all[0].struct_size = sizeof *all;
    elm_status st = elm_devices(all, n, &n);
    size_t i = 0;
    while (st == ELM_OK && i < n && strcmp(all[i].id, dev->id)) i++;
    if (st == ELM_OK && i == n)
        st = elmi_ops_fail(dev, ELM_ERR_DEVICE, "device %s is no longer listed", dev->id);
    if (st == ELM_OK && !elmi_struct_out(out, &all[i], sizeof all[i], ELMI_MIN_DEVICE_INFO))
        st = elmi_ops_fail(dev, ELM_ERR_INVALID_ARG, "elm_dev_get_info: struct_size %zu too small",
                           out->struct_size);
    elmi_free(all);
    return st;
}

#define MAX_STATS 64

elm_status elm_dev_stat_find(elm_dev *dev, const char *name, double *value) {
    if (!dev) return ELM_ERR_INVALID_ARG;
    if (!name) return elmi_ops_fail(dev, ELM_ERR_INVALID_ARG, "elm_dev_stat_find: name is NULL");
    be_stats bs = {0};
    if (dev->be->iface->get_stats) dev->be->iface->get_stats(dev->be, &bs);
    be_stat all[MAX_STATS] = {
        {"nodes", (double)bs.n_nodes},
        {"fallback_nodes", (double)dev->sched.n_fallback_nodes},
    };
    size_t n = 2;
    if (dev->be->iface->device_stats)
        n += dev->be->iface->device_stats(dev->be, all + 2, MAX_STATS - 2);
    for (size_t i = 0; i < n && i < MAX_STATS; i++)
        if (!strcmp(all[i].name, name)) {
            if (value) *value = all[i].value;
            return ELM_OK;
        }
    return elmi_ops_fail(dev, ELM_ERR_INVALID_ARG, "device %s has no counter '%s'", dev->id, name);
}

/* ----------------------------------------------------------------- buffers */

static elm_status buffer_new(elm_dev *dev, size_t size, void *host, elm_dev_buffer **out) {
    elm_dev_buffer *b = elmi_calloc(1, sizeof *b);
    if (!b) return elmi_ops_fail(dev, ELM_ERR_NO_MEMORY, "out of memory");
    elm_status st = dev->be->iface->buffer_alloc(dev->be, size, host, &b->b);
    if (st != ELM_OK) {
        elmi_free(b);
        return elmi_ops_fail(dev, st, "device %s: cannot allocate a buffer of %zu bytes (%s)",
                             dev->id, size, elm_strerror(st));
    }
    b->dev = dev;
    b->size = size;
    b->host = dev->be->iface->buffer_host(dev->be, b->b);
    *out = b;
    return ELM_OK;
}

elm_status elm_dev_buffer_alloc(elm_dev *dev, size_t size, elm_dev_buffer **out) {
    if (!dev) return ELM_ERR_INVALID_ARG;
    if (!out) return elmi_ops_fail(dev, ELM_ERR_INVALID_ARG, "elm_dev_buffer_alloc: out is NULL");
    *out = NULL;
    return buffer_new(dev, size, NULL, out);
}

elm_status elm_dev_buffer_wrap(elm_dev *dev, void *host, size_t size, elm_dev_buffer **out) {
    if (!dev) return ELM_ERR_INVALID_ARG;
    if (!out || !host)
        return elmi_ops_fail(dev, ELM_ERR_INVALID_ARG, "elm_dev_buffer_wrap: out or host is NULL");
    *out = NULL;
    /* Only the CPU backend's buffers are the wrapped memory itself; a device
     * backend copies host_ptr in (backend.h), which is not a wrap. */
    if (strcmp(dev->be->iface->name, "cpu") != 0)
        return elmi_ops_fail(dev, ELM_ERR_UNSUPPORTED,
                             "device %s cannot work in host memory in place: allocate a buffer "
                             "and copy, or pass read-only weights as host tensors", dev->id);
    return buffer_new(dev, size, host, out);
}

void elm_dev_buffer_free(elm_dev_buffer *buf) {
    if (!buf) return;
    buf->dev->be->iface->buffer_free(buf->dev->be, buf->b);
    elmi_free(buf);
}

size_t elm_dev_buffer_size(const elm_dev_buffer *buf) {
    return buf ? buf->size : 0;
}

void *elm_dev_buffer_host(const elm_dev_buffer *buf) {
    return buf ? buf->host : NULL;
}

/* ----------------------------------------------------------------- tensors */

/* Bytes from element 0 to the end of the last row; false when the shape or
 * strides are invalid (rows overlapping, a dimension below 1, overflow). */
static bool extent_of(const elm_op_tensor *t, size_t *out, const char **why) {
    int64_t values;
    size_t block, row;
    *why = "unknown element type";
    if (!block_of(t->type, &values, &block)) return false;
    *why = "a dimension below 1";
    for (int d = 0; d < 4; d++)
        if (t->ne[d] < 1) return false;
    *why = "rows that are not whole blocks of the type";
    if (elm_type_row_bytes(t->type, t->ne[0], &row) != ELM_OK) return false;
    *why = "nb[0] that is not the element (block) size";
    if (t->nb[0] != block) return false;
    *why = "strides that overlap rows, or a size that overflows";
    size_t span = row;
    for (int d = 1; d < 4; d++) {
        if (t->ne[d] == 1) continue;
        size_t step;
        if (t->nb[d] < span || __builtin_mul_overflow(t->nb[d], (size_t)(t->ne[d] - 1), &step) ||
            __builtin_add_overflow(span, step, &span))
            return false;
    }
    /* F32, F16, BF16 and I32 elements at their natural alignment, so that
     * every device can address them; blocks are byte-addressed. */
    *why = "an offset or stride that is not a multiple of the element size";
    if (values == 1) {
        if (t->offset % block) return false;
        for (int d = 1; d < 4; d++)
            if (t->nb[d] % block) return false;
    }
    *out = span;
    return true;
}

elm_status elm_op_tensor_init(elm_op_tensor *t, size_t struct_size, elm_type type, int64_t ne0,
                              int64_t ne1, int64_t ne2, int64_t ne3, elm_dev_buffer *buf,
                              size_t offset, const void *host) {
    elm_dev *dev = buf ? buf->dev : NULL;
    if (!t || struct_size < MIN_TENSOR)
        return elmi_ops_fail(dev, ELM_ERR_INVALID_ARG, "elm_op_tensor_init: t is NULL or too small");
    memset(t, 0, struct_size);
    t->struct_size = struct_size;
    t->type = type;
    t->ne[0] = ne0, t->ne[1] = ne1, t->ne[2] = ne2, t->ne[3] = ne3;
    t->buf = buf;
    t->offset = offset;
    t->host = buf ? NULL : host;
    int64_t values;
    size_t block, row;
    if (!block_of(type, &values, &block))
        return elmi_ops_fail(dev, ELM_ERR_INVALID_ARG, "elm_op_tensor_init: unknown type %d", (int)type);
    if (ne0 < 1 || ne1 < 1 || ne2 < 1 || ne3 < 1 || elm_type_row_bytes(type, ne0, &row) != ELM_OK)
        return elmi_ops_fail(dev, ELM_ERR_INVALID_ARG,
                             "elm_op_tensor_init: shape (%lld, %lld, %lld, %lld) is not valid for %s "
                             "(rows of whole blocks of %lld values)",
                             (long long)ne0, (long long)ne1, (long long)ne2, (long long)ne3,
                             elm_type_name(type), (long long)values);
    t->nb[0] = block;
    t->nb[1] = row;
    size_t end;
    if (__builtin_mul_overflow(row, (size_t)ne1, &t->nb[2]) ||
        __builtin_mul_overflow(t->nb[2], (size_t)ne2, &t->nb[3]) ||
        __builtin_mul_overflow(t->nb[3], (size_t)ne3, &end))
        return elmi_ops_fail(dev, ELM_ERR_INVALID_ARG, "elm_op_tensor_init: the size overflows");
    if (!buf && !host)
        return elmi_ops_fail(dev, ELM_ERR_INVALID_ARG,
                             "elm_op_tensor_init: neither a buffer nor host memory");
    if (values == 1 && offset % block)
        return elmi_ops_fail(dev, ELM_ERR_INVALID_ARG,
                             "elm_op_tensor_init: offset %zu is not a multiple of the element size %zu",
                             offset, block);
    if (buf && (offset > buf->size || end > buf->size - offset))
        return elmi_ops_fail(dev, ELM_ERR_INVALID_ARG,
                             "elm_op_tensor_init: %zu bytes at offset %zu exceed the buffer's %zu",
                             end, offset, buf->size);
    return ELM_OK;
}

size_t elm_op_tensor_nbytes(const elm_op_tensor *t) {
    size_t n;
    const char *why;
    return t && t->struct_size >= MIN_TENSOR && extent_of(t, &n, &why) ? n : 0;
}

elm_status elmi_ops_tensor(elm_dev *dev, const char *op, const char *role, const elm_op_tensor *t,
                           bool dst, be_tensor *out) {
    if (!t) return elmi_ops_fail(dev, ELM_ERR_INVALID_ARG, "%s: %s is NULL", op, role);
    const char *name = t->struct_size >= MIN_TENSOR && t->name ? t->name : role;
    if (t->struct_size < MIN_TENSOR)
        return elmi_ops_fail(dev, ELM_ERR_INVALID_ARG,
                             "%s: %s: struct_size %zu (describe it with elm_op_tensor_dense)", op,
                             role, t->struct_size);
    size_t extent;
    const char *why;
    if (!extent_of(t, &extent, &why))
        return elmi_ops_fail(dev, ELM_ERR_INVALID_ARG,
                             "%s: %s '%s': %s (type %s, shape (%lld, %lld, %lld, %lld))", op, role,
                             name, why, elm_type_name(t->type), (long long)t->ne[0],
                             (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3]);
    memset(out, 0, sizeof *out);
    out->type = t->type;
    memcpy(out->ne, t->ne, sizeof out->ne);
    memcpy(out->nb, t->nb, sizeof out->nb);
    snprintf(out->name, sizeof out->name, "%s", name);
    if (!t->buf) {
        if (dst || !t->host)
            return elmi_ops_fail(dev, ELM_ERR_INVALID_ARG, "%s: %s '%s' is not in a buffer%s", op,
                                 role, name, dst ? " (destinations must be)" : " nor host memory");
        out->data = (void *)t->host;
        return ELM_OK;
    }
    if (t->buf->dev != dev)
        return elmi_ops_fail(dev, ELM_ERR_INVALID_ARG, "%s: %s '%s' is in a buffer of device %s, not %s",
                             op, role, name, t->buf->dev->id, dev->id);
    if (t->offset > t->buf->size || extent > t->buf->size - t->offset)
        return elmi_ops_fail(dev, ELM_ERR_INVALID_ARG,
                             "%s: %s '%s': %zu bytes at offset %zu exceed its buffer's %zu", op, role,
                             name, extent, t->offset, t->buf->size);
    out->buf = t->buf->b;
    out->offs = t->offset;
    out->data = t->buf->host ? (char *)t->buf->host + t->offset : NULL;
    return ELM_OK;
}

static elm_status copy(elm_dev *dev, const elm_op_tensor *t, void *host, size_t offset, size_t size,
                       bool write) {
    const char *op = write ? "elm_op_tensor_write" : "elm_op_tensor_read";
    if (!dev) return ELM_ERR_INVALID_ARG;
    be_tensor bt;
    ELM_TRY(elmi_ops_tensor(dev, op, "tensor", t, true, &bt));
    size_t extent = elm_op_tensor_nbytes(t), end;
    if ((!host && size) || __builtin_add_overflow(offset, size, &end) || end > extent)
        return elmi_ops_fail(dev, ELM_ERR_INVALID_ARG, "%s: bytes [%zu, +%zu) of a %zu-byte tensor%s",
                             op, offset, size, extent, host || !size ? "" : " from NULL");
    const be_iface *bi = dev->be->iface;
    elm_status st = write ? bi->tensor_set(dev->be, &bt, host, offset, size)
                          : bi->tensor_get(dev->be, &bt, host, offset, size);
    if (st != ELM_OK)
        return elmi_ops_fail(dev, st, "%s: device %s: %s", op, dev->id, elm_strerror(st));
    return ELM_OK;
}

elm_status elm_op_tensor_write(elm_dev *dev, const elm_op_tensor *t, const void *src, size_t offset,
                               size_t size) {
    return copy(dev, t, (void *)src, offset, size, true);
}

elm_status elm_op_tensor_read(elm_dev *dev, const elm_op_tensor *t, void *dst, size_t offset,
                              size_t size) {
    return copy(dev, t, dst, offset, size, false);
}

/* ------------------------------------------------------------------ graphs */

void elm_op_graph_params_init(elm_op_graph_params *p, size_t struct_size) {
    const elm_op_graph_params def = {.struct_size = sizeof def, .mode = ELM_MODE_EXACT};
    elmi_struct_init(p, struct_size, &def, sizeof def);
}

elm_status elm_op_graph_new(elm_dev *dev, const elm_op_graph_params *params, elm_op_graph **out) {
    if (!dev) return ELM_ERR_INVALID_ARG;
    if (!out) return elmi_ops_fail(dev, ELM_ERR_INVALID_ARG, "elm_op_graph_new: out is NULL");
    *out = NULL;
    elm_op_graph_params p;
    elm_op_graph_default_params(&p);
    if (params && !elmi_struct_in(&p, sizeof p, params, MIN_GRAPH_PARAMS))
        return elmi_ops_fail(dev, ELM_ERR_INVALID_ARG, "elm_op_graph_new: params->struct_size too small");
    if (p.mode != ELM_MODE_EXACT && p.mode != ELM_MODE_FAST)
        return elmi_ops_fail(dev, ELM_ERR_INVALID_ARG, "elm_op_graph_new: unknown mode %d", (int)p.mode);
    elm_op_graph *g = elmi_calloc(1, sizeof *g);
    if (!g) return elmi_ops_fail(dev, ELM_ERR_NO_MEMORY, "out of memory");
    g->dev = dev;
    g->exact = p.mode == ELM_MODE_EXACT;
    *out = g;
    return ELM_OK;
}

void elm_op_graph_free(elm_op_graph *graph) {
    if (!graph) return;
    elmi_free(graph->recs);
    elmi_free(graph->nodes);
    elmi_free(graph);
}

void elm_op_graph_clear(elm_op_graph *graph) {
    if (graph) graph->n = 0;
}

size_t elm_op_graph_n_ops(const elm_op_graph *graph) {
    return graph ? graph->n : 0;
}

static elm_status graph_append(elm_op_graph *g, const op_rec *rec) {
    if (g->n == g->cap) {
        size_t cap = g->cap ? 2 * g->cap : 16;
        op_rec *recs = elmi_realloc(g->recs, cap * sizeof *recs);
        if (recs) g->recs = recs;
        be_node *nodes = recs ? elmi_realloc(g->nodes, cap * sizeof *nodes) : NULL;
        if (nodes) g->nodes = nodes;
        if (!recs || !nodes) return elmi_ops_fail(g->dev, ELM_ERR_NO_MEMORY, "out of memory");
        g->cap = cap;
    }
    g->recs[g->n++] = *rec;
    return ELM_OK;
}

/* Points a record's node at its own tensor copies. */
static be_node node_of(op_rec *r) {
    be_node nd = r->nd;
    nd.dst = &r->t[0];
    for (int i = 0; i < BE_MAX_SRC; i++) nd.src[i] = r->used[1 + i] ? &r->t[1 + i] : NULL;
    return nd;
}

static elm_status run(elm_dev *dev, be_node *nodes, size_t n, bool exact) {
    if (n == 0) return ELM_OK;
    if (n > (size_t)INT32_MAX) return elmi_ops_fail(dev, ELM_ERR_INVALID_ARG, "too many ops");
    be_graph g = {.nodes = nodes, .n_nodes = (int)n, .exact = exact};
    char msg[ELM_ERR_LEN] = "";
    elm_status st = elmi_sched_compute(&dev->sched, &g, false, msg, sizeof msg);
    if (st != ELM_OK)
        return elmi_ops_fail(dev, st, "device %s: %s", dev->id, *msg ? msg : elm_strerror(st));
    return ELM_OK;
}

elm_status elm_op_graph_compute(elm_op_graph *graph) {
    if (!graph) return ELM_ERR_INVALID_ARG;
    for (size_t i = 0; i < graph->n; i++) graph->nodes[i] = node_of(&graph->recs[i]);
    return run(graph->dev, graph->nodes, graph->n, graph->exact);
}

elm_status elmi_ops_submit(elm_dev *dev, elm_op_graph *graph, op_rec *rec) {
    if (graph) {
        if (graph->dev != dev)
            return elmi_ops_fail(dev, ELM_ERR_INVALID_ARG, "%s: the graph belongs to device %s",
                                 elmi_be_op_name(rec->nd.op), graph->dev->id);
        return graph_append(graph, rec);
    }
    be_node nd = node_of(rec);
    return run(dev, &nd, 1, true);
}
