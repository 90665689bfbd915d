/* What `hallu knn`, `hallu linear` and `hallu features` share: the flags that
 * name a frozen backbone (a checkpoint, or plain weights + arch/stem), opening
 * labelled datasets, and feature extraction with a progress line on stderr.
 * Functions print their own errors and return an exit status (0, 1 or 2). */
#ifndef HALLU_CLI_EVAL_COMMON_H
#define HALLU_CLI_EVAL_COMMON_H

#include "cli/args.h"
#include "hallu/eval.h"

typedef struct cli_backbone_args {
    const char *checkpoint;     /* hallu train checkpoint (.hlu) */
    const char *weights;        /* or torchvision-named safetensors + arch/stem */
    const char *arch, *stem;
    const char *mean_std;       /* "cifar" | "imagenet" */
    int image_size;             /* 0 = the dataset's native size */
    int batch_size;             /* images per backbone forward */
    int threads, workers;
    const char *device;         /* backend name (--device; cli_default_device()) */
    const char *precision;      /* fp32 | bf16 (--precision) */
} cli_backbone_args;

void cli_backbone_args_default(cli_backbone_args *a);

/* The flag table entries, spliced into each command's cli_arg array (each
 * command names the batch_size flag itself: --batch-size is the probe's own in
 * `hallu linear`). */
#define CLI_BACKBONE_ARGS(a)                                                                                  \
    { "checkpoint", CLI_ARG_STR, &(a)->checkpoint, "checkpoint written by `hallu train` (arch/stem from its metadata)" }, \
    { "weights", CLI_ARG_STR, &(a)->weights, "instead of --checkpoint: torchvision-named backbone .safetensors" },    \
    { "arch", CLI_ARG_STR, &(a)->arch, "with --weights: resnet18 | resnet34 | resnet50" },                           \
    { "stem", CLI_ARG_STR, &(a)->stem, "with --weights: cifar | imagenet" },                                         \
    { "image-size", CLI_ARG_INT, &(a)->image_size, "input side N. 0: the images' native size (they must all " \
      "share one square size). N > 0: a dataset of NxN images passes unchanged; otherwise every image is resized " \
      "(shorter side to N*8/7, antialiased bilinear) and centre-cropped to NxN" },                               \
    { "mean-std", CLI_ARG_STR, &(a)->mean_std, "input normalisation: cifar | imagenet (as in training)" },           \
    { "device", CLI_ARG_STR, &(a)->device, CLI_DEVICE_HELP },                                                        \
    { "precision", CLI_ARG_STR, &(a)->precision, "fp32 | bf16: convolutions with bf16 products, fp32 accumulation "   \
      "(needs AVX512-BF16 or AMX)" },                                                                                  \
    { "threads", CLI_ARG_INT, &(a)->threads, "compute threads (0 = all cores)" },                                    \
    { "workers", CLI_ARG_INT, &(a)->workers, "data loading threads" }

/* Flag combinations and values; 0 or 2 (after printing the error). */
int cli_backbone_check(const cli_backbone_args *a, const char *cmd);

typedef struct cli_backbone {
    hallu_backend *be;
    hallu_params ps;
    hallu_resnet *net;
    hallu_resnet_config cfg;
    int size;                   /* planned input side (0 until planned) */
    float mean[3], std[3];
} cli_backbone;

/* Creates the backend (--device) and loads the backbone; 0, 1 or 2 (an unknown
 * device name). Free with cli_backbone_free. */
int cli_backbone_open(cli_backbone *bb, const cli_backbone_args *a);
void cli_backbone_free(cli_backbone *bb);

/* Opens spec's split and requires labels; 0, 1 (runtime) or 2 (bad split name). */
int cli_open_labelled(const char *spec, const char *split, const char *flag, const char *split_flag,
                      hallu_dataset **ds);
/* Opens spec's split (labels optional). */
int cli_open_dataset(const char *spec, const char *split, const char *flag, const char *split_flag,
                     hallu_dataset **ds);

/* The evaluation view for ds; plans the net on first use (later datasets must
 * give the same input size). 0 or 1. */
int cli_eval_view(cli_backbone *bb, const cli_backbone_args *a, const hallu_dataset *ds,
                  hallu_view_pipeline *view);

/* Features of every image of ds ("what" names it in the progress line). 0 or 1. */
int cli_extract(cli_backbone *bb, const cli_backbone_args *a, const hallu_dataset *ds, int normalize,
                const char *what, hallu_feature_set *fs);

#endif
