/* STL-10 binary version: X files hold 96x96x3 images, each as three 96x96
 * planes (R, G, B) in column-major order; y files hold one label byte 1..10
 * per image (mapped to 0..9). unlabeled_X.bin has no y file. */
#include "data/dataset_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STL_SIDE 96
#define STL_PLANE (STL_SIDE * STL_SIDE)
#define STL_IMAGE (3 * STL_PLANE)
#define STL_CLASSES 10

typedef struct stl_impl {
    data_buffer x, y;       /* y.data == NULL: unlabeled */
    mapped_file fx, fy;
} stl_impl;

static void stl_destroy(void *p)
{
    stl_impl *s = p;
    if (!s)
        return;
    unmap_file(&s->fx);
    unmap_file(&s->fy);
    free(s);
}

static hallu_status stl_label(const hallu_dataset *ds, int64_t i, int32_t *label,
                              hallu_error *err)
{
    const stl_impl *s = ds->impl;
    *label = s->y.data ? (int32_t)s->y.data[i] - 1 : -1;
    return HALLU_OK;
}

static hallu_status stl_get(const hallu_dataset *ds, int64_t i, hallu_image *img,
                            int32_t *label, hallu_error *err)
{
    const stl_impl *s = ds->impl;
    char what[256];
    snprintf(what, sizeof what, "%s image %lld", s->x.name, (long long)i);
    hallu_status st = image_prepare(img, STL_SIDE, STL_SIDE, what, err);
    if (st != HALLU_OK)
        return st;
    const uint8_t *src = s->x.data + (size_t)i * STL_IMAGE;
    for (int c = 0; c < 3; c++)
        for (int x = 0; x < STL_SIDE; x++)
            for (int y = 0; y < STL_SIDE; y++)
                img->data[((size_t)y * STL_SIDE + x) * 3 + c] = src[c * STL_PLANE + x * STL_SIDE + y];
    return stl_label(ds, i, label, err);
}

static void stl_describe(const hallu_dataset *ds, int64_t i, char *buf, size_t n)
{
    const stl_impl *s = ds->impl;
    snprintf(buf, n, "%s image %lld", s->x.name, (long long)i);
}

static const dataset_ops stl_ops = {
    .get = stl_get, .label = stl_label, .describe = stl_describe, .destroy = stl_destroy,
};

static hallu_status stl_check(const stl_impl *s, hallu_error *err)
{
    if (s->x.size == 0 || s->x.size % STL_IMAGE != 0)
        return hallu_error_set(err, HALLU_ERR_FORMAT,
                               "stl10: %s: size %zu bytes is not a non-zero multiple of the "
                               "%d-byte image (%zu full images + %zu bytes)",
                               s->x.name, s->x.size, STL_IMAGE, s->x.size / STL_IMAGE,
                               s->x.size % STL_IMAGE);
    if (!s->y.data)
        return HALLU_OK;
    size_t n = s->x.size / STL_IMAGE;
    if (s->y.size != n)
        return hallu_error_set(err, HALLU_ERR_FORMAT,
                               "stl10: %s holds %zu labels but %s holds %zu images (expected one "
                               "label byte per image)",
                               s->y.name, s->y.size, s->x.name, n);
    for (size_t i = 0; i < n; i++)
        if (s->y.data[i] < 1 || s->y.data[i] > STL_CLASSES)
            return hallu_error_set(err, HALLU_ERR_FORMAT,
                                   "stl10: %s label %zu is %d, expected 1..%d", s->y.name, i,
                                   s->y.data[i], STL_CLASSES);
    return HALLU_OK;
}

static hallu_status stl_build(hallu_dataset **out, stl_impl *s, hallu_error *err)
{
    hallu_status st = stl_check(s, err);
    if (st != HALLU_OK) {
        stl_destroy(s);
        return st;
    }
    bool labelled = s->y.data != NULL;
    int64_t n = (int64_t)(s->x.size / STL_IMAGE);
    if ((st = dataset_create(out, "stl10", &stl_ops, s, err)) != HALLU_OK)
        return st;
    (*out)->size = n;
    (*out)->num_classes = labelled ? STL_CLASSES : 0;
    (*out)->h = (*out)->w = STL_SIDE;
    (*out)->max_bytes = STL_IMAGE;
    return HALLU_OK;
}

hallu_status stl10_open_buffers(hallu_dataset **out, const data_buffer *x, const data_buffer *y,
                                hallu_error *err)
{
    *out = NULL;
    stl_impl *s = calloc(1, sizeof *s);
    if (!s)
        return hallu_error_set(err, HALLU_ERR_OOM, "stl10: out of memory");
    s->x = *x;
    if (y)
        s->y = *y;
    hallu_status st = stl_build(out, s, err);
    if (st == HALLU_OK && (*out)->num_classes)
        st = class_names_default(&(*out)->class_names, STL_CLASSES, err);
    if (st != HALLU_OK) {
        hallu_dataset_close(*out);
        *out = NULL;
    }
    return st;
}

static hallu_status map_in(const char *dir, const char *name, mapped_file *mf, data_buffer *buf,
                           hallu_error *err)
{
    char *path = path_join(dir, name);
    if (!path)
        return hallu_error_set(err, HALLU_ERR_OOM, "stl10: out of memory");
    hallu_status st = map_file(mf, path, "stl10", err);
    free(path);
    if (st == HALLU_OK)
        *buf = (data_buffer){ mf->data, mf->size, mf->path };
    return st;
}

static hallu_status stl_map_split(stl_impl *s, const char *dir, hallu_split split,
                                  hallu_error *err)
{
    static const char *const xs[] = { "train_X.bin", "test_X.bin", "unlabeled_X.bin" };
    static const char *const ys[] = { "train_y.bin", "test_y.bin", NULL };
    hallu_status st = map_in(dir, xs[split], &s->fx, &s->x, err);
    if (st == HALLU_OK && ys[split])
        st = map_in(dir, ys[split], &s->fy, &s->y, err);
    return st;
}

hallu_status stl10_open(hallu_dataset **out, const char *dir, hallu_split split,
                        hallu_error *err)
{
    *out = NULL;
    /* Accept the archive's parent folder as well as stl10_binary itself. */
    char *sub = path_join(dir, "stl10_binary");
    if (!sub)
        return hallu_error_set(err, HALLU_ERR_OOM, "stl10: out of memory");
    const char *root = path_exists(sub, true) ? sub : dir;
    stl_impl *s = calloc(1, sizeof *s);
    hallu_status st = s ? stl_map_split(s, root, split, err)
                        : hallu_error_set(err, HALLU_ERR_OOM, "stl10: out of memory");
    if (st != HALLU_OK) {
        stl_destroy(s);
        free(sub);
        return st;
    }
    st = stl_build(out, s, err);
    if (st == HALLU_OK && (*out)->num_classes) {
        char *names = path_join(root, "class_names.txt");
        st = names ? class_names_load(&(*out)->class_names, STL_CLASSES, names, err)
                   : hallu_error_set(err, HALLU_ERR_OOM, "stl10: out of memory");
        free(names);
        if (st != HALLU_OK) {
            hallu_dataset_close(*out);
            *out = NULL;
        }
    }
    free(sub);
    return st;
}
