#!/usr/bin/env bash
# The main job: install dependencies if missing, build, then a short SimCLR +
# Hallucinator pre-training on the built-in synthetic set with a kNN evaluation.
# Extra arguments go to `hallu train` (e.g. --epochs 5). The run lands in
# runs/main-<date>-<time>/ (never overwriting an earlier run).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh run
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target hallu_cli >/dev/null
mkdir -p runs
exec ./build/hallu train --out "runs/main-$(date +%Y%m%d-%H%M%S)" "$@"
