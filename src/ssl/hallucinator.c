/* The Hallucinator: extrapolate g = (1+r)x - r k away from the partner view,
 * smooth with a 3-layer MLP on [x, g], return [x; h]. The elementwise parts
 * are backend ops (ssl_hal_input/output/backward); r is drawn on the host. */
#include "ssl_internal.h"

#include <string.h>

hallu_status ssl_hal_init(ssl_hal *h, hallu_params *ps, const char *prefix, int d, int hidden,
                          int residual, hallu_error *err)
{
    memset(h, 0, sizeof *h);
    if (d <= 0 || hidden <= 0)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "hallucinator: dim=%d hidden=%d", d, hidden);
    h->d = d;
    h->hidden = hidden;
    h->residual = residual;
    const hallu_mlp_layer_spec layers[5] = {
        { HALLU_MLP_LINEAR, hidden, 1, 0 }, { HALLU_MLP_RELU, 0, 0, 0 },
        { HALLU_MLP_LINEAR, hidden, 1, 0 }, { HALLU_MLP_RELU, 0, 0, 0 },
        { HALLU_MLP_LINEAR, d, 1, 0 },
    };
    return hallu_mlp_init(&h->mlp, ps, prefix, 2 * d, layers, 5, err);
}

hallu_status ssl_hal_plan(ssl_hal *h, hallu_backend *be, int max_rows, int instances, hallu_error *err)
{
    hallu_status s = hallu_mlp_plan(&h->mlp, be, max_rows, instances, err);
    h->max_rows = max_rows;
    size_t xg = (size_t)max_rows * 2 * h->d * sizeof(float);
    for (int t = 0; t < instances && s == HALLU_OK; t++) {
        h->xg[t] = be->ops->alloc(be, xg, "hallucinator input", err);
        h->out[t] = h->xg[t] ? be->ops->alloc(be, xg, "hallucinator output", err) : NULL;
        if (!h->out[t])
            s = err->code;
    }
    if (s == HALLU_OK && !(h->dxg = be->ops->alloc(be, xg, "hallucinator gradient", err)))
        s = err->code;
    return s;
}

void ssl_hal_free(ssl_hal *h, hallu_backend *be)
{
    if (be) {
        for (int t = 0; t < HALLU_MAX_INSTANCES; t++) {
            if (h->xg[t]) be->ops->release(be, h->xg[t]);
            if (h->out[t]) be->ops->release(be, h->out[t]);
        }
        if (h->dxg) be->ops->release(be, h->dxg);
    }
    hallu_mlp_free(&h->mlp, be);
    memset(h, 0, sizeof *h);
}

void ssl_hal_init_weights(ssl_hal *h, hallu_params *ps, uint64_t seed, uint64_t stream)
{
    hallu_mlp_init_default(&h->mlp, ps, seed, stream);
    if (!h->residual)
        return;
    /* Zero last layer: h starts exactly at the extrapolated point g, so the
     * hallucinated half does not begin as one shared point (METHOD.md). */
    const hallu_linear *last = &h->mlp.linear[4];
    memset(ps->host_param + last->weight, 0, (size_t)last->in * last->out * sizeof(float));
    memset(ps->host_param + last->bias, 0, (size_t)last->out * sizeof(float));
}

const float *ssl_hal_forward(ssl_hal *h, const hallu_nn_ctx *ctx, int inst, const float *x,
                             const float *k, int rows, float r)
{
    hallu_backend *be = ctx->be;
    int d = h->d;
    float *xg = h->xg[inst], *out = h->out[inst];
    h->r[inst] = r;
    h->rows[inst] = rows;
    h->x[inst] = x;
    be->ops->ssl_hal_input(be, xg, x, k, rows, d, r);
    const float *m = hallu_mlp_forward(&h->mlp, ctx, inst, xg, rows);
    be->ops->copy(be, out, x, (size_t)rows * d * sizeof(float));
    be->ops->ssl_hal_output(be, out + (size_t)rows * d, m, xg, rows, d, h->residual);
    return out;
}

void ssl_hal_backward(ssl_hal *h, const hallu_nn_ctx *ctx, int inst, float *dx, float *dk, const float *dout)
{
    hallu_backend *be = ctx->be;
    int d = h->d, rows = h->rows[inst];
    hallu_mlp_backward(&h->mlp, ctx, inst, h->dxg, dout + (size_t)rows * d);
    be->ops->ssl_hal_backward(be, dx, dk, h->dxg, dout, rows, d, h->r[inst], h->residual);
}
