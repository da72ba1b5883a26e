/* cmd_tokenize.c: `edgelm tokenize`: the token ids of stdin. */
#include <stdio.h>
#include <stdlib.h>

#include "tools/cli.h"

static const char ABOUT[] =
    "Reads all of stdin, byte for byte (a trailing newline is part of the text),\n"
    "and prints its token ids separated by spaces on one line. Works on\n"
    "vocabulary-only GGUF files. By default BOS is added where the vocabulary asks\n"
    "for it and the text of special tokens is recognized; --no-special does neither.";

/* All of stdin into a malloc'd buffer; NULL on a read error or no memory. */
static char *read_stdin(size_t *len) {
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, stdin);
        if (n < cap) break;
        char *grown = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
        if (!grown) free(buf);
        buf = grown;
        cap *= 2;
    }
    if (buf && ferror(stdin)) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static bool print_ids(const elm_token *ids, size_t n) {
    for (size_t i = 0; i < n; i++) printf("%s%d", i ? " " : "", ids[i]);
    putchar('\n');
    return fflush(stdout) == 0 && !ferror(stdout);
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL;
    bool no_special = false;
    const cli_opt opts[] = {
        CLI_REQ("-m", "--model", CLI_STR, &model, "FILE", "GGUF model or vocabulary file"),
        CLI_OPT(NULL, "--no-special", CLI_FLAG, &no_special, NULL,
                "no BOS, and special-token text is plain text"),
        {0},
    };
    const cli_spec spec = {"tokenize", "-m FILE [--no-special] < TEXT", ABOUT, opts};
    int rc;
    if (!cli_parse(&spec, argc, argv, &rc)) return rc;

    size_t len = 0;
    char *text = read_stdin(&len);
    if (!text) return cli_error("stdin", "cannot read");
    elm_model *m = cli_load_model(model, NULL, true);
    elm_token *ids = NULL;
    size_t n = 0;
    /* The contract: empty input gives an empty line, even where BOS would be added. */
    elm_status st = m && len > 0 ? cli_tokenize(m, text, len, !no_special, &ids, &n) : ELM_OK;
    if (!m)
        rc = CLI_ERROR;
    else if (st != ELM_OK)
        rc = cli_lib_error(model, st, NULL);
    else
        rc = print_ids(ids, n) ? CLI_OK : cli_error("stdout", "write error");
    free(ids);
    elm_model_free(m);
    free(text);
    return rc;
}
