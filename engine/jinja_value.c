/* jinja_value.c: the arena, errors, values and their conversion to text
 * (Python's str() and repr(), and json.dumps for tojson). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "engine/jinja_impl.h"

struct jchunk {
    jchunk *next;
    size_t size, used;
    max_align_t data[];
};

#define CHUNK_MIN ((size_t)64 << 10)

elm_status elmi_j_fail(jctx *c, int line, const char *fmt, ...) {
    if (c->st != ELM_OK) return c->st;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->err && c->err_size) {
        if (line > 0) snprintf(c->err, c->err_size, "chat template, line %d: %s", line, msg);
        else snprintf(c->err, c->err_size, "chat template: %s", msg);
    }
    c->st = ELM_ERR_TEMPLATE;
    return c->st;
}

static elm_status no_memory(jctx *c) {
    if (c->st != ELM_OK) return c->st;
    if (c->err && c->err_size) snprintf(c->err, c->err_size, "chat template: out of memory");
    c->st = ELM_ERR_NO_MEMORY;
    return c->st;
}

elm_status elmi_j_charge(jctx *c, uint64_t units) {
    c->steps += units;
    if (c->steps > JINJA_MAX_STEPS)
        return elmi_j_fail(c, 0, "the template exceeds its work limit (%llu steps)",
                           (unsigned long long)JINJA_MAX_STEPS);
    return ELM_OK;
}

void *elmi_j_alloc(jctx *c, size_t size) {
    size = (size + 15) & ~(size_t)15;
    if (size == 0) size = 16;
    jchunk *h = c->arena.head;
    if (h && h->size - h->used >= size) {
        void *p = (char *)h->data + h->used;
        h->used += size;
        return p;
    }
    if (size > JINJA_MAX_MEMORY || c->arena.used + size > JINJA_MAX_MEMORY) {
        elmi_j_fail(c, 0, "the template exceeds its memory limit (%zu MiB)", JINJA_MAX_MEMORY >> 20);
        return NULL;
    }
    size_t csize = size > CHUNK_MIN ? size : CHUNK_MIN;
    jchunk *k = elmi_malloc(sizeof *k + csize);
    if (!k) {
        no_memory(c);
        return NULL;
    }
    k->size = csize;
    k->used = size;
    c->arena.used += csize;
    /* A big block gets its own chunk behind the head, keeping the head's room. */
    if (h && csize == size && h->size - h->used > 1024) {
        k->next = h->next;
        h->next = k;
    } else {
        k->next = h;
        c->arena.head = k;
    }
    return k->data;
}

void elmi_j_arena_free(jarena *a) {
    jchunk *k = a->head;
    while (k) {
        jchunk *next = k->next;
        elmi_free(k);
        k = next;
    }
    a->head = NULL;
    a->used = 0;
}

char *elmi_j_strndup(jctx *c, const char *s, size_t n) {
    char *p = elmi_j_alloc(c, n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

static elm_status buf_reserve(jctx *c, jbuf *b, size_t extra) {
    if (b->p && b->n + extra <= b->cap) return ELM_OK;
    if (extra > JINJA_MAX_OUTPUT || b->n + extra > JINJA_MAX_OUTPUT)
        return elmi_j_fail(c, 0, "the template's output exceeds its limit (%zu MiB)",
                           JINJA_MAX_OUTPUT >> 20);
    size_t cap = b->cap ? b->cap * 2 : 64;
    while (cap < b->n + extra + 1) cap *= 2;
    char *p = elmi_j_alloc(c, cap);
    if (!p) return c->st;
    if (b->n) memcpy(p, b->p, b->n);
    b->p = p;
    b->cap = cap - 1;
    return ELM_OK;
}

elm_status elmi_j_buf_put(jctx *c, jbuf *b, const char *s, size_t n) {
    ELM_TRY(buf_reserve(c, b, n));
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return ELM_OK;
}

elm_status elmi_j_buf_putc(jctx *c, jbuf *b, char ch) { return elmi_j_buf_put(c, b, &ch, 1); }

elm_status elmi_j_buf_printf(jctx *c, jbuf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0) k = 0;
    if ((size_t)k >= sizeof tmp) k = sizeof tmp - 1;
    return elmi_j_buf_put(c, b, tmp, (size_t)k);
}

/* ------------------------------------------------------------------ values */

jval elmi_j_str(const char *s, size_t n) { return (jval){.t = JV_STR, .n = n, .u.s = s}; }
jval elmi_j_cstr(const char *s) { return elmi_j_str(s, strlen(s)); }
jval elmi_j_int(int64_t i) { return (jval){.t = JV_INT, .u.i = i}; }
jval elmi_j_float(double f) { return (jval){.t = JV_FLOAT, .u.f = f}; }
jval elmi_j_bool(bool b) { return (jval){.t = JV_BOOL, .u.b = b}; }
jval elmi_j_none(void) { return (jval){.t = JV_NONE}; }
jval elmi_j_undef(const char *name, size_t n) { return (jval){.t = JV_UNDEF, .n = n, .u.s = name}; }

elm_status elmi_j_new_list(jctx *c, size_t cap, jval *out) {
    jlist *l = elmi_j_alloc(c, sizeof *l);
    if (!l) return c->st;
    l->n = 0;
    l->cap = cap;
    l->v = NULL;
    l->tuple = false;
    if (cap) {
        l->v = elmi_j_alloc(c, cap * sizeof *l->v);
        if (!l->v) return c->st;
    }
    *out = (jval){.t = JV_LIST, .u.l = l};
    return ELM_OK;
}

elm_status elmi_j_new_dict(jctx *c, size_t cap, jv_type t, jval *out) {
    jdict *d = elmi_j_alloc(c, sizeof *d);
    if (!d) return c->st;
    d->n = 0;
    d->cap = cap ? cap : 4;
    d->k = elmi_j_alloc(c, d->cap * sizeof *d->k);
    d->v = elmi_j_alloc(c, d->cap * sizeof *d->v);
    if (!d->k || !d->v) return c->st;
    *out = (jval){.t = t, .u.d = d};
    return ELM_OK;
}

static elm_status grow(jctx *c, jval **arr, size_t n, size_t *cap) {
    size_t ncap = *cap ? *cap * 2 : 4;
    if (ncap > JINJA_MAX_MEMORY / sizeof(jval)) return elmi_j_fail(c, 0, "a list is too long");
    jval *p = elmi_j_alloc(c, ncap * sizeof *p);
    if (!p) return c->st;
    if (n) memcpy(p, *arr, n * sizeof *p);
    *arr = p;
    *cap = ncap;
    return ELM_OK;
}

elm_status elmi_j_list_push(jctx *c, jlist *l, jval v) {
    if (l->n == l->cap) ELM_TRY(grow(c, &l->v, l->n, &l->cap));
    l->v[l->n++] = v;
    return ELM_OK;
}

const jval *elmi_j_dict_get(jctx *c, const jdict *d, jval k) {
    if (c) c->steps += d->n / 8;
    for (size_t i = 0; i < d->n; i++)
        if (elmi_j_equal(d->k[i], k)) return &d->v[i];
    return NULL;
}

const jval *elmi_j_dict_gets(const jdict *d, const char *key, size_t n) {
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i].t == JV_STR && d->k[i].n == n && memcmp(d->k[i].u.s, key, n) == 0)
            return &d->v[i];
    return NULL;
}

elm_status elmi_j_dict_set(jctx *c, jdict *d, jval k, jval v) {
    jval *old = (jval *)elmi_j_dict_get(c, d, k);
    if (old) {
        *old = v;
        return ELM_OK;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap;
        ELM_TRY(grow(c, &d->k, d->n, &cap));
        ELM_TRY(grow(c, &d->v, d->n, &d->cap));
    }
    d->k[d->n] = k;
    d->v[d->n++] = v;
    return ELM_OK;
}

bool elmi_j_truthy(jval v) {
    switch (v.t) {
    case JV_UNDEF: case JV_NONE: return false;
    case JV_BOOL: return v.u.b;
    case JV_INT: return v.u.i != 0;
    case JV_FLOAT: return v.u.f != 0;
    case JV_STR: return v.n != 0;
    case JV_LIST: return v.u.l->n != 0;
    case JV_DICT: return v.u.d->n != 0;
    default: return true;
    }
}

static bool is_num(jval v) { return v.t == JV_INT || v.t == JV_FLOAT || v.t == JV_BOOL; }
static double num(jval v) {
    return v.t == JV_FLOAT ? v.u.f : v.t == JV_INT ? (double)v.u.i : (double)v.u.b;
}

bool elmi_j_equal(jval a, jval b) {
    if (is_num(a) && is_num(b)) {
        if (a.t != JV_FLOAT && b.t != JV_FLOAT) {
            int64_t x = a.t == JV_INT ? a.u.i : a.u.b, y = b.t == JV_INT ? b.u.i : b.u.b;
            return x == y;
        }
        return num(a) == num(b);
    }
    if (a.t != b.t) return false;
    switch (a.t) {
    case JV_UNDEF: case JV_NONE: return true;
    case JV_STR: return a.n == b.n && (a.n == 0 || memcmp(a.u.s, b.u.s, a.n) == 0);
    case JV_LIST:
        if (a.u.l->n != b.u.l->n) return false;
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!elmi_j_equal(a.u.l->v[i], b.u.l->v[i])) return false;
        return true;
    case JV_DICT:
        if (a.u.d->n != b.u.d->n) return false;
        for (size_t i = 0; i < a.u.d->n; i++) {
            const jval *o = elmi_j_dict_get(NULL, b.u.d, a.u.d->k[i]);
            if (!o || !elmi_j_equal(a.u.d->v[i], *o)) return false;
        }
        return true;
    case JV_NS: return a.u.d == b.u.d;
    case JV_MACRO: return a.u.m == b.u.m;
    case JV_FUNC: return a.u.fn == b.u.fn;
    case JV_LOOP: return a.u.lp == b.u.lp;
    case JV_CALLER: return a.u.cl == b.u.cl;
    default: return false;
    }
}

bool elmi_j_is_str(jval v, const char *s) {
    return v.t == JV_STR && v.n == strlen(s) && memcmp(v.u.s, s, v.n) == 0;
}

const char *elmi_j_type_name(jval v) {
    static const char *names[] = {"Undefined", "NoneType", "bool",     "int",      "float",
                                  "str",       "list",     "dict",     "Namespace", "Macro",
                                  "function",  "LoopContext", "Macro"};
    return names[v.t];
}

int elmi_j_compare(jctx *c, int line, jval a, jval b, int *out) {
    if (is_num(a) && is_num(b)) {
        double x = num(a), y = num(b);
        if (a.t == JV_INT && b.t == JV_INT) *out = a.u.i < b.u.i ? -1 : a.u.i > b.u.i;
        else *out = x < y ? -1 : x > y;
        return ELM_OK;
    }
    if (a.t == JV_STR && b.t == JV_STR) {
        size_t m = a.n < b.n ? a.n : b.n;
        int r = m ? memcmp(a.u.s, b.u.s, m) : 0;
        *out = r ? (r < 0 ? -1 : 1) : (a.n < b.n ? -1 : a.n > b.n);
        return ELM_OK;
    }
    if (a.t == JV_LIST && b.t == JV_LIST) {
        for (size_t i = 0; i < a.u.l->n && i < b.u.l->n; i++) {
            int r;
            ELM_TRY(elmi_j_compare(c, line, a.u.l->v[i], b.u.l->v[i], &r));
            if (r) {
                *out = r;
                return ELM_OK;
            }
        }
        *out = a.u.l->n < b.u.l->n ? -1 : a.u.l->n > b.u.l->n;
        return ELM_OK;
    }
    return elmi_j_fail(c, line, "'<' not supported between instances of '%s' and '%s'",
                       elmi_j_type_name(a), elmi_j_type_name(b));
}

size_t elmi_j_utf8_len(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) k++;
    return k;
}

/* ------------------------------------------------------------- text forms */

static void float_repr(double f, char *out, size_t cap) {
    if (isnan(f)) {
        snprintf(out, cap, "nan");
        return;
    }
    if (isinf(f)) {
        snprintf(out, cap, f < 0 ? "-inf" : "inf");
        return;
    }
    char tmp[64];
    int p = 1;
    for (; p <= 17; p++) {
        snprintf(tmp, sizeof tmp, "%.*e", p - 1, f);
        if (strtod(tmp, NULL) == f) break;
    }
    char *e = strchr(tmp, 'e');
    int exp = atoi(e + 1);
    if (exp >= -4 && exp < 16) {
        int dec = p - 1 - exp;
        snprintf(out, cap, "%.*f", dec > 0 ? dec : 0, f);
        if (!strchr(out, '.')) strncat(out, ".0", cap - strlen(out) - 1);
        return;
    }
    size_t k = (size_t)(e - tmp);
    snprintf(e, sizeof tmp - k, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    snprintf(out, cap, "%s", tmp);
}

static elm_status write_repr_str(jctx *c, jbuf *b, jval v) {
    bool dq = memchr(v.u.s, '\'', v.n) && !memchr(v.u.s, '"', v.n);
    char q = dq ? '"' : '\'';
    ELM_TRY(elmi_j_buf_putc(c, b, q));
    for (size_t i = 0; i < v.n; i++) {
        unsigned char ch = (unsigned char)v.u.s[i];
        if (ch == '\\' || ch == (unsigned char)q) {
            ELM_TRY(elmi_j_buf_putc(c, b, '\\'));
            ELM_TRY(elmi_j_buf_putc(c, b, (char)ch));
        } else if (ch == '\n') ELM_TRY(elmi_j_buf_put(c, b, "\\n", 2));
        else if (ch == '\r') ELM_TRY(elmi_j_buf_put(c, b, "\\r", 2));
        else if (ch == '\t') ELM_TRY(elmi_j_buf_put(c, b, "\\t", 2));
        else if (ch < 0x20 || ch == 0x7f) ELM_TRY(elmi_j_buf_printf(c, b, "\\x%02x", ch));
        else ELM_TRY(elmi_j_buf_putc(c, b, (char)ch));
    }
    return elmi_j_buf_putc(c, b, q);
}

elm_status elmi_j_write_str(jctx *c, jbuf *b, jval v, bool repr) {
    char tmp[64];
    ELM_TRY(elmi_j_charge(c, 1));
    switch (v.t) {
    case JV_UNDEF: return ELM_OK;
    case JV_NONE: return elmi_j_buf_put(c, b, "None", 4);
    case JV_BOOL: return elmi_j_buf_put(c, b, v.u.b ? "True" : "False", v.u.b ? 4 : 5);
    case JV_INT: return elmi_j_buf_printf(c, b, "%lld", (long long)v.u.i);
    case JV_FLOAT:
        float_repr(v.u.f, tmp, sizeof tmp);
        return elmi_j_buf_put(c, b, tmp, strlen(tmp));
    case JV_STR: return repr ? write_repr_str(c, b, v) : elmi_j_buf_put(c, b, v.u.s, v.n);
    case JV_LIST:
        ELM_TRY(elmi_j_buf_putc(c, b, v.u.l->tuple ? '(' : '['));
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i) ELM_TRY(elmi_j_buf_put(c, b, ", ", 2));
            ELM_TRY(elmi_j_write_str(c, b, v.u.l->v[i], true));
        }
        if (v.u.l->tuple && v.u.l->n == 1) ELM_TRY(elmi_j_buf_putc(c, b, ','));
        return elmi_j_buf_putc(c, b, v.u.l->tuple ? ')' : ']');
    case JV_DICT:
        ELM_TRY(elmi_j_buf_putc(c, b, '{'));
        for (size_t i = 0; i < v.u.d->n; i++) {
            if (i) ELM_TRY(elmi_j_buf_put(c, b, ", ", 2));
            ELM_TRY(elmi_j_write_str(c, b, v.u.d->k[i], true));
            ELM_TRY(elmi_j_buf_put(c, b, ": ", 2));
            ELM_TRY(elmi_j_write_str(c, b, v.u.d->v[i], true));
        }
        return elmi_j_buf_putc(c, b, '}');
    case JV_NS: return elmi_j_buf_put(c, b, "<Namespace>", 11);
    case JV_MACRO: case JV_CALLER: return elmi_j_buf_put(c, b, "<Macro>", 7);
    case JV_FUNC: return elmi_j_buf_put(c, b, "<function>", 10);
    case JV_LOOP: return elmi_j_buf_put(c, b, "<LoopContext>", 13);
    }
    return ELM_OK;
}

elm_status elmi_j_to_str(jctx *c, jval v, jval *out) {
    if (v.t == JV_STR) {
        *out = v;
        return ELM_OK;
    }
    jbuf b = {0};
    ELM_TRY(elmi_j_write_str(c, &b, v, false));
    *out = elmi_j_str(b.n ? b.p : "", b.n);
    return ELM_OK;
}

static elm_status json_str(jctx *c, jbuf *b, const char *s, size_t n) {
    ELM_TRY(elmi_j_buf_putc(c, b, '"'));
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        const char *esc = NULL;
        switch (ch) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default: break;
        }
        if (esc) ELM_TRY(elmi_j_buf_put(c, b, esc, 2));
        else if (ch < 0x20) ELM_TRY(elmi_j_buf_printf(c, b, "\\u%04x", ch));
        else ELM_TRY(elmi_j_buf_putc(c, b, (char)ch));
    }
    return elmi_j_buf_putc(c, b, '"');
}

static elm_status json_newline(jctx *c, jbuf *b, int indent, int level) {
    ELM_TRY(elmi_j_buf_putc(c, b, '\n'));
    for (int i = 0; i < indent * level; i++) ELM_TRY(elmi_j_buf_putc(c, b, ' '));
    return ELM_OK;
}

static elm_status json_key(jctx *c, jbuf *b, jval k) {
    char tmp[64];
    switch (k.t) {
    case JV_STR: return json_str(c, b, k.u.s, k.n);
    case JV_NONE: return elmi_j_buf_put(c, b, "\"null\"", 6);
    case JV_BOOL: return elmi_j_buf_put(c, b, k.u.b ? "\"true\"" : "\"false\"", k.u.b ? 6 : 7);
    case JV_INT: return elmi_j_buf_printf(c, b, "\"%lld\"", (long long)k.u.i);
    case JV_FLOAT:
        float_repr(k.u.f, tmp, sizeof tmp);
        return elmi_j_buf_printf(c, b, "\"%s\"", tmp);
    default: return elmi_j_fail(c, 0, "tojson: keys must be str, int, float, bool or None");
    }
}

static elm_status sorted_order(jctx *c, const jdict *d, size_t *idx) {
    for (size_t i = 0; i < d->n; i++) idx[i] = i;
    for (size_t i = 1; i < d->n; i++) { /* insertion sort: dicts are small */
        for (size_t j = i; j > 0; j--) {
            int r;
            ELM_TRY(elmi_j_compare(c, 0, d->k[idx[j - 1]], d->k[idx[j]], &r));
            ELM_TRY(elmi_j_charge(c, 1));
            if (r <= 0) break;
            size_t t = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = t;
        }
    }
    return ELM_OK;
}

static elm_status json_dict(jctx *c, jbuf *b, jval v, int indent, const char *isep,
                            const char *ksep, bool sort, int level) {
    const jdict *d = v.u.d;
    if (d->n == 0) return elmi_j_buf_put(c, b, "{}", 2);
    size_t *idx = elmi_j_alloc(c, d->n * sizeof *idx);
    if (!idx) return c->st;
    if (sort) ELM_TRY(sorted_order(c, d, idx));
    else
        for (size_t i = 0; i < d->n; i++) idx[i] = i;
    ELM_TRY(elmi_j_buf_putc(c, b, '{'));
    for (size_t i = 0; i < d->n; i++) {
        if (i) ELM_TRY(elmi_j_buf_put(c, b, isep, strlen(isep)));
        if (indent >= 0) ELM_TRY(json_newline(c, b, indent, level + 1));
        ELM_TRY(json_key(c, b, d->k[idx[i]]));
        ELM_TRY(elmi_j_buf_put(c, b, ksep, strlen(ksep)));
        ELM_TRY(elmi_j_write_json(c, b, d->v[idx[i]], indent, isep, ksep, sort, level + 1));
    }
    if (indent >= 0) ELM_TRY(json_newline(c, b, indent, level));
    return elmi_j_buf_putc(c, b, '}');
}

elm_status elmi_j_write_json(jctx *c, jbuf *b, jval v, int indent, const char *isep,
                             const char *ksep, bool sort, int level) {
    char tmp[64];
    ELM_TRY(elmi_j_charge(c, 1));
    if (level > JINJA_MAX_EVAL_DEPTH) return elmi_j_fail(c, 0, "tojson: nesting too deep");
    switch (v.t) {
    case JV_NONE: return elmi_j_buf_put(c, b, "null", 4);
    case JV_BOOL: return elmi_j_buf_put(c, b, v.u.b ? "true" : "false", v.u.b ? 4 : 5);
    case JV_INT: return elmi_j_buf_printf(c, b, "%lld", (long long)v.u.i);
    case JV_FLOAT:
        if (isnan(v.u.f)) return elmi_j_buf_put(c, b, "NaN", 3);
        if (isinf(v.u.f)) return elmi_j_buf_put(c, b, v.u.f < 0 ? "-Infinity" : "Infinity", v.u.f < 0 ? 9 : 8);
        float_repr(v.u.f, tmp, sizeof tmp);
        return elmi_j_buf_put(c, b, tmp, strlen(tmp));
    case JV_STR: return json_str(c, b, v.u.s, v.n);
    case JV_LIST:
        if (v.u.l->n == 0) return elmi_j_buf_put(c, b, "[]", 2);
        ELM_TRY(elmi_j_buf_putc(c, b, '['));
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i) ELM_TRY(elmi_j_buf_put(c, b, isep, strlen(isep)));
            if (indent >= 0) ELM_TRY(json_newline(c, b, indent, level + 1));
            ELM_TRY(elmi_j_write_json(c, b, v.u.l->v[i], indent, isep, ksep, sort, level + 1));
        }
        if (indent >= 0) ELM_TRY(json_newline(c, b, indent, level));
        return elmi_j_buf_putc(c, b, ']');
    case JV_DICT: return json_dict(c, b, v, indent, isep, ksep, sort, level);
    default:
        return elmi_j_fail(c, 0, "Object of type %s is not JSON serializable", elmi_j_type_name(v));
    }
}

/* Splits a string into its characters (UTF-8 sequences). */
static elm_status str_chars(jctx *c, jval v, jval *out) {
    ELM_TRY(elmi_j_new_list(c, elmi_j_utf8_len(v.u.s, v.n), out));
    for (size_t i = 0; i < v.n;) {
        size_t j = i + 1;
        while (j < v.n && ((unsigned char)v.u.s[j] & 0xC0) == 0x80) j++;
        ELM_TRY(elmi_j_list_push(c, out->u.l, elmi_j_str(v.u.s + i, j - i)));
        i = j;
    }
    return ELM_OK;
}

elm_status elmi_j_iterate(jctx *c, int line, jval v, jval *out) {
    switch (v.t) {
    case JV_UNDEF: return elmi_j_new_list(c, 0, out);
    case JV_LIST: *out = v; return ELM_OK;
    case JV_STR: return str_chars(c, v, out);
    case JV_DICT:
        ELM_TRY(elmi_j_new_list(c, v.u.d->n, out));
        for (size_t i = 0; i < v.u.d->n; i++) ELM_TRY(elmi_j_list_push(c, out->u.l, v.u.d->k[i]));
        return elmi_j_charge(c, v.u.d->n);
    default: return elmi_j_fail(c, line, "'%s' object is not iterable", elmi_j_type_name(v));
    }
}
