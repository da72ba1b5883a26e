#include "support/json.h"

#include "support/paths.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Deep enough for any real document, shallow enough that hostile nesting
 * cannot exhaust the stack. */
#define JSON_MAX_DEPTH 512

typedef struct parser {
    const char *start, *p, *end;
    char *err;
    size_t err_size;
    bool failed;
    int depth;
} parser;

typedef struct bytes {
    char *data;
    size_t len, cap;
} bytes;

static bool fail(parser *ps, const char *msg) {
    if (!ps->failed && ps->err && ps->err_size)
        snprintf(ps->err, ps->err_size, "JSON: %s at byte %zu", msg, (size_t)(ps->p - ps->start));
    ps->failed = true;
    return false;
}

static bool grow(void **ptr, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t nc = *cap ? *cap : 8;
    while (nc < need) nc *= 2;
    void *np = realloc(*ptr, nc * elem);
    if (!np) return false;
    *ptr = np;
    *cap = nc;
    return true;
}

static bool bytes_push(parser *ps, bytes *b, const char *data, size_t n) {
    if (!grow((void **)&b->data, &b->cap, b->len + n + 1, 1)) return fail(ps, "out of memory");
    memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = 0;
    return true;
}

static void value_clear(json_value *v) {
    if (!v) return;
    for (size_t i = 0; i < v->len && v->items; i++) value_clear(&v->items[i]);
    if (v->keys)
        for (size_t i = 0; i < v->len; i++) free(v->keys[i]);
    free(v->items);
    free(v->keys);
    free(v->string);
    memset(v, 0, sizeof *v);
}

void json_free(json_value *v) {
    value_clear(v);
    free(v);
}

static void skip_ws(parser *ps) {
    while (ps->p < ps->end &&
           (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static bool parse_value(parser *ps, json_value *out);

/* ----------------------------------------------------------------- literals */

static bool parse_literal(parser *ps, json_value *out) {
    static const struct { const char *word; json_type type; bool val; } lits[] = {
        {"true", JSON_BOOL, true}, {"false", JSON_BOOL, false}, {"null", JSON_NULL, false}};
    for (size_t i = 0; i < sizeof lits / sizeof lits[0]; i++) {
        size_t n = strlen(lits[i].word);
        if ((size_t)(ps->end - ps->p) >= n && memcmp(ps->p, lits[i].word, n) == 0) {
            ps->p += n;
            out->type = lits[i].type;
            out->boolean = lits[i].val;
            return true;
        }
    }
    return fail(ps, "unexpected character");
}

/* ------------------------------------------------------------------ numbers */

static bool is_digit(const parser *ps) {
    return ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9';
}

static bool skip_digits(parser *ps) {
    if (!is_digit(ps)) return fail(ps, "digit expected");
    while (is_digit(ps)) ps->p++;
    return true;
}

/* Checks the RFC 8259 grammar, which strtod alone would not enforce
 * (it accepts "+1", ".5", "0x10", "inf"). */
static bool scan_number(parser *ps) {
    if (ps->p < ps->end && *ps->p == '-') ps->p++;
    if (ps->p < ps->end && *ps->p == '0') {
        ps->p++;
    } else if (!skip_digits(ps)) {
        return false;
    }
    if (ps->p < ps->end && *ps->p == '.') {
        ps->p++;
        if (!skip_digits(ps)) return false;
    }
    if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
        ps->p++;
        if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-')) ps->p++;
        if (!skip_digits(ps)) return false;
    }
    return true;
}

static bool parse_number(parser *ps, json_value *out) {
    const char *begin = ps->p;
    if (!scan_number(ps)) return false;
    size_t n = (size_t)(ps->p - begin);
    /* The input need not be NUL-terminated, and strtod needs a terminator. */
    char small[64];
    char *buf = n < sizeof small ? small : malloc(n + 1);
    if (!buf) return fail(ps, "out of memory");
    memcpy(buf, begin, n);
    buf[n] = 0;
    double d = strtod(buf, NULL);
    if (buf != small) free(buf);
    if (!isfinite(d)) {
        ps->p = begin;
        return fail(ps, "number out of range");
    }
    out->type = JSON_NUMBER;
    out->number = d;
    return true;
}

/* ------------------------------------------------------------------ strings */

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool read_hex4(parser *ps, uint32_t *out) {
    if (ps->end - ps->p < 4) return fail(ps, "truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_value(ps->p[i]);
        if (h < 0) return fail(ps, "bad hex digit in \\u escape");
        v = v << 4 | (uint32_t)h;
    }
    ps->p += 4;
    *out = v;
    return true;
}

static size_t elmi_utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* After "\u": one code point, joining a UTF-16 surrogate pair. */
static bool parse_unicode_escape(parser *ps, bytes *b) {
    uint32_t cp;
    if (!read_hex4(ps, &cp)) return false;
    if (cp >= 0xDC00 && cp <= 0xDFFF) return fail(ps, "lone low surrogate");
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u')
            return fail(ps, "high surrogate without its low half");
        ps->p += 2;
        uint32_t lo;
        if (!read_hex4(ps, &lo)) return false;
        if (lo < 0xDC00 || lo > 0xDFFF) return fail(ps, "high surrogate without its low half");
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    char enc[4];
    return bytes_push(ps, b, enc, elmi_utf8_encode(cp, enc));
}

static bool parse_escape(parser *ps, bytes *b) {
    if (ps->p >= ps->end) return fail(ps, "truncated escape");
    char c = *ps->p++;
    const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
    const char *hit = c ? strchr(from, c) : NULL;
    if (hit) return bytes_push(ps, b, &to[hit - from], 1);
    if (c == 'u') return parse_unicode_escape(ps, b);
    ps->p--;
    return fail(ps, "invalid escape");
}

/* Length of the well-formed UTF-8 sequence at p, or 0: no overlong forms,
 * no surrogates, nothing above U+10FFFF. */
static size_t utf8_valid_len(const unsigned char *p, const unsigned char *end) {
    unsigned c = p[0];
    size_t n;
    uint32_t cp, min;
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) { n = 2; cp = c & 0x1F; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { n = 3; cp = c & 0x0F; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { n = 4; cp = c & 0x07; min = 0x10000; }
    else return 0;
    if ((size_t)(end - p) < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return n;
}

/* Parses a string starting at its opening quote into a malloc'd buffer. */
static bool parse_string_raw(parser *ps, char **out, size_t *out_len) {
    bytes b = {0};
    ps->p++; /* the opening quote */
    if (!bytes_push(ps, &b, "", 0)) return false;
    for (;;) {
        if (ps->p >= ps->end) { free(b.data); return fail(ps, "unterminated string"); }
        unsigned char c = (unsigned char)*ps->p;
        bool ok;
        if (c == '"') { ps->p++; break; }
        if (c < 0x20) {
            ok = fail(ps, "control character in string");
        } else if (c == '\\') {
            ps->p++;
            ok = parse_escape(ps, &b);
        } else {
            size_t n = utf8_valid_len((const unsigned char *)ps->p, (const unsigned char *)ps->end);
            ok = n ? bytes_push(ps, &b, ps->p, n) : fail(ps, "invalid UTF-8 in string");
            ps->p += n;
        }
        if (!ok) { free(b.data); return false; }
    }
    *out = b.data;
    *out_len = b.len;
    return true;
}

static bool parse_string(parser *ps, json_value *out) {
    out->type = JSON_STRING;
    return parse_string_raw(ps, &out->string, &out->len);
}

/* ------------------------------------------------------- arrays and objects */

/* Adds one zeroed child to v (and, for objects, a NULL key slot). */
static json_value *push_child(parser *ps, json_value *v, size_t *cap, size_t *key_cap) {
    if (!grow((void **)&v->items, cap, v->len + 1, sizeof *v->items) ||
        (v->type == JSON_OBJECT &&
         !grow((void **)&v->keys, key_cap, v->len + 1, sizeof *v->keys))) {
        fail(ps, "out of memory");
        return NULL;
    }
    json_value *child = &v->items[v->len];
    memset(child, 0, sizeof *child);
    if (v->type == JSON_OBJECT) v->keys[v->len] = NULL;
    v->len++;
    return child;
}

static bool parse_member(parser *ps, json_value *obj, size_t *cap, size_t *key_cap) {
    if (ps->p >= ps->end || *ps->p != '"') return fail(ps, "object key expected");
    json_value *child = push_child(ps, obj, cap, key_cap);
    if (!child) return false;
    size_t key_len;
    if (!parse_string_raw(ps, &obj->keys[obj->len - 1], &key_len)) return false;
    skip_ws(ps);
    if (ps->p >= ps->end || *ps->p != ':') return fail(ps, "':' expected");
    ps->p++;
    return parse_value(ps, child);
}

static bool parse_element(parser *ps, json_value *arr, size_t *cap) {
    json_value *child = push_child(ps, arr, cap, NULL);
    return child && parse_value(ps, child);
}

/* Arrays and objects share the comma and bracket handling. */
static bool parse_container(parser *ps, json_value *out, json_type type) {
    char close = type == JSON_ARRAY ? ']' : '}';
    size_t cap = 0, key_cap = 0;
    out->type = type;
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) { ps->p++; return true; }
    for (;;) {
        skip_ws(ps);
        bool ok = type == JSON_ARRAY ? parse_element(ps, out, &cap)
                                     : parse_member(ps, out, &cap, &key_cap);
        if (!ok) return false;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') { ps->p++; continue; }
        if (ps->p < ps->end && *ps->p == close) { ps->p++; return true; }
        return fail(ps, type == JSON_ARRAY ? "',' or ']' expected" : "',' or '}' expected");
    }
}

static bool parse_value(parser *ps, json_value *out) {
    skip_ws(ps);
    if (ps->p >= ps->end) return fail(ps, "value expected");
    if (++ps->depth > JSON_MAX_DEPTH) return fail(ps, "nesting too deep");
    bool ok;
    char c = *ps->p;
    if (c == '{') ok = parse_container(ps, out, JSON_OBJECT);
    else if (c == '[') ok = parse_container(ps, out, JSON_ARRAY);
    else if (c == '"') ok = parse_string(ps, out);
    else if (c == '-' || (c >= '0' && c <= '9')) ok = parse_number(ps, out);
    else ok = parse_literal(ps, out);
    ps->depth--;
    return ok;
}

json_value *json_parse(const char *text, size_t len, char *err, size_t err_size) {
    parser ps = {text, text, text + len, err, err_size, false, 0};
    json_value *root = calloc(1, sizeof *root);
    if (!root) {
        fail(&ps, "out of memory");
        return NULL;
    }
    if (text && parse_value(&ps, root)) {
        skip_ws(&ps);
        if (ps.p == ps.end) return root;
        fail(&ps, "trailing characters after the value");
    } else if (!text) {
        fail(&ps, "no input");
    }
    json_free(root);
    return NULL;
}

json_value *json_parse_file(const char *path, char *err, size_t err_size) {
    size_t len;
    char *text = test_read_file(path, &len);
    if (!text) {
        if (err && err_size) snprintf(err, err_size, "cannot read %s", path);
        return NULL;
    }
    json_value *v = json_parse(text, len, err, err_size);
    free(text);
    return v;
}

/* ------------------------------------------------------------------ lookups */

const json_value *json_get(const json_value *v, const char *key) {
    if (!v || v->type != JSON_OBJECT || !key) return NULL;
    for (size_t i = 0; i < v->len; i++)
        if (strcmp(v->keys[i], key) == 0) return &v->items[i];
    return NULL;
}

const json_value *json_at(const json_value *v, size_t i) {
    if (!v || v->type != JSON_ARRAY || i >= v->len) return NULL;
    return &v->items[i];
}

size_t json_len(const json_value *v) {
    return v && (v->type == JSON_ARRAY || v->type == JSON_OBJECT) ? v->len : 0;
}

static const json_value *path_step(const json_value *v, const char *seg, size_t n) {
    char key[256];
    if (n >= sizeof key) return NULL;
    memcpy(key, seg, n);
    key[n] = 0;
    if (v && v->type == JSON_ARRAY) {
        if (n == 0 || strspn(key, "0123456789") != n) return NULL;
        return json_at(v, (size_t)strtoull(key, NULL, 10));
    }
    return json_get(v, key);
}

const json_value *json_path(const json_value *v, const char *path) {
    if (!path) return NULL;
    while (v && *path) {
        size_t n = strcspn(path, ".");
        v = path_step(v, path, n);
        path += n;
        if (*path == '.') path++;
    }
    return v;
}

bool json_is(const json_value *v, json_type type) {
    return v && v->type == type;
}

double json_num(const json_value *v, double fallback) {
    return json_is(v, JSON_NUMBER) ? v->number : fallback;
}

const char *json_str(const json_value *v) {
    return json_is(v, JSON_STRING) ? v->string : NULL;
}
