/* serve_escalate.c: forwarding a request to an upstream OpenAI-compatible
 * server with libcurl (tools/serve.h), for the edge-first hybrid pattern. */
#define _POSIX_C_SOURCE 200809L
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/serve.h"

#define MAX_ANSWER (8u << 20) /* bytes of an upstream answer */

typedef struct answer {
    char *buf;
    size_t len;
    bool too_big;
} answer;

static size_t on_data(char *data, size_t size, size_t n, void *user) {
    answer *a = user;
    size_t k = size * n;
    if (a->len + k > MAX_ANSWER) {
        a->too_big = true;
        return 0;
    }
    char *grown = realloc(a->buf, a->len + k + 1);
    if (!grown) return 0;
    a->buf = grown;
    memcpy(a->buf + a->len, data, k);
    a->len += k;
    a->buf[a->len] = 0;
    return k;
}

/* POSTs body to url; returns the HTTP status (0 when no answer came). */
static long post(const serve_state *s, const char *url, const char *body, answer *a, char *why,
                 size_t why_size) {
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(why, why_size, "cannot start libcurl");
        return 0;
    }
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    char auth[1024];
    if (s->o.escalate_key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", s->o.escalate_key);
        h = curl_slist_append(h, auth);
    }
    long ms = (long)(s->o.escalate_seconds * 1e3f);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, ms < 5000 ? ms : 5000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, ms);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    if (rc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    else snprintf(why, why_size, "%s", a->too_big ? "the answer is too large" : curl_easy_strerror(rc));
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

json_t *serve_escalate(const serve_state *s, const char *path, const json_t *request, char *why,
                       size_t why_size) {
    json_t *copy = json_deep_copy(request);
    if (!copy) {
        snprintf(why, why_size, "out of memory");
        return NULL;
    }
    json_object_set_new(copy, "stream", json_false());
    char *body = json_dumps(copy, JSON_COMPACT);
    json_decref(copy);
    char url[2048];
    size_t base = strlen(s->o.escalate_url);
    while (base && s->o.escalate_url[base - 1] == '/') base--;
    snprintf(url, sizeof url, "%.*s%s", (int)base, s->o.escalate_url, path);
    answer a = {0};
    long status = body ? post(s, url, body, &a, why, why_size) : 0;
    free(body);
    json_t *j = NULL;
    if (status >= 200 && status < 300) {
        j = a.buf ? json_loadb(a.buf, a.len, 0, NULL) : NULL;
        json_t *choices = json_object_get(j, "choices");
        if (!json_is_array(choices) || json_array_size(choices) == 0) {
            json_decref(j);
            j = NULL;
            snprintf(why, why_size, "the upstream's answer is not a completion");
        }
    } else if (status) {
        snprintf(why, why_size, "the upstream answered HTTP %ld", status);
    }
    free(a.buf);
    return j;
}
