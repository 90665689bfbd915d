/* hallu features: a frozen backbone's features of a dataset split as .npy files. */
#include "cli/commands.h"
#include "cli/eval_common.h"
#include "hallu/io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* FILE.npy -> FILE.labels.npy */
static int labels_path(const char *out, char *buf, size_t size)
{
    size_t n = strlen(out);
    if (n < 5 || strcmp(out + n - 4, ".npy") != 0)
        return -1;
    int w = snprintf(buf, size, "%.*s.labels.npy", (int)(n - 4), out);
    return w < 0 || (size_t)w >= size ? -1 : 0;
}

static int write_outputs(const char *out, const char *labels_out, const hallu_feature_set *fs)
{
    hallu_error err;
    hallu_error_clear(&err);
    int64_t shape[2] = { fs->n, fs->dim };
    if (hallu_npy_write(out, HALLU_DTYPE_F32, 2, shape, fs->x, &err) != HALLU_OK ||
        hallu_npy_write(labels_out, HALLU_DTYPE_I32, 1, shape, fs->labels, &err) != HALLU_OK) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    return 0;
}

int cmd_features(int argc, char **argv)
{
    const char *data = NULL, *split = "test", *out = NULL;
    int normalize = 0;
    cli_backbone_args b;
    cli_backbone_args_default(&b);
    cli_arg args[] = {
        { "data", CLI_ARG_STR, &data, "dataset SPEC (e.g. cifar10:DIR; see `hallu data --help`)" },
        { "split", CLI_ARG_STR, &split, "train | test | unlabeled" },
        { "out", CLI_ARG_STR, &out, "FILE.npy for the float32 features [N][D]; labels (int32 [N], -1 when "
                                    "unlabeled) go to FILE.labels.npy" },
        { "normalize", CLI_ARG_BOOL, &normalize, "L2-normalise every feature row" },
        { "batch-size", CLI_ARG_INT, &b.batch_size, "images per backbone forward" },
        CLI_BACKBONE_ARGS(&b),
    };
    cli_parse_result r = cli_parse("hallu features --checkpoint FILE --data SPEC --out FILE.npy [options]",
                                   "Write the frozen backbone's features (after global average pooling) of every "
                                   "image of a split, in dataset order, as NumPy .npy files (numpy.load reads them).",
                                   args, (int)(sizeof args / sizeof args[0]), argc, argv, NULL, 0, NULL);
    if (r != CLI_PARSE_OK)
        return r == CLI_PARSE_HELP ? 0 : 2;
    char lpath[4096];
    if (!data || !out) {
        fprintf(stderr, "error: %s needs --data SPEC and --out FILE.npy (see '%s --help')\n", argv[0], argv[0]);
        return 2;
    }
    if (labels_path(out, lpath, sizeof lpath) != 0) {
        fprintf(stderr, "error: --out expects a file name ending in .npy, got '%s'\n", out);
        return 2;
    }
    int rc = cli_backbone_check(&b, argv[0]);
    if (rc)
        return rc;
    cli_backbone bb;
    hallu_dataset *ds = NULL;
    hallu_feature_set fs = { 0 };
    rc = cli_backbone_open(&bb, &b);
    if (rc == 0) rc = cli_open_dataset(data, split, "data", "split", &ds);
    if (rc == 0) rc = cli_extract(&bb, &b, ds, normalize, split, &fs);
    if (rc == 0) rc = write_outputs(out, lpath, &fs);
    if (rc == 0)
        printf("wrote %s (%lld x %d float32) and %s\n", out, (long long)fs.n, fs.dim, lpath);
    hallu_feature_set_free(&fs);
    hallu_dataset_close(ds);
    cli_backbone_free(&bb);
    return rc;
}
