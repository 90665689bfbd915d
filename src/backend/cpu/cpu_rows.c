/* Row-wise ops on 2-D activations [rows][cols]: L2 normalisation, softmax
 * cross-entropy, column concat/slice. Each row is handled by one thread and
 * row sums run in double; the loss is reduced in thread order. */
#include "backend/cpu/cpu_internal.h"

#include <math.h>
#include <omp.h>
#include <string.h>

enum { ROW_GRAIN = 1 << 14 };

void cpu_l2norm_rows_forward(hallu_backend *be, float *y, float *norms, const float *x,
                             int rows, int cols, float eps)
{
    int nt = cpu_threads_for(be, (int64_t)rows * cols, ROW_GRAIN);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (int64_t)r * cols;
        double ss = 0.0;
        for (int j = 0; j < cols; j++)
            ss += (double)xr[j] * xr[j];
        double norm = sqrt(ss), denom = norm > eps ? norm : (double)eps;
        norms[r] = (float)norm;
        float *yr = y + (int64_t)r * cols;
        for (int j = 0; j < cols; j++)
            yr[j] = (float)(xr[j] / denom);
    }
}

/* Where the norm was clamped to eps the map is x/eps; elsewhere
 * dx = (dy - x (x.dy) / n^2) / n. At n == eps both agree with PyTorch's clamp_min
 * (which passes the gradient at the boundary). */
void cpu_l2norm_rows_backward(hallu_backend *be, float *dx, const float *dy, const float *x,
                              const float *norms, int rows, int cols, float eps)
{
    int nt = cpu_threads_for(be, (int64_t)rows * cols, ROW_GRAIN);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (int64_t)r * cols, *gr = dy + (int64_t)r * cols;
        float *dr = dx + (int64_t)r * cols;
        double n = norms[r];
        if (!(n >= eps) || n <= 0.0) {
            double inv = eps > 0.0f ? 1.0 / eps : 0.0;
            for (int j = 0; j < cols; j++)
                dr[j] = (float)(gr[j] * inv);
            continue;
        }
        double dot = 0.0;
        for (int j = 0; j < cols; j++)
            dot += (double)xr[j] * gr[j];
        double k = dot / (n * n);
        for (int j = 0; j < cols; j++)
            dr[j] = (float)((gr[j] - xr[j] * k) / n);
    }
}

/* Softmax of one row into p; returns its cross-entropy -log p[t] computed as
 * logsumexp - logit[t] (no underflow), or 0 for an out-of-range target. */
static double softmax_row(float *p, const float *z, int classes, int32_t t)
{
    float mx = z[0];
    for (int j = 1; j < classes; j++)
        mx = z[j] > mx ? z[j] : mx;
    double sum = 0.0;
    for (int j = 0; j < classes; j++)
        sum += exp((double)z[j] - mx);
    for (int j = 0; j < classes; j++)
        p[j] = (float)(exp((double)z[j] - mx) / sum);
    if (t < 0 || t >= classes)
        return 0.0;
    return log(sum) + mx - (double)z[t];
}

float cpu_softmax_xent_forward(hallu_backend *be, float *probs, const float *logits,
                               const int32_t *targets, int rows, int classes)
{
    if (rows <= 0 || classes <= 0)
        return 0.0f;
    int nt = cpu_threads_for(be, (int64_t)rows * classes, ROW_GRAIN), used = 1;
    double partial[nt];
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num();
        int64_t lo, hi;
        cpu_split(rows, omp_get_num_threads(), t, &lo, &hi);
        double s = 0.0;
        for (int64_t r = lo; r < hi; r++)
            s += softmax_row(probs + r * classes, logits + r * classes, classes, targets[r]);
        partial[t] = s;
        if (t == 0)
            used = omp_get_num_threads();
    }
    double total = 0.0;
    for (int t = 0; t < used; t++)
        total += partial[t];
    return (float)(total / rows);
}

void cpu_softmax_xent_backward(hallu_backend *be, float *dlogits, const float *probs,
                               const int32_t *targets, int rows, int classes, float scale)
{
    if (rows <= 0)
        return;
    double k = (double)scale / rows;
    int nt = cpu_threads_for(be, (int64_t)rows * classes, ROW_GRAIN);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *p = probs + (int64_t)r * classes;
        float *d = dlogits + (int64_t)r * classes;
        int32_t t = targets[r];
        for (int j = 0; j < classes; j++)
            d[j] = (float)(k * ((double)p[j] - (j == t ? 1.0 : 0.0)));
    }
}

void cpu_copy_cols(hallu_backend *be, float *dst, int cols_dst, int col0, const float *src,
                   int cols_src, int rows)
{
    for (int r = 0; r < rows; r++)
        memcpy(dst + (int64_t)r * cols_dst + col0, src + (int64_t)r * cols_src, (size_t)cols_src * sizeof *dst);
}

void cpu_slice_cols(hallu_backend *be, float *dst, int cols_dst, const float *src, int cols_src,
                    int col0, int rows)
{
    for (int r = 0; r < rows; r++)
        memcpy(dst + (int64_t)r * cols_dst, src + (int64_t)r * cols_src + col0, (size_t)cols_dst * sizeof *dst);
}
