/* make_model.c: `edgelm make-model`: writes a synthetic model of a real
 * shape as a GGUF file (elm_synth_write does the work). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench/bench.h"
#include "edgelm.h"
#include "edgelm_tools.h"

static const char MM_USAGE[] =
    "usage: edgelm make-model --shape NAME --type Q4_0|Q8_0|Q4_K|F16|... [--output-type T]\n"
    "                         [--vocab-size N] [--layers N] [--seed S] -o FILE\n";

void bench_shape_list(char *buf, size_t cap) {
    size_t o = 0;
    buf[0] = 0;
    for (size_t i = 0; elm_synth_shape_name(i) && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%s", i ? ", " : "", elm_synth_shape_name(i));
}

static void mm_print_usage(FILE *f) {
    char shapes[512];
    bench_shape_list(shapes, sizeof shapes);
    fprintf(f, "%sshapes: %s\n", MM_USAGE, shapes);
}

static int mm_usage(const char *msg, const char *arg) {
    fprintf(stderr, "edgelm make-model: %s%s\n", msg, arg ? arg : "");
    mm_print_usage(stderr);
    return 2;
}

static bool mm_number(const char *s, uint64_t max, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v > max) return false;
    *out = v;
    return true;
}

/* Returns 0, 2 on a usage error, or -1 for --help. */
static int mm_parse(int argc, char **argv, elm_synth_params *p, const char **out) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return -1;
        if (i + 1 >= argc) return mm_usage("missing value or unknown option: ", a);
        const char *v = argv[++i];
        uint64_t n;
        if (!strcmp(a, "--shape"))
            p->shape = v;
        else if (!strcmp(a, "--type"))
            p->type = v;
        else if (!strcmp(a, "--output-type"))
            p->output_type = v;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output"))
            *out = v;
        else if (!strcmp(a, "--vocab-size")) {
            if (!mm_number(v, UINT32_MAX, &n) || n == 0) return mm_usage("bad --vocab-size ", v);
            p->vocab_size = (uint32_t)n;
        } else if (!strcmp(a, "--layers")) {
            if (!mm_number(v, UINT32_MAX, &n) || n == 0) return mm_usage("bad --layers ", v);
            p->n_layer = (uint32_t)n;
        } else if (!strcmp(a, "--seed")) {
            if (!mm_number(v, UINT64_MAX, &n)) return mm_usage("bad --seed ", v);
            p->seed = n;
        } else {
            return mm_usage("unknown option ", a);
        }
    }
    if (!*out) return mm_usage("-o FILE is required", NULL);
    return 0;
}

int make_model_main(int argc, char **argv) {
    elm_synth_params p = elm_synth_default_params();
    const char *out = NULL;
    int rc = mm_parse(argc, argv, &p, &out);
    if (rc < 0) {
        mm_print_usage(stdout);
        return 0;
    }
    if (rc) return rc;
    char err[512] = "";
    elm_status st = elm_synth_write(&p, out, err, sizeof err);
    if (st == ELM_ERR_INVALID_ARG || st == ELM_ERR_UNSUPPORTED) {
        fprintf(stderr, "edgelm make-model: %s\n", err[0] ? err : elm_strerror(st));
        mm_print_usage(stderr);
        return 2;
    }
    if (st != ELM_OK) {
        fprintf(stderr, "edgelm make-model: %s\n", err[0] ? err : elm_strerror(st));
        return 1;
    }
    struct stat sb;
    long long size = stat(out, &sb) == 0 ? (long long)sb.st_size : -1;
    printf("wrote %s: %s, %s weights, %lld bytes\n", out, p.shape, p.type, size);
    return 0;
}
