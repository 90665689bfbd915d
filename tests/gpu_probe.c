/* gpu_probe [DEVICE]: whether a CUDA device is usable here (tests/gpu.cmake).
 * Creates the backend DEVICE (default: $HALLU_DEVICE when it names a cuda
 * device, else "cuda"): exit 0 when it works, 77 when hallu_backend_create says
 * HALLU_ERR_UNSUPPORTED (no CUDA device, or a build of hallu without the CUDA
 * backend; the reason goes to stdout), 1 on any other failure (a broken
 * driver or backend is a failure, not a skip). */
#include "hallu/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    const char *env = getenv("HALLU_DEVICE");
    const char *dev = argc > 1 ? argv[1] : env && strncmp(env, "cuda", 4) == 0 ? env : "cuda";
    hallu_backend *be = NULL;
    hallu_error err = { 0 };
    hallu_status s = hallu_backend_create(dev, 1, &be, &err);
    if (s == HALLU_OK) {
        printf("gpu_probe: device %s is usable\n", dev);
        hallu_backend_free(be);
        return 0;
    }
    printf("gpu_probe: device %s: %s\n", dev, err.msg);
    return s == HALLU_ERR_UNSUPPORTED ? 77 : 1;
}
