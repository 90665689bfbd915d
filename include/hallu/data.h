/* Datasets: uniform access to images + labels whatever the on-disk format.
 * Specs are "KIND:PATH" (cifar10:DIR, cifar100:DIR, stl10:DIR, imagefolder:DIR,
 * tinyimagenet:DIR, packed:FILE) or "synthetic[:N]". Images come out as uint8
 * RGB, HWC, row-major. A dataset is read-only after open: hallu_dataset_get is
 * safe to call from many threads at once. */
#ifndef HALLU_DATA_H
#define HALLU_DATA_H

#include "hallu/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum hallu_split {
    HALLU_SPLIT_TRAIN = 0,
    HALLU_SPLIT_TEST,        /* "test" (tinyimagenet: the labelled val split) */
    HALLU_SPLIT_UNLABELED,   /* stl10's 100k unlabeled images */
} hallu_split;

/* Parses "train" / "test" / "val" / "unlabeled". */
hallu_status hallu_split_parse(const char *text, hallu_split *out, hallu_error *err);
const char *hallu_split_name(hallu_split split);

/* A decoded image in a caller-owned buffer. */
typedef struct hallu_image {
    uint8_t *data;       /* h * w * 3 bytes, RGB HWC */
    int h, w;
    size_t capacity;     /* bytes available at data */
} hallu_image;

typedef struct hallu_dataset hallu_dataset;

hallu_status hallu_dataset_open(hallu_dataset **out, const char *spec, hallu_split split,
                                hallu_error *err);
void hallu_dataset_close(hallu_dataset *ds);

int64_t hallu_dataset_size(const hallu_dataset *ds);
int hallu_dataset_num_classes(const hallu_dataset *ds);        /* 0 when unlabeled */
const char *hallu_dataset_class_name(const hallu_dataset *ds, int cls);
/* Native image size when every image has the same size (CIFAR 32, STL 96, ...),
 * else 0 (e.g. an ImageFolder of mixed sizes). */
int hallu_dataset_image_height(const hallu_dataset *ds);
int hallu_dataset_image_width(const hallu_dataset *ds);
/* Largest h*w*3 any image needs (upper bound for buffers; for variable-size
 * folders it is known only after hallu_dataset_get reports it). */
size_t hallu_dataset_max_image_bytes(const hallu_dataset *ds);
/* Human-readable description of where image i comes from ("file.jpg", "data_batch_2.bin record 17"). */
void hallu_dataset_describe(const hallu_dataset *ds, int64_t i, char *buf, size_t bufsize);

/* Decodes image i into img (grows nothing: when img->capacity is too small the
 * call fails with HALLU_ERR_INVALID_ARG and sets img->h/w so the caller can
 * resize). label gets the class index, or -1 when unlabeled. */
hallu_status hallu_dataset_get(const hallu_dataset *ds, int64_t i, hallu_image *img,
                               int32_t *label, hallu_error *err);

#ifdef __cplusplus
}
#endif
#endif
