/* cpu_backend.c: the be_iface of the CPU backend: host buffers, tensor
 * copies, and graph execution on the backend's thread pool.
 *
 * graph_compute validates the whole graph before running any node, plans it
 * into phases (see "plan" below) and runs it with as few pool dispatches as
 * the data allows: a one-token forward pass is one elmi_tp_run, with a barrier
 * between dependent phases only. MUL_MAT and the attention op need scratch;
 * one work buffer, sized to the largest need in the graph, is kept between
 * calls and only ever grows, and so do the plan's arrays, so steady-state
 * decoding allocates nothing and makes no system call.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/backend.h"
#include "backends/cpu/matmul.h"
#include "backends/cpu/ops.h"
#include "backends/cpu/threadpool.h"
#include "backends/cpu/vec_dot.h"
#include "common/alloc.h"
#include "common/status.h"
#include "quant/quant.h"

/* ------------------------------------------------------------------ plan
 *
 * The graph runs as segments. A segment is one elmi_tp_run holding phases; the
 * threads pass a elmi_tp_barrier between two phases and nothing else. Nodes go
 * into the current phase in graph order until one touches memory the phase
 * writes, or writes memory it reads (found from the tensors' byte ranges);
 * that node opens a new phase. So independent nodes share a phase (q, k and
 * v of a layer, gate and up) and the workers never leave the run within a
 * forward pass. A MUL_MAT that the in-pool mat-vec does not take (more than
 * one token: the batched kernels of elmi_cpu_mul_mat) ends the segment and runs
 * on its own, as before.
 *
 * Units: a node, or two adjacent nodes fused where the data allows one
 * thread to do both for the same elements with no barrier between:
 *  - ROPE then KV_STORE of the rotated tensor: each thread rotates its heads
 *    and stores them;
 *  - ADD then RMS_NORM of the sum: each thread adds and normalizes its rows.
 * Fused units compute exactly what the two nodes compute one after another.
 *
 * In-pool mat-vec (one token): the rows of every MUL_MAT of a phase are cut
 * into chunks of about MV_CHUNK_BYTES of weights, numbered across the
 * phase's products. Thread i owns a contiguous range of them and takes them
 * one by one from its own counter (a cache line no one else touches, so
 * the atomic is cheap); when its range is done it steals what is left of
 * the others' ranges through their counters. So the threads stream their
 * own rows and still finish a phase within a chunk of each other, even when
 * one of them was held up. Each thread quantizes the activations it needs
 * itself, into its own slot of the work buffer (a few microseconds at most,
 * less than a barrier would cost), once per phase and input. Every row is
 * computed by the same kernel call as in elmi_cpu_mul_mat, so results do not
 * depend on the thread count, the chunking or who took which chunk.
 */
#define MV_CHUNK_BYTES (16 * 1024)
#define MV_ROW_GROUP 16 /* rows per kernel call, as elmi_cpu_mul_mat */
#define PH_MAX_SPANS 24
#define PH_MAX_SLOTS 32

enum { U_OP, U_MATVEC, U_ROPE_STORE, U_ADD_NORM };

typedef struct ex_unit {
    int kind;
    const be_node *a, *b; /* b: second node of a fused pair */
    /* U_MATVEC */
    const char *w;
    size_t w_stride;
    int64_t K, N;
    const float *x;
    float *dst;
    const float *bias;
    const qtype_traits *wt;
    cpu_dot_fn dot;
    bool exact;
    int slot;                             /* index in ex_plan.slots, -1: none */
    int64_t chunk_rows, chunk0, n_chunks; /* chunk0: first chunk in the phase's numbering */
    /* other units: where their op scratch starts in the work buffer. The
     * units of a phase run at the same time on different threads, so each
     * has its own, whether or not the op splits its scratch by thread. */
    size_t scratch_off;
} ex_unit;

/* A per-thread buffer of a phase: quantized activations (quantize != NULL)
 * or an exact-mode dequantization row. */
typedef struct ex_slot {
    const float *x;
    int64_t K;
    cpu_quantize_fn quantize;
    int vdt;
    size_t off;
} ex_slot;

typedef struct ex_counter {
    _Alignas(64) _Atomic int64_t next;
} ex_counter;

typedef struct ex_phase {
    int first_unit, n_units;
    int first_slot, n_slots;
    int64_t n_chunks; /* mat-vec chunks */
    size_t slot_bytes;
    size_t op_bytes; /* op scratch of its units */
} ex_phase;

typedef struct ex_seg {
    int first_phase, n_phases; /* n_phases == 0: an external MUL_MAT */
    int node;                  /* the external node's index */
} ex_seg;

typedef struct ex_span {
    uintptr_t lo, hi;
} ex_span;

typedef struct ex_plan {
    ex_unit *units;
    ex_slot *slots;
    ex_phase *phases;
    ex_counter *counters; /* n_threads per phase: the next chunk of each thread's range */
    ex_seg *segs;
    int n_units, n_slots, n_phases, n_segs, cap; /* cap: of each array (>= n_nodes) */
    size_t op_scratch;  /* bytes at the start of the work buffer for op scratch */
    size_t slot_stride; /* per-thread slot bytes, after op_scratch */
    /* the open phase's memory, for the conflict checks */
    ex_span reads[PH_MAX_SPANS], writes[PH_MAX_SPANS];
    int n_reads, n_writes;
} ex_plan;

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
    ex_plan plan;
    be_stats stats;
    /* profiling: on, the figures since the last read, and the start time of
     * each phase of the running graph (prof_cap entries) */
    bool prof_on;
    be_profile prof;
    double *phase_t;
    int prof_cap;
};

static void plan_free(ex_plan *p);

static cpu_backend *impl(be_backend *be) {
    return be->impl;
}

static void cpu_free(be_backend *be) {
    cpu_backend *cb = impl(be);
    for (be_buffer *b = cb->buffers, *next; b; b = next) {
        next = b->next;
        if (b->owned) elmi_aligned_free(b->base);
        elmi_free(b);
    }
    elmi_tp_free(cb->tp);
    plan_free(&cb->plan);
    elmi_aligned_free(cb->work);
    elmi_free(cb->phase_t);
    elmi_free(cb);
}

static elm_status cpu_buffer_alloc(be_backend *be, size_t size, void *host_ptr, be_buffer **out) {
    if (!out) return ELM_ERR_INVALID_ARG;
    *out = NULL;
    be_buffer *b = elmi_calloc(1, sizeof *b);
    if (!b) return ELM_ERR_NO_MEMORY;
    b->size = size;
    if (host_ptr) {
        b->base = host_ptr;
    } else {
        size_t bytes = cpu_align_up(size ? size : 1);
        b->base = bytes >= size ? elmi_aligned_alloc(CPU_ALIGN, bytes) : NULL;
        if (!b->base) {
            elmi_free(b);
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
    if (b->owned) elmi_aligned_free(b->base);
    elmi_free(b);
}

static void *cpu_buffer_host(be_backend *be, be_buffer *b) {
    return b ? b->base : NULL;
}

/* The tensor's bytes [offset, offset + size) as an address in its buffer. */
static char *tensor_span(const be_tensor *t, size_t offset, size_t size) {
    size_t extent, end, t_end;
    if (!t || !t->buf || !elmi_cpu_tensor_extent(t, &extent)) return NULL;
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
    return elmi_cpu_op_supported(node);
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
        bool ok = elmi_cpu_tensor_extent(t, &extent) && !__builtin_add_overflow(t->offs, extent, &end) &&
                  end <= t->buf->size && t->data == (char *)t->buf->base + t->offs;
        char role[8];
        snprintf(role, sizeof role, i < 0 ? "dst" : "src%d", i);
        if (!ok)
            return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, t, role,
                                  "outside its buffer (offset %zu, buffer %zu bytes)", t->offs,
                                  t->buf->size);
    }
    return ELM_OK;
}

static size_t node_work_size(const cpu_backend *cb, const be_node *nd, bool exact) {
    int nth = elmi_tp_n_threads(cb->tp);
    if (nd->op == BE_OP_MUL_MAT) return elmi_cpu_mul_mat_work_size(nd->src[0], nd->src[1], exact, nth);
    return elmi_cpu_op_work_size(nd, nth);
}

/* Validates every node and returns the scratch the graph needs. */
static elm_status check_graph(const cpu_backend *cb, const be_graph *g, size_t *need, char *err,
                              size_t err_size) {
    *need = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const be_node *nd = &g->nodes[i];
        cpu_check c = {.index = i, .node = nd, .err = err, .err_size = err_size};
        ELM_TRY(elmi_cpu_op_check(nd, i, err, err_size));
        ELM_TRY(check_placement(cb, &c));
        size_t n = node_work_size(cb, nd, g->exact);
        if (n > *need) *need = n;
    }
    return ELM_OK;
}

static elm_status reserve_work(cpu_backend *cb, size_t need) {
    if (need <= cb->work_size) return ELM_OK;
    size_t bytes = cpu_align_up(need);
    void *w = bytes >= need ? elmi_aligned_alloc(CPU_ALIGN, bytes) : NULL;
    if (!w) return ELM_ERR_NO_MEMORY;
    elmi_aligned_free(cb->work);
    cb->work = w;
    cb->work_size = bytes;
    return ELM_OK;
}

/* ------------------------------------------------------------ planning */

static void plan_free(ex_plan *p) {
    elmi_free(p->units);
    elmi_free(p->slots);
    elmi_free(p->phases);
    elmi_aligned_free(p->counters);
    elmi_free(p->segs);
    memset(p, 0, sizeof *p);
}

/* Room for a graph of n nodes (at most n of each) on nth threads; grows only. */
static elm_status plan_reserve(ex_plan *p, int n, int nth) {
    if (n <= p->cap) return ELM_OK;
    ex_plan q = {.cap = n};
    q.units = elmi_malloc((size_t)n * sizeof *q.units);
    q.slots = elmi_malloc((size_t)n * sizeof *q.slots);
    q.phases = elmi_malloc((size_t)n * sizeof *q.phases);
    q.segs = elmi_malloc((size_t)n * sizeof *q.segs);
    q.counters = elmi_aligned_alloc(64, (size_t)n * (size_t)nth * sizeof *q.counters);
    if (!q.units || !q.slots || !q.phases || !q.segs || !q.counters) {
        plan_free(&q);
        return ELM_ERR_NO_MEMORY;
    }
    plan_free(p);
    *p = q;
    return ELM_OK;
}

static bool span_of(const be_tensor *t, ex_span *s) {
    size_t ext;
    if (!t || !t->data || !elmi_cpu_tensor_extent(t, &ext)) return false;
    s->lo = (uintptr_t)t->data;
    s->hi = s->lo + ext;
    return true;
}

static bool overlaps(const ex_span *a, int n, ex_span s) {
    for (int i = 0; i < n; i++)
        if (s.lo < a[i].hi && a[i].lo < s.hi) return true;
    return false;
}

static bool same_layout(const be_tensor *a, const be_tensor *b) {
    return a->data == b->data && memcmp(a->ne, b->ne, sizeof a->ne) == 0 &&
           memcmp(a->nb, b->nb, sizeof a->nb) == 0;
}

/* The weight types elmi_cpu_mul_mat has kernels for (as its weight_traits). */
static const qtype_traits *mv_traits(int type) {
    if (type == QT_F32 || type == QT_F16 || type == QT_BF16 || type == QT_Q4_0 ||
        type == QT_Q4_1 || type == QT_Q5_0 || type == QT_Q5_1 || type == QT_Q8_0 ||
        type == QT_Q4_K || type == QT_Q5_K || type == QT_Q6_K) {
        const qtype_traits *tr = elmi_qtype_get(type);
        if (!tr || !tr->to_float || !tr->vec_dot || !cpu_vec_dot(type)) return NULL;
        if (tr->vec_dot_type != QT_F32 && !cpu_quantize(tr->vec_dot_type)) return NULL;
        return tr;
    }
    return NULL;
}

/* A one-token MUL_MAT the in-pool mat-vec takes: the shapes elmi_cpu_mul_mat
 * accepts (anything else goes to it, which reports the error). */
static bool mv_init(ex_unit *u, const be_node *nd, bool exact) {
    const be_tensor *w = nd->src[0], *x = nd->src[1], *b = nd->src[2], *d = nd->dst;
    const qtype_traits *tr = mv_traits(w->type);
    size_t row;
    if (!tr || x->ne[1] != 1 || !w->data || !x->data || !d->data) return false;
    if (!elmi_qtype_row_bytes(w->type, w->ne[0], &row) || w->nb[0] != tr->type_size) return false;
    if (w->ne[1] > 1 && w->nb[1] < row) return false;
    if (w->type == QT_F32 && w->nb[1] % sizeof(float) != 0) return false;
    if (x->type != QT_F32 || x->nb[0] != sizeof(float) || d->type != QT_F32 ||
        d->nb[0] != sizeof(float) || d->ne[0] != w->ne[1] || x->ne[0] != w->ne[0])
        return false;
    if (exact && !cpu_vec_dot(QT_F32)) return false;
    if (b && (b->type != QT_F32 || !b->data || b->ne[0] != w->ne[1] || b->nb[0] != sizeof(float)))
        return false;
    *u = (ex_unit){
        .kind = U_MATVEC,
        .a = nd,
        .w = w->data,
        .w_stride = w->nb[1],
        .K = w->ne[0],
        .N = w->ne[1],
        .x = x->data,
        .dst = d->data,
        .bias = b ? b->data : NULL,
        .wt = tr,
        .dot = exact ? cpu_vec_dot(QT_F32) : cpu_vec_dot(w->type),
        .exact = exact,
    };
    int64_t rows = (int64_t)(MV_CHUNK_BYTES / (row ? row : 1)) / MV_ROW_GROUP * MV_ROW_GROUP;
    u->chunk_rows = rows < MV_ROW_GROUP ? MV_ROW_GROUP : rows;
    u->n_chunks = (u->N + u->chunk_rows - 1) / u->chunk_rows;
    return true;
}

/* ROPE writing a contiguous (hd, nh, T) tensor, then KV_STORE of it as
 * (hd * nh, T): each thread can store the heads it rotated. */
static bool fuses_rope_store(const be_node *r, const be_node *s) {
    if (r->op != BE_OP_ROPE || s->op != BE_OP_KV_STORE) return false;
    const be_tensor *d = r->dst, *x = s->src[0];
    size_t hd = (size_t)d->ne[0];
    return x->data == d->data && d->nb[0] == sizeof(float) && d->nb[1] == hd * sizeof(float) &&
           d->nb[2] == hd * (size_t)d->ne[1] * sizeof(float) && x->ne[0] == d->ne[0] * d->ne[1] &&
           x->ne[1] == d->ne[2] && x->nb[1] == d->nb[2];
}

/* ADD then RMS_NORM of the sum: each thread adds and normalizes whole rows.
 * The norm's output must not overlap the add's operands other than as the
 * very same tensor (then row r is read before it is written). */
static bool fuses_add_norm(const be_node *a, const be_node *n) {
    if (a->op != BE_OP_ADD || n->op != BE_OP_RMS_NORM || !same_layout(n->src[0], a->dst))
        return false;
    const be_tensor *ops[3] = {a->dst, a->src[0], a->src[1]};
    ex_span out;
    if (!span_of(n->dst, &out)) return false;
    for (int i = 0; i < 3; i++) {
        ex_span s;
        if (!span_of(ops[i], &s)) return false;
        if (overlaps(&s, 1, out) && !same_layout(n->dst, ops[i])) return false;
    }
    ex_span sum, w; /* the norm's weights must not be a sum another thread writes */
    return span_of(a->dst, &sum) && span_of(n->src[1], &w) && !overlaps(&sum, 1, w);
}

typedef struct unit_mem {
    ex_span r[2 * BE_MAX_SRC], w[4];
    int nr, nw;
} unit_mem;

static void add_node_mem(unit_mem *m, const be_node *nd) {
    for (int i = 0; i < BE_MAX_SRC; i++)
        if (nd->src[i] && span_of(nd->src[i], &m->r[m->nr])) m->nr++;
    if (span_of(nd->dst, &m->w[m->nw])) m->nw++;
    /* SHORTCONV also writes its state (src2) in place. */
    if (nd->op == BE_OP_SHORTCONV && span_of(nd->src[2], &m->w[m->nw])) m->nw++;
}

static bool conflicts(const ex_plan *p, const unit_mem *m) {
    for (int i = 0; i < m->nw; i++)
        if (overlaps(p->reads, p->n_reads, m->w[i]) || overlaps(p->writes, p->n_writes, m->w[i]))
            return true;
    for (int i = 0; i < m->nr; i++)
        if (overlaps(p->writes, p->n_writes, m->r[i])) return true;
    return false;
}

static void open_phase(ex_plan *p, bool new_segment) {
    if (new_segment) p->segs[p->n_segs++] = (ex_seg){.first_phase = p->n_phases};
    p->segs[p->n_segs - 1].n_phases++;
    p->phases[p->n_phases++] = (ex_phase){.first_unit = p->n_units, .first_slot = p->n_slots};
    p->n_reads = p->n_writes = 0;
}

/* The phase slot for a mat-vec unit: its quantized input, shared by the
 * phase's products of the same input and activation type, or (exact mode)
 * a row of K floats of its own. */
static int take_slot(ex_plan *p, ex_phase *ph, const ex_unit *u) {
    const qtype_traits *tr = u->wt;
    bool quant = !u->exact && tr->vec_dot_type != QT_F32;
    if (!u->exact && !quant) return -1; /* F32 activations used as they are */
    if (quant)
        for (int i = ph->first_slot; i < p->n_slots; i++)
            if (p->slots[i].quantize && p->slots[i].x == u->x && p->slots[i].K == u->K &&
                p->slots[i].vdt == (int)tr->vec_dot_type)
                return i;
    size_t bytes = (size_t)u->K * sizeof(float);
    if (quant) elmi_qtype_row_bytes(tr->vec_dot_type, u->K, &bytes);
    ex_slot *s = &p->slots[p->n_slots];
    *s = (ex_slot){.x = u->x, .K = u->K, .vdt = tr->vec_dot_type, .off = ph->slot_bytes};
    s->quantize = quant ? cpu_quantize(tr->vec_dot_type) : NULL;
    ph->slot_bytes += cpu_align_up(bytes);
    ph->n_slots++;
    return p->n_slots++;
}

/* Splits the graph into segments, phases and units. Needs the graph
 * validated; never fails for a valid one. */
static void plan_graph(cpu_backend *cb, const be_graph *g) {
    ex_plan *p = &cb->plan;
    int nth = elmi_tp_n_threads(cb->tp);
    p->n_units = p->n_slots = p->n_phases = p->n_segs = 0;
    p->op_scratch = p->slot_stride = 0;
    bool in_segment = false;
    for (int i = 0; i < g->n_nodes; i++) {
        const be_node *nd = &g->nodes[i];
        ex_unit u = {.kind = U_OP, .a = nd};
        if (nd->op == BE_OP_MUL_MAT && !mv_init(&u, nd, g->exact)) {
            p->segs[p->n_segs++] = (ex_seg){.node = i};
            in_segment = false;
            continue;
        }
        if (i + 1 < g->n_nodes && fuses_rope_store(nd, &g->nodes[i + 1]))
            u = (ex_unit){.kind = U_ROPE_STORE, .a = nd, .b = &g->nodes[i + 1]};
        else if (i + 1 < g->n_nodes && fuses_add_norm(nd, &g->nodes[i + 1]))
            u = (ex_unit){.kind = U_ADD_NORM, .a = nd, .b = &g->nodes[i + 1]};
        if (u.b) i++;
        unit_mem m = {.nr = 0};
        add_node_mem(&m, u.a);
        if (u.b) add_node_mem(&m, u.b);
        ex_phase *ph = in_segment ? &p->phases[p->n_phases - 1] : NULL;
        if (!ph || conflicts(p, &m) || p->n_reads + m.nr > PH_MAX_SPANS ||
            p->n_writes + m.nw > PH_MAX_SPANS ||
            (u.kind == U_MATVEC && ph->n_slots >= PH_MAX_SLOTS)) {
            open_phase(p, !in_segment);
            in_segment = true;
            ph = &p->phases[p->n_phases - 1];
        }
        memcpy(p->reads + p->n_reads, m.r, (size_t)m.nr * sizeof *m.r);
        memcpy(p->writes + p->n_writes, m.w, (size_t)m.nw * sizeof *m.w);
        p->n_reads += m.nr;
        p->n_writes += m.nw;
        if (u.kind == U_MATVEC) {
            u.slot = take_slot(p, ph, &u);
            u.chunk0 = ph->n_chunks;
            ph->n_chunks += u.n_chunks;
            if (ph->slot_bytes > p->slot_stride) p->slot_stride = ph->slot_bytes;
        } else {
            size_t need = elmi_cpu_op_work_size(u.a, nth);
            if (u.b && elmi_cpu_op_work_size(u.b, nth) > need) need = elmi_cpu_op_work_size(u.b, nth);
            u.scratch_off = ph->op_bytes;
            ph->op_bytes += cpu_align_up(need);
            if (ph->op_bytes > p->op_scratch) p->op_scratch = ph->op_bytes;
        }
        p->units[p->n_units++] = u;
        ph->n_units++;
    }
    p->op_scratch = cpu_align_up(p->op_scratch);
    for (int i = 0; i < p->n_phases; i++)
        for (int t = 0; t < nth; t++)
            atomic_store_explicit(&p->counters[i * nth + t].next, p->phases[i].n_chunks * t / nth,
                                  memory_order_relaxed);
}

/* ------------------------------------------------------------ execution */

typedef struct seg_task {
    cpu_backend *cb;
    const ex_seg *seg;
    char *work;
    double *phase_t; /* profiling: thread 0 writes each phase's start, else NULL */
} seg_task;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Rows [r0, r1) of a mat-vec; buf is the unit's slot in this thread. */
static void mv_rows(const ex_unit *u, const char *buf, int64_t r0, int64_t r1) {
    if (u->exact) {
        for (int64_t r = r0; r < r1; r++) {
            const void *row = u->w + (size_t)r * u->w_stride;
            if (u->a->src[0]->type != QT_F32) { /* dequantized into this thread's slot */
                u->wt->to_float(row, (float *)buf, u->K);
                row = buf;
            }
            float s;
            u->dot(u->K, 1, row, 0, u->x, 0, 1, &s, 0);
            u->dst[r] = u->bias ? s + u->bias[r] : s;
        }
        return;
    }
    const void *act = buf ? (const void *)buf : (const void *)u->x;
    for (int64_t rb = r0; rb < r1; rb += MV_ROW_GROUP) {
        int nr = r1 - rb < MV_ROW_GROUP ? (int)(r1 - rb) : MV_ROW_GROUP;
        u->dot(u->K, nr, u->w + (size_t)rb * u->w_stride, u->w_stride, act, 0, 1, u->dst + rb, 0);
    }
    if (u->bias)
        for (int64_t r = r0; r < r1; r++) u->dst[r] += u->bias[r];
}

static void run_phase(ex_plan *p, int index, char *work, int ith, int nth) {
    const ex_phase *ph = &p->phases[index];
    const ex_unit *units = p->units + ph->first_unit;
    for (int i = 0; i < ph->n_units; i++) {
        const ex_unit *u = &units[i];
        if (u->kind == U_OP)
            elmi_cpu_op_compute(u->a, work + u->scratch_off, ith, nth);
        else if (u->kind == U_ROPE_STORE)
            elmi_cpu_rope_store(u->a, u->b, ith, nth);
        else if (u->kind == U_ADD_NORM)
            elmi_cpu_add_rms_norm(u->a, u->b, ith, nth);
    }
    if (ph->n_chunks == 0) return;
    char *slots = work + p->op_scratch + p->slot_stride * (size_t)ith;
    ex_counter *next = &p->counters[index * nth];
    uint32_t ready = 0; /* slots quantized by this thread */
    int k = 0;          /* the unit holding chunk c */
    /* Own range first, then the others', from the next thread on. */
    for (int v = 0; v < nth; v++) {
        int owner = (ith + v) % nth;
        int64_t end = ph->n_chunks * (owner + 1) / nth;
        for (;;) {
            int64_t c = atomic_fetch_add_explicit(&next[owner].next, 1, memory_order_relaxed);
            if (c >= end) break;
            if (c < units[k].chunk0) k = 0;
            while (units[k].kind != U_MATVEC || c >= units[k].chunk0 + units[k].n_chunks) k++;
            const ex_unit *u = &units[k];
            char *buf = NULL;
            if (u->slot >= 0) {
                const ex_slot *s = &p->slots[u->slot];
                buf = slots + s->off;
                uint32_t bit = 1u << (u->slot - ph->first_slot);
                if (s->quantize && !(ready & bit)) {
                    s->quantize(s->x, buf, s->K);
                    ready |= bit;
                }
            }
            int64_t r0 = (c - u->chunk0) * u->chunk_rows;
            int64_t r1 = r0 + u->chunk_rows < u->N ? r0 + u->chunk_rows : u->N;
            mv_rows(u, buf, r0, r1);
        }
    }
}

static void run_segment(void *arg, int ith, int nth) {
    const seg_task *t = arg;
    ex_plan *p = &t->cb->plan;
    for (int i = 0; i < t->seg->n_phases; i++) {
        if (i > 0) elmi_tp_barrier(t->cb->tp);
        if (t->phase_t && ith == 0) t->phase_t[i] = now_ms();
        run_phase(p, t->seg->first_phase + i, t->work, ith, nth);
    }
}

static elm_status run_mul_mat(cpu_backend *cb, const be_node *nd, int index, bool exact, char *err,
                              size_t err_size) {
    elm_status st = elmi_cpu_mul_mat(cb->tp, nd->src[0], nd->src[1], nd->src[2], nd->dst, exact,
                                cb->work, cb->work_size);
    if (st != ELM_OK) {
        cpu_check c = {.index = index, .node = nd, .err = err, .err_size = err_size};
        elmi_cpu_check_fail(&c, st, nd->src[0], "src0", "matrix product failed (status %d)", (int)st);
    }
    return st;
}

/* A phase's wall time, shared among its units' nodes by their bytes (they
 * run at the same time, on all threads). */
static void prof_phase(cpu_backend *cb, const ex_phase *ph, double ms, bool barrier) {
    const ex_unit *u = cb->plan.units + ph->first_unit;
    double total = 0;
    for (int i = 0; i < ph->n_units; i++)
        total += (double)elmi_be_node_bytes(u[i].a) + (u[i].b ? (double)elmi_be_node_bytes(u[i].b) : 0);
    for (int i = 0; i < ph->n_units; i++)
        for (int k = 0; k < 2; k++) {
            const be_node *nd = k ? u[i].b : u[i].a;
            if (!nd) continue;
            double w = total > 0 ? (double)elmi_be_node_bytes(nd) / total : 1.0 / ph->n_units;
            cb->prof.op[nd->op].ms += ms * w;
        }
    if (barrier && ph->n_units) cb->prof.op[u[0].a->op].n_barriers++;
}

static void prof_segment(cpu_backend *cb, const ex_seg *seg, double end) {
    for (int i = 0; i < seg->n_phases; i++) {
        double t1 = i + 1 < seg->n_phases ? cb->phase_t[i + 1] : end;
        prof_phase(cb, &cb->plan.phases[seg->first_phase + i], t1 - cb->phase_t[i], i > 0);
    }
}

static void prof_graph(cpu_backend *cb, const be_graph *g) {
    for (int i = 0; i < g->n_nodes; i++) {
        be_profile_op *o = &cb->prof.op[g->nodes[i].op];
        o->n_nodes++;
        o->n_dispatches++;
        o->bytes += elmi_be_node_bytes(&g->nodes[i]);
    }
    cb->prof.n_graphs++;
}

/* Room for a start time per phase of the planned graph; false: no
 * profiling for this graph. */
static bool prof_reserve(cpu_backend *cb) {
    if (!cb->prof_on) return false;
    if (cb->plan.n_phases <= cb->prof_cap) return true;
    double *t = elmi_realloc(cb->phase_t, (size_t)cb->plan.n_phases * sizeof *t);
    if (!t) return false;
    cb->phase_t = t;
    cb->prof_cap = cb->plan.n_phases;
    return true;
}

static elm_status cpu_profile_enable(be_backend *be, bool on) {
    cpu_backend *cb = impl(be);
    cb->prof_on = on;
    memset(&cb->prof, 0, sizeof cb->prof);
    return ELM_OK;
}

static void cpu_profile_read(be_backend *be, be_profile *acc) {
    cpu_backend *cb = impl(be);
    if (acc) elmi_be_profile_add(acc, &cb->prof);
    memset(&cb->prof, 0, sizeof cb->prof);
}

static elm_status cpu_graph_compute(be_backend *be, const be_graph *g, char *err, size_t err_size) {
    cpu_backend *cb = impl(be);
    if (err && err_size) err[0] = '\0';
    if (!g || g->n_nodes < 0 || (g->n_nodes > 0 && !g->nodes))
        return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "graph_compute: bad graph");
    size_t need;
    ELM_TRY(check_graph(cb, g, &need, err, err_size));
    elm_status st = plan_reserve(&cb->plan, g->n_nodes, elmi_tp_n_threads(cb->tp));
    if (st != ELM_OK) goto fail;
    plan_graph(cb, g);
    size_t pool = cb->plan.op_scratch + cb->plan.slot_stride * (size_t)elmi_tp_n_threads(cb->tp);
    if (pool > need) need = pool;
    st = reserve_work(cb, need);
    if (st != ELM_OK) goto fail;
    cb->stats.n_graphs++;
    const ex_plan *p = &cb->plan;
    bool prof = prof_reserve(cb);
    for (int i = 0; i < p->n_segs; i++) {
        const ex_seg *seg = &p->segs[i];
        double t0 = prof ? now_ms() : 0;
        if (seg->n_phases == 0) {
            ELM_TRY(run_mul_mat(cb, &g->nodes[seg->node], seg->node, g->exact, err, err_size));
            if (prof) cb->prof.op[BE_OP_MUL_MAT].ms += now_ms() - t0;
            continue;
        }
        seg_task task = {.cb = cb, .seg = seg, .work = cb->work, .phase_t = prof ? cb->phase_t : NULL};
        elmi_tp_run(cb->tp, run_segment, &task);
        if (prof) prof_segment(cb, seg, now_ms());
    }
    if (prof) prof_graph(cb, g);
    cb->stats.n_nodes += (uint64_t)g->n_nodes;
    return ELM_OK;
fail:
    if (st == ELM_ERR_NO_MEMORY)
        elmi_errorf(err, err_size, st, "graph_compute: no memory for %zu bytes of scratch", need);
    return st;
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
    .profile_enable = cpu_profile_enable,
    .profile_read = cpu_profile_read,
};

/* n_threads <= 0: the physical cores. pin: worker thread i stays on
 * physical core i (the calling thread, which belongs to the application,
 * is left alone); off by default, since several backends, one per context,
 * may share the cores. Declared in backend.h next to elmi_be_cpu_new. */
elm_status elmi_be_cpu_new_ex(int n_threads, bool pin, be_backend **out) {
    if (!out) return ELM_ERR_INVALID_ARG;
    *out = NULL;
    cpu_backend *cb = elmi_calloc(1, sizeof *cb);
    if (!cb) return ELM_ERR_NO_MEMORY;
    elm_status st = elmi_tp_new(n_threads > 0 ? n_threads : elmi_be_cpu_physical_cores(), pin, &cb->tp);
    if (st != ELM_OK) {
        elmi_free(cb);
        return st;
    }
    cb->be.iface = &cpu_iface;
    cb->be.impl = cb;
    *out = &cb->be;
    return ELM_OK;
}

elm_status elmi_be_cpu_new(int n_threads, be_backend **out) {
    return elmi_be_cpu_new_ex(n_threads, false, out);
}
