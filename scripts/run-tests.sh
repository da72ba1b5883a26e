#!/usr/bin/env bash
# Runs every test: the release build's suite, the whole suite again under
# AddressSanitizer + UndefinedBehaviorSanitizer, and the threading tests under
# ThreadSanitizer. Usage: run-tests.sh BUILD_DIR SHARED_DIR JOBS
set -uo pipefail
build=${1:-build}
shared=${2:-$(cd .. && pwd)/shared}
jobs=${3:-$(nproc)}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
[ -d "$shared" ] || echo "note: $shared is absent; tests that need the shared references skip" >&2

fail=0
run_suite() { # name build_dir [ctest args...]
  local name=$1 dir=$2; shift 2
  echo "=== $name ==="
  if ! ctest --test-dir "$dir" --output-on-failure -j "$jobs" "$@"; then
    echo "=== $name: FAILED ===" >&2
    fail=1
  fi
}

configure_build() { # dir sanitize build_type [targets...]; $cmake_extra: more -D flags
  local dir=$1 san=$2 type=$3; shift 3
  # shellcheck disable=SC2086
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="$type" -DEDGELM_SANITIZE="$san" \
        -DEDGELM_SHARED_DIR="$shared" ${cmake_extra:-} >/dev/null || return 1
  if [ $# -gt 0 ]; then
    local t
    for t in "$@"; do cmake --build "$dir" -j "$jobs" --target "$t" || return 1; done
  else
    cmake --build "$dir" -j "$jobs" || return 1
  fi
}

# Each suite starts with a cold cache (pipeline cache, bench store): the
# tests point XDG_CACHE_HOME there, so a warm cache from an earlier run
# cannot hide a cold-start failure.
cold_cache() { rm -rf "$1/test-cache"; }

# Mesa's own disk cache of compiled shaders (lavapipe's LLVM output), kept
# from the release suite: the sanitizer suite starts with it, because LLVM
# compiles some 4x slower in an ASan process (test_vk_fuse_matvec: 27 s cold
# against 5 s warm), while edgelm's own caches there still start cold.
save_driver_cache() { rm -rf "$1/driver-cache"; [ -d "$1/test-cache/mesa_shader_cache" ] && cp -r "$1/test-cache/mesa_shader_cache" "$1/driver-cache"; }
seed_driver_cache() { # from_dir to_dir
  [ -d "$1/driver-cache" ] || return 0
  mkdir -p "$2/test-cache" && cp -r "$1/driver-cache" "$2/test-cache/mesa_shader_cache"
}

cold_cache "$build"
run_suite "release" "$build"
save_driver_cache "$build"

# The CPU kernels at each lower SIMD level this CPU has (EDGELM_SIMD): only
# the tests whose results go through the CPU kernels (kernels, quant blocks,
# whole models on the CPU). Vulkan tests, the CLI, the server and the parsers
# do not depend on the SIMD level and ran once above.
simd_levels=(scalar)
if grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw avx512_vnni /proc/cpuinfo 2>/dev/null; then
  simd_levels=(avx2 scalar)
fi
for level in "${simd_levels[@]}"; do
  cold_cache "$build"
  export EDGELM_SIMD=$level
  run_suite "release, EDGELM_SIMD=$level" "$build" \
    -R '^test_(quant|quant_blocks|quant_files|cpu_[a-z_]+|reference|context|determinism|synth|threads)$'
  unset EDGELM_SIMD
done

echo "=== ABI check ==="
if ! ./scripts/abi-check.sh "$build"; then
  echo "=== ABI check: FAILED ===" >&2; fail=1
fi

# The sanitizer options every test runs with are set by CMakeLists.txt.
if configure_build build-asan address,undefined RelWithDebInfo; then
  cold_cache build-asan
  seed_driver_cache "$build" build-asan
  # Without the Vulkan suites that check shaders under every limits profile
  # and the thread-count determinism sweep: they ran above, their time under
  # the sanitizers goes to lavapipe and to repeated runs of the same host
  # code (15 minutes of the 30 make test may take), and the host paths they
  # use (planning, memory, recording, the scheduler, the op API, device
  # loss) run here through test_vk_model, test_vk_device, test_vk_import,
  # test_vk_argmax, test_ops_api, test_reference_vulkan and test_determinism's
  # CPU siblings (test_cpu_ops, test_threads).
  run_suite "address+undefined sanitizers" build-asan \
    -E '^test_(vk_ops|vk_layer|vk_attention|vk_profile|determinism)$'
else
  echo "=== sanitizer build FAILED ===" >&2; fail=1
fi

# Criterion cannot start under TSan; test_threads.c then brings its own main.
# It tests the CPU backend's threads: built without Vulkan, which spares a
# third compile of every shader variant.
if cmake_extra=-DEDGELM_VULKAN=OFF configure_build build-tsan thread RelWithDebInfo test_threads; then
  run_suite "thread sanitizer" build-tsan -R '^test_threads$'
else
  echo "=== thread-sanitizer build FAILED ===" >&2; fail=1
fi

# The aarch64 cross build's kernel and reference tests under qemu-user
# (a few minutes); ELM_SKIP_ARM64=1 skips it.
if [ "${ELM_SKIP_ARM64:-0}" != 1 ]; then
  echo "=== aarch64 under qemu-user ==="
  if ! ./scripts/test-arm64.sh build-arm64 "$shared" "$jobs"; then
    echo "=== aarch64: FAILED ===" >&2; fail=1
  fi
fi

if [ $fail -ne 0 ]; then echo "make test: FAILED" >&2; exit 1; fi
echo "make test: all suites passed"
