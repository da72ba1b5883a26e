/* devices.c: test_have_vulkan_device (paths.h), apart from paths.c so that
 * tests that do not link the library can use the rest. */
#include <string.h>

#include "edgelm.h"
#include "support/paths.h"

bool test_have_vulkan_device(void) {
    elm_device_info info[16];
    info[0].struct_size = sizeof info[0];
    size_t n = 0;
    if (elm_devices(info, 16, &n) != ELM_OK) return false;
    for (size_t i = 0; i < n && i < 16; i++)
        if (!strcmp(info[i].backend, "vulkan")) return true;
    return false;
}
