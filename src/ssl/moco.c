/* MoCo v1/v2 (+ Hallucinator): query encoder + head, momentum key encoder,
 * a queue of K normalised keys, InfoNCE at temperature T. Ordering follows
 * MoCo's builder.py (see include/hallu/ssl.h). The queue and its pointer live
 * on the device; the enqueue op advances the pointer there. */
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
    s = hallu_buffer_alloc(&ssl->queue_buf, ssl->be, HALLU_DTYPE_F32, (int64_t)ssl->cfg.queue_size * ssl->dim,
                           "moco queue", err);
    if (s == HALLU_OK)
        s = hallu_buffer_alloc(&ssl->queue_ptr_buf, ssl->be, HALLU_DTYPE_I64, 1, "moco queue pointer", err);
    ssl->queue = hallu_buffer_f32(&ssl->queue_buf);
    return s;
}

/* Shuffle BN: across ranks (always, as the MoCo reference) or in --bn-splits
 * groups of one process; never with SyncBN, whose statistics span the batch. */
static int moco_shuffles(const hallu_ssl *ssl, const hallu_nn_ctx *ctx)
{
    return ctx->training && !ctx->sync_bn && (ssl->ranks > 1 || ssl->cfg.bn_splits > 1);
}

hallu_status ssl_moco_plan(hallu_ssl *ssl, hallu_error *err)
{
    size_t n = (size_t)ssl->max_batch, d = (size_t)ssl->dim, K = (size_t)ssl->cfg.queue_size;
    size_t r = ssl->has_hal ? 2 * n : n, all = n * (size_t)ssl->ranks, image = (size_t)ssl->h * ssl->w * 3;
    int shuffle = ssl->ranks > 1 || ssl->cfg.bn_splits > 1;
    hallu_status s = hallu_resnet_plan(ssl->key_encoder, ssl->be, (int)n, ssl->h, ssl->w, 1, err);
    if (s == HALLU_OK)
        s = hallu_mlp_plan(&ssl->key_projector, ssl->be, (int)n, 1, err);
    const size_t sizes[MOCO_NBUF] = {
        [MOCO_KNORM] = all * d, [MOCO_KNORMS] = n, [MOCO_KPOS] = r * d, [MOCO_QN] = r * d, [MOCO_QNORMS] = r,
        [MOCO_DQN] = r * d, [MOCO_DQ2] = r * d, [MOCO_DQ] = n * d, [MOCO_NEG] = r * K,
        [MOCO_DFEAT] = n * ssl->feat_dim, [MOCO_PENDING] = 2 * all * d,
        [MOCO_SHUFFLED] = shuffle ? n * image : 1, [MOCO_KSHUF] = shuffle ? all * d : 1,
        [MOCO_IMAGES_ALL] = shuffle && ssl->ranks > 1 ? all * image : 1,
    };
    for (int i = 0; i < MOCO_NBUF && s == HALLU_OK; i++)
        if (!ssl_buffer(ssl, sizes[i], "moco work buffer", err))
            s = err->code;
    if (s == HALLU_OK)
        ssl->pending = ssl->buf[MOCO_PENDING];
    if (s == HALLU_OK && shuffle) {
        ssl->key_order = hallu_calloc(all * sizeof *ssl->key_order, "moco key order", err);
        s = ssl->key_order ? hallu_buffer_alloc(&ssl->key_order_buf, ssl->be, HALLU_DTYPE_I32, (int64_t)all,
                                                "moco key order", err) : err->code;
    }
    return s;
}

/* Shuffle BN: the keys' BN groups must hold other images than the queries'
 * groups, or the positive shares its batch statistics with the query and
 * InfoNCE can be solved from them (MoCo, section 3.3). View 2 of every rank is
 * gathered (rank order: the global batch), rank 0 draws a permutation of it
 * (the method's RNG, which every rank advances alike) and broadcasts it, and
 * this rank takes rows rank n .. rank n + n of the shuffled batch into
 * MOCO_SHUFFLED. One process: the permutation of its own batch. */
static const float *moco_shuffle_views(hallu_ssl *ssl, hallu_backend *be, const float *v2, int n)
{
    int all = n * ssl->ranks;
    int64_t image = (int64_t)ssl->h * ssl->w * 3;
    const float *images = v2;
    hallu_error cerr;
    hallu_rng_permutation(&ssl->rng, ssl->key_order, (uint32_t)all);
    if (ssl->comm) {
        float *gathered = ssl->buf[MOCO_IMAGES_ALL];
        ssl_comm_check(ssl, ssl->comm->ops->allgather_f32(ssl->comm, be, gathered, v2, n * image, &cerr), &cerr);
        ssl_comm_check(ssl, ssl->comm->ops->host_broadcast(ssl->comm, ssl->key_order, (size_t)all * sizeof(uint32_t),
                                                           0, &cerr), &cerr);
        images = gathered;
    }
    /* A permutation of all <= 2^31 fits int32: the same bits as the uint32 indices. */
    be->ops->upload(be, ssl->key_order_buf.data, ssl->key_order, (size_t)all * sizeof(int32_t));
    const int32_t *mine = (const int32_t *)ssl->key_order_buf.data + (size_t)ssl->rank * n;
    be->ops->ssl_gather_rows(be, ssl->buf[MOCO_SHUFFLED], images, mine, n, image);
    return ssl->buf[MOCO_SHUFFLED];
}

/* Normalised keys of view 2 of every rank, in image order (rank order) into
 * MOCO_KNORM [ranks n][d] (training-mode BN, no gradient). */
static hallu_status moco_keys(hallu_ssl *ssl, const hallu_nn_ctx *ctx, const float *v2, int n, hallu_error *err)
{
    int shuffle = moco_shuffles(ssl, ctx);
    hallu_nn_ctx kctx = { .be = ctx->be, .ps = &ssl->key_ps, .training = ctx->training,
                          .bn_groups = shuffle ? ssl->cfg.bn_splits : 1, .comm = ctx->comm,
                          .sync_bn = ctx->sync_bn };
    const float *kf = NULL;
    const float *images = shuffle ? moco_shuffle_views(ssl, ctx->be, v2, n) : v2;
    hallu_status s = hallu_resnet_forward(ssl->key_encoder, &kctx, 0, images, n, &kf, err);
    if (s != HALLU_OK)
        return s;
    const float *kz = hallu_mlp_forward(&ssl->key_projector, &kctx, 0, kf, n);
    size_t d = (size_t)ssl->dim, own = (size_t)ssl->rank * n * d;
    float *keys = shuffle ? ssl->buf[MOCO_KSHUF] : ssl->buf[MOCO_KNORM];
    ctx->be->ops->l2norm_rows_forward(ctx->be, keys + own, ssl->buf[MOCO_KNORMS], kz, n, (int)d, 1e-12f);
    hallu_error cerr;
    if (ssl->comm)
        ssl_comm_check(ssl, ssl->comm->ops->allgather_f32(ssl->comm, ctx->be, keys, keys + own, (int64_t)n * d, &cerr),
                       &cerr);
    if (shuffle)   /* back to the images' order */
        ctx->be->ops->ssl_scatter_rows(ctx->be, ssl->buf[MOCO_KNORM], keys, (const int32_t *)ssl->key_order_buf.data,
                                       n * ssl->ranks, (int64_t)d);
    return HALLU_OK;
}

/* Every rank's keys go into the queue (the same rows on every rank). */
static void moco_keep_keys(hallu_ssl *ssl, hallu_backend *be, int n)
{
    size_t nd = (size_t)n * ssl->ranks * ssl->dim;
    int dup = ssl->has_hal && ssl->cfg.enqueue_duplicates;
    be->ops->copy(be, ssl->pending, ssl->buf[MOCO_KNORM], nd * sizeof(float));
    if (dup)
        be->ops->copy(be, ssl->pending + nd, ssl->buf[MOCO_KNORM], nd * sizeof(float));
    ssl->pending_rows = (dup ? 2 : 1) * n * ssl->ranks;
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
    be->ops->ssl_collapse_std(be, ssl_stat(ssl, SSL_STAT_COLLAPSE), ssl->buf[MOCO_QNORMS], q, n, d);

    const float *kpos = ssl->buf[MOCO_KNORM] + (size_t)ssl->rank * nd, *qall = q;   /* this rank's keys */
    int rows = n;
    if (ssl->has_hal) {
        st->ratio[0] = ssl_draw_ratio(ssl);
        qall = ssl_hal_forward(&ssl->hal, ctx, 0, q, kpos, n, st->ratio[0]);
        be->ops->copy(be, ssl->buf[MOCO_KPOS], kpos, nd * sizeof(float));
        be->ops->copy(be, ssl->buf[MOCO_KPOS] + nd, kpos, nd * sizeof(float));
        kpos = ssl->buf[MOCO_KPOS];
        rows = 2 * n;
    }
    float *qn = ssl->buf[MOCO_QN], *qnorms = ssl->buf[MOCO_QNORMS];
    be->ops->l2norm_rows_forward(be, qn, qnorms, qall, rows, d, 1e-12f);
    ssl_infonce(be, ssl_stat(ssl, SSL_STAT_LOSS), ctx->training ? ssl->buf[MOCO_DQN] : NULL, ssl->buf[MOCO_NEG], qn,
                kpos, ssl->queue, rows, d, ssl->cfg.queue_size, ssl->cfg.temperature);
    if (!ctx->training)
        return HALLU_OK;
    moco_keep_keys(ssl, be, n);

    float *dq = ssl->buf[MOCO_DQ2];
    be->ops->l2norm_rows_backward(be, dq, ssl->buf[MOCO_DQN], qall, qnorms, rows, d, 1e-12f);
    if (ssl->has_hal) {
        be->ops->fill(be, ssl->buf[MOCO_DQ], 0.0f, (int64_t)nd);
        ssl_hal_backward(&ssl->hal, ctx, 0, ssl->buf[MOCO_DQ], NULL, dq);
        dq = ssl->buf[MOCO_DQ];
    }
    hallu_mlp_backward(&ssl->projector, ctx, 0, ssl->buf[MOCO_DFEAT], dq);
    return hallu_resnet_backward(ssl->encoder, ctx, 0, ssl->buf[MOCO_DFEAT], err);
}

void ssl_moco_after_step(hallu_ssl *ssl, const hallu_nn_ctx *ctx)
{
    hallu_backend *be = ctx->be;
    if (ssl->pending_rows > 0)
        be->ops->ssl_enqueue_rows(be, ssl->queue, (int64_t *)ssl->queue_ptr_buf.data, ssl->pending,
                                  ssl->pending_rows, ssl->dim, ssl->cfg.queue_size);
    ssl->pending_rows = 0;
    float m = ssl->cfg.momentum;
    for (int i = 0; i < ssl->q_count; i++) {
        const hallu_tensor_info *q = &ctx->ps->trainable[ssl->q_first + i], *k = &ssl->key_ps.trainable[i];
        float *kw = ssl->key_ps.param + k->offset;
        be->ops->scale(be, kw, m, kw, k->numel);
        be->ops->axpy(be, kw, 1.0f - m, ctx->ps->param + q->offset, k->numel);
    }
}
