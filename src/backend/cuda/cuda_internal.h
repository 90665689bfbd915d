/* Private state and op prototypes of the CUDA backend (issue 27).
 *
 * One device, one stream: every op is enqueued on impl->stream and returns
 * without waiting, except download (and the few ops whose result the host
 * reads: softmax_xent_forward's returned loss), which synchronise the stream,
 * and upload_wait, which waits for the last upload's copy only.
 * Device memory is plain cudaMalloc (never managed memory). Failures follow the
 * backend contract (include/hallu/backend.h): the first failing call is recorded
 * with hallu_backend_fail (sticky), later ops return at once (cuda_enter).
 *
 * Files: cuda_backend.cu (lifetime, memory, transfers, precision, the op table),
 * cuda_conv.cu (cuDNN convolutions, NHWC), cuda_dense.cu (cuBLAS gemm/linear),
 * cuda_nn.cu (batch norm, elementwise, pooling, optimizer updates, norms),
 * cuda_rows.cu (row ops, softmax cross-entropy, column copies), cuda_ssl.cu
 * (losses, Hallucinator, MoCo), cuda_eval.cu (kNN, probe counters).
 *
 * Numerics: the CPU backend sums in double where it says so (BN statistics,
 * norms, row sums, kNN votes); these kernels keep double accumulators at the
 * same places, so CUDA-vs-CPU checks hold at 1e-4 relative (not bit for bit:
 * summation order differs). */
#ifndef HALLU_CUDA_INTERNAL_H
#define HALLU_CUDA_INTERNAL_H

#include "hallu/backend.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One live cuda_alloc block (see cuda_impl.allocs). */
typedef struct cuda_alloc_rec {
    void *p;                    /* NULL: empty slot */
    size_t nbytes;
} cuda_alloc_rec;

typedef struct cuda_impl {
    hallu_backend *be;          /* the owner, where failures are recorded */
    int device;                 /* CUDA device ordinal (--device cuda:N) */
    cudaStream_t stream;        /* every op runs here */
    /* Recorded on stream right after each upload's copy: upload_wait waits
     * for it (created at backend creation, timing disabled). */
    cudaEvent_t upload_event;
    int upload_recorded;        /* 1 once upload_event has been recorded */
    cublasHandle_t cublas;      /* bound to stream; TF32 off unless allow_tf32 */
    cudnnHandle_t cudnn;        /* bound to stream */
    hallu_precision precision;  /* of the conv plans created from now on */
    int allow_tf32;             /* HALLU_CUDA_TF32=1 in the environment at creation */
    /* Workspace shared by every conv plan: cuDNN's workspace, the weights in
     * KRSC, bf16 copies of the operands (grown at plan creation, never during
     * a step; plans run one at a time on the one stream, so one buffer serves
     * all). cuBLAS keeps the default workspace of its handle. */
    void *workspace;
    size_t workspace_bytes;
    /* Small device scratch for reductions (norms, block sums): CUDA_SCRATCH_BYTES
     * reserved at creation, so no op allocates during a step. */
    void *scratch;
    size_t scratch_bytes;
    /* Device memory handed out by cuda_alloc: now and at most. */
    size_t bytes_live, bytes_peak;
    char device_name[256];
    int cc_major, cc_minor;     /* compute capability (bf16 needs >= 8.0) */
    /* Sizes of the live cuda_alloc blocks (host-side open-addressing table keyed
     * by device address: device memory has no room for a host-readable header). */
    cuda_alloc_rec *allocs;
    size_t allocs_cap, allocs_used;
} cuda_impl;

static inline cuda_impl *cuda_impl_of(hallu_backend *be) { return (cuda_impl *)be->impl; }

/* 0 when an earlier op failed (the op must return without enqueuing). */
static inline int cuda_enter(hallu_backend *be) { return be->failed == HALLU_OK; }

/* Records a failed CUDA runtime / cuBLAS / cuDNN call as the backend's failure
 * (first one wins), naming the call site's `what`. Return 0 on failure. */
int cuda_check_rt(hallu_backend *be, cudaError_t st, const char *what);
int cuda_check_blas(hallu_backend *be, cublasStatus_t st, const char *what);
int cuda_check_dnn(hallu_backend *be, cudnnStatus_t st, const char *what);
/* After a kernel launch: records cudaGetLastError() as the failure of `what`. */
void cuda_check_launch(hallu_backend *be, const char *what);
/* "<cudnnGetErrorString>: <cudnnGetLastErrorString>" for errors built outside
 * a backend failure (plan creation). */
void cuda_dnn_message(char *buf, size_t size, cudnnStatus_t st);
/* cuDNN 9's allocation failures (HALLU_ERR_OOM): host and device.
 * CUDNN_STATUS_ALLOC_FAILED is only the host one now (a deprecated alias). */
static inline int cuda_dnn_oom(cudnnStatus_t st)
{
    return st == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED ||
           st == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED;
}

/* Threads per block for elementwise kernels, and the grid for n elements
 * (capped; kernels loop grid-stride). */
enum { CUDA_THREADS = 256 };
static inline unsigned cuda_blocks(int64_t n)
{
    int64_t b = (n + CUDA_THREADS - 1) / CUDA_THREADS;
    if (b < 1)
        b = 1;
    return (unsigned)(b > 65535 * 8 ? 65535 * 8 : b);
}

/* The scratch reserved at creation: cuda_nn.cu's partial sums need at most
 * CUDA_NN_SCRATCH_BYTES (544 KiB), the row losses (cuda_rows.cu, cuda_ssl.cu)
 * one double per block of a capped grid (about 8 KiB); ops check and name a
 * shortfall rather than overrun. */
enum { CUDA_SCRATCH_BYTES = 1 << 20 };

/* Grows impl->workspace (or impl->scratch) to `need` bytes at plan/setup time;
 * named HALLU_ERR_OOM on failure. */
hallu_status cuda_workspace_reserve(cuda_impl *impl, size_t need, hallu_error *err);
hallu_status cuda_scratch_reserve(cuda_impl *impl, size_t need, hallu_error *err);

/* ---- cuda_backend.cu ---- */
hallu_status hallu_backend_cuda_create(const char *device, int num_threads, hallu_backend **out, hallu_error *err);
/* hallu_backends_compiled() of a build with this backend: "cpu (oneDNN +
 * OpenMP), cuda (CUDA runtime X.Y, cuBLAS X.Y.Z, cuDNN X.Y.Z)", the versions
 * of the headers compiled against. */
const char *cuda_backends_compiled(void);

/* ---- cuda_conv.cu ---- */
hallu_status cuda_conv2d_plan_create(hallu_backend *be, const hallu_conv2d_geom *g, hallu_conv2d_plan **out,
                                     hallu_error *err);
void cuda_conv2d_plan_free(hallu_conv2d_plan *plan);
/* x_rounded / dy_rounded (conv2d_forward's x16, conv2d_backward's dy16) are
 * not used: this backend has no relu_forward_x16 / batchnorm_backward_x16, and
 * its bf16 plans round x and dy on the device themselves. */
void cuda_conv2d_forward(hallu_conv2d_plan *plan, float *y, const float *x, const uint16_t *x_rounded,
                         const float *w);
void cuda_conv2d_backward(hallu_conv2d_plan *plan, float *dx, float *dw, const float *dy, const uint16_t *dy_rounded,
                          const float *x, const uint16_t *x_rounded, const float *w);

/* ---- cuda_dense.cu ---- */
void cuda_gemm(hallu_backend *be, int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
               const float *b, float beta, float *c);
void cuda_linear_forward(hallu_backend *be, float *y, const float *x, const float *w, const float *bias, int rows,
                         int in, int out);
void cuda_linear_backward(hallu_backend *be, float *dx, float *dw, float *dbias, const float *dy, const float *x,
                          const float *w, int rows, int in, int out);

/* ---- cuda_nn.cu ---- */
void cuda_fill(hallu_backend *be, float *y, float value, int64_t n);
void cuda_batchnorm_forward_train(hallu_backend *be, float *y, float *save_mean, float *save_invstd,
                                  float *running_mean, float *running_var, const float *x, const float *gamma,
                                  const float *beta, int64_t m, int c, float momentum, float eps);
void cuda_batchnorm_forward_eval(hallu_backend *be, float *y, const float *x, const float *running_mean,
                                 const float *running_var, const float *gamma, const float *beta, int64_t m, int c,
                                 float eps);
void cuda_batchnorm_backward(hallu_backend *be, float *dx, float *dgamma, float *dbeta, const float *dy,
                             const float *x, const float *save_mean, const float *save_invstd, const float *gamma,
                             int64_t m, int c);
void cuda_batchnorm_stats(hallu_backend *be, double *mean, double *var, const float *x, int64_t m, int c);
void cuda_batchnorm_normalize(hallu_backend *be, float *y, float *save_mean, float *save_invstd, const float *x,
                              const double *mean, const double *var, const float *gamma, const float *beta,
                              int64_t m, int c, float eps);
void cuda_batchnorm_update_running(hallu_backend *be, float *running_mean, float *running_var, const double *mean,
                                   const double *var, int64_t m, int c, float momentum);
void cuda_batchnorm_stats_to_moments(hallu_backend *be, double *mean, double *var, int c);
void cuda_batchnorm_moments_to_stats(hallu_backend *be, double *mean, double *var, int c, double inv_count);
void cuda_batchnorm_backward_reduce(hallu_backend *be, double *sums, float *dgamma, float *dbeta, const float *dy,
                                    const float *x, const float *save_mean, const float *save_invstd, int64_t m,
                                    int c);
void cuda_batchnorm_backward_apply(hallu_backend *be, float *dx, const float *dy, const float *x,
                                   const float *save_mean, const float *save_invstd, const float *gamma,
                                   const double *sums, int64_t m, int64_t m_total, int c);
void cuda_batchnorm_update_running_grouped(hallu_backend *be, float *running_mean, float *running_var,
                                           const float *save_mean, const float *save_invstd, int groups,
                                           int64_t rows_per, int c, float momentum, float eps);
void cuda_relu_forward(hallu_backend *be, float *y, const float *x, int64_t n);
void cuda_relu_backward(hallu_backend *be, float *dx, const float *dy, const float *y, int64_t n);
void cuda_add(hallu_backend *be, float *y, const float *a, const float *b, int64_t n);
void cuda_axpy(hallu_backend *be, float *y, float alpha, const float *x, int64_t n);
void cuda_scale(hallu_backend *be, float *y, float alpha, const float *x, int64_t n);
void cuda_add_scalar(hallu_backend *be, float *y, float value, int64_t n);
void cuda_normalize_u8(hallu_backend *be, float *y, const uint8_t *x, int64_t pixels, const float *mean,
                       const float *std);
void cuda_maxpool2d_forward(hallu_backend *be, float *y, int32_t *argmax, const float *x,
                            const hallu_pool2d_geom *g);
void cuda_maxpool2d_backward(hallu_backend *be, float *dx, const float *dy, const int32_t *argmax,
                             const hallu_pool2d_geom *g);
void cuda_global_avgpool_forward(hallu_backend *be, float *y, const float *x, int n, int hw, int c);
void cuda_global_avgpool_backward(hallu_backend *be, float *dx, const float *dy, int n, int hw, int c);
void cuda_l2_norm(hallu_backend *be, float *norm, const float *x, int64_t n);
void cuda_clip_by_norm(hallu_backend *be, float *x, const float *total, int64_t n, float max_norm);
void cuda_lars_coef(hallu_backend *be, float *coef, const float *p, const float *g, int64_t n, float wd, float eps,
                    float eta, int clip_lr, float lr);
void cuda_sgd_update(hallu_backend *be, float *p, const float *g, float *buf, const float *lars, float wd,
                     float momentum, float damp1, float neg_lr, int nesterov, int first, int64_t n);
void cuda_adamw_update(hallu_backend *be, float *p, const float *g, float *m, float *v, float decay, float beta1,
                       float one_m_beta1, float beta2, float one_m_beta2, float bc2_sqrt, float eps,
                       float neg_step, int64_t n);

/* ---- cuda_rows.cu ---- */
void cuda_l2norm_rows_forward(hallu_backend *be, float *y, float *norms, const float *x, int rows, int cols,
                              float eps);
void cuda_l2norm_rows_backward(hallu_backend *be, float *dx, const float *dy, const float *x, const float *norms,
                               int rows, int cols, float eps);
float cuda_softmax_xent_forward(hallu_backend *be, float *probs, const float *logits, const int32_t *targets,
                                int rows, int classes);
void cuda_softmax_xent_backward(hallu_backend *be, float *dlogits, const float *probs, const int32_t *targets,
                                int rows, int classes, float scale);
void cuda_copy_cols(hallu_backend *be, float *dst, int cols_dst, int col0, const float *src, int cols_src,
                    int rows);
void cuda_slice_cols(hallu_backend *be, float *dst, int cols_dst, const float *src, int cols_src, int col0,
                     int rows);

/* ---- cuda_ssl.cu ---- */
void cuda_ssl_nt_xent_rows(hallu_backend *be, float *loss, float *sim, int rows, int m, int row0, int block,
                           int n_src, int mask_same_source, float scale);
void cuda_ssl_infonce_rows(hallu_backend *be, float *loss, float *dq, float *neg, const float *q, const float *kpos,
                           int rows, int d, int K, float temperature);
void cuda_ssl_neg_cosine(hallu_backend *be, float *loss, float *dp, const float *p, const float *z, int rows, int d,
                         float scale, int accumulate);
void cuda_ssl_collapse_std(hallu_backend *be, float *out, float *norms, const float *z, int rows, int d);
void cuda_ssl_hal_input(hallu_backend *be, float *xg, const float *x, const float *k, int rows, int d, float r);
void cuda_ssl_hal_output(hallu_backend *be, float *h, const float *mlp, const float *xg, int rows, int d,
                         int residual);
void cuda_ssl_hal_backward(hallu_backend *be, float *dx, float *dk, const float *dxg, const float *dout, int rows,
                           int d, float r, int residual);
void cuda_ssl_gather_rows(hallu_backend *be, float *dst, const float *src, const int32_t *index, int rows,
                          int64_t cols);
void cuda_ssl_scatter_rows(hallu_backend *be, float *dst, const float *src, const int32_t *index, int rows,
                           int64_t cols);
void cuda_ssl_enqueue_rows(hallu_backend *be, float *queue, int64_t *ptr, const float *src, int rows, int d, int K);

/* ---- cuda_eval.cu ---- */
void cuda_knn_inverse_norms(hallu_backend *be, float *inv, const float *x, int64_t rows, int dim);
void cuda_knn_scale_rows(hallu_backend *be, float *y, const float *x, const float *inv, int64_t rows, int dim);
void cuda_knn_scale_cols(hallu_backend *be, float *s, const float *inv, int rows, int64_t cols);
void cuda_knn_top_k(hallu_backend *be, float *top_sim, int32_t *top_idx, const float *sims, int rows, int64_t n,
                    int k);
void cuda_knn_vote(hallu_backend *be, int32_t *best, double *scores, const float *top_sim, const int32_t *top_idx,
                   const int32_t *train_labels, int rows, int k, float temperature, int classes, int nbest);
void cuda_argmax_hits(hallu_backend *be, int64_t *hits, const float *logits, const int32_t *labels, int rows,
                      int classes);
void cuda_class_rank_hits(hallu_backend *be, int64_t *hits, const float *logits, const int32_t *labels, int rows,
                          int classes);

#ifdef __cplusplus
}
#endif
#endif
