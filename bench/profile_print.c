/* profile_print.c: the --profile table (profile_print.h). */
#include "bench/profile_print.h"

#define MAX_OPS 32

static void print_phase(FILE *f, const elm_context *ctx, elm_profile_phase phase) {
    elm_profile s = ELM_INIT(elm_profile);
    elm_profile_op ops[MAX_OPS];
    ops[0].struct_size = sizeof ops[0];
    size_t n = 0;
    if (elm_context_profile(ctx, phase, &s, ops, MAX_OPS, &n) != ELM_OK || s.n_passes == 0) return;
    if (n > MAX_OPS) n = MAX_OPS;
    double tok = s.n_tokens ? (double)s.n_tokens : 1, passes = (double)s.n_passes;
    double layers = s.n_layer ? (double)s.n_layer : 1;
    fprintf(f, "edgelm profile: %s: %llu passes, %llu tokens, %.3f ms/token of device time (%s), "
               "%llu submits/pass\n",
            phase == ELM_PROFILE_DECODE ? "decode" : "prompt", (unsigned long long)s.n_passes,
            (unsigned long long)s.n_tokens, s.ms / tok, s.timestamps ? "GPU timestamps" : "wall time",
            (unsigned long long)(s.n_submits / s.n_passes));
    fprintf(f, "  %-12s %12s %7s %9s %10s %11s %15s\n", "op", "ms/token", "share", "GB/s", "disp/pass",
            "disp/layer", "barriers/layer");
    double bytes = 0;
    for (size_t i = 0; i < n; i++) {
        const elm_profile_op *o = &ops[i];
        bytes += (double)o->bytes;
        fprintf(f, "  %-12s %12.4f %6.1f%% %9.2f %10.1f %11.2f %15.2f\n", o->op, o->ms / tok,
                s.ms > 0 ? 100.0 * o->ms / s.ms : 0, o->ms > 0 ? (double)o->bytes / (o->ms * 1e6) : 0,
                (double)o->n_dispatches / passes, (double)o->n_dispatches / passes / layers,
                (double)o->n_barriers / passes / layers);
    }
    fprintf(f, "  %-12s %12.4f %6.1f%% %9.2f %10.1f %11.2f %15.2f\n", "total", s.ms / tok, 100.0,
            s.ms > 0 ? bytes / (s.ms * 1e6) : 0, (double)s.n_dispatches / passes,
            (double)s.n_dispatches / passes / layers, (double)s.n_barriers / passes / layers);
    fprintf(f, "  (per layer: per pass / %llu layers, so it includes the few dispatches outside the layers: "
               "embedding, output norm and projection, sampling; a fused dispatch counts under its fuser's op, "
               "mul_mat or rope)\n",
            (unsigned long long)(s.n_layer ? s.n_layer : 1));
}

void cli_print_profile(FILE *f, const elm_context *ctx) {
    print_phase(f, ctx, ELM_PROFILE_PROMPT);
    print_phase(f, ctx, ELM_PROFILE_DECODE);
}
