/* bench_internal.h: types shared by the files of the bench harness. */
#ifndef ELM_BENCH_INTERNAL_H
#define ELM_BENCH_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "edgelm.h"
#include "edgelm_tools.h"

#define BENCH_MAX_DEVICES 16
#define BENCH_MAX_REPS 100
#define BENCH_MAX_OPS 32

typedef struct bench_opts {
    const char *model_path; /* NULL: the built-in shape below */
    const char *shape;
    const char *type;
    const char *devices; /* "all" or a comma-separated list of ids */
    uint32_t n_prompt, n_gen, n_reps, n_ctx;
    int n_threads;            /* 0: the backend's default */
    uint32_t default_threads; /* what 0 means: the CPU's physical cores */
    double budget_s;          /* per device */
    const char *json_path, *csv_path, *svg_path;
    bool ops;
    bool store; /* write the results to the cache directory */
    bool pin;   /* pin the CPU backend's worker threads to cores */
    bool profile; /* per-op device profile of the repetitions, printed by each child */
    const char *compare_old, *compare_new;
} bench_opts;

/* What one device measured. Sent by the measuring child over a pipe after
 * every phase, so it stays fixed-size and under PIPE_BUF. */
typedef struct bench_result {
    char device[32];
    char backend[16];
    char device_name[128];
    char model[160];
    char error[240]; /* "" when the device ran */
    uint32_t n_prompt, n_gen, n_ctx, n_threads;
    uint32_t n_reps;     /* counted repetitions completed */
    double load_ms;      /* load + context + first forward pass, warm pipeline cache */
    double load_cold_ms; /* the same with an empty pipeline cache */
    double ttft_ms, ttft_ms_stddev;
    double prompt_tps, prompt_tps_stddev;
    double gen_tps, gen_tps_stddev;
    uint64_t peak_host_bytes;
    uint64_t device_bytes, weights_bytes, kv_bytes, scratch_bytes;
    /* The decode roofline (CPU devices; 0 elsewhere): the read bandwidth
     * measured in the same run after the repetitions, the bytes of weights
     * one generated token reads (all but the token embeddings, unless they
     * are also the output matrix), and gen_tps times those bytes. */
    double read_gbps;
    uint64_t gen_bytes_per_token;
    double gen_gbps, gen_pct_read_bw;
    double wall_ms;            /* the device's whole run, as the parent saw it */
    int32_t phase, rep, token; /* progress, for the status line */
    bool budget_exhausted;
    bool ok; /* the run finished */
} bench_result;

enum { PHASE_START, PHASE_LOAD_COLD, PHASE_LOAD, PHASE_WARMUP, PHASE_REP, PHASE_DONE };

/* One op micro-benchmark figure. */
typedef struct bench_op_result {
    int32_t kind; /* OPMSG_RESULT, or OPMSG_END closing a device's run */
    char device[32];
    char op[16]; /* "copy", "mul_mat_vec", "mul_mat", "attention" */
    char type[8];
    int64_t rows, cols, n_tokens;
    double ms; /* median time of one run */
    double gbps, gflops, pct_copy_bw;
    double pct_read_bw; /* against the "read" op (CPU): the roofline of decoding, which reads */
    char note[96];
} bench_op_result;

enum { OPMSG_RESULT, OPMSG_END };

typedef struct bench_system {
    char cpu[256];
    int n_cores, n_logical;
    char os[256];
    char version[32];
    char commit[48];
    char time[32]; /* ISO 8601 UTC */
} bench_system;

/* ------------------------------------------------------------- children */

typedef enum child_end {
    CHILD_EXITED,  /* exit status in code */
    CHILD_CRASHED, /* signal in code */
    CHILD_TIMEOUT, /* killed by the parent */
    CHILD_NOSTART, /* fork or pipe failed */
} child_end;

typedef void (*child_fn)(int fd, void *arg);
typedef void (*child_msg_fn)(const void *msg, void *arg);

/* Runs fn(fd, arg) in a forked child, which sends fixed-size messages of
 * msg_size bytes on fd; on_msg sees each one as it arrives. Kills the child
 * after timeout_s seconds. Returns how it ended; *code as described above. */
child_end bench_child_run(child_fn fn, void *arg, size_t msg_size, double timeout_s,
                          child_msg_fn on_msg, void *msg_arg, int *code);
/* In the child: sends one message; false when the parent is gone. */
bool bench_child_send(int fd, const void *msg, size_t size);
/* Monotonic milliseconds. */
double bench_now_ms(void);

/* ------------------------------------------------------------- the work */

/* Lists the devices (in a child, so that no driver thread starts in this
 * process). Returns the count; *sys receives the CPU's name and cores. */
size_t bench_probe_devices(elm_device_info *out, size_t cap, bench_system *sys);
/* Measures one device in a child process. */
void bench_measure_device(const bench_opts *o, const elm_device_info *dev, bench_result *out,
                          bool progress);
/* Runs the op micro-benchmarks of one device in a child; appends to ops. */
void bench_measure_ops(const bench_opts *o, const elm_device_info *dev, bench_op_result *ops,
                       size_t cap, size_t *n, bool progress);
/* True when the ops harness can drive this device. */
bool bench_ops_supported(const char *device_id);

/* ------------------------------------------------------------- reports */

void bench_system_fill(bench_system *sys);
void bench_model_name(const bench_opts *o, char *out, size_t cap);
/* Host plus (for a device with its own memory) device bytes. */
uint64_t bench_total_bytes(const bench_result *r);
bool bench_result_usable(const bench_result *r);

void bench_print_table(FILE *f, const bench_result *r, size_t n);
void bench_print_recommendation(FILE *f, const bench_result *r, size_t n);
void bench_print_ops(FILE *f, const bench_op_result *ops, size_t n);
int bench_write_json(const char *path, const bench_system *sys, const bench_result *r, size_t n);
int bench_write_ops_json(const char *path, const bench_system *sys, const bench_op_result *ops,
                         size_t n);
int bench_write_csv(const char *path, const bench_result *r, size_t n);
int bench_write_svg(const char *path, const bench_system *sys, const bench_result *r, size_t n);
/* Stores the results in the cache directory; warns on failure. */
void bench_store_results(const char *model_key, const bench_result *r, size_t n);
int bench_compare(const char *old_path, const char *new_path, FILE *out);

/* JSON output helpers. */
void bench_json_string(FILE *f, const char *s);
void bench_json_number(FILE *f, double v);
void bench_json_system(FILE *f, const bench_system *sys);

#endif
