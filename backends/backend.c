#include "backends/backend.h"

const char *elmi_be_op_name(be_op op) {
    static const char *const names[BE_OP_COUNT] = {
        [BE_OP_GET_ROWS] = "get_rows", [BE_OP_RMS_NORM] = "rms_norm",
        [BE_OP_MUL_MAT] = "mul_mat",   [BE_OP_ADD] = "add",
        [BE_OP_ROPE] = "rope",         [BE_OP_KV_STORE] = "kv_store",
        [BE_OP_ATTENTION] = "attention", [BE_OP_GLU] = "glu",
        [BE_OP_ARGMAX] = "argmax",     [BE_OP_SCALE] = "scale",
        [BE_OP_SHORTCONV] = "shortconv", [BE_OP_MUL] = "mul",
        [BE_OP_SOFTMAX] = "softmax",
    };
    return (unsigned)op < BE_OP_COUNT && names[op] ? names[op] : "unknown";
}

#include <stdio.h>
#include <string.h>

#include "quant/quant.h"

/* backend.h cannot include quant.h; the two type ids meet here. */
_Static_assert(BE_TYPE_I32 == QT_I32, "BE_TYPE_I32 must be quant.h's QT_I32");

bool elmi_be_tensor_init(be_tensor *t, int type, int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3,
                    const char *name) {
    memset(t, 0, sizeof *t);
    t->type = type;
    t->ne[0] = ne0;
    t->ne[1] = ne1;
    t->ne[2] = ne2;
    t->ne[3] = ne3;
    size_t row;
    if (type == BE_TYPE_I32) {
        row = (size_t)ne0 * 4;
        t->nb[0] = 4;
    } else {
        const qtype_traits *tr = elmi_qtype_get(type);
        if (!tr || !elmi_qtype_row_bytes(type, ne0, &row)) return false;
        t->nb[0] = tr->type_size;
    }
    t->nb[1] = row;
    t->nb[2] = t->nb[1] * (size_t)ne1;
    t->nb[3] = t->nb[2] * (size_t)ne2;
    snprintf(t->name, sizeof t->name, "%s", name ? name : "");
    return true;
}

size_t elmi_be_tensor_nbytes(const be_tensor *t) {
    return t->nb[3] * (size_t)t->ne[3];
}

int64_t elmi_be_tensor_nelements(const be_tensor *t) {
    return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
}

/* Rows of an attention node's caches its queries read: positions
 * [lo, pos + T) of the last query, capped by the cache. */
static uint64_t attended_rows(const be_node *nd) {
    int64_t T = nd->src[0]->ne[2], pos = nd->iparams[0], window = nd->iparams[2];
    int64_t rows = pos + T, cap = nd->src[1]->ne[1];
    if (window > 0 && rows > window + T - 1) rows = window + T - 1;
    if (rows > cap) rows = cap;
    return rows > 0 ? (uint64_t)rows : 0;
}

uint64_t elmi_be_node_bytes(const be_node *nd) {
    uint64_t bytes = 0;
    if (nd->dst && nd->op == BE_OP_KV_STORE && nd->src[0])
        bytes += (uint64_t)nd->src[0]->ne[1] * nd->dst->nb[1]; /* the rows stored */
    else if (nd->dst)
        bytes += elmi_be_tensor_nbytes(nd->dst);
    for (int s = 0; s < BE_MAX_SRC; s++) {
        const be_tensor *t = nd->src[s];
        if (!t) continue;
        if (nd->op == BE_OP_ATTENTION && (s == 1 || s == 2))
            bytes += attended_rows(nd) * t->nb[1];
        else if (nd->op == BE_OP_GET_ROWS && s == 0 && nd->src[1])
            bytes += (uint64_t)nd->src[1]->ne[0] * t->nb[1]; /* the rows gathered */
        else
            bytes += elmi_be_tensor_nbytes(t);
    }
    return bytes;
}

void elmi_be_profile_add(be_profile *acc, const be_profile *src) {
    for (int i = 0; i < BE_OP_COUNT; i++) {
        be_profile_op *a = &acc->op[i];
        const be_profile_op *s = &src->op[i];
        a->ms += s->ms;
        a->bytes += s->bytes;
        a->n_nodes += s->n_nodes;
        a->n_dispatches += s->n_dispatches;
        a->n_barriers += s->n_barriers;
    }
    acc->n_graphs += src->n_graphs;
    acc->n_submits += src->n_submits;
    acc->timestamps = acc->timestamps || src->timestamps;
}
