/* attention.c: causal grouped-query attention over an F32 or F16 KV cache.
 *
 * A work item is one token and a run of query heads that share a KV head,
 * so those heads read each K and V tile while it is in cache. F16 rows are
 * converted in registers by the dot and mad kernels. The cache is walked in
 * tiles of TILE rows with an online softmax (running max m, running sum l): per
 * tile, the scores' new max rescales what was accumulated so far, so the
 * scratch stays small whatever the context length. Items never depend on
 * how heads are grouped, so results are the same for any thread count.
 */
#include <math.h>

#include "backends/cpu/ops.h"
#include "quant/quant.h"

#define TILE 64

typedef struct attn_shape {
    int64_t head_dim, n_head, n_head_kv, n_tok, pos;
    int64_t group;    /* query heads per KV head */
    int64_t chunk;    /* query heads per work item */
    int64_t n_chunks; /* per KV head */
} attn_shape;

static attn_shape get_shape(const be_node *nd, int nth) {
    const be_tensor *q = nd->src[0];
    attn_shape s = {
        .head_dim = q->ne[0],
        .n_head = q->ne[1],
        .n_tok = q->ne[2],
        .n_head_kv = nd->iparams[1],
        .pos = nd->iparams[0],
    };
    s.group = s.n_head / s.n_head_kv;
    /* Split groups only when there are fewer (token, KV head) pairs than
     * threads, as in decoding. */
    int64_t pairs = s.n_tok * s.n_head_kv, splits = 1;
    if (pairs < nth) splits = (nth + pairs - 1) / pairs;
    if (splits > s.group) splits = s.group;
    s.chunk = (s.group + splits - 1) / splits;
    s.n_chunks = (s.group + s.chunk - 1) / s.chunk;
    return s;
}

/* One thread's scratch, in floats. */
typedef struct attn_scratch {
    float *q, *acc, *score, *m, *l;
} attn_scratch;

static size_t scratch_floats(const attn_shape *s) {
    return (size_t)s->chunk * (2 * s->head_dim + TILE + 2);
}

static size_t thread_stride(const attn_shape *s) {
    return cpu_align_up(scratch_floats(s) * sizeof(float));
}

size_t cpu_attention_work_size(const be_node *node, int nth) {
    attn_shape s = get_shape(node, nth);
    return thread_stride(&s) * (size_t)nth;
}

static attn_scratch carve(const attn_shape *s, void *work, int ith) {
    float *p = (float *)((char *)work + thread_stride(s) * (size_t)ith);
    attn_scratch w;
    size_t qd = (size_t)s->chunk * s->head_dim;
    w.q = p, w.acc = p + qd, w.score = p + 2 * qd;
    w.m = w.score + (size_t)s->chunk * TILE;
    w.l = w.m + s->chunk;
    return w;
}

/* One KV head's slice of cache row j (F32 or F16). */
static const void *cache_row(const be_tensor *c, int64_t j, int64_t kvh, int64_t head_dim) {
    size_t elem = c->type == QT_F16 ? 2 : 4;
    return (const char *)cpu_row(c, j, 0, 0) + (size_t)(kvh * head_dim) * elem;
}

/* Scores of one head against cache rows [j0, j0 + n) of K, folded into its
 * running softmax: leaves exp(score - m) in score[] and rescales acc and l
 * to the new max. */
static void fold_scores(const be_tensor *K, int64_t kvh, int64_t j0, int64_t n, const float *q,
                        int64_t head_dim, float *score, float *m, float *l, float *acc) {
    cpu_vec_dot_rows(K->type, q, cache_row(K, j0, kvh, head_dim), K->nb[1], n, head_dim, score);
    float tile_max = -INFINITY;
    for (int64_t j = 0; j < n; j++) tile_max = score[j] > tile_max ? score[j] : tile_max;
    float m_new = tile_max > *m ? tile_max : *m;
    if (m_new > *m) {
        float corr = expf(*m - m_new);
        *l *= corr;
        cpu_vec_scale_f32(acc, corr, head_dim);
        *m = m_new;
    }
    float sum = 0.0f;
    for (int64_t j = 0; j < n; j++) {
        score[j] = expf(score[j] - m_new);
        sum += score[j];
    }
    *l += sum;
}

static void attend(const be_node *nd, const attn_shape *s, attn_scratch *w, int64_t t, int64_t kvh,
                   int64_t h0, int64_t nh) {
    const be_tensor *K = nd->src[1], *V = nd->src[2];
    int64_t hd = s->head_dim, n_kv = s->pos + t + 1;
    for (int64_t c = 0; c < nh; c++) {
        const float *q = cpu_row(nd->src[0], h0 + c, t, 0);
        for (int64_t d = 0; d < hd; d++) w->q[c * hd + d] = q[d] * nd->fparams[0];
        for (int64_t d = 0; d < hd; d++) w->acc[c * hd + d] = 0.0f;
        w->m[c] = -INFINITY;
        w->l[c] = 0.0f;
    }
    for (int64_t j0 = 0; j0 < n_kv; j0 += TILE) {
        int64_t n = n_kv - j0 < TILE ? n_kv - j0 : TILE;
        for (int64_t c = 0; c < nh; c++)
            fold_scores(K, kvh, j0, n, w->q + c * hd, hd, w->score + c * TILE, &w->m[c], &w->l[c],
                        w->acc + c * hd);
        const void *v = cache_row(V, j0, kvh, hd);
        for (int64_t c = 0; c < nh; c++)
            cpu_vec_mad_rows(V->type, w->acc + c * hd, v, V->nb[1], w->score + c * TILE, n, hd);
    }
    float *out = cpu_row(nd->dst, t, 0, 0);
    for (int64_t c = 0; c < nh; c++)
        for (int64_t d = 0; d < hd; d++) out[(h0 + c) * hd + d] = w->acc[c * hd + d] / w->l[c];
}

void cpu_attention(const be_node *nd, void *work, int ith, int nth) {
    attn_shape s = get_shape(nd, nth);
    attn_scratch w = carve(&s, work, ith);
    int64_t per_tok = s.n_head_kv * s.n_chunks, u0, u1;
    cpu_split(s.n_tok * per_tok, ith, nth, &u0, &u1);
    for (int64_t u = u0; u < u1; u++) {
        int64_t t = u / per_tok, kvh = u % per_tok / s.n_chunks, ci = u % s.n_chunks;
        int64_t h0 = ci * s.chunk, nh = s.group - h0 < s.chunk ? s.group - h0 : s.chunk;
        attend(nd, &s, &w, t, kvh, kvh * s.group + h0, nh);
    }
}

static elm_status check_cache(const cpu_check *c, const be_tensor *t, const char *role,
                              int64_t n_embd_kv, int64_t n_end) {
    elm_status st = cpu_check_cache(c, t, role);
    if (st != ELM_OK) return st;
    if (t->ne[0] != n_embd_kv)
        return cpu_check_fail(c, ELM_ERR_INVALID_ARG, t, role,
                              "shape (%lld, %lld, %lld, %lld), expected rows of %lld",
                              (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                              (long long)t->ne[3], (long long)n_embd_kv);
    if (n_end > t->ne[1])
        return cpu_check_fail(c, ELM_ERR_INVALID_ARG, t, role,
                              "attends rows up to %lld of a cache of %lld", (long long)n_end,
                              (long long)t->ne[1]);
    return ELM_OK;
}

elm_status cpu_attention_check(const cpu_check *c) {
    const be_node *nd = c->node;
    const be_tensor *q = nd->src[0];
    elm_status st = cpu_check_tensor(c, q, "src0", QT_F32);
    if (st != ELM_OK) return st;
    if (q->ne[3] != 1) return cpu_check_fail(c, ELM_ERR_INVALID_ARG, q, "src0", "must be 3-D");
    int64_t n_head = q->ne[1], n_kv = nd->iparams[1], pos = nd->iparams[0];
    if (n_kv < 1 || n_head % n_kv != 0)
        return cpu_check_fail(c, ELM_ERR_INVALID_ARG, NULL, "iparams[1]",
                              "n_head_kv %lld does not divide n_head %lld", (long long)n_kv,
                              (long long)n_head);
    if (pos < 0)
        return cpu_check_fail(c, ELM_ERR_INVALID_ARG, NULL, "iparams[0]", "pos %lld",
                              (long long)pos);
    if (!isfinite(nd->fparams[0]))
        return cpu_check_fail(c, ELM_ERR_INVALID_ARG, NULL, "fparams[0]", "scale %g",
                              nd->fparams[0]);
    st = check_cache(c, nd->src[1], "src1", q->ne[0] * n_kv, pos + q->ne[2]);
    if (st == ELM_OK) st = check_cache(c, nd->src[2], "src2", q->ne[0] * n_kv, pos + q->ne[2]);
    if (st == ELM_OK) st = cpu_check_f32(c, nd->dst, "dst", q->ne[0] * n_head, q->ne[2], 1, 1);
    return st;
}
