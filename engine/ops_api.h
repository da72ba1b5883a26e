/* ops_api.h: the objects behind include/edgelm_ops.h, shared by
 * ops_api.c (devices, buffers, tensors, graphs) and ops_api_ops.c (the
 * ops and their checks). */
#ifndef ELM_ENGINE_OPS_API_H
#define ELM_ENGINE_OPS_API_H

#include "edgelm_ops.h"
#include "engine/internal.h"

struct elm_dev {
    be_backend *be;
    elm_sched sched; /* runs graphs on be, with CPU fallback nodes */
    char id[32];
    char last_error[ELM_ERR_LEN];
};

struct elm_dev_buffer {
    elm_dev *dev;
    be_buffer *b;
    size_t size;
    void *host;  /* the device's host mapping of byte 0, or NULL */
};

/* One op with copies of its tensor descriptions: t[0] the destination,
 * t[1 + i] source i. The node's pointers are set when the op runs, since
 * a graph's records move as it grows. */
typedef struct op_rec {
    be_node nd;
    be_tensor t[1 + BE_MAX_SRC];
    bool used[1 + BE_MAX_SRC];
} op_rec;

struct elm_op_graph {
    elm_dev *dev;
    bool exact;
    op_rec *recs;
    be_node *nodes;  /* (cap) the nodes handed to the backend */
    size_t n, cap;
};

/* Formats the device's last error and returns st. dev may be NULL. */
elm_status elmi_ops_fail(elm_dev *dev, elm_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Checks a public tensor description and converts it into rec->t[slot]
 * (slot 0 the destination, which must be in a buffer). */
elm_status elmi_ops_tensor(elm_dev *dev, const char *op, const char *role,
                           const elm_op_tensor *t, bool dst, be_tensor *out);

/* Runs rec at once (graph NULL) or appends it to the graph. */
elm_status elmi_ops_submit(elm_dev *dev, elm_op_graph *graph, op_rec *rec);

#endif
