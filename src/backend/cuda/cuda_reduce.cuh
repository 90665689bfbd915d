/* Block reductions shared by the row, SSL and eval kernels of the CUDA
 * backend: a fixed pairing (a shuffle tree per warp, then warp 0 over the
 * warp results), so a result depends only on the data and the launch shape,
 * never on scheduling. Device code only; each .cu includes it once. */
#ifndef HALLU_CUDA_REDUCE_CUH
#define HALLU_CUDA_REDUCE_CUH

#include <math.h>
#include <stdint.h>

namespace {

constexpr int ROW_GRID_MAX = 1024;
const unsigned FULL_MASK = 0xffffffffu;

/* Grid for a grid-stride loop over rows; capped so that the per-block loss
 * partials fit the small scratch reserved at creation. */
inline unsigned row_grid(int64_t rows)
{
    return (unsigned)(rows < 1 ? 1 : rows < ROW_GRID_MAX ? rows : ROW_GRID_MAX);
}

struct sum_op {
    template <typename T> __device__ T operator()(T a, T b) const { return a + b; }
};
/* Operands are never NaN where it is used (NaN inputs are skipped before). */
struct max_op {
    __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

template <typename T, typename Op> __device__ T warp_reduce(T v, Op op)
{
    for (int o = 16; o > 0; o >>= 1)
        v = op(v, __shfl_down_sync(FULL_MASK, v, o));
    return v;
}

/* Reduction over the block, returned to every thread. All threads of the block
 * must call it (blockDim a multiple of 32); sh holds 33 elements. Reusing sh in
 * the next call is safe: its first write follows this call's last barrier. */
template <typename T, typename Op> __device__ T block_reduce(T v, T *sh, Op op, T identity)
{
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_reduce(v, op);
    if (lane == 0)
        sh[w] = v;
    __syncthreads();
    if (w == 0) {
        v = lane < nw ? sh[lane] : identity;
        v = warp_reduce(v, op);
        if (lane == 0)
            sh[32] = v;
    }
    __syncthreads();
    return sh[32];
}

template <typename T> __device__ T warp_sum(T v) { return warp_reduce(v, sum_op()); }
template <typename T> __device__ T block_sum(T v, T *sh) { return block_reduce(v, sh, sum_op(), T(0)); }
__device__ inline float block_max(float v, float *sh) { return block_reduce(v, sh, max_op(), -INFINITY); }

}  // namespace

#endif
