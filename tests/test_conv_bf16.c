/* bf16 convolutions (--precision bf16, issue 28): products of bf16-rounded
 * inputs with fp32 accumulation. Against the double-precision reference fed
 * the same inputs rounded to bf16 (round to nearest even, as oneDNN converts),
 * forward output, input gradient and weight gradient must agree to fp32
 * accumulation error (1e-5) -- and differ from the unrounded reference by
 * bf16's rounding (> 1e-4), which shows the products really ran in bf16.
 * Skipped (77) on a CPU without bf16 instructions; tests/precision.cmake
 * checks the named error there. */
#include "check.h"
#include "hallu/backend.h"
#include "ref_ops.h"
#include "test_backend.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float to_bf16(float v)
{
    uint32_t b;
    memcpy(&b, &v, sizeof b);
    b += 0x7fffu + ((b >> 16) & 1u);
    b &= 0xffff0000u;
    memcpy(&v, &b, sizeof v);
    return v;
}

static double rel(const float *got, const double *want, size_t n)
{
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        d += (got[i] - want[i]) * (got[i] - want[i]);
        r += want[i] * want[i];
    }
    return sqrt(d / (r > 0 ? r : 1));
}

/* x (float, as the backend sees it) and its bf16-rounded and unrounded doubles. */
typedef struct { size_t n; float *f; double *d_bf, *d; } input;

static input input_new(size_t n, hallu_rng *rng, double sd)
{
    input in = { n, tu_falloc(n), tu_dalloc(n), tu_dalloc(n) };
    tu_fill_normal_f(in.f, n, rng, sd);
    for (size_t i = 0; i < n; i++) {
        in.d[i] = in.f[i];
        in.d_bf[i] = to_bf16(in.f[i]);
    }
    return in;
}

static void input_free(input *in)
{
    free(in->f);
    free(in->d_bf);
    free(in->d);
}

static void *dev(hallu_backend *be, const void *host, size_t nbytes)
{
    hallu_error err = { 0 };
    void *p = be->ops->alloc(be, nbytes, "bf16 test", &err);
    if (p && host)
        CHECK_OK(hallu_backend_upload(be, p, host, nbytes, &err), &err);
    return p;
}

static void test_conv(hallu_backend *be, int n, int h, int w, int cin, int cout, int k, int stride, int pad)
{
    hallu_error err = { 0 };
    hallu_conv2d_geom g;
    hallu_conv2d_plan *plan = NULL;
    CHECK_OK(hallu_conv2d_geom_init(&g, n, h, w, cin, cout, k, stride, pad, &err), &err);
    CHECK_OK(be->ops->conv2d_plan_create(be, &g, &plan, &err), &err);
    if (!plan)
        return;
    size_t nx = (size_t)n * h * w * cin, nw = (size_t)cout * cin * k * k, ny = (size_t)n * g.oh * g.ow * cout;
    hallu_rng rng;
    hallu_rng_init(&rng, 300 + (uint64_t)cin + (uint64_t)k, (uint64_t)stride);
    input x = input_new(nx, &rng, 1.0), wt = input_new(nw, &rng, 0.3), dy = input_new(ny, &rng, 1.0);
    float *x_d = dev(be, x.f, nx * 4), *w_d = dev(be, wt.f, nw * 4), *dy_d = dev(be, dy.f, ny * 4);
    float *y_d = dev(be, NULL, ny * 4), *dx_d = dev(be, NULL, nx * 4), *dw_d = dev(be, NULL, nw * 4);
    float *y = tu_falloc(ny), *dx = tu_falloc(nx), *dw = tu_falloc(nw);
    double *ry = tu_dalloc(ny), *rdx = tu_dalloc(nx), *rdw = tu_dalloc(nw);
    double *uy = tu_dalloc(ny);
    be->ops->conv2d_forward(plan, y_d, x_d, w_d);
    be->ops->conv2d_backward(plan, dx_d, dw_d, dy_d, x_d, w_d);
    CHECK_OK(hallu_backend_download(be, y, y_d, ny * 4, &err), &err);
    CHECK_OK(hallu_backend_download(be, dx, dx_d, nx * 4, &err), &err);
    CHECK_OK(hallu_backend_download(be, dw, dw_d, nw * 4, &err), &err);
    ref_conv2d_forward(ry, x.d_bf, wt.d_bf, &g);
    memset(rdw, 0, nw * sizeof *rdw);
    ref_conv2d_backward(rdx, rdw, dy.d_bf, x.d_bf, wt.d_bf, &g);
    ref_conv2d_forward(uy, x.d, wt.d, &g);
    double ey = rel(y, ry, ny), edx = rel(dx, rdx, nx), edw = rel(dw, rdw, nw), eu = rel(y, uy, ny);
    printf("conv %d->%d k%d s%d %dx%d: y %.1e dx %.1e dw %.1e from bf16-rounded inputs; y %.1e from fp32 inputs\n",
           cin, cout, k, stride, h, w, ey, edx, edw, eu);
    CHECK_MSG(ey < 1e-5 && edx < 1e-5 && edw < 1e-5, "bf16 conv %d->%d k%d s%d: not the product of bf16-rounded "
              "inputs with fp32 accumulation (y %.2e dx %.2e dw %.2e)", cin, cout, k, stride, ey, edx, edw);
    CHECK_MSG(eu > 1e-4, "bf16 conv %d->%d k%d s%d: output as exact as fp32 (%.2e): not computed in bf16", cin, cout,
              k, stride, eu);
    void *bufs[] = { x_d, w_d, dy_d, y_d, dx_d, dw_d };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        be->ops->release(be, bufs[i]);
    be->ops->conv2d_plan_free(plan);
    input_free(&x), input_free(&wt), input_free(&dy);
    free(y), free(dx), free(dw), free(ry), free(rdx), free(rdw), free(uy);
}

int main(void)
{
    hallu_error err = { 0 };
    hallu_backend *be = NULL;
    if (test_backend_create(&be, 2, &err) != HALLU_OK)
        return 1;
    hallu_status s = hallu_backend_set_precision(be, HALLU_PRECISION_BF16, &err);
    if (s == HALLU_ERR_UNSUPPORTED) {
        printf("skipped: %s\n", err.msg);
        hallu_backend_free(be);
        return 77;
    }
    CHECK_OK(s, &err);
    test_conv(be, 2, 8, 8, 3, 16, 3, 1, 1);      /* the CIFAR stem's first layer */
    test_conv(be, 2, 8, 8, 32, 32, 3, 1, 1);     /* a 3x3 body layer (Winograd in fp32) */
    test_conv(be, 2, 8, 8, 32, 64, 3, 2, 1);     /* stride 2 */
    test_conv(be, 2, 8, 8, 32, 64, 1, 2, 0);     /* a downsample 1x1 */
    /* Outputs of <= 64 pixels and stride-2 1x1 layers take the weight gradient
     * by im2col + bf16 matmul (cpu_conv_gemm.c), 3x3 layers with <= 16 output
     * pixels all three passes; the others oneDNN's kernels. */
    test_conv(be, 2, 16, 16, 16, 32, 3, 1, 1);   /* 256 output pixels: oneDNN's backward weights */
    test_conv(be, 65, 32, 32, 8, 16, 1, 2, 0);   /* 64-image GEMM chunks and a 1-image tail */
    test_conv(be, 3, 4, 4, 32, 48, 3, 1, 1);     /* 4x4 -> 4x4: forward, dx and dw by GEMM */
    test_conv(be, 1025, 4, 4, 8, 8, 3, 1, 1);    /* ... in 1024-image chunks and a 1-image tail */
    hallu_backend_free(be);
    return check_summary();
}
