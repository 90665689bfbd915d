/* Writes hallu-initialised ResNet-18 (CIFAR stem) and ResNet-50 weights as
 * safetensors with torchvision names, plus a batch and hallu's eval-mode
 * features on it; tools/check_export.py loads the weights into torchvision
 * (strict=True) and compares features. Running stats are first moved away from
 * their init by two training-mode forwards, so eval mode uses real values. */
#include "check.h"
#include "hallu/models.h"
#include "hallu/rng.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void export_one(hallu_backend *be, const char *dir, const char *arch, const char *stem, int n, int size)
{
    hallu_error err;
    hallu_resnet_config cfg;
    CHECK_OK(hallu_resnet_parse_arch(arch, stem, &cfg, &err), &err);
    hallu_params ps;
    hallu_params_init(&ps);
    hallu_resnet *net = NULL;
    CHECK_OK(hallu_resnet_create(&net, &cfg, &ps, "", &err), &err);
    CHECK_OK(hallu_params_alloc(&ps, be, &err), &err);
    if (!net || !ps.param)
        return;
    CHECK_OK(hallu_resnet_init_weights(net, &ps, 7, &err), &err);
    CHECK_OK(hallu_resnet_plan(net, be, n, size, size, 1, &err), &err);

    size_t numel = (size_t)n * size * size * 3;
    float *x = malloc(numel * sizeof(float)), *nchw = malloc(numel * sizeof(float));
    hallu_rng rng;
    hallu_rng_init(&rng, 11, 0);
    for (size_t i = 0; i < numel; i++)
        x[i] = (float)hallu_rng_normal(&rng);
    const float *feat = NULL;
    hallu_nn_ctx train = { .be = be, .ps = &ps, .training = 1 }, eval = { .be = be, .ps = &ps, .training = 0 };
    for (int i = 0; i < 2; i++)
        CHECK_OK(hallu_resnet_forward(net, &train, 0, x, n, &feat, &err), &err);
    CHECK_OK(hallu_resnet_forward(net, &eval, 0, x, n, &feat, &err), &err);

    char path[1024];
    snprintf(path, sizeof path, "%s/%s_%s.safetensors", dir, arch, stem);
    CHECK_OK(hallu_params_save(&ps, path, NULL, NULL, NULL, 0, &err), &err);

    for (int b = 0; b < n; b++)   /* NHWC -> NCHW for PyTorch */
        for (int p = 0; p < size * size; p++)
            for (int c = 0; c < 3; c++)
                nchw[((size_t)b * 3 + c) * size * size + p] = x[((size_t)b * size * size + p) * 3 + c];
    int dim = hallu_resnet_feature_dim(net);
    hallu_st_entry io[2] = {
        { .name = "input", .dtype = HALLU_DTYPE_F32, .ndim = 4, .shape = { n, 3, size, size }, .data = nchw },
        { .name = "features", .dtype = HALLU_DTYPE_F32, .ndim = 2, .shape = { n, dim }, .data = feat },
    };
    snprintf(path, sizeof path, "%s/%s_%s.io.safetensors", dir, arch, stem);
    CHECK_OK(hallu_safetensors_write(path, io, 2, NULL, 0, &err), &err);
    free(x);
    free(nchw);
    hallu_resnet_free(net, be);
    hallu_params_free(&ps);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: export_features OUT_DIR\n");
        return 2;
    }
    mkdir(argv[1], 0755);   /* may exist already */
    hallu_error err;
    hallu_backend *be = NULL;
    CHECK_OK(hallu_backend_cpu_create(&be, 2, &err), &err);
    if (!be)
        return check_summary();
    export_one(be, argv[1], "resnet18", "cifar", 4, 32);
    export_one(be, argv[1], "resnet50", "imagenet", 2, 64);
    hallu_backend_free(be);
    return check_summary();
}
