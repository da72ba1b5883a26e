/* cli.c: what the subcommands share that uses the library: error reports
 * for its failures, loading a model, creating a context, writing output.
 * Option parsing and usage messages are in cli_parse.c. */
#include "tools/cli.h"

#include "bench/bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- library */

int cli_lib_error(const char *what, elm_status st, const char *message) {
    const char *msg = message && *message ? message : elm_strerror(st);
    size_t n = strlen(what);
    /* The library's messages name the file already; say it once. */
    if (strncmp(msg, what, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ') msg += n + 2;
    return cli_error(what, "%s", msg);
}

/* ---------------------------------------------------------------- library */

/* "best": the device `edgelm bench` measured fastest for this model on this
 * machine. Without stored results the library's own choice stands. */
static const char *resolve_device(const char *path, const char *device, char *buf, size_t cap) {
    if (!device || strcmp(device, "best") != 0) return device;
    char key[512];
    bench_model_key(path, key, sizeof key);
    return bench_best_device(key, buf, cap) == 0 ? buf : device;
}

elm_model *cli_load_model(const char *path, const char *device, bool vocab_only) {
    return cli_load_model_trusted(path, device, vocab_only, NULL);
}

elm_model *cli_load_model_trusted(const char *path, const char *device, bool vocab_only,
                                  const char *trusted_key) {
    elm_model_params mp;
    elm_model_default_params(&mp);
    char best[64];
    device = resolve_device(path, device, best, sizeof best);
    if (device) mp.device = device;
    mp.vocab_only = vocab_only;
    mp.trusted_key = trusted_key;
    char err[1024] = "";
    elm_model *m = NULL;
    elm_status st = elm_model_load(path, &mp, &m, err, sizeof err);
    if (st != ELM_OK) {
        cli_lib_error(path, st, err);
        elm_model_free(m);
        return NULL;
    }
    return m;
}

elm_context *cli_new_context(const elm_model *m, const char *path, const elm_context_params *cp) {
    char err[1024] = "";
    elm_context *ctx = NULL;
    elm_status st = elm_context_new(m, cp, &ctx, err, sizeof err);
    if (st != ELM_OK) {
        cli_lib_error(path, st, err);
        elm_context_free(ctx);
        return NULL;
    }
    if (elm_context_notice(ctx)[0]) fprintf(stderr, "edgelm: %s: %s\n", path, elm_context_notice(ctx));
    return ctx;
}

bool cli_write(const void *buf, size_t n) {
    if (n && fwrite(buf, 1, n, stdout) != n) return false;
    return fflush(stdout) == 0;
}

char *cli_read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        char *grown = realloc(buf, cap * 2 + 1);
        if (!grown) free(buf);
        buf = grown;
        cap *= 2;
    }
    bool bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    if (strlen(buf) != n) { /* a NUL inside: not a text file */
        free(buf);
        return NULL;
    }
    return buf;
}

/* Into a buffer grown to the size the library asks for. */
elm_status cli_tokenize(const elm_model *m, const char *text, size_t len, bool special,
                        elm_token **out, size_t *n) {
    size_t cap = len + 2;
    for (int attempt = 0; attempt < 2; attempt++) {
        elm_token *ids = malloc(cap * sizeof *ids);
        if (!ids) return ELM_ERR_NO_MEMORY;
        elm_status st = elm_tokenize(m, text, len, special, special, ids, cap, n);
        if (st == ELM_OK) {
            *out = ids;
            return ELM_OK;
        }
        free(ids);
        if (st != ELM_ERR_BUFFER_TOO_SMALL) return st;
        cap = *n;
    }
    return ELM_ERR_INTERNAL;
}

elm_status cli_render_chat(const elm_model *m, const char *tmpl, const elm_chat_message *msgs,
                           size_t n, const elm_chat_params *p, char **text, size_t *len,
                           char *err, size_t err_size) {
    size_t cap = 4096;
    *text = NULL;
    /* The second attempt has the size the first reported; a third is a bug. */
    for (int attempt = 0; attempt < 2; attempt++) {
        char *buf = malloc(cap);
        if (!buf) return ELM_ERR_NO_MEMORY;
        elm_status st = elm_chat_apply_template(m, tmpl, msgs, n, p, buf, cap, len, err, err_size);
        if (st == ELM_OK) {
            *text = buf;
            return ELM_OK;
        }
        free(buf);
        if (st != ELM_ERR_BUFFER_TOO_SMALL) return st;
        cap = *len + 1;
    }
    return ELM_ERR_INTERNAL;
}

void cli_drop_double_bos(elm_token *ids, size_t *n, elm_token bos) {
    if (*n >= 2 && bos >= 0 && ids[0] == bos && ids[1] == bos) memmove(ids, ids + 1, --*n * sizeof *ids);
}
