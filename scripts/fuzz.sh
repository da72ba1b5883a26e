#!/usr/bin/env bash
# Builds every libFuzzer target in tests/fuzz/*.c with ASan + UBSan and runs
# each for SECONDS (default 60). Exits non-zero when a target crashes (the
# reproducer is left in build-fuzz/artifacts/). Targets that fail to build
# are reported and skipped.
#   usage: scripts/fuzz.sh [SECONDS]
set -uo pipefail
seconds=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
shared=${ELM_SHARED_DIR:-$root/../shared}
out=$root/build-fuzz
cc=${CC_FUZZ:-clang}
mkdir -p "$out/artifacts"

# The library sources a target may need: the GGUF reader, the tokenizer, quant
# and common/ (the allocator hook).
srcs=()
for f in "$root"/engine/gguf*.c "$root"/engine/tokenizer*.c "$root"/engine/unicode*.c \
         "$root"/engine/utf8*.c "$root"/quant/*.c "$root"/common/*.c; do
  [ -e "$f" ] && srcs+=("$f")
done
flags=(-std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
       -fno-omit-frame-pointer -I"$root/include" -I"$root" -DEDGELM_STATIC)

# Seeds: the small GGUF files of ../shared (big ones would slow every run).
seed_ggufs() {
  local dir=$1 f
  for f in "$shared"/models/*.gguf "$shared"/tokenizer/*.gguf; do
    [ -f "$f" ] || continue
    [ "$(stat -c %s "$f")" -le $((2 * 1024 * 1024)) ] && cp "$f" "$dir/"
  done
}

# Seeds for text targets: the tokenizer test strings, one file per string.
seed_texts() {
  local dir=$1 inp i=0
  for inp in "$shared"/tokenizer/*.inp; do
    [ -f "$inp" ] || continue
    cp "$inp" "$dir/$(basename "$inp")"
    while IFS= read -r -d $'\0' s; do
      printf '%s' "$s" > "$dir/str$i"; i=$((i + 1))
    done < <(awk 'BEGIN{RS="\n__ggml_vocab_test__\n"; ORS="\0"} {print}' "$inp")
  done
}

status=0
built=0
for src in "$root"/tests/fuzz/*.c; do
  [ -e "$src" ] || continue
  name=$(basename "$src" .c)
  bin=$out/$name
  echo "== $name: building" >&2
  if ! "$cc" "${flags[@]}" "$src" "${srcs[@]}" -o "$bin" -lpcre2-8 -lm 2> "$out/$name.build.log"; then
    echo "== $name: does not build, skipped (see $out/$name.build.log)" >&2
    continue
  fi
  built=$((built + 1))
  corpus=$out/corpus/$name
  mkdir -p "$corpus"
  case $name in
    # Inputs are capped at 64 KiB for speed: the larger shared seeds are cut
    # (still exercising long string arrays), the written seeds are whole.
    *gguf*) seed_ggufs "$corpus"; max_len=65536 ;;
    *) seed_texts "$corpus"; max_len=4096 ;;
  esac
  # A target may write its own small seeds: built with FUZZ_WRITE_SEEDS (and
  # the test helpers) instead of libFuzzer, it is run with the corpus folder.
  if grep -q FUZZ_WRITE_SEEDS "$src"; then
    if "$cc" -std=gnu11 -g -O1 -DFUZZ_WRITE_SEEDS -I"$root/include" -I"$root" -I"$root/tests" \
         "$src" "${srcs[@]}" "$root"/tests/support/*.c -o "$out/$name.seeds" -lpcre2-8 -lm \
         2>> "$out/$name.build.log" && "$out/$name.seeds" "$corpus"; then :
    else echo "== $name: could not write its seeds (see $out/$name.build.log)" >&2; fi
  fi
  [ -d "$root/tests/fuzz/corpus/$name" ] && cp "$root/tests/fuzz/corpus/$name"/* "$corpus/" 2>/dev/null
  echo "== $name: fuzzing for ${seconds}s" >&2
  (cd "$root" && ELM_SHARED_DIR="$shared" "$bin" "$corpus" -max_total_time="$seconds" \
      -max_len="$max_len" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$out/artifacts/$name-" > "$out/$name.log" 2>&1)
  rc=$?
  if [ $rc -ne 0 ]; then
    echo "== $name: FAILED (exit $rc); last lines of $out/$name.log:" >&2
    tail -n 30 "$out/$name.log" >&2
    status=1
  else
    grep -E '^stat::number_of_executed_units|^Done' "$out/$name.log" | sed "s/^/== $name: /" >&2
  fi
done
[ $built -eq 0 ] && { echo "no fuzz target built" >&2; exit 1; }
exit $status
