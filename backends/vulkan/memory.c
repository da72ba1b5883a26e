/* memory.c: device memory. Every allocation is one segment (a VkBuffer
 * with its own memory) of at most maxMemoryAllocationSize bytes; buffers
 * larger than that are several segments. Unified-memory devices get
 * host-visible device-local memory, written and read in place; other
 * devices go through one staging buffer. Host tensors (memory-mapped
 * weights) are uploaded once, split by rows so that each piece fits the
 * allocation and binding limits, and cached by address. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/vulkan/vk_internal.h"
#include "common/alloc.h"
#include "quant/layout.h"
#include "quant/quant.h"

/* Bytes past the end of every segment: a 2-byte aligned 32-bit load of
 * the last bytes of a tensor reads up to 3 bytes further. */
#define SEG_PAD 256
#define STAGING_MAX (64u * 1024 * 1024)

static VkDeviceSize align_up(VkDeviceSize v, VkDeviceSize a) {
    return (v + a - 1) / a * a;
}

/* The largest segment payload the limits allow. */
static VkDeviceSize seg_limit(const vk_backend *vk) {
    VkDeviceSize lim = vk->caps.max_alloc > 2 * SEG_PAD ? vk->caps.max_alloc - SEG_PAD : SEG_PAD;
    return lim / SEG_PAD * SEG_PAD;
}

static int find_type(const vk_backend *vk, uint32_t bits, VkMemoryPropertyFlags want,
                     VkMemoryPropertyFlags avoid) {
    const VkPhysicalDeviceMemoryProperties *m = &vk->mem_props;
    for (uint32_t i = 0; i < m->memoryTypeCount; i++) {
        VkMemoryPropertyFlags f = m->memoryTypes[i].propertyFlags;
        if ((bits & (1u << i)) && (f & want) == want && !(f & avoid)) return (int)i;
    }
    return -1;
}

/* Memory types to try, best first (-1 entries: no such type); returns the count. */
static int type_order(const vk_backend *vk, uint32_t bits, bool host_visible, int order[3]) {
    const VkMemoryPropertyFlags hv = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    const VkMemoryPropertyFlags dl = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
    if (host_visible) {
        order[0] = find_type(vk, bits, hv | VK_MEMORY_PROPERTY_HOST_CACHED_BIT, 0);
        order[1] = find_type(vk, bits, hv, 0);
        return 2;
    }
    if (vk->caps.uma) {
        order[0] = find_type(vk, bits, dl | hv, 0);
        order[1] = find_type(vk, bits, dl, 0);
        return 2;
    }
    order[0] = find_type(vk, bits, dl, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT);
    order[1] = find_type(vk, bits, dl, 0);
    order[2] = find_type(vk, bits, 0, 0); /* spill to host memory rather than fail */
    return 3;
}

static elm_status alloc_memory(vk_backend *vk, vk_seg *s, bool host_visible) {
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(vk->dev, s->buf, &req);
    int order[3];
    int n = type_order(vk, req.memoryTypeBits, host_visible, order);
    VkResult r = VK_ERROR_OUT_OF_DEVICE_MEMORY;
    for (int i = 0; i < n; i++) {
        if (order[i] < 0) continue;
        VkMemoryAllocateInfo ai = {
            .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
            .allocationSize = req.size,
            .memoryTypeIndex = (uint32_t)order[i],
        };
        r = vkAllocateMemory(vk->dev, &ai, NULL, &s->mem);
        if (r == VK_SUCCESS) {
            VkMemoryPropertyFlags f = vk->mem_props.memoryTypes[order[i]].propertyFlags;
            bool mappable = (f & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT) && (f & VK_MEMORY_PROPERTY_HOST_COHERENT_BIT);
            if (mappable && (host_visible || vk->caps.uma) &&
                vkMapMemory(vk->dev, s->mem, 0, VK_WHOLE_SIZE, 0, &s->map) != VK_SUCCESS)
                s->map = NULL;
            return elmi_vk_check(vk, vkBindBufferMemory(vk->dev, s->buf, s->mem, 0), "vkBindBufferMemory");
        }
        if (r != VK_ERROR_OUT_OF_DEVICE_MEMORY && r != VK_ERROR_OUT_OF_HOST_MEMORY) break;
    }
    s->mem = VK_NULL_HANDLE;
    if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY)
        return elmi_vk_fail(vk, ELM_ERR_NO_MEMORY,
                       "out of %s memory allocating %llu bytes on %s (%llu bytes already allocated)",
                       r == VK_ERROR_OUT_OF_DEVICE_MEMORY ? "device" : "host",
                       (unsigned long long)req.size, vk->info.name,
                       (unsigned long long)vk->device_bytes);
    return elmi_vk_check(vk, r, "vkAllocateMemory");
}

static elm_status zero_fill(vk_backend *vk, const vk_seg *s);

elm_status elmi_vk_seg_alloc(vk_backend *vk, VkDeviceSize size, bool host_visible, vk_seg *out) {
    memset(out, 0, sizeof *out);
    VkDeviceSize bytes = align_up(size ? size : 1, 16) + SEG_PAD;
    if (bytes > vk->caps.max_alloc && size <= seg_limit(vk)) bytes = vk->caps.max_alloc;
    if (bytes > vk->caps.max_alloc)
        return elmi_vk_fail(vk, ELM_ERR_NO_MEMORY, "%llu bytes exceed the allocation limit %llu of %s",
                       (unsigned long long)size, (unsigned long long)vk->caps.max_alloc,
                       vk->info.name);
    VkBufferCreateInfo bi = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
        .size = bytes,
        .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                 VK_BUFFER_USAGE_TRANSFER_DST_BIT | elmi_vk_texel_usage(&vk->caps),
        .sharingMode = VK_SHARING_MODE_EXCLUSIVE,
    };
    elm_status st = elmi_vk_check(vk, vkCreateBuffer(vk->dev, &bi, NULL, &out->buf), "vkCreateBuffer");
    if (st != ELM_OK) goto fail;
    st = alloc_memory(vk, out, host_visible);
    if (st != ELM_OK) goto fail;
    out->size = bytes;
    out->id = atomic_fetch_add(&vk->d->next_seg_id, 1) + 1;
    vk->device_bytes += bytes;
    /* Fresh memory is zeroed, as the CPU backend's buffers are. */
    if (out->map) memset(out->map, 0, bytes);
    else st = zero_fill(vk, out);
    if (st != ELM_OK) goto fail;
    return ELM_OK;
fail:
    elmi_vk_seg_free(vk, out);
    return st;
}

void elmi_vk_seg_free(vk_backend *vk, vk_seg *s) {
    if (s->buf && !s->map) elmi_vk_ring_release(vk, s->buf);
    if (s->map) vkUnmapMemory(vk->dev, s->mem);
    if (s->buf) vkDestroyBuffer(vk->dev, s->buf, NULL);
    if (s->mem) {
        vkFreeMemory(vk->dev, s->mem, NULL);
        if (!s->imported) vk->device_bytes -= s->size;
    }
    memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------- transfers */

elm_status elmi_vk_submit_wait(vk_backend *vk, VkCommandBuffer cmd, const char *what) {
    if (elmi_vk_lost(vk)) return elmi_vk_fail(vk, ELM_ERR_DEVICE, "the device was lost earlier");
    VkCommandBuffer cmds[2];
    uint32_t n = 0;
    ELM_TRY(elmi_vk_ring_record(vk, &cmds[0]));
    if (cmds[0]) n++;
    if (cmd) cmds[n++] = cmd;
    if (n == 0) return ELM_OK;
    VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = n, .pCommandBuffers = cmds};
    ELM_TRY(elmi_vk_check(vk, vkResetFences(vk->dev, 1, &vk->fence), "vkResetFences"));
    pthread_mutex_lock(&vk->d->queue_lock);
    VkResult rs = vkQueueSubmit(vk->queue, 1, &si, vk->fence);
    pthread_mutex_unlock(&vk->d->queue_lock);
    ELM_TRY(elmi_vk_check(vk, rs, what));
    /* Generous: a CPU device may take long, a hung GPU must not hang us. */
    VkResult r = vkWaitForFences(vk->dev, 1, &vk->fence, VK_TRUE, 600ull * 1000 * 1000 * 1000);
    elmi_vk_ring_done(vk);
    if (r == VK_TIMEOUT) {
        vk->lost = true;
        atomic_store(&vk->d->lost, true);
        return elmi_vk_fail(vk, ELM_ERR_DEVICE, "%s: the device did not finish within 600 s", what);
    }
    /* Injected loss: the work has finished (so teardown stays valid), but
     * the submission reports the device lost, as a real loss would. */
    if (r == VK_SUCCESS && vk->fault_after >= 0 && vk->in_graph &&
        vk->n_graph_submits++ >= (uint64_t)vk->fault_after) {
        vk->lost = true; /* this backend only: the shared device is fine */
        return elmi_vk_fail(vk, ELM_ERR_DEVICE, "%s: %s (%d) (injected by EDGELM_VK_FAULT_AFTER=%lld)",
                            what, elmi_vk_result_name(VK_ERROR_DEVICE_LOST), (int)VK_ERROR_DEVICE_LOST,
                            (long long)vk->fault_after);
    }
    return elmi_vk_check(vk, r, what);
}

static void global_barrier(VkCommandBuffer cmd, VkPipelineStageFlags src, VkAccessFlags src_access,
                           VkPipelineStageFlags dst, VkAccessFlags dst_access) {
    VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER, .srcAccessMask = src_access, .dstAccessMask = dst_access};
    vkCmdPipelineBarrier(cmd, src, dst, 0, 1, &mb, 0, NULL, 0, NULL);
}

static elm_status xfer_begin(vk_backend *vk) {
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                   .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    ELM_TRY(elmi_vk_check(vk, vkResetCommandBuffer(vk->xfer_cmd, 0), "vkResetCommandBuffer"));
    ELM_TRY(elmi_vk_check(vk, vkBeginCommandBuffer(vk->xfer_cmd, &bi), "vkBeginCommandBuffer"));
    global_barrier(vk->xfer_cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                   VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT,
                   VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT);
    return ELM_OK;
}

static elm_status xfer_end(vk_backend *vk) {
    global_barrier(vk->xfer_cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT,
                   VK_PIPELINE_STAGE_HOST_BIT | VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                   VK_ACCESS_HOST_READ_BIT | VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT);
    ELM_TRY(elmi_vk_check(vk, vkEndCommandBuffer(vk->xfer_cmd), "vkEndCommandBuffer"));
    return elmi_vk_submit_wait(vk, vk->xfer_cmd, "transfer");
}

static elm_status zero_fill(vk_backend *vk, const vk_seg *s) {
    ELM_TRY(xfer_begin(vk));
    vkCmdFillBuffer(vk->xfer_cmd, s->buf, 0, VK_WHOLE_SIZE, 0);
    return xfer_end(vk);
}

/* One copy between the staging buffer and a segment, submitted and waited. */
static elm_status staged_copy(vk_backend *vk, const vk_seg *s, VkDeviceSize offset, size_t size,
                              bool to_device) {
    ELM_TRY(xfer_begin(vk));
    VkBufferCopy region = {.srcOffset = to_device ? 0 : offset, .dstOffset = to_device ? offset : 0, .size = size};
    vkCmdCopyBuffer(vk->xfer_cmd, to_device ? vk->staging.buf : s->buf, to_device ? s->buf : vk->staging.buf, 1,
                    &region);
    return xfer_end(vk);
}

static elm_status ensure_staging(vk_backend *vk) {
    if (vk->staging.buf) return ELM_OK;
    VkDeviceSize size = seg_limit(vk) < STAGING_MAX ? seg_limit(vk) : STAGING_MAX;
    return elmi_vk_seg_alloc(vk, size, true, &vk->staging);
}

static VkDeviceSize staging_room(const vk_backend *vk) {
    return vk->staging.size - SEG_PAD;
}

elm_status elmi_vk_seg_write(vk_backend *vk, const vk_seg *s, VkDeviceSize offset, const void *src,
                        size_t size) {
    if (offset + size > s->size) return elmi_vk_fail(vk, ELM_ERR_INTERNAL, "write past a segment");
    if (s->map) {
        memcpy((char *)s->map + offset, src, size);
        return ELM_OK;
    }
    if (elmi_vk_ring_write(vk, s, offset, src, size)) return ELM_OK;
    ELM_TRY(ensure_staging(vk));
    for (size_t done = 0; done < size;) {
        size_t n = size - done < staging_room(vk) ? size - done : staging_room(vk);
        memcpy(vk->staging.map, (const char *)src + done, n);
        ELM_TRY(staged_copy(vk, s, offset + done, n, true));
        done += n;
    }
    return ELM_OK;
}

elm_status elmi_vk_seg_read(vk_backend *vk, const vk_seg *s, VkDeviceSize offset, void *dst,
                       size_t size) {
    if (offset + size > s->size) return elmi_vk_fail(vk, ELM_ERR_INTERNAL, "read past a segment");
    if (s->map) {
        memcpy(dst, (const char *)s->map + offset, size);
        return ELM_OK;
    }
    ELM_TRY(ensure_staging(vk));
    for (size_t done = 0; done < size;) {
        size_t n = size - done < staging_room(vk) ? size - done : staging_room(vk);
        ELM_TRY(staged_copy(vk, s, offset + done, n, false));
        memcpy((char *)dst + done, vk->staging.map, n);
        done += n;
    }
    return ELM_OK;
}

/* ------------------------------------------------------- timed copies */

static double wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Records copies of bytes [0, size) from src to dst, segment by segment. */
static void record_copy(vk_backend *vk, be_buffer *dst, be_buffer *src, size_t size) {
    for (size_t off = 0; off < size;) {
        uint32_t si = (uint32_t)(off / src->seg_size), di = (uint32_t)(off / dst->seg_size);
        VkDeviceSize so = off - (VkDeviceSize)si * src->seg_size, doff = off - (VkDeviceSize)di * dst->seg_size;
        VkDeviceSize n = size - off;
        if (src->seg_size - so < n) n = src->seg_size - so;
        if (dst->seg_size - doff < n) n = dst->seg_size - doff;
        VkBufferCopy region = {.srcOffset = so, .dstOffset = doff, .size = n};
        vkCmdCopyBuffer(vk->xfer_cmd, src->segs[si].buf, dst->segs[di].buf, 1, &region);
        off += (size_t)n;
    }
}

elm_status elmi_vk_buffer_copy_timed(vk_backend *vk, be_buffer *dst, be_buffer *src, size_t size,
                                uint32_t reps, double *ms) {
    *ms = 0;
    if (!elmi_vk_owns_buffer(vk, dst) || !elmi_vk_owns_buffer(vk, src) || dst == src || reps == 0 ||
        size == 0 || size > dst->size || size > src->size)
        return elmi_vk_fail(vk, ELM_ERR_INVALID_ARG, "bad buffers or size for a device copy");
    if (elmi_vk_lost(vk)) return elmi_vk_fail(vk, ELM_ERR_DEVICE, "the device was lost earlier");
    VkQueryPool pool = VK_NULL_HANDLE;
    elm_status st;
    if (vk->caps.timestamp_bits) {
        VkQueryPoolCreateInfo qci = {.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
                                     .queryType = VK_QUERY_TYPE_TIMESTAMP,
                                     .queryCount = 2};
        if (vkCreateQueryPool(vk->dev, &qci, NULL, &pool) != VK_SUCCESS) pool = VK_NULL_HANDLE;
    }
    double t0, wall;
    uint64_t ts[2];
    st = xfer_begin(vk);
    if (st != ELM_OK) goto done;
    if (pool) {
        vkCmdResetQueryPool(vk->xfer_cmd, pool, 0, 2);
        vkCmdWriteTimestamp(vk->xfer_cmd, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, pool, 0);
    }
    for (uint32_t r = 0; r < reps; r++) {
        /* Each repetition waits for the previous one's writes. */
        if (r) global_barrier(vk->xfer_cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT,
                              VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT);
        record_copy(vk, dst, src, size);
    }
    if (pool) vkCmdWriteTimestamp(vk->xfer_cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, pool, 1);
    t0 = wall_ms();
    st = xfer_end(vk);
    wall = wall_ms() - t0;
    if (st != ELM_OK) goto done;
    if (pool && vkGetQueryPoolResults(vk->dev, pool, 0, 2, sizeof ts, ts, sizeof ts[0],
                                      VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT) == VK_SUCCESS) {
        uint64_t mask = vk->caps.timestamp_bits >= 64 ? ~0ull : (1ull << vk->caps.timestamp_bits) - 1;
        uint64_t ticks = (ts[1] - ts[0]) & mask;
        *ms = (double)ticks * vk->caps.timestamp_period / 1e6 / reps;
    }
    if (*ms <= 0) *ms = wall / reps;
done:
    if (pool) vkDestroyQueryPool(vk->dev, pool, NULL);
    return st;
}

/* --------------------------------------------------------------- buffers */

/* The largest heap: no buffer can be bigger, whatever the allocator says
 * (some drivers overcommit and fail later). */
static VkDeviceSize largest_heap(const vk_backend *vk) {
    VkDeviceSize m = 0;
    for (uint32_t i = 0; i < vk->mem_props.memoryHeapCount; i++)
        if (vk->mem_props.memoryHeaps[i].size > m) m = vk->mem_props.memoryHeaps[i].size;
    return m;
}

elm_status elmi_vk_buffer_alloc(vk_backend *vk, size_t size, void *host_ptr, be_buffer **out) {
    *out = NULL;
    if (size > largest_heap(vk))
        return elmi_vk_fail(vk, ELM_ERR_NO_MEMORY, "%zu bytes requested but the largest memory heap of %s has %llu",
                       size, vk->info.name, (unsigned long long)largest_heap(vk));
    be_buffer *b = elmi_calloc(1, sizeof *b);
    if (!b) return elmi_vk_fail(vk, ELM_ERR_NO_MEMORY, "out of host memory");
    VkDeviceSize lim = seg_limit(vk);
    b->size = size;
    b->seg_size = size <= lim ? (size ? size : 1) : lim;
    b->n_segs = size ? (uint32_t)((size + b->seg_size - 1) / b->seg_size) : 1;
    b->next = vk->buffers;
    if (vk->buffers) vk->buffers->prev = b;
    vk->buffers = b;
    b->segs = elmi_calloc(b->n_segs, sizeof *b->segs);
    elm_status st;
    if (!b->segs) {
        b->n_segs = 0;
        st = elmi_vk_fail(vk, ELM_ERR_NO_MEMORY, "out of host memory");
        goto fail;
    }
    for (uint32_t i = 0; i < b->n_segs; i++) {
        VkDeviceSize left = size - (VkDeviceSize)i * b->seg_size;
        st = elmi_vk_seg_alloc(vk, left < b->seg_size ? left : b->seg_size, false, &b->segs[i]);
        if (st != ELM_OK) goto fail;
    }
    if (b->n_segs == 1) b->host = b->segs[0].map;
    if (host_ptr && size) {
        st = elmi_vk_buffer_write(vk, b, 0, host_ptr, size);
        if (st != ELM_OK) goto fail;
    }
    *out = b;
    return ELM_OK;
fail:
    elmi_vk_buffer_free(vk, b);
    return st;
}

void elmi_vk_buffer_free(vk_backend *vk, be_buffer *b) {
    if (!b) return;
    if (b->prev) b->prev->next = b->next;
    else if (vk->buffers == b) vk->buffers = b->next;
    if (b->next) b->next->prev = b->prev;
    for (uint32_t i = 0; i < b->n_segs; i++) elmi_vk_seg_free(vk, &b->segs[i]);
    elmi_free(b->segs);
    elmi_free(b);
}

bool elmi_vk_owns_buffer(const vk_backend *vk, const be_buffer *b) {
    for (const be_buffer *p = vk->buffers; p; p = p->next)
        if (p == b) return true;
    return false;
}

typedef elm_status (*seg_io)(vk_backend *, const vk_seg *, VkDeviceSize, void *, size_t);

static elm_status buffer_io(vk_backend *vk, be_buffer *b, size_t offset, void *p, size_t size,
                            seg_io io) {
    if (offset > b->size || size > b->size - offset)
        return elmi_vk_fail(vk, ELM_ERR_INVALID_ARG, "bytes [%zu, %zu) outside a buffer of %zu",
                       offset, offset + size, b->size);
    while (size) {
        uint32_t i = (uint32_t)(offset / b->seg_size);
        size_t in = (size_t)(offset - (VkDeviceSize)i * b->seg_size);
        size_t n = b->seg_size - in < size ? (size_t)(b->seg_size - in) : size;
        ELM_TRY(io(vk, &b->segs[i], in, p, n));
        offset += n, size -= n, p = (char *)p + n;
    }
    return ELM_OK;
}

static elm_status seg_write_io(vk_backend *vk, const vk_seg *s, VkDeviceSize o, void *p, size_t n) {
    return elmi_vk_seg_write(vk, s, o, p, n);
}

elm_status elmi_vk_buffer_write(vk_backend *vk, be_buffer *b, size_t offset, const void *src,
                           size_t size) {
    return buffer_io(vk, b, offset, (void *)src, size, seg_write_io);
}

elm_status elmi_vk_buffer_read(vk_backend *vk, be_buffer *b, size_t offset, void *dst, size_t size) {
    return buffer_io(vk, b, offset, dst, size, elmi_vk_seg_read);
}

/* ------------------------------------------------------------ host weights */

int64_t elmi_vk_weight_rows_per_piece(const vk_backend *vk, size_t row_bytes) {
    VkDeviceSize lim = seg_limit(vk);
    /* A piece is bound whole, so it must also fit one binding. */
    VkDeviceSize range = vk->caps.max_range > SEG_PAD ? (vk->caps.max_range - SEG_PAD) : 0;
    if (range < lim) lim = range;
    return row_bytes ? (int64_t)(lim / row_bytes) : 0;
}

static elm_status weight_geometry(vk_backend *vk, const be_tensor *t, vk_weight *w) {
    size_t row = t->nb[1];
    int64_t rows = t->ne[1] * t->ne[2] * t->ne[3];
    bool contiguous = (t->ne[2] == 1 || t->nb[2] == row * (size_t)t->ne[1]) &&
                      (t->ne[3] == 1 || t->nb[3] == t->nb[2] * (size_t)t->ne[2]);
    if (!contiguous || rows < 1 || row == 0)
        return elmi_vk_fail(vk, ELM_ERR_UNSUPPORTED, "host tensor '%s' is not contiguous", t->name);
    w->data = t->data;
    w->type = t->type;
    size_t dense;
    w->dense_rows = elmi_qtype_row_bytes(t->type, t->ne[0], &dense) && dense == row;
    w->row_bytes = row;
    w->n_rows = rows;
    w->bytes = row * (size_t)rows;
    int64_t per = elmi_vk_weight_rows_per_piece(vk, row);
    if (per < 1)
        return elmi_vk_fail(vk, ELM_ERR_UNSUPPORTED, "a row of '%s' (%zu bytes) exceeds the device limits",
                       t->name, row);
    w->n_pieces = (uint32_t)((rows + per - 1) / per);
    w->pieces = elmi_calloc(w->n_pieces, sizeof *w->pieces);
    w->row0 = elmi_calloc(w->n_pieces + 1, sizeof *w->row0);
    if (!w->pieces || !w->row0) return elmi_vk_fail(vk, ELM_ERR_NO_MEMORY, "out of host memory");
    for (uint32_t i = 0; i <= w->n_pieces; i++) w->row0[i] = (int64_t)i * per < rows ? (int64_t)i * per : rows;
    return ELM_OK;
}

static void weight_free(vk_backend *vk, vk_weight *w) {
    for (uint32_t i = 0; w->pieces && i < w->n_pieces; i++) elmi_vk_seg_free(vk, &w->pieces[i]);
    elmi_free(w->pieces);
    elmi_free(w->row0);
    memset(w, 0, sizeof *w);
}

bool elmi_vk_split_layout(int type, size_t *d_off) {
    switch (type) {
    case QT_Q4_0:
    case QT_Q8_0: *d_off = 0; return true;
    case QT_Q6_K: *d_off = ELM_OFF_Q6_K_D; return true;
    default: return false;
    }
}

/* The split layout needs whole 4-byte words of quants per row, so that
 * the kernels read them with aligned loads and no stitching. */
static bool weight_splits(const vk_backend *vk, const vk_weight *w) {
    size_t d_off;
    return vk->caps.repack && !w->imported && w->dense_rows && elmi_vk_split_layout(w->type, &d_off) &&
           w->row_bytes % 4 == 0;
}

/* Rows in the file layout -> the split layout (see vk_weight). */
static void split_rows(const vk_weight *w, const uint8_t *src, uint8_t *dst, size_t n_rows) {
    const qtype_traits *tr = elmi_qtype_get(w->type);
    size_t qb = tr->type_size, nb = w->row_bytes / qb, d_off = 0;
    elmi_vk_split_layout(w->type, &d_off);
    for (size_t r = 0; r < n_rows; r++, src += w->row_bytes, dst += w->row_bytes) {
        uint8_t *body = dst, *dtail = dst + nb * (qb - 2);
        for (size_t b = 0; b < nb; b++) {
            const uint8_t *blk = src + b * qb;
            memcpy(body, blk, d_off);
            memcpy(body + d_off, blk + d_off + 2, qb - d_off - 2);
            memcpy(dtail + 2 * b, blk + d_off, 2);
            body += qb - 2;
        }
    }
}

#define SPLIT_BATCH_BYTES (1u << 20)

static elm_status weight_write_split(vk_backend *vk, const vk_weight *w, vk_seg *seg, size_t off, size_t n) {
    size_t batch_rows = SPLIT_BATCH_BYTES / w->row_bytes ? SPLIT_BATCH_BYTES / w->row_bytes : 1;
    uint8_t *tmp = elmi_malloc(batch_rows * w->row_bytes);
    if (!tmp) return elmi_vk_fail(vk, ELM_ERR_NO_MEMORY, "out of host memory");
    elm_status st = ELM_OK;
    for (size_t done = 0; done < n && st == ELM_OK;) {
        size_t rows = (n - done) / w->row_bytes < batch_rows ? (n - done) / w->row_bytes : batch_rows;
        split_rows(w, (const uint8_t *)w->data + off + done, tmp, rows);
        st = elmi_vk_seg_write(vk, seg, done, tmp, rows * w->row_bytes);
        done += rows * w->row_bytes;
    }
    elmi_free(tmp);
    return st;
}

static elm_status weight_upload(vk_backend *vk, vk_weight *w) {
    /* Unified memory with VK_EXT_external_memory_host: read in place. */
    if (elmi_vk_weight_import(vk, w)) return ELM_OK;
    w->split = weight_splits(vk, w);
    for (uint32_t i = 0; i < w->n_pieces; i++) {
        size_t off = (size_t)w->row0[i] * w->row_bytes;
        size_t n = (size_t)(w->row0[i + 1] - w->row0[i]) * w->row_bytes;
        ELM_TRY(elmi_vk_seg_alloc(vk, n, false, &w->pieces[i]));
        /* The copy belongs to the device, not to this backend. */
        vk->device_bytes -= w->pieces[i].size;
        vk->d->weight_device_bytes += w->pieces[i].size;
        if (w->split) ELM_TRY(weight_write_split(vk, w, &w->pieces[i], off, n));
        else ELM_TRY(elmi_vk_seg_write(vk, &w->pieces[i], 0, (const char *)w->data + off, n));
    }
    return ELM_OK;
}

static void weight_release(vk_backend *vk, vk_weight *w) {
    for (uint32_t i = 0; w->pieces && i < w->n_pieces; i++)
        if (w->pieces[i].mem && !w->pieces[i].imported) {
            vk->d->weight_device_bytes -= w->pieces[i].size;
            vk->device_bytes += w->pieces[i].size; /* seg_free takes it off again */
        }
    weight_free(vk, w);
}

static elm_status weight_find_or_upload(vk_backend *vk, const be_tensor *t, const vk_weight **out) {
    vk_device *d = vk->d;
    size_t bytes = elmi_be_tensor_nbytes(t);
    for (uint32_t i = 0; i < d->n_weights; i++)
        if (d->weights[i]->data == t->data && d->weights[i]->bytes == bytes && d->weights[i]->type == t->type) {
            *out = d->weights[i];
            return ELM_OK;
        }
    if (d->n_weights == d->cap_weights) {
        uint32_t cap = d->cap_weights ? 2 * d->cap_weights : 64;
        vk_weight **nw = elmi_realloc(d->weights, cap * sizeof *nw);
        if (!nw) return elmi_vk_fail(vk, ELM_ERR_NO_MEMORY, "out of host memory");
        d->weights = nw;
        d->cap_weights = cap;
    }
    vk_weight *w = elmi_calloc(1, sizeof *w);
    if (!w) return elmi_vk_fail(vk, ELM_ERR_NO_MEMORY, "out of host memory");
    elm_status st = weight_geometry(vk, t, w);
    if (st == ELM_OK && w->bytes != bytes)
        st = elmi_vk_fail(vk, ELM_ERR_UNSUPPORTED, "host tensor '%s' has padded rows", t->name);
    if (st == ELM_OK) st = weight_upload(vk, w);
    if (st != ELM_OK) {
        weight_release(vk, w);
        elmi_free(w);
        return st;
    }
    d->weights[d->n_weights++] = w;
    *out = w;
    d->stats.weight_bytes += w->bytes;
    if (w->imported) d->stats.weight_import_bytes += w->bytes;
    else d->stats.weight_copy_bytes += w->bytes;
    if (w->split) d->stats.weight_split_bytes += w->bytes;
    d->stats.n_weights = d->n_weights;
    return ELM_OK;
}

elm_status elmi_vk_weight_get(vk_backend *vk, const be_tensor *t, const vk_weight **out) {
    pthread_mutex_lock(&vk->d->lock);
    elm_status st = weight_find_or_upload(vk, t, out);
    pthread_mutex_unlock(&vk->d->lock);
    return st;
}

void elmi_vk_weights_clear(vk_backend *vk) {
    vk_device *d = vk->d;
    pthread_mutex_lock(&d->lock);
    for (uint32_t i = 0; i < d->n_weights; i++) {
        weight_release(vk, d->weights[i]);
        elmi_free(d->weights[i]);
    }
    d->n_weights = 0;
    d->stats.n_weights = 0;
    pthread_mutex_unlock(&d->lock);
}

/* ------------------------------------------------------------ init, free */

elm_status elmi_vk_memory_init(vk_backend *vk) {
    VkCommandPoolCreateInfo pci = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
        .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
        .queueFamilyIndex = vk->queue_family,
    };
    ELM_TRY(elmi_vk_check(vk, vkCreateCommandPool(vk->dev, &pci, NULL, &vk->cmd_pool), "vkCreateCommandPool"));
    VkCommandBufferAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = vk->cmd_pool,
        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
        .commandBufferCount = 1,
    };
    ELM_TRY(elmi_vk_check(vk, vkAllocateCommandBuffers(vk->dev, &ai, &vk->xfer_cmd), "vkAllocateCommandBuffers"));
    VkFenceCreateInfo fci = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    ELM_TRY(elmi_vk_check(vk, vkCreateFence(vk->dev, &fci, NULL, &vk->fence), "vkCreateFence"));
    return elmi_vk_seg_alloc(vk, 16, false, &vk->dummy);
}

void elmi_vk_memory_free(vk_backend *vk) {
    elmi_vk_ring_free(vk);
    while (vk->buffers) elmi_vk_buffer_free(vk, vk->buffers);
    elmi_vk_seg_free(vk, &vk->staging);
    elmi_vk_seg_free(vk, &vk->dummy);
    if (vk->fence) vkDestroyFence(vk->dev, vk->fence, NULL);
    if (vk->cmd_pool) vkDestroyCommandPool(vk->dev, vk->cmd_pool, NULL);
    vk->fence = VK_NULL_HANDLE;
    vk->cmd_pool = VK_NULL_HANDLE;
}
