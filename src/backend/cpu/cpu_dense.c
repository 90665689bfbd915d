/* Dense ops through oneDNN's row-major sgemm. Not OpenBLAS: its 0.3.21 build
 * in Debian 12 picks its kernels from a table of CPU models and falls back to
 * SSE3 ones (4-5x slower) on CPUs newer than the table, where oneDNN reads the
 * instruction sets off cpuid. */
#include "backend/cpu/cpu_internal.h"

void cpu_gemm(hallu_backend *be, int trans_a, int trans_b, int m, int n, int k, float alpha,
              const float *a, const float *b, float beta, float *c)
{
    if (m <= 0 || n <= 0)
        return;
    if (k <= 0) {
        /* BLAS would still scale C; keep that meaning (beta == 0 clears, even NaN). */
        for (int64_t i = 0; i < (int64_t)m * n; i++)
            c[i] = beta == 0.0f ? 0.0f : beta * c[i];
        return;
    }
    cpu_impl *impl = cpu_impl_of(be);
    int caller = cpu_threads_enter(impl);
    cpu_check(impl,
              dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, trans_a ? m : k, b,
                         trans_b ? k : n, beta, c, n),
              "gemm: dnnl_sgemm");
    cpu_threads_leave(impl, caller);
}

void cpu_linear_forward(hallu_backend *be, float *y, const float *x, const float *w,
                        const float *bias, int rows, int in, int out)
{
    if (rows <= 0 || out <= 0)
        return;
    if (bias)
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < out; j++)
                y[(int64_t)r * out + j] = bias[j];
    cpu_gemm(be, 0, 1, rows, out, in, 1.0f, x, w, bias ? 1.0f : 0.0f, y);
}

/* dbias[j] += sum over rows of dy[r][j], summed in double, one column per thread. */
static void bias_grad(hallu_backend *be, float *dbias, const float *dy, int rows, int out)
{
    int nt = cpu_threads_for(be, (int64_t)rows * out, 1 << 15);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int j = 0; j < out; j++) {
        double s = 0.0;
        for (int r = 0; r < rows; r++)
            s += dy[(int64_t)r * out + j];
        dbias[j] += (float)s;
    }
}

void cpu_linear_backward(hallu_backend *be, float *dx, float *dw, float *dbias, const float *dy,
                         const float *x, const float *w, int rows, int in, int out)
{
    if (rows <= 0 || in <= 0 || out <= 0)
        return;
    if (dx)
        cpu_gemm(be, 0, 0, rows, in, out, 1.0f, dy, w, 0.0f, dx);
    if (dw)
        cpu_gemm(be, 1, 0, out, in, rows, 1.0f, dy, x, 1.0f, dw);
    if (dbias)
        bias_grad(be, dbias, dy, rows, out);
}
