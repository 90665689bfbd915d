/* Method object bookkeeping: MoCo queue (enqueue order, wrap-around,
 * duplicates), momentum update, checkpoint state blobs and their validation,
 * Hallucinator RNG save/restore, parameter names, bad configuration errors,
 * the SimCLR loss scale (base temperature) and zero-initialised residuals. */
#include "check.h"
#include "test_backend.h"
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

/* N random NHWC images of H x H x 3 in device memory of be (release with be->ops->release). */
static float *random_views(hallu_backend *be, uint64_t stream)
{
    hallu_error err = { 0 };
    size_t nv = (size_t)N * H * H * 3;
    float *v = malloc(nv * sizeof(float)), *dev = be->ops->alloc(be, nv * sizeof(float), "test views", &err);
    if (!v || !dev)
        abort();
    fill_views(v, nv, stream);
    CHECK_OK(hallu_backend_upload(be, dev, v, nv * sizeof(float), &err), &err);
    free(v);
    return dev;
}

/* Host copy of n floats of device memory at dev. */
static void get(hallu_backend *be, void *host, const void *dev, size_t nbytes)
{
    hallu_error err = { 0 };
    CHECK_OK(hallu_backend_download(be, host, dev, nbytes, &err), &err);
}

static float get1(hallu_backend *be, const float *dev)
{
    float v = NAN;
    get(be, &v, dev, sizeof v);
    return v;
}

/* A stand-in optimizer step: every parameter += 0.25 (through the host staging copy). */
static void shift_params(hallu_params *ps)
{
    hallu_error err = { 0 };
    CHECK_OK(hallu_params_stage(ps, &err), &err);
    for (int64_t i = 0; ps->host_param && i < ps->trainable_numel; i++)
        ps->host_param[i] += 0.25f;
    CHECK_OK(hallu_params_commit(ps, &err), &err);
}

static int64_t queue_ptr(hallu_ssl *ssl)
{
    hallu_ssl_blob ptr;
    return find_blob(ssl, "ssl.queue_ptr", &ptr) ? *(int64_t *)ptr.data : -1;
}

/* One training step from zeroed gradients. */
static hallu_status train_step(hallu_ssl *ssl, hallu_backend *be, hallu_params *ps, const float *v1,
                               const float *v2, hallu_ssl_stats *st, hallu_error *err)
{
    hallu_nn_ctx ctx = { .be = be, .ps = ps, .training = 1 };
    hallu_params_zero_grad(ps);
    return hallu_ssl_step(ssl, &ctx, v1, v2, N, st, err);
}

static hallu_ssl *moco_new(hallu_backend *be, hallu_params *ps, int enqueue_duplicates)
{
    hallu_error err = { 0 };
    hallu_ssl_config cfg;
    hallu_ssl_config_default(&cfg, HALLU_METHOD_MOCOV2);
    cfg.queue_size = K;
    cfg.momentum = 0.9f;
    cfg.enqueue_duplicates = enqueue_duplicates;
    hallu_params_init(ps);
    hallu_ssl *ssl = NULL;
    CHECK_OK(hallu_ssl_create(&ssl, &cfg, ps, be, &err), &err);
    CHECK_OK(hallu_params_alloc(ps, be, &err), &err);
    if (!ssl || !ps->param) {
        hallu_ssl_free(ssl);
        return NULL;
    }
    CHECK_OK(hallu_ssl_init_weights(ssl, ps, 5, &err), &err);
    CHECK_OK(hallu_ssl_plan(ssl, be, N, H, H, &err), &err);
    return ssl;
}

/* The queue's bookkeeping without a forward pass (no encoder involved): the
 * keys a step would keep are written into `pending` directly, then after_step
 * must enqueue them at the pointer (wrapping at K) and move the key encoder to
 * m*k + (1-m)*q_new; checkpoint blobs round-trip and are validated. */
static void test_moco_state(hallu_backend *be)
{
    hallu_error err = { 0 };
    hallu_params ps;
    hallu_ssl *ssl = moco_new(be, &ps, 0);
    if (!ssl)
        return;
    CHECK(hallu_params_find(&ps, "encoder.layer4.1.bn2.weight", NULL) != NULL);
    CHECK(hallu_params_find(&ps, "projector.2.weight", NULL) != NULL);
    CHECK(hallu_params_find(&ps, "hallucinator.0.weight", NULL) != NULL);
    hallu_params *kp = hallu_ssl_key_params(ssl);
    CHECK(kp && kp->num_trainable == ssl->q_count);
    const hallu_tensor_info *q0 = &ps.trainable[0], *k0 = &kp->trainable[0];
    float *qh = malloc((size_t)q0->numel * sizeof(float)), *kh = malloc((size_t)k0->numel * sizeof(float));
    get(be, qh, ps.param + q0->offset, (size_t)q0->numel * sizeof(float));
    get(be, kh, kp->param + k0->offset, (size_t)k0->numel * sizeof(float));
    CHECK(memcmp(qh, kh, (size_t)q0->numel * sizeof(float)) == 0);   /* key = copy of the query */
    free(qh);
    free(kh);

    hallu_ssl_blob queue;
    CHECK(find_blob(ssl, "ssl.queue", &queue) && queue.shape[0] == K && queue.nbytes == (size_t)K * 128 * 4);
    double norm = 0;
    for (int j = 0; j < 128; j++)
        norm += (double)((float *)queue.data)[j] * ((float *)queue.data)[j];
    CHECK_NEAR(norm, 1.0, 1e-5);   /* initial rows are unit vectors */
    CHECK(queue_ptr(ssl) == 0);

    hallu_nn_ctx ctx = { .be = be, .ps = &ps, .training = 1 };
    float keys[3 * N * 128];
    for (int i = 0; i < 3 * N * 128; i++)
        keys[i] = (float)(i + 1);
    int64_t expect_ptr = 0;
    for (int step = 0; step < 3; step++) {
        int rows = step == 1 ? 3 : N;   /* 2, 3, 2 rows: the second step wraps at K = 5 */
        CHECK_OK(hallu_backend_upload(be, ssl->pending, keys + step * N * 128, (size_t)rows * 128 * sizeof(float),
                                      &err), &err);
        ssl->pending_rows = rows;
        float kold = get1(be, kp->param + k0->offset + 3);
        shift_params(&ps);
        float qnew = get1(be, ps.param + q0->offset + 3);
        hallu_ssl_after_step(ssl, &ctx);
        CHECK_NEAR(get1(be, kp->param + k0->offset + 3), 0.9f * kold + 0.1f * qnew, 1e-6);
        CHECK(find_blob(ssl, "ssl.queue", &queue));
        for (int r = 0; r < rows; r++)
            CHECK(memcmp((float *)queue.data + (expect_ptr + r) % K * 128, keys + (step * N + r) * 128,
                         128 * sizeof(float)) == 0);
        expect_ptr = (expect_ptr + rows) % K;
        CHECK(queue_ptr(ssl) == expect_ptr);
        CHECK(ssl->pending_rows == 0);
    }

    /* The queue restores from its blob: overwrite a row, commit, read it back. */
    CHECK(find_blob(ssl, "ssl.queue", &queue));
    ((float *)queue.data)[7] = 42.0f;
    CHECK_OK(hallu_ssl_state_commit(ssl, &err), &err);
    CHECK(get1(be, ssl->queue + 7) == 42.0f);

    /* RNG save/restore: the draws after a restore repeat. */
    hallu_ssl_blob rngb, ptr;
    CHECK(find_blob(ssl, "ssl.rng", &rngb) && rngb.nbytes == 48);
    int64_t saved[6];
    memcpy(saved, rngb.data, sizeof saved);
    float a = ssl_draw_ratio(ssl), b = ssl_draw_ratio(ssl);
    CHECK(find_blob(ssl, "ssl.rng", &rngb));
    memcpy(rngb.data, saved, sizeof saved);
    CHECK_OK(hallu_ssl_state_commit(ssl, &err), &err);
    CHECK(ssl_draw_ratio(ssl) == a && ssl_draw_ratio(ssl) == b && a != b);
    /* A corrupt pointer is rejected with a message naming it, and nothing is uploaded. */
    CHECK(find_blob(ssl, "ssl.queue_ptr", &ptr));
    *(int64_t *)ptr.data = K + 3;
    CHECK(hallu_ssl_state_commit(ssl, &err) == HALLU_ERR_FORMAT && strstr(err.msg, "queue_ptr"));
    CHECK(queue_ptr(ssl) == expect_ptr);
    CHECK(hallu_ssl_state_count(ssl) == kp->num_trainable + kp->num_state + 3);
    CHECK_OK(hallu_backend_check(be, &err), &err);

    hallu_ssl_free(ssl);
    hallu_params_free(&ps);
}

/* Real steps: the keys a step keeps enter the queue at the pointer after it. */
static void test_moco(hallu_backend *be, int enqueue_duplicates)
{
    hallu_error err = { 0 };
    hallu_params ps;
    hallu_ssl *ssl = moco_new(be, &ps, enqueue_duplicates);
    if (!ssl)
        return;
    float *v1 = random_views(be, 1), *v2 = random_views(be, 2), row0[128], qrow[128];
    hallu_nn_ctx ctx = { .be = be, .ps = &ps, .training = 1 };
    int per_step = enqueue_duplicates ? 2 * N : N;
    int64_t expect_ptr = 0;
    for (int step = 0; step < 3; step++) {
        hallu_ssl_stats st;
        CHECK_OK(train_step(ssl, be, &ps, v1, v2, &st, &err), &err);
        CHECK(isfinite(st.loss) && st.loss > 0 && st.ratio[0] >= 0 && st.ratio[0] < 0.1f);
        CHECK(ssl->pending_rows == per_step);
        get(be, row0, ssl->pending, sizeof row0);   /* the first key of this step */
        shift_params(&ps);
        hallu_ssl_after_step(ssl, &ctx);
        get(be, qrow, ssl->queue + expect_ptr * 128, sizeof qrow);
        CHECK(memcmp(qrow, row0, sizeof row0) == 0);
        expect_ptr = (expect_ptr + per_step) % K;
        CHECK(queue_ptr(ssl) == expect_ptr);
        CHECK(ssl->pending_rows == 0);
    }
    /* Without stats nothing is read back; the result is the backend's check. */
    CHECK_OK(train_step(ssl, be, &ps, v1, v2, NULL, &err), &err);
    be->ops->release(be, v1);
    be->ops->release(be, v2);
    hallu_ssl_free(ssl);
    hallu_params_free(&ps);
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
    float *v1 = random_views(be, 3), *v2 = random_views(be, 4);
    hallu_ssl_stats st;
    CHECK_OK(train_step(ssl, be, &ps, v1, v2, &st, &err), &err);
    CHECK(isfinite(st.loss) && st.collapse_std > 0);
    float *grad = malloc((size_t)ps.trainable_numel * sizeof(float));
    CHECK_OK(hallu_params_download_grad(&ps, grad, &err), &err);
    double g2 = 0;
    for (int64_t i = 0; i < ps.trainable_numel; i++)
        g2 += (double)grad[i] * grad[i];
    CHECK(g2 > 0 && isfinite(g2));
    free(grad);
    hallu_nn_ctx ctx = { .be = be, .ps = &ps, .training = 1 };
    CHECK(hallu_ssl_step(ssl, &ctx, v1, v2, N + 1, &st, &err) == HALLU_ERR_INVALID_ARG);
    ctx.training = 0;
    size_t state_bytes = (size_t)ps.state_numel * sizeof(float);
    float *before = malloc(state_bytes), *after = malloc(state_bytes);
    get(be, before, ps.buffer, state_bytes);
    CHECK_OK(hallu_ssl_step(ssl, &ctx, v1, v2, N, &st, &err), &err);
    get(be, after, ps.buffer, state_bytes);
    CHECK(memcmp(before, after, state_bytes) == 0);
    free(before);
    free(after);
    be->ops->release(be, v1);
    be->ops->release(be, v2);
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
    CHECK(bn1 && bn2 && get1(be, ps.param + bn1->offset) == 1.0f);
    *bn2_weight_max = 0.0f;
    for (int64_t i = 0; bn2 && i < bn2->numel; i++)
        *bn2_weight_max = fmaxf(*bn2_weight_max, fabsf(get1(be, ps.param + bn2->offset + i)));
    CHECK_OK(hallu_ssl_plan(ssl, be, N, H, H, &err), &err);
    float *v1 = random_views(be, 5), *v2 = random_views(be, 6);
    hallu_ssl_stats st;
    CHECK_OK(train_step(ssl, be, &ps, v1, v2, &st, &err), &err);
    loss = st.loss;
    *numel = ps.trainable_numel;
    *grad = malloc((size_t)ps.trainable_numel * sizeof(float));
    CHECK_OK(hallu_params_download_grad(&ps, *grad, &err), &err);
    be->ops->release(be, v1);
    be->ops->release(be, v2);
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
    CHECK_OK(test_backend_create(&be, 1, &err), &err);
    if (!be)
        return check_summary();
    test_bad_config();
    test_moco_state(be);   /* no forward pass: runs wherever the backend does */
    test_moco(be, 0);
    test_moco(be, 1);
    test_method(be, HALLU_METHOD_SIMSIAM);
    test_method(be, HALLU_METHOD_SIMCLR);
    test_simclr_scale_and_zero_init(be);
    hallu_backend_free(be);
    return check_summary();
}
