/* Finite-difference proof of every backward pass in the double-precision
 * reference (tests/support/ref_ops.c). Tensor-valued ops are reduced to the
 * scalar L = sum(y * r) with a fixed random r, so the analytic gradient is the
 * op's backward applied to dy = r. Central differences with h = 1e-6 in double
 * have truncation error ~h^2 and round-off ~1e-16/h, far below the 1e-6
 * tolerance; inputs are built away from kinks (ReLU at 0, max-pool ties, the
 * l2-norm clamp at eps) so no perturbation crosses one.
 *
 * Flatten needs no check: NHWC [n][h][w][c] and [n][h*w*c] are the same bytes,
 * so its forward and backward are the identity (the model passes pointers). */
#include "check.h"
#include "ref_ops.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#define FD_H 1e-6
#define FD_TOL 1e-6

typedef double (*loss_fn)(void *ctx);

static double dot(const double *a, const double *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* Perturbs p[i] in place (restoring it) and compares the central difference of
 * f with analytic[i]. The analytic gradient must be non-trivial, or the check
 * would pass vacuously. */
static void check_grad(const char *op, const char *name, double *p, size_t n, const double *analytic,
                       loss_fn f, void *ctx)
{
    double *num = tu_dalloc(n);
    for (size_t i = 0; i < n; i++) {
        double save = p[i];
        p[i] = save + FD_H;
        double lp = f(ctx);
        p[i] = save - FD_H;
        double lm = f(ctx);
        p[i] = save;
        num[i] = (lp - lm) / (2 * FD_H);
    }
    double na = tu_norm_d(analytic, n), nn = tu_norm_d(num, n);
    double diff2 = 0;
    for (size_t i = 0; i < n; i++)
        diff2 += (num[i] - analytic[i]) * (num[i] - analytic[i]);
    double rel = sqrt(diff2) / (na > nn ? na : nn);
    printf("  %-34s %-7s rel err %.2e (|g| %.3g)\n", op, name, rel, na);
    CHECK_MSG(na > 1e-8, "%s %s: analytic gradient is zero", op, name);
    CHECK_MSG(rel <= FD_TOL, "%s %s: rel error %.3e > %.1e", op, name, rel, FD_TOL);
    free(num);
}

/* ---- conv2d ---- */

typedef struct { hallu_conv2d_geom g; double *x, *w, *r, *y; } conv_ctx;

static double conv_loss(void *p)
{
    conv_ctx *c = p;
    ref_conv2d_forward(c->y, c->x, c->w, &c->g);
    return dot(c->y, c->r, (size_t)c->g.n * c->g.oh * c->g.ow * c->g.cout);
}

static void gradcheck_conv(int n, int h, int w, int cin, int cout, int k, int stride, int pad, uint64_t seed)
{
    conv_ctx c;
    hallu_error err;
    CHECK_OK(hallu_conv2d_geom_init(&c.g, n, h, w, cin, cout, k, stride, pad, &err), &err);
    size_t nx = (size_t)n * h * w * cin, nw = (size_t)cout * cin * k * k;
    size_t ny = (size_t)n * c.g.oh * c.g.ow * cout;
    hallu_rng rng;
    hallu_rng_init(&rng, seed, 0);
    c.x = tu_dalloc(nx), c.w = tu_dalloc(nw), c.r = tu_dalloc(ny), c.y = tu_dalloc(ny);
    tu_fill_normal_d(c.x, nx, &rng, 1.0);
    tu_fill_normal_d(c.w, nw, &rng, 0.5);
    tu_fill_normal_d(c.r, ny, &rng, 1.0);
    double *dx = tu_dalloc(nx), *dw = tu_dalloc(nw);
    ref_conv2d_backward(dx, dw, c.r, c.x, c.w, &c.g);
    char name[96];
    snprintf(name, sizeof name, "conv2d n%d %dx%d %d->%d k%d s%d p%d", n, h, w, cin, cout, k, stride, pad);
    check_grad(name, "dx", c.x, nx, dx, conv_loss, &c);
    check_grad(name, "dw", c.w, nw, dw, conv_loss, &c);
    free(c.x), free(c.w), free(c.r), free(c.y), free(dx), free(dw);
}

/* ---- batch norm (training mode) ---- */

typedef struct { int64_t m; int c; double *x, *gamma, *beta, *r, *y, *mean, *invstd; } bn_ctx;

static double bn_loss(void *p)
{
    bn_ctx *b = p;
    ref_batchnorm_forward_train(b->y, b->mean, b->invstd, NULL, NULL, b->x, b->gamma, b->beta,
                                b->m, b->c, 0.1, 1e-5);
    return dot(b->y, b->r, (size_t)b->m * b->c);
}

static void gradcheck_bn(const char *what, int64_t m, int c, int affine, uint64_t seed)
{
    bn_ctx b = { .m = m, .c = c };
    size_t nx = (size_t)m * c;
    hallu_rng rng;
    hallu_rng_init(&rng, seed, 0);
    b.x = tu_dalloc(nx), b.r = tu_dalloc(nx), b.y = tu_dalloc(nx);
    b.mean = tu_dalloc(c), b.invstd = tu_dalloc(c);
    tu_fill_normal_d(b.x, nx, &rng, 2.0);
    tu_fill_normal_d(b.r, nx, &rng, 1.0);
    double *dgamma = NULL, *dbeta = NULL;
    if (affine) {
        b.gamma = tu_dalloc(c), b.beta = tu_dalloc(c), dgamma = tu_dalloc(c), dbeta = tu_dalloc(c);
        tu_fill_uniform_d(b.gamma, c, &rng, 0.5, 1.5);
        tu_fill_normal_d(b.beta, c, &rng, 1.0);
    }
    double *dx = tu_dalloc(nx);
    bn_loss(&b);   /* fills save_mean/save_invstd at the base point */
    ref_batchnorm_backward(dx, dgamma, dbeta, b.r, b.x, b.mean, b.invstd, b.gamma, m, c);
    check_grad(what, "dx", b.x, nx, dx, bn_loss, &b);
    if (affine) {
        check_grad(what, "dgamma", b.gamma, c, dgamma, bn_loss, &b);
        check_grad(what, "dbeta", b.beta, c, dbeta, bn_loss, &b);
    }
    free(b.x), free(b.r), free(b.y), free(b.mean), free(b.invstd), free(dx);
    free(b.gamma), free(b.beta), free(dgamma), free(dbeta);
}

/* ---- relu, add, global average pool: small elementwise/reduction ops ---- */

typedef struct { int64_t n; double *x, *r, *y; } relu_ctx;

static double relu_loss(void *p)
{
    relu_ctx *c = p;
    ref_relu_forward(c->y, c->x, c->n);
    return dot(c->y, c->r, (size_t)c->n);
}

static void gradcheck_relu(void)
{
    relu_ctx c = { .n = 60 };
    hallu_rng rng;
    hallu_rng_init(&rng, 11, 0);
    c.x = tu_dalloc(60), c.r = tu_dalloc(60), c.y = tu_dalloc(60);
    double *dx = tu_dalloc(60);
    tu_fill_away_from_zero_d(c.x, 60, &rng, 0.05, 1.0);
    tu_fill_normal_d(c.r, 60, &rng, 1.0);
    relu_loss(&c);
    ref_relu_backward(dx, c.r, c.y, c.n);
    check_grad("relu", "dx", c.x, 60, dx, relu_loss, &c);
    int zeros = 0;
    for (int i = 0; i < 60; i++)
        zeros += dx[i] == 0.0;
    CHECK_MSG(zeros > 5 && zeros < 55, "relu: %d of 60 gradients gated; inputs should mix signs", zeros);
    free(c.x), free(c.r), free(c.y), free(dx);
}

typedef struct { int64_t n; double *a, *b, *r, *y; } add_ctx;

static double add_loss(void *p)
{
    add_ctx *c = p;
    ref_add(c->y, c->a, c->b, c->n);
    return dot(c->y, c->r, (size_t)c->n);
}

/* The residual add's backward is dy for both branches (the model passes it on). */
static void gradcheck_add(void)
{
    add_ctx c = { .n = 24 };
    hallu_rng rng;
    hallu_rng_init(&rng, 12, 0);
    c.a = tu_dalloc(24), c.b = tu_dalloc(24), c.r = tu_dalloc(24), c.y = tu_dalloc(24);
    tu_fill_normal_d(c.a, 24, &rng, 1.0);
    tu_fill_normal_d(c.b, 24, &rng, 1.0);
    tu_fill_normal_d(c.r, 24, &rng, 1.0);
    check_grad("add (residual)", "da", c.a, 24, c.r, add_loss, &c);
    check_grad("add (residual)", "db", c.b, 24, c.r, add_loss, &c);
    free(c.a), free(c.b), free(c.r), free(c.y);
}

typedef struct { int n, hw, c; double *x, *r, *y; } gap_ctx;

static double gap_loss(void *p)
{
    gap_ctx *g = p;
    ref_global_avgpool_forward(g->y, g->x, g->n, g->hw, g->c);
    return dot(g->y, g->r, (size_t)g->n * g->c);
}

static void gradcheck_gap(void)
{
    gap_ctx g = { .n = 2, .hw = 5, .c = 3 };
    size_t nx = 30, ny = 6;
    hallu_rng rng;
    hallu_rng_init(&rng, 13, 0);
    g.x = tu_dalloc(nx), g.r = tu_dalloc(ny), g.y = tu_dalloc(ny);
    double *dx = tu_dalloc(nx);
    tu_fill_normal_d(g.x, nx, &rng, 1.0);
    tu_fill_normal_d(g.r, ny, &rng, 1.0);
    ref_global_avgpool_backward(dx, g.r, g.n, g.hw, g.c);
    check_grad("global_avgpool n2 hw5 c3", "dx", g.x, nx, dx, gap_loss, &g);
    free(g.x), free(g.r), free(g.y), free(dx);
}

/* ---- max pool ---- */

typedef struct { hallu_pool2d_geom g; double *x, *r, *y; int32_t *arg; } pool_ctx;

static double pool_loss(void *p)
{
    pool_ctx *c = p;
    ref_maxpool2d_forward(c->y, c->arg, c->x, &c->g);
    return dot(c->y, c->r, (size_t)c->g.n * c->g.oh * c->g.ow * c->g.c);
}

static void gradcheck_maxpool(int n, int h, int w, int ch, uint64_t seed)
{
    pool_ctx c;
    hallu_error err;
    CHECK_OK(hallu_pool2d_geom_init(&c.g, n, h, w, ch, 3, 2, 1, &err), &err);
    size_t nx = (size_t)n * h * w * ch, ny = (size_t)n * c.g.oh * c.g.ow * ch;
    hallu_rng rng;
    hallu_rng_init(&rng, seed, 0);
    c.x = tu_dalloc(nx), c.r = tu_dalloc(ny), c.y = tu_dalloc(ny);
    c.arg = tu_xmalloc(ny * sizeof(int32_t));
    double *dx = tu_dalloc(nx);
    tu_fill_distinct_d(c.x, nx, &rng, 0.01);   /* ties impossible; h=1e-6 never flips a max */
    tu_fill_normal_d(c.r, ny, &rng, 1.0);
    pool_loss(&c);
    ref_maxpool2d_backward(dx, c.r, c.arg, &c.g);
    char name[64];
    snprintf(name, sizeof name, "maxpool 3x3/2 p1 n%d %dx%d c%d", n, h, w, ch);
    check_grad(name, "dx", c.x, nx, dx, pool_loss, &c);
    free(c.x), free(c.r), free(c.y), free(c.arg), free(dx);
}

/* ---- linear ---- */

typedef struct { int rows, in, out; double *x, *w, *b, *r, *y; } lin_ctx;

static double lin_loss(void *p)
{
    lin_ctx *c = p;
    ref_linear_forward(c->y, c->x, c->w, c->b, c->rows, c->in, c->out);
    return dot(c->y, c->r, (size_t)c->rows * c->out);
}

static void gradcheck_linear(int with_bias)
{
    lin_ctx c = { .rows = 4, .in = 5, .out = 3 };
    size_t nx = 20, nw = 15, ny = 12;
    hallu_rng rng;
    hallu_rng_init(&rng, 14 + (uint64_t)with_bias, 0);
    c.x = tu_dalloc(nx), c.w = tu_dalloc(nw), c.r = tu_dalloc(ny), c.y = tu_dalloc(ny);
    c.b = with_bias ? tu_dalloc(3) : NULL;
    double *dx = tu_dalloc(nx), *dw = tu_dalloc(nw), *db = with_bias ? tu_dalloc(3) : NULL;
    tu_fill_normal_d(c.x, nx, &rng, 1.0);
    tu_fill_normal_d(c.w, nw, &rng, 1.0);
    tu_fill_normal_d(c.r, ny, &rng, 1.0);
    if (with_bias)
        tu_fill_normal_d(c.b, 3, &rng, 1.0);
    ref_linear_backward(dx, dw, db, c.r, c.x, c.w, c.rows, c.in, c.out);
    const char *name = with_bias ? "linear 4x5->3 bias" : "linear 4x5->3 no bias";
    check_grad(name, "dx", c.x, nx, dx, lin_loss, &c);
    check_grad(name, "dw", c.w, nw, dw, lin_loss, &c);
    if (with_bias)
        check_grad(name, "db", c.b, 3, db, lin_loss, &c);
    free(c.x), free(c.w), free(c.b), free(c.r), free(c.y), free(dx), free(dw), free(db);
}

/* ---- column concat / slice ---- */

typedef struct { int rows, ca, cb; double *a, *b, *r, *y; } cat_ctx;

static double cat_loss(void *p)
{
    cat_ctx *c = p;
    int cols = c->ca + c->cb;
    ref_copy_cols(c->y, cols, 0, c->a, c->ca, c->rows);
    ref_copy_cols(c->y, cols, c->ca, c->b, c->cb, c->rows);
    return dot(c->y, c->r, (size_t)c->rows * cols);
}

static double slice_loss(void *p)
{
    cat_ctx *c = p;   /* reused: y [rows][cb] = columns [ca, ca+cb) of a [rows][ca+cb] */
    ref_slice_cols(c->y, c->cb, c->a, c->ca + c->cb, c->ca, c->rows);
    return dot(c->y, c->r, (size_t)c->rows * c->cb);
}

static void gradcheck_concat_slice(void)
{
    cat_ctx c = { .rows = 3, .ca = 4, .cb = 2 };
    hallu_rng rng;
    hallu_rng_init(&rng, 16, 0);
    c.a = tu_dalloc(18), c.b = tu_dalloc(6), c.r = tu_dalloc(18), c.y = tu_dalloc(18);
    tu_fill_normal_d(c.a, 12, &rng, 1.0);
    tu_fill_normal_d(c.b, 6, &rng, 1.0);
    tu_fill_normal_d(c.r, 18, &rng, 1.0);
    double *da = tu_dalloc(18), *db = tu_dalloc(6);
    /* concat's backward slices dy */
    ref_slice_cols(da, 4, c.r, 6, 0, 3);
    ref_slice_cols(db, 2, c.r, 6, 4, 3);
    check_grad("concat cols 3x(4|2)", "da", c.a, 12, da, cat_loss, &c);
    check_grad("concat cols 3x(4|2)", "db", c.b, 6, db, cat_loss, &c);
    /* slice's backward scatters dy into zeros */
    tu_fill_normal_d(c.a, 18, &rng, 1.0);
    memset(da, 0, 18 * sizeof(double));
    ref_copy_cols(da, 6, 4, c.r, 2, 3);
    check_grad("slice cols 3x6 [4,6)", "dx", c.a, 18, da, slice_loss, &c);
    free(c.a), free(c.b), free(c.r), free(c.y), free(da), free(db);
}

/* ---- row l2-normalisation ---- */

typedef struct { int rows, cols; double eps; double *x, *r, *y; } l2_ctx;

static double l2_loss(void *p)
{
    l2_ctx *c = p;
    ref_l2norm_rows_forward(c->y, NULL, c->x, c->rows, c->cols, c->eps);
    return dot(c->y, c->r, (size_t)c->rows * c->cols);
}

/* The last row is scaled below eps to prove the clamped branch too. */
static void gradcheck_l2norm(double eps, int tiny_last_row)
{
    l2_ctx c = { .rows = 4, .cols = 6, .eps = eps };
    size_t n = 24;
    hallu_rng rng;
    hallu_rng_init(&rng, 17, 0);
    c.x = tu_dalloc(n), c.r = tu_dalloc(n), c.y = tu_dalloc(n);
    double *dx = tu_dalloc(n);
    tu_fill_normal_d(c.x, n, &rng, 1.0);
    tu_fill_normal_d(c.r, n, &rng, 1.0);
    /* r is scaled down on the tiny row too: its gradient r/eps would otherwise
     * dwarf the other rows' and hide their errors in the relative norm */
    if (tiny_last_row)
        for (int j = 0; j < 6; j++)
            c.x[18 + j] *= 1e-4, c.r[18 + j] *= eps;
    ref_l2norm_rows_backward(dx, c.r, c.x, c.rows, c.cols, c.eps);
    char name[64];
    snprintf(name, sizeof name, "l2norm rows 4x6 eps %g%s", eps, tiny_last_row ? " +tiny row" : "");
    check_grad(name, "dx", c.x, n, dx, l2_loss, &c);
    if (tiny_last_row) {
        double y[24], nrm[4];
        ref_l2norm_rows_forward(y, nrm, c.x, 4, 6, eps);
        CHECK(nrm[3] < eps && nrm[0] > eps);
        CHECK_NEAR(y[18], c.x[18] / eps, 1e-15);
    }
    free(c.x), free(c.r), free(c.y), free(dx);
}

/* ---- softmax cross-entropy ---- */

typedef struct { int rows, classes; double *z, *p; int32_t *t; } xent_ctx;

static double xent_loss(void *p)
{
    xent_ctx *c = p;
    return ref_softmax_xent_forward(c->p, c->z, c->t, c->rows, c->classes);
}

static void gradcheck_xent(void)
{
    xent_ctx c = { .rows = 5, .classes = 7 };
    size_t n = 35;
    hallu_rng rng;
    hallu_rng_init(&rng, 18, 0);
    c.z = tu_dalloc(n), c.p = tu_dalloc(n);
    c.t = tu_xmalloc(5 * sizeof(int32_t));
    double *dz = tu_dalloc(n);
    tu_fill_normal_d(c.z, n, &rng, 2.0);
    tu_fill_targets(c.t, 5, &rng, 7);
    xent_loss(&c);
    ref_softmax_xent_backward(dz, c.p, c.t, c.rows, c.classes, 1.0);
    check_grad("softmax_xent 5x7", "dlogits", c.z, n, dz, xent_loss, &c);
    /* loss value against a direct formula on row 0 of a 1-row problem */
    double z1[3] = { 1.0, 2.0, 3.0 }, p1[3];
    int32_t t1 = 0;
    double l = ref_softmax_xent_forward(p1, z1, &t1, 1, 3);
    CHECK_NEAR(l, log(exp(1.0) + exp(2.0) + exp(3.0)) - 1.0, 1e-12);
    CHECK_NEAR(p1[0] + p1[1] + p1[2], 1.0, 1e-15);
    free(c.z), free(c.p), free(c.t), free(dz);
}

/* ---- the running-statistics and gemm semantics have no gradient: check by formula ---- */

static void check_bn_running_stats(void)
{
    double x[6] = { 1, 10, 2, 20, 6, 60 };   /* m=3, c=2 */
    double y[6], mean[2], invstd[2], rm[2] = { 0.5, 0.0 }, rv[2] = { 1.0, 2.0 };
    ref_batchnorm_forward_train(y, mean, invstd, rm, rv, x, NULL, NULL, 3, 2, 0.1, 1e-5);
    CHECK_NEAR(mean[0], 3.0, 1e-14);
    CHECK_NEAR(invstd[0], 1.0 / sqrt(14.0 / 3.0 + 1e-5), 1e-14);   /* biased var 14/3 */
    CHECK_NEAR(rm[0], 0.9 * 0.5 + 0.1 * 3.0, 1e-14);
    CHECK_NEAR(rv[0], 0.9 * 1.0 + 0.1 * 7.0, 1e-14);               /* unbiased var 14/2 */
    CHECK_NEAR(rv[1], 0.9 * 2.0 + 0.1 * 700.0, 1e-12);
    double ye[2], g[2] = { 2, 3 }, b[2] = { 1, -1 };
    ref_batchnorm_forward_eval(ye, x, rm, rv, g, b, 1, 2, 1e-5);
    CHECK_NEAR(ye[0], (1 - rm[0]) / sqrt(rv[0] + 1e-5) * 2 + 1, 1e-14);
}

static void check_gemm_transposes(void)
{
    enum { M = 3, N = 4, K = 5 };
    double a[M * K], at[K * M], b[K * N], bt[N * K], c0[M * N], c[M * N];
    hallu_rng rng;
    hallu_rng_init(&rng, 19, 0);
    tu_fill_normal_d(a, M * K, &rng, 1.0);
    tu_fill_normal_d(b, K * N, &rng, 1.0);
    tu_fill_normal_d(c0, M * N, &rng, 1.0);
    for (int i = 0; i < M; i++)
        for (int p = 0; p < K; p++)
            at[p * M + i] = a[i * K + p];
    for (int p = 0; p < K; p++)
        for (int j = 0; j < N; j++)
            bt[j * K + p] = b[p * N + j];
    double want[M * N];
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int p = 0; p < K; p++)
                s += a[i * K + p] * b[p * N + j];
            want[i * N + j] = 1.5 * s - 0.5 * c0[i * N + j];
        }
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            memcpy(c, c0, sizeof c);
            ref_gemm(ta, tb, M, N, K, 1.5, ta ? at : a, tb ? bt : b, -0.5, c);
            CHECK_MSG(tu_rel_error_dd(c, want, M * N) < 1e-14, "ref_gemm ta=%d tb=%d", ta, tb);
        }
}

int main(void)
{
    gradcheck_conv(2, 5, 5, 3, 4, 1, 1, 0, 1);
    gradcheck_conv(1, 5, 6, 2, 3, 1, 2, 0, 2);
    gradcheck_conv(2, 6, 6, 3, 4, 3, 1, 1, 3);
    gradcheck_conv(1, 7, 7, 2, 3, 3, 1, 0, 4);
    gradcheck_conv(2, 7, 7, 3, 4, 3, 2, 1, 5);
    gradcheck_conv(1, 6, 6, 2, 3, 3, 2, 0, 6);
    gradcheck_conv(1, 9, 9, 3, 2, 7, 2, 3, 7);
    gradcheck_conv(1, 8, 8, 2, 2, 7, 1, 0, 8);
    gradcheck_bn("batchnorm2d NHWC rows 2x3x3 c4", 18, 4, 1, 9);
    gradcheck_bn("batchnorm1d 8x5", 8, 5, 1, 10);
    gradcheck_bn("batchnorm1d 8x5 affine=false", 8, 5, 0, 20);
    gradcheck_relu();
    gradcheck_add();
    gradcheck_gap();
    gradcheck_maxpool(2, 7, 7, 3, 21);
    gradcheck_maxpool(1, 8, 6, 2, 22);
    gradcheck_linear(1);
    gradcheck_linear(0);
    gradcheck_concat_slice();
    gradcheck_l2norm(1e-12, 0);
    gradcheck_l2norm(1e-2, 1);
    gradcheck_xent();
    check_bn_running_stats();
    check_gemm_transposes();
    return check_summary();
}
