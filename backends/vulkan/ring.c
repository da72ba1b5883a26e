/* ring.c: small host writes to device-only memory without a submit each.
 *
 * On a discrete GPU (or the `discrete` profile) device memory is not mapped,
 * and every tensor_set used to be a staged copy with its own submit and
 * fence wait: a decode step paid two (the token ids and the positions)
 * before its graph ran. A write of at most VK_RING_MAX_WRITE bytes now goes
 * into a host-visible ring and leaves a pending copy; the pending copies are
 * recorded into one command buffer that the next submission of any kind
 * carries in front of its own (elmi_vk_submit_wait), so they reach the
 * device before anything can read them. A submission that completes frees
 * the whole ring. */
#include <string.h>

#include "backends/vulkan/vk_internal.h"

#define VK_RING_BYTES (64u * 1024u)

static bool ring_open(vk_backend *vk) {
    vk_ring *r = &vk->ring;
    if (r->seg.buf) return true;
    if (elmi_vk_seg_alloc(vk, VK_RING_BYTES, true, &r->seg) != ELM_OK || !r->seg.map) {
        elmi_vk_seg_free(vk, &r->seg);
        return false;
    }
    VkCommandBufferAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = vk->cmd_pool,
        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
        .commandBufferCount = 1,
    };
    if (vkAllocateCommandBuffers(vk->dev, &ai, &r->cmd) != VK_SUCCESS) {
        r->cmd = VK_NULL_HANDLE;
        elmi_vk_seg_free(vk, &r->seg);
        return false;
    }
    return true;
}

bool elmi_vk_ring_write(vk_backend *vk, const vk_seg *s, VkDeviceSize offset, const void *src, size_t size) {
    vk_ring *r = &vk->ring;
    if (s->map || size == 0 || size > VK_RING_MAX_WRITE || !ring_open(vk)) return false;
    VkDeviceSize at = (r->used + 15) & ~(VkDeviceSize)15;
    if (r->n_pending == VK_RING_MAX_PENDING || at + size > r->seg.size) return false;
    memcpy((char *)r->seg.map + at, src, size);
    r->pending[r->n_pending++] = (vk_ring_copy){s->buf, {.srcOffset = at, .dstOffset = offset, .size = size}};
    r->used = at + size;
    vk->vstats.n_ring_writes++;
    return true;
}

static void barrier(VkCommandBuffer cmd, VkPipelineStageFlags dst, VkAccessFlags da) {
    VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                          .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT,
                          .dstAccessMask = da};
    vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, dst, 0, 1, &mb, 0, NULL, 0, NULL);
}

elm_status elmi_vk_ring_record(vk_backend *vk, VkCommandBuffer *out) {
    vk_ring *r = &vk->ring;
    *out = VK_NULL_HANDLE;
    if (r->n_pending == 0) return ELM_OK;
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                   .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    ELM_TRY(elmi_vk_check(vk, vkResetCommandBuffer(r->cmd, 0), "vkResetCommandBuffer"));
    ELM_TRY(elmi_vk_check(vk, vkBeginCommandBuffer(r->cmd, &bi), "vkBeginCommandBuffer"));
    for (uint32_t i = 0; i < r->n_pending; i++) {
        /* Two writes may hit the same bytes: keep them in order. */
        if (i) barrier(r->cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT);
        vkCmdCopyBuffer(r->cmd, r->seg.buf, r->pending[i].dst, 1, &r->pending[i].region);
    }
    barrier(r->cmd, VK_PIPELINE_STAGE_TRANSFER_BIT | VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
            VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT | VK_ACCESS_SHADER_READ_BIT |
                VK_ACCESS_SHADER_WRITE_BIT);
    ELM_TRY(elmi_vk_check(vk, vkEndCommandBuffer(r->cmd), "vkEndCommandBuffer"));
    *out = r->cmd;
    return ELM_OK;
}

void elmi_vk_ring_done(vk_backend *vk) {
    vk->ring.n_pending = 0;
    vk->ring.used = 0;
}

elm_status elmi_vk_ring_flush(vk_backend *vk) {
    if (vk->ring.n_pending == 0) return ELM_OK;
    if (vk->lost) {
        elmi_vk_ring_done(vk);
        return ELM_OK;
    }
    return elmi_vk_submit_wait(vk, VK_NULL_HANDLE, "ring upload");
}

void elmi_vk_ring_release(vk_backend *vk, VkBuffer buf) {
    for (uint32_t i = 0; i < vk->ring.n_pending; i++)
        if (vk->ring.pending[i].dst == buf) {
            if (elmi_vk_ring_flush(vk) != ELM_OK) elmi_vk_ring_done(vk);
            return;
        }
}

void elmi_vk_ring_free(vk_backend *vk) {
    vk_ring *r = &vk->ring;
    if (r->cmd) vkFreeCommandBuffers(vk->dev, vk->cmd_pool, 1, &r->cmd);
    r->cmd = VK_NULL_HANDLE;
    elmi_vk_seg_free(vk, &r->seg);
    r->n_pending = 0;
    r->used = 0;
}
