/* ResNet parity against PyTorch (tools/ref_resnet.py): forward logits and loss,
 * every parameter gradient, BN running statistics, and the loss over 5 SGD
 * steps. Fails when any tensor's ||hallu - torch|| / ||torch|| exceeds 1e-4.
 * Runs on the test backend (HALLU_TEST_DEVICE); results are read by download. */
#include "check.h"
#include "test_backend.h"
#include "testutil.h"
#include "hallu/models.h"
#include "hallu/optim.h"

#include <stdlib.h>
#include <string.h>

static const double TOLERANCE = 1e-4;

/* floor: a norm below which ||torch|| is treated as zero (see below); 0 = none. */
static int compare_floor(const char *what, const float *got, const float *want, int64_t n, double floor)
{
    tu_diff d = tu_compare_ff(got, want, (size_t)n, floor);
    double rel = d.rel, maxabs = d.maxabs;
    int ok = rel <= TOLERANCE;
    printf("%-4s %-48s rel %.3e  max|diff| %.3e\n", ok ? "ok" : "FAIL", what, rel, maxabs);
    CHECK_MSG(ok, "%s: relative error %.3e > %.0e", what, rel, TOLERANCE);
    return ok;
}

static int compare(const char *what, const float *got, const float *want, int64_t n)
{
    return compare_floor(what, got, want, n, 0.0);
}

/* A BN bias whose output reaches the next BN through a padding-free, (almost)
 * linear path has an analytically ~zero gradient (the next BN removes any
 * constant shift), so its reference is float noise and a relative error is
 * meaningless. Such a tensor is measured against the norm of its module's weight
 * gradient (the natural scale of a BN's gradients: dbeta = sum dy, dgamma =
 * sum dy*xhat) whenever its own norm is smaller; it must agree to 1e-4 of it. */
static double bias_floor(const hallu_params *ps, const hallu_safetensors *st, const char *grad_name)
{
    size_t len = strlen(grad_name);
    if (len < 5 || strcmp(grad_name + len - 5, ".bias") != 0)
        return 0.0;
    char weight[256];
    snprintf(weight, sizeof weight, "%.*s.weight", (int)(len - 5), grad_name);
    const hallu_st_tensor *t = hallu_safetensors_find(st, weight);
    if (!t || t->dtype != HALLU_DTYPE_F32)
        return 0.0;
    double s2 = 0;
    for (int64_t i = 0; i < t->numel; i++)
        s2 += (double)((const float *)t->data)[i] * ((const float *)t->data)[i];
    (void)ps;
    return sqrt(s2);
}

static const float *ref_f32(const hallu_safetensors *st, const char *name, int64_t numel)
{
    const hallu_st_tensor *t = hallu_safetensors_find(st, name);
    CHECK_MSG(t && t->dtype == HALLU_DTYPE_F32 && t->numel == numel, "reference tensor %s", name);
    return t && t->numel == numel ? (const float *)t->data : NULL;
}

/* NCHW (PyTorch) -> NHWC (hallu) */
static float *to_nhwc(const hallu_st_tensor *t)
{
    int n = (int)t->shape[0], c = (int)t->shape[1], h = (int)t->shape[2], w = (int)t->shape[3];
    float *out = malloc((size_t)t->numel * sizeof(float));
    const float *in = t->data;
    for (int b = 0; b < n; b++)
        for (int ch = 0; ch < c; ch++)
            for (int p = 0; p < h * w; p++)
                out[((size_t)b * h * w + p) * c + ch] = in[((size_t)b * c + ch) * h * w + p];
    return out;
}

/* The reference's "init." tensors into the parameters through the host staging
 * copy (the device blocks are written only by upload). */
static void load_init(hallu_params *ps, const hallu_safetensors *st)
{
    hallu_error err = { 0 };
    CHECK_OK(hallu_params_stage(ps, &err), &err);
    if (!ps->host_param)
        return;
    char name[HALLU_NAME_MAX + 8];
    for (int i = 0; i < ps->num_trainable + ps->num_state; i++) {
        int is_state = i >= ps->num_trainable;
        const hallu_tensor_info *t = is_state ? &ps->state[i - ps->num_trainable] : &ps->trainable[i];
        float *dst = (is_state ? ps->host_buffer : ps->host_param) + t->offset;
        snprintf(name, sizeof name, "init.%s", t->name);
        const hallu_st_tensor *f = hallu_safetensors_find(st, name);
        if (f && f->dtype == HALLU_DTYPE_I64 && (t->flags & HALLU_TENSOR_COUNTER)) {
            int64_t v = 0;
            CHECK_OK(hallu_safetensors_copy(st, name, HALLU_DTYPE_I64, &v, 1, &err), &err);
            *dst = (float)v;
        } else {
            CHECK_OK(hallu_safetensors_copy(st, name, HALLU_DTYPE_F32, dst, t->numel, &err), &err);
        }
    }
    CHECK_OK(hallu_params_commit(ps, &err), &err);
}

static void run_model(hallu_backend *be, const char *file, const char *arch, const char *stem)
{
    printf("== %s\n", file);
    hallu_error err;
    hallu_safetensors st;
    memset(&st, 0, sizeof st);
    hallu_status opened = hallu_safetensors_open(&st, file, &err);
    CHECK_OK(opened, &err);
    if (opened != HALLU_OK)
        return;
    const hallu_st_tensor *input = hallu_safetensors_find(&st, "input");
    const hallu_st_tensor *target = hallu_safetensors_find(&st, "target");
    CHECK(input && target && input->ndim == 4);
    int n = (int)input->shape[0], h = (int)input->shape[2], w = (int)input->shape[3];
    float *x = to_nhwc(input);
    int32_t *labels = malloc((size_t)n * sizeof *labels);
    for (int i = 0; i < n; i++) {
        int64_t v;
        memcpy(&v, (const char *)target->data + 8 * i, 8);
        labels[i] = (int32_t)v;
    }

    hallu_resnet_config cfg;
    CHECK_OK(hallu_resnet_parse_arch(arch, stem, &cfg, &err), &err);
    hallu_params ps;
    hallu_params_init(&ps);
    hallu_classifier clf;
    CHECK_OK(hallu_classifier_create(&clf, &cfg, 10, &ps, &err), &err);
    CHECK_OK(hallu_params_alloc(&ps, be, &err), &err);
    load_init(&ps, &st);
    CHECK_OK(hallu_classifier_plan(&clf, be, n, h, w, &err), &err);

    hallu_buffer xd = { 0 };
    CHECK_OK(hallu_buffer_alloc(&xd, be, HALLU_DTYPE_F32, input->numel, "input", &err), &err);
    CHECK_OK(hallu_backend_upload(be, xd.data, x, (size_t)input->numel * sizeof(float), &err), &err);
    float *host = malloc((size_t)(ps.trainable_numel > ps.state_numel ? ps.trainable_numel : ps.state_numel) *
                         sizeof *host);
    float *logits = malloc((size_t)n * 10 * sizeof *logits);

    hallu_nn_ctx ctx = { .be = be, .ps = &ps, .training = 1 };
    float loss = 0;
    hallu_params_zero_grad(&ps);
    CHECK_OK(hallu_classifier_step(&clf, &ctx, hallu_buffer_f32(&xd), labels, n, &loss, &err), &err);
    CHECK_OK(hallu_backend_download(be, logits, clf.logits, (size_t)n * 10 * sizeof(float), &err), &err);
    compare("logits", logits, ref_f32(&st, "logits", (int64_t)n * 10), (int64_t)n * 10);
    compare("loss", &loss, ref_f32(&st, "loss", 1), 1);
    char name[256];
    int compared = 0;
    CHECK_OK(hallu_params_download_grad(&ps, host, &err), &err);
    for (int i = 0; i < ps.num_trainable; i++) {
        const hallu_tensor_info *t = &ps.trainable[i];
        snprintf(name, sizeof name, "grad.%s", t->name);
        const float *want = ref_f32(&st, name, t->numel);
        if (want) {
            compare_floor(name, host + t->offset, want, t->numel, bias_floor(&ps, &st, name));
            compared++;
        }
    }
    CHECK_MSG(compared == ps.num_trainable, "compared %d of %d parameter gradients", compared, ps.num_trainable);
    CHECK_OK(hallu_backend_download(be, host, ps.buffer, (size_t)ps.state_numel * sizeof(float), &err), &err);
    for (int i = 0; i < ps.num_state; i++) {
        const hallu_tensor_info *t = &ps.state[i];
        if (t->flags & HALLU_TENSOR_COUNTER)
            continue;
        snprintf(name, sizeof name, "after.%s", t->name);
        const float *want = ref_f32(&st, name, t->numel);
        if (want)
            compare(name, host + t->offset, want, t->numel);
    }

    /* 5 SGD steps from the same initial weights. */
    load_init(&ps, &st);
    hallu_optimizer *opt = NULL;
    hallu_optim_config oc;
    hallu_optim_config_default(&oc, HALLU_OPTIM_SGD);
    oc.momentum = 0.9;
    oc.weight_decay = 5e-4;
    CHECK_OK(hallu_optimizer_create(&opt, &oc, &ps, &err), &err);
    float losses[5];
    for (int step = 0; step < 5 && opt; step++) {
        hallu_params_zero_grad(&ps);
        CHECK_OK(hallu_classifier_step(&clf, &ctx, hallu_buffer_f32(&xd), labels, n, &losses[step], &err), &err);
        hallu_optimizer_step(opt, &ps, 0.01);
    }
    compare("losses over 5 SGD steps", losses, ref_f32(&st, "losses", 5), 5);

    CHECK_OK(hallu_backend_check(be, &err), &err);
    hallu_optimizer_free(opt);
    hallu_buffer_free(&xd);
    free(host);
    free(logits);
    hallu_classifier_free(&clf, be);
    hallu_params_free(&ps);
    hallu_safetensors_close(&st);
    free(x);
    free(labels);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: parity_resnet REF_DIR\n");
        return 2;
    }
    hallu_error err;
    hallu_backend *be = NULL;
    CHECK_OK(test_backend_create(&be, 2, &err), &err);
    if (!be)
        return check_summary();
    char path[1024];
    snprintf(path, sizeof path, "%s/ref_resnet18_cifar.safetensors", argv[1]);
    run_model(be, path, "resnet18", "cifar");
    snprintf(path, sizeof path, "%s/ref_resnet50_imagenet.safetensors", argv[1]);
    run_model(be, path, "resnet50", "imagenet");
    hallu_backend_free(be);
    return check_summary();
}
