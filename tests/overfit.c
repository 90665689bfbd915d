/* A model can overfit: ResNet-18 (CIFAR stem) on one fixed batch of 64
 * synthetic images with random labels must drive the cross-entropy below 0.05
 * within 200 SGD steps. Catches any backward/optimizer bug that stalls learning.
 * Runs on the test backend (HALLU_TEST_DEVICE). */
#include "check.h"
#include "test_backend.h"
#include "hallu/data.h"
#include "hallu/models.h"
#include "hallu/optim.h"
#include "hallu/rng.h"

#include <stdlib.h>

enum { BATCH = 64, SIZE = 32, MAX_STEPS = 200 };

static void load_batch(float *x, int32_t *labels)
{
    hallu_error err;
    hallu_dataset *ds = NULL;
    CHECK_OK(hallu_dataset_open(&ds, "synthetic:512", HALLU_SPLIT_TRAIN, &err), &err);
    uint8_t pix[SIZE * SIZE * 3];
    hallu_image img = { .data = pix, .capacity = sizeof pix };
    hallu_rng rng;
    hallu_rng_init(&rng, 99, 0);
    for (int i = 0; i < BATCH && ds; i++) {
        int32_t ignored;
        CHECK_OK(hallu_dataset_get(ds, i, &img, &ignored, &err), &err);
        for (int p = 0; p < SIZE * SIZE * 3; p++)
            x[(size_t)i * SIZE * SIZE * 3 + p] = (pix[p] / 255.0f - 0.5f) / 0.25f;
        labels[i] = (int32_t)hallu_rng_below(&rng, 10);   /* random labels: memorisation only */
    }
    hallu_dataset_close(ds);
}

int main(void)
{
    hallu_error err;
    hallu_backend *be = NULL;
    CHECK_OK(test_backend_create(&be, 2, &err), &err);
    hallu_resnet_config cfg;
    CHECK_OK(hallu_resnet_parse_arch("resnet18", "cifar", &cfg, &err), &err);
    hallu_params ps;
    hallu_params_init(&ps);
    hallu_classifier clf;
    CHECK_OK(hallu_classifier_create(&clf, &cfg, 10, &ps, &err), &err);
    CHECK_OK(hallu_params_alloc(&ps, be, &err), &err);
    if (!be || !ps.param)
        return check_summary();
    CHECK_OK(hallu_classifier_init_weights(&clf, &ps, 1, &err), &err);
    CHECK_OK(hallu_classifier_plan(&clf, be, BATCH, SIZE, SIZE, &err), &err);
    hallu_optim_config oc;
    hallu_optim_config_default(&oc, HALLU_OPTIM_SGD);
    oc.momentum = 0.9;
    hallu_optimizer *opt = NULL;
    CHECK_OK(hallu_optimizer_create(&opt, &oc, &ps, &err), &err);

    float *x = malloc(sizeof(float) * BATCH * SIZE * SIZE * 3);
    int32_t labels[BATCH];
    load_batch(x, labels);
    hallu_buffer xd = { 0 };
    CHECK_OK(hallu_buffer_alloc(&xd, be, HALLU_DTYPE_F32, (int64_t)BATCH * SIZE * SIZE * 3, "batch", &err), &err);
    CHECK_OK(hallu_backend_upload(be, xd.data, x, xd.nbytes, &err), &err);
    hallu_nn_ctx ctx = { .be = be, .ps = &ps, .training = 1 };
    float loss = 1e9f, first = 0;
    int step = 0;
    for (; step < MAX_STEPS && loss >= 0.05f; step++) {
        hallu_params_zero_grad(&ps);
        CHECK_OK(hallu_classifier_step(&clf, &ctx, hallu_buffer_f32(&xd), labels, BATCH, &loss, &err), &err);
        if (step == 0)
            first = loss;
        hallu_optimizer_step(opt, &ps, 0.05);
        if (step % 10 == 0)
            printf("step %3d loss %.4f\n", step, loss);
    }
    printf("cross-entropy %.4f after %d steps (started at %.4f)\n", loss, step, first);
    CHECK_MSG(loss < 0.05f, "cross-entropy %.4f after %d steps, expected < 0.05", loss, step);
    CHECK(first > 1.5f);   /* random labels start near ln(10) */

    CHECK_OK(hallu_backend_check(be, &err), &err);
    free(x);
    hallu_buffer_free(&xd);
    hallu_optimizer_free(opt);
    hallu_classifier_free(&clf, be);
    hallu_params_free(&ps);
    hallu_backend_free(be);
    return check_summary();
}
