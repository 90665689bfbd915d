/* Optimizer ops: norms, gradient clipping, the LARS trust ratio and the SGD /
 * AdamW updates (the rules of hallu/optim.h), plus the small scalar op that
 * counts BN batches. Moved from the host loops of src/optim/ with the same
 * arithmetic: every float operation keeps the order and float/double rounding
 * of torch 1.13's single-tensor CPU path; elementwise loops split statically
 * over the instance's threads, norms sum fixed chunks in index order, so the
 * results do not depend on the thread count. */
#include "backend/cpu/cpu_internal.h"

#include <math.h>

/* Below this many elements a parallel region costs more than it saves. */
#define PAR_MIN ((int64_t)1 << 15)

/* Euclidean norm in double: fixed chunks summed in index order, the same bits
 * for any thread count. */
static double l2_norm_d(hallu_backend *be, const float *x, int64_t n)
{
    enum { CHUNK = 1 << 15, GROUP = 64 };
    int nt = cpu_impl_of(be)->num_threads;
    double total = 0;
    for (int64_t g0 = 0; g0 < n; g0 += (int64_t)CHUNK * GROUP) {
        double part[GROUP];
        int64_t left = n - g0;
        int nc = (int)(left >= (int64_t)CHUNK * GROUP ? GROUP : (left + CHUNK - 1) / CHUNK);
#pragma omp parallel for schedule(static) num_threads(nt) if (nc > 1)
        for (int c = 0; c < nc; c++) {
            int64_t b = g0 + (int64_t)c * CHUNK, e = b + CHUNK < n ? b + CHUNK : n;
            double acc = 0;
            for (int64_t i = b; i < e; i++)
                acc += (double)x[i] * (double)x[i];
            part[c] = acc;
        }
        for (int c = 0; c < nc; c++)
            total += part[c];
    }
    return sqrt(total);
}

void cpu_l2_norm(hallu_backend *be, float *norm, const float *x, int64_t n)
{
    *norm = (float)l2_norm_d(be, x, n);
}

void cpu_clip_by_norm(hallu_backend *be, float *x, const float *total, int64_t n, float max_norm)
{
    /* Python's max_norm / tensor is tensor.reciprocal() * max_norm. */
    float coef = (1.0f / (*total + 1e-6f)) * max_norm;
    if (coef < 1.0f) {
        int nt = cpu_impl_of(be)->num_threads;
#pragma omp parallel for schedule(static) num_threads(nt) if (n >= PAR_MIN)
        for (int64_t i = 0; i < n; i++)
            x[i] *= coef;
    }
}

/* solo-learn's trust ratio, in float32 like its 0-dim tensors. */
void cpu_lars_coef(hallu_backend *be, float *coef, const float *p, const float *g, int64_t n, float wd, float eps,
                   float eta, int clip_lr, float lr)
{
    float pn = (float)l2_norm_d(be, p, n), gn = (float)l2_norm_d(be, g, n);
    if (pn == 0.0f || gn == 0.0f) {
        coef[0] = 1.0f;
        coef[1] = 0.0f;
        return;
    }
    float r = pn / (gn + pn * wd + eps);
    r *= eta;
    if (clip_lr) {
        r = r / lr;
        if (1.0f < r)
            r = 1.0f;
    }
    coef[0] = r;
    coef[1] = 1.0f;
}

void cpu_sgd_update(hallu_backend *be, float *p, const float *g, float *buf, const float *lars, float wd,
                    float momentum, float damp1, float neg_lr, int nesterov, int first, int64_t n)
{
    float scale = 1.0f;
    int scaled = 0;
    if (lars) {
        /* An unadapted range takes the raw gradient: no decay either (solo-learn). */
        scaled = lars[1] != 0.0f;
        scale = lars[0];
        if (!scaled)
            wd = 0.0f;
    }
    int nt = cpu_impl_of(be)->num_threads;
#pragma omp parallel for schedule(static) num_threads(nt) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float d = wd != 0.0f ? g[i] + wd * p[i] : g[i];
        if (scaled)
            d *= scale;
        if (buf) {
            float b = first ? d : buf[i] * momentum + damp1 * d;
            buf[i] = b;
            d = nesterov ? d + momentum * b : b;
        }
        p[i] = p[i] + neg_lr * d;
    }
}

void cpu_adamw_update(hallu_backend *be, float *p, const float *g, float *m, float *v, float decay, float beta1,
                      float one_m_beta1, float beta2, float one_m_beta2, float bc2_sqrt, float eps, float neg_step,
                      int64_t n)
{
    int nt = cpu_impl_of(be)->num_threads;
#pragma omp parallel for schedule(static) num_threads(nt) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float pi = p[i] * decay;
        float mi = m[i] * beta1 + one_m_beta1 * g[i];
        float vi = v[i] * beta2 + one_m_beta2 * g[i] * g[i];
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi + neg_step * mi / denom;
    }
}

void cpu_add_scalar(hallu_backend *be, float *y, float value, int64_t n)
{
    (void)be;
    for (int64_t i = 0; i < n; i++)
        y[i] += value;
}
