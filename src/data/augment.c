/* Geometric and simple per-pixel augmentations, following torchvision 0.14's
 * tensor path on uint8 images (see include/hallu/augment.h). */
#include "hallu/augment.h"

#include <math.h>
#include <string.h>

static int image_fits(const hallu_image *img)
{
    return img->h > 0 && img->w > 0 && img->data != NULL &&
           (size_t)img->h * (size_t)img->w * 3 <= img->capacity;
}

static hallu_status check_dst(const hallu_image *dst, const char *what, hallu_error *err)
{
    if (dst->h <= 0 || dst->w <= 0)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "%s: output size %dx%d must be positive",
                               what, dst->h, dst->w);
    if (!image_fits(dst))
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                               "%s: output %dx%d needs %zu bytes, buffer has %zu", what, dst->h,
                               dst->w, (size_t)dst->h * (size_t)dst->w * 3, dst->capacity);
    return HALLU_OK;
}

/* PyTorch's upsample_bilinear2d index rule (align_corners=False, no scale
 * given): src = scale * (dst + 0.5) - 0.5 in float, clamped at 0. */
typedef struct lin_tap {
    int i0, i1;
    float w0, w1;
} lin_tap;

static lin_tap linear_tap(float scale, int dst, int in_size)
{
    float src = scale * ((float)dst + 0.5f) - 0.5f;
    if (src < 0.0f)
        src = 0.0f;
    lin_tap t;
    t.i0 = (int)src;
    if (t.i0 > in_size - 1)
        t.i0 = in_size - 1;
    t.i1 = t.i0 + (t.i0 < in_size - 1 ? 1 : 0);
    float l1 = src - (float)t.i0;
    if (l1 < 0.0f)
        l1 = 0.0f;
    if (l1 > 1.0f)
        l1 = 1.0f;
    t.w1 = l1;
    t.w0 = 1.0f - l1;
    return t;
}

/* torch.round (half to even) then uint8, as _cast_squeeze_out does. */
static inline uint8_t round_u8(float v)
{
    v = v < 0.0f ? 0.0f : v;
    v = v > 255.0f ? 255.0f : v;
    /* Adding and removing 2^23 rounds half to even (the default FP mode) exactly
     * like nearbyintf for 0 <= v < 2^23, without a libm call. */
    return (uint8_t)((v + 8388608.0f) - 8388608.0f);
}

enum { MAX_TAPS = 1024 };

/* Bilinear resize of the box [top, top+bh) x [left, left+bw) of src into dst. */
static void bilinear_box(hallu_image *dst, const hallu_image *src, int top, int left, int bh,
                         int bw)
{
    float sy = (float)bh / (float)dst->h, sx = (float)bw / (float)dst->w;
    lin_tap xt_local[MAX_TAPS];
    int cache_x = dst->w <= MAX_TAPS;
    if (cache_x)
        for (int x = 0; x < dst->w; x++)
            xt_local[x] = linear_tap(sx, x, bw);
    size_t sstride = (size_t)src->w * 3;
    for (int y = 0; y < dst->h; y++) {
        lin_tap yt = linear_tap(sy, y, bh);
        const uint8_t *r0 = src->data + (size_t)(top + yt.i0) * sstride + (size_t)left * 3;
        const uint8_t *r1 = src->data + (size_t)(top + yt.i1) * sstride + (size_t)left * 3;
        uint8_t *out = dst->data + (size_t)y * dst->w * 3;
        for (int x = 0; x < dst->w; x++) {
            lin_tap xt = cache_x ? xt_local[x] : linear_tap(sx, x, bw);
            const uint8_t *a = r0 + xt.i0 * 3, *b = r0 + xt.i1 * 3;
            const uint8_t *c = r1 + xt.i0 * 3, *d = r1 + xt.i1 * 3;
            for (int ch = 0; ch < 3; ch++) {
                float t0 = (float)a[ch] * xt.w0 + (float)b[ch] * xt.w1;
                float t1 = (float)c[ch] * xt.w0 + (float)d[ch] * xt.w1;
                out[x * 3 + ch] = round_u8(t0 * yt.w0 + t1 * yt.w1);
            }
        }
    }
}

hallu_status hallu_aug_resized_crop(hallu_image *dst, const hallu_image *src,
                                    const hallu_crop_box *box, hallu_error *err)
{
    if (!image_fits(src))
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "resized_crop: bad input image %dx%d",
                               src->h, src->w);
    hallu_status st = check_dst(dst, "resized_crop", err);
    if (st != HALLU_OK)
        return st;
    if (box->height <= 0 || box->width <= 0 || box->top < 0 || box->left < 0 ||
        box->top + box->height > src->h || box->left + box->width > src->w)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                               "resized_crop: box top=%d left=%d h=%d w=%d outside the %dx%d image",
                               box->top, box->left, box->height, box->width, src->h, src->w);
    if (box->height == dst->h && box->width == dst->w) {
        /* Same size: bilinear at scale 1 is an exact copy; skip the arithmetic. */
        for (int y = 0; y < dst->h; y++)
            memcpy(dst->data + (size_t)y * dst->w * 3,
                   src->data + ((size_t)(box->top + y) * src->w + box->left) * 3,
                   (size_t)dst->w * 3);
        return HALLU_OK;
    }
    bilinear_box(dst, src, box->top, box->left, box->height, box->width);
    return HALLU_OK;
}

hallu_status hallu_aug_resize(hallu_image *dst, const hallu_image *src, hallu_error *err)
{
    hallu_crop_box all = {0, 0, src->h, src->w};
    return hallu_aug_resized_crop(dst, src, &all, err);
}

void hallu_aug_resize_shorter_dims(int img_h, int img_w, int size, int *out_h, int *out_w)
{
    if (img_h <= img_w) {
        *out_h = size;
        *out_w = (int)((double)size * img_w / img_h);
    } else {
        *out_w = size;
        *out_h = (int)((double)size * img_h / img_w);
    }
}

hallu_status hallu_aug_center_crop(hallu_image *dst, const hallu_image *src, hallu_error *err)
{
    hallu_status st = check_dst(dst, "center_crop", err);
    if (st != HALLU_OK)
        return st;
    if (!image_fits(src) || dst->h > src->h || dst->w > src->w)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                               "center_crop: crop %dx%d larger than the %dx%d image", dst->h,
                               dst->w, src->h, src->w);
    hallu_crop_box box = {(int)nearbyint((src->h - dst->h) / 2.0),
                          (int)nearbyint((src->w - dst->w) / 2.0), dst->h, dst->w};
    return hallu_aug_resized_crop(dst, src, &box, err);
}

void hallu_aug_hflip(hallu_image *img)
{
    for (int y = 0; y < img->h; y++) {
        uint8_t *row = img->data + (size_t)y * img->w * 3;
        for (int a = 0, b = img->w - 1; a < b; a++, b--) {
            for (int c = 0; c < 3; c++) {
                uint8_t t = row[a * 3 + c];
                row[a * 3 + c] = row[b * 3 + c];
                row[b * 3 + c] = t;
            }
        }
    }
}

void hallu_aug_solarize(hallu_image *img, float threshold)
{
    size_t n = (size_t)img->h * img->w * 3;
    for (size_t i = 0; i < n; i++)
        if ((float)img->data[i] >= threshold)
            img->data[i] = (uint8_t)(255 - img->data[i]);
}

/* Reflect index as torch's 'reflect' pad (edge not repeated); loops so that any
 * padding width works, not only pad < n. */
static int reflect_index(int p, int n)
{
    if (n == 1)
        return 0;
    while (p < 0 || p >= n)
        p = p < 0 ? -p : 2 * (n - 1) - p;
    return p;
}

enum { MAX_KSIZE = 255 };

static void gaussian_kernel(float *k, int ksize, float sigma)
{
    /* torch.linspace(-half, half, ksize) then exp(-0.5 (x / sigma)^2), normalised. */
    float half = (float)(ksize - 1) * 0.5f, sum = 0.0f;
    for (int i = 0; i < ksize; i++) {
        float x = -half + (float)i, r = x / sigma;
        k[i] = expf(-0.5f * r * r);
        sum += k[i];
    }
    for (int i = 0; i < ksize; i++)
        k[i] /= sum;
}

/* Adjacent elements (16 pixels x 3 channels) whose taps run together. */
enum { BLUR_RUN = 48 };

/* One pixel of the horizontal pass near an edge, taps reflected. */
static void blur_edge_pixel(float *out, const uint8_t *row, int x, int w, const float *k, int ksize, int r)
{
    float acc[3] = {0.0f, 0.0f, 0.0f};
    for (int t = 0; t < ksize; t++) {
        const uint8_t *px = row + (size_t)reflect_index(x + t - r, w) * 3;
        for (int c = 0; c < 3; c++)
            acc[c] += k[t] * (float)px[c];
    }
    for (int c = 0; c < 3; c++)
        out[c] = acc[c];
}

hallu_status hallu_aug_gaussian_blur(hallu_image *img, int ksize, float sigma, float *scratch,
                                     hallu_error *err)
{
    if (ksize < 1 || ksize % 2 == 0 || ksize > MAX_KSIZE)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                               "gaussian_blur: kernel size %d must be odd in [1, %d]", ksize,
                               MAX_KSIZE);
    if (!(sigma > 0.0f))
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "gaussian_blur: sigma %g must be > 0",
                               (double)sigma);
    float k[MAX_KSIZE];
    gaussian_kernel(k, ksize, sigma);
    int h = img->h, w = img->w, r = ksize / 2;
    /* Every output element is 0 + k[0] p[0] + k[1] p[1] + ... in tap order, as
     * torchvision's conv2d sums it here; the passes below keep exactly that
     * sequence per element (so the same bits) but run the taps over runs of
     * BLUR_RUN adjacent elements, which the compiler vectorises, and leave the
     * reflection arithmetic to the edge pixels. */
    for (int y = 0; y < h; y++) {
        const uint8_t *row = img->data + (size_t)y * w * 3;
        float *out = scratch + (size_t)y * w * 3;
        int x = 0;
        for (; x < w; x++) {   /* left edge, and narrow images */
            if (x >= r && x + r + BLUR_RUN / 3 <= w)
                break;
            blur_edge_pixel(out + x * 3, row, x, w, k, ksize, r);
        }
        for (; x + r + BLUR_RUN / 3 <= w; x += BLUR_RUN / 3) {   /* interior: no reflection */
            float acc[BLUR_RUN] = {0.0f};
            const uint8_t *src = row + (size_t)(x - r) * 3;
            for (int t = 0; t < ksize; t++, src += 3)
                for (int j = 0; j < BLUR_RUN; j++)
                    acc[j] += k[t] * (float)src[j];
            memcpy(out + x * 3, acc, sizeof acc);
        }
        for (; x < w; x++)   /* right edge */
            blur_edge_pixel(out + x * 3, row, x, w, k, ksize, r);
    }
    size_t row_len = (size_t)w * 3;
    const float *rows[MAX_KSIZE];
    for (int y = 0; y < h; y++) {
        for (int t = 0; t < ksize; t++)
            rows[t] = scratch + (size_t)reflect_index(y + t - r, h) * row_len;
        uint8_t *out = img->data + (size_t)y * row_len;
        for (size_t j0 = 0; j0 < row_len; j0 += BLUR_RUN) {
            size_t n = row_len - j0 < BLUR_RUN ? row_len - j0 : BLUR_RUN;
            float acc[BLUR_RUN] = {0.0f};
            for (int t = 0; t < ksize; t++)
                for (size_t j = 0; j < n; j++)
                    acc[j] += k[t] * rows[t][j0 + j];
            for (size_t j = 0; j < n; j++)
                out[j0 + j] = round_u8(acc[j]);
        }
    }
    return HALLU_OK;
}

void hallu_aug_normalize(float *out, const hallu_image *img, const float mean[3],
                         const float std[3])
{
    /* Same float ops as ToTensor (v / 255) then Normalize ((x - m) / s), tabulated. */
    float lut[3][256];
    hallu_u8_normalize_table(lut, mean, std);
    size_t n = (size_t)img->h * img->w;
    const uint8_t *p = img->data;
    for (size_t i = 0; i < n; i++) {
        out[i * 3 + 0] = lut[0][p[i * 3 + 0]];
        out[i * 3 + 1] = lut[1][p[i * 3 + 1]];
        out[i * 3 + 2] = lut[2][p[i * 3 + 2]];
    }
}
