/* The kNN monitor: frozen backbone features of a labelled reference split and
 * a held-out split, InstDisc-style weighted vote (hallu_knn_evaluate). */
#include "train_internal.h"
#include "hallu/eval.h"

#include <stdio.h>
#include <string.h>

static hallu_status split_features(train_run *run, const char *spec, hallu_split split, int64_t subset, hallu_feature_set *fs,
                                   int *num_classes, hallu_error *err)
{
    hallu_dataset *ds = NULL;
    hallu_status s = hallu_dataset_open(&ds, spec, split, err);
    if (s == HALLU_OK && hallu_dataset_image_height(ds) <= 0)
        s = hallu_dataset_probe_sizes(ds, err);
    if (s != HALLU_OK) {
        hallu_dataset_close(ds);
        return s;
    }
    hallu_source src;
    hallu_source_from_dataset(&src, ds);
    train_subset sub;
    train_subset_init(&sub, &src, subset);
    *num_classes = hallu_dataset_num_classes(ds);
    hallu_extract_config ec;
    hallu_extract_config_default(&ec);
    ec.batch_size = run->cfg->batch_size / run->comm->size;   /* the model is planned for a rank's share */
    ec.num_workers = run->cfg->workers;
    ec.normalize = 1;
    s = hallu_eval_view(&ec.view, src.image_h, src.image_w, run->image_h, HALLU_CIFAR_MEAN, HALLU_CIFAR_STD, err);
    hallu_nn_ctx ctx = { .be = run->be, .ps = &run->ps, .training = 0 };
    if (s == HALLU_OK)
        s = hallu_extract_features(hallu_ssl_backbone(run->ssl), &ctx, &src, &ec, fs, err);
    hallu_dataset_close(ds);
    return s;
}

hallu_status train_knn(train_run *run, double *top1, double *top5, hallu_error *err)
{
    const hallu_train_config *c = run->cfg;
    hallu_feature_set train, test;
    memset(&train, 0, sizeof train);
    memset(&test, 0, sizeof test);
    int classes = 0, test_classes = 0;
    hallu_status s = split_features(run, c->knn_train_data ? c->knn_train_data : c->data, HALLU_SPLIT_TRAIN,
                                    c->knn_train_data ? 0 : c->train_subset, &train, &classes, err);
    if (s == HALLU_OK)
        s = split_features(run, c->knn_test_data ? c->knn_test_data : c->data, HALLU_SPLIT_TEST, 0, &test,
                           &test_classes, err);
    if (s == HALLU_OK && (classes <= 0 || classes != test_classes))
        s = hallu_error_set(err, HALLU_ERR_INVALID_ARG, "kNN monitor: reference set has %d classes, held-out set %d "
                            "(both must be labelled with the same classes)", classes, test_classes);
    hallu_knn_config kc;
    hallu_knn_config_default(&kc);
    kc.k = c->knn_k;
    kc.temperature = (float)c->knn_temperature;
    hallu_knn_result res;
    if (s == HALLU_OK)
        s = hallu_knn_evaluate(run->be, &train, &test, classes, &kc, NULL, &res, err);
    if (s == HALLU_OK) {
        *top1 = res.top1;
        *top5 = res.top5;
    }
    hallu_feature_set_free(&train);
    hallu_feature_set_free(&test);
    return s;
}

/* Opens and closes one kNN set; the error names its flag. */
static hallu_status open_close(const char *flag, const char *spec, hallu_split split, hallu_error *err)
{
    hallu_dataset *ds = NULL;
    hallu_status s = hallu_dataset_open(&ds, spec, split, err);
    hallu_dataset_close(ds);
    return s != HALLU_OK && flag ? hallu_error_prefix(err, s, "%s %s", flag, spec) : s;
}

hallu_status train_knn_check(train_run *run, hallu_error *err)
{
    const hallu_train_config *c = run->cfg;
    if (c->knn_train_data) {
        hallu_status s = open_close("--knn-train-data", c->knn_train_data, HALLU_SPLIT_TRAIN, err);
        if (s != HALLU_OK)
            return s;
    }
    if (c->knn_test_data)
        return open_close("--knn-test-data", c->knn_test_data, HALLU_SPLIT_TEST, err);
    hallu_status s = open_close(NULL, c->data, HALLU_SPLIT_TEST, err);
    if (s == HALLU_ERR_UNSUPPORTED) {   /* e.g. an ImageFolder of one split */
        run->knn_off = 1;
        hallu_error_clear(err);
        return HALLU_OK;
    }
    return s;
}
