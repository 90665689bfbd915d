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
    CHECK_MSG(ey < 1e-5 && edx < 1e-5 && edw < 1e-5, "bf16 conv %d->%d k%d s%d: not the product of bf16-rounded "
              "inputs with fp32 accumulation (y %.2e dx %.2e dw %.2e)", cin, cout, k, stride, ey, edx, edw);
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
    /* conv2d_backward_dx16 runs on the stride-1 layers whose dx is a forward
     * convolution (32->32 and 16->32 by oneDNN, 8->8 4x4 by GEMM), on oneDNN's
     * stride-2 backward data (16->32 at 16x16) and the 1x1 stride-2 GEMM ones
     * (two): 6 of the 10 geometries */
    CHECK_MSG(!be->ops->conv2d_backward_dx16 || g_dx16_ran >= 6, "conv2d_backward_dx16 ran on %d geometries, "
              "expected 6", g_dx16_ran);
    test_resnet_ops(be, "resnet18", 512, &ref[0]);   /* basic blocks */
    test_resnet_ops(be, "resnet50", 2048, &ref[1]);  /* bottleneck blocks: three units, the middle one's input a ReLU output */
    for (int a = 0; a < 2; a++)
        free(ref[a].f), free(ref[a].g);
    hallu_backend_free(be);
    return check_summary();
}
