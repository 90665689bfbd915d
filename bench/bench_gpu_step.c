/* One SimCLR + Hallucinator training step through hallu's public API on any
 * device (--device cuda on the GPU machine; cpu works too), for
 * bench/gpu_step.py, which runs the same step in PyTorch on the same GPU.
 *
 * The step is what `hallu train --method simclr --hallucinator` runs each batch
 * (src/train/trainer.c): zero the gradients, hallu_ssl_step (both views in one
 * encoder pass of 2B images, projection head, the Hallucinator with the
 * residual wiring, NT-Xent over 4B rows, backward), SGD (momentum 0.9, weight
 * decay 5e-4) and hallu_ssl_after_step; the views are one fixed random batch
 * already on the device (no loader, no host-to-device copies: the PyTorch side
 * does the same), so this measures the device's work alone. Each step ends by
 * downloading one parameter float, which waits for every op of the step (one
 * stream); images/s = B / median step time (B source images, two views each).
 * Measured apart, after the steps: the trainer's input path for one batch
 * (two views of B x size x size x 3 bytes from the backend's staging memory,
 * uploaded, normalize_u8 into the float views, then a wait for the device),
 * median over 10 repetitions: "input_s", to set against the step.
 *
 * Prints one JSON line: {"device", "arch", "stem", "precision", "batch",
 * "size", "steps", "median_step_s", "images_per_s", "device_mib_peak",
 * "loss", "input_s"} or {"error": "..."}; exit 0, 3 when the device or precision is
 * unavailable here (a named error from hallu, e.g. "this build of hallu has no
 * CUDA backend" or no GPU), 1 on any other failure.
 *
 * usage: bench_gpu_step [--device cuda] [--precision fp32|bf16] [--arch resnet18]
 *          [--stem cifar] [--batch 512] [--size 32] [--steps 20] [--warmup 5]
 *          [--threads N] */
#include "hallu/augment.h"
#include "hallu/models.h"
#include "hallu/optim.h"
#include "hallu/rng.h"
#include "hallu/ssl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* JSON string body: the messages are hallu's own (no control characters), but quote safely anyway. */
static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            printf("\\u%04x", (unsigned char)*s);
        else
            putchar(*s);
    }
    putchar('"');
}

static int fail(int code, const char *what, const hallu_error *err)
{
    printf("{\"error\": ");
    char msg[HALLU_ERROR_MSG_MAX + 64];
    snprintf(msg, sizeof msg, "%s: %s", what, err->msg);
    json_str(msg);
    printf(", \"status\": %d}\n", (int)err->code);
    fflush(stdout);
    return code;
}

/* A device or precision this build/machine does not have: exit 3, not a crash. */
static int unavailable(hallu_status s)
{
    return s == HALLU_ERR_UNSUPPORTED || s == HALLU_ERR_BACKEND ? 3 : 1;
}

int main(int argc, char **argv)
{
    const char *device = "cuda", *precision_name = "fp32", *arch = "resnet18", *stem = "cifar";
    int batch = 512, size = 32, steps = 20, warmup = 5;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = ncpu > 0 ? (int)ncpu : 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "bench_gpu_step: %s needs a value (see the comment at the top of bench_gpu_step.c)\n", a);
            return 2;
        }
        if (strcmp(a, "--device") == 0) device = v;
        else if (strcmp(a, "--precision") == 0) precision_name = v;
        else if (strcmp(a, "--arch") == 0) arch = v;
        else if (strcmp(a, "--stem") == 0) stem = v;
        else if (strcmp(a, "--batch") == 0) batch = atoi(v);
        else if (strcmp(a, "--size") == 0) size = atoi(v);
        else if (strcmp(a, "--steps") == 0) steps = atoi(v);
        else if (strcmp(a, "--warmup") == 0) warmup = atoi(v);
        else if (strcmp(a, "--threads") == 0) threads = atoi(v);
        else {
            fprintf(stderr, "bench_gpu_step: unknown option %s\n", a);
            return 2;
        }
        i++;
    }
    if (batch < 2 || size < 8 || steps < 1 || warmup < 0 || threads < 1) {
        fprintf(stderr, "bench_gpu_step: expected --batch >= 2, --size >= 8, --steps >= 1, --warmup >= 0, --threads >= 1\n");
        return 2;
    }

    hallu_error err;
    hallu_error_clear(&err);
    hallu_precision precision;
    hallu_status s = hallu_precision_parse(precision_name, &precision, &err);
    if (s != HALLU_OK)
        return fail(2, "--precision", &err);
    hallu_backend *be = NULL;
    s = hallu_backend_create(device, threads, &be, &err);
    if (s != HALLU_OK)
        return fail(unavailable(s), device, &err);
    s = hallu_backend_set_precision(be, precision, &err);   /* before the model plans its convolutions */
    if (s != HALLU_OK) {
        hallu_backend_free(be);
        return fail(unavailable(s), precision_name, &err);
    }

    hallu_ssl_config sc;
    hallu_ssl_config_default(&sc, HALLU_METHOD_SIMCLR);
    sc.hallucinator = 1;
    sc.hal_init = HALLU_HAL_INIT_RESIDUAL;   /* hallu train's default, and ssl_cifar_torch.py's */
    sc.ratio_lo = 0.0f;
    sc.ratio_hi = 0.1f;
    sc.seed = 0;
    hallu_params ps;
    hallu_params_init(&ps);
    hallu_ssl *ssl = NULL;
    hallu_optimizer *opt = NULL;
    hallu_optim_config oc;
    hallu_optim_config_default(&oc, HALLU_OPTIM_SGD);
    oc.momentum = 0.9;
    oc.weight_decay = 5e-4;
    if ((s = hallu_resnet_parse_arch(arch, stem, &sc.backbone, &err)) != HALLU_OK ||
        (s = hallu_ssl_create(&ssl, &sc, &ps, be, &err)) != HALLU_OK ||
        (s = hallu_params_alloc(&ps, be, &err)) != HALLU_OK ||
        (s = hallu_ssl_init_weights(ssl, &ps, 0, &err)) != HALLU_OK ||
        (s = hallu_ssl_plan(ssl, be, batch, size, size, &err)) != HALLU_OK ||
        (s = hallu_optimizer_create(&opt, &oc, &ps, &err)) != HALLU_OK)
        return fail(s == HALLU_ERR_OOM ? 1 : unavailable(s), "setup", &err);

    /* Two fixed random views, NHWC, uploaded once. */
    size_t n = (size_t)batch * size * size * 3;
    float *host = malloc(n * sizeof(float));
    hallu_buffer views[2];
    memset(views, 0, sizeof views);
    if (!host)
        return fprintf(stderr, "bench_gpu_step: out of host memory\n"), 1;
    hallu_rng rng;
    hallu_rng_init(&rng, 0, 0);
    for (int v = 0; v < 2; v++) {
        for (size_t i = 0; i < n; i++)
            host[i] = (float)hallu_rng_normal(&rng);
        if ((s = hallu_buffer_alloc(&views[v], be, HALLU_DTYPE_F32, (int64_t)n, "bench views", &err)) != HALLU_OK ||
            (s = hallu_backend_upload(be, views[v].data, host, n * sizeof(float), &err)) != HALLU_OK)
            return fail(1, "views", &err);
    }
    free(host);

    double *secs = calloc((size_t)steps, sizeof(double));
    hallu_nn_ctx ctx = { .be = be, .ps = &ps, .training = 1 };
    float sync = 0;
    for (int i = -warmup; i < steps; i++) {
        double t0 = hallu_now();
        hallu_params_zero_grad(&ps);
        s = hallu_ssl_step(ssl, &ctx, hallu_buffer_f32(&views[0]), hallu_buffer_f32(&views[1]), batch, NULL, &err);
        if (s != HALLU_OK)
            return fail(1, "step", &err);
        hallu_optimizer_step(opt, &ps, 0.06);
        hallu_ssl_after_step(ssl, &ctx);
        /* one float back: waits for every op of the step on the device's stream */
        if ((s = hallu_backend_download(be, &sync, ps.param, sizeof sync, &err)) != HALLU_OK)
            return fail(1, "step", &err);
        if (i >= 0)
            secs[i] = hallu_now() - t0;
    }
    hallu_ssl_stats st;
    if ((s = hallu_ssl_read_stats(ssl, &st, &err)) != HALLU_OK)
        return fail(1, "loss", &err);

    /* The input path: bytes from staging memory, uploaded and normalised on the device. */
    enum { INPUT_REPS = 10 };
    double in_secs[INPUT_REPS];
    uint8_t *staged = hallu_backend_host_alloc(be, n, "bench staged views", &err);
    hallu_buffer bytes;
    if (!staged || (s = hallu_buffer_alloc(&bytes, be, HALLU_DTYPE_U8, (int64_t)n, "bench byte views", &err)) != HALLU_OK)
        return fail(1, "input", &err);
    for (size_t i = 0; i < n; i++)
        staged[i] = (uint8_t)hallu_rng_u32(&rng);
    for (int r = 0; r < INPUT_REPS; r++) {
        double t0 = hallu_now();
        for (int v = 0; v < 2; v++) {
            hallu_backend_upload(be, bytes.data, staged, n, &err);
            be->ops->normalize_u8(be, hallu_buffer_f32(&views[v]), bytes.data, (int64_t)n / 3, HALLU_CIFAR_MEAN,
                                  HALLU_CIFAR_STD);
        }
        hallu_backend_upload_wait(be);
        if ((s = hallu_backend_download(be, &sync, views[1].data, sizeof sync, &err)) != HALLU_OK)
            return fail(1, "input", &err);
        in_secs[r] = hallu_now() - t0;
    }
    hallu_buffer_free(&bytes);
    hallu_backend_host_free(be, staged);
    qsort(in_secs, INPUT_REPS, sizeof *in_secs, cmp_double);
    size_t live = 0, peak = 0;
    hallu_backend_memory(be, &live, &peak);
    qsort(secs, (size_t)steps, sizeof *secs, cmp_double);
    double med = steps % 2 ? secs[steps / 2] : 0.5 * (secs[steps / 2 - 1] + secs[steps / 2]);
    printf("{\"device\": ");
    json_str(device);
    printf(", \"backend\": ");
    json_str(be->ops->name);
    printf(", \"arch\": ");
    json_str(arch);
    printf(", \"stem\": ");
    json_str(stem);
    printf(", \"precision\": ");
    json_str(hallu_precision_name(precision));
    printf(", \"batch\": %d, \"size\": %d, \"steps\": %d, \"warmup\": %d, \"median_step_s\": %.6f, "
           "\"min_step_s\": %.6f, \"images_per_s\": %.2f, \"device_mib_peak\": %.1f, \"loss\": %.6g, "
           "\"input_s\": %.6f}\n",
           batch, size, steps, warmup, med, secs[0], batch / med, (double)peak / (1 << 20), st.loss,
           0.5 * (in_secs[INPUT_REPS / 2 - 1] + in_secs[INPUT_REPS / 2]));
    free(secs);
    for (int v = 0; v < 2; v++)
        hallu_buffer_free(&views[v]);
    hallu_optimizer_free(opt);
    hallu_ssl_free(ssl);
    hallu_params_free(&ps);
    hallu_backend_free(be);
    return 0;
}
