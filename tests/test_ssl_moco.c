/* Method object bookkeeping: MoCo queue (enqueue order, wrap-around,
 * duplicates), momentum update, checkpoint state blobs and their validation,
 * Hallucinator RNG save/restore, parameter names, bad configuration errors,
 * the SimCLR loss scale (base temperature) and zero-initialised residuals. */
#include "check.h"
#include "hallu/ssl.h"
#include "ssl/ssl_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { N = 2, H = 8, K = 5 };

static int find_blob(hallu_ssl *ssl, const char *name, hallu_ssl_blob *b)
{
    hallu_error err = { 0 };
    for (int i = 0; i < hallu_ssl_state_count(ssl); i++)
        if (hallu_ssl_state_get(ssl, i, b, &err) == HALLU_OK && strcmp(b->name, name) == 0)
            return 1;
    return 0;
}

static void fill_views(float *v, size_t n, uint64_t stream)
{
    hallu_rng rng;
    hallu_rng_init(&rng, 21, stream);
    for (size_t i = 0; i < n; i++)
        v[i] = (float)hallu_rng_normal(&rng);
}

/* N random NHWC images of H x H x 3 (malloc'ed; caller frees). */
static float *random_views(uint64_t stream)
{
    size_t nv = (size_t)N * H * H * 3;
    float *v = malloc(nv * sizeof(float));
    if (v)
        fill_views(v, nv, stream);
    return v;
}

/* One training step from zeroed gradients. */
static hallu_status train_step(hallu_ssl *ssl, hallu_backend *be, hallu_params *ps, const float *v1,
                               const float *v2, hallu_ssl_stats *st, hallu_error *err)
{
    hallu_nn_ctx ctx = { .be = be, .ps = ps, .training = 1 };
    hallu_params_zero_grad(ps);
    return hallu_ssl_step(ssl, &ctx, v1, v2, N, st, err);
}

static void test_moco(hallu_backend *be, int enqueue_duplicates)
{
    hallu_error err = { 0 };
    hallu_ssl_config cfg;
    hallu_ssl_config_default(&cfg, HALLU_METHOD_MOCOV2);
    cfg.queue_size = K;
    cfg.momentum = 0.9f;
    cfg.enqueue_duplicates = enqueue_duplicates;
    hallu_params ps;
    hallu_params_init(&ps);
    hallu_ssl *ssl = NULL;
    CHECK_OK(hallu_ssl_create(&ssl, &cfg, &ps, be, &err), &err);
    CHECK_OK(hallu_params_alloc(&ps, be, &err), &err);
    if (!ssl || !ps.param)
        return;
    CHECK(hallu_params_find(&ps, "encoder.layer4.1.bn2.weight", NULL) != NULL);
    CHECK(hallu_params_find(&ps, "projector.2.weight", NULL) != NULL);
    CHECK(hallu_params_find(&ps, "hallucinator.0.weight", NULL) != NULL);
    CHECK_OK(hallu_ssl_init_weights(ssl, &ps, 5, &err), &err);
    hallu_params *kp = hallu_ssl_key_params(ssl);
    CHECK(kp && kp->num_trainable == ssl->q_count);
    const hallu_tensor_info *q0 = &ps.trainable[0], *k0 = &kp->trainable[0];
    CHECK(memcmp(ps.param + q0->offset, kp->param + k0->offset, (size_t)q0->numel * sizeof(float)) == 0);
    CHECK_OK(hallu_ssl_plan(ssl, be, N, H, H, &err), &err);

    hallu_ssl_blob queue, ptr;
    CHECK(find_blob(ssl, "ssl.queue", &queue) && queue.shape[0] == K && queue.nbytes == (size_t)K * 128 * 4);
    CHECK(find_blob(ssl, "ssl.queue_ptr", &ptr));
    float *row0 = malloc(128 * sizeof(float));
    double norm = 0;
    for (int j = 0; j < 128; j++)
        norm += (double)ssl->queue[j] * ssl->queue[j];
    CHECK_NEAR(norm, 1.0, 1e-5);   /* initial rows are unit vectors */

    float *v1 = random_views(1), *v2 = random_views(2);
    hallu_nn_ctx ctx = { .be = be, .ps = &ps, .training = 1 };
    int per_step = enqueue_duplicates ? 2 * N : N;
    int64_t expect_ptr = 0;
    for (int step = 0; step < 3; step++) {
        hallu_ssl_stats st;
        CHECK_OK(train_step(ssl, be, &ps, v1, v2, &st, &err), &err);
        CHECK(isfinite(st.loss) && st.loss > 0 && st.ratio[0] >= 0 && st.ratio[0] < 0.1f);
        CHECK(ssl->pending_rows == per_step);
        memcpy(row0, ssl->pending, 128 * sizeof(float));   /* the first key of this step */
        /* A stand-in optimizer step, then the momentum update must give m*k + (1-m)*q_new. */
        float kold = kp->param[k0->offset + 3];
        for (int64_t i = 0; i < ps.trainable_numel; i++)
            ps.param[i] += 0.25f;
        float qnew = ps.param[q0->offset + 3];
        hallu_ssl_after_step(ssl, &ctx);
        CHECK_NEAR(kp->param[k0->offset + 3], 0.9f * kold + 0.1f * qnew, 1e-6);
        CHECK(memcmp(ssl->queue + expect_ptr * 128, row0, 128 * sizeof(float)) == 0);
        expect_ptr = (expect_ptr + per_step) % K;
        CHECK(*(int64_t *)ptr.data == expect_ptr);
        CHECK(ssl->pending_rows == 0);
    }

    /* RNG save/restore: the draws after a restore repeat. */
    hallu_ssl_blob rngb;
    CHECK(find_blob(ssl, "ssl.rng", &rngb) && rngb.nbytes == 48);
    int64_t saved[6];
    memcpy(saved, rngb.data, sizeof saved);
    float a = ssl_draw_ratio(ssl), b = ssl_draw_ratio(ssl);
    CHECK(find_blob(ssl, "ssl.rng", &rngb));
    memcpy(rngb.data, saved, sizeof saved);
    CHECK_OK(hallu_ssl_state_commit(ssl, &err), &err);
    CHECK(ssl_draw_ratio(ssl) == a && ssl_draw_ratio(ssl) == b && a != b);
    /* A corrupt pointer is rejected with a message naming it. */
    *(int64_t *)ptr.data = K + 3;
    CHECK(hallu_ssl_state_commit(ssl, &err) == HALLU_ERR_FORMAT && strstr(err.msg, "queue_ptr"));
    *(int64_t *)ptr.data = 0;
    CHECK(hallu_ssl_state_count(ssl) == kp->num_trainable + kp->num_state + 3);

    hallu_ssl_free(ssl);
    hallu_params_free(&ps);
    free(v1);
    free(v2);
    free(row0);
}

static void test_bad_config(void)
{
    hallu_error err = { 0 };
    hallu_method_kind kind;
    CHECK(hallu_method_parse("byol", &kind, &err) == HALLU_ERR_INVALID_ARG && strstr(err.msg, "byol"));
    CHECK(hallu_method_parse("simsiam", &kind, &err) == HALLU_OK && kind == HALLU_METHOD_SIMSIAM);
    hallu_hal_init init;
    CHECK(hallu_hal_init_parse("residual", &init, &err) == HALLU_OK && init == HALLU_HAL_INIT_RESIDUAL);
    CHECK(hallu_hal_init_parse("zero", &init, &err) == HALLU_ERR_INVALID_ARG);
    hallu_ssl_config cfg;
    hallu_ssl_config_default(&cfg, HALLU_METHOD_SIMCLR);
    cfg.ratio_lo = 0.2f;
    cfg.ratio_hi = 0.1f;
    hallu_params ps;
    hallu_params_init(&ps);
    hallu_ssl *ssl = (hallu_ssl *)&ps;
    CHECK(hallu_ssl_create(&ssl, &cfg, &ps, NULL, &err) == HALLU_ERR_INVALID_ARG && ssl == NULL);
    CHECK(strstr(err.msg, "ratio") != NULL);
    hallu_params_free(&ps);
}

/* SimSiam / SimCLR build, names, one step, eval-mode loss without state change. */
static void test_method(hallu_backend *be, hallu_method_kind method)
{
    hallu_error err = { 0 };
    hallu_ssl_config cfg;
    hallu_ssl_config_default(&cfg, method);
    cfg.hal_init = HALLU_HAL_INIT_RESIDUAL;
    cfg.fix_pred_lr = 1;
    hallu_params ps;
    hallu_params_init(&ps);
    hallu_ssl *ssl = NULL;
    CHECK_OK(hallu_ssl_create(&ssl, &cfg, &ps, be, &err), &err);
    CHECK_OK(hallu_params_alloc(&ps, be, &err), &err);
    if (!ssl || !ps.param)
        return;
    int fixed = 0, predictor = 0;   /* --fix-pred-lr flags exactly the predictor's tensors */
    for (int i = 0; i < ps.num_trainable; i++) {
        int is_pred = strncmp(ps.trainable[i].name, "predictor.", 10) == 0;
        predictor += is_pred;
        fixed += is_pred == !!(ps.trainable[i].flags & HALLU_TENSOR_FIXED_LR);
    }
    CHECK_MSG(fixed == ps.num_trainable && (predictor > 0) == (method == HALLU_METHOD_SIMSIAM),
              "fixed-lr flags: %d of %d tensors right, %d predictor tensors", fixed, ps.num_trainable, predictor);
    if (method == HALLU_METHOD_SIMSIAM) {
        CHECK(hallu_params_find(&ps, "predictor.3.bias", NULL) != NULL);
        CHECK(hallu_params_find(&ps, "projector.7.weight", NULL) == NULL);   /* affine-free output BN */
        CHECK(hallu_params_find(&ps, "projector.7.running_mean", NULL) != NULL);
    }
    CHECK(hallu_ssl_key_params(ssl) == NULL && hallu_ssl_state_count(ssl) == 1);
    CHECK_OK(hallu_ssl_init_weights(ssl, &ps, 9, &err), &err);
    CHECK_OK(hallu_ssl_plan(ssl, be, N, H, H, &err), &err);
    CHECK(hallu_ssl_plan(ssl, be, N, H, H, &err) == HALLU_ERR_INVALID_ARG);
    float *v1 = random_views(3), *v2 = random_views(4);
    hallu_ssl_stats st;
    CHECK_OK(train_step(ssl, be, &ps, v1, v2, &st, &err), &err);
    CHECK(isfinite(st.loss) && st.collapse_std > 0);
    double g2 = 0;
    for (int64_t i = 0; i < ps.trainable_numel; i++)
        g2 += (double)ps.grad[i] * ps.grad[i];
    CHECK(g2 > 0 && isfinite(g2));
    hallu_nn_ctx ctx = { .be = be, .ps = &ps, .training = 1 };
    CHECK(hallu_ssl_step(ssl, &ctx, v1, v2, N + 1, &st, &err) == HALLU_ERR_INVALID_ARG);
    ctx.training = 0;
    float *before = malloc((size_t)ps.state_numel * sizeof(float));
    memcpy(before, ps.buffer, (size_t)ps.state_numel * sizeof(float));
    CHECK_OK(hallu_ssl_step(ssl, &ctx, v1, v2, N, &st, &err), &err);
    CHECK(memcmp(before, ps.buffer, (size_t)ps.state_numel * sizeof(float)) == 0);
    free(before);
    free(v1);
    free(v2);
    hallu_ssl_free(ssl);
    hallu_params_free(&ps);
}

/* One SimCLR + Hallucinator step (fixed r) from the same weights and views;
 * returns the loss and a malloc'ed copy of every gradient. */
static float simclr_step(hallu_backend *be, float base_temperature, int zero_init_residual, float **grad,
                         int64_t *numel, float *bn2_weight_max)
{
    hallu_error err = { 0 };
    hallu_ssl_config cfg;
    hallu_ssl_config_default(&cfg, HALLU_METHOD_SIMCLR);
    cfg.base_temperature = base_temperature;
    cfg.backbone.zero_init_residual = zero_init_residual;
    cfg.fixed_ratio = 0.05f;
    hallu_params ps;
    hallu_params_init(&ps);
    hallu_ssl *ssl = NULL;
    float loss = NAN;
    *grad = NULL;
    CHECK_OK(hallu_ssl_create(&ssl, &cfg, &ps, be, &err), &err);
    CHECK_OK(hallu_params_alloc(&ps, be, &err), &err);
    if (!ssl || !ps.param)
        return loss;
    CHECK_OK(hallu_ssl_init_weights(ssl, &ps, 9, &err), &err);
    const hallu_tensor_info *bn2 = hallu_params_find(&ps, "encoder.layer1.0.bn2.weight", NULL);
    const hallu_tensor_info *bn1 = hallu_params_find(&ps, "encoder.layer1.0.bn1.weight", NULL);
    CHECK(bn1 && bn2 && ps.param[bn1->offset] == 1.0f);
    *bn2_weight_max = 0.0f;
    for (int64_t i = 0; bn2 && i < bn2->numel; i++)
        *bn2_weight_max = fmaxf(*bn2_weight_max, fabsf(ps.param[bn2->offset + i]));
    CHECK_OK(hallu_ssl_plan(ssl, be, N, H, H, &err), &err);
    float *v1 = random_views(5), *v2 = random_views(6);
    hallu_ssl_stats st;
    CHECK_OK(train_step(ssl, be, &ps, v1, v2, &st, &err), &err);
    loss = st.loss;
    *numel = ps.trainable_numel;
    *grad = malloc((size_t)ps.trainable_numel * sizeof(float));
    memcpy(*grad, ps.grad, (size_t)ps.trainable_numel * sizeof(float));
    free(v1);
    free(v2);
    hallu_ssl_free(ssl);
    hallu_params_free(&ps);
    return loss;
}

/* base_temperature 0.25 at T 0.5 scales the loss and every gradient by exactly 2
 * (a power of two: the same roundings, doubled); zero_init_residual zeroes the
 * last BN weight of each block and nothing else changes shape. */
static void test_simclr_scale_and_zero_init(hallu_backend *be)
{
    float *g1 = NULL, *g2 = NULL, *g3 = NULL, w1 = -1, w2 = -1, w3 = -1;
    int64_t n1 = 0, n2 = 0, n3 = 0;
    float l1 = simclr_step(be, 0.0f, 0, &g1, &n1, &w1);
    float l2 = simclr_step(be, 0.25f, 0, &g2, &n2, &w2);
    float l3 = simclr_step(be, 0.0f, 1, &g3, &n3, &w3);
    CHECK_MSG(isfinite(l1) && l2 == 2.0f * l1, "loss %.9g with base 0.25, %.9g without", l2, l1);
    int64_t bad = 0;
    double g2sum = 0;
    for (int64_t i = 0; g1 && g2 && n1 == n2 && i < n1; i++) {
        bad += g2[i] != 2.0f * g1[i];
        g2sum += fabs(g1[i]);
    }
    CHECK_MSG(g1 && g2 && n1 == n2 && bad == 0 && g2sum > 0, "%lld of %lld gradients not doubled", (long long)bad,
              (long long)n1);
    CHECK_MSG(w1 == 1.0f && w3 == 0.0f, "layer1.0.bn2.weight max |w|: %g default, %g zero-init", w1, w3);
    CHECK(isfinite(l3) && n3 == n1 && l3 != l1);
    free(g1);
    free(g2);
    free(g3);
}

int main(void)
{
    hallu_error err = { 0 };
    hallu_backend *be = NULL;
    CHECK_OK(hallu_backend_cpu_create(&be, 1, &err), &err);
    if (!be)
        return check_summary();
    test_bad_config();
    test_moco(be, 0);
    test_moco(be, 1);
    test_method(be, HALLU_METHOD_SIMSIAM);
    test_method(be, HALLU_METHOD_SIMCLR);
    test_simclr_scale_and_zero_init(be);
    hallu_backend_free(be);
    return check_summary();
}
