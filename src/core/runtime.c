#include "hallu/core.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef HALLU_VERSION
#define HALLU_VERSION "0.0.0"
#endif

enum { HALLU_ALIGN = 64 };

void *hallu_alloc(size_t nbytes, const char *what, hallu_error *err)
{
    void *p = NULL;
    size_t rounded = (nbytes + HALLU_ALIGN - 1) / HALLU_ALIGN * HALLU_ALIGN;
    if (rounded == 0)
        rounded = HALLU_ALIGN;
    if (posix_memalign(&p, HALLU_ALIGN, rounded) != 0) {
        hallu_error_set(err, HALLU_ERR_OOM, "out of memory allocating %zu bytes for %s",
                        nbytes, what ? what : "buffer");
        return NULL;
    }
    return p;
}

void *hallu_calloc(size_t nbytes, const char *what, hallu_error *err)
{
    void *p = hallu_alloc(nbytes, what, err);
    if (p)
        memset(p, 0, nbytes);
    return p;
}

void hallu_free(void *p) { free(p); }

const char *hallu_version(void) { return HALLU_VERSION; }

#ifdef HALLU_HAVE_CUDA_BACKEND
/* The versions the CUDA backend was compiled against (headers' macros; CMake
 * passes the toolkit's, whose runtime is linked statically). */
#include <cublas_api.h>
#include <cudnn_version.h>
#define HALLU_STR_(x) #x
#define HALLU_STR(x) HALLU_STR_(x)
#define HALLU_CUDA_BACKEND_DESC ", cuda (CUDA runtime " HALLU_CUDA_RUNTIME_VERSION ", cuBLAS " \
    HALLU_STR(CUBLAS_VER_MAJOR) "." HALLU_STR(CUBLAS_VER_MINOR) "." HALLU_STR(CUBLAS_VER_PATCH) ", cuDNN " \
    HALLU_STR(CUDNN_MAJOR) "." HALLU_STR(CUDNN_MINOR) "." HALLU_STR(CUDNN_PATCHLEVEL) ")"
#else
#define HALLU_CUDA_BACKEND_DESC ""
#endif

const char *hallu_backends_compiled(void)
{
    return "cpu (oneDNN + OpenMP)" HALLU_CUDA_BACKEND_DESC;
}

void hallu_set_num_threads(int n)
{
    if (n <= 0)
        return;
    omp_set_num_threads(n);
}

int hallu_get_num_threads(void) { return omp_get_max_threads(); }

double hallu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

uint64_t hallu_fnv1a64(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}
