/* Unit tests for augmentations and view pipelines: determinism, parameter
 * ranges, shapes, identity cases and hand-computed values. Parity with
 * torchvision itself is tests/parity_augment.c. */
#include "check.h"
#include "hallu/augment.h"

#include <stdlib.h>
#include <string.h>

static hallu_image make_image(int h, int w, uint32_t salt)
{
    hallu_image img = {malloc((size_t)h * w * 3), h, w, (size_t)h * w * 3};
    for (int i = 0; i < h * w * 3; i++)
        img.data[i] = (uint8_t)((i * 37u + salt * 101u + (uint32_t)(i / 7) * 13u) & 255u);
    return img;
}

static hallu_image copy_image(const hallu_image *src)
{
    hallu_image img = {malloc(src->capacity), src->h, src->w, src->capacity};
    memcpy(img.data, src->data, src->capacity);
    return img;
}

static int max_abs_diff(const hallu_image *a, const hallu_image *b)
{
    int m = 0;
    for (int i = 0; i < a->h * a->w * 3; i++) {
        int d = abs((int)a->data[i] - (int)b->data[i]);
        m = d > m ? d : m;
    }
    return m;
}

static void test_rng_streams(void)
{
    hallu_rng a, b, c, d;
    hallu_aug_rng_init(&a, 7, 3, 11, 0);
    hallu_aug_rng_init(&b, 7, 3, 11, 0);
    hallu_aug_rng_init(&c, 7, 3, 11, 1);
    hallu_aug_rng_init(&d, 7, 4, 11, 0);
    uint32_t va = hallu_rng_u32(&a), vb = hallu_rng_u32(&b), vc = hallu_rng_u32(&c),
             vd = hallu_rng_u32(&d);
    CHECK(va == vb);
    CHECK(va != vc);
    CHECK(va != vd);
}

static void test_rrc_sampling(void)
{
    float scale[2] = {0.2f, 1.0f}, ratio[2] = {3.0f / 4.0f, 4.0f / 3.0f};
    hallu_rng rng;
    hallu_rng_init(&rng, 1, 2);
    int bad = 0, seen_small = 0;
    for (int t = 0; t < 2000; t++) {
        hallu_crop_box b;
        hallu_rrc_sample(&rng, 32, 48, scale, ratio, &b);
        if (b.top < 0 || b.left < 0 || b.top + b.height > 32 || b.left + b.width > 48 ||
            b.height <= 0 || b.width <= 0)
            bad++;
        double area = (double)b.height * b.width / (32.0 * 48.0);
        /* Rounding of w and h moves the area a little outside [0.2, 1]. */
        if (area < 0.15 || area > 1.0)
            bad++;
        double ar = (double)b.width / b.height;
        if (ar < 0.6 || ar > 1.6)
            bad++;
        seen_small += area < 0.4;
    }
    CHECK(bad == 0);
    CHECK(seen_small > 100);
    /* Impossible scale: every try fails and torchvision's centre fallback decides. */
    float big[2] = {2.0f, 3.0f};
    hallu_crop_box b;
    hallu_rrc_sample(&rng, 32, 32, big, ratio, &b);
    CHECK(b.top == 0 && b.left == 0 && b.height == 32 && b.width == 32);
    hallu_rrc_sample(&rng, 32, 100, big, ratio, &b); /* too wide: w = round(32 * 4/3) = 43 */
    CHECK(b.height == 32 && b.width == 43 && b.top == 0 && b.left == 28);
    hallu_rrc_sample(&rng, 100, 32, big, ratio, &b); /* too tall: h = round(32 / (3/4)) = 43 */
    CHECK(b.width == 32 && b.height == 43 && b.left == 0 && b.top == 28);
}

static void test_ccrop_sampling(void)
{
    float scale[2] = {0.2f, 1.0f}, ratio[2] = {3.0f / 4.0f, 4.0f / 3.0f};
    hallu_rng rng;
    hallu_rng_init(&rng, 5, 9);
    int bad = 0, near_edge = 0;
    for (int t = 0; t < 2000; t++) {
        hallu_crop_box b;
        hallu_ccrop_sample(&rng, 64, 64, scale, ratio, 0.25f, 0.75f, 0.1f, &b);
        if (b.top < 0 || b.left < 0 || b.top + b.height > 64 || b.left + b.width > 64)
            bad++;
        /* The start lies between the clamped box ends c0 and c1 (header formula). */
        int c0 = 16 - b.height / 2, c1 = 48 - b.height / 2;
        c0 = c0 < 0 ? 0 : c0 > 64 - b.height ? 64 - b.height : c0;
        c1 = c1 < 0 ? 0 : c1 > 64 - b.height ? 64 - b.height : c1;
        if (b.top < c0 || b.top > c1)
            bad++;
        /* Beta(0.1, 0.1) is U-shaped: most starts sit at an end of [c0, c1]. */
        near_edge += c1 - c0 >= 8 && (b.top - c0 <= 1 || c1 - b.top <= 1);
    }
    CHECK(bad == 0);
    CHECK_MSG(near_edge > 600, "near_edge = %d", near_edge);
}

static void test_jitter_sampling(void)
{
    float s[4] = {0.4f, 0.4f, 0.4f, 0.1f};
    hallu_rng rng;
    hallu_rng_init(&rng, 3, 3);
    int bad = 0, first_seen[4] = {0, 0, 0, 0};
    for (int t = 0; t < 500; t++) {
        hallu_jitter_params p;
        hallu_jitter_sample(&rng, s, &p);
        int mask = 0;
        for (int k = 0; k < 4; k++)
            mask |= 1 << p.order[k];
        bad += mask != 15;
        first_seen[p.order[0]]++;
        for (int k = 0; k < 3; k++)
            bad += !p.enabled[k] || p.factor[k] < 0.6f || p.factor[k] > 1.4f;
        bad += !p.enabled[3] || p.factor[3] < -0.1f || p.factor[3] > 0.1f;
    }
    CHECK(bad == 0);
    for (int k = 0; k < 4; k++)
        CHECK(first_seen[k] > 60);
    float off[4] = {0.4f, 0.0f, 0.4f, 0.0f};
    hallu_jitter_params p;
    hallu_jitter_sample(&rng, off, &p);
    CHECK(p.enabled[0] && !p.enabled[1] && p.enabled[2] && !p.enabled[3]);
}

static void test_resize(void)
{
    hallu_error err;
    hallu_image src = make_image(32, 32, 1);
    hallu_image dst = make_image(32, 32, 2);
    hallu_crop_box all = {0, 0, 32, 32};
    CHECK_OK(hallu_aug_resized_crop(&dst, &src, &all, &err), &err);
    CHECK(max_abs_diff(&src, &dst) == 0);
    /* Exact 2x downscale samples at 2x + 0.5: the mean of a pair, rounded half to even. */
    uint8_t row[4 * 3] = {1, 2, 10, 2, 3, 11, 5, 7, 20, 6, 9, 22};
    hallu_image s1 = {row, 1, 4, sizeof row};
    uint8_t outb[2 * 3];
    hallu_image d1 = {outb, 1, 2, sizeof outb};
    CHECK_OK(hallu_aug_resize(&d1, &s1, &err), &err);
    CHECK(outb[0] == 2 && outb[1] == 2 && outb[2] == 10); /* 1.5->2, 2.5->2, 10.5->10 */
    CHECK(outb[3] == 6 && outb[4] == 8 && outb[5] == 21); /* 5.5->6, 8, 21 */
    /* Box outside the image and a too-small output buffer are errors. */
    hallu_crop_box out_of = {20, 0, 16, 16};
    dst.h = dst.w = 16;
    CHECK(hallu_aug_resized_crop(&dst, &src, &out_of, &err) == HALLU_ERR_INVALID_ARG);
    dst.h = dst.w = 64;
    CHECK(hallu_aug_resized_crop(&dst, &src, &all, &err) == HALLU_ERR_INVALID_ARG);
    int h, w;
    hallu_aug_resize_shorter_dims(40, 60, 32, &h, &w);
    CHECK(h == 32 && w == 48);
    hallu_aug_resize_shorter_dims(60, 41, 32, &h, &w);
    CHECK(w == 32 && h == 46);
    dst.h = 10;
    dst.w = 12;
    CHECK_OK(hallu_aug_center_crop(&dst, &src, &err), &err);
    CHECK(dst.data[0] == src.data[(11 * 32 + 10) * 3]); /* top = round(11), left = round(10) */
    free(src.data);
    free(dst.data);
}

static void test_pixel_ops(void)
{
    hallu_image a = make_image(9, 7, 3), b = copy_image(&a);
    hallu_aug_hflip(&b);
    CHECK(b.data[0] == a.data[6 * 3] && b.data[2] == a.data[6 * 3 + 2]);
    hallu_aug_hflip(&b);
    CHECK(max_abs_diff(&a, &b) == 0);
    hallu_aug_brightness(&b, 1.0f);
    hallu_aug_contrast(&b, 1.0f);
    hallu_aug_saturation(&b, 1.0f);
    CHECK(max_abs_diff(&a, &b) == 0);
    hallu_aug_hue(&b, 0.0f); /* HSV round trip truncates: at most one level off */
    CHECK(max_abs_diff(&a, &b) <= 1);

    uint8_t px[6] = {255, 0, 0, 200, 100, 128};
    hallu_image p = {px, 1, 2, sizeof px};
    hallu_aug_grayscale(&p);
    /* trunc(0.2989 * 255) = 76; trunc(59.78 + 58.7 + 14.592) = 133 */
    CHECK(px[0] == 76 && px[1] == 76 && px[2] == 76);
    CHECK(px[3] == 133 && px[4] == 133 && px[5] == 133);

    uint8_t q[6] = {100, 200, 128, 127, 0, 255};
    hallu_image qi = {q, 1, 2, sizeof q};
    hallu_aug_solarize(&qi, 128.0f);
    CHECK(q[0] == 100 && q[1] == 55 && q[2] == 127 && q[3] == 127 && q[4] == 0 && q[5] == 0);

    uint8_t r[6] = {200, 10, 100, 0, 255, 3};
    hallu_image ri = {r, 1, 2, sizeof r};
    hallu_aug_brightness(&ri, 1.5f);
    CHECK(r[0] == 255 && r[1] == 15 && r[2] == 150 && r[4] == 255 && r[5] == 4);
    hallu_aug_brightness(&ri, 0.0f);
    CHECK(r[0] == 0 && r[4] == 0);

    hallu_image c = copy_image(&a);
    hallu_aug_contrast(&c, 0.0f); /* every value becomes the (float) mean grey, truncated */
    int flat = 1;
    for (int i = 1; i < c.h * c.w * 3; i++)
        flat &= c.data[i] == c.data[0];
    CHECK(flat);
    hallu_image s = copy_image(&a), g = copy_image(&a);
    hallu_aug_saturation(&s, 0.0f);
    hallu_aug_grayscale(&g);
    CHECK(max_abs_diff(&s, &g) == 0);
    free(a.data);
    free(b.data);
    free(c.data);
    free(s.data);
    free(g.data);
}

static void test_hue(void)
{
    /* Pure red shifted by 1/3 turns green; grey pixels have no hue to move. */
    uint8_t px[6] = {255, 0, 0, 90, 90, 90};
    hallu_image p = {px, 1, 2, sizeof px};
    hallu_aug_hue(&p, 1.0f / 3.0f);
    CHECK_MSG(px[0] <= 1 && px[1] >= 254 && px[2] <= 1, "%d %d %d", px[0], px[1], px[2]);
    CHECK(abs(px[3] - 90) <= 1 && px[3] == px[4] && px[4] == px[5]);
    uint8_t y[3] = {255, 255, 0};
    hallu_image yi = {y, 1, 1, sizeof y};
    hallu_aug_hue(&yi, -0.5f); /* yellow -> blue */
    CHECK_MSG(y[0] <= 1 && y[1] <= 1 && y[2] >= 254, "%d %d %d", y[0], y[1], y[2]);
}

static void test_blur(void)
{
    hallu_error err;
    hallu_image a = make_image(12, 10, 4), b = copy_image(&a);
    float *scratch = malloc(sizeof(float) * 12 * 10 * 3);
    CHECK_OK(hallu_aug_gaussian_blur(&b, 1, 1.0f, scratch, &err), &err);
    CHECK(max_abs_diff(&a, &b) == 0);
    memset(b.data, 77, b.capacity);
    CHECK_OK(hallu_aug_gaussian_blur(&b, 5, 1.3f, scratch, &err), &err);
    int all77 = 1;
    for (size_t i = 0; i < b.capacity; i++)
        all77 &= b.data[i] == 77;
    CHECK(all77);
    /* A blur never leaves the input's range, and it lowers the spread. */
    hallu_image c = copy_image(&a);
    CHECK_OK(hallu_aug_gaussian_blur(&c, 7, 2.0f, scratch, &err), &err);
    long var_a = 0, var_c = 0;
    for (size_t i = 3; i < a.capacity; i++) {
        var_a += labs((long)a.data[i] - a.data[i - 3]);
        var_c += labs((long)c.data[i] - c.data[i - 3]);
    }
    CHECK(var_c < var_a / 2);
    CHECK(hallu_aug_gaussian_blur(&c, 4, 1.0f, scratch, &err) == HALLU_ERR_INVALID_ARG);
    CHECK(hallu_aug_gaussian_blur(&c, 3, 0.0f, scratch, &err) == HALLU_ERR_INVALID_ARG);
    free(scratch);
    free(a.data);
    free(b.data);
    free(c.data);
}

static void test_normalize(void)
{
    uint8_t px[3] = {0, 255, 128};
    hallu_image p = {px, 1, 1, 3};
    float out[3];
    hallu_aug_normalize(out, &p, HALLU_CIFAR_MEAN, HALLU_CIFAR_STD);
    CHECK_NEAR(out[0], (0.0 - 0.4914) / 0.2023, 1e-5);
    CHECK_NEAR(out[1], (1.0 - 0.4822) / 0.1994, 1e-5);
    CHECK_NEAR(out[2], (128.0 / 255.0 - 0.4465) / 0.2010, 1e-5);
}

static void test_pipelines(void)
{
    hallu_error err;
    hallu_ssl_views_config cfg;
    hallu_ssl_views_default(&cfg, 32);
    hallu_ssl_views_set_asymmetric(&cfg);
    hallu_view_pipeline views[2];
    CHECK_OK(hallu_ssl_views_build(&cfg, views, &err), &err);
    CHECK(views[0].ops[0].kind == HALLU_AUG_CCROP && views[1].ops[0].kind == HALLU_AUG_RRC);
    CHECK(views[1].ops[views[1].n_ops - 1].kind == HALLU_AUG_SOLARIZE);
    int h, w;
    CHECK_OK(hallu_view_pipeline_output_dims(&views[0], 0, 0, &h, &w, &err), &err);
    CHECK(h == 32 && w == 32);

    hallu_image img = make_image(40, 36, 5);
    hallu_aug_workspace ws;
    hallu_aug_workspace_init(&ws);
    float *o1 = malloc(sizeof(float) * 32 * 32 * 3), *o2 = malloc(sizeof(float) * 32 * 32 * 3);
    hallu_rng r1, r2;
    int differ_index = 0;
    for (uint32_t i = 0; i < 4; i++) {
        for (int v = 0; v < 2; v++) {
            hallu_aug_rng_init(&r1, 42, 0, i, (uint32_t)v);
            hallu_aug_rng_init(&r2, 42, 0, i, (uint32_t)v);
            CHECK_OK(hallu_view_pipeline_apply(&views[v], &img, &r1, o1, 32, 32, &ws, &err), &err);
            CHECK_OK(hallu_view_pipeline_apply(&views[v], &img, &r2, o2, 32, 32, &ws, &err), &err);
            CHECK(memcmp(o1, o2, sizeof(float) * 32 * 32 * 3) == 0);
            hallu_aug_rng_init(&r2, 42, 0, i + 100, (uint32_t)v);
            CHECK_OK(hallu_view_pipeline_apply(&views[v], &img, &r2, o2, 32, 32, &ws, &err), &err);
            differ_index += memcmp(o1, o2, sizeof(float) * 32 * 32 * 3) != 0;
        }
    }
    CHECK(differ_index >= 7);
    CHECK(hallu_view_pipeline_apply(&views[0], &img, &r1, o1, 16, 16, &ws, &err) ==
          HALLU_ERR_INVALID_ARG);

    /* Evaluation view: resize shorter side 32 (40x36 -> 35x32), centre crop 32. */
    hallu_view_pipeline test;
    CHECK_OK(hallu_test_pipeline(&test, 32, 32, HALLU_CIFAR_MEAN, HALLU_CIFAR_STD, &err), &err);
    CHECK_OK(hallu_view_pipeline_output_dims(&test, 40, 36, &h, &w, &err), &err);
    CHECK(h == 32 && w == 32);
    CHECK_OK(hallu_view_pipeline_apply(&test, &img, &r1, o1, 32, 32, &ws, &err), &err);
    /* No ops at all: just the normalisation, and it keeps the caller's image intact. */
    hallu_view_pipeline none;
    CHECK_OK(hallu_test_pipeline(&none, 0, 0, HALLU_CIFAR_MEAN, HALLU_CIFAR_STD, &err), &err);
    hallu_image small = make_image(32, 32, 6), keep = copy_image(&small);
    CHECK_OK(hallu_view_pipeline_apply(&none, &small, &r1, o1, 32, 32, &ws, &err), &err);
    hallu_aug_normalize(o2, &small, HALLU_CIFAR_MEAN, HALLU_CIFAR_STD);
    CHECK(memcmp(o1, o2, sizeof(float) * 32 * 32 * 3) == 0);
    CHECK(hallu_view_pipeline_output_dims(&none, 0, 0, &h, &w, &err) == HALLU_ERR_INVALID_ARG);
    hallu_view_pipeline probe;
    CHECK_OK(hallu_probe_train_pipeline(&probe, 32, HALLU_CIFAR_MEAN, HALLU_CIFAR_STD, &err), &err);
    CHECK_OK(hallu_view_pipeline_apply(&probe, &small, &r1, o1, 32, 32, &ws, &err), &err);
    CHECK(max_abs_diff(&small, &keep) == 0);

    /* Invalid ops are refused with a message. */
    hallu_view_pipeline bad;
    hallu_view_pipeline_init(&bad, HALLU_CIFAR_MEAN, HALLU_CIFAR_STD);
    CHECK(hallu_view_pipeline_add(&bad, hallu_aug_op_rrc(32, 0.9f, 0.1f), &err) == HALLU_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "scale") != NULL);
    CHECK(hallu_view_pipeline_add(&bad, hallu_aug_op_hflip(1.5f), &err) == HALLU_ERR_INVALID_ARG);
    CHECK(hallu_view_pipeline_add(&bad, hallu_aug_op_jitter(0.4f, 0.4f, 0.4f, 0.7f, 0.8f), &err) ==
          HALLU_ERR_INVALID_ARG);
    CHECK(hallu_view_pipeline_add(&bad, hallu_aug_op_blur(4, 0.1f, 2.0f, 0.5f), &err) ==
          HALLU_ERR_INVALID_ARG);
    CHECK(hallu_view_pipeline_add(&bad, hallu_aug_op_rrc(0, 0.2f, 1.0f), &err) == HALLU_ERR_INVALID_ARG);
    hallu_view_pipeline_init(&bad, HALLU_CIFAR_MEAN, HALLU_CIFAR_STD);
    CHECK_OK(hallu_view_pipeline_add(&bad, hallu_aug_op_center_crop(48), &err), &err);
    CHECK(hallu_view_pipeline_output_dims(&bad, 32, 32, &h, &w, &err) == HALLU_ERR_INVALID_ARG);
    CHECK(hallu_view_pipeline_apply(&bad, &small, &r1, o1, 48, 48, &ws, &err) == HALLU_ERR_INVALID_ARG);

    hallu_aug_workspace_free(&ws);
    free(o1);
    free(o2);
    free(img.data);
    free(small.data);
    free(keep.data);
}

int main(void)
{
    test_rng_streams();
    test_rrc_sampling();
    test_ccrop_sampling();
    test_jitter_sampling();
    test_resize();
    test_pixel_ops();
    test_hue();
    test_blur();
    test_normalize();
    test_pipelines();
    return check_summary();
}
