/* pipeline.c: shader modules from the embedded SPIR-V, compute pipelines
 * keyed by module and specialization constants, and the pipeline cache
 * kept on disk between runs.
 *
 * Cache file: <dir>/vulkan-<vendor>-<device>.cache holding
 *   "ELMVKPC1" | u64 data length | u64 FNV-1a of the data | data
 * where data is what vkGetPipelineCacheData returned. Before the data is
 * given to the driver, the checksum and the Vulkan header inside it
 * (header length, version, vendorID, deviceID, pipelineCacheUUID) must
 * match this device; anything else is discarded (and replaced on exit),
 * so neither a corrupted file nor another driver's cache reaches the
 * driver. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backends/vulkan/vk_internal.h"
#include "common/alloc.h"

#define MAGIC "ELMVKPC1"
#define WRAP_BYTES 24
#define VK_HEADER_BYTES (16 + VK_UUID_SIZE)

const elmi_spv *elmi_spv_find(const char *name) {
    for (size_t f = 0; f < elmi_spv_n_families; f++) {
        const elmi_spv_family *fam = &elmi_spv_families[f];
        for (size_t i = 0; i < *fam->count; i++)
            if (!strcmp(fam->modules[i].name, name)) return &fam->modules[i];
    }
    return NULL;
}

static uint64_t fnv1a(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p) {
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static void wr64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* ------------------------------------------------------------ cache file */

static bool make_dirs(const char *path) {
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return false;
        *p = '/';
    }
    return mkdir(tmp, 0755) == 0 || errno == EEXIST;
}

static void cache_dir_default(char *out, size_t n) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && *xdg == '/')
        snprintf(out, n, "%s/edgelm", xdg);
    else if (home && *home)
        snprintf(out, n, "%s/.cache/edgelm", home);
    else
        out[0] = '\0';
}

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t *buf = NULL;
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = elmi_malloc(n ? (size_t)n : 1))) {
        if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
            elmi_free(buf);
            buf = NULL;
        }
        *len = (size_t)n;
    }
    fclose(f);
    return buf;
}

/* Why `file` cannot seed this device's cache, or NULL when it can. */
static const char *check_file(const vk_caps *c, const uint8_t *file, size_t len) {
    if (len < WRAP_BYTES || memcmp(file, MAGIC, 8)) return "not an edgelm pipeline cache";
    uint64_t n = rd64(file + 8);
    if (n != len - WRAP_BYTES) return "truncated or resized";
    const uint8_t *d = file + WRAP_BYTES;
    if (fnv1a(d, (size_t)n) != rd64(file + 16)) return "checksum mismatch (corrupted)";
    if (n < VK_HEADER_BYTES || rd32(d) < VK_HEADER_BYTES || rd32(d) > n) return "bad header length";
    if (rd32(d + 4) != VK_PIPELINE_CACHE_HEADER_VERSION_ONE) return "unknown header version";
    if (rd32(d + 8) != c->vendor_id || rd32(d + 12) != c->device_id) return "made for another device";
    if (memcmp(d + 16, c->cache_uuid, VK_UUID_SIZE)) return "made by another driver version";
    return NULL;
}

/* The initial data for vkCreatePipelineCache, or NULL (with a note). */
static uint8_t *load_cache(vk_backend *vk, size_t *len) {
    be_vk_stats *s = &vk->d->stats;
    size_t n = 0;
    uint8_t *file = read_file(s->cache_path, &n);
    if (!file) {
        snprintf(s->cache_note, sizeof s->cache_note, "no cache file yet");
        return NULL;
    }
    const char *why = check_file(&vk->caps, file, n);
    if (why) {
        snprintf(s->cache_note, sizeof s->cache_note, "discarded: %s", why);
        s->cache_rejected = true;
        if (!vk->quiet)
            fprintf(stderr, "edgelm vulkan: pipeline cache %s %s\n", s->cache_path, s->cache_note);
        elmi_free(file);
        return NULL;
    }
    *len = n - WRAP_BYTES;
    memmove(file, file + WRAP_BYTES, *len);
    return file;
}

static void save_cache(vk_backend *vk) {
    const char *path = vk->d->stats.cache_path;
    size_t n = 0;
    if (!path[0] || !vk->d->pcache || vkGetPipelineCacheData(vk->dev, vk->d->pcache, &n, NULL) != VK_SUCCESS ||
        n == 0)
        return;
    uint8_t *buf = elmi_malloc(n + WRAP_BYTES);
    if (!buf) return;
    if (vkGetPipelineCacheData(vk->dev, vk->d->pcache, &n, buf + WRAP_BYTES) == VK_SUCCESS) {
        memcpy(buf, MAGIC, 8);
        wr64(buf + 8, n);
        wr64(buf + 16, fnv1a(buf + WRAP_BYTES, n));
        char tmp[600];
        snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
        FILE *f = fopen(tmp, "wb");
        bool ok = f && fwrite(buf, 1, n + WRAP_BYTES, f) == n + WRAP_BYTES;
        if (f && fclose(f) != 0) ok = false;
        /* rename() is atomic: a concurrent reader sees the old file or the new one. */
        if (!ok || rename(tmp, path) != 0) remove(tmp);
    }
    elmi_free(buf);
}

static elm_status create_cache(vk_backend *vk, const char *dir_opt) {
    be_vk_stats *s = &vk->d->stats;
    char dir[400];
    if (dir_opt) snprintf(dir, sizeof dir, "%s", dir_opt);
    else cache_dir_default(dir, sizeof dir);
    uint8_t *data = NULL;
    size_t len = 0;
    if (dir[0] && make_dirs(dir)) {
        snprintf(s->cache_path, sizeof s->cache_path, "%s/vulkan-%04x-%04x.cache", dir,
                 vk->caps.vendor_id, vk->caps.device_id);
        data = load_cache(vk, &len);
    } else {
        snprintf(s->cache_note, sizeof s->cache_note, dir[0] ? "cannot create %s" : "no cache directory", dir);
    }
    VkPipelineCacheCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO,
        .initialDataSize = data ? len : 0,
        .pInitialData = data,
    };
    VkResult r = vkCreatePipelineCache(vk->dev, &ci, NULL, &vk->d->pcache);
    if (r != VK_SUCCESS && data) { /* the driver refused the data: start empty */
        snprintf(s->cache_note, sizeof s->cache_note, "discarded: refused by the driver");
        s->cache_rejected = true;
        elmi_free(data);
        data = NULL;
        ci.initialDataSize = 0;
        ci.pInitialData = NULL;
        r = vkCreatePipelineCache(vk->dev, &ci, NULL, &vk->d->pcache);
    }
    if (data) {
        s->cache_loaded = true;
        s->cache_load_bytes = len;
        s->cache_note[0] = '\0';
    }
    elmi_free(data);
    return elmi_vk_check(vk, r, "vkCreatePipelineCache");
}

/* --------------------------------------------------------------- layouts */

static elm_status create_layouts(vk_backend *vk) {
    VkDescriptorSetLayoutBinding b[VK_N_BIND + 1 + VK_N_TEX_FUSED];
    uint32_t n_bind = vk->caps.n_slots + 1;
    for (uint32_t i = 0; i < n_bind; i++)
        b[i] = (VkDescriptorSetLayoutBinding){
            .binding = i,
            .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
            .descriptorCount = 1,
            .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
        };
    /* Only the _tex variants use these, so other dispatches leave them
     * unwritten; the fused ones exist only with the 12-binding layout. */
    uint32_t n_tex = !vk->caps.mv_tex ? 0 : vk->caps.n_slots == VK_N_BIND ? VK_N_TEX_FUSED : VK_N_TEX;
    for (uint32_t i = 0; i < n_tex; i++)
        b[n_bind++] = (VkDescriptorSetLayoutBinding){
            .binding = VK_BIND_TEX_W + i,
            .descriptorType = VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER,
            .descriptorCount = 1,
            .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
        };
    VkDescriptorSetLayoutCreateInfo dci = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
        .bindingCount = n_bind,
        .pBindings = b,
    };
    ELM_TRY(elmi_vk_check(vk, vkCreateDescriptorSetLayout(vk->dev, &dci, NULL, &vk->d->dsl),
                     "vkCreateDescriptorSetLayout"));
    VkPushConstantRange pcr = {.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT, .size = VK_PC_WORDS * 4};
    VkPipelineLayoutCreateInfo lci = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
        .setLayoutCount = 1,
        .pSetLayouts = &vk->d->dsl,
        .pushConstantRangeCount = 1,
        .pPushConstantRanges = &pcr,
    };
    return elmi_vk_check(vk, vkCreatePipelineLayout(vk->dev, &lci, NULL, &vk->d->layout), "vkCreatePipelineLayout");
}

elm_status elmi_vk_pipeline_init(vk_backend *vk, const char *cache_dir) {
    ELM_TRY(create_layouts(vk));
    return create_cache(vk, cache_dir);
}

void elmi_vk_pipeline_free(vk_backend *vk) {
    if (!vk->dev) return;
    if (!atomic_load(&vk->d->lost) && (vk->d->stats.n_pipelines > 0 || vk->d->stats.cache_rejected)) save_cache(vk);
    for (uint32_t i = 0; i < vk->d->n_pipes; i++) vkDestroyPipeline(vk->dev, vk->d->pipes[i].pipe, NULL);
    for (uint32_t i = 0; i < vk->d->n_modules; i++) vkDestroyShaderModule(vk->dev, vk->d->modules[i].mod, NULL);
    elmi_free(vk->d->pipes);
    elmi_free(vk->d->modules);
    vk->d->pipes = NULL;
    vk->d->modules = NULL;
    vk->d->n_pipes = vk->d->n_modules = 0;
    if (vk->d->pcache) vkDestroyPipelineCache(vk->dev, vk->d->pcache, NULL);
    if (vk->d->layout) vkDestroyPipelineLayout(vk->dev, vk->d->layout, NULL);
    if (vk->d->dsl) vkDestroyDescriptorSetLayout(vk->dev, vk->d->dsl, NULL);
    vk->d->pcache = VK_NULL_HANDLE;
    vk->d->layout = VK_NULL_HANDLE;
    vk->d->dsl = VK_NULL_HANDLE;
}

/* ------------------------------------------------------------- pipelines */

static bool grow(void **p, uint32_t *cap, uint32_t n, size_t elem) {
    if (n < *cap) return true;
    uint32_t c = *cap ? 2 * *cap : 32;
    void *q = elmi_realloc(*p, c * elem);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

static elm_status get_module(vk_backend *vk, const elmi_spv *spv, VkShaderModule *out) {
    for (uint32_t i = 0; i < vk->d->n_modules; i++)
        if (vk->d->modules[i].spv == spv) {
            *out = vk->d->modules[i].mod;
            return ELM_OK;
        }
    if (!grow((void **)&vk->d->modules, &vk->d->cap_modules, vk->d->n_modules, sizeof *vk->d->modules))
        return elmi_vk_fail(vk, ELM_ERR_NO_MEMORY, "out of host memory");
    VkShaderModuleCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
        .codeSize = spv->size,
        .pCode = spv->code,
    };
    ELM_TRY(elmi_vk_check(vk, vkCreateShaderModule(vk->dev, &ci, NULL, out), "vkCreateShaderModule"));
    vk->d->modules[vk->d->n_modules++] = (vk_module){spv, *out};
    return ELM_OK;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static elm_status create_pipeline(vk_backend *vk, const elmi_spv *spv, const uint32_t *spec,
                                  uint32_t n_spec, uint32_t subgroup, VkPipeline *out) {
    VkShaderModule mod;
    ELM_TRY(get_module(vk, spv, &mod));
    VkSpecializationMapEntry map[VK_MAX_SPEC];
    for (uint32_t i = 0; i < n_spec; i++) map[i] = (VkSpecializationMapEntry){i, 4 * i, 4};
    VkSpecializationInfo si = {.mapEntryCount = n_spec, .pMapEntries = map, .dataSize = 4 * n_spec, .pData = spec};
    VkPipelineShaderStageRequiredSubgroupSizeCreateInfo rss = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_REQUIRED_SUBGROUP_SIZE_CREATE_INFO,
        .requiredSubgroupSize = subgroup,
    };
    VkComputePipelineCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage = {
            .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
            .pNext = subgroup ? &rss : NULL,
            .stage = VK_SHADER_STAGE_COMPUTE_BIT,
            .module = mod,
            .pName = "main",
            .pSpecializationInfo = n_spec ? &si : NULL,
        },
        .layout = vk->d->layout,
    };
    double t0 = now_ms();
    VkResult r = vkCreateComputePipelines(vk->dev, vk->d->pcache, 1, &ci, NULL, out);
    vk->d->stats.pipeline_ms += now_ms() - t0;
    if (r != VK_SUCCESS) return elmi_vk_check(vk, r, spv->name);
    vk->d->stats.n_pipelines++;
    return ELM_OK;
}

static elm_status pipeline_find_or_create(vk_backend *vk, const char *name, const uint32_t *spec,
                                          uint32_t n_spec, uint32_t subgroup, VkPipeline *out) {
    const elmi_spv *spv = elmi_spv_find(name);
    if (!spv) return elmi_vk_fail(vk, ELM_ERR_INTERNAL, "no shader module '%s'", name);
    if (n_spec > VK_MAX_SPEC) return elmi_vk_fail(vk, ELM_ERR_INTERNAL, "too many specialization constants");
    if (subgroup && !vk->caps.sg_control) return elmi_vk_fail(vk, ELM_ERR_INTERNAL, "no subgroup size control");
    for (uint32_t i = 0; i < vk->d->n_pipes; i++) {
        const vk_pipe *p = &vk->d->pipes[i];
        if (p->spv == spv && p->n_spec == n_spec && p->subgroup == subgroup && !memcmp(p->spec, spec, 4 * n_spec)) {
            *out = p->pipe;
            return ELM_OK;
        }
    }
    if (!grow((void **)&vk->d->pipes, &vk->d->cap_pipes, vk->d->n_pipes, sizeof *vk->d->pipes))
        return elmi_vk_fail(vk, ELM_ERR_NO_MEMORY, "out of host memory");
    ELM_TRY(create_pipeline(vk, spv, spec, n_spec, subgroup, out));
    vk_pipe *p = &vk->d->pipes[vk->d->n_pipes++];
    p->spv = spv;
    p->n_spec = n_spec;
    p->subgroup = subgroup;
    memcpy(p->spec, spec, 4 * n_spec);
    p->pipe = *out;
    return ELM_OK;
}

elm_status elmi_vk_pipeline_get(vk_backend *vk, const char *name, const uint32_t *spec,
                           uint32_t n_spec, uint32_t subgroup, VkPipeline *out) {
    pthread_mutex_lock(&vk->d->lock);
    elm_status st = pipeline_find_or_create(vk, name, spec, n_spec, subgroup, out);
    pthread_mutex_unlock(&vk->d->lock);
    return st;
}
