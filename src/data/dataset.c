/* hallu_dataset: spec parsing, dispatch to the readers, shared accessors. */
#include "data/dataset_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

hallu_status hallu_split_parse(const char *text, hallu_split *out, hallu_error *err)
{
    if (text && strcmp(text, "train") == 0)
        *out = HALLU_SPLIT_TRAIN;
    else if (text && (strcmp(text, "test") == 0 || strcmp(text, "val") == 0))
        *out = HALLU_SPLIT_TEST;
    else if (text && strcmp(text, "unlabeled") == 0)
        *out = HALLU_SPLIT_UNLABELED;
    else
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                               "split '%s' is not one of train, test, val, unlabeled",
                               text ? text : "(null)");
    return HALLU_OK;
}

const char *hallu_split_name(hallu_split split)
{
    switch (split) {
    case HALLU_SPLIT_TRAIN: return "train";
    case HALLU_SPLIT_TEST: return "test";
    case HALLU_SPLIT_UNLABELED: return "unlabeled";
    }
    return "unknown";
}

hallu_status dataset_create(hallu_dataset **out, const char *kind, const dataset_ops *ops,
                            void *impl, hallu_error *err)
{
    hallu_dataset *ds = calloc(1, sizeof *ds);
    if (!ds) {
        ops->destroy(impl);
        return hallu_error_set(err, HALLU_ERR_OOM, "%s: out of memory", kind);
    }
    ds->ops = ops;
    ds->impl = impl;
    ds->kind = kind;
    ds->odd_index = -1;
    *out = ds;
    return HALLU_OK;
}

typedef hallu_status (*open_fn)(hallu_dataset **out, const char *path, hallu_split split,
                                hallu_error *err);

static hallu_status open_cifar10(hallu_dataset **o, const char *p, hallu_split s, hallu_error *e)
{
    return cifar_open(o, p, 10, s, e);
}

static hallu_status open_cifar100(hallu_dataset **o, const char *p, hallu_split s, hallu_error *e)
{
    return cifar_open(o, p, 100, s, e);
}

static const struct {
    const char *kind;
    open_fn open;
    bool needs_dir;
} kinds[] = {
    { "cifar10", open_cifar10, true },
    { "cifar100", open_cifar100, true },
    { "stl10", stl10_open, true },
    { "imagefolder", folder_open, true },
    { "tinyimagenet", tinyimagenet_open, true },
    { "packed", packed_open_spec, false },
};

static hallu_status open_by_kind(hallu_dataset **out, const char *kind, size_t kind_len,
                                 const char *path, hallu_split split, hallu_error *err)
{
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        if (strlen(kinds[k].kind) != kind_len || strncmp(kinds[k].kind, kind, kind_len) != 0)
            continue;
        if (!*path)
            return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "data spec '%s:': missing PATH",
                                   kinds[k].kind);
        if (kinds[k].needs_dir && !path_exists(path, true))
            return hallu_error_set(err, HALLU_ERR_IO,
                                   "%s: directory %s does not exist (or is not a directory)",
                                   kinds[k].kind, path);
        return kinds[k].open(out, path, split, err);
    }
    return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                           "unknown dataset kind '%.*s' (expected cifar10, cifar100, stl10, "
                           "imagefolder, tinyimagenet, packed or synthetic)",
                           (int)kind_len, kind);
}

hallu_status hallu_dataset_open(hallu_dataset **out, const char *spec, hallu_split split,
                                hallu_error *err)
{
    *out = NULL;
    if (!spec || !*spec)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "empty data spec (expected KIND:PATH)");
    if ((unsigned)split > HALLU_SPLIT_UNLABELED)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "%s: split %d is not a hallu_split",
                               spec, (int)split);
    const char *colon = strchr(spec, ':');
    size_t kind_len = colon ? (size_t)(colon - spec) : strlen(spec);
    if (kind_len == 9 && strncmp(spec, "synthetic", 9) == 0)
        return synthetic_open(out, colon ? colon + 1 : NULL, split, err);
    if (!colon)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                               "data spec '%s' lacks ':PATH' (expected KIND:PATH or synthetic[:N])",
                               spec);
    return open_by_kind(out, spec, kind_len, colon + 1, split, err);
}

void hallu_dataset_close(hallu_dataset *ds)
{
    if (!ds)
        return;
    ds->ops->destroy(ds->impl);
    free_strings(ds->class_names, ds->num_classes);
    free(ds);
}

int64_t hallu_dataset_size(const hallu_dataset *ds) { return ds->size; }
int hallu_dataset_num_classes(const hallu_dataset *ds) { return ds->num_classes; }
int hallu_dataset_image_height(const hallu_dataset *ds) { return ds->h; }
int hallu_dataset_image_width(const hallu_dataset *ds) { return ds->w; }
size_t hallu_dataset_max_image_bytes(const hallu_dataset *ds) { return ds->max_bytes; }
const char *hallu_dataset_kind(const hallu_dataset *ds) { return ds->kind; }

const char *hallu_dataset_class_name(const hallu_dataset *ds, int cls)
{
    if (cls < 0 || cls >= ds->num_classes || !ds->class_names)
        return NULL;
    return ds->class_names[cls];
}

void hallu_dataset_describe(const hallu_dataset *ds, int64_t i, char *buf, size_t bufsize)
{
    if (!bufsize)
        return;
    if (i < 0 || i >= ds->size)
        snprintf(buf, bufsize, "%s index %lld (out of range)", ds->kind, (long long)i);
    else
        ds->ops->describe(ds, i, buf, bufsize);
}

static hallu_status check_index(const hallu_dataset *ds, int64_t i, hallu_error *err)
{
    if (i < 0 || i >= ds->size)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                               "%s: image index %lld outside 0..%lld", ds->kind, (long long)i,
                               (long long)ds->size - 1);
    return HALLU_OK;
}

hallu_status hallu_dataset_get(const hallu_dataset *ds, int64_t i, hallu_image *img,
                               int32_t *label, hallu_error *err)
{
    hallu_status st = check_index(ds, i, err);
    if (st != HALLU_OK)
        return st;
    int32_t dummy;
    return ds->ops->get(ds, i, img, label ? label : &dummy, err);
}

hallu_status hallu_dataset_get_label(const hallu_dataset *ds, int64_t i, int32_t *label,
                                     hallu_error *err)
{
    hallu_status st = check_index(ds, i, err);
    if (st != HALLU_OK)
        return st;
    return ds->ops->label(ds, i, label, err);
}

hallu_status hallu_dataset_probe_sizes(hallu_dataset *ds, hallu_error *err)
{
    if (!ds->ops->probe)
        return HALLU_OK;
    int h0 = 0, w0 = 0;
    int64_t odd = -1;
    int odd_h = 0, odd_w = 0;
    size_t max_bytes = 0;
    for (int64_t i = 0; i < ds->size; i++) {
        int h, w;
        hallu_status st = ds->ops->probe(ds, i, &h, &w, err);
        if (st != HALLU_OK)
            return st;
        if (i == 0) {
            h0 = h;
            w0 = w;
        }
        if (odd < 0 && (h != h0 || w != w0)) {
            odd = i;
            odd_h = h;
            odd_w = w;
        }
        size_t b = (size_t)h * (size_t)w * 3;
        max_bytes = b > max_bytes ? b : max_bytes;
    }
    ds->h = odd < 0 ? h0 : 0;
    ds->w = odd < 0 ? w0 : 0;
    ds->max_bytes = max_bytes;
    ds->odd_index = odd;
    ds->odd_h = odd_h;
    ds->odd_w = odd_w;
    ds->first_h = h0;
    ds->first_w = w0;
    return HALLU_OK;
}

hallu_status hallu_dataset_check_uniform_size(const hallu_dataset *ds, hallu_error *err)
{
    if (ds->h > 0 && ds->w > 0)
        return HALLU_OK;
    if (ds->odd_index < 0)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "%s: image sizes unknown (call "
                               "hallu_dataset_probe_sizes first)", ds->kind);
    char odd[512], first[512];
    hallu_dataset_describe(ds, ds->odd_index, odd, sizeof odd);
    hallu_dataset_describe(ds, 0, first, sizeof first);
    return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "%s: images differ in size: %s is %dx%d (HxW) but %s "
                           "is %dx%d", ds->kind, odd, ds->odd_h, ds->odd_w, first, ds->first_h, ds->first_w);
}
