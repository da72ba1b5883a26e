/* utf8.h: turns a stream of token bytes into valid UTF-8, holding back an
 * incomplete sequence until the next bytes complete it. */
#ifndef ELM_UTF8_H
#define ELM_UTF8_H

#include <stdbool.h>
#include <stddef.h>

typedef struct utf8_stream {
    char pending[4];  /* start of an incomplete sequence */
    size_t n_pending;
    char *out;        /* output of the last push, owned */
    size_t out_cap;
} utf8_stream;

void elmi_utf8_init(utf8_stream *s);
void elmi_utf8_free(utf8_stream *s);
/* Appends `len` bytes; *out (valid until the next push) receives the
 * complete, valid UTF-8 now available. Invalid bytes become U+FFFD; with
 * `final`, so does an incomplete tail. Returns false when out of memory. */
bool elmi_utf8_push(utf8_stream *s, const char *bytes, size_t len, bool final, const char **out,
               size_t *out_len);

#endif
