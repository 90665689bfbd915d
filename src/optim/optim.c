/* Optimizer configuration, construction and state bookkeeping. */
#include "hallu/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void hallu_optim_config_default(hallu_optim_config *cfg, hallu_optim_kind kind)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->kind = kind;
    cfg->lars_eta = 0.02;
    cfg->lars_eps = 1e-8;
    cfg->beta1 = 0.9;
    cfg->beta2 = 0.999;
    cfg->eps = 1e-8;
    if (kind == HALLU_OPTIM_SGD || kind == HALLU_OPTIM_LARS)
        cfg->momentum = 0.9;
    if (kind == HALLU_OPTIM_LARS)
        cfg->exclude_bias_norm = 1;
    if (kind == HALLU_OPTIM_ADAMW)
        cfg->weight_decay = 0.01;
}

const char *hallu_optim_kind_name(hallu_optim_kind kind)
{
    switch (kind) {
    case HALLU_OPTIM_SGD: return "sgd";
    case HALLU_OPTIM_LARS: return "lars";
    case HALLU_OPTIM_ADAMW: return "adamw";
    }
    return "?";
}

hallu_status hallu_optim_parse(const char *name, hallu_optim_config *cfg, hallu_error *err)
{
    for (int k = HALLU_OPTIM_SGD; k <= HALLU_OPTIM_ADAMW; k++)
        if (name && strcmp(name, hallu_optim_kind_name((hallu_optim_kind)k)) == 0) {
            hallu_optim_config_default(cfg, (hallu_optim_kind)k);
            return HALLU_OK;
        }
    return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "optimizer '%s' is unknown (expected sgd, lars or adamw)",
                           name ? name : "(null)");
}

static int in_unit(double x, int closed)
{
    return x >= 0 && (closed ? x <= 1 : x < 1);
}

hallu_status hallu_optim_config_check(const hallu_optim_config *c, hallu_error *err)
{
    if ((unsigned)c->kind > HALLU_OPTIM_ADAMW)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "optimizer kind %d is unknown", (int)c->kind);
    const char *k = hallu_optim_kind_name(c->kind);
    if (!(c->weight_decay >= 0) || !isfinite(c->weight_decay))
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "%s: weight_decay %g must be >= 0", k, c->weight_decay);
    if (!(c->fixed_lr >= 0) || !isfinite(c->fixed_lr))
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "%s: fixed_lr %g must be >= 0", k, c->fixed_lr);
    if (c->kind == HALLU_OPTIM_ADAMW) {
        if (!in_unit(c->beta1, 0) || !in_unit(c->beta2, 0))
            return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "adamw: betas (%g, %g) must be in [0, 1)", c->beta1,
                                   c->beta2);
        if (!(c->eps >= 0))
            return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "adamw: eps %g must be >= 0", c->eps);
        return HALLU_OK;
    }
    if (!in_unit(c->momentum, 1) || !in_unit(c->dampening, 1))
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "%s: momentum %g and dampening %g must be in [0, 1]", k,
                               c->momentum, c->dampening);
    if (c->nesterov && (c->momentum <= 0 || c->dampening != 0))
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                               "%s: nesterov needs momentum > 0 and dampening 0 (got %g, %g)", k, c->momentum,
                               c->dampening);
    if (c->kind == HALLU_OPTIM_LARS && (!(c->lars_eta > 0) || !(c->lars_eps >= 0)))
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "lars: eta %g must be > 0 and eps %g >= 0", c->lars_eta,
                               c->lars_eps);
    return HALLU_OK;
}

static int cmp_range(const void *a, const void *b)
{
    int64_t x = ((const hallu_param_range *)a)->offset, y = ((const hallu_param_range *)b)->offset;
    return (x > y) - (x < y);
}

static hallu_status copy_ranges(hallu_optimizer *o, int64_t n, const hallu_param_range *ranges, int num,
                                hallu_error *err)
{
    hallu_param_range all = {0, n, 0};
    if (num == 0 || !ranges) {
        ranges = &all;
        num = 1;
    }
    o->ranges = malloc((size_t)num * sizeof *o->ranges);
    if (!o->ranges)
        return hallu_error_set(err, HALLU_ERR_OOM, "optimizer: out of memory for %d ranges", num);
    memcpy(o->ranges, ranges, (size_t)num * sizeof *o->ranges);
    o->num_ranges = num;
    qsort(o->ranges, (size_t)num, sizeof *o->ranges, cmp_range);
    int64_t end = 0;
    for (int i = 0; i < num; i++) {
        const hallu_param_range *r = &o->ranges[i];
        if (r->offset < 0 || r->count < 0 || r->offset > n - r->count)
            return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                                   "optimizer: range [%lld, +%lld) is outside the %lld parameters",
                                   (long long)r->offset, (long long)r->count, (long long)n);
        if (r->offset < end)
            return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "optimizer: range at %lld overlaps the one ending at %lld",
                                   (long long)r->offset, (long long)end);
        end = r->offset + r->count;
    }
    return HALLU_OK;
}

hallu_status hallu_optim_init(hallu_optimizer *o, hallu_backend *be, const hallu_optim_config *cfg, int64_t n,
                              const hallu_param_range *ranges, int num_ranges, hallu_error *err)
{
    memset(o, 0, sizeof *o);
    if (!be)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "optimizer: no backend");
    hallu_status s = hallu_optim_config_check(cfg, err);
    if (s != HALLU_OK)
        return s;
    if (n < 0 || num_ranges < 0)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "optimizer: n = %lld, %d ranges", (long long)n, num_ranges);
    o->cfg = *cfg;
    o->be = be;
    o->n = n;
    s = copy_ranges(o, n, ranges, num_ranges, err);
    if (s != HALLU_OK) {
        hallu_optim_free(o);
        return s;
    }
    o->num_slots = cfg->kind == HALLU_OPTIM_ADAMW ? 2 : cfg->momentum != 0 ? 1 : 0;
    if (o->num_slots && n > 0)
        s = hallu_buffer_alloc(&o->state, be, HALLU_DTYPE_F32, (int64_t)o->num_slots * n, "optimizer state", err);
    if (s == HALLU_OK && cfg->kind == HALLU_OPTIM_LARS)
        s = hallu_buffer_alloc(&o->lars, be, HALLU_DTYPE_F32, 2 * (int64_t)o->num_ranges, "lars trust ratios", err);
    if (s != HALLU_OK)
        hallu_optim_free(o);
    return s;
}

void hallu_optim_free(hallu_optimizer *o)
{
    free(o->ranges);
    hallu_buffer_free(&o->state);
    hallu_buffer_free(&o->lars);
    memset(o, 0, sizeof *o);
}

const char *hallu_optim_slot_name(const hallu_optimizer *o, int slot)
{
    if (slot < 0 || slot >= o->num_slots)
        return NULL;
    if (o->cfg.kind == HALLU_OPTIM_ADAMW)
        return slot == 0 ? "exp_avg" : "exp_avg_sq";
    return "momentum_buffer";
}

float *hallu_optim_slot(const hallu_optimizer *o, int slot)
{
    if (slot < 0 || slot >= o->num_slots || !o->state.data)
        return NULL;
    return hallu_buffer_f32(&o->state) + (size_t)slot * (size_t)o->n;
}

hallu_status hallu_optim_state_download(const hallu_optimizer *o, float *host, hallu_error *err)
{
    size_t bytes = (size_t)o->num_slots * (size_t)o->n * sizeof(float);
    return bytes && o->state.data ? hallu_backend_download(o->be, host, o->state.data, bytes, err) : HALLU_OK;
}

hallu_status hallu_optim_state_upload(hallu_optimizer *o, const float *host, hallu_error *err)
{
    size_t bytes = (size_t)o->num_slots * (size_t)o->n * sizeof(float);
    return bytes && o->state.data ? hallu_backend_upload(o->be, o->state.data, host, bytes, err) : HALLU_OK;
}

hallu_status hallu_optimizer_create(hallu_optimizer **out, const hallu_optim_config *cfg, const hallu_params *ps,
                                    hallu_error *err)
{
    *out = NULL;
    int nr = ps->num_trainable;
    hallu_param_range *r = malloc((size_t)(nr > 0 ? nr : 1) * sizeof *r);
    hallu_optimizer *o = calloc(1, sizeof *o);
    if (!r || !o) {
        free(r);
        free(o);
        return hallu_error_set(err, HALLU_ERR_OOM, "optimizer: out of memory");
    }
    for (int i = 0; i < nr; i++) {
        r[i].offset = ps->trainable[i].offset;
        r[i].count = ps->trainable[i].numel;
        r[i].flags = ps->trainable[i].flags & (HALLU_TENSOR_NO_DECAY | HALLU_TENSOR_FIXED_LR);
    }
    /* With no tensors, an empty range list must not mean "everything". */
    hallu_param_range none = {0, 0, 0};
    hallu_status s = hallu_optim_init(o, ps->be, cfg, ps->trainable_numel, nr ? r : &none, nr ? nr : 1, err);
    free(r);
    if (s != HALLU_OK) {
        free(o);
        return s;
    }
    *out = o;
    return HALLU_OK;
}

void hallu_optimizer_free(hallu_optimizer *o)
{
    if (!o)
        return;
    hallu_optim_free(o);
    free(o);
}

void hallu_optimizer_step(hallu_optimizer *o, hallu_params *ps, double lr)
{
    hallu_optim_step(o, ps->param, ps->grad, lr);
}
