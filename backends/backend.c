#include "backends/backend.h"

const char *be_op_name(be_op op) {
    static const char *const names[BE_OP_COUNT] = {
        [BE_OP_GET_ROWS] = "get_rows", [BE_OP_RMS_NORM] = "rms_norm",
        [BE_OP_MUL_MAT] = "mul_mat",   [BE_OP_ADD] = "add",
        [BE_OP_ROPE] = "rope",         [BE_OP_KV_STORE] = "kv_store",
        [BE_OP_ATTENTION] = "attention", [BE_OP_SWIGLU] = "swiglu",
    };
    return (unsigned)op < BE_OP_COUNT && names[op] ? names[op] : "unknown";
}
