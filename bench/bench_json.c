/* bench_json.c: a recursive-descent JSON reader. */
#include "bench/bench_json.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64

typedef struct parser {
    const char *s;
    size_t len, pos;
    int depth;
    char *err;
    size_t err_size;
    bool failed;
} parser;

static bool fail(parser *p, const char *fmt, ...) {
    if (p->failed) return false;
    p->failed = true;
    if (p->err && p->err_size) {
        int n = snprintf(p->err, p->err_size, "byte %zu: ", p->pos);
        va_list ap;
        va_start(ap, fmt);
        if (n >= 0 && (size_t)n < p->err_size)
            vsnprintf(p->err + n, p->err_size - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return false;
}

static void skip_ws(parser *p) {
    while (p->pos < p->len && strchr(" \t\r\n", p->s[p->pos]) && p->s[p->pos]) p->pos++;
}

static bool literal(parser *p, const char *word) {
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n)) return fail(p, "expected %s", word);
    p->pos += n;
    return true;
}

/* --------------------------------------------------------------- strings */

typedef struct sbuf {
    char *b;
    size_t n, cap;
} sbuf;

static bool sb_put(sbuf *sb, const char *d, size_t n) {
    if (sb->n + n + 1 > sb->cap) {
        size_t cap = sb->cap ? sb->cap * 2 : 32;
        while (cap < sb->n + n + 1) cap *= 2;
        char *nb = realloc(sb->b, cap);
        if (!nb) return false;
        sb->b = nb;
        sb->cap = cap;
    }
    memcpy(sb->b + sb->n, d, n);
    sb->n += n;
    sb->b[sb->n] = 0;
    return true;
}

static bool sb_utf8(sbuf *sb, uint32_t c) {
    char u[4];
    size_t n;
    if (c < 0x80)
        u[0] = (char)c, n = 1;
    else if (c < 0x800)
        u[0] = (char)(0xC0 | c >> 6), u[1] = (char)(0x80 | (c & 63)), n = 2;
    else if (c < 0x10000)
        u[0] = (char)(0xE0 | c >> 12), u[1] = (char)(0x80 | ((c >> 6) & 63)),
        u[2] = (char)(0x80 | (c & 63)), n = 3;
    else
        u[0] = (char)(0xF0 | c >> 18), u[1] = (char)(0x80 | ((c >> 12) & 63)),
        u[2] = (char)(0x80 | ((c >> 6) & 63)), u[3] = (char)(0x80 | (c & 63)), n = 4;
    return sb_put(sb, u, n);
}

static bool hex4(parser *p, uint32_t *out) {
    if (p->len - p->pos < 4) return fail(p, "short \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p->s[p->pos++];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0) return fail(p, "bad \\u escape");
        v = v << 4 | (uint32_t)d;
    }
    *out = v;
    return true;
}

static bool unicode_escape(parser *p, sbuf *sb) {
    uint32_t c, lo;
    if (!hex4(p, &c)) return false;
    if (c >= 0xD800 && c < 0xDC00) {
        if (p->len - p->pos < 6 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
            return fail(p, "lone surrogate");
        p->pos += 2;
        if (!hex4(p, &lo) || lo < 0xDC00 || lo > 0xDFFF) return fail(p, "bad surrogate pair");
        c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
    } else if (c >= 0xDC00 && c < 0xE000) {
        return fail(p, "lone surrogate");
    }
    return sb_utf8(sb, c) || fail(p, "out of memory");
}

static bool escape(parser *p, sbuf *sb) {
    if (p->pos >= p->len) return fail(p, "unterminated string");
    char c = p->s[p->pos++];
    const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
    const char *hit = c ? strchr(from, c) : NULL;
    if (hit) return sb_put(sb, to + (hit - from), 1) || fail(p, "out of memory");
    if (c == 'u') return unicode_escape(p, sb);
    return fail(p, "bad escape \\%c", c);
}

static char *parse_string(parser *p) {
    sbuf sb = {0};
    if (!sb_put(&sb, "", 0)) return fail(p, "out of memory"), NULL;
    p->pos++; /* the opening quote */
    while (!p->failed) {
        if (p->pos >= p->len) {
            fail(p, "unterminated string");
            break;
        }
        unsigned char c = (unsigned char)p->s[p->pos++];
        if (c == '"') return sb.b;
        if (c < 0x20)
            fail(p, "control character in a string");
        else if (c == '\\')
            escape(p, &sb);
        else if (!sb_put(&sb, (const char *)&c, 1))
            fail(p, "out of memory");
    }
    free(sb.b);
    return NULL;
}

/* --------------------------------------------------------------- values */

static bool parse_value(parser *p, bj_value *v);

static bool parse_number(parser *p, bj_value *v) {
    size_t start = p->pos;
    const char *s = p->s;
    if (p->pos < p->len && s[p->pos] == '-') p->pos++;
    if (p->pos >= p->len || s[p->pos] < '0' || s[p->pos] > '9') return fail(p, "bad number");
    if (s[p->pos] == '0')
        p->pos++;
    else
        while (p->pos < p->len && s[p->pos] >= '0' && s[p->pos] <= '9') p->pos++;
    if (p->pos < p->len && s[p->pos] == '.') {
        p->pos++;
        if (p->pos >= p->len || s[p->pos] < '0' || s[p->pos] > '9') return fail(p, "bad fraction");
        while (p->pos < p->len && s[p->pos] >= '0' && s[p->pos] <= '9') p->pos++;
    }
    if (p->pos < p->len && (s[p->pos] == 'e' || s[p->pos] == 'E')) {
        p->pos++;
        if (p->pos < p->len && (s[p->pos] == '+' || s[p->pos] == '-')) p->pos++;
        if (p->pos >= p->len || s[p->pos] < '0' || s[p->pos] > '9') return fail(p, "bad exponent");
        while (p->pos < p->len && s[p->pos] >= '0' && s[p->pos] <= '9') p->pos++;
    }
    char tmp[64];
    size_t n = p->pos - start;
    if (n >= sizeof tmp) return fail(p, "number too long");
    memcpy(tmp, s + start, n);
    tmp[n] = 0;
    v->type = BJ_NUMBER;
    v->number = strtod(tmp, NULL);
    return true;
}

static bool push_item(parser *p, bj_value *v, char *key) {
    bj_value *items = realloc(v->items, (v->n + 1) * sizeof *items);
    if (items) v->items = items;
    char **keys = v->type == BJ_OBJECT ? realloc(v->keys, (v->n + 1) * sizeof *keys) : NULL;
    if (keys) v->keys = keys;
    if (!items || (v->type == BJ_OBJECT && !keys)) return fail(p, "out of memory");
    memset(&v->items[v->n], 0, sizeof *v->items);
    if (keys) v->keys[v->n] = key;
    v->n++;
    return true;
}

/* Elements of an array or members of an object, after the opening bracket. */
static bool parse_container(parser *p, bj_value *v, char close) {
    if (++p->depth > MAX_DEPTH) return fail(p, "nesting deeper than %d", MAX_DEPTH);
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
        p->depth--;
        return true;
    }
    for (;;) {
        char *key = NULL;
        skip_ws(p);
        if (close == '}') {
            if (p->pos >= p->len || p->s[p->pos] != '"') return fail(p, "expected a key");
            if (!(key = parse_string(p))) return false;
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':') return free(key), fail(p, "expected ':'");
            p->pos++;
        }
        if (!push_item(p, v, key)) return free(key), false;
        if (!parse_value(p, &v->items[v->n - 1])) return false;
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->len && p->s[p->pos] == close) break;
        return fail(p, "expected ',' or '%c'", close);
    }
    p->pos++;
    p->depth--;
    return true;
}

static bool parse_value(parser *p, bj_value *v) {
    skip_ws(p);
    if (p->pos >= p->len) return fail(p, "unexpected end");
    char c = p->s[p->pos];
    switch (c) {
    case '{': v->type = BJ_OBJECT; return parse_container(p, v, '}');
    case '[': v->type = BJ_ARRAY; return parse_container(p, v, ']');
    case '"': v->type = BJ_STRING; return (v->string = parse_string(p)) != NULL;
    case 't':
        v->type = BJ_BOOL;
        v->boolean = true;
        return literal(p, "true");
    case 'f': v->type = BJ_BOOL; return literal(p, "false");
    case 'n': v->type = BJ_NULL; return literal(p, "null");
    default: return parse_number(p, v);
    }
}

static void free_children(bj_value *v) {
    for (size_t i = 0; i < v->n; i++) {
        free_children(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->string);
}

void bj_free(bj_value *v) {
    if (!v) return;
    free_children(v);
    free(v);
}

bj_value *bj_parse(const char *text, size_t len, char *err, size_t err_size) {
    parser p = {.s = text, .len = len, .err = err, .err_size = err_size};
    bj_value *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    if (parse_value(&p, v)) {
        skip_ws(&p);
        if (p.pos != p.len) fail(&p, "trailing characters");
    }
    if (!p.failed) return v;
    bj_free(v);
    return NULL;
}

bj_value *bj_parse_file(const char *path, char *err, size_t err_size) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, err_size, "cannot open %s", path);
        return NULL;
    }
    char *buf = NULL;
    size_t n = 0, cap = 0, r;
    char chunk[65536];
    bool ok = true;
    while (ok && (r = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (n + r > cap) {
            cap = (n + r) * 2;
            char *nb = realloc(buf, cap);
            ok = nb != NULL;
            if (nb) buf = nb;
        }
        if (ok) memcpy(buf + n, chunk, r), n += r;
    }
    fclose(f);
    bj_value *v = ok ? bj_parse(buf ? buf : "", n, err, err_size) : NULL;
    if (!ok) snprintf(err, err_size, "out of memory reading %s", path);
    free(buf);
    return v;
}

const bj_value *bj_get(const bj_value *v, const char *key) {
    if (!v || v->type != BJ_OBJECT) return NULL;
    for (size_t i = 0; i < v->n; i++)
        if (!strcmp(v->keys[i], key)) return &v->items[i];
    return NULL;
}

const char *bj_str(const bj_value *v) {
    return v && v->type == BJ_STRING ? v->string : NULL;
}

double bj_num(const bj_value *v, double fallback) {
    return v && v->type == BJ_NUMBER ? v->number : fallback;
}
