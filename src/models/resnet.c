/* ResNet backbones. A "unit" is conv -> BN (-> ReLU); a block chains 2 (basic)
 * or 3 (bottleneck) units plus an optional downsample unit, then adds and ReLUs.
 *
 * Memory: every activation lives in one planned arena (hallu_mem_plan). What
 * backward reads (conv outputs, ReLU outputs, block outputs) is live for the
 * whole step. The last unit's BN output and the downsample's are read only by
 * their block's add, so every block's pair shares bytes with every other's, and
 * with the activation-gradient buffers, which live only inside one backward call
 * (a pool of three shared by all blocks: backward runs one block at a time).
 *
 * bf16 (issue 28): where the backend rounds in its ReLU (relu_forward_x16), each
 * ReLU output that a convolution reads is kept also as its bf16 copy, made in
 * the ReLU's pass and read by the convolution's forward and weight gradient in
 * place of two rounding passes of their own (same bits).
 *
 * Fused batch norm (hallu_batchnorm_fusable: CPU training): each unit's
 * batch norm applies its ReLU in the same pass, the last unit's also the
 * block's residual add, writing the block output directly; in backward the
 * units' batch norms mask their gradient by the ReLU themselves and each
 * block's final add masks by the previous block's ReLU (add_relu_backward).
 * Same bits, two to four passes fewer over each activation. An inner unit's
 * fp32 output is then not written when its bf16 copy is all that is read.
 * In bf16 with the backend's conv2d_forward_y16 and batchnorm_stats_x16, the
 * fused forward also keeps the convolutions' outputs in bf16 (in the first
 * half of their fp32 buffers), as autocast stores them, and batch norm reads
 * them so: half the bytes in every batch-norm pass. Its backward keeps the
 * activation gradients in bf16 likewise where the backend can
 * (grad16_chain): each convolution writes its input gradient as bf16 (in the
 * first half of a gradient buffer), batch norm's backward and the block's
 * residual add read it so, and the add writes the block's input gradient as
 * bf16 too. With that chain, the forward (res16) also keeps the block outputs
 * only in bf16 (but the last block's, which the pooling reads as floats): the
 * residual adds read the shortcut as bf16 (the block input's bf16 copy, or the
 * downsample's output written as bf16 in the first half of its buffer) and the
 * backward masks by the bf16 block outputs, as autocast keeps them. */
#include "hallu/mem_plan.h"
#include "hallu/models.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_BLOCKS = 16, NUM_GRAD_BUFFERS = 3 };
enum { FUSED = 1, FUSED_PRE16 = 2 };   /* a forward's mode (see the top); 0: unfused */

typedef struct unit {
    hallu_conv2d conv;
    hallu_batchnorm bn;
    int relu;
    int out_f32_read;   /* its fp32 output is read other than by a convolution (the stem's: the first add) */
    int pre_is16[HALLU_MAX_INSTANCES];   /* the forward stored pre as bf16 (pre16 mode, see the top) */
    int in_h, in_w, out_h, out_w;
    float *pre[HALLU_MAX_INSTANCES];   /* conv output (BN input) */
    float *out[HALLU_MAX_INSTANCES];   /* BN (+ReLU) output */
    uint16_t *out16[HALLU_MAX_INSTANCES];   /* its bf16 copy, when a convolution reads it (else NULL) */
    int pre_id[HALLU_MAX_INSTANCES], out_id[HALLU_MAX_INSTANCES], out16_id[HALLU_MAX_INSTANCES];   /* arena requests */
} unit;

typedef struct block {
    unit units[3];
    int num_units, has_down;
    unit down;
    float *out[HALLU_MAX_INSTANCES];
    uint16_t *out16[HALLU_MAX_INSTANCES];   /* as unit.out16 */
    int out_id[HALLU_MAX_INSTANCES], out16_id[HALLU_MAX_INSTANCES];
} block;

struct hallu_resnet {
    hallu_resnet_config cfg;
    int feature_dim, num_blocks, max_batch, num_instances, in_h, in_w;
    int x16;   /* bf16 copies of the convolutions' inputs (see the top) */
    int pre16;   /* the fused forward may keep the convolutions' outputs in bf16 (see the top) */
    unit stem;
    hallu_pool2d_geom pool;
    float *pool_out[HALLU_MAX_INSTANCES];
    int32_t *pool_argmax[HALLU_MAX_INSTANCES];
    block blocks[MAX_BLOCKS];
    float *features[HALLU_MAX_INSTANCES];
    const float *input[HALLU_MAX_INSTANCES];
    int batch[HALLU_MAX_INSTANCES];
    int fwd_mode[HALLU_MAX_INSTANCES];   /* the forward's mode: 0, FUSED or FUSED_PRE16 (see the top) */
    int res16[HALLU_MAX_INSTANCES];   /* the forward kept block outputs and shortcuts in bf16 only (see the top) */
    float *grad_buf[NUM_GRAD_BUFFERS];
    uint16_t *dy16;      /* x16: batch norm's input gradient in bf16, for the convolution after it (else NULL) */
    size_t max_act;      /* floats per activation buffer (max over the net) */
    hallu_mem_plan arena;
    int pool_out_id[HALLU_MAX_INSTANCES], pool_argmax_id[HALLU_MAX_INSTANCES];
    int features_id[HALLU_MAX_INSTANCES], grad_id[NUM_GRAD_BUFFERS], dy16_id;
};

hallu_status hallu_resnet_parse_arch(const char *arch, const char *stem, hallu_resnet_config *cfg,
                                     hallu_error *err)
{
    memset(cfg, 0, sizeof *cfg);
    if (strcmp(arch, "resnet18") == 0) cfg->depth = 18;
    else if (strcmp(arch, "resnet34") == 0) cfg->depth = 34;
    else if (strcmp(arch, "resnet50") == 0) cfg->depth = 50;
    else
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "unknown --arch '%s' (expected resnet18, resnet34 or resnet50)", arch);
    if (strcmp(stem, "cifar") == 0) cfg->stem = HALLU_STEM_CIFAR;
    else if (strcmp(stem, "imagenet") == 0) cfg->stem = HALLU_STEM_IMAGENET;
    else
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "unknown --stem '%s' (expected cifar or imagenet)", stem);
    return HALLU_OK;
}

static hallu_status unit_init(unit *u, hallu_params *ps, const char *prefix, const char *conv_name,
                              const char *bn_name, int cin, int cout, int k, int stride, int relu,
                              hallu_error *err)
{
    char name[HALLU_NAME_MAX];
    u->relu = relu;
    hallu_status s = hallu_name_join(name, sizeof name, prefix, conv_name, err);
    if (s == HALLU_OK)
        s = hallu_conv2d_init(&u->conv, ps, name, cin, cout, k, stride, k / 2, err);
    if (s == HALLU_OK)
        s = hallu_name_join(name, sizeof name, prefix, bn_name, err);
    if (s == HALLU_OK)
        s = hallu_batchnorm_init(&u->bn, ps, name, cout, 1, err);
    return s;
}

static hallu_status block_init(block *b, hallu_params *ps, const char *prefix, int bottleneck, int cin,
                              int planes, int stride, hallu_error *err)
{
    hallu_status s;
    int cout = bottleneck ? planes * 4 : planes;
    if (bottleneck) {
        b->num_units = 3;
        s = unit_init(&b->units[0], ps, prefix, "conv1", "bn1", cin, planes, 1, 1, 1, err);
        if (s == HALLU_OK) s = unit_init(&b->units[1], ps, prefix, "conv2", "bn2", planes, planes, 3, stride, 1, err);
        if (s == HALLU_OK) s = unit_init(&b->units[2], ps, prefix, "conv3", "bn3", planes, cout, 1, 1, 0, err);
    } else {
        b->num_units = 2;
        s = unit_init(&b->units[0], ps, prefix, "conv1", "bn1", cin, planes, 3, stride, 1, err);
        if (s == HALLU_OK) s = unit_init(&b->units[1], ps, prefix, "conv2", "bn2", planes, cout, 3, 1, 0, err);
    }
    b->has_down = stride != 1 || cin != cout;
    if (s == HALLU_OK && b->has_down) {
        char name[HALLU_NAME_MAX];
        s = hallu_name_join(name, sizeof name, prefix, "downsample", err);
        if (s == HALLU_OK)
            s = unit_init(&b->down, ps, name, "0", "1", cin, cout, 1, stride, 0, err);
    }
    return s;
}

hallu_status hallu_resnet_create(hallu_resnet **out, const hallu_resnet_config *cfg, hallu_params *ps,
                                 const char *prefix, hallu_error *err)
{
    static const int layers18[4] = { 2, 2, 2, 2 }, layers34[4] = { 3, 4, 6, 3 };
    const int *layers = cfg->depth == 18 ? layers18 : layers34;
    int bottleneck = cfg->depth == 50;
    if (cfg->depth != 18 && cfg->depth != 34 && cfg->depth != 50)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "resnet: depth %d (expected 18, 34 or 50)", cfg->depth);
    hallu_resnet *net = calloc(1, sizeof *net);
    if (!net)
        return hallu_error_set(err, HALLU_ERR_OOM, "resnet: out of memory (%zu bytes)", sizeof *net);
    net->cfg = *cfg;
    int imagenet = cfg->stem == HALLU_STEM_IMAGENET;
    hallu_status s = unit_init(&net->stem, ps, prefix, "conv1", "bn1", 3, 64, imagenet ? 7 : 3,
                               imagenet ? 2 : 1, 1, err);
    int cin = 64;
    for (int l = 0; l < 4 && s == HALLU_OK; l++) {
        for (int i = 0; i < layers[l] && s == HALLU_OK; i++) {
            char name[HALLU_NAME_MAX], rel[32];
            snprintf(rel, sizeof rel, "layer%d.%d", l + 1, i);
            s = hallu_name_join(name, sizeof name, prefix, rel, err);
            int planes = 64 << l, stride = (i == 0 && l > 0) ? 2 : 1;
            if (s == HALLU_OK)
                s = block_init(&net->blocks[net->num_blocks++], ps, name, bottleneck, cin, planes, stride, err);
            cin = bottleneck ? planes * 4 : planes;
        }
    }
    net->feature_dim = cin;
    if (s != HALLU_OK) {
        free(net);
        return s;
    }
    *out = net;
    return HALLU_OK;
}

int hallu_resnet_feature_dim(const hallu_resnet *net) { return net->feature_dim; }

static void unit_reset(unit *u, hallu_params *ps, uint64_t seed, uint64_t stream, float gamma)
{
    hallu_conv2d_init_kaiming(&u->conv, ps, seed, stream);
    hallu_batchnorm_reset(&u->bn, ps, gamma);
}

hallu_status hallu_resnet_init_weights(hallu_resnet *net, hallu_params *ps, uint64_t seed, hallu_error *err)
{
    hallu_status s = hallu_params_stage(ps, err);
    if (s != HALLU_OK)
        return s;
    uint64_t stream = 1000;
    unit_reset(&net->stem, ps, seed, stream++, 1.0f);
    for (int b = 0; b < net->num_blocks; b++) {
        block *bl = &net->blocks[b];
        for (int u = 0; u < bl->num_units; u++) {
            int last = u == bl->num_units - 1;
            unit_reset(&bl->units[u], ps, seed, stream++, last && net->cfg.zero_init_residual ? 0.0f : 1.0f);
        }
        if (bl->has_down)
            unit_reset(&bl->down, ps, seed, stream++, 1.0f);
    }
    return hallu_params_commit(ps, err);
}

/* ---- planning ---- */

/* The arena's timeline: 0 .. num_blocks + 1. Step-long buffers span all of it;
 * block b's forward-only pair spans [1 + b]; the gradient buffers the last
 * point. A forward or backward call uses its short-lived buffers only while it
 * runs, so those spans never meet, whatever order the calls come in. */
static int span_all(const hallu_resnet *net) { return net->num_blocks + 1; }

static int request(hallu_resnet *net, size_t bytes, int first, int last, hallu_error *err)
{
    return hallu_mem_plan_request(&net->arena, bytes, first, last, err);
}

/* Requests a bf16 copy of `floats` elements per instance into ids[] when
 * `wanted` (ids[] = -1 otherwise). */
static hallu_status request_x16(hallu_resnet *net, int wanted, size_t floats, int *ids, hallu_error *err)
{
    for (int t = 0; t < HALLU_MAX_INSTANCES; t++)
        ids[t] = -1;
    for (int t = 0; t < net->num_instances && wanted && net->x16; t++)
        if ((ids[t] = request(net, floats * sizeof(uint16_t), 0, span_all(net), err)) < 0)
            return err->code;
    return HALLU_OK;
}

/* Requests the unit's buffers; `transient` >= 0: its output is read only within
 * forward point `transient` (one buffer for every instance); `feeds_conv`: a
 * convolution reads its output. */
static hallu_status unit_plan(unit *u, hallu_resnet *net, hallu_backend *be, int h, int w, int transient,
                              int feeds_conv, hallu_error *err)
{
    u->in_h = h;
    u->in_w = w;
    hallu_conv2d_out_size(&u->conv, h, w, &u->out_h, &u->out_w);
    hallu_status s = hallu_conv2d_prepare(&u->conv, be, net->max_batch, h, w, err);
    if (s == HALLU_OK)
        s = hallu_batchnorm_plan(&u->bn, be, net->num_instances, err);
    size_t floats = (size_t)net->max_batch * u->out_h * u->out_w * u->conv.cout;
    if (floats > net->max_act)
        net->max_act = floats;
    int shared = -1;
    if (s == HALLU_OK && transient >= 0 && (shared = request(net, floats * sizeof(float), transient, transient, err)) < 0)
        s = err->code;
    for (int t = 0; t < net->num_instances && s == HALLU_OK; t++) {
        u->pre_id[t] = request(net, floats * sizeof(float), 0, span_all(net), err);
        u->out_id[t] = u->pre_id[t] < 0 ? -1 : transient >= 0 ? shared : request(net, floats * sizeof(float), 0, span_all(net), err);
        if (u->out_id[t] < 0)
            s = err->code;
    }
    if (s == HALLU_OK)
        s = request_x16(net, u->relu && feeds_conv, floats, u->out16_id, err);
    return s;
}

static hallu_status block_plan(block *b, int index, hallu_resnet *net, hallu_backend *be, int *h, int *w,
                               hallu_error *err)
{
    int ih = *h, iw = *w;
    hallu_status s = HALLU_OK;
    for (int u = 0; u < b->num_units && s == HALLU_OK; u++) {
        int last = u == b->num_units - 1;
        s = unit_plan(&b->units[u], net, be, *h, *w, last ? 1 + index : -1, !last, err);
        *h = b->units[u].out_h;
        *w = b->units[u].out_w;
    }
    if (s == HALLU_OK && b->has_down)
        s = unit_plan(&b->down, net, be, ih, iw, 1 + index, 0, err);
    size_t floats = (size_t)net->max_batch * *h * *w * b->units[b->num_units - 1].conv.cout;
    for (int t = 0; t < net->num_instances && s == HALLU_OK; t++)
        if ((b->out_id[t] = request(net, floats * sizeof(float), 0, span_all(net), err)) < 0)
            s = err->code;
    if (s == HALLU_OK)   /* the next block's convolutions read this block's output */
        s = request_x16(net, index + 1 < net->num_blocks, floats, b->out16_id, err);
    return s;
}

static float *arena_f32(const hallu_resnet *net, int id) { return (float *)hallu_mem_plan_addr(&net->arena, id); }
static uint16_t *arena_x16(const hallu_resnet *net, int id)
{
    return id < 0 ? NULL : (uint16_t *)hallu_mem_plan_addr(&net->arena, id);
}

static void unit_bind(unit *u, const hallu_resnet *net)
{
    for (int t = 0; t < net->num_instances; t++) {
        u->pre[t] = arena_f32(net, u->pre_id[t]);
        u->out[t] = arena_f32(net, u->out_id[t]);
        u->out16[t] = arena_x16(net, u->out16_id[t]);
    }
}

/* Points every activation at its place in the committed arena. */
static void bind(hallu_resnet *net)
{
    unit_bind(&net->stem, net);
    for (int b = 0; b < net->num_blocks; b++) {
        block *bl = &net->blocks[b];
        for (int u = 0; u < bl->num_units; u++)
            unit_bind(&bl->units[u], net);
        if (bl->has_down)
            unit_bind(&bl->down, net);
        for (int t = 0; t < net->num_instances; t++) {
            bl->out[t] = arena_f32(net, bl->out_id[t]);
            bl->out16[t] = arena_x16(net, bl->out16_id[t]);
        }
    }
    for (int t = 0; t < net->num_instances; t++) {
        if (net->cfg.stem == HALLU_STEM_IMAGENET) {
            net->pool_out[t] = arena_f32(net, net->pool_out_id[t]);
            net->pool_argmax[t] = (int32_t *)hallu_mem_plan_addr(&net->arena, net->pool_argmax_id[t]);
        }
        net->features[t] = arena_f32(net, net->features_id[t]);
    }
    for (int k = 0; k < NUM_GRAD_BUFFERS; k++)
        net->grad_buf[k] = arena_f32(net, net->grad_id[k]);
    net->dy16 = arena_x16(net, net->dy16_id);
}

hallu_status hallu_resnet_plan(hallu_resnet *net, hallu_backend *be, int max_batch, int h, int w,
                               int num_instances, hallu_error *err)
{
    if (max_batch <= 0 || h <= 0 || w <= 0 || num_instances <= 0 || num_instances > HALLU_MAX_INSTANCES)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "resnet plan: batch=%d size=%dx%d instances=%d (max %d)",
                               max_batch, h, w, num_instances, HALLU_MAX_INSTANCES);
    if (net->arena.count > 0)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "resnet plan: already planned (batch %d)", net->max_batch);
    net->max_batch = max_batch;
    net->num_instances = num_instances;
    net->in_h = h;
    net->in_w = w;
    net->max_act = (size_t)max_batch * h * w * 3;
    net->x16 = be->ops->relu_forward_x16 && hallu_backend_precision(be) == HALLU_PRECISION_BF16;
    net->pre16 = net->x16 && be->ops->conv2d_forward_y16 && be->ops->batchnorm_stats_x16;
    hallu_mem_plan_init(&net->arena);
    net->stem.out_f32_read = 1;
    hallu_status s = unit_plan(&net->stem, net, be, h, w, -1, net->cfg.stem != HALLU_STEM_IMAGENET, err);
    h = net->stem.out_h;
    w = net->stem.out_w;
    if (s == HALLU_OK && net->cfg.stem == HALLU_STEM_IMAGENET) {
        s = hallu_pool2d_geom_init(&net->pool, max_batch, h, w, 64, 3, 2, 1, err);
        size_t floats = (size_t)max_batch * net->pool.oh * net->pool.ow * 64;
        for (int t = 0; t < num_instances && s == HALLU_OK; t++) {
            net->pool_out_id[t] = request(net, floats * sizeof(float), 0, span_all(net), err);
            net->pool_argmax_id[t] = net->pool_out_id[t] < 0 ? -1
                                   : request(net, floats * sizeof(int32_t), 0, span_all(net), err);
            if (net->pool_argmax_id[t] < 0)
                s = err->code;
        }
        h = net->pool.oh;
        w = net->pool.ow;
    }
    for (int b = 0; b < net->num_blocks && s == HALLU_OK; b++)
        s = block_plan(&net->blocks[b], b, net, be, &h, &w, err);
    for (int t = 0; t < num_instances && s == HALLU_OK; t++)
        if ((net->features_id[t] = request(net, (size_t)max_batch * net->feature_dim * sizeof(float), 0,
                                           span_all(net), err)) < 0)
            s = err->code;
    for (int k = 0; k < NUM_GRAD_BUFFERS && s == HALLU_OK; k++)
        if ((net->grad_id[k] = request(net, net->max_act * sizeof(float), span_all(net), span_all(net), err)) < 0)
            s = err->code;
    net->dy16_id = -1;
    if (s == HALLU_OK && net->x16 &&
        (net->dy16_id = request(net, net->max_act * sizeof(uint16_t), span_all(net), span_all(net), err)) < 0)
        s = err->code;
    if (s == HALLU_OK)
        s = hallu_mem_plan_commit(&net->arena, be, "resnet activations", err);
    if (s == HALLU_OK)
        bind(net);
    return s;
}

static void unit_free(unit *u, hallu_backend *be)
{
    hallu_conv2d_free(&u->conv, be);
    hallu_batchnorm_free(&u->bn);
}

void hallu_resnet_free(hallu_resnet *net, hallu_backend *be)
{
    if (!net)
        return;
    unit_free(&net->stem, be);
    for (int b = 0; b < net->num_blocks; b++) {
        block *bl = &net->blocks[b];
        for (int u = 0; u < bl->num_units; u++)
            unit_free(&bl->units[u], be);
        if (bl->has_down)
            unit_free(&bl->down, be);
    }
    hallu_mem_plan_free(&net->arena);
    free(net);
}

/* ---- forward ---- */

/* y = max(x, 0), and its bf16 copy y16 when there is one. */
static void relu_out(const hallu_nn_ctx *ctx, float *y, uint16_t *y16, int64_t n)
{
    if (y16)
        ctx->be->ops->relu_forward_x16(ctx->be, y, y16, y, n);
    else
        ctx->be->ops->relu_forward(ctx->be, y, y, n);
}

/* The unit's fp32 output for what reads it next: NULL where the fused forward
 * did not write it (a convolution reads the bf16 copy). */
static const float *unit_out(const unit *u, int inst, int fused)
{
    return fused && u->relu && u->out16[inst] && !u->out_f32_read ? NULL : u->out[inst];
}

/* The convolution's output (batch norm's input) as the forward stored it:
 * fp32 in pre, or bf16 in pre's first half. */
static const float *pre_f32(const unit *u, int inst) { return u->pre_is16[inst] ? NULL : u->pre[inst]; }
static const uint16_t *pre_x16(const unit *u, int inst)
{
    return u->pre_is16[inst] ? (const uint16_t *)u->pre[inst] : NULL;
}

/* The unit's convolution into pre, as bf16 in FUSED_PRE16 mode where the
 * backend's plan can. */
static hallu_status unit_conv_forward(unit *u, const hallu_nn_ctx *ctx, int inst, const float *x,
                                      const uint16_t *x16, int n, int mode, hallu_error *err)
{
    int done = 0;
    hallu_status s = HALLU_OK;
    if (mode == FUSED_PRE16)
        s = hallu_conv2d_forward_y16(&u->conv, ctx, (uint16_t *)u->pre[inst], x, x16, n, u->in_h, u->in_w, &done,
                                     err);
    if (s == HALLU_OK && !done)
        s = hallu_conv2d_forward(&u->conv, ctx, u->pre[inst], x, x16, n, u->in_h, u->in_w, err);
    u->pre_is16[inst] = done;
    return s;
}

/* x16: x's bf16 copy or NULL; fused: the forward's mode (see the top). */
static hallu_status unit_forward(unit *u, const hallu_nn_ctx *ctx, int inst, const float *x, const uint16_t *x16,
                                 int n, int fused, hallu_error *err)
{
    hallu_status s = unit_conv_forward(u, ctx, inst, x, x16, n, fused, err);
    if (s != HALLU_OK)
        return s;
    int64_t rows = (int64_t)n * u->out_h * u->out_w;
    if (fused) {
        hallu_batchnorm_forward_fused(&u->bn, ctx, inst, (float *)unit_out(u, inst, fused),
                                      u->relu ? u->out16[inst] : NULL, pre_f32(u, inst), pre_x16(u, inst), NULL,
                                      NULL, u->relu, rows);
        return HALLU_OK;
    }
    hallu_batchnorm_forward(&u->bn, ctx, inst, u->out[inst], u->pre[inst], rows);
    if (u->relu)
        relu_out(ctx, u->out[inst], u->out16[inst], rows * u->conv.cout);
    return HALLU_OK;
}

/* The backend ops of the bf16 gradient chain (see grad16_chain). */
static int grad16_ops(const hallu_resnet *net, const hallu_nn_ctx *ctx)
{
    const hallu_backend_ops *ops = ctx->be->ops;
    return net->dy16 && ops->conv2d_backward_dx16 && ops->add_relu_backward_x16;
}

/* res16 (net->res16): the block's output is written only as bf16 (out16)
 * unless it is the last block's (the pooling reads floats), the shortcut is
 * read as bf16 (x16, or the downsample's output written as bf16 into the first
 * half of its buffer). */
static hallu_status block_forward(block *b, const hallu_nn_ctx *ctx, int inst, const float *x, const uint16_t *x16,
                                  int n, int fused, int res16, int last_block, hallu_error *err)
{
    hallu_status s = HALLU_OK;
    const float *shortcut = x;
    const uint16_t *shortcut16 = NULL;
    if (b->has_down && res16) {
        unit *d = &b->down;
        s = unit_conv_forward(d, ctx, inst, x, x16, n, fused, err);
        if (s == HALLU_OK)
            hallu_batchnorm_forward_fused(&d->bn, ctx, inst, NULL, (uint16_t *)d->out[inst], pre_f32(d, inst),
                                          pre_x16(d, inst), NULL, NULL, 0, (int64_t)n * d->out_h * d->out_w);
        shortcut = NULL;
        shortcut16 = (const uint16_t *)d->out[inst];
    } else if (b->has_down) {   /* first: the fused last unit reads its output */
        s = unit_forward(&b->down, ctx, inst, x, x16, n, fused, err);
        shortcut = b->down.out[inst];
    } else if (res16 && x16) {
        shortcut = NULL;
        shortcut16 = x16;
    }
    const float *cur = x;
    const uint16_t *cur16 = x16;
    for (int u = 0; u < b->num_units - 1 && s == HALLU_OK; u++) {
        s = unit_forward(&b->units[u], ctx, inst, cur, cur16, n, fused, err);
        cur = unit_out(&b->units[u], inst, fused);
        cur16 = b->units[u].out16[inst];
    }
    if (s != HALLU_OK)
        return s;
    unit *last = &b->units[b->num_units - 1];
    int64_t rows = (int64_t)n * last->out_h * last->out_w, numel = rows * last->conv.cout;
    if (!fused) {
        s = unit_forward(last, ctx, inst, cur, cur16, n, fused, err);
        if (s == HALLU_OK) {
            ctx->be->ops->add(ctx->be, b->out[inst], last->out[inst], shortcut, numel);
            relu_out(ctx, b->out[inst], b->out16[inst], numel);
        }
        return s;
    }
    s = unit_conv_forward(last, ctx, inst, cur, cur16, n, fused, err);
    float *out = res16 && !last_block && b->out16[inst] ? NULL : b->out[inst];
    if (s == HALLU_OK)
        hallu_batchnorm_forward_fused(&last->bn, ctx, inst, out, b->out16[inst], pre_f32(last, inst),
                                      pre_x16(last, inst), shortcut, shortcut16, 1, rows);
    return s;
}

hallu_status hallu_resnet_forward(hallu_resnet *net, const hallu_nn_ctx *ctx, int inst, const float *x,
                                  int n, const float **features, hallu_error *err)
{
    if (inst < 0 || inst >= net->num_instances || n <= 0 || n > net->max_batch)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                               "resnet forward: instance %d of %d, batch %d of max %d", inst,
                               net->num_instances, n, net->max_batch);
    net->input[inst] = x;
    net->batch[inst] = n;
    int fused = net->fwd_mode[inst] = !hallu_batchnorm_fusable(ctx) ? 0 : net->pre16 ? FUSED_PRE16 : FUSED;
    int res16 = net->res16[inst] = fused == FUSED_PRE16 && grad16_ops(net, ctx);
    hallu_status s = unit_forward(&net->stem, ctx, inst, x, NULL, n, fused, err);
    const float *cur = net->stem.out[inst];
    const uint16_t *cur16 = net->stem.out16[inst];
    if (s == HALLU_OK && net->cfg.stem == HALLU_STEM_IMAGENET) {
        hallu_pool2d_geom g = net->pool;
        g.n = n;
        ctx->be->ops->maxpool2d_forward(ctx->be, net->pool_out[inst], net->pool_argmax[inst], cur, &g);
        cur = net->pool_out[inst];
        cur16 = NULL;
    }
    for (int b = 0; b < net->num_blocks && s == HALLU_OK; b++) {
        s = block_forward(&net->blocks[b], ctx, inst, cur, cur16, n, fused, res16, b == net->num_blocks - 1, err);
        cur = net->blocks[b].out[inst];
        cur16 = net->blocks[b].out16[inst];
    }
    if (s != HALLU_OK)
        return s;
    const unit *last = &net->blocks[net->num_blocks - 1].units[net->blocks[net->num_blocks - 1].num_units - 1];
    ctx->be->ops->global_avgpool_forward(ctx->be, net->features[inst], cur, n, last->out_h * last->out_w,
                                         net->feature_dim);
    *features = net->features[inst];
    return HALLU_OK;
}

/* ---- backward ---- */

/* A gradient buffer of the backward: its floats, or bf16 values in its first
 * half (is16; the bf16 gradient chain, see grad16_chain). */
typedef struct grad_ref {
    float *f;
    int is16;
} grad_ref;

static const float *grad_f32(grad_ref g) { return g.is16 ? NULL : g.f; }
static const uint16_t *grad_x16(grad_ref g) { return g.is16 ? (const uint16_t *)g.f : NULL; }

/* The fused bf16 backward keeps the activation gradients in bf16 where the
 * backend can (conv2d_backward_dx16, add_relu_backward_x16), as autocast
 * keeps a bf16 convolution's input gradient: each convolution's input
 * gradient is written as bf16, and batch norm and the residual adds read it
 * so (half the bytes of every pass over a gradient). */
static int grad16_chain(const hallu_resnet *net, const hallu_nn_ctx *ctx, int inst)
{
    return net->fwd_mode[inst] && grad16_ops(net, ctx);
}

/* dy is consumed (ReLU's backward runs in place on it); bn_dx receives the BN
 * input gradient and may be dy itself (batch norm's backward allows that);
 * dx (NULL: not needed) receives the unit's input gradient and must differ
 * from bn_dx. With the net's bf16 gradient buffer (net->dy16, else NULL) batch
 * norm writes its input gradient there as bf16 instead, for the convolution.
 * fused: the forward was fused (batch norm masks by the ReLU itself), and then
 * dy may be bf16 (dy.is16) and, with grad16, the convolution writes dx as
 * bf16 where it can (dx->is16 says which it wrote). */
static hallu_status unit_backward(unit *u, const hallu_nn_ctx *ctx, int inst, grad_ref *dx, grad_ref dy,
                                  const float *x, const uint16_t *x16, int n, float *bn_dx, uint16_t *dy16,
                                  int fused, int grad16, hallu_error *err)
{
    int64_t rows = (int64_t)n * u->out_h * u->out_w;
    float *dxf = dx ? dx->f : NULL;
    if (dx)
        dx->is16 = 0;
    if (fused) {
        hallu_batchnorm_backward_fused(&u->bn, ctx, inst, dy16 ? NULL : bn_dx, dy16, grad_f32(dy), grad_x16(dy),
                                       pre_f32(u, inst), pre_x16(u, inst), u->relu, rows);
        const float *conv_dy = dy16 ? NULL : bn_dx;
        if (grad16 && dx && dy16) {
            int done = 0;
            hallu_status s = hallu_conv2d_backward_dx16(&u->conv, ctx, (uint16_t *)dxf, conv_dy, dy16, x, x16, n,
                                                        u->in_h, u->in_w, &done, err);
            if (s != HALLU_OK || done) {
                dx->is16 = done;
                return s;
            }
        }
        return hallu_conv2d_backward(&u->conv, ctx, dxf, conv_dy, dy16, x, x16, n, u->in_h, u->in_w, err);
    }
    if (u->relu)
        ctx->be->ops->relu_backward(ctx->be, dy.f, dy.f, u->out[inst], rows * u->conv.cout);
    if (dy16 && hallu_batchnorm_backward_x16(&u->bn, ctx, inst, dy16, dy.f, u->pre[inst], rows))
        return hallu_conv2d_backward(&u->conv, ctx, dxf, NULL, dy16, x, x16, n, u->in_h, u->in_w, err);
    hallu_batchnorm_backward(&u->bn, ctx, inst, bn_dx, dy.f, u->pre[inst], rows);
    return hallu_conv2d_backward(&u->conv, ctx, dxf, bn_dx, NULL, x, x16, n, u->in_h, u->in_w, err);
}

/* The block's output gradient is in buf[*index]; on return *index names the
 * buffer holding its input gradient. Three buffers: g keeps the output
 * gradient for the shortcut until the downsample (or the final add) has read
 * it; the main path alternates between the other two, its units' batch norms
 * running in place except the last unit's, whose input gradient g must not
 * overwrite. Fused forward (net->fwd_mode): the output gradient comes
 * masked by the block's ReLU already, and when mask_input the input gradient
 * leaves masked by the ReLU that made x (the previous block's). With grad16
 * (grad16_chain) the buffers may hold bf16 (buf[i].is16), and the input
 * gradient goes to the third buffer, as bf16 unless out_f32. */
static hallu_status block_backward(block *b, hallu_resnet *net, const hallu_nn_ctx *ctx, int inst,
                                   const float *x, const uint16_t *x16, int n, int mask_input, int out_f32,
                                   grad_ref *buf, int *index, hallu_error *err)
{
    int fused = net->fwd_mode[inst], grad16 = grad16_chain(net, ctx, inst);
    int g = *index, cur = (g + 1) % NUM_GRAD_BUFFERS, other = (g + 2) % NUM_GRAD_BUFFERS;
    const unit *last = &b->units[b->num_units - 1];
    int64_t numel = (int64_t)n * last->out_h * last->out_w * last->conv.cout;
    if (!fused)
        ctx->be->ops->relu_backward(ctx->be, buf[g].f, buf[g].f, b->out[inst], numel);

    /* The last unit: BN's input gradient into `other`, the conv's into `cur`. */
    int u = b->num_units - 1;
    hallu_status s = unit_backward(&b->units[u], ctx, inst, &buf[cur], buf[g], unit_out(&b->units[u - 1], inst, fused),
                                   b->units[u - 1].out16[inst], n, buf[other].f, net->dy16, fused, grad16, err);
    for (u--; u >= 0 && s == HALLU_OK; u--) {
        const float *ux = u == 0 ? x : unit_out(&b->units[u - 1], inst, fused);
        const uint16_t *ux16 = u == 0 ? x16 : b->units[u - 1].out16[inst];
        s = unit_backward(&b->units[u], ctx, inst, &buf[other], buf[cur], ux, ux16, n, buf[cur].f, net->dy16, fused,
                          grad16, err);
        int t = cur; cur = other; other = t;
    }
    if (s != HALLU_OK)
        return s;
    int64_t in_numel = (int64_t)n * b->units[0].in_h * b->units[0].in_w * b->units[0].conv.cin;
    if (b->has_down)   /* its BN reads g into `other`, its conv writes the shortcut's gradient over g */
        s = unit_backward(&b->down, ctx, inst, &buf[g], buf[g], x, x16, n, buf[other].f, net->dy16, fused, grad16,
                          err);
    if (grad16) {   /* batch norm wrote net->dy16, so `other` is free */
        /* the mask: the ReLU output that made x, as bf16 where the forward kept only that (res16) */
        int mask16 = mask_input && net->res16[inst] && x16;
        buf[other].is16 = !out_f32;
        ctx->be->ops->add_relu_backward_x16(ctx->be, out_f32 ? buf[other].f : NULL,
                                            out_f32 ? NULL : (uint16_t *)buf[other].f, grad_f32(buf[cur]),
                                            grad_x16(buf[cur]), grad_f32(buf[g]), grad_x16(buf[g]),
                                            mask_input && !mask16 ? x : NULL, mask16 ? x16 : NULL, in_numel);
        *index = other;
        return s;
    }
    if (fused && mask_input)
        ctx->be->ops->add_relu_backward(ctx->be, buf[cur].f, buf[cur].f, buf[g].f, x, in_numel);
    else
        ctx->be->ops->add(ctx->be, buf[cur].f, buf[cur].f, buf[g].f, in_numel);
    *index = cur;
    return s;
}

hallu_status hallu_resnet_backward(hallu_resnet *net, const hallu_nn_ctx *ctx, int inst,
                                   const float *dfeatures, hallu_error *err)
{
    if (inst < 0 || inst >= net->num_instances || !net->input[inst])
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "resnet backward: instance %d has no forward", inst);
    int n = net->batch[inst];
    const block *lastb = &net->blocks[net->num_blocks - 1];
    const unit *last = &lastb->units[lastb->num_units - 1];
    int index = 0;
    grad_ref buf[NUM_GRAD_BUFFERS];
    for (int i = 0; i < NUM_GRAD_BUFFERS; i++)
        buf[i] = (grad_ref){ net->grad_buf[i], 0 };
    ctx->be->ops->global_avgpool_backward(ctx->be, net->grad_buf[index], dfeatures, n,
                                          last->out_h * last->out_w, net->feature_dim);
    hallu_status s = HALLU_OK;
    int imagenet = net->cfg.stem == HALLU_STEM_IMAGENET, fused = net->fwd_mode[inst];
    if (fused)   /* the last block's ReLU (each earlier block's comes with the add after it) */
        ctx->be->ops->relu_backward(ctx->be, net->grad_buf[index], net->grad_buf[index], lastb->out[inst],
                                    (int64_t)n * last->out_h * last->out_w * last->conv.cout);
    for (int b = net->num_blocks - 1; b >= 0 && s == HALLU_OK; b--) {
        const float *bx = b > 0 ? net->blocks[b - 1].out[inst]
                        : imagenet ? net->pool_out[inst] : net->stem.out[inst];
        const uint16_t *bx16 = b > 0 ? net->blocks[b - 1].out16[inst] : imagenet ? NULL : net->stem.out16[inst];
        /* the ImageNet stem's max pooling reads its gradient as floats */
        s = block_backward(&net->blocks[b], net, ctx, inst, bx, bx16, n, b > 0, imagenet && b == 0, buf, &index,
                           err);
    }
    if (s != HALLU_OK)
        return s;
    if (imagenet) {
        hallu_pool2d_geom g = net->pool;
        g.n = n;
        int to = (index + 1) % NUM_GRAD_BUFFERS;
        ctx->be->ops->maxpool2d_backward(ctx->be, net->grad_buf[to], net->grad_buf[index], net->pool_argmax[inst], &g);
        index = to;
        buf[index].is16 = 0;
    }
    return unit_backward(&net->stem, ctx, inst, NULL, buf[index], net->input[inst], NULL, n, net->grad_buf[index],
                         net->dy16, fused, 0, err);
}
