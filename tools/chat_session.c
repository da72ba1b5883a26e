/* chat_session.c: a conversation kept in one context (tools/chat_session.h). */
#include "tools/chat_session.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct chat_session {
    elm_model *model;
    elm_context *ctx;
    chat_opts o;
    char *tmpl; /* the --template text; NULL: the model's template */
    elm_chat_message *msgs; /* contents owned, roles static */
    size_t n_msgs, cap_msgs;
    elm_token *eot;
    size_t n_eot;
    elm_token bos;
    unsigned turn;
    /* the reply being generated */
    char *reply;
    size_t reply_len, reply_cap;
    uint64_t evaluated_before; /* elm_context_n_evaluated before the turn */
    uint64_t prompt_evaluated; /* what the turn's prompt cost, once known */
    bool prompt_done, write_failed, out_of_memory;
};

static volatile sig_atomic_t interrupted;

void chat_session_interrupt(void) { interrupted = 1; }

/* ------------------------------------------------------------- messages */

static bool push_message(chat_session *s, const char *role, const char *content, size_t len) {
    if (s->n_msgs == s->cap_msgs) {
        size_t cap = s->cap_msgs ? s->cap_msgs * 2 : 8;
        elm_chat_message *grown = realloc(s->msgs, cap * sizeof *grown);
        if (!grown) return false;
        s->msgs = grown;
        s->cap_msgs = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy) return false;
    memcpy(copy, content, len);
    copy[len] = 0;
    s->msgs[s->n_msgs++] = (elm_chat_message){role, copy};
    return true;
}

static void pop_message(chat_session *s) {
    free((char *)s->msgs[--s->n_msgs].content);
}

/* --------------------------------------------------------------- set up */

/* The template's end-of-turn ids, or why there are none. */
static int load_end_of_turn(chat_session *s) {
    char err[1024] = "";
    size_t n = 0;
    elm_status st = elm_chat_end_of_turn(s->model, s->tmpl, NULL, 0, &n, err, sizeof err);
    if (st == ELM_ERR_BUFFER_TOO_SMALL || (st == ELM_OK && n == 0)) {
        s->eot = malloc((n ? n : 1) * sizeof *s->eot);
        if (!s->eot) return cli_error(s->o.label, "out of memory");
        st = elm_chat_end_of_turn(s->model, s->tmpl, s->eot, n, &s->n_eot, err, sizeof err);
    }
    if (st == ELM_ERR_UNSUPPORTED)
        return cli_error(s->o.label, "%s: give one with --template FILE (a Jinja chat template)",
                         err[0] ? err : "the model has no chat template");
    if (st != ELM_OK)
        return cli_lib_error(s->o.template_path ? s->o.template_path : s->o.label, st, err);
    return CLI_OK;
}

int chat_session_new(elm_model *m, elm_context *ctx, const chat_opts *o, chat_session **out) {
    *out = NULL;
    chat_session *s = calloc(1, sizeof *s);
    if (!s) return cli_error(o->label, "out of memory");
    s->model = m;
    s->ctx = ctx;
    s->o = *o;
    elm_model_info info = ELM_INIT(elm_model_info);
    s->bos = elm_model_get_info(m, &info) == ELM_OK ? info.bos : -1;
    int rc = CLI_OK;
    if (o->template_path && !(s->tmpl = cli_read_file(o->template_path)))
        rc = cli_error(o->template_path, "cannot read the template (no such file, or not a text file)");
    if (rc == CLI_OK) rc = load_end_of_turn(s);
    if (rc == CLI_OK && o->system && !push_message(s, "system", o->system, strlen(o->system)))
        rc = cli_error(o->label, "out of memory");
    if (rc != CLI_OK) {
        chat_session_free(s);
        return rc;
    }
    *out = s;
    return CLI_OK;
}

void chat_session_free(chat_session *s) {
    if (!s) return;
    while (s->n_msgs) pop_message(s);
    free(s->msgs);
    free(s->eot);
    free(s->tmpl);
    free(s->reply);
    free(s);
}

/* ------------------------------------------------------------ rendering */

/* The rendered conversation's ids. A template that writes bos_token itself
 * on a vocabulary that adds BOS would give two: one is dropped. */
static elm_status conversation_tokens(chat_session *s, elm_token **ids, size_t *n, char *err,
                                      size_t err_size) {
    char *text = NULL;
    size_t len = 0;
    elm_status st = cli_render_chat(s->model, s->tmpl, s->msgs, s->n_msgs, NULL, &text, &len, err,
                                    err_size);
    if (st != ELM_OK) return st;
    st = cli_tokenize(s->model, text, len, true, ids, n);
    free(text);
    if (st != ELM_OK) return st;
    cli_drop_double_bos(*ids, n, s->bos);
    return ELM_OK;
}

/* Tokens at the start of `a` that `b` starts with too. */
static size_t common_prefix(const elm_token *a, size_t na, const elm_token *b, size_t nb) {
    size_t i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    return i;
}

/* ----------------------------------------------------------- generation */

static bool is_end_of_turn(const chat_session *s, elm_token t) {
    for (size_t i = 0; i < s->n_eot; i++)
        if (s->eot[i] == t) return true;
    return false;
}

static bool append_reply(chat_session *s, const char *text, size_t n) {
    if (s->reply_len + n + 1 > s->reply_cap) {
        size_t cap = (s->reply_len + n + 1) * 2;
        char *grown = realloc(s->reply, cap);
        if (!grown) return false;
        s->reply = grown;
        s->reply_cap = cap;
    }
    memcpy(s->reply + s->reply_len, text, n);
    s->reply_len += n;
    s->reply[s->reply_len] = 0;
    return true;
}

static bool on_token(const elm_token_info *info, void *user_data) {
    chat_session *s = user_data;
    if (!s->prompt_done) { /* nothing generated has been evaluated yet */
        s->prompt_done = true;
        s->prompt_evaluated = elm_context_n_evaluated(s->ctx) - s->evaluated_before;
    }
    if (!s->o.ignore_eot && is_end_of_turn(s, info->token)) return false;
    if (!append_reply(s, info->text, info->text_len)) {
        s->out_of_memory = true;
        return false;
    }
    if (!cli_write(info->text, info->text_len)) {
        s->write_failed = true;
        return false;
    }
    return !interrupted;
}

/* Evaluates conversation ids[common..n) after the context's first `common`
 * tokens and generates the reply. */
static elm_status generate(chat_session *s, const elm_token *ids, size_t n, size_t common,
                           elm_stats *stats) {
    elm_status st = elm_context_truncate(s->ctx, (uint32_t)common);
    if (st != ELM_OK) return st;
    elm_generate_params gp;
    elm_generate_default_params(&gp);
    gp.n_predict = s->o.n_predict;
    gp.ignore_eos = s->o.ignore_eot;
    gp.sampler = &s->o.sampler;
    gp.callback = on_token;
    gp.user_data = s;
    gp.prompt_tokens = ids + common;
    gp.n_prompt_tokens = n - common;
    return elm_generate(s->ctx, NULL, 0, &gp, stats);
}

static void report_turn(chat_session *s, const elm_stats *st) {
    uint32_t n_ctx = elm_context_n_ctx(s->ctx);
    if (st->stop == ELM_STOP_CONTEXT_FULL)
        fprintf(stderr,
                "edgelm: %s: the context is full (%u tokens): the reply was cut short; "
                "the conversation cannot go on in this context (use a larger --ctx-size)\n",
                s->o.label, n_ctx);
    if (interrupted) fprintf(stderr, "edgelm: interrupted: the reply was cut short\n");
    if (s->o.verbose)
        fprintf(stderr, "edgelm: turn %u: evaluated %llu new tokens (context %u)\n", s->turn,
                (unsigned long long)s->prompt_evaluated, elm_context_n_past(s->ctx));
}

/* The checks before generating: a conversation that does not render, or
 * that the context cannot hold, drops this message. */
static chat_result prepare(chat_session *s, elm_token **ids, size_t *n) {
    char err[1024] = "";
    elm_status st = conversation_tokens(s, ids, n, err, sizeof err);
    if (st == ELM_ERR_NO_MEMORY) {
        cli_error(s->o.label, "out of memory");
        return CHAT_FATAL;
    }
    if (st != ELM_OK) {
        const char *msg = err[0] ? err : elm_strerror(st);
        cli_error(s->o.label, "turn %u: %s: the message is dropped", s->turn, msg);
        return CHAT_TURN_FAILED;
    }
    uint32_t n_ctx = elm_context_n_ctx(s->ctx);
    if (*n == 0) {
        cli_error(s->o.label, "turn %u: the conversation renders to no tokens: the message is dropped", s->turn);
        return CHAT_TURN_FAILED;
    }
    if (*n > n_ctx) {
        cli_error(s->o.label,
                  "turn %u: the conversation is %zu tokens long but the context holds %u: the "
                  "message is dropped (use a larger --ctx-size, or start a new conversation)",
                  s->turn, *n, n_ctx);
        return CHAT_TURN_FAILED;
    }
    return CHAT_OK;
}

chat_result chat_session_turn(chat_session *s, const char *text, elm_stats *stats) {
    s->turn++;
    interrupted = 0;
    s->reply_len = 0;
    s->prompt_done = s->write_failed = s->out_of_memory = false;
    if (!push_message(s, "user", text, strlen(text)) || !append_reply(s, "", 0)) {
        cli_error(s->o.label, "out of memory");
        return CHAT_FATAL;
    }
    elm_token *ids = NULL;
    size_t n = 0;
    chat_result r = prepare(s, &ids, &n);
    if (r != CHAT_OK) {
        free(ids);
        pop_message(s);
        return r;
    }
    size_t common = common_prefix(ids, n, elm_context_tokens(s->ctx), elm_context_n_past(s->ctx));
    if (common == n) common--; /* the last token is evaluated again for its logits */
    s->evaluated_before = elm_context_n_evaluated(s->ctx);
    elm_stats st = ELM_INIT(elm_stats);
    elm_status rc = generate(s, ids, n, common, &st);
    free(ids);
    if (!s->prompt_done) s->prompt_evaluated = elm_context_n_evaluated(s->ctx) - s->evaluated_before;
    if (stats) *stats = st;
    if (s->write_failed || s->out_of_memory || rc != ELM_OK) {
        pop_message(s);
        if (s->write_failed) cli_error("stdout", "write error");
        else if (s->out_of_memory) cli_error(s->o.label, "out of memory");
        else cli_lib_error(s->o.label, rc, elm_context_last_error(s->ctx));
        return CHAT_FATAL;
    }
    if (!push_message(s, "assistant", s->reply, s->reply_len)) {
        cli_error(s->o.label, "out of memory");
        return CHAT_FATAL;
    }
    if (!cli_write("\n", 1)) { /* first, so that on a terminal the reports follow the reply */
        cli_error("stdout", "write error");
        return CHAT_FATAL;
    }
    report_turn(s, &st);
    return CHAT_OK;
}
