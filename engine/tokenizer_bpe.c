/*
 * tokenizer_bpe.c: byte-level BPE ("gpt2" vocabularies).
 *
 * The pre-tokenizer (tokenizer_pre.c) cuts the text into words; each byte
 * of a word stands for one character of the GPT-2 byte-to-Unicode mapping,
 * and the adjacent pair with the lowest merge rank is merged until no pair
 * has a merge (equal ranks: the leftmost pair first).
 */
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/status.h"
#include "engine/tokenizer_impl.h"
#include "engine/unicode.h"

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
    tok_sink *sink;
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

static void bpe_word(void *ctx, const char *s, size_t n) {
    bpe_work *w = ctx;
    tok_sink *sink = w->sink;
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

elm_status elmi_bpe_tokenize(const elm_vocab *v, const char *text, size_t len, tok_sink *sink) {
    if (len == 0) return ELM_OK;
    if (len > INT32_MAX / 4) return ELM_ERR_INVALID_ARG; /* symbol indices are int32 */
    bpe_work w = {v, elmi_malloc(len * sizeof(bpe_sym)),
                  {elmi_malloc((3 * len + 1) * sizeof(merge_pair)), 0}, elmi_malloc(2 * len + 1),
                  sink};
    elm_status st = ELM_ERR_NO_MEMORY;
    if (w.sym && w.heap.v && w.mapped) st = elmi_pre_split(v, text, len, bpe_word, &w);
    elmi_free(w.sym);
    elmi_free(w.heap.v);
    elmi_free(w.mapped);
    return st;
}
