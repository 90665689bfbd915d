/* The backend a test runs on: HALLU_TEST_DEVICE names it ("cpu" when unset), so
 * ctest can run one test binary on cpu and again on cpu-isolated (label
 * "isolated") or cuda (label "gpu", tests/gpu.cmake). A cuda device that cannot
 * be created with HALLU_ERR_UNSUPPORTED (no CUDA device, or a build without the
 * CUDA backend) ends the test with exit code 77: skipped, not failed. */
#ifndef HALLU_TEST_BACKEND_H
#define HALLU_TEST_BACKEND_H

#include "hallu/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline const char *test_device(void)
{
    const char *d = getenv("HALLU_TEST_DEVICE");
    return d && d[0] ? d : "cpu";
}

static inline hallu_status test_backend_create(hallu_backend **be, int threads, hallu_error *err)
{
    hallu_status s = hallu_backend_create(test_device(), threads, be, err);
    if (s != HALLU_OK) {
        fprintf(stderr, "test backend '%s': %s\n", test_device(), err->msg);
        if (s == HALLU_ERR_UNSUPPORTED && strncmp(test_device(), "cuda", 4) == 0) {
            printf("skipped: device %s is not usable here: %s\n", test_device(), err->msg);
            fflush(stdout);
            exit(77);
        }
    }
    return s;
}

#endif
