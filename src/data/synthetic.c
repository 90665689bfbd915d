/* "synthetic[:N]": a procedural 10-class set of 32x32 images drawn on the fly
 * from (fixed seed, index) with hallu_rng, so it needs no file and is the same
 * on every machine.
 *
 * The class is a texture that fills the image: horizontal stripes, vertical
 * stripes, checker, dots, diagonal cross-hatch, concentric rings, bricks, grid
 * lines, zigzag, irregular spots. It lives where the SSL augmentations keep it,
 * as object textures and layouts do in natural images: every crop that
 * RandomResizedCrop (scale >= 0.2) or ContrastiveCrop takes still holds several
 * periods of it, a horizontal flip maps each texture onto its own class (no
 * class has a mirror twin), and colour jitter and grayscale leave its
 * luminance pattern. Everything else is drawn independently of the class and is
 * what a network must learn to ignore: the two colours (any hue, saturation up
 * to 0.5, a luminance gap of 0.3-0.5 so the pattern survives grayscale), which
 * colour is ink, the period (3.5-5.5 pixels), a small rotation, the phase and
 * centre, an illumination gradient and pixel noise. An untrained network's
 * features already separate some textures (its kNN "floor" is well above
 * chance), and a short contrastive run on them (the main job) lifts the kNN
 * accuracy far above that floor; docs/RESULTS.md has the figures.
 * train holds N images (default 2000), test N/4 (default 500) drawn from a
 * disjoint range of rng streams. Label of image i is i % 10 (balanced). */
#include "data/dataset_internal.h"
#include "hallu/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SYN_SIDE 32
#define SYN_CLASSES 10
#define SYN_SEED 0x5eed5eedULL
#define SYN_TEST_STREAM (1ULL << 40)
#define SYN_DEFAULT_N 2000
#define SYN_SPOT_CELLS 16        /* spots: jittered grid of up to 16x16 cells */

static const char *const syn_names[SYN_CLASSES] = {
    "hstripes", "vstripes", "checker", "dots", "crosshatch",
    "rings", "bricks", "grid", "zigzag", "spots",
};

typedef struct syn_impl {
    uint64_t stream0;
} syn_impl;

/* One image's texture: class, geometry and (spots) the dot offsets. */
typedef struct texture {
    int cls;
    double period;               /* pixels */
    double cx, cy;               /* centre of rotation / rings */
    double cosa, sina;           /* rotation of the texture coordinates */
    double pu, pv;               /* phase */
    float spot_du[SYN_SPOT_CELLS][SYN_SPOT_CELLS], spot_dv[SYN_SPOT_CELLS][SYN_SPOT_CELLS];
} texture;

/* Position within a period: t in [0, 1). */
static double frac_period(double t, double period)
{
    double q = t / period;
    return q - floor(q);
}

/* 1 where the texture's ink is at texture coordinates (u, v), else 0. */
static int ink(const texture *t, double u, double v)
{
    double p = t->period;
    double fu = frac_period(u, p), fv = frac_period(v, p);
    int iu = (int)floor(u / p), iv = (int)floor(v / p);
    switch (t->cls) {
    case 0: return fv < 0.5;                                        /* hstripes */
    case 1: return fu < 0.5;                                        /* vstripes */
    case 2: return ((iu + iv) & 1) == 0;                            /* checker */
    case 3: {                                                       /* dots */
        double du = fu - 0.5, dv = fv - 0.5;
        return du * du + dv * dv < 0.09;
    }
    case 4: {                                                       /* crosshatch: both diagonals */
        double a = frac_period(u + v, 1.5 * p), b = frac_period(u - v, 1.5 * p);
        return a < 0.22 || b < 0.22;
    }
    case 5: return frac_period(sqrt(u * u + v * v), p) < 0.5;       /* rings */
    case 6: {                                                       /* bricks: rows offset by half */
        double fb = frac_period(u + ((iv & 1) ? p : 0.0), 2.0 * p);
        return fv < 0.25 || fb < 0.125;
    }
    case 7: return fu < 0.25 || fv < 0.25;                          /* grid lines */
    case 8: {                                                       /* zigzag rows */
        double tri = fabs(frac_period(u, 2.0 * p) - 0.5) * 2.0;    /* 0..1..0 */
        return frac_period(v + tri * p, p) < 0.4;
    }
    default: {                                                      /* spots: jittered grid */
        int cu = ((iu % SYN_SPOT_CELLS) + SYN_SPOT_CELLS) % SYN_SPOT_CELLS;
        int cv = ((iv % SYN_SPOT_CELLS) + SYN_SPOT_CELLS) % SYN_SPOT_CELLS;
        double du = fu - t->spot_du[cv][cu], dv = fv - t->spot_dv[cv][cu];
        return du * du + dv * dv < 0.06;
    }
    }
}

/* Ink coverage of pixel (x, y), 3x3 supersampled so that edges are soft. */
static double coverage(const texture *t, int x, int y)
{
    int hits = 0;
    for (int sy = 0; sy < 3; sy++)
        for (int sx = 0; sx < 3; sx++) {
            double dx = x + (sx + 0.5) / 3.0 - t->cx, dy = y + (sy + 0.5) / 3.0 - t->cy;
            double u = t->cosa * dx + t->sina * dy + t->pu, v = -t->sina * dx + t->cosa * dy + t->pv;
            hits += ink(t, u, v);
        }
    return hits / 9.0;
}

static void draw_texture(texture *t, hallu_rng *rng, int cls)
{
    t->cls = cls;
    t->period = hallu_rng_range(rng, 6.0, 8.0);
    t->cx = hallu_rng_range(rng, 4, SYN_SIDE - 4);
    t->cy = hallu_rng_range(rng, 4, SYN_SIDE - 4);
    double a = hallu_rng_range(rng, -0.2, 0.2);    /* small: horizontal stays apart from vertical */
    t->cosa = cos(a);
    t->sina = sin(a);
    /* Rings keep their centre in the image; the others shift by any phase. */
    t->pu = cls == 5 ? 0.0 : hallu_rng_range(rng, 0, 4 * t->period);
    t->pv = cls == 5 ? 0.0 : hallu_rng_range(rng, 0, 4 * t->period);
    for (int i = 0; i < SYN_SPOT_CELLS; i++)
        for (int j = 0; j < SYN_SPOT_CELLS; j++) {
            t->spot_du[i][j] = (float)hallu_rng_range(rng, 0.25, 0.75);
            t->spot_dv[i][j] = (float)hallu_rng_range(rng, 0.25, 0.75);
        }
}

/* HSV (h in [0,1)) to RGB in 0..255. */
static void hsv_to_rgb(double h, double sat, double val, double rgb[3])
{
    double h6 = (h - floor(h)) * 6.0, f = h6 - floor(h6);
    double p = val * (1 - sat), q = val * (1 - sat * f), t = val * (1 - sat * (1 - f));
    double r, g, b;
    switch ((int)h6 % 6) {
    case 0: r = val; g = t; b = p; break;
    case 1: r = q; g = val; b = p; break;
    case 2: r = p; g = val; b = t; break;
    case 3: r = p; g = q; b = val; break;
    case 4: r = t; g = p; b = val; break;
    default: r = val; g = p; b = q; break;
    }
    rgb[0] = 255 * r;
    rgb[1] = 255 * g;
    rgb[2] = 255 * b;
}

/* Ink and paper colours, independent of the class: any hues, light ink on
 * darker paper with a luminance gap of 0.3-0.5 so that the texture survives
 * grayscale. */
static void draw_colours(hallu_rng *rng, double ink_rgb[3], double paper_rgb[3])
{
    double light = hallu_rng_range(rng, 0.6, 0.95);
    double dark = light - hallu_rng_range(rng, 0.3, 0.5);
    hsv_to_rgb(hallu_rng_uniform(rng), hallu_rng_range(rng, 0.0, 0.15), light, ink_rgb);
    hsv_to_rgb(hallu_rng_uniform(rng), hallu_rng_range(rng, 0.0, 0.15), dark, paper_rgb);
}

static uint8_t clamp_u8(double v)
{
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5);
}

static void render(uint64_t stream, int cls, uint8_t *out)
{
    hallu_rng rng;
    hallu_rng_init(&rng, SYN_SEED, stream);
    texture t;
    draw_texture(&t, &rng, cls);
    double ink_rgb[3], paper_rgb[3];
    draw_colours(&rng, ink_rgb, paper_rgb);
    /* Illumination: brightness x (1 +- 0.25) across the image in a random direction. */
    double ga = hallu_rng_range(&rng, 0, 6.283185307179586), gain = hallu_rng_range(&rng, 0, 0.25);
    double gx = gain * cos(ga) / SYN_SIDE, gy = gain * sin(ga) / SYN_SIDE;
    double noise = hallu_rng_range(&rng, 3, 10);
    for (int y = 0; y < SYN_SIDE; y++)
        for (int x = 0; x < SYN_SIDE; x++) {
            double cov = coverage(&t, x, y);
            double light = 1.0 + (x - 15.5) * gx + (y - 15.5) * gy;
            for (int c = 0; c < 3; c++) {
                double v = (paper_rgb[c] + (ink_rgb[c] - paper_rgb[c]) * cov) * light + noise * hallu_rng_normal(&rng);
                out[(y * SYN_SIDE + x) * 3 + c] = clamp_u8(v);
            }
        }
}

static hallu_status syn_label(const hallu_dataset *ds, int64_t i, int32_t *label,
                              hallu_error *err)
{
    *label = (int32_t)(i % SYN_CLASSES);
    return HALLU_OK;
}

static hallu_status syn_get(const hallu_dataset *ds, int64_t i, hallu_image *img,
                            int32_t *label, hallu_error *err)
{
    const syn_impl *s = ds->impl;
    hallu_status st = image_prepare(img, SYN_SIDE, SYN_SIDE, "synthetic", err);
    if (st != HALLU_OK)
        return st;
    *label = (int32_t)(i % SYN_CLASSES);
    render(s->stream0 + (uint64_t)i, *label, img->data);
    return HALLU_OK;
}

static void syn_describe(const hallu_dataset *ds, int64_t i, char *buf, size_t n)
{
    const syn_impl *s = ds->impl;
    snprintf(buf, n, "synthetic %s image %lld", s->stream0 ? "test" : "train", (long long)i);
}

static const dataset_ops syn_ops = {
    .get = syn_get, .label = syn_label, .describe = syn_describe, .destroy = free,
};

static hallu_status parse_count(const char *arg, int64_t *n, hallu_error *err)
{
    *n = SYN_DEFAULT_N;
    if (!arg)
        return HALLU_OK;
    char *end = NULL;
    long long v = strtoll(arg, &end, 10);
    if (!*arg || *end || v < SYN_CLASSES || v > (1LL << 32))
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                               "data spec 'synthetic:%s': N must be an integer in %d..%lld", arg,
                               SYN_CLASSES, 1LL << 32);
    *n = v;
    return HALLU_OK;
}

hallu_status synthetic_open(hallu_dataset **out, const char *arg, hallu_split split,
                            hallu_error *err)
{
    *out = NULL;
    int64_t n;
    hallu_status st = parse_count(arg, &n, err);
    if (st != HALLU_OK)
        return st;
    if (split == HALLU_SPLIT_UNLABELED)
        return hallu_error_set(err, HALLU_ERR_UNSUPPORTED,
                               "synthetic has no 'unlabeled' split (train and test only)");
    syn_impl *s = calloc(1, sizeof *s);
    if (!s)
        return hallu_error_set(err, HALLU_ERR_OOM, "synthetic: out of memory");
    s->stream0 = split == HALLU_SPLIT_TEST ? SYN_TEST_STREAM : 0;
    if ((st = dataset_create(out, "synthetic", &syn_ops, s, err)) != HALLU_OK)
        return st;
    hallu_dataset *ds = *out;
    ds->size = split == HALLU_SPLIT_TEST ? (n / 4 > 0 ? n / 4 : 1) : n;
    ds->num_classes = SYN_CLASSES;
    ds->h = ds->w = SYN_SIDE;
    ds->max_bytes = SYN_SIDE * SYN_SIDE * 3;
    ds->class_names = calloc(SYN_CLASSES, sizeof *ds->class_names);
    for (int c = 0; ds->class_names && c < SYN_CLASSES; c++)
        if (!(ds->class_names[c] = strdup(syn_names[c])))
            break;
    if (!ds->class_names || !ds->class_names[SYN_CLASSES - 1]) {
        hallu_dataset_close(ds);
        *out = NULL;
        return hallu_error_set(err, HALLU_ERR_OOM, "synthetic: out of memory");
    }
    return HALLU_OK;
}
