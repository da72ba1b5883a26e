/*
 * Clean symbols (the ABI rule in edgelm.h):
 *  - libedgelm.so exports only elm_* (no elmi_ internals either);
 *  - libedgelm.a defines no global symbol outside elm_ and elmi_;
 *  - a program defining ggml's and llama.cpp's names (gguf_type_name,
 *    gguf_find_tensor, graph_build, sampler_init, ...) links against
 *    libedgelm.a and runs (tests/symbols/clash.c).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/paths.h"
#include "support/tiny_model.h"

static const char *build_dir(void) {
    const char *b = getenv("ELM_BUILD_DIR");
    cr_assert(b, "ELM_BUILD_DIR is not set (run through ctest)");
    return b;
}

/* Runs `sh -c cmd`; returns its stdout (malloc'd) and exit status. */
static char *sh(const char *cmd, int *rc) {
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    char *out = NULL, *err = NULL;
    *rc = test_run(argv, NULL, 0, &out, &err);
    if (*rc != 0) cr_log_info("$ %s\n%s", cmd, err ? err : "");
    free(err);
    return out;
}

/* Every line of `names` must start with one of the prefixes. */
static void expect_prefixed(const char *what, char *names, const char *const *prefixes) {
    size_t bad = 0, total = 0;
    for (char *line = strtok(names, "\n"); line; line = strtok(NULL, "\n")) {
        total++;
        bool ok = false;
        for (const char *const *p = prefixes; *p; p++)
            if (!strncmp(line, *p, strlen(*p))) ok = true;
        if (!ok && bad++ < 20) cr_log_error("%s: global symbol '%s' lacks the prefix", what, line);
    }
    cr_expect_eq(bad, 0, "%s: %zu of %zu global symbols lack the prefix", what, bad, total);
    cr_expect_gt(total, 0, "%s: no global symbols found", what);
}

Test(symbols, shared_library_exports_only_the_api) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "nm -D --defined-only '%s/libedgelm.so' | awk '{print $3}'",
             build_dir());
    int rc;
    char *out = sh(cmd, &rc);
    cr_assert_eq(rc, 0);
    const char *const api[] = {"elm_", NULL};
    expect_prefixed("libedgelm.so", out, api);
    free(out);
}

/* Every function the public headers declare (ELM_API in edgelm.h and
 * edgelm_ops.h) is exported: none is missing from the version script or
 * left undefined. */
Test(symbols, every_public_function_is_exported) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "cd '%s/include' && grep -h 'ELM_API' edgelm.h edgelm_ops.h | grep -o 'elm_[a-z0-9_]*(' "
             "| tr -d '(' | sort -u > '%s/declared' && nm -D --defined-only '%s/libedgelm.so' "
             "| awk '{print $3}' | sort -u > '%s/exported' && wc -l < '%s/declared' && "
             "comm -23 '%s/declared' '%s/exported'",
             test_source_dir(), test_tmp_dir(), build_dir(), test_tmp_dir(), test_tmp_dir(),
             test_tmp_dir(), test_tmp_dir());
    int rc;
    char *out = sh(cmd, &rc);
    cr_assert_eq(rc, 0);
    long declared = strtol(out, NULL, 10);
    const char *missing = strchr(out, '\n') ? strchr(out, '\n') + 1 : "";
    cr_expect_gt(declared, 60, "only %ld functions found in the headers", declared);
    cr_expect_str_empty(missing, "declared but not exported:\n%s", missing);
    free(out);
}

Test(symbols, static_library_keeps_to_its_prefixes) {
    char cmd[2048];
    /* Global (upper-case) defined symbols; weak and common ones count too. */
    snprintf(cmd, sizeof cmd,
             "nm -g --defined-only '%s/libedgelm.a' 2>/dev/null | awk 'NF == 3 {print $3}' | sort -u",
             build_dir());
    int rc;
    char *out = sh(cmd, &rc);
    cr_assert_eq(rc, 0);
    /* __odr_asan.NAME: AddressSanitizer's ODR indicator for the global NAME
     * (sanitizer builds), named after an edgelm global already checked. */
    const char *const prefixes[] = {"elm_", "elmi_", "__odr_asan.elm_", "__odr_asan.elmi_", NULL};
    expect_prefixed("libedgelm.a", out, prefixes);
    free(out);
}

Test(symbols, links_beside_ggml_names) {
    char model[1024], exe[1024], cmd[8192];
    snprintf(model, sizeof model, "%s/clash.gguf", test_tmp_dir());
    snprintf(exe, sizeof exe, "%s/clash", test_tmp_dir());
    tiny_model_opts o = tiny_model_default();
    cr_assert_eq(tiny_model_write(&o, model), 0);
    const char *blas = getenv("ELM_BLAS_LIBS") ? getenv("ELM_BLAS_LIBS") : "-lopenblas";
    const char *san = getenv("ELM_SANITIZE") && *getenv("ELM_SANITIZE")
                          ? getenv("ELM_SANITIZE") : NULL;
    char sanflag[128] = "";
    if (san) snprintf(sanflag, sizeof sanflag, "-fsanitize=%s", san);
    snprintf(cmd, sizeof cmd,
             "cc -std=c11 -o '%s' '%s/tests/symbols/clash.c' -I'%s/include' '%s/libedgelm.a' "
             "$(pkg-config --libs libpcre2-8 libsodium 2>/dev/null || echo -lpcre2-8 -lsodium) %s "
             "$(pkg-config --libs vulkan 2>/dev/null) -lpthread -lm %s 2>&1 && '%s' '%s' 2>&1",
             exe, test_source_dir(), test_source_dir(), build_dir(), blas, sanflag, exe, model);
    int rc;
    char *out = sh(cmd, &rc);
    cr_expect_eq(rc, 0, "linking or running the clash program failed:\n$ %s\n%s", cmd, out);
    cr_expect(out && strstr(out, "clash: ok"), "no 'clash: ok' in:\n%s", out);
    free(out);
}
