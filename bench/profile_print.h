/* profile_print.h: the --profile table of `edgelm run` and `edgelm bench`. */
#ifndef ELM_TOOLS_PROFILE_PRINT_H
#define ELM_TOOLS_PROFILE_PRINT_H

#include <stdio.h>

#include "edgelm.h"

/* Per op kind and phase (prompt, decode): device time per token, GB/s,
 * share of the phase's time, dispatches per pass, and dispatches and
 * barriers per layer (a pass's count over the model's layers, so the few
 * outside the layers are spread over them). Phases without passes are
 * left out. */
void cli_print_profile(FILE *f, const elm_context *ctx);

#endif
