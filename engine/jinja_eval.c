/* jinja_eval.c: evaluation of expressions (scopes, operators, attribute and
 * item access, calls, filters, tests). Statements are in jinja_exec.c. */
#define _GNU_SOURCE
#include <math.h>
#include <string.h>

#include "engine/jinja_impl.h"

/* ------------------------------------------------------------------ scopes */

elm_status elmi_j_frame_set(jctx *c, jframe *f, const char *name, size_t n, jval v) {
    for (size_t i = 0; i < f->n; i++)
        if (f->vars[i].n == n && memcmp(f->vars[i].name, name, n) == 0) {
            f->vars[i].v = v;
            return ELM_OK;
        }
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        jvar *p = elmi_j_alloc(c, cap * sizeof *p);
        if (!p) return c->st;
        if (f->n) memcpy(p, f->vars, f->n * sizeof *p);
        f->vars = p;
        f->cap = cap;
    }
    f->vars[f->n++] = (jvar){name, n, v};
    return elmi_j_charge(c, f->n / 8);
}

static bool lookup(jctx *c, const char *name, size_t n, jval *out) {
    for (jframe *f = c->frame; f; f = f->parent) {
        c->steps += f->n / 8;
        for (size_t i = f->n; i-- > 0;)
            if (f->vars[i].n == n && memcmp(f->vars[i].name, name, n) == 0) {
                *out = f->vars[i].v;
                return true;
            }
    }
    int g = elmi_j_global_id(name, n);
    if (g >= 0) {
        *out = (jval){.t = JV_FUNC, .u.fn = g};
        return true;
    }
    *out = elmi_j_undef(name, n);
    return false;
}

elm_status elmi_j_undefined_error(jctx *c, int line, jval v) {
    if (v.n) return elmi_j_fail(c, line, "'%.*s' is undefined", (int)v.n, v.u.s);
    return elmi_j_fail(c, line, "a value is undefined");
}

/* ------------------------------------------------------------- operators */

static bool is_num(jval v) { return v.t == JV_INT || v.t == JV_FLOAT || v.t == JV_BOOL; }
static double num(jval v) { return v.t == JV_FLOAT ? v.u.f : v.t == JV_INT ? (double)v.u.i : (double)v.u.b; }
static int64_t ival(jval v) { return v.t == JV_INT ? v.u.i : (int64_t)v.u.b; }

static elm_status bad_operands(jctx *c, int line, const char *op, jval a, jval b) {
    if (a.t == JV_UNDEF) return elmi_j_undefined_error(c, line, a);
    if (b.t == JV_UNDEF) return elmi_j_undefined_error(c, line, b);
    return elmi_j_fail(c, line, "unsupported operand type(s) for %s: '%s' and '%s'", op,
                       elmi_j_type_name(a), elmi_j_type_name(b));
}

static elm_status concat_str(jctx *c, jval a, jval b, jval *out) {
    jbuf buf = {0};
    ELM_TRY(elmi_j_buf_put(c, &buf, a.u.s, a.n));
    ELM_TRY(elmi_j_buf_put(c, &buf, b.u.s, b.n));
    *out = elmi_j_str(buf.p, buf.n);
    return ELM_OK;
}

static elm_status repeat(jctx *c, int line, jval s, int64_t k, jval *out) {
    if (k <= 0) {
        if (s.t == JV_STR) *out = elmi_j_str("", 0);
        else return elmi_j_new_list(c, 0, out);
        return ELM_OK;
    }
    size_t unit = s.t == JV_STR ? s.n : s.u.l->n * sizeof(jval);
    if (unit && (uint64_t)k > JINJA_MAX_OUTPUT / unit)
        return elmi_j_fail(c, line, "a repetition is larger than the output limit");
    ELM_TRY(elmi_j_charge(c, (uint64_t)k * (unit / 16 + 1)));
    if (s.t == JV_STR) {
        jbuf b = {0};
        ELM_TRY(elmi_j_buf_put(c, &b, "", 0));
        for (int64_t i = 0; i < k; i++) ELM_TRY(elmi_j_buf_put(c, &b, s.u.s, s.n));
        *out = elmi_j_str(b.p, b.n);
        return ELM_OK;
    }
    ELM_TRY(elmi_j_new_list(c, s.u.l->n * (size_t)k, out));
    for (int64_t i = 0; i < k; i++)
        for (size_t j = 0; j < s.u.l->n; j++) ELM_TRY(elmi_j_list_push(c, out->u.l, s.u.l->v[j]));
    return ELM_OK;
}

static elm_status add_values(jctx *c, int line, jval a, jval b, jval *out) {
    if (is_num(a) && is_num(b)) {
        if (a.t != JV_FLOAT && b.t != JV_FLOAT) {
            int64_t r;
            if (__builtin_add_overflow(ival(a), ival(b), &r)) return elmi_j_fail(c, line, "integer overflow");
            *out = elmi_j_int(r);
        } else *out = elmi_j_float(num(a) + num(b));
        return ELM_OK;
    }
    if (a.t == JV_STR && b.t == JV_STR) return concat_str(c, a, b, out);
    if (a.t == JV_LIST && b.t == JV_LIST) {
        ELM_TRY(elmi_j_new_list(c, a.u.l->n + b.u.l->n, out));
        for (size_t i = 0; i < a.u.l->n; i++) ELM_TRY(elmi_j_list_push(c, out->u.l, a.u.l->v[i]));
        for (size_t i = 0; i < b.u.l->n; i++) ELM_TRY(elmi_j_list_push(c, out->u.l, b.u.l->v[i]));
        return elmi_j_charge(c, out->u.l->n);
    }
    return bad_operands(c, line, "+", a, b);
}

static double py_fmod(double a, double b) {
    double m = fmod(a, b);
    if (m != 0 && ((m < 0) != (b < 0))) m += b;
    return m;
}

static elm_status int_pow(jctx *c, int line, int64_t a, int64_t b, jval *out) {
    if (b < 0) {
        *out = elmi_j_float(pow((double)a, (double)b));
        return ELM_OK;
    }
    int64_t r = 1;
    if (a == 0 || a == 1) r = b == 0 ? 1 : a;
    else if (a == -1) r = (b % 2) ? -1 : 1;
    else
        for (int64_t i = 0; i < b; i++) /* |a| >= 2 overflows within 63 steps */
            if (__builtin_mul_overflow(r, a, &r)) return elmi_j_fail(c, line, "integer overflow in '**'");
    *out = elmi_j_int(r);
    return ELM_OK;
}

static elm_status arith(jctx *c, int line, int op, jval a, jval b, jval *out) {
    static const char *names[] = {"", "+", "-", "*", "/", "//", "%", "**"};
    if (op == JOP_ADD) return add_values(c, line, a, b, out);
    if (op == JOP_MUL) {
        if ((a.t == JV_STR || a.t == JV_LIST) && (b.t == JV_INT || b.t == JV_BOOL)) return repeat(c, line, a, ival(b), out);
        if ((b.t == JV_STR || b.t == JV_LIST) && (a.t == JV_INT || a.t == JV_BOOL)) return repeat(c, line, b, ival(a), out);
    }
    if (op == JOP_MOD && a.t == JV_STR) return elmi_j_percent_format(c, line, a, b, out);
    if (!is_num(a) || !is_num(b)) return bad_operands(c, line, names[op], a, b);
    bool ints = a.t != JV_FLOAT && b.t != JV_FLOAT;
    int64_t x = ints ? ival(a) : 0, y = ints ? ival(b) : 0, r;
    double fx = num(a), fy = num(b);
    if ((op == JOP_DIV || op == JOP_FLOORDIV || op == JOP_MOD) && fy == 0)
        return elmi_j_fail(c, line, "division by zero");
    switch (op) {
    case JOP_SUB:
        if (!ints) { *out = elmi_j_float(fx - fy); return ELM_OK; }
        if (__builtin_sub_overflow(x, y, &r)) return elmi_j_fail(c, line, "integer overflow");
        *out = elmi_j_int(r);
        return ELM_OK;
    case JOP_MUL:
        if (!ints) { *out = elmi_j_float(fx * fy); return ELM_OK; }
        if (__builtin_mul_overflow(x, y, &r)) return elmi_j_fail(c, line, "integer overflow");
        *out = elmi_j_int(r);
        return ELM_OK;
    case JOP_DIV: *out = elmi_j_float(fx / fy); return ELM_OK;
    case JOP_FLOORDIV:
        if (!ints) { *out = elmi_j_float(floor(fx / fy)); return ELM_OK; }
        if (x == INT64_MIN && y == -1) return elmi_j_fail(c, line, "integer overflow");
        r = x / y;
        if ((x % y != 0) && ((x < 0) != (y < 0))) r--;
        *out = elmi_j_int(r);
        return ELM_OK;
    case JOP_MOD:
        if (!ints) { *out = elmi_j_float(py_fmod(fx, fy)); return ELM_OK; }
        if (y == -1) { *out = elmi_j_int(0); return ELM_OK; }
        r = x % y;
        if (r != 0 && ((r < 0) != (y < 0))) r += y;
        *out = elmi_j_int(r);
        return ELM_OK;
    case JOP_POW:
        if (ints) return int_pow(c, line, x, y, out);
        *out = elmi_j_float(pow(fx, fy));
        return ELM_OK;
    default: return elmi_j_fail(c, line, "bad operator");
    }
}

static elm_status contains(jctx *c, int line, jval item, jval box, bool *out) {
    switch (box.t) {
    case JV_UNDEF: *out = false; return ELM_OK;
    case JV_STR:
        if (item.t != JV_STR) return elmi_j_fail(c, line, "'in <string>' requires string as left operand, not %s", elmi_j_type_name(item));
        ELM_TRY(elmi_j_charge(c, box.n / 16));
        *out = item.n == 0 || memmem(box.u.s, box.n, item.u.s, item.n) != NULL;
        return ELM_OK;
    case JV_LIST:
        ELM_TRY(elmi_j_charge(c, box.u.l->n));
        *out = false;
        for (size_t i = 0; i < box.u.l->n && !*out; i++) *out = elmi_j_equal(box.u.l->v[i], item);
        return ELM_OK;
    case JV_DICT: case JV_NS:
        *out = elmi_j_dict_get(c, box.u.d, item) != NULL;
        return ELM_OK;
    default: return elmi_j_fail(c, line, "argument of type '%s' is not iterable", elmi_j_type_name(box));
    }
}

static elm_status binop(jctx *c, const jnode *e, jval a, jval b, jval *out) {
    int r;
    bool in = false;
    switch (e->op) {
    case JOP_CONCAT:
        ELM_TRY(elmi_j_to_str(c, a, &a));
        ELM_TRY(elmi_j_to_str(c, b, &b));
        return concat_str(c, a, b, out);
    case JOP_EQ: *out = elmi_j_bool(elmi_j_equal(a, b)); return ELM_OK;
    case JOP_NE: *out = elmi_j_bool(!elmi_j_equal(a, b)); return ELM_OK;
    case JOP_LT: case JOP_LE: case JOP_GT: case JOP_GE:
        if (a.t == JV_UNDEF || b.t == JV_UNDEF) return bad_operands(c, e->line, "<", a, b);
        ELM_TRY(elmi_j_compare(c, e->line, a, b, &r));
        *out = elmi_j_bool(e->op == JOP_LT ? r < 0 : e->op == JOP_LE ? r <= 0 : e->op == JOP_GT ? r > 0 : r >= 0);
        return ELM_OK;
    case JOP_IN: case JOP_NOTIN:
        ELM_TRY(contains(c, e->line, a, b, &in));
        *out = elmi_j_bool(e->op == JOP_IN ? in : !in);
        return ELM_OK;
    default: return arith(c, e->line, e->op, a, b, out);
    }
}

/* --------------------------------------------------------------- access */

static elm_status loop_attr(jctx *c, const jnode *e, const jloop *lp, jval *out) {
    size_t i = lp->i, n = lp->items->n;
    const char *a = e->s;
    size_t k = e->n;
#define IS(s) (k == sizeof s - 1 && memcmp(a, s, k) == 0)
    if (IS("index")) *out = elmi_j_int((int64_t)i + 1);
    else if (IS("index0")) *out = elmi_j_int((int64_t)i);
    else if (IS("revindex")) *out = elmi_j_int((int64_t)(n - i));
    else if (IS("revindex0")) *out = elmi_j_int((int64_t)(n - i - 1));
    else if (IS("first")) *out = elmi_j_bool(i == 0);
    else if (IS("last")) *out = elmi_j_bool(i + 1 == n);
    else if (IS("length")) *out = elmi_j_int((int64_t)n);
    else if (IS("previtem")) *out = i > 0 ? lp->items->v[i - 1] : elmi_j_undef("previtem", 8);
    else if (IS("nextitem")) *out = i + 1 < n ? lp->items->v[i + 1] : elmi_j_undef("nextitem", 8);
    else if (IS("depth")) *out = elmi_j_int(1);
    else if (IS("depth0")) *out = elmi_j_int(0);
    else return elmi_j_fail(c, e->line, "unsupported feature: loop.%.*s", (int)k, a);
#undef IS
    return ELM_OK;
}

static elm_status get_attr(jctx *c, const jnode *e, jval obj, jval *out) {
    if (obj.t == JV_UNDEF) return elmi_j_undefined_error(c, e->line, obj);
    if (obj.t == JV_DICT || obj.t == JV_NS) {
        const jval *v = elmi_j_dict_gets(obj.u.d, e->s, e->n);
        ELM_TRY(elmi_j_charge(c, obj.u.d->n / 8));
        *out = v ? *v : elmi_j_undef(e->s, e->n);
        return ELM_OK;
    }
    if (obj.t == JV_LOOP) return loop_attr(c, e, obj.u.lp, out);
    *out = elmi_j_undef(e->s, e->n);
    return ELM_OK;
}

/* Python index i of n items: negative counts from the end; false when out of range. */
static bool norm_index(int64_t i, size_t n, size_t *out) {
    if (i < 0) i += (int64_t)n;
    if (i < 0 || (uint64_t)i >= n) return false;
    *out = (size_t)i;
    return true;
}

/* Byte offset of character `ci` of a UTF-8 string. */
static size_t char_offset(const char *s, size_t n, size_t ci) {
    size_t i = 0;
    for (; i < n && ci; ci--) {
        i++;
        while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80) i++;
    }
    return i;
}

static elm_status get_item(jctx *c, const jnode *e, jval obj, jval key, jval *out) {
    size_t i;
    if (obj.t == JV_UNDEF) return elmi_j_undefined_error(c, e->line, obj);
    if (obj.t == JV_DICT || obj.t == JV_NS) {
        const jval *v = elmi_j_dict_get(c, obj.u.d, key);
        *out = v ? *v : (key.t == JV_STR ? elmi_j_undef(key.u.s, key.n) : elmi_j_undef(NULL, 0));
        return ELM_OK;
    }
    if ((obj.t == JV_LIST || obj.t == JV_STR) && (key.t == JV_INT || key.t == JV_BOOL)) {
        size_t n = obj.t == JV_LIST ? obj.u.l->n : elmi_j_utf8_len(obj.u.s, obj.n);
        if (!norm_index(key.t == JV_INT ? key.u.i : key.u.b, n, &i)) {
            *out = elmi_j_undef(NULL, 0);
            return ELM_OK;
        }
        if (obj.t == JV_LIST) *out = obj.u.l->v[i];
        else {
            size_t b = char_offset(obj.u.s, obj.n, i);
            size_t e2 = char_offset(obj.u.s + b, obj.n - b, 1);
            *out = elmi_j_str(obj.u.s + b, e2);
        }
        return ELM_OK;
    }
    if (obj.t == JV_LOOP && key.t == JV_STR) {
        jnode tmp = *e;
        tmp.s = key.u.s;
        tmp.n = key.n;
        return loop_attr(c, &tmp, obj.u.lp, out);
    }
    *out = elmi_j_undef(NULL, 0);
    return ELM_OK;
}

static elm_status slice_bound(jctx *c, const jnode *e, jval v, int64_t dflt, int64_t *out) {
    if (v.t == JV_NONE || v.t == JV_UNDEF) {
        *out = dflt;
        return ELM_OK;
    }
    if (v.t != JV_INT && v.t != JV_BOOL) return elmi_j_fail(c, e->line, "slice indices must be integers");
    *out = v.t == JV_INT ? v.u.i : v.u.b;
    return ELM_OK;
}

static int64_t clamp_bound(int64_t x, int64_t n, bool neg_step) {
    if (x < 0) {
        x += n;
        if (x < 0) x = neg_step ? -1 : 0;
    } else if (x >= n) x = neg_step ? n - 1 : n;
    return x;
}

static elm_status do_slice(jctx *c, const jnode *e, jval obj, jval lo, jval hi, jval step, jval *out) {
    if (obj.t == JV_UNDEF) return elmi_j_undefined_error(c, e->line, obj);
    if (obj.t != JV_LIST && obj.t != JV_STR) return elmi_j_fail(c, e->line, "'%s' object is not subscriptable", elmi_j_type_name(obj));
    int64_t st = 1, a = 0, b = 0;
    ELM_TRY(slice_bound(c, e, step, 1, &st));
    if (st == 0) return elmi_j_fail(c, e->line, "slice step cannot be zero");
    int64_t n = obj.t == JV_LIST ? (int64_t)obj.u.l->n : (int64_t)elmi_j_utf8_len(obj.u.s, obj.n);
    ELM_TRY(slice_bound(c, e, lo, st > 0 ? 0 : n - 1, &a));
    ELM_TRY(slice_bound(c, e, hi, st > 0 ? n : -1 - n, &b));
    a = clamp_bound(a, n, st < 0);
    b = clamp_bound(b, n, st < 0);
    jval items = obj;
    if (obj.t == JV_STR) ELM_TRY(elmi_j_iterate(c, e->line, obj, &items));
    jval res;
    ELM_TRY(elmi_j_new_list(c, 0, &res));
    uint64_t stride = st > 0 ? (uint64_t)st : (uint64_t)0 - (uint64_t)st;
    for (int64_t i = a; st > 0 ? i < b : i > b;) {
        ELM_TRY(elmi_j_list_push(c, res.u.l, items.u.l->v[i]));
        uint64_t left = st > 0 ? (uint64_t)(b - i) : (uint64_t)(i - b);
        if (left <= stride) break; /* the next index would pass the end (no overflow) */
        i += st;
    }
    ELM_TRY(elmi_j_charge(c, res.u.l->n));
    if (obj.t == JV_LIST) {
        *out = res;
        return ELM_OK;
    }
    jbuf buf = {0};
    ELM_TRY(elmi_j_buf_put(c, &buf, "", 0));
    for (size_t i = 0; i < res.u.l->n; i++) ELM_TRY(elmi_j_buf_put(c, &buf, res.u.l->v[i].u.s, res.u.l->v[i].n));
    *out = elmi_j_str(buf.p, buf.n);
    return ELM_OK;
}

/* ----------------------------------------------------------------- calls */

static elm_status eval_list(jctx *c, const jnodes *l, jval **out) {
    *out = NULL;
    if (!l->n) return ELM_OK;
    *out = elmi_j_alloc(c, l->n * sizeof **out);
    if (!*out) return c->st;
    for (size_t i = 0; i < l->n; i++) {
        const jnode *x = l->v[i];
        ELM_TRY(elmi_j_eval(c, x->kind == JN_KW ? x->a : x, &(*out)[i]));
    }
    return ELM_OK;
}

elm_status elmi_j_eval_args(jctx *c, const jnode *call, jval **pos, jval **kw) {
    ELM_TRY(eval_list(c, &call->l1, pos));
    return eval_list(c, &call->l2, kw);
}

/* loop.cycle(a, b, ...): the argument at the iteration's index, cyclically. */
static elm_status loop_cycle(jctx *c, const jnode *e, const jloop *lp, const jargs *a, jval *out) {
    if (a->nkw) return elmi_j_fail(c, e->line, "loop.cycle() takes no keyword arguments");
    if (a->npos == 0) return elmi_j_fail(c, e->line, "no items for cycling given");
    *out = a->pos[lp->i % a->npos];
    return ELM_OK;
}

static elm_status eval_call(jctx *c, const jnode *e, jval *out) {
    jval *pos, *kw;
    ELM_TRY(elmi_j_eval_args(c, e, &pos, &kw));
    jargs args = {pos, e->l1.n, &e->l2, kw, e->l2.n};
    if (e->a->kind == JN_ATTR) {
        jval obj;
        ELM_TRY(elmi_j_eval(c, e->a->a, &obj));
        if (obj.t == JV_LOOP && e->a->n == 5 && memcmp(e->a->s, "cycle", 5) == 0)
            return loop_cycle(c, e, obj.u.lp, &args, out);
        if (obj.t == JV_STR || obj.t == JV_LIST || obj.t == JV_DICT) {
            bool found;
            ELM_TRY(elmi_j_method(c, e, obj, e->a->s, e->a->n, &args, out, &found));
            if (found) return ELM_OK;
        }
        jval fn;
        ELM_TRY(get_attr(c, e->a, obj, &fn));
        return elmi_j_call_value(c, e, fn, pos, e->l1.n, e, kw, e->l2.n, out);
    }
    jval fn;
    ELM_TRY(elmi_j_eval(c, e->a, &fn));
    return elmi_j_call_value(c, e, fn, pos, e->l1.n, e, kw, e->l2.n, out);
}

static elm_status eval_filter(jctx *c, const jnode *e, jval *out) {
    jval v;
    if (e->a) ELM_TRY(elmi_j_eval(c, e->a, &v));
    else v = c->block_input ? *c->block_input : elmi_j_undef(NULL, 0);
    jval *pos, *kw;
    ELM_TRY(eval_list(c, &e->l1, &pos));
    ELM_TRY(eval_list(c, &e->l2, &kw));
    jargs args = {pos, e->l1.n, &e->l2, kw, e->l2.n};
    return elmi_j_filter(c, e, e->s, e->n, v, &args, out);
}

static elm_status eval_test(jctx *c, const jnode *e, jval *out) {
    jval v, *pos, *kw;
    ELM_TRY(elmi_j_eval(c, e->a, &v));
    ELM_TRY(eval_list(c, &e->l1, &pos));
    ELM_TRY(eval_list(c, &e->l2, &kw));
    jargs args = {pos, e->l1.n, &e->l2, kw, e->l2.n};
    bool r;
    ELM_TRY(elmi_j_test(c, e, e->s, e->n, v, &args, &r));
    *out = elmi_j_bool(e->op ? !r : r);
    return ELM_OK;
}

static elm_status eval_literal_list(jctx *c, const jnode *e, jval *out) {
    ELM_TRY(elmi_j_new_list(c, e->l1.n, out));
    out->u.l->tuple = e->kind == JN_TUPLE;
    for (size_t i = 0; i < e->l1.n; i++) {
        jval v;
        ELM_TRY(elmi_j_eval(c, e->l1.v[i], &v));
        ELM_TRY(elmi_j_list_push(c, out->u.l, v));
    }
    return ELM_OK;
}

static elm_status eval_literal_dict(jctx *c, const jnode *e, jval *out) {
    ELM_TRY(elmi_j_new_dict(c, e->l1.n, JV_DICT, out));
    for (size_t i = 0; i < e->l1.n; i++) {
        jval k, v;
        ELM_TRY(elmi_j_eval(c, e->l1.v[i], &k));
        ELM_TRY(elmi_j_eval(c, e->l2.v[i], &v));
        ELM_TRY(elmi_j_dict_set(c, out->u.d, k, v));
    }
    return ELM_OK;
}

static elm_status eval_unary(jctx *c, const jnode *e, jval *out) {
    jval a;
    ELM_TRY(elmi_j_eval(c, e->a, &a));
    if (e->kind == JN_NOT) {
        *out = elmi_j_bool(!elmi_j_truthy(a));
        return ELM_OK;
    }
    if (a.t == JV_UNDEF) return elmi_j_undefined_error(c, e->line, a);
    if (!is_num(a)) return elmi_j_fail(c, e->line, "bad operand type for unary %c: '%s'", e->kind == JN_NEG ? '-' : '+', elmi_j_type_name(a));
    if (e->kind == JN_POS) *out = a.t == JV_BOOL ? elmi_j_int(a.u.b) : a;
    else if (a.t == JV_FLOAT) *out = elmi_j_float(-a.u.f);
    else if (ival(a) == INT64_MIN) return elmi_j_fail(c, e->line, "integer overflow");
    else *out = elmi_j_int(-ival(a));
    return ELM_OK;
}

static elm_status eval_node(jctx *c, const jnode *e, jval *out) {
    jval a = {0}, b = {0}, x = {0}, y = {0};
    switch (e->kind) {
    case JN_LIT: *out = e->lit; return ELM_OK;
    case JN_NAME: lookup(c, e->s, e->n, out); return ELM_OK;
    case JN_LIST: case JN_TUPLE: return eval_literal_list(c, e, out);
    case JN_DICT: return eval_literal_dict(c, e, out);
    case JN_ATTR:
        ELM_TRY(elmi_j_eval(c, e->a, &a));
        return get_attr(c, e, a, out);
    case JN_ITEM:
        ELM_TRY(elmi_j_eval(c, e->a, &a));
        ELM_TRY(elmi_j_eval(c, e->b, &b));
        return get_item(c, e, a, b, out);
    case JN_SLICE:
        ELM_TRY(elmi_j_eval(c, e->a, &a));
        b = x = y = elmi_j_none();
        if (e->b) ELM_TRY(elmi_j_eval(c, e->b, &b));
        if (e->c) ELM_TRY(elmi_j_eval(c, e->c, &x));
        if (e->d) ELM_TRY(elmi_j_eval(c, e->d, &y));
        return do_slice(c, e, a, b, x, y, out);
    case JN_CALL: return eval_call(c, e, out);
    case JN_FILTER: return eval_filter(c, e, out);
    case JN_TEST: return eval_test(c, e, out);
    case JN_BIN:
        ELM_TRY(elmi_j_eval(c, e->a, &a));
        ELM_TRY(elmi_j_eval(c, e->b, &b));
        return binop(c, e, a, b, out);
    case JN_AND: case JN_OR:
        ELM_TRY(elmi_j_eval(c, e->a, &a));
        if (elmi_j_truthy(a) == (e->kind == JN_OR)) {
            *out = a;
            return ELM_OK;
        }
        return elmi_j_eval(c, e->b, out);
    case JN_NOT: case JN_NEG: case JN_POS: return eval_unary(c, e, out);
    case JN_COND:
        ELM_TRY(elmi_j_eval(c, e->b, &a));
        if (elmi_j_truthy(a)) return elmi_j_eval(c, e->a, out);
        if (e->c) return elmi_j_eval(c, e->c, out);
        *out = elmi_j_undef(NULL, 0);
        return ELM_OK;
    default: return elmi_j_fail(c, e->line, "not an expression");
    }
}

elm_status elmi_j_eval(jctx *c, const jnode *e, jval *out) {
    if (++c->depth > JINJA_MAX_EVAL_DEPTH)
        return elmi_j_fail(c, e->line, "the template recurses deeper than %d levels", JINJA_MAX_EVAL_DEPTH);
    ELM_TRY(elmi_j_charge(c, 1));
    ELM_TRY(eval_node(c, e, out));
    c->depth--;
    return ELM_OK;
}
