#include "engine/unicode.h"

/* Well-formed sequences per the Unicode standard (table 3-7): the second
 * byte's range depends on the lead byte, which excludes overlong forms,
 * surrogates and code points above U+10FFFF. */
static size_t lead_info(unsigned char c, unsigned char *lo, unsigned char *hi, uint32_t *bits) {
    *lo = 0x80;
    *hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) { *bits = c & 0x1Fu; return 2; }
    if (c >= 0xE0 && c <= 0xEF) {
        if (c == 0xE0) *lo = 0xA0;
        if (c == 0xED) *hi = 0x9F;
        *bits = c & 0x0Fu;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (c == 0xF0) *lo = 0x90;
        if (c == 0xF4) *hi = 0x8F;
        *bits = c & 0x07u;
        return 4;
    }
    return 0;
}

size_t elmi_utf8_next(const unsigned char *s, size_t n, bool *valid, uint32_t *cp) {
    unsigned char lo, hi;
    uint32_t v;
    *valid = false;
    if (s[0] < 0x80) {
        *valid = true;
        if (cp) *cp = s[0];
        return 1;
    }
    size_t need = lead_info(s[0], &lo, &hi, &v);
    if (need == 0) return 1;
    size_t i = 1;
    for (; i < need && i < n; i++) {
        if (s[i] < lo || s[i] > hi) return i;
        v = (v << 6) | (s[i] & 0x3Fu);
        lo = 0x80;
        hi = 0xBF;
    }
    if (i < need) return i;
    *valid = true;
    if (cp) *cp = v;
    return need;
}

size_t elmi_utf8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/*
 * GPT-2 keeps the printable bytes '!'..'~', 0xA1..0xAC and 0xAE..0xFF as the
 * code points of the same value and gives the other 68 bytes, in increasing
 * order, the code points 256, 257, ...: 0x00..0x20 -> 256..288,
 * 0x7F..0xA0 -> 289..322, 0xAD -> 323. Closed forms instead of a table keep
 * the library free of global state.
 */
uint32_t elmi_bytelevel_cp(uint8_t b) {
    if (b <= 0x20) return 256u + b;
    if (b >= 0x7F && b <= 0xA0) return 289u + (uint32_t)(b - 0x7F);
    if (b == 0xAD) return 323u;
    return b;
}

int elmi_bytelevel_byte(uint32_t cp) {
    if (cp >= 256 && cp <= 288) return (int)(cp - 256);
    if (cp >= 289 && cp <= 322) return (int)(cp - 289 + 0x7F);
    if (cp == 323) return 0xAD;
    if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF))
        return (int)cp;
    return -1;
}
