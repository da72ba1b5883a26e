/* registry.c: the device backends this build has (backend.h, "The device
 * registry"). The one place that names them: adding a backend adds a line
 * here, not an engine change. */
#include "backends/backend.h"

#if defined(ELM_HAVE_VULKAN) && ELM_HAVE_VULKAN
#include "backends/vulkan/vk_backend.h"

static elm_status vk_open(int index, be_device **out, char *err, size_t err_size) {
    be_vk_options opt = elmi_be_vk_default_options();
    opt.device = index;
    return elmi_be_vk_device_open(&opt, out, err, err_size);
}

static elm_status vk_create(be_device *dev, int n_threads, bool pin, be_backend **out, char *err,
                            size_t err_size) {
    (void)n_threads; /* the device does the work */
    (void)pin;
    return elmi_be_vk_new_on(dev, out, err, err_size);
}

static const be_reg VULKAN = {
    .name = "vulkan",
    .enumerate = elmi_be_vk_enumerate,
    .select = elmi_be_vk_select,
    .open = vk_open,
    .release = elmi_be_vk_device_release,
    .create = vk_create,
    .memory = elmi_be_vk_device_memory,
};
#endif

static const be_reg *const REGISTRY[] = {
#if defined(ELM_HAVE_VULKAN) && ELM_HAVE_VULKAN
    &VULKAN,
#endif
    NULL,
};

const be_reg *elmi_be_reg_at(size_t i) {
    return i < sizeof REGISTRY / sizeof *REGISTRY ? REGISTRY[i] : NULL;
}
