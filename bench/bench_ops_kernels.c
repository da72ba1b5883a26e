/* bench_ops_kernels.c: the ops that bench --ops times. */
#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_ops.h"
#include "common/status.h"
#include "quant/quant.h"

#define MAT_COLS 4096
#define TILE_ROWS 32

/* ------------------------------------------------------------ CPU copy */

typedef struct copy_slice {
    char *dst;
    const char *src;
    size_t n;
} copy_slice;

static void *copy_worker(void *arg) {
    copy_slice *s = arg;
    memcpy(s->dst, s->src, s->n);
    return NULL;
}

typedef struct copy_run {
    char *dst, *src;
    size_t bytes;
    int nth;
} copy_run;

static size_t min_size(size_t a, size_t b) {
    return a < b ? a : b;
}

/* One copy of the whole buffer split over nth threads (this one included). */
static elm_status copy_once(void *arg) {
    enum { MAX_TH = 256 };
    copy_run *c = arg;
    copy_slice s[MAX_TH];
    pthread_t th[MAX_TH];
    int nth = c->nth < 1 ? 1 : c->nth > MAX_TH ? MAX_TH : c->nth;
    size_t chunk = (c->bytes / (size_t)nth + 4095) & ~(size_t)4095;
    for (int i = 0; i < nth; i++) {
        size_t off = min_size(chunk * (size_t)i, c->bytes);
        size_t end = min_size(off + chunk, c->bytes);
        s[i] = (copy_slice){c->dst + off, c->src + off, end - off};
    }
    elm_status st = ELM_OK;
    int started = 1;
    for (; started < nth; started++)
        if (pthread_create(&th[started], NULL, copy_worker, &s[started]) != 0) {
            st = ELM_ERR_INTERNAL;
            break;
        }
    copy_worker(&s[0]);
    for (int i = 1; i < started; i++) pthread_join(th[i], NULL);
    return st;
}

elm_status bench_cpu_copy_gbps(be_backend *be, int n_threads, size_t bytes, double budget_ms,
                               double *ms, double *gbps) {
    copy_run c = {.dst = malloc(bytes), .src = malloc(bytes), .bytes = bytes, .nth = n_threads};
    elm_status st = ELM_ERR_NO_MEMORY;
    *gbps = 0;
    if (!c.dst || !c.src) goto done;
    /* Touch every page first: page faults are not copy bandwidth. */
    memset(c.src, 1, bytes);
    memset(c.dst, 2, bytes);
    st = bench_time_median(copy_once, &c, budget_ms, ms);
    if (st == ELM_OK && *ms > 0) *gbps = 2.0 * (double)bytes / (*ms * 1e-3) / 1e9;
done:
    free(c.dst);
    free(c.src);
    return st;
}

/* ------------------------------------------------------------ CPU read */

typedef struct read_slice {
    const uint64_t *p;
    size_t n; /* words */
    uint64_t sum;
} read_slice;

/* Wide loads keep enough of them in flight to stream at the memory's
 * rate (64-bit loads measured 25% lower here); the widest the CPU has. */
typedef uint64_t u64x8 __attribute__((vector_size(64), aligned(8)));

#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define READ_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#endif
#ifndef READ_CLONES
#define READ_CLONES
#endif

READ_CLONES static uint64_t sum_words(const uint64_t *p, size_t n) {
    u64x8 a0 = {0}, a1 = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        u64x8 v0, v1;
        memcpy(&v0, p + i, sizeof v0);
        memcpy(&v1, p + i + 8, sizeof v1);
        a0 += v0;
        a1 += v1;
    }
    uint64_t s = 0;
    for (int k = 0; k < 8; k++) s += a0[k] + a1[k];
    for (; i < n; i++) s += p[i];
    return s;
}

static void *read_worker(void *arg) {
    read_slice *s = arg;
    s->sum = sum_words(s->p, s->n);
    return NULL;
}

typedef struct read_run {
    const uint64_t *src;
    size_t words;
    int nth;
    uint64_t sink;
} read_run;

/* One pass over the buffer split over nth threads (this one included). */
static elm_status read_once(void *arg) {
    enum { MAX_TH = 256 };
    read_run *r = arg;
    read_slice s[MAX_TH];
    pthread_t th[MAX_TH];
    int nth = r->nth < 1 ? 1 : r->nth > MAX_TH ? MAX_TH : r->nth;
    for (int i = 0; i < nth; i++) {
        size_t w0 = r->words * (size_t)i / (size_t)nth, w1 = r->words * (size_t)(i + 1) / (size_t)nth;
        s[i] = (read_slice){r->src + w0, w1 - w0, 0};
    }
    elm_status st = ELM_OK;
    int started = 1;
    for (; started < nth; started++)
        if (pthread_create(&th[started], NULL, read_worker, &s[started]) != 0) {
            st = ELM_ERR_INTERNAL;
            break;
        }
    read_worker(&s[0]);
    for (int i = 1; i < started; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < nth; i++) r->sink += s[i].sum; /* keeps the loads */
    return st;
}

elm_status bench_cpu_read_gbps(be_backend *be, int n_threads, size_t bytes, double budget_ms,
                               double *ms, double *gbps) {
    (void)be;
    uint64_t *src = malloc(bytes);
    read_run r = {.src = src, .words = bytes / sizeof *src, .nth = n_threads};
    elm_status st = ELM_ERR_NO_MEMORY;
    *gbps = 0;
    if (!src) goto done;
    memset(src, 1, bytes);
    /* The fastest pass: what the memory can deliver. A shared
     * machine's bandwidth drifts by tens of percent within seconds
     * (medians here ranged 13 to 22 GB/s), and a roofline taken from a
     * slow moment would flatter the kernels measured against it. */
    st = bench_time_runs(read_once, &r, budget_ms, true, ms);
    if (st == ELM_OK && *ms > 0) *gbps = (double)bytes / (*ms * 1e-3) / 1e9;
done:
    free(src);
    return st;
}

/* ------------------------------------------------------------- tensors */

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void fill_random(float *v, size_t n, uint64_t seed) {
    uint64_t s = seed | 1;
    for (size_t i = 0; i < n; i++)
        v[i] = (float)((int64_t)(rng_next(&s) >> 40) - (1 << 23)) / (1 << 23);
}

/* A tensor in a fresh buffer of the backend, filled with random values
 * converted to its type (F32 or F16). */
static elm_status device_tensor(be_backend *be, be_tensor *t, be_buffer **buf, uint64_t seed) {
    size_t bytes = elmi_be_tensor_nbytes(t);
    elm_status st = be->iface->buffer_alloc(be, bytes, NULL, buf);
    if (st != ELM_OK) return st;
    t->buf = *buf;
    t->offs = 0;
    t->data = be->iface->buffer_host(be, *buf);
    size_t n = (size_t)elmi_be_tensor_nelements(t);
    float *f = malloc(n * sizeof *f);
    void *conv = t->type == QT_F32 ? (void *)f : malloc(bytes);
    if (!f || !conv) {
        st = ELM_ERR_NO_MEMORY;
        goto done;
    }
    fill_random(f, n, seed);
    if (t->type != QT_F32) elmi_qtype_get(t->type)->from_float(f, conv, (int64_t)n);
    st = be->iface->tensor_set(be, t, conv, 0, bytes);
done:
    if (conv != f) free(conv);
    free(f);
    return st;
}

/* Host weights of `type`, rows x cols: a quantized tile of random rows,
 * repeated (quantizing hundreds of MiB would take longer than timing them;
 * the kernels' speed does not depend on the values). */
static void *host_weights(int type, int64_t rows, int64_t cols, size_t row_bytes) {
    size_t total = row_bytes * (size_t)rows;
    uint8_t *w = aligned_alloc(64, (total + 63) & ~(size_t)63);
    float *f = malloc((size_t)cols * sizeof *f);
    if (!w || !f) {
        free(w);
        free(f);
        return NULL;
    }
    int64_t tile = rows < TILE_ROWS ? rows : TILE_ROWS;
    for (int64_t r = 0; r < tile; r++) {
        fill_random(f, (size_t)cols, 0x1234 + (uint64_t)r);
        elmi_qtype_get(type)->from_float(f, w + row_bytes * (size_t)r, cols);
    }
    size_t tile_bytes = row_bytes * (size_t)tile;
    for (size_t off = tile_bytes; off < total; off += tile_bytes)
        memcpy(w + off, w, total - off < tile_bytes ? total - off : tile_bytes);
    free(f);
    return w;
}

/* --------------------------------------------------------- one-node runs */

typedef struct node_run {
    be_backend *be;
    be_node node;
    be_graph graph;
    char err[256];
} node_run;

static elm_status compute_once(void *arg) {
    node_run *r = arg;
    return r->be->iface->graph_compute(r->be, &r->graph, r->err, sizeof r->err);
}

/* Times the node (prepared first where the backend plans graphs). On a
 * device that profiles with timestamps, the figure is the kernel's mean
 * device time, as the copy bandwidth it is set against is: the host's
 * submit and wait, which a small kernel can spend more time in than on the
 * device, stay out. */
static elm_status time_node(bench_ops_ctx *c, node_run *r, double *ms) {
    r->be = c->be;
    r->graph = (be_graph){.nodes = &r->node, .n_nodes = 1, .exact = false};
    if (!c->be->iface->supports_op(c->be, &r->node)) return ELM_ERR_UNSUPPORTED;
    const be_iface *bi = c->be->iface;
    bool prof = bi->profile_enable && strcmp(bi->name, "cpu") != 0 &&
                bi->profile_enable(c->be, true) == ELM_OK;
    elm_status st = bi->graph_prepare ? bi->graph_prepare(c->be, &r->graph, r->err, sizeof r->err) : ELM_OK;
    double left = c->deadline_ms - bench_now_ms();
    double budget = left < BENCH_OP_TIME_MS ? (left > 0 ? left : 0) : BENCH_OP_TIME_MS;
    if (st == ELM_OK) st = bench_time_median(compute_once, r, budget, ms);
    if (prof) {
        be_profile p = {0};
        bi->profile_read(c->be, &p);
        bi->profile_enable(c->be, false);
        double dev_ms = 0;
        for (int i = 0; i < BE_OP_COUNT; i++) dev_ms += p.op[i].ms;
        if (st == ELM_OK && p.timestamps && p.n_graphs && dev_ms > 0) *ms = dev_ms / (double)p.n_graphs;
    }
    return st;
}

static void send_op(bench_ops_ctx *c, bench_op_result *res, elm_status st, const node_run *r) {
    res->kind = OPMSG_RESULT;
    snprintf(res->device, sizeof res->device, "%s", c->device);
    if (st != ELM_OK) {
        snprintf(res->note, sizeof res->note, "%.30s%s%.60s", elm_strerror(st),
                 r->err[0] ? ": " : "", r->err);
        res->ms = res->gbps = res->gflops = res->pct_copy_bw = 0;
    }
    res->pct_copy_bw = c->copy_gbps > 0 ? 100.0 * res->gbps / c->copy_gbps : 0;
    res->pct_read_bw = c->read_gbps > 0 ? 100.0 * res->gbps / c->read_gbps : 0;
    bench_child_send(c->fd, res, sizeof *res);
}

/* ---------------------------------------------------------- mul_mat */

static int64_t mat_vec_rows(size_t row_bytes) {
    int64_t rows = (int64_t)((bench_stream_bytes() + row_bytes - 1) / row_bytes);
    rows = (rows + 63) & ~(int64_t)63;
    return rows < MAT_COLS ? MAT_COLS : rows;
}

void bench_op_mul_mat(bench_ops_ctx *c, int type, int64_t n_tokens) {
    bench_op_result res = {.cols = MAT_COLS, .n_tokens = n_tokens};
    snprintf(res.op, sizeof res.op, n_tokens == 1 ? "mul_mat_vec" : "mul_mat");
    snprintf(res.type, sizeof res.type, "%s", elmi_qtype_name(type));
    static node_run r;
    memset(&r, 0, sizeof r);
    size_t row_bytes = 0;
    elmi_qtype_row_bytes(type, MAT_COLS, &row_bytes);
    res.rows = n_tokens == 1 ? mat_vec_rows(row_bytes) : MAT_COLS;
    be_tensor w, x, d;
    be_buffer *bx = NULL, *bd = NULL;
    elmi_be_tensor_init(&w, type, MAT_COLS, res.rows, 1, 1, "w");
    elmi_be_tensor_init(&x, QT_F32, MAT_COLS, n_tokens, 1, 1, "x");
    elmi_be_tensor_init(&d, QT_F32, res.rows, n_tokens, 1, 1, "dst");
    w.data = host_weights(type, res.rows, MAT_COLS, row_bytes);
    r.node = (be_node){.op = BE_OP_MUL_MAT, .dst = &d, .src = {&w, &x}};
    elm_status st = ELM_ERR_NO_MEMORY;
    if (!w.data) goto done;
    st = device_tensor(c->be, &x, &bx, 7);
    if (st != ELM_OK) goto done;
    st = device_tensor(c->be, &d, &bd, 9);
    if (st != ELM_OK) goto done;
    st = time_node(c, &r, &res.ms);
    if (st != ELM_OK || res.ms <= 0) goto done;
    double s = res.ms * 1e-3;
    res.gbps = (double)row_bytes * (double)res.rows / s / 1e9;
    res.gflops = 2.0 * MAT_COLS * (double)res.rows * (double)n_tokens / s / 1e9;
done:
    send_op(c, &res, st, &r);
    if (bx) c->be->iface->buffer_free(c->be, bx);
    if (bd) c->be->iface->buffer_free(c->be, bd);
    if (c->dev && c->dev->release_weights) c->dev->release_weights(c->be);
    free(w.data);
}

/* --------------------------------------------------------- attention */

/* Llama 3.2 1B's attention: 32 query heads of 64 over 8 KV heads. */
enum { ATT_HEAD_DIM = 64, ATT_HEADS = 32, ATT_KV_HEADS = 8 };

/* n_tok tokens (1: decode, more: the end of a prompt) whose last sees
 * n_ctx keys. */
void bench_op_attention(bench_ops_ctx *c, int64_t n_ctx, int64_t n_tok) {
    bench_op_result res = {.rows = n_ctx, .cols = ATT_HEAD_DIM * ATT_KV_HEADS, .n_tokens = n_tok};
    snprintf(res.op, sizeof res.op, "attention");
    snprintf(res.type, sizeof res.type, "F16");
    static node_run r;
    memset(&r, 0, sizeof r);
    be_tensor q, k, v, d;
    be_buffer *bufs[4] = {NULL};
    elmi_be_tensor_init(&q, QT_F32, ATT_HEAD_DIM, ATT_HEADS, n_tok, 1, "q");
    elmi_be_tensor_init(&k, QT_F16, ATT_HEAD_DIM * ATT_KV_HEADS, n_ctx, 1, 1, "k_cache");
    elmi_be_tensor_init(&v, QT_F16, ATT_HEAD_DIM * ATT_KV_HEADS, n_ctx, 1, 1, "v_cache");
    elmi_be_tensor_init(&d, QT_F32, ATT_HEAD_DIM * ATT_HEADS, n_tok, 1, 1, "dst");
    be_tensor *ts[4] = {&q, &k, &v, &d};
    r.node = (be_node){.op = BE_OP_ATTENTION,
                       .dst = &d,
                       .src = {&q, &k, &v},
                       .iparams = {(int32_t)(n_ctx - n_tok), ATT_KV_HEADS},
                       .fparams = {1.0f / sqrtf((float)ATT_HEAD_DIM)}};
    elm_status st;
    for (int i = 0; i < 4; i++) {
        st = device_tensor(c->be, ts[i], &bufs[i], 11 + (uint64_t)i);
        if (st != ELM_OK) goto done;
    }
    st = time_node(c, &r, &res.ms);
    if (st != ELM_OK || res.ms <= 0) goto done;
    double s = res.ms * 1e-3;
    res.gbps = 2.0 * (double)elmi_be_tensor_nbytes(&k) / s / 1e9;
    double keys = (double)n_tok * (double)(n_ctx - n_tok) + (double)n_tok * (double)(n_tok + 1) / 2; /* causal */
    res.gflops = 4.0 * ATT_HEAD_DIM * ATT_HEADS * keys / s / 1e9;
done:
    send_op(c, &res, st, &r);
    for (int i = 0; i < 4; i++)
        if (bufs[i]) c->be->iface->buffer_free(c->be, bufs[i]);
}
