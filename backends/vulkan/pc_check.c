/*
 * pc_check.c: no code, only the build-time check that every push-constant
 * struct of push_constants.h matches its shader's push_constant block.
 *
 * pc_layout.h is generated from the compiled SPIR-V (shaders/pc_layout.cmake,
 * run by cmake/vulkan.cmake); each of its entries becomes _Static_asserts:
 * the member exists under the GLSL name, at the GLSL offset, with the GLSL
 * scalar type, and the struct has the block's size (so no member is extra)
 * and fits the pipeline layout's VK_PC_WORDS. The messages name the member.
 */
#include <stddef.h>
#include <stdint.h>

#include "backends/vulkan/push_constants.h"
#include "backends/vulkan/vk_internal.h"
#include "pc_layout.h"

#define ELM_PC_C_TYPE_uint32 uint32_t
#define ELM_PC_C_TYPE_int32 int32_t
#define ELM_PC_C_TYPE_float32 float

#define ELM_PC_CHECK_MEMBER(fam, member, offset, type)                                        \
    _Static_assert(offsetof(pc_##fam, member) == (offset),                                    \
                   "pc_" #fam "." #member ": shaders/" #fam ".comp has it at byte " #offset); \
    _Static_assert(_Generic(((pc_##fam *)0)->member, ELM_PC_C_TYPE_##type: 1, default: 0),    \
                   "pc_" #fam "." #member ": shaders/" #fam ".comp declares it " #type);

#define ELM_PC_CHECK_SIZE(fam, bytes)                                                         \
    _Static_assert(sizeof(pc_##fam) == (bytes),                                               \
                   "pc_" #fam ": the push_constant block of shaders/" #fam ".comp has " #bytes \
                   " bytes");                                                                 \
    _Static_assert(sizeof(pc_##fam) <= VK_PC_WORDS * 4, "pc_" #fam " exceeds VK_PC_WORDS");

ELM_PC_LAYOUT(ELM_PC_CHECK_MEMBER, ELM_PC_CHECK_SIZE)
