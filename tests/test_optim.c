/* Optimizers, schedules and clipping against hand-computed values, on the
 * test backend (HALLU_TEST_DEVICE): parameters, gradients and state are device
 * memory, read back only by download. */
#include "hallu/optim.h"
#include "check.h"
#include "test_backend.h"

#include <stdlib.h>
#include <string.h>

static hallu_backend *g_be;

/* A device copy of n host floats (n may be 0). */
static float *up(const float *host, int64_t n)
{
    hallu_error err = {0};
    float *d = g_be->ops->alloc(g_be, (size_t)(n > 0 ? n : 1) * sizeof(float), "test floats", &err);
    CHECK_OK(d ? HALLU_OK : err.code, &err);
    if (d && n > 0)
        CHECK_OK(hallu_backend_upload(g_be, d, host, (size_t)n * sizeof(float), &err), &err);
    return d;
}

static void down(float *host, const float *dev, int64_t n)
{
    hallu_error err = {0};
    CHECK_OK(hallu_backend_download(g_be, host, dev, (size_t)n * sizeof(float), &err), &err);
}

static void rel(void *dev)
{
    g_be->ops->release(g_be, dev);
}

/* Slot `slot`'s element i of the optimizer state, downloaded. */
static float slot_at(const hallu_optimizer *o, int slot, int64_t i)
{
    float v = 0;
    down(&v, hallu_optim_slot(o, slot) + i, 1);
    return v;
}

/* One step on host arrays p/g of n floats: uploaded, stepped on the device, p downloaded. */
static void step_host(hallu_optimizer *o, float *p, const float *g, int64_t n, double lr)
{
    float *dp = up(p, n), *dg = up(g, n);
    hallu_optim_step(o, dp, dg, lr);
    down(p, dp, n);
    rel(dp);
    rel(dg);
}

static hallu_optim_config cfg_of(hallu_optim_kind kind, double momentum, double wd)
{
    hallu_optim_config c;
    hallu_optim_config_default(&c, kind);
    c.momentum = momentum;
    c.weight_decay = wd;
    return c;
}

static void test_sgd(void)
{
    hallu_error err = {0};
    hallu_optimizer o;
    hallu_optim_config c = cfg_of(HALLU_OPTIM_SGD, 0, 0.1);
    float p[1] = {1.0f}, g[1] = {0.5f};
    CHECK_OK(hallu_optim_init(&o, g_be, &c, 1, NULL, 0, &err), &err);
    CHECK(o.num_slots == 0 && o.state.data == NULL);
    step_host(&o, p, g, 1, 0.1);
    CHECK_NEAR(p[0], 1.0 - 0.1 * (0.5 + 0.1 * 1.0), 1e-7);   /* 0.94 */
    hallu_optim_free(&o);

    /* Momentum 0.9: b1 = d1, b2 = 0.9 b1 + d2; nesterov uses d + 0.9 b. */
    for (int nesterov = 0; nesterov <= 1; nesterov++) {
        c = cfg_of(HALLU_OPTIM_SGD, 0.9, 0.0);
        c.nesterov = nesterov;
        CHECK_OK(hallu_optim_init(&o, g_be, &c, 1, NULL, 0, &err), &err);
        p[0] = 1.0f;
        g[0] = 1.0f;
        step_host(&o, p, g, 1, 0.1);
        double b = 1.0, want = 1.0 - 0.1 * (nesterov ? 1.0 + 0.9 * b : b);
        CHECK_NEAR(p[0], want, 1e-7);
        CHECK_NEAR(slot_at(&o, 0, 0), b, 1e-7);
        g[0] = -2.0f;
        step_host(&o, p, g, 1, 0.1);
        b = 0.9 * b - 2.0;
        want -= 0.1 * (nesterov ? -2.0 + 0.9 * b : b);
        CHECK_NEAR(p[0], want, 1e-6);
        CHECK_NEAR(slot_at(&o, 0, 0), b, 1e-6);
        CHECK(o.step == 2 && strcmp(hallu_optim_slot_name(&o, 0), "momentum_buffer") == 0);
        hallu_optim_free(&o);
    }

    /* Dampening 0.5 scales every d but the first. */
    c = cfg_of(HALLU_OPTIM_SGD, 0.5, 0.0);
    c.dampening = 0.5;
    CHECK_OK(hallu_optim_init(&o, g_be, &c, 1, NULL, 0, &err), &err);
    p[0] = 0.0f;
    g[0] = 1.0f;
    step_host(&o, p, g, 1, 1.0);
    step_host(&o, p, g, 1, 1.0);
    CHECK_NEAR(p[0], -(1.0 + (0.5 * 1.0 + 0.5 * 1.0)), 1e-7);
    hallu_optim_free(&o);
}

static void test_ranges(void)
{
    hallu_error err = {0};
    hallu_optimizer o;
    hallu_optim_config c = cfg_of(HALLU_OPTIM_SGD, 0, 0.5);
    c.exclude_bias_norm = 1;
    /* [0,2) weight, [3,4) bias; element 2 and 4 belong to no range: frozen. */
    hallu_param_range r[2] = {{3, 1, HALLU_RANGE_NO_DECAY}, {0, 2, 0}};
    float p[5] = {1, 1, 1, 1, 1}, g[5] = {1, 1, 1, 1, 1};
    CHECK_OK(hallu_optim_init(&o, g_be, &c, 5, r, 2, &err), &err);
    CHECK(o.ranges[0].offset == 0);   /* sorted */
    step_host(&o, p, g, 5, 0.1);
    CHECK_NEAR(p[0], 1 - 0.1 * 1.5, 1e-7);
    CHECK_NEAR(p[1], 1 - 0.1 * 1.5, 1e-7);
    CHECK(p[2] == 1.0f && p[4] == 1.0f);
    CHECK_NEAR(p[3], 1 - 0.1 * 1.0, 1e-7);   /* bias: no decay */
    hallu_optim_free(&o);

    c.exclude_bias_norm = 0;
    p[3] = 1;
    CHECK_OK(hallu_optim_init(&o, g_be, &c, 5, r, 2, &err), &err);
    step_host(&o, p, g, 5, 0.1);
    CHECK_NEAR(p[3], 1 - 0.1 * 1.5, 1e-7);
    hallu_optim_free(&o);

    hallu_param_range bad[2] = {{0, 3, 0}, {2, 2, 0}};
    CHECK(hallu_optim_init(&o, g_be, &c, 5, bad, 2, &err) == HALLU_ERR_INVALID_ARG && strstr(err.msg, "overlaps"));
    hallu_param_range out[1] = {{4, 2, 0}};
    CHECK(hallu_optim_init(&o, g_be, &c, 5, out, 1, &err) == HALLU_ERR_INVALID_ARG && strstr(err.msg, "outside"));
    hallu_optim_free(&o);   /* zeroed by the failed init */
}

/* A FIXED_LR range steps exactly as an optimizer of its own at fixed_lr would,
 * for every kind; without fixed_lr the flag changes nothing. */
static void test_fixed_lr(void)
{
    hallu_error err = {0};
    for (int kind = HALLU_OPTIM_SGD; kind <= HALLU_OPTIM_ADAMW; kind++) {
        hallu_optim_config c = cfg_of((hallu_optim_kind)kind, kind == HALLU_OPTIM_ADAMW ? 0 : 0.9, 0.01);
        c.fixed_lr = 0.05;
        hallu_param_range r[2] = {{0, 3, 0}, {3, 2, HALLU_RANGE_FIXED_LR}};
        float p[5] = {1, -2, 3, 0.5f, -1}, g[5] = {0.3f, 0.1f, -0.2f, 0.4f, -0.6f};
        float q[5], gq[5];
        memcpy(q, p, sizeof p);
        memcpy(gq, g, sizeof g);
        hallu_optimizer o, a, b;
        hallu_optim_config plain = c;
        plain.fixed_lr = 0;
        CHECK_OK(hallu_optim_init(&o, g_be, &c, 5, r, 2, &err), &err);
        CHECK_OK(hallu_optim_init(&a, g_be, &plain, 3, NULL, 0, &err), &err);
        CHECK_OK(hallu_optim_init(&b, g_be, &plain, 2, NULL, 0, &err), &err);
        float *dp = up(p, 5), *dg = up(g, 5), *dq = up(q, 5), *dgq = up(gq, 5);
        for (int step = 0; step < 3; step++) {
            double lr = 0.2 / (step + 1);
            hallu_optim_step(&o, dp, dg, lr);
            hallu_optim_step(&a, dq, dgq, lr);
            hallu_optim_step(&b, dq + 3, dgq + 3, 0.05);
        }
        down(p, dp, 5);
        down(q, dq, 5);
        rel(dp);
        rel(dg);
        rel(dq);
        rel(dgq);
        CHECK_MSG(memcmp(p, q, sizeof p) == 0, "%s: fixed-lr range differs from a separate optimizer",
                  hallu_optim_kind_name((hallu_optim_kind)kind));
        hallu_optim_free(&o);
        hallu_optim_free(&a);
        hallu_optim_free(&b);
    }
    hallu_optim_config c = cfg_of(HALLU_OPTIM_SGD, 0, 0);
    c.fixed_lr = -1;
    CHECK(hallu_optim_config_check(&c, &err) == HALLU_ERR_INVALID_ARG && strstr(err.msg, "fixed_lr"));
}

static void test_lars(void)
{
    hallu_error err = {0};
    hallu_optimizer o;
    hallu_optim_config c = cfg_of(HALLU_OPTIM_LARS, 0, 0.1);
    c.lars_eta = 0.02;
    /* weight [3, 4] (norm 5), grad [0, 1] (norm 1); bias [2] with grad [1]. */
    hallu_param_range r[2] = {{0, 2, 0}, {2, 1, HALLU_RANGE_NO_DECAY}};
    float p[3] = {3, 4, 2}, g[3] = {0, 1, 1};
    CHECK_OK(hallu_optim_init(&o, g_be, &c, 3, r, 2, &err), &err);
    step_host(&o, p, g, 3, 0.5);
    double ratio = 0.02 * 5.0 / (1.0 + 0.1 * 5.0 + 1e-8);
    CHECK_NEAR(p[0], 3 - 0.5 * ratio * (0 + 0.1 * 3), 1e-6);
    CHECK_NEAR(p[1], 4 - 0.5 * ratio * (1 + 0.1 * 4), 1e-6);
    CHECK_NEAR(p[2], 2 - 0.5 * 1.0, 1e-7);   /* excluded: raw gradient, no decay */
    hallu_optim_free(&o);

    /* Zero gradient norm: d = g (zero), no decay even on a weight. */
    float q[3] = {3, 4, 2}, z[3] = {0, 0, 0};
    CHECK_OK(hallu_optim_init(&o, g_be, &c, 3, r, 2, &err), &err);
    step_host(&o, q, z, 3, 0.5);
    CHECK(q[0] == 3 && q[1] == 4 && q[2] == 2);
    hallu_optim_free(&o);

    /* clip_lr: ratio / lr capped at 1. */
    c.lars_clip_lr = 1;
    c.lars_eta = 1.0;
    float s[2] = {3, 4}, h[2] = {0, 1};
    CHECK_OK(hallu_optim_init(&o, g_be, &c, 2, NULL, 0, &err), &err);
    step_host(&o, s, h, 2, 0.5);   /* ratio 5/1.5 = 3.3 -> /0.5 -> capped 1 */
    CHECK_NEAR(s[1], 4 - 0.5 * (1 + 0.1 * 4), 1e-6);
    hallu_optim_free(&o);
}

static void test_adamw(void)
{
    hallu_error err = {0};
    hallu_optimizer o;
    hallu_optim_config c = cfg_of(HALLU_OPTIM_ADAMW, 0, 0.1);
    float p[1] = {1.0f}, g[1] = {2.0f};
    CHECK_OK(hallu_optim_init(&o, g_be, &c, 1, NULL, 0, &err), &err);
    CHECK(o.num_slots == 2 && strcmp(hallu_optim_slot_name(&o, 1), "exp_avg_sq") == 0);
    step_host(&o, p, g, 1, 0.01);
    /* Step 1: bias-corrected m = g, v = g^2, so the step is lr * g / (|g| + eps). */
    double want = 1.0 * (1 - 0.01 * 0.1) - 0.01 * 2.0 / (2.0 + 1e-8);
    CHECK_NEAR(p[0], want, 1e-7);
    CHECK_NEAR(slot_at(&o, 0, 0), 0.1 * 2.0, 1e-7);
    CHECK_NEAR(slot_at(&o, 1, 0), 0.001 * 4.0, 1e-9);
    g[0] = -1.0f;
    step_host(&o, p, g, 1, 0.01);
    double m = 0.9 * 0.2 + 0.1 * -1.0, v = 0.999 * 0.004 + 0.001 * 1.0;
    double mhat = m / (1 - 0.81), vhat = v / (1 - 0.999 * 0.999);
    want = want * (1 - 0.001) - 0.01 * mhat / (sqrt(vhat) + 1e-8);
    CHECK_NEAR(p[0], want, 1e-6);
    hallu_optim_free(&o);
}

static void test_schedules(void)
{
    hallu_error err = {0};
    hallu_lr_schedule s = {.kind = HALLU_LR_COSINE, .base_lr = 1.0, .total_steps = 10};
    CHECK_OK(hallu_lr_schedule_check(&s, &err), &err);
    CHECK_NEAR(hallu_lr_at(&s, 0), 1.0, 1e-12);
    CHECK_NEAR(hallu_lr_at(&s, 5), 0.5, 1e-12);
    CHECK_NEAR(hallu_lr_at(&s, 10), 0.0, 1e-12);
    CHECK_NEAR(hallu_lr_at(&s, 20), 0.0, 1e-12);
    s.warmup_steps = 2;
    s.min_lr = 0.1;
    CHECK_NEAR(hallu_lr_at(&s, 0), 0.5, 1e-12);
    CHECK_NEAR(hallu_lr_at(&s, 1), 1.0, 1e-12);
    CHECK_NEAR(hallu_lr_at(&s, 2), 1.0, 1e-12);
    CHECK_NEAR(hallu_lr_at(&s, 6), 0.55, 1e-12);
    CHECK_NEAR(hallu_lr_at(&s, 10), 0.1, 1e-12);
    s.total_steps = 2;
    CHECK(hallu_lr_schedule_check(&s, &err) == HALLU_ERR_INVALID_ARG);

    hallu_lr_schedule m = {.kind = HALLU_LR_MULTISTEP, .base_lr = 10, .milestones = {3, 6}, .num_milestones = 2,
                           .gamma = 0.1};
    CHECK_OK(hallu_lr_schedule_check(&m, &err), &err);
    CHECK_NEAR(hallu_lr_at(&m, 2), 10, 1e-12);
    CHECK_NEAR(hallu_lr_at(&m, 3), 1, 1e-12);
    CHECK_NEAR(hallu_lr_at(&m, 5), 1, 1e-12);
    CHECK_NEAR(hallu_lr_at(&m, 6), 0.1, 1e-12);
    m.milestones[1] = 1;
    CHECK(hallu_lr_schedule_check(&m, &err) == HALLU_ERR_INVALID_ARG);

    hallu_lr_schedule k = {.kind = HALLU_LR_CONSTANT, .base_lr = 0.3, .warmup_steps = 3};
    CHECK_NEAR(hallu_lr_at(&k, 0), 0.1, 1e-12);
    CHECK_NEAR(hallu_lr_at(&k, 100), 0.3, 1e-12);
}

static void test_clip(void)
{
    float g[2] = {3, 4}, n = 0;
    float *dg = up(g, 2), *dn = up(&n, 1);
    hallu_clip_grad_norm(g_be, dg, dn, 2, 1.0f);
    down(&n, dn, 1);
    down(g, dg, 2);
    CHECK_NEAR(n, 5.0, 1e-6);
    CHECK_NEAR(g[0], 0.6, 1e-6);
    CHECK_NEAR(g[1], 0.8, 1e-6);
    hallu_clip_grad_norm(g_be, dg, dn, 2, 10.0f);
    down(&n, dn, 1);
    down(g, dg, 2);
    CHECK_NEAR(n, 1.0, 1e-6);
    CHECK_NEAR(g[1], 0.8, 1e-6);
    rel(dg);
    rel(dn);

    /* Large buffer across chunk/group boundaries: exact sum, same bits on
     * backends of 1 and 2 threads. */
    int64_t big = ((int64_t)1 << 21) + 12345;
    float *x = malloc((size_t)big * sizeof *x);
    for (int64_t i = 0; i < big; i++)
        x[i] = (i % 7 == 0) ? 2.0f : 1.0f;
    int64_t sevens = (big + 6) / 7;
    double want = sqrt((double)(big - sevens) + 4.0 * (double)sevens);
    float norms[2] = {0, 0};
    for (int t = 0; t < 2; t++) {
        hallu_error err = {0};
        hallu_backend *be = NULL;
        CHECK_OK(test_backend_create(&be, t + 1, &err), &err);
        float *dx = be ? be->ops->alloc(be, (size_t)big * sizeof(float), "x", &err) : NULL;
        float *dnorm = dx ? be->ops->alloc(be, sizeof(float), "norm", &err) : NULL;
        if (dnorm) {
            CHECK_OK(hallu_backend_upload(be, dx, x, (size_t)big * sizeof(float), &err), &err);
            hallu_l2_norm(be, dnorm, dx, big);
            CHECK_OK(hallu_backend_download(be, &norms[t], dnorm, sizeof(float), &err), &err);
            be->ops->release(be, dnorm);
        }
        if (dx)
            be->ops->release(be, dx);
        hallu_backend_free(be);
    }
    CHECK(norms[0] == norms[1]);
    CHECK_NEAR(norms[0], want, 1e-6 * want);
    free(x);
}

static void test_config_and_params(void)
{
    hallu_error err = {0};
    hallu_optim_config c;
    CHECK_OK(hallu_optim_parse("lars", &c, &err), &err);
    CHECK(c.kind == HALLU_OPTIM_LARS && c.exclude_bias_norm && c.lars_eta == 0.02);
    CHECK(hallu_optim_parse("adam", &c, &err) == HALLU_ERR_INVALID_ARG && strstr(err.msg, "adam"));
    hallu_optim_config_default(&c, HALLU_OPTIM_SGD);
    c.nesterov = 1;
    c.dampening = 0.1;
    CHECK(hallu_optim_config_check(&c, &err) == HALLU_ERR_INVALID_ARG && strstr(err.msg, "nesterov"));
    c.dampening = 0;
    c.weight_decay = -1;
    CHECK(hallu_optim_config_check(&c, &err) == HALLU_ERR_INVALID_ARG);

    hallu_params ps;
    hallu_params_init(&ps);
    int64_t wshape[2] = {2, 3}, bshape[1] = {3};
    int64_t w = hallu_params_add(&ps, "fc", "weight", 0, 2, wshape, &err);
    int64_t b = hallu_params_add(&ps, "fc", "bias", HALLU_TENSOR_NO_DECAY, 1, bshape, &err);
    CHECK_OK(hallu_params_alloc(&ps, g_be, &err), &err);
    g_be->ops->fill(g_be, ps.param, 1.0f, ps.trainable_numel);
    g_be->ops->fill(g_be, ps.grad, 0.0f, ps.trainable_numel);
    hallu_optim_config_default(&c, HALLU_OPTIM_SGD);
    c.momentum = 0;
    c.weight_decay = 0.5;
    c.exclude_bias_norm = 1;
    hallu_optimizer *o = NULL;
    CHECK_OK(hallu_optimizer_create(&o, &c, &ps, &err), &err);
    CHECK(o && o->num_ranges == 2);
    if (o)
        hallu_optimizer_step(o, &ps, 1.0);
    float pw = 0, pb = 0;
    down(&pw, ps.param + w, 1);
    down(&pb, ps.param + b, 1);
    CHECK_NEAR(pw, 0.5, 1e-7);   /* decayed */
    CHECK_NEAR(pb, 1.0, 1e-7);   /* bias excluded */
    hallu_optimizer_free(o);
    hallu_optimizer_free(NULL);

    /* An empty parameter set is valid and a step is a no-op. */
    hallu_optimizer e;
    hallu_optim_config_default(&c, HALLU_OPTIM_ADAMW);
    CHECK_OK(hallu_optim_init(&e, g_be, &c, 0, NULL, 0, &err), &err);
    hallu_optim_step(&e, NULL, NULL, 0.1);
    CHECK(e.step == 1 && e.state.data == NULL);
    hallu_optim_free(&e);
    hallu_optim_config_default(&c, HALLU_OPTIM_LARS);
    CHECK_OK(hallu_optim_init(&e, g_be, &c, 0, NULL, 0, &err), &err);
    hallu_optim_step(&e, NULL, NULL, 0.1);
    CHECK(e.step == 1);
    hallu_optim_free(&e);
    hallu_params_free(&ps);
}

int main(void)
{
    hallu_error err = {0};
    if (test_backend_create(&g_be, 1, &err) != HALLU_OK)
        return 1;
    test_sgd();
    test_ranges();
    test_fixed_lr();
    test_lars();
    test_adamw();
    test_schedules();
    test_clip();
    test_config_and_params();
    CHECK_OK(hallu_backend_check(g_be, &err), &err);
    hallu_backend_free(g_be);
    return check_summary();
}
