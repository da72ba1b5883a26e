/*
 * A real memory limit: `edgelm run` on a model larger than the process's
 * address space (ulimit -v) must print its error and exit 1 promptly.
 *
 * OpenBLAS's pthread build used to spin forever retrying its buffer
 * allocation under such a limit, and its exit handler then waited for that
 * thread; edgelm now uses the serial build (docs/openblas.md). The model is
 * a tiny valid one plus an 800 MB tensor of zeros that no layer reads,
 * written by the project's own GGUF writer.
 *
 * AddressSanitizer reserves terabytes of shadow memory, so a sanitizer
 * build skips (ulimit -v cannot apply there).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/gguf.h"
#include "quant/quant.h"
#include "support/paths.h"
#include "support/tiny_model.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define ELM_TEST_SANITIZED 1
#else
#define ELM_TEST_SANITIZED 0
#endif

#define BALLAST_COLS (1 << 20)
#define BALLAST_ROWS 200 /* 800 MiB of F32 */

/* Written once into the build directory (Criterion runs each test in its
 * own process), through a temporary name and a rename. */
static const char *big_model(void) {
    static char path[1024];
    if (path[0]) return path;
    const char *dir = getenv("ELM_BUILD_DIR") ? getenv("ELM_BUILD_DIR") : test_tmp_dir();
    snprintf(path, sizeof path, "%s/lowmem_big.gguf", dir);
    struct stat sb;
    if (stat(path, &sb) == 0 && sb.st_size > (off_t)BALLAST_COLS * BALLAST_ROWS * 4) return path;
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid());
    tiny_model_opts o = tiny_model_default();
    gguf_writer *w = tiny_model_build(&o);
    cr_assert_not_null(w);
    const int64_t ne[2] = {BALLAST_COLS, BALLAST_ROWS};
    cr_assert_eq(elmi_gguf_add_tensor_raw(w, "ballast.weight", QT_F32, 2, ne, NULL,
                                     (size_t)BALLAST_COLS * BALLAST_ROWS * sizeof(float)),
                 ELM_OK);
    char err[256] = "";
    cr_assert_eq(elmi_gguf_write_file(w, tmp, err, sizeof err), ELM_OK, "%s", err);
    elmi_gguf_writer_free(w);
    cr_assert_eq(rename(tmp, path), 0, "cannot rename %s", tmp);
    return path;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Runs `edgelm run` on the big model under `ulimit -v mb MiB`, bounded by
 * timeout(1) at 60 s, and checks a prompt, clean failure. */
static void run_limited(int mb) {
    if (ELM_TEST_SANITIZED) cr_skip_test("sanitizer build: ulimit -v cannot apply");
    const char *cli = test_cli();
    cr_assert_not_null(cli, "ELM_CLI is not set (run through ctest)");
    char script[2048];
    snprintf(script, sizeof script,
             "ulimit -v %d && exec timeout -s KILL 60 '%s' run -m '%s' -p hello -n 4 --temp 0",
             mb * 1024, cli, big_model());
    const char *argv[] = {"/bin/sh", "-c", script, NULL};
    char *out = NULL, *err = NULL;
    double t0 = now_s();
    int rc = test_run(argv, NULL, 0, &out, &err);
    double secs = now_s() - t0;
    cr_expect_eq(rc, 1, "ulimit -v %d MiB: exit status %d (137: killed by the 60 s bound)\n%s", mb,
                 rc, err);
    cr_expect(strstr(err, "cannot map") || strstr(err, "cannot allocate") ||
                  strstr(err, "out of memory"),
              "ulimit -v %d MiB: no memory error in:\n%s", mb, err);
    cr_expect_lt(secs, 30.0, "ulimit -v %d MiB: took %.1f s", mb, secs);
    cr_log_info("ulimit -v %d MiB: exit %d in %.2f s: %s", mb, rc, secs, err);
    free(out);
    free(err);
}

Test(lowmem, ulimit_100mb) { run_limited(100); }
Test(lowmem, ulimit_400mb) { run_limited(400); }
Test(lowmem, ulimit_700mb) { run_limited(700); }

/* The same model loads without a limit (the ballast is legal): the
 * failures above are the limit's, not the file's. */
Test(lowmem, loads_without_limit) {
    if (ELM_TEST_SANITIZED) cr_skip_test("sanitizer build: skipped with the ulimit cases");
    const char *cli = test_cli();
    cr_assert_not_null(cli);
    const char *argv[] = {cli, "run", "-m", big_model(), "-p", "hello", "-n", "2", "--temp", "0",
                          NULL};
    char *out = NULL, *err = NULL;
    int rc = test_run(argv, NULL, 0, &out, &err);
    cr_expect_eq(rc, 0, "no limit: exit %d\n%s", rc, err);
    free(out);
    free(err);
}
