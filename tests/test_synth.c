/*
 * test_synth.c: the synthetic models of include/edgelm_tools.h. Every shape
 * loads; its hyperparameters are those of the real model (the figures of
 * the model cards, written out here) and its tensors are the ones its
 * architecture defines (llama.cpp's names and shapes); the metadata keys the
 * loader needs are there; the tiny shapes run a forward pass; bad
 * parameters are refused by name.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgelm.h"
#include "common/alloc.h"
#include "edgelm_tools.h"
#include "engine/gguf.h"
#include "engine/synth.h"
#include "support/paths.h"

/* A shape as its model card gives it. */
typedef struct card {
    const char *shape, *arch;
    uint32_t n_embd, n_layer, n_head, n_head_kv, head_dim, n_rot, n_ff, n_ctx;
    bool tied;
    uint32_t n_vocab;     /* checked for the tiny shapes, built at full size */
    uint32_t test_layers; /* layers the test builds (0: all) */
} card;

static const card REAL[] = {
    {"qwen3-0.6b", "qwen3", 1024, 28, 16, 8, 128, 128, 3072, 40960, true, 0, 1},
    {"gemma3-270m", "gemma3", 640, 18, 4, 1, 256, 256, 2048, 32768, true, 0, 1},
    {"gemma3-1b", "gemma3", 1152, 26, 4, 1, 256, 256, 6912, 32768, true, 0, 1},
    {"phi4-mini", "phi3", 3072, 32, 24, 8, 128, 96, 8192, 131072, false, 0, 1},
    {"smollm3-3b", "smollm3", 2048, 36, 16, 4, 128, 128, 11008, 65536, true, 0, 1},
    /* Three layers: two convolution layers, then the first attention one. */
    {"lfm2-350m", "lfm2", 1024, 16, 16, 8, 64, 64, 4608, 128000, true, 0, 3},
};

static const card TINY[] = {
    {"tiny-qwen3", "qwen3", 64, 2, 4, 2, 32, 32, 128, 256, true, 300, 0},
    {"tiny-gemma3", "gemma3", 64, 6, 4, 1, 32, 32, 128, 256, true, 300, 0},
    {"tiny-phi3", "phi3", 64, 2, 4, 2, 16, 12, 128, 256, false, 300, 0},
    {"tiny-smollm3", "smollm3", 64, 4, 4, 2, 16, 16, 128, 256, true, 300, 0},
    {"tiny-lfm2", "lfm2", 64, 4, 4, 2, 16, 16, 128, 256, true, 300, 0},
};

#define N_OF(a) (sizeof(a) / sizeof *(a))

/* Which layers of a shape attend: lfm2-350m at 2, 5, 8, 10, 12, 14 (its
 * config's layer_types); tiny-lfm2 at 1 and 3; every other shape always. */
static bool attends(const card *c, uint32_t il) {
    if (!strcmp(c->shape, "lfm2-350m"))
        return il == 2 || il == 5 || il == 8 || il == 10 || il == 12 || il == 14;
    if (!strcmp(c->shape, "tiny-lfm2")) return il == 1 || il == 3;
    return true;
}

/* output_type NULL: the default, which differs from every type but F16, F32
 * and BF16, so that output.weight is stored apart (untied). */
static elm_model *load(const card *c, const char *type, const char *output_type, uint32_t vocab) {
    elm_synth_params p = elm_synth_default_params();
    p.shape = c->shape;
    p.type = type;
    p.output_type = output_type;
    p.vocab_size = vocab;
    p.n_layer = c->test_layers;
    elm_model *m = NULL;
    char err[512] = "";
    cr_assert_eq(elm_synth_load(&p, NULL, &m, err, sizeof err), ELM_OK, "%s: %s", c->shape, err);
    return m;
}

/* The tensor `name`, or NULL. */
static bool find_tensor(const elm_model *m, const char *name, elm_tensor_info *out) {
    for (uint32_t i = 0; i < elm_model_n_tensors(m); i++) {
        *out = (elm_tensor_info)ELM_INIT(elm_tensor_info);
        cr_assert_eq(elm_model_tensor(m, i, out), ELM_OK);
        if (!strcmp(out->name, name)) return true;
    }
    return false;
}

/* Tensor `name` exists with shape (ne0, ne1) (ne1 = 0: a vector), F32 when asked. */
static void want(const elm_model *m, const char *shape, const char *name, int64_t ne0,
                 int64_t ne1, bool f32) {
    elm_tensor_info t;
    cr_assert(find_tensor(m, name, &t), "%s: no tensor %s", shape, name);
    cr_expect_eq(t.n_dims, ne1 ? 2u : 1u, "%s: %s has %u dims", shape, name, t.n_dims);
    cr_expect_eq(t.ne[0], ne0, "%s: %s ne0 %lld, want %lld", shape, name, (long long)t.ne[0],
                 (long long)ne0);
    if (ne1)
        cr_expect_eq(t.ne[1], ne1, "%s: %s ne1 %lld, want %lld", shape, name, (long long)t.ne[1],
                     (long long)ne1);
    if (f32) cr_expect_str_eq(t.type, "F32", "%s: %s is %s, not F32", shape, name, t.type);
}

static void absent(const elm_model *m, const char *shape, const char *name) {
    elm_tensor_info t;
    cr_expect(!find_tensor(m, name, &t), "%s: unexpected tensor %s", shape, name);
}

/* The tensors of one layer, as llama.cpp names them for the architecture;
 * returns how many there are. */
static uint32_t check_layer(const elm_model *m, const card *c, uint32_t il) {
    const int64_t d = c->n_embd, hd = c->head_dim, nq = hd * c->n_head, nkv = hd * c->n_head_kv;
    const char *s = c->shape, *a = c->arch;
    bool phi3 = !strcmp(a, "phi3"), gemma3 = !strcmp(a, "gemma3");
    bool qk_norm = !strcmp(a, "qwen3") || gemma3 || !strcmp(a, "lfm2");
    char n[96];
    uint32_t count = 0;
#define W(x, ne0, ne1, f32) \
    (snprintf(n, sizeof n, "blk.%u." x, il), want(m, s, n, ne0, ne1, f32), count++)
#define NO(x) (snprintf(n, sizeof n, "blk.%u." x, il), absent(m, s, n))
    W("attn_norm.weight", d, 0, true);
    W("ffn_norm.weight", d, 0, true);
    W("ffn_down.weight", c->n_ff, d, false);
    if (phi3) {
        W("ffn_up.weight", d, 2 * c->n_ff, false); /* gate rows, then up rows */
        NO("ffn_gate.weight");
    } else {
        W("ffn_gate.weight", d, c->n_ff, false);
        W("ffn_up.weight", d, c->n_ff, false);
    }
    if (!attends(c, il)) {
        W("shortconv.in_proj.weight", d, 3 * d, false);
        W("shortconv.conv.weight", 3, d, true); /* L = 3 taps per channel */
        W("shortconv.out_proj.weight", d, d, false);
        NO("attn_q.weight");
        NO("attn_q_norm.weight");
        return count;
    }
    NO("shortconv.conv.weight");
    if (phi3) {
        W("attn_qkv.weight", d, nq + 2 * nkv, false);
        NO("attn_q.weight");
    } else {
        W("attn_q.weight", d, nq, false);
        W("attn_k.weight", d, nkv, false);
        W("attn_v.weight", d, nkv, false);
    }
    W("attn_output.weight", nq, d, false);
    NO("attn_q.bias");
    if (qk_norm) {
        W("attn_q_norm.weight", hd, 0, true);
        W("attn_k_norm.weight", hd, 0, true);
    } else {
        NO("attn_q_norm.weight");
    }
    if (gemma3) {
        W("post_attention_norm.weight", d, 0, true);
        W("post_ffw_norm.weight", d, 0, true);
    } else {
        NO("post_ffw_norm.weight");
    }
#undef W
#undef NO
    return count;
}

/* tied: whether the file should reuse token_embd as the output. */
static void check_model(const elm_model *m, const card *c, uint32_t n_layer, bool tied) {
    elm_model_info in = ELM_INIT(elm_model_info);
    cr_assert_eq(elm_model_get_info(m, &in), ELM_OK);
    const char *s = c->shape;
    cr_expect_str_eq(in.arch, c->arch, "%s", s);
    cr_expect_eq(in.n_embd, c->n_embd, "%s: n_embd %u", s, in.n_embd);
    cr_expect_eq(in.n_layer, n_layer, "%s: n_layer %u", s, in.n_layer);
    cr_expect_eq(in.n_head, c->n_head, "%s: n_head %u", s, in.n_head);
    cr_expect_eq(in.n_head_kv, c->n_head_kv, "%s: n_head_kv %u", s, in.n_head_kv);
    cr_expect_eq(in.head_dim, c->head_dim, "%s: head_dim %u", s, in.head_dim);
    cr_expect_eq(in.n_rot, c->n_rot, "%s: n_rot %u", s, in.n_rot);
    cr_expect_eq(in.n_ff, c->n_ff, "%s: n_ff %u", s, in.n_ff);
    cr_expect_eq(in.n_ctx_train, c->n_ctx, "%s: n_ctx_train %u", s, in.n_ctx_train);
    cr_expect_eq(in.tied_embeddings, tied, "%s: tied %d", s, in.tied_embeddings);
    if (c->n_vocab) cr_expect_eq(in.n_vocab, c->n_vocab, "%s: n_vocab %u", s, in.n_vocab);
    uint32_t count = 1; /* token_embd */
    want(m, s, "token_embd.weight", c->n_embd, in.n_vocab, false);
    bool lfm2 = !strcmp(c->arch, "lfm2");
    want(m, s, lfm2 ? "token_embd_norm.weight" : "output_norm.weight", c->n_embd, 0, true);
    absent(m, s, lfm2 ? "output_norm.weight" : "token_embd_norm.weight");
    count++;
    if (!tied) {
        want(m, s, "output.weight", c->n_embd, in.n_vocab, false);
        count++;
    }
    if (!strcmp(c->arch, "phi3")) {
        want(m, s, "rope_factors_long.weight", c->n_rot / 2, 0, true);
        want(m, s, "rope_factors_short.weight", c->n_rot / 2, 0, true);
        count += 2;
    }
    for (uint32_t il = 0; il < n_layer; il++) count += check_layer(m, c, il);
    cr_expect_eq(elm_model_n_tensors(m), count, "%s: %u tensors, want %u", s,
                 elm_model_n_tensors(m), count);
}

Test(synth, every_shape_is_listed) {
    static const char *const names[] = {
        "smollm-135m", "qwen2-0.5b", "llama-1b", "tinyllama-1.1b", "qwen3-0.6b", "gemma3-270m",
        "gemma3-1b", "phi4-mini", "smollm3-3b", "lfm2-350m", "tiny-qwen3", "tiny-gemma3",
        "tiny-phi3", "tiny-smollm3", "tiny-lfm2"};
    size_t n = 0;
    while (elm_synth_shape_name(n)) n++;
    cr_expect_eq(n, N_OF(names), "%zu shapes", n);
    for (size_t i = 0; i < N_OF(names); i++) {
        bool found = false;
        for (size_t j = 0; j < n; j++) found = found || !strcmp(elm_synth_shape_name(j), names[i]);
        cr_expect(found, "shape %s is not listed", names[i]);
    }
}

Test(synth, tiny_shapes_load_with_their_tensors) {
    for (size_t i = 0; i < N_OF(TINY); i++) {
        const card *c = &TINY[i];
        /* Q8_0 with a Q8_0 output: tied where the model is; Q4_K_M: the
         * output is Q6_K (its fallback), stored apart; F16: tied again. */
        elm_model *m = load(c, "Q8_0", "Q8_0", 0);
        check_model(m, c, c->n_layer, c->tied);
        elm_model_free(m);
        m = load(c, "Q4_K_M", NULL, 0);
        check_model(m, c, c->n_layer, false);
        elm_model_free(m);
        m = load(c, "F16", NULL, 0);
        check_model(m, c, c->n_layer, c->tied);
        elm_model_free(m);
    }
}

/* The real shapes at their full width, a few layers deep and with a small
 * vocabulary (the full models take seconds to generate). */
Test(synth, real_shapes_load_with_their_tensors) {
    for (size_t i = 0; i < N_OF(REAL); i++) {
        elm_model *m = load(&REAL[i], "Q4_0", "Q4_0", 300);
        check_model(m, &REAL[i], REAL[i].test_layers, REAL[i].tied);
        elm_model_free(m);
    }
}

/* Asking for one layer more than a shape has is refused with its depth, so
 * the full layer counts are checked without building the models. */
Test(synth, real_shapes_have_their_depth) {
    for (size_t i = 0; i < N_OF(REAL); i++) {
        elm_synth_params p = elm_synth_default_params();
        p.shape = REAL[i].shape;
        p.n_layer = REAL[i].n_layer + 1;
        p.vocab_size = 300;
        elm_model *m = NULL;
        char err[512] = "", range[32];
        cr_expect_eq(elm_synth_load(&p, NULL, &m, err, sizeof err), ELM_ERR_INVALID_ARG, "%s",
                     REAL[i].shape);
        cr_expect_null(m);
        snprintf(range, sizeof range, "[1, %u]", REAL[i].n_layer);
        cr_expect(strstr(err, range), "%s: '%s' does not say %s", REAL[i].shape, err, range);
    }
}

/* ------------------------------------------------------------ metadata */

static gguf_file *open_built(const char *shape, uint32_t n_layer, void **buf) {
    elm_synth_params p = elm_synth_default_params();
    p.shape = shape;
    p.type = "Q8_0";
    p.vocab_size = 300;
    p.n_layer = n_layer;
    gguf_writer *w = elmi_gguf_writer_new();
    char err[512] = "";
    cr_assert_eq(elmi_synth_build(&p, w, err, sizeof err), ELM_OK, "%s", err);
    size_t n = 0;
    cr_assert_eq(elmi_gguf_write_memory(w, buf, &n), ELM_OK);
    elmi_gguf_writer_free(w);
    gguf_file *f = NULL;
    cr_assert_eq(elmi_gguf_open_memory(*buf, n, &f, err, sizeof err), ELM_OK, "%s", err);
    return f;
}

static uint32_t key_u32(const gguf_file *f, const char *key) {
    uint32_t v = 0;
    char err[256] = "";
    cr_assert_eq(elmi_gguf_get_u32(f, key, true, &v, err, sizeof err), ELM_OK, "%s", err);
    return v;
}

static void close_built(gguf_file *f, void *buf) {
    elmi_gguf_close(f);
    elmi_free(buf);
}

Test(synth, gemma3_sliding_window) {
    void *buf;
    gguf_file *f = open_built("gemma3-270m", 1, &buf);
    cr_expect_eq(key_u32(f, "gemma3.attention.sliding_window"), 512);
    cr_expect_eq(key_u32(f, "gemma3.attention.key_length"), 256);
    cr_expect_eq(key_u32(f, "gemma3.attention.value_length"), 256);
    close_built(f, buf);
    f = open_built("tiny-gemma3", 0, &buf);
    cr_expect_eq(key_u32(f, "gemma3.attention.sliding_window"), 8);
    cr_expect_eq(key_u32(f, "gemma3.block_count"), 6);
    close_built(f, buf);
}

/* LongRoPE: the original context, and the attention factor the converters
 * derive from it: sqrt(1 + ln(131072 / 4096) / ln(4096)). */
Test(synth, phi4_mini_longrope) {
    void *buf;
    gguf_file *f = open_built("phi4-mini", 1, &buf);
    cr_expect_eq(key_u32(f, "phi3.rope.scaling.original_context_length"), 4096);
    cr_expect_eq(key_u32(f, "phi3.rope.dimension_count"), 96);
    float af = 0;
    char err[256] = "";
    cr_assert_eq(elmi_gguf_get_f32(f, "phi3.rope.scaling.attn_factor", true, &af, err, sizeof err),
                 ELM_OK, "%s", err);
    double expect = sqrt(1.0 + log(131072.0 / 4096.0) / log(4096.0));
    cr_expect(fabs(af - expect) < 1e-6, "attn_factor %g, want %g", af, expect);
    close_built(f, buf);
}

Test(synth, lfm2_layer_kinds) {
    void *buf;
    gguf_file *f = open_built("lfm2-350m", 6, &buf);
    cr_expect_eq(key_u32(f, "lfm2.shortconv.l_cache"), 3);
    const gguf_kv *kv = elmi_gguf_find(f, "lfm2.attention.head_count_kv");
    cr_assert_not_null(kv);
    cr_assert_eq(kv->type, GGUF_TYPE_ARRAY);
    cr_assert_eq(kv->arr_type, GGUF_TYPE_INT32);
    cr_assert_eq(kv->arr_n, 6);
    static const int32_t expect[6] = {0, 0, 8, 0, 0, 8};
    for (int i = 0; i < 6; i++) {
        int32_t v;
        memcpy(&v, (const char *)kv->arr_data + 4 * i, 4);
        cr_expect_eq(v, expect[i], "layer %d: head_count_kv %d, want %d", i, v, expect[i]);
    }
    close_built(f, buf);
}

/* ------------------------------------------------------------ forward pass */

/* A short prompt, then greedy tokens one at a time: the logits stay finite. */
Test(synth, tiny_shapes_run) {
    for (size_t i = 0; i < N_OF(TINY); i++) {
        const card *c = &TINY[i];
        elm_model *m = load(c, "Q8_0", NULL, 0);
        elm_context_params cp;
        elm_context_default_params(&cp);
        cp.n_ctx = 128;
        cp.n_threads = 2;
        elm_context *ctx = NULL;
        char err[512] = "";
        elm_status st = elm_context_new(m, &cp, &ctx, err, sizeof err);
        cr_assert_eq(st, ELM_OK, "%s: %s", c->shape, err);
        elm_token prompt[20];
        for (int t = 0; t < 20; t++) prompt[t] = (elm_token)(1 + (t * 37) % 299);
        cr_assert_eq(elm_decode(ctx, prompt, 20), ELM_OK, "%s: %s", c->shape,
                     elm_context_last_error(ctx));
        for (int step = 0; step < 12; step++) {
            const float *l = elm_get_logits(ctx, -1);
            cr_assert_not_null(l);
            elm_token best = 0;
            for (uint32_t v = 0; v < c->n_vocab; v++) {
                cr_assert(isfinite(l[v]), "%s: logit %u at step %d is %g", c->shape, v, step, l[v]);
                if (l[v] > l[best]) best = (elm_token)v;
            }
            cr_assert_eq(elm_decode(ctx, &best, 1), ELM_OK, "%s: %s", c->shape,
                         elm_context_last_error(ctx));
        }
        elm_context_free(ctx);
        elm_model_free(m);
    }
}

/* ------------------------------------------------------------ bad parameters */

Test(synth, bad_parameters_are_refused) {
    elm_synth_params p = elm_synth_default_params();
    elm_model *m = NULL;
    char err[1024] = "";
    p.shape = "gemma4-1b";
    cr_expect_eq(elm_synth_load(&p, NULL, &m, err, sizeof err), ELM_ERR_INVALID_ARG);
    cr_expect(strstr(err, "gemma4-1b") && strstr(err, "tiny-lfm2") && strstr(err, "phi4-mini"),
              "message '%s' names neither the shape nor the known ones", err);
    p = elm_synth_default_params();
    p.shape = "tiny-qwen3";
    p.n_layer = 3;
    cr_expect_eq(elm_synth_load(&p, NULL, &m, err, sizeof err), ELM_ERR_INVALID_ARG);
    cr_expect(strstr(err, "n_layer"), "%s", err);
    p.n_layer = 0;
    p.vocab_size = 259;
    cr_expect_eq(elm_synth_load(&p, NULL, &m, err, sizeof err), ELM_ERR_INVALID_ARG);
    cr_expect(strstr(err, "vocab"), "%s", err);
    p.vocab_size = 0;
    p.type = "Q9_9";
    cr_expect_eq(elm_synth_load(&p, NULL, &m, err, sizeof err), ELM_ERR_INVALID_ARG);
    cr_expect(strstr(err, "Q9_9"), "%s", err);
    cr_expect_null(m);
}

/* A written file loads as the one built in memory does. */
Test(synth, written_file_loads) {
    char path[512];
    snprintf(path, sizeof path, "%s/tiny-lfm2.gguf", test_tmp_dir());
    elm_synth_params p = elm_synth_default_params();
    p.shape = "tiny-lfm2";
    p.type = "Q8_0";
    char err[512] = "";
    cr_assert_eq(elm_synth_write(&p, path, err, sizeof err), ELM_OK, "%s", err);
    elm_model *m = NULL;
    cr_assert_eq(elm_model_load(path, NULL, &m, err, sizeof err), ELM_OK, "%s", err);
    const card *c = &TINY[N_OF(TINY) - 1];
    cr_assert_str_eq(c->shape, "tiny-lfm2");
    check_model(m, c, c->n_layer, c->tied);
    elm_model_free(m);
    remove(path);
}
