#!/usr/bin/env bash
# The whole test suite: deps, unit tests and the interrupted-MoCo-run test under
# ASan+UBSan, then every test (unit, parity against PyTorch, fuzz smoke) in the
# release build. Ends with ctest's summary.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh test
JOBS=$(nproc)
# The sanitizer build leaves CUDA out (HALLU_CUDA=OFF): its code cannot run here, and
# this build proves that hallu builds and passes without it.
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DHALLU_SANITIZE=ON -DHALLU_CUDA=OFF >/dev/null
cmake --build build-asan -j"$JOBS" >/dev/null
( cd build-asan && ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest -L "unit|sanitize" --output-on-failure -j"$JOBS" )
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$JOBS" >/dev/null
./scripts/fuzz.sh   # libFuzzer smoke run of every tests/fuzz target (FUZZ_SECONDS each)
cd build && ctest --output-on-failure -j"$JOBS"
