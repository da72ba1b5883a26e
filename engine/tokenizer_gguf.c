/*
 * tokenizer_gguf.c: elmi_vocab_load, reading the tokenizer.ggml.* keys of a GGUF
 * file into vocab_arrays.
 */
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/status.h"
#include "engine/tokenizer_impl.h"

#define KEY(name) "tokenizer.ggml." name

/* Copies a short name string; refuses NULs and names that do not fit. */
static elm_status get_name(const gguf_file *f, const char *key, bool required, char *out,
                           size_t cap, char *err, size_t es) {
    gguf_str s = {NULL, 0};
    out[0] = 0;
    elm_status st = elmi_gguf_get_str(f, key, required, &s, err, es);
    if (st || !s.ptr) return st;
    if (s.len >= cap || memchr(s.ptr, 0, s.len))
        return elmi_errorf(err, es, ELM_ERR_UNSUPPORTED, "%s: '%.*s' is not a known name", key,
                           (int)(s.len < 40 ? s.len : 40), s.ptr);
    memcpy(out, s.ptr, s.len);
    out[s.len] = 0;
    return ELM_OK;
}

static bool is_int_type(gguf_type t) {
    return t <= GGUF_TYPE_INT32 || t == GGUF_TYPE_UINT64 || t == GGUF_TYPE_INT64;
}

static bool is_signed_type(gguf_type t) {
    return t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 ||
           t == GGUF_TYPE_INT64;
}

/* A token id key: absent, negative or 0xFFFFFFFF (as some converters write
 * for "none") leave *out at -1; other values must be valid ids. */
static elm_status get_id(const gguf_file *f, const char *key, uint32_t n, int32_t *out,
                         char *err, size_t es) {
    const gguf_kv *kv = elmi_gguf_find(f, key);
    if (!kv) return ELM_OK;
    if (!is_int_type(kv->type))
        return elmi_errorf(err, es, ELM_ERR_FORMAT, "%s has type %s, expected an integer", key,
                           elmi_gguf_type_name(kv->type));
    bool sign = is_signed_type(kv->type);
    bool none = sign ? kv->v.i64 < 0 : (kv->v.u64 == UINT32_MAX || kv->v.u64 == UINT64_MAX);
    if (none) return ELM_OK;
    uint64_t id = sign ? (uint64_t)kv->v.i64 : kv->v.u64;
    if (id >= n)
        return elmi_errorf(err, es, ELM_ERR_FORMAT, "%s = %llu is out of range (%u tokens)", key,
                           (unsigned long long)id, n);
    *out = (int32_t)id;
    return ELM_OK;
}

static elm_status get_flag(const gguf_file *f, const char *key, int *out, char *err, size_t es) {
    bool b = false;
    if (!elmi_gguf_find(f, key)) return ELM_OK;
    elm_status st = elmi_gguf_get_bool(f, key, true, &b, err, es);
    if (!st) *out = b;
    return st;
}

/* An optional per-token array of 4-byte elements, copied out of the file
 * since GGUF does not align array data. *out stays NULL when absent. */
static elm_status get_token_array(const gguf_file *f, const char *key, gguf_type elem,
                                  uint32_t n, void **out, char *err, size_t es) {
    const gguf_kv *kv = NULL;
    elm_status st = elmi_gguf_get_arr(f, key, false, elem, &kv, err, es);
    if (st || !kv) return st;
    if (kv->arr_n != n)
        return elmi_errorf(err, es, ELM_ERR_FORMAT, "%s has %llu entries for %u tokens", key,
                           (unsigned long long)kv->arr_n, n);
    *out = elmi_malloc((size_t)n * 4);
    if (!*out) return ELM_ERR_NO_MEMORY;
    memcpy(*out, kv->arr_data, (size_t)n * 4);
    return ELM_OK;
}

static elm_status get_tokens(const gguf_file *f, vocab_arrays *a, char *err, size_t es) {
    const gguf_kv *kv = NULL;
    ELM_TRY(elmi_gguf_get_arr(f, KEY("tokens"), true, GGUF_TYPE_STRING, &kv, err, es));
    if (kv->arr_n == 0 || kv->arr_n > INT32_MAX)
        return elmi_errorf(err, es, ELM_ERR_FORMAT, KEY("tokens") " has %llu entries",
                           (unsigned long long)kv->arr_n);
    a->n_tokens = (uint32_t)kv->arr_n;
    a->tokens = kv->arr_strs;
    return ELM_OK;
}

static elm_status get_merges(const gguf_file *f, vocab_arrays *a, char *err, size_t es) {
    const gguf_kv *kv = NULL;
    ELM_TRY(elmi_gguf_get_arr(f, KEY("merges"), true, GGUF_TYPE_STRING, &kv, err, es));
    if (kv->arr_n > UINT32_MAX)
        return elmi_errorf(err, es, ELM_ERR_FORMAT, KEY("merges") " has too many entries");
    a->n_merges = (uint32_t)kv->arr_n;
    a->merges = kv->arr_strs;
    return ELM_OK;
}

static elm_status get_ids(const gguf_file *f, vocab_arrays *a, char *err, size_t es) {
    struct { const char *key; int32_t *id; } ids[] = {
        {KEY("bos_token_id"), &a->bos},     {KEY("eos_token_id"), &a->eos},
        {KEY("unknown_token_id"), &a->unk}, {KEY("padding_token_id"), &a->pad},
        {KEY("eot_token_id"), &a->eot},     {KEY("eom_token_id"), &a->eom},
    };
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        ELM_TRY(get_id(f, ids[i].key, a->n_tokens, ids[i].id, err, es));
    }
    ELM_TRY(get_flag(f, KEY("add_bos_token"), &a->add_bos, err, es));
    ELM_TRY(get_flag(f, KEY("add_eos_token"), &a->add_eos, err, es));
    return get_flag(f, KEY("add_space_prefix"), &a->add_space_prefix, err, es);
}

/* Reads every tokenizer key into *a, which points into model, pre and the
 * arrays *scores and *types (the caller's to free). */
static elm_status read_arrays(const gguf_file *f, vocab_arrays *a, char model[16], char pre[64],
                              float **scores, int32_t **types, char *err, size_t es) {
    ELM_TRY(get_name(f, KEY("model"), true, model, 16, err, es));
    if (strcmp(model, "llama") != 0 && strcmp(model, "gpt2") != 0)
        return elmi_errorf(err, es, ELM_ERR_UNSUPPORTED,
                           "tokenizer model '%s' is not supported (only 'llama' and 'gpt2')", model);
    ELM_TRY(get_name(f, KEY("pre"), false, pre, 64, err, es));
    ELM_TRY(get_tokens(f, a, err, es));
    ELM_TRY(get_token_array(f, KEY("scores"), GGUF_TYPE_FLOAT32, a->n_tokens, (void **)scores,
                            err, es));
    ELM_TRY(get_token_array(f, KEY("token_type"), GGUF_TYPE_INT32, a->n_tokens, (void **)types,
                            err, es));
    if (strcmp(model, "gpt2") == 0) ELM_TRY(get_merges(f, a, err, es));
    ELM_TRY(get_ids(f, a, err, es));
    a->model = model;
    a->pre = pre;
    a->scores = *scores;
    a->types = *types;
    return ELM_OK;
}

elm_status elmi_vocab_load(const gguf_file *f, elm_vocab **out, char *err, size_t err_size) {
    if (err && err_size) err[0] = 0;
    if (!out) return ELM_ERR_INVALID_ARG;
    *out = NULL;
    if (!f) return ELM_ERR_INVALID_ARG;
    vocab_arrays a = elmi_vocab_arrays_init();
    char model[16], pre[64];
    float *scores = NULL;
    int32_t *types = NULL;
    elm_status st = read_arrays(f, &a, model, pre, &scores, &types, err, err_size);
    if (st != ELM_OK) goto done;
    st = elmi_vocab_new_from_arrays(&a, out, err, err_size);
done:
    elmi_free(scores);
    elmi_free(types);
    return st;
}
