/*
 * LeakSanitizer attribution (sanitizer builds; the release build skips).
 *
 * The suite suppresses leaks by the Vulkan driver's library name only
 * (tests/lsan.supp), and tests/sanitizer/keep_dsos.c keeps the driver mapped
 * so that those names can match. These tests show both halves under the
 * suite's own ASAN_OPTIONS/LSAN_OPTIONS (inherited from ctest):
 *  - a program that leaks through edgelm's own code is reported, on the CPU
 *    and with a Vulkan device in use;
 *  - the same program freeing everything exits 0 with a Vulkan device in use
 *    (the driver's own leaks are attributed and suppressed);
 *  - on any machine, whatever its Vulkan driver leaks: a stand-in driver
 *    (libelm_leaky_driver.so) that leaks and is dlclose()d, as the loader
 *    does, is reported as "<unknown module>" without keep_dsos and is
 *    suppressed by its library name with it.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "edgelm.h"
#include "support/paths.h"
#include "support/tiny_model.h"

#if defined(__SANITIZE_ADDRESS__)
#define ELM_TEST_ASAN 1
#else
#define ELM_TEST_ASAN 0
#endif

static const char *model_path(void) {
    static char path[1024];
    if (!path[0]) {
        snprintf(path, sizeof path, "%s/lsan_tiny.gguf", test_tmp_dir());
        tiny_model_opts o = tiny_model_default();
        cr_assert_eq(tiny_model_write(&o, path), 0);
    }
    return path;
}

static bool have_vulkan(void) {
    elm_device_info d[8];
    d[0].struct_size = sizeof d[0];
    size_t n = 0;
    if (elm_devices(d, 8, &n) != ELM_OK) return false;
    for (size_t i = 0; i < n && i < 8; i++)
        if (!strcmp(d[i].backend, "vulkan")) return true;
    return false;
}

/* Runs the canary; returns its exit status and its stderr in *log (malloc'd). */
static int run_canary(const char *mode, const char *device, char **log) {
    const char *build = getenv("ELM_BUILD_DIR");
    cr_assert(build, "ELM_BUILD_DIR is not set (run through ctest)");
    char errpath[1024], cmd[4096];
    snprintf(errpath, sizeof errpath, "%s/canary_%s_%s.err", test_tmp_dir(), mode, device);
    snprintf(cmd, sizeof cmd, "'%s/leak_canary' %s %s '%s' >/dev/null 2>'%s'", build, mode, device,
             model_path(), errpath);
    int rc = system(cmd);
    *log = test_read_file(errpath, NULL);
    cr_assert(*log, "no stderr from the canary");
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

static void expect_reported(const char *device) {
    char *log = NULL;
    int rc = run_canary("leak", device, &log);
    cr_expect_neq(rc, 0, "[%s] the leak was not reported:\n%s", device, log);
    cr_expect(strstr(log, "LeakSanitizer: detected memory leaks"), "[%s] no leak report:\n%s",
              device, log);
    cr_expect(strstr(log, "elm_model_load"), "[%s] the report does not name edgelm's frame:\n%s",
              device, log);
    free(log);
}

Test(lsan, own_leak_is_reported_cpu) {
    if (!ELM_TEST_ASAN) cr_skip_test("not an AddressSanitizer build");
    expect_reported("cpu");
}

Test(lsan, own_leak_is_reported_with_vulkan) {
    if (!ELM_TEST_ASAN) cr_skip_test("not an AddressSanitizer build");
    if (!have_vulkan()) cr_skip_test("no Vulkan device");
    expect_reported("vulkan");
}

Test(lsan, driver_leaks_are_suppressed_by_name) {
    if (!ELM_TEST_ASAN) cr_skip_test("not an AddressSanitizer build");
    if (!have_vulkan()) cr_skip_test("no Vulkan device");
    char *log = NULL;
    int rc = run_canary("clean", "vulkan", &log);
    cr_expect_eq(rc, 0, "a clean run on Vulkan failed (unsuppressed leak?):\n%s", log);
    free(log);
}

/* Runs `PROGRAM driver LIB` with the suite's options plus a suppression of
 * the stand-in driver by its library name. */
static int run_driver(const char *program, char **log) {
    const char *build = getenv("ELM_BUILD_DIR");
    cr_assert(build, "ELM_BUILD_DIR is not set (run through ctest)");
    char supp[1024], errpath[1024], cmd[8192];
    snprintf(supp, sizeof supp, "%s/driver.supp", test_tmp_dir());
    FILE *f = fopen(supp, "w");
    cr_assert_not_null(f);
    fprintf(f, "leak:libelm_leaky_driver.so\n");
    fclose(f);
    snprintf(errpath, sizeof errpath, "%s/%s_driver.err", test_tmp_dir(), program);
    snprintf(cmd, sizeof cmd,
             "LSAN_OPTIONS=suppressions=%s:print_suppressions=0 '%s/%s' driver "
             "'%s/libelm_leaky_driver.so' >/dev/null 2>'%s'",
             supp, build, program, build, errpath);
    int rc = system(cmd);
    *log = test_read_file(errpath, NULL);
    cr_assert(*log, "no stderr from %s", program);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

Test(lsan, unloaded_driver_leak_is_unattributed_without_the_pin) {
    if (!ELM_TEST_ASAN) cr_skip_test("not an AddressSanitizer build");
    char *log = NULL;
    int rc = run_driver("leak_canary_nokeep", &log);
    cr_expect_neq(rc, 0, "the stand-in driver's leak was not reported at all:\n%s", log);
    cr_expect(strstr(log, "<unknown module>"),
              "expected the unloaded driver's frames as <unknown module>:\n%s", log);
    free(log);
}

Test(lsan, unloaded_driver_leak_is_suppressed_by_name) {
    if (!ELM_TEST_ASAN) cr_skip_test("not an AddressSanitizer build");
    char *log = NULL;
    int rc = run_driver("leak_canary", &log);
    cr_expect_eq(rc, 0, "the stand-in driver's leak was not suppressed by its name:\n%s", log);
    free(log);
}
