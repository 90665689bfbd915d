/* The one-process communicator: every collective is the identity (all-gather
 * and reduce-scatter copy when the buffers differ), so single-process code runs
 * the same calls as a data-parallel job. */
#include "dist_internal.h"

#include <stdlib.h>

static void single_destroy(hallu_comm *c)
{
    hallu_free(c);
}

static hallu_status single_allreduce_f32(hallu_comm *c, hallu_backend *be, float *buf, int64_t n, hallu_error *err)
{
    return HALLU_OK;
}

static hallu_status single_allreduce_f64(hallu_comm *c, hallu_backend *be, double *buf, int64_t n, hallu_error *err)
{
    return HALLU_OK;
}

static hallu_status single_copy(hallu_backend *be, float *dst, const float *src, int64_t n)
{
    if (dst != src && n > 0)
        be->ops->copy(be, dst, src, (size_t)n * sizeof(float));
    return HALLU_OK;
}

static hallu_status single_allgather(hallu_comm *c, hallu_backend *be, float *recv, const float *send, int64_t n,
                                     hallu_error *err)
{
    return single_copy(be, recv, send, n);
}

static hallu_status single_reduce_scatter(hallu_comm *c, hallu_backend *be, float *recv, const float *send, int64_t n,
                                          hallu_error *err)
{
    return single_copy(be, recv, send, n);
}

static hallu_status single_broadcast(hallu_comm *c, hallu_backend *be, void *buf, size_t nbytes, int root,
                                     hallu_error *err)
{
    return HALLU_OK;
}

static hallu_status single_host_i64(hallu_comm *c, int64_t *buf, int n, hallu_comm_reduce op, hallu_error *err)
{
    return HALLU_OK;
}

static hallu_status single_host_f64(hallu_comm *c, double *buf, int n, hallu_comm_reduce op, hallu_error *err)
{
    return HALLU_OK;
}

static hallu_status single_host_broadcast(hallu_comm *c, void *buf, size_t nbytes, int root, hallu_error *err)
{
    return HALLU_OK;
}

static hallu_status single_barrier(hallu_comm *c, double timeout_s, hallu_error *err)
{
    return HALLU_OK;
}

static const hallu_comm_ops single_ops = {
    .name = "single",
    .destroy = single_destroy,
    .allreduce_sum_f32 = single_allreduce_f32,
    .allreduce_sum_f64 = single_allreduce_f64,
    .allgather_f32 = single_allgather,
    .reduce_scatter_sum_f32 = single_reduce_scatter,
    .broadcast = single_broadcast,
    .host_allreduce_i64 = single_host_i64,
    .host_allreduce_f64 = single_host_f64,
    .host_broadcast = single_host_broadcast,
    .barrier = single_barrier,
};

hallu_status dist_single_create(hallu_comm **out, hallu_error *err)
{
    hallu_comm *c = hallu_calloc(sizeof *c, "single communicator", err);
    if (!c)
        return err->code;
    c->ops = &single_ops;
    c->rank = c->local_rank = 0;
    c->size = c->local_size = 1;
    dist_set_host(c);
    *out = c;
    return HALLU_OK;
}
