/* The three method losses and the collapse metric. Row reductions accumulate
 * in double: log-sum-exp over 65k queue logits loses digits in float. */
#include "ssl_internal.h"

#include <math.h>
#include <string.h>

static int nt_allowed(int i, int j, int pos, int n_src, int mask)
{
    if (j == i)
        return 0;
    return !mask || j == pos || (j % n_src) != (i % n_src);
}

float ssl_nt_xent(hallu_backend *be, float *dfeat, float *sim, const float *feat, int m, int d,
                  int n_src, float temperature, int mask_same_source, float scale)
{
    float inv_t = 1.0f / temperature;
    be->ops->gemm(be, 0, 1, m, m, d, inv_t, feat, feat, 0.0f, sim);
    double total = 0.0;
    for (int i = 0; i < m; i++) {
        float *row = sim + (size_t)i * m;
        int pos = (i + m / 2) % m;
        double mx = -INFINITY, sum = 0.0;
        for (int j = 0; j < m; j++)
            if (nt_allowed(i, j, pos, n_src, mask_same_source) && row[j] > mx)
                mx = row[j];
        for (int j = 0; j < m; j++)
            if (nt_allowed(i, j, pos, n_src, mask_same_source))
                sum += exp(row[j] - mx);
        double lse = mx + log(sum);
        total += lse - row[pos];
        /* The row becomes dL/dsim: scale/m * (softmax - onehot(pos)). */
        double g = (double)scale / m;
        for (int j = 0; j < m; j++)
            row[j] = nt_allowed(i, j, pos, n_src, mask_same_source) ? (float)(g * exp(row[j] - lse)) : 0.0f;
        row[pos] -= (float)g;
    }
    if (dfeat) {
        /* sim = F F^T / T, so dF = (G + G^T) F / T. */
        be->ops->gemm(be, 0, 0, m, d, m, inv_t, sim, feat, 0.0f, dfeat);
        be->ops->gemm(be, 1, 0, m, d, m, inv_t, sim, feat, 1.0f, dfeat);
    }
    return (float)(scale * total / m);
}

float ssl_infonce(hallu_backend *be, float *dq, float *neg, const float *q, const float *kpos,
                  const float *queue, int rows, int d, int K, float temperature)
{
    float inv_t = 1.0f / temperature;
    be->ops->gemm(be, 0, 1, rows, K, d, inv_t, q, queue, 0.0f, neg);
    double total = 0.0, g = 1.0 / rows;
    for (int r = 0; r < rows; r++) {
        const float *qr = q + (size_t)r * d, *kr = kpos + (size_t)r * d;
        float *nr = neg + (size_t)r * K;
        double lpos = 0.0;
        for (int j = 0; j < d; j++)
            lpos += (double)qr[j] * kr[j];
        lpos *= inv_t;
        double mx = lpos, sum = 0.0;
        for (int j = 0; j < K; j++)
            mx = nr[j] > mx ? nr[j] : mx;
        for (int j = 0; j < K; j++)
            sum += exp(nr[j] - mx);
        sum += exp(lpos - mx);
        double lse = mx + log(sum);
        total += lse - lpos;
        if (!dq)
            continue;
        /* dlogits = (softmax - onehot(0)) / rows; the queue part stays in nr. */
        double dpos = g * (exp(lpos - lse) - 1.0);
        for (int j = 0; j < K; j++)
            nr[j] = (float)(g * exp(nr[j] - lse));
        float *dqr = dq + (size_t)r * d;
        for (int j = 0; j < d; j++)
            dqr[j] = (float)(dpos * inv_t * kr[j]);
    }
    if (dq)
        be->ops->gemm(be, 0, 0, rows, d, K, inv_t, neg, queue, 1.0f, dq);
    return (float)(total / rows);
}

static double row_norm(const float *x, int d)
{
    double s = 0.0;
    for (int j = 0; j < d; j++)
        s += (double)x[j] * x[j];
    return sqrt(s);
}

float ssl_neg_cosine(float *dp, const float *p, const float *z, int rows, int d, float scale)
{
    const double eps = 1e-8;   /* torch.nn.CosineSimilarity's */
    double total = 0.0;
    for (int r = 0; r < rows; r++) {
        const float *pr = p + (size_t)r * d, *zr = z + (size_t)r * d;
        double np = row_norm(pr, d), nz = row_norm(zr, d), dot = 0.0;
        for (int j = 0; j < d; j++)
            dot += (double)pr[j] * zr[j];
        double denom = np * nz > eps ? np * nz : eps;
        double cos = dot / denom;
        total += cos;
        if (!dp)
            continue;
        /* d cos / dp = z / (|p||z|) - cos p / |p|^2 (constant eps branch: z / eps). */
        double c = -(double)scale / rows;
        float *dr = dp + (size_t)r * d;
        for (int j = 0; j < d; j++) {
            double gj = np * nz > eps ? zr[j] / denom - cos * pr[j] / (np * np) : zr[j] / eps;
            dr[j] = (float)(c * gj);
        }
    }
    return (float)(-(double)scale * total / rows);
}

float ssl_collapse_std(float *norms, const float *z, int rows, int d)
{
    if (rows < 1 || d < 1)
        return 0.0f;
    for (int r = 0; r < rows; r++) {
        double nr = row_norm(z + (size_t)r * d, d);
        norms[r] = (float)(nr > 1e-12 ? nr : 1e-12);
    }
    double acc = 0.0;
    for (int j = 0; j < d; j++) {
        double s = 0.0, s2 = 0.0;
        for (int r = 0; r < rows; r++) {
            double v = (double)z[(size_t)r * d + j] / norms[r];
            s += v;
            s2 += v * v;
        }
        double mean = s / rows, var = s2 / rows - mean * mean;
        acc += sqrt(var > 0.0 ? var : 0.0);
    }
    return (float)(acc / d);
}
