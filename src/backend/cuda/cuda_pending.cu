/* TEMPORARY (issue 27): stand-ins for the CUDA backend ops whose files other
 * helpers are writing (cuda_nn.cu, cuda_rows.cu, cuda_ssl.cu, cuda_eval.cu), so
 * that the backend links before they are merged. Each one records a named
 * HALLU_ERR_UNSUPPORTED failure and enqueues nothing. DELETE THIS FILE when
 * those files land (their definitions would clash with these). */
#include "backend/cuda/cuda_internal.h"

#include <math.h>

static void pending(hallu_backend *be, const char *op)
{
    hallu_backend_fail(be, HALLU_ERR_UNSUPPORTED, "%s: not implemented yet (cuda_pending.cu)", op);
}

/* ---- cuda_nn.cu (helper's file not merged yet) ---- */
void cuda_fill(hallu_backend *be, float *y, float value, int64_t n)
{
    pending(be, "fill");
}

void cuda_batchnorm_forward_train(hallu_backend *be, float *y, float *save_mean, float *save_invstd, float *running_mean, float *running_var, const float *x, const float *gamma, const float *beta, int64_t m, int c, float momentum, float eps)
{
    pending(be, "batchnorm_forward_train");
}

void cuda_batchnorm_forward_eval(hallu_backend *be, float *y, const float *x, const float *running_mean, const float *running_var, const float *gamma, const float *beta, int64_t m, int c, float eps)
{
    pending(be, "batchnorm_forward_eval");
}

void cuda_batchnorm_backward(hallu_backend *be, float *dx, float *dgamma, float *dbeta, const float *dy, const float *x, const float *save_mean, const float *save_invstd, const float *gamma, int64_t m, int c)
{
    pending(be, "batchnorm_backward");
}

void cuda_batchnorm_stats(hallu_backend *be, double *mean, double *var, const float *x, int64_t m, int c)
{
    pending(be, "batchnorm_stats");
}

void cuda_batchnorm_normalize(hallu_backend *be, float *y, float *save_mean, float *save_invstd, const float *x, const double *mean, const double *var, const float *gamma, const float *beta, int64_t m, int c, float eps)
{
    pending(be, "batchnorm_normalize");
}

void cuda_batchnorm_update_running(hallu_backend *be, float *running_mean, float *running_var, const double *mean, const double *var, int64_t m, int c, float momentum)
{
    pending(be, "batchnorm_update_running");
}

void cuda_batchnorm_stats_to_moments(hallu_backend *be, double *mean, double *var, int c)
{
    pending(be, "batchnorm_stats_to_moments");
}

void cuda_batchnorm_moments_to_stats(hallu_backend *be, double *mean, double *var, int c, double inv_count)
{
    pending(be, "batchnorm_moments_to_stats");
}

void cuda_batchnorm_backward_reduce(hallu_backend *be, double *sums, float *dgamma, float *dbeta, const float *dy, const float *x, const float *save_mean, const float *save_invstd, int64_t m, int c)
{
    pending(be, "batchnorm_backward_reduce");
}

void cuda_batchnorm_backward_apply(hallu_backend *be, float *dx, const float *dy, const float *x, const float *save_mean, const float *save_invstd, const float *gamma, const double *sums, int64_t m, int64_t m_total, int c)
{
    pending(be, "batchnorm_backward_apply");
}

void cuda_batchnorm_update_running_grouped(hallu_backend *be, float *running_mean, float *running_var, const float *save_mean, const float *save_invstd, int groups, int64_t rows_per, int c, float momentum, float eps)
{
    pending(be, "batchnorm_update_running_grouped");
}

void cuda_relu_forward(hallu_backend *be, float *y, const float *x, int64_t n)
{
    pending(be, "relu_forward");
}

void cuda_relu_backward(hallu_backend *be, float *dx, const float *dy, const float *y, int64_t n)
{
    pending(be, "relu_backward");
}

void cuda_add(hallu_backend *be, float *y, const float *a, const float *b, int64_t n)
{
    pending(be, "add");
}

void cuda_axpy(hallu_backend *be, float *y, float alpha, const float *x, int64_t n)
{
    pending(be, "axpy");
}

void cuda_scale(hallu_backend *be, float *y, float alpha, const float *x, int64_t n)
{
    pending(be, "scale");
}

void cuda_add_scalar(hallu_backend *be, float *y, float value, int64_t n)
{
    pending(be, "add_scalar");
}

void cuda_maxpool2d_forward(hallu_backend *be, float *y, int32_t *argmax, const float *x, const hallu_pool2d_geom *g)
{
    pending(be, "maxpool2d_forward");
}

void cuda_maxpool2d_backward(hallu_backend *be, float *dx, const float *dy, const int32_t *argmax, const hallu_pool2d_geom *g)
{
    pending(be, "maxpool2d_backward");
}

void cuda_global_avgpool_forward(hallu_backend *be, float *y, const float *x, int n, int hw, int c)
{
    pending(be, "global_avgpool_forward");
}

void cuda_global_avgpool_backward(hallu_backend *be, float *dx, const float *dy, int n, int hw, int c)
{
    pending(be, "global_avgpool_backward");
}

void cuda_l2_norm(hallu_backend *be, float *norm, const float *x, int64_t n)
{
    pending(be, "l2_norm");
}

void cuda_clip_by_norm(hallu_backend *be, float *x, const float *total, int64_t n, float max_norm)
{
    pending(be, "clip_by_norm");
}

void cuda_lars_coef(hallu_backend *be, float *coef, const float *p, const float *g, int64_t n, float wd, float eps, float eta, int clip_lr, float lr)
{
    pending(be, "lars_coef");
}

void cuda_sgd_update(hallu_backend *be, float *p, const float *g, float *buf, const float *lars, float wd, float momentum, float damp1, float neg_lr, int nesterov, int first, int64_t n)
{
    pending(be, "sgd_update");
}

void cuda_adamw_update(hallu_backend *be, float *p, const float *g, float *m, float *v, float decay, float beta1, float one_m_beta1, float beta2, float one_m_beta2, float bc2_sqrt, float eps, float neg_step, int64_t n)
{
    pending(be, "adamw_update");
}


/* ---- cuda_rows.cu (helper's file not merged yet) ---- */
void cuda_l2norm_rows_forward(hallu_backend *be, float *y, float *norms, const float *x, int rows, int cols, float eps)
{
    pending(be, "l2norm_rows_forward");
}

void cuda_l2norm_rows_backward(hallu_backend *be, float *dx, const float *dy, const float *x, const float *norms, int rows, int cols, float eps)
{
    pending(be, "l2norm_rows_backward");
}

float cuda_softmax_xent_forward(hallu_backend *be, float *probs, const float *logits, const int32_t *targets, int rows, int classes)
{
    pending(be, "softmax_xent_forward");
    return NAN;
}

void cuda_softmax_xent_backward(hallu_backend *be, float *dlogits, const float *probs, const int32_t *targets, int rows, int classes, float scale)
{
    pending(be, "softmax_xent_backward");
}

void cuda_copy_cols(hallu_backend *be, float *dst, int cols_dst, int col0, const float *src, int cols_src, int rows)
{
    pending(be, "copy_cols");
}

void cuda_slice_cols(hallu_backend *be, float *dst, int cols_dst, const float *src, int cols_src, int col0, int rows)
{
    pending(be, "slice_cols");
}


/* ---- cuda_ssl.cu (helper's file not merged yet) ---- */
void cuda_ssl_nt_xent_rows(hallu_backend *be, float *loss, float *sim, int rows, int m, int row0, int block, int n_src, int mask_same_source, float scale)
{
    pending(be, "ssl_nt_xent_rows");
}

void cuda_ssl_infonce_rows(hallu_backend *be, float *loss, float *dq, float *neg, const float *q, const float *kpos, int rows, int d, int K, float temperature)
{
    pending(be, "ssl_infonce_rows");
}

void cuda_ssl_neg_cosine(hallu_backend *be, float *loss, float *dp, const float *p, const float *z, int rows, int d, float scale, int accumulate)
{
    pending(be, "ssl_neg_cosine");
}

void cuda_ssl_collapse_std(hallu_backend *be, float *out, float *norms, const float *z, int rows, int d)
{
    pending(be, "ssl_collapse_std");
}

void cuda_ssl_hal_input(hallu_backend *be, float *xg, const float *x, const float *k, int rows, int d, float r)
{
    pending(be, "ssl_hal_input");
}

void cuda_ssl_hal_output(hallu_backend *be, float *h, const float *mlp, const float *xg, int rows, int d, int residual)
{
    pending(be, "ssl_hal_output");
}

void cuda_ssl_hal_backward(hallu_backend *be, float *dx, float *dk, const float *dxg, const float *dout, int rows, int d, float r, int residual)
{
    pending(be, "ssl_hal_backward");
}

void cuda_ssl_gather_rows(hallu_backend *be, float *dst, const float *src, const int32_t *index, int rows, int64_t cols)
{
    pending(be, "ssl_gather_rows");
}

void cuda_ssl_scatter_rows(hallu_backend *be, float *dst, const float *src, const int32_t *index, int rows, int64_t cols)
{
    pending(be, "ssl_scatter_rows");
}

void cuda_ssl_enqueue_rows(hallu_backend *be, float *queue, int64_t *ptr, const float *src, int rows, int d, int K)
{
    pending(be, "ssl_enqueue_rows");
}


/* ---- cuda_eval.cu (helper's file not merged yet) ---- */
void cuda_knn_inverse_norms(hallu_backend *be, float *inv, const float *x, int64_t rows, int dim)
{
    pending(be, "knn_inverse_norms");
}

void cuda_knn_scale_rows(hallu_backend *be, float *y, const float *x, const float *inv, int64_t rows, int dim)
{
    pending(be, "knn_scale_rows");
}

void cuda_knn_scale_cols(hallu_backend *be, float *s, const float *inv, int rows, int64_t cols)
{
    pending(be, "knn_scale_cols");
}

void cuda_knn_top_k(hallu_backend *be, float *top_sim, int32_t *top_idx, const float *sims, int rows, int64_t n, int k)
{
    pending(be, "knn_top_k");
}

void cuda_knn_vote(hallu_backend *be, int32_t *best, double *scores, const float *top_sim, const int32_t *top_idx, const int32_t *train_labels, int rows, int k, float temperature, int classes, int nbest)
{
    pending(be, "knn_vote");
}

void cuda_argmax_hits(hallu_backend *be, int64_t *hits, const float *logits, const int32_t *labels, int rows, int classes)
{
    pending(be, "argmax_hits");
}

void cuda_class_rank_hits(hallu_backend *be, int64_t *hits, const float *logits, const int32_t *labels, int rows, int classes)
{
    pending(be, "class_rank_hits");
}
