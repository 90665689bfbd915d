/* Dense ops through cuBLAS (issue 27): the row-major gemm of the backend
 * contract on cuBLAS's column-major one, linear layers on top of it.
 *
 * Row-major C [m][n] is column-major C^T [n][m], and C^T = op(B)^T op(A)^T:
 * the call swaps the operands (B first, then A) and the sizes (n, m), and keeps
 * each operand's transpose flag; leading dimensions are the row lengths the
 * CPU backend passes to dnnl_sgemm.
 *
 * Precision: fp32 gemms compute in fp32 (the handle's math mode has no TF32
 * unless HALLU_CUDA_TF32=1). With --precision bf16 (impl->precision) they go
 * through cublasGemmEx with CUBLAS_COMPUTE_32F_FAST_16BF: fp32 in and out,
 * products of bf16-rounded operands accumulated in fp32 (as autocast's
 * matmuls). cuBLAS gemms are bit-reproducible run to run on one GPU model
 * (fixed kernel choice per shape, atomics off: cuda_backend.cu). */
#include "backend/cuda/cuda_internal.h"

/* C = beta * C (beta == 0 clears, even NaN), for k == 0 where BLAS would not
 * touch C in every implementation; the CPU backend gives these bits. */
static __global__ void gemm_scale_kernel(float *c, float beta, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        c[i] = beta == 0.0f ? 0.0f : beta * c[i];
}

void cuda_gemm(hallu_backend *be, int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
               const float *b, float beta, float *c)
{
    if (!cuda_enter(be) || m <= 0 || n <= 0)
        return;
    cuda_impl *impl = cuda_impl_of(be);
    if (k <= 0) {
        int64_t total = (int64_t)m * n;
        gemm_scale_kernel<<<cuda_blocks(total), CUDA_THREADS, 0, impl->stream>>>(c, beta, total);
        cuda_check_launch(be, "gemm: scale (k = 0)");
        return;
    }
    cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    int lda = trans_a ? m : k, ldb = trans_b ? k : n;
    if (impl->precision == HALLU_PRECISION_BF16)
        cuda_check_blas(be,
                        cublasGemmEx(impl->cublas, op_b, op_a, n, m, k, &alpha, b, CUDA_R_32F, ldb, a, CUDA_R_32F,
                                     lda, &beta, c, CUDA_R_32F, n, CUBLAS_COMPUTE_32F_FAST_16BF, CUBLAS_GEMM_DEFAULT),
                        "gemm: cublasGemmEx (bf16)");
    else
        cuda_check_blas(be, cublasSgemm(impl->cublas, op_b, op_a, n, m, k, &alpha, b, ldb, a, lda, &beta, c, n),
                        "gemm: cublasSgemm");
}

/* y [rows][out] = bias broadcast over the rows (the gemm then adds x W^T with beta 1, as the CPU backend). */
static __global__ void bias_rows_kernel(float *y, const float *bias, int rows, int out)
{
    int64_t total = (int64_t)rows * out;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = bias[i % out];
}

void cuda_linear_forward(hallu_backend *be, float *y, const float *x, const float *w, const float *bias, int rows,
                         int in, int out)
{
    if (!cuda_enter(be) || rows <= 0 || out <= 0)
        return;
    if (bias) {
        bias_rows_kernel<<<cuda_blocks((int64_t)rows * out), CUDA_THREADS, 0, cuda_impl_of(be)->stream>>>(
            y, bias, rows, out);
        cuda_check_launch(be, "linear_forward: bias");
    }
    cuda_gemm(be, 0, 1, rows, out, in, 1.0f, x, w, bias ? 1.0f : 0.0f, y);
}

/* dbias[j] += sum over rows of dy[r][j], in double, without atomics: a block
 * covers 32 columns; its 8 thread rows sum rows ty, ty + 8, ... (coalesced:
 * a warp reads 32 neighbouring columns of one row), then thread row 0 adds the
 * 8 partial sums in a fixed order. Same bits every run. */
enum { BIAS_COLS = 32, BIAS_ROWS = 8 };

static __global__ void bias_grad_kernel(float *dbias, const float *dy, int rows, int out)
{
    __shared__ double part[BIAS_ROWS][BIAS_COLS];
    int j = blockIdx.x * BIAS_COLS + threadIdx.x;
    double s = 0.0;
    if (j < out)
        for (int r = threadIdx.y; r < rows; r += BIAS_ROWS)
            s += dy[(int64_t)r * out + j];
    part[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && j < out) {
        double t = 0.0;
        for (int g = 0; g < BIAS_ROWS; g++)
            t += part[g][threadIdx.x];
        dbias[j] += (float)t;
    }
}

void cuda_linear_backward(hallu_backend *be, float *dx, float *dw, float *dbias, const float *dy, const float *x,
                          const float *w, int rows, int in, int out)
{
    if (!cuda_enter(be) || rows <= 0 || in <= 0 || out <= 0)
        return;
    if (dx)
        cuda_gemm(be, 0, 0, rows, in, out, 1.0f, dy, w, 0.0f, dx);
    if (dw)
        cuda_gemm(be, 1, 0, out, in, rows, 1.0f, dy, x, 1.0f, dw);
    if (dbias && cuda_enter(be)) {
        dim3 block(BIAS_COLS, BIAS_ROWS);
        unsigned grid = (unsigned)((out + BIAS_COLS - 1) / BIAS_COLS);
        bias_grad_kernel<<<grid, block, 0, cuda_impl_of(be)->stream>>>(dbias, dy, rows, out);
        cuda_check_launch(be, "linear_backward: bias gradient");
    }
}
