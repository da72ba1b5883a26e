/* selfcheck.c: the startup self-check of device "auto" (selfcheck.h).
 *
 * Drivers have miscompiled other engines' shaders into gibberish, so before
 * a context trusts a device it was not explicitly given, five small
 * problems run on it and on the CPU backend: a Q4_0 mat-vec, a Q4_0
 * mat-mat, a GQA attention over an F16 cache, and two pieces of a decode
 * layer as the engine builds them (the feed-forward half, and RoPE with
 * the cache stores read back through attention), so that the kernels
 * decode runs, fused ones included, are the ones checked. The device's result must
 * stay within a tolerance far wider than rounding (the device and the CPU
 * may round activations differently) and far narrower than a wrong kernel. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/status.h"
#include "engine/selfcheck.h"
#include "quant/quant.h"

enum { SC_K = 256, SC_N = 64, SC_T = 16, SC_HD = 64, SC_NH = 4, SC_NKV = 2, SC_ROWS = 16, SC_POS = 4,
       SC_QT = 4, SC_FF = 128 };

#define SC_MAX_T 12
#define SC_MAX_NODES 8

/* One problem: a small graph over tensors laid out in one buffer; nodes
 * name their tensors by index (-1: none), inputs get random bytes, and the
 * tensor `out` is compared. */
typedef struct sc_node {
    be_op op;
    int dst, src[3];
    int32_t iparams[4];
    float fparams[2];
} sc_node;

typedef struct sc_problem {
    const char *what;
    sc_node nodes[SC_MAX_NODES];
    int n_nodes, n_t, out;
    be_tensor t[SC_MAX_T];
    bool input[SC_MAX_T];
    int alias[SC_MAX_T];  /* 1 + the tensor whose bytes this one views (0: its own) */
    void *host[SC_MAX_T]; /* the inputs' bytes */
} sc_problem;

static uint32_t next_rand(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

static void fill(float *x, size_t n, uint32_t *seed) {
    for (size_t i = 0; i < n; i++) x[i] = (float)next_rand(seed) / (float)(1u << 24) * 2.0f - 1.0f;
}

/* Host bytes of tensor t of type `type`, from n random floats. */
static void *make_input(be_tensor *t, uint32_t *seed) {
    size_t n = (size_t)elmi_be_tensor_nelements(t), bytes = elmi_be_tensor_nbytes(t);
    float *f = elmi_malloc(n * sizeof *f);
    void *out = elmi_malloc(bytes);
    if (!f || !out) {
        elmi_free(f);
        elmi_free(out);
        return NULL;
    }
    fill(f, n, seed);
    if (t->type == QT_F32) memcpy(out, f, bytes);
    else if (t->type == BE_TYPE_I32)
        for (size_t i = 0; i < n; i++) ((int32_t *)out)[i] = SC_POS + (int32_t)i;
    else elmi_qtype_get(t->type)->from_float(f, out, (int64_t)n);
    elmi_free(f);
    return out;
}

static int add_tensor(sc_problem *p, bool input, int type, int64_t n0, int64_t n1, int64_t n2, const char *name) {
    int i = p->n_t++;
    elmi_be_tensor_init(&p->t[i], type, n0, n1, n2, 1, name);
    p->input[i] = input;
    return i;
}

static sc_node *add_node(sc_problem *p, be_op op, int dst, int s0, int s1, int s2) {
    sc_node *nd = &p->nodes[p->n_nodes++];
    *nd = (sc_node){.op = op, .dst = dst, .src = {s0, s1, s2}};
    return nd;
}

static void setup_matmul(sc_problem *p, int64_t T) {
    p->what = T == 1 ? "mul_mat (mat-vec, Q4_0)" : "mul_mat (mat-mat, Q4_0)";
    int w = add_tensor(p, true, QT_Q4_0, SC_K, SC_N, 1, "selfcheck.w");
    int x = add_tensor(p, true, QT_F32, SC_K, T, 1, "selfcheck.x");
    p->out = add_tensor(p, false, QT_F32, SC_N, T, 1, "selfcheck.y");
    add_node(p, BE_OP_MUL_MAT, p->out, w, x, -1);
}

static void setup_attention(sc_problem *p) {
    p->what = "attention (GQA, F16 cache)";
    int q = add_tensor(p, true, QT_F32, SC_HD, SC_NH, SC_QT, "selfcheck.q");
    int k = add_tensor(p, true, QT_F16, SC_HD * SC_NKV, SC_ROWS, 1, "selfcheck.k");
    int v = add_tensor(p, true, QT_F16, SC_HD * SC_NKV, SC_ROWS, 1, "selfcheck.v");
    p->out = add_tensor(p, false, QT_F32, SC_HD * SC_NH, SC_QT, 1, "selfcheck.att");
    sc_node *nd = add_node(p, BE_OP_ATTENTION, p->out, q, k, v);
    nd->iparams[0] = SC_POS, nd->iparams[1] = SC_NKV;
    nd->fparams[0] = 1.0f / sqrtf((float)SC_HD);
}

/* The feed-forward half of a decode layer, as engine/graph.c emits it, so
 * that the device runs the kernels decode runs (fused ones included). */
static void setup_ffn(sc_problem *p) {
    p->what = "decode feed-forward (rms_norm, mul_mat, glu, add; Q4_0)";
    int x = add_tensor(p, true, QT_F32, SC_K, 1, 1, "selfcheck.x");
    int nw = add_tensor(p, true, QT_F32, SC_K, 1, 1, "selfcheck.norm");
    int wg = add_tensor(p, true, QT_Q4_0, SC_K, SC_FF, 1, "selfcheck.gate");
    int wu = add_tensor(p, true, QT_Q4_0, SC_K, SC_FF, 1, "selfcheck.up");
    int wd = add_tensor(p, true, QT_Q4_0, SC_FF, SC_K, 1, "selfcheck.down");
    int xn = add_tensor(p, false, QT_F32, SC_K, 1, 1, "selfcheck.xn");
    int g = add_tensor(p, false, QT_F32, SC_FF, 1, 1, "selfcheck.g");
    int u = add_tensor(p, false, QT_F32, SC_FF, 1, 1, "selfcheck.u");
    int proj = add_tensor(p, false, QT_F32, SC_K, 1, 1, "selfcheck.proj");
    add_node(p, BE_OP_RMS_NORM, xn, x, nw, -1)->fparams[0] = 1e-5f;
    add_node(p, BE_OP_MUL_MAT, g, wg, xn, -1);
    add_node(p, BE_OP_MUL_MAT, u, wu, xn, -1);
    add_node(p, BE_OP_GLU, g, g, u, -1);
    add_node(p, BE_OP_MUL_MAT, proj, wd, g, -1);
    add_node(p, BE_OP_ADD, x, x, proj, -1);
    /* The next layer's norm writes over xn, as in a model. */
    add_node(p, BE_OP_RMS_NORM, xn, x, nw, -1)->fparams[0] = 1e-5f;
    p->out = xn;
}

/* RoPE of q and k and both cache stores (one dispatch where fused). */
static void setup_rope_kv(sc_problem *p) {
    p->what = "rope and kv_store (F16 cache)";
    int q = add_tensor(p, true, QT_F32, SC_HD, SC_NH, 1, "selfcheck.q");
    int k = add_tensor(p, true, QT_F32, SC_HD, SC_NKV, 1, "selfcheck.k");
    /* The cache store takes k as rows of n_embd_kv, the view the engine uses. */
    int k_rows = add_tensor(p, false, QT_F32, SC_HD * SC_NKV, 1, 1, "selfcheck.k_rows");
    p->alias[k_rows] = 1 + k;
    int v = add_tensor(p, true, QT_F32, SC_HD * SC_NKV, 1, 1, "selfcheck.v");
    int pos = add_tensor(p, true, BE_TYPE_I32, 1, 1, 1, "selfcheck.pos");
    int kc = add_tensor(p, false, QT_F16, SC_HD * SC_NKV, SC_ROWS, 1, "selfcheck.kc");
    int vc = add_tensor(p, false, QT_F16, SC_HD * SC_NKV, SC_ROWS, 1, "selfcheck.vc");
    int att = add_tensor(p, false, QT_F32, SC_HD * SC_NH, 1, 1, "selfcheck.att");
    for (int i = 0; i < 2; i++) {
        sc_node *nd = add_node(p, BE_OP_ROPE, i ? k : q, i ? k : q, pos, -1);
        nd->iparams[0] = BE_ROPE_NEOX, nd->iparams[1] = SC_HD;
        nd->fparams[0] = 10000.0f, nd->fparams[1] = 1.0f;
    }
    add_node(p, BE_OP_KV_STORE, kc, k_rows, -1, -1)->iparams[0] = SC_POS;
    add_node(p, BE_OP_KV_STORE, vc, v, -1, -1)->iparams[0] = SC_POS;
    /* The caches are read back through attention, in F32. */
    sc_node *nd = add_node(p, BE_OP_ATTENTION, att, q, kc, vc);
    nd->iparams[0] = SC_POS, nd->iparams[1] = SC_NKV;
    nd->fparams[0] = 1.0f / sqrtf((float)SC_HD);
    p->out = att;
}

#define SC_N_PROBLEMS 5

static void free_problem(sc_problem *p) {
    for (int i = 0; i < SC_MAX_T; i++) elmi_free(p->host[i]);
}

static elm_status make_problem(sc_problem *p, int which, uint32_t seed) {
    memset(p, 0, sizeof *p);
    switch (which) {
    case 0: setup_matmul(p, 1); break;
    case 1: setup_matmul(p, SC_T); break;
    case 2: setup_attention(p); break;
    case 3: setup_ffn(p); break;
    default: setup_rope_kv(p); break;
    }
    for (int i = 0; i < p->n_t; i++)
        if (p->input[i] && !(p->host[i] = make_input(&p->t[i], &seed))) return ELM_ERR_NO_MEMORY;
    return ELM_OK;
}

/* Places p's tensors in one buffer of be and writes the inputs (the
 * caches start as zeros). */
static elm_status place(be_backend *be, sc_problem *p, be_tensor *t, be_buffer **buf) {
    const be_iface *bi = be->iface;
    size_t total = 0;
    memcpy(t, p->t, sizeof p->t);
    for (int i = 0; i < p->n_t; i++) {
        if (p->alias[i]) continue;
        t[i].offs = total;
        total += (elmi_be_tensor_nbytes(&t[i]) + 255) & ~(size_t)255;
    }
    for (int i = 0; i < p->n_t; i++)
        if (p->alias[i]) t[i].offs = t[p->alias[i] - 1].offs;
    ELM_TRY(bi->buffer_alloc(be, total, NULL, buf));
    char *host = bi->buffer_host(be, *buf);
    void *zeros = elmi_calloc(1, total);
    elm_status st = zeros ? ELM_OK : ELM_ERR_NO_MEMORY;
    for (int i = 0; i < p->n_t && st == ELM_OK; i++) {
        t[i].buf = *buf;
        t[i].data = host ? host + t[i].offs : NULL;
        if (!p->alias[i]) st = bi->tensor_set(be, &t[i], p->host[i] ? p->host[i] : zeros, 0, elmi_be_tensor_nbytes(&t[i]));
    }
    elmi_free(zeros);
    return st;
}

/* Runs p's graph on be; the result into out (the floats of tensor p->out). */
static elm_status run_on(be_backend *be, sc_problem *p, float *out, char *err, size_t err_size) {
    const be_iface *bi = be->iface;
    be_tensor t[SC_MAX_T];
    be_buffer *buf = NULL;
    elm_status st = place(be, p, t, &buf);
    if (st != ELM_OK) {
        if (buf) bi->buffer_free(be, buf);
        return elmi_errorf(err, err_size, st, "%s: cannot place the tensors", p->what);
    }
    be_node nodes[SC_MAX_NODES];
    for (int i = 0; i < p->n_nodes; i++) {
        const sc_node *s = &p->nodes[i];
        nodes[i] = (be_node){.op = s->op, .dst = &t[s->dst]};
        for (int j = 0; j < 3; j++) nodes[i].src[j] = s->src[j] < 0 ? NULL : &t[s->src[j]];
        memcpy(nodes[i].iparams, s->iparams, sizeof s->iparams);
        memcpy(nodes[i].fparams, s->fparams, sizeof s->fparams);
        /* A node the device refuses runs on the CPU (engine/sched.c):
         * nothing of the device's to check. */
        if (!bi->supports_op(be, &nodes[i])) st = ELM_ERR_UNSUPPORTED;
    }
    be_graph g = {.nodes = nodes, .n_nodes = p->n_nodes, .exact = false};
    if (st == ELM_OK && bi->graph_prepare) st = bi->graph_prepare(be, &g, err, err_size);
    if (st == ELM_OK) st = bi->graph_compute(be, &g, err, err_size);
    if (st == ELM_OK) st = bi->tensor_get(be, &t[p->out], out, 0, elmi_be_tensor_nbytes(&t[p->out]));
    bi->buffer_free(be, buf);
    return st;
}

/* Within 2% of the reference's largest magnitude, everywhere. */
static bool close_enough(const float *got, const float *ref, size_t n, double *worst) {
    double peak = 0, err = 0;
    for (size_t i = 0; i < n; i++) peak = fmax(peak, fabs(ref[i]));
    for (size_t i = 0; i < n; i++) {
        double e = isfinite(got[i]) ? fabs((double)got[i] - ref[i]) : INFINITY;
        if (!(e <= err)) err = e;
    }
    *worst = err;
    return err <= 0.02 * peak + 1e-4;
}

static elm_status check_one(be_backend *dev, be_backend *cpu, int which, char *err, size_t err_size) {
    sc_problem p;
    elm_status st = make_problem(&p, which, 0x5e1fc4ecu + (uint32_t)which);
    size_t n = (size_t)elmi_be_tensor_nelements(&p.t[p.out]);
    float *got = elmi_malloc(n * sizeof *got), *ref = elmi_malloc(n * sizeof *ref);
    char msg[256] = "";
    bool skipped = false;
    if (st == ELM_OK && (!got || !ref)) st = ELM_ERR_NO_MEMORY;
    if (st == ELM_OK && (st = run_on(cpu, &p, ref, msg, sizeof msg)) != ELM_OK)
        elmi_errorf(err, err_size, st, "self-check: %s on the CPU: %s", p.what, msg);
    else if (st == ELM_OK && (st = run_on(dev, &p, got, msg, sizeof msg)) == ELM_ERR_UNSUPPORTED)
        st = ELM_OK, skipped = true;
    else if (st != ELM_OK)
        elmi_errorf(err, err_size, st, "self-check: %s failed on the device: %s", p.what, msg);
    double worst = 0;
    if (st == ELM_OK && !skipped && !close_enough(got, ref, n, &worst))
        st = elmi_errorf(err, err_size, ELM_ERR_DEVICE,
                         "self-check: %s differs from the CPU's result (largest error %.3g)", p.what, worst);
    if (st == ELM_ERR_NO_MEMORY && err && err_size && !err[0])
        elmi_errorf(err, err_size, st, "self-check: out of memory");
    elmi_free(got);
    elmi_free(ref);
    free_problem(&p);
    return st;
}

elm_status elmi_device_selfcheck(be_backend *dev, char *err, size_t err_size) {
    be_backend *cpu = NULL;
    elm_status st = elmi_be_cpu_new(1, &cpu);
    if (st != ELM_OK) return elmi_errorf(err, err_size, st, "self-check: cannot start the CPU backend");
    for (int which = 0; which < SC_N_PROBLEMS && st == ELM_OK; which++) st = check_one(dev, cpu, which, err, err_size);
    be_free(cpu);
    return st;
}
