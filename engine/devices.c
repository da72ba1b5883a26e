#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "common/abi.h"
#include "common/alloc.h"
#include "common/status.h"
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
    d->n_threads = (uint32_t)elmi_be_cpu_physical_cores();
}

elm_status elmi_device_resolve(const char *spec, elm_device_choice *out, char *err, size_t err_size) {
    memset(out, 0, sizeof *out);
    out->vk_index = -1;
    if (!spec || !*spec || strcmp(spec, "cpu") == 0) {
        snprintf(out->id, sizeof out->id, "cpu");
        return ELM_OK;
    }
    bool automatic = strcmp(spec, "auto") == 0 || strcmp(spec, "best") == 0;
    bool vulkan = strcmp(spec, "vulkan") == 0 || strncmp(spec, "vulkan:", 7) == 0;
    if (!automatic && !vulkan)
        return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG,
                           "unknown device '%s' (expected cpu, auto, best, vulkan or vulkan:N)", spec);
    out->automatic = automatic;
    snprintf(out->id, sizeof out->id, "cpu");
#if defined(ELM_HAVE_VULKAN) && ELM_HAVE_VULKAN
    int index = -1;
    elm_status st = elmi_be_vk_select(automatic ? "auto" : spec, &index);
    if (st == ELM_ERR_NO_MEMORY)
        return elmi_errorf(err, err_size, st, "device '%s': out of memory listing the devices", spec);
    if (st != ELM_OK)
        return elmi_errorf(err, err_size, st, "device '%s' does not exist (see `edgelm devices`)", spec);
    if (index < 0 && vulkan)
        return elmi_errorf(err, err_size, ELM_ERR_UNSUPPORTED, "device '%s': no Vulkan device found",
                           spec);
    out->vk_index = index;
    if (index >= 0) snprintf(out->id, sizeof out->id, "vulkan:%d", index);
    return ELM_OK;
#else
    if (vulkan)
        return elmi_errorf(err, err_size, ELM_ERR_UNSUPPORTED,
                           "device '%s' is not available: this build has no Vulkan backend", spec);
    return ELM_OK;
#endif
}

elm_status elmi_device_backend_new(const elm_device_choice *c, int n_threads, bool pin, be_backend **out,
                              char *err, size_t err_size) {
    if (c->vk_index < 0) {
        elm_status st = elmi_be_cpu_new_ex(n_threads, pin, out);
        if (st != ELM_OK) elmi_errorf(err, err_size, st, "cannot start the CPU backend");
        return st;
    }
#if defined(ELM_HAVE_VULKAN) && ELM_HAVE_VULKAN
    be_vk_options opt = elmi_be_vk_default_options();
    opt.device = c->vk_index;
    return elmi_be_vk_new(&opt, out, err, err_size);
#else
    return elmi_errorf(err, err_size, ELM_ERR_UNSUPPORTED, "this build has no Vulkan backend");
#endif
}

void elmi_device_backend_stats(be_backend *be, elm_stats *st) {
    be_stats bs = {0};
    if (be->iface->get_stats) be->iface->get_stats(be, &bs);
    st->n_fallback_nodes = bs.n_fallback_nodes;
}

uint64_t elmi_device_validation_errors(be_backend *be) {
    be_stats bs = {0};
    if (be->iface->get_stats) be->iface->get_stats(be, &bs);
    return bs.n_validation_errors;
}

#define ELM_MAX_DEVICE_STATS 64

elm_status elm_context_device_stat(const elm_context *ctx, size_t index, const char **name,
                                   double *value) {
    if (!ctx || !ctx->be || !ctx->be->iface->device_stats) return ELM_ERR_INVALID_ARG;
    be_stat all[ELM_MAX_DEVICE_STATS];
    size_t n = ctx->be->iface->device_stats(ctx->be, all, ELM_MAX_DEVICE_STATS);
    if (index >= n || index >= ELM_MAX_DEVICE_STATS) return ELM_ERR_INVALID_ARG;
    if (name) *name = all[index].name;
    if (value) *value = all[index].value;
    return ELM_OK;
}

elm_status elm_context_device_stat_find(const elm_context *ctx, const char *name, double *value) {
    if (!name) return ELM_ERR_INVALID_ARG;
    const char *n = NULL;
    double v = 0;
    for (size_t i = 0; elm_context_device_stat(ctx, i, &n, &v) == ELM_OK; i++)
        if (!strcmp(n, name)) {
            if (value) *value = v;
            return ELM_OK;
        }
    return ELM_ERR_INVALID_ARG;
}

/* More devices than this are counted but not described. */
#define ELM_MAX_DEVICES 64

elm_status elm_devices(elm_device_info *out, size_t cap, size_t *n) {
    if (!n || (!out && cap)) return ELM_ERR_INVALID_ARG;
    size_t stride = cap ? out[0].struct_size : 0;
    if (cap && stride < ELMI_MIN_DEVICE_INFO) return ELM_ERR_INVALID_ARG;
    size_t want = cap < ELM_MAX_DEVICES ? cap : ELM_MAX_DEVICES;
    elm_device_info *all = NULL;
    if (want) {
        all = elmi_calloc(want, sizeof *all);
        if (!all) return ELM_ERR_NO_MEMORY;
        cpu_device(&all[0]);
    }
    size_t count = 1;
    elm_status st = ELM_OK;
#if defined(ELM_HAVE_VULKAN) && ELM_HAVE_VULKAN
    size_t n_vk = 0;
    char err[256];
    st = elmi_be_vk_enumerate(want > 1 ? all + 1 : NULL, want > 1 ? want - 1 : 0, &n_vk, err, sizeof err);
    if (st == ELM_OK) count += n_vk;
    else if (st != ELM_ERR_NO_MEMORY) st = ELM_OK; /* no usable Vulkan: the CPU alone */
#endif
    for (size_t i = 0; st == ELM_OK && i < want && i < count; i++) {
        elm_device_info *dst = (elm_device_info *)((unsigned char *)out + i * stride);
        dst->struct_size = stride;
        elmi_struct_out(dst, &all[i], sizeof all[i], ELMI_MIN_DEVICE_INFO);
    }
    elmi_free(all);
    if (st == ELM_OK) *n = count;
    return st;
}
