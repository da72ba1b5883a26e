/*
 * cli.h: what the edgelm subcommands share: the command table entry, a
 * strict table-driven option parser, and error reporting.
 *
 * Exit status everywhere: 0 success, 1 runtime error (the library's message
 * is printed as "edgelm: FILE: message"), 2 usage error (a usage line is
 * printed). The CLI uses the public API (edgelm.h) only.
 */
#ifndef ELM_CLI_H
#define ELM_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edgelm.h"
#include "edgelm_tools.h"

enum { CLI_OK = 0, CLI_ERROR = 1, CLI_USAGE = 2 };

/* A subcommand: fn gets argv[0] = its name and the arguments after it, and
 * returns the exit status. "edgelm help NAME" calls fn(2, {NAME, "--help"}). */
typedef struct cli_command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} cli_command;

int cmd_run(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_devices(int argc, char **argv);
int cmd_template(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_keygen(int argc, char **argv);
int cmd_sign(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_serve(int argc, char **argv);

typedef enum cli_kind {
    CLI_FLAG,  /* bool */
    CLI_STR,   /* const char * */
    CLI_INT,   /* int32_t */
    CLI_U32,   /* uint32_t */
    CLI_U64,   /* uint64_t */
    CLI_FLOAT, /* float, finite */
} cli_kind;

/* One option. Numbers are checked against [min, max] unless both are 0, in
 * which case only the type's own range applies. Values are "-x V",
 * "--long V" or "--long=V"; a value may start with '-'. */
typedef struct cli_opt {
    const char *shrt; /* "-m", or NULL */
    const char *lng;  /* "--model" */
    cli_kind kind;
    void *dst;
    const char *arg; /* the value's name in help, e.g. "FILE" */
    const char *help;
    double min, max;
    bool required;
} cli_opt;

/* Table rows, with every field named so that tables stay short and
 * -Wextra quiet: an option, a number with a range, a required option. */
#define CLI_OPT(s, l, k, d, a, h) {.shrt = s, .lng = l, .kind = k, .dst = d, .arg = a, .help = h}
#define CLI_NUM(s, l, k, d, a, h, lo, hi)                                                        \
    {.shrt = s, .lng = l, .kind = k, .dst = d, .arg = a, .help = h, .min = lo, .max = hi}
#define CLI_REQ(s, l, k, d, a, h)                                                                \
    {.shrt = s, .lng = l, .kind = k, .dst = d, .arg = a, .help = h, .required = true}

/* The sampling options that run and chat share, as rows of an option
 * table writing into the elm_sampler_params `sp` (a struct, not a pointer). */
#define CLI_SAMPLING_OPTS(sp)                                                                     \
    CLI_NUM(NULL, "--temp", CLI_FLOAT, &(sp).temperature, "T", "temperature (0: greedy)", 0, 1e6), \
    CLI_NUM(NULL, "--top-k", CLI_INT, &(sp).top_k, "K", "keep the K most likely tokens (0: off)",  \
            0, INT32_MAX),                                                                        \
    CLI_NUM(NULL, "--top-p", CLI_FLOAT, &(sp).top_p, "P", "nucleus sampling threshold (1: off)",  \
            0, 1),                                                                                \
    CLI_NUM(NULL, "--min-p", CLI_FLOAT, &(sp).min_p, "P",                                        \
            "drop tokens less likely than P times the best (0: off)", 0, 1),                     \
    CLI_NUM(NULL, "--repeat-penalty", CLI_FLOAT, &(sp).repeat_penalty, "R",                      \
            "penalty on recently seen tokens (1: off)", 1e-6, 1e6),                              \
    CLI_NUM(NULL, "--repeat-last-n", CLI_INT, &(sp).repeat_last_n, "N",                          \
            "tokens the penalty looks back over", 0, 1 << 20),                                   \
    CLI_OPT(NULL, "--seed", CLI_U64, &(sp).seed, "S", "sampling seed")

typedef struct cli_spec {
    const char *name;     /* "run" */
    const char *synopsis; /* "-m FILE -p TEXT [options]" */
    const char *about;    /* a paragraph for --help */
    const cli_opt *opts;  /* ends with an entry whose lng is NULL */
} cli_spec;

/*
 * Parses argv[1..argc) into the option table. Returns true when the command
 * should go on; false when it must return *status: CLI_OK after printing
 * --help, CLI_USAGE after printing what was wrong and the usage line.
 */
bool cli_parse(const cli_spec *spec, int argc, char **argv, int *status);

/* Prints "edgelm: NAME: message" and the usage line to stderr; returns CLI_USAGE. */
int cli_usage_error(const cli_spec *spec, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prints "edgelm: WHAT: message" to stderr; returns CLI_ERROR. */
int cli_error(const char *what, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Reports a library failure on `what` (usually the model file): its message
 * when there is one (without a repeated "WHAT: " prefix), else the status's
 * name. Returns CLI_ERROR. */
int cli_lib_error(const char *what, elm_status st, const char *message);

/* Loads a model on `device` (NULL: the default; "best": the device
 * `edgelm bench` last measured fastest for this model, where it has),
 * reporting failures. Returns NULL after printing the error. */
elm_model *cli_load_model(const char *path, const char *device, bool vocab_only);
/* Same, checking the signature against trusted_key (a public key file;
 * NULL: no check), as elm_model_params.trusted_key. */
elm_model *cli_load_model_trusted(const char *path, const char *device, bool vocab_only,
                                  const char *trusted_key);

/* Creates a context, reporting failures. Returns NULL after printing the error. */
elm_context *cli_new_context(const elm_model *m, const char *path, const elm_context_params *cp);

/* Writes n bytes to stdout and flushes; false on a write error. */
bool cli_write(const void *buf, size_t n);

/* The whole file at `path` into a malloc'd NUL-terminated buffer; NULL when
 * it cannot be read or holds a NUL byte (not a text file). */
char *cli_read_file(const char *path);

/* Tokenizes len bytes of text into a malloc'd array (*out, *n ids; the
 * caller frees it), BOS and special tokens as elm_tokenize's `special`. */
elm_status cli_tokenize(const elm_model *m, const char *text, size_t len, bool special,
                        elm_token **out, size_t *n);

/* The conversation rendered by elm_chat_apply_template (tmpl NULL: the
 * model's template; p NULL: the defaults) into a malloc'd *text of *len
 * bytes, NUL-terminated; the caller frees it. Errors as the library's. */
elm_status cli_render_chat(const elm_model *m, const char *tmpl, const elm_chat_message *msgs,
                           size_t n, const elm_chat_params *p, char **text, size_t *len,
                           char *err, size_t err_size);

/* A template that writes bos_token itself, on a vocabulary that adds BOS,
 * gives two BOS ids in a row: drops the second. */
void cli_drop_double_bos(elm_token *ids, size_t *n, elm_token bos);

#endif
