/* jinja_format.c: the `%` operator on strings, Python's printf-style
 * formatting ("%s" % x, "%d-%s" % (a, b), "%(key)s" % {...}), as CPython's
 * str.__mod__ does it: flags - + space # 0, width and precision (or *),
 * length modifiers h l L (ignored), conversions s r d i u x X o e E f F g G
 * c and %%. A tuple gives the arguments; anything else is one argument; a
 * dict (or list) on the right may be left unused, as in Python. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine/jinja_impl.h"

#define FORMAT_MAX_WIDTH 100000 /* width and precision: a bound for hostile templates */

typedef struct fmt_state {
    jctx *c;
    int line;
    const char *f;
    size_t n, i;      /* the format and the position in it */
    const jval *args; /* the tuple's items, or the one argument */
    size_t nargs, next;
    jval mapping;     /* the right operand when it is a dict or a list; else undefined */
    jbuf *out;
} fmt_state;

typedef struct spec {
    bool left, plus, space, alt, zero;
    int64_t width, prec; /* -1: none */
    char conv;
} spec;

static elm_status next_arg(fmt_state *s, jval *out) {
    if (s->next >= s->nargs) return elmi_j_fail(s->c, s->line, "not enough arguments for format string");
    *out = s->args[s->next++];
    return ELM_OK;
}

/* --------------------------------------------------------------- parsing */

/* %(key): the value of key in the mapping. */
static elm_status keyed_arg(fmt_state *s, jval *out) {
    size_t start = ++s->i, depth = 1;
    for (; s->i < s->n; s->i++) {
        if (s->f[s->i] == '(') depth++;
        else if (s->f[s->i] == ')' && --depth == 0) break;
    }
    if (s->i >= s->n) return elmi_j_fail(s->c, s->line, "incomplete format key");
    jval key = elmi_j_str(s->f + start, s->i - start);
    s->i++;
    s->next = s->nargs; /* positional conversions after a key have no argument */
    if (s->mapping.t == JV_LIST)
        return elmi_j_fail(s->c, s->line, "list indices must be integers or slices, not str");
    if (s->mapping.t != JV_DICT) return elmi_j_fail(s->c, s->line, "format requires a mapping");
    const jval *v = elmi_j_dict_get(s->c, s->mapping.u.d, key);
    if (!v) return elmi_j_fail(s->c, s->line, "KeyError: '%.*s'", (int)key.n, key.u.s);
    *out = *v;
    return ELM_OK;
}

/* A width or precision: digits, or '*' taking an int argument. */
static elm_status number_field(fmt_state *s, spec *sp, bool is_width, int64_t *out) {
    if (s->i < s->n && s->f[s->i] == '*') {
        s->i++;
        jval v = {0};
        ELM_TRY(next_arg(s, &v));
        if (v.t != JV_INT && v.t != JV_BOOL) return elmi_j_fail(s->c, s->line, "* wants int");
        *out = v.t == JV_INT ? v.u.i : v.u.b;
        if (*out < 0) {
            if (is_width) sp->left = true, *out = -*out;
            else *out = 0;
        }
    } else {
        *out = is_width ? -1 : 0;
        bool any = false;
        for (; s->i < s->n && s->f[s->i] >= '0' && s->f[s->i] <= '9'; s->i++) {
            if (!any) *out = 0;
            any = true;
            if (*out <= FORMAT_MAX_WIDTH) *out = *out * 10 + (s->f[s->i] - '0');
        }
    }
    if (*out > FORMAT_MAX_WIDTH) return elmi_j_fail(s->c, s->line, "a format width or precision is too big");
    return ELM_OK;
}

/* Flags, width, precision and conversion after '%' (and the key). */
static elm_status parse_spec(fmt_state *s, spec *sp) {
    memset(sp, 0, sizeof *sp);
    for (; s->i < s->n; s->i++) {
        char ch = s->f[s->i];
        if (ch == '-') sp->left = true;
        else if (ch == '+') sp->plus = true;
        else if (ch == ' ') sp->space = true;
        else if (ch == '#') sp->alt = true;
        else if (ch == '0') sp->zero = true;
        else break;
    }
    ELM_TRY(number_field(s, sp, true, &sp->width));
    sp->prec = -1;
    if (s->i < s->n && s->f[s->i] == '.') {
        s->i++;
        ELM_TRY(number_field(s, sp, false, &sp->prec));
    }
    while (s->i < s->n && (s->f[s->i] == 'h' || s->f[s->i] == 'l' || s->f[s->i] == 'L')) s->i++;
    if (s->i >= s->n) return elmi_j_fail(s->c, s->line, "incomplete format");
    sp->conv = s->f[s->i++];
    return ELM_OK;
}

/* ---------------------------------------------------------------- output */

static elm_status pad(fmt_state *s, char ch, int64_t k) {
    for (; k > 0; k--) ELM_TRY(elmi_j_buf_putc(s->c, s->out, ch));
    return ELM_OK;
}

/* sign + prefix + body, padded to the width: spaces on the left, on the
 * right with '-', zeros between prefix and body with '0' (numbers only). */
static elm_status emit(fmt_state *s, const spec *sp, const char *sign, const char *prefix,
                       const char *body, size_t body_len, size_t body_chars, bool numeric) {
    size_t ns = strlen(sign), np = strlen(prefix);
    int64_t fill = sp->width - (int64_t)(ns + np + body_chars);
    ELM_TRY(elmi_j_charge(s->c, (uint64_t)(fill > 0 ? fill : 0) / 16 + body_len / 16));
    bool zeros = numeric && sp->zero && !sp->left;
    if (!sp->left && !zeros) ELM_TRY(pad(s, ' ', fill));
    ELM_TRY(elmi_j_buf_put(s->c, s->out, sign, ns));
    ELM_TRY(elmi_j_buf_put(s->c, s->out, prefix, np));
    if (zeros) ELM_TRY(pad(s, '0', fill));
    ELM_TRY(elmi_j_buf_put(s->c, s->out, body, body_len));
    return sp->left ? pad(s, ' ', fill) : ELM_OK;
}

static const char *sign_of(const spec *sp, bool negative) {
    return negative ? "-" : sp->plus ? "+" : sp->space ? " " : "";
}

/* ------------------------------------------------------------ conversions */

/* %s and %r: str() or repr(), cut to the precision in characters. */
static elm_status conv_text(fmt_state *s, const spec *sp, jval v) {
    jbuf b = {0};
    ELM_TRY(elmi_j_buf_put(s->c, &b, "", 0));
    ELM_TRY(elmi_j_write_str(s->c, &b, v, sp->conv == 'r'));
    size_t len = b.n, chars = elmi_j_utf8_len(b.p, b.n);
    if (sp->prec >= 0 && (size_t)sp->prec < chars) {
        len = 0;
        for (int64_t k = 0; k < sp->prec; k++) {
            len++;
            while (len < b.n && ((unsigned char)b.p[len] & 0xC0) == 0x80) len++;
        }
        chars = (size_t)sp->prec;
    }
    return emit(s, sp, "", "", b.p, len, chars, false);
}

/* The integer value of v for %d (floats truncate) or %x/%o (ints only). */
static elm_status int_value(fmt_state *s, const spec *sp, jval v, int64_t *out) {
    if (v.t == JV_INT || v.t == JV_BOOL) {
        *out = v.t == JV_INT ? v.u.i : v.u.b;
        return ELM_OK;
    }
    bool decimal = sp->conv == 'd' || sp->conv == 'i' || sp->conv == 'u';
    if (v.t == JV_FLOAT && decimal) {
        if (isnan(v.u.f)) return elmi_j_fail(s->c, s->line, "cannot convert float NaN to integer");
        if (isinf(v.u.f)) return elmi_j_fail(s->c, s->line, "cannot convert float infinity to integer");
        double t = trunc(v.u.f);
        if (t < -9223372036854775808.0 || t >= 9223372036854775808.0)
            return elmi_j_fail(s->c, s->line, "integer overflow");
        *out = (int64_t)t;
        return ELM_OK;
    }
    if (v.t == JV_UNDEF) return elmi_j_undefined_error(s->c, s->line, v);
    return elmi_j_fail(s->c, s->line, "%%%c format: %s is required, not %s", sp->conv,
                       decimal ? "a real number" : "an integer", elmi_j_type_name(v));
}

static elm_status conv_int(fmt_state *s, const spec *sp, jval v) {
    int64_t x = 0;
    ELM_TRY(int_value(s, sp, v, &x));
    uint64_t mag = x < 0 ? (uint64_t)0 - (uint64_t)x : (uint64_t)x;
    char digits[72];
    const char *fmt = sp->conv == 'x' ? "%llx" : sp->conv == 'X' ? "%llX" : sp->conv == 'o' ? "%llo" : "%llu";
    int nd = snprintf(digits, sizeof digits, fmt, (unsigned long long)mag);
    const char *prefix = !sp->alt ? "" : sp->conv == 'x' ? "0x" : sp->conv == 'X' ? "0X" : sp->conv == 'o' ? "0o" : "";
    jbuf b = {0};
    ELM_TRY(elmi_j_buf_put(s->c, &b, "", 0));
    if (sp->prec > nd) ELM_TRY(elmi_j_charge(s->c, (uint64_t)sp->prec / 16));
    for (int64_t k = nd; k < sp->prec; k++) ELM_TRY(elmi_j_buf_putc(s->c, &b, '0'));
    ELM_TRY(elmi_j_buf_put(s->c, &b, digits, (size_t)nd));
    return emit(s, sp, sign_of(sp, x < 0), prefix, b.p, b.n, b.n, true);
}

static elm_status conv_float(fmt_state *s, const spec *sp, jval v) {
    if (v.t != JV_FLOAT && v.t != JV_INT && v.t != JV_BOOL) {
        if (v.t == JV_UNDEF) return elmi_j_undefined_error(s->c, s->line, v);
        return elmi_j_fail(s->c, s->line, "must be real number, not %s", elmi_j_type_name(v));
    }
    double x = v.t == JV_FLOAT ? v.u.f : v.t == JV_INT ? (double)v.u.i : (double)v.u.b;
    bool upper = sp->conv == 'E' || sp->conv == 'F' || sp->conv == 'G';
    bool negative = signbit(x) && !isnan(x);
    char *body = NULL;
    size_t len;
    if (isnan(x) || isinf(x)) {
        body = (char *)(isnan(x) ? (upper ? "NAN" : "nan") : (upper ? "INF" : "inf"));
        len = 3;
    } else {
        char fmt[8] = {'%', 0};
        size_t k = 1;
        if (sp->alt) fmt[k++] = '#';
        memcpy(fmt + k, ".*", 2);
        fmt[k + 2] = sp->conv;
        int prec = sp->prec < 0 ? 6 : (int)sp->prec;
        int need = snprintf(NULL, 0, fmt, prec, fabs(x));
        if (need < 0) return elmi_j_fail(s->c, s->line, "cannot format a number");
        body = elmi_j_alloc(s->c, (size_t)need + 1);
        if (!body) return s->c->st;
        snprintf(body, (size_t)need + 1, fmt, prec, fabs(x));
        len = (size_t)need;
    }
    return emit(s, sp, sign_of(sp, negative), "", body, len, len, true);
}

/* %c: a code point, or a string of one character. */
static elm_status conv_char(fmt_state *s, const spec *sp, jval v) {
    char buf[4];
    size_t len;
    if (v.t == JV_STR && elmi_j_utf8_len(v.u.s, v.n) == 1) {
        return emit(s, sp, "", "", v.u.s, v.n, 1, false);
    } else if (v.t == JV_INT || v.t == JV_BOOL) {
        int64_t cp = v.t == JV_INT ? v.u.i : v.u.b;
        if (cp < 0 || cp > 0x10FFFF) return elmi_j_fail(s->c, s->line, "%%c arg not in range(0x110000)");
        uint32_t u = (uint32_t)cp;
        if (u < 0x80) buf[0] = (char)u, len = 1;
        else if (u < 0x800) buf[0] = (char)(0xC0 | u >> 6), buf[1] = (char)(0x80 | (u & 0x3F)), len = 2;
        else if (u < 0x10000)
            buf[0] = (char)(0xE0 | u >> 12), buf[1] = (char)(0x80 | ((u >> 6) & 0x3F)),
            buf[2] = (char)(0x80 | (u & 0x3F)), len = 3;
        else
            buf[0] = (char)(0xF0 | u >> 18), buf[1] = (char)(0x80 | ((u >> 12) & 0x3F)),
            buf[2] = (char)(0x80 | ((u >> 6) & 0x3F)), buf[3] = (char)(0x80 | (u & 0x3F)), len = 4;
        return emit(s, sp, "", "", buf, len, 1, false);
    }
    return elmi_j_fail(s->c, s->line, "%%c requires int or char");
}

/* One conversion, from the '%' on. */
static elm_status one_conversion(fmt_state *s) {
    s->i++;
    if (s->i < s->n && s->f[s->i] == '%') {
        s->i++;
        return elmi_j_buf_putc(s->c, s->out, '%');
    }
    jval v = {0};
    bool have = false;
    if (s->i < s->n && s->f[s->i] == '(') {
        ELM_TRY(keyed_arg(s, &v));
        have = true;
    }
    spec sp;
    ELM_TRY(parse_spec(s, &sp));
    const char *convs = "srdiuxXoeEfFgGc";
    if (!strchr(convs, sp.conv) || sp.conv == 0)
        return elmi_j_fail(s->c, s->line, "unsupported format character '%c' (0x%x) at index %zu",
                           sp.conv >= 0x20 && sp.conv < 0x7f ? sp.conv : '?', (unsigned char)sp.conv, s->i - 1);
    if (!have) ELM_TRY(next_arg(s, &v));
    switch (sp.conv) {
    case 's': case 'r': return conv_text(s, &sp, v);
    case 'c': return conv_char(s, &sp, v);
    case 'd': case 'i': case 'u': case 'x': case 'X': case 'o': return conv_int(s, &sp, v);
    default: return conv_float(s, &sp, v);
    }
}

elm_status elmi_j_percent_format(jctx *c, int line, jval fmt, jval args, jval *out) {
    jbuf b = {0};
    ELM_TRY(elmi_j_buf_put(c, &b, "", 0));
    fmt_state s = {.c = c, .line = line, .f = fmt.u.s, .n = fmt.n, .out = &b};
    if (args.t == JV_LIST && args.u.l->tuple) {
        s.args = args.u.l->v;
        s.nargs = args.u.l->n;
    } else {
        s.args = &args;
        s.nargs = 1;
    }
    s.mapping = args.t == JV_DICT || (args.t == JV_LIST && !args.u.l->tuple) ? args : elmi_j_undef(NULL, 0);
    ELM_TRY(elmi_j_charge(c, fmt.n / 16 + 1));
    while (s.i < s.n) {
        const char *pct = memchr(s.f + s.i, '%', s.n - s.i);
        size_t end = pct ? (size_t)(pct - s.f) : s.n;
        ELM_TRY(elmi_j_buf_put(c, &b, s.f + s.i, end - s.i));
        s.i = end;
        if (pct) ELM_TRY(one_conversion(&s));
    }
    if (s.next < s.nargs && s.mapping.t == JV_UNDEF)
        return elmi_j_fail(c, line, "not all arguments converted during string formatting");
    *out = elmi_j_str(b.p, b.n);
    return ELM_OK;
}
