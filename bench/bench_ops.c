/* bench_ops.c: op micro-benchmarks through the backend interface: copy
 * bandwidth, matrix-vector and matrix-matrix products, decode attention.
 *
 * Each op is one node in a one-node graph, run on a backend made by the
 * device's entry in OPS_DEVICES. Weights are host tensors (buf NULL), as the
 * engine hands memory-mapped weights to a backend. Every figure is the
 * median time of repeated runs after one warm-up run; the weights of the
 * matrix-vector products are sized well beyond the last-level cache so that
 * each run streams them from memory. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/backend.h"
#if defined(ELM_HAVE_VULKAN) && ELM_HAVE_VULKAN
#include "backends/vulkan/vk_backend.h"
#endif
#include "bench/bench_internal.h"
#include "bench/bench_ops.h"
#include "quant/quant.h"

#define OP_MAX_RUNS 64
#define OP_MIN_RUNS 3

/* ---------------------------------------------------------- the devices */

static elm_status cpu_create(const elm_device_info *dev, int n_threads, be_backend **out) {
    return elmi_be_cpu_new(n_threads, out);
}

/* A device backend adds its entry here: id "vulkan" matches "vulkan:N". */
static const ops_device OPS_DEVICES[] = {
    {"cpu", cpu_create, bench_cpu_copy_gbps, bench_cpu_read_gbps, NULL},
#if defined(ELM_HAVE_VULKAN) && ELM_HAVE_VULKAN
    {"vulkan", bench_vk_create, bench_vk_copy_gbps, NULL, elmi_be_vk_release_weights},
#endif
};

static const ops_device *find_device(const char *id) {
    for (size_t i = 0; i < sizeof OPS_DEVICES / sizeof *OPS_DEVICES; i++) {
        size_t n = strlen(OPS_DEVICES[i].id);
        if (!strncmp(id, OPS_DEVICES[i].id, n) && (id[n] == 0 || id[n] == ':'))
            return &OPS_DEVICES[i];
    }
    return NULL;
}

bool bench_ops_supported(const char *device_id) {
    return find_device(device_id) != NULL;
}

/* ------------------------------------------------------------ timing */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

elm_status bench_time_median(bench_run_fn fn, void *arg, double budget_ms, double *ms) {
    return bench_time_runs(fn, arg, budget_ms, false, ms);
}

elm_status bench_time_runs(bench_run_fn fn, void *arg, double budget_ms, bool best, double *ms) {
    double t[OP_MAX_RUNS], spent = 0;
    double w0 = bench_now_ms();
    elm_status st = fn(arg); /* warm-up */
    /* A run slower than the budget (a scalar fallback kernel) is timed
     * once: the figure is already clear and the device budget is finite. */
    int min_runs = bench_now_ms() - w0 > budget_ms ? 1 : OP_MIN_RUNS;
    int n = 0;
    while (st == ELM_OK && n < OP_MAX_RUNS && (n < min_runs || spent < budget_ms)) {
        double t0 = bench_now_ms();
        st = fn(arg);
        t[n] = bench_now_ms() - t0;
        spent += t[n++];
    }
    *ms = n ? bench_median(t, n) : 0;
    if (best && n) *ms = t[0]; /* sorted by bench_median */
    return st;
}

/* --------------------------------------------------------------- sizes */

/* Bytes of the largest CPU cache, from sysfs; 32 MiB when unknown. */
static size_t last_level_cache(void) {
    size_t best = 0;
    for (int i = 0; i < 16; i++) {
        char path[96];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        FILE *f = fopen(path, "r");
        if (!f) break;
        unsigned long v = 0;
        char unit = 0;
        if (fscanf(f, "%lu%c", &v, &unit) >= 1) {
            size_t bytes = v * (unit == 'K' ? 1024ul : unit == 'M' ? 1024ul * 1024 : 1);
            if (bytes > best) best = bytes;
        }
        fclose(f);
    }
    return best ? best : 32ul << 20;
}

size_t bench_stream_bytes(void) {
    size_t want = 4 * last_level_cache();
    if (want < (64ul << 20)) want = 64ul << 20;
    if (want > (512ul << 20)) want = 512ul << 20;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    /* Two such buffers must leave most of a small board's memory free. */
    if (pages > 0 && page > 0 && want > (size_t)pages * (size_t)page / 8)
        want = (size_t)pages * (size_t)page / 8;
    return want;
}

/* ---------------------------------------------------------- the child */

typedef struct ops_job {
    const bench_opts *o;
    const elm_device_info *dev;
    int n_threads;
} ops_job;

static void send_end(bench_ops_ctx *c, const char *why) {
    bench_op_result r = {.kind = OPMSG_END};
    snprintf(r.device, sizeof r.device, "%s", c->device);
    snprintf(r.note, sizeof r.note, "%s", why);
    bench_child_send(c->fd, &r, sizeof r);
}

static void run_copy(bench_ops_ctx *c, const ops_device *d) {
    bench_op_result r = {.kind = OPMSG_RESULT, .n_tokens = 0};
    snprintf(r.device, sizeof r.device, "%s", c->device);
    snprintf(r.op, sizeof r.op, "copy");
    snprintf(r.type, sizeof r.type, "-");
    size_t bytes = bench_stream_bytes();
    r.rows = 1;
    r.cols = (int64_t)bytes;
    elm_status st = d->copy_gbps
                        ? d->copy_gbps(c->be, c->n_threads, bytes, BENCH_OP_TIME_MS, &r.ms, &r.gbps)
                        : ELM_ERR_UNSUPPORTED;
    if (st != ELM_OK) snprintf(r.note, sizeof r.note, "copy failed: %s", elm_strerror(st));
    c->copy_gbps = r.gbps;
    r.pct_copy_bw = r.gbps > 0 ? 100.0 : 0;
    bench_child_send(c->fd, &r, sizeof r);
}

static void run_read(bench_ops_ctx *c, const ops_device *d) {
    if (!d->read_gbps) return;
    bench_op_result r = {.kind = OPMSG_RESULT, .n_tokens = 0};
    snprintf(r.device, sizeof r.device, "%s", c->device);
    snprintf(r.op, sizeof r.op, "read");
    snprintf(r.type, sizeof r.type, "-");
    size_t bytes = bench_stream_bytes();
    r.rows = 1;
    r.cols = (int64_t)bytes;
    elm_status st = d->read_gbps(c->be, c->n_threads, bytes, BENCH_OP_TIME_MS, &r.ms, &r.gbps);
    if (st != ELM_OK) snprintf(r.note, sizeof r.note, "read failed: %s", elm_strerror(st));
    c->read_gbps = r.gbps;
    r.pct_copy_bw = c->copy_gbps > 0 ? 100.0 * r.gbps / c->copy_gbps : 0;
    r.pct_read_bw = r.gbps > 0 ? 100.0 : 0;
    bench_child_send(c->fd, &r, sizeof r);
}

static bool over(const bench_ops_ctx *c) {
    return bench_now_ms() >= c->deadline_ms;
}

static void ops_child(int fd, void *arg) {
    const ops_job *job = arg;
    const ops_device *d = find_device(job->dev->id);
    bench_ops_ctx c = {.fd = fd,
                       .device = job->dev->id,
                       .dev = d,
                       .n_threads = job->n_threads,
                       .deadline_ms = bench_now_ms() + job->o->budget_s * 1e3};
    elm_status st = d ? d->create(job->dev, job->n_threads, &c.be) : ELM_ERR_UNSUPPORTED;
    if (st != ELM_OK) {
        send_end(&c, elm_strerror(st));
        return;
    }
    run_copy(&c, d);
    run_read(&c, d);
    static const int types[] = {QT_F32,  QT_F16,  QT_Q8_0, QT_Q4_0, QT_Q4_1,
                                QT_Q5_0, QT_Q5_1, QT_Q4_K, QT_Q5_K, QT_Q6_K};
    size_t n_types = sizeof types / sizeof *types;
    /* The first mat-vec runs even past the budget: a slow or loaded machine
     * still gets one kernel figure beside copy and read. */
    for (size_t i = 0; i < n_types && (i == 0 || !over(&c)); i++)
        bench_op_mul_mat(&c, types[i], 1);
    if (!over(&c)) bench_op_mul_mat(&c, QT_Q4_0, 128);
    if (!over(&c)) bench_op_mul_mat(&c, QT_F32, 128);
    if (!over(&c)) bench_op_attention(&c, 512, 1);
    if (!over(&c)) bench_op_attention(&c, 2048, 1);
    if (!over(&c)) bench_op_attention(&c, 512, 128);
    send_end(&c, over(&c) ? "budget exhausted" : "ok");
    be_free(c.be);
}

/* ---------------------------------------------------------- the parent */

typedef struct ops_acc {
    bench_op_result *out;
    size_t cap, n;
    bool ended, show;
    char end_note[96];
} ops_acc;

static void on_op(const void *msg, void *arg) {
    ops_acc *a = arg;
    const bench_op_result *r = msg;
    if (r->kind == OPMSG_END) {
        a->ended = true;
        snprintf(a->end_note, sizeof a->end_note, "%s", r->note);
        return;
    }
    if (a->n < a->cap) a->out[a->n++] = *r;
    if (a->show) {
        fprintf(stderr, "\r\033[K%s: %s %s done", r->device, r->op, r->type);
        fflush(stderr);
    }
}

void bench_measure_ops(const bench_opts *o, const elm_device_info *dev, bench_op_result *ops,
                       size_t cap, size_t *n, bool show) {
    ops_job job = {
        .o = o, .dev = dev, .n_threads = o->n_threads > 0 ? o->n_threads : (int)dev->n_threads};
    if (job.n_threads <= 0) job.n_threads = 1;
    ops_acc a = {.out = ops, .cap = cap, .show = show};
    int code;
    /* The child stops itself at the budget after its first three figures
     * (copy, read, one mat-vec), which a loaded machine may take many
     * seconds to reach; the kill is only for a hang. */
    child_end how =
        bench_child_run(ops_child, &job, sizeof *ops, o->budget_s + 60.0, on_op, &a, &code);
    if (show) fprintf(stderr, "\r\033[K");
    if (how == CHILD_TIMEOUT)
        fprintf(stderr, "edgelm bench --ops: %s: budget exhausted; partial results\n", dev->id);
    else if (how != CHILD_EXITED || !a.ended)
        fprintf(stderr, "edgelm bench --ops: %s: the measuring process failed\n", dev->id);
    else if (strcmp(a.end_note, "ok"))
        fprintf(stderr, "edgelm bench --ops: %s: %s\n", dev->id, a.end_note);
    *n = a.n;
}
