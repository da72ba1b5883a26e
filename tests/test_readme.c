/*
 * test_readme.c: the C example in README.md compiles against the installed
 * header and the static library, and runs.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/paths.h"

#define BEGIN_MARK "<!-- example:begin -->"
#define END_MARK "<!-- example:end -->"

/* The line after the one holding `mark`, or NULL. */
static const char *after_line_with(const char *text, const char *mark) {
    const char *p = strstr(text, mark);
    if (!p) return NULL;
    const char *nl = strchr(p, '\n');
    return nl ? nl + 1 : p + strlen(p);
}

/* The text between the markers without its ``` fence lines (malloc'd). */
static char *extract_example(const char *readme) {
    const char *begin = after_line_with(readme, BEGIN_MARK);
    cr_assert_not_null(begin, "README.md has no `" BEGIN_MARK "` line");
    const char *end = strstr(begin, END_MARK);
    cr_assert_not_null(end, "README.md has no `" END_MARK "` line after `" BEGIN_MARK "`");
    while (end > begin && end[-1] != '\n') end--; /* the marker's line is not code */
    char *code = malloc((size_t)(end - begin) + 1);
    size_t n = 0;
    for (const char *line = begin; line < end;) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        const char *next = nl ? nl + 1 : end;
        if (strncmp(line + strspn(line, " \t"), "```", 3) != 0) {
            memcpy(code + n, line, (size_t)(next - line));
            n += (size_t)(next - line);
        }
        line = next;
    }
    code[n] = 0;
    cr_assert(strstr(code, "main"), "the README example has no main():\n%s", code);
    return code;
}

static char *read_readme(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/README.md", test_source_dir());
    char *text = test_read_file(path, NULL);
    cr_assert_not_null(text, "cannot read %s", path);
    return text;
}

/* The sanitizer the library was built with, from the build's CMake cache:
 * the example must be linked with the same runtime. */
static void build_sanitizer(const char *build, char *out, size_t cap) {
    char path[4096];
    snprintf(path, sizeof path, "%s/CMakeCache.txt", build);
    out[0] = 0;
    char *cache = test_read_file(path, NULL);
    const char *key = "EDGELM_SANITIZE:STRING=";
    const char *p = cache ? strstr(cache, key) : NULL;
    if (p) {
        p += strlen(key);
        size_t n = strcspn(p, "\r\n");
        if (n) snprintf(out, cap, "-fsanitize=%.*s", (int)n, p);
    }
    free(cache);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0, "cannot write %s", path);
}

static void compile_example(const char *src, const char *exe, const char *build) {
    char san[256], cmd[16384];
    build_sanitizer(build, san, sizeof san);
    snprintf(cmd, sizeof cmd,
             "cc -std=c11 -Wall -o '%s' '%s' -I'%s/include' '%s/libedgelm.a' "
             "$(pkg-config --libs libpcre2-8 libsodium 2>/dev/null || echo -lpcre2-8 -lsodium) %s "
             "$(pkg-config --libs vulkan 2>/dev/null) "
             "-lpthread -lm %s",
             exe, src, test_source_dir(), build,
             getenv("ELM_BLAS_LIBS") ? getenv("ELM_BLAS_LIBS") : "-lopenblas", san);
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    char *out = NULL, *err = NULL;
    int rc = test_run(argv, NULL, 0, &out, &err);
    cr_assert_eq(rc, 0, "the README example does not compile:\n$ %s\n%s%s", cmd, out, err);
    if (err && *err) cr_log_warn("compiler warnings on the README example:\n%s", err);
    free(out);
    free(err);
}

Test(readme, example_compiles_and_runs) {
    char *readme = read_readme();
    char *code = extract_example(readme);
    free(readme);
    const char *build = getenv("ELM_BUILD_DIR");
    if (!build || !*build) cr_skip_test("ELM_BUILD_DIR is not set (run through ctest)");
    char src[4096], exe[4096], model[4096];
    snprintf(src, sizeof src, "%s/readme_example.c", test_tmp_dir());
    snprintf(exe, sizeof exe, "%s/readme_example", test_tmp_dir());
    write_file(src, code);
    free(code);
    compile_example(src, exe, build);
    if (!test_shared_path("models/stories260K.gguf", model, sizeof model))
        cr_skip_test("compiled; not run: no shared model at %s", model);
    const char *argv[] = {exe, model, NULL};
    char *out = NULL, *err = NULL;
    int rc = test_run(argv, NULL, 0, &out, &err);
    cr_expect_eq(rc, 0, "the README example exited with %d; stderr:\n%s", rc, err);
    cr_expect(out && *out, "the README example printed nothing; stderr:\n%s", err);
    cr_log_info("README example output: %.200s", out ? out : "");
    free(out);
    free(err);
}
