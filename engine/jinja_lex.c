/* jinja_lex.c: the template source to tokens, with Jinja2's whitespace rules:
 * trim_blocks (one newline after a block or comment tag is dropped),
 * lstrip_blocks (spaces and tabs before a block or comment tag at the start of
 * a line are dropped), `-` on a tag strips all whitespace on that side, `+`
 * turns the two options off for that tag. Newlines are normalized to "\n" and
 * one trailing newline of the source is dropped. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "engine/jinja_impl.h"

typedef struct lexer {
    jctx *c;
    const char *s;
    size_t n, pos;
    int line;
    bool line_starting;
    size_t cap;
} lexer;

static elm_status push(lexer *L, jtok t) {
    jctx *c = L->c;
    if (c->ntok == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 256;
        jtok *p = elmi_j_alloc(c, cap * sizeof *p);
        if (!p) return c->st;
        if (c->ntok) memcpy(p, c->toks, c->ntok * sizeof *p);
        c->toks = p;
        L->cap = cap;
    }
    t.line = t.line ? t.line : L->line;
    c->toks[c->ntok++] = t;
    return ELM_OK;
}

static bool is_ws(char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v'; }

static int count_lines(const char *s, size_t n) {
    int k = 0;
    for (size_t i = 0; i < n; i++) k += s[i] == '\n';
    return k;
}

/* The next "{{", "{%" or "{#" at or after pos; n when none. */
static size_t find_tag(const lexer *L, size_t pos) {
    for (size_t i = pos; i + 1 < L->n; i++)
        if (L->s[i] == '{' && (L->s[i + 1] == '{' || L->s[i + 1] == '%' || L->s[i + 1] == '#'))
            return i;
    return L->n;
}

static elm_status emit_text(lexer *L, size_t start, size_t end, char kind, char sign) {
    size_t e = end;
    if (sign == '-') {
        while (e > start && is_ws(L->s[e - 1])) e--;
    } else if (sign != '+' && kind != '{' && end > start) {
        size_t l = e;
        while (l > start && L->s[l - 1] != '\n') l--;
        bool only_ws = l < e;
        for (size_t i = l; i < e && only_ws; i++) only_ws = L->s[i] == ' ' || L->s[i] == '\t';
        if (only_ws && (l > start || L->line_starting)) e = l;
    }
    if (e > start) ELM_TRY(push(L, (jtok){.t = JT_TEXT, .s = L->s + start, .n = e - start}));
    L->line += count_lines(L->s + start, end - start);
    return ELM_OK;
}

/* After a tag's end: `-` eats all whitespace, else trim_blocks eats one newline. */
static void after_tag(lexer *L, char sign, bool block) {
    size_t p = L->pos;
    if (sign == '-') {
        while (p < L->n && is_ws(L->s[p])) p++;
    } else if (sign != '+' && block && p < L->n && L->s[p] == '\n') {
        p++;
    }
    L->line_starting = p > L->pos ? L->s[p - 1] == '\n' : false;
    L->line += count_lines(L->s + L->pos, p - L->pos);
    L->pos = p;
}

static elm_status lex_comment(lexer *L) {
    size_t p = L->pos + 2;
    if (p < L->n && (L->s[p] == '-' || L->s[p] == '+')) p++;
    const char *end = NULL;
    for (size_t i = p; i + 1 < L->n; i++)
        if (L->s[i] == '#' && L->s[i + 1] == '}') {
            end = L->s + i;
            break;
        }
    if (!end) return elmi_j_fail(L->c, L->line, "unterminated comment");
    char sign = end > L->s + p && (end[-1] == '-' || end[-1] == '+') ? end[-1] : 0;
    size_t stop = (size_t)(end - L->s) + 2;
    L->line += count_lines(L->s + L->pos, stop - L->pos);
    L->pos = stop;
    after_tag(L, sign, true);
    return ELM_OK;
}

static unsigned hexval(char ch) {
    return isdigit((unsigned char)ch) ? (unsigned)(ch - '0') : (unsigned)(tolower((unsigned char)ch) - 'a' + 10);
}

static elm_status put_utf8(jctx *c, jbuf *b, uint32_t cp) {
    char u[4];
    size_t k;
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = 0xFFFD;
    if (cp < 0x80) { u[0] = (char)cp; k = 1; }
    else if (cp < 0x800) { u[0] = (char)(0xC0 | cp >> 6); u[1] = (char)(0x80 | (cp & 63)); k = 2; }
    else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | cp >> 12); u[1] = (char)(0x80 | ((cp >> 6) & 63));
        u[2] = (char)(0x80 | (cp & 63)); k = 3;
    } else {
        u[0] = (char)(0xF0 | cp >> 18); u[1] = (char)(0x80 | ((cp >> 12) & 63));
        u[2] = (char)(0x80 | ((cp >> 6) & 63)); u[3] = (char)(0x80 | (cp & 63)); k = 4;
    }
    return elmi_j_buf_put(c, b, u, k);
}

/* A backslash escape at s[i] (s[i] == '\\'); advances *i past it. */
static elm_status unescape(lexer *L, jbuf *b, size_t *i, size_t end) {
    jctx *c = L->c;
    const char *s = L->s;
    size_t p = *i + 1;
    if (p >= end) {
        *i = p; /* a backslash ending the source (found by fuzz_template) */
        return elmi_j_buf_putc(c, b, '\\');
    }
    char e = s[p];
    static const char from[] = "nrtbfva\\'\"0\n", to[] = "\n\r\t\b\f\v\a\\'\"\0";
    const char *k = strchr(from, e);
    if (k && e != 0) {
        *i = p + 1;
        if (e == '\n') return ELM_OK; /* line continuation */
        return elmi_j_buf_putc(c, b, to[k - from]);
    }
    int nd = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
    if (nd && p + nd < end) {
        uint32_t cp = 0;
        for (int d = 1; d <= nd; d++) {
            if (!isxdigit((unsigned char)s[p + d])) return elmi_j_fail(c, L->line, "bad \\%c escape in a string", e);
            cp = cp * 16 + hexval(s[p + d]);
        }
        *i = p + 1 + nd;
        return put_utf8(c, b, cp);
    }
    *i = p;
    return elmi_j_buf_putc(c, b, '\\');
}

static elm_status lex_string(lexer *L) {
    char q = L->s[L->pos];
    size_t i = L->pos + 1;
    jbuf b = {0};
    ELM_TRY(elmi_j_buf_put(L->c, &b, "", 0));
    while (i < L->n && L->s[i] != q) {
        if (L->s[i] == '\\') {
            ELM_TRY(unescape(L, &b, &i, L->n));
            continue;
        }
        ELM_TRY(elmi_j_buf_putc(L->c, &b, L->s[i]));
        i++;
    }
    if (i >= L->n) return elmi_j_fail(L->c, L->line, "unterminated string");
    ELM_TRY(push(L, (jtok){.t = JT_STRING, .s = b.p, .n = b.n}));
    L->line += count_lines(L->s + L->pos, i - L->pos);
    L->pos = i + 1;
    return ELM_OK;
}

static elm_status lex_number(lexer *L) {
    const char *s = L->s;
    size_t i = L->pos;
    char digits[64];
    size_t k = 0;
    bool is_float = false;
    while (i < L->n && (isdigit((unsigned char)s[i]) || s[i] == '_' ||
                        (s[i] == '.' && !is_float && i + 1 < L->n && isdigit((unsigned char)s[i + 1])) ||
                        ((s[i] == 'e' || s[i] == 'E') && i + 1 < L->n &&
                         (isdigit((unsigned char)s[i + 1]) || s[i + 1] == '-' || s[i + 1] == '+')))) {
        if (s[i] == 'e' || s[i] == 'E') {
            is_float = true;
            /* i always advances, even once digits[] is full (fuzz_template timeout) */
            for (int twice = 0; twice < 2; twice++, i++)
                if (k < sizeof digits - 2) digits[k++] = s[i];
            continue;
        }
        if (s[i] == '.') is_float = true;
        if (s[i] != '_' && k < sizeof digits - 1) digits[k++] = s[i];
        i++;
    }
    digits[k] = 0;
    jtok t = {.t = is_float ? JT_FLOAT : JT_INT};
    if (is_float) t.f = strtod(digits, NULL);
    else {
        char *endp;
        unsigned long long v = strtoull(digits, &endp, 10);
        if (k > 18 && (v > INT64_MAX || k > 19)) return elmi_j_fail(L->c, L->line, "integer literal too large");
        t.i = (int64_t)v;
    }
    L->pos = i;
    return push(L, t);
}

static const char *const ops[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~",
                                  "<",  ">",  "=",  ".",  ",",  ":",  "|", "(", ")", "[", "]", "{",
                                  "}"};

static elm_status lex_op(lexer *L, int *balance) {
    for (size_t k = 0; k < sizeof ops / sizeof *ops; k++) {
        size_t len = strlen(ops[k]);
        if (L->pos + len <= L->n && memcmp(L->s + L->pos, ops[k], len) == 0) {
            char ch = ops[k][0];
            if (len == 1 && (ch == '(' || ch == '[' || ch == '{')) ++*balance;
            if (len == 1 && (ch == ')' || ch == ']' || ch == '}')) --*balance;
            L->pos += len;
            return push(L, (jtok){.t = JT_OP, .s = ops[k], .n = len});
        }
    }
    return elmi_j_fail(L->c, L->line, "unexpected character '%c'", L->s[L->pos]);
}

/* At the end of a tag: returns its sign (0, '-', '+') in *sign and true. */
static bool at_end(const lexer *L, bool block, char *sign, size_t *len) {
    const char *s = L->s + L->pos;
    size_t left = L->n - L->pos;
    const char *e = block ? "%}" : "}}";
    if (left >= 3 && (s[0] == '-' || s[0] == '+') && memcmp(s + 1, e, 2) == 0) {
        *sign = s[0];
        *len = 3;
        return true;
    }
    if (left >= 2 && memcmp(s, e, 2) == 0) {
        *sign = 0;
        *len = 2;
        return true;
    }
    return false;
}

static elm_status lex_tag(lexer *L, bool block) {
    L->pos += 2;
    if (L->pos < L->n && (L->s[L->pos] == '-' || L->s[L->pos] == '+')) L->pos++;
    ELM_TRY(push(L, (jtok){.t = block ? JT_BLOCK_BEGIN : JT_VAR_BEGIN}));
    int balance = 0;
    for (;;) {
        while (L->pos < L->n && is_ws(L->s[L->pos])) {
            L->line += L->s[L->pos] == '\n';
            L->pos++;
        }
        if (L->pos >= L->n) return elmi_j_fail(L->c, L->line, "unterminated %s", block ? "block tag" : "expression");
        char sign;
        size_t len;
        if (balance <= 0 && at_end(L, block, &sign, &len)) {
            ELM_TRY(push(L, (jtok){.t = block ? JT_BLOCK_END : JT_VAR_END}));
            L->pos += len;
            after_tag(L, sign, block);
            return ELM_OK;
        }
        char ch = L->s[L->pos];
        if (ch == '\'' || ch == '"') ELM_TRY(lex_string(L));
        else if (isdigit((unsigned char)ch)) ELM_TRY(lex_number(L));
        else if (isalpha((unsigned char)ch) || ch == '_') {
            size_t st = L->pos;
            while (L->pos < L->n && (isalnum((unsigned char)L->s[L->pos]) || L->s[L->pos] == '_')) L->pos++;
            ELM_TRY(push(L, (jtok){.t = JT_NAME, .s = L->s + st, .n = L->pos - st}));
        } else ELM_TRY(lex_op(L, &balance));
        ELM_TRY(elmi_j_charge(L->c, 1));
    }
}

/* CRLF and CR to LF; one trailing newline dropped. */
static elm_status normalize(jctx *c, const char *src, size_t len, const char **out, size_t *out_len) {
    char *d = elmi_j_alloc(c, len + 1);
    if (!d) return c->st;
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            d[k++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else d[k++] = src[i];
    }
    if (k && d[k - 1] == '\n') k--;
    d[k] = 0;
    *out = d;
    *out_len = k;
    return ELM_OK;
}

elm_status elmi_j_lex(jctx *c, const char *src, size_t len) {
    if (len > JINJA_MAX_SOURCE) return elmi_j_fail(c, 0, "the template is larger than %zu bytes", JINJA_MAX_SOURCE);
    lexer L = {.c = c, .line = 1, .line_starting = true};
    ELM_TRY(normalize(c, src, len, &L.s, &L.n));
    while (L.pos < L.n) {
        size_t t = find_tag(&L, L.pos);
        char kind = t < L.n ? L.s[t + 1] : 0;
        char sign = t + 2 < L.n ? L.s[t + 2] : 0;
        if (sign != '-' && sign != '+') sign = 0;
        ELM_TRY(emit_text(&L, L.pos, t, kind, sign));
        L.pos = t;
        if (t >= L.n) break;
        if (kind == '#') ELM_TRY(lex_comment(&L));
        else ELM_TRY(lex_tag(&L, kind == '%'));
    }
    return push(&L, (jtok){.t = JT_EOF});
}
