/* fuzz_gguf.c: libFuzzer target for the GGUF reader. Whatever opens is walked
 * completely, so that the sanitizers see any pointer the reader vouched for
 * that lies outside the input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"

static unsigned walk_kv(const gguf_kv *kv) {
    unsigned sum = (unsigned)kv->key.len + (unsigned char)kv->key.ptr[kv->key.len - 1];
    if (kv->type == GGUF_TYPE_STRING && kv->v.str.len)
        sum += (unsigned char)kv->v.str.ptr[kv->v.str.len - 1];
    if (kv->type != GGUF_TYPE_ARRAY) return sum;
    if (kv->arr_type == GGUF_TYPE_STRING) {
        for (uint64_t j = 0; j < kv->arr_n; j++)
            if (kv->arr_strs[j].len)
                sum += (unsigned char)kv->arr_strs[j].ptr[kv->arr_strs[j].len - 1];
    } else if (kv->arr_n) {
        const uint8_t *d = kv->arr_data;
        sum += d[0] + d[kv->arr_n * elmi_gguf_type_size(kv->arr_type) - 1];
    }
    return sum;
}

/* A name the lookups can take: no NUL inside, short. */
static bool as_cstr(gguf_str s, char *buf, size_t cap) {
    if (s.len >= cap || memchr(s.ptr, 0, s.len)) return false;
    memcpy(buf, s.ptr, s.len);
    buf[s.len] = 0;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_file *f = NULL;
    char err[256], name[256];
    if (elmi_gguf_open_memory(data, size, &f, err, sizeof err) != ELM_OK) return 0;
    volatile unsigned sum = 0;
    for (uint64_t i = 0; i < elmi_gguf_n_kv(f); i++) {
        const gguf_kv *kv = elmi_gguf_kv_at(f, i);
        sum += walk_kv(kv);
        if (as_cstr(kv->key, name, sizeof name) && elmi_gguf_find(f, name) != kv) abort();
    }
    for (uint64_t i = 0; i < elmi_gguf_n_tensors(f); i++) {
        const gguf_tensor *t = elmi_gguf_tensor_at(f, i);
        const uint8_t *d = t->data;
        sum += d[0] + d[t->nbytes - 1];
        if (as_cstr(t->name, name, sizeof name) && elmi_gguf_find_tensor(f, name) != t) abort();
    }
    uint32_t u = 0;
    elmi_gguf_get_u32(f, "general.alignment", false, &u, err, sizeof err);
    (void)sum;
    elmi_gguf_close(f);
    return 0;
}

#ifdef FUZZ_WRITE_SEEDS
/* Built without libFuzzer by scripts/fuzz.sh: writes small valid files into
 * argv[1], since the shared files are too large to mutate quickly, and the
 * hostile files of tests/test_hostile.c made from one of them. */
#include <stdio.h>

#include "quant/quant.h"
#include "support/tiny_model.h"

static int write_model(const char *dir, const char *name, tiny_model_opts o) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.gguf", dir, name);
    return tiny_model_write(&o, path);
}

static int write_values(const char *dir) {
    gguf_writer *w = elmi_gguf_writer_new();
    if (!w) return -1;
    uint8_t bytes[16] = {1, 0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    for (int t = 0; t < GGUF_TYPE_COUNT; t++) {
        char key[32];
        if (!elmi_gguf_type_size((gguf_type)t)) continue;
        snprintf(key, sizeof key, "v.%s", elmi_gguf_type_name((gguf_type)t));
        elmi_gguf_set_val(w, key, (gguf_type)t, bytes);
        snprintf(key, sizeof key, "a.%s", elmi_gguf_type_name((gguf_type)t));
        elmi_gguf_set_arr_data(w, key, (gguf_type)t, bytes, 2);
    }
    const char *strs[] = {"", "x", "\xE2\x96\x81y"};
    elmi_gguf_set_str(w, "v.str", "s");
    elmi_gguf_set_arr_str(w, "a.str", strs, 3);
    elmi_gguf_set_u32(w, "general.alignment", 64);
    int64_t ne[4] = {32, 2, 1, 1};
    uint8_t data[256] = {0};
    elmi_gguf_add_tensor(w, "q8", QT_Q8_0, 2, ne, data, 68);
    elmi_gguf_add_tensor(w, "f16", QT_F16, 4, ne, data, 128);
    char path[4096], err[256];
    snprintf(path, sizeof path, "%s/values.gguf", dir);
    int rc = elmi_gguf_write_file(w, path, err, sizeof err) == ELM_OK ? 0 : -1;
    elmi_gguf_writer_free(w);
    return rc;
}

/* ------------------------------------------------------------ hostile files */

/* The malformed files of tests/test_hostile.c, made from a small model: each
 * is a near miss of a valid file, which mutation turns into many more. */

static const char *g_dir;
static int g_rc;

static void put(const char *name, const uint8_t *b, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/hostile-%s.gguf", g_dir, name);
    if (tiny_write_bytes(path, b, n) != 0) g_rc = 1;
}

/* A copy of the valid file with one 64-bit field replaced. */
static void put_u64(const char *name, const uint8_t *b, size_t n, size_t pos, uint64_t v) {
    uint8_t *c = malloc(n);
    if (!c) {
        g_rc = 1;
        return;
    }
    memcpy(c, b, n);
    tiny_put_u64(c, pos, v);
    put(name, c, n);
    free(c);
}

static void put_writer(const char *name, gguf_writer *w) {
    size_t n;
    uint8_t *b = w ? tiny_serialize(w, &n) : NULL;
    if (b) put(name, b, n);
    else g_rc = 1;
    free(b);
    elmi_gguf_writer_free(w);
}

static void write_hostile(const tiny_model_opts *o) {
    size_t n, infos_end, data_start;
    gguf_writer *w = tiny_model_build(o);
    uint8_t *b = w ? tiny_serialize(w, &n) : NULL;
    elmi_gguf_writer_free(w);
    gguf_file *f = NULL;
    if (!b || elmi_gguf_open_memory(b, n, &f, NULL, 0) != ELM_OK ||
        !tiny_layout(b, n, &infos_end, &data_start)) {
        g_rc = 1;
        free(b);
        return;
    }
    char name[64];
    /* Truncations: the header, each pair at its start and inside its value,
     * tensor infos, the padding and the data. */
    put("trunc_magic", b, 3);
    put("trunc_header", b, 20);
    for (uint64_t i = 0; i < elmi_gguf_n_kv(f); i++) {
        const gguf_kv *kv = elmi_gguf_kv_at(f, i);
        size_t key = (size_t)((const uint8_t *)kv->key.ptr - b);
        snprintf(name, sizeof name, "trunc_kv%llu", (unsigned long long)i);
        put(name, b, key - 8);
        snprintf(name, sizeof name, "trunc_kv%llu_value", (unsigned long long)i);
        put(name, b, key + kv->key.len + 5);
    }
    for (uint64_t i = 0; i < elmi_gguf_n_tensors(f); i++) {
        const gguf_tensor *t = elmi_gguf_tensor_at(f, i);
        size_t at = (size_t)((const uint8_t *)t->name.ptr - b);
        snprintf(name, sizeof name, "trunc_tensor%llu", (unsigned long long)i);
        put(name, b, at - 8);
        snprintf(name, sizeof name, "trunc_tensor%llu_dims", (unsigned long long)i);
        put(name, b, at + t->name.len + 6);
    }
    elmi_gguf_close(f);
    if (data_start > infos_end) put("trunc_padding", b, infos_end + 1);
    put("trunc_data_start", b, data_start);
    put("trunc_data_mid", b, data_start + (n - data_start) / 2);
    /* Counts and lengths near 2^63 and 2^62. */
    put_u64("count_kv", b, n, 16, 1ull << 63);
    put_u64("count_tensors", b, n, 8, 1ull << 63);
    tiny_kv_pos p;
    tiny_tensor_pos t;
    if (tiny_find_kv(b, n, "tokenizer.ggml.tokens", &p)) {
        put_u64("count_tokens", b, n, p.value + 4, 1ull << 63);
        put_u64("strlen_token", b, n, p.value + 12, 1ull << 62);
    }
    if (tiny_find_kv(b, n, "tokenizer.ggml.scores", &p))
        put_u64("count_scores", b, n, p.value + 4, 1ull << 63);
    if (tiny_find_kv(b, n, "general.name", &p)) {
        put_u64("strlen_key", b, n, p.start, 1ull << 62);
        put_u64("strlen_value", b, n, p.value, 1ull << 62);
    }
    if (tiny_find_tensor(b, n, "output_norm.weight", &t))
        put_u64("strlen_tensor_name", b, n, t.start, 1ull << 62);
    /* Tensor offsets: misaligned, past the file, onto another tensor. */
    if (tiny_find_tensor(b, n, "blk.0.attn_norm.weight", &t)) {
        uint64_t off;
        memcpy(&off, b + t.offset, 8);
        put_u64("offset_misaligned", b, n, t.offset, off + 4);
        put_u64("offset_out_of_file", b, n, t.offset, ((uint64_t)n + 4096) / 32 * 32);
        put_u64("offset_overlap", b, n, t.offset, 0);
    }
    free(b);
    /* Metadata of the wrong type or value, and impossible tensors. */
    uint8_t scores[262] = {0};
    const char *types[262];
    for (int i = 0; i < 262; i++) types[i] = "1";
    if ((w = tiny_model_build(o)))
        elmi_gguf_set_arr_data(w, "tokenizer.ggml.scores", GGUF_TYPE_UINT8, scores, 262);
    put_writer("scores_uint8", w);
    if ((w = tiny_model_build(o))) elmi_gguf_set_arr_str(w, "tokenizer.ggml.token_type", types, 262);
    put_writer("token_type_string", w);
    if ((w = tiny_model_build(o))) elmi_gguf_set_u32(w, "general.alignment", 0);
    put_writer("align_0", w);
    if ((w = tiny_model_build(o))) elmi_gguf_set_u32(w, "general.alignment", 3);
    put_writer("align_3", w);
    if ((w = tiny_model_build(o))) elmi_gguf_set_str(w, "general.alignment", "32");
    put_writer("align_string", w);
    int64_t dims[2] = {1ll << 32, 1ll << 32}, bytes[2] = {1ll << 31, 1ll << 31};
    if ((w = tiny_model_build(o)))
        elmi_gguf_add_tensor_raw(w, "blk.0.attn_q.weight", QT_F32, 2, dims, NULL, 64);
    put_writer("dims_overflow", w);
    if ((w = tiny_model_build(o)))
        elmi_gguf_add_tensor_raw(w, "blk.0.attn_q.weight", QT_F32, 2, bytes, NULL, 64);
    put_writer("bytes_overflow", w);
    static const int type_ids[] = {77, 4, 5};
    for (size_t i = 0; i < sizeof type_ids / sizeof type_ids[0]; i++) {
        int64_t ne[2] = {32, 32};
        if ((w = tiny_model_build(o)))
            elmi_gguf_add_tensor_raw(w, "blk.0.attn_q.weight", type_ids[i], 2, ne, NULL, 32 * 32 * 4);
        snprintf(name, sizeof name, "type_%d", type_ids[i]);
        put_writer(name, w);
    }
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    tiny_model_opts o = tiny_model_default();
    o.n_embd = 32, o.n_ff = 32, o.n_layer = 1, o.n_head = 2, o.n_head_kv = 1, o.n_vocab = 262;
    o.wtype = QT_Q8_0;
    g_dir = argv[1];
    write_hostile(&o);
    tiny_model_opts q = o;
    q.arch = "qwen2", q.tied = true, q.wtype = QT_F16;
    int rc = write_model(argv[1], "tiny-llama", o) | write_model(argv[1], "tiny-qwen2", q);
    gguf_writer *w = elmi_gguf_writer_new();
    char path[4096];
    snprintf(path, sizeof path, "%s/vocab-only.gguf", argv[1]);
    if (!w || tiny_model_add_vocab(w, 262) != ELM_OK ||
        elmi_gguf_write_file(w, path, NULL, 0) != ELM_OK)
        rc = -1;
    elmi_gguf_writer_free(w);
    return (rc | g_rc | write_values(argv[1])) ? 1 : 0;
}
#endif
