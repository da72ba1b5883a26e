/*
 * ops_block.c: one transformer block (llama style, grouped-query attention)
 * run through edgelm's op API (include/edgelm_ops.h) on every device this
 * machine has, the CPU and each Vulkan device, as another runtime would:
 *
 *   h  = rms_norm(x) * attn_norm
 *   q, k, v = h Wq, h Wk, h Wv          (quantized weights)
 *   q, k = rope(q), rope(k)
 *   kv_store(k, v) into the caches
 *   a  = attention(q, K cache, V cache)
 *   x  = x + a Wo
 *   h  = rms_norm(x) * ffn_norm
 *   x  = x + (silu(h Wgate) * h Wup) Wdown
 *
 * A prompt of 6 tokens, then one decode step, each recorded once as a graph
 * and submitted in one call. The weights are host tensors (read in place on
 * the CPU, imported or uploaded once on a GPU); the activations live in one
 * device buffer, each tensor at its own offset. The output of every device
 * is compared with the CPU's: the program prints the largest absolute
 * difference and exits 1 when a device disagrees (or fails), 0 otherwise.
 *
 *   ops_block            every device
 *   ops_block cpu vulkan:0
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgelm_ops.h"

enum { N_EMBD = 256, N_HEAD = 4, N_HEAD_KV = 2, HEAD_DIM = 64, N_FF = 512, N_CTX = 16 };
enum { T_PROMPT = 6, T_ALL = T_PROMPT + 1 };
#define KV_DIM (N_HEAD_KV * HEAD_DIM)
#define TOLERANCE 1e-3

/* ------------------------------------------------------------ the weights */

typedef struct weight {
    elm_type type;
    int64_t k, n; /* (k, n): n rows of k values */
    void *data;   /* quantized rows; must outlive every device that read them */
} weight;

typedef struct block_weights {
    weight wq, wk, wv, wo, gate, up, down;
    float attn_norm[N_EMBD], ffn_norm[N_EMBD];
} block_weights;

static unsigned rng = 42;
static float frand(void) {
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static int make_weight(weight *w, elm_type type, int64_t k, int64_t n, float scale) {
    size_t row;
    if (elm_type_row_bytes(type, k, &row) != ELM_OK) return -1;
    float *f = malloc(sizeof(float) * (size_t)k);
    w->type = type, w->k = k, w->n = n;
    w->data = malloc(row * (size_t)n);
    if (!f || !w->data) return -1;
    for (int64_t r = 0; r < n; r++) {
        for (int64_t i = 0; i < k; i++) f[i] = frand() * scale;
        if (elm_type_quantize(type, f, (char *)w->data + row * (size_t)r, k) != ELM_OK) return -1;
    }
    free(f);
    return 0;
}

static int make_weights(block_weights *bw) {
    float s = 1.0f / sqrtf((float)N_EMBD);
    for (int i = 0; i < N_EMBD; i++) bw->attn_norm[i] = 1.0f + 0.1f * frand();
    for (int i = 0; i < N_EMBD; i++) bw->ffn_norm[i] = 1.0f + 0.1f * frand();
    return make_weight(&bw->wq, ELM_TYPE_Q4_0, N_EMBD, N_HEAD * HEAD_DIM, s) ||
           make_weight(&bw->wk, ELM_TYPE_Q8_0, N_EMBD, KV_DIM, s) ||
           make_weight(&bw->wv, ELM_TYPE_Q8_0, N_EMBD, KV_DIM, s) ||
           make_weight(&bw->wo, ELM_TYPE_Q4_K, N_HEAD * HEAD_DIM, N_EMBD, s) ||
           make_weight(&bw->gate, ELM_TYPE_Q4_K, N_EMBD, N_FF, s) ||
           make_weight(&bw->up, ELM_TYPE_Q4_K, N_EMBD, N_FF, s) ||
           make_weight(&bw->down, ELM_TYPE_Q8_0, N_FF, N_EMBD, 1.0f / sqrtf((float)N_FF));
}

/* ------------------------------------------------------- one device's run */

/* Every tensor of the block on one device. */
typedef struct block {
    elm_dev *dev;
    elm_dev_buffer *buf;
    size_t used;
    elm_op_tensor wq, wk, wv, wo, gate, up, down; /* host tensors */
    elm_op_tensor attn_norm, ffn_norm;            /* (N_EMBD) host tensors */
    elm_op_tensor k_cache, v_cache;               /* (KV_DIM, N_CTX) F16 */
    /* Activations of a step of T tokens, carved from buf. */
    elm_op_tensor x;     /* (N_EMBD, T) the residual stream, in and out */
    elm_op_tensor h;     /* (N_EMBD, T) normalized */
    elm_op_tensor q;     /* (HEAD_DIM, N_HEAD, T) */
    elm_op_tensor k, v;  /* (HEAD_DIM, N_HEAD_KV, T) */
    elm_op_tensor attn;  /* (HEAD_DIM * N_HEAD, T) */
    elm_op_tensor g, u;  /* (N_FF, T) */
    elm_op_tensor pos;   /* (T) I32 */
} block;

static int check(elm_status st, const block *b, const char *what) {
    if (st == ELM_OK) return 0;
    fprintf(stderr, "ops_block [%s]: %s: %s (%s)\n", elm_dev_id(b->dev), what, elm_strerror(st),
            elm_dev_last_error(b->dev));
    return -1;
}

static int host_tensor(elm_op_tensor *t, const weight *w) {
    return elm_op_tensor_dense(t, w->type, w->k, w->n, 1, 1, NULL, 0, w->data) == ELM_OK ? 0 : -1;
}

/* The next tensor of the buffer, 256-byte aligned. */
static int carve(block *b, elm_op_tensor *t, elm_type type, int64_t n0, int64_t n1, int64_t n2) {
    elm_status st = elm_op_tensor_dense(t, type, n0, n1, n2, 1, b->buf, b->used, NULL);
    if (check(st, b, "carving the activations")) return -1;
    b->used += (elm_op_tensor_nbytes(t) + 255) & ~(size_t)255;
    return 0;
}

/* Activations for T tokens; the caches stay at the buffer's start. */
static int carve_step(block *b, size_t base, int64_t T) {
    b->used = base;
    return carve(b, &b->x, ELM_TYPE_F32, N_EMBD, T, 1) || carve(b, &b->h, ELM_TYPE_F32, N_EMBD, T, 1) ||
           carve(b, &b->q, ELM_TYPE_F32, HEAD_DIM, N_HEAD, T) ||
           carve(b, &b->k, ELM_TYPE_F32, HEAD_DIM, N_HEAD_KV, T) ||
           carve(b, &b->v, ELM_TYPE_F32, HEAD_DIM, N_HEAD_KV, T) ||
           carve(b, &b->attn, ELM_TYPE_F32, HEAD_DIM * N_HEAD, T, 1) ||
           carve(b, &b->g, ELM_TYPE_F32, N_FF, T, 1) || carve(b, &b->u, ELM_TYPE_F32, N_FF, T, 1) ||
           carve(b, &b->pos, ELM_TYPE_I32, T, 1, 1);
}

/* k and v as (KV_DIM, T) rows for the cache. */
static elm_op_tensor rows_of(const elm_op_tensor *t, int64_t T) {
    elm_op_tensor r = *t;
    r.ne[0] = KV_DIM, r.ne[1] = T, r.ne[2] = 1;
    r.nb[2] = r.nb[3] = r.nb[1] * (size_t)T;
    r.nb[1] = KV_DIM * sizeof(float);
    return r;
}

/* Records the block for T tokens at position pos into g. */
static int record(block *b, elm_op_graph *g, int64_t T, int32_t pos) {
    elm_dev *d = b->dev;
    elm_rope_params rp;
    elm_rope_default_params(&rp);
    rp.style = ELM_ROPE_NEOX;
    rp.freq_base = 10000.0f;
    elm_attn_params ap;
    elm_attn_default_params(&ap);
    ap.pos = pos;
    elm_op_tensor k_rows = rows_of(&b->k, T), v_rows = rows_of(&b->v, T);
    elm_op_tensor q2 = b->q; /* q as (HEAD_DIM * N_HEAD, T) for the projection */
    q2.ne[0] = HEAD_DIM * N_HEAD, q2.ne[1] = T, q2.ne[2] = 1;
    q2.nb[1] = HEAD_DIM * N_HEAD * sizeof(float), q2.nb[2] = q2.nb[3] = q2.nb[1] * (size_t)T;
    elm_status st = elm_op_rms_norm(d, g, &b->x, &b->attn_norm, 1e-5f, &b->h);
    if (!st) st = elm_op_mul_mat(d, g, &b->wq, &b->h, NULL, &q2);
    if (!st) st = elm_op_mul_mat(d, g, &b->wk, &b->h, NULL, &k_rows);
    if (!st) st = elm_op_mul_mat(d, g, &b->wv, &b->h, NULL, &v_rows);
    if (!st) st = elm_op_rope(d, g, &b->q, &b->pos, NULL, &rp, &b->q);
    if (!st) st = elm_op_rope(d, g, &b->k, &b->pos, NULL, &rp, &b->k);
    if (!st) st = elm_op_kv_store(d, g, &k_rows, &b->k_cache, pos);
    if (!st) st = elm_op_kv_store(d, g, &v_rows, &b->v_cache, pos);
    if (!st) st = elm_op_attention(d, g, &b->q, &b->k_cache, &b->v_cache, &ap, &b->attn);
    if (!st) st = elm_op_mul_mat(d, g, &b->wo, &b->attn, NULL, &b->h);
    if (!st) st = elm_op_add(d, g, &b->x, &b->h, &b->x);
    if (!st) st = elm_op_rms_norm(d, g, &b->x, &b->ffn_norm, 1e-5f, &b->h);
    if (!st) st = elm_op_mul_mat(d, g, &b->gate, &b->h, NULL, &b->g);
    if (!st) st = elm_op_mul_mat(d, g, &b->up, &b->h, NULL, &b->u);
    if (!st) st = elm_op_glu(d, g, &b->g, &b->u, ELM_GLU_SILU, &b->g);
    if (!st) st = elm_op_mul_mat(d, g, &b->down, &b->g, NULL, &b->h);
    if (!st) st = elm_op_add(d, g, &b->x, &b->h, &b->x);
    return check(st, b, "recording the block");
}

/* One step: T tokens of input at positions [pos, pos + T), output to out. */
static int step(block *b, size_t base, const float *in, int64_t T, int32_t pos, float *out) {
    if (carve_step(b, base, T)) return -1;
    int32_t p[T_ALL];
    for (int64_t t = 0; t < T; t++) p[t] = pos + (int32_t)t;
    elm_op_graph *g = NULL;
    int rc = check(elm_op_graph_new(b->dev, NULL, &g), b, "creating a graph") || record(b, g, T, pos) ||
             check(elm_op_tensor_write(b->dev, &b->x, in, 0, sizeof(float) * N_EMBD * T), b, "writing x") ||
             check(elm_op_tensor_write(b->dev, &b->pos, p, 0, sizeof(int32_t) * T), b, "writing pos") ||
             check(elm_op_graph_compute(g), b, "running the block") ||
             check(elm_op_tensor_read(b->dev, &b->x, out, 0, sizeof(float) * N_EMBD * T), b, "reading x");
    elm_op_graph_free(g);
    return rc ? -1 : 0;
}

/* The block on device `id`: out receives (N_EMBD, T_ALL), the prompt's
 * outputs and then the decode step's. */
static int run_device(const char *id, const block_weights *bw, const float *in, float *out) {
    block b = {0};
    char err[512];
    if (elm_dev_new(id, NULL, &b.dev, err, sizeof err) != ELM_OK) {
        fprintf(stderr, "ops_block [%s]: %s\n", id, err);
        return -1;
    }
    int rc = -1;
    const size_t cache_bytes = (size_t)KV_DIM * N_CTX * 2;
    if (check(elm_dev_buffer_alloc(b.dev, 2 * cache_bytes + ((size_t)256 << 10), &b.buf), &b, "allocating"))
        goto done;
    if (host_tensor(&b.wq, &bw->wq) || host_tensor(&b.wk, &bw->wk) || host_tensor(&b.wv, &bw->wv) ||
        host_tensor(&b.wo, &bw->wo) || host_tensor(&b.gate, &bw->gate) || host_tensor(&b.up, &bw->up) ||
        host_tensor(&b.down, &bw->down) ||
        elm_op_tensor_dense(&b.attn_norm, ELM_TYPE_F32, N_EMBD, 1, 1, 1, NULL, 0, bw->attn_norm) ||
        elm_op_tensor_dense(&b.ffn_norm, ELM_TYPE_F32, N_EMBD, 1, 1, 1, NULL, 0, bw->ffn_norm))
        goto done;
    b.used = 0;
    if (carve(&b, &b.k_cache, ELM_TYPE_F16, KV_DIM, N_CTX, 1) ||
        carve(&b, &b.v_cache, ELM_TYPE_F16, KV_DIM, N_CTX, 1))
        goto done;
    size_t base = b.used;
    if (step(&b, base, in, T_PROMPT, 0, out) ||
        step(&b, base, in + N_EMBD * T_PROMPT, 1, T_PROMPT, out + N_EMBD * T_PROMPT))
        goto done;
    double fallbacks = 0, verrors = 0;
    elm_dev_stat_find(b.dev, "fallback_nodes", &fallbacks);
    if (elm_dev_stat_find(b.dev, "vulkan.validation_errors", &verrors) == ELM_OK && verrors > 0) {
        fprintf(stderr, "ops_block [%s]: %g validation errors\n", id, verrors);
        goto done;
    }
    elm_device_info info = {.struct_size = sizeof info};
    elm_dev_get_info(b.dev, &info);
    printf("ops_block [%s] %s: %d tokens through one block, %g ops on the CPU fallback\n", id,
           info.name, T_ALL, fallbacks);
    rc = 0;
done:
    elm_dev_buffer_free(b.buf);
    elm_dev_free(b.dev);
    return rc;
}

/* ------------------------------------------------------------------ main */

static int list_devices(char ids[][32], int cap) {
    elm_device_info info[8];
    info[0].struct_size = sizeof info[0];
    size_t n = 0;
    if (elm_devices(info, 8, &n) != ELM_OK) return 0;
    int k = 0;
    for (size_t i = 0; i < n && i < 8 && k < cap; i++) snprintf(ids[k++], 32, "%s", info[i].id);
    return k;
}

int main(int argc, char **argv) {
    char ids[8][32];
    int n = 0;
    for (int i = 1; i < argc && n < 8; i++) snprintf(ids[n++], 32, "%s", argv[i]);
    if (n == 0) n = list_devices(ids, 8);
    static block_weights bw;
    if (make_weights(&bw)) {
        fprintf(stderr, "ops_block: cannot make the weights\n");
        return 1;
    }
    static float in[N_EMBD * T_ALL], out[8][N_EMBD * T_ALL];
    for (int i = 0; i < N_EMBD * T_ALL; i++) in[i] = frand();
    int bad = 0;
    for (int d = 0; d < n; d++) {
        if (run_device(ids[d], &bw, in, out[d])) {
            bad = 1;
            continue;
        }
        if (d == 0) continue;
        double diff = 0, top = 0;
        for (int i = 0; i < N_EMBD * T_ALL; i++) {
            diff = fmax(diff, fabs((double)out[d][i] - out[0][i]));
            top = fmax(top, fabs((double)out[0][i]));
        }
        bool ok = diff <= TOLERANCE * fmax(1.0, top) && isfinite(diff);
        printf("ops_block: %s vs %s: max abs diff %.3g (largest value %.3g) %s\n", ids[d], ids[0],
               diff, top, ok ? "agree" : "DISAGREE");
        if (!ok) bad = 1;
    }
    if (n == 1) printf("ops_block: only %s on this machine, nothing to compare\n", ids[0]);
    weight *all[] = {&bw.wq, &bw.wk, &bw.wv, &bw.wo, &bw.gate, &bw.up, &bw.down};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]->data);
    return bad;
}
