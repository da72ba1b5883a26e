/*
 * tokenizer.c: building a vocab from plain arrays, lookups, special-token
 * splitting, and the token -> text direction.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/status.h"
#include "engine/tokenizer_impl.h"
#include "engine/unicode.h"

/* Tokens longer than this are refused: no real vocabulary comes close, and
 * it keeps every size computation far from overflow. */
#define VOCAB_MAX_TOKEN_LEN (1u << 20)

vocab_arrays elmi_vocab_arrays_init(void) {
    vocab_arrays a;
    memset(&a, 0, sizeof a);
    a.bos = a.eos = a.unk = a.pad = a.eot = a.eom = -1;
    a.add_bos = a.add_eos = a.add_space_prefix = -1;
    return a;
}

/* ------------------------------------------------------------ hash tables */

static uint64_t hash_bytes(const char *s, size_t len) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static size_t table_size(size_t n) {
    size_t s = 16;
    while (s < 2 * n) s *= 2;
    return s;
}

int32_t elmi_vocab_lookup(const elm_vocab *v, const char *s, size_t len) {
    for (size_t i = hash_bytes(s, len) & v->index_mask;; i = (i + 1) & v->index_mask) {
        int32_t id = v->index[i];
        if (id < 0) return -1;
        const vocab_token *t = &v->tok[id];
        if (t->len == len && memcmp(v->text + t->off, s, len) == 0) return id;
    }
}

static elm_status build_index(elm_vocab *v) {
    size_t size = table_size(v->n_tokens);
    v->index = elmi_malloc(size * sizeof *v->index);
    if (!v->index) return ELM_ERR_NO_MEMORY;
    memset(v->index, 0xff, size * sizeof *v->index);
    v->index_mask = size - 1;
    for (uint32_t id = 0; id < v->n_tokens; id++) {
        const vocab_token *t = &v->tok[id];
        if (t->len == 0) continue; /* empty text can never be matched */
        const char *s = v->text + t->off;
        size_t i = hash_bytes(s, t->len) & v->index_mask;
        for (; v->index[i] >= 0; i = (i + 1) & v->index_mask) {
            const vocab_token *o = &v->tok[v->index[i]];
            if (o->len == t->len && memcmp(v->text + o->off, s, t->len) == 0) break;
        }
        if (v->index[i] < 0) v->index[i] = (int32_t)id; /* duplicates: the lowest id wins */
    }
    return ELM_OK;
}

const vocab_merge *elmi_vocab_merge_find(const elm_vocab *v, int32_t left, int32_t right) {
    if (!v->merges || left < 0 || right < 0) return NULL;
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    for (size_t i = hash_u64(key) & v->merge_mask;; i = (i + 1) & v->merge_mask) {
        const vocab_merge *m = &v->merges[i];
        if (m->result < 0) return NULL;
        if (m->key == key) return m;
    }
}

/* Splits "left right" at a space such that both halves and their
 * concatenation are tokens. Returns false for an unusable merge. */
static bool parse_merge(const elm_vocab *v, gguf_str m, char *buf, int32_t *l, int32_t *r,
                        int32_t *res) {
    for (size_t sp = 1; sp + 1 < m.len; sp++) {
        if (m.ptr[sp] != ' ') continue;
        *l = elmi_vocab_lookup(v, m.ptr, sp);
        *r = elmi_vocab_lookup(v, m.ptr + sp + 1, m.len - sp - 1);
        if (*l < 0 || *r < 0) continue;
        memcpy(buf, m.ptr, sp);
        memcpy(buf + sp, m.ptr + sp + 1, m.len - sp - 1);
        *res = elmi_vocab_lookup(v, buf, m.len - 1);
        if (*res >= 0) return true;
    }
    return false;
}

static void merge_insert(elm_vocab *v, int32_t l, int32_t r, int32_t res, uint32_t rank) {
    uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    size_t i = hash_u64(key) & v->merge_mask;
    while (v->merges[i].result >= 0 && v->merges[i].key != key) i = (i + 1) & v->merge_mask;
    if (v->merges[i].result >= 0) return; /* a repeated pair keeps its first (best) rank */
    v->merges[i] = (vocab_merge){key, res, rank};
}

static elm_status build_merges(elm_vocab *v, const vocab_arrays *a, char *err, size_t es) {
    if (a->n_merges == 0) return ELM_OK;
    if (!a->merges)
        return elmi_errorf(err, es, ELM_ERR_INVALID_ARG, "tokenizer: %u merges but no merge array",
                           a->n_merges);
    size_t size = table_size(a->n_merges), longest = 1;
    for (uint32_t i = 0; i < a->n_merges; i++)
        if (a->merges[i].len > longest && a->merges[i].len <= 2 * (uint64_t)VOCAB_MAX_TOKEN_LEN)
            longest = a->merges[i].len;
    v->merges = elmi_malloc(size * sizeof *v->merges);
    char *buf = elmi_malloc(longest);
    if (!v->merges || !buf) {
        elmi_free(buf);
        return ELM_ERR_NO_MEMORY;
    }
    for (size_t i = 0; i < size; i++) v->merges[i] = (vocab_merge){0, -1, 0};
    v->merge_mask = size - 1;
    for (uint32_t rank = 0; rank < a->n_merges; rank++) {
        gguf_str m = a->merges[rank];
        int32_t l, r, res;
        if (m.len > 2 * (uint64_t)VOCAB_MAX_TOKEN_LEN || (m.len && !m.ptr)) continue;
        if (parse_merge(v, m, buf, &l, &r, &res)) merge_insert(v, l, r, res, rank);
    }
    elmi_free(buf);
    return ELM_OK;
}

/* --------------------------------------------------------- token metadata */

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* The byte of a "<0xHH>" text, or -1. */
static int parse_byte_token(const char *s, size_t len) {
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int hi = hex_digit(s[3]), lo = hex_digit(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

static elm_status check_arrays(const vocab_arrays *a, char *err, size_t es) {
    if (a->n_tokens == 0 || a->n_tokens > (uint32_t)INT32_MAX || !a->tokens)
        return elmi_errorf(err, es, ELM_ERR_FORMAT, "tokenizer: bad token count %u", a->n_tokens);
    for (uint32_t i = 0; i < a->n_tokens; i++) {
        if (a->tokens[i].len > VOCAB_MAX_TOKEN_LEN || (a->tokens[i].len && !a->tokens[i].ptr))
            return elmi_errorf(err, es, ELM_ERR_FORMAT, "tokenizer: token %u has a bad length", i);
        if (a->types && (a->types[i] < 0 || a->types[i] > VOCAB_TT_BYTE))
            return elmi_errorf(err, es, ELM_ERR_FORMAT, "tokenizer: token %u has unknown type %d",
                               i, (int)a->types[i]);
        if (a->scores && isnan(a->scores[i]))
            return elmi_errorf(err, es, ELM_ERR_FORMAT, "tokenizer: token %u has a NaN score", i);
    }
    const int32_t ids[] = {a->bos, a->eos, a->unk, a->pad, a->eot, a->eom};
    const char *names[] = {"bos", "eos", "unknown", "padding", "eot", "eom"};
    for (int i = 0; i < 6; i++) {
        if (ids[i] < -1 || (ids[i] >= 0 && (uint32_t)ids[i] >= a->n_tokens))
            return elmi_errorf(err, es, ELM_ERR_FORMAT,
                               "tokenizer: %s token id %d is out of range (%u tokens)", names[i],
                               (int)ids[i], a->n_tokens);
    }
    return ELM_OK;
}

/* Copies texts, scores and types; malformed byte tokens become normal text,
 * and without a type array "<0xHH>" tokens are taken as byte tokens. */
static elm_status copy_tokens(elm_vocab *v, const vocab_arrays *a) {
    size_t total = 0;
    for (uint32_t i = 0; i < a->n_tokens; i++) total += a->tokens[i].len;
    v->tok = elmi_calloc(a->n_tokens, sizeof *v->tok);
    v->text = elmi_malloc(total + 1);
    if (!v->tok || !v->text) return ELM_ERR_NO_MEMORY;
    size_t off = 0;
    for (uint32_t i = 0; i < a->n_tokens; i++) {
        vocab_token *t = &v->tok[i];
        t->off = off;
        t->len = a->tokens[i].len;
        if (t->len) memcpy(v->text + off, a->tokens[i].ptr, t->len);
        off += t->len;
        t->score = a->scores ? a->scores[i] : 0.0f;
        t->type = a->types ? (uint8_t)a->types[i] : VOCAB_TT_NORMAL;
        bool is_byte = parse_byte_token(v->text + t->off, t->len) >= 0;
        if (t->type == VOCAB_TT_BYTE && !is_byte) t->type = VOCAB_TT_NORMAL;
        if (!a->types && is_byte && v->kind == VOCAB_SPM) t->type = VOCAB_TT_BYTE;
    }
    v->text[total] = 0;
    return ELM_OK;
}

static void build_byte_tokens(elm_vocab *v) {
    for (int b = 0; b < 256; b++) v->byte_tok[b] = -1;
    if (v->kind == VOCAB_BPE) {
        for (int b = 0; b < 256; b++) {
            char s[4];
            size_t n = elmi_utf8_encode(elmi_bytelevel_cp((uint8_t)b), s);
            v->byte_tok[b] = elmi_vocab_lookup(v, s, n);
        }
        return;
    }
    for (uint32_t id = 0; id < v->n_tokens; id++) {
        const vocab_token *t = &v->tok[id];
        if (t->type != VOCAB_TT_BYTE) continue;
        int b = parse_byte_token(v->text + t->off, t->len);
        if (b >= 0 && v->byte_tok[b] < 0) v->byte_tok[b] = (int32_t)id;
    }
}

/* ------------------------------------------------------- special tokens */

typedef struct special_key {
    uint8_t first;
    size_t len;
    int32_t id;
} special_key;

static int special_cmp(const void *pa, const void *pb) {
    const special_key *a = pa, *b = pb;
    if (a->first != b->first) return a->first < b->first ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->id < b->id ? -1 : (a->id > b->id);
}

static bool is_special_type(uint8_t t) {
    return t == VOCAB_TT_CONTROL || t == VOCAB_TT_USER_DEFINED || t == VOCAB_TT_UNKNOWN;
}

static elm_status build_specials(elm_vocab *v) {
    uint32_t n = 0;
    for (uint32_t id = 0; id < v->n_tokens; id++)
        if (is_special_type(v->tok[id].type) && v->tok[id].len) n++;
    special_key *keys = elmi_malloc((n ? n : 1) * sizeof *keys);
    v->special = elmi_malloc((n ? n : 1) * sizeof *v->special);
    if (!keys || !v->special) {
        elmi_free(keys);
        return ELM_ERR_NO_MEMORY;
    }
    uint32_t k = 0;
    for (uint32_t id = 0; id < v->n_tokens; id++) {
        const vocab_token *t = &v->tok[id];
        if (is_special_type(t->type) && t->len)
            keys[k++] = (special_key){(uint8_t)v->text[t->off], t->len, (int32_t)id};
    }
    qsort(keys, n, sizeof *keys, special_cmp);
    memset(v->special_start, 0, sizeof v->special_start);
    for (uint32_t i = 0; i < n; i++) {
        v->special[i] = keys[i].id;
        v->special_start[keys[i].first + 1]++;
    }
    for (int b = 0; b < 256; b++) v->special_start[b + 1] += v->special_start[b];
    elmi_free(keys);
    return ELM_OK;
}

/* Texts that end a turn in common chat formats; a control token with one of
 * these texts stops generation even when the file names no EOT id. */
static const char *const eog_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
    "<|eom_id|>", "<|end_of_text|>", "<EOT>",
};

static void eog_add(elm_vocab *v, int32_t id) {
    if (id < 0) return;
    for (uint32_t i = 0; i < v->n_eog; i++)
        if (v->eog[i] == id) return;
    v->eog[v->n_eog++] = id;
}

static elm_status build_eog(elm_vocab *v) {
    const size_t n_texts = sizeof eog_texts / sizeof eog_texts[0];
    v->eog = elmi_malloc((3 + n_texts) * sizeof *v->eog);
    if (!v->eog) return ELM_ERR_NO_MEMORY;
    eog_add(v, v->eos);
    eog_add(v, v->eot);
    eog_add(v, v->eom);
    for (size_t i = 0; i < n_texts; i++) {
        int32_t id = elmi_vocab_lookup(v, eog_texts[i], strlen(eog_texts[i]));
        if (id >= 0 && v->tok[id].type == VOCAB_TT_CONTROL) eog_add(v, id);
    }
    return ELM_OK;
}

/* ------------------------------------------------------------ pieces */

static const char unk_piece[] = " \xe2\x81\x87 "; /* SentencePiece renders <unk> as " ⁇ " */

static size_t spm_piece(const char *s, size_t n, char *out) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (i + 2 < n && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
            out[k++] = ' ';
            i += 2;
        } else {
            out[k++] = s[i];
        }
    }
    return k;
}

static size_t bpe_piece(const char *s, size_t n, char *out) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        bool valid;
        uint32_t cp;
        size_t len = elmi_utf8_next((const unsigned char *)s + i, n - i, &valid, &cp);
        int b = valid ? elmi_bytelevel_byte(cp) : -1;
        if (b >= 0) {
            out[k++] = (char)b;
        } else {
            memcpy(out + k, s + i, len);
            k += len;
        }
        i += len;
    }
    return k;
}

static size_t render_piece(const elm_vocab *v, const vocab_token *t, char *out) {
    const char *s = v->text + t->off;
    switch (t->type) {
    case VOCAB_TT_CONTROL:
    case VOCAB_TT_UNUSED:
        return 0;
    case VOCAB_TT_BYTE:
        out[0] = (char)parse_byte_token(s, t->len);
        return 1;
    case VOCAB_TT_UNKNOWN:
        memcpy(out, unk_piece, sizeof unk_piece - 1);
        return sizeof unk_piece - 1;
    case VOCAB_TT_USER_DEFINED:
        memcpy(out, s, t->len);
        return t->len;
    default:
        return v->kind == VOCAB_SPM ? spm_piece(s, t->len, out) : bpe_piece(s, t->len, out);
    }
}

static elm_status build_pieces(elm_vocab *v) {
    size_t total = 0;
    for (uint32_t id = 0; id < v->n_tokens; id++) total += v->tok[id].len + sizeof unk_piece;
    v->pieces = elmi_malloc(total);
    if (!v->pieces) return ELM_ERR_NO_MEMORY;
    size_t off = 0;
    for (uint32_t id = 0; id < v->n_tokens; id++) {
        vocab_token *t = &v->tok[id];
        t->piece_off = off;
        t->piece_len = render_piece(v, t, v->pieces + off);
        off += t->piece_len;
    }
    return ELM_OK;
}

/* ------------------------------------------------------------- building */

static elm_status set_model(elm_vocab *v, const vocab_arrays *a, char *err, size_t es) {
    if (a->model && strcmp(a->model, "llama") == 0) {
        v->kind = VOCAB_SPM;
    } else if (a->model && strcmp(a->model, "gpt2") == 0) {
        v->kind = VOCAB_BPE;
    } else {
        return elmi_errorf(err, es, ELM_ERR_UNSUPPORTED,
                           "tokenizer model '%.40s' is not supported (only 'llama' and 'gpt2')",
                           a->model ? a->model : "");
    }
    snprintf(v->model, sizeof v->model, "%s", a->model);
    const char *pre = a->pre ? a->pre : "";
    if (strlen(pre) >= sizeof v->pre)
        return elmi_errorf(err, es, ELM_ERR_UNSUPPORTED,
                           "tokenizer: pre-tokenizer name '%.40s...' is too long", pre);
    snprintf(v->pre, sizeof v->pre, "%s", pre);
    return ELM_OK;
}

static void set_flags(elm_vocab *v, const vocab_arrays *a) {
    v->bos = a->bos;
    v->eos = a->eos;
    v->unk = a->unk;
    v->pad = a->pad;
    v->eot = a->eot;
    v->eom = a->eom;
    bool spm = v->kind == VOCAB_SPM;
    /* Llama 3 and Tekken vocabularies add BOS unless the file says otherwise. */
    bool bos_default = spm || elmi_pre_adds_bos(v->pre);
    v->add_bos = (a->add_bos < 0 ? bos_default : a->add_bos != 0) && v->bos >= 0;
    v->add_eos = a->add_eos > 0 && v->eos >= 0;
    /* Only the SentencePiece tokenizer knows a space prefix. */
    v->add_space_prefix = spm && a->add_space_prefix != 0;
}

static elm_status vocab_build(elm_vocab *v, const vocab_arrays *a, char *err, size_t es) {
    ELM_TRY(set_model(v, a, err, es));
    ELM_TRY(check_arrays(a, err, es));
    v->n_tokens = a->n_tokens;
    set_flags(v, a);
    ELM_TRY(copy_tokens(v, a));
    ELM_TRY(build_index(v));
    build_byte_tokens(v);
    if (v->kind == VOCAB_BPE) ELM_TRY(build_merges(v, a, err, es));
    ELM_TRY(build_specials(v));
    ELM_TRY(build_eog(v));
    ELM_TRY(build_pieces(v));
    if (v->kind == VOCAB_BPE) return elmi_pre_init(v, err, es);
    return ELM_OK;
}

elm_status elmi_vocab_new_from_arrays(const vocab_arrays *a, elm_vocab **out, char *err,
                                 size_t err_size) {
    if (err && err_size) err[0] = 0;
    if (!out) return ELM_ERR_INVALID_ARG;
    *out = NULL;
    if (!a) return ELM_ERR_INVALID_ARG;
    elm_vocab *v = elmi_calloc(1, sizeof *v);
    if (!v) return ELM_ERR_NO_MEMORY;
    elm_status st = vocab_build(v, a, err, err_size);
    if (st) {
        if (st == ELM_ERR_NO_MEMORY && err && err_size && !err[0])
            elmi_errorf(err, err_size, st, "tokenizer: out of memory");
        elmi_vocab_free(v);
        return st;
    }
    *out = v;
    return ELM_OK;
}

void elmi_vocab_free(elm_vocab *v) {
    if (!v) return;
    for (int i = 0; i < v->n_re; i++) pcre2_code_free(v->re[i]);
    elmi_free(v->tok);
    elmi_free(v->text);
    elmi_free(v->pieces);
    elmi_free(v->index);
    elmi_free(v->merges);
    elmi_free(v->special);
    elmi_free(v->eog);
    elmi_free(v);
}

/* ------------------------------------------------------------ accessors */

vocab_kind elmi_vocab_get_kind(const elm_vocab *v) { return v->kind; }
const char *elmi_vocab_model_name(const elm_vocab *v) { return v->model; }
const char *elmi_vocab_pre_name(const elm_vocab *v) { return v->pre; }
uint32_t elmi_vocab_n_tokens(const elm_vocab *v) { return v->n_tokens; }
int32_t elmi_vocab_bos(const elm_vocab *v) { return v->bos; }
int32_t elmi_vocab_eos(const elm_vocab *v) { return v->eos; }
int32_t elmi_vocab_unk(const elm_vocab *v) { return v->unk; }
int32_t elmi_vocab_pad(const elm_vocab *v) { return v->pad; }
int32_t elmi_vocab_eot(const elm_vocab *v) { return v->eot; }
int32_t elmi_vocab_eom(const elm_vocab *v) { return v->eom; }
bool elmi_vocab_add_bos(const elm_vocab *v) { return v->add_bos; }
bool elmi_vocab_add_eos(const elm_vocab *v) { return v->add_eos; }
bool elmi_vocab_add_space_prefix(const elm_vocab *v) { return v->add_space_prefix; }

static bool id_ok(const elm_vocab *v, int32_t id) {
    return v && id >= 0 && (uint32_t)id < v->n_tokens;
}

bool elmi_vocab_is_eog(const elm_vocab *v, int32_t id) {
    if (!id_ok(v, id)) return false;
    for (uint32_t i = 0; i < v->n_eog; i++)
        if (v->eog[i] == id) return true;
    return false;
}

const char *elmi_vocab_token_text(const elm_vocab *v, int32_t id, size_t *len) {
    if (!id_ok(v, id)) return NULL;
    if (len) *len = v->tok[id].len;
    return v->text + v->tok[id].off;
}

int elmi_vocab_token_type(const elm_vocab *v, int32_t id) {
    return id_ok(v, id) ? v->tok[id].type : -1;
}

float elmi_vocab_token_score(const elm_vocab *v, int32_t id) {
    return id_ok(v, id) ? v->tok[id].score : 0.0f;
}

int32_t elmi_vocab_find(const elm_vocab *v, const char *text, size_t len) {
    if (!v || (!text && len) || len == 0) return -1;
    return elmi_vocab_lookup(v, text, len);
}

/* ------------------------------------------------------------ tokenize */

/* The longest special token at the start of s, or -1. */
static int32_t match_special(const elm_vocab *v, const char *s, size_t n, bool parse_special) {
    uint8_t b = (uint8_t)s[0];
    for (uint32_t i = v->special_start[b]; i < v->special_start[b + 1]; i++) {
        const vocab_token *t = &v->tok[v->special[i]];
        if (!parse_special && t->type != VOCAB_TT_USER_DEFINED) continue;
        if (t->len <= n && memcmp(v->text + t->off, s, t->len) == 0) return v->special[i];
    }
    return -1;
}

static elm_status tokenize_text(const elm_vocab *v, const char *s, size_t n, bool after_special,
                                tok_sink *sink) {
    if (v->kind == VOCAB_SPM)
        return elmi_spm_tokenize(v, s, n, v->add_space_prefix && after_special, sink);
    return elmi_bpe_tokenize(v, s, n, sink);
}

static elm_status tokenize_all(const elm_vocab *v, const char *text, size_t len,
                               bool parse_special, tok_sink *sink) {
    size_t frag = 0;
    bool after_special = true; /* the text's start counts as following a special token */
    for (size_t pos = 0; pos < len;) {
        int32_t id = match_special(v, text + pos, len - pos, parse_special);
        if (id < 0) {
            pos++;
            continue;
        }
        if (pos > frag) {
            ELM_TRY(tokenize_text(v, text + frag, pos - frag, after_special, sink));
        }
        sink_push(sink, id);
        pos += v->tok[id].len;
        frag = pos;
        after_special = true;
    }
    if (frag < len) return tokenize_text(v, text + frag, len - frag, after_special, sink);
    return ELM_OK;
}

elm_status elmi_vocab_tokenize(const elm_vocab *v, const char *text, size_t len, bool add_bos,
                          bool parse_special, int32_t *out, size_t cap, size_t *n_out) {
    if (n_out) *n_out = 0;
    if (!v || !n_out || (!text && len) || (!out && cap)) return ELM_ERR_INVALID_ARG;
    tok_sink sink = {out, cap, 0};
    if (add_bos && v->add_bos) sink_push(&sink, v->bos);
    ELM_TRY(tokenize_all(v, text, len, parse_special, &sink));
    if (add_bos && v->add_eos) sink_push(&sink, v->eos);
    *n_out = sink.n;
    return sink.n > cap ? ELM_ERR_BUFFER_TOO_SMALL : ELM_OK;
}

/* ---------------------------------------------------------- detokenize */

elm_status elmi_vocab_token_to_piece(const elm_vocab *v, int32_t id, char *buf, size_t cap,
                                size_t *len) {
    if (len) *len = 0;
    if (!len || (!buf && cap) || !id_ok(v, id)) return ELM_ERR_INVALID_ARG;
    const vocab_token *t = &v->tok[id];
    *len = t->piece_len;
    if (t->piece_len > cap) return ELM_ERR_BUFFER_TOO_SMALL;
    if (t->piece_len) memcpy(buf, v->pieces + t->piece_off, t->piece_len);
    return ELM_OK;
}

/* Copies raw to buf (as far as it fits), replacing each maximal ill-formed
 * subpart with U+FFFD; returns the full output length. */
static size_t sanitize_utf8(const char *raw, size_t n, char *buf, size_t cap) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        bool valid;
        size_t len = elmi_utf8_next((const unsigned char *)raw + i, n - i, &valid, NULL);
        const char *src = valid ? raw + i : "\xef\xbf\xbd";
        size_t m = valid ? len : 3;
        for (size_t j = 0; j < m; j++, k++)
            if (k < cap) buf[k] = src[j];
        i += len;
    }
    return k;
}

elm_status elmi_vocab_detokenize(const elm_vocab *v, const int32_t *ids, size_t n, char *buf,
                            size_t cap, size_t *len) {
    if (len) *len = 0;
    if (!v || !len || (!ids && n) || (!buf && cap)) return ELM_ERR_INVALID_ARG;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!id_ok(v, ids[i])) return ELM_ERR_INVALID_ARG;
        total += v->tok[ids[i]].piece_len;
    }
    char *raw = elmi_malloc(total ? total : 1);
    if (!raw) return ELM_ERR_NO_MEMORY;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const vocab_token *t = &v->tok[ids[i]];
        memcpy(raw + k, v->pieces + t->piece_off, t->piece_len);
        k += t->piece_len;
    }
    size_t skip = v->add_space_prefix && k > 0 && raw[0] == ' ';
    size_t out = sanitize_utf8(raw + skip, k - skip, buf, cap);
    elmi_free(raw);
    *len = out;
    if (out < cap) buf[out] = 0;
    return out > cap ? ELM_ERR_BUFFER_TOO_SMALL : ELM_OK;
}

static bool pair_before(const merge_pair *a, const merge_pair *b) {
    return a->priority > b->priority || (a->priority == b->priority && a->left < b->left);
}

void elmi_merge_heap_push(merge_heap *h, merge_pair p) {
    size_t i = h->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!pair_before(&p, &h->v[parent])) break;
        h->v[i] = h->v[parent];
        i = parent;
    }
    h->v[i] = p;
}

merge_pair elmi_merge_heap_pop(merge_heap *h) {
    merge_pair top = h->v[0], last = h->v[--h->n];
    size_t i = 0, n = h->n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && pair_before(&h->v[c + 1], &h->v[c])) c++;
        if (!pair_before(&h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (n) h->v[i] = last;
    return top;
}
