#include "engine/utf8.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"

void elmi_utf8_init(utf8_stream *s) {
    memset(s, 0, sizeof *s);
}

void elmi_utf8_free(utf8_stream *s) {
    elmi_free(s->out);
    memset(s, 0, sizeof *s);
}

/* Length of the sequence a lead byte starts, 0 for an invalid lead. */
static int seq_len(uint8_t c) {
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 0;
}

/* Whether b[1..n) are valid continuation bytes for lead b[0] (checking
 * overlongs, surrogates and the U+10FFFF limit). n may be shorter than the
 * full sequence (a prefix check). */
static bool valid_prefix(const uint8_t *b, int n) {
    for (int i = 1; i < n; i++) {
        uint8_t lo = 0x80, hi = 0xBF;
        if (i == 1) {
            if (b[0] == 0xE0) lo = 0xA0;
            if (b[0] == 0xED) hi = 0x9F;
            if (b[0] == 0xF0) lo = 0x90;
            if (b[0] == 0xF4) hi = 0x8F;
        }
        if (b[i] < lo || b[i] > hi) return false;
    }
    return true;
}

static const char REPLACEMENT[3] = {(char)0xEF, (char)0xBF, (char)0xBD};

bool elmi_utf8_push(utf8_stream *s, const char *bytes, size_t len, bool final, const char **out,
               size_t *out_len) {
    size_t total = s->n_pending + len;
    size_t need = total * 3 + 1;
    if (need > s->out_cap) {
        char *nb = elmi_realloc(s->out, need);
        if (!nb) return false;
        s->out = nb;
        s->out_cap = need;
    }
    /* Work on pending + bytes without copying bytes: index through a helper. */
    size_t o = 0, i = 0;
#define AT(k) ((uint8_t)((k) < s->n_pending ? s->pending[(k)] : bytes[(k)-s->n_pending]))
    while (i < total) {
        uint8_t c = AT(i);
        int n = seq_len(c);
        if (n == 0) {
            memcpy(s->out + o, REPLACEMENT, 3), o += 3, i++;
            continue;
        }
        uint8_t seq[4] = {c, 0, 0, 0};
        int have = 1;
        while (have < n && i + (size_t)have < total) seq[have] = AT(i + (size_t)have), have++;
        if (!valid_prefix(seq, have)) {
            memcpy(s->out + o, REPLACEMENT, 3), o += 3, i++;
            continue;
        }
        if (have < n) break; /* incomplete tail */
        memcpy(s->out + o, seq, (size_t)n);
        o += (size_t)n;
        i += (size_t)n;
    }
    uint8_t tail[4];
    size_t n_tail = total - i;
    for (size_t k = 0; k < n_tail; k++) tail[k] = AT(i + k);
#undef AT
    if (final && n_tail) {
        memcpy(s->out + o, REPLACEMENT, 3), o += 3;
        n_tail = 0;
    }
    memcpy(s->pending, tail, n_tail);
    s->n_pending = n_tail;
    *out = s->out;
    *out_len = o;
    return true;
}
