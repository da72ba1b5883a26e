/*
 * fuzz_sampler.c: libFuzzer target for the sampler (engine/sampler.c) with
 * hostile parameters (NaN, infinities, negative, huge, subnormal) on hostile
 * logits.
 * fuzz-srcs: engine/sampler.c common/alloc.c common/status.c
 * fuzz-options: -max_len=4096
 *
 * The input holds the parameters, the vocabulary size, a history of accepted
 * tokens (some out of range) and the logits; each value is either one byte
 * that picks an interesting value or, after an escape byte, raw bits. Checks:
 * - elmi_sampler_new accepts exactly the parameters sampler.h documents as valid,
 *   and leaves *out NULL when it refuses;
 * - elmi_sampler_sample returns -1 exactly when a logit is NaN or +inf or none is
 *   finite, and otherwise an id in range whose logit is finite;
 * - greedy picks the highest penalized logit (lower id on ties), computed
 *   here independently, and top-k picks one of the k best;
 * - after elmi_sampler_reset and the same history, the same draw.
 */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sampler.h"

#define CHECK(c)                                                                                  \
    do {                                                                                          \
        if (!(c)) {                                                                               \
            fprintf(stderr, "fuzz_sampler: %s:%d: check failed: %s\n", __FILE__, __LINE__, #c); \
            abort();                                                                              \
        }                                                                                         \
    } while (0)

#define MAX_VOCAB 4096
#define MAX_HIST 256

typedef struct reader {
    const uint8_t *p, *end;
} reader;

static uint8_t take_u8(reader *r) { return r->p < r->end ? *r->p++ : 0; }

static uint32_t take_raw32(reader *r) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v = v << 8 | take_u8(r);
    return v;
}

static const float SPECIAL_F[] = {
    0.0f, -0.0f, 1.0f, -1.0f, 0.5f, 2.0f, 1e-6f, 1e6f, 1e-45f /* subnormal */, 1e-38f,
    FLT_MIN, FLT_MAX, -FLT_MAX, INFINITY, -INFINITY, NAN, 0.95f, 0.05f, 40.0f, 88.7f, -88.7f,
    1e30f, -1e30f, 3.4e38f,
};
#define N_SPECIAL_F (sizeof SPECIAL_F / sizeof SPECIAL_F[0])

/* One byte: a special value, a small step value, or (255) the next 4 bytes' bits. */
static float take_float(reader *r) {
    uint8_t c = take_u8(r);
    if (c < N_SPECIAL_F) return SPECIAL_F[c];
    if (c == 255) {
        uint32_t bits = take_raw32(r);
        float f;
        memcpy(&f, &bits, sizeof f);
        return f;
    }
    return ((float)c - 128.0f) / 8.0f;
}

static const int32_t SPECIAL_I[] = {
    0, 1, -1, 2, 3, 40, 64, 255, 256, 4096, 1 << 20, INT32_MAX, INT32_MIN, INT32_MAX - 1, -40,
};
#define N_SPECIAL_I (sizeof SPECIAL_I / sizeof SPECIAL_I[0])

static int32_t take_i32(reader *r) {
    uint8_t c = take_u8(r);
    if (c < N_SPECIAL_I) return SPECIAL_I[c];
    if (c == 255) return (int32_t)take_raw32(r);
    return (int32_t)c - 128;
}

/* The complement of what sampler.h documents as invalid. */
static bool params_ok(const elm_sampler_params *p, uint32_t n_vocab) {
    return n_vocab > 0 && isfinite(p->temperature) && !isnan(p->top_p) && !isnan(p->min_p) &&
           p->repeat_penalty > 0 && isfinite(p->repeat_penalty) && p->repeat_last_n >= 0;
}

/* The penalized logits, computed here: a token among the last repeat_last_n
 * accepted in-range ids has its logit divided (> 0) or multiplied (<= 0) by
 * the penalty, once, and a finite result saturates at +-FLT_MAX. */
static void penalize(const elm_sampler_params *p, const float *logits, uint32_t n,
                     const int32_t *hist, size_t n_hist, float *out) {
    memcpy(out, logits, n * sizeof *out);
    if (p->repeat_penalty == 1.0f) return;
    static uint8_t mark[MAX_VOCAB];
    memset(mark, 0, n);
    size_t seen = 0;
    for (size_t k = n_hist; k-- > 0 && seen < (size_t)p->repeat_last_n;) {
        int32_t id = hist[k];
        if (id < 0 || (uint32_t)id >= n) continue; /* ignored by elmi_sampler_accept */
        seen++;
        mark[id] = 1;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (!mark[i]) continue;
        double r = p->repeat_penalty;
        double v = out[i] > 0 ? (double)out[i] / r : (double)out[i] * r;
        /* Rounded to float; a finite logit saturates at +-FLT_MAX. */
        float f = (float)v;
        if (isinf(f) && isfinite(out[i])) f = f > 0 ? FLT_MAX : -FLT_MAX;
        out[i] = f;
    }
}

static bool better(float a, uint32_t ia, float b, uint32_t ib) {
    return a > b || (a == b && ia < ib);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    reader r = {data, data + size};
    elm_sampler_params p = {0};
    p.temperature = take_float(&r);
    p.top_k = take_i32(&r);
    p.top_p = take_float(&r);
    p.min_p = take_float(&r);
    p.repeat_penalty = take_float(&r);
    p.repeat_last_n = take_i32(&r);
    p.seed = (uint64_t)take_raw32(&r) << 32 | take_u8(&r);
    uint32_t n_vocab = (uint32_t)take_u8(&r) << 8 | take_u8(&r);
    if (n_vocab > MAX_VOCAB) n_vocab %= MAX_VOCAB + 1;

    elm_sampler *s = (elm_sampler *)&r; /* must be overwritten */
    elm_status st = elmi_sampler_new(&p, n_vocab, &s);
    if (!params_ok(&p, n_vocab)) {
        CHECK(st == ELM_ERR_INVALID_ARG && s == NULL);
        return 0;
    }
    if (st == ELM_ERR_NO_MEMORY) {
        CHECK(s == NULL);
        return 0;
    }
    CHECK(st == ELM_OK && s != NULL);

    int32_t hist[MAX_HIST];
    size_t n_hist = take_u8(&r);
    for (size_t k = 0; k < n_hist; k++) {
        uint8_t c = take_u8(&r);
        hist[k] = c == 255 ? (int32_t)take_raw32(&r) : c < 8 ? SPECIAL_I[c] : (int32_t)c - 8;
        elmi_sampler_accept(s, hist[k]);
    }

    static float logits[MAX_VOCAB], pen[MAX_VOCAB];
    const uint8_t *start = r.p;
    for (uint32_t i = 0; i < n_vocab; i++) {
        if (r.p == r.end) r.p = start; /* repeat the bytes there are */
        logits[i] = r.p == r.end ? 0.0f : take_float(&r);
    }

    bool bad = false, any_finite = false;
    for (uint32_t i = 0; i < n_vocab; i++) {
        bad |= isnan(logits[i]) || logits[i] == INFINITY;
        any_finite |= isfinite(logits[i]);
    }
    int32_t id = elmi_sampler_sample(s, logits);
    if (bad || !any_finite) {
        CHECK(id == -1);
        elmi_sampler_free(s);
        return 0;
    }
    CHECK(id >= 0 && (uint32_t)id < n_vocab);
    CHECK(isfinite(logits[id]));

    penalize(&p, logits, n_vocab, hist, n_hist, pen);
    uint32_t ahead = 0; /* tokens ranked before the pick */
    for (uint32_t i = 0; i < n_vocab; i++) ahead += better(pen[i], i, pen[id], (uint32_t)id);
    if (p.temperature <= 0) CHECK(ahead == 0);
    if (p.top_k > 0) CHECK(ahead < (uint32_t)p.top_k);

    /* The same seed and history give the same draw. */
    elmi_sampler_reset(s);
    for (size_t k = 0; k < n_hist; k++) elmi_sampler_accept(s, hist[k]);
    CHECK(elmi_sampler_sample(s, logits) == id);
    elmi_sampler_free(s);
    return 0;
}

#ifdef FUZZ_WRITE_SEEDS
/* Built without libFuzzer by scripts/fuzz.sh: writes seeds into argv[1]:
 * the library's defaults, greedy, each filter alone, a penalty with a
 * history, over a few logit shapes. */
static int seed(const char *dir, int i, const uint8_t *b, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/seed%02d", dir, i);
    FILE *f = fopen(path, "wb");
    return f && fwrite(b, 1, n, f) == n && fclose(f) == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    /* temperature, top_k, top_p, min_p, penalty, last_n (codes of SPECIAL_F/I). */
    static const uint8_t params[][6] = {
        {136, 5, 16, 17, 2, 6},  /* 1.0, 40, 0.95, 0.05, 1, 64: the defaults */
        {0, 0, 2, 0, 2, 6},      /* greedy */
        {136, 5, 2, 0, 2, 6},    /* top-k */
        {136, 0, 16, 0, 2, 6},   /* top-p */
        {136, 0, 2, 17, 2, 6},   /* min-p */
        {0, 0, 2, 0, 5, 6},      /* greedy with a penalty of 2 */
        {144, 0, 2, 0, 4, 1},    /* temperature 2, penalty 0.5, window 1 */
    };
    static const uint8_t shapes[][9] = {
        {8, 136, 120, 144, 100, 200, 136, 14, 130},        /* 8 tokens, a tie, -inf */
        {4, 11, 12, 11, 12, 0, 0, 0, 0},                   /* FLT_MAX and -FLT_MAX */
        {5, 21, 22, 20, 19, 8, 0, 0, 0},                   /* 1e30, -1e30, +-88.7, subnormal */
    };
    int rc = 0, k = 0;
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++)
        for (size_t j = 0; j < sizeof shapes / sizeof shapes[0]; j++) {
            uint8_t b[64];
            size_t n = 0;
            memcpy(b, params[i], 6);
            n = 6;
            const uint8_t seedbytes[5] = {0, 0, 0x5e, 0xed, 7};
            memcpy(b + n, seedbytes, 5), n += 5;
            b[n++] = 0, b[n++] = shapes[j][0];         /* n_vocab */
            b[n++] = 3, b[n++] = 9, b[n++] = 9, b[n++] = 10; /* history: 1, 1, 2 */
            memcpy(b + n, shapes[j] + 1, 8), n += 8;
            rc |= seed(argv[1], k++, b, n);
        }
    return rc;
}
#endif
