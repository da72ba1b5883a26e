/* import.c: host tensors (the memory-mapped weights) read in place through
 * VK_EXT_external_memory_host instead of being copied.
 *
 * memory.c splits a host tensor into row pieces that each fit the
 * allocation and binding limits. Here each piece becomes a VkBuffer bound
 * to imported host memory: the piece's bytes widened on both sides to
 * minImportedHostPointerAlignment (the driver can only import whole
 * aligned units), with vk_seg.base the byte of the buffer where the piece
 * starts (elmi_op_bind adds it to every window). No device memory is spent and
 * nothing is copied; the device reads the mapped file.
 *
 * When any condition fails, nothing is imported and memory.c copies the
 * tensor as before:
 *   - the device has unified memory (caps.uma) and offers the extension,
 *     with a handle type importable for storage buffers (host allocation,
 *     else host-mapped foreign memory). The `discrete` and `noimport`
 *     limits profiles remove the extension;
 *   - the tensor has at least IMPORT_MIN_UNITS alignment units: smaller
 *     ones cost an allocation and whole pinned units for a copy of a few
 *     bytes;
 *   - every piece starts on a 4-byte boundary. Pieces are cut so that
 *     the widened range fits maxMemoryAllocationSize and a window over
 *     the whole piece, slack included, fits maxStorageBufferRange (a
 *     tensor copied as one piece is not cut into more to be imported);
 *   - the widened range is mapped memory: only checked (mincore) beyond
 *     the pages holding the tensor, which exist only where the alignment
 *     exceeds the page size;
 *   - the driver accepts the pointer: vkGetMemoryHostPointerPropertiesEXT
 *     names a memory type the buffer can use, and vkAllocateMemory
 *     succeeds (drivers that pin pages may refuse read-only file
 *     mappings).
 * The widened range may overlap a neighbouring tensor's import; both only
 * read it. Imported memory must stay valid and unchanged while the backend
 * lives, which backend.h already requires of host tensors. */
#define _DEFAULT_SOURCE /* mincore */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "backends/vulkan/vk_internal.h"
#include "common/alloc.h"

#define IMPORT_MIN_UNITS 4
#define IMPORT_USAGE (VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | elmi_vk_texel_usage(&vk->caps))

/* Once per backend: the alignment, the entry point, the handle types the
 * device can import storage buffers from. */
static bool import_probe(vk_backend *vk) {
    if (vk->d->import.probed) return vk->d->import.usable;
    vk->d->import.probed = true;
    if (!vk->caps.uma || !vk->caps.ext_host_import) return false;
    VkPhysicalDeviceExternalMemoryHostPropertiesEXT hp = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_MEMORY_HOST_PROPERTIES_EXT};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &hp};
    vkGetPhysicalDeviceProperties2(vk->phys, &p2);
    VkDeviceSize a = hp.minImportedHostPointerAlignment;
    if (a < 4 || (a & (a - 1))) return false;
    vk->d->import.align = a;
    vk->d->import.get_props = (PFN_vkGetMemoryHostPointerPropertiesEXT)vkGetDeviceProcAddr(
        vk->dev, "vkGetMemoryHostPointerPropertiesEXT");
    if (!vk->d->import.get_props) return false;
    static const VkExternalMemoryHandleTypeFlagBits types[2] = {
        VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT,
        VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_MAPPED_FOREIGN_MEMORY_BIT_EXT,
    };
    vk->d->import.n_types = 0;
    for (int i = 0; i < 2; i++) {
        VkPhysicalDeviceExternalBufferInfo bi = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_BUFFER_INFO,
                                                 .usage = IMPORT_USAGE,
                                                 .handleType = types[i]};
        VkExternalBufferProperties ep = {.sType = VK_STRUCTURE_TYPE_EXTERNAL_BUFFER_PROPERTIES};
        vkGetPhysicalDeviceExternalBufferProperties(vk->phys, &bi, &ep);
        if (ep.externalMemoryProperties.externalMemoryFeatures & VK_EXTERNAL_MEMORY_FEATURE_IMPORTABLE_BIT)
            vk->d->import.types[vk->d->import.n_types++] = types[i];
    }
    vk->d->import.usable = vk->d->import.n_types > 0;
    return vk->d->import.usable;
}

/* Whether [lo, hi) (page-aligned) is mapped. */
static bool span_mapped(uintptr_t lo, uintptr_t hi, uintptr_t page) {
    if (hi <= lo) return true;
#if defined(__linux__)
    unsigned char vec[256];
    if ((hi - lo) / page > sizeof vec) return false;
    return mincore((void *)lo, hi - lo, vec) == 0;
#else
    (void)page;
    return false;
#endif
}

/* The import range [lo, hi) around the bytes [p0, p1) of a host tensor:
 * the pages holding those bytes are mapped (backend.h), the rest is checked. */
static bool range_mapped(uintptr_t lo, uintptr_t hi, uintptr_t p0, uintptr_t p1) {
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0) return false;
    uintptr_t page = (uintptr_t)pg, a = p0 / page * page, b = (p1 + page - 1) / page * page;
    return span_mapped(lo, a < hi ? a : hi, page) && span_mapped(b > lo ? b : lo, hi, page);
}

/* A memory type of `bits`, device-local first. */
static int pick_type(const vk_backend *vk, uint32_t bits) {
    const VkPhysicalDeviceMemoryProperties *m = &vk->mem_props;
    for (uint32_t i = 0; i < m->memoryTypeCount; i++)
        if ((bits & (1u << i)) && (m->memoryTypes[i].propertyFlags & VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT))
            return (int)i;
    for (uint32_t i = 0; i < m->memoryTypeCount; i++)
        if (bits & (1u << i)) return (int)i;
    return -1;
}

/* A buffer over `size` bytes of host memory at `lo` (aligned), imported as `type`. */
static bool import_range(vk_backend *vk, VkExternalMemoryHandleTypeFlagBits type, uintptr_t lo,
                         VkDeviceSize size, vk_seg *out) {
    VkMemoryHostPointerPropertiesEXT hp = {.sType = VK_STRUCTURE_TYPE_MEMORY_HOST_POINTER_PROPERTIES_EXT};
    if (vk->d->import.get_props(vk->dev, type, (void *)lo, &hp) != VK_SUCCESS || !hp.memoryTypeBits) return false;
    VkExternalMemoryBufferCreateInfo ext = {.sType = VK_STRUCTURE_TYPE_EXTERNAL_MEMORY_BUFFER_CREATE_INFO,
                                            .handleTypes = type};
    VkBufferCreateInfo bi = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
        .pNext = &ext,
        .size = size,
        .usage = IMPORT_USAGE,
        .sharingMode = VK_SHARING_MODE_EXCLUSIVE,
    };
    VkBuffer buf;
    if (vkCreateBuffer(vk->dev, &bi, NULL, &buf) != VK_SUCCESS) return false;
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(vk->dev, buf, &req);
    int idx = pick_type(vk, req.memoryTypeBits & hp.memoryTypeBits);
    VkDeviceMemory mem = VK_NULL_HANDLE;
    bool ok = idx >= 0 && req.size <= size;
    if (ok) {
        VkImportMemoryHostPointerInfoEXT imp = {.sType = VK_STRUCTURE_TYPE_IMPORT_MEMORY_HOST_POINTER_INFO_EXT,
                                                .handleType = type,
                                                .pHostPointer = (void *)lo};
        VkMemoryAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                                   .pNext = &imp,
                                   .allocationSize = size,
                                   .memoryTypeIndex = (uint32_t)idx};
        ok = vkAllocateMemory(vk->dev, &ai, NULL, &mem) == VK_SUCCESS;
        if (!ok) mem = VK_NULL_HANDLE;
    }
    if (ok) ok = vkBindBufferMemory(vk->dev, buf, mem, 0) == VK_SUCCESS;
    if (!ok) {
        vkDestroyBuffer(vk->dev, buf, NULL);
        if (mem) vkFreeMemory(vk->dev, mem, NULL);
        return false;
    }
    memset(out, 0, sizeof *out);
    out->buf = buf;
    out->mem = mem;
    out->size = size;
    out->id = atomic_fetch_add(&vk->d->next_seg_id, 1) + 1;
    out->imported = true;
    return true;
}

/* One piece: bytes [ptr, ptr + n) of a host tensor. */
static bool import_piece(vk_backend *vk, const void *ptr, size_t n, vk_seg *out) {
    uintptr_t a = (uintptr_t)vk->d->import.align, p0 = (uintptr_t)ptr, p1, hi;
    if (p0 % 4 || __builtin_add_overflow(p0, (uintptr_t)n, &p1) ||
        __builtin_add_overflow(p1, a - 1, &hi))
        return false;
    uintptr_t lo = p0 / a * a;
    hi = hi / a * a;
    VkDeviceSize size = hi - lo, base = p0 - lo;
    /* The widest window elmi_op_bind makes over the piece: from base rounded
     * down to the offset alignment to the end rounded up to 4 bytes. */
    if (size > vk->caps.max_alloc || base % vk->caps.offset_align + n + 4 > vk->caps.max_range) return false;
    if (!range_mapped(lo, hi, p0, p1)) return false;
    for (uint32_t i = 0; i < vk->d->import.n_types; i++)
        if (import_range(vk, vk->d->import.types[i], lo, size, out)) {
            out->base = base;
            return true;
        }
    return false;
}

/* Rows per imported piece: the widened range (up to two alignment units
 * more than the rows) must fit one allocation, and a window over the
 * whole piece one binding. */
static int64_t import_rows_per_piece(const vk_backend *vk, size_t row_bytes) {
    VkDeviceSize a = vk->d->import.align, alloc = vk->caps.max_alloc, range = vk->caps.max_range;
    VkDeviceSize slack = vk->caps.offset_align + 4;
    if (alloc <= 2 * a || range <= slack || !row_bytes) return 0;
    VkDeviceSize lim = alloc - 2 * a < range - slack ? alloc - 2 * a : range - slack;
    int64_t fit = (int64_t)(lim / row_bytes), per = elmi_vk_weight_rows_per_piece(vk, row_bytes);
    return fit < per ? fit : per;
}

bool elmi_vk_weight_import(vk_backend *vk, vk_weight *w) {
    if (!import_probe(vk) || w->bytes < IMPORT_MIN_UNITS * vk->d->import.align) return false;
    int64_t per = w->n_pieces == 1 ? w->n_rows : w->row0[1];
    int64_t fit = import_rows_per_piece(vk, w->row_bytes);
    if (fit < 1) return false;
    if (fit < per) {
        /* The slack needs smaller pieces; a tensor planned as one piece
         * (bound whole by some ops) stays one piece, copied. */
        if (w->n_pieces == 1) return false;
        per = fit;
    }
    uint32_t n_pieces = (uint32_t)((w->n_rows + per - 1) / per);
    vk_seg *pieces = elmi_calloc(n_pieces, sizeof *pieces);
    int64_t *row0 = elmi_calloc(n_pieces + 1, sizeof *row0);
    bool ok = pieces && row0;
    for (uint32_t i = 0; ok && i <= n_pieces; i++) row0[i] = (int64_t)i * per < w->n_rows ? (int64_t)i * per : w->n_rows;
    for (uint32_t i = 0; ok && i < n_pieces; i++) {
        size_t off = (size_t)row0[i] * w->row_bytes, n = (size_t)(row0[i + 1] - row0[i]) * w->row_bytes;
        ok = import_piece(vk, (const char *)w->data + off, n, &pieces[i]);
    }
    if (!ok) {
        for (uint32_t i = 0; pieces && i < n_pieces; i++) elmi_vk_seg_free(vk, &pieces[i]);
        elmi_free(pieces);
        elmi_free(row0);
        return false;
    }
    elmi_free(w->pieces);
    elmi_free(w->row0);
    w->pieces = pieces;
    w->row0 = row0;
    w->n_pieces = n_pieces;
    w->imported = true;
    return true;
}
