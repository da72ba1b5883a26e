/* clash.c: a program that defines some of ggml's and llama.cpp's global
 * names and links libedgelm.a beside them (test_symbols builds and runs it).
 * It pulls in edgelm's GGUF reader, graph builder and sampler by using the
 * public API, so any edgelm object defining one of these names would be a
 * duplicate definition at link time. */
#include <stdio.h>
#include <string.h>

#include "edgelm.h"

/* ggml's and llama.cpp's names, with their own meanings here. */
const char *gguf_type_name(int type) { return type == 0 ? "ggml-u8" : "ggml-other"; }
long gguf_find_tensor(const void *ctx, const char *name) { return ctx && name ? 7 : -1; }
void *graph_build(void *ctx) { return ctx; }
void sampler_init(void *s) { (void)s; }
int vocab_n_tokens(const void *v) { return v ? 1 : 0; }
int qtype_size(int t) { return t + 1; }

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    /* ggml's definitions are the ones this program sees. */
    if (strcmp(gguf_type_name(0), "ggml-u8") || gguf_find_tensor("x", "y") != 7 ||
        graph_build((void *)1) != (void *)1 || vocab_n_tokens("v") != 1 || qtype_size(1) != 2)
        return 3;
    sampler_init(NULL);
    /* edgelm still works: it loads, decodes and samples through its own. */
    char err[512] = "";
    elm_model_params mp;
    elm_model_default_params(&mp);
    elm_model *m = NULL;
    if (elm_model_load(argv[1], &mp, &m, err, sizeof err) != ELM_OK) {
        fprintf(stderr, "clash: %s\n", err);
        return 4;
    }
    elm_context_params cp;
    elm_context_default_params(&cp);
    cp.n_ctx = 32;
    elm_context *ctx = NULL;
    if (elm_context_new(m, &cp, &ctx, err, sizeof err) != ELM_OK) {
        fprintf(stderr, "clash: %s\n", err);
        elm_model_free(m);
        return 5;
    }
    elm_generate_params gp;
    elm_generate_default_params(&gp);
    gp.n_predict = 4;
    elm_status st = elm_generate(ctx, "hello", 5, &gp, NULL);
    if (st != ELM_OK) fprintf(stderr, "clash: %s\n", elm_context_last_error(ctx));
    elm_context_free(ctx);
    elm_model_free(m);
    printf("clash: ok\n");
    return st == ELM_OK ? 0 : 6;
}
