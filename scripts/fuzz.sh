#!/usr/bin/env bash
# Fuzz smoke run: builds every tests/fuzz/fuzz_*.c as a libFuzzer binary (clang,
# -fsanitize=fuzzer,address,undefined) against the library sources compiled with
# clang too (src/core, src/io, the dataset readers, hallu plot's metrics reader
# and the CLI's --config reader, as one static archive),
# seeds a corpus with tests/fuzz/make_seeds.c, then runs each target for
# FUZZ_SECONDS seconds (default 20). Exits non-zero on any finding; the input
# that triggered it is kept in $FUZZ_BUILD_DIR/findings/ (default build-fuzz/).
# usage: scripts/fuzz.sh [target ...]   (e.g. fuzz_png; default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${FUZZ_SECONDS:-20}
OUT=${FUZZ_BUILD_DIR:-build-fuzz}
CC=${FUZZ_CC:-clang}
JOBS=$(nproc)
mkdir -p "$OUT/obj" "$OUT/corpus" "$OUT/findings"

SAN=(-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
CFLAGS=(-std=c11 -g -O1 "${SAN[@]}" -Iinclude -Isrc -Itests
        -D_POSIX_C_SOURCE=200809L
        -D_DEFAULT_SOURCE '-DHALLU_VERSION="fuzz"' -fopenmp -Wall -Wextra -Wno-unused-parameter)
LIBS=(-ljpeg -lpng -lm -fopenmp)
LIB_SRCS=(src/core/*.c src/io/*.c src/data/dataset*.c src/data/reader_*.c src/data/packed.c
          src/data/synthetic.c src/data/image_decode.c
          src/eval/plot.c src/eval/json_line.c      # fuzz_metrics: hallu plot's metrics reader
          src/cli/config_file.c src/cli/args.c)     # fuzz_config: hallu train --config

echo "fuzz: compiling ${#LIB_SRCS[@]} library sources with $CC"
rm -f "$OUT"/obj/*.o
# One object per source (path slashes become underscores), JOBS at a time.
printf '%s\n' "${LIB_SRCS[@]}" | xargs -P "$JOBS" -I{} bash -c \
  'src="$1"; shift; "$@" -c "$src" -o "'"$OUT"'/obj/$(echo "$src" | tr / _).o"' _ {} \
  "$CC" "${CFLAGS[@]}" -fsanitize=fuzzer-no-link
rm -f "$OUT/libhallu_fuzz.a"
ar rcs "$OUT/libhallu_fuzz.a" "$OUT"/obj/*.o

"$CC" "${CFLAGS[@]}" -fsanitize=fuzzer-no-link tests/fuzz/make_seeds.c "$OUT/libhallu_fuzz.a" \
  "${LIBS[@]}" -o "$OUT/make_seeds"
ASAN_OPTIONS=detect_leaks=0 "$OUT/make_seeds" "$OUT/corpus"

if [ $# -gt 0 ]; then targets=("$@"); else
  targets=(); for f in tests/fuzz/fuzz_*.c; do targets+=("$(basename "$f" .c)"); done
fi
for t in "${targets[@]}"; do
  "$CC" "${CFLAGS[@]}" -fsanitize=fuzzer "tests/fuzz/$t.c" "$OUT/libhallu_fuzz.a" "${LIBS[@]}" \
    -o "$OUT/$t"
  mkdir -p "$OUT/corpus/$t"
done
# Each fuzzer is one process on one core: JOBS of them run side by side (the
# same SECS each, in a fraction of the wall time), then each reports in turn.
fuzz_one() {
  local t=$1
  rm -f "$OUT/$t.rc"
  "$OUT/$t" -max_total_time="$SECS" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$OUT/findings/$t-" -print_final_stats=1 "$OUT/corpus/$t" >"$OUT/$t.log" 2>&1
  echo $? >"$OUT/$t.rc"
}
running=0
for t in "${targets[@]}"; do
  fuzz_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then wait; running=0; fi
done
wait
failed=()
for t in "${targets[@]}"; do
  echo "fuzz: $t for ${SECS}s"
  if [ "$(cat "$OUT/$t.rc" 2>/dev/null)" != 0 ]; then
    echo "fuzz: FINDING in $t (log $OUT/$t.log):"
    tail -n 40 "$OUT/$t.log"
    failed+=("$t")
  else
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$OUT/$t.log" | tr '\n' ' '; echo
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: findings in ${failed[*]}"
  exit 1
fi
echo "fuzz: ${#targets[@]} targets ran ${SECS}s each, no findings"
