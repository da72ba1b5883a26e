/* test_chat_model.c: chat templates from a model: tokenizer.chat_template,
 * the model's BOS/EOS texts, a model without a template, and the end-of-turn
 * tokens (tiny models from tests/support/tiny_model.h, no ../shared). */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "edgelm.h"
#include "engine/gguf.h"
#include "support/paths.h"
#include "support/tiny_model.h"

/* Llama 2 style: the assistant's turn ends with eos_token (</s>, id 2). */
static const char TEMPLATE[] =
    "{{ bos_token }}{% for m in messages %}{% if m.role == 'user' %}[INST] {{ m.content }} [/INST]"
    "{% else %} {{ m.content }}{{ eos_token }}{% endif %}{% endfor %}";

/* Tokens 298 and 299 become the control tokens <|im_start|> and <|im_end|>. */
static void add_chatml_tokens(gguf_writer *w, int n_vocab) {
    static char names[300][32];
    const char *ptrs[300];
    int32_t types[300];
    cr_assert_eq(n_vocab, 300);
    for (int i = 0; i < n_vocab; i++) {
        tiny_model_token(i, names[i], sizeof names[i]);
        ptrs[i] = names[i];
        types[i] = i < 3 ? 3 : (i < 259 ? 6 : 1);
    }
    ptrs[298] = "<|im_start|>";
    ptrs[299] = "<|im_end|>";
    types[298] = types[299] = 3;
    cr_assert_eq(elmi_gguf_set_arr_str(w, "tokenizer.ggml.tokens", ptrs, 300), ELM_OK);
    cr_assert_eq(elmi_gguf_set_arr_data(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, 300), ELM_OK);
}

static const char CHATML[] =
    "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

static elm_model *load_chatml(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/chat-chatml.gguf", test_tmp_dir());
    tiny_model_opts o = tiny_model_default();
    gguf_writer *w = tiny_model_build(&o);
    cr_assert_not_null(w);
    add_chatml_tokens(w, o.n_vocab);
    cr_assert_eq(elmi_gguf_set_str(w, "tokenizer.chat_template", CHATML), ELM_OK);
    char err[256];
    cr_assert_eq(elmi_gguf_write_file(w, path, err, sizeof err), ELM_OK, "%s", err);
    elmi_gguf_writer_free(w);
    elm_model_params mp;
    elm_model_default_params(&mp);
    mp.vocab_only = true;
    elm_model *m = NULL;
    cr_assert_eq(elm_model_load(path, &mp, &m, err, sizeof err), ELM_OK, "%s", err);
    return m;
}

static elm_model *load(bool with_template) {
    char path[512];
    snprintf(path, sizeof path, "%s/chat-%d.gguf", test_tmp_dir(), with_template);
    tiny_model_opts o = tiny_model_default();
    gguf_writer *w = tiny_model_build(&o);
    cr_assert_not_null(w);
    if (with_template) cr_assert_eq(elmi_gguf_set_str(w, "tokenizer.chat_template", TEMPLATE), ELM_OK);
    char err[256];
    cr_assert_eq(elmi_gguf_write_file(w, path, err, sizeof err), ELM_OK, "%s", err);
    elmi_gguf_writer_free(w);
    elm_model_params mp;
    elm_model_default_params(&mp);
    mp.vocab_only = true;
    elm_model *m = NULL;
    cr_assert_eq(elm_model_load(path, &mp, &m, err, sizeof err), ELM_OK, "%s", err);
    return m;
}

static const elm_chat_message conv[] = {{"user", "Hi"}, {"assistant", "Hello"}, {"user", "Bye"}};

Test(chat_model, renders_the_models_template) {
    elm_model *m = load(true);
    char buf[256], err[256];
    size_t len;
    cr_assert_eq(elm_chat_apply_template(m, NULL, conv, 3, NULL, buf, sizeof buf, &len, err, sizeof err), ELM_OK, "%s", err);
    cr_assert_str_eq(buf, "<s>[INST] Hi [/INST] Hello</s>[INST] Bye [/INST]");
    elm_chat_params p;
    elm_chat_default_params(&p);
    p.bos_token = "";
    p.eos_token = "<E>";
    cr_assert_eq(elm_chat_apply_template(m, NULL, conv, 3, &p, buf, sizeof buf, &len, err, sizeof err), ELM_OK, "%s", err);
    cr_assert_str_eq(buf, "[INST] Hi [/INST] Hello<E>[INST] Bye [/INST]");
    /* An explicit template wins over the model's. */
    cr_assert_eq(elm_chat_apply_template(m, "{{ bos_token }}|{{ eos_token }}", conv, 3, NULL, buf, sizeof buf, &len, err, sizeof err), ELM_OK);
    cr_assert_str_eq(buf, "<s>|</s>");
    elm_model_free(m);
}

Test(chat_model, end_of_turn_tokens) {
    elm_model *m = load(true);
    elm_token ids[8];
    size_t n = 0;
    char err[256];
    cr_assert_eq(elm_chat_end_of_turn(m, NULL, ids, 8, &n, err, sizeof err), ELM_OK, "%s", err);
    cr_assert_geq(n, 1);
    cr_assert_eq(ids[0], 2, "</s> ends the turn");
    for (size_t i = 0; i < n; i++) cr_assert(elm_token_is_eog(m, ids[i]) || ids[i] == 2);
    cr_assert_eq(elm_chat_end_of_turn(m, NULL, ids, 0, &n, err, sizeof err), ELM_ERR_BUFFER_TOO_SMALL);
    cr_assert_geq(n, 1);
    /* A template that ends turns with a control token: <s> here. */
    cr_assert_eq(elm_chat_end_of_turn(m, "{% for m in messages %}{{ m.content }}<s>\n{% endfor %}", ids, 8, &n, err, sizeof err), ELM_OK, "%s", err);
    cr_assert_eq(ids[0], 1);
    elm_model_free(m);
}

Test(chat_model, model_without_template) {
    elm_model *m = load(false);
    char buf[64], err[256];
    size_t len;
    cr_assert_eq(elm_chat_apply_template(m, NULL, conv, 3, NULL, buf, sizeof buf, &len, err, sizeof err), ELM_ERR_UNSUPPORTED);
    cr_assert_str_eq(err, "the model has no chat template");
    elm_token ids[4];
    size_t n;
    cr_assert_eq(elm_chat_end_of_turn(m, NULL, ids, 4, &n, err, sizeof err), ELM_ERR_UNSUPPORTED);
    elm_model_free(m);
    cr_assert_eq(elm_chat_apply_template(NULL, NULL, conv, 3, NULL, buf, sizeof buf, &len, err, sizeof err), ELM_ERR_INVALID_ARG);
}

Test(chat_model, chatml_end_of_turn) {
    elm_model *m = load_chatml();
    elm_token ids[8];
    size_t n = 0;
    char err[256];
    cr_assert_eq(elm_chat_end_of_turn(m, NULL, ids, 8, &n, err, sizeof err), ELM_OK, "%s", err);
    cr_assert_geq(n, 2);
    cr_assert_eq(ids[0], 299, "<|im_end|> ends the turn, not %d", ids[0]);
    bool eos = false;
    for (size_t i = 0; i < n; i++) eos |= ids[i] == 2;
    cr_assert(eos, "the model's EOS is listed too");
    char buf[256];
    size_t len;
    cr_assert_eq(elm_chat_apply_template(m, NULL, conv, 3, NULL, buf, sizeof buf, &len, err, sizeof err), ELM_OK, "%s", err);
    cr_assert_str_eq(buf, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n"
                          "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n");
    elm_model_free(m);
}

/* Every allocation of the model paths may fail: ELM_ERR_NO_MEMORY, no leak. */
static atomic_long n_allocs, fail_at;
static atomic_bool fail_hit;
static bool should_fail(void) {
    long k = atomic_fetch_add(&n_allocs, 1) + 1;
    if (atomic_load(&fail_at) == 0 || k != atomic_load(&fail_at)) return false;
    atomic_store(&fail_hit, true);
    return true;
}
static void *fa_malloc(void *u, size_t n) { (void)u; return should_fail() ? NULL : malloc(n); }
static void *fa_realloc(void *u, void *p, size_t n) { (void)u; return should_fail() ? NULL : realloc(p, n); }
static void fa_free(void *u, void *p) { (void)u; free(p); }

Test(chat_model, allocation_failures) {
    elm_allocator a = {sizeof a, fa_malloc, fa_realloc, fa_free, NULL};
    cr_assert_eq(elm_set_allocator(&a), ELM_OK);
    elm_model *m = load_chatml();
    size_t live = elm_allocations_live();
    for (int which = 0; which < 2; which++) {
        long k = 1;
        for (;; k++) {
            atomic_store(&fail_hit, false);
            atomic_store(&n_allocs, 0);
            atomic_store(&fail_at, k);
            char buf[512], err[256] = "";
            elm_token ids[8];
            size_t n;
            elm_status st = which ? elm_chat_end_of_turn(m, NULL, ids, 8, &n, err, sizeof err)
                                  : elm_chat_apply_template(m, NULL, conv, 3, NULL, buf, sizeof buf, &n, err, sizeof err);
            bool hit = atomic_load(&fail_hit);
            atomic_store(&fail_at, 0);
            cr_assert_eq(elm_allocations_live(), live, "k=%ld: leaked", k);
            if (!hit) {
                cr_assert_eq(st, ELM_OK, "k=%ld: %s", k, err);
                break;
            }
            cr_assert_eq(st, ELM_ERR_NO_MEMORY, "k=%ld: %s (%s)", k, elm_strerror(st), err);
        }
        fprintf(stderr, "%s: %ld allocation points\n", which ? "elm_chat_end_of_turn" : "elm_chat_apply_template (model)", k - 1);
    }
    elm_model_free(m);
    cr_assert_eq(elm_set_allocator(NULL), ELM_OK);
}
