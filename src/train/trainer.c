/* hallu_train_run: setup, the epoch loop, and teardown. */
#include "train_internal.h"
#include "hallu/io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void hallu_train_config_default(hallu_train_config *c)
{
    memset(c, 0, sizeof *c);
    *c = (hallu_train_config){
        .method = "simclr", .hallucinator = 1, .hal_init = "residual", .hal_ratio_max = 0.1,
        .hal_fixed_ratio = -1.0, .data = "synthetic:1000", .arch = "resnet18", .stem = "cifar",
        .optimizer = "sgd", .epochs = 4, .batch_size = 100, .lr = 0.1, .momentum = 0.9,
        .weight_decay = 5e-4, .seed = 0, .threads = 0, .workers = 2, .knn_every = 0, .knn_k = 200,
        .knn_temperature = 0.1, .knn_at_start = 1, .log_every = 10, .out = "runs/latest",
        .queue_size = 4096, .moco_momentum = 0.99, .bn_splits = 1, .crop = "ccrop", .dist_timeout = 3600,
    };
}

int hallu_train_gain_summary(const hallu_train_config *cfg, const hallu_train_result *res, char *out, size_t n)
{
    if (n > 0)
        out[0] = '\0';
    if (res->knn_floor_top1 < 0 || res->knn_top1 < 0)
        return -1;
    /* Compared as printed (%.2f, as the summary lines), so that "38.00% vs 38.00%" is never called worse. */
    char a[32], b[32];
    snprintf(a, sizeof a, "%.2f", res->knn_top1);
    snprintf(b, sizeof b, "%.2f", res->knn_floor_top1);
    double top1 = strtod(a, NULL), floor = strtod(b, NULL);
    double gain = top1 - floor;
    if (gain >= 0) {
        snprintf(out, n, "kNN top-1 %.2f%% (+%.2f over the untrained %.2f%%)", top1, fabs(gain), floor);
        return 0;
    }
    snprintf(out, n, "warning: training made the kNN accuracy worse: %.2f%% after training vs %.2f%% untrained "
             "(%.2f points).\n  Short runs often do this; try more --epochs or steps (%lld steps ran), or another "
             "--lr (now %g)%s.", top1, floor, gain, (long long)res->steps, cfg->lr,
             res->collapsed ? "; the embeddings also collapsed: a lower --lr usually helps" : "");
    return 1;
}

static hallu_status build_ssl_config(train_run *run, hallu_error *err)
{
    const hallu_train_config *c = run->cfg;
    hallu_method_kind kind;
    hallu_status s = hallu_method_parse(c->method, &kind, err);
    if (s != HALLU_OK)
        return s;
    hallu_ssl_config *sc = &run->ssl_cfg;
    hallu_ssl_config_default(sc, kind);
    s = hallu_resnet_parse_arch(c->arch, c->stem, &sc->backbone, err);
    if (s == HALLU_OK)
        s = hallu_hal_init_parse(c->hal_init, &sc->hal_init, err);
    if (s != HALLU_OK)
        return s;
    sc->hallucinator = c->hallucinator;
    sc->ratio_lo = 0.0f;
    sc->ratio_hi = (float)c->hal_ratio_max;
    sc->fixed_ratio = (float)c->hal_fixed_ratio;
    if (c->hal_hidden > 0) sc->hal_hidden = c->hal_hidden;
    sc->enqueue_duplicates = c->enqueue_duplicates;
    sc->mask_duplicates = c->mask_duplicates;
    sc->fix_pred_lr = c->fix_pred_lr;
    if (c->fix_pred_lr && kind != HALLU_METHOD_SIMSIAM)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "--fix-pred-lr applies to simsiam only (--method %s has no "
                               "predictor)", c->method);
    if (c->temperature > 0) sc->temperature = (float)c->temperature;
    if (c->base_temperature < 0 || (c->base_temperature > 0 && kind != HALLU_METHOD_SIMCLR))
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "--base-temperature %g: expected >= 0, and for simclr only "
                               "(--method %s)", c->base_temperature, c->method);
    sc->base_temperature = (float)c->base_temperature;
    sc->backbone.zero_init_residual = c->zero_init_residual;
    if (c->proj_dim > 0) sc->proj_dim = c->proj_dim;
    sc->queue_size = c->queue_size;
    sc->momentum = (float)c->moco_momentum;
    sc->bn_splits = c->bn_splits;
    int ranks = run->comm->size, per_rank = c->batch_size / ranks;
    if (c->bn_splits < 1 || c->bn_splits > HALLU_BN_MAX_GROUPS || per_rank % c->bn_splits != 0 ||
        (c->bn_splits > 1 && kind != HALLU_METHOD_MOCOV1 && kind != HALLU_METHOD_MOCOV2))
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "--bn-splits %d: expected 1..%d dividing the batch of "
                               "each rank (%d = --batch-size %d / %d ranks), and > 1 for mocov1/mocov2 only "
                               "(--method %s)", c->bn_splits, HALLU_BN_MAX_GROUPS, per_rank, c->batch_size, ranks,
                               c->method);
    if (c->sync_bn && c->bn_splits > 1)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "--sync-bn with --bn-splits %d: SyncBN normalises over "
                               "the whole global batch, Shuffle BN in groups; choose one", c->bn_splits);
    sc->seed = c->seed;
    if ((kind == HALLU_METHOD_MOCOV1 || kind == HALLU_METHOD_MOCOV2)) {
        int keys = c->batch_size * (c->hallucinator && c->enqueue_duplicates ? 2 : 1);
        if (c->queue_size <= 0 || c->queue_size % keys != 0)
            return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "--queue-size %d must be a positive multiple of the "
                                   "%d keys enqueued per step (--batch-size %d%s)", c->queue_size, keys,
                                   c->batch_size, keys != c->batch_size ? " x 2 duplicates" : "");
    }
    return HALLU_OK;
}

static hallu_status validate(const hallu_train_config *c, hallu_error *err)
{
    if (c->epochs < 0)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "--epochs %d: expected a positive integer (or 0: save the "
                               "initial weights and the untrained kNN without training)", c->epochs);
    if (c->crop && strcmp(c->crop, "ccrop") != 0 && strcmp(c->crop, "rrc") != 0)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "--crop %s: expected ccrop (view 1 ContrastiveCrop, view 2 "
                               "RandomResizedCrop: the authors' recipe) or rrc (RandomResizedCrop on both views)",
                               c->crop);
    if (c->batch_size < 2)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "--batch-size %d: expected at least 2", c->batch_size);
    int ranks = c->comm ? c->comm->size : 1;
    if (c->batch_size % ranks != 0 || c->batch_size / ranks < 2)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "--batch-size %d is the global batch: it must divide by the "
                               "%d ranks into at least 2 images each (e.g. --batch-size %d)", c->batch_size, ranks,
                               (c->batch_size / ranks > 2 ? c->batch_size / ranks : 2) * ranks);
    if (!(c->lr > 0))
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "--lr %g: expected a positive number", c->lr);
    if (c->warmup_epochs < 0 || (c->warmup_epochs > 0 && c->warmup_epochs >= c->epochs))
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "--warmup-epochs %d: expected 0..%d", c->warmup_epochs,
                               c->epochs - 1);
    if (c->hal_ratio_max < 0 || c->hal_ratio_max > 1)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "--hal-ratio-max %g: expected 0..1", c->hal_ratio_max);
    if (c->log_every <= 0 || c->knn_k <= 0 || c->workers <= 0)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "--log-every %d, --knn-k %d, --workers %d: expected positive",
                               c->log_every, c->knn_k, c->workers);
    return HALLU_OK;
}

/* The device first: the loader's batches go to its staging memory. */
static hallu_status setup_backend(train_run *run, hallu_error *err)
{
    const hallu_train_config *c = run->cfg;
    hallu_status s = hallu_backend_create(c->device && c->device[0] ? c->device : "cpu", c->threads, &run->be, err);
    if (s != HALLU_OK)
        return hallu_error_prefix(err, s, "--device %s", c->device ? c->device : "cpu");
    return HALLU_OK;
}

static hallu_status setup_data(train_run *run, hallu_error *err)
{
    const hallu_train_config *c = run->cfg;
    hallu_status s = hallu_dataset_open(&run->train_ds, c->data, HALLU_SPLIT_TRAIN, err);
    if (s == HALLU_OK && hallu_dataset_image_height(run->train_ds) <= 0)
        s = hallu_dataset_probe_sizes(run->train_ds, err);   /* folders: learn the common size */
    if (s != HALLU_OK)
        return s;
    hallu_source_from_dataset(&run->train_src, run->train_ds);
    train_subset_init(&run->train_subset, &run->train_src, c->train_subset);
    if (hallu_dataset_check_uniform_size(run->train_ds, err) != HALLU_OK) {
        char why[HALLU_ERROR_MSG_MAX];
        snprintf(why, sizeof why, "%s", err->msg);
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "--data %s: %s; training needs one square size: "
                               "pack it first (hallu data pack --size N)", c->data, why);
    }
    int size = run->train_src.image_h;
    if (run->train_src.image_w != size)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "--data %s: the images are %dx%d (HxW), not square; "
                               "pack it first (hallu data pack --size N)", c->data, size, run->train_src.image_w);
    if (run->train_src.size < c->batch_size)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "--data %s has %lld training images, fewer than "
                               "--batch-size %d", c->data, (long long)run->train_src.size, c->batch_size);
    hallu_ssl_views_config vc;
    hallu_ssl_views_default(&vc, size);
    vc.view1_ccrop = !(c->crop && strcmp(c->crop, "rrc") == 0);
    hallu_loader_config lc;
    hallu_loader_config_default(&lc);
    lc.batch_size = c->batch_size / run->comm->size;   /* this rank's slice of each global batch */
    lc.rank = run->comm->rank;
    lc.world_size = run->comm->size;
    lc.num_workers = c->workers;
    lc.seed = c->seed;
    lc.n_views = 2;
    s = hallu_ssl_views_build(&vc, lc.views, err);
    hallu_loader_config_for_device(&lc, run->be);
    if (s == HALLU_OK)
        s = hallu_loader_create(&run->loader, &run->train_src, &lc, err);
    if (s != HALLU_OK)
        return s;
    hallu_loader_view_dims(run->loader, &run->image_h, &run->image_w);
    run->steps_per_epoch = hallu_loader_batches_per_epoch(run->loader);
    run->total_steps = run->steps_per_epoch * c->epochs;
    return HALLU_OK;
}

static hallu_status setup_model(train_run *run, hallu_error *err)
{
    const hallu_train_config *c = run->cfg;
    hallu_status s = train_fault_setup(run, err);
    hallu_precision precision = HALLU_PRECISION_FP32;
    if (s == HALLU_OK && c->precision && c->precision[0])
        s = hallu_precision_parse(c->precision, &precision, err);
    if (s == HALLU_OK)   /* before the model plans its convolutions */
        s = hallu_backend_set_precision(run->be, precision, err);
    if (s == HALLU_OK)
        s = hallu_ssl_create(&run->ssl, &run->ssl_cfg, &run->ps, run->be, err);
    if (s == HALLU_OK)
        s = hallu_params_alloc(&run->ps, run->be, err);
    if (s != HALLU_OK)
        return s;
    s = hallu_ssl_init_weights(run->ssl, &run->ps, c->seed, err);   /* MoCo: the key encoder = a copy of the query */
    if (s != HALLU_OK)
        return s;
    if (run->init_path[0] && !run->resuming) {   /* after the fresh init: the heads keep theirs */
        s = train_load_init(run, err);
        if (s != HALLU_OK)
            return s;
    }
    int per_rank = c->batch_size / run->comm->size;
    hallu_ssl_set_comm(run->ssl, run->comm);
    s = hallu_ssl_plan(run->ssl, run->be, per_rank, run->image_h, run->image_w, err);
    int64_t view_elems = (int64_t)per_rank * run->image_h * run->image_w * 3;
    for (int v = 0; v < 2 && s == HALLU_OK; v++)
        s = hallu_buffer_alloc(&run->views[v], run->be, HALLU_DTYPE_F32, view_elems, "training views", err);
    for (int v = 0; v < 2 && s == HALLU_OK && !run->be->ops->host_memory; v++)
        s = hallu_buffer_alloc(&run->views_u8[v], run->be, HALLU_DTYPE_U8, view_elems, "training views (bytes)", err);
    if (s != HALLU_OK)
        return s;
    hallu_optim_config oc;
    s = hallu_optim_parse(c->optimizer, &oc, err);
    if (s != HALLU_OK)
        return s;
    oc.momentum = c->momentum;
    oc.weight_decay = c->weight_decay;
    oc.fixed_lr = c->fix_pred_lr ? c->lr : 0.0;
    return hallu_optimizer_create(&run->opt, &oc, &run->ps, err);
}

static void teardown(train_run *run)
{
    if (run->be)   /* no upload may still read the loader's memory */
        hallu_backend_upload_wait(run->be);
    hallu_loader_destroy(run->loader);
    hallu_optimizer_free(run->opt);
    if (run->ssl)
        hallu_ssl_free(run->ssl);
    hallu_params_free(&run->ps);
    for (int v = 0; v < 2; v++) {
        hallu_buffer_free(&run->views[v]);
        hallu_buffer_free(&run->views_u8[v]);
    }
    if (run->train_ds)
        hallu_dataset_close(run->train_ds);
    hallu_backend_free(run->be);
    if (run->own_comm)
        hallu_comm_free(run->comm);
}

/* Everything a step needs is allocated at setup, so the device memory in use
 * now is the step's peak (the kNN monitor's model comes and goes later). */
static void report_memory(train_run *run, const hallu_train_callbacks *cb)
{
    size_t live = 0, peak = 0;
    hallu_backend_memory(run->be, &live, &peak);
    if (!cb || !cb->message)
        return;
    char msg[200];
    snprintf(msg, sizeof msg, "device %s: %.1f MiB planned for a step (parameters %.1f MiB, with gradients, "
             "optimizer state, method state and activations)", run->be->ops->name, (double)peak / (1 << 20),
             (double)run->ps.trainable_numel * sizeof(float) / (1 << 20));
    cb->message(cb->user, msg);
}

/* Cosine decay to 0 over the run after a linear warm-up, per step. */
static float learning_rate(const train_run *run, int64_t step)
{
    hallu_lr_schedule sched = { .kind = HALLU_LR_COSINE, .base_lr = run->cfg->lr,
                                .warmup_steps = (int64_t)run->cfg->warmup_epochs * run->steps_per_epoch,
                                .total_steps = run->total_steps };
    return (float)hallu_lr_at(&sched, step);
}

typedef struct step_clock {
    double start, window_start, window_wait, window_comm;
    int64_t window_bytes;
    int64_t window_steps, steps_this_process;
} step_clock;

static hallu_status log_metrics(train_run *run, const hallu_ssl_stats *st, float lr, double ips, double wait,
                                double comm, double comm_mb, hallu_error *err)
{
    if (!train_is_root(run))   /* rank 0 writes the run's files */
        return HALLU_OK;
    hallu_json_obj o;
    hallu_json_obj_init(&o);
    hallu_json_obj_add_int(&o, "epoch", run->epoch);
    hallu_json_obj_add_int(&o, "step", run->global_step);
    hallu_json_obj_add_num(&o, "loss", st->loss);
    hallu_json_obj_add_num(&o, "lr", lr);
    hallu_json_obj_add_num(&o, "collapse_std", st->collapse_std);
    hallu_json_obj_add_num(&o, "images_per_s", ips);
    hallu_json_obj_add_num(&o, "data_wait", wait);
    if (run->comm->size > 1) {   /* share of the wall time rank 0 spent in buffer collectives */
        hallu_json_obj_add_int(&o, "ranks", run->comm->size);
        hallu_json_obj_add_num(&o, "comm_fraction", comm);
        hallu_json_obj_add_num(&o, "comm_mb_per_step", comm_mb);   /* this rank's bytes into collectives */
    }
    const char *line = hallu_json_obj_finish(&o, err);
    return line ? hallu_jsonl_append(run->path_metrics, line, err) : err->code;
}

static hallu_status knn_checkpoint(train_run *run, const hallu_train_callbacks *cb, hallu_train_result *res,
                                   int floor, hallu_error *err)
{
    double top1 = 0, top5 = 0;
    hallu_status s = HALLU_OK;
    if (train_is_root(run))   /* the others wait, leaving the cores to it */
        s = train_knn(run, &top1, &top5, err);
    hallu_error wait_err;
    hallu_error_clear(&wait_err);
    hallu_status w = run->comm->ops->barrier(run->comm, run->cfg->dist_timeout, &wait_err);
    if (w != HALLU_OK && s == HALLU_OK) {
        *err = wait_err;
        s = w;
    }
    s = train_agree(run, s, err);
    double result[2] = { top1, top5 };
    if (s == HALLU_OK)
        s = run->comm->ops->host_broadcast(run->comm, result, sizeof result, 0, err);
    if (s != HALLU_OK)
        return s;
    top1 = result[0];
    top5 = result[1];
    hallu_json_obj o;
    hallu_json_obj_init(&o);
    hallu_json_obj_add_int(&o, "epoch", run->epoch);
    hallu_json_obj_add_int(&o, "step", run->global_step);
    hallu_json_obj_add_num(&o, floor ? "knn_floor_top1" : "knn_top1", top1);
    hallu_json_obj_add_num(&o, floor ? "knn_floor_top5" : "knn_top5", top5);
    if (!floor && run->knn_floor_top1 >= 0)   /* points over the untrained network */
        hallu_json_obj_add_num(&o, "knn_gain_top1", top1 - run->knn_floor_top1);
    const char *line = hallu_json_obj_finish(&o, err);
    s = !train_is_root(run) ? HALLU_OK : line ? hallu_jsonl_append(run->path_metrics, line, err) : err->code;
    char msg[160];
    snprintf(msg, sizeof msg, "%s kNN (k=%d, T=%.2g): top-1 %.2f%%  top-5 %.2f%%", floor ? "untrained" : "epoch",
             run->cfg->knn_k, run->cfg->knn_temperature, top1, top5);
    if (cb && cb->message)
        cb->message(cb->user, msg);
    if (floor) {
        run->knn_floor_top1 = top1;
    } else {
        res->knn_top1 = top1;
        res->knn_top5 = top5;
        if (top1 > run->best_knn_top1)
            run->best_knn_top1 = top1;
    }
    return train_agree(run, s, err);   /* rank 0's metrics line */
}

/* A diverged loss stops the run before anything of it is saved. */
static hallu_status check_loss(const train_run *run, const hallu_ssl_stats *st, hallu_error *err)
{
    if (isfinite(st->loss))
        return HALLU_OK;
    return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "loss became %g at step %lld (epoch %d): training diverged; "
                           "lower --lr (now %g)", st->loss, (long long)run->global_step, run->epoch + 1, run->cfg->lr);
}

/* The batch's views into run->views: as floats, or as bytes the device
 * normalises (the upload may still be reading b's bytes on return: see
 * run_epoch's upload_wait). */
static hallu_status upload_views(train_run *run, const hallu_batch *b, hallu_error *err)
{
    hallu_status s = HALLU_OK;
    for (int v = 0; v < 2 && s == HALLU_OK; v++)
        s = hallu_loader_upload_view(run->loader, run->be, b, v, 0, b->n, hallu_buffer_f32(&run->views[v]),
                                     run->views_u8[v].data, err);
    return s;
}

/* One step on the device. The backend's first failure, if any, is checked once
 * at the end (ops after a failure are skipped), so a failed step never reaches
 * a checkpoint. The step's loss stays in device memory unless `read`: logged
 * steps, the epoch's last, the first of this process, and a step before a stop,
 * so the host waits for the device only where it reports or saves. */
static hallu_status train_one_step(train_run *run, const hallu_batch *b, hallu_ssl_stats *st, int read, float lr,
                                   hallu_error *err)
{
    hallu_nn_ctx ctx = { .be = run->be, .ps = &run->ps, .training = 1, .comm = run->comm,
                         .sync_bn = run->cfg->sync_bn };
    int64_t step = run->global_step + 1;   /* counted from 1, as the test hook */
    hallu_params_zero_grad(&run->ps);
    hallu_status s = upload_views(run, b, err);
    train_fault_arm(run, TRAIN_FAULT_FORWARD, step);
    if (s == HALLU_OK || run->comm->size > 1) {
        hallu_status t = hallu_ssl_step(run->ssl, &ctx, hallu_buffer_f32(&run->views[0]),
                                        hallu_buffer_f32(&run->views[1]), b->n, read ? st : NULL, err);
        if (s == HALLU_OK)
            s = t;
    }
    /* Every rank runs the collectives below even after a failure of its own
     * (the ops are skipped, the calls are not), so that no rank waits for it. */
    if (s == HALLU_OK || run->comm->size > 1) {
        train_allreduce_grads(run);
        train_fault_arm(run, TRAIN_FAULT_OPTIMIZER, step);
        hallu_optimizer_step(run->opt, &run->ps, lr);
        hallu_ssl_after_step(run->ssl, &ctx);
        if (!run->cfg->sync_bn)   /* rank-local BN: the running statistics become the ranks' mean */
            hallu_ssl_average_buffers(run->ssl, &run->ps);
        hallu_status c = hallu_backend_check(run->be, err);
        if (s == HALLU_OK)
            s = c;
    }
    if (s != HALLU_OK)
        return hallu_error_prefix(err, s, "step %lld (epoch %d) failed, nothing of it was saved", (long long)step,
                                  run->epoch + 1);
    return HALLU_OK;
}

static void report_progress(train_run *run, const hallu_train_callbacks *cb, const hallu_ssl_stats *st, float lr,
                            const step_clock *clk, double ips, double wait)
{
    if (!cb || !cb->progress)
        return;
    double per_step = (hallu_now() - clk->start) / (double)(clk->steps_this_process ? clk->steps_this_process : 1);
    hallu_train_progress p = {
        .epoch = run->epoch, .epochs = run->cfg->epochs, .step_in_epoch = run->step_in_epoch,
        .steps_per_epoch = run->steps_per_epoch, .global_step = run->global_step, .total_steps = run->total_steps,
        .loss = st->loss, .loss_step = run->stats_step, .lr = lr, .collapse_std = st->collapse_std, .images_per_s = ips,
        .data_wait_fraction = wait, .eta_seconds = per_step * (double)(run->total_steps - run->global_step),
    };
    cb->progress(cb->user, &p);
}

static int stop_requested(const train_run *run, const hallu_train_callbacks *cb)
{
    if (run->cfg->stop_after_steps > 0 && run->global_step == run->cfg->stop_after_steps)
        return 1;
    return cb && cb->should_stop && cb->should_stop(cb->user);
}

/* A checkpoint of replicated state: checked to be the same on every rank,
 * written by rank 0, its status agreed. */
static hallu_status save_checkpoint_agreed(train_run *run, const char *path, hallu_error *err)
{
    hallu_status s = train_check_replicas(run, err);   /* agreed already */
    if (s != HALLU_OK)
        return s;
    if (train_is_root(run))
        s = train_save_checkpoint(run, path, err);
    return train_agree(run, s, err);
}

static hallu_status run_epoch(train_run *run, const hallu_train_callbacks *cb,
                              step_clock *clk, hallu_ssl_stats *st, hallu_error *err)
{
    hallu_status s = hallu_loader_start_epoch(run->loader, (uint32_t)run->epoch, err);
    const hallu_batch *b = NULL;
    for (int64_t k = 0; k < run->step_in_epoch && s == HALLU_OK; k++)   /* resume mid-epoch */
        s = hallu_loader_next(run->loader, &b, err);
    s = train_agree(run, s, err);
    double ips = 0, wait = 0, comm = 0;
    while (s == HALLU_OK) {
        hallu_backend_upload_wait(run->be);   /* the last batch's bytes go back to the loader now */
        s = hallu_loader_next(run->loader, &b, err);
        /* A rank whose data fails says so before the step's collectives; every
         * rank has the same number of batches, so all reach the end together. */
        s = train_agree(run, s, err);
        if (s != HALLU_OK || !b)
            break;
        float lr = learning_rate(run, run->global_step);
        /* The progress line shows the loss last read: from the first step on. */
        int read = (run->global_step + 1) % run->cfg->log_every == 0 || run->step_in_epoch + 1 == run->steps_per_epoch ||
                   clk->steps_this_process == 0;
        s = train_agree(run, train_one_step(run, b, st, read, lr, err), err);
        if (s != HALLU_OK)
            break;
        run->global_step++;
        run->step_in_epoch++;
        clk->steps_this_process++;
        clk->window_steps++;
        double now = hallu_now(), waited = hallu_loader_wait_seconds(run->loader);
        ips = (double)clk->window_steps * run->cfg->batch_size / (now - clk->window_start);
        wait = (waited - clk->window_wait) / (now - clk->window_start);
        comm = (run->comm->seconds - clk->window_comm) / (now - clk->window_start);
        /* A signal on any rank stops every rank after this same step. */
        int stop = train_stop_agreed(run, stop_requested(run, cb), err, &s);
        if (s == HALLU_OK && !read && stop)   /* the checkpoint below must not keep a diverged step */
            s = hallu_ssl_read_stats(run->ssl, st, err);
        if (s == HALLU_OK && (read || stop)) {   /* the loss is the ranks' mean: every rank decides alike */
            s = check_loss(run, st, err);
            run->stats_step = run->global_step;
        }
        if (s != HALLU_OK)
            break;
        if (read) {
            double mb = (double)(run->comm->bytes - clk->window_bytes) / (1 << 20) / (double)clk->window_steps;
            s = train_agree(run, log_metrics(run, st, lr, ips, wait, comm, mb, err), err);
            clk->window_start = now;
            clk->window_wait = waited;
            clk->window_comm = run->comm->seconds;
            clk->window_bytes = run->comm->bytes;
            clk->window_steps = 0;
        }
        report_progress(run, cb, st, lr, clk, ips, wait);
        if (s == HALLU_OK && stop) {
            s = save_checkpoint_agreed(run, run->path_checkpoint, err);
            return s == HALLU_OK ? hallu_error_set(err, HALLU_ERR_INTERRUPTED, "interrupted at step %lld (epoch %d); "
                                                   "checkpoint saved to %s%s: continue with --resume",
                                                   (long long)run->global_step, run->epoch, run->path_checkpoint,
                                                   train_is_root(run) ? "" : " by rank 0") : s;
        }
    }
    return s;
}

static hallu_status end_of_epoch(train_run *run, const hallu_train_callbacks *cb, hallu_train_result *res,
                                 const hallu_ssl_stats *st, hallu_error *err)
{
    const hallu_train_config *c = run->cfg;
    int last = run->epoch + 1 == c->epochs;
    double best_before = run->best_knn_top1;
    /* A failing kNN (e.g. an undecodable test image) is reported after the
     * epoch's checkpoint is saved, so that it never costs the training. */
    hallu_status knn_s = HALLU_OK;
    hallu_error knn_err;
    hallu_error_clear(&knn_err);
    if (!run->knn_off && (last || (c->knn_every > 0 && (run->epoch + 1) % c->knn_every == 0)))
        knn_s = knn_checkpoint(run, cb, res, 0, &knn_err);
    /* Collapse guard: the std of normalised embeddings is ~1/sqrt(d) when healthy. */
    double healthy = 1.0 / sqrt((double)hallu_ssl_embed_dim(run->ssl));
    res->collapsed = st->collapse_std < 0.1 * healthy;
    if (res->collapsed && cb && cb->message) {
        char msg[200];
        snprintf(msg, sizeof msg, "warning: embeddings look collapsed (per-dim std %.4g, healthy ~%.4g) after "
                 "epoch %d", st->collapse_std, healthy, run->epoch + 1);
        cb->message(cb->user, msg);
    }
    run->epoch++;
    run->step_in_epoch = 0;
    train_fault_arm(run, TRAIN_FAULT_CHECKPOINT, run->epoch);
    hallu_status s = save_checkpoint_agreed(run, run->path_checkpoint, err);
    if (s != HALLU_OK)
        return hallu_error_prefix(err, s, "saving the checkpoint of epoch %d (%s keeps the previous one)", run->epoch,
                                  run->path_checkpoint);
    if (s == HALLU_OK && knn_s != HALLU_OK) {
        *err = knn_err;
        return knn_s;
    }
    /* The other kept checkpoints are copies of this one: serialize the state once. */
    int root = train_is_root(run);   /* the copies are rank 0's files */
    if (s == HALLU_OK && root && c->save_every > 0 && run->epoch % c->save_every == 0) {
        char path[TRAIN_RUN_PATH_CAP];
        train_epoch_checkpoint_path(run, run->epoch, path);
        s = hallu_atomic_copy(run->path_checkpoint, path, err);
    }
    if (s == HALLU_OK && root && c->keep_best && run->best_knn_top1 > best_before) {
        s = hallu_atomic_copy(run->path_checkpoint, run->path_best, err);
        if (s == HALLU_OK && cb && cb->message) {
            char msg[1200];
            snprintf(msg, sizeof msg, "best kNN top-1 so far (%.2f%%): saved %s", run->best_knn_top1, run->path_best);
            cb->message(cb->user, msg);
        }
    }
    return train_agree(run, s, err);
}

/* The communicator the run trains with: the caller's, or a one-process one. */
static hallu_status setup_comm(train_run *run, hallu_error *err)
{
    const hallu_train_config *c = run->cfg;
    run->comm = c->comm;
    if (!run->comm) {
        hallu_status s = hallu_comm_create("single", &run->comm, err);
        if (s != HALLU_OK)
            return s;
        run->own_comm = 1;
    }
    run->bucket_floats = (int64_t)(c->bucket_mb > 0 ? c->bucket_mb : 25) * (1 << 20) / (int64_t)sizeof(float);
    return HALLU_OK;
}

/* Rank 0 opens the kNN monitor's sets (the others never read them) and tells
 * the others whether there is a monitor. */
static hallu_status setup_knn(train_run *run, hallu_error *err)
{
    hallu_status s = train_is_root(run) ? train_knn_check(run, err) : HALLU_OK;
    s = train_agree(run, s, err);
    int32_t off = run->knn_off;
    if (s == HALLU_OK)
        s = run->comm->ops->host_broadcast(run->comm, &off, sizeof off, 0, err);
    run->knn_off = off;
    return s;
}

/* Resuming: every rank reads the checkpoint (--out must be readable on every
 * host); all must have found it and stand at the same step. */
static hallu_status resume_agreed(train_run *run, hallu_error *err)
{
    int64_t found = run->resuming;
    hallu_status s = run->comm->ops->host_allreduce_i64(run->comm, &found, 1, HALLU_REDUCE_MIN, err);
    if (s == HALLU_OK && found != run->resuming)
        s = hallu_error_set(err, HALLU_ERR_INVALID_ARG, "--resume: rank 0 found %s, but rank %d (host %s) %s: --out "
                            "must be readable on every host (a shared directory, or copy it)",
                            train_is_root(run) && run->resuming ? "a checkpoint" : "one",
                            run->comm->rank, run->comm->host, run->resuming ? "does too" : "finds none");
    s = train_agree(run, s, err);
    if (s != HALLU_OK || !run->resuming)
        return s;
    s = train_agree(run, train_load_checkpoint(run, err), err);
    if (s == HALLU_OK)
        s = hallu_comm_check_same(run->comm, (uint64_t)run->global_step, "the step the checkpoint resumes from", err);
    if (s == HALLU_OK)
        s = train_check_replicas(run, err);
    if (s != HALLU_OK)   /* every failure above is the same on every rank */
        return s;
    if (train_is_root(run))
        s = train_truncate_metrics(run->path_metrics, run->global_step, err);
    return train_agree(run, s, err);
}

hallu_status hallu_train_run(const hallu_train_config *cfg, const hallu_train_callbacks *cb,
                             hallu_train_result *res, hallu_error *err)
{
    train_run run;
    memset(&run, 0, sizeof run);
    run.cfg = cfg;
    run.best_knn_top1 = -1;
    run.knn_floor_top1 = -1;
    hallu_params_init(&run.ps);
    *res = (hallu_train_result){ .knn_top1 = -1, .knn_top5 = -1, .knn_floor_top1 = -1 };
    hallu_status s = setup_comm(&run, err);
    if (s != HALLU_OK)
        return s;
    /* Each rank sets up alone; one agreement names the first rank that failed
     * (its data missing, a bad flag, ...), so no rank waits for another. */
    s = validate(cfg, err);
    if (s == HALLU_OK) s = train_fault_parse(&run, err);
    if (s == HALLU_OK) s = build_ssl_config(&run, err);
    if (s == HALLU_OK) s = train_prepare_dir(&run, err);
    if (s == HALLU_OK) s = train_resolve_init(&run, err);
    if (s == HALLU_OK) s = setup_backend(&run, err);
    if (s == HALLU_OK) s = setup_data(&run, err);
    s = train_agree(&run, s, err);
    if (s == HALLU_OK) s = setup_knn(&run, err);   /* a missing kNN set fails now, not after training */
    if (s == HALLU_OK) s = train_agree(&run, setup_model(&run, err), err);   /* loads --init: a file that does not fit writes nothing */
    int agreed_so_far = s == HALLU_OK;   /* the same on every rank: a failure above was agreed */
    if (s == HALLU_OK) report_memory(&run, cb);
    if (s == HALLU_OK && train_is_root(&run)) s = train_create_dir(&run, err);
    if (s == HALLU_OK) s = train_write_config(&run, err);   /* builds the recorded config; rank 0 writes it */
    if (agreed_so_far) s = train_agree(&run, s, err);
    if (s == HALLU_OK) s = train_check_same_setup(&run, err);
    if (s == HALLU_OK && cfg->resume && !run.resuming && cb && cb->message) {
        char msg[TRAIN_RUN_PATH_CAP + 160];
        snprintf(msg, sizeof msg, "--resume: no checkpoint was saved before the earlier attempt stopped: "
                 "starting the run again from step 0%s%s", run.init_path[0] ? " with --init " : "", run.init_path);
        cb->message(cb->user, msg);
    }
    if (s == HALLU_OK)
        s = resume_agreed(&run, err);
    if (s == HALLU_OK && run.knn_off && cb && cb->message) {
        char msg[1200];
        snprintf(msg, sizeof msg, "no kNN monitor: --data %s has no test split (pass --knn-test-data SPEC, a "
                 "labelled held-out set, to measure one)", cfg->data);
        cb->message(cb->user, msg);
    }
    if (s == HALLU_OK && !run.resuming && cfg->knn_at_start && !run.knn_off)
        s = knn_checkpoint(&run, cb, res, 1, err);
    step_clock clk = { .start = hallu_now() };
    clk.window_start = clk.start;
    clk.window_wait = run.loader ? hallu_loader_wait_seconds(run.loader) : 0;
    clk.window_comm = run.comm->seconds;
    clk.window_bytes = run.comm->bytes;
    hallu_ssl_stats st;
    memset(&st, 0, sizeof st);
    while (s == HALLU_OK && run.epoch < cfg->epochs) {
        s = run_epoch(&run, cb, &clk, &st, err);
        if (s == HALLU_OK)
            s = end_of_epoch(&run, cb, res, &st, err);
    }
    if (s == HALLU_OK && cfg->epochs == 0 && !run.resuming)   /* the initial weights, as they start */
        s = save_checkpoint_agreed(&run, run.path_checkpoint, err);
    res->knn_floor_top1 = run.knn_floor_top1;
    res->final_loss = st.loss;
    res->steps = run.global_step;
    teardown(&run);
    return s;
}
