/* Colour ops with torchvision 0.14's uint8 tensor semantics: arithmetic in
 * float32 (Python scalars become float32 operands), clamp to [0, 255], then
 * .to(uint8), which truncates. Ops that depend on one value per pixel use a
 * 256-entry table built with the very same float expression. */
#include "hallu/augment.h"

#include <math.h>

static inline uint8_t gray_u8(const uint8_t *px)
{
    float l = 0.2989f * (float)px[0] + 0.587f * (float)px[1];
    l = l + 0.114f * (float)px[2];
    return (uint8_t)l; /* .to(uint8): truncation; l is within [0, 255] */
}

void hallu_aug_grayscale(hallu_image *img)
{
    size_t n = (size_t)img->h * img->w;
    uint8_t *p = img->data;
    for (size_t i = 0; i < n; i++, p += 3) {
        uint8_t l = gray_u8(p);
        p[0] = p[1] = p[2] = l;
    }
}

/* _blend: (ratio * a + (1.0 - ratio) * b).clamp(0, 255).to(uint8); (1.0 - ratio)
 * is computed in double by Python, then used as a float32 operand. */
static inline uint8_t blend_u8(float ratio, float one_minus, float a, float b)
{
    float v = ratio * a + one_minus * b;
    if (v < 0.0f)
        v = 0.0f;
    if (v > 255.0f)
        v = 255.0f;
    return (uint8_t)v;
}

static void apply_lut(hallu_image *img, const uint8_t lut[256])
{
    size_t n = (size_t)img->h * img->w * 3;
    for (size_t i = 0; i < n; i++)
        img->data[i] = lut[img->data[i]];
}

void hallu_aug_brightness(hallu_image *img, float factor)
{
    float om = (float)(1.0 - (double)factor);
    uint8_t lut[256];
    for (int v = 0; v < 256; v++)
        lut[v] = blend_u8(factor, om, (float)v, 0.0f);
    apply_lut(img, lut);
}

void hallu_aug_contrast(hallu_image *img, float factor)
{
    size_t n = (size_t)img->h * img->w;
    /* Integer sum is exact; torch's float32 mean of these integers is exact too
     * up to the final division. */
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += gray_u8(img->data + i * 3);
    float mean = (float)sum / (float)n;
    float om = (float)(1.0 - (double)factor);
    uint8_t lut[256];
    for (int v = 0; v < 256; v++)
        lut[v] = blend_u8(factor, om, (float)v, mean);
    apply_lut(img, lut);
}

void hallu_aug_saturation(hallu_image *img, float factor)
{
    float om = (float)(1.0 - (double)factor);
    size_t n = (size_t)img->h * img->w;
    uint8_t *p = img->data;
    for (size_t i = 0; i < n; i++, p += 3) {
        float l = (float)gray_u8(p);
        p[0] = blend_u8(factor, om, (float)p[0], l);
        p[1] = blend_u8(factor, om, (float)p[1], l);
        p[2] = blend_u8(factor, om, (float)p[2], l);
    }
}

static inline float max3(float a, float b, float c)
{
    float m = a > b ? a : b;
    return m > c ? m : c;
}

static inline float min3(float a, float b, float c)
{
    float m = a < b ? a : b;
    return m < c ? m : c;
}

static inline float clamp01(float v)
{
    v = v < 0.0f ? 0.0f : v;
    return v > 1.0f ? 1.0f : v;
}

/* functional_tensor._rgb2hsv + hue shift + _hsv2rgb for one pixel, with the same
 * float32 operations. Rewrites that keep every result bit-identical: fmod/floor
 * on known ranges become one compare and an exact subtraction, and torch's three
 * masked hue terms become the one branch whose mask is set. unit[v] = v / 255. */
static void hue_pixel(uint8_t *px, float shift, const float *unit)
{
    float r = unit[px[0]], g = unit[px[1]], b = unit[px[2]];
    float maxc = max3(r, g, b), minc = min3(r, g, b);
    int eqc = maxc == minc;
    float cr = maxc - minc;
    float s = cr / (eqc ? 1.0f : maxc);
    float crd = eqc ? 1.0f : cr;
    float h;
    if (maxc == r)
        h = (maxc - b) / crd - (maxc - g) / crd;
    else if (maxc == g)
        h = 2.0f + (maxc - r) / crd - (maxc - b) / crd;
    else
        h = 4.0f + (maxc - g) / crd - (maxc - r) / crd;
    h = h / 6.0f + 1.0f;               /* in [5/6, 11/6]: fmod(h, 1) is one exact step */
    h = h >= 1.0f ? h - 1.0f : h;
    h = h + shift;                     /* torch.remainder(h, 1.0) on [-0.5, 1.5) */
    h = h < 0.0f ? h + 1.0f : h >= 1.0f ? h - 1.0f : h;
    float v = maxc;
    float h6 = h * 6.0f;
    int sector = (int)h6;              /* floor: h6 >= 0 */
    float f = h6 - (float)sector;
    float p = clamp01(v * (1.0f - s));
    float q = clamp01(v * (1.0f - s * f));
    float t = clamp01(v * (1.0f - s * (1.0f - f)));
    float o0, o1, o2;
    switch (sector % 6) {
    case 0: o0 = v; o1 = t; o2 = p; break;
    case 1: o0 = q; o1 = v; o2 = p; break;
    case 2: o0 = p; o1 = v; o2 = t; break;
    case 3: o0 = p; o1 = q; o2 = v; break;
    case 4: o0 = t; o1 = p; o2 = v; break;
    default: o0 = v; o1 = p; o2 = q; break;
    }
    px[0] = (uint8_t)(o0 * 255.0f); /* truncation, as .to(uint8) */
    px[1] = (uint8_t)(o1 * 255.0f);
    px[2] = (uint8_t)(o2 * 255.0f);
}

void hallu_aug_hue(hallu_image *img, float factor)
{
    float unit[256];
    for (int v = 0; v < 256; v++)
        unit[v] = (float)v / 255.0f;
    size_t n = (size_t)img->h * img->w;
    for (size_t i = 0; i < n; i++)
        hue_pixel(img->data + i * 3, factor, unit);
}

void hallu_aug_color_jitter(hallu_image *img, const hallu_jitter_params *p)
{
    for (int k = 0; k < 4; k++) {
        int op = p->order[k];
        if (op < 0 || op > 3 || !p->enabled[op])
            continue;
        float f = p->factor[op];
        switch (op) {
        case 0: hallu_aug_brightness(img, f); break;
        case 1: hallu_aug_contrast(img, f); break;
        case 2: hallu_aug_saturation(img, f); break;
        default: hallu_aug_hue(img, f); break;
        }
    }
}
