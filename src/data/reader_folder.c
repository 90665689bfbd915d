/* Image-file datasets: a list of (path, label) decoded lazily per get. Each get
 * reads and decodes its own file into the caller's buffer, so gets from many
 * threads share nothing mutable. Shared by imagefolder and tinyimagenet. */
#include "data/dataset_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const image_exts[] = { "jpg", "jpeg", "png", NULL };

void files_impl_destroy(void *p)
{
    files_impl *f = p;
    if (!f)
        return;
    free(f->root);
    free_strings(f->paths, f->n);
    free(f->labels);
    free(f);
}

hallu_status files_impl_push(files_impl *f, const char *dir, const char *name, int32_t label,
                             hallu_error *err)
{
    if (f->n == f->cap) {
        int64_t nc = f->cap ? f->cap * 2 : 256;
        char **p = realloc(f->paths, (size_t)nc * sizeof *p);
        if (p)
            f->paths = p;
        int32_t *l = p ? realloc(f->labels, (size_t)nc * sizeof *l) : NULL;
        if (!l)
            return hallu_error_set(err, HALLU_ERR_OOM, "out of memory listing %lld files",
                                   (long long)nc);
        f->labels = l;
        f->cap = nc;
    }
    char *rel = dir ? path_join(dir, name) : strdup(name);
    if (!rel)
        return hallu_error_set(err, HALLU_ERR_OOM, "out of memory for path %s", name);
    f->paths[f->n] = rel;
    f->labels[f->n] = label;
    f->n++;
    return HALLU_OK;
}

static hallu_status files_read(const files_impl *f, int64_t i, uint8_t **bytes, size_t *len,
                               char *path, size_t pathsize, hallu_error *err)
{
    snprintf(path, pathsize, "%s/%s", f->root, f->paths[i]);
    return read_whole_file(path, bytes, len, err);
}

static hallu_status files_get(const hallu_dataset *ds, int64_t i, hallu_image *img,
                              int32_t *label, hallu_error *err)
{
    const files_impl *f = ds->impl;
    char path[4096];
    uint8_t *bytes;
    size_t len;
    hallu_status st = files_read(f, i, &bytes, &len, path, sizeof path, err);
    if (st != HALLU_OK)
        return st;
    st = hallu_image_decode(bytes, len, path, img, err);
    free(bytes);
    *label = f->labels[i];
    return st;
}

static hallu_status files_probe(const hallu_dataset *ds, int64_t i, int *h, int *w,
                                hallu_error *err)
{
    const files_impl *f = ds->impl;
    char path[4096];
    uint8_t *bytes;
    size_t len;
    hallu_status st = files_read(f, i, &bytes, &len, path, sizeof path, err);
    if (st != HALLU_OK)
        return st;
    st = hallu_image_probe(bytes, len, path, h, w, err);
    free(bytes);
    return st;
}

static hallu_status files_label(const hallu_dataset *ds, int64_t i, int32_t *label,
                                hallu_error *err)
{
    const files_impl *f = ds->impl;
    *label = f->labels[i];
    return HALLU_OK;
}

static void files_describe(const hallu_dataset *ds, int64_t i, char *buf, size_t n)
{
    const files_impl *f = ds->impl;
    snprintf(buf, n, "%s/%s", f->root, f->paths[i]);
}

static const dataset_ops files_ops = {
    .get = files_get, .label = files_label, .describe = files_describe, .probe = files_probe,
    .destroy = files_impl_destroy,
};

hallu_status files_dataset_create(hallu_dataset **out, const char *kind, files_impl *f,
                                  char **class_names, int num_classes, hallu_error *err)
{
    if (f->n == 0) {
        hallu_status st = hallu_error_set(err, HALLU_ERR_FORMAT, "%s: %s holds no images", kind,
                                          f->root);
        files_impl_destroy(f);
        free_strings(class_names, num_classes);
        return st;
    }
    int64_t n = f->n;
    hallu_status st = dataset_create(out, kind, &files_ops, f, err);
    if (st != HALLU_OK) {
        free_strings(class_names, num_classes);
        return st;
    }
    (*out)->size = n;
    (*out)->num_classes = num_classes;
    (*out)->class_names = class_names;
    return HALLU_OK;
}

/* ---- imagefolder ----------------------------------------------------------- */

static int find_class(char *const *classes, int64_t n, const char *name)
{
    for (int64_t c = 0; c < n; c++)
        if (strcmp(classes[c], name) == 0)
            return (int)c;
    return -1;
}

static hallu_status add_class_files(files_impl *f, const char *root, const char *cls,
                                    int32_t label, hallu_error *err)
{
    char *dir = path_join(root, cls);
    if (!dir)
        return hallu_error_set(err, HALLU_ERR_OOM, "imagefolder: out of memory");
    char **files;
    int64_t n;
    hallu_status st = list_dir(dir, false, image_exts, &files, &n, err);
    if (st == HALLU_OK && n == 0)
        st = hallu_error_set(err, HALLU_ERR_FORMAT,
                             "imagefolder: class folder %s holds no .jpg/.jpeg/.png images", dir);
    for (int64_t k = 0; k < n && st == HALLU_OK; k++)
        st = files_impl_push(f, cls, files[k], label, err);
    free_strings(files, n);
    free(dir);
    return st;
}

/* Classes come from the train folder so that test labels agree with train's. */
static hallu_status folder_fill(files_impl *f, const char *class_root, char *const *classes,
                                int64_t nclasses, hallu_error *err)
{
    char **dirs;
    int64_t ndirs;
    hallu_status st = list_dir(f->root, true, NULL, &dirs, &ndirs, err);
    for (int64_t d = 0; d < ndirs && st == HALLU_OK; d++) {
        int c = find_class(classes, nclasses, dirs[d]);
        if (c < 0)
            st = hallu_error_set(err, HALLU_ERR_FORMAT,
                                 "imagefolder: class folder %s/%s has no counterpart in %s",
                                 f->root, dirs[d], class_root);
        else
            st = add_class_files(f, f->root, dirs[d], c, err);
    }
    free_strings(dirs, ndirs);
    return st;
}

static hallu_status folder_roots(const char *dir, hallu_split split, char **class_root,
                                 char **split_root, hallu_error *err)
{
    char *train = path_join(dir, "train");
    bool nested = train && path_exists(train, true);
    *class_root = nested ? train : strdup(dir);
    if (!nested)
        free(train);
    *split_root = NULL;
    if (split == HALLU_SPLIT_TRAIN)
        *split_root = strdup(*class_root);
    else if (split == HALLU_SPLIT_TEST && nested) {
        *split_root = path_join(dir, "test");
        if (*split_root && !path_exists(*split_root, true)) {
            free(*split_root);
            *split_root = path_join(dir, "val");
            if (*split_root && !path_exists(*split_root, true))
                return hallu_error_set(err, HALLU_ERR_UNSUPPORTED,
                                       "imagefolder: %s has no test split (neither test/ nor val/)",
                                       dir);
        }
    } else {
        return hallu_error_set(err, HALLU_ERR_UNSUPPORTED,
                               "imagefolder: %s has no '%s' split (a split needs %s/%s/<class>/)",
                               dir, hallu_split_name(split), dir, hallu_split_name(split));
    }
    if (!*class_root || !*split_root)
        return hallu_error_set(err, HALLU_ERR_OOM, "imagefolder: out of memory");
    return HALLU_OK;
}

hallu_status folder_open(hallu_dataset **out, const char *dir, hallu_split split,
                         hallu_error *err)
{
    *out = NULL;
    char *class_root = NULL, *split_root = NULL;
    char **classes = NULL;
    int64_t nclasses = 0;
    files_impl *f = calloc(1, sizeof *f);
    hallu_status st = f ? folder_roots(dir, split, &class_root, &split_root, err)
                        : hallu_error_set(err, HALLU_ERR_OOM, "imagefolder: out of memory");
    if (st == HALLU_OK)
        st = list_dir(class_root, true, NULL, &classes, &nclasses, err);
    if (st == HALLU_OK && nclasses == 0)
        st = hallu_error_set(err, HALLU_ERR_FORMAT,
                             "imagefolder: %s holds no class folders (expected %s/<class>/*.jpg)",
                             class_root, class_root);
    if (st == HALLU_OK) {
        f->root = split_root;
        split_root = NULL;
        st = folder_fill(f, class_root, classes, nclasses, err);
    }
    free(class_root);
    free(split_root);
    if (st != HALLU_OK) {
        files_impl_destroy(f);
        free_strings(classes, nclasses);
        return st;
    }
    return files_dataset_create(out, "imagefolder", f, classes, (int)nclasses, err);
}
