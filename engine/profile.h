/* profile.h: a context's per-op profile (elm_context_profile), summed per
 * phase from the backend's profile_read after each forward pass. */
#ifndef ELM_ENGINE_PROFILE_H
#define ELM_ENGINE_PROFILE_H

#include <stdbool.h>
#include <stdint.h>

#include "backends/backend.h"

typedef struct elmi_profile {
    bool on;
    be_profile phase[2];   /* ELM_PROFILE_PROMPT, ELM_PROFILE_DECODE */
    uint64_t n_tokens[2];
} elmi_profile;


/* After a forward pass of n tokens: collects the backend's figures into
 * the pass's phase (nothing when profiling is off). */
void elmi_profile_after_pass(elm_context *ctx, uint32_t n);

#endif
