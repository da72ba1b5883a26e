/* test_vk_import.c: host tensors imported in place (VK_EXT_external_memory_host,
 * backends/vulkan/import.c) against the copy path.
 *
 * The weights live in a file written here and memory-mapped read-only,
 * as the engine maps a GGUF file, at offsets that are 32-byte aligned but
 * not page aligned (and one that is not even 4-byte aligned). The same
 * graphs (matrix-vector and matrix-matrix products, row lookups) run on a
 * backend that imports and on one under the `noimport` profile, and must
 * give bit-identical results: both read the same bytes with the same
 * shaders, so any difference is a wrong offset or a wrong range. The
 * results are also checked against a double-precision reference, so
 * agreeing on wrong values fails too. On lavapipe (which has the
 * extension) imported bytes must be > 0; under `noimport` and `discrete`
 * they must be 0. Validation errors fail every test. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if ELM_HAVE_VULKAN
#include "backends/backend.h"
#include "engine/sched.h"
#include "backends/vulkan/vk_backend.h"
#include "support/vk_fixture.h"
#include "quant/quant.h"

/* ------------------------------------------------------- the mapped file */

enum { W_F32, W_Q8, W_Q4, W_EMB, W_TINY, W_ODD, W_BIG, N_W };

typedef struct wspec {
    int type;
    int64_t k, n; /* values per row, rows */
    size_t misalign; /* bytes added to the 32-byte aligned offset */
} wspec;

static const wspec SPECS[N_W] = {
    [W_F32] = {QT_F32, 256, 300, 0},
    [W_Q8] = {QT_Q8_0, 256, 200, 0},
    [W_Q4] = {QT_Q4_0, 512, 64, 0},
    [W_EMB] = {QT_F16, 128, 1000, 0},
    [W_TINY] = {QT_F32, 8, 8, 0},       /* below the import threshold: copied */
    [W_ODD] = {QT_Q8_0, 32, 1000, 2},   /* at an address 2 mod 4: copied */
    [W_BIG] = {QT_F32, 1000, 1100, 0},  /* 4.4 MB: pieces under small-buffers */
};

typedef struct wfile {
    char path[256];
    void *map;
    size_t size;
    size_t offs[N_W], bytes[N_W];
    float *deq[N_W]; /* dequantized rows, the reference's weights */
} wfile;

static uint64_t rng = 0x853C49E6748FEA9Bull;

static float frand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
}

static void wfile_open(wfile *wf) {
    memset(wf, 0, sizeof *wf);
    const char *tmp = getenv("TMPDIR");
    snprintf(wf->path, sizeof wf->path, "%s/edgelm_vk_import_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(wf->path);
    cr_assert_geq(fd, 0, "mkstemp %s", wf->path);
    size_t off = 4000; /* a header, as in GGUF */
    void *blobs[N_W];
    for (int i = 0; i < N_W; i++) {
        const wspec *s = &SPECS[i];
        const qtype_traits *tr = elmi_qtype_get(s->type);
        size_t rb;
        cr_assert(elmi_qtype_row_bytes(s->type, s->k, &rb));
        off = (off + 31) / 32 * 32 + s->misalign;
        wf->offs[i] = off;
        wf->bytes[i] = rb * (size_t)s->n;
        off += wf->bytes[i] + 100;
        float *src = malloc(sizeof(float) * (size_t)(s->k * s->n));
        for (int64_t j = 0; j < s->k * s->n; j++) src[j] = frand();
        uint8_t *q = malloc(wf->bytes[i]);
        wf->deq[i] = malloc(sizeof(float) * (size_t)(s->k * s->n));
        for (int64_t r = 0; r < s->n; r++) {
            tr->from_float(src + r * s->k, q + rb * (size_t)r, s->k);
            tr->to_float(q + rb * (size_t)r, wf->deq[i] + r * s->k, s->k);
        }
        blobs[i] = q;
        free(src);
    }
    wf->size = off + 123;
    uint8_t *img = calloc(1, wf->size);
    for (int i = 0; i < N_W; i++) memcpy(img + wf->offs[i], blobs[i], wf->bytes[i]), free(blobs[i]);
    cr_assert_eq(write(fd, img, wf->size), (ssize_t)wf->size);
    free(img);
    wf->map = mmap(NULL, wf->size, PROT_READ, MAP_PRIVATE, fd, 0);
    cr_assert_neq(wf->map, MAP_FAILED);
    close(fd);
}

/* Unmapped only once no backend that read it lives (backend.h). */
static void wfile_close(wfile *wf) {
    munmap(wf->map, wf->size);
    unlink(wf->path);
    for (int i = 0; i < N_W; i++) free(wf->deq[i]);
}

/* ---------------------------------------------------------------- backend */

typedef struct ifx {
    be_backend *be;
    elm_sched sched; /* CPU fallback nodes, as the engine plans them */
    const be_iface *bi;
    const char *limits;
    elm_device_info info;
    char err[1024];
} ifx;

static void ifx_open(ifx *f, const char *limits) {
    memset(f, 0, sizeof *f);
    f->be = vk_test_open(limits, f->err, sizeof f->err);
    f->bi = f->be->iface;
    f->limits = limits;
    elmi_sched_init(&f->sched, f->be, false, 1, false);
    cr_assert_eq(elmi_be_vk_device_info(f->be, &f->info), ELM_OK);
}

static void ifx_close(ifx *f) {
    uint64_t errors = elmi_be_vk_validation_errors(f->be);
    elmi_sched_free(&f->sched);
    be_free(f->be);
    cr_assert_eq(errors, 0, "[%s] %llu validation errors", f->limits, (unsigned long long)errors);
}

static bool is_lavapipe(const ifx *f) {
    return strstr(f->info.name, "llvmpipe") != NULL;
}

static be_vk_stats stats(ifx *f) {
    be_vk_stats s;
    cr_assert_eq(elmi_be_vk_get_stats(f->be, &s), ELM_OK);
    return s;
}

/* ------------------------------------------------------------------ graphs */

#define T_MAX 5

/* Results of one backend: per weight, products with T_MAX tokens (and with
 * one token), and for the embedding table a row lookup. */
typedef struct results {
    float *mm[N_W], *mv[N_W], *rows;
    uint64_t fallbacks;
} results;

static float act[1000 * T_MAX];
static const int32_t IDS[4] = {0, 999, 517, 3};

static void make_inputs(void) {
    for (size_t i = 0; i < sizeof act / sizeof *act; i++) act[i] = frand();
}

static be_buffer *alloc(ifx *f, size_t n) {
    be_buffer *b;
    cr_assert_eq(f->bi->buffer_alloc(f->be, n, NULL, &b), ELM_OK, "[%s] %s", f->limits, elmi_be_vk_last_error(f->be));
    return b;
}

static void weight_tensor(const wfile *wf, int i, be_tensor *t) {
    cr_assert(elmi_be_tensor_init(t, SPECS[i].type, SPECS[i].k, SPECS[i].n, 1, 1, "w"));
    t->data = (char *)wf->map + wf->offs[i];
}

/* dst (n, T) = W x (k, T) on the device; returns the host copy. */
static float *mul_mat(ifx *f, const wfile *wf, int i, int64_t T) {
    const wspec *s = &SPECS[i];
    be_tensor w, x, d;
    weight_tensor(wf, i, &w);
    cr_assert(elmi_be_tensor_init(&x, QT_F32, s->k, T, 1, 1, "x"));
    cr_assert(elmi_be_tensor_init(&d, QT_F32, s->n, T, 1, 1, "d"));
    x.buf = alloc(f, elmi_be_tensor_nbytes(&x));
    d.buf = alloc(f, elmi_be_tensor_nbytes(&d));
    cr_assert_eq(f->bi->tensor_set(f->be, &x, act, 0, elmi_be_tensor_nbytes(&x)), ELM_OK);
    be_node nd = {.op = BE_OP_MUL_MAT, .dst = &d, .src = {&w, &x}};
    be_graph g = {.nodes = &nd, .n_nodes = 1, .exact = true};
    cr_assert_eq(elmi_sched_compute(&f->sched, &g, false, f->err, sizeof f->err), ELM_OK, "[%s] %s", f->limits,
                 f->err);
    float *out = malloc(elmi_be_tensor_nbytes(&d));
    cr_assert_eq(f->bi->tensor_get(f->be, &d, out, 0, elmi_be_tensor_nbytes(&d)), ELM_OK);
    f->bi->buffer_free(f->be, x.buf);
    f->bi->buffer_free(f->be, d.buf);
    return out;
}

static float *get_rows(ifx *f, const wfile *wf, int i) {
    be_tensor w, ids, d;
    weight_tensor(wf, i, &w);
    cr_assert(elmi_be_tensor_init(&ids, BE_TYPE_I32, 4, 1, 1, 1, "ids"));
    cr_assert(elmi_be_tensor_init(&d, QT_F32, SPECS[i].k, 4, 1, 1, "d"));
    ids.buf = alloc(f, 16);
    d.buf = alloc(f, elmi_be_tensor_nbytes(&d));
    cr_assert_eq(f->bi->tensor_set(f->be, &ids, IDS, 0, sizeof IDS), ELM_OK);
    be_node nd = {.op = BE_OP_GET_ROWS, .dst = &d, .src = {&w, &ids}};
    be_graph g = {.nodes = &nd, .n_nodes = 1, .exact = true};
    cr_assert_eq(elmi_sched_compute(&f->sched, &g, false, f->err, sizeof f->err), ELM_OK, "[%s] %s", f->limits,
                 f->err);
    float *out = malloc(elmi_be_tensor_nbytes(&d));
    cr_assert_eq(f->bi->tensor_get(f->be, &d, out, 0, elmi_be_tensor_nbytes(&d)), ELM_OK);
    f->bi->buffer_free(f->be, ids.buf);
    f->bi->buffer_free(f->be, d.buf);
    return out;
}

static void run_all(ifx *f, const wfile *wf, results *r) {
    memset(r, 0, sizeof *r);
    for (int i = 0; i < N_W; i++) {
        r->mm[i] = mul_mat(f, wf, i, T_MAX);
        r->mv[i] = mul_mat(f, wf, i, 1);
    }
    r->rows = get_rows(f, wf, W_EMB);
    r->fallbacks = f->sched.n_fallback_nodes;
}

static void results_free(results *r) {
    for (int i = 0; i < N_W; i++) free(r->mm[i]), free(r->mv[i]);
    free(r->rows);
}

/* Against double sums over the dequantized weights: NMSE below 1e-10. */
static void check_reference(const char *limits, const wfile *wf, const results *r) {
    for (int i = 0; i < N_W; i++) {
        const wspec *s = &SPECS[i];
        double num = 0, den = 0;
        for (int64_t t = 0; t < T_MAX; t++)
            for (int64_t n = 0; n < s->n; n++) {
                double want = 0;
                for (int64_t k = 0; k < s->k; k++) want += (double)wf->deq[i][n * s->k + k] * act[t * s->k + k];
                double d = r->mm[i][t * s->n + n] - want;
                num += d * d, den += want * want;
                if (t == 0) num += (r->mv[i][n] - want) * (r->mv[i][n] - want), den += want * want;
            }
        cr_assert_lt(num / den, 1e-10, "[%s] weight %d: NMSE %.3g", limits, i, num / den);
    }
    for (int j = 0; j < 4; j++)
        for (int64_t k = 0; k < SPECS[W_EMB].k; k++)
            cr_assert_eq(r->rows[j * SPECS[W_EMB].k + k], wf->deq[W_EMB][IDS[j] * SPECS[W_EMB].k + k]);
}

static void check_identical(const char *what, const results *a, const results *b) {
    for (int i = 0; i < N_W; i++) {
        size_t n = (size_t)SPECS[i].n;
        cr_assert_arr_eq(a->mm[i], b->mm[i], n * T_MAX * sizeof(float), "%s: weight %d, %d tokens differ", what, i,
                         T_MAX);
        cr_assert_arr_eq(a->mv[i], b->mv[i], n * sizeof(float), "%s: weight %d, one token differs", what, i);
    }
    cr_assert_arr_eq(a->rows, b->rows, 4 * SPECS[W_EMB].k * sizeof(float), "%s: rows differ", what);
}

static uint64_t total_bytes(const wfile *wf) {
    uint64_t t = 0;
    for (int i = 0; i < N_W; i++) t += wf->bytes[i];
    return t;
}

/* One profile with and without import: identical results, both right, and
 * the bytes accounted to the path each weight took. */
static void compare(const char *limits, const char *limits_noimport, bool want_import) {
    wfile wf;
    wfile_open(&wf);
    make_inputs();
    ifx a, b;
    results ra, rb;
    ifx_open(&a, limits);
    run_all(&a, &wf, &ra);
    be_vk_stats sa = stats(&a);
    ifx_open(&b, limits_noimport);
    run_all(&b, &wf, &rb);
    be_vk_stats sb = stats(&b);
    check_reference(limits, &wf, &ra);
    check_identical(limits, &ra, &rb);
    cr_assert_eq(ra.fallbacks, rb.fallbacks, "[%s] import changed what runs on the CPU", limits);
    cr_assert_eq(sa.weight_bytes, total_bytes(&wf), "[%s] weight bytes %llu", limits,
                 (unsigned long long)sa.weight_bytes);
    cr_assert_eq(sa.weight_import_bytes + sa.weight_copy_bytes, sa.weight_bytes);
    cr_assert_eq(sb.weight_import_bytes, 0, "[%s] imported under noimport", limits_noimport);
    cr_assert_eq(sb.weight_copy_bytes, total_bytes(&wf));
    fprintf(stderr, "vk import [%s] on %s: imported %llu, copied %llu bytes; device memory %llu vs %llu\n", limits,
            a.info.name, (unsigned long long)sa.weight_import_bytes, (unsigned long long)sa.weight_copy_bytes,
            (unsigned long long)sa.device_bytes, (unsigned long long)sb.device_bytes);
    if (want_import && is_lavapipe(&a)) {
        /* Everything but the tiny tensor and the one at an address 2 mod 4. */
        uint64_t want = total_bytes(&wf) - wf.bytes[W_TINY] - wf.bytes[W_ODD];
        cr_assert_eq(sa.weight_import_bytes, want, "[%s] imported %llu bytes, want %llu", limits,
                     (unsigned long long)sa.weight_import_bytes, (unsigned long long)want);
        cr_assert_lt(sa.device_bytes + sa.weight_import_bytes, sb.device_bytes + 65536,
                     "[%s] imported weights must not take device memory", limits);
    }
    if (!want_import) cr_assert_eq(sa.weight_import_bytes, 0, "[%s] imported", limits);
    results_free(&ra), results_free(&rb);
    ifx_close(&a), ifx_close(&b);
    wfile_close(&wf);
}

/* ------------------------------------------------------------------ tests */

Test(vk_import, default_profile_imports_and_matches_copies) {
    compare("", "noimport", true);
}

/* 1 MiB allocations and bindings: the 4.4 MB weight is imported in
 * pieces (each with its own alignment slack), cut smaller than the copy's
 * pieces so that the slack fits. */
Test(vk_import, pieces_under_small_buffers) {
    compare("small-buffers", "small-buffers,noimport", true);
}

Test(vk_import, shared_memory_paths_and_word_loads) {
    compare("nofp16,nosubgroup,pi5", "nofp16,nosubgroup,pi5,noimport", true);
}

/* Never on a (emulated) discrete GPU: it would read the weights over the bus. */
Test(vk_import, discrete_profile_copies) {
    compare("discrete", "discrete,noimport", false);
}

/* Released weights are imported again; the backend frees its imports
 * before the mapping goes away. */
Test(vk_import, release_and_import_again) {
    wfile wf;
    wfile_open(&wf);
    make_inputs();
    ifx f;
    ifx_open(&f, "");
    float *first = mul_mat(&f, &wf, W_Q8, 3);
    uint64_t imported = stats(&f).weight_import_bytes;
    elmi_be_vk_release_weights(f.be);
    cr_assert_eq(stats(&f).n_weights, 0);
    float *again = mul_mat(&f, &wf, W_Q8, 3);
    cr_assert_arr_eq(first, again, sizeof(float) * (size_t)SPECS[W_Q8].n * 3);
    const wspec *s = &SPECS[W_Q8];
    for (int64_t t = 0; t < 3; t++)
        for (int64_t n = 0; n < s->n; n++) {
            double want = 0;
            for (int64_t k = 0; k < s->k; k++) want += (double)wf.deq[W_Q8][n * s->k + k] * act[t * s->k + k];
            cr_assert(fabs(again[t * s->n + n] - want) <= 1e-4 * (1.0 + fabs(want)), "row %lld token %lld: %g, want %g",
                      (long long)n, (long long)t, again[t * s->n + n], want);
        }
    cr_assert_eq(stats(&f).weight_import_bytes, 2 * imported);
    if (is_lavapipe(&f)) cr_assert_eq(imported, wf.bytes[W_Q8]);
    free(first), free(again);
    ifx_close(&f);
    wfile_close(&wf);
}

#else

Test(vk_import, vulkan_not_built) {
    cr_skip_test("built without Vulkan (ELM_HAVE_VULKAN=0)");
}

#endif
