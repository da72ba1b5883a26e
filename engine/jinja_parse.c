/* jinja_parse.c: tokens to a syntax tree (recursive descent, depth-bounded).
 * Expression precedence follows Jinja2: conditional, or, and, not, compare,
 * + -, ~, * / // %, **, unary - +, then postfix (. [] ()) and filters/tests. */
#include <string.h>

#include "engine/jinja_impl.h"

static const jtok *cur(jctx *c) { return &c->toks[c->ptok]; }
static const jtok *peek(jctx *c, size_t k) {
    size_t i = c->ptok + k;
    return &c->toks[i < c->ntok ? i : c->ntok - 1];
}
static void next(jctx *c) {
    if (c->ptok + 1 < c->ntok) c->ptok++;
}

static bool is_op(const jtok *t, const char *op) {
    return t->t == JT_OP && t->n == strlen(op) && memcmp(t->s, op, t->n) == 0;
}
static bool is_name(const jtok *t, const char *name) {
    return t->t == JT_NAME && t->n == strlen(name) && memcmp(t->s, name, t->n) == 0;
}

static const char *tok_desc(const jtok *t) {
    switch (t->t) {
    case JT_EOF: return "end of template";
    case JT_TEXT: return "text";
    case JT_BLOCK_BEGIN: return "'{%'";
    case JT_BLOCK_END: return "'%}'";
    case JT_VAR_BEGIN: return "'{{'";
    case JT_VAR_END: return "'}}'";
    case JT_NAME: return "a name";
    case JT_STRING: return "a string";
    case JT_INT: case JT_FLOAT: return "a number";
    default: return "an operator";
    }
}

static elm_status unexpected(jctx *c, const char *what) {
    const jtok *t = cur(c);
    if (t->t == JT_NAME || t->t == JT_OP)
        return elmi_j_fail(c, t->line, "expected %s, got '%.*s'", what, (int)t->n, t->s);
    return elmi_j_fail(c, t->line, "expected %s, got %s", what, tok_desc(t));
}

static elm_status expect_op(jctx *c, const char *op) {
    if (!is_op(cur(c), op)) {
        char what[16];
        strcpy(what, "'");
        strcat(what, op);
        strcat(what, "'");
        return unexpected(c, what);
    }
    next(c);
    return ELM_OK;
}

static elm_status new_node(jctx *c, jnode_kind kind, jnode **out) {
    jnode *n = elmi_j_alloc(c, sizeof *n);
    if (!n) return c->st;
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->line = cur(c)->line;
    *out = n;
    return ELM_OK;
}

typedef struct nodevec { jnodes *l; size_t cap; } nodevec;
static elm_status add(jctx *c, nodevec *v, jnode *n) {
    if (v->l->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 4;
        jnode **p = elmi_j_alloc(c, cap * sizeof *p);
        if (!p) return c->st;
        if (v->l->n) memcpy(p, v->l->v, v->l->n * sizeof *p);
        v->l->v = p;
        v->cap = cap;
    }
    v->l->v[v->l->n++] = n;
    return ELM_OK;
}

static elm_status enter(jctx *c) {
    if (++c->pdepth > JINJA_MAX_PARSE_DEPTH)
        return elmi_j_fail(c, cur(c)->line, "the template nests deeper than %d levels", JINJA_MAX_PARSE_DEPTH);
    return ELM_OK;
}

static elm_status parse_expr(jctx *c, jnode **out);
static elm_status parse_or(jctx *c, jnode **out);
static elm_status parse_unary(jctx *c, bool filters, jnode **out);

/* ------------------------------------------------------------- primaries */

static elm_status parse_literal_name(jctx *c, jnode **out) {
    const jtok *t = cur(c);
    jnode *n = NULL;
    ELM_TRY(new_node(c, JN_LIT, &n));
    if (is_name(t, "true") || is_name(t, "True")) n->lit = elmi_j_bool(true);
    else if (is_name(t, "false") || is_name(t, "False")) n->lit = elmi_j_bool(false);
    else if (is_name(t, "none") || is_name(t, "None")) n->lit = elmi_j_none();
    else {
        n->kind = JN_NAME;
        n->s = t->s;
        n->n = t->n;
        if (is_name(t, "caller")) c->name_refs |= JREF_CALLER;
        else if (is_name(t, "varargs")) c->name_refs |= JREF_VARARGS;
        else if (is_name(t, "kwargs")) c->name_refs |= JREF_KWARGS;
    }
    next(c);
    *out = n;
    return ELM_OK;
}

static elm_status parse_string(jctx *c, jnode **out) {
    jnode *n = NULL;
    ELM_TRY(new_node(c, JN_LIT, &n));
    const jtok *t = cur(c);
    next(c);
    if (cur(c)->t != JT_STRING) {
        n->lit = elmi_j_str(t->s, t->n);
        *out = n;
        return ELM_OK;
    }
    jbuf b = {0};
    ELM_TRY(elmi_j_buf_put(c, &b, t->s, t->n));
    while (cur(c)->t == JT_STRING) { /* adjacent literals concatenate */
        ELM_TRY(elmi_j_buf_put(c, &b, cur(c)->s, cur(c)->n));
        next(c);
    }
    n->lit = elmi_j_str(b.p, b.n);
    *out = n;
    return ELM_OK;
}

/* Items up to `close`, separated by commas; a trailing comma is allowed. */
static elm_status parse_items(jctx *c, const char *close, jnodes *items, jnodes *values) {
    nodevec vi = {items, 0}, vv = {values, 0};
    while (!is_op(cur(c), close)) {
        jnode *e = NULL;
        ELM_TRY(parse_expr(c, &e));
        ELM_TRY(add(c, &vi, e));
        if (values) {
            ELM_TRY(expect_op(c, ":"));
            ELM_TRY(parse_expr(c, &e));
            ELM_TRY(add(c, &vv, e));
        }
        if (!is_op(cur(c), ",")) break;
        next(c);
    }
    return expect_op(c, close);
}

static elm_status parse_paren(jctx *c, jnode **out) {
    next(c);
    if (is_op(cur(c), ")")) {
        next(c);
        return new_node(c, JN_TUPLE, out);
    }
    jnode *e = NULL;
    ELM_TRY(parse_expr(c, &e));
    if (is_op(cur(c), ")")) {
        next(c);
        *out = e;
        return ELM_OK;
    }
    jnode *t = NULL;
    ELM_TRY(new_node(c, JN_TUPLE, &t));
    nodevec v = {&t->l1, 0};
    ELM_TRY(add(c, &v, e));
    while (is_op(cur(c), ",")) {
        next(c);
        if (is_op(cur(c), ")")) break;
        ELM_TRY(parse_expr(c, &e));
        ELM_TRY(add(c, &v, e));
    }
    ELM_TRY(expect_op(c, ")"));
    *out = t;
    return ELM_OK;
}

static elm_status parse_primary(jctx *c, jnode **out) {
    const jtok *t = cur(c);
    jnode *n = NULL;
    switch (t->t) {
    case JT_NAME: return parse_literal_name(c, out);
    case JT_STRING: return parse_string(c, out);
    case JT_INT: case JT_FLOAT:
        ELM_TRY(new_node(c, JN_LIT, &n));
        n->lit = t->t == JT_INT ? elmi_j_int(t->i) : elmi_j_float(t->f);
        next(c);
        *out = n;
        return ELM_OK;
    default: break;
    }
    if (is_op(t, "(")) return parse_paren(c, out);
    if (is_op(t, "[")) {
        ELM_TRY(new_node(c, JN_LIST, &n));
        next(c);
        ELM_TRY(parse_items(c, "]", &n->l1, NULL));
        *out = n;
        return ELM_OK;
    }
    if (is_op(t, "{")) {
        ELM_TRY(new_node(c, JN_DICT, &n));
        next(c);
        ELM_TRY(parse_items(c, "}", &n->l1, &n->l2));
        *out = n;
        return ELM_OK;
    }
    return unexpected(c, "an expression");
}

/* Call arguments after '(' up to ')': positional in l1, keyword (JN_KW) in l2. */
static elm_status parse_args(jctx *c, jnode *call) {
    nodevec pos = {&call->l1, 0}, kw = {&call->l2, 0};
    next(c);
    while (!is_op(cur(c), ")")) {
        jnode *e = NULL;
        if (cur(c)->t == JT_NAME && is_op(peek(c, 1), "=")) {
            ELM_TRY(new_node(c, JN_KW, &e));
            e->s = cur(c)->s;
            e->n = cur(c)->n;
            next(c);
            next(c);
            ELM_TRY(parse_expr(c, &e->a));
            ELM_TRY(add(c, &kw, e));
        } else {
            if (is_op(cur(c), "*") || is_op(cur(c), "**"))
                return elmi_j_fail(c, cur(c)->line, "unsupported feature: *args and **kwargs in calls");
            if (call->l2.n) return elmi_j_fail(c, cur(c)->line, "positional argument after keyword argument");
            ELM_TRY(parse_expr(c, &e));
            ELM_TRY(add(c, &pos, e));
        }
        if (!is_op(cur(c), ",")) break;
        next(c);
    }
    return expect_op(c, ")");
}

static elm_status parse_subscript(jctx *c, jnode *obj, jnode **out) {
    next(c);
    jnode *parts[3] = {NULL, NULL, NULL};
    int k = 0;
    bool slice = false;
    for (;;) {
        if (!is_op(cur(c), ":") && !is_op(cur(c), "]")) ELM_TRY(parse_expr(c, &parts[k]));
        if (is_op(cur(c), ":") && k < 2) {
            slice = true;
            k++;
            next(c);
            continue;
        }
        break;
    }
    ELM_TRY(expect_op(c, "]"));
    jnode *n = NULL;
    ELM_TRY(new_node(c, slice ? JN_SLICE : JN_ITEM, &n));
    n->a = obj;
    n->b = parts[0];
    n->c = parts[1];
    n->d = parts[2];
    if (!slice && !parts[0]) return elmi_j_fail(c, n->line, "empty subscript");
    *out = n;
    return ELM_OK;
}

static elm_status parse_postfix(jctx *c, jnode **node) {
    for (;;) {
        jnode *n = NULL;
        if (is_op(cur(c), ".")) {
            next(c);
            if (cur(c)->t != JT_NAME && cur(c)->t != JT_INT) return unexpected(c, "an attribute name");
            ELM_TRY(new_node(c, cur(c)->t == JT_NAME ? JN_ATTR : JN_ITEM, &n));
            n->a = *node;
            if (cur(c)->t == JT_NAME) {
                n->s = cur(c)->s;
                n->n = cur(c)->n;
            } else {
                ELM_TRY(new_node(c, JN_LIT, &n->b));
                n->b->lit = elmi_j_int(cur(c)->i);
            }
            next(c);
        } else if (is_op(cur(c), "[")) {
            ELM_TRY(parse_subscript(c, *node, &n));
        } else if (is_op(cur(c), "(")) {
            ELM_TRY(new_node(c, JN_CALL, &n));
            n->a = *node;
            ELM_TRY(parse_args(c, n));
        } else return ELM_OK;
        *node = n;
    }
}

/* A filter name (dotted names are not supported) and its arguments. */
static elm_status parse_filter(jctx *c, jnode *operand, jnode **out) {
    if (cur(c)->t != JT_NAME) return unexpected(c, "a filter name");
    jnode *n = NULL;
    ELM_TRY(new_node(c, JN_FILTER, &n));
    n->s = cur(c)->s;
    n->n = cur(c)->n;
    n->a = operand;
    if (!elmi_j_filter_known(n->s, n->n))
        return elmi_j_fail(c, n->line, "unsupported feature: no filter named '%.*s'", (int)n->n, n->s);
    next(c);
    if (is_op(cur(c), "(")) ELM_TRY(parse_args(c, n));
    *out = n;
    return ELM_OK;
}

static bool starts_test_arg(const jtok *t) {
    if (is_name(t, "else") || is_name(t, "or") || is_name(t, "and") || is_name(t, "if")) return false;
    return t->t == JT_NAME || t->t == JT_STRING || t->t == JT_INT || t->t == JT_FLOAT ||
           is_op(t, "(") || is_op(t, "[") || is_op(t, "{");
}

static elm_status parse_test(jctx *c, jnode *operand, jnode **out) {
    jnode *n = NULL;
    ELM_TRY(new_node(c, JN_TEST, &n));
    n->a = operand;
    if (is_name(cur(c), "not")) {
        n->op = 1;
        next(c);
    }
    if (cur(c)->t != JT_NAME) return unexpected(c, "a test name");
    n->s = cur(c)->s;
    n->n = cur(c)->n;
    if (!elmi_j_test_known(n->s, n->n))
        return elmi_j_fail(c, n->line, "unsupported feature: no test named '%.*s'", (int)n->n, n->s);
    next(c);
    if (is_op(cur(c), "(")) ELM_TRY(parse_args(c, n));
    else if (starts_test_arg(cur(c))) {
        jnode *arg = NULL;
        ELM_TRY(parse_primary(c, &arg));
        ELM_TRY(parse_postfix(c, &arg));
        nodevec v = {&n->l1, 0};
        ELM_TRY(add(c, &v, arg));
    }
    *out = n;
    return ELM_OK;
}

static elm_status parse_filter_expr(jctx *c, jnode **node) {
    for (;;) {
        if (is_op(cur(c), "|")) {
            next(c);
            ELM_TRY(parse_filter(c, *node, node));
        } else if (is_name(cur(c), "is")) {
            next(c);
            ELM_TRY(parse_test(c, *node, node));
        } else if (is_op(cur(c), "(")) {
            jnode *n = NULL;
            ELM_TRY(new_node(c, JN_CALL, &n));
            n->a = *node;
            ELM_TRY(parse_args(c, n));
            *node = n;
        } else return ELM_OK;
    }
}

static elm_status parse_unary(jctx *c, bool filters, jnode **out) {
    ELM_TRY(enter(c));
    jnode *n = NULL;
    if (is_op(cur(c), "-") || is_op(cur(c), "+")) {
        ELM_TRY(new_node(c, is_op(cur(c), "-") ? JN_NEG : JN_POS, &n));
        next(c);
        ELM_TRY(parse_unary(c, false, &n->a));
    } else {
        ELM_TRY(parse_primary(c, &n));
    }
    ELM_TRY(parse_postfix(c, &n));
    if (filters) ELM_TRY(parse_filter_expr(c, &n));
    c->pdepth--;
    *out = n;
    return ELM_OK;
}

static elm_status binary(jctx *c, int op, jnode *l, jnode *r, jnode **out) {
    jnode *n = NULL;
    ELM_TRY(new_node(c, JN_BIN, &n));
    n->op = op;
    n->a = l;
    n->b = r;
    *out = n;
    return ELM_OK;
}

static elm_status parse_pow(jctx *c, jnode **out) {
    ELM_TRY(parse_unary(c, true, out));
    while (is_op(cur(c), "**")) {
        next(c);
        jnode *r = NULL;
        ELM_TRY(parse_unary(c, true, &r));
        ELM_TRY(binary(c, JOP_POW, *out, r, out));
    }
    return ELM_OK;
}

static elm_status parse_mul(jctx *c, jnode **out) {
    ELM_TRY(parse_pow(c, out));
    for (;;) {
        int op = is_op(cur(c), "*") ? JOP_MUL : is_op(cur(c), "/") ? JOP_DIV
               : is_op(cur(c), "//") ? JOP_FLOORDIV : is_op(cur(c), "%") ? JOP_MOD : 0;
        if (!op) return ELM_OK;
        next(c);
        jnode *r = NULL;
        ELM_TRY(parse_pow(c, &r));
        ELM_TRY(binary(c, op, *out, r, out));
    }
}

static elm_status parse_concat(jctx *c, jnode **out) {
    ELM_TRY(parse_mul(c, out));
    while (is_op(cur(c), "~")) {
        next(c);
        jnode *r = NULL;
        ELM_TRY(parse_mul(c, &r));
        ELM_TRY(binary(c, JOP_CONCAT, *out, r, out));
    }
    return ELM_OK;
}

static elm_status parse_add(jctx *c, jnode **out) {
    ELM_TRY(parse_concat(c, out));
    for (;;) {
        int op = is_op(cur(c), "+") ? JOP_ADD : is_op(cur(c), "-") ? JOP_SUB : 0;
        if (!op) return ELM_OK;
        next(c);
        jnode *r = NULL;
        ELM_TRY(parse_concat(c, &r));
        ELM_TRY(binary(c, op, *out, r, out));
    }
}

static int compare_op(jctx *c) {
    const jtok *t = cur(c);
    static const char *ops[] = {"==", "!=", "<", "<=", ">", ">="};
    static const int codes[] = {JOP_EQ, JOP_NE, JOP_LT, JOP_LE, JOP_GT, JOP_GE};
    for (int i = 0; i < 6; i++)
        if (is_op(t, ops[i])) return codes[i];
    if (is_name(t, "in")) return JOP_IN;
    if (is_name(t, "not") && is_name(peek(c, 1), "in")) return JOP_NOTIN;
    return 0;
}

static elm_status parse_compare(jctx *c, jnode **out) {
    ELM_TRY(parse_add(c, out));
    jnode *left = *out;
    for (;;) {
        int op = compare_op(c);
        if (!op) return ELM_OK;
        next(c);
        if (op == JOP_NOTIN) next(c);
        jnode *r, *cmp = NULL;
        ELM_TRY(parse_add(c, &r));
        ELM_TRY(binary(c, op, left, r, &cmp));
        /* a < b < c is (a < b) and (b < c) */
        if (*out != left) {
            jnode *both = NULL;
            ELM_TRY(new_node(c, JN_AND, &both));
            both->a = *out;
            both->b = cmp;
            *out = both;
        } else *out = cmp;
        left = r;
    }
}

static elm_status parse_not(jctx *c, jnode **out) {
    if (is_name(cur(c), "not")) {
        ELM_TRY(enter(c));
        jnode *n = NULL;
        ELM_TRY(new_node(c, JN_NOT, &n));
        next(c);
        ELM_TRY(parse_not(c, &n->a));
        c->pdepth--;
        *out = n;
        return ELM_OK;
    }
    return parse_compare(c, out);
}

static elm_status parse_and(jctx *c, jnode **out) {
    ELM_TRY(parse_not(c, out));
    while (is_name(cur(c), "and")) {
        jnode *n = NULL;
        ELM_TRY(new_node(c, JN_AND, &n));
        next(c);
        n->a = *out;
        ELM_TRY(parse_not(c, &n->b));
        *out = n;
    }
    return ELM_OK;
}

static elm_status parse_or(jctx *c, jnode **out) {
    ELM_TRY(parse_and(c, out));
    while (is_name(cur(c), "or")) {
        jnode *n = NULL;
        ELM_TRY(new_node(c, JN_OR, &n));
        next(c);
        n->a = *out;
        ELM_TRY(parse_and(c, &n->b));
        *out = n;
    }
    return ELM_OK;
}

/* or-expression [if cond [else expr]] */
static elm_status parse_expr(jctx *c, jnode **out) {
    ELM_TRY(enter(c));
    ELM_TRY(parse_or(c, out));
    while (is_name(cur(c), "if")) {
        jnode *n = NULL;
        ELM_TRY(new_node(c, JN_COND, &n));
        next(c);
        n->a = *out;
        ELM_TRY(parse_or(c, &n->b));
        if (is_name(cur(c), "else")) {
            next(c);
            ELM_TRY(parse_or(c, &n->c));
        }
        *out = n;
    }
    c->pdepth--;
    return ELM_OK;
}

elm_status elmi_j_parse_expr(jctx *c, jnode **out) { return parse_expr(c, out); }

elm_status elmi_j_parse_expr_noif(jctx *c, jnode **out) { return parse_or(c, out); }

elm_status elmi_j_parse_filter_chain(jctx *c, jnode **out) {
    ELM_TRY(parse_filter(c, NULL, out));
    while (is_op(cur(c), "|")) {
        next(c);
        ELM_TRY(parse_filter(c, *out, out));
    }
    return ELM_OK;
}
