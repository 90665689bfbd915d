/* The backend a test runs on: HALLU_TEST_DEVICE names it ("cpu" when unset), so
 * ctest can run one test binary on cpu and again on cpu-isolated (label
 * "isolated"). */
#ifndef HALLU_TEST_BACKEND_H
#define HALLU_TEST_BACKEND_H

#include "hallu/backend.h"

#include <stdio.h>
#include <stdlib.h>

static inline const char *test_device(void)
{
    const char *d = getenv("HALLU_TEST_DEVICE");
    return d && d[0] ? d : "cpu";
}

static inline hallu_status test_backend_create(hallu_backend **be, int threads, hallu_error *err)
{
    hallu_status s = hallu_backend_create(test_device(), threads, be, err);
    if (s != HALLU_OK)
        fprintf(stderr, "test backend '%s': %s\n", test_device(), err->msg);
    return s;
}

#endif
