#!/usr/bin/env bash
# Compares the built libedgelm.so with the committed ABI baseline
# (abi/libedgelm.abi) using libabigail's abidiff, and fails on any change
# that the ABI rule in include/edgelm.h does not allow. Allowed: added
# functions, fields appended to a struct (abi/libedgelm.suppr), and anything
# in include/edgelm_tools.h.
#
#   scripts/abi-check.sh BUILD_DIR           check (exit 1 on a break)
#   scripts/abi-check.sh BUILD_DIR --update  rewrite the baseline; only with
#                                            a SONAME bump for an intended break,
#                                            or to record additions
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
mode=${2:-check}
lib="$build/libedgelm.so"
baseline="$root/abi/libedgelm.abi"
suppr="$root/abi/libedgelm.suppr"

command -v abidw >/dev/null && command -v abidiff >/dev/null || {
  echo "abi-check: abidw/abidiff not found (Debian package abigail-tools; make deps installs it)" >&2
  exit 1; }
[ -f "$lib" ] || { echo "abi-check: $lib not built" >&2; exit 1; }
lib=$(readlink -f "$lib")

# Only the types reachable from the public headers count.
dump() { abidw --headers-dir "$root/include" --drop-private-types --no-corpus-path \
               --no-comp-dir-path --out-file "$1" "$lib"; }

if [ "$mode" = --update ]; then
  dump "$baseline" || exit 1
  echo "abi-check: baseline written to abi/libedgelm.abi ($(objdump -p "$lib" | awk '/SONAME/{print $2}'))"
  exit 0
fi
[ -f "$baseline" ] || { echo "abi-check: no baseline $baseline (run with --update)" >&2; exit 1; }

current=$(mktemp) || exit 1
trap 'rm -f "$current"' EXIT
dump "$current" || exit 1
base_soname=$(awk -F"'" '/<abi-corpus / { for (i = 1; i <= NF; i++) if ($i ~ /soname=$/) print $(i+1) }' "$baseline")
cur_soname=$(objdump -p "$lib" | awk '/SONAME/{print $2}')
report=$(abidiff --harmless --no-added-syms --suppressions "$suppr" "$baseline" "$current")
rc=$?
# abidiff's exit status is a bit field: 1 error, 2 usage, 4 ABI change,
# 8 incompatible change. An ABI change passes only when every line of the
# report is an allowed one (scripts/abi_policy.py: appended fields).
if [ $((rc & 3)) -ne 0 ]; then
  echo "abi-check: abidiff failed ($rc):" >&2; echo "$report" >&2; exit 1
fi
if [ $rc -ne 0 ] && { [ $((rc & 8)) -ne 0 ] || ! echo "$report" | python3 "$root/scripts/abi_policy.py"; }; then
  if [ -n "$base_soname" ] && [ "$base_soname" != "$cur_soname" ]; then
    echo "abi-check: SONAME changed ($base_soname -> $cur_soname) but the baseline was not updated" >&2
  fi
  echo "abi-check: FAILED: the library's ABI broke against abi/libedgelm.abi" >&2
  echo "$report" >&2
  echo "abi-check: append fields and add functions instead; for an intended break, bump" >&2
  echo "           the SONAME (project VERSION major) and run scripts/abi-check.sh BUILD --update" >&2
  exit 1
fi
[ $rc -ne 0 ] && echo "$report" | sed 's/^/abi-check: allowed: /'
echo "abi-check: $cur_soname is compatible with abi/libedgelm.abi"
