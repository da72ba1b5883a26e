/* fuzz_gguf.c: libFuzzer target for the GGUF reader and the model loader.
 * Whatever opens is walked completely, so that the sanitizers see any
 * pointer the reader vouched for that lies outside the input; then the input
 * is loaded as a model (vocabulary, hyperparameters of every architecture,
 * weight binding with its shape checks and phi3's row views), and every
 * weight the loader bound is touched at both ends. No forward pass runs.
 *
 * fuzz-srcs-add: engine/api.c engine/model.c engine/signature.c engine/hparams.c engine/weights.c engine/synth.c engine/synth_tensors.c backends/backend.c
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "engine/gguf.h"
#include "engine/internal.h"

/* The loader resolves its device here instead of engine/devices.c, which
 * would pull in the backends: the weights are only bound, never run. */
elm_status elmi_device_resolve(const char *spec, elm_device_choice *out, char *err,
                               size_t err_size) {
    memset(out, 0, sizeof *out);
    out->vk_index = -1;
    snprintf(out->id, sizeof out->id, "cpu");
    return ELM_OK;
}

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

/* The first and last byte of a bound weight (a view of a fused tensor too). */
static unsigned touch(const be_tensor *t) {
    if (!t->data) return 0;
    const uint8_t *d = t->data;
    size_t n = elmi_be_tensor_nbytes(t);
    return n ? d[0] + d[n - 1] : 0;
}

static unsigned touch_layer(const elm_layer *l) {
    const be_tensor *ts[] = {&l->attn_norm, &l->wq, &l->wk, &l->wv, &l->bq, &l->bk, &l->bv,
                             &l->wo, &l->ffn_norm, &l->w_gate, &l->w_up, &l->w_down, &l->q_norm,
                             &l->k_norm, &l->post_attn_norm, &l->post_ffn_norm, &l->conv_in,
                             &l->conv_w, &l->conv_out};
    unsigned sum = 0;
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++) sum += touch(ts[i]);
    return sum;
}

/* elm_model_load's whole path on a copy of the input (the model owns and
 * frees its memory image). */
static unsigned load_model(const uint8_t *data, size_t size) {
    void *copy = elmi_malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    elm_model *m = NULL;
    char err[ELM_ERR_LEN];
    if (elmi_model_load_memory("fuzz", copy, size, NULL, &m, err, sizeof err) != ELM_OK) {
        if (m || !err[0]) abort(); /* a failure leaves no model and says why */
        return 0;
    }
    const elm_weights *w = &m->w;
    unsigned sum = touch(&w->tok_embd) + touch(&w->output_norm) + touch(&w->output) +
                   touch(&w->rope_freqs) + touch(&w->rope_long) + touch(&w->rope_short);
    for (uint32_t il = 0; il < m->hp.n_layer; il++) sum += touch_layer(&w->layers[il]);
    elm_model_free(m);
    return sum;
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
    elmi_gguf_close(f);
    sum += load_model(data, size);
    (void)sum;
    return 0;
}

#ifdef FUZZ_WRITE_SEEDS
/* Built without libFuzzer by scripts/fuzz.sh: writes small valid files into
 * argv[1], since the shared files are too large to mutate quickly, and the
 * hostile files of tests/test_hostile.c made from one of them. */
#include <stdio.h>

#include "engine/synth.h"
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

/* ------------------------------------------------------------ newer architectures */

/* The tiny shape of engine/synth.h cut to a layer or two (tiny-lfm2: a
 * convolution layer, then an attention one), 260 tokens, Q4_0 throughout:
 * under the 64 KiB input limit, so that mutations reach the hyperparameters
 * and tensors of each architecture. NULL on failure. */
static gguf_writer *arch_model(const char *shape) {
    elm_synth_params p = elm_synth_default_params();
    p.shape = shape;
    p.type = "Q4_0";
    p.output_type = "Q4_0";
    p.vocab_size = 260;
    p.n_layer = strcmp(shape, "tiny-lfm2") == 0 ? 2 : 1;
    gguf_writer *w = elmi_gguf_writer_new();
    char err[256] = "";
    if (w && elmi_synth_build(&p, w, err, sizeof err) == ELM_OK) return w;
    fprintf(stderr, "%s: %s\n", shape, err);
    elmi_gguf_writer_free(w);
    return NULL;
}

/* The valid models, then near misses of them (the cases of
 * tests/test_hostile.c and the optional keys each architecture reads). */
static void write_arch_seeds(const char *dir) {
    static const char *const shapes[] = {"tiny-qwen3", "tiny-gemma3", "tiny-phi3",
                                         "tiny-smollm3", "tiny-lfm2"};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        gguf_writer *w = arch_model(shapes[i]);
        char path[4096], err[256] = "";
        snprintf(path, sizeof path, "%s/%s.gguf", dir, shapes[i]);
        if (!w || elmi_gguf_write_file(w, path, err, sizeof err) != ELM_OK) g_rc = 1;
        elmi_gguf_writer_free(w);
    }
    gguf_writer *w;
    /* qwen3: head sizes, and each RoPE scaling type. */
    if ((w = arch_model("tiny-qwen3"))) elmi_gguf_set_u32(w, "qwen3.attention.value_length", 16);
    put_writer("qwen3_value_length", w);
    if ((w = arch_model("tiny-qwen3"))) {
        elmi_gguf_set_str(w, "qwen3.rope.scaling.type", "yarn");
        elmi_gguf_set_f32(w, "qwen3.rope.scaling.factor", 4.0f);
        elmi_gguf_set_u32(w, "qwen3.rope.scaling.original_context_length", 64);
        elmi_gguf_set_f32(w, "qwen3.rope.scaling.yarn_beta_fast", 32.0f);
    }
    put_writer("qwen3_yarn", w);
    if ((w = arch_model("tiny-qwen3"))) elmi_gguf_set_str(w, "qwen3.rope.scaling.type", "su");
    put_writer("qwen3_scaling_su", w);
    /* gemma3: the window's keys, softcapping. */
    uint8_t pattern[1] = {1};
    if ((w = arch_model("tiny-gemma3")))
        elmi_gguf_set_arr_data(w, "gemma3.attention.sliding_window_pattern", GGUF_TYPE_BOOL,
                               pattern, 1);
    put_writer("gemma3_pattern_array", w);
    if ((w = arch_model("tiny-gemma3"))) {
        elmi_gguf_set_u32(w, "gemma3.attention.sliding_window_pattern", 2);
        elmi_gguf_set_f32(w, "gemma3.rope.freq_base_swa", 10000.0f);
        elmi_gguf_set_f32(w, "gemma3.attn_logit_softcapping", 50.0f);
        elmi_gguf_set_f32(w, "gemma3.final_logit_softcapping", 30.0f);
    }
    put_writer("gemma3_softcap", w);
    if ((w = arch_model("tiny-gemma3"))) elmi_gguf_remove_key(w, "gemma3.attention.sliding_window");
    put_writer("gemma3_no_window", w);
    /* phi3: LongRoPE halves, rope_freqs beside them. */
    if ((w = arch_model("tiny-phi3"))) elmi_gguf_remove_tensor(w, "rope_factors_short.weight");
    put_writer("phi3_no_rope_short", w);
    float freqs[6] = {1, 1, 1, 1, 1, 1};
    int64_t ne6[1] = {6};
    if ((w = arch_model("tiny-phi3")))
        elmi_gguf_add_tensor(w, "rope_freqs.weight", QT_F32, 1, ne6, freqs, sizeof freqs);
    put_writer("phi3_rope_freqs", w);
    /* lfm2: head_count_kv as arrays of each integer type, of the wrong
     * length, differing; the convolution's length. */
    static const gguf_type kv_types[] = {GGUF_TYPE_UINT8, GGUF_TYPE_INT16, GGUF_TYPE_UINT32,
                                         GGUF_TYPE_INT64, GGUF_TYPE_UINT64, GGUF_TYPE_FLOAT32};
    uint8_t kv_bytes[16] = {0};
    for (size_t i = 0; i < sizeof kv_types / sizeof *kv_types; i++) {
        size_t size = elmi_gguf_type_size(kv_types[i]);
        memset(kv_bytes, 0, sizeof kv_bytes);
        kv_bytes[size] = 2; /* layer 1 attends with 2 KV heads (little-endian) */
        char name[64];
        snprintf(name, sizeof name, "lfm2_kv_%s", elmi_gguf_type_name(kv_types[i]));
        if ((w = arch_model("tiny-lfm2")))
            elmi_gguf_set_arr_data(w, "lfm2.attention.head_count_kv", kv_types[i], kv_bytes, 2);
        put_writer(name, w);
    }
    int32_t kv3[3] = {0, 2, 0}, kv_swapped[2] = {2, 0};
    if ((w = arch_model("tiny-lfm2")))
        elmi_gguf_set_arr_data(w, "lfm2.attention.head_count_kv", GGUF_TYPE_INT32, kv3, 3);
    put_writer("lfm2_kv_len", w);
    if ((w = arch_model("tiny-lfm2")))
        elmi_gguf_set_arr_data(w, "lfm2.attention.head_count_kv", GGUF_TYPE_INT32, kv_swapped, 2);
    put_writer("lfm2_kv_swapped", w);
    if ((w = arch_model("tiny-lfm2"))) elmi_gguf_set_u32(w, "lfm2.shortconv.l_cache", 0);
    put_writer("lfm2_l_cache_0", w);
    if ((w = arch_model("tiny-lfm2"))) elmi_gguf_set_u32(w, "lfm2.shortconv.l_cache", 4);
    put_writer("lfm2_l_cache_4", w);
    if ((w = arch_model("tiny-smollm3"))) elmi_gguf_set_str(w, "general.architecture", "qwen3moe");
    put_writer("arch_qwen3moe", w);
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
    write_arch_seeds(argv[1]);
    return (rc | g_rc | write_values(argv[1])) ? 1 : 0;
}
#endif
