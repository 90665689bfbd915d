/* Private state and op prototypes of the CPU backend (oneDNN + OpenMP). */
#ifndef HALLU_CPU_INTERNAL_H
#define HALLU_CPU_INTERNAL_H

#include "hallu/backend.h"

#include <oneapi/dnnl/dnnl.h>
#include <omp.h>

/* Per-channel reductions (batch norm) work on channel slabs of at most this many
 * columns, so their per-thread scratch is sized once at backend creation. */
enum { CPU_SLAB = 2048 };

typedef struct cpu_impl {
    hallu_backend *be;      /* the owner, where failures are recorded */
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    int num_threads;
    /* oneDNN scratchpad shared by all conv plans (user mode): grown at plan
     * creation, never during a step. */
    void *dnnl_scratch;
    size_t dnnl_scratch_bytes;
    /* Activations in oneDNN's blocked layout, shared by all conv plans: [0] the
     * input side (src / diff_src), [1] the output side (dst / diff_dst). Grown at
     * plan creation; plans run one at a time on one stream. */
    void *act[2];
    size_t act_bytes[2];
    /* im2col rows of the GEMM weight-gradient path, shared by all plans. */
    float *col;
    size_t col_bytes;
    /* Winograd transforms, products and weights (cpu_conv_wino.c), shared by
     * all plans; the zero row is never written, the spill rows (one per thread)
     * take outputs past an odd edge; wino_du: each thread's weight-gradient sum
     * in the bf16 block passes. */
    float *wino_v, *wino_m, *wino_u, *wino_zero, *wino_spill, *wino_du;
    size_t wino_v_bytes, wino_m_bytes, wino_u_bytes, wino_zero_bytes, wino_spill_bytes, wino_du_bytes;
    /* Each thread's own oneDNN stream and scratchpad, for primitives that the
     * threads of a parallel region run side by side (the bf16 Winograd block
     * passes), shared by all plans as the buffers above are: made and grown at
     * plan creation (cpu_thread_dnnl_reserve), NULL / 0 until a plan needs them. */
    dnnl_stream_t *thread_stream;   /* [num_threads] */
    void *thread_scratch;           /* [num_threads][thread_scratch_each] */
    size_t thread_scratch_bytes, thread_scratch_each;
    /* Reduction scratch: one block of cpu_red_block_bytes() per thread, plus one
     * shared block (index num_threads) for per-channel coefficients. */
    void *red;
    /* Precision of the convolution plans created from now on (set_precision). */
    hallu_precision precision;
    /* bf16 plans take Winograd for 3x3 stride-1 layers: the CPU's bf16 products
     * are AVX512-BF16's, not AMX's (set_precision, from oneDNN's effective ISA) */
    int bf16_winograd;
    /* Device memory handed out by cpu_alloc: now and at most. */
    size_t bytes_live, bytes_peak;
} cpu_impl;

static inline cpu_impl *cpu_impl_of(hallu_backend *be) { return (cpu_impl *)be->impl; }

/* Grows a backend-shared buffer to `need` bytes (zeroed; the old contents are
 * dropped) at plan creation, never during a step. */
hallu_status cpu_shared_reserve(void **buf, size_t *have, size_t need, const char *what, hallu_error *err);

/* Makes each thread's oneDNN stream (once) and grows each thread's scratchpad
 * to at least `scratch_each` bytes, at plan creation. */
hallu_status cpu_thread_dnnl_reserve(cpu_impl *impl, size_t scratch_each, hallu_error *err);
static inline void *cpu_thread_scratch(const cpu_impl *impl, int thread)
{
    return (char *)impl->thread_scratch + (size_t)thread * impl->thread_scratch_each;
}

/* cpu_shared_reserve for a float buffer. */
static inline hallu_status cpu_shared_reserve_floats(float **buf, size_t *have, size_t need, const char *what,
                                                     hallu_error *err)
{
    void *p = *buf;
    hallu_status s = cpu_shared_reserve(&p, have, need, what, err);
    *buf = p;
    return s;
}

/* oneDNN (OpenMP build) sizes its work by the calling thread's OpenMP thread
 * count (the nthreads-var ICV), at primitive creation and execution. Each op
 * that calls into oneDNN sets it to this backend's count and restores the
 * caller's afterwards, so the count is a property of the backend instance and
 * backends with different counts can share a process. */
static inline int cpu_threads_enter(const cpu_impl *impl)
{
    int caller = omp_get_max_threads();
    if (caller != impl->num_threads)
        omp_set_num_threads(impl->num_threads);
    return caller;
}
static inline void cpu_threads_leave(const cpu_impl *impl, int caller)
{
    if (caller != impl->num_threads)
        omp_set_num_threads(caller);
}

/* Records a failed oneDNN call as the backend's failure (the first one wins).
 * Not from inside a parallel region: there, keep the first failure
 * (cpu_first_failure) and check it after the region. */
static inline void cpu_check(cpu_impl *impl, dnnl_status_t st, const char *what)
{
    if (st != dnnl_success)
        hallu_backend_fail(impl->be, HALLU_ERR_BACKEND, "%s failed (oneDNN status %d)", what, (int)st);
}

/* Keeps the first failed status of a parallel region's threads in *first. */
static inline void cpu_first_failure(dnnl_status_t *first, dnnl_status_t st)
{
    if (st != dnnl_success) {
#pragma omp critical(hallu_cpu_first_failure)
        if (*first == dnnl_success)
            *first = st;
    }
}

/* Images per pass so that a pass covers about `rows` GEMM rows (1..n). */
static inline int cpu_images_per_chunk(int rows, int rows_per_image, int n)
{
    int c = rows / rows_per_image;
    return c < 1 ? 1 : c > n ? n : c;
}

/* Per-thread scratch block: 4 double arrays and 4 float arrays of CPU_SLAB. */
static inline size_t cpu_red_block_bytes(void) { return (size_t)CPU_SLAB * (4 * sizeof(double) + 4 * sizeof(float)); }

/* Double array `which` (0..3) / float array `which` (0..3) of scratch block `t`. */
static inline double *cpu_red_d(cpu_impl *impl, int t, int which)
{
    return (double *)((char *)impl->red + (size_t)t * cpu_red_block_bytes()) + (size_t)which * CPU_SLAB;
}
static inline float *cpu_red_f(cpu_impl *impl, int t, int which)
{
    return (float *)(cpu_red_d(impl, t, 0) + 4 * (size_t)CPU_SLAB) + (size_t)which * CPU_SLAB;
}

/* Threads for a loop over `work` elements: one thread below `grain` per thread. */
static inline int cpu_threads_for(hallu_backend *be, int64_t work, int64_t grain)
{
    int64_t t = work / grain, max = cpu_impl_of(be)->num_threads;
    return t < 1 ? 1 : t < max ? (int)t : (int)max;
}

/* Hot loops get an AVX2 clone picked at load time by CPU feature (the build
 * targets baseline x86-64; "arch=" clones would dispatch on CPU model instead). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CPU_HOT __attribute__((target_clones("avx2", "default")))
#else
#define CPU_HOT
#endif

/* AVX512-BF16's conversion instruction, for the loops that write bf16 (their
 * integer-rounding fallback vectorises 3x slower): those with a
 * __attribute__((target("avx512f,avx512bf16,avx512vl"))) variant take it where
 * cpu_has_bf16_cvt(). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#define CPU_HAVE_BF16_CVT 1
static inline int cpu_has_bf16_cvt(void) { return __builtin_cpu_supports("avx512bf16"); }
/* 16 bf16 values -> the floats they are. */
__attribute__((target("avx512f"))) static inline __m512 cpu_bf16_load16(const uint16_t *p)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}
#endif

/* bf16 -> the float it is (exact). */
static inline float cpu_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    __builtin_memcpy(&f, &u, sizeof f);
    return f;
}

/* fp32 -> bf16 as AVX512-BF16's vcvtneps2bf16 converts, and so oneDNN's
 * reorders on the CPUs that run bf16 here: round to nearest even, denormals
 * flushed to (signed) zero, NaN kept a quiet NaN. A bf16 copy made here
 * equals the plans' own rounding. */
static inline uint16_t cpu_bf16_round(float f)
{
    uint32_t u;
    __builtin_memcpy(&u, &f, sizeof u);
    if ((u & 0x7f800000u) == 0)
        return (uint16_t)((u >> 16) & 0x8000u);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* Splits [0, n) into `parts` contiguous ranges; range `i` is [*lo, *hi). */
static inline void cpu_split(int64_t n, int parts, int i, int64_t *lo, int64_t *hi)
{
    int64_t base = n / parts, rem = n % parts;
    *lo = i * base + (i < rem ? i : rem);
    *hi = *lo + base + (i < rem ? 1 : 0);
}

/* memory (cpu_backend.c) */
void cpu_fill(hallu_backend *be, float *y, float value, int64_t n);

/* A oneDNN primitive and its scratchpad memory object, whose handle is pointed
 * at the backend's shared scratchpad (user mode) on every run (cpu_conv.c). */
typedef struct cpu_prim {
    dnnl_primitive_t prim;
    dnnl_memory_t scratch;
    size_t scratch_bytes;   /* its scratchpad's size, 0: it takes none */
} cpu_prim;
/* Creates p from pd (taking ownership of pd), growing the shared scratchpad to
 * fit: a failed reservation is returned, oneDNN's own status is in *st. */
hallu_status cpu_prim_create(cpu_impl *impl, cpu_prim *p, dnnl_primitive_desc_t pd, dnnl_status_t *st,
                             hallu_error *err);
/* Runs p with args[0..nargs) plus its scratchpad (args has room for one more). */
void cpu_prim_run(cpu_impl *impl, cpu_prim *p, dnnl_exec_arg_t *args, int nargs, const char *what);
/* Executes p with args[0..nargs) plus its scratchpad on a given stream with a
 * given scratchpad (a thread's own, when threads run primitives side by side
 * inside a parallel region), returning oneDNN's status instead of recording it. */
dnnl_status_t cpu_prim_exec_on(cpu_prim *p, dnnl_stream_t stream, void *scratch, dnnl_exec_arg_t *args, int nargs);
void cpu_prim_free(cpu_prim *p);

/* conv (cpu_conv.c) */
hallu_status cpu_conv2d_plan_create(hallu_backend *be, const hallu_conv2d_geom *g,
                                    hallu_conv2d_plan **out, hallu_error *err);
void cpu_conv2d_plan_free(hallu_conv2d_plan *plan);
void cpu_conv2d_forward(hallu_conv2d_plan *plan, float *y, const float *x, const uint16_t *x16, const float *w);
int cpu_conv2d_forward_y16(hallu_conv2d_plan *plan, uint16_t *y16, const float *x, const uint16_t *x16,
                           const float *w);
int cpu_conv2d_backward_dx16(hallu_conv2d_plan *plan, uint16_t *dx16, float *dw, const float *dy,
                             const uint16_t *dy16, const float *x, const uint16_t *x16, const float *w);
void cpu_conv2d_backward(hallu_conv2d_plan *plan, float *dx, float *dw, const float *dy, const uint16_t *dy16,
                         const float *x, const uint16_t *x16, const float *w);

/* Convolution passes as im2col + GEMM where oneDNN's direct kernels are slow
 * (cpu_conv_gemm.c): per chunk of images, oneDNN's sgemm (fp32 weight
 * gradient) or bf16 matmuls (bf16 plans: weight gradient, and forward / input
 * gradient of the smallest outputs; x and dy already rounded to bf16 NHWC). */
enum { CPU_GEMM_DW = 1, CPU_GEMM_FWD = 2, CPU_GEMM_DX = 4 };
typedef struct cpu_matmul {
    cpu_prim p;
    dnnl_memory_t a, b, c;   /* handles set per call */
} cpu_matmul;
/* C[b][m][n] (fp32, or bf16 when c16; += C when accumulate) = A[b][m][k] B[b][k][n]
 * in bf16 through oneDNN's matmul, A stored [k][m] when a_trans, B [n][k] when
 * b_trans (cpu_conv_gemm.c); batch 1 makes a plain 2-D matmul. */
hallu_status cpu_matmul_create(cpu_impl *impl, cpu_matmul *mm, int64_t batch, int64_t m, int64_t n, int64_t k,
                               int a_trans, int b_trans, int c16, int accumulate, hallu_error *err);
void cpu_matmul_run(cpu_impl *impl, cpu_matmul *mm, const void *a, const void *b, void *c);
/* cpu_matmul_run on a thread's own stream and scratchpad, inside a parallel
 * region: waits for it and returns oneDNN's first failure instead of
 * recording it (cpu_prim_exec_on). */
dnnl_status_t cpu_matmul_exec_on(cpu_matmul *mm, dnnl_stream_t stream, void *scratch, const void *a, const void *b,
                                 void *c);
void cpu_matmul_free(cpu_matmul *mm);
typedef struct cpu_conv_gemm {
    int chunk;          /* images per GEMM */
    int bf16, passes;   /* CPU_GEMM_* */
    float *dw_ohwi;     /* weight gradient [cout][k][k][cin] */
    uint16_t *w_ohwi;   /* bf16 weights [cout][k][k][cin] */
    cpu_matmul mm_dw[2], mm_fwd[2], mm_dx[2];   /* bf16: [0] `chunk` images, [1] the shorter last chunk */
    cpu_matmul mm_fwd16[2];                     /* mm_fwd with a bf16 product (conv2d_forward_y16) */
    cpu_matmul mm_dx16[2];                      /* 1x1 stride-2: mm_dx with a bf16 product (dx16) */
} cpu_conv_gemm;
/* The passes (CPU_GEMM_*) that take the GEMM route for this geometry. */
int cpu_conv_gemm_passes(const hallu_conv2d_geom *g, int bf16);
hallu_status cpu_conv_gemm_init(cpu_impl *impl, const hallu_conv2d_geom *g, int bf16, int passes, cpu_conv_gemm *cg,
                                hallu_error *err);
void cpu_conv_gemm_free(cpu_conv_gemm *cg);
/* bf16 only: y = conv(x, w); dx = the input gradient (overwritten). */
void cpu_conv_gemm_forward(cpu_impl *impl, const hallu_conv2d_geom *g, cpu_conv_gemm *cg, float *y, uint16_t *y16,
                           const uint16_t *x, const float *w);   /* y16: y as bf16 instead */
void cpu_conv_gemm_backward_data(cpu_impl *impl, const hallu_conv2d_geom *g, cpu_conv_gemm *cg, float *dx,
                                 uint16_t *dx16, const uint16_t *dy, const float *w);   /* dx16: dx as bf16 instead */
/* 1 when cpu_conv_gemm_backward_data can write dx16 for this layer. */
int cpu_conv_gemm_dx16_ok(const hallu_conv2d_geom *g, const cpu_conv_gemm *cg);
/* dw += the weight gradient; dy and x are float, or bf16 (uint16_t) for bf16 plans. */
void cpu_conv_gemm_backward_weights(cpu_impl *impl, const hallu_conv2d_geom *g, cpu_conv_gemm *cg, float *dw,
                                    const void *dy, const void *x);

/* Winograd F(2x2, 3x3) for 3x3 stride-1 pad-1 convolutions with >= 16 channels
 * each side and outputs of at least 4x4 (cpu_conv_wino.c): all three passes on NHWC,
 * the GEMMs through oneDNN's sgemm, or in bf16 plans on CPUs whose bf16 products
 * are not AMX's (cpu_wino_bf16_wanted) through oneDNN's batched bf16 matmul. */
typedef struct cpu_wino_thread {   /* one thread's block-pass matmuls (their handles are set per call) */
    cpu_matmul fwd, dx, dw;
} cpu_wino_thread;
typedef struct cpu_wino {
    int chunk;   /* images per pass through the shared buffers */
    int bf16;
    cpu_matmul mm_fwd[2], mm_dx[2], mm_dw[2];   /* bf16: [0] `chunk` images, [1] the shorter last chunk */
    /* bf16 with few channels: each thread takes its tiles through transform,
     * matmul and inverse (or, for dw, both transforms and a matmul adding into
     * its own dU) `blk` (`blk_dw`) rows at a time, 0: by chunks, on its own
     * matmuls and the backend's stream and scratchpad of the thread */
    int blk, blk_dw, nthr;
    cpu_wino_thread *thr;   /* [nthr] */
} cpu_wino;
int cpu_wino_wanted(const hallu_conv2d_geom *g);
int cpu_wino_bf16_wanted(const cpu_impl *impl, const hallu_conv2d_geom *g);
hallu_status cpu_wino_init(cpu_impl *impl, const hallu_conv2d_geom *g, int bf16, cpu_wino *cw, hallu_error *err);
void cpu_wino_free(cpu_wino *cw);
/* y, or (bf16 plans) y16 = bf16(y); x may come as its bf16 copy x16 */
void cpu_wino_forward(cpu_impl *impl, const hallu_conv2d_geom *g, cpu_wino *cw, float *y, uint16_t *y16,
                      const float *x, const uint16_t *x16, const float *w);
/* dx or (bf16 plans) dx16, and dw +=; dy and x may come as their bf16 copies */
void cpu_wino_backward(cpu_impl *impl, const hallu_conv2d_geom *g, cpu_wino *cw, float *dx, uint16_t *dx16,
                       float *dw, const float *dy, const uint16_t *dy16, const float *x, const uint16_t *x16,
                       const float *w);

/* batch norm (cpu_norm.c) */
void cpu_batchnorm_forward_train(hallu_backend *be, float *y, float *save_mean, float *save_invstd,
                                 float *running_mean, float *running_var, const float *x,
                                 const float *gamma, const float *beta, int64_t m, int c,
                                 float momentum, float eps);
void cpu_batchnorm_forward_eval(hallu_backend *be, float *y, const float *x,
                                const float *running_mean, const float *running_var,
                                const float *gamma, const float *beta, int64_t m, int c, float eps);
void cpu_batchnorm_backward(hallu_backend *be, float *dx, float *dgamma, float *dbeta,
                            const float *dy, const float *x, const float *save_mean,
                            const float *save_invstd, const float *gamma, int64_t m, int c);
void cpu_batchnorm_backward_x16(hallu_backend *be, uint16_t *dx16, float *dgamma, float *dbeta,
                                const float *dy, const float *x, const float *save_mean,
                                const float *save_invstd, const float *gamma, int64_t m, int c);
void cpu_batchnorm_normalize_fused(hallu_backend *be, float *y, uint16_t *y16, float *save_mean, float *save_invstd,
                                   float *save_scale, const float *x, const uint16_t *x16, const double *mean,
                                   const double *var, const float *gamma, const float *beta, const float *residual,
                                   const uint16_t *residual16, int relu, int64_t m, int c, float eps);
void cpu_batchnorm_backward_fused(hallu_backend *be, float *dx, uint16_t *dx16, float *dgamma, float *dbeta,
                                  const float *dy, const uint16_t *dy16, const float *x, const uint16_t *x16,
                                  const float *save_mean, const float *save_invstd, const float *save_scale,
                                  const float *gamma, const float *beta, int64_t m, int c);
void cpu_batchnorm_stats_x16(hallu_backend *be, double *mean, double *var, const uint16_t *x16, int64_t m, int c);

/* elementwise (cpu_eltwise.c) */
void cpu_relu_forward(hallu_backend *be, float *y, const float *x, int64_t n);
void cpu_relu_backward(hallu_backend *be, float *dx, const float *dy, const float *y, int64_t n);
void cpu_relu_forward_x16(hallu_backend *be, float *y, uint16_t *y16, const float *x, int64_t n);
void cpu_add(hallu_backend *be, float *y, const float *a, const float *b, int64_t n);
void cpu_add_relu_backward(hallu_backend *be, float *dx, const float *a, const float *b, const float *y, int64_t n);
void cpu_add_relu_backward_x16(hallu_backend *be, float *dx, uint16_t *dx16, const float *a, const uint16_t *a16,
                               const float *b, const uint16_t *b16, const float *y, const uint16_t *y16,
                               int64_t n);
void cpu_axpy(hallu_backend *be, float *y, float alpha, const float *x, int64_t n);
void cpu_scale(hallu_backend *be, float *y, float alpha, const float *x, int64_t n);
void cpu_normalize_u8(hallu_backend *be, float *y, const uint8_t *x, int64_t pixels, const float *mean,
                      const float *std);

/* pooling (cpu_pool.c) */
void cpu_maxpool2d_forward(hallu_backend *be, float *y, int32_t *argmax, const float *x,
                           const hallu_pool2d_geom *g);
void cpu_maxpool2d_backward(hallu_backend *be, float *dx, const float *dy, const int32_t *argmax,
                            const hallu_pool2d_geom *g);
void cpu_global_avgpool_forward(hallu_backend *be, float *y, const float *x, int n, int hw, int c);
void cpu_global_avgpool_backward(hallu_backend *be, float *dx, const float *dy, int n, int hw, int c);

/* dense (cpu_dense.c) */
void cpu_gemm(hallu_backend *be, int trans_a, int trans_b, int m, int n, int k, float alpha,
              const float *a, const float *b, float beta, float *c);
void cpu_linear_forward(hallu_backend *be, float *y, const float *x, const float *w,
                        const float *bias, int rows, int in, int out);
void cpu_linear_backward(hallu_backend *be, float *dx, float *dw, float *dbias, const float *dy,
                         const float *x, const float *w, int rows, int in, int out);

/* rows (cpu_rows.c) */
void cpu_l2norm_rows_forward(hallu_backend *be, float *y, float *norms, const float *x,
                             int rows, int cols, float eps);
void cpu_l2norm_rows_backward(hallu_backend *be, float *dx, const float *dy, const float *x,
                              const float *norms, int rows, int cols, float eps);
float cpu_softmax_xent_forward(hallu_backend *be, float *probs, const float *logits,
                               const int32_t *targets, int rows, int classes);
void cpu_softmax_xent_backward(hallu_backend *be, float *dlogits, const float *probs,
                               const int32_t *targets, int rows, int classes, float scale);
void cpu_copy_cols(hallu_backend *be, float *dst, int cols_dst, int col0, const float *src,
                   int cols_src, int rows);
void cpu_slice_cols(hallu_backend *be, float *dst, int cols_dst, const float *src, int cols_src,
                    int col0, int rows);

/* nn and optimizer ops (batch norm split, parameter updates, norms) */
void cpu_batchnorm_stats_to_moments(hallu_backend *be, double *mean, double *var, int c);
void cpu_batchnorm_moments_to_stats(hallu_backend *be, double *mean, double *var, int c, double inv_count);
void cpu_batchnorm_backward_reduce(hallu_backend *be, double *sums, float *dgamma, float *dbeta, const float *dy,
                                   const float *x, const float *save_mean, const float *save_invstd, int64_t m,
                                   int c);
void cpu_batchnorm_backward_apply(hallu_backend *be, float *dx, const float *dy, const float *x,
                                  const float *save_mean, const float *save_invstd, const float *gamma,
                                  const double *sums, int64_t m, int64_t m_total, int c);
void cpu_batchnorm_stats(hallu_backend *be, double *mean, double *var, const float *x, int64_t m, int c);
void cpu_batchnorm_normalize(hallu_backend *be, float *y, float *save_mean, float *save_invstd, const float *x,
                             const double *mean, const double *var, const float *gamma, const float *beta,
                             int64_t m, int c, float eps);
void cpu_batchnorm_update_running(hallu_backend *be, float *running_mean, float *running_var, const double *mean,
                                  const double *var, int64_t m, int c, float momentum);
void cpu_batchnorm_update_running_grouped(hallu_backend *be, float *running_mean, float *running_var,
                                          const float *save_mean, const float *save_invstd, int groups,
                                          int64_t rows_per, int c, float momentum, float eps);
/* optimizer (cpu_optim.c) */
void cpu_add_scalar(hallu_backend *be, float *y, float value, int64_t n);
void cpu_l2_norm(hallu_backend *be, float *norm, const float *x, int64_t n);
void cpu_clip_by_norm(hallu_backend *be, float *x, const float *total, int64_t n, float max_norm);
void cpu_lars_coef(hallu_backend *be, float *coef, const float *p, const float *g, int64_t n, float wd, float eps,
                   float eta, int clip_lr, float lr);
void cpu_sgd_update(hallu_backend *be, float *p, const float *g, float *buf, const float *lars, float wd,
                    float momentum, float damp1, float neg_lr, int nesterov, int first, int64_t n);
void cpu_adamw_update(hallu_backend *be, float *p, const float *g, float *m, float *v, float decay, float beta1,
                      float one_m_beta1, float beta2, float one_m_beta2, float bc2_sqrt, float eps, float neg_step,
                      int64_t n);
/* (end of nn ops) */

/* ssl ops (losses, Hallucinator, MoCo) */
/* ssl (cpu_ssl.c) */
void cpu_ssl_nt_xent_rows(hallu_backend *be, float *loss, float *sim, int rows, int m, int row0, int block,
                          int n_src, int mask_same_source, float scale);
void cpu_ssl_infonce_rows(hallu_backend *be, float *loss, float *dq, float *neg, const float *q, const float *kpos,
                          int rows, int d, int K, float temperature);
void cpu_ssl_neg_cosine(hallu_backend *be, float *loss, float *dp, const float *p, const float *z, int rows, int d,
                        float scale, int accumulate);
void cpu_ssl_collapse_std(hallu_backend *be, float *out, float *norms, const float *z, int rows, int d);
void cpu_ssl_hal_input(hallu_backend *be, float *xg, const float *x, const float *k, int rows, int d, float r);
void cpu_ssl_hal_output(hallu_backend *be, float *h, const float *mlp, const float *xg, int rows, int d,
                        int residual);
void cpu_ssl_hal_backward(hallu_backend *be, float *dx, float *dk, const float *dxg, const float *dout, int rows,
                          int d, float r, int residual);
void cpu_ssl_gather_rows(hallu_backend *be, float *dst, const float *src, const int32_t *index, int rows,
                         int64_t cols);
void cpu_ssl_scatter_rows(hallu_backend *be, float *dst, const float *src, const int32_t *index, int rows,
                          int64_t cols);
void cpu_ssl_enqueue_rows(hallu_backend *be, float *queue, int64_t *ptr, const float *src, int rows, int d, int K);
/* (end of ssl ops) */

/* eval ops (kNN, linear probe) */
void cpu_knn_inverse_norms(hallu_backend *be, float *inv, const float *x, int64_t rows, int dim);
void cpu_knn_scale_rows(hallu_backend *be, float *y, const float *x, const float *inv, int64_t rows, int dim);
void cpu_knn_scale_cols(hallu_backend *be, float *s, const float *inv, int rows, int64_t cols);
void cpu_knn_top_k(hallu_backend *be, float *top_sim, int32_t *top_idx, const float *sims, int rows, int64_t n,
                   int k);
void cpu_knn_vote(hallu_backend *be, int32_t *best, double *scores, const float *top_sim, const int32_t *top_idx,
                  const int32_t *train_labels, int rows, int k, float temperature, int classes, int nbest);
void cpu_argmax_hits(hallu_backend *be, int64_t *hits, const float *logits, const int32_t *labels, int rows,
                     int classes);
void cpu_class_rank_hits(hallu_backend *be, int64_t *hits, const float *logits, const int32_t *labels, int rows,
                         int classes);
/* (end of eval ops) */

#endif
