/* shared_device.c: a device opened once and shared by every backend created
 * on it (vk_internal.h, "device"): opening, reference counting, release. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/vulkan/vk_internal.h"
#include "common/alloc.h"

static bool validation_wanted(const be_vk_options *o) {
    if (o->validation >= 0) return o->validation > 0;
    const char *env = getenv("EDGELM_VK_VALIDATION");
    return env && !strcmp(env, "1");
}

/* A backend that borrows d's fields, for the device-level steps (opening,
 * pipelines, teardown) that reuse functions written for a backend. */
static void boot_backend(vk_backend *boot, vk_device *d) {
    memset(boot, 0, sizeof *boot);
    boot->d = d;
    boot->quiet = d->quiet;
}

void elmi_vk_backend_attach(vk_backend *vk, vk_device *d) {
    atomic_fetch_add(&d->refs, 1);
    vk->d = d;
    vk->phys = d->phys;
    vk->dev = d->dev;
    vk->queue = d->queue;
    vk->queue_family = d->queue_family;
    vk->index = d->index;
    vk->caps = d->caps;
    vk->info = d->info;
    vk->mem_props = d->mem_props;
    vk->quiet = d->quiet;
}

void elmi_vk_wait_idle(vk_backend *vk) {
    pthread_mutex_lock(&vk->d->queue_lock);
    vkQueueWaitIdle(vk->queue);
    pthread_mutex_unlock(&vk->d->queue_lock);
}

static void device_destroy(vk_device *d) {
    vk_backend boot;
    boot_backend(&boot, d);
    if (d->dev) {
        boot.dev = d->dev;
        vkDeviceWaitIdle(d->dev);
        elmi_vk_weights_clear(&boot);
        elmi_free(d->weights);
        elmi_vk_pipeline_free(&boot);
        vkDestroyDevice(d->dev, NULL);
    }
    elmi_vk_instance_destroy(&d->vi);
    pthread_mutex_destroy(&d->lock);
    pthread_mutex_destroy(&d->queue_lock);
    elmi_free(d);
}

static elm_status open_on(vk_device *d, const be_vk_options *o, const vk_limits *lim, char *err,
                          size_t err_size) {
    elm_status st = elmi_vk_instance_create(validation_wanted(o), o->quiet, &d->validation_errors, &d->vi,
                                            err, err_size);
    if (st == ELM_ERR_UNSUPPORTED) return elmi_errorf(err, err_size, st, "no Vulkan loader or driver");
    if (st != ELM_OK) return st;
    int index = o->device;
    if (index < 0) {
        if (elmi_vk_default_index(&index) != ELM_OK)
            return elmi_errorf(err, err_size, ELM_ERR_NO_MEMORY, "out of memory listing Vulkan devices");
        if (index < 0) return elmi_errorf(err, err_size, ELM_ERR_UNSUPPORTED, "no Vulkan device found");
    }
    vk_backend boot;
    boot_backend(&boot, d);
    st = elmi_vk_device_open(&boot, index, lim, err, err_size);
    d->phys = boot.phys;
    d->dev = boot.dev;
    d->queue = boot.queue;
    d->queue_family = boot.queue_family;
    d->index = boot.index;
    d->caps = boot.caps;
    d->info = boot.info;
    d->mem_props = boot.mem_props;
    if (st == ELM_OK) st = elmi_vk_pipeline_init(&boot, o->cache_dir);
    if (st != ELM_OK && boot.last_error[0]) elmi_vk_copy_error(&boot, err, err_size);
    return st;
}

elm_status elmi_be_vk_device_open(const be_vk_options *opt, be_device **out, char *err, size_t err_size) {
    if (err && err_size) err[0] = '\0';
    if (!out) return ELM_ERR_INVALID_ARG;
    *out = NULL;
    be_vk_options o = opt ? *opt : elmi_be_vk_default_options();
    vk_limits lim;
    ELM_TRY(o.limits ? elmi_vk_limits_parse(o.limits, &lim, err, err_size)
                     : elmi_vk_limits_from_env(&lim, err, err_size));
    vk_device *d = elmi_calloc(1, sizeof *d);
    if (!d) return elmi_errorf(err, err_size, ELM_ERR_NO_MEMORY, "out of memory");
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&d->lock, &ma);
    pthread_mutexattr_destroy(&ma);
    pthread_mutex_init(&d->queue_lock, NULL);
    atomic_init(&d->refs, 1);
    atomic_init(&d->lost, false);
    atomic_init(&d->validation_errors, 0);
    atomic_init(&d->next_seg_id, 0);
    d->quiet = o.quiet;
    elm_status st = open_on(d, &o, &lim, err, err_size);
    if (st != ELM_OK) {
        device_destroy(d);
        return st;
    }
    *out = d;
    return ELM_OK;
}

void elmi_be_vk_device_release(be_device *d) {
    if (d && atomic_fetch_sub(&d->refs, 1) == 1) device_destroy(d);
}

void elmi_be_vk_device_memory(be_device *d, be_device_memory *out) {
    memset(out, 0, sizeof *out);
    if (!d) return;
    pthread_mutex_lock(&d->lock);
    for (uint32_t i = 0; i < d->n_weights; i++) out->weight_bytes += d->weights[i]->bytes;
    out->weight_device_bytes = d->weight_device_bytes;
    out->n_weights = d->n_weights;
    out->n_users = (uint32_t)atomic_load(&d->refs);
    pthread_mutex_unlock(&d->lock);
}
