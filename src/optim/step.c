/* The update rules of optim.h. Every float operation mirrors the order and the
 * float/double rounding of torch 1.13's single-tensor CPU path, so results
 * agree to a few ulps (PyTorch's vector kernels may fuse a multiply-add). */
#include "hallu/optim.h"

#include <math.h>

/* Below this many elements a parallel region costs more than it saves. */
#define PAR_MIN ((int64_t)1 << 15)

/* Per-range scalars of the SGD/LARS update. */
typedef struct sgd_coef {
    float wd;        /* 0: no decay term */
    float scale;     /* LARS trust ratio; 1 for SGD */
    int scaled;
    float momentum, damp1, neg_lr;
    int nesterov, first;
} sgd_coef;

static void sgd_range(const sgd_coef *k, float *p, const float *g, float *buf, int64_t n)
{
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float d = k->wd != 0.0f ? g[i] + k->wd * p[i] : g[i];
        if (k->scaled)
            d *= k->scale;
        if (buf) {
            float b = k->first ? d : buf[i] * k->momentum + k->damp1 * d;
            buf[i] = b;
            d = k->nesterov ? d + k->momentum * b : b;
        }
        p[i] = p[i] + k->neg_lr * d;
    }
}

/* solo-learn's trust ratio, in float32 like its 0-dim tensors; returns 0 when
 * the range is left unadapted (a zero norm). */
static int lars_ratio(const hallu_optim_config *c, const float *p, const float *g, int64_t n, float wd, double lr,
                      float *ratio)
{
    float pn = (float)hallu_l2_norm(p, n), gn = (float)hallu_l2_norm(g, n);
    if (pn == 0.0f || gn == 0.0f)
        return 0;
    float r = pn / (gn + pn * wd + (float)c->lars_eps);
    r *= (float)c->lars_eta;
    if (c->lars_clip_lr) {
        r = r / (float)lr;
        if (1.0f < r)
            r = 1.0f;
    }
    *ratio = r;
    return 1;
}

static double range_lr(const hallu_optim_config *c, const hallu_param_range *r, double lr)
{
    return (r->flags & HALLU_RANGE_FIXED_LR) && c->fixed_lr > 0 ? c->fixed_lr : lr;
}

static void sgd_lars_step(hallu_optimizer *o, float *param, const float *grad, double lr)
{
    const hallu_optim_config *c = &o->cfg;
    float *state = o->num_slots ? o->state : NULL;
    for (int i = 0; i < o->num_ranges; i++) {
        const hallu_param_range *r = &o->ranges[i];
        if (r->count == 0)
            continue;
        float *p = param + r->offset;
        const float *g = grad + r->offset;
        int excluded = c->exclude_bias_norm && (r->flags & HALLU_RANGE_NO_DECAY);
        double lr_r = range_lr(c, r, lr);
        sgd_coef k = {.wd = excluded ? 0.0f : (float)c->weight_decay, .scale = 1.0f, .momentum = (float)c->momentum,
                      .damp1 = (float)(1.0 - c->dampening), .neg_lr = (float)(-lr_r), .nesterov = c->nesterov,
                      .first = o->step == 0};
        if (c->kind == HALLU_OPTIM_LARS) {
            /* Unadapted ranges take the raw gradient: no decay either (solo-learn). */
            k.scaled = !excluded && lars_ratio(c, p, g, r->count, k.wd, lr_r, &k.scale);
            if (!k.scaled)
                k.wd = 0.0f;
        }
        sgd_range(&k, p, g, state ? state + r->offset : NULL, r->count);
    }
}

typedef struct adamw_coef {
    float decay, beta1, one_m_beta1, beta2, one_m_beta2, bc2_sqrt, eps, neg_step;
} adamw_coef;

static void adamw_range(const adamw_coef *k, float *p, const float *g, float *m, float *v, int64_t n)
{
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float pi = p[i] * k->decay;
        float mi = m[i] * k->beta1 + k->one_m_beta1 * g[i];
        float vi = v[i] * k->beta2 + k->one_m_beta2 * g[i] * g[i];
        float denom = sqrtf(vi) / k->bc2_sqrt + k->eps;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi + k->neg_step * mi / denom;
    }
}

static void adamw_step(hallu_optimizer *o, float *param, const float *grad, double lr)
{
    const hallu_optim_config *c = &o->cfg;
    double t = (double)(o->step + 1);
    double bc1 = 1.0 - pow(c->beta1, t), bc2 = 1.0 - pow(c->beta2, t);
    if (!o->state)
        return;   /* n == 0: nothing to update */
    float *m = o->state, *v = o->state + o->n;
    for (int i = 0; i < o->num_ranges; i++) {
        const hallu_param_range *r = &o->ranges[i];
        if (r->count == 0)
            continue;
        int excluded = c->exclude_bias_norm && (r->flags & HALLU_RANGE_NO_DECAY);
        double wd = excluded ? 0.0 : c->weight_decay, lr_r = range_lr(c, r, lr);
        adamw_coef k = {.decay = (float)(1.0 - lr_r * wd), .beta1 = (float)c->beta1,
                        .one_m_beta1 = (float)(1.0 - c->beta1), .beta2 = (float)c->beta2,
                        .one_m_beta2 = (float)(1.0 - c->beta2), .bc2_sqrt = (float)sqrt(bc2),
                        .eps = (float)c->eps, .neg_step = (float)(-(lr_r / bc1))};
        adamw_range(&k, param + r->offset, grad + r->offset, m + r->offset, v + r->offset, r->count);
    }
}

void hallu_optim_step(hallu_optimizer *o, float *param, const float *grad, double lr)
{
    if (o->cfg.kind == HALLU_OPTIM_ADAMW)
        adamw_step(o, param, grad, lr);
    else
        sgd_lars_step(o, param, grad, lr);
    o->step++;
}
