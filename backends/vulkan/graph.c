/* graph.c: whole-graph execution.
 *
 * A graph is planned once per structure: every node becomes dispatches
 * (ops.c) or, when the device cannot run it, a CPU step. The dispatches
 * between CPU steps are recorded into one command buffer, with a barrier
 * only before a dispatch that touches a byte range an earlier dispatch
 * since the last barrier wrote (or writes a range one of them read). The
 * plan, with its descriptor sets and command buffers, is cached under a key
 * made of the whole graph except the per-call cache positions (only
 * whether attention is short of a split, elmi_vk_attention_short), which the
 * shaders read from a small host-visible buffer rewritten before each
 * submit. A decode step therefore replays its command buffer: one submit,
 * one fence wait. A submit that runs past the submit bound (the GPU
 * watchdog, vk_backend.h) has its plan recorded again in shorter runs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/vulkan/fuse.h"
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
static bool graph_key(const vk_backend *vk, const be_graph *g, keybuf *k) {
    uint8_t flags = (uint8_t)(g->exact | vk->prof_on << 1);
    put(k, &flags, 1);
    for (int i = 0; i < g->n_nodes; i++) {
        const be_node *nd = &g->nodes[i];
        int32_t ip[BE_MAX_PARAMS];
        memcpy(ip, nd->iparams, sizeof ip);
        if (elmi_vk_node_has_dyn(nd)) ip[0] = 0;
        uint8_t short_attn = elmi_vk_attention_short(nd);
        put(k, &nd->op, sizeof nd->op);
        put(k, &short_attn, 1);
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

/* Dispatches [d0, n_disp) join the current step or open one. */
static elm_status add_gpu_step(vk_backend *vk, vk_plan *plan, uint32_t d0) {
    vk_step *last = plan->n_steps ? &plan->steps[plan->n_steps - 1] : NULL;
    if (!last) {
        if (!(last = new_step(vk, plan))) return ELM_ERR_NO_MEMORY;
        last->d0 = d0;
    }
    last->d1 = plan->n_disp;
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
    if (plan->qpool) vkDestroyQueryPool(vk->dev, plan->qpool, NULL);
    if (plan->pool) vkDestroyDescriptorPool(vk->dev, plan->pool, NULL);
    for (uint32_t i = 0; i < plan->n_views; i++) vkDestroyBufferView(vk->dev, plan->views[i], NULL);
    elmi_free(plan->views);
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

/* Plans every node. The engine sends only nodes supports_op accepted
 * (engine/sched.c plans the CPU fallbacks); any other is an error. */
static elm_status plan_nodes(vk_backend *vk, const be_graph *g, vk_plan *plan) {
    for (int i = 0, used = 1; i < g->n_nodes; i += used) {
        const be_node *nd = &g->nodes[i];
        uint32_t n_disp = plan->n_disp;
        vk_planner p = {.vk = vk, .plan = plan, .exact = g->exact, .node_index = i};
        elm_status st = elmi_vk_fuse_plan(&p, g, i, &used);
        if (st == ELM_OK && used == 0) {
            used = 1;
            st = elmi_vk_plan_node(&p, nd);
        } else if (st == ELM_OK) {
            plan->n_fused += (uint32_t)used;
        }
        if (st == ELM_ERR_UNSUPPORTED) {
            return elmi_vk_fail(vk, st, "node %d (%s, '%.*s') cannot run on %s: %s", i, elmi_be_op_name(nd->op),
                                48, nd->dst ? nd->dst->name : "?", vk->info.name, p.why);
        } else if (st == ELM_OK && plan->n_disp > n_disp) {
            be_op label = p.label ? (be_op)(p.label - 1) : nd->op;
            for (uint32_t d = n_disp; d < plan->n_disp; d++) plan->disp[d].op = (uint8_t)label;
            st = add_gpu_step(vk, plan, n_disp);
        }
        if (st != ELM_OK) return st;
    }
    plan->n_nodes = g->n_nodes;
    return ELM_OK;
}

/* ----------------------------------------------------------- descriptors */

/* The texel views of a _tex dispatch (its first d->tex) at bindings
 * VK_BIND_TEX_*, appended to w; the plan owns the views. */
static elm_status texel_views(vk_backend *vk, vk_plan *plan, const vk_disp *d, VkWriteDescriptorSet *w,
                              uint32_t *n_w) {
    static const struct {
        uint32_t slot, binding;
        VkFormat fmt;
    } V[VK_N_TEX_FUSED] = {{0, VK_BIND_TEX_W, VK_FORMAT_R32G32B32A32_UINT},
                           {1, VK_BIND_TEX_X, VK_FORMAT_R32G32B32A32_SFLOAT},
                           {0, VK_BIND_TEX_W1, VK_FORMAT_R32_UINT},
                           {4, VK_BIND_TEX_M1, VK_FORMAT_R32G32B32A32_UINT},
                           {4, VK_BIND_TEX_M1W, VK_FORMAT_R32_UINT},
                           {5, VK_BIND_TEX_M2, VK_FORMAT_R32G32B32A32_UINT},
                           {5, VK_BIND_TEX_M2W, VK_FORMAT_R32_UINT},
                           {2, VK_BIND_TEX_NW, VK_FORMAT_R32G32B32A32_SFLOAT}};
    for (uint32_t i = 0; i < d->tex && i < VK_N_TEX_FUSED; i++) {
        const vk_bind *b = &d->b[V[i].slot];
        VkBufferViewCreateInfo vi = {
            .sType = VK_STRUCTURE_TYPE_BUFFER_VIEW_CREATE_INFO,
            .buffer = b->buf,
            .format = V[i].fmt,
            .offset = b->offset,
            .range = b->tex_range,
        };
        VkBufferView *v = &plan->views[plan->n_views];
        ELM_TRY(elmi_vk_check(vk, vkCreateBufferView(vk->dev, &vi, NULL, v), "vkCreateBufferView"));
        plan->n_views++;
        w[(*n_w)++] = (VkWriteDescriptorSet){
            .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
            .dstSet = d->set,
            .dstBinding = V[i].binding,
            .descriptorCount = 1,
            .descriptorType = VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER,
            .pTexelBufferView = v,
        };
    }
    return ELM_OK;
}

static elm_status write_sets(vk_backend *vk, vk_plan *plan) {
    if (plan->n_disp == 0) return ELM_OK;
    uint32_t n_slots = vk->caps.n_slots, n_tex = 0;
    for (uint32_t i = 0; i < plan->n_disp; i++) {
        n_tex += plan->disp[i].tex;
        vk->vstats.n_texel_dispatches += plan->disp[i].tex > 0;
    }
    if (n_tex) {
        plan->views = elmi_malloc(n_tex * sizeof *plan->views);
        if (!plan->views) return elmi_vk_fail(vk, ELM_ERR_NO_MEMORY, "out of host memory for texel views");
    }
    VkDescriptorPoolSize size[2] = {{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, plan->n_disp * (n_slots + 1)},
                                    {VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER, n_tex}};
    VkDescriptorPoolCreateInfo pci = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
        .maxSets = plan->n_disp,
        .poolSizeCount = n_tex ? 2 : 1,
        .pPoolSizes = size,
    };
    ELM_TRY(elmi_vk_check(vk, vkCreateDescriptorPool(vk->dev, &pci, NULL, &plan->pool), "vkCreateDescriptorPool"));
    for (uint32_t i = 0; i < plan->n_disp; i++) {
        vk_disp *d = &plan->disp[i];
        VkDescriptorSetAllocateInfo ai = {
            .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
            .descriptorPool = plan->pool,
            .descriptorSetCount = 1,
            .pSetLayouts = &vk->d->dsl,
        };
        ELM_TRY(elmi_vk_check(vk, vkAllocateDescriptorSets(vk->dev, &ai, &d->set), "vkAllocateDescriptorSets"));
        VkDescriptorBufferInfo bi[VK_N_BIND + 1];
        VkWriteDescriptorSet w[VK_N_BIND + 1 + VK_N_TEX_FUSED];
        for (uint32_t b = 0; b <= n_slots; b++) {
            bi[b] = b < n_slots ? (VkDescriptorBufferInfo){d->b[b].buf, d->b[b].offset, d->b[b].range}
                                : (VkDescriptorBufferInfo){plan->dyn.buf, 0, VK_WHOLE_SIZE};
            w[b] = (VkWriteDescriptorSet){
                .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                .dstSet = d->set,
                .dstBinding = b < n_slots ? elmi_vk_slot_binding(b) : VK_BIND_DYN,
                .descriptorCount = 1,
                .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                .pBufferInfo = &bi[b],
            };
        }
        uint32_t n_w = n_slots + 1;
        ELM_TRY(texel_views(vk, plan, d, w, &n_w));
        vkUpdateDescriptorSets(vk->dev, n_w, w, 0, NULL);
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

static void record_dispatches(vk_backend *vk, vk_plan *plan, const vk_step *s,
                              VkCommandBuffer cmd, hazards *h) {
    VkPipeline bound = VK_NULL_HANDLE;
    for (uint32_t i = s->d0; i < s->d1; i++) {
        vk_disp *d = &plan->disp[i];
        d->barrier = needs_barrier(h, d);
        if (d->barrier) {
            memory_barrier(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT,
                           VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, SHADER_RW);
            h->n_r = h->n_w = 0;
            vk->vstats.n_barriers++;
        }
        track(h, d);
        if (d->pipe != bound) vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, bound = d->pipe);
        vkCmdBindDescriptorSets(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, vk->d->layout, 0, 1, &d->set, 0, NULL);
        vkCmdPushConstants(cmd, vk->d->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof d->pc, d->pc);
        vkCmdDispatch(cmd, d->groups[0], d->groups[1], d->groups[2]);
        elmi_vk_profile_stamp(plan, s, cmd, i);
        vk->vstats.n_dispatches++;
    }
}

static elm_status record_step(vk_backend *vk, vk_plan *plan, vk_step *s, hazards *h) {
    VkCommandBufferAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = vk->cmd_pool,
        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
        .commandBufferCount = 1,
    };
    ELM_TRY(elmi_vk_check(vk, vkAllocateCommandBuffers(vk->dev, &ai, &s->cmd), "vkAllocateCommandBuffers"));
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    ELM_TRY(elmi_vk_check(vk, vkBeginCommandBuffer(s->cmd, &bi), "vkBeginCommandBuffer"));
    elmi_vk_profile_begin(plan, s, s->cmd);
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

/* Splits GPU steps longer than plan->max_disp dispatches (submit bound). */
static elm_status split_steps(vk_backend *vk, vk_plan *plan) {
    uint32_t max = plan->max_disp, n = 0;
    if (!max) return ELM_OK;
    for (uint32_t i = 0; i < plan->n_steps; i++) {
        const vk_step *s = &plan->steps[i];
        n += (s->d1 - s->d0 + max - 1) / max;
    }
    if (n == plan->n_steps) return ELM_OK;
    vk_step *out = elmi_calloc(n, sizeof *out);
    if (!out) return elmi_vk_fail(vk, ELM_ERR_NO_MEMORY, "out of host memory");
    uint32_t k = 0;
    for (uint32_t i = 0; i < plan->n_steps; i++) {
        const vk_step *s = &plan->steps[i];
        for (uint32_t d = s->d0; d < s->d1; d += max)
            out[k++] = (vk_step){.d0 = d, .d1 = s->d1 - d > max ? d + max : s->d1};
    }
    elmi_free(plan->steps);
    plan->steps = out;
    plan->n_steps = plan->cap_steps = n;
    return ELM_OK;
}

static elm_status record_all(vk_backend *vk, vk_plan *plan) {
    ELM_TRY(split_steps(vk, plan));
    if (plan->qpool) vkDestroyQueryPool(vk->dev, plan->qpool, NULL);
    plan->qpool = VK_NULL_HANDLE;
    ELM_TRY(elmi_vk_profile_plan(vk, plan));
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
    plan->profiled = vk->prof_on;
    ELM_TRY(plan_nodes(vk, g, plan));
    vk->vstats.n_fused_nodes += plan->n_fused;
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
    if (elmi_vk_lost(vk)) return elmi_vk_fail(vk, ELM_ERR_DEVICE, "the device was lost earlier");
    return ELM_OK;
}

elm_status elmi_vk_graph_prepare(vk_backend *vk, const be_graph *g, vk_plan **out) {
    elm_status st = check_graph(vk, g);
    if (st != ELM_OK) return st;
    keybuf k = {0};
    if (!graph_key(vk, g, &k)) {
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

/* A plan whose submit ran over the bound: its command buffers again, with
 * the steps split to plan->max_disp dispatches. */
static elm_status rerecord(vk_backend *vk, vk_plan *plan) {
    for (uint32_t i = 0; i < plan->n_steps; i++)
        if (plan->steps[i].cmd) vkFreeCommandBuffers(vk->dev, vk->cmd_pool, 1, &plan->steps[i].cmd);
    for (uint32_t i = 0; i < plan->n_steps; i++) plan->steps[i].cmd = VK_NULL_HANDLE;
    plan->resplit = false;
    return record_all(vk, plan);
}

/* Sizes later submits of the plan from this one's device time: the step's
 * dispatches are assumed to cost alike, so a step of n that took ms is cut
 * to n * bound / ms per submit (at least one). */
static void note_submit(vk_backend *vk, vk_plan *plan, const vk_step *s, double ms) {
    uint32_t n = s->d1 - s->d0;
    if (vk->submit_ms <= 0 || ms <= vk->submit_ms || n < 2) return;
    double fit = floor((double)n * vk->submit_ms / ms);
    uint32_t max = fit < 1 ? 1 : (uint32_t)fit;
    if (max >= n) max = n - 1;
    if (plan->max_disp == 0 || max < plan->max_disp) {
        plan->max_disp = max;
        plan->resplit = true;
    }
}

static elm_status run_step(vk_backend *vk, const be_graph *g, vk_plan *plan, const vk_step *s) {
    (void)g;
    double t0 = elmi_vk_now_ms();
    elm_status st = elmi_vk_submit_wait(vk, s->cmd, "graph submit");
    vk->vstats.n_submits++;
    if (st != ELM_OK) return st;
    double ms = elmi_vk_profile_step(vk, plan, s, elmi_vk_now_ms() - t0);
    note_submit(vk, plan, s, ms);
    return ELM_OK;
}

elm_status elmi_vk_graph_compute(vk_backend *vk, const be_graph *g) {
    vk_plan *plan;
    uint64_t records = vk->vstats.n_records;
    ELM_TRY(elmi_vk_graph_prepare(vk, g, &plan));
    if (plan->resplit) ELM_TRY(rerecord(vk, plan));
    ELM_TRY(write_dyn(vk, g, plan));
    if (vk->vstats.n_records == records && plan->n_disp) vk->vstats.n_replays++;
    uint64_t validation0 = atomic_load(&vk->d->validation_errors);
    vk->in_graph = true;
    elm_status st = ELM_OK;
    for (uint32_t i = 0; st == ELM_OK && i < plan->n_steps; i++) st = run_step(vk, g, plan, &plan->steps[i]);
    vk->in_graph = false;
    if (st != ELM_OK) return st;
    uint64_t validation = atomic_load(&vk->d->validation_errors) - validation0;
    if (validation > 0)
        return elmi_vk_fail(vk, ELM_ERR_INTERNAL, "the Vulkan validation layer reported %llu error(s) (see stderr)",
                            (unsigned long long)validation);
    if (plan->profiled) elmi_vk_profile_graph(vk, g);
    if (vk->fault_op >= 0) ELM_TRY(elmi_vk_fault_op_apply(vk, g));
    vk->stats.n_graphs++;
    vk->stats.n_nodes += (uint64_t)plan->n_nodes;
    return ELM_OK;
}
