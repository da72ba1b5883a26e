/* bench_main.c: `edgelm bench`: options, device selection, and the order of
 * the work. No thread is created in this process: every measurement runs in
 * a forked child (see bench_child.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/bench_internal.h"

static const char USAGE[] =
    "usage: edgelm bench [--model FILE[,FILE...] | --shape NAME --type T] [--device all|LIST]\n"
    "                    [-p N_PROMPT] [-n N_GEN] [-r REPS] [-t THREADS] [-c CTX]\n"
    "                    [--budget SECONDS] [--json FILE] [--csv FILE] [--svg FILE]\n"
    "                    [--pin] [--no-store] [--profile]\n"
    "       edgelm bench --ops [--device all|LIST] [-t THREADS] [--budget SECONDS] [--json FILE]\n"
    "       edgelm bench --compare OLD.json NEW.json\n"
    "Measures load time, time to first token, prompt and generation tok/s and\n"
    "memory on every device (default: smollm-135m Q4_0 built in memory,\n"
    "-p 64 -n 16 -r 2, 60 s per device), then recommends a device. Several\n"
    "comma-separated models (up to 8) are measured in one run and one table, so\n"
    "their figures compare (gen GB/s is decode speed per weight byte).\n"
    "--profile times every op of the repetitions on the device (GPU timestamps on\n"
    "Vulkan) and prints per op kind, for the prompt and for generation, the time\n"
    "per token, GB/s, share, and dispatches and barriers per layer, on stderr; the\n"
    "tok/s figures then include the profiling's cost.\n";

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "edgelm bench: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n%s", USAGE);
    return 2;
}

static bool parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi) return false;
    *out = (uint32_t)v;
    return true;
}

static bool parse_seconds(const char *s, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v > 0) || v > 1e6) return false;
    *out = v;
    return true;
}

static void default_opts(bench_opts *o) {
    *o = (bench_opts){.shape = "smollm-135m",
                      .type = "Q4_0",
                      .devices = "all",
                      .n_prompt = 64,
                      .n_gen = 16,
                      .n_reps = 2,
                      .budget_s = 60.0,
                      .store = true};
}

/* Options taking a number; returns 0 when handled, 2 on error, -1 if not one. */
static int parse_number(const char *opt, const char *val, bench_opts *o) {
    if (!strcmp(opt, "--budget"))
        return parse_seconds(val, &o->budget_s)
                   ? 0
                   : usage_error("--budget wants seconds > 0, not '%s'", val);
    static const struct {
        const char *name;
        size_t offset;
        uint32_t max;
    } map[] = {
        {"-p", offsetof(bench_opts, n_prompt), 1u << 20},
        {"-n", offsetof(bench_opts, n_gen), 1u << 20},
        {"-r", offsetof(bench_opts, n_reps), BENCH_MAX_REPS},
        {"-c", offsetof(bench_opts, n_ctx), 1u << 24},
    };
    uint32_t v;
    if (!strcmp(opt, "-t")) {
        if (!parse_u32(val, 1, 256, &v))
            return usage_error("-t wants 1 to 256 threads, not '%s'", val);
        o->n_threads = (int)v;
        return 0;
    }
    for (size_t i = 0; i < sizeof map / sizeof *map; i++) {
        if (strcmp(opt, map[i].name)) continue;
        if (!parse_u32(val, 1, map[i].max, &v)) return usage_error("bad number '%s'", val);
        *(uint32_t *)((char *)o + map[i].offset) = v;
        return 0;
    }
    return -1;
}

static int parse_string(const char *opt, const char *val, bench_opts *o) {
    static const struct {
        const char *name;
        size_t offset;
    } map[] = {
        {"--model", offsetof(bench_opts, model_path)}, {"-m", offsetof(bench_opts, model_path)},
        {"--shape", offsetof(bench_opts, shape)},      {"--type", offsetof(bench_opts, type)},
        {"--device", offsetof(bench_opts, devices)},   {"--json", offsetof(bench_opts, json_path)},
        {"--csv", offsetof(bench_opts, csv_path)},     {"--svg", offsetof(bench_opts, svg_path)},
    };
    for (size_t i = 0; i < sizeof map / sizeof *map; i++) {
        if (strcmp(opt, map[i].name)) continue;
        *(const char **)((char *)o + map[i].offset) = val;
        return 0;
    }
    return -1;
}

static int parse_args(int argc, char **argv, bench_opts *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return -1;
        if (!strcmp(a, "--ops")) {
            o->ops = true;
            continue;
        }
        if (!strcmp(a, "--pin")) {
            o->pin = true;
            continue;
        }
        if (!strcmp(a, "--profile")) {
            o->profile = true;
            continue;
        }
        if (!strcmp(a, "--no-store")) {
            o->store = false;
            continue;
        }
        if (!strcmp(a, "--compare")) {
            if (i + 2 >= argc) return usage_error("%s wants two files", a);
            o->compare_old = argv[++i];
            o->compare_new = argv[++i];
            continue;
        }
        if (i + 1 >= argc) return usage_error("%s wants a value (or is unknown)", a);
        int r = parse_number(a, argv[i + 1], o);
        if (r < 0) r = parse_string(a, argv[i + 1], o);
        if (r < 0) return usage_error("unknown option '%s'", a);
        if (r > 0) return r;
        i++;
    }
    return 0;
}

static bool known_shape(const char *name) {
    for (size_t i = 0; elm_synth_shape_name(i); i++)
        if (!strcmp(elm_synth_shape_name(i), name)) return true;
    return false;
}

static int check_opts(const bench_opts *o) {
    if (!o->model_path && !known_shape(o->shape)) {
        char msg[640], shapes[512];
        bench_shape_list(shapes, sizeof shapes);
        snprintf(msg, sizeof msg, "unknown shape '%%s' (%s)", shapes);
        return usage_error(msg, o->shape);
    }
    if (o->n_ctx && o->n_ctx < o->n_prompt + o->n_gen)
        return usage_error("-c must hold -p + -n tokens%s", "");
    if (!o->devices[0]) return usage_error("--device wants a device id%s", "");
    return 0;
}

/* ------------------------------------------------------------- devices */

static bool in_list(const char *list, const char *id) {
    if (!strcmp(list, "all")) return true;
    size_t n = strlen(id);
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        if (len == n && !strncmp(p, id, n)) return true;
        p += len + (p[len] == ',');
    }
    return false;
}

/* The devices asked for, in the library's order; ids not found are
 * reported as rows with an error. */
static size_t select_devices(const char *list, const elm_device_info *all, size_t n_all,
                             elm_device_info *out) {
    size_t n = 0;
    for (size_t i = 0; i < n_all && n < BENCH_MAX_DEVICES; i++)
        if (in_list(list, all[i].id)) out[n++] = all[i];
    if (!strcmp(list, "all")) return n;
    for (const char *p = list; *p && n < BENCH_MAX_DEVICES;) {
        size_t len = strcspn(p, ",");
        bool found = false;
        for (size_t i = 0; i < n_all; i++)
            found |= strlen(all[i].id) == len && !strncmp(p, all[i].id, len);
        if (!found && len > 0) {
            memset(&out[n], 0, sizeof out[n]);
            snprintf(out[n].id, sizeof out[n].id, "%.*s", (int)(len < 31 ? len : 31), p);
            snprintf(out[n].backend, sizeof out[n].backend, "none");
            n++;
        }
        p += len + (p[len] == ',');
    }
    return n;
}

static void missing_device(const bench_opts *o, const elm_device_info *d, bench_result *r) {
    memset(r, 0, sizeof *r);
    snprintf(r->device, sizeof r->device, "%s", d->id);
    snprintf(r->backend, sizeof r->backend, "none");
    bench_model_name(o, r->model, sizeof r->model);
    r->n_prompt = o->n_prompt;
    r->n_gen = o->n_gen;
    r->n_threads = o->n_threads > 0 ? (uint32_t)o->n_threads : o->default_threads;
    snprintf(r->error, sizeof r->error, "no such device on this machine (see `edgelm devices`)");
}

/* --------------------------------------------------------------- runs */

static int write_outputs(const bench_opts *o, const bench_system *sys, const bench_result *r,
                         size_t n) {
    int rc = 0;
    if (o->json_path && bench_write_json(o->json_path, sys, r, n) != 0) rc = 1;
    if (o->csv_path && bench_write_csv(o->csv_path, r, n) != 0) rc = 1;
    if (o->svg_path && bench_write_svg(o->svg_path, sys, r, n) != 0) rc = 1;
    return rc;
}

#define BENCH_MAX_MODELS 8

/* Splits --model A,B,... into paths (in place in buf). */
static size_t split_models(const char *list, char *buf, size_t cap, const char **out) {
    snprintf(buf, cap, "%s", list);
    size_t n = 0;
    for (char *p = buf; p && *p && n < BENCH_MAX_MODELS;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = 0;
        if (*p) out[n++] = p;
        p = comma ? comma + 1 : NULL;
    }
    return n;
}

/* Every model on every device: one table, then a recommendation per model. */
static int run_e2e(const bench_opts *o, const bench_system *sys, const elm_device_info *devs,
                   size_t n) {
    static bench_result res[BENCH_MAX_MODELS * BENCH_MAX_DEVICES];
    static char list[4096];
    const char *paths[BENCH_MAX_MODELS] = {o->model_path};
    size_t n_models = o->model_path ? split_models(o->model_path, list, sizeof list, paths) : 1;
    if (n_models == 0) return usage_error("--model wants a file%s", "");
    bool show = isatty(STDERR_FILENO);
    size_t n_measured = 0;
    for (size_t k = 0; k < n_models; k++) {
        bench_opts one = *o;
        one.model_path = paths[k];
        bench_result *r = res + k * n;
        for (size_t i = 0; i < n; i++) {
            if (!strcmp(devs[i].backend, "none")) {
                missing_device(&one, &devs[i], &r[i]);
                continue;
            }
            bench_measure_device(&one, &devs[i], &r[i], show);
            n_measured += r[i].ok || r[i].budget_exhausted;
        }
    }
    bench_print_table(stdout, res, n * n_models);
    for (size_t k = 0; k < n_models; k++) {
        bench_print_recommendation(stdout, res + k * n, n);
        if (o->store) {
            char key[256];
            bench_model_key(res[k * n].model, key, sizeof key);
            bench_store_results(key, res + k * n, n);
        }
    }
    fflush(stdout);
    int rc = write_outputs(o, sys, res, n * n_models);
    return n_measured == 0 ? 1 : rc;
}

static int run_ops(const bench_opts *o, const bench_system *sys, const elm_device_info *devs,
                   size_t n) {
    static bench_op_result ops[BENCH_MAX_DEVICES * BENCH_MAX_OPS];
    size_t n_ops = 0;
    if (o->csv_path || o->svg_path)
        fprintf(stderr, "edgelm bench --ops: --csv and --svg are ignored\n");
    bool show = isatty(STDERR_FILENO);
    for (size_t i = 0; i < n; i++) {
        if (!bench_ops_supported(devs[i].id)) {
            fprintf(stderr, "edgelm bench --ops: no op benchmarks for device %s yet\n", devs[i].id);
            continue;
        }
        size_t got = 0;
        bench_measure_ops(o, &devs[i], ops + n_ops, BENCH_MAX_OPS, &got, show);
        n_ops += got;
    }
    bench_print_ops(stdout, ops, n_ops);
    fflush(stdout);
    if (o->json_path && bench_write_ops_json(o->json_path, sys, ops, n_ops) != 0) return 1;
    return n_ops == 0 ? 1 : 0;
}

int bench_main(int argc, char **argv) {
    bench_opts o;
    default_opts(&o);
    int rc = parse_args(argc, argv, &o);
    if (rc < 0) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (rc == 0) rc = check_opts(&o);
    if (rc != 0) return rc;
    if (o.compare_old) return bench_compare(o.compare_old, o.compare_new, stdout);
    bench_system sys;
    bench_system_fill(&sys);
    static elm_device_info all[BENCH_MAX_DEVICES], devs[BENCH_MAX_DEVICES];
    size_t n_all = bench_probe_devices(all, BENCH_MAX_DEVICES, &sys);
    o.default_threads = sys.n_cores > 0 ? (uint32_t)sys.n_cores : 1;
    size_t n = select_devices(o.devices, all, n_all, devs);
    if (n == 0) return usage_error("no device matches '%s'", o.devices);
    return o.ops ? run_ops(&o, &sys, devs, n) : run_e2e(&o, &sys, devs, n);
}
