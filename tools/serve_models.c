/* serve_models.c: the live model and its slots, a reference-counted
 * generation; with --models DIR, the newest good signed model there, swapped
 * in as newer ones arrive (tools/serve.h).
 *
 * A candidate is DIR/NAME.gguf with NAME.gguf.sig beside it, ordered by
 * mtime then name. It goes live when it loads with a valid signature by
 * --trusted-key and a context decodes a fixed prompt to finite logits (the
 * self-test). One that fails is logged and remembered with its mtime, and not
 * tried again until its mtime changes; the live model stays. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tools/serve.h"

/* ChatML, for models that carry no template. */
static const char CHATML[] =
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}";

/* ----------------------------------------------------------- generation */

static void live_free(serve_live *l) {
    if (!l) return;
    if (l->pool.slots) serve_pool_free(&l->pool);
    elm_model_free(l->model);
    free(l->tmpl);
    free(l->eot);
    free(l->path);
    free(l->model_name);
    free(l);
}

serve_live *serve_live_get(serve_state *s) {
    pthread_mutex_lock(&s->live_mu);
    serve_live *l = s->live;
    if (l) atomic_fetch_add(&l->refs, 1);
    pthread_mutex_unlock(&s->live_mu);
    return l;
}

void serve_live_put(serve_live *l) {
    if (l && atomic_fetch_sub(&l->refs, 1) == 1) live_free(l);
}

/* The end-of-turn ids of the template in use. */
static int load_end_of_turn(serve_state *s, serve_live *l) {
    char err[1024] = "";
    size_t n = 0;
    elm_status st = elm_chat_end_of_turn(l->model, l->tmpl, NULL, 0, &n, err, sizeof err);
    if (st == ELM_ERR_BUFFER_TOO_SMALL || (st == ELM_OK && n == 0)) {
        l->eot = malloc((n ? n : 1) * sizeof *l->eot);
        if (!l->eot) return cli_error(l->path, "out of memory");
        st = elm_chat_end_of_turn(l->model, l->tmpl, l->eot, n, &l->n_eot, err, sizeof err);
    }
    if (st != ELM_OK)
        return cli_lib_error(s->o.template_path ? s->o.template_path : l->path, st, err);
    return CLI_OK;
}

/* The template: --chat-template, else the model's, else ChatML. */
static int choose_template(serve_state *s, serve_live *l) {
    if (s->o.template_path) {
        if (!(l->tmpl = cli_read_file(s->o.template_path)))
            return cli_error(s->o.template_path, "cannot read the template (no such file, or not a text file)");
        return load_end_of_turn(s, l);
    }
    size_t n = 0;
    elm_status st = elm_chat_end_of_turn(l->model, NULL, NULL, 0, &n, NULL, 0);
    if (st == ELM_ERR_UNSUPPORTED) {
        l->chatml_fallback = true;
        if (!(l->tmpl = strdup(CHATML))) return cli_error(l->path, "out of memory");
        fprintf(stderr, "edgelm serve: %s has no chat template: using ChatML\n", l->path);
    }
    return load_end_of_turn(s, l);
}

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* Slot 0 decodes a fixed prompt; every logit must be finite. */
static int self_test(serve_live *l) {
    elm_model_info info = ELM_INIT(elm_model_info);
    if (elm_model_get_info(l->model, &info) != ELM_OK) return cli_error(l->path, "no model info");
    elm_context *ctx = l->pool.slots[0].ctx;
    elm_token ids[4];
    size_t n = 0;
    if (info.bos >= 0) ids[n++] = info.bos;
    for (elm_token t = 1; n < 4 && t < (elm_token)info.n_vocab; t++) ids[n++] = t;
    elm_status st = elm_decode(ctx, ids, n);
    if (st != ELM_OK)
        return cli_error(l->path, "self-test failed: %s", elm_context_last_error(ctx));
    const float *logits = elm_get_logits(ctx, -1);
    bool finite = logits != NULL;
    for (uint32_t i = 0; finite && i < info.n_vocab; i++) finite = isfinite(logits[i]);
    elm_context_truncate(ctx, 0);
    if (!finite) return cli_error(l->path, "self-test failed: the logits are not finite");
    return CLI_OK;
}

/* A generation of the model at path (the signature checked when --models). */
static int live_open(serve_state *s, const char *path, serve_live **out) {
    *out = NULL;
    serve_live *l = calloc(1, sizeof *l);
    if (!l || !(l->path = strdup(path))) {
        free(l);
        return cli_error(path, "out of memory");
    }
    atomic_init(&l->refs, 1);
    l->model = cli_load_model_trusted(path, s->o.device, false, s->o.trusted_key);
    int rc = l->model ? CLI_OK : CLI_ERROR;
    elm_model_info info = ELM_INIT(elm_model_info);
    if (rc == CLI_OK && elm_model_get_info(l->model, &info) != ELM_OK)
        rc = cli_error(path, "no model info");
    if (rc == CLI_OK) {
        l->bos = info.bos;
        const char *name = !s->o.models_dir && info.name && info.name[0] ? info.name : base_name(path);
        if (!(l->model_name = strdup(name))) rc = cli_error(path, "out of memory");
    }
    if (rc == CLI_OK) rc = choose_template(s, l);
    elm_context_params cp;
    elm_context_default_params(&cp);
    cp.n_ctx = s->o.n_ctx;
    if (rc == CLI_OK)
        rc = serve_pool_init(&l->pool, l->model, path, s->o.parallel, s->o.queue, &cp);
    if (rc == CLI_OK && s->o.models_dir) rc = self_test(l);
    if (rc != CLI_OK) {
        live_free(l);
        return rc;
    }
    *out = l;
    return CLI_OK;
}

/* Makes l live; the old generation goes when its last request ends. */
static void go_live(serve_state *s, serve_live *l) {
    pthread_mutex_lock(&s->live_mu);
    serve_live *old = s->live;
    s->live = l;
    pthread_mutex_unlock(&s->live_mu);
    if (old) {
        fprintf(stderr, "edgelm serve: live model: %s (was %s)\n", l->path, old->path);
        serve_live_put(old);
    } else {
        fprintf(stderr, "edgelm serve: live model: %s\n", l->path);
    }
}

/* ---------------------------------------------------------- the directory */

typedef struct candidate {
    char name[256];
    struct timespec mtime;
} candidate;

static int newer(const candidate *a, const candidate *b) {
    if (a->mtime.tv_sec != b->mtime.tv_sec) return a->mtime.tv_sec > b->mtime.tv_sec ? 1 : -1;
    if (a->mtime.tv_nsec != b->mtime.tv_nsec) return a->mtime.tv_nsec > b->mtime.tv_nsec ? 1 : -1;
    return strcmp(a->name, b->name);
}

static int newest_first(const void *a, const void *b) { return newer(b, a); }

/* Remembered across scans (the poller is the only thread that scans). */
static candidate live_key;     /* the live file's; name[0] == 0 at first */
static candidate *rejected;    /* files that failed, with the mtime they had */
static size_t n_rejected;

static bool was_rejected(const candidate *c) {
    for (size_t i = 0; i < n_rejected; i++)
        if (strcmp(rejected[i].name, c->name) == 0 && newer(&rejected[i], c) == 0) return true;
    return false;
}

static void reject(const candidate *c) {
    candidate *grown = realloc(rejected, (n_rejected + 1) * sizeof *rejected);
    if (!grown) return;
    rejected = grown;
    rejected[n_rejected++] = *c;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* The signed *.gguf files of dir, newest first (malloc'd). */
static candidate *scan(const char *dir, size_t *n) {
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    candidate *list = NULL;
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!ends_with(e->d_name, ".gguf") || strlen(e->d_name) + 5 >= sizeof list->name) continue;
        char path[4096], sig[4096 + 8];
        struct stat st, ss;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        snprintf(sig, sizeof sig, "%s.sig", path);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || stat(sig, &ss) != 0) continue;
        if (*n == cap) {
            candidate *grown = realloc(list, (cap = cap ? cap * 2 : 16) * sizeof *list);
            if (!grown) break;
            list = grown;
        }
        snprintf(list[*n].name, sizeof list->name, "%s", e->d_name);
        list[*n].mtime = st.st_mtim;
        ++*n;
    }
    closedir(d);
    if (*n) qsort(list, *n, sizeof *list, newest_first);
    return list;
}

/* Tries the files newer than the live one, newest first, until one is good. */
static bool swap_to_newest(serve_state *s) {
    size_t n = 0;
    candidate *list = scan(s->o.models_dir, &n);
    bool swapped = false;
    for (size_t i = 0; i < n && !swapped; i++) {
        if (live_key.name[0] && newer(&list[i], &live_key) <= 0) break;
        if (was_rejected(&list[i])) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", s->o.models_dir, list[i].name);
        serve_live *l = NULL;
        if (live_open(s, path, &l) != CLI_OK) {
            fprintf(stderr, "edgelm serve: rejected %s (the reason is above); %s\n", path,
                    live_key.name[0] ? "keeping the live model" : "trying an older one");
            reject(&list[i]);
            continue;
        }
        live_key = list[i];
        go_live(s, l);
        swapped = true;
    }
    free(list);
    return swapped;
}

/* --------------------------------------------------------------- the life */

int serve_models_start(serve_state *s) {
    pthread_mutex_init(&s->live_mu, NULL);
    if (!s->o.models_dir) {
        serve_live *l = NULL;
        int rc = live_open(s, s->o.model_path, &l);
        if (rc != CLI_OK) return rc;
        s->live = l;
    } else if (!swap_to_newest(s)) {
        return cli_error(s->o.models_dir, "no model there loads with a valid signature and passes the self-test");
    }
    if (s->o.lim.max_tokens > elm_context_n_ctx(s->live->pool.slots[0].ctx))
        s->o.lim.max_tokens = elm_context_n_ctx(s->live->pool.slots[0].ctx);
    return CLI_OK;
}

void serve_models_poll(serve_state *s) {
    if (s->o.models_dir) swap_to_newest(s);
}

void serve_models_stop(serve_state *s) {
    pthread_mutex_lock(&s->live_mu);
    serve_live *l = s->live;
    s->live = NULL;
    pthread_mutex_unlock(&s->live_mu);
    serve_live_put(l);
    free(rejected);
    rejected = NULL;
    n_rejected = 0;
    pthread_mutex_destroy(&s->live_mu);
}
