#include "hallu/nn.h"

#include <string.h>

hallu_status hallu_batchnorm_init(hallu_batchnorm *m, hallu_params *ps, const char *prefix, int c,
                                  int affine, hallu_error *err)
{
    memset(m, 0, sizeof *m);
    if (c <= 0)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "batchnorm '%s': channels=%d", prefix, c);
    m->c = c;
    m->affine = affine;
    m->momentum = 0.1f;
    m->eps = 1e-5f;
    int64_t shape[1] = { c };
    m->weight = m->bias = -1;
    if (affine) {
        m->weight = hallu_params_add(ps, prefix, "weight", HALLU_TENSOR_NO_DECAY, 1, shape, err);
        if (m->weight < 0)
            return err->code;
        m->bias = hallu_params_add(ps, prefix, "bias", HALLU_TENSOR_NO_DECAY, 1, shape, err);
        if (m->bias < 0)
            return err->code;
    }
    m->running_mean = hallu_params_add_state(ps, prefix, "running_mean", 0, 1, shape, err);
    m->running_var = m->running_mean < 0 ? -1 : hallu_params_add_state(ps, prefix, "running_var", 0, 1, shape, err);
    m->num_batches_tracked = m->running_var < 0 ? -1
        : hallu_params_add_state(ps, prefix, "num_batches_tracked", HALLU_TENSOR_COUNTER, 0, NULL, err);
    if (m->num_batches_tracked < 0)
        return err->code;
    return HALLU_OK;
}

hallu_status hallu_batchnorm_plan(hallu_batchnorm *m, hallu_backend *be, int num_instances, hallu_error *err)
{
    if (num_instances <= 0 || num_instances > HALLU_MAX_INSTANCES)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "batchnorm plan: %d instances (max %d)", num_instances,
                               HALLU_MAX_INSTANCES);
    if (m->saved.be == be && m->planned_instances >= num_instances)
        return HALLU_OK;
    hallu_batchnorm_free(m);
    int64_t per_side = (int64_t)num_instances * HALLU_BN_MAX_GROUPS * m->c;
    hallu_status s = hallu_buffer_alloc(&m->saved, be, HALLU_DTYPE_F32, 3 * per_side, "batchnorm statistics", err);
    if (s == HALLU_OK)
        s = hallu_buffer_alloc(&m->batch, be, HALLU_DTYPE_F64, 2 * (int64_t)m->c, "batchnorm batch statistics", err);
    if (s != HALLU_OK) {
        hallu_batchnorm_free(m);
        return s;
    }
    m->save_mean = hallu_buffer_f32(&m->saved);
    m->save_invstd = m->save_mean + per_side;
    m->save_scale = m->save_invstd + per_side;
    m->planned_instances = num_instances;
    return HALLU_OK;
}

void hallu_batchnorm_free(hallu_batchnorm *m)
{
    hallu_buffer_free(&m->saved);
    hallu_buffer_free(&m->batch);
    m->save_mean = m->save_invstd = m->save_scale = NULL;
    m->planned_instances = 0;
}

void hallu_batchnorm_reset(hallu_batchnorm *m, hallu_params *ps, float gamma)
{
    for (int i = 0; i < m->c; i++) {
        if (m->affine) {
            ps->host_param[m->weight + i] = gamma;
            ps->host_param[m->bias + i] = 0.0f;
        }
        ps->host_buffer[m->running_mean + i] = 0.0f;
        ps->host_buffer[m->running_var + i] = 1.0f;
    }
    ps->host_buffer[m->num_batches_tracked] = 0.0f;
}

static int bn_groups(const hallu_nn_ctx *ctx)
{
    return ctx->bn_groups > 1 ? ctx->bn_groups : 1;
}

static int sync_ranks(const hallu_nn_ctx *ctx)
{
    return ctx->training && ctx->sync_bn && bn_groups(ctx) == 1 && ctx->comm && ctx->comm->size > 1
        ? ctx->comm->size : 1;
}

/* A failed collective becomes the backend's failure: the step's check reports it. */
static void sum_across_ranks(const hallu_nn_ctx *ctx, double *buf, int64_t n)
{
    hallu_error err;
    hallu_error_clear(&err);
    if (ctx->comm->ops->allreduce_sum_f64(ctx->comm, ctx->be, buf, n, &err) != HALLU_OK)
        hallu_backend_fail(ctx->be, err.code, "sync batch norm: %s", err.msg);
}

static size_t stats_at(const hallu_batchnorm *m, int inst, int group)
{
    return ((size_t)inst * HALLU_BN_MAX_GROUPS + (size_t)group) * (size_t)m->c;
}

/* The training forward over all rows as one group (across ranks with SyncBN);
 * fused: batchnorm_normalize_fused with hallu_batchnorm_forward_fused's y16,
 * x16, residual and relu (else batchnorm_normalize of x into y). */
static void forward_train(hallu_batchnorm *m, const hallu_nn_ctx *ctx, int inst, float *y, uint16_t *y16,
                          const float *x, const uint16_t *x16, const float *residual, const uint16_t *residual16,
                          int relu, int fused, int64_t rows)
{
    hallu_params *ps = ctx->ps;
    const float *gamma = m->affine ? ps->param + m->weight : NULL;
    const float *beta = m->affine ? ps->param + m->bias : NULL;
    hallu_backend *be = ctx->be;
    double *mean = m->batch.data, *var = mean ? mean + m->c : NULL;
    int ranks = sync_ranks(ctx);
    if (x16)
        be->ops->batchnorm_stats_x16(be, mean, var, x16, rows, m->c);
    else
        be->ops->batchnorm_stats(be, mean, var, x, rows, m->c);
    if (ranks > 1) {   /* SyncBN: the statistics of every rank's rows (mean and var are contiguous) */
        be->ops->batchnorm_stats_to_moments(be, mean, var, m->c);
        sum_across_ranks(ctx, mean, 2 * (int64_t)m->c);
        be->ops->batchnorm_moments_to_stats(be, mean, var, m->c, 1.0 / ranks);
    }
    be->ops->batchnorm_update_running(be, ps->buffer + m->running_mean, ps->buffer + m->running_var, mean, var,
                                      rows * ranks, m->c, m->momentum);
    size_t at = stats_at(m, inst, 0);
    if (fused)
        be->ops->batchnorm_normalize_fused(be, y, y16, m->save_mean + at, m->save_invstd + at, m->save_scale + at, x,
                                           x16, mean, var, gamma, beta, residual, residual16, relu, rows, m->c,
                                           m->eps);
    else
        be->ops->batchnorm_normalize(be, y, m->save_mean + at, m->save_invstd + at, x, mean, var, gamma, beta, rows,
                                     m->c, m->eps);
    be->ops->add_scalar(be, ps->buffer + m->num_batches_tracked, 1.0f, 1);
}

int hallu_batchnorm_fusable(const hallu_nn_ctx *ctx)
{
    const hallu_backend_ops *ops = ctx->be->ops;
    return ops->batchnorm_normalize_fused && ops->batchnorm_backward_fused && ops->add_relu_backward && ctx->training
        && bn_groups(ctx) == 1 && sync_ranks(ctx) == 1;
}

void hallu_batchnorm_forward_fused(hallu_batchnorm *m, const hallu_nn_ctx *ctx, int inst, float *y, uint16_t *y16,
                                   const float *x, const uint16_t *x16, const float *residual,
                                   const uint16_t *residual16, int relu, int64_t rows)
{
    if (!hallu_batchnorm_fusable(ctx) || (x16 && !ctx->be->ops->batchnorm_stats_x16)) {
        hallu_backend_fail(ctx->be, HALLU_ERR_INVALID_ARG, "batchnorm forward_fused: not fusable here "
                           "(hallu_batchnorm_fusable%s)", x16 ? ", batchnorm_stats_x16" : "");
        return;
    }
    forward_train(m, ctx, inst, y, y16, x, x16, residual, residual16, relu, 1, rows);
}

void hallu_batchnorm_forward(hallu_batchnorm *m, const hallu_nn_ctx *ctx, int inst, float *y,
                             const float *x, int64_t rows)
{
    hallu_params *ps = ctx->ps;
    const float *gamma = m->affine ? ps->param + m->weight : NULL;
    const float *beta = m->affine ? ps->param + m->bias : NULL;
    int groups = ctx->training ? bn_groups(ctx) : 1;
    hallu_backend *be = ctx->be;
    double *mean = m->batch.data, *var = mean ? mean + m->c : NULL;
    if (ctx->training && groups == 1) {
        forward_train(m, ctx, inst, y, NULL, x, NULL, NULL, NULL, 0, 0, rows);
    } else if (ctx->training) {
        int64_t per = rows / groups;
        for (int g = 0; g < groups; g++) {
            size_t off = (size_t)(g * per) * (size_t)m->c;
            be->ops->batchnorm_stats(be, mean, var, x + off, per, m->c);
            be->ops->batchnorm_normalize(be, y + off, m->save_mean + stats_at(m, inst, g),
                                         m->save_invstd + stats_at(m, inst, g), x + off, mean, var, gamma, beta, per,
                                         m->c, m->eps);
        }
        be->ops->batchnorm_update_running_grouped(be, ps->buffer + m->running_mean, ps->buffer + m->running_var,
                                                  m->save_mean + stats_at(m, inst, 0),
                                                  m->save_invstd + stats_at(m, inst, 0), groups, per, m->c,
                                                  m->momentum, m->eps);
        be->ops->add_scalar(be, ps->buffer + m->num_batches_tracked, 1.0f, 1);
    } else {
        ctx->be->ops->batchnorm_forward_eval(ctx->be, y, x, ps->buffer + m->running_mean,
                                             ps->buffer + m->running_var, gamma, beta, rows, m->c, m->eps);
    }
}

/* The backward of each group of rows alone (one group without ctx->bn_groups);
 * dx into dx, or as bf16 into dx16. */
static void backward_groups(hallu_batchnorm *m, const hallu_nn_ctx *ctx, int inst, float *dx, uint16_t *dx16,
                            const float *dy, const float *x, int64_t rows)
{
    hallu_params *ps = ctx->ps;
    hallu_backend *be = ctx->be;
    float *dgamma = m->affine ? ps->grad + m->weight : NULL, *dbeta = m->affine ? ps->grad + m->bias : NULL;
    const float *gamma = m->affine ? ps->param + m->weight : NULL;
    int groups = bn_groups(ctx);
    int64_t per = rows / groups;
    for (int g = 0; g < groups; g++) {
        size_t off = (size_t)(g * per) * (size_t)m->c;
        const float *mean = m->save_mean + stats_at(m, inst, g), *invstd = m->save_invstd + stats_at(m, inst, g);
        if (dx16)
            be->ops->batchnorm_backward_x16(be, dx16 + off, dgamma, dbeta, dy + off, x + off, mean, invstd, gamma,
                                            per, m->c);
        else
            be->ops->batchnorm_backward(be, dx ? dx + off : NULL, dgamma, dbeta, dy + off, x + off, mean, invstd,
                                        gamma, per, m->c);
    }
}

void hallu_batchnorm_backward(hallu_batchnorm *m, const hallu_nn_ctx *ctx, int inst, float *dx,
                              const float *dy, const float *x, int64_t rows)
{
    hallu_params *ps = ctx->ps;
    int ranks = sync_ranks(ctx);
    if (ranks > 1) {   /* SyncBN: dx from the gradient sums of every rank's rows */
        double *sums = m->batch.data;   /* the forward's statistics are spent by now */
        hallu_backend *be = ctx->be;
        be->ops->batchnorm_backward_reduce(be, sums, m->affine ? ps->grad + m->weight : NULL,
                                           m->affine ? ps->grad + m->bias : NULL, dy, x, m->save_mean + stats_at(m, inst, 0),
                                           m->save_invstd + stats_at(m, inst, 0), rows, m->c);
        sum_across_ranks(ctx, sums, 2 * (int64_t)m->c);
        be->ops->batchnorm_backward_apply(be, dx, dy, x, m->save_mean + stats_at(m, inst, 0),
                                          m->save_invstd + stats_at(m, inst, 0),
                                          m->affine ? ps->param + m->weight : NULL, sums, rows, rows * ranks, m->c);
        return;
    }
    backward_groups(m, ctx, inst, dx, NULL, dy, x, rows);
}

int hallu_batchnorm_backward_x16(hallu_batchnorm *m, const hallu_nn_ctx *ctx, int inst, uint16_t *dx16,
                                 const float *dy, const float *x, int64_t rows)
{
    if (!ctx->be->ops->batchnorm_backward_x16 || sync_ranks(ctx) > 1)
        return 0;
    backward_groups(m, ctx, inst, NULL, dx16, dy, x, rows);
    return 1;
}

void hallu_batchnorm_backward_fused(hallu_batchnorm *m, const hallu_nn_ctx *ctx, int inst, float *dx,
                                    uint16_t *dx16, const float *dy, const uint16_t *dy16, const float *x,
                                    const uint16_t *x16, int relu, int64_t rows)
{
    if (!hallu_batchnorm_fusable(ctx)) {
        hallu_backend_fail(ctx->be, HALLU_ERR_INVALID_ARG, "batchnorm backward_fused: not fusable here "
                           "(hallu_batchnorm_fusable)");
        return;
    }
    hallu_params *ps = ctx->ps;
    size_t at = stats_at(m, inst, 0);
    ctx->be->ops->batchnorm_backward_fused(ctx->be, dx, dx16, m->affine ? ps->grad + m->weight : NULL,
                                           m->affine ? ps->grad + m->bias : NULL, dy, dy16, x, x16, m->save_mean + at,
                                           m->save_invstd + at, relu ? m->save_scale + at : NULL,
                                           m->affine ? ps->param + m->weight : NULL,
                                           m->affine ? ps->param + m->bias : NULL, rows, m->c);
}
