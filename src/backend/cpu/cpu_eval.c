/* Evaluation ops: the kNN classifier's norms, neighbour heaps and votes, and the
 * linear probe's hit counters. Moved from src/eval/ with the same arithmetic
 * (double sums, the heap's order of votes), so results are what they were. */
#include "backend/cpu/cpu_internal.h"

#include <math.h>
#include <string.h>

/* Rows of this many elements and more get a thread each. */
enum { EVAL_GRAIN = 1 << 14 };

static float inverse_norm(const float *x, int dim)
{
    double ss = 0;
    for (int j = 0; j < dim; j++)
        ss += (double)x[j] * x[j];
    return ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
}

void cpu_knn_inverse_norms(hallu_backend *be, float *inv, const float *x, int64_t rows, int dim)
{
    int nt = cpu_threads_for(be, rows * dim, EVAL_GRAIN);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t r = 0; r < rows; r++)
        inv[r] = inverse_norm(x + r * dim, dim);
}

void cpu_knn_scale_rows(hallu_backend *be, float *y, const float *x, const float *inv, int64_t rows, int dim)
{
    int nt = cpu_threads_for(be, rows * dim, EVAL_GRAIN);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t r = 0; r < rows; r++)
        for (int j = 0; j < dim; j++)
            y[r * dim + j] = x[r * dim + j] * inv[r];
}

void cpu_knn_scale_cols(hallu_backend *be, float *s, const float *inv, int rows, int64_t cols)
{
    int nt = cpu_threads_for(be, (int64_t)rows * cols, EVAL_GRAIN);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int r = 0; r < rows; r++) {
        float *row = s + (int64_t)r * cols;
        for (int64_t j = 0; j < cols; j++)
            row[j] *= inv[j];
    }
}

/* "a ranks below b": lower similarity, or equal similarity and higher index,
 * so that ties resolve to the lower training index, as a stable sort would. */
static int ranks_below(float sa, int32_t ia, float sb, int32_t ib)
{
    return sa < sb || (sa == sb && ia > ib);
}

static void sift_down(float *hs, int32_t *hi, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && ranks_below(hs[l], hi[l], hs[m], hi[m])) m = l;
        if (r < n && ranks_below(hs[r], hi[r], hs[m], hi[m])) m = r;
        if (m == i)
            return;
        float ts = hs[i]; hs[i] = hs[m]; hs[m] = ts;
        int32_t ti = hi[i]; hi[i] = hi[m]; hi[m] = ti;
        i = m;
    }
}

/* Min-heap of the k best of sims[0..n): the root is the worst kept neighbour. */
static void top_k(float *hs, int32_t *hi, int k, const float *sims, int64_t n)
{
    for (int i = 0; i < k; i++) {
        hs[i] = sims[i];
        hi[i] = i;
    }
    for (int i = k / 2 - 1; i >= 0; i--)
        sift_down(hs, hi, k, i);
    for (int64_t j = k; j < n; j++) {
        if (ranks_below(hs[0], hi[0], sims[j], (int32_t)j)) {
            hs[0] = sims[j];
            hi[0] = (int32_t)j;
            sift_down(hs, hi, k, 0);
        }
    }
}

void cpu_knn_top_k(hallu_backend *be, float *top_sim, int32_t *top_idx, const float *sims, int rows, int64_t n,
                   int k)
{
    int nt = cpu_threads_for(be, (int64_t)rows * n, EVAL_GRAIN);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 4)
    for (int r = 0; r < rows; r++)
        top_k(top_sim + (int64_t)r * k, top_idx + (int64_t)r * k, k, sims + (int64_t)r * n, n);
}

/* Votes of the k neighbours; writes the class ranking's first nbest entries. */
static void vote(const float *hs, const int32_t *hi, int k, const int32_t *train_labels, float temperature,
                 double *scores, int num_classes, int32_t *best, int nbest)
{
    memset(scores, 0, (size_t)num_classes * sizeof *scores);
    for (int i = 0; i < k; i++)
        scores[train_labels[hi[i]]] += exp((double)hs[i] / temperature);
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

void cpu_knn_vote(hallu_backend *be, int32_t *best, double *scores, const float *top_sim, const int32_t *top_idx,
                  const int32_t *train_labels, int rows, int k, float temperature, int classes, int nbest)
{
    int nt = cpu_threads_for(be, (int64_t)rows * (k + (int64_t)classes * nbest), EVAL_GRAIN);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int r = 0; r < rows; r++)
        vote(top_sim + (int64_t)r * k, top_idx + (int64_t)r * k, k, train_labels, temperature,
             scores + (int64_t)r * classes, classes, best + (int64_t)r * nbest, nbest);
}

static int argmax_row(const float *row, int n)
{
    int best = 0;
    for (int c = 1; c < n; c++)
        if (row[c] > row[best])
            best = c;
    return best;
}

/* Rank of class `label` among the logits of a row (0 = best; ties to the lower class). */
static int rank_of(const float *row, int n, int label)
{
    int r = 0;
    for (int c = 0; c < n; c++)
        r += row[c] > row[label] || (row[c] == row[label] && c < label);
    return r;
}

/* Probe batches are small (<= a few thousand rows): one thread, no reduction order to keep. */
void cpu_argmax_hits(hallu_backend *be, int64_t *hits, const float *logits, const int32_t *labels, int rows,
                     int classes)
{
    (void)be;
    int64_t h = 0;
    for (int r = 0; r < rows; r++)
        h += argmax_row(logits + (int64_t)r * classes, classes) == labels[r];
    hits[0] += h;
}

void cpu_class_rank_hits(hallu_backend *be, int64_t *hits, const float *logits, const int32_t *labels, int rows,
                         int classes)
{
    (void)be;
    int64_t h1 = 0, h5 = 0;
    for (int r = 0; r < rows; r++) {
        int k = rank_of(logits + (int64_t)r * classes, classes, labels[r]);
        h1 += k == 0;
        h5 += k < 5;
    }
    hits[0] += h1;
    hits[1] += h5;
}
