/* The ssl losses and the Hallucinator against small double-precision reference
 * implementations written here: forward values, and the library's float
 * gradients against central finite differences of the double reference
 * (h = 1e-6; inputs rounded to float first so both see the same numbers).
 * Inputs are uploaded to the test backend (HALLU_TEST_DEVICE) and results
 * downloaded: the test never touches device memory. */
#include "check.h"
#include "test_backend.h"
#include "hallu/rng.h"
#include "ssl/ssl_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FD_H 1e-6
#define TOL 1e-4

typedef double (*scalar_fn)(const double *x, void *ctx);

static double *dalloc(size_t n) { double *p = calloc(n ? n : 1, sizeof *p); if (!p) abort(); return p; }
static float *falloc(size_t n) { float *p = calloc(n ? n : 1, sizeof *p); if (!p) abort(); return p; }

static void fill(double *x, size_t n, hallu_rng *rng, double scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (double)(float)(scale * hallu_rng_normal(rng));
}

static void to_float(float *dst, const double *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (float)src[i];
}

/* Device copies: dev_new(be, host, n) allocates n floats (zero, or host's
 * values when host != NULL); get(be, host, dev, n) downloads. */
static float *dev_new(hallu_backend *be, const float *host, size_t n)
{
    hallu_error err = { 0 };
    float *p = be->ops->alloc(be, (n ? n : 1) * sizeof(float), "test", &err);
    if (!p)
        abort();
    if (host)
        CHECK_OK(hallu_backend_upload(be, p, host, n * sizeof(float), &err), &err);
    return p;
}

static void get(hallu_backend *be, float *host, const float *dev, size_t n)
{
    hallu_error err = { 0 };
    CHECK_OK(hallu_backend_download(be, host, dev, n * sizeof(float), &err), &err);
}

static float get1(hallu_backend *be, const float *dev)
{
    float v = NAN;
    get(be, &v, dev, 1);
    return v;
}

/* ||analytic - numeric|| / ||numeric|| over x (perturbed in place, restored). */
static double fd_error(double *x, size_t n, const float *analytic, scalar_fn f, void *ctx)
{
    double d2 = 0, n2 = 0;
    for (size_t i = 0; i < n; i++) {
        double save = x[i];
        x[i] = save + FD_H;
        double lp = f(x, ctx);
        x[i] = save - FD_H;
        double lm = f(x, ctx);
        x[i] = save;
        double num = (lp - lm) / (2 * FD_H);
        d2 += (analytic[i] - num) * (analytic[i] - num);
        n2 += num * num;
    }
    return n2 > 0 ? sqrt(d2 / n2) : sqrt(d2);
}

/* ---- NT-Xent ---- */
typedef struct { int m, d, n_src, mask; double t, scale; } nt_ctx;

static double nt_ref(const double *f, void *p)
{
    const nt_ctx *c = p;
    double total = 0;
    for (int i = 0; i < c->m; i++) {
        int pos = (i + c->m / 2) % c->m;
        double sum = 0, spos = 0;
        for (int j = 0; j < c->m; j++) {
            double s = 0;
            for (int k = 0; k < c->d; k++)
                s += f[i * c->d + k] * f[j * c->d + k];
            s /= c->t;
            if (j == pos)
                spos = s;
            int same = j % c->n_src == i % c->n_src;
            if (j != i && (!c->mask || j == pos || !same))
                sum += exp(s);
        }
        total += log(sum) - spos;
    }
    return c->scale * total / c->m;
}

static void test_nt_xent(hallu_backend *be, int mask)
{
    hallu_rng rng;
    hallu_rng_init(&rng, 11, (uint64_t)mask);
    nt_ctx c = { .m = 8, .d = 5, .n_src = 2, .mask = mask, .t = 0.5, .scale = 1.7 };
    size_t n = (size_t)c.m * c.d;
    double *x = dalloc(n);
    float *xf = falloc(n), *g = falloc(n);
    fill(x, n, &rng, 0.6);
    to_float(xf, x, n);
    float *dx = dev_new(be, xf, n), *dg = dev_new(be, NULL, n), *dsim = dev_new(be, NULL, (size_t)c.m * c.m);
    float *dloss = dev_new(be, NULL, 1);
    ssl_nt_xent(be, dloss, dg, dsim, dx, c.m, c.d, c.m, 0, c.m, c.n_src, (float)c.t, mask, (float)c.scale);
    float loss = get1(be, dloss);
    get(be, g, dg, n);
    CHECK_NEAR(loss, nt_ref(x, &c), 1e-5 * fabs(nt_ref(x, &c)) + 1e-6);
    double err = fd_error(x, n, g, nt_ref, &c);
    CHECK_MSG(err <= TOL, "nt-xent mask=%d: gradient rel error %.3e", mask, err);
    /* Masking changes the loss: duplicated rows (sources 0/1 repeat) are real negatives otherwise. */
    nt_ctx other = c;
    other.mask = !mask;
    CHECK(fabs(nt_ref(x, &other) - nt_ref(x, &c)) > 1e-3);
    free(x); free(xf); free(g);
    be->ops->release(be, dx); be->ops->release(be, dg); be->ops->release(be, dsim); be->ops->release(be, dloss);
}

/* ---- InfoNCE ---- */
typedef struct { int rows, d, K; double t; const double *kpos, *queue; } nce_ctx;

static double nce_ref(const double *q, void *p)
{
    const nce_ctx *c = p;
    double total = 0;
    for (int r = 0; r < c->rows; r++) {
        double lpos = 0, sum;
        for (int k = 0; k < c->d; k++)
            lpos += q[r * c->d + k] * c->kpos[r * c->d + k];
        lpos /= c->t;
        sum = exp(lpos);
        for (int j = 0; j < c->K; j++) {
            double s = 0;
            for (int k = 0; k < c->d; k++)
                s += q[r * c->d + k] * c->queue[j * c->d + k];
            sum += exp(s / c->t);
        }
        total += log(sum) - lpos;
    }
    return total / c->rows;
}

static void test_infonce(hallu_backend *be)
{
    hallu_rng rng;
    hallu_rng_init(&rng, 12, 0);
    int rows = 4, d = 5, K = 6;
    double *q = dalloc((size_t)rows * d), *kp = dalloc((size_t)rows * d), *qu = dalloc((size_t)K * d);
    fill(q, (size_t)rows * d, &rng, 0.5);
    fill(kp, (size_t)rows * d, &rng, 0.5);
    fill(qu, (size_t)K * d, &rng, 0.5);
    float *qf = falloc((size_t)rows * d), *kf = falloc((size_t)rows * d), *uf = falloc((size_t)K * d);
    float *g = falloc((size_t)rows * d);
    to_float(qf, q, (size_t)rows * d);
    to_float(kf, kp, (size_t)rows * d);
    to_float(uf, qu, (size_t)K * d);
    nce_ctx c = { rows, d, K, 0.2, kp, qu };
    float *dq = dev_new(be, qf, (size_t)rows * d), *dk = dev_new(be, kf, (size_t)rows * d);
    float *du = dev_new(be, uf, (size_t)K * d), *dg = dev_new(be, NULL, (size_t)rows * d);
    float *dneg = dev_new(be, NULL, (size_t)rows * K), *dloss = dev_new(be, NULL, 1);
    ssl_infonce(be, dloss, dg, dneg, dq, dk, du, rows, d, K, 0.2f);
    float loss = get1(be, dloss);
    get(be, g, dg, (size_t)rows * d);
    double want = nce_ref(q, &c);
    CHECK_NEAR(loss, want, 1e-5 * fabs(want) + 1e-6);
    double err = fd_error(q, (size_t)rows * d, g, nce_ref, &c);
    CHECK_MSG(err <= TOL, "infonce: gradient rel error %.3e", err);
    /* Without a gradient the loss is the same number. */
    ssl_infonce(be, dloss, NULL, dneg, dq, dk, du, rows, d, K, 0.2f);
    CHECK(get1(be, dloss) == loss);
    free(q); free(kp); free(qu); free(qf); free(kf); free(uf); free(g);
    float *devs[] = { dq, dk, du, dg, dneg, dloss };
    for (int i = 0; i < 6; i++)
        be->ops->release(be, devs[i]);
}

/* ---- negative cosine ---- */
typedef struct { int rows, d; double scale; const double *z; } cos_ctx;

static double cos_ref(const double *p, void *v)
{
    const cos_ctx *c = v;
    double total = 0;
    for (int r = 0; r < c->rows; r++) {
        double dot = 0, np = 0, nz = 0;
        for (int k = 0; k < c->d; k++) {
            dot += p[r * c->d + k] * c->z[r * c->d + k];
            np += p[r * c->d + k] * p[r * c->d + k];
            nz += c->z[r * c->d + k] * c->z[r * c->d + k];
        }
        total += dot / sqrt(np * nz);
    }
    return -c->scale * total / c->rows;
}

static void test_neg_cosine(hallu_backend *be)
{
    hallu_rng rng;
    hallu_rng_init(&rng, 13, 0);
    int rows = 5, d = 6;
    size_t n = (size_t)rows * d;
    double *p = dalloc(n), *z = dalloc(n);
    fill(p, n, &rng, 1.0);
    fill(z, n, &rng, 1.0);
    float *pf = falloc(n), *zf = falloc(n), *g = falloc(n);
    to_float(pf, p, n);
    to_float(zf, z, n);
    cos_ctx c = { rows, d, 0.5, z };
    float *dp = dev_new(be, pf, n), *dz = dev_new(be, zf, n), *dg = dev_new(be, NULL, n), *dloss = dev_new(be, NULL, 1);
    be->ops->ssl_neg_cosine(be, dloss, dg, dp, dz, rows, d, 0.5f, 0);
    float loss = get1(be, dloss);
    get(be, g, dg, n);
    CHECK_NEAR(loss, cos_ref(p, &c), 1e-6);
    double err = fd_error(p, n, g, cos_ref, &c);
    CHECK_MSG(err <= TOL, "negative cosine: gradient rel error %.3e", err);
    /* p parallel to z gives exactly -scale; accumulate adds onto the loss there. */
    be->ops->ssl_neg_cosine(be, dloss, NULL, dz, dz, rows, d, 0.5f, 0);
    CHECK_NEAR(get1(be, dloss), -0.5, 1e-6);
    be->ops->ssl_neg_cosine(be, dloss, NULL, dp, dz, rows, d, 0.5f, 1);
    CHECK(get1(be, dloss) == -0.5f + loss);
    free(p); free(z); free(pf); free(zf); free(g);
    be->ops->release(be, dp); be->ops->release(be, dz); be->ops->release(be, dg); be->ops->release(be, dloss);
}

/* ---- Hallucinator ---- */
typedef struct {
    int rows, d, hid, residual;
    double r;
    double *x, *k, *w, *dout;   /* w: the flat parameter block (same layout as ps) */
    const hallu_params *ps;
    const ssl_hal *hal;
} hal_ctx;

static void ref_linear(double *y, const double *x, const double *w, const double *b, int in, int out)
{
    for (int o = 0; o < out; o++) {
        double s = b[o];
        for (int i = 0; i < in; i++)
            s += w[o * in + i] * x[i];
        y[o] = s;
    }
}

static double hal_loss(hal_ctx *c)
{
    int d = c->d, H = c->hid;
    const hallu_linear *l = c->hal->mlp.linear;
    double total = 0, xg[64], a[64], b[64], h[64];
    for (int i = 0; i < c->rows; i++) {
        for (int j = 0; j < d; j++) {
            xg[j] = c->x[i * d + j];
            xg[d + j] = (1 + c->r) * c->x[i * d + j] - c->r * c->k[i * d + j];
        }
        ref_linear(a, xg, c->w + l[0].weight, c->w + l[0].bias, 2 * d, H);
        for (int j = 0; j < H; j++) a[j] = a[j] > 0 ? a[j] : 0;
        ref_linear(b, a, c->w + l[2].weight, c->w + l[2].bias, H, H);
        for (int j = 0; j < H; j++) b[j] = b[j] > 0 ? b[j] : 0;
        ref_linear(h, b, c->w + l[4].weight, c->w + l[4].bias, H, d);
        for (int j = 0; j < d; j++) {
            double hj = h[j] + (c->residual ? xg[d + j] : 0);
            total += c->x[i * d + j] * c->dout[i * d + j] + hj * c->dout[(c->rows + i) * d + j];
        }
    }
    return total;
}

static double hal_wrt(const double *v, void *p) { (void)v; return hal_loss(p); }

static void test_hallucinator(hallu_backend *be, int residual)
{
    int rows = 3, d = 3, H = 5;
    hallu_error err = { 0 };
    hallu_params ps;
    hallu_params_init(&ps);
    ssl_hal hal;
    CHECK_OK(ssl_hal_init(&hal, &ps, "hallucinator", d, H, residual, &err), &err);
    CHECK_OK(hallu_params_alloc(&ps, be, &err), &err);
    CHECK_OK(ssl_hal_plan(&hal, be, rows, 1, &err), &err);
    CHECK(hallu_params_find(&ps, "hallucinator.4.bias", NULL) != NULL);
    CHECK(hallu_params_find(&ps, "hallucinator.1.weight", NULL) == NULL);
    hallu_rng rng;
    hallu_rng_init(&rng, 14, (uint64_t)residual);
    size_t np = (size_t)ps.trainable_numel, nx = (size_t)rows * d;
    hal_ctx c = { rows, d, H, residual, 0.07, dalloc(nx), dalloc(nx), dalloc(np), dalloc(2 * nx), &ps, &hal };
    fill(c.x, nx, &rng, 1.0);
    fill(c.k, nx, &rng, 1.0);
    fill(c.w, np, &rng, 0.5);
    fill(c.dout, 2 * nx, &rng, 1.0);
    float *xf = falloc(nx), *kf = falloc(nx), *gx = falloc(nx), *gk = falloc(nx), *df = falloc(2 * nx);
    float *wf = falloc(np), *out = falloc(2 * nx), *gw = falloc(np);
    to_float(xf, c.x, nx);
    to_float(kf, c.k, nx);
    to_float(wf, c.w, np);
    to_float(df, c.dout, 2 * nx);
    CHECK_OK(hallu_backend_upload(be, ps.param, wf, np * sizeof(float), &err), &err);
    float *dx = dev_new(be, xf, nx), *dk = dev_new(be, kf, nx), *ddout = dev_new(be, df, 2 * nx);
    float *dgx = dev_new(be, NULL, nx), *dgk = dev_new(be, NULL, nx);
    hallu_nn_ctx ctx = { .be = be, .ps = &ps, .training = 1 };
    get(be, out, ssl_hal_forward(&hal, &ctx, 0, dx, dk, rows, (float)c.r), 2 * nx);
    double got = 0;
    for (size_t i = 0; i < 2 * nx; i++)
        got += out[i] * c.dout[i];
    CHECK_NEAR(got, hal_loss(&c), 1e-5 * fabs(hal_loss(&c)) + 1e-5);
    CHECK(memcmp(out, xf, nx * sizeof(float)) == 0);   /* first half is x itself */
    ssl_hal_backward(&hal, &ctx, 0, dgx, dgk, ddout);
    get(be, gx, dgx, nx);
    get(be, gk, dgk, nx);
    CHECK_OK(hallu_params_download_grad(&ps, gw, &err), &err);
    double ex = fd_error(c.x, nx, gx, hal_wrt, &c), ek = fd_error(c.k, nx, gk, hal_wrt, &c);
    double ew = fd_error(c.w, np, gw, hal_wrt, &c);
    CHECK_MSG(ex <= TOL && ek <= TOL && ew <= TOL, "hallucinator residual=%d: rel errors x %.2e k %.2e params %.2e",
              residual, ex, ek, ew);
    /* dk = -r dg is not trivially zero; gradients ACCUMULATE (a second backward doubles them). */
    float gk0 = gk[0];
    ssl_hal_backward(&hal, &ctx, 0, dgx, dgk, ddout);
    get(be, gk, dgk, nx);
    CHECK_NEAR(gk[0], 2 * gk0, 1e-5 + 1e-5 * fabs(gk0));
    CHECK(fabs(gk0) > 0);
    if (residual) {
        /* Residual init: the last layer is zero, so h = g = (1+r)x - r k exactly. */
        CHECK_OK(hallu_params_stage(&ps, &err), &err);
        ssl_hal_init_weights(&hal, &ps, 3, 1);
        CHECK_OK(hallu_params_commit(&ps, &err), &err);
        get(be, out, ssl_hal_forward(&hal, &ctx, 0, dx, dk, rows, 0.05f), 2 * nx);
        double maxd = 0;
        for (size_t i = 0; i < nx; i++) {
            double g = (1.0f + 0.05f) * xf[i] - 0.05f * kf[i];
            maxd = fmax(maxd, fabs(out[nx + i] - g));
        }
        CHECK_MSG(maxd <= 1e-6, "residual init: h differs from g by %.3e", maxd);
    }
    CHECK_OK(hallu_backend_check(be, &err), &err);
    ssl_hal_free(&hal, be);
    hallu_params_free(&ps);
    float *devs[] = { dx, dk, ddout, dgx, dgk };
    for (int i = 0; i < 5; i++)
        be->ops->release(be, devs[i]);
    free(c.x); free(c.k); free(c.w); free(c.dout); free(xf); free(kf); free(gx); free(gk); free(df);
    free(wf); free(out); free(gw);
}

static float collapse_std(hallu_backend *be, const float *z, int rows, int d)
{
    float *dz = dev_new(be, z, (size_t)rows * d), *norms = dev_new(be, NULL, (size_t)rows), *out = dev_new(be, NULL, 1);
    be->ops->ssl_collapse_std(be, out, norms, dz, rows, d);
    float s = get1(be, out);
    be->ops->release(be, dz); be->ops->release(be, norms); be->ops->release(be, out);
    return s;
}

static void test_collapse(hallu_backend *be)
{
    int rows = 64, d = 16;
    float *z = falloc((size_t)rows * d);
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < d; j++)
            z[r * d + j] = (float)(j + 1);
    CHECK_NEAR(collapse_std(be, z, rows, d), 0.0, 1e-6);
    hallu_rng rng;
    hallu_rng_init(&rng, 15, 0);
    for (int i = 0; i < rows * d; i++)
        z[i] = (float)hallu_rng_normal(&rng);
    double s = collapse_std(be, z, rows, d);
    CHECK_MSG(s > 0.6 / sqrt(d) && s < 1.3 / sqrt(d), "collapse std of random rows %.4f vs 1/sqrt(d) %.4f", s,
              1 / sqrt(d));
    free(z);
}

/* Row permutations and the queue's enqueue (with wrap-around and more rows than K). */
static void test_rows_and_enqueue(hallu_backend *be)
{
    enum { R = 4, C = 3, K = 3 };
    float src[R * C], got[R * C], back[R * C];
    for (int i = 0; i < R * C; i++)
        src[i] = (float)i;
    int32_t order[R] = { 2, 0, 3, 1 };
    hallu_error err = { 0 };
    int32_t *dorder = be->ops->alloc(be, sizeof order, "test", &err);
    CHECK_OK(hallu_backend_upload(be, dorder, order, sizeof order, &err), &err);
    float *ds = dev_new(be, src, R * C), *dg = dev_new(be, NULL, R * C), *db = dev_new(be, NULL, R * C);
    be->ops->ssl_gather_rows(be, dg, ds, dorder, R, C);
    be->ops->ssl_scatter_rows(be, db, dg, dorder, R, C);
    get(be, got, dg, R * C);
    get(be, back, db, R * C);
    CHECK(got[0] == src[2 * C] && got[C] == src[0] && got[3 * C + 2] == src[C + 2]);
    CHECK(memcmp(back, src, sizeof src) == 0);   /* scatter undoes gather */
    /* Enqueue R = 4 rows into K = 3 starting at row 2: rows go to 2, 0, 1, 2 (the last wins). */
    float *dq = dev_new(be, NULL, K * C), q[K * C];
    int64_t ptr = 2, *dptr = be->ops->alloc(be, sizeof ptr, "test", &err);
    CHECK_OK(hallu_backend_upload(be, dptr, &ptr, sizeof ptr, &err), &err);
    be->ops->ssl_enqueue_rows(be, dq, dptr, ds, R, C, K);
    get(be, q, dq, K * C);
    CHECK_OK(hallu_backend_download(be, &ptr, dptr, sizeof ptr, &err), &err);
    CHECK(ptr == 0 && q[0] == src[C] && q[C] == src[2 * C] && q[2 * C] == src[3 * C]);
    be->ops->release(be, dorder); be->ops->release(be, ds); be->ops->release(be, dg); be->ops->release(be, db);
    be->ops->release(be, dq); be->ops->release(be, dptr);
}

int main(void)
{
    hallu_error err = { 0 };
    hallu_backend *be = NULL;
    CHECK_OK(test_backend_create(&be, 1, &err), &err);
    if (!be)
        return check_summary();
    test_nt_xent(be, 0);
    test_nt_xent(be, 1);
    test_infonce(be);
    test_neg_cosine(be);
    test_hallucinator(be, 0);
    test_hallucinator(be, 1);
    test_collapse(be);
    test_rows_and_enqueue(be);
    hallu_backend_free(be);
    return check_summary();
}
