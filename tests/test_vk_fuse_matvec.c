/* test_vk_fuse_matvec.c: one token through an RMS norm, the mat-vecs that
 * read its output, and a GLU or a residual add (the decode layer of
 * engine/graph.c), fused into one dispatch per weight type
 * (backends/vulkan/fuse_matvec.c), under several limits profiles, each
 * against the same profile with ",nofuse":
 *   - every output tensor against the scalar references (op_ref.c), in
 *     exact graphs, and in fast ones with the int-dot mat-vecs forced on
 *     (activations through Q8_0 in the reference);
 *   - every output close to the unfused plan's (bit-equal without a norm:
 *     the dot products are the same kernel's);
 *   - vulkan.fused_nodes grown by exactly the nodes the case may fuse, and
 *     fewer dispatches than unfused;
 *   - what must not fuse (two tokens, a norm whose output a later node
 *     reads, a 5-binding layout) is not fused and still right;
 *   - on CPU devices, the fused texel kernels: taken by default for block
 *     types only, and read texels. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if ELM_HAVE_VULKAN
#include "support/op_ref.h"
#include "support/vk_ops_fixture.h"

enum { QKV, GLU, RESID };

typedef struct mvf_case {
    const char *name;
    int kind, n_mm, types[3];
    int64_t K, N[3], T;
    bool norm, bias;
    bool xn_read;   /* a later node reads the norm's output */
    bool out_dead;  /* a later node overwrites up (GLU) or the product (RESID) */
    bool swapped;   /* RESID: ADD(r = product + r) */
    int act;
    int fused;      /* nodes the fusers should take */
    bool same_out;  /* the second mat-vec writes over the first's output */
} mvf_case;

static const mvf_case CASES[] = {
    {"norm+qkv q8_0", QKV, 3, {QT_Q8_0, QT_Q8_0, QT_Q8_0}, 256, {256, 64, 64}, 1, true, false, false, false, false, 0, 4, false},
    {"norm+qkv q4_k/q4_k/q6_k", QKV, 3, {QT_Q4_K, QT_Q4_K, QT_Q6_K}, 512, {200, 70, 70}, 1, true, false, false, false, false, 0, 4, false},
    {"qkv+bias f16", QKV, 3, {QT_F16, QT_F16, QT_F16}, 96, {96, 33, 33}, 1, false, true, false, false, false, 0, 3, false},
    {"norm+qkv+bias q4_0", QKV, 3, {QT_Q4_0, QT_Q4_0, QT_Q4_0}, 128, {128, 32, 32}, 1, true, true, false, false, false, 0, 4, false},
    {"norm read later q5_k", QKV, 2, {QT_Q5_K, QT_Q5_K}, 256, {130, 130}, 1, true, false, true, false, false, 0, 2, false},
    {"norm+gate+up silu q4_k", GLU, 2, {QT_Q4_K, QT_Q4_K}, 256, {300, 300}, 1, true, false, false, true, false, 0, 4, false},
    {"norm+gate+up gelu f32, up read", GLU, 2, {QT_F32, QT_F32}, 64, {90, 90}, 1, true, false, false, false, false, 1, 4, false},
    {"gate/up of two types", GLU, 2, {QT_Q8_0, QT_Q6_K}, 256, {96, 96}, 1, true, false, false, true, false, 0, 3, false},
    {"down+add q6_k", RESID, 1, {QT_Q6_K}, 768, {256}, 1, false, false, false, true, false, 0, 2, false},
    {"out+add swapped q8_0, product read", RESID, 1, {QT_Q8_0}, 256, {100}, 1, false, false, false, false, true, 0, 2, false},
    {"norm+matvec+add f16", RESID, 1, {QT_F16}, 128, {128}, 1, true, false, false, true, false, 0, 3, false},
    /* Mat-vecs of one group run in no order: these two must not share a dispatch. */
    {"two mat-vecs into one output", QKV, 2, {QT_Q8_0, QT_Q8_0}, 256, {64, 64}, 1, true, false, false, false, false, 0, 0, true},
    {"two tokens", QKV, 3, {QT_Q8_0, QT_Q8_0, QT_Q8_0}, 256, {64, 32, 32}, 2, true, false, false, false, false, 0, 0, false},
};
#define N_CASES (sizeof CASES / sizeof *CASES)

static const char *const FUSE_PROFILES[] = {
    "", "pi5", "nosubgroup", "nofp16", "discrete", "max_shared=768,max_invocations=64", "idot",
};
#define N_FUSE_PROFILES (sizeof FUSE_PROFILES / sizeof *FUSE_PROFILES)

/* Inputs of a case, the same for every run. */
typedef struct mvf_data {
    float *x, *nw, *r, *deq[3], *bias[3];
    void *q[3];
} mvf_data;

#define MAX_OUT 6

/* What a run leaves: each output tensor's values. */
typedef struct mvf_out {
    float *v[MAX_OUT];
    size_t n[MAX_OUT];
    const char *what[MAX_OUT];
    int n_out;
    uint64_t fused, dispatches, texel; /* texel: dispatches that read texel buffers */
} mvf_out;

static void data_init(const mvf_case *c, mvf_data *d) {
    memset(d, 0, sizeof *d);
    d->x = rand_floats((size_t)(c->K * c->T), 1.0f);
    d->nw = rand_floats((size_t)c->K, 1.0f);
    d->r = rand_floats((size_t)(c->N[0] * c->T), 1.0f);
    for (int m = 0; m < c->n_mm; m++) {
        float *w = rand_floats((size_t)(c->K * c->N[m]), 0.5f);
        d->deq[m] = malloc((size_t)(c->K * c->N[m]) * sizeof(float));
        d->q[m] = quantize(c->types[m], w, c->N[m], c->K, d->deq[m]);
        free(w);
        d->bias[m] = rand_floats((size_t)c->N[m], 0.5f);
    }
}

static void data_free(mvf_data *d) {
    free(d->x), free(d->nw), free(d->r);
    for (int m = 0; m < 3; m++) free(d->deq[m]), free(d->q[m]), free(d->bias[m]);
}

static void out_free(mvf_out *o) {
    for (int i = 0; i < o->n_out; i++) free(o->v[i]);
}

static be_vk_stats stats(vfx *f) {
    be_vk_stats s;
    cr_assert_eq(elmi_be_vk_get_stats(f->be, &s), ELM_OK);
    return s;
}

static void keep(vfx *f, mvf_out *o, const be_tensor *t, const char *what) {
    cr_assert_lt(o->n_out, MAX_OUT);
    size_t n = (size_t)elmi_be_tensor_nelements(t);
    float *v = malloc(n * sizeof *v);
    get(f, t, v);
    o->v[o->n_out] = v, o->n[o->n_out] = n, o->what[o->n_out++] = what;
}

static void run_case(vfx *f, const mvf_case *c, const mvf_data *d, bool exact, mvf_out *o) {
    memset(o, 0, sizeof *o);
    be_tensor *X = dev_tensor(f, QT_F32, c->K, c->T, 1, "x"), *XN = dev_tensor(f, QT_F32, c->K, c->T, 1, "xn");
    be_tensor *NW = host_tensor(f, QT_F32, c->K, 1, d->nw, "norm");
    be_tensor *R = dev_tensor(f, QT_F32, c->N[0], c->T, 1, "resid"), *TMP = dev_tensor(f, QT_F32, c->K, c->T, 1, "tmp");
    be_tensor *W[3], *B[3], *D[3];
    put(f, X, d->x), put(f, R, d->r);
    be_node nodes[8];
    int n = 0;
    memset(nodes, 0, sizeof nodes);
    if (c->norm) nodes[n++] = (be_node){.op = BE_OP_RMS_NORM, .dst = XN, .src = {X, NW}, .fparams = {1e-5f}};
    for (int m = 0; m < c->n_mm; m++) {
        W[m] = host_tensor(f, c->types[m], c->K, c->N[m], d->q[m], "w");
        B[m] = c->bias ? host_tensor(f, QT_F32, c->N[m], 1, d->bias[m], "b") : NULL;
        D[m] = m == 1 && c->same_out ? D[0] : dev_tensor(f, QT_F32, c->N[m], c->T, 1, "out");
        nodes[n++] = (be_node){.op = BE_OP_MUL_MAT, .dst = D[m], .src = {W[m], c->norm ? XN : X, B[m]}};
    }
    if (c->kind == GLU) nodes[n++] = (be_node){.op = BE_OP_GLU, .dst = D[0], .src = {D[0], D[1]}, .iparams = {c->act}};
    if (c->kind == RESID)
        nodes[n++] = (be_node){.op = BE_OP_ADD, .dst = R, .src = {c->swapped ? D[0] : R, c->swapped ? R : D[0]}};
    /* xn is read later, or written over as the next layer's norm does
     * (a norm is absorbed only when nothing can see its output). */
    if (c->xn_read) nodes[n++] = (be_node){.op = BE_OP_SCALE, .dst = TMP, .src = {XN}, .fparams = {2.0f}};
    else if (c->norm) nodes[n++] = (be_node){.op = BE_OP_SCALE, .dst = XN, .src = {X}, .fparams = {1.0f}};
    /* Overwrites the epilogue's intermediate without reading it. */
    if (c->out_dead) nodes[n++] = (be_node){.op = BE_OP_SCALE, .dst = D[c->kind == GLU ? 1 : 0], .src = {R}, .fparams = {3.0f}};
    elmi_be_vk_release_weights(f->be);
    be_vk_stats s0 = stats(f);
    run(f, nodes, n, exact);
    be_vk_stats s1 = stats(f);
    o->fused = s1.n_fused_nodes - s0.n_fused_nodes;
    o->dispatches = s1.n_dispatches - s0.n_dispatches;
    o->texel = s1.n_texel_dispatches - s0.n_texel_dispatches;
    for (int m = 0; m < c->n_mm; m++) keep(f, o, D[m], m == 0 ? "out0" : m == 1 ? "out1" : "out2");
    keep(f, o, R, "resid");
    if (c->xn_read) keep(f, o, TMP, "tmp");
    vfx_reset(f);
}

/* The reference values of run_case's outputs, in its order: the products
 * (after the GLU, or overwritten), the residual, the later read of xn.
 * idot: the int-dot types' products take the activations through Q8_0. */
static double *want_of(const mvf_case *c, const mvf_data *d, bool idot, int i, size_t n) {
    size_t KT = (size_t)(c->K * c->T), N0T = (size_t)(c->N[0] * c->T);
    double *xn = calloc(KT, sizeof *xn), *out = malloc(n * sizeof *out);
    float *a = malloc(KT * sizeof *a);
    if (c->norm) elm_ref_rms_norm(d->x, d->nw, 1e-5f, c->K, c->T, xn);
    for (size_t k = 0; k < KT; k++) a[k] = c->norm ? (float)xn[k] : d->x[k];
    float *aq = malloc(KT * sizeof *aq);
    memcpy(aq, a, KT * sizeof *aq);
    q8_round(aq, c->T, c->K, c->K);
    double *prod[3] = {NULL, NULL, NULL};
    for (int m = 0; m < c->n_mm; m++) {
        prod[m] = malloc((size_t)(c->N[m] * c->T) * sizeof(double));
        /* More tokens take the tiled kernels: integer-dot tiles for Q4_0
         * and Q8_0 (the int-dot profiles leave room for them), float for
         * the other types. */
        bool tiles_idot = c->types[m] == QT_Q4_0 || c->types[m] == QT_Q8_0;
        const float *am = idot && idot_type(c->types[m]) && (c->T == 1 || tiles_idot) ? aq : a;
        elm_ref_mul_mat(d->deq[m], am, c->bias ? d->bias[m] : NULL, c->K, c->N[m], c->T, prod[m]);
    }
    double *resid = malloc(N0T * sizeof *resid);
    for (size_t k = 0; k < N0T; k++) resid[k] = d->r[k] + (c->kind == RESID ? (double)(float)prod[0][k] : 0.0);
    if (c->kind == GLU) {
        float *g = malloc(N0T * sizeof *g), *u = malloc(N0T * sizeof *u);
        for (size_t k = 0; k < N0T; k++) g[k] = (float)prod[0][k], u[k] = (float)prod[1][k];
        elm_ref_glu(c->act, g, u, c->N[0] * c->T, prod[0]);
        free(g), free(u);
    }
    if (c->out_dead)
        for (size_t k = 0; k < N0T; k++) prod[c->kind == GLU ? 1 : 0][k] = 3.0 * (double)(float)resid[k];
    for (size_t k = 0; k < n; k++)
        out[k] = i < c->n_mm ? prod[c->same_out ? c->n_mm - 1 : i][k] : i == c->n_mm ? resid[k] : 2.0 * (double)(float)xn[k];
    for (int m = 0; m < 3; m++) free(prod[m]);
    free(xn), free(a), free(aq), free(resid);
    return out;
}

/* f[0]: a backend under the profile, f[1]: the same with nofuse. idot: a
 * fast graph under a profile that forces the int-dot mat-vecs (else exact). */
/* Returns the texel dispatches of f[0]'s fused plan. */
static uint64_t check_case(vfx f[2], const mvf_case *c, bool idot) {
    mvf_data d;
    data_init(c, &d);
    const char *prof = f[0].limits, *nofuse = f[1].limits;
    const char *limits[2] = {prof, nofuse};
    mvf_out o[2];
    for (int k = 0; k < 2; k++) run_case(&f[k], c, &d, !idot, &o[k]);
    cr_expect_eq(o[0].fused, (uint64_t)c->fused, "[%s] %s: %llu nodes fused, want %d", prof, c->name,
                 (unsigned long long)o[0].fused, c->fused);
    cr_expect_eq(o[1].fused, 0, "[%s] %s: nofuse fused %llu nodes", nofuse, c->name, (unsigned long long)o[1].fused);
    if (c->fused) cr_expect_lt(o[0].dispatches, o[1].dispatches, "[%s] %s: %llu dispatches, unfused %llu", prof, c->name,
                               (unsigned long long)o[0].dispatches, (unsigned long long)o[1].dispatches);
    for (int i = 0; i < o[0].n_out; i++) {
        double *want = want_of(c, &d, idot, i, o[0].n[i]), bound = idot ? 1e-5 : 1e-10;
        for (int k = 0; k < 2; k++) {
            double e = nmse(o[k].v[i], want, o[k].n[i]);
            cr_expect_leq(e, bound, "[%s] %s: %s NMSE %.3g against the reference", limits[k], c->name, o[k].what[i], e);
        }
        free(want);
        /* Fused against unfused: the same chunk kernels; only a norm sums
         * its squares in another order (which, int-dot, may move an 8-bit
         * activation by one step). */
        size_t diff = 0;
        double num = 0, den = 0;
        for (size_t j = 0; j < o[0].n[i]; j++) {
            double a = o[0].v[i][j], b = o[1].v[i][j];
            diff += memcmp(&o[0].v[i][j], &o[1].v[i][j], sizeof(float)) != 0;
            num += (a - b) * (a - b), den += b * b;
        }
        if (!c->norm) cr_expect_eq(diff, 0, "[%s] %s: %s differs from nofuse in %zu values", prof, c->name, o[0].what[i], diff);
        cr_expect_leq(den > 0 ? num / den : num, idot ? 1e-6 : 1e-12, "[%s] %s: %s far from nofuse", prof, c->name,
                      o[0].what[i]);
    }
    uint64_t texel = c->fused ? o[0].texel : 0;
    out_free(&o[0]), out_free(&o[1]);
    data_free(&d);
    return texel;
}

/* prof with "fuse" (every type, on CPU devices too), and with "nofuse":
 * the fused storage-buffer kernels. Both plans split rows over the lanes
 * (mv_lanes=2), as those kernels do; on CPU devices the texel mat-vecs
 * (unfused, and fused: check_texel) give block types a lane per row, which
 * mv_lanes=2 turns off. */
static void check_profile(const char *prof, bool fusing, bool idot) {
    char fuse[96], nofuse[96];
    snprintf(fuse, sizeof fuse, "%s%sfuse,mv_lanes=2", prof, *prof ? "," : "");
    snprintf(nofuse, sizeof nofuse, "%s%snofuse,mv_lanes=2", prof, *prof ? "," : "");
    vfx f[2];
    vfx_open(&f[0], fuse);
    vfx_open(&f[1], nofuse);
    for (size_t i = 0; i < N_CASES; i++) {
        mvf_case c = CASES[i];
        if (!fusing) c.fused = 0;
        check_case(f, &c, idot);
    }
    vfx_close(&f[0]);
    vfx_close(&f[1]);
}

static bool float_weights(const mvf_case *c) {
    for (int m = 0; m < c->n_mm; m++)
        if (c->types[m] == QT_F32 || c->types[m] == QT_F16) return true;
    return false;
}

/* The fused texel kernels of CPU devices (a lane per rows, as the unfused
 * texel mat-vec there): under prof, against nofuse. Without "fuse" (the
 * default) such a device fuses mat-vecs only into them, so cases with F32
 * or F16 weights fuse nothing; with it they take the storage kernels. */
static void check_texel(const char *prof) {
    char nofuse[96];
    snprintf(nofuse, sizeof nofuse, "%s%snofuse", prof, *prof ? "," : "");
    bool forced = strstr(prof, "fuse") != NULL;
    vfx f[2];
    vfx_open(&f[0], prof);
    vfx_open(&f[1], nofuse);
    uint64_t texel = 0;
    for (size_t i = 0; i < N_CASES; i++) {
        mvf_case c = CASES[i];
        if (!forced && float_weights(&c)) c.fused = 0;
        texel += check_case(f, &c, false);
    }
    cr_expect_gt(texel, 0, "[%s] no fused dispatch read texel buffers", prof);
    vfx_close(&f[0]);
    vfx_close(&f[1]);
}

/* Under the sanitizers (ELM_SANITIZE, set by CMakeLists.txt) the first
 * profile only: the time goes to lavapipe, and the host code is the same
 * for every profile. */
static size_t n_profiles(size_t n) {
    const char *san = getenv("ELM_SANITIZE");
    return san && *san ? 1 : n;
}

Test(vk_fuse_matvec, matches_the_reference_and_the_unfused_plan, .timeout = 600) {
    for (size_t p = 0; p < n_profiles(N_FUSE_PROFILES); p++) check_profile(FUSE_PROFILES[p], true, false);
}

/* The fused texel kernels, on CPU devices (lavapipe) only: by default,
 * and under fuse with another shape of workgroup. */
Test(vk_fuse_matvec, texel_kernels_match_the_reference_and_the_unfused_plan, .timeout = 600) {
    vfx f;
    vfx_open(&f, "");
    elm_device_info info;
    cr_assert_eq(elmi_be_vk_device_info(f.be, &info), ELM_OK);
    vfx_close(&f);
    if (strcmp(info.type, "cpu") != 0) cr_skip_test("the fused texel kernels are for CPU devices; this one is %s", info.type);
    check_texel("");
    if (n_profiles(2) > 1) check_texel("fuse,nosubgroup,mv_rows=2");
}

/* The int-dot variants of the fused kernels, in fast graphs (exact ones
 * never use them: "idot" is among FUSE_PROFILES, at the exact bound). */
Test(vk_fuse_matvec, idot_matches_the_reference_and_the_unfused_plan, .timeout = 600) {
    static const char *const profiles[] = {"idot", "idot,nosubgroup,nofp16"};
    vfx f;
    vfx_open(&f, "");
    bool has = vfx_int_dot(&f);
    vfx_close(&f);
    if (!has) cr_skip_test("the device has no shaderIntegerDotProduct");
    for (size_t p = 0; p < n_profiles(2); p++) check_profile(profiles[p], true, true);
}

/* Under 12 storage buffers per stage the backend keeps the 5-binding
 * layout: nothing fuses, everything is still right. */
Test(vk_fuse_matvec, a_small_binding_layout_fuses_nothing, .timeout = 300) {
    check_profile("max_storage_buffers=8", false, false);
}

#else
Test(vk_fuse_matvec, skipped) {
    cr_skip_test("built without Vulkan");
}
#endif
