/* abi.h: reading and writing the caller's growable structs (the ABI rule at
 * the top of edgelm.h). Every such struct starts with `size_t struct_size`. */
#ifndef ELM_COMMON_ABI_H
#define ELM_COMMON_ABI_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/* The size of a struct up to and including `field`: with the last field of
 * the struct's first release, the smallest struct_size the library accepts.
 * These never change once released. */
#define ELMI_SIZE_UNTIL(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))

#define ELMI_MIN_DEVICE_INFO ELMI_SIZE_UNTIL(elm_device_info, n_threads)
#define ELMI_MIN_MODEL_PARAMS ELMI_SIZE_UNTIL(elm_model_params, vocab_only)
#define ELMI_MIN_MODEL_INFO ELMI_SIZE_UNTIL(elm_model_info, vocab_only)
#define ELMI_MIN_TENSOR_INFO ELMI_SIZE_UNTIL(elm_tensor_info, offset)
#define ELMI_MIN_CONTEXT_PARAMS ELMI_SIZE_UNTIL(elm_context_params, pin_threads)
#define ELMI_MIN_MEMORY_USAGE ELMI_SIZE_UNTIL(elm_memory_usage, device_bytes)
#define ELMI_MIN_SAMPLER_PARAMS ELMI_SIZE_UNTIL(elm_sampler_params, seed)
#define ELMI_MIN_GENERATE_PARAMS ELMI_SIZE_UNTIL(elm_generate_params, user_data)
#define ELMI_MIN_STATS ELMI_SIZE_UNTIL(elm_stats, n_fallback_nodes)
#define ELMI_MIN_CHAT_PARAMS ELMI_SIZE_UNTIL(elm_chat_params, now)
#define ELMI_MIN_CONFIDENCE ELMI_SIZE_UNTIL(elm_confidence, n_below)
#define ELMI_MIN_TOKEN_INFO_MARGIN ELMI_SIZE_UNTIL(elm_token_info, margin)
#define ELMI_MIN_PROFILE_OP ELMI_SIZE_UNTIL(elm_profile_op, n_barriers)
#define ELMI_MIN_PROFILE ELMI_SIZE_UNTIL(elm_profile, timestamps)

/* Overlays the caller's struct `src` (src->struct_size bytes) on `dst`, the
 * library's own struct of dst_size bytes that already holds the defaults:
 * fields the caller does not know keep their defaults. dst->struct_size
 * becomes dst_size. False when the caller's size is below min_size. */
static inline bool elmi_struct_in(void *dst, size_t dst_size, const void *src, size_t min_size) {
    size_t n;
    memcpy(&n, src, sizeof n);
    if (n < min_size) return false;
    memcpy(dst, src, n < dst_size ? n : dst_size);
    memcpy(dst, &dst_size, sizeof dst_size);
    return true;
}

/* Copies the library's struct `src` (src_size bytes) into the caller's `dst`
 * (dst->struct_size bytes), keeping the caller's struct_size. False when
 * the caller's size is below min_size. */
static inline bool elmi_struct_out(void *dst, const void *src, size_t src_size, size_t min_size) {
    size_t n;
    memcpy(&n, dst, sizeof n);
    if (n < min_size) return false;
    memcpy(dst, src, n < src_size ? n : src_size);
    memcpy(dst, &n, sizeof n);
    return true;
}

/* Fills the caller's params struct (struct_size bytes) from the library's
 * defaults `def`, and sets its struct_size. */
static inline void elmi_struct_init(void *dst, size_t struct_size, const void *def, size_t def_size) {
    if (!dst || struct_size < sizeof(size_t)) return;
    memset(dst, 0, struct_size);
    memcpy(dst, def, struct_size < def_size ? struct_size : def_size);
    memcpy(dst, &struct_size, sizeof struct_size);
}

#endif
