#!/bin/sh
# cuda_device_error.sh PROBE HALLU WORKDIR: without a usable CUDA device (or in a
# build without the CUDA backend), `hallu train --device cuda` exits non-zero
# and says why ("no CUDA device" / "no CUDA backend"), writing no run. Where
# the probe finds a GPU there is nothing to check: exit 77 (skipped).
probe=$1 hallu=$2 work=$3
"$probe"
rc=$?
case $rc in
  0) echo "cuda_device_error.sh: skipped (a CUDA device is usable here)"; exit 77 ;;
  77) ;;
  *) echo "cuda_device_error.sh: the probe failed (exit $rc)" >&2; exit 1 ;;
esac
rm -rf "$work"
mkdir -p "$work"
out="$work/run"
for dev in cuda cuda:0; do
  "$hallu" train --device "$dev" --data synthetic:20 --batch-size 10 --epochs 1 --threads 1 --workers 1 \
    --no-knn-floor --out "$out" >"$work/stdout" 2>"$work/stderr"
  rc=$?
  if [ "$rc" -eq 0 ]; then
    echo "FAIL: hallu train --device $dev exited 0 without a usable CUDA device" >&2
    exit 1
  fi
  if ! grep -q -e "no CUDA device" -e "no CUDA backend" "$work/stderr"; then
    echo "FAIL: hallu train --device $dev (exit $rc) does not say 'no CUDA device' or 'no CUDA backend':" >&2
    cat "$work/stderr" >&2
    exit 1
  fi
  if [ -e "$out/checkpoint.hlu" ] || [ -e "$out/metrics.jsonl" ]; then
    echo "FAIL: hallu train --device $dev wrote a run into $out" >&2
    exit 1
  fi
  echo "hallu train --device $dev: exit $rc: $(grep -e 'no CUDA' "$work/stderr" | head -n 1)"
done
