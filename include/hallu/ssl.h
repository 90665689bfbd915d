/* Self-supervised methods with the Hallucinator: SimCLR, MoCo v1/v2, SimSiam.
 *
 * A method owns its networks (ResNet encoder + heads [+ predictor] [+ the
 * Hallucinator MLP]) registered in the caller's hallu_params under
 *   "encoder.<torchvision name>"   the backbone (fc removed)
 *   "projector.<k>"                the head, nn.Sequential indices
 *   "predictor.<k>"                SimSiam only
 *   "hallucinator.<k>"             Linear(2d,H) ReLU Linear(H,H) ReLU Linear(H,d): .0 .2 .4
 * and, for MoCo, a private key encoder (same names, its own hallu_params) and
 * the negative queue. One training step is:
 *
 *   hallu_params_zero_grad(ps);
 *   hallu_ssl_step(ssl, &ctx, view1, view2, n, &stats, &err);   forward + loss + backward
 *   <optimizer step on ps>;
 *   hallu_ssl_after_step(ssl, &ctx);                              MoCo: enqueue + momentum
 *
 * Wiring (docs/METHOD.md; the authors' code is the reference):
 * - SimCLR: both views in ONE encoder pass of 2n images (the reference
 *   concatenates them, so BN sees 2n samples). NT-Xent over 2n rows
 *   (positives i <-> i+n) or, with the Hallucinator (x = z1, k = z2, both with
 *   gradient), over 4n rows [z1; h; z2; z2] with positives i <-> i+2n. The
 *   reference counts the duplicated partner rows (and x_i vs h_i) as negatives
 *   of each other; mask_duplicates removes every same-source row except the
 *   positive from the denominators.
 * - MoCo: query = view 1 through encoder+projector, key = view 2 through the
 *   key encoder, L2-normalised, no gradient. With the Hallucinator x = the raw
 *   query projection, k = the normalised key; the 2n queries are normalised and
 *   pair with the duplicated keys; negatives = the queue; InfoNCE at T.
 *   Order, as MoCo's builder.py: the key encoder used at step t is
 *   m*k + (1-m)*q with q the weights AFTER the optimizer step t-1 (the
 *   reference updates at the start of the forward; hallu_ssl_after_step does
 *   the same update right after the optimizer step, which is identical
 *   because nothing changes the weights in between), and the keys of step t
 *   enter the queue after the loss of step t (after_step). Only parameters
 *   are momentum-updated; the key encoder's BN running statistics evolve from
 *   its own forward passes. Shuffle-BN exists only to stop cross-GPU
 *   information leaks in distributed BN; it does not apply to one process.
 * - SimSiam: z = projector(encoder(view)), p = predictor(z), each view its own
 *   pass (BN statistics per view). With the Hallucinator: p1' = H(p1, p2) and
 *   p2' = H(p2, p1) with independent r (the same MLP applied twice, both k
 *   with gradient); targets [z2; z2] and [z1; z1], detached. Loss
 *   0.5 * (D(p1', z2) + D(p2', z1)), D = -mean cosine.
 * - Hallucinator: per call r ~ U(ratio_lo, ratio_hi) from the object's own RNG
 *   (or fixed_ratio >= 0); g = (1+r)x - r k; h = MLP([x, g]) (reference) or
 *   h = g + MLP([x, g]) with the last layer zero-initialised (residual);
 *   output [x; h]. */
#ifndef HALLU_SSL_H
#define HALLU_SSL_H

#include "hallu/io.h"
#include "hallu/models.h"
#include "hallu/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum hallu_method_kind {
    HALLU_METHOD_SIMCLR = 0,
    HALLU_METHOD_MOCOV1,
    HALLU_METHOD_MOCOV2,
    HALLU_METHOD_SIMSIAM,
} hallu_method_kind;

/* "simclr" | "mocov1" | "mocov2" | "simsiam" */
hallu_status hallu_method_parse(const char *name, hallu_method_kind *out, hallu_error *err);
const char *hallu_method_name(hallu_method_kind kind);

typedef enum hallu_hal_init {
    HALLU_HAL_INIT_REFERENCE = 0,   /* h = MLP([x, g]), PyTorch default init */
    HALLU_HAL_INIT_RESIDUAL,        /* h = g + MLP([x, g]), last layer zero */
} hallu_hal_init;

/* "reference" | "residual" */
hallu_status hallu_hal_init_parse(const char *name, hallu_hal_init *out, hallu_error *err);
const char *hallu_hal_init_name(hallu_hal_init init);

typedef struct hallu_ssl_config {
    hallu_method_kind method;
    hallu_resnet_config backbone;
    int proj_dim;           /* embedding width: 128 (SimCLR, MoCo), 512 (SimSiam, authors' CIFAR config) */
    int proj_hidden;        /* MLP head hidden width; 0 = backbone feature dim (512) */
    int pred_hidden;        /* SimSiam predictor hidden: 128 (authors' CIFAR config; ImageNet uses 512) */
    float temperature;      /* SimCLR 0.5 (authors' CIFAR config), MoCo v1 0.07, v2 0.2 */
    float base_temperature; /* SimCLR: > 0 scales the loss by T/base (authors' NT_Xent_dist uses
                               0.07); 0 = plain NT-Xent */
    int queue_size;         /* MoCo K (65536) */
    float momentum;         /* MoCo m (0.99: suits short runs; the CIFAR recipe uses 0.999) */
    int bn_splits;          /* MoCo Shuffle BN on one process: G > 1 normalises queries in G groups of
                               consecutive images and keys in G groups of a random permutation
                               (as G data-parallel devices); 1 = whole-batch BN (default) */
    int hallucinator;       /* 1: use the Hallucinator */
    float ratio_lo, ratio_hi;   /* r ~ U(lo, hi): (0, 0.1) */
    float fixed_ratio;      /* >= 0 forces r (tests, ablations); < 0 draws */
    int hal_hidden;         /* H; 0 = 2 * embedding width (as the reference) */
    hallu_hal_init hal_init;
    int enqueue_duplicates; /* MoCo + Hallucinator: enqueue [k; k] (2n rows) like the reference */
    int mask_duplicates;    /* SimCLR: drop same-source rows other than the positive from negatives */
    int fix_pred_lr;        /* SimSiam: flag the predictor's tensors HALLU_TENSOR_FIXED_LR */
    uint64_t seed;          /* Hallucinator RNG and the initial queue */
} hallu_ssl_config;

/* Fills every field with the defaults above (ResNet-18, CIFAR stem,
 * Hallucinator on with the reference wiring). */
void hallu_ssl_config_default(hallu_ssl_config *cfg, hallu_method_kind method);

typedef struct hallu_ssl hallu_ssl;

typedef struct hallu_ssl_stats {
    float loss;
    /* Mean over dimensions of the per-dimension std (over the batch) of the
     * L2-normalised view-1 embedding (projector output; SimSiam's z): about
     * 1/sqrt(dim) when healthy, -> 0 when collapsed (SimSiam paper, Fig. 2). */
    float collapse_std;
    float ratio[2];         /* r used by each Hallucinator call (0 when unused) */
} hallu_ssl_stats;

/* Registers the trainable parameters in ps (before hallu_params_alloc) and, for
 * MoCo, builds the key encoder's own parameter set and queue on be (the backend
 * hallu_ssl_plan must be given too). */
hallu_status hallu_ssl_create(hallu_ssl **out, const hallu_ssl_config *cfg, hallu_params *ps, hallu_backend *be,
                              hallu_error *err);
/* After hallu_params_alloc(ps): torchvision init for the encoder, PyTorch
 * defaults for the MLPs (residual Hallucinator: last layer zero), key encoder
 * = copy of the query, queue = random unit rows; the Hallucinator RNG (seeded by
 * cfg.seed at create) is left alone. */
hallu_status hallu_ssl_init_weights(hallu_ssl *ssl, hallu_params *ps, uint64_t seed, hallu_error *err);
/* MoCo: copies the query encoder+projector parameters and BN running
 * statistics into the key encoder (e.g. after loading weights from a file),
 * device to device; a failure is the backend's (hallu_backend_check).
 * No-op for other methods. */
void hallu_ssl_sync_key(hallu_ssl *ssl, const hallu_params *ps);
/* Data parallelism, before hallu_ssl_plan: the ranks this object trains with
 * (NULL or one rank: one process). `batch` in plan and step is then this
 * rank's share of the global batch (the same on every rank), and:
 *   SimCLR: each rank's rows are the anchors, the negatives come from every
 *     rank (all-gather of the normalised rows; backward sums the gathered
 *     rows' gradients across ranks, a reduce-scatter), as one process with
 *     the global batch; the Hallucinator pairs a rank's own two views;
 *   MoCo: the keys of every rank go into the queue (all-gather), and Shuffle
 *     BN spans ranks as the MoCo reference (gather view 2 of every rank,
 *     shuffle with a permutation of rank 0's, each rank encodes its slice
 *     with its own BN, gather the keys, unshuffle): with N ranks and
 *     --bn-splits G, as one process with --bn-splits N G; with ctx->sync_bn
 *     instead, keys and queries use BN over the whole global batch;
 *   SimSiam: nothing crosses ranks but BN statistics with ctx->sync_bn.
 * The step's loss is this rank's (its rows' mean); hallu_ssl_read_stats
 * averages the loss and collapse metric over ranks. */
void hallu_ssl_set_comm(hallu_ssl *ssl, hallu_comm *comm);
/* Averages the BN running statistics (and MoCo's key encoder's) over the
 * ranks: with rank-local BN, each rank's running statistics follow its own
 * rows; their mean is what one process with grouped BN keeps. A failed
 * collective is recorded as the backend's failure. No-op on one rank. */
void hallu_ssl_average_buffers(hallu_ssl *ssl, hallu_params *ps);
/* Plans every activation for batches up to `batch` of h x w views. Once. */
hallu_status hallu_ssl_plan(hallu_ssl *ssl, hallu_backend *be, int batch, int h, int w, hallu_error *err);
void hallu_ssl_free(hallu_ssl *ssl);

/* view1, view2: [n][h][w][3] NHWC, DEVICE addresses of be. Forward, loss and
 * (when ctx->training) backward of everything; parameter gradients are
 * ACCUMULATED into ps->grad. The optimizer step is the caller's. With
 * ctx->training == 0 only the loss is computed (BN in eval mode) and no state
 * changes except the RNG. stats != NULL: the loss and collapse std are
 * downloaded (one small transfer, which waits for the step's ops) and the
 * ratios filled; NULL: nothing is read back and the result is the backend's
 * check (its first failure, if any). */
hallu_status hallu_ssl_step(hallu_ssl *ssl, const hallu_nn_ctx *ctx, const float *view1,
                            const float *view2, int n, hallu_ssl_stats *stats, hallu_error *err);
/* The loss and collapse std of the last hallu_ssl_step (one download), for a
 * caller that passed stats == NULL and needs them after all (ratios untouched).
 * With ranks: the means over ranks (a collective: every rank calls it). */
hallu_status hallu_ssl_read_stats(hallu_ssl *ssl, hallu_ssl_stats *stats, hallu_error *err);
/* Call once after each optimizer step. MoCo: enqueue the last step's keys,
 * then k = m*k + (1-m)*q over the key encoder's parameters. Others: no-op. */
void hallu_ssl_after_step(hallu_ssl *ssl, const hallu_nn_ctx *ctx);

hallu_resnet *hallu_ssl_backbone(hallu_ssl *ssl);
const hallu_ssl_config *hallu_ssl_get_config(const hallu_ssl *ssl);
int hallu_ssl_embed_dim(const hallu_ssl *ssl);
/* MoCo key encoder parameters (NULL for other methods). */
hallu_params *hallu_ssl_key_params(hallu_ssl *ssl);

/* ---- extra state for checkpoints (beyond ps) ----
 * Blobs, in a fixed order: MoCo "ssl.key.<name>" for every key-encoder tensor
 * (F32; parameters then buffers), "ssl.queue" F32 [K][dim], "ssl.queue_ptr"
 * I64 [1]; every method "ssl.rng" I64 [6] (the Hallucinator RNG: seed,
 * stream, counter, two packed buffered blocks, words used). data points into
 * a host copy owned by the object: hallu_ssl_state_get downloads the blob's
 * device state into it (read it to save; valid until the next get of the same
 * blob or a commit); to restore, copy into it and then call
 * hallu_ssl_state_commit, which validates the blobs handed out since the last
 * commit and uploads them (the RNG is always applied). */
typedef struct hallu_ssl_blob {
    char name[HALLU_NAME_MAX + 16];
    hallu_dtype dtype;
    int ndim;
    int64_t shape[HALLU_MAX_DIMS];
    void *data;
    size_t nbytes;
} hallu_ssl_blob;

int hallu_ssl_state_count(const hallu_ssl *ssl);
hallu_status hallu_ssl_state_get(hallu_ssl *ssl, int index, hallu_ssl_blob *blob, hallu_error *err);
hallu_status hallu_ssl_state_commit(hallu_ssl *ssl, hallu_error *err);

#ifdef __cplusplus
}
#endif
#endif
