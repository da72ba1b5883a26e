/* jinja_impl.h: internals of the chat-template interpreter (engine/jinja*.c).
 *
 * Memory: everything one render makes (tokens, syntax tree, values, strings,
 * output) comes from one arena, freed at once at the end; the arena has a
 * hard size limit, so a render allocates at most JINJA_MAX_MEMORY bytes in
 * total and copies at most that much. Errors: every function that can fail
 * returns elm_status and leaves the message in the context (jctx.err). */
#ifndef ELM_JINJA_IMPL_H
#define ELM_JINJA_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edgelm.h"
#include "common/status.h"
#include "engine/jinja.h"

#define JINJA_MAX_MEMORY ((size_t)64 << 20)   /* arena bytes per render */
#define JINJA_MAX_OUTPUT ((size_t)8 << 20)    /* bytes of rendered text */
#define JINJA_MAX_SOURCE ((size_t)1 << 20)    /* template bytes */
#define JINJA_MAX_PARSE_DEPTH 128             /* nested expressions and blocks */
#define JINJA_MAX_EVAL_DEPTH 400              /* nested evaluation, macro calls included */
#define JINJA_MAX_STEPS 20000000ull           /* work units per render */
#define JINJA_MAX_RANGE 1000000               /* items of one range() */

typedef struct jchunk jchunk;
typedef struct jarena {
    jchunk *head;
    size_t used;  /* bytes obtained from the allocator */
} jarena;

typedef enum jv_type {
    JV_UNDEF = 0, JV_NONE, JV_BOOL, JV_INT, JV_FLOAT, JV_STR, JV_LIST, JV_DICT, JV_NS,
    JV_MACRO, JV_FUNC, JV_LOOP, JV_CALLER,
} jv_type;

typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jnode jnode;
typedef struct jloop jloop;
typedef struct jcaller jcaller;

typedef struct jval {
    jv_type t;
    size_t n;  /* string length; undefined: length of the name in u.s */
    union {
        bool b;
        int64_t i;
        double f;
        const char *s;
        jlist *l;
        jdict *d;      /* JV_DICT and JV_NS */
        const jnode *m;
        int fn;
        jloop *lp;
        const jcaller *cl;
    } u;
} jval;

struct jlist { size_t n, cap; jval *v; bool tuple; /* prints as (a, b) */ };
struct jdict { size_t n, cap; jval *k; jval *v; };

/* Tokens */
typedef enum jtok_type {
    JT_EOF = 0, JT_TEXT, JT_BLOCK_BEGIN, JT_BLOCK_END, JT_VAR_BEGIN, JT_VAR_END,
    JT_NAME, JT_STRING, JT_INT, JT_FLOAT, JT_OP,
} jtok_type;

typedef struct jtok {
    jtok_type t;
    int line;
    const char *s;  /* text, name, decoded string, operator */
    size_t n;
    int64_t i;
    double f;
} jtok;

/* Syntax tree */
typedef enum jnode_kind {
    /* expressions */
    JN_LIT = 1, JN_NAME, JN_LIST, JN_TUPLE, JN_DICT, JN_ATTR, JN_ITEM, JN_SLICE, JN_CALL,
    JN_FILTER, JN_TEST, JN_BIN, JN_AND, JN_OR, JN_NOT, JN_NEG, JN_POS, JN_COND, JN_KW,
    /* statements */
    JN_TEXT, JN_OUT, JN_IF, JN_FOR, JN_SET, JN_SETBLOCK, JN_MACRO, JN_FILTERBLOCK,
    JN_BREAK, JN_CONTINUE, JN_BODY, JN_CALLBLOCK,
} jnode_kind;

typedef struct jnodes { jnode **v; size_t n; } jnodes;

struct jnode {
    jnode_kind kind;
    int line;
    int op;          /* JN_BIN: the operator (JOP_*); JN_TEST: negated; JN_MACRO and
                      * JN_CALLBLOCK: the JREF_* names the body refers to */
    const char *s;   /* name, attribute, filter/test name, text */
    size_t n;
    jval lit;
    jnode *a, *b, *c, *d;
    jnodes l1;       /* arguments, items, body */
    jnodes l2;       /* keyword arguments (JN_KW), dict values, for targets, macro parameters */
};

/* The special names a macro's body may use; Jinja2 gives a macro
 * `varargs`, `kwargs` and `caller` only when its body refers to them. */
enum { JREF_CALLER = 1, JREF_VARARGS = 2, JREF_KWARGS = 4 };

enum {
    JOP_ADD = 1, JOP_SUB, JOP_MUL, JOP_DIV, JOP_FLOORDIV, JOP_MOD, JOP_POW, JOP_CONCAT,
    JOP_EQ, JOP_NE, JOP_LT, JOP_LE, JOP_GT, JOP_GE, JOP_IN, JOP_NOTIN,
};

/* Output/string builder in the arena. */
typedef struct jbuf { char *p; size_t n, cap; } jbuf;

typedef struct jvar { const char *name; size_t n; jval v; } jvar;
typedef struct jframe {
    struct jframe *parent;
    jvar *vars;
    size_t n, cap;
} jframe;

struct jloop {
    const jlist *items;
    size_t i;
};

/* The body of a {% call %} block, as the macro it calls sees `caller`: a
 * macro that runs in the scope of the call block. */
struct jcaller {
    const jnode *block; /* JN_CALLBLOCK: parameters in l2, body in l1 */
    jframe *scope;
};

typedef struct jctx {
    jarena arena;
    const elmi_jinja_input *in;
    char *err;
    size_t err_size;
    elm_status st;
    bool raised;  /* err holds a raise_exception message as is */
    /* lexer/parser */
    jtok *toks;
    size_t ntok, ptok;
    int pdepth;
    int name_refs;  /* JREF_* names met since the innermost macro body began */
    /* evaluator */
    jbuf *out;
    jframe *root;
    jframe *frame;  /* the innermost scope */
    uint64_t steps;
    int depth;
    int loop_ctl;  /* 0, 1 = break, 2 = continue */
    int loop_nest;
    const jval *block_input; /* the body of a filter block */
} jctx;

/* Errors (jinja_value.c) */
elm_status elmi_j_fail(jctx *c, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
elm_status elmi_j_charge(jctx *c, uint64_t units);

/* Arena and builders (jinja_value.c) */
void *elmi_j_alloc(jctx *c, size_t size);
char *elmi_j_strndup(jctx *c, const char *s, size_t n);
elm_status elmi_j_buf_put(jctx *c, jbuf *b, const char *s, size_t n);
elm_status elmi_j_buf_putc(jctx *c, jbuf *b, char ch);
elm_status elmi_j_buf_printf(jctx *c, jbuf *b, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void elmi_j_arena_free(jarena *a);

/* Values (jinja_value.c) */
jval elmi_j_str(const char *s, size_t n);
jval elmi_j_cstr(const char *s);
jval elmi_j_int(int64_t i);
jval elmi_j_float(double f);
jval elmi_j_bool(bool b);
jval elmi_j_none(void);
jval elmi_j_undef(const char *name, size_t n);
elm_status elmi_j_new_list(jctx *c, size_t cap, jval *out);
elm_status elmi_j_new_dict(jctx *c, size_t cap, jv_type t, jval *out);
elm_status elmi_j_list_push(jctx *c, jlist *l, jval v);
elm_status elmi_j_dict_set(jctx *c, jdict *d, jval k, jval v);
const jval *elmi_j_dict_get(jctx *c, const jdict *d, jval k);
const jval *elmi_j_dict_gets(const jdict *d, const char *key, size_t n);
bool elmi_j_truthy(jval v);
bool elmi_j_equal(jval a, jval b);
bool elmi_j_is_str(jval v, const char *s);
const char *elmi_j_type_name(jval v);
elm_status elmi_j_to_str(jctx *c, jval v, jval *out);        /* Python str() */
elm_status elmi_j_write_str(jctx *c, jbuf *b, jval v, bool repr);
elm_status elmi_j_write_json(jctx *c, jbuf *b, jval v, int indent, const char *item_sep,
                             const char *key_sep, bool sort_keys, int level);
elm_status elmi_j_iterate(jctx *c, int line, jval v, jval *list_out); /* a JV_LIST to walk */
size_t elmi_j_utf8_len(const char *s, size_t n);
int elmi_j_compare(jctx *c, int line, jval a, jval b, int *out);

/* Lexer and parser */
elm_status elmi_j_lex(jctx *c, const char *src, size_t len);
elm_status elmi_j_parse(jctx *c, jnode **out);
elm_status elmi_j_parse_expr(jctx *c, jnode **out);
elm_status elmi_j_parse_expr_noif(jctx *c, jnode **out);
elm_status elmi_j_parse_filter_chain(jctx *c, jnode **out);
bool elmi_j_filter_known(const char *name, size_t n);
bool elmi_j_test_known(const char *name, size_t n);

/* Evaluation (jinja_eval.c, jinja_exec.c) */
elm_status elmi_j_frame_set(jctx *c, jframe *f, const char *name, size_t n, jval v);
elm_status elmi_j_undefined_error(jctx *c, int line, jval v);
elm_status elmi_j_eval(jctx *c, const jnode *e, jval *out);
elm_status elmi_j_exec_body(jctx *c, const jnodes *body);
elm_status elmi_j_eval_args(jctx *c, const jnode *call, jval **pos, jval **kw);
elm_status elmi_j_call_value(jctx *c, const jnode *at, jval fn, const jval *args, size_t nargs,
                             const jnode *kwnodes, const jval *kwargs, size_t nkw, jval *out);

/* Builtins (jinja_builtins.c, jinja_methods.c) */
typedef struct jargs {
    const jval *pos;
    size_t npos;
    const jnodes *kwn;  /* JN_KW nodes naming the keyword arguments, or NULL */
    const jval *kw;
    size_t nkw;
} jargs;
elm_status elmi_j_filter(jctx *c, const jnode *at, const char *name, size_t n, jval v,
                         const jargs *a, jval *out);
elm_status elmi_j_test(jctx *c, const jnode *at, const char *name, size_t n, jval v,
                       const jargs *a, bool *out);
elm_status elmi_j_method(jctx *c, const jnode *at, jval obj, const char *name, size_t n,
                         const jargs *a, jval *out, bool *found);
elm_status elmi_j_global(jctx *c, const jnode *at, int fn, const jargs *a, jval *out);
int elmi_j_global_id(const char *name, size_t n);  /* -1 when none */
const jval *elmi_j_arg(const jargs *a, size_t pos, const char *name);
elm_status elmi_j_case(jctx *c, jval v, int mode, jval *out); /* 0 lower, 1 upper, 2 capitalize, 3 str.title, 4 |title */
/* Python's printf-style formatting, fmt % args (jinja_format.c). */
elm_status elmi_j_percent_format(jctx *c, int line, jval fmt, jval args, jval *out);
elm_status elmi_j_replace(jctx *c, jval s, jval old, jval new_, int64_t count, jval *out);

#endif
