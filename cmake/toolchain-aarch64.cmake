# cmake/toolchain-aarch64.cmake: cross-compiles edgelm for aarch64 Linux with
# Debian's cross toolchain (gcc-aarch64-linux-gnu), for `make test-arm64`.
#
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-aarch64.cmake \
#         -DEDGELM_ARM64_SYSROOT=$PWD/build-arm64-sysroot -DEDGELM_VULKAN=OFF
#
# The C library comes with the cross toolchain (/usr/aarch64-linux-gnu). The
# arm64 builds of PCRE2, OpenBLAS and Criterion are not installed through
# multiarch (libcriterion-dev:arm64 cannot be co-installed with the amd64 one
# on Debian 12), but unpacked from their .debs into EDGELM_ARM64_SYSROOT
# (scripts/test-arm64.sh does that); pkg-config is pointed there.
#
# CMAKE_CROSSCOMPILING_EMULATOR runs try_run programs and ctest's commands
# under qemu-aarch64; the Criterion tests also need the exec shim of
# scripts/test-arm64.sh, which runs them.

set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(ELM_CROSS_TRIPLE aarch64-linux-gnu)
set(ELM_CROSS_PREFIX /usr/${ELM_CROSS_TRIPLE})
# GCC by default; for Clang: -DCMAKE_C_COMPILER=clang (the target is added).
if(NOT CMAKE_C_COMPILER)
  set(CMAKE_C_COMPILER ${ELM_CROSS_TRIPLE}-gcc)
elseif(CMAKE_C_COMPILER MATCHES "clang")
  set(CMAKE_C_COMPILER_TARGET ${ELM_CROSS_TRIPLE})
endif()
find_program(CMAKE_AR NAMES ${ELM_CROSS_TRIPLE}-gcc-ar ${ELM_CROSS_TRIPLE}-ar)
find_program(CMAKE_RANLIB NAMES ${ELM_CROSS_TRIPLE}-gcc-ranlib ${ELM_CROSS_TRIPLE}-ranlib)

# The sysroot of unpacked arm64 packages: a cache variable for the top-level
# configure, passed on to try_compile projects.
if(NOT EDGELM_ARM64_SYSROOT AND DEFINED ENV{EDGELM_ARM64_SYSROOT})
  set(EDGELM_ARM64_SYSROOT "$ENV{EDGELM_ARM64_SYSROOT}")
endif()
set(EDGELM_ARM64_SYSROOT "${EDGELM_ARM64_SYSROOT}" CACHE PATH
    "Unpacked arm64 packages: PCRE2, OpenBLAS, Criterion (scripts/test-arm64.sh)")
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES EDGELM_ARM64_SYSROOT)
if(NOT EDGELM_ARM64_SYSROOT)
  message(FATAL_ERROR "EDGELM_ARM64_SYSROOT is not set (scripts/test-arm64.sh makes one)")
endif()

set(CMAKE_FIND_ROOT_PATH ${ELM_CROSS_PREFIX} ${EDGELM_ARM64_SYSROOT})
set(_elm_libdirs
    ${EDGELM_ARM64_SYSROOT}/lib/${ELM_CROSS_TRIPLE}
    ${EDGELM_ARM64_SYSROOT}/usr/lib/${ELM_CROSS_TRIPLE}
    ${EDGELM_ARM64_SYSROOT}/usr/lib/${ELM_CROSS_TRIPLE}/openblas-serial)
# pkg-config reads only the sysroot's .pc files and prefixes their -I/-L.
set(ENV{PKG_CONFIG_LIBDIR}
    "${EDGELM_ARM64_SYSROOT}/usr/lib/${ELM_CROSS_TRIPLE}/pkgconfig:${EDGELM_ARM64_SYSROOT}/usr/lib/${ELM_CROSS_TRIPLE}/openblas-serial/pkgconfig:${EDGELM_ARM64_SYSROOT}/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_SYSROOT_DIR} "${EDGELM_ARM64_SYSROOT}")
set(ENV{PKG_CONFIG_PATH} "")

# Shared libraries' own dependencies (Criterion -> libgit2 -> ...) are found
# at link time through -rpath-link.
set(_elm_link "")
foreach(d ${_elm_libdirs})
  string(APPEND _elm_link " -Wl,-rpath-link,${d}")
endforeach()
set(CMAKE_EXE_LINKER_FLAGS_INIT "${_elm_link}")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "${_elm_link}")

set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# qemu-user runs the binaries; the guest finds the sysroot's libraries through
# LD_LIBRARY_PATH (set for the guest only, not for qemu itself).
find_program(ELM_QEMU_AARCH64 NAMES qemu-aarch64 qemu-aarch64-static)
if(ELM_QEMU_AARCH64)
  string(REPLACE ";" ":" _elm_ldpath "${_elm_libdirs}")
  set(CMAKE_CROSSCOMPILING_EMULATOR ${ELM_QEMU_AARCH64} -L ${ELM_CROSS_PREFIX}
      -E LD_LIBRARY_PATH=${_elm_ldpath})
endif()

# GCC 12.2 for aarch64 (Debian 12's cross compiler, presumably its native one
# too) stops with an internal compiler error (vect_transform_reduction)
# vectorizing the fmax reduction of the rope/yarn test in tests/test_cpu_ops.c.
# Only that file is compiled without loop vectorization (a source property of
# the top-level directory, where the toolchain file is read).
get_filename_component(_elm_ops_test "${CMAKE_CURRENT_LIST_DIR}/../tests/test_cpu_ops.c" ABSOLUTE)
set_source_files_properties(${_elm_ops_test} PROPERTIES COMPILE_OPTIONS -fno-tree-loop-vectorize)
