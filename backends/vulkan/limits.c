/* limits.c: limits specs, the emulation of smaller devices (see
 * vk_backend.h for the profiles). A spec only ever lowers what the device
 * has; applying it is device.c's job. */
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/vulkan/vk_internal.h"
#include "common/alloc.h"

#define MIB (1024u * 1024u)

static void lower(uint64_t *field, uint64_t v) {
    if (*field == 0 || v < *field) *field = v;
}

/* Offsets of the bool items a profile sets, + 1 (0: none). */
#define SET(field) (offsetof(vk_limits, field) + 1)

/* Each profile lowers some caps (0: unchanged) and sets up to two items. */
static const struct profile {
    const char *name;
    uint64_t max_shared, max_invocations, max_range, max_alloc;
    size_t set[2];
} PROFILES[] = {
    {"pi5", 16384, 256, 0, 0, {0, 0}},
    {"mali", 32768, 0, 0, 0, {SET(no_storage8), 0}},
    {"adreno", 32768, 1024, 0, 0, {0, 0}},
    {"nofp16", 0, 0, 0, 0, {SET(no_fp16), SET(no_storage16)}},
    {"nosubgroup", 0, 0, 0, 0, {SET(no_subgroup), 0}},
    {"small-buffers", 0, 0, MIB, MIB, {0, 0}},
    {"discrete", 0, 0, 0, 0, {SET(no_uma), SET(no_import)}},
    {"noimport", 0, 0, 0, 0, {SET(no_import), 0}},
    {"nofuse", 0, 0, 0, 0, {SET(no_fuse), 0}},
    {"fuse", 0, 0, 0, 0, {SET(fuse), 0}},
    {"noidot", 0, 0, 0, 0, {SET(no_idot), 0}},
    {"idot", 0, 0, 0, 0, {SET(idot), 0}},
    {"novtiles", 0, 0, 0, 0, {SET(no_vtiles), 0}},
    {"norepack", 0, 0, 0, 0, {SET(no_repack), 0}},
    {"mm_f16", 0, 0, 0, 0, {SET(mm_f16), 0}},
    {"nomm_f16", 0, 0, 0, 0, {SET(no_mm_f16), 0}},
    {"tex", 0, 0, 0, 0, {SET(tex), 0}},
    {"notex", 0, 0, 0, 0, {SET(no_tex), 0}},
};

static bool apply_profile(const char *name, vk_limits *l) {
    for (size_t i = 0; i < sizeof PROFILES / sizeof *PROFILES; i++) {
        const struct profile *pr = &PROFILES[i];
        if (strcmp(name, pr->name)) continue;
        if (pr->max_shared) lower(&l->max_shared, pr->max_shared);
        if (pr->max_invocations) lower(&l->max_invocations, pr->max_invocations);
        if (pr->max_range) lower(&l->max_range, pr->max_range);
        if (pr->max_alloc) lower(&l->max_alloc, pr->max_alloc);
        for (size_t k = 0; k < 2; k++)
            if (pr->set[k]) *(bool *)((char *)l + pr->set[k] - 1) = true;
        return true;
    }
    return false;
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
                       "small-buffers, discrete, noimport, nofuse, fuse, noidot, idot, novtiles, norepack, mm_f16, nomm_f16, tex, notex; overrides: max_shared, "
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
