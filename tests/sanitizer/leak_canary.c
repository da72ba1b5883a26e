/* leak_canary: a program of sanitizer builds that test_lsan runs as a child.
 *
 *   leak_canary leak  DEVICE MODEL   loads MODEL, decodes on DEVICE and never
 *                                    frees the model: edgelm's own leak, which
 *                                    LeakSanitizer must report.
 *   leak_canary clean DEVICE MODEL   the same, freeing everything: only the
 *                                    driver's suppressed leaks remain, so it
 *                                    must exit 0.
 *   leak_canary driver LIB           dlopen()s LIB (the leaky stand-in
 *                                    driver), calls leaky_driver_init() and
 *                                    dlclose()s it, as the Vulkan loader does. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "edgelm.h"

static int load_driver(const char *lib) {
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "leak_canary: %s\n", dlerror());
        return 3;
    }
    int (*init)(void) = (int (*)(void))dlsym(h, "leaky_driver_init");
    int rc = init ? init() : 3;
    dlclose(h);
    return rc;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "driver")) return load_driver(argv[2]);
    if (argc != 4 || (strcmp(argv[1], "leak") && strcmp(argv[1], "clean"))) {
        fprintf(stderr, "usage: leak_canary leak|clean DEVICE MODEL | driver LIB\n");
        return 2;
    }
    char err[512] = "";
    elm_model_params mp;
    elm_model_default_params(&mp);
    mp.device = argv[2];
    elm_model *model = NULL;
    if (elm_model_load(argv[3], &mp, &model, err, sizeof err) != ELM_OK) {
        fprintf(stderr, "leak_canary: %s\n", err);
        return 3;
    }
    elm_context_params cp;
    elm_context_default_params(&cp);
    cp.n_ctx = 64;
    elm_context *ctx = NULL;
    if (elm_context_new(model, &cp, &ctx, err, sizeof err) != ELM_OK) {
        fprintf(stderr, "leak_canary: %s\n", err);
        elm_model_free(model);
        return 3;
    }
    const elm_token toks[] = {1, 5, 6, 7};
    elm_status st = elm_decode(ctx, toks, 4);
    printf("device %s decode %s\n", elm_context_device(ctx), elm_strerror(st));
    elm_context_free(ctx);
    if (!strcmp(argv[1], "clean")) elm_model_free(model);
    return st == ELM_OK ? 0 : 4;
}
