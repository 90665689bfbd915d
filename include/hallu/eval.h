/* Evaluation of frozen encoders: feature extraction, the kNN monitor
 * (InstDisc style, as the SSL community reports it), the linear probe, and the
 * training plot.
 *
 * Protocols (METHOD.md):
 * - kNN: cosine similarity between L2-normalised features, the k = 200 nearest
 *   training samples vote for their class with weight exp(sim / T), T = 0.1;
 *   top-1 / top-5 = the true class ranks first / among the five best scores.
 * - Linear probe: frozen backbone (BN in eval mode), one linear layer
 *   feature_dim -> classes trained with SGD (momentum 0.9, weight decay 0,
 *   lr 10, x0.1 at epochs 60 and 80 of 100, batch 512), train views
 *   RandomResizedCrop + flip, test views un-augmented; top-1 on the test split.
 *   The cached variant trains on features of the UN-augmented train images,
 *   computed once: much faster, but not the augmented protocol (it typically
 *   reads a little lower or higher; report which one you used). */
#ifndef HALLU_EVAL_H
#define HALLU_EVAL_H

#include "hallu/loader.h"
#include "hallu/models.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- feature sets ---------------------------------------------------------- */

typedef struct hallu_feature_set {
    float *x;            /* [n][dim], row i = image i of the source */
    int32_t *labels;     /* [n], -1 when unlabeled */
    int64_t n;
    int dim;
} hallu_feature_set;

hallu_status hallu_feature_set_alloc(hallu_feature_set *fs, int64_t n, int dim, hallu_error *err);
/* Safe on a zeroed or already freed set. */
void hallu_feature_set_free(hallu_feature_set *fs);
/* x / ||x||_2 per row; rows of norm zero stay zero. */
void hallu_l2_normalize_rows(float *x, int64_t rows, int dim);

/* Called after each batch with the images done so far; return non-zero to stop
 * (the call then fails with HALLU_ERR_INTERRUPTED). */
typedef int (*hallu_eval_progress_fn)(void *user, int64_t done, int64_t total);

typedef struct hallu_extract_config {
    int batch_size;              /* images per forward (the net must be planned for it) */
    int num_workers;             /* loader threads */
    int normalize;               /* L2-normalise each feature row */
    hallu_view_pipeline view;    /* deterministic evaluation view */
    hallu_eval_progress_fn progress;
    void *progress_user;
} hallu_extract_config;

/* batch 256, 2 workers, no normalisation, view = CIFAR mean/std normalisation only. */
void hallu_extract_config_default(hallu_extract_config *cfg);

/* The evaluation view for images of native size img_h x img_w (0 = variable)
 * fed to a network trained on size x size crops: nothing but Normalize when the
 * images already have that size; otherwise Resize(size * 8 / 7) + CenterCrop(size)
 * (ImageNet's 256/224 convention). */
hallu_status hallu_eval_view(hallu_view_pipeline *pl, int img_h, int img_w, int size,
                             const float mean[3], const float std[3], hallu_error *err);

/* Features of every image of src through the frozen backbone, in source order.
 * ctx->training must be 0 (BN uses running statistics). The net must have been
 * planned (hallu_resnet_plan) for at least cfg->batch_size images of the view's
 * output size. out is allocated here; free with hallu_feature_set_free. */
hallu_status hallu_extract_features(hallu_resnet *net, const hallu_nn_ctx *ctx, const hallu_source *src,
                                    const hallu_extract_config *cfg, hallu_feature_set *out,
                                    hallu_error *err);

/* ---- frozen backbones from plain weight files ------------------------------------- */

/* Creates an arch/stem ResNet with prefix "" in ps (which must be empty),
 * allocates ps on be and loads torchvision-named backbone weights from a safetensors
 * file (what `hallu export` writes, or a converted torchvision state dict). The
 * names may sit under "", "encoder." or "model.encoder." (the first prefix that
 * holds conv1.weight); other tensors (a classifier's fc.*, heads) are ignored,
 * and every backbone parameter and BN running statistic must be present
 * (num_batches_tracked may be missing). The caller frees *net and ps. */
hallu_status hallu_eval_load_weights(const char *path, const char *arch, const char *stem, hallu_backend *be,
                                     hallu_resnet_config *cfg, hallu_params *ps, hallu_resnet **net,
                                     hallu_error *err);

/* ---- kNN classifier ----------------------------------------------------------- */

typedef struct hallu_knn_config {
    int k;                /* neighbours (200); capped at the training set size */
    float temperature;    /* vote weight exp(sim / T) (0.1) */
    int chunk_rows;       /* test rows per similarity gemm (256; fewer when the
                           * block would exceed 256 MiB) */
} hallu_knn_config;

void hallu_knn_config_default(hallu_knn_config *cfg);

typedef struct hallu_knn_result {
    int64_t n;                      /* test samples */
    int64_t correct_top1, correct_top5;
    double top1, top5;              /* percent */
} hallu_knn_result;

/* Classifies every test row by its nearest training rows, computed on be (the
 * host feature sets are uploaded; device memory: the training features plus a
 * chunk of test rows and their similarity block of at most 256 MiB). Features need not be normalised:
 * similarities are cosines. Ties (equal similarity or equal class score) go to
 * the lower index. predictions ([test->n], host, may be NULL) receives the top-1
 * class. Labels must lie in [0, num_classes). A failure on the device is an
 * error starting "knn: ". */
hallu_status hallu_knn_evaluate(hallu_backend *be, const hallu_feature_set *train, const hallu_feature_set *test,
                                int num_classes, const hallu_knn_config *cfg, int32_t *predictions,
                                hallu_knn_result *res, hallu_error *err);

/* ---- linear probe --------------------------------------------------------------- */

enum { HALLU_PROBE_MAX_MILESTONES = 8 };

typedef struct hallu_probe_epoch {
    int epoch;                      /* 0-based */
    double lr;                      /* learning rate used during this epoch */
    double train_loss;              /* mean cross-entropy over the epoch */
    double train_top1;              /* percent, on the (augmented) training batches */
    double test_top1, test_top5;    /* percent */
    double seconds;
} hallu_probe_epoch;

/* Called after every epoch; a non-OK return stops training with that status. */
typedef hallu_status (*hallu_probe_epoch_fn)(void *user, const hallu_probe_epoch *e, hallu_error *err);

typedef struct hallu_probe_config {
    int epochs;                     /* 100 */
    double lr;                      /* 10 */
    double momentum;                /* 0.9 */
    double weight_decay;            /* 0 */
    int milestones[HALLU_PROBE_MAX_MILESTONES];  /* epochs where lr *= gamma: 60, 80 */
    int num_milestones;
    double gamma;                   /* 0.1 */
    int batch_size;                 /* 512 */
    int forward_batch;              /* image mode: images per backbone forward (0 = batch_size);
                                     * the net must be planned for it */
    int num_workers;                /* loader threads (image mode) */
    uint64_t seed;                  /* head init, shuffling and augmentation */
    hallu_probe_epoch_fn on_epoch;
    void *user;
} hallu_probe_config;

void hallu_probe_config_default(hallu_probe_config *cfg);

typedef struct hallu_probe_result {
    int epochs;
    double best_top1;               /* percent */
    int best_epoch;                 /* 0-based */
    double final_top1, final_top5;
} hallu_probe_result;

/* Learning rate during epoch e (0-based): lr * gamma^(milestones passed), where
 * milestone m has passed once e >= m (torch MultiStepLR stepped per epoch). */
double hallu_probe_lr_at(const hallu_probe_config *cfg, int epoch);

/* The head "fc" (weight [classes][dim], bias [classes]) trained on cached
 * features. head (may be NULL) receives the trained parameters: pass an empty,
 * initialised hallu_params; the caller frees it. */
hallu_status hallu_linear_probe_features(hallu_backend *be, const hallu_feature_set *train,
                                         const hallu_feature_set *test, int num_classes,
                                         const hallu_probe_config *cfg, hallu_probe_result *res,
                                         hallu_params *head, hallu_error *err);

/* The augmented protocol: every epoch re-extracts features of train_view
 * (random) views of src through the frozen backbone, batch by batch, and trains
 * the head on them; test features are given (extracted once, un-augmented). The
 * net must be planned for cfg->forward_batch (or batch_size) images of the
 * view's size. */
hallu_status hallu_linear_probe_images(hallu_resnet *net, const hallu_nn_ctx *ctx, const hallu_source *src,
                                       const hallu_view_pipeline *train_view, const hallu_feature_set *test,
                                       int num_classes, const hallu_probe_config *cfg,
                                       hallu_probe_result *res, hallu_params *head, hallu_error *err);

/* ---- training plot ------------------------------------------------------------------- */

/* Reads a training metrics file (JSON lines: step lines with "epoch", "step",
 * "loss", "lr", ...; evaluation lines with "epoch" and "knn_top1") and writes an
 * SVG with three stacked panels: loss and learning rate against fractional epoch,
 * kNN top-1 against epoch. Written atomically. Lines that are not JSON objects are
 * an error naming the line; unknown keys are ignored. */
hallu_status hallu_plot_training(const char *metrics_path, const char *svg_path, hallu_error *err);

#ifdef __cplusplus
}
#endif
#endif
