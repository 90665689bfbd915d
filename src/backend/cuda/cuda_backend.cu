/* The CUDA backend's lifetime, memory, transfers, precision and op table
 * (issue 27). See cuda_internal.h for the model: one device, one stream, every
 * op enqueued there; failures recorded once (sticky) with the call that failed
 * and the CUDA / cuBLAS / cuDNN status by name.
 *
 * This file is compiled by nvcc as C++ but written as C (no exceptions, no
 * new/delete, no C++ library): the library it links into is C. */
#include "backend/cuda/cuda_internal.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- versions --------------------------------------------------------------- */

#ifndef HALLU_CUDA_RUNTIME_VERSION   /* CMake passes the toolkit's major.minor */
#define HALLU_CUDA_RUNTIME_VERSION "?"
#endif
#define CUDA_STR_(x) #x
#define CUDA_STR(x) CUDA_STR_(x)

const char *cuda_backends_compiled(void)
{
    return "cpu (oneDNN + OpenMP), cuda (CUDA runtime " HALLU_CUDA_RUNTIME_VERSION ", cuBLAS "
        CUDA_STR(CUBLAS_VER_MAJOR) "." CUDA_STR(CUBLAS_VER_MINOR) "." CUDA_STR(CUBLAS_VER_PATCH) ", cuDNN "
        CUDA_STR(CUDNN_MAJOR) "." CUDA_STR(CUDNN_MINOR) "." CUDA_STR(CUDNN_PATCHLEVEL) ")";
}

/* ---- failures ------------------------------------------------------------ */

int cuda_check_rt(hallu_backend *be, cudaError_t st, const char *what)
{
    if (st == cudaSuccess)
        return 1;
    hallu_backend_fail(be, st == cudaErrorMemoryAllocation ? HALLU_ERR_OOM : HALLU_ERR_BACKEND, "%s: %s (%s)",
                       what, cudaGetErrorString(st), cudaGetErrorName(st));
    return 0;
}

int cuda_check_blas(hallu_backend *be, cublasStatus_t st, const char *what)
{
    if (st == CUBLAS_STATUS_SUCCESS)
        return 1;
    hallu_backend_fail(be, st == CUBLAS_STATUS_ALLOC_FAILED ? HALLU_ERR_OOM : HALLU_ERR_BACKEND, "%s: %s (%s)",
                       what, cublasGetStatusString(st), cublasGetStatusName(st));
    return 0;
}

/* cuDNN's status names are coarse (CUDNN_STATUS_BAD_PARAM...); cuDNN 9 keeps
 * the reason of the last failure, which goes into the message as well. */
void cuda_dnn_message(char *buf, size_t size, cudnnStatus_t st)
{
    char detail[256] = "";
    cudnnGetLastErrorString(detail, sizeof detail);
    if (detail[0])
        snprintf(buf, size, "%s: %s", cudnnGetErrorString(st), detail);
    else
        snprintf(buf, size, "%s", cudnnGetErrorString(st));
}

int cuda_check_dnn(hallu_backend *be, cudnnStatus_t st, const char *what)
{
    if (st == CUDNN_STATUS_SUCCESS)
        return 1;
    char msg[320];
    cuda_dnn_message(msg, sizeof msg, st);
    hallu_backend_fail(be, cuda_dnn_oom(st) ? HALLU_ERR_OOM : HALLU_ERR_BACKEND, "%s: %s", what, msg);
    return 0;
}

/* cudaGetLastError returns (and clears) a launch-configuration error of the
 * last launch on this thread; faults inside a kernel surface later, at the next
 * synchronising call (download), as that call's failure. */
void cuda_check_launch(hallu_backend *be, const char *what)
{
    cudaError_t st = cudaGetLastError();
    if (st != cudaSuccess)
        hallu_backend_fail(be, HALLU_ERR_BACKEND, "%s: kernel launch: %s (%s)", what, cudaGetErrorString(st),
                           cudaGetErrorName(st));
}

/* A failed runtime call before the backend exists (creation) as a named error. */
static hallu_status rt_error(hallu_error *err, hallu_status code, const char *device, const char *what,
                             cudaError_t st)
{
    cudaGetLastError();   /* a non-sticky error must not resurface as a later launch's */
    return hallu_error_set(err, code, "device '%s': %s: %s (%s)", device, what, cudaGetErrorString(st),
                           cudaGetErrorName(st));
}

/* ---- allocation table ------------------------------------------------------ */

static size_t rec_slot(const cuda_impl *impl, const void *p)
{
    uint64_t h = (uint64_t)(uintptr_t)p;   /* cudaMalloc addresses are 256-aligned: mix the high bits in */
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 32;
    return (size_t)h & (impl->allocs_cap - 1);
}

/* Inserts p (the table has room: rec_reserve ran). */
static void rec_put(cuda_impl *impl, void *p, size_t nbytes)
{
    size_t i = rec_slot(impl, p);
    while (impl->allocs[i].p)
        i = (i + 1) & (impl->allocs_cap - 1);
    impl->allocs[i].p = p;
    impl->allocs[i].nbytes = nbytes;
    impl->allocs_used++;
}

/* Room for one more entry at load <= 1/2 (capacity a power of two). */
static int rec_reserve(cuda_impl *impl)
{
    if (2 * (impl->allocs_used + 1) <= impl->allocs_cap)
        return 1;
    size_t cap = impl->allocs_cap ? 2 * impl->allocs_cap : 256;
    cuda_alloc_rec *old = impl->allocs;
    size_t old_cap = impl->allocs_cap;
    cuda_alloc_rec *grown = (cuda_alloc_rec *)calloc(cap, sizeof *grown);
    if (!grown)
        return 0;
    impl->allocs = grown;
    impl->allocs_cap = cap;
    impl->allocs_used = 0;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].p)
            rec_put(impl, old[i].p, old[i].nbytes);
    free(old);
    return 1;
}

/* Removes p and returns its size (0 when p is unknown). Backward-shift
 * deletion keeps every probe chain unbroken without tombstones. */
static size_t rec_take(cuda_impl *impl, const void *p)
{
    if (!impl->allocs_cap)
        return 0;
    size_t mask = impl->allocs_cap - 1, i = rec_slot(impl, p);
    while (impl->allocs[i].p != p) {
        if (!impl->allocs[i].p)
            return 0;
        i = (i + 1) & mask;
    }
    size_t nbytes = impl->allocs[i].nbytes;
    size_t hole = i;
    for (size_t j = (i + 1) & mask; impl->allocs[j].p; j = (j + 1) & mask) {
        size_t home = rec_slot(impl, impl->allocs[j].p);
        /* j's entry may move into the hole when its home is not in (hole, j] (cyclically). */
        int between = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!between) {
            impl->allocs[hole] = impl->allocs[j];
            hole = j;
        }
    }
    impl->allocs[hole].p = NULL;
    impl->allocs[hole].nbytes = 0;
    impl->allocs_used--;
    return nbytes;
}

/* ---- memory ---------------------------------------------------------------- */

/* cudaMalloc (256-byte aligned, so the 64 the contract asks for) and a zero
 * fill enqueued on the stream: every later use of the block is ordered after
 * it. Not sticky on failure: nothing was enqueued that could have gone wrong. */
static void *cuda_alloc(hallu_backend *be, size_t nbytes, const char *what, hallu_error *err)
{
    cuda_impl *impl = cuda_impl_of(be);
    const char *name = what ? what : "buffer";
    if (nbytes == 0)
        nbytes = 1;
    if (!rec_reserve(impl)) {
        hallu_error_set(err, HALLU_ERR_OOM, "out of host memory recording a %zu-byte device block for %s", nbytes,
                        name);
        return NULL;
    }
    void *p = NULL;
    cudaError_t st = cudaMalloc(&p, nbytes);
    if (st != cudaSuccess) {
        cudaGetLastError();   /* cudaErrorMemoryAllocation is not sticky: keep it from a later launch check */
        hallu_error_set(err, st == cudaErrorMemoryAllocation ? HALLU_ERR_OOM : HALLU_ERR_BACKEND,
                        "%s %zu bytes for %s on cuda:%d (%s; %zu bytes live): cudaMalloc: %s (%s)",
                        st == cudaErrorMemoryAllocation ? "out of device memory allocating" : "allocating", nbytes,
                        name, impl->device, impl->device_name, impl->bytes_live, cudaGetErrorString(st),
                        cudaGetErrorName(st));
        return NULL;
    }
    st = cudaMemsetAsync(p, 0, nbytes, impl->stream);
    if (st != cudaSuccess) {
        cudaGetLastError();
        cudaFree(p);
        hallu_error_set(err, HALLU_ERR_BACKEND, "allocating %zu bytes for %s on cuda:%d: cudaMemsetAsync: %s (%s)",
                        nbytes, name, impl->device, cudaGetErrorString(st), cudaGetErrorName(st));
        return NULL;
    }
    rec_put(impl, p, nbytes);
    impl->bytes_live += nbytes;
    if (impl->bytes_live > impl->bytes_peak)
        impl->bytes_peak = impl->bytes_live;
    return p;
}

/* Work still queued may use the block: wait for the stream before freeing it.
 * Releases happen at teardown and between runs, never inside a step. */
static void cuda_release(hallu_backend *be, void *p)
{
    if (!p)
        return;
    cuda_impl *impl = cuda_impl_of(be);
    size_t nbytes = rec_take(impl, p);
    if (!nbytes) {
        /* Not a block of cuda_alloc (an offset into one, or released twice):
         * freeing it would free someone else's block or fail in cudaFree. */
        hallu_backend_fail(be, HALLU_ERR_INVALID_ARG, "release: %p is not a live block of this backend's alloc "
                           "(released twice, or an offset into a block)", p);
        return;
    }
    impl->bytes_live -= nbytes;
    cuda_check_rt(be, cudaStreamSynchronize(impl->stream), "release: cudaStreamSynchronize");
    cuda_check_rt(be, cudaFree(p), "release: cudaFree");
}

static void cuda_memory(hallu_backend *be, size_t *live, size_t *peak)
{
    *live = cuda_impl_of(be)->bytes_live;
    *peak = cuda_impl_of(be)->bytes_peak;
}

/* From pageable host memory, cudaMemcpyAsync returns once the bytes are
 * staged, so the caller may reuse src at once; from page-locked memory
 * (cuda_host_alloc) it returns at once and the copy reads src later, in stream
 * order: upload_event, recorded right after the copy, marks when it has. */
static void cuda_upload(hallu_backend *be, void *dst, const void *src, size_t nbytes)
{
    if (!cuda_enter(be) || !nbytes)
        return;
    cuda_impl *impl = cuda_impl_of(be);
    if (cuda_check_rt(be, cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, impl->stream),
                      "upload: cudaMemcpyAsync") &&
        cuda_check_rt(be, cudaEventRecord(impl->upload_event, impl->stream), "upload: cudaEventRecord"))
        impl->upload_recorded = 1;
}

/* Waits for the last upload's copy (and, the stream being in order, the work
 * queued before it), not for work queued after it. Not gated on an earlier
 * failure: uploads enqueued before it may still be reading their sources. */
static void cuda_upload_wait(hallu_backend *be)
{
    cuda_impl *impl = cuda_impl_of(be);
    if (impl->upload_recorded)
        cuda_check_rt(be, cudaEventSynchronize(impl->upload_event), "upload_wait: cudaEventSynchronize");
}

/* The one op that waits: the host reads dst when it returns. A fault of any
 * earlier kernel surfaces here (as this call's failure). */
static void cuda_download(hallu_backend *be, void *dst, const void *src, size_t nbytes)
{
    if (!cuda_enter(be) || !nbytes)
        return;
    cuda_impl *impl = cuda_impl_of(be);
    if (cuda_check_rt(be, cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, impl->stream),
                      "download: cudaMemcpyAsync"))
        cuda_check_rt(be, cudaStreamSynchronize(impl->stream), "download: cudaStreamSynchronize");
}

static void cuda_copy(hallu_backend *be, void *dst, const void *src, size_t nbytes)
{
    if (!cuda_enter(be) || !nbytes)
        return;
    cuda_check_rt(be, cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, cuda_impl_of(be)->stream),
                  "copy: cudaMemcpyAsync");
}

/* Page-locked staging memory: uploads from it are asynchronous DMA. Made
 * current on the backend's device first (the caller may be another thread,
 * whose current device would otherwise get a context). Not sticky on failure,
 * as cuda_alloc; not zero-filled (hallu_alloc's contract). */
static void *cuda_host_alloc(hallu_backend *be, size_t nbytes, const char *what, hallu_error *err)
{
    cuda_impl *impl = cuda_impl_of(be);
    const char *name = what ? what : "buffer";
    if (nbytes == 0)
        nbytes = 1;
    cudaError_t st = cudaSetDevice(impl->device);
    if (st != cudaSuccess) {
        cudaGetLastError();
        hallu_error_set(err, HALLU_ERR_BACKEND, "allocating %zu bytes of page-locked host memory for %s: "
                        "cudaSetDevice(%d): %s (%s)", nbytes, name, impl->device, cudaGetErrorString(st),
                        cudaGetErrorName(st));
        return NULL;
    }
    void *p = NULL;
    st = cudaHostAlloc(&p, nbytes, cudaHostAllocDefault);
    if (st != cudaSuccess) {
        cudaGetLastError();   /* not sticky: keep it from a later launch check */
        hallu_error_set(err, st == cudaErrorMemoryAllocation ? HALLU_ERR_OOM : HALLU_ERR_BACKEND,
                        "%s %zu bytes of page-locked host memory for %s (cuda:%d): cudaHostAlloc: %s (%s)",
                        st == cudaErrorMemoryAllocation ? "out of memory allocating" : "allocating", nbytes, name,
                        impl->device, cudaGetErrorString(st), cudaGetErrorName(st));
        return NULL;
    }
    return p;
}

/* An upload may still be reading p: wait for the uploads before freeing it. */
static void cuda_host_free(hallu_backend *be, void *p)
{
    if (!p)
        return;
    cuda_impl *impl = cuda_impl_of(be);
    cuda_check_rt(be, cudaSetDevice(impl->device), "host_free: cudaSetDevice");
    cuda_upload_wait(be);
    cuda_check_rt(be, cudaFreeHost(p), "host_free: cudaFreeHost");
}

/* Grows a shared device buffer. The old one may still be read by queued work
 * (an earlier plan's call), so the stream drains before it is freed; this runs
 * at plan/setup time only. The new buffer is not zeroed (scratch). */
static hallu_status shared_reserve(cuda_impl *impl, void **buf, size_t *have, size_t need, const char *what,
                                   hallu_error *err)
{
    if (need <= *have)
        return HALLU_OK;
    size_t old_have = *have;
    cudaError_t st = cudaStreamSynchronize(impl->stream);
    if (st != cudaSuccess) {
        cudaGetLastError();
        return hallu_error_set(err, HALLU_ERR_BACKEND, "growing the %s to %zu bytes: cudaStreamSynchronize: %s (%s)",
                               what, need, cudaGetErrorString(st), cudaGetErrorName(st));
    }
    if (*buf) {
        st = cudaFree(*buf);
        *buf = NULL;
        *have = 0;
        if (st != cudaSuccess) {
            cudaGetLastError();
            return hallu_error_set(err, HALLU_ERR_BACKEND, "growing the %s: cudaFree: %s (%s)", what,
                                   cudaGetErrorString(st), cudaGetErrorName(st));
        }
    }
    st = cudaMalloc(buf, need);
    if (st != cudaSuccess) {
        cudaGetLastError();
        *buf = NULL;
        /* The plans made so far lay out their parts within old_have bytes:
         * take that size back so that they keep working (the plan that asked
         * for more fails with this error); conv ops check the size they need. */
        if (old_have && cudaMalloc(buf, old_have) == cudaSuccess) {
            *have = old_have;
        } else {
            cudaGetLastError();
            *buf = NULL;
        }
        return hallu_error_set(err, st == cudaErrorMemoryAllocation ? HALLU_ERR_OOM : HALLU_ERR_BACKEND,
                               "%s %zu bytes for the %s on cuda:%d (%s; %zu bytes live): cudaMalloc: %s (%s)",
                               st == cudaErrorMemoryAllocation ? "out of device memory allocating" : "allocating",
                               need, what, impl->device, impl->device_name, impl->bytes_live,
                               cudaGetErrorString(st), cudaGetErrorName(st));
    }
    *have = need;
    return HALLU_OK;
}

hallu_status cuda_workspace_reserve(cuda_impl *impl, size_t need, hallu_error *err)
{
    return shared_reserve(impl, &impl->workspace, &impl->workspace_bytes, need, "CUDA backend workspace", err);
}

hallu_status cuda_scratch_reserve(cuda_impl *impl, size_t need, hallu_error *err)
{
    return shared_reserve(impl, &impl->scratch, &impl->scratch_bytes, need, "CUDA backend scratch", err);
}

/* bf16 convolutions run on tensor cores from Ampere (8.0) on; older GPUs would
 * emulate them, slower than fp32: refuse, as the CPU backend does without
 * AVX512-BF16. */
static hallu_status cuda_set_precision(hallu_backend *be, hallu_precision precision, hallu_error *err)
{
    cuda_impl *impl = cuda_impl_of(be);
    if (precision == HALLU_PRECISION_BF16 && impl->cc_major < 8)
        return hallu_error_set(err, HALLU_ERR_UNSUPPORTED, "--precision bf16: cuda:%d (%s) has compute capability "
                               "%d.%d; bf16 needs 8.0 or newer (Ampere): use --precision fp32", impl->device,
                               impl->device_name, impl->cc_major, impl->cc_minor);
    impl->precision = precision;
    return HALLU_OK;
}

/* ---- lifetime -------------------------------------------------------------- */

static void cuda_destroy(hallu_backend *be)
{
    if (!be)
        return;
    cuda_impl *impl = (cuda_impl *)be->impl;
    if (impl) {
        /* Failures here cannot be reported any more (the backend goes away);
         * the device is left as it is (no cudaDeviceReset: the primary context
         * may be shared, e.g. with the NCCL communicator). */
        if (impl->stream)
            cudaStreamSynchronize(impl->stream);
        if (impl->upload_event)
            cudaEventDestroy(impl->upload_event);
        if (impl->workspace)
            cudaFree(impl->workspace);
        if (impl->scratch)
            cudaFree(impl->scratch);
        if (impl->cudnn)
            cudnnDestroy(impl->cudnn);
        if (impl->cublas)
            cublasDestroy(impl->cublas);
        if (impl->stream)
            cudaStreamDestroy(impl->stream);
        cudaGetLastError();
        /* Blocks the caller never released (leaks) are left to the context's end. */
        free(impl->allocs);
        free(impl);
    }
    free(be);
}

/* The op table, field by field in the order of hallu_backend_ops (C++ needs
 * designated initializers in declaration order). */
static const hallu_backend_ops cuda_ops = {
    .name = "cuda",
    .destroy = cuda_destroy,
    .host_memory = 0,
    .alloc = cuda_alloc,
    .release = cuda_release,
    .upload = cuda_upload,
    .download = cuda_download,
    .copy = cuda_copy,
    .fill = cuda_fill,
    .memory = cuda_memory,
    .host_alloc = cuda_host_alloc,
    .host_free = cuda_host_free,
    .upload_wait = cuda_upload_wait,
    .set_precision = cuda_set_precision,
    .inject_fault = NULL,
    .conv2d_plan_create = cuda_conv2d_plan_create,
    .conv2d_plan_free = cuda_conv2d_plan_free,
    .conv2d_forward = cuda_conv2d_forward,
    .conv2d_forward_y16 = NULL,   /* conv outputs stay fp32 here (the fused batch norm is CPU only) */
    .conv2d_backward = cuda_conv2d_backward,
    .conv2d_backward_dx16 = NULL,   /* input gradients stay fp32 here */
    .batchnorm_forward_train = cuda_batchnorm_forward_train,
    .batchnorm_forward_eval = cuda_batchnorm_forward_eval,
    .batchnorm_backward = cuda_batchnorm_backward,
    .batchnorm_backward_x16 = NULL,   /* bf16 plans round dy on the device (cuda_conv.cu) */
    .batchnorm_normalize_fused = NULL,   /* not fused here: batch norm, add and ReLU run as separate kernels */
    .batchnorm_backward_fused = NULL,
    .batchnorm_stats_x16 = NULL,
    .relu_forward = cuda_relu_forward,
    .relu_backward = cuda_relu_backward,
    .relu_forward_x16 = NULL,   /* bf16 plans round x on the device (cuda_conv.cu) */
    .add = cuda_add,
    .add_relu_backward = NULL,
    .add_relu_backward_x16 = NULL,
    .axpy = cuda_axpy,
    .scale = cuda_scale,
    .normalize_u8 = cuda_normalize_u8,
    .maxpool2d_forward = cuda_maxpool2d_forward,
    .maxpool2d_backward = cuda_maxpool2d_backward,
    .global_avgpool_forward = cuda_global_avgpool_forward,
    .global_avgpool_backward = cuda_global_avgpool_backward,
    .gemm = cuda_gemm,
    .linear_forward = cuda_linear_forward,
    .linear_backward = cuda_linear_backward,
    .l2norm_rows_forward = cuda_l2norm_rows_forward,
    .l2norm_rows_backward = cuda_l2norm_rows_backward,
    .softmax_xent_forward = cuda_softmax_xent_forward,
    .softmax_xent_backward = cuda_softmax_xent_backward,
    .copy_cols = cuda_copy_cols,
    .slice_cols = cuda_slice_cols,
    .batchnorm_stats = cuda_batchnorm_stats,
    .batchnorm_normalize = cuda_batchnorm_normalize,
    .batchnorm_update_running = cuda_batchnorm_update_running,
    .batchnorm_stats_to_moments = cuda_batchnorm_stats_to_moments,
    .batchnorm_moments_to_stats = cuda_batchnorm_moments_to_stats,
    .batchnorm_backward_reduce = cuda_batchnorm_backward_reduce,
    .batchnorm_backward_apply = cuda_batchnorm_backward_apply,
    .batchnorm_update_running_grouped = cuda_batchnorm_update_running_grouped,
    .add_scalar = cuda_add_scalar,
    .l2_norm = cuda_l2_norm,
    .clip_by_norm = cuda_clip_by_norm,
    .lars_coef = cuda_lars_coef,
    .sgd_update = cuda_sgd_update,
    .adamw_update = cuda_adamw_update,
    .ssl_nt_xent_rows = cuda_ssl_nt_xent_rows,
    .ssl_infonce_rows = cuda_ssl_infonce_rows,
    .ssl_neg_cosine = cuda_ssl_neg_cosine,
    .ssl_collapse_std = cuda_ssl_collapse_std,
    .ssl_hal_input = cuda_ssl_hal_input,
    .ssl_hal_output = cuda_ssl_hal_output,
    .ssl_hal_backward = cuda_ssl_hal_backward,
    .ssl_gather_rows = cuda_ssl_gather_rows,
    .ssl_scatter_rows = cuda_ssl_scatter_rows,
    .ssl_enqueue_rows = cuda_ssl_enqueue_rows,
    .knn_inverse_norms = cuda_knn_inverse_norms,
    .knn_scale_rows = cuda_knn_scale_rows,
    .knn_scale_cols = cuda_knn_scale_cols,
    .knn_top_k = cuda_knn_top_k,
    .knn_vote = cuda_knn_vote,
    .argmax_hits = cuda_argmax_hits,
    .class_rank_hits = cuda_class_rank_hits,
};

/* "cuda" -> 0, "cuda:N" -> N (decimal digits only). */
static hallu_status parse_device(const char *device, int *ordinal, hallu_error *err)
{
    if (strcmp(device, "cuda") == 0) {
        *ordinal = 0;
        return HALLU_OK;
    }
    const char *num = strncmp(device, "cuda:", 5) == 0 ? device + 5 : NULL;
    long v = -1;
    if (num && num[0] >= '0' && num[0] <= '9' && strlen(num) <= 9) {
        char *end = NULL;
        v = strtol(num, &end, 10);
        if (*end != '\0')
            v = -1;
    }
    if (v < 0 || v > INT_MAX)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                               "device '%s': expected cuda or cuda:N with N a device number (0, 1, ...)", device);
    *ordinal = (int)v;
    return HALLU_OK;
}

static hallu_status cuda_impl_init(cuda_impl *impl, const char *device, hallu_error *err)
{
    /* cudaGetDeviceCount is the first runtime call: without a driver or a GPU
     * it fails (or finds none), which is "no CUDA device", not a crash. Tests
     * and scripts key on HALLU_ERR_UNSUPPORTED + "no CUDA device" to skip. */
    int count = 0;
    cudaError_t st = cudaGetDeviceCount(&count);
    if (st != cudaSuccess) {
        cudaGetLastError();
        return hallu_error_set(err, HALLU_ERR_UNSUPPORTED, "no CUDA device: cudaGetDeviceCount: %s (%s) (device '%s')",
                               cudaGetErrorString(st), cudaGetErrorName(st), device);
    }
    if (count <= 0)
        return hallu_error_set(err, HALLU_ERR_UNSUPPORTED, "no CUDA device: cudaGetDeviceCount found none (device '%s')",
                               device);
    if (impl->device >= count)
        return hallu_error_set(err, HALLU_ERR_UNSUPPORTED, "no CUDA device: device '%s' asks for ordinal %d, "
                               "cudaGetDeviceCount found %d (cuda:0 .. cuda:%d)", device, impl->device, count,
                               count - 1);
    /* The device is current for the calling thread: ops must run on the thread
     * that created the backend (hallu's training loop does). */
    if ((st = cudaSetDevice(impl->device)) != cudaSuccess)
        return rt_error(err, HALLU_ERR_BACKEND, device, "cudaSetDevice", st);
    cudaDeviceProp prop;
    if ((st = cudaGetDeviceProperties(&prop, impl->device)) != cudaSuccess)
        return rt_error(err, HALLU_ERR_BACKEND, device, "cudaGetDeviceProperties", st);
    snprintf(impl->device_name, sizeof impl->device_name, "%s", prop.name);
    impl->cc_major = prop.major;
    impl->cc_minor = prop.minor;
    /* Non-blocking: nothing else in the process (the legacy default stream)
     * orders itself with the backend's work. */
    /* Handles go into impl only once created: cuda_destroy frees what is
     * non-NULL, and a failed create leaves its output unspecified. */
    cudaStream_t stream = NULL;
    if ((st = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking)) != cudaSuccess)
        return rt_error(err, HALLU_ERR_BACKEND, device, "cudaStreamCreateWithFlags", st);
    impl->stream = stream;
    cudaEvent_t upload_event = NULL;
    if ((st = cudaEventCreateWithFlags(&upload_event, cudaEventDisableTiming)) != cudaSuccess)
        return rt_error(err, HALLU_ERR_BACKEND, device, "cudaEventCreateWithFlags", st);
    impl->upload_event = upload_event;

    const char *tf32 = getenv("HALLU_CUDA_TF32");
    impl->allow_tf32 = tf32 && strcmp(tf32, "1") == 0;

    cublasHandle_t blas = NULL;
    cublasStatus_t bs = cublasCreate(&blas);
    if (bs == CUBLAS_STATUS_SUCCESS)
        impl->cublas = blas;
    if (bs == CUBLAS_STATUS_SUCCESS)
        bs = cublasSetStream(impl->cublas, impl->stream);
    /* fp32 gemms in fp32 (no TF32 unless HALLU_CUDA_TF32=1), as the CPU
     * backend; no atomics (bit-reproducible results run to run). */
    if (bs == CUBLAS_STATUS_SUCCESS)
        bs = cublasSetMathMode(impl->cublas, impl->allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH);
    if (bs == CUBLAS_STATUS_SUCCESS)
        bs = cublasSetAtomicsMode(impl->cublas, CUBLAS_ATOMICS_NOT_ALLOWED);
    if (bs == CUBLAS_STATUS_SUCCESS)
        bs = cublasSetPointerMode(impl->cublas, CUBLAS_POINTER_MODE_HOST);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        cudaGetLastError();
        return hallu_error_set(err, bs == CUBLAS_STATUS_ALLOC_FAILED ? HALLU_ERR_OOM : HALLU_ERR_BACKEND,
                               "device '%s': cuBLAS handle setup: %s (%s)", device, cublasGetStatusString(bs),
                               cublasGetStatusName(bs));
    }

    /* The headers compiled against and the libcudnn loaded must agree on the major version. */
    size_t dnn_version = cudnnGetVersion();
    if (dnn_version / 10000 != CUDNN_MAJOR)
        return hallu_error_set(err, HALLU_ERR_UNSUPPORTED, "device '%s': libcudnn %zu.%zu loaded, hallu was built "
                               "against cuDNN %d.%d", device, dnn_version / 10000, dnn_version / 100 % 100,
                               CUDNN_MAJOR, CUDNN_MINOR);
    cudnnHandle_t dnn = NULL;
    cudnnStatus_t ds = cudnnCreate(&dnn);
    if (ds == CUDNN_STATUS_SUCCESS)
        impl->cudnn = dnn;
    if (ds == CUDNN_STATUS_SUCCESS)
        ds = cudnnSetStream(impl->cudnn, impl->stream);
    if (ds != CUDNN_STATUS_SUCCESS) {
        char msg[320];
        cuda_dnn_message(msg, sizeof msg, ds);
        cudaGetLastError();
        return hallu_error_set(err, cuda_dnn_oom(ds) ? HALLU_ERR_OOM : HALLU_ERR_BACKEND,
                               "device '%s': cuDNN handle setup: %s", device, msg);
    }
    return HALLU_OK;
}

hallu_status hallu_backend_cuda_create(const char *device, int num_threads, hallu_backend **out, hallu_error *err)
{
    if (!out)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "hallu_backend_cuda_create: out is NULL");
    *out = NULL;
    if (!device)
        device = "cuda";
    int ordinal = 0;
    hallu_status s = parse_device(device, &ordinal, err);
    if (s != HALLU_OK)
        return s;
    hallu_backend *be = (hallu_backend *)calloc(1, sizeof *be);
    cuda_impl *impl = be ? (cuda_impl *)calloc(1, sizeof *impl) : NULL;
    if (!impl) {
        free(be);
        return hallu_error_set(err, HALLU_ERR_OOM, "out of host memory creating the CUDA backend");
    }
    be->ops = &cuda_ops;
    be->num_threads = num_threads;   /* host threads: unused by the device ops */
    be->impl = impl;
    be->failed = HALLU_OK;
    impl->be = be;
    impl->device = ordinal;
    impl->precision = HALLU_PRECISION_FP32;
    s = cuda_impl_init(impl, device, err);
    if (s == HALLU_OK)
        s = cuda_scratch_reserve(impl, CUDA_SCRATCH_BYTES, err);
    if (s != HALLU_OK) {
        cuda_destroy(be);
        return s;
    }
    *out = be;
    return HALLU_OK;
}
