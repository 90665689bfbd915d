#include "hallu/nn.h"
#include "hallu/rng.h"

#include <math.h>
#include <string.h>

hallu_status hallu_conv2d_init(hallu_conv2d *m, hallu_params *ps, const char *prefix, int cin,
                               int cout, int k, int stride, int pad, hallu_error *err)
{
    memset(m, 0, sizeof *m);
    if (cin <= 0 || cout <= 0 || k <= 0 || stride <= 0 || pad < 0)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "conv2d '%s': cin=%d cout=%d k=%d stride=%d pad=%d",
                               prefix, cin, cout, k, stride, pad);
    *m = (hallu_conv2d){ .cin = cin, .cout = cout, .k = k, .stride = stride, .pad = pad };
    int64_t shape[4] = { cout, cin, k, k };
    m->weight = hallu_params_add(ps, prefix, "weight", 0, 4, shape, err);
    return m->weight < 0 ? err->code : HALLU_OK;
}

void hallu_conv2d_free(hallu_conv2d *m, hallu_backend *be)
{
    for (int i = 0; i < m->num_plans; i++)
        be->ops->conv2d_plan_free(m->plans[i]);
    m->num_plans = 0;
}

void hallu_conv2d_out_size(const hallu_conv2d *m, int h, int w, int *oh, int *ow)
{
    *oh = (h + 2 * m->pad - m->k) / m->stride + 1;
    *ow = (w + 2 * m->pad - m->k) / m->stride + 1;
}

static hallu_conv2d_plan *find_plan(const hallu_conv2d *m, int n, int h, int w)
{
    for (int i = 0; i < m->num_plans; i++)
        if (m->geoms[i].n == n && m->geoms[i].h == h && m->geoms[i].w == w)
            return m->plans[i];
    return NULL;
}

hallu_status hallu_conv2d_prepare(hallu_conv2d *m, hallu_backend *be, int n, int h, int w,
                                  hallu_error *err)
{
    if (find_plan(m, n, h, w))
        return HALLU_OK;
    hallu_conv2d_geom g;
    hallu_status s = hallu_conv2d_geom_init(&g, n, h, w, m->cin, m->cout, m->k, m->stride, m->pad, err);
    if (s != HALLU_OK)
        return s;
    hallu_conv2d_plan *plan = NULL;
    s = be->ops->conv2d_plan_create(be, &g, &plan, err);
    if (s != HALLU_OK)
        return s;
    /* A small cache: the first slot (the training batch) is never evicted, the
     * others rotate (e.g. a smaller last batch during evaluation). */
    int slot = m->num_plans;
    if (slot == HALLU_CONV_PLAN_CACHE) {
        slot = 1 + m->next_evict;
        m->next_evict = (m->next_evict + 1) % (HALLU_CONV_PLAN_CACHE - 1);
        be->ops->conv2d_plan_free(m->plans[slot]);
    } else {
        m->num_plans++;
    }
    m->plans[slot] = plan;
    m->geoms[slot] = g;
    return HALLU_OK;
}

hallu_status hallu_conv2d_forward(hallu_conv2d *m, const hallu_nn_ctx *ctx, float *y, const float *x,
                                  const uint16_t *x16, int n, int h, int w, hallu_error *err)
{
    hallu_status s = hallu_conv2d_prepare(m, ctx->be, n, h, w, err);
    if (s != HALLU_OK)
        return s;
    ctx->be->ops->conv2d_forward(find_plan(m, n, h, w), y, x, x16, ctx->ps->param + m->weight);
    return HALLU_OK;
}

hallu_status hallu_conv2d_forward_y16(hallu_conv2d *m, const hallu_nn_ctx *ctx, uint16_t *y16, const float *x,
                                      const uint16_t *x16, int n, int h, int w, int *done, hallu_error *err)
{
    *done = 0;
    hallu_status s = hallu_conv2d_prepare(m, ctx->be, n, h, w, err);
    if (s != HALLU_OK || !ctx->be->ops->conv2d_forward_y16)
        return s;
    *done = ctx->be->ops->conv2d_forward_y16(find_plan(m, n, h, w), y16, x, x16, ctx->ps->param + m->weight);
    return HALLU_OK;
}

hallu_status hallu_conv2d_backward_dx16(hallu_conv2d *m, const hallu_nn_ctx *ctx, uint16_t *dx16, const float *dy,
                                        const uint16_t *dy16, const float *x, const uint16_t *x16, int n, int h,
                                        int w, int *done, hallu_error *err)
{
    *done = 0;
    hallu_status s = hallu_conv2d_prepare(m, ctx->be, n, h, w, err);
    if (s != HALLU_OK || !ctx->be->ops->conv2d_backward_dx16)
        return s;
    *done = ctx->be->ops->conv2d_backward_dx16(find_plan(m, n, h, w), dx16, ctx->ps->grad + m->weight, dy, dy16, x,
                                               x16, ctx->ps->param + m->weight);
    return HALLU_OK;
}

hallu_status hallu_conv2d_backward(hallu_conv2d *m, const hallu_nn_ctx *ctx, float *dx, const float *dy,
                                   const uint16_t *dy16, const float *x, const uint16_t *x16, int n, int h, int w,
                                   hallu_error *err)
{
    hallu_status s = hallu_conv2d_prepare(m, ctx->be, n, h, w, err);
    if (s != HALLU_OK)
        return s;
    ctx->be->ops->conv2d_backward(find_plan(m, n, h, w), dx, ctx->ps->grad + m->weight, dy, dy16, x, x16,
                                  ctx->ps->param + m->weight);
    return HALLU_OK;
}

void hallu_conv2d_init_kaiming(hallu_conv2d *m, hallu_params *ps, uint64_t seed, uint64_t stream)
{
    hallu_rng rng;
    hallu_rng_init(&rng, seed, stream);
    double std = sqrt(2.0 / ((double)m->cout * m->k * m->k));
    int64_t numel = (int64_t)m->cout * m->cin * m->k * m->k;
    float *w = ps->host_param + m->weight;
    for (int64_t i = 0; i < numel; i++)
        w[i] = (float)(std * hallu_rng_normal(&rng));
}
