/* paths.h: where tests find the shared ground truth, the sources and the CLI. */
#ifndef ELM_TEST_PATHS_H
#define ELM_TEST_PATHS_H

#include <stdbool.h>
#include <stddef.h>

/* $ELM_SHARED_DIR, else "<source>/../shared". */
const char *test_shared_dir(void);
/* Writes "<shared>/<rel>" to buf; returns false when that file does not exist. */
bool test_shared_path(const char *rel, char *buf, size_t cap);
/* $ELM_SOURCE_DIR, else ".". */
const char *test_source_dir(void);
/* $ELM_CLI: the built edgelm program, or NULL. */
const char *test_cli(void);
/* A fresh temporary directory for this process (created once). */
const char *test_tmp_dir(void);
/* Reads a whole file into a malloc'd NUL-terminated buffer; NULL on failure. */
char *test_read_file(const char *path, size_t *len);
/* Runs argv (argv[0] a path) with stdin from `input` (may be NULL), capturing
 * stdout and stderr into malloc'd strings (the caller frees them). Returns
 * the exit status, or -1 when the process crashed or could not start. */
int test_run(const char *const *argv, const char *input, size_t input_len, char **out,
             char **err);

/* Whether elm_devices lists a Vulkan device. */
bool test_have_vulkan_device(void);

#endif
