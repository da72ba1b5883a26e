/* cmd_run.c: `edgelm run`: generate text from a prompt, streamed to stdout. */
#include <stdio.h>
#include <string.h>

#include "tools/chat_session.h"
#include "bench/profile_print.h"

typedef struct run_opts {
    const char *model, *prompt, *device, *system, *template_path, *trusted_key;
    int32_t n_predict, n_threads;
    uint32_t n_ctx;
    bool exact, pin, ignore_eos, chat, profile;
    elm_sampler_params sp;
} run_opts;

static const char ABOUT[] =
    "Generates up to N new tokens after the prompt (BOS is added where the\n"
    "vocabulary asks for it). stdout gets the prompt exactly as given, then the\n"
    "generated text as it is produced, then one newline; stderr gets the timings.\n"
    "Generation stops early at an end-of-generation token (unless --ignore-eos)\n"
    "or when the context is full. --temp 0 is greedy (ties go to the lower id).\n"
    "--chat treats the prompt as one user message (after the --system message,\n"
    "if any): the conversation is rendered with the model's chat template (or\n"
    "--template FILE) and the model replies. stdout then gets only the reply and\n"
    "one newline; the reply ends at the template's end-of-turn token, which is not\n"
    "written (unless --ignore-eos), as in `edgelm chat`.\n"
    "--profile times every op on the device (GPU timestamps on Vulkan) and prints,\n"
    "per op kind, for the prompt and for generation: device time per token, GB/s,\n"
    "share of the time, and dispatches and barriers per layer, to stderr.";

/* The prompt goes out with the first token, so that a prompt the context
 * cannot hold leaves stdout empty. */
typedef struct stream {
    const char *prompt;
    bool started, failed;
} stream;

static bool start_output(stream *s) {
    if (s->started) return true;
    s->started = true;
    return cli_write(s->prompt, strlen(s->prompt));
}

static bool on_token(const elm_token_info *info, void *user_data) {
    stream *s = user_data;
    if (!start_output(s) || !cli_write(info->text, info->text_len)) s->failed = true;
    return !s->failed;
}

static void print_stats(const elm_context *ctx, const elm_stats *st) {
    uint64_t rss = st->peak_rss_bytes ? st->peak_rss_bytes : elm_peak_rss();
    char mem[32] = "n/a";
    if (rss) snprintf(mem, sizeof mem, "%.1f MiB", (double)rss / (1024.0 * 1024.0));
    fprintf(stderr,
            "edgelm: load %.1f ms | ttft %.1f ms | prompt %.1f tok/s (%u tok) | "
            "gen %.1f tok/s (%u tok) | peak RSS %s\n",
            st->load_ms, st->ttft_ms, st->prompt_tps, st->n_prompt, st->gen_tps, st->n_gen, mem);
    fprintf(stderr, "edgelm: device %s | CPU fallback nodes %llu", st->device[0] ? st->device : "cpu",
            (unsigned long long)st->n_fallback_nodes);
    double pipeline_ms = 0, cache_loaded = 0;
    if (elm_context_device_stat_find(ctx, "vulkan.pipeline_ms", &pipeline_ms) == ELM_OK &&
        elm_context_device_stat_find(ctx, "vulkan.pipeline_cache_loaded", &cache_loaded) == ELM_OK)
        fprintf(stderr, " | pipeline creation %.1f ms (cache %s)", pipeline_ms,
                cache_loaded != 0 ? "used" : "cold");
    fputc('\n', stderr);
}

static int generate(elm_context *ctx, const run_opts *o) {
    stream s = {.prompt = o->prompt};
    elm_generate_params gp;
    elm_generate_default_params(&gp);
    gp.n_predict = o->n_predict;
    gp.ignore_eos = o->ignore_eos;
    gp.sampler = &o->sp;
    gp.callback = on_token;
    gp.user_data = &s;
    elm_stats st = ELM_INIT(elm_stats);
    elm_status rc = elm_generate(ctx, o->prompt, strlen(o->prompt), &gp, &st);
    if (s.failed) return cli_error("stdout", "write error");
    if (rc != ELM_OK) {
        if (s.started) cli_write("\n", 1);
        return cli_lib_error(o->model, rc, elm_context_last_error(ctx));
    }
    if (!start_output(&s) || !cli_write("\n", 1)) return cli_error("stdout", "write error");
    if (st.stop == ELM_STOP_CONTEXT_FULL)
        fprintf(stderr, "edgelm: %s: the context is full (%u tokens): generation stopped\n",
                o->model, elm_context_n_ctx(ctx));
    print_stats(ctx, &st);
    return CLI_OK;
}

/* --chat: one turn of a conversation; the reply alone goes to stdout. */
static int chat_once(elm_model *m, elm_context *ctx, const run_opts *o) {
    chat_opts co = {.label = o->model, .template_path = o->template_path, .system = o->system,
                    .n_predict = o->n_predict, .ignore_eot = o->ignore_eos, .sampler = o->sp};
    chat_session *s = NULL;
    int rc = chat_session_new(m, ctx, &co, &s);
    if (rc != CLI_OK) return rc;
    elm_stats st = ELM_INIT(elm_stats);
    chat_result r = chat_session_turn(s, o->prompt, &st);
    chat_session_free(s);
    if (r != CHAT_OK) return CLI_ERROR;
    print_stats(ctx, &st);
    return CLI_OK;
}

int cmd_run(int argc, char **argv) {
    elm_generate_params gdef;
    elm_generate_default_params(&gdef);
    run_opts o = {.n_predict = gdef.n_predict};
    elm_sampler_default_params(&o.sp);
    const cli_opt opts[] = {
        CLI_REQ("-m", "--model", CLI_STR, &o.model, "FILE", "GGUF model file"),
        CLI_REQ("-p", "--prompt", CLI_STR, &o.prompt, "TEXT", "the prompt"),
        CLI_NUM("-n", "--n-predict", CLI_INT, &o.n_predict, "N",
                "new tokens at most (-1: until end of generation or context)", -1, INT32_MAX),
        CLI_SAMPLING_OPTS(o.sp),
        CLI_NUM("-t", "--threads", CLI_INT, &o.n_threads, "N", "CPU threads (0: physical cores)", 0,
                4096),
        CLI_OPT("-c", "--ctx-size", CLI_U32, &o.n_ctx, "N",
                "context length in tokens (0: the library's)"),
        CLI_OPT(NULL, "--exact", CLI_FLAG, &o.exact, NULL, "the exact (reference) arithmetic path"),
        CLI_OPT(NULL, "--pin", CLI_FLAG, &o.pin, NULL, "pin CPU worker threads to cores"),
        CLI_OPT(NULL, "--ignore-eos", CLI_FLAG, &o.ignore_eos, NULL,
                "keep generating past end-of-generation tokens"),
        CLI_OPT(NULL, "--device", CLI_STR, &o.device, "DEV", "cpu, auto, best, vulkan or vulkan:N"),
        CLI_OPT(NULL, "--trusted-key", CLI_STR, &o.trusted_key, "FILE",
                "refuse the model unless MODEL.sig is a valid signature by this public key"),
        CLI_OPT(NULL, "--profile", CLI_FLAG, &o.profile, NULL,
                "per-op device time, GB/s and dispatches per layer, on stderr"),
        CLI_OPT(NULL, "--chat", CLI_FLAG, &o.chat, NULL,
                "the prompt is a user message, rendered with the chat template"),
        CLI_OPT(NULL, "--system", CLI_STR, &o.system, "TEXT", "with --chat: a system message first"),
        CLI_OPT(NULL, "--template", CLI_STR, &o.template_path, "FILE",
                "with --chat: a Jinja chat template instead of the model's"),
        {0},
    };
    const cli_spec spec = {"run", "-m FILE -p TEXT [--chat [--system TEXT] [--template FILE]] [options]",
                           ABOUT, opts};
    int status;
    if (!cli_parse(&spec, argc, argv, &status)) return status;
    if ((o.system || o.template_path) && !o.chat)
        return cli_usage_error(&spec, "--system and --template need --chat");

    elm_model *m = cli_load_model_trusted(o.model, o.device, false, o.trusted_key);
    if (!m) return CLI_ERROR;
    elm_context_params cp;
    elm_context_default_params(&cp);
    cp.n_ctx = o.n_ctx;
    cp.n_threads = o.n_threads;
    cp.pin_threads = o.pin;
    cp.mode = o.exact ? ELM_MODE_EXACT : ELM_MODE_FAST;
    elm_context *ctx = cli_new_context(m, o.model, &cp);
    if (ctx && o.profile && elm_context_profile_enable(ctx, true) != ELM_OK)
        fprintf(stderr, "edgelm: --profile: %s\n", elm_context_last_error(ctx));
    int rc = !ctx ? CLI_ERROR : o.chat ? chat_once(m, ctx, &o) : generate(ctx, &o);
    if (rc == CLI_OK && o.profile) cli_print_profile(stderr, ctx);
    elm_context_free(ctx);
    elm_model_free(m);
    return rc;
}
