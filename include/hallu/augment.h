/* Image augmentations for self-supervised learning, with torchvision 0.14's
 * semantics on uint8 tensors (functional_tensor.py): every op reads and writes
 * uint8 RGB HWC and rounds/clamps exactly where torchvision does, so an image
 * augmented here matches torchvision's output to within 1-2 grey levels.
 *
 * Each transform comes in two halves: "sample" draws its parameters from a
 * hallu_rng, "apply" takes explicit parameters. Tests feed both halves the
 * values torchvision used; pipelines glue them together.
 *
 * Randomness: a sample's augmentation depends only on (seed, epoch, index, view)
 * via hallu_aug_rng_init, never on which thread runs it or when. */
#ifndef HALLU_AUGMENT_H
#define HALLU_AUGMENT_H

#include "hallu/core.h"
#include "hallu/data.h"
#include "hallu/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- randomness ---------------------------------------------------------- */

/* stream = epoch * 2^32 + index; the view id is folded into the Philox key so
 * the two views of one image are independent streams. */
void hallu_aug_rng_init(hallu_rng *rng, uint64_t seed, uint32_t epoch, uint32_t index,
                        uint32_t view);

/* ---- crops --------------------------------------------------------------- */

/* A crop box in pixels: rows [top, top+height), cols [left, left+width). */
typedef struct hallu_crop_box {
    int top, left, height, width;
} hallu_crop_box;

/* torchvision RandomResizedCrop.get_params: 10 tries of area ~ U(scale) and a
 * log-uniform aspect ratio, then the centre fallback. Rounding is Python's
 * round() (half to even). */
void hallu_rrc_sample(hallu_rng *rng, int img_h, int img_w, const float scale[2],
                      const float ratio[2], hallu_crop_box *box);

/* ContrastiveCrop (Peng et al. 2022) with a fixed box. w, h are drawn as in
 * RRC; then, with the box in fractions (lo, hi) of each side and u ~ Beta(a, a):
 *   c0 = clamp(floor(H * lo) - h/2, 0, H - h),  c1 = clamp(floor(H * hi) - h/2, 0, H - h)
 *   top = c0 + floor((c1 - c0) * u)
 * (h/2 in integers), likewise for left with a fresh u. The crop's centre thus
 * lands in the box (its range clamped so the crop stays inside the image);
 * small alpha pushes it towards the box's edges. Fallback as RRC. */
void hallu_ccrop_sample(hallu_rng *rng, int img_h, int img_w, const float scale[2],
                        const float ratio[2], float box_lo, float box_hi, float alpha,
                        hallu_crop_box *box);

/* F.resized_crop(img, top, left, h, w, [dst->h, dst->w], bilinear, antialias=False)
 * on a uint8 tensor: bilinear with half-pixel centres, float32, round half to even.
 * dst->h, dst->w give the output size; dst->capacity must hold it. The box must
 * lie inside src. */
hallu_status hallu_aug_resized_crop(hallu_image *dst, const hallu_image *src,
                                    const hallu_crop_box *box, hallu_error *err);

/* F.resize(img, [dst->h, dst->w]) (bilinear, antialias=False). */
hallu_status hallu_aug_resize(hallu_image *dst, const hallu_image *src, hallu_error *err);

/* Output size of F.resize(img, size) with an int size: the shorter side becomes
 * `size`, the longer int(size * long / short). */
void hallu_aug_resize_shorter_dims(int img_h, int img_w, int size, int *out_h, int *out_w);

/* F.center_crop(img, [dst->h, dst->w]): top = round((H - h) / 2). Fails when the
 * crop is larger than the image. */
hallu_status hallu_aug_center_crop(hallu_image *dst, const hallu_image *src, hallu_error *err);

/* ---- per-pixel ops (in place) ---------------------------------------------- */

void hallu_aug_hflip(hallu_image *img);
/* F.rgb_to_grayscale(img, 3): l = trunc(0.2989 r + 0.587 g + 0.114 b) in float32. */
void hallu_aug_grayscale(hallu_image *img);
/* F.solarize on uint8: v >= threshold -> 255 - v. */
void hallu_aug_solarize(hallu_image *img, float threshold);
/* F.adjust_brightness / contrast / saturation on uint8: float32 blend with
 * zeros / the mean grey level / the per-pixel grey, clamp to [0, 255], truncate. */
void hallu_aug_brightness(hallu_image *img, float factor);
void hallu_aug_contrast(hallu_image *img, float factor);
void hallu_aug_saturation(hallu_image *img, float factor);
/* F.adjust_hue: /255, RGB->HSV, h = (h + factor) mod 1, HSV->RGB, *255, truncate.
 * factor in [-0.5, 0.5]. */
void hallu_aug_hue(hallu_image *img, float factor);

/* ColorJitter's drawn parameters: order is a permutation of 0..3
 * (0 brightness, 1 contrast, 2 saturation, 3 hue); an op with enabled[k] == 0 is
 * skipped (torchvision's None, i.e. a jitter strength of 0). */
typedef struct hallu_jitter_params {
    int order[4];
    int enabled[4];
    float factor[4];
} hallu_jitter_params;

/* ColorJitter.get_params: randperm(4), then factors ~ U(max(0, 1-s), 1+s) for
 * brightness/contrast/saturation and U(-hue, hue). strength = {b, c, s, h}. */
void hallu_jitter_sample(hallu_rng *rng, const float strength[4], hallu_jitter_params *p);
void hallu_aug_color_jitter(hallu_image *img, const hallu_jitter_params *p);

/* F.gaussian_blur(img, [k, k], [sigma, sigma]): float32 kernel
 * exp(-x^2 / (2 sigma^2)) normalised, reflect padding, round half to even.
 * k odd >= 1, sigma > 0. scratch needs img->h * img->w * 3 floats. */
hallu_status hallu_aug_gaussian_blur(hallu_image *img, int ksize, float sigma, float *scratch,
                                     hallu_error *err);

/* ToTensor + Normalize: out[i] = (v / 255 - mean[c]) / std[c], NHWC float. */
void hallu_aug_normalize(float *out, const hallu_image *img, const float mean[3],
                         const float std[3]);

/* ---- view pipelines ----------------------------------------------------------- */

typedef enum hallu_aug_kind {
    HALLU_AUG_RRC = 0,        /* RandomResizedCrop(size, scale, ratio) */
    HALLU_AUG_CCROP,          /* ContrastiveCrop(size, scale, ratio, box, alpha) */
    HALLU_AUG_RESIZE,         /* Resize(size): shorter side -> size */
    HALLU_AUG_CENTER_CROP,    /* CenterCrop(size) */
    HALLU_AUG_HFLIP,          /* RandomHorizontalFlip(p) */
    HALLU_AUG_JITTER,         /* RandomApply([ColorJitter(b, c, s, h)], p) */
    HALLU_AUG_GRAYSCALE,      /* RandomGrayscale(p) */
    HALLU_AUG_BLUR,           /* RandomApply([GaussianBlur(k, sigma)], p) */
    HALLU_AUG_SOLARIZE,       /* RandomSolarize(threshold, p) */
} hallu_aug_kind;

typedef struct hallu_aug_op {
    hallu_aug_kind kind;
    float p;                  /* probability of applying (crops/resize ignore it) */
    int size;                 /* output side for crops/resize */
    float scale[2], ratio[2]; /* RRC / CCROP */
    float box_lo, box_hi;     /* CCROP: box as fractions of each side */
    float alpha;              /* CCROP: Beta(alpha, alpha) */
    float jitter[4];          /* JITTER: brightness, contrast, saturation, hue */
    int ksize;                /* BLUR */
    float sigma[2];           /* BLUR: sigma ~ U(sigma[0], sigma[1]) */
    float threshold;          /* SOLARIZE: in grey levels (0..255) */
} hallu_aug_op;

#define HALLU_AUG_MAX_OPS 12

typedef struct hallu_view_pipeline {
    int n_ops;
    hallu_aug_op ops[HALLU_AUG_MAX_OPS];
    float mean[3], std[3];    /* final Normalize */
} hallu_view_pipeline;

/* Builders for single ops (fill every field; p = 1 where not given). */
hallu_aug_op hallu_aug_op_rrc(int size, float scale_lo, float scale_hi);
hallu_aug_op hallu_aug_op_ccrop(int size, float scale_lo, float scale_hi, float box_lo,
                                float box_hi, float alpha);
hallu_aug_op hallu_aug_op_resize(int size);
hallu_aug_op hallu_aug_op_center_crop(int size);
hallu_aug_op hallu_aug_op_hflip(float p);
hallu_aug_op hallu_aug_op_jitter(float b, float c, float s, float h, float p);
hallu_aug_op hallu_aug_op_grayscale(float p);
hallu_aug_op hallu_aug_op_blur(int ksize, float sigma_lo, float sigma_hi, float p);
hallu_aug_op hallu_aug_op_solarize(float threshold, float p);

/* Appends an op; fails when the pipeline is full or the op's values are invalid. */
hallu_status hallu_view_pipeline_add(hallu_view_pipeline *pl, hallu_aug_op op, hallu_error *err);
void hallu_view_pipeline_init(hallu_view_pipeline *pl, const float mean[3], const float std[3]);

/* Output size for an input of img_h x img_w (0 x 0 = unknown/variable: then the
 * pipeline must fix the size itself with a crop, or it fails). */
hallu_status hallu_view_pipeline_output_dims(const hallu_view_pipeline *pl, int img_h, int img_w,
                                             int *out_h, int *out_w, hallu_error *err);

/* Per-thread scratch, grown on demand and reused (the steady state allocates nothing). */
typedef struct hallu_aug_workspace {
    uint8_t *buf[2];
    size_t cap[2];
    float *fbuf;
    size_t fcap;
} hallu_aug_workspace;

void hallu_aug_workspace_init(hallu_aug_workspace *ws);
void hallu_aug_workspace_free(hallu_aug_workspace *ws);

/* Runs every op with parameters drawn from rng, then normalises into out
 * ([out_h][out_w][3] floats). Fails when the result is not out_h x out_w. */
hallu_status hallu_view_pipeline_apply(const hallu_view_pipeline *pl, const hallu_image *src,
                                       hallu_rng *rng, float *out, int out_h, int out_w,
                                       hallu_aug_workspace *ws, hallu_error *err);

/* The same without the normalisation: out is [out_h][out_w][3] bytes, the
 * pipeline's image before hallu_aug_normalize (with pl->mean/std). */
hallu_status hallu_view_pipeline_apply_u8(const hallu_view_pipeline *pl, const hallu_image *src,
                                          hallu_rng *rng, uint8_t *out, int out_h, int out_w,
                                          hallu_aug_workspace *ws, hallu_error *err);

/* ---- recipes -------------------------------------------------------------------- */

extern const float HALLU_CIFAR_MEAN[3];
extern const float HALLU_CIFAR_STD[3];
extern const float HALLU_IMAGENET_MEAN[3];
extern const float HALLU_IMAGENET_STD[3];

typedef struct hallu_ssl_views_config {
    int size;                 /* output side: 32 CIFAR, 64 Tiny ImageNet, 96 STL-10 */
    int view1_ccrop;          /* 1: view 1 = ContrastiveCrop; 0: RRC */
    float scale_lo, scale_hi; /* crop area range (0.2, 1.0) */
    float box_lo, box_hi;     /* ContrastiveCrop box (0.25, 0.75) */
    float alpha;              /* ContrastiveCrop Beta parameter (0.1) */
    float jitter[4];          /* (0.4, 0.4, 0.4, 0.1) */
    float jitter_p, gray_p, flip_p; /* 0.8, 0.2, 0.5 */
    /* BYOL-like asymmetry: per-view probabilities (0 = op absent). */
    float blur_p[2];          /* e.g. (1.0, 0.1) */
    float solarize_p[2];      /* e.g. (0.0, 0.2) */
    int blur_ksize;           /* odd; e.g. ~10% of size */
    float blur_sigma[2];      /* (0.1, 2.0) */
    float mean[3], std[3];
} hallu_ssl_views_config;

/* METHOD.md's CIFAR recipe at the given size (ContrastiveCrop view 1, CIFAR
 * mean/std, no blur/solarize). */
void hallu_ssl_views_default(hallu_ssl_views_config *cfg, int size);
/* Turns on the BYOL-like asymmetric blur/solarize probabilities. */
void hallu_ssl_views_set_asymmetric(hallu_ssl_views_config *cfg);
hallu_status hallu_ssl_views_build(const hallu_ssl_views_config *cfg, hallu_view_pipeline out[2],
                                   hallu_error *err);

/* Linear-probe training view: RRC(size, scale 0.08-1) + flip(0.5) + normalise. */
hallu_status hallu_probe_train_pipeline(hallu_view_pipeline *pl, int size, const float mean[3],
                                        const float std[3], hallu_error *err);
/* Evaluation view: resize shorter side to resize_to (0 = skip), centre crop to
 * crop (0 = skip), normalise. */
hallu_status hallu_test_pipeline(hallu_view_pipeline *pl, int resize_to, int crop,
                                 const float mean[3], const float std[3], hallu_error *err);

#ifdef __cplusplus
}
#endif
#endif
