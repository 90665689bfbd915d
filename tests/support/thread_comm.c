#define _POSIX_C_SOURCE 200809L
/* Thread "ranks" for tests (thread_comm.h). Every collective: each rank
 * publishes a host copy of its input, a barrier, each rank computes its result
 * from all copies in rank order, a barrier (so no copy is reused early). */
#include "thread_comm.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define TC_MAX 16

struct tc_group {
    int ranks;
    pthread_barrier_t bar;
    void *slot[TC_MAX];           /* each rank's published host bytes */
    hallu_comm comm[TC_MAX];
};

static tc_group *group_of(hallu_comm *c) { return c->impl; }

static void *host_copy(hallu_backend *be, const void *src, size_t nbytes)
{
    void *h = malloc(nbytes ? nbytes : 1);
    if (be)
        be->ops->download(be, h, src, nbytes);
    else
        memcpy(h, src, nbytes);
    return h;
}

static void publish(hallu_comm *c, void *h)
{
    tc_group *g = group_of(c);
    g->slot[c->rank] = h;
    pthread_barrier_wait(&g->bar);
}

static void retire(hallu_comm *c, void *h)
{
    pthread_barrier_wait(&group_of(c)->bar);
    free(h);
}

static void put(hallu_backend *be, void *dst, const void *h, size_t nbytes)
{
    if (be)
        be->ops->upload(be, dst, h, nbytes);
    else
        memcpy(dst, h, nbytes);
}

#define TC_SUM(T)                                                                                   \
    do {                                                                                            \
        tc_group *g = group_of(c);                                                                  \
        void *h = host_copy(be, buf, (size_t)n * sizeof(T));                                        \
        publish(c, h);                                                                              \
        T *out = calloc((size_t)(n ? n : 1), sizeof(T));                                            \
        for (int r = 0; r < g->ranks; r++)                                                          \
            for (int64_t i = 0; i < n; i++)                                                         \
                out[i] += ((const T *)g->slot[r])[i];                                               \
        retire(c, h);                                                                               \
        put(be, buf, out, (size_t)n * sizeof(T));                                                   \
        free(out);                                                                                  \
    } while (0)

static hallu_status tc_allreduce_f32(hallu_comm *c, hallu_backend *be, float *buf, int64_t n, hallu_error *err)
{
    TC_SUM(float);
    return HALLU_OK;
}

static hallu_status tc_allreduce_f64(hallu_comm *c, hallu_backend *be, double *buf, int64_t n, hallu_error *err)
{
    TC_SUM(double);
    return HALLU_OK;
}

static hallu_status tc_allgather(hallu_comm *c, hallu_backend *be, float *recv, const float *send, int64_t n,
                                 hallu_error *err)
{
    tc_group *g = group_of(c);
    size_t part = (size_t)n * sizeof(float);
    void *h = host_copy(be, send, part);
    publish(c, h);
    char *all = malloc(part * (size_t)g->ranks + 1);
    for (int r = 0; r < g->ranks; r++)
        memcpy(all + (size_t)r * part, g->slot[r], part);
    retire(c, h);
    put(be, recv, all, part * (size_t)g->ranks);
    free(all);
    return HALLU_OK;
}

static hallu_status tc_reduce_scatter(hallu_comm *c, hallu_backend *be, float *recv, const float *send, int64_t n,
                                      hallu_error *err)
{
    tc_group *g = group_of(c);
    void *h = host_copy(be, send, (size_t)n * g->ranks * sizeof(float));
    publish(c, h);
    float *out = calloc((size_t)(n ? n : 1), sizeof(float));
    for (int r = 0; r < g->ranks; r++)
        for (int64_t i = 0; i < n; i++)
            out[i] += ((const float *)g->slot[r])[(size_t)c->rank * n + i];
    retire(c, h);
    put(be, recv, out, (size_t)n * sizeof(float));
    free(out);
    return HALLU_OK;
}

static hallu_status tc_bcast_any(hallu_comm *c, hallu_backend *be, void *buf, size_t nbytes, int root)
{
    tc_group *g = group_of(c);
    void *h = host_copy(be, buf, nbytes);
    publish(c, h);
    void *mine = malloc(nbytes ? nbytes : 1);
    memcpy(mine, g->slot[root], nbytes);
    retire(c, h);
    put(be, buf, mine, nbytes);
    free(mine);
    return HALLU_OK;
}

static hallu_status tc_broadcast(hallu_comm *c, hallu_backend *be, void *buf, size_t nbytes, int root,
                                 hallu_error *err)
{
    return tc_bcast_any(c, be, buf, nbytes, root);
}

static hallu_status tc_host_broadcast(hallu_comm *c, void *buf, size_t nbytes, int root, hallu_error *err)
{
    return tc_bcast_any(c, NULL, buf, nbytes, root);
}

#define TC_HOST(T)                                                                                  \
    do {                                                                                            \
        tc_group *g = group_of(c);                                                                  \
        void *h = host_copy(NULL, buf, (size_t)n * sizeof(T));                                      \
        publish(c, h);                                                                              \
        for (int i = 0; i < n; i++) {                                                               \
            T v = ((const T *)g->slot[0])[i];                                                       \
            for (int r = 1; r < g->ranks; r++) {                                                    \
                T w = ((const T *)g->slot[r])[i];                                                   \
                v = op == HALLU_REDUCE_SUM ? v + w : op == HALLU_REDUCE_MIN ? (w < v ? w : v)       \
                                                                            : (w > v ? w : v);      \
            }                                                                                       \
            tmp[i] = v;                                                                             \
        }                                                                                           \
        retire(c, h);                                                                               \
        memcpy(buf, tmp, (size_t)n * sizeof(T));                                                   \
    } while (0)

static hallu_status tc_host_i64(hallu_comm *c, int64_t *buf, int n, hallu_comm_reduce op, hallu_error *err)
{
    int64_t tmp[64];
    if (n > 64)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "thread comm: %d values (at most 64)", n);
    TC_HOST(int64_t);
    return HALLU_OK;
}

static hallu_status tc_host_f64(hallu_comm *c, double *buf, int n, hallu_comm_reduce op, hallu_error *err)
{
    double tmp[64];
    if (n > 64)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "thread comm: %d values (at most 64)", n);
    TC_HOST(double);
    return HALLU_OK;
}

static hallu_status tc_barrier(hallu_comm *c, double timeout_s, hallu_error *err)
{
    pthread_barrier_wait(&group_of(c)->bar);
    return HALLU_OK;
}

static void tc_destroy(hallu_comm *c) { (void)c; }

static const hallu_comm_ops tc_ops = {
    .name = "threads",
    .destroy = tc_destroy,
    .allreduce_sum_f32 = tc_allreduce_f32,
    .allreduce_sum_f64 = tc_allreduce_f64,
    .allgather_f32 = tc_allgather,
    .reduce_scatter_sum_f32 = tc_reduce_scatter,
    .broadcast = tc_broadcast,
    .host_allreduce_i64 = tc_host_i64,
    .host_allreduce_f64 = tc_host_f64,
    .host_broadcast = tc_host_broadcast,
    .barrier = tc_barrier,
};

tc_group *tc_group_create(int ranks)
{
    if (ranks < 1 || ranks > TC_MAX)
        return NULL;
    tc_group *g = calloc(1, sizeof *g);
    g->ranks = ranks;
    pthread_barrier_init(&g->bar, NULL, (unsigned)ranks);
    for (int r = 0; r < ranks; r++) {
        hallu_comm *c = &g->comm[r];
        c->ops = &tc_ops;
        c->rank = c->local_rank = r;
        c->size = c->local_size = ranks;
        strcpy(c->host, "threads");
        c->impl = g;
    }
    return g;
}

void tc_group_free(tc_group *g)
{
    if (!g)
        return;
    pthread_barrier_destroy(&g->bar);
    free(g);
}

hallu_comm *tc_comm(tc_group *g, int rank) { return &g->comm[rank]; }

typedef struct tc_task { void (*fn)(int, void *); int rank; void *arg; } tc_task;

static void *tc_main(void *p)
{
    tc_task *t = p;
    t->fn(t->rank, t->arg);
    return NULL;
}

void tc_run(tc_group *g, void (*fn)(int rank, void *arg), void **args)
{
    pthread_t th[TC_MAX];
    tc_task task[TC_MAX];
    for (int r = 0; r < g->ranks; r++) {
        task[r] = (tc_task){ fn, r, args[r] };
        pthread_create(&th[r], NULL, tc_main, &task[r]);
    }
    for (int r = 0; r < g->ranks; r++)
        pthread_join(th[r], NULL);
}
