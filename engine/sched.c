/* sched.c: the device/CPU split of a graph (sched.h). */
#include "engine/sched.h"

#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/status.h"
#include "quant/quant.h"

#define N_TENSORS (1 + BE_MAX_SRC)

void elmi_sched_init(elm_sched *s, be_backend *dev, bool is_cpu, int n_threads, bool pin) {
    memset(s, 0, sizeof *s);
    s->dev = dev;
    s->cpu = is_cpu ? dev : NULL;
    s->n_threads = n_threads;
    s->pin = pin;
}

void elmi_sched_free(elm_sched *s) {
    if (s->cpu && s->cpu != s->dev) be_free(s->cpu);
    elmi_free(s->on_cpu);
    memset(s, 0, sizeof *s);
}

static uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v;
    return h * 0x100000001b3ull;
}

static uint64_t mix_tensor(uint64_t h, const be_tensor *t) {
    if (!t) return mix(h, 0x9e37);
    h = mix(h, (uint64_t)t->type);
    for (int d = 0; d < 4; d++) h = mix(mix(h, (uint64_t)t->ne[d]), (uint64_t)t->nb[d]);
    /* Where it lies matters too: a tensor across two device allocations,
     * or a host tensor, may be refused where a neighbour is not. */
    h = mix(mix(h, (uint64_t)(uintptr_t)t->buf), (uint64_t)t->offs);
    return mix(h, (uint64_t)(uintptr_t)(t->buf ? NULL : t->data));
}

/* What supports_op may depend on: ops, types, shapes, placement and the
 * static params (iparams[0] is a per-call position for several ops and is
 * left out). */
static uint64_t shape_key(const be_graph *g) {
    uint64_t h = mix(0xcbf29ce484222325ull, (uint64_t)g->n_nodes * 2 + g->exact);
    for (int i = 0; i < g->n_nodes; i++) {
        const be_node *nd = &g->nodes[i];
        h = mix(h, (uint64_t)nd->op);
        h = mix_tensor(h, nd->dst);
        for (int k = 0; k < BE_MAX_SRC; k++) h = mix_tensor(h, nd->src[k]);
        for (int k = 1; k < BE_MAX_PARAMS; k++) h = mix(h, (uint32_t)nd->iparams[k]);
    }
    return h | 1;
}

static void describe(char *out, size_t n, const be_node *nd, int i, const char *dev, const char *why) {
    snprintf(out, n, "%s (node %d, '%.*s') runs on the CPU: the %s backend cannot run it%s%s",
             elmi_be_op_name(nd->op), i, 48, nd->dst ? nd->dst->name : "?", dev, why && why[0] ? ": " : "",
             why ? why : "");
}

elm_status elmi_sched_plan(elm_sched *s, const be_graph *g, char *err, size_t err_size) {
    uint64_t key = shape_key(g);
    if (key == s->key) return ELM_OK;
    if (g->n_nodes > s->cap) {
        uint8_t *p = elmi_realloc(s->on_cpu, (size_t)g->n_nodes);
        if (!p) return elmi_errorf(err, err_size, ELM_ERR_NO_MEMORY, "out of memory");
        s->on_cpu = p;
        s->cap = g->n_nodes;
    }
    s->key = 0;
    s->n_cpu = 0;
    const be_iface *di = s->dev->iface;
    for (int i = 0; i < g->n_nodes; i++) {
        const be_node *nd = &g->nodes[i];
        s->on_cpu[i] = 0;
        if (di->supports_op(s->dev, nd)) continue;
        const char *why = di->unsupported_why ? di->unsupported_why(s->dev) : "";
        const be_tensor *w = nd->src[0];
        if (s->cpu == s->dev)
            return elmi_errorf(err, err_size, ELM_ERR_UNSUPPORTED, "the %s backend cannot run %s on '%s' (type %s)%s%s",
                               di->name, elmi_be_op_name(nd->op), w ? w->name : "?",
                               w ? elmi_qtype_name(w->type) : "?", why[0] ? ": " : "", why);
        if (!s->cpu) {
            elm_status st = elmi_be_cpu_new_ex(s->n_threads, s->pin, &s->cpu);
            if (st != ELM_OK) return elmi_errorf(err, err_size, st, "cannot start the CPU backend for a fallback");
        }
        if (!s->cpu->iface->supports_op(s->cpu, nd))
            return elmi_errorf(err, err_size, ELM_ERR_UNSUPPORTED,
                               "neither the %s nor the CPU backend can run %s on '%s' (type %s)", di->name,
                               elmi_be_op_name(nd->op), w ? w->name : "?", w ? elmi_qtype_name(w->type) : "?");
        if (!s->first_fallback[0]) describe(s->first_fallback, sizeof s->first_fallback, nd, i, di->name, why);
        s->on_cpu[i] = 1;
        s->n_cpu++;
    }
    s->key = key;
    return ELM_OK;
}

/* ------------------------------------------------------------ CPU nodes */

/* Bytes from element 0 to the end of the last row; false when malformed. */
static bool tensor_extent(const be_tensor *t, size_t *out) {
    size_t span;
    if (t->ne[0] < 1 || !elmi_qtype_row_bytes(t->type == BE_TYPE_I32 ? QT_I32 : t->type, t->ne[0], &span))
        return false;
    for (int d = 1; d < 4; d++) {
        size_t step;
        if (t->ne[d] < 1 || __builtin_mul_overflow(t->nb[d], (size_t)(t->ne[d] - 1), &step) ||
            __builtin_add_overflow(span, step, &span))
            return false;
    }
    *out = span;
    return true;
}

/* The node's device tensors, copied to host memory: one copy per buffer
 * spanning every tensor of the node in it, so that aliasing (in-place ops)
 * holds on the copies as on the device. */
typedef struct mirror {
    be_buffer *buf;
    size_t lo, hi;
    char *host;
} mirror;

static mirror *mirror_for(mirror *m, int *n, be_buffer *buf) {
    for (int i = 0; i < *n; i++)
        if (m[i].buf == buf) return &m[i];
    m[*n] = (mirror){buf, SIZE_MAX, 0, NULL};
    return &m[(*n)++];
}

/* Tensor i of {dst, src0..3}: does the op write it? SHORTCONV also updates
 * its state (src2) in place. */
static bool written_by(const be_node *nd, int i) {
    return i == 0 || (nd->op == BE_OP_SHORTCONV && i == 3);
}

static elm_status mirror_node(elm_sched *s, const be_node *nd, const be_tensor *const *ts, mirror *m, int *n,
                              be_tensor *copies, char *err, size_t err_size) {
    size_t ext[N_TENSORS] = {0};
    for (int i = 0; i < N_TENSORS; i++) {
        if (!ts[i] || !ts[i]->buf) continue;
        if (!tensor_extent(ts[i], &ext[i]))
            return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "tensor '%s' has a bad shape", ts[i]->name);
        mirror *mi = mirror_for(m, n, ts[i]->buf);
        if (ts[i]->offs < mi->lo) mi->lo = ts[i]->offs;
        if (ts[i]->offs + ext[i] > mi->hi) mi->hi = ts[i]->offs + ext[i];
    }
    for (int i = 0; i < *n; i++)
        if (!(m[i].host = elmi_malloc(m[i].hi - m[i].lo)))
            return elmi_errorf(err, err_size, ELM_ERR_NO_MEMORY, "out of memory for a CPU fallback");
    for (int i = 0; i < N_TENSORS; i++) {
        if (!ts[i]) continue;
        copies[i] = *ts[i];
        if (!ts[i]->buf) continue;
        const mirror *mi = mirror_for(m, n, ts[i]->buf);
        copies[i].buf = NULL;
        copies[i].data = mi->host + (ts[i]->offs - mi->lo);
        elm_status st = s->dev->iface->tensor_get(s->dev, ts[i], copies[i].data, 0, ext[i]);
        if (st != ELM_OK)
            return elmi_errorf(err, err_size, st, "node %s: cannot read '%s' from the device",
                               elmi_be_op_name(nd->op), ts[i]->name);
    }
    return ELM_OK;
}

static elm_status run_cpu_node(elm_sched *s, const be_graph *g, int index, char *err, size_t err_size) {
    const be_node *nd = &g->nodes[index];
    const be_tensor *ts[N_TENSORS] = {nd->dst, nd->src[0], nd->src[1], nd->src[2], nd->src[3]};
    if (!nd->dst || !nd->dst->buf)
        return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "node %d: the destination is not in a buffer", index);
    mirror m[N_TENSORS];
    be_tensor copies[N_TENSORS];
    int n = 0;
    elm_status st = mirror_node(s, nd, ts, m, &n, copies, err, err_size);
    if (st == ELM_OK) {
        be_node n2 = *nd;
        n2.dst = &copies[0];
        for (int k = 0; k < BE_MAX_SRC; k++) n2.src[k] = nd->src[k] ? &copies[1 + k] : NULL;
        be_graph g2 = {.nodes = &n2, .n_nodes = 1, .exact = g->exact};
        char msg[256] = "";
        st = s->cpu->iface->graph_compute(s->cpu, &g2, msg, sizeof msg);
        if (st != ELM_OK)
            elmi_errorf(err, err_size, st, "node %d (%s, on the CPU): %s", index, elmi_be_op_name(nd->op),
                        msg[0] ? msg : elm_strerror(st));
    }
    for (int i = 0; st == ELM_OK && i < N_TENSORS; i++) {
        size_t ext;
        if (!ts[i] || !ts[i]->buf || !written_by(nd, i) || !tensor_extent(ts[i], &ext)) continue;
        st = s->dev->iface->tensor_set(s->dev, (be_tensor *)ts[i], copies[i].data, 0, ext);
        if (st != ELM_OK)
            elmi_errorf(err, err_size, st, "node %s: cannot write '%s' to the device", elmi_be_op_name(nd->op),
                        ts[i]->name);
    }
    for (int i = 0; i < n; i++) elmi_free(m[i].host);
    return st;
}

/* ------------------------------------------------------------ execution */

static elm_status run_device(elm_sched *s, const be_graph *g, int a, int b, bool prepare_only, char *err,
                             size_t err_size) {
    if (b <= a) return ELM_OK;
    be_graph part = {.nodes = g->nodes + a, .n_nodes = b - a, .exact = g->exact};
    const be_iface *di = s->dev->iface;
    if (prepare_only) return di->graph_prepare ? di->graph_prepare(s->dev, &part, err, err_size) : ELM_OK;
    return di->graph_compute(s->dev, &part, err, err_size);
}

elm_status elmi_sched_compute(elm_sched *s, const be_graph *g, bool prepare_only, char *err,
                              size_t err_size) {
    ELM_TRY(elmi_sched_plan(s, g, err, err_size));
    if (s->n_cpu == 0) return run_device(s, g, 0, g->n_nodes, prepare_only, err, err_size);
    int a = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        if (!s->on_cpu[i]) continue;
        ELM_TRY(run_device(s, g, a, i, prepare_only, err, err_size));
        if (!prepare_only) ELM_TRY(run_cpu_node(s, g, i, err, err_size));
        a = i + 1;
    }
    ELM_TRY(run_device(s, g, a, g->n_nodes, prepare_only, err, err_size));
    if (!prepare_only) s->n_fallback_nodes += (uint64_t)s->n_cpu;
    return ELM_OK;
}
