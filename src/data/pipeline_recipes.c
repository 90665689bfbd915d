/* Ready-made pipelines: METHOD.md's two-view SSL recipe (optionally BYOL-like
 * asymmetric), the linear-probe training view and the evaluation view. */
#include "hallu/augment.h"

#include <string.h>

void hallu_ssl_views_default(hallu_ssl_views_config *cfg, int size)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->size = size;
    cfg->view1_ccrop = 1;
    cfg->scale_lo = 0.2f;
    cfg->scale_hi = 1.0f;
    cfg->box_lo = 0.25f;
    cfg->box_hi = 0.75f;
    cfg->alpha = 0.1f;
    cfg->jitter[0] = cfg->jitter[1] = cfg->jitter[2] = 0.4f;
    cfg->jitter[3] = 0.1f;
    cfg->jitter_p = 0.8f;
    cfg->gray_p = 0.2f;
    cfg->flip_p = 0.5f;
    /* BYOL uses a 23-pixel kernel at 224 (~10% of the side), kept odd. */
    cfg->blur_ksize = (size / 10) | 1;
    cfg->blur_sigma[0] = 0.1f;
    cfg->blur_sigma[1] = 2.0f;
    for (int c = 0; c < 3; c++) {
        cfg->mean[c] = HALLU_CIFAR_MEAN[c];
        cfg->std[c] = HALLU_CIFAR_STD[c];
    }
}

void hallu_ssl_views_set_asymmetric(hallu_ssl_views_config *cfg)
{
    cfg->blur_p[0] = 1.0f;
    cfg->blur_p[1] = 0.1f;
    cfg->solarize_p[0] = 0.0f;
    cfg->solarize_p[1] = 0.2f;
}

static hallu_status build_view(const hallu_ssl_views_config *cfg, int v, hallu_view_pipeline *pl,
                               hallu_error *err)
{
    hallu_view_pipeline_init(pl, cfg->mean, cfg->std);
    hallu_aug_op crop = v == 0 && cfg->view1_ccrop
                            ? hallu_aug_op_ccrop(cfg->size, cfg->scale_lo, cfg->scale_hi,
                                                 cfg->box_lo, cfg->box_hi, cfg->alpha)
                            : hallu_aug_op_rrc(cfg->size, cfg->scale_lo, cfg->scale_hi);
    hallu_status st = hallu_view_pipeline_add(pl, crop, err);
    if (st == HALLU_OK)
        st = hallu_view_pipeline_add(pl, hallu_aug_op_hflip(cfg->flip_p), err);
    if (st == HALLU_OK)
        st = hallu_view_pipeline_add(pl, hallu_aug_op_jitter(cfg->jitter[0], cfg->jitter[1],
                                                             cfg->jitter[2], cfg->jitter[3],
                                                             cfg->jitter_p), err);
    if (st == HALLU_OK)
        st = hallu_view_pipeline_add(pl, hallu_aug_op_grayscale(cfg->gray_p), err);
    if (st == HALLU_OK && cfg->blur_p[v] > 0.0f)
        st = hallu_view_pipeline_add(pl, hallu_aug_op_blur(cfg->blur_ksize, cfg->blur_sigma[0],
                                                           cfg->blur_sigma[1], cfg->blur_p[v]),
                                     err);
    if (st == HALLU_OK && cfg->solarize_p[v] > 0.0f)
        st = hallu_view_pipeline_add(pl, hallu_aug_op_solarize(128.0f, cfg->solarize_p[v]), err);
    return st;
}

hallu_status hallu_ssl_views_build(const hallu_ssl_views_config *cfg, hallu_view_pipeline out[2],
                                   hallu_error *err)
{
    for (int v = 0; v < 2; v++) {
        hallu_status st = build_view(cfg, v, &out[v], err);
        if (st != HALLU_OK)
            return st;
    }
    return HALLU_OK;
}

hallu_status hallu_probe_train_pipeline(hallu_view_pipeline *pl, int size, const float mean[3],
                                        const float std[3], hallu_error *err)
{
    hallu_view_pipeline_init(pl, mean, std);
    hallu_status st = hallu_view_pipeline_add(pl, hallu_aug_op_rrc(size, 0.08f, 1.0f), err);
    if (st == HALLU_OK)
        st = hallu_view_pipeline_add(pl, hallu_aug_op_hflip(0.5f), err);
    return st;
}

hallu_status hallu_test_pipeline(hallu_view_pipeline *pl, int resize_to, int crop,
                                 const float mean[3], const float std[3], hallu_error *err)
{
    hallu_view_pipeline_init(pl, mean, std);
    hallu_status st = HALLU_OK;
    if (resize_to > 0)
        st = hallu_view_pipeline_add(pl, hallu_aug_op_resize(resize_to), err);
    if (st == HALLU_OK && crop > 0)
        st = hallu_view_pipeline_add(pl, hallu_aug_op_center_crop(crop), err);
    return st;
}
