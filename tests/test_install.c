/*
 * test_install.c: the installed edgelm works for a downstream project.
 *
 * Each test installs the build tree ($ELM_BUILD_DIR, set by ctest) with
 * `cmake --install BUILD --prefix TMP` and then uses only what landed under
 * TMP, the way a user of the README's "Installing and using the library"
 * would:
 *   - pkg-config (PKG_CONFIG_PATH=TMP/LIBDIR/pkgconfig): a consumer built
 *     with `pkg-config --cflags --libs edgelm` against libedgelm.so, and one
 *     built with `pkg-config --cflags --libs --static edgelm` against
 *     libedgelm.a;
 *   - CMake: tests/install (find_package(edgelm REQUIRED), linking
 *     edgelm::edgelm_static, or edgelm::edgelm_shared) configured with
 *     -DCMAKE_PREFIX_PATH=TMP;
 *   - the shared library's SONAME carries the major version, and the
 *     installed header compiles on its own.
 * The consumer (tests/install/main.c) calls elm_version() and elm_strerror()
 * and checks them against the header it was compiled with; given a model
 * (a tiny one from tests/support/tiny_model) it also loads it and evaluates
 * a token, which pulls the whole engine into a static link.
 *
 * Needs the whole project built (the install copies libedgelm.so, the CLI,
 * ...), cmake, pkg-config, a C compiler and binutils. In a sanitizer build
 * the consumers are compiled with the same -fsanitize flags.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "edgelm.h"
#include "support/paths.h"
#include "support/tiny_model.h"

/* ============================================================== helpers */

typedef struct result {
    int rc;
    char *out, *err;
} result;

static void result_free(result *r) {
    free(r->out);
    free(r->err);
}

/* Runs a shell script; its output is captured. */
__attribute__((format(printf, 1, 2))) static result sh(const char *fmt, ...) {
    char *script = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&script, fmt, ap);
    va_end(ap);
    cr_assert(n >= 0 && script);
    const char *argv[] = {"/bin/sh", "-c", script, NULL};
    result r = {0};
    r.rc = test_run(argv, NULL, 0, &r.out, &r.err);
    cr_assert(r.out && r.err, "cannot run: %s", script);
    free(script);
    return r;
}

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static const char *build_dir(void) {
    const char *b = getenv("ELM_BUILD_DIR");
    if (!b || !*b) cr_skip_test("ELM_BUILD_DIR is not set: run this test through ctest");
    return b;
}

/* A value from BUILD/CMakeCache.txt ("KEY:TYPE=VALUE"); `dflt` when absent. */
static void cache_get(const char *key, const char *dflt, char *out, size_t cap) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/CMakeCache.txt", build_dir());
    char *text = test_read_file(path, NULL);
    cr_assert_not_null(text, "cannot read %s", path);
    snprintf(out, cap, "%s", dflt);
    size_t klen = strlen(key);
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        char *colon = strchr(line, ':'), *eq = colon ? strchr(colon, '=') : NULL;
        if (colon && eq && (size_t)(colon - line) == klen && !strncmp(line, key, klen)) {
            snprintf(out, cap, "%s", eq + 1);
            break;
        }
        line = nl ? nl + 1 : NULL;
    }
    free(text);
}

typedef struct install {
    char prefix[PATH_MAX], libdir[PATH_MAX + 512], work[PATH_MAX];
    char cc[PATH_MAX];
    char sanitize[256]; /* "-fsanitize=..." or "" */
    char version[32];   /* from the header the tests were built with */
    int major;
    char model[PATH_MAX + 32]; /* a tiny llama model: vocabulary 300, 2 layers */
} install;

/* Installs the build tree under this process's temporary directory. */
static install do_install(void) {
    install in = {0};
    const char *build = build_dir();
    const char *tmp = test_tmp_dir();
    snprintf(in.prefix, sizeof in.prefix, "%s/prefix", tmp);
    snprintf(in.work, sizeof in.work, "%s/work", tmp);
    char rel[256], san[200];
    cache_get("CMAKE_INSTALL_LIBDIR", "lib", rel, sizeof rel);
    snprintf(in.libdir, sizeof in.libdir, "%s/%s", in.prefix, rel);
    cache_get("CMAKE_C_COMPILER", "cc", in.cc, sizeof in.cc);
    cache_get("EDGELM_SANITIZE", "", san, sizeof san);
    if (san[0]) snprintf(in.sanitize, sizeof in.sanitize, "-fsanitize=%s", san);
    snprintf(in.version, sizeof in.version, "%d.%d.%d", ELM_VERSION_MAJOR, ELM_VERSION_MINOR,
             ELM_VERSION_PATCH);
    in.major = ELM_VERSION_MAJOR;

    result r = sh("mkdir -p '%s' && cmake --install '%s' --prefix '%s'", in.work, build, in.prefix);
    snprintf(in.model, sizeof in.model, "%s/tiny.gguf", in.work);
    cr_assert_eq(r.rc, 0,
                 "cmake --install %s failed (exit %d); is the whole project built "
                 "(cmake --build %s)?\n%s%s",
                 build, r.rc, build, r.out, r.err);
    result_free(&r);
    tiny_model_opts o = tiny_model_default();
    cr_assert_eq(tiny_model_write(&o, in.model), 0, "cannot write %s", in.model);
    return in;
}

/* The consumer's output, run as `app MODEL`: "edgelm VERSION: TEXT", then
 * the tiny model's figures. */
static void expect_consumer_output(const result *r, const install *in, const char *what) {
    char want[64];
    snprintf(want, sizeof want, "edgelm %s: ", in->version);
    cr_expect_eq(r->rc, 0, "%s: the consumer exited %d:\n%s%s", what, r->rc, r->out, r->err);
    cr_expect(!strncmp(r->out, want, strlen(want)), "%s: the consumer printed '%s'", what,
              r->out);
    const char *nl = strchr(r->out, '\n');
    cr_expect(nl && !strcmp(nl + 1, "model: n_vocab=300 n_layer=2 logits=finite\n"),
              "%s: the consumer printed '%s'", what, r->out);
}

/* Whether the ELF file needs libedgelm.so.MAJOR (readelf -d's NEEDED). */
static bool needs_libedgelm(const install *in, const char *binary) {
    result r = sh("readelf -d '%s'", binary);
    cr_assert_eq(r.rc, 0, "readelf -d %s: %s", binary, r.err);
    char soname[64];
    snprintf(soname, sizeof soname, "Shared library: [libedgelm.so.%d]", in->major);
    bool needs = strstr(r.out, soname) != NULL;
    cr_expect(needs || !strstr(r.out, "libedgelm"), "%s needs an unexpected libedgelm:\n%s",
              binary, r.out);
    result_free(&r);
    return needs;
}

static const char *consumer_source(void) {
    static char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/tests/install/main.c", test_source_dir());
    cr_assert(exists(path), "%s not found (set ELM_SOURCE_DIR)", path);
    return path;
}

/* =============================================================== layout */

Test(install, layout_and_cli) {
    install in = do_install();
    char path[PATH_MAX + 1024];
    const char *const in_prefix[] = {"include/edgelm.h", "bin/edgelm"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", in.prefix, in_prefix[i]);
        cr_expect(exists(path), "%s was not installed", path);
    }
    char so_major[32];
    snprintf(so_major, sizeof so_major, "libedgelm.so.%d", in.major);
    const char *const in_libdir[] = {"libedgelm.a", "libedgelm.so", so_major,
                                     "pkgconfig/edgelm.pc", "cmake/edgelm/edgelmConfig.cmake",
                                     "cmake/edgelm/edgelmConfigVersion.cmake"};
    for (size_t i = 0; i < sizeof in_libdir / sizeof *in_libdir; i++) {
        snprintf(path, sizeof path, "%s/%s", in.libdir, in_libdir[i]);
        cr_expect(exists(path), "%s was not installed", path);
    }
    result r = sh("'%s/bin/edgelm' --version", in.prefix);
    cr_expect_eq(r.rc, 0, "the installed edgelm --version exited %d: %s", r.rc, r.err);
    cr_expect(strstr(r.out, in.version), "installed edgelm --version: '%s'", r.out);
    result_free(&r);
}

/* ============================================================ pkg-config */

Test(install, pkgconfig_shared) {
    install in = do_install();
    const char *src = consumer_source();
    result r = sh("PKG_CONFIG_PATH='%s/pkgconfig' pkg-config --modversion edgelm", in.libdir);
    cr_assert_eq(r.rc, 0, "pkg-config cannot find edgelm.pc: %s", r.err);
    cr_expect(!strncmp(r.out, in.version, strlen(in.version)) && r.out[strlen(in.version)] == '\n',
              "edgelm.pc says version '%s', the header %s", r.out, in.version);
    result_free(&r);

    r = sh("cd '%s' && export PKG_CONFIG_PATH='%s/pkgconfig' && "
           "'%s' %s -o app-pc-shared '%s' $(pkg-config --cflags --libs edgelm)",
           in.work, in.libdir, in.cc, in.sanitize, src);
    cr_assert_eq(r.rc, 0, "building with `pkg-config --cflags --libs edgelm` failed:\n%s%s",
                 r.out, r.err);
    result_free(&r);

    char app[PATH_MAX + 32];
    snprintf(app, sizeof app, "%s/app-pc-shared", in.work);
    cr_expect(needs_libedgelm(&in, app), "the consumer is not linked to libedgelm.so.%d",
              in.major);
    r = sh("LD_LIBRARY_PATH='%s' '%s' '%s'", in.libdir, app, in.model);
    expect_consumer_output(&r, &in, "pkg-config, shared");
    result_free(&r);
}

/*
 * `pkg-config --libs --static edgelm` gives -ledgelm and the private
 * dependencies. Beside libedgelm.so the linker would take the shared
 * library for -ledgelm, so -l:libedgelm.a asks for the archive: what is
 * checked is that the flags are enough to link the static library.
 */
Test(install, pkgconfig_static) {
    install in = do_install();
    const char *src = consumer_source();
    result r = sh("export PKG_CONFIG_PATH='%s/pkgconfig' && pkg-config --cflags --libs --static "
                  "edgelm",
                  in.libdir);
    cr_assert_eq(r.rc, 0, "pkg-config --static: %s", r.err);
    cr_assert(strstr(r.out, "-ledgelm"), "pkg-config --libs --static edgelm: '%s'", r.out);
    result_free(&r);

    r = sh("cd '%s' && export PKG_CONFIG_PATH='%s/pkgconfig' && "
           "flags=$(pkg-config --cflags --libs --static edgelm | sed 's/-ledgelm\\b/-l:libedgelm.a/') && "
           "echo \"flags: $flags\" && '%s' %s -o app-pc-static '%s' $flags",
           in.work, in.libdir, in.cc, in.sanitize, src);
    cr_assert_eq(r.rc, 0,
                 "linking libedgelm.a with the flags of `pkg-config --cflags --libs --static "
                 "edgelm` failed:\n%s%s",
                 r.out, r.err);
    result_free(&r);

    char app[PATH_MAX + 32];
    snprintf(app, sizeof app, "%s/app-pc-static", in.work);
    cr_expect(!needs_libedgelm(&in, app), "the static consumer needs libedgelm.so");
    r = sh("'%s' '%s'", app, in.model);
    expect_consumer_output(&r, &in, "pkg-config, static");
    result_free(&r);
}

/* ================================================================= CMake */

static void cmake_consumer(const char *link) {
    install in = do_install();
    char bin[PATH_MAX + 32];
    snprintf(bin, sizeof bin, "%s/cmake-%s", in.work, link);
    result r = sh("cmake -S '%s/tests/install' -B '%s' -DCMAKE_PREFIX_PATH='%s' "
                  "-DCMAKE_C_COMPILER='%s' -DCMAKE_C_FLAGS='%s' -DCMAKE_EXE_LINKER_FLAGS='%s' "
                  "-DCMAKE_BUILD_TYPE=Release -DEDGELM_CONSUMER_LINK=%s",
                  test_source_dir(), bin, in.prefix, in.cc, in.sanitize, in.sanitize, link);
    cr_assert_eq(r.rc, 0, "configuring tests/install (find_package(edgelm), %s) failed:\n%s%s",
                 link, r.out, r.err);
    result_free(&r);
    r = sh("cmake --build '%s'", bin);
    cr_assert_eq(r.rc, 0, "building tests/install (edgelm::edgelm_%s) failed:\n%s%s", link, r.out,
                 r.err);
    result_free(&r);

    char app[PATH_MAX + 64];
    snprintf(app, sizeof app, "%s/app", bin);
    bool shared = strcmp(link, "shared") == 0;
    cr_expect_eq(needs_libedgelm(&in, app), shared, "edgelm::edgelm_%s: libedgelm.so.%d %s",
                 link, in.major, shared ? "is not needed" : "is needed");
    /* No LD_LIBRARY_PATH: CMake gives the build tree's binary an RPATH to
     * the imported shared library. */
    r = sh("'%s' '%s'", app, in.model);
    char what[64];
    snprintf(what, sizeof what, "CMake, edgelm::edgelm_%s", link);
    expect_consumer_output(&r, &in, what);
    result_free(&r);
}

Test(install, cmake_static) { cmake_consumer("static"); }
Test(install, cmake_shared) { cmake_consumer("shared"); }

/* ================================================== SONAME and the header */

Test(install, soname_has_major_version) {
    install in = do_install();
    char want[64];
    snprintf(want, sizeof want, "libedgelm.so.%d", in.major);

    result r = sh("readelf -d '%s/libedgelm.so'", in.libdir);
    cr_assert_eq(r.rc, 0, "readelf: %s", r.err);
    char line[96];
    snprintf(line, sizeof line, "Library soname: [%s]", want);
    cr_expect(strstr(r.out, line), "readelf -d: the SONAME is not %s:\n%s", want, r.out);
    result_free(&r);

    r = sh("objdump -p '%s/libedgelm.so' | awk '$1 == \"SONAME\" { print $2 }'", in.libdir);
    cr_assert_eq(r.rc, 0, "objdump: %s", r.err);
    snprintf(line, sizeof line, "%s\n", want);
    cr_expect_str_eq(r.out, line, "objdump -p: SONAME");
    result_free(&r);

    /* The name the loader looks for exists and is the same library. */
    r = sh("cd '%s' && test \"$(readlink -f libedgelm.so)\" = \"$(readlink -f %s)\"", in.libdir,
           want);
    cr_expect_eq(r.rc, 0, "%s/%s is missing or not the library libedgelm.so points to",
                 in.libdir, want);
    result_free(&r);
}

Test(install, header_compiles_standalone) {
    install in = do_install();
    /* Twice, for the include guard; only -I the installed include dir. */
    result r = sh("cd '%s' && printf '#include <edgelm.h>\\n#include <edgelm.h>\\n"
                  "elm_status f(elm_model *m);\\n' > h.c && "
                  "'%s' -std=c11 -Wall -Wextra -Wpedantic -Werror -fsyntax-only -I'%s/include' h.c",
                  in.work, in.cc, in.prefix);
    cr_expect_eq(r.rc, 0, "the installed edgelm.h does not compile on its own (C11):\n%s%s",
                 r.out, r.err);
    result_free(&r);

    /* It declares extern "C" for C++; check that too where a C++ compiler is. */
    r = sh("command -v c++ >/dev/null || exit 77; cd '%s' && "
           "c++ -Wall -Wextra -Werror -fsyntax-only -x c++ -I'%s/include' h.c",
           in.work, in.prefix);
    cr_expect(r.rc == 0 || r.rc == 77, "the installed edgelm.h does not compile as C++:\n%s%s",
              r.out, r.err);
    result_free(&r);
}
