/* synth.c: synthetic models with the shapes of popular small models, for
 * benchmarks and tests (synth.h). Weights are deterministic pseudo-random
 * values; the vocabulary is a synthetic SentencePiece-style one. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/status.h"
#include "engine/internal.h"
#include "engine/synth.h"
#include "quant/quant.h"

#define SHAPE(nm, ar, embd, layers, heads, kv, ff, vocab, ctx, theta, eps, tie)                \
    .name = nm, .arch = ar, .n_embd = embd, .n_layer = layers, .n_head = heads,               \
    .n_head_kv = kv, .n_ff = ff, .n_vocab = vocab, .n_ctx = ctx, .rope_theta = theta,         \
    .rms_eps = eps, .tied = tie

/* LFM2-350M attends at layers 2, 5, 8, 10, 12 and 14 and convolves at the others. */
#define LFM2_350M_ATTN (1ull << 2 | 1ull << 5 | 1ull << 8 | 1ull << 10 | 1ull << 12 | 1ull << 14)

static const synth_shape SHAPES[] = {
    {SHAPE("smollm-135m", "llama", 576, 30, 9, 3, 1536, 49152, 2048, 1e4f, 1e-5f, true)},
    {SHAPE("qwen2-0.5b", "qwen2", 896, 24, 14, 2, 4864, 151936, 32768, 1e6f, 1e-6f, true)},
    {SHAPE("llama-1b", "llama", 2048, 16, 32, 8, 8192, 128256, 131072, 5e5f, 1e-5f, true)},
    {SHAPE("tinyllama-1.1b", "llama", 2048, 22, 32, 4, 5632, 32000, 2048, 1e4f, 1e-5f, false)},
    {SHAPE("qwen3-0.6b", "qwen3", 1024, 28, 16, 8, 3072, 151936, 40960, 1e6f, 1e-6f, true),
     .head_dim = 128},
    {SHAPE("gemma3-270m", "gemma3", 640, 18, 4, 1, 2048, 262144, 32768, 1e6f, 1e-6f, true),
     .head_dim = 256, .n_swa = 512},
    {SHAPE("gemma3-1b", "gemma3", 1152, 26, 4, 1, 6912, 262144, 32768, 1e6f, 1e-6f, true),
     .head_dim = 256, .n_swa = 512},
    /* Phi-4-mini: 3072 / 24 = 128 per head, 96 of them rotated, LongRoPE. */
    {SHAPE("phi4-mini", "phi3", 3072, 32, 24, 8, 8192, 200064, 131072, 1e4f, 1e-5f, false),
     .n_rot = 96, .longrope_ctx = 4096},
    {SHAPE("smollm3-3b", "smollm3", 2048, 36, 16, 4, 11008, 128256, 65536, 5e6f, 1e-6f, true)},
    {SHAPE("lfm2-350m", "lfm2", 1024, 16, 16, 8, 4608, 65536, 128000, 1e6f, 1e-5f, true),
     .conv_L = 3, .attn_layers = LFM2_350M_ATTN},
    /* Tiny models of each new architecture, for tests: quick to build, and
     * each keeps what sets its architecture apart (a head size that is not
     * n_embd / n_head, sliding windows, partial rotary and LongRoPE, layers
     * without RoPE, convolution layers on both sides of an attention one). */
    {SHAPE("tiny-qwen3", "qwen3", 64, 2, 4, 2, 128, 300, 256, 1e6f, 1e-6f, true), .head_dim = 32},
    {SHAPE("tiny-gemma3", "gemma3", 64, 6, 4, 1, 128, 300, 256, 1e6f, 1e-6f, true),
     .head_dim = 32, .n_swa = 8},
    {SHAPE("tiny-phi3", "phi3", 64, 2, 4, 2, 128, 300, 256, 1e4f, 1e-5f, false), .n_rot = 12,
     .longrope_ctx = 64},
    {SHAPE("tiny-smollm3", "smollm3", 64, 4, 4, 2, 128, 300, 256, 5e6f, 1e-6f, true)},
    {SHAPE("tiny-lfm2", "lfm2", 64, 4, 4, 2, 128, 300, 256, 1e6f, 1e-5f, true), .conv_L = 3,
     .attn_layers = 1ull << 1 | 1ull << 3},
};
#define N_SHAPES (sizeof SHAPES / sizeof *SHAPES)

static const synth_arch ARCHS[] = {
    {.name = "llama"},
    {.name = "qwen2", .bias_qkv = true},
    {.name = "qwen3", .qk_norm = true},
    {.name = "gemma3", .qk_norm = true, .post_norms = true},
    {.name = "phi3", .fused = true},
    {.name = "smollm3"},
    {.name = "lfm2", .qk_norm = true, .conv = true},
};

const char *elm_synth_shape_name(size_t i) {
    return i < N_SHAPES ? SHAPES[i].name : NULL;
}

elm_synth_params elm_synth_default_params(void) {
    return (elm_synth_params){.shape = "smollm-135m", .type = "Q4_0", .output_type = NULL,
                              .vocab_size = 0, .n_layer = 0, .seed = 42};
}

uint32_t elmi_synth_head_dim(const synth_shape *s) {
    return s->head_dim ? s->head_dim : s->n_embd / s->n_head;
}

uint32_t elmi_synth_n_rot(const synth_shape *s) {
    return s->n_rot ? s->n_rot : elmi_synth_head_dim(s);
}

bool elmi_synth_layer_attends(const synth_shape *s, uint32_t il) {
    return s->attn_layers == 0 || (il < 64 && (s->attn_layers >> il & 1));
}

static const synth_shape *find_shape(const char *name) {
    for (size_t i = 0; i < N_SHAPES; i++)
        if (name && strcmp(SHAPES[i].name, name) == 0) return &SHAPES[i];
    return NULL;
}

static const synth_arch *find_arch(const char *name) {
    for (size_t i = 0; i < sizeof ARCHS / sizeof *ARCHS; i++)
        if (strcmp(ARCHS[i].name, name) == 0) return &ARCHS[i];
    return NULL;
}

/* "smollm-135m, qwen2-0.5b, ...": every shape, for messages. */
static void shape_list(char *buf, size_t cap) {
    size_t o = 0;
    buf[0] = 0;
    for (size_t i = 0; i < N_SHAPES && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%s", i ? ", " : "", SHAPES[i].name);
}

static int type_by_name(const char *name) {
    for (int t = 0; t < QT_COUNT; t++)
        if (elmi_qtype_supported(t) && strcmp(elmi_qtype_name(t), name) == 0) return t;
    return -1;
}

/* ------------------------------------------------------------------ metadata */

/* lfm2: head_count_kv per layer, 0 on the convolution layers. */
static elm_status set_heads_kv(const synth_ctx *c, const char *key) {
    const synth_shape *s = c->sh;
    if (!c->arch->conv) return elmi_gguf_set_u32(c->w, key, s->n_head_kv);
    int32_t *kv = elmi_malloc(s->n_layer * sizeof *kv);
    if (!kv) return ELM_ERR_NO_MEMORY;
    for (uint32_t il = 0; il < s->n_layer; il++)
        kv[il] = elmi_synth_layer_attends(s, il) ? (int32_t)s->n_head_kv : 0;
    elm_status st = elmi_gguf_set_arr_data(c->w, key, GGUF_TYPE_INT32, kv, s->n_layer);
    elmi_free(kv);
    return st;
}

/* The factor LongRoPE scales attention by beyond the original context, as
 * the converters compute it: sqrt(1 + ln(scale) / ln(original context)). */
static float longrope_attn_factor(const synth_shape *s) {
    double scale = (double)s->n_ctx / s->longrope_ctx;
    return scale <= 1.0 ? 1.0f : (float)sqrt(1.0 + log(scale) / log((double)s->longrope_ctx));
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
    ELM_TRY(set_heads_kv(c, K("attention.head_count_kv")));
    if (s->head_dim) {
        ELM_TRY(elmi_gguf_set_u32(c->w, K("attention.key_length"), s->head_dim));
        ELM_TRY(elmi_gguf_set_u32(c->w, K("attention.value_length"), s->head_dim));
    }
    ELM_TRY(elmi_gguf_set_u32(c->w, K("rope.dimension_count"), elmi_synth_n_rot(s)));
    ELM_TRY(elmi_gguf_set_f32(c->w, K("rope.freq_base"), s->rope_theta));
    ELM_TRY(elmi_gguf_set_f32(c->w, K("attention.layer_norm_rms_epsilon"), s->rms_eps));
    if (s->n_swa) ELM_TRY(elmi_gguf_set_u32(c->w, K("attention.sliding_window"), s->n_swa));
    if (s->conv_L) ELM_TRY(elmi_gguf_set_u32(c->w, K("shortconv.l_cache"), s->conv_L));
    if (s->longrope_ctx) {
        ELM_TRY(elmi_gguf_set_u32(c->w, K("rope.scaling.original_context_length"),
                                  s->longrope_ctx));
        ELM_TRY(elmi_gguf_set_f32(c->w, K("rope.scaling.attn_factor"), longrope_attn_factor(s)));
    }
#undef K
    return ELM_OK;
}

static elm_status add_hparams(synth_ctx *c, const char *model_name) {
    elm_status st = set_hparams(c, model_name);
    if (st != ELM_OK) return elmi_errorf(c->err, c->err_size, st, "cannot write the metadata");
    return ELM_OK;
}

/* LongRoPE's per-frequency factors (n_rot / 2 each): 1 within the original
 * context, a ramp from 1 to the context's scale beyond it. */
static elm_status add_longrope(synth_ctx *c) {
    const synth_shape *s = c->sh;
    int64_t n = elmi_synth_n_rot(s) / 2;
    float *f = elmi_malloc((size_t)n * sizeof *f);
    if (!f) return elmi_errorf(c->err, c->err_size, ELM_ERR_NO_MEMORY, "out of memory");
    float scale = (float)s->n_ctx / (float)s->longrope_ctx;
    for (int64_t i = 0; i < n; i++)
        f[i] = 1.0f + (scale - 1.0f) * (float)i / (float)(n > 1 ? n - 1 : 1);
    elm_status st = elmi_synth_add_f32(c, "rope_factors_long.weight", f, n);
    for (int64_t i = 0; i < n && st == ELM_OK; i++) f[i] = 1.0f;
    if (st == ELM_OK) st = elmi_synth_add_f32(c, "rope_factors_short.weight", f, n);
    elmi_free(f);
    return st;
}

/* ------------------------------------------------------------------ model */

/* The shape of p: its table entry with the vocabulary and depth overrides. */
static elm_status resolve_shape(const elm_synth_params *p, synth_shape *s, char *err,
                                size_t err_size) {
    const synth_shape *sh = find_shape(p->shape);
    if (!sh) {
        char list[512];
        shape_list(list, sizeof list);
        return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "unknown shape '%s' (%s)",
                           p->shape ? p->shape : "(null)", list);
    }
    *s = *sh;
    if (p->vocab_size) {
        if (p->vocab_size < 260 || p->vocab_size > 1000000)
            return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG,
                               "vocab size %u is out of range [260, 1000000]", p->vocab_size);
        s->n_vocab = p->vocab_size;
    }
    if (p->n_layer) {
        if (p->n_layer > sh->n_layer)
            return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG,
                               "n_layer %u is out of range [1, %u] for shape %s", p->n_layer,
                               sh->n_layer, sh->name);
        s->n_layer = p->n_layer;
    }
    return ELM_OK;
}

elm_status elmi_synth_build(const elm_synth_params *p, gguf_writer *w, char *err,
                            size_t err_size) {
    synth_shape s;
    ELM_TRY(resolve_shape(p, &s, err, err_size));
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
    /* The output projection is stored apart from the embeddings whenever its
     * type differs, as converters do. */
    bool tied = s.tied && out_type == type;
    const synth_arch *arch = find_arch(s.arch);
    if (!arch) return elmi_errorf(err, err_size, ELM_ERR_INTERNAL, "no writer for %s", s.arch);
    synth_ctx c = {w, &s, arch, p->seed, 0, err, err_size};
    char name[128];
    snprintf(name, sizeof name, "synthetic %s %s", s.name, p->type);
    ELM_TRY(add_hparams(&c, name));
    ELM_TRY(elmi_synth_add_vocab(&c, s.n_vocab));
    ELM_TRY(elmi_synth_add_tensor(&c, "token_embd.weight", type, s.n_embd, s.n_vocab, 0.02f * 10,
                                  0));
    /* lfm2 names its final norm after the embeddings. */
    const char *out_norm = arch->conv ? "token_embd_norm.weight" : "output_norm.weight";
    ELM_TRY(elmi_synth_add_tensor(&c, out_norm, QT_F32, s.n_embd, 1, 0.0f, 1.0f));
    if (!tied)
        ELM_TRY(elmi_synth_add_tensor(&c, "output.weight", out_type, s.n_embd, s.n_vocab,
                                      1.0f / sqrtf((float)s.n_embd), 0));
    if (s.longrope_ctx) ELM_TRY(add_longrope(&c));
    for (uint32_t il = 0; il < s.n_layer; il++) ELM_TRY(elmi_synth_add_layer(&c, il, type, q4km));
    return ELM_OK;
}

elm_status elm_synth_write(const elm_synth_params *p, const char *path, char *err,
                           size_t err_size) {
    if (!p || !path) return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "NULL argument");
    gguf_writer *w = elmi_gguf_writer_new();
    if (!w) return elmi_errorf(err, err_size, ELM_ERR_NO_MEMORY, "out of memory");
    char msg[ELM_ERR_LEN] = "";
    elm_status st = elmi_synth_build(p, w, err, err_size);
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
    elm_status st = elmi_synth_build(p, w, err, err_size);
    if (st != ELM_OK) goto done;
    st = elmi_gguf_write_memory(w, &data, &size);
    if (st != ELM_OK) elmi_errorf(err, err_size, st, "cannot serialize the model");
done:
    elmi_gguf_writer_free(w);
    if (st != ELM_OK) return st;
    return elmi_model_load_memory(label, data, size, mp, out, err, err_size);
}
