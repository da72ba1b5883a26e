/* test_ops_api.c: the public op API (include/edgelm_ops.h) on every device
 * (the CPU and each Vulkan device; lavapipe where there is no GPU), every
 * op against the double references of tests/support/op_ref.c, with
 * quantized weights dequantized by quant/'s scalar reference; then the
 * refusals of bad input, each with its message.
 *
 * Error measure: NMSE = sum (got - want)^2 / sum want^2. Bounds: 1e-10 for
 * the exact matrix products (F32 sums in another order give ~1e-13),
 * norms, element-wise ops, softmax and attention; 1e-8 for RoPE (F32
 * angles); 1e-12 for GET_ROWS (the same dequantization). A layout or index
 * mistake gives NMSE of order 1. On Vulkan, every test also requires 0
 * validation-layer errors (ctest sets EDGELM_VK_VALIDATION=1). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgelm_ops.h"
#include "quant/quant.h"
#include "support/op_ref.h"
#include "support/paths.h"

#define MAX_DEVS 8
#define MAX_BUFS 64

/* --------------------------------------------------------------- fixture */

typedef struct fx {
    elm_dev *dev;
    elm_dev_buffer *bufs[MAX_BUFS];
    void *hosts[MAX_BUFS]; /* host tensors' memory, freed after the device */
    int n_bufs, n_hosts;
} fx;

/* "cpu" and every Vulkan device id; returns the count. */
static int device_ids(char ids[MAX_DEVS][32]) {
    elm_device_info info[MAX_DEVS];
    info[0].struct_size = sizeof info[0];
    size_t n = 0;
    cr_assert_eq(elm_devices(info, MAX_DEVS, &n), ELM_OK);
    int k = 0;
    for (size_t i = 0; i < n && i < MAX_DEVS; i++) snprintf(ids[k++], 32, "%s", info[i].id);
    if (!test_have_vulkan_device()) cr_log_info("no Vulkan device: the op API runs on the CPU only");
    return k;
}

static void fx_open(fx *f, const char *id) {
    memset(f, 0, sizeof *f);
    char err[512] = "";
    cr_assert_eq(elm_dev_new(id, NULL, &f->dev, err, sizeof err), ELM_OK, "%s: %s", id, err);
    cr_assert_str_eq(elm_dev_id(f->dev), id);
}

static void fx_close(fx *f) {
    for (int i = 0; i < f->n_bufs; i++) elm_dev_buffer_free(f->bufs[i]);
    double errors = 0, nodes = 0, fallbacks = 0, dispatches = 0;
    if (elm_dev_stat_find(f->dev, "vulkan.validation_errors", &errors) == ELM_OK)
        cr_expect_eq(errors, 0, "[%s] %g validation errors", elm_dev_id(f->dev), errors);
    cr_expect_eq(elm_dev_stat_find(f->dev, "nodes", &nodes), ELM_OK);
    cr_expect_eq(elm_dev_stat_find(f->dev, "fallback_nodes", &fallbacks), ELM_OK);
    cr_expect_eq(fallbacks, 0, "[%s] %g of %g ops fell back to the CPU", elm_dev_id(f->dev), fallbacks,
                 nodes);
    elm_dev_stat_find(f->dev, "vulkan.dispatches", &dispatches);
    fprintf(stderr, "ops_api [%s]: %g ops, %g dispatches, %g validation errors\n", elm_dev_id(f->dev),
            nodes, dispatches, errors);
    elm_dev_free(f->dev);
    for (int i = 0; i < f->n_hosts; i++) free(f->hosts[i]);
}

/* A dense tensor in a buffer of its own. */
static elm_op_tensor tensor(fx *f, elm_type type, int64_t n0, int64_t n1, int64_t n2, const char *name) {
    size_t row;
    cr_assert_eq(elm_type_row_bytes(type, n0, &row), ELM_OK);
    cr_assert_lt(f->n_bufs, MAX_BUFS);
    elm_dev_buffer **b = &f->bufs[f->n_bufs++];
    cr_assert_eq(elm_dev_buffer_alloc(f->dev, row * (size_t)(n1 * n2), b), ELM_OK, "%s",
                 elm_dev_last_error(f->dev));
    elm_op_tensor t;
    cr_assert_eq(elm_op_tensor_dense(&t, type, n0, n1, n2, 1, *b, 0, NULL), ELM_OK);
    t.name = name;
    return t;
}

static void put(fx *f, const elm_op_tensor *t, const void *src) {
    cr_assert_eq(elm_op_tensor_write(f->dev, t, src, 0, elm_op_tensor_nbytes(t)), ELM_OK, "%s",
                 elm_dev_last_error(f->dev));
}

static float *get(fx *f, const elm_op_tensor *t) {
    size_t n = elm_op_tensor_nbytes(t);
    float *p = malloc(n);
    cr_assert_eq(elm_op_tensor_read(f->dev, t, p, 0, n), ELM_OK, "%s", elm_dev_last_error(f->dev));
    return p;
}

static uint32_t rng = 12345;
static float frand(void) {
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static float *rand_floats(size_t n) {
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = frand();
    return p;
}

static double nmse(const float *got, const double *want, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];
        num += d * d;
        den += want[i] * want[i];
    }
    return den > 0 ? num / den : num;
}

/* Runs check(f) on every device. */
static void on_every_device(void (*check)(fx *f)) {
    char ids[MAX_DEVS][32];
    int n = device_ids(ids);
    for (int i = 0; i < n; i++) {
        fx f;
        fx_open(&f, ids[i]);
        check(&f);
        fx_close(&f);
    }
}

#define EXPECT_NMSE(f, e, bound, what, ...)                                                   \
    cr_expect_leq((e), (bound), "[%s] " what ": NMSE %.3g > %.1g", elm_dev_id((f)->dev), \
                  ##__VA_ARGS__, (e), (bound))

/* ---------------------------------------------------------------- MUL_MAT */

/* Quantizes rows x k values to `type` with quant/'s reference; deq gets the
 * exact dequantization. */
static void *quantize(int type, const float *src, int64_t rows, int64_t k, float *deq) {
    void *q = elm_ref_quantize_rows(type, src, rows, k, deq);
    cr_assert_not_null(q, "cannot quantize %lld x %lld values to type %d", (long long)rows, (long long)k, type);
    return q;
}

static double mul_mat_case(fx *f, elm_type type, int64_t K, int64_t N, int64_t T, bool host_w,
                           bool bias, elm_op_graph *graph) {
    float *w = rand_floats((size_t)(K * N)), *deq = malloc(sizeof(float) * K * N);
    void *wq = quantize(type, w, N, K, deq);
    float *x = rand_floats((size_t)(K * T)), *b = rand_floats((size_t)N);
    elm_op_tensor W;
    if (host_w) {
        cr_assert_eq(elm_op_tensor_dense(&W, type, K, N, 1, 1, NULL, 0, wq), ELM_OK);
        cr_assert_lt(f->n_hosts, MAX_BUFS);
        f->hosts[f->n_hosts++] = wq;
    } else {
        W = tensor(f, type, K, N, 1, "w");
        put(f, &W, wq);
    }
    elm_op_tensor X = tensor(f, ELM_TYPE_F32, K, T, 1, "x"), D = tensor(f, ELM_TYPE_F32, N, T, 1, "d");
    elm_op_tensor B = tensor(f, ELM_TYPE_F32, N, 1, 1, "b");
    put(f, &X, x);
    put(f, &B, b);
    cr_assert_eq(elm_op_mul_mat(f->dev, graph, &W, &X, bias ? &B : NULL, &D), ELM_OK, "%s",
                 elm_dev_last_error(f->dev));
    if (graph) cr_assert_eq(elm_op_graph_compute(graph), ELM_OK, "%s", elm_dev_last_error(f->dev));
    float *got = get(f, &D);
    double *want = malloc(sizeof(double) * N * T);
    elm_ref_mul_mat(deq, x, bias ? b : NULL, K, N, T, want);
    double e = nmse(got, want, (size_t)(N * T));
    /* Host weights are cached by address and must outlive the device:
     * fx_close frees them. */
    if (!host_w) free(wq);
    free(w), free(deq), free(x), free(b), free(got), free(want);
    return e;
}

static void check_mul_mat(fx *f) {
    static const elm_type types[] = {ELM_TYPE_Q4_0, ELM_TYPE_Q8_0, ELM_TYPE_Q4_K, ELM_TYPE_F32,
                                     ELM_TYPE_F16, ELM_TYPE_Q6_K};
    static const int64_t Ts[] = {1, 7};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++)
        for (size_t j = 0; j < 2; j++) {
            int64_t K = types[i] == ELM_TYPE_Q4_K || types[i] == ELM_TYPE_Q6_K ? 512 : 96;
            double e = mul_mat_case(f, types[i], K, 37, Ts[j], i % 2 == 1, j == 1, NULL);
            EXPECT_NMSE(f, e, 1e-10, "mul_mat %s K=%lld T=%lld", elm_type_name(types[i]), (long long)K,
                        (long long)Ts[j]);
        }
}

Test(ops_api, mul_mat_quantized_matvec_and_matmat) {
    on_every_device(check_mul_mat);
}

/* ---------------------------------------------------------- norm and rope */

static void check_rms_norm(fx *f) {
    const int64_t n = 96, rows = 5;
    float *x = rand_floats((size_t)(n * rows)), *w = rand_floats((size_t)n);
    elm_op_tensor X = tensor(f, ELM_TYPE_F32, n, rows, 1, "x"), W = tensor(f, ELM_TYPE_F32, n, 1, 1, "w");
    put(f, &X, x);
    put(f, &W, w);
    cr_assert_eq(elm_op_rms_norm(f->dev, NULL, &X, &W, 1e-5f, &X), ELM_OK, "%s", elm_dev_last_error(f->dev));
    float *got = get(f, &X);
    double want[96 * 5];
    elm_ref_rms_norm(x, w, 1e-5f, n, rows, want);
    EXPECT_NMSE(f, nmse(got, want, (size_t)(n * rows)), 1e-10, "rms_norm in place");
    free(x), free(w), free(got);
}

static void rope_case(fx *f, elm_rope_style style, int n_rot, bool ff) {
    const int hd = 64, nh = 3, T = 4;
    const int32_t pos[4] = {0, 1, 17, 300};
    static float factors[32];
    for (int i = 0; i < 32; i++) factors[i] = 1.0f + (float)i / 8;
    float *x = rand_floats((size_t)(hd * nh * T));
    elm_op_tensor X = tensor(f, ELM_TYPE_F32, hd, nh, T, "x"), Y = tensor(f, ELM_TYPE_F32, hd, nh, T, "y");
    elm_op_tensor P = tensor(f, ELM_TYPE_I32, T, 1, 1, "pos"), FF;
    cr_assert_eq(elm_op_tensor_dense(&FF, ELM_TYPE_F32, n_rot / 2, 1, 1, 1, NULL, 0, factors), ELM_OK);
    put(f, &X, x);
    put(f, &P, pos);
    elm_rope_params rp;
    elm_rope_default_params(&rp);
    rp.style = style;
    rp.n_rot = n_rot;
    rp.freq_base = 10000.0f;
    cr_assert_eq(elm_op_rope(f->dev, NULL, &X, &P, ff ? &FF : NULL, &rp, &Y), ELM_OK, "%s",
                 elm_dev_last_error(f->dev));
    float *got = get(f, &Y);
    double *want = malloc(sizeof(double) * hd * nh * T);
    elm_ref_rope r = {.mode = style == ELM_ROPE_NEOX ? 2 : 0, .n_rot = n_rot, .hd = hd, .nh = nh, .T = T,
                      .freq_base = 10000.0, .freq_scale = 1.0, .attn_factor = 1.0};
    elm_ref_rope_apply(&r, x, pos, ff ? factors : NULL, want);
    EXPECT_NMSE(f, nmse(got, want, (size_t)(hd * nh * T)), 1e-8, "rope %s n_rot %d%s",
                style == ELM_ROPE_NEOX ? "neox" : "norm", n_rot, ff ? " with factors" : "");
    free(x), free(got), free(want);
}

static void check_rope(fx *f) {
    rope_case(f, ELM_ROPE_NORM, 64, false);
    rope_case(f, ELM_ROPE_NEOX, 64, false);
    rope_case(f, ELM_ROPE_NORM, 32, true);
    rope_case(f, ELM_ROPE_NEOX, 48, true);
}

Test(ops_api, rms_norm_and_both_rope_styles) {
    on_every_device(check_rms_norm);
    on_every_device(check_rope);
}

/* -------------------------------------------------- KV store and attention */

static void round_f16(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = elmi_fp16_to_f32(elmi_f32_to_fp16(x[i]));
}

/* A prompt of T0 tokens, then one decode token, stored by KV_STORE into a
 * cache of `ctype` and attended with GQA (4 query heads on 2 KV heads). */
static void attention_case(fx *f, elm_type ctype) {
    const int hd = 32, nh = 4, nkv = 2, rows = 16, T0 = 5;
    const int row_len = hd * nkv;
    elm_op_tensor Kc = tensor(f, ctype, row_len, rows, 1, "k_cache");
    elm_op_tensor Vc = tensor(f, ctype, row_len, rows, 1, "v_cache");
    float *kref = calloc((size_t)(row_len * rows), sizeof(float));
    float *vref = calloc((size_t)(row_len * rows), sizeof(float));
    for (int step = 0; step < 2; step++) {
        int T = step == 0 ? T0 : 1, pos = step == 0 ? 0 : T0;
        float *q = rand_floats((size_t)(hd * nh * T)), *k = rand_floats((size_t)(row_len * T));
        float *v = rand_floats((size_t)(row_len * T));
        elm_op_tensor Q = tensor(f, ELM_TYPE_F32, hd, nh, T, "q");
        elm_op_tensor K = tensor(f, ELM_TYPE_F32, row_len, T, 1, "k");
        elm_op_tensor V = tensor(f, ELM_TYPE_F32, row_len, T, 1, "v");
        elm_op_tensor D = tensor(f, ELM_TYPE_F32, hd * nh, T, 1, "out");
        put(f, &Q, q), put(f, &K, k), put(f, &V, v);
        cr_assert_eq(elm_op_kv_store(f->dev, NULL, &K, &Kc, pos), ELM_OK, "%s", elm_dev_last_error(f->dev));
        cr_assert_eq(elm_op_kv_store(f->dev, NULL, &V, &Vc, pos), ELM_OK, "%s", elm_dev_last_error(f->dev));
        elm_attn_params ap;
        elm_attn_default_params(&ap);
        ap.pos = pos;
        cr_assert_eq(elm_op_attention(f->dev, NULL, &Q, &Kc, &Vc, &ap, &D), ELM_OK, "%s",
                     elm_dev_last_error(f->dev));
        memcpy(kref + pos * row_len, k, sizeof(float) * row_len * T);
        memcpy(vref + pos * row_len, v, sizeof(float) * row_len * T);
        if (ctype == ELM_TYPE_F16) {
            round_f16(kref + pos * row_len, (size_t)(row_len * T));
            round_f16(vref + pos * row_len, (size_t)(row_len * T));
        }
        float *got = get(f, &D);
        double *want = malloc(sizeof(double) * hd * nh * T);
        elm_ref_attn a = {.hd = hd, .nh = nh, .nkv = nkv, .T = T, .pos = pos, .n_rows = rows,
                          .scale = 1.0 / sqrt((double)hd)};
        elm_ref_attention(&a, q, kref, vref, want);
        EXPECT_NMSE(f, nmse(got, want, (size_t)(hd * nh * T)), 1e-10, "attention %s cache, T=%d at %d",
                    elm_type_name(ctype), T, pos);
        free(q), free(k), free(v), free(got), free(want);
    }
    /* The stored cache rows, read back through the API, are the inputs. */
    size_t rb;
    elm_type_row_bytes(ctype, row_len, &rb);
    uint8_t *raw = malloc(rb * (T0 + 1));
    cr_assert_eq(elm_op_tensor_read(f->dev, &Kc, raw, 0, rb * (T0 + 1)), ELM_OK);
    float *back = malloc(sizeof(float) * row_len * (T0 + 1));
    cr_assert_eq(elm_type_dequantize(ctype, raw, back, row_len * (T0 + 1)), ELM_OK);
    cr_expect_eq(memcmp(back, kref, sizeof(float) * row_len * (T0 + 1)), 0, "[%s] kv_store %s rows",
                 elm_dev_id(f->dev), elm_type_name(ctype));
    free(raw), free(back), free(kref), free(vref);
}

static void check_attention(fx *f) {
    attention_case(f, ELM_TYPE_F32);
    attention_case(f, ELM_TYPE_F16);
}

Test(ops_api, gqa_attention_over_a_kv_stored_cache) {
    on_every_device(check_attention);
}

/* ------------------------------------------------------ element-wise ops */

static void check_elementwise(fx *f) {
    const int64_t n = 100, rows = 3, cnt = n * rows;
    float *a = rand_floats((size_t)cnt), *b = rand_floats((size_t)cnt);
    for (int64_t i = 0; i < cnt; i++) a[i] *= 4.0f; /* GELU's and softmax's range */
    elm_op_tensor A = tensor(f, ELM_TYPE_F32, n, rows, 1, "a"), B = tensor(f, ELM_TYPE_F32, n, rows, 1, "b");
    elm_op_tensor R = tensor(f, ELM_TYPE_F32, n, 1, 1, "row"), D = tensor(f, ELM_TYPE_F32, n, rows, 1, "d");
    put(f, &A, a), put(f, &B, b), put(f, &R, b);
    double *want = malloc(sizeof(double) * cnt);
    float *got;
    for (int act = 0; act < 2; act++) {
        cr_assert_eq(elm_op_glu(f->dev, NULL, &A, &B, (elm_glu_act)act, &D), ELM_OK, "%s",
                     elm_dev_last_error(f->dev));
        elm_ref_glu(act == 0 ? 0 : 1, a, b, cnt, want);
        got = get(f, &D);
        EXPECT_NMSE(f, nmse(got, want, (size_t)cnt), 1e-10, "glu %s", act ? "gelu" : "silu");
        free(got);
    }
    cr_assert_eq(elm_op_softmax(f->dev, NULL, &A, 0.5f, &D), ELM_OK, "%s", elm_dev_last_error(f->dev));
    elm_ref_softmax(a, 0.5f, n, rows, want);
    got = get(f, &D);
    EXPECT_NMSE(f, nmse(got, want, (size_t)cnt), 1e-10, "softmax");
    free(got);
    cr_assert_eq(elm_op_add(f->dev, NULL, &A, &B, &D), ELM_OK, "%s", elm_dev_last_error(f->dev));
    for (int64_t i = 0; i < cnt; i++) want[i] = (double)a[i] + b[i];
    got = get(f, &D);
    EXPECT_NMSE(f, nmse(got, want, (size_t)cnt), 1e-12, "add");
    free(got);
    cr_assert_eq(elm_op_mul(f->dev, NULL, &A, &B, &D), ELM_OK, "%s", elm_dev_last_error(f->dev));
    elm_ref_mul(a, b, n, rows, rows, want);
    got = get(f, &D);
    EXPECT_NMSE(f, nmse(got, want, (size_t)cnt), 1e-12, "mul");
    free(got);
    cr_assert_eq(elm_op_mul(f->dev, NULL, &A, &R, &A), ELM_OK, "%s", elm_dev_last_error(f->dev));
    elm_ref_mul(a, b, n, rows, 1, want);
    got = get(f, &A);
    EXPECT_NMSE(f, nmse(got, want, (size_t)cnt), 1e-12, "mul by a broadcast row, in place");
    free(got), free(a), free(b), free(want);
}

Test(ops_api, glu_softmax_add_mul) {
    on_every_device(check_elementwise);
}

static void check_get_rows(fx *f) {
    static const elm_type types[] = {ELM_TYPE_F32, ELM_TYPE_Q4_0, ELM_TYPE_Q8_0, ELM_TYPE_Q4_K};
    const int32_t ids[4] = {3, 0, 7, 3};
    for (size_t i = 0; i < 4; i++) {
        int64_t n = types[i] == ELM_TYPE_Q4_K ? 256 : 64, rows = 8;
        float *w = rand_floats((size_t)(n * rows)), *deq = malloc(sizeof(float) * n * rows);
        void *q = quantize(types[i], w, rows, n, deq);
        elm_op_tensor Tb = tensor(f, types[i], n, rows, 1, "table");
        elm_op_tensor I = tensor(f, ELM_TYPE_I32, 4, 1, 1, "ids");
        elm_op_tensor D = tensor(f, ELM_TYPE_F32, n, 4, 1, "d");
        put(f, &Tb, q), put(f, &I, ids);
        cr_assert_eq(elm_op_get_rows(f->dev, NULL, &Tb, &I, &D), ELM_OK, "%s", elm_dev_last_error(f->dev));
        double *want = malloc(sizeof(double) * n * 4);
        for (int t = 0; t < 4; t++)
            for (int64_t k = 0; k < n; k++) want[t * n + k] = deq[ids[t] * n + k];
        float *got = get(f, &D);
        EXPECT_NMSE(f, nmse(got, want, (size_t)(n * 4)), 1e-12, "get_rows %s", elm_type_name(types[i]));
        free(w), free(deq), free(q), free(want), free(got);
    }
}

Test(ops_api, get_rows_of_quantized_tables) {
    on_every_device(check_get_rows);
}

/* ----------------------------------------------------------------- graphs */

/* rms_norm -> mul_mat -> softmax recorded once, run twice with new input:
 * each run matches the references of its input. */
static void check_graph(fx *f) {
    const int64_t K = 64, N = 24, T = 3;
    float *w = rand_floats((size_t)(K * N)), *deq = malloc(sizeof(float) * K * N);
    void *wq = quantize(ELM_TYPE_Q8_0, w, N, K, deq);
    float *g = rand_floats((size_t)K);
    elm_op_tensor W = tensor(f, ELM_TYPE_Q8_0, K, N, 1, "w"), G = tensor(f, ELM_TYPE_F32, K, 1, 1, "g");
    elm_op_tensor X = tensor(f, ELM_TYPE_F32, K, T, 1, "x"), H = tensor(f, ELM_TYPE_F32, K, T, 1, "h");
    elm_op_tensor Y = tensor(f, ELM_TYPE_F32, N, T, 1, "y");
    put(f, &W, wq), put(f, &G, g);
    elm_op_graph *graph = NULL;
    cr_assert_eq(elm_op_graph_new(f->dev, NULL, &graph), ELM_OK);
    cr_assert_eq(elm_op_rms_norm(f->dev, graph, &X, &G, 1e-6f, &H), ELM_OK, "%s", elm_dev_last_error(f->dev));
    cr_assert_eq(elm_op_mul_mat(f->dev, graph, &W, &H, NULL, &Y), ELM_OK, "%s", elm_dev_last_error(f->dev));
    cr_assert_eq(elm_op_softmax(f->dev, graph, &Y, 1.0f, &Y), ELM_OK, "%s", elm_dev_last_error(f->dev));
    cr_assert_eq(elm_op_graph_n_ops(graph), 3);
    for (int run = 0; run < 2; run++) {
        float *x = rand_floats((size_t)(K * T));
        put(f, &X, x);
        cr_assert_eq(elm_op_graph_compute(graph), ELM_OK, "%s", elm_dev_last_error(f->dev));
        double h[64 * 3], y[24 * 3];
        float hf[64 * 3];
        elm_ref_rms_norm(x, g, 1e-6f, K, T, h);
        for (int i = 0; i < K * T; i++) hf[i] = (float)h[i];
        elm_ref_mul_mat(deq, hf, NULL, K, N, T, y);
        float yf[24 * 3];
        for (int i = 0; i < N * T; i++) yf[i] = (float)y[i];
        elm_ref_softmax(yf, 1.0f, N, T, y);
        float *got = get(f, &Y);
        EXPECT_NMSE(f, nmse(got, y, (size_t)(N * T)), 1e-10, "graph run %d", run);
        free(x), free(got);
    }
    elm_op_graph_free(graph);
    /* A mat-vec in a graph, quantized. */
    cr_assert_eq(elm_op_graph_new(f->dev, NULL, &graph), ELM_OK);
    double e = mul_mat_case(f, ELM_TYPE_Q4_K, 256, 20, 1, false, true, graph);
    EXPECT_NMSE(f, e, 1e-10, "graph mul_mat Q4_K");
    elm_op_graph_free(graph);
    /* A fast graph: activations may be rounded to 8 bits (CPU) or halves
     * (Vulkan), ~1e-5 NMSE; a wrong product is of order 1. */
    elm_op_graph_params gp;
    elm_op_graph_default_params(&gp);
    gp.mode = ELM_MODE_FAST;
    cr_assert_eq(elm_op_graph_new(f->dev, &gp, &graph), ELM_OK);
    e = mul_mat_case(f, ELM_TYPE_Q4_0, 256, 20, 5, false, false, graph);
    EXPECT_NMSE(f, e, 1e-3, "fast graph mul_mat Q4_0");
    fprintf(stderr, "ops_api [%s]: fast Q4_0 mat-mat NMSE %.2g\n", elm_dev_id(f->dev), e);
    elm_op_graph_free(graph);
    free(w), free(deq), free(wq), free(g);
}

Test(ops_api, graph_submitted_once_and_rerun) {
    on_every_device(check_graph);
}

/* -------------------------------------------------------------- bad input */

#define EXPECT_REFUSED(f, call, words)                                                        \
    do {                                                                                      \
        elm_status st_ = (call);                                                              \
        cr_expect_eq(st_, ELM_ERR_INVALID_ARG, "[%s] %s: status %d", elm_dev_id((f)->dev), #call, \
                     (int)st_);                                                               \
        cr_expect(strstr(elm_dev_last_error((f)->dev), (words)) != NULL,                      \
                  "[%s] %s: message '%s' lacks '%s'", elm_dev_id((f)->dev), #call,            \
                  elm_dev_last_error((f)->dev), (words));                                     \
    } while (0)

static void check_bad_input(fx *f) {
    elm_op_tensor A = tensor(f, ELM_TYPE_F32, 32, 4, 1, "a"), B = tensor(f, ELM_TYPE_F32, 32, 3, 1, "b");
    elm_op_tensor W = tensor(f, ELM_TYPE_Q4_0, 32, 8, 1, "w"), Y = tensor(f, ELM_TYPE_F32, 8, 4, 1, "y");
    elm_op_tensor I = tensor(f, ELM_TYPE_I32, 4, 1, 1, "ids"), C = tensor(f, ELM_TYPE_F32, 32, 4, 1, "cache");
    elm_op_tensor Q = tensor(f, ELM_TYPE_F32, 8, 3, 4, "q"), O = tensor(f, ELM_TYPE_F32, 24, 4, 1, "o");
    EXPECT_REFUSED(f, elm_op_add(f->dev, NULL, &A, &B, &A), "shape (32, 3, 1, 1), expected (32, 4, 1, 1)");
    EXPECT_REFUSED(f, elm_op_add(f->dev, NULL, &A, NULL, &A), "b is NULL");
    EXPECT_REFUSED(f, elm_op_glu(f->dev, NULL, &A, &A, (elm_glu_act)7, &A), "unknown activation");
    EXPECT_REFUSED(f, elm_op_mul(f->dev, NULL, &A, &I, &A), "expected F32");
    elm_op_tensor X16 = tensor(f, ELM_TYPE_F32, 16, 4, 1, "x16"), R = tensor(f, ELM_TYPE_F32, 32, 1, 1, "r");
    EXPECT_REFUSED(f, elm_op_mul_mat(f->dev, NULL, &W, &X16, NULL, &Y),
                   "x 'x16' has shape (16, 4, 1, 1), expected (32, 4, 1, 1)");
    EXPECT_REFUSED(f, elm_op_mul_mat(f->dev, NULL, &W, &B, NULL, &Y), "dst 'y' has shape");
    EXPECT_REFUSED(f, elm_op_mul_mat(f->dev, NULL, &W, &A, NULL, &A), "dst 'a' has shape");
    EXPECT_REFUSED(f, elm_op_mul_mat(f->dev, NULL, &I, &A, NULL, &Y), "floating-point or quantized");
    EXPECT_REFUSED(f, elm_op_rms_norm(f->dev, NULL, &A, &A, 1e-5f, &A), "w 'a' has shape");
    EXPECT_REFUSED(f, elm_op_rms_norm(f->dev, NULL, &A, &R, -1.0f, &A), "eps -1");
    EXPECT_REFUSED(f, elm_op_softmax(f->dev, NULL, &A, NAN, &A), "scale");
    EXPECT_REFUSED(f, elm_op_get_rows(f->dev, NULL, &W, &A, &Y), "expected I32");
    EXPECT_REFUSED(f, elm_op_kv_store(f->dev, NULL, &A, &C, 1), "outside the cache");
    EXPECT_REFUSED(f, elm_op_kv_store(f->dev, NULL, &A, &W, 0), "expected F32 or F16");
    EXPECT_REFUSED(f, elm_op_attention(f->dev, NULL, &Q, &C, &C, NULL, &O), "whole heads");
    elm_rope_params rp;
    elm_rope_default_params(&rp);
    rp.n_rot = 7;
    elm_op_tensor P = tensor(f, ELM_TYPE_I32, 4, 1, 1, "pos");
    EXPECT_REFUSED(f, elm_op_rope(f->dev, NULL, &Q, &P, NULL, &rp, &Q), "n_rot 7");
    rp.n_rot = 0;
    rp.style = (elm_rope_style)1;
    EXPECT_REFUSED(f, elm_op_rope(f->dev, NULL, &Q, &P, NULL, &rp, &Q), "unknown style");
    EXPECT_REFUSED(f, elm_op_rope(f->dev, NULL, &Q, &A, NULL, NULL, &Q), "is F32, expected I32");
    /* Broken descriptions: a tensor past its buffer's end, overlapping
     * rows, an unset struct_size, an unknown type, a host destination. */
    elm_op_tensor bad = A;
    bad.offset = 64;
    EXPECT_REFUSED(f, elm_op_add(f->dev, NULL, &bad, &A, &A), "exceed its buffer");
    bad = A;
    bad.nb[1] = 16;
    EXPECT_REFUSED(f, elm_op_add(f->dev, NULL, &bad, &A, &A), "overlap");
    bad = A;
    bad.offset = 2;
    EXPECT_REFUSED(f, elm_op_add(f->dev, NULL, &bad, &A, &A), "multiple of the element size");
    bad = A;
    bad.nb[1] = 130, bad.nb[2] = bad.nb[3] = 520;
    EXPECT_REFUSED(f, elm_op_softmax(f->dev, NULL, &bad, 1.0f, &A), "multiple of the element size");
    bad = A;
    bad.struct_size = 0;
    EXPECT_REFUSED(f, elm_op_add(f->dev, NULL, &bad, &A, &A), "struct_size");
    bad = A;
    bad.type = (elm_type)99;
    EXPECT_REFUSED(f, elm_op_add(f->dev, NULL, &bad, &A, &A), "unknown element type");
    float host[128];
    elm_op_tensor H;
    cr_assert_eq(elm_op_tensor_dense(&H, ELM_TYPE_F32, 32, 4, 1, 1, NULL, 0, host), ELM_OK);
    EXPECT_REFUSED(f, elm_op_add(f->dev, NULL, &A, &A, &H), "destinations must be");
    EXPECT_REFUSED(f, elm_op_tensor_write(f->dev, &A, host, 8, 512), "bytes [8, +512)");
    cr_expect_eq(elm_op_tensor_dense(&H, ELM_TYPE_Q4_0, 33, 1, 1, 1, NULL, 0, host), ELM_ERR_INVALID_ARG);
    cr_expect_eq(elm_op_tensor_dense(&H, ELM_TYPE_F32, 64, 4, 1, 1, A.buf, 0, NULL), ELM_ERR_INVALID_ARG);
    cr_expect(strstr(elm_dev_last_error(f->dev), "exceed the buffer"), "%s", elm_dev_last_error(f->dev));
    /* NULL handles: refused, no crash. */
    cr_expect_eq(elm_op_add(NULL, NULL, &A, &A, &A), ELM_ERR_INVALID_ARG);
    cr_expect_eq(elm_dev_buffer_alloc(f->dev, 16, NULL), ELM_ERR_INVALID_ARG);
    cr_expect_eq(elm_op_graph_compute(NULL), ELM_ERR_INVALID_ARG);
    elm_dev_buffer_free(NULL);
    elm_op_graph_free(NULL);
    elm_dev_free(NULL);
}

Test(ops_api, bad_input_is_refused_with_a_message) {
    on_every_device(check_bad_input);
}

/* Buffers and graphs of another device; wrapping; unknown device ids. */
Test(ops_api, foreign_buffers_wraps_and_unknown_devices) {
    char ids[MAX_DEVS][32];
    int n = device_ids(ids);
    fx cpu, other;
    fx_open(&cpu, "cpu");
    fx_open(&other, n > 1 ? ids[1] : "cpu");
    elm_op_tensor A = tensor(&cpu, ELM_TYPE_F32, 16, 2, 1, "a");
    elm_op_tensor B = tensor(&other, ELM_TYPE_F32, 16, 2, 1, "b");
    EXPECT_REFUSED(&cpu, elm_op_add(cpu.dev, NULL, &A, &B, &A), "in a buffer of device");
    EXPECT_REFUSED(&other, elm_op_add(other.dev, NULL, &B, &B, &A), "in a buffer of device");
    elm_op_graph *g = NULL;
    cr_assert_eq(elm_op_graph_new(other.dev, NULL, &g), ELM_OK);
    EXPECT_REFUSED(&cpu, elm_op_add(cpu.dev, g, &A, &A, &A), "the graph belongs to device");
    elm_op_graph_free(g);
    float host[32] = {0};
    elm_dev_buffer *wb = NULL;
    cr_expect_eq(elm_dev_buffer_wrap(cpu.dev, host, sizeof host, &wb), ELM_OK);
    elm_op_tensor Wt;
    cr_assert_eq(elm_op_tensor_dense(&Wt, ELM_TYPE_F32, 16, 2, 1, 1, wb, 0, NULL), ELM_OK);
    float ones[32];
    for (int i = 0; i < 32; i++) ones[i] = 1.0f;
    put(&cpu, &A, ones);
    cr_assert_eq(elm_op_add(cpu.dev, NULL, &A, &A, &Wt), ELM_OK, "%s", elm_dev_last_error(cpu.dev));
    cr_expect_eq(host[31], 2.0f, "a wrapped buffer is the caller's memory");
    elm_dev_buffer_free(wb);
    if (n > 1) {
        elm_status st = elm_dev_buffer_wrap(other.dev, host, sizeof host, &wb);
        cr_expect_eq(st, ELM_ERR_UNSUPPORTED, "%s", elm_dev_last_error(other.dev));
        cr_expect(strstr(elm_dev_last_error(other.dev), "in place"));
    }
    fx_close(&other);
    fx_close(&cpu);
    char err[512] = "";
    elm_dev *d = NULL;
    cr_expect_eq(elm_dev_new("tpu:0", NULL, &d, err, sizeof err), ELM_ERR_INVALID_ARG);
    cr_expect(strstr(err, "unknown device 'tpu:0'"), "%s", err);
    cr_expect_null(d);
    if (elm_dev_new("vulkan:99", NULL, &d, err, sizeof err) == ELM_OK) elm_dev_free(d);
    else cr_expect(strstr(err, "vulkan:99"), "%s", err);
    cr_expect_eq(elm_dev_new(NULL, NULL, &d, err, sizeof err), ELM_ERR_INVALID_ARG);
    cr_assert_eq(elm_dev_new("auto", NULL, &d, err, sizeof err), ELM_OK, "%s", err);
    cr_expect(!strcmp(elm_dev_id(d), "cpu") || !strncmp(elm_dev_id(d), "vulkan:", 7), "auto gave '%s'",
              elm_dev_id(d));
    elm_dev_free(d);
}

Test(ops_api, types_and_device_info) {
    size_t b = 0;
    cr_expect_eq(elm_type_row_bytes(ELM_TYPE_Q4_K, 512, &b), ELM_OK);
    cr_expect_eq(b, 2 * 144);
    cr_expect_eq(elm_type_row_bytes(ELM_TYPE_Q8_0, 33, &b), ELM_ERR_INVALID_ARG);
    cr_expect_str_eq(elm_type_name(ELM_TYPE_Q6_K), "Q6_K");
    cr_expect_str_eq(elm_type_name((elm_type)5), "unknown");
    char ids[MAX_DEVS][32];
    int n = device_ids(ids);
    for (int i = 0; i < n; i++) {
        fx f;
        fx_open(&f, ids[i]);
        elm_device_info info = {.struct_size = sizeof info};
        cr_expect_eq(elm_dev_get_info(f.dev, &info), ELM_OK, "%s", elm_dev_last_error(f.dev));
        cr_expect_str_eq(info.id, ids[i]);
        fx_close(&f);
    }
}
