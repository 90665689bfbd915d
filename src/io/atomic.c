/* Atomic file replacement: temp file in the same directory (rename is atomic
 * only within one file system), fsync the data before the rename so the new
 * name never points at unwritten blocks, fsync the directory so the rename
 * itself survives a crash. */
#include "hallu/io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { ATOMIC_BUF_CAP = 1 << 16 };

static char *str_dup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* write() until done, retrying on EINTR and short writes. */
static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static hallu_status fsync_parent_dir(const char *path, hallu_error *err)
{
    char *dir = str_dup(path);
    if (!dir)
        return hallu_error_set(err, HALLU_ERR_OOM, "atomic write %s: out of memory", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    hallu_status s = HALLU_OK;
    if (fd < 0 || fsync(fd) != 0)
        s = hallu_error_set(err, HALLU_ERR_IO, "atomic write %s: fsync of directory %s failed: %s", path,
                            dir, strerror(errno));
    if (fd >= 0)
        close(fd);
    free(dir);
    return s;
}

hallu_status hallu_atomic_begin(hallu_atomic_file *f, const char *path, hallu_error *err)
{
    memset(f, 0, sizeof *f);
    f->fd = -1;
    if (!path || !*path)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "atomic write: empty path");
    size_t n = strlen(path);
    f->path = str_dup(path);
    f->tmp_path = malloc(n + sizeof ".tmp.XXXXXX");
    f->buf = malloc(ATOMIC_BUF_CAP);
    if (!f->path || !f->tmp_path || !f->buf) {
        hallu_atomic_abort(f);
        return hallu_error_set(err, HALLU_ERR_OOM, "atomic write %s: out of memory", path);
    }
    memcpy(f->tmp_path, path, n);
    memcpy(f->tmp_path + n, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
    f->buf_cap = ATOMIC_BUF_CAP;
    f->fd = mkstemp(f->tmp_path);
    if (f->fd < 0) {
        hallu_status s = hallu_error_set(err, HALLU_ERR_IO, "atomic write %s: cannot create temporary %s: %s",
                                         path, f->tmp_path, strerror(errno));
        free(f->tmp_path);
        f->tmp_path = NULL;   /* nothing to unlink */
        hallu_atomic_abort(f);
        return s;
    }
    /* mkstemp makes 0600; results are meant to be shared like any other output. */
    if (fchmod(f->fd, 0644) != 0) {
        hallu_status s = hallu_error_set(err, HALLU_ERR_IO, "atomic write %s: fchmod %s: %s", path,
                                         f->tmp_path, strerror(errno));
        hallu_atomic_abort(f);
        return s;
    }
    return HALLU_OK;
}

static hallu_status flush_buf(hallu_atomic_file *f, hallu_error *err)
{
    if (f->buf_len == 0)
        return HALLU_OK;
    if (write_all(f->fd, f->buf, f->buf_len) != 0)
        return hallu_error_set(err, HALLU_ERR_IO, "atomic write %s: write to %s failed after %llu bytes: %s",
                               f->path, f->tmp_path, (unsigned long long)f->written, strerror(errno));
    f->buf_len = 0;
    return HALLU_OK;
}

hallu_status hallu_atomic_append(hallu_atomic_file *f, const void *data, size_t n, hallu_error *err)
{
    if (f->fd < 0)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "atomic write: append to a file that is not open");
    const unsigned char *p = data;
    if (f->buf_len + n <= f->buf_cap) {
        if (n)
            memcpy(f->buf + f->buf_len, p, n);
        f->buf_len += n;
    } else {
        hallu_status s = flush_buf(f, err);
        if (s != HALLU_OK)
            return s;
        if (write_all(f->fd, p, n) != 0)
            return hallu_error_set(err, HALLU_ERR_IO, "atomic write %s: write to %s failed: %s", f->path,
                                   f->tmp_path, strerror(errno));
    }
    f->written += n;
    return HALLU_OK;
}

hallu_status hallu_atomic_commit(hallu_atomic_file *f, hallu_error *err)
{
    if (f->fd < 0)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "atomic write: commit of a file that is not open");
    hallu_status s = flush_buf(f, err);
    if (s != HALLU_OK) {
        hallu_atomic_abort(f);
        return s;
    }
    if (fsync(f->fd) != 0) {
        s = hallu_error_set(err, HALLU_ERR_IO, "atomic write %s: fsync of %s failed: %s", f->path, f->tmp_path,
                            strerror(errno));
        hallu_atomic_abort(f);
        return s;
    }
    int rc = close(f->fd);
    f->fd = -1;
    if (rc != 0 || rename(f->tmp_path, f->path) != 0) {
        s = hallu_error_set(err, HALLU_ERR_IO, "atomic write %s: %s of %s failed: %s", f->path,
                            rc != 0 ? "close" : "rename", f->tmp_path, strerror(errno));
        hallu_atomic_abort(f);
        return s;
    }
    free(f->tmp_path);
    f->tmp_path = NULL;   /* renamed: abort must not unlink it */
    s = fsync_parent_dir(f->path, err);
    hallu_atomic_abort(f);
    return s;
}

void hallu_atomic_abort(hallu_atomic_file *f)
{
    if (f->fd > 0 || (f->fd == 0 && f->tmp_path))
        close(f->fd);
    if (f->tmp_path)
        unlink(f->tmp_path);
    free(f->tmp_path);
    free(f->path);
    free(f->buf);
    memset(f, 0, sizeof *f);
    f->fd = -1;
}

hallu_status hallu_atomic_write(const char *path, const void *data, size_t n, hallu_error *err)
{
    hallu_atomic_file f;
    hallu_status s = hallu_atomic_begin(&f, path, err);
    if (s != HALLU_OK)
        return s;
    /* Large payloads bypass the buffer inside append; small ones take one write. */
    s = hallu_atomic_append(&f, data, n, err);
    if (s != HALLU_OK) {
        hallu_atomic_abort(&f);
        return s;
    }
    return hallu_atomic_commit(&f, err);
}

hallu_status hallu_atomic_copy(const char *src, const char *dst, hallu_error *err)
{
    int in = open(src, O_RDONLY);
    if (in < 0)
        return hallu_error_set(err, HALLU_ERR_IO, "copy %s to %s: cannot open %s: %s", src, dst, src,
                               strerror(errno));
    hallu_atomic_file f;
    hallu_status s = hallu_atomic_begin(&f, dst, err);
    unsigned char *chunk = s == HALLU_OK ? malloc(ATOMIC_BUF_CAP) : NULL;
    if (s == HALLU_OK && !chunk)
        s = hallu_error_set(err, HALLU_ERR_OOM, "copy %s to %s: out of memory", src, dst);
    while (s == HALLU_OK) {
        ssize_t got = read(in, chunk, ATOMIC_BUF_CAP);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            s = hallu_error_set(err, HALLU_ERR_IO, "copy %s to %s: read failed: %s", src, dst, strerror(errno));
        else if (got == 0)
            break;
        else
            s = hallu_atomic_append(&f, chunk, (size_t)got, err);
    }
    free(chunk);
    close(in);
    if (s != HALLU_OK) {
        hallu_atomic_abort(&f);
        return s;
    }
    return hallu_atomic_commit(&f, err);
}
