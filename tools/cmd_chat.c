/* cmd_chat.c: `edgelm chat`: a conversation with a model, through its chat
 * template, on a terminal or one message per line of a pipe. */
#define _POSIX_C_SOURCE 200809L /* getline, sigaction */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/chat_session.h"

static const char ABOUT[] =
    "Chats with a model through its chat template (tokenizer.chat_template), or\n"
    "through the Jinja template in --template FILE, which takes precedence.\n"
    "On a terminal: type a message after the \"> \" prompt; the reply is written\n"
    "as it is generated; Ctrl-C cuts a reply short, Ctrl-D ends the chat.\n"
    "On a pipe: each line of stdin is one user message (empty lines are\n"
    "skipped), and each reply is written to stdout followed by a newline; a\n"
    "message that fails (the conversation outgrows the context, the template\n"
    "raises an error) gives an empty line, a message on stderr, and exit status 1\n"
    "at the end, and the chat goes on without it.\n"
    "The conversation stays in the context: each turn evaluates only the tokens\n"
    "that the context does not hold yet. A reply ends at the template's\n"
    "end-of-turn token or any end-of-generation token (neither is written), after\n"
    "-n tokens, or when the context is full. -v prints per turn on stderr\n"
    "\"edgelm: turn N: evaluated K new tokens (context P)\".";

typedef struct chat_cli {
    const char *model, *device;
    int32_t n_threads;
    uint32_t n_ctx;
    bool exact, pin;
    chat_opts co;
} chat_cli;

static void on_sigint(int sig) {
    (void)sig;
    chat_session_interrupt();
}

/* On a terminal, Ctrl-C ends the reply instead of the program; at the
 * prompt it interrupts the read, which ends the chat. */
static void catch_sigint(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
}

/* The next message without its line ending; false at the end of input. */
static bool read_message(FILE *in, char **line, size_t *cap, size_t *len) {
    ssize_t n = getline(line, cap, in);
    if (n < 0) return false;
    while (n > 0 && ((*line)[n - 1] == '\n' || (*line)[n - 1] == '\r')) (*line)[--n] = 0;
    *len = (size_t)n;
    return true;
}

/* Reads messages until the end of input; returns the exit status. */
static int converse(chat_session *s, bool tty) {
    char *line = NULL;
    size_t cap = 0, len = 0;
    int rc = CLI_OK;
    for (;;) {
        if (tty && !cli_write("> ", 2)) {
            rc = cli_error("stdout", "write error");
            break;
        }
        if (!read_message(stdin, &line, &cap, &len)) {
            if (tty) cli_write("\n", 1);
            if (ferror(stdin) && errno != EINTR) rc = cli_error("stdin", "read error");
            break;
        }
        if (len == 0) continue;
        chat_result r = CHAT_TURN_FAILED;
        if (strlen(line) != len) cli_error("stdin", "a message holds a NUL byte: it is dropped");
        else r = chat_session_turn(s, line, NULL);
        if (r == CHAT_FATAL) {
            rc = CLI_ERROR;
            break;
        }
        if (r == CHAT_TURN_FAILED) { /* an empty reply keeps lines and replies paired */
            rc = CLI_ERROR;
            if (!cli_write("\n", 1)) break;
        }
    }
    free(line);
    return rc;
}

int cmd_chat(int argc, char **argv) {
    chat_cli o = {.co = {.n_predict = -1}};
    elm_sampler_default_params(&o.co.sampler);
    const cli_opt opts[] = {
        CLI_REQ("-m", "--model", CLI_STR, &o.model, "FILE", "GGUF model file"),
        CLI_OPT(NULL, "--system", CLI_STR, &o.co.system, "TEXT", "a system message to start with"),
        CLI_OPT(NULL, "--template", CLI_STR, &o.co.template_path, "FILE",
                "Jinja chat template to use instead of the model's"),
        CLI_NUM("-n", "--n-predict", CLI_INT, &o.co.n_predict, "N",
                "tokens per reply at most (-1: until the end of the turn)", -1, INT32_MAX),
        CLI_SAMPLING_OPTS(o.co.sampler),
        CLI_NUM("-t", "--threads", CLI_INT, &o.n_threads, "N", "CPU threads (0: physical cores)", 0,
                4096),
        CLI_OPT("-c", "--ctx-size", CLI_U32, &o.n_ctx, "N",
                "context length in tokens (0: the library's)"),
        CLI_OPT(NULL, "--ctx", CLI_U32, &o.n_ctx, "N", "the same as --ctx-size"),
        CLI_OPT(NULL, "--exact", CLI_FLAG, &o.exact, NULL, "the exact (reference) arithmetic path"),
        CLI_OPT(NULL, "--pin", CLI_FLAG, &o.pin, NULL, "pin CPU worker threads to cores"),
        CLI_OPT(NULL, "--device", CLI_STR, &o.device, "DEV", "cpu, auto, best, vulkan or vulkan:N"),
        CLI_OPT("-v", "--verbose", CLI_FLAG, &o.co.verbose, NULL,
                "per turn on stderr: tokens evaluated, context used"),
        {0},
    };
    const cli_spec spec = {"chat", "-m FILE [--system TEXT] [--template FILE] [options]", ABOUT, opts};
    int rc;
    if (!cli_parse(&spec, argc, argv, &rc)) return rc;
    o.co.label = o.model;

    elm_model *m = cli_load_model(o.model, o.device, false);
    if (!m) return CLI_ERROR;
    elm_context_params cp;
    elm_context_default_params(&cp);
    cp.n_ctx = o.n_ctx;
    cp.n_threads = o.n_threads;
    cp.pin_threads = o.pin;
    cp.mode = o.exact ? ELM_MODE_EXACT : ELM_MODE_FAST;
    elm_context *ctx = cli_new_context(m, o.model, &cp);
    chat_session *s = NULL;
    rc = ctx ? chat_session_new(m, ctx, &o.co, &s) : CLI_ERROR;
    if (rc == CLI_OK) {
        bool tty = isatty(STDIN_FILENO);
        if (tty) catch_sigint();
        rc = converse(s, tty);
    }
    chat_session_free(s);
    elm_context_free(ctx);
    elm_model_free(m);
    return rc;
}
