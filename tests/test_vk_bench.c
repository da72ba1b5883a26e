/* test_vk_bench.c: `edgelm bench --ops` on a Vulkan device, through the
 * CLI ($ELM_CLI): the same JSON fields as the CPU's, a device copy
 * bandwidth, matrix-vector figures as GB/s and % of that bandwidth
 * (consistent with each other), and the device's id on every entry. Skips
 * without a Vulkan device. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgelm.h"
#include "support/json.h"
#include "support/paths.h"

static const char *first_vulkan(char *id, size_t cap) {
    elm_device_info info[16];
    info[0].struct_size = sizeof info[0];
    size_t n = 0;
    if (elm_devices(info, 16, &n) != ELM_OK) return NULL;
    for (size_t i = 0; i < n && i < 16; i++)
        if (!strcmp(info[i].backend, "vulkan")) {
            snprintf(id, cap, "%s", info[i].id);
            return id;
        }
    return NULL;
}

static double num(const json_value *o, const char *key) {
    const json_value *v = json_get(o, key);
    cr_assert(json_is(v, JSON_NUMBER), "`%s` is not a number", key);
    return v->number;
}

Test(vk_bench, ops_on_vulkan) {
    char id[32];
    if (!first_vulkan(id, sizeof id)) cr_skip_test("no Vulkan device");
    const char *cli = test_cli();
    cr_assert_not_null(cli, "ELM_CLI is not set: run the tests through ctest");
    char json[512], cache[512];
    snprintf(json, sizeof json, "%s/ops.json", test_tmp_dir());
    snprintf(cache, sizeof cache, "%s/cache", test_tmp_dir());
    setenv("XDG_CACHE_HOME", cache, 1);
    const char *argv[] = {cli, "bench", "--ops", "--device", id, "--budget", "20", "--json", json, NULL};
    char *out = NULL, *err = NULL;
    int rc = test_run(argv, NULL, 0, &out, &err);
    cr_assert_eq(rc, 0, "bench --ops --device %s failed (%d): %s", id, rc, err ? err : "");
    cr_expect_null(strstr(err ? err : "", "no op benchmarks"), "%s", err);
    json_value *root = json_parse_file(json, NULL, 0);
    cr_assert_not_null(root, "no ops JSON; stdout:\n%s", out);
    const json_value *ops = json_get(root, "ops");
    cr_assert(json_len(ops) >= 2, "fewer than two ops measured; stderr:\n%s", err);
    const char *keys[] = {"device", "op", "type", "rows", "cols", "gbps", "gflops", "pct_copy_bw"};
    for (size_t i = 0; i < json_len(ops); i++) {
        for (size_t k = 0; k < sizeof keys / sizeof *keys; k++)
            cr_expect_not_null(json_get(json_at(ops, i), keys[k]), "op %zu lacks %s", i, keys[k]);
        cr_expect_str_eq(json_str(json_get(json_at(ops, i), "device")), id);
    }
    const json_value *copy = json_at(ops, 0);
    cr_expect_str_eq(json_str(json_get(copy, "op")), "copy");
    cr_expect(num(copy, "gbps") > 0, "no device copy bandwidth");
    cr_expect_eq(num(copy, "pct_copy_bw"), 100);
    size_t n_mv = 0;
    for (size_t i = 1; i < json_len(ops); i++) {
        const json_value *o = json_at(ops, i);
        const char *op = json_str(json_get(o, "op"));
        if (strcmp(op, "mul_mat_vec")) continue;
        n_mv++;
        cr_expect(num(o, "gbps") > 0 && num(o, "pct_copy_bw") > 0, "%s %s: no figure", op,
                  json_str(json_get(o, "type")));
        double pct = num(o, "gbps") / num(copy, "gbps") * 100;
        cr_expect(fabs(pct - num(o, "pct_copy_bw")) < 0.01 * pct + 1e-3,
                  "pct_copy_bw inconsistent: %g vs %g", pct, num(o, "pct_copy_bw"));
    }
    cr_expect_geq(n_mv, 1, "no matrix-vector figure within the budget");
    json_free(root);
    free(out);
    free(err);
}
