/* Choosing a communicator, and the agreements every data-parallel caller needs:
 * one status for all ranks (with the failing rank's message), and checks that
 * every rank holds the same configuration. */
#include "dist_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *hallu_comm_names(void)
{
#if defined(HALLU_HAVE_NCCL)
    return "single, mpi, nccl";
#elif defined(HALLU_HAVE_MPI)
    return "single, mpi";
#else
    return "single";
#endif
}

int hallu_comm_launched_by_mpi(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") != NULL || getenv("PMIX_RANK") != NULL || getenv("PMI_RANK") != NULL;
}

void dist_set_host(hallu_comm *c)
{
    char name[256] = "";
    if (gethostname(name, sizeof name) != 0)
        snprintf(name, sizeof name, "unknown");
    name[sizeof name - 1] = '\0';
    snprintf(c->host, sizeof c->host, "%.63s", name);
}

hallu_status hallu_comm_create(const char *name, hallu_comm **out, hallu_error *err)
{
    *out = NULL;
    if (!name || !name[0] || strcmp(name, "auto") == 0)
        name = hallu_comm_launched_by_mpi() ? "mpi" : "single";
    if (strcmp(name, "single") == 0)
        return dist_single_create(out, err);
    if (strcmp(name, "mpi") == 0) {
#ifdef HALLU_HAVE_MPI
        return dist_mpi_create(out, err);
#else
        return hallu_error_set(err, HALLU_ERR_UNSUPPORTED, "communicator mpi: this hallu was built without MPI "
                               "(install libopenmpi-dev and rebuild)");
#endif
    }
    if (strcmp(name, "nccl") == 0) {
#ifdef HALLU_HAVE_NCCL
        hallu_comm *mpi = NULL;
        hallu_status s = dist_mpi_create(&mpi, err);
        return s == HALLU_OK ? dist_nccl_create(mpi, out, err) : s;
#else
        return hallu_error_set(err, HALLU_ERR_UNSUPPORTED, "communicator nccl: this hallu was built without the "
                               "CUDA toolkit's NCCL (and MPI to bootstrap it)");
#endif
    }
    return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "communicator '%s': expected one of auto, %s", name,
                           hallu_comm_names());
}

void hallu_comm_free(hallu_comm *c)
{
    if (c)
        c->ops->destroy(c);
}

hallu_status hallu_comm_agree(hallu_comm *c, hallu_status mine, hallu_error *err)
{
    if (c->size == 1)
        return mine;
    /* The lowest failing rank speaks for all: MIN over (failed ? rank : size). */
    int64_t who = mine != HALLU_OK ? c->rank : c->size;
    hallu_error local;
    hallu_error_clear(&local);
    hallu_status s = c->ops->host_allreduce_i64(c, &who, 1, HALLU_REDUCE_MIN, &local);
    if (s != HALLU_OK) {
        *err = local;
        return s;
    }
    if (who >= c->size)
        return HALLU_OK;
    struct { int32_t code; char host[64]; char msg[HALLU_ERROR_MSG_MAX]; } report;
    memset(&report, 0, sizeof report);
    if (who == c->rank) {
        report.code = (int32_t)mine;
        memcpy(report.host, c->host, sizeof report.host);
        snprintf(report.msg, sizeof report.msg, "%s", err->msg);
    }
    s = c->ops->host_broadcast(c, &report, sizeof report, (int)who, &local);
    if (s != HALLU_OK) {
        *err = local;
        return s;
    }
    report.host[sizeof report.host - 1] = '\0';
    report.msg[sizeof report.msg - 1] = '\0';
    hallu_status code = report.code > HALLU_OK && report.code <= HALLU_ERR_INTERRUPTED ? (hallu_status)report.code
                                                                                      : HALLU_ERR_INVALID_ARG;
    return hallu_error_set(err, code, "rank %lld (host %s): %s", (long long)who, report.host, report.msg);
}

hallu_status hallu_comm_check_same(hallu_comm *c, uint64_t value, const char *what, hallu_error *err)
{
    if (c->size == 1)
        return HALLU_OK;
    /* Rank 0's value is authoritative: broadcast it, each rank compares, MIN finds the first that differs. */
    uint64_t root = value;
    hallu_status s = c->ops->host_broadcast(c, &root, sizeof root, 0, err);
    if (s != HALLU_OK)
        return s;
    int64_t first = root == value ? c->size : c->rank;
    s = c->ops->host_allreduce_i64(c, &first, 1, HALLU_REDUCE_MIN, err);
    if (s != HALLU_OK)
        return s;
    if (first >= c->size)
        return HALLU_OK;
    return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "rank %lld disagrees with rank 0 on %s: every rank must "
                           "run with the same flags and data (rank 0's are authoritative)", (long long)first, what);
}

void hallu_comm_abort(hallu_comm *c, int code)
{
#ifdef HALLU_HAVE_MPI
    if (c && c->size > 1 && strcmp(c->ops->name, "single") != 0) {
        dist_mpi_abort(code);
    }
#endif
    (void)c;
    (void)code;
}

void hallu_comm_allreduce_mean_f32(hallu_comm *c, hallu_backend *be, float *buf, int64_t n, int64_t bucket,
                                   const char *what)
{
    if (c->size == 1 || n <= 0)
        return;
    if (bucket <= 0)
        bucket = n;
    for (int64_t at = 0; at < n; at += bucket) {
        int64_t cnt = n - at < bucket ? n - at : bucket;
        hallu_error e;
        hallu_error_clear(&e);
        hallu_status s = c->ops->allreduce_sum_f32(c, be, buf + at, cnt, &e);
        if (s != HALLU_OK) {
            hallu_backend_fail(be, s, "%s%s%s", what ? what : "", what ? ": " : "", e.msg);
            return;
        }
    }
    be->ops->scale(be, buf, 1.0f / (float)c->size, buf, n);
}
