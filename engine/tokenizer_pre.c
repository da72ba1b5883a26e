/*
 * tokenizer_pre.c: the byte-level BPE pre-tokenizers, chosen by
 * tokenizer.ggml.pre, and the splitting of text into words.
 *
 * A pre-tokenizer is a sequence of regexes. The first cuts the text into the
 * pieces it matches and the pieces between matches (kept: they are words
 * too); each later regex cuts every piece the one before left, as if the
 * piece were the whole text, so no match, lookahead or `$` reaches across a
 * piece's end. That is llama.cpp's unicode_regex_split and the Hugging Face
 * Sequence of Split pre-tokenizers with the "Isolated" behaviour. A family
 * with one regex is the ByteLevel pre-tokenizer with that regex.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/status.h"
#include "engine/tokenizer_impl.h"
#include "engine/unicode.h"

/* The regexes in PCRE2 syntax, as written in the families' tokenizer.json
 * (llama.cpp rewrites some of them for its own regex engine). */
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define RE_CONTRACTIONS "(?i:'s|'t|'re|'ve|'m|'ll|'d)"
#define RE_LLAMA3                                                                             \
    RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*" \
                    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2                                                                          \
    RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*" \
                    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
/* Tekken and o200k (gpt-4o): a word is an optional non-letter, then upper-
 * case-like letters followed by lower-case-like ones, or the other way. */
#define RE_UPPER "[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]"
#define RE_LOWER "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]"
#define RE_LEAD "[^\\r\\n\\p{L}\\p{N}]?"
#define RE_TEKKEN                                                                     \
    RE_LEAD RE_UPPER "*" RE_LOWER "+|" RE_LEAD RE_UPPER "+" RE_LOWER "*|\\p{N}"       \
                     "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_GPT4O                                                                              \
    RE_LEAD RE_UPPER "*" RE_LOWER "+" RE_CONTRACTIONS "?|" RE_LEAD RE_UPPER "+" RE_LOWER "*" \
        RE_CONTRACTIONS "?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+"       \
                        "|\\s+(?!\\S)|\\s+"
/* Falcon: runs of punctuation (Unicode P and ASCII symbols) first. */
#define RE_FALCON_PUNCT "[\\p{P}\\$\\+<=>\\^~\\|`]+"
/* DeepSeek: the letters that have case (Unicode L&, as of the tokenizer),
 * ASCII and CJK punctuation, and a CJK-and-more range; the ranges are
 * DeepSeek's, written as code points. */
#define RE_DS_CASED                                                                            \
    "\\x{41}-\\x{5A}\\x{61}-\\x{7A}\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}"       \
    "\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}"      \
    "\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}"               \
    "\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}"   \
    "\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}"              \
    "\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}"              \
    "\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}"     \
    "\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}"     \
    "\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}"              \
    "\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}"               \
    "\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}"                \
    "\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}"     \
    "\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}"      \
    "\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}"               \
    "\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}"              \
    "\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}"            \
    "\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}"      \
    "\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}"
#define RE_DS_PUNCT                                                                   \
    "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+"
#define RE_DS_CJK "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+"

enum {
    PRE_IGNORE_MERGES = 1, /* a word that is a token is taken whole */
    PRE_ADD_BOS = 2,       /* BOS by default (when the file has no add_bos_token) */
};

typedef struct pre_family {
    const char *names[8]; /* tokenizer.ggml.pre values, then NULLs */
    const char *regexes[ELMI_PRE_MAX_REGEXES + 1]; /* in order, then NULL */
    unsigned flags;
} pre_family;

/* The names and what llama.cpp (llama-vocab.cpp) maps them to. "" is a
 * missing key; like "default" it takes GPT-2's regex (llama.cpp's "default"
 * is Falcon-like; GPT-2's is what a GPT-2 vocab without the key expects). */
static const pre_family families[] = {
    {{"", "default", "gpt-2", "phi-2", "mpt", "olmo"}, {RE_GPT2}, 0},
    {{"llama-bpe", "llama3", "llama-v3", "lfm2"}, {RE_LLAMA3}, PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {{"smaug-bpe"}, {RE_LLAMA3}, 0},
    {{"qwen2", "deepseek-r1-qwen", "stablelm2"}, {RE_QWEN2}, 0},
    {{"starcoder", "smollm", "refact", "command-r"}, {"\\p{N}", RE_GPT2}, 0},
    {{"falcon"}, {RE_FALCON_PUNCT, RE_GPT2, "[0-9][0-9][0-9]"}, 0},
    {{"deepseek-llm"},
     {"[\\r\\n]", "\\s?[" RE_DS_CASED "]+", RE_DS_PUNCT, "\\s+$", RE_DS_CJK, "\\p{N}+"},
     0},
    {{"deepseek-coder"}, {"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", RE_DS_CJK, "\\p{N}"}, 0},
    {{"tekken"}, {RE_TEKKEN}, PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {{"gpt-4o"}, {RE_GPT4O}, 0},
};

#define N_FAMILIES (sizeof families / sizeof families[0])

static const pre_family *find_family(const char *pre) {
    if (!pre) pre = "";
    for (size_t f = 0; f < N_FAMILIES; f++)
        for (size_t i = 0; i < 8 && families[f].names[i]; i++)
            if (!strcmp(families[f].names[i], pre)) return &families[f];
    return NULL;
}

const char *const *elmi_pre_regexes(const char *pre) {
    const pre_family *fam = find_family(pre);
    return fam ? fam->regexes : NULL;
}

bool elmi_pre_adds_bos(const char *pre) {
    const pre_family *fam = find_family(pre);
    return fam && (fam->flags & PRE_ADD_BOS);
}

/* "default, gpt-2, ..." into buf (truncated when it does not fit). */
static void known_names(char *buf, size_t cap) {
    size_t k = 0;
    buf[0] = 0;
    for (size_t f = 0; f < N_FAMILIES; f++)
        for (size_t i = 0; i < 8 && families[f].names[i]; i++) {
            if (!families[f].names[i][0] || k >= cap) continue;
            int w = snprintf(buf + k, cap - k, "%s%s", k ? ", " : "", families[f].names[i]);
            k += w > 0 ? (size_t)w : 0;
        }
}

static void *re_malloc(PCRE2_SIZE size, void *data) {
    (void)data;
    return elmi_malloc(size);
}

static void re_free(void *ptr, void *data) {
    (void)data;
    elmi_free(ptr);
}

static elm_status compile_one(const char *pattern, pcre2_code **out, char *err, size_t es) {
    int code = PCRE2_ERROR_HEAP_FAILED; /* what pcre2_compile sets when it cannot allocate */
    PCRE2_SIZE where;
    *out = NULL;
    /* PCRE2 allocates through the library's allocator: the compiled code
     * keeps a copy of the functions and passes them on to its JIT code and
     * to match data made from it, so both contexts can go right away. */
    pcre2_general_context *gc = pcre2_general_context_create(re_malloc, re_free, NULL);
    pcre2_compile_context *cc = gc ? pcre2_compile_context_create(gc) : NULL;
    /* MATCH_INVALID_UTF: ill-formed bytes never match and end up in the gaps
     * between matches, so arbitrary input can be split. */
    if (cc)
        *out = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                             PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &code, &where, cc);
    pcre2_compile_context_free(cc);
    pcre2_general_context_free(gc);
    if (!*out && code == PCRE2_ERROR_HEAP_FAILED)
        return elmi_errorf(err, es, ELM_ERR_NO_MEMORY,
                           "tokenizer: out of memory compiling the pre-tokenizer");
    if (!*out)
        return elmi_errorf(err, es, ELM_ERR_INTERNAL,
                           "tokenizer: PCRE2 error %d compiling the pre-tokenizer", code);
    (void)pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE); /* optional: the interpreter also works */
    return ELM_OK;
}

elm_status elmi_pre_init(elm_vocab *v, char *err, size_t err_size) {
    const pre_family *fam = find_family(v->pre);
    if (!fam) {
        char names[512];
        known_names(names, sizeof names);
        return elmi_errorf(err, err_size, ELM_ERR_UNSUPPORTED,
                           "pre-tokenizer '%s' is not supported (known: %s)", v->pre, names);
    }
    v->ignore_merges = (fam->flags & PRE_IGNORE_MERGES) != 0;
    for (v->n_re = 0; fam->regexes[v->n_re]; v->n_re++)
        ELM_TRY(compile_one(fam->regexes[v->n_re], &v->re[v->n_re], err, err_size));
    return ELM_OK;
}

/* ------------------------------------------------------------ splitting */

typedef struct split_work {
    const elm_vocab *v;
    pcre2_match_data *md;
    elmi_pre_word_fn word;
    void *ctx;
    bool oom; /* the matcher could not allocate: the text is not split */
} split_work;

/* Start and end of regex k's next match in s[0..n) at or after off; false
 * when there is none (or the matcher failed: then the rest is a gap). */
static bool next_match(split_work *w, int k, const char *s, size_t n, size_t off, size_t *ms,
                       size_t *me) {
    const pcre2_code *re = w->v->re[k];
    int rc = pcre2_match(re, (PCRE2_SPTR)s, n, off, 0, w->md, NULL);
    if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) /* e.g. the JIT stack ran out */
        rc = pcre2_match(re, (PCRE2_SPTR)s, n, off, PCRE2_NO_JIT, w->md, NULL);
    if (rc == PCRE2_ERROR_NOMEMORY) w->oom = true;
    if (rc < 0) return false;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
    if (ov[0] < off || ov[1] > n || ov[1] < ov[0]) return false;
    *ms = ov[0];
    *me = ov[1];
    if (*me == *ms) { /* no regex here matches empty text; never loop on one */
        bool valid;
        *me = *ms + elmi_utf8_next((const unsigned char *)s + *ms, n - *ms, &valid, NULL);
    }
    return true;
}

/* Cuts s[0..n) with regex k and hands each piece to regex k + 1; after the
 * last regex a piece is a word. Recursion depth: the number of regexes. */
static void split_piece(split_work *w, int k, const char *s, size_t n) {
    if (n == 0 || w->oom) return;
    if (k == w->v->n_re) {
        w->word(w->ctx, s, n);
        return;
    }
    size_t off = 0, ms, me;
    while (off < n && next_match(w, k, s, n, off, &ms, &me)) {
        split_piece(w, k + 1, s + off, ms - off); /* the gap, if any */
        split_piece(w, k + 1, s + ms, me - ms);
        off = me;
    }
    split_piece(w, k + 1, s + off, n - off);
}

elm_status elmi_pre_split(const elm_vocab *v, const char *text, size_t len, elmi_pre_word_fn word,
                          void *ctx) {
    if (len == 0) return ELM_OK;
    /* The regexes have no capture groups: one ovector pair is enough. */
    split_work w = {v, pcre2_match_data_create_from_pattern(v->re[0], NULL), word, ctx, false};
    if (!w.md) return ELM_ERR_NO_MEMORY;
    split_piece(&w, 0, text, len);
    pcre2_match_data_free(w.md);
    return w.oom ? ELM_ERR_NO_MEMORY : ELM_OK;
}

/* ----------------------------------------------- word boundaries (tests) */

typedef struct ends_sink {
    const char *text;
    size_t *ends, cap, n;
} ends_sink;

static void record_end(void *ctx, const char *s, size_t n) {
    ends_sink *e = ctx;
    if (e->n < e->cap) e->ends[e->n] = (size_t)(s - e->text) + n;
    e->n++;
}

elm_status elmi_vocab_pre_split(const elm_vocab *v, const char *text, size_t len, size_t *ends,
                                size_t cap, size_t *n) {
    if (n) *n = 0;
    if (!v || !n || (!text && len) || (!ends && cap) || v->kind != VOCAB_BPE)
        return ELM_ERR_INVALID_ARG;
    ends_sink e = {text, ends, cap, 0};
    ELM_TRY(elmi_pre_split(v, text, len, record_end, &e));
    *n = e.n;
    return e.n > cap ? ELM_ERR_BUFFER_TOO_SMALL : ELM_OK;
}
