/* Layers as modules. A module registers its parameters in a hallu_params at init
 * (torchvision names under a prefix), keeps only offsets, and runs forward/
 * backward through the backend table. Saved activations are owned by the model
 * that composes the modules (planned once per batch size), except the small
 * per-instance BN statistics, which the BN module owns (device memory, allocated
 * by hallu_batchnorm_plan, which the model's plan calls).
 *
 * "Instance": one forward pass whose activations must survive until its backward
 * (e.g. SimCLR's two views through one encoder); modules keep per-instance state
 * for up to HALLU_MAX_INSTANCES. */
#ifndef HALLU_NN_H
#define HALLU_NN_H

#include "hallu/backend.h"
#include "hallu/dist.h"
#include "hallu/params.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { HALLU_MAX_INSTANCES = 4, HALLU_CONV_PLAN_CACHE = 4, HALLU_BN_MAX_GROUPS = 16 };

typedef struct hallu_nn_ctx {
    hallu_backend *be;
    hallu_params *ps;
    int training;            /* BN uses batch statistics and updates running ones */
    int bn_groups;           /* training BN: statistics per group of consecutive samples, as data-parallel
                                BN sees its per-device share (MoCo's Shuffle BN); 0 or 1 = the whole batch */
    hallu_comm *comm;        /* the data-parallel ranks (NULL: one process) */
    int sync_bn;             /* training BN over the whole batch (bn_groups <= 1): statistics, and in
                                backward the gradient sums, summed across comm's ranks (SyncBN); every
                                rank must pass the same number of rows */
} hallu_nn_ctx;

/* ---- conv2d (no bias) ---- */
typedef struct hallu_conv2d {
    int cin, cout, k, stride, pad;
    int64_t weight;                                   /* offset of [cout][cin][k][k] */
    hallu_conv2d_plan *plans[HALLU_CONV_PLAN_CACHE];  /* by input geometry */
    hallu_conv2d_geom geoms[HALLU_CONV_PLAN_CACHE];
    int num_plans, next_evict;
} hallu_conv2d;

hallu_status hallu_conv2d_init(hallu_conv2d *m, hallu_params *ps, const char *prefix, int cin,
                               int cout, int k, int stride, int pad, hallu_error *err);
void hallu_conv2d_free(hallu_conv2d *m, hallu_backend *be);
/* Output size for an input h x w. */
void hallu_conv2d_out_size(const hallu_conv2d *m, int h, int w, int *oh, int *ow);
/* Creates (or finds) the plan for this geometry; done at model planning time so
 * the training step never creates one. */
hallu_status hallu_conv2d_prepare(hallu_conv2d *m, hallu_backend *be, int n, int h, int w,
                                  hallu_error *err);
/* x16 (may be NULL): bf16(x), see the backend's conv2d_forward. */
hallu_status hallu_conv2d_forward(hallu_conv2d *m, const hallu_nn_ctx *ctx, float *y, const float *x,
                                  const uint16_t *x16, int n, int h, int w, hallu_error *err);
/* hallu_conv2d_forward with y written only as its bf16 rounding y16, where
 * the backend's plan can (conv2d_forward_y16): *done = 1; else *done = 0 and
 * nothing is written (the caller runs hallu_conv2d_forward). */
hallu_status hallu_conv2d_forward_y16(hallu_conv2d *m, const hallu_nn_ctx *ctx, uint16_t *y16, const float *x,
                                      const uint16_t *x16, int n, int h, int w, int *done, hallu_error *err);
/* hallu_conv2d_backward with dx written only as its bf16 rounding dx16,
 * where the backend's plan can (conv2d_backward_dx16): *done = 1; else
 * *done = 0 and nothing runs (the caller runs hallu_conv2d_backward). */
hallu_status hallu_conv2d_backward_dx16(hallu_conv2d *m, const hallu_nn_ctx *ctx, uint16_t *dx16, const float *dy,
                                        const uint16_t *dy16, const float *x, const uint16_t *x16, int n, int h,
                                        int w, int *done, hallu_error *err);
/* dy16 (may be NULL): dy's bf16 rounding, read in place of dy (which may then
 * be NULL); see the backend's conv2d_backward. */
hallu_status hallu_conv2d_backward(hallu_conv2d *m, const hallu_nn_ctx *ctx, float *dx, const float *dy,
                                   const uint16_t *dy16, const float *x, const uint16_t *x16, int n, int h, int w,
                                   hallu_error *err);
/* Kaiming normal, fan_out, gain sqrt(2) (torchvision ResNet init). */
void hallu_conv2d_init_kaiming(hallu_conv2d *m, hallu_params *ps, uint64_t seed, uint64_t stream);

/* ---- batch norm (2d over NHWC rows, or 1d over [n][c]) ---- */
typedef struct hallu_batchnorm {
    int c, affine;
    float momentum, eps;
    int64_t weight, bias;                         /* trainable offsets (-1 when !affine) */
    int64_t running_mean, running_var, num_batches_tracked;   /* state offsets */
    /* Device memory from hallu_batchnorm_plan: the float statistics backward
     * takes, save_mean/save_invstd [instances][HALLU_BN_MAX_GROUPS][c] (views of
     * `saved`; save_scale too: the fused ReLU forward's scale, see
     * hallu_batchnorm_forward_fused), and the double batch mean and variance
     * [2][c] of the forward in progress (`batch`). */
    hallu_buffer saved, batch;
    float *save_mean, *save_invstd, *save_scale;
    int planned_instances;
} hallu_batchnorm;

hallu_status hallu_batchnorm_init(hallu_batchnorm *m, hallu_params *ps, const char *prefix, int c,
                                  int affine, hallu_error *err);
/* Allocates the statistics on be for up to num_instances instances (again only
 * when more are asked for or the backend changes); before any training forward. */
hallu_status hallu_batchnorm_plan(hallu_batchnorm *m, hallu_backend *be, int num_instances, hallu_error *err);
/* Frees the statistics (not the parameters); safe on a never planned module. */
void hallu_batchnorm_free(hallu_batchnorm *m);
/* Sets weight 1 (or `gamma`), bias 0, running mean 0, var 1. */
void hallu_batchnorm_reset(hallu_batchnorm *m, hallu_params *ps, float gamma);
/* With ctx->bn_groups = G > 1 in training, the rows form G equal groups (rows % G == 0),
 * each normalised by its own statistics; the running statistics move by the mean of
 * the groups' updates (as SplitBatchNorm / per-device BN followed by averaging).
 * With ctx->sync_bn on N > 1 ranks, the statistics are those of all ranks' rows
 * (N x rows), the running statistics move with them (identical on every rank),
 * and backward's dx takes the gradient sums of all ranks; dgamma/dbeta stay this
 * rank's share (the gradient all-reduce averages them). A failing collective is
 * recorded as the backend's failure. */
void hallu_batchnorm_forward(hallu_batchnorm *m, const hallu_nn_ctx *ctx, int inst, float *y,
                             const float *x, int64_t rows);
void hallu_batchnorm_backward(hallu_batchnorm *m, const hallu_nn_ctx *ctx, int inst, float *dx,
                              const float *dy, const float *x, int64_t rows);
/* hallu_batchnorm_backward with dx written only as its bf16 rounding dx16 (for
 * a bf16 convolution's dy16), where the backend can (batchnorm_backward_x16)
 * and the statistics are not synchronised across ranks: returns 1; otherwise
 * does nothing and returns 0 (the caller runs hallu_batchnorm_backward). */
int hallu_batchnorm_backward_x16(hallu_batchnorm *m, const hallu_nn_ctx *ctx, int inst, uint16_t *dx16,
                                 const float *dy, const float *x, int64_t rows);
/* Batch norm fused with the ReLU after it (and a residual add before that
 * ReLU), one pass where there were three: whether the backend can
 * (batchnorm_normalize_fused, batchnorm_backward_fused, add_relu_backward) in
 * this context (training, no groups, no sync across ranks). A caller that
 * runs hallu_batchnorm_forward_fused runs hallu_batchnorm_backward_fused for it. */
int hallu_batchnorm_fusable(const hallu_nn_ctx *ctx);
/* bn(x), + residual when residual != NULL, then max(., 0) when relu: written
 * to y and/or rounded to bf16 to y16 (either may be NULL; y16 as
 * relu_forward_x16), the same bits as hallu_batchnorm_forward, add and
 * relu_forward in turn, with the same statistics and running updates. The
 * input is x, or bf16 values x16 (x NULL; the backend's batchnorm_stats_x16
 * needed, conv2d_forward_y16 makes them); the residual is residual, or bf16
 * values residual16 (residual NULL). Only where hallu_batchnorm_fusable. */
void hallu_batchnorm_forward_fused(hallu_batchnorm *m, const hallu_nn_ctx *ctx, int inst, float *y, uint16_t *y16,
                                   const float *x, const uint16_t *x16, const float *residual,
                                   const uint16_t *residual16, int relu, int64_t rows);
/* The backward of hallu_batchnorm_forward_fused without residual (the same x
 * or x16 and relu), from the gradient of its output, dy or bf16 values dy16
 * (dy NULL; hallu_conv2d_backward_dx16 makes them): with relu, relu_backward
 * (the mask recomputed from x, not read); then hallu_batchnorm_backward, dx
 * written to dx (may be dy) or as bf16 to dx16 (as hallu_batchnorm_backward_x16). */
void hallu_batchnorm_backward_fused(hallu_batchnorm *m, const hallu_nn_ctx *ctx, int inst, float *dx,
                                    uint16_t *dx16, const float *dy, const uint16_t *dy16, const float *x,
                                    const uint16_t *x16, int relu, int64_t rows);

/* ---- linear ---- */
typedef struct hallu_linear {
    int in, out, has_bias;
    int64_t weight, bias;     /* bias = -1 without bias */
} hallu_linear;

hallu_status hallu_linear_init(hallu_linear *m, hallu_params *ps, const char *prefix, int in, int out,
                               int has_bias, hallu_error *err);
/* PyTorch's default: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias. */
void hallu_linear_init_default(hallu_linear *m, hallu_params *ps, uint64_t seed, uint64_t stream);
void hallu_linear_forward(const hallu_linear *m, const hallu_nn_ctx *ctx, float *y, const float *x, int rows);
void hallu_linear_backward(const hallu_linear *m, const hallu_nn_ctx *ctx, float *dx, const float *dy,
                           const float *x, int rows);

/* ---- MLP: a sequence of Linear / BatchNorm1d / ReLU, as heads and the
 * Hallucinator use. Layer k is named "<prefix>.<k>" like nn.Sequential. ---- */
typedef enum hallu_mlp_layer_kind { HALLU_MLP_LINEAR, HALLU_MLP_BN, HALLU_MLP_RELU } hallu_mlp_layer_kind;

typedef struct hallu_mlp_layer_spec {
    hallu_mlp_layer_kind kind;
    int out;          /* LINEAR: output width */
    int bias;         /* LINEAR: has bias */
    int affine;       /* BN: affine */
} hallu_mlp_layer_spec;

enum { HALLU_MLP_MAX_LAYERS = 12 };

typedef struct hallu_mlp {
    int num_layers, in, out, max_rows;
    hallu_mlp_layer_kind kind[HALLU_MLP_MAX_LAYERS];
    int width[HALLU_MLP_MAX_LAYERS];             /* output width of each layer */
    hallu_linear linear[HALLU_MLP_MAX_LAYERS];
    hallu_batchnorm bn[HALLU_MLP_MAX_LAYERS];
    float *act[HALLU_MAX_INSTANCES][HALLU_MLP_MAX_LAYERS];   /* outputs, owned */
    const float *input[HALLU_MAX_INSTANCES];
    int rows[HALLU_MAX_INSTANCES];
    float *scratch[2];                                        /* backward ping-pong, owned */
} hallu_mlp;

hallu_status hallu_mlp_init(hallu_mlp *m, hallu_params *ps, const char *prefix, int in,
                            const hallu_mlp_layer_spec *layers, int num_layers, hallu_error *err);
/* Allocates activations for up to max_rows rows and num_instances instances. */
hallu_status hallu_mlp_plan(hallu_mlp *m, hallu_backend *be, int max_rows, int num_instances,
                            hallu_error *err);
void hallu_mlp_free(hallu_mlp *m, hallu_backend *be);
void hallu_mlp_init_default(hallu_mlp *m, hallu_params *ps, uint64_t seed, uint64_t stream);
/* Returns the output activation (owned by the MLP, valid until the next forward of inst). */
const float *hallu_mlp_forward(hallu_mlp *m, const hallu_nn_ctx *ctx, int inst, const float *x, int rows);
/* dx may be NULL; dy is not modified. */
void hallu_mlp_backward(hallu_mlp *m, const hallu_nn_ctx *ctx, int inst, float *dx, const float *dy);

#ifdef __cplusplus
}
#endif
#endif
