/*
 * test_hostile.c: malformed GGUF files against the whole program. Each file
 * is written with the GGUF writer (or by patching a written one) and must be
 * refused by elm_model_load and by `edgelm info` / `edgelm run` with exit
 * status 1 and a message naming the file and the problem, never a crash or a
 * sanitizer report. The reader-level half of these checks is in test_gguf.c.
 */
#define _GNU_SOURCE /* strcasestr */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgelm.h"
#include "edgelm_tools.h"
#include "engine/gguf.h"
#include "engine/synth.h"
#include "quant/quant.h"
#include "support/paths.h"
#include "support/tiny_model.h"

/* The message must name one of these (case-insensitive). */
#define WORDS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* When set, a message must name every word, not just one. */
static bool g_every;

static bool has_any(const char *text, const char *const *words) {
    if (g_every) {
        for (; *words; words++)
            if (!strcasestr(text, *words)) return false;
        return true;
    }
    for (; *words; words++)
        if (strcasestr(text, *words)) return true;
    return false;
}

static void words_str(const char *const *words, char *buf, size_t cap) {
    size_t o = 0;
    buf[0] = 0;
    for (; *words && o < cap; words++) o += (size_t)snprintf(buf + o, cap - o, "'%s' ", *words);
}

static void check_load(const char *path, const char *const *words) {
    elm_model *m = (elm_model *)1;
    char err[1024] = "", want[256];
    elm_status s = elm_model_load(path, NULL, &m, err, sizeof err);
    words_str(words, want, sizeof want);
    cr_assert_neq(s, ELM_OK, "%s loaded", path);
    cr_assert_null(m);
    cr_assert(strstr(err, path), "load message does not name the file: %s", err);
    cr_assert(has_any(err, words), "load message '%s' names none of %s", err, want);
}

static void check_cli(const char *path, const char *const *words, const char *cmd) {
    const char *cli = test_cli();
    cr_assert_not_null(cli, "ELM_CLI is not set (run through ctest)");
    const char *argv_info[] = {cli, "info", "-m", path, NULL};
    const char *argv_run[] = {cli, "run", "-m", path, "-p", "Hello", "-n", "4", NULL};
    const char *const *argv = strcmp(cmd, "info") == 0 ? argv_info : argv_run;
    char *out = NULL, *err = NULL, want[256];
    int rc = test_run(argv, NULL, 0, &out, &err);
    const char *e = err ? err : "";
    words_str(words, want, sizeof want);
    cr_assert_neq(rc, -1, "edgelm %s crashed on %s; stderr: %s", cmd, path, e);
    cr_assert(!strstr(e, "Sanitizer") && !strstr(e, "runtime error"),
              "edgelm %s: sanitizer report on %s: %s", cmd, path, e);
    cr_assert_eq(rc, 1, "edgelm %s on %s exited %d; stderr: %s", cmd, path, rc, e);
    cr_assert(strstr(e, path), "edgelm %s: stderr does not name the file: %s", cmd, e);
    cr_assert(has_any(e, words), "edgelm %s: stderr '%s' names none of %s", cmd, e, want);
    free(out);
    free(err);
}

/* Writes n bytes as <tmp>/<name>.gguf and checks the library and the CLI. */
static void check_bytes(const char *name, const uint8_t *buf, size_t n,
                        const char *const *words) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.gguf", test_tmp_dir(), name);
    cr_assert_eq(tiny_write_bytes(path, buf, n), 0, "cannot write %s", path);
    check_load(path, words);
    check_cli(path, words, "info");
    check_cli(path, words, "run");
    remove(path); /* kept when a check fails, for a look */
}

static void check_writer(const char *name, gguf_writer *w, const char *const *words) {
    cr_assert_not_null(w);
    size_t n;
    uint8_t *buf = tiny_serialize(w, &n);
    cr_assert_not_null(buf);
    elmi_gguf_writer_free(w);
    check_bytes(name, buf, n, words);
    free(buf);
}

static gguf_writer *model(void) {
    tiny_model_opts o = tiny_model_default();
    gguf_writer *w = tiny_model_build(&o);
    cr_assert_not_null(w);
    return w;
}

static uint8_t *model_bytes(size_t *n) {
    gguf_writer *w = model();
    uint8_t *buf = tiny_serialize(w, n);
    cr_assert_not_null(buf);
    elmi_gguf_writer_free(w);
    return buf;
}

/* ------------------------------------------------------------ sanity */

/* The unmodified model loads and runs, so the failures below are the files'. */
Test(hostile, valid_model_loads) {
    char path[1024];
    snprintf(path, sizeof path, "%s/valid.gguf", test_tmp_dir());
    tiny_model_opts o = tiny_model_default();
    cr_assert_eq(tiny_model_write(&o, path), 0);
    elm_model *m = NULL;
    char err[1024] = "";
    cr_assert_eq(elm_model_load(path, NULL, &m, err, sizeof err), ELM_OK, "%s", err);
    elm_model_free(m);
    const char *cli = test_cli();
    cr_assert_not_null(cli, "ELM_CLI is not set (run through ctest)");
    const char *argv[] = {cli, "run", "-m", path, "-p", "Hello", "-n", "4", NULL};
    char *out = NULL, *e = NULL;
    int rc = test_run(argv, NULL, 0, &out, &e);
    cr_assert_eq(rc, 0, "edgelm run on a valid model exited %d: %s", rc, e ? e : "");
    free(out);
    free(e);
    remove(path);
}

/* ------------------------------------------------------------ truncation */

#define TRUNC_WORDS \
    WORDS("truncated", "too short", "past the end", "exceeds", "does not fit", "impossible")

Test(hostile, truncated_header) {
    size_t n;
    uint8_t *b = model_bytes(&n);
    check_bytes("trunc_magic", b, 3, TRUNC_WORDS);
    check_bytes("trunc_header", b, 20, TRUNC_WORDS);
    free(b);
}

Test(hostile, truncated_each_kv) {
    size_t n;
    uint8_t *b = model_bytes(&n);
    gguf_file *f = NULL;
    cr_assert_eq(elmi_gguf_open_memory(b, n, &f, NULL, 0), ELM_OK);
    for (uint64_t i = 0; i < elmi_gguf_n_kv(f); i++) {
        const gguf_kv *kv = elmi_gguf_kv_at(f, i);
        size_t key = (size_t)((const uint8_t *)kv->key.ptr - b);
        char name[64];
        snprintf(name, sizeof name, "trunc_kv%llu", (unsigned long long)i);
        check_bytes(name, b, key - 8, TRUNC_WORDS);          /* at its start */
        snprintf(name, sizeof name, "trunc_kv%llu_value", (unsigned long long)i);
        check_bytes(name, b, key + kv->key.len + 5, TRUNC_WORDS); /* inside its value */
    }
    elmi_gguf_close(f);
    free(b);
}

Test(hostile, truncated_tensor_infos) {
    size_t n;
    uint8_t *b = model_bytes(&n);
    gguf_file *f = NULL;
    cr_assert_eq(elmi_gguf_open_memory(b, n, &f, NULL, 0), ELM_OK);
    for (uint64_t i = 0; i < elmi_gguf_n_tensors(f); i += 4) {
        const gguf_tensor *t = elmi_gguf_tensor_at(f, i);
        size_t at = (size_t)((const uint8_t *)t->name.ptr - b);
        char name[64];
        snprintf(name, sizeof name, "trunc_tensor%llu", (unsigned long long)i);
        check_bytes(name, b, at - 8, TRUNC_WORDS);
        snprintf(name, sizeof name, "trunc_tensor%llu_dims", (unsigned long long)i);
        check_bytes(name, b, at + t->name.len + 6, TRUNC_WORDS);
    }
    elmi_gguf_close(f);
    free(b);
}

Test(hostile, truncated_padding_and_data) {
    size_t n, infos_end, data_start;
    uint8_t *b = model_bytes(&n);
    cr_assert(tiny_layout(b, n, &infos_end, &data_start));
    if (data_start > infos_end) check_bytes("trunc_padding", b, infos_end + 1 < data_start ?
                                            infos_end + 1 : infos_end, TRUNC_WORDS);
    check_bytes("trunc_data_start", b, data_start, TRUNC_WORDS);
    check_bytes("trunc_data_mid", b, data_start + (n - data_start) / 2, TRUNC_WORDS);
    check_bytes("trunc_data_end", b, n - 64, TRUNC_WORDS);
    free(b);
}

/* ------------------------------------------------------------ counts and lengths */

Test(hostile, huge_counts) {
    size_t n;
    uint8_t *b = model_bytes(&n);
    uint8_t *c = malloc(n);
    memcpy(c, b, n);
    tiny_put_u64(c, 16, 1ull << 63);
    check_bytes("count_kv", c, n, WORDS("key-value count"));
    memcpy(c, b, n);
    tiny_put_u64(c, 8, 1ull << 63);
    check_bytes("count_tensors", c, n, WORDS("tensor count"));
    tiny_kv_pos p;
    cr_assert(tiny_find_kv(b, n, "tokenizer.ggml.tokens", &p));
    memcpy(c, b, n);
    tiny_put_u64(c, p.value + 4, 1ull << 63);
    check_bytes("count_tokens", c, n, WORDS("array count"));
    cr_assert(tiny_find_kv(b, n, "tokenizer.ggml.scores", &p));
    memcpy(c, b, n);
    tiny_put_u64(c, p.value + 4, 1ull << 63);
    check_bytes("count_scores", c, n, WORDS("array of"));
    free(c);
    free(b);
}

Test(hostile, huge_strings) {
    size_t n;
    uint8_t *b = model_bytes(&n);
    uint8_t *c = malloc(n);
    tiny_kv_pos p;
    cr_assert(tiny_find_kv(b, n, "general.name", &p));
    memcpy(c, b, n);
    tiny_put_u64(c, p.start, 1ull << 62);
    check_bytes("strlen_key", c, n, WORDS("key length"));
    memcpy(c, b, n);
    tiny_put_u64(c, p.value, 1ull << 62);
    check_bytes("strlen_value", c, n, WORDS("string value length"));
    cr_assert(tiny_find_kv(b, n, "tokenizer.ggml.tokens", &p));
    memcpy(c, b, n);
    tiny_put_u64(c, p.value + 12, 1ull << 62);
    check_bytes("strlen_token", c, n, WORDS("string element length"));
    tiny_tensor_pos t;
    cr_assert(tiny_find_tensor(b, n, "output_norm.weight", &t));
    memcpy(c, b, n);
    tiny_put_u64(c, t.start, 1ull << 62);
    check_bytes("strlen_tensor_name", c, n, WORDS("name length"));
    free(c);
    free(b);
}

/* ------------------------------------------------------------ metadata */

Test(hostile, vocab_array_types) {
    gguf_writer *w = model();
    uint8_t scores[300] = {0};
    elmi_gguf_set_arr_data(w, "tokenizer.ggml.scores", GGUF_TYPE_UINT8, scores, 300);
    check_writer("scores_uint8", w, WORDS("tokenizer.ggml.scores"));
    w = model();
    const char *types[300];
    for (int i = 0; i < 300; i++) types[i] = "1";
    elmi_gguf_set_arr_str(w, "tokenizer.ggml.token_type", types, 300);
    check_writer("token_type_string", w, WORDS("tokenizer.ggml.token_type"));
}

Test(hostile, block_count_100000) {
    gguf_writer *w = model();
    elmi_gguf_set_u32(w, "llama.block_count", 100000);
    check_writer("block_count", w, WORDS("block_count", "layer", "blk."));
}

Test(hostile, head_counts) {
    gguf_writer *w = model();
    elmi_gguf_set_u32(w, "llama.attention.head_count_kv", 3);
    check_writer("head_count_kv_3", w, WORDS("head_count"));
    w = model();
    elmi_gguf_set_u32(w, "llama.attention.head_count", 0);
    check_writer("head_count_0", w, WORDS("head_count"));
}

/* ------------------------------------------------------------ tensors */

Test(hostile, wrong_and_missing_tensors) {
    gguf_writer *w = model();
    float x[64 * 32] = {0};
    int64_t ne[2] = {64, 32};
    cr_assert_eq(elmi_gguf_add_tensor(w, "blk.0.attn_q.weight", QT_F32, 2, ne, x, sizeof x), ELM_OK);
    check_writer("attn_q_shape", w, WORDS("blk.0.attn_q.weight"));
    w = model();
    cr_assert(elmi_gguf_remove_tensor(w, "blk.1.ffn_down.weight"));
    check_writer("missing_ffn_down", w, WORDS("blk.1.ffn_down.weight"));
}

Test(hostile, dimension_overflow) {
    gguf_writer *w = model();
    int64_t ne[2] = {1ll << 32, 1ll << 32};
    elmi_gguf_add_tensor_raw(w, "blk.0.attn_q.weight", QT_F32, 2, ne, NULL, 64);
    check_writer("dims_overflow", w, WORDS("overflow"));
    w = model();
    int64_t bytes[2] = {1ll << 31, 1ll << 31};
    elmi_gguf_add_tensor_raw(w, "blk.0.attn_q.weight", QT_F32, 2, bytes, NULL, 64);
    check_writer("bytes_overflow", w, WORDS("overflow"));
}

Test(hostile, tensor_type_ids) {
    static const int ids[] = {77, 4, 5};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        gguf_writer *w = model();
        int64_t ne[2] = {64, 64};
        elmi_gguf_add_tensor_raw(w, "blk.0.attn_q.weight", ids[i], 2, ne, NULL, 64 * 64 * 4);
        char name[32];
        snprintf(name, sizeof name, "type_%d", ids[i]);
        check_writer(name, w, WORDS("type id"));
    }
}

Test(hostile, offsets) {
    size_t n;
    uint8_t *b = model_bytes(&n);
    uint8_t *c = malloc(n);
    tiny_tensor_pos t;
    cr_assert(tiny_find_tensor(b, n, "blk.0.attn_norm.weight", &t));
    uint64_t off;
    memcpy(&off, b + t.offset, 8);
    memcpy(c, b, n);
    tiny_put_u64(c, t.offset, off + 4);
    check_bytes("offset_misaligned", c, n, WORDS("alignment"));
    memcpy(c, b, n);
    tiny_put_u64(c, t.offset, ((uint64_t)n + 4096) / 32 * 32);
    check_bytes("offset_out_of_file", c, n, WORDS("data section"));
    memcpy(c, b, n);
    tiny_put_u64(c, t.offset, 0); /* onto token_embd */
    check_bytes("offset_overlap", c, n, WORDS("overlaps"));
    free(c);
    free(b);
}

/* ------------------------------------------------------------ alignment */

Test(hostile, alignment) {
    gguf_writer *w = model();
    elmi_gguf_set_u32(w, "general.alignment", 0);
    check_writer("align_0", w, WORDS("alignment 0"));
    w = model();
    elmi_gguf_set_u32(w, "general.alignment", 3);
    check_writer("align_3", w, WORDS("alignment 3"));
    w = model();
    elmi_gguf_set_str(w, "general.alignment", "32");
    check_writer("align_string", w, WORDS("alignment has type STRING"));
}

/* ------------------------------------------------------------ new architectures */

/* The tiny model of a shape from the synthetic writer (engine/synth.h), in
 * Q8_0 with a Q8_0 output (so tied where the shape is). */
static gguf_writer *arch_model(const char *shape) {
    elm_synth_params p = elm_synth_default_params();
    p.shape = shape;
    p.type = "Q8_0";
    p.output_type = "Q8_0";
    gguf_writer *w = elmi_gguf_writer_new();
    cr_assert_not_null(w);
    char err[512] = "";
    cr_assert_eq(elmi_synth_build(&p, w, err, sizeof err), ELM_OK, "%s: %s", shape, err);
    return w;
}

/* The model without `tensor`. */
static gguf_writer *dropped(const char *shape, const char *tensor) {
    gguf_writer *w = arch_model(shape);
    cr_assert(elmi_gguf_remove_tensor(w, tensor), "%s has no tensor %s", shape, tensor);
    return w;
}

/* The model with `tensor` replaced by zeros of `type` and shape (ne0, ne1),
 * ne1 = 0 for a vector. */
static gguf_writer *reshaped(const char *shape, const char *tensor, int type, int64_t ne0,
                             int64_t ne1) {
    gguf_writer *w = arch_model(shape);
    size_t row;
    cr_assert(elmi_qtype_row_bytes(type, ne0, &row));
    size_t n = row * (size_t)(ne1 ? ne1 : 1);
    void *zeros = calloc(1, n);
    int64_t ne[2] = {ne0, ne1};
    cr_assert_eq(elmi_gguf_add_tensor(w, tensor, type, ne1 ? 2 : 1, ne, zeros, n), ELM_OK);
    free(zeros);
    return w;
}

/* As check_writer, but the messages must name every word. */
static void check_writer_every(const char *name, gguf_writer *w, const char *const *words) {
    g_every = true;
    check_writer(name, w, words);
    g_every = false;
}

static const char *const TINY_SHAPES[] = {"tiny-qwen3", "tiny-gemma3", "tiny-phi3",
                                          "tiny-smollm3", "tiny-lfm2"};

/* The unmodified models load (and `edgelm info` reads them), so the
 * failures below are the files'. */
Test(hostile, new_arch_models_load) {
    for (size_t i = 0; i < sizeof TINY_SHAPES / sizeof *TINY_SHAPES; i++) {
        gguf_writer *w = arch_model(TINY_SHAPES[i]);
        size_t n;
        uint8_t *buf = tiny_serialize(w, &n);
        elmi_gguf_writer_free(w);
        char path[1024];
        snprintf(path, sizeof path, "%s/valid-%s.gguf", test_tmp_dir(), TINY_SHAPES[i]);
        cr_assert_eq(tiny_write_bytes(path, buf, n), 0);
        free(buf);
        elm_model *m = NULL;
        char err[1024] = "";
        cr_assert_eq(elm_model_load(path, NULL, &m, err, sizeof err), ELM_OK, "%s", err);
        elm_model_free(m);
        const char *argv[] = {test_cli(), "info", "-m", path, NULL};
        char *out = NULL, *e = NULL;
        int rc = test_run(argv, NULL, 0, &out, &e);
        cr_assert_eq(rc, 0, "edgelm info on %s exited %d: %s", path, rc, e ? e : "");
        free(out);
        free(e);
        remove(path);
    }
}

/* tiny-qwen3: head size 32 (not 64 / 4); tiny-gemma3: head size 32;
 * tiny-phi3: head size 16, 12 rotated, qkv rows 64 + 2 * 32, ffn_up 2 * 128
 * rows, LongRoPE factors of 6; tiny-lfm2: convolution layers 0 and 2, L = 3. */
Test(hostile, new_arch_missing_tensors) {
    check_writer("qwen3_no_q_norm", dropped("tiny-qwen3", "blk.1.attn_q_norm.weight"),
                 WORDS("blk.1.attn_q_norm.weight"));
    check_writer("gemma3_no_post_ffw_norm", dropped("tiny-gemma3", "blk.4.post_ffw_norm.weight"),
                 WORDS("blk.4.post_ffw_norm.weight"));
    check_writer("gemma3_no_post_attn_norm",
                 dropped("tiny-gemma3", "blk.0.post_attention_norm.weight"),
                 WORDS("blk.0.post_attention_norm.weight"));
    check_writer("phi3_no_qkv", dropped("tiny-phi3", "blk.1.attn_qkv.weight"),
                 WORDS("blk.1.attn_qkv.weight"));
    check_writer("phi3_no_rope_short", dropped("tiny-phi3", "rope_factors_short.weight"),
                 WORDS("rope_factors_short.weight"));
    check_writer("phi3_no_rope_long", dropped("tiny-phi3", "rope_factors_long.weight"),
                 WORDS("rope_factors_long.weight"));
    check_writer("smollm3_no_ffn_gate", dropped("tiny-smollm3", "blk.3.ffn_gate.weight"),
                 WORDS("blk.3.ffn_gate.weight"));
    check_writer("lfm2_no_conv", dropped("tiny-lfm2", "blk.2.shortconv.conv.weight"),
                 WORDS("blk.2.shortconv.conv.weight"));
    check_writer("lfm2_no_in_proj", dropped("tiny-lfm2", "blk.0.shortconv.in_proj.weight"),
                 WORDS("blk.0.shortconv.in_proj.weight"));
    check_writer("lfm2_no_final_norm", dropped("tiny-lfm2", "token_embd_norm.weight"),
                 WORDS("token_embd_norm.weight"));
    check_writer("lfm2_no_k_norm", dropped("tiny-lfm2", "blk.3.attn_k_norm.weight"),
                 WORDS("blk.3.attn_k_norm.weight"));
}

/* A tensor replaced by one of the wrong shape or type. */
typedef struct misshape {
    const char *name, *shape, *tensor;
    int type;
    int64_t ne0, ne1;
    bool every; /* the message must also say "F32" */
} misshape;

static const misshape MISSHAPED[] = {
    {"phi3_qkv_rows", "tiny-phi3", "blk.0.attn_qkv.weight", QT_Q8_0, 64, 120, false},
    {"phi3_ffn_up_rows", "tiny-phi3", "blk.1.ffn_up.weight", QT_Q8_0, 64, 128, false},
    {"phi3_rope_long_len", "tiny-phi3", "rope_factors_long.weight", QT_F32, 8, 0, false},
    {"phi3_rope_short_f16", "tiny-phi3", "rope_factors_short.weight", QT_F16, 6, 0, true},
    {"lfm2_conv_L4", "tiny-lfm2", "blk.0.shortconv.conv.weight", QT_F32, 4, 64, false},
    {"lfm2_conv_f16", "tiny-lfm2", "blk.0.shortconv.conv.weight", QT_F16, 3, 64, true},
    {"lfm2_in_proj_rows", "tiny-lfm2", "blk.2.shortconv.in_proj.weight", QT_Q8_0, 64, 128, false},
    {"lfm2_final_norm_2d", "tiny-lfm2", "token_embd_norm.weight", QT_F32, 64, 2, false},
    /* 16 would be n_embd / n_head: the head size is 32 here. */
    {"qwen3_q_norm_len", "tiny-qwen3", "blk.0.attn_q_norm.weight", QT_F32, 16, 0, false},
    {"qwen3_attn_q_rows", "tiny-qwen3", "blk.0.attn_q.weight", QT_Q8_0, 64, 64, false},
    {"gemma3_post_norm_f16", "tiny-gemma3", "blk.2.post_ffw_norm.weight", QT_F16, 64, 0, true},
    {"gemma3_k_norm_q8", "tiny-gemma3", "blk.0.attn_k_norm.weight", QT_Q8_0, 32, 0, true},
};

Test(hostile, new_arch_misshaped_tensors) {
    for (size_t i = 0; i < sizeof MISSHAPED / sizeof *MISSHAPED; i++) {
        const misshape *c = &MISSHAPED[i];
        gguf_writer *w = reshaped(c->shape, c->tensor, c->type, c->ne0, c->ne1);
        if (c->every) check_writer_every(c->name, w, WORDS(c->tensor, "F32"));
        else check_writer(c->name, w, WORDS(c->tensor));
    }
}

Test(hostile, lfm2_head_count_kv) {
    const char *key = "lfm2.attention.head_count_kv";
    int32_t three[3] = {0, 2, 0};
    gguf_writer *w = arch_model("tiny-lfm2");
    elmi_gguf_set_arr_data(w, key, GGUF_TYPE_INT32, three, 3);
    check_writer("lfm2_kv_len", w, WORDS(key));
    float f[4] = {0, 2, 0, 2};
    w = arch_model("tiny-lfm2");
    elmi_gguf_set_arr_data(w, key, GGUF_TYPE_FLOAT32, f, 4);
    check_writer("lfm2_kv_float", w, WORDS(key));
    const char *strs[4] = {"0", "2", "0", "2"};
    w = arch_model("tiny-lfm2");
    elmi_gguf_set_arr_str(w, key, strs, 4);
    check_writer("lfm2_kv_string", w, WORDS(key));
    int32_t differ[4] = {0, 2, 0, 4};
    w = arch_model("tiny-lfm2");
    elmi_gguf_set_arr_data(w, key, GGUF_TYPE_INT32, differ, 4);
    check_writer("lfm2_kv_differ", w, WORDS("head_count_kv"));
    int32_t negative[4] = {0, -2, 0, 2};
    w = arch_model("tiny-lfm2");
    elmi_gguf_set_arr_data(w, key, GGUF_TYPE_INT32, negative, 4);
    check_writer("lfm2_kv_negative", w, WORDS(key));
    /* Attention declared on a layer that holds a convolution's tensors. */
    int32_t swapped[4] = {2, 2, 0, 2};
    w = arch_model("tiny-lfm2");
    elmi_gguf_set_arr_data(w, key, GGUF_TYPE_INT32, swapped, 4);
    check_writer("lfm2_kv_swapped", w, WORDS("blk.0.attn", "blk.2.attn"));
    /* Only lfm2 has layers without attention. */
    int32_t zero[4] = {2, 0, 2, 2};
    w = arch_model("tiny-qwen3");
    elmi_gguf_set_arr_data(w, "qwen3.attention.head_count_kv", GGUF_TYPE_INT32, zero, 2);
    check_writer("qwen3_kv_zero", w, WORDS("head_count_kv"));
}

Test(hostile, lfm2_l_cache) {
    gguf_writer *w = arch_model("tiny-lfm2");
    elmi_gguf_set_u32(w, "lfm2.shortconv.l_cache", 0);
    check_writer("lfm2_l_cache_0", w, WORDS("l_cache"));
    w = arch_model("tiny-lfm2");
    elmi_gguf_set_u32(w, "lfm2.shortconv.l_cache", 1000);
    check_writer("lfm2_l_cache_1000", w, WORDS("l_cache"));
    w = arch_model("tiny-lfm2");
    cr_assert(elmi_gguf_remove_key(w, "lfm2.shortconv.l_cache"));
    check_writer("lfm2_l_cache_missing", w, WORDS("l_cache"));
    /* A valid L that the tensors do not have. */
    w = arch_model("tiny-lfm2");
    elmi_gguf_set_u32(w, "lfm2.shortconv.l_cache", 4);
    check_writer("lfm2_l_cache_4", w, WORDS("shortconv.conv.weight"));
}

Test(hostile, gemma3_sliding_window) {
    gguf_writer *w = arch_model("tiny-gemma3");
    cr_assert(elmi_gguf_remove_key(w, "gemma3.attention.sliding_window"));
    check_writer("gemma3_no_window", w, WORDS("sliding_window"));
    w = arch_model("tiny-gemma3");
    elmi_gguf_set_str(w, "gemma3.attention.sliding_window", "8");
    check_writer("gemma3_window_string", w, WORDS("sliding_window"));
    w = arch_model("tiny-gemma3");
    elmi_gguf_set_u32(w, "gemma3.attention.sliding_window_pattern", 0);
    check_writer("gemma3_pattern_0", w, WORDS("sliding_window_pattern"));
}

Test(hostile, head_size_keys) {
    gguf_writer *w = arch_model("tiny-qwen3");
    elmi_gguf_set_u32(w, "qwen3.attention.value_length", 16);
    check_writer("qwen3_value_length", w, WORDS("value_length"));
    w = arch_model("tiny-qwen3");
    elmi_gguf_set_u32(w, "qwen3.attention.key_length", 2048);
    elmi_gguf_set_u32(w, "qwen3.attention.value_length", 2048);
    check_writer("qwen3_key_length_big", w, WORDS("key_length"));
    /* A head size the tensors do not have. */
    w = arch_model("tiny-qwen3");
    elmi_gguf_set_u32(w, "qwen3.attention.key_length", 16);
    elmi_gguf_set_u32(w, "qwen3.attention.value_length", 16);
    elmi_gguf_set_u32(w, "qwen3.rope.dimension_count", 16);
    check_writer("qwen3_key_length_16", w, WORDS("blk.0.attn_q.weight"));
    w = arch_model("tiny-phi3");
    elmi_gguf_set_u32(w, "phi3.rope.dimension_count", 18);
    check_writer("phi3_rot_18", w, WORDS("rope.dimension_count"));
    w = arch_model("tiny-phi3");
    elmi_gguf_set_u32(w, "phi3.rope.dimension_count", 11);
    check_writer("phi3_rot_odd", w, WORDS("rope.dimension_count"));
}

Test(hostile, unknown_architectures) {
    static const char *const archs[] = {"gemma4", "qwen3moe", "phi3small"};
    for (size_t i = 0; i < sizeof archs / sizeof *archs; i++) {
        gguf_writer *w = arch_model("tiny-qwen3");
        elmi_gguf_set_str(w, "general.architecture", archs[i]);
        char name[64];
        snprintf(name, sizeof name, "arch_%s", archs[i]);
        check_writer_every(name, w, WORDS(archs[i], "llama", "qwen3", "gemma3", "phi3", "smollm3",
                                          "lfm2"));
    }
}
