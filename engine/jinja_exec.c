/* jinja_exec.c: statements, macro calls and the render entry point.
 * Scopes follow Jinja2: each loop iteration and each macro call has its own
 * scope (assignments in them do not leak out; namespace() objects carry
 * values across), `if` has none; a macro sees the template's top-level
 * variables as they are when it is called, and the body of a {% call %}
 * block (the macro's `caller`) sees the scope of the block. */
#include <string.h>

#include "common/alloc.h"
#include "common/status.h"
#include "engine/jinja_impl.h"

static elm_status exec(jctx *c, const jnode *s);
static elm_status exec_call_block(jctx *c, const jnode *s);

elm_status elmi_j_exec_body(jctx *c, const jnodes *body) {
    for (size_t i = 0; i < body->n && !c->loop_ctl; i++) ELM_TRY(exec(c, body->v[i]));
    return ELM_OK;
}

/* Runs `body` with its output captured as a string. */
static elm_status capture(jctx *c, const jnodes *body, jval *out) {
    jbuf b = {0}, *save = c->out;
    c->out = &b;
    elm_status st = elmi_j_exec_body(c, body);
    c->out = save;
    ELM_TRY(st);
    *out = elmi_j_str(b.n ? b.p : "", b.n);
    return ELM_OK;
}

static elm_status push_frame(jctx *c, jframe *parent, jframe **out) {
    jframe *f = elmi_j_alloc(c, sizeof *f);
    if (!f) return c->st;
    memset(f, 0, sizeof *f);
    f->parent = parent;
    *out = f;
    return ELM_OK;
}

static elm_status bind_targets(jctx *c, const jnode *s, jval item) {
    const jnodes *t = &s->l2;
    if (t->n == 1) return elmi_j_frame_set(c, c->frame, t->v[0]->s, t->v[0]->n, item);
    jval parts = item;
    if (item.t == JV_STR || item.t == JV_DICT) ELM_TRY(elmi_j_iterate(c, s->line, item, &parts));
    if (parts.t != JV_LIST) return elmi_j_fail(c, s->line, "cannot unpack non-iterable %s object", elmi_j_type_name(item));
    if (parts.u.l->n != t->n)
        return elmi_j_fail(c, s->line, "cannot unpack %zu values into %zu names", parts.u.l->n, t->n);
    for (size_t i = 0; i < t->n; i++) ELM_TRY(elmi_j_frame_set(c, c->frame, t->v[i]->s, t->v[i]->n, parts.u.l->v[i]));
    return ELM_OK;
}

/* The items of a loop, filtered by its `if` clause. */
static elm_status loop_items(jctx *c, const jnode *s, jval *out) {
    jval it;
    ELM_TRY(elmi_j_eval(c, s->a, &it));
    ELM_TRY(elmi_j_iterate(c, s->line, it, &it));
    if (!s->b) {
        *out = it;
        return ELM_OK;
    }
    ELM_TRY(elmi_j_new_list(c, 0, out));
    jframe *save = c->frame, *f = NULL;
    ELM_TRY(push_frame(c, save, &f));
    for (size_t i = 0; i < it.u.l->n; i++) {
        jval keep;
        f->n = 0; /* one scope per item, reused */
        c->frame = f;
        ELM_TRY(bind_targets(c, s, it.u.l->v[i]));
        ELM_TRY(elmi_j_eval(c, s->b, &keep));
        c->frame = save;
        if (elmi_j_truthy(keep)) ELM_TRY(elmi_j_list_push(c, out->u.l, it.u.l->v[i]));
    }
    return ELM_OK;
}

static elm_status exec_for(jctx *c, const jnode *s) {
    jval items;
    ELM_TRY(loop_items(c, s, &items));
    if (items.u.l->n == 0) return s->c ? elmi_j_exec_body(c, &s->c->l1) : ELM_OK;
    jloop *lp = elmi_j_alloc(c, sizeof *lp);
    if (!lp) return c->st;
    lp->items = items.u.l;
    jframe *save = c->frame, *f = NULL;
    ELM_TRY(push_frame(c, save, &f));
    for (lp->i = 0; lp->i < items.u.l->n; lp->i++) {
        ELM_TRY(elmi_j_charge(c, 1));
        f->n = 0; /* a fresh scope per iteration, its memory reused */
        c->frame = f;
        ELM_TRY(elmi_j_frame_set(c, c->frame, "loop", 4, (jval){.t = JV_LOOP, .u.lp = lp}));
        ELM_TRY(bind_targets(c, s, items.u.l->v[lp->i]));
        ELM_TRY(elmi_j_exec_body(c, &s->l1));
        c->frame = save;
        int ctl = c->loop_ctl;
        c->loop_ctl = 0;
        if (ctl == 1) break;
    }
    return ELM_OK;
}

static elm_status exec_if(jctx *c, const jnode *s) {
    while (s && s->kind == JN_IF) {
        jval v;
        ELM_TRY(elmi_j_eval(c, s->a, &v));
        if (elmi_j_truthy(v)) return elmi_j_exec_body(c, &s->l1);
        s = s->b;
    }
    return s ? elmi_j_exec_body(c, &s->l1) : ELM_OK;
}

static elm_status exec_set(jctx *c, const jnode *s) {
    jval v;
    if (s->kind == JN_SETBLOCK) ELM_TRY(capture(c, &s->l1, &v));
    else ELM_TRY(elmi_j_eval(c, s->b, &v));
    if (!s->a) return elmi_j_frame_set(c, c->frame, s->s, s->n, v);
    jval ns;
    ELM_TRY(elmi_j_eval(c, s->a, &ns));
    if (ns.t != JV_NS) return elmi_j_fail(c, s->line, "cannot assign attribute on non-namespace object");
    return elmi_j_dict_set(c, ns.u.d, elmi_j_str(s->s, s->n), v);
}

static elm_status exec_filter_block(jctx *c, const jnode *s) {
    jval body, v;
    ELM_TRY(capture(c, &s->l1, &body));
    const jval *save = c->block_input;
    c->block_input = &body;
    elm_status st = elmi_j_eval(c, s->a, &v);
    c->block_input = save;
    ELM_TRY(st);
    return elmi_j_write_str(c, c->out, v, false);
}

static elm_status exec_node(jctx *c, const jnode *s) {
    jval v;
    switch (s->kind) {
    case JN_TEXT: return elmi_j_buf_put(c, c->out, s->s, s->n);
    case JN_OUT:
        ELM_TRY(elmi_j_eval(c, s->a, &v));
        return elmi_j_write_str(c, c->out, v, false);
    case JN_IF: return exec_if(c, s);
    case JN_FOR: return exec_for(c, s);
    case JN_SET: case JN_SETBLOCK: return exec_set(c, s);
    case JN_MACRO: return elmi_j_frame_set(c, c->frame, s->s, s->n, (jval){.t = JV_MACRO, .u.m = s});
    case JN_FILTERBLOCK: return exec_filter_block(c, s);
    case JN_BREAK: c->loop_ctl = 1; return ELM_OK;
    case JN_CONTINUE: c->loop_ctl = 2; return ELM_OK;
    case JN_BODY: return elmi_j_exec_body(c, &s->l1);
    case JN_CALLBLOCK: return exec_call_block(c, s);
    default: return elmi_j_fail(c, s->line, "not a statement");
    }
}

static elm_status exec(jctx *c, const jnode *s) {
    if (++c->depth > JINJA_MAX_EVAL_DEPTH)
        return elmi_j_fail(c, s->line, "the template recurses deeper than %d levels", JINJA_MAX_EVAL_DEPTH);
    ELM_TRY(elmi_j_charge(c, 1));
    ELM_TRY(exec_node(c, s));
    c->depth--;
    return ELM_OK;
}

/* ----------------------------------------------------------------- macros */

typedef struct macro_call {
    const jnode *at;     /* the call, for errors */
    const jnode *m;      /* JN_MACRO, or the JN_CALLBLOCK of a caller */
    jframe *scope;       /* the parent of the macro's scope */
    const jval *args;
    size_t nargs;
    const jnodes *kwn;   /* the JN_KW nodes naming the keyword arguments */
    const jval *kw;
    size_t nkw;
    const jval *caller;  /* from a {% call %} block, or NULL */
} macro_call;

/* The index of the node in `list` that has the name of `named`, or -1. */
static int param_index(const jnodes *list, const jnode *named) {
    for (size_t i = 0; i < list->n; i++)
        if (list->v[i]->n == named->n && memcmp(list->v[i]->s, named->s, named->n) == 0) return (int)i;
    return -1;
}

/* Keyword arguments that name no parameter: into `kwargs` (when the body
 * uses it), or `caller` (when it uses that); else an error. */
static elm_status bind_extra_keyword(jctx *c, const macro_call *mc, const char *name, int nn,
                                     const jnode *kn, jval v, jval *kwargs, jval *caller) {
    int refs = mc->m->op;
    if (kn->n == 6 && memcmp(kn->s, "caller", 6) == 0 && (refs & JREF_CALLER)) {
        if (mc->caller)
            return elmi_j_fail(c, mc->at->line, "macro '%.*s' was invoked with two values for the special caller argument", nn, name);
        *caller = v;
        return ELM_OK;
    }
    if (!(refs & JREF_KWARGS))
        return elmi_j_fail(c, mc->at->line, "macro '%.*s' takes no keyword argument '%.*s'", nn, name, (int)kn->n, kn->s);
    return elmi_j_dict_set(c, kwargs->u.d, elmi_j_str(kn->s, kn->n), v);
}

/* Binds parameters, then varargs, kwargs and caller where the body uses them. */
static elm_status bind_macro_args(jctx *c, const macro_call *mc) {
    const jnode *m = mc->m;
    const jnodes *params = &m->l2;
    const char *name = m->kind == JN_MACRO ? m->s : "caller";
    int nn = m->kind == JN_MACRO ? (int)m->n : 6, refs = m->op;
    if (mc->nargs > params->n && !(refs & JREF_VARARGS))
        return elmi_j_fail(c, mc->at->line, "macro '%.*s' takes not more than %zu argument(s)", nn, name, params->n);
    if (mc->caller && !(refs & JREF_CALLER))
        return elmi_j_fail(c, mc->at->line, "macro '%.*s' was invoked with two values for the special caller argument", nn, name);
    jval kwargs = elmi_j_undef(NULL, 0), caller = mc->caller ? *mc->caller : elmi_j_undef("caller", 6);
    if (refs & JREF_KWARGS) ELM_TRY(elmi_j_new_dict(c, mc->nkw, JV_DICT, &kwargs));
    for (size_t k = 0; k < mc->nkw; k++) {
        const jnode *kn = mc->kwn->v[k];
        int i = param_index(params, kn);
        if (i < 0) ELM_TRY(bind_extra_keyword(c, mc, name, nn, kn, mc->kw[k], &kwargs, &caller));
        else if ((size_t)i < mc->nargs)
            return elmi_j_fail(c, mc->at->line, "macro '%.*s' got multiple values for argument '%.*s'", nn, name, (int)kn->n, kn->s);
    }
    for (size_t i = 0; i < params->n; i++) { /* in order: a default may use earlier ones */
        const jnode *p = params->v[i];
        int k = param_index(mc->kwn, p);
        jval v = elmi_j_undef(p->s, p->n);
        if (i < mc->nargs) v = mc->args[i];
        else if (k >= 0) v = mc->kw[k];
        else if (p->a) ELM_TRY(elmi_j_eval(c, p->a, &v));
        ELM_TRY(elmi_j_frame_set(c, c->frame, p->s, p->n, v));
    }
    if (refs & JREF_VARARGS) {
        jval extra;
        ELM_TRY(elmi_j_new_list(c, 0, &extra));
        extra.u.l->tuple = true;
        for (size_t i = params->n; i < mc->nargs; i++) ELM_TRY(elmi_j_list_push(c, extra.u.l, mc->args[i]));
        ELM_TRY(elmi_j_frame_set(c, c->frame, "varargs", 7, extra));
    }
    if (refs & JREF_KWARGS) ELM_TRY(elmi_j_frame_set(c, c->frame, "kwargs", 6, kwargs));
    if (refs & JREF_CALLER) ELM_TRY(elmi_j_frame_set(c, c->frame, "caller", 6, caller));
    return ELM_OK;
}

static elm_status call_macro(jctx *c, const macro_call *mc, jval *out) {
    if (++c->depth > JINJA_MAX_EVAL_DEPTH)
        return elmi_j_fail(c, mc->at->line, "the template recurses deeper than %d levels", JINJA_MAX_EVAL_DEPTH);
    jframe *save = c->frame;
    int save_ctl = c->loop_ctl;
    ELM_TRY(push_frame(c, mc->scope, &c->frame));
    ELM_TRY(bind_macro_args(c, mc));
    ELM_TRY(capture(c, &mc->m->l1, out));
    c->frame = save;
    c->loop_ctl = save_ctl;
    c->depth--;
    return ELM_OK;
}

static const jnodes no_nodes;

elm_status elmi_j_call_value(jctx *c, const jnode *at, jval fn, const jval *args, size_t nargs,
                             const jnode *kwnodes, const jval *kw, size_t nkw, jval *out) {
    macro_call mc = {.at = at, .args = args, .nargs = nargs, .kwn = kwnodes ? &kwnodes->l2 : &no_nodes,
                     .kw = kw, .nkw = nkw};
    if (fn.t == JV_MACRO || fn.t == JV_CALLER) {
        mc.m = fn.t == JV_MACRO ? fn.u.m : fn.u.cl->block;
        mc.scope = fn.t == JV_MACRO ? c->root : fn.u.cl->scope;
        return call_macro(c, &mc, out);
    }
    if (fn.t == JV_FUNC) {
        jargs a = {args, nargs, kwnodes ? &kwnodes->l2 : NULL, kw, nkw};
        return elmi_j_global(c, at, fn.u.fn, &a, out);
    }
    if (fn.t == JV_UNDEF) return elmi_j_undefined_error(c, at->line, fn);
    return elmi_j_fail(c, at->line, "'%s' object is not callable", elmi_j_type_name(fn));
}

/* {% call m(args) %}body{% endcall %}: m's output, with the body as its caller. */
static elm_status exec_call_block(jctx *c, const jnode *s) {
    const jnode *call = s->a;
    jval fn, *pos, *kw, v;
    ELM_TRY(elmi_j_eval(c, call->a, &fn));
    ELM_TRY(elmi_j_eval_args(c, call, &pos, &kw));
    if (fn.t != JV_MACRO && fn.t != JV_CALLER) {
        if (fn.t == JV_UNDEF) return elmi_j_undefined_error(c, s->line, fn);
        return elmi_j_fail(c, s->line, "a call block needs a macro, not %s", elmi_j_type_name(fn));
    }
    jcaller *cl = elmi_j_alloc(c, sizeof *cl);
    if (!cl) return c->st;
    cl->block = s;
    cl->scope = c->frame;
    jval caller = {.t = JV_CALLER, .u.cl = cl};
    macro_call mc = {.at = call, .m = fn.t == JV_MACRO ? fn.u.m : fn.u.cl->block,
                     .scope = fn.t == JV_MACRO ? c->root : fn.u.cl->scope, .args = pos,
                     .nargs = call->l1.n, .kwn = &call->l2, .kw = kw, .nkw = call->l2.n,
                     .caller = &caller};
    ELM_TRY(call_macro(c, &mc, &v));
    return elmi_j_write_str(c, c->out, v, false);
}

/* ----------------------------------------------------------------- render */

static elm_status set_globals(jctx *c) {
    const elmi_jinja_input *in = c->in;
    jval msgs;
    ELM_TRY(elmi_j_new_list(c, in->n_msgs, &msgs));
    for (size_t i = 0; i < in->n_msgs; i++) {
        const elm_chat_message *m = &in->msgs[i];
        jval d;
        ELM_TRY(elmi_j_new_dict(c, 2, JV_DICT, &d));
        ELM_TRY(elmi_j_dict_set(c, d.u.d, elmi_j_cstr("role"), elmi_j_cstr(m->role)));
        ELM_TRY(elmi_j_dict_set(c, d.u.d, elmi_j_cstr("content"), elmi_j_cstr(m->content)));
        ELM_TRY(elmi_j_list_push(c, msgs.u.l, d));
    }
    jframe *f = c->root;
    ELM_TRY(elmi_j_frame_set(c, f, "messages", 8, msgs));
    ELM_TRY(elmi_j_frame_set(c, f, "add_generation_prompt", 21, elmi_j_bool(in->add_generation_prompt)));
    ELM_TRY(elmi_j_frame_set(c, f, "bos_token", 9, elmi_j_cstr(in->bos_token ? in->bos_token : "")));
    return elmi_j_frame_set(c, f, "eos_token", 9, elmi_j_cstr(in->eos_token ? in->eos_token : ""));
}

static elm_status validate(const elmi_jinja_input *in, char *err, size_t err_size) {
    if (!in->src) return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "the template is NULL");
    if (in->n_msgs && !in->msgs) return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "messages is NULL");
    for (size_t i = 0; i < in->n_msgs; i++)
        if (!in->msgs[i].role || !in->msgs[i].content)
            return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "message %zu has a NULL role or content", i);
    return ELM_OK;
}

static elm_status render(jctx *c, jbuf *out) {
    jnode *root;
    ELM_TRY(elmi_j_lex(c, c->in->src, c->in->src_len));
    ELM_TRY(elmi_j_parse(c, &root));
    ELM_TRY(push_frame(c, NULL, &c->root));
    c->frame = c->root;
    ELM_TRY(set_globals(c));
    c->out = out;
    ELM_TRY(elmi_j_buf_put(c, out, "", 0));
    return elmi_j_exec_body(c, &root->l1);
}

elm_status elmi_jinja_render(const elmi_jinja_input *in, char **out, size_t *out_len, char *err,
                             size_t err_size) {
    if (err && err_size) err[0] = 0;
    if (!in || !out || !out_len) return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "NULL argument");
    *out = NULL;
    *out_len = 0;
    ELM_TRY(validate(in, err, err_size));
    jctx c = {.in = in, .err = err, .err_size = err_size};
    jbuf b = {0};
    elm_status st = render(&c, &b);
    if (st != ELM_OK) goto done;
    *out = elmi_malloc(b.n + 1);
    if (!*out) {
        st = elmi_errorf(err, err_size, ELM_ERR_NO_MEMORY, "chat template: out of memory");
        goto done;
    }
    memcpy(*out, b.p, b.n + 1);
    *out_len = b.n;
done:
    elmi_j_arena_free(&c.arena);
    return st;
}
