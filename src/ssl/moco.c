/* MoCo v1/v2 (+ Hallucinator): query encoder + head, momentum key encoder,
 * a queue of K normalised keys, InfoNCE at temperature T. Ordering follows
 * MoCo's builder.py (see include/hallu/ssl.h). */
#include "ssl_internal.h"

#include <string.h>

hallu_status ssl_moco_create(hallu_ssl *ssl, hallu_params *ps, hallu_error *err)
{
    hallu_params *kp = &ssl->key_ps;
    hallu_params_init(kp);
    hallu_mlp_layer_spec l[HALLU_MLP_MAX_LAYERS];
    int nl = ssl_projector_layers(&ssl->cfg, ssl->feat_dim, l);
    hallu_status s = hallu_resnet_create(&ssl->key_encoder, &ssl->cfg.backbone, kp, "encoder", err);
    if (s == HALLU_OK)
        s = hallu_mlp_init(&ssl->key_projector, kp, "projector", ssl->feat_dim, l, nl, err);
    if (s == HALLU_OK && kp->num_trainable != ssl->q_count)
        s = hallu_error_set(err, HALLU_ERR_INVALID_ARG, "moco: key encoder has %d tensors, query %d",
                            kp->num_trainable, ssl->q_count);
    for (int i = 0; i < kp->num_trainable && s == HALLU_OK; i++) {
        const hallu_tensor_info *q = &ps->trainable[ssl->q_first + i], *k = &kp->trainable[i];
        if (strcmp(q->name, k->name) != 0 || q->numel != k->numel)
            s = hallu_error_set(err, HALLU_ERR_INVALID_ARG, "moco: key tensor '%s' does not mirror query '%s'",
                                k->name, q->name);
    }
    if (s == HALLU_OK)
        s = hallu_params_alloc(kp, ssl->be, err);
    if (s != HALLU_OK)
        return s;
    /* The key encoder is never backpropagated: drop its gradient block. */
    hallu_buffer_free(&kp->grad_buf);
    kp->grad = NULL;
    size_t qbytes = (size_t)ssl->cfg.queue_size * ssl->dim * sizeof(float);
    ssl->queue = hallu_calloc(qbytes, "moco queue", err);
    return ssl->queue ? HALLU_OK : err->code;
}

hallu_status ssl_moco_plan(hallu_ssl *ssl, hallu_error *err)
{
    size_t n = (size_t)ssl->max_batch, d = (size_t)ssl->dim, K = (size_t)ssl->cfg.queue_size;
    size_t r = ssl->has_hal ? 2 * n : n;
    hallu_status s = hallu_resnet_plan(ssl->key_encoder, ssl->be, (int)n, ssl->h, ssl->w, 1, err);
    if (s == HALLU_OK)
        s = hallu_mlp_plan(&ssl->key_projector, ssl->be, (int)n, 1, err);
    const size_t sizes[MOCO_NBUF] = {
        [MOCO_KNORM] = n * d, [MOCO_KNORMS] = n, [MOCO_KPOS] = r * d, [MOCO_QN] = r * d, [MOCO_QNORMS] = r,
        [MOCO_DQN] = r * d, [MOCO_DQ2] = r * d, [MOCO_DQ] = n * d, [MOCO_NEG] = r * K,
        [MOCO_DFEAT] = n * ssl->feat_dim, [MOCO_PENDING] = 2 * n * d,
        [MOCO_SHUFFLED] = ssl->cfg.bn_splits > 1 ? n * (size_t)ssl->h * ssl->w * 3 : 1,
        [MOCO_KSHUF] = ssl->cfg.bn_splits > 1 ? n * d : 1,
    };
    for (int i = 0; i < MOCO_NBUF && s == HALLU_OK; i++)
        if (!ssl_buffer(ssl, sizes[i], "moco work buffer", err))
            s = err->code;
    if (s == HALLU_OK)
        ssl->pending = ssl->buf[MOCO_PENDING];
    if (s == HALLU_OK && ssl->cfg.bn_splits > 1) {
        ssl->key_order = hallu_calloc(n * sizeof *ssl->key_order, "moco key order", err);
        if (!ssl->key_order)
            s = err->code;
    }
    return s;
}

/* Shuffle BN on one process: the keys' BN groups must hold other images than the
 * queries' groups, or the positive shares its batch statistics with the query and
 * InfoNCE can be solved from them (MoCo, section 3.3). Draws a permutation and
 * gathers view 2 in that order into MOCO_SHUFFLED. */
static const float *moco_shuffle_views(hallu_ssl *ssl, const float *v2, int n)
{
    hallu_rng_permutation(&ssl->rng, ssl->key_order, (uint32_t)n);
    const uint32_t *order = ssl->key_order;
    size_t image = (size_t)ssl->h * ssl->w * 3;
    for (int i = 0; i < n; i++)
        memcpy(ssl->buf[MOCO_SHUFFLED] + i * image, v2 + order[i] * image, image * sizeof(float));
    return ssl->buf[MOCO_SHUFFLED];
}

/* Normalised keys of view 2 into MOCO_KNORM (training-mode BN, no gradient). */
static hallu_status moco_keys(hallu_ssl *ssl, const hallu_nn_ctx *ctx, const float *v2, int n, hallu_error *err)
{
    int shuffle = ssl->cfg.bn_splits > 1 && ctx->training;
    hallu_nn_ctx kctx = { .be = ctx->be, .ps = &ssl->key_ps, .training = ctx->training,
                          .bn_groups = shuffle ? ssl->cfg.bn_splits : 1 };
    const float *kf = NULL;
    hallu_status s = hallu_resnet_forward(ssl->key_encoder, &kctx, 0, shuffle ? moco_shuffle_views(ssl, v2, n) : v2,
                                          n, &kf, err);
    if (s != HALLU_OK)
        return s;
    const float *kz = hallu_mlp_forward(&ssl->key_projector, &kctx, 0, kf, n);
    size_t d = (size_t)ssl->dim;
    float *keys = shuffle ? ssl->buf[MOCO_KSHUF] : ssl->buf[MOCO_KNORM];
    ctx->be->ops->l2norm_rows_forward(ctx->be, keys, ssl->buf[MOCO_KNORMS], kz, n, (int)d, 1e-12f);
    for (int i = 0; shuffle && i < n; i++)   /* back to the images' order */
        memcpy(ssl->buf[MOCO_KNORM] + ssl->key_order[i] * d, keys + i * d, d * sizeof(float));
    return HALLU_OK;
}

static void moco_keep_keys(hallu_ssl *ssl, int n)
{
    size_t nd = (size_t)n * ssl->dim;
    int dup = ssl->has_hal && ssl->cfg.enqueue_duplicates;
    memcpy(ssl->pending, ssl->buf[MOCO_KNORM], nd * sizeof(float));
    if (dup)
        memcpy(ssl->pending + nd, ssl->buf[MOCO_KNORM], nd * sizeof(float));
    ssl->pending_rows = dup ? 2 * n : n;
}

hallu_status ssl_moco_step(hallu_ssl *ssl, const hallu_nn_ctx *ctx, const float *v1, const float *v2,
                           int n, hallu_ssl_stats *st, hallu_error *err)
{
    hallu_backend *be = ctx->be;
    int d = ssl->dim;
    size_t nd = (size_t)n * d;
    hallu_status s = moco_keys(ssl, ctx, v2, n, err);
    hallu_nn_ctx qctx = *ctx;   /* queries: BN per group of consecutive images, keys' groups are shuffled */
    qctx.bn_groups = ssl->cfg.bn_splits;
    ctx = &qctx;
    const float *qf = NULL;
    if (s == HALLU_OK)
        s = hallu_resnet_forward(ssl->encoder, ctx, 0, v1, n, &qf, err);
    if (s != HALLU_OK)
        return s;
    const float *q = hallu_mlp_forward(&ssl->projector, ctx, 0, qf, n);
    st->collapse_std = ssl_collapse_std(ssl->buf[MOCO_QNORMS], q, n, d);

    const float *qall = q, *kpos = ssl->buf[MOCO_KNORM];
    int rows = n;
    if (ssl->has_hal) {
        st->ratio[0] = ssl_draw_ratio(ssl);
        qall = ssl_hal_forward(&ssl->hal, ctx, 0, q, ssl->buf[MOCO_KNORM], n, st->ratio[0]);
        memcpy(ssl->buf[MOCO_KPOS], kpos, nd * sizeof(float));
        memcpy(ssl->buf[MOCO_KPOS] + nd, kpos, nd * sizeof(float));
        kpos = ssl->buf[MOCO_KPOS];
        rows = 2 * n;
    }
    float *qn = ssl->buf[MOCO_QN], *qnorms = ssl->buf[MOCO_QNORMS];
    be->ops->l2norm_rows_forward(be, qn, qnorms, qall, rows, d, 1e-12f);
    st->loss = ssl_infonce(be, ctx->training ? ssl->buf[MOCO_DQN] : NULL, ssl->buf[MOCO_NEG], qn, kpos,
                           ssl->queue, rows, d, ssl->cfg.queue_size, ssl->cfg.temperature);
    if (!ctx->training)
        return HALLU_OK;
    moco_keep_keys(ssl, n);

    float *dq = ssl->buf[MOCO_DQ2];
    be->ops->l2norm_rows_backward(be, dq, ssl->buf[MOCO_DQN], qall, qnorms, rows, d, 1e-12f);
    if (ssl->has_hal) {
        memset(ssl->buf[MOCO_DQ], 0, nd * sizeof(float));
        ssl_hal_backward(&ssl->hal, ctx, 0, ssl->buf[MOCO_DQ], NULL, dq);
        dq = ssl->buf[MOCO_DQ];
    }
    hallu_mlp_backward(&ssl->projector, ctx, 0, ssl->buf[MOCO_DFEAT], dq);
    return hallu_resnet_backward(ssl->encoder, ctx, 0, ssl->buf[MOCO_DFEAT], err);
}

void ssl_moco_after_step(hallu_ssl *ssl, const hallu_nn_ctx *ctx)
{
    int d = ssl->dim, K = ssl->cfg.queue_size;
    for (int r = 0; r < ssl->pending_rows; r++) {
        memcpy(ssl->queue + (size_t)ssl->queue_ptr * d, ssl->pending + (size_t)r * d, (size_t)d * sizeof(float));
        ssl->queue_ptr = (ssl->queue_ptr + 1) % K;
    }
    ssl->pending_rows = 0;
    hallu_backend *be = ctx->be;
    float m = ssl->cfg.momentum;
    for (int i = 0; i < ssl->q_count; i++) {
        const hallu_tensor_info *q = &ctx->ps->trainable[ssl->q_first + i], *k = &ssl->key_ps.trainable[i];
        float *kw = ssl->key_ps.param + k->offset;
        be->ops->scale(be, kw, m, kw, k->numel);
        be->ops->axpy(be, kw, 1.0f - m, ctx->ps->param + q->offset, k->numel);
    }
}
