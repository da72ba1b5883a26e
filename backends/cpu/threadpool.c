/*
 * threadpool.c: persistent workers woken by a generation counter.
 *
 * elmi_tp_run publishes the task, bumps `gen` and runs share 0 itself. A waiting
 * worker spins on `gen` for TP_SPIN_NS (back-to-back runs, the common case
 * within a forward pass, never reach the kernel) and then sleeps on it
 * (futex on Linux, a condition variable elsewhere). Completion works the
 * same way in reverse on `pending`. Sleepers announce themselves in a
 * counter, so the waker makes a system call only when someone sleeps; both
 * sides use sequentially consistent operations (announce, then re-check) so
 * that a wake-up cannot be missed.
 */
#define _GNU_SOURCE
#include "backends/cpu/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "backends/cpu/cpu_info.h"
#include "common/alloc.h"

#define TP_SPIN_NS 200000 /* 0.2 ms: longer than the gaps between ops of one token */
#define TP_YIELD_NS 5000
#define TP_BARRIER_YIELD_NS 5000 /* a busy or virtualized host may hold the thread waited for */
#define TP_MAX_THREADS 1024

typedef struct tp_worker {
    pthread_t thread;
    elm_threadpool *tp;
    int ith;
} tp_worker;

struct elm_threadpool {
    _Alignas(64) _Atomic unsigned gen; /* bumped by each elmi_tp_run and by elmi_tp_free */
    _Atomic int sleepers;              /* workers asleep (or about to be) on gen */
    _Alignas(64) _Atomic int pending;  /* workers still running the current task */
    _Atomic int caller_sleeping;
    _Alignas(64) _Atomic unsigned bar_gen; /* elmi_tp_barrier */
    _Atomic int bar_count;
    _Alignas(64) tp_task_fn fn;
    void *arg;
    _Atomic int stop;
    int n_threads;
    int n_started; /* workers successfully created */
    tp_worker *workers;
#if !defined(__linux__)
    pthread_mutex_t mu;
    pthread_cond_t cv;
#endif
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Spins until *a != old or TP_SPIN_NS pass; true when it changed. The clock
 * is read only every 64 pauses to keep the loop tight. Past TP_YIELD_NS the
 * loop also yields the core: with more runnable threads than cores (an
 * oversubscribed or busy machine) the thread being waited for may need it. */
static bool spin_while_equal(_Atomic unsigned *a, unsigned old) {
    uint64_t t0 = 0;
    for (unsigned i = 1;; i++) {
        if (atomic_load_explicit(a, memory_order_acquire) != old) return true;
        cpu_relax();
        if (i % 64 != 0) continue;
        uint64_t t = now_ns();
        if (t0 == 0) t0 = t;
        if (t - t0 > TP_SPIN_NS) return false;
        if (t - t0 > TP_YIELD_NS) sched_yield();
    }
}

/* Sleeps while *a == old; may return spuriously (callers re-check). */
static void sleep_while_equal(elm_threadpool *tp, _Atomic unsigned *a, unsigned old) {
#if defined(__linux__)
    (void)tp;
    syscall(SYS_futex, (unsigned *)a, FUTEX_WAIT_PRIVATE, old, NULL, NULL, 0);
#else
    pthread_mutex_lock(&tp->mu);
    while (atomic_load(a) == old) pthread_cond_wait(&tp->cv, &tp->mu);
    pthread_mutex_unlock(&tp->mu);
#endif
}

static void wake_all(elm_threadpool *tp, _Atomic unsigned *a) {
#if defined(__linux__)
    (void)tp;
    syscall(SYS_futex, (unsigned *)a, FUTEX_WAKE_PRIVATE, TP_MAX_THREADS, NULL, NULL, 0);
#else
    (void)a;
    pthread_mutex_lock(&tp->mu);
    pthread_cond_broadcast(&tp->cv);
    pthread_mutex_unlock(&tp->mu);
#endif
}

static void wait_for_gen(elm_threadpool *tp, unsigned seen) {
    if (spin_while_equal(&tp->gen, seen)) return;
    atomic_fetch_add(&tp->sleepers, 1);
    while (atomic_load(&tp->gen) == seen) sleep_while_equal(tp, &tp->gen, seen);
    atomic_fetch_sub(&tp->sleepers, 1);
}

/* `pending` is an int; the futex helpers take the same 32-bit word. */
static _Atomic unsigned *pending_word(elm_threadpool *tp) {
    _Static_assert(sizeof(_Atomic int) == sizeof(_Atomic unsigned), "futex word");
    return (_Atomic unsigned *)(void *)&tp->pending;
}

static void wait_for_workers(elm_threadpool *tp) {
    _Atomic unsigned *w = pending_word(tp);
    for (;;) {
        unsigned p = atomic_load_explicit(w, memory_order_acquire);
        if (p == 0) return;
        if (spin_while_equal(w, p)) continue;
        atomic_store(&tp->caller_sleeping, 1);
        if (atomic_load(w) == p) sleep_while_equal(tp, w, p);
        atomic_store(&tp->caller_sleeping, 0);
    }
}

static void worker_done(elm_threadpool *tp) {
    if (atomic_fetch_sub(&tp->pending, 1) != 1) return;
    if (atomic_load(&tp->caller_sleeping)) wake_all(tp, pending_word(tp));
}

static void *worker_main(void *p) {
    tp_worker *w = p;
    elm_threadpool *tp = w->tp;
    unsigned seen = 0;
    for (;;) {
        wait_for_gen(tp, seen);
        seen = atomic_load_explicit(&tp->gen, memory_order_acquire);
        if (atomic_load_explicit(&tp->stop, memory_order_relaxed)) return NULL;
        tp->fn(tp->arg, w->ith, tp->n_threads);
        worker_done(tp);
    }
}

static void pin_thread(pthread_t th, int cpu) {
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(th, sizeof set, &set); /* best effort */
#else
    (void)th;
    (void)cpu;
#endif
}

static void pin_workers(elm_threadpool *tp) {
    int cpus[TP_MAX_THREADS];
    int n = elmi_cpu_core_cpus(cpus, TP_MAX_THREADS);
    if (n <= 0) return;
    /* The caller is not pinned: it belongs to the application. */
    for (int i = 1; i < tp->n_started + 1; i++) pin_thread(tp->workers[i].thread, cpus[i % n]);
}

static void stop_workers(elm_threadpool *tp) {
    atomic_store(&tp->stop, 1);
    atomic_fetch_add(&tp->gen, 1);
    wake_all(tp, &tp->gen);
    for (int i = 1; i <= tp->n_started; i++) pthread_join(tp->workers[i].thread, NULL);
}

elm_status elmi_tp_new(int n_threads, bool pin, elm_threadpool **out) {
    if (!out || n_threads < 1 || n_threads > TP_MAX_THREADS) return ELM_ERR_INVALID_ARG;
    elm_threadpool *tp = elmi_aligned_alloc(64, (sizeof *tp + 63) / 64 * 64);
    if (!tp) return ELM_ERR_NO_MEMORY;
    memset(tp, 0, sizeof *tp);
    tp->n_threads = n_threads;
    tp->workers = elmi_calloc((size_t)n_threads, sizeof *tp->workers);
    if (!tp->workers) {
        elmi_aligned_free(tp);
        return ELM_ERR_NO_MEMORY;
    }
#if !defined(__linux__)
    pthread_mutex_init(&tp->mu, NULL);
    pthread_cond_init(&tp->cv, NULL);
#endif
    for (int i = 1; i < n_threads; i++) {
        tp->workers[i] = (tp_worker){.tp = tp, .ith = i};
        if (pthread_create(&tp->workers[i].thread, NULL, worker_main, &tp->workers[i]) != 0) {
            elmi_tp_free(tp);
            return ELM_ERR_NO_MEMORY;
        }
        tp->n_started = i;
    }
    if (pin) pin_workers(tp);
    *out = tp;
    return ELM_OK;
}

void elmi_tp_free(elm_threadpool *tp) {
    if (!tp) return;
    stop_workers(tp);
#if !defined(__linux__)
    pthread_mutex_destroy(&tp->mu);
    pthread_cond_destroy(&tp->cv);
#endif
    elmi_free(tp->workers);
    elmi_aligned_free(tp);
}

int elmi_tp_n_threads(const elm_threadpool *tp) { return tp ? tp->n_threads : 1; }

void elmi_tp_run(elm_threadpool *tp, tp_task_fn fn, void *arg) {
    if (tp->n_threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    tp->fn = fn;
    tp->arg = arg;
    atomic_store(&tp->pending, tp->n_threads - 1);
    atomic_fetch_add(&tp->gen, 1);
    if (atomic_load(&tp->sleepers) > 0) wake_all(tp, &tp->gen);
    fn(arg, 0, tp->n_threads);
    wait_for_workers(tp);
}

/* A sense-reversing counter barrier: arrivals count up in bar_count; the
 * last one resets it and flips bar_gen, which the others spin on. Threads of
 * one run are all awake and near the barrier, so it never sleeps: it spins
 * with a pause (the common case, a few hundred nanoseconds), and only past
 * TP_BARRIER_YIELD_NS (a thread behind was descheduled, or the cores are
 * oversubscribed) it also yields the core now and then. */
void elmi_tp_barrier(elm_threadpool *tp) {
    int n = tp->n_threads;
    if (n == 1) return;
    unsigned g = atomic_load_explicit(&tp->bar_gen, memory_order_acquire);
    if (atomic_fetch_add_explicit(&tp->bar_count, 1, memory_order_acq_rel) == n - 1) {
        atomic_store_explicit(&tp->bar_count, 0, memory_order_relaxed);
        atomic_store_explicit(&tp->bar_gen, g + 1, memory_order_release);
        return;
    }
    uint64_t t0 = 0;
    for (unsigned i = 1; atomic_load_explicit(&tp->bar_gen, memory_order_acquire) == g; i++) {
        cpu_relax();
        if (i % 32 != 0) continue; /* a pause is up to ~140 cycles: the clock every ~1.5 us */
        uint64_t t = now_ns();
        if (t0 == 0) t0 = t;
        if (t - t0 > TP_BARRIER_YIELD_NS) sched_yield();
    }
}
