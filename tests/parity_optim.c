/* Optimizers, schedules and clipping against PyTorch (tools/ref_optim.py):
 * 5 steps of each case from the same parameters and gradients; after every
 * step the parameters, and at the end the optimizer state, must agree to a
 * relative error of 1e-6 (max abs difference / max abs torch value).
 * The case table must match the script's. Runs on the test backend
 * (HALLU_TEST_DEVICE); device results are read by download. */
#include "hallu/io.h"
#include "hallu/optim.h"
#include "check.h"
#include "test_backend.h"

#include <stdlib.h>
#include <string.h>

enum { MAX_TENSORS = 16, STEPS = 5 };

#define REL_TOL 1e-6

typedef struct ref_case {
    const char *name;
    hallu_optim_kind kind;
    double momentum, weight_decay;
    int nesterov, exclude;
    double eta;
    int clip;
} ref_case;

static const ref_case CASES[] = {
    {"sgd_plain", HALLU_OPTIM_SGD, 0.0, 5e-4, 0, 0, 0, 0},
    {"sgd_momentum", HALLU_OPTIM_SGD, 0.9, 1e-4, 0, 0, 0, 0},
    {"sgd_nesterov_excl", HALLU_OPTIM_SGD, 0.9, 5e-2, 1, 1, 0, 0},
    {"adamw", HALLU_OPTIM_ADAMW, 0.0, 1e-2, 0, 0, 0, 0},
    {"adamw_excl", HALLU_OPTIM_ADAMW, 0.0, 5e-2, 0, 1, 0, 0},
    {"lars", HALLU_OPTIM_LARS, 0.9, 1e-2, 0, 1, 0.02, 0},
    {"lars_all_nesterov", HALLU_OPTIM_LARS, 0.9, 1e-3, 1, 0, 0.001, 0},
    {"lars_clip", HALLU_OPTIM_LARS, 0.9, 1e-2, 0, 1, 0.02, 1},
};

static hallu_backend *g_be;

/* A device buffer of n floats holding host (or zeros when host is NULL). */
static float *dev_floats(const float *host, int64_t n)
{
    hallu_error err = {0};
    float *d = g_be->ops->alloc(g_be, (size_t)(n > 0 ? n : 1) * sizeof(float), "test floats", &err);
    CHECK_OK(d ? HALLU_OK : err.code, &err);
    if (d && host && n > 0)
        CHECK_OK(hallu_backend_upload(g_be, d, host, (size_t)n * sizeof(float), &err), &err);
    return d;
}

static void to_host(float *host, const float *dev, int64_t n)
{
    hallu_error err = {0};
    CHECK_OK(hallu_backend_download(g_be, host, dev, (size_t)n * sizeof(float), &err), &err);
}

typedef struct ref_data {
    hallu_safetensors st;
    int64_t n;
    int num_ranges;
    hallu_param_range ranges[MAX_TENSORS];
    float *init, *grads;
    double lrs[STEPS];
} ref_data;

/* Loads a float tensor of exactly numel elements into a fresh buffer. */
static float *load_f32(const hallu_safetensors *st, const char *name, int64_t numel)
{
    float *x = malloc((size_t)(numel > 0 ? numel : 1) * sizeof *x);
    hallu_error err = {0};
    CHECK_OK(hallu_safetensors_copy(st, name, HALLU_DTYPE_F32, x, numel, &err), &err);
    return x;
}

/* Error relative to the tensor's scale: max |got - want| / max |want|. An
 * element-wise ratio would be meaningless where a value passes near zero (the
 * float error there is set by the magnitudes it was computed from). */
static double compare(const char *what, const float *got, const float *want, int64_t n)
{
    double scale = 0, diff = 0;
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - (double)want[i]);
        scale = fmax(scale, fabs((double)want[i]));
        if (!(e <= diff)) {
            diff = e;
            at = i;
        }
    }
    double worst = scale > 0 ? diff / scale : diff;
    CHECK_MSG(worst <= REL_TOL, "%s: rel error %.3g at %lld (%.9g vs torch %.9g)", what, worst, (long long)at,
              n ? got[at] : 0.0, n ? want[at] : 0.0);
    return worst;
}

static int load_ref(ref_data *d, const char *path)
{
    hallu_error err = {0};
    CHECK_OK(hallu_safetensors_open(&d->st, path, &err), &err);
    if (err.code != HALLU_OK)
        return 0;
    const hallu_st_tensor *sz = hallu_safetensors_find(&d->st, "layout.sizes");
    CHECK(sz && sz->numel > 0 && sz->numel <= MAX_TENSORS);
    if (!sz || sz->numel <= 0 || sz->numel > MAX_TENSORS)
        return 0;
    int64_t sizes[MAX_TENSORS], no_decay[MAX_TENSORS];
    d->num_ranges = (int)sz->numel;
    CHECK_OK(hallu_safetensors_copy(&d->st, "layout.sizes", HALLU_DTYPE_I64, sizes, sz->numel, &err), &err);
    CHECK_OK(hallu_safetensors_copy(&d->st, "layout.no_decay", HALLU_DTYPE_I64, no_decay, sz->numel, &err), &err);
    d->n = 0;
    for (int i = 0; i < d->num_ranges; i++) {
        d->ranges[i] = (hallu_param_range){d->n, sizes[i], no_decay[i] ? HALLU_RANGE_NO_DECAY : 0};
        d->n += sizes[i];
    }
    CHECK_OK(hallu_safetensors_copy(&d->st, "lrs", HALLU_DTYPE_F64, d->lrs, STEPS, &err), &err);
    d->init = load_f32(&d->st, "init", d->n);
    d->grads = load_f32(&d->st, "grads", STEPS * d->n);
    return err.code == HALLU_OK;
}

static void run_case(const ref_data *d, const ref_case *c)
{
    char name[128];
    hallu_error err = {0};
    hallu_optim_config cfg;
    hallu_optim_config_default(&cfg, c->kind);
    cfg.momentum = c->momentum;
    cfg.weight_decay = c->weight_decay;
    cfg.nesterov = c->nesterov;
    cfg.exclude_bias_norm = c->exclude;
    cfg.lars_eta = c->eta;
    cfg.lars_clip_lr = c->clip;
    hallu_optimizer o;
    CHECK_OK(hallu_optim_init(&o, g_be, &cfg, d->n, d->ranges, d->num_ranges, &err), &err);
    snprintf(name, sizeof name, "%s.params", c->name);
    float *want = load_f32(&d->st, name, STEPS * d->n);
    float *p = malloc((size_t)d->n * sizeof *p);
    float *dp = dev_floats(d->init, d->n), *dg = dev_floats(NULL, d->n);
    double worst = 0;
    for (int s = 0; s < STEPS; s++) {
        CHECK_OK(hallu_backend_upload(g_be, dg, d->grads + s * d->n, (size_t)d->n * sizeof(float), &err), &err);
        hallu_optim_step(&o, dp, dg, d->lrs[s]);
        to_host(p, dp, d->n);
        snprintf(name, sizeof name, "%s params after step %d", c->name, s + 1);
        worst = fmax(worst, compare(name, p, want + s * d->n, d->n));
    }
    snprintf(name, sizeof name, "%s.state", c->name);
    float *state = load_f32(&d->st, name, o.num_slots * d->n);
    float *got = malloc((size_t)(o.num_slots * d->n > 0 ? o.num_slots * d->n : 1) * sizeof *got);
    CHECK_OK(hallu_optim_state_download(&o, got, &err), &err);
    for (int k = 0; k < o.num_slots; k++) {
        snprintf(name, sizeof name, "%s %s", c->name, hallu_optim_slot_name(&o, k));
        worst = fmax(worst, compare(name, got + k * d->n, state + k * d->n, d->n));
    }
    printf("%-20s max rel error %.3g\n", c->name, worst);
    free(got);
    free(state);
    free(p);
    free(want);
    g_be->ops->release(g_be, dp);
    g_be->ops->release(g_be, dg);
    hallu_optim_free(&o);
}

static void check_schedule(const ref_data *d, const char *name, const hallu_lr_schedule *s)
{
    const hallu_st_tensor *t = hallu_safetensors_find(&d->st, name);
    CHECK_MSG(t && t->dtype == HALLU_DTYPE_F64, "missing %s", name);
    if (!t || t->dtype != HALLU_DTYPE_F64)
        return;
    hallu_error err = {0};
    CHECK_OK(hallu_lr_schedule_check(s, &err), &err);
    double worst = 0;
    for (int64_t i = 0; i < t->numel; i++) {
        double want;
        memcpy(&want, (const char *)t->data + i * 8, 8);
        double got = hallu_lr_at(s, i);
        double r = fabs(got - want) / fmax(fabs(want), 1e-12);
        CHECK_MSG(r <= 1e-9, "%s step %lld: %.12g vs torch %.12g", name, (long long)i, got, want);
        worst = fmax(worst, r);
    }
    printf("%-20s max rel error %.3g\n", name, worst);
}

static void check_schedules(const ref_data *d)
{
    hallu_lr_schedule cos = {.kind = HALLU_LR_COSINE, .base_lr = 0.5, .total_steps = 20, .min_lr = 0.001};
    check_schedule(d, "sched.cosine", &cos);
    hallu_lr_schedule warm = {.kind = HALLU_LR_COSINE, .base_lr = 0.5, .warmup_steps = 5, .total_steps = 20};
    check_schedule(d, "sched.cosine_warmup", &warm);
    hallu_lr_schedule ms = {.kind = HALLU_LR_MULTISTEP, .base_lr = 10.0, .milestones = {3, 7, 12},
                            .num_milestones = 3, .gamma = 0.1};
    check_schedule(d, "sched.multistep", &ms);
}

static void check_clip(const ref_data *d)
{
    const char *names[2] = {"clip", "noclip"};
    const float max_norm[2] = {1.0f, 1e3f};
    char name[64];
    for (int k = 0; k < 2; k++) {
        float *g = malloc((size_t)d->n * sizeof *g);
        for (int64_t i = 0; i < d->n; i++)
            g[i] = d->grads[i] * 3.0f;
        float *dg = dev_floats(g, d->n), *dtotal = dev_floats(NULL, 1), total = 0;
        hallu_clip_grad_norm(g_be, dg, dtotal, d->n, max_norm[k]);
        to_host(&total, dtotal, 1);
        to_host(g, dg, d->n);
        g_be->ops->release(g_be, dg);
        g_be->ops->release(g_be, dtotal);
        snprintf(name, sizeof name, "%s.total", names[k]);
        float *want_total = load_f32(&d->st, name, 1);
        CHECK_MSG(fabs(total - want_total[0]) <= REL_TOL * want_total[0], "%s: %.9g vs torch %.9g", name, total,
                  want_total[0]);
        snprintf(name, sizeof name, "%s.grad", names[k]);
        float *want = load_f32(&d->st, name, d->n);
        printf("%-20s max rel error %.3g\n", name, compare(name, g, want, d->n));
        free(want);
        free(want_total);
        free(g);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s optim_ref.safetensors\n", argv[0]);
        return 2;
    }
    hallu_error err = {0};
    if (test_backend_create(&g_be, 0, &err) != HALLU_OK)
        return 1;
    ref_data d;
    memset(&d, 0, sizeof d);
    if (load_ref(&d, argv[1])) {
        for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++)
            run_case(&d, &CASES[i]);
        check_schedules(&d);
        check_clip(&d);
    }
    free(d.init);
    free(d.grads);
    hallu_safetensors_close(&d.st);
    CHECK_OK(hallu_backend_check(g_be, &err), &err);
    hallu_backend_free(g_be);
    return check_summary();
}
