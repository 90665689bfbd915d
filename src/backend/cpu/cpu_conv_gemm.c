/* Convolution weight gradient as im2col + oneDNN's sgemm, for layers with few
 * output pixels (ResNet's last stages): there oneDNN 2.6's direct AVX2
 * backward-weights kernel reaches under half of sgemm's throughput.
 * Works on the caller's NHWC buffers directly, so it needs no reorders. */
#include "backend/cpu/cpu_internal.h"

#include <omp.h>
#include <string.h>

enum { GEMM_ROWS = 2048 };   /* output pixels per sgemm: large enough to run near peak */

int cpu_conv_gemm_wanted(const hallu_conv2d_geom *g)
{
    return g->k > 1 && g->oh * g->ow <= 64;
}

hallu_status cpu_conv_gemm_init(cpu_impl *impl, const hallu_conv2d_geom *g, cpu_conv_gemm *cg, hallu_error *err)
{
    int pix = g->oh * g->ow;
    cg->chunk = cpu_images_per_chunk(GEMM_ROWS, pix, g->n);
    size_t kkc = (size_t)g->k * g->k * g->cin;
    cg->dw_ohwi = hallu_alloc((size_t)g->cout * kkc * sizeof(float), "conv2d weight gradient", err);
    if (!cg->dw_ohwi)
        return HALLU_ERR_OOM;
    return cpu_shared_reserve_floats(&impl->col, &impl->col_bytes, (size_t)cg->chunk * pix * kkc * sizeof(float),
                                     "conv2d im2col buffer", err);
}

void cpu_conv_gemm_free(cpu_conv_gemm *cg)
{
    hallu_free(cg->dw_ohwi);
    cg->dw_ohwi = NULL;
}

/* col[p][(ky*k + kx)*cin + ci] = x[img][iy][ix][ci] (0 in the padding) for the
 * output pixels p of images [img0, img0 + cnt). */
static void im2col(float *col, const float *x, const hallu_conv2d_geom *g, int img0, int cnt, int nt)
{
    int64_t pix = (int64_t)g->oh * g->ow, rows = cnt * pix, kkc = (int64_t)g->k * g->k * g->cin;
    size_t run = (size_t)g->cin * sizeof(float);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t p = 0; p < rows; p++) {
        int64_t img = img0 + p / pix;
        int oy = (int)(p % pix) / g->ow, ox = (int)(p % pix) % g->ow;
        float *dst = col + p * kkc;
        for (int ky = 0; ky < g->k; ky++) {
            int iy = oy * g->stride - g->pad + ky;
            for (int kx = 0; kx < g->k; kx++, dst += g->cin) {
                int ix = ox * g->stride - g->pad + kx;
                if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w)
                    memset(dst, 0, run);
                else
                    memcpy(dst, x + ((img * g->h + iy) * g->w + ix) * (int64_t)g->cin, run);
            }
        }
    }
}

/* dw[co][ci][ky][kx] += ohwi[co][ky][kx][ci] */
static void add_ohwi(float *dw, const float *ohwi, const hallu_conv2d_geom *g, int nt)
{
    int kk = g->k * g->k;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int co = 0; co < g->cout; co++) {
        const float *src = ohwi + (int64_t)co * kk * g->cin;
        float *d = dw + (int64_t)co * g->cin * kk;
        for (int s = 0; s < kk; s++)
            for (int ci = 0; ci < g->cin; ci++)
                d[ci * kk + s] += src[s * g->cin + ci];
    }
}

void cpu_conv_gemm_backward_weights(cpu_impl *impl, const hallu_conv2d_geom *g, cpu_conv_gemm *cg, float *dw,
                                    const float *dy, const float *x)
{
    int64_t pix = (int64_t)g->oh * g->ow, kkc = (int64_t)g->k * g->k * g->cin;
    for (int img0 = 0; img0 < g->n; img0 += cg->chunk) {
        int cnt = g->n - img0 < cg->chunk ? g->n - img0 : cg->chunk;
        im2col(impl->col, x, g, img0, cnt, impl->num_threads);
        /* ohwi[cout][kkc] (+)= dy[rows][cout]^T col[rows][kkc] */
        cpu_check(impl,
                  dnnl_sgemm('T', 'N', g->cout, kkc, cnt * pix, 1.0f, dy + img0 * pix * g->cout, g->cout, impl->col,
                             kkc, img0 == 0 ? 0.0f : 1.0f, cg->dw_ohwi, kkc),
                  "conv2d weight gradient: dnnl_sgemm");
    }
    add_ohwi(dw, cg->dw_ohwi, g, impl->num_threads);
}
