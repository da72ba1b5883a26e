/* device.c: the Vulkan instance, what a physical device can do (with the
 * limits spec applied), and the logical device with its compute queue. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/vulkan/vk_internal.h"
#include "common/alloc.h"
#include "common/status.h"

#define VALIDATION_LAYER "VK_LAYER_KHRONOS_validation"

/* -------------------------------------------------------------- instance */

/* Counts errors into the backend's counter (the messenger's user data) and
 * prints the first few. */
static VKAPI_ATTR VkBool32 VKAPI_CALL on_message(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                                                 VkDebugUtilsMessageTypeFlagsEXT types,
                                                 const VkDebugUtilsMessengerCallbackDataEXT *data,
                                                 void *user) {
    if (!(severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT)) return VK_FALSE;
    _Atomic uint64_t *count = user;
    uint64_t n = count ? atomic_fetch_add(count, 1) : 0;
    if (n < 20) fprintf(stderr, "edgelm vulkan validation: %s\n", data->pMessage);
    return VK_FALSE;
}

static elm_status layer_available(const char *name, bool *found) {
    *found = false;
    uint32_t n = 0;
    if (vkEnumerateInstanceLayerProperties(&n, NULL) != VK_SUCCESS || n == 0) return ELM_OK;
    VkLayerProperties *props = elmi_calloc(n, sizeof *props);
    if (!props) return ELM_ERR_NO_MEMORY;
    if (vkEnumerateInstanceLayerProperties(&n, props) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !*found; i++) *found = !strcmp(props[i].layerName, name);
    elmi_free(props);
    return ELM_OK;
}

static elm_status instance_ext_available(const char *name, bool *found) {
    *found = false;
    uint32_t n = 0;
    if (vkEnumerateInstanceExtensionProperties(NULL, &n, NULL) != VK_SUCCESS || n == 0)
        return ELM_OK;
    VkExtensionProperties *props = elmi_calloc(n, sizeof *props);
    if (!props) return ELM_ERR_NO_MEMORY;
    if (vkEnumerateInstanceExtensionProperties(NULL, &n, props) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !*found; i++) *found = !strcmp(props[i].extensionName, name);
    elmi_free(props);
    return ELM_OK;
}

static uint32_t loader_version(void) {
    PFN_vkEnumerateInstanceVersion fn =
        (PFN_vkEnumerateInstanceVersion)vkGetInstanceProcAddr(NULL, "vkEnumerateInstanceVersion");
    uint32_t v = VK_API_VERSION_1_0;
    if (fn && fn(&v) != VK_SUCCESS) v = VK_API_VERSION_1_0;
    return v;
}

static void create_messenger(vk_instance *vi, _Atomic uint64_t *count) {
    PFN_vkCreateDebugUtilsMessengerEXT create = (PFN_vkCreateDebugUtilsMessengerEXT)
        vkGetInstanceProcAddr(vi->inst, "vkCreateDebugUtilsMessengerEXT");
    VkDebugUtilsMessengerCreateInfoEXT ci = {
        .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
        .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
        .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT,
        .pfnUserCallback = on_message,
        .pUserData = count,
    };
    if (!create || create(vi->inst, &ci, NULL, &vi->messenger) != VK_SUCCESS)
        vi->messenger = VK_NULL_HANDLE;
}

elm_status elmi_vk_instance_create(bool validation, bool quiet, _Atomic uint64_t *error_count,
                              vk_instance *out, char *err, size_t err_size) {
    memset(out, 0, sizeof *out);
    uint32_t version = loader_version();
    if (version < VK_API_VERSION_1_1)
        return elmi_errorf(err, err_size, ELM_ERR_UNSUPPORTED, "the Vulkan loader is older than 1.1");
    if (version > VK_API_VERSION_1_3) version = VK_API_VERSION_1_3;
    bool have_layer = false, have_debug = false, have_portability = false;
    elm_status st = validation ? layer_available(VALIDATION_LAYER, &have_layer) : ELM_OK;
    if (st == ELM_OK && validation && have_layer)
        st = instance_ext_available(VK_EXT_DEBUG_UTILS_EXTENSION_NAME, &have_debug);
    if (st == ELM_OK)
        st = instance_ext_available(VK_KHR_PORTABILITY_ENUMERATION_EXTENSION_NAME,
                                    &have_portability);
    if (st != ELM_OK) {
        if (err && err_size) snprintf(err, err_size, "out of memory creating the Vulkan instance");
        return st;
    }
    if (validation && !have_layer) {
        if (!quiet) fprintf(stderr, "edgelm vulkan: %s is not installed; validation is off\n",
                            VALIDATION_LAYER);
        validation = false;
    }
    const char *exts[2];
    uint32_t n_ext = 0;
    VkInstanceCreateFlags flags = 0;
    if (validation && have_debug) exts[n_ext++] = VK_EXT_DEBUG_UTILS_EXTENSION_NAME;
    /* Lists portability drivers (MoltenVK) too. */
    if (have_portability) {
        exts[n_ext++] = VK_KHR_PORTABILITY_ENUMERATION_EXTENSION_NAME;
        flags |= VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR;
    }
    const char *layers[] = {VALIDATION_LAYER};
    VkApplicationInfo app = {
        .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
        .pApplicationName = "edgelm",
        .pEngineName = "edgelm",
        .apiVersion = version,
    };
    VkInstanceCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
        .flags = flags,
        .pApplicationInfo = &app,
        .enabledLayerCount = validation ? 1u : 0u,
        .ppEnabledLayerNames = layers,
        .enabledExtensionCount = n_ext,
        .ppEnabledExtensionNames = exts,
    };
    VkResult r = vkCreateInstance(&ci, NULL, &out->inst);
    if (r != VK_SUCCESS) {
        out->inst = VK_NULL_HANDLE;
        return elmi_errorf(err, err_size,
                           r == VK_ERROR_OUT_OF_HOST_MEMORY ? ELM_ERR_NO_MEMORY : ELM_ERR_UNSUPPORTED,
                           "vkCreateInstance: %s", elmi_vk_result_name(r));
    }
    out->api_version = version;
    out->validation = validation;
    if (validation && n_ext && !strcmp(exts[0], VK_EXT_DEBUG_UTILS_EXTENSION_NAME))
        create_messenger(out, error_count);
    return ELM_OK;
}

void elmi_vk_instance_destroy(vk_instance *vi) {
    if (!vi->inst) return;
    if (vi->messenger) {
        PFN_vkDestroyDebugUtilsMessengerEXT destroy = (PFN_vkDestroyDebugUtilsMessengerEXT)
            vkGetInstanceProcAddr(vi->inst, "vkDestroyDebugUtilsMessengerEXT");
        if (destroy) destroy(vi->inst, vi->messenger, NULL);
    }
    vkDestroyInstance(vi->inst, NULL);
    memset(vi, 0, sizeof *vi);
}

elm_status elmi_vk_physical_devices(VkInstance inst, VkPhysicalDevice **out, uint32_t *n) {
    *out = NULL;
    *n = 0;
    uint32_t count = 0;
    if (vkEnumeratePhysicalDevices(inst, &count, NULL) != VK_SUCCESS || count == 0) return ELM_OK;
    VkPhysicalDevice *pd = elmi_calloc(count, sizeof *pd);
    if (!pd) return ELM_ERR_NO_MEMORY;
    VkResult r = vkEnumeratePhysicalDevices(inst, &count, pd);
    if (r != VK_SUCCESS && r != VK_INCOMPLETE) {
        elmi_free(pd);
        return ELM_OK;
    }
    *out = pd;
    *n = count;
    return ELM_OK;
}

/* ------------------------------------------------------- physical device */

typedef struct dev_exts {
    VkExtensionProperties *props;
    uint32_t n;
} dev_exts;

static elm_status device_exts(VkPhysicalDevice pd, dev_exts *e) {
    *e = (dev_exts){0};
    if (vkEnumerateDeviceExtensionProperties(pd, NULL, &e->n, NULL) != VK_SUCCESS || !e->n)
        return ELM_OK;
    e->props = elmi_calloc(e->n, sizeof *e->props);
    if (!e->props) return ELM_ERR_NO_MEMORY;
    if (vkEnumerateDeviceExtensionProperties(pd, NULL, &e->n, e->props) != VK_SUCCESS) {
        elmi_free(e->props);
        *e = (dev_exts){0};
    }
    return ELM_OK;
}

static bool has_ext(const dev_exts *e, const char *name) {
    for (uint32_t i = 0; i < e->n; i++)
        if (!strcmp(e->props[i].extensionName, name)) return true;
    return false;
}

static const char *type_name(VkPhysicalDeviceType t) {
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual";
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "cpu";
    default: return "other";
    }
}

/* Properties beyond Vulkan 1.0, each chained only where the device has it. */
typedef struct props_chain {
    VkPhysicalDeviceProperties2 p2;
    VkPhysicalDeviceSubgroupProperties sub;
    VkPhysicalDeviceMaintenance3Properties m3;
    VkPhysicalDeviceDriverProperties drv;
    VkPhysicalDeviceSubgroupSizeControlProperties ssc;
    VkPhysicalDeviceShaderIntegerDotProductProperties dot;
    bool has_drv, has_ssc, has_dot;
} props_chain;

static bool has_int_dot(const dev_exts *e, uint32_t api) {
    return api >= VK_API_VERSION_1_3 || has_ext(e, VK_KHR_SHADER_INTEGER_DOT_PRODUCT_EXTENSION_NAME);
}

static void query_props(VkPhysicalDevice pd, const dev_exts *e, uint32_t api, props_chain *c) {
    memset(c, 0, sizeof *c);
    c->p2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2;
    c->sub.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES;
    c->m3.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES;
    c->drv.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES;
    c->ssc.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_PROPERTIES;
    c->dot.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_PROPERTIES;
    void **next = &c->p2.pNext;
    *next = &c->sub, next = &c->sub.pNext;
    *next = &c->m3, next = &c->m3.pNext;
    c->has_drv = api >= VK_API_VERSION_1_2 || has_ext(e, VK_KHR_DRIVER_PROPERTIES_EXTENSION_NAME);
    if (c->has_drv) *next = &c->drv, next = &c->drv.pNext;
    c->has_ssc = api >= VK_API_VERSION_1_3 || has_ext(e, VK_EXT_SUBGROUP_SIZE_CONTROL_EXTENSION_NAME);
    if (c->has_ssc) *next = &c->ssc, next = &c->ssc.pNext;
    c->has_dot = has_int_dot(e, api);
    if (c->has_dot) *next = &c->dot, next = &c->dot.pNext;
    vkGetPhysicalDeviceProperties2(pd, &c->p2);
}

typedef struct feats_chain {
    VkPhysicalDeviceFeatures2 f2;
    VkPhysicalDevice16BitStorageFeatures s16;
    VkPhysicalDevice8BitStorageFeatures s8;
    VkPhysicalDeviceShaderFloat16Int8Features f16;
    VkPhysicalDeviceShaderIntegerDotProductFeatures dot;
    VkPhysicalDeviceSubgroupSizeControlFeatures sgc;
} feats_chain;

static void query_feats(VkPhysicalDevice pd, const dev_exts *e, uint32_t api, feats_chain *c) {
    memset(c, 0, sizeof *c);
    c->f2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2;
    c->s16.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES;
    c->s8.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_8BIT_STORAGE_FEATURES;
    c->f16.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES;
    c->dot.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES;
    c->sgc.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_FEATURES;
    void **next = &c->f2.pNext;
    *next = &c->s16, next = &c->s16.pNext;
    if (api >= VK_API_VERSION_1_2 || has_ext(e, VK_KHR_8BIT_STORAGE_EXTENSION_NAME))
        *next = &c->s8, next = &c->s8.pNext;
    if (api >= VK_API_VERSION_1_2 || has_ext(e, VK_KHR_SHADER_FLOAT16_INT8_EXTENSION_NAME))
        *next = &c->f16, next = &c->f16.pNext;
    if (has_int_dot(e, api)) *next = &c->dot, next = &c->dot.pNext;
    if (api >= VK_API_VERSION_1_3 || has_ext(e, VK_EXT_SUBGROUP_SIZE_CONTROL_EXTENSION_NAME))
        *next = &c->sgc, next = &c->sgc.pNext;
    vkGetPhysicalDeviceFeatures2(pd, &c->f2);
}

static void fill_heaps(VkPhysicalDevice pd, const dev_exts *e, vk_caps *caps,
                       elm_device_info *info) {
    VkPhysicalDeviceMemoryBudgetPropertiesEXT budget = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT};
    VkPhysicalDeviceMemoryProperties2 mp = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2};
    caps->ext_budget = has_ext(e, VK_EXT_MEMORY_BUDGET_EXTENSION_NAME);
    if (caps->ext_budget) mp.pNext = &budget;
    vkGetPhysicalDeviceMemoryProperties2(pd, &mp);
    const VkPhysicalDeviceMemoryProperties *m = &mp.memoryProperties;
    info->n_heaps = m->memoryHeapCount < ELM_MAX_HEAPS ? m->memoryHeapCount : ELM_MAX_HEAPS;
    for (uint32_t i = 0; i < info->n_heaps; i++) {
        info->heap_size[i] = m->memoryHeaps[i].size;
        info->heap_budget[i] = caps->ext_budget ? budget.heapBudget[i] : 0;
        info->heap_device_local[i] = m->memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT;
    }
    bool mappable_local = false;
    const VkMemoryPropertyFlags want = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT |
                                       VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                       VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    for (uint32_t i = 0; i < m->memoryTypeCount; i++)
        if ((m->memoryTypes[i].propertyFlags & want) == want) mappable_local = true;
    caps->uma = mappable_local && (caps->type == VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU ||
                                   caps->type == VK_PHYSICAL_DEVICE_TYPE_CPU);
}

static uint64_t min_u64(uint64_t a, uint64_t b) {
    return b && b < a ? b : a;
}

static void apply_limits(const vk_limits *l, vk_caps *c) {
    c->max_shared = (uint32_t)min_u64(c->max_shared, l->max_shared);
    c->max_invocations = (uint32_t)min_u64(c->max_invocations, l->max_invocations);
    for (int i = 0; i < 3; i++)
        if (c->max_wg_size[i] > c->max_invocations) c->max_wg_size[i] = c->max_invocations;
    c->max_range = min_u64(c->max_range, l->max_range);
    c->max_alloc = min_u64(c->max_alloc, l->max_alloc);
    if (l->mv_rows) c->mv_rows = l->mv_rows > 64 ? 64 : (uint32_t)l->mv_rows;
    if (l->mv_lanes) c->mv_lanes = l->mv_lanes > 1 ? 2 : 1;
    if (l->mv_tokens) c->mv_tokens = l->mv_tokens > 8 ? 8 : (uint32_t)l->mv_tokens;
    if (l->no_fp16) c->fp16 = false;
    if (l->no_storage16) c->storage16 = false;
    if (l->no_storage8) c->storage8 = false;
    if (l->no_subgroup) c->subgroup_arith = c->subgroup_shuffle = c->sg_control = c->ext_sg_control = false;
    if (l->no_uma) c->uma = false;
    if (l->no_import) c->ext_host_import = false;
    c->max_storage_buffers = (uint32_t)min_u64(c->max_storage_buffers, l->max_storage_buffers);
    c->n_slots = c->max_storage_buffers >= VK_N_BIND + 1 ? VK_N_BIND : VK_N_BIND_CORE;
    if (l->no_idot) c->int_dot = c->ext_int_dot = false;
    c->mv_idot = c->int_dot && (c->int_dot_accel || l->idot);
    c->repack = !l->no_repack;
    /* On lavapipe F16 products measured even or slower than the F16-staged
     * tiles and integer-dot tiles 1.17x faster (backends/vulkan/README.md);
     * CPU devices take either only when forced: the int-dot tiles would
     * change every fast prefill the tests and CPU comparisons see. */
    c->mm_idot = c->mv_idot;
    c->mm_f16 = c->fp16 && c->storage16 && !l->no_mm_f16 && (l->mm_f16 || c->type != VK_PHYSICAL_DEVICE_TYPE_CPU);
    c->fa_vtiles = !l->no_vtiles;
    /* On lavapipe a storage-buffer load is a loop over the lanes and a
     * texel fetch one gather: a read-only kernel in the mat-vec's pattern
     * measured 2.3x the bytes per second through texel buffers
     * (docs/measurements.md). GPUs keep storage buffers until measured. */
    c->mv_tex = c->mv_tex && !l->no_tex && (l->tex || c->type == VK_PHYSICAL_DEVICE_TYPE_CPU);
    /* GPUs are what fusion is for. On lavapipe the fused storage-buffer
     * kernels measured 0.7-0.9x of the unfused ones at decode, and the
     * fused texel kernels 1.3-1.5x (docs/measurements.md): so a CPU device
     * fuses by default only where texels are read (fuse_texel_only), and
     * everything under fuse. */
    bool cpu = c->type == VK_PHYSICAL_DEVICE_TYPE_CPU;
    c->fuse = c->n_slots == VK_N_BIND && !l->no_fuse && (l->fuse || !cpu || c->mv_tex);
    c->fuse_texel_only = c->fuse && cpu && !l->fuse;
}

static void fill_caps(const props_chain *pc, const feats_chain *fc, const dev_exts *e,
                      vk_caps *c) {
    const VkPhysicalDeviceProperties *p = &pc->p2.properties;
    const VkPhysicalDeviceLimits *L = &p->limits;
    c->api_version = p->apiVersion;
    c->type = p->deviceType;
    c->vendor_id = p->vendorID;
    c->device_id = p->deviceID;
    memcpy(c->cache_uuid, p->pipelineCacheUUID, VK_UUID_SIZE);
    c->max_shared = L->maxComputeSharedMemorySize;
    c->max_invocations = L->maxComputeWorkGroupInvocations;
    for (int i = 0; i < 3; i++) {
        c->max_wg_size[i] = L->maxComputeWorkGroupSize[i];
        c->max_wg_count[i] = L->maxComputeWorkGroupCount[i];
    }
    c->subgroup_size = pc->sub.subgroupSize ? pc->sub.subgroupSize : 1;
    /* Without size control the device may still run narrower subgroups
     * than it reports; 1 makes the reductions' bound always safe. */
    c->min_subgroup_size = pc->has_ssc && pc->ssc.minSubgroupSize ? pc->ssc.minSubgroupSize : 1;
    c->sg_control = pc->has_ssc && fc->sgc.subgroupSizeControl &&
                    (pc->ssc.requiredSubgroupSizeStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                    pc->ssc.minSubgroupSize && pc->ssc.maxSubgroupSize >= pc->ssc.minSubgroupSize;
    c->max_subgroup_size = c->sg_control ? pc->ssc.maxSubgroupSize : c->subgroup_size;
    c->ext_sg_control = c->sg_control && c->api_version < VK_API_VERSION_1_3;
    const VkSubgroupFeatureFlags ops = VK_SUBGROUP_FEATURE_BASIC_BIT | VK_SUBGROUP_FEATURE_ARITHMETIC_BIT;
    c->subgroup_arith = (pc->sub.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                        (pc->sub.supportedOperations & ops) == ops;
    c->subgroup_shuffle = c->subgroup_arith && (pc->sub.supportedOperations & VK_SUBGROUP_FEATURE_SHUFFLE_BIT);
    c->storage16 = fc->s16.storageBuffer16BitAccess;
    c->storage8 = fc->s8.storageBuffer8BitAccess;
    c->fp16 = fc->f16.shaderFloat16;
    c->int_dot = fc->dot.shaderIntegerDotProduct;
    c->int_dot_accel = c->int_dot && pc->dot.integerDotProduct4x8BitPackedSignedAccelerated;
    c->ext_int_dot = c->int_dot && c->api_version < VK_API_VERSION_1_3;
    c->max_range = L->maxStorageBufferRange;
    c->max_alloc = pc->m3.maxMemoryAllocationSize ? pc->m3.maxMemoryAllocationSize : L->maxStorageBufferRange;
    c->offset_align = L->minStorageBufferOffsetAlignment < 4 ? 4 : L->minStorageBufferOffsetAlignment;
    c->max_push = L->maxPushConstantsSize;
    c->max_storage_buffers = L->maxPerStageDescriptorStorageBuffers < L->maxDescriptorSetStorageBuffers
                                 ? L->maxPerStageDescriptorStorageBuffers
                                 : L->maxDescriptorSetStorageBuffers;
    if (L->maxPerStageResources < c->max_storage_buffers) c->max_storage_buffers = L->maxPerStageResources;
    c->ext_f16i8 = has_ext(e, VK_KHR_SHADER_FLOAT16_INT8_EXTENSION_NAME);
    c->ext_portability = has_ext(e, "VK_KHR_portability_subset");
    c->ext_host_import = has_ext(e, VK_EXT_EXTERNAL_MEMORY_HOST_EXTENSION_NAME);
}

/* Texel-buffer reads (caps.mv_tex) need RGBA32 and R32UI as uniform
 * texel buffers, and room for the fused kernels' views (they count as
 * sampled images): the spec requires both, but a driver that lies is
 * refused. */
static void fill_texel_caps(VkPhysicalDevice pd, const VkPhysicalDeviceLimits *L, vk_caps *c) {
    static const VkFormat fmts[3] = {VK_FORMAT_R32G32B32A32_UINT, VK_FORMAT_R32G32B32A32_SFLOAT, VK_FORMAT_R32_UINT};
    c->mv_tex = L->maxTexelBufferElements > 0 && L->maxPerStageDescriptorSampledImages >= VK_N_TEX_FUSED &&
                L->maxDescriptorSetSampledImages >= VK_N_TEX_FUSED;
    for (int i = 0; i < 3; i++) {
        VkFormatProperties fp;
        vkGetPhysicalDeviceFormatProperties(pd, fmts[i], &fp);
        if (!(fp.bufferFeatures & VK_FORMAT_FEATURE_UNIFORM_TEXEL_BUFFER_BIT)) c->mv_tex = false;
    }
    c->max_texel = L->maxTexelBufferElements;
    c->texel_align = L->minTexelBufferOffsetAlignment < 16 ? 16 : L->minTexelBufferOffsetAlignment;
}

static void fill_info(const props_chain *pc, const vk_caps *c, int index, elm_device_info *info) {
    const VkPhysicalDeviceProperties *p = &pc->p2.properties;
    snprintf(info->name, sizeof info->name, "%s", p->deviceName);
    snprintf(info->backend, sizeof info->backend, "vulkan");
    snprintf(info->type, sizeof info->type, "%s", type_name(p->deviceType));
    if (pc->has_drv)
        snprintf(info->driver, sizeof info->driver, "%.120s %.120s", pc->drv.driverName, pc->drv.driverInfo);
    else
        snprintf(info->driver, sizeof info->driver, "driver 0x%x", p->driverVersion);
    snprintf(info->id, sizeof info->id, "vulkan:%d", index);
    info->api_version = p->apiVersion;
    info->subgroup_size = c->subgroup_size;
    info->shared_memory_bytes = c->max_shared;
    info->max_storage_buffer_range = c->max_range;
    info->max_memory_allocation_size = c->max_alloc;
    info->fp16 = c->fp16;
    info->storage16 = c->storage16;
    info->storage8 = c->storage8;
    info->int_dot = c->int_dot;
    info->subgroup_arithmetic = c->subgroup_arith;
    info->uma = c->uma;
}

elm_status elmi_vk_query_device(VkPhysicalDevice pd, int index, const vk_limits *lim, vk_caps *caps,
                           elm_device_info *info) {
    memset(caps, 0, sizeof *caps);
    memset(info, 0, sizeof *info);
    VkPhysicalDeviceProperties base;
    vkGetPhysicalDeviceProperties(pd, &base);
    dev_exts e;
    ELM_TRY(device_exts(pd, &e));
    props_chain pc;
    feats_chain fc;
    if (base.apiVersion >= VK_API_VERSION_1_1) {
        query_props(pd, &e, base.apiVersion, &pc);
        query_feats(pd, &e, base.apiVersion, &fc);
    } else {
        memset(&pc, 0, sizeof pc);
        memset(&fc, 0, sizeof fc);
        pc.p2.properties = base;
    }
    fill_caps(&pc, &fc, &e, caps);
    fill_texel_caps(pd, &pc.p2.properties.limits, caps);
    fill_heaps(pd, &e, caps, info);
    apply_limits(lim, caps);
    fill_info(&pc, caps, index, info);
    elmi_free(e.props);
    return ELM_OK;
}

/* ---------------------------------------------------------------- device */

/* The queue family to use (-1: none computes) and its timestamp bits. */
static elm_status pick_queue_family(VkPhysicalDevice pd, int *family, uint32_t *timestamp_bits) {
    uint32_t n = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, NULL);
    VkQueueFamilyProperties *q = elmi_calloc(n ? n : 1, sizeof *q);
    if (!q) return ELM_ERR_NO_MEMORY;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, q);
    int best = -1;
    /* A compute-only family runs beside graphics work without sharing its queue. */
    for (uint32_t i = 0; i < n && best < 0; i++)
        if ((q[i].queueFlags & VK_QUEUE_COMPUTE_BIT) && !(q[i].queueFlags & VK_QUEUE_GRAPHICS_BIT) &&
            q[i].queueCount > 0)
            best = (int)i;
    for (uint32_t i = 0; i < n && best < 0; i++)
        if ((q[i].queueFlags & VK_QUEUE_COMPUTE_BIT) && q[i].queueCount > 0) best = (int)i;
    *family = best;
    *timestamp_bits = best >= 0 ? q[best].timestampValidBits : 0;
    elmi_free(q);
    return ELM_OK;
}

static elm_status create_device(vk_backend *vk, char *err, size_t err_size) {
    const vk_caps *c = &vk->caps;
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
        .queueFamilyIndex = vk->queue_family,
        .queueCount = 1,
        .pQueuePriorities = &prio,
    };
    /* Only what the (possibly limited) caps allow, so that validation flags
     * a shader variant that needs a removed feature. */
    VkPhysicalDeviceShaderFloat16Int8Features f16 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES,
        .shaderFloat16 = c->fp16,
    };
    VkPhysicalDevice16BitStorageFeatures s16 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES,
        .pNext = c->fp16 ? &f16 : NULL,
        .storageBuffer16BitAccess = c->storage16,
    };
    VkPhysicalDeviceShaderIntegerDotProductFeatures dot = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES,
        .pNext = &s16,
        .shaderIntegerDotProduct = VK_TRUE,
    };
    void *head = c->int_dot ? (void *)&dot : (void *)&s16;
    VkPhysicalDeviceSubgroupSizeControlFeatures sgc = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_FEATURES,
        .pNext = head,
        .subgroupSizeControl = VK_TRUE,
    };
    VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
                                    .pNext = c->sg_control ? (void *)&sgc : head};
    const char *exts[8];
    uint32_t n_ext = 0;
    if (c->fp16 && c->api_version < VK_API_VERSION_1_2) exts[n_ext++] = VK_KHR_SHADER_FLOAT16_INT8_EXTENSION_NAME;
    if (c->ext_portability) exts[n_ext++] = "VK_KHR_portability_subset";
    if (c->ext_budget) exts[n_ext++] = VK_EXT_MEMORY_BUDGET_EXTENSION_NAME;
    if (c->ext_sg_control) exts[n_ext++] = VK_EXT_SUBGROUP_SIZE_CONTROL_EXTENSION_NAME;
    if (c->ext_int_dot) exts[n_ext++] = VK_KHR_SHADER_INTEGER_DOT_PRODUCT_EXTENSION_NAME;
    /* Imports only serve unified memory (import.c). */
    if (c->ext_host_import && c->uma) exts[n_ext++] = VK_EXT_EXTERNAL_MEMORY_HOST_EXTENSION_NAME;
    VkDeviceCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
        .pNext = &f2,
        .queueCreateInfoCount = 1,
        .pQueueCreateInfos = &qci,
        .enabledExtensionCount = n_ext,
        .ppEnabledExtensionNames = exts,
    };
    VkResult r = vkCreateDevice(vk->phys, &ci, NULL, &vk->dev);
    if (r != VK_SUCCESS) {
        vk->dev = VK_NULL_HANDLE;
        return elmi_errorf(err, err_size, r == VK_ERROR_OUT_OF_HOST_MEMORY ? ELM_ERR_NO_MEMORY : ELM_ERR_DEVICE,
                           "vkCreateDevice on %s: %s", vk->info.name, elmi_vk_result_name(r));
    }
    vkGetDeviceQueue(vk->dev, vk->queue_family, 0, &vk->queue);
    return ELM_OK;
}

elm_status elmi_vk_device_open(vk_backend *vk, int index, const vk_limits *lim, char *err,
                          size_t err_size) {
    VkPhysicalDevice *pd;
    uint32_t n;
    ELM_TRY(elmi_vk_physical_devices(vk->d->vi.inst, &pd, &n));
    if (n == 0 || index >= (int)n) {
        elmi_free(pd);
        if (n) return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "no Vulkan device %d (%u found)", index, n);
        return elmi_errorf(err, err_size, ELM_ERR_UNSUPPORTED, "no Vulkan device found");
    }
    vk->phys = pd[index];
    vk->index = index;
    elmi_free(pd);
    int qf = -1;
    elm_status st = elmi_vk_query_device(vk->phys, index, lim, &vk->caps, &vk->info);
    if (st == ELM_OK) st = pick_queue_family(vk->phys, &qf, &vk->caps.timestamp_bits);
    if (st != ELM_OK)
        return elmi_errorf(err, err_size, st, "out of memory querying Vulkan device %d", index);
    vkGetPhysicalDeviceMemoryProperties(vk->phys, &vk->mem_props);
    if (vk->caps.api_version < VK_API_VERSION_1_1)
        return elmi_errorf(err, err_size, ELM_ERR_UNSUPPORTED, "%s supports only Vulkan 1.0", vk->info.name);
    if (qf < 0) return elmi_errorf(err, err_size, ELM_ERR_UNSUPPORTED, "%s has no compute queue", vk->info.name);
    vk->queue_family = (uint32_t)qf;
    VkPhysicalDeviceProperties props;
    vkGetPhysicalDeviceProperties(vk->phys, &props);
    vk->caps.timestamp_period = props.limits.timestampPeriod;
    if (!(vk->caps.timestamp_period > 0.0f)) vk->caps.timestamp_bits = 0;
    return create_device(vk, err, err_size);
}

