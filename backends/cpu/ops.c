/* ops.c: the element-wise and row ops of the CPU backend (GET_ROWS,
 * RMS_NORM, ADD, MUL, SOFTMAX, GLU, SCALE, KV_STORE, SHORTCONV) and the
 * per-node dispatch. */
#include <math.h>
#include <string.h>

#include "backends/cpu/ops.h"
#include "quant/quant.h"

/* Below this many values a row is not worth cutting between threads. */
#define MIN_PIECE 1024

static int64_t n_rows(const be_tensor *t) {
    return t->ne[1] * t->ne[2] * t->ne[3];
}

/* Row r of a tensor, counting rows over dims 1..3. */
static void *flat_row(const be_tensor *t, int64_t r) {
    int64_t i1 = r % t->ne[1];
    r /= t->ne[1];
    return cpu_row(t, i1, r % t->ne[2], r / t->ne[2]);
}

/* Element-wise work of `rows` rows of n values, cut into units of one row
 * piece each, so that a single row (decoding) still spreads over threads. */
typedef struct piece_split {
    int64_t pieces; /* per row */
    int64_t u0, u1; /* this thread's units */
} piece_split;

static piece_split split_pieces(int64_t rows, int64_t n, int ith, int nth) {
    piece_split s = {.pieces = 1};
    if (rows < nth) {
        int64_t want = (nth + rows - 1) / rows, most = (n + MIN_PIECE - 1) / MIN_PIECE;
        s.pieces = want < most ? want : most;
        if (s.pieces < 1) s.pieces = 1;
    }
    elmi_cpu_split(rows * s.pieces, ith, nth, &s.u0, &s.u1);
    return s;
}

/* Column bound of piece p of n values; multiples of 16 keep SIMD loads whole. */
static int64_t piece_bound(int64_t n, int64_t p, int64_t pieces) {
    return p == pieces ? n : (n * p / pieces) & ~(int64_t)15;
}

static void compute_add(const be_node *nd, int ith, int nth) {
    const be_tensor *a = nd->src[0], *b = nd->src[1], *d = nd->dst;
    int64_t n = a->ne[0];
    piece_split s = split_pieces(n_rows(a), n, ith, nth);
    for (int64_t u = s.u0; u < s.u1; u++) {
        int64_t r = u / s.pieces, p = u % s.pieces;
        int64_t c0 = piece_bound(n, p, s.pieces), c1 = piece_bound(n, p + 1, s.pieces);
        float *z = (float *)flat_row(d, r) + c0;
        elmi_cpu_vec_add_f32(z, (const float *)flat_row(a, r) + c0, (const float *)flat_row(b, r) + c0,
                        c1 - c0);
    }
}

/* src1 is either src0's shape or one row broadcast over every row. */
static void compute_mul(const be_node *nd, int ith, int nth) {
    const be_tensor *a = nd->src[0], *b = nd->src[1], *d = nd->dst;
    int64_t n = a->ne[0];
    bool bcast = n_rows(b) == 1;
    piece_split s = split_pieces(n_rows(a), n, ith, nth);
    for (int64_t u = s.u0; u < s.u1; u++) {
        int64_t r = u / s.pieces, p = u % s.pieces;
        int64_t c0 = piece_bound(n, p, s.pieces), c1 = piece_bound(n, p + 1, s.pieces);
        const float *x = flat_row(a, r), *y = flat_row(b, bcast ? 0 : r);
        float *z = flat_row(d, r);
        for (int64_t i = c0; i < c1; i++) z[i] = x[i] * y[i];
    }
}

/* One thread per row, like RMS_NORM: results do not depend on the threads. */
static void compute_softmax(const be_node *nd, int ith, int nth) {
    const be_tensor *a = nd->src[0], *d = nd->dst;
    int64_t n = a->ne[0], r0, r1;
    elmi_cpu_split(n_rows(a), ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        float *z = flat_row(d, r);
        elmi_cpu_vec_scale_to_f32(z, flat_row(a, r), nd->fparams[0], n);
        float m = -INFINITY;
        for (int64_t i = 0; i < n; i++) m = z[i] > m ? z[i] : m;
        float sum = elmi_cpu_vec_exp_sum_f32(z, z, m, n);
        elmi_cpu_vec_scale_f32(z, 1.0f / sum, n);
    }
}

static void compute_glu(const be_node *nd, int ith, int nth) {
    const be_tensor *a = nd->src[0], *b = nd->src[1], *d = nd->dst;
    int64_t n = a->ne[0];
    bool gelu = nd->iparams[0] == BE_GLU_GELU_TANH;
    piece_split s = split_pieces(n_rows(a), n, ith, nth);
    for (int64_t u = s.u0; u < s.u1; u++) {
        int64_t r = u / s.pieces, p = u % s.pieces;
        int64_t c0 = piece_bound(n, p, s.pieces), c1 = piece_bound(n, p + 1, s.pieces);
        const float *x = flat_row(a, r), *g = flat_row(b, r);
        float *z = flat_row(d, r);
        if (gelu)
            elmi_cpu_vec_geglu_f32(z + c0, x + c0, g + c0, c1 - c0);
        else
            elmi_cpu_vec_swiglu_f32(z + c0, x + c0, g + c0, c1 - c0);
    }
}

static void compute_scale(const be_node *nd, int ith, int nth) {
    const be_tensor *a = nd->src[0], *d = nd->dst;
    int64_t n = a->ne[0];
    float s = nd->fparams[0], cap = nd->fparams[1];
    piece_split sp = split_pieces(n_rows(a), n, ith, nth);
    for (int64_t u = sp.u0; u < sp.u1; u++) {
        int64_t r = u / sp.pieces, p = u % sp.pieces;
        int64_t c0 = piece_bound(n, p, sp.pieces), c1 = piece_bound(n, p + 1, sp.pieces);
        const float *x = (const float *)flat_row(a, r) + c0;
        float *z = (float *)flat_row(d, r) + c0;
        if (cap > 0.0f)
            elmi_cpu_vec_scale_softcap_f32(z, x, s, cap, c1 - c0);
        else
            elmi_cpu_vec_scale_to_f32(z, x, s, c1 - c0);
    }
}

/* One thread per row: the sum of squares stays in one fixed order whatever
 * the thread count, so results do not depend on it. */
static void compute_rms_norm(const be_node *nd, int ith, int nth) {
    const be_tensor *a = nd->src[0], *d = nd->dst;
    const float *w = nd->src[1]->data;
    int64_t n = a->ne[0], r0, r1;
    elmi_cpu_split(n_rows(a), ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        const float *x = flat_row(a, r);
        double mean = (double)elmi_cpu_vec_dot_f32(x, x, n) / (double)n;
        float scale = (float)(1.0 / sqrt(mean + (double)nd->fparams[0]));
        elmi_cpu_vec_scale_mul_f32(flat_row(d, r), x, scale, w, n);
    }
}

void elmi_cpu_add_rms_norm(const be_node *add, const be_node *norm, int ith, int nth) {
    const be_tensor *a = add->src[0], *b = add->src[1], *s = add->dst, *d = norm->dst;
    const float *w = norm->src[1]->data;
    int64_t n = a->ne[0], r0, r1;
    elmi_cpu_split(n_rows(a), ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        float *x = flat_row(s, r);
        elmi_cpu_vec_add_f32(x, flat_row(a, r), flat_row(b, r), n);
        double mean = (double)elmi_cpu_vec_dot_f32(x, x, n) / (double)n;
        float scale = (float)(1.0 / sqrt(mean + (double)norm->fparams[0]));
        elmi_cpu_vec_scale_mul_f32(flat_row(d, r), x, scale, w, n);
    }
}

static void dequantize_row(int type, const void *src, float *dst, int64_t n) {
    if (type == QT_F32) {
        memcpy(dst, src, (size_t)n * sizeof(float));
    } else if (type == QT_F16) {
        elmi_cpu_fp16_to_f32_row(src, dst, n);
    } else if (type == QT_BF16) {
        const uint16_t *h = src;
        for (int64_t i = 0; i < n; i++) dst[i] = elmi_bf16_to_f32(h[i]);
    } else {
        elmi_qtype_get(type)->to_float(src, dst, n);
    }
}

static void compute_get_rows(const be_node *nd, int ith, int nth) {
    const be_tensor *table = nd->src[0], *d = nd->dst;
    const int32_t *ids = nd->src[1]->data;
    int64_t t0, t1;
    elmi_cpu_split(d->ne[1], ith, nth, &t0, &t1);
    for (int64_t t = t0; t < t1; t++)
        dequantize_row(table->type, cpu_row(table, ids[t], 0, 0), cpu_row(d, t, 0, 0),
                       table->ne[0]);
}

static void compute_kv_store(const be_node *nd, int ith, int nth) {
    const be_tensor *src = nd->src[0], *cache = nd->dst;
    int64_t n = src->ne[0], t0, t1;
    elmi_cpu_split(src->ne[1], ith, nth, &t0, &t1);
    for (int64_t t = t0; t < t1; t++) {
        const float *x = cpu_row(src, t, 0, 0);
        void *y = cpu_row(cache, elmi_cpu_kv_row(nd, cache, t), 0, 0);
        if (cache->type == QT_F16)
            elmi_cpu_f32_to_fp16_row(x, y, n);
        else
            memmove(y, x, (size_t)n * sizeof(float));
    }
}

int64_t elmi_cpu_kv_row(const be_node *store, const be_tensor *cache, int64_t t) {
    int64_t p = (int64_t)store->iparams[0] + t;
    return store->iparams[1] ? p % cache->ne[1] : p;
}

/* Thread ith's channels, every token: each channel's ring rows and outputs
 * belong to one thread, so the tokens of the batch depend on each other
 * only within it. Each output is the same float chain (taps in order) as
 * with one token per call. */
static void compute_shortconv(const be_node *nd, int ith, int nth) {
    const be_tensor *bcx = nd->src[0], *st = nd->src[2], *d = nd->dst;
    const float *w = nd->src[1]->data;
    const int64_t n = d->ne[0], T = d->ne[1], L = nd->src[1]->ne[0], rows = st->ne[1];
    const int64_t pos = nd->iparams[0];
    int64_t i0, i1;
    elmi_cpu_split(n, ith, nth, &i0, &i1);
    if (i0 == i1) return;
    for (int64_t t = 0; t < T; t++) {
        const float *col = cpu_row(bcx, t, 0, 0);
        float *bx = cpu_row(st, (pos + t) % rows, 0, 0);
        for (int64_t i = i0; i < i1; i++) bx[i] = col[i] * col[2 * n + i];
    }
    for (int64_t t = 0; t < T; t++) {
        const float *c = (const float *)cpu_row(bcx, t, 0, 0) + n;
        float *out = cpu_row(d, t, 0, 0);
        int64_t first = pos + t - (L - 1), k0 = first < 0 ? -first : 0; /* taps before 0 read 0 */
        const float *tap[SHORTCONV_MAX_L];
        for (int64_t k = k0; k < L; k++) tap[k] = cpu_row(st, (first + k) % rows, 0, 0);
        for (int64_t i = i0; i < i1; i++) {
            float acc = 0.0f;
            for (int64_t k = k0; k < L; k++) acc += w[i * L + k] * tap[k][i];
            out[i] = c[i] * acc;
        }
    }
}

size_t elmi_cpu_op_work_size(const be_node *node, int nth) {
    return node->op == BE_OP_ATTENTION ? elmi_cpu_attention_work_size(node, nth) : 0;
}

void elmi_cpu_op_compute(const be_node *node, void *work, int ith, int nth) {
    switch (node->op) {
    case BE_OP_GET_ROWS: compute_get_rows(node, ith, nth); break;
    case BE_OP_RMS_NORM: compute_rms_norm(node, ith, nth); break;
    case BE_OP_ADD: compute_add(node, ith, nth); break;
    case BE_OP_MUL: compute_mul(node, ith, nth); break;
    case BE_OP_SOFTMAX: compute_softmax(node, ith, nth); break;
    case BE_OP_GLU: compute_glu(node, ith, nth); break;
    case BE_OP_SCALE: compute_scale(node, ith, nth); break;
    case BE_OP_SHORTCONV: compute_shortconv(node, ith, nth); break;
    case BE_OP_ROPE: elmi_cpu_rope(node, ith, nth); break;
    case BE_OP_KV_STORE: compute_kv_store(node, ith, nth); break;
    case BE_OP_ATTENTION: elmi_cpu_attention(node, work, ith, nth); break;
    case BE_OP_ARGMAX: elmi_cpu_argmax(node, ith, nth); break;
    default: break; /* MUL_MAT runs through elmi_cpu_mul_mat; others fail the check */
    }
}
