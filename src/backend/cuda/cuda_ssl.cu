/* The self-supervised methods' row ops (issue 27), as cpu_ssl.c defines them:
 * NT-Xent and InfoNCE rows, SimSiam's negative cosine, the collapse metric,
 * the Hallucinator's input/output/backward, row permutations, MoCo's enqueue.
 *
 * Row reductions stay in double (a log-sum-exp over 65k queue logits loses
 * digits in float). One block per row with a fixed reduction tree; a loss over
 * rows goes through per-block double partials (each block adds its rows in
 * row order) summed by one block, so results are the same bits every run and
 * no float atomics are needed. Scalars are written to device floats. The
 * elementwise float formulas use explicit roundings (__fmul_rn, ...) so that
 * nvcc does not fuse them into FMAs the CPU build does not use. */
#include "cuda_internal.h"
#include "cuda_reduce.cuh"

#include <math.h>
#include <stdint.h>

namespace {

constexpr int ROW_THREADS = 256, WIDE_THREADS = 1024;
constexpr int COL_TILE = 32, COL_GROUPS = 8;   /* collapse_std's block: 32 columns x 8 row groups */

/* Per-block partials (grid of them) and one more slot, in the backend's scratch;
 * NULL (failure recorded) when it cannot grow. Reserving is a no-op once the
 * scratch is large enough, so only a first call may allocate. */
double *loss_partials(hallu_backend *be, unsigned grid, const char *what)
{
    cuda_impl *impl = cuda_impl_of(be);
    size_t need = ((size_t)grid + 1) * sizeof(double);
    if (impl->scratch_bytes < need) {
        hallu_error err;
        if (cuda_scratch_reserve(impl, need, &err) != HALLU_OK) {
            hallu_backend_fail(be, err.code, "%s: %s", what, err.msg);
            return NULL;
        }
    }
    return (double *)impl->scratch;
}

/* *out = (float)(coef * total / div) with total the sum of n partials, or
 * *out + that with accumulate: the CPU's final expressions, term for term. */
__global__ void finish_loss_kernel(float *out, const double *partials, int n, double coef, double div, int accumulate)
{
    __shared__ double sh[33];
    double s = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        s += partials[i];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) {
        float value = (float)(coef * s / div);
        *out = accumulate ? *out + value : value;
    }
}

void finish_loss(hallu_backend *be, float *out, const double *partials, unsigned n, double coef, double div,
                 int accumulate, const char *what)
{
    finish_loss_kernel<<<1, ROW_THREADS, 0, cuda_impl_of(be)->stream>>>(out, partials, (int)n, coef, div, accumulate);
    cuda_check_launch(be, what);
}

/* Row j may appear in anchor a's denominator (cpu_ssl.c's rule): not a itself
 * and, with mask, no other row of a's source but the positive. */
__device__ bool nt_allowed(int a, int j, int pos, int block, int n_src, int mask)
{
    if (j == a)
        return false;
    return !mask || j == pos || j / block != a / block || (j % block) % n_src != (a % block) % n_src;
}

__global__ void nt_xent_rows_kernel(double *partials, float *sim, int rows, int m, int row0, int block, int n_src,
                                    int mask, double g)
{
    __shared__ double shd[33];
    __shared__ float shf[33];
    double part = 0.0;
    for (int i = blockIdx.x; i < rows; i += gridDim.x) {
        float *row = sim + (int64_t)i * m;
        int a = row0 + i, pos = a / block * block + (a % block + block / 2) % block;
        /* Read before the barriers below, hence before any thread rewrites the row. */
        float logit_pos = threadIdx.x == 0 ? row[pos] : 0.0f;
        float lm = -INFINITY;
        for (int j = threadIdx.x; j < m; j += blockDim.x)
            if (nt_allowed(a, j, pos, block, n_src, mask) && row[j] > lm)
                lm = row[j];
        double mx = block_max(lm, shf);
        double sum = 0.0;
        for (int j = threadIdx.x; j < m; j += blockDim.x)
            if (nt_allowed(a, j, pos, block, n_src, mask))
                sum += exp(row[j] - mx);
        sum = block_sum(sum, shd);
        double lse = mx + log(sum);
        if (threadIdx.x == 0)
            part += lse - logit_pos;
        /* dL/dsim = scale/rows * (softmax - onehot(pos)); each thread rewrites
         * only the elements it reads. */
        for (int j = threadIdx.x; j < m; j += blockDim.x) {
            float v = nt_allowed(a, j, pos, block, n_src, mask) ? (float)(g * exp(row[j] - lse)) : 0.0f;
            if (j == pos)
                v = __fsub_rn(v, (float)g);
            row[j] = v;
        }
    }
    if (threadIdx.x == 0)
        partials[blockIdx.x] = part;
}

__global__ void __launch_bounds__(WIDE_THREADS)
    infonce_rows_kernel(double *partials, float *dq, float *neg, const float *q, const float *kpos, int rows, int d,
                        int K, float inv_t, double g)
{
    __shared__ double shd[33];
    __shared__ float shf[33];
    double part = 0.0;
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *qr = q + (int64_t)r * d, *kr = kpos + (int64_t)r * d;
        float *nr = neg + (int64_t)r * K;
        double lpos = 0.0;
        for (int j = threadIdx.x; j < d; j += blockDim.x)
            lpos += (double)qr[j] * kr[j];
        lpos = block_sum(lpos, shd) * inv_t;
        float lm = -INFINITY;
        for (int j = threadIdx.x; j < K; j += blockDim.x)
            if (nr[j] > lm)
                lm = nr[j];
        lm = block_max(lm, shf);
        double mx = (double)lm > lpos ? (double)lm : lpos;
        double sum = 0.0;
        for (int j = threadIdx.x; j < K; j += blockDim.x)
            sum += exp(nr[j] - mx);
        sum = block_sum(sum, shd) + exp(lpos - mx);
        double lse = mx + log(sum);
        if (threadIdx.x == 0)
            part += lse - lpos;
        if (!dq)
            continue;
        /* dlogits = (softmax - onehot(0)) / rows; the queue part stays in nr. */
        double dpos = g * (exp(lpos - lse) - 1.0);
        for (int j = threadIdx.x; j < K; j += blockDim.x)
            nr[j] = (float)(g * exp(nr[j] - lse));
        float *dqr = dq + (int64_t)r * d;
        for (int j = threadIdx.x; j < d; j += blockDim.x)
            dqr[j] = (float)(dpos * inv_t * kr[j]);
    }
    if (threadIdx.x == 0)
        partials[blockIdx.x] = part;
}

__global__ void neg_cosine_kernel(double *partials, float *dp, const float *p, const float *z, int rows, int d,
                                  double c)
{
    const double eps = 1e-8; /* torch.nn.CosineSimilarity's */
    __shared__ double sh[33];
    double part = 0.0;
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *pr = p + (int64_t)r * d, *zr = z + (int64_t)r * d;
        double spp = 0.0, szz = 0.0, spz = 0.0;
        for (int j = threadIdx.x; j < d; j += blockDim.x) {
            double pv = pr[j], zv = zr[j];
            spp += pv * pv;
            szz += zv * zv;
            spz += pv * zv;
        }
        spp = block_sum(spp, sh);
        szz = block_sum(szz, sh);
        spz = block_sum(spz, sh);
        double np = sqrt(spp), nz = sqrt(szz), pz = np * nz;
        double denom = pz > eps ? pz : eps;
        double cos = spz / denom;
        if (threadIdx.x == 0)
            part += cos;
        if (!dp)
            continue;
        /* d cos / dp = z / (|p||z|) - cos p / |p|^2 (constant eps branch: z / eps). */
        float *dr = dp + (int64_t)r * d;
        for (int j = threadIdx.x; j < d; j += blockDim.x) {
            double gj = pz > eps ? zr[j] / denom - cos * pr[j] / (np * np) : zr[j] / eps;
            dr[j] = (float)(c * gj);
        }
    }
    if (threadIdx.x == 0)
        partials[blockIdx.x] = part;
}

__global__ void collapse_norms_kernel(float *norms, const float *z, int rows, int d)
{
    __shared__ double sh[33];
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *zr = z + (int64_t)r * d;
        double s = 0.0;
        for (int j = threadIdx.x; j < d; j += blockDim.x)
            s += (double)zr[j] * zr[j];
        s = block_sum(s, sh);
        double nr = sqrt(s);
        if (threadIdx.x == 0)
            norms[r] = (float)(nr > 1e-12 ? nr : 1e-12);
    }
}

/* Block (COL_TILE, COL_GROUPS): threadIdx.x walks adjacent columns (coalesced
 * loads), threadIdx.y strides over rows. Each block adds the std of its column
 * tiles, in tile order, into partials[blockIdx.x]. */
__global__ void collapse_cols_kernel(double *partials, const float *z, const float *norms, int rows, int d)
{
    __shared__ double s1[COL_GROUPS][COL_TILE], s2[COL_GROUPS][COL_TILE];
    int tx = threadIdx.x, ty = threadIdx.y;
    int tiles = (d + COL_TILE - 1) / COL_TILE;
    double part = 0.0;
    for (int t = blockIdx.x; t < tiles; t += gridDim.x) {
        int j = t * COL_TILE + tx;
        double s = 0.0, ss = 0.0;
        if (j < d)
            for (int r = ty; r < rows; r += COL_GROUPS) {
                double v = (double)z[(int64_t)r * d + j] / norms[r];
                s += v;
                ss += v * v;
            }
        s1[ty][tx] = s;
        s2[ty][tx] = ss;
        __syncthreads();
        if (ty == 0) {
            /* Row groups in a fixed order; warp 0 is exactly the ty == 0 threads. */
            for (int y = 1; y < COL_GROUPS; y++) {
                s += s1[y][tx];
                ss += s2[y][tx];
            }
            double sd = 0.0;
            if (j < d) {
                double mean = s / rows, var = __dsub_rn(ss / rows, __dmul_rn(mean, mean));
                sd = sqrt(var > 0.0 ? var : 0.0);
            }
            sd = warp_reduce(sd, sum_op());
            if (tx == 0)
                part += sd;
        }
        __syncthreads();
    }
    if (tx == 0 && ty == 0)
        partials[blockIdx.x] = part;
}

__global__ void hal_input_kernel(float *xg, const float *x, const float *k, int64_t total, int d, float one_plus_r,
                                 float r)
{
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = e / d, j = e - i * d;
        float xv = x[e];
        float *row = xg + i * 2 * d;
        row[j] = xv;
        row[d + j] = __fsub_rn(__fmul_rn(one_plus_r, xv), __fmul_rn(r, k[e]));
    }
}

__global__ void hal_output_kernel(float *h, const float *mlp, const float *xg, int64_t total, int d)
{
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = e / d, j = e - i * d;
        h[e] = __fadd_rn(mlp[e], xg[i * 2 * d + d + j]);
    }
}

__global__ void hal_backward_kernel(float *dx, float *dk, const float *dxg, const float *dout, int64_t total, int d,
                                    float one_plus_r, float r, int residual)
{
    const float *dh = dout + total;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = e / d, j = e - i * d;
        const float *dxi = dxg + i * 2 * d;
        /* The residual path adds dh straight into dg. */
        float dg = __fadd_rn(dxi[d + j], residual ? dh[e] : 0.0f);
        float add = __fadd_rn(__fadd_rn(dout[e], dxi[j]), __fmul_rn(one_plus_r, dg));
        dx[e] = __fadd_rn(dx[e], add);
        if (dk)
            dk[e] = __fsub_rn(dk[e], __fmul_rn(r, dg));
    }
}

/* dst[dst_row(i)] = src[src_row(i)] with the index on one side: gather when
 * gather != 0 (dst[i] = src[index[i]]), scatter otherwise (dst[index[i]] = src[i]). */
__global__ void permute_rows_kernel(float *dst, const float *src, const int32_t *index, int64_t total, int64_t cols,
                                    int gather)
{
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = e / cols, c = e - i * cols, at = index[i];
        if (gather)
            dst[e] = src[at * cols + c];
        else
            dst[at * cols + c] = src[e];
    }
}

/* Rows first..rows-1 of src (the last K at most, so their slots are distinct
 * and each slot gets the latest row the serial loop would leave there). */
__global__ void enqueue_rows_kernel(float *queue, const int64_t *ptr, const float *src, int first, int64_t total,
                                    int d, int K)
{
    int64_t at = *ptr;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t rr = first + e / d, c = e % d;
        int64_t slot = (at + rr) % K;
        queue[slot * d + c] = src[rr * d + c];
    }
}

/* A separate launch after the copy: the copy's threads all read *ptr first. */
__global__ void enqueue_advance_kernel(int64_t *ptr, int rows, int K)
{
    *ptr = (*ptr + rows) % K;
}

} /* namespace */

void cuda_ssl_nt_xent_rows(hallu_backend *be, float *loss, float *sim, int rows, int m, int row0, int block, int n_src,
                           int mask_same_source, float scale)
{
    if (!cuda_enter(be))
        return;
    unsigned grid = row_grid(rows);
    double *partials = loss_partials(be, grid, "ssl_nt_xent_rows");
    if (!partials)
        return;
    unsigned parts = 0;
    if (rows > 0) {
        nt_xent_rows_kernel<<<grid, ROW_THREADS, 0, cuda_impl_of(be)->stream>>>(
            partials, sim, rows, m, row0, block, n_src, mask_same_source, (double)scale / rows);
        cuda_check_launch(be, "ssl_nt_xent_rows");
        parts = grid;
    }
    /* rows == 0 still writes the CPU's 0/0. */
    finish_loss(be, loss, partials, parts, (double)scale, (double)rows, 0, "ssl_nt_xent_rows (sum)");
}

void cuda_ssl_infonce_rows(hallu_backend *be, float *loss, float *dq, float *neg, const float *q, const float *kpos,
                           int rows, int d, int K, float temperature)
{
    if (!cuda_enter(be))
        return;
    unsigned grid = row_grid(rows);
    double *partials = loss_partials(be, grid, "ssl_infonce_rows");
    if (!partials)
        return;
    unsigned parts = 0;
    if (rows > 0) {
        /* K is the queue (65536): a wide block per row keeps the three passes
         * over it bandwidth-bound even with few rows. */
        infonce_rows_kernel<<<grid, WIDE_THREADS, 0, cuda_impl_of(be)->stream>>>(
            partials, dq, neg, q, kpos, rows, d, K, 1.0f / temperature, 1.0 / rows);
        cuda_check_launch(be, "ssl_infonce_rows");
        parts = grid;
    }
    finish_loss(be, loss, partials, parts, 1.0, (double)rows, 0, "ssl_infonce_rows (sum)");
}

void cuda_ssl_neg_cosine(hallu_backend *be, float *loss, float *dp, const float *p, const float *z, int rows, int d,
                         float scale, int accumulate)
{
    if (!cuda_enter(be))
        return;
    unsigned grid = row_grid(rows);
    double *partials = loss_partials(be, grid, "ssl_neg_cosine");
    if (!partials)
        return;
    unsigned parts = 0;
    if (rows > 0) {
        neg_cosine_kernel<<<grid, ROW_THREADS, 0, cuda_impl_of(be)->stream>>>(partials, dp, p, z, rows, d,
                                                                              -(double)scale / rows);
        cuda_check_launch(be, "ssl_neg_cosine");
        parts = grid;
    }
    finish_loss(be, loss, partials, parts, -(double)scale, (double)rows, accumulate, "ssl_neg_cosine (sum)");
}

void cuda_ssl_collapse_std(hallu_backend *be, float *out, float *norms, const float *z, int rows, int d)
{
    if (!cuda_enter(be))
        return;
    cudaStream_t stream = cuda_impl_of(be)->stream;
    if (rows < 1 || d < 1) {
        cuda_check_rt(be, cudaMemsetAsync(out, 0, sizeof(float), stream), "ssl_collapse_std");
        return;
    }
    int64_t tiles = ((int64_t)d + COL_TILE - 1) / COL_TILE;
    unsigned grid = row_grid(tiles);
    double *partials = loss_partials(be, grid, "ssl_collapse_std");
    if (!partials)
        return;
    collapse_norms_kernel<<<row_grid(rows), ROW_THREADS, 0, stream>>>(norms, z, rows, d);
    cuda_check_launch(be, "ssl_collapse_std (norms)");
    collapse_cols_kernel<<<grid, dim3(COL_TILE, COL_GROUPS), 0, stream>>>(partials, z, norms, rows, d);
    cuda_check_launch(be, "ssl_collapse_std (columns)");
    finish_loss(be, out, partials, grid, 1.0, (double)d, 0, "ssl_collapse_std (sum)");
}

void cuda_ssl_hal_input(hallu_backend *be, float *xg, const float *x, const float *k, int rows, int d, float r)
{
    if (!cuda_enter(be))
        return;
    int64_t total = (int64_t)rows * d;
    if (total <= 0)
        return;
    hal_input_kernel<<<cuda_blocks(total), CUDA_THREADS, 0, cuda_impl_of(be)->stream>>>(xg, x, k, total, d, 1.0f + r,
                                                                                        r);
    cuda_check_launch(be, "ssl_hal_input");
}

void cuda_ssl_hal_output(hallu_backend *be, float *h, const float *mlp, const float *xg, int rows, int d, int residual)
{
    if (!cuda_enter(be))
        return;
    int64_t total = (int64_t)rows * d;
    if (total <= 0)
        return;
    cudaStream_t stream = cuda_impl_of(be)->stream;
    if (!residual) {
        cuda_check_rt(be, cudaMemcpyAsync(h, mlp, (size_t)total * sizeof(float), cudaMemcpyDeviceToDevice, stream),
                      "ssl_hal_output");
        return;
    }
    hal_output_kernel<<<cuda_blocks(total), CUDA_THREADS, 0, stream>>>(h, mlp, xg, total, d);
    cuda_check_launch(be, "ssl_hal_output");
}

void cuda_ssl_hal_backward(hallu_backend *be, float *dx, float *dk, const float *dxg, const float *dout, int rows,
                           int d, float r, int residual)
{
    if (!cuda_enter(be))
        return;
    int64_t total = (int64_t)rows * d;
    if (total <= 0)
        return;
    hal_backward_kernel<<<cuda_blocks(total), CUDA_THREADS, 0, cuda_impl_of(be)->stream>>>(dx, dk, dxg, dout, total, d,
                                                                                           1.0f + r, r, residual);
    cuda_check_launch(be, "ssl_hal_backward");
}

void cuda_ssl_gather_rows(hallu_backend *be, float *dst, const float *src, const int32_t *index, int rows, int64_t cols)
{
    if (!cuda_enter(be))
        return;
    int64_t total = (int64_t)rows * cols;
    if (total <= 0)
        return;
    permute_rows_kernel<<<cuda_blocks(total), CUDA_THREADS, 0, cuda_impl_of(be)->stream>>>(dst, src, index, total, cols,
                                                                                           1);
    cuda_check_launch(be, "ssl_gather_rows");
}

/* index is a permutation (MoCo's shuffle): every destination row has one writer. */
void cuda_ssl_scatter_rows(hallu_backend *be, float *dst, const float *src, const int32_t *index, int rows,
                           int64_t cols)
{
    if (!cuda_enter(be))
        return;
    int64_t total = (int64_t)rows * cols;
    if (total <= 0)
        return;
    permute_rows_kernel<<<cuda_blocks(total), CUDA_THREADS, 0, cuda_impl_of(be)->stream>>>(dst, src, index, total, cols,
                                                                                           0);
    cuda_check_launch(be, "ssl_scatter_rows");
}

void cuda_ssl_enqueue_rows(hallu_backend *be, float *queue, int64_t *ptr, const float *src, int rows, int d, int K)
{
    if (!cuda_enter(be))
        return;
    if (rows <= 0 || K <= 0)
        return;
    cudaStream_t stream = cuda_impl_of(be)->stream;
    int first = rows > K ? rows - K : 0;
    int64_t total = (int64_t)(rows - first) * d;
    if (total > 0) {
        enqueue_rows_kernel<<<cuda_blocks(total), CUDA_THREADS, 0, stream>>>(queue, ptr, src, first, total, d, K);
        cuda_check_launch(be, "ssl_enqueue_rows");
    }
    enqueue_advance_kernel<<<1, 1, 0, stream>>>(ptr, rows, K);
    cuda_check_launch(be, "ssl_enqueue_rows (pointer)");
}
