/* bench_report.c: the Markdown table, the recommendation, JSON and CSV. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bench/bench_internal.h"

#define MIB (1024.0 * 1024.0)

/* ----------------------------------------------------------- the fields */

typedef enum { F_STR, F_U32, F_U64, F_DBL, F_BOOL, F_TOTAL } field_type;

typedef struct field {
    const char *key;
    field_type type;
    size_t offset;
} field;

#define FLD(k, t)                                                                                  \
    { #k, t, offsetof(bench_result, k) }
/* The keys of a result, in the order of the JSON object and the CSV columns. */
static const field FIELDS[] = {
    FLD(device, F_STR),
    FLD(backend, F_STR),
    FLD(device_name, F_STR),
    FLD(model, F_STR),
    FLD(n_prompt, F_U32),
    FLD(n_gen, F_U32),
    FLD(n_ctx, F_U32),
    FLD(n_threads, F_U32),
    FLD(n_reps, F_U32),
    FLD(load_ms, F_DBL),
    FLD(load_cold_ms, F_DBL),
    FLD(ttft_ms, F_DBL),
    FLD(ttft_ms_stddev, F_DBL),
    FLD(prompt_tps, F_DBL),
    FLD(prompt_tps_stddev, F_DBL),
    FLD(gen_tps, F_DBL),
    FLD(gen_tps_stddev, F_DBL),
    FLD(peak_host_bytes, F_U64),
    FLD(device_bytes, F_U64),
    FLD(weights_bytes, F_U64),
    FLD(kv_bytes, F_U64),
    FLD(scratch_bytes, F_U64),
    FLD(read_gbps, F_DBL),
    FLD(gen_bytes_per_token, F_U64),
    FLD(gen_gbps, F_DBL),
    FLD(gen_pct_read_bw, F_DBL),
    {"total_bytes", F_TOTAL, 0},
    FLD(wall_ms, F_DBL),
    FLD(budget_exhausted, F_BOOL),
    FLD(error, F_STR),
};
#define N_FIELDS (sizeof FIELDS / sizeof *FIELDS)

static const void *field_ptr(const bench_result *r, const field *f) {
    return (const char *)r + f->offset;
}

/* Writes a field's value; strings through `str` (JSON or CSV quoting). */
static void put_field(FILE *f, const bench_result *r, const field *fd,
                      void (*str)(FILE *, const char *)) {
    const void *p = field_ptr(r, fd);
    switch (fd->type) {
    case F_STR: str(f, p); break;
    case F_U32: fprintf(f, "%u", *(const uint32_t *)p); break;
    case F_U64: fprintf(f, "%llu", (unsigned long long)*(const uint64_t *)p); break;
    case F_DBL: bench_json_number(f, *(const double *)p); break;
    case F_BOOL: fputs(*(const bool *)p ? "true" : "false", f); break;
    case F_TOTAL: fprintf(f, "%llu", (unsigned long long)bench_total_bytes(r)); break;
    }
}

/* ---------------------------------------------------------------- JSON */

void bench_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", f);
        else if (*p == '\t')
            fputs("\\t", f);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

void bench_json_number(FILE *f, double v) {
    /* JSON has no NaN or infinity. */
    fprintf(f, "%.6g", isfinite(v) ? v : 0.0);
}

void bench_json_system(FILE *f, const bench_system *s) {
    fputs("\"system\": {\"cpu\": ", f);
    bench_json_string(f, s->cpu);
    fprintf(f, ", \"n_cores\": %d, \"n_logical_cores\": %d, \"os\": ", s->n_cores, s->n_logical);
    bench_json_string(f, s->os);
    fputs(", \"edgelm_version\": ", f);
    bench_json_string(f, s->version);
    fputs(", \"git_commit\": ", f);
    bench_json_string(f, s->commit);
    fputs(", \"time\": ", f);
    bench_json_string(f, s->time);
    fputs("}", f);
}

static FILE *open_out(const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) fprintf(stderr, "edgelm bench: cannot write %s\n", path);
    return f;
}

static int close_out(FILE *f, const char *path) {
    bool bad = ferror(f) != 0;
    if (fclose(f) != 0 || bad) {
        fprintf(stderr, "edgelm bench: error writing %s\n", path);
        return 1;
    }
    return 0;
}

int bench_write_json(const char *path, const bench_system *sys, const bench_result *r, size_t n) {
    FILE *f = open_out(path);
    if (!f) return 1;
    fputs("{", f);
    bench_json_system(f, sys);
    fputs(",\n\"results\": [", f);
    for (size_t i = 0; i < n; i++) {
        fputs(i ? ",\n  {" : "\n  {", f);
        for (size_t k = 0; k < N_FIELDS; k++) {
            fprintf(f, "%s\"%s\": ", k ? ", " : "", FIELDS[k].key);
            put_field(f, &r[i], &FIELDS[k], bench_json_string);
        }
        fputs("}", f);
    }
    fputs("\n]}\n", f);
    return close_out(f, path);
}

static void put_op(FILE *f, const bench_op_result *op) {
    fputs("{\"device\": ", f);
    bench_json_string(f, op->device);
    fputs(", \"op\": ", f);
    bench_json_string(f, op->op);
    fputs(", \"type\": ", f);
    bench_json_string(f, op->type);
    fprintf(f,
            ", \"rows\": %lld, \"cols\": %lld, \"n_tokens\": %lld, \"ms\": ", (long long)op->rows,
            (long long)op->cols, (long long)op->n_tokens);
    bench_json_number(f, op->ms);
    fputs(", \"gbps\": ", f);
    bench_json_number(f, op->gbps);
    fputs(", \"gflops\": ", f);
    bench_json_number(f, op->gflops);
    fputs(", \"pct_copy_bw\": ", f);
    bench_json_number(f, op->pct_copy_bw);
    fputs(", \"pct_read_bw\": ", f);
    bench_json_number(f, op->pct_read_bw);
    fputs(", \"note\": ", f);
    bench_json_string(f, op->note);
    fputs("}", f);
}

int bench_write_ops_json(const char *path, const bench_system *sys, const bench_op_result *ops,
                         size_t n) {
    FILE *f = open_out(path);
    if (!f) return 1;
    fputs("{", f);
    bench_json_system(f, sys);
    fputs(",\n\"ops\": [", f);
    for (size_t i = 0; i < n; i++) {
        fputs(i ? ",\n  " : "\n  ", f);
        put_op(f, &ops[i]);
    }
    fputs("\n]}\n", f);
    return close_out(f, path);
}

/* ----------------------------------------------------------------- CSV */

static void csv_string(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

int bench_write_csv(const char *path, const bench_result *r, size_t n) {
    FILE *f = open_out(path);
    if (!f) return 1;
    for (size_t k = 0; k < N_FIELDS; k++) fprintf(f, "%s%s", k ? "," : "", FIELDS[k].key);
    fputc('\n', f);
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < N_FIELDS; k++) {
            if (k) fputc(',', f);
            put_field(f, &r[i], &FIELDS[k], csv_string);
        }
        fputc('\n', f);
    }
    return close_out(f, path);
}

/* ------------------------------------------------------------ Markdown */

static void fmt_mean_sd(char *buf, size_t cap, double mean, double sd, bool have) {
    if (!have)
        snprintf(buf, cap, "-");
    else if (sd > 0)
        snprintf(buf, cap, "%.1f ± %.1f", mean, sd);
    else
        snprintf(buf, cap, "%.1f", mean);
}

static void row_note(const bench_result *r, char *buf, size_t cap) {
    if (r->error[0] && r->budget_exhausted)
        snprintf(buf, cap, "budget exhausted: %s", r->error);
    else if (r->error[0])
        snprintf(buf, cap, "error: %s", r->error);
    else if (r->budget_exhausted)
        snprintf(buf, cap, "budget exhausted after %u complete reps", r->n_reps);
    else
        buf[0] = 0;
    for (char *p = buf; *p; p++)
        if (*p == '|' || *p == '\n') *p = ' '; /* would break the table */
}

static void print_row(FILE *f, const bench_result *r) {
    char pp[48], gg[48], ttft[32], load[32], note[300];
    bool have = r->ok || r->budget_exhausted;
    fmt_mean_sd(pp, sizeof pp, r->prompt_tps, r->prompt_tps_stddev, have && r->prompt_tps > 0);
    fmt_mean_sd(gg, sizeof gg, r->gen_tps, r->gen_tps_stddev, have && r->gen_tps > 0);
    snprintf(ttft, sizeof ttft, r->ttft_ms > 0 ? "%.1f" : "-", r->ttft_ms);
    if (r->load_cold_ms > 0 && fabs(r->load_cold_ms - r->load_ms) > 1e-9)
        snprintf(load, sizeof load, "%.0f (cold %.0f)", r->load_ms, r->load_cold_ms);
    else
        snprintf(load, sizeof load, r->load_ms > 0 ? "%.0f" : "-", r->load_ms);
    if (!have) snprintf(load, sizeof load, "-");
    row_note(r, note, sizeof note);
    char mem[96], host[32], roof[48] = "-";
    if (have && r->gen_pct_read_bw > 0)
        snprintf(roof, sizeof roof, "%.1f (%.0f%% of %.1f)", r->gen_gbps, r->gen_pct_read_bw,
                 r->read_gbps);
    snprintf(host, sizeof host, have && r->peak_host_bytes ? "%.1f" : "-",
             r->peak_host_bytes / MIB);
    if (have && r->device_bytes)
        snprintf(mem, sizeof mem, "%.1f (%.1f / %.1f / %.1f)", r->device_bytes / MIB,
                 r->weights_bytes / MIB, r->kv_bytes / MIB, r->scratch_bytes / MIB);
    else
        snprintf(mem, sizeof mem, "-");
    fprintf(f, "| %s | %s | %s | %u | %u | %u | %s | %s | %s | %s | %s | %s | %s | %s |\n",
            r->device, r->backend, r->model, r->n_prompt, r->n_gen, r->n_threads, load, ttft, pp,
            gg, roof, host, mem, note);
}

void bench_print_table(FILE *f, const bench_result *r, size_t n) {
    fputs("| device | backend | model | prompt | gen | threads | load ms | TTFT ms | prompt tok/s "
          "| gen tok/s | gen GB/s (% of read GB/s) | peak host MiB | device MiB (weights / KV / "
          "scratch) | note |\n"
          "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|\n",
          f);
    for (size_t i = 0; i < n; i++) print_row(f, &r[i]);
}

/* Index of the best usable row by `score` (higher is better), or -1. */
static int best_row(const bench_result *r, size_t n, double (*score)(const bench_result *)) {
    int best = -1;
    for (size_t i = 0; i < n; i++) {
        if (!bench_result_usable(&r[i]) || !(score(&r[i]) > -INFINITY)) continue;
        if (best < 0 || score(&r[i]) > score(&r[best])) best = (int)i;
    }
    return best;
}

static double score_ttft(const bench_result *r) {
    return r->ttft_ms > 0 ? -r->ttft_ms : -INFINITY;
}

static double score_gen(const bench_result *r) {
    return r->gen_tps > 0 ? r->gen_tps : -INFINITY;
}

static double score_mem(const bench_result *r) {
    uint64_t t = bench_total_bytes(r);
    return t > 0 ? -(double)t : -INFINITY;
}

void bench_print_recommendation(FILE *f, const bench_result *r, size_t n) {
    int t = best_row(r, n, score_ttft), g = best_row(r, n, score_gen),
        m = best_row(r, n, score_mem);
    if (t < 0 && g < 0 && m < 0) {
        fputs("\nRecommendation: no device produced figures.\n", f);
        return;
    }
    fprintf(f, "\nRecommendation for %s on this machine:\n", r[0].model);
    if (t >= 0)
        fprintf(f, "- lowest time to first token: %s (%.1f ms)\n", r[t].device, r[t].ttft_ms);
    if (g >= 0)
        fprintf(f, "- highest generation speed: %s (%.1f tok/s)\n", r[g].device, r[g].gen_tps);
    if (m >= 0)
        fprintf(f, "- lowest memory: %s (%.1f MiB)\n", r[m].device, bench_total_bytes(&r[m]) / MIB);
}

void bench_print_ops(FILE *f, const bench_op_result *ops, size_t n) {
    fputs("| device | op | type | rows x cols | tokens | ms | GB/s | GFLOP/s | % copy BW | % read BW "
          "| note |\n"
          "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n",
          f);
    for (size_t i = 0; i < n; i++) {
        const bench_op_result *o = &ops[i];
        char read_pct[16] = "-";
        if (o->pct_read_bw > 0) snprintf(read_pct, sizeof read_pct, "%.1f", o->pct_read_bw);
        fprintf(f, "| %s | %s | %s | %lld x %lld | %lld | %.3f | %.2f | %.2f | %.1f | %s | %s |\n",
                o->device, o->op, o->type, (long long)o->rows, (long long)o->cols,
                (long long)o->n_tokens, o->ms, o->gbps, o->gflops, o->pct_copy_bw, read_pct,
                o->note);
    }
}
