/* serve_slots.c: the slots and the bounded queue in front of them
 * (tools/serve.h). */
#define _POSIX_C_SOURCE 200809L
#include "tools/serve.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double serve_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

size_t serve_common_prefix(const elm_token *a, size_t na, const elm_token *b, size_t nb) {
    size_t i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    return i;
}

int serve_pool_init(serve_pool *p, const elm_model *m, const char *label, uint32_t n_slots,
                    uint32_t max_waiting, const elm_context_params *cp) {
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    p->max_waiting = max_waiting;
    p->slots = calloc(n_slots, sizeof *p->slots);
    if (!p->slots) return cli_error(label, "out of memory");
    for (uint32_t i = 0; i < n_slots; i++) {
        p->slots[i].id = i;
        p->slots[i].ctx = cli_new_context(m, label, cp);
        if (!p->slots[i].ctx) return CLI_ERROR;
        p->n_slots = i + 1;
    }
    return CLI_OK;
}

void serve_pool_free(serve_pool *p) {
    for (uint32_t i = 0; i < p->n_slots; i++) elm_context_free(p->slots[i].ctx);
    free(p->slots);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    memset(p, 0, sizeof *p);
}

/* The free slot whose cache shares the longest prefix with ids, or NULL. */
static serve_slot *best_free(serve_pool *p, const elm_token *ids, size_t n) {
    serve_slot *best = NULL;
    size_t best_len = 0;
    for (uint32_t i = 0; i < p->n_slots; i++) {
        serve_slot *s = &p->slots[i];
        if (s->busy) continue;
        size_t len = serve_common_prefix(ids, n, elm_context_tokens(s->ctx),
                                         elm_context_n_past(s->ctx));
        if (!best || len > best_len) best = s, best_len = len;
    }
    return best;
}

static struct timespec to_timespec(double deadline_ms) {
    double now = serve_now_ms();
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double left = deadline_ms - now;
    if (left < 0) left = 0;
    long long ns = (long long)ts.tv_nsec + (long long)(left * 1e6);
    ts.tv_sec += (time_t)(ns / 1000000000LL);
    ts.tv_nsec = (long)(ns % 1000000000LL);
    return ts;
}

int serve_pool_acquire(serve_pool *p, const elm_token *ids, size_t n, double deadline_ms,
                       serve_slot **out) {
    *out = NULL;
    pthread_mutex_lock(&p->mu);
    serve_slot *s = p->closing ? NULL : best_free(p, ids, n);
    int rc = SERVE_SLOT_OK;
    if (!s && !p->closing && p->waiting >= p->max_waiting) rc = SERVE_QUEUE_FULL;
    if (!s && rc == SERVE_SLOT_OK) {
        p->waiting++;
        struct timespec ts = to_timespec(deadline_ms);
        while (!p->closing && !(s = best_free(p, ids, n)))
            if (pthread_cond_timedwait(&p->cv, &p->mu, &ts) == ETIMEDOUT) break;
        p->waiting--;
    }
    if (!s && rc == SERVE_SLOT_OK) rc = p->closing ? SERVE_CLOSING : SERVE_WAIT_TIMEOUT;
    if (p->closing && s) s = NULL, rc = SERVE_CLOSING;
    if (s) s->busy = true;
    pthread_mutex_unlock(&p->mu);
    *out = s;
    return rc;
}

void serve_pool_release(serve_pool *p, serve_slot *s) {
    pthread_mutex_lock(&p->mu);
    s->busy = false;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void serve_pool_close(serve_pool *p) {
    pthread_mutex_lock(&p->mu);
    p->closing = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

uint32_t serve_pool_waiting(serve_pool *p) {
    pthread_mutex_lock(&p->mu);
    uint32_t n = p->waiting;
    pthread_mutex_unlock(&p->mu);
    return n;
}

uint32_t serve_pool_busy(serve_pool *p) {
    pthread_mutex_lock(&p->mu);
    uint32_t n = 0;
    for (uint32_t i = 0; i < p->n_slots; i++) n += p->slots[i].busy;
    pthread_mutex_unlock(&p->mu);
    return n;
}
