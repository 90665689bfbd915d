/* Row-wise ops on 2-D activations [rows][cols] (issue 27): L2 normalisation,
 * softmax cross-entropy, column concat/slice. The CPU backend (cpu_rows.c)
 * sums rows in double; so do these kernels.
 *
 * Shape: one block per row (grid-stride over rows, so the grid stays bounded)
 * and a fixed reduction tree per block, so every result depends only on the
 * data and the launch shape, never on scheduling: the same bits every run. A
 * loss over rows is summed in two stages without atomics: each block adds its
 * rows' terms in row order into one double partial, and one block then sums
 * the partials with the same fixed tree. */
#include "cuda_internal.h"
#include "cuda_reduce.cuh"

#include <math.h>
#include <stdint.h>

namespace {

constexpr int ROW_THREADS = 256;

__global__ void l2norm_rows_forward_kernel(float *y, float *norms, const float *x, int rows, int cols, float eps)
{
    __shared__ double sh[33];
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *xr = x + (int64_t)r * cols;
        double ss = 0.0;
        for (int j = threadIdx.x; j < cols; j += blockDim.x)
            ss += (double)xr[j] * xr[j];
        ss = block_sum(ss, sh);
        double norm = sqrt(ss), denom = norm > eps ? norm : (double)eps;
        if (threadIdx.x == 0)
            norms[r] = (float)norm;
        /* Each thread rewrites only the elements it read, so y may be x. */
        float *yr = y + (int64_t)r * cols;
        for (int j = threadIdx.x; j < cols; j += blockDim.x)
            yr[j] = (float)(xr[j] / denom);
    }
}

__global__ void l2norm_rows_backward_kernel(float *dx, const float *dy, const float *x, const float *norms, int rows,
                                            int cols, float eps)
{
    __shared__ double sh[33];
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *xr = x + (int64_t)r * cols, *gr = dy + (int64_t)r * cols;
        float *dr = dx + (int64_t)r * cols;
        double n = norms[r];
        /* The branch is the same for the whole block (one row), so the
         * barriers inside block_sum are reached by every thread or none. */
        if (!(n >= eps) || n <= 0.0) {
            double inv = eps > 0.0f ? 1.0 / eps : 0.0;
            for (int j = threadIdx.x; j < cols; j += blockDim.x)
                dr[j] = (float)(gr[j] * inv);
            continue;
        }
        double dot = 0.0;
        for (int j = threadIdx.x; j < cols; j += blockDim.x)
            dot += (double)xr[j] * gr[j];
        dot = block_sum(dot, sh);
        double k = dot / (n * n);
        /* Explicit roundings: no fused multiply-add, as on the CPU, because
         * the difference can cancel. */
        for (int j = threadIdx.x; j < cols; j += blockDim.x)
            dr[j] = (float)(__dsub_rn((double)gr[j], __dmul_rn((double)xr[j], k)) / n);
    }
}

/* Writes the softmax of each row and adds the rows' cross-entropies (0 for an
 * out-of-range target) into partials[blockIdx.x], in row order. */
__global__ void softmax_xent_forward_kernel(double *partials, float *probs, const float *logits,
                                            const int32_t *targets, int rows, int classes)
{
    __shared__ double shd[33];
    __shared__ float shf[33];
    double part = 0.0;
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *z = logits + (int64_t)r * classes;
        float *p = probs + (int64_t)r * classes;
        /* The CPU's running max starts at z[0] and only moves on a larger
         * value: NaN at z[0] sticks, NaN elsewhere is passed over. */
        float m = -INFINITY;
        for (int j = threadIdx.x; j < classes; j += blockDim.x) {
            float v = z[j];
            if (v > m)
                m = v;
        }
        m = block_reduce(m, shf, max_op(), -INFINITY);
        float mx = isnan(z[0]) ? z[0] : m;
        double sum = 0.0;
        for (int j = threadIdx.x; j < classes; j += blockDim.x)
            sum += exp((double)z[j] - mx);
        sum = block_sum(sum, shd);
        for (int j = threadIdx.x; j < classes; j += blockDim.x)
            p[j] = (float)(exp((double)z[j] - mx) / sum);
        if (threadIdx.x == 0) {
            int32_t t = targets[r];
            if (t >= 0 && t < classes)
                part += log(sum) + mx - (double)z[t];
        }
    }
    if (threadIdx.x == 0)
        partials[blockIdx.x] = part;
}

__global__ void sum_partials_kernel(double *out, const double *partials, int n)
{
    __shared__ double sh[33];
    double s = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        s += partials[i];
    s = block_sum(s, sh);
    if (threadIdx.x == 0)
        *out = s;
}

__global__ void softmax_xent_backward_kernel(float *dlogits, const float *probs, const int32_t *targets, int64_t total,
                                             int classes, double k)
{
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = e / classes;
        int j = (int)(e - r * classes);
        dlogits[e] = (float)(k * ((double)probs[e] - (j == targets[r] ? 1.0 : 0.0)));
    }
}

/* dst[r][dst_col0 + c] = src[r][src_col0 + c] for c < width: both concat and slice. */
__global__ void copy_block_cols_kernel(float *dst, int64_t dst_cols, int64_t dst_col0, const float *src,
                                       int64_t src_cols, int64_t src_col0, int64_t width, int64_t total)
{
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = e / width, c = e - r * width;
        dst[r * dst_cols + dst_col0 + c] = src[r * src_cols + src_col0 + c];
    }
}

} /* namespace */

void cuda_l2norm_rows_forward(hallu_backend *be, float *y, float *norms, const float *x, int rows, int cols,
                              float eps)
{
    if (!cuda_enter(be))
        return;
    if (rows <= 0)
        return;
    l2norm_rows_forward_kernel<<<row_grid(rows), ROW_THREADS, 0, cuda_impl_of(be)->stream>>>(y, norms, x, rows, cols,
                                                                                             eps);
    cuda_check_launch(be, "l2norm_rows_forward");
}

void cuda_l2norm_rows_backward(hallu_backend *be, float *dx, const float *dy, const float *x, const float *norms,
                               int rows, int cols, float eps)
{
    if (!cuda_enter(be))
        return;
    if (rows <= 0)
        return;
    l2norm_rows_backward_kernel<<<row_grid(rows), ROW_THREADS, 0, cuda_impl_of(be)->stream>>>(dx, dy, x, norms, rows,
                                                                                              cols, eps);
    cuda_check_launch(be, "l2norm_rows_backward");
}

/* The one op whose result the host reads at once: the loss comes back through
 * a stream synchronisation. */
float cuda_softmax_xent_forward(hallu_backend *be, float *probs, const float *logits, const int32_t *targets,
                                int rows, int classes)
{
    if (!cuda_enter(be))
        return 0.0f;
    if (rows <= 0 || classes <= 0)
        return 0.0f;
    cuda_impl *impl = cuda_impl_of(be);
    unsigned grid = row_grid(rows);
    /* The partials, then their sum. Reserving is a no-op once the scratch is
     * large enough, so only a first call may allocate. */
    size_t need = ((size_t)grid + 1) * sizeof(double);
    if (impl->scratch_bytes < need) {
        hallu_error err;
        if (cuda_scratch_reserve(impl, need, &err) != HALLU_OK) {
            hallu_backend_fail(be, err.code, "softmax_xent_forward: %s", err.msg);
            return 0.0f;
        }
    }
    double *partials = (double *)impl->scratch;
    softmax_xent_forward_kernel<<<grid, ROW_THREADS, 0, impl->stream>>>(partials, probs, logits, targets, rows,
                                                                        classes);
    cuda_check_launch(be, "softmax_xent_forward");
    sum_partials_kernel<<<1, ROW_THREADS, 0, impl->stream>>>(partials + grid, partials, (int)grid);
    cuda_check_launch(be, "softmax_xent_forward (sum)");
    double total = 0.0;
    if (!cuda_check_rt(be, cudaMemcpyAsync(&total, partials + grid, sizeof total, cudaMemcpyDeviceToHost, impl->stream),
                       "softmax_xent_forward: loss download"))
        return 0.0f;
    if (!cuda_check_rt(be, cudaStreamSynchronize(impl->stream), "softmax_xent_forward: synchronize"))
        return 0.0f;
    if (!cuda_enter(be))
        return 0.0f;
    return (float)(total / rows);
}

void cuda_softmax_xent_backward(hallu_backend *be, float *dlogits, const float *probs, const int32_t *targets,
                                int rows, int classes, float scale)
{
    if (!cuda_enter(be))
        return;
    if (rows <= 0 || classes <= 0)
        return;
    int64_t total = (int64_t)rows * classes;
    softmax_xent_backward_kernel<<<cuda_blocks(total), CUDA_THREADS, 0, cuda_impl_of(be)->stream>>>(
        dlogits, probs, targets, total, classes, (double)scale / rows);
    cuda_check_launch(be, "softmax_xent_backward");
}

void cuda_copy_cols(hallu_backend *be, float *dst, int cols_dst, int col0, const float *src, int cols_src, int rows)
{
    if (!cuda_enter(be))
        return;
    if (rows <= 0 || cols_src <= 0)
        return;
    int64_t total = (int64_t)rows * cols_src;
    copy_block_cols_kernel<<<cuda_blocks(total), CUDA_THREADS, 0, cuda_impl_of(be)->stream>>>(
        dst, cols_dst, col0, src, cols_src, 0, cols_src, total);
    cuda_check_launch(be, "copy_cols");
}

void cuda_slice_cols(hallu_backend *be, float *dst, int cols_dst, const float *src, int cols_src, int col0, int rows)
{
    if (!cuda_enter(be))
        return;
    if (rows <= 0 || cols_dst <= 0)
        return;
    int64_t total = (int64_t)rows * cols_dst;
    copy_block_cols_kernel<<<cuda_blocks(total), CUDA_THREADS, 0, cuda_impl_of(be)->stream>>>(
        dst, cols_dst, 0, src, cols_src, col0, cols_dst, total);
    cuda_check_launch(be, "slice_cols");
}
