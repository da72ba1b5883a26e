/*
 * test_tokenizer.c: the tokenizers against the shared reference vectors
 * (produced by the original tokenizers), plus small in-memory vocabularies
 * for the edge cases the vectors do not reach.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "engine/gguf.h"
#include "engine/tokenizer.h"
#include "engine/unicode.h"
#include "support/json.h"
#include "support/paths.h"

#define SEP "\n__ggml_vocab_test__\n"
#define MAX_CASES 64

/* ------------------------------------------------------------ helpers */

typedef struct ref_case {
    const char *text;
    size_t len;
    int32_t ids[512];
    size_t n_ids;
} ref_case;

typedef struct ref_set {
    gguf_file *file;
    elm_vocab *vocab;
    char *inp;
    ref_case cases[MAX_CASES];
    size_t n;
} ref_set;

static size_t split_inp(char *inp, size_t len, ref_case *cases) {
    size_t n = 0, pos = 0, sep = strlen(SEP);
    while (pos < len && n < MAX_CASES) {
        char *end = strstr(inp + pos, SEP);
        cr_assert(end, "unterminated test string %zu", n);
        cases[n].text = inp + pos;
        cases[n].len = (size_t)(end - (inp + pos));
        n++;
        pos = (size_t)(end - inp) + sep;
    }
    return n;
}

static void parse_out(char *out, ref_case *cases, size_t n) {
    char *line = out;
    for (size_t i = 0; i < n; i++) {
        cr_assert(line, "the .out file has too few lines");
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        char *p = line, *q;
        cases[i].n_ids = 0;
        for (long id; (id = strtol(p, &q, 10)), q != p; p = q) {
            cr_assert(cases[i].n_ids < 512);
            cases[i].ids[cases[i].n_ids++] = (int32_t)id;
        }
        line = nl ? nl + 1 : NULL;
    }
}

/* Loads <shared>/tokenizer/NAME.gguf and its vectors; skips when absent. */
static void load_ref(const char *name, ref_set *r) {
    char path[4096], inp_path[4200], out_path[4200], err[256];
    snprintf(inp_path, sizeof inp_path, "tokenizer/%s.gguf", name);
    if (!test_shared_path(inp_path, path, sizeof path))
        cr_skip_test("shared test vectors not found at %s (set ELM_SHARED_DIR)", path);
    snprintf(inp_path, sizeof inp_path, "%s.inp", path);
    snprintf(out_path, sizeof out_path, "%s.out", path);
    memset(r, 0, sizeof *r);
    cr_assert_eq(elmi_gguf_open(path, &r->file, err, sizeof err), ELM_OK, "%s", err);
    cr_assert_eq(elmi_vocab_load(r->file, &r->vocab, err, sizeof err), ELM_OK, "%s", err);
    size_t inp_len, out_len;
    r->inp = test_read_file(inp_path, &inp_len);
    char *out = test_read_file(out_path, &out_len);
    cr_assert(r->inp && out);
    r->n = split_inp(r->inp, inp_len, r->cases);
    parse_out(out, r->cases, r->n);
    free(out);
}

static void free_ref(ref_set *r) {
    elmi_vocab_free(r->vocab);
    elmi_gguf_close(r->file);
    free(r->inp);
}

/* Tokenizes into a malloc'd array (the caller frees it). */
static int32_t *tokenize(const elm_vocab *v, const char *s, size_t len, bool bos, bool special,
                         size_t *n) {
    size_t need = 0;
    elm_status st = elmi_vocab_tokenize(v, s, len, bos, special, NULL, 0, &need);
    cr_assert(st == ELM_OK || st == ELM_ERR_BUFFER_TOO_SMALL, "status %d", st);
    int32_t *ids = malloc((need ? need : 1) * sizeof *ids);
    cr_assert_eq(elmi_vocab_tokenize(v, s, len, bos, special, ids, need, n), ELM_OK);
    cr_assert_eq(*n, need);
    return ids;
}

static char *detokenize(const elm_vocab *v, const int32_t *ids, size_t n, size_t *len) {
    size_t need = 0;
    elm_status st = elmi_vocab_detokenize(v, ids, n, NULL, 0, &need);
    cr_assert(st == ELM_OK || st == ELM_ERR_BUFFER_TOO_SMALL);
    char *buf = malloc(need + 1);
    cr_assert_eq(elmi_vocab_detokenize(v, ids, n, buf, need + 1, len), ELM_OK);
    cr_assert_eq(*len, need);
    cr_assert_eq(buf[need], 0);
    return buf;
}

/* The concatenated pieces, without any clean-up. */
static char *pieces(const elm_vocab *v, const int32_t *ids, size_t n, size_t *len) {
    size_t cap = 16, k = 0;
    char *buf = malloc(cap);
    for (size_t i = 0; i < n; i++) {
        size_t m;
        elm_status st = elmi_vocab_token_to_piece(v, ids[i], buf + k, cap - k, &m);
        if (st == ELM_ERR_BUFFER_TOO_SMALL) {
            cap = 2 * cap + m;
            buf = realloc(buf, cap);
            i--;
            continue;
        }
        cr_assert_eq(st, ELM_OK);
        k += m;
    }
    *len = k;
    return buf;
}

static void check_vectors(const char *name) {
    ref_set r;
    load_ref(name, &r);
    cr_assert_eq(r.n, 46, "%s: %zu test strings", name, r.n);
    int bad = 0;
    for (size_t i = 0; i < r.n; i++) {
        size_t n;
        int32_t *ids = tokenize(r.vocab, r.cases[i].text, r.cases[i].len, false, false, &n);
        bool same = n == r.cases[i].n_ids && (n == 0 || !memcmp(ids, r.cases[i].ids, n * 4));
        if (!same) {
            bad++;
            const ref_case *c = &r.cases[i];
            fprintf(stderr, "%s case %zu '%.*s': got", name, i, (int)c->len, c->text);
            for (size_t j = 0; j < n; j++) fprintf(stderr, " %d", (int)ids[j]);
            fprintf(stderr, "\n  want");
            for (size_t j = 0; j < c->n_ids; j++) fprintf(stderr, " %d", (int)c->ids[j]);
            fprintf(stderr, "\n");
        }
        free(ids);
    }
    cr_expect_eq(bad, 0, "%s: %d of %zu cases differ", name, bad, r.n);
    free_ref(&r);
}

static void check_round_trip(const char *name) {
    ref_set r;
    load_ref(name, &r);
    for (size_t i = 0; i < r.n; i++) {
        size_t n, len;
        int32_t *ids = tokenize(r.vocab, r.cases[i].text, r.cases[i].len, true, false, &n);
        char *text = detokenize(r.vocab, ids, n, &len);
        cr_expect(len == r.cases[i].len && !memcmp(text, r.cases[i].text, len),
                  "%s case %zu: '%.*s' came back as '%s'", name, i, (int)r.cases[i].len,
                  r.cases[i].text, text);
        free(text);
        free(ids);
    }
    free_ref(&r);
}

/* ------------------------------------------------- reference vectors */

Test(tokenizer_ref, spm_vectors) { check_vectors("ggml-vocab-llama-spm"); }
Test(tokenizer_ref, bpe_vectors) { check_vectors("ggml-vocab-gpt-2"); }
Test(tokenizer_ref, spm_round_trip) { check_round_trip("ggml-vocab-llama-spm"); }
Test(tokenizer_ref, bpe_round_trip) { check_round_trip("ggml-vocab-gpt-2"); }

Test(tokenizer_ref, spm_metadata_and_bos) {
    ref_set r;
    load_ref("ggml-vocab-llama-spm", &r);
    const elm_vocab *v = r.vocab;
    cr_expect_str_eq(elmi_vocab_model_name(v), "llama");
    cr_expect_eq(elmi_vocab_n_tokens(v), 32000);
    cr_expect_eq(elmi_vocab_bos(v), 1);
    cr_expect_eq(elmi_vocab_eos(v), 2);
    cr_expect(elmi_vocab_add_bos(v));
    cr_expect(elmi_vocab_is_eog(v, 2));
    cr_expect(!elmi_vocab_is_eog(v, 1));
    cr_expect(!elmi_vocab_is_eog(v, -1) && !elmi_vocab_is_eog(v, 32000));

    size_t n, len;
    int32_t *ids = tokenize(v, "Once upon a time", 16, true, false, &n);
    cr_assert_geq(n, 2);
    cr_expect_eq(ids[0], 1);
    char piece[32];
    cr_assert_eq(elmi_vocab_token_to_piece(v, ids[1], piece, sizeof piece, &len), ELM_OK);
    cr_expect(len == 5 && !memcmp(piece, " Once", 5), "first piece '%.*s'", (int)len, piece);
    cr_assert_eq(elmi_vocab_token_to_piece(v, 1, piece, sizeof piece, &len), ELM_OK);
    cr_expect_eq(len, 0, "BOS renders as nothing");
    char *text = detokenize(v, ids, n, &len);
    cr_expect_str_eq(text, "Once upon a time");
    free(text);
    free(ids);
    free_ref(&r);
}

Test(tokenizer_ref, bpe_metadata_and_bos) {
    ref_set r;
    load_ref("ggml-vocab-gpt-2", &r);
    const elm_vocab *v = r.vocab;
    cr_expect_str_eq(elmi_vocab_model_name(v), "gpt2");
    cr_expect_str_eq(elmi_vocab_pre_name(v), "gpt-2");
    cr_expect(!elmi_vocab_add_bos(v), "gpt2 vocabularies add no BOS by default");
    cr_expect(elmi_vocab_is_eog(v, 50256));
    size_t n;
    int32_t *ids = tokenize(v, "Hello world", 11, true, false, &n);
    cr_expect(n == 2 && ids[0] == 15496 && ids[1] == 995);
    free(ids);
    free_ref(&r);
}

Test(tokenizer_ref, special_tokens) {
    ref_set r;
    load_ref("ggml-vocab-llama-spm", &r);
    size_t n;
    int32_t *ids = tokenize(r.vocab, "<s>Hi</s>", 9, false, true, &n);
    cr_expect(n >= 3 && ids[0] == 1 && ids[n - 1] == 2, "control tokens are recognized");
    free(ids);
    ids = tokenize(r.vocab, "<s>Hi</s>", 9, false, false, &n);
    for (size_t i = 0; i < n; i++) cr_expect(ids[i] != 1 && ids[i] != 2, "only with parse_special");
    free(ids);
    free_ref(&r);

    load_ref("ggml-vocab-gpt-2", &r);
    ids = tokenize(r.vocab, "a<|endoftext|>b", 15, false, true, &n);
    cr_expect(n == 3 && ids[1] == 50256);
    free(ids);
    ids = tokenize(r.vocab, "a<|endoftext|>b", 15, false, false, &n);
    cr_expect_gt(n, 3);
    free(ids);
    free_ref(&r);
}

static uint64_t rng_next(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

/* Arbitrary bytes, ill-formed UTF-8 included: the raw pieces give the bytes
 * back (after the one prefix space of SentencePiece). */
static void check_random_bytes(const char *name, bool spm) {
    ref_set r;
    load_ref(name, &r);
    uint64_t seed = 12345;
    char text[96];
    for (int iter = 0; iter < 400; iter++) {
        size_t len = rng_next(&seed) % sizeof text;
        for (size_t i = 0; i < len; i++) {
            uint64_t x = rng_next(&seed);
            text[i] = (char)(x % 3 == 0 ? ' ' + x % 95 : x & 0xff);
            if (spm && (uint8_t)text[i] == 0x81) text[i] = 'x'; /* keeps U+2581 out */
        }
        size_t n, k;
        int32_t *ids = tokenize(r.vocab, text, len, false, false, &n);
        char *back = pieces(r.vocab, ids, n, &k);
        size_t skip = spm && len > 0;
        cr_assert(k == len + skip && !memcmp(back + skip, text, len), "%s iteration %d", name,
                  iter);
        free(back);
        free(ids);
    }
    free_ref(&r);
}

Test(tokenizer_ref, spm_arbitrary_bytes) { check_random_bytes("ggml-vocab-llama-spm", true); }
Test(tokenizer_ref, bpe_arbitrary_bytes) { check_random_bytes("ggml-vocab-gpt-2", false); }

typedef struct thread_arg {
    const elm_vocab *v;
    const ref_set *r;
    int bad;
} thread_arg;

static void *thread_main(void *p) {
    thread_arg *a = p;
    for (int rep = 0; rep < 20; rep++) {
        for (size_t i = 0; i < a->r->n; i++) {
            int32_t ids[512];
            size_t n;
            const ref_case *c = &a->r->cases[i];
            if (elmi_vocab_tokenize(a->v, c->text, c->len, false, false, ids, 512, &n) != ELM_OK ||
                n != c->n_ids || (n && memcmp(ids, c->ids, n * 4)))
                a->bad++;
        }
    }
    return NULL;
}

Test(tokenizer_ref, concurrent_use) {
    ref_set r;
    load_ref("ggml-vocab-gpt-2", &r);
    pthread_t th[4];
    thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (thread_arg){r.vocab, &r, 0};
        cr_assert_eq(pthread_create(&th[i], NULL, thread_main, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        cr_expect_eq(args[i].bad, 0);
    }
    free_ref(&r);
}

/* The model references: the paragraph's first 64 ids and the prompt's ids
 * (BOS included where the vocab adds it, special tokens parsed), and the
 * generated ids detokenized as the reference tool prints them. */
static void check_model_reference(const char *ref, const char *model) {
    char path[4096], rel[256], err[256];
    snprintf(rel, sizeof rel, "reference/%s.json", ref);
    if (!test_shared_path(rel, path, sizeof path)) cr_skip_test("%s not found", path);
    json_value *root = json_parse_file(path, err, sizeof err);
    cr_assert(root, "%s", err);
    snprintf(rel, sizeof rel, "models/%s.gguf", model);
    cr_assert(test_shared_path(rel, path, sizeof path), "%s not found", path);
    gguf_file *f;
    elm_vocab *v;
    cr_assert_eq(elmi_gguf_open(path, &f, err, sizeof err), ELM_OK, "%s", err);
    cr_assert_eq(elmi_vocab_load(f, &v, err, sizeof err), ELM_OK, "%s", err);
    const char *keys[][2] = {{"text", "tokens"}, {"prompt", "prompt_tokens"}};
    for (int k = 0; k < 2; k++) {
        const json_value *text = json_get(root, keys[k][0]), *want = json_get(root, keys[k][1]);
        cr_assert(json_str(text) && json_len(want) > 0);
        size_t n;
        int32_t *ids = tokenize(v, text->string, text->len, true, true, &n);
        cr_assert_geq(n, json_len(want), "%s: %s", ref, keys[k][1]);
        for (size_t i = 0; i < json_len(want); i++)
            cr_expect_eq(ids[i], (int32_t)json_num(json_at(want, i), -1), "%s: %s[%zu]", ref,
                         keys[k][1], i);
        free(ids);
    }
    const json_value *gen = json_get(root, "generated"), *text = json_get(root, "generated_text");
    int32_t ids[256];
    size_t n = json_len(gen), len;
    cr_assert(n > 0 && n <= 256 && json_str(text));
    for (size_t i = 0; i < n; i++) ids[i] = (int32_t)json_num(json_at(gen, i), -1);
    char *out = detokenize(v, ids, n, &len);
    cr_expect(len == text->len && !memcmp(out, text->string, len), "%s: '%s' != '%s'", ref, out,
              text->string);
    free(out);
    elmi_vocab_free(v);
    elmi_gguf_close(f);
    json_free(root);
}

Test(tokenizer_ref, stories_reference) { check_model_reference("stories260K", "stories260K"); }
Test(tokenizer_ref, spm_model_reference) {
    check_model_reference("synth-spm-a-Q8_0", "synth-spm-a-Q8_0");
    check_model_reference("synth-spm-a-Q8_0.deqf32", "synth-spm-a-Q8_0");
}
Test(tokenizer_ref, bpe_model_reference) {
    check_model_reference("synth-bpe-q-Q8_0", "synth-bpe-q-Q8_0");
}
/* The synthetic models of the newer architectures: their vocabularies are
 * SentencePiece (gemma3, phi3: pre "default") or byte-level BPE (lfm2 and
 * smollm3: pre "gpt-2", qwen3: pre "qwen2"). */
Test(tokenizer_ref, gemma3_model_reference) {
    check_model_reference("synth-gemma3-Q8_0", "synth-gemma3-Q8_0");
}
Test(tokenizer_ref, phi3_model_reference) {
    check_model_reference("synth-phi3-Q4_0", "synth-phi3-Q4_0");
}
Test(tokenizer_ref, lfm2_model_reference) {
    check_model_reference("synth-lfm2-Q8_0", "synth-lfm2-Q8_0");
}
Test(tokenizer_ref, qwen3_model_reference) {
    check_model_reference("synth-qwen3-Q8_0", "synth-qwen3-Q8_0");
}
Test(tokenizer_ref, smollm3_model_reference) {
    check_model_reference("synth-smollm3-Q8_0", "synth-smollm3-Q8_0");
}

/* ------------------------------------------------ in-memory vocabularies */

#define MAXTOK 400

typedef struct mini {
    gguf_str tok[MAXTOK];
    float score[MAXTOK];
    int32_t type[MAXTOK];
    uint32_t n;
    gguf_str merge[64];
    uint32_t n_merges;
} mini;

static int32_t mini_add(mini *m, const char *text, float score, int32_t type) {
    m->tok[m->n] = (gguf_str){text, strlen(text)};
    m->score[m->n] = score;
    m->type[m->n] = type;
    return (int32_t)m->n++;
}

static elm_vocab *mini_build(mini *m, const char *model, const char *pre, int32_t unk) {
    vocab_arrays a = elmi_vocab_arrays_init();
    a.model = model;
    a.pre = pre;
    a.n_tokens = m->n;
    a.tokens = m->tok;
    a.scores = m->score;
    a.types = m->type;
    a.n_merges = m->n_merges;
    a.merges = m->merge;
    a.unk = unk;
    if (!strcmp(model, "llama")) {
        a.bos = 1;
        a.eos = 2;
    }
    elm_vocab *v = NULL;
    char err[256];
    cr_assert_eq(elmi_vocab_new_from_arrays(&a, &v, err, sizeof err), ELM_OK, "%s", err);
    return v;
}

static void expect_ids(const elm_vocab *v, const char *text, const int32_t *want, size_t n_want) {
    size_t n;
    int32_t *ids = tokenize(v, text, strlen(text), false, false, &n);
    bool same = n == n_want && (n == 0 || !memcmp(ids, want, n * 4));
    char got[256] = "";
    for (size_t i = 0, k = 0; i < n && k < 200; i++)
        k += (size_t)snprintf(got + k, sizeof got - k, " %d", (int)ids[i]);
    cr_expect(same, "'%s' gave%s", text, got);
    free(ids);
}

#define EXPECT_IDS(v, text, ...)                                                         \
    do {                                                                                 \
        const int32_t want_[] = {__VA_ARGS__};                                           \
        expect_ids(v, text, want_, sizeof want_ / sizeof want_[0]);                      \
    } while (0)

#define SP "\xe2\x96\x81"

/* An SPM vocab: <unk>, <s>, </s>, the bytes 0x41 and 0xE2/0x82/0xAC, some
 * malformed byte tokens, and a few pieces. */
static elm_vocab *spm_mini(void) {
    static mini m;
    memset(&m, 0, sizeof m);
    mini_add(&m, "<unk>", 0, 2);            /* 0 */
    mini_add(&m, "<s>", 0, 3);              /* 1 */
    mini_add(&m, "</s>", 0, 3);             /* 2 */
    mini_add(&m, "<0x41>", 0, 6);           /* 3 */
    mini_add(&m, "<0xE2>", 0, 6);           /* 4 */
    mini_add(&m, "<0x82>", 0, 6);           /* 5 */
    mini_add(&m, "<0xac>", 0, 6);           /* 6: lower-case hex is still a byte */
    mini_add(&m, "<0x-1>", 0, 6);           /* 7: malformed */
    mini_add(&m, "<0xZZ>", 0, 6);           /* 8: malformed */
    mini_add(&m, "<0x4>", 0, 6);            /* 9: malformed */
    mini_add(&m, SP, -1, 1);                /* 10 */
    mini_add(&m, "a", -2, 1);               /* 11 */
    mini_add(&m, "b", -2, 1);               /* 12 */
    mini_add(&m, "ab", -3, 1);              /* 13 */
    mini_add(&m, "ba", -3, 1);              /* 14 */
    mini_add(&m, SP "a", -1.5f, 1);         /* 15 */
    mini_add(&m, "", 0, 1);                 /* 16: empty */
    mini_add(&m, "<x>", 0, 4);              /* 17: user-defined */
    mini_add(&m, "unused", 0, 5);           /* 18 */
    mini_add(&m, "<0x42>", 0, 1);           /* 19: normal type: not a byte token */
    return mini_build(&m, "llama", NULL, 0);
}

Test(tokenizer_mini, spm_merges_and_fallback) {
    elm_vocab *v = spm_mini();
    EXPECT_IDS(v, "a", 15);              /* "▁a" */
    EXPECT_IDS(v, "b", 10, 12);
    EXPECT_IDS(v, "bab", 10, 14, 12);    /* equal scores: the leftmost pair "ba" first */
    EXPECT_IDS(v, "A", 10, 3);           /* byte fallback */
    EXPECT_IDS(v, "B", 10, 0);           /* no byte token for 'B': <unk> */
    EXPECT_IDS(v, "\xe2\x82\xac", 10, 4, 5, 6);
    EXPECT_IDS(v, "\xe2\x82", 10, 4, 5); /* truncated UTF-8 still falls back to bytes */
    EXPECT_IDS(v, "\xff", 10, 0);
    EXPECT_IDS(v, "a<x>a", 15, 17, 15);  /* user-defined: always split, space prefix after */
    EXPECT_IDS(v, "unused", 10, 0, 0, 0, 0, 0, 0);
    EXPECT_IDS(v, "");
    elmi_vocab_free(v);
}

Test(tokenizer_mini, spm_malformed_byte_tokens) {
    elm_vocab *v = spm_mini();
    char buf[16];
    size_t len;
    cr_expect_eq(elmi_vocab_token_type(v, 7), 1, "<0x-1> is demoted to normal text");
    cr_expect_eq(elmi_vocab_token_type(v, 8), 1);
    cr_expect_eq(elmi_vocab_token_type(v, 9), 1);
    cr_expect_eq(elmi_vocab_token_type(v, 6), 6);
    cr_assert_eq(elmi_vocab_token_to_piece(v, 8, buf, sizeof buf, &len), ELM_OK);
    cr_expect(len == 6 && !memcmp(buf, "<0xZZ>", 6));
    cr_assert_eq(elmi_vocab_token_to_piece(v, 19, buf, sizeof buf, &len), ELM_OK);
    cr_expect(len == 6 && !memcmp(buf, "<0x42>", 6));
    cr_assert_eq(elmi_vocab_token_to_piece(v, 16, buf, sizeof buf, &len), ELM_OK);
    cr_expect_eq(len, 0, "empty token");
    cr_assert_eq(elmi_vocab_token_to_piece(v, 18, buf, sizeof buf, &len), ELM_OK);
    cr_expect_eq(len, 0, "unused token");
    cr_assert_eq(elmi_vocab_token_to_piece(v, 0, buf, sizeof buf, &len), ELM_OK);
    cr_expect(len == 5 && !memcmp(buf, " \xe2\x81\x87 ", 5), "unknown token");
    cr_expect_eq(elmi_vocab_find(v, "", 0), -1);
    elmi_vocab_free(v);
}

Test(tokenizer_mini, spm_detokenize_bytes) {
    elm_vocab *v = spm_mini();
    char buf[32];
    size_t len;
    const int32_t euro[] = {4, 5, 6};
    cr_assert_eq(elmi_vocab_detokenize(v, euro, 3, buf, sizeof buf, &len), ELM_OK);
    cr_expect(len == 3 && !strcmp(buf, "\xe2\x82\xac"));
    cr_assert_eq(elmi_vocab_token_to_piece(v, 4, buf, sizeof buf, &len), ELM_OK);
    cr_expect(len == 1 && (uint8_t)buf[0] == 0xE2, "a byte token gives its raw byte");
    const int32_t part[] = {4, 5, 11};
    cr_assert_eq(elmi_vocab_detokenize(v, part, 3, buf, sizeof buf, &len), ELM_OK);
    cr_expect_str_eq(buf, "\xef\xbf\xbd" "a", "one U+FFFD for the truncated sequence");
    const int32_t spaced[] = {1, 15, 10, 13, 2};
    cr_assert_eq(elmi_vocab_detokenize(v, spaced, 5, buf, sizeof buf, &len), ELM_OK);
    cr_expect_str_eq(buf, "a ab", "the prefix space is removed once");
    elmi_vocab_free(v);
}

Test(tokenizer_mini, buffer_contracts) {
    elm_vocab *v = spm_mini();
    int32_t ids[8];
    size_t n = 99;
    cr_expect_eq(elmi_vocab_tokenize(v, "bab", 3, true, false, ids, 2, &n), ELM_ERR_BUFFER_TOO_SMALL);
    cr_expect_eq(n, 4);
    cr_expect(ids[0] == 1 && ids[1] == 10, "what fits is written");
    cr_expect_eq(elmi_vocab_tokenize(v, "bab", 3, true, false, ids, 4, &n), ELM_OK);
    cr_expect(n == 4 && ids[3] == 12);
    cr_expect_eq(elmi_vocab_tokenize(v, NULL, 0, false, false, NULL, 0, &n), ELM_OK);
    cr_expect_eq(n, 0);
    cr_expect_eq(elmi_vocab_tokenize(v, NULL, 1, false, false, ids, 8, &n), ELM_ERR_INVALID_ARG);
    cr_expect_eq(elmi_vocab_tokenize(v, "a", 1, false, false, NULL, 8, &n), ELM_ERR_INVALID_ARG);
    cr_expect_eq(elmi_vocab_tokenize(NULL, "a", 1, false, false, ids, 8, &n), ELM_ERR_INVALID_ARG);
    cr_expect_eq(elmi_vocab_tokenize(v, "a", 1, false, false, ids, 8, NULL), ELM_ERR_INVALID_ARG);

    char buf[8];
    size_t len = 99;
    cr_expect_eq(elmi_vocab_token_to_piece(v, 15, buf, 1, &len), ELM_ERR_BUFFER_TOO_SMALL);
    cr_expect_eq(len, 2);
    cr_expect_eq(elmi_vocab_token_to_piece(v, 15, buf, 2, &len), ELM_OK);
    cr_expect(len == 2 && !memcmp(buf, " a", 2));
    cr_expect_eq(elmi_vocab_token_to_piece(v, 20, buf, 8, &len), ELM_ERR_INVALID_ARG);
    cr_expect_eq(elmi_vocab_token_to_piece(v, -1, buf, 8, &len), ELM_ERR_INVALID_ARG);

    const int32_t two[] = {15, 15};
    memset(buf, 'x', sizeof buf);
    cr_expect_eq(elmi_vocab_detokenize(v, two, 2, buf, 2, &len), ELM_ERR_BUFFER_TOO_SMALL);
    cr_expect_eq(len, 3);
    cr_expect_eq(elmi_vocab_detokenize(v, two, 2, buf, 3, &len), ELM_OK);
    cr_expect(len == 3 && !memcmp(buf, "a a", 3) && buf[3] == 'x', "no NUL when it does not fit");
    cr_expect_eq(elmi_vocab_detokenize(v, two, 2, buf, 4, &len), ELM_OK);
    cr_expect_eq(buf[3], 0);
    const int32_t bad[] = {15, 9999};
    cr_expect_eq(elmi_vocab_detokenize(v, bad, 2, buf, 8, &len), ELM_ERR_INVALID_ARG);
    elmi_vocab_free(v);
}

/* bytes_to_unicode() as GPT-2 defines it: a list of the printable bytes,
 * then the others in order from 256. Written independently of unicode.c. */
static uint32_t gpt2_cp(int b) {
    static uint32_t map[256];
    if (!map['!']) {
        uint32_t next = 256;
        for (int i = 0; i < 256; i++) {
            bool keep = (i >= '!' && i <= '~') || (i >= 0xA1 && i <= 0xAC) || (i >= 0xAE);
            map[i] = keep ? (uint32_t)i : next++;
        }
    }
    return map[b];
}

Test(tokenizer_mini, bytelevel_mapping) {
    for (int b = 0; b < 256; b++) {
        cr_expect_eq(elmi_bytelevel_cp((uint8_t)b), gpt2_cp(b), "byte %d", b);
        cr_expect_eq(elmi_bytelevel_byte(gpt2_cp(b)), b);
    }
    cr_expect_eq(elmi_bytelevel_byte(0x20), -1);
    cr_expect_eq(elmi_bytelevel_byte(324), -1);
}

Test(tokenizer_mini, elmi_utf8_next) {
    static const struct { const char *s; size_t n, len; bool valid; } cases[] = {
        {"a", 1, 1, true},          {"\xc3\xa9", 2, 2, true},     {"\xe2\x82\xac", 3, 3, true},
        {"\xf0\x9f\x98\x80", 4, 4, true}, {"\xc0\x80", 2, 1, false}, {"\xed\xa0\x80", 3, 1, false},
        {"\xf4\x90\x80\x80", 4, 1, false}, {"\xe2\x82", 2, 2, false}, {"\xe2\x82z", 3, 2, false},
        {"\x80", 1, 1, false},      {"\xff", 1, 1, false},        {"\xf0\x9f\x98", 3, 3, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool valid;
        size_t len = elmi_utf8_next((const unsigned char *)cases[i].s, cases[i].n, &valid, NULL);
        cr_expect(len == cases[i].len && valid == cases[i].valid, "case %zu: %zu %d", i, len,
                  valid);
    }
}

/* A byte-level vocab: the 256 byte characters, then tokens for merges. */
static mini bpe_m;
static char bpe_text[256][4];

static void bpe_base(void) {
    memset(&bpe_m, 0, sizeof bpe_m);
    for (int b = 0; b < 256; b++) {
        size_t k = elmi_utf8_encode(gpt2_cp(b), bpe_text[b]);
        bpe_text[b][k] = 0;
        mini_add(&bpe_m, bpe_text[b], 0, 1);
    }
}

static int32_t bpe_tok(const char *text, const char *merge) {
    if (merge) bpe_m.merge[bpe_m.n_merges++] = (gguf_str){merge, strlen(merge)};
    return mini_add(&bpe_m, text, 0, 1);
}

/* The id of a byte's character: bpe_base adds them in byte order. */
#define B(c) ((int32_t)(uint8_t)(c))

Test(tokenizer_mini, bpe_pretokenizers) {
    bpe_base();
    int32_t t12 = bpe_tok("12", "1 2");
    int32_t t34 = bpe_tok("34", "3 4");
    int32_t t123 = bpe_tok("123", "12 3");
    int32_t t45 = bpe_tok("45", "4 5");
    int32_t tqs = bpe_tok("'S", "' S");
    int32_t txyz = bpe_tok("xyz", NULL);
    int32_t t_bad = bpe_tok("zz", "z q"); /* "z q" does not make "zz": ignored */
    (void)t_bad;

    elm_vocab *v = mini_build(&bpe_m, "gpt2", "gpt-2", -1);
    EXPECT_IDS(v, "12345", t12, t34, B('5'));
    EXPECT_IDS(v, "'S", B('\''), B('S'));
    EXPECT_IDS(v, "xyz", B('x'), B('y'), B('z'));
    EXPECT_IDS(v, "zq", B('z'), B('q'));
    elmi_vocab_free(v);

    v = mini_build(&bpe_m, "gpt2", "llama-bpe", -1);
    EXPECT_IDS(v, "12345", t123, t45);
    EXPECT_IDS(v, "'S", tqs);
    EXPECT_IDS(v, "xyz", txyz); /* ignore_merges: a word that is a token is taken whole */
    elmi_vocab_free(v);

    v = mini_build(&bpe_m, "gpt2", "qwen2", -1);
    EXPECT_IDS(v, "12345", B('1'), B('2'), B('3'), B('4'), B('5'));
    EXPECT_IDS(v, "'S", tqs);
    elmi_vocab_free(v);

    v = mini_build(&bpe_m, "gpt2", "", -1);
    cr_expect_str_eq(elmi_vocab_pre_name(v), "");
    EXPECT_IDS(v, "12345", t12, t34, B('5'));
    elmi_vocab_free(v);
}

/* "smollm" and "starcoder" (llama.cpp: the regexes "\p{N}", then GPT-2's
 * inside each piece): every digit is a word of its own, so no merge joins
 * digits or a space and a digit, and a digit ends a run of spaces as the end
 * of the text would. Away from digits the words are GPT-2's. */
Test(tokenizer_mini, bpe_smollm_digits) {
    static char spsp[8], sp1[8], spab[8], d3[8], d3d3[16];
    static char m_sp1[16], m_spsp[16], m_spab[16], m_d3[16], m_d3d3[24];
    bpe_base();
    const char *g = bpe_text[' '];                       /* the space's character, U+0120 */
    const char *x = bpe_text[0xD9], *y = bpe_text[0xA3]; /* U+0663 ARABIC-INDIC DIGIT THREE */
    snprintf(spsp, sizeof spsp, "%s%s", g, g);
    snprintf(sp1, sizeof sp1, "%s1", g);
    snprintf(spab, sizeof spab, "%sab", g);
    snprintf(d3, sizeof d3, "%s%s", x, y);
    snprintf(d3d3, sizeof d3d3, "%s%s", d3, d3);
    snprintf(m_sp1, sizeof m_sp1, "%s 1", g);
    snprintf(m_spsp, sizeof m_spsp, "%s %s", g, g);
    snprintf(m_spab, sizeof m_spab, "%s ab", g);
    snprintf(m_d3, sizeof m_d3, "%s %s", x, y);
    snprintf(m_d3d3, sizeof m_d3d3, "%s %s", d3, d3);
    int32_t t12 = bpe_tok("12", "1 2");
    int32_t t34 = bpe_tok("34", "3 4");
    int32_t tsp1 = bpe_tok(sp1, m_sp1);
    int32_t tspsp = bpe_tok(spsp, m_spsp);
    int32_t tab = bpe_tok("ab", "a b");
    int32_t tspab = bpe_tok(spab, m_spab);
    int32_t tqs = bpe_tok("'s", "' s");
    int32_t td3 = bpe_tok(d3, m_d3);
    int32_t td3d3 = bpe_tok(d3d3, m_d3d3);
    const int32_t SPC = B(' ');

    /* GPT-2: runs of digits are words, and so is a space with the digits. */
    elm_vocab *v = mini_build(&bpe_m, "gpt2", "gpt-2", -1);
    EXPECT_IDS(v, "12345", t12, t34, B('5'));
    EXPECT_IDS(v, "ab 1", tab, tsp1);
    EXPECT_IDS(v, "a  1", B('a'), SPC, tsp1);
    EXPECT_IDS(v, "ab12cd", tab, t12, B('c'), B('d'));
    EXPECT_IDS(v, "\xd9\xa3\xd9\xa3", td3d3); /* \p{N}, not only ASCII digits */
    EXPECT_IDS(v, "ab  ab", tab, SPC, tspab);
    EXPECT_IDS(v, "x's 1  ", B('x'), tqs, tsp1, tspsp);
    elmi_vocab_free(v);

    const char *const names[] = {"smollm", "starcoder"};
    for (int i = 0; i < 2; i++) {
        v = mini_build(&bpe_m, "gpt2", names[i], -1);
        cr_expect_str_eq(elmi_vocab_pre_name(v), names[i]);
        EXPECT_IDS(v, "12345", B('1'), B('2'), B('3'), B('4'), B('5'));
        EXPECT_IDS(v, "ab 1", tab, SPC, B('1'));      /* the space stays apart */
        EXPECT_IDS(v, "a  1", B('a'), tspsp, B('1')); /* both spaces: a digit ends the run */
        EXPECT_IDS(v, "ab12cd", tab, B('1'), B('2'), B('c'), B('d'));
        EXPECT_IDS(v, "\xd9\xa3\xd9\xa3", td3, td3);
        EXPECT_IDS(v, "1 ab", B('1'), tspab);
        /* Without digits, the words of GPT-2. */
        EXPECT_IDS(v, "ab  ab", tab, SPC, tspab);
        EXPECT_IDS(v, "x's  ", B('x'), tqs, tspsp);
        EXPECT_IDS(v, "a \n\tb", B('a'), SPC, B('\n'), B('\t'), B('b'));
        elmi_vocab_free(v);
    }
}

Test(tokenizer_mini, bpe_rank_order_and_bytes) {
    bpe_base();
    int32_t tab = bpe_tok("ab", "a b");
    int32_t tbc = bpe_tok("bc", "b c");
    bpe_tok("abc", "ab c");
    elm_vocab *v = mini_build(&bpe_m, "gpt2", NULL, -1);
    EXPECT_IDS(v, "abbc", tab, tbc);
    EXPECT_IDS(v, "bcab", tbc, tab);
    /* \xff is a word of its own: the regex never matches ill-formed bytes */
    EXPECT_IDS(v, "ab\xff" "ab", tab, 0xff, tab);
    EXPECT_IDS(v, "abc", tab + 2);
    elmi_vocab_free(v);
}

/* ------------------------------------------------- loading from GGUF */

static const char *const gg_tokens[] = {"<unk>", "<s>", "</s>", "a", "", "<0x-1>", "<0x61>"};
#define GG_N 7

/* A small valid "llama" vocab; tests then break one key. */
static gguf_writer *gg_base(const char *model) {
    static const float scores[GG_N] = {0, 0, 0, -1, 0, 0, 0};
    static const int32_t types[GG_N] = {2, 3, 3, 1, 1, 6, 6};
    gguf_writer *w = elmi_gguf_writer_new();
    cr_assert(w);
    if (model) cr_assert_eq(elmi_gguf_set_str(w, "tokenizer.ggml.model", model), ELM_OK);
    cr_assert_eq(elmi_gguf_set_arr_str(w, "tokenizer.ggml.tokens", gg_tokens, GG_N), ELM_OK);
    cr_assert_eq(elmi_gguf_set_arr_data(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, GG_N),
                 ELM_OK);
    cr_assert_eq(elmi_gguf_set_arr_data(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, GG_N),
                 ELM_OK);
    cr_assert_eq(elmi_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 1), ELM_OK);
    cr_assert_eq(elmi_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 2), ELM_OK);
    cr_assert_eq(elmi_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", 0), ELM_OK);
    return w;
}

/* Serializes w (and frees it), opens the bytes and loads the vocab; the
 * file is closed again before returning, so the vocab must own its data. */
static elm_status gg_load(gguf_writer *w, elm_vocab **v, char *err, size_t es) {
    void *buf;
    size_t size;
    cr_assert_eq(elmi_gguf_write_memory(w, &buf, &size), ELM_OK);
    elmi_gguf_writer_free(w);
    gguf_file *f;
    cr_assert_eq(elmi_gguf_open_memory(buf, size, &f, err, es), ELM_OK, "%s", err);
    *v = NULL;
    elm_status st = elmi_vocab_load(f, v, err, es);
    cr_assert(st == ELM_OK ? *v != NULL : *v == NULL);
    elmi_gguf_close(f);
    memset(buf, 0, size);
    elmi_free(buf);
    return st;
}

static void expect_load_error(gguf_writer *w, elm_status want, const char *needle) {
    elm_vocab *v;
    char err[256] = "";
    elm_status st = gg_load(w, &v, err, sizeof err);
    cr_expect_eq(st, want, "status %d (%s), want %d", st, err, want);
    cr_expect(strstr(err, needle), "message '%s' should mention '%s'", err, needle);
    elmi_vocab_free(v);
}

Test(tokenizer_gguf, loads_and_owns_its_data) {
    elm_vocab *v;
    char err[256];
    cr_assert_eq(gg_load(gg_base("llama"), &v, err, sizeof err), ELM_OK, "%s", err);
    cr_expect_eq(elmi_vocab_n_tokens(v), GG_N);
    cr_expect(elmi_vocab_add_bos(v), "llama adds BOS without add_bos_token");
    cr_expect(elmi_vocab_add_space_prefix(v));
    cr_expect_eq(elmi_vocab_token_type(v, 5), 1, "<0x-1> is not a byte token");
    EXPECT_IDS(v, "a", 0, 3); /* "▁" has no token nor byte token: <unk>, then "a" */
    size_t n;
    int32_t *ids = tokenize(v, "aa", 2, true, false, &n);
    cr_expect(n == 4 && ids[0] == 1 && ids[2] == 3 && ids[3] == 3);
    free(ids);
    elmi_vocab_free(v);
}

Test(tokenizer_gguf, flags_and_ids) {
    gguf_writer *w = gg_base("llama");
    elmi_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", false);
    elmi_gguf_set_u32(w, "tokenizer.ggml.padding_token_id", UINT32_MAX); /* "none" */
    elmi_gguf_set_i32(w, "tokenizer.ggml.eot_token_id", -1);
    elm_vocab *v;
    char err[256];
    cr_assert_eq(gg_load(w, &v, err, sizeof err), ELM_OK, "%s", err);
    cr_expect(!elmi_vocab_add_bos(v));
    cr_expect_eq(elmi_vocab_pad(v), -1);
    cr_expect_eq(elmi_vocab_eot(v), -1);
    size_t n;
    int32_t *ids = tokenize(v, "a", 1, true, false, &n);
    cr_expect(n == 2 && ids[0] != 1, "no BOS when the file says so");
    free(ids);
    elmi_vocab_free(v);
}

Test(tokenizer_gguf, refuses_bad_metadata) {
    static const float f3[3] = {0};
    static const uint8_t u8[GG_N] = {0};
    static const float f7[GG_N] = {0};
    static const int32_t bad_type[GG_N] = {1, 1, 1, 9, 1, 1, 1};
    static const int32_t i5[5] = {1, 1, 1, 1, 1};
    gguf_writer *w;

    w = gg_base("llama");
    elmi_gguf_set_arr_data(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, f3, 3);
    expect_load_error(w, ELM_ERR_FORMAT, "scores");

    w = gg_base("llama");
    elmi_gguf_set_arr_data(w, "tokenizer.ggml.scores", GGUF_TYPE_UINT8, u8, GG_N);
    expect_load_error(w, ELM_ERR_FORMAT, "scores");

    w = gg_base("llama");
    elmi_gguf_set_arr_data(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, i5, 5);
    expect_load_error(w, ELM_ERR_FORMAT, "token_type");

    w = gg_base("llama");
    elmi_gguf_set_arr_data(w, "tokenizer.ggml.token_type", GGUF_TYPE_FLOAT32, f7, GG_N);
    expect_load_error(w, ELM_ERR_FORMAT, "token_type");

    w = gg_base("llama");
    elmi_gguf_set_arr_data(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, bad_type, GG_N);
    expect_load_error(w, ELM_ERR_FORMAT, "type 9");

    w = gg_base("llama");
    elmi_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", GG_N);
    expect_load_error(w, ELM_ERR_FORMAT, "bos_token_id");

    w = gg_base("llama");
    elmi_gguf_set_str(w, "tokenizer.ggml.eos_token_id", "2");
    expect_load_error(w, ELM_ERR_FORMAT, "eos_token_id");

    w = gg_base("llama");
    elmi_gguf_set_u32(w, "tokenizer.ggml.add_bos_token", 1);
    expect_load_error(w, ELM_ERR_FORMAT, "add_bos_token");

    w = gg_base("llama");
    elmi_gguf_set_arr_data(w, "tokenizer.ggml.tokens", GGUF_TYPE_INT32, i5, 5);
    expect_load_error(w, ELM_ERR_FORMAT, "tokens");

    w = gg_base("llama");
    elmi_gguf_set_arr_str(w, "tokenizer.ggml.tokens", gg_tokens, 0);
    expect_load_error(w, ELM_ERR_FORMAT, "tokens");

    expect_load_error(gg_base(NULL), ELM_ERR_FORMAT, "tokenizer.ggml.model");
    expect_load_error(gg_base("bert"), ELM_ERR_UNSUPPORTED, "'bert'");
    expect_load_error(gg_base("gpt2"), ELM_ERR_FORMAT, "merges");

    w = gg_base("gpt2");
    elmi_gguf_set_arr_str(w, "tokenizer.ggml.merges", gg_tokens, 0);
    elmi_gguf_set_str(w, "tokenizer.ggml.pre", "no-such-pre");
    expect_load_error(w, ELM_ERR_UNSUPPORTED, "'no-such-pre'");
}

/* Gemma's convention: a SentencePiece vocab ("llama") without the space
 * prefix, with byte fallback, and tokenizer.ggml.pre "default" or absent. */
static const char *const gemma_tokens[] = {
    "<pad>", "<eos>", "<bos>", "<unk>", "<0xC3>", "<0xA9>", "<0x0A>", SP, "H", "i",
    "Hi", SP "Hi", "<start_of_turn>", "\n\n",
};
#define GEMMA_N 14

static elm_vocab *gemma_load(const char *pre) {
    static const float scores[GEMMA_N] = {0, 0, 0, 0, 0, 0, 0, -5, -5, -5, -1, -2, 0, 0};
    static const int32_t types[GEMMA_N] = {3, 3, 3, 2, 6, 6, 6, 1, 1, 1, 1, 1, 3, 4};
    gguf_writer *w = elmi_gguf_writer_new();
    cr_assert(w);
    elmi_gguf_set_str(w, "tokenizer.ggml.model", "llama");
    if (pre) elmi_gguf_set_str(w, "tokenizer.ggml.pre", pre);
    elmi_gguf_set_arr_str(w, "tokenizer.ggml.tokens", gemma_tokens, GEMMA_N);
    elmi_gguf_set_arr_data(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, GEMMA_N);
    elmi_gguf_set_arr_data(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, GEMMA_N);
    elmi_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 2);
    elmi_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 1);
    elmi_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", 3);
    elmi_gguf_set_u32(w, "tokenizer.ggml.padding_token_id", 0);
    elmi_gguf_set_bool(w, "tokenizer.ggml.add_space_prefix", false);
    elmi_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    elm_vocab *v;
    char err[256];
    cr_assert_eq(gg_load(w, &v, err, sizeof err), ELM_OK, "pre %s: %s", pre ? pre : "absent", err);
    return v;
}

Test(tokenizer_gguf, gemma_spm_conventions) {
    const char *const pres[] = {NULL, "default", "gemma"}; /* SPM ignores pre, as llama.cpp */
    for (int i = 0; i < 3; i++) {
        elm_vocab *v = gemma_load(pres[i]);
        cr_expect_eq(elmi_vocab_get_kind(v), VOCAB_SPM);
        cr_expect(!elmi_vocab_add_space_prefix(v));
        cr_expect(elmi_vocab_add_bos(v));
        /* No "▁" in front: "Hi" then "▁Hi". */
        EXPECT_IDS(v, "Hi Hi", 10, 11);
        /* Byte fallback: é is <0xC3><0xA9>, "\n" <0x0A>; "\n\n" is a user-defined token. */
        EXPECT_IDS(v, "H\xc3\xa9\n", 8, 4, 5, 6);
        EXPECT_IDS(v, "Hi\n\nHi", 10, 13, 10);
        EXPECT_IDS(v, " Hi", 11);
        size_t n, len;
        int32_t *ids = tokenize(v, "<start_of_turn>Hi", 17, true, true, &n);
        cr_expect(n == 3 && ids[0] == 2 && ids[1] == 12 && ids[2] == 10, "BOS, turn, Hi: %zu", n);
        free(ids);
        /* Nothing to strip when detokenizing: the text comes back as it was. */
        const int32_t hi_hi[] = {11, 10, 4, 5};
        char *text = detokenize(v, hi_hi, 4, &len);
        cr_expect_str_eq(text, " HiHi\xc3\xa9");
        free(text);
        elmi_vocab_free(v);
    }
}

Test(tokenizer_gguf, gpt2_defaults) {
    static const char *const merges[] = {"a a", "not a-merge", "<s> </s>", " "};
    gguf_writer *w = gg_base("gpt2");
    elmi_gguf_set_arr_str(w, "tokenizer.ggml.merges", merges, 4);
    elmi_gguf_set_bool(w, "tokenizer.ggml.add_space_prefix", true);
    elm_vocab *v;
    char err[256];
    cr_assert_eq(gg_load(w, &v, err, sizeof err), ELM_OK, "%s", err);
    cr_expect_str_eq(elmi_vocab_pre_name(v), "");
    cr_expect(!elmi_vocab_add_bos(v), "gpt2 adds no BOS without add_bos_token");
    cr_expect(!elmi_vocab_add_space_prefix(v), "only SentencePiece uses a space prefix");
    EXPECT_IDS(v, "a", 3);
    EXPECT_IDS(v, "b", 0); /* a byte whose character is no token gives <unk> */
    elmi_vocab_free(v);
}
