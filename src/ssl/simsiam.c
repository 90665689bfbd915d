/* SimSiam (+ Hallucinator): one pass per view (BN statistics per view),
 * predictor on each z, symmetric negative cosine against detached targets. */
#include "ssl_internal.h"

hallu_status ssl_simsiam_plan(hallu_ssl *ssl, hallu_error *err)
{
    size_t n = (size_t)ssl->max_batch, d = (size_t)ssl->dim;
    size_t r = ssl->has_hal ? 2 * n : n;
    const size_t sizes[SIMSIAM_NBUF] = {
        [SIMSIAM_T1] = r * d, [SIMSIAM_T2] = r * d, [SIMSIAM_DP1H] = r * d, [SIMSIAM_DP2H] = r * d,
        [SIMSIAM_DP1] = n * d, [SIMSIAM_DP2] = n * d, [SIMSIAM_DZ] = n * d,
        [SIMSIAM_DFEAT] = n * ssl->feat_dim, [SIMSIAM_CNORM] = n,
    };
    for (int i = 0; i < SIMSIAM_NBUF; i++)
        if (!ssl_buffer(ssl, sizes[i], "simsiam work buffer", err))
            return err->code;
    return HALLU_OK;
}

/* target = [z; z] */
static const float *duplicate(hallu_backend *be, float *dst, const float *z, size_t nd)
{
    be->ops->copy(be, dst, z, nd * sizeof(float));
    be->ops->copy(be, dst + nd, z, nd * sizeof(float));
    return dst;
}

static hallu_status branch_backward(hallu_ssl *ssl, const hallu_nn_ctx *ctx, int inst, const float *dp,
                                    hallu_error *err)
{
    hallu_mlp_backward(&ssl->predictor, ctx, inst, ssl->buf[SIMSIAM_DZ], dp);
    hallu_mlp_backward(&ssl->projector, ctx, inst, ssl->buf[SIMSIAM_DFEAT], ssl->buf[SIMSIAM_DZ]);
    return hallu_resnet_backward(ssl->encoder, ctx, inst, ssl->buf[SIMSIAM_DFEAT], err);
}

static hallu_status branch_forward(hallu_ssl *ssl, const hallu_nn_ctx *ctx, int inst, const float *v, int n,
                                   const float **z, const float **p, hallu_error *err)
{
    const float *f = NULL;
    hallu_status s = hallu_resnet_forward(ssl->encoder, ctx, inst, v, n, &f, err);
    if (s != HALLU_OK)
        return s;
    *z = hallu_mlp_forward(&ssl->projector, ctx, inst, f, n);
    *p = hallu_mlp_forward(&ssl->predictor, ctx, inst, *z, n);
    return HALLU_OK;
}

hallu_status ssl_simsiam_step(hallu_ssl *ssl, const hallu_nn_ctx *ctx, const float *v1, const float *v2,
                              int n, hallu_ssl_stats *st, hallu_error *err)
{
    hallu_backend *be = ctx->be;
    int d = ssl->dim;
    size_t nd = (size_t)n * d;
    const float *z1, *z2, *p1, *p2;
    hallu_status s = branch_forward(ssl, ctx, 0, v1, n, &z1, &p1, err);
    if (s == HALLU_OK)
        s = branch_forward(ssl, ctx, 1, v2, n, &z2, &p2, err);
    if (s != HALLU_OK)
        return s;
    be->ops->ssl_collapse_std(be, ssl_stat(ssl, SSL_STAT_COLLAPSE), ssl->buf[SIMSIAM_CNORM], z1, n, d);

    const float *a1 = p1, *a2 = p2, *t1 = z2, *t2 = z1;
    int rows = n;
    if (ssl->has_hal) {
        st->ratio[0] = ssl_draw_ratio(ssl);
        st->ratio[1] = ssl_draw_ratio(ssl);
        a1 = ssl_hal_forward(&ssl->hal, ctx, 0, p1, p2, n, st->ratio[0]);
        a2 = ssl_hal_forward(&ssl->hal, ctx, 1, p2, p1, n, st->ratio[1]);
        t1 = duplicate(be, ssl->buf[SIMSIAM_T1], z2, nd);
        t2 = duplicate(be, ssl->buf[SIMSIAM_T2], z1, nd);
        rows = 2 * n;
    }
    float *g1 = ctx->training ? ssl->buf[SIMSIAM_DP1H] : NULL, *g2 = ctx->training ? ssl->buf[SIMSIAM_DP2H] : NULL;
    /* loss = D(p1', z2) / 2 + D(p2', z1) / 2, the second added in float onto the first. */
    float *loss = ssl_stat(ssl, SSL_STAT_LOSS);
    be->ops->ssl_neg_cosine(be, loss, g1, a1, t1, rows, d, 0.5f, 0);
    be->ops->ssl_neg_cosine(be, loss, g2, a2, t2, rows, d, 0.5f, 1);
    if (!ctx->training)
        return HALLU_OK;

    const float *dp1 = g1, *dp2 = g2;
    if (ssl->has_hal) {
        float *d1 = ssl->buf[SIMSIAM_DP1], *d2 = ssl->buf[SIMSIAM_DP2];
        be->ops->fill(be, d1, 0.0f, (int64_t)nd);
        be->ops->fill(be, d2, 0.0f, (int64_t)nd);
        ssl_hal_backward(&ssl->hal, ctx, 0, d1, d2, g1);
        ssl_hal_backward(&ssl->hal, ctx, 1, d2, d1, g2);
        dp1 = d1;
        dp2 = d2;
    }
    s = branch_backward(ssl, ctx, 0, dp1, err);
    return s == HALLU_OK ? branch_backward(ssl, ctx, 1, dp2, err) : s;
}
