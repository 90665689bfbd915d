/* Weighted kNN classifier (InstDisc's monitor): one sgemm per chunk of test rows
 * gives the cosine similarities to every training row, a bounded min-heap per
 * row keeps the k best, and exp(sim / T) votes per class. */
#include "eval_internal.h"

#include <oneapi/dnnl/dnnl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void hallu_knn_config_default(hallu_knn_config *cfg)
{
    cfg->k = 200;
    cfg->temperature = 0.1f;
    cfg->chunk_rows = 256;
}

typedef struct neighbour {
    float sim;
    int32_t index;
} neighbour;

/* "a ranks below b": lower similarity, or equal similarity and higher index,
 * so that ties resolve to the lower training index, as a stable sort would. */
static int ranks_below(neighbour a, neighbour b)
{
    return a.sim < b.sim || (a.sim == b.sim && a.index > b.index);
}

static void sift_down(neighbour *h, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && ranks_below(h[l], h[m])) m = l;
        if (r < n && ranks_below(h[r], h[m])) m = r;
        if (m == i)
            return;
        neighbour t = h[i]; h[i] = h[m]; h[m] = t;
        i = m;
    }
}

/* Min-heap of the k best of sims[0..n): the root is the worst kept neighbour. */
static void top_k(neighbour *heap, int k, const float *sims, int64_t n)
{
    for (int i = 0; i < k; i++)
        heap[i] = (neighbour){ sims[i], i };
    for (int i = k / 2 - 1; i >= 0; i--)
        sift_down(heap, k, i);
    for (int64_t j = k; j < n; j++) {
        neighbour c = { sims[j], (int32_t)j };
        if (ranks_below(heap[0], c)) {
            heap[0] = c;
            sift_down(heap, k, 0);
        }
    }
}

/* Votes of the k neighbours; writes the class ranking's first min(5, C) entries. */
static void vote(const neighbour *nb, int k, const int32_t *train_labels, float temperature,
                 double *scores, int num_classes, int *best, int nbest)
{
    memset(scores, 0, (size_t)num_classes * sizeof *scores);
    for (int i = 0; i < k; i++)
        scores[train_labels[nb[i].index]] += exp((double)nb[i].sim / temperature);
    for (int r = 0; r < nbest; r++) {
        int arg = -1;
        for (int c = 0; c < num_classes; c++) {
            int taken = 0;
            for (int q = 0; q < r && !taken; q++)
                taken = best[q] == c;
            if (!taken && (arg < 0 || scores[c] > scores[arg]))
                arg = c;
        }
        best[r] = arg;
    }
}

static hallu_status check_args(const hallu_feature_set *train, const hallu_feature_set *test,
                               int num_classes, const hallu_knn_config *cfg, hallu_error *err)
{
    if (!train || !test || !train->x || !test->x || !train->labels || !test->labels)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "knn: missing features or labels");
    if (train->n <= 0 || test->n <= 0 || train->n > INT32_MAX)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "knn: train n=%lld, test n=%lld",
                               (long long)train->n, (long long)test->n);
    if (train->dim != test->dim || train->dim <= 0)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "knn: feature dims differ (train %d, test %d)",
                               train->dim, test->dim);
    if (num_classes <= 0 || cfg->k <= 0 || cfg->chunk_rows <= 0 || !(cfg->temperature > 0))
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "knn: classes=%d k=%d chunk=%d temperature=%g",
                               num_classes, cfg->k, cfg->chunk_rows, (double)cfg->temperature);
    hallu_status s = eval_check_labels(train->labels, train->n, num_classes, "knn train set", err);
    return s == HALLU_OK ? eval_check_labels(test->labels, test->n, num_classes, "knn test set", err) : s;
}

static float inverse_norm(const float *x, int dim)
{
    double ss = 0;
    for (int j = 0; j < dim; j++)
        ss += (double)x[j] * x[j];
    return ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
}

typedef struct knn_work {
    const hallu_feature_set *train, *test;
    const hallu_knn_config *cfg;
    int num_classes, k, nbest;
    float *train_inv;      /* [n_train] */
    float *q;              /* [chunk][dim] normalised test rows */
    float *sims;           /* [chunk][n_train] */
    neighbour *heaps;      /* [chunk][k] */
    double *scores;        /* [chunk][classes] */
} knn_work;

static void knn_work_free(knn_work *w)
{
    hallu_free(w->train_inv);
    hallu_free(w->q);
    hallu_free(w->sims);
    hallu_free(w->heaps);
    hallu_free(w->scores);
}

/* Rows [r0, r0+rows) of the test set: similarities, neighbours, votes. */
static void knn_chunk(const knn_work *w, int64_t r0, int rows, int32_t *pred, int64_t *c1, int64_t *c5)
{
    int dim = w->train->dim;
    int64_t nt = w->train->n;
    for (int i = 0; i < rows; i++) {
        const float *x = w->test->x + (r0 + i) * dim;
        float inv = inverse_norm(x, dim);
        for (int j = 0; j < dim; j++)
            w->q[(size_t)i * dim + j] = x[j] * inv;
    }
    dnnl_sgemm('N', 'T', rows, nt, dim, 1.0f, w->q, dim, w->train->x, dim, 0.0f, w->sims, nt);
    int64_t h1 = 0, h5 = 0;
#pragma omp parallel for schedule(dynamic, 4) reduction(+ : h1, h5)
    for (int i = 0; i < rows; i++) {
        float *s = w->sims + (size_t)i * nt;
        for (int64_t j = 0; j < nt; j++)
            s[j] *= w->train_inv[j];
        neighbour *heap = w->heaps + (size_t)i * w->k;
        double *scores = w->scores + (size_t)i * w->num_classes;
        int best[5];
        top_k(heap, w->k, s, nt);
        vote(heap, w->k, w->train->labels, w->cfg->temperature, scores, w->num_classes, best, w->nbest);
        int32_t label = w->test->labels[r0 + i];
        h1 += best[0] == label;
        for (int r = 0; r < w->nbest; r++)
            h5 += best[r] == label;
        if (pred)
            pred[r0 + i] = best[0];
    }
    *c1 += h1;
    *c5 += h5;
}

hallu_status hallu_knn_evaluate(const hallu_feature_set *train, const hallu_feature_set *test,
                                int num_classes, const hallu_knn_config *cfg, int32_t *predictions,
                                hallu_knn_result *res, hallu_error *err)
{
    hallu_status s = check_args(train, test, num_classes, cfg, err);
    if (s != HALLU_OK)
        return s;
    knn_work w = { .train = train, .test = test, .cfg = cfg, .num_classes = num_classes };
    w.k = cfg->k < train->n ? cfg->k : (int)train->n;
    w.nbest = num_classes < 5 ? num_classes : 5;
    int64_t chunk = cfg->chunk_rows < test->n ? cfg->chunk_rows : test->n;
    /* Bounds the similarity block (ImageNet-size train sets) to 256 MiB. */
    int64_t cap = ((int64_t)1 << 26) / train->n;
    chunk = chunk < cap ? chunk : cap > 0 ? cap : 1;
    w.train_inv = hallu_alloc((size_t)train->n * sizeof(float), "knn train norms", err);
    w.q = w.train_inv ? hallu_alloc((size_t)chunk * train->dim * sizeof(float), "knn query chunk", err) : NULL;
    w.sims = w.q ? hallu_alloc((size_t)chunk * train->n * sizeof(float), "knn similarity chunk", err) : NULL;
    w.heaps = w.sims ? hallu_alloc((size_t)chunk * w.k * sizeof(neighbour), "knn neighbours", err) : NULL;
    w.scores = w.heaps ? hallu_alloc((size_t)chunk * num_classes * sizeof(double), "knn scores", err) : NULL;
    if (!w.scores) {
        knn_work_free(&w);
        return err->code;
    }
    for (int64_t j = 0; j < train->n; j++)
        w.train_inv[j] = inverse_norm(train->x + j * train->dim, train->dim);
    int64_t c1 = 0, c5 = 0;
    for (int64_t r0 = 0; r0 < test->n; r0 += chunk) {
        int rows = (int)(test->n - r0 < chunk ? test->n - r0 : chunk);
        knn_chunk(&w, r0, rows, predictions, &c1, &c5);
    }
    knn_work_free(&w);
    *res = (hallu_knn_result){ .n = test->n, .correct_top1 = c1, .correct_top5 = c5,
                               .top1 = 100.0 * c1 / test->n, .top5 = 100.0 * c5 / test->n };
    return HALLU_OK;
}
