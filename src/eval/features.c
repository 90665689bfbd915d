/* Feature sets (host data) and feature extraction through a frozen backbone
 * on its backend: images go up, features come down. */
#include "eval_internal.h"

#include <math.h>
#include <string.h>

hallu_status hallu_feature_set_alloc(hallu_feature_set *fs, int64_t n, int dim, hallu_error *err)
{
    memset(fs, 0, sizeof *fs);
    if (n <= 0 || dim <= 0)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "feature set: n=%lld dim=%d", (long long)n, dim);
    fs->x = hallu_alloc((size_t)n * dim * sizeof(float), "features", err);
    fs->labels = fs->x ? hallu_alloc((size_t)n * sizeof(int32_t), "feature labels", err) : NULL;
    if (!fs->labels) {
        hallu_feature_set_free(fs);
        return err->code;
    }
    fs->n = n;
    fs->dim = dim;
    return HALLU_OK;
}

void hallu_feature_set_free(hallu_feature_set *fs)
{
    if (!fs)
        return;
    hallu_free(fs->x);
    hallu_free(fs->labels);
    memset(fs, 0, sizeof *fs);
}

void hallu_l2_normalize_rows(float *x, int64_t rows, int dim)
{
    for (int64_t i = 0; i < rows; i++) {
        float *r = x + i * dim;
        double ss = 0;
        for (int j = 0; j < dim; j++)
            ss += (double)r[j] * r[j];
        float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
        for (int j = 0; j < dim; j++)
            r[j] *= inv;
    }
}

void hallu_extract_config_default(hallu_extract_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->batch_size = 256;
    cfg->num_workers = 2;
    hallu_view_pipeline_init(&cfg->view, HALLU_CIFAR_MEAN, HALLU_CIFAR_STD);
}

hallu_status hallu_eval_view(hallu_view_pipeline *pl, int img_h, int img_w, int size,
                             const float mean[3], const float std[3], hallu_error *err)
{
    if (size <= 0)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "eval view: size=%d", size);
    if (img_h == size && img_w == size)
        return hallu_test_pipeline(pl, 0, 0, mean, std, err);
    return hallu_test_pipeline(pl, size * 8 / 7, size, mean, std, err);
}

void eval_input_free(eval_input *in)
{
    hallu_buffer_free(&in->img);
    hallu_buffer_free(&in->bytes);
}

/* buf holds at least count elements of dtype (grown, contents dropped). */
static hallu_status ensure(hallu_buffer *buf, hallu_backend *be, hallu_dtype dtype, int64_t count, const char *what,
                           hallu_error *err)
{
    if (buf->data && buf->count >= count)
        return HALLU_OK;
    hallu_buffer_free(buf);
    return hallu_buffer_alloc(buf, be, dtype, count, what, err);
}

hallu_status eval_forward_batch(hallu_resnet *net, const hallu_nn_ctx *ctx, eval_input *in, const hallu_loader *ld,
                                const hallu_batch *b, int off, int n, const float **features, hallu_error *err)
{
    int64_t count = (int64_t)n * b->h * b->w * 3;
    hallu_status s = ensure(&in->img, ctx->be, HALLU_DTYPE_F32, count, "evaluation images", err);
    if (s == HALLU_OK && b->views_u8[0])
        s = ensure(&in->bytes, ctx->be, HALLU_DTYPE_U8, count, "evaluation images (bytes)", err);
    if (s == HALLU_OK)
        s = hallu_loader_upload_view(ld, ctx->be, b, 0, off, n, hallu_buffer_f32(&in->img), in->bytes.data, err);
    if (s == HALLU_OK)
        s = hallu_resnet_forward(net, ctx, 0, hallu_buffer_f32(&in->img), n, features, err);
    hallu_backend_upload_wait(ctx->be);   /* b's bytes are read: the loader may have them back */
    return s;
}

/* Runs one epoch of ld through the backbone and stores row indices[i] of out;
 * host_f ([batch][dim]) takes each batch's features off the device. */
static hallu_status extract_epoch(hallu_resnet *net, const hallu_nn_ctx *ctx, hallu_loader *ld,
                                  const hallu_extract_config *cfg, eval_input *in, float *host_f,
                                  hallu_feature_set *out, hallu_error *err)
{
    hallu_status s = hallu_loader_start_epoch(ld, 0, err);
    int64_t done = 0;
    int dim = out->dim;
    while (s == HALLU_OK) {
        const hallu_batch *b = NULL;
        if ((s = hallu_loader_next(ld, &b, err)) != HALLU_OK || !b)
            break;
        const float *f = NULL;
        if ((s = eval_forward_batch(net, ctx, in, ld, b, 0, b->n, &f, err)) != HALLU_OK)
            break;
        if ((s = hallu_backend_download(ctx->be, host_f, f, (size_t)b->n * dim * sizeof(float), err)) != HALLU_OK)
            break;
        for (int i = 0; i < b->n; i++) {
            int64_t row = b->indices[i];
            memcpy(out->x + row * dim, host_f + (size_t)i * dim, (size_t)dim * sizeof(float));
            out->labels[row] = b->labels[i];
        }
        done += b->n;
        if (cfg->progress && cfg->progress(cfg->progress_user, done, out->n))
            s = hallu_error_set(err, HALLU_ERR_INTERRUPTED, "extract features: stopped after %lld of %lld images",
                                (long long)done, (long long)out->n);
    }
    if (s == HALLU_OK && done != out->n)
        s = hallu_error_set(err, HALLU_ERR_IO, "extract features: loader delivered %lld of %lld images",
                            (long long)done, (long long)out->n);
    return s;
}

hallu_status hallu_extract_features(hallu_resnet *net, const hallu_nn_ctx *ctx, const hallu_source *src,
                                    const hallu_extract_config *cfg, hallu_feature_set *out,
                                    hallu_error *err)
{
    memset(out, 0, sizeof *out);
    if (ctx->training)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                               "extract features: ctx->training=1 (a frozen backbone runs in eval mode)");
    if (src->size <= 0)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "extract features: the source has no images");
    hallu_loader_config lc;
    hallu_loader_config_default(&lc);
    lc.batch_size = cfg->batch_size;
    lc.num_workers = cfg->num_workers;
    lc.shuffle = 0;
    lc.drop_last = 0;
    lc.n_views = 1;
    lc.views[0] = cfg->view;
    hallu_loader_config_for_device(&lc, ctx->be);
    eval_input in = { 0 };
    hallu_loader *ld = NULL;
    hallu_status s = hallu_loader_create(&ld, src, &lc, err);
    if (s == HALLU_OK)
        s = hallu_feature_set_alloc(out, src->size, hallu_resnet_feature_dim(net), err);
    float *host_f = NULL;
    if (s == HALLU_OK &&
        !(host_f = hallu_alloc((size_t)cfg->batch_size * out->dim * sizeof(float), "feature batch", err)))
        s = err->code;
    if (s == HALLU_OK)
        s = extract_epoch(net, ctx, ld, cfg, &in, host_f, out, err);
    hallu_loader_destroy(ld);
    eval_input_free(&in);
    hallu_free(host_f);
    if (s == HALLU_OK && cfg->normalize)
        hallu_l2_normalize_rows(out->x, out->n, out->dim);
    if (s != HALLU_OK)
        hallu_feature_set_free(out);
    return s;
}
