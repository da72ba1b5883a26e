/* synth_tensors.c: the tensors and the vocabulary of synthetic models
 * (synth.h): deterministic pseudo-random weights, generated row by row on
 * two threads, and a SentencePiece-style vocabulary. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/status.h"
#include "engine/synth.h"
#include "quant/quant.h"

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

elm_status elmi_synth_add_tensor(synth_ctx *c, const char *name, int type, int64_t ne0,
                                 int64_t ne1, float sd, float constant) {
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
        t = QT_F32;
    } else {
        data = gen_tensor(t, ne0, ne1, c->seed + ++c->n_tensor, sd, &nbytes);
    }
    if (!data) return elmi_errorf(c->err, c->err_size, ELM_ERR_NO_MEMORY, "out of memory");
    elm_status st = elmi_gguf_add_tensor(c->w, name, t, n_dims, ne, data, nbytes);
    elmi_free(data);
    if (st != ELM_OK) elmi_errorf(c->err, c->err_size, st, "cannot add tensor %s", name);
    return st;
}

elm_status elmi_synth_add_f32(synth_ctx *c, const char *name, const float *v, int64_t n) {
    int64_t ne[1] = {n};
    elm_status st = elmi_gguf_add_tensor(c->w, name, QT_F32, 1, ne, v, (size_t)n * sizeof *v);
    if (st != ELM_OK) elmi_errorf(c->err, c->err_size, st, "cannot add tensor %s", name);
    return st;
}

/* llama.cpp-style Q4_K_M: attn_v and ffn_down get Q6_K in the first and
 * last eighth of the layers and every third layer between. */
static bool q4km_wide_layer(uint32_t il, uint32_t n) {
    return il < n / 8 || il >= 7 * n / 8 || (il - n / 8) % 3 == 2;
}

#define N(x) (snprintf(name, sizeof name, "blk.%u." x, il), name)

/* Q, K, V (or phi3's fused Q|K|V rows), the output projection, and the
 * biases or per-head norms the architecture has. */
static elm_status add_attention(synth_ctx *c, uint32_t il, int type, int wide, bool q4km) {
    const synth_shape *s = c->sh;
    const int64_t hd = elmi_synth_head_dim(s), n_q = hd * s->n_head, n_kv = hd * s->n_head_kv;
    const float sd_in = 1.0f / sqrtf((float)s->n_embd), sd_q = 1.0f / sqrtf((float)n_q);
    char name[96];
    if (c->arch->fused) {
        /* llama.cpp's Q4_K_M stores attn_qkv as Q5_K. */
        int t = q4km ? QT_Q5_K : type;
        ELM_TRY(elmi_synth_add_tensor(c, N("attn_qkv.weight"), t, s->n_embd, n_q + 2 * n_kv,
                                      sd_in, 0));
    } else {
        ELM_TRY(elmi_synth_add_tensor(c, N("attn_q.weight"), type, s->n_embd, n_q, sd_in, 0));
        ELM_TRY(elmi_synth_add_tensor(c, N("attn_k.weight"), type, s->n_embd, n_kv, sd_in, 0));
        ELM_TRY(elmi_synth_add_tensor(c, N("attn_v.weight"), wide, s->n_embd, n_kv, sd_in, 0));
    }
    ELM_TRY(elmi_synth_add_tensor(c, N("attn_output.weight"), type, n_q, s->n_embd, sd_q, 0));
    if (c->arch->bias_qkv) {
        ELM_TRY(elmi_synth_add_tensor(c, N("attn_q.bias"), QT_F32, n_q, 1, 0.0f, 0.01f));
        ELM_TRY(elmi_synth_add_tensor(c, N("attn_k.bias"), QT_F32, n_kv, 1, 0.0f, 0.01f));
        ELM_TRY(elmi_synth_add_tensor(c, N("attn_v.bias"), QT_F32, n_kv, 1, 0.0f, 0.01f));
    }
    if (c->arch->qk_norm) {
        ELM_TRY(elmi_synth_add_tensor(c, N("attn_q_norm.weight"), QT_F32, hd, 1, 0.0f, 1.0f));
        ELM_TRY(elmi_synth_add_tensor(c, N("attn_k_norm.weight"), QT_F32, hd, 1, 0.0f, 1.0f));
    }
    return ELM_OK;
}

/* lfm2's gated short convolution: in_proj makes b, c and x (n_embd rows
 * each), conv holds conv_L taps per channel (always F32), out_proj mixes. */
static elm_status add_conv(synth_ctx *c, uint32_t il, int type) {
    const synth_shape *s = c->sh;
    const float sd_in = 1.0f / sqrtf((float)s->n_embd), sd_tap = 1.0f / sqrtf((float)s->conv_L);
    char name[96];
    ELM_TRY(elmi_synth_add_tensor(c, N("shortconv.in_proj.weight"), type, s->n_embd,
                                  3 * (int64_t)s->n_embd, sd_in, 0));
    ELM_TRY(elmi_synth_add_tensor(c, N("shortconv.conv.weight"), QT_F32, s->conv_L, s->n_embd,
                                  sd_tap, 0));
    ELM_TRY(elmi_synth_add_tensor(c, N("shortconv.out_proj.weight"), type, s->n_embd, s->n_embd,
                                  sd_in, 0));
    return ELM_OK;
}

elm_status elmi_synth_add_layer(synth_ctx *c, uint32_t il, int type, bool q4km) {
    const synth_shape *s = c->sh;
    const float sd_in = 1.0f / sqrtf((float)s->n_embd), sd_ff = 1.0f / sqrtf((float)s->n_ff);
    int wide = q4km && q4km_wide_layer(il, s->n_layer) ? QT_Q6_K : type;
    char name[96];
    ELM_TRY(elmi_synth_add_tensor(c, N("attn_norm.weight"), QT_F32, s->n_embd, 1, 0.0f, 1.0f));
    if (elmi_synth_layer_attends(s, il))
        ELM_TRY(add_attention(c, il, type, wide, q4km));
    else
        ELM_TRY(add_conv(c, il, type));
    ELM_TRY(elmi_synth_add_tensor(c, N("ffn_norm.weight"), QT_F32, s->n_embd, 1, 0.0f, 1.0f));
    if (c->arch->fused) {
        /* phi3: the gate's n_ff rows, then the up projection's. */
        ELM_TRY(elmi_synth_add_tensor(c, N("ffn_up.weight"), type, s->n_embd, 2 * (int64_t)s->n_ff,
                                      sd_in, 0));
    } else {
        ELM_TRY(elmi_synth_add_tensor(c, N("ffn_gate.weight"), type, s->n_embd, s->n_ff, sd_in, 0));
        ELM_TRY(elmi_synth_add_tensor(c, N("ffn_up.weight"), type, s->n_embd, s->n_ff, sd_in, 0));
    }
    ELM_TRY(elmi_synth_add_tensor(c, N("ffn_down.weight"), wide, s->n_ff, s->n_embd, sd_ff, 0));
    if (c->arch->post_norms) {
        ELM_TRY(elmi_synth_add_tensor(c, N("post_attention_norm.weight"), QT_F32, s->n_embd, 1,
                                      0.0f, 1.0f));
        ELM_TRY(elmi_synth_add_tensor(c, N("post_ffw_norm.weight"), QT_F32, s->n_embd, 1, 0.0f,
                                      1.0f));
    }
    return ELM_OK;
}
#undef N

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
elm_status elmi_synth_add_vocab(synth_ctx *c, uint32_t n_vocab) {
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

