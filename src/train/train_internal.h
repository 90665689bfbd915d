/* State shared by the training loop's files. */
#ifndef HALLU_TRAIN_INTERNAL_H
#define HALLU_TRAIN_INTERNAL_H

#include "hallu/data.h"
#include "hallu/dist.h"
#include "hallu/loader.h"
#include "hallu/optim.h"
#include "hallu/ssl.h"
#include "hallu/train.h"

/* An evenly spaced subset of a source (the first argument is rewired in place). */
typedef struct train_subset {
    hallu_source base;
    int64_t n;
} train_subset;
void train_subset_init(train_subset *s, hallu_source *src, int64_t n);

/* Room for "<out>/<run file>"; the longest run file name is the periodic
 * checkpoint's, "checkpoint_epoch" + up to 10 digits + ".hlu". */
#define TRAIN_RUN_PATH_CAP 1024
#define TRAIN_RUN_FILE_NAME_MAX 32

typedef enum { TRAIN_FAULT_NONE, TRAIN_FAULT_FORWARD, TRAIN_FAULT_OPTIMIZER, TRAIN_FAULT_CHECKPOINT,
               TRAIN_FAULT_ALLOC } train_fault_kind;

typedef struct train_run {
    const hallu_train_config *cfg;
    /* data-parallel ranks: cfg->comm, or a "single" one of the run's own (own_comm) */
    hallu_comm *comm;
    int own_comm;
    int64_t bucket_floats;          /* gradient all-reduce bucket */
    hallu_ssl_config ssl_cfg;
    hallu_backend *be;
    hallu_params ps;
    hallu_ssl *ssl;
    hallu_optimizer *opt;
    hallu_dataset *train_ds;
    hallu_source train_src;
    train_subset train_subset;
    hallu_loader *loader;
    int image_h, image_w;
    int64_t steps_per_epoch, total_steps;
    /* position: the next step to run is (epoch, step_in_epoch) */
    int epoch;
    int64_t step_in_epoch, global_step;
    int64_t stats_step;             /* global step whose loss was last read from the device (0: none) */
    /* the run files' paths; train_prepare_dir refuses an --out too long for them */
    char path_checkpoint[TRAIN_RUN_PATH_CAP], path_metrics[TRAIN_RUN_PATH_CAP], path_config[TRAIN_RUN_PATH_CAP],
        path_best[TRAIN_RUN_PATH_CAP];
    /* the best kNN top-1 after an epoch so far (-1: none yet); saved in every checkpoint */
    double best_knn_top1;
    char config_json[2048];
    /* --resume found a checkpoint; with --resume and none, the run restarts from step 0 */
    int resuming;
    /* the untrained network's kNN top-1 (-1: not measured); saved in every checkpoint */
    double knn_floor_top1;
    int knn_off;                 /* --data has no test split and no --knn-test-data: no kNN monitor */
    /* --init's absolute path ("" = none): loaded unless resuming, recorded in config.json
     * and every checkpoint */
    char init_path[TRAIN_RUN_PATH_CAP];
    /* The two views of a batch in device memory (the loader fills host memory). */
    hallu_buffer views[2];
    /* The views' bytes where the device normalises them (the loader's
     * u8_views: hallu_loader_config_for_device); empty otherwise. */
    hallu_buffer views_u8[2];
    /* hallu_train_config.test_fault, parsed: where an op fails (test hook) */
    train_fault_kind fault_kind;
    int64_t fault_at;
} train_run;

/* run_dist.c: agreeing across ranks (no-ops on one) */
static inline int train_is_root(const train_run *run) { return run->comm->rank == 0; }
/* Every rank's status -> one for all (the lowest failing rank's message). */
hallu_status train_agree(train_run *run, hallu_status mine, hallu_error *err);
/* 1 when any rank asks to stop (a failed collective goes to *s). */
int train_stop_agreed(train_run *run, int mine, hallu_error *err, hallu_status *s);
/* Sum the gradient block over ranks in buckets, then / ranks (failure: the backend's). */
void train_allreduce_grads(train_run *run);
/* Same recorded config and the same training data on every rank. */
hallu_status train_check_same_setup(train_run *run, hallu_error *err);
/* Same parameters and buffers on every rank. */
hallu_status train_check_replicas(train_run *run, hallu_error *err);

/* run_fault.c: the test fault hook */
/* Parses cfg->test_fault into run->fault_kind / fault_at. */
hallu_status train_fault_parse(train_run *run, hallu_error *err);
/* After the backend is created: arms an "alloc:N" fault; a named error when
 * a fault is asked for on a device without the hook. */
hallu_status train_fault_setup(train_run *run, hallu_error *err);
/* Makes the next op fail when the run's fault is (kind, at). */
void train_fault_arm(train_run *run, train_fault_kind kind, int64_t at);

/* run_dir.c */
/* Checks --out and sets the run files' paths and run->resuming; writes nothing. */
hallu_status train_prepare_dir(train_run *run, hallu_error *err);
/* Then, once everything is set up: creates --out (mkdir -p), or empties the
 * metrics of a run that restarts from step 0. */
hallu_status train_create_dir(train_run *run, hallu_error *err);
hallu_status train_write_config(train_run *run, hallu_error *err);
/* The periodic (--save-every) checkpoint's path for the run after `epoch` epochs. */
void train_epoch_checkpoint_path(const train_run *run, int epoch, char path[TRAIN_RUN_PATH_CAP]);
/* Keeps only metrics lines whose "step" is <= last_step (resume after a crash). */
hallu_status train_truncate_metrics(const char *path, int64_t last_step, hallu_error *err);

/* run_checkpoint.c */
hallu_status train_save_checkpoint(train_run *run, const char *path, hallu_error *err);
hallu_status train_load_checkpoint(train_run *run, hallu_error *err);

/* run_init.c */
/* After train_prepare_dir: run->init_path from --init (absolute), or for a run
 * restarting from step 0 without --init, from its config.json. */
hallu_status train_resolve_init(train_run *run, hallu_error *err);
/* Loads run->init_path into the encoder (after the fresh init) and copies it
 * into MoCo's key encoder; names every tensor that does not fit. */
hallu_status train_load_init(train_run *run, hallu_error *err);
/* Resuming: a given --init must be the recorded one (NULL: none); adopts it. */
hallu_status train_check_resumed_init(train_run *run, const char *recorded, hallu_error *err);

/* run_knn.c */
hallu_status train_knn(train_run *run, double *top1, double *top5, hallu_error *err);
/* Before the first step: opens the kNN monitor's sets so that a missing one
 * fails at once, not after training. A --data without a test split and no
 * --knn-test-data turns the monitor off (run->knn_off) instead. */
hallu_status train_knn_check(train_run *run, hallu_error *err);

#endif
