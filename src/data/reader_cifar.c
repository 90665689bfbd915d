/* CIFAR-10 / CIFAR-100 binary version: fixed-size records of label byte(s)
 * followed by 3072 bytes of R, G, B planes of 32x32. CIFAR-100 records hold a
 * coarse then a fine label; the fine one (100 classes) is used. */
#include "data/dataset_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CIFAR_SIDE 32
#define CIFAR_PIXELS (3 * CIFAR_SIDE * CIFAR_SIDE)
#define CIFAR_MAX_FILES 5

typedef struct cifar_impl {
    int variant;                       /* 10 or 100 */
    int label_bytes;                   /* 1 or 2 */
    size_t record;
    int nbufs;
    data_buffer bufs[CIFAR_MAX_FILES];
    int64_t first[CIFAR_MAX_FILES + 1];  /* index of each buffer's first record */
    mapped_file files[CIFAR_MAX_FILES];  /* owners of bufs when read from disk */
} cifar_impl;

static void cifar_destroy(void *p)
{
    cifar_impl *c = p;
    if (!c)
        return;
    for (int b = 0; b < CIFAR_MAX_FILES; b++)
        unmap_file(&c->files[b]);
    free(c);
}

static const uint8_t *cifar_record(const cifar_impl *c, int64_t i, int *buf, int64_t *rec)
{
    int b = 0;
    while (b + 1 < c->nbufs && i >= c->first[b + 1])
        b++;
    *buf = b;
    *rec = i - c->first[b];
    return c->bufs[b].data + (size_t)*rec * c->record;
}

static hallu_status cifar_label(const hallu_dataset *ds, int64_t i, int32_t *label,
                                hallu_error *err)
{
    const cifar_impl *c = ds->impl;
    int b;
    int64_t r;
    const uint8_t *p = cifar_record(c, i, &b, &r);
    *label = p[c->label_bytes - 1];
    return HALLU_OK;
}

static hallu_status cifar_get(const hallu_dataset *ds, int64_t i, hallu_image *img,
                              int32_t *label, hallu_error *err)
{
    const cifar_impl *c = ds->impl;
    int b;
    int64_t r;
    const uint8_t *p = cifar_record(c, i, &b, &r);
    char what[256];
    snprintf(what, sizeof what, "%s record %lld", c->bufs[b].name, (long long)r);
    hallu_status st = image_prepare(img, CIFAR_SIDE, CIFAR_SIDE, what, err);
    if (st != HALLU_OK)
        return st;
    *label = p[c->label_bytes - 1];
    const uint8_t *planes = p + c->label_bytes;
    const size_t plane = CIFAR_SIDE * CIFAR_SIDE;
    for (size_t px = 0; px < plane; px++)
        for (int ch = 0; ch < 3; ch++)
            img->data[px * 3 + ch] = planes[ch * plane + px];
    return HALLU_OK;
}

static void cifar_describe(const hallu_dataset *ds, int64_t i, char *buf, size_t n)
{
    const cifar_impl *c = ds->impl;
    int b;
    int64_t r;
    cifar_record(c, i, &b, &r);
    snprintf(buf, n, "%s record %lld", c->bufs[b].name, (long long)r);
}

static const dataset_ops cifar_ops = {
    .get = cifar_get, .label = cifar_label, .describe = cifar_describe, .destroy = cifar_destroy,
};

static hallu_status check_labels(const cifar_impl *c, const data_buffer *buf, hallu_error *err)
{
    size_t n = buf->size / c->record;
    for (size_t r = 0; r < n; r++) {
        const uint8_t *p = buf->data + r * c->record;
        if (c->variant == 100 && p[0] >= 20)
            return hallu_error_set(err, HALLU_ERR_FORMAT,
                                   "cifar100: %s record %zu: coarse label %d outside 0..19",
                                   buf->name, r, p[0]);
        int fine = p[c->label_bytes - 1];
        if (fine >= c->variant)
            return hallu_error_set(err, HALLU_ERR_FORMAT,
                                   "cifar%d: %s record %zu: label %d outside 0..%d", c->variant,
                                   buf->name, r, fine, c->variant - 1);
    }
    return HALLU_OK;
}

static hallu_status check_buffer(const cifar_impl *c, const data_buffer *buf, hallu_error *err)
{
    if (buf->size == 0)
        return hallu_error_set(err, HALLU_ERR_FORMAT, "cifar%d: %s is empty (expected records of %zu bytes)",
                               c->variant, buf->name, c->record);
    if (buf->size % c->record != 0)
        return hallu_error_set(err, HALLU_ERR_FORMAT,
                               "cifar%d: %s: size %zu bytes is not a multiple of the %zu-byte "
                               "record (%zu full records + %zu bytes: truncated record %zu)",
                               c->variant, buf->name, buf->size, c->record,
                               buf->size / c->record, buf->size % c->record,
                               buf->size / c->record);
    return check_labels(c, buf, err);
}

/* Validates c->bufs and fills the record index and the dataset fields. */
static hallu_status cifar_build(hallu_dataset **out, cifar_impl *c, hallu_error *err)
{
    c->label_bytes = c->variant == 100 ? 2 : 1;
    c->record = (size_t)c->label_bytes + CIFAR_PIXELS;
    c->first[0] = 0;
    for (int b = 0; b < c->nbufs; b++) {
        hallu_status st = check_buffer(c, &c->bufs[b], err);
        if (st != HALLU_OK) {
            cifar_destroy(c);
            return st;
        }
        c->first[b + 1] = c->first[b] + (int64_t)(c->bufs[b].size / c->record);
    }
    int64_t total = c->first[c->nbufs];
    int variant = c->variant;
    hallu_status st = dataset_create(out, variant == 100 ? "cifar100" : "cifar10", &cifar_ops, c,
                                     err);
    if (st != HALLU_OK)
        return st;
    (*out)->size = total;
    (*out)->num_classes = variant;
    (*out)->h = (*out)->w = CIFAR_SIDE;
    (*out)->max_bytes = CIFAR_PIXELS;
    return HALLU_OK;
}

hallu_status cifar_open_buffers(hallu_dataset **out, int variant, const data_buffer *bufs,
                                int nbufs, hallu_error *err)
{
    *out = NULL;
    if ((variant != 10 && variant != 100) || nbufs < 1 || nbufs > CIFAR_MAX_FILES)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "cifar: variant %d with %d buffers",
                               variant, nbufs);
    cifar_impl *c = calloc(1, sizeof *c);
    if (!c)
        return hallu_error_set(err, HALLU_ERR_OOM, "cifar: out of memory");
    c->variant = variant;
    c->nbufs = nbufs;
    memcpy(c->bufs, bufs, (size_t)nbufs * sizeof *bufs);
    hallu_status st = cifar_build(out, c, err);
    if (st == HALLU_OK)
        st = class_names_default(&(*out)->class_names, variant, err);
    if (st != HALLU_OK) {
        hallu_dataset_close(*out);
        *out = NULL;
    }
    return st;
}

static int split_files(int variant, hallu_split split, const char **names)
{
    static const char *const train10[] = { "data_batch_1.bin", "data_batch_2.bin",
                                           "data_batch_3.bin", "data_batch_4.bin",
                                           "data_batch_5.bin" };
    if (split == HALLU_SPLIT_UNLABELED)
        return 0;
    if (variant == 100) {
        names[0] = split == HALLU_SPLIT_TRAIN ? "train.bin" : "test.bin";
        return 1;
    }
    if (split == HALLU_SPLIT_TEST) {
        names[0] = "test_batch.bin";
        return 1;
    }
    for (int b = 0; b < 5; b++)
        names[b] = train10[b];
    return 5;
}

static hallu_status map_split(cifar_impl *c, const char *dir, hallu_split split, hallu_error *err)
{
    const char *names[CIFAR_MAX_FILES];
    char kind[16];
    snprintf(kind, sizeof kind, "cifar%d", c->variant);
    c->nbufs = split_files(c->variant, split, names);
    if (c->nbufs == 0)
        return hallu_error_set(err, HALLU_ERR_UNSUPPORTED, "%s has no '%s' split", kind,
                               hallu_split_name(split));
    for (int b = 0; b < c->nbufs; b++) {
        char *path = path_join(dir, names[b]);
        if (!path)
            return hallu_error_set(err, HALLU_ERR_OOM, "%s: out of memory", kind);
        hallu_status st = map_file(&c->files[b], path, kind, err);
        free(path);
        if (st != HALLU_OK)
            return st;
        c->bufs[b] = (data_buffer){ c->files[b].data, c->files[b].size, c->files[b].path };
    }
    return HALLU_OK;
}

hallu_status cifar_open(hallu_dataset **out, const char *dir, int variant, hallu_split split,
                        hallu_error *err)
{
    *out = NULL;
    cifar_impl *c = calloc(1, sizeof *c);
    if (!c)
        return hallu_error_set(err, HALLU_ERR_OOM, "cifar: out of memory");
    c->variant = variant;
    hallu_status st = map_split(c, dir, split, err);
    if (st != HALLU_OK) {
        cifar_destroy(c);
        return st;
    }
    st = cifar_build(out, c, err);
    if (st != HALLU_OK)
        return st;
    char *names = path_join(dir, variant == 100 ? "fine_label_names.txt" : "batches.meta.txt");
    st = names ? class_names_load(&(*out)->class_names, variant, names, err)
               : hallu_error_set(err, HALLU_ERR_OOM, "cifar: out of memory");
    free(names);
    if (st != HALLU_OK) {
        hallu_dataset_close(*out);
        *out = NULL;
    }
    return st;
}
