#!/usr/bin/env bash
# Gathers, HERE (Debian 12 with apt), what the lent GPU machine lacks to build
# hallu, into the gitignored folder .gpu-carry/ that the device tool's `carry`
# takes along (docs/GPU.md). The GPU machine has nvcc, CMake, ninja and
# PyTorch's cuDNN / cuBLAS / NCCL wheels, but none of Debian's -dev packages.
#
# What the root CMakeLists.txt asks for and where it comes from there:
#   oneDNN (find_library dnnl, find_path oneapi/dnnl/dnnl.h)  libdnnl2 + libdnnl-dev   (carried)
#   JPEG, PNG (find_package; PNG pulls ZLIB)                   libjpeg62-turbo(-dev),
#                                                              libpng16-16, libpng-dev,
#                                                              zlib1g(-dev)            (carried)
#   PkgConfig (find_package REQUIRED: needs pkg-config)        pkgconf-bin, libpkgconf3 (carried;
#                                                              used only when the machine has none)
#   MPI for C (optional; the NCCL communicator needs it)       OpenMPI 4.1 runtime + headers
#                                                              (carried unless --no-mpi)
#   OpenMP (libgomp, omp.h), Threads                           the machine's gcc
#   CUDA toolkit, cuDNN, cuBLAS, NCCL                          the machine (scripts/gpu-check.sh)
# libdnnl.so.2 needs libOpenCL.so.1 at load time: ocl-icd-libopencl1 (carried).
#
# Output:
#   .gpu-carry/debs/             the downloaded .deb files (a cache; not carried)
#   .gpu-carry/root/             the unpacked, pruned prefix (for checks here; not carried)
#   .gpu-carry/ship/root.tar.xz  that prefix, compressed: THE carried payload
#   .gpu-carry/ship/MANIFEST     package versions and sizes
#   .gpu-carry/ship/cifar10-jpeg.tar.gz  ../shared's CIFAR-10, for gpu-check.sh --cifar (19 MiB)
# oneDNN alone is 38 MiB unpacked, so the prefix travels compressed (~16 MiB)
# and gpu-check.sh unpacks it under /tmp there (tar, or Python's tarfile).
#
# usage: scripts/gpu-carry.sh [--no-mpi] [--verify] [--isolate -- CMD...]
#   --verify   configure a build here from the carried prefix only (system copies
#              of the carried files masked in a private mount namespace) and
#              print the paths CMake picked; fails if any is outside the prefix
#   --isolate -- CMD...   run CMD with the system copies masked and the prefix's
#              environment set (e.g. scripts/gpu-check.sh --dry-run), to test the
#              whole build the way the GPU machine will see it
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
CARRY=$REPO/.gpu-carry
LIMIT_MIB=40            # the carried payload; the git tree (~2 MiB) travels too, 64 MiB in all
MPI=1
VERIFY=0
ISOLATE=()
while [ $# -gt 0 ]; do
    case "$1" in
        --no-mpi) MPI=0 ;;
        --verify) VERIFY=1 ;;
        --isolate) shift; [ "${1:-}" = "--" ] && shift; ISOLATE=("$@"); break ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu-carry.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

ARCH=x86_64-linux-gnu
PKGS=(libdnnl2 libdnnl-dev ocl-icd-libopencl1
      libjpeg62-turbo libjpeg62-turbo-dev libpng16-16 libpng-dev zlib1g zlib1g-dev
      pkgconf-bin libpkgconf3)
# OpenMPI 4.1 (libmpi + headers for the link; orted, PMIx and the MCA plugins
# for MPI_Init in a singleton process, as gpu_nccl_smoke runs).
MPI_PKGS=(libopenmpi3 libopenmpi-dev openmpi-bin openmpi-common libpmix2 libhwloc15 libhwloc-plugins
          libevent-core-2.1-7 libevent-pthreads-2.1-7 libfabric1 libucx0 libpsm2-2 libpsm-infinipath1
          libibverbs1 librdmacm1 libnl-3-200 libnl-route-3-200 libmunge2 libnuma1 libxnvctrl0 libltdl7)
[ "$MPI" = 1 ] && PKGS+=("${MPI_PKGS[@]}")

# ---------------------------------------------------------------- the prefix's environment
# Printed for --isolate and mirrored by gpu-check.sh (which unpacks the tarball).
prefix_env() {   # $1 = the unpacked root
    local r=$1
    export LD_LIBRARY_PATH="$r/usr/lib/$ARCH:$r/usr/lib/$ARCH/openmpi/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export CMAKE_PREFIX_PATH="$r/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
    export PKG_CONFIG_PATH="$r/usr/lib/$ARCH/pkgconfig:$r/usr/share/pkgconfig"
    if [ -d "$r/usr/lib/$ARCH/openmpi" ]; then
        export OPAL_PREFIX=$r/usr OPAL_SYSCONFDIR=$r/etc/openmpi PMIX_INSTALL_PREFIX=$r/usr/lib/$ARCH/pmix2
        export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 PMIX_MCA_pcompress_base_silence_warning=1
        export PATH="$r/usr/bin:$PATH"   # orted for a singleton's MPI_Init
    fi
}

# ---------------------------------------------------------------- masking (--verify, --isolate)
# In a private mount namespace: every header and shared library the prefix
# carries is hidden at its system place (an empty file bound over it), so a
# build that reaches for a system copy fails loudly instead of passing here.
masked_run() {   # args: command...
    local r=$CARRY/root
    [ -d "$r" ] || { echo "gpu-carry.sh: $r is missing: run scripts/gpu-carry.sh first" >&2; exit 1; }
    local list=$CARRY/mask.list
    ( cd "$r" && find usr/include usr/lib/$ARCH -type f \( -path 'usr/include/*' -o -name '*.so*' \) ) | sort >"$list"
    ( cd "$r" && find usr/lib/$ARCH -type d \( -path "usr/lib/$ARCH/openmpi" -o -path "usr/lib/$ARCH/pmix2" \) ) >>"$list"
    [ -d "$r/usr/bin" ] && ( cd "$r" && find usr/bin -name orted ) >>"$list"
    unshare -m --propagation private bash -c '
        set -e
        list=$1; shift
        empty=$(mktemp -d); touch "$empty/f"
        n=0
        while read -r p; do
            t=/$p
            [ -e "$t" ] || continue
            t=$(readlink -f "$t")
            if [ -d "$t" ]; then mount --bind "$empty" "$t"; else mount --bind "$empty/f" "$t"; fi
            n=$((n + 1))
        done <"$list"
        echo "gpu-carry.sh: $n system copies of carried files masked in this mount namespace" >&2
        exec "$@"' masked "$list" "$@"
}

if [ ${#ISOLATE[@]} -gt 0 ]; then
    prefix_env "$CARRY/root"
    export HALLU_GPU_CARRY_ROOT=$CARRY/root   # gpu-check.sh uses this root instead of unpacking the tarball
    masked_run "${ISOLATE[@]}"
    exit $?
fi

# ---------------------------------------------------------------- download
mkdir -p "$CARRY/debs"
cd "$CARRY/debs"
if ! apt-get download "${PKGS[@]}" >apt.log 2>&1; then
    echo "gpu-carry.sh: apt-get download failed; running apt-get update once" >&2
    apt-get update >>apt.log 2>&1
    apt-get download "${PKGS[@]}" >>apt.log 2>&1 || { tail -5 apt.log >&2; exit 1; }
fi
# Keep only the newest file of each package (a cache may hold older ones).
for p in "${PKGS[@]}"; do
    ls -t ${p}_*.deb 2>/dev/null | tail -n +2 | xargs -r rm -f
done

# ---------------------------------------------------------------- unpack + prune
rm -rf "$CARRY/root" "$CARRY/ship"
mkdir -p "$CARRY/root" "$CARRY/ship"
R=$CARRY/root
: >"$CARRY/ship/MANIFEST"
for p in "${PKGS[@]}"; do
    f=$(ls ${p}_*.deb | head -1)
    dpkg -x "$f" "$R"
    printf '%-28s %-28s %9s bytes (.deb)\n' "$p" "$(dpkg-deb -f "$f" Version)" "$(stat -c %s "$f")" >>"$CARRY/ship/MANIFEST"
done
cd "$R"
rm -rf usr/share/doc usr/share/doc-base usr/share/man usr/share/info usr/share/lintian usr/share/bug usr/share/locale \
       usr/share/bash-completion usr/share/aclocal
find . -name '*.a' -delete
find . -name '*.la' -delete
# jconfig.h (and the like) sit in the multiarch include dir, which gcc searches
# only under /usr: move them next to jpeglib.h.
if [ -d usr/include/$ARCH ]; then
    for e in usr/include/$ARCH/*; do
        if [ -L "$e" ]; then   # relative links must be re-aimed from one level up
            t=$(realpath -m "$(dirname "$e")/$(readlink "$e")")
            ln -sfn "$(realpath -m --relative-to="$R/usr/include" "$t")" "usr/include/$(basename "$e")"
        else
            mv "$e" usr/include/
        fi
    done
    rm -rf usr/include/$ARCH
fi
if [ "$MPI" = 1 ]; then
    # Not needed by a C program: Fortran, Java, C++ bindings, OpenSHMEM, OpenMPI's own tools' extras.
    rm -rf usr/lib/$ARCH/fortran usr/lib/$ARCH/openmpi/lib/*.mod
    rm -f usr/lib/$ARCH/libmpi_mpifh* usr/lib/$ARCH/libmpi_usempi* usr/lib/$ARCH/libmpi_java* \
          usr/lib/$ARCH/liboshmem* usr/lib/$ARCH/openmpi/lib/libmpi_mpifh* usr/lib/$ARCH/openmpi/lib/libmpi_usempi* \
          usr/lib/$ARCH/openmpi/lib/libmpi_java* usr/lib/$ARCH/openmpi/lib/liboshmem* usr/lib/$ARCH/openmpi/lib/mpi.jar \
          usr/lib/$ARCH/openmpi/lib/openmpi3/mca_*oshmem* usr/lib/$ARCH/openmpi/lib/openmpi3/mca_spml_* \
          usr/lib/$ARCH/openmpi/lib/openmpi3/mca_sshmem_* usr/lib/$ARCH/openmpi/lib/openmpi3/mca_scoll_* \
          usr/lib/$ARCH/openmpi/lib/openmpi3/mca_atomic_*
    find usr/bin -name '*shmem*' -o -name 'osh*' -o -name 'mpijava*' -o -name '*f77*' -o -name '*f90*' -o -name '*fort*' \
        | xargs -r rm -f
fi
# Absolute symlinks (zlib1g-dev's libz.so -> /lib/...) would point at the GPU
# machine's own files there: make them relative inside the prefix.
while IFS= read -r l; do
    t=$(readlink "$l")
    # merged /usr: Debian's /lib is /usr/lib
    for cand in "$R$t" "$R/usr$t"; do
        if [ -e "$cand" ]; then
            ln -sfn "$(realpath --relative-to="$(dirname "$R/${l#./}")" "$cand")" "$l"
            continue 2
        fi
    done
    base=$(basename "$t")
    if [ -e "$(dirname "$l")/$base" ]; then ln -sfn "$base" "$l"; continue; fi
    echo "gpu-carry.sh: dangling absolute symlink $l -> $t" >&2
    exit 1
done < <(find . -type l -lname '/*')
dangling=$(find . -xtype l | head -5)
if [ -n "$dangling" ]; then
    echo "gpu-carry.sh: dangling symlinks in the prefix (first ones):" >&2
    echo "$dangling" >&2
    # Only ones into /usr/share/doc etc. would be harmless; treat any as an error in lib/include/bin.
    if echo "$dangling" | grep -qE '^\./usr/(lib|include|bin)/'; then exit 1; fi
fi

# ---------------------------------------------------------------- pack + size
cd "$CARRY"
tar -C root -cJf ship/root.tar.xz .
# CIFAR-10 (JPEG) for gpu-check.sh --cifar, when ../shared has it (ignored
# here, like everything under .gpu-carry; never committed).
rm -f ship/cifar10-jpeg.tar.gz
[ -f "$REPO/../shared/data/cifar10-jpeg.tar.gz" ] && cp "$REPO/../shared/data/cifar10-jpeg.tar.gz" ship/
unpacked=$(du -sb root | cut -f1)
packed=$(du -cb ship/root.tar.xz ship/cifar10-jpeg.tar.gz 2>/dev/null | tail -1 | cut -f1)
tree=$(cd "$REPO" && git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
# The newest glibc symbol version any carried ELF file asks for (the GPU machine's glibc must be at least that).
glibc=$(find root -type f \( -name '*.so*' -o -path '*/bin/*' \) -exec sh -c 'objdump -T "$1" 2>/dev/null' _ {} \; \
        | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
{
    echo "unpacked prefix: $((unpacked / 1048576)) MiB; carried (prefix tarball$([ -f ship/cifar10-jpeg.tar.gz ] && echo " + CIFAR-10 JPEG")): $((packed / 1048576)) MiB ($packed bytes)"
    echo "git tree: $((tree / 1048576)) MiB ($tree bytes); together: $(((packed + tree) / 1048576)) MiB of the tool's 64 MiB"
    echo "newest glibc symbol version needed: ${glibc:-none}"
    echo "MPI carried: $([ "$MPI" = 1 ] && echo yes || echo no)"
} | tee -a ship/MANIFEST
if [ "$packed" -gt $((LIMIT_MIB * 1048576)) ]; then
    echo "gpu-carry.sh: the carried payload is over ${LIMIT_MIB} MiB" >&2
    exit 1
fi

# ---------------------------------------------------------------- --verify
if [ "$VERIFY" = 1 ]; then
    B=$(mktemp -d /tmp/hallu-carry-verify.XXXXXX)
    prefix_env "$CARRY/root"
    mpi_args=()
    if [ "$MPI" = 1 ]; then
        mpi_args=(-DMPI_C_COMPILER="$CARRY/root/usr/bin/mpicc.openmpi")
    else
        mpi_args=(-DHALLU_MPI=OFF)
    fi
    echo "gpu-carry.sh: configuring in $B from the carried prefix only (HALLU_CUDA=OFF: the CUDA side is the machine's)"
    masked_run cmake -S "$REPO" -B "$B" -G Ninja -DHALLU_CUDA=OFF "${mpi_args[@]}" >"$B.log" 2>&1 \
        || { tail -30 "$B.log"; exit 1; }
    picked=$(grep -E '^(DNNL_LIB|DNNL_INCLUDE|JPEG_INCLUDE_DIR|JPEG_LIBRARY_RELEASE|PNG_PNG_INCLUDE_DIR|PNG_LIBRARY_RELEASE|ZLIB_INCLUDE_DIR|ZLIB_LIBRARY_RELEASE|PKG_CONFIG_EXECUTABLE|MPI_C_HEADER_DIR|MPI_mpi_LIBRARY):' "$B/CMakeCache.txt")
    echo "$picked"
    grep -E 'hallu: MPI' "$B.log" || true
    bad=$(echo "$picked" | grep -vE "=$CARRY/root/|PKG_CONFIG_EXECUTABLE" || true)
    rm -rf "$B" "$B.log"
    if [ -n "$bad" ]; then
        echo "gpu-carry.sh: CMake picked paths outside the carried prefix:" >&2
        echo "$bad" >&2
        exit 1
    fi
    echo "gpu-carry.sh: verify: every carried dependency was found in the prefix"
fi
echo "gpu-carry.sh: carry '.gpu-carry/ship' in the device tool's run (docs/GPU.md)"
