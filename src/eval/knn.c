/* Weighted kNN classifier (InstDisc's monitor), on the device: one gemm per
 * chunk of test rows gives the cosine similarities to every training row, a
 * bounded min-heap per row keeps the k best (knn_top_k), and exp(sim / T) votes
 * per class (knn_vote). Feature sets are host data; they are uploaded here, and
 * only the class rankings come back. */
#include "eval_internal.h"

#include <string.h>

void hallu_knn_config_default(hallu_knn_config *cfg)
{
    cfg->k = 200;
    cfg->temperature = 0.1f;
    cfg->chunk_rows = 256;
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

typedef struct knn_work {
    hallu_backend *be;
    int64_t n_train, chunk;
    int dim, classes, k, nbest;
    hallu_buffer train_x;       /* [n_train][dim] */
    hallu_buffer train_labels;  /* [n_train] int32 */
    hallu_buffer train_inv;     /* [n_train] */
    hallu_buffer q, q_inv;      /* [chunk][dim] test rows, normalised in place; [chunk] */
    hallu_buffer sims;          /* [chunk][n_train] */
    hallu_buffer top_sim, top_idx;   /* [chunk][k] */
    hallu_buffer scores;        /* [chunk][classes] double */
    hallu_buffer best;          /* [chunk][nbest] int32 */
    int32_t *host_best;         /* its host copy */
} knn_work;

static void knn_work_free(knn_work *w)
{
    hallu_buffer *bufs[] = { &w->train_x, &w->train_labels, &w->train_inv, &w->q, &w->q_inv, &w->sims,
                             &w->top_sim, &w->top_idx, &w->scores, &w->best };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        hallu_buffer_free(bufs[i]);
    hallu_free(w->host_best);
}

static hallu_status knn_work_alloc(knn_work *w, const hallu_feature_set *train, hallu_error *err)
{
    hallu_backend *be = w->be;
    int64_t c = w->chunk;
    hallu_status s = hallu_buffer_alloc(&w->train_x, be, HALLU_DTYPE_F32, train->n * w->dim, "knn train features", err);
    if (s == HALLU_OK)
        s = hallu_buffer_alloc(&w->train_labels, be, HALLU_DTYPE_I32, train->n, "knn train labels", err);
    if (s == HALLU_OK)
        s = hallu_buffer_alloc(&w->train_inv, be, HALLU_DTYPE_F32, train->n, "knn train norms", err);
    if (s == HALLU_OK)
        s = hallu_buffer_alloc(&w->q, be, HALLU_DTYPE_F32, c * w->dim, "knn query chunk", err);
    if (s == HALLU_OK)
        s = hallu_buffer_alloc(&w->q_inv, be, HALLU_DTYPE_F32, c, "knn query norms", err);
    if (s == HALLU_OK)
        s = hallu_buffer_alloc(&w->sims, be, HALLU_DTYPE_F32, c * train->n, "knn similarity chunk", err);
    if (s == HALLU_OK)
        s = hallu_buffer_alloc(&w->top_sim, be, HALLU_DTYPE_F32, c * w->k, "knn neighbours", err);
    if (s == HALLU_OK)
        s = hallu_buffer_alloc(&w->top_idx, be, HALLU_DTYPE_I32, c * w->k, "knn neighbour indices", err);
    if (s == HALLU_OK)
        s = hallu_buffer_alloc(&w->scores, be, HALLU_DTYPE_F64, c * w->classes, "knn scores", err);
    if (s == HALLU_OK)
        s = hallu_buffer_alloc(&w->best, be, HALLU_DTYPE_I32, c * w->nbest, "knn class ranking", err);
    if (s == HALLU_OK && !(w->host_best = hallu_alloc((size_t)c * w->nbest * sizeof(int32_t), "knn class ranking", err)))
        s = err->code;
    return s;
}

/* Rows [r0, r0+rows) of the test set: similarities, neighbours, votes on the
 * device; the class rankings come back to count the hits. */
static hallu_status knn_chunk(knn_work *w, const hallu_feature_set *test, const hallu_knn_config *cfg, int64_t r0,
                              int rows, int32_t *pred, int64_t *c1, int64_t *c5, hallu_error *err)
{
    hallu_backend *be = w->be;
    const hallu_backend_ops *op = be->ops;
    float *q = hallu_buffer_f32(&w->q), *q_inv = hallu_buffer_f32(&w->q_inv), *sims = hallu_buffer_f32(&w->sims);
    hallu_status s = hallu_backend_upload(be, q, test->x + r0 * w->dim, (size_t)rows * w->dim * sizeof(float), err);
    if (s != HALLU_OK)
        return s;
    op->knn_inverse_norms(be, q_inv, q, rows, w->dim);
    op->knn_scale_rows(be, q, q, q_inv, rows, w->dim);
    op->gemm(be, 0, 1, rows, (int)w->n_train, w->dim, 1.0f, q, hallu_buffer_f32(&w->train_x), 0.0f, sims);
    op->knn_scale_cols(be, sims, hallu_buffer_f32(&w->train_inv), rows, w->n_train);
    op->knn_top_k(be, hallu_buffer_f32(&w->top_sim), w->top_idx.data, sims, rows, w->n_train, w->k);
    op->knn_vote(be, w->best.data, w->scores.data, hallu_buffer_f32(&w->top_sim), w->top_idx.data,
                 w->train_labels.data, rows, w->k, cfg->temperature, w->classes, w->nbest);
    s = hallu_backend_download(be, w->host_best, w->best.data, (size_t)rows * w->nbest * sizeof(int32_t), err);
    if (s != HALLU_OK)
        return s;
    for (int i = 0; i < rows; i++) {
        const int32_t *best = w->host_best + (size_t)i * w->nbest;
        int32_t label = test->labels[r0 + i];
        *c1 += best[0] == label;
        for (int r = 0; r < w->nbest; r++)
            *c5 += best[r] == label;
        if (pred)
            pred[r0 + i] = best[0];
    }
    return HALLU_OK;
}

hallu_status hallu_knn_evaluate(hallu_backend *be, const hallu_feature_set *train, const hallu_feature_set *test,
                                int num_classes, const hallu_knn_config *cfg, int32_t *predictions,
                                hallu_knn_result *res, hallu_error *err)
{
    hallu_status s = check_args(train, test, num_classes, cfg, err);
    if (s != HALLU_OK)
        return s;
    knn_work w = { .be = be, .n_train = train->n, .dim = train->dim, .classes = num_classes };
    w.k = cfg->k < train->n ? cfg->k : (int)train->n;
    w.nbest = num_classes < 5 ? num_classes : 5;
    int64_t chunk = cfg->chunk_rows < test->n ? cfg->chunk_rows : test->n;
    /* Bounds the similarity block (ImageNet-size train sets) to 256 MiB. */
    int64_t cap = ((int64_t)1 << 26) / train->n;
    w.chunk = chunk < cap ? chunk : cap > 0 ? cap : 1;
    s = knn_work_alloc(&w, train, err);
    if (s == HALLU_OK)
        s = hallu_backend_upload(be, w.train_x.data, train->x, (size_t)train->n * train->dim * sizeof(float), err);
    if (s == HALLU_OK)
        s = hallu_backend_upload(be, w.train_labels.data, train->labels, (size_t)train->n * sizeof(int32_t), err);
    if (s == HALLU_OK)
        be->ops->knn_inverse_norms(be, hallu_buffer_f32(&w.train_inv), hallu_buffer_f32(&w.train_x), train->n,
                                   train->dim);
    int64_t c1 = 0, c5 = 0;
    for (int64_t r0 = 0; r0 < test->n && s == HALLU_OK; r0 += w.chunk) {
        int rows = (int)(test->n - r0 < w.chunk ? test->n - r0 : w.chunk);
        s = knn_chunk(&w, test, cfg, r0, rows, predictions, &c1, &c5, err);
    }
    knn_work_free(&w);
    if (s != HALLU_OK)
        return hallu_error_prefix(err, s, "knn");
    *res = (hallu_knn_result){ .n = test->n, .correct_top1 = c1, .correct_top5 = c5,
                               .top1 = 100.0 * c1 / test->n, .top5 = 100.0 * c5 / test->n };
    return HALLU_OK;
}
