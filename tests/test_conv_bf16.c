/* bf16 convolutions (--precision bf16, issue 28): products of bf16-rounded
 * inputs with fp32 accumulation. Against the double-precision reference fed
 * the same inputs rounded to bf16 (round to nearest even, as oneDNN converts),
 * forward output, input gradient and weight gradient must agree to fp32
 * accumulation error (1e-5) -- and differ from the unrounded reference by
 * bf16's rounding (> 1e-4), which shows the products really ran in bf16.
 * 3x3 stride-1 layers on a CPU without AMX run Winograd F(2x2, 3x3) in bf16
 * (cpu_conv_wino.c): those must agree as closely with a double-precision
 * Winograd whose transformed operands (V, U, and the output gradient's dM)
 * are rounded to bf16. HALLU_TEST_EXPECT_WINOGRAD=1 (set by the ctest run
 * with oneDNN's ISA capped below AMX) requires the Winograd path to have run.
 * Skipped (77) on a CPU without bf16 instructions; tests/precision.cmake
 * checks the named error there. */
#include "check.h"
#include "hallu/backend.h"
#include "hallu/models.h"
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

/* The convolution given x's bf16 copy (conv2d_forward's x16, from
 * relu_forward_x16) gives the bits it gives rounding x itself: y, dx and dw. */
static void same_with_x16(hallu_backend *be, hallu_conv2d_plan *plan, float *x_d, const float *w_d,
                          const float *dy_d, size_t nx, size_t ny, size_t nw)
{
    if (!be->ops->relu_forward_x16)
        return;
    hallu_error err = { 0 };
    uint16_t *x16 = dev(be, NULL, nx * 2);
    float *out[2][3];   /* [without, with x16][y, dx, dw] */
    size_t counts[3] = { ny, nx, nw };
    be->ops->relu_forward_x16(be, x_d, x16, x_d, (int64_t)nx);   /* x >= 0 from here: a ReLU output */
    for (int with = 0; with < 2; with++) {
        for (int i = 0; i < 3; i++)
            out[with][i] = dev(be, NULL, counts[i] * 4);
        be->ops->fill(be, out[with][2], 0.0f, (int64_t)nw);
        be->ops->conv2d_forward(plan, out[with][0], x_d, with ? x16 : NULL, w_d);
        be->ops->conv2d_backward(plan, out[with][1], out[with][2], dy_d, NULL, x_d, with ? x16 : NULL, w_d);
    }
    const char *names[3] = { "y", "dx", "dw" };
    for (int i = 0; i < 3; i++) {
        float *a = tu_falloc(counts[i]), *b = tu_falloc(counts[i]);
        CHECK_OK(hallu_backend_download(be, a, out[0][i], counts[i] * 4, &err), &err);
        CHECK_OK(hallu_backend_download(be, b, out[1][i], counts[i] * 4, &err), &err);
        CHECK_MSG(memcmp(a, b, counts[i] * 4) == 0, "%s with x16 differs from %s rounding x itself", names[i],
                  names[i]);
        free(a), free(b);
        be->ops->release(be, out[0][i]);
        be->ops->release(be, out[1][i]);
    }
    be->ops->release(be, x16);
}

static int g_dx16_ran;   /* geometries whose conv2d_backward_dx16 ran */
static int g_wino_ran;   /* geometries that matched the bf16 Winograd reference */

/* ---- the bf16 Winograd F(2x2, 3x3) reference (Lavin & Gray 2016) ---- */
static const double BT[4][4] = { { 1, 0, -1, 0 }, { 0, 1, 1, 0 }, { 0, -1, 1, 0 }, { 0, 1, 0, -1 } };
static const double G3[4][3] = { { 1, 0, 0 }, { .5, .5, .5 }, { .5, -.5, .5 }, { 0, 0, 1 } };
static const double AT[2][4] = { { 1, 1, 1, 0 }, { 0, 1, -1, -1 } };

/* v rounded as the backend rounds its fp32 transforms: to float, then bf16 */
static double bf(double v) { return to_bf16((float)v); }

/* U[e][ci][co] = bf16(G w G^T) of kernel w[co][ci] (OIHW, cin x cout channels) */
static double *ref_wino_weights(const float *w, int cin, int cout)
{
    double *U = tu_dalloc((size_t)16 * cin * cout);
    for (int co = 0; co < cout; co++)
        for (int ci = 0; ci < cin; ci++) {
            const float *k = w + ((size_t)co * cin + ci) * 9;
            double t[4][3];
            for (int r = 0; r < 4; r++)
                for (int c = 0; c < 3; c++)
                    t[r][c] = G3[r][0] * k[c] + G3[r][1] * k[3 + c] + G3[r][2] * k[6 + c];
            for (int r = 0; r < 4; r++)
                for (int q = 0; q < 4; q++)
                    U[((size_t)(r * 4 + q) * cin + ci) * cout + co] =
                        bf(t[r][0] * G3[q][0] + t[r][1] * G3[q][1] + t[r][2] * G3[q][2]);
        }
    return U;
}

/* v[16] = bf16(B^T d B) of the 4x4 patch at (2ty-1, 2tx-1) of channel c (NHWC, zero outside) */
static void ref_wino_input(double v[16], const double *x, int h, int w, int cn, int img, int ty, int tx, int c)
{
    double d[4][4], t[4][4];
    for (int r = 0; r < 4; r++)
        for (int q = 0; q < 4; q++) {
            int iy = 2 * ty - 1 + r, ix = 2 * tx - 1 + q;
            d[r][q] = iy < 0 || iy >= h || ix < 0 || ix >= w ? 0 : x[(((size_t)img * h + iy) * w + ix) * cn + c];
        }
    for (int r = 0; r < 4; r++)
        for (int q = 0; q < 4; q++)
            t[r][q] = BT[r][0] * d[0][q] + BT[r][1] * d[1][q] + BT[r][2] * d[2][q] + BT[r][3] * d[3][q];
    for (int r = 0; r < 4; r++)
        for (int q = 0; q < 4; q++)
            v[r * 4 + q] = bf(t[r][0] * BT[q][0] + t[r][1] * BT[q][1] + t[r][2] * BT[q][2] + t[r][3] * BT[q][3]);
}

/* y (NHWC, same size as x) = the Winograd convolution of the bf16-valued x with U */
static void ref_wino_forward(double *y, const double *x, const double *U, int n, int h, int w, int cin, int cout)
{
    double *v = tu_dalloc((size_t)16 * cin);
    for (int img = 0; img < n; img++)
        for (int ty = 0; ty < (h + 1) / 2; ty++)
            for (int tx = 0; tx < (w + 1) / 2; tx++) {
                for (int ci = 0; ci < cin; ci++)
                    ref_wino_input(v + 16 * ci, x, h, w, cin, img, ty, tx, ci);
                for (int co = 0; co < cout; co++) {
                    double m[16], t[2][4];
                    for (int e = 0; e < 16; e++) {
                        m[e] = 0;
                        for (int ci = 0; ci < cin; ci++)
                            m[e] += v[16 * ci + e] * U[((size_t)e * cin + ci) * cout + co];
                    }
                    for (int i = 0; i < 2; i++)
                        for (int q = 0; q < 4; q++)
                            t[i][q] = AT[i][0] * m[q] + AT[i][1] * m[4 + q] + AT[i][2] * m[8 + q] + AT[i][3] * m[12 + q];
                    for (int i = 0; i < 2; i++)
                        for (int j = 0; j < 2; j++) {
                            int oy = 2 * ty + i, ox = 2 * tx + j;
                            if (oy < h && ox < w)
                                y[(((size_t)img * h + oy) * w + ox) * cout + co] =
                                    t[i][0] * AT[j][0] + t[i][1] * AT[j][1] + t[i][2] * AT[j][2] + t[i][3] * AT[j][3];
                        }
                }
            }
    free(v);
}

/* dw (OIHW) = G^T dU G, dU[e][co][ci] = sum over tiles of bf16(A^T' dY A')[e] V[e] (A' = AT^T) */
static void ref_wino_dw(double *dw, const double *dy, const double *x, int n, int h, int w, int cin, int cout)
{
    double *dU = tu_dalloc((size_t)16 * cin * cout), *v = tu_dalloc((size_t)16 * cin);
    memset(dU, 0, (size_t)16 * cin * cout * sizeof *dU);
    for (int img = 0; img < n; img++)
        for (int ty = 0; ty < (h + 1) / 2; ty++)
            for (int tx = 0; tx < (w + 1) / 2; tx++) {
                for (int ci = 0; ci < cin; ci++)
                    ref_wino_input(v + 16 * ci, x, h, w, cin, img, ty, tx, ci);
                for (int co = 0; co < cout; co++) {
                    double g[2][2], t[4][2];
                    for (int i = 0; i < 2; i++)
                        for (int j = 0; j < 2; j++) {
                            int oy = 2 * ty + i, ox = 2 * tx + j;
                            g[i][j] = oy < h && ox < w ? dy[(((size_t)img * h + oy) * w + ox) * cout + co] : 0;
                        }
                    for (int r = 0; r < 4; r++)
                        for (int j = 0; j < 2; j++)
                            t[r][j] = AT[0][r] * g[0][j] + AT[1][r] * g[1][j];
                    for (int r = 0; r < 4; r++)
                        for (int q = 0; q < 4; q++) {
                            double dm = bf(t[r][0] * AT[0][q] + t[r][1] * AT[1][q]);
                            for (int ci = 0; ci < cin; ci++)
                                dU[((size_t)(r * 4 + q) * cout + co) * cin + ci] += dm * v[16 * ci + r * 4 + q];
                        }
                }
            }
    for (int co = 0; co < cout; co++)
        for (int ci = 0; ci < cin; ci++) {
            double t[3][4];
            for (int a = 0; a < 3; a++)
                for (int q = 0; q < 4; q++) {
                    t[a][q] = 0;
                    for (int r = 0; r < 4; r++)
                        t[a][q] += G3[r][a] * dU[((size_t)(r * 4 + q) * cout + co) * cin + ci];
                }
            for (int a = 0; a < 3; a++)
                for (int b = 0; b < 3; b++) {
                    double s = 0;
                    for (int q = 0; q < 4; q++)
                        s += t[a][q] * G3[q][b];
                    dw[((size_t)co * cin + ci) * 9 + a * 3 + b] = s;
                }
        }
    free(dU), free(v);
}

/* Errors of y, dx, dw from the bf16 Winograd reference (3x3 stride-1 "same" layers). */
static void ref_wino_errors(double e[3], const float *y, const float *dx, const float *dw, const input *x,
                            const input *wt, const input *dy, const hallu_conv2d_geom *g)
{
    size_t nx = (size_t)g->n * g->h * g->w * g->cin, ny = (size_t)g->n * g->h * g->w * g->cout;
    size_t nw = (size_t)g->cout * g->cin * 9;
    double *ry = tu_dalloc(ny), *rdx = tu_dalloc(nx), *rdw = tu_dalloc(nw);
    double *U = ref_wino_weights(wt->f, g->cin, g->cout);
    ref_wino_forward(ry, x->d_bf, U, g->n, g->h, g->w, g->cin, g->cout);
    free(U);
    /* dx: the same convolution of dy with the kernels rotated, channel axes swapped */
    float *wr = tu_falloc(nw);
    for (int co = 0; co < g->cout; co++)
        for (int ci = 0; ci < g->cin; ci++)
            for (int t = 0; t < 9; t++)
                wr[((size_t)ci * g->cout + co) * 9 + t] = wt->f[((size_t)co * g->cin + ci) * 9 + 8 - t];
    U = ref_wino_weights(wr, g->cout, g->cin);
    ref_wino_forward(rdx, dy->d_bf, U, g->n, g->h, g->w, g->cout, g->cin);
    ref_wino_dw(rdw, dy->d_bf, x->d_bf, g->n, g->h, g->w, g->cin, g->cout);
    e[0] = rel(y, ry, ny), e[1] = rel(dx, rdx, nx), e[2] = rel(dw, rdw, nw);
    free(U), free(wr), free(ry), free(rdx), free(rdw);
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
    be->ops->conv2d_forward(plan, y_d, x_d, NULL, w_d);
    be->ops->conv2d_backward(plan, dx_d, dw_d, dy_d, NULL, x_d, NULL, w_d);
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
    int direct = ey < 1e-5 && edx < 1e-5 && edw < 1e-5, wino = 0;
    double ew[3] = { 1, 1, 1 };
    if (!direct && k == 3 && stride == 1 && pad == 1) {
        ref_wino_errors(ew, y, dx, dw, &x, &wt, &dy, &g);
        wino = ew[0] < 1e-5 && ew[1] < 1e-5 && ew[2] < 1e-5;
        printf("  from the bf16 Winograd reference: y %.1e dx %.1e dw %.1e\n", ew[0], ew[1], ew[2]);
        g_wino_ran += wino;
    }
    CHECK_MSG(direct || wino, "bf16 conv %d->%d k%d s%d: not the product of bf16-rounded inputs with fp32 "
              "accumulation (y %.2e dx %.2e dw %.2e), nor bf16 Winograd's (y %.2e dx %.2e dw %.2e)", cin, cout, k,
              stride, ey, edx, edw, ew[0], ew[1], ew[2]);
    CHECK_MSG(eu > 1e-4, "bf16 conv %d->%d k%d s%d: output as exact as fp32 (%.2e): not computed in bf16", cin, cout,
              k, stride, eu);
    same_with_x16(be, plan, x_d, w_d, dy_d, nx, ny, nw);
    if (be->ops->conv2d_forward_y16) {   /* the product stored in bf16: bf16 of conv2d_forward's y, bit for bit */
        uint16_t *y16_d = dev(be, NULL, ny * 2), *y16 = tu_xmalloc(ny * 2);
        be->ops->conv2d_forward(plan, y_d, x_d, NULL, w_d);   /* x_d is a ReLU output now (same_with_x16) */
        CHECK_OK(hallu_backend_download(be, y, y_d, ny * 4, &err), &err);
        int done = be->ops->conv2d_forward_y16(plan, y16_d, x_d, NULL, w_d);
        CHECK_MSG(done, "conv %d->%d k%d s%d: conv2d_forward_y16 refused a bf16 plan", cin, cout, k, stride);
        CHECK_OK(hallu_backend_download(be, y16, y16_d, ny * 2, &err), &err);
        size_t off = 0;
        for (size_t i = 0; i < ny; i++)
            off += y16[i] != bf16_bits(y[i]);
        printf("  conv2d_forward_y16: %zu of %zu elements differ from bf16(y)\n", off, ny);
        CHECK_MSG(!done || off == 0, "conv %d->%d k%d s%d: conv2d_forward_y16 is not bf16(y) (%zu elements)", cin,
                  cout, k, stride, off);
        be->ops->release(be, y16_d);
        free(y16);
    }
    if (be->ops->conv2d_backward_dx16) {   /* the input gradient in bf16: bf16 of conv2d_backward's dx, bit for bit */
        uint16_t *dx16_d = dev(be, NULL, nx * 2), *dx16 = tu_xmalloc(nx * 2);
        be->ops->conv2d_backward(plan, dx_d, NULL, dy_d, NULL, x_d, NULL, w_d);
        CHECK_OK(hallu_backend_download(be, dx, dx_d, nx * 4, &err), &err);
        int done = be->ops->conv2d_backward_dx16(plan, dx16_d, NULL, dy_d, NULL, x_d, NULL, w_d);
        CHECK_OK(hallu_backend_download(be, dx16, dx16_d, nx * 2, &err), &err);
        size_t off = 0;
        for (size_t i = 0; i < nx && done; i++)
            off += dx16[i] != bf16_bits(dx[i]);
        printf("  conv2d_backward_dx16: %s, %zu of %zu elements differ from bf16(dx)\n", done ? "ran" : "refused",
               off, nx);
        CHECK_MSG(off == 0, "conv %d->%d k%d s%d: conv2d_backward_dx16 is not bf16(dx) (%zu elements)", cin, cout, k,
                  stride, off);
        g_dx16_ran += done;
        be->ops->release(be, dx16_d);
        free(dx16);
    }
    void *bufs[] = { x_d, w_d, dy_d, y_d, dx_d, dw_d };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        be->ops->release(be, bufs[i]);
    be->ops->conv2d_plan_free(plan);
    input_free(&x), input_free(&wt), input_free(&dy);
    free(y), free(dx), free(dw), free(ry), free(rdx), free(rdw), free(uy);
}

/* A ResNet (CIFAR stem) forward and backward in bf16 on two instances:
 * features into the host array, the weight gradients returned (malloc'd,
 * *ngrad floats). */
enum { NET_BATCH = 3, NET_HW = 16 };
static float *run_resnet(hallu_backend *be, const char *arch, float *features, int64_t *ngrad)
{
    hallu_error err = { 0 };
    hallu_params ps;
    hallu_params_init(&ps);
    hallu_resnet *net = NULL;
    hallu_resnet_config rc;
    CHECK_OK(hallu_resnet_parse_arch(arch, "cifar", &rc, &err), &err);
    if (hallu_resnet_create(&net, &rc, &ps, "", &err) != HALLU_OK || hallu_params_alloc(&ps, be, &err) != HALLU_OK ||
        hallu_resnet_plan(net, be, NET_BATCH, NET_HW, NET_HW, 2, &err) != HALLU_OK) {
        CHECK_MSG(0, "resnet setup: %s", err.msg);
        hallu_resnet_free(net, be);
        hallu_params_free(&ps);
        return NULL;
    }
    CHECK_OK(hallu_resnet_init_weights(net, &ps, 3, &err), &err);
    int dim = hallu_resnet_feature_dim(net);
    size_t nx = (size_t)NET_BATCH * NET_HW * NET_HW * 3, nf = (size_t)NET_BATCH * dim;
    hallu_rng rng;
    hallu_rng_init(&rng, 77, 1);
    input x0 = input_new(nx, &rng, 1.0), x1 = input_new(nx, &rng, 1.0), df = input_new(nf, &rng, 1.0);
    float *x_d[2] = { dev(be, x0.f, nx * 4), dev(be, x1.f, nx * 4) }, *df_d = dev(be, df.f, nf * 4);
    hallu_nn_ctx ctx = { .be = be, .ps = &ps, .training = 1 };
    hallu_params_zero_grad(&ps);
    for (int inst = 0; inst < 2; inst++) {
        const float *f = NULL;
        CHECK_OK(hallu_resnet_forward(net, &ctx, inst, x_d[inst], NET_BATCH, &f, &err), &err);
        CHECK_OK(hallu_backend_download(be, features + inst * nf, f, nf * 4, &err), &err);
    }
    for (int inst = 1; inst >= 0; inst--)   /* backward of the first instance after the second's */
        CHECK_OK(hallu_resnet_backward(net, &ctx, inst, df_d, &err), &err);
    *ngrad = ps.trainable_numel;
    float *grad = tu_falloc((size_t)ps.trainable_numel);
    CHECK_OK(hallu_params_download_grad(&ps, grad, &err), &err);
    be->ops->release(be, x_d[0]), be->ops->release(be, x_d[1]), be->ops->release(be, df_d);
    input_free(&x0), input_free(&x1), input_free(&df);
    hallu_resnet_free(net, be);
    hallu_params_free(&ps);
    return grad;
}

/* Features and weight gradients of a ResNet through the ops table `ops`. */
static float *run_with(hallu_backend *be, const hallu_backend_ops *ops, const char *arch, float *features,
                       int64_t *ngrad)
{
    hallu_backend with = *be;
    with.ops = ops;
    return run_resnet(&with, arch, features, ngrad);
}

static double max_rel(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        num = d > num ? d : num;
        den = fabs((double)b[i]) > den ? fabs((double)b[i]) : den;
    }
    return num / (den > 0 ? den : 1);
}

/* The network on the backend as it is (in bf16: its ReLUs keep bf16 copies
 * of the convolutions' inputs, batch norm gives their output gradients in
 * bf16; in both precisions: batch norm, residual add and ReLU fused) and
 * through a copy of its op table without those ops (relu_forward_x16,
 * batchnorm_backward_x16, the fused batch norm ops: every convolution rounds x
 * and dy itself, batch norm, add and ReLU run one after the other): the same
 * features and weight gradients, bit for bit. */
typedef struct net_result {
    float *f, *g;   /* features, weight gradients */
    int64_t ng;
} net_result;

static void test_resnet_ops(hallu_backend *be, const char *arch, int feature_dim, const net_result *fp32_ref)
{
    if (!be->ops->relu_forward_x16 && !be->ops->batchnorm_normalize_fused)
        return;
    /* Without conv2d_forward_y16 and batchnorm_stats_x16 the convolutions'
     * outputs stay fp32 (see pre16 below), the other ops change no bit. */
    hallu_backend_ops fp32_pre = *be->ops;
    fp32_pre.conv2d_forward_y16 = NULL;
    fp32_pre.batchnorm_stats_x16 = NULL;
    fp32_pre.conv2d_backward_dx16 = NULL;   /* the input gradients in bf16: one more rounding, as the outputs' */
    hallu_backend_ops plain_ops = *be->ops;
    plain_ops.relu_forward_x16 = NULL;
    plain_ops.batchnorm_backward_x16 = NULL;
    plain_ops.batchnorm_normalize_fused = NULL;
    plain_ops.batchnorm_backward_fused = NULL;
    plain_ops.batchnorm_stats_x16 = NULL;
    plain_ops.conv2d_forward_y16 = NULL;
    plain_ops.add_relu_backward = NULL;
    hallu_backend plain = *be;
    plain.ops = &plain_ops;
    size_t nf = (size_t)2 * NET_BATCH * feature_dim;
    int64_t ng[2] = { 0, 0 };
    float *f[2] = { tu_falloc(nf), tu_falloc(nf) }, *g[2];
    g[0] = run_with(be, &fp32_pre, arch, f[0], &ng[0]);
    g[1] = run_resnet(&plain, arch, f[1], &ng[1]);
    if (!g[0] || !g[1] || ng[0] != ng[1]) {
        CHECK_MSG(0, "resnet runs: no gradients");
        return;
    }
    int same_f = memcmp(f[0], f[1], nf * 4) == 0, same_g = memcmp(g[0], g[1], (size_t)ng[0] * 4) == 0;
    const char *prec = hallu_backend_precision(be) == HALLU_PRECISION_BF16 ? "bf16" : "fp32";
    printf("%s %s with the fused and bf16-copy ops vs without: features %s, weight gradients %s\n", arch, prec,
           same_f ? "same bits" : "DIFFER", same_g ? "same bits" : "DIFFER");
    CHECK_MSG(same_f && same_g, "%s %s: the fused / bf16-copy ops change the result (features %d, gradients %d)",
              arch, prec, same_f, same_g);
    if (be->ops->conv2d_forward_y16 && fp32_ref && fp32_ref->g && fp32_ref->ng == ng[0]) {
        /* pre16: the convolutions' outputs stored in bf16 (as autocast stores
         * them) change the numbers by one more bf16 rounding per layer; the
         * ops that do it are checked bit for bit on their own (test_conv
         * above, test_backend_ops). Here: the network's distance from the fp32
         * network stays of the order bf16 products alone give (this tiny net,
         * batch 3 at 16x16, amplifies roundings through its few-row batch
         * norms: both are large). */
        float *f16 = tu_falloc(nf);
        int64_t n16 = 0;
        float *g16 = run_resnet(be, arch, f16, &n16);
        double ef16 = max_rel(f16, fp32_ref->f, nf), ef = max_rel(f[0], fp32_ref->f, nf);
        double eg16 = g16 && n16 == ng[0] ? max_rel(g16, fp32_ref->g, (size_t)n16) : 1e9;
        double eg = max_rel(g[0], fp32_ref->g, (size_t)ng[0]);
        printf("%s bf16 vs fp32, max error / max: conv outputs in bf16: features %.1e, weight gradients %.1e; in "
               "fp32: %.1e, %.1e\n", arch, ef16, eg16, ef, eg);
        CHECK_MSG(memcmp(f16, f[0], nf * 4) != 0, "%s: conv outputs in bf16 changed nothing", arch);
        CHECK_MSG(ef16 < 3 * ef + 1e-3 && eg16 < 3 * eg + 1e-3, "%s: bf16 conv outputs move the result from fp32's "
                  "(features %.2e, gradients %.2e) far more than bf16 products do (%.2e, %.2e)", arch, ef16, eg16, ef,
                  eg);
        free(f16), free(g16);
    }
    free(f[0]), free(f[1]), free(g[0]), free(g[1]);
}

int main(void)
{
    hallu_error err = { 0 };
    hallu_backend *be = NULL;
    if (test_backend_create(&be, 2, &err) != HALLU_OK)
        return 1;
    test_resnet_ops(be, "resnet18", 512, NULL);    /* fp32: the fused batch norm ops alone */
    net_result ref[2] = { { 0 } };   /* fp32 results, resnet18 and resnet50 */
    const char *arch[2] = { "resnet18", "resnet50" };
    for (int a = 0; a < 2; a++) {
        ref[a].f = tu_falloc((size_t)2 * NET_BATCH * (a ? 2048 : 512));
        ref[a].g = run_resnet(be, arch[a], ref[a].f, &ref[a].ng);
    }
    hallu_status s = hallu_backend_set_precision(be, HALLU_PRECISION_BF16, &err);
    if (s == HALLU_ERR_UNSUPPORTED) {
        printf("bf16 skipped: %s\n", err.msg);
        for (int a = 0; a < 2; a++)
            free(ref[a].f), free(ref[a].g);
        hallu_backend_free(be);
        return check_summary() ? 1 : 77;
    }
    CHECK_OK(s, &err);
    test_conv(be, 2, 8, 8, 3, 16, 3, 1, 1);      /* the CIFAR stem's first layer */
    test_conv(be, 2, 8, 8, 32, 32, 3, 1, 1);     /* a 3x3 body layer (Winograd in fp32) */
    test_conv(be, 2, 8, 8, 32, 64, 3, 2, 1);     /* stride 2 */
    test_conv(be, 2, 16, 16, 16, 32, 3, 2, 1);   /* stride 2, 64 output pixels: oneDNN's backward data */
    test_conv(be, 2, 8, 8, 32, 64, 1, 2, 0);     /* a downsample 1x1 */
    /* Outputs of <= 64 pixels and stride-2 1x1 layers take the weight gradient
     * by im2col + bf16 matmul (cpu_conv_gemm.c), 3x3 layers with <= 16 output
     * pixels all three passes; the others oneDNN's kernels. */
    test_conv(be, 2, 16, 16, 16, 32, 3, 1, 1);   /* 256 output pixels: oneDNN's backward weights */
    test_conv(be, 65, 32, 32, 8, 16, 1, 2, 0);   /* 64-image GEMM chunks and a 1-image tail */
    test_conv(be, 3, 4, 4, 32, 48, 3, 1, 1);     /* 4x4 -> 4x4: forward, dx and dw by GEMM */
    test_conv(be, 1025, 4, 4, 8, 8, 3, 1, 1);    /* ... in 1024-image chunks and a 1-image tail */
    test_conv(be, 513, 4, 4, 16, 16, 3, 1, 1);   /* bf16 Winograd: 512-image chunks and a 1-image tail */
    /* conv2d_backward_dx16 runs on the stride-1 layers whose dx is a forward
     * convolution (32->32 and 16->32 by oneDNN, 8->8 4x4 by GEMM), on oneDNN's
     * stride-2 backward data (16->32 at 16x16) and the 1x1 stride-2 GEMM ones
     * (two): 6 of the 10 geometries */
    CHECK_MSG(!be->ops->conv2d_backward_dx16 || g_dx16_ran >= 6, "conv2d_backward_dx16 ran on %d geometries, "
              "expected 6", g_dx16_ran);
    /* Winograd's geometries: 32->32 8x8, 16->32 16x16, 32->48 and 16->16 4x4 (8->8: too few channels) */
    const char *want_wino = getenv("HALLU_TEST_EXPECT_WINOGRAD");
    printf("bf16 Winograd ran on %d geometries\n", g_wino_ran);
    CHECK_MSG(!(want_wino && *want_wino == '1') || g_wino_ran == 4, "bf16 Winograd ran on %d geometries, expected 4 "
              "with oneDNN's ISA below AMX", g_wino_ran);
    test_resnet_ops(be, "resnet18", 512, &ref[0]);   /* basic blocks */
    test_resnet_ops(be, "resnet50", 2048, &ref[1]);  /* bottleneck blocks: three units, the middle one's input a ReLU output */
    for (int a = 0; a < 2; a++)
        free(ref[a].f), free(ref[a].g);
    hallu_backend_free(be);
    return check_summary();
}
