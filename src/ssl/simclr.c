/* SimCLR (+ Hallucinator): one encoder pass over [view1; view2] (the reference
 * concatenates the views, so BN statistics span 2n images), NT-Xent over
 * [z1; z2] or, hallucinated, over [z1; h; z2; z2].
 *
 * Across R ranks each rank's block of rows F_r (that layout, its own n images;
 * the Hallucinator pairs its own views) is normalised and all-gathered, rank
 * order: the loss of rank r takes its block's rows as anchors against all R
 * blocks. Its gradient reaches every block, so the all-gather's backward is a
 * reduce-scatter that SUMS what every rank computed for block r (taking only
 * rank r's own part would drop the terms where r's rows are other ranks'
 * negatives). With the gradient all-reduce's mean over ranks this is exactly
 * one process's loss over the R n images: the NT-Xent of a row depends on the
 * set of rows, not their order. */
#include "ssl_internal.h"

hallu_status ssl_simclr_plan(hallu_ssl *ssl, hallu_error *err)
{
    size_t n = (size_t)ssl->max_batch, d = (size_t)ssl->dim;
    size_t m = ssl->has_hal ? 4 * n : 2 * n, all = m * (size_t)ssl->ranks;
    const size_t sizes[SIMCLR_NBUF] = {
        [SIMCLR_IMAGES] = 2 * n * ssl->h * ssl->w * 3, [SIMCLR_FEAT] = m * d, [SIMCLR_FNORM] = all * d,
        [SIMCLR_NORMS] = m, [SIMCLR_DFN] = all * d, [SIMCLR_DF] = m * d, [SIMCLR_SIM] = m * all,
        [SIMCLR_DZ] = 2 * n * d, [SIMCLR_DFEAT] = 2 * n * ssl->feat_dim,
        [SIMCLR_DFN_OWN] = ssl->ranks > 1 ? m * d : 1,
    };
    for (int i = 0; i < SIMCLR_NBUF; i++)
        if (!ssl_buffer(ssl, sizes[i], "simclr work buffer", err))
            return err->code;
    return HALLU_OK;
}

/* Stacks the rows the loss sees into F; returns its row count. */
static int simclr_rows(hallu_ssl *ssl, const hallu_nn_ctx *ctx, const float *z, int n, hallu_ssl_stats *st)
{
    hallu_backend *be = ctx->be;
    size_t nd = (size_t)n * ssl->dim, bytes = nd * sizeof(float);
    float *f = ssl->buf[SIMCLR_FEAT];
    const float *z1 = z, *z2 = z + nd;
    if (!ssl->has_hal) {
        be->ops->copy(be, f, z, 2 * bytes);
        return 2 * n;
    }
    st->ratio[0] = ssl_draw_ratio(ssl);
    const float *hx = ssl_hal_forward(&ssl->hal, ctx, 0, z1, z2, n, st->ratio[0]);
    be->ops->copy(be, f, hx, 2 * bytes);
    be->ops->copy(be, f + 2 * nd, z2, bytes);
    be->ops->copy(be, f + 3 * nd, z2, bytes);
    return 4 * n;
}

/* dF [m][d] -> dz [2n][d]. */
static float *simclr_head_grad(hallu_ssl *ssl, const hallu_nn_ctx *ctx, int n)
{
    size_t nd = (size_t)n * ssl->dim;
    float *df = ssl->buf[SIMCLR_DF], *dz = ssl->buf[SIMCLR_DZ];
    if (!ssl->has_hal)
        return df;
    ctx->be->ops->fill(ctx->be, dz, 0.0f, (int64_t)nd);
    ctx->be->ops->add(ctx->be, dz + nd, df + 2 * nd, df + 3 * nd, (int64_t)nd);
    ssl_hal_backward(&ssl->hal, ctx, 0, dz, dz + nd, df);
    return dz;
}

hallu_status ssl_simclr_step(hallu_ssl *ssl, const hallu_nn_ctx *ctx, const float *v1, const float *v2,
                             int n, hallu_ssl_stats *st, hallu_error *err)
{
    hallu_backend *be = ctx->be;
    int d = ssl->dim;
    size_t img = (size_t)n * ssl->h * ssl->w * 3;
    float *images = ssl->buf[SIMCLR_IMAGES];
    be->ops->copy(be, images, v1, img * sizeof(float));
    be->ops->copy(be, images + img, v2, img * sizeof(float));
    const float *feat = NULL;
    hallu_status s = hallu_resnet_forward(ssl->encoder, ctx, 0, images, 2 * n, &feat, err);
    if (s != HALLU_OK)
        return s;
    const float *z = hallu_mlp_forward(&ssl->projector, ctx, 0, feat, 2 * n);
    be->ops->ssl_collapse_std(be, ssl_stat(ssl, SSL_STAT_COLLAPSE), ssl->buf[SIMCLR_NORMS], z, n, d);

    int m = simclr_rows(ssl, ctx, z, n, st), all = m * ssl->ranks;
    float *f = ssl->buf[SIMCLR_FEAT], *fn = ssl->buf[SIMCLR_FNORM], *norms = ssl->buf[SIMCLR_NORMS];
    float *fn_own = fn + (size_t)ssl->rank * m * d;   /* this rank's block of the gathered rows */
    be->ops->l2norm_rows_forward(be, fn_own, norms, f, m, d, 1e-12f);
    hallu_error cerr;
    if (ssl->comm)
        ssl_comm_check(ssl, ssl->comm->ops->allgather_f32(ssl->comm, be, fn, fn_own, (int64_t)m * d, &cerr), &cerr);
    float t = ssl->cfg.temperature;
    float scale = ssl->cfg.base_temperature > 0.0f ? t / ssl->cfg.base_temperature : 1.0f;
    float *dfn = ssl->buf[SIMCLR_DFN];
    ssl_nt_xent(be, ssl_stat(ssl, SSL_STAT_LOSS), ctx->training ? dfn : NULL, ssl->buf[SIMCLR_SIM], fn, all, d, m,
                ssl->rank * m, m, n, t, ssl->cfg.mask_duplicates, scale);
    if (!ctx->training)
        return HALLU_OK;

    if (ssl->comm) {   /* the all-gather's backward: this block's gradient, summed over every rank's loss */
        ssl_comm_check(ssl, ssl->comm->ops->reduce_scatter_sum_f32(ssl->comm, be, ssl->buf[SIMCLR_DFN_OWN], dfn,
                                                                   (int64_t)m * d, &cerr), &cerr);
        dfn = ssl->buf[SIMCLR_DFN_OWN];
    }
    be->ops->l2norm_rows_backward(be, ssl->buf[SIMCLR_DF], dfn, f, norms, m, d, 1e-12f);
    float *dz = simclr_head_grad(ssl, ctx, n);
    hallu_mlp_backward(&ssl->projector, ctx, 0, ssl->buf[SIMCLR_DFEAT], dz);
    return hallu_resnet_backward(ssl->encoder, ctx, 0, ssl->buf[SIMCLR_DFEAT], err);
}
