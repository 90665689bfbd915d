#!/usr/bin/env bash
# The CIFAR-10 accuracy table of docs/RESULTS.md: kNN top-1 on the full test split
# for SimCLR, MoCo v2 and SimSiam, each without and with the Hallucinator (both
# wirings for SimCLR), same seed and budget, plus the untrained network's kNN.
# usage: bench/cifar_knn_table.sh [BUILD_DIR=build]
#   A run that was interrupted (Ctrl-C, SIGTERM, a lost session) continues from its checkpoint on the next call.
#   env: RUNS (names of the runs to do; default all), EXTRA (more train flags), SUBSET (10000 training images), EPOCHS (2), BATCH (256), LR (0.06),
#        THREADS (2), WORKERS (2), SEED (0), OUT (runs/cifar-table), MOCO_EXTRA (more flags for the MoCo v2 rows only, e.g. --bn-splits 8)
#   SimSiam rows use the authors' CIFAR predictor setting (--fix-pred-lr).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
SUBSET=${SUBSET:-10000} EPOCHS=${EPOCHS:-2} BATCH=${BATCH:-256} LR=${LR:-0.06}
THREADS=${THREADS:-2} WORKERS=${WORKERS:-2} SEED=${SEED:-0} OUT=${OUT:-runs/cifar-table}
DATA=$BUILD/bench_data
HALLU=$BUILD/hallu
if [ ! -d "$DATA/cifar10/train" ]; then
  mkdir -p "$DATA" && tar xzf ../shared/data/cifar10-jpeg.tar.gz -C "$DATA"
fi
for split in train test; do
  [ -f "$DATA/packed/$split.hpk" ] || { mkdir -p "$DATA/packed";
    "$HALLU" data pack --data "imagefolder:$DATA/cifar10" --split "$split" --out "$DATA/packed/$split.hpk"; }
done
mkdir -p "$OUT"
common=(--data "packed:$DATA/packed" --train-subset "$SUBSET" --epochs "$EPOCHS" --batch-size "$BATCH"
        --lr "$LR" --threads "$THREADS" --workers "$WORKERS" --seed "$SEED" --knn-every 0 ${EXTRA:-})
RUNS=${RUNS:-simclr simclr-hal simclr-hal-ref mocov2 mocov2-hal simsiam simsiam-hal}
run() {   # name, flags...
  local name=$1; shift
  case " $RUNS " in *" $name "*) ;; *) return 0 ;; esac
  if [ -f "$OUT/$name/checkpoint.hlu" ]; then   # done, or interrupted: continue it bit for bit
    # done = the kNN line of the last epoch is there (--knn-every also writes earlier ones)
    grep knn_top1 "$OUT/$name/metrics.jsonl" 2>/dev/null | tail -n 1 | grep -q "\"epoch\":$((EPOCHS - 1))," && return 0
    "$HALLU" train "${common[@]}" "$@" --out "$OUT/$name" --resume
  else
    rm -rf "${OUT:?}/$name"
    "$HALLU" train "${common[@]}" "$@" --out "$OUT/$name"
  fi
}
run simclr            --method simclr  --no-hallucinator
run simclr-hal        --method simclr  --hallucinator --hal-init residual
run simclr-hal-ref    --method simclr  --hallucinator --hal-init reference
run mocov2            --method mocov2  --no-hallucinator --queue-size 4096 ${MOCO_EXTRA:-}
run mocov2-hal        --method mocov2  --hallucinator --hal-init residual --queue-size 4096 ${MOCO_EXTRA:-}
run simsiam           --method simsiam --no-hallucinator --fix-pred-lr
run simsiam-hal       --method simsiam --hallucinator --hal-init residual --fix-pred-lr
printf '| run | untrained kNN | kNN top-1 | final loss | collapse std |\n|---|---|---|---|---|\n'
for d in "$OUT"/*/; do
  /usr/bin/python3 - "$d" <<'PY'
import json, os, sys
d = sys.argv[1]
rows = [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl"))]
floor = next((r["knn_floor_top1"] for r in rows if "knn_floor_top1" in r), float("nan"))
knn = [r["knn_top1"] for r in rows if "knn_top1" in r]
loss = [r for r in rows if "loss" in r]
print(f"| {os.path.basename(d.rstrip('/'))} | {floor:.2f} | {knn[-1] if knn else float('nan'):.2f} | "
      f"{loss[-1]['loss'] if loss else float('nan'):.3f} | {loss[-1]['collapse_std'] if loss else float('nan'):.4f} |")
PY
done
