/* jinja_builtins.c: the filters and tests templates use. */
#define _GNU_SOURCE
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/jinja_impl.h"

static bool eqn(const char *a, size_t n, const char *b) { return n == strlen(b) && memcmp(a, b, n) == 0; }

static const char *const filters[] = {
    "length", "count", "tojson", "trim", "string", "lower", "upper", "default", "d", "safe",
    "escape", "e", "items", "join", "indent", "list", "selectattr", "rejectattr", "map",
    "replace", "unique", "dictsort", "first", "last", "int", "float", "title", "capitalize",
    "wordcount", "abs", "reverse", "sort", "select", "reject", "sum", "min", "max", "batch",
    "center", NULL};

static const char *const tests[] = {
    "defined", "undefined", "none", "string", "mapping", "iterable", "sequence", "number",
    "integer", "float", "boolean", "true", "false", "equalto", "eq", "ne", "sameas", "odd",
    "even", "divisibleby", "in", "lower", "upper", "callable", "gt", "lt", "ge", "le",
    "greaterthan", "lessthan", NULL};

static bool known(const char *const *list, const char *name, size_t n) {
    for (size_t i = 0; list[i]; i++)
        if (eqn(name, n, list[i])) return true;
    return false;
}
bool elmi_j_filter_known(const char *name, size_t n) { return known(filters, name, n); }
bool elmi_j_test_known(const char *name, size_t n) { return known(tests, name, n); }

const jval *elmi_j_arg(const jargs *a, size_t pos, const char *name) {
    for (size_t k = 0; k < a->nkw && a->kwn; k++)
        if (eqn(a->kwn->v[k]->s, a->kwn->v[k]->n, name)) return &a->kw[k];
    return pos < a->npos ? &a->pos[pos] : NULL;
}

static elm_status need_str(jctx *c, const jnode *at, const char *what, jval v) {
    if (v.t == JV_STR) return ELM_OK;
    if (v.t == JV_UNDEF) return elmi_j_undefined_error(c, at->line, v);
    return elmi_j_fail(c, at->line, "%s expects a string, not %s", what, elmi_j_type_name(v));
}

static elm_status need_int(jctx *c, const jnode *at, const char *what, const jval *v, int64_t dflt, int64_t *out) {
    if (!v || v->t == JV_NONE) *out = dflt;
    else if (v->t == JV_INT) *out = v->u.i;
    else if (v->t == JV_BOOL) *out = v->u.b;
    else return elmi_j_fail(c, at->line, "%s expects an integer, not %s", what, elmi_j_type_name(*v));
    return ELM_OK;
}

/* ----------------------------------------------------------------- strings */

/* Simple case mapping: ASCII, Latin-1, Latin Extended-A, Greek, Cyrillic. */
static uint32_t to_upper(uint32_t cp) {
    if (cp < 0x80) return (cp >= 'a' && cp <= 'z') ? cp - 32 : cp;
    if ((cp >= 0xE0 && cp <= 0xFE && cp != 0xF7) || (cp >= 0x3B1 && cp <= 0x3C9 && cp != 0x3C2) ||
        (cp >= 0x430 && cp <= 0x44F))
        return cp - 32;
    if (cp == 0xFF) return 0x178;
    if (cp >= 0x450 && cp <= 0x45F) return cp - 80;
    if (cp >= 0x100 && cp <= 0x17F && cp != 0x130 && cp != 0x131 && cp != 0x138 && cp != 0x149 && cp != 0x17F) {
        bool odd_lower = (cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17E);
        if (odd_lower ? (cp % 2 == 0) : (cp % 2 == 1)) return cp - 1;
    }
    return cp;
}

static uint32_t to_lower(uint32_t cp) {
    if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
    if ((cp >= 0xC0 && cp <= 0xDE && cp != 0xD7) || (cp >= 0x391 && cp <= 0x3A9 && cp != 0x3A2) ||
        (cp >= 0x410 && cp <= 0x42F))
        return cp + 32;
    if (cp == 0x178) return 0xFF;
    if (cp >= 0x400 && cp <= 0x40F) return cp + 80;
    if (cp >= 0x100 && cp <= 0x17F && cp != 0x130 && cp != 0x131 && cp != 0x138 && cp != 0x149 && cp != 0x17F) {
        bool odd_lower = (cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17E);
        if (odd_lower ? (cp % 2 == 1) : (cp % 2 == 0)) return cp + 1;
    }
    return cp;
}

static bool is_letter(uint32_t cp) {
    return (cp < 0x80 && isalpha((int)cp)) || to_upper(cp) != cp || to_lower(cp) != cp;
}

static size_t utf8_get(const unsigned char *s, size_t n, uint32_t *cp) {
    uint32_t c0 = s[0];
    size_t k = c0 < 0x80 ? 1 : c0 >= 0xF0 ? 4 : c0 >= 0xE0 ? 3 : c0 >= 0xC0 ? 2 : 1;
    if (k > n) k = 1;
    uint32_t v = k == 1 ? c0 : k == 2 ? (c0 & 0x1F) : k == 3 ? (c0 & 0x0F) : (c0 & 0x07);
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80) { *cp = c0; return 1; }
        v = v << 6 | (s[i] & 0x3F);
    }
    *cp = k == 1 ? c0 : v;
    return k;
}

static size_t utf8_put(uint32_t cp, char *o) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 63)); return 2; }
    o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 63)); o[2] = (char)(0x80 | (cp & 63));
    return 3;
}

/* mode 0 lower, 1 upper, 2 capitalize, 3 str.title() (a word starts after any
 * non-letter), 4 Jinja's title filter (a word starts after -, space, (, {, [, <). */
elm_status elmi_j_case(jctx *c, jval v, int mode, jval *out) {
    char *p = elmi_j_alloc(c, v.n + 1);
    if (!p) return c->st;
    size_t o = 0;
    bool word_start = true;
    const unsigned char *s = (const unsigned char *)v.u.s;
    for (size_t i = 0; i < v.n;) {
        uint32_t cp;
        size_t k = utf8_get(s + i, v.n - i, &cp);
        uint32_t m = cp;
        if (mode == 0) m = to_lower(cp);
        else if (mode == 1) m = to_upper(cp);
        else if (mode == 2) m = i == 0 ? to_upper(cp) : to_lower(cp);
        else m = word_start ? to_upper(cp) : to_lower(cp);
        if (mode == 3) word_start = !is_letter(cp);
        else if (mode == 4) word_start = cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' || (cp < 0x80 && isspace((int)cp));
        /* a mapped character keeps its encoded length (all the ranges above do) */
        if (m != cp && k >= 2 && k <= 3) o += utf8_put(m, p + o);
        else if (m != cp && k == 1) p[o++] = (char)m;
        else {
            memcpy(p + o, s + i, k);
            o += k;
        }
        i += k;
    }
    p[o] = 0;
    *out = elmi_j_str(p, o);
    return ELM_OK;
}

static elm_status html_escape(jctx *c, jval v, jval *out) {
    jbuf b = {0};
    ELM_TRY(elmi_j_buf_put(c, &b, "", 0));
    for (size_t i = 0; i < v.n; i++) {
        const char *r = NULL;
        switch (v.u.s[i]) {
        case '&': r = "&amp;"; break;
        case '<': r = "&lt;"; break;
        case '>': r = "&gt;"; break;
        case '"': r = "&#34;"; break;
        case '\'': r = "&#39;"; break;
        default: break;
        }
        if (r) ELM_TRY(elmi_j_buf_put(c, &b, r, strlen(r)));
        else ELM_TRY(elmi_j_buf_putc(c, &b, v.u.s[i]));
    }
    *out = elmi_j_str(b.p, b.n);
    return ELM_OK;
}

elm_status elmi_j_replace(jctx *c, jval s, jval old, jval new_, int64_t count, jval *out) {
    jbuf b = {0};
    ELM_TRY(elmi_j_buf_put(c, &b, "", 0));
    size_t i = 0;
    int64_t done = 0;
    ELM_TRY(elmi_j_charge(c, s.n / 16));
    while (i <= s.n && (count < 0 || done < count)) {
        const char *hit;
        if (old.n == 0) hit = s.u.s + i;
        else hit = i < s.n ? memmem(s.u.s + i, s.n - i, old.u.s, old.n) : NULL;
        if (!hit) break;
        size_t at = (size_t)(hit - s.u.s);
        ELM_TRY(elmi_j_buf_put(c, &b, s.u.s + i, at - i));
        ELM_TRY(elmi_j_buf_put(c, &b, new_.u.s, new_.n));
        done++;
        if (old.n == 0) {
            if (at >= s.n) { i = s.n + 1; break; }
            size_t k = at + 1;
            while (k < s.n && ((unsigned char)s.u.s[k] & 0xC0) == 0x80) k++;
            ELM_TRY(elmi_j_buf_put(c, &b, s.u.s + at, k - at));
            i = k;
        } else i = at + old.n;
    }
    if (i < s.n) ELM_TRY(elmi_j_buf_put(c, &b, s.u.s + i, s.n - i));
    *out = elmi_j_str(b.p, b.n);
    return ELM_OK;
}

static elm_status f_indent(jctx *c, const jnode *at, jval v, const jargs *a, jval *out) {
    int64_t width;
    ELM_TRY(need_int(c, at, "indent", elmi_j_arg(a, 0, "width"), 4, &width));
    if (width < 0 || width > 1000) return elmi_j_fail(c, at->line, "indent: width out of range");
    const jval *first = elmi_j_arg(a, 1, "first"), *blank = elmi_j_arg(a, 2, "blank");
    bool f = first && elmi_j_truthy(*first), bl = blank && elmi_j_truthy(*blank);
    jbuf b = {0};
    ELM_TRY(elmi_j_buf_put(c, &b, "", 0));
    if (f) for (int64_t k = 0; k < width; k++) ELM_TRY(elmi_j_buf_putc(c, &b, ' '));
    size_t i = 0;
    bool first_line = true;
    while (i < v.n) {
        size_t e = i;
        while (e < v.n && v.u.s[e] != '\n' && v.u.s[e] != '\r') e++;
        if (!first_line) {
            ELM_TRY(elmi_j_buf_putc(c, &b, '\n'));
            if (bl || e > i) for (int64_t k = 0; k < width; k++) ELM_TRY(elmi_j_buf_putc(c, &b, ' '));
        }
        ELM_TRY(elmi_j_buf_put(c, &b, v.u.s + i, e - i));
        first_line = false;
        if (e < v.n && v.u.s[e] == '\r' && e + 1 < v.n && v.u.s[e + 1] == '\n') e++;
        i = e + 1;
        if (e >= v.n) break;
        if (i == v.n) { /* a trailing newline: an empty last line */
            ELM_TRY(elmi_j_buf_putc(c, &b, '\n'));
            if (bl) for (int64_t k = 0; k < width; k++) ELM_TRY(elmi_j_buf_putc(c, &b, ' '));
        }
    }
    *out = elmi_j_str(b.p, b.n);
    return ELM_OK;
}

/* str.center(width): the padding split as CPython splits it. */
static elm_status f_center(jctx *c, const jnode *at, jval v, const jargs *a, jval *out) {
    int64_t width;
    ELM_TRY(need_int(c, at, "center", elmi_j_arg(a, 0, "width"), 80, &width));
    if (width > (int64_t)JINJA_MAX_OUTPUT) return elmi_j_fail(c, at->line, "center: width out of range");
    ELM_TRY(elmi_j_to_str(c, v, &v));
    int64_t marg = width - (int64_t)elmi_j_utf8_len(v.u.s, v.n);
    if (marg <= 0) {
        *out = v;
        return ELM_OK;
    }
    int64_t left = marg / 2 + (marg & width & 1);
    ELM_TRY(elmi_j_charge(c, (uint64_t)marg / 16));
    jbuf b = {0};
    for (int64_t k = 0; k < left; k++) ELM_TRY(elmi_j_buf_putc(c, &b, ' '));
    ELM_TRY(elmi_j_buf_put(c, &b, v.u.s, v.n));
    for (int64_t k = left; k < marg; k++) ELM_TRY(elmi_j_buf_putc(c, &b, ' '));
    *out = elmi_j_str(b.p, b.n);
    return ELM_OK;
}

static elm_status f_join(jctx *c, const jnode *at, jval v, const jargs *a, jval *out) {
    const jval *sep = elmi_j_arg(a, 0, "d"), *attr = elmi_j_arg(a, 1, "attribute");
    jval items, s;
    ELM_TRY(elmi_j_iterate(c, at->line, v, &items));
    if (sep) ELM_TRY(need_str(c, at, "join", *sep));
    jbuf b = {0};
    ELM_TRY(elmi_j_buf_put(c, &b, "", 0));
    for (size_t i = 0; i < items.u.l->n; i++) {
        jval x = items.u.l->v[i];
        if (attr) {
            if (x.t != JV_DICT) return elmi_j_fail(c, at->line, "join: attribute of a non-mapping");
            const jval *y = elmi_j_dict_get(c, x.u.d, *attr);
            x = y ? *y : elmi_j_undef(NULL, 0);
        }
        if (i && sep) ELM_TRY(elmi_j_buf_put(c, &b, sep->u.s, sep->n));
        ELM_TRY(elmi_j_to_str(c, x, &s));
        ELM_TRY(elmi_j_buf_put(c, &b, s.u.s, s.n));
    }
    *out = elmi_j_str(b.p, b.n);
    return ELM_OK;
}

/* ----------------------------------------------------------------- lists */

static elm_status attr_of(jctx *c, jval item, jval name, jval *out) {
    *out = elmi_j_undef(NULL, 0);
    if (name.t != JV_STR) return ELM_OK;
    size_t i = 0;
    while (i <= name.n) { /* dotted paths: "function.name" */
        size_t e = i;
        while (e < name.n && name.u.s[e] != '.') e++;
        if (item.t != JV_DICT && item.t != JV_NS) {
            *out = elmi_j_undef(NULL, 0);
            return ELM_OK;
        }
        const jval *v = elmi_j_dict_gets(item.u.d, name.u.s + i, e - i);
        ELM_TRY(elmi_j_charge(c, 1));
        item = v ? *v : elmi_j_undef(name.u.s + i, e - i);
        i = e + 1;
    }
    *out = item;
    return ELM_OK;
}

/* select/reject/selectattr/rejectattr: keep items whose (attribute) passes the test. */
static elm_status f_select(jctx *c, const jnode *at, jval v, const jargs *a, bool by_attr, bool keep, jval *out) {
    jval items;
    if (!elmi_j_truthy(v)) return elmi_j_new_list(c, 0, out); /* Jinja2: `if value:` */
    ELM_TRY(elmi_j_iterate(c, at->line, v, &items));
    ELM_TRY(elmi_j_new_list(c, 0, out));
    size_t first = by_attr ? 1 : 0;
    if (by_attr && a->npos < 1) return elmi_j_fail(c, at->line, "selectattr: missing the attribute");
    if (a->npos > first && a->pos[first].t != JV_STR) return elmi_j_fail(c, at->line, "select: the test name must be a string");
    for (size_t i = 0; i < items.u.l->n; i++) {
        jval x = items.u.l->v[i];
        if (by_attr) ELM_TRY(attr_of(c, x, a->pos[0], &x));
        bool pass;
        if (a->npos > first) {
            const jval *t = &a->pos[first];
            if (!elmi_j_test_known(t->u.s, t->n)) return elmi_j_fail(c, at->line, "no test named '%.*s'", (int)t->n, t->u.s);
            jargs ta = {a->pos + first + 1, a->npos - first - 1, NULL, NULL, 0};
            ELM_TRY(elmi_j_test(c, at, t->u.s, t->n, x, &ta, &pass));
        } else pass = elmi_j_truthy(x);
        if (pass == keep) ELM_TRY(elmi_j_list_push(c, out->u.l, items.u.l->v[i]));
    }
    return ELM_OK;
}

static elm_status f_map(jctx *c, const jnode *at, jval v, const jargs *a, jval *out) {
    jval items;
    if (!elmi_j_truthy(v)) return elmi_j_new_list(c, 0, out);
    ELM_TRY(elmi_j_iterate(c, at->line, v, &items));
    ELM_TRY(elmi_j_new_list(c, items.u.l->n, out));
    const jval *attr = elmi_j_arg(a, 99, "attribute"), *dflt = elmi_j_arg(a, 99, "default");
    if (!attr && (a->npos < 1 || a->pos[0].t != JV_STR)) return elmi_j_fail(c, at->line, "map: expects a filter name or attribute=");
    for (size_t i = 0; i < items.u.l->n; i++) {
        jval x = items.u.l->v[i], y;
        if (attr) {
            ELM_TRY(attr_of(c, x, *attr, &y));
            if (y.t == JV_UNDEF && dflt) y = *dflt;
        } else {
            const jval *f = &a->pos[0];
            if (!elmi_j_filter_known(f->u.s, f->n)) return elmi_j_fail(c, at->line, "no filter named '%.*s'", (int)f->n, f->u.s);
            jargs fa = {a->pos + 1, a->npos - 1, a->kwn, a->kw, a->nkw};
            ELM_TRY(elmi_j_filter(c, at, f->u.s, f->n, x, &fa, &y));
        }
        ELM_TRY(elmi_j_list_push(c, out->u.l, y));
    }
    return ELM_OK;
}

/* Strings compare case-insensitively unless case_sensitive. */
static jval fold(jctx *c, jval v, bool cs) {
    jval r = v;
    if (v.t == JV_STR && !cs && elmi_j_case(c, v, 0, &r) != ELM_OK) return v;
    return r;
}

static elm_status f_unique(jctx *c, const jnode *at, jval v, const jargs *a, jval *out) {
    jval items;
    const jval *cs = elmi_j_arg(a, 0, "case_sensitive");
    bool sens = cs && elmi_j_truthy(*cs);
    ELM_TRY(elmi_j_iterate(c, at->line, v, &items));
    ELM_TRY(elmi_j_new_list(c, 0, out));
    jval seen;
    ELM_TRY(elmi_j_new_list(c, 0, &seen));
    for (size_t i = 0; i < items.u.l->n; i++) {
        jval k = fold(c, items.u.l->v[i], sens);
        bool dup = false;
        ELM_TRY(elmi_j_charge(c, seen.u.l->n));
        for (size_t j = 0; j < seen.u.l->n && !dup; j++) dup = elmi_j_equal(seen.u.l->v[j], k);
        if (dup) continue;
        ELM_TRY(elmi_j_list_push(c, seen.u.l, k));
        ELM_TRY(elmi_j_list_push(c, out->u.l, items.u.l->v[i]));
    }
    return c->st;
}

/* Stable insertion sort of `l` by keys `k` (parallel arrays). */
static elm_status sort_by(jctx *c, const jnode *at, jval *k, jval *l, size_t n, bool reverse) {
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0; j--) {
            int r;
            ELM_TRY(elmi_j_compare(c, at->line, k[j - 1], k[j], &r));
            ELM_TRY(elmi_j_charge(c, 1));
            if (reverse ? r >= 0 : r <= 0) break;
            jval t = k[j]; k[j] = k[j - 1]; k[j - 1] = t;
            t = l[j]; l[j] = l[j - 1]; l[j - 1] = t;
        }
    return ELM_OK;
}

static elm_status f_sort(jctx *c, const jnode *at, jval v, const jargs *a, bool dict, jval *out) {
    jval items;
    const jval *rev = elmi_j_arg(a, dict ? 2 : 0, "reverse"), *cs = elmi_j_arg(a, dict ? 0 : 1, "case_sensitive");
    const jval *attr = dict ? NULL : elmi_j_arg(a, 2, "attribute"), *by = dict ? elmi_j_arg(a, 1, "by") : NULL;
    bool sens = cs && elmi_j_truthy(*cs), by_value = by && elmi_j_is_str(*by, "value");
    if (dict) {
        if (v.t != JV_DICT) return elmi_j_fail(c, at->line, "dictsort expects a mapping");
        ELM_TRY(elmi_j_filter(c, at, "items", 5, v, &(jargs){0}, &items));
    } else ELM_TRY(elmi_j_iterate(c, at->line, v, &items));
    size_t n = items.u.l->n;
    ELM_TRY(elmi_j_new_list(c, n, out));
    jval *keys = elmi_j_alloc(c, (n ? n : 1) * sizeof *keys);
    if (!keys) return c->st;
    for (size_t i = 0; i < n; i++) {
        jval x = items.u.l->v[i];
        if (dict) x = x.u.l->v[by_value ? 1 : 0];
        else if (attr) ELM_TRY(attr_of(c, x, *attr, &x));
        keys[i] = fold(c, x, sens);
        out->u.l->v[i] = items.u.l->v[i];
    }
    out->u.l->n = n;
    return sort_by(c, at, keys, out->u.l->v, n, rev && elmi_j_truthy(*rev));
}

static elm_status f_items(jctx *c, const jnode *at, jval v, jval *out) {
    if (v.t == JV_UNDEF) return elmi_j_new_list(c, 0, out);
    if (v.t != JV_DICT && v.t != JV_NS) return elmi_j_fail(c, at->line, "items expects a mapping, not %s", elmi_j_type_name(v));
    ELM_TRY(elmi_j_new_list(c, v.u.d->n, out));
    for (size_t i = 0; i < v.u.d->n; i++) {
        jval pair;
        ELM_TRY(elmi_j_new_list(c, 2, &pair));
        pair.u.l->tuple = true;
        ELM_TRY(elmi_j_list_push(c, pair.u.l, v.u.d->k[i]));
        ELM_TRY(elmi_j_list_push(c, pair.u.l, v.u.d->v[i]));
        ELM_TRY(elmi_j_list_push(c, out->u.l, pair));
    }
    return elmi_j_charge(c, v.u.d->n);
}

static elm_status f_length(jctx *c, const jnode *at, jval v, jval *out) {
    switch (v.t) {
    case JV_UNDEF: *out = elmi_j_int(0); return ELM_OK;
    case JV_STR: *out = elmi_j_int((int64_t)elmi_j_utf8_len(v.u.s, v.n)); return ELM_OK;
    case JV_LIST: *out = elmi_j_int((int64_t)v.u.l->n); return ELM_OK;
    case JV_DICT: *out = elmi_j_int((int64_t)v.u.d->n); return ELM_OK;
    default: return elmi_j_fail(c, at->line, "object of type '%s' has no len()", elmi_j_type_name(v));
    }
}

static elm_status f_tojson(jctx *c, const jnode *at, jval v, const jargs *a, jval *out) {
    const jval *asc = elmi_j_arg(a, 0, "ensure_ascii"), *ind = elmi_j_arg(a, 1, "indent");
    const jval *sep = elmi_j_arg(a, 2, "separators"), *sk = elmi_j_arg(a, 3, "sort_keys");
    if (asc && elmi_j_truthy(*asc)) return elmi_j_fail(c, at->line, "unsupported feature: tojson(ensure_ascii=true)");
    int64_t indent;
    ELM_TRY(need_int(c, at, "tojson indent", ind, -1, &indent));
    if (indent > 64) return elmi_j_fail(c, at->line, "tojson: indent too large");
    const char *isep = indent >= 0 ? "," : ", ", *ksep = ": ";
    if (sep && sep->t != JV_NONE) {
        if (sep->t != JV_LIST || sep->u.l->n != 2 || sep->u.l->v[0].t != JV_STR || sep->u.l->v[1].t != JV_STR)
            return elmi_j_fail(c, at->line, "tojson: separators must be two strings");
        isep = elmi_j_strndup(c, sep->u.l->v[0].u.s, sep->u.l->v[0].n);
        ksep = elmi_j_strndup(c, sep->u.l->v[1].u.s, sep->u.l->v[1].n);
        if (!isep || !ksep) return c->st;
    }
    if (v.t == JV_UNDEF) return elmi_j_undefined_error(c, at->line, v);
    jbuf b = {0};
    ELM_TRY(elmi_j_buf_put(c, &b, "", 0));
    ELM_TRY(elmi_j_write_json(c, &b, v, indent < 0 ? -1 : (int)indent, isep, ksep, sk && elmi_j_truthy(*sk), 0));
    *out = elmi_j_str(b.p, b.n);
    return ELM_OK;
}

static elm_status f_number(jctx *c, const jnode *at, jval v, const jargs *a, bool to_int, jval *out) {
    const jval *d = elmi_j_arg(a, 0, "default");
    jval dflt = d ? *d : (to_int ? elmi_j_int(0) : elmi_j_float(0));
    double f = 0;
    bool ok = true;
    if (v.t == JV_INT || v.t == JV_BOOL) f = v.t == JV_INT ? (double)v.u.i : v.u.b;
    else if (v.t == JV_FLOAT) f = v.u.f;
    else if (v.t == JV_STR) {
        char *s = elmi_j_strndup(c, v.u.s, v.n), *end;
        if (!s) return c->st;
        f = strtod(s, &end);
        while (*end && isspace((unsigned char)*end)) end++;
        ok = end != s && !*end;
    } else ok = false;
    if (!ok) { *out = dflt; return ELM_OK; }
    if (to_int && v.t == JV_INT) *out = v;
    else if (to_int) *out = (isfinite(f) && fabs(f) < 9.2e18) ? elmi_j_int((int64_t)f) : dflt;
    else *out = elmi_j_float(f);
    (void)at;
    return ELM_OK;
}

static elm_status f_first_last(jctx *c, const jnode *at, jval v, bool last, jval *out) {
    jval items;
    ELM_TRY(elmi_j_iterate(c, at->line, v, &items));
    size_t n = items.u.l->n;
    *out = n ? items.u.l->v[last ? n - 1 : 0] : elmi_j_undef(NULL, 0);
    return ELM_OK;
}

static elm_status f_default(jval v, const jargs *a, jval *out) {
    const jval *d = elmi_j_arg(a, 0, "default_value"), *b = elmi_j_arg(a, 1, "boolean");
    bool use = v.t == JV_UNDEF || (b && elmi_j_truthy(*b) && !elmi_j_truthy(v));
    *out = use ? (d ? *d : elmi_j_str("", 0)) : v;
    return ELM_OK;
}

static elm_status f_reverse(jctx *c, const jnode *at, jval v, jval *out) {
    jval items;
    ELM_TRY(elmi_j_iterate(c, at->line, v, &items));
    size_t n = items.u.l->n;
    jval r;
    ELM_TRY(elmi_j_new_list(c, n, &r));
    for (size_t i = 0; i < n; i++) r.u.l->v[i] = items.u.l->v[n - 1 - i];
    r.u.l->n = n;
    if (v.t != JV_STR) { *out = r; return ELM_OK; }
    jbuf b = {0};
    ELM_TRY(elmi_j_buf_put(c, &b, "", 0));
    for (size_t i = 0; i < n; i++) ELM_TRY(elmi_j_buf_put(c, &b, r.u.l->v[i].u.s, r.u.l->v[i].n));
    *out = elmi_j_str(b.p, b.n);
    return ELM_OK;
}

static elm_status f_wordcount(jctx *c, jval v, jval *out) {
    int64_t k = 0;
    bool in = false;
    for (size_t i = 0; i < v.n; i++) {
        unsigned char ch = (unsigned char)v.u.s[i];
        bool w = isalnum(ch) || ch == '_' || ch >= 0x80;
        if (w && !in) k++;
        in = w;
    }
    *out = elmi_j_int(k);
    (void)c;
    return ELM_OK;
}

static elm_status f_sum_minmax(jctx *c, const jnode *at, const char *name, size_t n, jval v, jval *out) {
    jval items;
    ELM_TRY(elmi_j_iterate(c, at->line, v, &items));
    bool sum = eqn(name, n, "sum"), mx = eqn(name, n, "max");
    *out = sum ? elmi_j_int(0) : elmi_j_undef(NULL, 0);
    for (size_t i = 0; i < items.u.l->n; i++) {
        jval x = items.u.l->v[i];
        if (sum) {
            jnode op = {.kind = JN_BIN, .op = JOP_ADD, .line = at->line};
            jnode la = {.kind = JN_LIT, .lit = *out}, lb = {.kind = JN_LIT, .lit = x};
            op.a = &la;
            op.b = &lb;
            ELM_TRY(elmi_j_eval(c, &op, out));
            continue;
        }
        int r = 0;
        if (out->t != JV_UNDEF) ELM_TRY(elmi_j_compare(c, at->line, x, *out, &r));
        if (out->t == JV_UNDEF || (mx ? r > 0 : r < 0)) *out = x;
    }
    return ELM_OK;
}

static elm_status f_batch(jctx *c, const jnode *at, jval v, const jargs *a, jval *out) {
    int64_t size;
    ELM_TRY(need_int(c, at, "batch", elmi_j_arg(a, 0, "linecount"), 1, &size));
    if (size <= 0) return elmi_j_fail(c, at->line, "batch: the size must be positive");
    jval items, cur = {0};
    ELM_TRY(elmi_j_iterate(c, at->line, v, &items));
    ELM_TRY(elmi_j_new_list(c, 0, out));
    for (size_t i = 0; i < items.u.l->n; i++) {
        if (i % (size_t)size == 0) {
            ELM_TRY(elmi_j_new_list(c, 0, &cur));
            ELM_TRY(elmi_j_list_push(c, out->u.l, cur));
        }
        ELM_TRY(elmi_j_list_push(c, cur.u.l, items.u.l->v[i]));
    }
    return ELM_OK;
}

static elm_status string_filter(jctx *c, const jnode *at, const char *name, size_t n, jval v, const jargs *a,
                                jval *out, bool *done) {
    *done = true;
    if (eqn(name, n, "string")) return elmi_j_to_str(c, v, out);
    if (eqn(name, n, "safe")) { *out = v; return ELM_OK; }
    bool lower = eqn(name, n, "lower"), upper = eqn(name, n, "upper"), title = eqn(name, n, "title");
    bool cap = eqn(name, n, "capitalize"), trim = eqn(name, n, "trim"), esc = eqn(name, n, "escape") || eqn(name, n, "e");
    bool repl = eqn(name, n, "replace"), wc = eqn(name, n, "wordcount");
    if (!(lower || upper || title || cap || trim || esc || repl || wc)) {
        *done = false;
        return ELM_OK;
    }
    ELM_TRY(elmi_j_to_str(c, v, &v));
    if (lower || upper || cap || title) return elmi_j_case(c, v, lower ? 0 : upper ? 1 : cap ? 2 : 4, out);
    if (esc) return html_escape(c, v, out);
    if (wc) return f_wordcount(c, v, out);
    if (trim) {
        jargs sa = {a->pos, a->npos, NULL, NULL, 0};
        bool found;
        return elmi_j_method(c, at, v, "strip", 5, &sa, out, &found);
    }
    const jval *o = elmi_j_arg(a, 0, "old"), *nw = elmi_j_arg(a, 1, "new"), *cnt = elmi_j_arg(a, 2, "count");
    if (!o || !nw) return elmi_j_fail(c, at->line, "replace expects two arguments");
    jval os, ns;
    ELM_TRY(elmi_j_to_str(c, *o, &os));
    ELM_TRY(elmi_j_to_str(c, *nw, &ns));
    int64_t count;
    ELM_TRY(need_int(c, at, "replace", cnt, -1, &count));
    return elmi_j_replace(c, v, os, ns, count, out);
}

elm_status elmi_j_filter(jctx *c, const jnode *at, const char *name, size_t n, jval v, const jargs *a, jval *out) {
    bool done;
    ELM_TRY(string_filter(c, at, name, n, v, a, out, &done));
    if (done) return ELM_OK;
    if (eqn(name, n, "length") || eqn(name, n, "count")) return f_length(c, at, v, out);
    if (eqn(name, n, "tojson")) return f_tojson(c, at, v, a, out);
    if (eqn(name, n, "default") || eqn(name, n, "d")) return f_default(v, a, out);
    if (eqn(name, n, "items")) return f_items(c, at, v, out);
    if (eqn(name, n, "join")) return f_join(c, at, v, a, out);
    if (eqn(name, n, "indent")) {
        ELM_TRY(elmi_j_to_str(c, v, &v));
        return f_indent(c, at, v, a, out);
    }
    if (eqn(name, n, "center")) return f_center(c, at, v, a, out);
    if (eqn(name, n, "list")) return elmi_j_iterate(c, at->line, v, out);
    if (eqn(name, n, "selectattr")) return f_select(c, at, v, a, true, true, out);
    if (eqn(name, n, "rejectattr")) return f_select(c, at, v, a, true, false, out);
    if (eqn(name, n, "select")) return f_select(c, at, v, a, false, true, out);
    if (eqn(name, n, "reject")) return f_select(c, at, v, a, false, false, out);
    if (eqn(name, n, "map")) return f_map(c, at, v, a, out);
    if (eqn(name, n, "unique")) return f_unique(c, at, v, a, out);
    if (eqn(name, n, "dictsort")) return f_sort(c, at, v, a, true, out);
    if (eqn(name, n, "sort")) return f_sort(c, at, v, a, false, out);
    if (eqn(name, n, "first") || eqn(name, n, "last")) return f_first_last(c, at, v, eqn(name, n, "last"), out);
    if (eqn(name, n, "int") || eqn(name, n, "float")) return f_number(c, at, v, a, eqn(name, n, "int"), out);
    if (eqn(name, n, "reverse")) return f_reverse(c, at, v, out);
    if (eqn(name, n, "batch")) return f_batch(c, at, v, a, out);
    if (eqn(name, n, "sum") || eqn(name, n, "min") || eqn(name, n, "max")) return f_sum_minmax(c, at, name, n, v, out);
    if (eqn(name, n, "abs")) {
        if (v.t == JV_INT && v.u.i != INT64_MIN) *out = elmi_j_int(v.u.i < 0 ? -v.u.i : v.u.i);
        else if (v.t == JV_FLOAT) *out = elmi_j_float(fabs(v.u.f));
        else return elmi_j_fail(c, at->line, "bad operand type for abs(): '%s'", elmi_j_type_name(v));
        return ELM_OK;
    }
    return elmi_j_fail(c, at->line, "unsupported feature: no filter named '%.*s'", (int)n, name);
}

/* ------------------------------------------------------------------ tests */

static bool is_lower_upper(jval v, bool upper) {
    if (v.t != JV_STR) return false;
    bool any = false;
    for (size_t i = 0; i < v.n; i++) {
        unsigned char ch = (unsigned char)v.u.s[i];
        if (upper ? islower(ch) : isupper(ch)) return false;
        any |= isalpha(ch) != 0;
    }
    return any;
}

static elm_status compare_test(jctx *c, const jnode *at, const char *name, size_t n, jval v, const jval *o, bool *out) {
    int r;
    ELM_TRY(elmi_j_compare(c, at->line, v, *o, &r));
    if (eqn(name, n, "gt") || eqn(name, n, "greaterthan")) *out = r > 0;
    else if (eqn(name, n, "lt") || eqn(name, n, "lessthan")) *out = r < 0;
    else if (eqn(name, n, "ge")) *out = r >= 0;
    else *out = r <= 0;
    return ELM_OK;
}

static elm_status int_test(jctx *c, const jnode *at, const char *name, size_t n, jval v, const jval *o, bool *out) {
    if (v.t != JV_INT && v.t != JV_BOOL) return elmi_j_fail(c, at->line, "test '%.*s' expects an integer", (int)n, name);
    int64_t x = v.t == JV_INT ? v.u.i : v.u.b;
    if (eqn(name, n, "odd")) *out = (x % 2) != 0;
    else if (eqn(name, n, "even")) *out = (x % 2) == 0;
    else {
        int64_t d;
        ELM_TRY(need_int(c, at, "divisibleby", o, 0, &d));
        if (d == 0) return elmi_j_fail(c, at->line, "division by zero");
        *out = d == -1 || x % d == 0;
    }
    return ELM_OK;
}

elm_status elmi_j_test(jctx *c, const jnode *at, const char *name, size_t n, jval v, const jargs *a, bool *out) {
    const jval *o = a->npos ? &a->pos[0] : NULL;
    jv_type t = v.t;
    if (eqn(name, n, "defined")) *out = t != JV_UNDEF;
    else if (eqn(name, n, "undefined")) *out = t == JV_UNDEF;
    else if (eqn(name, n, "none")) *out = t == JV_NONE;
    else if (eqn(name, n, "string")) *out = t == JV_STR;
    else if (eqn(name, n, "mapping")) *out = t == JV_DICT;
    else if (eqn(name, n, "iterable")) *out = t == JV_STR || t == JV_LIST || t == JV_DICT || t == JV_UNDEF;
    else if (eqn(name, n, "sequence")) *out = t == JV_STR || t == JV_LIST || t == JV_DICT || t == JV_UNDEF;
    else if (eqn(name, n, "number")) *out = t == JV_INT || t == JV_FLOAT || t == JV_BOOL;
    else if (eqn(name, n, "integer")) *out = t == JV_INT;
    else if (eqn(name, n, "float")) *out = t == JV_FLOAT;
    else if (eqn(name, n, "boolean")) *out = t == JV_BOOL;
    else if (eqn(name, n, "true")) *out = t == JV_BOOL && v.u.b;
    else if (eqn(name, n, "false")) *out = t == JV_BOOL && !v.u.b;
    else if (eqn(name, n, "callable")) *out = t == JV_MACRO || t == JV_FUNC || t == JV_CALLER;
    else if (eqn(name, n, "lower") || eqn(name, n, "upper")) *out = is_lower_upper(v, eqn(name, n, "upper"));
    else if (eqn(name, n, "odd") || eqn(name, n, "even")) return int_test(c, at, name, n, v, o, out);
    else if (!o) return elmi_j_fail(c, at->line, "test '%.*s' needs an argument", (int)n, name);
    else if (eqn(name, n, "equalto") || eqn(name, n, "eq")) *out = elmi_j_equal(v, *o);
    else if (eqn(name, n, "ne")) *out = !elmi_j_equal(v, *o);
    else if (eqn(name, n, "sameas")) *out = elmi_j_equal(v, *o) && v.t == o->t;
    else if (eqn(name, n, "in")) {
        jnode op = {.kind = JN_BIN, .op = JOP_IN, .line = at->line};
        jnode la = {.kind = JN_LIT, .lit = v}, lb = {.kind = JN_LIT, .lit = *o};
        op.a = &la;
        op.b = &lb;
        jval r;
        ELM_TRY(elmi_j_eval(c, &op, &r));
        *out = r.u.b;
    } else if (eqn(name, n, "divisibleby")) return int_test(c, at, name, n, v, o, out);
    else return compare_test(c, at, name, n, v, o, out);
    return ELM_OK;
}
