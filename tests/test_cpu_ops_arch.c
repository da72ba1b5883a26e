/* test_cpu_ops_arch.c: the CPU ops and op options that the qwen3, gemma3,
 * phi3, smollm3 and lfm2 architectures brought to backend.h: GLU with
 * GELU(tanh), RMS_NORM over every row (per-head norms on a 3-D view), SCALE
 * with softcap, ring KV_STORE (also fused with ROPE), sliding-window, ring
 * and softcapped ATTENTION, and SHORTCONV. One-node graphs with 1, 2, 3 and
 * 8 threads, against the double references of support/op_ref.h (written
 * from backend.h alone); results must also be bit-identical across thread
 * counts. test_cpu_ops.c holds the older ops. Bounds are stated per test. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/cpu/ops.h"
#include "backends/cpu/vec_dot.h"
#include "quant/quant.h"
#include "support/cpu_fixture.h"
#include "support/op_ref.h"

static const int threads[] = {1, 2, 3, 8};
#define N_THREADS 4

static int64_t n_elems(const be_tensor *t) {
    return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
}

/* Keeps the first run's output and asks later runs for the same bits. */
typedef struct same_bits {
    float *first;
    size_t n;
} same_bits;

static void same_bits_check(same_bits *b, const float *got, size_t n, const char *what) {
    if (!b->first) {
        b->first = malloc(n * sizeof(float));
        memcpy(b->first, got, n * sizeof(float));
        b->n = n;
        return;
    }
    cr_assert_eq(b->n, n);
    cr_assert(memcmp(b->first, got, n * sizeof(float)) == 0, "%s: thread count changed the result",
              what);
}

static void same_bits_free(same_bits *b) {
    free(b->first);
    b->first = NULL;
}

/* --------------------------------------------------------------- GLU */

/* |got - want| for an activation times g: GELU is computed as
 * x / (1 + exp(-2u)); where exp(-2u) is large (x below about -2) the result
 * is tiny and the float rounding of u (|2u| * ~2 ulp in the exponent) shows
 * relative to it, yet stays under 1e-7 |x * g| (y e^-y <= 1/e); elsewhere
 * the error is a few ulp: 2e-6 relative. SiLU (x / (1 + exp(-x))) the same. */
static double glu_bound(double want, float x, float g) {
    return 2e-6 * fabs(want) + 1e-7 * fabs((double)x * g) + 1e-37;
}

/* Large |x| (saturation and exp's clamp), zeros, tiny and negative values
 * around the interesting range; the rest random in [-scale, scale]. */
static void glu_inputs(float *x, int64_t n, float scale) {
    static const float special[] = {0.0f, -0.0f, 1e-20f, -1e-20f, 3.0f,   -3.0f,   -5.0f,
                                    -10.0f, 10.0f, 30.0f, -30.0f, 100.0f, -100.0f, 1e3f,
                                    -1e3f,  1e4f,  -1e4f, 1e8f,   -1e8f};
    fill(x, n, scale);
    for (int64_t i = 0; i < n && i < (int64_t)(sizeof special / sizeof *special); i++)
        x[i * 7 % n] = special[i];
}

static void glu_case(int act, int64_t n, int64_t T) {
    same_bits bits = {0};
    for (int k = 0; k < N_THREADS; k++) {
        rng_state = 31337;
        fx f;
        fx_init(&f, threads[k], 1 << 20);
        be_tensor *x = fx_tensor(&f, QT_F32, n, T, 1, "gate");
        be_tensor *g = fx_tensor(&f, QT_F32, n, T, 1, "up");
        be_tensor *y = fx_tensor(&f, QT_F32, n, T, 1, "out");
        glu_inputs(f32(x), n * T, 8.0f);
        fill(f32(g), n * T, 2.0f);
        double *want = malloc((size_t)(n * T) * sizeof(double));
        elm_ref_glu(act, f32(x), f32(g), n * T, want);
        be_node node = {.op = BE_OP_GLU, .dst = y, .src = {x, g}, .iparams = {act}};
        cr_assert_eq(fx_run(&f, &node, 1, true), ELM_OK, "%s", f.err);
        for (int64_t i = 0; i < n * T; i++)
            cr_assert_leq(fabs(f32(y)[i] - want[i]), glu_bound(want[i], f32(x)[i], f32(g)[i]),
                          "act %d x %g g %g: %.9g vs %.9g", act, f32(x)[i], f32(g)[i], f32(y)[i],
                          want[i]);
        same_bits_check(&bits, f32(y), (size_t)(n * T), "glu");
        /* In place over either operand: the same bits. */
        size_t bytes = (size_t)(n * T) * sizeof(float);
        float *gin = malloc(bytes);
        memcpy(gin, f32(g), bytes);
        node.dst = g;
        cr_assert_eq(fx_run(&f, &node, 1, true), ELM_OK, "%s", f.err);
        cr_assert(memcmp(f32(g), f32(y), bytes) == 0, "dst = src1 differs");
        memcpy(f32(g), gin, bytes);
        node.dst = x;
        cr_assert_eq(fx_run(&f, &node, 1, true), ELM_OK, "%s", f.err);
        cr_assert(memcmp(f32(x), f32(y), bytes) == 0, "dst = src0 differs");
        free(gin);
        free(want);
        fx_free(&f);
    }
    same_bits_free(&bits);
}

Test(glu, gelu_tanh_values_and_in_place) {
    glu_case(BE_GLU_GELU_TANH, 37, 3);
    glu_case(BE_GLU_GELU_TANH, 5000, 1); /* one row cut between threads */
}

Test(glu, silu_by_act_param) {
    glu_case(BE_GLU_SILU, 37, 3);
    glu_case(BE_GLU_SILU, 5000, 1);
}

/* The vector GELU and softcap: every element's bits independent of where a
 * row is cut (the tail goes through the same code). */
Test(vec, geglu_and_softcap_do_not_depend_on_the_cut) {
    enum { N = 1027 };
    static float x[N], g[N], z[N], z2[N], s[N], s2[N];
    for (int i = 0; i < N; i++) {
        x[i] = -12.0f + 24.0f * (float)i / N;
        g[i] = frand();
    }
    elmi_cpu_vec_geglu_f32(z, x, g, N);
    elmi_cpu_vec_scale_softcap_f32(s, x, 1.5f, 4.0f, N);
    for (int c = 0; c < N;) {
        int n = 1 + (c * 7) % 13;
        if (c + n > N) n = N - c;
        elmi_cpu_vec_geglu_f32(z2 + c, x + c, g + c, n);
        elmi_cpu_vec_scale_softcap_f32(s2 + c, x + c, 1.5f, 4.0f, n);
        c += n;
    }
    cr_assert(memcmp(z, z2, sizeof z) == 0, "geglu depends on the cut");
    cr_assert(memcmp(s, s2, sizeof s) == 0, "softcap depends on the cut");
}

/* ---------------------------------------------------------- RMS_NORM */

/* Per-head norms: RMS_NORM of (hd, nh, T) views. Relative 1e-5 of the
 * row's scale, as the whole-row test of test_cpu_ops.c (float sums). */
static void check_rows_normed(const float *in, const float *out, const float *w, int64_t n,
                              int64_t rows, float eps) {
    double *want = malloc((size_t)(n * rows) * sizeof(double));
    elm_ref_rms_norm(in, w, eps, n, rows, want);
    for (int64_t i = 0; i < n * rows; i++)
        cr_assert_leq(fabs(out[i] - want[i]), 1e-5 * (fabs(want[i]) + 1e-3), "row %lld i %lld",
                      (long long)(i / n), (long long)(i % n));
    free(want);
}

/* A (hd, nh, T) view of the q part of fused (hd * (nh + 2 nkv), T) qkv rows,
 * normalized in place: every head of every token, nothing else touched. */
Test(rms_norm, per_head_on_a_strided_view) {
    const int64_t hd = 64, nh = 4, nkv = 2, T = 3, row = hd * (nh + 2 * nkv);
    same_bits bits = {0};
    for (int k = 0; k < N_THREADS; k++) {
        rng_state = 2024;
        fx f;
        fx_init(&f, threads[k], 1 << 20);
        be_tensor *qkv = fx_tensor(&f, QT_F32, row, T, 1, "qkv");
        be_tensor *w = fx_tensor(&f, QT_F32, hd, 1, 1, "q_norm");
        fill(f32(qkv), row * T, 3.0f);
        fill(f32(w), hd, 1.5f);
        float *before = malloc((size_t)(row * T) * sizeof(float));
        memcpy(before, f32(qkv), (size_t)(row * T) * sizeof(float));
        be_tensor q = *qkv;
        q.ne[0] = hd, q.ne[1] = nh, q.ne[2] = T;
        q.nb[1] = (size_t)hd * 4, q.nb[2] = (size_t)row * 4, q.nb[3] = q.nb[2] * (size_t)T;
        be_node node = {.op = BE_OP_RMS_NORM, .dst = &q, .src = {&q, w}, .fparams = {1e-6f}};
        cr_assert_eq(fx_run(&f, &node, 1, true), ELM_OK, "%s", f.err);
        float *in = malloc((size_t)(hd * nh * T) * sizeof(float));
        float *out = malloc((size_t)(hd * nh * T) * sizeof(float));
        for (int64_t t = 0; t < T; t++) {
            memcpy(in + t * hd * nh, before + t * row, (size_t)(hd * nh) * sizeof(float));
            memcpy(out + t * hd * nh, f32(qkv) + t * row, (size_t)(hd * nh) * sizeof(float));
            cr_assert(memcmp(f32(qkv) + t * row + hd * nh, before + t * row + hd * nh,
                             (size_t)(row - hd * nh) * sizeof(float)) == 0,
                      "k and v parts changed");
        }
        check_rows_normed(in, out, f32(w), hd, nh * T, 1e-6f);
        same_bits_check(&bits, out, (size_t)(hd * nh * T), "per-head rms_norm");
        free(before);
        free(in);
        free(out);
        fx_free(&f);
    }
    same_bits_free(&bits);
}

/* Every row of a 4-D tensor, into another tensor. */
Test(rms_norm, four_dims) {
    const int64_t n = 33, d1 = 2, d2 = 3, d3 = 2;
    for (int k = 0; k < N_THREADS; k++) {
        fx f;
        fx_init(&f, threads[k], 1 << 20);
        be_tensor *x = fx_tensor(&f, QT_F32, n, d1, d2 * d3, "x");
        be_tensor *y = fx_tensor(&f, QT_F32, n, d1, d2 * d3, "y");
        be_tensor *w = fx_tensor(&f, QT_F32, n, 1, 1, "w");
        for (be_tensor *t = x; t; t = t == x ? y : NULL) {
            t->ne[2] = d2, t->ne[3] = d3;
            t->nb[3] = t->nb[2] * (size_t)d2;
        }
        fill(f32(x), n * d1 * d2 * d3, 2.0f);
        fill(f32(w), n, 1.0f);
        be_node node = {.op = BE_OP_RMS_NORM, .dst = y, .src = {x, w}, .fparams = {1e-5f}};
        cr_assert_eq(fx_run(&f, &node, 1, true), ELM_OK, "%s", f.err);
        check_rows_normed(f32(x), f32(y), f32(w), n, d1 * d2 * d3, 1e-5f);
        fx_free(&f);
    }
}

/* ADD then RMS_NORM: fused when the norm reads the sum with its layout (the
 * same rows), not when it normalizes heads of a 3-D view of it. Either way
 * the graph equals the nodes run one by one, bit for bit. */
Test(rms_norm, add_then_norm_fuses_only_when_rows_match) {
    const int64_t hd = 32, nh = 4, T = 3, n = hd * nh;
    for (int view = 0; view < 2; view++)
        for (int k = 0; k < N_THREADS; k++) {
            float *got[2];
            for (int how = 0; how < 2; how++) {
                rng_state = 55;
                fx f;
                fx_init(&f, threads[k], 1 << 20);
                be_tensor *a = fx_tensor(&f, QT_F32, n, T, 1, "a");
                be_tensor *b = fx_tensor(&f, QT_F32, n, T, 1, "b");
                be_tensor *y = fx_tensor(&f, QT_F32, n, T, 1, "y");
                be_tensor *w = fx_tensor(&f, QT_F32, view ? hd : n, 1, 1, "w");
                fill(f32(a), n * T, 1.0f);
                fill(f32(b), n * T, 1.0f);
                fill(f32(w), view ? hd : n, 1.0f);
                be_tensor av = *a, yv = *y;
                if (view)
                    for (be_tensor *t = &av; t; t = t == &av ? &yv : NULL) {
                        t->ne[0] = hd, t->ne[1] = nh, t->ne[2] = T;
                        t->nb[1] = (size_t)hd * 4, t->nb[2] = (size_t)n * 4;
                        t->nb[3] = t->nb[2] * (size_t)T;
                    }
                be_node nodes[2] = {
                    {.op = BE_OP_ADD, .dst = a, .src = {a, b}},
                    {.op = BE_OP_RMS_NORM, .dst = &yv, .src = {&av, w}, .fparams = {1e-6f}},
                };
                if (how == 0) {
                    cr_assert_eq(fx_run(&f, nodes, 2, true), ELM_OK, "%s", f.err);
                } else {
                    float sum[128 * 3];
                    for (int64_t i = 0; i < n * T; i++) sum[i] = f32(a)[i] + f32(b)[i];
                    cr_assert_eq(fx_run(&f, &nodes[0], 1, true), ELM_OK, "%s", f.err);
                    cr_assert_eq(fx_run(&f, &nodes[1], 1, true), ELM_OK, "%s", f.err);
                    check_rows_normed(sum, f32(y), f32(w), view ? hd : n, view ? nh * T : T,
                                      1e-6f);
                }
                got[how] = malloc((size_t)(n * T) * sizeof(float));
                memcpy(got[how], f32(y), (size_t)(n * T) * sizeof(float));
                fx_free(&f);
            }
            cr_assert(memcmp(got[0], got[1], (size_t)(n * T) * sizeof(float)) == 0,
                      "view %d nth %d: the graph differs from node by node", view, threads[k]);
            free(got[0]);
            free(got[1]);
        }
}

/* ------------------------------------------------------------- SCALE */

/* Without softcap: one float product, so exactly the double product
 * rounded. With it: the scaled value, a division folded into a product by
 * 1/c, tanh within a few ulp and the product by c: 1e-6 relative (tanh
 * amplifies relative errors of its argument by at most 1). */
static void scale_case(float s, float cap, bool in_place) {
    const int64_t n = 37, d1 = 3, d2 = 2, d3 = 2, total = n * d1 * d2 * d3;
    same_bits bits = {0};
    for (int k = 0; k < N_THREADS; k++) {
        rng_state = 4711;
        fx f;
        fx_init(&f, threads[k], 1 << 20);
        be_tensor *x = fx_tensor(&f, QT_F32, n, d1, d2 * d3, "logits");
        be_tensor *y = in_place ? x : fx_tensor(&f, QT_F32, n, d1, d2 * d3, "scaled");
        for (be_tensor *t = x; t; t = t == x && y != x ? y : NULL) {
            t->ne[2] = d2, t->ne[3] = d3;
            t->nb[3] = t->nb[2] * (size_t)d2;
        }
        fill(f32(x), total, 40.0f);
        f32(x)[0] = 0.0f, f32(x)[1] = 1e-3f, f32(x)[2] = -0.3f, f32(x)[3] = 1e30f;
        double *want = malloc((size_t)total * sizeof(double));
        elm_ref_scale(f32(x), total, s, cap, want);
        be_node node = {.op = BE_OP_SCALE, .dst = y, .src = {x}, .fparams = {s, cap}};
        cr_assert_eq(fx_run(&f, &node, 1, true), ELM_OK, "%s", f.err);
        cr_assert_eq(n_elems(y), total);
        for (int64_t i = 0; i < total; i++) {
            if (cap > 0)
                cr_assert_leq(fabs(f32(y)[i] - want[i]), 1e-6 * fabs(want[i]) + 1e-38,
                              "softcap %g of %g: %.9g vs %.9g", cap, s * f32(x)[i], f32(y)[i],
                              want[i]);
            else
                cr_assert_eq(f32(y)[i], (float)want[i]);
        }
        same_bits_check(&bits, f32(y), (size_t)total, "scale");
        free(want);
        fx_free(&f);
    }
    same_bits_free(&bits);
}

Test(scale, plain_and_softcapped) {
    scale_case(0.125f, 0.0f, false);
    scale_case(-3.0f, 0.0f, true);
    scale_case(1.0f, 30.0f, false); /* final logit softcap: saturates past 3c */
    scale_case(0.5f, 5.0f, true);
    scale_case(2.0f, 0.01f, false);
}

/* ---------------------------------------------------------- KV_STORE */

/* A ring store of T tokens at pos writes rows elm_ref_kv_rows and nothing
 * else: rows outside keep a marker. Exact (F32 copy, or the F16 rounding). */
static void kv_ring_case(int type, int pos, int T) {
    const int64_t n = 44, n_rows = 16;
    for (int k = 0; k < N_THREADS; k++) {
        fx f;
        fx_init(&f, threads[k], 1 << 16);
        be_tensor *cache = fx_tensor(&f, type, n, n_rows, 1, "cache_k");
        be_tensor *x = fx_tensor(&f, QT_F32, n, T, 1, "k");
        fill(f32(x), n * T, 50.0f);
        for (int64_t r = 0; r < n_rows; r++) set_cache(cache, r, n, 0.0f, true); /* NaN marker */
        be_node node = {.op = BE_OP_KV_STORE, .dst = cache, .src = {x}, .iparams = {pos, 1}};
        cr_assert_eq(fx_run(&f, &node, 1, true), ELM_OK, "%s", f.err);
        int64_t rows[16];
        elm_ref_kv_rows(pos, T, (int)n_rows, true, rows);
        for (int64_t r = 0; r < n_rows; r++) {
            int t = -1;
            for (int u = 0; u < T; u++)
                if (rows[u] == r) t = u;
            for (int64_t i = 0; i < n; i++) {
                float got = cache_value(cache, r * n + i);
                if (t < 0) {
                    cr_assert(isnan(got), "row %lld written", (long long)r);
                    continue;
                }
                float v = f32(x)[t * n + i];
                float want = type == QT_F16 ? elmi_fp16_to_f32(elmi_f32_to_fp16(v)) : v;
                cr_assert_eq(got, want, "pos %d T %d row %lld i %lld", pos, T, (long long)r,
                             (long long)i);
            }
        }
        fx_free(&f);
    }
}

Test(kv_store, ring_wraps_around) {
    const int cases[][2] = {{14, 5}, {33, 16}, {0, 3}, {1000001, 1}}; /* pos, T */
    for (int c = 0; c < 4; c++) {
        kv_ring_case(QT_F32, cases[c][0], cases[c][1]);
        kv_ring_case(QT_F16, cases[c][0], cases[c][1]);
    }
}

/* ROPE then a ring KV_STORE of its output fuse into one unit; the cache
 * must be the same bits as the two nodes run as separate graphs. */
Test(kv_store, ring_store_fused_with_rope) {
    const int64_t hd = 64, nkv = 2, T = 5, n_rows = 16;
    const int pos = 14;
    for (int type = 0; type < 2; type++)
        for (int k = 0; k < N_THREADS; k++) {
            char *cache_bits[2];
            int ct = type ? QT_F16 : QT_F32;
            size_t bytes = row_bytes(ct, hd * nkv) * (size_t)n_rows;
            for (int how = 0; how < 2; how++) {
                rng_state = 8;
                fx f;
                fx_init(&f, threads[k], 1 << 20);
                be_tensor *kx = fx_tensor(&f, QT_F32, hd, nkv, T, "k");
                be_tensor *p = fx_tensor(&f, BE_TYPE_I32, T, 1, 1, "pos");
                be_tensor *cache = fx_tensor(&f, ct, hd * nkv, n_rows, 1, "cache_k");
                fill(f32(kx), hd * nkv * T, 1.0f);
                for (int t = 0; t < T; t++) ((int32_t *)p->data)[t] = pos + t;
                be_tensor k2 = *kx;
                k2.ne[0] = hd * nkv, k2.ne[1] = T, k2.ne[2] = 1;
                k2.nb[2] = k2.nb[1] * (size_t)T, k2.nb[3] = k2.nb[2];
                k2.nb[1] = (size_t)(hd * nkv) * 4;
                k2.nb[2] = k2.nb[3] = k2.nb[1] * (size_t)T;
                be_node nodes[2] = {
                    {.op = BE_OP_ROPE,
                     .dst = kx,
                     .src = {kx, p},
                     .iparams = {BE_ROPE_NEOX, (int32_t)hd},
                     .fparams = {10000.0f, 1.0f, 0.0f, 1.0f}},
                    {.op = BE_OP_KV_STORE, .dst = cache, .src = {&k2}, .iparams = {pos, 1}},
                };
                if (how == 0) {
                    cr_assert_eq(fx_run(&f, nodes, 2, true), ELM_OK, "%s", f.err);
                } else {
                    cr_assert_eq(fx_run(&f, &nodes[0], 1, true), ELM_OK, "%s", f.err);
                    cr_assert_eq(fx_run(&f, &nodes[1], 1, true), ELM_OK, "%s", f.err);
                }
                cache_bits[how] = malloc(bytes);
                memcpy(cache_bits[how], cache->data, bytes);
                fx_free(&f);
            }
            cr_assert(memcmp(cache_bits[0], cache_bits[1], bytes) == 0,
                      "%s nth %d: fused ring store differs", elmi_qtype_name(ct), threads[k]);
            free(cache_bits[0]);
            free(cache_bits[1]);
        }
}

/* --------------------------------------------------------- ATTENTION */

typedef struct att_case {
    int hd, nh, nkv, T, pos, n_rows, window;
    bool ring;
    float softcap, q_scale; /* q_scale: q values in [-q_scale, q_scale] */
    int type;
} att_case;

/* Whether cache row r holds a key position some query of the batch reads. */
static bool row_needed(const att_case *c, int r) {
    int p_last = c->pos + c->T - 1;
    int lo = c->window > 0 && c->pos - c->window + 1 > 0 ? c->pos - c->window + 1 : 0;
    for (int j = lo; j <= p_last; j++)
        if ((c->ring ? j % c->n_rows : j) == r) return true;
    return false;
}

/* One configuration with 1, 2, 3 and 8 threads. Rows no query reads hold
 * NaN (below the window, past the batch, or stale ring rows): reading one
 * would poison the output. The reference reads the same cache values, so
 * F16 adds no error: F32 accumulation over at most a few hundred O(1)
 * values, 2e-5 abs. */
static void attention_run(const att_case *c) {
    same_bits bits = {0};
    for (int k = 0; k < N_THREADS; k++) {
        rng_state = 12345;
        fx f;
        fx_init(&f, threads[k], 4 << 20);
        be_tensor *q = fx_tensor(&f, QT_F32, c->hd, c->nh, c->T, "q");
        be_tensor *K = fx_tensor(&f, c->type, c->hd * c->nkv, c->n_rows, 1, "cache_k");
        be_tensor *V = fx_tensor(&f, c->type, c->hd * c->nkv, c->n_rows, 1, "cache_v");
        be_tensor *o = fx_tensor(&f, QT_F32, c->hd * c->nh, c->T, 1, "kqv");
        fill(f32(q), (int64_t)c->hd * c->nh * c->T, c->q_scale > 0 ? c->q_scale : 1.0f);
        int64_t row_len = (int64_t)c->hd * c->nkv;
        for (int r = 0; r < c->n_rows; r++) {
            bool poison = !row_needed(c, r);
            set_cache(K, r, row_len, 1.0f, poison);
            set_cache(V, r, row_len, 2.0f, poison);
        }
        double scale = 1.0 / sqrt((double)c->hd);
        be_node node = {.op = BE_OP_ATTENTION,
                        .dst = o,
                        .src = {q, K, V},
                        .iparams = {c->pos, c->nkv, c->window, c->ring},
                        .fparams = {(float)scale, c->softcap}};
        cr_assert_eq(fx_run(&f, &node, 1, true), ELM_OK, "%s", f.err);
        int64_t n_out = (int64_t)c->hd * c->nh * c->T, n_cache = row_len * c->n_rows;
        float *kf = malloc((size_t)n_cache * sizeof(float)), *vf = malloc((size_t)n_cache * 4);
        for (int64_t i = 0; i < n_cache; i++) kf[i] = cache_value(K, i), vf[i] = cache_value(V, i);
        double *want = malloc((size_t)n_out * sizeof(double));
        elm_ref_attn ra = {.hd = c->hd, .nh = c->nh, .nkv = c->nkv, .T = c->T, .pos = c->pos,
                           .n_rows = c->n_rows, .window = c->window, .ring = c->ring,
                           .scale = (float)scale, .softcap = c->softcap};
        elm_ref_attention(&ra, f32(q), kf, vf, want);
        double err = max_abs_diff(f32(o), want, n_out);
        cr_assert_leq(err, 2e-5,
                      "hd %d T %d pos %d rows %d window %d ring %d cap %g %s nth %d: max abs %g",
                      c->hd, c->T, c->pos, c->n_rows, c->window, c->ring, c->softcap,
                      elmi_qtype_name(c->type), threads[k], err);
        same_bits_check(&bits, f32(o), (size_t)n_out, "attention");
        free(kf);
        free(vf);
        free(want);
        fx_free(&f);
    }
    same_bits_free(&bits);
}

/* The cases, for hd 64 (SIMD paths) and 20 (the generic one), both cache
 * types: decode (T = 1) and prompts (the batched path), a window crossed by
 * pos or within the prompt, a window larger than the context, rings that
 * wrap within a tile or a token block. */
static const att_case att_cases[] = {
    /* hd nh nkv  T  pos rows win ring cap (q_scale, type: set below) */
    {0, 8, 2, 1, 37, 96, 16, false, 0, 0, 0},   /* decode, window crossed */
    {0, 8, 2, 1, 5, 96, 16, false, 0, 0, 0},    /* window larger than the context */
    {0, 8, 2, 1, 130, 160, 100, false, 0, 0, 0}, /* window over several tiles */
    {0, 8, 2, 1, 37, 16, 16, true, 0, 0, 0},    /* ring of exactly the window, wrapped */
    {0, 8, 2, 1, 50, 20, 16, true, 0, 0, 0},
    {0, 8, 2, 1, 3, 16, 16, true, 0, 0, 0}, /* ring not yet full */
    {0, 8, 2, 5, 11, 96, 8, false, 0, 0, 0},  /* prompt: each query its own lo */
    {0, 8, 2, 17, 0, 96, 4, false, 0, 0, 0},  /* the window crossed within the prompt */
    {0, 8, 2, 40, 50, 64, 24, true, 0, 0, 0}, /* ring over several token blocks, wraps */
    {0, 8, 2, 9, 200, 80, 72, true, 0, 0, 0}, /* ring: a block's range over two tiles */
    {0, 4, 4, 33, 7, 96, 10, false, 0, 0, 0},
    {0, 8, 2, 1, 37, 96, 0, false, 1.0f, 0, 0},  /* softcap */
    {0, 8, 2, 6, 20, 96, 0, false, 0.5f, 0, 0},
    {0, 8, 2, 6, 60, 32, 27, true, 2.0f, 0, 0}, /* all three */
};

static void attention_cases(int hd, int type) {
    for (size_t i = 0; i < sizeof att_cases / sizeof *att_cases; i++) {
        att_case c = att_cases[i];
        c.hd = hd, c.type = type;
        c.q_scale = c.softcap > 0 ? 6.0f : 1.0f; /* scores of a few units: the cap matters */
        attention_run(&c);
    }
}

Test(attention, window_ring_softcap_f32_hd64) {
    attention_cases(64, QT_F32);
}

Test(attention, window_ring_softcap_f16_hd64) {
    attention_cases(64, QT_F16);
}

Test(attention, window_ring_softcap_hd20) {
    attention_cases(20, QT_F16);
    attention_cases(20, QT_F32);
}

Test(attention, window_ring_softcap_hd128_group8) {
    att_case c = {128, 8, 1, 12, 100, 40, 29, true, 0, 1.0f, QT_F16};
    attention_run(&c);
    c.T = 1, c.softcap = 3.0f, c.q_scale = 6.0f;
    attention_run(&c);
}

/* --------------------------------------------------------- SHORTCONV */

typedef struct sc_case {
    int n, L, T, pos, n_rows;
} sc_case;

typedef struct sc_fx {
    fx f;
    be_tensor *bcx, *w, *state, *out;
} sc_fx;

/* The op's tensors with the case's data: bcx, kernel, and a state ring
 * whose rows holding the history positions [pos - L + 1, pos) are random
 * and all others NaN (never read: stale, about to be written, or before
 * position 0). */
static void sc_init(sc_fx *s, const sc_case *c, int nth) {
    rng_state = 777;
    fx_init(&s->f, nth, 1 << 20);
    s->bcx = fx_tensor(&s->f, QT_F32, 3 * c->n, c->T, 1, "bcx");
    s->w = fx_tensor(&s->f, QT_F32, c->L, c->n, 1, "conv_w");
    s->state = fx_tensor(&s->f, QT_F32, c->n, c->n_rows, 1, "conv_state");
    s->out = fx_tensor(&s->f, QT_F32, c->n, c->T, 1, "conv_out");
    fill(f32(s->bcx), (int64_t)3 * c->n * c->T, 2.0f);
    fill(f32(s->w), (int64_t)c->L * c->n, 1.0f);
    for (int r = 0; r < c->n_rows; r++) {
        bool history = false;
        for (int p = c->pos - c->L + 1; p < c->pos; p++) history |= p >= 0 && p % c->n_rows == r;
        for (int i = 0; i < c->n; i++) f32(s->state)[r * c->n + i] = history ? frand() : NAN;
    }
}

static be_node sc_node(sc_fx *s, int pos) {
    return (be_node){.op = BE_OP_SHORTCONV,
                     .dst = s->out,
                     .src = {s->bcx, s->w, s->state},
                     .iparams = {pos}};
}

/* Against the reference: outputs within 1e-6 of c * sum |w bx| (L float
 * products and sums, one product by c), the state's new rows exact (the
 * same float products) and every other byte of it unchanged. Then the same
 * tokens one call each: the same bits, outputs and state. */
static void shortconv_run(const sc_case *c) {
    same_bits bits = {0};
    size_t state_bytes = (size_t)c->n * c->n_rows * sizeof(float);
    for (int k = 0; k < N_THREADS; k++) {
        sc_fx s;
        sc_init(&s, c, threads[k]);
        float *ref_state = malloc(state_bytes);
        memcpy(ref_state, s.state->data, state_bytes);
        be_node node = sc_node(&s, c->pos);
        cr_assert_eq(fx_run(&s.f, &node, 1, true), ELM_OK, "%s", s.f.err);
        int64_t n_out = (int64_t)c->n * c->T;
        double *want = malloc((size_t)n_out * sizeof(double));
        elm_ref_shortconv(f32(s.bcx), f32(s.w), ref_state, c->n, c->L, c->T, c->pos, c->n_rows,
                          want);
        cr_assert(memcmp(ref_state, s.state->data, state_bytes) == 0,
                  "n %d L %d T %d pos %d: the state differs", c->n, c->L, c->T, c->pos);
        for (int t = 0; t < c->T; t++)
            for (int i = 0; i < c->n; i++) {
                double mag = 0;
                for (int j = 0; j < c->L; j++) {
                    int p = c->pos + t - (c->L - 1) + j;
                    if (p >= 0)
                        mag += fabs((double)f32(s.w)[i * c->L + j] *
                                    ref_state[(p % c->n_rows) * c->n + i]);
                }
                mag *= fabs(f32(s.bcx)[t * 3 * c->n + c->n + i]);
                double got = f32(s.out)[t * c->n + i], w = want[t * c->n + i];
                cr_assert_leq(fabs(got - w), 1e-6 * mag + 1e-38,
                              "n %d L %d T %d pos %d: t %d i %d: %.9g vs %.9g", c->n, c->L, c->T,
                              c->pos, t, i, got, w);
            }
        same_bits_check(&bits, f32(s.out), (size_t)n_out, "shortconv");
        float *whole = malloc((size_t)n_out * sizeof(float)), *state_after = malloc(state_bytes);
        memcpy(whole, s.out->data, (size_t)n_out * sizeof(float));
        memcpy(state_after, s.state->data, state_bytes);
        fx_free(&s.f);

        /* T calls with one token each, from the same initial state. */
        sc_case one = *c;
        sc_init(&s, &one, threads[k]);
        be_tensor bcx_all = *s.bcx;
        for (int t = 0; t < c->T; t++) {
            be_tensor col = bcx_all, dst = *s.out;
            col.data = (char *)col.data + (size_t)t * col.nb[1];
            col.offs += (size_t)t * col.nb[1];
            col.ne[1] = 1, col.nb[2] = col.nb[3] = col.nb[1];
            dst.data = (char *)dst.data + (size_t)t * dst.nb[1];
            dst.offs += (size_t)t * dst.nb[1];
            dst.ne[1] = 1, dst.nb[2] = dst.nb[3] = dst.nb[1];
            be_node step = {.op = BE_OP_SHORTCONV,
                            .dst = &dst,
                            .src = {&col, s.w, s.state},
                            .iparams = {c->pos + t}};
            cr_assert_eq(fx_run(&s.f, &step, 1, true), ELM_OK, "%s", s.f.err);
        }
        cr_assert(memcmp(whole, s.out->data, (size_t)n_out * sizeof(float)) == 0,
                  "n %d L %d T %d pos %d: one call differs from one token per call", c->n, c->L,
                  c->T, c->pos);
        cr_assert(memcmp(state_after, s.state->data, state_bytes) == 0,
                  "the state after T single steps differs");
        fx_free(&s.f);
        free(whole);
        free(state_after);
        free(ref_state);
        free(want);
    }
    same_bits_free(&bits);
}

Test(shortconv, zero_history_rings_and_batches) {
    const sc_case cases[] = {
        /* n  L  T pos rows */
        {37, 3, 1, 0, 3},    /* a fresh context: zero history */
        {37, 3, 5, 0, 7},    /* a prompt from position 0 */
        {37, 3, 1, 1, 3},    /* history partly before position 0 */
        {37, 3, 1, 5, 3},    /* decode with a wrapped ring */
        {37, 3, 6, 9, 8},    /* a batch wrapping the ring (T + L - 1 = n_rows) */
        {37, 3, 4, 100, 11}, /* a roomier ring */
        {40, 1, 1, 0, 1},    /* L = 1: no history at all */
        {40, 1, 4, 3, 4},
        {1024, 3, 1, 1000, 3}, /* lfm2's decode shape */
        {9, 8, 3, 2, 10},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) shortconv_run(&cases[i]);
}

/* --------------------------------------------- scalar paths, support */

/* The scalar fallbacks (EDGELM_SIMD=scalar); Criterion runs each test in
 * its own process, so the forced level does not leak. */
Test(scalar, new_ops_fallback_paths) {
    cr_assert(elmi_cpu_vec_dot_force_level("scalar"));
    glu_case(BE_GLU_GELU_TANH, 37, 3);
    glu_case(BE_GLU_SILU, 37, 3);
    scale_case(0.5f, 5.0f, true);
    scale_case(0.125f, 0.0f, false);
    kv_ring_case(QT_F16, 14, 5);
    attention_cases(64, QT_F16);
    const sc_case sc = {37, 3, 6, 9, 8};
    shortconv_run(&sc);
}

Test(backend, supports_new_ops) {
    be_backend *be;
    cr_assert_eq(elmi_be_cpu_new(1, &be), ELM_OK);
    be_tensor f32t = {.type = QT_F32}, f16t = {.type = QT_F16};
    be_node ok[] = {
        {.op = BE_OP_SCALE, .dst = &f32t, .src = {&f32t}},
        {.op = BE_OP_SHORTCONV, .dst = &f32t, .src = {&f32t, &f32t, &f32t}},
        {.op = BE_OP_GLU, .dst = &f32t, .src = {&f32t, &f32t}, .iparams = {BE_GLU_GELU_TANH}},
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        cr_assert(be->iface->supports_op(be, &ok[i]), "op %s", elmi_be_op_name(ok[i].op));
    be_node no[] = {
        {.op = BE_OP_SCALE, .dst = &f16t, .src = {&f16t}},
        {.op = BE_OP_SHORTCONV, .dst = &f32t, .src = {&f32t, &f16t, &f32t}},
        {.op = BE_OP_SHORTCONV, .dst = &f32t, .src = {&f32t, &f32t, NULL}},
    };
    for (size_t i = 0; i < sizeof no / sizeof *no; i++)
        cr_assert_not(be->iface->supports_op(be, &no[i]), "case %zu", i);
    be_free(be);
}

/* ------------------------------------------------------------ errors */

Test(errors, glu_unknown_activation_and_scale_params) {
    fx f;
    fx_init(&f, 2, 1 << 16);
    be_tensor *a = fx_tensor(&f, QT_F32, 16, 2, 1, "a");
    be_tensor *b = fx_tensor(&f, QT_F32, 16, 2, 1, "b");
    be_node glu = {.op = BE_OP_GLU, .dst = a, .src = {a, b}, .iparams = {2}};
    expect_error(&f, &glu, 1, "activation");
    glu.iparams[0] = -1;
    expect_error(&f, &glu, 1, "node 0 (glu)");
    glu.iparams[0] = BE_GLU_GELU_TANH;
    cr_assert_eq(fx_run(&f, &glu, 1, true), ELM_OK, "%s", f.err);

    be_node sc = {.op = BE_OP_SCALE, .dst = a, .src = {a}, .fparams = {1.0f, -1.0f}};
    expect_error(&f, &sc, 1, "softcap");
    sc.fparams[1] = NAN;
    expect_error(&f, &sc, 1, "softcap");
    sc.fparams[1] = INFINITY;
    expect_error(&f, &sc, 1, "softcap");
    sc.fparams[1] = 0.0f, sc.fparams[0] = NAN;
    expect_error(&f, &sc, 1, "scale");
    sc.fparams[0] = 2.0f;
    sc.dst = b, b->ne[1] = 1;
    expect_error(&f, &sc, 1, "'b'");
    b->ne[1] = 2;
    cr_assert_eq(fx_run(&f, &sc, 1, true), ELM_OK, "%s", f.err);
    fx_free(&f);
}

Test(errors, kv_store_ring) {
    fx f;
    fx_init(&f, 2, 1 << 16);
    be_tensor *cache = fx_tensor(&f, QT_F16, 32, 8, 1, "cache_k");
    be_tensor *x = fx_tensor(&f, QT_F32, 32, 9, 1, "k");
    be_node st = {.op = BE_OP_KV_STORE, .dst = cache, .src = {x}, .iparams = {100, 1}};
    expect_error(&f, &st, 1, "do not fit a ring"); /* T = 9 > 8 rows */
    x->ne[1] = 8;
    cr_assert_eq(fx_run(&f, &st, 1, true), ELM_OK, "%s", f.err);
    st.iparams[1] = 2;
    expect_error(&f, &st, 1, "ring 2");
    st.iparams[1] = 0; /* without ring the rows must exist */
    expect_error(&f, &st, 1, "outside the cache");
    st.iparams[1] = 1, st.iparams[0] = -3;
    expect_error(&f, &st, 1, "pos -3");
    fx_free(&f);
}

Test(errors, attention_window_ring_softcap) {
    fx f;
    fx_init(&f, 2, 1 << 16);
    be_tensor *K = fx_tensor(&f, QT_F16, 32, 8, 1, "cache_k");
    be_tensor *V = fx_tensor(&f, QT_F16, 32, 8, 1, "cache_v");
    be_tensor *q = fx_tensor(&f, QT_F32, 16, 4, 3, "q");
    be_tensor *o = fx_tensor(&f, QT_F32, 64, 3, 1, "kqv");
    be_node at = {.op = BE_OP_ATTENTION,
                  .dst = o,
                  .src = {q, K, V},
                  .iparams = {100, 2, 6, 1},
                  .fparams = {0.25f, 0.0f}};
    cr_assert_eq(fx_run(&f, &at, 1, true), ELM_OK, "%s", f.err); /* 6 + 3 - 1 = 8 rows */
    at.iparams[2] = 7;
    expect_error(&f, &at, 1, "smaller than window + T - 1");
    at.iparams[2] = 0;
    expect_error(&f, &at, 1, "needs a window");
    at.iparams[2] = -1, at.iparams[3] = 0;
    expect_error(&f, &at, 1, "window -1");
    at.iparams[2] = 4, at.iparams[3] = 3;
    expect_error(&f, &at, 1, "ring 3");
    at.iparams[3] = 0; /* a window without ring still needs pos + T rows */
    expect_error(&f, &at, 1, "attends rows up to 103");
    at.iparams[0] = 5;
    cr_assert_eq(fx_run(&f, &at, 1, true), ELM_OK, "%s", f.err);
    at.fparams[1] = -2.0f;
    expect_error(&f, &at, 1, "softcap");
    at.fparams[1] = NAN;
    expect_error(&f, &at, 1, "softcap");
    at.fparams[1] = INFINITY;
    expect_error(&f, &at, 1, "softcap");
    at.fparams[1] = 50.0f;
    cr_assert_eq(fx_run(&f, &at, 1, true), ELM_OK, "%s", f.err);
    /* A ring needs K and V of the same rows. */
    be_tensor *V4 = fx_tensor(&f, QT_F16, 32, 9, 1, "cache_v9");
    at.src[2] = V4, at.iparams[0] = 100, at.iparams[2] = 6, at.iparams[3] = 1;
    expect_error(&f, &at, 1, "cache_v9");
    fx_free(&f);
}

Test(errors, shortconv_shapes_and_params) {
    fx f;
    fx_init(&f, 2, 1 << 16);
    be_tensor *bcx = fx_tensor(&f, QT_F32, 48, 4, 1, "bcx");
    be_tensor *w = fx_tensor(&f, QT_F32, 3, 16, 1, "conv_w");
    be_tensor *st = fx_tensor(&f, QT_F32, 16, 6, 1, "conv_state");
    be_tensor *out = fx_tensor(&f, QT_F32, 16, 4, 1, "conv_out");
    be_tensor *w65 = fx_tensor(&f, QT_F32, 65, 16, 1, "conv_w65");
    be_tensor *st16 = fx_tensor(&f, QT_F16, 16, 6, 1, "conv_state_f16");
    be_node sc = {.op = BE_OP_SHORTCONV, .dst = out, .src = {bcx, w, st}, .iparams = {7}};
    cr_assert_eq(fx_run(&f, &sc, 1, true), ELM_OK, "%s", f.err); /* 4 + 3 - 1 = 6 rows */
    st->ne[1] = 5;
    expect_error(&f, &sc, 1, "T + L - 1");
    st->ne[1] = 6;
    sc.iparams[0] = -1;
    expect_error(&f, &sc, 1, "pos -1");
    sc.iparams[0] = 7;
    sc.src[1] = w65;
    expect_error(&f, &sc, 1, "kernel length 65");
    sc.src[1] = w;
    w->ne[1] = 15;
    expect_error(&f, &sc, 1, "conv_w");
    w->ne[1] = 16;
    bcx->ne[0] = 47;
    expect_error(&f, &sc, 1, "'bcx'");
    bcx->ne[0] = 48;
    sc.src[2] = st16;
    expect_error(&f, &sc, 1, "conv_state_f16");
    sc.src[2] = NULL;
    expect_error(&f, &sc, 1, "missing");
    sc.src[2] = st;
    be_tensor alias = *st; /* dst over the state */
    alias.ne[1] = 4;
    sc.dst = &alias;
    expect_error(&f, &sc, 1, "overlaps");
    sc.dst = out;
    cr_assert_eq(fx_run(&f, &sc, 1, true), ELM_OK, "%s", f.err);
    fx_free(&f);
}
