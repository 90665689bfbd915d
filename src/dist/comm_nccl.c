/* The "nccl" communicator: NCCL collectives on CUDA device memory, one GPU per
 * rank, bootstrapped over an MPI communicator that it wraps.
 *
 * MPI already knows every rank, so it carries what NCCL cannot find by itself:
 * rank 0's ncclUniqueId goes to the others with the MPI comm's host_broadcast,
 * and the host (control) collectives and the barrier stay on MPI, where they
 * work on host memory without a device round trip.
 *
 * The GPU of a rank is local_rank modulo the visible GPUs: with one GPU per
 * rank on a host this is the usual mapping, and with a launcher that gives each
 * rank its own CUDA_VISIBLE_DEVICES (one visible GPU) it is device 0. Two ranks
 * that end on the same GPU are refused by NCCL itself ("Duplicate GPU"): one GPU
 * cannot hold several NCCL ranks.
 *
 * Host code only (no kernels): the CUDA runtime and NCCL are libraries. */
#ifdef HALLU_HAVE_NCCL

#include "dist_internal.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ncclGetLastError (2.13) and the non-blocking states (ncclInProgress, 2.14)
 * make messages and waits better; older NCCL still builds without them. */
#if defined(NCCL_VERSION_CODE) && NCCL_VERSION_CODE >= NCCL_VERSION(2, 14, 0)
#define HALLU_NCCL_2_14 1
#else
#define HALLU_NCCL_2_14 0
#endif

typedef struct nccl_impl {
    hallu_comm *mpi;      /* bootstrap and host collectives; owned */
    ncclComm_t nccl;
    cudaStream_t stream;  /* this communicator's own stream */
    int device;           /* CUDA ordinal this rank uses */
    int aborted;          /* ncclCommAbort was called: the NCCL comm is gone */
} nccl_impl;

/* ---- errors: which call, which rank (and GPU), what CUDA/NCCL said ---- */

static hallu_status cuda_fail(const hallu_comm *c, int device, hallu_error *err, const char *call, cudaError_t e)
{
    return hallu_error_set(err, HALLU_ERR_BACKEND, "--comm nccl: %s on rank %d (host %s, GPU %d): %s", call,
                           c->rank, c->host, device, cudaGetErrorString(e));
}

static hallu_status nccl_fail(const hallu_comm *c, int device, ncclComm_t comm, hallu_error *err, const char *call,
                              ncclResult_t r)
{
    /* ncclGetErrorString names the class ("unhandled system error"); the last
     * error text says what actually failed (a socket, a duplicate GPU, ...). */
    const char *detail = "";
#if HALLU_NCCL_2_14
    detail = ncclGetLastError(comm);
    if (!detail)
        detail = "";
#endif
    return hallu_error_set(err, HALLU_ERR_BACKEND, "--comm nccl: %s on rank %d (host %s, GPU %d): %s%s%s", call,
                           c->rank, c->host, device, ncclGetErrorString(r), detail[0] ? ": " : "", detail);
}

/* ---- buffer collectives ---- */

/* The checks every buffer collective starts with. A host address given to NCCL
 * would fault on the GPU (or read garbage) instead of failing, so pointers
 * that CUDA does not know are refused with a message; this is also what keeps a
 * host-memory backend (cpu) from reaching here unnoticed, since `be` cannot be
 * asked (see nccl_ops). */
static hallu_status nccl_check(hallu_comm *c, const char *call, const void *p, int64_t n, hallu_error *err)
{
    nccl_impl *im = c->impl;
    if (im->aborted)
        return hallu_error_set(err, HALLU_ERR_BACKEND,
                               "--comm nccl: %s on rank %d (host %s): the NCCL communicator was aborted after "
                               "an earlier error", call, c->rank, c->host);
    if (n < 0)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "--comm nccl: %s: n = %lld < 0", call, (long long)n);
    if (n == 0)
        return HALLU_OK;
    struct cudaPointerAttributes a;
    cudaError_t e = cudaPointerGetAttributes(&a, p);
    if (e != cudaSuccess)
        return cuda_fail(c, im->device, err, "cudaPointerGetAttributes", e);
    if (a.type != cudaMemoryTypeDevice && a.type != cudaMemoryTypeManaged)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                               "--comm nccl: %s on rank %d: %p is not CUDA device memory (the nccl communicator "
                               "takes a CUDA backend's buffers; with a host backend use --comm mpi)",
                               call, c->rank, p);
    if (a.type == cudaMemoryTypeDevice && a.device != im->device)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                               "--comm nccl: %s on rank %d: %p lives on GPU %d, this rank's NCCL uses GPU %d", call,
                               c->rank, p, a.device, im->device);
    return HALLU_OK;
}

/* Waits until the collective enqueued on the stream is done, so that buffer
 * collectives are complete on return (the interface's promise while there is
 * no CUDA backend to order them on its own stream; that backend, a later
 * issue, will pass its stream and the wait moves to it). The stream is polled
 * rather than synchronised so that an NCCL failure reported asynchronously (a
 * peer that died, a broken connection) ends the wait with a named error
 * instead of a hang; NCCL's remedy for such an error is ncclCommAbort. */
static hallu_status nccl_wait(hallu_comm *c, const char *call, hallu_error *err)
{
    nccl_impl *im = c->impl;
    for (;;) {
        cudaError_t e = cudaStreamQuery(im->stream);
        if (e == cudaSuccess)
            return HALLU_OK;
        if (e != cudaErrorNotReady)
            return cuda_fail(c, im->device, err, call, e);
        ncclResult_t async = ncclSuccess;
        ncclResult_t r = ncclCommGetAsyncError(im->nccl, &async);
        if (r == ncclSuccess)
            r = async;
#if HALLU_NCCL_2_14
        if (r == ncclInProgress)
            r = ncclSuccess;
#endif
        if (r != ncclSuccess) {
            hallu_status st = nccl_fail(c, im->device, im->nccl, err, call, r);
            ncclCommAbort(im->nccl);
            im->aborted = 1;
            return st;
        }
        /* Polling costs a core like cudaStreamSynchronize's default spin does;
         * yielding lets the loader's threads run meanwhile. */
        sched_yield();
    }
}

/* Enqueued the collective (r from the NCCL call): waits for it and counts
 * time and bytes as dist.h says: what this rank passes in (n elements; the
 * [size][n] send of a reduce-scatter; a broadcast's nbytes on every rank). */
static hallu_status nccl_finish(hallu_comm *c, const char *call, ncclResult_t r, double t0, int64_t bytes,
                                hallu_error *err)
{
    nccl_impl *im = c->impl;
    if (r != ncclSuccess)
        return nccl_fail(c, im->device, im->nccl, err, call, r);
    hallu_status st = nccl_wait(c, call, err);
    if (st != HALLU_OK)
        return st;
    c->seconds += hallu_now() - t0;
    c->bytes += bytes;
    return HALLU_OK;
}

static hallu_status nccl_allreduce_f32(hallu_comm *c, hallu_backend *be, float *buf, int64_t n, hallu_error *err)
{
    (void)be; /* CUDA device addresses; see nccl_ops */
    nccl_impl *im = c->impl;
    hallu_status st = nccl_check(c, "ncclAllReduce(f32)", buf, n, err);
    if (st != HALLU_OK || n == 0)
        return st;
    double t0 = hallu_now();
    ncclResult_t r = ncclAllReduce(buf, buf, (size_t)n, ncclFloat32, ncclSum, im->nccl, im->stream);
    return nccl_finish(c, "ncclAllReduce(f32)", r, t0, n * (int64_t)sizeof(float), err);
}

static hallu_status nccl_allreduce_f64(hallu_comm *c, hallu_backend *be, double *buf, int64_t n, hallu_error *err)
{
    (void)be; /* CUDA device addresses; see nccl_ops */
    nccl_impl *im = c->impl;
    hallu_status st = nccl_check(c, "ncclAllReduce(f64)", buf, n, err);
    if (st != HALLU_OK || n == 0)
        return st;
    double t0 = hallu_now();
    ncclResult_t r = ncclAllReduce(buf, buf, (size_t)n, ncclFloat64, ncclSum, im->nccl, im->stream);
    return nccl_finish(c, "ncclAllReduce(f64)", r, t0, n * (int64_t)sizeof(double), err);
}

/* NCCL accepts the interface's "in place" form (send == recv + rank * n) as is. */
static hallu_status nccl_allgather_f32(hallu_comm *c, hallu_backend *be, float *recv, const float *send, int64_t n,
                                       hallu_error *err)
{
    (void)be; /* CUDA device addresses; see nccl_ops */
    nccl_impl *im = c->impl;
    hallu_status st = nccl_check(c, "ncclAllGather(f32)", recv, n, err);
    if (st == HALLU_OK && n > 0)
        st = nccl_check(c, "ncclAllGather(f32)", send, n, err);
    if (st != HALLU_OK || n == 0)
        return st;
    double t0 = hallu_now();
    ncclResult_t r = ncclAllGather(send, recv, (size_t)n, ncclFloat32, im->nccl, im->stream);
    return nccl_finish(c, "ncclAllGather(f32)", r, t0, n * (int64_t)sizeof(float), err);
}

static hallu_status nccl_reduce_scatter_f32(hallu_comm *c, hallu_backend *be, float *recv, const float *send,
                                            int64_t n, hallu_error *err)
{
    (void)be; /* CUDA device addresses; see nccl_ops */
    nccl_impl *im = c->impl;
    hallu_status st = nccl_check(c, "ncclReduceScatter(f32)", recv, n, err);
    if (st == HALLU_OK && n > 0)
        st = nccl_check(c, "ncclReduceScatter(f32)", send, n, err);
    if (st != HALLU_OK || n == 0)
        return st;
    double t0 = hallu_now();
    ncclResult_t r = ncclReduceScatter(send, recv, (size_t)n, ncclFloat32, ncclSum, im->nccl, im->stream);
    return nccl_finish(c, "ncclReduceScatter(f32)", r, t0, (int64_t)c->size * n * (int64_t)sizeof(float), err);
}

static hallu_status nccl_broadcast(hallu_comm *c, hallu_backend *be, void *buf, size_t nbytes, int root,
                                   hallu_error *err)
{
    (void)be; /* CUDA device addresses; see nccl_ops */
    nccl_impl *im = c->impl;
    if (root < 0 || root >= c->size)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "--comm nccl: ncclBroadcast: root %d not in [0, %d)", root,
                               c->size);
    if (nbytes > (size_t)INT64_MAX)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "--comm nccl: ncclBroadcast: %zu bytes", nbytes);
    hallu_status st = nccl_check(c, "ncclBroadcast", buf, (int64_t)nbytes, err);
    if (st != HALLU_OK || nbytes == 0)
        return st;
    double t0 = hallu_now();
    ncclResult_t r = ncclBroadcast(buf, buf, nbytes, ncclUint8, root, im->nccl, im->stream);
    return nccl_finish(c, "ncclBroadcast", r, t0, (int64_t)nbytes, err);
}

/* ---- host collectives and the barrier: the wrapped MPI communicator ---- */

static hallu_status nccl_host_i64(hallu_comm *c, int64_t *buf, int n, hallu_comm_reduce op, hallu_error *err)
{
    hallu_comm *mpi = ((nccl_impl *)c->impl)->mpi;
    return mpi->ops->host_allreduce_i64(mpi, buf, n, op, err);
}

static hallu_status nccl_host_f64(hallu_comm *c, double *buf, int n, hallu_comm_reduce op, hallu_error *err)
{
    hallu_comm *mpi = ((nccl_impl *)c->impl)->mpi;
    return mpi->ops->host_allreduce_f64(mpi, buf, n, op, err);
}

static hallu_status nccl_host_broadcast(hallu_comm *c, void *buf, size_t nbytes, int root, hallu_error *err)
{
    hallu_comm *mpi = ((nccl_impl *)c->impl)->mpi;
    return mpi->ops->host_broadcast(mpi, buf, nbytes, root, err);
}

static hallu_status nccl_barrier(hallu_comm *c, double timeout_s, hallu_error *err)
{
    hallu_comm *mpi = ((nccl_impl *)c->impl)->mpi;
    return mpi->ops->barrier(mpi, timeout_s, err);
}

/* Frees in reverse order of creation; the MPI comm last, since destroying it
 * may finalise MPI. Also the cleanup of a dist_nccl_create that failed half way. */
static void nccl_destroy(hallu_comm *c)
{
    if (!c)
        return;
    nccl_impl *im = c->impl;
    if (im) {
        /* ncclCommDestroy finalises (flushes) the communicator first; after an
         * abort there is nothing left to free. */
        if (im->nccl && !im->aborted)
            ncclCommDestroy(im->nccl);
        if (im->stream)
            cudaStreamDestroy(im->stream);
        if (im->mpi)
            im->mpi->ops->destroy(im->mpi);
        free(im);
    }
    free(c);
}

/* `be` is not used by any buffer collective: NCCL reads and writes CUDA device
 * addresses itself, and the CUDA backend whose buffers these will be does not
 * exist yet (a later issue), so there is no backend to ask for a stream or a
 * staging copy. nccl_check refuses addresses that are not CUDA memory. */
static const hallu_comm_ops nccl_ops = {
    .name = "nccl",
    .destroy = nccl_destroy,
    .allreduce_sum_f32 = nccl_allreduce_f32,
    .allreduce_sum_f64 = nccl_allreduce_f64,
    .allgather_f32 = nccl_allgather_f32,
    .reduce_scatter_sum_f32 = nccl_reduce_scatter_f32,
    .broadcast = nccl_broadcast,
    .host_allreduce_i64 = nccl_host_i64,
    .host_allreduce_f64 = nccl_host_f64,
    .host_broadcast = nccl_host_broadcast,
    .barrier = nccl_barrier,
};

/* ---- creation ---- */

/* The part of the set-up that each rank does alone and that can fail on one
 * rank only (no GPU here): GPU choice, stream, and on rank 0 the unique id. */
static hallu_status nccl_local_setup(hallu_comm *c, ncclUniqueId *id, hallu_error *err)
{
    nccl_impl *im = c->impl;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count <= 0)
        return hallu_error_set(err, HALLU_ERR_BACKEND, "--comm nccl: no CUDA GPU visible (cudaGetDeviceCount: %s)",
                               e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    im->device = c->local_rank % count;
    e = cudaSetDevice(im->device);
    if (e != cudaSuccess)
        return cuda_fail(c, im->device, err, "cudaSetDevice", e);
    /* Non-blocking: the stream does not wait for work on the legacy default
     * stream, which the CUDA backend will not use either. */
    e = cudaStreamCreateWithFlags(&im->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        im->stream = NULL;
        return cuda_fail(c, im->device, err, "cudaStreamCreateWithFlags", e);
    }
    if (c->rank == 0) {
        ncclResult_t r = ncclGetUniqueId(id);
        if (r != ncclSuccess)
            return nccl_fail(c, im->device, NULL, err, "ncclGetUniqueId", r);
    }
    return HALLU_OK;
}

hallu_status dist_nccl_create(hallu_comm *mpi, hallu_comm **out, hallu_error *err)
{
    *out = NULL;
    hallu_comm *c = calloc(1, sizeof *c);
    nccl_impl *im = calloc(1, sizeof *im);
    hallu_status st = HALLU_OK;
    if (!c || !im) {
        st = hallu_error_set(err, HALLU_ERR_OOM, "--comm nccl: out of memory for the communicator (%zu bytes)",
                             sizeof *c + sizeof *im);
        free(c);
        free(im);
        c = NULL;
        /* Still agrees below, so the other ranks do not wait in the broadcast. */
    } else {
        c->ops = &nccl_ops;
        c->rank = mpi->rank;
        c->size = mpi->size;
        c->local_rank = mpi->local_rank;
        c->local_size = mpi->local_size;
        memcpy(c->host, mpi->host, sizeof c->host);
        c->impl = im;
        im->mpi = mpi;
        im->device = -1;
    }

    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    if (c)
        st = nccl_local_setup(c, &id, err);
    /* Every rank learns whether every rank is ready before anyone waits for the
     * id: a rank without a GPU fails the job with its message on all ranks. */
    st = hallu_comm_agree(mpi, st, err);
    if (st == HALLU_OK)
        st = mpi->ops->host_broadcast(mpi, &id, sizeof id, 0, err);
    if (st == HALLU_OK) {
        ncclResult_t r = ncclCommInitRank(&im->nccl, c->size, id, c->rank);
        if (r != ncclSuccess) {
            im->nccl = NULL;
            st = nccl_fail(c, im->device, NULL, err, "ncclCommInitRank", r);
            /* The usual cause with several ranks on a host: two of them on one GPU. */
            if (err && c->local_size > 1) {
                size_t len = strlen(err->msg);
                snprintf(err->msg + len, sizeof err->msg - len,
                         " (%d ranks on host %s: NCCL needs a distinct GPU for each rank)", c->local_size, c->host);
            }
        }
        /* A rank whose init failed must not leave the others using NCCL alone. */
        st = hallu_comm_agree(mpi, st, err);
    }
    if (st != HALLU_OK) {
        if (c)
            nccl_destroy(c); /* frees mpi too: it was handed over */
        else
            mpi->ops->destroy(mpi);
        return st;
    }
    *out = c;
    return HALLU_OK;
}

#endif /* HALLU_HAVE_NCCL */
