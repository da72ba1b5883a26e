/*
 * matmul.c: dst (N, T) = w (K, N) x x (K, T) + bias on the thread pool.
 *
 * Paths, chosen per weight type, SIMD level and token count:
 *  - fast mode, quantized weights with tiled kernels at the active level
 *    (gemm.h: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q6_K at AVX-512 VNNI and
 *    AVX2), T >= GEMM_MIN_T: the int8 tiles. Each thread quantizes and packs
 *    whole token groups, a barrier, then chunks of 32-row panels: per range
 *    of blocks (GEMM_KC_BYTES of panel) the panel is repacked once and every
 *    token group passes over it; the next panel's weights are prefetched
 *    meanwhile. Results: the reference vec_dot's, bit for bit.
 *  - fast mode, F32/F16/BF16 weights, T >= SGEMM_MIN_T: the exact mode's
 *    sgemm tiles on the activations rounded to the vec_dot_type (same
 *    products as the dot kernels, summed in sgemm's order).
 *  - fast mode otherwise: the dot kernels (one token per call or a few),
 *    rows in chunks; they are the same tiled kernels for the types above.
 *  - exact mode: rows dequantized (gemm.h's SIMD dequantizers, identical to
 *    to_float), then one F32 dot per row for T == 1, or fixed tiles of
 *    EXACT_TILE_ROWS rows (by absolute row index), each one sgemm call.
 *
 * Determinism: every output element is computed by the same code on the
 * same operands whatever the thread count or chunking. Fast mode: a
 * (row, token) result does not depend on how rows and tokens are grouped
 * (vec_dot.h, gemm.h), except with F32/F16/BF16 weights, where T >=
 * SGEMM_MIN_T takes sgemm's summation order.
 *
 * The choice (numbers and machine: docs/measurements.md, "CPU matrix
 * products"): the int8 tiles for every quantized type that has them, from
 * T = GEMM_MIN_T, since they beat the dot kernels and dequantize + sgemm at
 * VNNI and AVX2 alike; sgemm for float weights from T = SGEMM_MIN_T, where
 * it overtakes the dot kernels; GEMM_KC_BYTES of panel per K range, the
 * best prompt speed overall of the sizes tried.
 *
 * Each mode runs as one elmi_tp_run per product. Small activations are quantized
 * by the caller instead of the threads, which costs less than a barrier.
 *
 * OpenBLAS is Debian's serial build (docs/openblas.md): it starts no threads
 * of its own, but it is not reentrant (its buffer pool has no lock), so the
 * workers take turns on blas_lock for each sgemm tile while dequantizing
 * their next tiles in parallel. Every tile is the same call whatever the
 * thread count, so results stay independent of it.
 */
#include "backends/cpu/matmul.h"

#include <cblas.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "backends/cpu/gemm.h"
#include "backends/cpu/vec_dot.h"
#include "common/status.h"
#include "quant/quant.h"

#define ALIGN 64
#define EXACT_TILE_ROWS 64
#define MIN_CHUNK_ROWS 16
#define MAX_CHUNK_ROWS 256
#define CHUNKS_PER_THREAD 8
#define SERIAL_QUANTIZE_MAX 8192 /* activation values */
#define ROW_GROUP 16
#ifndef GEMM_KC_BYTES
#define GEMM_KC_BYTES (32 * 1024) /* panel bytes per K range (docs/measurements.md) */
#endif
#define GEMM_MIN_T 2             /* tokens from which the tiled kernels run */
#define SGEMM_MIN_T 16           /* fast mode, float weights: tokens from which sgemm runs */

typedef struct mm_task {
    elm_threadpool *tp;
    int64_t K, N, T;
    const char *w; /* row r at w + r * w_stride */
    size_t w_stride;
    const char *x; /* token t at x + t * x_stride (F32) */
    size_t x_stride;
    char *dst; /* token t at dst + t * d_stride (F32) */
    size_t d_stride;
    const float *bias;      /* N floats or NULL */
    const qtype_traits *wt; /* weight type */
    const qtype_traits *vt; /* vec_dot_type (fast mode) */
    int w_type;
    qt_to_float_fn deq; /* exact: the SIMD dequantizer (bit-identical to to_float) */
    cpu_dot_fn dot; /* fast: weight x vec_dot_type; exact: F32 x F32 */
    cpu_quantize_fn quantize;
    char *act; /* activations as vec_dot_type rows, or x itself */
    size_t act_stride;
    bool quantize_x;
    char *scratch; /* exact: per-thread dequantization buffers */
    size_t scratch_bytes;
    /* tiled kernels (fast mode, several tokens) */
    const cpu_gemm *g;
    char *groups; /* the packed activation groups */
    size_t group_bytes;
    int64_t n_groups, kc; /* kc: blocks per panel */
    char *panels; /* per thread: a panel, then G activation rows */
    size_t panel_bytes;
    int64_t chunk_rows, n_chunks;
    _Atomic int64_t next_chunk;
} mm_task;

static size_t align_up(size_t v) { return (v + ALIGN - 1) / ALIGN * ALIGN; }

static bool weight_type_known(int t) {
    switch (t) {
    case QT_F32:
    case QT_F16:
    case QT_BF16:
    case QT_Q4_0:
    case QT_Q4_1:
    case QT_Q5_0:
    case QT_Q5_1:
    case QT_Q8_0:
    case QT_Q4_K:
    case QT_Q5_K:
    case QT_Q6_K: return true;
    default: return false;
    }
}

/* Traits of a weight type the kernels can run, or NULL. */
static const qtype_traits *weight_traits(int t) {
    if (!weight_type_known(t)) return NULL;
    const qtype_traits *tr = elmi_qtype_get(t);
    if (!tr || !tr->to_float || !tr->vec_dot || !cpu_vec_dot(t)) return NULL;
    if (!cpu_quantize(tr->vec_dot_type) && tr->vec_dot_type != QT_F32) return NULL;
    return tr;
}

bool elmi_cpu_mul_mat_supported(int weight_type) { return weight_traits(weight_type) != NULL; }

static bool is_matrix(const be_tensor *t) {
    return t->data && t->ne[0] > 0 && t->ne[1] > 0 && t->ne[2] == 1 && t->ne[3] == 1;
}

/* F32 rows of n floats with a float-aligned stride between `rows` rows. */
static bool f32_rows_ok(const be_tensor *t, int64_t n, int64_t rows) {
    if (t->type != QT_F32 || t->nb[0] != sizeof(float) || t->nb[1] % sizeof(float) != 0)
        return false;
    return rows == 1 || t->nb[1] >= (size_t)n * sizeof(float);
}

static elm_status check_shapes(const be_tensor *w, const be_tensor *x, const be_tensor *bias,
                               const be_tensor *dst, const qtype_traits *wt) {
    if (!is_matrix(w) || !is_matrix(x) || !is_matrix(dst)) return ELM_ERR_INVALID_ARG;
    int64_t K = w->ne[0], N = w->ne[1], T = x->ne[1];
    size_t row_bytes;
    if (!elmi_qtype_row_bytes(w->type, K, &row_bytes)) return ELM_ERR_INVALID_ARG;
    if (w->nb[0] != wt->type_size || (N > 1 && w->nb[1] < row_bytes)) return ELM_ERR_INVALID_ARG;
    if (w->type == QT_F32 && w->nb[1] % sizeof(float) != 0) return ELM_ERR_INVALID_ARG;
    if (x->ne[0] != K || dst->ne[0] != N || dst->ne[1] != T) return ELM_ERR_INVALID_ARG;
    if (!f32_rows_ok(x, K, T) || !f32_rows_ok(dst, N, T)) return ELM_ERR_INVALID_ARG;
    if (bias &&
        (bias->type != QT_F32 || !bias->data || bias->ne[0] != N || bias->nb[0] != sizeof(float)))
        return ELM_ERR_INVALID_ARG;
    return ELM_OK;
}

/* Bytes of one activation row in the vec_dot_type, 0 when x is used as is. */
static size_t act_row_bytes(const qtype_traits *wt, int64_t K) {
    size_t b = 0;
    if (wt->vec_dot_type == QT_F32 || !elmi_qtype_row_bytes(wt->vec_dot_type, K, &b)) return 0;
    return align_up(b);
}

/* Floats of one thread's exact-mode dequantization buffer. */
static size_t exact_scratch_floats(int w_type, int64_t K, int64_t T) {
    if (w_type == QT_F32) return 0;
    return (size_t)K * (T == 1 ? 1 : EXACT_TILE_ROWS);
}

/* The tiled kernels for this product, or NULL when the dot kernels run. */
static const cpu_gemm *gemm_for(const qtype_traits *wt, int w_type, int64_t K, int64_t T,
                                bool exact) {
    if (exact || T < GEMM_MIN_T || wt->vec_dot_type == QT_F32) return NULL;
    const cpu_gemm *g = cpu_gemm_get(w_type);
    return g && K % g->block == 0 ? g : NULL;
}

/* Blocks per panel: the panel of CPU_GEMM_ROWS rows stays within
 * GEMM_KC_BYTES (in L1/L2) while every token group passes over it. */
static int64_t gemm_kc(const cpu_gemm *g, int64_t K) {
    int64_t nb = K / g->block, kc = (int64_t)(GEMM_KC_BYTES / g->panel_block_bytes);
    if (kc < 1) kc = 1;
    if (kc >= nb) return nb;
    /* Equal ranges, so the last one is not a sliver. */
    int64_t n = (nb + kc - 1) / kc;
    return (nb + n - 1) / n;
}

/* Per thread: one panel and the vec_dot_type rows of one token group. */
static size_t gemm_thread_bytes(const cpu_gemm *g, const qtype_traits *wt, int64_t K) {
    return align_up(g->panel_block_bytes * (size_t)gemm_kc(g, K)) +
           act_row_bytes(wt, K) * (size_t)g->group;
}

/* Fast mode with F32/F16/BF16 weights and many tokens: the exact mode's
 * sgemm tiles, on the activations rounded to the vec_dot_type (so the
 * products are those of the dot kernels, summed in sgemm's order). */
static bool float_sgemm(int w_type, int64_t T, bool exact) {
    return !exact && T >= SGEMM_MIN_T &&
           (w_type == QT_F32 || w_type == QT_F16 || w_type == QT_BF16);
}

static size_t work_bytes(const qtype_traits *wt, int w_type, int64_t K, int64_t T, bool exact,
                         int n_threads) {
    if (float_sgemm(w_type, T, exact)) {
        size_t per = align_up(exact_scratch_floats(w_type, K, T) * sizeof(float));
        size_t xr = w_type == QT_F32 ? 0 : align_up((size_t)K * (size_t)T * sizeof(float));
        return ALIGN + per * (size_t)n_threads + xr + act_row_bytes(wt, K);
    }
    if (exact) {
        size_t per = align_up(exact_scratch_floats(w_type, K, T) * sizeof(float));
        return per ? ALIGN + per * (size_t)n_threads : 0;
    }
    const cpu_gemm *g = gemm_for(wt, w_type, K, T, exact);
    if (g) {
        size_t groups = (size_t)((T + g->group - 1) / g->group);
        return ALIGN + align_up(cpu_gemm_group_bytes(g, K)) * groups +
               gemm_thread_bytes(g, wt, K) * (size_t)n_threads;
    }
    size_t row = act_row_bytes(wt, K);
    return row ? ALIGN + row * (size_t)T : 0;
}

size_t elmi_cpu_mul_mat_work_size(const be_tensor *w, const be_tensor *x, bool exact, int n_threads) {
    if (!w || !x || n_threads < 1) return 0;
    const qtype_traits *wt = weight_traits(w->type);
    if (!wt || w->ne[0] <= 0 || x->ne[1] <= 0) return 0;
    return work_bytes(wt, w->type, w->ne[0], x->ne[1], exact, n_threads);
}

const char *elmi_cpu_simd_level(void) { return elmi_cpu_simd_name(elmi_cpu_simd_active()); }

/* ------------------------------------------------------------ the tasks */

static void run(mm_task *m, tp_task_fn fn) {
    if (m->tp)
        elmi_tp_run(m->tp, fn, m);
    else
        fn(m, 0, 1);
}

static void barrier(mm_task *m, int nth) {
    if (nth > 1) elmi_tp_barrier(m->tp);
}

/* Quantizes this thread's share of the T x (K / block) activation blocks. */
static void quantize_share(mm_task *m, int ith, int nth) {
    const int64_t bs = m->vt->block_size, per_row = m->K / bs, total = per_row * m->T;
    int64_t u = total * ith / nth, end = total * (ith + 1) / nth;
    while (u < end) {
        int64_t t = u / per_row, b = u % per_row;
        int64_t count = per_row - b < end - u ? per_row - b : end - u;
        const float *src = (const float *)(m->x + (size_t)t * m->x_stride) + b * bs;
        char *dst = m->act + (size_t)t * m->act_stride + (size_t)b * m->vt->type_size;
        m->quantize(src, dst, count * bs);
        u += count;
    }
}

static int64_t first_chunk(mm_task *m, int ith) { return ith < m->n_chunks ? ith : m->n_chunks; }

static int64_t next_chunk(mm_task *m) {
    return atomic_fetch_add_explicit(&m->next_chunk, 1, memory_order_relaxed);
}

static void store(mm_task *m, int64_t r, int64_t t, float v) {
    float *d = (float *)(m->dst + (size_t)t * m->d_stride);
    d[r] = m->bias ? v + m->bias[r] : v;
}

static void add_bias(mm_task *m, int64_t r0, int64_t r1) {
    if (!m->bias) return;
    for (int64_t t = 0; t < m->T; t++) {
        float *d = (float *)(m->dst + (size_t)t * m->d_stride);
        for (int64_t r = r0; r < r1; r++) d[r] += m->bias[r];
    }
}

/* Groups of ROW_GROUP rows, each against all tokens, CPU_DOT_MAX_NT at a
 * time: the group's rows stay in L1/L2 while the activations stream. */
static void fast_rows(mm_task *m, int64_t r0, int64_t r1) {
    const size_t ds = m->d_stride / sizeof(float);
    for (int64_t rb = r0; rb < r1; rb += ROW_GROUP) {
        int nr = r1 - rb < ROW_GROUP ? (int)(r1 - rb) : ROW_GROUP;
        const char *w = m->w + (size_t)rb * m->w_stride;
        for (int64_t t = 0; t < m->T; t += CPU_DOT_MAX_NT) {
            int nt = m->T - t < CPU_DOT_MAX_NT ? (int)(m->T - t) : CPU_DOT_MAX_NT;
            float *out = (float *)(m->dst + (size_t)t * m->d_stride) + rb;
            m->dot(m->K, nr, w, m->w_stride, m->act + (size_t)t * m->act_stride, m->act_stride, nt,
                   out, ds);
        }
    }
    add_bias(m, r0, r1);
}

static void fast_task(void *arg, int ith, int nth) {
    mm_task *m = arg;
    if (m->quantize_x) {
        quantize_share(m, ith, nth);
        barrier(m, nth);
    }
    for (int64_t c = first_chunk(m, ith); c < m->n_chunks; c = next_chunk(m)) {
        int64_t r0 = c * m->chunk_rows;
        fast_rows(m, r0, r0 + m->chunk_rows < m->N ? r0 + m->chunk_rows : m->N);
    }
}

/* Prefetch (to L2) of the weights the next panel will read, spread over
 * the kernel calls on the current one: repacking a panel otherwise waits
 * on memory for every row. */
typedef struct prefetcher {
    const char *row; /* the row being fetched, at the first byte to fetch */
    size_t stride, at, bytes;
    int64_t rows_left, per_call; /* lines per kernel call */
} prefetcher;

static void pf_init(prefetcher *pf, const mm_task *m, int64_t r0, int64_t b0, int64_t nk) {
    memset(pf, 0, sizeof *pf);
    if (r0 >= m->N) return;
    const size_t bb = m->wt->type_size * (size_t)(m->g->block / m->wt->block_size);
    pf->rows_left = m->N - r0 < CPU_GEMM_ROWS ? m->N - r0 : CPU_GEMM_ROWS;
    pf->row = m->w + (size_t)r0 * m->w_stride + (size_t)b0 * bb;
    pf->stride = m->w_stride;
    pf->bytes = (size_t)nk * bb + 64;
    int64_t total = pf->rows_left * (int64_t)(pf->bytes / 64 + 1);
    pf->per_call = (total + m->n_groups - 1) / m->n_groups;
}

static void pf_step(prefetcher *pf) {
    for (int64_t i = 0; i < pf->per_call && pf->rows_left > 0; i++) {
        __builtin_prefetch(pf->row + pf->at, 0, 2);
        pf->at += 64;
        if (pf->at >= pf->bytes) {
            pf->at = 0;
            pf->row += pf->stride;
            pf->rows_left--;
        }
    }
}

/* Tiled kernels. Each thread quantizes whole token groups into its own
 * rows and packs them; a barrier; then chunks of panels of CPU_GEMM_ROWS
 * rows: per K range, the panel is repacked once and every token group
 * passes over it, continuing the sums in dst. */
static void gemm_task(void *arg, int ith, int nth) {
    mm_task *m = arg;
    const cpu_gemm *g = m->g;
    char *mine = m->panels + (size_t)ith * gemm_thread_bytes(g, m->wt, m->K);
    char *panel = mine, *rows = mine + align_up(g->panel_block_bytes * (size_t)m->kc);
    const size_t rb = m->act_stride;
    for (int64_t gi = m->n_groups * ith / nth; gi < m->n_groups * (ith + 1) / nth; gi++) {
        const int64_t t0 = gi * g->group;
        const int nt = m->T - t0 < g->group ? (int)(m->T - t0) : g->group;
        for (int j = 0; j < nt; j++)
            m->quantize((const float *)(m->x + (size_t)(t0 + j) * m->x_stride), rows + j * rb, m->K);
        g->pack_act(rows, rb, nt, m->K / g->block, m->groups + (size_t)gi * m->group_bytes);
    }
    barrier(m, nth);
    const int64_t nb = m->K / g->block;
    const size_t ds = m->d_stride / sizeof(float), eb = g->act_entry_bytes * (size_t)g->group;
    for (int64_t c = first_chunk(m, ith); c < m->n_chunks; c = next_chunk(m)) {
        const int64_t r0 = c * m->chunk_rows, r1 = r0 + m->chunk_rows < m->N ? r0 + m->chunk_rows : m->N;
        for (int64_t rp = r0; rp < r1; rp += CPU_GEMM_ROWS) {
            const int nrows = r1 - rp < CPU_GEMM_ROWS ? (int)(r1 - rp) : CPU_GEMM_ROWS;
            const char *w = m->w + (size_t)rp * m->w_stride;
            for (int64_t b0 = 0; b0 < nb; b0 += m->kc) {
                const int64_t nk = nb - b0 < m->kc ? nb - b0 : m->kc;
                g->prep_panel(w, m->w_stride, nrows, b0, nk, panel);
                prefetcher pf;
                if (b0 + m->kc < nb)
                    pf_init(&pf, m, rp, b0 + m->kc, nb - b0 - m->kc < m->kc ? nb - b0 - m->kc : m->kc);
                else
                    pf_init(&pf, m, rp + CPU_GEMM_ROWS, 0, m->kc);
                for (int64_t gi = 0; gi < m->n_groups; gi++) {
                    pf_step(&pf);
                    const int64_t t0 = gi * g->group;
                    const int nt = m->T - t0 < g->group ? (int)(m->T - t0) : g->group;
                    float *out = (float *)(m->dst + (size_t)t0 * m->d_stride) + rp;
                    g->kernel(panel, nk, m->groups + (size_t)gi * m->group_bytes + (size_t)b0 * eb,
                              nt, out, ds, nrows, b0 == 0);
                }
            }
        }
        add_bias(m, r0, r1);
    }
}

/* Exact, one token: each row dequantized into this thread's buffer, then an F32 dot. */
static void exact_vec_task(void *arg, int ith, int nth) {
    mm_task *m = arg;
    float *buf = (float *)(m->scratch + (size_t)ith * m->scratch_bytes);
    for (int64_t c = first_chunk(m, ith); c < m->n_chunks; c = next_chunk(m)) {
        int64_t r1 = (c + 1) * m->chunk_rows < m->N ? (c + 1) * m->chunk_rows : m->N;
        for (int64_t r = c * m->chunk_rows; r < r1; r++) {
            const void *wrow = m->w + (size_t)r * m->w_stride;
            if (m->w_type != QT_F32) {
                m->deq(wrow, buf, m->K);
                wrow = buf;
            }
            float s;
            m->dot(m->K, 1, wrow, 0, m->x, 0, 1, &s, 0);
            store(m, r, 0, s);
        }
    }
    (void)nth;
}

/* The one lock of the serial OpenBLAS, process-wide like the library. */
static pthread_mutex_t blas_lock = PTHREAD_MUTEX_INITIALIZER;

static void exact_tile(mm_task *m, float *buf, int64_t r0, int64_t rows) {
    const float *b = (const float *)(m->w + (size_t)r0 * m->w_stride);
    size_t ldb = m->w_stride / sizeof(float);
    if (m->w_type != QT_F32) {
        for (int64_t i = 0; i < rows; i++)
            m->deq(m->w + (size_t)(r0 + i) * m->w_stride, buf + i * m->K, m->K);
        b = buf;
        ldb = (size_t)m->K;
    }
    if (rows == 1) ldb = (size_t)m->K; /* a one-row stride may be anything */
    float *c = (float *)m->dst + r0;
    pthread_mutex_lock(&blas_lock);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m->T, (int)rows, (int)m->K, 1.0f,
                (const float *)m->x, (int)(m->x_stride / sizeof(float)), b, (int)ldb, 0.0f, c,
                (int)(m->d_stride / sizeof(float)));
    pthread_mutex_unlock(&blas_lock);
    if (!m->bias) return;
    for (int64_t t = 0; t < m->T; t++) {
        float *ct = (float *)(m->dst + (size_t)t * m->d_stride) + r0;
        for (int64_t i = 0; i < rows; i++) ct[i] += m->bias[r0 + i];
    }
}

static void exact_gemm_task(void *arg, int ith, int nth) {
    mm_task *m = arg;
    float *buf = (float *)(m->scratch + (size_t)ith * m->scratch_bytes);
    for (int64_t c = first_chunk(m, ith); c < m->n_chunks; c = next_chunk(m)) {
        int64_t r0 = c * EXACT_TILE_ROWS;
        exact_tile(m, buf, r0, m->N - r0 < EXACT_TILE_ROWS ? m->N - r0 : EXACT_TILE_ROWS);
    }
    (void)nth;
}

/* --------------------------------------------------------------- driver */


static void set_chunks(mm_task *m, int nth, int64_t rows_per_chunk) {
    m->chunk_rows = rows_per_chunk;
    m->n_chunks = (m->N + rows_per_chunk - 1) / rows_per_chunk;
    atomic_init(&m->next_chunk, nth);
}

static int64_t fast_chunk_rows(int64_t N, int nth) {
    int64_t r = N / ((int64_t)nth * CHUNKS_PER_THREAD);
    return r < MIN_CHUNK_ROWS ? MIN_CHUNK_ROWS : r > MAX_CHUNK_ROWS ? MAX_CHUNK_ROWS : r;
}

static void init_task(mm_task *m, elm_threadpool *tp, const be_tensor *w, const be_tensor *x,
                      const be_tensor *bias, be_tensor *dst, const qtype_traits *wt) {
    memset(m, 0, sizeof *m);
    m->tp = tp;
    m->K = w->ne[0];
    m->N = w->ne[1];
    m->T = x->ne[1];
    m->w = w->data;
    m->w_stride = w->nb[1];
    m->x = x->data;
    m->x_stride = x->nb[1];
    m->dst = dst->data;
    m->d_stride = dst->nb[1];
    m->bias = bias ? bias->data : NULL;
    m->wt = wt;
    m->w_type = w->type;
}

static void run_exact(mm_task *m, char *work, int nth) {
    m->dot = cpu_vec_dot(QT_F32);
    m->deq = elmi_cpu_dequant_get(m->w_type);
    m->scratch = work;
    m->scratch_bytes = align_up(exact_scratch_floats(m->w_type, m->K, m->T) * sizeof(float));
    if (m->T == 1) {
        set_chunks(m, nth, fast_chunk_rows(m->N, nth));
        run(m, exact_vec_task);
        return;
    }
    set_chunks(m, nth, EXACT_TILE_ROWS);
    run(m, exact_gemm_task);
}

static void run_gemm(mm_task *m, char *work, int nth) {
    const cpu_gemm *g = m->g;
    m->quantize = cpu_quantize(m->wt->vec_dot_type);
    m->act_stride = act_row_bytes(m->wt, m->K);
    m->group_bytes = align_up(cpu_gemm_group_bytes(g, m->K));
    m->n_groups = (m->T + g->group - 1) / g->group;
    m->kc = gemm_kc(g, m->K);
    m->groups = work;
    m->panels = work + m->group_bytes * (size_t)m->n_groups;
    /* Chunks of whole panels, at least two per thread where there are. */
    int64_t panels = (m->N + CPU_GEMM_ROWS - 1) / CPU_GEMM_ROWS;
    int64_t per = panels / ((int64_t)nth * 4);
    set_chunks(m, nth, (per < 1 ? 1 : per) * CPU_GEMM_ROWS);
    run(m, gemm_task);
}

static void run_float_sgemm(mm_task *m, char *work, int nth) {
    if (m->w_type != QT_F32) {
        /* x rounded to F16/BF16 and back, row by row (exact both ways). */
        const size_t per = align_up(exact_scratch_floats(m->w_type, m->K, m->T) * sizeof(float));
        float *xr = (float *)(work + per * (size_t)nth);
        char *row = (char *)xr + align_up((size_t)m->K * (size_t)m->T * sizeof(float));
        cpu_quantize_fn q = cpu_quantize(m->wt->vec_dot_type);
        qt_to_float_fn back = elmi_cpu_dequant_get(m->wt->vec_dot_type);
        for (int64_t t = 0; t < m->T; t++) {
            q((const float *)(m->x + (size_t)t * m->x_stride), row, m->K);
            back(row, xr + (size_t)t * (size_t)m->K, m->K);
        }
        m->x = (const char *)xr;
        m->x_stride = (size_t)m->K * sizeof(float);
    }
    run_exact(m, work, nth);
}

static void run_fast(mm_task *m, char *work, int nth) {
    if (float_sgemm(m->w_type, m->T, false)) {
        run_float_sgemm(m, work, nth);
        return;
    }
    m->g = gemm_for(m->wt, m->w_type, m->K, m->T, false);
    if (m->g) {
        run_gemm(m, work, nth);
        return;
    }
    m->vt = elmi_qtype_get(m->wt->vec_dot_type);
    m->dot = cpu_vec_dot(m->w_type);
    m->quantize_x = m->wt->vec_dot_type != QT_F32;
    if (m->quantize_x) {
        m->quantize = cpu_quantize(m->wt->vec_dot_type);
        m->act = work;
        m->act_stride = act_row_bytes(m->wt, m->K);
    } else {
        m->act = (char *)m->x;
        m->act_stride = m->x_stride;
    }
    /* Small inputs: quantizing them is cheaper than the barrier. */
    if (m->quantize_x && (nth == 1 || m->T * m->K <= SERIAL_QUANTIZE_MAX)) {
        quantize_share(m, 0, 1);
        m->quantize_x = false;
    }
    set_chunks(m, nth, fast_chunk_rows(m->N, nth));
    run(m, fast_task);
}

elm_status elmi_cpu_mul_mat(elm_threadpool *tp, const be_tensor *w, const be_tensor *x,
                       const be_tensor *bias, be_tensor *dst, bool exact, void *work,
                       size_t work_size) {
    if (!w || !x || !dst) return ELM_ERR_INVALID_ARG;
    const qtype_traits *wt = weight_traits(w->type);
    if (!wt || (exact && !cpu_vec_dot(QT_F32))) return ELM_ERR_UNSUPPORTED;
    ELM_TRY(check_shapes(w, x, bias, dst, wt));
    int nth = elmi_tp_n_threads(tp);
    size_t need = work_bytes(wt, w->type, w->ne[0], x->ne[1], exact, nth);
    if (need > work_size || (need && !work)) return ELM_ERR_INVALID_ARG;
    char *aligned = need ? (char *)(((uintptr_t)work + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1)) : NULL;
    mm_task m;
    init_task(&m, tp, w, x, bias, dst, wt);
    if (exact)
        run_exact(&m, aligned, nth);
    else
        run_fast(&m, aligned, nth);
    return ELM_OK;
}
