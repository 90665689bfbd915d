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
    m->save_mean = hallu_calloc((size_t)HALLU_MAX_INSTANCES * c * 2 * sizeof(float), "batchnorm statistics", err);
    if (!m->save_mean)
        return err->code;
    m->save_invstd = m->save_mean + (size_t)HALLU_MAX_INSTANCES * c;
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
            ps->param[m->weight + i] = gamma;
            ps->param[m->bias + i] = 0.0f;
        }
        ps->buffer[m->running_mean + i] = 0.0f;
        ps->buffer[m->running_var + i] = 1.0f;
    }
    ps->buffer[m->num_batches_tracked] = 0.0f;
}

void hallu_batchnorm_forward(hallu_batchnorm *m, const hallu_nn_ctx *ctx, int inst, float *y,
                             const float *x, int64_t rows)
{
    const hallu_params *ps = ctx->ps;
    const float *gamma = m->affine ? ps->param + m->weight : NULL;
    const float *beta = m->affine ? ps->param + m->bias : NULL;
    if (ctx->training) {
        ctx->be->ops->batchnorm_forward_train(ctx->be, y, m->save_mean + (size_t)inst * m->c,
                                              m->save_invstd + (size_t)inst * m->c,
                                              ps->buffer + m->running_mean, ps->buffer + m->running_var,
                                              x, gamma, beta, rows, m->c, m->momentum, m->eps);
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
    ctx->be->ops->batchnorm_backward(ctx->be, dx, m->affine ? ps->grad + m->weight : NULL,
                                     m->affine ? ps->grad + m->bias : NULL, dy, x,
                                     m->save_mean + (size_t)inst * m->c, m->save_invstd + (size_t)inst * m->c,
                                     m->affine ? ps->param + m->weight : NULL, rows, m->c);
}
