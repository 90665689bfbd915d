/* Grouped batch norm (ctx->bn_groups) and MoCo's single-process Shuffle BN.
 * Grouped BN must equal whole-batch BN run on each group alone (the backend op it
 * reuses has its own gradient check and PyTorch parity), with running statistics
 * moved by the mean of the groups' updates; a MoCo key must depend only on the
 * images of its shuffled group, and land in its own image's row. */
#include "check.h"
#include "test_backend.h"
#include "hallu/nn.h"
#include "hallu/ssl.h"
#include "ssl/ssl_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { ROWS = 12, C = 3, G = 3 };

static void fill(float *v, size_t n, uint64_t stream, double scale, double shift)
{
    hallu_rng rng;
    hallu_rng_init(&rng, 33, stream);
    for (size_t i = 0; i < n; i++)
        v[i] = (float)(shift + scale * hallu_rng_normal(&rng));
}

static void bn_setup(hallu_batchnorm *bn, hallu_params *ps, hallu_backend *be, hallu_error *err)
{
    hallu_params_init(ps);
    CHECK_OK(hallu_batchnorm_init(bn, ps, "bn", C, 1, err), err);
    CHECK_OK(hallu_params_alloc(ps, be, err), err);
    CHECK_OK(hallu_batchnorm_plan(bn, be, 2, err), err);
    CHECK_OK(hallu_params_stage(ps, err), err);
    hallu_batchnorm_reset(bn, ps, 1.0f);
    fill(ps->host_param + bn->weight, C, 1, 0.3, 1.0);
    fill(ps->host_param + bn->bias, C, 2, 0.3, 0.0);
    fill(ps->host_buffer + bn->running_mean, C, 3, 0.1, 0.0);
    CHECK_OK(hallu_params_commit(ps, err), err);
}

/* Device <-> host moves of n floats for the checks. */
static void put(hallu_backend *be, float *dev, const float *host, size_t n)
{
    hallu_error err = { 0 };
    CHECK_OK(hallu_backend_upload(be, dev, host, n * sizeof(float), &err), &err);
}

static void get(hallu_backend *be, float *host, const float *dev, size_t n)
{
    hallu_error err = { 0 };
    CHECK_OK(hallu_backend_download(be, host, dev, n * sizeof(float), &err), &err);
}

static void test_grouped_batchnorm(hallu_backend *be)
{
    hallu_error err = { 0 };
    hallu_batchnorm bn, ref;
    hallu_params ps, rps;
    bn_setup(&bn, &ps, be, &err);
    bn_setup(&ref, &rps, be, &err);
    if (!ps.param || !rps.param)
        return;
    enum { X, DY, Y, DX, RY, RDX, NUM_DEV };
    hallu_buffer dev[NUM_DEV];
    memset(dev, 0, sizeof dev);
    for (int k = 0; k < NUM_DEV; k++)
        CHECK_OK(hallu_buffer_alloc(&dev[k], be, HALLU_DTYPE_F32, ROWS * C, "bn test", &err), &err);
    float *x_d = dev[X].data, *dy_d = dev[DY].data, *y_d = dev[Y].data, *dx_d = dev[DX].data;
    float *ry_d = dev[RY].data, *rdx_d = dev[RDX].data;
    if (!rdx_d)
        return;
    float x[ROWS * C], dy[ROWS * C], y[ROWS * C], dx[ROWS * C], ry[ROWS * C], rdx[ROWS * C];
    fill(x, ROWS * C, 4, 2.0, 0.5);
    fill(dy, ROWS * C, 5, 1.0, 0.0);
    put(be, x_d, x, ROWS * C);
    put(be, dy_d, dy, ROWS * C);
    hallu_nn_ctx ctx = { .be = be, .ps = &ps, .training = 1, .bn_groups = G };
    hallu_params_zero_grad(&ps);
    hallu_batchnorm_forward(&bn, &ctx, 1, y_d, x_d, ROWS);
    hallu_batchnorm_backward(&bn, &ctx, 1, dx_d, dy_d, x_d, ROWS);

    /* Reference: each group alone through whole-batch BN, from the same running stats. */
    hallu_nn_ctx rctx = { .be = be, .ps = &rps, .training = 1 };
    float rm0[C], rv0[C], rm[C] = { 0 }, rv[C] = { 0 }, t[C];
    get(be, rm0, rps.buffer + ref.running_mean, C);
    get(be, rv0, rps.buffer + ref.running_var, C);
    hallu_params_zero_grad(&rps);
    int per = ROWS / G;
    for (int g = 0; g < G; g++) {
        put(be, rps.buffer + ref.running_mean, rm0, C);
        put(be, rps.buffer + ref.running_var, rv0, C);
        size_t off = (size_t)g * per * C;
        hallu_batchnorm_forward(&ref, &rctx, 0, ry_d + off, x_d + off, per);
        hallu_batchnorm_backward(&ref, &rctx, 0, rdx_d + off, dy_d + off, x_d + off, per);
        get(be, t, rps.buffer + ref.running_mean, C);
        for (int j = 0; j < C; j++)
            rm[j] += t[j] / G;
        get(be, t, rps.buffer + ref.running_var, C);
        for (int j = 0; j < C; j++)
            rv[j] += t[j] / G;
    }
    get(be, y, y_d, ROWS * C);
    get(be, dx, dx_d, ROWS * C);
    get(be, ry, ry_d, ROWS * C);
    get(be, rdx, rdx_d, ROWS * C);
    CHECK(memcmp(y, ry, sizeof y) == 0);
    CHECK(memcmp(dx, rdx, sizeof dx) == 0);
    float *grad = calloc((size_t)ps.trainable_numel, sizeof *grad), *rgrad = calloc((size_t)rps.trainable_numel,
                                                                                    sizeof *rgrad);
    CHECK_OK(hallu_params_download_grad(&ps, grad, &err), &err);
    CHECK_OK(hallu_params_download_grad(&rps, rgrad, &err), &err);
    float mean[C], var[C], batches = 0;
    get(be, mean, ps.buffer + bn.running_mean, C);
    get(be, var, ps.buffer + bn.running_var, C);
    get(be, &batches, ps.buffer + bn.num_batches_tracked, 1);
    for (int j = 0; j < C; j++) {
        CHECK_NEAR(grad[bn.weight + j], rgrad[ref.weight + j], 1e-6);
        CHECK_NEAR(grad[bn.bias + j], rgrad[ref.bias + j], 1e-6);
        CHECK_NEAR(mean[j], rm[j], 1e-6);
        CHECK_NEAR(var[j], rv[j], 1e-5);
    }
    CHECK(batches == 1.0f);
    free(grad);
    free(rgrad);

    /* Grouping must matter: whole-batch statistics give another output. */
    float whole[ROWS * C];
    ctx.bn_groups = 1;
    hallu_batchnorm_forward(&bn, &ctx, 0, ry_d, x_d, ROWS);
    get(be, whole, ry_d, ROWS * C);
    CHECK(memcmp(whole, y, sizeof y) != 0);
    CHECK_OK(hallu_backend_check(be, &err), &err);
    for (int k = 0; k < NUM_DEV; k++)
        hallu_buffer_free(&dev[k]);
    hallu_batchnorm_free(&bn);
    hallu_batchnorm_free(&ref);
    hallu_params_free(&ps);
    hallu_params_free(&rps);
}

enum { N = 8, H = 8, SPLITS = 2 };

/* Keys of `count` images through the key encoder in whole-batch BN, normalised. */
static void keys_alone(hallu_ssl *ssl, hallu_backend *be, const float *images, int count, float *out)
{
    hallu_error err = { 0 };
    hallu_nn_ctx kctx = { .be = be, .ps = hallu_ssl_key_params(ssl), .training = 1 };
    const float *kf = NULL;
    CHECK_OK(hallu_resnet_forward(ssl->key_encoder, &kctx, 0, images, count, &kf, &err), &err);
    if (!kf)
        return;
    const float *kz = hallu_mlp_forward(&ssl->key_projector, &kctx, 0, kf, count);
    for (int i = 0; i < count; i++) {
        double s = 0;
        for (int j = 0; j < ssl->dim; j++)
            s += (double)kz[i * ssl->dim + j] * kz[i * ssl->dim + j];
        for (int j = 0; j < ssl->dim; j++)
            out[i * ssl->dim + j] = (float)(kz[i * ssl->dim + j] / fmax(sqrt(s), 1e-12));
    }
}

static void test_moco_shuffle_bn(hallu_backend *be)
{
    hallu_error err = { 0 };
    hallu_ssl_config cfg;
    hallu_ssl_config_default(&cfg, HALLU_METHOD_MOCOV2);
    cfg.queue_size = 4 * N;
    cfg.hallucinator = 0;
    cfg.bn_splits = SPLITS;
    hallu_params ps;
    hallu_params_init(&ps);
    hallu_ssl *ssl = NULL;
    CHECK_OK(hallu_ssl_create(&ssl, &cfg, &ps, be, &err), &err);
    CHECK_OK(hallu_params_alloc(&ps, be, &err), &err);
    if (!ssl || !ps.param)
        return;
    CHECK_OK(hallu_ssl_init_weights(ssl, &ps, 7, &err), &err);
    CHECK_OK(hallu_ssl_plan(ssl, be, N, H, H, &err), &err);
    size_t image = (size_t)H * H * 3;
    float *v1 = malloc(N * image * sizeof(float)), *v2 = malloc(N * image * sizeof(float));
    float *group = malloc(N / SPLITS * image * sizeof(float)), *expect = malloc((size_t)N * ssl->dim * sizeof(float));
    fill(v1, N * image, 10, 1.0, 0.0);
    fill(v2, N * image, 11, 1.0, 0.0);
    hallu_nn_ctx ctx = { .be = be, .ps = &ps, .training = 1 };
    hallu_params_zero_grad(&ps);
    CHECK_OK(hallu_ssl_step(ssl, &ctx, v1, v2, N, NULL, &err), &err);
    int identity = 1;
    for (int i = 0; i < N; i++)
        identity &= ssl->key_order[i] == (uint32_t)i;
    CHECK(!identity);   /* a drawn permutation (8! - 1 of 8! draws) */
    int per = N / SPLITS;
    for (int g = 0; g < SPLITS; g++) {
        for (int i = 0; i < per; i++)
            memcpy(group + i * image, v2 + ssl->key_order[g * per + i] * image, image * sizeof(float));
        keys_alone(ssl, be, group, per, expect + (size_t)g * per * ssl->dim);
    }
    double worst = 0;
    for (int i = 0; i < N; i++) {
        const float *got = ssl->buf[MOCO_KNORM] + ssl->key_order[i] * (size_t)ssl->dim;
        for (int j = 0; j < ssl->dim; j++)
            worst = fmax(worst, fabs(got[j] - expect[(size_t)i * ssl->dim + j]));
    }
    CHECK_MSG(worst < 1e-5, "shuffled keys vs keys of each group alone: max diff %g", worst);
    CHECK(hallu_ssl_step(ssl, &ctx, v1, v2, N - 1, NULL, &err) == HALLU_ERR_INVALID_ARG);   /* 7 % 2 */
    free(v1);
    free(v2);
    free(group);
    free(expect);
    hallu_ssl_free(ssl);
    hallu_params_free(&ps);
}

int main(void)
{
    hallu_error err = { 0 };
    hallu_backend *be = NULL;
    CHECK_OK(test_backend_create(&be, 1, &err), &err);
    if (!be)
        return check_summary();
    test_grouped_batchnorm(be);
    hallu_backend_free(be);
    /* MoCo's method code still reads its buffers on the host: the plain cpu backend. */
    be = NULL;
    CHECK_OK(hallu_backend_cpu_create(&be, 1, &err), &err);
    if (!be)
        return check_summary();
    test_moco_shuffle_bn(be);
    hallu_backend_free(be);
    return check_summary();
}
