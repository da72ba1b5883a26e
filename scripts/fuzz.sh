#!/usr/bin/env bash
# Builds every libFuzzer target in tests/fuzz/*.c with ASan + UBSan and runs
# each one. Exits non-zero when a target crashes (the reproducer is left in
# build-fuzz/artifacts/). Targets that fail to build are reported and skipped.
#
#   usage: scripts/fuzz.sh [SECONDS]     each target for SECONDS (default 60)
#          scripts/fuzz.sh --long        a long campaign (make fuzz-long)
#
# --long runs each target under `nice -n $FUZZ_NICE` (default 10) for
# $FUZZ_RUNS executions (default 10000000) or $FUZZ_SECONDS seconds (default
# 0: no time limit), whichever comes first, then minimizes its corpus and
# appends one line of figures to build-fuzz/campaign.log. Both modes keep
# each target's corpus in build-fuzz/corpus/NAME between runs.
#
# Environment: FUZZ_TARGETS (names such as "fuzz_gguf fuzz_cli"; default:
# all), FUZZ_MAX_LEN (overrides the targets' input size limits), CC_FUZZ
# (default clang), ELM_SHARED_DIR (default ../shared).
#
# A target file may hold, in a comment, a line `fuzz-srcs: FILE...` (the
# library sources it links, relative to the root; default: the GGUF reader,
# the tokenizer and quant), a line `fuzz-srcs-add: FILE...` (sources it
# links beside those defaults), a line `fuzz-libs: -lNAME...` (libraries it
# links beside PCRE2 and libm) and a line `fuzz-options: -flag=value...` (extra
# libFuzzer options, such as -max_len). Built with -DFUZZ_WRITE_SEEDS (and
# the test helpers of tests/support/) instead of libFuzzer, a target may
# write its own seeds into the folder named by its first argument, so that a
# checkout without ../shared still has seeds.
set -uo pipefail
long=0
if [ "${1:-}" = "--long" ]; then
  long=1
  runs=${FUZZ_RUNS:-10000000}
  seconds=${FUZZ_SECONDS:-0}
else
  runs=0
  seconds=${1:-60}
fi
root=$(cd "$(dirname "$0")/.." && pwd)
shared=${ELM_SHARED_DIR:-$root/../shared}
out=$root/build-fuzz
cc=${CC_FUZZ:-clang}
mkdir -p "$out/artifacts"

# The default library sources of a target: the GGUF reader, the tokenizer, quant and
# common/ (the allocator hook, elmi_errorf).
default_srcs=()
for f in "$root"/engine/gguf*.c "$root"/engine/tokenizer*.c "$root"/engine/unicode*.c \
         "$root"/engine/utf8*.c "$root"/quant/*.c "$root"/common/*.c; do
  [ -e "$f" ] && default_srcs+=("$f")
done
flags=(-std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
       -fno-omit-frame-pointer -I"$root/include" -I"$root" -DEDGELM_STATIC)

# The words after `key:` on the target's first line that has it.
directive() { # file key
  sed -n "s/^.*$2:[[:space:]]*//p" "$1" | head -n 1 | sed 's/[[:space:]]*\*\/[[:space:]]*$//'
}

# Seeds: the small GGUF files of ../shared (big ones would slow every run).
seed_ggufs() {
  local dir=$1 f
  for f in "$shared"/models/*.gguf "$shared"/tokenizer/*.gguf; do
    [ -f "$f" ] || continue
    [ "$(stat -c %s "$f")" -le $((2 * 1024 * 1024)) ] && cp "$f" "$dir/"
  done
}

# Seeds for text targets: the tokenizer test strings, one file per string,
# and the chat templates (special-token text in context).
seed_texts() {
  local dir=$1 inp f i=0
  for inp in "$shared"/tokenizer/*.inp; do
    [ -f "$inp" ] || continue
    cp "$inp" "$dir/$(basename "$inp")"
    while IFS= read -r -d $'\0' s; do
      printf '%s' "$s" > "$dir/str$i"; i=$((i + 1))
    done < <(awk 'BEGIN{RS="\n__ggml_vocab_test__\n"; ORS="\0"} {print}' "$inp")
  done
  for f in "$shared"/chat/templates/*.jinja; do
    [ -f "$f" ] && cp "$f" "$dir/"
  done
}

# One line of figures from a libFuzzer log: runs, seconds, exec/s, cov, ft, corpus.
figures() { # log
  local log=$1 last
  last=$(grep -E '^#[0-9]+.* cov: ' "$log" | tail -n 1)
  printf 'runs=%s secs=%s exec_per_s=%s cov=%s ft=%s corpus=%s' \
    "$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)" \
    "$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)" \
    "$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)" \
    "$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<< "$last")" \
    "$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<< "$last")" \
    "$(sed -n 's/.* corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p' <<< "$last")"
}

selected() { # name
  [ -z "${FUZZ_TARGETS:-}" ] && return 0
  local t
  for t in $FUZZ_TARGETS; do [ "$t" = "$1" ] && return 0; done
  return 1
}

status=0
built=0
for src in "$root"/tests/fuzz/*.c; do
  [ -e "$src" ] || continue
  name=$(basename "$src" .c)
  selected "$name" || continue
  bin=$out/$name
  srcs=("${default_srcs[@]}")
  own=$(directive "$src" fuzz-srcs)
  if [ -n "$own" ]; then
    srcs=()
    for f in $own; do srcs+=("$root/$f"); done
  fi
  added=$(directive "$src" fuzz-srcs-add)
  for f in $added; do srcs+=("$root/$f"); done
  own="$own $added"
  libs=$(directive "$src" fuzz-libs)
  echo "== $name: building" >&2
  if ! "$cc" "${flags[@]}" "$src" "${srcs[@]}" -o "$bin" -lpcre2-8 -lsodium -lm $libs 2> "$out/$name.build.log"; then
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
    *tokenizer*) seed_texts "$corpus"; max_len=4096 ;;
    *template*) for f in "$shared"/chat/templates/*.jinja; do [ -f "$f" ] && cp "$f" "$corpus/"; done
                max_len=32768 ;;
    *) max_len=4096 ;;
  esac
  if grep -q FUZZ_WRITE_SEEDS "$src"; then
    # The seed writer links everything its helpers may need.
    seed_srcs=("${default_srcs[@]}")
    # The test support files, but not devices.c, which needs the whole library.
    support_srcs=()
    for f in "$root"/tests/support/*.c; do
      [ "$(basename "$f")" = devices.c ] || support_srcs+=("$f")
    done
    for f in $own; do
      case " ${default_srcs[*]} " in *" $root/$f "*) ;; *) seed_srcs+=("$root/$f") ;; esac
    done
    if "$cc" -std=gnu11 -g -O1 -DFUZZ_WRITE_SEEDS -DEDGELM_STATIC -I"$root/include" -I"$root" \
         -I"$root/tests" "$src" "${seed_srcs[@]}" "${support_srcs[@]}" -o "$out/$name.seeds" \
         -lpcre2-8 -lsodium -lm 2>> "$out/$name.build.log" && "$out/$name.seeds" "$corpus"; then :
    else echo "== $name: could not write its seeds (see $out/$name.build.log)" >&2; fi
  fi
  [ -d "$root/tests/fuzz/corpus/$name" ] && cp "$root/tests/fuzz/corpus/$name"/* "$corpus/" 2>/dev/null
  [ -n "${FUZZ_MAX_LEN:-}" ] && max_len=$FUZZ_MAX_LEN
  # The target's own options come after the defaults, so they win.
  opts=(-max_len="$max_len" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$out/artifacts/$name-")
  # shellcheck disable=SC2206 # the options are words
  opts+=($(directive "$src" fuzz-options))
  [ -n "${FUZZ_MAX_LEN:-}" ] && opts+=(-max_len="$FUZZ_MAX_LEN")
  run=()
  if [ $long -eq 1 ]; then
    log=$out/$name.long.log
    run=(nice -n "${FUZZ_NICE:-10}")
    opts+=(-runs="$runs")
    [ "$seconds" -gt 0 ] && opts+=(-max_total_time="$seconds")
    limit="$runs runs"
    [ "$seconds" -gt 0 ] && limit="$limit or ${seconds}s"
    echo "== $name: fuzzing for $limit under nice ($(ls "$corpus" | wc -l) inputs)" >&2
  else
    log=$out/$name.log
    opts+=(-max_total_time="$seconds")
    echo "== $name: fuzzing for ${seconds}s" >&2
  fi
  echo "+ ${run[*]} $bin $corpus ${opts[*]}" > "$log"
  (cd "$root" && ELM_SHARED_DIR="$shared" "${run[@]}" "$bin" "$corpus" "${opts[@]}" >> "$log" 2>&1)
  rc=$?
  if [ $rc -ne 0 ]; then
    echo "== $name: FAILED (exit $rc); last lines of $log:" >&2
    tail -n 30 "$log" >&2
    status=1
  else
    echo "== $name: $(figures "$log")" >&2
  fi
  if [ $long -eq 1 ]; then
    printf '%s %s %s rc=%d commit=%s\n' "$(date -u +%FT%TZ)" "$name" "$(figures "$log")" $rc \
      "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)" >> "$out/campaign.log"
    if [ $rc -eq 0 ]; then
      # Keep the corpus small between campaigns: only inputs that add coverage.
      rm -rf "$corpus.min" && mkdir -p "$corpus.min"
      if (cd "$root" && ELM_SHARED_DIR="$shared" "${run[@]}" "$bin" -merge=1 "${opts[@]:0:3}" \
            "$corpus.min" "$corpus" > "$out/$name.merge.log" 2>&1); then
        rm -rf "$corpus" && mv "$corpus.min" "$corpus"
        echo "== $name: corpus minimized to $(ls "$corpus" | wc -l) inputs" >&2
      else
        rm -rf "$corpus.min"
        echo "== $name: corpus minimization failed (see $out/$name.merge.log)" >&2
      fi
    fi
  fi
done
[ $built -eq 0 ] && { echo "no fuzz target built" >&2; exit 1; }
exit $status
