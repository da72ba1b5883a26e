/* attention.c: causal grouped-query attention over an F32 or F16 KV cache,
 * with an optional sliding window, ring cache and score softcap.
 *
 * A work item is one token and a run of query heads that share a KV head,
 * so those heads read each K and V tile while it is in cache. F16 rows are
 * converted in registers by the dot and mad kernels. The cache is walked in
 * tiles of TILE rows with an online softmax (running max m, running sum l): per
 * tile, the scores' new max rescales what was accumulated so far, so the
 * scratch stays small whatever the context length. Items never depend on
 * how heads are grouped, so results are the same for any thread count.
 *
 * A query at position p reads key positions [lo, p] only (lo > 0 with a
 * window, so the cost is bounded by the window), tile by tile from lo; in a
 * ring cache a tile also ends where the rows wrap, so each tile is one run
 * of consecutive rows (elmi_cpu_attn_run).
 */
#include <math.h>

#include "backends/cpu/ops.h"
#include "backends/cpu/vec_dot.h"
#include "common/status.h"
#include "quant/quant.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ATT_X86 1
#else
#define ATT_X86 0
#endif

#define TILE 64         /* cache rows per step; a multiple of 8 */
#define SIMD_HEADS 8    /* query heads the SIMD path scores per pass over a tile */
#define SIMD_MAX_HD 256 /* head_dim limit of the SIMD path (a multiple of 8) */

typedef struct attn_shape {
    int64_t head_dim, n_head, n_head_kv, n_tok, pos;
    int64_t window, n_rows; /* window 0: none; n_rows: of a ring cache, else 0 */
    float softcap;
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
        .window = nd->iparams[2],
        .n_rows = nd->iparams[3] ? nd->src[1]->ne[1] : 0,
        .softcap = nd->fparams[1],
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

size_t elmi_cpu_attention_work_size(const be_node *node, int nth) {
    if (elmi_cpu_attention_batch_applies(node)) return elmi_cpu_attention_batch_work_size(node, nth);
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

int64_t elmi_cpu_attn_lo(int64_t p, int64_t window) {
    return window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
}

int64_t elmi_cpu_attn_run(int64_t j0, int64_t end, int64_t tile, int64_t ring_rows,
                          int64_t *row0) {
    int64_t n = end - j0 < tile ? end - j0 : tile;
    *row0 = j0;
    if (ring_rows > 0) {
        *row0 = j0 % ring_rows;
        if (n > ring_rows - *row0) n = ring_rows - *row0;
    }
    return n;
}

void elmi_cpu_softmax_fold(float *score, int64_t n, float *m, float *l, float *acc, int64_t hd) {
    float tile_max = -INFINITY; /* exact: any order gives the same value */
    for (int64_t j = 0; j < n; j++) tile_max = score[j] > tile_max ? score[j] : tile_max;
    if (tile_max > *m) {
        float corr = expf(*m - tile_max);
        *l *= corr;
        elmi_cpu_vec_scale_f32(acc, corr, hd);
        *m = tile_max;
    }
    *l += elmi_cpu_vec_exp_sum_f32(score, score, *m, n);
}

/* Scores of one head against cache rows [r0, r0 + n) of K, softcapped when
 * cap > 0, folded into its running softmax. */
static void fold_scores(const be_tensor *K, int64_t kvh, int64_t r0, int64_t n, const float *q,
                        int64_t head_dim, float cap, float *score, float *m, float *l,
                        float *acc) {
    elmi_cpu_vec_dot_rows(K->type, q, cache_row(K, r0, kvh, head_dim), K->nb[1], n, head_dim, score);
    if (cap > 0.0f) elmi_cpu_vec_scale_softcap_f32(score, score, 1.0f, cap, n);
    elmi_cpu_softmax_fold(score, n, m, l, acc, head_dim);
}

/* The scaled queries of heads h0.. (nh of them) of token t, and empty sums. */
static void begin_heads(const be_node *nd, const attn_shape *s, attn_scratch *w, int64_t t,
                        int64_t h0, int64_t nh) {
    const int64_t hd = s->head_dim;
    for (int64_t c = 0; c < nh; c++) {
        const float *q = cpu_row(nd->src[0], h0 + c, t, 0);
        for (int64_t d = 0; d < hd; d++) w->q[c * hd + d] = q[d] * nd->fparams[0];
        for (int64_t d = 0; d < hd; d++) w->acc[c * hd + d] = 0.0f;
        w->m[c] = -INFINITY;
        w->l[c] = 0.0f;
    }
}

static void end_heads(const be_node *nd, const attn_shape *s, const attn_scratch *w, int64_t t,
                      int64_t h0, int64_t nh) {
    const int64_t hd = s->head_dim;
    float *out = cpu_row(nd->dst, t, 0, 0);
    for (int64_t c = 0; c < nh; c++)
        for (int64_t d = 0; d < hd; d++) out[(h0 + c) * hd + d] = w->acc[c * hd + d] / w->l[c];
}

static void attend(const be_node *nd, const attn_shape *s, attn_scratch *w, int64_t t, int64_t kvh,
                   int64_t h0, int64_t nh) {
    const be_tensor *K = nd->src[1], *V = nd->src[2];
    int64_t hd = s->head_dim, end = s->pos + t + 1, r0;
    begin_heads(nd, s, w, t, h0, nh);
    for (int64_t j0 = elmi_cpu_attn_lo(end - 1, s->window), n; j0 < end; j0 += n) {
        n = elmi_cpu_attn_run(j0, end, TILE, s->n_rows, &r0);
        for (int64_t c = 0; c < nh; c++)
            fold_scores(K, kvh, r0, n, w->q + c * hd, hd, s->softcap, w->score + c * TILE,
                        &w->m[c], &w->l[c], w->acc + c * hd);
        const void *v = cache_row(V, r0, kvh, hd);
        for (int64_t c = 0; c < nh; c++)
            elmi_cpu_vec_mad_rows(V->type, w->acc + c * hd, v, V->nb[1], w->score + c * TILE, n, hd);
    }
    end_heads(nd, s, w, t, h0, nh);
}

#if ATT_X86
/*
 * The SIMD path (AVX2 + FMA + F16C), for head_dim a multiple of 8. The heads
 * of a work item share each pass over a tile: every K and V row is
 * converted to F32 once, in registers, and used by all of them.
 *  - scores: per (row, head) two 8-lane FMA chains over head_dim; eight
 *    rows' partial vectors are then reduced together (hsum8), each lane from
 *    its own row only;
 *  - softmax: vector exp (elmi_cpu_vec_exp_sum_f32);
 *  - values: acc[head] += p[head][row] * V[row], 8 lanes at a time.
 * Each head's arithmetic is the same whichever heads share its item, so the
 * results do not depend on the grouping, hence not on the thread count.
 */
#define ATT_TGT __attribute__((target("avx2,fma,f16c")))
#define ATT_INLINE static inline __attribute__((always_inline))

ATT_TGT ATT_INLINE __m256 ld8(const char *row, bool f16, int64_t i) {
    if (f16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * i)));
    return _mm256_loadu_ps((const float *)row + i);
}

/* Lane k: the sum of the 8 lanes of v[k], in a fixed order. */
ATT_TGT ATT_INLINE __m256 hsum8(const __m256 *v) {
    __m256 t0 = _mm256_hadd_ps(v[0], v[1]), t1 = _mm256_hadd_ps(v[2], v[3]);
    __m256 t2 = _mm256_hadd_ps(v[4], v[5]), t3 = _mm256_hadd_ps(v[6], v[7]);
    __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20),
                         _mm256_permute2f128_ps(u0, u1, 0x31));
}

/* score[c * TILE + j] = q_c . K row j, for j < n and c < nh (<= SIMD_HEADS). */
ATT_TGT ATT_INLINE void simd_scores(const char *K, size_t stride, bool f16, int64_t hd,
                                    const float *q, int nh, int64_t n, float *score) {
    __m256 kv[SIMD_MAX_HD / 8];
    for (int64_t j0 = 0; j0 < n; j0 += 8) {
        __m256 part[SIMD_HEADS][8];
        int m = n - j0 < 8 ? (int)(n - j0) : 8;
        for (int jj = 0; jj < 8; jj++) {
            if (jj >= m) {
                for (int c = 0; c < nh; c++) part[c][jj] = _mm256_setzero_ps();
                continue;
            }
            const char *row = K + (size_t)(j0 + jj) * stride;
#pragma GCC unroll 32
            for (int64_t i = 0; i < hd / 8; i++) kv[i] = ld8(row, f16, 8 * i);
            for (int c = 0; c < nh; c++) {
                const float *qc = q + c * hd;
                __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
                int64_t i = 0;
#pragma GCC unroll 16
                for (; i + 2 <= hd / 8; i += 2) {
                    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qc + 8 * i), kv[i], a0);
                    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(qc + 8 * i + 8), kv[i + 1], a1);
                }
                if (i < hd / 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qc + 8 * i), kv[i], a0);
                part[c][jj] = _mm256_add_ps(a0, a1);
            }
        }
        for (int c = 0; c < nh; c++) _mm256_storeu_ps(score + c * TILE + j0, hsum8(part[c]));
    }
}

/* acc[c * hd ..] += score[c * TILE + j] * V row j, for j < n and c < nh. */
ATT_TGT ATT_INLINE void simd_values(const char *V, size_t stride, bool f16, int64_t hd, int nh,
                                    int64_t n, const float *score, float *acc) {
    __m256 vv[SIMD_MAX_HD / 8];
    for (int64_t j = 0; j < n; j++) {
        const char *row = V + (size_t)j * stride;
#pragma GCC unroll 32
        for (int64_t i = 0; i < hd / 8; i++) vv[i] = ld8(row, f16, 8 * i);
        for (int c = 0; c < nh; c++) {
            const __m256 p = _mm256_set1_ps(score[c * TILE + j]);
            float *a = acc + c * hd;
#pragma GCC unroll 32
            for (int64_t i = 0; i < hd / 8; i++)
                _mm256_storeu_ps(a + 8 * i, _mm256_fmadd_ps(p, vv[i], _mm256_loadu_ps(a + 8 * i)));
        }
    }
}

/* One tile for nh heads: scores (softcapped when cap > 0), the online
 * softmax update, the values. */
ATT_TGT ATT_INLINE void simd_tile(const char *K, size_t ks, const char *V, size_t vs, bool f16,
                                  int64_t hd, const float *q, int nh, int64_t n, float cap,
                                  float *score, float *m, float *l, float *acc) {
    simd_scores(K, ks, f16, hd, q, nh, n, score);
    for (int c = 0; c < nh; c++) {
        float *sc = score + c * TILE;
        if (cap > 0.0f) elmi_cpu_vec_scale_softcap_f32(sc, sc, 1.0f, cap, n);
        elmi_cpu_softmax_fold(sc, n, &m[c], &l[c], acc + c * hd, hd);
    }
    simd_values(V, vs, f16, hd, nh, n, score, acc);
}

ATT_TGT static void simd_tile_64(const char *K, size_t ks, const char *V, size_t vs, bool f16,
                                 const float *q, int nh, int64_t n, float cap, float *score,
                                 float *m, float *l, float *acc) {
    simd_tile(K, ks, V, vs, f16, 64, q, nh, n, cap, score, m, l, acc);
}

ATT_TGT static void simd_tile_any(const char *K, size_t ks, const char *V, size_t vs, bool f16,
                                  int64_t hd, const float *q, int nh, int64_t n, float cap,
                                  float *score, float *m, float *l, float *acc) {
    simd_tile(K, ks, V, vs, f16, hd, q, nh, n, cap, score, m, l, acc);
}
#endif

static bool use_simd(const be_node *nd, int64_t head_dim) {
#if ATT_X86
    cpu_simd lv = elmi_cpu_simd_active();
    return (lv == CPU_SIMD_AVX2 || lv == CPU_SIMD_AVX512VNNI) && head_dim % 8 == 0 &&
           head_dim <= SIMD_MAX_HD && nd->src[1]->type == nd->src[2]->type;
#else
    (void)nd;
    (void)head_dim;
    return false;
#endif
}

#if ATT_X86
/* attend() on the SIMD path: the same online softmax, tile by tile. */
static void attend_simd(const be_node *nd, const attn_shape *s, attn_scratch *w, int64_t t,
                        int64_t kvh, int64_t h0, int64_t nh) {
    const be_tensor *K = nd->src[1], *V = nd->src[2];
    int64_t hd = s->head_dim, end = s->pos + t + 1, lo = elmi_cpu_attn_lo(end - 1, s->window), r0;
    bool f16 = K->type == QT_F16;
    size_t elem = f16 ? 2 : 4;
    begin_heads(nd, s, w, t, h0, nh);
    for (int64_t c0 = 0; c0 < nh; c0 += SIMD_HEADS) {
        int hb = nh - c0 < SIMD_HEADS ? (int)(nh - c0) : SIMD_HEADS;
        float *q = w->q + c0 * hd, *acc = w->acc + c0 * hd;
        for (int64_t j0 = lo, n; j0 < end; j0 += n) {
            n = elmi_cpu_attn_run(j0, end, TILE, s->n_rows, &r0);
            const char *k = (const char *)cpu_row(K, r0, 0, 0) + (size_t)(kvh * hd) * elem;
            const char *v = (const char *)cpu_row(V, r0, 0, 0) + (size_t)(kvh * hd) * elem;
            if (hd == 64)
                simd_tile_64(k, K->nb[1], v, V->nb[1], f16, q, hb, n, s->softcap, w->score,
                             w->m + c0, w->l + c0, acc);
            else
                simd_tile_any(k, K->nb[1], v, V->nb[1], f16, hd, q, hb, n, s->softcap, w->score,
                              w->m + c0, w->l + c0, acc);
        }
    }
    end_heads(nd, s, w, t, h0, nh);
}
#endif

void elmi_cpu_attention(const be_node *nd, void *work, int ith, int nth) {
    if (elmi_cpu_attention_batch_applies(nd)) {
        elmi_cpu_attention_batch(nd, work, ith, nth);
        return;
    }
    attn_shape s = get_shape(nd, nth);
    attn_scratch w = carve(&s, work, ith);
    bool simd = use_simd(nd, s.head_dim);
    (void)simd; /* no SIMD path on this architecture */
    int64_t per_tok = s.n_head_kv * s.n_chunks, u0, u1;
    elmi_cpu_split(s.n_tok * per_tok, ith, nth, &u0, &u1);
    for (int64_t u = u0; u < u1; u++) {
        int64_t t = u / per_tok, kvh = u % per_tok / s.n_chunks, ci = u % s.n_chunks;
        int64_t h0 = ci * s.chunk, nh = s.group - h0 < s.chunk ? s.group - h0 : s.chunk;
#if ATT_X86
        if (simd) {
            attend_simd(nd, &s, &w, t, kvh, kvh * s.group + h0, nh);
            continue;
        }
#endif
        attend(nd, &s, &w, t, kvh, kvh * s.group + h0, nh);
    }
}

static elm_status check_cache(const cpu_check *c, const be_tensor *t, const char *role,
                              int64_t n_embd_kv, int64_t n_end, bool ring) {
    ELM_TRY(elmi_cpu_check_cache(c, t, role));
    if (t->ne[0] != n_embd_kv)
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, t, role,
                              "shape (%lld, %lld, %lld, %lld), expected rows of %lld",
                              (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                              (long long)t->ne[3], (long long)n_embd_kv);
    if (n_end > t->ne[1] && ring)
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, t, role,
                                   "a ring of %lld rows is smaller than window + T - 1 = %lld",
                                   (long long)t->ne[1], (long long)n_end);
    if (n_end > t->ne[1])
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, t, role,
                              "attends rows up to %lld of a cache of %lld", (long long)n_end,
                              (long long)t->ne[1]);
    return ELM_OK;
}

static elm_status check_params(const cpu_check *c) {
    const be_node *nd = c->node;
    int64_t pos = nd->iparams[0], window = nd->iparams[2], ring = nd->iparams[3];
    if (pos < 0)
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, NULL, "iparams[0]", "pos %lld",
                              (long long)pos);
    if (window < 0)
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, NULL, "iparams[2]", "window %lld",
                                   (long long)window);
    if (ring != 0 && ring != 1)
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, NULL, "iparams[3]", "ring %lld (0 or 1)",
                                   (long long)ring);
    if (ring && window == 0)
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, NULL, "iparams[3]",
                                   "a ring cache needs a window (iparams[2])");
    if (!isfinite(nd->fparams[0]))
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, NULL, "fparams[0]", "scale %g",
                              nd->fparams[0]);
    float cap = nd->fparams[1];
    if (!isfinite(cap) || cap < 0.0f)
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, NULL, "fparams[1]", "softcap %g", cap);
    return ELM_OK;
}

elm_status elmi_cpu_attention_check(const cpu_check *c) {
    const be_node *nd = c->node;
    const be_tensor *q = nd->src[0];
    ELM_TRY(elmi_cpu_check_tensor(c, q, "src0", QT_F32));
    if (q->ne[3] != 1) return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, q, "src0", "must be 3-D");
    int64_t n_head = q->ne[1], n_kv = nd->iparams[1], T = q->ne[2];
    if (n_kv < 1 || n_head % n_kv != 0)
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, NULL, "iparams[1]",
                              "n_head_kv %lld does not divide n_head %lld", (long long)n_kv,
                              (long long)n_head);
    ELM_TRY(check_params(c));
    /* Rows the batch needs: positions up to pos + T, or, in a ring, the
     * window + T - 1 newest positions at once. */
    bool ring = nd->iparams[3] == 1;
    int64_t need = ring ? (int64_t)nd->iparams[2] + T - 1 : (int64_t)nd->iparams[0] + T;
    ELM_TRY(check_cache(c, nd->src[1], "src1", q->ne[0] * n_kv, need, ring));
    ELM_TRY(check_cache(c, nd->src[2], "src2", q->ne[0] * n_kv, need, ring));
    if (ring && nd->src[1]->ne[1] != nd->src[2]->ne[1])
        return elmi_cpu_check_fail(c, ELM_ERR_INVALID_ARG, nd->src[2], "src2",
                                   "%lld rows, the K cache has %lld", (long long)nd->src[2]->ne[1],
                                   (long long)nd->src[1]->ne[1]);
    return elmi_cpu_check_f32(c, nd->dst, "dst", q->ne[0] * n_head, q->ne[2], 1, 1);
}
