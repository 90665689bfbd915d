#include "check.h"
#include "hallu/backend.h"
#include "hallu/rng.h"

#include <string.h>

static void test_rng_reproducible(void)
{
    hallu_rng a, b;
    hallu_rng_init(&a, 42, 7);
    hallu_rng_init(&b, 42, 7);
    int same = 1;
    for (int i = 0; i < 1000; i++)
        same &= hallu_rng_u32(&a) == hallu_rng_u32(&b);
    CHECK(same);
    hallu_rng_init(&b, 42, 8);
    hallu_rng_init(&a, 42, 7);
    int differ = 0;
    for (int i = 0; i < 16; i++)
        differ += hallu_rng_u32(&a) != hallu_rng_u32(&b);
    CHECK(differ > 12);
}

static void test_rng_moments(void)
{
    hallu_rng r;
    hallu_rng_init(&r, 1, 0);
    double su = 0, sn = 0, sn2 = 0, sb = 0;
    const int n = 200000;
    for (int i = 0; i < n; i++) {
        su += hallu_rng_uniform(&r);
        double z = hallu_rng_normal(&r);
        sn += z;
        sn2 += z * z;
        sb += hallu_rng_beta(&r, 0.1, 0.1);
    }
    CHECK_NEAR(su / n, 0.5, 0.005);
    CHECK_NEAR(sn / n, 0.0, 0.01);
    CHECK_NEAR(sn2 / n, 1.0, 0.02);
    CHECK_NEAR(sb / n, 0.5, 0.01);
    uint32_t perm[100];
    hallu_rng_permutation(&r, perm, 100);
    int seen[100] = {0}, ok = 1;
    for (int i = 0; i < 100; i++)
        ok &= perm[i] < 100 && !seen[perm[i]]++;
    CHECK(ok);
}

static void test_geometry_errors(void)
{
    hallu_error err;
    hallu_conv2d_geom g;
    CHECK(hallu_conv2d_geom_init(&g, 2, 32, 32, 3, 64, 3, 1, 1, &err) == HALLU_OK);
    CHECK(g.oh == 32 && g.ow == 32);
    CHECK(hallu_conv2d_geom_init(&g, 2, 64, 64, 3, 64, 7, 2, 3, &err) == HALLU_OK);
    CHECK(g.oh == 32);
    CHECK(hallu_conv2d_geom_init(&g, 2, 2, 2, 3, 64, 7, 1, 0, &err) == HALLU_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "kernel 7") != NULL);
    CHECK(hallu_conv2d_geom_init(&g, 0, 2, 2, 3, 64, 1, 1, 0, &err) == HALLU_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "n=0") != NULL);
}

static void test_oom_reports_size(void)
{
    hallu_error err;
    void *p = hallu_alloc((size_t)1 << 62, "huge test buffer", &err);
    CHECK(p == NULL);
    CHECK(err.code == HALLU_ERR_OOM);
    CHECK(strstr(err.msg, "4611686018427387904") != NULL && strstr(err.msg, "huge test buffer"));
}

/* hallu_error_prefix puts the new context before the earlier message, and a
 * message too long for the buffer is cut, still terminated. */
static void test_error_prefix(void)
{
    hallu_error err;
    hallu_error_set(&err, HALLU_ERR_IO, "cannot open x.bin");
    CHECK(hallu_error_prefix(&err, HALLU_ERR_INVALID_ARG, "--data %s", "imagefolder:x") == HALLU_ERR_INVALID_ARG);
    CHECK(err.code == HALLU_ERR_INVALID_ARG);
    CHECK(strcmp(err.msg, "--data imagefolder:x: cannot open x.bin") == 0);
    char long_arg[2 * HALLU_ERROR_MSG_MAX];
    memset(long_arg, 'a', sizeof long_arg - 1);
    long_arg[sizeof long_arg - 1] = '\0';
    hallu_error_prefix(&err, HALLU_ERR_IO, "%s", long_arg + HALLU_ERROR_MSG_MAX + 40);   /* 471 a: the old message cut by one */
    CHECK(strlen(err.msg) == HALLU_ERROR_MSG_MAX - 1);
    CHECK(strstr(err.msg, ": --data imagefolder:x") != NULL);
    hallu_error_prefix(&err, HALLU_ERR_IO, "%s", long_arg);   /* the new part alone overflows */
    CHECK(strlen(err.msg) == HALLU_ERROR_MSG_MAX - 1 && err.msg[0] == 'a' && err.msg[HALLU_ERROR_MSG_MAX - 2] == 'a');
}

int main(void)
{
    test_error_prefix();
    test_rng_reproducible();
    test_rng_moments();
    test_geometry_errors();
    test_oom_reports_size();
    return check_summary();
}
