/* serve_http.c: routing, authentication, limits and streaming on
 * libmicrohttpd (tools/serve.h). */
#define _POSIX_C_SOURCE 200809L
#include "tools/serve.h"

#include <arpa/inet.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Per connection and request: the body as it arrives. */
typedef struct conn_state {
    char *body;
    size_t len, cap;
    bool too_large;
} conn_state;

/* ------------------------------------------------------------ responses */

static enum MHD_Result queue(struct MHD_Connection *c, int status, char *body, const char *type,
                             bool owned) {
    if (!body) {
        status = 500;
        body = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"code\":\"server_error\"}}";
        owned = false;
        type = "application/json";
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(
        strlen(body), body, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_MUST_COPY);
    if (!r) {
        if (owned) free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    if (status == 503) MHD_add_response_header(r, "Retry-After", "1");
    if (status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    serve_metrics_request(status);
    return ok;
}

static enum MHD_Result json_reply(struct MHD_Connection *c, int status, json_t *j) {
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return queue(c, status, s, "application/json", true);
}

static enum MHD_Result error_reply(struct MHD_Connection *c, int status, const char *message,
                                   const char *code) {
    return queue(c, status, serve_error_json(status, message, code), "application/json", true);
}

/* -------------------------------------------------------------- helpers */

/* Compares without an early exit, so that the time does not tell how much
 * of the key matched. */
static bool equal_constant_time(const char *a, size_t na, const char *b, size_t nb) {
    unsigned char diff = (unsigned char)(na != nb);
    for (size_t i = 0; i < nb; i++) diff |= (unsigned char)(a[na ? i % na : 0] ^ b[i]) | (na == 0);
    return diff == 0;
}

static bool authorized(serve_state *s, struct MHD_Connection *c) {
    if (!s->o.api_key) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7) != 0) return false;
    return equal_constant_time(h + 7, strlen(h + 7), s->o.api_key, strlen(s->o.api_key));
}

static int client_fd(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

static void request_id(serve_state *s, char *id, size_t n) {
    snprintf(id, n, "cmpl-%lx-%llu", (long)s->started,
             (unsigned long long)atomic_fetch_add(&s->next_id, 1));
}

static void log_request(const char *url, int status, const serve_output *o) {
    if (o)
        fprintf(stderr, "edgelm serve: POST %s %d: %u prompt tokens (%u reused), %u generated, %.0f ms, %s\n",
                url, status, o->n_prompt, o->n_reused, o->n_gen, o->total_ms, o->finish_reason);
    else
        fprintf(stderr, "edgelm serve: POST %s %d\n", url, status);
}

/* ----------------------------------------------------------- GET routes */

/* The model file's name without its directories: /health needs no key. */
static const char *file_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* "file" and "model_file" both name the live model's file ("model_file"
 * for --models, where it changes). */
static enum MHD_Result get_health(serve_state *s, struct MHD_Connection *c) {
    serve_live *l = serve_live_get(s);
    json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:i,s:i,s:i}", "status",
                          atomic_load(&s->stopping) ? "stopping" : "ok", "model", l->model_name,
                          "file", file_name(l->path), "model_file", file_name(l->path), "slots",
                          (json_int_t)l->pool.n_slots, "slots_busy",
                          (json_int_t)serve_pool_busy(&l->pool), "queue",
                          (json_int_t)serve_pool_waiting(&l->pool));
    serve_live_put(l);
    return json_reply(c, 200, j);
}

static enum MHD_Result get_models(serve_state *s, struct MHD_Connection *c) {
    serve_live *l = serve_live_get(s);
    json_t *j = json_pack("{s:s,s:[{s:s,s:s,s:i,s:s,s:s,s:s}]}", "object", "list", "data", "id",
                          l->model_name, "object", "model", "created", (json_int_t)s->started,
                          "owned_by", "edgelm", "file", l->path, "model_file",
                          file_name(l->path));
    serve_live_put(l);
    return json_reply(c, 200, j);
}

static enum MHD_Result get_metrics(serve_state *s, struct MHD_Connection *c) {
    serve_live *l = serve_live_get(s);
    char *t = serve_metrics_text(serve_pool_waiting(&l->pool), serve_pool_busy(&l->pool),
                                 l->pool.n_slots);
    serve_live_put(l);
    return queue(c, 200, t, "text/plain; version=0.0.4", true);
}

/* ----------------------------------------------------------- streaming */

typedef struct stream {
    serve_state *s;
    serve_request req;
    serve_job job;
    char url[64];
    char id[64];
    char model_name[256]; /* the job's model */
    long created;
    int fd;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *buf;
    size_t len, cap, off;
    bool done, sent_role;
    atomic_bool cancelled;
} stream;

static bool push(stream *st, const char *a, size_t na, const char *b, size_t nb) {
    pthread_mutex_lock(&st->mu);
    bool ok = true;
    if (st->len + na + nb > st->cap) {
        size_t cap = (st->len + na + nb) * 2 + 256;
        char *grown = realloc(st->buf, cap);
        if (grown) st->buf = grown, st->cap = cap;
        else ok = false;
    }
    if (ok) {
        memcpy(st->buf + st->len, a, na);
        memcpy(st->buf + st->len + na, b, nb);
        st->len += na + nb;
        pthread_cond_signal(&st->cv);
    }
    pthread_mutex_unlock(&st->mu);
    return ok;
}

static bool push_event(stream *st, char *json) {
    if (!json) return false;
    bool ok = push(st, "data: ", 6, json, strlen(json)) && push(st, "\n\n", 2, "", 0);
    free(json);
    return ok;
}

static bool emit_chunk(const char *text, size_t len, void *user) {
    stream *st = user;
    if (atomic_load(&st->cancelled)) return false;
    if (st->req.chat && !st->sent_role) {
        st->sent_role = true;
        json_t *role = json_pack("{s:s,s:s,s:i,s:s,s:[{s:i,s:{s:s},s:n}]}", "id", st->id,
                                 "object", "chat.completion.chunk", "created",
                                 (json_int_t)st->created, "model", st->model_name, "choices",
                                 "index", 0, "delta", "role", "assistant", "finish_reason");
        char *j = role ? json_dumps(role, JSON_COMPACT) : NULL;
        json_decref(role);
        if (!push_event(st, j)) return false;
    }
    return push_event(st, serve_chunk_json(&st->req, st->id, st->model_name, st->created,
                                           text, len, NULL));
}

static void *stream_main(void *arg) {
    stream *st = arg;
    serve_output out;
    char err[512] = "";
    int http = serve_run(st->s, &st->req, &st->job, st->fd, &st->cancelled, emit_chunk, st, &out,
                         err, sizeof err);
    if (http) {
        push_event(st, serve_error_json(http, err, "server_error"));
        log_request(st->url, http, NULL);
    } else {
        if (st->req.chat && !st->sent_role) emit_chunk("", 0, st);
        push_event(st, serve_chunk_json(&st->req, st->id, st->model_name, st->created, NULL, 0,
                                        &out));
        log_request(st->url, 200, &out);
        serve_output_free(&out);
    }
    push(st, "data: [DONE]\n\n", 14, "", 0);
    pthread_mutex_lock(&st->mu);
    st->done = true;
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
    atomic_fetch_sub(&st->s->n_inflight, 1);
    return NULL;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream *st = cls;
    pthread_mutex_lock(&st->mu);
    while (st->off == st->len && !st->done) pthread_cond_wait(&st->cv, &st->mu);
    ssize_t n;
    if (st->off == st->len) {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        size_t k = st->len - st->off < max ? st->len - st->off : max;
        memcpy(buf, st->buf + st->off, k);
        st->off += k;
        if (st->off == st->len) st->off = st->len = 0;
        n = (ssize_t)k;
    }
    pthread_mutex_unlock(&st->mu);
    return n;
}

static void stream_free(void *cls) {
    stream *st = cls;
    atomic_store(&st->cancelled, true);
    pthread_join(st->thread, NULL);
    serve_request_free(&st->req);
    pthread_cond_destroy(&st->cv);
    pthread_mutex_destroy(&st->mu);
    free(st->buf);
    free(st);
}

/* Starts the generation thread of a prepared job and answers with its
 * events. Takes the request and the job. */
static enum MHD_Result start_stream(serve_state *s, struct MHD_Connection *c, const char *url,
                                    serve_request *req, serve_job *job, bool *started) {
    stream *st = calloc(1, sizeof *st);
    if (!st) {
        serve_job_abandon(s, job);
        serve_request_free(req);
        return error_reply(c, 500, "out of memory", "server_error");
    }
    st->s = s;
    st->req = *req;
    st->job = *job;
    snprintf(st->model_name, sizeof st->model_name, "%s", job->live->model_name);
    snprintf(st->url, sizeof st->url, "%s", url);
    request_id(s, st->id, sizeof st->id);
    st->created = (long)time(NULL);
    st->fd = client_fd(c);
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);
    if (pthread_create(&st->thread, NULL, stream_main, st) != 0) {
        serve_job_abandon(s, &st->job);
        serve_request_free(&st->req);
        pthread_cond_destroy(&st->cv);
        pthread_mutex_destroy(&st->mu);
        free(st);
        return error_reply(c, 500, "cannot start a thread", "server_error");
    }
    *started = true;
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, st, stream_free);
    if (!r) {
        stream_free(st);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    enum MHD_Result ok = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    serve_metrics_request(200);
    return ok;
}

/* ----------------------------------------------------------- completions */

static bool push_sse(char **buf, size_t *len, char *json) {
    if (!json) return false;
    size_t k = strlen(json);
    char *grown = realloc(*buf, *len + k + 9);
    if (grown) {
        memcpy(grown + *len, "data: ", 6);
        memcpy(grown + *len + 6, json, k);
        memcpy(grown + *len + 6 + k, "\n\n", 3);
        *buf = grown;
        *len += k + 8;
    }
    free(json);
    return grown != NULL;
}

/* A whole answer as server-sent events at once: the escalation decision
 * needs the complete local draft before anything is streamed. */
static enum MHD_Result sse_at_once(serve_state *s, struct MHD_Connection *c,
                                   const serve_request *r, const serve_output *o) {
    char id[64], *buf = NULL;
    size_t len = 0;
    request_id(s, id, sizeof id);
    long now = (long)time(NULL);
    bool ok = true;
    if (r->chat) {
        json_t *role = json_pack("{s:s,s:s,s:i,s:s,s:[{s:i,s:{s:s},s:n}]}", "id", id, "object",
                                 "chat.completion.chunk", "created", (json_int_t)now, "model",
                                 o->model_name, "choices", "index", 0, "delta", "role",
                                 "assistant", "finish_reason");
        ok = push_sse(&buf, &len, role ? json_dumps(role, JSON_COMPACT) : NULL);
        json_decref(role);
    }
    if (ok && o->len) ok = push_sse(&buf, &len, serve_chunk_json(r, id, o->model_name, now, o->text, o->len, NULL));
    if (ok) ok = push_sse(&buf, &len, serve_chunk_json(r, id, o->model_name, now, NULL, 0, o));
    if (ok) ok = push_sse(&buf, &len, strdup("[DONE]"));
    if (!ok) {
        free(buf);
        buf = NULL;
    }
    return queue(c, 200, buf, "text/event-stream", true);
}

static enum MHD_Result reply_local(serve_state *s, struct MHD_Connection *c,
                                   const serve_request *r, const serve_output *o) {
    if (r->stream) return sse_at_once(s, c, r, o);
    char id[64];
    request_id(s, id, sizeof id);
    return queue(c, 200, serve_response_json(r, o, id, o->model_name, (long)time(NULL)),
                 "application/json", true);
}

/* The upstream's answer, marked as such; `local` (may be NULL) is the
 * local draft whose confidence was too low. */
static enum MHD_Result reply_upstream(serve_state *s, struct MHD_Connection *c,
                                      const serve_request *r, json_t *up,
                                      const serve_output *local, const char *reason) {
    serve_output o = local ? *local : (serve_output){.finish_reason = "stop", .ttft_ms = -1};
    o.answered_by = "upstream";
    if (!local) {
        serve_live *l = serve_live_get(s);
        snprintf(o.model_name, sizeof o.model_name, "%s", l->model_name);
        serve_live_put(l);
    }
    o.escalation = reason;
    o.logprobs = NULL;
    json_t *choice = json_array_get(json_object_get(up, "choices"), 0);
    json_t *text = r->chat ? json_object_get(json_object_get(choice, "message"), "content")
                           : json_object_get(choice, "text");
    json_t *fr = json_object_get(choice, "finish_reason");
    json_t *usage = json_object_get(up, "usage");
    o.text = (char *)(json_is_string(text) ? json_string_value(text) : "");
    o.len = json_is_string(text) ? json_string_length(text) : 0;
    if (json_is_string(fr)) o.finish_reason = json_string_value(fr);
    o.n_prompt = (uint32_t)json_integer_value(json_object_get(usage, "prompt_tokens"));
    o.n_gen = (uint32_t)json_integer_value(json_object_get(usage, "completion_tokens"));
    enum MHD_Result ok;
    if (r->stream) {
        ok = sse_at_once(s, c, r, &o);
    } else {
        json_object_set_new(up, "edgelm", serve_output_extension(&o));
        ok = json_reply(c, 200, json_incref(up));
    }
    json_decref(up);
    return ok;
}

static double confidence_of(const serve_output *o) {
    return o->conf_n ? exp(o->conf_mean_logprob) : 1.0;
}

/* Generates locally, then answers, or escalates a draft whose confidence is
 * below --escalate-below. */
static enum MHD_Result answer(serve_state *s, struct MHD_Connection *c, const char *url,
                              serve_request *req, serve_job *job) {
    serve_output out;
    char err[512] = "";
    int http = serve_run(s, req, job, client_fd(c), NULL, NULL, NULL, &out, err, sizeof err);
    if (http) {
        log_request(url, http, NULL);
        return error_reply(c, http, err, "server_error");
    }
    log_request(url, 200, &out);
    enum MHD_Result ok;
    double conf = confidence_of(&out);
    if (s->o.escalate_url && conf < s->o.escalate_below && strcmp(out.finish_reason, "cancelled")) {
        char why[512] = "", reason[128];
        snprintf(reason, sizeof reason, "local confidence %.3f is below %.3f", conf,
                 (double)s->o.escalate_below);
        json_t *up = serve_escalate(s, url, req->root, why, sizeof why);
        if (up) {
            fprintf(stderr, "edgelm serve: escalated: %s\n", reason);
            ok = reply_upstream(s, c, req, up, &out, reason);
        } else {
            char note[700];
            snprintf(note, sizeof note, "%s; the upstream failed (%s): answered locally", reason, why);
            fprintf(stderr, "edgelm serve: %s\n", note);
            out.escalation = note;
            ok = reply_local(s, c, req, &out);
        }
    } else {
        ok = reply_local(s, c, req, &out);
    }
    serve_output_free(&out);
    return ok;
}

/* A completion request; *stream_started when a stream thread took it over. */
static enum MHD_Result completion(serve_state *s, struct MHD_Connection *c, const char *url,
                                  conn_state *cs, bool chat, bool *stream_started) {
    if (atomic_load(&s->stopping)) return error_reply(c, 503, "the server is shutting down", "unavailable");
    serve_request req;
    char err[512] = "";
    const char *code = NULL;
    int http = serve_parse_request(cs->body ? cs->body : "", cs->len, chat, &s->o.lim, &req, err,
                                   sizeof err, &code);
    serve_job job = {0};
    if (!http) http = serve_prepare(s, &req, &job, err, sizeof err), code = "invalid_request_error";
    if (http == 400 && job.too_long && s->o.escalate_url) {
        char why[512] = "";
        json_t *up = serve_escalate(s, url, req.root, why, sizeof why);
        if (up) {
            fprintf(stderr, "edgelm serve: escalated: the prompt does not fit the local context\n");
            enum MHD_Result ok = reply_upstream(s, c, &req, up, NULL,
                                                "the prompt does not fit the local context");
            serve_request_free(&req);
            return ok;
        }
        snprintf(err + strlen(err), sizeof err - strlen(err), "; the upstream failed: %.200s", why);
    }
    if (http) {
        serve_request_free(&req);
        log_request(url, http, NULL);
        return error_reply(c, http, err, http == 503 ? "unavailable" : code);
    }
    if (req.stream && !s->o.escalate_url) return start_stream(s, c, url, &req, &job, stream_started);
    enum MHD_Result ok = answer(s, c, url, &req, &job);
    serve_request_free(&req);
    return ok;
}

/* Counts the request in flight, queue included, until it is answered (a
 * stream: until its thread ends), so that a shutdown can wait for it. */
static enum MHD_Result complete(serve_state *s, struct MHD_Connection *c, const char *url,
                                conn_state *cs, bool chat) {
    atomic_fetch_add(&s->n_inflight, 1);
    bool stream_started = false;
    enum MHD_Result ok = completion(s, c, url, cs, chat, &stream_started);
    if (!stream_started) atomic_fetch_sub(&s->n_inflight, 1);
    return ok;
}

/* --------------------------------------------------------------- routing */

static bool add_body(serve_state *s, conn_state *cs, const char *data, size_t n) {
    if (cs->too_large || cs->len + n > s->o.lim.max_body) {
        cs->too_large = true;
        return true;
    }
    if (cs->len + n + 1 > cs->cap) {
        size_t cap = (cs->len + n + 1) * 2;
        if (cap > s->o.lim.max_body + 1) cap = s->o.lim.max_body + 1;
        char *grown = realloc(cs->body, cap);
        if (!grown) return false;
        cs->body = grown;
        cs->cap = cap;
    }
    memcpy(cs->body + cs->len, data, n);
    cs->len += n;
    return true;
}

static enum MHD_Result route(serve_state *s, struct MHD_Connection *c, const char *url,
                             const char *method, conn_state *cs) {
    bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
    bool chat = strcmp(url, "/v1/chat/completions") == 0, text = strcmp(url, "/v1/completions") == 0;
    if (strcmp(url, "/health") == 0 && get) return get_health(s, c);
    if (!authorized(s, c))
        return error_reply(c, 401, "a valid API key is required (Authorization: Bearer KEY)",
                           "invalid_api_key");
    if (strcmp(url, "/v1/models") == 0 && get) return get_models(s, c);
    if (strcmp(url, "/metrics") == 0 && get) return get_metrics(s, c);
    if ((chat || text) && post) return complete(s, c, url, cs, chat);
    if (chat || text || strcmp(url, "/v1/models") == 0 || strcmp(url, "/metrics") == 0 ||
        strcmp(url, "/health") == 0)
        return error_reply(c, 405, "method not allowed", "method_not_allowed");
    return error_reply(c, 404, "no such endpoint", "not_found");
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls) {
    (void)version;
    serve_state *s = cls;
    conn_state *cs = *con_cls;
    if (!cs) {
        if (!(cs = calloc(1, sizeof *cs))) return MHD_NO;
        *con_cls = cs;
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > s->o.lim.max_body) cs->too_large = true;
        else return MHD_YES;
    }
    if (*upload_size && !cs->too_large) {
        if (!add_body(s, cs, upload, *upload_size)) return MHD_NO;
        *upload_size = 0;
        if (!cs->too_large) return MHD_YES;
    }
    if (cs->too_large) { /* answered at once, without reading the rest */
        char msg[128];
        snprintf(msg, sizeof msg, "the request body is larger than %zu bytes", s->o.lim.max_body);
        log_request(url, 413, NULL);
        return error_reply(c, 413, msg, "request_too_large");
    }
    return route(s, c, url, method, cs);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe) {
    (void)c, (void)toe;
    conn_state *cs = *con_cls;
    if (cs) {
        free(cs->body);
        free(cs);
        *con_cls = NULL;
        serve_request_done(cls);
    }
}

/* ------------------------------------------------------------- daemon */

struct MHD_Daemon *serve_http_start(serve_state *s, uint16_t *port) {
    struct sockaddr_storage addr;
    memset(&addr, 0, sizeof addr);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_ERROR_LOG | MHD_USE_ITC;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&addr;
    const char *host = strcmp(s->o.host, "localhost") == 0 ? "127.0.0.1" : s->o.host;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)s->o.port);
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)s->o.port);
        flags |= MHD_USE_IPv6;
    } else {
        fprintf(stderr, "edgelm: serve: --host %s: not a numeric IPv4 or IPv6 address\n", s->o.host);
        return NULL;
    }
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, handle, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_NOTIFY_COMPLETED, completed, s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)(64 * 1024), MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)(s->o.parallel + s->o.queue + 16), MHD_OPTION_CONNECTION_TIMEOUT, 30u,
        MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "edgelm: serve: cannot listen on %s port %u (in use, or not permitted)\n",
                s->o.host, s->o.port);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    *port = di ? di->port : (uint16_t)s->o.port;
    return d;
}

void serve_http_quiesce(struct MHD_Daemon *d) {
    MHD_socket fd = MHD_quiesce_daemon(d);
    if (fd != MHD_INVALID_SOCKET) close(fd);
}

void serve_http_stop(struct MHD_Daemon *d) { MHD_stop_daemon(d); }
