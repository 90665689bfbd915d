#!/bin/sh
# The backend boundary (docs/ARCHITECTURE.md): only src/backend/ may call oneDNN
# or a BLAS, so that a new backend (CUDA) takes over every computation by
# implementing the op table. Fails naming each file and line that crosses it.
# Usage: backend_boundary.sh SOURCE_DIR (scans src/, bench/, examples/, tests/)
root="${1:?usage: backend_boundary.sh SOURCE_DIR}"
src="$root/src"
pattern='dnnl_[a-z_]*[(]|#[[:space:]]*include[[:space:]]*[<"](oneapi/dnnl|dnnl|cblas|mkl|openblas|cublas|cudnn)|cblas_[a-z]|[^a-z_]s?gemm_[(]'
# The library, and the benchmarks, examples and tests that use it.
hits=$(grep -rnE "$pattern" "$src" "$root/bench" "$root/examples" "$root/tests" --include='*.c' --include='*.h' \
       --include='*.cu' | grep -v "^$src/backend/")
if [ -n "$hits" ]; then
    echo "FAIL: oneDNN/BLAS used outside src/backend/ (route it through a backend op, include/hallu/backend.h):"
    echo "$hits"
    echo "0 passed, 1 failed"
    exit 1
fi
n=$(grep -rlE "$pattern" "$src/backend" --include='*.c' --include='*.h' | wc -l)
if [ "$n" -eq 0 ]; then
    echo "FAIL: the pattern finds no oneDNN call even in src/backend/: the check itself is broken"
    echo "0 passed, 1 failed"
    exit 1
fi
echo "only src/backend/ calls oneDNN/BLAS ($n files there)"
echo "1 passed, 0 failed"
