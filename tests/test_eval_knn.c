/* kNN classifier: hand-checked votes, tie rules, separable clusters, and a
 * double-precision brute-force reference on random data. */
#include "check.h"
#include "test_backend.h"
#include "hallu/eval.h"
#include "hallu/rng.h"

#include <stdlib.h>
#include <string.h>

static void set_rows(hallu_feature_set *fs, const float *x, const int32_t *labels)
{
    memcpy(fs->x, x, (size_t)fs->n * fs->dim * sizeof(float));
    memcpy(fs->labels, labels, (size_t)fs->n * sizeof(int32_t));
}

/* One query near a class-0 point with two class-1 points a little further:
 * a sharp temperature follows the nearest point, a flat one the majority. */
static void test_hand_checked(hallu_backend *be)
{
    hallu_error err = { 0 };
    hallu_feature_set tr, te;
    CHECK_OK(hallu_feature_set_alloc(&tr, 4, 2, &err), &err);
    CHECK_OK(hallu_feature_set_alloc(&te, 1, 2, &err), &err);
    /* Unnormalised on purpose: the classifier must use cosines. */
    const float xt[] = { 2, 0, 0.8f, 0.6f, 0, 3, -1, 0 };
    const int32_t lt[] = { 0, 1, 1, 2 };
    const float xq[] = { 1, 0.1f };
    const int32_t lq[] = { 0 };
    set_rows(&tr, xt, lt);
    set_rows(&te, xq, lq);
    /* sims: 0.995037, 0.855733, 0.099504, -0.995037; k = 3 keeps the first three.
     * T = 1: class 0 scores e^0.995 = 2.705, class 1 e^0.856 + e^0.0995 = 3.458. */
    hallu_knn_config cfg;
    hallu_knn_config_default(&cfg);
    cfg.k = 3;
    cfg.temperature = 1.0f;
    hallu_knn_result res;
    int32_t pred = -1;
    CHECK_OK(hallu_knn_evaluate(be, &tr, &te, 3, &cfg, &pred, &res, &err), &err);
    CHECK(pred == 1);
    CHECK(res.correct_top1 == 0 && res.correct_top5 == 1 && res.n == 1);
    CHECK_NEAR(res.top5, 100.0, 1e-12);
    /* T = 0.1: e^9.95 = 20952 against e^8.557 + e^0.995 = 5203. */
    cfg.temperature = 0.1f;
    CHECK_OK(hallu_knn_evaluate(be, &tr, &te, 3, &cfg, &pred, &res, &err), &err);
    CHECK(pred == 0 && res.correct_top1 == 1);
    CHECK_NEAR(res.top1, 100.0, 1e-12);
    /* k = 1 at T = 1: only the nearest votes. */
    cfg.k = 1;
    cfg.temperature = 1.0f;
    CHECK_OK(hallu_knn_evaluate(be, &tr, &te, 3, &cfg, &pred, &res, &err), &err);
    CHECK(pred == 0);
    /* k = 4 lets the antipodal class 2 vote e^-0.995: it ranks third of three. */
    cfg.k = 4;
    te.labels[0] = 2;
    CHECK_OK(hallu_knn_evaluate(be, &tr, &te, 3, &cfg, &pred, &res, &err), &err);
    CHECK(pred == 1 && res.correct_top1 == 0 && res.correct_top5 == 1);
    hallu_feature_set_free(&tr);
    hallu_feature_set_free(&te);
}

/* Equal similarities go to the lower training index; equal scores to the lower class. */
static void test_ties(hallu_backend *be)
{
    hallu_error err = { 0 };
    hallu_feature_set tr, te;
    CHECK_OK(hallu_feature_set_alloc(&tr, 3, 2, &err), &err);
    CHECK_OK(hallu_feature_set_alloc(&te, 1, 2, &err), &err);
    const float xt[] = { 0, 1, 1, 0, 1, 0 };
    const int32_t lt[] = { 0, 2, 1 };
    const float xq[] = { 1, 0 };
    const int32_t lq[] = { 1 };
    set_rows(&tr, xt, lt);
    set_rows(&te, xq, lq);
    hallu_knn_config cfg;
    hallu_knn_config_default(&cfg);
    cfg.k = 1;
    hallu_knn_result res;
    int32_t pred = -1;
    CHECK_OK(hallu_knn_evaluate(be, &tr, &te, 3, &cfg, &pred, &res, &err), &err);
    CHECK(pred == 2);     /* training rows 1 and 2 tie; row 1 (class 2) wins */
    cfg.k = 2;            /* both vote with the same weight: class 1 < class 2 */
    CHECK_OK(hallu_knn_evaluate(be, &tr, &te, 3, &cfg, &pred, &res, &err), &err);
    CHECK(pred == 1 && res.correct_top1 == 1);
    hallu_feature_set_free(&tr);
    hallu_feature_set_free(&te);
}

static void make_clusters(hallu_feature_set *fs, const float *centres, int classes, float noise,
                          uint64_t seed)
{
    hallu_rng rng;
    hallu_rng_init(&rng, seed, 0);
    for (int64_t i = 0; i < fs->n; i++) {
        int c = (int)(i % classes);
        fs->labels[i] = c;
        for (int j = 0; j < fs->dim; j++)
            fs->x[i * fs->dim + j] = centres[c * fs->dim + j] + noise * (float)hallu_rng_normal(&rng);
    }
}

static void test_clusters(hallu_backend *be)
{
    enum { C = 10, D = 64 };
    hallu_error err = { 0 };
    float centres[C * D];
    hallu_rng rng;
    hallu_rng_init(&rng, 7, 1);
    for (int i = 0; i < C * D; i++)
        centres[i] = (float)hallu_rng_normal(&rng);
    hallu_feature_set tr, te;
    CHECK_OK(hallu_feature_set_alloc(&tr, 500, D, &err), &err);
    CHECK_OK(hallu_feature_set_alloc(&te, 230, D, &err), &err);
    make_clusters(&tr, centres, C, 0.1f, 11);
    make_clusters(&te, centres, C, 0.1f, 12);
    hallu_knn_config cfg;
    hallu_knn_config_default(&cfg);   /* k = 200 > 50 per class: the weights must decide */
    cfg.chunk_rows = 64;
    hallu_knn_result res;
    CHECK_OK(hallu_knn_evaluate(be, &tr, &te, C, &cfg, NULL, &res, &err), &err);
    CHECK(res.n == 230 && res.correct_top1 == 230 && res.correct_top5 == 230);
    CHECK_NEAR(res.top1, 100.0, 1e-12);
    hallu_feature_set_free(&tr);
    hallu_feature_set_free(&te);
}

/* ---- brute-force reference: double cosines, full ordering ---- */

static int32_t brute_force_one(const hallu_feature_set *tr, const double *q, int classes, int k, double t,
                               int *top5_hit, int32_t label)
{
    int64_t n = tr->n;
    double *sims = malloc((size_t)n * sizeof *sims);
    char *used = calloc((size_t)n, 1);
    double qn = 0;
    for (int j = 0; j < tr->dim; j++)
        qn += q[j] * q[j];
    for (int64_t i = 0; i < n; i++) {
        double dot = 0, nn = 0;
        for (int j = 0; j < tr->dim; j++) {
            dot += q[j] * tr->x[i * tr->dim + j];
            nn += (double)tr->x[i * tr->dim + j] * tr->x[i * tr->dim + j];
        }
        sims[i] = dot / sqrt(qn * nn);
    }
    double scores[64] = { 0 };
    for (int r = 0; r < k; r++) {       /* selection: k passes over all rows */
        int64_t arg = -1;
        for (int64_t i = 0; i < n; i++)
            if (!used[i] && (arg < 0 || sims[i] > sims[arg]))
                arg = i;
        used[arg] = 1;
        scores[tr->labels[arg]] += exp(sims[arg] / t);
    }
    int32_t best = 0;
    int rank_of_label = 0;
    for (int c = 0; c < classes; c++) {
        if (scores[c] > scores[best])
            best = c;
        if (c != label && (scores[c] > scores[label] || (scores[c] == scores[label] && c < label)))
            rank_of_label++;
    }
    *top5_hit = rank_of_label < 5;
    free(sims);
    free(used);
    return best;
}

static void test_brute_force(hallu_backend *be, int k, int chunk_rows)
{
    enum { C = 12, D = 24, NTR = 600, NTE = 150 };
    hallu_error err = { 0 };
    hallu_feature_set tr, te;
    CHECK_OK(hallu_feature_set_alloc(&tr, NTR, D, &err), &err);
    CHECK_OK(hallu_feature_set_alloc(&te, NTE, D, &err), &err);
    hallu_rng rng;
    hallu_rng_init(&rng, 2024, (uint64_t)k);
    for (int i = 0; i < NTR * D; i++) tr.x[i] = (float)hallu_rng_normal(&rng);
    for (int i = 0; i < NTE * D; i++) te.x[i] = (float)hallu_rng_normal(&rng);
    for (int i = 0; i < NTR; i++) tr.labels[i] = (int32_t)hallu_rng_below(&rng, C);
    for (int i = 0; i < NTE; i++) te.labels[i] = (int32_t)hallu_rng_below(&rng, C);
    hallu_knn_config cfg;
    hallu_knn_config_default(&cfg);
    cfg.k = k;
    cfg.chunk_rows = chunk_rows;
    int32_t pred[NTE];
    hallu_knn_result res;
    CHECK_OK(hallu_knn_evaluate(be, &tr, &te, C, &cfg, pred, &res, &err), &err);
    int mismatches = 0;
    int64_t c1 = 0, c5 = 0;
    for (int i = 0; i < NTE; i++) {
        double q[D];
        for (int j = 0; j < D; j++)
            q[j] = te.x[i * D + j];
        int hit5 = 0;
        int32_t ref = brute_force_one(&tr, q, C, k, 0.1, &hit5, te.labels[i]);
        mismatches += ref != pred[i];
        c1 += ref == te.labels[i];
        c5 += hit5;
    }
    CHECK_MSG(mismatches == 0, "k=%d: %d of %d predictions differ from the brute force", k, mismatches, NTE);
    CHECK(res.correct_top1 == c1);
    CHECK(res.correct_top5 == c5);
    /* Random labels: accuracy near chance, and top-5 well above top-1. */
    CHECK(res.correct_top5 > res.correct_top1);
    hallu_feature_set_free(&tr);
    hallu_feature_set_free(&te);
}

static void test_errors(hallu_backend *be)
{
    hallu_error err = { 0 };
    hallu_feature_set tr, te;
    CHECK_OK(hallu_feature_set_alloc(&tr, 4, 3, &err), &err);
    CHECK_OK(hallu_feature_set_alloc(&te, 2, 3, &err), &err);
    for (int i = 0; i < 12; i++) tr.x[i] = (float)i;
    for (int i = 0; i < 6; i++) te.x[i] = (float)i;
    for (int i = 0; i < 4; i++) tr.labels[i] = i % 2;
    te.labels[0] = 0;
    te.labels[1] = 5;
    hallu_knn_config cfg;
    hallu_knn_config_default(&cfg);
    hallu_knn_result res;
    CHECK(hallu_knn_evaluate(be, &tr, &te, 2, &cfg, NULL, &res, &err) == HALLU_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "test set: label 5") != NULL);
    te.labels[1] = 1;
    CHECK_OK(hallu_knn_evaluate(be, &tr, &te, 2, &cfg, NULL, &res, &err), &err);   /* k capped at 4 */
    cfg.temperature = 0;
    CHECK(hallu_knn_evaluate(be, &tr, &te, 2, &cfg, NULL, &res, &err) == HALLU_ERR_INVALID_ARG);
    cfg.temperature = 0.1f;
    te.dim = 2;
    CHECK(hallu_knn_evaluate(be, &tr, &te, 2, &cfg, NULL, &res, &err) == HALLU_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "dims differ") != NULL);
    te.dim = 3;
    hallu_feature_set_free(&tr);
    hallu_feature_set_free(&te);
    CHECK(hallu_feature_set_alloc(&te, 0, 3, &err) == HALLU_ERR_INVALID_ARG);
    CHECK(te.x == NULL);
}

/* A failing op or allocation on the device is a named error, not a crash, and
 * the backend works again once the failure is cleared (cpu-isolated's hook). */
static void test_device_faults(hallu_backend *be)
{
    hallu_error err = { 0 };
    if (hallu_backend_inject_fault(be, 0, 0, &err) == HALLU_ERR_UNSUPPORTED)
        return;   /* only cpu-isolated has the hook */
    enum { C = 3, D = 8 };
    hallu_feature_set tr, te;
    CHECK_OK(hallu_feature_set_alloc(&tr, 40, D, &err), &err);
    CHECK_OK(hallu_feature_set_alloc(&te, 10, D, &err), &err);
    hallu_rng rng;
    hallu_rng_init(&rng, 4, 4);
    for (int i = 0; i < 40 * D; i++) tr.x[i] = (float)hallu_rng_normal(&rng);
    for (int i = 0; i < 10 * D; i++) te.x[i] = (float)hallu_rng_normal(&rng);
    for (int i = 0; i < 40; i++) tr.labels[i] = i % C;
    for (int i = 0; i < 10; i++) te.labels[i] = i % C;
    hallu_knn_config cfg;
    hallu_knn_config_default(&cfg);
    cfg.k = 5;
    cfg.chunk_rows = 4;
    hallu_knn_result ref, res;
    CHECK_OK(hallu_knn_evaluate(be, &tr, &te, C, &cfg, NULL, &ref, &err), &err);
    /* Ops: 2 uploads, train norms, then per chunk upload, norms, scale, gemm, ... */
    for (int64_t nth = 1; nth <= 14; nth += 3) {
        CHECK_OK(hallu_backend_inject_fault(be, nth, 0, &err), &err);
        CHECK(hallu_knn_evaluate(be, &tr, &te, C, &cfg, NULL, &res, &err) == HALLU_ERR_BACKEND);
        CHECK_MSG(strncmp(err.msg, "knn: ", 5) == 0 && strstr(err.msg, "injected fault"), "op %lld: %s",
                  (long long)nth, err.msg);
        hallu_backend_clear_failure(be);
    }
    CHECK_OK(hallu_backend_inject_fault(be, 0, 3, &err), &err);
    CHECK(hallu_knn_evaluate(be, &tr, &te, C, &cfg, NULL, &res, &err) == HALLU_ERR_OOM);
    CHECK_MSG(strstr(err.msg, "knn train norms") != NULL, "%s", err.msg);
    CHECK_OK(hallu_backend_inject_fault(be, 0, 0, &err), &err);
    CHECK_OK(hallu_knn_evaluate(be, &tr, &te, C, &cfg, NULL, &res, &err), &err);
    CHECK(res.correct_top1 == ref.correct_top1 && res.correct_top5 == ref.correct_top5);
    hallu_feature_set_free(&tr);
    hallu_feature_set_free(&te);
}

int main(void)
{
    hallu_error err = { 0 };
    hallu_backend *be = NULL;
    if (test_backend_create(&be, 2, &err) != HALLU_OK)
        return 1;
    test_hand_checked(be);
    test_ties(be);
    test_clusters(be);
    test_brute_force(be, 200, 64);
    test_brute_force(be, 7, 1000);
    test_errors(be);
    test_device_faults(be);
    hallu_backend_free(be);
    return check_summary();
}
