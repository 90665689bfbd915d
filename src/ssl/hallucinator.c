/* The Hallucinator: extrapolate g = (1+r)x - r k away from the partner view,
 * smooth with a 3-layer MLP on [x, g], return [x; h]. */
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
    int d = h->d;
    float *xg = h->xg[inst], *out = h->out[inst];
    h->r[inst] = r;
    h->rows[inst] = rows;
    h->x[inst] = x;
    for (int i = 0; i < rows; i++) {
        const float *xi = x + (size_t)i * d, *ki = k + (size_t)i * d;
        float *row = xg + (size_t)i * 2 * d;
        memcpy(row, xi, (size_t)d * sizeof(float));
        for (int j = 0; j < d; j++)
            row[d + j] = (1.0f + r) * xi[j] - r * ki[j];
    }
    const float *m = hallu_mlp_forward(&h->mlp, ctx, inst, xg, rows);
    memcpy(out, x, (size_t)rows * d * sizeof(float));
    float *hh = out + (size_t)rows * d;
    if (h->residual) {
        for (int i = 0; i < rows; i++)
            ctx->be->ops->add(ctx->be, hh + (size_t)i * d, m + (size_t)i * d, xg + (size_t)i * 2 * d + d, d);
    } else {
        memcpy(hh, m, (size_t)rows * d * sizeof(float));
    }
    return out;
}

void ssl_hal_backward(ssl_hal *h, const hallu_nn_ctx *ctx, int inst, float *dx, float *dk, const float *dout)
{
    int d = h->d, rows = h->rows[inst];
    float r = h->r[inst];
    const float *dh = dout + (size_t)rows * d;
    hallu_mlp_backward(&h->mlp, ctx, inst, h->dxg, dh);
    for (int i = 0; i < rows; i++) {
        const float *dxi = h->dxg + (size_t)i * 2 * d, *dgi = dxi + d;
        const float *dhi = dh + (size_t)i * d, *d0 = dout + (size_t)i * d;
        float *gx = dx + (size_t)i * d;
        float *gk = dk ? dk + (size_t)i * d : NULL;
        for (int j = 0; j < d; j++) {
            /* The residual path adds dh straight into dg. */
            float dg = dgi[j] + (h->residual ? dhi[j] : 0.0f);
            gx[j] += d0[j] + dxi[j] + (1.0f + r) * dg;
            if (gk)
                gk[j] -= r * dg;
        }
    }
}
