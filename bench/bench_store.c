/* bench_store.c: results kept in the cache directory, one JSON file per
 * model key, so that `run --device best` can pick this machine's fastest
 * device for a model without measuring again.
 *
 * File: $XDG_CACHE_HOME/edgelm/bench/<key>.json (default ~/.cache/edgelm),
 *   {"model": KEY, "best": {"gen_tps": ID, "ttft_ms": ID, "memory": ID},
 *    "devices": [{"device", "backend", "n_prompt", "n_gen", "n_threads",
 *                 "gen_tps", "ttft_ms", "total_bytes"}, ...]}
 * A new measurement replaces the entry of its device and keeps the others. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/bench_internal.h"
#include "bench/bench_json.h"

typedef struct stored {
    char device[32], backend[16];
    uint32_t n_prompt, n_gen, n_threads;
    double gen_tps, ttft_ms;
    uint64_t total_bytes;
} stored;

#define MAX_STORED (2 * BENCH_MAX_DEVICES)

static bool make_dirs(const char *path) {
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return false;
        *p = '/';
    }
    return mkdir(tmp, 0755) == 0 || errno == EEXIST;
}

/* <cache>/bench; false when neither XDG_CACHE_HOME nor HOME is usable. */
static bool store_dir(char *out, size_t cap) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && xdg[0] == '/')
        snprintf(out, cap, "%s/edgelm/bench", xdg);
    else if (home && home[0])
        snprintf(out, cap, "%s/.cache/edgelm/bench", home);
    else
        return false;
    return true;
}

static bool store_path(const char *key, char *out, size_t cap) {
    char dir[900], name[200];
    if (!store_dir(dir, sizeof dir)) return false;
    size_t n = 0;
    for (const char *p = key; *p && n + 1 < sizeof name; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-' || c == '_';
        name[n++] = ok ? c : '_';
    }
    name[n] = 0;
    snprintf(out, cap, "%s/%s.json", dir, n ? name : "_");
    return true;
}

/* ---------------------------------------------------------------- read */

static void read_entry(const bj_value *e, stored *s) {
    memset(s, 0, sizeof *s);
    const char *d = bj_str(bj_get(e, "device")), *b = bj_str(bj_get(e, "backend"));
    snprintf(s->device, sizeof s->device, "%s", d ? d : "");
    snprintf(s->backend, sizeof s->backend, "%s", b ? b : "");
    s->n_prompt = (uint32_t)bj_num(bj_get(e, "n_prompt"), 0);
    s->n_gen = (uint32_t)bj_num(bj_get(e, "n_gen"), 0);
    s->n_threads = (uint32_t)bj_num(bj_get(e, "n_threads"), 0);
    s->gen_tps = bj_num(bj_get(e, "gen_tps"), 0);
    s->ttft_ms = bj_num(bj_get(e, "ttft_ms"), 0);
    s->total_bytes = (uint64_t)bj_num(bj_get(e, "total_bytes"), 0);
}

/* The stored file of `key`, or NULL (missing, unreadable or another key's). */
static bj_value *load_store(const char *key) {
    char path[1200], err[256];
    if (!store_path(key, path, sizeof path) || access(path, R_OK) != 0) return NULL;
    bj_value *root = bj_parse_file(path, err, sizeof err);
    const char *model = bj_str(bj_get(root, "model"));
    if (root && (!model || strcmp(model, key))) {
        bj_free(root);
        return NULL;
    }
    return root;
}

static size_t read_entries(const char *key, stored *out, size_t cap) {
    bj_value *root = load_store(key);
    const bj_value *devs = bj_get(root, "devices");
    size_t n = 0;
    for (size_t i = 0; devs && devs->type == BJ_ARRAY && i < devs->n && n < cap; i++) {
        read_entry(&devs->items[i], &out[n]);
        if (out[n].device[0]) n++;
    }
    bj_free(root);
    return n;
}

int bench_best_device(const char *model_key, char *device, size_t cap) {
    if (!model_key || !device || cap == 0) return -1;
    bj_value *root = load_store(model_key);
    const char *best = bj_str(bj_get(bj_get(root, "best"), "gen_tps"));
    int rc = -1;
    if (best && best[0] && strlen(best) < cap) {
        snprintf(device, cap, "%s", best);
        rc = 0;
    }
    bj_free(root);
    return rc;
}

/* --------------------------------------------------------------- write */

static void merge(stored *all, size_t *n, const bench_result *r) {
    stored s = {.n_prompt = r->n_prompt,
                .n_gen = r->n_gen,
                .n_threads = r->n_threads,
                .gen_tps = r->gen_tps,
                .ttft_ms = r->ttft_ms,
                .total_bytes = bench_total_bytes(r)};
    snprintf(s.device, sizeof s.device, "%s", r->device);
    snprintf(s.backend, sizeof s.backend, "%s", r->backend);
    for (size_t i = 0; i < *n; i++)
        if (!strcmp(all[i].device, s.device)) {
            all[i] = s;
            return;
        }
    if (*n < MAX_STORED) all[(*n)++] = s;
}

/* Higher is better; -inf when the entry lacks the figure. Objectives:
 * 0 generation tok/s, 1 time to first token, 2 memory. */
static double entry_score(const stored *s, int objective) {
    if (objective == 0) return s->gen_tps > 0 ? s->gen_tps : -INFINITY;
    if (objective == 1) return s->ttft_ms > 0 ? -s->ttft_ms : -INFINITY;
    return s->total_bytes > 0 ? -(double)s->total_bytes : -INFINITY;
}

static int best_entry(const stored *s, size_t n, int objective) {
    int best = -1;
    for (size_t i = 0; i < n; i++) {
        double v = entry_score(&s[i], objective);
        if (v > -INFINITY && (best < 0 || v > entry_score(&s[best], objective))) best = (int)i;
    }
    return best;
}

static void write_store(FILE *f, const char *key, const stored *s, size_t n) {
    static const char *const names[] = {"gen_tps", "ttft_ms", "memory"};
    fputs("{\"model\": ", f);
    bench_json_string(f, key);
    fputs(",\n \"best\": {", f);
    for (int o = 0; o < 3; o++) {
        int b = best_entry(s, n, o);
        fprintf(f, "%s\"%s\": ", o ? ", " : "", names[o]);
        bench_json_string(f, b >= 0 ? s[b].device : "");
    }
    fputs("},\n \"devices\": [", f);
    for (size_t i = 0; i < n; i++) {
        fputs(i ? ",\n  {\"device\": " : "\n  {\"device\": ", f);
        bench_json_string(f, s[i].device);
        fputs(", \"backend\": ", f);
        bench_json_string(f, s[i].backend);
        fprintf(f, ", \"n_prompt\": %u, \"n_gen\": %u, \"n_threads\": %u, \"gen_tps\": ",
                s[i].n_prompt, s[i].n_gen, s[i].n_threads);
        bench_json_number(f, s[i].gen_tps);
        fputs(", \"ttft_ms\": ", f);
        bench_json_number(f, s[i].ttft_ms);
        fprintf(f, ", \"total_bytes\": %llu}", (unsigned long long)s[i].total_bytes);
    }
    fputs("\n]}\n", f);
}

void bench_store_results(const char *key, const bench_result *r, size_t n) {
    static stored all[MAX_STORED];
    char dir[900], path[1200], tmp[1300];
    if (!store_dir(dir, sizeof dir) || !store_path(key, path, sizeof path)) {
        fprintf(stderr,
                "edgelm bench: warning: no cache directory (HOME unset); results not stored\n");
        return;
    }
    size_t count = read_entries(key, all, MAX_STORED);
    for (size_t i = 0; i < n; i++)
        if (bench_result_usable(&r[i])) merge(all, &count, &r[i]);
    snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid());
    FILE *f = make_dirs(dir) ? fopen(tmp, "w") : NULL;
    if (f) write_store(f, key, all, count);
    bool ok = f && !ferror(f);
    if (f && fclose(f) != 0) ok = false;
    /* rename: a reader never sees half a file. */
    if (ok && rename(tmp, path) != 0) ok = false;
    if (!ok) {
        if (f) unlink(tmp);
        fprintf(stderr, "edgelm bench: warning: cannot store the results in %s\n", path);
    }
}
