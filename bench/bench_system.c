/* bench_system.c: what the reports say about the machine and the model. */
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/bench_internal.h"

#ifndef ELM_GIT_COMMIT
#define ELM_GIT_COMMIT "unknown"
#endif

void bench_system_fill(bench_system *sys) {
    memset(sys, 0, sizeof *sys);
    snprintf(sys->cpu, sizeof sys->cpu, "unknown");
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    sys->n_logical = n > 0 ? (int)n : 1;
    sys->n_cores = sys->n_logical;
    struct utsname u;
    if (uname(&u) == 0)
        snprintf(sys->os, sizeof sys->os, "%s %s %s", u.sysname, u.release, u.machine);
    else
        snprintf(sys->os, sizeof sys->os, "unknown");
    snprintf(sys->version, sizeof sys->version, "%s", elm_version());
    snprintf(sys->commit, sizeof sys->commit, "%s", ELM_GIT_COMMIT);
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm)) strftime(sys->time, sizeof sys->time, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void bench_model_name(const bench_opts *o, char *out, size_t cap) {
    if (o->model_path) {
        const char *slash = strrchr(o->model_path, '/');
        snprintf(out, cap, "%s", slash ? slash + 1 : o->model_path);
    } else {
        snprintf(out, cap, "shape:%s:%s", o->shape, o->type);
    }
}

void bench_model_key(const char *model_path, char *key, size_t cap) {
    if (!key || cap == 0) return;
    if (!model_path) model_path = "";
    const char *slash = strncmp(model_path, "shape:", 6) ? strrchr(model_path, '/') : NULL;
    snprintf(key, cap, "%s", slash ? slash + 1 : model_path);
}

uint64_t bench_total_bytes(const bench_result *r) {
    /* The CPU's "device" memory is host memory, already in the peak RSS. */
    bool own_memory = strcmp(r->backend, "cpu") != 0;
    return r->peak_host_bytes + (own_memory ? r->device_bytes : 0);
}

bool bench_result_usable(const bench_result *r) {
    return !r->error[0] && (r->gen_tps > 0 || r->ttft_ms > 0);
}
