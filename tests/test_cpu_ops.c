/* The CPU backend (fp32, oneDNN/OpenMP) against the double-precision
 * reference in tests/support/ref_ops.c, op by op: forward outputs and every
 * gradient within a relative error of 1e-5. Inputs are rounded to float first,
 * so both sides see identical values and only the arithmetic differs.
 *
 * Also pinned here, because model code depends on them: activation gradients
 * overwrite their buffer (pre-filled with NaN, so any read of the old contents
 * shows), parameter gradients accumulate onto existing values, running
 * statistics update, eval mode, bit-identical repeated runs, NULL "not needed"
 * gradients, and errors (with a message) for invalid geometry. */
#include "check.h"
#include "hallu/backend.h"
#include "ref_ops.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#define TOL 1e-5

/* A tensor held twice: double for the reference, float for the backend, with
 * equal values. */
typedef struct { size_t n; double *d; float *f; } pair;

static pair pair_new(size_t n)
{
    return (pair){ n, tu_dalloc(n), tu_falloc(n) };
}

static pair pair_normal(size_t n, hallu_rng *rng, double sd)
{
    pair p = pair_new(n);
    tu_fill_normal_d(p.d, n, rng, sd);
    tu_round_to_float(p.d, n);
    tu_d2f(p.f, p.d, n);
    return p;
}

static void pair_free(pair *p)
{
    free(p->d), free(p->f);
    p->d = NULL, p->f = NULL;
}

/* Garbage for buffers the op must overwrite: NaN poisons any read of it. */
static void fill_nan(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = NAN;
}

static int close_named(const char *op, const char *what, const float *got, const double *want, size_t n)
{
    char name[160];
    snprintf(name, sizeof name, "%s %s", op, what);
    return tu_close_fd(name, got, want, n, TOL);
}

#define CLOSE(op, what, got, want, n) CHECK_MSG(close_named(op, what, got, want, n), "%s %s", op, what)

/* ---- conv2d ---- */

static void test_conv(hallu_backend *be, int n, int h, int w, int cin, int cout, int k, int stride, int pad)
{
    hallu_error err;
    hallu_conv2d_geom g;
    hallu_conv2d_plan *plan = NULL;
    char op[96];
    snprintf(op, sizeof op, "conv2d n%d %dx%d %d->%d k%d s%d p%d", n, h, w, cin, cout, k, stride, pad);
    CHECK_OK(hallu_conv2d_geom_init(&g, n, h, w, cin, cout, k, stride, pad, &err), &err);
    CHECK_OK(be->ops->conv2d_plan_create(be, &g, &plan, &err), &err);
    if (!plan)
        return;
    size_t nx = (size_t)n * h * w * cin, nw = (size_t)cout * cin * k * k, ny = (size_t)n * g.oh * g.ow * cout;
    hallu_rng rng;
    hallu_rng_init(&rng, 100 + (uint64_t)k * 10 + (uint64_t)stride, 0);
    pair x = pair_normal(nx, &rng, 1.0), wt = pair_normal(nw, &rng, 0.3), dy = pair_normal(ny, &rng, 1.0);
    pair y = pair_new(ny), dx = pair_new(nx), dw = pair_normal(nw, &rng, 1.0);   /* dw starts non-zero */

    fill_nan(y.f, ny);
    be->ops->conv2d_forward(plan, y.f, x.f, NULL, wt.f);
    ref_conv2d_forward(y.d, x.d, wt.d, &g);
    CLOSE(op, "y", y.f, y.d, ny);

    fill_nan(dx.f, nx);
    be->ops->conv2d_backward(plan, dx.f, dw.f, dy.f, NULL, x.f, NULL, wt.f);
    ref_conv2d_backward(dx.d, dw.d, dy.d, x.d, wt.d, &g);   /* dw.d = initial + grad */
    CLOSE(op, "dx", dx.f, dx.d, nx);
    CLOSE(op, "dw (accumulated)", dw.f, dw.d, nw);

    /* NULL means "not needed": dx alone, then dw alone */
    float *dw_before = tu_falloc(nw);
    memcpy(dw_before, dw.f, nw * sizeof(float));
    fill_nan(dx.f, nx);
    be->ops->conv2d_backward(plan, dx.f, NULL, dy.f, NULL, x.f, NULL, wt.f);
    CLOSE(op, "dx (dw=NULL)", dx.f, dx.d, nx);
    CHECK(memcmp(dw_before, dw.f, nw * sizeof(float)) == 0);
    memset(dw.f, 0, nw * sizeof(float));
    memset(dw.d, 0, nw * sizeof(double));
    be->ops->conv2d_backward(plan, NULL, dw.f, dy.f, NULL, x.f, NULL, wt.f);
    ref_conv2d_backward(NULL, dw.d, dy.d, x.d, wt.d, &g);
    CLOSE(op, "dw (dx=NULL)", dw.f, dw.d, nw);

    free(dw_before);
    be->ops->conv2d_plan_free(plan);
    pair_free(&x), pair_free(&wt), pair_free(&dy), pair_free(&y), pair_free(&dx), pair_free(&dw);
}

/* ---- batch norm ---- */

static void test_batchnorm(hallu_backend *be, const char *op, int64_t m, int c, int affine)
{
    size_t nx = (size_t)m * c;
    hallu_rng rng;
    hallu_rng_init(&rng, 200 + (uint64_t)m + (uint64_t)affine, 0);
    pair x = pair_normal(nx, &rng, 2.0), dy = pair_normal(nx, &rng, 1.0);
    for (size_t i = 0; i < nx; i++)   /* per-column offsets make the mean matter */
        x.d[i] += 0.5 * (double)(i % (size_t)c);
    tu_round_to_float(x.d, nx);
    tu_d2f(x.f, x.d, nx);
    pair gamma = pair_new(c), beta = pair_new(c), dgamma = pair_normal(c, &rng, 1.0), dbeta = pair_normal(c, &rng, 1.0);
    tu_fill_uniform_d(gamma.d, c, &rng, 0.5, 1.5);
    tu_round_to_float(gamma.d, c);
    tu_d2f(gamma.f, gamma.d, c);
    tu_fill_normal_d(beta.d, c, &rng, 1.0);
    tu_round_to_float(beta.d, c);
    tu_d2f(beta.f, beta.d, c);
    pair rm = pair_normal(c, &rng, 1.0), rv = pair_new(c);
    tu_fill_uniform_d(rv.d, c, &rng, 0.5, 1.5);
    tu_round_to_float(rv.d, c);
    tu_d2f(rv.f, rv.d, c);
    pair y = pair_new(nx), mean = pair_new(c), invstd = pair_new(c), dx = pair_new(nx);
    const float momentum = 0.1f, eps = 1e-5f;

    fill_nan(y.f, nx);
    be->ops->batchnorm_forward_train(be, y.f, mean.f, invstd.f, rm.f, rv.f, x.f,
                                     affine ? gamma.f : NULL, affine ? beta.f : NULL, m, c, momentum, eps);
    ref_batchnorm_forward_train(y.d, mean.d, invstd.d, rm.d, rv.d, x.d, affine ? gamma.d : NULL,
                                affine ? beta.d : NULL, m, c, momentum, eps);
    CLOSE(op, "y (train)", y.f, y.d, nx);
    CLOSE(op, "save_mean", mean.f, mean.d, c);
    CLOSE(op, "save_invstd", invstd.f, invstd.d, c);
    CLOSE(op, "running_mean", rm.f, rm.d, c);
    CLOSE(op, "running_var (unbiased)", rv.f, rv.d, c);

    fill_nan(dx.f, nx);
    be->ops->batchnorm_backward(be, dx.f, affine ? dgamma.f : NULL, affine ? dbeta.f : NULL, dy.f, x.f,
                                mean.f, invstd.f, affine ? gamma.f : NULL, m, c);
    ref_batchnorm_backward(dx.d, affine ? dgamma.d : NULL, affine ? dbeta.d : NULL, dy.d, x.d,
                           mean.d, invstd.d, affine ? gamma.d : NULL, m, c);
    CLOSE(op, "dx", dx.f, dx.d, nx);
    if (affine) {
        CLOSE(op, "dgamma (accumulated)", dgamma.f, dgamma.d, c);
        CLOSE(op, "dbeta (accumulated)", dbeta.f, dbeta.d, c);
    }

    /* eval mode uses the (just updated) running statistics, not the batch's */
    tu_f2d(rm.d, rm.f, c);
    tu_f2d(rv.d, rv.f, c);
    fill_nan(y.f, nx);
    be->ops->batchnorm_forward_eval(be, y.f, x.f, rm.f, rv.f, affine ? gamma.f : NULL,
                                    affine ? beta.f : NULL, m, c, eps);
    ref_batchnorm_forward_eval(y.d, x.d, rm.d, rv.d, affine ? gamma.d : NULL, affine ? beta.d : NULL, m, c, eps);
    CLOSE(op, "y (eval)", y.f, y.d, nx);

    pair_free(&x), pair_free(&dy), pair_free(&gamma), pair_free(&beta), pair_free(&dgamma);
    pair_free(&dbeta), pair_free(&rm), pair_free(&rv), pair_free(&y), pair_free(&mean);
    pair_free(&invstd), pair_free(&dx);
}

/* ---- elementwise ---- */

static void test_elementwise(hallu_backend *be)
{
    const int64_t n = 1003;   /* odd: exercises any vector tail */
    hallu_rng rng;
    hallu_rng_init(&rng, 300, 0);
    pair x = pair_normal(n, &rng, 1.0), b = pair_normal(n, &rng, 1.0), dy = pair_normal(n, &rng, 1.0);
    pair y = pair_new(n), dx = pair_new(n);

    fill_nan(y.f, n);
    be->ops->relu_forward(be, y.f, x.f, n);
    ref_relu_forward(y.d, x.d, n);
    CLOSE("relu", "y", y.f, y.d, n);
    float *inplace = tu_falloc(n);
    memcpy(inplace, x.f, n * sizeof(float));
    be->ops->relu_forward(be, inplace, inplace, n);
    CHECK(memcmp(inplace, y.f, n * sizeof(float)) == 0);

    fill_nan(dx.f, n);
    be->ops->relu_backward(be, dx.f, dy.f, y.f, n);
    ref_relu_backward(dx.d, dy.d, y.d, n);
    CLOSE("relu", "dx", dx.f, dx.d, n);
    memcpy(inplace, dy.f, n * sizeof(float));
    be->ops->relu_backward(be, inplace, inplace, y.f, n);
    CHECK(memcmp(inplace, dx.f, n * sizeof(float)) == 0);

    fill_nan(y.f, n);
    be->ops->add(be, y.f, x.f, b.f, n);
    ref_add(y.d, x.d, b.d, n);
    CLOSE("add", "y", y.f, y.d, n);

    memcpy(y.f, b.f, n * sizeof(float));
    memcpy(y.d, b.d, n * sizeof(double));
    be->ops->axpy(be, y.f, -0.75f, x.f, n);
    ref_axpy(y.d, -0.75, x.d, n);
    CLOSE("axpy", "y", y.f, y.d, n);

    fill_nan(y.f, n);
    be->ops->scale(be, y.f, 2.5f, x.f, n);
    ref_scale(y.d, 2.5, x.d, n);
    CLOSE("scale", "y", y.f, y.d, n);

    free(inplace);
    pair_free(&x), pair_free(&b), pair_free(&dy), pair_free(&y), pair_free(&dx);
}

/* ---- pooling ---- */

static void test_maxpool(hallu_backend *be, int n, int h, int w, int c, int all_negative)
{
    hallu_error err;
    hallu_pool2d_geom g;
    CHECK_OK(hallu_pool2d_geom_init(&g, n, h, w, c, 3, 2, 1, &err), &err);
    size_t nx = (size_t)n * h * w * c, ny = (size_t)n * g.oh * g.ow * c;
    char op[80];
    snprintf(op, sizeof op, "maxpool 3x3/2 p1 n%d %dx%d c%d%s", n, h, w, c, all_negative ? " negative" : "");
    hallu_rng rng;
    hallu_rng_init(&rng, 400 + (uint64_t)all_negative, 0);
    pair x = pair_new(nx), y = pair_new(ny), dy = pair_normal(ny, &rng, 1.0), dx = pair_new(nx);
    tu_fill_distinct_d(x.d, nx, &rng, 0.01);   /* no ties: argmax is unique */
    /* all negative: padding must still never win (it is not a zero) */
    for (size_t i = 0; i < nx && all_negative; i++)
        x.d[i] = -1.0 - fabs(x.d[i]) - 0.001 * (double)(i % 7);
    tu_round_to_float(x.d, nx);
    tu_d2f(x.f, x.d, nx);
    int32_t *arg_f = tu_xmalloc(ny * sizeof(int32_t)), *arg_d = tu_xmalloc(ny * sizeof(int32_t));

    fill_nan(y.f, ny);
    be->ops->maxpool2d_forward(be, y.f, arg_f, x.f, &g);
    ref_maxpool2d_forward(y.d, arg_d, x.d, &g);
    CLOSE(op, "y", y.f, y.d, ny);
    size_t arg_mismatch = 0;
    for (size_t i = 0; i < ny; i++)
        arg_mismatch += arg_f[i] != arg_d[i];
    CHECK_MSG(arg_mismatch == 0, "%s: %zu of %zu argmax differ", op, arg_mismatch, ny);

    fill_nan(dx.f, nx);
    be->ops->maxpool2d_backward(be, dx.f, dy.f, arg_d, &g);
    ref_maxpool2d_backward(dx.d, dy.d, arg_d, &g);
    CLOSE(op, "dx", dx.f, dx.d, nx);

    free(arg_f), free(arg_d);
    pair_free(&x), pair_free(&y), pair_free(&dy), pair_free(&dx);
}

/* After a ReLU most windows hold equal zeros: the first maximum (row-major) must
 * take the gradient, as in PyTorch, or the backward differs from the reference.
 * A NaN must win its windows (PyTorch propagates it). */
static void test_maxpool_ties_nan(hallu_backend *be)
{
    hallu_error err;
    hallu_pool2d_geom g;
    CHECK_OK(hallu_pool2d_geom_init(&g, 2, 9, 8, 4, 3, 2, 1, &err), &err);
    size_t nx = (size_t)2 * 9 * 8 * 4, ny = (size_t)2 * g.oh * g.ow * 4;
    hallu_rng rng;
    hallu_rng_init(&rng, 450, 0);
    pair x = pair_new(nx), y = pair_new(ny), dy = pair_normal(ny, &rng, 1.0), dx = pair_new(nx);
    for (size_t i = 0; i < nx; i++)
        x.d[i] = (double)hallu_rng_below(&rng, 3) * (hallu_rng_below(&rng, 4) == 0);   /* mostly 0 */
    tu_d2f(x.f, x.d, nx);
    int32_t *arg_f = tu_xmalloc(ny * sizeof(int32_t)), *arg_d = tu_xmalloc(ny * sizeof(int32_t));
    be->ops->maxpool2d_forward(be, y.f, arg_f, x.f, &g);
    ref_maxpool2d_forward(y.d, arg_d, x.d, &g);
    CLOSE("maxpool ties", "y", y.f, y.d, ny);
    size_t mismatch = 0;
    for (size_t i = 0; i < ny; i++)
        mismatch += arg_f[i] != arg_d[i];
    CHECK_MSG(mismatch == 0, "maxpool ties: %zu of %zu argmax differ from the first maximum", mismatch, ny);
    fill_nan(dx.f, nx);
    be->ops->maxpool2d_backward(be, dx.f, dy.f, arg_f, &g);
    ref_maxpool2d_backward(dx.d, dy.d, arg_d, &g);
    CLOSE("maxpool ties", "dx", dx.f, dx.d, nx);

    x.f[(size_t)(3 * 8 + 3) * 4 + 1] = NAN;   /* image 0, pixel (3,3): in 2x2 windows */
    x.d[(size_t)(3 * 8 + 3) * 4 + 1] = NAN;
    be->ops->maxpool2d_forward(be, y.f, arg_f, x.f, &g);
    ref_maxpool2d_forward(y.d, arg_d, x.d, &g);
    size_t nan_f = 0, nan_d = 0, nan_differ = 0;
    for (size_t i = 0; i < ny; i++) {
        nan_f += isnan(y.f[i]), nan_d += isnan(y.d[i]);
        nan_differ += isnan(y.f[i]) != isnan(y.d[i]) || arg_f[i] != arg_d[i];
    }
    CHECK_MSG(nan_d == 4 && nan_f == nan_d && nan_differ == 0,
              "maxpool NaN: %zu NaN outputs (reference %zu, expected 4), %zu positions differ", nan_f, nan_d, nan_differ);
    free(arg_f), free(arg_d);
    pair_free(&x), pair_free(&y), pair_free(&dy), pair_free(&dx);
}

static void test_global_avgpool(hallu_backend *be)
{
    const int n = 3, hw = 49, c = 32;
    size_t nx = (size_t)n * hw * c, ny = (size_t)n * c;
    hallu_rng rng;
    hallu_rng_init(&rng, 500, 0);
    pair x = pair_normal(nx, &rng, 1.0), dy = pair_normal(ny, &rng, 1.0), y = pair_new(ny), dx = pair_new(nx);
    fill_nan(y.f, ny);
    be->ops->global_avgpool_forward(be, y.f, x.f, n, hw, c);
    ref_global_avgpool_forward(y.d, x.d, n, hw, c);
    CLOSE("global_avgpool", "y", y.f, y.d, ny);
    fill_nan(dx.f, nx);
    be->ops->global_avgpool_backward(be, dx.f, dy.f, n, hw, c);
    ref_global_avgpool_backward(dx.d, dy.d, n, hw, c);
    CLOSE("global_avgpool", "dx", dx.f, dx.d, nx);
    pair_free(&x), pair_free(&dy), pair_free(&y), pair_free(&dx);
}

/* ---- dense ---- */

static void test_gemm(hallu_backend *be)
{
    const int m = 7, n = 9, k = 11;
    hallu_rng rng;
    hallu_rng_init(&rng, 600, 0);
    pair a = pair_normal((size_t)m * k, &rng, 1.0), b = pair_normal((size_t)k * n, &rng, 1.0);
    pair c0 = pair_normal((size_t)m * n, &rng, 1.0), c = pair_new((size_t)m * n);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int beta_zero = 0; beta_zero < 2; beta_zero++) {
                char op[64];
                snprintf(op, sizeof op, "gemm ta=%d tb=%d beta=%s", ta, tb, beta_zero ? "0" : "0.5");
                float beta = beta_zero ? 0.0f : 0.5f;
                /* BLAS convention: beta == 0 ignores C, so garbage there must not leak */
                if (beta_zero)
                    fill_nan(c.f, c.n);
                else
                    memcpy(c.f, c0.f, c.n * sizeof(float));
                memcpy(c.d, c0.d, c.n * sizeof(double));
                /* the same buffers read as the transposed shapes: only layout matters here */
                be->ops->gemm(be, ta, tb, m, n, k, 1.5f, a.f, b.f, beta, c.f);
                ref_gemm(ta, tb, m, n, k, 1.5, a.d, b.d, beta, c.d);
                CLOSE(op, "C", c.f, c.d, c.n);
            }
    pair_free(&a), pair_free(&b), pair_free(&c0), pair_free(&c);
}

static void test_linear(hallu_backend *be, int with_bias)
{
    const int rows = 16, in = 32, out = 24;
    const char *op = with_bias ? "linear 16x32->24 bias" : "linear 16x32->24 no bias";
    size_t nx = (size_t)rows * in, nw = (size_t)out * in, ny = (size_t)rows * out;
    hallu_rng rng;
    hallu_rng_init(&rng, 700 + (uint64_t)with_bias, 0);
    pair x = pair_normal(nx, &rng, 1.0), w = pair_normal(nw, &rng, 0.2), bias = pair_normal(out, &rng, 1.0);
    pair dy = pair_normal(ny, &rng, 1.0), y = pair_new(ny), dx = pair_new(nx);
    pair dw = pair_normal(nw, &rng, 1.0), db = pair_normal(out, &rng, 1.0);   /* non-zero: accumulate */

    fill_nan(y.f, ny);
    be->ops->linear_forward(be, y.f, x.f, w.f, with_bias ? bias.f : NULL, rows, in, out);
    ref_linear_forward(y.d, x.d, w.d, with_bias ? bias.d : NULL, rows, in, out);
    CLOSE(op, "y", y.f, y.d, ny);

    fill_nan(dx.f, nx);
    be->ops->linear_backward(be, dx.f, dw.f, with_bias ? db.f : NULL, dy.f, x.f, w.f, rows, in, out);
    ref_linear_backward(dx.d, dw.d, with_bias ? db.d : NULL, dy.d, x.d, w.d, rows, in, out);
    CLOSE(op, "dx", dx.f, dx.d, nx);
    CLOSE(op, "dw (accumulated)", dw.f, dw.d, nw);
    if (with_bias)
        CLOSE(op, "db (accumulated)", db.f, db.d, out);

    /* dx = NULL (first layer): parameters still accumulate a second time */
    be->ops->linear_backward(be, NULL, dw.f, with_bias ? db.f : NULL, dy.f, x.f, w.f, rows, in, out);
    ref_linear_backward(NULL, dw.d, with_bias ? db.d : NULL, dy.d, x.d, w.d, rows, in, out);
    CLOSE(op, "dw (dx=NULL, twice)", dw.f, dw.d, nw);

    pair_free(&x), pair_free(&w), pair_free(&bias), pair_free(&dy), pair_free(&y);
    pair_free(&dx), pair_free(&dw), pair_free(&db);
}

/* ---- rows ---- */

static void test_l2norm(hallu_backend *be, float eps, double row_scale)
{
    const int rows = 8, cols = 32;
    size_t n = (size_t)rows * cols;
    char op[64];
    snprintf(op, sizeof op, "l2norm rows eps %g scale %g", eps, row_scale);
    hallu_rng rng;
    hallu_rng_init(&rng, 800, 0);
    pair x = pair_normal(n, &rng, row_scale), dy = pair_normal(n, &rng, 1.0), y = pair_new(n), dx = pair_new(n);
    pair norms = pair_new(rows);
    fill_nan(y.f, n);
    be->ops->l2norm_rows_forward(be, y.f, norms.f, x.f, rows, cols, eps);
    ref_l2norm_rows_forward(y.d, norms.d, x.d, rows, cols, eps);
    CLOSE(op, "y", y.f, y.d, n);
    /* whether norms holds the raw or the clamped norm is the backend's business,
     * unless no row is clamped */
    if (norms.d[0] > 10 * eps)
        CLOSE(op, "norms", norms.f, norms.d, rows);
    fill_nan(dx.f, n);
    be->ops->l2norm_rows_backward(be, dx.f, dy.f, x.f, norms.f, rows, cols, eps);
    ref_l2norm_rows_backward(dx.d, dy.d, x.d, rows, cols, eps);
    CLOSE(op, "dx", dx.f, dx.d, n);
    pair_free(&x), pair_free(&dy), pair_free(&y), pair_free(&dx), pair_free(&norms);
}

static void test_softmax_xent(hallu_backend *be)
{
    const int rows = 16, classes = 10;
    size_t n = (size_t)rows * classes;
    hallu_rng rng;
    hallu_rng_init(&rng, 900, 0);
    pair z = pair_normal(n, &rng, 3.0), p = pair_new(n), dz = pair_new(n);
    int32_t t[16];
    tu_fill_targets(t, rows, &rng, classes);
    fill_nan(p.f, n);
    float loss = be->ops->softmax_xent_forward(be, p.f, z.f, t, rows, classes);
    double ref_loss = ref_softmax_xent_forward(p.d, z.d, t, rows, classes);
    CHECK_MSG(fabs(loss - ref_loss) <= TOL * fabs(ref_loss), "softmax_xent loss %.9g vs %.9g", loss, ref_loss);
    CLOSE("softmax_xent", "probs", p.f, p.d, n);
    fill_nan(dz.f, n);
    be->ops->softmax_xent_backward(be, dz.f, p.f, t, rows, classes, 0.5f);
    ref_softmax_xent_backward(dz.d, p.d, t, rows, classes, 0.5);
    CLOSE("softmax_xent", "dlogits (scale 0.5)", dz.f, dz.d, n);
    /* large logits must not overflow (max subtraction) */
    for (size_t i = 0; i < n; i++)
        z.f[i] = (float)(z.d[i] += 500.0);
    loss = be->ops->softmax_xent_forward(be, p.f, z.f, t, rows, classes);
    CHECK_MSG(fabs(loss - ref_loss) <= 1e-4 * fabs(ref_loss), "softmax_xent +500 shift: %.9g vs %.9g", loss, ref_loss);
    pair_free(&z), pair_free(&p), pair_free(&dz);
}

/* Copies must be exact and must leave every other column untouched. */
static void test_copy_slice_cols(hallu_backend *be)
{
    const int rows = 5, cols_dst = 9, col0 = 3, cols_src = 4;
    hallu_rng rng;
    hallu_rng_init(&rng, 1000, 0);
    pair src = pair_normal((size_t)rows * cols_src, &rng, 1.0), dst = pair_normal((size_t)rows * cols_dst, &rng, 1.0);
    be->ops->copy_cols(be, dst.f, cols_dst, col0, src.f, cols_src, rows);
    ref_copy_cols(dst.d, cols_dst, col0, src.d, cols_src, rows);
    CHECK(tu_max_abs_diff_fd(dst.f, dst.d, dst.n) == 0.0);
    float back[20];
    fill_nan(back, 20);
    be->ops->slice_cols(be, back, cols_src, dst.f, cols_dst, col0, rows);
    CHECK(memcmp(back, src.f, sizeof back) == 0);
    double sl[2 * 5];
    ref_slice_cols(sl, 2, dst.d, cols_dst, 7, rows);
    float slf[2 * 5];
    be->ops->slice_cols(be, slf, 2, dst.f, cols_dst, 7, rows);
    CHECK(tu_max_abs_diff_fd(slf, sl, 10) == 0.0);
    pair_free(&src), pair_free(&dst);
}

/* ---- determinism: the same calls twice give the same bits ---- */

static void run_conv_bn_once(hallu_backend *be, hallu_conv2d_plan *plan, const hallu_conv2d_geom *g,
                             const float *x, const float *w, const float *dy, float *out)
{
    size_t nx = (size_t)g->n * g->h * g->w * g->cin, nw = (size_t)g->cout * g->cin * g->k * g->k;
    size_t ny = (size_t)g->n * g->oh * g->ow * g->cout;
    int64_t m = (int64_t)g->n * g->oh * g->ow;
    float *y = out, *dx = out + ny, *dw = dx + nx, *z = dw + nw, *mean = z + ny, *invstd = mean + g->cout;
    float *rm = invstd + g->cout, *rv = rm + g->cout, *dz = rv + g->cout;
    float gamma[64], beta[64];
    for (int i = 0; i < g->cout; i++)
        gamma[i] = 1.0f + 0.01f * (float)i, beta[i] = 0.1f, rm[i] = 0.0f, rv[i] = 1.0f;
    memset(dw, 0, nw * sizeof(float));
    be->ops->conv2d_forward(plan, y, x, NULL, w);
    be->ops->batchnorm_forward_train(be, z, mean, invstd, rm, rv, y, gamma, beta, m, g->cout, 0.1f, 1e-5f);
    be->ops->batchnorm_backward(be, dz, NULL, NULL, dy, y, mean, invstd, gamma, m, g->cout);
    be->ops->conv2d_backward(plan, dx, dw, dz, NULL, x, NULL, w);
}

/* cin 8 runs oneDNN, cin 16 Winograd (see the conv tests in main). */
static void test_determinism(hallu_backend *be, int cin)
{
    hallu_error err;
    hallu_conv2d_geom g;
    hallu_conv2d_plan *plan = NULL;
    CHECK_OK(hallu_conv2d_geom_init(&g, 2, 16, 16, cin, 16, 3, 1, 1, &err), &err);
    CHECK_OK(be->ops->conv2d_plan_create(be, &g, &plan, &err), &err);
    if (!plan)
        return;
    size_t nx = 2 * 16 * 16 * (size_t)cin, nw = 16 * (size_t)cin * 9, ny = 2 * 16 * 16 * 16;
    size_t total = ny + nx + nw + ny + 4 * 16 + ny;
    hallu_rng rng;
    hallu_rng_init(&rng, 1100, 0);
    float *x = tu_falloc(nx), *w = tu_falloc(nw), *dy = tu_falloc(ny);
    tu_fill_normal_f(x, nx, &rng, 1.0);
    tu_fill_normal_f(w, nw, &rng, 0.3);
    tu_fill_normal_f(dy, ny, &rng, 1.0);
    float *a = tu_falloc(total), *b = tu_falloc(total);
    run_conv_bn_once(be, plan, &g, x, w, dy, a);
    run_conv_bn_once(be, plan, &g, x, w, dy, b);
    CHECK_MSG(memcmp(a, b, total * sizeof(float)) == 0,
              "conv+bn forward/backward not bit-identical across runs (cin %d)", cin);
    be->ops->conv2d_plan_free(plan);
    free(x), free(w), free(dy), free(a), free(b);
}

/* ---- errors ---- */

static void test_invalid_geometry(hallu_backend *be)
{
    hallu_error err;
    hallu_conv2d_geom g;
    hallu_conv2d_plan *plan = NULL;
    memset(&g, 0, sizeof g);
    err.msg[0] = '\0';
    CHECK(be->ops->conv2d_plan_create(be, &g, &plan, &err) != HALLU_OK);
    CHECK(plan == NULL);
    CHECK_MSG(strlen(err.msg) > 0, "conv2d_plan_create: empty error message for zero geometry");
    /* a hand-filled geometry whose output size disagrees with its input */
    CHECK_OK(hallu_conv2d_geom_init(&g, 1, 8, 8, 3, 4, 3, 1, 1, &err), &err);
    g.oh = 99;
    err.msg[0] = '\0';
    plan = NULL;
    CHECK(be->ops->conv2d_plan_create(be, &g, &plan, &err) != HALLU_OK);
    CHECK(plan == NULL);
    CHECK_MSG(strlen(err.msg) > 0, "conv2d_plan_create: empty error message for inconsistent oh");
    printf("  conv2d_plan_create rejects bad geometry: %s\n", err.msg);
    hallu_pool2d_geom pg;
    CHECK(hallu_pool2d_geom_init(&pg, 1, 8, 8, 3, 3, 2, 2, &err) == HALLU_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "maxpool2d") != NULL && strstr(err.msg, "pad=2") != NULL);
    CHECK(hallu_conv2d_geom_init(&g, 1, 4, 4, 3, 4, 3, 0, 1, &err) == HALLU_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "stride=0") != NULL);
}

int main(void)
{
    hallu_error err;
    hallu_backend *be = NULL;
    CHECK_OK(hallu_backend_cpu_create(&be, 2, &err), &err);
    if (!be)
        return check_summary();
    test_conv(be, 2, 16, 16, 8, 16, 3, 1, 1);
    test_conv(be, 2, 16, 16, 8, 16, 3, 2, 1);
    test_conv(be, 2, 16, 16, 8, 16, 1, 1, 0);
    test_conv(be, 2, 16, 16, 8, 16, 1, 2, 0);
    test_conv(be, 2, 20, 20, 3, 16, 7, 2, 3);
    test_conv(be, 1, 9, 7, 5, 6, 3, 1, 0);
    /* 3x3 stride-1 pad-1 with >= 16 channels each side runs Winograd F(2x2, 3x3):
     * odd edges; 21 images of 32x32 = eleven chunks of the shared buffers (512
     * tiles = 2 images each, the last one partial); the GEMMs split by tiles
     * between threads up to 1 MiB of transformed weights, by matrices above
     * (136 -> 128 channels);
     * unequal channels both ways. The 8->16 geometry above stays on oneDNN. */
    test_conv(be, 3, 7, 5, 16, 16, 3, 1, 1);
    test_conv(be, 21, 32, 32, 16, 16, 3, 1, 1);
    test_conv(be, 2, 4, 4, 32, 24, 3, 1, 1);
    test_conv(be, 2, 6, 6, 17, 40, 3, 1, 1);
    test_conv(be, 2, 5, 4, 136, 128, 3, 1, 1);
    test_batchnorm(be, "batchnorm2d rows 2x8x8 c16", 128, 16, 1);
    test_batchnorm(be, "batchnorm1d 32x8", 32, 8, 1);
    test_batchnorm(be, "batchnorm1d 32x8 affine=false", 32, 8, 0);
    test_elementwise(be);
    test_maxpool(be, 2, 16, 16, 8, 0);
    test_maxpool(be, 1, 7, 9, 3, 1);
    test_maxpool_ties_nan(be);
    test_global_avgpool(be);
    test_gemm(be);
    test_linear(be, 1);
    test_linear(be, 0);
    test_l2norm(be, 1e-12f, 1.0);
    test_l2norm(be, 1e-1f, 1e-3);
    test_softmax_xent(be);
    test_copy_slice_cols(be);
    test_determinism(be, 8);
    test_determinism(be, 16);
    test_invalid_geometry(be);
    hallu_backend_free(be);
    return check_summary();
}
