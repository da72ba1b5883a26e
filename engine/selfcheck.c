/* selfcheck.c: the startup self-check of device "auto" (selfcheck.h).
 *
 * Drivers have miscompiled other engines' shaders into gibberish, so before
 * a context trusts a device it was not explicitly given, three small
 * problems run on it and on the CPU backend: a Q4_0 mat-vec, a Q4_0
 * mat-mat and a GQA attention over an F16 cache. The device's result must
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
       SC_QT = 4 };

/* One problem: its tensors (data in host arrays), laid out in one buffer. */
typedef struct sc_problem {
    const char *what;
    be_node node;
    be_tensor t[4]; /* src0, src1, src2, dst; unused ones type -1 */
    void *host[4];  /* the inputs' bytes */
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
    else elmi_qtype_get(t->type)->from_float(f, out, (int64_t)n);
    elmi_free(f);
    return out;
}

static void setup_matmul(sc_problem *p, int64_t T) {
    p->what = T == 1 ? "mul_mat (mat-vec, Q4_0)" : "mul_mat (mat-mat, Q4_0)";
    elmi_be_tensor_init(&p->t[0], QT_Q4_0, SC_K, SC_N, 1, 1, "selfcheck.w");
    elmi_be_tensor_init(&p->t[1], QT_F32, SC_K, T, 1, 1, "selfcheck.x");
    elmi_be_tensor_init(&p->t[3], QT_F32, SC_N, T, 1, 1, "selfcheck.y");
    p->t[2].type = -1;
    p->node = (be_node){.op = BE_OP_MUL_MAT};
}

static void setup_attention(sc_problem *p) {
    p->what = "attention (GQA, F16 cache)";
    elmi_be_tensor_init(&p->t[0], QT_F32, SC_HD, SC_NH, SC_QT, 1, "selfcheck.q");
    elmi_be_tensor_init(&p->t[1], QT_F16, SC_HD * SC_NKV, SC_ROWS, 1, 1, "selfcheck.k");
    elmi_be_tensor_init(&p->t[2], QT_F16, SC_HD * SC_NKV, SC_ROWS, 1, 1, "selfcheck.v");
    elmi_be_tensor_init(&p->t[3], QT_F32, SC_HD * SC_NH, SC_QT, 1, 1, "selfcheck.att");
    p->node = (be_node){.op = BE_OP_ATTENTION,
                        .iparams = {SC_POS, SC_NKV, 0, 0},
                        .fparams = {1.0f / sqrtf((float)SC_HD), 0}};
}

static void free_problem(sc_problem *p) {
    for (int i = 0; i < 4; i++) elmi_free(p->host[i]);
}

static elm_status make_problem(sc_problem *p, int which, uint32_t seed) {
    memset(p, 0, sizeof *p);
    if (which < 2) setup_matmul(p, which == 0 ? 1 : SC_T);
    else setup_attention(p);
    for (int i = 0; i < 3; i++)
        if (p->t[i].type >= 0 && !(p->host[i] = make_input(&p->t[i], &seed))) return ELM_ERR_NO_MEMORY;
    return ELM_OK;
}

/* Runs p's node on be; its result into out (dst's floats). */
static elm_status run_on(be_backend *be, sc_problem *p, float *out, char *err, size_t err_size) {
    const be_iface *bi = be->iface;
    be_tensor t[4];
    memcpy(t, p->t, sizeof t);
    size_t total = 0;
    for (int i = 0; i < 4; i++) {
        if (t[i].type < 0) continue;
        t[i].offs = total;
        total += (elmi_be_tensor_nbytes(&t[i]) + 255) & ~(size_t)255;
    }
    be_buffer *buf = NULL;
    elm_status st = bi->buffer_alloc(be, total, NULL, &buf);
    if (st != ELM_OK) return elmi_errorf(err, err_size, st, "%s: no buffer of %zu bytes", p->what, total);
    char *host = bi->buffer_host(be, buf);
    for (int i = 0; i < 4 && st == ELM_OK; i++) {
        if (t[i].type < 0) continue;
        t[i].buf = buf;
        t[i].data = host ? host + t[i].offs : NULL;
        if (p->host[i]) st = bi->tensor_set(be, &t[i], p->host[i], 0, elmi_be_tensor_nbytes(&t[i]));
    }
    be_node nd = p->node;
    nd.dst = &t[3];
    for (int i = 0; i < 3; i++) nd.src[i] = t[i].type < 0 ? NULL : &t[i];
    be_graph g = {.nodes = &nd, .n_nodes = 1, .exact = false};
    /* A node the device refuses runs on the CPU (engine/sched.c): nothing
     * of the device's to check. */
    if (st == ELM_OK && !bi->supports_op(be, &nd)) st = ELM_ERR_UNSUPPORTED;
    if (st == ELM_OK && bi->graph_prepare) st = bi->graph_prepare(be, &g, err, err_size);
    if (st == ELM_OK) st = bi->graph_compute(be, &g, err, err_size);
    if (st == ELM_OK) st = bi->tensor_get(be, &t[3], out, 0, elmi_be_tensor_nbytes(&t[3]));
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
    size_t n = (size_t)elmi_be_tensor_nelements(&p.t[3]);
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
    for (int which = 0; which < 3 && st == ELM_OK; which++) st = check_one(dev, cpu, which, err, err_size);
    be_free(cpu);
    return st;
}
