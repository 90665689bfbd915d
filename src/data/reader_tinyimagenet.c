/* Tiny ImageNet in its official layout: classes are the sorted wnids of
 * wnids.txt (or of the train/ folders when it is absent); train images are
 * train/<wnid>/images/<name>.JPEG; the labelled "test" split is val/images with
 * labels from val/val_annotations.txt (FILE \t WNID \t bbox...). */
#include "data/dataset_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int wnid_index(char *const *wnids, int n, const char *key)
{
    char *const *hit = bsearch(&key, wnids, (size_t)n, sizeof *wnids, cmp_str);
    return hit ? (int)(hit - wnids) : -1;
}

/* One line "FILE\tWNID[\t...]": copies the two fields (bounded). */
static bool split_fields(const char *line, size_t len, char *file, char *wnid, size_t cap)
{
    const char *tab = memchr(line, '\t', len);
    if (!tab || tab == line || (size_t)(tab - line) >= cap)
        return false;
    const char *w = tab + 1, *end = line + len;
    const char *wend = memchr(w, '\t', (size_t)(end - w));
    if (!wend)
        wend = end;
    while (wend > w && (wend[-1] == '\r' || wend[-1] == ' '))
        wend--;
    if (wend == w || (size_t)(wend - w) >= cap)
        return false;
    memcpy(file, line, (size_t)(tab - line));
    file[tab - line] = '\0';
    memcpy(wnid, w, (size_t)(wend - w));
    wnid[wend - w] = '\0';
    return true;
}

static hallu_status parse_line(files_impl *f, const char *line, size_t len, long lineno,
                               const char *name, char *const *wnids, int nwnids,
                               hallu_error *err)
{
    char file[256], wnid[256];
    if (!split_fields(line, len, file, wnid, sizeof file))
        return hallu_error_set(err, HALLU_ERR_FORMAT,
                               "%s line %ld: expected 'FILE<tab>WNID<tab>...'", name, lineno);
    if (strchr(file, '/') || strchr(file, '\\') || file[0] == '.' || memchr(line, '\0', len))
        return hallu_error_set(err, HALLU_ERR_FORMAT,
                               "%s line %ld: file name '%s' is not a plain file name", name,
                               lineno, file);
    int label = wnid_index(wnids, nwnids, wnid);
    if (label < 0)
        return hallu_error_set(err, HALLU_ERR_FORMAT, "%s line %ld: wnid '%s' is not a known class",
                               name, lineno, wnid);
    return files_impl_push(f, NULL, file, label, err);
}

static hallu_status parse_into(files_impl *f, const char *text, size_t len, const char *name,
                               char *const *wnids, int nwnids, hallu_error *err)
{
    size_t pos = 0;
    long lineno = 0;
    while (pos < len) {
        size_t end = pos;
        while (end < len && text[end] != '\n')
            end++;
        lineno++;
        bool blank = true;
        for (size_t k = pos; k < end && blank; k++)
            blank = text[k] == ' ' || text[k] == '\r' || text[k] == '\t';
        if (!blank) {
            hallu_status st = parse_line(f, text + pos, end - pos, lineno, name, wnids, nwnids,
                                         err);
            if (st != HALLU_OK)
                return st;
        }
        pos = end + 1;
    }
    if (f->n == 0)
        return hallu_error_set(err, HALLU_ERR_FORMAT, "%s lists no images", name);
    return HALLU_OK;
}

hallu_status tinyimagenet_parse_annotations(const char *text, size_t len, const char *name,
                                            char *const *wnids, int nwnids, char ***files,
                                            int32_t **labels, int64_t *count, hallu_error *err)
{
    files_impl f = { 0 };
    hallu_status st = parse_into(&f, text, len, name, wnids, nwnids, err);
    if (st != HALLU_OK) {
        free_strings(f.paths, f.n);
        free(f.labels);
        return st;
    }
    *files = f.paths;
    *labels = f.labels;
    *count = f.n;
    return HALLU_OK;
}

static hallu_status check_unique(char **wnids, int64_t n, const char *where, hallu_error *err)
{
    for (int64_t i = 1; i < n; i++)
        if (strcmp(wnids[i - 1], wnids[i]) == 0)
            return hallu_error_set(err, HALLU_ERR_FORMAT, "tinyimagenet: %s lists wnid %s twice",
                                   where, wnids[i]);
    return n > 0 ? HALLU_OK
                 : hallu_error_set(err, HALLU_ERR_FORMAT, "tinyimagenet: %s names no classes",
                                   where);
}

static hallu_status load_wnids(const char *dir, char ***wnids, int64_t *n, hallu_error *err)
{
    char *list = path_join(dir, "wnids.txt");
    char *train = path_join(dir, "train");
    hallu_status st;
    const char *where = list;
    if (!list || !train) {
        st = hallu_error_set(err, HALLU_ERR_OOM, "tinyimagenet: out of memory");
    } else if (path_exists(list, false)) {
        uint8_t *text;
        size_t len;
        st = read_whole_file(list, &text, &len, err);
        if (st == HALLU_OK) {
            st = split_lines((const char *)text, len, list, wnids, n, err);
            free(text);
        }
        if (st == HALLU_OK && *n > 1)
            qsort(*wnids, (size_t)*n, sizeof **wnids, cmp_str);
    } else {
        where = train;
        st = list_dir(train, true, NULL, wnids, n, err);
    }
    if (st == HALLU_OK && (st = check_unique(*wnids, *n, where, err)) != HALLU_OK) {
        free_strings(*wnids, *n);
        *wnids = NULL;
    }
    free(list);
    free(train);
    return st;
}

static hallu_status add_train_class(files_impl *f, const char *wnid, int32_t label,
                                    hallu_error *err)
{
    char rel[512];
    snprintf(rel, sizeof rel, "train/%s/images", wnid);
    char *dir = path_join(f->root, rel);
    char **files = NULL;
    int64_t n = 0;
    hallu_status st = dir ? list_dir(dir, false, image_exts, &files, &n, err)
                          : hallu_error_set(err, HALLU_ERR_OOM, "tinyimagenet: out of memory");
    if (st == HALLU_OK && n == 0)
        st = hallu_error_set(err, HALLU_ERR_FORMAT,
                             "tinyimagenet: class folder %s holds no .JPEG images", dir);
    for (int64_t k = 0; k < n && st == HALLU_OK; k++)
        st = files_impl_push(f, rel, files[k], label, err);
    free_strings(files, n);
    free(dir);
    return st;
}

static hallu_status load_val(files_impl *f, char *const *wnids, int nwnids, hallu_error *err)
{
    char *path = path_join(f->root, "val/val_annotations.txt");
    uint8_t *text = NULL;
    size_t len = 0;
    hallu_status st = path ? read_whole_file(path, &text, &len, err)
                           : hallu_error_set(err, HALLU_ERR_OOM, "tinyimagenet: out of memory");
    if (st == HALLU_OK)
        st = parse_into(f, (const char *)text, len, path, wnids, nwnids, err);
    free(text);
    free(path);
    /* The annotations name bare files; they live in val/images/. */
    for (int64_t i = 0; i < f->n && st == HALLU_OK; i++) {
        char *full = path_join("val/images", f->paths[i]);
        if (!full)
            return hallu_error_set(err, HALLU_ERR_OOM, "tinyimagenet: out of memory");
        free(f->paths[i]);
        f->paths[i] = full;
    }
    return st;
}

hallu_status tinyimagenet_open(hallu_dataset **out, const char *dir, hallu_split split,
                               hallu_error *err)
{
    *out = NULL;
    if (split == HALLU_SPLIT_UNLABELED)
        return hallu_error_set(err, HALLU_ERR_UNSUPPORTED,
                               "tinyimagenet has no 'unlabeled' split (train and val only)");
    char **wnids;
    int64_t n;
    hallu_status st = load_wnids(dir, &wnids, &n, err);
    if (st != HALLU_OK)
        return st;
    files_impl *f = calloc(1, sizeof *f);
    if (!f || !(f->root = strdup(dir))) {
        free(f);
        free_strings(wnids, n);
        return hallu_error_set(err, HALLU_ERR_OOM, "tinyimagenet: out of memory");
    }
    if (split == HALLU_SPLIT_TRAIN)
        for (int64_t c = 0; c < n && st == HALLU_OK; c++)
            st = add_train_class(f, wnids[c], (int32_t)c, err);
    else
        st = load_val(f, wnids, (int)n, err);
    if (st != HALLU_OK) {
        files_impl_destroy(f);
        free_strings(wnids, n);
        return st;
    }
    return files_dataset_create(out, "tinyimagenet", f, wnids, (int)n, err);
}
