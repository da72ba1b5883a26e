# cmake/vulkan.cmake: the Vulkan backend (module elm_vulkan) and its shaders.
#
# Included by the top-level CMakeLists.txt after the core modules exist.
# When Vulkan (headers + loader) or glslc is missing, or EDGELM_VULKAN is
# OFF, nothing is added and every target is compiled with ELM_HAVE_VULKAN=0;
# otherwise with ELM_HAVE_VULKAN=1. Code that calls the backend checks
# `#if ELM_HAVE_VULKAN` (an undefined macro also reads as 0).
#
# Shaders: every shaders/<family>.comp is compiled by glslc into several
# SPIR-V variants selected by -D defines (weight type, storage path,
# reduction, precision). glslc's depfile tracks the includes under
# shaders/common/. Each family's SPIR-V is embedded as uint32_t arrays in a
# generated C file (shaders/embed_spirv.cmake, pure CMake) and a table file
# lists the families; all are compiled into elm_vulkan.
#
# Shared constants: blocks.glsl includes quant/layout.h (block sizes and
# field offsets, checked against quant.h's structs), hence -I <source dir>.
# Push constants: each family is also compiled once without -O (so its
# SPIR-V keeps member names) and shaders/pc_layout.cmake reads the
# push_constant block of that module and of every shipped variant with
# spirv-dis into pc_layout.h; backends/vulkan/pc_check.c compares it with
# the structs of push_constants.h by _Static_assert, so a mismatch fails the
# build. Nothing is run on the target, so cross builds check too.

option(EDGELM_VULKAN "Build the Vulkan backend when Vulkan and glslc are found" ON)

find_package(Vulkan QUIET)
find_program(ELM_GLSLC NAMES glslc HINTS ${Vulkan_GLSLC_EXECUTABLE})
find_program(ELM_SPIRV_DIS NAMES spirv-dis)

if(NOT EDGELM_VULKAN OR NOT Vulkan_FOUND OR NOT ELM_GLSLC)
  if(NOT EDGELM_VULKAN)
    set(_why "EDGELM_VULKAN is OFF")
  elseif(NOT Vulkan_FOUND)
    set(_why "Vulkan headers or loader not found")
  else()
    set(_why "glslc not found")
  endif()
  message(STATUS "edgelm: Vulkan backend disabled (${_why})")
  add_compile_definitions(ELM_HAVE_VULKAN=0)
  return()
endif()
if(NOT ELM_SPIRV_DIS)
  message(FATAL_ERROR "edgelm: spirv-dis (package spirv-tools, scripts/install-deps.sh) is needed "
                      "to check the shaders' push constants; or configure with -DEDGELM_VULKAN=OFF")
endif()
message(STATUS "edgelm: Vulkan backend enabled (glslc: ${ELM_GLSLC})")
add_compile_definitions(ELM_HAVE_VULKAN=1)

set(ELM_VK_SHADER_DIR ${CMAKE_SOURCE_DIR}/shaders)
set(ELM_VK_GEN_DIR ${CMAKE_BINARY_DIR}/vulkan)
file(MAKE_DIRECTORY ${ELM_VK_GEN_DIR}/spv ${ELM_VK_GEN_DIR}/layout)
file(GLOB ELM_VK_COMMON CONFIGURE_DEPENDS ${ELM_VK_SHADER_DIR}/common/*.glsl)
list(APPEND ELM_VK_COMMON ${CMAKE_SOURCE_DIR}/quant/layout.h)
set(ELM_GLSLC_FLAGS --target-env=vulkan1.1 -I ${ELM_VK_SHADER_DIR} -I ${CMAKE_SOURCE_DIR})
set(ELM_VK_FAMILIES)

# elm_vk_variant(<family> <variant name> [defines...]): one SPIR-V module.
function(elm_vk_variant family name)
  set(src ${ELM_VK_SHADER_DIR}/${family}.comp)
  set(spv ${ELM_VK_GEN_DIR}/spv/${name}.spv)
  set(defs)
  foreach(d ${ARGN})
    list(APPEND defs -D${d})
  endforeach()
  add_custom_command(OUTPUT ${spv}
    COMMAND ${ELM_GLSLC} ${ELM_GLSLC_FLAGS} -O ${defs} -MD -MF ${spv}.d -o ${spv} ${src}
    DEPENDS ${src} ${ELM_VK_COMMON}
    DEPFILE ${spv}.d
    COMMENT "glslc ${name}"
    VERBATIM)
  set_property(GLOBAL APPEND PROPERTY ELM_VK_SPV_${family} ${spv})
  set_property(GLOBAL APPEND PROPERTY ELM_VK_NAMES_${family} ${name})
  get_property(fams GLOBAL PROPERTY ELM_VK_FAMILY_LIST)
  if(NOT family IN_LIST fams)
    set_property(GLOBAL APPEND PROPERTY ELM_VK_FAMILY_LIST ${family})
    # The family's first variant, unoptimized: the layout module of pc_layout.cmake.
    set(layout ${ELM_VK_GEN_DIR}/layout/${family}.spv)
    add_custom_command(OUTPUT ${layout}
      COMMAND ${ELM_GLSLC} ${ELM_GLSLC_FLAGS} ${defs} -MD -MF ${layout}.d -o ${layout} ${src}
      DEPENDS ${src} ${ELM_VK_COMMON}
      DEPFILE ${layout}.d
      COMMENT "glslc ${family} (push-constant layout)"
      VERBATIM)
    set_property(GLOBAL APPEND PROPERTY ELM_VK_LAYOUT_SPV ${layout})
  endif()
  set_property(GLOBAL APPEND PROPERTY ELM_VK_MODULE_LIST ${family}:${name})
endfunction()

# Weight types with kernels; the suffix names the variant, the define
# selects the layout in shaders/common/blocks.glsl.
set(ELM_VK_TYPES F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K)
# Types fused dispatches exist for (backends/vulkan/fuse_matvec.c); each
# has a mat-vec chunk kernel (shaders/common/matvec_chunk.glsl), as Q4_1,
# Q5_0 and Q5_1 do too.
set(ELM_VK_FUSED_TYPES F32 F16 Q4_0 Q8_0 Q4_K Q5_K Q6_K)
# Types with integer-dot mat-vec variants (_idot: activations quantized to
# 8 bits per chunk, backends/vulkan/ops_matmul.c elmi_op_mv_idot).
set(ELM_VK_IDOT_TYPES Q4_0 Q8_0 Q4_K Q5_K Q6_K)
# Types with integer-dot mat-mat variants (shaders/common/matmat_idot.glsl).
set(ELM_VK_MM_IDOT_TYPES Q4_0 Q8_0)

foreach(t ${ELM_VK_TYPES})
  string(TOLOWER ${t} lt)
  foreach(st s16 u32)
    set(sdef)
    if(st STREQUAL "s16")
      set(sdef S16)
    endif()
    elm_vk_variant(get_rows get_rows_${lt}_${st} TYPE_${t} ${sdef})
    elm_vk_variant(matmat matmat_${lt}_${st} TYPE_${t} ${sdef})
    if(t IN_LIST ELM_VK_MM_IDOT_TYPES)
      elm_vk_variant(matmat matmat_${lt}_${st}_idot TYPE_${t} ${sdef} IDOT)
    endif()
    foreach(red sg sh)
      set(rdef)
      if(red STREQUAL "sg")
        set(rdef SG)
      endif()
      set(dots float)
      if(t IN_LIST ELM_VK_IDOT_TYPES)
        list(APPEND dots idot)
      endif()
      foreach(d ${dots})
        set(dot)
        set(ddef)
        if(d STREQUAL "idot")
          set(dot _idot)
          set(ddef IDOT)
        endif()
        elm_vk_variant(matvec matvec_${lt}_${st}_${red}${dot} TYPE_${t} ${sdef} ${rdef} ${ddef})
        if(t IN_LIST ELM_VK_FUSED_TYPES)
          elm_vk_variant(matvec_fused matvec_fused_${lt}_${st}_${red}${dot} TYPE_${t} ${sdef} ${rdef} ${ddef})
          elm_vk_variant(matvec_fused matvec_glu_${lt}_${st}_${red}${dot} TYPE_${t} ${sdef} ${rdef} ${ddef} GLU)
        endif()
      endforeach()
    endforeach()
  endforeach()
  # Weights and activations through uniform texel buffers (caps.mv_tex,
  # float path only): the storage choice does not apply.
  elm_vk_variant(matvec matvec_${lt}_tex_sg TYPE_${t} TEX SG)
  elm_vk_variant(matvec matvec_${lt}_tex_sh TYPE_${t} TEX)
  # Fused mat-vecs through texel buffers, a lane per rows (CPU devices,
  # block types: backends/vulkan/fuse_matvec.c).
  if(t IN_LIST ELM_VK_FUSED_TYPES AND NOT t STREQUAL "F32" AND NOT t STREQUAL "F16")
    elm_vk_variant(matvec_fused matvec_fused_${lt}_tex TYPE_${t} TEX)
    elm_vk_variant(matvec_fused matvec_glu_${lt}_tex TYPE_${t} TEX GLU)
  endif()
  elm_vk_variant(matmat matmat_${lt}_s16_h TYPE_${t} S16 FP16)
  if(NOT t STREQUAL "F32" AND NOT t STREQUAL "BF16")
    elm_vk_variant(matmat matmat_${lt}_s16_ha TYPE_${t} S16 FP16 FP16A)
  endif()
endforeach()

foreach(red sg sh)
  set(rdef)
  if(red STREQUAL "sg")
    set(rdef SG)
  endif()
  elm_vk_variant(rms_norm rms_norm_${red} ${rdef})
  elm_vk_variant(softmax softmax_${red} ${rdef})
  elm_vk_variant(attention attention_f32_${red} CACHE_F32 ${rdef})
  elm_vk_variant(attention attention_f16_s16_${red} CACHE_F16 S16 ${rdef})
  elm_vk_variant(attention attention_f16_u32_${red} CACHE_F16 ${rdef})
  elm_vk_variant(flash_attn_reduce flash_attn_reduce_${red} ${rdef})
  elm_vk_variant(flash_attn flash_attn_f32_${red} CACHE_F32 ${rdef})
  elm_vk_variant(flash_attn flash_attn_f16_s16_${red} CACHE_F16 S16 ${rdef})
  elm_vk_variant(flash_attn flash_attn_f16_u32_${red} CACHE_F16 ${rdef})
  elm_vk_variant(flash_attn flash_attn_f16_s16_${red}_vt CACHE_F16 S16 ${rdef} VTILE)
  elm_vk_variant(flash_attn flash_attn_f16_u32_${red}_vt CACHE_F16 ${rdef} VTILE)
endforeach()
elm_vk_variant(binary add OP_ADD)
elm_vk_variant(binary glu OP_GLU)
elm_vk_variant(binary mul OP_MUL)
elm_vk_variant(scale scale)
elm_vk_variant(shortconv shortconv)
elm_vk_variant(rope rope)
elm_vk_variant(kv_store kv_store_f32 CACHE_F32)
elm_vk_variant(kv_store kv_store_f16_s16 CACHE_F16 S16)
elm_vk_variant(kv_store kv_store_f16_u32 CACHE_F16)
elm_vk_variant(rope_kv rope_kv_f32 CACHE_F32)
elm_vk_variant(rope_kv rope_kv_f16_s16 CACHE_F16 S16)
elm_vk_variant(rope_kv rope_kv_f16_u32 CACHE_F16)
elm_vk_variant(argmax argmax_sg SG)
elm_vk_variant(argmax argmax_sh)

# One generated C file per family, and the table of families.
get_property(ELM_VK_FAMILIES GLOBAL PROPERTY ELM_VK_FAMILY_LIST)
set(ELM_VK_GEN_SRCS)
set(_decl "")
set(_rows "")
foreach(fam ${ELM_VK_FAMILIES})
  get_property(spvs GLOBAL PROPERTY ELM_VK_SPV_${fam})
  get_property(names GLOBAL PROPERTY ELM_VK_NAMES_${fam})
  string(REPLACE ";" "|" names_arg "${names}")
  set(out ${ELM_VK_GEN_DIR}/spv_${fam}.c)
  add_custom_command(OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DOUT=${out} -DFAMILY=${fam} -DSPV_DIR=${ELM_VK_GEN_DIR}/spv
            -DNAMES=${names_arg} -P ${ELM_VK_SHADER_DIR}/embed_spirv.cmake
    DEPENDS ${spvs} ${ELM_VK_SHADER_DIR}/embed_spirv.cmake
    COMMENT "embedding SPIR-V of ${fam}"
    VERBATIM)
  list(APPEND ELM_VK_GEN_SRCS ${out})
  string(APPEND _decl "extern const elmi_spv elmi_spv_${fam}[];\nextern const size_t elmi_spv_${fam}_count;\n")
  string(APPEND _rows "    {\"${fam}\", elmi_spv_${fam}, &elmi_spv_${fam}_count},\n")
endforeach()
list(LENGTH ELM_VK_FAMILIES _n_fam)
# ELM_VK_TYPES is the one list of weight types the backend runs: the C side
# reads this table instead of keeping its own (ops_util.c, elmi_op_type_suffix).
set(_types "")
foreach(t ${ELM_VK_TYPES})
  string(TOLOWER ${t} lt)
  string(APPEND _types "    {QT_${t}, \"${lt}\"},\n")
endforeach()
list(LENGTH ELM_VK_TYPES _n_types)
file(CONFIGURE OUTPUT ${ELM_VK_GEN_DIR}/spv_table.c CONTENT
"/* Generated by cmake/vulkan.cmake: the embedded shader families and the
 * weight types they have kernels for. */
#include \"backends/vulkan/spirv.h\"
#include \"quant/quant.h\"

${_decl}
const elmi_spv_family elmi_spv_families[] = {
${_rows}};
const size_t elmi_spv_n_families = ${_n_fam};

const elmi_spv_weight_type elmi_vk_weight_types[] = {
${_types}};
const size_t elmi_vk_n_weight_types = ${_n_types};
")
list(APPEND ELM_VK_GEN_SRCS ${ELM_VK_GEN_DIR}/spv_table.c)

# The push-constant check: pc_layout.h, from every module, for pc_check.c.
get_property(_layout_spv GLOBAL PROPERTY ELM_VK_LAYOUT_SPV)
get_property(_modules GLOBAL PROPERTY ELM_VK_MODULE_LIST)
set(_all_spv)
foreach(fam ${ELM_VK_FAMILIES})
  get_property(spvs GLOBAL PROPERTY ELM_VK_SPV_${fam})
  list(APPEND _all_spv ${spvs})
endforeach()
string(REPLACE ";" "|" _fam_arg "${ELM_VK_FAMILIES}")
string(REPLACE ";" "|" _mod_arg "${_modules}")
add_custom_command(OUTPUT ${ELM_VK_GEN_DIR}/pc_layout.h
  COMMAND ${CMAKE_COMMAND} -DSPIRV_DIS=${ELM_SPIRV_DIS} -DOUT=${ELM_VK_GEN_DIR}/pc_layout.h
          -DLAYOUT_DIR=${ELM_VK_GEN_DIR}/layout -DSPV_DIR=${ELM_VK_GEN_DIR}/spv
          -DFAMILIES=${_fam_arg} -DMODULES=${_mod_arg} -P ${ELM_VK_SHADER_DIR}/pc_layout.cmake
  DEPENDS ${_layout_spv} ${_all_spv} ${ELM_VK_SHADER_DIR}/pc_layout.cmake
  COMMENT "checking the shaders' push constants"
  VERBATIM)
list(APPEND ELM_VK_GEN_SRCS ${ELM_VK_GEN_DIR}/pc_layout.h)

elm_module(elm_vulkan backends/vulkan/*.c)
target_sources(elm_vulkan PRIVATE ${ELM_VK_GEN_SRCS})
target_include_directories(elm_vulkan PRIVATE ${ELM_VK_GEN_DIR})
target_link_libraries(elm_vulkan PUBLIC Vulkan::Vulkan)

list(APPEND ELM_EXTRA_MODULES elm_vulkan)
list(APPEND ELM_EXTRA_LIBS Vulkan::Vulkan)
