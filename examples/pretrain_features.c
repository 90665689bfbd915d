/* pretrain_features: self-supervised pre-training, then frozen features as .npy,
 * through hallu's public API only (the headers in include/hallu/).
 *
 *   usage: pretrain_features DATA_SPEC OUT_DIR [epochs]
 *     DATA_SPEC  e.g. synthetic:256, cifar10:DIR, imagefolder:DIR (the kNN check
 *                after the last epoch needs a labelled test split: for a folder,
 *                DIR/train/<class>/... and DIR/test/<class>/...)
 *     OUT_DIR    the run (checkpoint.hlu, metrics.jsonl, config.json) and
 *                features.npy (float32 [N][512]) + labels.npy (int32 [N]) of the
 *                training split, in dataset order
 *
 * Build against an installed hallu (cmake --install build --prefix PREFIX):
 *   cc -std=c11 pretrain_features.c $(pkg-config --cflags --libs hallu) -o pretrain_features
 *     (with PKG_CONFIG_PATH=PREFIX/lib/pkgconfig; at run time LD_LIBRARY_PATH=PREFIX/lib)
 *   or with CMake: examples/CMakeLists.txt (find_package(hallu), CMAKE_PREFIX_PATH=PREFIX). */
#define _POSIX_C_SOURCE 200809L
#include <hallu/checkpoint.h>
#include <hallu/eval.h>
#include <hallu/io.h>
#include <hallu/train.h>

#include <stdio.h>
#include <stdlib.h>

enum { BATCH = 32, THREADS = 2 };

/* Training reports kNN results and warnings through this callback. */
static void print_message(void *user, const char *line)
{
    (void)user;
    printf("  %s\n", line);
}

/* 1. Pre-train: SimCLR + Hallucinator on a CIFAR-stem ResNet-18 (the defaults),
 *    small batches and few threads so that the example runs in seconds. */
static hallu_status pretrain(const char *data, const char *out_dir, int epochs, hallu_error *err)
{
    hallu_train_config cfg;
    hallu_train_config_default(&cfg);
    cfg.data = data;
    cfg.out = out_dir;
    cfg.epochs = epochs;
    cfg.batch_size = BATCH;
    cfg.threads = THREADS;
    cfg.workers = 1;
    cfg.knn_at_start = 0;            /* skip the untrained-network kNN floor */
    hallu_train_callbacks cb = { .message = print_message };
    hallu_train_result res;
    hallu_status s = hallu_train_run(&cfg, &cb, &res, err);
    if (s == HALLU_OK)
        printf("trained %lld steps, final loss %.4f, kNN top-1 %.2f%%\n", (long long)res.steps, res.final_loss,
               res.knn_top1);
    return s;
}

/* 2. Load the backbone from the run's checkpoint and write the features of
 *    every training image (evaluation view: native size, CIFAR normalisation). */
static hallu_status extract(const char *data, const char *out_dir, hallu_error *err)
{
    char path[4096];
    hallu_backend *be = NULL;
    hallu_resnet *net = NULL;
    hallu_resnet_config rcfg;
    hallu_params ps;
    hallu_dataset *ds = NULL;
    hallu_feature_set fs = { 0 };
    hallu_params_init(&ps);

    snprintf(path, sizeof path, "%s/%s", out_dir, HALLU_RUN_CHECKPOINT_FILE);
    hallu_status s = hallu_backend_cpu_create(&be, THREADS, err);
    if (s == HALLU_OK)
        s = hallu_checkpoint_load_backbone(path, be, &rcfg, &ps, &net, err);
    if (s == HALLU_OK)
        s = hallu_dataset_open(&ds, data, HALLU_SPLIT_TRAIN, err);
    if (s == HALLU_OK && hallu_dataset_image_height(ds) <= 0)   /* folders: read the image headers */
        s = hallu_dataset_probe_sizes(ds, err);
    if (s == HALLU_OK)
        s = hallu_dataset_check_uniform_size(ds, err);

    hallu_extract_config ec;
    hallu_extract_config_default(&ec);
    ec.batch_size = BATCH;
    ec.num_workers = 1;
    int h = s == HALLU_OK ? hallu_dataset_image_height(ds) : 0;
    int w = s == HALLU_OK ? hallu_dataset_image_width(ds) : 0;
    if (s == HALLU_OK)   /* the net sees h x h images: Normalize only when they are square */
        s = hallu_eval_view(&ec.view, h, w, h, HALLU_CIFAR_MEAN, HALLU_CIFAR_STD, err);
    if (s == HALLU_OK)   /* activations and conv primitives for BATCH images, one instance */
        s = hallu_resnet_plan(net, be, BATCH, h, h, 1, err);
    if (s == HALLU_OK) {
        hallu_source src;
        hallu_source_from_dataset(&src, ds);
        hallu_nn_ctx ctx = { .be = be, .ps = &ps, .training = 0 };   /* BN: running statistics */
        s = hallu_extract_features(net, &ctx, &src, &ec, &fs, err);
    }
    int64_t shape[2] = { fs.n, fs.dim };
    if (s == HALLU_OK) {
        snprintf(path, sizeof path, "%s/features.npy", out_dir);
        s = hallu_npy_write(path, HALLU_DTYPE_F32, 2, shape, fs.x, err);
    }
    if (s == HALLU_OK) {
        printf("wrote %s (%lld x %d float32)\n", path, (long long)fs.n, fs.dim);
        snprintf(path, sizeof path, "%s/labels.npy", out_dir);
        s = hallu_npy_write(path, HALLU_DTYPE_I32, 1, shape, fs.labels, err);
    }
    if (s == HALLU_OK)
        printf("wrote %s\n", path);

    hallu_feature_set_free(&fs);
    hallu_dataset_close(ds);
    if (net)
        hallu_resnet_free(net, be);
    hallu_params_free(&ps);
    hallu_backend_free(be);
    return s;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: %s DATA_SPEC OUT_DIR [epochs]   (e.g. %s synthetic:256 out 1)\n", argv[0], argv[0]);
        return 2;
    }
    int epochs = argc == 4 ? atoi(argv[3]) : 1;
    if (epochs < 1) {
        fprintf(stderr, "error: epochs must be >= 1, got '%s'\n", argv[3]);
        return 2;
    }
    printf("hallu %s (%s)\n", hallu_version(), hallu_backends_compiled());
    hallu_error err;
    hallu_error_clear(&err);
    if (pretrain(argv[1], argv[2], epochs, &err) != HALLU_OK || extract(argv[1], argv[2], &err) != HALLU_OK) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    return 0;
}
