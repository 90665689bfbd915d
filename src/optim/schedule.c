/* Learning-rate schedules (closed forms of torch's LinearLR, CosineAnnealingLR
 * and MultiStepLR) and gradient-norm clipping (backend ops, cpu_optim.c). */
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

void hallu_l2_norm(hallu_backend *be, float *norm_dev, const float *x, int64_t n)
{
    be->ops->l2_norm(be, norm_dev, x, n);
}

void hallu_clip_grad_norm(hallu_backend *be, float *grad, float *total_norm_dev, int64_t n, float max_norm)
{
    /* The norm never visits the host: the scaling reads it on the device. */
    be->ops->l2_norm(be, total_norm_dev, grad, n);
    be->ops->clip_by_norm(be, grad, total_norm_dev, n, max_norm);
}
