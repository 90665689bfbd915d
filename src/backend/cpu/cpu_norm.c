/* Batch normalisation over the rows of x [m][c] (NHWC activations flattened).
 * Per-channel sums are taken by each thread over its contiguous row range, in
 * float within blocks of BN_BLOCK rows and in double across blocks, then the
 * threads' partial sums are added in thread order: results are bit-identical run
 * to run for a fixed thread count. Wide inputs are processed in channel slabs of
 * CPU_SLAB so that all scratch is sized at backend creation. */
#include "backend/cpu/cpu_internal.h"

#include <math.h>
#include <omp.h>
#include <string.h>

enum { BN_BLOCK = 128, BN_GRAIN = 1 << 15 };

/* The input of a pass: x, or its bf16 values x16 when the constant flag in16
 * (inlined bodies) says so. */
#define BN_X(in16, xr, x16r, j) ((in16) ? cpu_bf16_to_f32((x16r)[j]) : (xr)[j])

/* Per-thread slab sums: s1 += sum(x - k), s2 += sum((x - k)^2), rows [lo, hi). */
static inline __attribute__((always_inline)) void stats_body(double *restrict s1, double *restrict s2,
                                                             float *restrict b1, float *restrict b2,
                                                             const float *restrict x, const uint16_t *restrict x16,
                                                             int in16, const float *restrict k, int64_t ld, int cs,
                                                             int64_t lo, int64_t hi)
{
    for (int j = 0; j < cs; j++)
        s1[j] = s2[j] = 0.0;
    for (int64_t r0 = lo; r0 < hi; r0 += BN_BLOCK) {
        int64_t r1 = r0 + BN_BLOCK < hi ? r0 + BN_BLOCK : hi;
        memset(b1, 0, (size_t)cs * sizeof *b1);
        memset(b2, 0, (size_t)cs * sizeof *b2);
        for (int64_t r = r0; r < r1; r++) {
            const float *xr = in16 ? NULL : x + r * ld;
            const uint16_t *x16r = in16 ? x16 + r * ld : NULL;
#pragma omp simd
            for (int j = 0; j < cs; j++) {
                float d = BN_X(in16, xr, x16r, j) - k[j];
                b1[j] += d;
                b2[j] += d * d;
            }
        }
        for (int j = 0; j < cs; j++) {
            s1[j] += b1[j];
            s2[j] += b2[j];
        }
    }
}

CPU_HOT static void stats_rows(double *restrict s1, double *restrict s2, float *restrict b1, float *restrict b2,
                               const float *restrict x, const uint16_t *restrict x16, const float *restrict k,
                               int64_t ld, int cs, int64_t lo, int64_t hi)
{
    if (x16)
        stats_body(s1, s2, b1, b2, NULL, x16, 1, k, ld, cs, lo, hi);
    else
        stats_body(s1, s2, b1, b2, x, NULL, 0, k, ld, cs, lo, hi);
}

/* The forward's ReLU mask, recomputed in backward: g where the forward's
 * (x - mean) * scale + shift (d = x - mean) was > 0, else 0, as relu_backward
 * selects on the ReLU's output. The same float operations as affine_body, so
 * the same bits (ISO C: no contraction into an FMA). */
#define BN_RELU_MASKED(g, d, scale, shift) ((d) * (scale) + (shift) > 0.0f ? (g) : 0.0f)

/* Per-thread slab sums for backward: s1 += sum(g), s2 += sum(g * (x - mean)),
 * g = dy, or dy masked by the forward's ReLU (scale, shift) when relu. */
static inline __attribute__((always_inline)) void grad_body(double *restrict s1, double *restrict s2,
                                                            float *restrict b1, float *restrict b2,
                                                            const float *restrict dy,
                                                            const uint16_t *restrict dy16, int g16,
                                                            const float *restrict x,
                                                            const uint16_t *restrict x16, int in16,
                                                            const float *restrict mean, const float *restrict scale,
                                                            const float *restrict shift, int relu, int64_t ld,
                                                            int cs, int64_t lo, int64_t hi)
{
    for (int j = 0; j < cs; j++)
        s1[j] = s2[j] = 0.0;
    for (int64_t r0 = lo; r0 < hi; r0 += BN_BLOCK) {
        int64_t r1 = r0 + BN_BLOCK < hi ? r0 + BN_BLOCK : hi;
        memset(b1, 0, (size_t)cs * sizeof *b1);
        memset(b2, 0, (size_t)cs * sizeof *b2);
        for (int64_t r = r0; r < r1; r++) {
            const float *xr = in16 ? NULL : x + r * ld, *gr = g16 ? NULL : dy + r * ld;
            const uint16_t *x16r = in16 ? x16 + r * ld : NULL, *g16r = g16 ? dy16 + r * ld : NULL;
#pragma omp simd
            for (int j = 0; j < cs; j++) {
                /* g loaded unconditionally: the select vectorises */
                float d = BN_X(in16, xr, x16r, j) - mean[j], g = BN_X(g16, gr, g16r, j);
                if (relu)
                    g = BN_RELU_MASKED(g, d, scale[j], shift[j]);
                b1[j] += g;
                b2[j] += g * d;
            }
        }
        for (int j = 0; j < cs; j++) {
            s1[j] += b1[j];
            s2[j] += b2[j];
        }
    }
}

CPU_HOT static void grad_rows(double *restrict s1, double *restrict s2, float *restrict b1, float *restrict b2,
                              const float *restrict dy, const uint16_t *restrict dy16, const float *restrict x,
                              const uint16_t *restrict x16, const float *restrict mean, const float *restrict scale,
                              const float *restrict shift, int64_t ld, int cs, int64_t lo, int64_t hi)
{
#define GRAD(g16, in16, relu) grad_body(s1, s2, b1, b2, dy, dy16, g16, x, x16, in16, mean, scale, shift, relu, ld, cs, \
                                        lo, hi)
    switch ((dy16 != NULL) * 4 + (x16 != NULL) * 2 + (scale != NULL)) {
    case 0: GRAD(0, 0, 0); break;
    case 1: GRAD(0, 0, 1); break;
    case 2: GRAD(0, 1, 0); break;
    case 3: GRAD(0, 1, 1); break;
    case 4: GRAD(1, 0, 0); break;
    case 5: GRAD(1, 0, 1); break;
    case 6: GRAD(1, 1, 0); break;
    default: GRAD(1, 1, 1); break;
    }
#undef GRAD
}

/* One apply pass over rows [lo, hi) of a slab (pointers at the slab's first
 * channel, rows ld floats apart), written as float to out and/or rounded to
 * bf16 (cpu_bf16_round) to out16:
 *   forward (dy == NULL): v = (x - mean) * c1 + c2, then v + residual when
 *     residual, then max(v, 0) as relu_forward when relu;
 *   backward (dy or dy16 set): v = c1 * g - c2 * (x - mean) - c3, g = dy
 *     (or dy16's values) or, when scale, that masked by the forward's ReLU
 *     (BN_RELU_MASKED with scale and shift). */
typedef struct bn_pass {
    float *out;
    uint16_t *out16;
    const float *dy, *x, *residual, *mean, *c1, *c2, *c3, *scale, *shift;
    const uint16_t *x16;   /* the input as bf16 values instead of x (x NULL) */
    const uint16_t *dy16;  /* backward: the gradient as bf16 values instead of dy (dy NULL) */
    const uint16_t *residual16;   /* forward: the residual as bf16 values instead (residual NULL) */
    int relu;
} bn_pass;

/* The loop bodies take their cases as constant flags (out: write y / dx,
 * out16: write its bf16, res: add the residual, relu) so that each inlined
 * case is a branch-free loop that vectorises: a test of a pointer inside the
 * loop would keep it scalar. */
static inline __attribute__((always_inline)) void affine_body(float *y, uint16_t *y16, const float *restrict x,
                                                              const uint16_t *restrict x16, int in16,
                                                              const float *restrict res,
                                                              const uint16_t *restrict res16, int r16,
                                                              const float *restrict mean,
                                                              const float *restrict scale,
                                                              const float *restrict shift, int out, int out16,
                                                              int add_res, int relu, int64_t ld, int cs, int64_t lo,
                                                              int64_t hi)
{
    for (int64_t r = lo; r < hi; r++) {
        const float *xr = in16 ? NULL : x + r * ld, *rr = add_res && !r16 ? res + r * ld : NULL;
        const uint16_t *x16r = in16 ? x16 + r * ld : NULL, *rr16 = add_res && r16 ? res16 + r * ld : NULL;
        float *yr = out ? y + r * ld : NULL;
        uint16_t *y16r = out16 ? y16 + r * ld : NULL;
#pragma omp simd
        for (int j = 0; j < cs; j++) {
            float v = (BN_X(in16, xr, x16r, j) - mean[j]) * scale[j] + shift[j];
            if (add_res)
                v = v + BN_X(r16, rr, rr16, j);
            if (relu)
                v = v < 0.0f ? 0.0f : v;
            if (out)
                yr[j] = v;
            if (out16)
                y16r[j] = cpu_bf16_round(v);
        }
    }
}

static inline __attribute__((always_inline)) void dx_body(float *dx, uint16_t *dx16, const float *dy,
                                                          const uint16_t *dy16, int g16,
                                                          const float *restrict x, const uint16_t *restrict x16,
                                                          int in16, const float *restrict mean,
                                                          const float *restrict a, const float *restrict b,
                                                          const float *restrict cst, const float *restrict scale,
                                                          const float *restrict shift, int out, int out16, int relu,
                                                          int64_t ld, int cs, int64_t lo, int64_t hi)
{
    for (int64_t r = lo; r < hi; r++) {
        const float *xr = in16 ? NULL : x + r * ld, *gr = g16 ? NULL : dy + r * ld;
        const uint16_t *x16r = in16 ? x16 + r * ld : NULL, *g16r = g16 ? dy16 + r * ld : NULL;
        float *dr = out ? dx + r * ld : NULL;
        uint16_t *dr16 = out16 ? dx16 + r * ld : NULL;
#pragma omp simd
        for (int j = 0; j < cs; j++) {
            /* g loaded unconditionally: the select vectorises */
            float d = BN_X(in16, xr, x16r, j) - mean[j], g = BN_X(g16, gr, g16r, j);
            if (relu)
                g = BN_RELU_MASKED(g, d, scale[j], shift[j]);
            float v = a[j] * g - b[j] * d - cst[j];
            if (out)
                dr[j] = v;
            if (out16)
                dr16[j] = cpu_bf16_round(v);
        }
    }
}

/* bn_pass over rows [lo, hi), each case a loop of its own. */
static inline __attribute__((always_inline)) void pass_body(const bn_pass *p, int in16, int g16, int64_t ld, int cs,
                                                            int64_t lo, int64_t hi)
{
    int out = p->out != NULL, out16 = p->out16 != NULL;
#define AFFINE(o, o16, r, q) affine_body(p->out, p->out16, p->x, p->x16, in16, p->residual, p->residual16, \
                                         p->residual16 != NULL, p->mean, p->c1, p->c2, \
                                         o, o16, r, q, ld, cs, lo, hi)
#define DX(o, o16, q) dx_body(p->out, p->out16, p->dy, p->dy16, g16, p->x, p->x16, in16, p->mean, p->c1, p->c2, p->c3, \
                              p->scale, p->shift, o, o16, q, ld, cs, lo, hi)
    if (!p->dy && !p->dy16) {
        switch ((p->residual || p->residual16) * 2 + (p->relu != 0)) {
        case 0: if (out16) AFFINE(out, 1, 0, 0); else AFFINE(1, 0, 0, 0); break;
        case 1: if (out16) AFFINE(out, 1, 0, 1); else AFFINE(1, 0, 0, 1); break;
        case 2: if (out16) AFFINE(out, 1, 1, 0); else AFFINE(1, 0, 1, 0); break;
        default: if (out16) AFFINE(out, 1, 1, 1); else AFFINE(1, 0, 1, 1); break;
        }
    } else if (out16) {   /* bf16 without AVX512-BF16: for correctness, not speed */
        if (p->scale)
            DX(out, 1, 1);
        else
            DX(out, 1, 0);
    } else if (out) {
        if (p->scale)
            DX(1, 0, 1);
        else
            DX(1, 0, 0);
    }
#undef AFFINE
#undef DX
}

CPU_HOT static void pass_rows(const bn_pass *p, int64_t ld, int cs, int64_t lo, int64_t hi)
{
    if (p->dy16 && p->x16)
        pass_body(p, 1, 1, ld, cs, lo, hi);
    else if (p->dy16)
        pass_body(p, 0, 1, ld, cs, lo, hi);
    else if (p->x16)
        pass_body(p, 1, 0, ld, cs, lo, hi);
    else
        pass_body(p, 0, 0, ld, cs, lo, hi);
}

#ifdef CPU_HAVE_BF16_CVT
/* pass_rows for passes that write bf16, with AVX512-BF16's conversion (the
 * integer rounding vectorises poorly); the same products, sums and
 * comparisons, unfused (ISO C: no contraction), so the same bits. max(0, v)
 * returns v for NaN and -0 for -0, as v < 0 ? 0 : v does. */
__attribute__((target("avx512f,avx512bf16,avx512vl")))
static void pass_rows_x16_cvt(const bn_pass *p, int64_t ld, int cs, int64_t lo, int64_t hi)
{
    const __m512 zero = _mm512_setzero_ps();
    int vec = cs & ~15;
    for (int64_t r = lo; r < hi; r++) {
        const float *xr = p->x16 ? NULL : p->x + r * ld;
        const uint16_t *x16r = p->x16 ? p->x16 + r * ld : NULL;
        uint16_t *o16 = p->out16 + r * ld;
        for (int j = 0; j < vec; j += 16) {
            __m512 xv = x16r ? cpu_bf16_load16(x16r + j) : _mm512_loadu_ps(xr + j);
            __m512 d = _mm512_sub_ps(xv, _mm512_loadu_ps(p->mean + j)), v;
            if (!p->dy && !p->dy16) {
                v = _mm512_add_ps(_mm512_mul_ps(d, _mm512_loadu_ps(p->c1 + j)), _mm512_loadu_ps(p->c2 + j));
                if (p->residual)
                    v = _mm512_add_ps(v, _mm512_loadu_ps(p->residual + r * ld + j));
                else if (p->residual16)
                    v = _mm512_add_ps(v, cpu_bf16_load16(p->residual16 + r * ld + j));
                if (p->relu)
                    v = _mm512_max_ps(zero, v);
                if (p->out)
                    _mm512_storeu_ps(p->out + r * ld + j, v);
            } else {
                __m512 g = p->dy16 ? cpu_bf16_load16(p->dy16 + r * ld + j) : _mm512_loadu_ps(p->dy + r * ld + j);
                if (p->scale) {
                    __m512 pre = _mm512_add_ps(_mm512_mul_ps(d, _mm512_loadu_ps(p->scale + j)),
                                               _mm512_loadu_ps(p->shift + j));
                    g = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(pre, zero, _CMP_GT_OQ), g);
                }
                v = _mm512_sub_ps(_mm512_sub_ps(_mm512_mul_ps(_mm512_loadu_ps(p->c1 + j), g),
                                                _mm512_mul_ps(_mm512_loadu_ps(p->c2 + j), d)),
                                  _mm512_loadu_ps(p->c3 + j));
            }
            _mm256_storeu_si256((__m256i *)(o16 + j), (__m256i)_mm512_cvtneps_pbh(v));
        }
        if (vec < cs) {   /* the channels past the last full vector */
            bn_pass tail = *p;
            tail.out = p->out ? p->out + vec : NULL;
            tail.out16 = p->out16 + vec;
            tail.dy = p->dy ? p->dy + vec : NULL;
            tail.dy16 = p->dy16 ? p->dy16 + vec : NULL;
            tail.x = p->x ? p->x + vec : NULL;
            tail.x16 = p->x16 ? p->x16 + vec : NULL;
            tail.residual = p->residual ? p->residual + vec : NULL;
            tail.residual16 = p->residual16 ? p->residual16 + vec : NULL;
            tail.mean = p->mean + vec;
            tail.c1 = p->c1 + vec;
            tail.c2 = p->c2 + vec;
            tail.c3 = p->c3 ? p->c3 + vec : NULL;
            tail.scale = p->scale ? p->scale + vec : NULL;
            tail.shift = p->shift ? p->shift + vec : NULL;
            pass_rows(&tail, ld, cs - vec, r, r + 1);
        }
    }
}
#endif

#ifdef CPU_HAVE_BF16_CVT
/* stats_rows (dy == NULL) or grad_rows over the first cs64 channels (a
 * multiple of 64), with each 64-channel group's float block sums held in
 * registers across the block's rows instead of being loaded and stored per row
 * (which made the sums passes run at half the memory bandwidth): the same
 * sums in the same order (products and sums unfused), so the same bits. */
#define BN_SUMS_STEP(v)                                                                                          \
    do {                                                                                                         \
        __m512 d = _mm512_sub_ps(x16r ? cpu_bf16_load16(x16r + 16 * (v)) : _mm512_loadu_ps(xr + 16 * (v)), k##v); \
        if (!bwd) {                                                                                              \
            a1_##v = _mm512_add_ps(a1_##v, d);                                                                   \
            a2_##v = _mm512_add_ps(a2_##v, _mm512_mul_ps(d, d));                                                 \
        } else {                                                                                                 \
            __m512 g = gr16 ? cpu_bf16_load16(gr16 + 16 * (v)) : _mm512_loadu_ps(gr + 16 * (v));                \
            if (scale)                                                                                           \
                g = _mm512_maskz_mov_ps(                                                                         \
                    _mm512_cmp_ps_mask(_mm512_add_ps(_mm512_mul_ps(d, sc##v), sh##v), zero, _CMP_GT_OQ), g);      \
            a1_##v = _mm512_add_ps(a1_##v, g);                                                                   \
            a2_##v = _mm512_add_ps(a2_##v, _mm512_mul_ps(g, d));                                                 \
        }                                                                                                        \
    } while (0)

__attribute__((target("avx512f")))
static void sums_rows_avx512(double *s1, double *s2, const float *dy, const uint16_t *dy16, const float *x,
                             const uint16_t *x16, const float *k, const float *scale, const float *shift, int64_t ld,
                             int cs64, int64_t lo, int64_t hi)
{
    const __m512 zero = _mm512_setzero_ps();
    int bwd = dy || dy16;
    for (int j = 0; j < cs64; j++)
        s1[j] = s2[j] = 0.0;
    for (int64_t r0 = lo; r0 < hi; r0 += BN_BLOCK) {
        int64_t r1 = r0 + BN_BLOCK < hi ? r0 + BN_BLOCK : hi;
        for (int j0 = 0; j0 < cs64; j0 += 64) {
            __m512 k0 = _mm512_loadu_ps(k + j0), k1 = _mm512_loadu_ps(k + j0 + 16);
            __m512 k2 = _mm512_loadu_ps(k + j0 + 32), k3 = _mm512_loadu_ps(k + j0 + 48);
            __m512 sc0 = zero, sc1 = zero, sc2 = zero, sc3 = zero, sh0 = zero, sh1 = zero, sh2 = zero, sh3 = zero;
            if (scale) {
                sc0 = _mm512_loadu_ps(scale + j0), sc1 = _mm512_loadu_ps(scale + j0 + 16);
                sc2 = _mm512_loadu_ps(scale + j0 + 32), sc3 = _mm512_loadu_ps(scale + j0 + 48);
                sh0 = _mm512_loadu_ps(shift + j0), sh1 = _mm512_loadu_ps(shift + j0 + 16);
                sh2 = _mm512_loadu_ps(shift + j0 + 32), sh3 = _mm512_loadu_ps(shift + j0 + 48);
            }
            __m512 a1_0 = zero, a1_1 = zero, a1_2 = zero, a1_3 = zero;
            __m512 a2_0 = zero, a2_1 = zero, a2_2 = zero, a2_3 = zero;
            for (int64_t r = r0; r < r1; r++) {
                const float *xr = x16 ? NULL : x + r * ld + j0, *gr = dy ? dy + r * ld + j0 : NULL;
                const uint16_t *x16r = x16 ? x16 + r * ld + j0 : NULL, *gr16 = dy16 ? dy16 + r * ld + j0 : NULL;
                BN_SUMS_STEP(0);
                BN_SUMS_STEP(1);
                BN_SUMS_STEP(2);
                BN_SUMS_STEP(3);
            }
            float t1[64], t2[64];
            _mm512_storeu_ps(t1, a1_0), _mm512_storeu_ps(t1 + 16, a1_1);
            _mm512_storeu_ps(t1 + 32, a1_2), _mm512_storeu_ps(t1 + 48, a1_3);
            _mm512_storeu_ps(t2, a2_0), _mm512_storeu_ps(t2 + 16, a2_1);
            _mm512_storeu_ps(t2 + 32, a2_2), _mm512_storeu_ps(t2 + 48, a2_3);
            for (int j = 0; j < 64; j++) {
                s1[j0 + j] += t1[j];
                s2[j0 + j] += t2[j];
            }
        }
    }
}
#undef BN_SUMS_STEP
#endif

/* One thread's sums over rows [lo, hi) of a slab (see slab_sums). */
static void sums_rows(double *s1, double *s2, float *b1, float *b2, const float *dy, const uint16_t *dy16,
                      const float *x, const uint16_t *x16, const float *k, const float *scale, const float *shift,
                      int64_t ld, int cs, int64_t lo, int64_t hi)
{
    int done = 0;
#ifdef CPU_HAVE_BF16_CVT
    if (__builtin_cpu_supports("avx512f") && (done = cs & ~63) > 0)
        sums_rows_avx512(s1, s2, dy, dy16, x, x16, k, scale, shift, ld, done, lo, hi);
#endif
    if (done == cs)
        return;
    /* the channels past the last group of 64 (each channel's sums are its own) */
    const float *xd = x ? x + done : NULL;
    const uint16_t *x16d = x16 ? x16 + done : NULL;
    if (dy || dy16)
        grad_rows(s1 + done, s2 + done, b1, b2, dy ? dy + done : NULL, dy16 ? dy16 + done : NULL, xd, x16d, k + done,
                  scale ? scale + done : NULL, shift ? shift + done : NULL, ld, cs - done, lo, hi);
    else
        stats_rows(s1 + done, s2 + done, b1, b2, xd, x16d, k + done, ld, cs - done, lo, hi);
}

/* Sums (x - k) and (x - k)^2 (or g and g*(x - mean) when dy != NULL, g = dy
 * masked by the forward's ReLU when scale != NULL) of one slab over all rows
 * into d1/d2, in thread order. */
static void slab_sums(hallu_backend *be, double *d1, double *d2, const float *dy, const uint16_t *dy16,
                      const float *x, const uint16_t *x16, const float *k, const float *scale, const float *shift,
                      int64_t m, int64_t ld, int cs)
{
    cpu_impl *impl = cpu_impl_of(be);
    int nt = cpu_threads_for(be, m * cs, BN_GRAIN), used = 1;
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        int64_t lo, hi;
        cpu_split(m, T, t, &lo, &hi);
        double *s1 = cpu_red_d(impl, t, 0), *s2 = cpu_red_d(impl, t, 1);
        float *b1 = cpu_red_f(impl, t, 0), *b2 = cpu_red_f(impl, t, 1);
        sums_rows(s1, s2, b1, b2, dy, dy16, x, x16, k, scale, shift, ld, cs, lo, hi);
        if (t == 0)
            used = T;
    }
    for (int j = 0; j < cs; j++)
        d1[j] = d2[j] = 0.0;
    for (int t = 0; t < used; t++) {
        const double *s1 = cpu_red_d(impl, t, 0), *s2 = cpu_red_d(impl, t, 1);
        for (int j = 0; j < cs; j++) {
            d1[j] += s1[j];
            d2[j] += s2[j];
        }
    }
}

/* Runs one bn_pass over all m rows of a slab. */
static void slab_apply(hallu_backend *be, const bn_pass *p, int64_t m, int64_t ld, int cs)
{
    int nt = cpu_threads_for(be, m * cs, BN_GRAIN);
#ifdef CPU_HAVE_BF16_CVT
    int cvt = p->out16 && cpu_has_bf16_cvt();
#endif
#pragma omp parallel num_threads(nt)
    {
        int64_t lo, hi;
        cpu_split(m, omp_get_num_threads(), omp_get_thread_num(), &lo, &hi);
#ifdef CPU_HAVE_BF16_CVT
        if (cvt)
            pass_rows_x16_cvt(p, ld, cs, lo, hi);
        else
#endif
            pass_rows(p, ld, cs, lo, hi);
    }
}

/* Batch mean and biased variance (clamped at 0) of one slab, in double. */
static void slab_stats(hallu_backend *be, double *mu, double *var, const float *x, const uint16_t *x16, int64_t m,
                       int64_t ld, int cs)
{
    cpu_impl *impl = cpu_impl_of(be);
    int shared = impl->num_threads;
    double *d1 = cpu_red_d(impl, shared, 0), *d2 = cpu_red_d(impl, shared, 1);
    /* Shifting by the first row keeps the one-pass variance free of cancellation. */
    const float *k = x;
    if (x16) {
        float *k16 = cpu_red_f(impl, shared, 3);
        for (int j = 0; j < cs; j++)
            k16[j] = cpu_bf16_to_f32(x16[j]);
        k = k16;
    }
    slab_sums(be, d1, d2, NULL, NULL, x, x16, k, NULL, NULL, m, ld, cs);
    for (int j = 0; j < cs; j++) {
        double mu_shift = d1[j] / (double)m;
        double v = d2[j] / (double)m - mu_shift * mu_shift;
        if (v < 0.0)
            v = 0.0;
        mu[j] = (double)k[j] + mu_shift;
        var[j] = v;
    }
}

/* y = (x - mean) * invstd * gamma + beta over one slab from the double batch
 * statistics, in the forward pass p (its outputs, x, residual and relu set by
 * the caller); the float mean/invstd that backward needs are saved, and the
 * float scale (invstd * gamma) when save_scale. */
static void slab_normalize(hallu_backend *be, bn_pass p, float *save_mean, float *save_invstd, float *save_scale,
                           const double *mu, const double *var, const float *gamma, const float *beta, int64_t m,
                           int64_t ld, int cs, float eps)
{
    cpu_impl *impl = cpu_impl_of(be);
    int shared = impl->num_threads;
    float *mean = cpu_red_f(impl, shared, 0), *scale = cpu_red_f(impl, shared, 1);
    float *shift = cpu_red_f(impl, shared, 2);
    for (int j = 0; j < cs; j++) {
        double invstd = 1.0 / sqrt(var[j] + (double)eps);
        mean[j] = (float)mu[j];
        scale[j] = (float)(invstd * (gamma ? (double)gamma[j] : 1.0));
        shift[j] = beta ? beta[j] : 0.0f;
        save_mean[j] = (float)mu[j];
        save_invstd[j] = (float)invstd;
        if (save_scale)
            save_scale[j] = scale[j];
    }
    p.mean = mean;
    p.c1 = scale;
    p.c2 = shift;
    slab_apply(be, &p, m, ld, cs);
}

/* Running statistics move by momentum towards the batch mean and the UNBIASED
 * batch variance (as PyTorch); either pointer may be NULL. */
static void running_update(float *running_mean, float *running_var, const double *mu, const double *var, int64_t m,
                           int cs, float momentum)
{
    for (int j = 0; j < cs; j++) {
        if (running_mean)
            running_mean[j] = (float)((1.0 - momentum) * running_mean[j] + momentum * mu[j]);
        if (running_var) {
            double unbiased = m > 1 ? var[j] * (double)m / (double)(m - 1) : var[j];
            running_var[j] = (float)((1.0 - momentum) * running_var[j] + momentum * unbiased);
        }
    }
}

void cpu_batchnorm_forward_train(hallu_backend *be, float *y, float *save_mean, float *save_invstd,
                                 float *running_mean, float *running_var, const float *x,
                                 const float *gamma, const float *beta, int64_t m, int c,
                                 float momentum, float eps)
{
    if (m <= 0 || c <= 0)
        return;
    cpu_impl *impl = cpu_impl_of(be);
    int shared = impl->num_threads;
    double *mu = cpu_red_d(impl, shared, 2), *var = cpu_red_d(impl, shared, 3);
    for (int c0 = 0; c0 < c; c0 += CPU_SLAB) {
        int cs = c - c0 < CPU_SLAB ? c - c0 : CPU_SLAB;
        slab_stats(be, mu, var, x + c0, NULL, m, c, cs);
        running_update(running_mean ? running_mean + c0 : NULL, running_var ? running_var + c0 : NULL, mu, var, m,
                       cs, momentum);
        bn_pass p = { .out = y + c0, .x = x + c0 };
        slab_normalize(be, p, save_mean + c0, save_invstd + c0, NULL, mu, var, gamma ? gamma + c0 : NULL,
                       beta ? beta + c0 : NULL, m, c, cs, eps);
    }
}

/* The fused training forward in three steps (same bits), so that the batch
 * statistics can be combined across processes between the first and second. */
void cpu_batchnorm_stats(hallu_backend *be, double *mean, double *var, const float *x, int64_t m, int c)
{
    if (m <= 0 || c <= 0)
        return;
    for (int c0 = 0; c0 < c; c0 += CPU_SLAB) {
        int cs = c - c0 < CPU_SLAB ? c - c0 : CPU_SLAB;
        slab_stats(be, mean + c0, var + c0, x + c0, NULL, m, c, cs);
    }
}

void cpu_batchnorm_stats_x16(hallu_backend *be, double *mean, double *var, const uint16_t *x16, int64_t m, int c)
{
    if (m <= 0 || c <= 0)
        return;
    for (int c0 = 0; c0 < c; c0 += CPU_SLAB) {
        int cs = c - c0 < CPU_SLAB ? c - c0 : CPU_SLAB;
        slab_stats(be, mean + c0, var + c0, NULL, x16 + c0, m, c, cs);
    }
}

void cpu_batchnorm_normalize(hallu_backend *be, float *y, float *save_mean, float *save_invstd, const float *x,
                             const double *mean, const double *var, const float *gamma, const float *beta,
                             int64_t m, int c, float eps)
{
    if (m <= 0 || c <= 0)
        return;
    for (int c0 = 0; c0 < c; c0 += CPU_SLAB) {
        int cs = c - c0 < CPU_SLAB ? c - c0 : CPU_SLAB;
        bn_pass p = { .out = y + c0, .x = x + c0 };
        slab_normalize(be, p, save_mean + c0, save_invstd + c0, NULL, mean + c0, var + c0,
                       gamma ? gamma + c0 : NULL, beta ? beta + c0 : NULL, m, c, cs, eps);
    }
}

void cpu_batchnorm_normalize_fused(hallu_backend *be, float *y, uint16_t *y16, float *save_mean, float *save_invstd,
                                   float *save_scale, const float *x, const uint16_t *x16, const double *mean,
                                   const double *var, const float *gamma, const float *beta, const float *residual,
                                   const uint16_t *residual16, int relu, int64_t m, int c, float eps)
{
    if (m <= 0 || c <= 0)
        return;
    for (int c0 = 0; c0 < c; c0 += CPU_SLAB) {
        int cs = c - c0 < CPU_SLAB ? c - c0 : CPU_SLAB;
        bn_pass p = { .out = y ? y + c0 : NULL, .out16 = y16 ? y16 + c0 : NULL, .x = x16 ? NULL : x + c0,
                      .x16 = x16 ? x16 + c0 : NULL, .residual = residual ? residual + c0 : NULL,
                      .residual16 = residual16 ? residual16 + c0 : NULL, .relu = relu != 0 };
        slab_normalize(be, p, save_mean + c0, save_invstd + c0, save_scale + c0, mean + c0, var + c0,
                       gamma ? gamma + c0 : NULL, beta ? beta + c0 : NULL, m, c, cs, eps);
    }
}

void cpu_batchnorm_update_running(hallu_backend *be, float *running_mean, float *running_var, const double *mean,
                                  const double *var, int64_t m, int c, float momentum)
{
    (void)be;
    if (m <= 0 || c <= 0)
        return;
    running_update(running_mean, running_var, mean, var, m, c, momentum);
}

/* Each group's update starts from the same running statistics; the result is their
 * mean, computed from the groups' saved float statistics (group g at offset g * c). */
void cpu_batchnorm_update_running_grouped(hallu_backend *be, float *running_mean, float *running_var,
                                          const float *save_mean, const float *save_invstd, int groups,
                                          int64_t rows_per, int c, float momentum, float eps)
{
    (void)be;
    for (int j = 0; j < c; j++) {
        double mean = 0.0, var = 0.0;
        for (int g = 0; g < groups; g++) {
            double mu = save_mean[(size_t)g * c + j], is = save_invstd[(size_t)g * c + j];
            double biased = 1.0 / (is * is) - (double)eps;
            mean += mu;
            var += rows_per > 1 ? biased * (double)rows_per / (double)(rows_per - 1) : biased;
        }
        running_mean[j] = (float)((1.0 - momentum) * running_mean[j] + momentum * mean / groups);
        running_var[j] = (float)((1.0 - momentum) * running_var[j] + momentum * var / groups);
    }
}

/* Sync BN: a rank's [mean; biased var] become [mean; E[x^2]], which sum across
 * ranks of equal row counts; after the sum, back to [mean; var] of the union. */
void cpu_batchnorm_stats_to_moments(hallu_backend *be, double *mean, double *var, int c)
{
    (void)be;
    for (int j = 0; j < c; j++)
        var[j] += mean[j] * mean[j];
}

void cpu_batchnorm_moments_to_stats(hallu_backend *be, double *mean, double *var, int c, double inv_count)
{
    (void)be;
    for (int j = 0; j < c; j++) {
        double mu = mean[j] * inv_count, ex2 = var[j] * inv_count, v = ex2 - mu * mu;
        mean[j] = mu;
        var[j] = v > 0.0 ? v : 0.0;
    }
}

/* The fused backward in two steps around a sum across ranks: the reduce step
 * adds this rank's dgamma/dbeta (the gradient all-reduce averages them) and
 * leaves sums = [sum dy; sum dy (x - mean)] per channel; the apply step takes
 * the sums over all m_total rows. One rank: the same bits as the fused op. */
void cpu_batchnorm_backward_reduce(hallu_backend *be, double *sums, float *dgamma, float *dbeta, const float *dy,
                                   const float *x, const float *save_mean, const float *save_invstd, int64_t m,
                                   int c)
{
    if (m <= 0 || c <= 0)
        return;
    for (int c0 = 0; c0 < c; c0 += CPU_SLAB) {
        int cs = c - c0 < CPU_SLAB ? c - c0 : CPU_SLAB;
        double *d1 = sums + c0, *d2 = sums + c + c0;
        slab_sums(be, d1, d2, dy + c0, NULL, x + c0, NULL, save_mean + c0, NULL, NULL, m, c, cs);
        for (int j = 0; j < cs; j++) {
            if (dgamma)
                dgamma[c0 + j] += (float)(d2[j] * (double)save_invstd[c0 + j]);
            if (dbeta)
                dbeta[c0 + j] += (float)d1[j];
        }
    }
}

void cpu_batchnorm_backward_apply(hallu_backend *be, float *dx, const float *dy, const float *x,
                                  const float *save_mean, const float *save_invstd, const float *gamma,
                                  const double *sums, int64_t m, int64_t m_total, int c)
{
    if (m <= 0 || m_total <= 0 || c <= 0 || !dx)
        return;
    cpu_impl *impl = cpu_impl_of(be);
    int shared = impl->num_threads;
    float *a = cpu_red_f(impl, shared, 0), *b = cpu_red_f(impl, shared, 1), *cst = cpu_red_f(impl, shared, 2);
    for (int c0 = 0; c0 < c; c0 += CPU_SLAB) {
        int cs = c - c0 < CPU_SLAB ? c - c0 : CPU_SLAB;
        const double *d1 = sums + c0, *d2 = sums + c + c0;
        for (int j = 0; j < cs; j++) {
            double invstd = save_invstd[c0 + j], k = invstd * (gamma ? (double)gamma[c0 + j] : 1.0);
            a[j] = (float)k;
            b[j] = (float)(k * invstd * invstd * d2[j] / (double)m_total);
            cst[j] = (float)(k * d1[j] / (double)m_total);
        }
        bn_pass p = { .out = dx + c0, .dy = dy + c0, .x = x + c0, .mean = save_mean + c0, .c1 = a, .c2 = b,
                      .c3 = cst };
        slab_apply(be, &p, m, c, cs);
    }
}

void cpu_batchnorm_forward_eval(hallu_backend *be, float *y, const float *x,
                                const float *running_mean, const float *running_var,
                                const float *gamma, const float *beta, int64_t m, int c, float eps)
{
    if (m <= 0 || c <= 0)
        return;
    cpu_impl *impl = cpu_impl_of(be);
    int shared = impl->num_threads;
    float *mean = cpu_red_f(impl, shared, 0), *scale = cpu_red_f(impl, shared, 1);
    float *shift = cpu_red_f(impl, shared, 2);
    for (int c0 = 0; c0 < c; c0 += CPU_SLAB) {
        int cs = c - c0 < CPU_SLAB ? c - c0 : CPU_SLAB;
        for (int j = 0; j < cs; j++) {
            double invstd = 1.0 / sqrt((double)running_var[c0 + j] + (double)eps);
            mean[j] = running_mean[c0 + j];
            scale[j] = (float)(invstd * (gamma ? (double)gamma[c0 + j] : 1.0));
            shift[j] = beta ? beta[c0 + j] : 0.0f;
        }
        bn_pass p = { .out = y + c0, .x = x + c0, .mean = mean, .c1 = scale, .c2 = shift };
        slab_apply(be, &p, m, c, cs);
    }
}

/* The training backward; dx as fp32 into dx, or as bf16 into dx16 (one of them
 * or neither); dy masked by the forward's ReLU when save_scale (with beta). */
static void batchnorm_backward(hallu_backend *be, float *dx, uint16_t *dx16, float *dgamma, float *dbeta,
                               const float *dy, const uint16_t *dy16, const float *x, const uint16_t *x16,
                               const float *save_mean,
                               const float *save_invstd, const float *save_scale, const float *gamma,
                               const float *beta, int64_t m, int c)
{
    if (m <= 0 || c <= 0)
        return;
    cpu_impl *impl = cpu_impl_of(be);
    int shared = impl->num_threads;
    double *d1 = cpu_red_d(impl, shared, 0), *d2 = cpu_red_d(impl, shared, 1);
    float *a = cpu_red_f(impl, shared, 0), *b = cpu_red_f(impl, shared, 1), *cst = cpu_red_f(impl, shared, 2);
    float *shift = cpu_red_f(impl, shared, 3);
    for (int c0 = 0; c0 < c; c0 += CPU_SLAB) {
        int cs = c - c0 < CPU_SLAB ? c - c0 : CPU_SLAB;
        const float *scale = save_scale ? save_scale + c0 : NULL;
        for (int j = 0; j < cs; j++)
            shift[j] = beta ? beta[c0 + j] : 0.0f;
        const float *xs = x16 ? NULL : x + c0;
        const uint16_t *x16s = x16 ? x16 + c0 : NULL;
        const float *dys = dy16 ? NULL : dy + c0;
        const uint16_t *dy16s = dy16 ? dy16 + c0 : NULL;
        slab_sums(be, d1, d2, dys, dy16s, xs, x16s, save_mean + c0, scale, shift, m, c, cs);
        for (int j = 0; j < cs; j++) {
            double invstd = save_invstd[c0 + j], k = invstd * (gamma ? (double)gamma[c0 + j] : 1.0);
            if (dgamma)
                dgamma[c0 + j] += (float)(d2[j] * invstd);
            if (dbeta)
                dbeta[c0 + j] += (float)d1[j];
            a[j] = (float)k;
            b[j] = (float)(k * invstd * invstd * d2[j] / (double)m);
            cst[j] = (float)(k * d1[j] / (double)m);
        }
        bn_pass p = { .out = dx ? dx + c0 : NULL, .out16 = dx16 ? dx16 + c0 : NULL, .dy = dys, .dy16 = dy16s, .x = xs,
                      .x16 = x16s, .mean = save_mean + c0, .c1 = a, .c2 = b, .c3 = cst, .scale = scale, .shift = shift };
        if (dx || dx16)
            slab_apply(be, &p, m, c, cs);
    }
}

void cpu_batchnorm_backward(hallu_backend *be, float *dx, float *dgamma, float *dbeta,
                            const float *dy, const float *x, const float *save_mean,
                            const float *save_invstd, const float *gamma, int64_t m, int c)
{
    batchnorm_backward(be, dx, NULL, dgamma, dbeta, dy, NULL, x, NULL, save_mean, save_invstd, NULL, gamma, NULL, m,
                       c);
}

void cpu_batchnorm_backward_x16(hallu_backend *be, uint16_t *dx16, float *dgamma, float *dbeta,
                                const float *dy, const float *x, const float *save_mean,
                                const float *save_invstd, const float *gamma, int64_t m, int c)
{
    batchnorm_backward(be, NULL, dx16, dgamma, dbeta, dy, NULL, x, NULL, save_mean, save_invstd, NULL, gamma, NULL, m,
                       c);
}

void cpu_batchnorm_backward_fused(hallu_backend *be, float *dx, uint16_t *dx16, float *dgamma, float *dbeta,
                                  const float *dy, const uint16_t *dy16, const float *x, const uint16_t *x16,
                                  const float *save_mean, const float *save_invstd, const float *save_scale,
                                  const float *gamma, const float *beta, int64_t m, int c)
{
    batchnorm_backward(be, dx, dx16, dgamma, dbeta, dy, dy16, x, x16, save_mean, save_invstd, save_scale, gamma, beta,
                       m, c);
}
