/* profile.c: per-dispatch timing (profile_enable / profile_read of
 * backend.h) and the op fault hook (EDGELM_VK_FAULT_OP).
 *
 * A profiled plan is recorded apart from the plain one (the profiling flag
 * is part of the plan key), with a timestamp before each GPU step's first
 * dispatch and one after every dispatch, so the plain command buffers stay
 * free of queries. Dispatch i of a step is charged the ticks between the
 * timestamp before it and the one after it: a barrier's wait goes to the
 * dispatch after it. */
#include <math.h>
#include <string.h>
#include <time.h>

#include "backends/vulkan/vk_internal.h"
#include "common/alloc.h"

double elmi_vk_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

elm_status elmi_vk_profile_plan(vk_backend *vk, vk_plan *plan) {
    if (!plan->profiled || !vk->caps.timestamp_bits || plan->n_disp == 0) return ELM_OK;
    uint32_t n = plan->n_disp + plan->n_steps;
    VkQueryPoolCreateInfo qci = {.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
                                 .queryType = VK_QUERY_TYPE_TIMESTAMP,
                                 .queryCount = n};
    return elmi_vk_check(vk, vkCreateQueryPool(vk->dev, &qci, NULL, &plan->qpool), "vkCreateQueryPool");
}

void elmi_vk_profile_begin(const vk_plan *plan, vk_step *s, VkCommandBuffer cmd) {
    if (!plan->qpool) return;
    /* Steps are recorded in order; the queries follow the dispatches plus
     * one per step before it. */
    uint32_t before = (uint32_t)(s - plan->steps);
    s->q0 = s->d0 + before;
    vkCmdResetQueryPool(cmd, plan->qpool, s->q0, s->d1 - s->d0 + 1);
    vkCmdWriteTimestamp(cmd, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, plan->qpool, s->q0);
}

void elmi_vk_profile_stamp(const vk_plan *plan, const vk_step *s, VkCommandBuffer cmd, uint32_t i) {
    if (plan->qpool)
        vkCmdWriteTimestamp(cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, plan->qpool, s->q0 + 1 + (i - s->d0));
}

/* Ticks of the step's queries into ms per dispatch; false without them. */
static bool read_stamps(vk_backend *vk, const vk_plan *plan, const vk_step *s, double *ms) {
    uint32_t n = s->d1 - s->d0 + 1;
    uint64_t *ts = elmi_malloc(n * sizeof *ts);
    if (!ts) return false;
    bool ok = vkGetQueryPoolResults(vk->dev, plan->qpool, s->q0, n, n * sizeof *ts, ts, sizeof *ts,
                                    VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT) == VK_SUCCESS;
    uint64_t mask = vk->caps.timestamp_bits >= 64 ? ~0ull : (1ull << vk->caps.timestamp_bits) - 1;
    for (uint32_t i = 0; ok && i + 1 < n; i++)
        ms[i] = (double)((ts[i + 1] - ts[i]) & mask) * vk->caps.timestamp_period / 1e6;
    elmi_free(ts);
    return ok;
}

double elmi_vk_profile_step(vk_backend *vk, const vk_plan *plan, const vk_step *s, double wall_ms) {
    uint32_t n = s->d1 - s->d0;
    if (!plan->profiled || n == 0) return wall_ms;
    double *ms = elmi_calloc(n, sizeof *ms), total = 0;
    bool stamped = ms && plan->qpool && read_stamps(vk, plan, s, ms);
    for (uint32_t i = 0; i < n; i++) {
        const vk_disp *d = &plan->disp[s->d0 + i];
        be_profile_op *o = &vk->prof.op[d->op < BE_OP_COUNT ? d->op : 0];
        /* Without timestamps the step's wall time is shared evenly. */
        double t = stamped ? ms[i] : wall_ms / n;
        o->ms += t;
        o->n_dispatches++;
        o->n_barriers += d->barrier;
        total += t;
    }
    vk->prof.timestamps = vk->prof.timestamps || stamped;
    vk->prof.n_submits++;
    elmi_free(ms);
    return stamped ? total : wall_ms;
}

void elmi_vk_profile_graph(vk_backend *vk, const be_graph *g) {
    for (int i = 0; i < g->n_nodes; i++) {
        const be_node *nd = &g->nodes[i];
        be_profile_op *o = &vk->prof.op[(unsigned)nd->op < BE_OP_COUNT ? nd->op : 0];
        o->n_nodes++;
        o->bytes += elmi_be_node_bytes(nd);
    }
    vk->prof.n_graphs++;
}

elm_status elmi_vk_profile_enable(be_backend *be, bool on) {
    vk_backend *vk = vk_of(be);
    vk->prof_on = on;
    memset(&vk->prof, 0, sizeof vk->prof);
    return ELM_OK;
}

void elmi_vk_profile_read(be_backend *be, be_profile *acc) {
    vk_backend *vk = vk_of(be);
    if (acc) elmi_be_profile_add(acc, &vk->prof);
    memset(&vk->prof, 0, sizeof vk->prof);
}

/* ---------------------------------------------------------- fault hook */

/* The first value of each F32 result gains 1e30, so any comparison with a
 * reference fails loudly; only after the whole graph ran, so it reaches no
 * later node: it shows where the op's result is a graph's output (the
 * self-check compares the last node's). */
elm_status elmi_vk_fault_op_apply(vk_backend *vk, const be_graph *g) {
    for (int i = 0; i < g->n_nodes; i++) {
        const be_node *nd = &g->nodes[i];
        const be_tensor *t = nd->dst;
        if ((int)nd->op != vk->fault_op || !t || !t->buf || t->type != 0 /* F32 */) continue;
        float v;
        ELM_TRY(elmi_vk_buffer_read(vk, t->buf, t->offs, &v, sizeof v));
        v = isfinite(v) ? v + 1e30f : 1e30f;
        ELM_TRY(elmi_vk_buffer_write(vk, t->buf, t->offs, &v, sizeof v));
    }
    return ELM_OK;
}
