/* PyTorch parity of the self-supervised methods (tools/ref_ssl.py): for each
 * configuration, load the reference weights and views, run one hallu_ssl_step
 * and compare the loss and EVERY parameter gradient, then run 3 SGD steps
 * (momentum 0.9, lr 0.05, wd 5e-4, written here over the flat block; MoCo with
 * hallu_ssl_after_step) and compare the losses. Steps 2 and 3 start from the
 * reference's weights, the first after checking that ours agree (a ReLU flipped
 * by rounding would otherwise grow through the updates; the momentum encoder,
 * queue and pointer stay ours, so their bookkeeping is what is tested).
 * Error = ||hallu - torch|| / max(||torch||, floor): floor 1e-12 for gradients,
 * 1 for losses (a loss is a mean of O(1) terms, log-probabilities or cosines;
 * SimSiam's sits near 0 by cancellation, where a relative error says nothing).
 * Every tensor must be within 1e-4. The reference is float64 on seeds where
 * PyTorch's float32 agrees with it (tools/ref_ssl.py), so a ReLU that sits
 * within rounding of its kink does not decide the outcome.
 * Runs on the test backend (HALLU_TEST_DEVICE): views are uploaded, gradients
 * and parameters downloaded, and the SGD steps run on a staged host copy.
 * --bf16 (issue 28): the backend computes convolutions in bf16 and the
 * peer is PyTorch's bf16 autocast step on the same weights and views
 * (tools/ref_ssl_bf16.py). The first step's loss must be within 1e-2 of
 * PyTorch's bf16 loss. Gradients: on these small batches bf16's rounding
 * moves the deep layers' gradients far from the exact fp32 ones, PyTorch's
 * own by 30-80% (their gradient is a small difference of large terms; not only
 * here: tools/bf16_gradient_conditioning.py finds autocast's conv-weight
 * gradients 37-53% from exact at 16 images of 32x32, 37% for a plain
 * supervised ResNet-18 step on 32, and still 8-9% (median tensor; worst
 * 11-14%) from a trained SimCLR + Hallucinator model on 32 and 128 real
 * CIFAR-10 images), and two
 * bf16 implementations round at different places, so each gradient's error
 * against the exact reference must stay within 2 x PyTorch autocast's error
 * + 1e-3 (as accurate as autocast); both figures are printed. Skipped (77) on
 * a CPU without bf16 instructions.
 * Usage: parity_ssl DIR [--bf16] (DIR holding ref_ssl[_bf16]_<name>.safetensors) */
#include "check.h"
#include "test_backend.h"
#include "testutil.h"
#include "hallu/io.h"
#include "hallu/ssl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL 1e-4

static const char *const configs[] = {
    "simclr", "simclr_hal", "mocov1", "mocov1_hal", "mocov2", "mocov2_hal", "simsiam", "simsiam_hal",
    "simclr_hal_residual_mask", "mocov2_hal_enqdup", "simsiam_hal_residual",
};
static const char *const bf16_configs[] = { "simclr_hal", "mocov2_hal", "simsiam_hal" };

/* The mode's file prefix, tolerances (gradients, loss) and steps compared. */
static const char *file_prefix = "ref_ssl_";
static int bf16_mode;
static double worst_ratio;   /* bf16: hallu's gradient error / PyTorch autocast's, worst tensor */
static double tol_grad = TOL, tol_loss = TOL, worst_loss;
static int steps_compared = 3;

static double worst;

static int compare(const char *cfg, const char *name, const float *got, const float *want, int64_t n, double floor)
{
    tu_diff d = tu_compare_ff(got, want, (size_t)n, floor);
    double rel = d.rel, maxabs = d.maxabs, tol = floor >= 1.0 ? tol_loss : tol_grad;
    int ok = rel <= tol && isfinite(rel);
    if (floor >= 1.0)
        worst_loss = rel > worst_loss ? rel : worst_loss;
    else
        worst = rel > worst ? rel : worst;
    printf("  %-24s %-52s rel %.2e  maxabs %.2e%s\n", cfg, name, rel, maxabs, ok ? "" : "  FAIL");
    return ok;
}

static double meta_num(const hallu_safetensors *st, const char *key)
{
    const char *v = hallu_safetensors_meta(st, key);
    return v ? atof(v) : NAN;
}

static hallu_status configure(hallu_ssl_config *cfg, const hallu_safetensors *st, hallu_error *err)
{
    hallu_method_kind method;
    hallu_status s = hallu_method_parse(hallu_safetensors_meta(st, "method"), &method, err);
    if (s != HALLU_OK)
        return s;
    hallu_ssl_config_default(cfg, method);
    cfg->hallucinator = (int)meta_num(st, "hallucinator");
    cfg->hal_init = meta_num(st, "residual") > 0 ? HALLU_HAL_INIT_RESIDUAL : HALLU_HAL_INIT_REFERENCE;
    cfg->mask_duplicates = (int)meta_num(st, "mask_duplicates");
    cfg->enqueue_duplicates = (int)meta_num(st, "enqueue_duplicates");
    cfg->fixed_ratio = (float)meta_num(st, "ratio");
    cfg->queue_size = (int)meta_num(st, "queue_size");
    cfg->momentum = (float)meta_num(st, "momentum");
    cfg->temperature = (float)meta_num(st, "temperature");
    cfg->proj_dim = (int)meta_num(st, "proj_dim");
    cfg->pred_hidden = (int)meta_num(st, "pred_hidden");
    return HALLU_OK;
}

/* MoCo: the reference's initial queue replaces ours. */
static hallu_status load_queue(hallu_ssl *ssl, const hallu_safetensors *st, hallu_error *err)
{
    for (int i = 0; i < hallu_ssl_state_count(ssl); i++) {
        hallu_ssl_blob b;
        hallu_status s = hallu_ssl_state_get(ssl, i, &b, err);
        if (s == HALLU_OK && strcmp(b.name, "ssl.queue") == 0)
            s = hallu_safetensors_copy(st, "queue", HALLU_DTYPE_F32, b.data, (int64_t)(b.nbytes / 4), err);
        if (s != HALLU_OK)
            return s;
    }
    return hallu_ssl_state_commit(ssl, err);
}

typedef struct run {
    hallu_params ps;
    hallu_ssl *ssl;
    hallu_buffer view1, view2;    /* device */
    float *velocity, *grad;       /* host: SGD's momentum, the downloaded gradient */
    int n;
} run;

static hallu_status setup(run *r, hallu_backend *be, const hallu_safetensors *st, hallu_error *err)
{
    hallu_ssl_config cfg;
    hallu_status s = configure(&cfg, st, err);
    if (s == HALLU_OK)
        s = hallu_ssl_create(&r->ssl, &cfg, &r->ps, be, err);
    if (s == HALLU_OK)
        s = hallu_params_alloc(&r->ps, be, err);
    if (s != HALLU_OK)
        return s;
    s = hallu_ssl_init_weights(r->ssl, &r->ps, 7, err);
    if (s == HALLU_OK)
        s = hallu_params_load(&r->ps, st, "", "init.", 1, err);
    if (s == HALLU_OK && hallu_ssl_key_params(r->ssl)) {
        s = hallu_params_load(hallu_ssl_key_params(r->ssl), st, "", "init.", 0, err);
        if (s == HALLU_OK)
            s = load_queue(r->ssl, st, err);
    }
    const hallu_st_tensor *v = hallu_safetensors_find(st, "view1");
    if (s == HALLU_OK && (!v || v->ndim != 4 || v->shape[3] != 3))
        s = hallu_error_set(err, HALLU_ERR_FORMAT, "view1 missing or not [n][h][w][3]");
    if (s != HALLU_OK)
        return s;
    r->n = (int)v->shape[0];
    float *host = malloc((size_t)v->numel * sizeof(float));
    r->velocity = calloc((size_t)r->ps.trainable_numel + 1, sizeof(float));
    r->grad = calloc((size_t)r->ps.trainable_numel + 1, sizeof(float));
    if (!host || !r->velocity || !r->grad) {
        free(host);
        return hallu_error_set(err, HALLU_ERR_OOM, "parity_ssl: out of memory");
    }
    const char *names[2] = { "view1", "view2" };
    hallu_buffer *views[2] = { &r->view1, &r->view2 };
    for (int i = 0; i < 2 && s == HALLU_OK; i++) {
        s = hallu_buffer_alloc(views[i], be, HALLU_DTYPE_F32, v->numel, names[i], err);
        if (s == HALLU_OK)
            s = hallu_safetensors_copy(st, names[i], HALLU_DTYPE_F32, host, v->numel, err);
        if (s == HALLU_OK)
            s = hallu_backend_upload(be, views[i]->data, host, (size_t)v->numel * sizeof(float), err);
    }
    free(host);
    if (s == HALLU_OK)
        s = hallu_ssl_plan(r->ssl, be, r->n, (int)v->shape[1], (int)v->shape[2], err);
    return s;
}

/* PyTorch SGD: buf = momentum * buf + (g + wd * p); p -= lr * buf (on the
 * staged host copy; r->grad holds the downloaded gradient). */
static hallu_status sgd(run *r, double lr, double momentum, double wd, hallu_error *err)
{
    hallu_params *ps = &r->ps;
    hallu_status s = hallu_params_stage(ps, err);
    if (s != HALLU_OK)
        return s;
    for (int64_t i = 0; i < ps->trainable_numel; i++) {
        float g = r->grad[i] + (float)wd * ps->host_param[i];
        r->velocity[i] = (float)momentum * r->velocity[i] + g;
        ps->host_param[i] -= (float)lr * r->velocity[i];
    }
    return hallu_params_commit(ps, err);
}

/* Every trainable tensor of `flat` (a host copy of ps.grad or ps.param)
 * against the reference's prefix + name. */
/* bf16: each gradient's distance from the exact reference (st) against
 * PyTorch autocast's (peer). */
static int compare_bf16(const char *cfg, const run *r, const float *flat, const hallu_safetensors *st,
                        const hallu_safetensors *peer)
{
    int ok = 1;
    for (int i = 0; i < r->ps.num_trainable; i++) {
        const hallu_tensor_info *t = &r->ps.trainable[i];
        char name[HALLU_NAME_MAX + 16];
        snprintf(name, sizeof name, "grad.%s", t->name);
        const hallu_st_tensor *exact = hallu_safetensors_find(st, name), *torch = hallu_safetensors_find(peer, name);
        if (!exact || !torch || exact->numel != t->numel || torch->numel != t->numel) {
            printf("  %-24s %s missing in a reference  FAIL\n", cfg, name);
            ok = 0;
            continue;
        }
        float *want = malloc((size_t)t->numel * sizeof(float)), *tb = malloc((size_t)t->numel * sizeof(float));
        memcpy(want, exact->data, (size_t)t->numel * sizeof(float));
        memcpy(tb, torch->data, (size_t)t->numel * sizeof(float));
        double eh = tu_compare_ff(flat + t->offset, want, (size_t)t->numel, 1e-12).rel;
        double et = tu_compare_ff(tb, want, (size_t)t->numel, 1e-12).rel;
        double eht = tu_compare_ff(flat + t->offset, tb, (size_t)t->numel, 1e-12).rel;
        int good = isfinite(eh) && eh <= 2 * et + 1e-3;
        ok &= good;
        worst_ratio = et > 0 && eh / et > worst_ratio ? eh / et : worst_ratio;
        worst = eht > worst ? eht : worst;
        printf("  %-24s %-48s from exact: hallu bf16 %.2e, torch bf16 %.2e; hallu vs torch %.2e%s\n", cfg, name, eh,
               et, eht, good ? "" : "  FAIL");
        free(want);
        free(tb);
    }
    return ok;
}

static int compare_trainable(const char *cfg, const run *r, const float *flat, const char *prefix,
                             const hallu_safetensors *st)
{
    int ok = 1;
    for (int i = 0; i < r->ps.num_trainable; i++) {
        const hallu_tensor_info *t = &r->ps.trainable[i];
        char name[HALLU_NAME_MAX + 16];
        snprintf(name, sizeof name, "%s%s", prefix, t->name);
        const hallu_st_tensor *ft = hallu_safetensors_find(st, name);
        if (!ft || ft->numel != t->numel || ft->dtype != HALLU_DTYPE_F32) {
            printf("  %-24s %s missing or mismatched in the reference  FAIL\n", cfg, name);
            ok = 0;
            continue;
        }
        float *want = malloc((size_t)t->numel * sizeof(float));
        memcpy(want, ft->data, (size_t)t->numel * sizeof(float));
        ok &= compare(cfg, name, flat + t->offset, want, t->numel, 1e-12);
        free(want);
    }
    return ok;
}

static int run_config(const char *dir, const char *name, hallu_backend *be)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s%s.safetensors", dir, file_prefix, name);
    hallu_error err = { 0 };
    hallu_safetensors st = { 0 };
    run r = { 0 };
    hallu_params_init(&r.ps);
    int ok = 1;
    hallu_status s = hallu_safetensors_open(&st, path, &err);
    if (s == HALLU_OK)
        s = setup(&r, be, &st, &err);
    float want[3] = { 0 }, got[3] = { 0 }, loss1 = 0;
    if (s == HALLU_OK)
        s = hallu_safetensors_copy(&st, "losses", HALLU_DTYPE_F32, want, 3, &err);
    if (s == HALLU_OK)
        s = hallu_safetensors_copy(&st, "loss", HALLU_DTYPE_F32, &loss1, 1, &err);
    hallu_nn_ctx ctx = { .be = be, .ps = &r.ps, .training = 1 };
    for (int step = 0; step < steps_compared && s == HALLU_OK; step++) {
        hallu_ssl_stats stats;
        if (step > 0) {
            /* Start from the reference's weights (see tools/ref_ssl.py:
             * step<s>), keeping our own momentum encoder, queue and pointer.
             * After the first step (screened gradients) ours must agree with
             * them; after the second, an unscreened ReLU flip may move them
             * by lr x its gradient, so only the losses are compared. */
            char prefix[16];
            snprintf(prefix, sizeof prefix, "step%d.", step);
            if (step == 1) {
                s = hallu_backend_download(be, r.grad, r.ps.param, (size_t)r.ps.trainable_numel * sizeof(float),
                                           &err);   /* r.grad as scratch: the parameters */
                if (s != HALLU_OK)
                    break;
                ok &= compare_trainable(name, &r, r.grad, prefix, &st);
            }
            s = hallu_params_load(&r.ps, &st, "", prefix, 1, &err);
            if (s != HALLU_OK)
                break;
        }
        hallu_params_zero_grad(&r.ps);
        s = hallu_ssl_step(r.ssl, &ctx, hallu_buffer_f32(&r.view1), hallu_buffer_f32(&r.view2), r.n, &stats, &err);
        if (s == HALLU_OK)
            s = hallu_params_download_grad(&r.ps, r.grad, &err);
        if (s != HALLU_OK)
            break;
        got[step] = stats.loss;
        if (step == 0 && bf16_mode) {
            char peer_path[1024];
            snprintf(peer_path, sizeof peer_path, "%s/ref_ssl_bf16_%s.safetensors", dir, name);
            hallu_safetensors peer = { 0 };
            float peer_loss = 0;
            s = hallu_safetensors_open(&peer, peer_path, &err);
            if (s == HALLU_OK)
                s = hallu_safetensors_copy(&peer, "loss", HALLU_DTYPE_F32, &peer_loss, 1, &err);
            if (s == HALLU_OK) {
                printf("  %-24s loss hallu bf16 %.6f  torch bf16 %.6f  exact %.6f\n", name, stats.loss, peer_loss,
                       loss1);
                ok &= compare(name, "loss (vs torch bf16)", &stats.loss, &peer_loss, 1, 1.0);
                ok &= compare_bf16(name, &r, r.grad, &st, &peer);
            }
            hallu_safetensors_close(&peer);
        } else if (step == 0) {
            ok &= compare(name, "loss", &stats.loss, &loss1, 1, 1.0);
            ok &= compare_trainable(name, &r, r.grad, "grad.", &st);
        }
        s = sgd(&r, meta_num(&st, "sgd_lr"), meta_num(&st, "sgd_momentum"), meta_num(&st, "sgd_weight_decay"), &err);
        hallu_ssl_after_step(r.ssl, &ctx);
        if (s == HALLU_OK)
            s = hallu_backend_check(be, &err);
    }
    if (s == HALLU_OK && steps_compared == 3) {
        printf("  %-24s losses hallu %.6f %.6f %.6f  torch %.6f %.6f %.6f\n", name, got[0], got[1], got[2],
               want[0], want[1], want[2]);
        ok &= compare(name, "losses (3 SGD steps)", got, want, 3, 1.0);
    } else if (s == HALLU_OK) {
        printf("  %-24s loss hallu %.6f  torch %.6f\n", name, got[0], loss1);
    } else {
        fprintf(stderr, "%s: %s\n", name, err.msg);
        ok = 0;
    }
    hallu_ssl_free(r.ssl);
    hallu_params_free(&r.ps);
    hallu_buffer_free(&r.view1);
    hallu_buffer_free(&r.view2);
    free(r.velocity);
    free(r.grad);
    hallu_safetensors_close(&st);
    return ok;
}

int main(int argc, char **argv)
{
    int bf16 = argc == 3 && strcmp(argv[2], "--bf16") == 0;
    if (argc != 2 && !bf16) {
        fprintf(stderr, "usage: %s DIR [--bf16]\n", argv[0]);
        return 2;
    }
    hallu_error err = { 0 };
    hallu_backend *be = NULL;
    if (test_backend_create(&be, 2, &err) != HALLU_OK)
        return 1;
    const char *const *list = configs;
    size_t count = sizeof configs / sizeof configs[0];
    if (bf16) {
        hallu_status s = hallu_backend_set_precision(be, HALLU_PRECISION_BF16, &err);
        if (s == HALLU_ERR_UNSUPPORTED) {
            printf("skipped: %s\n", err.msg);
            hallu_backend_free(be);
            return 77;
        }
        CHECK_OK(s, &err);
        bf16_mode = 1;
        tol_grad = 5e-2;
        tol_loss = 1e-2;
        steps_compared = 1;
        list = bf16_configs;
        count = sizeof bf16_configs / sizeof bf16_configs[0];
    }
    for (size_t i = 0; i < count; i++)
        CHECK_MSG(run_config(argv[1], list[i], be), "configuration %s", list[i]);
    if (bf16)
        printf("bf16: worst loss error vs torch bf16 %.2e (tolerance %.0e); worst gradient hallu vs torch bf16 %.2e; "
               "worst ratio of errors from exact (hallu / torch) %.2f (tolerance 2 + 1e-3 absolute)\n", worst_loss,
               tol_loss, worst, worst_ratio);
    else
        printf("worst relative error: gradients %.2e (tolerance %.0e), losses %.2e (tolerance %.0e)\n", worst, tol_grad,
               worst_loss, tol_loss);
    hallu_backend_free(be);
    return check_summary();
}
