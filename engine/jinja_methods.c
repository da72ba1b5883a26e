/* jinja_methods.c: Python methods of str, dict and list that templates call,
 * and the globals range(), namespace(), dict(), raise_exception(),
 * strftime_now(). As in Jinja2's ImmutableSandboxedEnvironment, methods that
 * modify a list or a dict are refused. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "engine/jinja_impl.h"

static bool eqn(const char *a, size_t n, const char *b) { return n == strlen(b) && memcmp(a, b, n) == 0; }

/* ------------------------------------------------------------- whitespace */

static uint32_t decode_at(const unsigned char *s, size_t n, size_t *len) {
    uint32_t c0 = s[0];
    size_t k = c0 < 0x80 ? 1 : c0 >= 0xF0 ? 4 : c0 >= 0xE0 ? 3 : c0 >= 0xC0 ? 2 : 1;
    if (k > n) k = 1;
    uint32_t cp = k == 1 ? c0 : k == 2 ? (c0 & 0x1F) : k == 3 ? (c0 & 0x0F) : (c0 & 0x07);
    for (size_t i = 1; i < k; i++) cp = cp << 6 | (s[i] & 0x3F);
    *len = k;
    return cp;
}

/* Start of the last character of s[0..n). */
static size_t last_char(const char *s, size_t n) {
    size_t i = n - 1;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80 && n - i < 4) i--;
    return i;
}

static bool py_space(uint32_t cp) {
    return (cp >= 9 && cp <= 13) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
           cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

static bool in_set(uint32_t cp, const jval *chars) {
    if (!chars) return py_space(cp);
    const unsigned char *s = (const unsigned char *)chars->u.s;
    for (size_t i = 0; i < chars->n;) {
        size_t k;
        if (decode_at(s + i, chars->n - i, &k) == cp) return true;
        i += k;
    }
    return false;
}

static elm_status m_strip(jctx *c, const jnode *at, jval v, const jargs *a, bool left, bool right, jval *out) {
    const jval *chars = elmi_j_arg(a, 0, "chars");
    if (chars && chars->t == JV_NONE) chars = NULL;
    if (chars && chars->t != JV_STR) return elmi_j_fail(c, at->line, "strip arg must be None or str");
    size_t b = 0, e = v.n, k;
    const unsigned char *s = (const unsigned char *)v.u.s;
    while (left && b < e && in_set(decode_at(s + b, e - b, &k), chars)) b += k;
    while (right && e > b) {
        size_t i = last_char(v.u.s + b, e - b) + b;
        if (!in_set(decode_at(s + i, e - i, &k), chars)) break;
        e = i;
    }
    *out = elmi_j_str(v.u.s + b, e - b);
    return elmi_j_charge(c, v.n / 64);
}

static elm_status split_ws(jctx *c, jval v, int64_t maxsplit, jval *out) {
    const unsigned char *s = (const unsigned char *)v.u.s;
    size_t i = 0, k;
    while (i < v.n) {
        while (i < v.n && py_space(decode_at(s + i, v.n - i, &k))) i += k;
        if (i >= v.n) break;
        size_t st = i;
        if (maxsplit >= 0 && (int64_t)out->u.l->n >= maxsplit) /* the rest, as is */
            return elmi_j_list_push(c, out->u.l, elmi_j_str(v.u.s + st, v.n - st));
        while (i < v.n && !py_space(decode_at(s + i, v.n - i, &k))) i += k;
        ELM_TRY(elmi_j_list_push(c, out->u.l, elmi_j_str(v.u.s + st, i - st)));
    }
    return ELM_OK;
}

static elm_status m_split(jctx *c, const jnode *at, jval v, const jargs *a, jval *out) {
    const jval *sep = elmi_j_arg(a, 0, "sep"), *ms = elmi_j_arg(a, 1, "maxsplit");
    int64_t maxsplit = -1;
    if (ms && ms->t == JV_INT) maxsplit = ms->u.i;
    ELM_TRY(elmi_j_new_list(c, 0, out));
    ELM_TRY(elmi_j_charge(c, v.n / 16));
    if (!sep || sep->t == JV_NONE) return split_ws(c, v, maxsplit, out);
    if (sep->t != JV_STR) return elmi_j_fail(c, at->line, "split: the separator must be a string");
    if (sep->n == 0) return elmi_j_fail(c, at->line, "empty separator");
    size_t i = 0;
    for (;;) {
        const char *hit = maxsplit >= 0 && (int64_t)out->u.l->n >= maxsplit ? NULL
                          : i <= v.n ? memmem(v.u.s + i, v.n - i, sep->u.s, sep->n) : NULL;
        size_t e = hit ? (size_t)(hit - v.u.s) : v.n;
        ELM_TRY(elmi_j_list_push(c, out->u.l, elmi_j_str(v.u.s + i, e - i)));
        if (!hit) return ELM_OK;
        i = e + sep->n;
    }
}

static bool affix(jval s, jval p, bool end) {
    if (p.t != JV_STR || p.n > s.n) return false;
    return memcmp(end ? s.u.s + s.n - p.n : s.u.s, p.u.s, p.n) == 0;
}

static elm_status m_affix(jctx *c, const jnode *at, jval v, const jargs *a, bool end, jval *out) {
    const jval *p = elmi_j_arg(a, 0, "prefix");
    if (!p) return elmi_j_fail(c, at->line, "%s expects an argument", end ? "endswith" : "startswith");
    bool r = false;
    if (p->t == JV_LIST)
        for (size_t i = 0; i < p->u.l->n && !r; i++) r = affix(v, p->u.l->v[i], end);
    else if (p->t == JV_STR) r = affix(v, *p, end);
    else return elmi_j_fail(c, at->line, "%s: the argument must be a string or a tuple", end ? "endswith" : "startswith");
    *out = elmi_j_bool(r);
    return ELM_OK;
}

static elm_status m_str_join(jctx *c, const jnode *at, jval sep, const jargs *a, jval *out) {
    if (a->npos != 1) return elmi_j_fail(c, at->line, "join expects one argument");
    jval items;
    ELM_TRY(elmi_j_iterate(c, at->line, a->pos[0], &items));
    jbuf b = {0};
    ELM_TRY(elmi_j_buf_put(c, &b, "", 0));
    for (size_t i = 0; i < items.u.l->n; i++) {
        jval x = items.u.l->v[i];
        if (x.t != JV_STR) return elmi_j_fail(c, at->line, "sequence item %zu: expected str instance, %s found", i, elmi_j_type_name(x));
        if (i) ELM_TRY(elmi_j_buf_put(c, &b, sep.u.s, sep.n));
        ELM_TRY(elmi_j_buf_put(c, &b, x.u.s, x.n));
    }
    *out = elmi_j_str(b.p, b.n);
    return ELM_OK;
}

static elm_status str_method(jctx *c, const jnode *at, jval v, const char *name, size_t n, const jargs *a,
                             jval *out, bool *found) {
    *found = true;
    if (eqn(name, n, "strip")) return m_strip(c, at, v, a, true, true, out);
    if (eqn(name, n, "lstrip")) return m_strip(c, at, v, a, true, false, out);
    if (eqn(name, n, "rstrip")) return m_strip(c, at, v, a, false, true, out);
    if (eqn(name, n, "split")) return m_split(c, at, v, a, out);
    if (eqn(name, n, "startswith")) return m_affix(c, at, v, a, false, out);
    if (eqn(name, n, "endswith")) return m_affix(c, at, v, a, true, out);
    if (eqn(name, n, "lower")) return elmi_j_case(c, v, 0, out);
    if (eqn(name, n, "upper")) return elmi_j_case(c, v, 1, out);
    if (eqn(name, n, "capitalize")) return elmi_j_case(c, v, 2, out);
    if (eqn(name, n, "title")) return elmi_j_case(c, v, 3, out);
    if (eqn(name, n, "join")) return m_str_join(c, at, v, a, out);
    if (eqn(name, n, "replace")) {
        if (a->npos < 2 || a->pos[0].t != JV_STR || a->pos[1].t != JV_STR)
            return elmi_j_fail(c, at->line, "replace expects two strings");
        int64_t count = a->npos > 2 && a->pos[2].t == JV_INT ? a->pos[2].u.i : -1;
        return elmi_j_replace(c, v, a->pos[0], a->pos[1], count, out);
    }
    *found = false;
    return ELM_OK;
}

/* ------------------------------------------------------------ dict, list */

static elm_status unsafe(jctx *c, const jnode *at, const char *name, size_t n, jval obj) {
    return elmi_j_fail(c, at->line, "access to attribute '%.*s' of '%s' object is unsafe", (int)n, name,
                       elmi_j_type_name(obj));
}

static elm_status dict_method(jctx *c, const jnode *at, jval d, const char *name, size_t n, const jargs *a,
                              jval *out, bool *found) {
    *found = true;
    if (eqn(name, n, "items")) return elmi_j_filter(c, at, "items", 5, d, &(jargs){0}, out);
    if (eqn(name, n, "keys") || eqn(name, n, "values")) {
        bool keys = eqn(name, n, "keys");
        ELM_TRY(elmi_j_new_list(c, d.u.d->n, out));
        for (size_t i = 0; i < d.u.d->n; i++)
            ELM_TRY(elmi_j_list_push(c, out->u.l, keys ? d.u.d->k[i] : d.u.d->v[i]));
        return ELM_OK;
    }
    if (eqn(name, n, "get")) {
        if (a->npos < 1) return elmi_j_fail(c, at->line, "get expects a key");
        const jval *v = elmi_j_dict_get(c, d.u.d, a->pos[0]);
        *out = v ? *v : a->npos > 1 ? a->pos[1] : elmi_j_none();
        return ELM_OK;
    }
    static const char *const bad[] = {"pop", "popitem", "update", "setdefault", "clear", NULL};
    for (size_t i = 0; bad[i]; i++)
        if (eqn(name, n, bad[i])) return unsafe(c, at, name, n, d);
    *found = false;
    return ELM_OK;
}

static elm_status list_method(jctx *c, const jnode *at, jval l, const char *name, size_t n, const jargs *a,
                              jval *out, bool *found) {
    *found = true;
    if (eqn(name, n, "index") || eqn(name, n, "count")) {
        if (a->npos < 1) return elmi_j_fail(c, at->line, "%.*s expects an argument", (int)n, name);
        int64_t k = 0, first = -1;
        ELM_TRY(elmi_j_charge(c, l.u.l->n));
        for (size_t i = 0; i < l.u.l->n; i++)
            if (elmi_j_equal(l.u.l->v[i], a->pos[0])) {
                k++;
                if (first < 0) first = (int64_t)i;
            }
        if (eqn(name, n, "count")) *out = elmi_j_int(k);
        else if (first < 0) return elmi_j_fail(c, at->line, "value is not in list");
        else *out = elmi_j_int(first);
        return ELM_OK;
    }
    static const char *const bad[] = {"append", "pop", "extend", "insert", "remove", "clear", "sort", "reverse", NULL};
    for (size_t i = 0; bad[i]; i++)
        if (eqn(name, n, bad[i])) return unsafe(c, at, name, n, l);
    *found = false;
    return ELM_OK;
}

elm_status elmi_j_method(jctx *c, const jnode *at, jval obj, const char *name, size_t n, const jargs *a,
                         jval *out, bool *found) {
    *found = false;
    if (obj.t == JV_STR) return str_method(c, at, obj, name, n, a, out, found);
    if (obj.t == JV_DICT) return dict_method(c, at, obj, name, n, a, out, found);
    if (obj.t == JV_LIST) return list_method(c, at, obj, name, n, a, out, found);
    return ELM_OK;
}

/* ---------------------------------------------------------------- globals */

enum { G_RANGE, G_NAMESPACE, G_DICT, G_RAISE, G_STRFTIME, G_COUNT };
static const char *const globals[] = {"range", "namespace", "dict", "raise_exception", "strftime_now"};

int elmi_j_global_id(const char *name, size_t n) {
    for (int i = 0; i < G_COUNT; i++)
        if (eqn(name, n, globals[i])) return i;
    return -1;
}

static elm_status g_range(jctx *c, const jnode *at, const jargs *a, jval *out) {
    int64_t v[3] = {0, 0, 1};
    if (a->npos < 1 || a->npos > 3 || a->nkw) return elmi_j_fail(c, at->line, "range expects 1 to 3 integers");
    for (size_t i = 0; i < a->npos; i++) {
        if (a->pos[i].t != JV_INT && a->pos[i].t != JV_BOOL) return elmi_j_fail(c, at->line, "range expects integers");
        v[a->npos == 1 ? 1 : i] = a->pos[i].t == JV_INT ? a->pos[i].u.i : a->pos[i].u.b;
    }
    if (v[2] == 0) return elmi_j_fail(c, at->line, "range() arg 3 must not be zero");
    double count = ((double)v[1] - (double)v[0]) / (double)v[2];
    if (count > JINJA_MAX_RANGE)
        return elmi_j_fail(c, at->line, "range() of more than %d items exceeds the limit", JINJA_MAX_RANGE);
    ELM_TRY(elmi_j_new_list(c, count > 0 ? (size_t)count + 1 : 0, out));
    for (int64_t i = v[0]; v[2] > 0 ? i < v[1] : i > v[1]; i += v[2]) {
        ELM_TRY(elmi_j_list_push(c, out->u.l, elmi_j_int(i)));
        if ((v[2] > 0 && i > INT64_MAX - v[2]) || (v[2] < 0 && i < INT64_MIN - v[2])) break;
    }
    return elmi_j_charge(c, out->u.l->n);
}

static elm_status g_namespace(jctx *c, const jnode *at, const jargs *a, jv_type t, jval *out) {
    ELM_TRY(elmi_j_new_dict(c, a->nkw + 1, t, out));
    for (size_t i = 0; i < a->npos; i++) {
        jval src = a->pos[i];
        if (src.t != JV_DICT && src.t != JV_NS) return elmi_j_fail(c, at->line, "%s() expects a mapping", globals[t == JV_NS ? G_NAMESPACE : G_DICT]);
        for (size_t k = 0; k < src.u.d->n; k++) ELM_TRY(elmi_j_dict_set(c, out->u.d, src.u.d->k[k], src.u.d->v[k]));
    }
    for (size_t i = 0; i < a->nkw; i++) {
        const jnode *k = a->kwn->v[i];
        ELM_TRY(elmi_j_dict_set(c, out->u.d, elmi_j_str(k->s, k->n), a->kw[i]));
    }
    return ELM_OK;
}

static elm_status g_raise(jctx *c, const jnode *at, const jargs *a) {
    jval msg = a->npos ? a->pos[0] : elmi_j_str("", 0);
    ELM_TRY(elmi_j_to_str(c, msg, &msg));
    if (msg.n == 0 || msg.u.s[0] == 0) msg = elmi_j_cstr("raise_exception() with an empty message");
    if (c->err && c->err_size) snprintf(c->err, c->err_size, "%.*s", (int)(msg.n > 65535 ? 65535 : msg.n), msg.u.s);
    (void)at;
    c->raised = true;
    c->st = ELM_ERR_TEMPLATE;
    return c->st;
}

static elm_status g_strftime(jctx *c, const jnode *at, const jargs *a, jval *out) {
    if (a->npos != 1 || a->pos[0].t != JV_STR) return elmi_j_fail(c, at->line, "strftime_now expects a format string");
    jval f = a->pos[0];
    if (f.n > 256 || memchr(f.u.s, 0, f.n)) return elmi_j_fail(c, at->line, "strftime_now: bad format");
    char fmt[258], buf[1024];
    memcpy(fmt, f.u.s, f.n);
    fmt[f.n] = 0;
    struct tm tm;
    time_t now = c->in->now ? (time_t)c->in->now : time(NULL);
    if (c->in->now) gmtime_r(&now, &tm);
    else localtime_r(&now, &tm);
    size_t k = f.n ? strftime(buf, sizeof buf, fmt, &tm) : 0;
    if (f.n && k == 0 && strlen(fmt) > 0) buf[0] = 0;
    char *p = elmi_j_strndup(c, buf, k);
    if (!p) return c->st;
    *out = elmi_j_str(p, k);
    return ELM_OK;
}

elm_status elmi_j_global(jctx *c, const jnode *at, int fn, const jargs *a, jval *out) {
    switch (fn) {
    case G_RANGE: return g_range(c, at, a, out);
    case G_NAMESPACE: return g_namespace(c, at, a, JV_NS, out);
    case G_DICT: return g_namespace(c, at, a, JV_DICT, out);
    case G_RAISE: return g_raise(c, at, a);
    case G_STRFTIME: return g_strftime(c, at, a, out);
    default: return elmi_j_fail(c, at->line, "not a function");
    }
}
