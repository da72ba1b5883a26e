/*
 * serve.h: `edgelm serve`, an OpenAI-compatible HTTP server on libmicrohttpd
 * and Jansson. The pieces, one file each:
 *
 *   serve_main.c     options, the daemon's life (signals, --max-requests,
 *                    --max-seconds, a bounded drain)
 *   serve_models.c   the live model and its slots (a reference-counted
 *                    generation); --models DIR: signed hot swap
 *   serve_http.c     routing, authentication, body and header limits, the
 *                    error objects, streaming responses
 *   serve_api.c      request parsing and validation (pure: no model, no
 *                    network; the fuzz target drives it) and the JSON of
 *                    responses
 *   serve_gen.c      one generation on one slot: prompt tokens, stop
 *                    strings, end-of-turn ids, logprobs, confidence
 *   serve_slots.c    the slots (contexts on the shared model) and the
 *                    bounded queue in front of them
 *   serve_metrics.c  counters and histograms, in Prometheus text format
 *   serve_escalate.c forwarding to an upstream server with libcurl
 *                    (--escalate-url: low confidence, or a prompt too long)
 *
 * Threads: libmicrohttpd runs one thread per connection. A non-streaming
 * request generates on its connection's thread; a streaming one on a thread
 * of its own that hands SSE events to the connection's thread. The model is
 * shared (it is immutable); each slot's context is used by one request at a
 * time. The model and its slots form a reference-counted generation
 * (serve_live): a request holds the one it started on, so --models can swap
 * in a newer model (from the main thread, which polls the directory) while
 * in-flight requests finish on the old.
 */
#ifndef ELM_SERVE_H
#define ELM_SERVE_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>

#include "tools/cli.h"

/* ------------------------------------------------------------- limits */

/* What a request may ask for; beyond these it gets a 400 or a 413. */
typedef struct serve_limits {
    size_t max_body;        /* bytes of a request body */
    uint32_t max_tokens;    /* max_tokens at most (also the default) */
    uint32_t max_messages;  /* messages of a chat request */
    uint32_t max_stop;      /* strings in `stop` */
    uint32_t max_stop_len;  /* bytes of one stop string */
    uint32_t max_top_logprobs;
} serve_limits;

void serve_default_limits(serve_limits *l);

/* ----------------------------------------------------------- requests */

/* A parsed, validated request. Strings point into `root`, which it owns. */
typedef struct serve_request {
    json_t *root;
    bool chat;                 /* /v1/chat/completions, else /v1/completions */
    elm_chat_message *msgs;    /* chat: the messages (strings borrowed from root) */
    size_t n_msgs;
    const char *prompt;        /* completions: the prompt text */
    size_t prompt_len;
    uint32_t max_tokens;
    float temperature;         /* default 1, as OpenAI */
    float top_p;               /* default 1 */
    uint64_t seed;             /* 0 when not given */
    const char **stop;         /* n_stop strings, borrowed */
    size_t n_stop;
    bool stream;
    bool logprobs;
    uint32_t top_logprobs;
} serve_request;

/*
 * Parses a request body (len bytes, need not be NUL-terminated). Returns 0
 * and fills *out, or an HTTP status (400, 413) with a message in err (and
 * the OpenAI error code's name in *code, static). The request owns its JSON:
 * free it with serve_request_free (also after a failure).
 */
int serve_parse_request(const char *body, size_t len, bool chat, const serve_limits *lim,
                        serve_request *out, char *err, size_t err_size, const char **code);
void serve_request_free(serve_request *r);

/* {"error":{"message","type","code"}} as a malloc'd string. */
char *serve_error_json(int http_status, const char *message, const char *code);

/* ---------------------------------------------------------- generation */

/* What one generation produced, for the response body. */
typedef struct serve_output {
    char *text;                /* malloc'd, NUL-terminated */
    size_t len;
    uint32_t n_prompt, n_gen;  /* tokens of the prompt and generated */
    uint32_t n_reused;         /* prompt tokens the slot's cache already held */
    const char *finish_reason; /* "stop", "length" or "cancelled" */
    json_t *logprobs;          /* the chat or completions logprobs object, or NULL */
    /* the confidence summary (computed here from elm_token_info: see serve_gen.c) */
    uint32_t conf_n;
    double conf_mean_logprob;
    float conf_min_margin;
    float conf_frac_below;
    double ttft_ms, total_ms;
    const char *answered_by;   /* "local" (NULL) or "upstream" */
    const char *escalation;    /* why it escalated or why that failed, or NULL; static or
                                  owned by the caller */
    char model_name[256];      /* the model that answered */
} serve_output;

/* The extension field "edgelm" of a response: confidence and timings. */
json_t *serve_output_extension(const serve_output *o);

/* A chat completion or text completion response body (malloc'd). */
char *serve_response_json(const serve_request *r, const serve_output *o, const char *id,
                          const char *model_name, long created);
/* One SSE chunk's JSON: a delta of text, or (text NULL) the final chunk
 * with its finish_reason and the extension field. */
char *serve_chunk_json(const serve_request *r, const char *id, const char *model_name,
                       long created, const char *text, size_t len, const serve_output *final);

/* --------------------------------------------------------------- slots */

typedef struct serve_slot {
    elm_context *ctx;
    uint32_t id;
    bool busy;
} serve_slot;

typedef struct serve_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    serve_slot *slots;
    uint32_t n_slots;
    uint32_t waiting;     /* requests in the queue */
    uint32_t max_waiting; /* a request beyond it gets a 503 */
    bool closing;
} serve_pool;

enum { SERVE_SLOT_OK = 0, SERVE_QUEUE_FULL, SERVE_CLOSING, SERVE_WAIT_TIMEOUT };

int serve_pool_init(serve_pool *p, const elm_model *m, const char *label, uint32_t n_slots,
                    uint32_t max_waiting, const elm_context_params *cp);
void serve_pool_free(serve_pool *p);
/* Waits (until deadline_ms on elmi-like monotonic ms, see serve_now_ms) for
 * a free slot, choosing among free ones the one whose cached tokens share
 * the longest prefix with ids[0, n). */
int serve_pool_acquire(serve_pool *p, const elm_token *ids, size_t n, double deadline_ms,
                       serve_slot **out);
void serve_pool_release(serve_pool *p, serve_slot *s);
/* Wakes every waiter and refuses new ones (shutdown). */
void serve_pool_close(serve_pool *p);
uint32_t serve_pool_waiting(serve_pool *p);
uint32_t serve_pool_busy(serve_pool *p);

/* Tokens at the start of both a and b. */
size_t serve_common_prefix(const elm_token *a, size_t na, const elm_token *b, size_t nb);

double serve_now_ms(void);

/* ---------------------------------------------------------- generation */

/*
 * One model and everything made from it: the slots, the template, the
 * end-of-turn ids. The server holds the live one; each request holds the one
 * it started on (serve_live_get/put), so a hot swap (--models) sends new
 * requests to the new model while in-flight ones finish on the old, which is
 * freed when its last request ends.
 */
typedef struct serve_live {
    elm_model *model;
    char *path;               /* the model file */
    char *model_name;         /* the id /v1/models lists */
    char *tmpl;               /* the template in use (NULL: the model's own) */
    bool chatml_fallback;
    elm_token *eot;           /* end-of-turn ids */
    size_t n_eot;
    elm_token bos;
    serve_pool pool;
    atomic_uint refs;         /* 1 while live, plus 1 per request on it */
} serve_live;

/* ------------------------------------------------------------- metrics */

void serve_metrics_request(int http_status);
void serve_metrics_tokens(uint32_t n_prompt, uint32_t n_gen, uint32_t n_reused);
void serve_metrics_latency(double total_ms, double ttft_ms);
/* The Prometheus text (malloc'd). */
char *serve_metrics_text(uint32_t queue_length, uint32_t slots_busy, uint32_t n_slots);

/* -------------------------------------------------------------- server */

typedef struct serve_opts {
    const char *model_path;
    const char *models_dir;   /* --models: serve the newest signed model there */
    const char *trusted_key;  /* --trusted-key: the public key file */
    uint32_t models_poll_ms;  /* --models-poll-ms: rescan interval */
    const char *host;
    uint32_t port;
    uint32_t parallel;
    uint32_t queue;           /* requests that may wait for a slot */
    const char *api_key;
    uint32_t n_ctx;
    const char *device;
    const char *template_path;
    bool log_prompts;
    uint64_t max_requests;    /* 0: no limit */
    float max_seconds;        /* 0: no limit */
    float request_seconds;    /* wall time of one request */
    float drain_seconds;      /* at shutdown, in-flight requests get this long */
    const char *escalate_url; /* upstream base URL ("http://host:port"), or NULL */
    const char *escalate_key; /* its Bearer key, or NULL */
    float escalate_below;     /* escalate when exp(mean_logprob) < this */
    float escalate_seconds;   /* the upstream call's timeout */
    serve_limits lim;
} serve_opts;

/* Everything the handlers share. */
typedef struct serve_state {
    serve_opts o;
    pthread_mutex_t live_mu;
    serve_live *live;         /* the live generation (under live_mu) */
    atomic_bool cancel_all;   /* set when the drain time is over */
    atomic_bool stopping;
    atomic_uint_fast64_t n_finished; /* requests answered (any status) */
    atomic_uint_fast64_t n_inflight;
    atomic_uint_fast64_t next_id;
    long started;
} serve_state;

/* The live generation, with a reference for the caller; put it back. */
serve_live *serve_live_get(serve_state *s);
void serve_live_put(serve_live *l);
/* Loads the model of -m, or the newest good signed one of --models. */
int serve_models_start(serve_state *s);
/* --models: rescans the directory and swaps to a newer good model. */
void serve_models_poll(serve_state *s);
/* Drops the live generation (at exit, after the drain). */
void serve_models_stop(serve_state *s);

/* The daemon: starts it (returning the bound port in *port), stops it. */
struct MHD_Daemon;
struct MHD_Daemon *serve_http_start(serve_state *s, uint16_t *port);
void serve_http_quiesce(struct MHD_Daemon *d);
void serve_http_stop(struct MHD_Daemon *d);
/* Called by the handlers when a request is answered (for --max-requests). */
void serve_request_done(serve_state *s);

/* A request's prompt tokens and the slot it holds. */
typedef struct serve_job {
    bool too_long;       /* after a refusal: the prompt does not fit the context */
    serve_live *live;    /* the generation it runs on (a reference) */
    elm_token *ids;
    size_t n;
    serve_slot *slot;
    double t0, deadline; /* serve_now_ms */
} serve_job;

/* Tokenizes r's prompt and waits in the queue for a slot. Returns 0, or an
 * HTTP status (400: the prompt does not fit or the template fails; 503: the
 * queue is full, the wait timed out or the server is stopping) with a
 * message in err; the job then holds nothing. */
int serve_prepare(serve_state *s, const serve_request *r, serve_job *job, char *err,
                  size_t err_size);
/* Releases what a prepared job holds without running it. */
void serve_job_abandon(serve_state *s, serve_job *job);

/* Generates the answer of a prepared job, then releases it. Calls `emit`
 * (when not NULL) with text as it becomes final (stop strings held back);
 * emit returning false cancels. `cancelled` (may be NULL) is polled per
 * token; `fd` >= 0 is the client's socket, checked per token for a
 * disconnect. Returns 0 and *out, or 500 with a message. */
typedef bool (*serve_emit_fn)(const char *text, size_t len, void *user);
int serve_run(serve_state *s, const serve_request *r, serve_job *job, int fd,
              atomic_bool *cancelled, serve_emit_fn emit, void *user, serve_output *out,
              char *err, size_t err_size);
void serve_output_free(serve_output *o);



/* ---------------------------------------------------------- escalation */

/* Sends the request (its JSON, with stream forced off) to the upstream's
 * `path`. Returns its parsed answer, or NULL with the reason in why. */
json_t *serve_escalate(const serve_state *s, const char *path, const json_t *request, char *why,
                       size_t why_size);

#endif
