/* Linear probe on cached features: the schedule, convergence on separable
 * clusters, the returned head, per-epoch reports and argument errors. */
#include "check.h"
#include "test_backend.h"
#include "hallu/eval.h"
#include "hallu/rng.h"

#include <string.h>

static void test_schedule(void)
{
    hallu_probe_config cfg;
    hallu_probe_config_default(&cfg);
    CHECK(cfg.epochs == 100 && cfg.batch_size == 512);
    CHECK_NEAR(hallu_probe_lr_at(&cfg, 0), 10.0, 1e-12);
    CHECK_NEAR(hallu_probe_lr_at(&cfg, 59), 10.0, 1e-12);
    CHECK_NEAR(hallu_probe_lr_at(&cfg, 60), 1.0, 1e-12);
    CHECK_NEAR(hallu_probe_lr_at(&cfg, 79), 1.0, 1e-12);
    CHECK_NEAR(hallu_probe_lr_at(&cfg, 80), 0.1, 1e-12);
    CHECK_NEAR(hallu_probe_lr_at(&cfg, 99), 0.1, 1e-12);
}

/* Class c's rows scatter around a random centre; test rows come from other draws. */
static void make_clusters(hallu_feature_set *fs, const float *centres, int classes, float noise, uint64_t seed)
{
    hallu_rng rng;
    hallu_rng_init(&rng, seed, 3);
    for (int64_t i = 0; i < fs->n; i++) {
        int c = (int)((i * 7) % classes);
        fs->labels[i] = c;
        for (int j = 0; j < fs->dim; j++)
            fs->x[i * fs->dim + j] = centres[c * fs->dim + j] + noise * (float)hallu_rng_normal(&rng);
    }
}

typedef struct epoch_log {
    int count;
    double lr[16], loss[16], top1[16];
} epoch_log;

static hallu_status record(void *user, const hallu_probe_epoch *e, hallu_error *err)
{
    epoch_log *log = user;
    if (e->epoch != log->count || log->count >= 16)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "unexpected epoch %d", e->epoch);
    log->lr[log->count] = e->lr;
    log->loss[log->count] = e->train_loss;
    log->top1[log->count] = e->test_top1;
    log->count++;
    return HALLU_OK;
}

/* Top-1 of a head given as parameters (read through a host staging copy),
 * computed independently in double. */
static double head_accuracy(hallu_params *head, const hallu_feature_set *fs, int classes)
{
    const hallu_tensor_info *w = hallu_params_find(head, "fc.weight", NULL);
    const hallu_tensor_info *b = hallu_params_find(head, "fc.bias", NULL);
    hallu_error err = { 0 };
    if (!w || !b || w->shape[0] != classes || w->shape[1] != fs->dim || hallu_params_stage(head, &err) != HALLU_OK)
        return -1;
    int64_t correct = 0;
    for (int64_t i = 0; i < fs->n; i++) {
        int best = 0;
        double best_v = -1e300;
        for (int c = 0; c < classes; c++) {
            double v = head->host_param[b->offset + c];
            for (int j = 0; j < fs->dim; j++)
                v += (double)head->host_param[w->offset + (int64_t)c * fs->dim + j] * fs->x[i * fs->dim + j];
            if (v > best_v) { best_v = v; best = c; }
        }
        correct += best == fs->labels[i];
    }
    hallu_params_unstage(head);
    return 100.0 * correct / fs->n;
}

static void test_separable(hallu_backend *be)
{
    enum { C = 6, D = 32 };
    hallu_error err = { 0 };
    float centres[C * D];
    hallu_rng rng;
    hallu_rng_init(&rng, 5, 9);
    for (int i = 0; i < C * D; i++)
        centres[i] = (float)hallu_rng_normal(&rng);
    hallu_feature_set tr, te;
    CHECK_OK(hallu_feature_set_alloc(&tr, 600, D, &err), &err);
    CHECK_OK(hallu_feature_set_alloc(&te, 150, D, &err), &err);
    make_clusters(&tr, centres, C, 0.3f, 1);
    make_clusters(&te, centres, C, 0.3f, 2);
    hallu_probe_config cfg;
    hallu_probe_config_default(&cfg);
    cfg.epochs = 12;
    cfg.milestones[0] = 6;
    cfg.milestones[1] = 9;
    cfg.batch_size = 128;   /* 600 rows: 4 full batches and a partial one */
    epoch_log log = { 0 };
    cfg.on_epoch = record;
    cfg.user = &log;
    hallu_probe_result res;
    hallu_params head;
    hallu_params_init(&head);
    CHECK_OK(hallu_linear_probe_features(be, &tr, &te, C, &cfg, &res, &head, &err), &err);
    CHECK(res.epochs == 12 && log.count == 12);
    CHECK_NEAR(res.final_top1, 100.0, 1e-9);
    CHECK_NEAR(res.final_top5, 100.0, 1e-9);
    CHECK(res.best_top1 >= res.final_top1 && res.best_epoch >= 0 && res.best_epoch < 12);
    CHECK_NEAR(log.lr[5], 10.0, 1e-12);
    CHECK_NEAR(log.lr[6], 1.0, 1e-12);
    CHECK_NEAR(log.lr[11], 0.1, 1e-12);
    CHECK(log.loss[11] < log.loss[0]);
    CHECK_NEAR(head_accuracy(&head, &te, C), res.final_top1, 1e-9);
    CHECK(head_accuracy(&head, &tr, C) > 99.0);
    hallu_params_free(&head);

    /* Same seed, same result; a head on shuffled labels cannot generalise. */
    hallu_probe_result again;
    cfg.on_epoch = NULL;
    CHECK_OK(hallu_linear_probe_features(be, &tr, &te, C, &cfg, &again, NULL, &err), &err);
    CHECK(again.final_top1 == res.final_top1 && again.best_top1 == res.best_top1);
    for (int64_t i = 0; i < tr.n; i++)
        tr.labels[i] = (int32_t)((i * 13 + i / 5) % C);
    CHECK_OK(hallu_linear_probe_features(be, &tr, &te, C, &cfg, &again, NULL, &err), &err);
    CHECK_MSG(again.final_top1 < 60.0, "random labels gave %.1f%%", again.final_top1);
    hallu_feature_set_free(&tr);
    hallu_feature_set_free(&te);
}

static hallu_status stop_early(void *user, const hallu_probe_epoch *e, hallu_error *err)
{
    return e->epoch == 1 ? hallu_error_set(err, HALLU_ERR_INTERRUPTED, "stop") : HALLU_OK;
}

/* 8 training and 4 test rows of 4 features, two classes. */
static void small_sets(hallu_feature_set *tr, hallu_feature_set *te, hallu_error *err)
{
    CHECK_OK(hallu_feature_set_alloc(tr, 8, 4, err), err);
    CHECK_OK(hallu_feature_set_alloc(te, 4, 4, err), err);
    for (int i = 0; i < 32; i++) tr->x[i] = (float)(i % 5);
    for (int i = 0; i < 16; i++) te->x[i] = (float)(i % 3);
    for (int i = 0; i < 8; i++) tr->labels[i] = i % 2;
    for (int i = 0; i < 4; i++) te->labels[i] = i % 2;
}

static void test_errors(hallu_backend *be)
{
    hallu_error err = { 0 };
    hallu_feature_set tr, te;
    small_sets(&tr, &te, &err);
    hallu_probe_config cfg;
    hallu_probe_config_default(&cfg);
    cfg.epochs = 3;
    cfg.milestones[0] = 2;
    cfg.num_milestones = 1;
    hallu_probe_result res;
    CHECK_OK(hallu_linear_probe_features(be, &tr, &te, 2, &cfg, &res, NULL, &err), &err);
    cfg.on_epoch = stop_early;
    CHECK(hallu_linear_probe_features(be, &tr, &te, 2, &cfg, &res, NULL, &err) == HALLU_ERR_INTERRUPTED);
    CHECK(res.epochs == 2);
    cfg.on_epoch = NULL;
    tr.labels[3] = 2;
    CHECK(hallu_linear_probe_features(be, &tr, &te, 2, &cfg, &res, NULL, &err) == HALLU_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "label 2 of sample 3") != NULL);
    tr.labels[3] = 1;
    cfg.milestones[0] = 0;
    CHECK(hallu_linear_probe_features(be, &tr, &te, 2, &cfg, &res, NULL, &err) == HALLU_ERR_INVALID_ARG);
    cfg.milestones[0] = 2;
    cfg.lr = -1;
    CHECK(hallu_linear_probe_features(be, &tr, &te, 2, &cfg, &res, NULL, &err) == HALLU_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "lr=-1") != NULL);
    cfg.lr = 10;
    te.dim = 3;
    CHECK(hallu_linear_probe_features(be, &tr, &te, 2, &cfg, &res, NULL, &err) == HALLU_ERR_INVALID_ARG);
    te.dim = 4;
    hallu_feature_set_free(&tr);
    hallu_feature_set_free(&te);
}

/* A failing op or allocation on the device is a named error, not a crash, and
 * the backend works again once the failure is cleared (cpu-isolated's hook). */
static void test_device_faults(hallu_backend *be)
{
    hallu_error err = { 0 };
    if (hallu_backend_inject_fault(be, 0, 0, &err) == HALLU_ERR_UNSUPPORTED)
        return;   /* only cpu-isolated has the hook */
    hallu_feature_set tr, te;
    small_sets(&tr, &te, &err);
    hallu_probe_config cfg;
    hallu_probe_config_default(&cfg);
    cfg.epochs = 2;
    cfg.num_milestones = 0;
    cfg.batch_size = 4;
    hallu_probe_result ref, res;
    CHECK_OK(hallu_linear_probe_features(be, &tr, &te, 2, &cfg, &ref, NULL, &err), &err);
    /* Ops from the head's init through both epochs' steps and tests. */
    for (int64_t nth = 1; nth <= 40; nth += 5) {
        CHECK_OK(hallu_backend_inject_fault(be, nth, 0, &err), &err);
        CHECK(hallu_linear_probe_features(be, &tr, &te, 2, &cfg, &res, NULL, &err) == HALLU_ERR_BACKEND);
        CHECK_MSG(strstr(err.msg, "injected fault") != NULL, "op %lld: %s", (long long)nth, err.msg);
        hallu_backend_clear_failure(be);
    }
    CHECK_OK(hallu_backend_inject_fault(be, 0, 5, &err), &err);
    CHECK(hallu_linear_probe_features(be, &tr, &te, 2, &cfg, &res, NULL, &err) == HALLU_ERR_OOM);
    CHECK_MSG(strstr(err.msg, "injected fault") != NULL, "%s", err.msg);
    CHECK_OK(hallu_backend_inject_fault(be, 0, 0, &err), &err);
    CHECK_OK(hallu_linear_probe_features(be, &tr, &te, 2, &cfg, &res, NULL, &err), &err);
    CHECK(res.final_top1 == ref.final_top1 && res.final_top5 == ref.final_top5);
    hallu_feature_set_free(&tr);
    hallu_feature_set_free(&te);
}

int main(void)
{
    hallu_error err = { 0 };
    hallu_backend *be = NULL;
    if (test_backend_create(&be, 2, &err) != HALLU_OK)
        return 1;
    test_schedule();
    test_separable(be);
    test_errors(be);
    test_device_faults(be);
    hallu_backend_free(be);
    return check_summary();
}
