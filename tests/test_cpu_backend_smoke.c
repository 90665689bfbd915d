/* Quick checks of every CPU backend op on tiny, hand-checkable inputs, and of
 * the oneDNN convolution against naive double-precision loops. */
#include "check.h"
#include "hallu/backend.h"

#include <stdlib.h>
#include <omp.h>
#include <string.h>

static hallu_backend *be;

static float frand(unsigned *s)
{
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static float *fill(size_t n, unsigned seed)
{
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = frand(&seed);
    return p;
}

static double max_abs_diff(const float *a, const double *b, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(a[i] - b[i]));
    return m;
}

/* ---- convolution ---- */

static void naive_conv(const hallu_conv2d_geom *g, double *y, double *dx, double *dw, const float *x,
                       const float *w, const float *dy)
{
    for (int n = 0; n < g->n; n++)
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++)
                for (int co = 0; co < g->cout; co++) {
                    size_t yi = (((size_t)n * g->oh + oy) * g->ow + ox) * g->cout + co;
                    for (int ky = 0; ky < g->k; ky++)
                        for (int kx = 0; kx < g->k; kx++) {
                            int iy = oy * g->stride - g->pad + ky, ix = ox * g->stride - g->pad + kx;
                            if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w)
                                continue;
                            for (int ci = 0; ci < g->cin; ci++) {
                                size_t xi = (((size_t)n * g->h + iy) * g->w + ix) * g->cin + ci;
                                size_t wi = (((size_t)co * g->cin + ci) * g->k + ky) * g->k + kx;
                                y[yi] += (double)x[xi] * w[wi];
                                dx[xi] += (double)dy[yi] * w[wi];
                                dw[wi] += (double)dy[yi] * x[xi];
                            }
                        }
                }
}

static void test_conv_case(int n, int h, int w, int cin, int cout, int k, int stride, int pad)
{
    hallu_error err = { 0 };
    hallu_conv2d_geom g;
    CHECK_OK(hallu_conv2d_geom_init(&g, n, h, w, cin, cout, k, stride, pad, &err), &err);
    hallu_conv2d_plan *plan = NULL;
    CHECK_OK(be->ops->conv2d_plan_create(be, &g, &plan, &err), &err);
    if (!plan)
        return;
    size_t nx = (size_t)n * h * w * cin, ny = (size_t)n * g.oh * g.ow * cout, nw = (size_t)cout * cin * k * k;
    float *x = fill(nx, 1), *wt = fill(nw, 2), *dy = fill(ny, 3), *y = fill(ny, 9), *y2 = fill(ny, 10);
    float *dx = fill(nx, 4), *dw = fill(nw, 5), *dw0 = malloc(nw * sizeof *dw0);
    memcpy(dw0, dw, nw * sizeof *dw);
    double *ry = calloc(ny, sizeof *ry), *rdx = calloc(nx, sizeof *rdx), *rdw = calloc(nw, sizeof *rdw);
    naive_conv(&g, ry, rdx, rdw, x, wt, dy);
    for (size_t i = 0; i < nw; i++)
        rdw[i] += dw0[i];   /* backward accumulates into dw */
    be->ops->conv2d_forward(plan, y, x, NULL, wt);
    be->ops->conv2d_backward(plan, dx, dw, dy, NULL, x, NULL, wt);
    double tol = 1e-4 * (cin * k * k + n * g.oh * g.ow);
    CHECK_MSG(max_abs_diff(y, ry, ny) < tol, "conv fwd k%d s%d: %g", k, stride, max_abs_diff(y, ry, ny));
    CHECK_MSG(max_abs_diff(dx, rdx, nx) < tol, "conv dx k%d s%d: %g", k, stride, max_abs_diff(dx, rdx, nx));
    CHECK_MSG(max_abs_diff(dw, rdw, nw) < tol, "conv dw k%d s%d: %g", k, stride, max_abs_diff(dw, rdw, nw));
    /* Same inputs => same bits (forward and both gradients); NULL dx means weights only. */
    be->ops->conv2d_forward(plan, y2, x, NULL, wt);
    CHECK(memcmp(y, y2, ny * sizeof *y) == 0);
    float *dx2 = malloc(nx * sizeof *dx2), *dw2 = malloc(nw * sizeof *dw2);
    memcpy(dw2, dw0, nw * sizeof *dw);
    be->ops->conv2d_backward(plan, dx2, dw2, dy, NULL, x, NULL, wt);
    CHECK(memcmp(dx, dx2, nx * sizeof *dx) == 0 && memcmp(dw, dw2, nw * sizeof *dw) == 0);
    memcpy(dw2, dw0, nw * sizeof *dw);
    be->ops->conv2d_backward(plan, NULL, dw2, dy, NULL, x, NULL, wt);
    CHECK(memcmp(dw, dw2, nw * sizeof *dw) == 0);
    free(dx2);
    free(dw2);
    be->ops->conv2d_plan_free(plan);
    free(x); free(wt); free(dy); free(y); free(y2); free(dx); free(dw); free(dw0);
    free(ry); free(rdx); free(rdw);
}

static void test_conv(void)
{
    test_conv_case(2, 5, 6, 3, 8, 3, 1, 1);     /* CIFAR-style stem */
    test_conv_case(2, 8, 8, 16, 16, 3, 1, 1);
    test_conv_case(3, 8, 7, 16, 32, 3, 2, 1);   /* downsampling 3x3 */
    test_conv_case(2, 8, 8, 16, 32, 1, 2, 0);   /* shortcut 1x1 */
    test_conv_case(1, 9, 9, 3, 4, 7, 2, 3);     /* ImageNet-style stem */
    test_conv_case(2, 9, 9, 8, 8, 3, 1, 1);     /* many output pixels: oneDNN weight gradient */
    test_conv_case(130, 4, 4, 4, 4, 3, 1, 1);   /* GEMM weight gradient over several image chunks */

    hallu_error err = { 0 };
    hallu_conv2d_geom g;
    CHECK_OK(hallu_conv2d_geom_init(&g, 2, 8, 8, 4, 4, 3, 1, 1, &err), &err);
    g.oh = 7;   /* inconsistent output size */
    hallu_conv2d_plan *plan = (hallu_conv2d_plan *)&g;
    CHECK(be->ops->conv2d_plan_create(be, &g, &plan, &err) == HALLU_ERR_INVALID_ARG && plan == NULL);
    CHECK(strstr(err.msg, "conv2d_plan_create") != NULL);
    g.oh = 8;
    g.cin = 0;
    CHECK(be->ops->conv2d_plan_create(be, &g, &plan, &err) == HALLU_ERR_INVALID_ARG);
    CHECK(be->ops->conv2d_plan_create(be, NULL, &plan, &err) == HALLU_ERR_INVALID_ARG);
    be->ops->conv2d_plan_free(NULL);
}

/* ---- batch norm ---- */

static void test_batchnorm_case(int64_t m, int c)
{
    size_t n = (size_t)m * c;
    float *x = fill(n, 11), *dy = fill(n, 12), *y = malloc(n * sizeof *y), *y2 = malloc(n * sizeof *y2);
    float *dx = malloc(n * sizeof *dx), *gamma = fill(c, 13), *beta = fill(c, 14);
    float *sm = malloc(c * sizeof *sm), *si = malloc(c * sizeof *si), *rm = fill(c, 15), *rv = fill(c, 16);
    float *dg = fill(c, 17), *db = fill(c, 18);
    for (int j = 0; j < c; j++) {
        x[j] += 3.0f;   /* an offset channel mean exercises the shifted sums */
        rv[j] = fabsf(rv[j]) + 0.5f;
    }
    float *rm0 = malloc(c * sizeof *rm0), *rv0 = malloc(c * sizeof *rv0), *dg0 = malloc(c * sizeof *dg0), *db0 = malloc(c * sizeof *db0);
    memcpy(rm0, rm, c * sizeof *rm); memcpy(rv0, rv, c * sizeof *rv);
    memcpy(dg0, dg, c * sizeof *dg); memcpy(db0, db, c * sizeof *db);
    const float mom = 0.1f, eps = 1e-5f;
    be->ops->batchnorm_forward_train(be, y, sm, si, rm, rv, x, gamma, beta, m, c, mom, eps);
    be->ops->batchnorm_backward(be, dx, dg, db, dy, x, sm, si, gamma, m, c);
    double worst_y = 0, worst_dx = 0, worst_stat = 0, worst_p = 0;
    for (int j = 0; j < c; j++) {
        double mu = 0, var = 0, sdy = 0, sdyx = 0;
        for (int64_t r = 0; r < m; r++) mu += x[r * c + j];
        mu /= m;
        for (int64_t r = 0; r < m; r++) var += (x[r * c + j] - mu) * (x[r * c + j] - mu);
        var /= m;
        double is = 1.0 / sqrt(var + eps);
        for (int64_t r = 0; r < m; r++) {
            double xh = (x[r * c + j] - mu) * is;
            worst_y = fmax(worst_y, fabs(y[r * c + j] - (xh * gamma[j] + beta[j])));
            sdy += dy[r * c + j];
            sdyx += dy[r * c + j] * xh;
        }
        for (int64_t r = 0; r < m; r++) {
            double xh = (x[r * c + j] - mu) * is;
            double want = gamma[j] * is * (dy[r * c + j] - sdy / m - xh * sdyx / m);
            worst_dx = fmax(worst_dx, fabs(dx[r * c + j] - want));
        }
        worst_stat = fmax(worst_stat, fabs(sm[j] - mu) + fabs(si[j] - is) / is);
        worst_stat = fmax(worst_stat, fabs(rm[j] - (0.9 * rm0[j] + 0.1 * mu)));
        worst_stat = fmax(worst_stat, fabs(rv[j] - (0.9 * rv0[j] + 0.1 * var * m / (m - 1))));
        worst_p = fmax(worst_p, fabs(dg[j] - (dg0[j] + sdyx)) + fabs(db[j] - (db0[j] + sdy)));
    }
    CHECK_MSG(worst_y < 1e-4, "bn y m=%lld c=%d: %g", (long long)m, c, worst_y);
    CHECK_MSG(worst_dx < 1e-4, "bn dx: %g", worst_dx);
    CHECK_MSG(worst_stat < 1e-5, "bn stats: %g", worst_stat);
    CHECK_MSG(worst_p < 1e-3, "bn dgamma/dbeta: %g", worst_p);
    /* Same inputs => same bits. */
    memcpy(rm, rm0, c * sizeof *rm);
    memcpy(rv, rv0, c * sizeof *rv);
    be->ops->batchnorm_forward_train(be, y2, sm, si, rm, rv, x, gamma, beta, m, c, mom, eps);
    CHECK(memcmp(y, y2, n * sizeof *y) == 0);
    /* The split ops (stats, update_running, normalize) give the fused op's bits. */
    {
        double *mu = malloc(c * sizeof *mu), *var = malloc(c * sizeof *var);
        float *sm2 = malloc(c * sizeof *sm2), *si2 = malloc(c * sizeof *si2);
        float *rm2 = malloc(c * sizeof *rm2), *rv2 = malloc(c * sizeof *rv2);
        memcpy(rm2, rm0, c * sizeof *rm2);
        memcpy(rv2, rv0, c * sizeof *rv2);
        be->ops->batchnorm_stats(be, mu, var, x, m, c);
        be->ops->batchnorm_update_running(be, rm2, rv2, mu, var, m, c, mom);
        be->ops->batchnorm_normalize(be, y2, sm2, si2, x, mu, var, gamma, beta, m, c, eps);
        CHECK_MSG(memcmp(y, y2, n * sizeof *y) == 0 && memcmp(sm, sm2, c * sizeof *sm) == 0 &&
                  memcmp(si, si2, c * sizeof *si) == 0 && memcmp(rm, rm2, c * sizeof *rm) == 0 &&
                  memcmp(rv, rv2, c * sizeof *rv) == 0, "bn split ops differ from the fused op, m=%lld c=%d",
                  (long long)m, c);
        free(mu); free(var); free(sm2); free(si2); free(rm2); free(rv2);
    }
    /* Eval uses the running statistics. */
    be->ops->batchnorm_forward_eval(be, y2, x, rm0, rv0, gamma, beta, m, c, eps);
    double worst_e = 0;
    for (int64_t r = 0; r < m; r++)
        for (int j = 0; j < c; j++) {
            double want = (x[r * c + j] - rm0[j]) / sqrt(rv0[j] + eps) * gamma[j] + beta[j];
            worst_e = fmax(worst_e, fabs(y2[r * c + j] - want));
        }
    CHECK_MSG(worst_e < 1e-5, "bn eval: %g", worst_e);
    /* affine = false: gamma/beta and their grads NULL, running stats optional. */
    be->ops->batchnorm_forward_train(be, y2, sm, si, NULL, NULL, x, NULL, NULL, m, c, mom, eps);
    be->ops->batchnorm_backward(be, dx, NULL, NULL, dy, x, sm, si, NULL, m, c);
    CHECK(isfinite(y2[0]) && isfinite(dx[n - 1]));
    free(x); free(dy); free(y); free(y2); free(dx); free(gamma); free(beta); free(sm); free(si);
    free(rm); free(rv); free(dg); free(db); free(rm0); free(rv0); free(dg0); free(db0);
}

static void test_batchnorm(void)
{
    /* Hand case: one channel, x = {1, 3}: mean 2, biased var 1, unbiased var 2. */
    float x[2] = { 1, 3 }, y[2], sm, si, rm = 0, rv = 1, g = 2, b = 0.5f;
    be->ops->batchnorm_forward_train(be, y, &sm, &si, &rm, &rv, x, &g, &b, 2, 1, 0.1f, 0.0f);
    CHECK_NEAR(y[0], -1.5, 1e-6);
    CHECK_NEAR(y[1], 2.5, 1e-6);
    CHECK_NEAR(sm, 2.0, 1e-6);
    CHECK_NEAR(si, 1.0, 1e-6);
    CHECK_NEAR(rm, 0.2, 1e-6);
    CHECK_NEAR(rv, 0.9 * 1 + 0.1 * 2, 1e-6);
    /* Grouped running update: the mean of the two groups' updates ({1, 3} and
     * {5, 5}: means 2 and 5, unbiased variances 2 and 0). */
    float sms[2] = { 2, 5 }, sis[2] = { 1, 1 / sqrtf(1e-5f) }, grm = 0, grv = 1, cnt = 41;
    be->ops->batchnorm_update_running_grouped(be, &grm, &grv, sms, sis, 2, 2, 1, 0.1f, 1e-5f);
    CHECK_NEAR(grm, 0.1 * 3.5, 1e-6);
    CHECK_NEAR(grv, 0.9 + 0.1 * 1.0, 1e-5);
    be->ops->add_scalar(be, &cnt, 1.0f, 1);
    CHECK(cnt == 42.0f);
    test_batchnorm_case(37, 5);
    test_batchnorm_case(70000, 8);      /* several threads and row blocks */
    test_batchnorm_case(3, 2100);       /* more channels than one slab */
}

/* ---- elementwise, pooling ---- */

static void test_eltwise(void)
{
    float x[5] = { -1, 0, 2, -3, 4 }, y[5], d[5], g[5] = { 1, 2, 3, 4, 5 };
    be->ops->relu_forward(be, y, x, 5);
    CHECK(y[0] == 0 && y[1] == 0 && y[2] == 2 && y[3] == 0 && y[4] == 4);
    be->ops->relu_backward(be, d, g, y, 5);
    CHECK(d[0] == 0 && d[1] == 0 && d[2] == 3 && d[3] == 0 && d[4] == 5);
    be->ops->relu_forward(be, x, x, 5);   /* in place */
    CHECK(x[0] == 0 && x[4] == 4);
    be->ops->add(be, d, g, y, 5);
    CHECK(d[2] == 5 && d[4] == 9);
    be->ops->axpy(be, d, 2.0f, g, 5);
    CHECK(d[0] == 3 && d[4] == 19);
    be->ops->scale(be, d, -0.5f, g, 5);
    CHECK(d[1] == -1 && d[4] == -2.5f);
    /* Large n (multi-threaded) add matches a serial loop bit for bit. */
    int64_t n = 300001;
    float *a = fill(n, 21), *bb = fill(n, 22), *c = malloc(n * sizeof *c);
    be->ops->add(be, c, a, bb, n);
    int same = 1;
    for (int64_t i = 0; i < n; i++)
        same &= c[i] == a[i] + bb[i];
    CHECK(same);
    free(a); free(bb); free(c);
}

static void test_pool(void)
{
    hallu_error err = { 0 };
    hallu_pool2d_geom g;
    /* 1 image 3x3, 1 channel, k3 s2 p1 -> 2x2; all negative so padding must not win. */
    float x[9] = { -5, -4, -9, -3, -8, -1, -7, -6, -2 }, y[4], dx[9], dy[4] = { 1, 2, 3, 4 };
    int32_t arg[4];
    CHECK_OK(hallu_pool2d_geom_init(&g, 1, 3, 3, 1, 3, 2, 1, &err), &err);
    be->ops->maxpool2d_forward(be, y, arg, x, &g);
    CHECK(y[0] == -3 && arg[0] == 3);   /* window rows 0-1, cols 0-1 */
    CHECK(y[1] == -1 && arg[1] == 5);
    CHECK(y[2] == -3 && arg[2] == 3);
    CHECK(y[3] == -1 && arg[3] == 5);
    be->ops->maxpool2d_backward(be, dx, dy, arg, &g);
    CHECK(dx[3] == 4 && dx[5] == 6 && dx[0] == 0 && dx[8] == 0);
    /* Ties: the first maximum in scan order wins. Two channels interleaved. */
    float t[8] = { 1, 7, 1, 7, 1, 7, 1, 7 }, ty[2];
    int32_t targ[2];
    CHECK_OK(hallu_pool2d_geom_init(&g, 1, 2, 2, 2, 2, 2, 0, &err), &err);
    be->ops->maxpool2d_forward(be, ty, targ, t, &g);
    CHECK(ty[0] == 1 && ty[1] == 7 && targ[0] == 0 && targ[1] == 0);
    /* Global average pooling: 2 images, hw 2, 2 channels. */
    float ax[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, ay[4], ag[4] = { 2, 4, 6, 8 }, adx[8];
    be->ops->global_avgpool_forward(be, ay, ax, 2, 2, 2);
    CHECK(ay[0] == 2 && ay[1] == 3 && ay[2] == 6 && ay[3] == 7);
    be->ops->global_avgpool_backward(be, adx, ag, 2, 2, 2);
    CHECK(adx[0] == 1 && adx[2] == 1 && adx[1] == 2 && adx[7] == 4);
}

/* ---- dense, rows ---- */

static void test_dense(void)
{
    int m = 3, n = 4, k = 5;
    float *a = fill(m * k, 31), *b = fill(k * n, 32), *c = fill(m * n, 33), *c0 = malloc(m * n * sizeof *c0);
    memcpy(c0, c, m * n * sizeof *c);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            memcpy(c, c0, m * n * sizeof *c);
            be->ops->gemm(be, ta, tb, m, n, k, 2.0f, a, b, 0.5f, c);
            double worst = 0;
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++) {
                    double s = 0;
                    for (int p = 0; p < k; p++)
                        s += (double)(ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]);
                    worst = fmax(worst, fabs(c[i * n + j] - (2 * s + 0.5 * c0[i * n + j])));
                }
            CHECK_MSG(worst < 1e-5, "gemm ta=%d tb=%d: %g", ta, tb, worst);
        }
    /* linear: rows 2, in 3, out 2 */
    float x[6] = { 1, 2, 3, 4, 5, 6 }, w[6] = { 1, 0, -1, 2, 1, 0 }, bias[2] = { 10, 20 }, y[4];
    be->ops->linear_forward(be, y, x, w, bias, 2, 3, 2);
    CHECK(y[0] == 8 && y[1] == 24 && y[2] == 8 && y[3] == 33);
    float dy[4] = { 1, 2, 3, 4 }, dx[6], dw[6] = { 1, 1, 1, 1, 1, 1 }, db[2] = { 1, 1 };
    be->ops->linear_backward(be, dx, dw, db, dy, x, w, 2, 3, 2);
    CHECK(dx[0] == 5 && dx[1] == 2 && dx[2] == -1 && dx[3] == 11 && dx[4] == 4 && dx[5] == -3);
    CHECK(dw[0] == 1 + 13 && dw[1] == 1 + 17 && dw[5] == 1 + 2 * 3 + 4 * 6);
    CHECK(db[0] == 5 && db[1] == 7);
    be->ops->linear_backward(be, NULL, NULL, db, dy, x, w, 2, 3, 2);
    CHECK(db[0] == 9);
    free(a); free(b); free(c); free(c0);
}

static void test_rows(void)
{
    float x[6] = { 3, 4, 0, 0, 0, 0 }, y[6], norms[2], dy[6] = { 1, 0, 0, 1, 2, 3 }, dx[6];
    be->ops->l2norm_rows_forward(be, y, norms, x, 2, 3, 1e-12f);
    CHECK(norms[0] == 5 && norms[1] == 0);
    CHECK_NEAR(y[0], 0.6, 1e-7);
    CHECK_NEAR(y[1], 0.8, 1e-7);
    CHECK(y[3] == 0 && y[5] == 0);
    be->ops->l2norm_rows_backward(be, dx, dy, x, norms, 2, 3, 1e-12f);
    /* (dy - y (y.dy)) / n with y.dy = 0.6 */
    CHECK_NEAR(dx[0], (1 - 0.6 * 0.6) / 5, 1e-7);
    CHECK_NEAR(dx[1], (0 - 0.8 * 0.6) / 5, 1e-7);
    CHECK_NEAR(dx[2], 0.0, 1e-7);
    CHECK_NEAR(dx[4], 2e12, 2e12 * 1e-6);   /* clamped row: x / eps */

    /* logits {0, ln 3}: p = {1/4, 3/4}; row 2 has huge logits (stable). */
    float z[4] = { 0, logf(3.0f), 1000, 0 }, p[4], dz[4];
    int32_t tgt[2] = { 1, 1 };
    float loss = be->ops->softmax_xent_forward(be, p, z, tgt, 2, 2);
    CHECK_NEAR(p[0], 0.25, 1e-6);
    CHECK_NEAR(p[1], 0.75, 1e-6);
    CHECK_NEAR(loss, (-log(0.75) + 1000.0) / 2, 1e-3);
    CHECK(p[2] == 1.0f && p[3] == 0.0f);
    be->ops->softmax_xent_backward(be, dz, p, tgt, 2, 2, 2.0f);
    CHECK_NEAR(dz[0], 0.25, 1e-6);
    CHECK_NEAR(dz[1], -0.25, 1e-6);
    CHECK_NEAR(dz[3], -1.0, 1e-6);

    float src[4] = { 1, 2, 3, 4 }, dst[6] = { 0 }, back[4];
    be->ops->copy_cols(be, dst, 3, 1, src, 2, 2);
    CHECK(dst[0] == 0 && dst[1] == 1 && dst[2] == 2 && dst[3] == 0 && dst[4] == 3 && dst[5] == 4);
    be->ops->slice_cols(be, back, 2, dst, 3, 1, 2);
    CHECK(memcmp(back, src, sizeof src) == 0);
}

int main(void)
{
    hallu_error err = { 0 };
    CHECK(hallu_backend_cpu_create(NULL, 2, &err) == HALLU_ERR_INVALID_ARG);
    CHECK_OK(hallu_backend_cpu_create(&be, 2, &err), &err);
    if (!be)
        return check_summary();
    CHECK(strcmp(be->ops->name, "cpu") == 0 && be->num_threads == 2);
    /* The thread count is the backend's: creating it and running a oneDNN op
     * leave the caller's OpenMP count alone. */
    omp_set_num_threads(3);
    hallu_backend *one = NULL;
    CHECK_OK(hallu_backend_cpu_create(&one, 1, &err), &err);
    CHECK(one && one->num_threads == 1 && omp_get_max_threads() == 3);
    if (one) {
        float a[4] = { 1, 2, 3, 4 }, c[4];
        one->ops->gemm(one, 0, 0, 2, 2, 2, 1.0f, a, a, 0.0f, c);
        CHECK(c[0] == 7 && c[3] == 22 && omp_get_max_threads() == 3);
        hallu_backend_free(one);
    }
    void *p = be->ops->alloc(be, 100, "test", &err);
    CHECK(p != NULL && ((uintptr_t)p & 63) == 0);
    be->ops->release(be, p);
    test_conv();
    test_batchnorm();
    test_eltwise();
    test_pool();
    test_dense();
    test_rows();
    hallu_backend_free(be);
    return check_summary();
}
