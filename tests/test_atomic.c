/* Atomic writes: content, replacement, streaming, copy, abort, no leftover temps. */
#include "hallu/io.h"
#include "check.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[512];

static char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)sz + 1);
    *n = fread(buf, 1, (size_t)sz, f);
    fclose(f);
    return buf;
}

static int count_temps(void)
{
    int n = 0;
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));)
        if (strstr(e->d_name, ".tmp."))
            n++;
    if (d)
        closedir(d);
    return n;
}

static int file_equals(const char *path, const void *data, size_t n)
{
    size_t got = 0;
    char *buf = read_all(path, &got);
    int ok = buf && got == n && memcmp(buf, data, n) == 0;
    free(buf);
    return ok;
}

static void test_write_and_replace(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/a.bin", dir);
    hallu_error err = {0};
    CHECK_OK(hallu_atomic_write(path, "hello", 5, &err), &err);
    CHECK(file_equals(path, "hello", 5));
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0644);
    CHECK_OK(hallu_atomic_write(path, "bye", 3, &err), &err);
    CHECK(file_equals(path, "bye", 3));
    CHECK_OK(hallu_atomic_write(path, NULL, 0, &err), &err);
    CHECK(file_equals(path, "", 0));
    CHECK(count_temps() == 0);
}

static void test_streaming(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/big.bin", dir);
    size_t n = 300000;   /* larger than the internal buffer */
    unsigned char *big = malloc(n);
    for (size_t i = 0; i < n; i++)
        big[i] = (unsigned char)(i * 31 + 7);
    hallu_error err = {0};
    hallu_atomic_file f;
    CHECK_OK(hallu_atomic_begin(&f, path, &err), &err);
    CHECK(count_temps() == 1);
    CHECK_OK(hallu_atomic_append(&f, big, 10, &err), &err);
    CHECK_OK(hallu_atomic_append(&f, big + 10, 200000, &err), &err);
    CHECK_OK(hallu_atomic_append(&f, big + 200010, n - 200010, &err), &err);
    CHECK(access(path, F_OK) != 0);   /* invisible until commit */
    CHECK_OK(hallu_atomic_commit(&f, &err), &err);
    CHECK(file_equals(path, big, n));
    CHECK(count_temps() == 0);
    CHECK(hallu_atomic_append(&f, big, 1, &err) == HALLU_ERR_INVALID_ARG);
    hallu_atomic_abort(&f);   /* after commit: harmless */
    CHECK(file_equals(path, big, n));
    free(big);
}

static void test_copy(void)
{
    char src[600], dst[600], missing[600];
    snprintf(src, sizeof src, "%s/copy_src.bin", dir);
    snprintf(dst, sizeof dst, "%s/copy_dst.bin", dir);
    snprintf(missing, sizeof missing, "%s/no_such_file.bin", dir);
    size_t n = 200003;   /* several read chunks plus a partial one */
    unsigned char *data = malloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = (unsigned char)(i * 13 + 1);
    hallu_error err = {0};
    CHECK_OK(hallu_atomic_write(src, data, n, &err), &err);
    CHECK_OK(hallu_atomic_write(dst, "old", 3, &err), &err);
    CHECK_OK(hallu_atomic_copy(src, dst, &err), &err);
    CHECK(file_equals(dst, data, n));
    CHECK(file_equals(src, data, n));
    CHECK_OK(hallu_atomic_write(src, "", 0, &err), &err);
    CHECK_OK(hallu_atomic_copy(src, dst, &err), &err);
    CHECK(file_equals(dst, "", 0));
    /* a missing source names itself and leaves the destination as it was */
    CHECK(hallu_atomic_copy(missing, dst, &err) == HALLU_ERR_IO);
    CHECK_MSG(strstr(err.msg, missing) != NULL, "message should name the source: %s", err.msg);
    CHECK(file_equals(dst, "", 0));
    CHECK(count_temps() == 0);
    free(data);
}

static void test_abort_keeps_old(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/keep.txt", dir);
    hallu_error err = {0};
    CHECK_OK(hallu_atomic_write(path, "old", 3, &err), &err);
    hallu_atomic_file f;
    CHECK_OK(hallu_atomic_begin(&f, path, &err), &err);
    CHECK_OK(hallu_atomic_append(&f, "new content", 11, &err), &err);
    hallu_atomic_abort(&f);
    CHECK(file_equals(path, "old", 3));
    CHECK(count_temps() == 0);
    hallu_atomic_file z;
    memset(&z, 0, sizeof z);
    hallu_atomic_abort(&z);   /* never begun */
    CHECK(z.fd == -1);
}

static void test_errors(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/no/such/dir/x.bin", dir);
    hallu_error err = {0};
    CHECK(hallu_atomic_write(path, "x", 1, &err) == HALLU_ERR_IO);
    CHECK_MSG(strstr(err.msg, path) != NULL, "message should name the path: %s", err.msg);
    CHECK(hallu_atomic_write("", "x", 1, &err) == HALLU_ERR_INVALID_ARG);
}

int main(void)
{
    snprintf(dir, sizeof dir, "%s/test_atomic_XXXXXX", HALLU_BINARY_DIR);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_write_and_replace();
    test_streaming();
    test_copy();
    test_abort_keeps_old();
    test_errors();
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    return check_summary();
}
