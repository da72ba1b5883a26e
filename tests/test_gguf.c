/*
 * test_gguf.c: the GGUF reader and writer. Real files written by other tools
 * (../shared) check the reader against the format; hand-assembled bytes check
 * the writer; round trips check that both agree; patched files check that
 * every malformed field is refused with a message naming it.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"
#include "quant/quant.h"
#include "support/paths.h"
#include "support/tiny_model.h"

/* ------------------------------------------------------------ helpers */

static gguf_file *open_shared(const char *rel) {
    char path[4096], err[512] = "";
    cr_assert(test_shared_path(rel, path, sizeof path), "missing shared file %s", path);
    gguf_file *f = NULL;
    elm_status s = elmi_gguf_open(path, &f, err, sizeof err);
    cr_assert_eq(s, ELM_OK, "%s: %s", rel, err);
    return f;
}

static gguf_file *open_ok(const void *buf, size_t size) {
    gguf_file *f = NULL;
    char err[512] = "";
    elm_status s = elmi_gguf_open_memory(buf, size, &f, err, sizeof err);
    cr_assert_eq(s, ELM_OK, "open failed: %s", err);
    return f;
}

static void expect_fail(const void *buf, size_t size, elm_status want, const char *substr) {
    gguf_file *f = (gguf_file *)1;
    char err[512] = "";
    elm_status s = elmi_gguf_open_memory(buf, size, &f, err, sizeof err);
    cr_assert_eq(s, want, "status %d, expected %d (message: %s)", s, want, err);
    cr_assert_null(f);
    cr_assert(strstr(err, substr), "message '%s' does not contain '%s'", err, substr);
}

static uint32_t u32_of(const gguf_file *f, const char *key) {
    uint32_t v = 0;
    char err[256];
    cr_assert_eq(elmi_gguf_get_u32(f, key, true, &v, err, sizeof err), ELM_OK, "%s", err);
    return v;
}

static gguf_str str_of(const gguf_file *f, const char *key) {
    gguf_str v = {0};
    char err[256];
    cr_assert_eq(elmi_gguf_get_str(f, key, true, &v, err, sizeof err), ELM_OK, "%s", err);
    return v;
}

static const gguf_kv *arr_of(const gguf_file *f, const char *key, gguf_type t) {
    const gguf_kv *kv = NULL;
    char err[256];
    cr_assert_eq(elmi_gguf_get_arr(f, key, true, t, &kv, err, sizeof err), ELM_OK, "%s", err);
    return kv;
}

static void assert_tensor(const gguf_file *f, const char *name, int type, uint32_t n_dims,
                          int64_t ne0, int64_t ne1, uint64_t nbytes) {
    const gguf_tensor *t = elmi_gguf_find_tensor(f, name);
    cr_assert_not_null(t, "tensor %s missing", name);
    cr_assert_eq(t->type, type, "%s type %d", name, t->type);
    cr_assert_eq(t->n_dims, n_dims, "%s n_dims %u", name, t->n_dims);
    cr_assert_eq(t->ne[0], ne0, "%s ne0", name);
    cr_assert_eq(t->ne[1], ne1, "%s ne1", name);
    cr_assert_eq(t->nbytes, nbytes, "%s nbytes %llu", name, (unsigned long long)t->nbytes);
}

static uint8_t *copy_of(const uint8_t *buf, size_t n) {
    uint8_t *c = malloc(n ? n : 1);
    cr_assert_not_null(c);
    memcpy(c, buf, n);
    return c;
}

static uint8_t *serialize(gguf_writer *w, size_t *size) {
    uint8_t *buf = tiny_serialize(w, size);
    cr_assert_not_null(buf);
    elmi_gguf_writer_free(w);
    return buf;
}

/* ------------------------------------------------------------ real files */

Test(gguf_real, stories_metadata) {
    gguf_file *f = open_shared("models/stories260K.gguf");
    /* README: dim 64, 5 layers, 8 heads, 4 KV heads, FFN 172, vocab 512, ctx 2048. */
    cr_assert_eq(elmi_gguf_version(f), 3);
    cr_assert_eq(elmi_gguf_alignment(f), 32);
    cr_assert_eq(elmi_gguf_n_tensors(f), 2 + 1 + 5 * 9);
    cr_assert_eq(u32_of(f, "llama.embedding_length"), 64);
    cr_assert_eq(u32_of(f, "llama.block_count"), 5);
    cr_assert_eq(u32_of(f, "llama.attention.head_count"), 8);
    cr_assert_eq(u32_of(f, "llama.attention.head_count_kv"), 4);
    cr_assert_eq(u32_of(f, "llama.feed_forward_length"), 172);
    cr_assert_eq(u32_of(f, "llama.context_length"), 2048);
    cr_assert(elmi_gguf_str_eq(str_of(f, "general.architecture"), "llama"));
    cr_assert(elmi_gguf_str_eq(str_of(f, "tokenizer.ggml.model"), "llama"));
    const gguf_kv *tok = arr_of(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING);
    cr_assert_eq(tok->arr_n, 512);
    cr_assert(elmi_gguf_str_eq(tok->arr_strs[0], "<unk>"));
    cr_assert(elmi_gguf_str_eq(tok->arr_strs[1], "<s>"));
    cr_assert(elmi_gguf_str_eq(tok->arr_strs[3], "<0x00>"));
    const gguf_kv *types = arr_of(f, "tokenizer.ggml.token_type", GGUF_TYPE_INT32);
    int32_t t1;
    memcpy(&t1, (const uint8_t *)types->arr_data + 4, 4);
    cr_assert_eq(t1, 3); /* <s> is a control token */
    float eps = 0;
    char err[256];
    cr_assert_eq(elmi_gguf_get_f32(f, "llama.attention.layer_norm_rms_epsilon", true, &eps, err,
                              sizeof err), ELM_OK);
    cr_assert_float_eq(eps, 1e-5f, 1e-9f);
    elmi_gguf_close(f);
}

Test(gguf_real, stories_tensors) {
    gguf_file *f = open_shared("models/stories260K.gguf");
    assert_tensor(f, "token_embd.weight", QT_F32, 2, 64, 512, 64 * 512 * 4);
    assert_tensor(f, "output_norm.weight", QT_F32, 1, 64, 1, 256);
    assert_tensor(f, "blk.4.attn_k.weight", QT_F32, 2, 64, 32, 64 * 32 * 4);
    assert_tensor(f, "blk.0.ffn_down.weight", QT_F32, 2, 172, 64, 172 * 64 * 4);
    cr_assert_null(elmi_gguf_find_tensor(f, "blk.5.attn_q.weight"));
    const gguf_tensor *t = elmi_gguf_find_tensor(f, "token_embd.weight");
    cr_assert_eq(elmi_gguf_data_offset(f) % 32, 0);
    cr_assert_eq((const uint8_t *)t->data,
                 (const uint8_t *)elmi_gguf_base(f) + elmi_gguf_data_offset(f) + t->offset);
    /* Every tensor lies inside the file, in its own bytes. */
    uint64_t total = 0;
    for (uint64_t i = 0; i < elmi_gguf_n_tensors(f); i++) {
        const gguf_tensor *x = elmi_gguf_tensor_at(f, i);
        cr_assert_leq(elmi_gguf_data_offset(f) + x->offset + x->nbytes, elmi_gguf_file_size(f));
        total += x->nbytes;
    }
    cr_assert_leq(total, elmi_gguf_file_size(f) - elmi_gguf_data_offset(f));
    elmi_gguf_close(f);
}

/* The F16 file holds the same weights: each value rounds to its F16 twin,
 * which checks every data pointer of both files. */
Test(gguf_real, f16_matches_f32) {
    gguf_file *a = open_shared("models/stories260K.gguf");
    gguf_file *b = open_shared("models/stories260K-f16.gguf");
    cr_assert_eq(elmi_gguf_n_tensors(a), elmi_gguf_n_tensors(b));
    int n_f16 = 0;
    for (uint64_t i = 0; i < elmi_gguf_n_tensors(a); i++) {
        const gguf_tensor *ta = elmi_gguf_tensor_at(a, i);
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)ta->name.len, ta->name.ptr);
        const gguf_tensor *tb = elmi_gguf_find_tensor(b, name);
        cr_assert_not_null(tb, "%s missing from the F16 file", name);
        cr_assert_eq(memcmp(ta->ne, tb->ne, sizeof ta->ne), 0, "%s shape", name);
        int64_t n = ta->ne[0] * ta->ne[1] * ta->ne[2] * ta->ne[3];
        const float *x = ta->data;
        for (int64_t j = 0; j < n; j++) {
            float y;
            if (tb->type == QT_F16) {
                elm_fp16 h;
                memcpy(&h, (const uint8_t *)tb->data + 2 * j, 2);
                y = elmi_fp16_to_f32(h);
            } else {
                memcpy(&y, (const uint8_t *)tb->data + 4 * j, 4);
            }
            float tol = fabsf(x[j]) * (1.0f / 1024) + 1e-7f;
            cr_assert(fabsf(x[j] - y) <= tol, "%s[%lld]: %g vs %g", name, (long long)j, x[j], y);
        }
        n_f16 += tb->type == QT_F16;
    }
    cr_assert_gt(n_f16, 30);
    elmi_gguf_close(a);
    elmi_gguf_close(b);
}

Test(gguf_real, quantized_models) {
    gguf_file *f = open_shared("models/synth-spm-a-Q4_0.gguf");
    /* README: output.weight is Q6_K, the rest Q4_0, norms F32; dim 256, vocab 32000. */
    assert_tensor(f, "output.weight", QT_Q6_K, 2, 256, 32000, 32000ull * 210);
    assert_tensor(f, "token_embd.weight", QT_Q4_0, 2, 256, 32000, 32000ull * 8 * 18);
    assert_tensor(f, "blk.3.ffn_down.weight", QT_Q4_0, 2, 768, 256, 256ull * 24 * 18);
    assert_tensor(f, "blk.3.ffn_norm.weight", QT_F32, 1, 256, 1, 1024);
    cr_assert_eq(u32_of(f, "llama.attention.head_count_kv"), 2);
    elmi_gguf_close(f);

    f = open_shared("models/synth-bpe-q-Q8_0.gguf");
    cr_assert(elmi_gguf_str_eq(str_of(f, "general.architecture"), "qwen2"));
    cr_assert_null(elmi_gguf_find_tensor(f, "output.weight")); /* tied */
    assert_tensor(f, "blk.0.attn_q.bias", QT_F32, 1, 256, 1, 1024);
    assert_tensor(f, "blk.0.attn_k.weight", QT_Q8_0, 2, 256, 128, 128ull * 8 * 34);
    cr_assert_eq(arr_of(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING)->arr_n, 50257);
    elmi_gguf_close(f);
}

Test(gguf_real, vocab_only_files) {
    gguf_file *f = open_shared("tokenizer/ggml-vocab-gpt-2.gguf");
    cr_assert_eq(elmi_gguf_n_tensors(f), 0);
    /* The aligned data section starts past the end: accepted. */
    cr_assert_gt(elmi_gguf_data_offset(f), elmi_gguf_file_size(f));
    const gguf_kv *tok = arr_of(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING);
    cr_assert_eq(tok->arr_n, 50257);
    cr_assert(elmi_gguf_str_eq(tok->arr_strs[0], "!"));
    cr_assert(elmi_gguf_str_eq(tok->arr_strs[50256], "<|endoftext|>"));
    const gguf_kv *merges = arr_of(f, "tokenizer.ggml.merges", GGUF_TYPE_STRING);
    cr_assert_eq(merges->arr_n, 50000);
    cr_assert(elmi_gguf_str_eq(merges->arr_strs[2], "h e"));
    cr_assert_eq(u32_of(f, "tokenizer.ggml.bos_token_id"), 50256);
    cr_assert(elmi_gguf_str_eq(str_of(f, "tokenizer.ggml.pre"), "gpt-2"));
    elmi_gguf_close(f);

    f = open_shared("tokenizer/ggml-vocab-llama-spm.gguf");
    cr_assert_eq(elmi_gguf_n_tensors(f), 0);
    cr_assert_eq(arr_of(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING)->arr_n, 32000);
    cr_assert_eq(arr_of(f, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32)->arr_n, 32000);
    elmi_gguf_close(f);
}

Test(gguf_real, open_errors) {
    gguf_file *f = NULL;
    char err[256] = "";
    cr_assert_eq(elmi_gguf_open("/nonexistent/x.gguf", &f, err, sizeof err), ELM_ERR_IO);
    cr_assert(strstr(err, "cannot open"), "%s", err);
    cr_assert_eq(elmi_gguf_open("/tmp", &f, err, sizeof err), ELM_ERR_IO);
    cr_assert(strstr(err, "not a regular file"), "%s", err);
    char path[512];
    snprintf(path, sizeof path, "%s/empty.gguf", test_tmp_dir());
    cr_assert_eq(tiny_write_bytes(path, "", 0), 0);
    cr_assert_eq(elmi_gguf_open(path, &f, err, sizeof err), ELM_ERR_FORMAT);
    cr_assert(strstr(err, "empty"), "%s", err);
    cr_assert_null(f);
    cr_assert_eq(elmi_gguf_open_memory(NULL, 4, &f, err, sizeof err), ELM_ERR_INVALID_ARG);
    elmi_gguf_close(NULL);
}

/* ------------------------------------------------------------ writer */

/* The bytes the format defines, assembled by hand. */
Test(gguf_writer, exact_bytes) {
    gguf_writer *w = elmi_gguf_writer_new();
    cr_assert_eq(elmi_gguf_set_u32(w, "a", 7), ELM_OK);
    float x[2] = {1.0f, -2.0f};
    int64_t ne[1] = {2};
    cr_assert_eq(elmi_gguf_add_tensor(w, "t", QT_F32, 1, ne, x, sizeof x), ELM_OK);
    size_t size;
    uint8_t *buf = serialize(w, &size);
    static const uint8_t want[] = {
        'G', 'G', 'U', 'F', 3, 0, 0, 0,               /* magic, version 3 */
        1, 0, 0, 0, 0, 0, 0, 0,                       /* 1 tensor */
        1, 0, 0, 0, 0, 0, 0, 0,                       /* 1 pair */
        1, 0, 0, 0, 0, 0, 0, 0, 'a', 4, 0, 0, 0,      /* key "a", UINT32 */
        7, 0, 0, 0,                                   /* 7 */
        1, 0, 0, 0, 0, 0, 0, 0, 't', 1, 0, 0, 0,      /* name "t", 1 dim */
        2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,           /* ne0 2, F32 */
        0, 0, 0, 0, 0, 0, 0, 0,                       /* offset 0; infos end at 74 */
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,              /* padding to 96 */
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0,              /* 1.0f, -2.0f */
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,           /* padding of the data to 32 */
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    };
    cr_assert_eq(size, sizeof want, "size %zu", size);
    cr_assert_eq(memcmp(buf, want, size), 0);
    free(buf);
}

typedef struct all_values {
    uint8_t u8;
    int8_t i8;
    uint16_t u16;
    int16_t i16;
    uint32_t u32;
    int32_t i32;
    float f32;
    uint64_t u64;
    int64_t i64;
    double f64;
} all_values;

static const all_values k_vals = {200, -100, 60000, -30000, 4000000000u, -2000000000,
                                  3.25f, 0x8000000000000005ull, -(1ll << 62), 3.141592653589793};

static void set_all(gguf_writer *w) {
    cr_assert_eq(elmi_gguf_set_val(w, "v.u8", GGUF_TYPE_UINT8, &k_vals.u8), ELM_OK);
    cr_assert_eq(elmi_gguf_set_val(w, "v.i8", GGUF_TYPE_INT8, &k_vals.i8), ELM_OK);
    cr_assert_eq(elmi_gguf_set_val(w, "v.u16", GGUF_TYPE_UINT16, &k_vals.u16), ELM_OK);
    cr_assert_eq(elmi_gguf_set_val(w, "v.i16", GGUF_TYPE_INT16, &k_vals.i16), ELM_OK);
    cr_assert_eq(elmi_gguf_set_u32(w, "v.u32", k_vals.u32), ELM_OK);
    cr_assert_eq(elmi_gguf_set_i32(w, "v.i32", k_vals.i32), ELM_OK);
    cr_assert_eq(elmi_gguf_set_f32(w, "v.f32", k_vals.f32), ELM_OK);
    cr_assert_eq(elmi_gguf_set_bool(w, "v.bool", true), ELM_OK);
    cr_assert_eq(elmi_gguf_set_str(w, "v.str", "h\xC3\xA9llo"), ELM_OK);
    cr_assert_eq(elmi_gguf_set_u64(w, "v.u64", k_vals.u64), ELM_OK);
    cr_assert_eq(elmi_gguf_set_val(w, "v.i64", GGUF_TYPE_INT64, &k_vals.i64), ELM_OK);
    cr_assert_eq(elmi_gguf_set_val(w, "v.f64", GGUF_TYPE_FLOAT64, &k_vals.f64), ELM_OK);
    cr_assert_eq(elmi_gguf_set_val(w, "v.str", GGUF_TYPE_STRING, "x"), ELM_ERR_INVALID_ARG);
}

static void check_all(const gguf_file *f) {
    const gguf_kv *kv = elmi_gguf_find(f, "v.u8");
    cr_assert(kv && kv->type == GGUF_TYPE_UINT8 && kv->v.u64 == k_vals.u8);
    kv = elmi_gguf_find(f, "v.i8");
    cr_assert(kv && kv->type == GGUF_TYPE_INT8 && kv->v.i64 == k_vals.i8);
    kv = elmi_gguf_find(f, "v.u16");
    cr_assert(kv && kv->type == GGUF_TYPE_UINT16 && kv->v.u64 == k_vals.u16);
    kv = elmi_gguf_find(f, "v.i16");
    cr_assert(kv && kv->type == GGUF_TYPE_INT16 && kv->v.i64 == k_vals.i16);
    kv = elmi_gguf_find(f, "v.u32");
    cr_assert(kv && kv->type == GGUF_TYPE_UINT32 && kv->v.u64 == k_vals.u32);
    kv = elmi_gguf_find(f, "v.i32");
    cr_assert(kv && kv->type == GGUF_TYPE_INT32 && kv->v.i64 == k_vals.i32);
    kv = elmi_gguf_find(f, "v.f32");
    cr_assert(kv && kv->type == GGUF_TYPE_FLOAT32 && kv->v.f64 == k_vals.f32);
    kv = elmi_gguf_find(f, "v.bool");
    cr_assert(kv && kv->type == GGUF_TYPE_BOOL && kv->v.b);
    kv = elmi_gguf_find(f, "v.str");
    cr_assert(kv && kv->type == GGUF_TYPE_STRING && elmi_gguf_str_eq(kv->v.str, "h\xC3\xA9llo"));
    kv = elmi_gguf_find(f, "v.u64");
    cr_assert(kv && kv->type == GGUF_TYPE_UINT64 && kv->v.u64 == k_vals.u64);
    kv = elmi_gguf_find(f, "v.i64");
    cr_assert(kv && kv->type == GGUF_TYPE_INT64 && kv->v.i64 == k_vals.i64);
    kv = elmi_gguf_find(f, "v.f64");
    cr_assert(kv && kv->type == GGUF_TYPE_FLOAT64 && kv->v.f64 == k_vals.f64);
}

/* One 3-element array of every fixed-size type, filled with bytes 7*i. */
static void set_arrays(gguf_writer *w) {
    for (int t = 0; t < GGUF_TYPE_COUNT; t++) {
        size_t esz = elmi_gguf_type_size((gguf_type)t);
        if (!esz) continue;
        uint8_t data[24];
        for (size_t i = 0; i < 3 * esz; i++) data[i] = (uint8_t)(7 * i);
        if (t == GGUF_TYPE_BOOL) data[0] = 1, data[1] = 0, data[2] = 1;
        char key[32];
        snprintf(key, sizeof key, "a.%s", elmi_gguf_type_name((gguf_type)t));
        cr_assert_eq(elmi_gguf_set_arr_data(w, key, (gguf_type)t, data, 3), ELM_OK);
    }
    const char *strs[] = {"", "two words", "\xE2\x96\x81x"};
    cr_assert_eq(elmi_gguf_set_arr_str(w, "a.STRING", strs, 3), ELM_OK);
    cr_assert_eq(elmi_gguf_set_arr_data(w, "a.empty", GGUF_TYPE_UINT32, NULL, 0), ELM_OK);
    cr_assert_eq(elmi_gguf_set_arr_str(w, "a.empty_str", NULL, 0), ELM_OK);
}

static void check_arrays(const gguf_file *f) {
    for (int t = 0; t < GGUF_TYPE_COUNT; t++) {
        size_t esz = elmi_gguf_type_size((gguf_type)t);
        if (!esz) continue;
        char key[32];
        snprintf(key, sizeof key, "a.%s", elmi_gguf_type_name((gguf_type)t));
        const gguf_kv *kv = arr_of(f, key, (gguf_type)t);
        cr_assert_eq(kv->arr_n, 3);
        const uint8_t *d = kv->arr_data;
        if (t == GGUF_TYPE_BOOL) {
            cr_assert(d[0] == 1 && d[1] == 0 && d[2] == 1);
            continue;
        }
        for (size_t i = 0; i < 3 * esz; i++) cr_assert_eq(d[i], (uint8_t)(7 * i), "%s", key);
    }
    const gguf_kv *s = arr_of(f, "a.STRING", GGUF_TYPE_STRING);
    cr_assert_eq(s->arr_n, 3);
    cr_assert(elmi_gguf_str_eq(s->arr_strs[0], ""));
    cr_assert(elmi_gguf_str_eq(s->arr_strs[1], "two words"));
    cr_assert(elmi_gguf_str_eq(s->arr_strs[2], "\xE2\x96\x81x"));
    cr_assert_eq(arr_of(f, "a.empty", GGUF_TYPE_UINT32)->arr_n, 0);
    cr_assert_eq(arr_of(f, "a.empty_str", GGUF_TYPE_STRING)->arr_n, 0);
}

typedef struct tspec {
    const char *name;
    int type;
    uint32_t n_dims;
    int64_t ne[4];
    size_t nbytes;
} tspec;

static const tspec k_tensors[] = {
    {"f32.2d", QT_F32, 2, {4, 3, 1, 1}, 48},
    {"f16.1d", QT_F16, 1, {33, 1, 1, 1}, 66},
    {"q8_0", QT_Q8_0, 2, {64, 2, 1, 1}, 4 * 34},
    {"q4_k", QT_Q4_K, 1, {256, 1, 1, 1}, 144},
    {"iq2_xxs", 16, 1, {256, 1, 1, 1}, 66}, /* known to the reader, not computable */
    {"f32.3d", QT_F32, 3, {2, 3, 4, 1}, 96},
    {"f32.4d", QT_F32, 4, {1, 2, 1, 3}, 24},
};
#define N_TENSORS (sizeof k_tensors / sizeof k_tensors[0])

static void add_tensors(gguf_writer *w) {
    for (size_t i = 0; i < N_TENSORS; i++) {
        const tspec *t = &k_tensors[i];
        uint8_t *d = malloc(t->nbytes);
        for (size_t j = 0; j < t->nbytes; j++) d[j] = (uint8_t)(i * 31 + j);
        cr_assert_eq(elmi_gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, d, t->nbytes),
                     ELM_OK, "%s", t->name);
        free(d);
    }
}

static void check_tensors(const gguf_file *f, uint32_t align) {
    cr_assert_eq(elmi_gguf_n_tensors(f), N_TENSORS);
    cr_assert_eq(elmi_gguf_data_offset(f) % align, 0);
    for (size_t i = 0; i < N_TENSORS; i++) {
        const tspec *s = &k_tensors[i];
        const gguf_tensor *t = elmi_gguf_tensor_at(f, i);
        cr_assert(elmi_gguf_str_eq(t->name, s->name));
        cr_assert_eq(elmi_gguf_find_tensor(f, s->name), t);
        cr_assert_eq(t->type, s->type);
        cr_assert_eq(t->n_dims, s->n_dims);
        cr_assert_eq(memcmp(t->ne, s->ne, sizeof t->ne), 0, "%s shape", s->name);
        cr_assert_eq(t->nbytes, s->nbytes);
        cr_assert_eq(t->offset % align, 0, "%s offset %llu", s->name,
                     (unsigned long long)t->offset);
        cr_assert_eq((uintptr_t)t->data % align, 0); /* the buffer is page-aligned */
        const uint8_t *d = t->data;
        for (size_t j = 0; j < s->nbytes; j++) cr_assert_eq(d[j], (uint8_t)(i * 31 + j));
    }
}

Test(gguf_writer, round_trip_alignment_64) {
    gguf_writer *w = elmi_gguf_writer_new();
    cr_assert_eq(elmi_gguf_set_u32(w, "general.alignment", 64), ELM_OK);
    set_all(w);
    set_arrays(w);
    add_tensors(w);
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/round_trip.gguf", test_tmp_dir());
    cr_assert_eq(elmi_gguf_write_file(w, path, err, sizeof err), ELM_OK, "%s", err);
    size_t size;
    uint8_t *mem = serialize(w, &size);

    size_t file_len;
    char *file = test_read_file(path, &file_len);
    cr_assert_not_null(file);
    cr_assert_eq(file_len, size);
    cr_assert_eq(memcmp(file, mem, size), 0, "file and memory serializations differ");
    free(file);
    free(mem);

    gguf_file *f = NULL;
    cr_assert_eq(elmi_gguf_open(path, &f, err, sizeof err), ELM_OK, "%s", err);
    cr_assert_eq(elmi_gguf_version(f), 3);
    cr_assert_eq(elmi_gguf_alignment(f), 64);
    cr_assert_eq(elmi_gguf_n_kv(f), 1 + 12 + 11 + 1 + 2);
    check_all(f);
    check_arrays(f);
    check_tensors(f, 64);
    elmi_gguf_close(f);
}

Test(gguf_writer, default_alignment_and_version_2) {
    gguf_writer *w = elmi_gguf_writer_new();
    add_tensors(w);
    size_t size;
    uint8_t *buf = serialize(w, &size);
    gguf_file *f = open_ok(buf, size);
    cr_assert_eq(elmi_gguf_alignment(f), 32);
    elmi_gguf_close(f);
    tiny_put_u32(buf, 4, 2); /* version 2 has the same layout */
    f = open_ok(buf, size);
    cr_assert_eq(elmi_gguf_version(f), 2);
    elmi_gguf_close(f);
    free(buf);
}

Test(gguf_writer, replace_and_remove) {
    gguf_writer *w = elmi_gguf_writer_new();
    float a[2] = {1, 2}, b[4] = {3, 4, 5, 6};
    int64_t ne2[1] = {2}, ne4[1] = {4};
    cr_assert_eq(elmi_gguf_set_u32(w, "k", 1), ELM_OK);
    cr_assert_eq(elmi_gguf_set_str(w, "gone", "x"), ELM_OK);
    cr_assert_eq(elmi_gguf_set_str(w, "k", "now a string"), ELM_OK);
    cr_assert_eq(elmi_gguf_add_tensor(w, "t", QT_F32, 1, ne2, a, sizeof a), ELM_OK);
    cr_assert_eq(elmi_gguf_add_tensor(w, "u", QT_F32, 1, ne2, a, sizeof a), ELM_OK);
    cr_assert_eq(elmi_gguf_add_tensor(w, "t", QT_F32, 1, ne4, b, sizeof b), ELM_OK);
    cr_assert(elmi_gguf_remove_key(w, "gone"));
    cr_assert_not(elmi_gguf_remove_key(w, "gone"));
    cr_assert(elmi_gguf_remove_tensor(w, "u"));
    cr_assert_not(elmi_gguf_remove_tensor(w, "u"));
    size_t size;
    uint8_t *buf = serialize(w, &size);
    gguf_file *f = open_ok(buf, size);
    cr_assert_eq(elmi_gguf_n_kv(f), 1);
    cr_assert(elmi_gguf_str_eq(str_of(f, "k"), "now a string"));
    cr_assert_eq(elmi_gguf_n_tensors(f), 1);
    const gguf_tensor *t = elmi_gguf_tensor_at(f, 0);
    cr_assert_eq(t->ne[0], 4);
    cr_assert_eq(memcmp(t->data, b, sizeof b), 0);
    elmi_gguf_close(f);
    free(buf);
}

Test(gguf_writer, rejects_bad_tensors) {
    gguf_writer *w = elmi_gguf_writer_new();
    uint8_t d[4096] = {0};
    int64_t ne[5] = {32, 2, 1, 1, 1};
    cr_assert_eq(elmi_gguf_add_tensor(w, "t", QT_F32, 2, ne, d, 255), ELM_ERR_INVALID_ARG);
    cr_assert_eq(elmi_gguf_add_tensor(w, "t", 77, 2, ne, d, 256), ELM_ERR_INVALID_ARG);
    cr_assert_eq(elmi_gguf_add_tensor(w, "t", 4, 2, ne, d, 256), ELM_ERR_INVALID_ARG);
    cr_assert_eq(elmi_gguf_add_tensor(w, "t", QT_F32, 0, ne, d, 0), ELM_ERR_INVALID_ARG);
    cr_assert_eq(elmi_gguf_add_tensor(w, "t", QT_F32, 5, ne, d, 256), ELM_ERR_INVALID_ARG);
    cr_assert_eq(elmi_gguf_add_tensor(w, "t", QT_Q4_K, 2, ne, d, 144), ELM_ERR_INVALID_ARG);
    cr_assert_eq(elmi_gguf_add_tensor(w, "", QT_F32, 2, ne, d, 256), ELM_ERR_INVALID_ARG);
    int64_t neg[2] = {-32, -2};
    cr_assert_eq(elmi_gguf_add_tensor(w, "t", QT_F32, 2, neg, d, 256), ELM_ERR_INVALID_ARG);
    cr_assert_eq(elmi_gguf_add_tensor(w, "t", QT_F32, 2, ne, d, 256), ELM_OK);
    elmi_gguf_writer_free(w);
}

Test(gguf_writer, write_file_error) {
    gguf_writer *w = elmi_gguf_writer_new();
    char err[256] = "";
    cr_assert_eq(elmi_gguf_write_file(w, "/nonexistent/dir/x.gguf", err, sizeof err), ELM_ERR_IO);
    cr_assert(strstr(err, "cannot create"), "%s", err);
    elmi_gguf_writer_free(w);
}

/* ------------------------------------------------------------ getters */

static uint8_t *getter_file(size_t *size) {
    gguf_writer *w = elmi_gguf_writer_new();
    set_all(w);
    set_arrays(w);
    int64_t neg = -5, big = 5000000000ll;
    elmi_gguf_set_val(w, "neg", GGUF_TYPE_INT64, &neg);
    elmi_gguf_set_val(w, "big", GGUF_TYPE_INT64, &big);
    double huge = 1e300;
    elmi_gguf_set_val(w, "huge", GGUF_TYPE_FLOAT64, &huge);
    return serialize(w, size);
}

Test(gguf_getters, integers) {
    size_t size;
    uint8_t *buf = getter_file(&size);
    gguf_file *f = open_ok(buf, size);
    char err[256];
    uint32_t u = 0;
    int32_t i = 0;
    cr_assert_eq(elmi_gguf_get_u32(f, "v.u8", true, &u, err, sizeof err), ELM_OK);
    cr_assert_eq(u, 200);
    cr_assert_eq(elmi_gguf_get_u32(f, "v.u32", true, &u, err, sizeof err), ELM_OK);
    cr_assert_eq(u, 4000000000u);
    cr_assert_eq(elmi_gguf_get_i32(f, "v.i16", true, &i, err, sizeof err), ELM_OK);
    cr_assert_eq(i, -30000);
    cr_assert_eq(elmi_gguf_get_i32(f, "v.u16", true, &i, err, sizeof err), ELM_OK);
    cr_assert_eq(i, 60000);
    u = 9;
    cr_assert_eq(elmi_gguf_get_u32(f, "neg", true, &u, err, sizeof err), ELM_ERR_FORMAT);
    cr_assert(strstr(err, "'neg'") && strstr(err, "does not fit"), "%s", err);
    cr_assert_eq(u, 9);
    cr_assert_eq(elmi_gguf_get_u32(f, "big", true, &u, err, sizeof err), ELM_ERR_FORMAT);
    cr_assert_eq(elmi_gguf_get_i32(f, "v.u32", true, &i, err, sizeof err), ELM_ERR_FORMAT);
    cr_assert_eq(elmi_gguf_get_i32(f, "v.i64", true, &i, err, sizeof err), ELM_ERR_FORMAT);
    cr_assert_eq(elmi_gguf_get_u32(f, "v.str", true, &u, err, sizeof err), ELM_ERR_FORMAT);
    cr_assert(strstr(err, "'v.str'") && strstr(err, "STRING"), "%s", err);
    cr_assert_eq(elmi_gguf_get_u32(f, "v.f32", true, &u, err, sizeof err), ELM_ERR_FORMAT);
    cr_assert_eq(elmi_gguf_get_u32(f, "v.bool", true, &u, err, sizeof err), ELM_ERR_FORMAT);
    cr_assert_eq(elmi_gguf_get_u32(f, "absent", true, &u, err, sizeof err), ELM_ERR_FORMAT);
    cr_assert(strstr(err, "'absent'") && strstr(err, "missing"), "%s", err);
    u = 123;
    cr_assert_eq(elmi_gguf_get_u32(f, "absent", false, &u, err, sizeof err), ELM_OK);
    cr_assert_eq(u, 123);
    elmi_gguf_close(f);
    free(buf);
}

Test(gguf_getters, others) {
    size_t size;
    uint8_t *buf = getter_file(&size);
    gguf_file *f = open_ok(buf, size);
    char err[256];
    float x = 0;
    cr_assert_eq(elmi_gguf_get_f32(f, "v.f32", true, &x, err, sizeof err), ELM_OK);
    cr_assert_eq(x, 3.25f);
    cr_assert_eq(elmi_gguf_get_f32(f, "v.f64", true, &x, err, sizeof err), ELM_OK);
    cr_assert_float_eq(x, 3.14159265f, 1e-6f);
    cr_assert_eq(elmi_gguf_get_f32(f, "huge", true, &x, err, sizeof err), ELM_ERR_FORMAT);
    cr_assert_eq(elmi_gguf_get_f32(f, "v.u32", true, &x, err, sizeof err), ELM_ERR_FORMAT);
    bool b = false;
    cr_assert_eq(elmi_gguf_get_bool(f, "v.bool", true, &b, err, sizeof err), ELM_OK);
    cr_assert(b);
    cr_assert_eq(elmi_gguf_get_bool(f, "v.u8", true, &b, err, sizeof err), ELM_ERR_FORMAT);
    gguf_str s = {0};
    cr_assert_eq(elmi_gguf_get_str(f, "v.u8", true, &s, err, sizeof err), ELM_ERR_FORMAT);
    cr_assert(strstr(err, "UINT8"), "%s", err);
    cr_assert_eq(elmi_gguf_get_str(f, "absent", false, &s, err, sizeof err), ELM_OK);
    cr_assert_null(s.ptr);
    const gguf_kv *kv = NULL;
    cr_assert_eq(elmi_gguf_get_arr(f, "a.UINT8", true, GGUF_TYPE_FLOAT32, &kv, err, sizeof err),
                 ELM_ERR_FORMAT);
    cr_assert(strstr(err, "array of UINT8") && strstr(err, "FLOAT32"), "%s", err);
    cr_assert_eq(elmi_gguf_get_arr(f, "v.u8", true, GGUF_TYPE_UINT8, &kv, err, sizeof err),
                 ELM_ERR_FORMAT);
    cr_assert_null(kv);
    cr_assert_eq(elmi_gguf_get_arr(f, "a.STRING", true, GGUF_TYPE_STRING, &kv, err, sizeof err),
                 ELM_OK);
    cr_assert_not_null(kv);
    cr_assert_str_eq(elmi_gguf_type_name(GGUF_TYPE_FLOAT64), "FLOAT64");
    cr_assert_str_eq(elmi_gguf_type_name((gguf_type)99), "unknown");
    elmi_gguf_close(f);
    free(buf);
}

/* ------------------------------------------------------------ hostile files */

/* A small valid file: every section present, three tensors. */
static uint8_t *small_file(size_t *size) {
    gguf_writer *w = elmi_gguf_writer_new();
    elmi_gguf_set_str(w, "general.architecture", "llama");
    elmi_gguf_set_u32(w, "answer", 42);
    elmi_gguf_set_bool(w, "flag", true);
    const char *toks[] = {"a", "bb", "ccc"};
    elmi_gguf_set_arr_str(w, "tokens", toks, 3);
    float sc[3] = {1, 2, 3};
    elmi_gguf_set_arr_data(w, "scores", GGUF_TYPE_FLOAT32, sc, 3);
    float t0[16] = {0};
    uint8_t t1[68] = {0};
    int64_t ne0[2] = {8, 2}, ne1[1] = {64}, ne2[1] = {4};
    elmi_gguf_add_tensor(w, "t0", QT_F32, 2, ne0, t0, sizeof t0);
    elmi_gguf_add_tensor(w, "t1", QT_Q8_0, 1, ne1, t1, sizeof t1);
    elmi_gguf_add_tensor(w, "t2", QT_F32, 1, ne2, t0, 16);
    return serialize(w, size);
}

static void kv_at(const uint8_t *buf, size_t size, const char *key, tiny_kv_pos *p) {
    cr_assert(tiny_find_kv(buf, size, key, p), "no key %s", key);
}

static void tensor_at(const uint8_t *buf, size_t size, const char *name, tiny_tensor_pos *p) {
    cr_assert(tiny_find_tensor(buf, size, name, p), "no tensor %s", name);
}

Test(gguf_hostile, header) {
    size_t n;
    uint8_t *base = small_file(&n);
    uint8_t *b = copy_of(base, n);
    b[0] = 'X';
    expect_fail(b, n, ELM_ERR_FORMAT, "not a GGUF file");
    memcpy(b, base, n);
    tiny_put_u32(b, 4, 1);
    expect_fail(b, n, ELM_ERR_FORMAT, "version 1 is not supported");
    tiny_put_u32(b, 4, 0x03000000u);
    expect_fail(b, n, ELM_ERR_FORMAT, "big-endian");
    tiny_put_u32(b, 4, 0x02000000u);
    expect_fail(b, n, ELM_ERR_FORMAT, "big-endian");
    tiny_put_u32(b, 4, 4);
    expect_fail(b, n, ELM_ERR_FORMAT, "unsupported GGUF version 4");
    expect_fail(b, 3, ELM_ERR_FORMAT, "too short");
    free(b);
    free(base);
}

Test(gguf_hostile, huge_counts) {
    size_t n;
    uint8_t *base = small_file(&n);
    uint8_t *b = copy_of(base, n);
    tiny_put_u64(b, 16, 1ull << 63);
    expect_fail(b, n, ELM_ERR_FORMAT, "key-value count 9223372036854775808 is impossible");
    memcpy(b, base, n);
    tiny_put_u64(b, 8, 1ull << 63);
    expect_fail(b, n, ELM_ERR_FORMAT, "tensor count 9223372036854775808 is impossible");
    memcpy(b, base, n);
    tiny_put_u64(b, 8, UINT64_MAX);
    tiny_put_u64(b, 16, UINT64_MAX);
    expect_fail(b, n, ELM_ERR_FORMAT, "is impossible");

    tiny_kv_pos p;
    memcpy(b, base, n);
    kv_at(base, n, "tokens", &p);
    tiny_put_u64(b, p.value + 4, 1ull << 63);
    expect_fail(b, n, ELM_ERR_FORMAT, "kv 3 'tokens': array count 9223372036854775808");
    memcpy(b, base, n);
    kv_at(base, n, "scores", &p);
    tiny_put_u64(b, p.value + 4, 1ull << 63);
    expect_fail(b, n, ELM_ERR_FORMAT, "kv 4 'scores': array of 9223372036854775808 FLOAT32 values does not fit");
    tiny_put_u64(b, p.value + 4, (1ull << 62) + 1); /* * 4 wraps to 4 */
    expect_fail(b, n, ELM_ERR_FORMAT, "kv 4 'scores': array of");
    free(b);
    free(base);
}

Test(gguf_hostile, huge_strings) {
    size_t n;
    uint8_t *base = small_file(&n);
    uint8_t *b = copy_of(base, n);
    tiny_kv_pos p;
    kv_at(base, n, "answer", &p);
    tiny_put_u64(b, p.start, 1ull << 62);
    expect_fail(b, n, ELM_ERR_FORMAT, "kv 1: the key length 4611686018427387904 exceeds");
    memcpy(b, base, n);
    kv_at(base, n, "general.architecture", &p);
    tiny_put_u64(b, p.value, 1ull << 62);
    expect_fail(b, n, ELM_ERR_FORMAT, "kv 0 'general.architecture': the string value length");
    memcpy(b, base, n);
    kv_at(base, n, "tokens", &p);
    tiny_put_u64(b, p.value + 12 + 9, 1ull << 62); /* the second element, after "a" */
    expect_fail(b, n, ELM_ERR_FORMAT, "(element 1 of 3)");
    tiny_put_u64(b, p.value + 12 + 9, UINT64_MAX);
    expect_fail(b, n, ELM_ERR_FORMAT, "string element length 18446744073709551615");
    memcpy(b, base, n);
    tiny_tensor_pos t;
    tensor_at(base, n, "t1", &t);
    tiny_put_u64(b, t.start, 1ull << 62);
    expect_fail(b, n, ELM_ERR_FORMAT, "tensor 1: the name length 4611686018427387904");
    free(b);
    free(base);
}

Test(gguf_hostile, value_types) {
    size_t n;
    uint8_t *base = small_file(&n);
    uint8_t *b = copy_of(base, n);
    tiny_kv_pos p;
    kv_at(base, n, "answer", &p);
    tiny_put_u32(b, p.type, 13);
    expect_fail(b, n, ELM_ERR_FORMAT, "kv 1 'answer': unknown value type 13");
    memcpy(b, base, n);
    kv_at(base, n, "scores", &p);
    tiny_put_u32(b, p.value, GGUF_TYPE_ARRAY);
    expect_fail(b, n, ELM_ERR_FORMAT, "kv 4 'scores': nested arrays");
    tiny_put_u32(b, p.value, 99);
    expect_fail(b, n, ELM_ERR_FORMAT, "unknown array element type 99");
    memcpy(b, base, n);
    kv_at(base, n, "flag", &p);
    b[p.value] = 2;
    expect_fail(b, n, ELM_ERR_FORMAT, "kv 2 'flag': bool value 2");
    free(b);
    free(base);
}

/* Arrays of the wrong element type are valid GGUF; the typed getter refuses them. */
Test(gguf_hostile, array_element_types) {
    gguf_writer *w = elmi_gguf_writer_new();
    uint8_t sc[3] = {1, 2, 3};
    const char *tt[3] = {"1", "2", "3"};
    elmi_gguf_set_arr_data(w, "tokenizer.ggml.scores", GGUF_TYPE_UINT8, sc, 3);
    elmi_gguf_set_arr_str(w, "tokenizer.ggml.token_type", tt, 3);
    size_t n;
    uint8_t *b = serialize(w, &n);
    gguf_file *f = open_ok(b, n);
    const gguf_kv *kv = NULL;
    char err[256];
    cr_assert_eq(elmi_gguf_get_arr(f, "tokenizer.ggml.scores", true, GGUF_TYPE_FLOAT32, &kv, err,
                              sizeof err), ELM_ERR_FORMAT);
    cr_assert(strstr(err, "'tokenizer.ggml.scores' is an array of UINT8, expected an array of "
                          "FLOAT32"), "%s", err);
    cr_assert_eq(elmi_gguf_get_arr(f, "tokenizer.ggml.token_type", true, GGUF_TYPE_INT32, &kv, err,
                              sizeof err), ELM_ERR_FORMAT);
    cr_assert(strstr(err, "array of STRING"), "%s", err);
    cr_assert_null(kv);
    elmi_gguf_close(f);
    free(b);
}

Test(gguf_hostile, empty_and_duplicate_names) {
    gguf_writer *w = elmi_gguf_writer_new();
    elmi_gguf_set_u32(w, "", 1);
    size_t n;
    uint8_t *b = serialize(w, &n);
    expect_fail(b, n, ELM_ERR_FORMAT, "kv 0: the key is empty");
    free(b);

    w = elmi_gguf_writer_new();
    float x[4] = {0};
    int64_t ne[1] = {4};
    elmi_gguf_add_tensor_raw(w, "", QT_F32, 1, ne, x, sizeof x);
    b = serialize(w, &n);
    expect_fail(b, n, ELM_ERR_FORMAT, "tensor 0: the name is empty");
    free(b);

    w = elmi_gguf_writer_new();
    elmi_gguf_set_u32(w, "aaa", 1);
    elmi_gguf_set_u32(w, "zz", 2);
    elmi_gguf_set_u32(w, "aab", 3);
    elmi_gguf_add_tensor(w, "t0", QT_F32, 1, ne, x, sizeof x);
    elmi_gguf_add_tensor(w, "t1", QT_F32, 1, ne, x, sizeof x);
    uint8_t *base = serialize(w, &n);
    tiny_kv_pos p;
    kv_at(base, n, "aab", &p);
    b = copy_of(base, n);
    b[p.type - 1] = 'a';
    expect_fail(b, n, ELM_ERR_FORMAT, "kv 2 'aaa': duplicate key (also kv 0)");
    memcpy(b, base, n);
    tiny_tensor_pos t;
    tensor_at(base, n, "t1", &t);
    b[t.n_dims - 1] = '0';
    expect_fail(b, n, ELM_ERR_FORMAT, "tensor 1 't0': duplicate tensor name (also tensor 0)");
    free(b);
    free(base);
}

/* A file with one raw tensor "bad" after a valid one. */
static uint8_t *raw_tensor_file(int type, uint32_t n_dims, const int64_t *ne, size_t nbytes,
                                size_t *size) {
    gguf_writer *w = elmi_gguf_writer_new();
    float x[8] = {0};
    int64_t ne8[1] = {8};
    elmi_gguf_add_tensor(w, "good", QT_F32, 1, ne8, x, sizeof x);
    cr_assert_eq(elmi_gguf_add_tensor_raw(w, "bad", type, n_dims, ne, NULL, nbytes), ELM_OK);
    return serialize(w, size);
}

static void expect_raw_fail(int type, uint32_t n_dims, const int64_t *ne, size_t nbytes,
                            const char *substr) {
    size_t n;
    uint8_t *b = raw_tensor_file(type, n_dims, ne, nbytes, &n);
    expect_fail(b, n, ELM_ERR_FORMAT, substr);
    free(b);
}

Test(gguf_hostile, tensor_shapes) {
    int64_t ne[4] = {4, 4, 4, 4};
    expect_raw_fail(QT_F32, 0, ne, 16, "tensor 1 'bad': n_dims 0 is outside 1..4");
    int64_t zero[2] = {4, 0};
    expect_raw_fail(QT_F32, 2, zero, 0, "tensor 1 'bad': ne[1] is 0");
    int64_t neg[2] = {4, -1};
    expect_raw_fail(QT_F32, 2, neg, 16, "ne[1] = 18446744073709551615 is too large");
    int64_t prod[3] = {1ll << 32, 1ll << 32, 1};
    expect_raw_fail(QT_F32, 3, prod, 16, "the element count overflows 64 bits at ne[1]");
    int64_t prod4[4] = {1ll << 20, 1ll << 20, 1ll << 20, 1ll << 20};
    expect_raw_fail(QT_F32, 4, prod4, 16, "the element count overflows");
    int64_t bytes[2] = {1ll << 31, 1ll << 31};
    expect_raw_fail(QT_F32, 2, bytes, 16, "the byte size overflows");
    int64_t block[1] = {33};
    expect_raw_fail(QT_Q8_0, 1, block, 34, "ne[0] = 33 is not a multiple of the block size 32");
    /* n_dims 5: write 4 and patch. */
    size_t n;
    uint8_t *b = raw_tensor_file(QT_F32, 4, ne, 1024, &n);
    tiny_tensor_pos t;
    tensor_at(b, n, "bad", &t);
    tiny_put_u32(b, t.n_dims, 5);
    expect_fail(b, n, ELM_ERR_FORMAT, "n_dims 5 is outside 1..4");
    free(b);
}

Test(gguf_hostile, tensor_types) {
    int64_t ne[1] = {256};
    static const int refused[] = {77, 4, 5, 31, 32, 33, 36, 37, 38, 40, 1000, -1};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        char want[64];
        snprintf(want, sizeof want, "unknown or removed tensor type id %d", refused[i]);
        expect_raw_fail(refused[i], 1, ne, 1024, want);
    }
    /* IQ2_XXS is known (the loader refuses it by name) but rows must be whole blocks. */
    size_t n;
    uint8_t *b = raw_tensor_file(16, 1, ne, 66, &n);
    gguf_file *f = open_ok(b, n);
    cr_assert_eq(elmi_gguf_find_tensor(f, "bad")->nbytes, 66);
    elmi_gguf_close(f);
    free(b);
    int64_t part[1] = {32};
    expect_raw_fail(16, 1, part, 66, "ne[0] = 32 is not a multiple of the block size 256");
}

Test(gguf_hostile, offsets) {
    size_t n;
    uint8_t *base = small_file(&n);
    uint8_t *b = copy_of(base, n);
    tiny_tensor_pos t0, t1;
    tensor_at(base, n, "t0", &t0);
    tensor_at(base, n, "t1", &t1);
    tiny_put_u64(b, t1.offset, 100);
    expect_fail(b, n, ELM_ERR_FORMAT,
                "tensor 1 't1': offset 100 is not a multiple of the alignment 32");
    tiny_put_u64(b, t1.offset, (n + 31) / 32 * 32);
    expect_fail(b, n, ELM_ERR_FORMAT, "tensor 1 't1': data at offset");
    tiny_put_u64(b, t1.offset, UINT64_MAX - 31);
    expect_fail(b, n, ELM_ERR_FORMAT, "ends past the data section");
    tiny_put_u64(b, t1.offset, 32); /* t0 is 64 bytes at 0 */
    expect_fail(b, n, ELM_ERR_FORMAT, "tensor 1 't1': data at offset 32 overlaps tensor 0 't0'");
    tiny_put_u64(b, t1.offset, 0);
    expect_fail(b, n, ELM_ERR_FORMAT, "overlaps");
    memcpy(b, base, n);
    elmi_gguf_close(open_ok(b, n));
    free(b);
    free(base);
}

static uint8_t *aligned_file(size_t *size, void (*set)(gguf_writer *)) {
    gguf_writer *w = elmi_gguf_writer_new();
    set(w);
    float x[4] = {0};
    int64_t ne[1] = {4};
    elmi_gguf_add_tensor(w, "t", QT_F32, 1, ne, x, sizeof x);
    return serialize(w, size);
}

static void align_0(gguf_writer *w) { elmi_gguf_set_u32(w, "general.alignment", 0); }
static void align_3(gguf_writer *w) { elmi_gguf_set_u32(w, "general.alignment", 3); }
static void align_str(gguf_writer *w) { elmi_gguf_set_str(w, "general.alignment", "32"); }
static void align_u64(gguf_writer *w) { elmi_gguf_set_u64(w, "general.alignment", 32); }
static void align_4k(gguf_writer *w) { elmi_gguf_set_u32(w, "general.alignment", 4096); }

Test(gguf_hostile, alignment) {
    size_t n;
    uint8_t *b = aligned_file(&n, align_0);
    expect_fail(b, n, ELM_ERR_FORMAT, "kv 0 'general.alignment': the alignment 0 is not a "
                                      "power of two");
    free(b);
    b = aligned_file(&n, align_3);
    expect_fail(b, n, ELM_ERR_FORMAT, "the alignment 3 is not a power of two");
    free(b);
    b = aligned_file(&n, align_str);
    expect_fail(b, n, ELM_ERR_FORMAT, "the alignment has type STRING; it must be UINT32");
    free(b);
    b = aligned_file(&n, align_u64);
    expect_fail(b, n, ELM_ERR_FORMAT, "the alignment has type UINT64");
    free(b);
    b = aligned_file(&n, align_4k);
    gguf_file *f = open_ok(b, n);
    cr_assert_eq(elmi_gguf_alignment(f), 4096);
    cr_assert_eq(elmi_gguf_data_offset(f), 4096);
    elmi_gguf_close(f);
    free(b);
}

/* Every prefix of a file is refused with a message, never read past. */
static void check_prefixes(const uint8_t *buf, size_t size, size_t from, size_t to, size_t step) {
    for (size_t len = from; len < to; len += step) {
        uint8_t *b = copy_of(buf, len); /* exactly len bytes, so ASan sees overreads */
        gguf_file *f = NULL;
        char err[512] = "";
        elm_status s = elmi_gguf_open_memory(b, len, &f, err, sizeof err);
        cr_assert_eq(s, ELM_ERR_FORMAT, "prefix %zu of %zu: status %d", len, size, s);
        cr_assert(strstr(err, "truncated") || strstr(err, "impossible") ||
                      strstr(err, "too short") || strstr(err, "exceeds") ||
                      strstr(err, "does not fit"),
                  "prefix %zu: message '%s'", len, err);
        free(b);
    }
}

/* The end of the last tensor's bytes: the padding after it is optional. */
static size_t content_end(const uint8_t *buf, size_t size) {
    gguf_file *f = open_ok(buf, size);
    size_t end = 0;
    for (uint64_t i = 0; i < elmi_gguf_n_tensors(f); i++) {
        const gguf_tensor *t = elmi_gguf_tensor_at(f, i);
        size_t e = (size_t)((const uint8_t *)t->data - buf) + t->nbytes;
        end = e > end ? e : end;
    }
    elmi_gguf_close(f);
    return end;
}

static void check_valid_prefixes(const uint8_t *buf, size_t from, size_t size) {
    for (size_t len = from; len <= size; len++) {
        uint8_t *b = copy_of(buf, len);
        elmi_gguf_close(open_ok(b, len));
        free(b);
    }
}

Test(gguf_hostile, every_prefix) {
    size_t n;
    uint8_t *b = small_file(&n);
    size_t end = content_end(b, n);
    cr_assert_lt(end, n);
    check_prefixes(b, n, 0, end, 1);
    check_valid_prefixes(b, end, n);
    free(b);
}

Test(gguf_hostile, tiny_model_prefixes) {
    tiny_model_opts o = tiny_model_default();
    o.n_vocab = 270;
    gguf_writer *w = tiny_model_build(&o);
    cr_assert_not_null(w);
    size_t n;
    uint8_t *b = serialize(w, &n);
    size_t infos_end, data_start;
    cr_assert(tiny_layout(b, n, &infos_end, &data_start));
    size_t end = content_end(b, n);
    check_prefixes(b, n, 0, data_start + 64, 1);
    check_prefixes(b, n, data_start + 64, end, 61);
    check_prefixes(b, n, end - 1, end, 1);
    check_valid_prefixes(b, end, n);
    free(b);
}

/* A vocabulary-only file may end before its (empty) aligned data section. */
Test(gguf_hostile, vocab_only_ends_early) {
    gguf_writer *w = elmi_gguf_writer_new();
    elmi_gguf_set_str(w, "k", "abc"); /* 24 + 8 + 1 + 4 + 8 + 3 = 48 bytes */
    elmi_gguf_set_u32(w, "general.alignment", 64);
    size_t n;
    uint8_t *b = serialize(w, &n);
    gguf_file *f = open_ok(b, n);
    cr_assert_eq(elmi_gguf_n_tensors(f), 0);
    cr_assert_gt(elmi_gguf_data_offset(f), n);
    elmi_gguf_close(f);
    /* With a tensor, the same early end is a truncation. */
    free(b);
    b = aligned_file(&n, align_4k);
    expect_fail(b, 4000, ELM_ERR_FORMAT, "past the end of the file");
    free(b);
}

/* Random corruption: whatever opens is walked completely under the sanitizers. */
Test(gguf_hostile, random_mutations) {
    tiny_model_opts o = tiny_model_default();
    o.n_vocab = 262;
    o.n_layer = 1;
    o.n_embd = 32;
    o.n_ff = 32;
    gguf_writer *w = tiny_model_build(&o);
    size_t n, infos_end, data_start;
    uint8_t *base = serialize(w, &n);
    cr_assert(tiny_layout(base, n, &infos_end, &data_start));
    uint64_t rng = 12345;
    int opened = 0;
    for (int iter = 0; iter < 3000; iter++) {
        uint8_t *b = copy_of(base, n);
        int flips = 1 + iter % 4;
        for (int k = 0; k < flips; k++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            size_t pos = (size_t)(rng >> 33) % (infos_end + 8);
            b[pos] ^= (uint8_t)(1u << ((rng >> 20) & 7));
        }
        gguf_file *f = NULL;
        char err[512] = "";
        elm_status s = elmi_gguf_open_memory(b, n, &f, err, sizeof err);
        cr_assert(s == ELM_OK || (s == ELM_ERR_FORMAT && err[0]), "iter %d: %d", iter, s);
        if (s == ELM_OK) {
            opened++;
            unsigned sum = 0;
            for (uint64_t i = 0; i < elmi_gguf_n_kv(f); i++) {
                const gguf_kv *kv = elmi_gguf_kv_at(f, i);
                for (uint64_t j = 0; kv->arr_strs && j < kv->arr_n; j++)
                    sum += kv->arr_strs[j].len ? (uint8_t)kv->arr_strs[j].ptr[0] : 0;
            }
            for (uint64_t i = 0; i < elmi_gguf_n_tensors(f); i++) {
                const gguf_tensor *t = elmi_gguf_tensor_at(f, i);
                sum += ((const uint8_t *)t->data)[t->nbytes - 1];
            }
            (void)sum;
            elmi_gguf_close(f);
        }
        free(b);
    }
    cr_assert_gt(opened, 0);
    free(base);
}

/* ------------------------------------------------------------ tiny model */

Test(tiny_model, default_shapes_and_vocab) {
    tiny_model_opts o = tiny_model_default();
    gguf_writer *w = tiny_model_build(&o);
    cr_assert_not_null(w);
    size_t n;
    uint8_t *b = serialize(w, &n);
    gguf_file *f = open_ok(b, n);
    cr_assert(elmi_gguf_str_eq(str_of(f, "general.architecture"), "llama"));
    cr_assert_eq(u32_of(f, "llama.embedding_length"), 64);
    cr_assert_eq(u32_of(f, "llama.block_count"), 2);
    cr_assert_eq(u32_of(f, "llama.attention.head_count_kv"), 2);
    cr_assert_eq(u32_of(f, "tokenizer.ggml.bos_token_id"), 1);
    assert_tensor(f, "token_embd.weight", QT_F32, 2, 64, 300, 64 * 300 * 4);
    assert_tensor(f, "output.weight", QT_F32, 2, 64, 300, 64 * 300 * 4);
    assert_tensor(f, "blk.1.attn_k.weight", QT_F32, 2, 64, 32, 64 * 32 * 4);
    assert_tensor(f, "blk.1.ffn_down.weight", QT_F32, 2, 128, 64, 128 * 64 * 4);
    assert_tensor(f, "blk.0.ffn_norm.weight", QT_F32, 1, 64, 1, 256);
    cr_assert_eq(elmi_gguf_n_tensors(f), 3 + 2 * 9);
    const float *norm = elmi_gguf_find_tensor(f, "output_norm.weight")->data;
    cr_assert_eq(norm[63], 1.0f);
    const gguf_kv *tok = arr_of(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING);
    cr_assert_eq(tok->arr_n, 300);
    cr_assert(elmi_gguf_str_eq(tok->arr_strs[2], "</s>"));
    cr_assert(elmi_gguf_str_eq(tok->arr_strs[3 + 0x41], "<0x41>"));
    cr_assert(elmi_gguf_str_eq(tok->arr_strs[259], "\xE2\x96\x81"));
    for (uint64_t i = 0; i < tok->arr_n; i++) {
        char piece[32];
        tiny_model_token((int)i, piece, sizeof piece);
        cr_assert(elmi_gguf_str_eq(tok->arr_strs[i], piece), "token %llu", (unsigned long long)i);
    }
    elmi_gguf_close(f);
    free(b);
}

Test(tiny_model, unique_tokens_large_vocab) {
    gguf_writer *w = elmi_gguf_writer_new();
    cr_assert_eq(tiny_model_add_vocab(w, 3000), ELM_OK);
    size_t n;
    uint8_t *b = serialize(w, &n);
    gguf_file *f = open_ok(b, n);
    const gguf_kv *tok = arr_of(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING);
    cr_assert_eq(tok->arr_n, 3000);
    for (uint64_t i = 0; i < tok->arr_n; i++)
        for (uint64_t j = i + 1; j < tok->arr_n; j++)
            cr_assert(tok->arr_strs[i].len != tok->arr_strs[j].len ||
                          memcmp(tok->arr_strs[i].ptr, tok->arr_strs[j].ptr,
                                 tok->arr_strs[i].len) != 0,
                      "tokens %llu and %llu are equal", (unsigned long long)i,
                      (unsigned long long)j);
    elmi_gguf_close(f);
    free(b);
}

Test(tiny_model, qwen2_quantized) {
    tiny_model_opts o = tiny_model_qwen2();
    o.wtype = QT_Q8_0;
    o.seed = 7;
    char path[512];
    snprintf(path, sizeof path, "%s/tiny_qwen2.gguf", test_tmp_dir());
    cr_assert_eq(tiny_model_write(&o, path), 0);
    gguf_file *f = NULL;
    char err[256];
    cr_assert_eq(elmi_gguf_open(path, &f, err, sizeof err), ELM_OK, "%s", err);
    cr_assert(elmi_gguf_str_eq(str_of(f, "general.architecture"), "qwen2"));
    cr_assert_null(elmi_gguf_find_tensor(f, "output.weight"));
    assert_tensor(f, "blk.0.attn_q.weight", QT_Q8_0, 2, 64, 64, 64 * 2 * 34);
    assert_tensor(f, "blk.1.attn_v.bias", QT_F32, 1, 32, 1, 128);
    float eps = 0;
    cr_assert_eq(elmi_gguf_get_f32(f, "qwen2.attention.layer_norm_rms_epsilon", true, &eps, err,
                              sizeof err), ELM_OK);
    cr_assert_eq(eps, 1e-6f);
    /* Dequantized weights are near the F32 build of the same seed. */
    tiny_model_opts of = o;
    of.wtype = QT_F32;
    gguf_writer *w = tiny_model_build(&of);
    size_t n;
    uint8_t *b = serialize(w, &n);
    gguf_file *g = open_ok(b, n);
    const gguf_tensor *tq = elmi_gguf_find_tensor(f, "blk.0.ffn_up.weight");
    const gguf_tensor *tf = elmi_gguf_find_tensor(g, "blk.0.ffn_up.weight");
    int64_t cnt = tf->ne[0] * tf->ne[1];
    float *deq = malloc((size_t)cnt * sizeof *deq);
    elmi_qtype_get(QT_Q8_0)->to_float(tq->data, deq, cnt);
    const float *ref = tf->data;
    double max_abs = 0;
    for (int64_t i = 0; i < cnt; i++) max_abs = fmax(max_abs, fabs(ref[i]));
    for (int64_t i = 0; i < cnt; i++)
        cr_assert(fabsf(deq[i] - ref[i]) <= max_abs / 100, "%lld", (long long)i);
    free(deq);
    elmi_gguf_close(g);
    elmi_gguf_close(f);
    free(b);
}

Test(tiny_model, impossible_options) {
    tiny_model_opts o = tiny_model_default();
    o.wtype = QT_Q4_K; /* rows of 64 are not whole 256-blocks */
    cr_assert_null(tiny_model_build(&o));
    o = tiny_model_default();
    o.n_head_kv = 3;
    cr_assert_null(tiny_model_build(&o));
}

Test(tiny_model, deterministic_per_tensor) {
    tiny_model_opts o = tiny_model_default();
    size_t n1, n2;
    uint8_t *a = serialize(tiny_model_build(&o), &n1);
    o.n_layer = 3;
    uint8_t *b = serialize(tiny_model_build(&o), &n2);
    gguf_file *fa = open_ok(a, n1), *fb = open_ok(b, n2);
    const gguf_tensor *x = elmi_gguf_find_tensor(fa, "blk.1.attn_q.weight");
    const gguf_tensor *y = elmi_gguf_find_tensor(fb, "blk.1.attn_q.weight");
    cr_assert_eq(memcmp(x->data, y->data, x->nbytes), 0);
    const gguf_tensor *z = elmi_gguf_find_tensor(fa, "blk.0.attn_q.weight");
    cr_assert_neq(memcmp(x->data, z->data, x->nbytes), 0);
    elmi_gguf_close(fa);
    elmi_gguf_close(fb);
    free(a);
    free(b);
}
