/* synth.c: synthetic models with the shapes of popular small models, for
 * benchmarks. Weights are deterministic pseudo-random values; the
 * vocabulary is a synthetic SentencePiece-style one. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/status.h"
#include "engine/internal.h"
#include "quant/quant.h"

typedef struct synth_shape {
    const char *name;
    const char *arch;
    uint32_t n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab, n_ctx;
    float rope_theta, rms_eps;
    bool tied;
} synth_shape;

static const synth_shape SHAPES[] = {
    {"smollm-135m", "llama", 576, 30, 9, 3, 1536, 49152, 2048, 10000.0f, 1e-5f, true},
    {"qwen2-0.5b", "qwen2", 896, 24, 14, 2, 4864, 151936, 32768, 1000000.0f, 1e-6f, true},
    {"llama-1b", "llama", 2048, 16, 32, 8, 8192, 128256, 131072, 500000.0f, 1e-5f, true},
    {"tinyllama-1.1b", "llama", 2048, 22, 32, 4, 5632, 32000, 2048, 10000.0f, 1e-5f, false},
};
#define N_SHAPES (sizeof SHAPES / sizeof *SHAPES)

const char *elm_synth_shape_name(size_t i) {
    return i < N_SHAPES ? SHAPES[i].name : NULL;
}

elm_synth_params elm_synth_default_params(void) {
    return (elm_synth_params){.shape = "smollm-135m", .type = "Q4_0", .output_type = NULL,
                              .vocab_size = 0, .seed = 42};
}

static const synth_shape *find_shape(const char *name) {
    for (size_t i = 0; i < N_SHAPES; i++)
        if (name && strcmp(SHAPES[i].name, name) == 0) return &SHAPES[i];
    return NULL;
}

static int type_by_name(const char *name) {
    for (int t = 0; t < QT_COUNT; t++)
        if (elmi_qtype_supported(t) && strcmp(elmi_qtype_name(t), name) == 0) return t;
    return -1;
}

/* splitmix64: each tensor row gets its own stream, so threads need no order. */
static uint64_t mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Uniform values with standard deviation `sd` (uniform is enough for shapes
 * and speed; the scale keeps activations in a realistic range). */
static void fill_row(float *row, int64_t n, uint64_t seed, float sd) {
    uint64_t s = mix64(seed);
    const float a = sd * 1.7320508f / 2147483648.0f;
    for (int64_t i = 0; i < n; i += 2) {
        s = mix64(s);
        row[i] = (float)(int32_t)(uint32_t)s * a;
        if (i + 1 < n) row[i + 1] = (float)(int32_t)(uint32_t)(s >> 32) * a;
    }
}

typedef struct gen_job {
    int type;
    int64_t ne0, ne1;
    uint64_t seed;
    float sd;
    uint8_t *dst;
    size_t row_bytes;
    int ith, nth;
} gen_job;

static void *gen_rows(void *arg) {
    gen_job *j = arg;
    float *row = elmi_malloc((size_t)j->ne0 * sizeof(float));
    if (!row) return (void *)1;
    const qtype_traits *tr = elmi_qtype_get(j->type);
    for (int64_t r = j->ith; r < j->ne1; r += j->nth) {
        fill_row(row, j->ne0, j->seed * 1000003ull + (uint64_t)r, j->sd);
        tr->from_float(row, j->dst + (size_t)r * j->row_bytes, j->ne0);
    }
    elmi_free(row);
    return NULL;
}

/* Generates a (ne0, ne1) tensor of `type` into a new buffer, on 2 threads. */
static void *gen_tensor(int type, int64_t ne0, int64_t ne1, uint64_t seed, float sd,
                        size_t *nbytes) {
    size_t row_bytes;
    if (!elmi_qtype_row_bytes(type, ne0, &row_bytes)) return NULL;
    uint8_t *dst = elmi_malloc(row_bytes * (size_t)ne1);
    if (!dst) return NULL;
    enum { NTH = 2 };
    gen_job jobs[NTH];
    pthread_t th[NTH];
    bool started[NTH] = {false};
    for (int i = 0; i < NTH; i++) {
        jobs[i] = (gen_job){type, ne0, ne1, seed, sd, dst, row_bytes, i, NTH};
        if (i > 0) started[i] = pthread_create(&th[i], NULL, gen_rows, &jobs[i]) == 0;
    }
    bool ok = gen_rows(&jobs[0]) == NULL;
    for (int i = 1; i < NTH; i++) {
        if (!started[i]) ok = ok && gen_rows(&jobs[i]) == NULL;
        else {
            void *r;
            pthread_join(th[i], &r);
            ok = ok && r == NULL;
        }
    }
    if (!ok) {
        elmi_free(dst);
        return NULL;
    }
    *nbytes = row_bytes * (size_t)ne1;
    return dst;
}

/* The type a tensor gets: `want`, or a fallback when its rows are not whole blocks. */
static int fit_type(int want, int64_t ne0) {
    size_t b;
    if (elmi_qtype_row_bytes(want, ne0, &b)) return want;
    int fallback = want == QT_Q4_K ? QT_Q5_0 : want == QT_Q5_K ? QT_Q5_1 : QT_Q8_0;
    return elmi_qtype_row_bytes(fallback, ne0, &b) ? fallback : QT_F16;
}

typedef struct synth_ctx {
    gguf_writer *w;
    const synth_shape *sh;
    uint64_t seed;
    uint64_t n_tensor;
    char *err;
    size_t err_size;
} synth_ctx;

static elm_status add_tensor(synth_ctx *c, const char *name, int type, int64_t ne0, int64_t ne1,
                             float sd, float constant) {
    int64_t ne[2] = {ne0, ne1};
    uint32_t n_dims = ne1 > 1 ? 2 : 1;
    int t = n_dims == 1 ? QT_F32 : fit_type(type, ne0);
    size_t nbytes = 0;
    void *data;
    if (sd == 0.0f) {
        nbytes = (size_t)ne0 * (size_t)ne1 * sizeof(float);
        float *f = elmi_malloc(nbytes);
        if (f)
            for (int64_t i = 0; i < ne0 * ne1; i++) f[i] = constant;
        data = f;
    } else {
        data = gen_tensor(t, ne0, ne1, c->seed + ++c->n_tensor, sd, &nbytes);
    }
    if (!data) return elmi_errorf(c->err, c->err_size, ELM_ERR_NO_MEMORY, "out of memory");
    elm_status st = elmi_gguf_add_tensor(c->w, name, t, n_dims, ne, data, nbytes);
    elmi_free(data);
    if (st != ELM_OK) elmi_errorf(c->err, c->err_size, st, "cannot add tensor %s", name);
    return st;
}

/* llama.cpp-style Q4_K_M: attn_v and ffn_down get Q6_K in the first and
 * last eighth of the layers and every third layer between. */
static bool q4km_wide_layer(uint32_t il, uint32_t n) {
    return il < n / 8 || il >= 7 * n / 8 || (il - n / 8) % 3 == 2;
}

static elm_status add_layer(synth_ctx *c, uint32_t il, int type, bool q4km) {
    const synth_shape *s = c->sh;
    int64_t hd = s->n_embd / s->n_head, n_kv = hd * s->n_head_kv;
    float sd_in = 1.0f / sqrtf((float)s->n_embd), sd_ff = 1.0f / sqrtf((float)s->n_ff);
    int wide = q4km && q4km_wide_layer(il, s->n_layer) ? QT_Q6_K : type;
    char name[96];
#define N(x) (snprintf(name, sizeof name, "blk.%u." x, il), name)
    ELM_TRY(add_tensor(c, N("attn_norm.weight"), QT_F32, s->n_embd, 1, 0.0f, 1.0f));
    ELM_TRY(add_tensor(c, N("attn_q.weight"), type, s->n_embd, s->n_embd, sd_in, 0));
    ELM_TRY(add_tensor(c, N("attn_k.weight"), type, s->n_embd, n_kv, sd_in, 0));
    ELM_TRY(add_tensor(c, N("attn_v.weight"), wide, s->n_embd, n_kv, sd_in, 0));
    ELM_TRY(add_tensor(c, N("attn_output.weight"), type, s->n_embd, s->n_embd, sd_in, 0));
    ELM_TRY(add_tensor(c, N("ffn_norm.weight"), QT_F32, s->n_embd, 1, 0.0f, 1.0f));
    ELM_TRY(add_tensor(c, N("ffn_gate.weight"), type, s->n_embd, s->n_ff, sd_in, 0));
    ELM_TRY(add_tensor(c, N("ffn_up.weight"), type, s->n_embd, s->n_ff, sd_in, 0));
    ELM_TRY(add_tensor(c, N("ffn_down.weight"), wide, s->n_ff, s->n_embd, sd_ff, 0));
    if (strcmp(s->arch, "qwen2") == 0) {
        ELM_TRY(add_tensor(c, N("attn_q.bias"), QT_F32, s->n_embd, 1, 0.0f, 0.01f));
        ELM_TRY(add_tensor(c, N("attn_k.bias"), QT_F32, n_kv, 1, 0.0f, 0.01f));
        ELM_TRY(add_tensor(c, N("attn_v.bias"), QT_F32, n_kv, 1, 0.0f, 0.01f));
    }
#undef N
    return ELM_OK;
}

static elm_status set_vocab(gguf_writer *w, const char *const *toks, const float *scores,
                            const int32_t *types, uint32_t n_vocab) {
    ELM_TRY(elmi_gguf_set_str(w, "tokenizer.ggml.model", "llama"));
    ELM_TRY(elmi_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, n_vocab));
    ELM_TRY(elmi_gguf_set_arr_data(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, n_vocab));
    ELM_TRY(elmi_gguf_set_arr_data(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, n_vocab));
    ELM_TRY(elmi_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", 0));
    ELM_TRY(elmi_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 1));
    ELM_TRY(elmi_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 2));
    return elmi_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", true);
}

/* <unk>, <s>, </s>, the 256 byte tokens, then synthetic pieces. */
static elm_status add_vocab(synth_ctx *c, uint32_t n_vocab) {
    char **toks = elmi_calloc(n_vocab, sizeof *toks);
    float *scores = elmi_malloc(n_vocab * sizeof *scores);
    int32_t *types = elmi_malloc(n_vocab * sizeof *types);
    elm_status st = ELM_ERR_NO_MEMORY;
    if (!toks || !scores || !types) goto done;
    static const char letters[] = "etaoinshrdlucmfwypvbgkjqxz";
    for (uint32_t i = 0; i < n_vocab; i++) {
        char buf[64];
        if (i < 3) snprintf(buf, sizeof buf, "%s", i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
        else if (i < 259) snprintf(buf, sizeof buf, "<0x%02X>", i - 3);
        else {
            /* "\u2581" + a base-26 spelling: unique, word-like pieces. */
            uint32_t k = i - 259;
            size_t o = (size_t)snprintf(buf, sizeof buf, "\xE2\x96\x81");
            do {
                buf[o++] = letters[k % 26];
                k /= 26;
            } while (k && o < sizeof buf - 1);
            buf[o] = 0;
        }
        toks[i] = elmi_strdup(buf);
        if (!toks[i]) goto done;
        scores[i] = i < 259 ? 0.0f : -(float)(i - 259);
        types[i] = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1;
    }
    st = set_vocab(c->w, (const char *const *)toks, scores, types, n_vocab);
done:
    if (toks)
        for (uint32_t i = 0; i < n_vocab; i++) elmi_free(toks[i]);
    elmi_free(toks);
    elmi_free(scores);
    elmi_free(types);
    if (st != ELM_OK) elmi_errorf(c->err, c->err_size, st, "cannot write the vocabulary");
    return st;
}

static elm_status set_hparams(const synth_ctx *c, const char *model_name) {
    const synth_shape *s = c->sh;
    char key[128];
#define K(x) (snprintf(key, sizeof key, "%s." x, s->arch), key)
    ELM_TRY(elmi_gguf_set_str(c->w, "general.architecture", s->arch));
    ELM_TRY(elmi_gguf_set_str(c->w, "general.name", model_name));
    ELM_TRY(elmi_gguf_set_u32(c->w, "general.file_type", 0));
    ELM_TRY(elmi_gguf_set_u32(c->w, K("context_length"), s->n_ctx));
    ELM_TRY(elmi_gguf_set_u32(c->w, K("embedding_length"), s->n_embd));
    ELM_TRY(elmi_gguf_set_u32(c->w, K("block_count"), s->n_layer));
    ELM_TRY(elmi_gguf_set_u32(c->w, K("feed_forward_length"), s->n_ff));
    ELM_TRY(elmi_gguf_set_u32(c->w, K("attention.head_count"), s->n_head));
    ELM_TRY(elmi_gguf_set_u32(c->w, K("attention.head_count_kv"), s->n_head_kv));
    ELM_TRY(elmi_gguf_set_u32(c->w, K("rope.dimension_count"), s->n_embd / s->n_head));
    ELM_TRY(elmi_gguf_set_f32(c->w, K("rope.freq_base"), s->rope_theta));
    ELM_TRY(elmi_gguf_set_f32(c->w, K("attention.layer_norm_rms_epsilon"), s->rms_eps));
#undef K
    return ELM_OK;
}

static elm_status add_hparams(synth_ctx *c, const char *model_name) {
    elm_status st = set_hparams(c, model_name);
    if (st != ELM_OK) return elmi_errorf(c->err, c->err_size, st, "cannot write the metadata");
    return ELM_OK;
}

static elm_status build(const elm_synth_params *p, gguf_writer *w, char *err, size_t err_size) {
    const synth_shape *sh = find_shape(p->shape);
    if (!sh)
        return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG,
                           "unknown shape '%s' (smollm-135m, qwen2-0.5b, llama-1b, tinyllama-1.1b)",
                           p->shape ? p->shape : "(null)");
    bool q4km = p->type && strcmp(p->type, "Q4_K_M") == 0;
    int type = q4km ? QT_Q4_K : type_by_name(p->type ? p->type : "");
    if (type < 0 || !elmi_qtype_get(type)->from_float)
        return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "unsupported weight type '%s'",
                           p->type ? p->type : "(null)");
    int out_type = (type == QT_Q4_0 || type == QT_Q4_K) ? QT_Q6_K : QT_Q8_0;
    if (type == QT_F16 || type == QT_F32 || type == QT_BF16) out_type = type;
    if (p->output_type && *p->output_type) {
        out_type = type_by_name(p->output_type);
        if (out_type < 0)
            return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "unsupported output type '%s'",
                               p->output_type);
    }
    synth_shape s = *sh;
    if (p->vocab_size) {
        if (p->vocab_size < 260 || p->vocab_size > 1000000)
            return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG,
                               "vocab size %u is out of range [260, 1000000]", p->vocab_size);
        s.n_vocab = p->vocab_size;
    }
    /* The output projection is stored apart from the embeddings whenever its
     * type differs, as converters do. */
    bool tied = s.tied && out_type == type;
    synth_ctx c = {w, &s, p->seed, 0, err, err_size};
    char name[128];
    snprintf(name, sizeof name, "synthetic %s %s", s.name, p->type);
    ELM_TRY(add_hparams(&c, name));
    ELM_TRY(add_vocab(&c, s.n_vocab));
    ELM_TRY(add_tensor(&c, "token_embd.weight", type, s.n_embd, s.n_vocab, 0.02f * 10, 0));
    ELM_TRY(add_tensor(&c, "output_norm.weight", QT_F32, s.n_embd, 1, 0.0f, 1.0f));
    if (!tied)
        ELM_TRY(add_tensor(&c, "output.weight", out_type, s.n_embd, s.n_vocab,
                           1.0f / sqrtf((float)s.n_embd), 0));
    for (uint32_t il = 0; il < s.n_layer; il++) ELM_TRY(add_layer(&c, il, type, q4km));
    return ELM_OK;
}

elm_status elm_synth_write(const elm_synth_params *p, const char *path, char *err,
                           size_t err_size) {
    if (!p || !path) return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "NULL argument");
    gguf_writer *w = elmi_gguf_writer_new();
    if (!w) return elmi_errorf(err, err_size, ELM_ERR_NO_MEMORY, "out of memory");
    char msg[ELM_ERR_LEN] = "";
    elm_status st = build(p, w, err, err_size);
    if (st != ELM_OK) goto done;
    st = elmi_gguf_write_file(w, path, msg, sizeof msg);
    if (st != ELM_OK) elmi_errorf(err, err_size, st, "%s: %s", path, msg);
done:
    elmi_gguf_writer_free(w);
    return st;
}

elm_status elm_synth_load(const elm_synth_params *p, const elm_model_params *mp, elm_model **out,
                          char *err, size_t err_size) {
    if (!p || !out) return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "NULL argument");
    *out = NULL;
    char label[160];
    snprintf(label, sizeof label, "shape:%s:%s", p->shape ? p->shape : "?", p->type ? p->type : "?");
    char msg[ELM_ERR_LEN] = "";
    elm_device_choice choice;
    elm_status dst = elmi_device_resolve(mp ? mp->device : NULL, &choice, msg, sizeof msg);
    if (dst != ELM_OK) return elmi_errorf(err, err_size, dst, "%s: %s", label, msg);
    gguf_writer *w = elmi_gguf_writer_new();
    if (!w) return elmi_errorf(err, err_size, ELM_ERR_NO_MEMORY, "out of memory");
    void *data = NULL;
    size_t size = 0;
    elm_status st = build(p, w, err, err_size);
    if (st != ELM_OK) goto done;
    st = elmi_gguf_write_memory(w, &data, &size);
    if (st != ELM_OK) elmi_errorf(err, err_size, st, "cannot serialize the model");
done:
    elmi_gguf_writer_free(w);
    if (st != ELM_OK) return st;
    return elmi_model_load_memory(label, data, size, mp, out, err, err_size);
}
