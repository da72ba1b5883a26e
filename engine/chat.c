/* chat.c: the public chat-template API (elm_chat_*): the model's template
 * and BOS/EOS texts, buffer rules, and the end-of-turn tokens a template
 * implies. The interpreter itself is engine/jinja*.c. */
#include <string.h>

#include "common/abi.h"
#include "common/alloc.h"
#include "common/status.h"
#include "engine/internal.h"
#include "engine/jinja.h"
#include "engine/tokenizer.h"

static const elm_chat_params chat_defaults = {
    .struct_size = sizeof(elm_chat_params), .add_generation_prompt = true};

void elm_chat_params_init(elm_chat_params *p, size_t struct_size) {
    elmi_struct_init(p, struct_size, &chat_defaults, sizeof chat_defaults);
}

/* What one render needs, with the strings it owns. */
typedef struct chat_setup {
    elmi_jinja_input in;
    char *owned_src, *owned_bos, *owned_eos;
} chat_setup;

static void setup_free(chat_setup *s) {
    elmi_free(s->owned_src);
    elmi_free(s->owned_bos);
    elmi_free(s->owned_eos);
}

static elm_status model_template(const elm_model *m, chat_setup *s, char *err, size_t err_size) {
    if (!m) return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "no template and no model");
    const gguf_kv *kv = m->gguf ? elmi_gguf_find(m->gguf, "tokenizer.chat_template") : NULL;
    if (!kv) return elmi_errorf(err, err_size, ELM_ERR_UNSUPPORTED, "the model has no chat template");
    gguf_str str;
    ELM_TRY(elmi_gguf_get_str(m->gguf, "tokenizer.chat_template", true, &str, err, err_size));
    s->owned_src = elmi_strndup(str.ptr, (size_t)str.len);
    if (!s->owned_src) return elmi_errorf(err, err_size, ELM_ERR_NO_MEMORY, "out of memory");
    s->in.src = s->owned_src;
    s->in.src_len = (size_t)str.len;
    return ELM_OK;
}

/* The text of the model's token `id` ("" when none), owned by *out. */
static elm_status token_text(const elm_model *m, int32_t id, char **out, char *err, size_t err_size) {
    size_t n = 0;
    const char *t = m && id >= 0 ? elmi_vocab_token_text(m->vocab, id, &n) : NULL;
    *out = elmi_strndup(t ? t : "", t ? n : 0);
    if (!*out) return elmi_errorf(err, err_size, ELM_ERR_NO_MEMORY, "out of memory");
    return ELM_OK;
}

static elm_status setup(const elm_model *m, const char *tmpl, const elm_chat_params *params, chat_setup *s,
                        char *err, size_t err_size) {
    memset(s, 0, sizeof *s);
    elm_chat_params p = chat_defaults;
    if (params && !elmi_struct_in(&p, sizeof p, params, ELMI_MIN_CHAT_PARAMS))
        return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "elm_chat_params.struct_size is too small");
    if (tmpl) {
        s->in.src = tmpl;
        s->in.src_len = strlen(tmpl);
    } else ELM_TRY(model_template(m, s, err, err_size));
    s->in.add_generation_prompt = p.add_generation_prompt;
    s->in.now = p.now;
    s->in.bos_token = p.bos_token;
    s->in.eos_token = p.eos_token;
    if (!p.bos_token && m) {
        ELM_TRY(token_text(m, elmi_vocab_bos(m->vocab), &s->owned_bos, err, err_size));
        s->in.bos_token = s->owned_bos;
    }
    if (!p.eos_token && m) {
        ELM_TRY(token_text(m, elmi_vocab_eos(m->vocab), &s->owned_eos, err, err_size));
        s->in.eos_token = s->owned_eos;
    }
    return ELM_OK;
}

elm_status elm_chat_apply_template(const elm_model *model, const char *tmpl, const elm_chat_message *msgs,
                                   size_t n, const elm_chat_params *params, char *buf, size_t cap,
                                   size_t *len, char *err, size_t err_size) {
    if (err && err_size) err[0] = 0;
    if (!len || (!buf && cap) || (!msgs && n))
        return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "elm_chat_apply_template: NULL argument");
    *len = 0;
    chat_setup s;
    char *out = NULL;
    size_t out_len = 0;
    elm_status st = setup(model, tmpl, params, &s, err, err_size);
    if (st != ELM_OK) goto done;
    s.in.msgs = msgs;
    s.in.n_msgs = n;
    st = elmi_jinja_render(&s.in, &out, &out_len, err, err_size);
    if (st != ELM_OK) goto done;
    *len = out_len;
    if (out_len > cap) {
        st = elmi_errorf(err, err_size, ELM_ERR_BUFFER_TOO_SMALL, "the prompt needs %zu bytes", out_len + 1);
        goto done;
    }
    memcpy(buf, out, out_len);
    if (out_len < cap) buf[out_len] = 0;
done:
    elmi_free(out);
    setup_free(&s);
    return st;
}

/* ----------------------------------------------------------- end of turn */

#define SENTINEL "elm\x1f" "sentinel\x1f" "7319"

/* Renders user/assistant(SENTINEL)/user (or user/assistant(SENTINEL)) and
 * returns, owned, the text after the sentinel. */
static elm_status text_after_assistant(chat_setup *s, char **after, char *err, size_t err_size) {
    static const elm_chat_message conv[] = {
        {"user", "Hi"}, {"assistant", SENTINEL}, {"user", "Bye"}};
    char *out = NULL;
    size_t out_len;
    s->in.msgs = conv;
    s->in.n_msgs = 3;
    s->in.add_generation_prompt = false;
    elm_status st = elmi_jinja_render(&s->in, &out, &out_len, err, err_size);
    if (st == ELM_ERR_TEMPLATE) {
        s->in.n_msgs = 2;
        st = elmi_jinja_render(&s->in, &out, &out_len, err, err_size);
    }
    ELM_TRY(st);
    const char *p = strstr(out, SENTINEL);
    *after = elmi_strdup(p ? p + strlen(SENTINEL) : "");
    elmi_free(out);
    if (!*after) return elmi_errorf(err, err_size, ELM_ERR_NO_MEMORY, "out of memory");
    return ELM_OK;
}

static void add_unique(elm_token *out, size_t cap, size_t *n, elm_token t) {
    for (size_t i = 0; i < *n && i < cap; i++)
        if (out[i] == t) return;
    if (*n < cap) out[*n] = t;
    ++*n;
}

/* The first control token of `text`, or -1. */
static elm_status first_control(const elm_model *m, const char *text, elm_token *tok, char *err, size_t err_size) {
    *tok = -1;
    size_t len = strlen(text), n = 0;
    if (!len) return ELM_OK;
    size_t cap = len + 8;
    elm_token *ids = elmi_malloc(cap * sizeof *ids);
    if (!ids) return elmi_errorf(err, err_size, ELM_ERR_NO_MEMORY, "out of memory");
    elm_status st = elmi_vocab_tokenize(m->vocab, text, len, false, true, ids, cap, &n);
    if (st == ELM_ERR_BUFFER_TOO_SMALL) { /* space prefixes may add tokens */
        elmi_free(ids);
        cap = n;
        ids = elmi_malloc(cap * sizeof *ids);
        if (!ids) return elmi_errorf(err, err_size, ELM_ERR_NO_MEMORY, "out of memory");
        st = elmi_vocab_tokenize(m->vocab, text, len, false, true, ids, cap, &n);
    }
    for (size_t i = 0; st == ELM_OK && i < n; i++) {
        int tt = elmi_vocab_token_type(m->vocab, ids[i]);
        if (tt == VOCAB_TT_CONTROL || tt == VOCAB_TT_USER_DEFINED || elmi_vocab_is_eog(m->vocab, ids[i])) {
            *tok = ids[i];
            break;
        }
    }
    elmi_free(ids);
    if (st != ELM_OK) return elmi_errorf(err, err_size, st, "tokenizing the end of a turn failed");
    return ELM_OK;
}

elm_status elm_chat_end_of_turn(const elm_model *model, const char *tmpl, elm_token *out, size_t cap,
                                size_t *n, char *err, size_t err_size) {
    if (err && err_size) err[0] = 0;
    if (!model || !n || (!out && cap))
        return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "elm_chat_end_of_turn: NULL argument");
    *n = 0;
    chat_setup s;
    char *after = NULL;
    elm_status st = setup(model, tmpl, NULL, &s, err, err_size);
    if (st != ELM_OK) goto done;
    st = text_after_assistant(&s, &after, err, err_size);
    if (st != ELM_OK) goto done;
    elm_token t;
    st = first_control(model, after, &t, err, err_size);
    if (st != ELM_OK) goto done;
    if (t >= 0) add_unique(out, cap, n, t);
    uint32_t nv = elmi_vocab_n_tokens(model->vocab);
    for (uint32_t i = 0; i < nv; i++)
        if (elmi_vocab_is_eog(model->vocab, (int32_t)i)) add_unique(out, cap, n, (elm_token)i);
    if (err && err_size) err[0] = 0; /* a first rendering may have failed */
    if (*n > cap) st = elmi_errorf(err, err_size, ELM_ERR_BUFFER_TOO_SMALL, "%zu end-of-turn tokens", *n);
done:
    elmi_free(after);
    setup_free(&s);
    return st;
}
