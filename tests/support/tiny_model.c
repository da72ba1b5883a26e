#include "support/tiny_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "quant/quant.h"

#define SPACE "\xE2\x96\x81" /* U+2581, SentencePiece's space */
#define N_SPECIAL 3
#define N_FIRST_PIECE (N_SPECIAL + 256)

tiny_model_opts tiny_model_default(void) {
    return (tiny_model_opts){
        .arch = "llama", .n_embd = 64, .n_layer = 2, .n_head = 4, .n_head_kv = 2,
        .n_ff = 128, .n_vocab = 300, .n_ctx = 256, .wtype = QT_F32, .seed = 1,
    };
}

tiny_model_opts tiny_model_qwen2(void) {
    tiny_model_opts o = tiny_model_default();
    o.arch = "qwen2";
    o.biases = true;
    o.tied = true;
    return o;
}

/* ------------------------------------------------------------ vocabulary */

/* Merges are reachable: every multi-character piece is the concatenation of
 * two earlier ones (or characters), as a SentencePiece BPE vocabulary is. */
static const char *const k_pieces[] = {
    SPACE, "e", "t", "a", "o", "i", "n", "s", "h", "r", "d", "l", "u", "g", "w", "c", "m", "f",
    "y", "p", "b", ",", ".", SPACE "t", "he", SPACE "a", "in", "th", SPACE "the", "er", "an",
    "re", "on", SPACE "s", SPACE "w", "nd", SPACE "o", "at", "en", SPACE "h", "ll", "ou", "ed",
    SPACE "b", SPACE "c", "ing", SPACE "and", SPACE "f", SPACE "m", "is", SPACE "i", "it",
};
#define N_FIXED ((int)(sizeof k_pieces / sizeof k_pieces[0]))

static bool is_fixed(const char *s) {
    for (int i = 0; i < N_FIXED; i++)
        if (strcmp(k_pieces[i], s) == 0) return true;
    return false;
}

/* Candidate j of the generated pieces that follow the fixed ones: letters,
 * space+letter, letter pairs, space+pairs, then "tokN". */
static void candidate(int j, char *buf, size_t cap) {
    if (j < 26) {
        snprintf(buf, cap, "%c", 'a' + j);
    } else if ((j -= 26) < 26) {
        snprintf(buf, cap, SPACE "%c", 'a' + j);
    } else if ((j -= 26) < 676) {
        snprintf(buf, cap, "%c%c", 'a' + j / 26, 'a' + j % 26);
    } else if ((j -= 676) < 676) {
        snprintf(buf, cap, SPACE "%c%c", 'a' + j / 26, 'a' + j % 26);
    } else {
        snprintf(buf, cap, "tok%d", j - 676);
    }
}

/* Writes piece k (0-based after the bytes); *next_j carries the generator. */
static void piece(int k, int *next_j, char *buf, size_t cap) {
    if (k < N_FIXED) {
        snprintf(buf, cap, "%s", k_pieces[k]);
        return;
    }
    do candidate((*next_j)++, buf, cap);
    while (is_fixed(buf));
}

void tiny_model_token(int i, char *buf, size_t cap) {
    static const char *const special[N_SPECIAL] = {"<unk>", "<s>", "</s>"};
    if (i < N_SPECIAL) {
        snprintf(buf, cap, "%s", special[i]);
    } else if (i < N_FIRST_PIECE) {
        snprintf(buf, cap, "<0x%02X>", i - N_SPECIAL);
    } else {
        int j = 0;
        for (int k = 0; k <= i - N_FIRST_PIECE; k++) piece(k, &j, buf, cap);
    }
}

typedef struct vocab {
    char (*text)[32];
    const char **ptrs;
    float *scores;
    int32_t *types;
} vocab;

static void elmi_vocab_free(vocab *v) {
    free(v->text);
    free(v->ptrs);
    free(v->scores);
    free(v->types);
}

static bool vocab_fill(vocab *v, int n) {
    v->text = calloc((size_t)n, sizeof *v->text);
    v->ptrs = calloc((size_t)n, sizeof *v->ptrs);
    v->scores = calloc((size_t)n, sizeof *v->scores);
    v->types = calloc((size_t)n, sizeof *v->types);
    if (!v->text || !v->ptrs || !v->scores || !v->types) return false;
    int j = 0;
    for (int i = 0; i < n; i++) {
        if (i < N_FIRST_PIECE) {
            tiny_model_token(i, v->text[i], sizeof v->text[i]);
            v->types[i] = i == 0 ? 2 : i < N_SPECIAL ? 3 : 6; /* unknown, control, byte */
        } else {
            piece(i - N_FIRST_PIECE, &j, v->text[i], sizeof v->text[i]);
            v->types[i] = 1; /* normal */
            v->scores[i] = -(float)(i - N_FIRST_PIECE);
        }
        v->ptrs[i] = v->text[i];
    }
    return true;
}

elm_status tiny_model_add_vocab(gguf_writer *w, int n_vocab) {
    if (n_vocab < 1) return ELM_ERR_INVALID_ARG;
    vocab v = {0};
    elm_status s = vocab_fill(&v, n_vocab) ? ELM_OK : ELM_ERR_NO_MEMORY;
    if (s == ELM_OK) s = elmi_gguf_set_str(w, "tokenizer.ggml.model", "llama");
    if (s == ELM_OK) s = elmi_gguf_set_arr_str(w, "tokenizer.ggml.tokens", v.ptrs, (uint64_t)n_vocab);
    if (s == ELM_OK)
        s = elmi_gguf_set_arr_data(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, v.scores,
                              (uint64_t)n_vocab);
    if (s == ELM_OK)
        s = elmi_gguf_set_arr_data(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, v.types,
                              (uint64_t)n_vocab);
    if (s == ELM_OK) s = elmi_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    if (s == ELM_OK) s = elmi_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    if (s == ELM_OK) s = elmi_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    elmi_vocab_free(&v);
    return s;
}

/* ------------------------------------------------------------ weights */

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *s) { return ((splitmix64(s) >> 11) + 0.5) * 0x1.0p-53; }

/* Each tensor's values depend only on the seed and its name, so replacing
 * one tensor or changing the layer count leaves the others as they were. */
static uint64_t tensor_seed(uint32_t seed, const char *name) {
    uint64_t h = 1469598103934665603ull ^ seed;
    for (const char *p = name; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h;
}

static void fill_normal(float *x, size_t n, float scale, uint64_t seed) {
    for (size_t i = 0; i < n; i++) {
        double u1 = uniform01(&seed), u2 = uniform01(&seed);
        x[i] = scale * (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
    }
}

typedef struct builder {
    gguf_writer *w;
    const tiny_model_opts *o;
    bool ok;
} builder;

static void add_f32(builder *b, const char *name, int64_t ne0, int64_t ne1, const float *x) {
    int64_t ne[2] = {ne0, ne1};
    size_t n = (size_t)(ne0 * (ne1 ? ne1 : 1));
    if (b->ok && elmi_gguf_add_tensor(b->w, name, QT_F32, ne1 ? 2 : 1, ne, x, n * sizeof(float)) !=
                     ELM_OK) {
        fprintf(stderr, "tiny_model: cannot add %s\n", name);
        b->ok = false;
    }
}

static void add_typed(builder *b, const char *name, int type, int64_t ne0, int64_t ne1,
                      const float *x) {
    if (type == QT_F32) {
        add_f32(b, name, ne0, ne1, x);
        return;
    }
    const qtype_traits *tr = elmi_qtype_get(type);
    size_t row;
    if (!tr || !tr->from_float || !elmi_qtype_row_bytes(type, ne0, &row)) {
        fprintf(stderr, "tiny_model: %s: type %s cannot hold rows of %lld values\n", name,
                elmi_qtype_name(type), (long long)ne0);
        b->ok = false;
        return;
    }
    void *q = malloc(row * (size_t)ne1);
    int64_t ne[2] = {ne0, ne1};
    if (!q) b->ok = false;
    else tr->from_float(x, q, ne0 * ne1);
    if (b->ok && elmi_gguf_add_tensor(b->w, name, type, 2, ne, q, row * (size_t)ne1) != ELM_OK) {
        fprintf(stderr, "tiny_model: cannot add %s\n", name);
        b->ok = false;
    }
    free(q);
}

static void add_weight(builder *b, const char *name, int64_t ne0, int64_t ne1, float scale) {
    size_t n = (size_t)(ne0 * (ne1 ? ne1 : 1));
    float *x = malloc(n * sizeof *x);
    if (!x) {
        b->ok = false;
        return;
    }
    fill_normal(x, n, scale, tensor_seed(b->o->seed, name));
    if (ne1) add_typed(b, name, b->o->wtype, ne0, ne1, x);
    else add_f32(b, name, ne0, 0, x);
    free(x);
}

static void add_norm(builder *b, const char *name, int64_t n) {
    float *x = malloc((size_t)n * sizeof *x);
    if (!x) {
        b->ok = false;
        return;
    }
    for (int64_t i = 0; i < n; i++) x[i] = 1.0f;
    add_f32(b, name, n, 0, x);
    free(x);
}

static void add_layer(builder *b, int il, bool biases) {
    const tiny_model_opts *o = b->o;
    const int64_t e = o->n_embd, kv = (int64_t)o->n_embd / o->n_head * o->n_head_kv;
    const float se = 1.0f / sqrtf((float)e), sf = 1.0f / sqrtf((float)o->n_ff);
    char name[64];
#define NAME(s) (snprintf(name, sizeof name, "blk.%d." s, il), name)
    add_norm(b, NAME("attn_norm.weight"), e);
    add_weight(b, NAME("attn_q.weight"), e, e, se);
    add_weight(b, NAME("attn_k.weight"), e, kv, se);
    add_weight(b, NAME("attn_v.weight"), e, kv, se);
    if (biases) {
        add_weight(b, NAME("attn_q.bias"), e, 0, 0.1f);
        add_weight(b, NAME("attn_k.bias"), kv, 0, 0.1f);
        add_weight(b, NAME("attn_v.bias"), kv, 0, 0.1f);
    }
    add_weight(b, NAME("attn_output.weight"), e, e, se);
    add_norm(b, NAME("ffn_norm.weight"), e);
    add_weight(b, NAME("ffn_gate.weight"), e, o->n_ff, se);
    add_weight(b, NAME("ffn_up.weight"), e, o->n_ff, se);
    add_weight(b, NAME("ffn_down.weight"), o->n_ff, e, sf);
#undef NAME
}

/* ------------------------------------------------------------ metadata */

static bool opts_valid(const tiny_model_opts *o) {
    bool ok = o->arch && o->n_embd > 0 && o->n_layer > 0 && o->n_head > 0 && o->n_head_kv > 0 &&
              o->n_ff > 0 && o->n_vocab > 0 && o->n_ctx > 0 && o->n_embd % o->n_head == 0 &&
              o->n_head % o->n_head_kv == 0;
    if (!ok) fprintf(stderr, "tiny_model: inconsistent options\n");
    return ok;
}

static elm_status add_hparams(gguf_writer *w, const tiny_model_opts *o, bool qwen2) {
    char key[128];
    elm_status s = elmi_gguf_set_str(w, "general.architecture", o->arch);
    if (s == ELM_OK) s = elmi_gguf_set_str(w, "general.name", qwen2 ? "tiny-qwen2" : "tiny-llama");
#define ARCH_U32(suffix, v)                                        \
    if (s == ELM_OK) {                                             \
        snprintf(key, sizeof key, "%s." suffix, o->arch);          \
        s = elmi_gguf_set_u32(w, key, (uint32_t)(v));                   \
    }
#define ARCH_F32(suffix, v)                                        \
    if (s == ELM_OK) {                                             \
        snprintf(key, sizeof key, "%s." suffix, o->arch);          \
        s = elmi_gguf_set_f32(w, key, (v));                             \
    }
    ARCH_U32("context_length", o->n_ctx);
    ARCH_U32("embedding_length", o->n_embd);
    ARCH_U32("block_count", o->n_layer);
    ARCH_U32("feed_forward_length", o->n_ff);
    ARCH_U32("attention.head_count", o->n_head);
    ARCH_U32("attention.head_count_kv", o->n_head_kv);
    ARCH_U32("rope.dimension_count", o->n_embd / o->n_head);
    ARCH_F32("attention.layer_norm_rms_epsilon", qwen2 ? 1e-6f : 1e-5f);
    ARCH_F32("rope.freq_base", qwen2 ? 1000000.0f : 10000.0f);
#undef ARCH_U32
#undef ARCH_F32
    return s;
}

gguf_writer *tiny_model_build(const tiny_model_opts *o) {
    if (!o || !opts_valid(o)) return NULL;
    bool qwen2 = strcmp(o->arch, "qwen2") == 0;
    gguf_writer *w = elmi_gguf_writer_new();
    if (!w) return NULL;
    builder b = {w, o, true};
    b.ok = add_hparams(w, o, qwen2) == ELM_OK && tiny_model_add_vocab(w, o->n_vocab) == ELM_OK;
    add_weight(&b, "token_embd.weight", o->n_embd, o->n_vocab, 1.0f);
    for (int il = 0; il < o->n_layer && b.ok; il++) add_layer(&b, il, o->biases || qwen2);
    add_norm(&b, "output_norm.weight", o->n_embd);
    if (!o->tied)
        add_weight(&b, "output.weight", o->n_embd, o->n_vocab, 1.0f / sqrtf((float)o->n_embd));
    if (!b.ok) {
        elmi_gguf_writer_free(w);
        return NULL;
    }
    return w;
}

int tiny_model_write(const tiny_model_opts *o, const char *path) {
    gguf_writer *w = tiny_model_build(o);
    if (!w) return -1;
    char err[256];
    elm_status s = elmi_gguf_write_file(w, path, err, sizeof err);
    if (s != ELM_OK) fprintf(stderr, "tiny_model: %s: %s\n", path, err);
    elmi_gguf_writer_free(w);
    return s == ELM_OK ? 0 : -1;
}

/* ------------------------------------------------------------ patching */

static gguf_file *open_buf(const void *buf, size_t size) {
    gguf_file *f = NULL;
    char err[256];
    if (elmi_gguf_open_memory(buf, size, &f, err, sizeof err) != ELM_OK)
        fprintf(stderr, "tiny_model: cannot parse the buffer: %s\n", err);
    return f;
}

static size_t kv_end(const gguf_kv *kv, size_t value, const uint8_t *base) {
    if (kv->type == GGUF_TYPE_STRING) return (size_t)((const uint8_t *)kv->v.str.ptr - base) +
                                                (size_t)kv->v.str.len;
    if (kv->type != GGUF_TYPE_ARRAY) return value + elmi_gguf_type_size(kv->type);
    if (kv->arr_type != GGUF_TYPE_STRING)
        return (size_t)((const uint8_t *)kv->arr_data - base) +
               (size_t)kv->arr_n * elmi_gguf_type_size(kv->arr_type);
    if (kv->arr_n == 0) return value + 12;
    const gguf_str *last = &kv->arr_strs[kv->arr_n - 1];
    return (size_t)((const uint8_t *)last->ptr - base) + (size_t)last->len;
}

static void kv_pos(const gguf_kv *kv, const uint8_t *base, tiny_kv_pos *out) {
    size_t key = (size_t)((const uint8_t *)kv->key.ptr - base);
    out->start = key - 8;
    out->type = key + (size_t)kv->key.len;
    out->value = out->type + 4;
    out->end = kv_end(kv, out->value, base);
}

bool tiny_find_kv(const void *buf, size_t size, const char *key, tiny_kv_pos *out) {
    gguf_file *f = open_buf(buf, size);
    const gguf_kv *kv = f ? elmi_gguf_find(f, key) : NULL;
    if (kv) kv_pos(kv, buf, out);
    elmi_gguf_close(f);
    return kv != NULL;
}

static void tensor_pos(const gguf_file *f, const gguf_tensor *t, tiny_tensor_pos *out) {
    const uint8_t *base = elmi_gguf_base(f);
    size_t name = (size_t)((const uint8_t *)t->name.ptr - base);
    out->start = name - 8;
    out->n_dims = name + (size_t)t->name.len;
    out->ne = out->n_dims + 4;
    out->type = out->ne + 8 * (size_t)t->n_dims;
    out->offset = out->type + 4;
    out->end = out->offset + 8;
    out->data = (size_t)((const uint8_t *)t->data - base);
}

bool tiny_find_tensor(const void *buf, size_t size, const char *name, tiny_tensor_pos *out) {
    gguf_file *f = open_buf(buf, size);
    const gguf_tensor *t = f ? elmi_gguf_find_tensor(f, name) : NULL;
    if (t) tensor_pos(f, t, out);
    elmi_gguf_close(f);
    return t != NULL;
}

bool tiny_layout(const void *buf, size_t size, size_t *infos_end, size_t *data_start) {
    gguf_file *f = open_buf(buf, size);
    if (!f) return false;
    uint64_t nt = elmi_gguf_n_tensors(f), nkv = elmi_gguf_n_kv(f);
    *infos_end = 24;
    if (nt > 0) {
        tiny_tensor_pos p;
        tensor_pos(f, elmi_gguf_tensor_at(f, nt - 1), &p);
        *infos_end = p.end;
    } else if (nkv > 0) {
        tiny_kv_pos p;
        kv_pos(elmi_gguf_kv_at(f, nkv - 1), buf, &p);
        *infos_end = p.end;
    }
    *data_start = (size_t)elmi_gguf_data_offset(f);
    elmi_gguf_close(f);
    return true;
}

void tiny_put_u32(void *buf, size_t pos, uint32_t v) { memcpy((uint8_t *)buf + pos, &v, 4); }
void tiny_put_u64(void *buf, size_t pos, uint64_t v) { memcpy((uint8_t *)buf + pos, &v, 8); }

int tiny_write_bytes(const char *path, const void *buf, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (!fp) return -1;
    size_t wrote = n ? fwrite(buf, 1, n, fp) : 0;
    int closed = fclose(fp);
    return wrote == n && closed == 0 ? 0 : -1;
}

uint8_t *tiny_serialize(const gguf_writer *w, size_t *size) {
    void *buf = NULL;
    if (elmi_gguf_write_memory(w, &buf, size) != ELM_OK) return NULL;
    /* The writer's buffer comes from the library's allocator; callers free
     * with free(). */
    uint8_t *copy = malloc(*size ? *size : 1);
    if (copy) memcpy(copy, buf, *size);
    elmi_free(buf);
    return copy;
}
