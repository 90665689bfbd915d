/* The self-supervised methods' row loops: NT-Xent and InfoNCE rows, SimSiam's
 * negative cosine, the collapse metric, the Hallucinator's input, output and
 * backward, row permutations and MoCo's enqueue. They were host loops in
 * src/ssl/ and moved here unchanged (serial, row reductions in double: a
 * log-sum-exp over 65k queue logits loses digits in float), so every result
 * keeps its bits. */
#include "backend/cpu/cpu_internal.h"

#include <math.h>
#include <string.h>

/* Row j may appear in anchor a's denominator: not a itself and, with mask,
 * no other row of a's source (same block, same index mod n_src) but the positive. */
static int nt_allowed(int a, int j, int pos, int block, int n_src, int mask)
{
    if (j == a)
        return 0;
    return !mask || j == pos || j / block != a / block || (j % block) % n_src != (a % block) % n_src;
}

void cpu_ssl_nt_xent_rows(hallu_backend *be, float *loss, float *sim, int rows, int m, int row0, int block,
                          int n_src, int mask_same_source, float scale)
{
    (void)be;
    double total = 0.0;
    for (int i = 0; i < rows; i++) {
        float *row = sim + (size_t)i * m;
        int a = row0 + i, pos = a / block * block + (a % block + block / 2) % block;
        double mx = -INFINITY, sum = 0.0;
        for (int j = 0; j < m; j++)
            if (nt_allowed(a, j, pos, block, n_src, mask_same_source) && row[j] > mx)
                mx = row[j];
        for (int j = 0; j < m; j++)
            if (nt_allowed(a, j, pos, block, n_src, mask_same_source))
                sum += exp(row[j] - mx);
        double lse = mx + log(sum);
        total += lse - row[pos];
        /* The row becomes dL/dsim: scale/rows * (softmax - onehot(pos)). */
        double g = (double)scale / rows;
        for (int j = 0; j < m; j++)
            row[j] = nt_allowed(a, j, pos, block, n_src, mask_same_source) ? (float)(g * exp(row[j] - lse)) : 0.0f;
        row[pos] -= (float)g;
    }
    *loss = (float)(scale * total / rows);
}

void cpu_ssl_infonce_rows(hallu_backend *be, float *loss, float *dq, float *neg, const float *q, const float *kpos,
                          int rows, int d, int K, float temperature)
{
    (void)be;
    float inv_t = 1.0f / temperature;
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
    *loss = (float)(total / rows);
}

static double row_norm(const float *x, int d)
{
    double s = 0.0;
    for (int j = 0; j < d; j++)
        s += (double)x[j] * x[j];
    return sqrt(s);
}

void cpu_ssl_neg_cosine(hallu_backend *be, float *loss, float *dp, const float *p, const float *z, int rows, int d,
                        float scale, int accumulate)
{
    (void)be;
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
    float value = (float)(-(double)scale * total / rows);
    *loss = accumulate ? *loss + value : value;
}

void cpu_ssl_collapse_std(hallu_backend *be, float *out, float *norms, const float *z, int rows, int d)
{
    (void)be;
    if (rows < 1 || d < 1) {
        *out = 0.0f;
        return;
    }
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
    *out = (float)(acc / d);
}

void cpu_ssl_hal_input(hallu_backend *be, float *xg, const float *x, const float *k, int rows, int d, float r)
{
    (void)be;
    for (int i = 0; i < rows; i++) {
        const float *xi = x + (size_t)i * d, *ki = k + (size_t)i * d;
        float *row = xg + (size_t)i * 2 * d;
        memcpy(row, xi, (size_t)d * sizeof(float));
        for (int j = 0; j < d; j++)
            row[d + j] = (1.0f + r) * xi[j] - r * ki[j];
    }
}

void cpu_ssl_hal_output(hallu_backend *be, float *h, const float *mlp, const float *xg, int rows, int d,
                        int residual)
{
    (void)be;
    if (!residual) {
        memcpy(h, mlp, (size_t)rows * d * sizeof(float));
        return;
    }
    for (int i = 0; i < rows; i++) {
        float *hi = h + (size_t)i * d;
        const float *mi = mlp + (size_t)i * d, *gi = xg + (size_t)i * 2 * d + d;
        for (int j = 0; j < d; j++)
            hi[j] = mi[j] + gi[j];
    }
}

void cpu_ssl_hal_backward(hallu_backend *be, float *dx, float *dk, const float *dxg, const float *dout, int rows,
                          int d, float r, int residual)
{
    (void)be;
    const float *dh = dout + (size_t)rows * d;
    for (int i = 0; i < rows; i++) {
        const float *dxi = dxg + (size_t)i * 2 * d, *dgi = dxi + d;
        const float *dhi = dh + (size_t)i * d, *d0 = dout + (size_t)i * d;
        float *gx = dx + (size_t)i * d;
        float *gk = dk ? dk + (size_t)i * d : NULL;
        for (int j = 0; j < d; j++) {
            /* The residual path adds dh straight into dg. */
            float dg = dgi[j] + (residual ? dhi[j] : 0.0f);
            gx[j] += d0[j] + dxi[j] + (1.0f + r) * dg;
            if (gk)
                gk[j] -= r * dg;
        }
    }
}

void cpu_ssl_gather_rows(hallu_backend *be, float *dst, const float *src, const int32_t *index, int rows,
                         int64_t cols)
{
    (void)be;
    for (int i = 0; i < rows; i++)
        memcpy(dst + (size_t)i * cols, src + (size_t)index[i] * cols, (size_t)cols * sizeof(float));
}

void cpu_ssl_scatter_rows(hallu_backend *be, float *dst, const float *src, const int32_t *index, int rows,
                          int64_t cols)
{
    (void)be;
    for (int i = 0; i < rows; i++)
        memcpy(dst + (size_t)index[i] * cols, src + (size_t)i * cols, (size_t)cols * sizeof(float));
}

void cpu_ssl_enqueue_rows(hallu_backend *be, float *queue, int64_t *ptr, const float *src, int rows, int d, int K)
{
    (void)be;
    int64_t at = *ptr;
    for (int r = 0; r < rows; r++) {
        memcpy(queue + (size_t)at * d, src + (size_t)r * d, (size_t)d * sizeof(float));
        at = (at + 1) % K;
    }
    *ptr = at;
}
