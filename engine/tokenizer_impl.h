/*
 * tokenizer_impl.h: the vocab's layout, shared by tokenizer*.c only.
 */
#ifndef ELM_TOKENIZER_IMPL_H
#define ELM_TOKENIZER_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "engine/tokenizer.h"

#define ELMI_PRE_MAX_REGEXES 6 /* the longest sequence (deepseek-llm) */

typedef struct vocab_token {
    size_t off, len;             /* text in v->text */
    size_t piece_off, piece_len; /* detokenized bytes in v->pieces */
    float score;
    uint8_t type;                /* vocab_tt; malformed BYTE becomes NORMAL */
} vocab_token;

typedef struct vocab_merge {
    uint64_t key;    /* (left id << 32) | right id */
    int32_t result;  /* id of left+right; -1 marks an empty slot */
    uint32_t rank;
} vocab_merge;

struct elm_vocab {
    vocab_kind kind;
    char model[8];
    char pre[64];
    uint32_t n_tokens;
    vocab_token *tok;
    char *text;
    char *pieces;

    int32_t *index; /* text -> id, open addressing; -1 empty */
    size_t index_mask;

    vocab_merge *merges;
    size_t merge_mask;

    int32_t byte_tok[256]; /* SPM: the <0xXX> token; BPE: the mapped character's token */

    /* control/unknown/user-defined ids, by first byte then longest first */
    int32_t *special;
    uint32_t special_start[257];

    int32_t *eog;
    uint32_t n_eog;

    int32_t bos, eos, unk, pad, eot, eom;
    bool add_bos, add_eos, add_space_prefix, ignore_merges;

    /* BPE pre-tokenizer (tokenizer_pre.c): n_re regexes applied in sequence;
     * compiled once, only read afterwards. */
    pcre2_code *re[ELMI_PRE_MAX_REGEXES];
    int n_re;
};

/* Collects ids: writes while they fit in the caller's buffer, counts all. */
typedef struct tok_sink {
    int32_t *out;
    size_t cap;
    size_t n;
} tok_sink;

static inline void sink_push(tok_sink *s, int32_t id) {
    if (s->n < s->cap) s->out[s->n] = id;
    s->n++;
}

/* True for types that may stand for ordinary text inside a word. */
static inline bool vocab_type_is_text(uint8_t t) {
    return t == VOCAB_TT_NORMAL || t == VOCAB_TT_USER_DEFINED || t == VOCAB_TT_UNDEFINED;
}

/* Internal lookups, no range checks on ids. */
int32_t elmi_vocab_lookup(const elm_vocab *v, const char *s, size_t len);
const vocab_merge *elmi_vocab_merge_find(const elm_vocab *v, int32_t left, int32_t right);

/* tokenizer_spm.c / tokenizer_bpe.c: one fragment of text without special
 * tokens. Return ELM_OK or ELM_ERR_NO_MEMORY. */
elm_status elmi_spm_tokenize(const elm_vocab *v, const char *text, size_t len, bool add_prefix,
                        tok_sink *sink);
elm_status elmi_bpe_tokenize(const elm_vocab *v, const char *text, size_t len, tok_sink *sink);

/* tokenizer_pre.c: selects and compiles the pre-tokenizer for v->pre (and
 * sets v->ignore_merges); ELM_ERR_UNSUPPORTED names an unknown pre. */
elm_status elmi_pre_init(elm_vocab *v, char *err, size_t err_size);

/* True when the pre-tokenizer's family adds BOS by default (llama3, tekken). */
bool elmi_pre_adds_bos(const char *pre);

/* Receives one word of the split text: s points into the text given to
 * elmi_pre_split; n >= 1. */
typedef void (*elmi_pre_word_fn)(void *ctx, const char *s, size_t n);

/* Cuts text into words with v's pre-tokenizer and calls word for each, in
 * order; the words cover the text exactly. Returns ELM_OK or
 * ELM_ERR_NO_MEMORY (then the words given so far are not the whole text). */
elm_status elmi_pre_split(const elm_vocab *v, const char *text, size_t len, elmi_pre_word_fn word,
                          void *ctx);

/* A candidate merge of two adjacent symbols. Both tokenizers merge the best
 * pair first, the leftmost among equals: SentencePiece by score, byte-level
 * BPE by rank (priority = -rank). a and b are what the tokenizer needs to
 * recognize a pair made stale by an earlier merge. */
typedef struct merge_pair {
    float priority;
    int32_t left, right;
    int32_t a, b;
    int32_t result;
} merge_pair;

typedef struct merge_heap {
    merge_pair *v; /* capacity chosen by the caller */
    size_t n;
} merge_heap;

void elmi_merge_heap_push(merge_heap *h, merge_pair p);
merge_pair elmi_merge_heap_pop(merge_heap *h); /* h->n > 0 */

#endif /* ELM_TOKENIZER_IMPL_H */
