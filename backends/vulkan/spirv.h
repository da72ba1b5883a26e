/* spirv.h: the SPIR-V modules compiled from shaders/ and embedded by the
 * build (cmake/vulkan.cmake). Each module is named after its shader and
 * variant, e.g. "matvec_q4_0_s16_sg". */
#ifndef ELM_VK_SPIRV_H
#define ELM_VK_SPIRV_H

#include <stddef.h>
#include <stdint.h>

typedef struct elmi_spv {
    const char *name;
    const uint32_t *code;
    size_t size; /* bytes */
} elmi_spv;

typedef struct elmi_spv_family {
    const char *name;
    const elmi_spv *modules;
    const size_t *count;
} elmi_spv_family;

extern const elmi_spv_family elmi_spv_families[];
extern const size_t elmi_spv_n_families;

/* The weight types with GET_ROWS and MUL_MAT kernels (ELM_VK_TYPES in
 * cmake/vulkan.cmake, the one list) and the suffix that names their
 * variants, e.g. {QT_Q4_0, "q4_0"}. */
typedef struct elmi_spv_weight_type {
    int type;
    const char *suffix;
} elmi_spv_weight_type;

extern const elmi_spv_weight_type elmi_vk_weight_types[];
extern const size_t elmi_vk_n_weight_types;

/* The module called `name`, or NULL. */
const elmi_spv *elmi_spv_find(const char *name);

#endif
