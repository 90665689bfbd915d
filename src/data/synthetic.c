/* "synthetic[:N]": a procedural 10-class set of 32x32 images drawn on the fly
 * from (fixed seed, index) with hallu_rng, so it needs no file and is the same
 * on every machine. The class is a shape (circle, square, triangle, cross,
 * ring, horizontal stripes, vertical stripes, checker, diamond, blob) drawn in
 * a hue of its own (class k: hue k/10 +- 0.03, random saturation and value) on
 * a greyish gradient background; position, scale, rotation and pixel noise vary.
 * The class hue makes the set learnable by a short CPU run (the main job); it is
 * also a shortcut an untrained network's features partly pick up, which is why
 * `hallu train` reports the untrained kNN floor beside the trained accuracy.
 * train holds N images (default
 * 2000), test N/4 (default 500) drawn from a disjoint range of rng streams.
 * Label of image i is i % 10 (balanced). */
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

static const char *const syn_names[SYN_CLASSES] = {
    "circle", "square", "triangle", "cross", "ring",
    "hstripes", "vstripes", "checker", "diamond", "blob",
};

typedef struct syn_impl {
    uint64_t stream0;
} syn_impl;

typedef struct shape {
    int cls;
    double cx, cy, r, cosa, sina;
    int period;
    double bx[3], by[3], br[3];   /* blob circles (unit coordinates) */
} shape;

static bool inside_unit(const shape *s, double u, double v, double px, double py)
{
    double d2 = u * u + v * v;
    int p = s->period;
    bool box = fabs(u) <= 0.85 && fabs(v) <= 0.85;
    switch (s->cls) {
    case 0: return d2 <= 1.0;
    case 1: return fabs(u) <= 0.75 && fabs(v) <= 0.75;
    case 2: return v <= 0.75 && v >= -0.95 && fabs(u) <= (v + 0.95) * 0.55;
    case 3: return (fabs(u) <= 0.28 && fabs(v) <= 0.95) || (fabs(v) <= 0.28 && fabs(u) <= 0.95);
    case 4: return d2 <= 1.0 && d2 >= 0.36;
    case 5: return box && ((int)floor(py / p) & 1) == 0;
    case 6: return box && ((int)floor(px / p) & 1) == 0;
    case 7: return box && (((int)floor(px / p) + (int)floor(py / p)) & 1) == 0;
    case 8: return fabs(u) + fabs(v) <= 1.0;
    default:
        for (int k = 0; k < 3; k++) {
            double du = u - s->bx[k], dv = v - s->by[k];
            if (du * du + dv * dv <= s->br[k] * s->br[k])
                return true;
        }
        return false;
    }
}

/* Fraction of a pixel covered (2x2 supersampling softens the edges). */
static double coverage(const shape *s, int x, int y)
{
    int hits = 0;
    for (int sy = 0; sy < 2; sy++)
        for (int sx = 0; sx < 2; sx++) {
            double px = x + 0.25 + 0.5 * sx, py = y + 0.25 + 0.5 * sy;
            double dx = (px - s->cx) / s->r, dy = (py - s->cy) / s->r;
            /* Stripes and checkers stay axis-aligned: rotation would blur h vs v. */
            bool rot = s->cls < 5 || s->cls > 7;
            double u = rot ? s->cosa * dx + s->sina * dy : dx;
            double v = rot ? -s->sina * dx + s->cosa * dy : dy;
            hits += inside_unit(s, u, v, px, py);
        }
    return hits / 4.0;
}

static void draw_shape(shape *s, hallu_rng *rng, int cls)
{
    s->cls = cls;
    s->cx = hallu_rng_range(rng, 11, 21);
    s->cy = hallu_rng_range(rng, 11, 21);
    s->r = hallu_rng_range(rng, 7, 12);
    double a = hallu_rng_range(rng, -0.35, 0.35);   /* < 45 deg: squares stay apart from diamonds */
    s->cosa = cos(a);
    s->sina = sin(a);
    s->period = 2 + (int)hallu_rng_below(rng, 2);
    for (int k = 0; k < 3; k++) {
        s->bx[k] = hallu_rng_range(rng, -0.45, 0.45);
        s->by[k] = hallu_rng_range(rng, -0.45, 0.45);
        s->br[k] = hallu_rng_range(rng, 0.35, 0.6);
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

static void draw_colours(hallu_rng *rng, int cls, double bg0[3], double bg1[3], double fg[3])
{
    double hue = cls / (double)SYN_CLASSES + hallu_rng_range(rng, -0.03, 0.03);
    hsv_to_rgb(hue, hallu_rng_range(rng, 0.6, 1.0), hallu_rng_range(rng, 0.6, 1.0), fg);
    double grey = hallu_rng_range(rng, 20, 110);
    for (int c = 0; c < 3; c++) {
        bg0[c] = grey + hallu_rng_range(rng, -15, 15);
        bg1[c] = bg0[c] + hallu_rng_range(rng, -40, 40);
    }
}

static uint8_t clamp_u8(double v)
{
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5);
}

static void render(uint64_t stream, int cls, uint8_t *out)
{
    hallu_rng rng;
    hallu_rng_init(&rng, SYN_SEED, stream);
    shape s;
    draw_shape(&s, &rng, cls);
    double bg0[3], bg1[3], fg[3];
    draw_colours(&rng, cls, bg0, bg1, fg);
    double ga = hallu_rng_range(&rng, 0, 6.283185307179586);
    double gx = cos(ga) / SYN_SIDE, gy = sin(ga) / SYN_SIDE;
    double noise = hallu_rng_range(&rng, 4, 16);
    for (int y = 0; y < SYN_SIDE; y++)
        for (int x = 0; x < SYN_SIDE; x++) {
            double t = 0.5 + (x - 15.5) * gx + (y - 15.5) * gy;
            double cov = coverage(&s, x, y);
            for (int c = 0; c < 3; c++) {
                double bg = bg0[c] + (bg1[c] - bg0[c]) * t;
                double v = bg + (fg[c] - bg) * cov + noise * hallu_rng_normal(&rng);
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
