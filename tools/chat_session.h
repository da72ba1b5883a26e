/*
 * chat_session.h: a conversation with a model through its chat template,
 * for `edgelm chat` and `edgelm run --chat`.
 *
 * The context holds the tokens of the conversation so far. Each turn renders
 * the whole conversation (system message, every earlier user and assistant
 * message, the new user message, and the opening of the assistant's reply),
 * tokenizes it, keeps the longest prefix the context already holds
 * (elm_context_truncate to the first token that differs: the rendering of a
 * reply need not split into the tokens that were generated) and evaluates
 * only the rest. The reply stops at the template's end-of-turn tokens
 * (elm_chat_end_of_turn, which include every end-of-generation token); their
 * text is not written. The assistant message kept in the history is the
 * generated text.
 */
#ifndef ELM_CHAT_SESSION_H
#define ELM_CHAT_SESSION_H

#include "tools/cli.h"

typedef struct chat_opts {
    const char *label;         /* the model file, for messages */
    const char *template_path; /* a Jinja file to use instead of the model's template, or NULL */
    const char *system;        /* the system message, or NULL for none */
    int32_t n_predict;         /* tokens per reply at most; < 0: until the end of the turn */
    bool ignore_eot;           /* keep generating past end-of-turn tokens (and print them) */
    bool verbose;              /* a line per turn on stderr: tokens evaluated, context used */
    elm_sampler_params sampler;
} chat_opts;

typedef struct chat_session chat_session;

/* Starts a conversation on a loaded model and its (empty) context, both
 * borrowed. Checks the template: without one, or with one that does not
 * render, prints why and returns CLI_ERROR; otherwise CLI_OK and *out. */
int chat_session_new(elm_model *m, elm_context *ctx, const chat_opts *o, chat_session **out);
void chat_session_free(chat_session *s);

typedef enum chat_result {
    CHAT_OK,          /* the reply was written (it may have been cut short: see stderr) */
    CHAT_TURN_FAILED, /* this message was dropped (reported); the conversation goes on */
    CHAT_FATAL,       /* reported; the conversation cannot go on */
} chat_result;

/* One turn: adds the user message `text` and writes the reply to stdout as
 * it is generated, then a newline (nothing more when the turn fails).
 * `stats` (may be NULL) receives the figures of the reply's generation. */
chat_result chat_session_turn(chat_session *s, const char *text, elm_stats *stats);

/* Ends the reply being generated after its current token (for SIGINT; safe
 * to call from a signal handler). */
void chat_session_interrupt(void);

#endif
