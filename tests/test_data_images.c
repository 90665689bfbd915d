/* JPEG/PNG decoding and the file-based readers (imagefolder, tinyimagenet):
 * PNGs in every colour type (RGB, grey, palette, 16-bit, alpha) decode to the
 * exact RGB8 written; JPEGs (RGB, grey, CMYK) decode close to the source;
 * folders list classes and files in sorted order; corrupt files, empty class
 * folders and bad annotation lines fail with messages naming the file. */
#include "check.h"
#include "data/dataset_internal.h"
#include "test_data_util.h"

#define W 12
#define H 9

static hallu_dataset *open_ok(const char *spec, hallu_split split)
{
    hallu_dataset *ds = NULL;
    hallu_error err;
    CHECK_OK(hallu_dataset_open(&ds, spec, split, &err), &err);
    return ds;
}

static hallu_status get_image(const hallu_dataset *ds, int64_t i, uint8_t *buf, size_t cap,
                              hallu_image *img, int32_t *label, hallu_error *err)
{
    *img = (hallu_image){ buf, 0, 0, cap };
    return hallu_dataset_get(ds, i, img, label, err);
}

/* ---- PNG colour types ------------------------------------------------- */

static void write_pngs(const char *dir, uint8_t *rgb)
{
    tdu_pattern(rgb, W, H, 1);
    tdu_write_png(dir, "a_rgb.png", W, H, PNG_COLOR_TYPE_RGB, 8, rgb, W * 3, NULL, 0);
    uint8_t gray[W * H], pal_idx[W * H], rgba[W * H * 4], rgb16[W * H * 6];
    for (int i = 0; i < W * H; i++) {
        gray[i] = (uint8_t)(i * 2);
        pal_idx[i] = (uint8_t)(i % 4);
        memcpy(rgba + 4 * i, rgb + 3 * i, 3);
        rgba[4 * i + 3] = (uint8_t)(i & 1 ? 0 : 255);
        for (int c = 0; c < 3; c++) {
            rgb16[6 * i + 2 * c] = rgb[3 * i + c];            /* big-endian high byte */
            rgb16[6 * i + 2 * c + 1] = (uint8_t)(0xff - c);   /* low byte is dropped */
        }
    }
    tdu_write_png(dir, "b_gray.png", W, H, PNG_COLOR_TYPE_GRAY, 8, gray, W, NULL, 0);
    png_color pal[4] = { { 255, 0, 0 }, { 0, 255, 0 }, { 0, 0, 255 }, { 10, 20, 30 } };
    tdu_write_png(dir, "c_palette.png", W, H, PNG_COLOR_TYPE_PALETTE, 8, pal_idx, W, pal, 4);
    tdu_write_png(dir, "d_rgba.png", W, H, PNG_COLOR_TYPE_RGB_ALPHA, 8, rgba, W * 4, NULL, 0);
    tdu_write_png(dir, "e_rgb16.PNG", W, H, PNG_COLOR_TYPE_RGB, 16, rgb16, W * 6, NULL, 0);
}

static void check_pngs(const hallu_dataset *ds, const uint8_t *rgb)
{
    static const png_color pal[4] = { { 255, 0, 0 }, { 0, 255, 0 }, { 0, 0, 255 }, { 10, 20, 30 } };
    uint8_t out[W * H * 3];
    hallu_image img;
    hallu_error err;
    int32_t label;
    CHECK_OK(get_image(ds, 0, out, sizeof out, &img, &label, &err), &err);
    CHECK(img.h == H && img.w == W && memcmp(out, rgb, sizeof out) == 0);
    CHECK_OK(get_image(ds, 1, out, sizeof out, &img, &label, &err), &err);
    int gray_ok = 1, pal_ok = 1;
    for (int i = 0; i < W * H; i++)
        gray_ok &= out[3 * i] == i * 2 && out[3 * i + 1] == i * 2 && out[3 * i + 2] == i * 2;
    CHECK_MSG(gray_ok, "grey PNG not expanded to r = g = b");
    CHECK_OK(get_image(ds, 2, out, sizeof out, &img, &label, &err), &err);
    for (int i = 0; i < W * H; i++) {
        const png_color *c = &pal[i % 4];
        pal_ok &= out[3 * i] == c->red && out[3 * i + 1] == c->green && out[3 * i + 2] == c->blue;
    }
    CHECK_MSG(pal_ok, "palette PNG colours wrong");
    CHECK_OK(get_image(ds, 3, out, sizeof out, &img, &label, &err), &err);
    CHECK_MSG(memcmp(out, rgb, sizeof out) == 0, "RGBA PNG: alpha must be dropped, RGB kept");
    CHECK_OK(get_image(ds, 4, out, sizeof out, &img, &label, &err), &err);
    CHECK_MSG(memcmp(out, rgb, sizeof out) == 0, "16-bit PNG must keep the high byte");
}

/* ---- JPEG colour spaces -------------------------------------------------- */

static void write_jpegs(const char *dir, const uint8_t *rgb)
{
    uint8_t gray[W * H], cmyk[W * H * 4];
    for (int i = 0; i < W * H; i++) {
        gray[i] = (uint8_t)(60 + i);
        /* Adobe-style inverted CMYK: C' = R with K' = 255 decodes back to R. */
        memcpy(cmyk + 4 * i, rgb + 3 * i, 3);
        cmyk[4 * i + 3] = 255;
    }
    tdu_write_jpeg(dir, "a_rgb.jpg", W, H, 3, JCS_RGB, rgb, 100);
    tdu_write_jpeg(dir, "b_gray.JPEG", W, H, 1, JCS_GRAYSCALE, gray, 100);
    tdu_write_jpeg(dir, "c_cmyk.jpeg", W, H, 4, JCS_CMYK, cmyk, 100);
}

static void check_jpegs(const hallu_dataset *ds, int64_t first, const uint8_t *rgb)
{
    uint8_t out[W * H * 3];
    hallu_image img;
    hallu_error err;
    int32_t label;
    CHECK_OK(get_image(ds, first, out, sizeof out, &img, &label, &err), &err);
    CHECK_MSG(tdu_mean_abs_diff(out, rgb, sizeof out) < 4, "RGB JPEG off by %.2f",
              tdu_mean_abs_diff(out, rgb, sizeof out));
    CHECK_OK(get_image(ds, first + 1, out, sizeof out, &img, &label, &err), &err);
    int gray_ok = 1;
    for (int i = 0; i < W * H; i++)
        gray_ok &= out[3 * i] == out[3 * i + 1] && out[3 * i] == out[3 * i + 2] &&
                   abs(out[3 * i] - (60 + i)) <= 3;
    CHECK_MSG(gray_ok, "grey JPEG not expanded to r = g = b close to the source");
    CHECK_OK(get_image(ds, first + 2, out, sizeof out, &img, &label, &err), &err);
    CHECK_MSG(tdu_mean_abs_diff(out, rgb, sizeof out) < 6, "CMYK JPEG off by %.2f",
              tdu_mean_abs_diff(out, rgb, sizeof out));
}

/* ---- imagefolder ---------------------------------------------------------- */

static void test_imagefolder(const char *root)
{
    char dir[512], spec[600];
    snprintf(dir, sizeof dir, "%s/folder", root);
    mkdir(dir, 0755);
    tdu_mkdir(dir, "train");
    tdu_mkdir(dir, "train/dog");     /* sorts after "cat": label 1 */
    tdu_mkdir(dir, "train/cat");
    tdu_mkdir(dir, "test");
    tdu_mkdir(dir, "test/dog");
    uint8_t rgb[W * H * 3];
    char cls[600];
    snprintf(cls, sizeof cls, "%s/train/cat", dir);
    write_pngs(cls, rgb);
    snprintf(cls, sizeof cls, "%s/train/dog", dir);
    write_jpegs(cls, rgb);
    tdu_write_text(cls, "notes.txt", "not an image, ignored");
    uint8_t big[20 * 30 * 3];
    tdu_pattern(big, 30, 20, 3);
    snprintf(cls, sizeof cls, "%s/test/dog", dir);
    tdu_write_png(cls, "big.png", 30, 20, PNG_COLOR_TYPE_RGB, 8, big, 30 * 3, NULL, 0);

    snprintf(spec, sizeof spec, "imagefolder:%s", dir);
    hallu_dataset *ds = open_ok(spec, HALLU_SPLIT_TRAIN);
    if (ds) {
        CHECK(hallu_dataset_size(ds) == 8 && hallu_dataset_num_classes(ds) == 2);
        CHECK(strcmp(hallu_dataset_class_name(ds, 0), "cat") == 0);
        CHECK(hallu_dataset_image_height(ds) == 0);    /* unknown before probing */
        int32_t l0 = -1, l7 = -1;
        hallu_error err;
        CHECK_OK(hallu_dataset_get_label(ds, 0, &l0, &err), &err);
        CHECK_OK(hallu_dataset_get_label(ds, 7, &l7, &err), &err);
        CHECK(l0 == 0 && l7 == 1);
        char where[512];
        hallu_dataset_describe(ds, 4, where, sizeof where);
        CHECK_MSG(tdu_contains(where, "train/cat/e_rgb16.PNG"), "describe: %s", where);
        check_pngs(ds, rgb);
        check_jpegs(ds, 5, rgb);
        CHECK_OK(hallu_dataset_probe_sizes(ds, &err), &err);
        CHECK(hallu_dataset_image_height(ds) == H && hallu_dataset_image_width(ds) == W);
        hallu_dataset_close(ds);
    }
    ds = open_ok(spec, HALLU_SPLIT_TEST);
    if (ds) {
        uint8_t small[16];
        hallu_image img;
        hallu_error err;
        int32_t label;
        CHECK(hallu_dataset_size(ds) == 1 && hallu_dataset_num_classes(ds) == 2);
        CHECK(get_image(ds, 0, small, sizeof small, &img, &label, &err) == HALLU_ERR_INVALID_ARG);
        CHECK(img.h == 20 && img.w == 30);
        uint8_t out[sizeof big];
        CHECK_OK(get_image(ds, 0, out, sizeof out, &img, &label, &err), &err);
        CHECK(label == 1 && memcmp(out, big, sizeof big) == 0);
        hallu_dataset_close(ds);
    }
}

static void expect_get_error(const char *spec, int64_t i, const char *a, const char *b)
{
    hallu_dataset *ds = open_ok(spec, HALLU_SPLIT_TRAIN);
    if (!ds)
        return;
    uint8_t buf[64 * 64 * 3];
    hallu_image img;
    hallu_error err;
    int32_t label;
    hallu_status st = get_image(ds, i, buf, sizeof buf, &img, &label, &err);
    CHECK_MSG(st == HALLU_ERR_FORMAT && tdu_contains(err.msg, a) && tdu_contains(err.msg, b),
              "get %lld: status %d, '%s' (want '%s', '%s')", (long long)i, (int)st, err.msg, a, b);
    hallu_dataset_close(ds);
}

static void expect_open_error(const char *spec, hallu_split split, hallu_status code,
                              const char *a, const char *b)
{
    hallu_dataset *ds = NULL;
    hallu_error err;
    hallu_status st = hallu_dataset_open(&ds, spec, split, &err);
    CHECK_MSG(st == code && !ds && tdu_contains(err.msg, a) && (!b || tdu_contains(err.msg, b)),
              "%s: status %d, '%s' (want %d, '%s')", spec, (int)st, st ? err.msg : "", (int)code, a);
    hallu_dataset_close(ds);
}

static void test_corrupt_images(const char *root)
{
    char dir[512], spec[600], cls[600];
    snprintf(dir, sizeof dir, "%s/corrupt", root);
    mkdir(dir, 0755);
    tdu_mkdir(dir, "x");
    snprintf(cls, sizeof cls, "%s/x", dir);
    uint8_t rgb[W * H * 3];
    write_jpegs(cls, rgb);   /* a_rgb.jpg b_gray.JPEG c_cmyk.jpeg */
    tdu_pattern(rgb, W, H, 2);
    tdu_write_png(cls, "d.png", W, H, PNG_COLOR_TYPE_RGB, 8, rgb, W * 3, NULL, 0);
    size_t n;
    uint8_t *b = tdu_read(cls, "a_rgb.jpg", &n);
    tdu_write(cls, "a_rgb.jpg", b, n / 2);         /* truncated JPEG */
    free(b);
    b = tdu_read(cls, "d.png", &n);
    tdu_write(cls, "d.png", b, n - 20);            /* truncated PNG */
    b[40] ^= 0x55;                                 /* flipped bits in a chunk */
    tdu_write(cls, "e.png", b, n);
    free(b);
    tdu_write_text(cls, "f.jpg", "this is no image at all");
    tdu_write(cls, "g.png", "", 0);
    snprintf(spec, sizeof spec, "imagefolder:%s", dir);
    expect_get_error(spec, 0, "a_rgb.jpg", "corrupt JPEG");
    expect_get_error(spec, 3, "d.png", "corrupt PNG");
    expect_get_error(spec, 4, "e.png", "corrupt PNG");
    expect_get_error(spec, 5, "f.jpg", "not a JPEG or PNG");
    expect_get_error(spec, 6, "g.png", "too short");
    /* Empty class folder, missing folder, split that does not exist. */
    tdu_mkdir(dir, "y_empty");
    expect_open_error(spec, HALLU_SPLIT_TRAIN, HALLU_ERR_FORMAT, "y_empty", "holds no");
    expect_open_error(spec, HALLU_SPLIT_TEST, HALLU_ERR_UNSUPPORTED, "no 'test' split", NULL);
    snprintf(spec, sizeof spec, "imagefolder:%s/nope", dir);
    expect_open_error(spec, HALLU_SPLIT_TRAIN, HALLU_ERR_IO, "nope", "does not exist");
}

/* ---- tinyimagenet ---------------------------------------------------------- */

static void test_tinyimagenet(const char *root)
{
    char dir[512], spec[600], sub[700];
    snprintf(dir, sizeof dir, "%s/tiny", root);
    mkdir(dir, 0755);
    tdu_write_text(dir, "wnids.txt", "n02\nn01\n");     /* sorted: n01 = 0, n02 = 1 */
    tdu_mkdir(dir, "train");
    tdu_mkdir(dir, "val");
    tdu_mkdir(dir, "val/images");
    uint8_t rgb[W * H * 3];
    tdu_pattern(rgb, W, H, 5);
    const char *wn[2] = { "n01", "n02" };
    for (int c = 0; c < 2; c++) {
        snprintf(sub, sizeof sub, "train/%s", wn[c]);
        tdu_mkdir(dir, sub);
        snprintf(sub, sizeof sub, "%s/train/%s/images", dir, wn[c]);
        mkdir(sub, 0755);
        tdu_write_jpeg(sub, "i_0.JPEG", W, H, 3, JCS_RGB, rgb, 90);
        tdu_write_jpeg(sub, "i_1.JPEG", W, H, 3, JCS_RGB, rgb, 90);
    }
    snprintf(sub, sizeof sub, "%s/val/images", dir);
    tdu_write_jpeg(sub, "val_0.JPEG", W, H, 3, JCS_RGB, rgb, 90);
    tdu_write_jpeg(sub, "val_1.JPEG", W, H, 3, JCS_RGB, rgb, 90);
    tdu_write_text(dir, "val/val_annotations.txt",
                   "val_0.JPEG\tn02\t0\t0\t5\t5\nval_1.JPEG\tn01\t1\t1\t4\t4\r\n\n");
    snprintf(spec, sizeof spec, "tinyimagenet:%s", dir);
    hallu_dataset *ds = open_ok(spec, HALLU_SPLIT_TRAIN);
    if (ds) {
        int32_t label;
        hallu_error err;
        CHECK(hallu_dataset_size(ds) == 4 && hallu_dataset_num_classes(ds) == 2);
        CHECK(strcmp(hallu_dataset_class_name(ds, 0), "n01") == 0);
        CHECK_OK(hallu_dataset_get_label(ds, 3, &label, &err), &err);
        CHECK(label == 1);
        hallu_dataset_close(ds);
    }
    ds = open_ok(spec, HALLU_SPLIT_TEST);
    if (ds) {
        uint8_t out[W * H * 3];
        hallu_image img;
        hallu_error err;
        int32_t l0, l1;
        CHECK(hallu_dataset_size(ds) == 2);
        CHECK_OK(get_image(ds, 0, out, sizeof out, &img, &l0, &err), &err);
        CHECK_OK(get_image(ds, 1, out, sizeof out, &img, &l1, &err), &err);
        CHECK_MSG(l0 == 1 && l1 == 0, "val labels %d %d, expected 1 0 (from annotations)", l0, l1);
        char where[512];
        hallu_dataset_describe(ds, 1, where, sizeof where);
        CHECK_MSG(tdu_contains(where, "val/images/val_1.JPEG"), "describe: %s", where);
        hallu_dataset_close(ds);
    }
    tdu_write_text(dir, "val/val_annotations.txt", "val_0.JPEG\tn02\t0\nval_1.JPEG\tn99\t0\n");
    expect_open_error(spec, HALLU_SPLIT_TEST, HALLU_ERR_FORMAT, "val_annotations.txt line 2",
                      "wnid 'n99'");
    tdu_write_text(dir, "val/val_annotations.txt", "../../etc/passwd\tn02\n");
    expect_open_error(spec, HALLU_SPLIT_TEST, HALLU_ERR_FORMAT, "line 1", "not a plain file name");
    tdu_write_text(dir, "val/val_annotations.txt", "no tabs here\n");
    expect_open_error(spec, HALLU_SPLIT_TEST, HALLU_ERR_FORMAT, "line 1", "FILE<tab>WNID");
    tdu_write_text(dir, "wnids.txt", "n01\nn02\nn01\n");
    expect_open_error(spec, HALLU_SPLIT_TRAIN, HALLU_ERR_FORMAT, "wnids.txt", "twice");
    tdu_write_text(dir, "wnids.txt", "n01\nn02\nn03\n");
    expect_open_error(spec, HALLU_SPLIT_TRAIN, HALLU_ERR_IO, "train/n03/images", "cannot open");
    expect_open_error(spec, HALLU_SPLIT_UNLABELED, HALLU_ERR_UNSUPPORTED, "unlabeled", NULL);
}

/* Decoding from several threads at once must give the serial result. */
static void test_threads(const char *root)
{
    char spec[600];
    snprintf(spec, sizeof spec, "imagefolder:%s/folder/train", root);
    hallu_dataset *ds = open_ok(spec, HALLU_SPLIT_TRAIN);
    if (!ds)
        return;
    enum { N = 8, REPS = 6, SZ = W * H * 3 };
    static uint8_t serial[N][SZ], parallel[REPS][N][SZ];
    hallu_error err;
    for (int i = 0; i < N; i++) {
        hallu_image img = { serial[i], 0, 0, SZ };
        CHECK_OK(hallu_dataset_get(ds, i, &img, NULL, &err), &err);
    }
    int failures = 0;
#pragma omp parallel for reduction(+ : failures)
    for (int t = 0; t < REPS * N; t++) {
        hallu_error e;
        hallu_image img = { parallel[t / N][t % N], 0, 0, SZ };
        failures += hallu_dataset_get(ds, t % N, &img, NULL, &e) != HALLU_OK;
    }
    int same = failures == 0;
    for (int r = 0; r < REPS; r++)
        same &= memcmp(parallel[r], serial, sizeof serial) == 0;
    CHECK_MSG(same, "parallel gets differ from serial ones (%d failures)", failures);
    hallu_dataset_close(ds);
}

/* Decoder entry points on bytes straight from memory. */
static void test_decode_memory(void)
{
    static const uint8_t jpeg_head[] = { 0xff, 0xd8, 0xff, 0xe0, 0, 16, 'J', 'F', 'I', 'F' };
    uint8_t out[64];
    hallu_image img = { out, 0, 0, sizeof out };
    hallu_error err;
    CHECK(hallu_image_decode(jpeg_head, sizeof jpeg_head, "mem.jpg", &img, &err) == HALLU_ERR_FORMAT &&
          tdu_contains(err.msg, "mem.jpg"));
    int h, w;
    CHECK(hallu_image_probe((const uint8_t *)"\x89PNG\r\n\x1a\n", 8, "mem.png", &h, &w, &err) ==
              HALLU_ERR_FORMAT &&
          tdu_contains(err.msg, "corrupt PNG"));

    /* A header claiming 20000x300 pixels is refused before any buffer is sized. */
    static const uint8_t huge_jpeg[] = {
        0xff, 0xd8,                                                       /* SOI */
        0xff, 0xc0, 0, 11, 8, 0x4e, 0x20, 0x01, 0x2c, 1, 1, 0x11, 0,      /* SOF0 20000x300, 1 comp */
        0xff, 0xda, 0, 8, 1, 1, 0x00, 0, 63, 0,                           /* SOS */
        0x00, 0xff, 0xd9,
    };
    CHECK(hallu_image_probe(huge_jpeg, sizeof huge_jpeg, "huge.jpg", &h, &w, &err) == HALLU_ERR_FORMAT);
    CHECK_MSG(tdu_contains(err.msg, "huge.jpg") && tdu_contains(err.msg, "20000x300"), "got: %s", err.msg);
}

int main(void)
{
    char *root = tdu_mkdtemp("data_images");
    test_imagefolder(root);
    test_corrupt_images(root);
    test_tinyimagenet(root);
    test_threads(root);
    test_decode_memory();
    tdu_rm_rf(root);
    free(root);
    return check_summary();
}
