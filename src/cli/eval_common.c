#include "cli/eval_common.h"
#include "hallu/augment.h"
#include "hallu/checkpoint.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

void cli_backbone_args_default(cli_backbone_args *a)
{
    memset(a, 0, sizeof *a);
    a->arch = "resnet18";
    a->stem = "cifar";
    a->mean_std = "cifar";
    a->batch_size = 256;
    a->workers = 4;
    a->device = cli_default_device();
    a->precision = "fp32";
}

int cli_backbone_check(const cli_backbone_args *a, const char *cmd)
{
    if (!a->checkpoint == !a->weights) {
        fprintf(stderr, "error: %s needs exactly one of --checkpoint FILE or --weights FILE (see '%s --help')\n",
                cmd, cmd);
        return 2;
    }
    if (strcmp(a->mean_std, "cifar") != 0 && strcmp(a->mean_std, "imagenet") != 0) {
        fprintf(stderr, "error: --mean-std expects cifar or imagenet, got '%s'\n", a->mean_std);
        return 2;
    }
    if (a->image_size < 0 || a->batch_size <= 0 || a->threads < 0 || a->workers <= 0) {
        fprintf(stderr, "error: --image-size %d / batch size %d / --threads %d / --workers %d: expected "
                        "image-size >= 0, batch >= 1, threads >= 0, workers >= 1\n",
                a->image_size, a->batch_size, a->threads, a->workers);
        return 2;
    }
    hallu_resnet_config cfg;
    hallu_error err;
    if (a->weights && hallu_resnet_parse_arch(a->arch, a->stem, &cfg, &err) != HALLU_OK) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 2;
    }
    return 0;
}

int cli_backbone_open(cli_backbone *bb, const cli_backbone_args *a)
{
    memset(bb, 0, sizeof *bb);
    hallu_params_init(&bb->ps);
    int imagenet = strcmp(a->mean_std, "imagenet") == 0;
    memcpy(bb->mean, imagenet ? HALLU_IMAGENET_MEAN : HALLU_CIFAR_MEAN, sizeof bb->mean);
    memcpy(bb->std, imagenet ? HALLU_IMAGENET_STD : HALLU_CIFAR_STD, sizeof bb->std);
    hallu_error err;
    hallu_error_clear(&err);
    hallu_status s = hallu_backend_create(a->device, a->threads, &bb->be, &err);
    if (s != HALLU_OK) {
        fprintf(stderr, "error: --device %s: %s\n", a->device, err.msg);
        return s == HALLU_ERR_INVALID_ARG ? 2 : 1;
    }
    hallu_precision precision = HALLU_PRECISION_FP32;
    s = hallu_precision_parse(a->precision, &precision, &err);
    if (s == HALLU_OK)   /* before any convolution is planned */
        s = hallu_backend_set_precision(bb->be, precision, &err);
    if (s == HALLU_OK)
        s = a->checkpoint ? hallu_checkpoint_load_backbone(a->checkpoint, bb->be, &bb->cfg, &bb->ps, &bb->net, &err)
                          : hallu_eval_load_weights(a->weights, a->arch, a->stem, bb->be, &bb->cfg, &bb->ps, &bb->net, &err);
    if (s != HALLU_OK) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    return 0;
}

void cli_backbone_free(cli_backbone *bb)
{
    if (bb->net)
        hallu_resnet_free(bb->net, bb->be);
    hallu_params_free(&bb->ps);
    hallu_backend_free(bb->be);
    memset(bb, 0, sizeof *bb);
}

int cli_open_dataset(const char *spec, const char *split, const char *flag, const char *split_flag,
                     hallu_dataset **ds)
{
    hallu_error err;
    hallu_error_clear(&err);
    hallu_split sp;
    if (hallu_split_parse(split, &sp, &err) != HALLU_OK) {
        fprintf(stderr, "error: --%s: %s\n", split_flag, err.msg);
        return 2;
    }
    /* Folders learn their images' common size (if any) from the headers, so
     * that they are evaluated at their native size like fixed-size kinds. */
    if (hallu_dataset_open(ds, spec, sp, &err) != HALLU_OK ||
        (hallu_dataset_image_height(*ds) <= 0 && hallu_dataset_probe_sizes(*ds, &err) != HALLU_OK)) {
        fprintf(stderr, "error: --%s %s: %s\n", flag, spec, err.msg);
        hallu_dataset_close(*ds);
        *ds = NULL;
        return 1;
    }
    return 0;
}

int cli_open_labelled(const char *spec, const char *split, const char *flag, const char *split_flag,
                      hallu_dataset **ds)
{
    int rc = cli_open_dataset(spec, split, flag, split_flag, ds);
    if (rc == 0 && hallu_dataset_num_classes(*ds) <= 0) {
        fprintf(stderr, "error: --%s %s (%s split) has no labels; evaluation needs a labelled split\n", flag,
                spec, split);
        hallu_dataset_close(*ds);
        *ds = NULL;
        return 1;
    }
    return rc;
}

/* The native input side of ds's images, or 0 after printing why there is none. */
static int native_size(const hallu_dataset *ds)
{
    hallu_error err;
    hallu_error_clear(&err);
    if (hallu_dataset_check_uniform_size(ds, &err) != HALLU_OK) {
        fprintf(stderr, "error: %s; pass --image-size N to resize every image (shorter side to N*8/7, then "
                        "centre crop N x N)\n", err.msg);
        return 0;
    }
    int h = hallu_dataset_image_height(ds), w = hallu_dataset_image_width(ds);
    if (h != w) {
        fprintf(stderr, "error: the %s images are %dx%d (HxW), not square; pass --image-size N to resize every "
                        "image (shorter side to N*8/7, then centre crop N x N)\n", hallu_dataset_kind(ds), h, w);
        return 0;
    }
    return h;
}

int cli_eval_view(cli_backbone *bb, const cli_backbone_args *a, const hallu_dataset *ds, hallu_view_pipeline *view)
{
    int size = a->image_size > 0 ? a->image_size : native_size(ds);
    if (size <= 0)
        return 1;
    hallu_error err;
    hallu_error_clear(&err);
    /* Images of exactly size x size pass unchanged (normalisation only). */
    if (hallu_eval_view(view, hallu_dataset_image_height(ds), hallu_dataset_image_width(ds), size, bb->mean,
                        bb->std, &err) != HALLU_OK) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    if (bb->size == 0) {
        if (hallu_resnet_plan(bb->net, bb->be, a->batch_size, size, size, 1, &err) != HALLU_OK) {
            fprintf(stderr, "error: %s\n", err.msg);
            return 1;
        }
        bb->size = size;
    } else if (bb->size != size) {
        fprintf(stderr, "error: the datasets have different image sizes (%d and %d); pass --image-size N\n",
                bb->size, size);
        return 1;
    }
    return 0;
}

typedef struct progress_line {
    const char *what;
    int tty;
    double last;
} progress_line;

static int show_progress(void *user, int64_t done, int64_t total)
{
    progress_line *p = user;
    double now = hallu_now();
    if (done < total && now - p->last < (p->tty ? 0.25 : 10.0))
        return 0;
    p->last = now;
    fprintf(stderr, p->tty ? "\r%s features: %lld/%lld   " : "%s features: %lld/%lld\n", p->what, (long long)done,
            (long long)total);
    if (p->tty && done == total)
        fprintf(stderr, "\n");
    return 0;
}

int cli_extract(cli_backbone *bb, const cli_backbone_args *a, const hallu_dataset *ds, int normalize,
                const char *what, hallu_feature_set *fs)
{
    hallu_extract_config ec;
    hallu_extract_config_default(&ec);
    ec.batch_size = a->batch_size;
    ec.num_workers = a->workers;
    ec.normalize = normalize;
    if (cli_eval_view(bb, a, ds, &ec.view) != 0)
        return 1;
    progress_line pl = { .what = what, .tty = isatty(STDERR_FILENO), .last = hallu_now() };
    ec.progress = show_progress;
    ec.progress_user = &pl;
    hallu_source src;
    hallu_source_from_dataset(&src, ds);
    hallu_nn_ctx ctx = { .be = bb->be, .ps = &bb->ps, .training = 0 };
    hallu_error err;
    hallu_error_clear(&err);
    if (hallu_extract_features(bb->net, &ctx, &src, &ec, fs, &err) != HALLU_OK) {
        fprintf(stderr, "error: %s features: %s\n", what, err.msg);
        return 1;
    }
    return 0;
}
