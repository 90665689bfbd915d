/* Max pooling and global average pooling over NHWC. Work is split by image (or
 * output row), so every output is computed by exactly one thread: results do not
 * depend on the thread count. */
#include "backend/cpu/cpu_internal.h"

#include <math.h>
#include <string.h>

/* One output pixel (all channels): scans the window row by row; strict '>' keeps
 * the first maximum, NaN wins (as PyTorch), padding never takes part. */
CPU_HOT static void maxpool_pixel(float *restrict y, int32_t *restrict arg, const float *restrict x,
                                  const hallu_pool2d_geom *g, int oy, int ox)
{
    int h0 = oy * g->stride - g->pad, w0 = ox * g->stride - g->pad;
    int h1 = h0 + g->k < g->h ? h0 + g->k : g->h, w1 = w0 + g->k < g->w ? w0 + g->k : g->w;
    h0 = h0 < 0 ? 0 : h0;
    w0 = w0 < 0 ? 0 : w0;
    int32_t first = h0 * g->w + w0;
    for (int j = 0; j < g->c; j++) {
        y[j] = -INFINITY;
        arg[j] = first;
    }
    for (int ih = h0; ih < h1; ih++)
        for (int iw = w0; iw < w1; iw++) {
            int32_t idx = ih * g->w + iw;
            const float *xp = x + (int64_t)idx * g->c;
#pragma omp simd
            for (int j = 0; j < g->c; j++) {
                float v = xp[j];
                int take = v > y[j] || v != v;
                y[j] = take ? v : y[j];
                arg[j] = take ? idx : arg[j];
            }
        }
}

void cpu_maxpool2d_forward(hallu_backend *be, float *y, int32_t *argmax, const float *x,
                           const hallu_pool2d_geom *g)
{
    int64_t rows = (int64_t)g->n * g->oh, in_img = (int64_t)g->h * g->w * g->c;
    int64_t out_row = (int64_t)g->ow * g->c;
    int nt = cpu_threads_for(be, rows * out_row, 1 << 14);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t img = r / g->oh;
        int oy = (int)(r % g->oh);
        for (int ox = 0; ox < g->ow; ox++)
            maxpool_pixel(y + r * out_row + (int64_t)ox * g->c, argmax + r * out_row + (int64_t)ox * g->c,
                          x + img * in_img, g, oy, ox);
    }
}

/* dx = 0, then every output gradient is added at its argmax (windows overlap, so
 * an input may collect several). Split by image: no two threads touch one image. */
void cpu_maxpool2d_backward(hallu_backend *be, float *dx, const float *dy, const int32_t *argmax,
                            const hallu_pool2d_geom *g)
{
    int64_t in_img = (int64_t)g->h * g->w * g->c, out_img = (int64_t)g->oh * g->ow * g->c;
    int nt = cpu_threads_for(be, (int64_t)g->n * in_img, 1 << 14);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int img = 0; img < g->n; img++) {
        float *d = dx + img * in_img;
        const float *gy = dy + img * out_img;
        const int32_t *a = argmax + img * out_img;
        memset(d, 0, (size_t)in_img * sizeof *d);
        for (int64_t p = 0; p < (int64_t)g->oh * g->ow; p++)
            for (int j = 0; j < g->c; j++) {
                int32_t idx = a[p * g->c + j];
                if (idx >= 0 && idx < g->h * g->w)
                    d[(int64_t)idx * g->c + j] += gy[p * g->c + j];
            }
    }
}

CPU_HOT static void avgpool_image(float *restrict y, const float *restrict x, int hw, int c)
{
    for (int j = 0; j < c; j++)
        y[j] = 0.0f;
    for (int p = 0; p < hw; p++) {
        const float *xp = x + (int64_t)p * c;
#pragma omp simd
        for (int j = 0; j < c; j++)
            y[j] += xp[j];
    }
    /* Divide (not multiply by 1/hw) to round like PyTorch's mean. */
    for (int j = 0; j < c; j++)
        y[j] /= (float)hw;
}

void cpu_global_avgpool_forward(hallu_backend *be, float *y, const float *x, int n, int hw, int c)
{
    int nt = cpu_threads_for(be, (int64_t)n * hw * c, 1 << 15);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int i = 0; i < n; i++)
        avgpool_image(y + (int64_t)i * c, x + (int64_t)i * hw * c, hw, c);
}

void cpu_global_avgpool_backward(hallu_backend *be, float *dx, const float *dy, int n, int hw, int c)
{
    float div = (float)hw;
    int nt = cpu_threads_for(be, (int64_t)n * hw * c, 1 << 15);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int i = 0; i < n; i++) {
        const float *g = dy + (int64_t)i * c;
        for (int p = 0; p < hw; p++) {
            float *d = dx + ((int64_t)i * hw + p) * c;
            for (int j = 0; j < c; j++)
                d[j] = g[j] / div;
        }
    }
}
