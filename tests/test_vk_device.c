/* test_vk_device.c: the Vulkan backend's device layer: listing, selection,
 * limits profiles, buffers and transfers (mapped and staged, segmented),
 * out-of-memory reports, and the persistent pipeline cache (reuse, and
 * corrupted or foreign files discarded). Every backend runs with the
 * validation layer, and no test passes with a validation error. Tests skip
 * only when no Vulkan device exists at all. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if ELM_HAVE_VULKAN
#include <sys/stat.h>
#include <unistd.h>

#include "backends/backend.h"
#include "backends/vulkan/spirv.h"
#include "backends/vulkan/vk_backend.h"
#include "quant/quant.h"
#include "support/paths.h"

static size_t n_devices(void) {
    size_t n = 0;
    char err[256];
    cr_assert_eq(elmi_be_vk_enumerate(NULL, 0, &n, err, sizeof err), ELM_OK, "%s", err);
    return n;
}

static void need_device(void) {
    if (n_devices() == 0) cr_skip_test("no Vulkan device");
}

static be_backend *open_be(const char *limits, const char *cache_dir) {
    be_vk_options o = elmi_be_vk_default_options();
    o.limits = limits ? limits : "";
    o.cache_dir = cache_dir ? cache_dir : "";
    o.validation = 1;
    o.quiet = true;
    be_backend *be = NULL;
    char err[512];
    elm_status st = elmi_be_vk_new(&o, &be, err, sizeof err);
    cr_assert_eq(st, ELM_OK, "elmi_be_vk_new(%s): %s", limits, err);
    return be;
}

static void close_be(be_backend *be) {
    uint64_t errors = elmi_be_vk_validation_errors(be);
    be_free(be);
    cr_assert_eq(errors, 0, "%llu validation errors", (unsigned long long)errors);
}

/* ----------------------------------------------------------------- listing */

Test(vk_device, enumerate_lists_sane_devices) {
    need_device();
    elm_device_info info[8];
    info[0].struct_size = sizeof info[0];
    size_t n = 0;
    char err[256];
    cr_assert_eq(elmi_be_vk_enumerate(info, 8, &n, err, sizeof err), ELM_OK);
    for (size_t i = 0; i < n && i < 8; i++) {
        char id[32];
        snprintf(id, sizeof id, "vulkan:%zu", i);
        cr_expect_str_eq(info[i].id, id);
        cr_expect_str_eq(info[i].backend, "vulkan");
        cr_expect_gt(strlen(info[i].name), 0);
        cr_expect_gt(strlen(info[i].driver), 0);
        cr_expect_geq(info[i].api_version, (1u << 22) | (1u << 12), "below Vulkan 1.1");
        cr_expect_geq(info[i].subgroup_size, 1);
        cr_expect_geq(info[i].shared_memory_bytes, 16384);
        cr_expect_gt(info[i].max_storage_buffer_range, 0);
        cr_expect_gt(info[i].max_memory_allocation_size, 0);
        cr_expect_gt(info[i].n_heaps, 0);
        cr_expect_gt(info[i].heap_size[0], 0);
    }
}

Test(vk_device, missing_driver_lists_nothing) {
    /* Criterion runs each test in its own process, so this stays here. */
    setenv("VK_ICD_FILENAMES", "/nonexistent/icd.json", 1);
    setenv("VK_DRIVER_FILES", "/nonexistent/icd.json", 1);
    elm_device_info info[4];
    info[0].struct_size = sizeof info[0];
    size_t n = 99;
    char err[256];
    cr_assert_eq(elmi_be_vk_enumerate(info, 4, &n, err, sizeof err), ELM_OK);
    cr_assert_eq(n, 0);
    int index = 7;
    cr_assert_eq(elmi_be_vk_select("vulkan", &index), ELM_OK);
    cr_assert_eq(index, -1);
    be_backend *be = NULL;
    be_vk_options o = elmi_be_vk_default_options();
    o.limits = "";
    o.cache_dir = "";
    cr_assert_neq(elmi_be_vk_new(&o, &be, err, sizeof err), ELM_OK);
    cr_assert_null(be);
    cr_assert_gt(strlen(err), 0);
}

Test(vk_device, limits_profiles_shape_the_listing) {
    need_device();
    elm_device_info base, lim;
    size_t n;
    char err[256];
    unsetenv("EDGELM_VK_LIMITS");
    cr_assert_eq(elmi_be_vk_enumerate(&base, 1, &n, err, sizeof err), ELM_OK);
    setenv("EDGELM_VK_LIMITS", "pi5,nofp16,nosubgroup,small-buffers", 1);
    setenv("EDGELM_VK_MAX_SHARED", "8192", 1);
    cr_assert_eq(elmi_be_vk_enumerate(&lim, 1, &n, err, sizeof err), ELM_OK, "%s", err);
    cr_expect_leq(lim.shared_memory_bytes, 8192);
    cr_expect_leq(lim.max_storage_buffer_range, 1 << 20);
    cr_expect_leq(lim.max_memory_allocation_size, 1 << 20);
    cr_expect_not(lim.fp16);
    cr_expect_not(lim.storage16);
    cr_expect_not(lim.subgroup_arithmetic);
    cr_expect_str_eq(lim.name, base.name);
    setenv("EDGELM_VK_LIMITS", "mali", 1);
    unsetenv("EDGELM_VK_MAX_SHARED");
    cr_assert_eq(elmi_be_vk_enumerate(&lim, 1, &n, err, sizeof err), ELM_OK);
    cr_expect_not(lim.storage8);
    cr_expect_leq(lim.shared_memory_bytes, 32768);
    setenv("EDGELM_VK_LIMITS", "pi5,warp-drive", 1);
    cr_expect_eq(elmi_be_vk_enumerate(&lim, 1, &n, err, sizeof err), ELM_ERR_INVALID_ARG);
    cr_expect(strstr(err, "warp-drive"), "%s", err);
    setenv("EDGELM_VK_LIMITS", "max_shared=abc", 1);
    cr_expect_eq(elmi_be_vk_enumerate(&lim, 1, &n, err, sizeof err), ELM_ERR_INVALID_ARG);
}

Test(vk_device, select_rules) {
    need_device();
    elm_device_info info[16];
    info[0].struct_size = sizeof info[0];
    size_t n;
    char err[256];
    cr_assert_eq(elmi_be_vk_enumerate(info, 16, &n, err, sizeof err), ELM_OK);
    int idx = -2;
    cr_assert_eq(elmi_be_vk_select("vulkan:0", &idx), ELM_OK);
    cr_expect_eq(idx, 0);
    char spec[32];
    snprintf(spec, sizeof spec, "vulkan:%zu", n);
    cr_expect_eq(elmi_be_vk_select(spec, &idx), ELM_ERR_INVALID_ARG);
    cr_expect_eq(elmi_be_vk_select("vulkan:x", &idx), ELM_ERR_INVALID_ARG);
    cr_expect_eq(elmi_be_vk_select("cuda", &idx), ELM_ERR_INVALID_ARG);
    /* "vulkan": the first GPU, else the first device. */
    int want = -1;
    for (size_t i = 0; i < n && want < 0; i++)
        if (strcmp(info[i].type, "cpu")) want = (int)i;
    if (want < 0) want = 0;
    cr_assert_eq(elmi_be_vk_select("vulkan", &idx), ELM_OK);
    cr_expect_eq(idx, want);
    /* "auto": discrete, then integrated, then other GPUs; never a CPU device. */
    cr_assert_eq(elmi_be_vk_select("auto", &idx), ELM_OK);
    if (idx >= 0) {
        cr_expect_str_neq(info[idx].type, "cpu");
        for (size_t i = 0; i < n; i++)
            if (!strcmp(info[i].type, "discrete")) cr_expect_str_eq(info[idx].type, "discrete");
    } else {
        for (size_t i = 0; i < n; i++) cr_expect_str_eq(info[i].type, "cpu");
    }
}

Test(vk_device, bad_options_fail_cleanly) {
    need_device();
    be_vk_options o = elmi_be_vk_default_options();
    o.cache_dir = "";
    o.quiet = true;
    o.device = 1000;
    be_backend *be = (be_backend *)1;
    char err[256];
    cr_expect_eq(elmi_be_vk_new(&o, &be, err, sizeof err), ELM_ERR_INVALID_ARG);
    cr_expect_null(be);
    o.device = -1;
    o.limits = "tiny";
    cr_expect_eq(elmi_be_vk_new(&o, &be, err, sizeof err), ELM_ERR_INVALID_ARG);
}

/* ----------------------------------------------------------------- buffers */

static void fill_pattern(uint8_t *p, size_t n, uint32_t seed) {
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)((i * 2654435761u + seed) >> 13);
}

/* Writes and reads back, whole and in pieces that cross segment boundaries. */
static void roundtrip(be_backend *be, size_t size) {
    const be_iface *bi = be->iface;
    be_buffer *buf;
    cr_assert_eq(bi->buffer_alloc(be, size, NULL, &buf), ELM_OK, "%s", elmi_be_vk_last_error(be));
    be_tensor t;
    cr_assert(elmi_be_tensor_init(&t, QT_F32, (int64_t)(size / 4), 1, 1, 1, "blob"));
    t.buf = buf;
    uint8_t *src = malloc(size), *dst = malloc(size);
    fill_pattern(src, size, 7);
    cr_assert_eq(bi->tensor_set(be, &t, src, 0, size), ELM_OK, "%s", elmi_be_vk_last_error(be));
    memset(dst, 0, size);
    cr_assert_eq(bi->tensor_get(be, &t, dst, 0, size), ELM_OK);
    cr_assert_eq(memcmp(src, dst, size), 0);
    size_t off = size / 3 + 1, len = size / 2;
    fill_pattern(src + off, len, 99);
    cr_assert_eq(bi->tensor_set(be, &t, src + off, off, len), ELM_OK);
    cr_assert_eq(bi->tensor_get(be, &t, dst + 5, 5, size - 9), ELM_OK);
    cr_assert_eq(memcmp(src + 5, dst + 5, size - 9), 0);
    cr_expect_neq(bi->tensor_set(be, &t, src, size - 3, 8), ELM_OK, "past the end");
    free(src);
    free(dst);
    bi->buffer_free(be, buf);
}

Test(vk_device, buffer_roundtrips_mapped_staged_segmented) {
    need_device();
    const char *profiles[] = {"", "discrete", "small-buffers", "small-buffers,discrete"};
    for (size_t i = 0; i < sizeof profiles / sizeof *profiles; i++) {
        be_backend *be = open_be(profiles[i], NULL);
        roundtrip(be, 4096 + 8);
        roundtrip(be, (3u << 20) + (1u << 19) + 12); /* 3.5 MiB: several segments under small-buffers */
        be_buffer *buf;
        cr_assert_eq(be->iface->buffer_alloc(be, 1024, NULL, &buf), ELM_OK);
        elm_device_info info = ELM_INIT(elm_device_info);
        elmi_be_vk_device_info(be, &info);
        if (strstr(profiles[i], "discrete")) cr_expect_null(be->iface->buffer_host(be, buf));
        else if (info.uma) cr_expect_not_null(be->iface->buffer_host(be, buf));
        be->iface->buffer_free(be, buf);
        close_be(be);
    }
}

Test(vk_device, buffer_from_host_pointer_and_zeroed) {
    need_device();
    be_backend *be = open_be("discrete", NULL);
    uint8_t src[1000];
    fill_pattern(src, sizeof src, 3);
    be_buffer *buf;
    cr_assert_eq(be->iface->buffer_alloc(be, sizeof src, src, &buf), ELM_OK);
    be_tensor t;
    elmi_be_tensor_init(&t, QT_F32, 250, 1, 1, 1, "w");
    t.buf = buf;
    uint8_t back[1000];
    cr_assert_eq(be->iface->tensor_get(be, &t, back, 0, sizeof back), ELM_OK);
    cr_assert_eq(memcmp(src, back, sizeof src), 0);
    be->iface->buffer_free(be, buf);
    cr_assert_eq(be->iface->buffer_alloc(be, sizeof src, NULL, &buf), ELM_OK);
    t.buf = buf;
    cr_assert_eq(be->iface->tensor_get(be, &t, back, 0, sizeof back), ELM_OK);
    for (size_t i = 0; i < sizeof back; i++) cr_assert_eq(back[i], 0, "byte %zu not zeroed", i);
    be->iface->buffer_free(be, buf);
    close_be(be);
}

Test(vk_device, out_of_device_memory_is_reported) {
    need_device();
    be_backend *be = open_be("", NULL);
    elm_device_info info = ELM_INIT(elm_device_info);
    elmi_be_vk_device_info(be, &info);
    uint64_t most = 0;
    for (uint32_t i = 0; i < info.n_heaps; i++)
        if (info.heap_size[i] > most) most = info.heap_size[i];
    be_buffer *buf = (be_buffer *)1;
    elm_status st = be->iface->buffer_alloc(be, (size_t)(most * 2), NULL, &buf);
    cr_expect_eq(st, ELM_ERR_NO_MEMORY);
    cr_expect_null(buf);
    cr_expect(strstr(elmi_be_vk_last_error(be), "bytes"), "message: %s", elmi_be_vk_last_error(be));
    /* Still usable afterwards. */
    roundtrip(be, 256);
    close_be(be);
}

/* ---------------------------------------------------------- pipeline cache */

/* A one-node graph (RMS_NORM of 64 values) that creates a pipeline. */
static void run_small_graph(be_backend *be) {
    const be_iface *bi = be->iface;
    be_buffer *buf;
    cr_assert_eq(bi->buffer_alloc(be, 3 * 256, NULL, &buf), ELM_OK);
    be_tensor x, w, y;
    elmi_be_tensor_init(&x, QT_F32, 64, 1, 1, 1, "x");
    elmi_be_tensor_init(&w, QT_F32, 64, 1, 1, 1, "w");
    elmi_be_tensor_init(&y, QT_F32, 64, 1, 1, 1, "y");
    x.buf = w.buf = y.buf = buf;
    w.offs = 256, y.offs = 512;
    float v[64], out[64];
    for (int i = 0; i < 64; i++) v[i] = (float)(i % 7) - 3.0f;
    bi->tensor_set(be, &x, v, 0, sizeof v);
    for (int i = 0; i < 64; i++) v[i] = 2.0f;
    bi->tensor_set(be, &w, v, 0, sizeof v);
    be_node nd = {.op = BE_OP_RMS_NORM, .dst = &y, .src = {&x, &w}, .fparams = {1e-6f}};
    be_graph g = {.nodes = &nd, .n_nodes = 1, .exact = true};
    char err[256];
    cr_assert_eq(bi->graph_compute(be, &g, err, sizeof err), ELM_OK, "%s", err);
    bi->tensor_get(be, &y, out, 0, sizeof out);
    double ss = 0;
    for (int i = 0; i < 64; i++) ss += ((i % 7) - 3.0) * ((i % 7) - 3.0);
    double scale = 1.0 / sqrt(ss / 64 + 1e-6);
    for (int i = 0; i < 64; i++) cr_assert_float_eq(out[i], ((i % 7) - 3.0) * scale * 2, 1e-5);
    bi->buffer_free(be, buf);
}

static void make_cache_dir(char *dir, size_t n, const char *name) {
    snprintf(dir, n, "%s/%s", test_tmp_dir(), name);
    mkdir(dir, 0755);
}

static char *cache_file(be_backend *be) {
    be_vk_stats s;
    elmi_be_vk_get_stats(be, &s);
    return strdup(s.cache_path);
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(p, 1, n, f), n);
    fclose(f);
}

static uint64_t fnv1a(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

Test(vk_device, pipeline_cache_persists_and_bad_files_are_discarded) {
    need_device();
    char dir[512];
    make_cache_dir(dir, sizeof dir, "pcache");
    /* First backend: no file yet; creates pipelines and writes the file on free. */
    be_backend *be = open_be("", dir);
    be_vk_stats s;
    elmi_be_vk_get_stats(be, &s);
    cr_expect_not(s.cache_loaded);
    run_small_graph(be);
    elmi_be_vk_get_stats(be, &s);
    cr_expect_geq(s.n_pipelines, 1);
    cr_expect_geq(s.pipeline_ms, 0.0);
    char *path = cache_file(be);
    close_be(be);
    size_t len = 0;
    uint8_t *file = (uint8_t *)test_read_file(path, &len);
    cr_assert_not_null(file, "no cache file at %s", path);
    cr_assert_geq(len, 24 + 32);

    /* Second backend: the file is validated and seeds the pipeline cache. */
    be = open_be("", dir);
    elmi_be_vk_get_stats(be, &s);
    cr_expect(s.cache_loaded, "not loaded: %s", s.cache_note);
    cr_expect_eq(s.cache_load_bytes, len - 24);
    run_small_graph(be);
    close_be(be);

    /* A flipped byte in the driver's data: checksum mismatch, discarded. */
    uint8_t *bad = malloc(len);
    memcpy(bad, file, len);
    bad[len - 1] ^= 0x5A;
    write_bytes(path, bad, len);
    be = open_be("", dir);
    elmi_be_vk_get_stats(be, &s);
    cr_expect_not(s.cache_loaded);
    cr_expect(s.cache_rejected);
    cr_expect(strstr(s.cache_note, "corrupted"), "%s", s.cache_note);
    run_small_graph(be);
    close_be(be);

    /* A consistent file from "another device": the vendorID differs. */
    memcpy(bad, file, len);
    bad[24 + 8] ^= 0xFF;
    uint64_t h = fnv1a(bad + 24, len - 24);
    for (int i = 0; i < 8; i++) bad[16 + i] = (uint8_t)(h >> (8 * i));
    write_bytes(path, bad, len);
    be = open_be("", dir);
    elmi_be_vk_get_stats(be, &s);
    cr_expect_not(s.cache_loaded);
    cr_expect(strstr(s.cache_note, "another device"), "%s", s.cache_note);
    run_small_graph(be);
    close_be(be);

    /* Garbage and a truncated file. */
    write_bytes(path, "not a cache", 11);
    be = open_be("", dir);
    elmi_be_vk_get_stats(be, &s);
    cr_expect_not(s.cache_loaded);
    cr_expect(s.cache_rejected);
    close_be(be);
    write_bytes(path, file, len / 2);
    be = open_be("", dir);
    elmi_be_vk_get_stats(be, &s);
    cr_expect_not(s.cache_loaded);
    close_be(be);

    /* The last backend rewrote a good file. */
    free(file);
    file = (uint8_t *)test_read_file(path, &len);
    cr_assert_not_null(file);
    be = open_be("", dir);
    elmi_be_vk_get_stats(be, &s);
    cr_expect(s.cache_loaded, "%s", s.cache_note);
    close_be(be);
    free(bad);
    free(file);
    free(path);
}

Test(vk_device, validation_layer_active_in_tests) {
    need_device();
    be_backend *be = open_be("", NULL);
    if (!elmi_be_vk_validation_enabled(be))
        cr_log_warn("VK_LAYER_KHRONOS_validation is not installed: validation checks are vacuous");
    run_small_graph(be);
    close_be(be);
}

/* ------------------------------------------------------- device-side copy */

/* elmi_be_vk_copy_buffer (bench --ops) copies every byte, across segments of
 * different sizes and through staging, and reports a positive time. */
Test(vk_device, device_copy_across_segments) {
    need_device();
    static const char *const limits[] = {"", "small-buffers", "small-buffers,discrete"};
    for (size_t l = 0; l < 3; l++) {
        be_backend *be = open_be(limits[l], NULL);
        const be_iface *bi = be->iface;
        const size_t size = (3u << 20) + 4100; /* four 1 MiB segments under small-buffers */
        be_buffer *src, *dst, *small;
        cr_assert_eq(bi->buffer_alloc(be, size, NULL, &src), ELM_OK);
        cr_assert_eq(bi->buffer_alloc(be, size + 1000, NULL, &dst), ELM_OK);
        cr_assert_eq(bi->buffer_alloc(be, 64, NULL, &small), ELM_OK);
        uint8_t *in = malloc(size), *out = malloc(size + 1000);
        fill_pattern(in, size, 11 + (uint32_t)l);
        be_tensor t;
        /* Whole-buffer byte access through a 1-D I32 view of the buffer. */
        elmi_be_tensor_init(&t, BE_TYPE_I32, (int64_t)(size / 4), 1, 1, 1, "src");
        t.buf = src;
        cr_assert_eq(bi->tensor_set(be, &t, in, 0, size), ELM_OK, "[%s] %s", limits[l],
                     elmi_be_vk_last_error(be));
        double ms = 0;
        cr_assert_eq(elmi_be_vk_copy_buffer(be, dst, src, size, 3, &ms), ELM_OK, "[%s] %s", limits[l],
                     elmi_be_vk_last_error(be));
        cr_expect_gt(ms, 0, "[%s] no time", limits[l]);
        t.buf = dst;
        cr_assert_eq(bi->tensor_get(be, &t, out, 0, size), ELM_OK);
        cr_expect(memcmp(in, out, size) == 0, "[%s] the copy differs", limits[l]);
        /* Misuse fails cleanly. */
        cr_expect_eq(elmi_be_vk_copy_buffer(be, small, src, size, 1, &ms), ELM_ERR_INVALID_ARG);
        cr_expect_eq(elmi_be_vk_copy_buffer(be, src, src, 64, 1, &ms), ELM_ERR_INVALID_ARG);
        cr_expect_eq(elmi_be_vk_copy_buffer(be, dst, src, size, 0, &ms), ELM_ERR_INVALID_ARG);
        free(in), free(out);
        bi->buffer_free(be, src), bi->buffer_free(be, dst), bi->buffer_free(be, small);
        close_be(be);
    }
}

/* ------------------------------------------------------ injected device loss */

/* EDGELM_VK_FAULT_AFTER=N: the first N graph submissions succeed, the next
 * reports the device lost; afterwards every entry point fails with
 * ELM_ERR_DEVICE (nothing crashes, nothing touches the device), freeing
 * works, and the validation layer saw nothing wrong. */
Test(vk_device, injected_device_loss_fails_cleanly) {
    need_device();
    static const char *const limits[] = {"", "discrete"};
    for (size_t l = 0; l < 2; l++) {
        setenv("EDGELM_VK_FAULT_AFTER", "2", 1);
        be_backend *be = open_be(limits[l], NULL);
        unsetenv("EDGELM_VK_FAULT_AFTER");
        const be_iface *bi = be->iface;
        run_small_graph(be);
        run_small_graph(be);
        be_buffer *buf;
        cr_assert_eq(bi->buffer_alloc(be, 3 * 256, NULL, &buf), ELM_OK);
        be_tensor x, w, y;
        elmi_be_tensor_init(&x, QT_F32, 64, 1, 1, 1, "x");
        elmi_be_tensor_init(&w, QT_F32, 64, 1, 1, 1, "w");
        elmi_be_tensor_init(&y, QT_F32, 64, 1, 1, 1, "y");
        x.buf = w.buf = y.buf = buf;
        w.offs = 256, y.offs = 512;
        be_node nd = {.op = BE_OP_RMS_NORM, .dst = &y, .src = {&x, &w}, .fparams = {1e-6f}};
        be_graph g = {.nodes = &nd, .n_nodes = 1, .exact = true};
        char err[512] = "";
        cr_expect_eq(bi->graph_compute(be, &g, err, sizeof err), ELM_ERR_DEVICE, "[%s]", limits[l]);
        cr_expect(strstr(err, "VK_ERROR_DEVICE_LOST") && strstr(err, "EDGELM_VK_FAULT_AFTER"),
                  "[%s] message: %s", limits[l], err);
        float v[64] = {0};
        be_buffer *more = (be_buffer *)1;
        cr_expect_eq(bi->graph_compute(be, &g, err, sizeof err), ELM_ERR_DEVICE);
        cr_expect_eq(bi->graph_prepare(be, &g, err, sizeof err), ELM_ERR_DEVICE);
        cr_expect_eq(bi->tensor_set(be, &x, v, 0, sizeof v), ELM_ERR_DEVICE);
        cr_expect_eq(bi->tensor_get(be, &y, v, 0, sizeof v), ELM_ERR_DEVICE);
        cr_expect_eq(bi->buffer_alloc(be, 256, NULL, &more), ELM_ERR_DEVICE);
        cr_expect_null(more);
        bi->buffer_free(be, buf);
        close_be(be);
    }
    /* A malformed value is refused. */
    setenv("EDGELM_VK_FAULT_AFTER", "-1", 1);
    be_vk_options o = elmi_be_vk_default_options();
    o.cache_dir = "";
    o.quiet = true;
    be_backend *be = NULL;
    char err[256] = "";
    cr_expect_eq(elmi_be_vk_new(&o, &be, err, sizeof err), ELM_ERR_INVALID_ARG);
    cr_expect_null(be);
    cr_expect(strstr(err, "EDGELM_VK_FAULT_AFTER"), "message: %s", err);
    unsetenv("EDGELM_VK_FAULT_AFTER");
}

#else /* no Vulkan in this build */

Test(vk_device, vulkan_not_built) {
    cr_skip_test("built without Vulkan (ELM_HAVE_VULKAN=0)");
}

#endif

/* ------------------------------------------------------ split weights */

/* Whether the module declares specialization constant `id` (an OpDecorate
 * SpecId in its SPIR-V). */
static bool declares_spec_id(const elmi_spv *m, uint32_t id) {
    size_t n = m->size / 4;
    for (size_t i = 5; i < n;) {
        uint32_t words = m->code[i] >> 16, op = m->code[i] & 0xFFFFu;
        if (words == 0 || i + words > n) return false;
        if (op == 71 /* OpDecorate */ && words >= 4 && m->code[i + 2] == 1 /* SpecId */ && m->code[i + 3] == id)
            return true;
        i += words;
    }
    return false;
}

/* The host sets constant 7 (WSPLIT, shaders/common/blocks.glsl) on every
 * dispatch that reads weights in the split layout (the types
 * elmi_vk_split_layout names): every module that reads those types must
 * take it, or it would read split rows as file rows. */
static bool names_a_split_type(const char *module) {
    for (size_t t = 0; t < elmi_vk_n_weight_types; t++) {
        size_t d_off;
        char suffix[32];
        snprintf(suffix, sizeof suffix, "_%s_", elmi_vk_weight_types[t].suffix);
        if (elmi_vk_split_layout(elmi_vk_weight_types[t].type, &d_off) && strstr(module, suffix)) return true;
    }
    return false;
}

Test(vk_device, weight_shaders_take_the_split_layout_constant) {
    static const char *const kernels[] = {"matvec_", "matmat_", "get_rows_"};
    size_t checked = 0;
    for (size_t f = 0; f < elmi_spv_n_families; f++) {
        const elmi_spv_family *fam = &elmi_spv_families[f];
        for (size_t i = 0; i < *fam->count; i++) {
            const elmi_spv *m = &fam->modules[i];
            bool weights = false;
            for (size_t k = 0; k < 3; k++) weights |= strncmp(m->name, kernels[k], strlen(kernels[k])) == 0;
            if (!weights || !names_a_split_type(m->name)) continue;
            cr_expect(declares_spec_id(m, 7), "%s does not declare specialization constant 7 (WSPLIT)", m->name);
            checked++;
        }
    }
    cr_expect_gt(checked, 20, "only %zu weight modules of the split types found", checked);
}
