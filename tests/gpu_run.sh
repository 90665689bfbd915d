#!/bin/sh
# gpu_run.sh PROBE COMMAND [ARGS...]: runs COMMAND when PROBE (tests/gpu_probe.c)
# finds a usable CUDA device; exits 77 (ctest: skipped) when it finds none, and
# fails when the probe itself fails. For the Python-driven tests of
# tests/gpu.cmake, which would otherwise fail where there is no GPU.
probe=$1
shift
"$probe"
rc=$?
case $rc in
  0) exec "$@" ;;
  77) echo "gpu_run.sh: skipped (no usable CUDA device)"; exit 77 ;;
  *) echo "gpu_run.sh: the probe failed (exit $rc)" >&2; exit 1 ;;
esac
