/* Batch normalisation over the rows of x [m][c] (NHWC activations flattened).
 * Per-channel sums are taken by each thread over its contiguous row range, in
 * float within blocks of BN_BLOCK rows and in double across blocks, then the
 * threads' partial sums are added in thread order: results are bit-identical run
 * to run for a fixed thread count. Wide inputs are processed in channel slabs of
 * CPU_SLAB so that all scratch is sized at backend creation. */
#include "backend/cpu/cpu_internal.h"

#include <math.h>
#include <omp.h>
#include <string.h>

enum { BN_BLOCK = 128, BN_GRAIN = 1 << 15 };

/* Per-thread slab sums: s1 += sum(x - k), s2 += sum((x - k)^2), rows [lo, hi). */
CPU_HOT static void stats_rows(double *restrict s1, double *restrict s2, float *restrict b1, float *restrict b2,
                               const float *restrict x, const float *restrict k, int64_t ld, int cs,
                               int64_t lo, int64_t hi)
{
    for (int j = 0; j < cs; j++)
        s1[j] = s2[j] = 0.0;
    for (int64_t r0 = lo; r0 < hi; r0 += BN_BLOCK) {
        int64_t r1 = r0 + BN_BLOCK < hi ? r0 + BN_BLOCK : hi;
        memset(b1, 0, (size_t)cs * sizeof *b1);
        memset(b2, 0, (size_t)cs * sizeof *b2);
        for (int64_t r = r0; r < r1; r++) {
            const float *xr = x + r * ld;
#pragma omp simd
            for (int j = 0; j < cs; j++) {
                float d = xr[j] - k[j];
                b1[j] += d;
                b2[j] += d * d;
            }
        }
        for (int j = 0; j < cs; j++) {
            s1[j] += b1[j];
            s2[j] += b2[j];
        }
    }
}

/* Per-thread slab sums for backward: s1 += sum(dy), s2 += sum(dy * (x - mean)). */
CPU_HOT static void grad_rows(double *restrict s1, double *restrict s2, float *restrict b1, float *restrict b2,
                              const float *restrict dy, const float *restrict x, const float *restrict mean,
                              int64_t ld, int cs, int64_t lo, int64_t hi)
{
    for (int j = 0; j < cs; j++)
        s1[j] = s2[j] = 0.0;
    for (int64_t r0 = lo; r0 < hi; r0 += BN_BLOCK) {
        int64_t r1 = r0 + BN_BLOCK < hi ? r0 + BN_BLOCK : hi;
        memset(b1, 0, (size_t)cs * sizeof *b1);
        memset(b2, 0, (size_t)cs * sizeof *b2);
        for (int64_t r = r0; r < r1; r++) {
            const float *xr = x + r * ld, *gr = dy + r * ld;
#pragma omp simd
            for (int j = 0; j < cs; j++) {
                b1[j] += gr[j];
                b2[j] += gr[j] * (xr[j] - mean[j]);
            }
        }
        for (int j = 0; j < cs; j++) {
            s1[j] += b1[j];
            s2[j] += b2[j];
        }
    }
}

/* y = (x - mean) * scale + shift over rows [lo, hi) of one slab. */
CPU_HOT static void affine_rows(float *restrict y, const float *restrict x, const float *restrict mean,
                                const float *restrict scale, const float *restrict shift, int64_t ld, int cs,
                                int64_t lo, int64_t hi)
{
    for (int64_t r = lo; r < hi; r++) {
        const float *xr = x + r * ld;
        float *yr = y + r * ld;
#pragma omp simd
        for (int j = 0; j < cs; j++)
            yr[j] = (xr[j] - mean[j]) * scale[j] + shift[j];
    }
}

/* dx = a * dy - b * (x - mean) - cst over rows [lo, hi) of one slab. */
CPU_HOT static void dx_rows(float *dx, const float *dy, const float *restrict x, const float *restrict mean,
                            const float *restrict a, const float *restrict b, const float *restrict cst,
                            int64_t ld, int cs, int64_t lo, int64_t hi)
{
    for (int64_t r = lo; r < hi; r++) {
        const float *xr = x + r * ld, *gr = dy + r * ld;
        float *dr = dx + r * ld;
#pragma omp simd
        for (int j = 0; j < cs; j++)
            dr[j] = a[j] * gr[j] - b[j] * (xr[j] - mean[j]) - cst[j];
    }
}

/* dx_rows with dx rounded to bf16 (cpu_bf16_round) into dx16 instead. */
CPU_HOT static void dx_rows_x16(uint16_t *dx16, const float *dy, const float *restrict x, const float *restrict mean,
                                const float *restrict a, const float *restrict b, const float *restrict cst,
                                int64_t ld, int cs, int64_t lo, int64_t hi)
{
    for (int64_t r = lo; r < hi; r++) {
        const float *xr = x + r * ld, *gr = dy + r * ld;
        uint16_t *dr = dx16 + r * ld;
#pragma omp simd
        for (int j = 0; j < cs; j++)
            dr[j] = cpu_bf16_round(a[j] * gr[j] - b[j] * (xr[j] - mean[j]) - cst[j]);
    }
}

#ifdef CPU_HAVE_BF16_CVT
/* The same with AVX512-BF16's conversion (the integer rounding vectorises
 * poorly); the same products and differences, unfused (ISO C: no contraction). */
__attribute__((target("avx512f,avx512bf16,avx512vl")))
static void dx_rows_x16_cvt(uint16_t *dx16, const float *dy, const float *x, const float *mean, const float *a,
                            const float *b, const float *cst, int64_t ld, int cs, int64_t lo, int64_t hi)
{
    int vec = cs & ~15;
    for (int64_t r = lo; r < hi; r++) {
        const float *xr = x + r * ld, *gr = dy + r * ld;
        uint16_t *dr = dx16 + r * ld;
        for (int j = 0; j < vec; j += 16) {
            __m512 t = _mm512_mul_ps(_mm512_loadu_ps(a + j), _mm512_loadu_ps(gr + j));
            __m512 u = _mm512_mul_ps(_mm512_loadu_ps(b + j),
                                     _mm512_sub_ps(_mm512_loadu_ps(xr + j), _mm512_loadu_ps(mean + j)));
            __m512 v = _mm512_sub_ps(_mm512_sub_ps(t, u), _mm512_loadu_ps(cst + j));
            _mm256_storeu_si256((__m256i *)(dr + j), (__m256i)_mm512_cvtneps_pbh(v));
        }
        for (int j = vec; j < cs; j++)
            dr[j] = cpu_bf16_round(a[j] * gr[j] - b[j] * (xr[j] - mean[j]) - cst[j]);
    }
}
#endif

/* Sums (x - k) and (x - k)^2 (or dy and dy*(x - mean) when dy != NULL) of one
 * slab over all rows into d1/d2, in thread order. */
static void slab_sums(hallu_backend *be, double *d1, double *d2, const float *dy, const float *x,
                      const float *k, int64_t m, int64_t ld, int cs)
{
    cpu_impl *impl = cpu_impl_of(be);
    int nt = cpu_threads_for(be, m * cs, BN_GRAIN), used = 1;
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        int64_t lo, hi;
        cpu_split(m, T, t, &lo, &hi);
        double *s1 = cpu_red_d(impl, t, 0), *s2 = cpu_red_d(impl, t, 1);
        float *b1 = cpu_red_f(impl, t, 0), *b2 = cpu_red_f(impl, t, 1);
        if (dy)
            grad_rows(s1, s2, b1, b2, dy, x, k, ld, cs, lo, hi);
        else
            stats_rows(s1, s2, b1, b2, x, k, ld, cs, lo, hi);
        if (t == 0)
            used = T;
    }
    for (int j = 0; j < cs; j++)
        d1[j] = d2[j] = 0.0;
    for (int t = 0; t < used; t++) {
        const double *s1 = cpu_red_d(impl, t, 0), *s2 = cpu_red_d(impl, t, 1);
        for (int j = 0; j < cs; j++) {
            d1[j] += s1[j];
            d2[j] += s2[j];
        }
    }
}

/* Runs affine_rows (dy == NULL) or dx_rows over all rows of one slab; dx_rows
 * into out16 as bf16 instead when out16 != NULL. */
static void slab_apply(hallu_backend *be, float *out, uint16_t *out16, const float *dy, const float *x,
                       const float *mean, const float *c1, const float *c2, const float *c3, int64_t m, int64_t ld,
                       int cs)
{
    int nt = cpu_threads_for(be, m * cs, BN_GRAIN);
#ifdef CPU_HAVE_BF16_CVT
    int cvt = out16 && cpu_has_bf16_cvt();
#endif
#pragma omp parallel num_threads(nt)
    {
        int64_t lo, hi;
        cpu_split(m, omp_get_num_threads(), omp_get_thread_num(), &lo, &hi);
        if (dy && out16) {
#ifdef CPU_HAVE_BF16_CVT
            if (cvt)
                dx_rows_x16_cvt(out16, dy, x, mean, c1, c2, c3, ld, cs, lo, hi);
            else
#endif
                dx_rows_x16(out16, dy, x, mean, c1, c2, c3, ld, cs, lo, hi);
        } else if (dy) {
            dx_rows(out, dy, x, mean, c1, c2, c3, ld, cs, lo, hi);
        } else {
            affine_rows(out, x, mean, c1, c2, ld, cs, lo, hi);
        }
    }
}

/* Batch mean and biased variance (clamped at 0) of one slab, in double. */
static void slab_stats(hallu_backend *be, double *mu, double *var, const float *x, int64_t m, int64_t ld, int cs)
{
    cpu_impl *impl = cpu_impl_of(be);
    int shared = impl->num_threads;
    double *d1 = cpu_red_d(impl, shared, 0), *d2 = cpu_red_d(impl, shared, 1);
    /* Shifting by the first row keeps the one-pass variance free of cancellation. */
    slab_sums(be, d1, d2, NULL, x, x, m, ld, cs);
    for (int j = 0; j < cs; j++) {
        double mu_shift = d1[j] / (double)m;
        double v = d2[j] / (double)m - mu_shift * mu_shift;
        if (v < 0.0)
            v = 0.0;
        mu[j] = (double)x[j] + mu_shift;
        var[j] = v;
    }
}

/* y = (x - mean) * invstd * gamma + beta over one slab from the double batch
 * statistics; the float mean/invstd that backward needs are saved. */
static void slab_normalize(hallu_backend *be, float *y, float *save_mean, float *save_invstd, const float *x,
                           const double *mu, const double *var, const float *gamma, const float *beta, int64_t m,
                           int64_t ld, int cs, float eps)
{
    cpu_impl *impl = cpu_impl_of(be);
    int shared = impl->num_threads;
    float *mean = cpu_red_f(impl, shared, 0), *scale = cpu_red_f(impl, shared, 1);
    float *shift = cpu_red_f(impl, shared, 2);
    for (int j = 0; j < cs; j++) {
        double invstd = 1.0 / sqrt(var[j] + (double)eps);
        mean[j] = (float)mu[j];
        scale[j] = (float)(invstd * (gamma ? (double)gamma[j] : 1.0));
        shift[j] = beta ? beta[j] : 0.0f;
        save_mean[j] = (float)mu[j];
        save_invstd[j] = (float)invstd;
    }
    slab_apply(be, y, NULL, NULL, x, mean, scale, shift, NULL, m, ld, cs);
}

/* Running statistics move by momentum towards the batch mean and the UNBIASED
 * batch variance (as PyTorch); either pointer may be NULL. */
static void running_update(float *running_mean, float *running_var, const double *mu, const double *var, int64_t m,
                           int cs, float momentum)
{
    for (int j = 0; j < cs; j++) {
        if (running_mean)
            running_mean[j] = (float)((1.0 - momentum) * running_mean[j] + momentum * mu[j]);
        if (running_var) {
            double unbiased = m > 1 ? var[j] * (double)m / (double)(m - 1) : var[j];
            running_var[j] = (float)((1.0 - momentum) * running_var[j] + momentum * unbiased);
        }
    }
}

void cpu_batchnorm_forward_train(hallu_backend *be, float *y, float *save_mean, float *save_invstd,
                                 float *running_mean, float *running_var, const float *x,
                                 const float *gamma, const float *beta, int64_t m, int c,
                                 float momentum, float eps)
{
    if (m <= 0 || c <= 0)
        return;
    cpu_impl *impl = cpu_impl_of(be);
    int shared = impl->num_threads;
    double *mu = cpu_red_d(impl, shared, 2), *var = cpu_red_d(impl, shared, 3);
    for (int c0 = 0; c0 < c; c0 += CPU_SLAB) {
        int cs = c - c0 < CPU_SLAB ? c - c0 : CPU_SLAB;
        slab_stats(be, mu, var, x + c0, m, c, cs);
        running_update(running_mean ? running_mean + c0 : NULL, running_var ? running_var + c0 : NULL, mu, var, m,
                       cs, momentum);
        slab_normalize(be, y + c0, save_mean + c0, save_invstd + c0, x + c0, mu, var, gamma ? gamma + c0 : NULL,
                       beta ? beta + c0 : NULL, m, c, cs, eps);
    }
}

/* The fused training forward in three steps (same bits), so that the batch
 * statistics can be combined across processes between the first and second. */
void cpu_batchnorm_stats(hallu_backend *be, double *mean, double *var, const float *x, int64_t m, int c)
{
    if (m <= 0 || c <= 0)
        return;
    for (int c0 = 0; c0 < c; c0 += CPU_SLAB) {
        int cs = c - c0 < CPU_SLAB ? c - c0 : CPU_SLAB;
        slab_stats(be, mean + c0, var + c0, x + c0, m, c, cs);
    }
}

void cpu_batchnorm_normalize(hallu_backend *be, float *y, float *save_mean, float *save_invstd, const float *x,
                             const double *mean, const double *var, const float *gamma, const float *beta,
                             int64_t m, int c, float eps)
{
    if (m <= 0 || c <= 0)
        return;
    for (int c0 = 0; c0 < c; c0 += CPU_SLAB) {
        int cs = c - c0 < CPU_SLAB ? c - c0 : CPU_SLAB;
        slab_normalize(be, y + c0, save_mean + c0, save_invstd + c0, x + c0, mean + c0, var + c0,
                       gamma ? gamma + c0 : NULL, beta ? beta + c0 : NULL, m, c, cs, eps);
    }
}

void cpu_batchnorm_update_running(hallu_backend *be, float *running_mean, float *running_var, const double *mean,
                                  const double *var, int64_t m, int c, float momentum)
{
    (void)be;
    if (m <= 0 || c <= 0)
        return;
    running_update(running_mean, running_var, mean, var, m, c, momentum);
}

/* Each group's update starts from the same running statistics; the result is their
 * mean, computed from the groups' saved float statistics (group g at offset g * c). */
void cpu_batchnorm_update_running_grouped(hallu_backend *be, float *running_mean, float *running_var,
                                          const float *save_mean, const float *save_invstd, int groups,
                                          int64_t rows_per, int c, float momentum, float eps)
{
    (void)be;
    for (int j = 0; j < c; j++) {
        double mean = 0.0, var = 0.0;
        for (int g = 0; g < groups; g++) {
            double mu = save_mean[(size_t)g * c + j], is = save_invstd[(size_t)g * c + j];
            double biased = 1.0 / (is * is) - (double)eps;
            mean += mu;
            var += rows_per > 1 ? biased * (double)rows_per / (double)(rows_per - 1) : biased;
        }
        running_mean[j] = (float)((1.0 - momentum) * running_mean[j] + momentum * mean / groups);
        running_var[j] = (float)((1.0 - momentum) * running_var[j] + momentum * var / groups);
    }
}

/* Sync BN: a rank's [mean; biased var] become [mean; E[x^2]], which sum across
 * ranks of equal row counts; after the sum, back to [mean; var] of the union. */
void cpu_batchnorm_stats_to_moments(hallu_backend *be, double *mean, double *var, int c)
{
    (void)be;
    for (int j = 0; j < c; j++)
        var[j] += mean[j] * mean[j];
}

void cpu_batchnorm_moments_to_stats(hallu_backend *be, double *mean, double *var, int c, double inv_count)
{
    (void)be;
    for (int j = 0; j < c; j++) {
        double mu = mean[j] * inv_count, ex2 = var[j] * inv_count, v = ex2 - mu * mu;
        mean[j] = mu;
        var[j] = v > 0.0 ? v : 0.0;
    }
}

/* The fused backward in two steps around a sum across ranks: the reduce step
 * adds this rank's dgamma/dbeta (the gradient all-reduce averages them) and
 * leaves sums = [sum dy; sum dy (x - mean)] per channel; the apply step takes
 * the sums over all m_total rows. One rank: the same bits as the fused op. */
void cpu_batchnorm_backward_reduce(hallu_backend *be, double *sums, float *dgamma, float *dbeta, const float *dy,
                                   const float *x, const float *save_mean, const float *save_invstd, int64_t m,
                                   int c)
{
    if (m <= 0 || c <= 0)
        return;
    for (int c0 = 0; c0 < c; c0 += CPU_SLAB) {
        int cs = c - c0 < CPU_SLAB ? c - c0 : CPU_SLAB;
        double *d1 = sums + c0, *d2 = sums + c + c0;
        slab_sums(be, d1, d2, dy + c0, x + c0, save_mean + c0, m, c, cs);
        for (int j = 0; j < cs; j++) {
            if (dgamma)
                dgamma[c0 + j] += (float)(d2[j] * (double)save_invstd[c0 + j]);
            if (dbeta)
                dbeta[c0 + j] += (float)d1[j];
        }
    }
}

void cpu_batchnorm_backward_apply(hallu_backend *be, float *dx, const float *dy, const float *x,
                                  const float *save_mean, const float *save_invstd, const float *gamma,
                                  const double *sums, int64_t m, int64_t m_total, int c)
{
    if (m <= 0 || m_total <= 0 || c <= 0 || !dx)
        return;
    cpu_impl *impl = cpu_impl_of(be);
    int shared = impl->num_threads;
    float *a = cpu_red_f(impl, shared, 0), *b = cpu_red_f(impl, shared, 1), *cst = cpu_red_f(impl, shared, 2);
    for (int c0 = 0; c0 < c; c0 += CPU_SLAB) {
        int cs = c - c0 < CPU_SLAB ? c - c0 : CPU_SLAB;
        const double *d1 = sums + c0, *d2 = sums + c + c0;
        for (int j = 0; j < cs; j++) {
            double invstd = save_invstd[c0 + j], k = invstd * (gamma ? (double)gamma[c0 + j] : 1.0);
            a[j] = (float)k;
            b[j] = (float)(k * invstd * invstd * d2[j] / (double)m_total);
            cst[j] = (float)(k * d1[j] / (double)m_total);
        }
        slab_apply(be, dx + c0, NULL, dy + c0, x + c0, save_mean + c0, a, b, cst, m, c, cs);
    }
}

void cpu_batchnorm_forward_eval(hallu_backend *be, float *y, const float *x,
                                const float *running_mean, const float *running_var,
                                const float *gamma, const float *beta, int64_t m, int c, float eps)
{
    if (m <= 0 || c <= 0)
        return;
    cpu_impl *impl = cpu_impl_of(be);
    int shared = impl->num_threads;
    float *mean = cpu_red_f(impl, shared, 0), *scale = cpu_red_f(impl, shared, 1);
    float *shift = cpu_red_f(impl, shared, 2);
    for (int c0 = 0; c0 < c; c0 += CPU_SLAB) {
        int cs = c - c0 < CPU_SLAB ? c - c0 : CPU_SLAB;
        for (int j = 0; j < cs; j++) {
            double invstd = 1.0 / sqrt((double)running_var[c0 + j] + (double)eps);
            mean[j] = running_mean[c0 + j];
            scale[j] = (float)(invstd * (gamma ? (double)gamma[c0 + j] : 1.0));
            shift[j] = beta ? beta[c0 + j] : 0.0f;
        }
        slab_apply(be, y + c0, NULL, NULL, x + c0, mean, scale, shift, NULL, m, c, cs);
    }
}

/* The training backward; dx as fp32 into dx, or as bf16 into dx16 (one of them
 * or neither). */
static void batchnorm_backward(hallu_backend *be, float *dx, uint16_t *dx16, float *dgamma, float *dbeta,
                               const float *dy, const float *x, const float *save_mean, const float *save_invstd,
                               const float *gamma, int64_t m, int c)
{
    if (m <= 0 || c <= 0)
        return;
    cpu_impl *impl = cpu_impl_of(be);
    int shared = impl->num_threads;
    double *d1 = cpu_red_d(impl, shared, 0), *d2 = cpu_red_d(impl, shared, 1);
    float *a = cpu_red_f(impl, shared, 0), *b = cpu_red_f(impl, shared, 1), *cst = cpu_red_f(impl, shared, 2);
    for (int c0 = 0; c0 < c; c0 += CPU_SLAB) {
        int cs = c - c0 < CPU_SLAB ? c - c0 : CPU_SLAB;
        slab_sums(be, d1, d2, dy + c0, x + c0, save_mean + c0, m, c, cs);
        for (int j = 0; j < cs; j++) {
            double invstd = save_invstd[c0 + j], k = invstd * (gamma ? (double)gamma[c0 + j] : 1.0);
            if (dgamma)
                dgamma[c0 + j] += (float)(d2[j] * invstd);
            if (dbeta)
                dbeta[c0 + j] += (float)d1[j];
            a[j] = (float)k;
            b[j] = (float)(k * invstd * invstd * d2[j] / (double)m);
            cst[j] = (float)(k * d1[j] / (double)m);
        }
        if (dx || dx16)
            slab_apply(be, dx ? dx + c0 : NULL, dx16 ? dx16 + c0 : NULL, dy + c0, x + c0, save_mean + c0, a, b, cst,
                       m, c, cs);
    }
}

void cpu_batchnorm_backward(hallu_backend *be, float *dx, float *dgamma, float *dbeta,
                            const float *dy, const float *x, const float *save_mean,
                            const float *save_invstd, const float *gamma, int64_t m, int c)
{
    batchnorm_backward(be, dx, NULL, dgamma, dbeta, dy, x, save_mean, save_invstd, gamma, m, c);
}

void cpu_batchnorm_backward_x16(hallu_backend *be, uint16_t *dx16, float *dgamma, float *dbeta,
                                const float *dy, const float *x, const float *save_mean,
                                const float *save_invstd, const float *gamma, int64_t m, int c)
{
    batchnorm_backward(be, NULL, dx16, dgamma, dbeta, dy, x, save_mean, save_invstd, gamma, m, c);
}
