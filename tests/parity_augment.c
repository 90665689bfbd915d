/* Parity with torchvision 0.14: applies hallu's transforms with the fixed
 * parameters recorded by tools/ref_augment.py and fails when any pixel differs
 * by more than 2 grey levels (2/255 before normalisation). Prints the largest
 * difference per transform. Usage: parity_augment augment_ref.bin */
#include "check.h"
#include "hallu/augment.h"

#include <stdlib.h>
#include <string.h>

enum { OP_RESIZED_CROP, OP_HFLIP, OP_BRIGHTNESS, OP_CONTRAST, OP_SATURATION, OP_HUE, OP_JITTER,
       OP_GRAYSCALE, OP_BLUR, OP_SOLARIZE, OP_RESIZE, OP_CENTER_CROP, OP_CHAIN, OP_COUNT };

static const char *op_names[OP_COUNT] = {"resized_crop", "hflip", "brightness", "contrast",
                                         "saturation", "hue", "color_jitter", "grayscale",
                                         "gaussian_blur", "solarize", "resize", "center_crop",
                                         "chain"};

typedef struct ref_case {
    char name[32];
    int32_t op, ip[16];
    float fp[16];
    hallu_image in, out;
} ref_case;

static int read_image(FILE *f, hallu_image *img)
{
    int32_t hw[2];
    if (fread(hw, sizeof hw, 1, f) != 1 || hw[0] <= 0 || hw[1] <= 0 || hw[0] > 4096 || hw[1] > 4096)
        return 0;
    img->h = hw[0];
    img->w = hw[1];
    img->capacity = (size_t)hw[0] * hw[1] * 3;
    img->data = malloc(img->capacity);
    return img->data && fread(img->data, img->capacity, 1, f) == 1;
}

static int read_case(FILE *f, ref_case *c)
{
    memset(c, 0, sizeof *c);
    if (fread(c->name, 32, 1, f) != 1 || fread(&c->op, 4, 1, f) != 1 ||
        fread(c->ip, sizeof c->ip, 1, f) != 1 || fread(c->fp, sizeof c->fp, 1, f) != 1)
        return 0;
    c->name[31] = 0;
    return c->op >= 0 && c->op < OP_COUNT && read_image(f, &c->in) && read_image(f, &c->out);
}

static hallu_status apply_jitter(hallu_image *img, const int32_t *order, const float *factor)
{
    hallu_jitter_params p;
    for (int k = 0; k < 4; k++) {
        p.order[k] = order[k];
        p.enabled[k] = 1;
        p.factor[k] = factor[k];
    }
    hallu_aug_color_jitter(img, &p);
    return HALLU_OK;
}

/* The chain case: resized_crop -> flip -> jitter -> grayscale -> blur -> solarize. */
static hallu_status apply_chain(const ref_case *c, hallu_image *dst, float *scratch, hallu_error *err)
{
    hallu_crop_box box = {c->ip[0], c->ip[1], c->ip[2], c->ip[3]};
    hallu_status st = hallu_aug_resized_crop(dst, &c->in, &box, err);
    if (st != HALLU_OK)
        return st;
    if (c->ip[6])
        hallu_aug_hflip(dst);
    apply_jitter(dst, c->ip + 8, c->fp);
    if (c->ip[7])
        hallu_aug_grayscale(dst);
    if (c->ip[12] > 0 && (st = hallu_aug_gaussian_blur(dst, c->ip[12], c->fp[4], scratch, err)))
        return st;
    if (c->ip[13])
        hallu_aug_solarize(dst, c->fp[5]);
    return HALLU_OK;
}

/* dst arrives with the reference output's size and enough capacity. */
static hallu_status apply_case(const ref_case *c, hallu_image *dst, float *scratch, hallu_error *err)
{
    hallu_crop_box box = {c->ip[0], c->ip[1], c->ip[2], c->ip[3]};
    switch (c->op) {
    case OP_RESIZED_CROP: return hallu_aug_resized_crop(dst, &c->in, &box, err);
    case OP_RESIZE: return hallu_aug_resize(dst, &c->in, err);
    case OP_CENTER_CROP: return hallu_aug_center_crop(dst, &c->in, err);
    case OP_CHAIN: return apply_chain(c, dst, scratch, err);
    default: break;
    }
    memcpy(dst->data, c->in.data, c->in.capacity);
    switch (c->op) {
    case OP_HFLIP: hallu_aug_hflip(dst); break;
    case OP_BRIGHTNESS: hallu_aug_brightness(dst, c->fp[0]); break;
    case OP_CONTRAST: hallu_aug_contrast(dst, c->fp[0]); break;
    case OP_SATURATION: hallu_aug_saturation(dst, c->fp[0]); break;
    case OP_HUE: hallu_aug_hue(dst, c->fp[0]); break;
    case OP_JITTER: return apply_jitter(dst, c->ip, c->fp);
    case OP_GRAYSCALE: hallu_aug_grayscale(dst); break;
    case OP_BLUR: return hallu_aug_gaussian_blur(dst, c->ip[0], c->fp[0], scratch, err);
    case OP_SOLARIZE: hallu_aug_solarize(dst, c->fp[0]); break;
    default: return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "unknown op %d", c->op);
    }
    return HALLU_OK;
}

static int compare(const hallu_image *a, const hallu_image *b, int *n_off)
{
    int m = 0;
    *n_off = 0;
    for (size_t i = 0; i < a->capacity; i++) {
        int d = abs((int)a->data[i] - (int)b->data[i]);
        *n_off += d != 0;
        m = d > m ? d : m;
    }
    return m;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : HALLU_BINARY_DIR "/augment_parity/augment_ref.bin";
    FILE *f = fopen(path, "rb");
    char magic[8];
    uint32_t hdr[2];
    if (!f || fread(magic, 8, 1, f) != 1 || memcmp(magic, "HALUAUG1", 8) != 0 ||
        fread(hdr, sizeof hdr, 1, f) != 1 || hdr[0] != 1) {
        fprintf(stderr, "parity_augment: cannot read reference file %s\n", path);
        return 1;
    }
    int worst[OP_COUNT], count[OP_COUNT];
    long off[OP_COUNT], total[OP_COUNT];
    memset(worst, 0, sizeof worst);
    memset(count, 0, sizeof count);
    memset(off, 0, sizeof off);
    memset(total, 0, sizeof total);
    for (uint32_t k = 0; k < hdr[1]; k++) {
        ref_case c;
        if (!CHECK(read_case(f, &c)))
            break;
        hallu_image dst = {malloc(c.out.capacity), c.out.h, c.out.w, c.out.capacity};
        float *scratch = malloc(sizeof(float) * c.in.capacity);
        hallu_error err;
        hallu_error_clear(&err);
        hallu_status st = apply_case(&c, &dst, scratch, &err);
        CHECK_MSG(st == HALLU_OK, "%s: %s", c.name, err.msg);
        int n_off = 0, d = st == HALLU_OK ? compare(&dst, &c.out, &n_off) : 255;
        CHECK_MSG(d <= 2, "%s: max abs diff %d grey levels (%d values differ)", c.name, d, n_off);
        worst[c.op] = d > worst[c.op] ? d : worst[c.op];
        count[c.op]++;
        off[c.op] += n_off;
        total[c.op] += (long)c.out.capacity;
        free(dst.data);
        free(scratch);
        free(c.in.data);
        free(c.out.data);
    }
    fclose(f);
    printf("%-14s %6s %14s %18s\n", "transform", "cases", "max |diff|", "values off by >0");
    for (int op = 0; op < OP_COUNT; op++)
        if (count[op])
            printf("%-14s %6d %8d/255 %10ld / %ld\n", op_names[op], count[op], worst[op], off[op],
                   total[op]);
    return check_summary();
}
