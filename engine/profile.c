/* profile.c: elm_context_profile_enable / elm_context_profile. */
#include <stdio.h>
#include <string.h>

#include "common/abi.h"
#include "common/status.h"
#include "engine/internal.h"

void elmi_profile_after_pass(elm_context *ctx, uint32_t n) {
    if (!ctx->prof.on || !ctx->be->iface->profile_read) return;
    int ph = n == 1 ? ELM_PROFILE_DECODE : ELM_PROFILE_PROMPT;
    ctx->be->iface->profile_read(ctx->be, &ctx->prof.phase[ph]);
    ctx->prof.n_tokens[ph] += n;
}

elm_status elm_context_profile_enable(elm_context *ctx, bool on) {
    if (!ctx || !ctx->be) return ELM_ERR_INVALID_ARG;
    const be_iface *bi = ctx->be->iface;
    if (!bi->profile_enable || !bi->profile_read)
        return elmi_ctx_error(ctx, ELM_ERR_UNSUPPORTED, "the %s backend cannot profile", bi->name);
    ELM_TRY(bi->profile_enable(ctx->be, on));
    if (on) memset(&ctx->prof, 0, sizeof ctx->prof);
    ctx->prof.on = on;
    return ELM_OK;
}

static void summarize(const elm_context *ctx, int ph, elm_profile *s) {
    const be_profile *p = &ctx->prof.phase[ph];
    *s = (elm_profile){.struct_size = sizeof *s};
    s->n_passes = p->n_graphs;
    s->n_tokens = ctx->prof.n_tokens[ph];
    s->n_submits = p->n_submits;
    s->n_layer = ctx->model->hp.n_layer;
    s->timestamps = p->timestamps;
    for (int i = 0; i < BE_OP_COUNT; i++) {
        s->ms += p->op[i].ms;
        s->n_dispatches += p->op[i].n_dispatches;
        s->n_barriers += p->op[i].n_barriers;
    }
}

/* The op kinds that ran, the slowest first. */
static size_t ops_by_time(const be_profile *p, int *order) {
    size_t n = 0;
    for (int i = 0; i < BE_OP_COUNT; i++) {
        if (!p->op[i].n_nodes) continue;
        size_t k = n++;
        while (k > 0 && p->op[order[k - 1]].ms < p->op[i].ms) {
            order[k] = order[k - 1];
            k--;
        }
        order[k] = i;
    }
    return n;
}

elm_status elm_context_profile(const elm_context *ctx, elm_profile_phase phase, elm_profile *summary,
                               elm_profile_op *ops, size_t cap, size_t *n_ops) {
    if (!ctx || (phase != ELM_PROFILE_PROMPT && phase != ELM_PROFILE_DECODE) || (cap && !ops) ||
        (cap && ops[0].struct_size < ELMI_MIN_PROFILE_OP))
        return ELM_ERR_INVALID_ARG;
    if (summary) {
        elm_profile s;
        summarize(ctx, (int)phase, &s);
        if (!elmi_struct_out(summary, &s, sizeof s, ELMI_MIN_PROFILE)) return ELM_ERR_INVALID_ARG;
    }
    const be_profile *p = &ctx->prof.phase[phase];
    int order[BE_OP_COUNT];
    size_t n = ops_by_time(p, order), stride = cap ? ops[0].struct_size : 0;
    for (size_t i = 0; i < n && i < cap; i++) {
        const be_profile_op *o = &p->op[order[i]];
        elm_profile_op r = {.struct_size = sizeof r, .ms = o->ms, .bytes = o->bytes, .n_nodes = o->n_nodes,
                            .n_dispatches = o->n_dispatches, .n_barriers = o->n_barriers};
        snprintf(r.op, sizeof r.op, "%s", elmi_be_op_name((be_op)order[i]));
        elm_profile_op *dst = (elm_profile_op *)((unsigned char *)ops + i * stride);
        dst->struct_size = stride;
        elmi_struct_out(dst, &r, sizeof r, ELMI_MIN_PROFILE_OP);
    }
    if (n_ops) *n_ops = n;
    return ELM_OK;
}
