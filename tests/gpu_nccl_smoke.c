/* The "nccl" communicator on real GPUs: all-reduce (f32, f64), all-gather (also
 * in place), reduce-scatter and broadcast on cudaMalloc'd buffers, against
 * results computed on the host; plus the named refusal of a host address.
 *
 * ctest runs it as one rank (label "gpu"): one GPU cannot hold several NCCL
 * ranks (NCCL refuses two ranks on one device), so a multi-rank run needs one
 * GPU per rank: `mpirun -np N gpu_nccl_smoke` on a host with N GPUs. The
 * expected values are written for any number of ranks. Every value is a small
 * integer or half, exact in float, so the reduction order cannot change them.
 *
 * Exits 77 (skipped) when CUDA sees no GPU. */
#include "hallu/dist.h"
#include "check.h"

#include <cuda_runtime.h>

#include <stdlib.h>
#include <string.h>

#define N 4099 /* odd: no collective gets a multiple of any vector width */

static int cuda_ok(cudaError_t e, const char *what)
{
    if (e != cudaSuccess)
        fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    return check_report(e == cudaSuccess, what, __FILE__, __LINE__);
}

/* Rank r's contribution to element i of an all-reduce. */
static double val(int r, int64_t i)
{
    return (double)(r + 1) * (double)(i % 13) + 0.5 * (double)(r % 2);
}

int main(void)
{
    int ndev = 0;
    cudaError_t ce = cudaGetDeviceCount(&ndev);
    if (ce != cudaSuccess || ndev <= 0) {
        printf("no CUDA GPU: skipped (cudaGetDeviceCount: %s)\n",
               ce != cudaSuccess ? cudaGetErrorString(ce) : "0 devices");
        return 77;
    }

    hallu_error err = {0};
    hallu_comm *c = NULL;
    hallu_status st = hallu_comm_create("nccl", &c, &err);
    if (st != HALLU_OK) {
        fprintf(stderr, "hallu_comm_create(\"nccl\"): %s\n", err.msg);
        return 1;
    }
    CHECK(strcmp(c->ops->name, "nccl") == 0);
    CHECK(c->size >= 1 && c->rank >= 0 && c->rank < c->size);
    const int R = c->size, me = c->rank;
    printf("rank %d of %d on %s, %d GPU(s) visible\n", me, R, c->host, ndev);

    size_t big = (size_t)R * N; /* the largest buffer: all-gather's recv, reduce-scatter's send */
    float *hf = malloc(big * sizeof *hf);
    double *hd = malloc(N * sizeof *hd);
    float *df = NULL, *df2 = NULL;
    double *dd = NULL;
    if (!hf || !hd) {
        fprintf(stderr, "out of host memory\n");
        return 1;
    }
    if (!cuda_ok(cudaMalloc((void **)&df, big * sizeof *df), "cudaMalloc") ||
        !cuda_ok(cudaMalloc((void **)&df2, big * sizeof *df2), "cudaMalloc") ||
        !cuda_ok(cudaMalloc((void **)&dd, N * sizeof *dd), "cudaMalloc"))
        return check_summary();

    /* All-reduce, f32 and f64. */
    for (int64_t i = 0; i < N; i++) {
        hf[i] = (float)val(me, i);
        hd[i] = val(me, i) + 0.25;
    }
    cuda_ok(cudaMemcpy(df, hf, N * sizeof *hf, cudaMemcpyHostToDevice), "cudaMemcpy");
    cuda_ok(cudaMemcpy(dd, hd, N * sizeof *hd, cudaMemcpyHostToDevice), "cudaMemcpy");
    CHECK_OK(c->ops->allreduce_sum_f32(c, NULL, df, N, &err), &err);
    CHECK_OK(c->ops->allreduce_sum_f64(c, NULL, dd, N, &err), &err);
    cuda_ok(cudaMemcpy(hf, df, N * sizeof *hf, cudaMemcpyDeviceToHost), "cudaMemcpy");
    cuda_ok(cudaMemcpy(hd, dd, N * sizeof *hd, cudaMemcpyDeviceToHost), "cudaMemcpy");
    int64_t bad_f = 0, bad_d = 0;
    for (int64_t i = 0; i < N; i++) {
        double want = 0;
        for (int r = 0; r < R; r++)
            want += val(r, i);
        bad_f += hf[i] != (float)want;
        bad_d += hd[i] != want + 0.25 * R;
    }
    CHECK_MSG(bad_f == 0, "allreduce f32: %lld of %d wrong", (long long)bad_f, N);
    CHECK_MSG(bad_d == 0, "allreduce f64: %lld of %d wrong", (long long)bad_d, N);

    /* All-gather from a separate send buffer, then in place (send = recv + rank * n). */
    for (int64_t i = 0; i < N; i++)
        hf[i] = (float)(me * 10000 + i);
    cuda_ok(cudaMemcpy(df2, hf, N * sizeof *hf, cudaMemcpyHostToDevice), "cudaMemcpy");
    cuda_ok(cudaMemset(df, 0, big * sizeof *df), "cudaMemset");
    CHECK_OK(c->ops->allgather_f32(c, NULL, df, df2, N, &err), &err);
    cuda_ok(cudaMemcpy(hf, df, big * sizeof *hf, cudaMemcpyDeviceToHost), "cudaMemcpy");
    int64_t bad = 0;
    for (int r = 0; r < R; r++)
        for (int64_t i = 0; i < N; i++)
            bad += hf[(size_t)r * N + (size_t)i] != (float)(r * 10000 + i);
    CHECK_MSG(bad == 0, "allgather: %lld of %zu wrong", (long long)bad, big);

    cuda_ok(cudaMemset(df, 0, big * sizeof *df), "cudaMemset");
    for (int64_t i = 0; i < N; i++)
        hf[i] = (float)(me * 10000 + i + 7);
    cuda_ok(cudaMemcpy(df + (size_t)me * N, hf, N * sizeof *hf, cudaMemcpyHostToDevice), "cudaMemcpy");
    CHECK_OK(c->ops->allgather_f32(c, NULL, df, df + (size_t)me * N, N, &err), &err);
    cuda_ok(cudaMemcpy(hf, df, big * sizeof *hf, cudaMemcpyDeviceToHost), "cudaMemcpy");
    bad = 0;
    for (int r = 0; r < R; r++)
        for (int64_t i = 0; i < N; i++)
            bad += hf[(size_t)r * N + (size_t)i] != (float)(r * 10000 + i + 7);
    CHECK_MSG(bad == 0, "allgather in place: %lld of %zu wrong", (long long)bad, big);

    /* Reduce-scatter: send [R][N] holds (rank + 1) * (j + 1) at j; this rank
     * receives block `me` summed over the ranks. */
    for (size_t j = 0; j < big; j++)
        hf[j] = (float)((me + 1) * (int64_t)((j % 1000) + 1));
    cuda_ok(cudaMemcpy(df2, hf, big * sizeof *hf, cudaMemcpyHostToDevice), "cudaMemcpy");
    cuda_ok(cudaMemset(df, 0, N * sizeof *df), "cudaMemset");
    CHECK_OK(c->ops->reduce_scatter_sum_f32(c, NULL, df, df2, N, &err), &err);
    cuda_ok(cudaMemcpy(hf, df, N * sizeof *hf, cudaMemcpyDeviceToHost), "cudaMemcpy");
    bad = 0;
    for (int64_t i = 0; i < N; i++) {
        size_t j = (size_t)me * N + (size_t)i;
        double want = 0;
        for (int r = 0; r < R; r++)
            want += (double)((r + 1) * (int64_t)((j % 1000) + 1));
        bad += hf[i] != (float)want;
    }
    CHECK_MSG(bad == 0, "reduce_scatter: %lld of %d wrong", (long long)bad, N);

    /* Broadcast of an odd byte count from the last rank. */
    const size_t nb = 1001;
    int root = R - 1;
    unsigned char *hb = (unsigned char *)hf;
    for (size_t i = 0; i < nb; i++)
        hb[i] = me == root ? (unsigned char)(i * 7 + 3) : 0;
    cuda_ok(cudaMemcpy(df, hb, nb, cudaMemcpyHostToDevice), "cudaMemcpy");
    CHECK_OK(c->ops->broadcast(c, NULL, df, nb, root, &err), &err);
    memset(hb, 0xff, nb);
    cuda_ok(cudaMemcpy(hb, df, nb, cudaMemcpyDeviceToHost), "cudaMemcpy");
    bad = 0;
    for (size_t i = 0; i < nb; i++)
        bad += hb[i] != (unsigned char)(i * 7 + 3);
    CHECK_MSG(bad == 0, "broadcast: %lld of %zu bytes wrong", (long long)bad, nb);

    /* Accounting: every collective above counted its time and bytes. */
    CHECK(c->seconds > 0);
    CHECK(c->bytes == (int64_t)(N * 4 + N * 8 + N * 4 + N * 4 + (int64_t)R * N * 4 + (int64_t)nb));

    /* A host address is refused with a named error, not handed to the GPU. */
    float host_buf[4] = {0};
    st = c->ops->allreduce_sum_f32(c, NULL, host_buf, 4, &err);
    CHECK_MSG(st == HALLU_ERR_INVALID_ARG && strstr(err.msg, "not CUDA device memory"), "status %d: %s", (int)st,
              err.msg);

    /* Host collectives go through MPI. */
    int64_t v = me + 1;
    CHECK_OK(c->ops->host_allreduce_i64(c, &v, 1, HALLU_REDUCE_SUM, &err), &err);
    CHECK(v == (int64_t)R * (R + 1) / 2);
    CHECK_OK(c->ops->barrier(c, 60.0, &err), &err);

    cudaFree(df);
    cudaFree(df2);
    cudaFree(dd);
    free(hf);
    free(hd);
    hallu_comm_free(c);
    return check_summary();
}
