/*
 * test_session.c: saved sessions, prefix reuse and confidence summaries.
 *
 * A saved state loaded into a fresh context must continue exactly as the
 * saved context does: the expected logits are those of the saved context's
 * own next decode (bit for bit, same device), for every kind of per-context
 * state: the plain KV cache (stories260K, tiny llama), the ring caches of
 * sliding-window layers (gemma3) and the convolution state (lfm2). States of
 * another model, mode or size are refused with ELM_ERR_STATE_MISMATCH, and
 * damaged ones with ELM_ERR_FORMAT, leaving the context as it was.
 * ELM_TEST_DEVICE=vulkan (test_session_vulkan) runs it all on Vulkan.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgelm.h"
#include "edgelm_tools.h"
#include "support/paths.h"

#define N_CTX 128
#define N_BATCH 8

/* Points the model params at ELM_TEST_DEVICE; skips when it names Vulkan
 * and there is none. */
static void pick_device(elm_model_params *mp) {
    const char *dev = getenv("ELM_TEST_DEVICE");
    if (dev && *dev) {
        if (!strncmp(dev, "vulkan", 6) && !test_have_vulkan_device())
            cr_skip_test("ELM_TEST_DEVICE=%s but there is no Vulkan device: skipped", dev);
        mp->device = dev;
    }
}

/* A model by name: "tiny-*" shapes are built in memory (seed 1 unless
 * `seed`), anything else is read from the shared models (NULL with a note
 * when absent). */
static elm_model *load_seeded(const char *name, uint64_t seed) {
    elm_model_params mp;
    elm_model_default_params(&mp);
    pick_device(&mp);
    elm_model *m = NULL;
    char err[512];
    if (!strncmp(name, "tiny-", 5)) {
        elm_synth_params sp = elm_synth_default_params();
        sp.shape = name;
        sp.type = "Q8_0";
        sp.seed = seed;
        cr_assert_eq(elm_synth_load(&sp, &mp, &m, err, sizeof err), ELM_OK, "%s", err);
        return m;
    }
    char path[1024], rel[256];
    snprintf(rel, sizeof rel, "models/%s.gguf", name);
    if (!test_shared_path(rel, path, sizeof path)) {
        fprintf(stderr, "test_session: %s is absent from the shared models: skipped\n", name);
        return NULL;
    }
    cr_assert_eq(elm_model_load(path, &mp, &m, err, sizeof err), ELM_OK, "%s", err);
    return m;
}

static elm_model *load(const char *name) {
    return load_seeded(name, 1);
}

static elm_context *new_ctx_with(const elm_model *m, elm_mode mode, uint32_t n_ctx) {
    elm_context_params cp;
    elm_context_default_params(&cp);
    cp.n_ctx = n_ctx;
    cp.n_batch = N_BATCH;
    cp.mode = mode;
    cp.n_threads = 2;
    elm_context *c = NULL;
    char err[512];
    cr_assert_eq(elm_context_new(m, &cp, &c, err, sizeof err), ELM_OK, "%s", err);
    return c;
}

static elm_context *new_ctx(const elm_model *m, elm_mode mode) {
    return new_ctx_with(m, mode, N_CTX);
}

static uint32_t n_vocab_of(const elm_model *m) {
    elm_model_info info = ELM_INIT(elm_model_info);
    cr_assert_eq(elm_model_get_info(m, &info), ELM_OK);
    return info.n_vocab;
}

static void make_tokens(const elm_model *m, elm_token *t, size_t n, unsigned salt) {
    uint32_t n_vocab = n_vocab_of(m);
    uint32_t span = n_vocab > 1000 ? 1000 : n_vocab - 3;
    for (size_t i = 0; i < n; i++) t[i] = (elm_token)(3 + (i * 7919u + salt * 104729u) % span);
}

static void decode(elm_context *c, const elm_token *t, size_t n) {
    cr_assert_eq(elm_decode(c, t, n), ELM_OK, "%s", elm_context_last_error(c));
}

/* A copy of the last logits (the caller frees it). */
static float *last_logits(elm_context *c, uint32_t n_vocab) {
    const float *l = elm_get_logits(c, -1);
    cr_assert_not_null(l, "no logits");
    float *copy = malloc(n_vocab * sizeof *copy);
    memcpy(copy, l, n_vocab * sizeof *copy);
    return copy;
}

/* The whole state in a malloc'd buffer, sized by a first call. */
static void *save_buffer(elm_context *c, size_t *len) {
    *len = 0;
    cr_assert_eq(elm_state_save_buffer(c, NULL, 0, len), ELM_ERR_BUFFER_TOO_SMALL);
    cr_assert_gt(*len, 0);
    void *buf = malloc(*len);
    size_t got = 0;
    cr_assert_eq(elm_state_save_buffer(c, buf, *len, &got), ELM_OK, "%s", elm_context_last_error(c));
    cr_assert_eq(got, *len);
    return buf;
}

/* Decodes `next` on both contexts and expects bit-identical logits. */
static void expect_same_next(elm_context *a, elm_context *b, const elm_token *next, size_t n,
                             uint32_t n_vocab, const char *what) {
    decode(a, next, n);
    decode(b, next, n);
    const float *la = elm_get_logits(a, -1), *lb = elm_get_logits(b, -1);
    cr_assert(la && lb);
    cr_expect_eq(memcmp(la, lb, n_vocab * sizeof *la), 0, "%s: the logits differ after the load",
                 what);
    cr_expect_eq(elm_context_n_past(a), elm_context_n_past(b), "%s: n_past", what);
}

/* Decodes `seen` tokens (rolled back to `keep` when keep < seen) into a
 * context, saves it (buffer and file), loads each into a fresh context and
 * checks the continuation. */
static void round_trip(const char *name, elm_mode mode, size_t seen, size_t keep) {
    elm_model *m = load(name);
    if (!m) return;
    const uint32_t n_vocab = n_vocab_of(m);
    elm_token tok[64], next[6];
    make_tokens(m, tok, seen, 1);
    make_tokens(m, next, 6, 2);
    elm_context *a = new_ctx(m, mode);
    if (seen) {
        decode(a, tok, seen / 2);
        decode(a, tok + seen / 2, seen - seen / 2);
    }
    if (keep < seen)
        cr_assert_eq(elm_context_truncate(a, (uint32_t)keep), ELM_OK, "%s", elm_context_last_error(a));
    float *before = seen && keep == seen ? last_logits(a, n_vocab) : NULL;
    size_t len = 0;
    void *buf = save_buffer(a, &len);
    char path[1024];
    snprintf(path, sizeof path, "%s/%s-%d-%zu.state", test_tmp_dir(), name, (int)mode, keep);
    cr_assert_eq(elm_state_save(a, path), ELM_OK, "%s", elm_context_last_error(a));
    size_t flen = 0;
    char *file = test_read_file(path, &flen);
    cr_assert_not_null(file);
    cr_expect(flen == len && !memcmp(file, buf, len), "%s: the file and buffer forms differ", name);
    free(file);

    elm_context *b = new_ctx(m, mode), *c = new_ctx(m, mode);
    cr_assert_eq(elm_state_load_buffer(b, buf, len), ELM_OK, "%s", elm_context_last_error(b));
    cr_assert_eq(elm_state_load(c, path), ELM_OK, "%s", elm_context_last_error(c));
    for (elm_context *x = b; x; x = x == b ? c : NULL) {
        cr_assert_eq(elm_context_n_past(x), keep);
        if (keep)
            cr_expect_eq(memcmp(elm_context_tokens(x), tok, keep * sizeof *tok), 0, "%s: tokens",
                         name);
        if (before) {
            const float *l = elm_get_logits(x, -1);
            cr_assert_not_null(l, "%s: the saved logits are not restored", name);
            cr_expect_eq(memcmp(l, before, n_vocab * sizeof *l), 0, "%s: restored logits", name);
        }
    }
    char what[160];
    snprintf(what, sizeof what, "%s mode %d, %zu seen, %zu kept (buffer)", name, (int)mode, seen, keep);
    elm_context *a2 = new_ctx(m, mode);
    cr_assert_eq(elm_state_load_buffer(a2, buf, len), ELM_OK); /* a twin for c */
    expect_same_next(a, b, next, 1, n_vocab, what);
    expect_same_next(a, b, next + 1, 5, n_vocab, what);
    snprintf(what, sizeof what, "%s mode %d, %zu seen, %zu kept (file)", name, (int)mode, seen, keep);
    expect_same_next(a2, c, next, 6, n_vocab, what);
    free(before);
    free(buf);
    elm_context_free(a);
    elm_context_free(a2);
    elm_context_free(b);
    elm_context_free(c);
    elm_model_free(m);
}

static void round_trips(const char *name) {
    round_trip(name, ELM_MODE_EXACT, 40, 40);
    round_trip(name, ELM_MODE_FAST, 40, 40);
    round_trip(name, ELM_MODE_EXACT, 40, 37); /* the rings still hold what is needed */
    round_trip(name, ELM_MODE_EXACT, 60, 12); /* a deep rollback: the next decode replays */
    round_trip(name, ELM_MODE_EXACT, 0, 0);   /* an empty context */
}

Test(session, round_trip_stories260K) { round_trips("stories260K"); }
Test(session, round_trip_gemma3_rings) { round_trips("synth-gemma3-Q8_0"); }
Test(session, round_trip_lfm2_conv_state) { round_trips("synth-lfm2-Q8_0"); }
Test(session, round_trip_tiny_gemma3) { round_trips("tiny-gemma3"); }
Test(session, round_trip_tiny_lfm2) { round_trips("tiny-lfm2"); }
Test(session, round_trip_tiny_qwen3) { round_trips("tiny-qwen3"); }

/* ------------------------------------------------------------ refusals */

/* A context holding 20 tokens, and a twin that stays untouched: after a
 * refused load, both must continue identically. */
typedef struct victim {
    elm_model *m;
    elm_context *c, *twin;
    elm_token tok[20];
    uint32_t n_vocab;
} victim;

static void victim_open(victim *v, const char *name) {
    v->m = load(name);
    cr_assert_not_null(v->m);
    v->n_vocab = n_vocab_of(v->m);
    make_tokens(v->m, v->tok, 20, 3);
    v->c = new_ctx(v->m, ELM_MODE_EXACT);
    v->twin = new_ctx(v->m, ELM_MODE_EXACT);
    decode(v->c, v->tok, 20);
    decode(v->twin, v->tok, 20);
}

static void expect_refused(victim *v, const void *buf, size_t len, elm_status want, const char *what) {
    elm_status st = elm_state_load_buffer(v->c, buf, len);
    cr_expect_eq(st, want, "%s: status %d (%s), expected %d", what, st, elm_context_last_error(v->c),
                 want);
    cr_expect_neq(elm_context_last_error(v->c)[0], 0, "%s: no message", what);
    cr_expect_eq(elm_context_n_past(v->c), 20, "%s: the context changed", what);
    cr_expect_eq(memcmp(elm_context_tokens(v->c), v->tok, sizeof v->tok), 0, "%s: tokens", what);
}

static void victim_close(victim *v) {
    elm_token next[3];
    make_tokens(v->m, next, 3, 4);
    expect_same_next(v->twin, v->c, next, 3, v->n_vocab, "after refused loads");
    elm_context_free(v->c);
    elm_context_free(v->twin);
    elm_model_free(v->m);
}

/* A state of `m` after 10 tokens, in a given mode and size. */
static void *state_of(elm_model *m, elm_mode mode, uint32_t n_ctx, size_t *len) {
    elm_context *c = new_ctx_with(m, mode, n_ctx);
    elm_token t[10];
    make_tokens(m, t, 10, 5);
    decode(c, t, 10);
    void *buf = save_buffer(c, len);
    elm_context_free(c);
    return buf;
}

Test(session, other_model_mode_or_size_is_a_mismatch) {
    victim v;
    victim_open(&v, "tiny-lfm2");
    size_t len;
    void *buf = state_of(v.m, ELM_MODE_FAST, N_CTX, &len);
    expect_refused(&v, buf, len, ELM_ERR_STATE_MISMATCH, "another mode");
    cr_expect(strstr(elm_context_last_error(v.c), "mode"), "%s", elm_context_last_error(v.c));
    free(buf);
    buf = state_of(v.m, ELM_MODE_EXACT, 2 * N_CTX, &len);
    expect_refused(&v, buf, len, ELM_ERR_STATE_MISMATCH, "another n_ctx");
    cr_expect(strstr(elm_context_last_error(v.c), "n_ctx"), "%s", elm_context_last_error(v.c));
    free(buf);
    const char *others[] = {"tiny-gemma3", "tiny-qwen3"};
    for (int i = 0; i < 2; i++) {
        elm_model *o = load(others[i]);
        buf = state_of(o, ELM_MODE_EXACT, N_CTX, &len);
        expect_refused(&v, buf, len, ELM_ERR_STATE_MISMATCH, others[i]);
        free(buf);
        elm_model_free(o);
    }
    /* Same shapes, other weights (another fine-tune): still another model. */
    elm_model *o = load_seeded("tiny-lfm2", 2);
    buf = state_of(o, ELM_MODE_EXACT, N_CTX, &len);
    expect_refused(&v, buf, len, ELM_ERR_STATE_MISMATCH, "tiny-lfm2 with other weights");
    cr_expect(strstr(elm_context_last_error(v.c), "model"), "%s", elm_context_last_error(v.c));
    free(buf);
    elm_model_free(o);
    /* The file form says the same. */
    char path[1024];
    snprintf(path, sizeof path, "%s/mismatch.state", test_tmp_dir());
    elm_context *c = new_ctx_with(v.m, ELM_MODE_FAST, N_CTX);
    cr_assert_eq(elm_state_save(c, path), ELM_OK);
    elm_context_free(c);
    cr_expect_eq(elm_state_load(v.c, path), ELM_ERR_STATE_MISMATCH);
    cr_expect(strstr(elm_context_last_error(v.c), path), "%s", elm_context_last_error(v.c));
    victim_close(&v);
}

Test(session, damaged_states_are_refused) {
    victim v;
    victim_open(&v, "tiny-gemma3");
    size_t len;
    uint8_t *good = state_of(v.m, ELM_MODE_EXACT, N_CTX, &len);
    uint8_t *bad = malloc(len);
    const size_t cuts[] = {0, 1, 8, 95, 96, 104, len / 2, len - 9, len - 8, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        char what[64];
        snprintf(what, sizeof what, "truncated to %zu of %zu bytes", cuts[i], len);
        memcpy(bad, good, cuts[i]);
        expect_refused(&v, bad, cuts[i], ELM_ERR_FORMAT, what);
    }
    /* One flipped bit anywhere: header, tokens, table, tensor data, trailer. */
    const size_t flips[] = {0, 9, 13, 17, 30, 58, 65, 69, 73, 77, 81, 85, 100, 96 + 40 + 5,
                            len / 3, len / 2, len - 20, len - 9, len - 8, len - 1};
    for (size_t i = 0; i < sizeof flips / sizeof *flips; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            char what[64];
            snprintf(what, sizeof what, "bit %d of byte %zu flipped", bit, flips[i]);
            memcpy(bad, good, len);
            bad[flips[i]] ^= (uint8_t)(1u << bit);
            expect_refused(&v, bad, len, ELM_ERR_FORMAT, what);
        }
    }
    /* Garbage: random bytes, then random bytes behind a valid magic. */
    uint32_t x = 12345;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        bad[i] = (uint8_t)(x >> 16);
    }
    expect_refused(&v, bad, len, ELM_ERR_FORMAT, "garbage");
    memcpy(bad, "ELMSTATE\1\0\0\0", 12);
    expect_refused(&v, bad, len, ELM_ERR_FORMAT, "garbage behind the magic");
    /* A longer buffer: the state plus a byte. */
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, good, len);
    longer[len] = 0;
    expect_refused(&v, longer, len + 1, ELM_ERR_FORMAT, "a byte appended");
    free(longer);
    /* The file form: a damaged file, a missing one. */
    char path[1024];
    snprintf(path, sizeof path, "%s/damaged.state", test_tmp_dir());
    memcpy(bad, good, len);
    bad[len / 2] ^= 1;
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fwrite(bad, 1, len, f);
    fclose(f);
    cr_expect_eq(elm_state_load(v.c, path), ELM_ERR_FORMAT);
    /* A file far larger than any state of this context is refused unread. */
    snprintf(path, sizeof path, "%s/huge.state", test_tmp_dir());
    f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fseek(f, 64l << 20, SEEK_SET), 0);
    fputc(0, f);
    fclose(f);
    cr_expect_eq(elm_state_load(v.c, path), ELM_ERR_FORMAT);
    cr_expect(strstr(elm_context_last_error(v.c), "at most"), "%s", elm_context_last_error(v.c));
    remove(path);
    snprintf(path, sizeof path, "%s/no-such.state", test_tmp_dir());
    cr_expect_eq(elm_state_load(v.c, path), ELM_ERR_IO);
    cr_expect_eq(elm_context_n_past(v.c), 20);
    /* The intact state still loads after all that. */
    cr_expect_eq(elm_state_load_buffer(v.c, good, len), ELM_OK, "%s", elm_context_last_error(v.c));
    cr_expect_eq(elm_context_n_past(v.c), 10);
    cr_expect_eq(elm_state_load_buffer(v.twin, good, len), ELM_OK);
    free(good);
    free(bad);
    victim_close(&v);
}

/* The library's checksum of a state (engine/state.c), to craft states that
 * pass it and reach the checks behind it. */
uint64_t elmi_state_checksum(const void *data, size_t n);

static uint32_t get32(const uint8_t *b, size_t off) {
    return (uint32_t)b[off] | (uint32_t)b[off + 1] << 8 | (uint32_t)b[off + 2] << 16 |
           (uint32_t)b[off + 3] << 24;
}

static void put32(uint8_t *b, size_t off, uint32_t v) {
    for (int i = 0; i < 4; i++) b[off + i] = (uint8_t)(v >> (8 * i));
}

static void reseal(uint8_t *b, size_t len) {
    uint64_t h = elmi_state_checksum(b, len - 8);
    for (int i = 0; i < 8; i++) b[len - 8 + i] = (uint8_t)(h >> (8 * i));
}

/* Fields changed with the checksum recomputed, as a hostile writer would:
 * offsets from the format in engine/state.c (header of 96 bytes, then 10
 * tokens, then 64-byte table entries). */
Test(session, crafted_states_are_refused) {
    victim v;
    victim_open(&v, "tiny-gemma3");
    size_t len;
    uint8_t *good = state_of(v.m, ELM_MODE_EXACT, N_CTX, &len);
    uint8_t *bad = malloc(len);
    const size_t tab = 96 + 10 * 4;
    const uint32_t n_tensors = get32(good, 72);
    struct {
        size_t off;
        uint32_t value;
        elm_status want;
        const char *what;
    } cases[] = {
        {8, 2, ELM_ERR_FORMAT, "version 2"},
        {64, N_CTX + 1, ELM_ERR_FORMAT, "n_past beyond n_ctx"},
        {64, 11, ELM_ERR_FORMAT, "n_past larger than the data"},
        {64, 9, ELM_ERR_FORMAT, "n_past smaller than the data"},
        {64, 0xFFFFFFFFu, ELM_ERR_FORMAT, "n_past 2^32 - 1"},
        {68, 100000, ELM_ERR_FORMAT, "ring_lo beyond n_ctx"},
        {72, n_tensors + 1, ELM_ERR_FORMAT, "one tensor more"},
        {72, 0, ELM_ERR_FORMAT, "no tensors"},
        {76, 4, ELM_ERR_FORMAT, "an unknown flag"},
        {76, 0, ELM_ERR_FORMAT, "the logits flag cleared"},
        {80, v.n_vocab + 1, ELM_ERR_FORMAT, "another n_vocab"},
        {84, 1, ELM_ERR_FORMAT, "a reserved field set"},
        {96, v.n_vocab, ELM_ERR_FORMAT, "a token id of n_vocab"},
        {96 + 9 * 4, 0xFFFFFFFFu, ELM_ERR_FORMAT, "a negative token id"},
        {tab, 0x41414141u, ELM_ERR_FORMAT, "another tensor name"},
        {tab + 32, 1, ELM_ERR_FORMAT, "another tensor type"},
        {tab + 40, 3, ELM_ERR_FORMAT, "another row size"},
        {tab + 64 + 48, 1000, ELM_ERR_STATE_MISMATCH, "another ring size (n_batch)"},
        {tab + 56, 0xFFFFFFFFu, ELM_ERR_FORMAT, "rows saved beyond the tensor"},
        {12, ELM_MODE_FAST, ELM_ERR_STATE_MISMATCH, "fast mode"},
        {12, 77, ELM_ERR_STATE_MISMATCH, "an unknown mode"},
        {56, 0, ELM_ERR_STATE_MISMATCH, "n_ctx 0"},
        {60, 999, ELM_ERR_STATE_MISMATCH, "an unknown KV type"},
        {16, get32(good, 16) ^ 1u, ELM_ERR_STATE_MISMATCH, "another fingerprint"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        memcpy(bad, good, len);
        put32(bad, cases[i].off, cases[i].value);
        reseal(bad, len);
        expect_refused(&v, bad, len, cases[i].want, cases[i].what);
    }
    /* A ring model's context with another n_batch has other ring sizes. */
    elm_context_params cp;
    elm_context_default_params(&cp);
    cp.n_ctx = N_CTX;
    cp.n_batch = 4;
    cp.mode = ELM_MODE_EXACT;
    cp.n_threads = 2;
    elm_context *c = NULL;
    cr_assert_eq(elm_context_new(v.m, &cp, &c, NULL, 0), ELM_OK);
    cr_expect_eq(elm_state_load_buffer(c, good, len), ELM_ERR_STATE_MISMATCH);
    cr_expect(strstr(elm_context_last_error(c), "n_batch"), "%s", elm_context_last_error(c));
    elm_context_free(c);
    free(good);
    free(bad);
    victim_close(&v);
}

/* Random changes to the header, tokens and table, resealed: whatever the
 * load answers, it must not crash, and a refusal leaves the context as it
 * was (an accepted state, with its data bytes changed, is legitimate). */
Test(session, random_resealed_mutations) {
    victim v;
    victim_open(&v, "tiny-lfm2");
    size_t len;
    uint8_t *good = state_of(v.m, ELM_MODE_EXACT, N_CTX, &len);
    uint8_t *bad = malloc(len);
    const size_t meta = 96 + 10 * 4 + (size_t)get32(good, 72) * 64;
    uint32_t x = 777;
    int refused = 0;
    for (int it = 0; it < 400; it++) {
        memcpy(bad, good, len);
        int n_changes = 1 + it % 4;
        for (int k = 0; k < n_changes; k++) {
            x = x * 1103515245u + 12345u;
            size_t at = (x >> 8) % meta;
            x = x * 1103515245u + 12345u;
            bad[at] = (uint8_t)(it % 3 == 0 ? bad[at] ^ (1u << (x >> 29)) : x >> 16);
        }
        x = x * 1103515245u + 12345u;
        size_t cut = it % 5 == 4 ? 8 + (x >> 8) % (len - 8) : len;
        reseal(bad, cut);
        elm_status st = elm_state_load_buffer(v.c, bad, cut);
        if (st == ELM_OK) {
            cr_assert_eq(elm_state_load_buffer(v.c, good, len), ELM_OK);
            cr_assert_eq(elm_state_load_buffer(v.twin, good, len), ELM_OK);
            continue;
        }
        refused++;
        cr_expect(st == ELM_ERR_FORMAT || st == ELM_ERR_STATE_MISMATCH, "iteration %d: status %d",
                  it, st);
        cr_expect_eq(elm_context_n_past(v.c), elm_context_n_past(v.twin), "iteration %d", it);
    }
    cr_expect_gt(refused, 300, "only %d of 400 damaged states refused", refused);
    free(good);
    free(bad);
    /* victim_close expects the 20 tokens of victim_open or those of `good`:
     * both contexts hold the same either way. */
    elm_token next[3];
    make_tokens(v.m, next, 3, 4);
    expect_same_next(v.twin, v.c, next, 3, v.n_vocab, "after random loads");
    elm_context_free(v.c);
    elm_context_free(v.twin);
    elm_model_free(v.m);
}

/* Without rings the cache rows are positions: n_batch does not matter. */
Test(session, plain_cache_ignores_n_batch) {
    elm_model *m = load("tiny-qwen3");
    size_t len;
    void *buf = state_of(m, ELM_MODE_EXACT, N_CTX, &len);
    elm_context_params cp;
    elm_context_default_params(&cp);
    cp.n_ctx = N_CTX;
    cp.n_batch = 4;
    cp.mode = ELM_MODE_EXACT;
    cp.n_threads = 2;
    elm_context *c = NULL;
    cr_assert_eq(elm_context_new(m, &cp, &c, NULL, 0), ELM_OK);
    cr_expect_eq(elm_state_load_buffer(c, buf, len), ELM_OK, "%s", elm_context_last_error(c));
    cr_expect_eq(elm_context_n_past(c), 10);
    free(buf);
    elm_context_free(c);
    elm_model_free(m);
}

Test(session, arguments) {
    elm_model *m = load("tiny-qwen3");
    elm_context *c = new_ctx(m, ELM_MODE_EXACT);
    size_t len = 0;
    char small[16];
    cr_expect_eq(elm_state_save_buffer(NULL, NULL, 0, &len), ELM_ERR_INVALID_ARG);
    cr_expect_eq(elm_state_save_buffer(c, NULL, 0, NULL), ELM_ERR_INVALID_ARG);
    cr_expect_eq(elm_state_save_buffer(c, NULL, 8, &len), ELM_ERR_INVALID_ARG);
    cr_expect_eq(elm_state_load_buffer(c, NULL, 8), ELM_ERR_INVALID_ARG);
    cr_expect_eq(elm_state_load_buffer(c, NULL, 0), ELM_ERR_FORMAT);
    cr_expect_eq(elm_state_save(c, NULL), ELM_ERR_INVALID_ARG);
    cr_expect_eq(elm_state_load(c, NULL), ELM_ERR_INVALID_ARG);
    cr_expect_eq(elm_state_load(NULL, "x"), ELM_ERR_INVALID_ARG);
    cr_expect_eq(elm_state_save(c, "/nonexistent-dir/x.state"), ELM_ERR_IO);
    /* BUFFER_TOO_SMALL reports the size, which is exactly what a save writes. */
    cr_expect_eq(elm_state_save_buffer(c, small, sizeof small, &len), ELM_ERR_BUFFER_TOO_SMALL);
    size_t need = len;
    cr_expect_gt(need, sizeof small);
    char *buf = malloc(need);
    cr_expect_eq(elm_state_save_buffer(c, buf, need - 1, &len), ELM_ERR_BUFFER_TOO_SMALL);
    cr_expect_eq(len, need);
    cr_expect_eq(elm_state_save_buffer(c, buf, need, &len), ELM_OK);
    cr_expect_eq(len, need);
    free(buf);
    elm_context_free(c);
    elm_model_free(m);
}

/* The size a state of a plain llama context must have, from the format's
 * definition (engine/state.c): header, tokens, table, the K and V rows
 * [0, n_past) of each layer, the last logits row, the checksum. */
Test(session, size_follows_the_format) {
    elm_model *m = load("stories260K");
    if (!m) return;
    elm_model_info info = ELM_INIT(elm_model_info);
    cr_assert_eq(elm_model_get_info(m, &info), ELM_OK);
    elm_context *c = new_ctx(m, ELM_MODE_FAST);
    elm_token t[13];
    make_tokens(m, t, 13, 6);
    decode(c, t, 13);
    size_t len = 0;
    cr_assert_eq(elm_state_save_buffer(c, NULL, 0, &len), ELM_ERR_BUFFER_TOO_SMALL);
    size_t row = (size_t)info.head_dim * info.n_head_kv * 2; /* F16 */
    size_t want = 96 + 13 * 4 + 2 * info.n_layer * (64 + 13 * row) + info.n_vocab * 4 + 8;
    cr_expect_eq(len, want, "state of %zu bytes, expected %zu", len, want);
    elm_context_free(c);
    elm_model_free(m);
}

/* -------------------------------------------------------- prefix reuse */

/* `replays`: the rollback to 21 of 30 tokens reaches below what the rings
 * of a sliding-window model hold, so the 21 kept tokens are recomputed. */
static void reuse_prefix_case(const char *name, bool replays) {
    elm_model *m = load(name);
    const uint32_t n_vocab = n_vocab_of(m);
    elm_token held[30], q[36];
    make_tokens(m, held, 30, 7);
    memcpy(q, held, 21 * sizeof *q);
    make_tokens(m, q + 21, 15, 8);
    elm_context *c = new_ctx(m, ELM_MODE_EXACT);
    decode(c, held, 30);
    uint64_t evaluated = elm_context_n_evaluated(c);
    uint32_t kept = 99;
    cr_assert_eq(elm_context_reuse_prefix(c, q, 36, &kept), ELM_OK, "%s", elm_context_last_error(c));
    cr_expect_eq(kept, 21);
    cr_expect_eq(elm_context_n_past(c), 21);
    decode(c, q + kept, 36 - kept);
    uint64_t want = 15 + (replays ? 21 : 0);
    cr_expect_eq(elm_context_n_evaluated(c) - evaluated, want, "%s: %llu evaluated, expected %llu",
                 name, (unsigned long long)(elm_context_n_evaluated(c) - evaluated),
                 (unsigned long long)want);
    /* The logits are those of a context that saw only q (another split of
     * the passes, so up to F32 rounding). */
    elm_context *fresh = new_ctx(m, ELM_MODE_EXACT);
    decode(fresh, q, 36);
    const float *a = elm_get_logits(c, -1), *b = elm_get_logits(fresh, -1);
    double d = 0;
    for (uint32_t i = 0; i < n_vocab; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    cr_expect_leq(d, 1e-3, "max |dlogit| %g against a fresh context", d);
    /* The same sequence again: all but the last token is kept. */
    cr_assert_eq(elm_context_reuse_prefix(c, q, 36, &kept), ELM_OK);
    cr_expect_eq(kept, 35);
    cr_expect_eq(elm_context_n_past(c), 35);
    /* A longer one that starts with all the context holds keeps it all. */
    decode(c, q + 35, 1);
    elm_token longer[40];
    memcpy(longer, q, sizeof q);
    make_tokens(m, longer + 36, 4, 9);
    cr_assert_eq(elm_context_reuse_prefix(c, longer, 40, &kept), ELM_OK);
    cr_expect_eq(kept, 36);
    evaluated = elm_context_n_evaluated(c);
    decode(c, longer + 36, 4);
    cr_expect_eq(elm_context_n_evaluated(c) - evaluated, 4, "%s: a longer sequence", name);
    /* Nothing in common, or nothing given: nothing kept. */
    elm_token other[5];
    make_tokens(m, other, 5, 10);
    other[0] = q[0] + 1;
    cr_assert_eq(elm_context_reuse_prefix(c, other, 5, &kept), ELM_OK);
    cr_expect_eq(kept, 0);
    cr_expect_eq(elm_context_n_past(c), 0);
    decode(c, q, 10);
    cr_assert_eq(elm_context_reuse_prefix(c, q, 0, NULL), ELM_OK);
    cr_expect_eq(elm_context_n_past(c), 0);
    cr_expect_eq(elm_context_reuse_prefix(c, NULL, 3, &kept), ELM_ERR_INVALID_ARG);
    cr_expect_eq(elm_context_reuse_prefix(NULL, q, 3, &kept), ELM_ERR_INVALID_ARG);
    elm_context_free(fresh);
    elm_context_free(c);
    elm_model_free(m);
}

Test(session, reuse_prefix_plain_cache) { reuse_prefix_case("tiny-qwen3", false); }
Test(session, reuse_prefix_rings) { reuse_prefix_case("tiny-gemma3", true); }
Test(session, reuse_prefix_conv_state) { reuse_prefix_case("tiny-lfm2", true); }

/* ---------------------------------------------------------- confidence */

static elm_token_info info_of(float logprob, float margin) {
    elm_token_info i = {.struct_size = sizeof i, .logprob = logprob, .margin = margin};
    return i;
}

Test(session, confidence_summary) {
    const float lp[] = {-0.125f, -2.0f, -0.5f, -1.375f};
    const float mg[] = {3.0f, 0.5f, 1.0f, 0.25f};
    elm_confidence c = ELM_INIT(elm_confidence);
    for (int i = 0; i < 4; i++) {
        elm_token_info in = info_of(lp[i], mg[i]);
        cr_assert_eq(elm_confidence_add(&c, &in), ELM_OK);
        if (i == 0) cr_expect_eq(c.min_margin, 3.0f, "the first margin is the minimum");
    }
    cr_expect_eq(c.n_tokens, 4);
    cr_expect_eq(c.mean_logprob, -1.0); /* (-0.125 - 2 - 0.5 - 1.375) / 4, exact in binary */
    cr_expect_eq(c.min_margin, 0.25f);
    cr_expect_eq(c.n_below, 2); /* default threshold 1.0: 0.5 and 0.25 (1.0 is not below) */
    cr_expect_eq(c.frac_below, 0.5f);

    elm_confidence t = ELM_INIT(elm_confidence);
    t.margin_threshold = 0.3f;
    for (int i = 0; i < 4; i++) {
        elm_token_info in = info_of(lp[i], mg[i]);
        cr_assert_eq(elm_confidence_add(&t, &in), ELM_OK);
    }
    cr_expect_eq(t.n_below, 1);
    cr_expect_eq(t.frac_below, 0.25f);
    cr_expect_eq(t.margin_threshold, 0.3f, "the caller's threshold is kept");

    elm_confidence bad = ELM_INIT(elm_confidence);
    elm_token_info in = info_of(-1.0f, 1.0f);
    cr_expect_eq(elm_confidence_add(NULL, &in), ELM_ERR_INVALID_ARG);
    cr_expect_eq(elm_confidence_add(&bad, NULL), ELM_ERR_INVALID_ARG);
    bad.struct_size = sizeof(size_t);
    cr_expect_eq(elm_confidence_add(&bad, &in), ELM_ERR_INVALID_ARG);
    bad.struct_size = sizeof bad;
    in.logprob = NAN;
    cr_expect_eq(elm_confidence_add(&bad, &in), ELM_ERR_INVALID_ARG);
    cr_expect_eq(bad.n_tokens, 0);
}

/* Over a real generation: the summary of the callback's infos matches one
 * computed here from the same infos. */
typedef struct collected {
    elm_confidence c;
    double sum;
    float min;
    uint32_t n, below;
} collected;

static bool collect(const elm_token_info *info, void *user) {
    collected *k = user;
    cr_assert_eq(elm_confidence_add(&k->c, info), ELM_OK);
    k->sum += info->logprob;
    k->min = k->n == 0 || info->margin < k->min ? info->margin : k->min;
    k->below += info->margin < 1.0f;
    k->n++;
    return true;
}

Test(session, confidence_over_generation) {
    elm_model *m = load("tiny-qwen3");
    elm_context *c = new_ctx(m, ELM_MODE_EXACT);
    collected k = {.c = ELM_INIT(elm_confidence)};
    elm_generate_params gp;
    elm_generate_default_params(&gp);
    elm_sampler_params sp;
    elm_sampler_default_params(&sp);
    sp.temperature = 0;
    gp.sampler = &sp;
    gp.n_predict = 12;
    gp.ignore_eos = true;
    gp.callback = collect;
    gp.user_data = &k;
    cr_assert_eq(elm_generate(c, "hello", 5, &gp, NULL), ELM_OK, "%s", elm_context_last_error(c));
    cr_expect_eq(k.c.n_tokens, 12);
    cr_expect_eq(k.c.n_tokens, k.n);
    cr_expect_leq(fabs(k.c.mean_logprob - k.sum / k.n), 1e-12);
    cr_expect_eq(k.c.min_margin, k.min);
    cr_expect_eq(k.c.n_below, k.below);
    cr_expect_leq(k.c.mean_logprob, 0.0);
    elm_context_free(c);
    elm_model_free(m);
}

/* A chat-like continuation: generate, save, and continue with another turn
 * in both the saved context and a loaded one; the generated ids must agree. */
typedef struct ids {
    elm_token t[16];
    uint32_t n;
} ids;

static bool record(const elm_token_info *info, void *user) {
    ids *r = user;
    if (r->n < 16) r->t[r->n++] = info->token;
    return true;
}

static void generate_greedy(elm_context *c, const char *prompt, ids *out) {
    elm_generate_params gp;
    elm_generate_default_params(&gp);
    elm_sampler_params sp;
    elm_sampler_default_params(&sp);
    sp.temperature = 0;
    gp.sampler = &sp;
    gp.n_predict = 8;
    gp.ignore_eos = true;
    gp.callback = record;
    gp.user_data = out;
    cr_assert_eq(elm_generate(c, prompt, strlen(prompt), &gp, NULL), ELM_OK, "%s",
                 elm_context_last_error(c));
}

Test(session, generation_continues_after_a_load) {
    elm_model *m = load("tiny-gemma3");
    elm_context *a = new_ctx(m, ELM_MODE_FAST), *b = new_ctx(m, ELM_MODE_FAST);
    ids first = {0}, from_a = {0}, from_b = {0};
    generate_greedy(a, "once upon a time", &first);
    size_t len;
    void *buf = save_buffer(a, &len);
    cr_assert_eq(elm_state_load_buffer(b, buf, len), ELM_OK, "%s", elm_context_last_error(b));
    generate_greedy(a, " and then", &from_a);
    generate_greedy(b, " and then", &from_b);
    cr_expect_eq(from_a.n, 8);
    cr_expect_eq(from_b.n, 8);
    cr_expect_eq(memcmp(from_a.t, from_b.t, sizeof from_a.t), 0, "the continuations differ");
    cr_expect_eq(elm_context_n_past(a), elm_context_n_past(b));
    free(buf);
    elm_context_free(a);
    elm_context_free(b);
    elm_model_free(m);
}
