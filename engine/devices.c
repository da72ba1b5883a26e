#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "common/abi.h"
#include "common/alloc.h"
#include "common/status.h"
#include "engine/internal.h"

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

/* The registered backend whose device ids spec names ("NAME" or "NAME:N"). */
static const be_reg *reg_named(const char *spec) {
    for (size_t i = 0; elmi_be_reg_at(i); i++) {
        const be_reg *r = elmi_be_reg_at(i);
        size_t n = strlen(r->name);
        if (!strncmp(spec, r->name, n) && (spec[n] == 0 || spec[n] == ':')) return r;
    }
    return NULL;
}

static void set_choice(elm_device_choice *out, const be_reg *r, int index) {
    out->reg = r;
    out->index = index;
    snprintf(out->id, sizeof out->id, "%s:%d", r->name, index);
}

/* "auto"/"best": the first registered backend with a suitable GPU, else the CPU. */
static elm_status resolve_auto(const char *spec, elm_device_choice *out, char *err,
                               size_t err_size) {
    for (size_t i = 0; elmi_be_reg_at(i); i++) {
        const be_reg *r = elmi_be_reg_at(i);
        int index = -1;
        elm_status st = r->select("auto", &index);
        if (st == ELM_ERR_NO_MEMORY)
            return elmi_errorf(err, err_size, st, "device '%s': out of memory listing the devices",
                               spec);
        if (st == ELM_OK && index >= 0) {
            set_choice(out, r, index);
            return ELM_OK;
        }
    }
    return ELM_OK;
}

elm_status elmi_device_resolve(const char *spec, elm_device_choice *out, char *err, size_t err_size) {
    memset(out, 0, sizeof *out);
    out->index = -1;
    snprintf(out->id, sizeof out->id, "cpu");
    if (!spec || !*spec || strcmp(spec, "cpu") == 0) return ELM_OK;
    out->automatic = strcmp(spec, "auto") == 0 || strcmp(spec, "best") == 0;
    if (out->automatic) return resolve_auto(spec, out, err, err_size);
    const be_reg *r = reg_named(spec);
    if (!r) {
        char names[128] = "";
        for (size_t i = 0, n = 0; elmi_be_reg_at(i) && n < sizeof names; i++)
            n += (size_t)snprintf(names + n, sizeof names - n, ", %s, %s:N", elmi_be_reg_at(i)->name,
                                  elmi_be_reg_at(i)->name);
        return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG,
                           "unknown device '%s' (this build knows cpu, auto, best%s)", spec, names);
    }
    int index = -1;
    elm_status st = r->select(spec, &index);
    if (st == ELM_ERR_NO_MEMORY)
        return elmi_errorf(err, err_size, st, "device '%s': out of memory listing the devices", spec);
    if (st != ELM_OK)
        return elmi_errorf(err, err_size, st, "device '%s' does not exist (see `edgelm devices`)", spec);
    if (index < 0)
        return elmi_errorf(err, err_size, ELM_ERR_UNSUPPORTED, "device '%s': no %s device found",
                           spec, r->name);
    set_choice(out, r, index);
    return ELM_OK;
}

/* The model's shared device for c, opened on first use. The model is
 * logically const: the device is a cache of what its weights need. */
static elm_status model_device(const elm_model *cm, const elm_device_choice *c, be_device **out,
                               char *err, size_t err_size) {
    elm_model *m = (elm_model *)cm;
    elm_status st = ELM_OK;
    pthread_mutex_lock(&m->dev_lock);
    if (!m->dev) st = c->reg->open(c->index, &m->dev, err, err_size);
    *out = m->dev;
    pthread_mutex_unlock(&m->dev_lock);
    return st;
}

elm_status elmi_device_backend_new(const elm_model *m, const elm_device_choice *c, int n_threads,
                                   bool pin, be_backend **out, char *err, size_t err_size) {
    if (c->reg) {
        /* Only the model's own device is shared; another choice gets its own. */
        bool shared = m && c->reg == m->device.reg && c->index == m->device.index;
        be_device *dev = NULL;
        elm_status st = shared ? model_device(m, c, &dev, err, err_size)
                               : c->reg->open(c->index, &dev, err, err_size);
        if (st != ELM_OK) return st;
        st = c->reg->create(dev, n_threads, pin, out, err, err_size);
        if (!shared) c->reg->release(dev);
        return st;
    }
    elm_status st = elmi_be_cpu_new_ex(n_threads, pin, out);
    if (st != ELM_OK) elmi_errorf(err, err_size, st, "cannot start the CPU backend");
    return st;
}

void elmi_device_backend_stats(const elm_context *ctx, elm_stats *st) {
    st->n_fallback_nodes = ctx->sched.n_fallback_nodes;
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
    for (size_t r = 0; st == ELM_OK && elmi_be_reg_at(r); r++) {
        size_t n_dev = 0, room = want > count ? want - count : 0;
        char err[256];
        elm_status rs = elmi_be_reg_at(r)->enumerate(room ? all + count : NULL, room, &n_dev, err,
                                                     sizeof err);
        if (rs == ELM_OK) count += n_dev;
        else if (rs == ELM_ERR_NO_MEMORY) st = rs; /* otherwise: no usable device of that kind */
    }
    for (size_t i = 0; st == ELM_OK && i < want && i < count; i++) {
        elm_device_info *dst = (elm_device_info *)((unsigned char *)out + i * stride);
        dst->struct_size = stride;
        elmi_struct_out(dst, &all[i], sizeof all[i], ELMI_MIN_DEVICE_INFO);
    }
    elmi_free(all);
    if (st == ELM_OK) *n = count;
    return st;
}

void elmi_device_model_release(elm_model *m) {
    if (m->dev && m->device.reg) m->device.reg->release(m->dev);
    m->dev = NULL;
}

elm_status elm_model_memory(const elm_model *m, elm_memory_usage *out) {
    if (!m || !out) return ELM_ERR_INVALID_ARG;
    elm_memory_usage u = {.struct_size = sizeof u};
    if (m->device.reg) {
        elm_model *mm = (elm_model *)m;
        pthread_mutex_lock(&mm->dev_lock);
        if (mm->dev && m->device.reg->memory) {
            be_device_memory dm;
            m->device.reg->memory(mm->dev, &dm);
            u.weights_bytes = dm.weight_bytes;
            u.device_bytes = dm.weight_device_bytes;
        }
        pthread_mutex_unlock(&mm->dev_lock);
    } else {
        u.weights_bytes = m->info.weights_bytes;
    }
    return elmi_struct_out(out, &u, sizeof u, ELMI_MIN_MEMORY_USAGE) ? ELM_OK : ELM_ERR_INVALID_ARG;
}
