/* threadpool.h: the CPU backend's worker threads. One pool per backend;
 * nothing is allocated per task. */
#ifndef ELM_THREADPOOL_H
#define ELM_THREADPOOL_H

#include <stdbool.h>

#include "edgelm.h"

typedef struct elm_threadpool elm_threadpool;

/* ith in [0, nth): the calling thread is ith 0. */
typedef void (*tp_task_fn)(void *arg, int ith, int nth);

/* n_threads >= 1 (the caller counts as one). pin: pin thread i to core i. */
elm_status elmi_tp_new(int n_threads, bool pin, elm_threadpool **out);
void elmi_tp_free(elm_threadpool *tp);
int elmi_tp_n_threads(const elm_threadpool *tp);

/* Runs fn(arg, ith, nth) on every thread and returns when all have finished.
 * Not reentrant: one elmi_tp_run at a time per pool. */
void elmi_tp_run(elm_threadpool *tp, tp_task_fn fn, void *arg);

/* Called by every thread of a running task: returns once all nth threads
 * have reached it (memory written before it is visible after it). Lets one
 * elmi_tp_run hold several dependent phases. */
void elmi_tp_barrier(elm_threadpool *tp);

#endif
