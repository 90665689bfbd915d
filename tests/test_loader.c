/* Loader tests against an in-test fake source: thread-count independence,
 * shuffling, drop_last, sharding, error propagation and skipping, epoch restarts. */
#include "check.h"
#include "hallu/loader.h"

#include <stdlib.h>
#include <string.h>

enum { IMG = 12 };

typedef struct fake_source {
    int64_t bad_index; /* -1: none */
} fake_source;

static uint8_t pixel(int64_t index, int i)
{
    return (uint8_t)((index * 31 + i * 7 + (i / 5) * 3) & 255);
}

static hallu_status fake_get(void *ctx, int64_t index, hallu_image *img, int32_t *label,
                             hallu_error *err)
{
    const fake_source *fs = ctx;
    if (index == fs->bad_index)
        return hallu_error_set(err, HALLU_ERR_FORMAT, "fake: corrupt image %lld", (long long)index);
    img->h = IMG;
    img->w = IMG;
    if (img->capacity < IMG * IMG * 3)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "fake: buffer too small");
    for (int i = 0; i < IMG * IMG * 3; i++)
        img->data[i] = pixel(index, i);
    *label = (int32_t)(index % 10);
    return HALLU_OK;
}

static hallu_source fake(fake_source *fs, int64_t n)
{
    /* max_image_bytes 0: the loader must grow its buffers from the size reported. */
    hallu_source s = {fs, fake_get, n, IMG, IMG, 0};
    return s;
}

static void ssl_config(hallu_loader_config *cfg, int workers)
{
    hallu_error err;
    hallu_loader_config_default(cfg);
    cfg->batch_size = 7;
    cfg->num_workers = workers;
    cfg->prefetch = 2;
    cfg->seed = 1234;
    cfg->n_views = 2;
    hallu_ssl_views_config vc;
    hallu_ssl_views_default(&vc, 8);
    hallu_ssl_views_set_asymmetric(&vc);
    CHECK_OK(hallu_ssl_views_build(&vc, cfg->views, &err), &err);
}

/* Collects every batch of one epoch into flat arrays. */
typedef struct epoch_dump {
    int n;
    int64_t indices[256];
    int32_t labels[256];
    float *views;   /* [n][2][plane], plane <= IMG * IMG * 3 */
    int batches, last_n;
} epoch_dump;

static void run_epoch(hallu_loader *ld, uint32_t epoch, epoch_dump *d)
{
    hallu_error err;
    memset(d, 0, sizeof *d);
    d->views = malloc(sizeof(float) * 256 * 2 * IMG * IMG * 3);
    CHECK_OK(hallu_loader_start_epoch(ld, epoch, &err), &err);
    const hallu_batch *b;
    while (hallu_loader_next(ld, &b, &err) == HALLU_OK && b) {
        CHECK(b->step == d->batches);
        size_t plane = (size_t)b->h * b->w * 3;
        for (int i = 0; i < b->n && d->n < 256; i++, d->n++) {
            d->indices[d->n] = b->indices[i];
            d->labels[d->n] = b->labels[i];
            for (int v = 0; v < 2 && v < b->n_views; v++)
                memcpy(d->views + ((size_t)d->n * 2 + v) * plane, b->views[v] + i * plane,
                       plane * sizeof(float));
        }
        d->batches++;
        d->last_n = b->n;
    }
}

static void test_thread_independence(void)
{
    hallu_error err;
    fake_source fs = {-1};
    hallu_source src = fake(&fs, 60);
    epoch_dump ref[2];
    for (int workers = 1; workers <= 3; workers++) {
        hallu_loader_config cfg;
        ssl_config(&cfg, workers);
        hallu_loader *ld;
        CHECK_OK(hallu_loader_create(&ld, &src, &cfg, &err), &err);
        if (!ld)
            return;
        CHECK(hallu_loader_batches_per_epoch(ld) == 8); /* 60 / 7 with drop_last */
        for (uint32_t e = 0; e < 2; e++) {
            epoch_dump d;
            run_epoch(ld, e, &d);
            CHECK(d.n == 56 && d.batches == 8);
            for (int i = 0; i < d.n; i++)
                CHECK(d.labels[i] == d.indices[i] % 10);
            if (workers == 1) {
                ref[e] = d;
                continue;
            }
            CHECK(memcmp(d.indices, ref[e].indices, sizeof(int64_t) * 56) == 0);
            CHECK(memcmp(d.views, ref[e].views, sizeof(float) * 56 * 2 * 8 * 8 * 3) == 0);
            free(d.views);
        }
        CHECK(hallu_loader_wait_seconds(ld) >= 0.0);
        hallu_loader_destroy(ld);
    }
    CHECK(memcmp(ref[0].indices, ref[1].indices, sizeof(int64_t) * 56) != 0);
    /* The two views of one image differ (independent streams). */
    CHECK(memcmp(ref[0].views, ref[0].views + 8 * 8 * 3, sizeof(float) * 8 * 8 * 3) != 0);
    free(ref[0].views);
    free(ref[1].views);
}

/* Batch memory from a counting allocator, to see the loader use and free it. */
typedef struct counting_alloc {
    int allocs, frees;
} counting_alloc;

static void *count_alloc(void *ctx, size_t nbytes, const char *what, hallu_error *err)
{
    ((counting_alloc *)ctx)->allocs++;
    return hallu_alloc(nbytes, what, err);
}

static void count_free(void *ctx, void *p)
{
    ((counting_alloc *)ctx)->frees++;
    hallu_free(p);
}

/* u8_views: the bytes before normalisation, which normalised (as a device's
 * normalize_u8 does) are the float views' bits; skipped images compacted alike. */
static void test_u8_views(void)
{
    hallu_error err;
    fake_source fs = {17};
    hallu_source src = fake(&fs, 60);
    hallu_loader_config cfg;
    ssl_config(&cfg, 2);
    cfg.skip_bad = 1;
    hallu_loader *ld;
    CHECK_OK(hallu_loader_create(&ld, &src, &cfg, &err), &err);
    if (!ld)
        return;
    epoch_dump ref;
    run_epoch(ld, 3, &ref);
    hallu_loader_destroy(ld);

    counting_alloc ca = {0, 0};
    cfg.u8_views = 1;
    cfg.batch_memory = (hallu_host_allocator){ &ca, count_alloc, count_free };
    CHECK_OK(hallu_loader_create(&ld, &src, &cfg, &err), &err);
    if (!ld)
        return;
    CHECK(ca.allocs == (cfg.prefetch + 1) * 2);   /* every slot's two views */
    CHECK_OK(hallu_loader_start_epoch(ld, 3, &err), &err);
    const hallu_batch *b;
    int n = 0, short_batch = 0;
    float *f = malloc(sizeof(float) * IMG * IMG * 3);
    while (hallu_loader_next(ld, &b, &err) == HALLU_OK && b) {
        size_t plane = (size_t)b->h * b->w * 3;
        CHECK(b->views[0] == NULL && b->views_u8[0] != NULL && b->views_u8[1] != NULL);
        short_batch |= b->n < cfg.batch_size;
        for (int i = 0; i < b->n && n < ref.n; i++, n++) {
            CHECK(b->indices[i] == ref.indices[n]);
            for (int v = 0; v < 2; v++) {
                hallu_image img = { b->views_u8[v] + i * plane, b->h, b->w, plane };
                hallu_aug_normalize(f, &img, cfg.views[v].mean, cfg.views[v].std);
                CHECK(memcmp(f, ref.views + ((size_t)n * 2 + v) * plane, plane * sizeof(float)) == 0);
            }
        }
    }
    CHECK(n == ref.n && n > 0 && short_batch);   /* the bad image was skipped: one batch compacted */
    free(f);
    free(ref.views);
    hallu_loader_destroy(ld);
    CHECK(ca.frees == ca.allocs);
    /* alloc without free (or the reverse) is refused */
    cfg.batch_memory.free = NULL;
    CHECK(hallu_loader_create(&ld, &src, &cfg, &err) == HALLU_ERR_INVALID_ARG);
}

static void plain_config(hallu_loader_config *cfg, int bs)
{
    hallu_loader_config_default(cfg);
    cfg->batch_size = bs;
    cfg->num_workers = 2;
    cfg->prefetch = 3;
    cfg->drop_last = 0;
    cfg->seed = 99;
    cfg->n_views = 1;
    hallu_view_pipeline_init(&cfg->views[0], HALLU_CIFAR_MEAN, HALLU_CIFAR_STD);
}

static void test_shuffle_and_content(void)
{
    hallu_error err;
    fake_source fs = {-1};
    hallu_source src = fake(&fs, 50);
    hallu_loader_config cfg;
    plain_config(&cfg, 16);
    hallu_loader *ld;
    CHECK_OK(hallu_loader_create(&ld, &src, &cfg, &err), &err);
    if (!ld)
        return;
    epoch_dump d;
    run_epoch(ld, 3, &d);
    CHECK(d.n == 50 && d.batches == 4 && d.last_n == 2);
    int seen[50] = {0}, identity = 1;
    for (int i = 0; i < d.n; i++) {
        if (d.indices[i] >= 0 && d.indices[i] < 50)
            seen[d.indices[i]]++;
        identity &= d.indices[i] == i;
    }
    int perm = 1;
    for (int i = 0; i < 50; i++)
        perm &= seen[i] == 1;
    CHECK(perm);
    CHECK(!identity);
    /* Each slot holds the right image: no-op pipeline = normalised source pixels. */
    int match = 1;
    for (int i = 0; i < d.n; i++) {
        uint8_t raw[IMG * IMG * 3];
        for (int k = 0; k < IMG * IMG * 3; k++)
            raw[k] = pixel(d.indices[i], k);
        hallu_image img = {raw, IMG, IMG, sizeof raw};
        float ref[IMG * IMG * 3];
        hallu_aug_normalize(ref, &img, HALLU_CIFAR_MEAN, HALLU_CIFAR_STD);
        match &= memcmp(ref, d.views + (size_t)i * 2 * IMG * IMG * 3, sizeof ref) == 0;
    }
    free(d.views);
    CHECK(match);
    hallu_loader_destroy(ld);

    cfg.shuffle = 0;
    cfg.drop_last = 1;
    CHECK_OK(hallu_loader_create(&ld, &src, &cfg, &err), &err);
    if (!ld)
        return;
    run_epoch(ld, 0, &d);
    CHECK(d.n == 48 && d.batches == 3 && d.last_n == 16);
    int ordered = 1;
    for (int i = 0; i < d.n; i++)
        ordered &= d.indices[i] == i;
    CHECK(ordered);
    free(d.views);
    hallu_loader_destroy(ld);
}

/* Rank r's batch g is the r-th slice of the batch one process with batch
 * world_size x batch_size takes (so data-parallel steps see the one-process
 * batches), the last partial global batch is split evenly with padding, and
 * every rank runs the same number of batches (no rank waits for a batch that
 * never comes). 47 images, 3 ranks x 5: 3 full global batches + 2 images ->
 * one each, padded with the epoch order's first image. */
static void test_sharding(void)
{
    hallu_error err;
    fake_source fs = {-1};
    hallu_source src = fake(&fs, 47);
    hallu_loader_config cfg;
    plain_config(&cfg, 15);
    hallu_loader *ld;
    CHECK_OK(hallu_loader_create(&ld, &src, &cfg, &err), &err);
    if (!ld)
        return;
    epoch_dump one;   /* one process, batch 15: 15, 15, 15, 2 */
    run_epoch(ld, 1, &one);
    hallu_loader_destroy(ld);
    CHECK(one.n == 47 && one.batches == 4 && one.last_n == 2);
    int owner[47];
    memset(owner, -1, sizeof owner);
    int total = 0, same_as_one = 1;
    for (int rank = 0; rank < 3; rank++) {
        plain_config(&cfg, 5);
        cfg.rank = rank;
        cfg.world_size = 3;
        CHECK_OK(hallu_loader_create(&ld, &src, &cfg, &err), &err);
        if (!ld)
            return;
        epoch_dump d;
        run_epoch(ld, 1, &d);
        CHECK(d.n == hallu_loader_samples_per_epoch(ld) && d.n == 16);
        CHECK(d.batches == 4 && d.last_n == 1 && hallu_loader_batches_per_epoch(ld) == 4);
        for (int i = 0; i < 15; i++)   /* batch g, slot j <-> one-process position 15 g + 5 rank + j */
            same_as_one &= d.indices[i] == one.indices[15 * (i / 5) + 5 * rank + i % 5];
        /* the last batch: position 45 + rank, rank 2's wraps to the first */
        same_as_one &= d.indices[15] == one.indices[(45 + rank) % 47];
        for (int i = 0; i < d.n; i++)
            owner[d.indices[i]] = rank;
        total += d.n;
        free(d.views);
        hallu_loader_destroy(ld);
        /* drop_last: the 3 full global batches only, on every rank */
        cfg.drop_last = 1;
        CHECK_OK(hallu_loader_create(&ld, &src, &cfg, &err), &err);
        CHECK(ld && hallu_loader_batches_per_epoch(ld) == 3 && hallu_loader_samples_per_epoch(ld) == 15);
        hallu_loader_destroy(ld);
    }
    free(one.views);
    CHECK(same_as_one);
    CHECK(total == 48);
    int covered = 1;
    for (int i = 0; i < 47; i++)
        covered &= owner[i] >= 0;
    CHECK(covered);
}

static void test_errors(void)
{
    hallu_error err;
    fake_source fs = {13};
    hallu_source src = fake(&fs, 30);
    hallu_loader_config cfg;
    plain_config(&cfg, 8);
    cfg.shuffle = 0;
    hallu_loader *ld;
    CHECK_OK(hallu_loader_create(&ld, &src, &cfg, &err), &err);
    if (!ld)
        return;
    const hallu_batch *b;
    CHECK(hallu_loader_next(ld, &b, &err) == HALLU_ERR_INVALID_ARG); /* no epoch yet */
    CHECK_OK(hallu_loader_start_epoch(ld, 0, &err), &err);
    CHECK_OK(hallu_loader_next(ld, &b, &err), &err);
    CHECK(b && b->n == 8);
    hallu_status st = hallu_loader_next(ld, &b, &err); /* batch 1 holds index 13 */
    CHECK(st == HALLU_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "corrupt image 13") && strstr(err.msg, "image 13"), "%s", err.msg);
    CHECK_OK(hallu_loader_next(ld, &b, &err), &err); /* later batches still come */
    CHECK(b && b->step == 2);
    /* Restart mid-epoch: the new epoch starts from batch 0 again. */
    CHECK_OK(hallu_loader_start_epoch(ld, 1, &err), &err);
    CHECK_OK(hallu_loader_next(ld, &b, &err), &err);
    CHECK(b && b->step == 0);
    hallu_loader_destroy(ld);

    cfg.skip_bad = 1;
    CHECK_OK(hallu_loader_create(&ld, &src, &cfg, &err), &err);
    if (!ld)
        return;
    epoch_dump d;
    run_epoch(ld, 0, &d);
    CHECK(d.n == 29 && hallu_loader_skipped(ld) == 1);
    int has13 = 0, ordered = 1;
    for (int i = 0; i < d.n; i++) {
        has13 |= d.indices[i] == 13;
        ordered &= i == 0 || d.indices[i] > d.indices[i - 1];
    }
    CHECK(!has13 && ordered);
    free(d.views);
    hallu_loader_destroy(ld);
}

static void test_bad_config(void)
{
    hallu_error err;
    fake_source fs = {-1};
    hallu_source src = fake(&fs, 10);
    hallu_loader_config cfg;
    plain_config(&cfg, 4);
    hallu_loader *ld = NULL;
    cfg.rank = 2;
    cfg.world_size = 2;
    CHECK(hallu_loader_create(&ld, &src, &cfg, &err) == HALLU_ERR_INVALID_ARG && !ld);
    CHECK(strstr(err.msg, "rank") != NULL);
    plain_config(&cfg, 0);
    CHECK(hallu_loader_create(&ld, &src, &cfg, &err) == HALLU_ERR_INVALID_ARG);
    plain_config(&cfg, 4);
    cfg.n_views = 0;
    CHECK(hallu_loader_create(&ld, &src, &cfg, &err) == HALLU_ERR_INVALID_ARG);
    /* Views of different sizes cannot share a batch. */
    plain_config(&cfg, 4);
    cfg.n_views = 2;
    hallu_view_pipeline_init(&cfg.views[1], HALLU_CIFAR_MEAN, HALLU_CIFAR_STD);
    CHECK_OK(hallu_view_pipeline_add(&cfg.views[1], hallu_aug_op_rrc(8, 0.2f, 1.0f), &err), &err);
    CHECK(hallu_loader_create(&ld, &src, &cfg, &err) == HALLU_ERR_INVALID_ARG);
    src.size = 0;
    plain_config(&cfg, 4);
    CHECK(hallu_loader_create(&ld, &src, &cfg, &err) == HALLU_ERR_INVALID_ARG);
    hallu_loader_destroy(NULL);
}

int main(void)
{
    test_thread_independence();
    test_shuffle_and_content();
    test_sharding();
    test_errors();
    test_bad_config();
    test_u8_views();
    return check_summary();
}
