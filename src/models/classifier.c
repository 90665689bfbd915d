#include "hallu/models.h"

#include <string.h>

hallu_status hallu_classifier_create(hallu_classifier *c, const hallu_resnet_config *cfg, int num_classes,
                                     hallu_params *ps, hallu_error *err)
{
    memset(c, 0, sizeof *c);
    if (num_classes <= 0)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "classifier: num_classes=%d", num_classes);
    c->num_classes = num_classes;
    hallu_status s = hallu_resnet_create(&c->net, cfg, ps, "", err);
    if (s == HALLU_OK)
        s = hallu_linear_init(&c->fc, ps, "fc", hallu_resnet_feature_dim(c->net), num_classes, 1, err);
    return s;
}

hallu_status hallu_classifier_init_weights(hallu_classifier *c, hallu_params *ps, uint64_t seed, hallu_error *err)
{
    hallu_status s = hallu_params_stage(ps, err);
    if (s != HALLU_OK)
        return s;
    s = hallu_resnet_init_weights(c->net, ps, seed, err);
    hallu_linear_init_default(&c->fc, ps, seed, 1);
    if (s != HALLU_OK) {
        hallu_params_unstage(ps);
        return s;
    }
    return hallu_params_commit(ps, err);
}

hallu_status hallu_classifier_plan(hallu_classifier *c, hallu_backend *be, int max_batch, int h, int w,
                                   hallu_error *err)
{
    hallu_status s = hallu_resnet_plan(c->net, be, max_batch, h, w, 1, err);
    if (s != HALLU_OK)
        return s;
    c->max_batch = max_batch;
    size_t logit_bytes = (size_t)max_batch * c->num_classes * sizeof(float);
    size_t feat_bytes = (size_t)max_batch * hallu_resnet_feature_dim(c->net) * sizeof(float);
    c->logits = be->ops->alloc(be, logit_bytes, "logits", err);
    c->probs = c->logits ? be->ops->alloc(be, logit_bytes, "probabilities", err) : NULL;
    c->dlogits = c->probs ? be->ops->alloc(be, logit_bytes, "logit gradient", err) : NULL;
    c->dfeatures = c->dlogits ? be->ops->alloc(be, feat_bytes, "feature gradient", err) : NULL;
    c->labels = c->dfeatures ? be->ops->alloc(be, (size_t)max_batch * sizeof(int32_t), "labels", err) : NULL;
    return c->labels ? HALLU_OK : err->code;
}

void hallu_classifier_free(hallu_classifier *c, hallu_backend *be)
{
    void *bufs[5] = { c->logits, c->probs, c->dlogits, c->dfeatures, c->labels };
    for (int i = 0; i < 5; i++)
        if (bufs[i])
            be->ops->release(be, bufs[i]);
    hallu_resnet_free(c->net, be);
    memset(c, 0, sizeof *c);
}

hallu_status hallu_classifier_step(hallu_classifier *c, const hallu_nn_ctx *ctx, const float *x,
                                   const int32_t *labels, int n, float *loss, hallu_error *err)
{
    for (int i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= c->num_classes)
            return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "classifier: label %d of sample %d outside [0, %d)",
                                   labels[i], i, c->num_classes);
    if (n > c->max_batch)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "classifier: batch %d over the planned %d", n,
                               c->max_batch);
    hallu_backend *be = ctx->be;
    hallu_status s = hallu_backend_upload(be, c->labels, labels, (size_t)n * sizeof(int32_t), err);
    const float *features = NULL;
    if (s == HALLU_OK)
        s = hallu_resnet_forward(c->net, ctx, 0, x, n, &features, err);
    if (s != HALLU_OK)
        return s;
    hallu_linear_forward(&c->fc, ctx, c->logits, features, n);
    *loss = be->ops->softmax_xent_forward(be, c->probs, c->logits, c->labels, n, c->num_classes);
    if (!ctx->training)
        return HALLU_OK;
    be->ops->softmax_xent_backward(be, c->dlogits, c->probs, c->labels, n, c->num_classes, 1.0f);
    hallu_linear_backward(&c->fc, ctx, c->dfeatures, c->dlogits, features, n);
    return hallu_resnet_backward(c->net, ctx, 0, c->dfeatures, err);
}
