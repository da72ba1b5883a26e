/* cpu_backend.c: the be_iface of the CPU backend: host buffers, tensor
 * copies, and graph execution on the backend's thread pool.
 *
 * graph_compute validates the whole graph before running any node, then
 * runs the nodes in order, one pool dispatch per node. MUL_MAT and the
 * attention op need scratch; one work buffer, sized to the largest need in
 * the graph, is kept between calls and only ever grows, so steady-state
 * decoding allocates nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/cpu/matmul.h"
#include "backends/cpu/ops.h"
#include "backends/cpu/threadpool.h"

typedef struct cpu_backend cpu_backend;

struct be_buffer {
    void *base;
    size_t size;
    bool owned; /* false when it wraps memory-mapped weights */
    cpu_backend *owner;
    struct be_buffer *prev, *next;
};

struct cpu_backend {
    be_backend be;
    elm_threadpool *tp;
    be_buffer *buffers; /* this backend's live buffers */
    void *work;
    size_t work_size;
    be_stats stats;
};

static cpu_backend *impl(be_backend *be) {
    return be->impl;
}

static void cpu_free(be_backend *be) {
    cpu_backend *cb = impl(be);
    for (be_buffer *b = cb->buffers, *next; b; b = next) {
        next = b->next;
        if (b->owned) free(b->base);
        free(b);
    }
    tp_free(cb->tp);
    free(cb->work);
    free(cb);
}

static elm_status cpu_buffer_alloc(be_backend *be, size_t size, void *host_ptr, be_buffer **out) {
    if (!out) return ELM_ERR_INVALID_ARG;
    *out = NULL;
    be_buffer *b = calloc(1, sizeof *b);
    if (!b) return ELM_ERR_NO_MEMORY;
    b->size = size;
    if (host_ptr) {
        b->base = host_ptr;
    } else {
        size_t bytes = cpu_align_up(size ? size : 1);
        b->base = bytes >= size ? aligned_alloc(CPU_ALIGN, bytes) : NULL;
        if (!b->base) {
            free(b);
            return ELM_ERR_NO_MEMORY;
        }
        memset(b->base, 0, bytes);
        b->owned = true;
    }
    cpu_backend *cb = impl(be);
    b->owner = cb;
    b->next = cb->buffers;
    if (cb->buffers) cb->buffers->prev = b;
    cb->buffers = b;
    *out = b;
    return ELM_OK;
}

/* Unlinks from the list of the backend that made the buffer, which may be
 * another CPU backend than `be`. */
static void cpu_buffer_free(be_backend *be, be_buffer *b) {
    if (!b) return;
    cpu_backend *cb = b->owner;
    if (b->prev)
        b->prev->next = b->next;
    else if (cb->buffers == b)
        cb->buffers = b->next;
    if (b->next) b->next->prev = b->prev;
    if (b->owned) free(b->base);
    free(b);
}

static void *cpu_buffer_host(be_backend *be, be_buffer *b) {
    return b ? b->base : NULL;
}

/* The tensor's bytes [offset, offset + size) as an address in its buffer. */
static char *tensor_span(const be_tensor *t, size_t offset, size_t size) {
    size_t extent, end, t_end;
    if (!t || !t->buf || !cpu_tensor_extent(t, &extent)) return NULL;
    if (__builtin_add_overflow(offset, size, &end) || end > extent) return NULL;
    if (__builtin_add_overflow(t->offs, extent, &t_end) || t_end > t->buf->size) return NULL;
    return (char *)t->buf->base + t->offs + offset;
}

static elm_status cpu_tensor_set(be_backend *be, be_tensor *t, const void *src, size_t offset,
                                 size_t size) {
    char *p = tensor_span(t, offset, size);
    if (!p || (!src && size)) return ELM_ERR_INVALID_ARG;
    if (size) memcpy(p, src, size);
    return ELM_OK;
}

static elm_status cpu_tensor_get(be_backend *be, const be_tensor *t, void *dst, size_t offset,
                                 size_t size) {
    const char *p = tensor_span(t, offset, size);
    if (!p || (!dst && size)) return ELM_ERR_INVALID_ARG;
    if (size) memcpy(dst, p, size);
    return ELM_OK;
}

static bool cpu_supports_op(be_backend *be, const be_node *node) {
    return cpu_op_supported(node);
}

static bool owns(const cpu_backend *cb, const be_buffer *buf) {
    for (const be_buffer *b = cb->buffers; b; b = b->next)
        if (b == buf) return true;
    return false;
}

/* For tensors in this backend's buffers, the address and extent must lie in
 * the buffer; tensors elsewhere (another backend's weights) are trusted. */
static elm_status check_placement(const cpu_backend *cb, const cpu_check *c) {
    const be_node *nd = c->node;
    for (int i = -1; i < BE_MAX_SRC; i++) {
        const be_tensor *t = i < 0 ? nd->dst : nd->src[i];
        if (!t || !t->buf || !owns(cb, t->buf)) continue;
        size_t extent, end;
        bool ok = cpu_tensor_extent(t, &extent) && !__builtin_add_overflow(t->offs, extent, &end) &&
                  end <= t->buf->size && t->data == (char *)t->buf->base + t->offs;
        char role[8];
        snprintf(role, sizeof role, i < 0 ? "dst" : "src%d", i);
        if (!ok)
            return cpu_check_fail(c, ELM_ERR_INVALID_ARG, t, role,
                                  "outside its buffer (offset %zu, buffer %zu bytes)", t->offs,
                                  t->buf->size);
    }
    return ELM_OK;
}

static size_t node_work_size(const cpu_backend *cb, const be_node *nd, bool exact) {
    int nth = tp_n_threads(cb->tp);
    if (nd->op == BE_OP_MUL_MAT) return cpu_mul_mat_work_size(nd->src[0], nd->src[1], exact, nth);
    return cpu_op_work_size(nd, nth);
}

/* Validates every node and returns the scratch the graph needs. */
static elm_status check_graph(const cpu_backend *cb, const be_graph *g, size_t *need, char *err,
                              size_t err_size) {
    *need = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const be_node *nd = &g->nodes[i];
        elm_status st = cpu_op_check(nd, i, err, err_size);
        cpu_check c = {.index = i, .node = nd, .err = err, .err_size = err_size};
        if (st == ELM_OK) st = check_placement(cb, &c);
        if (st != ELM_OK) return st;
        size_t n = node_work_size(cb, nd, g->exact);
        if (n > *need) *need = n;
    }
    return ELM_OK;
}

static elm_status reserve_work(cpu_backend *cb, size_t need) {
    if (need <= cb->work_size) return ELM_OK;
    size_t bytes = cpu_align_up(need);
    void *w = bytes >= need ? aligned_alloc(CPU_ALIGN, bytes) : NULL;
    if (!w) return ELM_ERR_NO_MEMORY;
    free(cb->work);
    cb->work = w;
    cb->work_size = bytes;
    return ELM_OK;
}

typedef struct node_task {
    const be_node *node;
    void *work;
} node_task;

static void run_node(void *arg, int ith, int nth) {
    const node_task *task = arg;
    cpu_op_compute(task->node, task->work, ith, nth);
}

static elm_status run_mul_mat(cpu_backend *cb, const be_node *nd, int index, bool exact, char *err,
                              size_t err_size) {
    elm_status st = cpu_mul_mat(cb->tp, nd->src[0], nd->src[1], nd->src[2], nd->dst, exact,
                                cb->work, cb->work_size);
    if (st != ELM_OK) {
        cpu_check c = {.index = index, .node = nd, .err = err, .err_size = err_size};
        cpu_check_fail(&c, st, nd->src[0], "src0", "matrix product failed (status %d)", (int)st);
    }
    return st;
}

static elm_status cpu_graph_compute(be_backend *be, const be_graph *g, char *err, size_t err_size) {
    cpu_backend *cb = impl(be);
    if (err && err_size) err[0] = '\0';
    if (!g || g->n_nodes < 0 || (g->n_nodes > 0 && !g->nodes)) {
        if (err && err_size) snprintf(err, err_size, "graph_compute: bad graph");
        return ELM_ERR_INVALID_ARG;
    }
    size_t need;
    elm_status st = check_graph(cb, g, &need, err, err_size);
    if (st == ELM_OK) st = reserve_work(cb, need);
    if (st == ELM_ERR_NO_MEMORY && err && err_size)
        snprintf(err, err_size, "graph_compute: no memory for %zu bytes of scratch", need);
    if (st != ELM_OK) return st;
    cb->stats.n_graphs++;
    for (int i = 0; i < g->n_nodes; i++) {
        const be_node *nd = &g->nodes[i];
        if (nd->op == BE_OP_MUL_MAT) {
            st = run_mul_mat(cb, nd, i, g->exact, err, err_size);
            if (st != ELM_OK) return st;
        } else {
            node_task task = {.node = nd, .work = cb->work};
            tp_run(cb->tp, run_node, &task);
        }
        cb->stats.n_nodes++;
    }
    return ELM_OK;
}

static void cpu_get_stats(be_backend *be, be_stats *out) {
    if (out) *out = impl(be)->stats;
}

static const be_iface cpu_iface = {
    .name = "cpu",
    .free = cpu_free,
    .supports_op = cpu_supports_op,
    .buffer_alloc = cpu_buffer_alloc,
    .buffer_free = cpu_buffer_free,
    .buffer_host = cpu_buffer_host,
    .tensor_set = cpu_tensor_set,
    .tensor_get = cpu_tensor_get,
    .graph_compute = cpu_graph_compute,
    .get_stats = cpu_get_stats,
};

elm_status be_cpu_new(int n_threads, be_backend **out) {
    if (!out) return ELM_ERR_INVALID_ARG;
    *out = NULL;
    cpu_backend *cb = calloc(1, sizeof *cb);
    if (!cb) return ELM_ERR_NO_MEMORY;
    /* Not pinned: several backends, one per context, may share the cores. */
    elm_status st = tp_new(n_threads > 0 ? n_threads : be_cpu_physical_cores(), false, &cb->tp);
    if (st != ELM_OK) {
        free(cb);
        return st;
    }
    cb->be.iface = &cpu_iface;
    cb->be.impl = cb;
    *out = &cb->be;
    return ELM_OK;
}
