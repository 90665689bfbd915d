/* Private pieces of the dist module: the communicator implementations. */
#ifndef HALLU_DIST_INTERNAL_H
#define HALLU_DIST_INTERNAL_H

#include "hallu/dist.h"

/* comm_single.c: the one-process communicator (every collective is the identity). */
hallu_status dist_single_create(hallu_comm **out, hallu_error *err);

#ifdef HALLU_HAVE_MPI
/* comm_mpi.c: MPI_COMM_WORLD; initialises MPI when nobody has. */
hallu_status dist_mpi_create(hallu_comm **out, hallu_error *err);
/* MPI_Abort on MPI_COMM_WORLD (hallu_comm_abort). */
void dist_mpi_abort(int code);
#endif

#ifdef HALLU_HAVE_NCCL
/* comm_nccl.c: NCCL over all ranks of `mpi` (which it takes over and frees with
 * itself): the unique id is broadcast from rank 0 over MPI, the GPU is
 * local_rank (mod the visible GPUs); host collectives go through `mpi`. Buffer
 * collectives take CUDA device addresses and are complete on return. */
hallu_status dist_nccl_create(hallu_comm *mpi, hallu_comm **out, hallu_error *err);
#endif

/* Fills c->host with gethostname() (shortened to fit). */
void dist_set_host(hallu_comm *c);

#endif
