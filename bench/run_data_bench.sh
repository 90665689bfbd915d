#!/bin/sh
# Data-pipeline benchmark: hallu's loader vs torchvision + DataLoader on the same
# two-view CIFAR SSL recipe, same worker count, same images, one invocation.
# Usage: bench/run_data_bench.sh [BUILD_DIR] [N_IMAGES] [WORKERS]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
n=${2:-20000}
workers=${3:-2}
archive=$here/../../shared/data/cifar10-jpeg.tar.gz
data=$build/bench_data
folder=""
if [ -f "$archive" ]; then
    if [ ! -d "$data/cifar10/train" ]; then
        mkdir -p "$data"
        tar xzf "$archive" -C "$data"
    fi
    folder=$data/cifar10
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
if [ -n "$folder" ]; then
    "$build/bench/bench_data" --folder "$folder" --pack "$data/cifar10_train.hpk" --n "$n" --workers "$workers" | tee -a "$out"
    /usr/bin/python3 "$here/bench_data_torch.py" --folder "$folder" --n "$n" --workers "$workers" | tee -a "$out"
else
    "$build/bench/bench_data" --n "$n" --workers "$workers" | tee -a "$out"
    /usr/bin/python3 "$here/bench_data_torch.py" --n "$n" --workers "$workers" | tee -a "$out"
fi
awk '/^RESULT/ { r[$2] = $3 }
     END {
       if (r["torch_memory"] > 0)
         printf("ratio memory (hallu/torchvision): %.1fx\n", r["hallu_memory"] / r["torch_memory"]);
       if (r["torch_memory"] > 0 && r["hallu_packed"] > 0)
         printf("ratio packed file vs torch memory (hallu/torchvision): %.1fx\n", r["hallu_packed"] / r["torch_memory"]);
       if (r["torch_jpeg_folder"] > 0)
         printf("ratio jpeg folder (hallu/torchvision): %.1fx\n", r["hallu_jpeg_folder"] / r["torch_jpeg_folder"]);
     }' "$out"
