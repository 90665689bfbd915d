/* Feature extraction through a small frozen ResNet-18 from an in-memory source:
 * order and values independent of batch size and worker count, equal to a
 * direct forward; and the augmented linear probe end to end. */
#include "check.h"
#include "test_backend.h"
#include "hallu/eval.h"
#include "hallu/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Few distinct batch sizes (16 and 8): each new size costs conv primitive creation. */
enum { N = 16, S = 8, MAX_BATCH = 16 };

/* Image i: class i % 2; class 0 dark, class 1 bright, with per-pixel noise. */
static hallu_status toy_get(void *ctx, int64_t index, hallu_image *img, int32_t *label, hallu_error *err)
{
    img->h = S;
    img->w = S;
    if (img->capacity < S * S * 3)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "toy: buffer too small");
    hallu_rng rng;
    hallu_rng_init(&rng, 99, (uint64_t)index);
    int base = index % 2 ? 170 : 30;
    for (int k = 0; k < S * S * 3; k++)
        img->data[k] = (uint8_t)(base + (int)hallu_rng_below(&rng, 60));
    *label = (int32_t)(index % 2);
    return HALLU_OK;
}

static void toy_source(hallu_source *src)
{
    *src = (hallu_source){ .ctx = NULL, .get = toy_get, .size = N, .image_h = S, .image_w = S,
                           .max_image_bytes = S * S * 3 };
}

static double max_rel_diff(const float *a, const float *b, int64_t n)
{
    double worst = 0, scale = 1e-6;
    for (int64_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(a[i]));
    for (int64_t i = 0; i < n; i++)
        worst = fmax(worst, fabs((double)a[i] - b[i]) / scale);
    return worst;
}

static int stop_at_half(void *user, int64_t done, int64_t total)
{
    (void)user;
    return done * 2 >= total;
}

static void test_extract(hallu_resnet *net, const hallu_nn_ctx *ctx)
{
    hallu_error err = { 0 };
    hallu_source src;
    toy_source(&src);
    hallu_extract_config cfg;
    hallu_extract_config_default(&cfg);
    CHECK(cfg.batch_size == 256 && cfg.normalize == 0 && cfg.view.n_ops == 0);
    cfg.batch_size = MAX_BATCH;
    cfg.num_workers = 2;
    hallu_feature_set a, b, c;
    CHECK_OK(hallu_extract_features(net, ctx, &src, &cfg, &a, &err), &err);
    CHECK(a.n == N && a.dim == 512);
    cfg.batch_size = 8;
    cfg.num_workers = 1;
    CHECK_OK(hallu_extract_features(net, ctx, &src, &cfg, &b, &err), &err);
    CHECK(b.n == N && memcmp(a.labels, b.labels, N * sizeof(int32_t)) == 0);
    for (int i = 0; i < N; i++)
        CHECK(a.labels[i] == i % 2);
    CHECK_MSG(max_rel_diff(a.x, b.x, (int64_t)N * 512) < 1e-4, "batch 16 vs 8: %g",
              max_rel_diff(a.x, b.x, (int64_t)N * 512));

    /* Direct forward of images 0..7, normalised by hand. */
    float *x = malloc(8 * S * S * 3 * sizeof(float));
    uint8_t pix[S * S * 3];
    for (int i = 0; i < 8; i++) {
        hallu_image img = { .data = pix, .capacity = sizeof pix };
        int32_t label;
        CHECK_OK(toy_get(NULL, i, &img, &label, &err), &err);
        hallu_aug_normalize(x + i * S * S * 3, &img, HALLU_CIFAR_MEAN, HALLU_CIFAR_STD);
    }
    const float *f = NULL;
    float *host_f = malloc(8 * 512 * sizeof(float));
    hallu_buffer xd;
    CHECK_OK(hallu_buffer_alloc(&xd, ctx->be, HALLU_DTYPE_F32, 8 * S * S * 3, "test images", &err), &err);
    CHECK_OK(hallu_backend_upload(ctx->be, xd.data, x, 8 * S * S * 3 * sizeof(float), &err), &err);
    CHECK_OK(hallu_resnet_forward(net, ctx, 0, hallu_buffer_f32(&xd), 8, &f, &err), &err);
    if (f) {
        CHECK_OK(hallu_backend_download(ctx->be, host_f, f, 8 * 512 * sizeof(float), &err), &err);
        CHECK_MSG(max_rel_diff(a.x, host_f, 8 * 512) < 1e-4, "direct: %g", max_rel_diff(a.x, host_f, 8 * 512));
    }
    hallu_buffer_free(&xd);
    free(host_f);
    free(x);

    cfg.normalize = 1;
    CHECK_OK(hallu_extract_features(net, ctx, &src, &cfg, &c, &err), &err);
    for (int i = 0; i < N; i++) {
        double ss = 0;
        for (int j = 0; j < 512; j++)
            ss += (double)c.x[i * 512 + j] * c.x[i * 512 + j];
        CHECK_NEAR(ss, 1.0, 1e-5);
    }
    hallu_feature_set_free(&c);

    cfg.progress = stop_at_half;
    CHECK(hallu_extract_features(net, ctx, &src, &cfg, &c, &err) == HALLU_ERR_INTERRUPTED);
    CHECK(c.x == NULL);
    cfg.progress = NULL;
    hallu_nn_ctx train_ctx = *ctx;
    train_ctx.training = 1;
    CHECK(hallu_extract_features(net, &train_ctx, &src, &cfg, &c, &err) == HALLU_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "training") != NULL);
    hallu_source empty = src;
    empty.size = 0;
    CHECK(hallu_extract_features(net, ctx, &empty, &cfg, &c, &err) == HALLU_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "no images") != NULL);

    /* kNN on the extracted features: bright and dark are trivially apart. */
    hallu_knn_config kc;
    hallu_knn_config_default(&kc);
    kc.k = 5;
    hallu_knn_result kr;
    CHECK_OK(hallu_knn_evaluate(ctx->be, &a, &b, 2, &kc, NULL, &kr, &err), &err);
    CHECK_NEAR(kr.top1, 100.0, 1e-9);
    hallu_feature_set_free(&a);
    hallu_feature_set_free(&b);
}

/* A failing op or allocation during extraction is a named error, not a crash
 * (cpu-isolated's fault hook); extraction works again once it is cleared. */
static void test_extract_faults(hallu_resnet *net, const hallu_nn_ctx *ctx)
{
    hallu_error err = { 0 };
    if (hallu_backend_inject_fault(ctx->be, 0, 0, &err) == HALLU_ERR_UNSUPPORTED)
        return;
    hallu_source src;
    toy_source(&src);
    hallu_extract_config cfg;
    hallu_extract_config_default(&cfg);
    cfg.batch_size = MAX_BATCH;
    hallu_feature_set fs;
    CHECK_OK(hallu_backend_inject_fault(ctx->be, 5, 0, &err), &err);
    CHECK(hallu_extract_features(net, ctx, &src, &cfg, &fs, &err) == HALLU_ERR_BACKEND);
    CHECK_MSG(strstr(err.msg, "injected fault") != NULL, "%s", err.msg);
    CHECK(fs.x == NULL);
    hallu_backend_clear_failure(ctx->be);
    CHECK_OK(hallu_backend_inject_fault(ctx->be, 0, 1, &err), &err);
    CHECK(hallu_extract_features(net, ctx, &src, &cfg, &fs, &err) == HALLU_ERR_OOM);
    CHECK_MSG(strstr(err.msg, "evaluation images") != NULL, "%s", err.msg);
    CHECK_OK(hallu_backend_inject_fault(ctx->be, 0, 0, &err), &err);
    CHECK_OK(hallu_extract_features(net, ctx, &src, &cfg, &fs, &err), &err);
    CHECK(fs.n == N);
    hallu_feature_set_free(&fs);
}

static hallu_status count_epochs(void *user, const hallu_probe_epoch *e, hallu_error *err)
{
    (void)err;
    int *n = user;
    *n += e->epoch == *n && e->train_loss > 0 && e->seconds >= 0;
    return HALLU_OK;
}

static void test_probe_images(hallu_resnet *net, const hallu_nn_ctx *ctx)
{
    hallu_error err = { 0 };
    hallu_source src;
    toy_source(&src);
    hallu_extract_config ec;
    hallu_extract_config_default(&ec);
    ec.batch_size = MAX_BATCH;
    hallu_feature_set test;
    CHECK_OK(hallu_extract_features(net, ctx, &src, &ec, &test, &err), &err);
    hallu_view_pipeline train_view;
    CHECK_OK(hallu_probe_train_pipeline(&train_view, S, HALLU_CIFAR_MEAN, HALLU_CIFAR_STD, &err), &err);
    hallu_probe_config pc;
    hallu_probe_config_default(&pc);
    pc.epochs = 3;
    pc.milestones[0] = 2;
    pc.num_milestones = 1;
    pc.lr = 0.1;
    pc.batch_size = MAX_BATCH;       /* one batch per epoch, forwarded in two pieces */
    pc.forward_batch = MAX_BATCH / 2;
    int epochs_seen = 0;
    pc.on_epoch = count_epochs;
    pc.user = &epochs_seen;
    hallu_probe_result res;
    CHECK_OK(hallu_linear_probe_images(net, ctx, &src, &train_view, &test, 2, &pc, &res, NULL, &err), &err);
    CHECK(epochs_seen == 3 && res.epochs == 3);
    CHECK_MSG(res.best_top1 >= 90.0, "best %.1f%%", res.best_top1);
    pc.batch_size = MAX_BATCH;
    CHECK(hallu_linear_probe_images(net, ctx, &src, &train_view, &test, 1, &pc, &res, NULL, &err)
          == HALLU_ERR_INVALID_ARG);
    hallu_feature_set_free(&test);
}

int main(void)
{
    hallu_error err = { 0 };
    hallu_backend *be = NULL;
    hallu_params ps;
    hallu_params_init(&ps);
    hallu_resnet *net = NULL;
    hallu_resnet_config rc;
    CHECK_OK(hallu_resnet_parse_arch("resnet18", "cifar", &rc, &err), &err);
    CHECK_OK(test_backend_create(&be, 2, &err), &err);
    if (be && hallu_resnet_create(&net, &rc, &ps, "", &err) == HALLU_OK && hallu_params_alloc(&ps, be, &err) == HALLU_OK &&
        hallu_resnet_plan(net, be, MAX_BATCH, S, S, 1, &err) == HALLU_OK) {
        CHECK_OK(hallu_resnet_init_weights(net, &ps, 3, &err), &err);
        hallu_nn_ctx ctx = { .be = be, .ps = &ps, .training = 0 };
        test_extract(net, &ctx);
        test_extract_faults(net, &ctx);
        test_probe_images(net, &ctx);
    } else {
        CHECK_MSG(0, "setup: %s", err.msg);
    }
    hallu_resnet_free(net, be);
    hallu_params_free(&ps);
    hallu_backend_free(be);
    return check_summary();
}
