/* View pipelines: a list of augmentation ops run on one image with parameters
 * drawn from the sample's own RNG stream, then ToTensor + Normalize. */
#include "hallu/augment.h"

#include <stdlib.h>
#include <string.h>

const float HALLU_CIFAR_MEAN[3] = {0.4914f, 0.4822f, 0.4465f};
const float HALLU_CIFAR_STD[3] = {0.2023f, 0.1994f, 0.2010f};
const float HALLU_IMAGENET_MEAN[3] = {0.485f, 0.456f, 0.406f};
const float HALLU_IMAGENET_STD[3] = {0.229f, 0.224f, 0.225f};

static hallu_aug_op op_base(hallu_aug_kind kind)
{
    hallu_aug_op op;
    memset(&op, 0, sizeof op);
    op.kind = kind;
    op.p = 1.0f;
    op.scale[0] = 0.08f;
    op.scale[1] = 1.0f;
    op.ratio[0] = 3.0f / 4.0f;
    op.ratio[1] = 4.0f / 3.0f;
    return op;
}

hallu_aug_op hallu_aug_op_rrc(int size, float scale_lo, float scale_hi)
{
    hallu_aug_op op = op_base(HALLU_AUG_RRC);
    op.size = size;
    op.scale[0] = scale_lo;
    op.scale[1] = scale_hi;
    return op;
}

hallu_aug_op hallu_aug_op_ccrop(int size, float scale_lo, float scale_hi, float box_lo,
                                float box_hi, float alpha)
{
    hallu_aug_op op = hallu_aug_op_rrc(size, scale_lo, scale_hi);
    op.kind = HALLU_AUG_CCROP;
    op.box_lo = box_lo;
    op.box_hi = box_hi;
    op.alpha = alpha;
    return op;
}

hallu_aug_op hallu_aug_op_resize(int size)
{
    hallu_aug_op op = op_base(HALLU_AUG_RESIZE);
    op.size = size;
    return op;
}

hallu_aug_op hallu_aug_op_center_crop(int size)
{
    hallu_aug_op op = op_base(HALLU_AUG_CENTER_CROP);
    op.size = size;
    return op;
}

hallu_aug_op hallu_aug_op_hflip(float p)
{
    hallu_aug_op op = op_base(HALLU_AUG_HFLIP);
    op.p = p;
    return op;
}

hallu_aug_op hallu_aug_op_jitter(float b, float c, float s, float h, float p)
{
    hallu_aug_op op = op_base(HALLU_AUG_JITTER);
    op.jitter[0] = b;
    op.jitter[1] = c;
    op.jitter[2] = s;
    op.jitter[3] = h;
    op.p = p;
    return op;
}

hallu_aug_op hallu_aug_op_grayscale(float p)
{
    hallu_aug_op op = op_base(HALLU_AUG_GRAYSCALE);
    op.p = p;
    return op;
}

hallu_aug_op hallu_aug_op_blur(int ksize, float sigma_lo, float sigma_hi, float p)
{
    hallu_aug_op op = op_base(HALLU_AUG_BLUR);
    op.ksize = ksize;
    op.sigma[0] = sigma_lo;
    op.sigma[1] = sigma_hi;
    op.p = p;
    return op;
}

hallu_aug_op hallu_aug_op_solarize(float threshold, float p)
{
    hallu_aug_op op = op_base(HALLU_AUG_SOLARIZE);
    op.threshold = threshold;
    op.p = p;
    return op;
}

void hallu_view_pipeline_init(hallu_view_pipeline *pl, const float mean[3], const float std[3])
{
    memset(pl, 0, sizeof *pl);
    for (int c = 0; c < 3; c++) {
        pl->mean[c] = mean[c];
        pl->std[c] = std[c];
    }
}

static hallu_status validate_crop(const hallu_aug_op *op, hallu_error *err)
{
    if (!(op->scale[0] > 0.0f && op->scale[0] <= op->scale[1]))
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                               "view pipeline: crop scale (%g, %g) must satisfy 0 < lo <= hi",
                               (double)op->scale[0], (double)op->scale[1]);
    if (!(op->ratio[0] > 0.0f && op->ratio[0] <= op->ratio[1]))
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                               "view pipeline: crop ratio (%g, %g) must satisfy 0 < lo <= hi",
                               (double)op->ratio[0], (double)op->ratio[1]);
    if (op->kind == HALLU_AUG_CCROP &&
        !(op->box_lo >= 0.0f && op->box_lo <= op->box_hi && op->box_hi <= 1.0f && op->alpha > 0.0f))
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                               "view pipeline: contrastive crop box (%g, %g) must be within "
                               "[0, 1] and alpha %g > 0",
                               (double)op->box_lo, (double)op->box_hi, (double)op->alpha);
    return HALLU_OK;
}

static hallu_status validate_op(const hallu_aug_op *op, hallu_error *err)
{
    if (!(op->p >= 0.0f && op->p <= 1.0f))
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                               "view pipeline: probability %g outside [0, 1]", (double)op->p);
    switch (op->kind) {
    case HALLU_AUG_RRC:
    case HALLU_AUG_CCROP:
    case HALLU_AUG_RESIZE:
    case HALLU_AUG_CENTER_CROP:
        if (op->size <= 0 || op->size > 8192)
            return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                                   "view pipeline: size %d outside [1, 8192]", op->size);
        return op->kind == HALLU_AUG_RRC || op->kind == HALLU_AUG_CCROP ? validate_crop(op, err)
                                                                       : HALLU_OK;
    case HALLU_AUG_JITTER:
        for (int k = 0; k < 4; k++)
            if (!(op->jitter[k] >= 0.0f))
                return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                                       "view pipeline: jitter strength %g must be >= 0",
                                       (double)op->jitter[k]);
        if (op->jitter[3] > 0.5f)
            return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                                   "view pipeline: hue jitter %g must be <= 0.5",
                                   (double)op->jitter[3]);
        return HALLU_OK;
    case HALLU_AUG_BLUR:
        if (op->ksize < 1 || op->ksize % 2 == 0 || op->ksize > 255 ||
            !(op->sigma[0] > 0.0f && op->sigma[0] <= op->sigma[1]))
            return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                                   "view pipeline: blur kernel %d (odd, <= 255) sigma (%g, %g)",
                                   op->ksize, (double)op->sigma[0], (double)op->sigma[1]);
        return HALLU_OK;
    case HALLU_AUG_HFLIP:
    case HALLU_AUG_GRAYSCALE:
    case HALLU_AUG_SOLARIZE:
        return HALLU_OK;
    }
    return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "view pipeline: unknown op kind %d",
                           (int)op->kind);
}

hallu_status hallu_view_pipeline_add(hallu_view_pipeline *pl, hallu_aug_op op, hallu_error *err)
{
    if (pl->n_ops >= HALLU_AUG_MAX_OPS)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "view pipeline: more than %d ops",
                               HALLU_AUG_MAX_OPS);
    hallu_status st = validate_op(&op, err);
    if (st != HALLU_OK)
        return st;
    pl->ops[pl->n_ops++] = op;
    return HALLU_OK;
}

hallu_status hallu_view_pipeline_output_dims(const hallu_view_pipeline *pl, int img_h, int img_w,
                                             int *out_h, int *out_w, hallu_error *err)
{
    int h = img_h, w = img_w;
    for (int i = 0; i < pl->n_ops; i++) {
        const hallu_aug_op *op = &pl->ops[i];
        if (op->kind == HALLU_AUG_RRC || op->kind == HALLU_AUG_CCROP) {
            h = w = op->size;
        } else if (op->kind == HALLU_AUG_RESIZE) {
            if (h > 0 && w > 0)
                hallu_aug_resize_shorter_dims(h, w, op->size, &h, &w);
        } else if (op->kind == HALLU_AUG_CENTER_CROP) {
            if (h > 0 && (h < op->size || w < op->size))
                return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                                       "view pipeline: centre crop %d larger than the %dx%d image",
                                       op->size, h, w);
            h = w = op->size;
        }
    }
    if (h <= 0 || w <= 0)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                               "view pipeline: output size depends on the input (variable-size "
                               "images need a crop or centre crop)");
    *out_h = h;
    *out_w = w;
    return HALLU_OK;
}

void hallu_aug_workspace_init(hallu_aug_workspace *ws)
{
    memset(ws, 0, sizeof *ws);
}

void hallu_aug_workspace_free(hallu_aug_workspace *ws)
{
    hallu_free(ws->buf[0]);
    hallu_free(ws->buf[1]);
    hallu_free(ws->fbuf);
    hallu_aug_workspace_init(ws);
}

static hallu_status ensure_u8(hallu_aug_workspace *ws, int slot, size_t n, hallu_error *err)
{
    if (ws->cap[slot] >= n)
        return HALLU_OK;
    hallu_free(ws->buf[slot]);
    ws->cap[slot] = 0;
    ws->buf[slot] = hallu_alloc(n, "augment workspace", err);
    if (!ws->buf[slot])
        return HALLU_ERR_OOM;
    ws->cap[slot] = n;
    return HALLU_OK;
}

static hallu_status ensure_f32(hallu_aug_workspace *ws, size_t n, hallu_error *err)
{
    if (ws->fcap >= n)
        return HALLU_OK;
    hallu_free(ws->fbuf);
    ws->fcap = 0;
    ws->fbuf = hallu_alloc(n * sizeof(float), "augment blur scratch", err);
    if (!ws->fbuf)
        return HALLU_ERR_OOM;
    ws->fcap = n;
    return HALLU_OK;
}

/* State of one pipeline run: `cur` is either the caller's (read-only) image or
 * one of the two workspace buffers; ops write into the other buffer. */
typedef struct run_state {
    hallu_image cur;
    int cur_slot; /* -1: cur is the caller's image */
    hallu_aug_workspace *ws;
} run_state;

static hallu_status next_image(run_state *rs, int h, int w, hallu_image *dst, hallu_error *err)
{
    int slot = rs->cur_slot == 0 ? 1 : 0;
    size_t n = (size_t)h * w * 3;
    hallu_status st = ensure_u8(rs->ws, slot, n, err);
    if (st != HALLU_OK)
        return st;
    dst->data = rs->ws->buf[slot];
    dst->h = h;
    dst->w = w;
    dst->capacity = rs->ws->cap[slot];
    return HALLU_OK;
}

static void commit_image(run_state *rs, const hallu_image *dst)
{
    rs->cur_slot = dst->data == rs->ws->buf[0] ? 0 : 1;
    rs->cur = *dst;
}

/* In-place ops may not touch the caller's image: copy it into the workspace once. */
static hallu_status make_writable(run_state *rs, hallu_error *err)
{
    if (rs->cur_slot >= 0)
        return HALLU_OK;
    hallu_image dst;
    hallu_status st = next_image(rs, rs->cur.h, rs->cur.w, &dst, err);
    if (st != HALLU_OK)
        return st;
    memcpy(dst.data, rs->cur.data, (size_t)rs->cur.h * rs->cur.w * 3);
    commit_image(rs, &dst);
    return HALLU_OK;
}

static hallu_status run_geometry(run_state *rs, const hallu_aug_op *op, hallu_rng *rng,
                                 hallu_error *err)
{
    hallu_image dst;
    int h = op->size, w = op->size;
    if (op->kind == HALLU_AUG_RESIZE)
        hallu_aug_resize_shorter_dims(rs->cur.h, rs->cur.w, op->size, &h, &w);
    hallu_status st = next_image(rs, h, w, &dst, err);
    if (st != HALLU_OK)
        return st;
    hallu_crop_box box;
    if (op->kind == HALLU_AUG_RRC) {
        hallu_rrc_sample(rng, rs->cur.h, rs->cur.w, op->scale, op->ratio, &box);
        st = hallu_aug_resized_crop(&dst, &rs->cur, &box, err);
    } else if (op->kind == HALLU_AUG_CCROP) {
        hallu_ccrop_sample(rng, rs->cur.h, rs->cur.w, op->scale, op->ratio, op->box_lo,
                           op->box_hi, op->alpha, &box);
        st = hallu_aug_resized_crop(&dst, &rs->cur, &box, err);
    } else if (op->kind == HALLU_AUG_RESIZE) {
        st = hallu_aug_resize(&dst, &rs->cur, err);
    } else {
        st = hallu_aug_center_crop(&dst, &rs->cur, err);
    }
    if (st == HALLU_OK)
        commit_image(rs, &dst);
    return st;
}

/* Photometric ops: RandomApply draws its coin first, then the op's own params. */
static hallu_status run_photometric(run_state *rs, const hallu_aug_op *op, hallu_rng *rng,
                                    hallu_error *err)
{
    if (!(hallu_rng_uniform(rng) < op->p))
        return HALLU_OK;
    hallu_status st = make_writable(rs, err);
    if (st != HALLU_OK)
        return st;
    switch (op->kind) {
    case HALLU_AUG_HFLIP:
        hallu_aug_hflip(&rs->cur);
        return HALLU_OK;
    case HALLU_AUG_JITTER: {
        hallu_jitter_params jp;
        hallu_jitter_sample(rng, op->jitter, &jp);
        hallu_aug_color_jitter(&rs->cur, &jp);
        return HALLU_OK;
    }
    case HALLU_AUG_GRAYSCALE:
        hallu_aug_grayscale(&rs->cur);
        return HALLU_OK;
    case HALLU_AUG_SOLARIZE:
        hallu_aug_solarize(&rs->cur, op->threshold);
        return HALLU_OK;
    case HALLU_AUG_BLUR: {
        float sigma = op->sigma[0] + (op->sigma[1] - op->sigma[0]) * hallu_rng_uniform(rng);
        st = ensure_f32(rs->ws, (size_t)rs->cur.h * rs->cur.w * 3, err);
        if (st != HALLU_OK)
            return st;
        return hallu_aug_gaussian_blur(&rs->cur, op->ksize, sigma, rs->ws->fbuf, err);
    }
    default:
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "view pipeline: op kind %d",
                               (int)op->kind);
    }
}

/* Every op of pl on src; *result is the final image (in ws's buffers, or src). */
static hallu_status run_ops(const hallu_view_pipeline *pl, const hallu_image *src, hallu_rng *rng, int out_h,
                            int out_w, hallu_aug_workspace *ws, hallu_image *result, hallu_error *err)
{
    if (!src->data || src->h <= 0 || src->w <= 0)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "view pipeline: empty input image %dx%d",
                               src->h, src->w);
    run_state rs = {*src, -1, ws};
    for (int i = 0; i < pl->n_ops; i++) {
        const hallu_aug_op *op = &pl->ops[i];
        hallu_status st;
        if (op->kind == HALLU_AUG_RRC || op->kind == HALLU_AUG_CCROP ||
            op->kind == HALLU_AUG_RESIZE || op->kind == HALLU_AUG_CENTER_CROP)
            st = run_geometry(&rs, op, rng, err);
        else
            st = run_photometric(&rs, op, rng, err);
        if (st != HALLU_OK)
            return st;
    }
    if (rs.cur.h != out_h || rs.cur.w != out_w)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                               "view pipeline: result is %dx%d, expected %dx%d (input %dx%d)",
                               rs.cur.h, rs.cur.w, out_h, out_w, src->h, src->w);
    *result = rs.cur;
    return HALLU_OK;
}

/* The pipeline's result normalised into out_f, or as bytes into out_b. */
static hallu_status apply_to(const hallu_view_pipeline *pl, const hallu_image *src, hallu_rng *rng, float *out_f,
                             uint8_t *out_b, int out_h, int out_w, hallu_aug_workspace *ws, hallu_error *err)
{
    hallu_image img;
    hallu_status st = run_ops(pl, src, rng, out_h, out_w, ws, &img, err);
    if (st == HALLU_OK && out_f)
        hallu_aug_normalize(out_f, &img, pl->mean, pl->std);
    else if (st == HALLU_OK)
        memcpy(out_b, img.data, (size_t)out_h * out_w * 3);
    return st;
}

hallu_status hallu_view_pipeline_apply(const hallu_view_pipeline *pl, const hallu_image *src,
                                       hallu_rng *rng, float *out, int out_h, int out_w,
                                       hallu_aug_workspace *ws, hallu_error *err)
{
    return apply_to(pl, src, rng, out, NULL, out_h, out_w, ws, err);
}

hallu_status hallu_view_pipeline_apply_u8(const hallu_view_pipeline *pl, const hallu_image *src,
                                          hallu_rng *rng, uint8_t *out, int out_h, int out_w,
                                          hallu_aug_workspace *ws, hallu_error *err)
{
    return apply_to(pl, src, rng, NULL, out, out_h, out_w, ws, err);
}
