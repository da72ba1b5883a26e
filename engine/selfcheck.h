/* selfcheck.h: the startup self-check of device "auto". */
#ifndef ELM_ENGINE_SELFCHECK_H
#define ELM_ENGINE_SELFCHECK_H

#include <stddef.h>

#include "backends/backend.h"

/*
 * Runs small problems (a Q4_0 mat-vec and mat-mat, a GQA attention over an
 * F16 cache, a decode feed-forward block and a RoPE + cache-store block) on
 * `dev` and on a one-thread CPU backend, each as a small graph in a buffer
 * of its own (freed again). ELM_OK when every device
 * result is within 2% of the CPU's largest value. ELM_ERR_DEVICE on a
 * mismatch, with err naming the op ("self-check: mul_mat (mat-vec, Q4_0)
 * differs from the CPU's result ..."); a failing device call returns its
 * status, also with the op named.
 */
elm_status elmi_device_selfcheck(be_backend *dev, char *err, size_t err_size);

#endif
