/* vk_fixture.h: opening a Vulkan backend in a Criterion test, shared by the
 * test_vk_* files. Header-only: only the Vulkan tests include it, and they
 * are the ones that link the Vulkan backend. */
#ifndef ELM_TEST_VK_FIXTURE_H
#define ELM_TEST_VK_FIXTURE_H

#include <criterion/criterion.h>
#include <stdbool.h>

#include "backends/vulkan/vk_backend.h"

/* Whether any Vulkan device exists (lavapipe counts). */
static inline bool vk_test_have_device(void) {
    size_t n = 0;
    char err[256];
    return elmi_be_vk_enumerate(NULL, 0, &n, err, sizeof err) == ELM_OK && n > 0;
}

/* The backend of device 0 under limits profile `limits` ("" for none),
 * with validation on and no pipeline cache. Skips the test when no device
 * exists at all; fails it when the backend cannot start. */
static inline be_backend *vk_test_open(const char *limits, char *err, size_t err_size) {
    if (!vk_test_have_device()) cr_skip_test("no Vulkan device");
    be_vk_options o = elmi_be_vk_default_options();
    o.limits = limits;
    o.cache_dir = "";
    o.validation = 1;
    o.quiet = true;
    be_backend *be = NULL;
    cr_assert_eq(elmi_be_vk_new(&o, &be, err, err_size), ELM_OK, "[%s] %s", limits, err);
    return be;
}

#endif
