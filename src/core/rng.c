/* Philox4x32-10 (Salmon et al., SC'11): key = seed, counter = (block index, stream). */
#include "hallu/rng.h"

#include <math.h>

static void philox4x32_10(uint32_t out[4], uint64_t counter, uint64_t stream, uint64_t seed)
{
    uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32);
    uint32_t c2 = (uint32_t)stream, c3 = (uint32_t)(stream >> 32);
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0;
        uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

void hallu_rng_init(hallu_rng *rng, uint64_t seed, uint64_t stream)
{
    rng->seed = seed;
    rng->stream = stream;
    rng->counter = 0;
    rng->used = 4;
}

uint32_t hallu_rng_u32(hallu_rng *rng)
{
    if (rng->used >= 4) {
        philox4x32_10(rng->block, rng->counter++, rng->stream, rng->seed);
        rng->used = 0;
    }
    return rng->block[rng->used++];
}

uint64_t hallu_rng_u64(hallu_rng *rng)
{
    uint64_t hi = hallu_rng_u32(rng);
    return (hi << 32) | hallu_rng_u32(rng);
}

float hallu_rng_uniform(hallu_rng *rng)
{
    return (float)(hallu_rng_u32(rng) >> 8) * (1.0f / 16777216.0f);
}

double hallu_rng_uniform_f64(hallu_rng *rng)
{
    return (double)(hallu_rng_u64(rng) >> 11) * (1.0 / 9007199254740992.0);
}

double hallu_rng_range(hallu_rng *rng, double lo, double hi)
{
    return lo + (hi - lo) * hallu_rng_uniform_f64(rng);
}

uint32_t hallu_rng_below(hallu_rng *rng, uint32_t n)
{
    /* Lemire's multiply-shift with rejection: unbiased. */
    uint64_t m = (uint64_t)hallu_rng_u32(rng) * n;
    uint32_t low = (uint32_t)m;
    if (low < n) {
        uint32_t threshold = (uint32_t)(-n) % n;
        while (low < threshold) {
            m = (uint64_t)hallu_rng_u32(rng) * n;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

double hallu_rng_normal(hallu_rng *rng)
{
    double u1 = hallu_rng_uniform_f64(rng);
    double u2 = hallu_rng_uniform_f64(rng);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

double hallu_rng_gamma(hallu_rng *rng, double shape)
{
    if (shape < 1.0) {
        /* Boost: Gamma(a) = Gamma(a+1) * U^(1/a) */
        double u = hallu_rng_uniform_f64(rng);
        if (u < 1e-300)
            u = 1e-300;
        return hallu_rng_gamma(rng, shape + 1.0) * pow(u, 1.0 / shape);
    }
    double d = shape - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = hallu_rng_normal(rng), v = 1.0 + c * x;
        if (v <= 0.0)
            continue;
        v = v * v * v;
        double u = hallu_rng_uniform_f64(rng);
        if (u < 1.0 - 0.0331 * x * x * x * x)
            return d * v;
        if (u > 0.0 && log(u) < 0.5 * x * x + d * (1.0 - v + log(v)))
            return d * v;
    }
}

double hallu_rng_beta(hallu_rng *rng, double a, double b)
{
    double x = hallu_rng_gamma(rng, a), y = hallu_rng_gamma(rng, b);
    double s = x + y;
    if (s <= 0.0) /* both underflowed (tiny a, b): pick an end fairly */
        return hallu_rng_uniform_f64(rng) < a / (a + b) ? 1.0 : 0.0;
    return x / s;
}

void hallu_rng_permutation(hallu_rng *rng, uint32_t *perm, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        perm[i] = i;
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = hallu_rng_below(rng, i);
        uint32_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
}
