/*
 * test_quant_files.c: block layouts checked against GGUF files written by
 * other tools (../shared/models). The same weights stored as F32 / F16, or
 * as Q8_0 / Q4_0 / Q6_K, must dequantize to nearly the same numbers; a wrong
 * nibble or bit order would make them uncorrelated. A minimal GGUF walker
 * lives here so that this test depends on nothing but the quant module.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"
#include "support/paths.h"

typedef struct {
    char name[96];
    int type;
    int64_t ne[4];
    uint64_t offset;
} tinfo;

typedef struct {
    char *buf;
    size_t len, pos;
    bool bad;
    uint64_t n_tensors;
    tinfo *t;
    const uint8_t *data;
} gguf_file;

static uint64_t rd(gguf_file *f, size_t n) {
    uint64_t v = 0;
    if (f->pos + n > f->len) {
        f->bad = true;
        return 0;
    }
    for (size_t i = 0; i < n; i++) v |= (uint64_t)(uint8_t)f->buf[f->pos + i] << (8 * i);
    f->pos += n;
    return v;
}

static void skip_string(gguf_file *f, char *out, size_t cap) {
    uint64_t n = rd(f, 8);
    if (f->bad || n > f->len - f->pos) {
        f->bad = true;
        return;
    }
    if (out) snprintf(out, cap, "%.*s", (int)n, f->buf + f->pos);
    f->pos += n;
}

static size_t scalar_size(uint32_t vt) {
    static const size_t sz[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return vt < 13 ? sz[vt] : 0;
}

/* Skips one value; returns it when it is an integer (for general.alignment). */
static uint64_t skip_value(gguf_file *f, uint32_t vt) {
    if (vt == 8) {
        skip_string(f, NULL, 0);
        return 0;
    }
    if (vt == 9) {
        uint32_t et = (uint32_t)rd(f, 4);
        uint64_t n = rd(f, 8);
        for (uint64_t i = 0; i < n && !f->bad; i++) skip_value(f, et);
        return 0;
    }
    size_t s = scalar_size(vt);
    if (!s) f->bad = true;
    return rd(f, s);
}

static bool elmi_gguf_open(const char *rel, gguf_file *f) {
    char path[4096];
    memset(f, 0, sizeof *f);
    if (!test_shared_path(rel, path, sizeof path)) return false;
    f->buf = test_read_file(path, &f->len);
    cr_assert_not_null(f->buf, "%s", path);
    cr_assert_eq(rd(f, 4), 0x46554747u, "magic");
    cr_assert_eq(rd(f, 4), 3u, "version");
    f->n_tensors = rd(f, 8);
    uint64_t n_kv = rd(f, 8), align = 32;
    cr_assert(f->n_tensors < 100000 && n_kv < 100000);
    for (uint64_t i = 0; i < n_kv && !f->bad; i++) {
        char key[128];
        skip_string(f, key, sizeof key);
        uint32_t vt = (uint32_t)rd(f, 4);
        uint64_t v = skip_value(f, vt);
        if (!strcmp(key, "general.alignment")) align = v;
    }
    f->t = calloc(f->n_tensors, sizeof *f->t);
    for (uint64_t i = 0; i < f->n_tensors && !f->bad; i++) {
        tinfo *t = &f->t[i];
        skip_string(f, t->name, sizeof t->name);
        uint32_t nd = (uint32_t)rd(f, 4);
        cr_assert(nd <= 4);
        for (int d = 0; d < 4; d++) t->ne[d] = d < (int)nd ? (int64_t)rd(f, 8) : 1;
        t->type = (int)rd(f, 4);
        t->offset = rd(f, 8);
    }
    cr_assert(!f->bad, "%s: truncated header", rel);
    f->data = (const uint8_t *)f->buf + (f->pos + align - 1) / align * align;
    return true;
}

static void elmi_gguf_close(gguf_file *f) {
    free(f->buf);
    free(f->t);
}

static const tinfo *find_tensor(const gguf_file *f, const char *name) {
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}

/* Dequantizes a whole tensor (checking that it lies inside the file). */
static float *tensor_f32(const gguf_file *f, const tinfo *t, int64_t *n) {
    const qtype_traits *tr = elmi_qtype_get(t->type);
    cr_assert(tr && tr->to_float, "%s: type %d", t->name, t->type);
    size_t row;
    cr_assert(elmi_qtype_row_bytes(t->type, t->ne[0], &row));
    int64_t rows = t->ne[1] * t->ne[2] * t->ne[3];
    cr_assert(t->offset + row * (uint64_t)rows <=
              (uint64_t)(f->buf + f->len - (const char *)f->data));
    *n = t->ne[0] * rows;
    float *out = malloc((size_t)*n * sizeof *out);
    for (int64_t r = 0; r < rows; r++)
        tr->to_float(f->data + t->offset + r * row, out + r * t->ne[0], t->ne[0]);
    return out;
}

static double nmse(const float *a, const float *ref, int64_t n) {
    double e = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        e += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]);
        s += (double)ref[i] * ref[i];
    }
    return s > 0 ? e / s : e;
}

/* The F16 file was converted from the F32 one by another tool: every value
 * must be exactly our round-to-nearest-even conversion. */
Test(quant_files, f16_file_matches_our_rounding_of_f32_file) {
    gguf_file a, h;
    if (!elmi_gguf_open("models/stories260K.gguf", &a) || !elmi_gguf_open("models/stories260K-f16.gguf", &h))
        cr_skip_test("shared models not found");
    int checked = 0;
    for (uint64_t i = 0; i < h.n_tensors; i++) {
        const tinfo *th = &h.t[i], *ta = find_tensor(&a, th->name);
        if (th->type != QT_F16 || !ta || ta->type != QT_F32) continue;
        int64_t n = th->ne[0] * th->ne[1] * th->ne[2] * th->ne[3];
        const uint8_t *pa = a.data + ta->offset, *ph = h.data + th->offset;
        for (int64_t j = 0; j < n; j++) {
            float x;
            uint16_t want;
            memcpy(&x, pa + 4 * j, 4);
            memcpy(&want, ph + 2 * j, 2);
            cr_assert_eq(elmi_f32_to_fp16(x), want, "%s[%lld] %a", th->name, (long long)j, x);
        }
        checked++;
    }
    cr_assert_gt(checked, 5);
    elmi_gguf_close(&a);
    elmi_gguf_close(&h);
}

/*
 * Same synthetic weights as Q8_0 and as Q4_0 / Q6_K (quantized by another
 * tool). Against the Q8_0 copy (itself within ~3e-5 of the originals), Q4_0
 * must be within the Q4_0 error (~4e-3 for uniform weights, 7.6e-3 for
 * Gaussian, bound 1.2e-2) and Q6_K within ~3e-4 (bound 1e-3). A layout
 * error gives an NMSE near 1 or above.
 */
Test(quant_files, q4_0_and_q6_K_files_agree_with_q8_0_file) {
    gguf_file q8, q4;
    if (!elmi_gguf_open("models/synth-spm-a-Q8_0.gguf", &q8) ||
        !elmi_gguf_open("models/synth-spm-a-Q4_0.gguf", &q4))
        cr_skip_test("shared models not found");
    int seen_q4 = 0, seen_q6 = 0;
    for (uint64_t i = 0; i < q4.n_tensors; i++) {
        const tinfo *t4 = &q4.t[i], *t8 = find_tensor(&q8, t4->name);
        if ((t4->type != QT_Q4_0 && t4->type != QT_Q6_K) || !t8 || t8->type != QT_Q8_0) continue;
        int64_t n4, n8;
        float *x4 = tensor_f32(&q4, t4, &n4), *x8 = tensor_f32(&q8, t8, &n8);
        cr_assert_eq(n4, n8);
        double e = nmse(x4, x8, n4), bound = t4->type == QT_Q4_0 ? 1.2e-2 : 1e-3;
        cr_log_info("%s %s nmse %g", t4->name, elmi_qtype_name(t4->type), e);
        cr_assert(e < bound, "%s (%s): nmse %g", t4->name, elmi_qtype_name(t4->type), e);
        if (t4->type == QT_Q4_0)
            seen_q4++;
        else
            seen_q6++;
        free(x4);
        free(x8);
    }
    cr_assert_gt(seen_q4, 10);
    cr_assert_eq(seen_q6, 1, "output.weight is Q6_K");
    elmi_gguf_close(&q8);
    elmi_gguf_close(&q4);
}

/* Re-quantizing a dequantized block must give the same bytes back when
 * both tools use the reference semantics (the extreme maps to -8 or 127). */
static void expect_requantize_identity(const char *rel, int type) {
    gguf_file f;
    if (!elmi_gguf_open(rel, &f)) cr_skip_test("shared models not found");
    const qtype_traits *tr = elmi_qtype_get(type);
    int64_t blocks = 0, same = 0;
    for (uint64_t i = 0; i < f.n_tensors && blocks * tr->block_size < (2 << 20); i++) {
        const tinfo *t = &f.t[i];
        if (t->type != type) continue;
        int64_t n;
        float *x = tensor_f32(&f, t, &n);
        size_t bytes;
        cr_assert(elmi_qtype_row_bytes(type, n, &bytes));
        uint8_t *q = malloc(bytes);
        tr->from_float(x, q, n);
        for (int64_t b = 0; b < n / tr->block_size; b++, blocks++)
            same += !memcmp(q + b * tr->type_size, f.data + t->offset + b * tr->type_size,
                            tr->type_size);
        free(q);
        free(x);
    }
    cr_log_info("%s: %lld of %lld blocks identical", rel, (long long)same, (long long)blocks);
    cr_assert_gt(blocks, 1000);
    cr_assert_eq(same, blocks, "%s: %lld of %lld blocks identical", rel, (long long)same,
                 (long long)blocks);
    elmi_gguf_close(&f);
}

Test(quant_files, q8_0_file_requantizes_to_itself) {
    expect_requantize_identity("models/synth-spm-a-Q8_0.gguf", QT_Q8_0);
}

Test(quant_files, q4_0_file_requantizes_to_itself) {
    expect_requantize_identity("models/synth-spm-a-Q4_0.gguf", QT_Q4_0);
}
