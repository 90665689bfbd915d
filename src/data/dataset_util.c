/* File helpers for the readers: mmap, whole-file reads, sorted directory
 * listings, text lines and class-name files. */
#include "data/dataset_internal.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

hallu_status map_file(mapped_file *mf, const char *path, const char *what, hallu_error *err)
{
    memset(mf, 0, sizeof *mf);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return hallu_error_set(err, HALLU_ERR_IO, "%s: cannot open %s: %s", what, path,
                               strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return hallu_error_set(err, HALLU_ERR_IO, "%s: %s is not a regular file", what, path);
    }
    if (st.st_size == 0) {
        close(fd);
        return hallu_error_set(err, HALLU_ERR_FORMAT, "%s: %s is empty (0 bytes)", what, path);
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int saved = errno;
    close(fd);
    if (p == MAP_FAILED)
        return hallu_error_set(err, HALLU_ERR_IO, "%s: mmap of %s (%lld bytes) failed: %s", what,
                               path, (long long)st.st_size, strerror(saved));
    mf->path = strdup(path);
    if (!mf->path) {
        munmap(p, (size_t)st.st_size);
        return hallu_error_set(err, HALLU_ERR_OOM, "%s: out of memory", what);
    }
    mf->data = p;
    mf->size = (size_t)st.st_size;
    return HALLU_OK;
}

void unmap_file(mapped_file *mf)
{
    if (mf->data)
        munmap((void *)mf->data, mf->size);
    free(mf->path);
    memset(mf, 0, sizeof *mf);
}

hallu_status read_whole_file(const char *path, uint8_t **data, size_t *size, hallu_error *err)
{
    *data = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return hallu_error_set(err, HALLU_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return hallu_error_set(err, HALLU_ERR_IO, "%s is not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        close(fd);
        return hallu_error_set(err, HALLU_ERR_OOM, "reading %s: cannot allocate %zu bytes", path, n);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int saved = errno;
            free(buf);
            close(fd);
            return hallu_error_set(err, HALLU_ERR_IO, "reading %s: %s", path,
                                   r == 0 ? "file shrank while reading" : strerror(saved));
        }
        got += (size_t)r;
    }
    close(fd);
    *data = buf;
    *size = n;
    return HALLU_OK;
}

bool path_exists(const char *path, bool want_dir)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return false;
    return want_dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode);
}

char *path_join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 2);
    if (!s)
        return NULL;
    memcpy(s, a, la);
    size_t k = la;
    if (la > 0 && a[la - 1] != '/')
        s[k++] = '/';
    memcpy(s + k, b, lb + 1);
    return s;
}

void free_strings(char **s, int64_t n)
{
    if (!s)
        return;
    for (int64_t i = 0; i < n; i++)
        free(s[i]);
    free(s);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool has_ext(const char *name, const char *const *exts)
{
    const char *dot = strrchr(name, '.');
    if (!dot)
        return false;
    for (int i = 0; exts[i]; i++)
        if (strcasecmp(dot + 1, exts[i]) == 0)
            return true;
    return false;
}

static bool entry_matches(const char *dir, const char *name, bool want_dirs,
                          const char *const *exts)
{
    if (name[0] == '.')
        return false;
    if (!want_dirs && exts && !has_ext(name, exts))
        return false;
    char *full = path_join(dir, name);
    bool ok = full && path_exists(full, want_dirs);
    free(full);
    return ok;
}

static hallu_status push_string(char ***list, int64_t *n, int64_t *cap, const char *s,
                                hallu_error *err)
{
    if (*n == *cap) {
        int64_t nc = *cap ? *cap * 2 : 64;
        char **grown = realloc(*list, (size_t)nc * sizeof *grown);
        if (!grown)
            return hallu_error_set(err, HALLU_ERR_OOM, "out of memory listing %lld names",
                                   (long long)nc);
        *list = grown;
        *cap = nc;
    }
    if (!((*list)[*n] = strdup(s)))
        return hallu_error_set(err, HALLU_ERR_OOM, "out of memory copying '%s'", s);
    (*n)++;
    return HALLU_OK;
}

hallu_status list_dir(const char *dir, bool want_dirs, const char *const *exts, char ***names,
                      int64_t *count, hallu_error *err)
{
    *names = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d)
        return hallu_error_set(err, HALLU_ERR_IO, "cannot open directory %s: %s", dir,
                               strerror(errno));
    char **list = NULL;
    int64_t n = 0, cap = 0;
    hallu_status st = HALLU_OK;
    struct dirent *e;
    while (st == HALLU_OK && (e = readdir(d)) != NULL)
        if (entry_matches(dir, e->d_name, want_dirs, exts))
            st = push_string(&list, &n, &cap, e->d_name, err);
    closedir(d);
    if (st != HALLU_OK) {
        free_strings(list, n);
        return st;
    }
    if (n > 1)
        qsort(list, (size_t)n, sizeof *list, cmp_str);
    *names = list;
    *count = n;
    return HALLU_OK;
}

hallu_status split_lines(const char *text, size_t len, const char *name, char ***lines,
                         int64_t *count, hallu_error *err)
{
    char **list = NULL;
    int64_t n = 0, cap = 0;
    size_t pos = 0;
    while (pos < len) {
        size_t end = pos;
        while (end < len && text[end] != '\n')
            end++;
        size_t a = pos, b = end;
        while (a < b && isspace((unsigned char)text[a]))
            a++;
        while (b > a && isspace((unsigned char)text[b - 1]))
            b--;
        if (b > a) {
            if (memchr(text + a, '\0', b - a)) {
                free_strings(list, n);
                return hallu_error_set(err, HALLU_ERR_FORMAT, "%s: line %lld holds a NUL byte",
                                       name, (long long)n + 1);
            }
            char tmp[1024];
            size_t l = b - a < sizeof tmp - 1 ? b - a : sizeof tmp - 1;
            memcpy(tmp, text + a, l);
            tmp[l] = '\0';
            hallu_status st = push_string(&list, &n, &cap, tmp, err);
            if (st != HALLU_OK) {
                free_strings(list, n);
                return st;
            }
        }
        pos = end + 1;
    }
    *lines = list;
    *count = n;
    return HALLU_OK;
}

hallu_status class_names_default(char ***names, int n, hallu_error *err)
{
    char **list = calloc((size_t)(n > 0 ? n : 1), sizeof *list);
    if (!list)
        return hallu_error_set(err, HALLU_ERR_OOM, "out of memory for %d class names", n);
    for (int i = 0; i < n; i++) {
        char buf[16];
        snprintf(buf, sizeof buf, "%d", i);
        if (!(list[i] = strdup(buf))) {
            free_strings(list, i);
            return hallu_error_set(err, HALLU_ERR_OOM, "out of memory for class names");
        }
    }
    *names = list;
    return HALLU_OK;
}

hallu_status class_names_load(char ***names, int n, const char *path, hallu_error *err)
{
    if (!path_exists(path, false))
        return class_names_default(names, n, err);
    uint8_t *text;
    size_t len;
    hallu_status st = read_whole_file(path, &text, &len, err);
    if (st != HALLU_OK)
        return st;
    char **lines;
    int64_t count;
    st = split_lines((const char *)text, len, path, &lines, &count, err);
    free(text);
    if (st != HALLU_OK)
        return st;
    if (count != n) {
        free_strings(lines, count);
        return hallu_error_set(err, HALLU_ERR_FORMAT,
                               "%s: expected %d class names (one per line), found %lld", path, n,
                               (long long)count);
    }
    *names = lines;
    return HALLU_OK;
}

hallu_status image_prepare(hallu_image *img, int h, int w, const char *what, hallu_error *err)
{
    img->h = h;
    img->w = w;
    size_t need = (size_t)h * (size_t)w * 3;
    if (!img->data || img->capacity < need)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                               "%s: image is %dx%d and needs %zu bytes, buffer holds %zu", what, h,
                               w, need, img->data ? img->capacity : 0);
    return HALLU_OK;
}
