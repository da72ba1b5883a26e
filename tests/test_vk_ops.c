/* test_vk_ops.c: every op of the Vulkan backend, for every weight type and
 * ragged sizes, in exact and fast graphs, under every limits profile,
 * against scalar references computed in double (here from quant/'s
 * to_float, or tests/support/op_ref.h). The whole layer is in
 * test_vk_layer.c; the fixture in support/vk_ops_fixture.h.
 *
 * Error measure: NMSE = sum (got - want)^2 / sum want^2. Bounds:
 *   exact MUL_MAT, RMS_NORM (whole rows and per head), ADD, GLU (SiLU and
 *       GELU), SCALE (with or without softcap), ATTENTION (with windows,
 *       rings, softcaps), SHORTCONV   1e-10  (F32 rounding of sums of a
 *       few hundred terms in another order gives ~1e-13)
 *   GELU GLU per value: |got - want| <= 1e-5 |want| + 1e-12 (NMSE is blind
 *       to the negative tail, where values are near 0)
 *   fast MUL_MAT (F16 tiles where the device has shaderFloat16)   1e-5
 *       (two half roundings per product, ~2e-7 expected)
 *   fast int-dot mat-vecs: 1e-5 against the activations rounded through
 *       Q8_0 (worst ~6e-7 on lavapipe; against F32 activations ~1-5e-5,
 *       which the check that the path ran relies on); the int-dot mat-mat
 *       tiles (Q4_0, Q8_0) likewise (worst ~6e-8)
 *   fast MUL_MAT with F16 products (mm_f16)   1e-5 (worst ~4e-7: partial
 *       sums of 8 products in F16; ~1e-6 with 32)
 *   GET_ROWS 1e-12 (the same dequantization); KV_STORE (ring or not) and
 *       the SHORTCONV state bit-exact; SHORTCONV of T tokens bit-equal to
 *       T calls of one token
 *   ROPE 1e-8 (F32 angles up to position 2047, ~1e-10 expected)
 * A layout mistake gives NMSE of order 1, so every bound can fail. Cache
 * rows and state rows an op must not read hold NaN, which would spread.
 * The validation layer is on and any validation error fails the test. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if ELM_HAVE_VULKAN
#include "support/op_ref.h"
#include "support/vk_ops_fixture.h"

/* ---------------------------------------------------------------- MUL_MAT */

typedef struct mm_case {
    int type;
    int64_t K, N, T;
    bool exact, bias, weights_on_device;
    int64_t x_pad; /* extra floats per activation row (a stride the vec4 loads cannot take) */
    size_t w_shift; /* host weights this many bytes past an aligned address */
} mm_case;

/* A host weight tensor `shift` bytes past malloc's alignment. */
static be_tensor *shifted_host_tensor(vfx *f, int type, int64_t K, int64_t N, const void *bytes, size_t shift) {
    be_tensor *t = new_tensor(f, type, K, N, 1, "w");
    size_t n = elmi_be_tensor_nbytes(t);
    uint8_t *p = malloc(n + shift);
    memcpy(p + shift, bytes, n);
    cr_assert_lt(f->n_hosts, MAX_HOSTS);
    f->hosts[f->n_hosts++] = p;
    t->data = p + shift;
    return t;
}

/* A case's inputs: weights (and their exact dequantization), activations
 * (rows XS apart), bias. */
typedef struct mm_data {
    float *w, *deq, *x, *b;
    void *wq;
} mm_data;

static void mm_data_new(const mm_case *c, mm_data *d) {
    int64_t K = c->K, N = c->N, XS = K + c->x_pad;
    d->w = rand_floats((size_t)(N * K), 1.0f), d->deq = malloc(sizeof(float) * N * K);
    d->wq = quantize(c->type, d->w, N, K, d->deq);
    d->x = rand_floats((size_t)(XS * c->T), 1.0f), d->b = rand_floats((size_t)N, 1.0f);
}

static void mm_data_free(mm_data *d) {
    free(d->w), free(d->deq), free(d->wq), free(d->x), free(d->b);
}

/* The backend's product (N x T floats, to free). */
static float *mm_run(vfx *f, const mm_case *c, const mm_data *d) {
    int64_t K = c->K, N = c->N, T = c->T, XS = K + c->x_pad;
    be_tensor *W;
    if (c->weights_on_device) {
        W = dev_tensor(f, c->type, K, N, 1, "w");
        put(f, W, d->wq);
    } else {
        W = shifted_host_tensor(f, c->type, K, N, d->wq, c->w_shift);
    }
    be_tensor *X = dev_tensor(f, QT_F32, XS, T, 1, "x"), *D = dev_tensor(f, QT_F32, N, T, 1, "d");
    be_tensor *B = c->bias ? dev_tensor(f, QT_F32, N, 1, 1, "b") : NULL;
    put(f, X, d->x);
    X->ne[0] = K; /* rows of K values XS apart */
    if (B) put(f, B, d->b);
    be_node nd = {.op = BE_OP_MUL_MAT, .dst = D, .src = {W, X, B}};
    run(f, &nd, 1, c->exact);
    float *got = malloc(sizeof(float) * N * T);
    get(f, D, got);
    vfx_reset(f);
    return got;
}

/* The reference product in double, of activations x (rows XS apart). */
static double *mm_want(const mm_case *c, const mm_data *d, const float *x) {
    int64_t K = c->K, N = c->N, T = c->T, XS = K + c->x_pad;
    double *want = malloc(sizeof(double) * N * T);
    for (int64_t t = 0; t < T; t++)
        for (int64_t n = 0; n < N; n++) {
            double s = c->bias ? d->b[n] : 0.0;
            for (int64_t k = 0; k < K; k++) s += (double)d->deq[n * K + k] * x[t * XS + k];
            want[t * N + n] = s;
        }
    return want;
}

/* NMSE of got against the product of the activations rounded through
 * Q8_0 (what the int-dot mat-vecs compute). */
static double q8_nmse(const mm_case *c, const mm_data *d, const float *got) {
    size_t nx = (size_t)((c->K + c->x_pad) * c->T);
    float *xq = malloc(sizeof(float) * nx);
    memcpy(xq, d->x, sizeof(float) * nx);
    q8_round(xq, c->T, c->K, c->K + c->x_pad);
    double *want = mm_want(c, d, xq), e = nmse(got, want, (size_t)(c->N * c->T));
    free(xq), free(want);
    return e;
}

/* Fast graphs on a device whose int-dot mat-vecs are on (reported
 * accelerated) may give either kernel's result: the nearer reference. */
static double check_mul_mat(vfx *f, const mm_case *c) {
    mm_data d;
    mm_data_new(c, &d);
    float *got = mm_run(f, c, &d);
    double *want = mm_want(c, &d, d.x);
    double e = nmse(got, want, (size_t)(c->N * c->T));
    if (!c->exact && idot_type(c->type) && elmi_be_vk_int_dot_matvec(f->be)) e = fmin(e, q8_nmse(c, &d, got));
    mm_data_free(&d);
    free(got), free(want);
    return e;
}

static void mul_mat_types(const char *limits, const int *types, size_t n_types) {
    static const int64_t Ts[] = {1, 5, 33};
    vfx f;
    vfx_open(&f, limits);
    double worst[2] = {0, 0};
    for (size_t i = 0; i < n_types; i++)
        for (size_t j = 0; j < 3; j++)
            for (int exact = 0; exact < 2; exact++) {
                mm_case c = {types[i], ragged_k(types[i]), 37, Ts[j], exact, j == 1, i % 2 == 1, 0, 0};
                double e = check_mul_mat(&f, &c);
                double bound = exact ? 1e-10 : 1e-5;
                cr_expect_leq(e, bound, "[%s] MUL_MAT %s K=%lld T=%lld %s: NMSE %.3g > %.1g", limits,
                              elmi_qtype_name(c.type), (long long)c.K, (long long)c.T, exact ? "exact" : "fast", e,
                              bound);
                if (e > worst[exact]) worst[exact] = e;
            }
    cr_expect_eq(fallbacks(&f), 0, "[%s] unexpected CPU fallbacks", limits);
    fprintf(stderr, "vk MUL_MAT [%s]: worst NMSE exact %.2g, fast %.2g\n", limits, worst[1], worst[0]);
    vfx_close(&f);
}

/* Full type coverage for each shader path: 16-bit storage with subgroup
 * reductions, and the 32-bit word path with shared-memory reductions. */
Test(vk_ops, mul_mat_all_types_default) {
    mul_mat_types("", ALL_TYPES, N_ALL_TYPES);
}

Test(vk_ops, mul_mat_all_types_u32_shared) {
    mul_mat_types("nofp16,nosubgroup", ALL_TYPES, N_ALL_TYPES);
}

Test(vk_ops, mul_mat_profiles) {
    for (size_t p = 1; p < N_PROFILES; p++) mul_mat_types(PROFILES[p], SOME_TYPES, N_SOME_TYPES);
}

/* The mat-vec kernel's shapes: rows per workgroup (mv_rows) that do not
 * divide N, a lane per row (mv_lanes=1), workgroups narrower than the
 * subgroup, both reductions; K of one chunk, of chunks that do not fill
 * the workgroup, and of more; weights 2 bytes off alignment (the stitched
 * word loads) and activation rows at odd strides (no vec4 loads). T = 1,
 * and T = 3 where no tile fits (one mat-vec per token); with mv_tokens,
 * T = 3 and 7 through the multi-token kernel (whole and partial token
 * groups). */
static const char *const MV_LIMITS[] = {
    "mv_rows=1", "mv_rows=3", "mv_rows=8", "mv_lanes=1", "mv_lanes=1,mv_rows=2,nosubgroup",
    "mv_rows=5,nosubgroup,nofp16", "max_invocations=4,mv_rows=2", "max_shared=768,max_invocations=64,mv_rows=3",
    "mv_tokens=4", "mv_tokens=2,nosubgroup,nofp16", "mv_tokens=8,mv_rows=3",
};

static void mul_mat_vec_shapes(const char *limits) {
    static const int types[] = {QT_F32, QT_F16, QT_Q4_0, QT_Q8_0, QT_Q4_K, QT_Q6_K, QT_Q5_K, QT_Q4_1};
    static const int64_t Ns[] = {1, 3, 37, 130}, chunks[] = {1, 3, 11, 64};
    vfx f;
    vfx_open(&f, limits);
    double worst = 0;
    for (size_t i = 0; i < sizeof types / sizeof *types; i++)
        for (size_t j = 0; j < 4; j++) {
            const qtype_traits *tr = elmi_qtype_get(types[i]);
            int64_t ch = tr->block_size > 1 ? 32 : 4, K = chunks[j] * ch;
            if (K % tr->block_size) K = (K / tr->block_size + 1) * tr->block_size;
            int64_t T = strstr(limits, "max_shared") && j % 2 ? 3 : 1;
            if (strstr(limits, "mv_tokens")) T = j % 2 ? 3 : 7;
            mm_case c = {types[i], K, Ns[(i + j) % 4], T, j % 2 == 0, j == 1, j == 3, j == 2 ? 3 : 0,
                         i % 2 ? 2 : 0};
            double e = check_mul_mat(&f, &c);
            cr_expect_leq(e, c.exact ? 1e-10 : 1e-5, "[%s] MUL_MAT %s K=%lld N=%lld T=%lld pad %lld shift %zu: NMSE %.3g", limits,
                          elmi_qtype_name(c.type), (long long)c.K, (long long)c.N, (long long)T,
                          (long long)c.x_pad, c.w_shift, e);
            if (c.exact && e > worst) worst = e;
        }
    cr_expect_eq(fallbacks(&f), 0, "[%s] unexpected CPU fallbacks", limits);
    fprintf(stderr, "vk mat-vec shapes (exact) [%s]: worst NMSE %.2g\n", limits, worst);
    vfx_close(&f);
}

Test(vk_ops, mul_mat_vec_shapes) {
    for (size_t i = 0; i < sizeof MV_LIMITS / sizeof *MV_LIMITS; i++) mul_mat_vec_shapes(MV_LIMITS[i]);
}

/* small-buffers: row pieces of a split weight whose row counts are not a
 * multiple of the rows per workgroup. */
Test(vk_ops, mul_mat_vec_pieces) {
    vfx f;
    vfx_open(&f, "small-buffers,mv_rows=3");
    const int types[] = {QT_Q8_0, QT_Q4_0, QT_Q6_K};
    for (size_t i = 0; i < 3; i++) {
        mm_case c = {types[i], 1024, 1900, 1, true, true, false, 0, i == 1 ? 2 : 0};
        double e = check_mul_mat(&f, &c);
        cr_expect_leq(e, 1e-10, "%s NMSE %.3g", elmi_qtype_name(types[i]), e);
    }
    cr_expect_eq(fallbacks(&f), 0);
    vfx_close(&f);
}

/* The integer-dot mat-vecs ("idot" forces them where the device has the
 * feature, as lavapipe does without reporting it accelerated), in fast
 * graphs: within the fast bound of the reference of the activations
 * rounded through quant/'s Q8_0 (backend.h lets fast graphs round them to
 * the vec_dot_type), and, over a profile's cases, much nearer that than
 * the F32 reference, so the path ran. Shapes as mul_mat_vec_shapes: one
 * chunk and more, ragged N, bias, odd activation strides (no vec4 loads),
 * weights 2 bytes off alignment, both reductions, a lane per row. */
static const int IDOT_TYPES[] = {QT_Q4_0, QT_Q8_0, QT_Q4_K, QT_Q5_K, QT_Q6_K};
#define N_IDOT_TYPES (sizeof IDOT_TYPES / sizeof *IDOT_TYPES)

static void mul_mat_vec_idot(const char *limits) {
    static const int64_t Ns[] = {1, 3, 37, 130}, chunks[] = {1, 3, 11, 64};
    vfx f;
    vfx_open(&f, limits);
    if (!vfx_int_dot(&f)) {
        fprintf(stderr, "vk int-dot mat-vec [%s]: skipped, the device has no shaderIntegerDotProduct\n", limits);
        vfx_close(&f);
        return;
    }
    double sum_q = 0, sum_f = 0, worst = 0;
    for (size_t i = 0; i < N_IDOT_TYPES; i++)
        for (size_t j = 0; j < 4; j++) {
            int64_t bs = elmi_qtype_get(IDOT_TYPES[i])->block_size, K = (chunks[j] * 32 + bs - 1) / bs * bs;
            mm_case c = {IDOT_TYPES[i], K, Ns[(i + j) % 4], 1, false, j == 1, j == 3, j == 2 ? 3 : 0, i % 2 ? 2 : 0};
            mm_data d;
            mm_data_new(&c, &d);
            float *got = mm_run(&f, &c, &d);
            double *want_f = mm_want(&c, &d, d.x);
            double eq = q8_nmse(&c, &d, got), ef = nmse(got, want_f, (size_t)c.N);
            cr_expect_leq(eq, 1e-5, "[%s] int-dot MUL_MAT %s K=%lld N=%lld pad %lld shift %zu: NMSE %.3g", limits,
                          elmi_qtype_name(c.type), (long long)K, (long long)c.N, (long long)c.x_pad, c.w_shift, eq);
            sum_q += eq, sum_f += ef;
            if (eq > worst) worst = eq;
            mm_data_free(&d);
            free(got), free(want_f);
        }
    cr_expect(elmi_be_vk_int_dot_matvec(f.be), "[%s] the int-dot mat-vecs are off", limits);
    cr_expect_lt(sum_q * 10, sum_f, "[%s] results are not those of 8-bit activations (NMSE sums %.3g, F32 %.3g)",
                 limits, sum_q, sum_f);
    cr_expect_eq(fallbacks(&f), 0, "[%s] unexpected CPU fallbacks", limits);
    fprintf(stderr, "vk int-dot mat-vec [%s]: worst NMSE %.2g (against F32 activations: mean %.2g)\n", limits, worst,
            sum_f / (N_IDOT_TYPES * 4));
    vfx_close(&f);
}

Test(vk_ops, fast_mul_mat_vec_idot) {
    static const char *const limits[] = {"idot", "idot,nofp16,nosubgroup", "idot,mv_lanes=1,mv_rows=3",
                                         "idot,max_invocations=4,mv_rows=2"};
    for (size_t i = 0; i < sizeof limits / sizeof *limits; i++) mul_mat_vec_idot(limits[i]);
}

/* Exact graphs promise F32 activations: with the int-dot path forced on
 * they give the bits they give with it off. */
Test(vk_ops, exact_mul_mat_vec_never_idot) {
    static const char *const limits[2] = {"idot", "noidot"};
    for (size_t i = 0; i < N_IDOT_TYPES; i++) {
        mm_case c = {IDOT_TYPES[i], ragged_k(IDOT_TYPES[i]), 37, 1, true, i % 2 == 0, false, 0, 0};
        mm_data d;
        mm_data_new(&c, &d);
        float *got[2];
        for (int k = 0; k < 2; k++) {
            vfx f;
            vfx_open(&f, limits[k]);
            got[k] = mm_run(&f, &c, &d);
            vfx_close(&f);
        }
        cr_expect_eq(memcmp(got[0], got[1], sizeof(float) * (size_t)c.N), 0, "exact MUL_MAT %s: idot changed the result",
                     elmi_qtype_name(c.type));
        mm_data_free(&d);
        free(got[0]), free(got[1]);
    }
}

/* Regression: fast graphs staged F32 and BF16 weights in F16 tiles, so a
 * product of more than one token rounded F32 weights to halves (4e-2 of
 * the 5e-2 fast tolerance on stories260K, where the CPU stays at 1.6e-2)
 * and clamped weights beyond 65504. backend.h lets fast graphs round
 * activations to the weight type's vec_dot_type only: F32 for F32 weights
 * (so F32 products), BF16 for BF16 weights. Each output must be within
 * that rounding of the exact sum: |got - want| <= u * sum_k |w_k x_k|, with
 * u = 1e-6 for F32 (F32 rounding of 256 terms is ~1e-7) and 2^-8 for BF16
 * (activations rounded to BF16). Rows of weights near 1e5, near 1 and near
 * 3e-7 cover the half range's top, middle and subnormal bottom. */
static void check_mul_mat_range(vfx *f, int type, int64_t T) {
    const int64_t K = 256, N = 48;
    static const float scales[3] = {1e5f, 1.0f, 3e-7f};
    float *w = rand_floats((size_t)(N * K), 1.0f), *deq = malloc(sizeof(float) * N * K);
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k++) w[n * K + k] = scales[n % 3] * (1.0f + 0.5f * w[n * K + k]);
    void *wq = quantize(type, w, N, K, deq);
    float *x = rand_floats((size_t)(K * T), 1.0f);
    be_tensor *W = host_tensor(f, type, K, N, wq, "w");
    be_tensor *X = dev_tensor(f, QT_F32, K, T, 1, "x"), *D = dev_tensor(f, QT_F32, N, T, 1, "d");
    put(f, X, x);
    be_node nd = {.op = BE_OP_MUL_MAT, .dst = D, .src = {W, X}};
    run(f, &nd, 1, false);
    float *got = malloc(sizeof(float) * N * T);
    get(f, D, got);
    double u = type == QT_F32 ? 1e-6 : 1.0 / 256;
    int bad = 0;
    for (int64_t t = 0; t < T; t++)
        for (int64_t n = 0; n < N; n++) {
            double want = 0, mag = 0;
            for (int64_t k = 0; k < K; k++) {
                want += (double)deq[n * K + k] * x[t * K + k];
                mag += fabs((double)deq[n * K + k] * x[t * K + k]);
            }
            double err = fabs((double)got[t * N + n] - want);
            if (!(err <= u * mag) && bad++ < 3)
                cr_expect_fail("[%s] fast MUL_MAT %s T=%lld row %lld (scale %g) token %lld: got %.9g, "
                               "want %.9g (error %.3g, allowed %.3g)",
                               f->limits, elmi_qtype_name(type), (long long)T, (long long)n, scales[n % 3],
                               (long long)t, got[t * N + n], want, err, u * mag);
        }
    cr_expect_eq(bad, 0, "[%s] fast MUL_MAT %s T=%lld: %d outputs beyond the %s rounding", f->limits,
                 elmi_qtype_name(type), (long long)T, bad, elmi_qtype_name(type));
    free(w), free(deq), free(wq), free(x), free(got);
    vfx_reset(f);
}

/* Several tiles along both axes, each ragged at its end: 150 rows and 70
 * tokens cross the register-blocked kernel's 64 x 64 tiles (and the smaller
 * tiles of pi5 and of a 64-invocation device). */
Test(vk_ops, mul_mat_many_tiles) {
    static const char *const limits[] = {"", "pi5", "max_shared=4096,max_invocations=64"};
    static const int types[] = {QT_Q4_0, QT_Q8_0, QT_F16, QT_Q4_K};
    for (size_t l = 0; l < sizeof limits / sizeof *limits; l++) {
        vfx f;
        vfx_open(&f, limits[l]);
        for (size_t i = 0; i < sizeof types / sizeof *types; i++)
            for (int exact = 0; exact < 2; exact++) {
                mm_case c = {types[i], 256, 150, 70, exact, i % 2 == 0, i >= 2, (int64_t)(i % 2), 0};
                double e = check_mul_mat(&f, &c);
                cr_expect_leq(e, exact ? 1e-10 : 1e-5, "[%s] MUL_MAT %s 150 x 70 %s: NMSE %.3g", limits[l],
                              elmi_qtype_name(c.type), exact ? "exact" : "fast", e);
            }
        cr_expect_eq(fallbacks(&f), 0, "[%s] unexpected CPU fallbacks", limits[l]);
        vfx_close(&f);
    }
}

/* A mat-mat path that a limits item turns on (`on`) and off (`off`), over
 * ragged tiles (rows, tokens and, for F16 weights, K not multiples of the
 * tile): fast graphs within 1e-5 of the reference (q8: of the activations
 * rounded through Q8_0, and over the cases much nearer that than the F32
 * reference) and not bit-equal to the result without the path, so it ran;
 * exact graphs within 1e-10 and bit-equal with the item on or off. */
static float *mm_run_under(const char *limits, const mm_case *c, const mm_data *d) {
    vfx f;
    vfx_open(&f, limits);
    float *got = mm_run(&f, c, d);
    cr_expect_eq(fallbacks(&f), 0, "[%s] unexpected CPU fallbacks", limits);
    vfx_close(&f);
    return got;
}

static void mm_path(const char *on, const char *off, const mm_case *cases, size_t n, bool q8) {
    double sum_q = 0, sum_f = 0, worst = 0;
    for (size_t i = 0; i < n; i++) {
        mm_case c = cases[i];
        mm_data d;
        mm_data_new(&c, &d);
        size_t nv = (size_t)(c.N * c.T);
        float *got[2][2]; /* [exact][on, off] */
        for (int e = 0; e < 2; e++) {
            c.exact = e;
            got[e][0] = mm_run_under(on, &c, &d), got[e][1] = mm_run_under(off, &c, &d);
        }
        double *want = mm_want(&c, &d, d.x);
        double ef = nmse(got[0][0], want, nv), eq = q8 ? q8_nmse(&c, &d, got[0][0]) : ef;
        const char *tn = elmi_qtype_name(c.type);
        long long K = (long long)c.K, N = (long long)c.N, T = (long long)c.T;
        cr_expect_leq(eq, 1e-5, "[%s] fast MUL_MAT %s K=%lld N=%lld T=%lld: NMSE %.3g", on, tn, K, N, T, eq);
        cr_expect_neq(memcmp(got[0][0], got[0][1], sizeof(float) * nv), 0,
                      "[%s] fast MUL_MAT %s K=%lld N=%lld T=%lld: the bits of [%s], the path did not run", on, tn, K,
                      N, T, off);
        double ex = nmse(got[1][0], want, nv);
        cr_expect_leq(ex, 1e-10, "[%s] exact MUL_MAT %s K=%lld N=%lld T=%lld: NMSE %.3g", on, tn, K, N, T, ex);
        cr_expect_eq(memcmp(got[1][0], got[1][1], sizeof(float) * nv), 0,
                     "exact MUL_MAT %s K=%lld N=%lld T=%lld: [%s] and [%s] differ", tn, K, N, T, on, off);
        sum_q += eq, sum_f += ef;
        if (eq > worst) worst = eq;
        mm_data_free(&d);
        free(want);
        for (int e = 0; e < 2; e++) free(got[e][0]), free(got[e][1]);
    }
    if (q8)
        cr_expect_lt(sum_q * 10, sum_f, "[%s] results are not those of 8-bit activations (NMSE sums %.3g, F32 %.3g)",
                     on, sum_q, sum_f);
    fprintf(stderr, "vk mat-mat [%s]: worst fast NMSE %.2g (against F32 activations: mean %.2g)\n", on, worst,
            sum_f / (double)n);
}

static bool device_has(const char *limits, bool idot) {
    vfx f;
    vfx_open(&f, limits);
    elm_device_info info;
    cr_assert_eq(elmi_be_vk_device_info(f.be, &info), ELM_OK);
    vfx_close(&f);
    return idot ? info.int_dot : info.fp16 && info.storage16;
}

/* Three tile shapes: the largest, pi5's (16 KiB, 256 invocations) and a
 * 64-invocation device's; mv_tokens=1 keeps a CPU device with texel reads
 * on the tiles. */
static const char *const MM_PATH_LIMITS[] = {",mv_tokens=1", ",pi5,mv_tokens=1",
                                             ",max_shared=4096,max_invocations=64,mv_tokens=1"};

/* mm_path with the item on and off, under each limits suffix. */
static void mm_path_over(const char *item_on, const char *item_off, const char *const *suffixes, size_t n,
                         const mm_case *cases, size_t n_cases, bool idot) {
    for (size_t l = 0; l < n; l++) {
        char on[64], off[64];
        snprintf(on, sizeof on, "%s%s", item_on, suffixes[l]);
        snprintf(off, sizeof off, "%s%s", item_off, suffixes[l]);
        mm_path(on, off, cases, n_cases, idot);
    }
}

/* F16 products (mm_f16 forces them on lavapipe, a CPU device). */
Test(vk_ops, fast_mul_mat_f16_products) {
    if (!device_has("", false)) return;
    static const mm_case cases[] = {
        {QT_Q4_0, 288, 37, 5, false, true, false, 0, 0},
        {QT_Q6_K, 768, 150, 70, false, false, true, 1, 0},
        {QT_F16, 100, 70, 33, false, true, false, 0, 2},
    };
    mm_path_over("mm_f16", "nomm_f16", MM_PATH_LIMITS, sizeof MM_PATH_LIMITS / sizeof *MM_PATH_LIMITS, cases,
                 sizeof cases / sizeof *cases, false);
}

/* Integer-dot tiles of Q4_0 and Q8_0 (idot forces them where the device
 * has the feature); also the 32-bit word path with weights 2 bytes off. */
Test(vk_ops, fast_mul_mat_idot_tiles) {
    if (!device_has("", true)) return;
    static const mm_case cases[] = {
        {QT_Q4_0, 288, 37, 5, false, true, false, 0, 2},
        {QT_Q8_0, 256, 150, 70, false, false, true, 1, 0},
        {QT_Q4_0, 64, 130, 9, false, false, true, 0, 0},
    };
    static const char *const limits[] = {"", ",nofp16,nosubgroup", ",max_shared=4096,max_invocations=64"};
    mm_path_over("idot", "noidot", limits, sizeof limits / sizeof *limits, cases, sizeof cases / sizeof *cases, true);
}

/* Both paths forced under the profiles that change the tiles or the
 * storage path (max_shared=768 fits no integer-dot tile: mat-vecs per
 * token), all cases of mul_mat_types (T = 1, 5, 33, exact and fast). */
Test(vk_ops, mul_mat_forced_paths_profiles) {
    static const char *const limits[] = {"idot,mm_f16", "idot,mm_f16,nofp16", "idot,mm_f16,pi5",
                                         "idot,mm_f16,max_shared=768,max_invocations=64"};
    static const int types[] = {QT_Q4_0, QT_Q8_0, QT_Q6_K};
    for (size_t l = 0; l < sizeof limits / sizeof *limits; l++) mul_mat_types(limits[l], types, 3);
}

Test(vk_ops, fast_mul_mat_keeps_f32_and_bf16_precision_and_range) {
    static const int types[] = {QT_F32, QT_BF16};
    static const int64_t Ts[] = {1, 9, 70};
    for (size_t p = 0; p < N_PROFILES; p++) {
        vfx f;
        vfx_open(&f, PROFILES[p]);
        for (size_t i = 0; i < 2; i++)
            for (size_t j = 0; j < 3; j++) check_mul_mat_range(&f, types[i], Ts[j]);
        cr_expect_eq(fallbacks(&f), 0, "[%s] unexpected CPU fallbacks", PROFILES[p]);
        vfx_close(&f);
    }
}

/* --------------------------------------------------------------- GET_ROWS */

static double check_get_rows(vfx *f, int type, int64_t n, int64_t rows, const int32_t *ids, int64_t T) {
    float *w = rand_floats((size_t)(n * rows), 1.0f), *deq = malloc(sizeof(float) * n * rows);
    void *q = quantize(type, w, rows, n, deq);
    be_tensor *tab = host_tensor(f, type, n, rows, q, "table");
    be_tensor *I = dev_tensor(f, BE_TYPE_I32, T, 1, 1, "ids"), *D = dev_tensor(f, QT_F32, n, T, 1, "d");
    put(f, I, ids);
    be_node nd = {.op = BE_OP_GET_ROWS, .dst = D, .src = {tab, I}};
    run(f, &nd, 1, true);
    float *got = malloc(sizeof(float) * n * T);
    double *want = malloc(sizeof(double) * n * T);
    get(f, D, got);
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < n; i++) want[t * n + i] = deq[ids[t] * n + i];
    double e = nmse(got, want, (size_t)(n * T));
    free(w), free(deq), free(q), free(got), free(want);
    vfx_reset(f);
    return e;
}

Test(vk_ops, get_rows_all_types_all_profiles) {
    const int32_t ids[] = {3, 0, 36, 3, 17};
    for (size_t p = 0; p < N_PROFILES; p++) {
        vfx f;
        vfx_open(&f, PROFILES[p]);
        bool all = p == 0 || !strcmp(PROFILES[p], "nofp16,nosubgroup,discrete,notex");
        for (size_t i = 0; i < (all ? N_ALL_TYPES : N_SOME_TYPES); i++) {
            int type = all ? ALL_TYPES[i] : SOME_TYPES[i];
            double e = check_get_rows(&f, type, ragged_k(type), 37, ids, 5);
            cr_expect_leq(e, 1e-12, "[%s] GET_ROWS %s: NMSE %.3g", PROFILES[p], elmi_qtype_name(type), e);
        }
        cr_expect_eq(fallbacks(&f), 0);
        vfx_close(&f);
    }
}

/* ------------------------------------------------------- split layout */

static uint64_t split_bytes(vfx *f) {
    be_vk_stats s;
    cr_assert_eq(elmi_be_vk_get_stats(f->be, &s), ELM_OK);
    return s.weight_split_bytes;
}

/* Copied Q4_0/Q8_0/Q6_K weights whose rows are whole words take the split
 * layout (memory.c): every kernel that reads them, the mat-vec (float,
 * int-dot, several tokens), the tiles (F32, F16 products, int-dot) and
 * GET_ROWS, against the references; "norepack" keeps the file layout and
 * must agree too. Rows
 * of an odd number of Q4_0 blocks are not whole words: those stay in the
 * file layout beside split ones on the same device. */
static void split_layout_case(const char *limits, bool want_split) {
    static const struct { int type; int64_t K; } cases[] = {
        {QT_Q4_0, 320}, {QT_Q8_0, 320}, {QT_Q6_K, 512}, {QT_Q4_0, 96}, {QT_Q4_K, 512},
    };
    static const int64_t Ts[] = {1, 3, 33};
    const int32_t ids[] = {3, 0, 36, 3, 17};
    vfx f;
    vfx_open(&f, limits);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        for (size_t j = 0; j < 3; j++)
            for (int exact = 0; exact < 2; exact++) {
                mm_case c = {cases[i].type, cases[i].K, 37, Ts[j], exact, j == 2, false, 0, j == 1 ? 2 : 0};
                double e = check_mul_mat(&f, &c), bound = exact ? 1e-10 : 1e-5;
                cr_expect_leq(e, bound, "[%s] MUL_MAT %s K=%lld T=%lld %s: NMSE %.3g", limits,
                              elmi_qtype_name(c.type), (long long)c.K, (long long)c.T, exact ? "exact" : "fast", e);
            }
        double e = check_get_rows(&f, cases[i].type, cases[i].K, 37, ids, 5);
        cr_expect_leq(e, 1e-12, "[%s] GET_ROWS %s K=%lld: NMSE %.3g", limits, elmi_qtype_name(cases[i].type),
                      (long long)cases[i].K, e);
    }
    cr_expect_eq(fallbacks(&f), 0, "[%s] unexpected CPU fallbacks", limits);
    if (want_split) cr_expect_gt(split_bytes(&f), 0, "[%s] no weight took the split layout", limits);
    else cr_expect_eq(split_bytes(&f), 0, "[%s] a weight took the split layout", limits);
    vfx_close(&f);
}

Test(vk_ops, split_layout_matches_the_reference) {
    split_layout_case("discrete", true);
    split_layout_case("discrete,nofp16,nosubgroup", true);
    split_layout_case("discrete,idot,mm_f16", true);
    split_layout_case("discrete,mv_tokens=4", true);
    split_layout_case("discrete,norepack", false);
}

/* ------------------------------------------------------ texel buffers */

static uint64_t texel_dispatches(vfx *f) {
    be_vk_stats s;
    cr_assert_eq(elmi_be_vk_get_stats(f->be, &s), ELM_OK);
    return s.n_texel_dispatches;
}

/* One-token mat-vecs through texel buffers ("tex") run the storage-buffer
 * kernel's arithmetic on other loads, so the two agree bit for bit where
 * both split rows over the lanes alike: on a CPU device the texel kernel
 * gives block types a lane per row (ops_matmul.c, mv_tex_shape), so where
 * a texel dispatch ran those are compared with the storage kernel under
 * mv_lanes=1; the
 * multi-token texel kernel sums each chunk in vec4 steps, so it is held to
 * the reference only. Every type, weights copied (Q4_0/Q8_0 split, the
 * aligned-quad constant for F32 and those) or imported 4 bytes off
 * alignment, activation rows that texels cannot take (x_pad: the storage
 * kernel runs for one token, the tiles or the storage kernel for nine),
 * one token and several (mv_tokens). */
static void texel_case(const char *base, const int *types, size_t n_types) {
    char on[64], off[64], off1[80];
    snprintf(on, sizeof on, "tex%s%s", *base ? "," : "", base);
    snprintf(off, sizeof off, "notex%s%s", *base ? "," : "", base);
    snprintf(off1, sizeof off1, "%s,mv_lanes=1", off);
    vfx ft, fs, fs1;
    vfx_open(&ft, on), vfx_open(&fs, off), vfx_open(&fs1, off1);
    elm_device_info info;
    cr_assert_eq(elmi_be_vk_device_info(ft.be, &info), ELM_OK);
    bool cpu_device = strcmp(info.type, "cpu") == 0;
    for (size_t i = 0; i < n_types; i++)
        for (int v = 0; v < 5; v++) {
            /* v: 0 aligned rows, 1 bias and weights 4 bytes off, 2 nine
             * tokens, 3 and 4 activation rows 4 bytes off (no texel view),
             * one token and nine */
            int type = types[i];
            int64_t K = v == 0 ? 256 * (elmi_qtype_get(type)->block_size > 32 ? 1 : 2) : ragged_k(type);
            mm_case c = {type, K, 37, v == 2 || v == 4 ? 9 : 1, false, v == 1, false, v >= 3 ? 1 : 0, v == 1 ? 4 : 0};
            mm_data d;
            mm_data_new(&c, &d);
            uint64_t n_tex = texel_dispatches(&ft);
            float *a = mm_run(&ft, &c, &d);
            bool took_tex = texel_dispatches(&ft) > n_tex;
            bool lane_rows = took_tex && cpu_device && type != QT_F32 && type != QT_F16 && type != QT_BF16;
            float *b = mm_run(lane_rows ? &fs1 : &fs, &c, &d);
            double *want = mm_want(&c, &d, d.x), e = nmse(a, want, (size_t)(c.N * c.T));
            const char *tn = elmi_qtype_name(type);
            cr_expect_leq(e, 1e-5, "[%s] MUL_MAT %s K=%lld T=%lld: NMSE %.3g", on, tn, (long long)K, (long long)c.T, e);
            if (c.T == 1)
                cr_expect_eq(memcmp(a, b, sizeof(float) * (size_t)c.N), 0, "MUL_MAT %s K=%lld: [%s] and [%s] differ",
                             tn, (long long)K, on, lane_rows ? off1 : off);
            mm_data_free(&d);
            free(a), free(b), free(want);
        }
    cr_expect_gt(texel_dispatches(&ft), 0, "[%s] no mat-vec read texel buffers", on);
    cr_expect_eq(texel_dispatches(&fs), 0, "[%s] a mat-vec read texel buffers", off);
    cr_expect_eq(fallbacks(&ft) + fallbacks(&fs) + fallbacks(&fs1), 0, "[%s] unexpected CPU fallbacks", base);
    vfx_close(&ft), vfx_close(&fs), vfx_close(&fs1);
}

Test(vk_ops, texel_reads_match_storage_reads) {
    texel_case("", ALL_TYPES, N_ALL_TYPES);
    texel_case("noimport", SOME_TYPES, N_SOME_TYPES);
    texel_case("nofp16,nosubgroup,discrete,mv_tokens=4", SOME_TYPES, N_SOME_TYPES);
}

/* Ids come from device memory, so the shader cannot fail the graph as the
 * CPU backend does: an id outside the table gives a row of zeros instead of
 * an out-of-bounds read. graph_prepare then graph_compute, as the engine
 * calls them. */
Test(vk_ops, get_rows_bad_ids_give_zero_rows) {
    vfx f;
    vfx_open(&f, "small-buffers");
    const int64_t n = 64, rows = 10;
    float *w = rand_floats((size_t)(n * rows), 1.0f);
    be_tensor *tab = host_tensor(&f, QT_F32, n, rows, w, "table");
    be_tensor *I = dev_tensor(&f, BE_TYPE_I32, 4, 1, 1, "ids"), *D = dev_tensor(&f, QT_F32, n, 4, 1, "d");
    const int32_t ids[4] = {2, -1, 10, 9};
    put(&f, I, ids);
    float junk[4 * 64];
    for (int i = 0; i < 4 * 64; i++) junk[i] = 123.0f;
    put(&f, D, junk);
    be_node nd = {.op = BE_OP_GET_ROWS, .dst = D, .src = {tab, I}};
    be_graph g = {.nodes = &nd, .n_nodes = 1, .exact = true};
    cr_assert_eq(f.bi->graph_prepare(f.be, &g, f.err, sizeof f.err), ELM_OK, "%s", f.err);
    be_vk_stats s;
    elmi_be_vk_get_stats(f.be, &s);
    cr_expect_eq(s.n_weights, 1, "graph_prepare uploads the host tensors");
    run(&f, &nd, 1, true);
    float got[4 * 64];
    get(&f, D, got);
    for (int64_t i = 0; i < n; i++) {
        cr_assert_eq(got[i], w[2 * n + i]);
        cr_assert_eq(got[n + i], 0.0f);
        cr_assert_eq(got[2 * n + i], 0.0f);
        cr_assert_eq(got[3 * n + i], w[9 * n + i]);
    }
    free(w);
    vfx_close(&f);
}

/* -------------------------------------------------- RMS_NORM, ADD, SwiGLU */

static void check_row_ops(vfx *f, int64_t n, int64_t T) {
    size_t cnt = (size_t)(n * T);
    float *a = rand_floats(cnt, 2.0f), *b = rand_floats(cnt, 2.0f), *w = rand_floats((size_t)n, 1.0f);
    be_tensor *A = dev_tensor(f, QT_F32, n, T, 1, "a"), *B = dev_tensor(f, QT_F32, n, T, 1, "b");
    be_tensor *W = host_tensor(f, QT_F32, n, 1, w, "w");
    be_tensor *R = dev_tensor(f, QT_F32, n, T, 1, "r"), *S = dev_tensor(f, QT_F32, n, T, 1, "s");
    put(f, A, a);
    put(f, B, b);
    /* r = rms_norm(a) * w; s = a + b; a = silu(a) * b in place (after both read a). */
    be_node nodes[3] = {
        {.op = BE_OP_RMS_NORM, .dst = R, .src = {A, W}, .fparams = {1e-5f}},
        {.op = BE_OP_ADD, .dst = S, .src = {A, B}},
        {.op = BE_OP_GLU, .dst = A, .src = {A, B}},
    };
    run(f, nodes, 3, true);
    float *got = malloc(cnt * sizeof *got);
    double *want = malloc(cnt * sizeof *want);
    get(f, R, got);
    elm_ref_rms_norm(a, w, 1e-5f, n, T, want);
    double e = nmse(got, want, cnt);
    cr_expect_leq(e, 1e-10, "[%s] RMS_NORM NMSE %.3g", f->limits, e);
    get(f, S, got);
    for (size_t i = 0; i < cnt; i++) want[i] = (double)a[i] + b[i];
    e = nmse(got, want, cnt);
    cr_expect_leq(e, 1e-10, "[%s] ADD NMSE %.3g", f->limits, e);
    get(f, A, got);
    elm_ref_glu(BE_GLU_SILU, a, b, (int64_t)cnt, want);
    e = nmse(got, want, cnt);
    cr_expect_leq(e, 1e-10, "[%s] SWIGLU (in place) NMSE %.3g", f->limits, e);
    free(a), free(b), free(w), free(got), free(want);
    vfx_reset(f);
}

Test(vk_ops, rms_norm_add_swiglu_all_profiles) {
    for (size_t p = 0; p < N_PROFILES; p++) {
        vfx f;
        vfx_open(&f, PROFILES[p]);
        check_row_ops(&f, 300, 33);
        check_row_ops(&f, 4096 + 4, 1);
        cr_expect_eq(fallbacks(&f), 0);
        vfx_close(&f);
    }
}

/* ------------------------------------ GLU (GELU), per-head RMS_NORM, SCALE */

/* GELU GLU (gemma) with gates spread over [-30, 30], both ends exactly, in
 * place over the gates and over the up values. NMSE is blind to the
 * negative tail, where values are near 0, so each value is also checked
 * within 1e-5 of its size plus 1e-12 (the double reference's own 1 +
 * tanh(y) cancellation is ~1e-15 there). */
static void check_gelu_glu(vfx *f) {
    const int64_t n = 301, T = 3;
    size_t cnt = (size_t)(n * T);
    float *g = rand_floats(cnt, 30.0f), *u = rand_floats(cnt, 2.0f), *got = malloc(cnt * sizeof *got);
    const float special[] = {30.0f, -30.0f, 0.0f, 1e-3f, -1e-3f, -4.0f, -9.0f, 9.5f, 29.99f, -29.99f};
    memcpy(g, special, sizeof special);
    double *want = malloc(cnt * sizeof *want);
    elm_ref_glu(BE_GLU_GELU_TANH, g, u, (int64_t)cnt, want);
    for (int into_up = 0; into_up < 2; into_up++) {
        be_tensor *G = dev_tensor(f, QT_F32, n, T, 1, "g"), *U = dev_tensor(f, QT_F32, n, T, 1, "u");
        put(f, G, g), put(f, U, u);
        be_tensor *D = into_up ? U : G;
        be_node nd = {.op = BE_OP_GLU, .dst = D, .src = {G, U}, .iparams = {BE_GLU_GELU_TANH}};
        run(f, &nd, 1, true);
        get(f, D, got);
        double e = nmse(got, want, cnt);
        cr_expect_leq(e, 1e-10, "[%s] GELU GLU in place over the %s: NMSE %.3g", f->limits,
                      into_up ? "up values" : "gates", e);
        for (size_t i = 0; i < cnt; i++)
            if (!(fabs(got[i] - want[i]) <= 1e-5 * fabs(want[i]) + 1e-12)) {
                cr_expect_fail("[%s] GELU GLU of gate %.9g, up %.9g: got %.9g, want %.9g", f->limits, g[i], u[i],
                               got[i], want[i]);
                break;
            }
    }
    free(g), free(u), free(got), free(want);
    vfx_reset(f);
}

/* A view (ne0, ne1, ne2, ne3) of the bytes of `base`, starting `offs` bytes in. */
static be_tensor *view4(vfx *f, const be_tensor *base, size_t offs, const int64_t ne[4], const size_t nb[4],
                        const char *name) {
    be_tensor *v = new_tensor(f, QT_F32, ne[0], ne[1], ne[2], name);
    v->ne[3] = ne[3];
    memcpy(v->nb, nb, sizeof v->nb);
    v->buf = base->buf;
    v->offs = base->offs + offs;
    v->data = base->data ? (char *)base->data + offs : NULL;
    return v;
}

/* Per-head RMS_NORM (qwen3's Q/K norms), in place: rows of head_dim over a
 * 4-D view (hd, 3 heads, 2, 3) of the heads 1..3 of a fused (hd, 5, 6)
 * tensor, so rows are strided along dims 1, 2 and 3; the other heads must
 * stay as they were. */
static void check_head_norm(vfx *f) {
    const int64_t hd = 64, nf = 5, T = 6;
    size_t cnt = (size_t)(hd * nf * T);
    float *x = rand_floats(cnt, 3.0f), *w = rand_floats((size_t)hd, 1.0f), *got = malloc(cnt * sizeof *got);
    be_tensor *B = dev_tensor(f, QT_F32, hd, nf, T, "qkv"), *W = host_tensor(f, QT_F32, hd, 1, w, "q_norm");
    const int64_t ne[4] = {hd, 3, 2, 3};
    const size_t nb[4] = {4, B->nb[1], B->nb[2], 2 * B->nb[2]};
    be_tensor *Q = view4(f, B, B->nb[1], ne, nb, "q_heads");
    put(f, B, x);
    be_node nd = {.op = BE_OP_RMS_NORM, .dst = Q, .src = {Q, W}, .fparams = {1e-6f}};
    run(f, &nd, 1, true);
    get(f, B, got);
    double *want = malloc(cnt * sizeof *want);
    for (int64_t r = 0; r < nf * T; r++) {
        bool in_view = r % nf >= 1 && r % nf <= 3;
        if (in_view) elm_ref_rms_norm(x + r * hd, w, 1e-6f, hd, 1, want + r * hd);
        for (int64_t i = 0; !in_view && i < hd; i++) {
            want[r * hd + i] = x[r * hd + i];
            cr_expect_eq(got[r * hd + i], x[r * hd + i], "[%s] head %lld outside the view changed", f->limits,
                         (long long)(r % nf));
        }
    }
    double e = nmse(got, want, cnt);
    cr_expect_leq(e, 1e-10, "[%s] per-head RMS_NORM NMSE %.3g", f->limits, e);
    free(x), free(w), free(got), free(want);
    vfx_reset(f);
}

/* SCALE of a (300, 4, 2) tensor, without and with a softcap that the
 * values (up to 60 after scaling) push deep into tanh's saturation; the
 * capped one in place. */
static void check_scale(vfx *f) {
    const int64_t n = 300, d1 = 4, d2 = 2;
    size_t cnt = (size_t)(n * d1 * d2);
    float *x = rand_floats(cnt, 80.0f), *got = malloc(cnt * sizeof *got);
    double *want = malloc(cnt * sizeof *want);
    for (int capped = 0; capped < 2; capped++) {
        be_tensor *X = dev_tensor(f, QT_F32, n, d1, d2, "x");
        be_tensor *D = capped ? X : dev_tensor(f, QT_F32, n, d1, d2, "d");
        put(f, X, x);
        float cap = capped ? 5.0f : 0.0f;
        be_node nd = {.op = BE_OP_SCALE, .dst = D, .src = {X}, .fparams = {0.75f, cap}};
        run(f, &nd, 1, true);
        get(f, D, got);
        elm_ref_scale(x, (int64_t)cnt, 0.75f, cap, want);
        double e = nmse(got, want, cnt);
        cr_expect_leq(e, 1e-10, "[%s] SCALE softcap %g NMSE %.3g", f->limits, cap, e);
    }
    free(x), free(got), free(want);
    vfx_reset(f);
}

Test(vk_ops, gelu_glu_head_norm_scale_all_profiles) {
    for (size_t p = 0; p < N_PROFILES; p++) {
        vfx f;
        vfx_open(&f, PROFILES[p]);
        check_gelu_glu(&f);
        check_head_norm(&f);
        check_scale(&f);
        cr_expect_eq(fallbacks(&f), 0, "[%s] unexpected CPU fallbacks", PROFILES[p]);
        vfx_close(&f);
    }
}

/* ------------------------------------------------------------------- ROPE */

typedef struct rope_case {
    int mode, n_rot;
    bool ff, yarn;
} rope_case;

/* The semantics of backend.h, in double. */
static void ref_rope(const rope_case *c, const float *fp, const int32_t *ip, const float *ff, const float *x,
                     double *y, int64_t hd, int64_t nh, int64_t T, const int32_t *pos) {
    double base = fp[0], fs = fp[1], ext = fp[2], mscale = fp[3], lo = 0, hi = 0;
    if (ext != 0) {
        double dim_fast = c->n_rot * log(ip[2] / (fp[4] * 2 * M_PI)) / (2 * log(base));
        double dim_slow = c->n_rot * log(ip[2] / (fp[5] * 2 * M_PI)) / (2 * log(base));
        lo = fmax(0, floor(dim_fast));
        hi = fmin(c->n_rot - 1, ceil(dim_slow));
        mscale *= 1 + 0.1 * log(1 / fs);
    }
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < nh; h++) {
            const float *xr = x + (t * nh + h) * hd;
            double *yr = y + (t * nh + h) * hd;
            for (int64_t i = 0; i < hd; i++) yr[i] = xr[i];
            for (int i = 0; i < c->n_rot / 2; i++) {
                double extrap = pos[t] * pow(base, -2.0 * i / c->n_rot) / (ff ? ff[i] : 1.0);
                double theta = fs * extrap;
                if (ext != 0) {
                    double ramp = (1 - fmin(1, fmax(0, (i - lo) / fmax(0.001, hi - lo)))) * ext;
                    theta = theta * (1 - ramp) + extrap * ramp;
                }
                int a = c->mode == BE_ROPE_NEOX ? i : 2 * i, b = c->mode == BE_ROPE_NEOX ? i + c->n_rot / 2 : 2 * i + 1;
                double cs = cos(theta) * mscale, sn = sin(theta) * mscale;
                yr[a] = xr[a] * cs - xr[b] * sn;
                yr[b] = xr[a] * sn + xr[b] * cs;
            }
        }
}

static double check_rope(vfx *f, const rope_case *c, bool in_place) {
    const int64_t hd = 64, nh = 3, T = 5;
    const int32_t pos[5] = {0, 1, 17, 500, 2047};
    float *x = rand_floats((size_t)(hd * nh * T), 1.0f), ff[32];
    for (int i = 0; i < 32; i++) ff[i] = 1.0f + (float)i / 8;
    be_tensor *X = dev_tensor(f, QT_F32, hd, nh, T, "x"), *P = dev_tensor(f, BE_TYPE_I32, T, 1, 1, "pos");
    be_tensor *FF = c->ff ? host_tensor(f, QT_F32, c->n_rot / 2, 1, ff, "ff") : NULL;
    be_tensor *Y = in_place ? X : dev_tensor(f, QT_F32, hd, nh, T, "y");
    put(f, X, x);
    put(f, P, pos);
    be_node nd = {.op = BE_OP_ROPE, .dst = Y, .src = {X, P, FF},
                  .iparams = {c->mode, c->n_rot, 4096},
                  .fparams = {10000.0f, c->yarn ? 0.25f : 1.0f, c->yarn ? 1.0f : 0.0f, 1.0f, 32.0f, 1.0f}};
    run(f, &nd, 1, true);
    size_t cnt = (size_t)(hd * nh * T);
    float *got = malloc(cnt * sizeof *got);
    double *want = malloc(cnt * sizeof *want);
    get(f, Y, got);
    ref_rope(c, nd.fparams, nd.iparams, c->ff ? ff : NULL, x, want, hd, nh, T, pos);
    double e = nmse(got, want, cnt);
    free(x), free(got), free(want);
    vfx_reset(f);
    return e;
}

Test(vk_ops, rope_modes_factors_yarn_all_profiles) {
    const rope_case cases[] = {
        {BE_ROPE_NORM, 64, false, false}, {BE_ROPE_NEOX, 64, false, false}, {BE_ROPE_NORM, 32, true, false},
        {BE_ROPE_NEOX, 48, true, true},   {BE_ROPE_NORM, 64, false, true},
    };
    double worst = 0;
    for (size_t p = 0; p < N_PROFILES; p++) {
        vfx f;
        vfx_open(&f, PROFILES[p]);
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            double e = check_rope(&f, &cases[i], i % 2 == 0);
            cr_expect_leq(e, 1e-8, "[%s] ROPE case %zu NMSE %.3g", PROFILES[p], i, e);
            if (e > worst) worst = e;
        }
        cr_expect_eq(fallbacks(&f), 0);
        vfx_close(&f);
    }
    fprintf(stderr, "vk ROPE: worst NMSE %.2g\n", worst);
}

/* ------------------------------------------------- KV_STORE and ATTENTION */

typedef struct attn_case {
    int cache_type;
    int64_t hd, n_head, n_kv, n_ctx;
} attn_case;

/* The cache as it must be after storing rows: converted as the CPU does. */
static void cache_store(int type, float *ref, const float *x, int64_t row, int64_t pos, int64_t T) {
    for (int64_t i = 0; i < row * T; i++)
        ref[pos * row + i] = type == QT_F16 ? elmi_fp16_to_f32(elmi_f32_to_fp16(x[i])) : x[i];
}

static void check_cache_bits(vfx *f, const be_tensor *cache, const float *ref, int64_t rows) {
    int64_t row = cache->ne[0];
    size_t n = elmi_be_tensor_nbytes(cache);
    uint8_t *raw = malloc(n);
    get(f, cache, raw);
    for (int64_t i = 0; i < row * rows; i++) {
        if (cache->type == QT_F16) {
            uint16_t want = elmi_f32_to_fp16(ref[i]), got = ((uint16_t *)raw)[i];
            cr_assert_eq(got, want, "[%s] F16 cache element %lld: %04x != %04x", f->limits, (long long)i, got, want);
        } else {
            cr_assert_eq(((float *)raw)[i], ref[i], "[%s] F32 cache element %lld", f->limits, (long long)i);
        }
    }
    free(raw);
}

/* Steps: a prompt of 5 tokens, two decode steps, a batch of 33. */
static double check_attention(vfx *f, const attn_case *c) {
    static const int64_t steps[][2] = {{0, 5}, {5, 1}, {6, 1}, {7, 33}};
    int64_t hd = c->hd, row = hd * c->n_kv, qrow = hd * c->n_head;
    be_tensor *K = dev_tensor(f, c->cache_type, row, c->n_ctx, 1, "k_cache");
    be_tensor *V = dev_tensor(f, c->cache_type, row, c->n_ctx, 1, "v_cache");
    float *kref = calloc((size_t)(row * c->n_ctx), sizeof(float)), *vref = calloc((size_t)(row * c->n_ctx), sizeof(float));
    double worst = 0;
    for (size_t s = 0; s < sizeof steps / sizeof *steps; s++) {
        int64_t pos = steps[s][0], T = steps[s][1];
        float *q = rand_floats((size_t)(qrow * T), 1.0f), *k = rand_floats((size_t)(row * T), 1.0f);
        float *v = rand_floats((size_t)(row * T), 1.0f);
        be_tensor *Q = dev_tensor(f, QT_F32, hd, c->n_head, T, "q"), *Kn = dev_tensor(f, QT_F32, row, T, 1, "k");
        be_tensor *Vn = dev_tensor(f, QT_F32, row, T, 1, "v"), *O = dev_tensor(f, QT_F32, qrow, T, 1, "out");
        put(f, Q, q), put(f, Kn, k), put(f, Vn, v);
        be_node nodes[3] = {
            {.op = BE_OP_KV_STORE, .dst = K, .src = {Kn}, .iparams = {(int32_t)pos}},
            {.op = BE_OP_KV_STORE, .dst = V, .src = {Vn}, .iparams = {(int32_t)pos}},
            {.op = BE_OP_ATTENTION, .dst = O, .src = {Q, K, V}, .iparams = {(int32_t)pos, (int32_t)c->n_kv},
             .fparams = {1.0f / sqrtf((float)hd)}},
        };
        run(f, nodes, 3, c->cache_type == QT_F32);
        cache_store(c->cache_type, kref, k, row, pos, T);
        cache_store(c->cache_type, vref, v, row, pos, T);
        check_cache_bits(f, K, kref, pos + T);
        check_cache_bits(f, V, vref, pos + T);
        float *got = malloc(sizeof(float) * qrow * T);
        double *want = malloc(sizeof(double) * qrow * T);
        get(f, O, got);
        elm_ref_attn a = {(int)hd, (int)c->n_head, (int)c->n_kv, (int)T, (int)pos, (int)c->n_ctx, 0, false,
                          1.0f / sqrtf((float)hd), 0};
        elm_ref_attention(&a, q, kref, vref, want);
        double e = nmse(got, want, (size_t)(qrow * T));
        if (e > worst) worst = e;
        free(q), free(k), free(v), free(got), free(want);
    }
    free(kref), free(vref);
    vfx_reset(f);
    return worst;
}

Test(vk_ops, kv_store_attention_all_profiles) {
    const attn_case cases[] = {
        {QT_F32, 64, 4, 2, 48}, {QT_F16, 64, 4, 2, 48}, {QT_F16, 128, 2, 1, 40}, {QT_F32, 40, 6, 6, 40},
    };
    double worst = 0;
    for (size_t p = 0; p < N_PROFILES; p++) {
        vfx f;
        vfx_open(&f, PROFILES[p]);
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            double e = check_attention(&f, &cases[i]);
            cr_expect_leq(e, 1e-10, "[%s] ATTENTION case %zu NMSE %.3g", PROFILES[p], i, e);
            if (e > worst) worst = e;
        }
        cr_expect_eq(fallbacks(&f), 0);
        vfx_close(&f);
    }
    fprintf(stderr, "vk ATTENTION: worst NMSE %.2g\n", worst);
}

/* ------------------------- sliding windows, ring caches, softcapped scores */

typedef struct win_case {
    int cache_type, hd, nh, nkv, n_rows, window;
    bool ring;
    float softcap;
    int steps[9][2]; /* {pos, T}, until T == 0: at most 8 steps, then a zero sentinel */
} win_case;

/* A host mirror of a cache's bytes: what the device must hold. */
static void mirror_row(int type, uint8_t *raw, int64_t row_len, int64_t row, const float *x) {
    for (int64_t i = 0; i < row_len; i++) {
        int64_t e = row * row_len + i;
        if (type == QT_F16) ((uint16_t *)raw)[e] = x ? elmi_f32_to_fp16(x[i]) : 0x7E00; /* NULL: NaN */
        else ((float *)raw)[e] = x ? x[i] : NAN;
    }
}

static void mirror_values(int type, const uint8_t *raw, int64_t n, float *out) {
    for (int64_t e = 0; e < n; e++)
        out[e] = type == QT_F16 ? elmi_fp16_to_f32(((const uint16_t *)raw)[e]) : ((const float *)raw)[e];
}

/* Steps of KV_STORE, KV_STORE, ATTENTION. Before each step every cache row
 * whose position no query of the step may read (below the window of its
 * first query, or never written) is set to NaN, on the device and in the
 * mirror: a shader that reads one yields NaN. The caches must then equal
 * the mirror bit for bit, and the output the reference's. Returns the
 * worst NMSE. */
static double check_window_attention(vfx *f, const win_case *c) {
    int64_t row_len = (int64_t)c->hd * c->nkv, qrow = (int64_t)c->hd * c->nh, cells = row_len * c->n_rows;
    be_tensor *KV[2] = {dev_tensor(f, c->cache_type, row_len, c->n_rows, 1, "k_cache"),
                        dev_tensor(f, c->cache_type, row_len, c->n_rows, 1, "v_cache")};
    size_t bytes = elmi_be_tensor_nbytes(KV[0]);
    uint8_t *raw[2] = {malloc(bytes), malloc(bytes)}, *dev = malloc(bytes);
    float *vals[2] = {malloc(sizeof(float) * cells), malloc(sizeof(float) * cells)};
    int64_t *holds = malloc(sizeof(int64_t) * c->n_rows), rows[64];
    for (int r = 0; r < c->n_rows; r++) holds[r] = -1;
    double worst = 0;
    for (int s = 0; c->steps[s][1]; s++) {
        int pos = c->steps[s][0], T = c->steps[s][1];
        int lo = c->window && pos - c->window + 1 > 0 ? pos - c->window + 1 : 0;
        for (int r = 0; r < c->n_rows; r++)
            if (holds[r] < lo) {
                holds[r] = -1;
                mirror_row(c->cache_type, raw[0], row_len, r, NULL);
                mirror_row(c->cache_type, raw[1], row_len, r, NULL);
            }
        put(f, KV[0], raw[0]), put(f, KV[1], raw[1]);
        float *q = rand_floats((size_t)(qrow * T), 3.0f), *kv[2] = {rand_floats((size_t)(row_len * T), 1.0f),
                                                                    rand_floats((size_t)(row_len * T), 1.0f)};
        be_tensor *Q = dev_tensor(f, QT_F32, c->hd, c->nh, T, "q"), *O = dev_tensor(f, QT_F32, qrow, T, 1, "out");
        be_tensor *Kn = dev_tensor(f, QT_F32, row_len, T, 1, "k"), *Vn = dev_tensor(f, QT_F32, row_len, T, 1, "v");
        put(f, Q, q), put(f, Kn, kv[0]), put(f, Vn, kv[1]);
        be_node nodes[3] = {
            {.op = BE_OP_KV_STORE, .dst = KV[0], .src = {Kn}, .iparams = {pos, c->ring}},
            {.op = BE_OP_KV_STORE, .dst = KV[1], .src = {Vn}, .iparams = {pos, c->ring}},
            {.op = BE_OP_ATTENTION, .dst = O, .src = {Q, KV[0], KV[1]},
             .iparams = {pos, c->nkv, c->window, c->ring}, .fparams = {1.0f / sqrtf((float)c->hd), c->softcap}},
        };
        run(f, nodes, 3, c->cache_type == QT_F32);
        cr_assert_leq(T, 64);
        elm_ref_kv_rows(pos, T, c->n_rows, c->ring, rows);
        for (int t = 0; t < T; t++) {
            holds[rows[t]] = pos + t;
            for (int i = 0; i < 2; i++) mirror_row(c->cache_type, raw[i], row_len, rows[t], kv[i] + t * row_len);
        }
        for (int i = 0; i < 2; i++) {
            get(f, KV[i], dev);
            cr_expect(!memcmp(dev, raw[i], bytes), "[%s] %s cache after step %d differs from the mirror", f->limits,
                      i ? "V" : "K", s);
            mirror_values(c->cache_type, raw[i], cells, vals[i]);
        }
        elm_ref_attn a = {c->hd, c->nh, c->nkv, T, pos, c->n_rows, c->window, c->ring, 1.0f / sqrtf((float)c->hd),
                          c->softcap};
        float *got = malloc(sizeof(float) * qrow * T);
        double *want = malloc(sizeof(double) * qrow * T);
        elm_ref_attention(&a, q, vals[0], vals[1], want);
        get(f, O, got);
        double e = nmse(got, want, (size_t)(qrow * T));
        cr_expect_leq(e, 1e-10, "[%s] ATTENTION window %d ring %d softcap %g, step %d (pos %d, T %d): NMSE %.3g",
                      f->limits, c->window, c->ring, c->softcap, s, pos, T, e);
        if (e > worst || e != e) worst = e;
        free(q), free(kv[0]), free(kv[1]), free(got), free(want);
    }
    free(raw[0]), free(raw[1]), free(dev), free(vals[0]), free(vals[1]), free(holds);
    vfx_reset(f);
    return worst;
}

/* Decode and prompt steps that cross the window; ring caches sized
 * exactly window + T - 1 rows that wrap several times; a window above the
 * workgroup size, so a tile wraps around the ring in its middle. */
static const win_case WIN_CASES[] = {
    {QT_F32, 64, 4, 2, 48, 0, false, 1.0f, {{0, 5}, {5, 1}, {6, 1}, {7, 33}}},
    {QT_F32, 64, 4, 2, 48, 6, false, 0.0f, {{0, 9}, {9, 1}, {10, 1}, {11, 20}}},
    {QT_F16, 64, 4, 1, 14, 6, true, 0.0f, {{0, 9}, {9, 1}, {10, 1}, {11, 9}, {20, 1}, {21, 9}, {30, 1}}},
    {QT_F32, 40, 6, 3, 8, 4, true, 1.0f, {{0, 5}, {5, 1}, {6, 1}, {7, 5}, {12, 1}, {13, 1}}},
    {QT_F16, 128, 2, 1, 102, 70, true, 2.0f, {{0, 33}, {33, 1}, {34, 33}, {67, 33}, {100, 1}, {101, 2}}},
};
#define N_WIN_CASES (sizeof WIN_CASES / sizeof *WIN_CASES)

Test(vk_ops, windowed_ring_softcapped_attention_all_profiles) {
    double worst = 0;
    for (size_t p = 0; p < N_PROFILES; p++) {
        vfx f;
        vfx_open(&f, PROFILES[p]);
        for (size_t i = 0; i < N_WIN_CASES; i++) {
            double e = check_window_attention(&f, &WIN_CASES[i]);
            if (e > worst || e != e) worst = e;
        }
        cr_expect_eq(fallbacks(&f), 0, "[%s] unexpected CPU fallbacks", PROFILES[p]);
        vfx_close(&f);
    }
    fprintf(stderr, "vk windowed ATTENTION: worst NMSE %.2g\n", worst);
}

/* -------------------------------------------------------- limits at work */

/* A shared-memory limit too small for the attention kernel: the node runs
 * on the CPU, counted, with the same results. */
Test(vk_ops, attention_falls_back_beyond_shared_memory) {
    vfx f;
    vfx_open(&f, "max_shared=1024");
    attn_case c = {QT_F32, 256, 2, 1, 48};
    double e = check_attention(&f, &c);
    cr_expect_leq(e, 1e-10, "NMSE %.3g", e);
    cr_expect_eq(fallbacks(&f), 4, "one ATTENTION per step should fall back");
    vfx_close(&f);
}

/* The backend itself never runs a node on the CPU: the engine plans that
 * (engine/sched.c). Handed one it refused, it fails and says why. */
Test(vk_ops, refused_node_is_an_error_for_the_backend) {
    vfx f;
    vfx_open(&f, "max_shared=1024");
    be_tensor *q = dev_tensor(&f, QT_F32, 256, 2, 1, "q");
    be_tensor *k = dev_tensor(&f, QT_F32, 256, 8, 1, "k");
    be_tensor *v = dev_tensor(&f, QT_F32, 256, 8, 1, "v");
    be_tensor *o = dev_tensor(&f, QT_F32, 512, 1, 1, "o");
    be_node nd = {.op = BE_OP_ATTENTION, .dst = o, .src = {q, k, v}, .iparams = {0, 1}, .fparams = {0.0625f}};
    cr_assert(!f.bi->supports_op(f.be, &nd), "ATTENTION should not fit 1 KiB of shared memory");
    cr_expect_neq(f.bi->unsupported_why(f.be)[0], '\0', "no reason given");
    be_graph g = {.nodes = &nd, .n_nodes = 1, .exact = true};
    cr_expect_eq(f.bi->graph_compute(f.be, &g, f.err, sizeof f.err), ELM_ERR_UNSUPPORTED);
    cr_expect(strstr(f.err, "cannot run"), "message: %s", f.err);
    vfx_close(&f);
}

/* small-buffers: a weight of more than 1 MiB is split into row pieces,
 * each bound and dispatched separately. */
Test(vk_ops, weights_beyond_the_range_are_split) {
    vfx f;
    vfx_open(&f, "small-buffers");
    for (int64_t T = 1; T <= 5; T += 4) {
        mm_case c = {QT_Q8_0, 1024, 1100, T, true, true, false, 0, 0};
        double e = check_mul_mat(&f, &c);
        cr_expect_leq(e, 1e-10, "T=%lld NMSE %.3g", (long long)T, e);
    }
    const int32_t ids[] = {0, 1099, 963, 964, 500, 2};
    double e = check_get_rows(&f, QT_Q8_0, 1024, 1100, ids, 6);
    cr_expect_leq(e, 1e-12, "GET_ROWS NMSE %.3g", e);
    cr_expect_eq(fallbacks(&f), 0);
    be_vk_stats s;
    elmi_be_vk_get_stats(f.be, &s);
    cr_expect_geq(s.n_weights, 1);
    vfx_close(&f);
}

/* A tensor across two allocations of a segmented buffer runs on the CPU. */
Test(vk_ops, tensor_across_allocations_falls_back) {
    vfx f;
    vfx_open(&f, "small-buffers");
    const int64_t n = 1024, T = 100; /* 400 KiB per tensor */
    be_buffer *buf;
    cr_assert_eq(f.bi->buffer_alloc(f.be, 3u << 20, NULL, &buf), ELM_OK);
    f.bufs[f.n_bufs++] = buf;
    be_tensor *A = new_tensor(&f, QT_F32, n, T, 1, "a"), *B = new_tensor(&f, QT_F32, n, T, 1, "b");
    be_tensor *S = new_tensor(&f, QT_F32, n, T, 1, "s");
    A->buf = B->buf = S->buf = buf;
    A->offs = 0, B->offs = 800 * 1024, S->offs = 1600 * 1024; /* B crosses 1 MiB */
    float *a = rand_floats((size_t)(n * T), 1.0f), *b = rand_floats((size_t)(n * T), 1.0f);
    put(&f, A, a), put(&f, B, b);
    be_node nd = {.op = BE_OP_ADD, .dst = S, .src = {A, B}};
    cr_expect_not(f.bi->supports_op(f.be, &nd));
    run(&f, &nd, 1, true);
    float *got = malloc(sizeof(float) * n * T);
    get(&f, S, got);
    for (int64_t i = 0; i < n * T; i++) cr_assert_float_eq(got[i], a[i] + b[i], 1e-6);
    cr_expect_eq(fallbacks(&f), 1);
    free(a), free(b), free(got);
    vfx_close(&f);
}

Test(vk_ops, supports_op_answers_without_side_effects) {
    vfx f;
    vfx_open(&f, "");
    float w[64] = {0};
    be_tensor *W = host_tensor(&f, QT_F32, 8, 8, w, "w"), *X = dev_tensor(&f, QT_F32, 8, 1, 1, "x");
    be_tensor *D = dev_tensor(&f, QT_F32, 8, 1, 1, "d");
    be_node nd = {.op = BE_OP_MUL_MAT, .dst = D, .src = {W, X}};
    cr_expect(f.bi->supports_op(f.be, &nd));
    be_vk_stats s;
    elmi_be_vk_get_stats(f.be, &s);
    cr_expect_eq(s.n_weights, 0, "supports_op must not upload");
    uint8_t q2[84 * 4] = {0};
    be_tensor *Q = host_tensor(&f, QT_IQ4_NL, 32, 1, q2, "iq");
    nd.src[0] = Q;
    cr_expect_not(f.bi->supports_op(f.be, &nd), "no IQ4_NL kernel");
    vfx_close(&f);
}

/* Malformed parameters of the new ops are clear errors, never a crash or
 * an out-of-bounds access; what the device cannot run is answered by
 * supports_op (and runs on the CPU). */
Test(vk_ops, new_op_parameters_are_checked) {
    vfx f;
    vfx_open(&f, "");
    be_tensor *A = dev_tensor(&f, QT_F32, 64, 4, 1, "a"), *B = dev_tensor(&f, QT_F32, 64, 4, 1, "b");
    be_tensor *K = dev_tensor(&f, QT_F32, 64, 6, 1, "k_cache"), *V = dev_tensor(&f, QT_F32, 64, 6, 1, "v_cache");
    be_tensor *Q = dev_tensor(&f, QT_F32, 64, 1, 4, "q"), *W = dev_tensor(&f, QT_F32, 3, 64, 1, "conv_k");
    be_tensor *S6 = dev_tensor(&f, QT_F32, 64, 6, 1, "state"), *S5 = dev_tensor(&f, QT_F32, 64, 5, 1, "state5");
    be_tensor *X3 = dev_tensor(&f, QT_F32, 192, 4, 1, "bcx");
    const struct {
        be_node nd;
        const char *what;
    } bad[] = {
        {{.op = BE_OP_GLU, .dst = A, .src = {A, B}, .iparams = {7}}, "an unknown GLU activation"},
        {{.op = BE_OP_KV_STORE, .dst = K, .src = {A}, .iparams = {0, 2}}, "ring 2"},
        {{.op = BE_OP_KV_STORE, .dst = K, .src = {A}, .iparams = {3, 0}}, "rows past the cache without a ring"},
        {{.op = BE_OP_KV_STORE, .dst = K, .src = {A}, .iparams = {-1, 1}}, "a negative position"},
        {{.op = BE_OP_ATTENTION, .dst = A, .src = {Q, K, V}, .iparams = {0, 1, 0, 1}, .fparams = {0.125f}},
         "a ring without a window"},
        {{.op = BE_OP_ATTENTION, .dst = A, .src = {Q, K, V}, .iparams = {9, 1, 4, 1}, .fparams = {0.125f}},
         "window + T - 1 above the ring's rows"},
        {{.op = BE_OP_ATTENTION, .dst = A, .src = {Q, K, V}, .iparams = {0, 1, -1, 0}, .fparams = {0.125f}},
         "a negative window"},
        {{.op = BE_OP_SHORTCONV, .dst = A, .src = {X3, W, S5}, .iparams = {0}}, "T + L - 1 above the state's rows"},
        {{.op = BE_OP_SHORTCONV, .dst = A, .src = {X3, W, S6}, .iparams = {-1}}, "a negative position"},
        {{.op = BE_OP_SHORTCONV, .dst = A, .src = {X3, W, X3}, .iparams = {0}}, "a state of the wrong shape"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        be_graph g = {.nodes = (be_node *)&bad[i].nd, .n_nodes = 1, .exact = true};
        f.err[0] = '\0';
        elm_status st = f.bi->graph_compute(f.be, &g, f.err, sizeof f.err);
        cr_expect_eq(st, ELM_ERR_INVALID_ARG, "%s %s: status %d", elmi_be_op_name(bad[i].nd.op), bad[i].what, st);
        cr_expect_neq(f.err[0], '\0', "%s %s: no message", elmi_be_op_name(bad[i].nd.op), bad[i].what);
    }
    /* The limits that hold: a ring of window + T - 1 rows from any position, SHORTCONV at T + L - 1 rows. */
    be_node ok[3] = {
        {.op = BE_OP_KV_STORE, .dst = K, .src = {A}, .iparams = {1000, 1}},
        {.op = BE_OP_ATTENTION, .dst = A, .src = {Q, K, V}, .iparams = {1000, 1, 3, 1}, .fparams = {0.125f}},
        {.op = BE_OP_SHORTCONV, .dst = B, .src = {X3, W, S6}, .iparams = {1000}},
    };
    run(&f, ok, 3, true);
    be_node scale = {.op = BE_OP_SCALE, .dst = A, .src = {A}, .fparams = {2.0f, 30.0f}};
    cr_expect(f.bi->supports_op(f.be, &scale));
    const int64_t ne[4] = {3, 64, 1, 1};
    const size_t nb[4] = {4, 16, 16 * 64, 16 * 64}; /* kernel rows 4 floats apart */
    be_tensor *Wv = view4(&f, X3, 0, ne, nb, "conv_k_view");
    be_node strided = {.op = BE_OP_SHORTCONV, .dst = B, .src = {X3, Wv, S6}};
    cr_expect_not(f.bi->supports_op(f.be, &strided), "kernel rows that are not dense run on the CPU");
    cr_expect(f.bi->supports_op(f.be, &ok[2]));
    vfx_close(&f);
}

/* elmi_be_vk_release_weights (bench --ops) drops the cached device copies of
 * host tensors: the same address with new contents is uploaded again,
 * where without it the backend keeps using its first copy by design. */
Test(vk_ops, released_weights_are_uploaded_again) {
    vfx f;
    vfx_open(&f, "");
    float w[64], x[8], out[8];
    for (int i = 0; i < 64; i++) w[i] = 1.0f;
    for (int i = 0; i < 8; i++) x[i] = (float)(i + 1);
    be_tensor *W = host_tensor(&f, QT_F32, 8, 8, w, "w"), *X = dev_tensor(&f, QT_F32, 8, 1, 1, "x");
    be_tensor *D = dev_tensor(&f, QT_F32, 8, 1, 1, "d");
    put(&f, X, x);
    be_node nd = {.op = BE_OP_MUL_MAT, .dst = D, .src = {W, X}};
    run(&f, &nd, 1, true);
    get(&f, D, out);
    cr_expect_float_eq(out[3], 36.0f, 1e-6);
    for (int i = 0; i < 64; i++) ((float *)W->data)[i] = 2.0f;
    run(&f, &nd, 1, true);
    get(&f, D, out);
    cr_expect_float_eq(out[3], 36.0f, 1e-6, "host tensors are uploaded once (cached by address)");
    be_vk_stats s;
    elmi_be_vk_get_stats(f.be, &s);
    cr_expect_eq(s.n_weights, 1);
    elmi_be_vk_release_weights(f.be);
    elmi_be_vk_get_stats(f.be, &s);
    cr_expect_eq(s.n_weights, 0);
    run(&f, &nd, 1, true);
    get(&f, D, out);
    cr_expect_float_eq(out[3], 72.0f, 1e-6, "the released weight was not uploaded again");
    elmi_be_vk_get_stats(f.be, &s);
    cr_expect_eq(s.n_weights, 1);
    vfx_close(&f);
}

/* -------------------------------------------------------------- SHORTCONV */

typedef struct sc_case {
    int n, L, n_rows;
    bool kernel_on_host;
    int steps[9][2]; /* {pos, T}, until T == 0: at most 8 steps, then a zero sentinel */
} sc_case;

/* The state ring starts as NaN (a position below 0 must not be read) and
 * must equal the reference's bit for bit after every step (b * x is one
 * F32 product); each step's output is checked against the reference and
 * stored at its positions in out (n, positions) for comparisons between
 * runs. bcx holds the columns of every position. Tensors are kept per T,
 * so equal steps replay. S: the state tensor, or NULL for one in its own
 * buffer. Returns the worst NMSE. */
static double check_shortconv(vfx *f, const sc_case *c, const float *bcx, const float *w, float *out,
                              be_tensor *S) {
    int n = c->n;
    be_tensor *W = c->kernel_on_host ? host_tensor(f, QT_F32, c->L, n, w, "conv_k")
                                     : dev_tensor(f, QT_F32, c->L, n, 1, "conv_k");
    if (!c->kernel_on_host) put(f, W, w);
    be_tensor *B[9] = {0}, *D[9] = {0};
    if (!S) S = dev_tensor(f, QT_F32, n, c->n_rows, 1, "state");
    float *state = malloc(sizeof(float) * n * c->n_rows), *dev = malloc(sizeof(float) * n * c->n_rows);
    for (int i = 0; i < n * c->n_rows; i++) state[i] = NAN;
    put(f, S, state);
    double worst = 0;
    for (int s = 0; c->steps[s][1]; s++) {
        int pos = c->steps[s][0], T = c->steps[s][1];
        cr_assert_leq(T, 8);
        if (!B[T]) B[T] = dev_tensor(f, QT_F32, 3 * n, T, 1, "bcx"), D[T] = dev_tensor(f, QT_F32, n, T, 1, "y");
        put(f, B[T], bcx + (size_t)pos * 3 * n);
        be_node nd = {.op = BE_OP_SHORTCONV, .dst = D[T], .src = {B[T], W, S}, .iparams = {pos}};
        run(f, &nd, 1, true);
        double *want = malloc(sizeof(double) * n * T);
        elm_ref_shortconv(bcx + (size_t)pos * 3 * n, w, state, n, c->L, T, pos, c->n_rows, want);
        get(f, D[T], out + (size_t)pos * n);
        double e = nmse(out + (size_t)pos * n, want, (size_t)(n * T));
        cr_expect_leq(e, 1e-10, "[%s] SHORTCONV n %d L %d step %d (pos %d, T %d): NMSE %.3g", f->limits, n, c->L, s,
                      pos, T, e);
        if (e > worst || e != e) worst = e;
        get(f, S, dev);
        cr_expect(!memcmp(dev, state, sizeof(float) * n * c->n_rows), "[%s] SHORTCONV state after step %d",
                  f->limits, s);
        free(want);
    }
    free(state), free(dev);
    vfx_reset(f);
    return worst;
}

/* Positions [0, 16) of random columns and a random kernel of L taps. */
static void shortconv_data(int n, int L, float **bcx, float **w) {
    *bcx = rand_floats((size_t)(3 * n * 16), 1.0f);
    *w = rand_floats((size_t)(L * n), 1.0f);
}

static const sc_case SC_CASES[] = {
    {37, 3, 6, true, {{0, 4}, {4, 1}, {5, 1}, {6, 4}, {10, 1}, {11, 1}, {12, 3}}},
    {300, 1, 4, false, {{0, 4}, {4, 1}, {5, 3}, {8, 1}, {9, 1}}},
    {130, 3, 3, true, {{0, 1}, {1, 1}, {2, 1}, {3, 1}, {4, 1}}},
};

Test(vk_ops, shortconv_all_profiles) {
    double worst = 0;
    for (size_t p = 0; p < N_PROFILES; p++) {
        vfx f;
        vfx_open(&f, PROFILES[p]);
        for (size_t i = 0; i < sizeof SC_CASES / sizeof *SC_CASES; i++) {
            const sc_case *c = &SC_CASES[i];
            float *bcx, *w, *out = malloc(sizeof(float) * c->n * 16);
            shortconv_data(c->n, c->L, &bcx, &w);
            double e = check_shortconv(&f, c, bcx, w, out, NULL);
            if (e > worst || e != e) worst = e;
            free(bcx), free(w), free(out);
        }
        cr_expect_eq(fallbacks(&f), 0, "[%s] unexpected CPU fallbacks", PROFILES[p]);
        vfx_close(&f);
    }
    fprintf(stderr, "vk SHORTCONV: worst NMSE %.2g\n", worst);
}

/* One call of T tokens computes what T calls of one token compute, bit for
 * bit (each invocation does the same F32 operations in the same order),
 * from a position > 0 across the ring's end; the single-token calls
 * replay one recorded command buffer. */
Test(vk_ops, shortconv_batch_equals_token_by_token) {
    const sc_case batch = {37, 3, 8, true, {{0, 3}, {3, 6}, {9, 1}}};
    const sc_case single = {37, 3, 8, true, {{0, 3}, {3, 1}, {4, 1}, {5, 1}, {6, 1}, {7, 1}, {8, 1}, {9, 1}}};
    vfx f;
    vfx_open(&f, "");
    float *bcx, *w, *out[2] = {malloc(sizeof(float) * 37 * 16), malloc(sizeof(float) * 37 * 16)};
    shortconv_data(37, 3, &bcx, &w);
    check_shortconv(&f, &batch, bcx, w, out[0], NULL);
    be_vk_stats s0, s1;
    elmi_be_vk_get_stats(f.be, &s0);
    check_shortconv(&f, &single, bcx, w, out[1], NULL);
    elmi_be_vk_get_stats(f.be, &s1);
    cr_expect(!memcmp(out[0], out[1], sizeof(float) * 37 * 10), "batched and token-by-token outputs differ");
    cr_expect_geq(s1.n_replays, s0.n_replays + 6, "single-token steps must replay");
    cr_expect_eq(fallbacks(&f), 0);
    free(bcx), free(w), free(out[0]), free(out[1]);
    vfx_close(&f);
}

/* The new parameters on the CPU path (these two need the CPU backend's
 * support of issue 10's ops). Windowed ring attention with softcapped
 * scores and a head size beyond shared memory: */
Test(vk_ops, windowed_attention_falls_back_beyond_shared_memory) {
    vfx f;
    vfx_open(&f, "max_shared=1024");
    const win_case c = {QT_F32, 256, 2, 1, 10, 4, true, 1.0f, {{0, 5}, {5, 1}, {6, 5}, {11, 1}}};
    double e = check_window_attention(&f, &c);
    cr_expect_leq(e, 1e-10, "ATTENTION NMSE %.3g", e);
    cr_expect_eq(fallbacks(&f), 4, "one ATTENTION per step should fall back");
    vfx_close(&f);
}

/* A SHORTCONV whose state straddles two allocations runs on the CPU, and
 * the fallback must write the state (src2) back. */
Test(vk_ops, shortconv_falls_back_and_writes_its_state_back) {
    vfx f;
    vfx_open(&f, "small-buffers");
    /* 296 KB of state from 800 KiB: across the first allocation's end (below 1 MiB). */
    const sc_case cs = {37, 3, 2000, true, {{0, 4}, {4, 1}, {5, 1}, {6, 4}, {10, 1}, {11, 1}, {12, 3}}}, *sc = &cs;
    be_buffer *buf;
    cr_assert_eq(f.bi->buffer_alloc(f.be, 2u << 20, NULL, &buf), ELM_OK);
    f.bufs[f.n_bufs++] = buf;
    be_tensor *S = new_tensor(&f, QT_F32, sc->n, sc->n_rows, 1, "state");
    S->buf = buf, S->offs = 800 * 1024;
    float *bcx, *w, *out = malloc(sizeof(float) * sc->n * 16);
    shortconv_data(sc->n, sc->L, &bcx, &w);
    double e = check_shortconv(&f, sc, bcx, w, out, S);
    cr_expect_leq(e, 1e-10, "SHORTCONV NMSE %.3g", e);
    cr_expect_eq(fallbacks(&f), 7, "every SHORTCONV step should fall back");
    free(bcx), free(w), free(out);
    vfx_close(&f);
}

#else

Test(vk_ops, vulkan_not_built) {
    cr_skip_test("built without Vulkan (ELM_HAVE_VULKAN=0)");
}

#endif
