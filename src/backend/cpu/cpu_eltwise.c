/* Elementwise ops: OpenMP over contiguous chunks, SIMD inside. Each element's
 * result depends only on its inputs, so any thread count gives the same bits. */
#include "backend/cpu/cpu_internal.h"

#include <omp.h>
#include <string.h>

enum { ELT_GRAIN = 1 << 16 };

/* Thread-chunked loop head: [lo, hi) is this thread's part of [0, n). */
#define ELT_PARALLEL(be, n, body) do { \
    int nt_ = cpu_threads_for((be), (n), ELT_GRAIN); \
    _Pragma("omp parallel num_threads(nt_)") { \
        int64_t lo, hi; \
        cpu_split((n), omp_get_num_threads(), omp_get_thread_num(), &lo, &hi); \
        body; \
    } } while (0)

/* x < 0 ? 0 : x keeps NaN as NaN, like torch.relu. */
CPU_HOT static void relu_range(float *y, const float *x, int64_t lo, int64_t hi)
{
#pragma omp simd
    for (int64_t i = lo; i < hi; i++)
        y[i] = x[i] < 0.0f ? 0.0f : x[i];
}

/* relu_range, and y16 = bf16(y) (cpu_bf16_round, as oneDNN's reorders round). */
CPU_HOT static void relu_x16_range(float *y, uint16_t *y16, const float *x, int64_t lo, int64_t hi)
{
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) {
        float v = x[i] < 0.0f ? 0.0f : x[i];
        y[i] = v;
        y16[i] = cpu_bf16_round(v);
    }
}

#ifdef CPU_HAVE_BF16_CVT
/* The same with AVX512-BF16's conversion instruction, which the CPUs running
 * bf16 here have (the integer rounding above vectorises poorly: 3x slower).
 * max(0, v) returns v for NaN, as x < 0 ? 0 : x does. */
__attribute__((target("avx512f,avx512bf16,avx512vl")))
static void relu_x16_range_cvt(float *y, uint16_t *y16, const float *x, int64_t lo, int64_t hi)
{
    const __m512 zero = _mm512_setzero_ps();
    int64_t i = lo;
    for (; i + 16 <= hi; i += 16) {
        __m512 v = _mm512_max_ps(zero, _mm512_loadu_ps(x + i));
        _mm512_storeu_ps(y + i, v);
        _mm256_storeu_si256((__m256i *)(y16 + i), (__m256i)_mm512_cvtneps_pbh(v));
    }
    relu_x16_range(y, y16, x, i, hi);
}
#endif

static void relu_x16_part(float *y, uint16_t *y16, const float *x, int64_t lo, int64_t hi)
{
#ifdef CPU_HAVE_BF16_CVT
    if (cpu_has_bf16_cvt()) {
        relu_x16_range_cvt(y, y16, x, lo, hi);
        return;
    }
#endif
    relu_x16_range(y, y16, x, lo, hi);
}

/* dy is loaded unconditionally so that the select vectorises (a conditional
 * load does not, and its branch mispredicts on half the elements). */
CPU_HOT static void relu_grad_range(float *dx, const float *dy, const float *y, int64_t lo, int64_t hi)
{
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) {
        float g = dy[i];
        dx[i] = y[i] > 0.0f ? g : 0.0f;
    }
}

CPU_HOT static void add_range(float *y, const float *a, const float *b, int64_t lo, int64_t hi)
{
#pragma omp simd
    for (int64_t i = lo; i < hi; i++)
        y[i] = a[i] + b[i];
}

/* (a + b) then relu_grad_range's select, in one pass. The select is on the
 * bits (and with an all-ones or zero mask: the same +0 where y <= 0): GCC
 * will not if-convert a float add that feeds one arm only (it may trap), and
 * the loop would stay scalar with a branch that mispredicts on half the
 * elements. */
CPU_HOT static void add_relu_grad_range(float *dx, const float *a, const float *b, const float *y, int64_t lo,
                                        int64_t hi)
{
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) {
        float g = a[i] + b[i];
        uint32_t bits, keep = y[i] > 0.0f ? 0xffffffffu : 0u;
        memcpy(&bits, &g, sizeof bits);
        bits &= keep;
        memcpy(&dx[i], &bits, sizeof bits);
    }
}

CPU_HOT static void axpy_range(float *y, float alpha, const float *x, int64_t lo, int64_t hi)
{
#pragma omp simd
    for (int64_t i = lo; i < hi; i++)
        y[i] += alpha * x[i];
}

CPU_HOT static void scale_range(float *y, float alpha, const float *x, int64_t lo, int64_t hi)
{
#pragma omp simd
    for (int64_t i = lo; i < hi; i++)
        y[i] = alpha * x[i];
}

void cpu_relu_forward(hallu_backend *be, float *y, const float *x, int64_t n)
{
    ELT_PARALLEL(be, n, relu_range(y, x, lo, hi));
}

void cpu_relu_forward_x16(hallu_backend *be, float *y, uint16_t *y16, const float *x, int64_t n)
{
    ELT_PARALLEL(be, n, relu_x16_part(y, y16, x, lo, hi));
}

void cpu_relu_backward(hallu_backend *be, float *dx, const float *dy, const float *y, int64_t n)
{
    ELT_PARALLEL(be, n, relu_grad_range(dx, dy, y, lo, hi));
}

void cpu_add(hallu_backend *be, float *y, const float *a, const float *b, int64_t n)
{
    ELT_PARALLEL(be, n, add_range(y, a, b, lo, hi));
}

void cpu_add_relu_backward(hallu_backend *be, float *dx, const float *a, const float *b, const float *y, int64_t n)
{
    ELT_PARALLEL(be, n, add_relu_grad_range(dx, a, b, y, lo, hi));
}

void cpu_axpy(hallu_backend *be, float *y, float alpha, const float *x, int64_t n)
{
    ELT_PARALLEL(be, n, axpy_range(y, alpha, x, lo, hi));
}

void cpu_scale(hallu_backend *be, float *y, float alpha, const float *x, int64_t n)
{
    ELT_PARALLEL(be, n, scale_range(y, alpha, x, lo, hi));
}

/* The loader's normalisation (hallu_aug_normalize) run on the backend: one
 * table per channel, then a lookup per byte. */
void cpu_normalize_u8(hallu_backend *be, float *y, const uint8_t *x, int64_t pixels, const float *mean,
                      const float *std)
{
    float table[3][256];
    hallu_u8_normalize_table(table, mean, std);
    ELT_PARALLEL(be, pixels, {
        for (int64_t p = lo; p < hi; p++) {
            y[p * 3 + 0] = table[0][x[p * 3 + 0]];
            y[p * 3 + 1] = table[1][x[p * 3 + 1]];
            y[p * 3 + 2] = table[2][x[p * 3 + 2]];
        }
    });
}

/* add_relu_backward_x16's elements [lo, hi): each input as floats or as bf16
 * values, the result as floats or rounded to bf16 (cpu_bf16_round); y and
 * y16 NULL: no mask. For CPUs without AVX512-BF16 and the tails (correctness, not
 * speed). */
static void add_relu_mixed_range(float *dx, uint16_t *dx16, const float *a, const uint16_t *a16, const float *b,
                                 const uint16_t *b16, const float *y, const uint16_t *y16, int64_t lo, int64_t hi)
{
    for (int64_t i = lo; i < hi; i++) {
        float g = (a16 ? cpu_bf16_to_f32(a16[i]) : a[i]) + (b16 ? cpu_bf16_to_f32(b16[i]) : b[i]);
        if ((y && !(y[i] > 0.0f)) || (y16 && !(cpu_bf16_to_f32(y16[i]) > 0.0f)))
            g = 0.0f;
        if (dx16)
            dx16[i] = cpu_bf16_round(g);
        else
            dx[i] = g;
    }
}

#ifdef CPU_HAVE_BF16_CVT
/* The same with AVX-512 and AVX512-BF16's conversion (the input and output
 * kinds are the same for every vector: the tests predict). */
__attribute__((target("avx512f,avx512bf16,avx512vl")))
static void add_relu_mixed_range_cvt(float *dx, uint16_t *dx16, const float *a, const uint16_t *a16, const float *b,
                                     const uint16_t *b16, const float *y, const uint16_t *y16, int64_t lo, int64_t hi)
{
    const __m512 zero = _mm512_setzero_ps();
    int64_t i = lo;
    for (; i + 16 <= hi; i += 16) {
        __m512 va = a16 ? cpu_bf16_load16(a16 + i) : _mm512_loadu_ps(a + i);
        __m512 vb = b16 ? cpu_bf16_load16(b16 + i) : _mm512_loadu_ps(b + i);
        __m512 g = _mm512_add_ps(va, vb);
        if (y || y16)
            g = _mm512_maskz_mov_ps(
                _mm512_cmp_ps_mask(y ? _mm512_loadu_ps(y + i) : cpu_bf16_load16(y16 + i), zero, _CMP_GT_OQ), g);
        if (dx16)
            _mm256_storeu_si256((__m256i *)(dx16 + i), (__m256i)_mm512_cvtneps_pbh(g));
        else
            _mm512_storeu_ps(dx + i, g);
    }
    add_relu_mixed_range(dx, dx16, a, a16, b, b16, y, y16, i, hi);
}
#endif

static void add_relu_mixed_part(float *dx, uint16_t *dx16, const float *a, const uint16_t *a16, const float *b,
                                const uint16_t *b16, const float *y, const uint16_t *y16, int64_t lo, int64_t hi)
{
#ifdef CPU_HAVE_BF16_CVT
    if (__builtin_cpu_supports("avx512f") && cpu_has_bf16_cvt()) {
        add_relu_mixed_range_cvt(dx, dx16, a, a16, b, b16, y, y16, lo, hi);
        return;
    }
#endif
    add_relu_mixed_range(dx, dx16, a, a16, b, b16, y, y16, lo, hi);
}

void cpu_add_relu_backward_x16(hallu_backend *be, float *dx, uint16_t *dx16, const float *a, const uint16_t *a16,
                               const float *b, const uint16_t *b16, const float *y, const uint16_t *y16, int64_t n)
{
    ELT_PARALLEL(be, n, add_relu_mixed_part(dx, dx16, a, a16, b, b16, y, y16, lo, hi));
}
