/*
 * unicode.h: the small UTF-8 and byte-mapping helpers the tokenizers need.
 * Character classes (letters, digits, spaces) are PCRE2's business, not ours.
 * Every function is pure: no tables are built at run time.
 */
#ifndef ELM_UNICODE_H
#define ELM_UNICODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Inspects the UTF-8 sequence starting at s[0] (n >= 1 bytes available).
 * Returns its length (1..4) and sets *valid. When the bytes do not form a
 * well-formed sequence, *valid is false and the result is the length of the
 * maximal ill-formed subpart (at least 1), the unit that one U+FFFD replaces.
 * cp (may be NULL) receives the code point of a valid sequence.
 */
size_t elmi_utf8_next(const unsigned char *s, size_t n, bool *valid, uint32_t *cp);

/* Writes the UTF-8 form of cp (<= 0x10FFFF) to out; returns 1..4. */
size_t elmi_utf8_encode(uint32_t cp, char out[4]);

/* GPT-2 byte-level BPE: the code point that stands for byte b in token text. */
uint32_t elmi_bytelevel_cp(uint8_t b);
/* The byte a code point stands for, or -1 when cp is not in the mapping. */
int elmi_bytelevel_byte(uint32_t cp);

#endif /* ELM_UNICODE_H */
