/* 2-D convolutions through cuDNN 9's legacy convolution API (issue 27).
 *
 * Layouts. Activations are NHWC (the backend contract), described to cuDNN as
 * CUDNN_TENSOR_NHWC tensors. hallu's weights are PyTorch's [Cout][Cin][K][K]
 * (KCRS). cuDNN's NHWC convolution kernels (the tensor-core implicit GEMMs that
 * make NHWC worth it) want the filter in the same format, KRSC (a filter
 * descriptor in CUDNN_TENSOR_NHWC format); mixing NHWC activations with a KCRS
 * filter is outside most engines' support. So each call transposes w into KRSC
 * in the shared workspace (weights are small next to activations: the
 * transpose costs far less than the convolution), and the weight gradient is
 * computed in KRSC into workspace scratch with beta 0, then added, transposed
 * back, into dw (dw += ..., the contract's accumulation). For 1x1 kernels
 * KRSC and KCRS are the same bytes: fp32 plans then hand w to cuDNN as is and
 * let it accumulate into dw itself (beta 1).
 *
 * Algorithms are chosen once, at plan creation, by cuDNN's heuristics
 * (cudnnGet*Algorithm_v7), not by timing (cudnnFind*): heuristics give the same
 * choice in every process on the same GPU and cuDNN, timing may not, and a run
 * resumed from a checkpoint must compute the same bits. Only algorithms that
 * report CUDNN_DETERMINISTIC are taken (the backward-filter and backward-data
 * ones that accumulate with atomics are not), and only with the plan's math
 * type: fp32 plans run CUDNN_FMA_MATH (no TF32, as the CPU backend; cuDNN's
 * DEFAULT_MATH would allow TF32 on Ampere and newer) unless HALLU_CUDA_TF32=1
 * (impl->allow_tf32) allows tensor-op math.
 *
 * bf16 plans (impl->precision == BF16 when the plan is created): as autocast
 * runs a convolution. x, w (into KRSC) and dy are rounded to bf16 by the kernels
 * below into workspace buffers; cuDNN runs in bf16 with fp32 accumulation
 * (CUDNN_DATA_FLOAT compute type, tensor-op math); y and dx come back as fp32
 * values of cuDNN's bf16 results, and the bf16 weight gradient (KRSC) is added
 * into the fp32 dw.
 *
 * Workspace (impl->workspace, shared by every plan: plans run one at a time on
 * the one stream) of one plan, each part 256-byte aligned:
 *   [cuDNN workspace][w in KRSC][dw in KRSC][bf16: x / dx][bf16: y / dy]
 * (the fp32 1x1 plans have no weight parts, fp32 plans no activation parts).
 * Backward runs the weight gradient first, so the x part then holds dx. */
#include "backend/cuda/cuda_internal.h"

#include <cuda_bf16.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

typedef __nv_bfloat16 bf16;

#define GEOM_FMT "n=%d h=%d w=%d cin=%d cout=%d k=%d stride=%d pad=%d"
#define GEOM_ARGS(g) (g)->n, (g)->h, (g)->w, (g)->cin, (g)->cout, (g)->k, (g)->stride, (g)->pad

/* cuDNN workspace a single algorithm may ask for; heavier ones (some FFT
 * variants) are skipped in favour of the next candidate. */
static const size_t CONV_ALGO_WS_MAX = (size_t)1 << 30;
enum { CONV_ALIGN = 256, CONV_MAX_ALGOS = 32 };

struct hallu_conv2d_plan {
    hallu_backend *be;
    cuda_impl *impl;
    hallu_conv2d_geom g;
    int bf16;                  /* bf16 operands, fp32 accumulation */
    int direct_w;              /* fp32 1x1: w and dw used in place (KRSC == KCRS) */
    int64_t x_count, y_count, w_count;
    cudnnTensorDescriptor_t xd, yd;     /* NHWC, float or bf16 (also dx, dy) */
    cudnnFilterDescriptor_t wd;         /* KRSC (CUDNN_TENSOR_NHWC), float or bf16 (also dw) */
    /* One convolution descriptor per pass: each carries its algorithm's math type. */
    cudnnConvolutionDescriptor_t cd_fwd, cd_bwd_data, cd_bwd_filter;
    cudnnConvolutionFwdAlgo_t algo_fwd;
    cudnnConvolutionBwdDataAlgo_t algo_bwd_data;
    cudnnConvolutionBwdFilterAlgo_t algo_bwd_filter;
    size_t ws_fwd, ws_bwd_data, ws_bwd_filter;
    /* Workspace layout (byte offsets into impl->workspace). */
    size_t off_w, off_dw, off_x, off_y, total;
};

/* ---- kernels (grid-stride loops; every thread writes its own elements) ---- */

static __device__ __forceinline__ float load_f(float v) { return v; }
static __device__ __forceinline__ float load_f(bf16 v) { return __bfloat162float(v); }
static __device__ __forceinline__ void store_f(float *p, float v) { *p = v; }
static __device__ __forceinline__ void store_f(bf16 *p, float v) { *p = __float2bfloat16_rn(v); }

#define GRID_STRIDE(i, n) \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

/* dst [K][RS][C] (KRSC, float or bf16) = w [K][C][RS] (KCRS); writes coalesced. */
template <typename T>
static __global__ void w_to_krsc_kernel(T *dst, const float *w, int K, int C, int RS)
{
    int64_t total = (int64_t)K * C * RS, per_k = (int64_t)RS * C;
    GRID_STRIDE(i, total) {
        int64_t k = i / per_k, rem = i % per_k;
        int64_t rs = rem / C, c = rem % C;
        store_f(&dst[i], w[(k * C + c) * RS + rs]);
    }
}

/* dw [K][C][RS] += src [K][RS][C] (the KRSC weight gradient, float or bf16). */
template <typename T>
static __global__ void dw_add_krsc_kernel(float *dw, const T *src, int K, int C, int RS)
{
    int64_t total = (int64_t)K * C * RS, per_k = (int64_t)C * RS;
    GRID_STRIDE(i, total) {
        int64_t k = i / per_k, rem = i % per_k;
        int64_t c = rem / RS, rs = rem % RS;
        dw[i] += load_f(src[(k * RS + rs) * C + c]);
    }
}

/* Round to nearest even, as autocast's casts. */
static __global__ void to_bf16_kernel(bf16 *dst, const float *src, int64_t n)
{
    GRID_STRIDE(i, n) dst[i] = __float2bfloat16_rn(src[i]);
}

static __global__ void from_bf16_kernel(float *dst, const bf16 *src, int64_t n)
{
    GRID_STRIDE(i, n) dst[i] = __bfloat162float(src[i]);
}

/* ---- plan creation ------------------------------------------------------- */

static hallu_status plan_dnn_fail(hallu_error *err, const hallu_conv2d_geom *g, const char *what, cudnnStatus_t st)
{
    char msg[320];
    cuda_dnn_message(msg, sizeof msg, st);
    cudaGetLastError();
    return hallu_error_set(err, cuda_dnn_oom(st) ? HALLU_ERR_OOM : HALLU_ERR_BACKEND,
                           "conv2d_plan_create: %s: %s for " GEOM_FMT, what, msg, GEOM_ARGS(g));
}

#define DNN_TRY(call, what) do { cudnnStatus_t st_ = (call); \
    if (st_ != CUDNN_STATUS_SUCCESS) return plan_dnn_fail(err, &plan->g, (what), st_); } while (0)

void cuda_conv2d_plan_free(hallu_conv2d_plan *plan)
{
    if (!plan)
        return;
    /* Descriptors are host objects: nothing queued refers to them. */
    if (plan->xd)
        cudnnDestroyTensorDescriptor(plan->xd);
    if (plan->yd)
        cudnnDestroyTensorDescriptor(plan->yd);
    if (plan->wd)
        cudnnDestroyFilterDescriptor(plan->wd);
    if (plan->cd_fwd)
        cudnnDestroyConvolutionDescriptor(plan->cd_fwd);
    if (plan->cd_bwd_data)
        cudnnDestroyConvolutionDescriptor(plan->cd_bwd_data);
    if (plan->cd_bwd_filter)
        cudnnDestroyConvolutionDescriptor(plan->cd_bwd_filter);
    free(plan);
}

/* The math type a plan starts from (and, for fp32 without TF32, the only one
 * it accepts from the heuristics). */
static cudnnMathType_t plan_math(const hallu_conv2d_plan *plan)
{
    if (plan->bf16)
        return CUDNN_TENSOR_OP_MATH;
    return plan->impl->allow_tf32 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH;
}

/* Whether a heuristic candidate's math type is acceptable, and the math type
 * the descriptor then carries (*use). fp32 without TF32: the descriptor is
 * always CUDNN_FMA_MATH (DEFAULT_MATH would allow TF32 on Ampere and newer).
 * cuDNN 8+ reports FMA_MATH for such candidates when the descriptor had it
 * (PyTorch asserts as much), but should a version report DEFAULT_MATH
 * instead, those candidates are still tried with FMA_MATH forced (the
 * workspace query then confirms the algorithm runs that way) rather than all
 * skipped in favour of the slow fallback; explicit tensor-op candidates are
 * skipped. */
static int math_ok(const hallu_conv2d_plan *plan, cudnnMathType_t m, cudnnMathType_t *use)
{
    *use = m;
    if (!plan->bf16 && !plan->impl->allow_tf32) {
        *use = CUDNN_FMA_MATH;
        return m == CUDNN_FMA_MATH || m == CUDNN_DEFAULT_MATH;
    }
    return 1;
}

/* fp32 plans are the parity path (CUDA against the CPU backend and PyTorch at
 * 1e-4): they keep to the GEMM-family algorithms, whose only error is fp32
 * summation order. FFT and Winograd transforms add their own rounding (some
 * 1e-5 .. 1e-4 relative for F(4x4, 3x3)), which bf16 plans can afford and
 * fp32 ones are not for. */
static int transform_algo(cudnnConvolutionFwdAlgo_t a)
{
    return a == CUDNN_CONVOLUTION_FWD_ALGO_FFT || a == CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING ||
           a == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD || a == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED;
}
static int transform_algo(cudnnConvolutionBwdDataAlgo_t a)
{
    return a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT || a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING ||
           a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD || a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED;
}
static int transform_algo(cudnnConvolutionBwdFilterAlgo_t a)
{
    return a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT || a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING ||
           a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED;
}

/* One pass's choice: the first heuristic candidate (cuDNN ranks them by
 * expected speed) that succeeded, is deterministic, is no transform algorithm
 * in an fp32 plan, has an acceptable math type
 * and whose workspace, queried with that math type set, fits; else `fallback`
 * (a deterministic algorithm that takes every geometry) with the plan's math
 * type. The passes differ in their types and argument orders only: get_v7
 * (count, &returned, perf) and ws_query (algo, &bytes) close over the rest. */
template <typename Perf, typename Algo, typename GetV7, typename WsQuery>
static hallu_status pick_algo(hallu_conv2d_plan *plan, cudnnConvolutionDescriptor_t cd, int max_algos,
                              GetV7 get_v7, WsQuery ws_query, Algo fallback, Algo *algo_out, size_t *ws_out,
                              const char *what, hallu_error *err)
{
    char call[192];
    Perf perf[CONV_MAX_ALGOS];
    int returned = 0;
    if (max_algos > CONV_MAX_ALGOS)
        max_algos = CONV_MAX_ALGOS;
    snprintf(call, sizeof call, "%s: cudnnSetConvolutionMathType", what);
    DNN_TRY(cudnnSetConvolutionMathType(cd, plan_math(plan)), call);
    snprintf(call, sizeof call, "%s: cudnnGet*Algorithm_v7", what);
    DNN_TRY(get_v7(max_algos, &returned, perf), call);
    for (int i = 0; i < returned && i < max_algos; i++) {
        cudnnMathType_t math = CUDNN_DEFAULT_MATH;
        if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].determinism != CUDNN_DETERMINISTIC ||
            !math_ok(plan, perf[i].mathType, &math) || (!plan->bf16 && transform_algo(perf[i].algo)))
            continue;
        snprintf(call, sizeof call, "%s: cudnnSetConvolutionMathType", what);
        DNN_TRY(cudnnSetConvolutionMathType(cd, math), call);
        size_t bytes = 0;
        if (ws_query(perf[i].algo, &bytes) != CUDNN_STATUS_SUCCESS || bytes > CONV_ALGO_WS_MAX) {
            char stale[256];
            cudnnGetLastErrorString(stale, sizeof stale);   /* a rejected candidate's reason must not label a later error */
            continue;
        }
        *algo_out = perf[i].algo;
        *ws_out = bytes;
        return HALLU_OK;
    }
    snprintf(call, sizeof call, "%s: cudnnSetConvolutionMathType", what);
    DNN_TRY(cudnnSetConvolutionMathType(cd, plan_math(plan)), call);
    snprintf(call, sizeof call, "%s: no deterministic algorithm among cuDNN's %d candidates, and the fallback "
             "(algorithm %d) fails its workspace query", what, returned, (int)fallback);
    DNN_TRY(ws_query(fallback, ws_out), call);
    *algo_out = fallback;
    return HALLU_OK;
}

static size_t align_up(size_t v) { return (v + CONV_ALIGN - 1) / CONV_ALIGN * CONV_ALIGN; }

static hallu_status plan_build(hallu_conv2d_plan *plan, hallu_error *err)
{
    const hallu_conv2d_geom *g = &plan->g;
    cudnnHandle_t h = plan->impl->cudnn;
    cudnnDataType_t dt = plan->bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;

    DNN_TRY(cudnnCreateTensorDescriptor(&plan->xd), "cudnnCreateTensorDescriptor");
    DNN_TRY(cudnnCreateTensorDescriptor(&plan->yd), "cudnnCreateTensorDescriptor");
    DNN_TRY(cudnnCreateFilterDescriptor(&plan->wd), "cudnnCreateFilterDescriptor");
    DNN_TRY(cudnnCreateConvolutionDescriptor(&plan->cd_fwd), "cudnnCreateConvolutionDescriptor");
    DNN_TRY(cudnnCreateConvolutionDescriptor(&plan->cd_bwd_data), "cudnnCreateConvolutionDescriptor");
    DNN_TRY(cudnnCreateConvolutionDescriptor(&plan->cd_bwd_filter), "cudnnCreateConvolutionDescriptor");
    /* cudnnSetTensor4dDescriptor takes dims in N, C, H, W order whatever the format. */
    DNN_TRY(cudnnSetTensor4dDescriptor(plan->xd, CUDNN_TENSOR_NHWC, dt, g->n, g->cin, g->h, g->w),
            "input descriptor (NHWC)");
    DNN_TRY(cudnnSetTensor4dDescriptor(plan->yd, CUDNN_TENSOR_NHWC, dt, g->n, g->cout, g->oh, g->ow),
            "output descriptor (NHWC)");
    /* Filter dims K, C, R, S; the NHWC format means the bytes are KRSC. */
    DNN_TRY(cudnnSetFilter4dDescriptor(plan->wd, dt, CUDNN_TENSOR_NHWC, g->cout, g->cin, g->k, g->k),
            "filter descriptor (KRSC)");
    cudnnConvolutionDescriptor_t cds[3] = { plan->cd_fwd, plan->cd_bwd_data, plan->cd_bwd_filter };
    for (int i = 0; i < 3; i++)
        /* PyTorch's convolution is a cross-correlation; fp32 accumulation in both precisions. */
        DNN_TRY(cudnnSetConvolution2dDescriptor(cds[i], g->pad, g->pad, g->stride, g->stride, 1, 1,
                                                CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
                "cudnnSetConvolution2dDescriptor");
    int on, oc, oh, ow;
    DNN_TRY(cudnnGetConvolution2dForwardOutputDim(plan->cd_fwd, plan->xd, plan->wd, &on, &oc, &oh, &ow),
            "cudnnGetConvolution2dForwardOutputDim");
    if (on != g->n || oc != g->cout || oh != g->oh || ow != g->ow)
        return hallu_error_set(err, HALLU_ERR_BACKEND, "conv2d_plan_create: cuDNN's output %dx%dx%dx%d differs from "
                               "hallu's %dx%dx%dx%d for " GEOM_FMT, on, oh, ow, oc, g->n, g->oh, g->ow, g->cout,
                               GEOM_ARGS(g));

    /* Candidates: as many as cuDNN has (cudnnGet*AlgorithmMaxCount), at most CONV_MAX_ALGOS. */
    int max_fwd = 0, max_bwd_data = 0, max_bwd_filter = 0;
    DNN_TRY(cudnnGetConvolutionForwardAlgorithmMaxCount(h, &max_fwd), "cudnnGetConvolutionForwardAlgorithmMaxCount");
    DNN_TRY(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &max_bwd_data),
            "cudnnGetConvolutionBackwardDataAlgorithmMaxCount");
    DNN_TRY(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, &max_bwd_filter),
            "cudnnGetConvolutionBackwardFilterAlgorithmMaxCount");
    hallu_status s;
    cudnnTensorDescriptor_t xd = plan->xd, yd = plan->yd;
    cudnnFilterDescriptor_t wd = plan->wd;
    cudnnConvolutionDescriptor_t cf = plan->cd_fwd, cbd = plan->cd_bwd_data, cbf = plan->cd_bwd_filter;
    s = pick_algo<cudnnConvolutionFwdAlgoPerf_t>(
        plan, cf, max_fwd,
        [&](int n, int *ret, cudnnConvolutionFwdAlgoPerf_t *perf) {
            return cudnnGetConvolutionForwardAlgorithm_v7(h, xd, wd, cf, yd, n, ret, perf);
        },
        [&](cudnnConvolutionFwdAlgo_t a, size_t *bytes) {
            return cudnnGetConvolutionForwardWorkspaceSize(h, xd, wd, cf, yd, a, bytes);
        },
        CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, &plan->algo_fwd, &plan->ws_fwd, "forward", err);
    if (s != HALLU_OK)
        return s;
    s = pick_algo<cudnnConvolutionBwdDataAlgoPerf_t>(
        plan, cbd, max_bwd_data,
        [&](int n, int *ret, cudnnConvolutionBwdDataAlgoPerf_t *perf) {
            return cudnnGetConvolutionBackwardDataAlgorithm_v7(h, wd, yd, cbd, xd, n, ret, perf);
        },
        [&](cudnnConvolutionBwdDataAlgo_t a, size_t *bytes) {
            return cudnnGetConvolutionBackwardDataWorkspaceSize(h, wd, yd, cbd, xd, a, bytes);
        },
        CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, &plan->algo_bwd_data, &plan->ws_bwd_data, "backward data", err);
    if (s != HALLU_OK)
        return s;
    s = pick_algo<cudnnConvolutionBwdFilterAlgoPerf_t>(
        plan, cbf, max_bwd_filter,
        [&](int n, int *ret, cudnnConvolutionBwdFilterAlgoPerf_t *perf) {
            return cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, xd, yd, cbf, wd, n, ret, perf);
        },
        [&](cudnnConvolutionBwdFilterAlgo_t a, size_t *bytes) {
            return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, xd, yd, cbf, wd, a, bytes);
        },
        CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, &plan->algo_bwd_filter, &plan->ws_bwd_filter, "backward filter", err);
    if (s != HALLU_OK)
        return s;

    /* Workspace layout (see the top of the file). */
    size_t dnn = plan->ws_fwd;
    if (plan->ws_bwd_data > dnn)
        dnn = plan->ws_bwd_data;
    if (plan->ws_bwd_filter > dnn)
        dnn = plan->ws_bwd_filter;
    size_t esize = plan->bf16 ? sizeof(bf16) : sizeof(float);
    size_t wbytes = plan->direct_w ? 0 : align_up((size_t)plan->w_count * esize);
    size_t off = align_up(dnn);
    plan->off_w = off;
    off += wbytes;
    plan->off_dw = off;
    off += wbytes;
    plan->off_x = off;
    if (plan->bf16)
        off += align_up((size_t)plan->x_count * sizeof(bf16));
    plan->off_y = off;
    if (plan->bf16)
        off += align_up((size_t)plan->y_count * sizeof(bf16));
    plan->total = off;
    /* HALLU_CUDA_CONV_LOG=1: one line per plan on stderr (which algorithms the
     * heuristics gave, and their workspace), for GPU checks and benchmarks. */
    const char *log = getenv("HALLU_CUDA_CONV_LOG");
    if (log && log[0] == '1') {
        cudnnMathType_t mf = CUDNN_DEFAULT_MATH, md = CUDNN_DEFAULT_MATH, mw = CUDNN_DEFAULT_MATH;
        cudnnGetConvolutionMathType(plan->cd_fwd, &mf);
        cudnnGetConvolutionMathType(plan->cd_bwd_data, &md);
        cudnnGetConvolutionMathType(plan->cd_bwd_filter, &mw);
        fprintf(stderr, "hallu cuda conv plan " GEOM_FMT " %s: fwd algo %d math %d ws %zu, bwd-data algo %d math %d "
                "ws %zu, bwd-filter algo %d math %d ws %zu, plan workspace %zu bytes\n", GEOM_ARGS(g),
                plan->bf16 ? "bf16" : "fp32", (int)plan->algo_fwd, (int)mf, plan->ws_fwd, (int)plan->algo_bwd_data,
                (int)md, plan->ws_bwd_data, (int)plan->algo_bwd_filter, (int)mw, plan->ws_bwd_filter, plan->total);
    }
    return cuda_workspace_reserve(plan->impl, plan->total, err);
}

hallu_status cuda_conv2d_plan_create(hallu_backend *be, const hallu_conv2d_geom *g, hallu_conv2d_plan **out,
                                     hallu_error *err)
{
    if (!be || !out || !g)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "conv2d_plan_create: NULL %s",
                               !be ? "backend" : !out ? "out" : "geometry");
    *out = NULL;
    /* As the CPU backend: a geometry hallu_conv2d_geom_init would refuse, or
     * one whose oh/ow disagree with it, is the caller's error (INVALID_ARG),
     * not a cuDNN failure. */
    hallu_conv2d_geom check;
    hallu_status s = hallu_conv2d_geom_check(&check, g, err);
    if (s != HALLU_OK)
        return s;
    g = &check;
    /* cuDNN's legacy descriptors count elements in int. */
    int64_t x_count = (int64_t)g->n * g->h * g->w * g->cin, y_count = (int64_t)g->n * g->oh * g->ow * g->cout;
    int64_t w_count = (int64_t)g->cout * g->cin * g->k * g->k;
    if (x_count > INT_MAX || y_count > INT_MAX || w_count > INT_MAX)
        return hallu_error_set(err, HALLU_ERR_UNSUPPORTED, "conv2d_plan_create: a tensor of more than %d elements "
                               "(input %lld, output %lld, weight %lld) for " GEOM_FMT " (use a smaller batch)",
                               INT_MAX, (long long)x_count, (long long)y_count, (long long)w_count, GEOM_ARGS(g));
    s = hallu_backend_check(be, err);   /* a failed backend plans nothing */
    if (s != HALLU_OK)
        return s;
    hallu_conv2d_plan *plan = (hallu_conv2d_plan *)calloc(1, sizeof *plan);
    if (!plan)
        return hallu_error_set(err, HALLU_ERR_OOM, "conv2d_plan_create: out of host memory for " GEOM_FMT,
                               GEOM_ARGS(g));
    plan->be = be;
    plan->impl = cuda_impl_of(be);
    plan->g = *g;
    plan->bf16 = plan->impl->precision == HALLU_PRECISION_BF16;
    plan->direct_w = !plan->bf16 && g->k == 1;
    plan->x_count = x_count;
    plan->y_count = y_count;
    plan->w_count = w_count;
    s = plan_build(plan, err);
    if (s != HALLU_OK) {
        cuda_conv2d_plan_free(plan);
        return s;
    }
    *out = plan;
    return HALLU_OK;
}

/* impl->workspace + off (the workspace may have moved since the plan was made:
 * a later plan grew it, so the address is taken per call). */
static void *ws_at(const hallu_conv2d_plan *plan, size_t off)
{
    return plan->impl->workspace ? (char *)plan->impl->workspace + off : NULL;
}

static void *dnn_ws(const hallu_conv2d_plan *plan) { return ws_at(plan, 0); }

/* The shared workspace must still hold this plan's layout: growing it for a
 * later plan frees the old buffer first, and when that growth fails and the
 * old size cannot be had back either (cuda_workspace_reserve), the workspace
 * is smaller than the earlier plans' layouts. Then the op fails by name
 * instead of handing cuDNN and the kernels addresses past the buffer. */
static int plan_workspace_ok(const hallu_conv2d_plan *plan, const char *what)
{
    const cuda_impl *impl = plan->impl;
    if (plan->total <= impl->workspace_bytes && (plan->total == 0 || impl->workspace))
        return 1;
    hallu_backend_fail(plan->be, HALLU_ERR_OOM, "%s: the shared CUDA workspace holds %zu bytes, this plan needs %zu "
                       "(a later plan's workspace growth failed) for " GEOM_FMT, what, impl->workspace_bytes,
                       plan->total, GEOM_ARGS(&plan->g));
    return 0;
}

/* Launch helpers: enqueue on the backend's stream, record a failed launch.
 * Each returns cuda_enter's answer afterwards (0: stop enqueuing). */
template <typename T>
static int launch_w_to_krsc(hallu_conv2d_plan *plan, T *dst, const float *w, const char *what)
{
    const hallu_conv2d_geom *g = &plan->g;
    w_to_krsc_kernel<T><<<cuda_blocks(plan->w_count), CUDA_THREADS, 0, plan->impl->stream>>>(dst, w, g->cout, g->cin,
                                                                                           g->k * g->k);
    cuda_check_launch(plan->be, what);
    return cuda_enter(plan->be);
}

static int launch_to_bf16(hallu_conv2d_plan *plan, bf16 *dst, const float *src, int64_t n, const char *what)
{
    to_bf16_kernel<<<cuda_blocks(n), CUDA_THREADS, 0, plan->impl->stream>>>(dst, src, n);
    cuda_check_launch(plan->be, what);
    return cuda_enter(plan->be);
}

static int launch_from_bf16(hallu_conv2d_plan *plan, float *dst, const bf16 *src, int64_t n, const char *what)
{
    from_bf16_kernel<<<cuda_blocks(n), CUDA_THREADS, 0, plan->impl->stream>>>(dst, src, n);
    cuda_check_launch(plan->be, what);
    return cuda_enter(plan->be);
}

/* y = conv(x, w): y is overwritten (beta 0). */
void cuda_conv2d_forward(hallu_conv2d_plan *plan, float *y, const float *x, const uint16_t *x_rounded,
                         const float *w)
{
    (void)x_rounded;
    hallu_backend *be = plan->be;
    if (!cuda_enter(be) || !plan_workspace_ok(plan, "conv2d_forward"))
        return;
    const float one = 1.0f, zero = 0.0f;   /* float scaling factors also for bf16 data (float compute) */
    const void *xin = x, *win = w;
    void *yout = y;
    if (plan->bf16) {
        bf16 *x16 = (bf16 *)ws_at(plan, plan->off_x), *w16 = (bf16 *)ws_at(plan, plan->off_w);
        if (!launch_to_bf16(plan, x16, x, plan->x_count, "conv2d_forward: x to bf16") ||
            !launch_w_to_krsc(plan, w16, w, "conv2d_forward: w to bf16 KRSC"))
            return;
        xin = x16;
        win = w16;
        yout = ws_at(plan, plan->off_y);
    } else if (!plan->direct_w) {
        float *wk = (float *)ws_at(plan, plan->off_w);
        if (!launch_w_to_krsc(plan, wk, w, "conv2d_forward: w to KRSC"))
            return;
        win = wk;
    }
    if (!cuda_check_dnn(be, cudnnConvolutionForward(plan->impl->cudnn, &one, plan->xd, xin, plan->wd, win,
                                                    plan->cd_fwd, plan->algo_fwd, dnn_ws(plan), plan->ws_fwd, &zero,
                                                    plan->yd, yout),
                        "conv2d_forward: cudnnConvolutionForward"))
        return;
    if (plan->bf16)
        launch_from_bf16(plan, y, (const bf16 *)yout, plan->y_count, "conv2d_forward: y to fp32");
}

/* dw += corr(x, dy) (if dw), then dx = conv_transpose(dy, w) (if dx; overwritten).
 * The weight gradient goes first: in bf16 plans the x part of the workspace
 * holds x in bf16 for it, then dx in bf16. */
void cuda_conv2d_backward(hallu_conv2d_plan *plan, float *dx, float *dw, const float *dy, const uint16_t *dy_rounded,
                          const float *x, const uint16_t *x_rounded, const float *w)
{
    (void)dy_rounded;
    (void)x_rounded;
    hallu_backend *be = plan->be;
    if (!cuda_enter(be) || (!dx && !dw) || !plan_workspace_ok(plan, "conv2d_backward"))
        return;
    cuda_impl *impl = plan->impl;
    const hallu_conv2d_geom *g = &plan->g;
    const float one = 1.0f, zero = 0.0f;
    const void *dyin = dy;
    bf16 *x16 = (bf16 *)ws_at(plan, plan->off_x);
    if (plan->bf16) {
        bf16 *dy16 = (bf16 *)ws_at(plan, plan->off_y);
        if (!launch_to_bf16(plan, dy16, dy, plan->y_count, "conv2d_backward: dy to bf16"))
            return;
        dyin = dy16;
    }
    if (dw) {
        const void *xin = x;
        if (plan->bf16) {
            if (!launch_to_bf16(plan, x16, x, plan->x_count, "conv2d_backward: x to bf16"))
                return;
            xin = x16;
        }
        /* fp32 1x1: cuDNN adds into dw itself (beta 1); else KRSC scratch (beta 0), added below. */
        void *dwout = plan->direct_w ? (void *)dw : ws_at(plan, plan->off_dw);
        if (!cuda_check_dnn(be, cudnnConvolutionBackwardFilter(impl->cudnn, &one, plan->xd, xin, plan->yd, dyin,
                                                               plan->cd_bwd_filter, plan->algo_bwd_filter,
                                                               dnn_ws(plan), plan->ws_bwd_filter,
                                                               plan->direct_w ? &one : &zero, plan->wd, dwout),
                            "conv2d_backward: cudnnConvolutionBackwardFilter"))
            return;
        if (!plan->direct_w) {
            unsigned blocks = cuda_blocks(plan->w_count);
            if (plan->bf16)
                dw_add_krsc_kernel<bf16><<<blocks, CUDA_THREADS, 0, impl->stream>>>(dw, (const bf16 *)dwout, g->cout,
                                                                                    g->cin, g->k * g->k);
            else
                dw_add_krsc_kernel<float><<<blocks, CUDA_THREADS, 0, impl->stream>>>(dw, (const float *)dwout,
                                                                                     g->cout, g->cin, g->k * g->k);
            cuda_check_launch(be, "conv2d_backward: dw += KRSC gradient");
            if (!cuda_enter(be))
                return;
        }
    }
    if (dx) {
        const void *win = w;
        if (plan->bf16) {
            bf16 *w16 = (bf16 *)ws_at(plan, plan->off_w);
            if (!launch_w_to_krsc(plan, w16, w, "conv2d_backward: w to bf16 KRSC"))
                return;
            win = w16;
        } else if (!plan->direct_w) {
            float *wk = (float *)ws_at(plan, plan->off_w);
            if (!launch_w_to_krsc(plan, wk, w, "conv2d_backward: w to KRSC"))
                return;
            win = wk;
        }
        void *dxout = plan->bf16 ? (void *)x16 : (void *)dx;
        if (!cuda_check_dnn(be, cudnnConvolutionBackwardData(impl->cudnn, &one, plan->wd, win, plan->yd, dyin,
                                                             plan->cd_bwd_data, plan->algo_bwd_data, dnn_ws(plan),
                                                             plan->ws_bwd_data, &zero, plan->xd, dxout),
                            "conv2d_backward: cudnnConvolutionBackwardData"))
            return;
        if (plan->bf16)
            launch_from_bf16(plan, dx, x16, plan->x_count, "conv2d_backward: dx to fp32");
    }
}
