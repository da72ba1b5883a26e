/* cmd_info.c: `edgelm info`: what a GGUF model file holds. */
#include <stdio.h>
#include <string.h>

#include "tools/cli.h"

static const char ABOUT[] =
    "Prints the architecture, hyperparameters, tokenizer and tensor table of a\n"
    "GGUF file. A file without tensors (a vocabulary-only file) is described by\n"
    "its metadata and tokenizer. A model that cannot be loaded is an error.";

static void human_bytes(uint64_t b, char *out, size_t cap) {
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int u = 0;
    while (v >= 1024 && u < 4) v /= 1024, u++;
    if (u == 0)
        snprintf(out, cap, "%llu B", (unsigned long long)b);
    else
        snprintf(out, cap, "%.2f %s", v, units[u]);
}

static const char *yes_no(bool b) { return b ? "yes" : "no"; }

static void print_tokenizer(const elm_model_info *in) {
    printf("%-14s %s (pre: %s), %u tokens, bos %d, eos %d, add_bos %s\n", "tokenizer",
           in->tokenizer_model, *in->tokenizer_pre ? in->tokenizer_pre : "default", in->n_vocab,
           in->bos, in->eos, yes_no(in->add_bos));
}

static void print_hparams(const elm_model_info *in) {
    printf("%-14s %u\n", "context", in->n_ctx_train);
    printf("%-14s %u\n", "embedding", in->n_embd);
    printf("%-14s %u\n", "layers", in->n_layer);
    printf("%-14s %u (KV heads %u, head size %u)\n", "heads", in->n_head, in->n_head_kv,
           in->head_dim);
    printf("%-14s %u\n", "feed-forward", in->n_ff);
    printf("%-14s theta %g, %u rotated dims, %s pairs, scaling %s (freq scale %g), "
           "rope_freqs %s\n",
           "rope", in->rope_theta, in->n_rot, in->rope_neox ? "NeoX (half-split)" : "adjacent",
           in->rope_scaling, in->rope_freq_scale, yes_no(in->has_rope_freqs));
    printf("%-14s %g\n", "rms eps", in->rms_eps);
    printf("%-14s %s\n", "output", in->tied_embeddings ? "tied to token_embd" : "output.weight");
    if (in->features && *in->features) printf("%-14s %s\n", "features", in->features);
}

static void print_shape(const elm_tensor_info *t, char *out, size_t cap) {
    size_t n = 0;
    out[0] = 0;
    for (uint32_t d = 0; d < t->n_dims && d < 4 && n < cap; d++)
        n += (size_t)snprintf(out + n, cap - n, "%s%lld", d ? " x " : "", (long long)t->ne[d]);
}

static int print_tensors(const elm_model *m, const char *path) {
    uint32_t n = elm_model_n_tensors(m);
    if (n == 0) {
        printf("\ntensors: none (vocabulary only)\n");
        return CLI_OK;
    }
    printf("\n%-40s %-6s %-22s %s\n", "tensor", "type", "shape", "size");
    for (uint32_t i = 0; i < n; i++) {
        elm_tensor_info t = ELM_INIT(elm_tensor_info);
        elm_status st = elm_model_tensor(m, i, &t);
        if (st != ELM_OK) return cli_lib_error(path, st, NULL);
        char shape[96], size[32];
        print_shape(&t, shape, sizeof shape);
        human_bytes(t.nbytes, size, sizeof size);
        printf("%-40s %-6s %-22s %s\n", t.name, t.type, shape, size);
    }
    return CLI_OK;
}

static int describe(const elm_model *m, const char *path) {
    elm_model_info in = ELM_INIT(elm_model_info);
    elm_status st = elm_model_get_info(m, &in);
    if (st != ELM_OK) return cli_lib_error(path, st, NULL);
    char fsize[32], wsize[32];
    human_bytes(in.file_size, fsize, sizeof fsize);
    human_bytes(in.weights_bytes, wsize, sizeof wsize);
    printf("%-14s %s (%s, GGUF v%u)\n", "file", in.path, fsize, in.gguf_version);
    printf("%-14s %s\n", "name", *in.name ? in.name : "(none)");
    printf("%-14s %s%s\n", "architecture", in.arch, in.vocab_only ? " (vocabulary only)" : "");
    if (!in.vocab_only) print_hparams(&in);
    printf("%-14s %s in %u tensors\n", "weights", wsize, in.n_tensors);
    print_tokenizer(&in);
    int rc = print_tensors(m, path);
    if (rc == CLI_OK && (fflush(stdout) != 0 || ferror(stdout)))
        rc = cli_error("stdout", "write error");
    return rc;
}

/*
 * A full load first. A vocabulary-only file (no tensors, and often an
 * architecture no model uses) fails that, so retry with vocab_only and
 * accept the result only when the file really has no tensors; any other
 * failure is reported as the full load saw it.
 */
static elm_model *load_for_info(const char *path, const char *trusted_key) {
    elm_model_params mp;
    elm_model_default_params(&mp);
    mp.trusted_key = trusted_key;
    char err[1024] = "";
    elm_model *m = NULL;
    elm_status st = elm_model_load(path, &mp, &m, err, sizeof err);
    if (st == ELM_OK) return m;
    if (st == ELM_ERR_SIGNATURE) {
        cli_lib_error(path, st, err);
        return NULL;
    }
    elm_model_free(m);
    m = NULL;
    mp.vocab_only = true;
    char err2[1024] = "";
    elm_model_info in = ELM_INIT(elm_model_info);
    if (elm_model_load(path, &mp, &m, err2, sizeof err2) == ELM_OK &&
        elm_model_get_info(m, &in) == ELM_OK && in.n_tensors == 0)
        return m;
    elm_model_free(m);
    cli_lib_error(path, st, err);
    return NULL;
}

int cmd_info(int argc, char **argv) {
    const char *model = NULL, *trusted_key = NULL;
    const cli_opt opts[] = {
        CLI_REQ("-m", "--model", CLI_STR, &model, "FILE", "GGUF model or vocabulary file"),
        CLI_OPT(NULL, "--trusted-key", CLI_STR, &trusted_key, "FILE",
                "refuse the model unless MODEL.sig is a valid signature by this public key"),
        {0},
    };
    const cli_spec spec = {"info", "-m FILE [--trusted-key PUBLIC_KEY_FILE]", ABOUT, opts};
    int rc;
    if (!cli_parse(&spec, argc, argv, &rc)) return rc;
    elm_model *m = load_for_info(model, trusted_key);
    if (!m) return CLI_ERROR;
    rc = describe(m, model);
    elm_model_free(m);
    return rc;
}
