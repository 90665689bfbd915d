/* The self-supervised training loop behind `hallu train`: data -> two views ->
 * method step -> optimizer -> (MoCo hooks) -> metrics, kNN monitor, atomic
 * checkpoints, bit-exact resume. The CLI supplies the config and callbacks for
 * progress, messages and stopping; the library prints nothing itself.
 *
 * Signals: oneDNN 2.x's JIT sgemm (jit_avx512_common_gemm_f32) points rsp into
 * the heap while it runs, so a signal handler that runs on a thread inside
 * hallu_train_run writes its signal frame into the heap (oneDNN issue #4845,
 * fixed in 3.11). Block signals in the calling thread before the first call, so
 * that the threads hallu starts inherit the mask, and take them in a thread of
 * your own (sigwait), as `hallu train` does. */
#ifndef HALLU_TRAIN_H
#define HALLU_TRAIN_H

#include "hallu/core.h"
#include "hallu/dist.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The files a run writes into its --out directory; the trainer, the CLI and
 * `hallu plot` all name them through these, so they cannot drift apart. */
#define HALLU_RUN_CHECKPOINT_FILE "checkpoint.hlu"
#define HALLU_RUN_METRICS_FILE "metrics.jsonl"
#define HALLU_RUN_CONFIG_FILE "config.json"
#define HALLU_RUN_BEST_CHECKPOINT_FILE "checkpoint_best.hlu"
#define HALLU_RUN_EPOCH_CHECKPOINT_FORMAT "checkpoint_epoch%d.hlu"   /* %d: epochs done */

typedef struct hallu_train_config {
    /* method */
    const char *method;          /* simclr | mocov1 | mocov2 | simsiam */
    int hallucinator;
    const char *hal_init;        /* reference | residual */
    double hal_ratio_max;        /* r ~ U(0, max) */
    double hal_fixed_ratio;      /* >= 0: fixed r (ablations, tests) */
    int hal_hidden;              /* 0 = 2 * embedding width */
    int enqueue_duplicates, mask_duplicates;
    int fix_pred_lr;           /* SimSiam: predictor at the constant base lr (the paper's option) */
    double temperature;          /* <= 0: the method's default */
    double base_temperature;     /* SimCLR: > 0 scales the loss by temperature / base (the authors'
                                    NT_Xent_dist uses 0.07); 0 = plain NT-Xent */
    int queue_size;
    double moco_momentum;
    int bn_splits;               /* MoCo Shuffle BN groups (1 = whole-batch BN) */
    int proj_dim;                /* 0: the method's default */
    /* data and model */
    const char *data;            /* training spec (train split) */
    const char *knn_train_data;  /* labelled reference set for the kNN monitor (default: data, train split) */
    const char *knn_test_data;   /* held-out set (default: data, test split) */
    int train_subset;            /* > 0: use the first N training images */
    const char *arch, *stem;
    int zero_init_residual;      /* last BN of each residual block starts at weight 0 */
    const char *init;            /* NULL/"": torchvision init; else a safetensors file with torchvision's
                                  * backbone names (`hallu export`, with or without --heads, or a
                                  * torchvision ResNet state dict) loaded into the encoder before the
                                  * first step: every parameter and BN running statistic, exact shapes;
                                  * num_batches_tracked optional; fc.* (torchvision's classifier) and
                                  * projector.* / predictor.* / hallucinator.* (export --heads) are
                                  * ignored, the heads keep their fresh init. MoCo's key encoder starts
                                  * as a copy of the loaded encoder. Recorded (absolute) in config.json
                                  * and the checkpoint: a --resume with a checkpoint does not read it
                                  * (if given, it must name the same file), one without a checkpoint
                                  * (restarting at step 0) takes it from config.json when not given */
    const char *crop;            /* view crops: "ccrop" (view 1 ContrastiveCrop with a fixed box,
                                  * view 2 RandomResizedCrop; the authors' recipe) | "rrc"
                                  * (RandomResizedCrop(size, scale 0.2-1) on both views, SimCLR's) */
    /* optimisation */
    const char *optimizer;       /* sgd | lars | adamw */
    int epochs, batch_size, warmup_epochs;   /* epochs 0: set up (and --init), measure the kNN floor,
                                                * save the initial checkpoint.hlu; no step */
    double lr, momentum, weight_decay;
    /* run */
    uint64_t seed;
    int threads, workers;
    int knn_every;               /* epochs between kNN evaluations (0: only at the end) */
    int knn_k;
    double knn_temperature;
    int knn_at_start;            /* also evaluate the untrained network (the floor) */
    int log_every;               /* steps between metrics lines; the loss is read from the device (and
                                    checked for divergence) on those steps only, an epoch's last and
                                    the first, and before a stop */
    int save_every;              /* > 0: also keep checkpoint_epochN.hlu every N epochs */
    int keep_best;               /* also keep checkpoint_best.hlu: the end of the epoch whose kNN
                                  * top-1 beat every earlier one (kNN runs every knn_every
                                  * epochs and after the last); the best so far is recorded
                                  * with or without it, so a part resumed with it saves only
                                  * an epoch that beats the earlier parts */
    const char *out;             /* run directory */
    int resume;                  /* continue from out/checkpoint.hlu; with none yet, a run directory
                                  * holding only config/metrics (stopped before its first
                                  * checkpoint) starts again from step 0 */
    int64_t stop_after_steps;    /* > 0: behave as if interrupted after this many steps (tests) */
    const char *precision;       /* "fp32" (NULL) | "bf16": convolutions with bf16 products and fp32
                                  * accumulation (hallu_backend_set_precision); recorded in the config
                                  * (a resume keeps it) when not fp32 */
    const char *device;          /* backend (hallu_backend_create): NULL/"" = "cpu"; not part of the
                                  * recorded config: a run may resume on another device */
    /* data parallelism */
    hallu_comm *comm;            /* the ranks to train with (NULL: one process). Every rank calls
                                  * hallu_train_run with the same config; batch_size is the GLOBAL
                                  * batch (divisible by the ranks), each rank loads its slice of
                                  * every global batch; rank 0 alone writes --out (a resume reads
                                  * the checkpoint on every rank: --out must be shared or copied);
                                  * the kNN monitor runs on rank 0 while the others wait (at most
                                  * dist_timeout s). Not recorded: a run may resume on other ranks */
    int sync_bn;                 /* batch norm statistics over the global batch (SyncBN) */
    double dist_timeout;         /* seconds a rank waits for rank 0's kNN or checkpoint (<= 0: no bound) */
    int bucket_mb;               /* gradient all-reduce bucket in MiB (0: 25) */
    const char *test_fault;      /* tests only, needs device cpu-isolated: NULL/"" = none, else
                                  * "forward:S" (the first op of step S's forward pass fails),
                                  * "optimizer:S" (the first op of step S's optimizer update),
                                  * "checkpoint:E" (the first op while saving epoch E's checkpoint),
                                  * "alloc:N" (the Nth backend allocation); steps and epochs count from 1 */
} hallu_train_config;

void hallu_train_config_default(hallu_train_config *cfg);

typedef struct hallu_train_progress {
    int epoch, epochs;
    int64_t step_in_epoch, steps_per_epoch, global_step, total_steps;
    float loss, lr, collapse_std;   /* loss and collapse_std: of step loss_step, the last one read from
                                       the device (the first, logged ones, an epoch's last; log_every) */
    int64_t loss_step;
    double images_per_s, data_wait_fraction, eta_seconds;
} hallu_train_progress;

typedef struct hallu_train_callbacks {
    void (*progress)(void *user, const hallu_train_progress *p);   /* after every step */
    void (*message)(void *user, const char *line);                 /* kNN results, warnings */
    int (*should_stop)(void *user);   /* polled after every step; non-zero: checkpoint and stop */
    void *user;
} hallu_train_callbacks;

typedef struct hallu_train_result {
    double knn_top1, knn_top5;       /* last evaluation (-1 if none) */
    double knn_floor_top1;           /* untrained network, before the first step (-1 if not measured;
                                        * a resumed run takes it from its checkpoint) */
    float final_loss;
    int64_t steps;
    int collapsed;                   /* the collapse guard fired at the end */
} hallu_train_result;

/* Runs (or resumes) training. Returns HALLU_ERR_INTERRUPTED after saving a
 * checkpoint when cb->should_stop returns non-zero. cb and its members may be NULL. */
hallu_status hallu_train_run(const hallu_train_config *cfg, const hallu_train_callbacks *cb,
                             hallu_train_result *res, hallu_error *err);

/* The run's closing judgement against its untrained kNN floor, for the last
 * lines of a report (no trailing newline):
 *   above or level: "kNN top-1 38.00% (+12.00 over the untrained 26.00%)"      returns 0
 *   below:          "warning: training made the kNN accuracy worse: 38.00% after training vs
 *                   41.00% untrained (-3.00 points).\n  Short runs often do this; try more
 *                   --epochs or steps (8 steps ran), or another --lr (now 0.02)."   returns 1
 *                   (with "; the embeddings also collapsed: ..." when res->collapsed)
 * Without a floor or a final kNN (--no-knn-floor, --epochs 0) out is "" and it returns -1. */
int hallu_train_gain_summary(const hallu_train_config *cfg, const hallu_train_result *res, char *out, size_t n);

#ifdef __cplusplus
}
#endif
#endif
