/* The MPI communicator (OpenMPI): MPI_COMM_WORLD duplicated, errors returned
 * rather than fatal, so every failure becomes a named hallu error.
 *
 * Device buffers: the cpu backend's device addresses are host addresses, so
 * MPI reads and writes them directly; for a backend whose memory the host
 * cannot touch (cpu-isolated) the buffer is staged through a host copy with
 * the backend's download/upload. */
#ifdef HALLU_HAVE_MPI
#include "dist_internal.h"

#include <mpi.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

typedef struct mpi_impl {
    MPI_Comm world;
    int we_initialised;
    void *stage;          /* host staging buffer for non-host-addressable backends */
    size_t stage_bytes;
} mpi_impl;

/* Counts travel as int: large buffers go in chunks of this many elements. */
#define MPI_CHUNK ((int64_t)1 << 28)

static MPI_Comm world_of(hallu_comm *c)
{
    return ((mpi_impl *)c->impl)->world;
}

static hallu_status mpi_fail(hallu_comm *c, int rc, const char *call, hallu_error *err)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS)
        snprintf(text, sizeof text, "error %d", rc);
    return hallu_error_set(err, HALLU_ERR_IO, "%s failed on rank %d (host %s): %s", call, c->rank, c->host, text);
}

static void *stage(hallu_comm *c, size_t nbytes, hallu_error *err)
{
    mpi_impl *m = c->impl;
    if (m->stage_bytes >= nbytes)
        return m->stage;
    hallu_free(m->stage);
    m->stage_bytes = 0;
    m->stage = hallu_alloc(nbytes ? nbytes : 1, "mpi staging buffer", err);
    if (m->stage)
        m->stage_bytes = nbytes;
    return m->stage;
}

static int host_memory(const hallu_backend *be)
{
    return be->ops->host_memory;
}

static void account(hallu_comm *c, double t0, size_t nbytes)
{
    c->seconds += hallu_now() - t0;
    c->bytes += (int64_t)nbytes;
}

static hallu_status allreduce_host(hallu_comm *c, void *buf, int64_t n, MPI_Datatype type, size_t elem,
                                   MPI_Op op, hallu_error *err)
{
    for (int64_t at = 0; at < n; at += MPI_CHUNK) {
        int cnt = (int)(n - at < MPI_CHUNK ? n - at : MPI_CHUNK);
        int rc = MPI_Allreduce(MPI_IN_PLACE, (char *)buf + (size_t)at * elem, cnt, type, op, world_of(c));
        if (rc != MPI_SUCCESS)
            return mpi_fail(c, rc, "MPI_Allreduce", err);
    }
    return HALLU_OK;
}

static hallu_status allreduce_dev(hallu_comm *c, hallu_backend *be, void *buf, int64_t n, MPI_Datatype type,
                                  size_t elem, hallu_error *err)
{
    double t0 = hallu_now();
    size_t nbytes = (size_t)n * elem;
    hallu_status s;
    if (host_memory(be)) {
        s = allreduce_host(c, buf, n, type, elem, MPI_SUM, err);
    } else {
        void *h = stage(c, nbytes, err);
        if (!h)
            return err->code;
        be->ops->download(be, h, buf, nbytes);
        s = allreduce_host(c, h, n, type, elem, MPI_SUM, err);
        be->ops->upload(be, buf, h, nbytes);
    }
    account(c, t0, nbytes);
    return s;
}

static hallu_status mpi_allreduce_f32(hallu_comm *c, hallu_backend *be, float *buf, int64_t n, hallu_error *err)
{
    return allreduce_dev(c, be, buf, n, MPI_FLOAT, sizeof(float), err);
}

static hallu_status mpi_allreduce_f64(hallu_comm *c, hallu_backend *be, double *buf, int64_t n, hallu_error *err)
{
    return allreduce_dev(c, be, buf, n, MPI_DOUBLE, sizeof(double), err);
}

static hallu_status too_big(hallu_comm *c, const char *what, int64_t n, hallu_error *err)
{
    return hallu_error_set(err, HALLU_ERR_UNSUPPORTED, "%s of %lld floats per rank on rank %d: more than MPI's "
                           "int count allows in one call", what, (long long)n, c->rank);
}

static hallu_status mpi_allgather(hallu_comm *c, hallu_backend *be, float *recv, const float *send, int64_t n,
                                  hallu_error *err)
{
    if (n > INT32_MAX)
        return too_big(c, "all-gather", n, err);
    double t0 = hallu_now();
    size_t part = (size_t)n * sizeof(float), all = part * (size_t)c->size;
    int in_place = send == recv + (size_t)c->rank * (size_t)n;
    int rc;
    if (host_memory(be)) {
        rc = MPI_Allgather(in_place ? MPI_IN_PLACE : send, (int)n, MPI_FLOAT, recv, (int)n, MPI_FLOAT, world_of(c));
    } else {
        char *h = stage(c, all, err);
        if (!h)
            return err->code;
        be->ops->download(be, h + (size_t)c->rank * part, send, part);
        rc = MPI_Allgather(MPI_IN_PLACE, (int)n, MPI_FLOAT, h, (int)n, MPI_FLOAT, world_of(c));
        be->ops->upload(be, recv, h, all);
    }
    account(c, t0, part);
    return rc == MPI_SUCCESS ? HALLU_OK : mpi_fail(c, rc, "MPI_Allgather", err);
}

static hallu_status mpi_reduce_scatter(hallu_comm *c, hallu_backend *be, float *recv, const float *send, int64_t n,
                                       hallu_error *err)
{
    if (n > INT32_MAX)
        return too_big(c, "reduce-scatter", n, err);
    double t0 = hallu_now();
    size_t part = (size_t)n * sizeof(float), all = part * (size_t)c->size;
    int rc;
    if (host_memory(be)) {
        rc = MPI_Reduce_scatter_block(send, recv, (int)n, MPI_FLOAT, MPI_SUM, world_of(c));
    } else {
        char *h = stage(c, all + part, err);
        if (!h)
            return err->code;
        be->ops->download(be, h, send, all);
        rc = MPI_Reduce_scatter_block(h, h + all, (int)n, MPI_FLOAT, MPI_SUM, world_of(c));
        be->ops->upload(be, recv, h + all, part);
    }
    account(c, t0, all);
    return rc == MPI_SUCCESS ? HALLU_OK : mpi_fail(c, rc, "MPI_Reduce_scatter_block", err);
}

static hallu_status bcast_host(hallu_comm *c, void *buf, size_t nbytes, int root, hallu_error *err)
{
    for (size_t at = 0; at < nbytes; at += (size_t)MPI_CHUNK) {
        int cnt = (int)(nbytes - at < (size_t)MPI_CHUNK ? nbytes - at : (size_t)MPI_CHUNK);
        int rc = MPI_Bcast((char *)buf + at, cnt, MPI_BYTE, root, world_of(c));
        if (rc != MPI_SUCCESS)
            return mpi_fail(c, rc, "MPI_Bcast", err);
    }
    return HALLU_OK;
}

static hallu_status mpi_broadcast(hallu_comm *c, hallu_backend *be, void *buf, size_t nbytes, int root,
                                  hallu_error *err)
{
    double t0 = hallu_now();
    hallu_status s;
    if (host_memory(be)) {
        s = bcast_host(c, buf, nbytes, root, err);
    } else {
        void *h = stage(c, nbytes, err);
        if (!h)
            return err->code;
        if (c->rank == root)
            be->ops->download(be, h, buf, nbytes);
        s = bcast_host(c, h, nbytes, root, err);
        if (c->rank != root)
            be->ops->upload(be, buf, h, nbytes);
    }
    account(c, t0, nbytes);
    return s;
}

static MPI_Op op_of(hallu_comm_reduce op)
{
    return op == HALLU_REDUCE_MIN ? MPI_MIN : op == HALLU_REDUCE_MAX ? MPI_MAX : MPI_SUM;
}

static hallu_status mpi_host_i64(hallu_comm *c, int64_t *buf, int n, hallu_comm_reduce op, hallu_error *err)
{
    return allreduce_host(c, buf, n, MPI_INT64_T, sizeof(int64_t), op_of(op), err);
}

static hallu_status mpi_host_f64(hallu_comm *c, double *buf, int n, hallu_comm_reduce op, hallu_error *err)
{
    return allreduce_host(c, buf, n, MPI_DOUBLE, sizeof(double), op_of(op), err);
}

static hallu_status mpi_host_broadcast(hallu_comm *c, void *buf, size_t nbytes, int root, hallu_error *err)
{
    return bcast_host(c, buf, nbytes, root, err);
}

/* A non-blocking barrier polled with growing sleeps: the waiting rank leaves
 * the cores to the ranks still working (OpenMPI's blocking calls spin). */
static hallu_status mpi_barrier(hallu_comm *c, double timeout_s, hallu_error *err)
{
    MPI_Request req;
    int rc = MPI_Ibarrier(world_of(c), &req);
    if (rc != MPI_SUCCESS)
        return mpi_fail(c, rc, "MPI_Ibarrier", err);
    double t0 = hallu_now();
    long sleep_us = 50;
    for (;;) {
        int done = 0;
        rc = MPI_Test(&req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS)
            return mpi_fail(c, rc, "MPI_Test (barrier)", err);
        if (done)
            return HALLU_OK;
        if (timeout_s > 0 && hallu_now() - t0 > timeout_s)
            return hallu_error_set(err, HALLU_ERR_IO, "rank %d (host %s) waited %.0f s for the other ranks at a "
                                   "barrier: a rank is stuck or gone", c->rank, c->host, timeout_s);
        struct timespec ts = { 0, sleep_us * 1000 };
        nanosleep(&ts, NULL);
        if (sleep_us < 20000)
            sleep_us *= 2;
    }
}

static void mpi_destroy(hallu_comm *c)
{
    mpi_impl *m = c->impl;
    if (m) {
        hallu_free(m->stage);
        if (m->world != MPI_COMM_NULL)
            MPI_Comm_free(&m->world);
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (m->we_initialised && !finalized)
            MPI_Finalize();
        hallu_free(m);
    }
    hallu_free(c);
}

static const hallu_comm_ops mpi_ops = {
    .name = "mpi",
    .destroy = mpi_destroy,
    .allreduce_sum_f32 = mpi_allreduce_f32,
    .allreduce_sum_f64 = mpi_allreduce_f64,
    .allgather_f32 = mpi_allgather,
    .reduce_scatter_sum_f32 = mpi_reduce_scatter,
    .broadcast = mpi_broadcast,
    .host_allreduce_i64 = mpi_host_i64,
    .host_allreduce_f64 = mpi_host_f64,
    .host_broadcast = mpi_host_broadcast,
    .barrier = mpi_barrier,
};

void dist_mpi_abort(int code)
{
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (inited && !finalized)
        MPI_Abort(MPI_COMM_WORLD, code);
}

hallu_status dist_mpi_create(hallu_comm **out, hallu_error *err)
{
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (finalized)
        return hallu_error_set(err, HALLU_ERR_UNSUPPORTED, "communicator mpi: MPI was already finalised in this "
                               "process");
    hallu_comm *c = hallu_calloc(sizeof *c, "mpi communicator", err);
    mpi_impl *m = c ? hallu_calloc(sizeof *m, "mpi communicator", err) : NULL;
    if (!m) {
        hallu_free(c);
        return err->code;
    }
    c->ops = &mpi_ops;
    c->impl = m;
    m->world = MPI_COMM_NULL;
    dist_set_host(c);
    if (!inited) {
        /* Only the thread that calls hallu's collectives uses MPI. */
        int provided = 0;
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
            mpi_destroy(c);
            return hallu_error_set(err, HALLU_ERR_IO, "communicator mpi: MPI_Init_thread failed");
        }
        m->we_initialised = 1;
    }
    int rc = MPI_Comm_dup(MPI_COMM_WORLD, &m->world);
    if (rc == MPI_SUCCESS)
        rc = MPI_Comm_set_errhandler(m->world, MPI_ERRORS_RETURN);
    if (rc == MPI_SUCCESS)
        rc = MPI_Comm_rank(m->world, &c->rank);
    if (rc == MPI_SUCCESS)
        rc = MPI_Comm_size(m->world, &c->size);
    MPI_Comm local = MPI_COMM_NULL;
    if (rc == MPI_SUCCESS)
        rc = MPI_Comm_split_type(m->world, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &local);
    if (rc == MPI_SUCCESS)
        rc = MPI_Comm_rank(local, &c->local_rank);
    if (rc == MPI_SUCCESS)
        rc = MPI_Comm_size(local, &c->local_size);
    if (local != MPI_COMM_NULL)
        MPI_Comm_free(&local);
    if (rc != MPI_SUCCESS) {
        hallu_status s = mpi_fail(c, rc, "setting up the MPI communicator", err);
        mpi_destroy(c);
        return s;
    }
    *out = c;
    return HALLU_OK;
}
#else
/* Built without MPI: comm.c names what is missing. */
typedef int hallu_dist_mpi_unavailable;
#endif
