/* The backend interface: a table of functions per device. Model code calls ops
 * only through this table, so a CUDA backend can be added without touching it.
 *
 * Conventions (all ops):
 * - float32; activations are NHWC ("channels last"): x[n][h][w][c], contiguous.
 *   A 2-D activation [rows, cols] is row-major. Parameters keep PyTorch's layouts
 *   (conv weight [Cout][Cin][KH][KW], linear weight [out][in]) so that weights
 *   map 1:1 onto torchvision's state dicts.
 * - Outputs first, then inputs, then sizes (llm.c style).
 * - Backward: gradients w.r.t. activations are OVERWRITTEN (dx = ...);
 *   gradients w.r.t. parameters are ACCUMULATED (dw += ...), so one zero_grad per
 *   step serves shared weights (e.g. one encoder applied to two views).
 * - A NULL activation-gradient pointer means "not needed" (e.g. the network input).
 * - Ops never allocate per call; stateful ops (conv) use a plan created once.
 *
 * Memory (docs/ARCHITECTURE.md, "Ownership"): every pointer an op takes is a
 * DEVICE address returned by the same backend's alloc (or an offset into one).
 * Code outside src/backend/ never dereferences a device address: it moves bytes
 * with upload/download/copy/fill only. The "cpu-isolated" backend enforces that
 * (its addresses fault when touched from host code).
 *
 * Errors: ops return void; a failing op (oneDNN status, ...) records the
 * backend's FIRST failure, and later ops may be skipped. Callers check with
 * hallu_backend_check once per step and at every host read (download does).
 */
#ifndef HALLU_BACKEND_H
#define HALLU_BACKEND_H

#include "hallu/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hallu_backend hallu_backend;
/* Compute precision of a backend's products: fp32, or bf16 products with fp32
 * accumulation, as autocast runs them. The cpu backend rounds the convolutions'
 * inputs and weights to bf16 per call (or reads the bf16 copies of inputs that
 * relu_forward_x16 made) and keeps their outputs and weight gradients in fp32;
 * the cuda backend also runs gemm/linear in bf16 (cuBLAS's
 * COMPUTE_32F_FAST_16BF, fp32 in and out) and rounds convolution outputs to
 * bf16, as cuDNN's bf16 convolutions (and autocast) do. Everything else (batch
 * norm, losses, the Hallucinator, weights, optimizer) stays fp32. */
typedef enum hallu_precision { HALLU_PRECISION_FP32 = 0, HALLU_PRECISION_BF16 } hallu_precision;
typedef struct hallu_conv2d_plan hallu_conv2d_plan;   /* backend-owned */

/* Geometry of a 2-D convolution without bias (square kernel/stride/padding). */
typedef struct hallu_conv2d_geom {
    int n, h, w, cin;          /* input  [n][h][w][cin] */
    int cout, k, stride, pad;  /* weight [cout][cin][k][k] */
    int oh, ow;                /* output [n][oh][ow][cout]; filled by hallu_conv2d_geom_init */
} hallu_conv2d_geom;

/* Validates and fills oh/ow; error names the offending value. */
hallu_status hallu_conv2d_geom_init(hallu_conv2d_geom *g, int n, int h, int w, int cin,
                                    int cout, int k, int stride, int pad, hallu_error *err);
/* For backends' conv2d_plan_create: *out = a validated copy of g (INVALID_ARG,
 * named, when hallu_conv2d_geom_init refuses it or its oh/ow disagree). */
hallu_status hallu_conv2d_geom_check(hallu_conv2d_geom *out, const hallu_conv2d_geom *g, hallu_error *err);

/* 2-D max pooling k x k, stride s, padding p (padding never wins the max). */
typedef struct hallu_pool2d_geom {
    int n, h, w, c, k, stride, pad, oh, ow;
} hallu_pool2d_geom;
hallu_status hallu_pool2d_geom_init(hallu_pool2d_geom *g, int n, int h, int w, int c,
                                    int k, int stride, int pad, hallu_error *err);

typedef struct hallu_backend_ops {
    const char *name;
    void (*destroy)(hallu_backend *be);   /* frees impl and be itself */
    /* 1 when device addresses are host addresses (the cpu backend): a
     * communicator may hand them to MPI directly instead of staging copies. */
    int host_memory;

    /* ---- memory ---- */
    /* Device memory, zero-filled, 64-byte aligned. NULL with err set on failure
     * (the failure is not sticky: nothing ran). */
    void *(*alloc)(hallu_backend *be, size_t nbytes, const char *what, hallu_error *err);
    void (*release)(hallu_backend *be, void *p);
    /* The only ways bytes cross between host and device memory. */
    void (*upload)(hallu_backend *be, void *dst_dev, const void *src_host, size_t nbytes);
    void (*download)(hallu_backend *be, void *dst_host, const void *src_dev, size_t nbytes);
    void (*copy)(hallu_backend *be, void *dst_dev, const void *src_dev, size_t nbytes);  /* may not overlap */
    void (*fill)(hallu_backend *be, float *y, float value, int64_t n);
    /* Bytes of device memory allocated now and at most so far. */
    void (*memory)(hallu_backend *be, size_t *live, size_t *peak);
    /* Host memory for staging uploads (the loader's batches), page-locked where
     * the device copies from it asynchronously (cuda): an upload from it may
     * return before its bytes are read, so they must stay unchanged until
     * upload_wait returns. NULL slots: plain host memory and synchronous reads
     * (hallu_backend_host_alloc / _upload_wait fall back). */
    void *(*host_alloc)(hallu_backend *be, size_t nbytes, const char *what, hallu_error *err);
    void (*host_free)(hallu_backend *be, void *p);
    /* Returns once every upload issued so far has read its source bytes (not
     * waiting for other work queued on the device). */
    void (*upload_wait)(hallu_backend *be);
    /* Sets the precision of the convolution plans created from now on
     * (hallu_backend_set_precision); NULL: fp32 only. */
    hallu_status (*set_precision)(hallu_backend *be, hallu_precision precision, hallu_error *err);
    /* Test hook (hallu_backend_inject_fault); NULL where the backend has none. */
    hallu_status (*inject_fault)(hallu_backend *be, int64_t nth_op, int64_t nth_alloc, hallu_error *err);

    /* ---- convolution (plan created once per geometry, reused every step) ---- */
    hallu_status (*conv2d_plan_create)(hallu_backend *be, const hallu_conv2d_geom *g,
                                       hallu_conv2d_plan **out, hallu_error *err);
    void (*conv2d_plan_free)(hallu_conv2d_plan *plan);
    /* y = conv(x, w). x16 (may be NULL): x already rounded to bf16 (exactly
     * bf16(x), NHWC, e.g. from relu_forward_x16), which bf16 plans of a backend
     * with relu_forward_x16 read instead of rounding x themselves; ignored
     * otherwise. */
    void (*conv2d_forward)(hallu_conv2d_plan *plan, float *y, const float *x, const uint16_t *x16, const float *w);
    /* conv2d_forward with y written only as its bf16 rounding y16 (nearest
     * even, as relu_forward_x16 rounds): a bf16 plan's products stored in
     * bf16, half the bytes. Returns 0 without writing where the plan cannot
     * (fp32 plans; the caller runs conv2d_forward). Optional (NULL). */
    int (*conv2d_forward_y16)(hallu_conv2d_plan *plan, uint16_t *y16, const float *x, const uint16_t *x16,
                              const float *w);
    /* dx = conv_transpose(dy, w) (if dx); dw += corr(x, dy) (if dw); x16 as
     * in conv2d_forward. dy16 (may be NULL): dy rounded to bf16 (from
     * batchnorm_backward_x16), which bf16 plans of a backend with that op read
     * in place of dy (then dy may be NULL); ignored otherwise. */
    void (*conv2d_backward)(hallu_conv2d_plan *plan, float *dx, float *dw, const float *dy, const uint16_t *dy16,
                            const float *x, const uint16_t *x16, const float *w);
    /* conv2d_backward with the input gradient written only as its bf16
     * rounding dx16 (nearest even, as relu_forward_x16 rounds), as autocast
     * keeps a bf16 convolution's input gradient: for
     * batchnorm_backward_fused's dy16 and add_relu_backward_x16. Returns 0
     * without running where the plan cannot (fp32 plans, layers whose input
     * gradient the backend computes otherwise; the caller runs
     * conv2d_backward). Optional (NULL). */
    int (*conv2d_backward_dx16)(hallu_conv2d_plan *plan, uint16_t *dx16, float *dw, const float *dy,
                                const uint16_t *dy16, const float *x, const uint16_t *x16, const float *w);

    /* ---- batch norm over rows: x [m][c], statistics per column c ----
     * Training: batch mean and biased variance normalise; running stats update
     * with momentum and the UNBIASED variance (as PyTorch). save_mean/save_invstd
     * [c] are kept for backward. */
    void (*batchnorm_forward_train)(hallu_backend *be, float *y, float *save_mean, float *save_invstd,
                                    float *running_mean, float *running_var,
                                    const float *x, const float *gamma, const float *beta,
                                    int64_t m, int c, float momentum, float eps);
    void (*batchnorm_forward_eval)(hallu_backend *be, float *y, const float *x,
                                   const float *running_mean, const float *running_var,
                                   const float *gamma, const float *beta, int64_t m, int c, float eps);
    /* dx = ..., dgamma += ..., dbeta += ... (training-mode backward); dx may
     * be dy (ResNet's backward runs it in place to save a buffer).
     * gamma may be NULL together with dgamma/dbeta NULL (affine=false). */
    void (*batchnorm_backward)(hallu_backend *be, float *dx, float *dgamma, float *dbeta,
                               const float *dy, const float *x, const float *save_mean,
                               const float *save_invstd, const float *gamma, int64_t m, int c);
    /* batchnorm_backward with dx written only as its bf16 rounding dx16 (as
     * relu_forward_x16 rounds), for a bf16 convolution's dy16: no fp32 dx and
     * no rounding pass. dx16 must not overlap dy or x. Optional (NULL). */
    void (*batchnorm_backward_x16)(hallu_backend *be, uint16_t *dx16, float *dgamma, float *dbeta,
                                   const float *dy, const float *x, const float *save_mean,
                                   const float *save_invstd, const float *gamma, int64_t m, int c);
    /* Batch norm's normalize fused with what a ResNet does around it, one
     * pass: r = bn(x), then + residual (when residual != NULL), then max(r, 0)
     * (when relu), with bn(x) as batchnorm_normalize computes it and the add
     * and max as add and relu_forward do (the same bits as those ops in
     * turn); r written to y and/or as its bf16 rounding (as relu_forward_x16)
     * to y16, either (not both) may be NULL. The input is x, or x16 (x NULL): bf16
     * values (a bf16 convolution's output, conv2d_forward_y16), read as the
     * floats they are. save_mean and save_invstd as batchnorm_normalize;
     * save_scale [c] receives the per-channel float factor bn(x) used, which
     * batchnorm_backward_fused takes. The residual may be given as bf16
     * values residual16 instead (residual NULL; a bf16 block output, as
     * autocast keeps it), read as the floats they are. Optional (NULL), with
     * batchnorm_backward_fused and add_relu_backward. */
    void (*batchnorm_normalize_fused)(hallu_backend *be, float *y, uint16_t *y16, float *save_mean,
                                      float *save_invstd, float *save_scale, const float *x, const uint16_t *x16,
                                      const double *mean, const double *var, const float *gamma, const float *beta,
                                      const float *residual, const uint16_t *residual16, int relu, int64_t m, int c,
                                      float eps);
    /* The backward of batchnorm_normalize_fused without residual, input x or
     * x16 as there: with save_scale (the forward had relu), dy is taken as
     * zero where the ReLU's input bn(x) (recomputed from x, save_mean,
     * save_scale and beta exactly as the forward computed it) is not > 0, as
     * relu_backward does; then batchnorm_backward, with dx (may be dy) or
     * batchnorm_backward_x16 with dx16 (one of them or neither). The
     * gradient is dy, or dy16 (dy NULL): bf16 values (a bf16 convolution's
     * input gradient, conv2d_backward_dx16), read as the floats they are. */
    void (*batchnorm_backward_fused)(hallu_backend *be, float *dx, uint16_t *dx16, float *dgamma, float *dbeta,
                                     const float *dy, const uint16_t *dy16, const float *x, const uint16_t *x16,
                                     const float *save_mean, const float *save_invstd, const float *save_scale,
                                     const float *gamma, const float *beta, int64_t m, int c);
    /* batchnorm_stats of bf16 values x16 (as batchnorm_normalize_fused reads
     * them). Optional (NULL). */
    void (*batchnorm_stats_x16)(hallu_backend *be, double *mean, double *var, const uint16_t *x16, int64_t m, int c);

    /* ---- elementwise ---- */
    void (*relu_forward)(hallu_backend *be, float *y, const float *x, int64_t n);          /* y may == x */
    void (*relu_backward)(hallu_backend *be, float *dx, const float *dy, const float *y, int64_t n); /* dx may == dy */
    /* y = max(x, 0) as relu_forward, and y16 = y rounded to bf16 in the same
     * pass, exactly as the backend's bf16 convolutions round their inputs (cpu:
     * nearest even, denormals to zero, as vcvtneps2bf16 and oneDNN do): the
     * input of a bf16 convolution (conv2d_forward's x16) without a rounding
     * pass of its own. Optional (NULL: the backend's bf16 convolutions round
     * their inputs themselves). y may == x. */
    void (*relu_forward_x16)(hallu_backend *be, float *y, uint16_t *y16, const float *x, int64_t n);
    void (*add)(hallu_backend *be, float *y, const float *a, const float *b, int64_t n);   /* y = a + b */
    /* dx = y > 0 ? a + b : 0: add then relu_backward in one pass (same bits);
     * dx may be a or b. Optional (see batchnorm_normalize_fused). */
    void (*add_relu_backward)(hallu_backend *be, float *dx, const float *a, const float *b, const float *y,
                              int64_t n);
    /* add_relu_backward (add when y and y16 are NULL) with a given as floats a
     * or as bf16 values a16, b as b or b16 (one of each pair), the ReLU's
     * output as y or bf16 values y16, and the result written as floats to dx
     * or rounded to bf16 (as relu_forward_x16) into dx16 (one of them): the
     * same bits as add_relu_backward on the inputs' floats, then the rounding.
     * dx may be a or b; dx16 may be a16 or b16; a bf16 output must not overlap
     * an fp32 input otherwise. Optional (NULL). */
    void (*add_relu_backward_x16)(hallu_backend *be, float *dx, uint16_t *dx16, const float *a, const uint16_t *a16,
                                  const float *b, const uint16_t *b16, const float *y, const uint16_t *y16,
                                  int64_t n);
    void (*axpy)(hallu_backend *be, float *y, float alpha, const float *x, int64_t n);     /* y += alpha*x */
    void (*scale)(hallu_backend *be, float *y, float alpha, const float *x, int64_t n);    /* y = alpha*x */
    /* y [pixels][3] = (x / 255 - mean[c]) / std[c] for uint8 NHWC x [pixels][3]:
     * ToTensor then Normalize with hallu_aug_normalize's float operations, so the
     * loader's bits (images cross to the device as bytes, a quarter of floats).
     * mean and std are 3 HOST floats each, parameters like other ops' scalars. */
    void (*normalize_u8)(hallu_backend *be, float *y, const uint8_t *x, int64_t pixels, const float *mean,
                         const float *std);

    /* ---- pooling ---- */
    /* argmax [n][oh][ow][c] stores the flat input index (h*w_in + w) of each max */
    void (*maxpool2d_forward)(hallu_backend *be, float *y, int32_t *argmax, const float *x,
                              const hallu_pool2d_geom *g);
    void (*maxpool2d_backward)(hallu_backend *be, float *dx, const float *dy, const int32_t *argmax,
                               const hallu_pool2d_geom *g);
    /* y [n][c] = mean over h*w of x [n][hw][c] */
    void (*global_avgpool_forward)(hallu_backend *be, float *y, const float *x, int n, int hw, int c);
    void (*global_avgpool_backward)(hallu_backend *be, float *dx, const float *dy, int n, int hw, int c);

    /* ---- dense ---- */
    /* Row-major C[m][n] = alpha * op(A) op(B) + beta * C; op = transpose if trans_*.
     * A is m x k after op, B is k x n after op. */
    void (*gemm)(hallu_backend *be, int trans_a, int trans_b, int m, int n, int k,
                 float alpha, const float *a, const float *b, float beta, float *c);
    /* y [rows][out] = x [rows][in] W^T + bias (bias may be NULL) */
    void (*linear_forward)(hallu_backend *be, float *y, const float *x, const float *w,
                           const float *bias, int rows, int in, int out);
    /* dx = dy W (if dx); dw += dy^T x (if dw); dbias += column sums of dy (if dbias) */
    void (*linear_backward)(hallu_backend *be, float *dx, float *dw, float *dbias,
                            const float *dy, const float *x, const float *w, int rows, int in, int out);

    /* ---- rows ---- */
    /* y = x / max(||x||_2, eps) per row; norms [rows] saved for backward */
    void (*l2norm_rows_forward)(hallu_backend *be, float *y, float *norms, const float *x,
                                int rows, int cols, float eps);
    void (*l2norm_rows_backward)(hallu_backend *be, float *dx, const float *dy, const float *x,
                                 const float *norms, int rows, int cols, float eps);
    /* Mean softmax cross-entropy over rows with integer targets; returns the loss.
     * probs [rows][classes] is written (softmax) for backward. */
    float (*softmax_xent_forward)(hallu_backend *be, float *probs, const float *logits,
                                  const int32_t *targets, int rows, int classes);
    /* dlogits = scale * (probs - onehot(targets)) / rows */
    void (*softmax_xent_backward)(hallu_backend *be, float *dlogits, const float *probs,
                                  const int32_t *targets, int rows, int classes, float scale);
    /* Copy a [rows][cols_src] block into columns [col0, col0+cols_src) of dst [rows][cols_dst]
     * (concat along columns; rows-concat is a plain copy at an offset). */
    void (*copy_cols)(hallu_backend *be, float *dst, int cols_dst, int col0,
                      const float *src, int cols_src, int rows);
    /* dst [rows][cols_dst] = columns [col0, col0+cols_dst) of src [rows][cols_src] */
    void (*slice_cols)(hallu_backend *be, float *dst, int cols_dst, const float *src,
                       int cols_src, int col0, int rows);

    /* ---- nn and optimizer ops (batch norm split, parameter updates, norms) ---- */
    /* Training batch norm in steps (the fused forward_train gives the same bits):
     * stats: batch mean and BIASED variance (clamped at 0) per column, in double
     * (device doubles [c]), so statistics can be combined across processes;
     * normalize: y = (x - mean) / sqrt(var + eps) * gamma + beta, writing the float
     * save_mean/save_invstd [c] that backward takes (gamma/beta may be NULL);
     * update_running: running stats move with momentum towards mean and the
     * UNBIASED variance over m rows (as PyTorch; either pointer may be NULL). */
    void (*batchnorm_stats)(hallu_backend *be, double *mean, double *var, const float *x, int64_t m, int c);
    void (*batchnorm_normalize)(hallu_backend *be, float *y, float *save_mean, float *save_invstd, const float *x,
                                const double *mean, const double *var, const float *gamma, const float *beta,
                                int64_t m, int c, float eps);
    void (*batchnorm_update_running)(hallu_backend *be, float *running_mean, float *running_var,
                                     const double *mean, const double *var, int64_t m, int c, float momentum);
    /* Sync BN across ranks with equal row counts: stats_to_moments turns a rank's
     * [mean; var] into [mean; E[x^2]] (which sum across ranks), moments_to_stats
     * turns the sums back into the union's [mean; biased var] (x inv_count =
     * 1 / ranks). backward_reduce adds this rank's dgamma/dbeta and leaves
     * sums [2c] = [sum dy; sum dy (x - mean)]; backward_apply writes dx of its m
     * rows from the sums over all m_total rows. On one rank, reduce + apply give
     * batchnorm_backward's bits. */
    void (*batchnorm_stats_to_moments)(hallu_backend *be, double *mean, double *var, int c);
    void (*batchnorm_moments_to_stats)(hallu_backend *be, double *mean, double *var, int c, double inv_count);
    void (*batchnorm_backward_reduce)(hallu_backend *be, double *sums, float *dgamma, float *dbeta, const float *dy,
                                      const float *x, const float *save_mean, const float *save_invstd, int64_t m,
                                      int c);
    void (*batchnorm_backward_apply)(hallu_backend *be, float *dx, const float *dy, const float *x,
                                     const float *save_mean, const float *save_invstd, const float *gamma,
                                     const double *sums, int64_t m, int64_t m_total, int c);
    /* Grouped BN (Shuffle BN): running stats move by the mean of the `groups`
     * updates, each from a group's saved float statistics (group g at g * c)
     * over rows_per rows, all starting from the same running values. */
    void (*batchnorm_update_running_grouped)(hallu_backend *be, float *running_mean, float *running_var,
                                             const float *save_mean, const float *save_invstd, int groups,
                                             int64_t rows_per, int c, float momentum, float eps);
    /* y[i] += value (counters, e.g. BN's num_batches_tracked). */
    void (*add_scalar)(hallu_backend *be, float *y, float value, int64_t n);
    /* *norm = ||x||_2 (float of a double sum over fixed chunks; norm is a device float). */
    void (*l2_norm)(hallu_backend *be, float *norm, const float *x, int64_t n);
    /* clip_grad_norm_'s scaling: x *= max_norm / (*total + 1e-6) when that is < 1. */
    void (*clip_by_norm)(hallu_backend *be, float *x, const float *total, int64_t n, float max_norm);
    /* LARS trust ratio of one tensor: coef[0] = eta * ||p|| / (||g|| + wd ||p|| + eps)
     * (/ lr, capped at 1, with clip_lr), coef[1] = 1; coef = {1, 0} (unadapted)
     * when either norm is 0. coef is 2 device floats. */
    void (*lars_coef)(hallu_backend *be, float *coef, const float *p, const float *g, int64_t n, float wd,
                      float eps, float eta, int clip_lr, float lr);
    /* SGD/LARS update of n elements (optim.h): d = g + wd p; with lars (coef of
     * lars_coef, or NULL) d *= coef[0] when coef[1] != 0, else wd = 0; momentum
     * buffer buf (NULL: none; `first` = step 0); p += neg_lr * d. */
    void (*sgd_update)(hallu_backend *be, float *p, const float *g, float *buf, const float *lars, float wd,
                       float momentum, float damp1, float neg_lr, int nesterov, int first, int64_t n);
    /* AdamW update of n elements with exp_avg m and exp_avg_sq v (optim.h). */
    void (*adamw_update)(hallu_backend *be, float *p, const float *g, float *m, float *v, float decay, float beta1,
                         float one_m_beta1, float beta2, float one_m_beta2, float bc2_sqrt, float eps,
                         float neg_step, int64_t n);
    /* (end of nn ops) */

    /* ---- ssl ops (losses, Hallucinator, MoCo) ---- */
    /* Moved from src/ssl/ as they were (serial loops, row sums in double), so
     * results keep their bits. Scalars (losses, the collapse metric) go to a
     * DEVICE float; the host downloads them only when it reads them. */
    /* NT-Xent rows: the m rows of F form m / block blocks (one per rank; one
     * block of m rows in one process); in a block, the positive of row l is
     * (l + block/2) % block and its source l % n_src. sim [rows][m] holds
     * F_a F^T / T on entry for the anchors a = row0 .. row0 + rows - 1; the
     * denominators skip a itself and, with mask_same_source, every other row of
     * a's source but the positive. Writes *loss = scale * mean over the anchors
     * and turns sim into dL/dsim. */
    void (*ssl_nt_xent_rows)(hallu_backend *be, float *loss, float *sim, int rows, int m, int row0, int block,
                             int n_src, int mask_same_source, float scale);
    /* InfoNCE rows: neg [rows][K] holds q queue^T / T on entry; the positive
     * logit of row r is q_r . kpos_r / T, target 0. Writes *loss (mean) and,
     * when dq != NULL, dq = the positive part of dL/dq and neg = dL/dneg_logits
     * (the caller adds neg queue / T into dq). */
    void (*ssl_infonce_rows)(hallu_backend *be, float *loss, float *dq, float *neg, const float *q,
                             const float *kpos, int rows, int d, int K, float temperature);
    /* *loss (= when !accumulate, += when accumulate) scale * -mean_r cos(p_r, z_r);
     * dp (may be NULL) = its gradient w.r.t. p (z is a constant target). */
    void (*ssl_neg_cosine)(hallu_backend *be, float *loss, float *dp, const float *p, const float *z,
                           int rows, int d, float scale, int accumulate);
    /* *out = mean over dims of the per-dim population std of the L2-normalised
     * rows of z [rows][d]; norms [rows] is workspace. */
    void (*ssl_collapse_std)(hallu_backend *be, float *out, float *norms, const float *z, int rows, int d);
    /* Hallucinator input xg [rows][2d] = [x, g], g = (1+r) x - r k. */
    void (*ssl_hal_input)(hallu_backend *be, float *xg, const float *x, const float *k, int rows, int d,
                          float r);
    /* Hallucinator output h [rows][d] = mlp (+ g, the second half of xg's rows, when residual). */
    void (*ssl_hal_output)(hallu_backend *be, float *h, const float *mlp, const float *xg, int rows, int d,
                           int residual);
    /* Hallucinator backward, ACCUMULATED: with dg = dxg's g half (+ dh when
     * residual), dx += dout[x half] + dxg's x half + (1+r) dg and dk -= r dg
     * (dk may be NULL). dout [2 rows][d] = [dx-part; dh], dxg [rows][2d]. */
    void (*ssl_hal_backward)(hallu_backend *be, float *dx, float *dk, const float *dxg, const float *dout,
                             int rows, int d, float r, int residual);
    /* Row permutations of [rows][cols] blocks: gather dst[i] = src[index[i]],
     * scatter dst[index[i]] = src[i] (MoCo's shuffled key batch and back). */
    void (*ssl_gather_rows)(hallu_backend *be, float *dst, const float *src, const int32_t *index, int rows,
                            int64_t cols);
    void (*ssl_scatter_rows)(hallu_backend *be, float *dst, const float *src, const int32_t *index, int rows,
                             int64_t cols);
    /* MoCo enqueue: rows of src [rows][d] into queue [K][d] one by one at *ptr,
     * which advances modulo K (later rows win when rows > K). */
    void (*ssl_enqueue_rows)(hallu_backend *be, float *queue, int64_t *ptr, const float *src, int rows, int d,
                             int K);
    /* (end of ssl ops) */

    /* ---- eval ops (kNN, linear probe) ---- */
    /* kNN (src/eval/knn.c): cosine similarities of normalised query rows against
     * training rows through gemm, columns scaled by the training rows' inverse
     * norms, the k best per row, then exp(sim / T) votes per class. */
    /* inv[r] = 1 / ||x[r]||_2 (squares summed in double; 0 for a zero row), x [rows][dim] */
    void (*knn_inverse_norms)(hallu_backend *be, float *inv, const float *x, int64_t rows, int dim);
    /* y[r][j] = x[r][j] * inv[r] (y may == x) */
    void (*knn_scale_rows)(hallu_backend *be, float *y, const float *x, const float *inv, int64_t rows, int dim);
    /* s[r][j] *= inv[j], s [rows][cols] */
    void (*knn_scale_cols)(hallu_backend *be, float *s, const float *inv, int rows, int64_t cols);
    /* The k best (1 <= k <= n) of each row of sims [rows][n] as a min-heap per row in
     * top_sim / top_idx [rows][k] (root: the worst kept; equal similarities rank the
     * lower index higher, as a stable sort would). */
    void (*knn_top_k)(hallu_backend *be, float *top_sim, int32_t *top_idx, const float *sims, int rows, int64_t n,
                      int k);
    /* Per row: scores[r][c] = sum of exp(sim / temperature) (double, in heap order)
     * over the k neighbours of class c (train_labels [n]); best[r][0..nbest) = the
     * classes by score (ties to the lower class). scores [rows][classes] is scratch. */
    void (*knn_vote)(hallu_backend *be, int32_t *best, double *scores, const float *top_sim, const int32_t *top_idx,
                     const int32_t *train_labels, int rows, int k, float temperature, int classes, int nbest);
    /* Linear probe (src/eval/probe.c), counters accumulate over calls:
     * hits[0] += rows whose first largest logit is at labels[r] (training accuracy). */
    void (*argmax_hits)(hallu_backend *be, int64_t *hits, const float *logits, const int32_t *labels, int rows,
                        int classes);
    /* hits[0] += rows where labels[r] ranks first, hits[1] += rows where it ranks
     * among the first five (rank = classes with a larger logit, or an equal one and
     * a lower index). */
    void (*class_rank_hits)(hallu_backend *be, int64_t *hits, const float *logits, const int32_t *labels, int rows,
                            int classes);
    /* (end of eval ops) */
} hallu_backend_ops;

struct hallu_backend {
    const hallu_backend_ops *ops;
    int num_threads;
    void *impl;                 /* backend-private state (engine, stream, ...) */
    /* First failure of an op (HALLU_OK while none): sticky until cleared. */
    hallu_status failed;
    char failure[HALLU_ERROR_MSG_MAX];
    hallu_precision precision;  /* as last set by hallu_backend_set_precision (fp32 until then) */
};

/* Device names hallu_backend_create accepts, for help texts: "cpu, cpu-isolated". */
const char *hallu_backend_device_names(void);

/* Creates the backend named `device`:
 *   "cpu"           oneDNN + OpenMP on host memory (the default);
 *   "cpu-isolated"  the CPU backend behind addresses that host code cannot
 *                   dereference, for tests (same results, bit for bit).
 * An unknown name is HALLU_ERR_INVALID_ARG naming the accepted ones; "cuda" in
 * a build without CUDA is HALLU_ERR_UNSUPPORTED. Free with hallu_backend_free. */
hallu_status hallu_backend_create(const char *device, int num_threads, hallu_backend **out, hallu_error *err);
/* Creates the CPU backend (oneDNN + OpenMP). Free with hallu_backend_free. */
hallu_status hallu_backend_cpu_create(hallu_backend **out, int num_threads, hallu_error *err);
void hallu_backend_free(hallu_backend *be);

/* Records a failure (the first one wins); for backend implementations. */
void hallu_backend_fail(hallu_backend *be, hallu_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* HALLU_OK, or the first recorded failure copied into err ("backend cpu: ..."). */
hallu_status hallu_backend_check(const hallu_backend *be, hallu_error *err);
void hallu_backend_clear_failure(hallu_backend *be);

/* Device memory allocated through be now (live) and at most so far (peak). */
void hallu_backend_memory(hallu_backend *be, size_t *live, size_t *peak);

/* Checked host <-> device transfers: run the op, then hallu_backend_check. */
hallu_status hallu_backend_upload(hallu_backend *be, void *dst_dev, const void *src_host, size_t nbytes,
                                  hallu_error *err);
hallu_status hallu_backend_download(hallu_backend *be, void *dst_host, const void *src_dev, size_t nbytes,
                                    hallu_error *err);

/* Staging memory for uploads (ops->host_alloc, or hallu_alloc where the
 * backend has none); free with hallu_backend_host_free. After an upload from
 * it, change its bytes only once hallu_backend_upload_wait has returned. */
void *hallu_backend_host_alloc(hallu_backend *be, size_t nbytes, const char *what, hallu_error *err);
void hallu_backend_host_free(hallu_backend *be, void *p);
void hallu_backend_upload_wait(hallu_backend *be);

/* A device buffer with its element type: what long-lived state is made of. */
typedef struct hallu_buffer {
    hallu_backend *be;   /* owner (NULL: empty) */
    void *data;          /* device address: pass to ops, never dereference */
    hallu_dtype dtype;
    int64_t count;       /* elements */
    size_t nbytes;
} hallu_buffer;

/* Zero-filled buffer of `count` elements (count 0 gives a valid 1-byte buffer). */
hallu_status hallu_buffer_alloc(hallu_buffer *b, hallu_backend *be, hallu_dtype dtype, int64_t count,
                                const char *what, hallu_error *err);
void hallu_buffer_free(hallu_buffer *b);
static inline float *hallu_buffer_f32(const hallu_buffer *b) { return (float *)b->data; }

/* "fp32" | "bf16" -> precision; a named error otherwise. */
hallu_status hallu_precision_parse(const char *name, hallu_precision *out, hallu_error *err);
const char *hallu_precision_name(hallu_precision p);
/* Convolutions planned from now on compute in `precision`. bf16 needs bf16
 * instructions (AVX512-BF16 or AMX on x86): without them, a named error
 * saying what the CPU lacks, never a slow emulation. */
hallu_status hallu_backend_set_precision(hallu_backend *be, hallu_precision precision, hallu_error *err);
/* The precision of the convolutions planned from now on. */
hallu_precision hallu_backend_precision(const hallu_backend *be);
/* Test-only fault hook of the cpu-isolated backend: the `nth_op`-th op (1 =
 * the next) or the `nth_alloc`-th allocation from now fails as a real failure
 * would (0 = never). HALLU_ERR_UNSUPPORTED on other backends. */
hallu_status hallu_backend_inject_fault(hallu_backend *be, int64_t nth_op, int64_t nth_alloc, hallu_error *err);

#ifdef __cplusplus
}
#endif
#endif
