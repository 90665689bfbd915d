#!/usr/bin/env bash
# Runs tools/ssl_cifar_torch.py over a list of budgets/configurations, P at a
# time (one GPU or many cores), appending one JSON line per run to OUT_FILE.
# usage: tools/peer_sweep.sh DATA_DIR CONFIG_LIST OUT_FILE [P=4] [DEVICE=cuda] [WORKERS=3]
#   CONFIG_LIST: one run per line, the flags of ssl_cifar_torch.py (--tag NAME first)
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=$1 LIST=$2 OUT_FILE=$3 P=${4:-4} DEVICE=${5:-cuda} WORKERS=${6:-3}
PY=${PYTHON:-/usr/bin/python3}
# Huge pages for malloc: glibc's default maps and faults in PyTorch's activations
# afresh every step (about 3x slower on a 2-core CPU; docs/PERFORMANCE.md).
export GLIBC_TUNABLES=${GLIBC_TUNABLES:-glibc.malloc.hugetlb=1}
grep -v '^#' "$LIST" | grep -v '^$' | xargs -P "$P" -I{} sh -c \
  "$PY tools/ssl_cifar_torch.py --data '$DATA' --device $DEVICE --workers $WORKERS --threads 1 {} >> '$OUT_FILE'"
