/*
 * tokenizer.h: vocabularies and the two tokenizers edgelm supports.
 *
 *  - "llama": SentencePiece-style BPE over characters, merging the pair whose
 *    result has the highest score, with byte-token (<0xXX>) fallback.
 *  - "gpt2": byte-level BPE: a pre-tokenizer (one or several PCRE2 regexes)
 *    chosen by tokenizer.ggml.pre (the names and what they map to:
 *    tokenizer_pre.c and docs/tokenizers.md; missing or "" means "default",
 *    GPT-2's regex; an unknown name is refused), the GPT-2 byte-to-Unicode
 *    mapping, then merges by rank.
 *
 * An elm_vocab is immutable once built and may be used from any number of
 * threads at once: every call allocates its own scratch memory.
 *
 * Special tokens: control and unknown-type tokens are recognized in text only
 * when parse_special is set; user-defined tokens (added tokens that are not
 * special) are always split out first, as Hugging Face tokenizers do. At one
 * position the longest matching token wins.
 *
 * Leading space (SentencePiece): when add_space_prefix is on (the default for
 * "llama"), a space is put before the first text fragment and before text
 * that follows a special token, so "Once" -> "▁Once". elmi_vocab_token_to_piece
 * returns each piece as is (" Once"); elmi_vocab_detokenize removes that one
 * leading space from its output, so detokenize(tokenize(s)) == s. A program
 * that prints the prompt itself and then the pieces of generated tokens (which
 * never follow the prompt's start) needs no special handling.
 */
#ifndef ELM_TOKENIZER_H
#define ELM_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edgelm.h"
#include "engine/gguf.h"

typedef struct elm_vocab elm_vocab;

typedef enum vocab_kind {
    VOCAB_SPM = 1, /* tokenizer.ggml.model "llama" */
    VOCAB_BPE = 2, /* tokenizer.ggml.model "gpt2" */
} vocab_kind;

/* tokenizer.ggml.token_type values. */
typedef enum vocab_tt {
    VOCAB_TT_UNDEFINED = 0, /* treated as normal */
    VOCAB_TT_NORMAL = 1,
    VOCAB_TT_UNKNOWN = 2,
    VOCAB_TT_CONTROL = 3,
    VOCAB_TT_USER_DEFINED = 4,
    VOCAB_TT_UNUSED = 5,
    VOCAB_TT_BYTE = 6,
} vocab_tt;

/*
 * A vocabulary as plain arrays (all borrowed for the call; the vocab copies
 * what it keeps). Strings are length-delimited and need no NUL.
 */
typedef struct vocab_arrays {
    const char *model;         /* "llama" or "gpt2" (NUL-terminated) */
    const char *pre;           /* NULL or "" for the default pre-tokenizer */
    uint32_t n_tokens;
    const gguf_str *tokens;    /* n_tokens entries */
    const float *scores;       /* n_tokens entries, or NULL (all 0) */
    const int32_t *types;      /* n_tokens vocab_tt values, or NULL */
    uint32_t n_merges;
    const gguf_str *merges;    /* "left right", by rank (gpt2 only) */
    /* Special ids; -1 = none. */
    int32_t bos, eos, unk, pad, eot, eom;
    /* 1 or 0, or -1 for the model's default (add_bos: llama yes, gpt2 no;
     * add_eos: no; add_space_prefix: llama yes, gpt2 no). */
    int add_bos, add_eos, add_space_prefix;
} vocab_arrays;

/* Fields set to "none"/"default": ids -1, flags -1, everything else 0. */
vocab_arrays elmi_vocab_arrays_init(void);

/*
 * Builds a vocab. Errors: ELM_ERR_INVALID_ARG (NULL arguments),
 * ELM_ERR_FORMAT (inconsistent data: id out of range, bad type value, NaN
 * score, ...), ELM_ERR_UNSUPPORTED (model or pre-tokenizer name),
 * ELM_ERR_NO_MEMORY. Malformed byte tokens ("<0xZZ>") are kept as ordinary
 * text tokens and never used for byte fallback. Merges that do not name two
 * tokens whose concatenation is a token are ignored.
 */
elm_status elmi_vocab_new_from_arrays(const vocab_arrays *a, elm_vocab **out, char *err,
                                 size_t err_size);

/* Reads the tokenizer.ggml.* keys of a GGUF file (see vocab_arrays for the
 * defaults) and builds the vocab. The file may be closed afterwards. */
elm_status elmi_vocab_load(const gguf_file *f, elm_vocab **out, char *err, size_t err_size);

void elmi_vocab_free(elm_vocab *v);

/* Accessors: v must not be NULL. */
vocab_kind elmi_vocab_get_kind(const elm_vocab *v);
const char *elmi_vocab_model_name(const elm_vocab *v); /* "llama" or "gpt2" */
const char *elmi_vocab_pre_name(const elm_vocab *v);   /* as in the file, or "" */
uint32_t elmi_vocab_n_tokens(const elm_vocab *v);
int32_t elmi_vocab_bos(const elm_vocab *v); /* -1 when none, like the others */
int32_t elmi_vocab_eos(const elm_vocab *v);
int32_t elmi_vocab_unk(const elm_vocab *v);
int32_t elmi_vocab_pad(const elm_vocab *v);
int32_t elmi_vocab_eot(const elm_vocab *v);
int32_t elmi_vocab_eom(const elm_vocab *v);
bool elmi_vocab_add_bos(const elm_vocab *v); /* true only when a BOS id exists */
bool elmi_vocab_add_eos(const elm_vocab *v);
bool elmi_vocab_add_space_prefix(const elm_vocab *v); /* SentencePiece only: false for gpt2 */

/* EOS, EOT, EOM and control tokens whose text is a well-known end-of-turn
 * marker ("<|eot_id|>", "<|im_end|>", "<|endoftext|>", ...). False for ids
 * out of range. */
bool elmi_vocab_is_eog(const elm_vocab *v, int32_t id);

/* The token's text as stored in the vocab (not NUL-terminated), or NULL for
 * an id out of range. */
const char *elmi_vocab_token_text(const elm_vocab *v, int32_t id, size_t *len);
/* vocab_tt value, or -1 for an id out of range. */
int elmi_vocab_token_type(const elm_vocab *v, int32_t id);
float elmi_vocab_token_score(const elm_vocab *v, int32_t id);
/* The id whose text is exactly these bytes, or -1. */
int32_t elmi_vocab_find(const elm_vocab *v, const char *text, size_t len);

/*
 * Same contract as elm_tokenize: add_bos prepends BOS when elmi_vocab_add_bos()
 * (and appends EOS when elmi_vocab_add_eos()). Writes at most cap ids; when cap is
 * too small returns ELM_ERR_BUFFER_TOO_SMALL with *n_out = the count needed.
 * Any bytes are accepted: invalid UTF-8 falls back to byte tokens.
 */
elm_status elmi_vocab_tokenize(const elm_vocab *v, const char *text, size_t len, bool add_bos,
                          bool parse_special, int32_t *out, size_t cap, size_t *n_out);

/*
 * The words a byte-level BPE vocab's pre-tokenizer cuts text into (for
 * tests and tools): ends[i] is the offset just past word i; the words cover
 * the text. Writes at most cap ends; *n is the count, and when it exceeds cap
 * the result is ELM_ERR_BUFFER_TOO_SMALL. ELM_ERR_INVALID_ARG for NULL
 * arguments or a SentencePiece vocab.
 */
elm_status elmi_vocab_pre_split(const elm_vocab *v, const char *text, size_t len, size_t *ends,
                                size_t cap, size_t *n);

/* The regexes (PCRE2 syntax) a tokenizer.ggml.pre name applies, in order,
 * NULL-terminated; NULL for a name that is not supported. */
const char *const *elmi_pre_regexes(const char *pre);

/*
 * Same contract as elm_token_to_piece: the token's bytes as they appear in
 * text (SPM: U+2581 becomes a space; byte tokens give their raw byte; BPE:
 * the byte mapping is undone). Control and unused tokens give ""; unknown
 * tokens give " \u2047 " (SentencePiece's rendering); user-defined tokens
 * give their text. No NUL is written. ELM_ERR_INVALID_ARG for an id out of
 * range.
 */
elm_status elmi_vocab_token_to_piece(const elm_vocab *v, int32_t id, char *buf, size_t cap,
                                size_t *len);

/*
 * Same contract as elm_detokenize: concatenates the pieces, removes the one
 * leading space an SPM vocab with add_space_prefix puts in front of the
 * text, and replaces each maximal ill-formed UTF-8 subpart with U+FFFD.
 * *len is the text length without NUL; the NUL is written when len < cap.
 */
elm_status elmi_vocab_detokenize(const elm_vocab *v, const int32_t *ids, size_t n, char *buf,
                            size_t cap, size_t *len);

#endif /* ELM_TOKENIZER_H */
