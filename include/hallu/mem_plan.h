/* A planned arena: the buffers a model needs for a step, each with the span of
 * the step during which it is live, packed into ONE backend allocation where
 * buffers whose spans do not overlap share bytes (liveness-based reuse).
 *
 * Use: requests (hallu_mem_plan_request) while planning, with spans on any
 * integer timeline the caller defines (e.g. layer index in forward, then in
 * backward); then hallu_mem_plan_commit allocates the arena on a backend and
 * hallu_mem_plan_addr gives each request's device address. The planned peak
 * (the arena's size) is known before anything is allocated. */
#ifndef HALLU_MEM_PLAN_H
#define HALLU_MEM_PLAN_H

#include "hallu/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hallu_mem_request {
    size_t bytes;
    int first, last;      /* live from first to last, inclusive */
    size_t offset;        /* assigned by hallu_mem_plan_pack */
} hallu_mem_request;

typedef struct hallu_mem_plan {
    hallu_mem_request *req;
    int count, cap;
    size_t size;          /* the arena's bytes once packed */
    hallu_buffer arena;   /* after commit */
} hallu_mem_plan;

void hallu_mem_plan_init(hallu_mem_plan *mp);
void hallu_mem_plan_free(hallu_mem_plan *mp);
/* Adds a buffer of `bytes` live over [first, last]; returns its id (>= 0), or
 * -1 with err set (bad span, out of memory, after commit). */
int hallu_mem_plan_request(hallu_mem_plan *mp, size_t bytes, int first, int last, hallu_error *err);
/* Assigns offsets (64-byte aligned): largest first, each at the lowest offset
 * free of every placed buffer whose span overlaps its own. Returns the size. */
size_t hallu_mem_plan_pack(hallu_mem_plan *mp);
/* Packs and allocates the arena on be. */
hallu_status hallu_mem_plan_commit(hallu_mem_plan *mp, hallu_backend *be, const char *what, hallu_error *err);
/* Device address of request id (after commit). */
void *hallu_mem_plan_addr(const hallu_mem_plan *mp, int id);

#ifdef __cplusplus
}
#endif
#endif
