#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

#include "engine/internal.h"

#if defined(ELM_HAVE_VULKAN) && ELM_HAVE_VULKAN
#include "backends/vulkan/vk_backend.h"
#endif

/* The CPU model name from /proc/cpuinfo, or the machine type. */
static void cpu_name(char *buf, size_t cap) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f)) {
            char *colon = strchr(line, ':');
            if (colon && strncmp(line, "model name", 10) == 0) {
                colon++;
                while (*colon == ' ') colon++;
                colon[strcspn(colon, "\n")] = 0;
                snprintf(buf, cap, "%s", colon);
                fclose(f);
                return;
            }
        }
        fclose(f);
    }
    struct utsname u;
    snprintf(buf, cap, "%s CPU", uname(&u) == 0 ? u.machine : "unknown");
}

static void cpu_device(elm_device_info *d) {
    memset(d, 0, sizeof *d);
    cpu_name(d->name, sizeof d->name);
    snprintf(d->backend, sizeof d->backend, "cpu");
    snprintf(d->type, sizeof d->type, "cpu");
    snprintf(d->id, sizeof d->id, "cpu");
    snprintf(d->driver, sizeof d->driver, "edgelm CPU backend");
    d->uma = true;
    d->n_threads = (uint32_t)be_cpu_physical_cores();
}

elm_status elm_devices(elm_device_info *out, size_t cap, size_t *n) {
    if (!n || (!out && cap)) return ELM_ERR_INVALID_ARG;
    size_t count = 0;
    if (cap > 0) cpu_device(&out[0]);
    count++;
#if defined(ELM_HAVE_VULKAN) && ELM_HAVE_VULKAN
    size_t n_vk = 0;
    char err[256];
    elm_status st = be_vk_enumerate(cap > 1 ? out + 1 : NULL, cap > 1 ? cap - 1 : 0, &n_vk, err,
                                    sizeof err);
    if (st == ELM_OK) count += n_vk;
#endif
    *n = count;
    return ELM_OK;
}
