/*
 * sched.h: runs a graph on a device backend and the nodes it cannot run on
 * the CPU backend. The split is planned here, in the engine (DESIGN.md:
 * "unsupported ops are assigned to the CPU backend at planning time"): a
 * backend only ever receives nodes it said it supports. Between device
 * runs, a CPU node works on host copies of the device tensors it touches.
 */
#ifndef ELM_SCHED_H
#define ELM_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/backend.h"

typedef struct elm_sched {
    be_backend *dev;     /* borrowed: runs every node it supports */
    be_backend *cpu;     /* owned: created for the first fallback node; NULL when dev is the CPU */
    int n_threads;
    bool pin;
    /* the split of the last graph shape planned */
    uint64_t key;        /* hash of the shape, 0: none yet */
    uint8_t *on_cpu;     /* (cap) 1 where node i runs on the CPU */
    int cap, n_cpu;
    uint64_t n_fallback_nodes; /* nodes run on the CPU so far */
    char first_fallback[256];  /* which op fell back first, and why ("" when none) */
} elm_sched;

/* dev is the CPU backend itself when is_cpu: then nothing falls back. */
void elmi_sched_init(elm_sched *s, be_backend *dev, bool is_cpu, int n_threads, bool pin);
void elmi_sched_free(elm_sched *s);

/* Decides where each node runs (cached per graph shape). A node neither
 * backend supports gives ELM_ERR_UNSUPPORTED with a message. */
elm_status elmi_sched_plan(elm_sched *s, const be_graph *g, char *err, size_t err_size);

/* Plans, prepares the device's parts (graph_prepare) and runs the graph. */
elm_status elmi_sched_compute(elm_sched *s, const be_graph *g, bool prepare_only, char *err,
                              size_t err_size);

#endif /* ELM_SCHED_H */
