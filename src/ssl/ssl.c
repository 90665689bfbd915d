/* The method object: configuration, construction, planning, dispatch, state.
 * Device state (parameters, MoCo's queue, the step's statistics) moves only
 * through backend ops and the checked transfers. */
#include "ssl_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const method_names[] = { "simclr", "mocov1", "mocov2", "simsiam" };
static const char *const hal_init_names[] = { "reference", "residual" };

hallu_status hallu_method_parse(const char *name, hallu_method_kind *out, hallu_error *err)
{
    for (int i = 0; i < 4; i++)
        if (name && strcmp(name, method_names[i]) == 0) {
            *out = (hallu_method_kind)i;
            return HALLU_OK;
        }
    return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                           "unknown --method '%s' (expected simclr, mocov1, mocov2 or simsiam)", name ? name : "(null)");
}

const char *hallu_method_name(hallu_method_kind kind)
{
    return (unsigned)kind < 4 ? method_names[kind] : "unknown";
}

hallu_status hallu_hal_init_parse(const char *name, hallu_hal_init *out, hallu_error *err)
{
    for (int i = 0; i < 2; i++)
        if (name && strcmp(name, hal_init_names[i]) == 0) {
            *out = (hallu_hal_init)i;
            return HALLU_OK;
        }
    return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                           "unknown --hallucinator-init '%s' (expected reference or residual)", name ? name : "(null)");
}

const char *hallu_hal_init_name(hallu_hal_init init)
{
    return (unsigned)init < 2 ? hal_init_names[init] : "unknown";
}

void hallu_ssl_config_default(hallu_ssl_config *cfg, hallu_method_kind method)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->method = method;
    cfg->backbone = (hallu_resnet_config){ .depth = 18, .stem = HALLU_STEM_CIFAR, .zero_init_residual = 0 };
    cfg->proj_dim = method == HALLU_METHOD_SIMSIAM ? 512 : 128;
    cfg->proj_hidden = 0;
    cfg->pred_hidden = 128;
    cfg->temperature = method == HALLU_METHOD_SIMCLR ? 0.5f : method == HALLU_METHOD_MOCOV1 ? 0.07f : 0.2f;
    cfg->base_temperature = 0.0f;
    cfg->queue_size = 65536;
    cfg->momentum = 0.99f;
    cfg->bn_splits = 1;
    cfg->hallucinator = 1;
    cfg->ratio_lo = 0.0f;
    cfg->ratio_hi = 0.1f;
    cfg->fixed_ratio = -1.0f;
    cfg->hal_hidden = 0;
    cfg->hal_init = HALLU_HAL_INIT_REFERENCE;
}

static hallu_status validate(const hallu_ssl_config *c, hallu_error *err)
{
    const char *bad = NULL;
    if ((unsigned)c->method > HALLU_METHOD_SIMSIAM) bad = "method";
    else if (c->proj_dim <= 0) bad = "proj_dim";
    else if (c->proj_hidden < 0) bad = "proj_hidden";
    else if (c->method == HALLU_METHOD_SIMSIAM && c->pred_hidden <= 0) bad = "pred_hidden";
    else if (c->method != HALLU_METHOD_SIMSIAM && !(c->temperature > 0.0f)) bad = "temperature";
    else if (c->base_temperature < 0.0f) bad = "base_temperature";
    else if ((c->method == HALLU_METHOD_MOCOV1 || c->method == HALLU_METHOD_MOCOV2) && c->queue_size <= 0) bad = "queue_size";
    else if (!(c->momentum >= 0.0f && c->momentum <= 1.0f)) bad = "momentum";
    else if (c->bn_splits < 1 || c->bn_splits > HALLU_BN_MAX_GROUPS ||
             (c->bn_splits > 1 && c->method != HALLU_METHOD_MOCOV1 && c->method != HALLU_METHOD_MOCOV2))
        bad = "bn_splits (1..16, and > 1 for MoCo only)";
    else if (!(c->ratio_lo >= 0.0f && c->ratio_hi >= c->ratio_lo)) bad = "ratio range";
    else if (c->hal_hidden < 0) bad = "hal_hidden";
    else if ((unsigned)c->hal_init > HALLU_HAL_INIT_RESIDUAL) bad = "hal_init";
    if (!bad)
        return HALLU_OK;
    return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                           "ssl config: invalid %s (method=%d proj_dim=%d proj_hidden=%d pred_hidden=%d T=%g "
                           "base_T=%g K=%d m=%g ratio=[%g,%g] hal_hidden=%d hal_init=%d)", bad, (int)c->method,
                           c->proj_dim, c->proj_hidden, c->pred_hidden, c->temperature, c->base_temperature,
                           c->queue_size, c->momentum, c->ratio_lo, c->ratio_hi, c->hal_hidden, (int)c->hal_init);
}

int ssl_projector_layers(const hallu_ssl_config *c, int feat, hallu_mlp_layer_spec *l)
{
    int hidden = c->proj_hidden > 0 ? c->proj_hidden : feat, dim = c->proj_dim;
    const hallu_mlp_layer_spec relu = { HALLU_MLP_RELU, 0, 0, 0 };
    switch (c->method) {
    case HALLU_METHOD_MOCOV1:
        l[0] = (hallu_mlp_layer_spec){ HALLU_MLP_LINEAR, dim, 1, 0 };
        return 1;
    case HALLU_METHOD_SIMSIAM:
        /* SimSiam's projector: the output BN has no affine, so the last Linear
         * needs no bias (the reference freezes it). */
        l[0] = (hallu_mlp_layer_spec){ HALLU_MLP_LINEAR, hidden, 0, 0 };
        l[1] = (hallu_mlp_layer_spec){ HALLU_MLP_BN, 0, 0, 1 };
        l[2] = relu;
        l[3] = (hallu_mlp_layer_spec){ HALLU_MLP_LINEAR, hidden, 0, 0 };
        l[4] = (hallu_mlp_layer_spec){ HALLU_MLP_BN, 0, 0, 1 };
        l[5] = relu;
        l[6] = (hallu_mlp_layer_spec){ HALLU_MLP_LINEAR, dim, 0, 0 };
        l[7] = (hallu_mlp_layer_spec){ HALLU_MLP_BN, 0, 0, 0 };
        return 8;
    default:   /* SimCLR, MoCo v2 */
        l[0] = (hallu_mlp_layer_spec){ HALLU_MLP_LINEAR, hidden, 1, 0 };
        l[1] = relu;
        l[2] = (hallu_mlp_layer_spec){ HALLU_MLP_LINEAR, dim, 1, 0 };
        return 3;
    }
}

static hallu_status build_heads(hallu_ssl *ssl, hallu_params *ps, hallu_error *err)
{
    const hallu_ssl_config *c = &ssl->cfg;
    hallu_mlp_layer_spec l[HALLU_MLP_MAX_LAYERS];
    int nl = ssl_projector_layers(c, ssl->feat_dim, l);
    hallu_status s = hallu_mlp_init(&ssl->projector, ps, "projector", ssl->feat_dim, l, nl, err);
    /* The MoCo key encoder mirrors encoder + projector, registered first. */
    ssl->q_count = ps->num_trainable - ssl->q_first;
    if (s == HALLU_OK && c->method == HALLU_METHOD_SIMSIAM) {
        const hallu_mlp_layer_spec pred[4] = {
            { HALLU_MLP_LINEAR, c->pred_hidden, 0, 0 }, { HALLU_MLP_BN, 0, 0, 1 },
            { HALLU_MLP_RELU, 0, 0, 0 }, { HALLU_MLP_LINEAR, c->proj_dim, 1, 0 },
        };
        ssl->has_predictor = 1;
        int first = ps->num_trainable;
        s = hallu_mlp_init(&ssl->predictor, ps, "predictor", c->proj_dim, pred, 4, err);
        for (int i = first; s == HALLU_OK && c->fix_pred_lr && i < ps->num_trainable; i++)
            ps->trainable[i].flags |= HALLU_TENSOR_FIXED_LR;
    }
    return s;
}

static void rng_to_words(const hallu_rng *r, int64_t *w)
{
    w[0] = (int64_t)r->seed;
    w[1] = (int64_t)r->stream;
    w[2] = (int64_t)r->counter;
    w[3] = (int64_t)((uint64_t)r->block[0] | (uint64_t)r->block[1] << 32);
    w[4] = (int64_t)((uint64_t)r->block[2] | (uint64_t)r->block[3] << 32);
    w[5] = r->used;
}

hallu_status hallu_ssl_create(hallu_ssl **out, const hallu_ssl_config *cfg, hallu_params *ps, hallu_backend *be,
                              hallu_error *err)
{
    *out = NULL;
    hallu_status s = validate(cfg, err);
    if (s != HALLU_OK)
        return s;
    hallu_ssl *ssl = calloc(1, sizeof *ssl);
    if (!ssl)
        return hallu_error_set(err, HALLU_ERR_OOM, "ssl: out of memory (%zu bytes)", sizeof *ssl);
    ssl->cfg = *cfg;
    ssl->be = be;
    ssl->ranks = 1;
    ssl->dim = cfg->proj_dim;
    ssl->q_first = ps->num_trainable;
    s = hallu_resnet_create(&ssl->encoder, &cfg->backbone, ps, "encoder", err);
    if (s == HALLU_OK) {
        ssl->feat_dim = hallu_resnet_feature_dim(ssl->encoder);
        s = build_heads(ssl, ps, err);
    }
    if (s == HALLU_OK && cfg->hallucinator) {
        ssl->has_hal = 1;
        int hidden = cfg->hal_hidden > 0 ? cfg->hal_hidden : 2 * ssl->dim;
        s = ssl_hal_init(&ssl->hal, ps, "hallucinator", ssl->dim, hidden,
                         cfg->hal_init == HALLU_HAL_INIT_RESIDUAL, err);
    }
    ssl->is_moco = cfg->method == HALLU_METHOD_MOCOV1 || cfg->method == HALLU_METHOD_MOCOV2;
    if (s == HALLU_OK && ssl->is_moco)
        s = ssl_moco_create(ssl, ps, err);
    hallu_rng_init(&ssl->rng, cfg->seed, 0x4a11);
    rng_to_words(&ssl->rng, ssl->rng_words);
    if (s != HALLU_OK) {
        hallu_ssl_free(ssl);
        return s;
    }
    *out = ssl;
    return HALLU_OK;
}

void hallu_ssl_sync_key(hallu_ssl *ssl, const hallu_params *ps)
{
    if (!ssl->is_moco)
        return;
    for (int i = 0; i < ssl->q_count; i++) {
        const hallu_tensor_info *q = &ps->trainable[ssl->q_first + i], *k = &ssl->key_ps.trainable[i];
        ssl->be->ops->copy(ssl->be, ssl->key_ps.param + k->offset, ps->param + q->offset,
                           (size_t)q->numel * sizeof(float));
    }
    /* BN running statistics too, by name (the key's tensors are named like the query's). */
    for (int i = 0; i < ssl->key_ps.num_state; i++) {
        const hallu_tensor_info *k = &ssl->key_ps.state[i];
        int is_state = 0;
        const hallu_tensor_info *q = hallu_params_find(ps, k->name, &is_state);
        if (q && is_state && q->numel == k->numel)
            ssl->be->ops->copy(ssl->be, ssl->key_ps.buffer + k->offset, ps->buffer + q->offset,
                               (size_t)k->numel * sizeof(float));
    }
}

/* The query side's fresh weights (ps staged). */
static hallu_status init_query(hallu_ssl *ssl, hallu_params *ps, uint64_t seed, hallu_error *err)
{
    hallu_status s = hallu_resnet_init_weights(ssl->encoder, ps, seed, err);
    hallu_mlp_init_default(&ssl->projector, ps, seed, 11);
    if (ssl->has_predictor)
        hallu_mlp_init_default(&ssl->predictor, ps, seed, 12);
    if (ssl->has_hal)
        ssl_hal_init_weights(&ssl->hal, ps, seed, 13);
    return s;
}

/* MoCo's key side: fresh BN buffers like the query's (the parameters are the
 * query's, copied by hallu_ssl_sync_key). */
static hallu_status init_key(hallu_ssl *ssl, uint64_t seed, hallu_error *err)
{
    hallu_params *kp = &ssl->key_ps;
    hallu_status s = hallu_params_stage(kp, err);
    if (s != HALLU_OK)
        return s;
    s = hallu_resnet_init_weights(ssl->key_encoder, kp, seed, err);
    hallu_mlp_init_default(&ssl->key_projector, kp, seed, 11);
    if (s != HALLU_OK) {
        hallu_params_unstage(kp);
        return s;
    }
    return hallu_params_commit(kp, err);
}

/* MoCo's initial queue: random unit rows drawn on the host (their own RNG
 * stream), uploaded once; the pointer starts at row 0. */
static hallu_status init_queue(hallu_ssl *ssl, uint64_t seed, hallu_error *err)
{
    int K = ssl->cfg.queue_size, d = ssl->dim;
    float *queue = hallu_calloc((size_t)K * d * sizeof(float), "moco initial queue", err);
    if (!queue)
        return err->code;
    hallu_rng qr;
    hallu_rng_init(&qr, seed, 14);
    for (int r = 0; r < K; r++) {
        float *row = queue + (size_t)r * d;
        double s = 0.0;
        for (int j = 0; j < d; j++) {
            row[j] = (float)hallu_rng_normal(&qr);
            s += (double)row[j] * row[j];
        }
        float inv = (float)(1.0 / (sqrt(s) > 1e-12 ? sqrt(s) : 1e-12));
        for (int j = 0; j < d; j++)
            row[j] *= inv;
    }
    int64_t zero = 0;
    hallu_status s = hallu_backend_upload(ssl->be, ssl->queue, queue, (size_t)K * d * sizeof(float), err);
    hallu_free(queue);
    if (s == HALLU_OK)
        s = hallu_backend_upload(ssl->be, ssl->queue_ptr_buf.data, &zero, sizeof zero, err);
    ssl->pending_rows = 0;
    return s;
}

hallu_status hallu_ssl_init_weights(hallu_ssl *ssl, hallu_params *ps, uint64_t seed, hallu_error *err)
{
    hallu_status s = hallu_params_stage(ps, err);
    if (s != HALLU_OK)
        return s;
    s = init_query(ssl, ps, seed, err);
    if (s != HALLU_OK) {
        hallu_params_unstage(ps);
        return s;
    }
    s = hallu_params_commit(ps, err);
    if (s != HALLU_OK || !ssl->is_moco)
        return s;
    s = init_key(ssl, seed, err);
    if (s != HALLU_OK)
        return s;
    hallu_ssl_sync_key(ssl, ps);
    s = init_queue(ssl, seed, err);
    return s == HALLU_OK ? hallu_backend_check(ssl->be, err) : s;
}

void hallu_ssl_set_comm(hallu_ssl *ssl, hallu_comm *comm)
{
    ssl->comm = comm && comm->size > 1 ? comm : NULL;
    ssl->ranks = ssl->comm ? comm->size : 1;
    ssl->rank = ssl->comm ? comm->rank : 0;
}

void ssl_comm_check(hallu_ssl *ssl, hallu_status s, const hallu_error *err)
{
    if (s != HALLU_OK)
        hallu_backend_fail(ssl->be, s, "%s", err->msg);
}

static void average_block(hallu_ssl *ssl, float *block, int64_t n)
{
    hallu_comm_allreduce_mean_f32(ssl->comm, ssl->be, block, n, 0, NULL);
}

void hallu_ssl_average_buffers(hallu_ssl *ssl, hallu_params *ps)
{
    if (!ssl->comm)
        return;
    average_block(ssl, ps->buffer, ps->state_numel);
    if (ssl->is_moco)
        average_block(ssl, ssl->key_ps.buffer, ssl->key_ps.state_numel);
}

float *ssl_buffer(hallu_ssl *ssl, size_t floats, const char *what, hallu_error *err)
{
    if (ssl->num_buf == (int)(sizeof ssl->buf / sizeof ssl->buf[0])) {
        hallu_error_set(err, HALLU_ERR_INVALID_ARG, "ssl plan: too many work buffers (%s)", what);
        return NULL;
    }
    float *p = ssl->be->ops->alloc(ssl->be, (floats ? floats : 1) * sizeof(float), what, err);
    if (p)
        ssl->buf[ssl->num_buf++] = p;
    return p;
}

hallu_status hallu_ssl_plan(hallu_ssl *ssl, hallu_backend *be, int batch, int h, int w, hallu_error *err)
{
    if (ssl->planned)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "ssl plan: already planned (batch %d)", ssl->max_batch);
    if (batch < 2 || h <= 0 || w <= 0)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "ssl plan: batch=%d (>= 2) size=%dx%d", batch, h, w);
    if (be != ssl->be)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "ssl plan: another backend than hallu_ssl_create's");
    ssl->max_batch = batch;
    ssl->h = h;
    ssl->w = w;
    int simclr = ssl->cfg.method == HALLU_METHOD_SIMCLR, simsiam = ssl->cfg.method == HALLU_METHOD_SIMSIAM;
    int rows = simclr ? 2 * batch : batch, inst = simsiam ? 2 : 1;
    hallu_status s = hallu_resnet_plan(ssl->encoder, be, rows, h, w, inst, err);
    if (s == HALLU_OK)
        s = hallu_mlp_plan(&ssl->projector, be, rows, inst, err);
    if (s == HALLU_OK && ssl->has_predictor)
        s = hallu_mlp_plan(&ssl->predictor, be, batch, inst, err);
    if (s == HALLU_OK && ssl->has_hal)
        s = ssl_hal_plan(&ssl->hal, be, batch, inst, err);
    if (s == HALLU_OK)
        s = hallu_buffer_alloc(&ssl->stats_buf, be, HALLU_DTYPE_F32, SSL_STAT_COUNT, "ssl step statistics", err);
    if (s == HALLU_OK)
        s = simclr ? ssl_simclr_plan(ssl, err) : simsiam ? ssl_simsiam_plan(ssl, err) : ssl_moco_plan(ssl, err);
    ssl->planned = s == HALLU_OK;
    return s;
}

void hallu_ssl_free(hallu_ssl *ssl)
{
    if (!ssl)
        return;
    hallu_backend *be = ssl->be;
    for (int i = 0; i < ssl->num_buf; i++)
        be->ops->release(be, ssl->buf[i]);
    if (ssl->has_hal)
        ssl_hal_free(&ssl->hal, be);
    if (ssl->has_predictor)
        hallu_mlp_free(&ssl->predictor, be);
    hallu_mlp_free(&ssl->projector, be);
    hallu_resnet_free(ssl->encoder, be);
    if (ssl->is_moco) {
        hallu_mlp_free(&ssl->key_projector, be);
        hallu_resnet_free(ssl->key_encoder, be);
        hallu_params_free(&ssl->key_ps);
        hallu_buffer_free(&ssl->queue_buf);
        hallu_buffer_free(&ssl->queue_ptr_buf);
        hallu_buffer_free(&ssl->key_order_buf);
        hallu_free(ssl->key_order);
        hallu_free(ssl->host_key_param);
        hallu_free(ssl->host_key_buffer);
        hallu_free(ssl->host_queue);
    }
    hallu_buffer_free(&ssl->stats_buf);
    hallu_free(ssl->marked);
    free(ssl);
}

float ssl_draw_ratio(hallu_ssl *ssl)
{
    if (ssl->cfg.fixed_ratio >= 0.0f)
        return ssl->cfg.fixed_ratio;
    return (float)hallu_rng_range(&ssl->rng, ssl->cfg.ratio_lo, ssl->cfg.ratio_hi);
}

hallu_status hallu_ssl_step(hallu_ssl *ssl, const hallu_nn_ctx *ctx, const float *view1,
                            const float *view2, int n, hallu_ssl_stats *stats, hallu_error *err)
{
    if (!ssl->planned)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "ssl step: hallu_ssl_plan was not called");
    if (!view1 || !view2 || n < 2 || n > ssl->max_batch)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "ssl step: batch %d outside [2, %d] (or a NULL view)",
                               n, ssl->max_batch);
    if (ctx->be != ssl->be)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "ssl step: backend differs from the planned one");
    if (ctx->training && n % ssl->cfg.bn_splits != 0)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "ssl step: batch %d is not a multiple of the %d BN splits",
                               n, ssl->cfg.bn_splits);
    hallu_ssl_stats local;
    hallu_ssl_stats *st = stats ? stats : &local;
    memset(st, 0, sizeof *st);
    hallu_status s;
    switch (ssl->cfg.method) {
    case HALLU_METHOD_SIMCLR: s = ssl_simclr_step(ssl, ctx, view1, view2, n, st, err); break;
    case HALLU_METHOD_SIMSIAM: s = ssl_simsiam_step(ssl, ctx, view1, view2, n, st, err); break;
    default: s = ssl_moco_step(ssl, ctx, view1, view2, n, st, err); break;
    }
    if (s != HALLU_OK)
        return s;
    if (!stats)   /* nothing to read: the ops' first failure, if any, without waiting for them */
        return hallu_backend_check(ssl->be, err);
    return hallu_ssl_read_stats(ssl, stats, err);
}

hallu_status hallu_ssl_read_stats(hallu_ssl *ssl, hallu_ssl_stats *stats, hallu_error *err)
{
    /* One download for everything the host reads (checks the ops too). */
    float dev[SSL_STAT_COUNT];
    hallu_status s = hallu_backend_download(ssl->be, dev, ssl_stat(ssl, 0), sizeof dev, err);
    if (ssl->comm) {   /* every rank takes part, failed or not, then all learn of any failure */
        double sum[SSL_STAT_COUNT] = { dev[SSL_STAT_LOSS], dev[SSL_STAT_COLLAPSE] };
        hallu_error cerr;
        hallu_error_clear(&cerr);
        hallu_status c = ssl->comm->ops->host_allreduce_f64(ssl->comm, sum, SSL_STAT_COUNT, HALLU_REDUCE_SUM,
                                                            &cerr);
        if (c != HALLU_OK && s == HALLU_OK) {
            *err = cerr;
            s = c;
        }
        dev[SSL_STAT_LOSS] = (float)(sum[SSL_STAT_LOSS] / ssl->ranks);
        dev[SSL_STAT_COLLAPSE] = (float)(sum[SSL_STAT_COLLAPSE] / ssl->ranks);
    }
    if (s == HALLU_OK) {
        stats->loss = dev[SSL_STAT_LOSS];
        stats->collapse_std = dev[SSL_STAT_COLLAPSE];
    }
    return s;
}

void hallu_ssl_after_step(hallu_ssl *ssl, const hallu_nn_ctx *ctx)
{
    if (ssl->is_moco)
        ssl_moco_after_step(ssl, ctx);
}

hallu_resnet *hallu_ssl_backbone(hallu_ssl *ssl) { return ssl->encoder; }
const hallu_ssl_config *hallu_ssl_get_config(const hallu_ssl *ssl) { return &ssl->cfg; }
int hallu_ssl_embed_dim(const hallu_ssl *ssl) { return ssl->dim; }
hallu_params *hallu_ssl_key_params(hallu_ssl *ssl) { return ssl->is_moco ? &ssl->key_ps : NULL; }

/* ---- checkpoint state ---- */

int hallu_ssl_state_count(const hallu_ssl *ssl)
{
    return 1 + (ssl->is_moco ? ssl->key_ps.num_trainable + ssl->key_ps.num_state + 2 : 0);
}

static void blob_set(hallu_ssl_blob *b, const char *name, hallu_dtype dt, int ndim, const int64_t *shape,
                     void *data)
{
    memset(b, 0, sizeof *b);
    snprintf(b->name, sizeof b->name, "%s", name);
    b->dtype = dt;
    b->ndim = ndim;
    size_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        b->shape[d] = shape[d];
        numel *= (size_t)shape[d];
    }
    b->data = data;
    b->nbytes = numel * hallu_dtype_size(dt);
}

/* The host copies the blobs point into, allocated once on the first get. */
static hallu_status state_mirrors(hallu_ssl *ssl, hallu_error *err)
{
    if (ssl->marked)
        return HALLU_OK;
    hallu_params *kp = &ssl->key_ps;
    if (ssl->is_moco) {
        ssl->host_key_param = hallu_calloc((size_t)kp->trainable_numel * sizeof(float) + 1, "ssl key params", err);
        ssl->host_key_buffer = hallu_calloc((size_t)kp->state_numel * sizeof(float) + 1, "ssl key buffers", err);
        ssl->host_queue = hallu_calloc((size_t)ssl->cfg.queue_size * ssl->dim * sizeof(float), "ssl queue", err);
        if (!ssl->host_key_param || !ssl->host_key_buffer || !ssl->host_queue)
            return err->code;
    }
    ssl->marked = hallu_calloc((size_t)hallu_ssl_state_count(ssl), "ssl state marks", err);
    return ssl->marked ? HALLU_OK : err->code;
}

/* Where blob `index` (not the RNG) lives on the device and in the host copy. */
static void state_place(hallu_ssl *ssl, int index, void **dev, void **host, size_t *nbytes)
{
    hallu_params *kp = &ssl->key_ps;
    if (index < kp->num_trainable + kp->num_state) {
        int is_state = index >= kp->num_trainable;
        const hallu_tensor_info *t = is_state ? &kp->state[index - kp->num_trainable] : &kp->trainable[index];
        *dev = (is_state ? kp->buffer : kp->param) + t->offset;
        *host = (is_state ? ssl->host_key_buffer : ssl->host_key_param) + t->offset;
        *nbytes = (size_t)t->numel * sizeof(float);
    } else if (index == kp->num_trainable + kp->num_state) {
        *dev = ssl->queue;
        *host = ssl->host_queue;
        *nbytes = (size_t)ssl->cfg.queue_size * ssl->dim * sizeof(float);
    } else {
        *dev = ssl->queue_ptr_buf.data;
        *host = &ssl->host_queue_ptr;
        *nbytes = sizeof ssl->host_queue_ptr;
    }
}

hallu_status hallu_ssl_state_get(hallu_ssl *ssl, int index, hallu_ssl_blob *blob, hallu_error *err)
{
    int count = hallu_ssl_state_count(ssl);
    if (index < 0 || index >= count)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "ssl state: blob %d outside [0, %d)", index, count);
    rng_to_words(&ssl->rng, ssl->rng_words);
    if (index == count - 1) {
        int64_t shape[1] = { 6 };
        blob_set(blob, "ssl.rng", HALLU_DTYPE_I64, 1, shape, ssl->rng_words);
        return HALLU_OK;
    }
    hallu_status s = state_mirrors(ssl, err);
    void *dev = NULL, *host = NULL;
    size_t nbytes = 0;
    state_place(ssl, index, &dev, &host, &nbytes);
    if (s == HALLU_OK)
        s = hallu_backend_download(ssl->be, host, dev, nbytes, err);
    if (s != HALLU_OK)
        return s;
    ssl->marked[index] = 1;
    hallu_params *kp = &ssl->key_ps;
    if (index < kp->num_trainable + kp->num_state) {
        int is_state = index >= kp->num_trainable;
        const hallu_tensor_info *t = is_state ? &kp->state[index - kp->num_trainable] : &kp->trainable[index];
        char name[HALLU_NAME_MAX + 16];
        snprintf(name, sizeof name, "ssl.key.%s", t->name);
        blob_set(blob, name, HALLU_DTYPE_F32, t->ndim, t->shape, host);
    } else if (index == kp->num_trainable + kp->num_state) {
        int64_t shape[2] = { ssl->cfg.queue_size, ssl->dim };
        blob_set(blob, "ssl.queue", HALLU_DTYPE_F32, 2, shape, host);
    } else {
        int64_t shape[1] = { 1 };
        blob_set(blob, "ssl.queue_ptr", HALLU_DTYPE_I64, 1, shape, host);
    }
    return HALLU_OK;
}

hallu_status hallu_ssl_state_commit(hallu_ssl *ssl, hallu_error *err)
{
    const int64_t *w = ssl->rng_words;
    int count = hallu_ssl_state_count(ssl);
    if (w[5] < 0 || w[5] > 4)
        return hallu_error_set(err, HALLU_ERR_FORMAT, "ssl state: ssl.rng words used = %lld (expected 0..4)",
                               (long long)w[5]);
    if (ssl->is_moco && ssl->marked && ssl->marked[count - 2] &&
        (ssl->host_queue_ptr < 0 || ssl->host_queue_ptr >= ssl->cfg.queue_size))
        return hallu_error_set(err, HALLU_ERR_FORMAT, "ssl state: ssl.queue_ptr = %lld outside [0, %d)",
                               (long long)ssl->host_queue_ptr, ssl->cfg.queue_size);
    ssl->rng.seed = (uint64_t)w[0];
    ssl->rng.stream = (uint64_t)w[1];
    ssl->rng.counter = (uint64_t)w[2];
    ssl->rng.block[0] = (uint32_t)(uint64_t)w[3];
    ssl->rng.block[1] = (uint32_t)((uint64_t)w[3] >> 32);
    ssl->rng.block[2] = (uint32_t)(uint64_t)w[4];
    ssl->rng.block[3] = (uint32_t)((uint64_t)w[4] >> 32);
    ssl->rng.used = (int)w[5];
    ssl->pending_rows = 0;
    /* Only the blobs handed out since the last commit: the others' host copies may be stale. */
    hallu_status s = HALLU_OK;
    for (int i = 0; ssl->marked && i < count - 1 && s == HALLU_OK; i++) {
        if (!ssl->marked[i])
            continue;
        void *dev = NULL, *host = NULL;
        size_t nbytes = 0;
        state_place(ssl, i, &dev, &host, &nbytes);
        s = hallu_backend_upload(ssl->be, dev, host, nbytes, err);
        ssl->marked[i] = 0;
    }
    return s;
}
