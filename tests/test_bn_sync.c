/* SyncBN's split ops: batch norm over R ranks' rows, each rank computing its
 * statistics and gradient sums alone, the sums added (what the all-reduce
 * does), must equal batch norm over all the rows at once (the fused ops, which
 * have their own gradient check and PyTorch parity). R ranks are emulated in
 * one process: the sums are added on the host. dgamma/dbeta: each rank adds
 * its own rows' share; their sum is the whole batch's. */
#include "check.h"
#include "test_backend.h"
#include "hallu/rng.h"

#include <math.h>
#include <string.h>

enum { R = 3, PER = 5, ROWS = R * PER, C = 4 };

static void fill(float *v, size_t n, uint64_t stream, double scale, double shift)
{
    hallu_rng rng;
    hallu_rng_init(&rng, 71, stream);
    for (size_t i = 0; i < n; i++)
        v[i] = (float)(shift + scale * hallu_rng_normal(&rng));
}

static void *allocated[64];
static int num_allocated;

static void *dev(hallu_backend *be, const void *host, size_t nbytes)
{
    hallu_error err = { 0 };
    void *p = be->ops->alloc(be, nbytes, "bn sync test", &err);
    CHECK(p != NULL);
    if (p && num_allocated < 64)
        allocated[num_allocated++] = p;
    if (p && host)
        CHECK_OK(hallu_backend_upload(be, p, host, nbytes, &err), &err);
    return p;
}

static void get(hallu_backend *be, void *host, const void *d, size_t nbytes)
{
    hallu_error err = { 0 };
    CHECK_OK(hallu_backend_download(be, host, d, nbytes, &err), &err);
}

static double rel(const float *a, const float *b, size_t n)
{
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += (double)b[i] * b[i];
    }
    return sqrt(d / (r > 0 ? r : 1));
}

int main(void)
{
    hallu_error err = { 0 };
    hallu_backend *be = NULL;
    if (test_backend_create(&be, 2, &err) != HALLU_OK)
        return 1;
    const hallu_backend_ops *o = be->ops;
    float x[ROWS * C], dy[ROWS * C], gamma[C], beta[C], zero[ROWS * C] = { 0 };
    fill(x, ROWS * C, 1, 1.5, 0.7);
    fill(dy, ROWS * C, 2, 1.0, 0.2);
    fill(gamma, C, 3, 0.3, 1.0);
    fill(beta, C, 4, 0.3, 0.0);
    float *x_d = dev(be, x, sizeof x), *dy_d = dev(be, dy, sizeof dy), *g_d = dev(be, gamma, sizeof gamma);
    float *b_d = dev(be, beta, sizeof beta);
    /* the whole batch at once */
    float *ry = dev(be, NULL, sizeof x), *rdx = dev(be, NULL, sizeof x), *rmean = dev(be, NULL, C * 4);
    float *rinv = dev(be, NULL, C * 4), *rdg = dev(be, zero, C * 4), *rdb = dev(be, zero, C * 4);
    float *rrm = dev(be, zero, C * 4), *rrv = dev(be, zero, C * 4);
    o->batchnorm_forward_train(be, ry, rmean, rinv, rrm, rrv, x_d, g_d, b_d, ROWS, C, 0.1f, 1e-5f);
    o->batchnorm_backward(be, rdx, rdg, rdb, dy_d, x_d, rmean, rinv, g_d, ROWS, C);
    /* R ranks: statistics -> moments, summed, -> statistics of the union */
    double *st = dev(be, NULL, R * 2 * C * sizeof(double)), host[R][2 * C], sum[2 * C] = { 0 };
    for (int r = 0; r < R; r++) {
        double *mean = st + (size_t)r * 2 * C;
        o->batchnorm_stats(be, mean, mean + C, x_d + r * PER * C, PER, C);
        o->batchnorm_stats_to_moments(be, mean, mean + C, C);
        get(be, host[r], mean, sizeof host[r]);
        for (int j = 0; j < 2 * C; j++)
            sum[j] += host[r][j];
    }
    float *y = dev(be, NULL, sizeof x), *dx = dev(be, NULL, sizeof x), *dg = dev(be, zero, C * 4);
    float *db = dev(be, zero, C * 4), *rm = dev(be, zero, C * 4), *rv = dev(be, zero, C * 4);
    float *mean_f = dev(be, NULL, R * C * 4), *inv_f = dev(be, NULL, R * C * 4);
    double *sums = dev(be, NULL, R * 2 * C * sizeof(double)), bsum[2 * C] = { 0 };
    for (int r = 0; r < R; r++) {   /* every rank gets the same sums and normalises its rows */
        double *mean = st + (size_t)r * 2 * C;
        CHECK_OK(hallu_backend_upload(be, mean, sum, sizeof sum, &err), &err);
        o->batchnorm_moments_to_stats(be, mean, mean + C, C, 1.0 / R);
        if (r == 0)   /* the running statistics move with the union's (ROWS rows) */
            o->batchnorm_update_running(be, rm, rv, mean, mean + C, ROWS, C, 0.1f);
        o->batchnorm_normalize(be, y + r * PER * C, mean_f + r * C, inv_f + r * C, x_d + r * PER * C, mean,
                               mean + C, g_d, b_d, PER, C, 1e-5f);
        o->batchnorm_backward_reduce(be, sums + (size_t)r * 2 * C, dg, db, dy_d + r * PER * C, x_d + r * PER * C,
                                     mean_f + r * C, inv_f + r * C, PER, C);
        get(be, host[r], sums + (size_t)r * 2 * C, sizeof host[r]);
        for (int j = 0; j < 2 * C; j++)
            bsum[j] += host[r][j];
    }
    for (int r = 0; r < R; r++) {
        CHECK_OK(hallu_backend_upload(be, sums + (size_t)r * 2 * C, bsum, sizeof bsum, &err), &err);
        o->batchnorm_backward_apply(be, dx + r * PER * C, dy_d + r * PER * C, x_d + r * PER * C, mean_f + r * C,
                                    inv_f + r * C, g_d, sums + (size_t)r * 2 * C, PER, ROWS, C);
    }
    float a[ROWS * C], b[ROWS * C];
    struct { const char *what; const float *got, *want; size_t n; } cmp[] = {
        { "y", y, ry, ROWS * C }, { "dx", dx, rdx, ROWS * C }, { "dgamma", dg, rdg, C }, { "dbeta", db, rdb, C },
        { "running_mean", rm, rrm, C }, { "running_var", rv, rrv, C },
    };
    for (size_t k = 0; k < sizeof cmp / sizeof cmp[0]; k++) {
        get(be, a, cmp[k].got, cmp[k].n * 4);
        get(be, b, cmp[k].want, cmp[k].n * 4);
        double e = rel(a, b, cmp[k].n);
        CHECK_MSG(e < 1e-6, "sync bn %s: %.3e from the whole batch's", cmp[k].what, e);
    }
    for (int i = 0; i < num_allocated; i++)
        be->ops->release(be, allocated[i]);
    hallu_backend_free(be);
    return check_summary();
}
