/* fallback.c: a node the device cannot run (see ops.c) runs on the CPU
 * backend between two GPU steps. Its device tensors are copied to host
 * memory, one copy per backend buffer covering every tensor of the node in
 * that buffer, so that aliasing between them (in-place ops) holds on the
 * copies as it does on the device; host tensors are used in place. Only
 * the tensors the op writes are written back: the destination, and the
 * state (src2) of SHORTCONV, which the op updates in place. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/vulkan/vk_internal.h"
#include "common/alloc.h"

#define N_TENSORS (1 + BE_MAX_SRC)

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

/* Plans the copies: the union of the node's tensors per buffer. */
static elm_status span_mirrors(vk_backend *vk, const be_tensor *const *ts, mirror *m, int *n) {
    for (int i = 0; i < N_TENSORS; i++) {
        const be_tensor *t = ts[i];
        if (!t || !t->buf) continue;
        VkDeviceSize extent;
        if (!elmi_vk_tensor_extent(t, &extent) || t->offs + extent > t->buf->size)
            return elmi_vk_fail(vk, ELM_ERR_INVALID_ARG, "tensor '%s' lies outside its buffer", t->name);
        mirror *mi = mirror_for(m, n, t->buf);
        if (t->offs < mi->lo) mi->lo = t->offs;
        if (t->offs + extent > mi->hi) mi->hi = t->offs + extent;
    }
    return ELM_OK;
}

static elm_status fill_mirrors(vk_backend *vk, mirror *m, int n) {
    for (int i = 0; i < n; i++) {
        m[i].host = elmi_malloc(m[i].hi - m[i].lo);
        if (!m[i].host) return elmi_vk_fail(vk, ELM_ERR_NO_MEMORY, "out of host memory for a CPU fallback");
        ELM_TRY(elmi_vk_buffer_read(vk, m[i].buf, m[i].lo, m[i].host, m[i].hi - m[i].lo));
    }
    return ELM_OK;
}

/* Tensor i of {dst, src0..3}: does the op write it? */
static bool written_by(const be_node *nd, int i) {
    return i == 0 || (nd->op == BE_OP_SHORTCONV && i == 3);
}

static elm_status run_on_cpu(vk_backend *vk, const be_node *nd, be_tensor *copies, const be_graph *g,
                             int index) {
    if (!vk->cpu) {
        elm_status st = elmi_be_cpu_new(0, &vk->cpu);
        if (st != ELM_OK) return elmi_vk_fail(vk, st, "cannot start the CPU backend for a fallback");
    }
    be_node n2 = *nd;
    n2.dst = &copies[0];
    for (int s = 0; s < BE_MAX_SRC; s++) n2.src[s] = nd->src[s] ? &copies[1 + s] : NULL;
    be_graph g2 = {.nodes = &n2, .n_nodes = 1, .exact = g->exact};
    char err[VK_ERR_LEN] = "";
    elm_status st = vk->cpu->iface->graph_compute(vk->cpu, &g2, err, sizeof err);
    if (st != ELM_OK)
        return elmi_vk_fail(vk, st, "node %d (%s, on the CPU): %s", index, elmi_be_op_name(nd->op),
                       err[0] ? err : elm_strerror(st));
    return ELM_OK;
}

elm_status elmi_vk_run_cpu_node(vk_backend *vk, const be_graph *g, int index) {
    const be_node *nd = &g->nodes[index];
    const be_tensor *ts[N_TENSORS] = {nd->dst, nd->src[0], nd->src[1], nd->src[2], nd->src[3]};
    if (!nd->dst || !nd->dst->buf)
        return elmi_vk_fail(vk, ELM_ERR_INVALID_ARG, "node %d: the destination is not in a buffer", index);
    mirror m[N_TENSORS];
    int n = 0;
    be_tensor copies[N_TENSORS];
    VkDeviceSize extent;
    elm_status st = span_mirrors(vk, ts, m, &n);
    if (st != ELM_OK) goto done;
    st = fill_mirrors(vk, m, n);
    if (st != ELM_OK) goto done;
    for (int i = 0; i < N_TENSORS; i++) {
        if (!ts[i]) continue;
        copies[i] = *ts[i];
        if (!ts[i]->buf) continue;
        const mirror *mi = mirror_for(m, &n, ts[i]->buf);
        copies[i].buf = NULL;
        copies[i].data = mi->host + (ts[i]->offs - mi->lo);
    }
    st = run_on_cpu(vk, nd, copies, g, index);
    for (int i = 0; st == ELM_OK && i < N_TENSORS; i++) {
        if (!written_by(nd, i) || !ts[i]->buf) continue;
        elmi_vk_tensor_extent(ts[i], &extent);
        st = elmi_vk_buffer_write(vk, ts[i]->buf, ts[i]->offs, copies[i].data, extent);
    }
done:
    for (int i = 0; i < n; i++) elmi_free(m[i].host);
    return st;
}
