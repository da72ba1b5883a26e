/* test_vk_fuse_rope_kv.c: ROPE q, ROPE k, KV_STORE K <- k, KV_STORE V <- v
 * (the nodes engine/graph.c emits before ATTENTION) fused into one dispatch
 * (backends/vulkan/op_rope_kv.c), under the limits profiles the other
 * Vulkan tests use, each against the same profile with ",nofuse":
 *   - q and k rotated as the scalar reference does (NMSE 1e-8, as
 *     test_vk_ops's ROPE) and the cache rows the stores write holding the
 *     rotated k and v converted to the cache type (bit-exact), every other
 *     row as it was;
 *   - every output bit-equal to the unfused plan's;
 *   - vulkan.fused_nodes grown by 4 and fewer dispatches than unfused;
 *   - a pattern that must not fuse (ropes with other parameters, a rope
 *     that is not in place) not fused, and still right.
 * Cases: T 1 and 5, F32 and F16 caches, NORM and NEOX, with and without
 * frequency factors, partial rotation, rings that wrap, GQA. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if ELM_HAVE_VULKAN
#include "support/op_ref.h"
#include "support/vk_ops_fixture.h"

typedef struct rkv_case {
    int cache_type, mode, n_rot, hd, nh, nkv, n_rows, pos, T;
    bool ff, ring;
} rkv_case;

static const rkv_case CASES[] = {
    /* type    mode          n_rot  hd nh nkv rows  pos  T   ff     ring */
    {QT_F32, BE_ROPE_NORM, 64, 64, 4, 4, 16, 3, 1, false, false},
    {QT_F16, BE_ROPE_NEOX, 64, 64, 4, 2, 16, 0, 5, false, false},
    {QT_F16, BE_ROPE_NORM, 32, 64, 6, 2, 16, 7, 5, true, false},
    {QT_F32, BE_ROPE_NEOX, 48, 64, 2, 1, 16, 9, 1, true, false},
    {QT_F16, BE_ROPE_NEOX, 64, 64, 4, 2, 8, 13, 5, false, true},
    {QT_F32, BE_ROPE_NORM, 64, 128, 2, 2, 8, 6, 5, true, true},
    {QT_F16, BE_ROPE_NORM, 40, 40, 3, 1, 1100, 1000, 1, true, false},
    /* 17 NEOX pairs: F16 words cannot take them, so no fusion without 16-bit storage */
    {QT_F16, BE_ROPE_NEOX, 34, 64, 2, 1, 16, 4, 5, false, false},
};
#define N_CASES (sizeof CASES / sizeof *CASES)

/* The pattern, or one that must not fuse. */
typedef enum { PATTERN, OTHER_BASE, NOT_IN_PLACE } variant;

/* Inputs of a case, the same for every run. */
typedef struct rkv_data {
    float *q, *k, *v, ff[64];
    int32_t pos[8];
    uint8_t *kc, *vc; /* the caches before */
    size_t cache_bytes;
} rkv_data;

typedef struct rkv_out {
    float *q, *k;
    uint8_t *kc, *vc;
    uint64_t fused, dispatches;
} rkv_out;

static size_t elem(int type) { return type == QT_F16 ? 2 : 4; }

static void data_init(const rkv_case *c, rkv_data *d) {
    d->q = rand_floats((size_t)(c->hd * c->nh * c->T), 1.0f);
    d->k = rand_floats((size_t)(c->hd * c->nkv * c->T), 1.0f);
    d->v = rand_floats((size_t)(c->hd * c->nkv * c->T), 1.0f);
    for (int i = 0; i < 64; i++) d->ff[i] = 1.0f + (float)i / 8;
    for (int t = 0; t < c->T; t++) d->pos[t] = c->pos + t;
    d->cache_bytes = (size_t)(c->hd * c->nkv * c->n_rows) * elem(c->cache_type);
    d->kc = malloc(d->cache_bytes), d->vc = malloc(d->cache_bytes);
    for (size_t i = 0; i < d->cache_bytes; i++) d->kc[i] = (uint8_t)(i * 7 + 1), d->vc[i] = (uint8_t)(i * 13 + 5);
}

static void data_free(rkv_data *d) {
    free(d->q), free(d->k), free(d->v), free(d->kc), free(d->vc);
}

static void out_free(rkv_out *o) {
    free(o->q), free(o->k), free(o->kc), free(o->vc);
}

/* The (n, T) view of a (hd, n_head, T) tensor's bytes. */
static be_tensor *rows_view(vfx *f, const be_tensor *x, const char *name) {
    be_tensor *r = new_tensor(f, QT_F32, x->ne[0] * x->ne[1], x->ne[2], 1, name);
    r->buf = x->buf, r->offs = x->offs, r->data = x->data;
    return r;
}

static be_vk_stats stats(vfx *f) {
    be_vk_stats s;
    cr_assert_eq(elmi_be_vk_get_stats(f->be, &s), ELM_OK);
    return s;
}

static void run_case(vfx *f, const rkv_case *c, variant var, const rkv_data *d, rkv_out *o) {
    int64_t kn = (int64_t)c->hd * c->nkv;
    be_tensor *Q = dev_tensor(f, QT_F32, c->hd, c->nh, c->T, "q3"), *K = dev_tensor(f, QT_F32, c->hd, c->nkv, c->T, "k3");
    be_tensor *V = dev_tensor(f, QT_F32, kn, c->T, 1, "v"), *P = dev_tensor(f, BE_TYPE_I32, c->T, 1, 1, "pos");
    be_tensor *KC = dev_tensor(f, c->cache_type, kn, c->n_rows, 1, "k_cache");
    be_tensor *VC = dev_tensor(f, c->cache_type, kn, c->n_rows, 1, "v_cache");
    be_tensor *FF = c->ff ? host_tensor(f, QT_F32, c->n_rot / 2, 1, d->ff, "ff") : NULL;
    be_tensor *Qd = var == NOT_IN_PLACE ? dev_tensor(f, QT_F32, c->hd, c->nh, c->T, "q_out") : Q;
    put(f, Q, d->q), put(f, K, d->k), put(f, V, d->v), put(f, P, d->pos), put(f, KC, d->kc), put(f, VC, d->vc);
    be_node nodes[4] = {
        {.op = BE_OP_ROPE, .dst = Qd, .src = {Q, P, FF}, .iparams = {c->mode, c->n_rot, 4096},
         .fparams = {10000.0f, 1.0f, 0.0f, 1.0f, 32.0f, 1.0f}},
        {.op = BE_OP_ROPE, .dst = K, .src = {K, P, FF}, .iparams = {c->mode, c->n_rot, 4096},
         .fparams = {var == OTHER_BASE ? 500000.0f : 10000.0f, 1.0f, 0.0f, 1.0f, 32.0f, 1.0f}},
        {.op = BE_OP_KV_STORE, .dst = KC, .src = {rows_view(f, K, "k")}, .iparams = {c->pos, c->ring}},
        {.op = BE_OP_KV_STORE, .dst = VC, .src = {V}, .iparams = {c->pos, c->ring}},
    };
    /* Drops the recorded plans, so that this graph is planned and counted. */
    elmi_be_vk_release_weights(f->be);
    be_vk_stats s0 = stats(f);
    run(f, nodes, 4, true);
    be_vk_stats s1 = stats(f);
    o->fused = s1.n_fused_nodes - s0.n_fused_nodes;
    o->dispatches = s1.n_dispatches - s0.n_dispatches;
    size_t qb = elmi_be_tensor_nbytes(Q), kb = elmi_be_tensor_nbytes(K);
    o->q = malloc(qb), o->k = malloc(kb), o->kc = malloc(d->cache_bytes), o->vc = malloc(d->cache_bytes);
    get(f, Qd, o->q), get(f, K, o->k), get(f, KC, o->kc), get(f, VC, o->vc);
    vfx_reset(f);
}

static double rope_nmse(const rkv_case *c, const float *ff, const float *x, const float *got, int nh, double base,
                        const int32_t *pos) {
    elm_ref_rope r = {c->mode, c->n_rot, c->hd, nh, c->T, base, 1.0, 1.0};
    size_t n = (size_t)(c->hd * nh * c->T);
    double *want = malloc(n * sizeof *want);
    elm_ref_rope_apply(&r, x, pos, c->ff ? ff : NULL, want);
    double e = nmse(got, want, n);
    free(want);
    return e;
}

/* Cache rows the stores write hold x's rows converted; the others are as before. */
static void check_cache(const char *prof, const rkv_case *c, const char *what, const uint8_t *got,
                        const uint8_t *before, const float *x) {
    int64_t kn = (int64_t)c->hd * c->nkv, row[8];
    size_t es = elem(c->cache_type), rb = (size_t)kn * es;
    elm_ref_kv_rows(c->pos, c->T, c->n_rows, c->ring, row);
    uint8_t *want = malloc(rb * (size_t)c->n_rows);
    memcpy(want, before, rb * (size_t)c->n_rows);
    for (int t = 0; t < c->T; t++)
        for (int64_t i = 0; i < kn; i++) {
            uint8_t *w = want + (size_t)row[t] * rb + (size_t)i * es;
            float v = x[t * kn + i];
            if (c->cache_type == QT_F16) {
                uint16_t h = elmi_f32_to_fp16(v);
                memcpy(w, &h, 2);
            } else {
                memcpy(w, &v, 4);
            }
        }
    cr_expect(!memcmp(got, want, rb * (size_t)c->n_rows), "[%s] %s cache differs from the stored rows (pos %d T %d)",
              prof, what, c->pos, c->T);
    free(want);
}

static void check_against_ref(const char *prof, const rkv_case *c, variant var, const rkv_data *d,
                              const rkv_out *o) {
    double eq = rope_nmse(c, d->ff, d->q, o->q, c->nh, 10000.0, d->pos);
    double ek = rope_nmse(c, d->ff, d->k, o->k, c->nkv, var == OTHER_BASE ? 500000.0 : 10000.0, d->pos);
    cr_expect_leq(eq, 1e-8, "[%s] q NMSE %.3g", prof, eq);
    cr_expect_leq(ek, 1e-8, "[%s] k NMSE %.3g", prof, ek);
    check_cache(prof, c, "K", o->kc, d->kc, o->k);
    check_cache(prof, c, "V", o->vc, d->vc, d->v);
}

static bool words_only(vfx *f) {
    elm_device_info info;
    cr_assert_eq(elmi_be_vk_device_info(f->be, &info), ELM_OK);
    return !info.storage16;
}

/* One case under a profile and under it with nofuse. */
static void check_case(vfx *fu, vfx *un, size_t ci, variant var) {
    const rkv_case *c = &CASES[ci];
    rkv_data d;
    data_init(c, &d);
    rkv_out a, b;
    run_case(fu, c, var, &d, &a);
    run_case(un, c, var, &d, &b);
    char prof[160];
    snprintf(prof, sizeof prof, "%s, case %zu, variant %d", fu->limits, ci, (int)var);
    check_against_ref(prof, c, var, &d, &a);
    size_t qb = (size_t)(c->hd * c->nh * c->T) * 4, kb = (size_t)(c->hd * c->nkv * c->T) * 4;
    cr_expect(!memcmp(a.q, b.q, qb) && !memcmp(a.k, b.k, kb), "[%s] q or k differs from the unfused plan's", prof);
    cr_expect(!memcmp(a.kc, b.kc, d.cache_bytes) && !memcmp(a.vc, b.vc, d.cache_bytes),
              "[%s] a cache differs from the unfused plan's", prof);
    bool fuses = var == PATTERN && !(c->mode == BE_ROPE_NEOX && c->n_rot % 4 && c->cache_type == QT_F16 && words_only(fu));
    cr_expect_eq(a.fused, fuses ? 4u : 0u, "[%s] %llu nodes fused", prof, (unsigned long long)a.fused);
    cr_expect_eq(b.fused, 0, "[%s] nofuse fused %llu nodes", prof, (unsigned long long)b.fused);
    if (fuses)
        cr_expect_lt(a.dispatches, b.dispatches, "[%s] %llu dispatches fused, %llu not", prof,
                     (unsigned long long)a.dispatches, (unsigned long long)b.dispatches);
    else
        cr_expect_eq(a.dispatches, b.dispatches, "[%s] %llu dispatches, %llu with nofuse", prof,
                     (unsigned long long)a.dispatches, (unsigned long long)b.dispatches);
    out_free(&a), out_free(&b);
    data_free(&d);
}

/* limits with "fuse" (every fuser on every device), and with "nofuse". */
static void check_profile(const char *limits) {
    char fuse[96], nofuse[96];
    snprintf(fuse, sizeof fuse, "%s%sfuse", limits, *limits ? "," : "");
    snprintf(nofuse, sizeof nofuse, "%s%snofuse", limits, *limits ? "," : "");
    vfx fu, un;
    vfx_open(&fu, fuse);
    vfx_open(&un, nofuse);
    for (size_t i = 0; i < N_CASES; i++) check_case(&fu, &un, i, PATTERN);
    check_case(&fu, &un, 1, OTHER_BASE);
    check_case(&fu, &un, 2, NOT_IN_PLACE);
    cr_expect_eq(fallbacks(&fu), 0, "[%s] unexpected CPU fallbacks", limits);
    cr_expect_eq(fallbacks(&un), 0, "[%s] unexpected CPU fallbacks", nofuse);
    vfx_close(&fu);
    vfx_close(&un);
}

Test(vk_fuse_rope_kv, default) { check_profile(""); }
Test(vk_fuse_rope_kv, pi5) { check_profile("pi5"); }
Test(vk_fuse_rope_kv, nosubgroup) { check_profile("nosubgroup"); }
Test(vk_fuse_rope_kv, nofp16) { check_profile("nofp16"); }
Test(vk_fuse_rope_kv, discrete) { check_profile("discrete"); }
Test(vk_fuse_rope_kv, small_buffers) { check_profile("small-buffers"); }

#else

Test(vk_fuse_rope_kv, vulkan_not_built) {
    cr_skip_test("built without Vulkan (ELM_HAVE_VULKAN=0)");
}

#endif
