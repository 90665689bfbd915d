/* Double-precision reference of every op in include/hallu/backend.h, written as
 * plain loops that follow the documented semantics literally. Tests compare the
 * optimised backends against these, and test_gradcheck proves their backward
 * passes by finite differences, so each op is trusted through a short chain.
 *
 * Same conventions as the backend: NHWC activations, conv weight
 * [cout][cin][k][k], linear weight [out][in]; outputs first; backward OVERWRITES
 * activation gradients and ACCUMULATES parameter gradients; a NULL gradient
 * pointer means "not needed". */
#ifndef HALLU_REF_OPS_H
#define HALLU_REF_OPS_H

#include <stdint.h>

#include "hallu/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- convolution (no bias) ---- */
void ref_conv2d_forward(double *y, const double *x, const double *w, const hallu_conv2d_geom *g);
/* dx = conv_transpose(dy, w) (if dx); dw += corr(x, dy) (if dw) */
void ref_conv2d_backward(double *dx, double *dw, const double *dy, const double *x, const double *w,
                         const hallu_conv2d_geom *g);

/* ---- batch norm over rows x [m][c] ----
 * Training: normalise with the batch mean and biased variance; running stats
 * (each may be NULL) become (1-momentum)*old + momentum*batch with the UNBIASED
 * variance. gamma and beta are NULL together for affine=false. */
void ref_batchnorm_forward_train(double *y, double *save_mean, double *save_invstd,
                                 double *running_mean, double *running_var, const double *x,
                                 const double *gamma, const double *beta, int64_t m, int c,
                                 double momentum, double eps);
void ref_batchnorm_forward_eval(double *y, const double *x, const double *running_mean,
                                const double *running_var, const double *gamma, const double *beta,
                                int64_t m, int c, double eps);
/* Training-mode backward: dx = ... (if dx), dgamma += ..., dbeta += ... (if non-NULL). */
void ref_batchnorm_backward(double *dx, double *dgamma, double *dbeta, const double *dy,
                            const double *x, const double *save_mean, const double *save_invstd,
                            const double *gamma, int64_t m, int c);

/* ---- elementwise ---- */
void ref_relu_forward(double *y, const double *x, int64_t n);
/* Gated by the forward OUTPUT y (y > 0), as the backend does. */
void ref_relu_backward(double *dx, const double *dy, const double *y, int64_t n);
void ref_add(double *y, const double *a, const double *b, int64_t n);
void ref_axpy(double *y, double alpha, const double *x, int64_t n);
void ref_scale(double *y, double alpha, const double *x, int64_t n);

/* ---- pooling ---- */
/* argmax holds the flat input index h*w_in + w of the first (row-major) max in
 * each window (the last NaN if any, as PyTorch); padding never wins. argmax may be NULL. */
void ref_maxpool2d_forward(double *y, int32_t *argmax, const double *x, const hallu_pool2d_geom *g);
void ref_maxpool2d_backward(double *dx, const double *dy, const int32_t *argmax, const hallu_pool2d_geom *g);
void ref_global_avgpool_forward(double *y, const double *x, int n, int hw, int c);
void ref_global_avgpool_backward(double *dx, const double *dy, int n, int hw, int c);

/* ---- dense ---- */
/* Row-major C[m][n] = alpha * op(A) op(B) + beta * C; A is m x k after op, B k x n. */
void ref_gemm(int trans_a, int trans_b, int m, int n, int k, double alpha, const double *a,
              const double *b, double beta, double *c);
/* y [rows][out] = x [rows][in] W^T + bias (bias may be NULL) */
void ref_linear_forward(double *y, const double *x, const double *w, const double *bias,
                        int rows, int in, int out);
/* dx = dy W (if dx); dw += dy^T x (if dw); dbias += column sums of dy (if dbias) */
void ref_linear_backward(double *dx, double *dw, double *dbias, const double *dy, const double *x,
                         const double *w, int rows, int in, int out);

/* ---- rows ---- */
/* y = x / max(||x||, eps) per row; norms[r] = ||x_r|| (unclamped; may be NULL). */
void ref_l2norm_rows_forward(double *y, double *norms, const double *x, int rows, int cols, double eps);
/* Rows with ||x|| > eps get (dy - y (y.dy)) / ||x||; rows at or below eps get dy / eps
 * (the clamp is constant there, as in torch.nn.functional.normalize). */
void ref_l2norm_rows_backward(double *dx, const double *dy, const double *x, int rows, int cols, double eps);
/* Mean over rows of -log softmax(logits)[target]; probs [rows][classes] written (may be NULL). */
double ref_softmax_xent_forward(double *probs, const double *logits, const int32_t *targets,
                                int rows, int classes);
/* dlogits = scale * (probs - onehot(targets)) / rows */
void ref_softmax_xent_backward(double *dlogits, const double *probs, const int32_t *targets,
                               int rows, int classes, double scale);
/* dst[:, col0:col0+cols_src] = src */
void ref_copy_cols(double *dst, int cols_dst, int col0, const double *src, int cols_src, int rows);
/* dst = src[:, col0:col0+cols_dst] */
void ref_slice_cols(double *dst, int cols_dst, const double *src, int cols_src, int col0, int rows);

#ifdef __cplusplus
}
#endif
#endif
