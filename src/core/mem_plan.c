/* The planned arena of mem_plan.h: greedy offset assignment, largest buffer
 * first (the order that keeps fragmentation low for activation plans, as in
 * TFLite's and ONNX Runtime's planners). O(n^2) in the requests: a plan holds
 * hundreds, packed once. */
#include "hallu/mem_plan.h"

#include <stdlib.h>
#include <string.h>

enum { MEM_ALIGN = 64 };

void hallu_mem_plan_init(hallu_mem_plan *mp) { memset(mp, 0, sizeof *mp); }

void hallu_mem_plan_free(hallu_mem_plan *mp)
{
    hallu_buffer_free(&mp->arena);
    free(mp->req);
    memset(mp, 0, sizeof *mp);
}

int hallu_mem_plan_request(hallu_mem_plan *mp, size_t bytes, int first, int last, hallu_error *err)
{
    if (mp->arena.data) {
        hallu_error_set(err, HALLU_ERR_INVALID_ARG, "memory plan: request after commit");
        return -1;
    }
    if (first > last || bytes > SIZE_MAX / 2) {
        hallu_error_set(err, HALLU_ERR_INVALID_ARG, "memory plan: request of %zu bytes live %d..%d", bytes, first,
                        last);
        return -1;
    }
    if (mp->count == mp->cap) {
        int cap = mp->cap ? mp->cap * 2 : 64;
        hallu_mem_request *grown = realloc(mp->req, (size_t)cap * sizeof *grown);
        if (!grown) {
            hallu_error_set(err, HALLU_ERR_OOM, "memory plan: out of memory growing to %d requests", cap);
            return -1;
        }
        mp->req = grown;
        mp->cap = cap;
    }
    size_t rounded = (bytes + MEM_ALIGN - 1) / MEM_ALIGN * MEM_ALIGN;
    mp->req[mp->count] = (hallu_mem_request){ .bytes = rounded ? rounded : MEM_ALIGN, .first = first, .last = last };
    return mp->count++;
}

typedef struct sized {
    size_t bytes;
    int id;
} sized;

static int by_size_desc(const void *a, const void *b)
{
    const sized *x = a, *y = b;
    if (x->bytes != y->bytes)
        return x->bytes > y->bytes ? -1 : 1;
    return x->id - y->id;   /* a total order: the same plan always packs the same way */
}

size_t hallu_mem_plan_pack(hallu_mem_plan *mp)
{
    int n = mp->count;
    sized *by = malloc((size_t)(n ? n : 1) * sizeof *by);
    int *order = malloc((size_t)(n ? n : 1) * sizeof *order);
    if (!by || !order) {
        free(by);
        free(order);
        return SIZE_MAX;
    }
    for (int i = 0; i < n; i++)
        by[i] = (sized){ mp->req[i].bytes, i };
    qsort(by, (size_t)n, sizeof *by, by_size_desc);
    for (int i = 0; i < n; i++)
        order[i] = by[i].id;
    free(by);
    size_t size = 0;
    for (int k = 0; k < n; k++) {
        hallu_mem_request *r = &mp->req[order[k]];
        /* Lowest offset that clears every placed, time-overlapping buffer: try 0
         * and the end of each such buffer, keep the smallest that fits. */
        size_t best = SIZE_MAX;
        for (int c = -1; c < k; c++) {
            size_t cand = c < 0 ? 0 : mp->req[order[c]].offset + mp->req[order[c]].bytes;
            if (cand >= best)
                continue;
            int clash = 0;
            for (int j = 0; j < k && !clash; j++) {
                const hallu_mem_request *p = &mp->req[order[j]];
                int overlap_t = p->first <= r->last && r->first <= p->last;
                int overlap_a = p->offset < cand + r->bytes && cand < p->offset + p->bytes;
                clash = overlap_t && overlap_a;
            }
            if (!clash)
                best = cand;
        }
        r->offset = best;
        if (best + r->bytes > size)
            size = best + r->bytes;
    }
    free(order);
    mp->size = size;
    return size;
}

hallu_status hallu_mem_plan_commit(hallu_mem_plan *mp, hallu_backend *be, const char *what, hallu_error *err)
{
    if (hallu_mem_plan_pack(mp) == SIZE_MAX)
        return hallu_error_set(err, HALLU_ERR_OOM, "memory plan for %s: out of memory packing", what);
    return hallu_buffer_alloc(&mp->arena, be, HALLU_DTYPE_U8, (int64_t)mp->size, what, err);
}

void *hallu_mem_plan_addr(const hallu_mem_plan *mp, int id)
{
    return (char *)mp->arena.data + mp->req[id].offset;
}
