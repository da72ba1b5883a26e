/*
 * bench.h: the entry points of `edgelm bench` and `edgelm make-model`, for
 * the CLI. Exit codes: 0 ok, 1 runtime error, 2 usage error.
 */
#ifndef ELM_BENCH_H
#define ELM_BENCH_H

#include <stddef.h>

/* `edgelm bench ...`; argv[0] is "bench". See bench/README-bench.md. */
int bench_main(int argc, char **argv);

/* `edgelm make-model --shape NAME --type T [--output-type T]
 * [--vocab-size N] [--layers N] [--seed S] -o FILE`; argv[0] is "make-model". */
int make_model_main(int argc, char **argv);
/* "smollm-135m, qwen2-0.5b, ...": the shapes of elm_synth_shape_name, for messages. */
void bench_shape_list(char *buf, size_t cap);

/*
 * The device that gave the highest generation tok/s for `model_key` the last
 * time `edgelm bench` measured it on this machine (read from the cache
 * directory). Writes its id ("cpu", "vulkan:0", ...) to `device` and returns
 * 0; returns -1 when nothing is stored or the id does not fit in `cap`.
 */
int bench_best_device(const char *model_key, char *device, size_t cap);

/*
 * The key under which results for a model are stored: "shape:NAME:TYPE"
 * for a built-in shape (what elm_model_info.path reads for a synthetic
 * model), else the file's base name. Writes at most cap bytes.
 */
void bench_model_key(const char *model_path, char *key, size_t cap);

#endif
