/* Micro-benchmark of CPU backend ops on ResNet-18 (CIFAR) shapes.
 * Usage: bench_ops [BATCH] [THREADS] [REPS] [all|conv|bn]; prints ms per call
 * (conv: the first convolution only; bn: the batch-norm passes only). */
#include "hallu/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* On a shared machine wall time is noise; CPU time (all threads) is reported too. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A device buffer of n floats with a fixed pattern (uploaded: device memory is
 * never written from the host). */
static float *buf(hallu_backend *be, size_t n)
{
    hallu_error err;
    float *p = be->ops->alloc(be, n * sizeof(float), "bench", &err);
    float *host = p ? malloc(n * sizeof(float)) : NULL;
    if (host) {
        for (size_t i = 0; i < n; i++)
            host[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
        be->ops->upload(be, p, host, n * sizeof(float));
        free(host);
    }
    return p;
}

static void bench_conv(hallu_backend *be, int n, int hw, int cin, int cout, int k, int stride, int reps)
{
    hallu_error err;
    hallu_conv2d_geom g;
    hallu_conv2d_plan *plan;
    if (hallu_conv2d_geom_init(&g, n, hw, hw, cin, cout, k, stride, k / 2, &err) != HALLU_OK ||
        be->ops->conv2d_plan_create(be, &g, &plan, &err) != HALLU_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return;
    }
    size_t nx = (size_t)n * hw * hw * cin, ny = (size_t)n * g.oh * g.ow * cout, nw = (size_t)cout * cin * k * k;
    float *x = buf(be, nx), *y = buf(be, ny), *dx = buf(be, nx), *dy = buf(be, ny), *w = buf(be, nw), *dw = buf(be, nw);
    double tf = 1e30, td = 1e30, tw = 1e30, cf = 1e30, cb = 1e30;
    for (int r = -1; r < reps; r++) {
        double t0 = hallu_now(), c0 = cpu_now();
        be->ops->conv2d_forward(plan, y, x, NULL, w);
        double t1 = hallu_now(), c1 = cpu_now();
        be->ops->conv2d_backward(plan, dx, NULL, dy, NULL, x, NULL, w);
        double t2 = hallu_now();
        be->ops->conv2d_backward(plan, NULL, dw, dy, NULL, x, NULL, w);
        double t3 = hallu_now(), c3 = cpu_now();
        if (r >= 0) {
            tf = t1 - t0 < tf ? t1 - t0 : tf;
            td = t2 - t1 < td ? t2 - t1 : td;
            tw = t3 - t2 < tw ? t3 - t2 : tw;
            cf = c1 - c0 < cf ? c1 - c0 : cf;
            cb = c3 - c1 < cb ? c3 - c1 : cb;
        }
    }
    printf("conv n%d %dx%d %d->%d k%d s%d: fwd %.1f ms (cpu %.1f)  bwd data %.1f + weights %.1f ms (cpu %.1f)  [min of %d]\n",
           n, hw, hw, cin, cout, k, stride, 1e3 * tf, 1e3 * cf, 1e3 * td, 1e3 * tw, 1e3 * cb, reps);
    be->ops->conv2d_plan_free(plan);
    be->ops->release(be, x); be->ops->release(be, y); be->ops->release(be, dx);
    be->ops->release(be, dy); be->ops->release(be, w); be->ops->release(be, dw);
}

static void bench_bn(hallu_backend *be, int64_t m, int c, int reps)
{
    size_t n = (size_t)m * c;
    float *x = buf(be, n), *y = buf(be, n), *dy = buf(be, n), *p = buf(be, 8 * (size_t)c);
    double *stats = (double *)buf(be, 4 * (size_t)c);   /* batch mean and variance [2][c] in double */
    double tf = 0, ts = 0, tb = 0, tr = 0, c0 = cpu_now();
    for (int r = -1; r < reps; r++) {
        if (r == 0)
            c0 = cpu_now();
        double t0 = hallu_now();
        be->ops->batchnorm_forward_train(be, y, p, p + c, p + 2 * c, p + 3 * c, x, p + 4 * c, p + 5 * c, m, c, 0.1f, 1e-5f);
        double ta = hallu_now();
        /* The steps the model runs (same bits as the fused op). */
        be->ops->batchnorm_stats(be, stats, stats + c, x, m, c);
        be->ops->batchnorm_update_running(be, p + 2 * c, p + 3 * c, stats, stats + c, m, c, 0.1f);
        be->ops->batchnorm_normalize(be, y, p, p + c, x, stats, stats + c, p + 4 * c, p + 5 * c, m, c, 1e-5f);
        double t1 = hallu_now();
        be->ops->batchnorm_backward(be, y, p + 6 * c, p + 7 * c, dy, x, p, p + c, p + 4 * c, m, c);
        double t2 = hallu_now();
        be->ops->relu_forward(be, y, x, (int64_t)n);
        double t3 = hallu_now();
        if (r >= 0) {
            tf += ta - t0;
            ts += t1 - ta;
            tb += t2 - t1;
            tr += t3 - t2;
        }
    }
    printf("bn m=%lld c=%d: fwd %.2f ms (in steps %.2f ms)  bwd %.2f ms  relu %.2f ms  (cpu total %.2f ms)\n",
           (long long)m, c, 1e3 * tf / reps, 1e3 * ts / reps, 1e3 * tb / reps, 1e3 * tr / reps,
           1e3 * (cpu_now() - c0) / reps);
    be->ops->release(be, stats);
    be->ops->release(be, x); be->ops->release(be, y); be->ops->release(be, dy); be->ops->release(be, p);
}

/* The batch-norm, ReLU and add passes one at a time, each with the bytes it
 * moves over its time (GB/s): the fused ops (batchnorm_normalize_fused,
 * batchnorm_backward_fused, add_relu_backward) beside the ops they replace. */
static void bench_bn_passes(hallu_backend *be, int64_t m, int c, int reps)
{
    size_t n = (size_t)m * c;
    float *x = buf(be, n), *y = buf(be, n), *dy = buf(be, n), *res = buf(be, n), *p = buf(be, 8 * (size_t)c);
    uint16_t *y16 = (uint16_t *)buf(be, n / 2 + 1);
    double *stats = (double *)buf(be, 4 * (size_t)c);
    be->ops->batchnorm_stats(be, stats, stats + c, x, m, c);
    float *sm = p, *si = p + c, *ss = p + 2 * c, *gamma = p + 4 * c, *beta = p + 5 * c, *dg = p + 6 * c, *db = p + 7 * c;
    enum { K = 14 };
    static const char *name[K] = { "stats", "normalize", "relu_forward_x16", "add", "normalize_relu (y, y16, res)",
                                   "normalize_relu (y16)", "backward_x16", "backward_relu (dx16)", "relu_backward",
                                   "add_relu_backward", "relu_forward", "normalize_relu (y)", "backward",
                                   "backward_relu (dx)" };
    static const double words[K] = { 1, 2, 2.5, 3, 3.5, 1.5, 2.5, 2.5, 3, 4, 2, 2, 3, 3 };   /* floats moved per element */
    double best[K];
    for (int k = 0; k < K; k++)
        best[k] = 1e30;
    for (int r = 0; r <= reps; r++) {
        for (int k = 0; k < K; k++) {
            double t0 = hallu_now();
            switch (k) {
            case 0: be->ops->batchnorm_stats(be, stats, stats + c, x, m, c); break;
            case 1: be->ops->batchnorm_normalize(be, y, sm, si, x, stats, stats + c, gamma, beta, m, c, 1e-5f); break;
            case 2: if (be->ops->relu_forward_x16) be->ops->relu_forward_x16(be, y, y16, y, (int64_t)n); break;
            case 3: be->ops->add(be, y, y, res, (int64_t)n); break;
            case 4: case 5:
                if (be->ops->batchnorm_normalize_fused)
                    be->ops->batchnorm_normalize_fused(be, k == 4 ? y : NULL, y16, sm, si, ss, x, NULL, stats, stats + c,
                                                      gamma, beta, k == 4 ? res : NULL, NULL, 1, m, c, 1e-5f);
                break;
            case 6: if (be->ops->batchnorm_backward_x16)
                        be->ops->batchnorm_backward_x16(be, y16, dg, db, dy, x, sm, si, gamma, m, c);
                    break;
            case 7: if (be->ops->batchnorm_backward_fused)
                        be->ops->batchnorm_backward_fused(be, NULL, y16, dg, db, dy, NULL, x, NULL, sm, si, ss, gamma,
                                                      beta, m, c);
                    break;
            case 8: be->ops->relu_backward(be, y, dy, x, (int64_t)n); break;
            case 9: if (be->ops->add_relu_backward) be->ops->add_relu_backward(be, y, dy, res, x, (int64_t)n); break;
            case 10: be->ops->relu_forward(be, y, y, (int64_t)n); break;
            case 11: if (be->ops->batchnorm_normalize_fused)
                         be->ops->batchnorm_normalize_fused(be, y, NULL, sm, si, ss, x, NULL, stats, stats + c, gamma, beta,
                                                           NULL, NULL, 1, m, c, 1e-5f);
                     break;
            case 12: be->ops->batchnorm_backward(be, y, dg, db, dy, x, sm, si, gamma, m, c); break;
            case 13: if (be->ops->batchnorm_backward_fused)
                         be->ops->batchnorm_backward_fused(be, y, NULL, dg, db, dy, NULL, x, NULL, sm, si, ss, gamma,
                                                       beta, m, c);
                     break;
            }
            double t = hallu_now() - t0;
            if (r > 0 && t < best[k])
                best[k] = t;
        }
    }
    printf("bn passes m=%lld c=%d (min of %d):\n", (long long)m, c, reps);
    for (int k = 0; k < K; k++)
        printf("  %-30s %7.2f ms  %5.1f GB/s\n", name[k], 1e3 * best[k], words[k] * 4.0 * (double)n / best[k] * 1e-9);
    be->ops->release(be, stats), be->ops->release(be, y16);
    be->ops->release(be, x), be->ops->release(be, y), be->ops->release(be, dy), be->ops->release(be, res);
    be->ops->release(be, p);
}

int main(int argc, char **argv)
{
    int batch = argc > 1 ? atoi(argv[1]) : 256, threads = argc > 2 ? atoi(argv[2]) : 2;
    int reps = argc > 3 ? atoi(argv[3]) : 3;
    const char *only = argc > 4 ? argv[4] : "all";
    hallu_backend *be;
    hallu_error err;
    if (hallu_backend_cpu_create(&be, threads, &err) != HALLU_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    int all = only[0] == 'a';
    if (all)
        bench_conv(be, batch, 32, 64, 64, 3, 1, reps);
    if (all) {
        bench_conv(be, batch, 32, 3, 64, 3, 1, reps);
        bench_conv(be, batch, 32, 64, 128, 3, 2, reps);
        bench_conv(be, batch, 16, 128, 128, 3, 1, reps);
        bench_conv(be, batch, 32, 64, 128, 1, 2, reps);
        bench_conv(be, batch, 8, 256, 256, 3, 1, reps);
        bench_conv(be, batch, 4, 512, 512, 3, 1, reps);
        bench_bn(be, (int64_t)batch * 32 * 32, 64, reps);
        bench_bn(be, (int64_t)batch * 4 * 4, 512, reps);
    }
    if (all || only[0] == 'b') {
        bench_bn_passes(be, (int64_t)batch * 32 * 32, 64, reps);
        bench_bn_passes(be, (int64_t)batch * 8 * 8, 256, reps);
    }
    hallu_backend_free(be);
    return 0;
}
