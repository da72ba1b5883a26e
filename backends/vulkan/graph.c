/* graph.c: whole-graph execution.
 *
 * A graph is planned once per structure: every node becomes dispatches
 * (ops.c) or, when the device cannot run it, a CPU step. The dispatches
 * between CPU steps are recorded into one command buffer, with a barrier
 * only before a dispatch that touches a byte range an earlier dispatch
 * since the last barrier wrote (or writes a range one of them read). The
 * plan, with its descriptor sets and command buffers, is cached under a key
 * made of the whole graph except the per-call cache positions, which the
 * shaders read from a small host-visible buffer rewritten before each
 * submit. A decode step therefore replays its command buffer: one submit,
 * one fence wait. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/vulkan/vk_internal.h"
#include "common/alloc.h"

/* ------------------------------------------------------------------ keys */

typedef struct keybuf {
    uint8_t *p;
    size_t len, cap;
    bool oom;
} keybuf;

static void put(keybuf *k, const void *v, size_t n) {
    if (k->oom) return;
    if (k->len + n > k->cap) {
        size_t cap = k->cap ? 2 * k->cap : 4096;
        while (cap < k->len + n) cap *= 2;
        uint8_t *q = elmi_realloc(k->p, cap);
        if (!q) {
            k->oom = true;
            return;
        }
        k->p = q;
        k->cap = cap;
    }
    memcpy(k->p + k->len, v, n);
    k->len += n;
}

static void put_tensor(keybuf *k, const be_tensor *t) {
    struct {
        int type;
        int64_t ne[4];
        size_t nb[4];
        const void *buf, *data;
        size_t offs;
    } rec;
    memset(&rec, 0, sizeof rec);
    if (t) {
        rec.type = t->type;
        memcpy(rec.ne, t->ne, sizeof rec.ne);
        memcpy(rec.nb, t->nb, sizeof rec.nb);
        rec.buf = t->buf;
        rec.offs = t->offs;
        rec.data = t->buf ? NULL : t->data;
    } else {
        rec.type = -1;
    }
    put(k, &rec, sizeof rec);
}

/* Everything the recorded commands depend on; iparams[0] of KV_STORE,
 * ATTENTION and SHORTCONV (the position) is left out: it changes every step and
 * reaches the shaders through the per-call buffer. */
static bool graph_key(const be_graph *g, keybuf *k) {
    uint8_t exact = g->exact;
    put(k, &exact, 1);
    for (int i = 0; i < g->n_nodes; i++) {
        const be_node *nd = &g->nodes[i];
        int32_t ip[BE_MAX_PARAMS];
        memcpy(ip, nd->iparams, sizeof ip);
        if (elmi_vk_node_has_dyn(nd)) ip[0] = 0;
        put(k, &nd->op, sizeof nd->op);
        put(k, ip, sizeof ip);
        put(k, nd->fparams, sizeof nd->fparams);
        put_tensor(k, nd->dst);
        for (int s = 0; s < BE_MAX_SRC; s++) put_tensor(k, nd->src[s]);
    }
    return !k->oom;
}

static uint64_t hash_bytes(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* ----------------------------------------------------------------- plans */

static bool grow(void **p, uint32_t *cap, uint32_t n, size_t elem) {
    if (n < *cap) return true;
    uint32_t c = *cap ? 2 * *cap : 64;
    void *q = elmi_realloc(*p, (size_t)c * elem);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

elm_status elmi_vk_plan_add_dispatch(vk_backend *vk, vk_plan *plan, const vk_disp *d) {
    if (!grow((void **)&plan->disp, &plan->cap_disp, plan->n_disp, sizeof *plan->disp))
        return elmi_vk_fail(vk, ELM_ERR_NO_MEMORY, "out of host memory");
    plan->disp[plan->n_disp++] = *d;
    return ELM_OK;
}

elm_status elmi_vk_plan_add_dyn(vk_plan *plan, int node, uint32_t *slot) {
    if (!grow((void **)&plan->dyn_node, &plan->cap_dyn, plan->n_dyn, sizeof *plan->dyn_node))
        return ELM_ERR_NO_MEMORY;
    *slot = plan->n_dyn;
    plan->dyn_node[plan->n_dyn++] = node;
    return ELM_OK;
}

static vk_step *new_step(vk_backend *vk, vk_plan *plan) {
    if (!grow((void **)&plan->steps, &plan->cap_steps, plan->n_steps, sizeof *plan->steps)) {
        elmi_vk_fail(vk, ELM_ERR_NO_MEMORY, "out of host memory");
        return NULL;
    }
    vk_step *s = &plan->steps[plan->n_steps++];
    memset(s, 0, sizeof *s);
    return s;
}

/* Dispatches [d0, n_disp) join the current GPU step or open one. */
static elm_status add_gpu_step(vk_backend *vk, vk_plan *plan, uint32_t d0) {
    vk_step *last = plan->n_steps ? &plan->steps[plan->n_steps - 1] : NULL;
    if (!last || last->cpu) {
        if (!(last = new_step(vk, plan))) return ELM_ERR_NO_MEMORY;
        last->d0 = d0;
    }
    last->d1 = plan->n_disp;
    return ELM_OK;
}

static elm_status add_cpu_step(vk_backend *vk, vk_plan *plan, int node) {
    vk_step *s = new_step(vk, plan);
    if (!s) return ELM_ERR_NO_MEMORY;
    s->cpu = true;
    s->node = node;
    return ELM_OK;
}

elm_status elmi_vk_plan_scratch(vk_backend *vk, vk_plan *plan, VkDeviceSize bytes, const vk_seg **out) {
    if (plan->n_scratch && plan->scratch[plan->n_scratch - 1].size >= bytes) {
        *out = &plan->scratch[plan->n_scratch - 1];
        return ELM_OK;
    }
    /* Earlier segments stay: dispatches already planned are bound to them. */
    vk_seg *s = elmi_realloc(plan->scratch, (plan->n_scratch + 1) * sizeof *s);
    if (!s) return elmi_vk_fail(vk, ELM_ERR_NO_MEMORY, "out of host memory");
    plan->scratch = s;
    ELM_TRY(elmi_vk_seg_alloc(vk, bytes, false, &s[plan->n_scratch]));
    *out = &s[plan->n_scratch++];
    return ELM_OK;
}

static void plan_free(vk_backend *vk, vk_plan *plan) {
    if (!plan) return;
    for (uint32_t i = 0; i < plan->n_steps; i++)
        if (plan->steps[i].cmd) vkFreeCommandBuffers(vk->dev, vk->cmd_pool, 1, &plan->steps[i].cmd);
    if (plan->pool) vkDestroyDescriptorPool(vk->dev, plan->pool, NULL);
    elmi_vk_seg_free(vk, &plan->dyn);
    for (uint32_t i = 0; i < plan->n_scratch; i++) elmi_vk_seg_free(vk, &plan->scratch[i]);
    elmi_free(plan->scratch);
    elmi_free(plan->key);
    elmi_free(plan->disp);
    elmi_free(plan->steps);
    elmi_free(plan->dyn_node);
    elmi_free(plan);
}

void elmi_vk_plans_clear(vk_backend *vk) {
    for (int i = 0; i < VK_MAX_PLANS; i++) {
        plan_free(vk, vk->plans[i]);
        vk->plans[i] = NULL;
    }
}

static void note_fallback(vk_backend *vk, const be_node *nd, int index, const char *why) {
    uint32_t bit = 1u << ((unsigned)nd->op % 32);
    if (vk->quiet || (vk->fallback_logged & bit)) return;
    vk->fallback_logged |= bit;
    fprintf(stderr, "edgelm vulkan: %s (node %d, '%.*s') runs on the CPU: %s\n", elmi_be_op_name(nd->op),
            index, (int)sizeof nd->dst->name, nd->dst->name, why);
}

/* Plans every node: dispatches, or a CPU step with the reason logged. */
static elm_status plan_nodes(vk_backend *vk, const be_graph *g, vk_plan *plan) {
    for (int i = 0; i < g->n_nodes; i++) {
        const be_node *nd = &g->nodes[i];
        uint32_t n_disp = plan->n_disp, n_dyn = plan->n_dyn;
        vk_planner p = {.vk = vk, .plan = plan, .exact = g->exact, .node_index = i};
        elm_status st = elmi_vk_plan_node(&p, nd);
        if (st == ELM_ERR_UNSUPPORTED) {
            plan->n_disp = n_disp; /* drop what the node emitted before giving up */
            plan->n_dyn = n_dyn;
            note_fallback(vk, nd, i, p.why);
            plan->n_cpu++;
            st = add_cpu_step(vk, plan, i);
        } else if (st == ELM_OK && plan->n_disp > n_disp) {
            st = add_gpu_step(vk, plan, n_disp);
        }
        if (st != ELM_OK) return st;
    }
    plan->n_nodes = g->n_nodes;
    return ELM_OK;
}

/* ----------------------------------------------------------- descriptors */

static elm_status write_sets(vk_backend *vk, vk_plan *plan) {
    if (plan->n_disp == 0) return ELM_OK;
    VkDescriptorPoolSize size = {VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, plan->n_disp * (VK_N_BIND + 1)};
    VkDescriptorPoolCreateInfo pci = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
        .maxSets = plan->n_disp,
        .poolSizeCount = 1,
        .pPoolSizes = &size,
    };
    ELM_TRY(elmi_vk_check(vk, vkCreateDescriptorPool(vk->dev, &pci, NULL, &plan->pool), "vkCreateDescriptorPool"));
    for (uint32_t i = 0; i < plan->n_disp; i++) {
        vk_disp *d = &plan->disp[i];
        VkDescriptorSetAllocateInfo ai = {
            .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
            .descriptorPool = plan->pool,
            .descriptorSetCount = 1,
            .pSetLayouts = &vk->dsl,
        };
        ELM_TRY(elmi_vk_check(vk, vkAllocateDescriptorSets(vk->dev, &ai, &d->set), "vkAllocateDescriptorSets"));
        VkDescriptorBufferInfo bi[VK_N_BIND + 1];
        VkWriteDescriptorSet w[VK_N_BIND + 1];
        for (uint32_t b = 0; b <= VK_N_BIND; b++) {
            bi[b] = b < VK_N_BIND ? (VkDescriptorBufferInfo){d->b[b].buf, d->b[b].offset, d->b[b].range}
                                  : (VkDescriptorBufferInfo){plan->dyn.buf, 0, VK_WHOLE_SIZE};
            w[b] = (VkWriteDescriptorSet){
                .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                .dstSet = d->set,
                .dstBinding = b,
                .descriptorCount = 1,
                .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                .pBufferInfo = &bi[b],
            };
        }
        vkUpdateDescriptorSets(vk->dev, VK_N_BIND + 1, w, 0, NULL);
    }
    return ELM_OK;
}

/* ------------------------------------------------------------- recording */

typedef struct range {
    uint32_t seg;
    VkDeviceSize lo, hi;
} range;

/* Ranges read and written since the last barrier. */
typedef struct hazards {
    range *r, *w;
    uint32_t n_r, n_w, cap;
} hazards;

static bool overlaps(const range *set, uint32_t n, const range *x) {
    for (uint32_t i = 0; i < n; i++)
        if (set[i].seg == x->seg && set[i].lo < x->hi && x->lo < set[i].hi) return true;
    return false;
}

static range bind_range(const vk_bind *b) {
    return (range){b->seg_id, b->offset, b->offset + b->range};
}

static bool needs_barrier(const hazards *h, const vk_disp *d) {
    for (int b = 0; b < VK_N_BIND; b++) {
        if (!d->b[b].seg_id) continue;
        range x = bind_range(&d->b[b]);
        if (overlaps(h->w, h->n_w, &x)) return true;
        if ((d->written & (1u << b)) && overlaps(h->r, h->n_r, &x)) return true;
    }
    return false;
}

static void track(hazards *h, const vk_disp *d) {
    for (int b = 0; b < VK_N_BIND; b++) {
        if (!d->b[b].seg_id) continue;
        if (d->written & (1u << b)) h->w[h->n_w++] = bind_range(&d->b[b]);
        else h->r[h->n_r++] = bind_range(&d->b[b]);
    }
}

static void memory_barrier(VkCommandBuffer cmd, VkPipelineStageFlags src, VkAccessFlags sa,
                           VkPipelineStageFlags dst, VkAccessFlags da) {
    VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER, .srcAccessMask = sa, .dstAccessMask = da};
    vkCmdPipelineBarrier(cmd, src, dst, 0, 1, &mb, 0, NULL, 0, NULL);
}

static const VkAccessFlags SHADER_RW = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT;

static void record_dispatches(vk_backend *vk, const vk_plan *plan, const vk_step *s,
                              VkCommandBuffer cmd, hazards *h) {
    VkPipeline bound = VK_NULL_HANDLE;
    for (uint32_t i = s->d0; i < s->d1; i++) {
        const vk_disp *d = &plan->disp[i];
        if (needs_barrier(h, d)) {
            memory_barrier(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT,
                           VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, SHADER_RW);
            h->n_r = h->n_w = 0;
            vk->vstats.n_barriers++;
        }
        track(h, d);
        if (d->pipe != bound) vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, bound = d->pipe);
        vkCmdBindDescriptorSets(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, vk->layout, 0, 1, &d->set, 0, NULL);
        vkCmdPushConstants(cmd, vk->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof d->pc, d->pc);
        vkCmdDispatch(cmd, d->groups[0], d->groups[1], d->groups[2]);
        vk->vstats.n_dispatches++;
    }
}

static elm_status record_step(vk_backend *vk, const vk_plan *plan, vk_step *s, hazards *h) {
    VkCommandBufferAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = vk->cmd_pool,
        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
        .commandBufferCount = 1,
    };
    ELM_TRY(elmi_vk_check(vk, vkAllocateCommandBuffers(vk->dev, &ai, &s->cmd), "vkAllocateCommandBuffers"));
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    ELM_TRY(elmi_vk_check(vk, vkBeginCommandBuffer(s->cmd, &bi), "vkBeginCommandBuffer"));
    /* Transfers and CPU steps since the last run wrote device memory. */
    memory_barrier(s->cmd, VK_PIPELINE_STAGE_TRANSFER_BIT | VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                   VK_ACCESS_TRANSFER_WRITE_BIT | VK_ACCESS_SHADER_WRITE_BIT,
                   VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, SHADER_RW);
    h->n_r = h->n_w = 0;
    record_dispatches(vk, plan, s, s->cmd, h);
    memory_barrier(s->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT,
                   VK_PIPELINE_STAGE_HOST_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT | VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                   VK_ACCESS_HOST_READ_BIT | VK_ACCESS_TRANSFER_READ_BIT | SHADER_RW);
    vk->vstats.n_records++;
    return elmi_vk_check(vk, vkEndCommandBuffer(s->cmd), "vkEndCommandBuffer");
}

static elm_status record_all(vk_backend *vk, vk_plan *plan) {
    hazards h = {0};
    h.cap = plan->n_disp * VK_N_BIND + 1;
    h.r = elmi_malloc(h.cap * sizeof *h.r);
    h.w = elmi_malloc(h.cap * sizeof *h.w);
    elm_status st = ELM_OK;
    if (!h.r || !h.w) {
        st = elmi_vk_fail(vk, ELM_ERR_NO_MEMORY, "out of host memory");
        goto done;
    }
    for (uint32_t i = 0; i < plan->n_steps; i++) {
        if (plan->steps[i].cpu) continue;
        st = record_step(vk, plan, &plan->steps[i], &h);
        if (st != ELM_OK) goto done;
    }
done:
    elmi_free(h.r);
    elmi_free(h.w);
    return st;
}

/* -------------------------------------------------------------- building */

static elm_status plan_build(vk_backend *vk, const be_graph *g, vk_plan *plan) {
    ELM_TRY(plan_nodes(vk, g, plan));
    ELM_TRY(elmi_vk_seg_alloc(vk, 4 * (plan->n_dyn ? plan->n_dyn : 1), true, &plan->dyn));
    if (!plan->dyn.map) return elmi_vk_fail(vk, ELM_ERR_DEVICE, "cannot map the per-call buffer");
    ELM_TRY(write_sets(vk, plan));
    return record_all(vk, plan);
}

static vk_plan *find_plan(vk_backend *vk, const keybuf *k, uint64_t hash) {
    for (int i = 0; i < VK_MAX_PLANS; i++) {
        vk_plan *p = vk->plans[i];
        if (p && p->hash == hash && p->key_len == k->len && !memcmp(p->key, k->p, k->len)) return p;
    }
    return NULL;
}

/* The slot of an empty or least recently used plan, freed. */
static int evict_slot(vk_backend *vk) {
    int best = 0;
    for (int i = 0; i < VK_MAX_PLANS; i++) {
        if (!vk->plans[i]) return i;
        if (vk->plans[i]->last_use < vk->plans[best]->last_use) best = i;
    }
    plan_free(vk, vk->plans[best]);
    vk->plans[best] = NULL;
    return best;
}

static elm_status check_graph(vk_backend *vk, const be_graph *g) {
    if (!g || g->n_nodes < 0 || (g->n_nodes > 0 && !g->nodes))
        return elmi_vk_fail(vk, ELM_ERR_INVALID_ARG, "bad graph");
    if (vk->lost) return elmi_vk_fail(vk, ELM_ERR_DEVICE, "the device was lost earlier");
    return ELM_OK;
}

elm_status elmi_vk_graph_prepare(vk_backend *vk, const be_graph *g, vk_plan **out) {
    elm_status st = check_graph(vk, g);
    if (st != ELM_OK) return st;
    keybuf k = {0};
    if (!graph_key(g, &k)) {
        elmi_free(k.p);
        return elmi_vk_fail(vk, ELM_ERR_NO_MEMORY, "out of host memory");
    }
    uint64_t hash = hash_bytes(k.p, k.len);
    vk_plan *plan = find_plan(vk, &k, hash);
    if (plan) {
        elmi_free(k.p);
        plan->last_use = ++vk->clock;
        *out = plan;
        return ELM_OK;
    }
    plan = elmi_calloc(1, sizeof *plan);
    if (!plan) {
        elmi_free(k.p);
        return elmi_vk_fail(vk, ELM_ERR_NO_MEMORY, "out of host memory");
    }
    plan->key = k.p;
    plan->key_len = k.len;
    plan->hash = hash;
    st = plan_build(vk, g, plan);
    if (st != ELM_OK) {
        plan_free(vk, plan);
        return st;
    }
    plan->last_use = ++vk->clock;
    vk->plans[evict_slot(vk)] = plan;
    *out = plan;
    return ELM_OK;
}

/* ------------------------------------------------------------- execution */

/* The tokens of a node with a per-call position, the rows it addresses and
 * whether they form a ring (positions wrap, so any position >= 0 fits). */
static void dyn_extent(const be_node *nd, int64_t *T, int64_t *rows, bool *ring) {
    switch (nd->op) {
    case BE_OP_KV_STORE:
        *T = nd->src[0]->ne[1], *rows = nd->dst->ne[1], *ring = nd->iparams[1] == 1;
        break;
    case BE_OP_ATTENTION:
        *T = nd->src[0]->ne[2], *rows = nd->src[1]->ne[1], *ring = nd->iparams[3] == 1;
        break;
    default: /* SHORTCONV: its state is always a ring */
        *T = nd->src[0]->ne[1], *rows = nd->src[2]->ne[1], *ring = true;
        break;
    }
}

/* Positions are per-call values: check them as the CPU backend would. */
static elm_status write_dyn(vk_backend *vk, const be_graph *g, vk_plan *plan) {
    int32_t *slots = plan->dyn.map;
    for (uint32_t i = 0; i < plan->n_dyn; i++) {
        const be_node *nd = &g->nodes[plan->dyn_node[i]];
        int64_t pos = nd->iparams[0], T, rows;
        bool ring;
        dyn_extent(nd, &T, &rows, &ring);
        if (pos < 0)
            return elmi_vk_fail(vk, ELM_ERR_INVALID_ARG, "node %d (%s): negative position %lld", plan->dyn_node[i],
                           elmi_be_op_name(nd->op), (long long)pos);
        if (!ring && pos + T > rows)
            return elmi_vk_fail(vk, ELM_ERR_INVALID_ARG, "node %d (%s): rows [%lld, %lld) outside the cache's %lld",
                           plan->dyn_node[i], elmi_be_op_name(nd->op), (long long)pos, (long long)(pos + T),
                           (long long)rows);
        slots[i] = (int32_t)pos;
    }
    return ELM_OK;
}

elm_status elmi_vk_graph_compute(vk_backend *vk, const be_graph *g) {
    vk_plan *plan;
    uint64_t records = vk->vstats.n_records;
    ELM_TRY(elmi_vk_graph_prepare(vk, g, &plan));
    ELM_TRY(write_dyn(vk, g, plan));
    if (vk->vstats.n_records == records && plan->n_disp) vk->vstats.n_replays++;
    vk->in_graph = true;
    elm_status st = ELM_OK;
    for (uint32_t i = 0; st == ELM_OK && i < plan->n_steps; i++) {
        const vk_step *s = &plan->steps[i];
        if (s->cpu) {
            st = elmi_vk_run_cpu_node(vk, g, s->node);
        } else {
            st = elmi_vk_submit_wait(vk, s->cmd, "graph submit");
            vk->vstats.n_submits++;
        }
    }
    vk->in_graph = false;
    if (st != ELM_OK) return st;
    vk->stats.n_graphs++;
    vk->stats.n_nodes += (uint64_t)plan->n_nodes;
    vk->stats.n_fallback_nodes += (uint64_t)plan->n_cpu;
    vk->vstats.n_fallback_nodes += (uint64_t)plan->n_cpu;
    return ELM_OK;
}
