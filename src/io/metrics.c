/* Metrics files: JSONL and CSV appenders, and a fixed-buffer JSON object
 * builder. Appending (not atomic replacement) is deliberate here: a crash loses
 * at most the line being written, and each line is one write() + fsync. */
#include "io_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static hallu_status append_bytes(const char *path, const char *what, const char *data, size_t n,
                                 int *was_empty, hallu_error *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return hallu_error_set(err, HALLU_ERR_IO, "%s append %s: cannot open: %s", what, path, strerror(errno));
    if (was_empty) {
        struct stat sb;
        *was_empty = fstat(fd, &sb) == 0 && sb.st_size == 0;
        close(fd);
        return HALLU_OK;
    }
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, data + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int e = errno;
            close(fd);
            return hallu_error_set(err, HALLU_ERR_IO, "%s append %s: write failed: %s", what, path, strerror(e));
        }
        done += (size_t)w;
    }
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return hallu_error_set(err, HALLU_ERR_IO, "%s append %s: fsync failed: %s", what, path, strerror(e));
    }
    if (close(fd) != 0)
        return hallu_error_set(err, HALLU_ERR_IO, "%s append %s: close failed: %s", what, path, strerror(errno));
    return HALLU_OK;
}

hallu_status hallu_jsonl_append(const char *path, const char *line, hallu_error *err)
{
    if (!path || !line)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "jsonl append: NULL path or line");
    size_t n = strlen(line);
    if (memchr(line, '\n', n))
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "jsonl append %s: line contains a newline", path);
    char *buf = malloc(n + 1);
    if (!buf)
        return hallu_error_set(err, HALLU_ERR_OOM, "jsonl append %s: out of memory", path);
    memcpy(buf, line, n);
    buf[n] = '\n';
    hallu_status s = append_bytes(path, "jsonl", buf, n + 1, NULL, err);
    free(buf);
    return s;
}

hallu_status hallu_csv_append(const char *path, const char *header, const double *values, int n,
                              hallu_error *err)
{
    if (!path || !header || n < 0 || (n > 0 && !values))
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "csv append: bad arguments");
    int empty = 0;
    hallu_status s = append_bytes(path, "csv", NULL, 0, &empty, err);
    if (s != HALLU_OK)
        return s;
    io_strbuf sb = {0};
    if (empty) {
        io_sb_puts(&sb, header);
        io_sb_puts(&sb, "\n");
    }
    for (int i = 0; i < n; i++)
        io_sb_printf(&sb, i ? ",%.9g" : "%.9g", values[i]);
    io_sb_puts(&sb, "\n");
    if (sb.oom)
        s = hallu_error_set(err, HALLU_ERR_OOM, "csv append %s: out of memory", path);
    else
        s = append_bytes(path, "csv", sb.p, sb.len, NULL, err);
    io_sb_free(&sb);
    return s;
}

/* ---- JSON object builder ---- */

void hallu_json_obj_init(hallu_json_obj *o)
{
    o->buf[0] = '{';
    o->buf[1] = '\0';
    o->len = 1;
    o->count = 0;
    o->failed = 0;
}

static void obj_raw(hallu_json_obj *o, const char *s, size_t n)
{
    if (o->failed)
        return;
    if (o->len + n + 2 > sizeof o->buf) {   /* keep room for "}" and NUL */
        o->failed = 1;
        return;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

static void obj_key(hallu_json_obj *o, const char *key)
{
    if (o->count++)
        obj_raw(o, ",", 1);
    size_t need = hallu_json_escape(NULL, 0, key);
    if (o->failed || o->len + need + 3 > sizeof o->buf) {
        o->failed = 1;
        return;
    }
    hallu_json_escape(o->buf + o->len, need + 1, key);
    o->len += need;
    obj_raw(o, ":", 1);
}

void hallu_json_obj_add_str(hallu_json_obj *o, const char *key, const char *value)
{
    obj_key(o, key);
    size_t need = hallu_json_escape(NULL, 0, value);
    if (o->failed || o->len + need + 2 > sizeof o->buf) {
        o->failed = 1;
        return;
    }
    hallu_json_escape(o->buf + o->len, need + 1, value);
    o->len += need;
}

void hallu_json_obj_add_int(hallu_json_obj *o, const char *key, int64_t value)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%lld", (long long)value);
    obj_key(o, key);
    obj_raw(o, tmp, (size_t)n);
}

void hallu_json_obj_add_num(hallu_json_obj *o, const char *key, double value)
{
    char tmp[40];
    int n = isfinite(value) ? snprintf(tmp, sizeof tmp, "%.9g", value) : snprintf(tmp, sizeof tmp, "null");
    obj_key(o, key);
    obj_raw(o, tmp, (size_t)n);
    if (!isfinite(value))
        o->failed = 2;
}

const char *hallu_json_obj_finish(hallu_json_obj *o, hallu_error *err)
{
    if (o->failed == 2) {
        hallu_error_set(err, HALLU_ERR_INVALID_ARG, "json object: a number is NaN or infinite");
        return NULL;
    }
    if (o->failed) {
        hallu_error_set(err, HALLU_ERR_OOM, "json object: more than %zu bytes", sizeof o->buf);
        return NULL;
    }
    o->buf[o->len] = '}';
    o->buf[o->len + 1] = '\0';
    return o->buf;
}
