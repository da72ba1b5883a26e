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
