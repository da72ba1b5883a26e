/* fuse.c: the fusers' table and what they share (see fuse.h). */
#include <string.h>

#include "backends/vulkan/fuse.h"

static const elmi_fuser fusers[] = {
    elmi_fuse_matvec,
    elmi_fuse_rope_kv,
};

elm_status elmi_vk_fuse_plan(vk_planner *p, const be_graph *g, int i, int *n) {
    *n = 0;
    if (!p->plan || !p->vk->caps.fuse) return ELM_OK;
    vk_plan *plan = p->plan;
    for (size_t f = 0; f < sizeof fusers / sizeof *fusers; f++) {
        uint32_t n_disp = plan->n_disp, n_dyn = plan->n_dyn;
        p->why[0] = '\0';
        elm_status st = fusers[f](p, g, i, n);
        if (st == ELM_OK && *n > 0) return ELM_OK;
        /* Not this one: drop whatever it had appended. */
        plan->n_disp = n_disp;
        plan->n_dyn = n_dyn;
        *n = 0;
        if (st != ELM_OK && st != ELM_ERR_UNSUPPORTED) return st;
    }
    p->why[0] = '\0';
    return ELM_OK;
}

static bool extent(const be_tensor *t, VkDeviceSize *lo, VkDeviceSize *hi) {
    VkDeviceSize e;
    if (!t || !t->buf || !elmi_vk_tensor_extent(t, &e)) return false;
    *lo = t->offs;
    *hi = t->offs + e;
    return true;
}

bool elmi_fuse_overlap(const be_tensor *a, const be_tensor *b) {
    VkDeviceSize al, ah, bl, bh;
    if (!a || !b || a->buf != b->buf || !extent(a, &al, &ah) || !extent(b, &bl, &bh)) return false;
    return al < bh && bl < ah;
}

static bool covers(const be_tensor *a, const be_tensor *b) {
    VkDeviceSize al, ah, bl, bh;
    if (!a || !b || a->buf != b->buf || !extent(a, &al, &ah) || !extent(b, &bl, &bh)) return false;
    /* Only dense writes count: a strided view may skip bytes inside its extent. */
    VkDeviceSize dense = (VkDeviceSize)elmi_be_tensor_nbytes(a);
    return ah - al == dense && al <= bl && bh <= ah;
}

bool elmi_fuse_dead(const be_graph *g, int last, const be_tensor *t) {
    if (!t || !t->buf) return false;
    for (int j = last + 1; j < g->n_nodes; j++) {
        const be_node *nd = &g->nodes[j];
        for (int s = 0; s < BE_MAX_SRC; s++)
            if (elmi_fuse_overlap(nd->src[s], t)) return false;
        /* KV_STORE and SHORTCONV write only some rows of their dst/state. */
        if (nd->op != BE_OP_KV_STORE && covers(nd->dst, t)) return true;
    }
    return false;
}

bool elmi_fuse_same(const be_tensor *a, const be_tensor *b) {
    return a && b && a->type == b->type && a->buf == b->buf && a->offs == b->offs && a->data == b->data &&
           !memcmp(a->ne, b->ne, sizeof a->ne) && !memcmp(a->nb, b->nb, sizeof a->nb);
}

bool elmi_fuse_same_bytes(const be_tensor *a, const be_tensor *b) {
    VkDeviceSize al, ah, bl, bh;
    if (!a || !b || a->type != b->type || a->buf != b->buf || !extent(a, &al, &ah) || !extent(b, &bl, &bh))
        return false;
    return al == bl && ah == bh && elmi_be_tensor_nbytes(a) == elmi_be_tensor_nbytes(b);
}
