/*
 * test_quant_blocks.c: block layouts (hand-built blocks dequantized to
 * hand-computed values), the exact semantics of the reference quantizers,
 * round-trip error on Gaussian data, and the reference dot products checked
 * against a double-precision dot of the dequantized rows.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"

#define H_1 0x3c00    /* fp16 1.0 */
#define H_HALF 0x3800 /* 0.5 */
#define H_QUARTER 0x3400
#define H_EIGHTH 0x3000
#define H_M1 0xbc00 /* -1.0 */

static void dequant(int type, const void *blk, float *out, int64_t n) {
    const qtype_traits *tr = elmi_qtype_get(type);
    cr_assert(tr && tr->to_float, "%d", type);
    tr->to_float(blk, out, n);
}

static void expect_at(const float *y, int i, float want) {
    cr_assert(y[i] == want, "value %d: got %g, want %g", i, y[i], want);
}

/* ------------------------------------------------------ hand-built blocks */

Test(quant_layout, q4_0) {
    block_q4_0 b = {.d = H_HALF};
    for (int j = 0; j < 16; j++) b.qs[j] = (uint8_t)(j | (15 - j) << 4);
    float y[32];
    dequant(QT_Q4_0, &b, y, 32);
    /* Low nibbles are values 0..15, high nibbles 16..31 (not interleaved). */
    for (int j = 0; j < 16; j++) {
        expect_at(y, j, (j - 8) * 0.5f);
        expect_at(y, j + 16, (7 - j) * 0.5f);
    }
    expect_at(y, 0, -4.0f);
    expect_at(y, 1, -3.5f);
    expect_at(y, 17, 3.0f);
}

Test(quant_layout, q4_1) {
    block_q4_1 b = {.d = H_HALF, .m = H_M1};
    for (int j = 0; j < 16; j++) b.qs[j] = (uint8_t)(j | (15 - j) << 4);
    float y[32];
    dequant(QT_Q4_1, &b, y, 32);
    expect_at(y, 0, -1.0f);
    expect_at(y, 3, 0.5f);
    expect_at(y, 15, 6.5f);
    expect_at(y, 16, 6.5f);
    expect_at(y, 20, 4.5f);
    expect_at(y, 31, -1.0f);
}

Test(quant_layout, q5_0) {
    /* qh bits 0, 5, 20 and 31 set (little-endian bytes). */
    block_q5_0 b = {.d = H_QUARTER, .qh = {0x21, 0x00, 0x10, 0x80}};
    for (int j = 0; j < 16; j++) b.qs[j] = (uint8_t)(j | (15 - j) << 4);
    float y[32];
    dequant(QT_Q5_0, &b, y, 32);
    expect_at(y, 0, 0.0f);    /* 0 + 16 - 16 */
    expect_at(y, 1, -3.75f);  /* 1 - 16 */
    expect_at(y, 5, 1.25f);   /* 5 + 16 - 16 */
    expect_at(y, 15, -0.25f); /* 15 - 16 */
    expect_at(y, 16, -0.25f); /* high nibble of qs[0] = 15 */
    expect_at(y, 20, 2.75f);  /* 11 + 16 - 16 */
    expect_at(y, 30, -3.75f); /* 1 - 16 */
    expect_at(y, 31, 0.0f);   /* 0 + 16 - 16 */
    expect_at(y, 21, -1.5f);  /* 10 - 16 */
}

Test(quant_layout, q5_1) {
    block_q5_1 b = {.d = H_1, .m = H_HALF, .qh = {0x01, 0x00, 0x00, 0x80}};
    for (int j = 0; j < 16; j++) b.qs[j] = 0xF0;
    float y[32];
    dequant(QT_Q5_1, &b, y, 32);
    expect_at(y, 0, 16.5f);
    expect_at(y, 1, 0.5f);
    expect_at(y, 16, 15.5f);
    expect_at(y, 31, 31.5f);
}

Test(quant_layout, q8_0_and_q8_1) {
    block_q8_0 b = {.d = H_EIGHTH};
    block_q8_1 c = {.d = H_EIGHTH, .s = 0x7bff};
    for (int j = 0; j < 32; j++) b.qs[j] = c.qs[j] = (int8_t)(j - 16);
    float y[32], z[32];
    dequant(QT_Q8_0, &b, y, 32);
    dequant(QT_Q8_1, &c, z, 32);
    for (int j = 0; j < 32; j++) {
        expect_at(y, j, (j - 16) * 0.125f);
        expect_at(z, j, (j - 16) * 0.125f);
    }
}

/* Scales {1,2,3,4,33,40,50,63}, mins {0,5,10,63,1,17,32,60}, packed by hand. */
static const uint8_t k_scales6[12] = {0x81, 0x82, 0xC3, 0xC4, 0x00, 0x45,
                                      0x8A, 0xFF, 0x11, 0x18, 0x02, 0xCF};

Test(quant_layout, scale_min_k4) {
    const uint8_t sc[8] = {1, 2, 3, 4, 33, 40, 50, 63}, mn[8] = {0, 5, 10, 63, 1, 17, 32, 60};
    for (int j = 0; j < 8; j++) {
        uint8_t d, m;
        get_scale_min_k4(j, k_scales6, &d, &m);
        cr_assert_eq(d, sc[j], "scale %d", j);
        cr_assert_eq(m, mn[j], "min %d", j);
    }
}

Test(quant_layout, q4_K) {
    block_q4_K b = {.d = H_1, .dmin = H_HALF};
    memcpy(b.scales, k_scales6, 12);
    for (int k = 0; k < 128; k++) b.qs[k] = (uint8_t)(k % 16 | (k * 7 % 16) << 4);
    float y[256];
    dequant(QT_Q4_K, &b, y, 256);
    /* x = sc * q - 0.5 * m; sub-block 2g in low nibbles of qs[32g..], 2g+1 high. */
    expect_at(y, 3, 3.0f);     /* sub 0: q = 3 */
    expect_at(y, 37, 3.5f);    /* sub 1: qs[5] high = 3 -> 2*3 - 2.5 */
    expect_at(y, 66, 1.0f);    /* sub 2: qs[34] low = 2 -> 6 - 5 */
    expect_at(y, 111, 4.5f);   /* sub 3: qs[47] high = 9 -> 36 - 31.5 */
    expect_at(y, 138, 329.5f); /* sub 4: qs[74] low = 10 -> 330 - 0.5 */
    expect_at(y, 161, 271.5f); /* sub 5: qs[65] high = 7 -> 280 - 8.5 */
    expect_at(y, 196, 184.0f); /* sub 6: qs[100] low = 4 -> 200 - 16 */
    expect_at(y, 255, 537.0f); /* sub 7: qs[127] high = 9 -> 567 - 30 */
}

Test(quant_layout, q5_K) {
    /* All scales 1, mins 0; qs low nibble 3, high 5; qh[l] = 1 << (l % 8). */
    block_q5_K b = {.d = H_1, .dmin = H_1, .scales = {1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1}};
    memset(b.qs, 0x53, sizeof b.qs);
    for (int l = 0; l < 32; l++) b.qh[l] = (uint8_t)(1 << (l % 8));
    float y[256];
    dequant(QT_Q5_K, &b, y, 256);
    expect_at(y, 0, 19.0f); /* bit 0 of qh[0] */
    expect_at(y, 1, 3.0f);
    expect_at(y, 33, 21.0f); /* sub 1 (high nibble), bit 1 of qh[1] */
    expect_at(y, 34, 5.0f);
    expect_at(y, 198, 19.0f); /* sub 6, bit 6 of qh[6] */
    expect_at(y, 224, 5.0f);
    expect_at(y, 231, 21.0f); /* sub 7, bit 7 of qh[7] */
    expect_at(y, 255, 21.0f);
}

Test(quant_layout, q6_K) {
    block_q6_K b = {.d = H_1};
    for (int j = 0; j < 16; j++) b.scales[j] = (int8_t)((j % 2 ? -1 : 1) * (j + 1));
    for (int k = 0; k < 128; k++) b.ql[k] = (uint8_t)k;
    for (int k = 0; k < 64; k++) b.qh[k] = (uint8_t)(k * 37);
    float y[256];
    dequant(QT_Q6_K, &b, y, 256);
    expect_at(y, 0, -32.0f);    /* q 0, scale 1 */
    expect_at(y, 33, -45.0f);   /* ql[33] low 1, qh[1] bits 2-3 = 1 -> 17 - 32, scale 3 */
    expect_at(y, 70, -80.0f);   /* ql[6] high 0, qh[6] bits 4-5 = 1 -> -16, scale 5 */
    expect_at(y, 127, 104.0f);  /* ql[63] high 3, qh[31] bits 6-7 = 1 -> -13, scale -8 */
    expect_at(y, 145, 150.0f);  /* ql[81] low 1, qh[49] bits 0-1 = 1 -> -15, scale -10 */
    expect_at(y, 200, -364.0f); /* ql[72] high 4, qh[40] bits 4-5 = 0 -> -28, scale 13 */
    expect_at(y, 255, 400.0f);  /* ql[127] high 7, qh[63] bits 6-7 = 0 -> -25, scale -16 */
}

Test(quant_layout, q2_K) {
    block_q2_K b = {.d = H_1, .dmin = H_1};
    for (int j = 0; j < 16; j++) b.scales[j] = (uint8_t)((j % 15 + 1) | j << 4);
    for (int k = 0; k < 64; k++) b.qs[k] = (uint8_t)k;
    float y[256];
    dequant(QT_Q2_K, &b, y, 256);
    expect_at(y, 5, 1.0f);    /* qs[5] bits 0-1 = 1, sc 1, m 0 */
    expect_at(y, 45, 7.0f);   /* qs[13] bits 2-3 = 3, sc 3, m 2 */
    expect_at(y, 70, -4.0f);  /* qs[6] bits 4-5 = 0, m 4 */
    expect_at(y, 97, -6.0f);  /* qs[1] bits 6-7 = 0, m 6 */
    expect_at(y, 135, 19.0f); /* qs[39] bits 0-1 = 3, sc 9, m 8 */
    expect_at(y, 180, 1.0f);  /* qs[52] bits 2-3 = 1, sc 12, m 11 */
    expect_at(y, 230, -14.0f);
    expect_at(y, 255, -15.0f);
}

Test(quant_layout, q3_K) {
    block_q3_K b = {
        .d = H_1,
        .scales = {0x10, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE, 0xE4, 0x1B, 0x00, 0xFF}};
    for (int k = 0; k < 64; k++) b.qs[k] = (uint8_t)k;
    for (int k = 0; k < 32; k++) b.hmask[k] = (uint8_t)(1 << (k % 8));
    float y[256];
    dequant(QT_Q3_K, &b, y, 256);
    expect_at(y, 1, 96.0f);     /* q 1 - 4, scale 0 - 32 */
    expect_at(y, 17, -54.0f);   /* q 1 - 4, scale 50 - 32 */
    expect_at(y, 34, 112.0f);   /* q 0 - 4, scale 4 - 32 */
    expect_at(y, 70, 32.0f);    /* q -4, scale 24 - 32 */
    expect_at(y, 135, -1.0f);   /* q 3 - 4, scale 33 - 32 */
    expect_at(y, 164, 81.0f);   /* q 1 - 4, scale 5 - 32 */
    expect_at(y, 165, -27.0f);  /* high bit set: q 1, scale 5 - 32 */
    expect_at(y, 196, -50.0f);  /* q 2 - 4, scale 57 - 32 */
    expect_at(y, 212, 21.0f);   /* q 3 - 4, scale 11 - 32 */
    expect_at(y, 252, -124.0f); /* q -4, scale 63 - 32 */
}

Test(quant_layout, q8_K) {
    block_q8_K b = {.d = 0.25f};
    for (int j = 0; j < 256; j++) b.qs[j] = (int8_t)(j - 128);
    float y[256];
    dequant(QT_Q8_K, &b, y, 256);
    for (int j = 0; j < 256; j++) expect_at(y, j, (j - 128) * 0.25f);
}

/* ---------------------------------------- exact quantizer semantics */

static void quantize(int type, const float *x, void *blk, int64_t n) {
    const qtype_traits *tr = elmi_qtype_get(type);
    cr_assert(tr && tr->from_float, "%d", type);
    tr->from_float(x, blk, n);
}

Test(quant_exact, q8_0_rounds_half_away_from_zero) {
    float x[32] = {127.0f, -63.5f, 0.5f, -0.5f, 2.5f, 1.4999f};
    block_q8_0 b;
    quantize(QT_Q8_0, x, &b, 32);
    cr_assert_eq(b.d, H_1, "d = 127 / 127");
    const int8_t want[6] = {127, -64, 1, -1, 3, 1};
    for (int j = 0; j < 6; j++) cr_assert_eq(b.qs[j], want[j], "q[%d] = %d", j, b.qs[j]);
    for (int j = 6; j < 32; j++) cr_assert_eq(b.qs[j], 0);

    block_q8_1 c;
    quantize(QT_Q8_1, x, &c, 32);
    cr_assert_eq(c.d, H_1);
    cr_assert(!memcmp(c.qs, b.qs, 32));
    cr_assert_eq(elmi_fp16_to_f32(c.s), 67.0f, "s = d * (127 - 64 + 1 - 1 + 3 + 1)");

    float z[32] = {0};
    quantize(QT_Q8_0, z, &b, 32);
    cr_assert_eq(b.d, 0);
    for (int j = 0; j < 32; j++) cr_assert_eq(b.qs[j], 0);
}

Test(quant_exact, q8_K_signed_max_and_ties_to_even) {
    float x[256] = {-127.0f, 2.5f, 3.5f, -0.5f, 127.0f, 1.5f};
    x[200] = -3.0f;
    block_q8_K b;
    quantize(QT_Q8_K, x, &b, 256);
    cr_assert_eq(b.d, 1.0f, "iscale = -127 / -127");
    const int8_t want[6] = {-127, 2, 4, 0, 127, 2};
    for (int j = 0; j < 6; j++) cr_assert_eq(b.qs[j], want[j], "q[%d] = %d", j, b.qs[j]);
    cr_assert_eq(b.qs[200], -3);
    cr_assert_eq(b.bsums[0], 8);
    cr_assert_eq(b.bsums[12], -3);
    cr_assert_eq(b.bsums[1], 0);

    x[0] = 127.0f; /* a positive extreme flips the sign of d */
    quantize(QT_Q8_K, x, &b, 256);
    cr_assert_eq(b.d, -1.0f);
    const int8_t want2[6] = {-127, -2, -4, 0, -127, -2};
    for (int j = 0; j < 6; j++) cr_assert_eq(b.qs[j], want2[j], "q[%d] = %d", j, b.qs[j]);
    cr_assert_eq(b.bsums[0], -262);

    memset(x, 0, sizeof x);
    quantize(QT_Q8_K, x, &b, 256);
    cr_assert_eq(b.d, 0.0f);
    for (int j = 0; j < 16; j++) cr_assert_eq(b.bsums[j], 0);
}

Test(quant_exact, q4_0_and_q5_0) {
    float x[32] = {-8.0f, 3.4f, 3.5f, -0.5f, -0.6f, 7.9f, 8.0f};
    block_q4_0 b;
    quantize(QT_Q4_0, x, &b, 32);
    cr_assert_eq(b.d, H_1, "d = -8 / -8; the first extreme wins the tie");
    const int want[7] = {0, 11, 12, 8, 7, 15, 15};
    for (int j = 0; j < 7; j++) cr_assert_eq(b.qs[j] & 0xF, want[j], "q[%d]", j);
    for (int j = 7; j < 16; j++) cr_assert_eq(b.qs[j] & 0xF, 8);
    for (int j = 0; j < 16; j++) cr_assert_eq(b.qs[j] >> 4, 8, "values 16.. are zero");

    float y[32] = {0};
    y[0] = 4.0f;
    y[20] = -4.0f;
    quantize(QT_Q4_0, y, &b, 32);
    cr_assert_eq(b.d, 0xb800, "d = 4 / -8");
    cr_assert_eq(b.qs[0] & 0xF, 0);
    cr_assert_eq(b.qs[4] >> 4, 15, "16.5 clamps to 15");

    block_q5_0 c;
    float z[32] = {0};
    z[0] = -16.0f;
    z[17] = 15.0f;
    z[30] = 5.6f;
    quantize(QT_Q5_0, z, &c, 32);
    cr_assert_eq(c.d, H_1);
    cr_assert_eq(c.qs[0] & 0xF, 0);
    cr_assert_eq(c.qs[1] >> 4, 15, "31 low bits");
    cr_assert_eq(c.qs[14] >> 4, 6, "22 = 0b10110 low bits");
    const uint32_t qh = c.qh[0] | c.qh[1] << 8 | c.qh[2] << 16 | (uint32_t)c.qh[3] << 24;
    /* Every zero maps to 16 (bit 4 set); value 0 is q 0, so only bit 0 clear. */
    cr_assert_eq(qh, 0xfffffffeu, "qh = 0x%08x", qh);
}

Test(quant_exact, q4_1) {
    float x[32] = {-1.0f, 2.0f, 0.25f};
    for (int j = 3; j < 32; j++) x[j] = 0.5f;
    block_q4_1 b;
    quantize(QT_Q4_1, x, &b, 32);
    cr_assert_eq(b.m, H_M1);
    cr_assert(fabsf(elmi_fp16_to_f32(b.d) - 0.2f) < 1e-4f);
    const int want[4] = {0, 15, 6, 8};
    for (int j = 0; j < 4; j++) cr_assert_eq(b.qs[j] & 0xF, want[j], "q[%d]", j);
    cr_assert_eq(b.qs[0] >> 4, 8);
}

/* ------------------------------------------------------- random data */

static uint64_t g_rng;

static double uniform01(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return ((g_rng >> 11) + 0.5) * 0x1p-53;
}

static void gaussian(float *x, int64_t n, uint64_t seed) {
    g_rng = seed * 0x9e3779b97f4a7c15ull + 1;
    for (int64_t i = 0; i < n; i++) {
        double u = uniform01(), v = uniform01();
        x[i] = (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
    }
}

static void *row_alloc(int type, int64_t n) {
    size_t bytes;
    cr_assert(elmi_qtype_row_bytes(type, n, &bytes));
    void *p = calloc(1, bytes);
    cr_assert_not_null(p);
    return p;
}

/* NMSE of x -> type -> float. */
static double round_trip_nmse(int type, const float *x, int64_t n, float *back) {
    void *q = row_alloc(type, n);
    quantize(type, x, q, n);
    dequant(type, q, back, n);
    free(q);
    double err = 0, ref = 0;
    for (int64_t i = 0; i < n; i++) {
        cr_assert(isfinite(back[i]), "%s value %lld", elmi_qtype_name(type), (long long)i);
        err += ((double)x[i] - back[i]) * ((double)x[i] - back[i]);
        ref += (double)x[i] * x[i];
    }
    return err / ref;
}

/*
 * Bounds on the NMSE for unit Gaussian data. A uniform quantizer with step
 * D has error about D^2 / 12; a block's extreme is about 2.1 sigma for 32
 * values (2.0 for 16, 2.8 for 256). Estimate -> measured here (2048 values,
 * 3 seeds) -> bound, the bound leaving ~25% or more of headroom so a seed
 * change cannot flip it while a lost bit (4x the error) always does:
 *   Q8_0  D = 2.1/127: 2.3e-5 -> 3.0e-5 -> 5e-5
 *   Q8_K  D = 2.8/127: 4.0e-5 -> 5.5e-5 -> 8e-5
 *   Q4_0  D = 2.1/8, one side clipped at +7: 5.7e-3 -> 7.6e-3 -> 1e-2
 *   Q4_1  D = 4.2/15: 6.5e-3 -> 6.3e-3 -> 1e-2
 *   Q5_0  D = 2.1/16: 1.4e-3 -> 1.8e-3 -> 2.5e-3
 *   Q5_1  D = 4.2/31: 1.5e-3 -> 1.6e-3 -> 2.5e-3
 *   Q4_K  least squares per 32, 6-bit scales: 5.2e-3 -> 6.5e-3 (well under 1e-2)
 *   Q5_K  1.3e-3 -> 1.7e-3;  Q6_K  D = 2.0/32: 3e-4 -> 2.9e-4 -> 4e-4
 *   Q3_K  2.2e-2 -> 3.5e-2;  Q2_K  7.3e-2 -> 1e-1
 *   F16   relative rounding <= 2^-11 per value -> 2^-22; BF16 2^-8 -> 2^-16.
 */
static const struct {
    int type;
    double bound;
} k_nmse[] = {
    {QT_F32, 0.0},     {QT_F16, 0x1p-22}, {QT_BF16, 0x1p-16}, {QT_Q8_0, 5e-5},   {QT_Q8_1, 5e-5},
    {QT_Q8_K, 8e-5},   {QT_Q4_0, 1e-2},   {QT_Q4_1, 1e-2},    {QT_Q5_0, 2.5e-3}, {QT_Q5_1, 2.5e-3},
    {QT_Q4_K, 6.5e-3}, {QT_Q5_K, 1.7e-3}, {QT_Q6_K, 4e-4},    {QT_Q3_K, 3.5e-2}, {QT_Q2_K, 1e-1},
};
#define N_NMSE (sizeof k_nmse / sizeof k_nmse[0])

Test(quant_roundtrip, gaussian_rows_within_nmse_bounds) {
    enum { N = 8 * QK_K };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    for (size_t t = 0; t < N_NMSE; t++) {
        for (uint64_t seed = 1; seed <= 3; seed++) {
            gaussian(x, N, seed + 10 * t);
            double e = round_trip_nmse(k_nmse[t].type, x, N, y);
            cr_log_info("%-5s seed %llu nmse %.3e (bound %.1e)", elmi_qtype_name(k_nmse[t].type),
                        (unsigned long long)seed, e, k_nmse[t].bound);
            cr_assert(e <= k_nmse[t].bound, "%s nmse %g > %g", elmi_qtype_name(k_nmse[t].type), e,
                      k_nmse[t].bound);
        }
    }
    free(x);
    free(y);
}

/* Scale invariance: the same data times 1e-3 or shifted keeps its quality
 * (catches mishandled mins and fp16 scale ranges). */
Test(quant_roundtrip, scaled_and_shifted_rows) {
    enum { N = 4 * QK_K };
    float x[N], y[N];
    for (size_t t = 0; t < N_NMSE; t++) {
        const int type = k_nmse[t].type;
        gaussian(x, N, 77);
        for (int i = 0; i < N; i++) x[i] *= 1e-3f;
        double e = round_trip_nmse(type, x, N, y);
        cr_assert(e <= k_nmse[t].bound * 1.05 + 1e-12, "%s scaled: %g", elmi_qtype_name(type), e);
        /* Shifted: the mean becomes large, so NMSE is tiny for any format that
         * tracks a block's range; a sign or min error would show up here. */
        gaussian(x, N, 78);
        for (int i = 0; i < N; i++) x[i] = 3.0f + x[i];
        e = round_trip_nmse(type, x, N, y);
        cr_assert(e <= k_nmse[t].bound, "%s shifted: %g", elmi_qtype_name(type), e);
    }
}

Test(quant_roundtrip, zero_rows_stay_zero) {
    float x[2 * QK_K] = {0}, y[2 * QK_K];
    for (size_t t = 0; t < N_NMSE; t++) {
        void *q = row_alloc(k_nmse[t].type, 2 * QK_K);
        quantize(k_nmse[t].type, x, q, 2 * QK_K);
        dequant(k_nmse[t].type, q, y, 2 * QK_K);
        for (int i = 0; i < 2 * QK_K; i++)
            cr_assert(y[i] == 0.0f, "%s value %d = %g", elmi_qtype_name(k_nmse[t].type), i, y[i]);
        free(q);
    }
}

/* Q8_0 is exact up to half a step: |x - x'| <= d/2 (+ the fp16 rounding of d). */
Test(quant_roundtrip, q8_0_elementwise_bound) {
    enum { N = 32 * 16 };
    float x[N], y[N];
    gaussian(x, N, 5);
    block_q8_0 b[16];
    quantize(QT_Q8_0, x, b, N);
    dequant(QT_Q8_0, b, y, N);
    for (int i = 0; i < N; i++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[i / 32 * 32 + j]));
        float d = amax / 127;
        cr_assert(fabsf(x[i] - y[i]) <= d * 0.5f + fabsf(x[i]) * 0x1p-10f, "value %d", i);
    }
}

/* ------------------------------------------------------- dot products */

static const int k_dot_types[] = {QT_F32,  QT_F16,  QT_BF16, QT_Q4_0, QT_Q4_1, QT_Q5_0, QT_Q5_1,
                                  QT_Q8_0, QT_Q2_K, QT_Q3_K, QT_Q4_K, QT_Q5_K, QT_Q6_K};

/* The Q8_1 s field is d * sum(q) rounded to fp16 from the unrounded d, so a
 * min-carrying dot can differ from the dequantized dot by m * (s - d16 sum). */
static double q8_1_s_slack(int type, const void *xq, const void *yq, int64_t n) {
    if (type != QT_Q4_1 && type != QT_Q5_1) return 0;
    const block_q8_1 *y = yq;
    double slack = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        const elm_fp16 m =
            type == QT_Q4_1 ? ((const block_q4_1 *)xq)[i].m : ((const block_q5_1 *)xq)[i].m;
        int sum = 0;
        for (int j = 0; j < 32; j++) sum += y[i].qs[j];
        double exact = (double)elmi_fp16_to_f32(y[i].d) * sum;
        slack += fabs(elmi_fp16_to_f32(m)) * fabs(elmi_fp16_to_f32(y[i].s) - exact);
    }
    return slack;
}

Test(quant_dot, reference_matches_double_dot_of_dequantized_rows) {
    enum { N = 8 * QK_K };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    float *xd = malloc(N * sizeof *xd), *yd = malloc(N * sizeof *yd);
    for (size_t t = 0; t < sizeof k_dot_types / sizeof k_dot_types[0]; t++) {
        const int type = k_dot_types[t];
        const qtype_traits *tr = elmi_qtype_get(type);
        for (uint64_t seed = 1; seed <= 4; seed++) {
            gaussian(x, N, 100 + seed);
            gaussian(y, N, 200 + seed);
            if (seed == 4) /* correlated rows: a large dot, little cancellation */
                for (int i = 0; i < N; i++) y[i] = x[i] + 0.1f * y[i];
            void *xq = row_alloc(type, N), *yq = row_alloc(tr->vec_dot_type, N);
            quantize(type, x, xq, N);
            quantize(tr->vec_dot_type, y, yq, N);
            dequant(type, xq, xd, N);
            dequant(tr->vec_dot_type, yq, yd, N);
            double ref = 0, mag = 0;
            for (int i = 0; i < N; i++) {
                ref += (double)xd[i] * yd[i];
                mag += fabs((double)xd[i] * yd[i]);
            }
            float s = NAN;
            tr->vec_dot(N, &s, xq, yq);
            /* Float accumulation over N / block blocks: well under 1e-5 of
             * sum |x y|; plus the Q8_1 s-field rounding where it applies. */
            double tol = 1e-5 * mag + q8_1_s_slack(type, xq, yq, N) * 1.01;
            cr_assert(fabs(s - ref) <= tol, "%s seed %llu: %.9g vs %.9g (tol %g)", tr->name,
                      (unsigned long long)seed, s, ref, tol);
            free(xq);
            free(yq);
        }
    }
    free(x);
    free(y);
    free(xd);
    free(yd);
}

Test(quant_dot, hand_computed_q4_0_q8_0) {
    block_q4_0 x = {.d = H_1};
    memset(x.qs, 0x19, sizeof x.qs); /* values 0..15 are 9 - 8, 16..31 are 1 - 8 */
    block_q8_0 y = {.d = H_HALF};
    for (int j = 0; j < 32; j++) y.qs[j] = (int8_t)(j + 1);
    float s;
    elmi_qtype_get(QT_Q4_0)->vec_dot(32, &s, &x, &y);
    cr_assert_eq(s, -1304.0f, "(136 - 7 * 392) / 2, got %g", s);
}

Test(quant_dot, hand_computed_q4_1_q8_1) {
    block_q4_1 x = {.d = H_1, .m = H_M1};
    memset(x.qs, 0x32, sizeof x.qs);        /* x = 2 - 1 = 1 (low), 3 - 1 = 2 (high) */
    block_q8_1 y = {.d = H_1, .s = 0x5400}; /* s = 64 = sum of qs */
    memset(y.qs, 2, sizeof y.qs);
    float s;
    elmi_qtype_get(QT_Q4_1)->vec_dot(32, &s, &x, &y);
    cr_assert_eq(s, 96.0f, "16 * 1 * 2 + 16 * 2 * 2, got %g", s);
}

Test(quant_dot, hand_computed_q4_K_q8_K) {
    /* All scales 1 and mins 1, q = 2: every x is 2 - 1 = 1. */
    block_q4_K x = {
        .d = H_1, .dmin = H_1, .scales = {1, 1, 1, 1, 1, 1, 1, 1, 0x11, 0x11, 0x11, 0x11}};
    memset(x.qs, 0x22, sizeof x.qs);
    block_q8_K y = {.d = 0.5f};
    for (int j = 0; j < 256; j++) y.qs[j] = j < 32 ? 4 : 2;
    for (int j = 0; j < 16; j++) y.bsums[j] = j < 2 ? 64 : 32;
    float s;
    elmi_qtype_get(QT_Q4_K)->vec_dot(256, &s, &x, &y);
    cr_assert_eq(s, 288.0f, "32 * 2 + 224 * 1, got %g", s);
}

Test(quant_dot, hand_computed_q6_K_q8_K) {
    block_q6_K x = {.d = H_1};
    memset(x.ql, 0x11, sizeof x.ql);
    memset(x.qh, 0xAA, sizeof x.qh); /* q = 1 | 2 << 4 = 33 -> 1 */
    for (int j = 0; j < 16; j++) x.scales[j] = j == 15 ? -2 : 1;
    block_q8_K y = {.d = 1.0f};
    memset(y.qs, 3, sizeof y.qs);
    for (int j = 0; j < 16; j++) y.bsums[j] = 48;
    float s;
    elmi_qtype_get(QT_Q6_K)->vec_dot(256, &s, &x, &y);
    cr_assert_eq(s, 624.0f, "240 * 3 - 16 * 2 * 3, got %g", s);
}
