/*
 * fuse.h: planning a run of nodes as fewer dispatches (fuse.c). At node i
 * of a graph, each fuser in turn may claim nodes [i, i + n) and plan them
 * as one or a few dispatches that leave every tensor those nodes would
 * leave, with the same values up to float rounding, except intermediates
 * no later node of the graph can observe (elmi_fuse_dead). A fuser that
 * does not apply sets *n = 0 and returns ELM_OK; one that returns
 * ELM_ERR_UNSUPPORTED is rolled back and the nodes are planned one by one.
 * Fusers run only when caps.fuse is set (12 storage buffers per stage, the
 * limits spec has no "nofuse") and only while planning (p->plan != NULL).
 */
#ifndef ELM_VK_FUSE_H
#define ELM_VK_FUSE_H

#include "backends/vulkan/ops_impl.h"

typedef elm_status (*elmi_fuser)(vk_planner *p, const be_graph *g, int i, int *n);

/* Plans nodes from i on as a fused group when a fuser applies; *n is the
 * number of nodes planned (0: none applies, plan node i alone). */
elm_status elmi_vk_fuse_plan(vk_planner *p, const be_graph *g, int i, int *n);

/* True when the bytes of t, which node `last` may have left, are written
 * over by some node after `last` before any node after it reads them, so
 * that a fused group ending at `last` need not write them. A tensor not in
 * a buffer, or one that reaches the end of the graph unwritten, is live. */
bool elmi_fuse_dead(const be_graph *g, int last, const be_tensor *t);

/* The byte extents of a and b intersect (both in one buffer). */
bool elmi_fuse_overlap(const be_tensor *a, const be_tensor *b);
/* Same tensor: type, buffer, offset, shape and strides. */
bool elmi_fuse_same(const be_tensor *a, const be_tensor *b);
/* Same bytes: buffer, offset and extent (views of one tensor with other
 * shapes, such as the (head_dim, n_head, T) view of a (n, T) row). */
bool elmi_fuse_same_bytes(const be_tensor *a, const be_tensor *b);

/* The fusers (fuse_matvec.c, op_rope_kv.c). */
elm_status elmi_fuse_matvec(vk_planner *p, const be_graph *g, int i, int *n);
elm_status elmi_fuse_rope_kv(vk_planner *p, const be_graph *g, int i, int *n);

#endif /* ELM_VK_FUSE_H */
