#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

void tu_fill_uniform_f(float *x, size_t n, hallu_rng *rng, double lo, double hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)hallu_rng_range(rng, lo, hi);
}

void tu_fill_uniform_d(double *x, size_t n, hallu_rng *rng, double lo, double hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = hallu_rng_range(rng, lo, hi);
}

void tu_fill_normal_f(float *x, size_t n, hallu_rng *rng, double stddev)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(stddev * hallu_rng_normal(rng));
}

void tu_fill_normal_d(double *x, size_t n, hallu_rng *rng, double stddev)
{
    for (size_t i = 0; i < n; i++)
        x[i] = stddev * hallu_rng_normal(rng);
}

void tu_fill_away_from_zero_d(double *x, size_t n, hallu_rng *rng, double lo, double hi)
{
    for (size_t i = 0; i < n; i++) {
        double v = hallu_rng_range(rng, lo, hi);
        x[i] = hallu_rng_u32(rng) & 1u ? v : -v;
    }
}

void tu_fill_distinct_d(double *x, size_t n, hallu_rng *rng, double gap)
{
    uint32_t *perm = tu_xmalloc((n ? n : 1) * sizeof(*perm));
    hallu_rng_permutation(rng, perm, (uint32_t)n);
    double mid = 0.5 * (double)n;
    for (size_t i = 0; i < n; i++)
        x[i] = gap * ((double)perm[i] - mid);
    free(perm);
}

void tu_fill_targets(int32_t *t, size_t n, hallu_rng *rng, int classes)
{
    for (size_t i = 0; i < n; i++)
        t[i] = (int32_t)hallu_rng_below(rng, (uint32_t)classes);
}

void tu_f2d(double *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = src[i];
}

void tu_d2f(float *dst, const double *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (float)src[i];
}

void tu_round_to_float(double *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (double)(float)x[i];
}

double tu_norm_d(const double *x, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += x[i] * x[i];
    return sqrt(s);
}

static double rel_from_sums(double diff2, double ref2)
{
    return ref2 > 0 ? sqrt(diff2 / ref2) : sqrt(diff2);
}

double tu_rel_error_fd(const float *a, const double *b, size_t n)
{
    double d2 = 0, b2 = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        d2 += d * d;
        b2 += b[i] * b[i];
    }
    return rel_from_sums(d2, b2);
}

double tu_rel_error_dd(const double *a, const double *b, size_t n)
{
    double d2 = 0, b2 = 0;
    for (size_t i = 0; i < n; i++) {
        double d = a[i] - b[i];
        d2 += d * d;
        b2 += b[i] * b[i];
    }
    return rel_from_sums(d2, b2);
}

double tu_max_abs_diff_fd(const float *a, const double *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m))   /* NaN propagates as the worst case */
            m = d;
    }
    return m;
}

double tu_max_abs_diff_dd(const double *a, const double *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        if (!(d <= m))
            m = d;
    }
    return m;
}

static int report(const char *name, double rel, double maxabs, double tol)
{
    /* `!(rel <= tol)` also rejects NaN */
    if (!(rel <= tol)) {
        fprintf(stderr, "    %s: rel error %.3e > tol %.1e (max abs diff %.3e)\n", name, rel, tol, maxabs);
        return 0;
    }
    return 1;
}

int tu_close_fd(const char *name, const float *got, const double *want, size_t n, double tol)
{
    return report(name, tu_rel_error_fd(got, want, n), tu_max_abs_diff_fd(got, want, n), tol);
}

int tu_close_dd(const char *name, const double *got, const double *want, size_t n, double tol)
{
    return report(name, tu_rel_error_dd(got, want, n), tu_max_abs_diff_dd(got, want, n), tol);
}

void *tu_xmalloc(size_t nbytes)
{
    void *p = malloc(nbytes ? nbytes : 1);
    if (!p) {
        fprintf(stderr, "test: out of memory allocating %zu bytes\n", nbytes);
        abort();
    }
    return p;
}

double *tu_dalloc(size_t n)
{
    double *p = calloc(n ? n : 1, sizeof(double));
    if (!p) {
        fprintf(stderr, "test: out of memory allocating %zu doubles\n", n);
        abort();
    }
    return p;
}

float *tu_falloc(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p) {
        fprintf(stderr, "test: out of memory allocating %zu floats\n", n);
        abort();
    }
    return p;
}

tu_diff tu_compare_ff(const float *got, const float *want, size_t n, double floor)
{
    double d2 = 0, w2 = 0, maxabs = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];
        d2 += d * d;
        w2 += (double)want[i] * want[i];
        maxabs = fabs(d) > maxabs ? fabs(d) : maxabs;
    }
    double denom = sqrt(w2) > floor ? sqrt(w2) : floor;
    tu_diff r = { denom > 0 ? sqrt(d2) / denom : sqrt(d2), maxabs };
    return r;
}
