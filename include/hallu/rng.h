/* Counter-based random numbers (Philox4x32-10). A stream is identified by
 * (seed, stream); the n-th number of a stream depends only on those and n, so any
 * thread can reproduce any sample's randomness: e.g. stream = epoch * 2^32 + index
 * for data augmentation, independent of thread count or scheduling. */
#ifndef HALLU_RNG_H
#define HALLU_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hallu_rng {
    uint64_t seed;
    uint64_t stream;
    uint64_t counter;     /* index of the next 4-word block */
    uint32_t block[4];    /* buffered output of the current block */
    int used;             /* words of block already consumed (4 = empty) */
} hallu_rng;

void hallu_rng_init(hallu_rng *rng, uint64_t seed, uint64_t stream);
uint32_t hallu_rng_u32(hallu_rng *rng);
uint64_t hallu_rng_u64(hallu_rng *rng);
/* Uniform in [0, 1) with 24 random bits (float) or 53 bits (double). */
float hallu_rng_uniform(hallu_rng *rng);
double hallu_rng_uniform_f64(hallu_rng *rng);
/* Uniform in [lo, hi). */
double hallu_rng_range(hallu_rng *rng, double lo, double hi);
/* Integer uniform in [0, n), unbiased; n > 0. */
uint32_t hallu_rng_below(hallu_rng *rng, uint32_t n);
/* Standard normal (Box-Muller on 53-bit uniforms). */
double hallu_rng_normal(hallu_rng *rng);
/* Beta(a, b) via two Gamma draws (Marsaglia-Tsang). a, b > 0. */
double hallu_rng_beta(hallu_rng *rng, double a, double b);
double hallu_rng_gamma(hallu_rng *rng, double shape);
/* Fisher-Yates permutation of 0..n-1 into perm. */
void hallu_rng_permutation(hallu_rng *rng, uint32_t *perm, uint32_t n);

#ifdef __cplusplus
}
#endif
#endif
