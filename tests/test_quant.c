/*
 * test_quant.c: the type table, row sizes and the fp16 / bf16 conversions.
 * Expected values are hand-derived from the GGUF / IEEE formats, or
 * computed independently with double arithmetic (ldexp).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "quant/quant.h"

/* --------------------------------------------------------------- traits */

typedef struct {
    int id;
    const char *name;
    int64_t block_size;
    size_t type_size;
    bool supported;
} known_type;

/* Sizes of the ggml block structs, worked out field by field. */
static const known_type k_known[] = {
    {0, "F32", 1, 4, true},
    {1, "F16", 1, 2, true},
    {2, "Q4_0", 32, 2 + 16, true},
    {3, "Q4_1", 32, 2 + 2 + 16, true},
    {6, "Q5_0", 32, 2 + 4 + 16, true},
    {7, "Q5_1", 32, 2 + 2 + 4 + 16, true},
    {8, "Q8_0", 32, 2 + 32, true},
    {9, "Q8_1", 32, 2 + 2 + 32, true},
    {10, "Q2_K", 256, 16 + 64 + 2 + 2, true},
    {11, "Q3_K", 256, 32 + 64 + 12 + 2, true},
    {12, "Q4_K", 256, 2 + 2 + 12 + 128, true},
    {13, "Q5_K", 256, 2 + 2 + 12 + 32 + 128, true},
    {14, "Q6_K", 256, 128 + 64 + 16 + 2, true},
    {15, "Q8_K", 256, 4 + 256 + 16 * 2, true},
    {16, "IQ2_XXS", 256, 2 + 32 * 2, false},
    {17, "IQ2_XS", 256, 2 + 32 * 2 + 8, false},
    {18, "IQ3_XXS", 256, 2 + 96, false},
    {19, "IQ1_S", 256, 2 + 32 + 8 * 2, false},
    {20, "IQ4_NL", 32, 2 + 16, false},
    {21, "IQ3_S", 256, 2 + 64 + 8 + 32 + 4, false},
    {22, "IQ2_S", 256, 2 + 64 + 8 + 8, false},
    {23, "IQ4_XS", 256, 2 + 2 + 4 + 128, false},
    {24, "I8", 1, 1, false},
    {25, "I16", 1, 2, false},
    {26, "I32", 1, 4, false},
    {27, "I64", 1, 8, false},
    {28, "F64", 1, 8, false},
    {29, "IQ1_M", 256, 32 + 16 + 8, false},
    {30, "BF16", 1, 2, true},
    {34, "TQ1_0", 256, 48 + 4 + 2, false},
    {35, "TQ2_0", 256, 64 + 2, false},
    {39, "MXFP4", 32, 1 + 16, false},
};
#define N_KNOWN (sizeof k_known / sizeof k_known[0])

Test(quant_traits, known_types_have_ggml_sizes) {
    for (size_t i = 0; i < N_KNOWN; i++) {
        const known_type *k = &k_known[i];
        const qtype_traits *tr = elmi_qtype_get(k->id);
        cr_assert_not_null(tr, "type %d missing", k->id);
        cr_assert_str_eq(tr->name, k->name);
        cr_assert_str_eq(elmi_qtype_name(k->id), k->name);
        cr_assert_eq(tr->block_size, k->block_size, "%s block size", k->name);
        cr_assert_eq(tr->type_size, k->type_size, "%s type size %zu", k->name, tr->type_size);
        cr_assert_eq(elmi_qtype_supported(k->id), k->supported, "%s supported", k->name);
        cr_assert_eq(tr->to_float != NULL, k->supported, "%s to_float", k->name);
        if (k->supported) cr_assert_not_null(tr->from_float, "%s from_float", k->name);
        cr_assert_eq(tr->is_quantized, k->block_size > 1, "%s is_quantized", k->name);
    }
}

Test(quant_traits, removed_and_unknown_ids) {
    const int bad[] = {4, 5, 31, 32, 33, 36, 37, 38, 40, 41, 255, -1, -1000, 1 << 30};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_null(elmi_qtype_get(bad[i]), "id %d", bad[i]);
        cr_assert_str_eq(elmi_qtype_name(bad[i]), "unknown");
        cr_assert(!elmi_qtype_supported(bad[i]));
        size_t out = 77;
        cr_assert(!elmi_qtype_row_bytes(bad[i], 256, &out));
        cr_assert_eq(out, 77);
    }
    /* Every id below 40 is either in the known list or refused. */
    int n_known = 0;
    for (int t = 0; t < 40; t++) n_known += elmi_qtype_get(t) != NULL;
    cr_assert_eq(n_known, (int)N_KNOWN);
}

Test(quant_traits, vec_dot_pairs) {
    const struct {
        int w, act;
    } pairs[] = {
        {QT_F32, QT_F32},   {QT_F16, QT_F16},   {QT_BF16, QT_BF16}, {QT_Q4_0, QT_Q8_0},
        {QT_Q5_0, QT_Q8_0}, {QT_Q8_0, QT_Q8_0}, {QT_Q4_1, QT_Q8_1}, {QT_Q5_1, QT_Q8_1},
        {QT_Q2_K, QT_Q8_K}, {QT_Q3_K, QT_Q8_K}, {QT_Q4_K, QT_Q8_K}, {QT_Q5_K, QT_Q8_K},
        {QT_Q6_K, QT_Q8_K},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        const qtype_traits *tr = elmi_qtype_get(pairs[i].w);
        cr_assert_eq(tr->vec_dot_type, (qtype)pairs[i].act, "%s", tr->name);
        cr_assert_not_null(tr->vec_dot, "%s", tr->name);
        cr_assert_not_null(elmi_qtype_get(pairs[i].act)->from_float);
    }
    cr_assert_null(elmi_qtype_get(QT_IQ2_XXS)->vec_dot);
    cr_assert_null(elmi_qtype_get(QT_I32)->from_float);
}

Test(quant_traits, row_bytes) {
    size_t out = 0;
    cr_assert(elmi_qtype_row_bytes(QT_Q4_0, 64, &out));
    cr_assert_eq(out, 36);
    cr_assert(elmi_qtype_row_bytes(QT_Q6_K, 4096, &out));
    cr_assert_eq(out, 16 * 210);
    cr_assert(elmi_qtype_row_bytes(QT_F16, 3, &out));
    cr_assert_eq(out, 6);
    cr_assert(elmi_qtype_row_bytes(QT_Q8_K, 0, &out));
    cr_assert_eq(out, 0);
    cr_assert(elmi_qtype_row_bytes(QT_IQ2_XXS, 512, &out)); /* known, unsupported: still sized */
    cr_assert_eq(out, 132);

    out = 99;
    cr_assert(!elmi_qtype_row_bytes(QT_Q4_0, 33, &out), "not a block multiple");
    cr_assert(!elmi_qtype_row_bytes(QT_Q4_K, 32, &out));
    cr_assert(!elmi_qtype_row_bytes(QT_Q4_0, -32, &out), "negative");
    cr_assert(!elmi_qtype_row_bytes(QT_F32, -1, &out));
    cr_assert_eq(out, 99, "left alone on failure");

    /* Overflow of blocks * bytes-per-block. */
    cr_assert(!elmi_qtype_row_bytes(QT_F64, INT64_MAX, &out));
    cr_assert(!elmi_qtype_row_bytes(QT_F32, INT64_MAX - 7, &out));
    int64_t big = (int64_t)(SIZE_MAX / 8 < INT64_MAX ? SIZE_MAX / 8 : INT64_MAX / 8);
    cr_assert(elmi_qtype_row_bytes(QT_F64, big, &out));
    cr_assert_eq(out, (size_t)big * 8);
    if ((uint64_t)big < INT64_MAX) cr_assert(!elmi_qtype_row_bytes(QT_F64, big + 1, &out));
    cr_assert(!elmi_qtype_row_bytes(QT_I32, INT64_MAX, &out));
    cr_assert_eq(out, (size_t)big * 8, "left alone on overflow");
}

/* ----------------------------------------------------------------- fp16 */

static float f_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t bits_f(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* The value of a half, computed from the format definition. */
static double half_value(uint16_t h) {
    int exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    double sign = (h & 0x8000) ? -1.0 : 1.0;
    if (exp == 31) return man ? NAN : sign * INFINITY;
    if (exp == 0) return sign * ldexp(man, -24);
    return sign * ldexp(1024 + man, exp - 25);
}

Test(quant_fp16, special_values) {
    cr_assert_eq(elmi_f32_to_fp16(0.0f), 0x0000);
    cr_assert_eq(elmi_f32_to_fp16(-0.0f), 0x8000);
    cr_assert_eq(elmi_f32_to_fp16(1.0f), 0x3c00);
    cr_assert_eq(elmi_f32_to_fp16(-2.0f), 0xc000);
    cr_assert_eq(elmi_f32_to_fp16(0.5f), 0x3800);
    cr_assert_eq(elmi_f32_to_fp16(65504.0f), 0x7bff);
    cr_assert_eq(elmi_f32_to_fp16(65519.996f), 0x7bff, "just under the tie");
    cr_assert_eq(elmi_f32_to_fp16(65520.0f), 0x7c00, "tie rounds to even = inf");
    cr_assert_eq(elmi_f32_to_fp16(-65520.0f), 0xfc00);
    cr_assert_eq(elmi_f32_to_fp16(1e10f), 0x7c00);
    cr_assert_eq(elmi_f32_to_fp16(INFINITY), 0x7c00);
    cr_assert_eq(elmi_f32_to_fp16(-INFINITY), 0xfc00);
    uint16_t n = elmi_f32_to_fp16(NAN);
    cr_assert_eq(n & 0x7c00, 0x7c00);
    cr_assert_neq(n & 0x3ff, 0, "NaN must not become inf");
    /* A NaN whose payload is only in the low float bits stays NaN. */
    n = elmi_f32_to_fp16(f_bits(0x7f800001));
    cr_assert(n & 0x3ff);
    n = elmi_f32_to_fp16(f_bits(0xff800010));
    cr_assert(n & 0x8000 && (n & 0x7c00) == 0x7c00 && (n & 0x3ff));

    cr_assert_eq(elmi_fp16_to_f32(0x7bff), 65504.0f);
    cr_assert(isinf(elmi_fp16_to_f32(0x7c00)) && elmi_fp16_to_f32(0x7c00) > 0);
    cr_assert(isinf(elmi_fp16_to_f32(0xfc00)) && elmi_fp16_to_f32(0xfc00) < 0);
    cr_assert(isnan(elmi_fp16_to_f32(0x7e00)));
    cr_assert(isnan(elmi_fp16_to_f32(0x7c01)));
    cr_assert(signbit(elmi_fp16_to_f32(0x8000)) && elmi_fp16_to_f32(0x8000) == 0.0f);
}

Test(quant_fp16, subnormals_and_ties) {
    const float tiny = 5.9604644775390625e-8f; /* 2^-24 */
    cr_assert_eq(elmi_f32_to_fp16(tiny), 0x0001);
    cr_assert_eq(elmi_f32_to_fp16(-tiny), 0x8001);
    cr_assert_eq(elmi_f32_to_fp16(tiny / 2), 0x0000, "tie 0 / 1 goes to even 0");
    cr_assert_eq(elmi_f32_to_fp16(-tiny / 2), 0x8000);
    cr_assert_eq(elmi_f32_to_fp16(tiny / 2 * 1.001f), 0x0001);
    cr_assert_eq(elmi_f32_to_fp16(tiny * 1.5f), 0x0002, "tie 1 / 2 goes to even 2");
    cr_assert_eq(elmi_f32_to_fp16(tiny * 2.5f), 0x0002, "tie 2 / 3 goes to even 2");
    cr_assert_eq(elmi_f32_to_fp16(tiny * 1023), 0x03ff);
    cr_assert_eq(elmi_f32_to_fp16(tiny * 1023.5f), 0x0400, "tie into the first normal");
    cr_assert_eq(elmi_f32_to_fp16(6.103515625e-05f), 0x0400); /* 2^-14 */
    cr_assert_eq(elmi_f32_to_fp16(1e-9f), 0x0000);
    cr_assert_eq(elmi_f32_to_fp16(f_bits(0x00000001)), 0x0000, "float subnormal");
    cr_assert_eq(elmi_fp16_to_f32(0x0001), tiny);
    cr_assert_eq(elmi_fp16_to_f32(0x03ff), tiny * 1023);
    cr_assert_eq(elmi_fp16_to_f32(0x8200), -tiny * 512);

    /* Normal ties: 1 + 2^-11 lies halfway between 0x3c00 and 0x3c01. */
    cr_assert_eq(elmi_f32_to_fp16(1.0f + 0x1p-11f), 0x3c00);
    cr_assert_eq(elmi_f32_to_fp16(1.0f + 3 * 0x1p-11f), 0x3c02);
    cr_assert_eq(elmi_f32_to_fp16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);
    cr_assert_eq(elmi_f32_to_fp16(2047.0f / 1024 + 0x1p-11f), 0x4000, "carry into exponent");
    cr_assert_eq(elmi_f32_to_fp16(-1.0f - 3 * 0x1p-11f), 0xbc02);
}

Test(quant_fp16, every_half_decodes_and_round_trips) {
    for (uint32_t h = 0; h < 65536; h++) {
        float f = elmi_fp16_to_f32((elm_fp16)h);
        double want = half_value((uint16_t)h);
        if (isnan(want)) {
            cr_assert(isnan(f), "0x%04x", h);
            uint16_t back = elmi_f32_to_fp16(f);
            cr_assert((back & 0x7c00) == 0x7c00 && (back & 0x3ff), "0x%04x NaN kept", h);
            cr_assert_eq(back & 0x8000, h & 0x8000);
            continue;
        }
        cr_assert((double)f == want, "0x%04x: %g vs %g", h, f, want);
        cr_assert_eq(signbit(f) != 0, (h & 0x8000) != 0);
        cr_assert_eq(elmi_f32_to_fp16(f), h, "0x%04x round trip", h);
    }
}

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* The result must be a nearest half, and the even one on a tie. */
Test(quant_fp16, random_floats_round_to_nearest_even) {
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 200000; i++) {
        /* Magnitudes from 2^-26 to just under 65520. */
        uint32_t u = (uint32_t)rng_next(&s);
        uint32_t exp = 101 + (u >> 8) % 42;
        float f = f_bits(((uint32_t)rng_next(&s) & 0x807fffff) | exp << 23);
        if (fabsf(f) >= 65520.0f) continue;
        uint16_t h = elmi_f32_to_fp16(f);
        double a = fabs((double)f), v = fabs(half_value(h));
        uint16_t mag = h & 0x7fff;
        cr_assert_eq(h & 0x8000, (bits_f(f) >> 16) & 0x8000);
        double up = half_value((uint16_t)(mag + 1)),
               down = mag ? half_value((uint16_t)(mag - 1)) : -1;
        if (isinf(up)) up = 65536.0;
        cr_assert(fabs(a - v) <= fabs(a - up), "%a -> 0x%04x", f, h);
        if (mag) cr_assert(fabs(a - v) <= fabs(a - down), "%a -> 0x%04x", f, h);
        if (fabs(a - v) == fabs(a - up) || (mag && fabs(a - v) == fabs(a - down)))
            cr_assert_eq(h & 1, 0, "tie must go to even: %a", f);
    }
}

/* ----------------------------------------------------------------- bf16 */

Test(quant_bf16, values_ties_and_nan) {
    cr_assert_eq(elmi_f32_to_bf16(1.0f), 0x3f80);
    cr_assert_eq(elmi_f32_to_bf16(-2.0f), 0xc000);
    cr_assert_eq(elmi_f32_to_bf16(0.0f), 0x0000);
    cr_assert_eq(elmi_f32_to_bf16(-0.0f), 0x8000);
    cr_assert_eq(elmi_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80, "tie to even (down)");
    cr_assert_eq(elmi_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82, "tie to even (up)");
    cr_assert_eq(elmi_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
    cr_assert_eq(elmi_f32_to_bf16(INFINITY), 0x7f80);
    cr_assert_eq(elmi_f32_to_bf16(-INFINITY), 0xff80);
    cr_assert_eq(elmi_f32_to_bf16(3.4028235e38f), 0x7f80, "FLT_MAX rounds to inf");
    cr_assert_eq(elmi_f32_to_bf16(f_bits(0x7f7f7fff)), 0x7f7f);
    cr_assert_eq(elmi_f32_to_bf16(f_bits(0x00010000)), 0x0001, "subnormal kept");
    cr_assert_eq(elmi_f32_to_bf16(f_bits(0x00008000)), 0x0000, "subnormal tie to even");
    cr_assert_eq(elmi_f32_to_bf16(f_bits(0x00018000)), 0x0002);
    /* NaNs, including those with only low payload bits, stay NaN. */
    const uint32_t nans[] = {0x7fc00000, 0x7f800001, 0xff80ffff, 0x7fffffff};
    for (size_t i = 0; i < 4; i++) {
        uint16_t b = elmi_f32_to_bf16(f_bits(nans[i]));
        cr_assert((b & 0x7f80) == 0x7f80 && (b & 0x7f), "0x%08x -> 0x%04x", nans[i], b);
        cr_assert_eq(b & 0x8000, (nans[i] >> 16) & 0x8000);
    }
    cr_assert_eq(elmi_bf16_to_f32(0x3f80), 1.0f);
    cr_assert_eq(elmi_bf16_to_f32(0xc0a0), -5.0f);
    cr_assert_eq(elmi_bf16_to_f32(0x0001), ldexpf(1.0f, -133));
    cr_assert(isnan(elmi_bf16_to_f32(0x7fc1)));
}

Test(quant_bf16, every_bf16_round_trips) {
    for (uint32_t h = 0; h < 65536; h++) {
        float f = elmi_bf16_to_f32((elm_bf16)h);
        int exp = (h >> 7) & 0xff, man = h & 0x7f;
        double sign = (h & 0x8000) ? -1 : 1;
        if (exp == 255) {
            cr_assert(man ? isnan(f) : isinf(f));
            uint16_t back = elmi_f32_to_bf16(f);
            cr_assert(man ? (back & 0x7f) != 0 : back == h);
            continue;
        }
        double want = exp ? sign * ldexp(128 + man, exp - 134) : sign * ldexp(man, -133);
        cr_assert((double)f == want, "0x%04x", h);
        cr_assert_eq(elmi_f32_to_bf16(f), h);
    }
}

Test(quant_bf16, random_floats_round_to_nearest_even) {
    uint64_t s = 12345;
    for (int i = 0; i < 200000; i++) {
        float f = f_bits((uint32_t)rng_next(&s));
        if (!isfinite(f) || fabsf(f) > 3.3e38f) continue;
        uint16_t h = elmi_f32_to_bf16(f);
        double a = fabs((double)f), v = fabs((double)elmi_bf16_to_f32(h));
        uint16_t mag = h & 0x7fff;
        double up = elmi_bf16_to_f32((uint16_t)(mag + 1));
        double down = mag ? elmi_bf16_to_f32((uint16_t)(mag - 1)) : -1;
        cr_assert(fabs(a - v) <= fabs(a - up) && (!mag || fabs(a - v) <= fabs(a - down)),
                  "%a -> 0x%04x", f, h);
        if (fabs(a - v) == fabs(a - up) || (mag && fabs(a - v) == fabs(a - down)))
            cr_assert_eq(h & 1, 0, "%a", f);
    }
}
