/* Data parallelism: a communicator carried beside the backend.
 *
 * One process is one rank. The communicator is chosen at run time:
 *   "single"  one process, every collective is the identity (the default);
 *   "mpi"     OpenMPI ranks (mpirun -np N ...): CPU collectives over MPI;
 *   "nccl"    GPU ranks: NCCL collectives on device memory, bootstrapped over MPI
 *             (built only where the CUDA toolkit and NCCL are found).
 *
 * Buffer collectives take DEVICE addresses of `be` (backend.h). A communicator
 * that cannot reach device memory directly (MPI with a backend whose memory is
 * not host-addressable, e.g. cpu-isolated) stages through host copies with the
 * backend's download/upload; it never dereferences a device address otherwise.
 * Host collectives (control: statuses, stop flags, configuration hashes) take
 * host memory.
 *
 * Every rank must call the same collectives in the same order. Errors are named
 * (which call, which rank, the library's message) and returned; the trainer
 * agrees on statuses with hallu_comm_agree so that a rank that fails never
 * leaves the others waiting.
 *
 * Results are identical on every rank (the reduction order of a call does not
 * depend on the rank that receives it), so replicated state stays bit-identical. */
#ifndef HALLU_DIST_H
#define HALLU_DIST_H

#include "hallu/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hallu_comm hallu_comm;

typedef enum hallu_comm_reduce { HALLU_REDUCE_SUM = 0, HALLU_REDUCE_MIN, HALLU_REDUCE_MAX } hallu_comm_reduce;

typedef struct hallu_comm_ops {
    const char *name;                       /* "single", "mpi", "nccl" */
    void (*destroy)(hallu_comm *c);         /* frees impl and c itself */
    /* ---- device buffers of be ---- */
    /* buf[i] = sum over ranks of buf[i] (n floats, in place). */
    hallu_status (*allreduce_sum_f32)(hallu_comm *c, hallu_backend *be, float *buf, int64_t n, hallu_error *err);
    /* The same on doubles (batch-norm statistics). */
    hallu_status (*allreduce_sum_f64)(hallu_comm *c, hallu_backend *be, double *buf, int64_t n, hallu_error *err);
    /* recv [size][n] = every rank's send [n], in rank order (recv may not overlap send,
     * except that send == recv + rank * n, "in place", is allowed). */
    hallu_status (*allgather_f32)(hallu_comm *c, hallu_backend *be, float *recv, const float *send, int64_t n,
                                  hallu_error *err);
    /* recv [n] = sum over ranks of their send[rank * n .. rank * n + n) (send [size][n]). */
    hallu_status (*reduce_scatter_sum_f32)(hallu_comm *c, hallu_backend *be, float *recv, const float *send,
                                           int64_t n, hallu_error *err);
    /* nbytes of buf from rank root to every rank. */
    hallu_status (*broadcast)(hallu_comm *c, hallu_backend *be, void *buf, size_t nbytes, int root,
                              hallu_error *err);
    /* ---- host memory (control) ---- */
    hallu_status (*host_allreduce_i64)(hallu_comm *c, int64_t *buf, int n, hallu_comm_reduce op, hallu_error *err);
    hallu_status (*host_allreduce_f64)(hallu_comm *c, double *buf, int n, hallu_comm_reduce op, hallu_error *err);
    hallu_status (*host_broadcast)(hallu_comm *c, void *buf, size_t nbytes, int root, hallu_error *err);
    /* Waits for every rank, at most timeout_s seconds (<= 0: no bound), without
     * spinning a core (a rank that waits for another's kNN or checkpoint leaves
     * the cores to it). A timeout is a named error. */
    hallu_status (*barrier)(hallu_comm *c, double timeout_s, hallu_error *err);
} hallu_comm_ops;

struct hallu_comm {
    const hallu_comm_ops *ops;
    int rank, size;
    int local_rank, local_size;   /* among the ranks on this host (threads, GPU choice) */
    char host[64];                /* this rank's host name, for messages */
    /* Accounting for metrics and benchmarks: time spent in buffer collectives and
     * the bytes each rank contributed to them, since create (or a reset). */
    double seconds;
    int64_t bytes;
    void *impl;
};

/* Names accepted by hallu_comm_create, for help texts: "single, mpi[, nccl]". */
const char *hallu_comm_names(void);
/* 1 when this process was started by an MPI launcher (mpirun/mpiexec of
 * OpenMPI: OMPI_COMM_WORLD_SIZE / PMIX_RANK in the environment). */
int hallu_comm_launched_by_mpi(void);
/* Creates a communicator:
 *   "single"  always;
 *   "mpi"     initialises MPI (thread level FUNNELED) unless already done;
 *   "nccl"    MPI, then one NCCL communicator over all ranks on GPU local_rank;
 *   "auto" / NULL: "mpi" when launched by MPI with more than one rank... or one
 *             (so `mpirun -np 1` still agrees on files), else "single".
 * A name this build lacks is HALLU_ERR_UNSUPPORTED naming what is missing. */
hallu_status hallu_comm_create(const char *name, hallu_comm **out, hallu_error *err);
/* Frees the communicator (and finalises MPI when this library initialised it). */
void hallu_comm_free(hallu_comm *c);
/* Ends the job at once on every rank (MPI_Abort), after printing nothing; for a
 * rank that cannot reach the next agreement point. Returns only for "single". */
void hallu_comm_abort(hallu_comm *c, int code);

/* Agreement: every rank passes its own status (and err); every rank gets the
 * same result. HALLU_OK when all passed HALLU_OK; otherwise the status of the
 * lowest failing rank, its message prefixed "rank R (host H): ", in err on every
 * rank. One small host all-reduce and, on failure, one broadcast. */
hallu_status hallu_comm_agree(hallu_comm *c, hallu_status mine, hallu_error *err);

/* The mean over ranks of n device floats: sums all-reduced in pieces of at
 * most `bucket` floats (<= 0: one piece), then x (1 / size) on the device. A
 * failed collective is recorded on be (hallu_backend_fail, its message after
 * `what`, if any) and ends the call. Nothing happens on one rank. */
void hallu_comm_allreduce_mean_f32(hallu_comm *c, hallu_backend *be, float *buf, int64_t n, int64_t bucket,
                                   const char *what);

/* Checks that every rank holds the same `what` (e.g. a configuration hash); on
 * a mismatch names the first rank that differs from rank 0. */
hallu_status hallu_comm_check_same(hallu_comm *c, uint64_t value, const char *what, hallu_error *err);


#ifdef __cplusplus
}
#endif
#endif
