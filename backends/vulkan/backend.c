/* backend.c: the Vulkan backend's be_iface, its creation and teardown,
 * device listing and selection (vk_backend.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backends/vulkan/vk_internal.h"
#include "common/alloc.h"

/* ---------------------------------------------------------------- errors */

const char *elmi_vk_result_name(VkResult r) {
    switch (r) {
    case VK_SUCCESS: return "VK_SUCCESS";
    case VK_NOT_READY: return "VK_NOT_READY";
    case VK_TIMEOUT: return "VK_TIMEOUT";
    case VK_INCOMPLETE: return "VK_INCOMPLETE";
    case VK_ERROR_OUT_OF_HOST_MEMORY: return "VK_ERROR_OUT_OF_HOST_MEMORY";
    case VK_ERROR_OUT_OF_DEVICE_MEMORY: return "VK_ERROR_OUT_OF_DEVICE_MEMORY";
    case VK_ERROR_INITIALIZATION_FAILED: return "VK_ERROR_INITIALIZATION_FAILED";
    case VK_ERROR_DEVICE_LOST: return "VK_ERROR_DEVICE_LOST";
    case VK_ERROR_MEMORY_MAP_FAILED: return "VK_ERROR_MEMORY_MAP_FAILED";
    case VK_ERROR_LAYER_NOT_PRESENT: return "VK_ERROR_LAYER_NOT_PRESENT";
    case VK_ERROR_EXTENSION_NOT_PRESENT: return "VK_ERROR_EXTENSION_NOT_PRESENT";
    case VK_ERROR_FEATURE_NOT_PRESENT: return "VK_ERROR_FEATURE_NOT_PRESENT";
    case VK_ERROR_INCOMPATIBLE_DRIVER: return "VK_ERROR_INCOMPATIBLE_DRIVER";
    case VK_ERROR_TOO_MANY_OBJECTS: return "VK_ERROR_TOO_MANY_OBJECTS";
    case VK_ERROR_FRAGMENTED_POOL: return "VK_ERROR_FRAGMENTED_POOL";
    case VK_ERROR_OUT_OF_POOL_MEMORY: return "VK_ERROR_OUT_OF_POOL_MEMORY";
    default: return "VkResult error";
    }
}

elm_status elmi_vk_fail(vk_backend *vk, elm_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(vk->last_error, sizeof vk->last_error, fmt, ap);
    va_end(ap);
    return st;
}

elm_status elmi_vk_check(vk_backend *vk, VkResult r, const char *what) {
    if (r == VK_SUCCESS) return ELM_OK;
    if (r == VK_ERROR_DEVICE_LOST) {
        vk->lost = true;
        atomic_store(&vk->d->lost, true);
    }
    elm_status st = r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY
                        ? ELM_ERR_NO_MEMORY
                        : ELM_ERR_DEVICE;
    return elmi_vk_fail(vk, st, "%s: %s (%d)", what, elmi_vk_result_name(r), (int)r);
}

void elmi_vk_copy_error(const vk_backend *vk, char *err, size_t err_size) {
    if (err && err_size) snprintf(err, err_size, "%s", vk->last_error);
}

/* ----------------------------------------------------------------- iface */

static void vk_free(be_backend *be) {
    vk_backend *vk = vk_of(be);
    if (vk->dev) {
        elmi_vk_wait_idle(vk); /* a lost device may fail here; teardown goes on */
        elmi_vk_plans_clear(vk);
        elmi_vk_memory_free(vk);
    }
    elmi_be_vk_device_release(vk->d);
    elmi_free(vk);
}

static bool vk_supports_op(be_backend *be, const be_node *node) {
    vk_backend *vk = vk_of(be);
    char saved[VK_ERR_LEN];
    memcpy(saved, vk->last_error, sizeof saved);
    bool ok = true;
    vk->why[0] = '\0';
    for (int exact = 1; ok && exact >= 0; exact--) {
        vk_planner p = {.vk = vk, .plan = NULL, .exact = exact, .node_index = -1};
        ok = elmi_vk_plan_node(&p, node) == ELM_OK;
        if (!ok) snprintf(vk->why, sizeof vk->why, "%s", p.why[0] ? p.why : vk->last_error);
    }
    memcpy(vk->last_error, saved, sizeof saved); /* a question, not a failure */
    return ok;
}

static const char *vk_unsupported_why(be_backend *be) {
    return vk_of(be)->why;
}

static elm_status iface_buffer_alloc(be_backend *be, size_t size, void *host_ptr, be_buffer **out) {
    if (!out) return ELM_ERR_INVALID_ARG;
    *out = NULL;
    vk_backend *vk = vk_of(be);
    if (elmi_vk_lost(vk)) return elmi_vk_fail(vk, ELM_ERR_DEVICE, "the device was lost earlier");
    return elmi_vk_buffer_alloc(vk, size, host_ptr, out);
}

static void iface_buffer_free(be_backend *be, be_buffer *buf) {
    vk_backend *vk = vk_of(be);
    if (!buf || !elmi_vk_owns_buffer(vk, buf)) return;
    if (vk->dev) elmi_vk_ring_flush(vk);
    if (vk->dev) elmi_vk_wait_idle(vk);
    /* Recorded plans may bind it; a new buffer could reuse its address. */
    elmi_vk_plans_clear(vk);
    elmi_vk_buffer_free(vk, buf);
}

static void *iface_buffer_host(be_backend *be, be_buffer *buf) {
    return buf ? buf->host : NULL;
}

/* The buffer bytes of a tensor's [offset, offset + size), checked. */
static elm_status tensor_span(vk_backend *vk, const be_tensor *t, size_t offset, size_t size,
                              size_t *at) {
    VkDeviceSize extent;
    if (!t || !t->buf || !elmi_vk_owns_buffer(vk, t->buf))
        return elmi_vk_fail(vk, ELM_ERR_INVALID_ARG, "tensor is not in a buffer of this backend");
    if (!elmi_vk_tensor_extent(t, &extent) || offset > extent || size > extent - offset ||
        t->offs > t->buf->size || extent > t->buf->size - t->offs)
        return elmi_vk_fail(vk, ELM_ERR_INVALID_ARG, "bytes [%zu, %zu) outside tensor '%s'", offset,
                       offset + size, t->name);
    *at = t->offs + offset;
    return ELM_OK;
}

static elm_status iface_tensor_set(be_backend *be, be_tensor *t, const void *src, size_t offset,
                                   size_t size) {
    vk_backend *vk = vk_of(be);
    if (elmi_vk_lost(vk)) return elmi_vk_fail(vk, ELM_ERR_DEVICE, "the device was lost earlier");
    size_t at;
    elm_status st = tensor_span(vk, t, offset, size, &at);
    if (st != ELM_OK || size == 0) return st;
    if (!src) return ELM_ERR_INVALID_ARG;
    return elmi_vk_buffer_write(vk, t->buf, at, src, size);
}

static elm_status iface_tensor_get(be_backend *be, const be_tensor *t, void *dst, size_t offset,
                                   size_t size) {
    vk_backend *vk = vk_of(be);
    if (elmi_vk_lost(vk)) return elmi_vk_fail(vk, ELM_ERR_DEVICE, "the device was lost earlier");
    size_t at;
    elm_status st = tensor_span(vk, t, offset, size, &at);
    if (st != ELM_OK || size == 0) return st;
    if (!dst) return ELM_ERR_INVALID_ARG;
    return elmi_vk_buffer_read(vk, t->buf, at, dst, size);
}

static elm_status iface_graph_prepare(be_backend *be, const be_graph *g, char *err, size_t err_size) {
    vk_backend *vk = vk_of(be);
    vk_plan *plan;
    vk->last_error[0] = '\0';
    elm_status st = elmi_vk_graph_prepare(vk, g, &plan);
    if (st != ELM_OK) elmi_vk_copy_error(vk, err, err_size);
    else if (err && err_size) err[0] = '\0';
    return st;
}

static elm_status iface_graph_compute(be_backend *be, const be_graph *g, char *err, size_t err_size) {
    vk_backend *vk = vk_of(be);
    vk->last_error[0] = '\0';
    elm_status st = elmi_vk_graph_compute(vk, g);
    if (st != ELM_OK) elmi_vk_copy_error(vk, err, err_size);
    else if (err && err_size) err[0] = '\0';
    return st;
}

static void iface_get_stats(be_backend *be, be_stats *out) {
    if (!out) return;
    *out = vk_of(be)->stats;
    out->n_validation_errors = atomic_load(&vk_of(be)->d->validation_errors);
}

static size_t iface_device_stats(be_backend *be, be_stat *out, size_t cap) {
    const vk_backend *vk = vk_of(be);
    be_vk_stats merged;
    elmi_be_vk_get_stats(be, &merged);
    const be_vk_stats *s = &merged;
    const be_stat all[] = {
        {"vulkan.pipelines", (double)s->n_pipelines},
        {"vulkan.pipeline_ms", s->pipeline_ms},
        {"vulkan.pipeline_cache_loaded", s->cache_loaded ? 1.0 : 0.0},
        {"vulkan.pipeline_cache_rejected", s->cache_rejected ? 1.0 : 0.0},
        {"vulkan.records", (double)s->n_records},
        {"vulkan.replays", (double)s->n_replays},
        {"vulkan.submits", (double)s->n_submits},
        {"vulkan.dispatches", (double)s->n_dispatches},
        {"vulkan.barriers", (double)s->n_barriers},
        {"vulkan.fused_nodes", (double)s->n_fused_nodes},
        {"vulkan.texel_dispatches", (double)s->n_texel_dispatches},
        {"vulkan.weight_bytes", (double)s->weight_bytes},
        {"vulkan.weight_import_bytes", (double)s->weight_import_bytes},
        {"vulkan.weight_copy_bytes", (double)s->weight_copy_bytes},
        {"vulkan.weight_split_bytes", (double)s->weight_split_bytes},
        {"vulkan.device_bytes", (double)s->device_bytes},
        {"vulkan.context_device_bytes", (double)vk->device_bytes},
        {"vulkan.ring_writes", (double)s->n_ring_writes},
        {"vulkan.validation_errors", (double)atomic_load(&vk->d->validation_errors)},
    };
    const size_t n = sizeof all / sizeof all[0];
    for (size_t i = 0; i < n && i < cap; i++) out[i] = all[i];
    return n;
}

static const be_iface vk_iface = {
    .name = "vulkan",
    .free = vk_free,
    .supports_op = vk_supports_op,
    .unsupported_why = vk_unsupported_why,
    .buffer_alloc = iface_buffer_alloc,
    .buffer_free = iface_buffer_free,
    .buffer_host = iface_buffer_host,
    .tensor_set = iface_tensor_set,
    .tensor_get = iface_tensor_get,
    .graph_prepare = iface_graph_prepare,
    .graph_compute = iface_graph_compute,
    .get_stats = iface_get_stats,
    .device_stats = iface_device_stats,
    .profile_enable = elmi_vk_profile_enable,
    .profile_read = elmi_vk_profile_read,
};

bool elmi_be_vk_is(const be_backend *be) {
    return be && be->iface == &vk_iface;
}

/* ------------------------------------------------------ devices, selection */

elm_status elmi_be_vk_enumerate(elm_device_info *out, size_t cap, size_t *n, char *err, size_t err_size) {
    if (!n || (cap && !out)) return ELM_ERR_INVALID_ARG;
    *n = 0;
    vk_limits lim;
    ELM_TRY(elmi_vk_limits_from_env(&lim, err, err_size));
    vk_instance vi;
    elm_status st = elmi_vk_instance_create(false, true, NULL, &vi, NULL, 0);
    if (st == ELM_ERR_NO_MEMORY)
        return elmi_errorf(err, err_size, st, "out of memory listing Vulkan devices");
    if (st != ELM_OK) return ELM_OK; /* no Vulkan: no devices */
    VkPhysicalDevice *pd = NULL;
    uint32_t count = 0;
    st = elmi_vk_physical_devices(vi.inst, &pd, &count);
    if (st != ELM_OK) goto fail;
    for (uint32_t i = 0; i < count; i++) {
        vk_caps caps;
        elm_device_info info;
        st = elmi_vk_query_device(pd[i], (int)i, &lim, &caps, &info);
        if (st != ELM_OK) goto fail;
        if (i < cap) out[i] = info;
    }
    *n = count;
    elmi_free(pd);
    elmi_vk_instance_destroy(&vi);
    return ELM_OK;
fail:
    elmi_free(pd);
    elmi_vk_instance_destroy(&vi);
    return elmi_errorf(err, err_size, st, "out of memory listing Vulkan devices");
}

/* Device types in enumeration order; *count = 0 without Vulkan. */
static elm_status device_types(VkPhysicalDeviceType **types, uint32_t *count) {
    *types = NULL;
    *count = 0;
    vk_instance vi;
    elm_status st = elmi_vk_instance_create(false, true, NULL, &vi, NULL, 0);
    if (st != ELM_OK) return st == ELM_ERR_NO_MEMORY ? st : ELM_OK; /* no Vulkan: no devices */
    VkPhysicalDevice *pd = NULL;
    st = elmi_vk_physical_devices(vi.inst, &pd, count);
    if (st != ELM_OK || *count == 0) goto done;
    *types = elmi_calloc(*count, sizeof **types);
    if (!*types) {
        st = ELM_ERR_NO_MEMORY;
        goto done;
    }
    for (uint32_t i = 0; i < *count; i++) {
        VkPhysicalDeviceProperties p;
        vkGetPhysicalDeviceProperties(pd[i], &p);
        (*types)[i] = p.deviceType;
    }
done:
    elmi_free(pd);
    elmi_vk_instance_destroy(&vi);
    return st;
}

static int first_of(const VkPhysicalDeviceType *t, uint32_t n, VkPhysicalDeviceType want) {
    for (uint32_t i = 0; i < n; i++)
        if (t[i] == want) return (int)i;
    return -1;
}

static int first_gpu(const VkPhysicalDeviceType *t, uint32_t n) {
    for (uint32_t i = 0; i < n; i++)
        if (t[i] != VK_PHYSICAL_DEVICE_TYPE_CPU) return (int)i;
    return -1;
}

static int choose(const VkPhysicalDeviceType *t, uint32_t n, bool allow_cpu) {
    if (allow_cpu) {
        int i = first_gpu(t, n);
        return i >= 0 ? i : (n ? 0 : -1);
    }
    int i = first_of(t, n, VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU);
    if (i < 0) i = first_of(t, n, VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU);
    if (i < 0) i = first_gpu(t, n);
    return i;
}

elm_status elmi_be_vk_select(const char *spec, int *index) {
    if (!spec || !index) return ELM_ERR_INVALID_ARG;
    *index = -1;
    bool is_auto = !strcmp(spec, "auto"), is_vulkan = !strcmp(spec, "vulkan");
    long want = -1;
    if (!is_auto && !is_vulkan) {
        char *end;
        if (strncmp(spec, "vulkan:", 7) || !spec[7] || spec[7] < '0' || spec[7] > '9') return ELM_ERR_INVALID_ARG;
        want = strtol(spec + 7, &end, 10);
        if (*end || want < 0 || want > 1000000) return ELM_ERR_INVALID_ARG;
    }
    VkPhysicalDeviceType *types;
    uint32_t n;
    elm_status st = device_types(&types, &n);
    if (st != ELM_OK) return st;
    if (want >= 0) {
        if (want < (long)n) *index = (int)want;
        else st = ELM_ERR_INVALID_ARG;
    } else {
        /* EDGELM_VK_AUTO_CPU=1 (a test hook): "auto" may take a CPU-type
         * device, so the auto path (self-check, fallback) runs on lavapipe. */
        const char *cpu_ok = getenv("EDGELM_VK_AUTO_CPU");
        *index = choose(types, n, is_vulkan || (cpu_ok && !strcmp(cpu_ok, "1")));
    }
    elmi_free(types);
    return st;
}

/* The device "vulkan" selects: the first GPU, else any device; -1: none. */
elm_status elmi_vk_default_index(int *index) {
    VkPhysicalDeviceType *types;
    uint32_t n;
    ELM_TRY(device_types(&types, &n));
    *index = choose(types, n, true);
    elmi_free(types);
    return ELM_OK;
}

/* ---------------------------------------------------------------- create */

be_vk_options elmi_be_vk_default_options(void) {
    return (be_vk_options){.device = -1, .validation = -1};
}

/* EDGELM_VK_FAULT_AFTER=N (a test hook): *after = N, else -1. */
static elm_status fault_from_env(int64_t *after, char *err, size_t err_size) {
    *after = -1;
    const char *v = getenv("EDGELM_VK_FAULT_AFTER");
    if (!v || !*v) return ELM_OK;
    char *end;
    long long n = strtoll(v, &end, 10);
    if (*end || n < 0 || v[0] < '0' || v[0] > '9')
        return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG,
                           "EDGELM_VK_FAULT_AFTER='%s' is not a number of submissions", v);
    *after = n;
    return ELM_OK;
}

/* EDGELM_VK_FAULT_OP=NAME (a test hook): the be_op named NAME, in any
 * case ("MUL_MAT", "attention"), else -1. */
static elm_status fault_op_from_env(int *op, char *err, size_t err_size) {
    *op = -1;
    const char *v = getenv("EDGELM_VK_FAULT_OP");
    if (!v || !*v) return ELM_OK;
    for (int i = 0; i < BE_OP_COUNT; i++)
        if (!strcasecmp(v, elmi_be_op_name((be_op)i))) {
            *op = i;
            return ELM_OK;
        }
    return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "EDGELM_VK_FAULT_OP='%s' is not an op name", v);
}

/* EDGELM_VK_SUBMIT_MS=T: the submit bound in ms (0: no bound); -1 when
 * unset (the device type then decides). */
static elm_status submit_ms_from_env(double *ms, char *err, size_t err_size) {
    *ms = -1;
    const char *v = getenv("EDGELM_VK_SUBMIT_MS");
    if (!v || !*v) return ELM_OK;
    char *end;
    double t = strtod(v, &end);
    if (*end || !(t >= 0) || t > 1e9)
        return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "EDGELM_VK_SUBMIT_MS='%s' is not a time in ms", v);
    *ms = t;
    return ELM_OK;
}

elm_status elmi_be_vk_new_on(be_device *d, be_backend **out, char *err, size_t err_size) {
    if (err && err_size) err[0] = '\0';
    if (!out || !d) return ELM_ERR_INVALID_ARG;
    *out = NULL;
    if (atomic_load(&d->lost))
        return elmi_errorf(err, err_size, ELM_ERR_DEVICE, "%s was lost earlier", d->info.name);
    int64_t fault_after;
    ELM_TRY(fault_from_env(&fault_after, err, err_size));
    int fault_op;
    ELM_TRY(fault_op_from_env(&fault_op, err, err_size));
    double submit_ms;
    ELM_TRY(submit_ms_from_env(&submit_ms, err, err_size));
    vk_backend *vk = elmi_calloc(1, sizeof *vk);
    if (!vk) return elmi_errorf(err, err_size, ELM_ERR_NO_MEMORY, "out of memory");
    vk->be.iface = &vk_iface;
    vk->be.impl = vk;
    vk->fault_after = fault_after;
    vk->fault_op = fault_op;
    vk->submit_ms = submit_ms;
    elmi_vk_backend_attach(vk, d);
    elm_status st = elmi_vk_memory_init(vk);
    if (st != ELM_OK) {
        elmi_vk_copy_error(vk, err, err_size);
        vk_free(&vk->be);
        return st;
    }
    /* GPU drivers kill long jobs; a CPU-type device (lavapipe) has no such
     * watchdog, and splitting there would only add submits. */
    if (vk->submit_ms < 0) vk->submit_ms = vk->caps.type == VK_PHYSICAL_DEVICE_TYPE_CPU ? 0 : 100;
    *out = &vk->be;
    return ELM_OK;
}

elm_status elmi_be_vk_new(const be_vk_options *opt, be_backend **out, char *err, size_t err_size) {
    if (err && err_size) err[0] = '\0';
    if (!out) return ELM_ERR_INVALID_ARG;
    *out = NULL;
    be_device *d;
    ELM_TRY(elmi_be_vk_device_open(opt, &d, err, err_size));
    elm_status st = elmi_be_vk_new_on(d, out, err, err_size);
    elmi_be_vk_device_release(d); /* the backend holds its own reference */
    return st;
}

/* ----------------------------------------------------------------- extras */

elm_status elmi_be_vk_device_info(be_backend *be, elm_device_info *out) {
    if (!elmi_be_vk_is(be) || !out) return ELM_ERR_INVALID_ARG;
    *out = vk_of(be)->info;
    return ELM_OK;
}

uint64_t elmi_be_vk_validation_errors(be_backend *be) {
    return elmi_be_vk_is(be) ? atomic_load(&vk_of(be)->d->validation_errors) : 0;
}

bool elmi_be_vk_validation_enabled(be_backend *be) {
    return elmi_be_vk_is(be) && vk_of(be)->d->vi.validation;
}

const char *elmi_be_vk_last_error(be_backend *be) {
    return elmi_be_vk_is(be) ? vk_of(be)->last_error : "";
}

elm_status elmi_be_vk_get_stats(be_backend *be, be_vk_stats *out) {
    if (!elmi_be_vk_is(be) || !out) return ELM_ERR_INVALID_ARG;
    vk_backend *vk = vk_of(be);
    const vk_device *d = vk->d;
    *out = vk->vstats;
    pthread_mutex_lock(&vk->d->lock);
    out->n_pipelines = d->stats.n_pipelines;
    out->pipeline_ms = d->stats.pipeline_ms;
    out->cache_loaded = d->stats.cache_loaded;
    out->cache_load_bytes = d->stats.cache_load_bytes;
    out->cache_rejected = d->stats.cache_rejected;
    memcpy(out->cache_note, d->stats.cache_note, sizeof out->cache_note);
    memcpy(out->cache_path, d->stats.cache_path, sizeof out->cache_path);
    out->weight_bytes = d->stats.weight_bytes;
    out->weight_import_bytes = d->stats.weight_import_bytes;
    out->weight_copy_bytes = d->stats.weight_copy_bytes;
    out->weight_split_bytes = d->stats.weight_split_bytes;
    out->n_weights = d->stats.n_weights;
    out->device_bytes = vk->device_bytes + d->weight_device_bytes;
    pthread_mutex_unlock(&vk->d->lock);
    return ELM_OK;
}

elm_status elmi_be_vk_copy_buffer(be_backend *be, be_buffer *dst, be_buffer *src, size_t size,
                             uint32_t reps, double *ms) {
    if (!elmi_be_vk_is(be) || !dst || !src || !ms) return ELM_ERR_INVALID_ARG;
    vk_backend *vk = vk_of(be);
    vk->last_error[0] = '\0';
    return elmi_vk_buffer_copy_timed(vk, dst, src, size, reps, ms);
}

bool elmi_be_vk_int_dot_matvec(be_backend *be) {
    return elmi_be_vk_is(be) && vk_of(be)->caps.mv_idot;
}

void elmi_be_vk_release_weights(be_backend *be) {
    if (!elmi_be_vk_is(be)) return;
    vk_backend *vk = vk_of(be);
    if (vk->dev) elmi_vk_wait_idle(vk);
    elmi_vk_plans_clear(vk); /* recorded plans bind the copies */
    elmi_vk_weights_clear(vk);
}
