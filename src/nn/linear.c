#include "hallu/nn.h"
#include "hallu/rng.h"

#include <math.h>
#include <string.h>

hallu_status hallu_linear_init(hallu_linear *m, hallu_params *ps, const char *prefix, int in, int out,
                               int has_bias, hallu_error *err)
{
    memset(m, 0, sizeof *m);
    if (in <= 0 || out <= 0)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "linear '%s': in=%d out=%d", prefix, in, out);
    *m = (hallu_linear){ .in = in, .out = out, .has_bias = has_bias, .bias = -1 };
    int64_t wshape[2] = { out, in }, bshape[1] = { out };
    m->weight = hallu_params_add(ps, prefix, "weight", 0, 2, wshape, err);
    if (m->weight < 0)
        return err->code;
    if (has_bias) {
        m->bias = hallu_params_add(ps, prefix, "bias", HALLU_TENSOR_NO_DECAY, 1, bshape, err);
        if (m->bias < 0)
            return err->code;
    }
    return HALLU_OK;
}

void hallu_linear_init_default(hallu_linear *m, hallu_params *ps, uint64_t seed, uint64_t stream)
{
    hallu_rng rng;
    hallu_rng_init(&rng, seed, stream);
    double bound = 1.0 / sqrt((double)m->in);
    float *w = ps->host_param + m->weight;
    for (int64_t i = 0; i < (int64_t)m->in * m->out; i++)
        w[i] = (float)hallu_rng_range(&rng, -bound, bound);
    if (m->has_bias)
        for (int i = 0; i < m->out; i++)
            ps->host_param[m->bias + i] = (float)hallu_rng_range(&rng, -bound, bound);
}

void hallu_linear_forward(const hallu_linear *m, const hallu_nn_ctx *ctx, float *y, const float *x, int rows)
{
    const float *bias = m->has_bias ? ctx->ps->param + m->bias : NULL;
    ctx->be->ops->linear_forward(ctx->be, y, x, ctx->ps->param + m->weight, bias, rows, m->in, m->out);
}

void hallu_linear_backward(const hallu_linear *m, const hallu_nn_ctx *ctx, float *dx, const float *dy,
                           const float *x, int rows)
{
    float *dbias = m->has_bias ? ctx->ps->grad + m->bias : NULL;
    ctx->be->ops->linear_backward(ctx->be, dx, ctx->ps->grad + m->weight, dbias, dy, x,
                                  ctx->ps->param + m->weight, rows, m->in, m->out);
}
