/* Packed files and the synthetic set: packing a dataset and opening the file
 * gives back the same pixels, labels and class names; --size resizes
 * variable-size folders; every kind of damage to a packed file (truncation,
 * flipped bits in header, names, pixels or labels) is caught on open with a
 * message naming the file. The synthetic set is deterministic and its
 * classes differ. */
#include "check.h"
#include "data/dataset_internal.h"
#include "test_data_util.h"

static void test_synthetic(void)
{
    hallu_dataset *a = NULL, *b = NULL, *t = NULL;
    hallu_error err;
    CHECK_OK(hallu_dataset_open(&a, "synthetic:100", HALLU_SPLIT_TRAIN, &err), &err);
    CHECK_OK(hallu_dataset_open(&b, "synthetic:100", HALLU_SPLIT_TRAIN, &err), &err);
    CHECK_OK(hallu_dataset_open(&t, "synthetic:100", HALLU_SPLIT_TEST, &err), &err);
    if (!a || !b || !t)
        return;
    CHECK(hallu_dataset_size(a) == 100 && hallu_dataset_size(t) == 25);
    CHECK(hallu_dataset_num_classes(a) == 10 && strcmp(hallu_dataset_class_name(a, 4), "crosshatch") == 0);
    uint8_t x[3072], y[3072], z[3072];
    hallu_image ix = { x, 0, 0, sizeof x }, iy = { y, 0, 0, sizeof y }, iz = { z, 0, 0, sizeof z };
    int32_t lx, ly, lz;
    CHECK_OK(hallu_dataset_get(a, 13, &ix, &lx, &err), &err);
    CHECK_OK(hallu_dataset_get(b, 13, &iy, &ly, &err), &err);
    CHECK_OK(hallu_dataset_get(t, 13, &iz, &lz, &err), &err);
    CHECK(lx == 3 && ly == 3 && lz == 3);
    CHECK_MSG(memcmp(x, y, sizeof x) == 0, "synthetic image 13 differs between two opens");
    CHECK_MSG(tdu_mean_abs_diff(x, z, sizeof x) > 10, "test image 13 repeats train image 13");
    /* Not a constant image: the shape and noise make pixels vary. */
    double spread = tdu_mean_abs_diff(x, x + 3 * 16 * 32, 3 * 16 * 32);
    CHECK_MSG(spread > 5, "synthetic image looks flat (%.2f)", spread);
    hallu_dataset_close(a);
    hallu_dataset_close(b);
    hallu_dataset_close(t);
    CHECK(hallu_dataset_open(&a, "synthetic:abc", HALLU_SPLIT_TRAIN, &err) == HALLU_ERR_INVALID_ARG &&
          tdu_contains(err.msg, "synthetic:abc"));
}

static int same_dataset(const hallu_dataset *a, const hallu_dataset *b)
{
    if (hallu_dataset_size(a) != hallu_dataset_size(b) ||
        hallu_dataset_num_classes(a) != hallu_dataset_num_classes(b))
        return 0;
    for (int c = 0; c < hallu_dataset_num_classes(a); c++)
        if (strcmp(hallu_dataset_class_name(a, c), hallu_dataset_class_name(b, c)) != 0)
            return 0;
    uint8_t x[3072], y[3072];
    for (int64_t i = 0; i < hallu_dataset_size(a); i++) {
        hallu_image ix = { x, 0, 0, sizeof x }, iy = { y, 0, 0, sizeof y };
        int32_t lx, ly;
        hallu_error err;
        if (hallu_dataset_get(a, i, &ix, &lx, &err) || hallu_dataset_get(b, i, &iy, &ly, &err) ||
            lx != ly || ix.h != iy.h || ix.w != iy.w || memcmp(x, y, (size_t)ix.h * ix.w * 3))
            return 0;
    }
    return 1;
}

static void test_roundtrip(const char *root, char *path, size_t n)
{
    hallu_dataset *src = NULL, *back = NULL;
    hallu_error err;
    snprintf(path, n, "%s/train.hpk", root);
    CHECK_OK(hallu_dataset_open(&src, "synthetic:40", HALLU_SPLIT_TRAIN, &err), &err);
    if (!src)
        return;
    int64_t skipped = -1;
    CHECK_OK(hallu_packed_write(src, HALLU_SPLIT_TRAIN, path, NULL, &skipped, &err), &err);
    CHECK(skipped == 0);
    char spec[800];
    snprintf(spec, sizeof spec, "packed:%s", path);
    CHECK_OK(hallu_dataset_open(&back, spec, HALLU_SPLIT_TRAIN, &err), &err);
    if (back) {
        CHECK_MSG(same_dataset(src, back), "packed file differs from its source");
        CHECK(hallu_dataset_image_height(back) == 32 && strcmp(hallu_dataset_kind(back), "packed") == 0);
        hallu_dataset_close(back);
    }
    /* A file holds one split; a folder of <split>.hpk holds several. */
    CHECK(hallu_dataset_open(&back, spec, HALLU_SPLIT_TEST, &err) == HALLU_ERR_UNSUPPORTED &&
          tdu_contains(err.msg, "holds the 'train' split"));
    snprintf(spec, sizeof spec, "packed:%s", root);
    CHECK_OK(hallu_dataset_open(&back, spec, HALLU_SPLIT_TRAIN, &err), &err);
    hallu_dataset_close(back);
    CHECK(hallu_dataset_open(&back, spec, HALLU_SPLIT_TEST, &err) == HALLU_ERR_UNSUPPORTED &&
          tdu_contains(err.msg, "test.hpk"));
    hallu_dataset_close(src);
}

/* Variable-size images need a target size: shorter side, then centre crop. */
static void test_resize(const char *root)
{
    char dir[512], cls[600], out[700], spec[800];
    snprintf(dir, sizeof dir, "%s/var", root);
    mkdir(dir, 0755);
    tdu_mkdir(dir, "a");
    snprintf(cls, sizeof cls, "%s/a", dir);
    uint8_t img1[10 * 20 * 3], img2[16 * 8 * 3];
    memset(img1, 200, sizeof img1);
    memset(img2, 50, sizeof img2);
    tdu_write_png(cls, "1.png", 20, 10, PNG_COLOR_TYPE_RGB, 8, img1, 20 * 3, NULL, 0);
    tdu_write_png(cls, "2.png", 8, 16, PNG_COLOR_TYPE_RGB, 8, img2, 8 * 3, NULL, 0);
    tdu_write_text(cls, "3.png", "broken");
    snprintf(spec, sizeof spec, "imagefolder:%s", dir);
    snprintf(out, sizeof out, "%s/var.hpk", root);
    hallu_dataset *ds = NULL, *back = NULL;
    hallu_error err;
    CHECK_OK(hallu_dataset_open(&ds, spec, HALLU_SPLIT_TRAIN, &err), &err);
    if (!ds)
        return;
    hallu_pack_options opt = { .size = 0, .skip_bad = 1 };
    CHECK(hallu_packed_write(ds, HALLU_SPLIT_TRAIN, out, &opt, NULL, &err) == HALLU_ERR_INVALID_ARG &&
          tdu_contains(err.msg, "2.png is 16x8") && tdu_contains(err.msg, "--size"));
    CHECK_MSG(access(out, F_OK) != 0, "a failed pack must leave no file behind");
    opt.size = 6;
    int64_t skipped = 0;
    CHECK_OK(hallu_packed_write(ds, HALLU_SPLIT_TRAIN, out, &opt, &skipped, &err), &err);
    CHECK(skipped == 1);
    snprintf(spec, sizeof spec, "packed:%s", out);
    CHECK_OK(hallu_dataset_open(&back, spec, HALLU_SPLIT_TRAIN, &err), &err);
    if (back) {
        uint8_t px[6 * 6 * 3];
        hallu_image img = { px, 0, 0, sizeof px };
        int ok = hallu_dataset_size(back) == 2 && hallu_dataset_image_height(back) == 6;
        ok &= hallu_dataset_get(back, 0, &img, NULL, &err) == HALLU_OK && px[0] == 200 &&
              px[sizeof px - 1] == 200;
        ok &= hallu_dataset_get(back, 1, &img, NULL, &err) == HALLU_OK && px[40] == 50;
        CHECK_MSG(ok, "resized packed images wrong");
        hallu_dataset_close(back);
    }
    opt.skip_bad = 0;
    CHECK(hallu_packed_write(ds, HALLU_SPLIT_TRAIN, out, &opt, NULL, &err) == HALLU_ERR_FORMAT &&
          tdu_contains(err.msg, "3.png"));
    hallu_dataset_close(ds);
}

static void expect_damage(const char *root, const char *path, size_t offset, size_t cut,
                          const char *what)
{
    size_t n;
    uint8_t *b = tdu_read("", path, &n);
    if (!b)
        return;
    char bad[700];
    snprintf(bad, sizeof bad, "%s/bad.hpk", root);
    if (cut)
        n -= cut;
    else
        b[offset] ^= 0x10;
    tdu_write("", bad, b, n);
    free(b);
    char spec[800];
    snprintf(spec, sizeof spec, "packed:%s", bad);
    hallu_dataset *ds = NULL;
    hallu_error err;
    hallu_status st = hallu_dataset_open(&ds, spec, HALLU_SPLIT_TRAIN, &err);
    CHECK_MSG(st == HALLU_ERR_FORMAT && tdu_contains(err.msg, "bad.hpk") &&
                  tdu_contains(err.msg, what),
              "damage at %zu (cut %zu): status %d, '%s' (want '%s')", offset, cut, (int)st,
              st ? err.msg : "", what);
    hallu_dataset_close(ds);
}

static void test_damage(const char *root, const char *path)
{
    expect_damage(root, path, 0, 0, "not a packed file");
    expect_damage(root, path, 20, 0, "header checksum");
    expect_damage(root, path, 130, 0, "class names + labels");      /* class names */
    expect_damage(root, path, 1000, 0, "pixel checksum");
    size_t n;
    uint8_t *b = tdu_read("", path, &n);
    free(b);
    expect_damage(root, path, n - 2, 0, "class names + labels");    /* a label */
    expect_damage(root, path, 0, 3, "truncated");
    expect_damage(root, path, 0, n - 60, "not a packed file");
    /* Skipping the pixel checksum is possible on request only. */
    char bad[700];
    snprintf(bad, sizeof bad, "%s/bad.hpk", root);
    b = tdu_read("", path, &n);
    b[1000] ^= 1;
    tdu_write("", bad, b, n);
    free(b);
    hallu_dataset *ds = NULL;
    hallu_error err;
    CHECK(hallu_packed_open(&ds, bad, 1, &err) == HALLU_ERR_FORMAT);
    CHECK_OK(hallu_packed_open(&ds, bad, 0, &err), &err);
    hallu_dataset_close(ds);
}

int main(void)
{
    char *root = tdu_mkdtemp("data_packed");
    char path[700];
    test_synthetic();
    test_roundtrip(root, path, sizeof path);
    test_resize(root);
    test_damage(root, path);
    tdu_rm_rf(root);
    free(root);
    return check_summary();
}
