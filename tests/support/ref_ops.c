/* Plain loops, no cleverness: each function should be checkable by eye against
 * the formula in ref_ops.h. Speed is irrelevant here (tests use small shapes). */
#include "ref_ops.h"

#include <math.h>
#include <string.h>

/* ---- convolution ---- */

static size_t nhwc(int h, int w, int c, int n, int y, int x, int ch)
{
    return (((size_t)n * h + y) * w + x) * c + ch;
}

static size_t wofs(const hallu_conv2d_geom *g, int co, int ci, int ky, int kx)
{
    return (((size_t)co * g->cin + ci) * g->k + ky) * g->k + kx;
}

/* Input coordinate hit by output (oy, ox) and tap (ky, kx); -1 when in padding. */
static int conv_in(int o, int kk, int stride, int pad, int size)
{
    int i = o * stride - pad + kk;
    return i >= 0 && i < size ? i : -1;
}

void ref_conv2d_forward(double *y, const double *x, const double *w, const hallu_conv2d_geom *g)
{
    for (int n = 0; n < g->n; n++)
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++)
                for (int co = 0; co < g->cout; co++) {
                    double s = 0;
                    for (int ky = 0; ky < g->k; ky++) {
                        int iy = conv_in(oy, ky, g->stride, g->pad, g->h);
                        for (int kx = 0; kx < g->k && iy >= 0; kx++) {
                            int ix = conv_in(ox, kx, g->stride, g->pad, g->w);
                            if (ix < 0)
                                continue;
                            for (int ci = 0; ci < g->cin; ci++)
                                s += x[nhwc(g->h, g->w, g->cin, n, iy, ix, ci)] * w[wofs(g, co, ci, ky, kx)];
                        }
                    }
                    y[nhwc(g->oh, g->ow, g->cout, n, oy, ox, co)] = s;
                }
}

void ref_conv2d_backward(double *dx, double *dw, const double *dy, const double *x, const double *w,
                         const hallu_conv2d_geom *g)
{
    if (dx)
        memset(dx, 0, (size_t)g->n * g->h * g->w * g->cin * sizeof(double));
    for (int n = 0; n < g->n; n++)
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++)
                for (int co = 0; co < g->cout; co++) {
                    double d = dy[nhwc(g->oh, g->ow, g->cout, n, oy, ox, co)];
                    for (int ky = 0; ky < g->k; ky++) {
                        int iy = conv_in(oy, ky, g->stride, g->pad, g->h);
                        for (int kx = 0; kx < g->k && iy >= 0; kx++) {
                            int ix = conv_in(ox, kx, g->stride, g->pad, g->w);
                            if (ix < 0)
                                continue;
                            for (int ci = 0; ci < g->cin; ci++) {
                                size_t xi = nhwc(g->h, g->w, g->cin, n, iy, ix, ci), wi = wofs(g, co, ci, ky, kx);
                                if (dx)
                                    dx[xi] += d * w[wi];
                                if (dw)
                                    dw[wi] += d * x[xi];
                            }
                        }
                    }
                }
}

/* ---- batch norm ---- */

void ref_batchnorm_forward_train(double *y, double *save_mean, double *save_invstd,
                                 double *running_mean, double *running_var, const double *x,
                                 const double *gamma, const double *beta, int64_t m, int c,
                                 double momentum, double eps)
{
    for (int j = 0; j < c; j++) {
        double mean = 0, var = 0;
        for (int64_t i = 0; i < m; i++)
            mean += x[i * c + j];
        mean /= (double)m;
        for (int64_t i = 0; i < m; i++)
            var += (x[i * c + j] - mean) * (x[i * c + j] - mean);
        double biased = var / (double)m;
        double unbiased = m > 1 ? var / (double)(m - 1) : biased;
        double invstd = 1.0 / sqrt(biased + eps);
        double ga = gamma ? gamma[j] : 1.0, be = beta ? beta[j] : 0.0;
        for (int64_t i = 0; i < m; i++)
            y[i * c + j] = (x[i * c + j] - mean) * invstd * ga + be;
        if (save_mean)
            save_mean[j] = mean;
        if (save_invstd)
            save_invstd[j] = invstd;
        if (running_mean)
            running_mean[j] = (1.0 - momentum) * running_mean[j] + momentum * mean;
        if (running_var)
            running_var[j] = (1.0 - momentum) * running_var[j] + momentum * unbiased;
    }
}

void ref_batchnorm_forward_eval(double *y, const double *x, const double *running_mean,
                                const double *running_var, const double *gamma, const double *beta,
                                int64_t m, int c, double eps)
{
    for (int64_t i = 0; i < m; i++)
        for (int j = 0; j < c; j++) {
            double xhat = (x[i * c + j] - running_mean[j]) / sqrt(running_var[j] + eps);
            y[i * c + j] = xhat * (gamma ? gamma[j] : 1.0) + (beta ? beta[j] : 0.0);
        }
}

/* With xhat = (x - mean) * invstd and g = dy * gamma:
 * dx = invstd * (g - mean(g) - xhat * mean(g * xhat)). */
void ref_batchnorm_backward(double *dx, double *dgamma, double *dbeta, const double *dy,
                            const double *x, const double *save_mean, const double *save_invstd,
                            const double *gamma, int64_t m, int c)
{
    for (int j = 0; j < c; j++) {
        double mu = save_mean[j], is = save_invstd[j], ga = gamma ? gamma[j] : 1.0;
        double sum_dy = 0, sum_dy_xhat = 0;
        for (int64_t i = 0; i < m; i++) {
            double xhat = (x[i * c + j] - mu) * is;
            sum_dy += dy[i * c + j];
            sum_dy_xhat += dy[i * c + j] * xhat;
        }
        if (dgamma)
            dgamma[j] += sum_dy_xhat;
        if (dbeta)
            dbeta[j] += sum_dy;
        if (!dx)
            continue;
        double mean_g = ga * sum_dy / (double)m, mean_gx = ga * sum_dy_xhat / (double)m;
        for (int64_t i = 0; i < m; i++) {
            double xhat = (x[i * c + j] - mu) * is;
            dx[i * c + j] = is * (ga * dy[i * c + j] - mean_g - xhat * mean_gx);
        }
    }
}

/* ---- elementwise ---- */

void ref_relu_forward(double *y, const double *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i] > 0 ? x[i] : 0.0;
}

void ref_relu_backward(double *dx, const double *dy, const double *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dx[i] = y[i] > 0 ? dy[i] : 0.0;
}

void ref_add(double *y, const double *a, const double *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = a[i] + b[i];
}

void ref_axpy(double *y, double alpha, const double *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += alpha * x[i];
}

void ref_scale(double *y, double alpha, const double *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = alpha * x[i];
}

/* ---- pooling ---- */

void ref_maxpool2d_forward(double *y, int32_t *argmax, const double *x, const hallu_pool2d_geom *g)
{
    for (int n = 0; n < g->n; n++)
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++)
                for (int ch = 0; ch < g->c; ch++) {
                    double best = -INFINITY;
                    int32_t arg = -1;
                    for (int ky = 0; ky < g->k; ky++) {
                        int iy = oy * g->stride - g->pad + ky;
                        for (int kx = 0; kx < g->k && iy >= 0 && iy < g->h; kx++) {
                            int ix = ox * g->stride - g->pad + kx;
                            if (ix < 0 || ix >= g->w)
                                continue;
                            double v = x[nhwc(g->h, g->w, g->c, n, iy, ix, ch)];
                            if (arg < 0 || v > best || isnan(v)) {   /* NaN wins, as PyTorch */
                                best = v;
                                arg = iy * g->w + ix;
                            }
                        }
                    }
                    size_t o = nhwc(g->oh, g->ow, g->c, n, oy, ox, ch);
                    y[o] = best;
                    if (argmax)
                        argmax[o] = arg;
                }
}

void ref_maxpool2d_backward(double *dx, const double *dy, const int32_t *argmax, const hallu_pool2d_geom *g)
{
    memset(dx, 0, (size_t)g->n * g->h * g->w * g->c * sizeof(double));
    for (int n = 0; n < g->n; n++)
        for (int o = 0; o < g->oh * g->ow; o++)
            for (int ch = 0; ch < g->c; ch++) {
                size_t oi = ((size_t)n * g->oh * g->ow + o) * g->c + ch;
                dx[((size_t)n * g->h * g->w + argmax[oi]) * g->c + ch] += dy[oi];
            }
}

void ref_global_avgpool_forward(double *y, const double *x, int n, int hw, int c)
{
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++) {
            double s = 0;
            for (int p = 0; p < hw; p++)
                s += x[((size_t)i * hw + p) * c + ch];
            y[(size_t)i * c + ch] = s / hw;
        }
}

void ref_global_avgpool_backward(double *dx, const double *dy, int n, int hw, int c)
{
    for (int i = 0; i < n; i++)
        for (int p = 0; p < hw; p++)
            for (int ch = 0; ch < c; ch++)
                dx[((size_t)i * hw + p) * c + ch] = dy[(size_t)i * c + ch] / hw;
}

/* ---- dense ---- */

void ref_gemm(int trans_a, int trans_b, int m, int n, int k, double alpha, const double *a,
              const double *b, double beta, double *c)
{
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int p = 0; p < k; p++) {
                double av = trans_a ? a[(size_t)p * m + i] : a[(size_t)i * k + p];
                double bv = trans_b ? b[(size_t)j * k + p] : b[(size_t)p * n + j];
                s += av * bv;
            }
            /* beta == 0 ignores C (it may hold garbage), as BLAS does */
            double old = beta != 0 ? beta * c[(size_t)i * n + j] : 0.0;
            c[(size_t)i * n + j] = alpha * s + old;
        }
}

void ref_linear_forward(double *y, const double *x, const double *w, const double *bias,
                        int rows, int in, int out)
{
    for (int r = 0; r < rows; r++)
        for (int o = 0; o < out; o++) {
            double s = bias ? bias[o] : 0.0;
            for (int i = 0; i < in; i++)
                s += x[(size_t)r * in + i] * w[(size_t)o * in + i];
            y[(size_t)r * out + o] = s;
        }
}

void ref_linear_backward(double *dx, double *dw, double *dbias, const double *dy, const double *x,
                         const double *w, int rows, int in, int out)
{
    for (int r = 0; r < rows; r++) {
        for (int i = 0; i < in && dx; i++) {
            double s = 0;
            for (int o = 0; o < out; o++)
                s += dy[(size_t)r * out + o] * w[(size_t)o * in + i];
            dx[(size_t)r * in + i] = s;
        }
        for (int o = 0; o < out; o++) {
            double d = dy[(size_t)r * out + o];
            if (dbias)
                dbias[o] += d;
            for (int i = 0; i < in && dw; i++)
                dw[(size_t)o * in + i] += d * x[(size_t)r * in + i];
        }
    }
}

/* ---- rows ---- */

static double row_norm(const double *x, int cols)
{
    double s = 0;
    for (int j = 0; j < cols; j++)
        s += x[j] * x[j];
    return sqrt(s);
}

void ref_l2norm_rows_forward(double *y, double *norms, const double *x, int rows, int cols, double eps)
{
    for (int r = 0; r < rows; r++) {
        const double *xr = x + (size_t)r * cols;
        double nrm = row_norm(xr, cols), d = nrm > eps ? nrm : eps;
        for (int j = 0; j < cols; j++)
            y[(size_t)r * cols + j] = xr[j] / d;
        if (norms)
            norms[r] = nrm;
    }
}

void ref_l2norm_rows_backward(double *dx, const double *dy, const double *x, int rows, int cols, double eps)
{
    for (int r = 0; r < rows; r++) {
        const double *xr = x + (size_t)r * cols, *dyr = dy + (size_t)r * cols;
        double *dxr = dx + (size_t)r * cols;
        double nrm = row_norm(xr, cols);
        if (nrm <= eps) {
            for (int j = 0; j < cols; j++)
                dxr[j] = dyr[j] / eps;
            continue;
        }
        double dot = 0;   /* y . dy */
        for (int j = 0; j < cols; j++)
            dot += xr[j] / nrm * dyr[j];
        for (int j = 0; j < cols; j++)
            dxr[j] = (dyr[j] - xr[j] / nrm * dot) / nrm;
    }
}

double ref_softmax_xent_forward(double *probs, const double *logits, const int32_t *targets,
                                int rows, int classes)
{
    double loss = 0;
    for (int r = 0; r < rows; r++) {
        const double *z = logits + (size_t)r * classes;
        double mx = z[0], s = 0;
        for (int j = 1; j < classes; j++)
            mx = z[j] > mx ? z[j] : mx;
        for (int j = 0; j < classes; j++)
            s += exp(z[j] - mx);
        double lse = mx + log(s);
        loss += lse - z[targets[r]];
        for (int j = 0; j < classes && probs; j++)
            probs[(size_t)r * classes + j] = exp(z[j] - lse);
    }
    return loss / rows;
}

void ref_softmax_xent_backward(double *dlogits, const double *probs, const int32_t *targets,
                               int rows, int classes, double scale)
{
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < classes; j++) {
            size_t i = (size_t)r * classes + j;
            dlogits[i] = scale * (probs[i] - (j == targets[r] ? 1.0 : 0.0)) / rows;
        }
}

void ref_copy_cols(double *dst, int cols_dst, int col0, const double *src, int cols_src, int rows)
{
    for (int r = 0; r < rows; r++)
        memcpy(dst + (size_t)r * cols_dst + col0, src + (size_t)r * cols_src, (size_t)cols_src * sizeof(double));
}

void ref_slice_cols(double *dst, int cols_dst, const double *src, int cols_src, int col0, int rows)
{
    for (int r = 0; r < rows; r++)
        memcpy(dst + (size_t)r * cols_dst, src + (size_t)r * cols_src + col0, (size_t)cols_dst * sizeof(double));
}
