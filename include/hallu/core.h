/* hallu core: status codes, error messages, aligned allocation, threads.
 * The library never exits or prints on its own: every fallible call returns a
 * hallu_status and fills a caller-owned hallu_error with a message that names
 * the call and the offending values. */
#ifndef HALLU_CORE_H
#define HALLU_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum hallu_status {
    HALLU_OK = 0,
    HALLU_ERR_INVALID_ARG,   /* bad shape, flag or value passed by the caller */
    HALLU_ERR_OOM,           /* allocation failed; message carries the size */
    HALLU_ERR_IO,            /* open/read/write/fsync/rename failed */
    HALLU_ERR_FORMAT,        /* a file's bytes are not what its format promises */
    HALLU_ERR_UNSUPPORTED,   /* valid request that this build cannot serve */
    HALLU_ERR_BACKEND,       /* oneDNN/BLAS/CUDA reported a failure */
    HALLU_ERR_INTERRUPTED,   /* stopped on request (signal) */
} hallu_status;

#define HALLU_ERROR_MSG_MAX 512

typedef struct hallu_error {
    hallu_status code;
    char msg[HALLU_ERROR_MSG_MAX];
} hallu_error;

/* Sets err (when non-NULL) and returns code, so callers can write
 * `return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "conv2d: cin=%d", cin);` */
hallu_status hallu_error_set(hallu_error *err, hallu_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Like hallu_error_set, but puts "<formatted text>: " in front of the message
 * err already holds: `return hallu_error_prefix(err, st, "loader: image %u", i);` */
hallu_status hallu_error_prefix(hallu_error *err, hallu_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void hallu_error_clear(hallu_error *err);
const char *hallu_status_name(hallu_status code);

/* Element types of files (safetensors) and of backend buffers. */

typedef enum hallu_dtype {
    HALLU_DTYPE_F32 = 0,
    HALLU_DTYPE_I64,
    HALLU_DTYPE_I32,
    HALLU_DTYPE_F64,
    HALLU_DTYPE_F16,
    HALLU_DTYPE_BF16,
    HALLU_DTYPE_I16,
    HALLU_DTYPE_I8,
    HALLU_DTYPE_U8,
    HALLU_DTYPE_BOOL,
    HALLU_DTYPE_U16,
    HALLU_DTYPE_U32,
    HALLU_DTYPE_U64,
    HALLU_DTYPE_COUNT
} hallu_dtype;

/* Size in bytes (0 for an invalid value) and safetensors name ("F32", ...). */
size_t hallu_dtype_size(hallu_dtype dt);
const char *hallu_dtype_name(hallu_dtype dt);

/* 64-byte aligned allocation (cache line / AVX-512 friendly). On failure returns
 * NULL and fills err with the requested size. Free with hallu_free. */
void *hallu_alloc(size_t nbytes, const char *what, hallu_error *err);
void *hallu_calloc(size_t nbytes, const char *what, hallu_error *err);
void hallu_free(void *p);

/* The table of ToTensor then Normalize for 8-bit channel values:
 * table[c][v] = ((float)v / 255 - mean[c]) / std[c] in fp32 (one definition,
 * so the loader and every backend's normalize_u8 give the same bits). */
void hallu_u8_normalize_table(float table[3][256], const float mean[3], const float std[3]);

/* Library version string ("0.1.0") and a human list of compiled-in backends. */
const char *hallu_version(void);
const char *hallu_backends_compiled(void);

/* Sets the thread count used by OpenMP and oneDNN. n <= 0 keeps the default. */
void hallu_set_num_threads(int n);
int hallu_get_num_threads(void);

/* Monotonic wall clock in seconds. */
double hallu_now(void);

/* FNV-1a 64 of n bytes, continuing from h (start with HALLU_FNV_OFFSET): the
 * checksum of checkpoints and packed datasets, and the fingerprints ranks
 * compare. */
#define HALLU_FNV_OFFSET 0xcbf29ce484222325ULL
uint64_t hallu_fnv1a64(uint64_t h, const void *data, size_t n);

#ifdef __cplusplus
}
#endif
#endif
