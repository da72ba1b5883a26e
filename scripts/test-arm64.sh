#!/usr/bin/env bash
# Cross-compiles edgelm for aarch64 and runs the kernel tests and the
# stories260K reference test under qemu-user: `make test-arm64`.
#
# Usage: test-arm64.sh [BUILD_DIR [SHARED_DIR [JOBS]]]
#   BUILD_DIR  default build-arm64; SHARED_DIR default ../shared
#   ARM64_SYSROOT (env) where the arm64 libraries are unpacked
#                 (default build-arm64-sysroot)
#   ARM64_REFRESH=1 (env) resolve and unpack the arm64 packages again
#   ARM64_SETUP_ONLY=1 (env) install and unpack, then stop
#
# Setup, idempotent and non-interactive (only what is missing is installed):
#  - Debian packages for the host: gcc-aarch64-linux-gnu with
#    libc6-dev-arm64-cross (the arm64 C library in /usr/aarch64-linux-gnu)
#    and qemu-user.
#  - The arm64 PCRE2, OpenBLAS and Criterion with their dependencies, as
#    .debs unpacked into ARM64_SYSROOT. Not installed through multiarch:
#    on Debian 12 libcriterion-dev:arm64 cannot be co-installed with the
#    amd64 one (libnanomsg5 has a binNMU on amd64 only, and Multi-Arch: same
#    needs equal versions, so apt would remove the amd64 Criterion), and the
#    arm64 libc6-dev alone forces upgrades of amd64 packages. The arm64
#    architecture is added to dpkg (apt needs it to resolve and download arm64
#    packages) but no arm64 package is installed.
#
# Tests: each binary under qemu-aarch64, the kernel tests with two CPU models:
#   -cpu max         NEON with the dot-product instructions (FEAT_DotProd)
#   -cpu cortex-a53  NEON without them: the widening-multiply kernels
# Criterion (BoxFort) runs every test by executing the test binary again,
# and rule 4 of the reference test executes the CLI. Without binfmt_misc
# (global kernel state; not there in containers) the kernel cannot execute an
# aarch64 file, so a small shim (qemu-exec-shim.so, built here) is preloaded
# into the guest programs: an exec of an aarch64 ELF file becomes an exec of
# qemu-aarch64 with the same options on it.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
build=${1:-build-arm64}
case $build in /*) ;; *) build="$root/$build" ;; esac
shared=${2:-$(cd .. && pwd)/shared}
jobs=${3:-$(nproc)}
sysroot=${ARM64_SYSROOT:-$root/build-arm64-sysroot}
triple=aarch64-linux-gnu
t0=$(date +%s)

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# ------------------------------------------------------------ host packages
host_pkgs=(cmake pkg-config gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
missing=()
for p in "${host_pkgs[@]}"; do installed "$p" || missing+=("$p"); done
installed qemu-user || installed qemu-user-static || missing+=(qemu-user)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test-arm64: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq || exit 1
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" || exit 1
fi
qemu=$(command -v qemu-aarch64 || command -v qemu-aarch64-static) || {
  echo "test-arm64: qemu-aarch64 not found" >&2; exit 1; }

# --------------------------------------------------------- arm64 libraries
arm64_devs=(libpcre2-dev:arm64 libopenblas-serial-dev:arm64 libcriterion-dev:arm64 libjansson-dev:arm64
            libsodium-dev:arm64 libmicrohttpd-dev:arm64 libcurl4-openssl-dev:arm64)
# Provided by the cross toolchain (/usr/aarch64-linux-gnu), or host tools.
provided='^(libc6|libc6-dev|libgcc-s1|gcc-12-base|linux-libc-dev|libcrypt1|libcrypt-dev|pkgconf|pkg-config):arm64='

if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  echo "test-arm64: adding the arm64 architecture to dpkg" >&2
  $SUDO dpkg --add-architecture arm64 || exit 1
fi

# The arm64 packages and versions that the -dev packages need, resolved by
# apt as if nothing were installed: "name:arm64=version" lines.
resolve() {
  local empty
  empty=$(mktemp) || return 1
  apt-get -s -qq -o Dir::State::status="$empty" install --no-install-recommends \
      "${arm64_devs[@]}" 2>/dev/null |
    awk '/^Inst / && $2 ~ /:arm64$/ { v = $3; sub(/^\(/, "", v); print $2 "=" v }' |
    grep -vE "$provided" | sort
  rm -f "$empty"
}

# Resolving takes apt some seconds: done when the sysroot is missing, or
# on request (ARM64_REFRESH=1, e.g. after a Debian point release).
# ... and when the list of -dev packages changed since the sysroot was made.
if [ ! -f "$sysroot/.packages" ] || [ "${ARM64_REFRESH:-0}" = 1 ] ||
   [ "$(cat "$sysroot/.devs" 2>/dev/null)" != "${arm64_devs[*]}" ]; then
  want=$(resolve)
  if [ -z "$want" ]; then
    echo "test-arm64: updating the package lists for arm64" >&2
    $SUDO apt-get update -qq || exit 1
    want=$(resolve)
  fi
  [ -n "$want" ] || { echo "test-arm64: cannot resolve ${arm64_devs[*]}" >&2; exit 1; }
fi
if [ -n "${want:-}" ] && [ "$(cat "$sysroot/.packages" 2>/dev/null)" != "$want" ]; then
  echo "test-arm64: unpacking $(echo "$want" | wc -l) arm64 packages into $sysroot" >&2
  tmp="$sysroot.tmp"
  rm -rf "$tmp" && mkdir -p "$tmp/debs" || exit 1
  aptopt=()
  [ "$(id -u)" -eq 0 ] && aptopt=(-o APT::Sandbox::User=root) # else a warning about _apt
  # shellcheck disable=SC2086 # one package per word
  download() { (cd "$tmp/debs" && apt-get download -qq "${aptopt[@]}" $want); }
  if ! download; then # stale package lists: those versions are gone
    echo "test-arm64: updating the package lists and resolving again" >&2
    $SUDO apt-get update -qq || exit 1
    want=$(resolve)
    if [ -z "$want" ] || ! download; then
      echo "test-arm64: apt-get download failed" >&2; exit 1
    fi
  fi
  for deb in "$tmp"/debs/*.deb; do dpkg -x "$deb" "$tmp/root" || exit 1; done
  rm -rf "$sysroot" && mv "$tmp/root" "$sysroot" && rm -rf "$tmp" || exit 1
  # Absolute symlinks (libz.so -> /lib/...) point into the sysroot instead.
  find "$sysroot" -type l -lname '/*' | while read -r l; do
    ln -sfn "$sysroot$(readlink "$l")" "$l"
  done
  echo "$want" >"$sysroot/.packages"
fi
[ -d "$sysroot" ] && echo "${arm64_devs[*]}" >"$sysroot/.devs"
t_setup=$(date +%s)
echo "test-arm64: setup took $((t_setup - t0)) s" >&2
[ "${ARM64_SETUP_ONLY:-0}" = 1 ] && exit 0

# ------------------------------------------------------------------- build
targets=(test_cpu_matmul test_cpu_ops test_quant test_quant_blocks test_quant_files
         test_reference edgelm)
cmake -S . -B "$build" -DCMAKE_TOOLCHAIN_FILE="$root/cmake/toolchain-aarch64.cmake" \
      -DEDGELM_ARM64_SYSROOT="$sysroot" -DEDGELM_VULKAN=OFF -DCMAKE_BUILD_TYPE=Release \
      -DEDGELM_SHARED_DIR="$shared" >/dev/null || { echo "test-arm64: configure FAILED" >&2; exit 1; }
fail=0
built=" "
for t in "${targets[@]}"; do
  if cmake --build "$build" -j "$jobs" --target "$t"; then
    built+="$t "
  else
    echo "test-arm64: build of $t FAILED" >&2; fail=1
  fi
done

# The exec shim (see the top), preloaded into every guest program.
shim_src=$(cat <<'EOF'
/* Preloaded into aarch64 programs under qemu-user (scripts/test-arm64.sh):
 * an exec of an aarch64 ELF file becomes an exec of the qemu command in
 * ELM_QEMU (words separated by spaces) on that file. LD_PRELOAD and
 * LD_LIBRARY_PATH go to the new guest through qemu's -E, not to qemu. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

extern char **environ;

static int is_aarch64_elf(const char *path) {
    unsigned char h[20];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, h, sizeof h);
    close(fd);
    /* ELFCLASS64, EM_AARCH64 (183) */
    return n == (ssize_t)sizeof h && memcmp(h, "\177ELF", 4) == 0 && h[4] == 2 &&
           (h[18] | h[19] << 8) == 183;
}

static int sys_execve(const char *path, char *const argv[], char *const envp[]) {
    return (int)syscall(SYS_execve, path, argv, envp);
}

int execve(const char *path, char *const argv[], char *const envp[]) {
    const char *q = getenv("ELM_QEMU");
    if (!q || !*q || !is_aarch64_elf(path)) return sys_execve(path, argv, envp);
    size_t na = 0, ne = 0, nw = 0, k = 0;
    while (argv[na]) na++;
    while (envp[ne]) ne++;
    char *words = strdup(q);
    char **nargv = calloc(strlen(q) + 2 * ne + na + 8, sizeof *nargv);
    char **nenvp = calloc(ne + 1, sizeof *nenvp);
    if (!words || !nargv || !nenvp) {
        errno = ENOMEM;
        return -1;
    }
    for (char *s = strtok(words, " "); s; s = strtok(NULL, " ")) nargv[nw++] = s;
    for (size_t i = 0; i < ne; i++) {
        if (!strncmp(envp[i], "LD_PRELOAD=", 11) || !strncmp(envp[i], "LD_LIBRARY_PATH=", 16)) {
            nargv[nw++] = "-E";
            nargv[nw++] = envp[i];
        } else {
            nenvp[k++] = envp[i];
        }
    }
    nargv[nw++] = "-0";
    nargv[nw++] = na ? argv[0] : (char *)path;
    nargv[nw++] = (char *)path;
    for (size_t i = 1; i < na; i++) nargv[nw++] = argv[i];
    int rc = sys_execve(nargv[0], nargv, nenvp);
    int e = errno;
    free(words);
    free(nargv);
    free(nenvp);
    errno = e;
    return rc;
}

int execv(const char *path, char *const argv[]) { return execve(path, argv, environ); }

int execl(const char *path, const char *arg, ...) {
    va_list ap;
    size_t n = 1;
    va_start(ap, arg);
    while (va_arg(ap, const char *)) n++;
    va_end(ap);
    const char **argv = calloc(n + 1, sizeof *argv);
    if (!argv) {
        errno = ENOMEM;
        return -1;
    }
    argv[0] = arg;
    va_start(ap, arg);
    for (size_t i = 1; i < n; i++) argv[i] = va_arg(ap, const char *);
    va_end(ap);
    int rc = execve(path, (char *const *)argv, environ);
    free(argv);
    return rc;
}
EOF
)
probe_src='#include <stdio.h>
#include <sys/auxv.h>
int main(void) { puts(getauxval(AT_HWCAP) & (1UL << 20) ? "dotprod" : "no-dotprod"); return 0; }'
helper() { # name source flags...: compiles $build/name when its source changed
  local name=$1 src=$2; shift 2
  if [ "$(cat "$build/$name.c" 2>/dev/null)" != "$src" ] || [ ! -f "$build/$name" ]; then
    printf '%s\n' "$src" >"$build/$name.c"
    $triple-gcc -O2 -Wall -Wextra "$@" -o "$build/$name" "$build/$name.c" || return 1
  fi
}
helper qemu-exec-shim.so "$shim_src" -shared -fPIC || exit 1
helper hwcap-probe "$probe_src" || exit 1
t_build=$(date +%s)
echo "test-arm64: configure and build took $((t_build - t_setup)) s" >&2

# -------------------------------------------------------------------- tests
libpath="$sysroot/lib/$triple:$sysroot/usr/lib/$triple:$sysroot/usr/lib/$triple/openblas-serial"
export ELM_SHARED_DIR="$shared" ELM_SOURCE_DIR="$root" ELM_BUILD_DIR="$build"
export ELM_CLI="$build/edgelm"
[ -d "$shared" ] || echo "note: $shared is absent; the reference tests skip" >&2

guest() { # cpu program args...: runs an aarch64 program under qemu (15 min at most)
  local cpu=$1; shift
  ELM_QEMU="$qemu -L /usr/$triple -cpu $cpu" timeout 900 "$qemu" -L "/usr/$triple" -cpu "$cpu" \
    -E LD_LIBRARY_PATH="$libpath" -E LD_PRELOAD="$build/qemu-exec-shim.so" "$@"
}

# Both kernel paths must be reachable, or half the NEON kernels go untested.
for cpu in max:dotprod cortex-a53:no-dotprod; do
  got=$(guest "${cpu%%:*}" "$build/hwcap-probe")
  if [ "$got" != "${cpu#*:}" ]; then
    echo "test-arm64: qemu -cpu ${cpu%%:*} reports '$got', expected '${cpu#*:}'" >&2
    fail=1
  fi
done

summary=()
run() { # cpu test [criterion args...]
  local cpu=$1 t=$2; shift 2
  local s rc log="$build/$t.$cpu.log"
  if [[ $built != *" $t "* ]]; then
    summary+=("$(printf '%-18s -cpu %-10s %4s   NOT BUILT %s' "$t" "$cpu" - "$*")")
    return
  fi
  s=$(date +%s)
  echo "=== $t (qemu -cpu $cpu) $*"
  guest "$cpu" "$build/$t" --jobs "$jobs" "$@" >"$log" 2>&1
  rc=$?
  grep -E '^\[(FAIL|====)\] ' "$log"
  local verdict=PASS
  if [ $rc -ne 0 ]; then verdict="FAIL(rc=$rc, log $log)"; fail=1; tail -40 "$log"; fi
  summary+=("$(printf '%-18s -cpu %-10s %4d s %s %s' "$t" "$cpu" "$(($(date +%s) - s))" "$verdict" "$*")")
}

# The kernels, both paths; the rest with dot products. The spinning
# thread-pool stress test of test_cpu_ops is left out: it takes minutes under
# qemu, and emulated on x86 the guest gets x86's strong memory ordering, so
# it cannot find what it would look for on Arm (test_cpu_matmul's thread-pool
# tests do run).
run max test_cpu_matmul
run cortex-a53 test_cpu_matmul
run max test_cpu_ops --filter '!(threadpool/*)'
run max test_quant
run max test_quant_blocks
run max test_quant_files
# stories260K (F32 and F16, rules 1-3, tokenizer and the CLI's text) and, end
# to end through the Q4_0 and Q6_K kernels, synth-spm-a-Q4_0 in fast mode.
run max test_reference --filter '*/stories260K*'
run max test_reference --filter 'rule2_fast/synth_spm_a_Q4_0'
run cortex-a53 test_reference --filter 'rule2_fast/synth_spm_a_Q4_0'

t_end=$(date +%s)
echo "=== test-arm64 summary"
printf '%s\n' "${summary[@]}"
echo "setup $((t_setup - t0)) s, build $((t_build - t_setup)) s, tests $((t_end - t_build)) s," \
     "total $((t_end - t0)) s"
if [ $fail -ne 0 ]; then echo "make test-arm64: FAILED" >&2; exit 1; fi
echo "make test-arm64: all passed"
