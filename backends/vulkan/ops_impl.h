/*
 * ops_impl.h: shared by the op planners (ops.c, ops_matmul.c) and their
 * helpers (ops_util.c). Planning turns one node into dispatches: a shader
 * variant with specialization constants, byte windows bound at bindings
 * 0..3, push constants and workgroup counts, all within the (possibly
 * emulated) device limits. What cannot fit returns ELM_ERR_UNSUPPORTED
 * with p->why set, and the node runs on the CPU.
 */
#ifndef ELM_VK_OPS_IMPL_H
#define ELM_VK_OPS_IMPL_H

#include "backends/vulkan/push_constants.h"
#include "backends/vulkan/vk_internal.h"

#define WG_DEFAULT 128u

/* Where a tensor's bytes are: one segment window, or a host weight's pieces. */
typedef struct tview {
    const vk_seg *seg;
    VkDeviceSize offs, extent; /* offs: byte of element 0 in seg */
    const vk_weight *w;
    int64_t w_rows_per_piece;  /* planning-only view of a weight not yet uploaded */
} tview;

/* Rows [r0, r0 + n) of a weight-like view, for one dispatch. */
typedef struct rows_piece {
    int64_t r0, n;
    const vk_seg *seg;
    VkDeviceSize offs; /* byte of row r0 in seg */
} rows_piece;

/* Walks a 2-D weight view in runs of rows that fit one binding (and at
 * most `most` rows), never crossing a host weight's pieces. */
typedef struct rows_iter {
    const tview *v;
    int64_t n_rows, fit, per_piece;
    size_t rb;
    int64_t r;
} rows_iter;

/* A dispatch under construction. */
typedef struct disp_build {
    vk_disp d;
    const char *shader;
    uint32_t spec[VK_MAX_SPEC], n_spec;
    uint32_t subgroup; /* required subgroup size (caps.sg_control), 0: the driver's */
} disp_build;

/* Specialization constant 7 of the shaders that read weights
 * (common/blocks.glsl's WSPLIT): set when the weights are in the split
 * layout. The constants between a shader's own and 7 are unused by those
 * shaders and filled with 0. Call after setting the shader's own. */
#define VK_SPEC_WSPLIT 7
#define VK_SPEC_WQUAD 8
void elmi_op_spec_split(disp_build *db, bool split);
/* Mat-vecs (plain and fused): whether every run of whole quads that the
 * chunk kernels read from rows of `type` at byte w_base, row_bytes apart,
 * is 16-byte aligned; then elmi_op_spec_wquad sets WQUAD. */
bool elmi_op_quad_runs(int type, bool split, uint32_t w_base, size_t row_bytes);
/* Whether a slot's window can be viewed as texels of texel_bytes each. */
bool elmi_op_texel_ok(const vk_caps *c, const vk_bind *b, uint32_t texel_bytes);
void elmi_op_spec_wquad(disp_build *db);

/* Outcomes: the device cannot run the node (p->why), or the node is malformed. */
elm_status elmi_op_unsupported(vk_planner *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
elm_status elmi_op_invalid(vk_planner *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Types: the shader suffix of a weight type with kernels ("q4_0"), or NULL;
 * the list is generated from ELM_VK_TYPES (cmake/vulkan.cmake). */
const char *elmi_op_type_suffix(int type);
bool elmi_op_row_bytes(int type, int64_t n, size_t *out);
size_t elmi_op_elem_bytes(int type);
/* Rows of n values are whole dequant4 groups. */
bool elmi_op_whole_groups(int type, int64_t n);

/* Views and bindings. */
elm_status elmi_op_resolve(vk_planner *p, const be_tensor *t, const char *role, tview *v);
/* Rows over dims 1..3 and their stride, when evenly spaced. */
bool elmi_op_flat_rows(const be_tensor *t, int64_t *rows, size_t *stride);
/* Bytes one window may span, leaving room for alignment slack. */
VkDeviceSize elmi_op_window_budget(const vk_planner *p);
/* Binds bytes [lo, hi) of a segment; *base is lo in `unit`s past the bound offset. */
elm_status elmi_op_bind(vk_planner *p, const vk_seg *seg, VkDeviceSize lo, VkDeviceSize hi,
                   uint32_t unit, vk_bind *b, uint32_t *base);
/* The same for bytes [lo, hi) of a tensor view, relative to its element 0. */
elm_status elmi_op_bind_view(vk_planner *p, const tview *v, VkDeviceSize lo, VkDeviceSize hi,
                        uint32_t unit, vk_bind *b, uint32_t *base);
bool elmi_op_rows_init(const vk_planner *p, const tview *v, int64_t n_rows, size_t rb, int64_t most,
                  rows_iter *it);
/* The most rows one run can have. */
int64_t elmi_op_rows_most(const rows_iter *it);
bool elmi_op_rows_next(rows_iter *it, rows_piece *out);
/* Tokens per dispatch so that window i, spanning (c - 1) * stride[i] +
 * width[i] bytes, fits; 0 when even one token does not. */
int64_t elmi_op_token_chunk(const vk_planner *p, int64_t T, const VkDeviceSize *stride,
                       const VkDeviceSize *width, int n);

/* Dispatches. */
void elmi_op_disp_init(vk_planner *p, disp_build *db);
/* Workgroups for n items on x then y, and z. */
elm_status elmi_op_set_groups(vk_planner *p, disp_build *db, uint64_t n, uint64_t z);
/* Creates the pipeline and appends the dispatch (nothing when only asking). */
elm_status elmi_op_emit(vk_planner *p, disp_build *db, const void *pc, size_t pc_bytes);

/* Workgroup sizes and reductions. */
uint32_t elmi_op_wg_size(const vk_planner *p, uint32_t want); /* power of two within limits */
uint32_t elmi_op_nsg(const vk_planner *p, uint32_t wg);        /* subgroup slots of reduce.glsl */
bool elmi_op_use_sg(const vk_planner *p);
const char *elmi_op_storage(const vk_planner *p);              /* "s16" or "u32" */
uint32_t elmi_op_reduce_shared(const vk_planner *p, uint32_t wg);
/* The largest workgroup from `want` down whose reduction and `extra_shared`
 * bytes fit shared memory; 0 when none does. */
uint32_t elmi_op_reduce_wg(const vk_planner *p, uint32_t want, uint32_t extra_shared);

/* Checks. */
elm_status elmi_op_check_f32(vk_planner *p, const be_tensor *t, const char *role);
bool elmi_op_same_shape(const be_tensor *a, const be_tensor *b);

/* Checks shared by the planners of ops.c and the fusers (op_rope_kv.c):
 * a ROPE node's shapes and its push constants other than bases and strides;
 * a KV_STORE node's shapes, and whether an F16 cache is written as words. */
elm_status elmi_op_rope_check(vk_planner *p, const be_node *nd, pc_rope *pc);
elm_status elmi_op_kv_check(vk_planner *p, const be_node *nd, bool *words);

/* The planners of ops_matmul.c. */
/* MUL_MAT's shape and type checks alone (no planning). */
elm_status elmi_op_mul_mat_check(vk_planner *p, const be_node *nd);
/* The mat-vec workgroup size and rows per workgroup, for `sets` row sets
 * reduced at once plus `extra` reduce.glsl buffers in shared memory. */
bool elmi_op_mv_shape(const vk_planner *p, uint32_t sets, uint32_t extra, uint32_t *wg, uint32_t *rows);
/* Rows per lane group of the texel mat-vecs on CPU devices for nt tokens
 * per workgroup (one token: a lane per that many rows), or 0 where the
 * general shape applies (ops_matmul.c). */
uint32_t elmi_op_mv_lane_rows(const vk_planner *p, int type, uint32_t nt);
/* The mat-vec variant suffix for weights of `type`: "_idot" (activations
 * quantized to 8 bits, integer dot products) in fast graphs where
 * vk_caps.mv_idot allows and the type has the variant, else "". */
const char *elmi_op_mv_dot(const vk_planner *p, int type);
elm_status elmi_op_plan_get_rows(vk_planner *p, const be_node *nd);
elm_status elmi_op_plan_mul_mat(vk_planner *p, const be_node *nd);
/* ops_attention.c */
elm_status elmi_op_plan_attention(vk_planner *p, const be_node *nd);
/* op_argmax.c */
elm_status elmi_op_plan_argmax(vk_planner *p, const be_node *nd);
/* op_shortconv.c */
elm_status elmi_op_plan_shortconv(vk_planner *p, const be_node *nd);

#endif /* ELM_VK_OPS_IMPL_H */
