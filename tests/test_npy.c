/* .npy writer: exact header bytes, alignment, data; bad arguments. */
#include "hallu/io.h"
#include "check.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[512];

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    unsigned char *buf = malloc(1 << 16);
    *n = fread(buf, 1, 1 << 16, f);
    fclose(f);
    return buf;
}

/* Checks magic, version, 64-byte alignment and the dict text; returns the data offset. */
static size_t check_header(const unsigned char *b, size_t n, const char *dict)
{
    CHECK(n >= 64 && memcmp(b, "\x93NUMPY\x01\x00", 8) == 0);
    size_t hlen = (size_t)b[8] | (size_t)b[9] << 8;
    size_t off = 10 + hlen;
    CHECK_MSG(off % 64 == 0, "data offset %zu", off);
    CHECK(off <= n && b[off - 1] == '\n');
    size_t dl = strlen(dict);
    CHECK_MSG(memcmp(b + 10, dict, dl) == 0, "header %.*s", (int)dl, (const char *)b + 10);
    for (size_t i = 10 + dl; i + 1 < off; i++)
        CHECK(b[i] == ' ');
    return off;
}

static void test_f32_2d(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/a.npy", dir);
    float x[6] = {1, 2, 3, -4.5f, 0, 1e-3f};
    int64_t shape[2] = {2, 3};
    hallu_error err = {0};
    CHECK_OK(hallu_npy_write(path, HALLU_DTYPE_F32, 2, shape, x, &err), &err);
    size_t n = 0;
    unsigned char *b = slurp(path, &n);
    CHECK(b != NULL);
    if (!b)
        return;
    size_t off = check_header(b, n, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }");
    CHECK(n == off + sizeof x && memcmp(b + off, x, sizeof x) == 0);
    free(b);
}

static void test_shapes_and_ints(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/b.npy", dir);
    int64_t v[5] = {1, -2, 3, INT64_MAX, INT64_MIN};
    int64_t shape1[1] = {5};
    hallu_error err = {0};
    CHECK_OK(hallu_npy_write(path, HALLU_DTYPE_I64, 1, shape1, v, &err), &err);
    size_t n = 0;
    unsigned char *b = slurp(path, &n);
    size_t off = check_header(b, n, "{'descr': '<i8', 'fortran_order': False, 'shape': (5,), }");
    CHECK(n == off + sizeof v && memcmp(b + off, v, sizeof v) == 0);
    free(b);

    int32_t s = 42;
    CHECK_OK(hallu_npy_write(path, HALLU_DTYPE_I32, 0, NULL, &s, &err), &err);
    b = slurp(path, &n);
    off = check_header(b, n, "{'descr': '<i4', 'fortran_order': False, 'shape': (), }");
    CHECK(n == off + 4 && memcmp(b + off, &s, 4) == 0);
    free(b);

    int64_t shape0[3] = {4, 0, 2};
    CHECK_OK(hallu_npy_write(path, HALLU_DTYPE_F32, 3, shape0, NULL, &err), &err);
    b = slurp(path, &n);
    off = check_header(b, n, "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 0, 2), }");
    CHECK(n == off);
    free(b);
}

static void test_errors(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/c.npy", dir);
    float x = 0;
    int64_t shape[1] = {-1};
    hallu_error err = {0};
    CHECK(hallu_npy_write(path, HALLU_DTYPE_F32, 1, shape, &x, &err) == HALLU_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, path) != NULL);
    shape[0] = 1;
    CHECK(hallu_npy_write(path, HALLU_DTYPE_F16, 1, shape, &x, &err) == HALLU_ERR_INVALID_ARG);
    CHECK(hallu_npy_write(path, HALLU_DTYPE_F32, 1, shape, NULL, &err) == HALLU_ERR_INVALID_ARG);
    CHECK(access(path, F_OK) != 0);
}

int main(void)
{
    snprintf(dir, sizeof dir, "%s/test_npy_XXXXXX", HALLU_BINARY_DIR);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_f32_2d();
    test_shapes_and_ints();
    test_errors();
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    return check_summary();
}
