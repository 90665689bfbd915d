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
#include "backend/cuda/cuda_internal.h"   /* cuda_backends_compiled: the versions it was built against */
#endif

const char *hallu_backends_compiled(void)
{
#ifdef HALLU_HAVE_CUDA_BACKEND
    return cuda_backends_compiled();
#else
    return "cpu (oneDNN + OpenMP)";
#endif
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
