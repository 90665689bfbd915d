/* Training-step benchmark: ResNet-18 (CIFAR stem), 32x32, batch B, fp32,
 * forward + cross-entropy + backward + SGD (momentum, weight decay), T threads.
 * Runs hallu, then the same step in PyTorch (bench_train_torch.py: NCHW and
 * channels_last) in this one invocation, and prints images/s and the ratios,
 * plus hallu's fraction of this machine's fp32 GEMM peak (OpenBLAS sgemm
 * measured here, same threads). FLOPs are counted as for direct convolution
 * (the work PyTorch does); hallu's Winograd layers multiply 2.25x less, so the
 * fraction is an effective one and can pass 100%.
 * usage: bench_train_step [BATCH=256] [THREADS=2] [STEPS=5] [--no-torch] */
#include "hallu/models.h"
#include "hallu/optim.h"
#include "hallu/rng.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double sgemm_gflops(int threads)
{
    const int n = 2048;
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n), *c = malloc(sizeof(float) * n * n);
    for (int i = 0; i < n * n; i++) {
        a[i] = (float)(i % 13) * 0.01f;
        b[i] = (float)(i % 7) * 0.01f;
    }
    openblas_set_num_threads(threads);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    double best = 0;
    for (int r = 0; r < 3; r++) {
        double t0 = hallu_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double g = 2.0 * n * n * (double)n / (hallu_now() - t0) / 1e9;
        best = g > best ? g : best;
    }
    free(a);
    free(b);
    free(c);
    return best;
}

/* Multiply-adds of ResNet-18-cifar forward for one 32x32 image (conv + fc). */
static double resnet18_cifar_flops_per_image(void)
{
    double macs = 32.0 * 32 * 64 * 3 * 9;                     /* stem */
    int hw[4] = { 32, 16, 8, 4 }, ch[4] = { 64, 128, 256, 512 };
    for (int l = 0; l < 4; l++) {
        double s = (double)hw[l] * hw[l];
        int cin = l ? ch[l - 1] : 64;
        macs += s * ch[l] * cin * 9 + s * ch[l] * ch[l] * 9;   /* block 0 */
        if (l)
            macs += s * ch[l] * cin;                            /* downsample 1x1 */
        macs += 2 * s * ch[l] * ch[l] * 9;                      /* block 1 */
    }
    macs += 512.0 * 10;
    return 2.0 * macs;                                          /* flops */
}

static double hallu_images_per_s(int batch, int threads, int steps)
{
    hallu_error err;
    hallu_backend *be = NULL;
    hallu_resnet_config cfg;
    hallu_params ps;
    hallu_params_init(&ps);
    hallu_classifier clf;
    hallu_optimizer *opt = NULL;
    hallu_optim_config oc;
    hallu_optim_config_default(&oc, HALLU_OPTIM_SGD);
    oc.momentum = 0.9;
    oc.weight_decay = 5e-4;
    if (hallu_backend_cpu_create(&be, threads, &err) || hallu_resnet_parse_arch("resnet18", "cifar", &cfg, &err) ||
        hallu_classifier_create(&clf, &cfg, 10, &ps, &err) || hallu_params_alloc(&ps, &err) ||
        hallu_classifier_plan(&clf, be, batch, 32, 32, &err) || hallu_optimizer_create(&opt, &oc, &ps, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        exit(1);
    }
    hallu_classifier_init_weights(&clf, &ps, 0);
    float *x = malloc(sizeof(float) * batch * 32 * 32 * 3);
    int32_t *y = malloc(sizeof(int32_t) * batch);
    hallu_rng rng;
    hallu_rng_init(&rng, 0, 0);
    for (int i = 0; i < batch * 32 * 32 * 3; i++)
        x[i] = (float)hallu_rng_normal(&rng);
    for (int i = 0; i < batch; i++)
        y[i] = (int32_t)hallu_rng_below(&rng, 10);
    hallu_nn_ctx ctx = { .be = be, .ps = &ps, .training = 1 };
    double t0 = 0;
    float loss;
    for (int s = 0; s < steps + 1; s++) {
        if (s == 1)
            t0 = hallu_now();   /* step 0 is warm-up */
        hallu_params_zero_grad(&ps);
        hallu_classifier_step(&clf, &ctx, x, y, batch, &loss, &err);
        hallu_optimizer_step(opt, &ps, 0.01);
    }
    double ips = (double)batch * steps / (hallu_now() - t0);
    free(x);
    free(y);
    hallu_optimizer_free(opt);
    hallu_classifier_free(&clf, be);
    hallu_params_free(&ps);
    hallu_backend_free(be);
    return ips;
}

int main(int argc, char **argv)
{
    int batch = argc > 1 ? atoi(argv[1]) : 256, threads = argc > 2 ? atoi(argv[2]) : 2;
    int steps = argc > 3 ? atoi(argv[3]) : 5, torch = !(argc > 4 && strcmp(argv[4], "--no-torch") == 0);
    hallu_set_num_threads(threads);
    double peak = sgemm_gflops(threads);
    double ips = hallu_images_per_s(batch, threads, steps);
    double step_flops = 3.0 * resnet18_cifar_flops_per_image();   /* fwd + 2x bwd */
    printf("machine fp32 sgemm (OpenBLAS, %d threads): %.1f GFLOP/s\n", threads, peak);
    printf("hallu  ResNet-18/cifar batch %d: %.1f images/s = %.1f GFLOP/s = %.0f%% of sgemm peak"
           " (direct-convolution FLOPs)\n", batch, ips,
           ips * step_flops / 1e9, 100.0 * ips * step_flops / 1e9 / peak);
    if (!torch)
        return 0;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/bench/bench_train_torch.py %d %d %d 1", HALLU_SOURCE_DIR, batch,
             threads, steps);
    FILE *p = popen(cmd, "r");
    char line[256], layout[64];
    double tips;
    while (p && fgets(line, sizeof line, p))
        if (sscanf(line, "torch %63s %lf", layout, &tips) == 2)
            printf("torch  %-13s %.1f images/s = %.0f%% of sgemm peak; hallu / torch = %.2fx\n", layout, tips,
                   100.0 * tips * step_flops / 1e9 / peak, ips / tips);
    return p && pclose(p) == 0 ? 0 : 1;
}
