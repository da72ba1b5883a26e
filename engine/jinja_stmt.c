/* jinja_stmt.c: statements (text, {{ }}, {% %} tags) to a syntax tree.
 * Tags: if/elif/else, for/else (with a filter and tuple targets), set (with
 * namespace attributes, and the block form), macro, call, filter, break,
 * continue. */
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
static bool is_name(const jtok *t, const char *name) {
    return t->t == JT_NAME && t->n == strlen(name) && memcmp(t->s, name, t->n) == 0;
}
static bool is_op(const jtok *t, const char *op) {
    return t->t == JT_OP && t->n == strlen(op) && memcmp(t->s, op, t->n) == 0;
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
        size_t cap = v->cap ? v->cap * 2 : 8;
        jnode **p = elmi_j_alloc(c, cap * sizeof *p);
        if (!p) return c->st;
        if (v->l->n) memcpy(p, v->l->v, v->l->n * sizeof *p);
        v->l->v = p;
        v->cap = cap;
    }
    v->l->v[v->l->n++] = n;
    return ELM_OK;
}

static elm_status block_end(jctx *c) {
    if (cur(c)->t != JT_BLOCK_END) {
        const jtok *t = cur(c);
        if (t->t == JT_NAME || t->t == JT_OP)
            return elmi_j_fail(c, t->line, "expected '%%}', got '%.*s'", (int)t->n, t->s);
        return elmi_j_fail(c, t->line, "expected '%%}'");
    }
    next(c);
    return ELM_OK;
}

static elm_status name_node(jctx *c, jnode **out) {
    if (cur(c)->t != JT_NAME) return elmi_j_fail(c, cur(c)->line, "expected a name");
    ELM_TRY(new_node(c, JN_NAME, out));
    (*out)->s = cur(c)->s;
    (*out)->n = cur(c)->n;
    next(c);
    return ELM_OK;
}

/* Parses statements until a block tag whose name is one of `ends` (a
 * NULL-terminated list); leaves the parser on that name. */
static elm_status parse_body(jctx *c, const char *const *ends, jnodes *body);

static elm_status parse_if(jctx *c, jnode **out) {
    jnode *n = NULL;
    ELM_TRY(new_node(c, JN_IF, &n));
    next(c); /* if / elif */
    ELM_TRY(elmi_j_parse_expr(c, &n->a));
    ELM_TRY(block_end(c));
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    ELM_TRY(parse_body(c, ends, &n->l1));
    *out = n;
    if (is_name(cur(c), "elif")) return parse_if(c, &n->b);
    if (is_name(cur(c), "else")) {
        next(c);
        ELM_TRY(block_end(c));
        ELM_TRY(new_node(c, JN_BODY, &n->b));
        static const char *const endif[] = {"endif", NULL};
        ELM_TRY(parse_body(c, endif, &n->b->l1));
    }
    next(c); /* endif */
    return block_end(c);
}

static elm_status parse_for(jctx *c, jnode **out) {
    jnode *n = NULL, *t = NULL;
    ELM_TRY(new_node(c, JN_FOR, &n));
    next(c);
    nodevec targets = {&n->l2, 0};
    bool paren = is_op(cur(c), "(");
    if (paren) next(c);
    do {
        if (is_op(cur(c), ",")) next(c);
        ELM_TRY(name_node(c, &t));
        ELM_TRY(add(c, &targets, t));
    } while (is_op(cur(c), ","));
    if (paren) {
        if (!is_op(cur(c), ")")) return elmi_j_fail(c, cur(c)->line, "expected ')'");
        next(c);
    }
    if (!is_name(cur(c), "in")) return elmi_j_fail(c, cur(c)->line, "expected 'in' in a for loop");
    next(c);
    ELM_TRY(elmi_j_parse_expr_noif(c, &n->a));
    if (is_name(cur(c), "if")) {
        next(c);
        ELM_TRY(elmi_j_parse_expr(c, &n->b));
    }
    if (is_name(cur(c), "recursive")) return elmi_j_fail(c, cur(c)->line, "unsupported feature: recursive loops");
    ELM_TRY(block_end(c));
    static const char *const ends[] = {"else", "endfor", NULL};
    ELM_TRY(parse_body(c, ends, &n->l1));
    if (is_name(cur(c), "else")) {
        next(c);
        ELM_TRY(block_end(c));
        ELM_TRY(new_node(c, JN_BODY, &n->c));
        static const char *const endfor[] = {"endfor", NULL};
        ELM_TRY(parse_body(c, endfor, &n->c->l1));
    }
    next(c);
    *out = n;
    return block_end(c);
}

static elm_status parse_set(jctx *c, jnode **out) {
    jnode *n = NULL;
    ELM_TRY(new_node(c, JN_SET, &n));
    next(c);
    if (cur(c)->t != JT_NAME) return elmi_j_fail(c, cur(c)->line, "expected a name after 'set'");
    n->s = cur(c)->s;
    n->n = cur(c)->n;
    next(c);
    if (is_op(cur(c), ".")) { /* set ns.attr = value */
        next(c);
        ELM_TRY(new_node(c, JN_NAME, &n->a));
        n->a->s = n->s;
        n->a->n = n->n;
        if (cur(c)->t != JT_NAME) return elmi_j_fail(c, cur(c)->line, "expected an attribute name");
        n->s = cur(c)->s;
        n->n = cur(c)->n;
        next(c);
    } else if (is_op(cur(c), ",")) {
        return elmi_j_fail(c, cur(c)->line, "unsupported feature: tuple assignment in set");
    }
    *out = n;
    if (cur(c)->t == JT_BLOCK_END && !n->a) { /* {% set x %}...{% endset %} */
        n->kind = JN_SETBLOCK;
        next(c);
        static const char *const ends[] = {"endset", NULL};
        ELM_TRY(parse_body(c, ends, &n->l1));
        next(c);
        return block_end(c);
    }
    if (!is_op(cur(c), "=")) return elmi_j_fail(c, cur(c)->line, "expected '=' in set");
    next(c);
    ELM_TRY(elmi_j_parse_expr(c, &n->b));
    if (is_op(cur(c), ",")) return elmi_j_fail(c, cur(c)->line, "unsupported feature: tuple values in set");
    return block_end(c);
}

/* Parameters after '(' up to ')': names with optional defaults (JN_KW). */
static elm_status parse_params(jctx *c, jnodes *params) {
    nodevec v = {params, 0};
    next(c);
    while (!is_op(cur(c), ")")) {
        jnode *p = NULL;
        ELM_TRY(new_node(c, JN_KW, &p));
        if (cur(c)->t != JT_NAME) return elmi_j_fail(c, cur(c)->line, "expected a parameter name");
        p->s = cur(c)->s;
        p->n = cur(c)->n;
        next(c);
        if (is_op(cur(c), "=")) {
            next(c);
            ELM_TRY(elmi_j_parse_expr(c, &p->a));
        }
        ELM_TRY(add(c, &v, p));
        if (!is_op(cur(c), ",")) break;
        next(c);
    }
    if (!is_op(cur(c), ")")) return elmi_j_fail(c, cur(c)->line, "expected ')' after the parameters");
    next(c);
    return ELM_OK;
}

/* A macro's body (or a call block's) up to `end`, noting in n->op which of
 * caller, varargs and kwargs it refers to (a nested macro's references
 * count too, as Jinja2 counts them). */
static elm_status parse_macro_body(jctx *c, const char *end, jnode *n) {
    int outer = c->name_refs, save_nest = c->loop_nest;
    c->name_refs = 0;
    c->loop_nest = 0;
    const char *const ends[] = {end, NULL};
    elm_status st = parse_body(c, ends, &n->l1);
    n->op = c->name_refs;
    c->name_refs |= outer;
    c->loop_nest = save_nest;
    return st;
}

static elm_status parse_macro(jctx *c, jnode **out) {
    jnode *n = NULL;
    ELM_TRY(new_node(c, JN_MACRO, &n));
    next(c);
    if (cur(c)->t != JT_NAME) return elmi_j_fail(c, cur(c)->line, "expected a macro name");
    n->s = cur(c)->s;
    n->n = cur(c)->n;
    next(c);
    if (!is_op(cur(c), "(")) return elmi_j_fail(c, cur(c)->line, "expected '(' after the macro name");
    ELM_TRY(parse_params(c, &n->l2));
    ELM_TRY(block_end(c));
    ELM_TRY(parse_macro_body(c, "endmacro", n));
    next(c);
    if (cur(c)->t == JT_NAME) next(c); /* {% endmacro name %} */
    *out = n;
    return block_end(c);
}

/* {% call[(params)] macro(args) %}body{% endcall %}: the body becomes the
 * macro's `caller`. */
static elm_status parse_call_block(jctx *c, jnode **out) {
    jnode *n = NULL;
    ELM_TRY(new_node(c, JN_CALLBLOCK, &n));
    next(c);
    if (is_op(cur(c), "(")) ELM_TRY(parse_params(c, &n->l2));
    int line = cur(c)->line;
    ELM_TRY(elmi_j_parse_expr(c, &n->a));
    if (n->a->kind != JN_CALL) return elmi_j_fail(c, line, "expected a macro call after 'call'");
    ELM_TRY(block_end(c));
    ELM_TRY(parse_macro_body(c, "endcall", n));
    next(c);
    *out = n;
    return block_end(c);
}

static elm_status parse_filter_block(jctx *c, jnode **out) {
    jnode *n = NULL;
    ELM_TRY(new_node(c, JN_FILTERBLOCK, &n));
    next(c);
    ELM_TRY(elmi_j_parse_filter_chain(c, &n->a));
    ELM_TRY(block_end(c));
    static const char *const ends[] = {"endfilter", NULL};
    ELM_TRY(parse_body(c, ends, &n->l1));
    next(c);
    *out = n;
    return block_end(c);
}

static elm_status parse_loop_control(jctx *c, jnode **out) {
    bool brk = is_name(cur(c), "break");
    if (c->loop_nest == 0)
        return elmi_j_fail(c, cur(c)->line, "'%s' outside of a loop", brk ? "break" : "continue");
    ELM_TRY(new_node(c, brk ? JN_BREAK : JN_CONTINUE, out));
    next(c);
    return block_end(c);
}

static elm_status parse_tag(jctx *c, jnode **out) {
    const jtok *t = cur(c);
    if (t->t != JT_NAME) return elmi_j_fail(c, t->line, "expected a tag name after '{%%'");
    if (is_name(t, "if")) return parse_if(c, out);
    if (is_name(t, "for")) {
        c->loop_nest++;
        elm_status st = parse_for(c, out);
        c->loop_nest--;
        return st;
    }
    if (is_name(t, "set")) return parse_set(c, out);
    if (is_name(t, "macro")) return parse_macro(c, out);
    if (is_name(t, "call")) return parse_call_block(c, out);
    if (is_name(t, "filter")) return parse_filter_block(c, out);
    if (is_name(t, "break") || is_name(t, "continue")) return parse_loop_control(c, out);
    if ((t->n >= 3 && memcmp(t->s, "end", 3) == 0) || is_name(t, "else") || is_name(t, "elif"))
        return elmi_j_fail(c, t->line, "unexpected '%.*s' tag", (int)t->n, t->s);
    return elmi_j_fail(c, t->line, "unsupported feature: the '%.*s' tag", (int)t->n, t->s);
}

static bool is_end(jctx *c, const char *const *ends) {
    if (cur(c)->t != JT_BLOCK_BEGIN) return false;
    for (size_t i = 0; ends && ends[i]; i++)
        if (is_name(peek(c, 1), ends[i])) return true;
    return false;
}

static elm_status parse_stmt(jctx *c, jnode **out) {
    const jtok *t = cur(c);
    if (t->t == JT_TEXT) {
        ELM_TRY(new_node(c, JN_TEXT, out));
        (*out)->s = t->s;
        (*out)->n = t->n;
        next(c);
        return ELM_OK;
    }
    if (t->t == JT_VAR_BEGIN) {
        ELM_TRY(new_node(c, JN_OUT, out));
        next(c);
        ELM_TRY(elmi_j_parse_expr(c, &(*out)->a));
        if (cur(c)->t != JT_VAR_END) return elmi_j_fail(c, cur(c)->line, "expected '}}'");
        next(c);
        return ELM_OK;
    }
    if (t->t == JT_BLOCK_BEGIN) {
        next(c);
        return parse_tag(c, out);
    }
    return elmi_j_fail(c, t->line, "unexpected token");
}

static elm_status parse_body(jctx *c, const char *const *ends, jnodes *body) {
    if (++c->pdepth > JINJA_MAX_PARSE_DEPTH)
        return elmi_j_fail(c, cur(c)->line, "the template nests deeper than %d levels", JINJA_MAX_PARSE_DEPTH);
    nodevec v = {body, 0};
    int line = cur(c)->line;
    while (!is_end(c, ends)) {
        if (cur(c)->t == JT_EOF) {
            if (!ends) break;
            return elmi_j_fail(c, line, "unexpected end of template: a block is not closed with '%s'",
                               ends[0]);
        }
        jnode *n = NULL;
        ELM_TRY(parse_stmt(c, &n));
        ELM_TRY(add(c, &v, n));
        ELM_TRY(elmi_j_charge(c, 1));
    }
    if (ends) next(c); /* onto the end tag's name */
    c->pdepth--;
    return ELM_OK;
}

elm_status elmi_j_parse(jctx *c, jnode **out) {
    ELM_TRY(new_node(c, JN_BODY, out));
    ELM_TRY(parse_body(c, NULL, &(*out)->l1));
    if (cur(c)->t != JT_EOF) {
        const jtok *t = peek(c, 1);
        return elmi_j_fail(c, t->line, "unexpected '%.*s' tag", (int)t->n, t->s);
    }
    return ELM_OK;
}
