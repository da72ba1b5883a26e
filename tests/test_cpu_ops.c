/* test_cpu_ops.c: every CPU backend op on one-node graphs (and a few
 * multi-node ones), run through graph_compute with 1 and 2 threads and
 * compared with naive references written here, mostly in double.
 * Bounds are stated per test; "max abs" is the largest |got - want|. */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/cpu/matmul.h"
#include "backends/cpu/ops.h"
#include "backends/cpu/threadpool.h"
#include "backends/cpu/vec_dot.h"
#include "quant/quant.h"
#include "support/cpu_fixture.h"

/* ---------------------------------------------------------- GET_ROWS */

static void get_rows_case(int type, int nth) {
    const int64_t n = 256, rows = 7, T = 5;
    const int32_t ids[5] = {3, 0, 6, 3, 1};
    fx f;
    fx_init(&f, nth, 1 << 20);
    be_tensor *table = fx_tensor(&f, type, n, rows, 1, "table");
    be_tensor *id = fx_tensor(&f, BE_TYPE_I32, T, 1, 1, "ids");
    be_tensor *dst = fx_tensor(&f, QT_F32, n, T, 1, "emb");
    float src[256 * 7];
    fill(src, n * rows, 2.0f);
    const qtype_traits *tr = elmi_qtype_get(type);
    for (int64_t r = 0; r < rows; r++)
        tr->from_float(src + r * n, (char *)table->data + r * table->nb[1], n);
    memcpy(id->data, ids, sizeof ids);
    be_node node = {.op = BE_OP_GET_ROWS, .dst = dst, .src = {table, id}};
    cr_assert_eq(fx_run(&f, &node, 1, true), ELM_OK, "%s: %s", tr->name, f.err);
    float want[256];
    for (int64_t t = 0; t < T; t++) {
        tr->to_float((char *)table->data + ids[t] * table->nb[1], want, n);
        /* The same dequantizer on the same bytes: bit-exact. */
        cr_assert(memcmp(want, f32(dst) + t * n, sizeof want) == 0, "%s row %lld", tr->name,
                  (long long)t);
    }
    fx_free(&f);
}

Test(get_rows, f32_f16_bf16_q8_0_q4_0) {
    const int types[] = {QT_F32, QT_F16, QT_BF16, QT_Q8_0, QT_Q4_0};
    for (int nth = 1; nth <= 2; nth++)
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) get_rows_case(types[i], nth);
}

Test(get_rows, every_quant_type) {
    for (int type = 0; type < QT_COUNT; type++) {
        const qtype_traits *tr = elmi_qtype_get(type);
        if (!tr || !tr->to_float || !tr->from_float) continue;
        get_rows_case(type, 2);
    }
}

Test(get_rows, f16_matches_scalar_conversion) {
    fx f;
    fx_init(&f, 2, 1 << 16);
    be_tensor *table = fx_tensor(&f, QT_F16, 37, 3, 1, "table");
    be_tensor *id = fx_tensor(&f, BE_TYPE_I32, 2, 1, 1, "ids");
    be_tensor *dst = fx_tensor(&f, QT_F32, 37, 2, 1, "emb");
    uint16_t *h = table->data;
    for (int i = 0; i < 37 * 3; i++) h[i] = elmi_f32_to_fp16(frand() * 100.0f);
    ((int32_t *)id->data)[0] = 2, ((int32_t *)id->data)[1] = 0;
    be_node node = {.op = BE_OP_GET_ROWS, .dst = dst, .src = {table, id}};
    cr_assert_eq(fx_run(&f, &node, 1, true), ELM_OK, "%s", f.err);
    for (int i = 0; i < 37; i++) {
        cr_assert_eq(f32(dst)[i], elmi_fp16_to_f32(h[2 * 37 + i]));
        cr_assert_eq(f32(dst)[37 + i], elmi_fp16_to_f32(h[i]));
    }
    fx_free(&f);
}

/* ---------------------------------------------------------- RMS_NORM */

static void rms_norm_case(int64_t n, int nth) {
    int64_t T = 3;
    fx f;
    fx_init(&f, nth, 1 << 20);
    be_tensor *x = fx_tensor(&f, QT_F32, n, T, 1, "x");
    be_tensor *w = fx_tensor(&f, QT_F32, n, 1, 1, "w");
    be_tensor *y = fx_tensor(&f, QT_F32, n, T, 1, "y");
    fill(f32(x), n * T, 3.0f);
    fill(f32(w), n, 1.5f);
    const float eps = 1e-5f;
    be_node node = {.op = BE_OP_RMS_NORM, .dst = y, .src = {x, w}, .fparams = {eps}};
    cr_assert_eq(fx_run(&f, &node, 1, true), ELM_OK, "%s", f.err);
    for (int64_t t = 0; t < T; t++) {
        const float *xr = f32(x) + t * n;
        double ss = 0;
        for (int64_t i = 0; i < n; i++) ss += (double)xr[i] * xr[i];
        double s = 1.0 / sqrt(ss / n + eps);
        for (int64_t i = 0; i < n; i++) {
            double want = xr[i] * s * f32(w)[i];
            /* Relative 1e-5 of the row's scale: float sums and products. */
            cr_assert_leq(fabs(f32(y)[t * n + i] - want), 1e-5 * (fabs(want) + 1e-3),
                          "n %lld t %lld i %lld", (long long)n, (long long)t, (long long)i);
        }
    }
    /* In place gives the same bits. */
    float copy[3 * 4097];
    memcpy(copy, f32(y), (size_t)(n * T) * sizeof(float));
    node.dst = x;
    cr_assert_eq(fx_run(&f, &node, 1, true), ELM_OK, "%s", f.err);
    cr_assert(memcmp(copy, f32(x), (size_t)(n * T) * sizeof(float)) == 0);
    fx_free(&f);
}

Test(rms_norm, ragged_sizes) {
    const int64_t sizes[] = {1, 7, 33, 4097};
    for (int nth = 1; nth <= 2; nth++)
        for (size_t k = 0; k < 4; k++) rms_norm_case(sizes[k], nth);
}

/* ------------------------------------------------------- ADD, SWIGLU */

Test(add, in_place_and_split_rows) {
    const int64_t shapes[][2] = {{1, 1}, {13, 4}, {5000, 1}, {1000, 3}};
    for (int nth = 1; nth <= 2; nth++)
        for (size_t k = 0; k < 4; k++) {
            int64_t n = shapes[k][0], T = shapes[k][1];
            fx f;
            fx_init(&f, nth, 1 << 20);
            be_tensor *a = fx_tensor(&f, QT_F32, n, T, 1, "a");
            be_tensor *b = fx_tensor(&f, QT_F32, n, T, 1, "b");
            fill(f32(a), n * T, 10.0f);
            fill(f32(b), n * T, 10.0f);
            float *want = malloc((size_t)(n * T) * sizeof(float));
            for (int64_t i = 0; i < n * T; i++) want[i] = f32(a)[i] + f32(b)[i];
            be_node node = {.op = BE_OP_ADD, .dst = a, .src = {a, b}};
            cr_assert_eq(fx_run(&f, &node, 1, true), ELM_OK, "%s", f.err);
            /* One float addition per element: exact. */
            cr_assert(memcmp(want, f32(a), (size_t)(n * T) * sizeof(float)) == 0, "n %lld",
                      (long long)n);
            free(want);
            fx_free(&f);
        }
}

Test(swiglu, values_and_in_place) {
    const int64_t shapes[][2] = {{37, 3}, {5000, 1}};
    for (int nth = 1; nth <= 2; nth++)
        for (size_t k = 0; k < 2; k++) {
            int64_t n = shapes[k][0], T = shapes[k][1];
            fx f;
            fx_init(&f, nth, 1 << 20);
            be_tensor *x = fx_tensor(&f, QT_F32, n, T, 1, "gate");
            be_tensor *g = fx_tensor(&f, QT_F32, n, T, 1, "up");
            be_tensor *y = fx_tensor(&f, QT_F32, n, T, 1, "out");
            fill(f32(x), n * T, 12.0f);
            fill(f32(g), n * T, 2.0f);
            double *want = malloc((size_t)(n * T) * sizeof(double));
            for (int64_t i = 0; i < n * T; i++) {
                double v = f32(x)[i];
                want[i] = v / (1.0 + exp(-v)) * f32(g)[i];
            }
            be_node node = {.op = BE_OP_GLU, .dst = y, .src = {x, g}};
            cr_assert_eq(fx_run(&f, &node, 1, true), ELM_OK, "%s", f.err);
            /* expf and three float operations: within 1e-6 relative. */
            for (int64_t i = 0; i < n * T; i++)
                cr_assert_leq(fabs(f32(y)[i] - want[i]), 1e-6 * (fabs(want[i]) + 1e-6));
            node.dst = x;
            cr_assert_eq(fx_run(&f, &node, 1, true), ELM_OK, "%s", f.err);
            cr_assert(memcmp(f32(x), f32(y), (size_t)(n * T) * sizeof(float)) == 0);
            free(want);
            fx_free(&f);
        }
}

/* -------------------------------------------------------------- ROPE */

typedef struct rope_case {
    int mode, n_rot, n_ctx_orig;
    bool freq_factors, in_place;
    double base, freq_scale, ext_factor, attn_factor, beta_fast, beta_slow;
} rope_case;

/* theta and magnitude of pair i, straight from the YaRN definition. */
static void ref_angle(const rope_case *c, int i, int pos, const float *ff, double *theta,
                      double *mag) {
    double extrap = pos * pow(c->base, -2.0 * i / c->n_rot) / (ff ? ff[i] : 1.0);
    double interp = c->freq_scale * extrap;
    *theta = interp;
    *mag = c->attn_factor;
    if (c->ext_factor == 0.0) return;
    double d_fast = c->n_rot * log(c->n_ctx_orig / (2 * M_PI * c->beta_fast)) / (2 * log(c->base));
    double d_slow = c->n_rot * log(c->n_ctx_orig / (2 * M_PI * c->beta_slow)) / (2 * log(c->base));
    double lo = fmax(0.0, floor(d_fast)), hi = fmin(c->n_rot - 1.0, ceil(d_slow));
    double r = (i - lo) / fmax(0.001, hi - lo);
    r = r < 0 ? 0 : r > 1 ? 1 : r;
    double mix = (1.0 - r) * c->ext_factor;
    *theta = interp * (1.0 - mix) + extrap * mix;
    *mag *= 1.0 + 0.1 * log(1.0 / c->freq_scale);
}

static void ref_rope(const rope_case *c, const float *x, double *y, int hd, int nh, int T,
                     const int32_t *pos, const float *ff) {
    for (int t = 0; t < T; t++)
        for (int h = 0; h < nh; h++) {
            const float *xr = x + (t * nh + h) * hd;
            double *yr = y + (t * nh + h) * hd;
            for (int d = 0; d < hd; d++) yr[d] = xr[d];
            for (int i = 0; i < c->n_rot / 2; i++) {
                int a = c->mode == BE_ROPE_NEOX ? i : 2 * i;
                int b = c->mode == BE_ROPE_NEOX ? i + c->n_rot / 2 : 2 * i + 1;
                double th, mag;
                ref_angle(c, i, pos[t], ff, &th, &mag);
                yr[a] = (xr[a] * cos(th) - xr[b] * sin(th)) * mag;
                yr[b] = (xr[a] * sin(th) + xr[b] * cos(th)) * mag;
            }
        }
}

/* Runs one case; returns the output for further comparisons (caller frees). */
static float *run_rope(const rope_case *c, int nth) {
    enum { HD = 64, NH = 3, T = 4 };
    const int32_t pos[T] = {0, 1, 37, 1000};
    rng_state = 777; /* the same input for every case */
    fx f;
    fx_init(&f, nth, 1 << 20);
    be_tensor *x = fx_tensor(&f, QT_F32, HD, NH, T, "q");
    be_tensor *p = fx_tensor(&f, BE_TYPE_I32, T, 1, 1, "pos");
    be_tensor *ff =
        c->freq_factors ? fx_tensor(&f, QT_F32, c->n_rot / 2, 1, 1, "rope_freqs") : NULL;
    be_tensor *y = c->in_place ? x : fx_tensor(&f, QT_F32, HD, NH, T, "q_rot");
    fill(f32(x), HD * NH * T, 1.0f);
    memcpy(p->data, pos, sizeof pos);
    if (ff)
        for (int i = 0; i < c->n_rot / 2; i++) f32(ff)[i] = 1.0f + 0.25f * (float)(i % 5);
    float xin[HD * NH * T];
    memcpy(xin, f32(x), sizeof xin);
    be_node node = {
        .op = BE_OP_ROPE,
        .dst = y,
        .src = {x, p, ff},
        .iparams = {c->mode, c->n_rot, c->n_ctx_orig},
        .fparams = {(float)c->base, (float)c->freq_scale, (float)c->ext_factor,
                    (float)c->attn_factor, (float)c->beta_fast, (float)c->beta_slow},
    };
    cr_assert_eq(fx_run(&f, &node, 1, true), ELM_OK, "%s", f.err);
    double want[HD * NH * T];
    /* The reference takes the float-rounded params the backend sees. */
    rope_case cf = *c;
    cf.base = (float)c->base, cf.freq_scale = (float)c->freq_scale;
    cf.ext_factor = (float)c->ext_factor, cf.attn_factor = (float)c->attn_factor;
    cf.beta_fast = (float)c->beta_fast, cf.beta_slow = (float)c->beta_slow;
    ref_rope(&cf, xin, want, HD, NH, T, pos, ff ? f32(ff) : NULL);
    /* Angles up to 1000 rad in double, rounded once to float: 1e-5 abs. */
    double err = max_abs_diff(f32(y), want, HD * NH * T);
    cr_assert_leq(err, 1e-5, "mode %d n_rot %d: max abs %g", c->mode, c->n_rot, err);
    for (int i = c->n_rot; i < HD; i++) /* beyond n_rot: copied unchanged */
        cr_assert_eq(f32(y)[i], xin[i]);
    float *out = malloc(sizeof xin);
    memcpy(out, f32(y), sizeof xin);
    fx_free(&f);
    return out;
}

static const rope_case plain = {
    .mode = BE_ROPE_NORM, .n_rot = 64, .base = 10000.0, .freq_scale = 1.0, .attn_factor = 1.0};

Test(rope, norm_and_neox) {
    for (int nth = 1; nth <= 2; nth++) {
        rope_case c = plain;
        free(run_rope(&c, nth));
        c.mode = BE_ROPE_NEOX;
        free(run_rope(&c, nth));
    }
}

Test(rope, partial_rotation_scale_and_freq_factors) {
    for (int nth = 1; nth <= 2; nth++)
        for (int mode = 0; mode <= 2; mode += 2) {
            rope_case c = plain;
            c.mode = mode;
            c.n_rot = 32;
            c.freq_scale = 0.5;
            c.base = 500000.0;
            free(run_rope(&c, nth));
            c.freq_factors = true;
            c.n_rot = 48;
            free(run_rope(&c, nth));
            c.in_place = true;
            free(run_rope(&c, nth));
        }
}

Test(rope, attn_factor_scales_without_yarn) {
    rope_case c = plain;
    c.attn_factor = 2.0;
    c.freq_scale = 0.25;
    float *a = run_rope(&c, 2);
    c.attn_factor = 1.0;
    float *b = run_rope(&c, 2);
    for (int i = 0; i < 64 * 3 * 4; i++) cr_assert_eq(a[i], 2.0f * b[i]); /* exact: x2 */
    free(a);
    free(b);
}

Test(rope, yarn) {
    for (int nth = 1; nth <= 2; nth++)
        for (int mode = 0; mode <= 2; mode += 2) {
            rope_case c = plain;
            c.mode = mode;
            c.n_ctx_orig = 2048;
            c.freq_scale = 0.25;
            c.beta_fast = 32.0;
            c.beta_slow = 1.0;
            /* ext_factor 0: exactly the plain scaled rotation. */
            float *off = run_rope(&c, nth);
            c.ext_factor = 1.0;
            float *on = run_rope(&c, nth);
            c.ext_factor = 0.5;
            c.attn_factor = 0.9;
            c.freq_factors = true;
            free(run_rope(&c, nth));
            /* The ramp must matter: the YaRN result differs from plain scaling. */
            double diff = 0;
            for (int i = 0; i < 64 * 3 * 4; i++) {
        double d = fabs(off[i] - on[i]);
        if (d > diff) diff = d;
    }
            cr_assert_gt(diff, 0.1);
            free(off);
            free(on);
        }
}

/* ---------------------------------------------------------- KV_STORE */

static void kv_store_case(int type, int nth) {
    const int64_t n = 44, n_ctx = 16;
    const int64_t cases[][2] = {{5, 3}, {15, 1}, {0, 16}}; /* pos, T */
    for (int c = 0; c < 3; c++) {
        int64_t pos = cases[c][0], T = cases[c][1];
        fx f;
        fx_init(&f, nth, 1 << 16);
        be_tensor *cache = fx_tensor(&f, type, n, n_ctx, 1, "cache_k");
        be_tensor *x = fx_tensor(&f, QT_F32, n, T, 1, "k");
        fill(f32(x), n * T, 50.0f);
        be_node node = {.op = BE_OP_KV_STORE, .dst = cache, .src = {x}, .iparams = {(int32_t)pos}};
        cr_assert_eq(fx_run(&f, &node, 1, true), ELM_OK, "%s", f.err);
        for (int64_t r = 0; r < n_ctx; r++)
            for (int64_t i = 0; i < n; i++) {
                bool in = r >= pos && r < pos + T;
                float v = in ? f32(x)[(r - pos) * n + i] : 0.0f;
                if (type == QT_F32) {
                    cr_assert_eq(f32(cache)[r * n + i], v);
                } else {
                    uint16_t h = ((uint16_t *)cache->data)[r * n + i];
                    cr_assert_eq(h, in ? elmi_f32_to_fp16(v) : 0, "row %lld i %lld", (long long)r,
                                 (long long)i);
                }
            }
        fx_free(&f);
    }
}

Test(kv_store, f32_and_f16) {
    for (int nth = 1; nth <= 2; nth++) {
        kv_store_case(QT_F32, nth);
        kv_store_case(QT_F16, nth);
    }
}

/* --------------------------------------------------------- ATTENTION */

static void ref_attention(const float *q, const be_tensor *K, const be_tensor *V, double *out,
                          int hd, int nh, int nkv, int T, int pos, double scale) {
    int group = nh / nkv, n_embd_kv = hd * nkv;
    double *s = malloc((size_t)(pos + T) * sizeof(double));
    for (int t = 0; t < T; t++)
        for (int h = 0; h < nh; h++) {
            int g = h / group, n = pos + t + 1;
            const float *qr = q + (t * nh + h) * hd;
            double m = -INFINITY, sum = 0;
            for (int j = 0; j < n; j++) {
                double d = 0;
                for (int k = 0; k < hd; k++)
                    d += (double)qr[k] * cache_value(K, (int64_t)j * n_embd_kv + g * hd + k);
                s[j] = d * scale;
                m = fmax(m, s[j]);
            }
            for (int j = 0; j < n; j++) sum += s[j] = exp(s[j] - m);
            for (int k = 0; k < hd; k++) {
                double acc = 0;
                for (int j = 0; j < n; j++)
                    acc += s[j] * cache_value(V, (int64_t)j * n_embd_kv + g * hd + k);
                out[(t * nh + h) * hd + k] = acc / sum;
            }
        }
    free(s);
}

/* Attention for one configuration with 1, 2, 3 and 8 threads (3 and 8 cut
 * the query heads of a group between threads when decoding); the results
 * must match the reference and be bit-identical across thread counts. */
static void attention_case(int hd, int T, int pos, int cache_type) {
    const int nh = 8, nkv = 2, n_ctx = 96;
    float *first = NULL;
    const int threads[] = {1, 2, 3, 8};
    for (int k = 0; k < 4; k++) {
        int nth = threads[k];
        rng_state = 12345; /* same data for every thread count */
        fx f;
        fx_init(&f, nth, 4 << 20);
        be_tensor *q = fx_tensor(&f, QT_F32, hd, nh, T, "q");
        be_tensor *K = fx_tensor(&f, cache_type, hd * nkv, n_ctx, 1, "cache_k");
        be_tensor *V = fx_tensor(&f, cache_type, hd * nkv, n_ctx, 1, "cache_v");
        be_tensor *o = fx_tensor(&f, QT_F32, hd * nh, T, 1, "kqv");
        fill(f32(q), (int64_t)hd * nh * T, 1.0f);
        /* Rows past the batch hold NaN: reading one would poison the output. */
        for (int r = 0; r < n_ctx; r++) {
            set_cache(K, r, hd * nkv, 1.0f, r >= pos + T);
            set_cache(V, r, hd * nkv, 2.0f, r >= pos + T);
        }
        double scale = 1.0 / sqrt((double)hd);
        be_node node = {.op = BE_OP_ATTENTION,
                        .dst = o,
                        .src = {q, K, V},
                        .iparams = {pos, nkv},
                        .fparams = {(float)scale}};
        cr_assert_eq(fx_run(&f, &node, 1, true), ELM_OK, "%s", f.err);
        int64_t n_out = (int64_t)hd * nh * T;
        double *want = malloc((size_t)n_out * sizeof(double));
        ref_attention(f32(q), K, V, want, hd, nh, nkv, T, pos, (float)scale);
        /* F32 accumulation over <= 96 rows of O(1) values: 2e-5 abs (the
         * reference reads the same cache values, so F16 adds no error). */
        double err = max_abs_diff(f32(o), want, n_out);
        cr_assert_leq(err, 2e-5, "hd %d T %d pos %d %s nth %d: max abs %g", hd, T, pos,
                      elmi_qtype_name(cache_type), nth, err);
        if (!first) {
            first = malloc((size_t)n_out * sizeof(float));
            memcpy(first, f32(o), (size_t)n_out * sizeof(float));
        } else {
            cr_assert(memcmp(first, f32(o), (size_t)n_out * sizeof(float)) == 0,
                      "thread count changed the result");
        }
        free(want);
        fx_free(&f);
    }
    free(first);
}

Test(attention, gqa_decode_and_prompt) {
    const int hds[] = {16, 64}, types[] = {QT_F32, QT_F16};
    const int shapes[][2] = {{1, 37}, {5, 0}, {5, 11}}; /* T, pos */
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++)
            for (int c = 0; c < 3; c++)
                attention_case(hds[a], shapes[c][0], shapes[c][1], types[b]);
}

Test(attention, long_context_crosses_tiles) {
    attention_case(64, 3, 90, QT_F16);
    /* Batches of several token blocks and tiles: the batched path. */
    attention_case(64, 40, 50, QT_F16);
    attention_case(128, 33, 7, QT_F32);
    attention_case(24, 17, 64, QT_F16);
    attention_case(16, 1, 95, QT_F32);
}

/* The scalar fallbacks of the vector loops (EDGELM_SIMD=scalar), against
 * the same references. Criterion runs each test in its own process, so the
 * forced level does not leak into other tests. */
Test(scalar, fallback_paths) {
    cr_assert(elmi_cpu_vec_dot_force_level("scalar"));
    attention_case(64, 5, 11, QT_F16);
    attention_case(16, 1, 37, QT_F32);
    kv_store_case(QT_F16, 2);
    rms_norm_case(4097, 2);
    get_rows_case(QT_F16, 2);
}

/* ------------------------------------------------------ multi-node graphs */

/* emb = get_rows(table, ids); x = rms_norm(emb) * w; out = x + emb */
Test(graph, three_nodes) {
    const int64_t n = 96, rows = 10, T = 4;
    const int32_t ids[4] = {9, 2, 2, 0};
    for (int nth = 1; nth <= 2; nth++) {
        fx f;
        fx_init(&f, nth, 1 << 20);
        be_tensor *table = fx_tensor(&f, QT_F32, n, rows, 1, "tok_embd");
        be_tensor *id = fx_tensor(&f, BE_TYPE_I32, T, 1, 1, "ids");
        be_tensor *w = fx_tensor(&f, QT_F32, n, 1, 1, "norm");
        be_tensor *emb = fx_tensor(&f, QT_F32, n, T, 1, "emb");
        be_tensor *x = fx_tensor(&f, QT_F32, n, T, 1, "x");
        fill(f32(table), n * rows, 1.0f);
        fill(f32(w), n, 1.0f);
        memcpy(id->data, ids, sizeof ids);
        be_node nodes[3] = {
            {.op = BE_OP_GET_ROWS, .dst = emb, .src = {table, id}},
            {.op = BE_OP_RMS_NORM, .dst = x, .src = {emb, w}, .fparams = {1e-6f}},
            {.op = BE_OP_ADD, .dst = x, .src = {x, emb}},
        };
        cr_assert_eq(fx_run(&f, nodes, 3, true), ELM_OK, "%s", f.err);
        for (int64_t t = 0; t < T; t++) {
            const float *e = f32(table) + ids[t] * n;
            double ss = 0;
            for (int64_t i = 0; i < n; i++) ss += (double)e[i] * e[i];
            double s = 1.0 / sqrt(ss / n + 1e-6);
            for (int64_t i = 0; i < n; i++) {
                double want = e[i] * s * f32(w)[i] + e[i];
                cr_assert_leq(fabs(f32(x)[t * n + i] - want), 1e-5);
            }
        }
        be_stats st;
        f.be->iface->get_stats(f.be, &st);
        cr_assert_eq(st.n_graphs, 1);
        cr_assert_eq(st.n_nodes, 3);
        fx_free(&f);
    }
}

/* y = W x + b for F32 and Q8_0 weights: the exact path must match the
 * dequantized weights to float rounding (max abs 1e-4 for K = 64 with
 * O(1) values); the fast path quantizes x, so only NMSE < 1e-3 is asked. */
static void mul_mat_case(int type, bool exact, int nth) {
    const int64_t K = 64, N = 24, T = 3;
    fx f;
    fx_init(&f, nth, 1 << 20);
    be_tensor *w = fx_tensor(&f, type, K, N, 1, "wq");
    be_tensor *x = fx_tensor(&f, QT_F32, K, T, 1, "x");
    be_tensor *b = fx_tensor(&f, QT_F32, N, 1, 1, "bq");
    be_tensor *y = fx_tensor(&f, QT_F32, N, T, 1, "y");
    float wf[64 * 24], wd[64 * 24];
    fill(wf, K * N, 1.0f);
    const qtype_traits *tr = elmi_qtype_get(type);
    tr->from_float(wf, w->data, K * N);
    tr->to_float(w->data, wd, K * N);
    fill(f32(x), K * T, 1.0f);
    fill(f32(b), N, 1.0f);
    be_node node = {.op = BE_OP_MUL_MAT, .dst = y, .src = {w, x, b}};
    cr_assert_eq(fx_run(&f, &node, 1, exact), ELM_OK, "%s", f.err);
    double num = 0, den = 0, worst = 0;
    for (int64_t t = 0; t < T; t++)
        for (int64_t r = 0; r < N; r++) {
            double want = f32(b)[r];
            for (int64_t k = 0; k < K; k++) want += (double)wd[r * K + k] * f32(x)[t * K + k];
            double d = f32(y)[t * N + r] - want;
            num += d * d, den += want * want;
            worst = fmax(worst, fabs(d));
        }
    if (exact)
        cr_assert_leq(worst, 1e-4, "%s exact: max abs %g", tr->name, worst);
    else
        cr_assert_leq(num / den, 1e-3, "%s fast: nmse %g", tr->name, num / den);
    fx_free(&f);
}

Test(graph, mul_mat) {
    for (int nth = 1; nth <= 2; nth++) {
        mul_mat_case(QT_F32, true, nth);
        mul_mat_case(QT_Q8_0, true, nth);
        mul_mat_case(QT_Q8_0, false, nth);
    }
}

/* --------------------------------------------------------- bad inputs */

Test(errors, token_id_out_of_range) {
    fx f;
    fx_init(&f, 2, 1 << 16);
    be_tensor *table = fx_tensor(&f, QT_F32, 8, 4, 1, "tok_embd");
    be_tensor *id = fx_tensor(&f, BE_TYPE_I32, 2, 1, 1, "ids");
    be_tensor *dst = fx_tensor(&f, QT_F32, 8, 2, 1, "emb");
    be_node node = {.op = BE_OP_GET_ROWS, .dst = dst, .src = {table, id}};
    ((int32_t *)id->data)[1] = 4;
    expect_error(&f, &node, 1, "node 0 (get_rows)");
    cr_assert(strstr(f.err, "ids"));
    ((int32_t *)id->data)[1] = -1;
    expect_error(&f, &node, 1, "ids");
    ((int32_t *)id->data)[1] = 3;
    cr_assert_eq(fx_run(&f, &node, 1, true), ELM_OK, "%s", f.err);
    fx_free(&f);
}

Test(errors, kv_store_and_attention_past_the_end) {
    fx f;
    fx_init(&f, 2, 1 << 16);
    be_tensor *cache = fx_tensor(&f, QT_F16, 32, 8, 1, "cache_k");
    be_tensor *x = fx_tensor(&f, QT_F32, 32, 3, 1, "k");
    be_node st = {.op = BE_OP_KV_STORE, .dst = cache, .src = {x}, .iparams = {6}};
    expect_error(&f, &st, 1, "cache_k");
    st.iparams[0] = -1;
    expect_error(&f, &st, 1, "kv_store");
    st.iparams[0] = 5;
    cr_assert_eq(fx_run(&f, &st, 1, true), ELM_OK, "%s", f.err);

    be_tensor *q = fx_tensor(&f, QT_F32, 16, 4, 3, "q");
    be_tensor *o = fx_tensor(&f, QT_F32, 64, 3, 1, "kqv");
    be_node at = {.op = BE_OP_ATTENTION,
                  .dst = o,
                  .src = {q, cache, cache},
                  .iparams = {6, 2},
                  .fparams = {0.25f}};
    expect_error(&f, &at, 1, "node 0 (attention)");
    at.iparams[0] = 5;
    at.iparams[1] = 3; /* does not divide 4 heads */
    expect_error(&f, &at, 1, "n_head_kv");
    at.iparams[1] = 2;
    cr_assert_eq(fx_run(&f, &at, 1, true), ELM_OK, "%s", f.err);
    fx_free(&f);
}

Test(errors, mismatched_shapes_and_params) {
    fx f;
    fx_init(&f, 1, 1 << 16);
    be_tensor *a = fx_tensor(&f, QT_F32, 16, 2, 1, "a");
    be_tensor *b = fx_tensor(&f, QT_F32, 16, 3, 1, "b");
    be_tensor *w = fx_tensor(&f, QT_F32, 15, 4, 1, "w");
    be_tensor *p = fx_tensor(&f, BE_TYPE_I32, 2, 1, 1, "pos");
    be_node add = {.op = BE_OP_ADD, .dst = a, .src = {a, b}};
    expect_error(&f, &add, 1, "'b'");
    be_node mm = {.op = BE_OP_MUL_MAT, .dst = b, .src = {w, a}};
    expect_error(&f, &mm, 1, "mul_mat");
    be_tensor *wi = fx_tensor(&f, BE_TYPE_I32, 16, 4, 1, "w_i32");
    be_node mmi = {.op = BE_OP_MUL_MAT, .dst = b, .src = {wi, a}};
    cr_assert_eq(fx_run(&f, &mmi, 1, true), ELM_ERR_UNSUPPORTED);
    cr_assert(strstr(f.err, "w_i32"), "%s", f.err);
    be_node norm = {.op = BE_OP_RMS_NORM, .dst = a, .src = {a, w}};
    expect_error(&f, &norm, 1, "rms_norm");
    be_node missing = {.op = BE_OP_GLU, .dst = a, .src = {a, NULL}};
    expect_error(&f, &missing, 1, "missing");
    be_tensor *q = fx_tensor(&f, QT_F32, 16, 1, 2, "q");
    be_node rope = {.op = BE_OP_ROPE,
                    .dst = q,
                    .src = {q, p},
                    .iparams = {0, 18},
                    .fparams = {10000.0f, 1.0f, 0.0f, 1.0f}};
    expect_error(&f, &rope, 1, "n_rot");
    rope.iparams[1] = 16;
    rope.iparams[0] = 1;
    expect_error(&f, &rope, 1, "mode");
    rope.iparams[0] = 0;
    cr_assert_eq(fx_run(&f, &rope, 1, true), ELM_OK, "%s", f.err);
    be_node bogus = {.op = (be_op)(BE_OP_COUNT + 3), .dst = a};
    expect_error(&f, &bogus, 1, "unknown op");
    fx_free(&f);
}

Test(errors, bad_node_stops_before_anything_runs) {
    fx f;
    fx_init(&f, 2, 1 << 16);
    be_tensor *a = fx_tensor(&f, QT_F32, 16, 2, 1, "a");
    be_tensor *b = fx_tensor(&f, QT_F32, 16, 3, 1, "b");
    fill(f32(a), 32, 1.0f);
    float before[32];
    memcpy(before, f32(a), sizeof before);
    be_node nodes[2] = {
        {.op = BE_OP_ADD, .dst = a, .src = {a, a}},
        {.op = BE_OP_ADD, .dst = a, .src = {a, b}},
    };
    expect_error(&f, nodes, 2, "node 1 (add)");
    cr_assert(memcmp(before, f32(a), sizeof before) == 0);
    be_stats st;
    f.be->iface->get_stats(f.be, &st);
    cr_assert_eq(st.n_nodes, 0);
    fx_free(&f);
}

Test(errors, tensor_outside_its_buffer) {
    fx f;
    fx_init(&f, 1, 4096);
    be_tensor *a = fx_tensor(&f, QT_F32, 16, 2, 1, "a");
    a->ne[1] = 200; /* 12800 bytes in a 4096-byte buffer */
    be_node node = {.op = BE_OP_GLU, .dst = a, .src = {a, a}};
    expect_error(&f, &node, 1, "outside its buffer");
    a->ne[1] = 2;
    a->nb[0] = 2; /* not contiguous */
    expect_error(&f, &node, 1, "nb[0]");
    fx_free(&f);
}

/* ------------------------------------------------- buffers and support */

Test(backend, buffers) {
    be_backend *be;
    cr_assert_eq(elmi_be_cpu_new(0, &be), ELM_OK);
    be_buffer *buf;
    cr_assert_eq(be->iface->buffer_alloc(be, 1000, NULL, &buf), ELM_OK);
    unsigned char *p = be->iface->buffer_host(be, buf);
    cr_assert_eq((uintptr_t)p % 64, 0);
    for (int i = 0; i < 1000; i++) cr_assert_eq(p[i], 0);
    be_tensor t = {.type = QT_F32,
                   .ne = {10, 5, 1, 1},
                   .nb = {4, 40, 200, 200},
                   .buf = buf,
                   .offs = 800,
                   .data = p + 800};
    float v[50], back[50];
    fill(v, 50, 1.0f);
    cr_assert_eq(be->iface->tensor_set(be, &t, v, 0, sizeof v), ELM_OK);
    cr_assert_eq(be->iface->tensor_get(be, &t, back, 0, sizeof back), ELM_OK);
    cr_assert(memcmp(v, back, sizeof v) == 0);
    cr_assert_eq(be->iface->tensor_set(be, &t, v, 4, sizeof v), ELM_ERR_INVALID_ARG);
    cr_assert_eq(be->iface->tensor_get(be, &t, back, 196, 8), ELM_ERR_INVALID_ARG);
    t.offs = 808; /* the tensor itself overruns the buffer */
    cr_assert_eq(be->iface->tensor_set(be, &t, v, 0, 4), ELM_ERR_INVALID_ARG);
    be->iface->buffer_free(be, buf);

    /* A buffer freed through another CPU backend leaves both lists sound. */
    be_backend *other;
    cr_assert_eq(elmi_be_cpu_new(1, &other), ELM_OK);
    be_buffer *b1, *b2;
    cr_assert_eq(other->iface->buffer_alloc(other, 64, NULL, &b1), ELM_OK);
    cr_assert_eq(other->iface->buffer_alloc(other, 64, NULL, &b2), ELM_OK);
    be->iface->buffer_free(be, b2);
    be_free(other); /* frees b1 with it */

    static char mapped[256];
    cr_assert_eq(be->iface->buffer_alloc(be, sizeof mapped, mapped, &buf), ELM_OK);
    cr_assert_eq(be->iface->buffer_host(be, buf), mapped, "host_ptr must be wrapped, not copied");
    be->iface->buffer_free(be, buf);
    be_free(be);
}

Test(backend, supports_op) {
    be_backend *be;
    cr_assert_eq(elmi_be_cpu_new(1, &be), ELM_OK);
    be_tensor f32t = {.type = QT_F32}, i32t = {.type = BE_TYPE_I32}, f16t = {.type = QT_F16};
    be_tensor q4 = {.type = QT_Q4_K}, bad = {.type = BE_TYPE_I32}, removed = {.type = 4};
    be_node ok[] = {
        {.op = BE_OP_GET_ROWS, .dst = &f32t, .src = {&q4, &i32t}},
        {.op = BE_OP_MUL_MAT, .dst = &f32t, .src = {&q4, &f32t}},
        {.op = BE_OP_RMS_NORM, .dst = &f32t, .src = {&f32t, &f32t}},
        {.op = BE_OP_ROPE, .dst = &f32t, .src = {&f32t, &i32t}},
        {.op = BE_OP_KV_STORE, .dst = &f16t, .src = {&f32t}},
        {.op = BE_OP_ATTENTION, .dst = &f32t, .src = {&f32t, &f16t, &f32t}},
        {.op = BE_OP_GLU, .dst = &f32t, .src = {&f32t, &f32t}},
        {.op = BE_OP_ADD, .dst = &f32t, .src = {&f32t, &f32t}},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        cr_assert(be->iface->supports_op(be, &ok[i]), "op %s", elmi_be_op_name(ok[i].op));
    be_node no[] = {
        {.op = BE_OP_MUL_MAT, .dst = &f32t, .src = {&bad, &f32t}},
        {.op = BE_OP_MUL_MAT, .dst = &f32t, .src = {&removed, &f32t}},
        {.op = BE_OP_KV_STORE, .dst = &q4, .src = {&f32t}},
        {.op = BE_OP_ADD, .dst = &f16t, .src = {&f16t, &f16t}},
        {.op = BE_OP_COUNT, .dst = &f32t},
    };
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        cr_assert_not(be->iface->supports_op(be, &no[i]), "case %zu", i);
    be_free(be);
}

/* Backends share no mutable state: two of them, each with two threads,
 * running attention at the same time from two threads, give the results of
 * running alone. */
typedef struct concurrent_job {
    fx f;
    be_node node;
    float *want;
    int64_t n;
    bool ok;
} concurrent_job;

static void *concurrent_main(void *arg) {
    concurrent_job *j = arg;
    j->ok = true;
    for (int it = 0; it < 20 && j->ok; it++) {
        be_graph g = {.nodes = &j->node, .n_nodes = 1, .exact = true};
        j->ok = j->f.be->iface->graph_compute(j->f.be, &g, j->f.err, sizeof j->f.err) == ELM_OK &&
                memcmp(j->want, j->node.dst->data, (size_t)j->n * sizeof(float)) == 0;
    }
    return NULL;
}

Test(backend, concurrent_backends) {
    concurrent_job jobs[2];
    for (int k = 0; k < 2; k++) {
        concurrent_job *j = &jobs[k];
        fx_init(&j->f, 2, 1 << 20);
        int hd = 64, nh = 8, nkv = 2, T = 3, n_ctx = 200, pos = 150 + k;
        be_tensor *q = fx_tensor(&j->f, QT_F32, hd, nh, T, "q");
        be_tensor *K = fx_tensor(&j->f, QT_F16, hd * nkv, n_ctx, 1, "cache_k");
        be_tensor *V = fx_tensor(&j->f, QT_F32, hd * nkv, n_ctx, 1, "cache_v");
        be_tensor *o = fx_tensor(&j->f, QT_F32, hd * nh, T, 1, "kqv");
        fill(f32(q), (int64_t)hd * nh * T, 1.0f);
        for (int r = 0; r < n_ctx; r++) {
            set_cache(K, r, hd * nkv, 1.0f, false);
            set_cache(V, r, hd * nkv, 1.0f, false);
        }
        j->node = (be_node){.op = BE_OP_ATTENTION,
                            .dst = o,
                            .src = {q, K, V},
                            .iparams = {pos, nkv},
                            .fparams = {0.125f}};
        cr_assert_eq(fx_run(&j->f, &j->node, 1, true), ELM_OK, "%s", j->f.err);
        j->n = (int64_t)hd * nh * T;
        j->want = malloc((size_t)j->n * sizeof(float));
        memcpy(j->want, f32(o), (size_t)j->n * sizeof(float));
        memset(o->data, 0, (size_t)j->n * sizeof(float));
    }
    pthread_t th[2];
    for (int k = 0; k < 2; k++)
        cr_assert_eq(pthread_create(&th[k], NULL, concurrent_main, &jobs[k]), 0);
    for (int k = 0; k < 2; k++) pthread_join(th[k], NULL);
    for (int k = 0; k < 2; k++) {
        cr_assert(jobs[k].ok, "backend %d: %s", k, jobs[k].f.err);
        free(jobs[k].want);
        fx_free(&jobs[k].f);
    }
}

/* ------------------------------------------- one-token products (in-pool) */

/* elmi_be_cpu_new with optional pinning (backend.h declares it once the engine
 * takes the option). */

static const int mv_types[] = {QT_F32,  QT_F16,  QT_BF16, QT_Q4_0, QT_Q4_1, QT_Q5_0,
                               QT_Q5_1, QT_Q8_0, QT_Q4_K, QT_Q5_K, QT_Q6_K};

/* elmi_cpu_mul_mat on one thread: the product the in-pool mat-vec must equal. */
static void direct_mul_mat(const be_node *nd, bool exact) {
    size_t need = elmi_cpu_mul_mat_work_size(nd->src[0], nd->src[1], exact, 1);
    void *work = need ? aligned_alloc(64, (need + 63) & ~(size_t)63) : NULL;
    cr_assert_eq(elmi_cpu_mul_mat(NULL, nd->src[0], nd->src[1], nd->src[2], nd->dst, exact, work, need),
                 ELM_OK);
    free(work);
}

/* y = W x + b for one token, every weight type, both modes, 1 to 3 threads
 * and pinned: against a double reference on the dequantized weights (exact:
 * max abs 1e-4 for K = 512 of O(1) values; fast, which quantizes x: NMSE <
 * 1e-3), and bit-identical to elmi_cpu_mul_mat. N = 1001 rows cut into chunks
 * and row groups with remainders. */
static void matvec_case(int type, bool exact) {
    const int64_t K = 512, N = 1001;
    float *want_bits = NULL;
    const qtype_traits *tr = elmi_qtype_get(type);
    for (int cfg = 0; cfg < 4; cfg++) {
        int nth = cfg < 3 ? cfg + 1 : 2;
        rng_state = 777;
        fx f;
        memset(&f, 0, sizeof f);
        cr_assert_eq(elmi_be_cpu_new_ex(nth, cfg == 3, &f.be), ELM_OK);
        cr_assert_eq(f.be->iface->buffer_alloc(f.be, 4 << 20, NULL, &f.buf), ELM_OK);
        f.base = f.be->iface->buffer_host(f.be, f.buf);
        f.cap = 4 << 20;
        be_tensor *w = fx_tensor(&f, type, K, N, 1, "w");
        be_tensor *x = fx_tensor(&f, QT_F32, K, 1, 1, "x");
        be_tensor *b = fx_tensor(&f, QT_F32, N, 1, 1, "b");
        be_tensor *y = fx_tensor(&f, QT_F32, N, 1, 1, "y");
        be_tensor *y2 = fx_tensor(&f, QT_F32, N, 1, 1, "y2");
        float *wf = malloc((size_t)(K * N) * sizeof(float)), *wd = malloc((size_t)(K * N) * sizeof(float));
        fill(wf, K * N, 1.0f);
        for (int64_t r = 0; r < N; r++) {
            tr->from_float(wf + r * K, (char *)w->data + r * w->nb[1], K);
            tr->to_float((char *)w->data + r * w->nb[1], wd + r * K, K);
        }
        fill(f32(x), K, 1.0f);
        fill(f32(b), N, 1.0f);
        be_node node = {.op = BE_OP_MUL_MAT, .dst = y, .src = {w, x, b}};
        cr_assert_eq(fx_run(&f, &node, 1, exact), ELM_OK, "%s", f.err);
        double num = 0, den = 0, worst = 0;
        for (int64_t r = 0; r < N; r++) {
            double want = f32(b)[r];
            for (int64_t k = 0; k < K; k++) want += (double)wd[r * K + k] * f32(x)[k];
            double d = f32(y)[r] - want;
            num += d * d, den += want * want;
            worst = fmax(worst, fabs(d));
        }
        if (exact)
            cr_assert_leq(worst, 1e-4, "%s exact nth %d: max abs %g", tr->name, nth, worst);
        else
            cr_assert_leq(num / den, 1e-3, "%s fast nth %d: nmse %g", tr->name, nth, num / den);
        be_node direct = {.op = BE_OP_MUL_MAT, .dst = y2, .src = {w, x, b}};
        direct_mul_mat(&direct, exact);
        cr_assert(memcmp(y->data, y2->data, (size_t)N * sizeof(float)) == 0,
                  "%s %s nth %d: differs from elmi_cpu_mul_mat", tr->name, exact ? "exact" : "fast", nth);
        if (!want_bits) {
            want_bits = malloc((size_t)N * sizeof(float));
            memcpy(want_bits, y->data, (size_t)N * sizeof(float));
        } else {
            cr_assert(memcmp(want_bits, y->data, (size_t)N * sizeof(float)) == 0,
                      "%s: thread count changed the result", tr->name);
        }
        free(wf);
        free(wd);
        fx_free(&f);
    }
    free(want_bits);
}

Test(matvec, every_type_fast) {
    for (size_t i = 0; i < sizeof mv_types / sizeof *mv_types; i++) matvec_case(mv_types[i], false);
}

Test(matvec, every_type_exact) {
    for (size_t i = 0; i < sizeof mv_types / sizeof *mv_types; i++) matvec_case(mv_types[i], true);
}

/* --------------------------------------------- whole layers in one graph */

/* Sets the token dimension of t (dim 1 or 2) to T. */
static void set_T(be_tensor *t, int dim, int64_t T) {
    t->ne[dim] = T;
    for (int d = 2; d < 4; d++) t->nb[d] = t->nb[d - 1] * (size_t)t->ne[d - 1];
}

typedef struct layer_fx {
    fx f;
    int64_t n_embd, hd, nh, nkv, n_ff, n_vocab, n_ctx;
    be_tensor *x, *xb, *q, *k, *v, *q3, *k3, *att, *proj, *gate, *up, *pos, *logits;
    be_tensor *anorm, *fnorm, *onorm, *wq, *wk, *wv, *wo, *wg, *wu, *wd, *wout, *bq;
    be_tensor *kc[2], *vc[2];
    be_tensor q3v, k3v;
    be_node nodes[64];
    int n_nodes;
} layer_fx;

static be_tensor *quant_weight(fx *f, int type, int64_t K, int64_t N, const char *name) {
    be_tensor *t = fx_tensor(f, type, K, N, 1, name);
    float *tmp = malloc((size_t)K * sizeof(float));
    for (int64_t r = 0; r < N; r++) {
        fill(tmp, K, 1.0f / sqrtf((float)K) * 1.7f);
        elmi_qtype_get(type)->from_float(tmp, (char *)t->data + r * t->nb[1], K);
    }
    free(tmp);
    return t;
}

/* Two llama layers (engine/graph.c's node order), the final norm and the
 * output product, with weights of `type`, an F16 (fast) or F32 (exact) cache
 * and a q bias. Same data for the same seed. */
static void layer_init(layer_fx *L, be_backend *be, int type, bool exact, int rope_mode) {
    memset(L, 0, sizeof *L);
    L->n_embd = 256, L->hd = 64, L->nh = 4, L->nkv = 2, L->n_ff = 512, L->n_vocab = 701,
    L->n_ctx = 16;
    fx *f = &L->f;
    f->be = be;
    f->cap = 8 << 20;
    cr_assert_eq(be->iface->buffer_alloc(be, f->cap, NULL, &f->buf), ELM_OK);
    f->base = be->iface->buffer_host(be, f->buf);
    rng_state = 4242;
    int64_t E = L->n_embd, Q = L->hd * L->nh, KV = L->hd * L->nkv, T = 4;
    int ct = exact ? QT_F32 : QT_F16;
    L->x = fx_tensor(f, QT_F32, E, T, 1, "x");
    L->xb = fx_tensor(f, QT_F32, E, T, 1, "xb");
    L->q = fx_tensor(f, QT_F32, Q, T, 1, "q");
    L->k = fx_tensor(f, QT_F32, KV, T, 1, "k");
    L->v = fx_tensor(f, QT_F32, KV, T, 1, "v");
    L->att = fx_tensor(f, QT_F32, Q, T, 1, "att");
    L->proj = fx_tensor(f, QT_F32, E, T, 1, "proj");
    L->gate = fx_tensor(f, QT_F32, L->n_ff, T, 1, "gate");
    L->up = fx_tensor(f, QT_F32, L->n_ff, T, 1, "up");
    L->pos = fx_tensor(f, BE_TYPE_I32, T, 1, 1, "pos");
    L->logits = fx_tensor(f, QT_F32, L->n_vocab, 1, 1, "logits");
    for (int l = 0; l < 2; l++) {
        L->kc[l] = fx_tensor(f, ct, KV, L->n_ctx, 1, "k_cache");
        L->vc[l] = fx_tensor(f, ct, KV, L->n_ctx, 1, "v_cache");
    }
    L->anorm = fx_tensor(f, QT_F32, E, 1, 1, "attn_norm");
    L->fnorm = fx_tensor(f, QT_F32, E, 1, 1, "ffn_norm");
    L->onorm = fx_tensor(f, QT_F32, E, 1, 1, "output_norm");
    L->bq = fx_tensor(f, QT_F32, Q, 1, 1, "bq");
    for (int64_t i = 0; i < E; i++) {
        f32(L->anorm)[i] = 1.0f + 0.1f * frand();
        f32(L->fnorm)[i] = 1.0f + 0.1f * frand();
        f32(L->onorm)[i] = 1.0f + 0.1f * frand();
    }
    fill(f32(L->bq), Q, 0.1f);
    L->wq = quant_weight(f, type, E, Q, "wq");
    L->wk = quant_weight(f, type, E, KV, "wk");
    L->wv = quant_weight(f, type, E, KV, "wv");
    L->wo = quant_weight(f, type, Q, E, "wo");
    L->wg = quant_weight(f, type, E, L->n_ff, "w_gate");
    L->wu = quant_weight(f, type, E, L->n_ff, "w_up");
    L->wd = quant_weight(f, type, L->n_ff, E, "w_down");
    L->wout = quant_weight(f, type, E, L->n_vocab, "output");
    L->q3v = *L->q;
    L->q3v.ne[0] = L->hd, L->q3v.ne[1] = L->nh;
    L->q3v.nb[1] = (size_t)L->hd * 4;
    L->k3v = *L->k;
    L->k3v.ne[0] = L->hd, L->k3v.ne[1] = L->nkv;
    L->k3v.nb[1] = (size_t)L->hd * 4;
    L->q3 = &L->q3v, L->k3 = &L->k3v;
    (void)rope_mode;
}

static be_node *layer_add(layer_fx *L, be_op op, be_tensor *d, be_tensor *a, be_tensor *b,
                          be_tensor *c) {
    be_node *nd = &L->nodes[L->n_nodes++];
    *nd = (be_node){.op = op, .dst = d, .src = {a, b, c}};
    return nd;
}

/* The graph of T tokens at position pos. */
static void layer_graph(layer_fx *L, int64_t T, int pos, int rope_mode) {
    be_tensor *per_tok[] = {L->x, L->xb, L->q, L->k, L->v, L->att, L->proj, L->gate, L->up};
    for (size_t i = 0; i < sizeof per_tok / sizeof *per_tok; i++) set_T(per_tok[i], 1, T);
    set_T(L->q3, 2, T);
    set_T(L->k3, 2, T);
    set_T(L->pos, 0, T);
    for (int64_t t = 0; t < T; t++) ((int32_t *)L->pos->data)[t] = (int32_t)(pos + t);
    L->n_nodes = 0;
    be_node *nd;
    for (int l = 0; l < 2; l++) {
        layer_add(L, BE_OP_RMS_NORM, L->xb, L->x, L->anorm, NULL)->fparams[0] = 1e-5f;
        layer_add(L, BE_OP_MUL_MAT, L->q, L->wq, L->xb, L->bq);
        layer_add(L, BE_OP_MUL_MAT, L->k, L->wk, L->xb, NULL);
        layer_add(L, BE_OP_MUL_MAT, L->v, L->wv, L->xb, NULL);
        for (int r = 0; r < 2; r++) {
            nd = layer_add(L, BE_OP_ROPE, r ? L->k3 : L->q3, r ? L->k3 : L->q3, L->pos, NULL);
            nd->iparams[0] = rope_mode, nd->iparams[1] = (int32_t)L->hd;
            nd->fparams[0] = 10000.0f, nd->fparams[1] = 1.0f, nd->fparams[3] = 1.0f;
        }
        layer_add(L, BE_OP_KV_STORE, L->kc[l], L->k, NULL, NULL)->iparams[0] = pos;
        layer_add(L, BE_OP_KV_STORE, L->vc[l], L->v, NULL, NULL)->iparams[0] = pos;
        nd = layer_add(L, BE_OP_ATTENTION, L->att, L->q3, L->kc[l], L->vc[l]);
        nd->iparams[0] = pos, nd->iparams[1] = (int32_t)L->nkv, nd->fparams[0] = 0.125f;
        layer_add(L, BE_OP_MUL_MAT, L->proj, L->wo, L->att, NULL);
        layer_add(L, BE_OP_ADD, L->x, L->x, L->proj, NULL);
        layer_add(L, BE_OP_RMS_NORM, L->xb, L->x, L->fnorm, NULL)->fparams[0] = 1e-5f;
        layer_add(L, BE_OP_MUL_MAT, L->gate, L->wg, L->xb, NULL);
        layer_add(L, BE_OP_MUL_MAT, L->up, L->wu, L->xb, NULL);
        layer_add(L, BE_OP_GLU, L->gate, L->gate, L->up, NULL);
        layer_add(L, BE_OP_MUL_MAT, L->proj, L->wd, L->gate, NULL);
        layer_add(L, BE_OP_ADD, L->x, L->x, L->proj, NULL);
    }
    /* the last token's logits, as the engine's x_out / xb_out views */
    static be_tensor x_out, xb_out;
    x_out = *L->x, xb_out = *L->xb;
    x_out.data = (char *)x_out.data + (size_t)(T - 1) * x_out.nb[1];
    xb_out.data = (char *)xb_out.data + (size_t)(T - 1) * xb_out.nb[1];
    x_out.offs += (size_t)(T - 1) * x_out.nb[1], xb_out.offs += (size_t)(T - 1) * xb_out.nb[1];
    set_T(&x_out, 1, 1);
    set_T(&xb_out, 1, 1);
    layer_add(L, BE_OP_RMS_NORM, &xb_out, &x_out, L->onorm, NULL)->fparams[0] = 1e-5f;
    layer_add(L, BE_OP_MUL_MAT, L->logits, L->wout, &xb_out, NULL);
}

/* Runs the graph whole (how = 0) or node by node, MUL_MAT through
 * elmi_cpu_mul_mat and every other node as its own one-node graph (how = 1), the
 * unfused, one-dispatch-per-node way. */
static void layer_run(layer_fx *L, bool exact, int how) {
    if (how == 0) {
        cr_assert_eq(fx_run(&L->f, L->nodes, L->n_nodes, exact), ELM_OK, "%s", L->f.err);
        return;
    }
    for (int i = 0; i < L->n_nodes; i++) {
        if (L->nodes[i].op == BE_OP_MUL_MAT)
            direct_mul_mat(&L->nodes[i], exact);
        else
            cr_assert_eq(fx_run(&L->f, &L->nodes[i], 1, exact), ELM_OK, "node %d: %s", i,
                         L->f.err);
    }
}

/* A 4-token prompt, then 5 one-token steps; returns every step's logits and
 * the final residual stream. */
static float *layer_session(int type, bool exact, int nth, int how, int rope_mode) {
    be_backend *be;
    cr_assert_eq(elmi_be_cpu_new(nth, &be), ELM_OK);
    layer_fx *L = malloc(sizeof *L);
    layer_init(L, be, type, exact, rope_mode);
    int64_t nv = L->n_vocab, E = L->n_embd;
    float *out = malloc((size_t)(6 * nv + E) * sizeof(float));
    uint64_t seed = rng_state;
    int pos = 0;
    for (int step = 0; step < 6; step++) {
        int64_t T = step == 0 ? 4 : 1;
        set_T(L->x, 1, T);
        rng_state = seed + (uint64_t)step;
        fill(f32(L->x), E * T, 1.0f);
        layer_graph(L, T, pos, rope_mode);
        layer_run(L, exact, how);
        memcpy(out + step * nv, L->logits->data, (size_t)nv * sizeof(float));
        pos += (int)T;
    }
    memcpy(out + 6 * nv, L->x->data, (size_t)E * sizeof(float));
    for (int i = 0; i < 6 * (int)nv + (int)E; i++) cr_assert(isfinite(out[i]));
    fx_free(&L->f);
    free(L);
    return out;
}

/* The planner groups independent nodes into phases and fuses ROPE+KV_STORE
 * and ADD+RMS_NORM; none of it may change a bit: whole-graph runs with 1, 2
 * and 3 threads equal the node-by-node run. */
static void layer_case(int type, bool exact, int rope_mode) {
    float *ref = layer_session(type, exact, 1, 1, rope_mode);
    size_t n = (size_t)(6 * 701 + 256);
    for (int nth = 1; nth <= 3; nth++) {
        float *got = layer_session(type, exact, nth, 0, rope_mode);
        size_t i = 0;
        while (i < n && memcmp(&got[i], &ref[i], sizeof(float)) == 0) i++;
        cr_assert_eq(i, n, "%s %s nth %d: value %zu differs: %.9g vs %.9g", elmi_qtype_name(type),
                     exact ? "exact" : "fast", nth, i, i < n ? got[i] : 0.0,
                     i < n ? ref[i] : 0.0);
        free(got);
    }
    free(ref);
}

Test(graph, layers_fused_equal_node_by_node) {
    const int types[] = {QT_Q4_0, QT_Q8_0, QT_Q4_K, QT_Q6_K, QT_F16, QT_F32};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        layer_case(types[i], false, BE_ROPE_NORM);
        layer_case(types[i], true, BE_ROPE_NEOX);
    }
}

/* The counts of graphs and nodes still say what ran. */
Test(graph, stats_count_fused_nodes) {
    be_backend *be;
    cr_assert_eq(elmi_be_cpu_new(2, &be), ELM_OK);
    layer_fx *L = malloc(sizeof *L);
    layer_init(L, be, QT_Q8_0, false, BE_ROPE_NORM);
    fill(f32(L->x), L->n_embd, 1.0f);
    layer_graph(L, 1, 0, BE_ROPE_NORM);
    layer_run(L, false, 0);
    be_stats st;
    be->iface->get_stats(be, &st);
    cr_assert_eq(st.n_graphs, 1);
    cr_assert_eq(st.n_nodes, (uint64_t)L->n_nodes);
    fx_free(&L->f);
    free(L);
}

/* Two independent attention nodes land in one phase and run at the same
 * time: each needs its own scratch. Results equal one-node runs. */
Test(graph, independent_attention_nodes_share_a_phase) {
    const int hd = 64, nh = 8, nkv = 2, n_ctx = 40, pos = 30;
    for (int nth = 1; nth <= 3; nth++) {
        rng_state = 99;
        fx f;
        fx_init(&f, nth, 4 << 20);
        be_tensor *q[2], *K[2], *V[2], *o[2], *o1[2];
        for (int i = 0; i < 2; i++) {
            q[i] = fx_tensor(&f, QT_F32, hd, nh, 1, "q");
            K[i] = fx_tensor(&f, QT_F16, hd * nkv, n_ctx, 1, "cache_k");
            V[i] = fx_tensor(&f, QT_F16, hd * nkv, n_ctx, 1, "cache_v");
            o[i] = fx_tensor(&f, QT_F32, hd * nh, 1, 1, "kqv");
            o1[i] = fx_tensor(&f, QT_F32, hd * nh, 1, 1, "kqv_alone");
            fill(f32(q[i]), (int64_t)hd * nh, 1.0f);
            for (int r = 0; r < n_ctx; r++) {
                set_cache(K[i], r, hd * nkv, 1.0f, r > pos);
                set_cache(V[i], r, hd * nkv, 1.0f, r > pos);
            }
        }
        be_node nodes[2];
        for (int i = 0; i < 2; i++)
            nodes[i] = (be_node){.op = BE_OP_ATTENTION,
                                 .dst = o[i],
                                 .src = {q[i], K[i], V[i]},
                                 .iparams = {pos, nkv},
                                 .fparams = {0.125f}};
        cr_assert_eq(fx_run(&f, nodes, 2, false), ELM_OK, "%s", f.err);
        for (int i = 0; i < 2; i++) {
            be_node alone = nodes[i];
            alone.dst = o1[i];
            cr_assert_eq(fx_run(&f, &alone, 1, false), ELM_OK, "%s", f.err);
            cr_assert(memcmp(o[i]->data, o1[i]->data, (size_t)hd * nh * sizeof(float)) == 0,
                      "nth %d: node %d differs when sharing a phase", nth, i);
        }
        fx_free(&f);
    }
}

/* ------------------------------------------------------------ thread pool */

typedef struct phase_job {
    elm_threadpool *tp;
    int n_phases;
    _Atomic int *slots; /* [phase][thread] */
    _Atomic int bad;
} phase_job;

/* Phase p: every thread writes its slot, passes the barrier, then checks
 * that every thread's slot of phase p is written. */
static void phase_task(void *arg, int ith, int nth) {
    phase_job *j = arg;
    for (int p = 0; p < j->n_phases; p++) {
        atomic_store_explicit(&j->slots[p * nth + ith], p + 1, memory_order_relaxed);
        elmi_tp_barrier(j->tp);
        for (int t = 0; t < nth; t++)
            if (atomic_load_explicit(&j->slots[p * nth + t], memory_order_relaxed) != p + 1)
                atomic_store(&j->bad, 1);
    }
}

Test(threadpool, barrier_many_phases) {
    for (int nth = 1; nth <= 4; nth++) {
        for (int pin = 0; pin < 2; pin++) {
            elm_threadpool *tp;
            cr_assert_eq(elmi_tp_new(nth, pin, &tp), ELM_OK);
            phase_job j = {.tp = tp, .n_phases = 20000};
            j.slots = calloc((size_t)j.n_phases * nth, sizeof *j.slots);
            for (int rep = 0; rep < 3; rep++) elmi_tp_run(tp, phase_task, &j);
            cr_assert_eq(atomic_load(&j.bad), 0, "nth %d: a thread passed a barrier early", nth);
            free(j.slots);
            elmi_tp_free(tp);
        }
    }
}

/* ------------------------------------------------------- vector helpers */

/* The vector exp and SwiGLU: within a few ulp of double, and every
 * element's bits independent of where a row is cut. */
Test(vec, exp_sum_and_swiglu) {
    enum { N = 1027 };
    static float x[N], g[N], y[N], y2[N], z[N], z2[N];
    for (int i = 0; i < N; i++) {
        x[i] = -30.0f + 60.0f * (float)i / N;
        g[i] = frand();
    }
    float sum = elmi_cpu_vec_exp_sum_f32(y, x, 1.5f, N);
    double want_sum = 0;
    for (int i = 0; i < N; i++) {
        double w = exp((double)(x[i] - 1.5f)); /* the argument as the kernel forms it */
        want_sum += w;
        cr_assert_leq(fabs(y[i] - w), 3e-7 * w, "exp(%g): %.9g vs %.9g", x[i] - 1.5, y[i], w);
    }
    cr_assert_leq(fabs(sum - want_sum), 1e-6 * want_sum);
    elmi_cpu_vec_swiglu_f32(z, x, g, N);
    for (int i = 0; i < N; i++) {
        double w = x[i] / (1.0 + exp(-(double)x[i])) * g[i];
        cr_assert_leq(fabs(z[i] - w), 1e-6 * fabs(w) + 1e-30, "swiglu(%g)", x[i]);
    }
    /* Cut at odd places: the same bits. */
    for (int c = 0; c < N;) {
        int n = 1 + (c * 7) % 13;
        if (c + n > N) n = N - c;
        elmi_cpu_vec_exp_sum_f32(y2 + c, x + c, 1.5f, n);
        elmi_cpu_vec_swiglu_f32(z2 + c, x + c, g + c, n);
        c += n;
    }
    cr_assert(memcmp(y, y2, sizeof y) == 0, "exp depends on the cut");
    cr_assert(memcmp(z, z2, sizeof z) == 0, "swiglu depends on the cut");
}
