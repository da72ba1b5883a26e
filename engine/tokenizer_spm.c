/*
 * tokenizer_spm.c: SentencePiece-style BPE ("llama" vocabularies).
 *
 * Spaces become U+2581, the text is split into UTF-8 characters, and the
 * adjacent pair whose concatenation is a token with the highest score is
 * merged until no pair is a token (equal scores: the leftmost pair first).
 * What remains unknown falls back to <0xXX> byte tokens, else to <unk>.
 */
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "engine/tokenizer_impl.h"
#include "engine/unicode.h"

typedef struct spm_sym {
    int32_t prev, next;
    size_t start, len; /* len 0: merged into its left neighbour */
} spm_sym;

typedef struct spm_work {
    const elm_vocab *v;
    char *buf; /* the escaped text */
    spm_sym *sym;
    merge_heap heap; /* a: left.len + right.len when pushed (detects stale pairs) */
} spm_work;

static void try_pair(spm_work *w, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const spm_sym *l = &w->sym[left], *r = &w->sym[right];
    size_t len = l->len + r->len;
    int32_t id = elmi_vocab_lookup(w->v, w->buf + l->start, len);
    if (id < 0 || !vocab_type_is_text(w->v->tok[id].type)) return;
    elmi_merge_heap_push(&w->heap, (merge_pair){w->v->tok[id].score, left, right, (int32_t)len, 0, id});
}

/* Writes the text with an optional leading space and U+2581 for spaces;
 * returns its length. */
static size_t escape(const char *text, size_t len, bool add_prefix, char *out) {
    size_t k = 0;
    if (add_prefix) {
        memcpy(out, "\xe2\x96\x81", 3);
        k = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(out + k, "\xe2\x96\x81", 3);
            k += 3;
        } else {
            out[k++] = text[i];
        }
    }
    return k;
}

/* One symbol per character; an ill-formed byte is a symbol of its own. */
static int32_t split_chars(spm_work *w, size_t n) {
    int32_t count = 0;
    for (size_t i = 0; i < n;) {
        bool valid;
        size_t len = elmi_utf8_next((const unsigned char *)w->buf + i, n - i, &valid, NULL);
        if (!valid) len = 1;
        w->sym[count] = (spm_sym){count - 1, -1, i, len};
        if (count > 0) w->sym[count - 1].next = count;
        count++;
        i += len;
    }
    return count;
}

static void merge_all(spm_work *w) {
    while (w->heap.n > 0) {
        merge_pair p = elmi_merge_heap_pop(&w->heap);
        spm_sym *l = &w->sym[p.left], *r = &w->sym[p.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != (size_t)p.a) continue;
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0) w->sym[r->next].prev = p.left;
        try_pair(w, l->prev, p.left);
        try_pair(w, p.left, l->next);
    }
}

static void emit_symbol(const spm_work *w, const spm_sym *s, tok_sink *sink) {
    const elm_vocab *v = w->v;
    const char *text = w->buf + s->start;
    int32_t id = elmi_vocab_lookup(v, text, s->len);
    if (id >= 0 && vocab_type_is_text(v->tok[id].type)) {
        sink_push(sink, id);
        return;
    }
    bool bytes_ok = true;
    for (size_t i = 0; i < s->len; i++) bytes_ok &= v->byte_tok[(uint8_t)text[i]] >= 0;
    if (bytes_ok) {
        for (size_t i = 0; i < s->len; i++) sink_push(sink, v->byte_tok[(uint8_t)text[i]]);
    } else if (v->unk >= 0) {
        sink_push(sink, v->unk);
    }
    /* Without byte tokens and <unk> the vocabulary cannot express the
     * character at all: it is left out. */
}

elm_status elmi_spm_tokenize(const elm_vocab *v, const char *text, size_t len, bool add_prefix,
                        tok_sink *sink) {
    if (len == 0 && !add_prefix) return ELM_OK;
    if (len > INT32_MAX / 4) return ELM_ERR_INVALID_ARG; /* symbol indices are int32 */
    size_t cap = 3 * len + 3;
    spm_work w = {v, elmi_malloc(cap), elmi_malloc(cap * sizeof(spm_sym)), {NULL, 0}};
    size_t n = w.buf ? escape(text, len, add_prefix, w.buf) : 0;
    w.heap.v = elmi_malloc((3 * n + 1) * sizeof(merge_pair));
    if (!w.buf || !w.sym || !w.heap.v) {
        elmi_free(w.buf);
        elmi_free(w.sym);
        elmi_free(w.heap.v);
        return ELM_ERR_NO_MEMORY;
    }
    int32_t count = split_chars(&w, n);
    for (int32_t i = 1; i < count; i++) try_pair(&w, i - 1, i);
    merge_all(&w);
    for (int32_t i = count ? 0 : -1; i >= 0; i = w.sym[i].next) emit_symbol(&w, &w.sym[i], sink);
    elmi_free(w.buf);
    elmi_free(w.sym);
    elmi_free(w.heap.v);
    return ELM_OK;
}
