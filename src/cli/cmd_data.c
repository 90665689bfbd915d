/* `hallu data info|pack`: inspect a dataset spec, verify its images, or decode
 * a split once into a packed file. */
#include "cli/args.h"
#include "cli/commands.h"
#include "hallu/data.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DATA_HELP_SPECS                                                                         \
    "SPEC is KIND:PATH or synthetic[:N]:\n"                                                     \
    "  cifar10:DIR       data_batch_1..5.bin (train), test_batch.bin (test)\n"                \
    "  cifar100:DIR      train.bin, test.bin (fine labels, 100 classes)\n"                    \
    "  stl10:DIR         stl10_binary/{train,test}_{X,y}.bin, unlabeled_X.bin\n"              \
    "  imagefolder:DIR   DIR/<class>/*.{jpg,jpeg,png}, or DIR/train/<class>/... with\n"       \
    "                    DIR/test (or DIR/val) as the test split\n"                           \
    "  tinyimagenet:DIR  train/<wnid>/images, val/images + val/val_annotations.txt (test)\n"  \
    "  packed:FILE       a file written by `hallu data pack` (packed:DIR reads DIR/<split>.hpk)\n" \
    "  synthetic[:N]     procedural 10-class 32x32 textures, N train (default 2000), N/4 test"

static void print_classes(const hallu_dataset *ds)
{
    int n = hallu_dataset_num_classes(ds);
    if (n == 0) {
        printf("  classes: none (unlabeled)\n");
        return;
    }
    printf("  classes: %d (", n);
    for (int c = 0; c < n; c++) {
        /* Long lists keep the first 6 and the last 2 names. */
        if (n > 10 && c == 6) {
            printf(", ...");
            c = n - 3;
            continue;
        }
        printf("%s%s", c ? ", " : "", hallu_dataset_class_name(ds, c));
    }
    printf(")\n");
}

static int print_label_counts(const hallu_dataset *ds)
{
    int n = hallu_dataset_num_classes(ds);
    if (n == 0)
        return 0;
    int64_t *counts = calloc((size_t)n, sizeof *counts);
    if (!counts)
        return 1;
    hallu_error err;
    for (int64_t i = 0; i < hallu_dataset_size(ds); i++) {
        int32_t label;
        if (hallu_dataset_get_label(ds, i, &label, &err) != HALLU_OK) {
            fprintf(stderr, "error: %s\n", err.msg);
            free(counts);
            return 1;
        }
        if (label >= 0 && label < n)
            counts[label]++;
    }
    int lo = 0, hi = 0;
    for (int c = 1; c < n; c++) {
        lo = counts[c] < counts[lo] ? c : lo;
        hi = counts[c] > counts[hi] ? c : hi;
    }
    printf("  images per class: min %lld (%s), max %lld (%s)\n", (long long)counts[lo],
           hallu_dataset_class_name(ds, lo), (long long)counts[hi],
           hallu_dataset_class_name(ds, hi));
    free(counts);
    return 0;
}

static void print_size(hallu_dataset *ds)
{
    hallu_error err;
    if (hallu_dataset_probe_sizes(ds, &err) != HALLU_OK) {
        printf("  image size: unknown (%s)\n", err.msg);
        return;
    }
    if (hallu_dataset_image_height(ds) > 0)
        printf("  image size: %dx%d (HxW)\n", hallu_dataset_image_height(ds),
               hallu_dataset_image_width(ds));
    else {
        hallu_dataset_check_uniform_size(ds, &err);
        printf("  image size: variable (largest needs %zu bytes; %s)\n",
               hallu_dataset_max_image_bytes(ds), err.msg);
    }
}

static int print_stats(const hallu_dataset *ds, int max_images, int skip_bad)
{
    hallu_dataset_stats s;
    hallu_error err;
    if (hallu_dataset_compute_stats(ds, max_images, skip_bad, &s, &err) != HALLU_OK) {
        fprintf(stderr, "error: stats: %s\n", err.msg);
        return 1;
    }
    printf("  mean: %.4f %.4f %.4f\n  std:  %.4f %.4f %.4f\n", s.mean[0], s.mean[1], s.mean[2],
           s.std[0], s.std[1], s.std[2]);
    printf("  (over %lld of %lld images%s", (long long)s.images, (long long)hallu_dataset_size(ds),
           s.images + s.bad < hallu_dataset_size(ds) ? ", evenly spaced" : "");
    if (s.bad)
        printf(", %lld undecodable skipped", (long long)s.bad);
    printf("; sizes %dx%d to %dx%d)\n", s.min_h, s.min_w, s.max_h, s.max_w);
    return 0;
}

/* Decodes every image; returns the number that failed. */
static int64_t verify(const hallu_dataset *ds)
{
    hallu_image img = { 0 };
    int64_t bad = 0, n = hallu_dataset_size(ds);
    for (int64_t i = 0; i < n; i++) {
        hallu_error err;
        int32_t label;
        hallu_status st = hallu_dataset_get(ds, i, &img, &label, &err);
        size_t need = (size_t)img.h * img.w * 3;
        if (st == HALLU_ERR_INVALID_ARG && need > img.capacity) {
            uint8_t *grown = realloc(img.data, need);
            if (grown) {
                img.data = grown;
                img.capacity = need;
                st = hallu_dataset_get(ds, i, &img, &label, &err);
            }
        }
        if (st != HALLU_OK) {
            char where[512];
            hallu_dataset_describe(ds, i, where, sizeof where);
            /* Decoder messages usually start with the path already. */
            if (strstr(err.msg, where))
                printf("  bad image %lld: %s\n", (long long)i, err.msg);
            else
                printf("  bad image %lld: %s: %s\n", (long long)i, where, err.msg);
            bad++;
        }
    }
    free(img.data);
    printf("  verify: %lld images decoded, %lld bad\n", (long long)(n - bad), (long long)bad);
    return bad;
}

typedef struct info_opts {
    int verify, skip_bad, stats_images;
} info_opts;

/* Returns 0 ok, 1 failure, -1 when the split does not exist. */
static int info_split(const char *spec, hallu_split split, const info_opts *o, bool quiet_absent)
{
    hallu_dataset *ds;
    hallu_error err;
    hallu_status st = hallu_dataset_open(&ds, spec, split, &err);
    if (st == HALLU_ERR_UNSUPPORTED && quiet_absent)
        return -1;
    if (st != HALLU_OK) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    printf("split %s: %lld images\n", hallu_split_name(split), (long long)hallu_dataset_size(ds));
    print_classes(ds);
    int rc = print_label_counts(ds);
    print_size(ds);
    if (rc == 0)
        rc = print_stats(ds, o->stats_images, o->skip_bad || o->verify);  /* verify lists them */
    if (rc == 0 && o->verify && verify(ds) > 0 && !o->skip_bad)
        rc = 1;
    hallu_dataset_close(ds);
    return rc;
}

static int data_info(int argc, char **argv)
{
    const char *spec = NULL, *split_text = NULL;
    info_opts o = { 0, 0, 5000 };
    const cli_arg args[] = {
        { "data", CLI_ARG_STR, &spec, "dataset spec KIND:PATH (required; kinds listed above)" },
        { "split", CLI_ARG_STR, &split_text, "train, test (or val) or unlabeled; none: every split that exists" },
        { "verify", CLI_ARG_BOOL, &o.verify, "decode every image, list each bad one, exit 1 if any" },
        { "skip-bad", CLI_ARG_BOOL, &o.skip_bad, "skip undecodable images in the statistics and do not fail on them" },
        { "stats-images", CLI_ARG_INT, &o.stats_images, "mean/std over at most N evenly spaced images (<= 0: all)" },
    };
    cli_parse_result r = cli_parse("hallu data info --data SPEC [--split S] [--verify] [--skip-bad]",
                                   "Print split sizes, classes, image size and per-channel mean/std.\n\n" DATA_HELP_SPECS,
                                   args, sizeof args / sizeof args[0], argc, argv, NULL, 0, NULL);
    if (r != CLI_PARSE_OK)
        return r == CLI_PARSE_HELP ? 0 : 2;
    if (!spec) {
        fprintf(stderr, "error: --data SPEC is required\n");
        return 2;
    }
    printf("data: %s\n", spec);
    hallu_error err;
    if (split_text) {
        hallu_split split;
        if (hallu_split_parse(split_text, &split, &err) != HALLU_OK) {
            fprintf(stderr, "error: --split: %s\n", err.msg);
            return 2;
        }
        return info_split(spec, split, &o, false) != 0;
    }
    int found = 0, failed = 0;
    for (int s = HALLU_SPLIT_TRAIN; s <= HALLU_SPLIT_UNLABELED; s++) {
        int rc = info_split(spec, (hallu_split)s, &o, true);
        found += rc >= 0;
        failed |= rc > 0;
    }
    if (!found && !failed)
        fprintf(stderr, "error: %s has no split\n", spec);
    return failed || !found;
}

/* A live counter on a terminal; logs get only the final line. */
static void pack_progress(void *ctx, int64_t done, int64_t total)
{
    bool tty = isatty(STDERR_FILENO);
    if (tty || done == total)
        fprintf(stderr, "%spacking %lld/%lld", tty ? "\r" : "", (long long)done, (long long)total);
    if (done == total)
        fprintf(stderr, "\n");
}

static int data_pack(int argc, char **argv)
{
    const char *spec = NULL, *split_text = "train", *out = NULL;
    int size = 0, skip_bad = 0;
    const cli_arg args[] = {
        { "data", CLI_ARG_STR, &spec, "dataset spec KIND:PATH (required; kinds listed above)" },
        { "split", CLI_ARG_STR, &split_text, "split to pack: train, test (or val) or unlabeled" },
        { "out", CLI_ARG_STR, &out, "packed file to write (required; written atomically)" },
        { "size", CLI_ARG_INT, &size, "0: keep the native size (all images must agree); N: resize the shorter side to N (antialiased bilinear) and centre-crop N x N" },
        { "skip-bad", CLI_ARG_BOOL, &skip_bad, "leave out images that fail to decode instead of failing" },
    };
    cli_parse_result r = cli_parse("hallu data pack --data SPEC --split S --out FILE [--size N]",
                                   "Decode a split once into a memory-mappable packed file (read back with --data packed:FILE).\n\n" DATA_HELP_SPECS,
                                   args, sizeof args / sizeof args[0], argc, argv, NULL, 0, NULL);
    if (r != CLI_PARSE_OK)
        return r == CLI_PARSE_HELP ? 0 : 2;
    hallu_error err;
    hallu_split split;
    if (!spec || !out) {
        fprintf(stderr, "error: --data SPEC and --out FILE are required\n");
        return 2;
    }
    if (hallu_split_parse(split_text, &split, &err) != HALLU_OK) {
        fprintf(stderr, "error: --split: %s\n", err.msg);
        return 2;
    }
    hallu_dataset *ds;
    if (hallu_dataset_open(&ds, spec, split, &err) != HALLU_OK) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    hallu_pack_options opt = { .size = size, .skip_bad = skip_bad, .progress = pack_progress };
    int64_t skipped = 0;
    hallu_status st = hallu_packed_write(ds, split, out, &opt, &skipped, &err);
    hallu_dataset_close(ds);
    if (st != HALLU_OK) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    printf("wrote %s (%lld images skipped)\n", out, (long long)skipped);
    return 0;
}

int cmd_data(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "info") == 0)
        return data_info(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "pack") == 0)
        return data_pack(argc - 1, argv + 1);
    FILE *out = argc >= 2 && strcmp(argv[1], "--help") == 0 ? stdout : stderr;
    fprintf(out, "usage: hallu data info|pack [options]   (hallu data <sub> --help)\n\n"
                 "  info  split sizes, classes, image size, mean/std; --verify decodes all\n"
                 "  pack  decode a split into a packed file\n\n" DATA_HELP_SPECS "\n");
    return out == stdout ? 0 : 2;
}
