/* Data-parallel methods against one process, in one process: R "ranks" are
 * threads with their own backend and model (tests/support/thread_comm.c), each
 * with its slice of the same global batch. After one training step, the mean
 * of the ranks' losses and of their gradients must equal the loss and gradient
 * of one process with the whole batch:
 *   SimCLR + Hallucinator, SyncBN: negatives from every rank (all-gather, the
 *     backward a reduce-scatter that sums every rank's part);
 *   SimSiam + Hallucinator, SyncBN;
 *   MoCo v2 + Hallucinator: Shuffle BN across R ranks = one process with
 *     --bn-splits R, keys of every rank in the queue (checked after a second
 *     step, whose loss reads the first step's keys).
 * fp32 rounding: one process on the same batch with its halves swapped (the
 * same math, other summation orders) differs from itself too; that is
 * measured for each case (the noise floor) and the tolerances are
 * max(tol, 4 x floor). Dropping the all-gather's reduce-scatter (keeping only
 * the rank's own part) moves SimCLR's gradient by ~0.5: far outside. */
#include "check.h"
#include "test_backend.h"
#include "thread_comm.h"
#include "hallu/ssl.h"
#include "ssl/ssl_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { B = 16, H = 16, R = 2, STEPS = 2 };

typedef struct run_arg {
    hallu_method_kind method;
    int ranks, rank, sync_bn, bn_splits;
    hallu_comm *comm;
    const float *images[STEPS][2];   /* host [B][H][H][3] per step and view: the global batches */
    float loss[STEPS];
    float *grad;                     /* host copy of the first step's gradient (malloc'd) */
    int64_t numel;
    float *queue;                    /* MoCo: host copy of the queue after the last step */
    int64_t queue_floats;
} run_arg;

static void run_method(int rank, void *p)
{
    run_arg *a = p;
    hallu_error err = { 0 };
    hallu_backend *be = NULL;
    if (test_backend_create(&be, 1, &err) != HALLU_OK)
        abort();
    hallu_ssl_config cfg;
    hallu_ssl_config_default(&cfg, a->method);
    cfg.proj_dim = 16;
    cfg.queue_size = 64;
    cfg.bn_splits = a->bn_splits;
    cfg.seed = 5;
    hallu_params ps;
    hallu_params_init(&ps);
    hallu_ssl *ssl = NULL;
    CHECK_OK(hallu_ssl_create(&ssl, &cfg, &ps, be, &err), &err);
    CHECK_OK(hallu_params_alloc(&ps, be, &err), &err);
    CHECK_OK(hallu_ssl_init_weights(ssl, &ps, 7, &err), &err);
    hallu_ssl_set_comm(ssl, a->comm);
    int n = B / a->ranks;
    CHECK_OK(hallu_ssl_plan(ssl, be, getenv("DBG_PLAN") ? B : n, H, H, &err), &err);
    size_t img = (size_t)H * H * 3;
    float *v[2];
    for (int k = 0; k < 2; k++)
        v[k] = be->ops->alloc(be, (size_t)n * img * sizeof(float), "views", &err);
    hallu_nn_ctx ctx = { .be = be, .ps = &ps, .training = 1, .comm = a->comm, .sync_bn = a->sync_bn };
    a->numel = ps.trainable_numel;
    a->grad = malloc((size_t)a->numel * sizeof(float));
    for (int step = 0; step < STEPS; step++) {
        for (int k = 0; k < 2; k++)   /* this rank's slice of the global batch */
            CHECK_OK(hallu_backend_upload(be, v[k], a->images[step][k] + (size_t)rank * n * img,
                                          (size_t)n * img * sizeof(float), &err), &err);
        hallu_params_zero_grad(&ps);
        hallu_ssl_stats st;
        CHECK_OK(hallu_ssl_step(ssl, &ctx, v[0], v[1], n, &st, &err), &err);
        a->loss[step] = st.loss;
        if (a->comm) {   /* what the trainer does: the mean gradient */
            CHECK_OK(a->comm->ops->allreduce_sum_f32(a->comm, be, ps.grad, ps.trainable_numel, &err), &err);
            be->ops->scale(be, ps.grad, 1.0f / a->ranks, ps.grad, ps.trainable_numel);
        }
        if (step == 0)
            CHECK_OK(hallu_params_download_grad(&ps, a->grad, &err), &err);
        /* a small parameter step, so that step 2 sees step 1's state (MoCo: its keys in the queue) */
        be->ops->axpy(be, ps.param, -0.05f, ps.grad, ps.trainable_numel);
        hallu_ssl_after_step(ssl, &ctx);
    }
    if (ssl->is_moco) {
        a->queue_floats = (int64_t)cfg.queue_size * ssl->dim;
        a->queue = malloc((size_t)a->queue_floats * sizeof(float));
        CHECK_OK(hallu_backend_download(be, a->queue, ssl->queue, (size_t)a->queue_floats * sizeof(float), &err), &err);
    }
    CHECK_OK(hallu_backend_check(be, &err), &err);
    for (int k = 0; k < 2; k++)
        be->ops->release(be, v[k]);
    hallu_ssl_free(ssl);
    hallu_params_free(&ps);
    hallu_backend_free(be);
}

static double rel(const float *a, const float *b, int64_t n)
{
    double d = 0, r = 0;
    for (int64_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += (double)b[i] * b[i];
    }
    return sqrt(d / (r > 0 ? r : 1));
}

/* The global batch with its two halves swapped (both views alike). */
static float *swapped(const float *v)
{
    size_t half = (size_t)B / 2 * H * H * 3;
    float *w = malloc(2 * half * sizeof(float));
    memcpy(w, v + half, half * sizeof(float));
    memcpy(w + half, v, half * sizeof(float));
    return w;
}

static double loss_dev(const run_arg *x, const run_arg *ref)
{
    double worst = 0;
    for (int s = 0; s < STEPS; s++) {   /* relative to max(|loss|, 1): SimSiam's cosine starts near 0 */
        double d = fabs((double)x->loss[s] - ref->loss[s]) / fmax(fabs((double)ref->loss[s]), 1.0);
        worst = d > worst ? d : worst;
    }
    return worst;
}

static void check_case(const char *name, hallu_method_kind method, int sync_bn, int ref_splits, float **images)
{
    run_arg one = { .method = method, .ranks = 1, .sync_bn = sync_bn, .bn_splits = ref_splits };
    run_arg floor_run = one;
    run_arg ranks[R];
    tc_group *g = tc_group_create(R);
    void *args[R];
    for (int r = 0; r < R; r++) {
        ranks[r] = (run_arg){ .method = method, .ranks = R, .rank = r, .sync_bn = sync_bn, .bn_splits = 1,
                              .comm = tc_comm(g, r) };
        args[r] = &ranks[r];
    }
    float *sw[2 * STEPS];
    for (int s = 0; s < STEPS; s++)
        for (int k = 0; k < 2; k++) {
            one.images[s][k] = images[2 * s + k];
            sw[2 * s + k] = swapped(images[2 * s + k]);
            floor_run.images[s][k] = sw[2 * s + k];
            for (int r = 0; r < R; r++)
                ranks[r].images[s][k] = images[2 * s + k];
        }
    run_method(0, &one);
    /* Grouped BN (one process's Shuffle BN) would group other images: no swapped run, the plain tolerance. */
    int grouped = ref_splits > 1;
    if (!grouped)
        run_method(0, &floor_run);
    tc_run(g, run_method, args);
    double el = loss_dev(&ranks[0], &one), fl = grouped ? 0 : loss_dev(&floor_run, &one);
    double eg = rel(ranks[0].grad, one.grad, one.numel), fg = grouped ? 0 : rel(floor_run.grad, one.grad, one.numel);
    printf("%s: %d ranks vs one process: loss %.2e, first step's gradient %.2e (noise floor: %.2e, %.2e)\n", name,
           R, el, eg, fl, fg);
    CHECK_MSG(el <= fmax(1e-5, 4 * fl), "%s: losses over %d ranks differ from one process's by %.3e", name, R, el);
    CHECK_MSG(eg <= fmax(1e-4, 4 * fg), "%s: gradient over %d ranks differs from one process's by %.3e", name, R, eg);
    for (int s = 0; s < STEPS; s++)
        CHECK_MSG(ranks[1].loss[s] == ranks[0].loss[s], "%s: ranks report different mean losses", name);
    CHECK_MSG(memcmp(ranks[0].grad, ranks[1].grad, (size_t)one.numel * sizeof(float)) == 0,
              "%s: the ranks' averaged gradients differ", name);
    if (one.queue) {   /* every rank's keys went in, in the global batch's order */
        double eq = rel(ranks[0].queue, one.queue, one.queue_floats);
        CHECK_MSG(eq < 1e-4, "%s: queue differs from one process's by %.3e", name, eq);
        CHECK_MSG(memcmp(ranks[0].queue, ranks[1].queue, (size_t)one.queue_floats * sizeof(float)) == 0,
                  "%s: the ranks' queues differ", name);
    }
    free(one.queue);
    free(floor_run.queue);
    free(one.grad);
    free(floor_run.grad);
    for (int r = 0; r < R; r++) {
        free(ranks[r].grad);
        free(ranks[r].queue);
    }
    for (int k = 0; k < 2 * STEPS; k++)
        free(sw[k]);
    tc_group_free(g);
}

int main(void)
{
    float *images[2 * STEPS];
    size_t nf = (size_t)B * H * H * 3;
    hallu_rng rng;
    hallu_rng_init(&rng, 17, 0);
    for (int k = 0; k < 2 * STEPS; k++) {
        images[k] = malloc(nf * sizeof(float));
        for (size_t i = 0; i < nf; i++)
            images[k][i] = (float)hallu_rng_normal(&rng);
    }
    check_case("simclr+hal sync-bn", HALLU_METHOD_SIMCLR, 1, 1, images);
    check_case("simsiam+hal sync-bn", HALLU_METHOD_SIMSIAM, 1, 1, images);
    check_case("mocov2+hal shuffle-bn", HALLU_METHOD_MOCOV2, 0, R, images);
    check_case("mocov2+hal sync-bn", HALLU_METHOD_MOCOV2, 1, 1, images);
    for (int k = 0; k < 2 * STEPS; k++)
        free(images[k]);
    return check_summary();
}
