/* Batch norm, elementwise ops, pooling, norms and optimizer updates of the CUDA
 * backend (the semantics of src/backend/cpu/cpu_norm.c, cpu_eltwise.c,
 * cpu_pool.c, cpu_optim.c).
 *
 * Determinism: no atomics anywhere. Every reduction has a shape that depends
 * only on the op's sizes (never on the device, timing or scratch size): fixed
 * row splits, each summed by one block into a partial, a fixed shared-memory
 * tree inside the block, then a second kernel that sums the partials in a
 * fixed order. Results are therefore bit-identical run to run.
 *
 * CPU parity: float formulas that mirror the CPU's are written with the _rn
 * intrinsics so that nvcc cannot contract them into FMAs (the CPU build is
 * strict ISO C without -march, which never contracts); with equal inputs they
 * give the CPU's bits. Sums differ from the CPU only in their order (and are
 * carried in double where the CPU uses double).
 *
 * Scratch: batch norm's and the norms' partial sums live in impl->scratch,
 * which must hold CUDA_NN_SCRATCH_BYTES (cuda_scratch_reserve at backend
 * creation). An op finding less records a failure instead of allocating. */
#include "cuda_internal.h"

#include <math.h>
#include <stdint.h>

/* Reductions over rows: one 256-thread block covers `tw` adjacent columns
 * (32, or the next power of two above a narrower slab) times 256 / tw row
 * lanes, so a warp reads whole 32-byte sectors of consecutive columns. */
enum { NN_THREADS = 256 };
/* Row splits per reduction: at most NN_MAX_BLOCKS blocks over all column
 * tiles (enough to fill an H200 at 8 blocks per SM), each at least
 * NN_MIN_ROWS rows so that a block's partial is worth its launch. */
enum { NN_MAX_BLOCKS = 1024, NN_MIN_ROWS = 256 };
/* Channel slab as on the CPU: the fused ops keep a slab's double statistics
 * in scratch behind the partials, so the scratch does not grow with c. */
enum { NN_SLAB = 2048 };
/* Blocks of the flat norm reductions (l2_norm, lars_coef). */
enum { NORM_MAX_BLOCKS = 1024, NORM_MIN_ELEMS = 1 << 14 };

/* Partials: at most NN_MAX_BLOCKS / tiles splits of tiles * 32 >= cs columns,
 * two doubles each, then 2 * NN_SLAB doubles for a fused op's statistics.
 * The norms need at most 2 * NORM_MAX_BLOCKS doubles, which fit below. */
#define CUDA_NN_SCRATCH_BYTES \
    ((size_t)NN_MAX_BLOCKS * 32 * 2 * sizeof(double) + (size_t)2 * NN_SLAB * sizeof(double))
/* The bound above needs every slab's tiles to fit NN_MAX_BLOCKS (at least one
 * split each), and the scratch reserved at creation to hold it: a change to
 * either size fails here instead of as a failed op on the GPU. */
static_assert(NN_SLAB / 32 <= NN_MAX_BLOCKS, "a slab's column tiles exceed NN_MAX_BLOCKS");
static_assert(CUDA_NN_SCRATCH_BYTES <= (size_t)CUDA_SCRATCH_BYTES,
              "cuda_nn.cu's partials exceed the scratch reserved at creation (CUDA_SCRATCH_BYTES)");
static_assert((size_t)2 * NORM_MAX_BLOCKS * sizeof(double) <= CUDA_NN_SCRATCH_BYTES,
              "the norms' partials exceed CUDA_NN_SCRATCH_BYTES");

/* ---- helpers ---- */

/* Column tile width for a slab of cs columns. */
static int nn_tile_width(int cs)
{
    int tw = 1;
    while (tw < cs && tw < 32)
        tw *= 2;
    return tw;
}

/* The row split of a column reduction: a function of (m, cs) only, so the
 * fused and the split ops (and every run) sum in the same order. */
typedef struct nn_split {
    int tw, ry;       /* columns and row lanes per block */
    int tiles;        /* blocks across the slab's columns */
    int splits;       /* blocks down the rows */
    int64_t rows;     /* rows per split (the last may have fewer) */
} nn_split;

static nn_split nn_split_of(int64_t m, int cs)
{
    nn_split s;
    s.tw = nn_tile_width(cs);
    s.ry = NN_THREADS / s.tw;
    s.tiles = (cs + s.tw - 1) / s.tw;
    int64_t by_rows = (m + NN_MIN_ROWS - 1) / NN_MIN_ROWS;
    int64_t by_blocks = NN_MAX_BLOCKS / s.tiles;
    if (by_blocks < 1)
        by_blocks = 1;
    int64_t sp = by_rows < by_blocks ? by_rows : by_blocks;
    if (sp < 1)
        sp = 1;
    s.rows = (m + sp - 1) / sp;
    /* Rounding the rows up may leave trailing splits empty: drop them. */
    s.splits = (int)((m + s.rows - 1) / s.rows);
    if (s.splits < 1)
        s.splits = 1;
    return s;
}

/* Scratch for `doubles` doubles, or NULL with the failure recorded. */
static double *nn_scratch(hallu_backend *be, size_t doubles, const char *op)
{
    cuda_impl *impl = cuda_impl_of(be);
    size_t need = doubles * sizeof(double);
    if (!impl->scratch || impl->scratch_bytes < need) {
        hallu_backend_fail(be, HALLU_ERR_BACKEND,
                           "%s: needs %zu bytes of reduction scratch, %zu reserved "
                           "(cuda_scratch_reserve(%zu) belongs in backend creation)",
                           op, need, impl->scratch_bytes, (size_t)CUDA_NN_SCRATCH_BYTES);
        return NULL;
    }
    return (double *)impl->scratch;
}

/* Blocks for an elementwise pass over rows of a column tile grid: enough to
 * fill the device, the rest is grid-stride. */
static unsigned nn_row_blocks(int64_t m, int ry, int tiles)
{
    int64_t b = (m + ry - 1) / ry, cap = 8192 / tiles;
    if (cap < 1)
        cap = 1;
    if (b > cap)
        b = cap;
    if (b > 65535)
        b = 65535;
    return (unsigned)(b < 1 ? 1 : b);
}

/* Uncontracted float and double arithmetic (see the file comment). */
static __device__ __forceinline__ float f_add(float a, float b) { return __fadd_rn(a, b); }
static __device__ __forceinline__ float f_sub(float a, float b) { return __fsub_rn(a, b); }
static __device__ __forceinline__ float f_mul(float a, float b) { return __fmul_rn(a, b); }
static __device__ __forceinline__ float f_div(float a, float b) { return __fdiv_rn(a, b); }
static __device__ __forceinline__ double d_add(double a, double b) { return __dadd_rn(a, b); }
static __device__ __forceinline__ double d_sub(double a, double b) { return __dsub_rn(a, b); }
static __device__ __forceinline__ double d_mul(double a, double b) { return __dmul_rn(a, b); }
static __device__ __forceinline__ double d_div(double a, double b) { return __ddiv_rn(a, b); }

/* Fixed tree over the ry row lanes of a block's shared array [ry][tw]; lane 0
 * ends with the column's sum. Every thread of the block must call it. */
static __device__ void lane_tree(double *sh, int tw, int ry, int tx, int ty)
{
    for (int step = ry / 2; step > 0; step /= 2) {
        __syncthreads();
        if (ty < step)
            sh[ty * tw + tx] += sh[(ty + step) * tw + tx];
    }
    __syncthreads();
}

/* Fixed tree over a block's NN_THREADS doubles; sh[0] ends with the sum. */
static __device__ void block_tree(double *sh, int t)
{
    for (int step = NN_THREADS / 2; step > 0; step /= 2) {
        __syncthreads();
        if (t < step)
            sh[t] += sh[t + step];
    }
    __syncthreads();
}

/* ---- batch norm: column reductions ---- */

/* Pass 1: per split and column, in double,
 *   stats (dy == NULL): sum (x - k) and sum (x - k)^2 with k = x's first row
 *     (the CPU's shift, which keeps the one-pass variance free of cancellation);
 *   grad: sum dy and sum dy (x - k) with k = save_mean.
 * The differences are float, as on the CPU; products and sums are double.
 * part [2][splits][cs]. */
static __global__ void __launch_bounds__(NN_THREADS)
bn_partials_kernel(double *part, const float *dy, const float *x, const float *k, int64_t m, int ld, int cs,
                   nn_split sp)
{
    __shared__ double sh1[NN_THREADS], sh2[NN_THREADS];
    int tx = (int)threadIdx.x % sp.tw, ty = (int)threadIdx.x / sp.tw;
    int j = (int)blockIdx.x * sp.tw + tx;
    int s = (int)blockIdx.y;
    double a1 = 0.0, a2 = 0.0;
    if (j < cs) {
        float kj = k[j];
        int64_t r0 = (int64_t)s * sp.rows, r1 = r0 + sp.rows < m ? r0 + sp.rows : m;
        if (dy) {
            for (int64_t r = r0 + ty; r < r1; r += sp.ry) {
                float g = dy[r * ld + j];
                float d = f_sub(x[r * ld + j], kj);
                a1 += (double)g;
                a2 += (double)g * (double)d;
            }
        } else {
            for (int64_t r = r0 + ty; r < r1; r += sp.ry) {
                float d = f_sub(x[r * ld + j], kj);
                a1 += (double)d;
                a2 += (double)d * (double)d;
            }
        }
    }
    sh1[threadIdx.x] = a1;
    sh2[threadIdx.x] = a2;
    lane_tree(sh1, sp.tw, sp.ry, tx, ty);
    lane_tree(sh2, sp.tw, sp.ry, tx, ty);
    if (ty == 0 && j < cs) {
        part[(int64_t)s * cs + j] = sh1[tx];
        part[((int64_t)sp.splits + s) * cs + j] = sh2[tx];
    }
}

/* Pass 2 up to the tree: column j's two totals over the splits, summed in a
 * fixed order (lane ty takes splits ty, ty + ry, ...). Valid in lane 0. */
static __device__ void bn_partials_total(double *t1, double *t2, const double *part, int cs, nn_split sp)
{
    __shared__ double sh1[NN_THREADS], sh2[NN_THREADS];
    int tx = (int)threadIdx.x % sp.tw, ty = (int)threadIdx.x / sp.tw;
    int j = (int)blockIdx.x * sp.tw + tx;
    double a1 = 0.0, a2 = 0.0;
    if (j < cs)
        for (int s = ty; s < sp.splits; s += sp.ry) {
            a1 += part[(int64_t)s * cs + j];
            a2 += part[((int64_t)sp.splits + s) * cs + j];
        }
    sh1[threadIdx.x] = a1;
    sh2[threadIdx.x] = a2;
    lane_tree(sh1, sp.tw, sp.ry, tx, ty);
    lane_tree(sh2, sp.tw, sp.ry, tx, ty);
    *t1 = sh1[tx];
    *t2 = sh2[tx];
}

/* Pass 2 of the statistics: mean and biased variance (clamped at 0). */
static __global__ void __launch_bounds__(NN_THREADS)
bn_stats_final_kernel(double *mean, double *var, const double *part, const float *x, int64_t m, int cs,
                      nn_split sp)
{
    double d1, d2;
    bn_partials_total(&d1, &d2, part, cs, sp);
    int tx = (int)threadIdx.x % sp.tw, ty = (int)threadIdx.x / sp.tw;
    int j = (int)blockIdx.x * sp.tw + tx;
    if (ty != 0 || j >= cs)
        return;
    double mu_shift = d_div(d1, (double)m);
    double v = d_sub(d_div(d2, (double)m), d_mul(mu_shift, mu_shift));
    if (v < 0.0)
        v = 0.0;
    mean[j] = d_add((double)x[j], mu_shift);
    var[j] = v;
}

/* Pass 2 of backward: d1 = sum dy, d2 = sum dy (x - mean); dgamma/dbeta
 * accumulate this rank's share. */
static __global__ void __launch_bounds__(NN_THREADS)
bn_grad_final_kernel(double *d1, double *d2, float *dgamma, float *dbeta, const double *part,
                     const float *save_invstd, int cs, nn_split sp)
{
    double t1, t2;
    bn_partials_total(&t1, &t2, part, cs, sp);
    int tx = (int)threadIdx.x % sp.tw, ty = (int)threadIdx.x / sp.tw;
    int j = (int)blockIdx.x * sp.tw + tx;
    if (ty != 0 || j >= cs)
        return;
    d1[j] = t1;
    d2[j] = t2;
    if (dgamma)
        dgamma[j] = f_add(dgamma[j], (float)d_mul(t2, (double)save_invstd[j]));
    if (dbeta)
        dbeta[j] = f_add(dbeta[j], (float)t1);
}

/* Launches both passes of one slab: statistics (dy == NULL) into mean/var, or
 * gradient sums into d1/d2 (mean/var) with dgamma/dbeta updated. */
static void bn_reduce_slab(hallu_backend *be, double *part, double *o1, double *o2, float *dgamma, float *dbeta,
                           const float *dy, const float *x, const float *k, const float *save_invstd, int64_t m,
                           int ld, int cs, const char *op)
{
    cudaStream_t st = cuda_impl_of(be)->stream;
    nn_split sp = nn_split_of(m, cs);
    bn_partials_kernel<<<dim3((unsigned)sp.tiles, (unsigned)sp.splits), NN_THREADS, 0, st>>>(part, dy, x, k, m,
                                                                                             ld, cs, sp);
    cuda_check_launch(be, op);
    if (dy)
        bn_grad_final_kernel<<<(unsigned)sp.tiles, NN_THREADS, 0, st>>>(o1, o2, dgamma, dbeta, part, save_invstd,
                                                                         cs, sp);
    else
        bn_stats_final_kernel<<<(unsigned)sp.tiles, NN_THREADS, 0, st>>>(o1, o2, part, x, m, cs, sp);
    cuda_check_launch(be, op);
}

/* Doubles of scratch a slab reduction needs (partials only). */
static size_t bn_partial_doubles(int64_t m, int cs)
{
    nn_split sp = nn_split_of(m, cs);
    return (size_t)2 * (size_t)sp.splits * (size_t)cs;
}

/* ---- batch norm: per-column affine passes ---- */

/* Per-column affine of the forward: y = (x - mean) * scale + shift with the
 * CPU's float mean/scale/shift; mean and var are double (batch statistics) or
 * NULL, then the float running stats are used (eval). save_* (may be NULL)
 * take the float mean/invstd, once per column. */
static __global__ void __launch_bounds__(NN_THREADS)
bn_affine_kernel(float *y, float *save_mean, float *save_invstd, const float *x, const double *mean,
                 const double *var, const float *run_mean, const float *run_var, const float *gamma,
                 const float *beta, int64_t m, int ld, int cs, int tw, float eps)
{
    int ry = NN_THREADS / tw;
    int tx = (int)threadIdx.x % tw, ty = (int)threadIdx.x / tw;
    int j = (int)blockIdx.x * tw + tx;
    if (j >= cs)
        return;
    double mu = mean ? mean[j] : (double)run_mean[j];
    double v = var ? var[j] : (double)run_var[j];
    double invstd = d_div(1.0, sqrt(d_add(v, (double)eps)));
    float mf = (float)mu;
    float scale = (float)d_mul(invstd, gamma ? (double)gamma[j] : 1.0);
    float shift = beta ? beta[j] : 0.0f;
    if (save_mean && blockIdx.y == 0 && ty == 0) {
        save_mean[j] = mf;
        save_invstd[j] = (float)invstd;
    }
    for (int64_t r = (int64_t)blockIdx.y * ry + ty; r < m; r += (int64_t)gridDim.y * ry)
        y[r * ld + j] = f_add(f_mul(f_sub(x[r * ld + j], mf), scale), shift);
}

/* dx = a dy - b (x - mean) - cst from the sums over m_total rows (d1, d2). */
static __global__ void __launch_bounds__(NN_THREADS)
bn_dx_kernel(float *dx, const float *dy, const float *x, const float *save_mean, const float *save_invstd,
             const float *gamma, const double *d1, const double *d2, int64_t m, int64_t m_total, int ld, int cs,
             int tw)
{
    int ry = NN_THREADS / tw;
    int tx = (int)threadIdx.x % tw, ty = (int)threadIdx.x / tw;
    int j = (int)blockIdx.x * tw + tx;
    if (j >= cs)
        return;
    double invstd = (double)save_invstd[j];
    double kk = d_mul(invstd, gamma ? (double)gamma[j] : 1.0);
    float a = (float)kk;
    float b = (float)d_div(d_mul(d_mul(d_mul(kk, invstd), invstd), d2[j]), (double)m_total);
    float cst = (float)d_div(d_mul(kk, d1[j]), (double)m_total);
    float mf = save_mean[j];
    for (int64_t r = (int64_t)blockIdx.y * ry + ty; r < m; r += (int64_t)gridDim.y * ry) {
        int64_t i = r * ld + j;
        dx[i] = f_sub(f_sub(f_mul(a, dy[i]), f_mul(b, f_sub(x[i], mf))), cst);
    }
}

static void bn_affine_slab(hallu_backend *be, float *y, float *save_mean, float *save_invstd, const float *x,
                           const double *mean, const double *var, const float *run_mean, const float *run_var,
                           const float *gamma, const float *beta, int64_t m, int ld, int cs, float eps,
                           const char *op)
{
    int tw = nn_tile_width(cs), tiles = (cs + tw - 1) / tw;
    dim3 grid((unsigned)tiles, nn_row_blocks(m, NN_THREADS / tw, tiles));
    bn_affine_kernel<<<grid, NN_THREADS, 0, cuda_impl_of(be)->stream>>>(
        y, save_mean, save_invstd, x, mean, var, run_mean, run_var, gamma, beta, m, ld, cs, tw, eps);
    cuda_check_launch(be, op);
}

static void bn_dx_slab(hallu_backend *be, float *dx, const float *dy, const float *x, const float *save_mean,
                       const float *save_invstd, const float *gamma, const double *d1, const double *d2, int64_t m,
                       int64_t m_total, int ld, int cs, const char *op)
{
    int tw = nn_tile_width(cs), tiles = (cs + tw - 1) / tw;
    dim3 grid((unsigned)tiles, nn_row_blocks(m, NN_THREADS / tw, tiles));
    bn_dx_kernel<<<grid, NN_THREADS, 0, cuda_impl_of(be)->stream>>>(dx, dy, x, save_mean, save_invstd, gamma, d1,
                                                                     d2, m, m_total, ld, cs, tw);
    cuda_check_launch(be, op);
}

/* ---- batch norm: per-column scalar kernels ---- */

/* Running statistics move by momentum towards the batch mean and the
 * UNBIASED batch variance, in double as the CPU. */
static __global__ void bn_running_kernel(float *running_mean, float *running_var, const double *mean,
                                         const double *var, int64_t m, int c, float momentum)
{
    int j = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    if (j >= c)
        return;
    double mom = (double)momentum, keep = d_sub(1.0, mom);
    if (running_mean)
        running_mean[j] = (float)d_add(d_mul(keep, (double)running_mean[j]), d_mul(mom, mean[j]));
    if (running_var) {
        double unbiased = m > 1 ? d_div(d_mul(var[j], (double)m), (double)(m - 1)) : var[j];
        running_var[j] = (float)d_add(d_mul(keep, (double)running_var[j]), d_mul(mom, unbiased));
    }
}

static __global__ void bn_running_grouped_kernel(float *running_mean, float *running_var, const float *save_mean,
                                                 const float *save_invstd, int groups, int64_t rows_per, int c,
                                                 float momentum, float eps)
{
    int j = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    if (j >= c)
        return;
    double mean = 0.0, var = 0.0;
    for (int g = 0; g < groups; g++) {
        double mu = save_mean[(int64_t)g * c + j], is = save_invstd[(int64_t)g * c + j];
        double biased = d_sub(d_div(1.0, d_mul(is, is)), (double)eps);
        mean = d_add(mean, mu);
        var = d_add(var, rows_per > 1 ? d_div(d_mul(biased, (double)rows_per), (double)(rows_per - 1)) : biased);
    }
    double mom = (double)momentum, keep = d_sub(1.0, mom);
    running_mean[j] = (float)d_add(d_mul(keep, (double)running_mean[j]), d_div(d_mul(mom, mean), (double)groups));
    running_var[j] = (float)d_add(d_mul(keep, (double)running_var[j]), d_div(d_mul(mom, var), (double)groups));
}

static __global__ void bn_to_moments_kernel(double *mean, double *var, int c)
{
    int j = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    if (j < c)
        var[j] = d_add(var[j], d_mul(mean[j], mean[j]));
}

static __global__ void bn_to_stats_kernel(double *mean, double *var, int c, double inv_count)
{
    int j = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    if (j >= c)
        return;
    double mu = d_mul(mean[j], inv_count), ex2 = d_mul(var[j], inv_count), v = d_sub(ex2, d_mul(mu, mu));
    mean[j] = mu;
    var[j] = v > 0.0 ? v : 0.0;
}

static unsigned per_column_blocks(int c) { return (unsigned)((c + NN_THREADS - 1) / NN_THREADS); }

/* ---- batch norm: the ops ---- */

static int slab_width(int c, int c0) { return c - c0 < NN_SLAB ? c - c0 : NN_SLAB; }

void cuda_batchnorm_stats(hallu_backend *be, double *mean, double *var, const float *x, int64_t m, int c)
{
    if (!cuda_enter(be))
        return;
    if (m <= 0 || c <= 0)
        return;
    for (int c0 = 0; c0 < c; c0 += NN_SLAB) {
        int cs = slab_width(c, c0);
        double *part = nn_scratch(be, bn_partial_doubles(m, cs), "batchnorm_stats");
        if (!part)
            return;
        bn_reduce_slab(be, part, mean + c0, var + c0, NULL, NULL, NULL, x + c0, x + c0, NULL, m, c, cs,
                       "batchnorm_stats");
    }
}

void cuda_batchnorm_normalize(hallu_backend *be, float *y, float *save_mean, float *save_invstd, const float *x,
                              const double *mean, const double *var, const float *gamma, const float *beta,
                              int64_t m, int c, float eps)
{
    if (!cuda_enter(be))
        return;
    if (m <= 0 || c <= 0)
        return;
    for (int c0 = 0; c0 < c; c0 += NN_SLAB) {
        int cs = slab_width(c, c0);
        bn_affine_slab(be, y + c0, save_mean + c0, save_invstd + c0, x + c0, mean + c0, var + c0, NULL, NULL,
                       gamma ? gamma + c0 : NULL, beta ? beta + c0 : NULL, m, c, cs, eps, "batchnorm_normalize");
    }
}

void cuda_batchnorm_update_running(hallu_backend *be, float *running_mean, float *running_var, const double *mean,
                                   const double *var, int64_t m, int c, float momentum)
{
    if (!cuda_enter(be))
        return;
    if (m <= 0 || c <= 0 || (!running_mean && !running_var))
        return;
    bn_running_kernel<<<per_column_blocks(c), NN_THREADS, 0, cuda_impl_of(be)->stream>>>(
        running_mean, running_var, mean, var, m, c, momentum);
    cuda_check_launch(be, "batchnorm_update_running");
}

/* stats, update_running and normalize per slab, as the CPU, with the slab's
 * double statistics in scratch behind the partials: the same kernels as the
 * split ops, hence the same bits. */
void cuda_batchnorm_forward_train(hallu_backend *be, float *y, float *save_mean, float *save_invstd,
                                  float *running_mean, float *running_var, const float *x, const float *gamma,
                                  const float *beta, int64_t m, int c, float momentum, float eps)
{
    if (!cuda_enter(be))
        return;
    if (m <= 0 || c <= 0)
        return;
    const char *op = "batchnorm_forward_train";
    for (int c0 = 0; c0 < c; c0 += NN_SLAB) {
        int cs = slab_width(c, c0);
        size_t np = bn_partial_doubles(m, cs);
        double *part = nn_scratch(be, np + (size_t)2 * cs, op);
        if (!part)
            return;
        double *mu = part + np, *var = mu + cs;
        bn_reduce_slab(be, part, mu, var, NULL, NULL, NULL, x + c0, x + c0, NULL, m, c, cs, op);
        if (running_mean || running_var) {
            bn_running_kernel<<<per_column_blocks(cs), NN_THREADS, 0, cuda_impl_of(be)->stream>>>(
                running_mean ? running_mean + c0 : NULL, running_var ? running_var + c0 : NULL, mu, var, m, cs,
                momentum);
            cuda_check_launch(be, op);
        }
        bn_affine_slab(be, y + c0, save_mean + c0, save_invstd + c0, x + c0, mu, var, NULL, NULL,
                       gamma ? gamma + c0 : NULL, beta ? beta + c0 : NULL, m, c, cs, eps, op);
    }
}

void cuda_batchnorm_forward_eval(hallu_backend *be, float *y, const float *x, const float *running_mean,
                                 const float *running_var, const float *gamma, const float *beta, int64_t m, int c,
                                 float eps)
{
    if (!cuda_enter(be))
        return;
    if (m <= 0 || c <= 0)
        return;
    for (int c0 = 0; c0 < c; c0 += NN_SLAB) {
        int cs = slab_width(c, c0);
        bn_affine_slab(be, y + c0, NULL, NULL, x + c0, NULL, NULL, running_mean + c0, running_var + c0,
                       gamma ? gamma + c0 : NULL, beta ? beta + c0 : NULL, m, c, cs, eps, "batchnorm_forward_eval");
    }
}

void cuda_batchnorm_backward_reduce(hallu_backend *be, double *sums, float *dgamma, float *dbeta, const float *dy,
                                    const float *x, const float *save_mean, const float *save_invstd, int64_t m,
                                    int c)
{
    if (!cuda_enter(be))
        return;
    if (m <= 0 || c <= 0)
        return;
    const char *op = "batchnorm_backward_reduce";
    for (int c0 = 0; c0 < c; c0 += NN_SLAB) {
        int cs = slab_width(c, c0);
        double *part = nn_scratch(be, bn_partial_doubles(m, cs), op);
        if (!part)
            return;
        bn_reduce_slab(be, part, sums + c0, sums + c + c0, dgamma ? dgamma + c0 : NULL, dbeta ? dbeta + c0 : NULL,
                       dy + c0, x + c0, save_mean + c0, save_invstd + c0, m, c, cs, op);
    }
}

void cuda_batchnorm_backward_apply(hallu_backend *be, float *dx, const float *dy, const float *x,
                                   const float *save_mean, const float *save_invstd, const float *gamma,
                                   const double *sums, int64_t m, int64_t m_total, int c)
{
    if (!cuda_enter(be))
        return;
    if (m <= 0 || m_total <= 0 || c <= 0 || !dx)
        return;
    for (int c0 = 0; c0 < c; c0 += NN_SLAB) {
        int cs = slab_width(c, c0);
        bn_dx_slab(be, dx + c0, dy + c0, x + c0, save_mean + c0, save_invstd + c0, gamma ? gamma + c0 : NULL,
                   sums + c0, sums + c + c0, m, m_total, c, cs, "batchnorm_backward_apply");
    }
}

/* reduce + apply over one rank's rows, per slab, with the sums in scratch
 * behind the partials. The reduction reads dy completely before the apply
 * kernel (later on the stream) overwrites it, so dx may be dy. */
void cuda_batchnorm_backward(hallu_backend *be, float *dx, float *dgamma, float *dbeta, const float *dy,
                             const float *x, const float *save_mean, const float *save_invstd, const float *gamma,
                             int64_t m, int c)
{
    if (!cuda_enter(be))
        return;
    if (m <= 0 || c <= 0)
        return;
    const char *op = "batchnorm_backward";
    for (int c0 = 0; c0 < c; c0 += NN_SLAB) {
        int cs = slab_width(c, c0);
        size_t np = bn_partial_doubles(m, cs);
        double *part = nn_scratch(be, np + (size_t)2 * cs, op);
        if (!part)
            return;
        double *d1 = part + np, *d2 = d1 + cs;
        bn_reduce_slab(be, part, d1, d2, dgamma ? dgamma + c0 : NULL, dbeta ? dbeta + c0 : NULL, dy + c0, x + c0,
                       save_mean + c0, save_invstd + c0, m, c, cs, op);
        if (dx)
            bn_dx_slab(be, dx + c0, dy + c0, x + c0, save_mean + c0, save_invstd + c0, gamma ? gamma + c0 : NULL,
                       d1, d2, m, m, c, cs, op);
    }
}

void cuda_batchnorm_update_running_grouped(hallu_backend *be, float *running_mean, float *running_var,
                                           const float *save_mean, const float *save_invstd, int groups,
                                           int64_t rows_per, int c, float momentum, float eps)
{
    if (!cuda_enter(be))
        return;
    if (c <= 0)
        return;
    bn_running_grouped_kernel<<<per_column_blocks(c), NN_THREADS, 0, cuda_impl_of(be)->stream>>>(
        running_mean, running_var, save_mean, save_invstd, groups, rows_per, c, momentum, eps);
    cuda_check_launch(be, "batchnorm_update_running_grouped");
}

void cuda_batchnorm_stats_to_moments(hallu_backend *be, double *mean, double *var, int c)
{
    if (!cuda_enter(be))
        return;
    if (c <= 0)
        return;
    bn_to_moments_kernel<<<per_column_blocks(c), NN_THREADS, 0, cuda_impl_of(be)->stream>>>(mean, var, c);
    cuda_check_launch(be, "batchnorm_stats_to_moments");
}

void cuda_batchnorm_moments_to_stats(hallu_backend *be, double *mean, double *var, int c, double inv_count)
{
    if (!cuda_enter(be))
        return;
    if (c <= 0)
        return;
    bn_to_stats_kernel<<<per_column_blocks(c), NN_THREADS, 0, cuda_impl_of(be)->stream>>>(mean, var, c,
                                                                                          inv_count);
    cuda_check_launch(be, "batchnorm_moments_to_stats");
}

/* ---- elementwise ---- */

/* Launches an elementwise kernel on the backend's stream, enough blocks for n
 * elements, and checks the launch under the op's name; nothing after an
 * earlier failure or for n <= 0. */
#define ELEMENTWISE(be, what, n, kernel, ...) do { \
    if (cuda_enter(be) && (n) > 0) { \
        kernel<<<cuda_blocks(n), CUDA_THREADS, 0, cuda_impl_of(be)->stream>>>(__VA_ARGS__); \
        cuda_check_launch(be, what); \
    } } while (0)

#define GRID_STRIDE(i, n) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

static __global__ void fill_kernel(float *y, float value, int64_t n)
{
    GRID_STRIDE(i, n) y[i] = value;
}

/* x < 0 ? 0 : x keeps NaN as NaN, like torch.relu and the CPU. */
static __global__ void relu_kernel(float *y, const float *x, int64_t n)
{
    GRID_STRIDE(i, n)
    {
        float v = x[i];
        y[i] = v < 0.0f ? 0.0f : v;
    }
}

static __global__ void relu_grad_kernel(float *dx, const float *dy, const float *y, int64_t n)
{
    GRID_STRIDE(i, n) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

static __global__ void add_kernel(float *y, const float *a, const float *b, int64_t n)
{
    GRID_STRIDE(i, n) y[i] = f_add(a[i], b[i]);
}

static __global__ void axpy_kernel(float *y, float alpha, const float *x, int64_t n)
{
    GRID_STRIDE(i, n) y[i] = f_add(y[i], f_mul(alpha, x[i]));
}

static __global__ void scale_kernel(float *y, float alpha, const float *x, int64_t n)
{
    GRID_STRIDE(i, n) y[i] = f_mul(alpha, x[i]);
}

static __global__ void add_scalar_kernel(float *y, float value, int64_t n)
{
    GRID_STRIDE(i, n) y[i] = f_add(y[i], value);
}

/* The loader's normalisation of 8-bit RGB (hallu_u8_normalize_table's
 * formula, element by element): ((float)v / 255 - mean[c]) / std[c] with each
 * operation rounded to nearest, so the CPU's bits. mean/std travel by value. */
typedef struct u8_norm_params {
    float mean[3], std[3];
} u8_norm_params;

static __global__ void normalize_u8_kernel(float *y, const uint8_t *x, int64_t n, u8_norm_params q)
{
    GRID_STRIDE(i, n)
    {
        int c = (int)(i % 3);
        /* Selects, not q.mean[c]: a dynamic index into a parameter would go
         * through local memory. */
        float m = c == 0 ? q.mean[0] : c == 1 ? q.mean[1] : q.mean[2];
        float s = c == 0 ? q.std[0] : c == 1 ? q.std[1] : q.std[2];
        y[i] = f_div(f_sub(f_div((float)x[i], 255.0f), m), s);
    }
}

void cuda_fill(hallu_backend *be, float *y, float value, int64_t n)
{
    ELEMENTWISE(be, "fill", n, fill_kernel, y, value, n);
}

void cuda_relu_forward(hallu_backend *be, float *y, const float *x, int64_t n)
{
    ELEMENTWISE(be, "relu_forward", n, relu_kernel, y, x, n);
}

void cuda_relu_backward(hallu_backend *be, float *dx, const float *dy, const float *y, int64_t n)
{
    ELEMENTWISE(be, "relu_backward", n, relu_grad_kernel, dx, dy, y, n);
}

void cuda_add(hallu_backend *be, float *y, const float *a, const float *b, int64_t n)
{
    ELEMENTWISE(be, "add", n, add_kernel, y, a, b, n);
}

void cuda_axpy(hallu_backend *be, float *y, float alpha, const float *x, int64_t n)
{
    ELEMENTWISE(be, "axpy", n, axpy_kernel, y, alpha, x, n);
}

void cuda_scale(hallu_backend *be, float *y, float alpha, const float *x, int64_t n)
{
    ELEMENTWISE(be, "scale", n, scale_kernel, y, alpha, x, n);
}

void cuda_add_scalar(hallu_backend *be, float *y, float value, int64_t n)
{
    ELEMENTWISE(be, "add_scalar", n, add_scalar_kernel, y, value, n);
}

void cuda_normalize_u8(hallu_backend *be, float *y, const uint8_t *x, int64_t pixels, const float *mean,
                       const float *std)
{
    if (!cuda_enter(be))
        return;
    if (pixels <= 0)
        return;
    if (pixels > INT64_MAX / 3) {
        hallu_backend_fail(be, HALLU_ERR_INVALID_ARG, "normalize_u8: %lld pixels overflow the element count",
                           (long long)pixels);
        return;
    }
    int64_t n = pixels * 3;
    u8_norm_params q;
    for (int c = 0; c < 3; c++) {
        q.mean[c] = mean[c];
        q.std[c] = std[c];
    }
    normalize_u8_kernel<<<cuda_blocks(n), CUDA_THREADS, 0, cuda_impl_of(be)->stream>>>(y, x, n, q);
    cuda_check_launch(be, "normalize_u8");
}

/* ---- pooling ---- */

/* One thread per output element: the window is scanned row by row; strict
 * '>' keeps the first maximum, NaN wins (the last NaN, as the CPU's scan),
 * padding never takes part. */
static __global__ void maxpool_kernel(float *y, int32_t *argmax, const float *x, hallu_pool2d_geom g)
{
    int64_t total = (int64_t)g.n * g.oh * g.ow * g.c;
    GRID_STRIDE(i, total)
    {
        int j = (int)(i % g.c);
        int64_t pix = i / g.c;
        int ox = (int)(pix % g.ow);
        int64_t t = pix / g.ow;
        int oy = (int)(t % g.oh);
        int64_t img = t / g.oh;
        int h0 = oy * g.stride - g.pad, w0 = ox * g.stride - g.pad;
        int h1 = h0 + g.k < g.h ? h0 + g.k : g.h, w1 = w0 + g.k < g.w ? w0 + g.k : g.w;
        h0 = h0 < 0 ? 0 : h0;
        w0 = w0 < 0 ? 0 : w0;
        const float *xi = x + img * g.h * g.w * g.c + j;
        float best = -INFINITY;
        int32_t arg = h0 * g.w + w0;
        for (int ih = h0; ih < h1; ih++)
            for (int iw = w0; iw < w1; iw++) {
                int32_t idx = ih * g.w + iw;
                float v = xi[(int64_t)idx * g.c];
                if (v > best || v != v) {
                    best = v;
                    arg = idx;
                }
            }
        y[i] = best;
        argmax[i] = arg;
    }
}

/* A gather, so no two threads write one input: each input element visits the
 * windows that contain it in output order (oy, then ox, ascending), which is
 * the order in which the CPU's scatter adds them, so the sums keep the CPU's
 * bits. Since 2 pad <= k, every window holds its argmax, so no other output
 * can point at this input. */
static __global__ void maxpool_grad_kernel(float *dx, const float *dy, const int32_t *argmax, hallu_pool2d_geom g)
{
    int64_t total = (int64_t)g.n * g.h * g.w * g.c;
    GRID_STRIDE(i, total)
    {
        int j = (int)(i % g.c);
        int64_t pix = i / g.c;
        int iw = (int)(pix % g.w);
        int64_t t = pix / g.w;
        int ih = (int)(t % g.h);
        int64_t img = t / g.h;
        int32_t idx = ih * g.w + iw;
        /* Output oy covers rows [oy s - pad, oy s - pad + k). */
        int ny = ih + g.pad - g.k + 1, nx = iw + g.pad - g.k + 1;
        int oy0 = ny <= 0 ? 0 : (ny + g.stride - 1) / g.stride;
        int ox0 = nx <= 0 ? 0 : (nx + g.stride - 1) / g.stride;
        int oy1 = (ih + g.pad) / g.stride, ox1 = (iw + g.pad) / g.stride;
        oy1 = oy1 < g.oh - 1 ? oy1 : g.oh - 1;
        ox1 = ox1 < g.ow - 1 ? ox1 : g.ow - 1;
        int64_t base = img * g.oh * g.ow * g.c + j;
        float acc = 0.0f;
        for (int oy = oy0; oy <= oy1; oy++)
            for (int ox = ox0; ox <= ox1; ox++) {
                int64_t o = base + ((int64_t)oy * g.ow + ox) * g.c;
                if (argmax[o] == idx)
                    acc = f_add(acc, dy[o]);
            }
        dx[i] = acc;
    }
}

void cuda_maxpool2d_forward(hallu_backend *be, float *y, int32_t *argmax, const float *x,
                            const hallu_pool2d_geom *g)
{
    if (!cuda_enter(be))
        return;
    int64_t total = (int64_t)g->n * g->oh * g->ow * g->c;
    if (total <= 0)
        return;
    maxpool_kernel<<<cuda_blocks(total), CUDA_THREADS, 0, cuda_impl_of(be)->stream>>>(y, argmax, x, *g);
    cuda_check_launch(be, "maxpool2d_forward");
}

void cuda_maxpool2d_backward(hallu_backend *be, float *dx, const float *dy, const int32_t *argmax,
                             const hallu_pool2d_geom *g)
{
    if (!cuda_enter(be))
        return;
    int64_t total = (int64_t)g->n * g->h * g->w * g->c;
    if (total <= 0)
        return;
    maxpool_grad_kernel<<<cuda_blocks(total), CUDA_THREADS, 0, cuda_impl_of(be)->stream>>>(dx, dy, argmax, *g);
    cuda_check_launch(be, "maxpool2d_backward");
}

/* One thread per (image, channel), summing the hw pixels in order in float
 * and dividing at the end, as the CPU (hence its bits). */
static __global__ void avgpool_kernel(float *y, const float *x, int n, int hw, int c)
{
    int64_t total = (int64_t)n * c;
    GRID_STRIDE(i, total)
    {
        int64_t img = i / c;
        int j = (int)(i % c);
        const float *xi = x + img * hw * c + j;
        float acc = 0.0f;
        for (int p = 0; p < hw; p++)
            acc = f_add(acc, xi[(int64_t)p * c]);
        y[i] = f_div(acc, (float)hw);
    }
}

static __global__ void avgpool_grad_kernel(float *dx, const float *dy, int hw, int c, int64_t total)
{
    float div = (float)hw;
    GRID_STRIDE(i, total)
    {
        int j = (int)(i % c);
        int64_t img = i / ((int64_t)hw * c);
        dx[i] = f_div(dy[img * c + j], div);
    }
}

void cuda_global_avgpool_forward(hallu_backend *be, float *y, const float *x, int n, int hw, int c)
{
    if (!cuda_enter(be))
        return;
    int64_t total = (int64_t)n * c;
    if (total <= 0 || hw < 0)
        return;
    avgpool_kernel<<<cuda_blocks(total), CUDA_THREADS, 0, cuda_impl_of(be)->stream>>>(y, x, n, hw, c);
    cuda_check_launch(be, "global_avgpool_forward");
}

void cuda_global_avgpool_backward(hallu_backend *be, float *dx, const float *dy, int n, int hw, int c)
{
    if (!cuda_enter(be))
        return;
    int64_t total = (int64_t)n * hw * c;
    if (total <= 0)
        return;
    avgpool_grad_kernel<<<cuda_blocks(total), CUDA_THREADS, 0, cuda_impl_of(be)->stream>>>(dx, dy, hw, c, total);
    cuda_check_launch(be, "global_avgpool_backward");
}

/* ---- norms ---- */

/* Blocks of a flat norm reduction over n elements: a function of n only. */
static int norm_blocks(int64_t n)
{
    int64_t b = (n + NORM_MIN_ELEMS - 1) / NORM_MIN_ELEMS;
    if (b > NORM_MAX_BLOCKS)
        b = NORM_MAX_BLOCKS;
    return (int)(b < 1 ? 1 : b);
}

/* Pass 1: block b of gridDim.x sums the squares (in double) of its contiguous
 * share of vector blockIdx.y (x, or y for blockIdx.y == 1) into part[y][b]. */
static __global__ void __launch_bounds__(NN_THREADS)
sumsq_partials_kernel(double *part, const float *x, const float *y, int64_t n)
{
    __shared__ double sh[NN_THREADS];
    const float *v = blockIdx.y ? y : x;
    int64_t per = (n + gridDim.x - 1) / gridDim.x;
    int64_t lo = (int64_t)blockIdx.x * per, hi = lo + per < n ? lo + per : n;
    double acc = 0.0;
    for (int64_t i = lo + threadIdx.x; i < hi; i += NN_THREADS) {
        double d = (double)v[i];
        acc += d * d;
    }
    sh[threadIdx.x] = acc;
    block_tree(sh, (int)threadIdx.x);
    if (threadIdx.x == 0)
        part[(int64_t)blockIdx.y * gridDim.x + blockIdx.x] = sh[0];
}

/* Pass 2 in one block: the total of `blocks` partials, thread t taking
 * t, t + NN_THREADS, ... and then the fixed tree. Valid in every thread. */
static __device__ double partials_total(const double *part, int blocks)
{
    __shared__ double sh[NN_THREADS];
    double acc = 0.0;
    for (int b = (int)threadIdx.x; b < blocks; b += NN_THREADS)
        acc += part[b];
    sh[threadIdx.x] = acc;
    block_tree(sh, (int)threadIdx.x);
    double total = sh[0];
    __syncthreads();   /* sh is reused by the next call */
    return total;
}

static __global__ void __launch_bounds__(NN_THREADS) l2_final_kernel(float *norm, const double *part, int blocks)
{
    double total = partials_total(part, blocks);
    if (threadIdx.x == 0)
        *norm = (float)sqrt(total);
}

/* solo-learn's trust ratio, in float32 like its 0-dim tensors (the CPU's
 * formula step by step). */
static __global__ void __launch_bounds__(NN_THREADS)
lars_final_kernel(float *coef, const double *part, int blocks, float wd, float eps, float eta, int clip_lr, float lr)
{
    double tp = partials_total(part, blocks);
    double tg = partials_total(part + blocks, blocks);
    if (threadIdx.x != 0)
        return;
    float pn = (float)sqrt(tp), gn = (float)sqrt(tg);
    if (pn == 0.0f || gn == 0.0f) {
        coef[0] = 1.0f;
        coef[1] = 0.0f;
        return;
    }
    float r = f_div(pn, f_add(f_add(gn, f_mul(pn, wd)), eps));
    r = f_mul(r, eta);
    if (clip_lr) {
        r = f_div(r, lr);
        if (1.0f < r)
            r = 1.0f;
    }
    coef[0] = r;
    coef[1] = 1.0f;
}

void cuda_l2_norm(hallu_backend *be, float *norm, const float *x, int64_t n)
{
    if (!cuda_enter(be))
        return;
    if (n < 0)
        n = 0;
    int blocks = norm_blocks(n);
    double *part = nn_scratch(be, (size_t)blocks, "l2_norm");
    if (!part)
        return;
    cudaStream_t st = cuda_impl_of(be)->stream;
    sumsq_partials_kernel<<<dim3((unsigned)blocks, 1), NN_THREADS, 0, st>>>(part, x, x, n);
    cuda_check_launch(be, "l2_norm");
    l2_final_kernel<<<1, NN_THREADS, 0, st>>>(norm, part, blocks);
    cuda_check_launch(be, "l2_norm");
}

void cuda_lars_coef(hallu_backend *be, float *coef, const float *p, const float *g, int64_t n, float wd, float eps,
                    float eta, int clip_lr, float lr)
{
    if (!cuda_enter(be))
        return;
    if (n < 0)
        n = 0;
    int blocks = norm_blocks(n);
    double *part = nn_scratch(be, (size_t)2 * blocks, "lars_coef");
    if (!part)
        return;
    cudaStream_t st = cuda_impl_of(be)->stream;
    sumsq_partials_kernel<<<dim3((unsigned)blocks, 2), NN_THREADS, 0, st>>>(part, p, g, n);
    cuda_check_launch(be, "lars_coef");
    lars_final_kernel<<<1, NN_THREADS, 0, st>>>(coef, part, blocks, wd, eps, eta, clip_lr, lr);
    cuda_check_launch(be, "lars_coef");
}

/* ---- updates ---- */

/* Every thread reads the device total: the scaling is decided on the device,
 * the host never sees it. Python's max_norm / tensor is reciprocal * max_norm. */
static __global__ void clip_kernel(float *x, const float *total, int64_t n, float max_norm)
{
    float coef = f_mul(f_div(1.0f, f_add(*total, 1e-6f)), max_norm);
    if (!(coef < 1.0f))
        return;
    GRID_STRIDE(i, n) x[i] = f_mul(x[i], coef);
}

static __global__ void sgd_kernel(float *p, const float *g, float *buf, const float *lars, float wd, float momentum,
                                  float damp1, float neg_lr, int nesterov, int first, int64_t n)
{
    float scale = 1.0f;
    int scaled = 0;
    if (lars) {
        /* An unadapted range takes the raw gradient: no decay either (solo-learn). */
        scaled = lars[1] != 0.0f;
        scale = lars[0];
        if (!scaled)
            wd = 0.0f;
    }
    GRID_STRIDE(i, n)
    {
        float pi = p[i];
        float d = wd != 0.0f ? f_add(g[i], f_mul(wd, pi)) : g[i];
        if (scaled)
            d = f_mul(d, scale);
        if (buf) {
            float b = first ? d : f_add(f_mul(buf[i], momentum), f_mul(damp1, d));
            buf[i] = b;
            d = nesterov ? f_add(d, f_mul(momentum, b)) : b;
        }
        p[i] = f_add(pi, f_mul(neg_lr, d));
    }
}

static __global__ void adamw_kernel(float *p, const float *g, float *m, float *v, float decay, float beta1,
                                    float one_m_beta1, float beta2, float one_m_beta2, float bc2_sqrt, float eps,
                                    float neg_step, int64_t n)
{
    GRID_STRIDE(i, n)
    {
        float gi = g[i];
        float pi = f_mul(p[i], decay);
        float mi = f_add(f_mul(m[i], beta1), f_mul(one_m_beta1, gi));
        float vi = f_add(f_mul(v[i], beta2), f_mul(f_mul(one_m_beta2, gi), gi));
        float denom = f_add(f_div(__fsqrt_rn(vi), bc2_sqrt), eps);
        m[i] = mi;
        v[i] = vi;
        p[i] = f_add(pi, f_div(f_mul(neg_step, mi), denom));
    }
}

void cuda_clip_by_norm(hallu_backend *be, float *x, const float *total, int64_t n, float max_norm)
{
    ELEMENTWISE(be, "clip_by_norm", n, clip_kernel, x, total, n, max_norm);
}

void cuda_sgd_update(hallu_backend *be, float *p, const float *g, float *buf, const float *lars, float wd,
                     float momentum, float damp1, float neg_lr, int nesterov, int first, int64_t n)
{
    ELEMENTWISE(be, "sgd_update", n, sgd_kernel, p, g, buf, lars, wd, momentum, damp1, neg_lr, nesterov, first, n);
}

void cuda_adamw_update(hallu_backend *be, float *p, const float *g, float *m, float *v, float decay, float beta1,
                       float one_m_beta1, float beta2, float one_m_beta2, float bc2_sqrt, float eps,
                       float neg_step, int64_t n)
{
    ELEMENTWISE(be, "adamw_update", n, adamw_kernel,
                p, g, m, v, decay, beta1, one_m_beta1, beta2, one_m_beta2, bc2_sqrt, eps, neg_step, n);
}
