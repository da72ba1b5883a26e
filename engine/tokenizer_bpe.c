/*
 * tokenizer_bpe.c: byte-level BPE ("gpt2" vocabularies).
 *
 * A pre-tokenizer regex cuts the text into words; each byte of a word stands
 * for one character of the GPT-2 byte-to-Unicode mapping, and the adjacent
 * pair with the lowest merge rank is merged until no pair has a merge (equal
 * ranks: the leftmost pair first).
 */
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/status.h"
#include "engine/tokenizer_impl.h"
#include "engine/unicode.h"

/* The pre-tokenizer patterns of the original tokenizers (tokenizer.json). */
static const char re_gpt2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char re_llama3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char re_qwen2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/*
 * "starcoder" and "smollm": every digit is split off first, then the GPT-2
 * split runs on what is between the digits. llama.cpp runs that as two
 * passes, "\p{N}" and then the GPT-2 regex inside each piece the first pass
 * left, so that every digit is a word of its own and no word, space or
 * lookahead reaches across a digit. One pattern does the same: \p{N} comes
 * first; " ?\p{N}+" can no longer match and is gone; and a digit counts as
 * the end of the text for the whitespace lookahead, so "a  1" splits as
 * "a", "  ", "1" (GPT-2 gives "a", " ", " 1").
 */
static const char re_starcoder[] =
    "\\p{N}|'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?![^\\s\\p{N}])|\\s+";

static void *re_malloc(PCRE2_SIZE size, void *data) {
    (void)data;
    return elmi_malloc(size);
}

static void re_free(void *ptr, void *data) {
    (void)data;
    elmi_free(ptr);
}

elm_status elmi_bpe_init(elm_vocab *v, char *err, size_t err_size) {
    const char *pattern;
    if (!v->pre[0] || !strcmp(v->pre, "default") || !strcmp(v->pre, "gpt-2")) {
        pattern = re_gpt2;
    } else if (!strcmp(v->pre, "llama-bpe")) {
        pattern = re_llama3;
        v->ignore_merges = true; /* Llama 3 takes a word that is a token as is */
    } else if (!strcmp(v->pre, "qwen2")) {
        pattern = re_qwen2;
    } else if (!strcmp(v->pre, "smollm") || !strcmp(v->pre, "starcoder")) {
        pattern = re_starcoder;
    } else {
        return elmi_errorf(err, err_size, ELM_ERR_UNSUPPORTED,
                           "pre-tokenizer '%s' is not supported (known: default, gpt-2, llama-bpe, "
                           "qwen2, smollm, starcoder)",
                           v->pre);
    }
    int code = PCRE2_ERROR_HEAP_FAILED; /* what pcre2_compile sets when it cannot allocate */
    PCRE2_SIZE where;
    /* PCRE2 allocates through the library's allocator: the compiled code
     * keeps a copy of the functions and passes them on to its JIT code and
     * to match data made from it, so both contexts can go right away. */
    pcre2_general_context *gc = pcre2_general_context_create(re_malloc, re_free, NULL);
    pcre2_compile_context *cc = gc ? pcre2_compile_context_create(gc) : NULL;
    /* MATCH_INVALID_UTF: ill-formed bytes never match and end up in the gaps
     * between matches, so arbitrary input can be split. */
    if (cc)
        v->re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                              PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &code, &where, cc);
    pcre2_compile_context_free(cc);
    pcre2_general_context_free(gc);
    if (!v->re && code == PCRE2_ERROR_HEAP_FAILED)
        return elmi_errorf(err, err_size, ELM_ERR_NO_MEMORY,
                           "tokenizer: out of memory compiling the pre-tokenizer");
    if (!v->re)
        return elmi_errorf(err, err_size, ELM_ERR_INTERNAL,
                           "tokenizer: PCRE2 error %d compiling the pre-tokenizer", code);
    (void)pcre2_jit_compile(v->re, PCRE2_JIT_COMPLETE); /* optional: the interpreter also works */
    return ELM_OK;
}

typedef struct bpe_sym {
    int32_t id; /* -1: the byte's character is not a token */
    int32_t prev, next;
    bool dead;
} bpe_sym;

typedef struct bpe_work {
    const elm_vocab *v;
    bpe_sym *sym;
    merge_heap heap; /* a, b: the symbols' ids when pushed (detects stale pairs) */
    char *mapped; /* a word in token-text form, for ignore_merges */
    pcre2_match_data *md;
    bool oom; /* the matcher could not allocate: the text is not tokenized */
} bpe_work;

static void try_pair(bpe_work *w, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    int32_t lid = w->sym[left].id, rid = w->sym[right].id;
    const vocab_merge *m = elmi_vocab_merge_find(w->v, lid, rid);
    if (m) elmi_merge_heap_push(&w->heap, (merge_pair){-(float)m->rank, left, right, lid, rid, m->result});
}

static bool whole_word(bpe_work *w, const char *s, size_t n, tok_sink *sink) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += elmi_utf8_encode(elmi_bytelevel_cp((uint8_t)s[i]), w->mapped + k);
    int32_t id = elmi_vocab_lookup(w->v, w->mapped, k);
    if (id >= 0) sink_push(sink, id);
    return id >= 0;
}

static void bpe_word(bpe_work *w, const char *s, size_t n, tok_sink *sink) {
    if (n == 0) return;
    if (w->v->ignore_merges && whole_word(w, s, n, sink)) return;
    for (size_t i = 0; i < n; i++) {
        int32_t idx = (int32_t)i, next = i + 1 < n ? idx + 1 : -1;
        w->sym[i] = (bpe_sym){w->v->byte_tok[(uint8_t)s[i]], idx - 1, next, false};
    }
    w->heap.n = 0;
    for (size_t i = 1; i < n; i++) try_pair(w, (int32_t)i - 1, (int32_t)i);
    while (w->heap.n > 0) {
        merge_pair p = elmi_merge_heap_pop(&w->heap);
        bpe_sym *l = &w->sym[p.left], *r = &w->sym[p.right];
        if (l->dead || r->dead || l->next != p.right || l->id != p.a || r->id != p.b) continue;
        l->id = p.result;
        r->dead = true;
        l->next = r->next;
        if (r->next >= 0) w->sym[r->next].prev = p.left;
        try_pair(w, l->prev, p.left);
        try_pair(w, p.left, l->next);
    }
    for (int32_t i = 0; i >= 0; i = w->sym[i].next) {
        if (w->sym[i].id >= 0) sink_push(sink, w->sym[i].id);
        else if (w->v->unk >= 0) sink_push(sink, w->v->unk);
    }
}

/* Start and end of the next regex match at or after off; false when there is
 * none (or the matcher failed: then the rest is one word). */
static bool next_match(bpe_work *w, const char *text, size_t len, size_t off, size_t *s,
                       size_t *e) {
    int rc = pcre2_match(w->v->re, (PCRE2_SPTR)text, len, off, 0, w->md, NULL);
    if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) /* e.g. the JIT stack ran out */
        rc = pcre2_match(w->v->re, (PCRE2_SPTR)text, len, off, PCRE2_NO_JIT, w->md, NULL);
    if (rc == PCRE2_ERROR_NOMEMORY) w->oom = true;
    if (rc < 0) return false;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
    if (ov[0] < off || ov[1] > len || ov[1] < ov[0]) return false;
    *s = ov[0];
    *e = ov[1];
    if (*e == *s) { /* no pattern matches empty text; never loop on one */
        bool valid;
        *e = *s + elmi_utf8_next((const unsigned char *)text + *s, len - *s, &valid, NULL);
    }
    return true;
}

static void split_words(bpe_work *w, const char *text, size_t len, tok_sink *sink) {
    size_t off = 0, s, e;
    while (off < len) {
        if (!next_match(w, text, len, off, &s, &e)) {
            if (w->oom) return;
            bpe_word(w, text + off, len - off, sink);
            return;
        }
        if (s > off) bpe_word(w, text + off, s - off, sink); /* ill-formed bytes */
        if (e > s) bpe_word(w, text + s, e - s, sink);
        off = e;
    }
}

elm_status elmi_bpe_tokenize(const elm_vocab *v, const char *text, size_t len, tok_sink *sink) {
    if (len == 0) return ELM_OK;
    if (len > INT32_MAX / 4) return ELM_ERR_INVALID_ARG; /* symbol indices are int32 */
    bpe_work w = {v, elmi_malloc(len * sizeof(bpe_sym)),
                  {elmi_malloc((3 * len + 1) * sizeof(merge_pair)), 0}, elmi_malloc(2 * len + 1),
                  pcre2_match_data_create_from_pattern(v->re, NULL), false};
    elm_status st = ELM_ERR_NO_MEMORY;
    if (w.sym && w.heap.v && w.mapped && w.md) {
        split_words(&w, text, len, sink);
        st = w.oom ? ELM_ERR_NO_MEMORY : ELM_OK;
    }
    elmi_free(w.sym);
    elmi_free(w.heap.v);
    elmi_free(w.mapped);
    pcre2_match_data_free(w.md);
    return st;
}
