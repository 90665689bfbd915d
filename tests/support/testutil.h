/* Small helpers shared by tests: deterministic random fills (hallu_rng, so a
 * failing case reproduces from its seed), error norms, float<->double copies. */
#ifndef HALLU_TESTUTIL_H
#define HALLU_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "hallu/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Uniform in [lo, hi). */
void tu_fill_uniform_f(float *x, size_t n, hallu_rng *rng, double lo, double hi);
void tu_fill_uniform_d(double *x, size_t n, hallu_rng *rng, double lo, double hi);
/* Normal(0, stddev). */
void tu_fill_normal_f(float *x, size_t n, hallu_rng *rng, double stddev);
void tu_fill_normal_d(double *x, size_t n, hallu_rng *rng, double stddev);
/* Magnitude uniform in [lo, hi) with a random sign: keeps values away from 0,
 * where ReLU has its kink. */
void tu_fill_away_from_zero_d(double *x, size_t n, hallu_rng *rng, double lo, double hi);
/* Distinct values spaced >= `gap` apart in random order: no ties for max/argmax. */
void tu_fill_distinct_d(double *x, size_t n, hallu_rng *rng, double gap);
void tu_fill_targets(int32_t *t, size_t n, hallu_rng *rng, int classes);

void tu_f2d(double *dst, const float *src, size_t n);
void tu_d2f(float *dst, const double *src, size_t n);
/* Rounds a double buffer to float precision in place, so the fp32 backend and
 * the double reference see exactly the same inputs. */
void tu_round_to_float(double *x, size_t n);

double tu_norm_d(const double *x, size_t n);
/* ||a - b|| / ||b|| (absolute ||a - b|| when ||b|| == 0). */
double tu_rel_error_fd(const float *a, const double *b, size_t n);
double tu_rel_error_dd(const double *a, const double *b, size_t n);
double tu_max_abs_diff_fd(const float *a, const double *b, size_t n);
double tu_max_abs_diff_dd(const double *a, const double *b, size_t n);

/* A float tensor against a float reference: rel = ||got - want|| /
 * max(||want||, floor) (the absolute error when both are 0), and max|diff|.
 * floor stands in for the norm of a reference that is analytically ~0. */
typedef struct tu_diff {
    double rel, maxabs;
} tu_diff;
tu_diff tu_compare_ff(const float *got, const float *want, size_t n, double floor);

/* Returns 1 when rel_error(got, want) <= tol; otherwise prints name, rel error
 * and max abs diff to stderr and returns 0. Wrap in CHECK(). */
int tu_close_fd(const char *name, const float *got, const double *want, size_t n, double tol);
int tu_close_dd(const char *name, const double *got, const double *want, size_t n, double tol);

/* Malloc that aborts the test on failure (tests only; library code never does this). */
void *tu_xmalloc(size_t nbytes);
double *tu_dalloc(size_t n);   /* zeroed */
float *tu_falloc(size_t n);    /* zeroed */

#ifdef __cplusplus
}
#endif
/* fp32 -> bf16 bits as vcvtneps2bf16 (and oneDNN's reorders) round: nearest
 * even, denormals to signed zero, NaN quiet. */
static inline uint16_t bf16_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7f800000u) == 0)
        return (uint16_t)((u >> 16) & 0x8000u);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

#endif
