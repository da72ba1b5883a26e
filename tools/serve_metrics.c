/* serve_metrics.c: counters and histograms in Prometheus text format
 * (tools/serve.h). Process-wide: there is one server per process. */
#define _POSIX_C_SOURCE 200809L
#include "tools/serve.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bucket bounds in seconds, shared by both histograms. */
static const double BOUNDS[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
#define N_BOUNDS (sizeof BOUNDS / sizeof *BOUNDS)

typedef struct histogram {
    uint64_t buckets[N_BOUNDS]; /* counts of observations <= BOUNDS[i] (not cumulative) */
    uint64_t count;
    double sum;
} histogram;

static struct {
    pthread_mutex_t mu;
    uint64_t by_class[6]; /* requests by status class: [2] 2xx, [4] 4xx, [5] 5xx */
    uint64_t prompt_tokens, gen_tokens, reused_tokens;
    histogram latency, ttft;
} M = {.mu = PTHREAD_MUTEX_INITIALIZER};

void serve_metrics_request(int http_status) {
    int c = http_status / 100;
    pthread_mutex_lock(&M.mu);
    M.by_class[c >= 1 && c <= 5 ? c : 5]++;
    pthread_mutex_unlock(&M.mu);
}

void serve_metrics_tokens(uint32_t n_prompt, uint32_t n_gen, uint32_t n_reused) {
    pthread_mutex_lock(&M.mu);
    M.prompt_tokens += n_prompt;
    M.gen_tokens += n_gen;
    M.reused_tokens += n_reused;
    pthread_mutex_unlock(&M.mu);
}

static void observe(histogram *h, double seconds) {
    for (size_t i = 0; i < N_BOUNDS; i++)
        if (seconds <= BOUNDS[i]) {
            h->buckets[i]++;
            break;
        }
    h->count++;
    h->sum += seconds;
}

void serve_metrics_latency(double total_ms, double ttft_ms) {
    pthread_mutex_lock(&M.mu);
    observe(&M.latency, total_ms / 1e3);
    if (ttft_ms >= 0) observe(&M.ttft, ttft_ms / 1e3);
    pthread_mutex_unlock(&M.mu);
}

typedef struct text {
    char *buf;
    size_t len, cap;
    bool failed;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...) {
    if (t->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) { t->failed = true; return; }
        if ((size_t)n < t->cap - t->len) { t->len += (size_t)n; return; }
        size_t cap = (t->cap + (size_t)n + 1) * 2;
        char *grown = realloc(t->buf, cap);
        if (!grown) { t->failed = true; return; }
        t->buf = grown;
        t->cap = cap;
    }
}

static void put_histogram(text *t, const char *name, const char *help, const histogram *h) {
    put(t, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (size_t i = 0; i < N_BOUNDS; i++) {
        cum += h->buckets[i];
        put(t, "%s_bucket{le=\"%g\"} %llu\n", name, BOUNDS[i], (unsigned long long)cum);
    }
    put(t, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
        (unsigned long long)h->count, name, h->sum, name, (unsigned long long)h->count);
}

char *serve_metrics_text(uint32_t queue_length, uint32_t slots_busy, uint32_t n_slots) {
    text t = {0};
    pthread_mutex_lock(&M.mu);
    put(&t, "# HELP edgelm_requests_total HTTP requests answered, by status class.\n"
            "# TYPE edgelm_requests_total counter\n");
    static const char *const cls[] = {"", "1xx", "2xx", "3xx", "4xx", "5xx"};
    for (int c = 2; c <= 5; c++)
        put(&t, "edgelm_requests_total{code=\"%s\"} %llu\n", cls[c],
            (unsigned long long)M.by_class[c]);
    put(&t, "# HELP edgelm_prompt_tokens_total Prompt tokens of completions.\n"
            "# TYPE edgelm_prompt_tokens_total counter\nedgelm_prompt_tokens_total %llu\n",
        (unsigned long long)M.prompt_tokens);
    put(&t, "# HELP edgelm_prompt_tokens_reused_total Prompt tokens a slot's prefix cache held.\n"
            "# TYPE edgelm_prompt_tokens_reused_total counter\n"
            "edgelm_prompt_tokens_reused_total %llu\n",
        (unsigned long long)M.reused_tokens);
    put(&t, "# HELP edgelm_generated_tokens_total Generated tokens.\n"
            "# TYPE edgelm_generated_tokens_total counter\nedgelm_generated_tokens_total %llu\n",
        (unsigned long long)M.gen_tokens);
    put(&t, "# HELP edgelm_queue_length Requests waiting for a slot.\n"
            "# TYPE edgelm_queue_length gauge\nedgelm_queue_length %u\n", queue_length);
    put(&t, "# HELP edgelm_slots_busy Slots generating.\n# TYPE edgelm_slots_busy gauge\n"
            "edgelm_slots_busy %u\n# HELP edgelm_slots Slots.\n# TYPE edgelm_slots gauge\n"
            "edgelm_slots %u\n", slots_busy, n_slots);
    put_histogram(&t, "edgelm_request_duration_seconds", "Completion latency, whole request.",
                  &M.latency);
    put_histogram(&t, "edgelm_time_to_first_token_seconds", "Time to the first generated token.",
                  &M.ttft);
    pthread_mutex_unlock(&M.mu);
    if (t.failed) {
        free(t.buf);
        return NULL;
    }
    return t.buf;
}
