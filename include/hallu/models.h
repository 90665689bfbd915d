/* Models: ResNet-18/34/50 backbones exactly as torchvision defines them (v1.5:
 * stride on the 3x3 conv of Bottleneck), with a CIFAR stem (3x3 stride-1 conv, no
 * max-pool) or the ImageNet stem (7x7/2 conv + 3x3/2 max-pool). The backbone ends
 * at global average pooling: features [n][512] or [n][2048]; a classifier "fc"
 * is the caller's hallu_linear. Parameter names are torchvision's under the
 * given prefix ("" gives conv1.weight, layer1.0.bn1.running_mean, ...). */
#ifndef HALLU_MODELS_H
#define HALLU_MODELS_H

#include "hallu/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum hallu_stem { HALLU_STEM_CIFAR = 0, HALLU_STEM_IMAGENET = 1 } hallu_stem;

typedef struct hallu_resnet_config {
    int depth;                 /* 18, 34 or 50 */
    hallu_stem stem;
    int zero_init_residual;    /* last BN of each block starts at weight 0 */
} hallu_resnet_config;

typedef struct hallu_resnet hallu_resnet;

hallu_status hallu_resnet_parse_arch(const char *arch, const char *stem, hallu_resnet_config *cfg,
                                     hallu_error *err);

/* Registers every parameter in ps (before hallu_params_alloc). */
hallu_status hallu_resnet_create(hallu_resnet **out, const hallu_resnet_config *cfg, hallu_params *ps,
                                 const char *prefix, hallu_error *err);
void hallu_resnet_free(hallu_resnet *net, hallu_backend *be);
int hallu_resnet_feature_dim(const hallu_resnet *net);

/* torchvision's init (after hallu_params_alloc): Kaiming-normal fan-out convs,
 * BN weight 1 / bias 0 (0 for the last BN of a block when zero_init_residual). */
hallu_status hallu_resnet_init_weights(hallu_resnet *net, hallu_params *ps, uint64_t seed, hallu_error *err);

/* Plans activations and conv primitives for batches up to max_batch of h x w
 * images, with num_instances independent forward passes alive at once. */
hallu_status hallu_resnet_plan(hallu_resnet *net, hallu_backend *be, int max_batch, int h, int w,
                               int num_instances, hallu_error *err);

/* x: [n][h][w][3] NHWC, n <= max_batch. *features ([n][feature_dim]) stays valid
 * until the next forward of the same instance. */
hallu_status hallu_resnet_forward(hallu_resnet *net, const hallu_nn_ctx *ctx, int inst, const float *x,
                                  int n, const float **features, hallu_error *err);
/* Accumulates parameter gradients from dfeatures [n][feature_dim] of the last
 * forward of inst. The input gradient is not computed. */
hallu_status hallu_resnet_backward(hallu_resnet *net, const hallu_nn_ctx *ctx, int inst,
                                   const float *dfeatures, hallu_error *err);

/* A supervised classifier: backbone + "fc" + softmax cross-entropy. Used by the
 * parity tests, the overfit test and the training-step benchmark. */
typedef struct hallu_classifier {
    hallu_resnet *net;
    hallu_linear fc;
    int num_classes, max_batch;
    float *logits, *probs, *dlogits, *dfeatures;   /* owned, planned (device) */
    int32_t *labels;                               /* the step's labels, uploaded (device) */
} hallu_classifier;

hallu_status hallu_classifier_create(hallu_classifier *c, const hallu_resnet_config *cfg, int num_classes,
                                     hallu_params *ps, hallu_error *err);
hallu_status hallu_classifier_init_weights(hallu_classifier *c, hallu_params *ps, uint64_t seed, hallu_error *err);
hallu_status hallu_classifier_plan(hallu_classifier *c, hallu_backend *be, int max_batch, int h, int w,
                                   hallu_error *err);
void hallu_classifier_free(hallu_classifier *c, hallu_backend *be);
/* Forward (and, when ctx->training, backward accumulating into ps->grad) on
 * x [n][h][w][3] NHWC (device) with host labels (checked, then uploaded); *loss
 * gets the mean cross-entropy. Logits stay in c->logits (device). */
hallu_status hallu_classifier_step(hallu_classifier *c, const hallu_nn_ctx *ctx, const float *x,
                                   const int32_t *labels, int n, float *loss, hallu_error *err);

#ifdef __cplusplus
}
#endif
#endif
