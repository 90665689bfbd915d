/* The planned arena (mem_plan.h): buffers whose live spans overlap never share
 * bytes, disjoint spans do, the packing is deterministic, and commit gives one
 * backend allocation holding every buffer. */
#include "check.h"
#include "hallu/mem_plan.h"
#include "hallu/rng.h"
#include "test_backend.h"

static int overlaps(const hallu_mem_request *a, const hallu_mem_request *b)
{
    return a->first <= b->last && b->first <= a->last && a->offset < b->offset + b->bytes &&
           b->offset < a->offset + a->bytes;
}

static void test_reuse(void)
{
    hallu_mem_plan mp;
    hallu_error err;
    hallu_mem_plan_init(&mp);
    /* A chain: each buffer lives from its producer to its consumer. */
    for (int i = 0; i < 8; i++)
        CHECK(hallu_mem_plan_request(&mp, 1000, i, i + 1, &err) == i);
    size_t size = hallu_mem_plan_pack(&mp);
    CHECK(size == 2 * 1024);   /* two live at a time, 64-byte rounded */
    for (int i = 0; i < 8; i++)
        for (int j = i + 1; j < 8; j++)
            CHECK(!overlaps(&mp.req[i], &mp.req[j]));
    /* All live at once: nothing to share. */
    hallu_mem_plan all;
    hallu_mem_plan_init(&all);
    for (int i = 0; i < 8; i++)
        hallu_mem_plan_request(&all, 1000, 0, 10, &err);
    CHECK(hallu_mem_plan_pack(&all) == 8 * 1024);
    CHECK(hallu_mem_plan_request(&all, 10, 3, 2, &err) == -1 && err.code == HALLU_ERR_INVALID_ARG);
    hallu_mem_plan_free(&all);
    hallu_mem_plan_free(&mp);
}

static void test_random_plans(void)
{
    hallu_rng rng;
    hallu_rng_init(&rng, 5, 1);
    hallu_error err;
    for (int trial = 0; trial < 50; trial++) {
        hallu_mem_plan mp, again;
        hallu_mem_plan_init(&mp);
        hallu_mem_plan_init(&again);
        int n = 1 + (int)(hallu_rng_uniform(&rng) * 60);
        size_t total = 0;
        for (int i = 0; i < n; i++) {
            int first = (int)(hallu_rng_uniform(&rng) * 40), len = (int)(hallu_rng_uniform(&rng) * 10);
            size_t bytes = 1 + (size_t)(hallu_rng_uniform(&rng) * 100000);
            hallu_mem_plan_request(&mp, bytes, first, first + len, &err);
            hallu_mem_plan_request(&again, bytes, first, first + len, &err);
            total += (bytes + 63) / 64 * 64;
        }
        size_t size = hallu_mem_plan_pack(&mp);
        int clash = 0, same = hallu_mem_plan_pack(&again) == size;
        for (int i = 0; i < n; i++) {
            same &= mp.req[i].offset == again.req[i].offset;
            clash |= mp.req[i].offset % 64 != 0 || mp.req[i].offset + mp.req[i].bytes > size;
            for (int j = i + 1; j < n; j++)
                clash |= overlaps(&mp.req[i], &mp.req[j]);
        }
        CHECK(!clash && same && size <= total);
        hallu_mem_plan_free(&mp);
        hallu_mem_plan_free(&again);
    }
}

static void test_commit(void)
{
    hallu_backend *be = NULL;
    hallu_error err;
    CHECK_OK(test_backend_create(&be, 1, &err), &err);
    if (!be)
        return;
    hallu_mem_plan mp;
    hallu_mem_plan_init(&mp);
    int a = hallu_mem_plan_request(&mp, 256, 0, 1, &err), b = hallu_mem_plan_request(&mp, 256, 2, 3, &err);
    CHECK_OK(hallu_mem_plan_commit(&mp, be, "test arena", &err), &err);
    CHECK(mp.arena.nbytes == 256 && hallu_mem_plan_addr(&mp, a) == hallu_mem_plan_addr(&mp, b));
    CHECK(hallu_mem_plan_request(&mp, 10, 0, 0, &err) == -1);
    /* the arena is device memory: fill and read it back through the backend */
    be->ops->fill(be, hallu_mem_plan_addr(&mp, a), 2.5f, 64);
    float back[64];
    CHECK_OK(hallu_backend_download(be, back, hallu_mem_plan_addr(&mp, b), sizeof back, &err), &err);
    CHECK(back[0] == 2.5f && back[63] == 2.5f);
    size_t live = 0;
    hallu_backend_memory(be, &live, NULL);
    CHECK(live == 256);
    hallu_mem_plan_free(&mp);
    hallu_backend_memory(be, &live, NULL);
    CHECK(live == 0);
    hallu_backend_free(be);
}

int main(void)
{
    test_reuse();
    test_random_plans();
    test_commit();
    return check_summary();
}
