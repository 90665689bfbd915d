/* Datasets: uniform access to images + labels whatever the on-disk format.
 * Specs are "KIND:PATH" (cifar10:DIR, cifar100:DIR, stl10:DIR, imagefolder:DIR,
 * tinyimagenet:DIR, packed:FILE) or "synthetic[:N]". Images come out as uint8
 * RGB, HWC, row-major. A dataset is read-only after open: hallu_dataset_get is
 * safe to call from many threads at once.
 *
 * Layouts and splits:
 *   cifar10:DIR      data_batch_1..5.bin (train), test_batch.bin (test); class
 *                    names from batches.meta.txt when present, else "0".."9".
 *   cifar100:DIR     train.bin / test.bin, fine labels (100 classes); names from
 *                    fine_label_names.txt when present.
 *   stl10:DIR        DIR or DIR/stl10_binary: {train,test}_{X,y}.bin and
 *                    unlabeled_X.bin (labels 1..10 become 0..9); class_names.txt.
 *   imagefolder:DIR  DIR/<class>/<name>.{jpg,jpeg,png} (any case) is the train split;
 *                    or DIR/train/<class>/... with DIR/test (else DIR/val) as the
 *                    test split, classes always taken from the train folder.
 *                    Classes and files sort by strcmp (as torchvision). Images
 *                    are decoded lazily on each get.
 *   tinyimagenet:DIR classes = sorted wnids.txt (else sorted train/ folders);
 *                    train/<wnid>/images/<name>; test = val/images with labels from
 *                    val/val_annotations.txt, in that file's order.
 *   packed:FILE      one split written by hallu_packed_write; packed:DIR reads
 *                    DIR/<split>.hpk.
 *   synthetic[:N]    procedural 10-class 32x32 textures (stripes, checker, dots,
 *                    ... in random colours; docs/SYNTHETIC.md): N train (default
 *                    2000), N/4 test from disjoint random streams; no file needed.
 * Opening a split that a kind does not have fails with HALLU_ERR_UNSUPPORTED;
 * binary files are memory-mapped and their sizes and labels checked on open. */
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

/* Label of image i without decoding it (cheap for every kind); -1 when unlabeled. */
hallu_status hallu_dataset_get_label(const hallu_dataset *ds, int64_t i, int32_t *label,
                                     hallu_error *err);
/* The spec's KIND ("cifar10", "imagefolder", ...). */
const char *hallu_dataset_kind(const hallu_dataset *ds);

/* Reads the header of every image of a variable-size kind (imagefolder,
 * tinyimagenet) so that image_height/width report the common size when all
 * images share one, and max_image_bytes the largest. A no-op for fixed-size
 * kinds. Not thread-safe: call it before sharing the dataset. */
hallu_status hallu_dataset_probe_sizes(hallu_dataset *ds, hallu_error *err);
/* HALLU_OK when every image has one size (always for fixed-size kinds; for
 * variable-size kinds after hallu_dataset_probe_sizes). Otherwise
 * HALLU_ERR_INVALID_ARG with a message naming the first image whose size
 * differs from the first image's, and both sizes. */
hallu_status hallu_dataset_check_uniform_size(const hallu_dataset *ds, hallu_error *err);

/* ---- image decoding (JPEG via libjpeg, PNG via libpng) ---------------------- */

/* Decodes a JPEG or PNG held in memory (the format is sniffed from its first
 * bytes) into img as RGB8 HWC: grayscale, palette, CMYK/YCCK, 1/2/4/16-bit
 * samples and alpha are converted (16-bit keeps the high byte, alpha is
 * dropped). When img->capacity is too small it fails with
 * HALLU_ERR_INVALID_ARG after setting img->h/w. name is used in messages only.
 * Corrupt-data warnings (e.g. a truncated JPEG) count as errors. */
hallu_status hallu_image_decode(const uint8_t *bytes, size_t len, const char *name,
                                hallu_image *img, hallu_error *err);
/* Reads only the header: image size in pixels. */
hallu_status hallu_image_probe(const uint8_t *bytes, size_t len, const char *name, int *h, int *w,
                               hallu_error *err);

/* ---- statistics ----------------------------------------------------------- */

typedef struct hallu_dataset_stats {
    int64_t images;          /* images the statistics cover */
    int64_t bad;             /* images that failed to decode (skipped when skip_bad) */
    double mean[3], std[3];  /* per channel over all pixels, pixel values / 255 */
    int min_h, min_w, max_h, max_w;   /* over the images covered */
} hallu_dataset_stats;

/* Per-channel mean/std over every image when the dataset has at most
 * max_images images (<= 0: no limit), else over max_images evenly spaced ones
 * (index floor(k * size / max_images)), so the result is deterministic. With
 * skip_bad a failed decode is counted in bad and skipped, else it is returned. */
hallu_status hallu_dataset_compute_stats(const hallu_dataset *ds, int64_t max_images,
                                         int skip_bad, hallu_dataset_stats *out,
                                         hallu_error *err);

/* ---- packed files ----------------------------------------------------------- */

/* A packed file ("packed:FILE") holds one split decoded once into a
 * memory-mappable layout (all integers little-endian):
 *   0   "HALLUPK1"          8   u32 version (1)    12  u32 split
 *   16  u64 count           24  u32 height         28  u32 width
 *   32  u32 channels (3)    36  u32 num_classes    40  u64 names_offset (128)
 *   48  u64 names_bytes     56  u64 pixels_offset  64  u64 labels_offset
 *   72  u64 file_size       80  u64 FNV-1a 64 of the pixel section
 *   88  u64 FNV-1a 64 of the names + labels sections
 *   96  reserved (zero)     120 u64 FNV-1a 64 of header bytes 0..119
 * then num_classes NUL-terminated class names, padding to 64 bytes, count
 * images of height x width x 3 uint8 (RGB HWC), then count int32 labels (-1:
 * unlabeled). Opening checks every size, offset, label and checksum; the pixel
 * checksum (the only one that needs to read every image) may be skipped with
 * hallu_packed_open(..., verify_pixels = 0) when speed matters more than
 * catching on-disk corruption. "packed:DIR" reads DIR/<split>.hpk. */
#define HALLU_PACKED_MAGIC "HALLUPK1"
#define HALLU_PACKED_VERSION 1u
#define HALLU_PACKED_HEADER_BYTES 128

hallu_status hallu_packed_open(hallu_dataset **out, const char *path, int verify_pixels,
                               hallu_error *err);

typedef struct hallu_pack_options {
    /* 0: keep the native size (every image must have the same size). N > 0:
     * resize so the shorter side is N (antialiased bilinear, like PIL's
     * resize), then centre-crop N x N. */
    int size;
    int skip_bad;            /* leave out images that fail to decode (counted) */
    /* Called every few hundred images and at the end (may be NULL). */
    void (*progress)(void *ctx, int64_t done, int64_t total);
    void *progress_ctx;
} hallu_pack_options;

/* Decodes every image of ds and writes path atomically (temp file, fsync,
 * rename). skipped (may be NULL) gets the number of images left out. */
hallu_status hallu_packed_write(const hallu_dataset *ds, hallu_split split, const char *path,
                                const hallu_pack_options *opt, int64_t *skipped,
                                hallu_error *err);

#ifdef __cplusplus
}
#endif
#endif
