/* test_vk_attention.c: ATTENTION on the Vulkan backend over the shapes the
 * flash kernel cuts differently (shaders/flash_attn.comp,
 * backends/vulkan/ops_attention.c): long caches whose decode splits the
 * keys into chunks merged by a reduce pass, GQA ratios 1, 2, 4 and 8, head
 * sizes 64, 80, 128 and 256 (and an odd one, for the row kernel), windows,
 * ring caches, softcaps, one token and prompts, F16 and F32 caches; under
 * every limits profile with the validation layer on, against the double
 * reference of tests/support/op_ref.c. The default profiles run the
 * kernel's subgroup variant (shuffle butterflies) where the device has
 * subgroup shuffles, "nosubgroup" its shared-memory one. Prompts over
 * F16 caches stage V tiles in shared memory where they fit (not at head
 * 512), except under "novtiles".
 *
 * Bound: NMSE 1e-10, as in test_vk_ops.c (F32 sums in another order give
 * ~1e-13; a wrong chunk, mask or merge gives order 1). Every cache row no
 * query of the call may read holds NaN, which would spread. On the
 * unlimited profile the split cases must record two dispatches (the
 * chunks and the reduce) and the others one, so the split is exercised. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if ELM_HAVE_VULKAN
#include "support/op_ref.h"
#include "support/vk_ops_fixture.h"

typedef struct fa_case {
    int cache_type, hd, nh, nkv, n_rows, window;
    bool ring;
    float softcap;
    int pos, T;
    bool split; /* expected on the unlimited profile */
} fa_case;

static const fa_case CASES[] = {
    /* decode over long caches: split */
    {QT_F32, 64, 4, 4, 1100, 0, false, 0.0f, 1050, 1, true},
    {QT_F16, 128, 8, 4, 1100, 0, false, 0.0f, 1099, 1, true},
    {QT_F16, 256, 8, 2, 1040, 0, false, 30.0f, 1000, 1, true},
    {QT_F32, 128, 16, 2, 1200, 0, false, 0.0f, 900, 1, true},
    {QT_F16, 256, 8, 1, 1030, 1024, true, 50.0f, 5000, 1, true},
    {QT_F32, 64, 8, 2, 1200, 600, false, 0.0f, 1100, 1, true},
    {QT_F32, 80, 6, 3, 600, 0, false, 0.0f, 550, 1, true},
    {QT_F16, 64, 4, 2, 1100, 0, false, 0.0f, 255, 1, true}, /* the first split position: half the chunks empty */
    /* prompts: query-row blocks */
    {QT_F16, 128, 8, 2, 1100, 0, false, 0.0f, 1000, 40, false},
    {QT_F32, 256, 4, 4, 300, 256, true, 30.0f, 700, 45, false},
    {QT_F16, 64, 16, 2, 1100, 0, false, 0.0f, 0, 64, false},
    {QT_F32, 128, 8, 8, 200, 50, false, 5.0f, 120, 33, false},
    /* long prompts in full blocks of 16 query rows (one head per block), F16
     * caches, a ring wrapping inside a block; big heads (16 lanes per key
     * at 1024, wider than some subgroups) */
    {QT_F16, 128, 4, 4, 400, 0, false, 0.0f, 20, 100, false},
    {QT_F16, 64, 2, 2, 256, 96, true, 0.0f, 300, 70, false},
    {QT_F16, 512, 4, 2, 96, 0, false, 20.0f, 40, 17, false},
    {QT_F32, 1024, 2, 1, 40, 0, false, 0.0f, 20, 5, false},
    {QT_F16, 256, 2, 1, 64, 0, false, 0.0f, 50, 1, false},
    /* an odd head size: the row kernel */
    {QT_F32, 6, 4, 2, 80, 0, false, 0.0f, 70, 3, false},
};
#define N_CASES (sizeof CASES / sizeof *CASES)

static uint16_t half_bits(float x) {
    return elmi_f32_to_fp16(x);
}

/* Fills the caches with random rows where a query of the call may read and
 * NaN elsewhere; vals receive the values the device holds. */
static void fill_caches(const fa_case *c, uint8_t *raw[2], float *vals[2]) {
    int64_t row_len = (int64_t)c->hd * c->nkv;
    int lo = c->window && c->pos - c->window + 1 > 0 ? c->pos - c->window + 1 : 0;
    for (int i = 0; i < 2; i++)
        for (int64_t r = 0; r < c->n_rows; r++) {
            bool live = false;
            for (int j = lo; j < c->pos + c->T && !live; j++) live = (c->ring ? j % c->n_rows : j) == r;
            for (int64_t e = r * row_len; e < (r + 1) * row_len; e++) {
                float x = live ? frand() : NAN;
                if (c->cache_type == QT_F16) {
                    ((uint16_t *)raw[i])[e] = live ? half_bits(x) : 0x7E00;
                    vals[i][e] = elmi_fp16_to_f32(((uint16_t *)raw[i])[e]);
                } else {
                    ((float *)raw[i])[e] = x;
                    vals[i][e] = x;
                }
            }
        }
}

/* Runs one ATTENTION node; returns its NMSE and the dispatches it recorded. */
static double check_case(vfx *f, const fa_case *c, uint64_t *n_disp) {
    int64_t row_len = (int64_t)c->hd * c->nkv, qrow = (int64_t)c->hd * c->nh, cells = row_len * c->n_rows;
    be_tensor *K = dev_tensor(f, c->cache_type, row_len, c->n_rows, 1, "k_cache");
    be_tensor *V = dev_tensor(f, c->cache_type, row_len, c->n_rows, 1, "v_cache");
    be_tensor *Q = dev_tensor(f, QT_F32, c->hd, c->nh, c->T, "q"), *O = dev_tensor(f, QT_F32, qrow, c->T, 1, "out");
    size_t bytes = elmi_be_tensor_nbytes(K);
    uint8_t *raw[2] = {malloc(bytes), malloc(bytes)};
    float *vals[2] = {malloc(sizeof(float) * cells), malloc(sizeof(float) * cells)};
    fill_caches(c, raw, vals);
    float *q = rand_floats((size_t)(qrow * c->T), 3.0f);
    put(f, K, raw[0]), put(f, V, raw[1]), put(f, Q, q);
    be_node nd = {.op = BE_OP_ATTENTION, .dst = O, .src = {Q, K, V},
                  .iparams = {c->pos, c->nkv, c->window, c->ring},
                  .fparams = {1.0f / sqrtf((float)c->hd), c->softcap}};
    be_vk_stats s0, s1;
    elmi_be_vk_get_stats(f->be, &s0);
    run(f, &nd, 1, c->cache_type == QT_F32);
    elmi_be_vk_get_stats(f->be, &s1);
    *n_disp = s1.n_dispatches - s0.n_dispatches;
    float *got = malloc(sizeof(float) * qrow * c->T);
    double *want = malloc(sizeof(double) * qrow * c->T);
    get(f, O, got);
    elm_ref_attn a = {c->hd, c->nh, c->nkv, c->T, c->pos, c->n_rows, c->window, c->ring,
                      1.0f / sqrtf((float)c->hd), c->softcap};
    elm_ref_attention(&a, q, vals[0], vals[1], want);
    double e = nmse(got, want, (size_t)(qrow * c->T));
    free(raw[0]), free(raw[1]), free(vals[0]), free(vals[1]), free(q), free(got), free(want);
    vfx_reset(f);
    return e;
}

/* Nodes that must run on the CPU: under small-buffers a cache beyond its
 * 1 MiB binding (the cases stay well away from the edge), and in the
 * smallest-memory corner a head of 256, whose row fits no kernel there. */
static uint64_t expected_fallbacks(const char *profile, const fa_case *c) {
    size_t cache = (size_t)c->n_rows * c->hd * c->nkv * (c->cache_type == QT_F16 ? 2 : 4);
    if (!strcmp(profile, "small-buffers")) return cache > (1u << 20);
    if (!strcmp(profile, "max_shared=768,max_invocations=64")) return c->hd >= 256;
    return 0;
}

/* Every case under the given profiles; the dispatch counts on "". */
static void check_profiles(const char *const *profiles, size_t n_profiles) {
    double worst = 0;
    for (size_t p = 0; p < n_profiles; p++) {
        vfx f;
        vfx_open(&f, profiles[p]);
        for (size_t i = 0; i < N_CASES; i++) {
            const fa_case *c = &CASES[i];
            uint64_t n_disp, fb0 = fallbacks(&f);
            double e = check_case(&f, c, &n_disp);
            uint64_t fb = fallbacks(&f) - fb0;
            cr_expect_leq(e, 1e-10, "[%s] case %zu (hd %d, %d/%d heads, %d rows, window %d, ring %d, pos %d, T %d): NMSE %.3g",
                          profiles[p], i, c->hd, c->nh, c->nkv, c->n_rows, c->window, c->ring, c->pos, c->T, e);
            if (e > worst || e != e) worst = e;
            cr_expect_eq(fb, expected_fallbacks(profiles[p], c), "[%s] case %zu: %llu CPU fallbacks", profiles[p], i,
                         (unsigned long long)fb);
            if (!profiles[p][0])
                cr_expect_eq(n_disp, c->split ? 2u : 1u, "case %zu: %llu dispatches, the split %s expected", i,
                             (unsigned long long)n_disp, c->split ? "was" : "was not");
        }
        vfx_close(&f);
    }
    fprintf(stderr, "vk flash ATTENTION: worst NMSE %.2g\n", worst);
}

Test(vk_attention, flash_all_shapes_all_profiles) {
    check_profiles(PROFILES, N_PROFILES);
}

/* Prefill with F16 caches read from the cache instead of V tiles, with
 * both reductions and both 16-bit paths. */
Test(vk_attention, flash_no_v_tiles) {
    static const char *const direct[] = {"novtiles", "novtiles,nosubgroup,nofp16"};
    check_profiles(direct, sizeof direct / sizeof *direct);
}

#else
Test(vk_attention, skipped_without_vulkan) {
    cr_skip_test("built without Vulkan (ELM_HAVE_VULKAN=0)");
}
#endif
