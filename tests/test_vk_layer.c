/* test_vk_layer.c: a whole transformer layer on the Vulkan backend, as
 * engine/graph.c builds it, against a reference forward pass in double, in
 * exact and fast graphs under every limits profile, replayed step by step
 * (see the section comment below). Bounds: logits NMSE 1e-8 exact, 1e-4
 * fast. The validation layer is on and any validation error fails. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if ELM_HAVE_VULKAN
#include "support/op_ref.h"
#include "support/vk_ops_fixture.h"
/* ------------------------------------------------- a whole layer, replayed */

/* A small transformer (one layer, as engine/graph.c builds it, with the
 * same aliasing views) against a reference forward pass in double, step by
 * step: a prompt, then decode steps whose graphs differ only in the
 * positions, so the device replays its recorded command buffer. The `arch`
 * variant adds the ops of the newer architectures: a SCALE of the
 * embeddings, per-head Q/K RMS norms (qwen3), a sliding window over a
 * ring cache with softcapped scores (gemma), a gated short convolution
 * block (lfm2), a GELU GLU and softcapped logits; its decode steps run
 * past the ends of both rings. */
enum { E = 256, NH = 4, NKV = 2, HD = 64, FF = 288, VOCAB = 50, CTX = 32, TMAX = 7 };
enum { WIN = 5, RING = WIN + TMAX - 1, CONV_L = 3, CONV_ROWS = TMAX + CONV_L - 1, N_STEPS = 10 };
#define EMBD_SCALE 0.5f
#define ATTN_CAP 1.0f
#define LOGIT_CAP 1.5f

typedef struct model_w {
    be_tensor tok, wq, bq, wk, wv, wo, gate, up, down, attn_norm, ffn_norm, out_norm, out;
    be_tensor q_norm, k_norm, conv_in, conv_k, conv_out; /* arch */
    void *mem[32];
    int n_mem;
} model_w;

/* The exact dequantization of a weight (the reference's copy). */
static const float *deq_of(const be_tensor *t) {
    return (const float *)((const char *)t->data + elmi_be_tensor_nbytes(t));
}

static void weight(model_w *m, be_tensor *t, int type, int64_t k, int64_t n, const char *name) {
    float *w = rand_floats((size_t)(k * n), 0.2f), *deq = malloc(sizeof(float) * k * n);
    for (int64_t i = 0; type == QT_F32 && i < k * n; i++) w[i] = 1.0f + 0.2f * w[i];
    void *q = quantize(type, w, n, k, deq);
    elmi_be_tensor_init(t, type, k, n, 1, 1, name);
    size_t nb = elmi_be_tensor_nbytes(t);
    char *mem = malloc(nb + sizeof(float) * k * n);
    memcpy(mem, q, nb);
    memcpy(mem + nb, deq, sizeof(float) * k * n);
    t->data = mem;
    m->mem[m->n_mem++] = mem;
    free(w), free(deq), free(q);
}

static void model_init(model_w *m) {
    memset(m, 0, sizeof *m);
    weight(m, &m->tok, QT_Q8_0, E, VOCAB, "tok_embd");
    weight(m, &m->wq, QT_Q4_K, E, NH * HD, "wq");
    weight(m, &m->bq, QT_F32, NH * HD, 1, "bq");
    weight(m, &m->wk, QT_Q8_0, E, NKV * HD, "wk");
    weight(m, &m->wv, QT_Q6_K, E, NKV * HD, "wv");
    weight(m, &m->wo, QT_Q5_0, NH * HD, E, "wo");
    weight(m, &m->gate, QT_Q4_0, E, FF, "gate");
    weight(m, &m->up, QT_F16, E, FF, "up");
    weight(m, &m->down, QT_Q8_0, FF, E, "down");
    weight(m, &m->attn_norm, QT_F32, E, 1, "attn_norm");
    weight(m, &m->ffn_norm, QT_F32, E, 1, "ffn_norm");
    weight(m, &m->out_norm, QT_F32, E, 1, "out_norm");
    weight(m, &m->out, QT_Q6_K, E, VOCAB, "output");
    weight(m, &m->q_norm, QT_F32, HD, 1, "q_norm");
    weight(m, &m->k_norm, QT_F32, HD, 1, "k_norm");
    weight(m, &m->conv_in, QT_Q8_0, E, 3 * E, "conv_in");
    weight(m, &m->conv_k, QT_F32, CONV_L, E, "conv_k");
    weight(m, &m->conv_out, QT_Q4_K, E, E, "conv_out");
}

/* One backend's activations, caches and convolution state, laid out in
 * two buffers. */
typedef struct model_a {
    be_backend *be;
    bool arch;
    be_buffer *scratch, *kv;
    char *base;
    be_tensor ids, pos, x, xb, q, k, v, att, proj, gate, up, logits, kc, vc, bcx, conv, state;
    be_tensor q3, k3; /* (head_dim, heads, T) views of q and k, as the engine uses */
    be_node nodes[40];
} model_a;

static void place(model_a *a, be_tensor *t, int type, int64_t n0, int64_t n1, int64_t n2, size_t *offs,
                  const char *name) {
    elmi_be_tensor_init(t, type, n0, n1, n2, 1, name);
    t->buf = a->scratch;
    t->offs = *offs;
    t->data = a->base ? a->base + *offs : NULL;
    *offs += (elmi_be_tensor_nbytes(t) + 255) & ~(size_t)255;
}

static void model_layout(model_a *a, int64_t T) {
    size_t o = 0;
    place(a, &a->ids, BE_TYPE_I32, T, 1, 1, &o, "ids");
    place(a, &a->pos, BE_TYPE_I32, T, 1, 1, &o, "pos");
    place(a, &a->x, QT_F32, E, T, 1, &o, "x");
    place(a, &a->xb, QT_F32, E, T, 1, &o, "xb");
    place(a, &a->q, QT_F32, HD * NH, T, 1, &o, "q");
    place(a, &a->k, QT_F32, HD * NKV, T, 1, &o, "k");
    be_tensor *views[2][2] = {{&a->q3, &a->q}, {&a->k3, &a->k}};
    for (int i = 0; i < 2; i++) {
        be_tensor *v = views[i][0], *base = views[i][1];
        elmi_be_tensor_init(v, QT_F32, HD, base->ne[0] / HD, T, 1, i ? "k3" : "q3");
        v->buf = base->buf, v->offs = base->offs, v->data = base->data;
    }
    place(a, &a->v, QT_F32, HD * NKV, T, 1, &o, "v");
    place(a, &a->att, QT_F32, HD * NH, T, 1, &o, "att");
    place(a, &a->proj, QT_F32, E, T, 1, &o, "proj");
    place(a, &a->gate, QT_F32, FF, T, 1, &o, "gate");
    place(a, &a->up, QT_F32, FF, T, 1, &o, "up");
    place(a, &a->logits, QT_F32, VOCAB, T, 1, &o, "logits");
    place(a, &a->bcx, QT_F32, 3 * E, T, 1, &o, "bcx");
    place(a, &a->conv, QT_F32, E, T, 1, &o, "conv");
}

/* Caches of CTX rows, or rings of RING rows (arch), then the convolution
 * state; the rings and the state start as NaN, which no op may read. */
static void model_alloc(model_a *a, be_backend *be, int cache_type, bool arch) {
    memset(a, 0, sizeof *a);
    a->be = be;
    a->arch = arch;
    const be_iface *bi = be->iface;
    cr_assert_eq(bi->buffer_alloc(be, 256 * 1024, NULL, &a->scratch), ELM_OK);
    a->base = bi->buffer_host(be, a->scratch);
    elmi_be_tensor_init(&a->kc, cache_type, HD * NKV, arch ? RING : CTX, 1, 1, "k_cache");
    a->vc = a->kc;
    snprintf(a->vc.name, sizeof a->vc.name, "v_cache");
    elmi_be_tensor_init(&a->state, QT_F32, E, CONV_ROWS, 1, 1, "conv_state");
    size_t per = elmi_be_tensor_nbytes(&a->kc), sb = elmi_be_tensor_nbytes(&a->state);
    cr_assert_eq(bi->buffer_alloc(be, 2 * per + sb, NULL, &a->kv), ELM_OK);
    char *kv = bi->buffer_host(be, a->kv);
    a->kc.buf = a->vc.buf = a->state.buf = a->kv;
    a->vc.offs = per, a->state.offs = 2 * per;
    a->kc.data = kv, a->vc.data = kv ? kv + per : NULL, a->state.data = kv ? kv + 2 * per : NULL;
    if (!arch) return;
    uint8_t *nan = malloc(2 * per + sb);
    memset(nan, 0xFF, 2 * per + sb); /* all-ones: NaN as F16 and as F32 */
    cr_assert_eq(bi->tensor_set(be, &a->kc, nan, 0, per), ELM_OK);
    cr_assert_eq(bi->tensor_set(be, &a->vc, nan + per, 0, per), ELM_OK);
    cr_assert_eq(bi->tensor_set(be, &a->state, nan + 2 * per, 0, sb), ELM_OK);
    free(nan);
}

static be_node *node(model_a *a, int *n, be_op op, be_tensor *dst, be_tensor *s0, be_tensor *s1,
                     be_tensor *s2) {
    be_node *nd = &a->nodes[(*n)++];
    *nd = (be_node){.op = op, .dst = dst, .src = {s0, s1, s2}};
    return nd;
}

static void rope_node(model_a *a, int *n, be_tensor *t) {
    be_node *nd = node(a, n, BE_OP_ROPE, t, t, &a->pos, NULL);
    nd->iparams[0] = BE_ROPE_NEOX, nd->iparams[1] = HD;
    nd->fparams[0] = 10000.0f, nd->fparams[1] = 1.0f, nd->fparams[3] = 1.0f;
}

/* The convolution block of lfm2: x += conv_out(shortconv(conv_in(norm(x)))). */
static void conv_block(model_a *a, model_w *w, int *n, int pos) {
    node(a, n, BE_OP_RMS_NORM, &a->xb, &a->x, &w->attn_norm, NULL)->fparams[0] = 1e-5f;
    node(a, n, BE_OP_MUL_MAT, &a->bcx, &w->conv_in, &a->xb, NULL);
    node(a, n, BE_OP_SHORTCONV, &a->conv, &a->bcx, &w->conv_k, &a->state)->iparams[0] = pos;
    node(a, n, BE_OP_MUL_MAT, &a->proj, &w->conv_out, &a->conv, NULL);
    node(a, n, BE_OP_ADD, &a->x, &a->x, &a->proj, NULL);
}

static int model_graph(model_a *a, model_w *w, int pos) {
    int n = 0;
    be_node *nd;
    node(a, &n, BE_OP_GET_ROWS, &a->x, &w->tok, &a->ids, NULL);
    if (a->arch) node(a, &n, BE_OP_SCALE, &a->x, &a->x, NULL, NULL)->fparams[0] = EMBD_SCALE;
    node(a, &n, BE_OP_RMS_NORM, &a->xb, &a->x, &w->attn_norm, NULL)->fparams[0] = 1e-5f;
    node(a, &n, BE_OP_MUL_MAT, &a->q, &w->wq, &a->xb, &w->bq);
    node(a, &n, BE_OP_MUL_MAT, &a->k, &w->wk, &a->xb, NULL);
    node(a, &n, BE_OP_MUL_MAT, &a->v, &w->wv, &a->xb, NULL);
    if (a->arch) {
        node(a, &n, BE_OP_RMS_NORM, &a->q3, &a->q3, &w->q_norm, NULL)->fparams[0] = 1e-6f;
        node(a, &n, BE_OP_RMS_NORM, &a->k3, &a->k3, &w->k_norm, NULL)->fparams[0] = 1e-6f;
    }
    rope_node(a, &n, &a->q3);
    rope_node(a, &n, &a->k3);
    nd = node(a, &n, BE_OP_KV_STORE, &a->kc, &a->k, NULL, NULL);
    nd->iparams[0] = pos, nd->iparams[1] = a->arch;
    nd = node(a, &n, BE_OP_KV_STORE, &a->vc, &a->v, NULL, NULL);
    nd->iparams[0] = pos, nd->iparams[1] = a->arch;
    nd = node(a, &n, BE_OP_ATTENTION, &a->att, &a->q3, &a->kc, &a->vc);
    nd->iparams[0] = pos, nd->iparams[1] = NKV, nd->fparams[0] = 0.125f;
    if (a->arch) nd->iparams[2] = WIN, nd->iparams[3] = 1, nd->fparams[1] = ATTN_CAP;
    node(a, &n, BE_OP_MUL_MAT, &a->proj, &w->wo, &a->att, NULL);
    node(a, &n, BE_OP_ADD, &a->x, &a->x, &a->proj, NULL);
    if (a->arch) conv_block(a, w, &n, pos);
    node(a, &n, BE_OP_RMS_NORM, &a->xb, &a->x, &w->ffn_norm, NULL)->fparams[0] = 1e-5f;
    node(a, &n, BE_OP_MUL_MAT, &a->gate, &w->gate, &a->xb, NULL);
    node(a, &n, BE_OP_MUL_MAT, &a->up, &w->up, &a->xb, NULL);
    node(a, &n, BE_OP_GLU, &a->gate, &a->gate, &a->up, NULL)->iparams[0] = a->arch ? BE_GLU_GELU_TANH : BE_GLU_SILU;
    node(a, &n, BE_OP_MUL_MAT, &a->proj, &w->down, &a->gate, NULL);
    node(a, &n, BE_OP_ADD, &a->x, &a->x, &a->proj, NULL);
    node(a, &n, BE_OP_RMS_NORM, &a->xb, &a->x, &w->out_norm, NULL)->fparams[0] = 1e-5f;
    node(a, &n, BE_OP_MUL_MAT, &a->logits, &w->out, &a->xb, NULL);
    if (a->arch) {
        nd = node(a, &n, BE_OP_SCALE, &a->logits, &a->logits, NULL, NULL);
        nd->fparams[0] = 1.0f, nd->fparams[1] = LOGIT_CAP;
    }
    return n;
}

/* Runs tokens [pos, pos + T) and returns the logits (T x VOCAB). */
static float *model_step(model_a *a, model_w *w, const int32_t *ids, int pos, int T, bool exact) {
    const be_iface *bi = a->be->iface;
    model_layout(a, T);
    int32_t p[TMAX];
    for (int i = 0; i < T; i++) p[i] = pos + i;
    cr_assert_eq(bi->tensor_set(a->be, &a->ids, ids, 0, 4 * (size_t)T), ELM_OK);
    cr_assert_eq(bi->tensor_set(a->be, &a->pos, p, 0, 4 * (size_t)T), ELM_OK);
    be_graph g = {.nodes = a->nodes, .n_nodes = model_graph(a, w, pos), .exact = exact};
    char err[512];
    cr_assert_eq(bi->graph_compute(a->be, &g, err, sizeof err), ELM_OK, "%s: %s", bi->name, err);
    float *out = malloc(sizeof(float) * VOCAB * T);
    cr_assert_eq(bi->tensor_get(a->be, &a->logits, out, 0, sizeof(float) * VOCAB * T), ELM_OK);
    return out;
}

static void model_free(model_a *a) {
    a->be->iface->buffer_free(a->be, a->scratch);
    a->be->iface->buffer_free(a->be, a->kv);
}

/* ------------------------------------------- the layer's reference, in double */

/* Caches and convolution inputs by position (the reference has no rings). */
typedef struct ref_cache {
    double k[CTX * NKV * HD], v[CTX * NKV * HD], bx[CTX * E];
} ref_cache;

static void ref_matvec(const be_tensor *w, const double *x, double *y) {
    const float *d = deq_of(w);
    int64_t K = w->ne[0], N = w->ne[1];
    for (int64_t n = 0; n < N; n++) {
        double s = 0;
        for (int64_t k = 0; k < K; k++) s += d[n * K + k] * x[k];
        y[n] = s;
    }
}

/* RMS norm of each of `rows` rows of n values. */
static void ref_rms(const double *x, const be_tensor *w, int n, int rows, double eps, double *y) {
    for (int r = 0; r < rows; r++, x += n, y += n) {
        double ss = 0;
        for (int i = 0; i < n; i++) ss += x[i] * x[i];
        double scale = 1 / sqrt(ss / n + eps);
        for (int i = 0; i < n; i++) y[i] = x[i] * scale * deq_of(w)[i];
    }
}

static void ref_rope_neox(double *h, int n_heads, int pos) {
    for (int hh = 0; hh < n_heads; hh++)
        for (int i = 0; i < HD / 2; i++) {
            double th = pos * pow(10000.0, -2.0 * i / HD), c = cos(th), s = sin(th);
            double *a = &h[hh * HD + i], *b = &h[hh * HD + i + HD / 2], x0 = *a, x1 = *b;
            *a = x0 * c - x1 * s;
            *b = x0 * s + x1 * c;
        }
}

static double cache_round(double v, bool f16) {
    return f16 ? elmi_fp16_to_f32(elmi_f32_to_fp16((float)v)) : (float)v;
}

/* Query at position pos over key positions [lo, pos], scores softcapped by cap > 0. */
static void ref_attend(const ref_cache *c, const double *q, int lo, int pos, double cap, double *out) {
    double s[CTX];
    for (int h = 0; h < NH; h++) {
        int kvh = h / (NH / NKV);
        double m = -INFINITY, sum = 0;
        for (int j = lo; j <= pos; j++) {
            double d = 0;
            for (int i = 0; i < HD; i++) d += q[h * HD + i] * c->k[j * NKV * HD + kvh * HD + i];
            s[j] = cap > 0 ? cap * tanh(d * 0.125 / cap) : d * 0.125;
            m = fmax(m, s[j]);
        }
        for (int j = lo; j <= pos; j++) sum += (s[j] = exp(s[j] - m));
        for (int i = 0; i < HD; i++) {
            double a = 0;
            for (int j = lo; j <= pos; j++) a += s[j] * c->v[j * NKV * HD + kvh * HD + i];
            out[h * HD + i] = a / sum;
        }
    }
}

/* lfm2's convolution block for one token, x updated. */
static void ref_conv(const model_w *w, ref_cache *c, int pos, double *x) {
    double xb[E], bcx[3 * E], y[E], proj[E];
    ref_rms(x, &w->attn_norm, E, 1, 1e-5, xb);
    ref_matvec(&w->conv_in, xb, bcx);
    for (int i = 0; i < E; i++) c->bx[pos * E + i] = bcx[i] * bcx[2 * E + i];
    for (int i = 0; i < E; i++) {
        double acc = 0;
        for (int k = 0; k < CONV_L; k++) {
            int p = pos - (CONV_L - 1) + k;
            if (p >= 0) acc += deq_of(&w->conv_k)[i * CONV_L + k] * c->bx[p * E + i];
        }
        y[i] = bcx[E + i] * acc;
    }
    ref_matvec(&w->conv_out, y, proj);
    for (int i = 0; i < E; i++) x[i] += proj[i];
}

/* One token through the layer (tokens of a batch only meet in attention and
 * in the convolution, and causality makes token t see exactly the
 * positions up to pos + t). */
static void ref_token(const model_w *w, ref_cache *c, int32_t id, int pos, bool f16, bool arch, double *logits) {
    double x[E], xb[E], q[NH * HD], k[NKV * HD], v[NKV * HD], att[NH * HD], proj[E], g[FF], u[FF];
    for (int i = 0; i < E; i++) x[i] = deq_of(&w->tok)[id * E + i] * (arch ? EMBD_SCALE : 1.0);
    ref_rms(x, &w->attn_norm, E, 1, 1e-5, xb);
    ref_matvec(&w->wq, xb, q);
    for (int i = 0; i < NH * HD; i++) q[i] += deq_of(&w->bq)[i];
    ref_matvec(&w->wk, xb, k);
    ref_matvec(&w->wv, xb, v);
    if (arch) {
        ref_rms(q, &w->q_norm, HD, NH, 1e-6, q);
        ref_rms(k, &w->k_norm, HD, NKV, 1e-6, k);
    }
    ref_rope_neox(q, NH, pos);
    ref_rope_neox(k, NKV, pos);
    for (int i = 0; i < NKV * HD; i++) {
        c->k[pos * NKV * HD + i] = cache_round(k[i], f16);
        c->v[pos * NKV * HD + i] = cache_round(v[i], f16);
    }
    int lo = arch && pos - WIN + 1 > 0 ? pos - WIN + 1 : 0;
    ref_attend(c, q, lo, pos, arch ? ATTN_CAP : 0, att);
    ref_matvec(&w->wo, att, proj);
    for (int i = 0; i < E; i++) x[i] += proj[i];
    if (arch) ref_conv(w, c, pos, x);
    ref_rms(x, &w->ffn_norm, E, 1, 1e-5, xb);
    ref_matvec(&w->gate, xb, g);
    ref_matvec(&w->up, xb, u);
    for (int i = 0; i < FF; i++) g[i] = (arch ? elm_ref_gelu_tanh(g[i]) : elm_ref_silu(g[i])) * u[i];
    ref_matvec(&w->down, g, proj);
    for (int i = 0; i < E; i++) x[i] += proj[i];
    ref_rms(x, &w->out_norm, E, 1, 1e-5, xb);
    ref_matvec(&w->out, xb, logits);
    for (int i = 0; arch && i < VOCAB; i++) logits[i] = LOGIT_CAP * tanh(logits[i] / LOGIT_CAP);
}

static double layer_worst[2][2]; /* [arch][exact] */

static void check_layer(const char *limits, bool exact, bool arch, model_w *w) {
    static const int32_t prompt[TMAX + N_STEPS] = {1, 7, 49, 3, 3, 20, 0, 11, 42, 5, 8, 13, 2, 31, 4, 17, 9};
    vfx f;
    vfx_open(&f, limits);
    model_a ga;
    model_alloc(&ga, f.be, exact ? QT_F32 : QT_F16, arch);
    ref_cache *rc = calloc(1, sizeof *rc);
    int pos = 0, T = TMAX;
    be_vk_stats s0, s1;
    for (int step = 0; step < (arch ? N_STEPS : 5); step++) {
        const int32_t *ids = &prompt[pos];
        float *got = model_step(&ga, w, ids, pos, T, exact);
        double *want = malloc(sizeof(double) * VOCAB * T);
        for (int t = 0; t < T; t++) ref_token(w, rc, ids[t], pos + t, !exact, arch, want + t * VOCAB);
        double e = nmse(got, want, (size_t)(VOCAB * T));
        cr_expect_leq(e, exact ? 1e-8 : 1e-4, "[%s] %s%s step %d: logits NMSE %.3g", limits, exact ? "exact" : "fast",
                      arch ? " (new ops)" : "", step, e);
        if (e > layer_worst[arch][exact] || e != e) layer_worst[arch][exact] = e;
        if (step == 1) elmi_be_vk_get_stats(f.be, &s0);
        free(got), free(want);
        pos += T;
        T = 1;
    }
    cr_assert(!arch || pos > RING, "the decode steps must wrap the ring");
    elmi_be_vk_get_stats(f.be, &s1);
    cr_expect_eq(s1.n_records, s0.n_records, "[%s] decode steps must replay, not re-record", limits);
    cr_expect_geq(s1.n_replays, s0.n_replays + 3);
    cr_expect_lt(s1.n_barriers, s1.n_dispatches, "barriers only on dependencies");
    cr_expect_eq(fallbacks(&f), 0);
    model_free(&ga);
    free(rc);
    vfx_close(&f);
}

static void whole_layer(bool arch) {
    model_w w;
    model_init(&w);
    for (size_t p = 0; p < N_PROFILES; p++) {
        check_layer(PROFILES[p], true, arch, &w);
        check_layer(PROFILES[p], false, arch, &w);
    }
    fprintf(stderr, "vk layer%s: worst logits NMSE exact %.2g, fast %.2g\n", arch ? " (new ops)" : "",
            layer_worst[arch][1], layer_worst[arch][0]);
    for (int i = 0; i < w.n_mem; i++) free(w.mem[i]);
}

Test(vk_layer, whole_layer_matches_reference_and_replays) {
    whole_layer(false);
}

Test(vk_layer, whole_layer_with_new_ops_matches_reference_and_replays) {
    whole_layer(true);
}

#else

Test(vk_layer, vulkan_not_built) {
    cr_skip_test("built without Vulkan (ELM_HAVE_VULKAN=0)");
}

#endif
