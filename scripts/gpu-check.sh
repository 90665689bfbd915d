#!/usr/bin/env bash
# The GPU check, in ONE command on the lent GPU machine (docs/GPU.md): sets up
# the carried prefix (.gpu-carry/ship/root.tar.xz from scripts/gpu-carry.sh:
# oneDNN, libjpeg, libpng, zlib, pkg-config, OpenMPI), finds cuDNN / cuBLAS /
# NCCL (the CUDA toolkit's, else PyTorch's nvidia-* wheels), configures hallu
# with -DHALLU_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -G Ninja, builds, runs
# `ctest -L gpu`, then bench/gpu_step.py (hallu --device cuda against PyTorch on
# the same GPU), and ends with a SUMMARY block. Everything is also written to
# $OUT/gpu-check.log and $OUT/summary.txt (plus $OUT/bench.json) when OUT is set.
#
# usage: scripts/gpu-check.sh [--dry-run] [--quick] [--jobs N] [--build-dir DIR]
#                             [--ctest-timeout S] [--bench-budget S] [--compile best|all|none]
#                             [--deadline S]
#   --deadline S      the whole script's target wall time (560 s: a device call's
#                     timeout_s of 600 leaves room); the benchmark's budget shrinks
#                     to what the build and tests left, and it is skipped under 60 s
#   --cifar    after the rest: CIFAR-10 SimCLR + Hallucinator pre-training on the
#              GPU (issue 27's item 4) for --cifar-epochs (30) or until the
#              deadline, kNN every 5 epochs, and the projected time of 500
#              epochs from the measured pace; the data is cifar10-jpeg.tar.gz
#              (gpu-carry.sh copies it into .gpu-carry/ship; never committed)
#   --cifar-only  the build, then the CIFAR stage alone (a second device call
#              on the still-warm machine: the build folder is kept there)
#   --cifar-epochs N, --cifar-precision fp32|bf16 (fp32); for a smoke test of
#              the stage on a CPU: --cifar-device cpu --cifar-subset 1000
#   --dry-run  for a machine without a GPU (here): the same steps; the gpu tests
#              must all report skipped, the benchmark prints "no GPU: skipped";
#              defaults to -j2 and build dir build-gpu
#   --quick    skip the benchmark
# Exit status: 0 when the build succeeded and no gpu test failed (in --dry-run:
# and none ran unskipped); 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
T0=$(date +%s)
DRY=0
QUICK=0
JOBS=""
BUILD=""
CTEST_TIMEOUT=240
BENCH_BUDGET=200
COMPILE=best
DEADLINE=560
CIFAR=0
CIFAR_ONLY=0
CIFAR_EPOCHS=30
CIFAR_PRECISION=fp32
CIFAR_DEVICE=cuda
CIFAR_SUBSET=0
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --quick) QUICK=1 ;;
        --jobs) JOBS=$2; shift ;;
        --build-dir) BUILD=$2; shift ;;
        --ctest-timeout) CTEST_TIMEOUT=$2; shift ;;
        --bench-budget) BENCH_BUDGET=$2; shift ;;
        --compile) COMPILE=$2; shift ;;
        --deadline) DEADLINE=$2; shift ;;
        --cifar) CIFAR=1 ;;
        --cifar-only) CIFAR=1; CIFAR_ONLY=1; QUICK=1 ;;
        --cifar-epochs) CIFAR_EPOCHS=$2; shift ;;
        --cifar-precision) CIFAR_PRECISION=$2; shift ;;
        --cifar-device) CIFAR_DEVICE=$2; shift ;;
        --cifar-subset) CIFAR_SUBSET=$2; shift ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu-check.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[ -n "$JOBS" ] || JOBS=$([ "$DRY" = 1 ] && echo 2 || nproc)
CTEST_JOBS=$([ "$DRY" = 1 ] && echo 2 || echo 4)   # fixtures (PyTorch references on the CPU) alongside the GPU tests
[ -n "$BUILD" ] || BUILD=build-gpu
case "$BUILD" in /*) ;; *) BUILD=$REPO/$BUILD ;; esac

WORK=$(mktemp -d /tmp/hallu-gpu-check.XXXXXX)
LOGDIR=${OUT:-$WORK}
mkdir -p "$LOGDIR"
LOG=$LOGDIR/gpu-check.log
ARCH=x86_64-linux-gnu

run_check() {

say() { printf '[gpu-check %4ds] %s\n' $(($(date +%s) - T0)) "$*"; }
STATUS_BUILD="not run"
STATUS_CTEST="not run"
CT_PASS=0 CT_FAIL=0 CT_SKIP=0 CT_TOTAL=0
BENCH_TABLE="not run"
RC=0

# ---------------------------------------------------------------- 1. the carried prefix
ROOT=""
if [ -n "${HALLU_GPU_CARRY_ROOT:-}" ]; then          # gpu-carry.sh --isolate: already unpacked
    ROOT=$HALLU_GPU_CARRY_ROOT
elif [ -f .gpu-carry/ship/root.tar.xz ]; then
    ROOT=$WORK/carry
    mkdir -p "$ROOT"
    if ! tar -C "$ROOT" -xJf .gpu-carry/ship/root.tar.xz 2>/dev/null; then
        say "tar -xJ failed; unpacking with Python's tarfile"
        python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
            .gpu-carry/ship/root.tar.xz "$ROOT" || { say "cannot unpack the carried prefix"; return 1; }
    fi
elif [ -d .gpu-carry/root ]; then
    ROOT=$REPO/.gpu-carry/root
fi
if [ -n "$ROOT" ]; then
    export LD_LIBRARY_PATH="$ROOT/usr/lib/$ARCH:$ROOT/usr/lib/$ARCH/openmpi/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export CMAKE_PREFIX_PATH="$ROOT/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
    export PKG_CONFIG_PATH="$ROOT/usr/lib/$ARCH/pkgconfig:$ROOT/usr/share/pkgconfig"
    command -v pkg-config >/dev/null || export PATH="$PATH:$ROOT/usr/bin"   # pkgconf, only if the machine has none
    [ -e "$ROOT/usr/bin/pkg-config" ] || ln -sf pkgconf "$ROOT/usr/bin/pkg-config" 2>/dev/null || true
    say "carried prefix: $ROOT ($(du -sh "$ROOT" | cut -f1))"
else
    say "no carried prefix (.gpu-carry/ship/root.tar.xz): using the system's oneDNN, libjpeg, libpng"
fi
MPI_ARGS=(-DHALLU_MPI=OFF)
if [ -n "$ROOT" ] && [ -x "$ROOT/usr/bin/opal_wrapper" ]; then
    export OPAL_PREFIX=$ROOT/usr OPAL_SYSCONFDIR=$ROOT/etc/openmpi PMIX_INSTALL_PREFIX=$ROOT/usr/lib/$ARCH/pmix2
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 PMIX_MCA_pcompress_base_silence_warning=1
    export PATH="$PATH:$ROOT/usr/bin"   # orted, for a singleton MPI_Init
    MPI_ARGS=(-DHALLU_MPI=ON -DMPI_C_COMPILER="$ROOT/usr/bin/mpicc.openmpi")
elif command -v mpicc >/dev/null; then
    MPI_ARGS=(-DHALLU_MPI=ON)
fi

# ---------------------------------------------------------------- 2. CUDA, cuDNN, cuBLAS, NCCL
NVCC=$(command -v nvcc || true)
[ -n "$NVCC" ] || for d in /usr/local/cuda/bin /usr/local/cuda-*/bin; do [ -x "$d/nvcc" ] && NVCC=$d/nvcc && break; done
if [ -z "$NVCC" ]; then say "nvcc not found"; return 1; fi
CUDA_HOME=$(dirname "$(dirname "$(readlink -f "$NVCC")")")
export PATH="$(dirname "$NVCC"):$PATH"
PY=${PY:-}
if [ -z "$PY" ]; then
    for c in /opt/torch/.venv/bin/python3 python3 /usr/bin/python3; do
        if command -v "$c" >/dev/null && "$c" -c 'import torch' 2>/dev/null; then PY=$(command -v "$c"); break; fi
    done
    [ -n "$PY" ] || PY=$(command -v python3 || echo /usr/bin/python3)
fi
# The nvidia-* wheels' folders (cu13/, cudnn/, nccl/, ... under site-packages/nvidia).
NV_DIRS=$("$PY" -c 'import nvidia, sys; print("\n".join(nvidia.__path__))' 2>/dev/null || true)
SHIM=$WORK/nvshim
mkdir -p "$SHIM/include" "$SHIM/lib"
CUDA_INC_DIRS=("$CUDA_HOME/include" "$CUDA_HOME/targets/x86_64-linux/include")
CUDA_LIB_DIRS=("$CUDA_HOME/lib64" "$CUDA_HOME/lib" "$CUDA_HOME/targets/x86_64-linux/lib")
EXTRA_LIB_DIRS=()
declare -A FROM
# find_dep NAME HEADER LIB: the toolkit's copy, else the wheels' (headers and
# libraries linked into $SHIM, with the unversioned lib*.so the wheels lack).
find_dep() {
    local name=$1 header=$2 lib=$3 d found_h="" found_l=""
    for d in "${CUDA_INC_DIRS[@]}"; do [ -f "$d/$header" ] && found_h=$d && break; done
    for d in "${CUDA_LIB_DIRS[@]}"; do compgen -G "$d/lib$lib.so*" >/dev/null && found_l=$d && break; done
    if [ -n "$found_h" ] && [ -n "$found_l" ]; then FROM[$name]="toolkit $found_l"; return 0; fi
    local hdir="" ldir="" nv
    while IFS= read -r nv; do
        [ -n "$nv" ] || continue
        [ -z "$hdir" ] && hdir=$(find "$nv" -maxdepth 3 -name "$header" -path '*/include/*' 2>/dev/null | head -1)
        [ -z "$ldir" ] && ldir=$(find "$nv" -maxdepth 3 -name "lib$lib.so*" -path '*/lib/*' 2>/dev/null | head -1)
    done <<<"$NV_DIRS"
    if [ -z "$found_h" ]; then
        [ -n "$hdir" ] || { FROM[$name]="MISSING ($header)"; return 1; }
        hdir=$(dirname "$hdir")
        # only this library's headers (cudnn*.h, cublas*.h, nccl*.h and folders), not the wheel's whole cu13/include
        local pat=${header%%[_.]*}
        for f in "$hdir"/"$pat"*; do ln -sfn "$f" "$SHIM/include/$(basename "$f")"; done
    fi
    if [ -z "$found_l" ]; then
        [ -n "$ldir" ] || { FROM[$name]="MISSING (lib$lib.so)"; return 1; }
        ldir=$(dirname "$ldir")
        local f
        for f in "$ldir"/lib*.so*; do ln -sfn "$f" "$SHIM/lib/$(basename "$f")"; done
        for f in "$ldir"/lib$lib.so.*; do ln -sfn "$f" "$SHIM/lib/lib$lib.so"; break; done
        EXTRA_LIB_DIRS+=("$ldir")
    fi
    FROM[$name]="wheel ${ldir:-$found_l} (headers: ${hdir:-$found_h})"
}
find_dep cudnn cudnn.h cudnn
find_dep cublas cublas_v2.h cublas
find_dep cublasLt cublasLt.h cublasLt
find_dep nccl nccl.h nccl
for n in cudnn cublas cublasLt nccl; do say "$n: ${FROM[$n]}"; done
# unversioned links for every versioned library the shim holds (cuDNN's sub-libraries, cublasLt, ...)
for f in "$SHIM"/lib/lib*.so.*; do
    [ -e "$f" ] || continue
    b=$(basename "$f"); u=${b%%.so.*}.so
    [ -e "$SHIM/lib/$u" ] || ln -sfn "$f" "$SHIM/lib/$u"
done
LIBPATH="$SHIM/lib"
for d in "${EXTRA_LIB_DIRS[@]}"; do LIBPATH="$LIBPATH:$d"; done
export LD_LIBRARY_PATH="$LIBPATH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export CMAKE_PREFIX_PATH="$SHIM${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export CUDNN_ROOT=$SHIM CUDNN_HOME=$SHIM CUDNN_PATH=$SHIM NCCL_HOME=$SHIM NCCL_ROOT=$SHIM CUDAToolkit_ROOT=$CUDA_HOME
if [ -n "$(ls -A "$SHIM/include")" ]; then
    # headers only the wheels have: visible to every compile (C, C++, CUDA), after the toolkit's own
    export CFLAGS="${CFLAGS:-} -idirafter $SHIM/include"
    export CXXFLAGS="${CXXFLAGS:-} -idirafter $SHIM/include"
    export CUDAFLAGS="${CUDAFLAGS:-} -I$SHIM/include"
fi

# ---------------------------------------------------------------- versions
hver() {   # hver FILE MACRO... : the macros' values joined by '.'
    local f=$1; shift
    [ -f "$f" ] || { echo "n/a"; return; }
    local out="" m v
    for m in "$@"; do
        v=$(awk -v m="$m" '$1=="#define" && $2==m {print $3; exit}' "$f")
        out=${out:+$out.}${v:-?}
    done
    echo "$out"
}
inc_of() {   # the header as the build sees it: toolkit first, then the shim
    local d
    for d in "${CUDA_INC_DIRS[@]}" "$SHIM/include"; do [ -e "$d/$1" ] && { echo "$d/$1"; return; }; done
}
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
DRIVER=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)
V_NVCC=$("$NVCC" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')
V_CUDART=$(hver "$(inc_of cuda_runtime_api.h)" CUDART_VERSION)
V_CUDNN=$(hver "$(inc_of cudnn_version.h)" CUDNN_MAJOR CUDNN_MINOR CUDNN_PATCHLEVEL)
V_CUBLAS=$(hver "$(inc_of cublas_api.h)" CUBLAS_VER_MAJOR CUBLAS_VER_MINOR CUBLAS_VER_PATCH)
V_NCCL=$(hver "$(inc_of nccl.h)" NCCL_MAJOR NCCL_MINOR NCCL_PATCH)
V_TORCH=$("$PY" -c 'import torch; c = torch.backends.cudnn; print("torch %s (CUDA %s, cuDNN %s)" % (torch.__version__, torch.version.cuda, c.version() if c.is_available() else "n/a"))' 2>/dev/null || echo "no torch")
say "GPU: ${GPU:-none} (driver ${DRIVER:-n/a}); nvcc $V_NVCC at $CUDA_HOME; python $PY: $V_TORCH"

# ---------------------------------------------------------------- 3. configure + build
say "configure: $BUILD"
if cmake -S "$REPO" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DHALLU_CUDA=ON \
        -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_CUDA_COMPILER="$NVCC" -DHALLU_PY="$PY" "${MPI_ARGS[@]}" \
        >"$WORK/configure.log" 2>&1; then
    grep -E '^-- hallu:|^-- Found (CUDAToolkit|JPEG|PNG|OpenMP_C|MPI_C)' "$WORK/configure.log"
    grep -E '^(DNNL_LIB|JPEG_LIBRARY_RELEASE|PNG_LIBRARY_RELEASE|NCCL_LIBRARY|CUDNN[A-Z_]*|CUBLAS[A-Z_]*|CUDA_cudart_LIBRARY|CUDA_cublas_LIBRARY|MPI_mpi_LIBRARY):' \
        "$BUILD/CMakeCache.txt" | sed 's/^/   /'
    say "build: -j$JOBS"
    if cmake --build "$BUILD" -j"$JOBS" >"$WORK/build.log" 2>&1; then
        STATUS_BUILD="ok"
    else
        STATUS_BUILD="FAILED"
        grep -E 'error|Error' "$WORK/build.log" | head -40
        tail -20 "$WORK/build.log"
    fi
    [ -n "${OUT:-}" ] && cp "$WORK/build.log" "$OUT/build.log" 2>/dev/null
else
    STATUS_BUILD="configure FAILED"
    tail -40 "$WORK/configure.log"
fi
say "build: $STATUS_BUILD"
[ "$STATUS_BUILD" = ok ] || RC=1

# ---------------------------------------------------------------- 4. ctest -L gpu
if [ "$STATUS_BUILD" = ok ] && [ "$CIFAR_ONLY" = 1 ]; then
    STATUS_CTEST="skipped (--cifar-only)"
elif [ "$STATUS_BUILD" = ok ]; then
    say "ctest -L gpu (timeout ${CTEST_TIMEOUT} s each)"
    ( cd "$BUILD" && ctest -L gpu --output-on-failure --timeout "$CTEST_TIMEOUT" -j "$CTEST_JOBS" ) 2>&1 | tee "$WORK/ctest.log"
    CT_PASS=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#[0-9]+: .* Passed' "$WORK/ctest.log")
    CT_SKIP=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#[0-9]+: .*\*\*\*(Skipped|Not Run)' "$WORK/ctest.log")
    CT_TOTAL=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#[0-9]+:' "$WORK/ctest.log")
    CT_FAIL=$((CT_TOTAL - CT_PASS - CT_SKIP))
    STATUS_CTEST="$CT_PASS passed, $CT_FAIL failed, $CT_SKIP skipped of $CT_TOTAL"
    [ "$CT_TOTAL" -gt 0 ] || STATUS_CTEST="no test carries the label gpu"
    [ "$CT_FAIL" -eq 0 ] || RC=1
    # The fixtures ctest runs first (PyTorch references on the CPU) pass
    # anywhere; only a test that carries the label must skip without a GPU.
    GPU_TESTS=$(cd "$BUILD" && ctest -L gpu -N -FA ".*" | sed -n 's/^ *Test *#[0-9]*: *//p')
    CT_GPU_PASS=0
    for t in $GPU_TESTS; do
        if grep -qE "Test +#[0-9]+: $t \.* +Passed" "$WORK/ctest.log"; then CT_GPU_PASS=$((CT_GPU_PASS + 1)); fi
    done
    if [ "$DRY" = 1 ] && [ "$CT_GPU_PASS" -gt 0 ]; then
        STATUS_CTEST="$STATUS_CTEST (dry run: a gpu test PASSED without a GPU: it should skip, exit 77)"
        RC=1
    fi
    say "ctest: $STATUS_CTEST"
fi

# ---------------------------------------------------------------- 4b. the loader at GPU pace
# Whether the data pipeline keeps up with a GPU step on this machine's cores:
# METHOD.md's two-view CIFAR augmentation (32x32) through the threaded loader,
# all cores, batch 512 (bench_data's in-memory path; a few seconds); then the
# same at ImageNet scale from JPEGs (decoded in the loop: hallu_jpeg_folder).
LOADER="not run"
if [ "$STATUS_BUILD" = ok ] && [ -x "$BUILD/bench/bench_data" ] && [ "$CIFAR_ONLY" = 0 ]; then
    LOADER=$(timeout 120 "$BUILD/bench/bench_data" --n 50000 --workers "$(nproc)" --batch 512 --epochs 1 2>&1 |
             sed -n 's/^RESULT hallu_memory \([0-9.]*\)/\1 images\/s (two views, 32x32, batch 512, '"$(nproc)"' workers)/p')
    [ -n "$LOADER" ] || LOADER="failed"
    # ImageNet scale: 224x224 views with blur/solarize from 500x375 JPEGs
    # (decode + augment per image; made here with Pillow, ~10-20 s).
    JPEGS="$WORK/jpeg224"
    if timeout 90 "$PY" "$REPO/bench/make_jpeg_folder.py" "$JPEGS" --n 2000 >/dev/null 2>&1; then
        L224=$(timeout 150 "$BUILD/bench/bench_data" --folder "$JPEGS" --n 2000 --workers "$(nproc)" --batch 256 \
                   --size 224 --asymmetric 1 2>&1 | sed -n 's/^RESULT \(hallu_[a-z_]*\) \([0-9.]*\)/\1 \2/p' | tr '\n' ' ')
        LOADER="$LOADER; 224x224 (blur/solarize) from 500x375 JPEGs, $(nproc) workers: ${L224:-failed} images/s"
    else
        LOADER="$LOADER; 224x224: could not write the JPEGs (Pillow?)"
    fi
    say "loader: $LOADER"
fi

# ---------------------------------------------------------------- 5. benchmark
if [ "$QUICK" = 1 ]; then
    BENCH_TABLE="skipped (--quick)"
elif [ "$STATUS_BUILD" != ok ]; then
    BENCH_TABLE="not run (the build failed)"
else
    left=$((DEADLINE - ($(date +%s) - T0)))
    [ $((left - 160)) -lt "$BENCH_BUDGET" ] && BENCH_BUDGET=$((left - 160))
    # with --cifar, the benchmark leaves the CIFAR stage half of what is left
    [ "$CIFAR" = 1 ] && [ $(((left - 160) / 2)) -lt "$BENCH_BUDGET" ] && BENCH_BUDGET=$(((left - 160) / 2))
fi
if [ "$QUICK" = 0 ] && [ "$STATUS_BUILD" = ok ] && [ "$BENCH_BUDGET" -lt 60 ]; then
    BENCH_TABLE="not run: only ${left} s left of --deadline ${DEADLINE}"
elif [ "$QUICK" = 0 ] && [ "$STATUS_BUILD" = ok ]; then
    say "benchmark: bench/gpu_step.py (budget ${BENCH_BUDGET} s, --compile $COMPILE)"
    BJSON=${OUT:+$OUT/bench.json}
    BJSON=${BJSON:-$WORK/bench.json}
    PYTHONUNBUFFERED=1 timeout $((BENCH_BUDGET + 150)) "$PY" "$REPO/bench/gpu_step.py" \
        --hallu-bench "$BUILD/bench/bench_gpu_step" --budget-s "$BENCH_BUDGET" --compile "$COMPILE" \
        --json "$BJSON" 2>&1 | tee "$WORK/bench.log"
    brc=${PIPESTATUS[0]}
    if grep -q '^no GPU: skipped' "$WORK/bench.log"; then
        BENCH_TABLE=$(grep -E '^(no GPU|hallu --device cuda)' "$WORK/bench.log")
    elif grep -q '^BENCHMARK' "$WORK/bench.log"; then
        BENCH_TABLE=$(sed -n '/^BENCHMARK/,$p' "$WORK/bench.log")
    else
        BENCH_TABLE="FAILED (exit $brc): $(tail -3 "$WORK/bench.log" | tr '\n' ' ')"
    fi
fi

# ---------------------------------------------------------------- 6. CIFAR-10 pre-training
# SimCLR + Hallucinator, ResNet-18 CIFAR stem, batch 512, lr 0.5, weight decay
# 1e-4 (METHOD.md's recipe values), kNN (k 200, T 0.1) on the full test split
# every 5 epochs, so a run the deadline cuts short still has its last kNN.
CIFAR_LINE="not run"
if [ "$CIFAR" = 1 ] && [ "$STATUS_BUILD" = ok ]; then
    TGZ=""
    for f in .gpu-carry/ship/cifar10-jpeg.tar.gz shared/data/cifar10-jpeg.tar.gz ../shared/data/cifar10-jpeg.tar.gz; do
        [ -f "$f" ] && TGZ=$f && break
    done
    CRUN=${OUT:-$WORK}/cifar_run
    left=$((DEADLINE - ($(date +%s) - T0) - 20))
    if [ -z "$TGZ" ]; then
        CIFAR_LINE="not run: no cifar10-jpeg.tar.gz (scripts/gpu-carry.sh copies it into .gpu-carry/ship)"
    elif [ "$DRY" = 1 ] && [ "$CIFAR_DEVICE" = cuda ]; then
        CIFAR_LINE="not run (--dry-run): would train $CIFAR_EPOCHS epochs on $TGZ"
    elif [ "$left" -lt 90 ]; then
        CIFAR_LINE="not run: only $left s left of --deadline $DEADLINE"
    else
        CD=$WORK/cifar
        mkdir -p "$CD/packed"
        tar xzf "$TGZ" -C "$CD"
        for split in train test; do
            "$BUILD/hallu" data pack --data "imagefolder:$CD/cifar10" --split $split --out "$CD/packed/$split.hpk" \
                >/dev/null 2>&1 || say "cifar: packing $split failed"
        done
        left=$((DEADLINE - ($(date +%s) - T0) - 20))
        say "cifar: hallu train --device $CIFAR_DEVICE, $CIFAR_EPOCHS epochs ($CIFAR_PRECISION), at most $left s"
        CT0=$(date +%s)
        timeout -s INT -k 15 "$left" "$BUILD/hallu" train --device "$CIFAR_DEVICE" --precision "$CIFAR_PRECISION" \
            --train-subset "$CIFAR_SUBSET" \
            --data "packed:$CD/packed" --method simclr --hallucinator --epochs "$CIFAR_EPOCHS" --batch-size 512 \
            --lr 0.5 --weight-decay 1e-4 --knn-every 5 --workers "$(nproc)" --log-every 20 --out "$CRUN" \
            >"$WORK/cifar.log" 2>&1
        crc=$?
        tail -5 "$WORK/cifar.log"
        CIFAR_LINE=$("$PY" - "$CRUN/metrics.jsonl" "$crc" "$(($(date +%s) - CT0))" <<'PY'
import json, sys
path, rc, wall = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
try:
    rows = [json.loads(l) for l in open(path)]
except OSError:
    print("FAILED (exit %d): no metrics.jsonl" % rc); sys.exit()
steps = [r for r in rows if "images_per_s" in r and r.get("epoch", 0) >= 1] or [r for r in rows if "images_per_s" in r]
knn = [r for r in rows if "knn_top1" in r]
floor = next((r["knn_floor_top1"] for r in rows if "knn_floor_top1" in r), float("nan"))
epochs = max((r["epoch"] + 1 for r in rows if "loss" in r), default=0)
ips = sorted(r["images_per_s"] for r in steps)[len(steps) // 2] if steps else 0
last = knn[-1] if knn else None
proj = 500 * 50000 / ips / 3600 if ips else float("nan")   # the full training split
print("exit %d, %d s wall, %s epochs reached; kNN top-1 %s (untrained %.2f); step pace %.0f images/s "
      "(median); 500 epochs at that pace: %.1f h of training (+ kNN)"
      % (rc, wall, epochs, "%.2f at epoch %d" % (last["knn_top1"], last["epoch"] + 1) if last else "none",
         floor, ips, proj))
PY
)
    fi
    say "cifar: $CIFAR_LINE"
fi

# ---------------------------------------------------------------- SUMMARY
SUMMARY=$(cat <<EOF
==================== SUMMARY (scripts/gpu-check.sh$([ "$DRY" = 1 ] && echo " --dry-run")) ====================
date:        $(date -u '+%Y-%m-%d %H:%M:%S UTC'); $(($(date +%s) - T0)) s wall; commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo n/a)$(git -C "$REPO" diff --quiet HEAD 2>/dev/null || echo " (+ uncommitted changes)")
GPU:         ${GPU:-none visible} (driver ${DRIVER:-n/a})
CUDA:        nvcc $V_NVCC, runtime headers $V_CUDART ($CUDA_HOME)
cuDNN:       $V_CUDNN (${FROM[cudnn]})
cuBLAS:      $V_CUBLAS (${FROM[cublas]})
NCCL:        $V_NCCL (${FROM[nccl]})
PyTorch:     $V_TORCH
build:       $STATUS_BUILD ($BUILD, -j$JOBS, HALLU_CUDA=ON, CUDA arch 90, ${MPI_ARGS[*]})
ctest -L gpu: $STATUS_CTEST
loader:      $LOADER
benchmark:
$BENCH_TABLE
cifar:       $CIFAR_LINE
exit:        $RC
EOF
)
echo
echo "$SUMMARY"
[ -n "${OUT:-}" ] && echo "$SUMMARY" >"$OUT/summary.txt"
return $RC
}

run_check 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
