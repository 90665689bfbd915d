/* Linear probe: a linear head on frozen features, trained with SGD + momentum
 * and a per-epoch multi-step schedule (MoCo's / ContrastiveCrop's lincls).
 * Weight decay (0 by default) applies to the bias too, as in lincls's single
 * parameter group. The head, its batch, logits and labels and the test set live
 * on the backend: the host gathers and uploads each batch, and downloads two
 * hit counters per epoch (the loss comes back from the softmax op per step). */
#include "eval_internal.h"
#include "hallu/optim.h"
#include "hallu/rng.h"

#include <math.h>
#include <string.h>

void hallu_probe_config_default(hallu_probe_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->epochs = 100;
    cfg->lr = 10.0;
    cfg->momentum = 0.9;
    cfg->weight_decay = 0.0;
    cfg->milestones[0] = 60;
    cfg->milestones[1] = 80;
    cfg->num_milestones = 2;
    cfg->gamma = 0.1;
    cfg->batch_size = 512;
    cfg->num_workers = 2;
    cfg->seed = 0;
}

double hallu_probe_lr_at(const hallu_probe_config *cfg, int epoch)
{
    double lr = cfg->lr;
    for (int i = 0; i < cfg->num_milestones; i++)
        if (epoch >= cfg->milestones[i])
            lr *= cfg->gamma;
    return lr;
}

static hallu_status check_config(const hallu_probe_config *cfg, int num_classes, hallu_error *err)
{
    if (cfg->epochs <= 0 || cfg->batch_size <= 0 || cfg->forward_batch < 0 || !(cfg->lr > 0) || cfg->momentum < 0 ||
        cfg->weight_decay < 0 || !(cfg->gamma > 0) || num_classes <= 0)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                               "linear probe: epochs=%d batch=%d lr=%g momentum=%g wd=%g gamma=%g classes=%d",
                               cfg->epochs, cfg->batch_size, cfg->lr, cfg->momentum, cfg->weight_decay,
                               cfg->gamma, num_classes);
    if (cfg->num_milestones < 0 || cfg->num_milestones > HALLU_PROBE_MAX_MILESTONES)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "linear probe: %d milestones (max %d)",
                               cfg->num_milestones, HALLU_PROBE_MAX_MILESTONES);
    for (int i = 0; i < cfg->num_milestones; i++)
        if (cfg->milestones[i] <= 0 || (i > 0 && cfg->milestones[i] <= cfg->milestones[i - 1]))
            return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                                   "linear probe: milestones must be positive and increasing (milestone %d = %d)",
                                   i, cfg->milestones[i]);
    return HALLU_OK;
}

hallu_status eval_check_labels(const int32_t *labels, int64_t n, int num_classes, const char *what,
                               hallu_error *err)
{
    for (int64_t i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= num_classes)
            return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "%s: label %d of sample %lld outside [0, %d)",
                                   what, (int)labels[i], (long long)i, num_classes);
    return HALLU_OK;
}

/* ---- the head ---- */

typedef struct probe_head {
    hallu_params local, *ps;
    hallu_linear fc;
    hallu_nn_ctx ctx;
    hallu_backend *be;
    int dim, classes, max_rows;
    hallu_buffer x, logits, probs, dlogits;   /* [max_rows][dim | classes] */
    hallu_buffer labels;                      /* [max_rows] int32 */
    hallu_buffer hits;                        /* int64 [0] training hits, [1..2] test top-1 / top-5 */
    hallu_buffer test_x, test_labels;         /* the test set, uploaded once */
    float *host_x;                            /* [max_rows][dim]: a gathered batch (cached features) */
    int32_t *host_labels;                     /* [max_rows] */
    hallu_optimizer *opt;
    double loss_sum;          /* epoch accumulators */
    int64_t seen;
} probe_head;

static void head_free(probe_head *h)
{
    hallu_buffer *bufs[] = { &h->x, &h->logits, &h->probs, &h->dlogits, &h->labels, &h->hits, &h->test_x,
                             &h->test_labels };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        hallu_buffer_free(bufs[i]);
    hallu_free(h->host_x);
    hallu_free(h->host_labels);
    hallu_optimizer_free(h->opt);
    hallu_params_free(&h->local);
}

static hallu_status head_buffers(probe_head *h, const hallu_feature_set *test, hallu_error *err)
{
    hallu_backend *be = h->be;
    int64_t rows = h->max_rows;
    hallu_status s = hallu_buffer_alloc(&h->x, be, HALLU_DTYPE_F32, rows * h->dim, "probe batch", err);
    if (s == HALLU_OK)
        s = hallu_buffer_alloc(&h->logits, be, HALLU_DTYPE_F32, rows * h->classes, "probe logits", err);
    if (s == HALLU_OK)
        s = hallu_buffer_alloc(&h->probs, be, HALLU_DTYPE_F32, rows * h->classes, "probe probabilities", err);
    if (s == HALLU_OK)
        s = hallu_buffer_alloc(&h->dlogits, be, HALLU_DTYPE_F32, rows * h->classes, "probe logit gradient", err);
    if (s == HALLU_OK)
        s = hallu_buffer_alloc(&h->labels, be, HALLU_DTYPE_I32, rows, "probe labels", err);
    if (s == HALLU_OK)
        s = hallu_buffer_alloc(&h->hits, be, HALLU_DTYPE_I64, 3, "probe hit counters", err);
    if (s == HALLU_OK)
        s = hallu_buffer_alloc(&h->test_x, be, HALLU_DTYPE_F32, test->n * h->dim, "probe test features", err);
    if (s == HALLU_OK)
        s = hallu_buffer_alloc(&h->test_labels, be, HALLU_DTYPE_I32, test->n, "probe test labels", err);
    if (s == HALLU_OK)
        s = hallu_backend_upload(be, h->test_x.data, test->x, (size_t)test->n * h->dim * sizeof(float), err);
    if (s == HALLU_OK)
        s = hallu_backend_upload(be, h->test_labels.data, test->labels, (size_t)test->n * sizeof(int32_t), err);
    if (s == HALLU_OK && !(h->host_x = hallu_alloc((size_t)rows * h->dim * sizeof(float), "probe batch", err)))
        s = err->code;
    if (s == HALLU_OK && !(h->host_labels = hallu_alloc((size_t)rows * sizeof(int32_t), "probe labels", err)))
        s = err->code;
    return s;
}

/* Weights ~ N(0, 0.01), bias 0: MoCo's lincls initialisation. */
static hallu_status head_create(probe_head *h, hallu_backend *be, const hallu_feature_set *test, int classes,
                                const hallu_probe_config *cfg, hallu_params *out, hallu_error *err)
{
    int dim = test->dim, max_rows = cfg->batch_size;
    memset(h, 0, sizeof *h);
    hallu_params_init(&h->local);
    h->ps = out ? out : &h->local;
    h->be = be;
    h->dim = dim;
    h->classes = classes;
    h->max_rows = max_rows;
    hallu_status s = hallu_linear_init(&h->fc, h->ps, "fc", dim, classes, 1, err);
    if (s == HALLU_OK)
        s = hallu_params_alloc(h->ps, be, err);
    if (s != HALLU_OK)
        return s;
    s = hallu_params_stage(h->ps, err);
    if (s != HALLU_OK)
        return s;
    hallu_rng rng;
    hallu_rng_init(&rng, cfg->seed, 0x70726f6265ULL);
    for (int64_t i = 0; i < (int64_t)dim * classes; i++)
        h->ps->host_param[h->fc.weight + i] = (float)(0.01 * hallu_rng_normal(&rng));
    s = hallu_params_commit(h->ps, err);
    if (s != HALLU_OK)
        return s;
    h->ctx = (hallu_nn_ctx){ .be = be, .ps = h->ps, .training = 1 };
    s = head_buffers(h, test, err);
    if (s != HALLU_OK)
        return s;
    hallu_optim_config oc;
    hallu_optim_config_default(&oc, HALLU_OPTIM_SGD);
    oc.momentum = cfg->momentum;
    oc.weight_decay = cfg->weight_decay;
    oc.exclude_bias_norm = 0;
    return hallu_optimizer_create(&h->opt, &oc, h->ps, err);
}

/* One SGD step on h->x / h->labels (n rows, on the device); the backend's
 * failure, if any, is checked once at the end. */
static hallu_status head_step(probe_head *h, int n, double lr, hallu_error *err)
{
    hallu_backend *be = h->be;
    float *x = hallu_buffer_f32(&h->x), *logits = hallu_buffer_f32(&h->logits);
    float *probs = hallu_buffer_f32(&h->probs), *dlogits = hallu_buffer_f32(&h->dlogits);
    hallu_params_zero_grad(h->ps);
    hallu_linear_forward(&h->fc, &h->ctx, logits, x, n);
    float loss = be->ops->softmax_xent_forward(be, probs, logits, h->labels.data, n, h->classes);
    be->ops->softmax_xent_backward(be, dlogits, probs, h->labels.data, n, h->classes, 1.0f);
    hallu_linear_backward(&h->fc, &h->ctx, NULL, dlogits, x, n);
    hallu_optimizer_step(h->opt, h->ps, lr);
    be->ops->argmax_hits(be, h->hits.data, logits, h->labels.data, n, h->classes);
    h->loss_sum += (double)loss * n;
    h->seen += n;
    return hallu_backend_check(be, err);
}

/* Top-1 / top-5 of the head on the test set (on the device), in chunks of
 * max_rows; also takes the epoch's training hits off the device and zeroes
 * the counters. */
static hallu_status head_test(probe_head *h, int64_t n_test, int64_t *train_hits, double *top1, double *top5,
                              hallu_error *err)
{
    hallu_backend *be = h->be;
    float *logits = hallu_buffer_f32(&h->logits);
    int64_t *test_hits = (int64_t *)h->hits.data + 1;
    for (int64_t r0 = 0; r0 < n_test; r0 += h->max_rows) {
        int n = (int)(n_test - r0 < h->max_rows ? n_test - r0 : h->max_rows);
        hallu_linear_forward(&h->fc, &h->ctx, logits, hallu_buffer_f32(&h->test_x) + r0 * h->dim, n);
        be->ops->class_rank_hits(be, test_hits, logits, (const int32_t *)h->test_labels.data + r0, n, h->classes);
    }
    int64_t hits[3];
    static const int64_t zero[3] = { 0, 0, 0 };
    hallu_status s = hallu_backend_download(be, hits, h->hits.data, sizeof hits, err);
    if (s == HALLU_OK)
        s = hallu_backend_upload(be, h->hits.data, zero, sizeof zero, err);
    if (s != HALLU_OK)
        return s;
    *train_hits = hits[0];
    *top1 = 100.0 * hits[1] / n_test;
    *top5 = 100.0 * hits[2] / n_test;
    return HALLU_OK;
}

/* Evaluates, reports and resets the epoch accumulators. */
static hallu_status end_epoch(probe_head *h, const hallu_feature_set *test, const hallu_probe_config *cfg,
                              int epoch, double t0, hallu_probe_result *res, hallu_error *err)
{
    hallu_probe_epoch e = { .epoch = epoch, .lr = hallu_probe_lr_at(cfg, epoch) };
    int64_t correct = 0;
    hallu_status s = head_test(h, test->n, &correct, &e.test_top1, &e.test_top5, err);
    if (s != HALLU_OK)
        return hallu_error_prefix(err, s, "linear probe: epoch %d", epoch + 1);
    e.train_loss = h->seen ? h->loss_sum / h->seen : 0.0;
    e.train_top1 = h->seen ? 100.0 * correct / h->seen : 0.0;
    e.seconds = hallu_now() - t0;
    h->loss_sum = 0;
    h->seen = 0;
    if (epoch == 0 || e.test_top1 > res->best_top1) {
        res->best_top1 = e.test_top1;
        res->best_epoch = epoch;
    }
    res->epochs = epoch + 1;
    res->final_top1 = e.test_top1;
    res->final_top5 = e.test_top5;
    if (!isfinite(e.train_loss))
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                               "linear probe: training loss is %g at epoch %d (lr %g too high?)",
                               e.train_loss, epoch, e.lr);
    return cfg->on_epoch ? cfg->on_epoch(cfg->user, &e, err) : HALLU_OK;
}

static hallu_status check_sets(const hallu_feature_set *train, const hallu_feature_set *test, int num_classes,
                               hallu_error *err)
{
    if (!test || test->n <= 0 || (train && train->n <= 0))
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "linear probe: empty feature set");
    if (train && train->dim != test->dim)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "linear probe: feature dims differ (train %d, test %d)",
                               train->dim, test->dim);
    hallu_status s = eval_check_labels(test->labels, test->n, num_classes, "linear probe test set", err);
    if (s == HALLU_OK && train)
        s = eval_check_labels(train->labels, train->n, num_classes, "linear probe train set", err);
    return s;
}

hallu_status hallu_linear_probe_features(hallu_backend *be, const hallu_feature_set *train,
                                         const hallu_feature_set *test, int num_classes,
                                         const hallu_probe_config *cfg, hallu_probe_result *res,
                                         hallu_params *head, hallu_error *err)
{
    memset(res, 0, sizeof *res);
    hallu_status s = check_config(cfg, num_classes, err);
    if (s == HALLU_OK)
        s = check_sets(train, test, num_classes, err);
    if (s == HALLU_OK && train->n > UINT32_MAX)
        s = hallu_error_set(err, HALLU_ERR_INVALID_ARG, "linear probe: %lld training rows", (long long)train->n);
    if (s != HALLU_OK)
        return s;
    probe_head h;
    uint32_t *perm = NULL;
    s = head_create(&h, be, test, num_classes, cfg, head, err);
    if (s == HALLU_OK && !(perm = hallu_alloc((size_t)train->n * sizeof *perm, "probe permutation", err)))
        s = err->code;
    for (int epoch = 0; epoch < cfg->epochs && s == HALLU_OK; epoch++) {
        double t0 = hallu_now(), lr = hallu_probe_lr_at(cfg, epoch);
        hallu_rng rng;
        hallu_rng_init(&rng, cfg->seed, (uint64_t)epoch);
        hallu_rng_permutation(&rng, perm, (uint32_t)train->n);
        for (int64_t r0 = 0; r0 < train->n && s == HALLU_OK; r0 += cfg->batch_size) {
            int n = (int)(train->n - r0 < cfg->batch_size ? train->n - r0 : cfg->batch_size);
            for (int i = 0; i < n; i++) {
                memcpy(h.host_x + (size_t)i * h.dim, train->x + (int64_t)perm[r0 + i] * h.dim,
                       (size_t)h.dim * sizeof(float));
                h.host_labels[i] = train->labels[perm[r0 + i]];
            }
            s = hallu_backend_upload(be, h.x.data, h.host_x, (size_t)n * h.dim * sizeof(float), err);
            if (s == HALLU_OK)
                s = hallu_backend_upload(be, h.labels.data, h.host_labels, (size_t)n * sizeof(int32_t), err);
            if (s == HALLU_OK)
                s = head_step(&h, n, lr, err);
            if (s != HALLU_OK)
                s = hallu_error_prefix(err, s, "linear probe: epoch %d", epoch + 1);
        }
        if (s == HALLU_OK)
            s = end_epoch(&h, test, cfg, epoch, t0, res, err);
    }
    hallu_free(perm);
    head_free(&h);
    return s;
}

/* One epoch of augmented views through the frozen backbone, one head step per batch. */
static hallu_status image_epoch(probe_head *h, hallu_resnet *net, const hallu_nn_ctx *ctx, hallu_loader *ld,
                                eval_input *in, const hallu_probe_config *cfg, int epoch, int num_classes,
                                hallu_error *err)
{
    double lr = hallu_probe_lr_at(cfg, epoch);
    int fb = cfg->forward_batch > 0 ? cfg->forward_batch : cfg->batch_size;
    hallu_status s = hallu_loader_start_epoch(ld, (uint32_t)epoch, err);
    while (s == HALLU_OK) {
        const hallu_batch *b = NULL;
        if ((s = hallu_loader_next(ld, &b, err)) != HALLU_OK || !b)
            break;
        if ((s = eval_check_labels(b->labels, b->n, num_classes, "linear probe train batch", err)) != HALLU_OK)
            break;
        for (int off = 0; off < b->n && s == HALLU_OK; off += fb) {
            int m = b->n - off < fb ? b->n - off : fb;
            const float *f = NULL;
            s = eval_forward_batch(net, ctx, in, ld, b, off, m, &f, err);
            if (s == HALLU_OK)
                h->be->ops->copy(h->be, hallu_buffer_f32(&h->x) + (size_t)off * h->dim, f,
                                 (size_t)m * h->dim * sizeof(float));
        }
        if (s == HALLU_OK)
            s = hallu_backend_upload(h->be, h->labels.data, b->labels, (size_t)b->n * sizeof(int32_t), err);
        if (s == HALLU_OK)
            s = head_step(h, b->n, lr, err);
    }
    return s != HALLU_OK && s != HALLU_ERR_INVALID_ARG ? hallu_error_prefix(err, s, "linear probe: epoch %d", epoch + 1)
                                                       : s;
}

hallu_status hallu_linear_probe_images(hallu_resnet *net, const hallu_nn_ctx *ctx, const hallu_source *src,
                                       const hallu_view_pipeline *train_view, const hallu_feature_set *test,
                                       int num_classes, const hallu_probe_config *cfg,
                                       hallu_probe_result *res, hallu_params *head, hallu_error *err)
{
    memset(res, 0, sizeof *res);
    hallu_status s = check_config(cfg, num_classes, err);
    if (s == HALLU_OK)
        s = check_sets(NULL, test, num_classes, err);
    if (s == HALLU_OK && ctx->training)
        s = hallu_error_set(err, HALLU_ERR_INVALID_ARG, "linear probe: ctx->training=1 (the backbone is frozen)");
    if (s == HALLU_OK && test->dim != hallu_resnet_feature_dim(net))
        s = hallu_error_set(err, HALLU_ERR_INVALID_ARG, "linear probe: test features have dim %d, backbone %d",
                            test->dim, hallu_resnet_feature_dim(net));
    if (s != HALLU_OK)
        return s;
    hallu_loader_config lc;
    hallu_loader_config_default(&lc);
    lc.batch_size = cfg->batch_size;
    lc.num_workers = cfg->num_workers;
    lc.shuffle = 1;
    lc.drop_last = 0;
    lc.seed = cfg->seed;
    lc.n_views = 1;
    lc.views[0] = *train_view;
    hallu_loader_config_for_device(&lc, ctx->be);
    eval_input in = { 0 };
    hallu_loader *ld = NULL;
    probe_head h;
    memset(&h, 0, sizeof h);
    s = hallu_loader_create(&ld, src, &lc, err);
    if (s == HALLU_OK)
        s = head_create(&h, ctx->be, test, num_classes, cfg, head, err);
    for (int epoch = 0; epoch < cfg->epochs && s == HALLU_OK; epoch++) {
        double t0 = hallu_now();
        s = image_epoch(&h, net, ctx, ld, &in, cfg, epoch, num_classes, err);
        if (s == HALLU_OK)
            s = end_epoch(&h, test, cfg, epoch, t0, res, err);
    }
    hallu_loader_destroy(ld);
    eval_input_free(&in);
    head_free(&h);
    return s;
}
