/* vk_ops_fixture.h: the fixture of the Vulkan op tests (test_vk_ops.c,
 * test_vk_layer.c): a backend under a limits profile with tensors in device
 * buffers or host memory, the profiles and types they run over, random
 * data, NMSE and exact quantization. Header-only, for the Vulkan tests. */
#ifndef ELM_TEST_VK_OPS_FIXTURE_H
#define ELM_TEST_VK_OPS_FIXTURE_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "engine/sched.h"
#include "backends/vulkan/vk_backend.h"
#include "quant/quant.h"
#include "support/op_ref.h"
#include "support/vk_fixture.h"

#define ELM_VKF_UNUSED __attribute__((unused))
#define MAX_TENSORS 48
#define MAX_HOSTS 256

/* The last two are not devices but corners: every path of the shaders on
 * 32-bit words with shared-memory reductions, and limits under which exact
 * products run as matrix-vector per token and attention uses small groups. */
static ELM_VKF_UNUSED const char *const PROFILES[] = {
    "", "pi5", "mali", "adreno,notex", "nofp16", "nosubgroup", "small-buffers", "discrete",
    "nofp16,nosubgroup,discrete,notex", "max_shared=768,max_invocations=64",
};
#define N_PROFILES (sizeof PROFILES / sizeof *PROFILES)

static ELM_VKF_UNUSED const int ALL_TYPES[] = {QT_F32,  QT_F16,  QT_BF16, QT_Q4_0, QT_Q4_1, QT_Q5_0, QT_Q5_1,
                                QT_Q8_0, QT_Q2_K, QT_Q3_K, QT_Q4_K, QT_Q5_K, QT_Q6_K};
#define N_ALL_TYPES (sizeof ALL_TYPES / sizeof *ALL_TYPES)
/* The types of the shared models, plus one 5-bit k-quant. */
static ELM_VKF_UNUSED const int SOME_TYPES[] = {QT_F32, QT_F16, QT_Q8_0, QT_Q4_0, QT_Q6_K, QT_Q5_K};
#define N_SOME_TYPES (sizeof SOME_TYPES / sizeof *SOME_TYPES)

/* ---------------------------------------------------------------- fixture */

typedef struct vfx {
    be_backend *be;
    elm_sched sched; /* runs the nodes the device cannot on the CPU, as the engine does */
    const be_iface *bi;
    const char *limits;
    be_buffer *bufs[MAX_TENSORS];
    void *hosts[MAX_HOSTS];
    be_tensor t[MAX_TENSORS];
    int n_bufs, n_hosts, n_t;
    char err[1024];
} vfx;

static ELM_VKF_UNUSED void vfx_open(vfx *f, const char *limits) {
    memset(f, 0, sizeof *f);
    f->be = vk_test_open(limits, f->err, sizeof f->err);
    f->bi = f->be->iface;
    f->limits = limits;
    elmi_sched_init(&f->sched, f->be, false, 1, false);
}

/* Frees the device buffers, keeping the backend. Host tensors stay: the
 * backend caches them by address, so they must outlive it (backend.h). */
static ELM_VKF_UNUSED void vfx_reset(vfx *f) {
    for (int i = 0; i < f->n_bufs; i++) f->bi->buffer_free(f->be, f->bufs[i]);
    f->n_bufs = f->n_t = 0;
}

static ELM_VKF_UNUSED void vfx_close(vfx *f) {
    vfx_reset(f);
    uint64_t errors = elmi_be_vk_validation_errors(f->be);
    elmi_sched_free(&f->sched);
    be_free(f->be);
    for (int i = 0; i < f->n_hosts; i++) free(f->hosts[i]);
    cr_assert_eq(errors, 0, "[%s] %llu validation errors", f->limits, (unsigned long long)errors);
}

static ELM_VKF_UNUSED be_tensor *new_tensor(vfx *f, int type, int64_t n0, int64_t n1, int64_t n2, const char *name) {
    cr_assert_lt(f->n_t, MAX_TENSORS);
    be_tensor *t = &f->t[f->n_t++];
    cr_assert(elmi_be_tensor_init(t, type, n0, n1, n2, 1, name), "tensor %s", name);
    return t;
}

/* A tensor in its own device buffer. */
static ELM_VKF_UNUSED be_tensor *dev_tensor(vfx *f, int type, int64_t n0, int64_t n1, int64_t n2, const char *name) {
    be_tensor *t = new_tensor(f, type, n0, n1, n2, name);
    be_buffer *b;
    cr_assert_eq(f->bi->buffer_alloc(f->be, elmi_be_tensor_nbytes(t), NULL, &b), ELM_OK, "[%s] %s", f->limits,
                 elmi_be_vk_last_error(f->be));
    f->bufs[f->n_bufs++] = b;
    t->buf = b;
    t->data = f->bi->buffer_host(f->be, b);
    return t;
}

/* A host tensor (immutable weights): a private copy of `bytes`. */
static ELM_VKF_UNUSED be_tensor *host_tensor(vfx *f, int type, int64_t n0, int64_t n1, const void *bytes, const char *name) {
    be_tensor *t = new_tensor(f, type, n0, n1, 1, name);
    size_t n = elmi_be_tensor_nbytes(t);
    void *p = malloc(n);
    memcpy(p, bytes, n);
    cr_assert_lt(f->n_hosts, MAX_HOSTS);
    f->hosts[f->n_hosts++] = p;
    t->data = p;
    return t;
}

static ELM_VKF_UNUSED void put(vfx *f, be_tensor *t, const void *src) {
    cr_assert_eq(f->bi->tensor_set(f->be, t, src, 0, elmi_be_tensor_nbytes(t)), ELM_OK, "[%s] set %s: %s", f->limits,
                 t->name, elmi_be_vk_last_error(f->be));
}

static ELM_VKF_UNUSED void get(vfx *f, const be_tensor *t, void *dst) {
    cr_assert_eq(f->bi->tensor_get(f->be, t, dst, 0, elmi_be_tensor_nbytes(t)), ELM_OK, "[%s] get %s", f->limits,
                 t->name);
}

static ELM_VKF_UNUSED void run(vfx *f, be_node *nodes, int n, bool exact) {
    be_graph g = {.nodes = nodes, .n_nodes = n, .exact = exact};
    elm_status st = elmi_sched_compute(&f->sched, &g, false, f->err, sizeof f->err);
    cr_assert_eq(st, ELM_OK, "[%s] graph_compute: %s", f->limits, f->err);
}

static ELM_VKF_UNUSED uint64_t fallbacks(vfx *f) {
    return f->sched.n_fallback_nodes;
}

/* ------------------------------------------------------------ references */

static ELM_VKF_UNUSED uint64_t rng = 0x2545F4914F6CDD1Dull;

static ELM_VKF_UNUSED float frand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
}

static ELM_VKF_UNUSED float *rand_floats(size_t n, float scale) {
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = frand() * scale;
    return p;
}

static ELM_VKF_UNUSED double nmse(const float *got, const double *want, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];
        num += d * d;
        den += want[i] * want[i];
    }
    return den > 0 ? num / den : num;
}

/* Quantizes rows x rows of k values to `type`; deq receives the exact
 * dequantization (the reference the kernels must reproduce). */
static ELM_VKF_UNUSED void *quantize(int type, const float *src, int64_t rows, int64_t k, float *deq) {
    void *q = elm_ref_quantize_rows(type, src, rows, k, deq);
    cr_assert_not_null(q, "cannot quantize %lld x %lld values to type %d", (long long)rows, (long long)k, type);
    return q;
}

/* Weight types whose fast mat-vecs have integer-dot variants (the
 * "idot" profile forces them on): activations go through Q8_0. */
static ELM_VKF_UNUSED bool idot_type(int type) {
    return type == QT_Q4_0 || type == QT_Q8_0 || type == QT_Q4_K || type == QT_Q5_K || type == QT_Q6_K;
}

/* Whether the device has shaderIntegerDotProduct (without it the "idot"
 * profile cannot force the int-dot mat-vecs on). */
static ELM_VKF_UNUSED bool vfx_int_dot(vfx *f) {
    elm_device_info info;
    cr_assert_eq(elmi_be_vk_device_info(f->be, &info), ELM_OK);
    return info.int_dot;
}

/* x (rows of k values, stride apart) rounded in place as the int-dot
 * mat-vecs see it: through quant/'s Q8_0 quantization, 32 values a block. */
static ELM_VKF_UNUSED void q8_round(float *x, int64_t rows, int64_t k, int64_t stride) {
    for (int64_t r = 0; r < rows; r++) free(quantize(QT_Q8_0, x + r * stride, 1, k, x + r * stride));
}

/* K for a ragged size of this type: a few blocks plus one more. */
static ELM_VKF_UNUSED int64_t ragged_k(int type) {
    const qtype_traits *tr = elmi_qtype_get(type);
    if (tr->block_size == QK_K) return 3 * QK_K;
    if (tr->block_size == 32) return 256 + 32;
    return 292;
}


#endif
