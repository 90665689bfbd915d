/* The update rules of optim.h as backend ops (src/backend/cpu/cpu_optim.c has
 * the loops). Every float operation mirrors the order and the float/double
 * rounding of torch 1.13's single-tensor CPU path, so results agree to a few
 * ulps (PyTorch's vector kernels may fuse a multiply-add). The host computes
 * only per-range scalars, in double from the double lr as Python does. */
#include "hallu/optim.h"

#include <math.h>

static double range_lr(const hallu_optim_config *c, const hallu_param_range *r, double lr)
{
    return (r->flags & HALLU_RANGE_FIXED_LR) && c->fixed_lr > 0 ? c->fixed_lr : lr;
}

static void sgd_lars_step(hallu_optimizer *o, float *param, const float *grad, double lr)
{
    const hallu_optim_config *c = &o->cfg;
    hallu_backend *be = o->be;
    float *state = o->num_slots ? hallu_buffer_f32(&o->state) : NULL;
    for (int i = 0; i < o->num_ranges; i++) {
        const hallu_param_range *r = &o->ranges[i];
        if (r->count == 0)
            continue;
        float *p = param + r->offset;
        const float *g = grad + r->offset;
        int excluded = c->exclude_bias_norm && (r->flags & HALLU_RANGE_NO_DECAY);
        double lr_r = range_lr(c, r, lr);
        float wd = excluded ? 0.0f : (float)c->weight_decay;
        const float *lars = NULL;
        if (c->kind == HALLU_OPTIM_LARS && !excluded) {
            /* The trust ratio stays on the device; an excluded range is never adapted. */
            float *coef = hallu_buffer_f32(&o->lars) + 2 * (size_t)i;
            be->ops->lars_coef(be, coef, p, g, r->count, wd, (float)c->lars_eps, (float)c->lars_eta, c->lars_clip_lr,
                               (float)lr_r);
            lars = coef;
        }
        be->ops->sgd_update(be, p, g, state ? state + r->offset : NULL, lars, wd, (float)c->momentum,
                            (float)(1.0 - c->dampening), (float)(-lr_r), c->nesterov, o->step == 0, r->count);
    }
}

static void adamw_step(hallu_optimizer *o, float *param, const float *grad, double lr)
{
    const hallu_optim_config *c = &o->cfg;
    double t = (double)(o->step + 1);
    double bc1 = 1.0 - pow(c->beta1, t), bc2 = 1.0 - pow(c->beta2, t);
    if (!o->state.data)
        return;   /* n == 0: nothing to update */
    float *m = hallu_buffer_f32(&o->state), *v = m + o->n;
    for (int i = 0; i < o->num_ranges; i++) {
        const hallu_param_range *r = &o->ranges[i];
        if (r->count == 0)
            continue;
        int excluded = c->exclude_bias_norm && (r->flags & HALLU_RANGE_NO_DECAY);
        double wd = excluded ? 0.0 : c->weight_decay, lr_r = range_lr(c, r, lr);
        o->be->ops->adamw_update(o->be, param + r->offset, grad + r->offset, m + r->offset, v + r->offset,
                                 (float)(1.0 - lr_r * wd), (float)c->beta1, (float)(1.0 - c->beta1), (float)c->beta2,
                                 (float)(1.0 - c->beta2), (float)sqrt(bc2), (float)c->eps, (float)(-(lr_r / bc1)),
                                 r->count);
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
