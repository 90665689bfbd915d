/* Parameter sampling for the random transforms: the same decisions as
 * torchvision's get_params, drawn from a per-sample Philox stream. */
#include "hallu/augment.h"

#include <math.h>

void hallu_aug_rng_init(hallu_rng *rng, uint64_t seed, uint32_t epoch, uint32_t index,
                        uint32_t view)
{
    /* Folding the view into the key (not the stream) keeps the stream free for
     * (epoch, index), and view 0 keeps the plain seed. */
    uint64_t key = seed ^ ((uint64_t)view * 0x9E3779B97F4A7C15ull);
    hallu_rng_init(rng, key, ((uint64_t)epoch << 32) | index);
}

/* torch.empty(1).uniform_(lo, hi) is float32. */
static float uniform_f32(hallu_rng *rng, float lo, float hi)
{
    return lo + (hi - lo) * hallu_rng_uniform(rng);
}

/* One RRC try: (w, h) from a drawn area and log-uniform ratio; Python's round()
 * is half-to-even, as nearbyint in the default rounding mode. Returns 1 when the
 * crop fits. */
static int rrc_try(hallu_rng *rng, int img_h, int img_w, const float scale[2],
                   const float ratio[2], int *h, int *w)
{
    double area = (double)img_h * img_w;
    double target = area * (double)uniform_f32(rng, scale[0], scale[1]);
    float lr0 = logf(ratio[0]), lr1 = logf(ratio[1]);
    double aspect = (double)expf(uniform_f32(rng, lr0, lr1));
    *w = (int)nearbyint(sqrt(target * aspect));
    *h = (int)nearbyint(sqrt(target / aspect));
    return *w > 0 && *w <= img_w && *h > 0 && *h <= img_h;
}

static void rrc_fallback(int img_h, int img_w, const float ratio[2], hallu_crop_box *box)
{
    double in_ratio = (double)img_w / (double)img_h;
    double rmin = fmin(ratio[0], ratio[1]), rmax = fmax(ratio[0], ratio[1]);
    int w = img_w, h = img_h;
    if (in_ratio < rmin)
        h = (int)nearbyint(w / rmin);
    else if (in_ratio > rmax)
        w = (int)nearbyint(h * rmax);
    box->height = h;
    box->width = w;
    box->top = (img_h - h) / 2;
    box->left = (img_w - w) / 2;
}

void hallu_rrc_sample(hallu_rng *rng, int img_h, int img_w, const float scale[2],
                      const float ratio[2], hallu_crop_box *box)
{
    for (int t = 0; t < 10; t++) {
        int h, w;
        if (rrc_try(rng, img_h, img_w, scale, ratio, &h, &w)) {
            box->height = h;
            box->width = w;
            box->top = (int)hallu_rng_below(rng, (uint32_t)(img_h - h + 1));
            box->left = (int)hallu_rng_below(rng, (uint32_t)(img_w - w + 1));
            return;
        }
    }
    rrc_fallback(img_h, img_w, ratio, box);
}

static int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* Start offset along one side of length n for a crop of length len. */
static int ccrop_offset(hallu_rng *rng, int n, int len, float lo, float hi, float alpha)
{
    int c0 = clampi((int)floor(n * (double)lo) - len / 2, 0, n - len);
    int c1 = clampi((int)floor(n * (double)hi) - len / 2, 0, n - len);
    double u = hallu_rng_beta(rng, alpha, alpha);
    return c0 + (int)floor((c1 - c0) * u);
}

void hallu_ccrop_sample(hallu_rng *rng, int img_h, int img_w, const float scale[2],
                        const float ratio[2], float box_lo, float box_hi, float alpha,
                        hallu_crop_box *box)
{
    for (int t = 0; t < 10; t++) {
        int h, w;
        if (rrc_try(rng, img_h, img_w, scale, ratio, &h, &w)) {
            box->height = h;
            box->width = w;
            box->top = ccrop_offset(rng, img_h, h, box_lo, box_hi, alpha);
            box->left = ccrop_offset(rng, img_w, w, box_lo, box_hi, alpha);
            return;
        }
    }
    rrc_fallback(img_h, img_w, ratio, box);
}

void hallu_jitter_sample(hallu_rng *rng, const float strength[4], hallu_jitter_params *p)
{
    uint32_t perm[4];
    hallu_rng_permutation(rng, perm, 4);
    for (int k = 0; k < 4; k++)
        p->order[k] = (int)perm[k];
    for (int k = 0; k < 3; k++) {
        float s = strength[k];
        p->enabled[k] = s > 0.0f;
        p->factor[k] = p->enabled[k] ? uniform_f32(rng, fmaxf(0.0f, 1.0f - s), 1.0f + s) : 1.0f;
    }
    p->enabled[3] = strength[3] > 0.0f;
    p->factor[3] = p->enabled[3] ? uniform_f32(rng, -strength[3], strength[3]) : 0.0f;
}
