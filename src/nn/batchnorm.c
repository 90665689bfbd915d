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
    size_t per_side = (size_t)HALLU_MAX_INSTANCES * HALLU_BN_MAX_GROUPS * c;
    m->save_mean = hallu_calloc(per_side * 2 * sizeof(float), "batchnorm statistics", err);
    if (!m->save_mean)
        return err->code;
    m->save_invstd = m->save_mean + per_side;
    return HALLU_OK;
}

void hallu_batchnorm_free(hallu_batchnorm *m)
{
    hallu_free(m->save_mean);
    m->save_mean = m->save_invstd = NULL;
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

static size_t stats_at(const hallu_batchnorm *m, int inst, int group)
{
    return ((size_t)inst * HALLU_BN_MAX_GROUPS + (size_t)group) * (size_t)m->c;
}

/* Each group's update starts from the same running statistics; the result is their
 * mean, computed from the groups' saved batch statistics. */
static void update_running_grouped(hallu_batchnorm *m, hallu_params *ps, int inst, int groups, int64_t rows_per)
{
    float *rm = ps->buffer + m->running_mean, *rv = ps->buffer + m->running_var;
    for (int j = 0; j < m->c; j++) {
        double mean = 0.0, var = 0.0;
        for (int g = 0; g < groups; g++) {
            double mu = m->save_mean[stats_at(m, inst, g) + j], is = m->save_invstd[stats_at(m, inst, g) + j];
            double biased = 1.0 / (is * is) - (double)m->eps;
            mean += mu;
            var += rows_per > 1 ? biased * (double)rows_per / (double)(rows_per - 1) : biased;
        }
        rm[j] = (float)((1.0 - m->momentum) * rm[j] + m->momentum * mean / groups);
        rv[j] = (float)((1.0 - m->momentum) * rv[j] + m->momentum * var / groups);
    }
}

void hallu_batchnorm_forward(hallu_batchnorm *m, const hallu_nn_ctx *ctx, int inst, float *y,
                             const float *x, int64_t rows)
{
    hallu_params *ps = ctx->ps;
    const float *gamma = m->affine ? ps->param + m->weight : NULL;
    const float *beta = m->affine ? ps->param + m->bias : NULL;
    int groups = ctx->training ? bn_groups(ctx) : 1;
    if (ctx->training && groups == 1) {
        ctx->be->ops->batchnorm_forward_train(ctx->be, y, m->save_mean + stats_at(m, inst, 0),
                                              m->save_invstd + stats_at(m, inst, 0),
                                              ps->buffer + m->running_mean, ps->buffer + m->running_var,
                                              x, gamma, beta, rows, m->c, m->momentum, m->eps);
        ps->buffer[m->num_batches_tracked] += 1.0f;
    } else if (ctx->training) {
        int64_t per = rows / groups;
        for (int g = 0; g < groups; g++) {
            size_t off = (size_t)(g * per) * (size_t)m->c;
            ctx->be->ops->batchnorm_forward_train(ctx->be, y + off, m->save_mean + stats_at(m, inst, g),
                                                  m->save_invstd + stats_at(m, inst, g), NULL, NULL,
                                                  x + off, gamma, beta, per, m->c, m->momentum, m->eps);
        }
        update_running_grouped(m, ps, inst, groups, per);
        ps->buffer[m->num_batches_tracked] += 1.0f;
    } else {
        ctx->be->ops->batchnorm_forward_eval(ctx->be, y, x, ps->buffer + m->running_mean,
                                             ps->buffer + m->running_var, gamma, beta, rows, m->c, m->eps);
    }
}

void hallu_batchnorm_backward(hallu_batchnorm *m, const hallu_nn_ctx *ctx, int inst, float *dx,
                              const float *dy, const float *x, int64_t rows)
{
    hallu_params *ps = ctx->ps;
    int groups = bn_groups(ctx);
    int64_t per = rows / groups;
    for (int g = 0; g < groups; g++) {
        size_t off = (size_t)(g * per) * (size_t)m->c;
        ctx->be->ops->batchnorm_backward(ctx->be, dx ? dx + off : NULL, m->affine ? ps->grad + m->weight : NULL,
                                         m->affine ? ps->grad + m->bias : NULL, dy + off, x + off,
                                         m->save_mean + stats_at(m, inst, g), m->save_invstd + stats_at(m, inst, g),
                                         m->affine ? ps->param + m->weight : NULL, per, m->c);
    }
}
