/* CIFAR-10/100 and STL-10 readers: official-format binary files written here
 * from known pixels must read back identically (pixels, labels, order, class
 * names); truncated, corrupt or missing files must fail with a message that
 * names the file and the problem. */
#include "check.h"
#include "data/dataset_internal.h"
#include "test_data_util.h"

/* Pixel (y, x, c) of image k: a value we can recompute anywhere. */
static uint8_t pix(int k, int y, int x, int c)
{
    return (uint8_t)(k * 31 + y * 7 + x * 3 + c * 101);
}

static void cifar_record(uint8_t *rec, int k, int label_bytes, int fine, int coarse)
{
    if (label_bytes == 2)
        *rec++ = (uint8_t)coarse;
    *rec++ = (uint8_t)fine;
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 32; y++)
            for (int x = 0; x < 32; x++)
                rec[c * 1024 + y * 32 + x] = pix(k, y, x, c);
}

static void write_cifar10(const char *dir, int per_batch)
{
    size_t rec = 3073;
    uint8_t *buf = malloc(rec * per_batch);
    int k = 0;
    for (int b = 1; b <= 6; b++) {
        for (int r = 0; r < per_batch; r++, k++)
            cifar_record(buf + r * rec, k, 1, k % 10, 0);
        char name[64];
        if (b <= 5)
            snprintf(name, sizeof name, "data_batch_%d.bin", b);
        else
            snprintf(name, sizeof name, "test_batch.bin");
        tdu_write(dir, name, buf, rec * per_batch);
    }
    free(buf);
    tdu_write_text(dir, "batches.meta.txt",
                   "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n\n");
}

static int image_matches(const hallu_image *img, int k)
{
    for (int y = 0; y < img->h; y++)
        for (int x = 0; x < img->w; x++)
            for (int c = 0; c < 3; c++)
                if (img->data[(y * img->w + x) * 3 + c] != pix(k, y, x, c))
                    return 0;
    return 1;
}

static void test_cifar10_roundtrip(const char *root)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/c10", root);
    mkdir(dir, 0755);
    write_cifar10(dir, 3);
    char spec[600];
    snprintf(spec, sizeof spec, "cifar10:%s", dir);
    hallu_error err;
    hallu_dataset *ds;
    CHECK_OK(hallu_dataset_open(&ds, spec, HALLU_SPLIT_TRAIN, &err), &err);
    if (!ds)
        return;
    CHECK(hallu_dataset_size(ds) == 15);
    CHECK(hallu_dataset_num_classes(ds) == 10);
    CHECK(strcmp(hallu_dataset_class_name(ds, 9), "truck") == 0);
    CHECK(hallu_dataset_image_height(ds) == 32 && hallu_dataset_image_width(ds) == 32);
    uint8_t buf[3072];
    hallu_image img = { buf, 0, 0, sizeof buf };
    int all = 1;
    for (int64_t i = 0; i < 15; i++) {
        int32_t label = -7, label2 = -7;
        CHECK_OK(hallu_dataset_get(ds, i, &img, &label, &err), &err);
        CHECK_OK(hallu_dataset_get_label(ds, i, &label2, &err), &err);
        all &= image_matches(&img, (int)i) && label == i % 10 && label2 == label;
    }
    CHECK_MSG(all, "cifar10 train images/labels differ from what was written");
    char where[256];
    hallu_dataset_describe(ds, 7, where, sizeof where);
    CHECK_MSG(tdu_contains(where, "data_batch_3.bin record 1"), "describe: %s", where);
    /* Too small a buffer: INVALID_ARG with the needed size reported. */
    hallu_image small = { buf, 0, 0, 100 };
    CHECK(hallu_dataset_get(ds, 0, &small, NULL, &err) == HALLU_ERR_INVALID_ARG);
    CHECK(small.h == 32 && small.w == 32);
    CHECK(hallu_dataset_get(ds, 15, &img, NULL, &err) == HALLU_ERR_INVALID_ARG);
    hallu_dataset_close(ds);

    CHECK_OK(hallu_dataset_open(&ds, spec, HALLU_SPLIT_TEST, &err), &err);
    if (ds) {
        int32_t label;
        CHECK(hallu_dataset_size(ds) == 3);
        CHECK_OK(hallu_dataset_get(ds, 2, &img, &label, &err), &err);
        CHECK(image_matches(&img, 17) && label == 7);
        hallu_dataset_close(ds);
    }
    CHECK(hallu_dataset_open(&ds, spec, HALLU_SPLIT_UNLABELED, &err) == HALLU_ERR_UNSUPPORTED);
}

static void expect_error(const char *spec, hallu_split split, hallu_status code, const char *a,
                         const char *b)
{
    hallu_dataset *ds = NULL;
    hallu_error err;
    hallu_status st = hallu_dataset_open(&ds, spec, split, &err);
    CHECK_MSG(st == code, "%s: status %d (%s), expected %d", spec, (int)st,
              st ? err.msg : "ok", (int)code);
    CHECK_MSG(st == HALLU_OK || (tdu_contains(err.msg, a) && (!b || tdu_contains(err.msg, b))),
              "%s: message '%s' lacks '%s' / '%s'", spec, err.msg, a, b ? b : "");
    CHECK(st != HALLU_OK || ds != NULL);
    hallu_dataset_close(ds);
}

static void test_cifar10_corrupt(const char *root)
{
    char dir[512], spec[600];
    snprintf(dir, sizeof dir, "%s/c10bad", root);
    mkdir(dir, 0755);
    write_cifar10(dir, 2);
    snprintf(spec, sizeof spec, "cifar10:%s", dir);
    /* Truncated last record. */
    size_t n;
    uint8_t *b = tdu_read(dir, "data_batch_2.bin", &n);
    tdu_write(dir, "data_batch_2.bin", b, n - 5);
    expect_error(spec, HALLU_SPLIT_TRAIN, HALLU_ERR_FORMAT, "data_batch_2.bin",
                 "not a multiple of the 3073-byte record");
    /* Label out of range in record 1. */
    tdu_write(dir, "data_batch_2.bin", b, n);
    b[3073] = 10;
    tdu_write(dir, "data_batch_4.bin", b, n);
    expect_error(spec, HALLU_SPLIT_TRAIN, HALLU_ERR_FORMAT, "data_batch_4.bin record 1",
                 "label 10 outside 0..9");
    free(b);
    /* Empty file, missing file. */
    tdu_write(dir, "test_batch.bin", "", 0);
    expect_error(spec, HALLU_SPLIT_TEST, HALLU_ERR_FORMAT, "test_batch.bin", "empty");
    char p[1024];
    tdu_path(p, sizeof p, dir, "test_batch.bin");
    remove(p);
    expect_error(spec, HALLU_SPLIT_TEST, HALLU_ERR_IO, "test_batch.bin", "cannot open");
    /* Class names file with the wrong count. */
    tdu_write_text(dir, "batches.meta.txt", "a\nb\n");
    tdu_write(dir, "data_batch_4.bin", b = tdu_read(dir, "data_batch_1.bin", &n), n);
    free(b);
    expect_error(spec, HALLU_SPLIT_TRAIN, HALLU_ERR_FORMAT, "batches.meta.txt",
                 "expected 10 class names");
}

static void test_cifar100(const char *root)
{
    char dir[512], spec[600];
    snprintf(dir, sizeof dir, "%s/c100", root);
    mkdir(dir, 0755);
    size_t rec = 3074;
    uint8_t *buf = malloc(rec * 4);
    for (int r = 0; r < 4; r++)
        cifar_record(buf + r * rec, r, 2, 99 - r * 20, r * 5);
    tdu_write(dir, "train.bin", buf, rec * 4);
    tdu_write(dir, "test.bin", buf, rec * 2);
    snprintf(spec, sizeof spec, "cifar100:%s", dir);
    hallu_error err;
    hallu_dataset *ds;
    CHECK_OK(hallu_dataset_open(&ds, spec, HALLU_SPLIT_TRAIN, &err), &err);
    if (ds) {
        uint8_t px[3072];
        hallu_image img = { px, 0, 0, sizeof px };
        int ok = hallu_dataset_size(ds) == 4 && hallu_dataset_num_classes(ds) == 100;
        for (int i = 0; i < 4; i++) {
            int32_t label;
            ok &= hallu_dataset_get(ds, i, &img, &label, &err) == HALLU_OK;
            ok &= label == 99 - i * 20 && image_matches(&img, i);
        }
        CHECK_MSG(ok, "cifar100 fine labels/pixels differ");
        CHECK(strcmp(hallu_dataset_class_name(ds, 42), "42") == 0);
        hallu_dataset_close(ds);
    }
    buf[0] = 20;   /* coarse label out of range */
    tdu_write(dir, "test.bin", buf, rec * 2);
    expect_error(spec, HALLU_SPLIT_TEST, HALLU_ERR_FORMAT, "test.bin record 0",
                 "coarse label 20");
    tdu_write(dir, "test.bin", buf, rec * 2 - 3073);
    expect_error(spec, HALLU_SPLIT_TEST, HALLU_ERR_FORMAT, "test.bin",
                 "not a multiple of the 3074-byte record");
    free(buf);
}

/* STL-10: planes of 96x96 in column-major order. */
static void stl_image(uint8_t *dst, int k)
{
    for (int c = 0; c < 3; c++)
        for (int x = 0; x < 96; x++)
            for (int y = 0; y < 96; y++)
                dst[c * 9216 + x * 96 + y] = pix(k, y, x, c);
}

static void test_stl10(const char *root)
{
    char dir[512], spec[600];
    snprintf(dir, sizeof dir, "%s/stl", root);
    mkdir(dir, 0755);
    tdu_mkdir(dir, "stl10_binary");
    size_t im = 27648;
    uint8_t *x = malloc(im * 3);
    for (int k = 0; k < 3; k++)
        stl_image(x + k * im, k);
    uint8_t y[3] = { 1, 10, 4 };
    tdu_write(dir, "stl10_binary/train_X.bin", x, im * 3);
    tdu_write(dir, "stl10_binary/train_y.bin", y, 3);
    tdu_write(dir, "stl10_binary/test_X.bin", x, im * 2);
    tdu_write(dir, "stl10_binary/test_y.bin", y, 3);
    tdu_write(dir, "stl10_binary/unlabeled_X.bin", x, im * 2);
    tdu_write_text(dir, "stl10_binary/class_names.txt",
                   "airplane\nbird\ncar\ncat\ndeer\ndog\nhorse\nmonkey\nship\ntruck\n");
    snprintf(spec, sizeof spec, "stl10:%s", dir);
    hallu_error err;
    hallu_dataset *ds;
    uint8_t *px = malloc(im);
    hallu_image img = { px, 0, 0, im };
    CHECK_OK(hallu_dataset_open(&ds, spec, HALLU_SPLIT_TRAIN, &err), &err);
    if (ds) {
        int ok = hallu_dataset_size(ds) == 3 && hallu_dataset_image_height(ds) == 96;
        for (int k = 0; k < 3; k++) {
            int32_t label;
            ok &= hallu_dataset_get(ds, k, &img, &label, &err) == HALLU_OK;
            ok &= label == y[k] - 1 && image_matches(&img, k);
        }
        CHECK_MSG(ok, "stl10 train pixels/labels differ");
        CHECK(strcmp(hallu_dataset_class_name(ds, 7), "monkey") == 0);
        hallu_dataset_close(ds);
    }
    CHECK_OK(hallu_dataset_open(&ds, spec, HALLU_SPLIT_UNLABELED, &err), &err);
    if (ds) {
        int32_t label = 0;
        CHECK(hallu_dataset_size(ds) == 2 && hallu_dataset_num_classes(ds) == 0);
        CHECK_OK(hallu_dataset_get(ds, 1, &img, &label, &err), &err);
        CHECK(label == -1 && image_matches(&img, 1));
        hallu_dataset_close(ds);
    }
    /* test_y has 3 labels for 2 images. */
    expect_error(spec, HALLU_SPLIT_TEST, HALLU_ERR_FORMAT, "test_y.bin", "holds 3 labels");
    y[1] = 11;
    tdu_write(dir, "stl10_binary/train_y.bin", y, 3);
    expect_error(spec, HALLU_SPLIT_TRAIN, HALLU_ERR_FORMAT, "train_y.bin label 1", "expected 1..10");
    tdu_write(dir, "stl10_binary/unlabeled_X.bin", x, im + 17);
    expect_error(spec, HALLU_SPLIT_UNLABELED, HALLU_ERR_FORMAT, "unlabeled_X.bin",
                 "27648-byte image");
    free(x);
    free(px);
}

static void test_spec_errors(const char *root)
{
    expect_error("nosuchkind:/tmp", HALLU_SPLIT_TRAIN, HALLU_ERR_INVALID_ARG,
                 "unknown dataset kind 'nosuchkind'", NULL);
    expect_error("cifar10", HALLU_SPLIT_TRAIN, HALLU_ERR_INVALID_ARG, "lacks ':PATH'", NULL);
    expect_error("", HALLU_SPLIT_TRAIN, HALLU_ERR_INVALID_ARG, "empty data spec", NULL);
    char spec[600];
    snprintf(spec, sizeof spec, "cifar10:%s/does_not_exist", root);
    expect_error(spec, HALLU_SPLIT_TRAIN, HALLU_ERR_IO, "does_not_exist", "does not exist");
    snprintf(spec, sizeof spec, "stl10:%s/does_not_exist", root);
    expect_error(spec, HALLU_SPLIT_TRAIN, HALLU_ERR_IO, "does_not_exist", "does not exist");
    hallu_split s;
    hallu_error err;
    CHECK(hallu_split_parse("val", &s, &err) == HALLU_OK && s == HALLU_SPLIT_TEST);
    CHECK(hallu_split_parse("bogus", &s, &err) == HALLU_ERR_INVALID_ARG &&
          tdu_contains(err.msg, "bogus"));
}

/* The memory entry points the fuzzers use must reject garbage the same way. */
static void test_buffers(void)
{
    uint8_t junk[3073 * 2 + 1];
    memset(junk, 3, sizeof junk);
    data_buffer b = { junk, sizeof junk, "mem" };
    hallu_dataset *ds = NULL;
    hallu_error err;
    CHECK(cifar_open_buffers(&ds, 10, &b, 1, &err) == HALLU_ERR_FORMAT && !ds);
    b.size = 3073 * 2;
    CHECK_OK(cifar_open_buffers(&ds, 10, &b, 1, &err), &err);
    CHECK(ds && hallu_dataset_size(ds) == 2);
    hallu_dataset_close(ds);
    data_buffer x = { junk, 100, "x" };
    CHECK(stl10_open_buffers(&ds, &x, NULL, &err) == HALLU_ERR_FORMAT && !ds);
}

int main(void)
{
    char *root = tdu_mkdtemp("data_binary");
    test_cifar10_roundtrip(root);
    test_cifar10_corrupt(root);
    test_cifar100(root);
    test_stl10(root);
    test_spec_errors(root);
    test_buffers();
    tdu_rm_rf(root);
    free(root);
    return check_summary();
}
