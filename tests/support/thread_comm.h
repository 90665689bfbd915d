/* A communicator over threads of one process, for tests: R "ranks" are R
 * threads, each with its own backend and model, and the collectives meet at a
 * barrier (sums in rank order). It lets unit tests (also under ASan) check
 * data-parallel code against one process without MPI. Buffers are staged
 * through host copies, so any backend works. */
#ifndef HALLU_THREAD_COMM_H
#define HALLU_THREAD_COMM_H

#include "hallu/dist.h"

typedef struct tc_group tc_group;

tc_group *tc_group_create(int ranks);
void tc_group_free(tc_group *g);
/* The communicator of `rank` (owned by the group; do not hallu_comm_free it). */
hallu_comm *tc_comm(tc_group *g, int rank);
/* Runs fn(rank, arg[rank]) on one thread per rank and joins them. */
void tc_run(tc_group *g, void (*fn)(int rank, void *arg), void **args);

#endif
