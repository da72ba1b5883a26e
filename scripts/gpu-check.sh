#!/usr/bin/env bash
# The real-GPU check of the Vulkan backend (issue 12, part 9; DEVELOPERS.md
# says when and how to run it). One command, under 8 minutes:
#   scripts/gpu-check.sh OUT_DIR [BUILD_DIR]
# Builds edgelm in BUILD_DIR (default build-gpu) when it holds no build and a
# toolchain with glslc is present; otherwise uses the build it finds there
# (made on a Debian 12 machine and carried, with its runtime libraries in
# $ELM_GPU_LIBS: see DEVELOPERS.md). Then, on the first Vulkan device that
# is not a CPU (or the one in ELM_GPU_DEVICE, e.g. vulkan:1):
#   devices.txt        edgelm devices
#   reference.json     the reference suite (test_reference) on that device
#   ops.json           bench --ops
#   ops-norepack.json  bench --ops with weights in the file layout (what the
#                      split layout buys)
#   ops-tex.json       bench --ops with mat-vecs through texel buffers (on
#                      GPUs off by default until this measures it)
#   profile.json       bench --profile (where this build has it)
#   bench-TYPE.json    bench at the llama-1b shape, Q4_0, Q8_0 and Q4_K
#   bench-Q4_0-nofuse.json  the Q4_0 bench with fusion off (what fusion buys)
#   summary.json       every step: command, exit status, seconds
# Exits 1 when a step failed, 2 when there is no GPU to check.
set -uo pipefail
out=${1:?usage: gpu-check.sh OUT_DIR [BUILD_DIR]}
root=$(cd "$(dirname "$0")/.." && pwd)
build=${2:-$root/build-gpu}
case $build in /*) ;; *) build="$root/$build" ;; esac
shared=${ELM_SHARED_DIR:-$root/../shared}
[ -d "$root/shared" ] && [ ! -d "$shared" ] && shared=$root/shared
mkdir -p "$out" || exit 1
out=$(cd "$out" && pwd)
t_start=$(date +%s)
if [ -n "${ELM_GPU_LIBS:-}" ]; then
  export LD_LIBRARY_PATH="$ELM_GPU_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
export XDG_CACHE_HOME="$out/cache" EDGELM_VK_VALIDATION=0

steps=()
record() { # name rc seconds command
  steps+=("$(printf '{"step": "%s", "rc": %d, "seconds": %d, "command": "%s"}' "$1" "$2" "$3" "${4//\"/\\\"}")")
}
step() { # name timeout command...: runs it, output to OUT/name.log
  local name=$1 limit=$2; shift 2
  local s rc
  s=$(date +%s)
  echo "=== $name: $*"
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  rc=$?
  tail -5 "$out/$name.log"
  record "$name" "$rc" "$(($(date +%s) - s))" "$*"
  [ $rc -eq 0 ] || failed=1
  return $rc
}
finish() {
  local IFS=,
  printf '{"total_seconds": %d, "device": "%s", "steps": [%s]}\n' "$(($(date +%s) - t_start))" \
    "${dev:-none}" "${steps[*]}" >"$out/summary.json"
  echo "gpu-check: summary in $out/summary.json ($(($(date +%s) - t_start)) s)"
}
failed=0

# 1. The build.
if [ ! -x "$build/edgelm" ]; then
  if command -v cmake >/dev/null && command -v cc >/dev/null && command -v glslc >/dev/null; then
    step build 300 sh -c "cmake -S '$root' -B '$build' -DCMAKE_BUILD_TYPE=Release -DEDGELM_SHARED_DIR='$shared' >/dev/null && cmake --build '$build' -j $(nproc) --target edgelm test_reference" || { finish; exit 1; }
  else
    echo "gpu-check: no build in $build and no toolchain with glslc here: build on Debian 12 and carry it (DEVELOPERS.md)" >&2
    record build 1 0 "no build and no toolchain"
    failed=1; finish; exit 1
  fi
fi
cli=$build/edgelm

# 2. The devices, and the GPU to check.
step devices 60 "$cli" devices
dev=${ELM_GPU_DEVICE:-}
if [ -z "$dev" ]; then
  dev=$(awk '/^vulkan:[0-9]+ / && !/\(cpu, vulkan backend\)/ { print $1; exit }' "$out/devices.log")
fi
cp "$out/devices.log" "$out/devices.txt"
if [ -z "$dev" ]; then
  echo "gpu-check: no Vulkan GPU among the devices (see devices.txt)" >&2
  finish; exit 2
fi
echo "gpu-check: checking $dev"

# 3. The reference suite on the GPU (every model of the shared ground truth).
if [ -x "$build/test_reference" ]; then
  ELM_TEST_DEVICE=$dev ELM_SHARED_DIR=$shared step reference 150 "$build/test_reference" --jobs 4 \
    --json="$out/reference.json"
else
  record reference 1 0 "test_reference not built"; failed=1
fi

# 4. Kernels and profile.
step ops 120 "$cli" bench --ops --device "$dev" --budget 90 --json "$out/ops.json"
EDGELM_VK_LIMITS=norepack step ops-norepack 80 "$cli" bench --ops --device "$dev" --budget 60 \
  --json "$out/ops-norepack.json"
EDGELM_VK_LIMITS=tex step ops-tex 60 "$cli" bench --ops --device "$dev" --budget 45 \
  --json "$out/ops-tex.json"
if "$cli" bench --help 2>&1 | grep -q -- --profile; then
  step profile 90 "$cli" bench --profile --device "$dev" -p 64 -n 16 -r 1 --budget 60 --json "$out/profile.json"
else
  record profile 0 0 "bench --profile: not in this build"
fi

# 5. Decode and prefill at the llama-1b shape.
for t in Q4_0 Q8_0 Q4_K; do
  step "bench-$t" 100 "$cli" bench --shape llama-1b --type "$t" --device "$dev" -p 128 -n 32 -r 1 \
    --budget 70 --no-store --json "$out/bench-$t.json"
done
EDGELM_VK_LIMITS=nofuse step bench-Q4_0-nofuse 100 "$cli" bench --shape llama-1b --type Q4_0 --device "$dev" \
  -p 128 -n 32 -r 1 --budget 70 --no-store --json "$out/bench-Q4_0-nofuse.json"
finish
exit $failed
