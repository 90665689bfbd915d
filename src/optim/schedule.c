/* Learning-rate schedules (closed forms of torch's LinearLR, CosineAnnealingLR
 * and MultiStepLR) and gradient-norm clipping. */
#include "hallu/optim.h"

#include <math.h>

hallu_status hallu_lr_schedule_check(const hallu_lr_schedule *s, hallu_error *err)
{
    if (!(s->base_lr >= 0) || !isfinite(s->base_lr))
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "lr schedule: base lr %g must be >= 0", s->base_lr);
    if (s->warmup_steps < 0)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "lr schedule: warmup_steps %lld < 0",
                               (long long)s->warmup_steps);
    switch (s->kind) {
    case HALLU_LR_CONSTANT:
        return HALLU_OK;
    case HALLU_LR_COSINE:
        if (s->total_steps <= s->warmup_steps)
            return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                                   "lr schedule: cosine total_steps %lld must exceed warmup_steps %lld",
                                   (long long)s->total_steps, (long long)s->warmup_steps);
        if (!(s->min_lr >= 0) || s->min_lr > s->base_lr)
            return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "lr schedule: min lr %g must be in [0, base lr %g]",
                                   s->min_lr, s->base_lr);
        return HALLU_OK;
    case HALLU_LR_MULTISTEP:
        if (s->num_milestones < 0 || s->num_milestones > HALLU_LR_MAX_MILESTONES)
            return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "lr schedule: %d milestones (at most %d)",
                                   s->num_milestones, HALLU_LR_MAX_MILESTONES);
        for (int i = 1; i < s->num_milestones; i++)
            if (s->milestones[i] < s->milestones[i - 1])
                return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "lr schedule: milestones not sorted at %lld",
                                       (long long)s->milestones[i]);
        if (!(s->gamma > 0))
            return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "lr schedule: gamma %g must be > 0", s->gamma);
        return HALLU_OK;
    }
    return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "lr schedule: kind %d is unknown", (int)s->kind);
}

double hallu_lr_at(const hallu_lr_schedule *s, int64_t step)
{
    if (step < s->warmup_steps)
        return s->base_lr * (double)(step + 1) / (double)s->warmup_steps;
    if (s->kind == HALLU_LR_COSINE) {
        int64_t t = step - s->warmup_steps, T = s->total_steps - s->warmup_steps;
        if (t >= T)
            return s->min_lr;
        return s->min_lr + (s->base_lr - s->min_lr) * (1.0 + cos(M_PI * (double)t / (double)T)) / 2.0;
    }
    if (s->kind == HALLU_LR_MULTISTEP) {
        double lr = s->base_lr;
        for (int i = 0; i < s->num_milestones; i++)
            if (s->milestones[i] <= step)
                lr *= s->gamma;
        return lr;
    }
    return s->base_lr;
}

double hallu_l2_norm(const float *x, int64_t n)
{
    /* Fixed chunks summed in index order: the same bits for any thread count. */
    enum { CHUNK = 1 << 15, GROUP = 64 };
    double total = 0;
    for (int64_t g0 = 0; g0 < n; g0 += (int64_t)CHUNK * GROUP) {
        double part[GROUP];
        int64_t left = n - g0;
        int nc = (int)(left >= (int64_t)CHUNK * GROUP ? GROUP : (left + CHUNK - 1) / CHUNK);
#pragma omp parallel for schedule(static) if (nc > 1)
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

float hallu_clip_grad_norm(float *grad, int64_t n, float max_norm)
{
    float total = (float)hallu_l2_norm(grad, n);
    /* Python's max_norm / tensor is tensor.reciprocal() * max_norm. */
    float coef = (1.0f / (total + 1e-6f)) * max_norm;
    if (coef < 1.0f) {
#pragma omp parallel for schedule(static) if (n >= ((int64_t)1 << 15))
        for (int64_t i = 0; i < n; i++)
            grad[i] *= coef;
    }
    return total;
}
