/* limits.c: limits specs, the emulation of smaller devices (see
 * vk_backend.h for the profiles). A spec only ever lowers what the device
 * has; applying it is device.c's job. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/vulkan/vk_internal.h"
#include "common/alloc.h"

#define MIB (1024u * 1024u)

static void lower(uint64_t *field, uint64_t v) {
    if (*field == 0 || v < *field) *field = v;
}

static bool apply_profile(const char *name, vk_limits *l) {
    if (!strcmp(name, "pi5")) {
        lower(&l->max_shared, 16384);
        lower(&l->max_invocations, 256);
    } else if (!strcmp(name, "mali")) {
        lower(&l->max_shared, 32768);
        l->no_storage8 = true;
    } else if (!strcmp(name, "adreno")) {
        lower(&l->max_shared, 32768);
        lower(&l->max_invocations, 1024);
    } else if (!strcmp(name, "nofp16")) {
        l->no_fp16 = l->no_storage16 = true;
    } else if (!strcmp(name, "nosubgroup")) {
        l->no_subgroup = true;
    } else if (!strcmp(name, "small-buffers")) {
        lower(&l->max_range, MIB);
        lower(&l->max_alloc, MIB);
    } else if (!strcmp(name, "discrete")) {
        l->no_uma = l->no_import = true;
    } else if (!strcmp(name, "noimport")) {
        l->no_import = true;
    } else if (!strcmp(name, "nofuse")) {
        l->no_fuse = true;
    } else if (!strcmp(name, "fuse")) {
        l->fuse = true;
    } else if (!strcmp(name, "noidot")) {
        l->no_idot = true;
    } else if (!strcmp(name, "idot")) {
        l->idot = true;
    } else if (!strcmp(name, "novtiles")) {
        l->no_vtiles = true;
    } else if (!strcmp(name, "mm_f16")) {
        l->mm_f16 = true;
    } else if (!strcmp(name, "nomm_f16")) {
        l->no_mm_f16 = true;
    } else {
        return false;
    }
    return true;
}

static bool parse_u64(const char *s, uint64_t *out) {
    if (!*s || !isdigit((unsigned char)*s)) return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *end || v == 0) return false;
    *out = v;
    return true;
}

static bool apply_override(const char *key, const char *val, vk_limits *l) {
    static const struct {
        const char *key;
        size_t off;
    } keys[] = {
        {"max_shared", offsetof(vk_limits, max_shared)},
        {"max_invocations", offsetof(vk_limits, max_invocations)},
        {"max_range", offsetof(vk_limits, max_range)},
        {"max_alloc", offsetof(vk_limits, max_alloc)},
        {"mv_rows", offsetof(vk_limits, mv_rows)},
        {"mv_lanes", offsetof(vk_limits, mv_lanes)},
        {"mv_tokens", offsetof(vk_limits, mv_tokens)},
        {"max_storage_buffers", offsetof(vk_limits, max_storage_buffers)},
    };
    uint64_t v;
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        if (strcmp(key, keys[i].key)) continue;
        if (!parse_u64(val, &v)) return false;
        lower((uint64_t *)((char *)l + keys[i].off), v);
        return true;
    }
    return false;
}

static elm_status parse_item(char *item, vk_limits *l, char *err, size_t err_size) {
    char *eq = strchr(item, '=');
    bool ok;
    if (eq) {
        *eq = '\0';
        ok = apply_override(item, eq + 1, l);
        *eq = '=';
    } else {
        ok = apply_profile(item, l);
    }
    if (ok) return ELM_OK;
    return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG,
                       "limits: unknown item '%s' (profiles: pi5, mali, adreno, nofp16, nosubgroup, "
                       "small-buffers, discrete, noimport, nofuse, fuse, noidot, idot, novtiles, mm_f16, nomm_f16; overrides: max_shared, "
                       "max_invocations, max_range, max_alloc, max_storage_buffers, mv_rows, mv_lanes, mv_tokens = "
                       "a positive number)",
                       item);
}

elm_status elmi_vk_limits_parse(const char *spec, vk_limits *out, char *err, size_t err_size) {
    vk_limits l = {0};
    if (spec && *spec) {
        char *copy = elmi_strdup(spec);
        if (!copy) return ELM_ERR_NO_MEMORY;
        elm_status st = ELM_OK;
        for (char *save = NULL, *item = strtok_r(copy, ", ", &save); item;
             item = strtok_r(NULL, ", ", &save)) {
            st = parse_item(item, &l, err, err_size);
            if (st != ELM_OK) break;
        }
        elmi_free(copy);
        if (st != ELM_OK) return st;
    }
    *out = l;
    return ELM_OK;
}

elm_status elmi_vk_limits_from_env(vk_limits *out, char *err, size_t err_size) {
    ELM_TRY(elmi_vk_limits_parse(getenv("EDGELM_VK_LIMITS"), out, err, err_size));
    static const struct {
        const char *env, *key;
    } vars[] = {
        {"EDGELM_VK_MAX_SHARED", "max_shared"},
        {"EDGELM_VK_MAX_INVOCATIONS", "max_invocations"},
        {"EDGELM_VK_MAX_RANGE", "max_range"},
        {"EDGELM_VK_MAX_ALLOC", "max_alloc"},
    };
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
        const char *v = getenv(vars[i].env);
        if (!v || !*v) continue;
        if (!apply_override(vars[i].key, v, out))
            return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "%s='%s' is not a positive number",
                               vars[i].env, v);
    }
    return ELM_OK;
}
