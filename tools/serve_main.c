/* serve_main.c: `edgelm serve`: options, the model and its slots, and the
 * server's life (tools/serve.h). */
#define _POSIX_C_SOURCE 200809L /* sigaction, nanosleep */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tools/serve.h"

static const char ABOUT[] =
    "Serves a model over HTTP with an OpenAI-compatible API:\n"
    "  POST /v1/chat/completions   messages through the chat template (stream: true for SSE)\n"
    "  POST /v1/completions        a prompt as it is\n"
    "  GET  /v1/models, /health, /metrics (Prometheus text)\n"
    "Each of --parallel slots is a context on the one shared model; a request goes\n"
    "to the free slot whose cached tokens share the longest prefix with its prompt,\n"
    "or waits in a queue of --queue requests (a full queue answers 503 with\n"
    "Retry-After). It listens on loopback only unless --host names another address,\n"
    "which requires --api-key (sent by clients as \"Authorization: Bearer KEY\").\n"
    "A model without a chat template gets ChatML. Prompts are never logged unless\n"
    "--log-prompts is given; the server sends nothing anywhere on its own.\n"
    "With --models DIR --trusted-key KEY it serves the newest *.gguf in DIR that has\n"
    "a valid signature by KEY beside it (FILE.gguf.sig, `edgelm sign`) and passes a\n"
    "self-test (finite logits), and swaps to newer ones as they arrive: in-flight\n"
    "requests finish on the old model; a file that fails stays rejected until its\n"
    "mtime changes. /health and /v1/models name the live file.\n"
    "SIGTERM or SIGINT stops accepting, lets in-flight requests finish for\n"
    "--drain seconds, cancels the rest, and exits 0. The bound address is printed on\n"
    "stderr as \"edgelm serve: listening on http://HOST:PORT\" (useful with --port 0).";

static volatile sig_atomic_t got_signal;

static volatile sig_atomic_t got_hup;

static void on_signal(int sig) { got_signal = sig; }
static void on_hup(int sig) { got_hup = sig; }

static void catch_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static bool is_loopback(const char *host) {
    if (strcmp(host, "localhost") == 0 || strcmp(host, "::1") == 0) return true;
    struct in_addr a;
    return inet_pton(AF_INET, host, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------- the life */

void serve_request_done(serve_state *s) { atomic_fetch_add(&s->n_finished, 1); }

/* Runs until a signal, --max-requests or --max-seconds; with --models,
 * rescans the directory every --models-poll-ms and on SIGHUP. */
static void wait_for_end(serve_state *s) {
    double t0 = serve_now_ms(), last_scan = t0;
    while (!got_signal) {
        if (s->o.models_dir && (got_hup || serve_now_ms() - last_scan >= s->o.models_poll_ms)) {
            got_hup = 0;
            serve_models_poll(s);
            last_scan = serve_now_ms();
        }
        if (s->o.max_requests && atomic_load(&s->n_finished) >= s->o.max_requests) break;
        if (s->o.max_seconds > 0 && serve_now_ms() - t0 > s->o.max_seconds * 1e3) break;
        sleep_ms(20);
    }
}

/* Stops accepting, lets in-flight requests finish for --drain seconds, then
 * cancels what is left. */
static void drain(serve_state *s, struct MHD_Daemon *d) {
    atomic_store(&s->stopping, true);
    serve_http_quiesce(d);
    double t0 = serve_now_ms();
    while (atomic_load(&s->n_inflight) > 0 && serve_now_ms() - t0 < s->o.drain_seconds * 1e3)
        sleep_ms(10);
    if (atomic_load(&s->n_inflight) > 0)
        fprintf(stderr, "edgelm serve: cancelling %llu requests still in flight\n",
                (unsigned long long)atomic_load(&s->n_inflight));
    atomic_store(&s->cancel_all, true);
    serve_live *l = serve_live_get(s);
    serve_pool_close(&l->pool);
    serve_live_put(l);
    /* Cancelled requests still get their (cut short) answers. */
    t0 = serve_now_ms();
    while (atomic_load(&s->n_inflight) > 0 && serve_now_ms() - t0 < 2000) sleep_ms(10);
    sleep_ms(100); /* for the last bytes to leave */
    serve_http_stop(d);
}

static int run_server(serve_state *s) {
    uint16_t port = 0;
    struct MHD_Daemon *d = serve_http_start(s, &port);
    if (!d) return CLI_ERROR;
    bool v6 = strchr(s->o.host, ':') != NULL;
    fprintf(stderr, "edgelm serve: listening on http://%s%s%s:%u\n", v6 ? "[" : "", s->o.host,
            v6 ? "]" : "", port);
    wait_for_end(s);
    fprintf(stderr, "edgelm serve: stopping\n");
    drain(s, d);
    return CLI_OK;
}

int cmd_serve(int argc, char **argv) {
    serve_state *s = calloc(1, sizeof *s);
    if (!s) return cli_error("serve", "out of memory");
    serve_opts *o = &s->o;
    *o = (serve_opts){.host = "127.0.0.1", .port = 8080, .parallel = 1, .queue = 16,
                      .request_seconds = 300, .drain_seconds = 10,
                      .escalate_seconds = 60, .models_poll_ms = 2000};
    serve_default_limits(&o->lim);
    uint32_t max_body = (uint32_t)o->lim.max_body;
    const cli_opt opts[] = {
        CLI_OPT("-m", "--model", CLI_STR, &o->model_path, "FILE", "the GGUF model"),
        CLI_OPT(NULL, "--models", CLI_STR, &o->models_dir, "DIR", "serve the newest signed *.gguf in DIR, swapping to newer ones (needs --trusted-key)"),
        CLI_OPT(NULL, "--trusted-key", CLI_STR, &o->trusted_key, "FILE", "public key (edgelm keygen) the models must be signed by (FILE.sig)"),
        CLI_NUM(NULL, "--models-poll-ms", CLI_U32, &o->models_poll_ms, "MS", "how often --models rescans DIR (2000; SIGHUP: now)", 10, 86400000),
        CLI_OPT(NULL, "--host", CLI_STR, &o->host, "ADDR", "numeric address to bind (127.0.0.1)"),
        CLI_NUM(NULL, "--port", CLI_U32, &o->port, "N", "port (8080; 0: any free one)", 0, 65535),
        CLI_NUM(NULL, "--parallel", CLI_U32, &o->parallel, "N", "slots (1)", 1, 64),
        CLI_NUM(NULL, "--queue", CLI_U32, &o->queue, "N", "requests that may wait for a slot (16)", 0, 4096),
        CLI_OPT(NULL, "--api-key", CLI_STR, &o->api_key, "KEY", "require \"Authorization: Bearer KEY\""),
        CLI_NUM("-c", "--ctx", CLI_U32, &o->n_ctx, "N", "context size of each slot (model's, at most 4096)", 0, 1u << 24),
        CLI_OPT(NULL, "--device", CLI_STR, &o->device, "DEV", "cpu, auto, vulkan, vulkan:N, best"),
        CLI_OPT(NULL, "--chat-template", CLI_STR, &o->template_path, "FILE", "a Jinja chat template instead of the model's"),
        CLI_OPT(NULL, "--log-prompts", CLI_FLAG, &o->log_prompts, NULL, "write prompts to stderr"),
        CLI_NUM(NULL, "--max-tokens", CLI_U32, &o->lim.max_tokens, "N", "max_tokens at most, and its default (512)", 1, 1u << 24),
        CLI_NUM(NULL, "--max-body", CLI_U32, &max_body, "BYTES", "request body size at most (1 MiB)", 64, 1u << 30),
        CLI_NUM(NULL, "--timeout", CLI_FLOAT, &o->request_seconds, "S", "wall time of one request, queue included (300)", 0.001, 1e7),
        CLI_NUM(NULL, "--drain", CLI_FLOAT, &o->drain_seconds, "S", "at shutdown, time left to in-flight requests (10)", 0, 3600),
        CLI_OPT(NULL, "--escalate-url", CLI_STR, &o->escalate_url, "URL", "upstream OpenAI-compatible server (http://HOST:PORT) for low-confidence answers"),
        CLI_OPT(NULL, "--escalate-key", CLI_STR, &o->escalate_key, "KEY", "the upstream's Bearer key"),
        CLI_NUM(NULL, "--escalate-below", CLI_FLOAT, &o->escalate_below, "T", "escalate when exp(mean token logprob) < T (0..1; above 1: always)", 0, 2),
        CLI_NUM(NULL, "--escalate-timeout", CLI_FLOAT, &o->escalate_seconds, "S", "the upstream call's timeout (60)", 0.001, 3600),
        CLI_NUM(NULL, "--max-requests", CLI_U64, &o->max_requests, "N", "stop after N requests (0: never)", 0, 0),
        CLI_NUM(NULL, "--max-seconds", CLI_FLOAT, &o->max_seconds, "S", "stop after S seconds (0: never)", 0, 1e9),
        {0},
    };
    const cli_spec spec = {"serve", "-m FILE | --models DIR --trusted-key KEY [options]", ABOUT, opts};
    int status;
    if (!cli_parse(&spec, argc, argv, &status)) {
        free(s);
        return status;
    }
    o->lim.max_body = max_body;
    if (!o->model_path == !o->models_dir) {
        free(s);
        return cli_usage_error(&spec, "give either -m FILE or --models DIR");
    }
    if (o->models_dir && !o->trusted_key) {
        free(s);
        return cli_usage_error(&spec, "--models needs --trusted-key");
    }
    if (!is_loopback(o->host) && !o->api_key) {
        cli_usage_error(&spec, "--host %s is not a loopback address: it requires --api-key", o->host);
        free(s);
        return CLI_USAGE;
    }
    if (o->api_key && !o->api_key[0]) {
        free(s);
        return cli_usage_error(&spec, "--api-key is empty");
    }
    if ((o->escalate_key || o->escalate_below > 0) && !o->escalate_url) {
        cli_usage_error(&spec, "--escalate-key and --escalate-below need --escalate-url");
        free(s);
        return CLI_USAGE;
    }
    if (o->escalate_url && strncmp(o->escalate_url, "http://", 7) != 0 &&
        strncmp(o->escalate_url, "https://", 8) != 0) {
        cli_usage_error(&spec, "--escalate-url must start with http:// or https://");
        free(s);
        return CLI_USAGE;
    }
    if (o->escalate_url) curl_global_init(CURL_GLOBAL_DEFAULT);
    s->started = (long)time(NULL);
    catch_signals();
    int rc = serve_models_start(s);
    if (rc == CLI_OK) rc = run_server(s);
    serve_models_stop(s);
    if (o->escalate_url) curl_global_cleanup();
    free(s);
    return rc;
}
