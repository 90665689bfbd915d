/* Batch loader: a pthread pool fills a ring of batch slots in chunks of a few
 * samples; the consumer takes batches strictly in order. Every sample's content
 * is a pure function of (seed, epoch, index, view), so the thread count only
 * changes speed. See include/hallu/loader.h. */
#include "hallu/loader.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CHUNK = 8 };

typedef struct slot {
    hallu_batch batch;
    int64_t batch_no;     /* batch held, -1 when free */
    int n_target;         /* samples the batch was given */
    int filled;           /* samples done (good or bad) */
    int ready;
    uint8_t *ok;          /* [batch_size] per-sample success */
    hallu_status status;  /* first failure (lowest position) when !skip_bad */
    int err_pos;
    hallu_error err;
} slot;

struct hallu_loader {
    hallu_source src;
    hallu_loader_config cfg;
    int view_h, view_w;
    pthread_t *threads;
    int n_threads;
    pthread_mutex_t mu;
    pthread_cond_t work_cv;   /* workers wait for work */
    pthread_cond_t done_cv;   /* consumer waits for batches / drained workers */
    int stop, active, holding;
    uint32_t epoch;
    uint64_t generation;
    uint32_t *order;          /* this rank's indices, in epoch order */
    int64_t n_rank, n_batches;
    int64_t last_share;       /* images per rank in the last, partial global batch (0: none) */
    int64_t claim_batch, released, next_consume;
    int claim_offset, in_flight;
    slot *slots;
    int n_slots;
    double wait_s;
    int64_t skipped;
};

typedef struct work_item {
    slot *s;
    int64_t batch_no;
    int off, cnt;
    uint32_t epoch;
    uint64_t generation;
} work_item;

/* Per-thread state: decode buffer and augmentation scratch. */
typedef struct worker_ctx {
    hallu_loader *ld;
    hallu_image img;
    hallu_aug_workspace ws;
} worker_ctx;

void hallu_loader_config_default(hallu_loader_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->batch_size = 256;
    cfg->num_workers = 2;
    cfg->prefetch = 4;
    cfg->shuffle = 1;
    cfg->drop_last = 1;
    cfg->world_size = 1;
}

static int64_t batch_len(const hallu_loader *ld, int64_t b)
{
    int64_t left = ld->n_rank - b * ld->cfg.batch_size;
    return left < ld->cfg.batch_size ? left : ld->cfg.batch_size;
}

hallu_status hallu_source_read(const hallu_source *src, int64_t index, hallu_image *img, int32_t *label,
                               hallu_error *err)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        hallu_status st = src->get(src->ctx, index, img, label, err);
        size_t need = (size_t)(img->h > 0 ? img->h : 0) * (size_t)(img->w > 0 ? img->w : 0) * 3;
        if (st != HALLU_ERR_INVALID_ARG || need <= img->capacity || need > ((size_t)1 << 30))
            return st;
        /* The source told us the size it needs: grow and retry once. */
        hallu_free(img->data);
        img->capacity = 0;
        img->data = hallu_alloc(need, "image buffer", err);
        if (!img->data)
            return HALLU_ERR_OOM;
        img->capacity = need;
    }
    return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "image %lld: the source asks for a larger buffer again",
                           (long long)index);
}

static hallu_status read_image(worker_ctx *w, int64_t index, int32_t *label, hallu_error *err)
{
    return hallu_source_read(&w->ld->src, index, &w->img, label, err);
}

static hallu_status process_sample(worker_ctx *w, const work_item *it, int pos, hallu_error *err)
{
    hallu_loader *ld = w->ld;
    hallu_batch *b = &it->s->batch;
    int64_t q = it->batch_no * ld->cfg.batch_size + pos;
    uint32_t index = ld->order[q];
    int32_t label = -1;
    hallu_status st = read_image(w, index, &label, err);
    size_t plane = (size_t)ld->view_h * ld->view_w * 3;
    for (int v = 0; st == HALLU_OK && v < ld->cfg.n_views; v++) {
        hallu_rng rng;
        hallu_aug_rng_init(&rng, ld->cfg.seed, it->epoch, index, (uint32_t)v);
        if (ld->cfg.u8_views)
            st = hallu_view_pipeline_apply_u8(&ld->cfg.views[v], &w->img, &rng, b->views_u8[v] + pos * plane,
                                              ld->view_h, ld->view_w, &w->ws, err);
        else
            st = hallu_view_pipeline_apply(&ld->cfg.views[v], &w->img, &rng, b->views[v] + pos * plane,
                                           ld->view_h, ld->view_w, &w->ws, err);
    }
    if (st != HALLU_OK)
        return hallu_error_prefix(err, st, "loader: image %u", index);
    b->labels[pos] = label;
    b->indices[pos] = index;
    return HALLU_OK;
}

/* Moves good samples down over skipped ones (skip_bad), keeping their order. */
static void compact_slot(hallu_loader *ld, slot *s)
{
    hallu_batch *b = &s->batch;
    size_t plane = (size_t)ld->view_h * ld->view_w * 3;
    int n = 0;
    for (int i = 0; i < s->n_target; i++) {
        if (!s->ok[i])
            continue;
        if (n != i) {
            for (int v = 0; v < b->n_views; v++) {
                if (b->views[v])
                    memmove(b->views[v] + n * plane, b->views[v] + i * plane, plane * sizeof(float));
                if (b->views_u8[v])
                    memmove(b->views_u8[v] + n * plane, b->views_u8[v] + i * plane, plane);
            }
            b->labels[n] = b->labels[i];
            b->indices[n] = b->indices[i];
        }
        n++;
    }
    b->n = n;
}

/* Takes the next chunk of work if the ring has room; called with mu held. */
static int claim(hallu_loader *ld, work_item *it)
{
    if (!ld->active || ld->claim_batch >= ld->n_batches ||
        ld->claim_batch >= ld->released + ld->n_slots)
        return 0;
    int64_t bno = ld->claim_batch;
    slot *s = &ld->slots[bno % ld->n_slots];
    if (ld->claim_offset == 0) {
        s->batch_no = bno;
        s->n_target = (int)batch_len(ld, bno);
        s->filled = 0;
        s->ready = 0;
        s->status = HALLU_OK;
        s->err_pos = s->n_target;
        s->batch.step = bno;
        s->batch.n = s->n_target;
    }
    it->s = s;
    it->batch_no = bno;
    it->off = ld->claim_offset;
    it->cnt = s->n_target - it->off < CHUNK ? s->n_target - it->off : CHUNK;
    it->epoch = ld->epoch;
    it->generation = ld->generation;
    ld->claim_offset += it->cnt;
    if (ld->claim_offset >= s->n_target) {
        ld->claim_batch++;
        ld->claim_offset = 0;
    }
    ld->in_flight++;
    return 1;
}

/* Runs one chunk without the lock; returns the lowest failing position or -1. */
static int run_chunk(worker_ctx *w, const work_item *it, hallu_status *st_out, hallu_error *err_out,
                     int *n_bad)
{
    int first_bad = -1;
    *n_bad = 0;
    for (int pos = it->off; pos < it->off + it->cnt; pos++) {
        hallu_error err;
        hallu_error_clear(&err);
        hallu_status st = process_sample(w, it, pos, &err);
        it->s->ok[pos] = st == HALLU_OK;
        if (st != HALLU_OK) {
            (*n_bad)++;
            if (first_bad < 0) {
                first_bad = pos;
                *st_out = st;
                *err_out = err;
            }
        }
    }
    return first_bad;
}

static void finish_chunk(worker_ctx *w, const work_item *it)
{
    hallu_loader *ld = w->ld;
    hallu_status st = HALLU_OK;
    hallu_error err;
    int n_bad;
    int bad = run_chunk(w, it, &st, &err, &n_bad);
    pthread_mutex_lock(&ld->mu);
    slot *s = it->s;
    int complete = 0;
    if (it->generation == ld->generation) {
        if (bad >= 0 && bad < s->err_pos) {
            s->err_pos = bad;
            s->status = st;
            s->err = err;
        }
        ld->skipped += ld->cfg.skip_bad ? n_bad : 0;
        s->filled += it->cnt;
        complete = s->filled == s->n_target;
    }
    if (complete && ld->cfg.skip_bad && s->status != HALLU_OK) {
        /* Still counted in in_flight, so start_epoch cannot reuse the slot meanwhile. */
        pthread_mutex_unlock(&ld->mu);
        compact_slot(ld, s);
        pthread_mutex_lock(&ld->mu);
        s->status = HALLU_OK;
    }
    if (complete)
        s->ready = 1;
    ld->in_flight--;
    pthread_cond_broadcast(&ld->done_cv);
    pthread_mutex_unlock(&ld->mu);
}

static void *worker_main(void *arg)
{
    worker_ctx *w = arg;
    hallu_loader *ld = w->ld;
    pthread_mutex_lock(&ld->mu);
    while (!ld->stop) {
        work_item it;
        if (!claim(ld, &it)) {
            pthread_cond_wait(&ld->work_cv, &ld->mu);
            continue;
        }
        pthread_mutex_unlock(&ld->mu);
        finish_chunk(w, &it);
        pthread_mutex_lock(&ld->mu);
    }
    pthread_mutex_unlock(&ld->mu);
    hallu_free(w->img.data);
    hallu_aug_workspace_free(&w->ws);
    free(w);
    return NULL;
}

static hallu_status validate_config(const hallu_source *src, const hallu_loader_config *cfg,
                                    hallu_error *err)
{
    if (!src->get || src->size <= 0 || src->size > (int64_t)UINT32_MAX)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                               "loader: source of %lld images (need 1..2^32-1 and a get function)",
                               (long long)src->size);
    if (cfg->batch_size <= 0 || cfg->num_workers <= 0 || cfg->num_workers > 256 ||
        cfg->prefetch <= 0 || cfg->prefetch > 1024)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                               "loader: batch_size %d, num_workers %d (1..256), prefetch %d "
                               "(1..1024) must be positive",
                               cfg->batch_size, cfg->num_workers, cfg->prefetch);
    if (cfg->world_size <= 0 || cfg->rank < 0 || cfg->rank >= cfg->world_size)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "loader: rank %d of world_size %d",
                               cfg->rank, cfg->world_size);
    if (cfg->n_views < 1 || cfg->n_views > HALLU_LOADER_MAX_VIEWS)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "loader: n_views %d outside 1..%d",
                               cfg->n_views, HALLU_LOADER_MAX_VIEWS);
    if (!cfg->batch_memory.alloc != !cfg->batch_memory.free)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "loader: batch_memory needs both alloc and free (or neither)");
    return HALLU_OK;
}

static hallu_status view_dims(hallu_loader *ld, hallu_error *err)
{
    for (int v = 0; v < ld->cfg.n_views; v++) {
        int h, w;
        hallu_status st = hallu_view_pipeline_output_dims(&ld->cfg.views[v], ld->src.image_h,
                                                          ld->src.image_w, &h, &w, err);
        if (st != HALLU_OK)
            return st;
        if (v > 0 && (h != ld->view_h || w != ld->view_w))
            return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                                   "loader: view %d is %dx%d but view 0 is %dx%d", v, h, w,
                                   ld->view_h, ld->view_w);
        ld->view_h = h;
        ld->view_w = w;
    }
    return HALLU_OK;
}

/* Batch view memory: the configured allocator's, else hallu_alloc's. */
static void *batch_alloc(hallu_loader *ld, size_t nbytes)
{
    hallu_error e = { 0 };
    const hallu_host_allocator *a = &ld->cfg.batch_memory;
    return a->alloc ? a->alloc(a->ctx, nbytes, "loader batch view", &e) : hallu_alloc(nbytes, "loader batch view", &e);
}

static void batch_free(hallu_loader *ld, void *p)
{
    const hallu_host_allocator *a = &ld->cfg.batch_memory;
    if (p && a->alloc)
        a->free(a->ctx, p);
    else
        hallu_free(p);
}

static hallu_status alloc_slots(hallu_loader *ld, hallu_error *err)
{
    int bs = ld->cfg.batch_size;
    size_t plane = (size_t)ld->view_h * ld->view_w * 3;
    ld->n_slots = ld->cfg.prefetch + 1; /* + the one the consumer holds */
    ld->slots = calloc((size_t)ld->n_slots, sizeof *ld->slots);
    if (!ld->slots)
        return hallu_error_set(err, HALLU_ERR_OOM, "loader: %d batch slots", ld->n_slots);
    for (int i = 0; i < ld->n_slots; i++) {
        hallu_batch *b = &ld->slots[i].batch;
        b->n_views = ld->cfg.n_views;
        b->h = ld->view_h;
        b->w = ld->view_w;
        for (int v = 0; v < ld->cfg.n_views; v++) {
            size_t nbytes = (size_t)bs * plane * (ld->cfg.u8_views ? 1 : sizeof(float));
            void *p = batch_alloc(ld, nbytes);
            if (!p)
                return hallu_error_set(err, HALLU_ERR_OOM, "loader: out of memory for a batch view of %zu bytes",
                                       nbytes);
            if (ld->cfg.u8_views)
                b->views_u8[v] = p;
            else
                b->views[v] = p;
        }
        b->labels = hallu_alloc((size_t)bs * sizeof *b->labels, "loader labels", err);
        b->indices = hallu_alloc((size_t)bs * sizeof *b->indices, "loader indices", err);
        ld->slots[i].ok = hallu_alloc((size_t)bs, "loader sample flags", err);
        if (!b->labels || !b->indices || !ld->slots[i].ok)
            return HALLU_ERR_OOM;
        ld->slots[i].batch_no = -1;
    }
    return HALLU_OK;
}

static hallu_status hallu_loader_setup_(hallu_loader *ld, hallu_error *err)
{
    hallu_status st = validate_config(&ld->src, &ld->cfg, err);
    if (st == HALLU_OK)
        st = view_dims(ld, err);
    if (st != HALLU_OK)
        return st;
    /* Global batch g is positions [g G, (g + 1) G) of the epoch order, G = world_size x batch_size;
     * rank r takes its r-th slice. A last partial global batch (drop_last off) is split evenly,
     * padded from the order's start, so every rank runs the same number of equal batches. */
    int64_t n = ld->src.size, ws = ld->cfg.world_size, bs = ld->cfg.batch_size, global = ws * bs;
    int64_t full = n / global, rest = n - full * global;
    ld->last_share = ld->cfg.drop_last || rest == 0 ? 0 : (rest + ws - 1) / ws;
    ld->n_rank = full * bs + ld->last_share;
    ld->n_batches = full + (ld->last_share > 0);
    ld->order = malloc((size_t)(ld->n_rank > 0 ? ld->n_rank : 1) * sizeof *ld->order);
    if (!ld->order)
        return hallu_error_set(err, HALLU_ERR_OOM, "loader: order of %lld indices",
                               (long long)ld->n_rank);
    return alloc_slots(ld, err);
}

hallu_status hallu_loader_start_epoch(hallu_loader *ld, uint32_t epoch, hallu_error *err)
{
    pthread_mutex_lock(&ld->mu);
    ld->generation++;
    ld->active = 0;
    while (ld->in_flight > 0)
        pthread_cond_wait(&ld->done_cv, &ld->mu);
    uint32_t n = (uint32_t)ld->src.size;
    uint32_t *perm = malloc((size_t)(n ? n : 1) * sizeof *perm);
    if (!perm) {
        pthread_mutex_unlock(&ld->mu);
        return hallu_error_set(err, HALLU_ERR_OOM, "loader: epoch %u order of %u indices", epoch, n);
    }
    if (ld->cfg.shuffle) {
        hallu_rng rng;
        hallu_rng_init(&rng, ld->cfg.seed, epoch);
        hallu_rng_permutation(&rng, perm, n);
    } else {
        for (uint32_t i = 0; i < n; i++)
            perm[i] = i;
    }
    int64_t k = 0, bs = ld->cfg.batch_size, global = bs * ld->cfg.world_size, full = (int64_t)n / global;
    for (int64_t g = 0; g < full; g++)
        for (int64_t i = 0; i < bs; i++)
            ld->order[k++] = perm[g * global + ld->cfg.rank * bs + i];
    for (int64_t i = 0; i < ld->last_share; i++)   /* padded by wrapping to the order's start */
        ld->order[k++] = perm[(full * global + ld->cfg.rank * ld->last_share + i) % (int64_t)n];
    free(perm);
    ld->epoch = epoch;
    ld->claim_batch = ld->released = ld->next_consume = 0;
    ld->claim_offset = 0;
    ld->holding = 0;
    for (int i = 0; i < ld->n_slots; i++) {
        ld->slots[i].batch_no = -1;
        ld->slots[i].ready = 0;
    }
    ld->active = 1;
    pthread_cond_broadcast(&ld->work_cv);
    pthread_mutex_unlock(&ld->mu);
    return HALLU_OK;
}

static hallu_status take_batch(hallu_loader *ld, const hallu_batch **batch, hallu_error *err)
{
    slot *s = &ld->slots[ld->next_consume % ld->n_slots];
    double t0 = hallu_now();
    while (!(s->ready && s->batch_no == ld->next_consume))
        pthread_cond_wait(&ld->done_cv, &ld->mu);
    ld->wait_s += hallu_now() - t0;
    ld->next_consume++;
    ld->holding = 1;
    if (s->status != HALLU_OK) {
        if (err)
            *err = s->err;
        return s->status;
    }
    *batch = &s->batch;
    return HALLU_OK;
}

hallu_status hallu_loader_next(hallu_loader *ld, const hallu_batch **batch, hallu_error *err)
{
    *batch = NULL;
    pthread_mutex_lock(&ld->mu);
    hallu_status st = HALLU_OK;
    for (;;) {
        if (ld->holding) {
            ld->holding = 0;
            ld->released++;
            pthread_cond_broadcast(&ld->work_cv);
        }
        if (!ld->active) {
            st = hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                                 "loader_next: no epoch started (call hallu_loader_start_epoch)");
            break;
        }
        if (ld->next_consume >= ld->n_batches)
            break;
        st = take_batch(ld, batch, err);
        if (st != HALLU_OK || (*batch)->n > 0)
            break;
        *batch = NULL; /* every image of this batch was skipped */
    }
    pthread_mutex_unlock(&ld->mu);
    return st;
}

int64_t hallu_loader_batches_per_epoch(const hallu_loader *ld)
{
    return ld->n_batches;
}

int64_t hallu_loader_samples_per_epoch(const hallu_loader *ld)
{
    return ld->n_rank;
}

double hallu_loader_wait_seconds(const hallu_loader *ld)
{
    pthread_mutex_lock((pthread_mutex_t *)&ld->mu);
    double s = ld->wait_s;
    pthread_mutex_unlock((pthread_mutex_t *)&ld->mu);
    return s;
}

int64_t hallu_loader_skipped(const hallu_loader *ld)
{
    pthread_mutex_lock((pthread_mutex_t *)&ld->mu);
    int64_t n = ld->skipped;
    pthread_mutex_unlock((pthread_mutex_t *)&ld->mu);
    return n;
}

void hallu_loader_view_dims(const hallu_loader *ld, int *h, int *w)
{
    *h = ld->view_h;
    *w = ld->view_w;
}

static void free_slots(hallu_loader *ld)
{
    for (int i = 0; ld->slots && i < ld->n_slots; i++) {
        slot *s = &ld->slots[i];
        for (int v = 0; v < HALLU_LOADER_MAX_VIEWS; v++) {
            batch_free(ld, s->batch.views[v]);
            batch_free(ld, s->batch.views_u8[v]);
        }
        hallu_free(s->batch.labels);
        hallu_free(s->batch.indices);
        hallu_free(s->ok);
    }
    free(ld->slots);
}

/* The backend's staging memory as a batch_memory allocator. */
static void *staging_alloc(void *be, size_t nbytes, const char *what, hallu_error *err)
{
    return hallu_backend_host_alloc(be, nbytes, what, err);
}

static void staging_free(void *be, void *p)
{
    hallu_backend_host_free(be, p);
}

void hallu_loader_config_for_device(hallu_loader_config *cfg, hallu_backend *be)
{
    if (be->ops->host_memory)
        return;
    cfg->u8_views = 1;
    cfg->batch_memory = (hallu_host_allocator){ be, staging_alloc, staging_free };
}

hallu_status hallu_loader_upload_view(const hallu_loader *ld, hallu_backend *be, const hallu_batch *b, int v, int off,
                                      int n, float *dst, void *bytes_dev, hallu_error *err)
{
    size_t plane = (size_t)b->h * b->w * 3, count = (size_t)n * plane;
    if (!ld->cfg.u8_views)
        return hallu_backend_upload(be, dst, b->views[v] + (size_t)off * plane, count * sizeof(float), err);
    hallu_status s = hallu_backend_upload(be, bytes_dev, b->views_u8[v] + (size_t)off * plane, count, err);
    if (s == HALLU_OK)
        be->ops->normalize_u8(be, dst, bytes_dev, (int64_t)(count / 3), ld->cfg.views[v].mean, ld->cfg.views[v].std);
    return s;
}

void hallu_loader_destroy(hallu_loader *ld)
{
    if (!ld)
        return;
    pthread_mutex_lock(&ld->mu);
    ld->stop = 1;
    pthread_cond_broadcast(&ld->work_cv);
    pthread_mutex_unlock(&ld->mu);
    for (int i = 0; i < ld->n_threads; i++)
        pthread_join(ld->threads[i], NULL);
    free(ld->threads);
    free_slots(ld);
    free(ld->order);
    pthread_mutex_destroy(&ld->mu);
    pthread_cond_destroy(&ld->work_cv);
    pthread_cond_destroy(&ld->done_cv);
    free(ld);
}

static hallu_status start_workers(hallu_loader *ld, hallu_error *err)
{
    ld->threads = calloc((size_t)ld->cfg.num_workers, sizeof *ld->threads);
    if (!ld->threads)
        return hallu_error_set(err, HALLU_ERR_OOM, "loader: %d thread handles", ld->cfg.num_workers);
    for (int i = 0; i < ld->cfg.num_workers; i++) {
        worker_ctx *w = calloc(1, sizeof *w);
        if (!w)
            return hallu_error_set(err, HALLU_ERR_OOM, "loader: worker %d state", i);
        w->ld = ld;
        hallu_aug_workspace_init(&w->ws);
        size_t cap = ld->src.max_image_bytes;
        if (cap == 0 && ld->src.image_h > 0)
            cap = (size_t)ld->src.image_h * ld->src.image_w * 3;
        if (cap > 0 && (w->img.data = hallu_alloc(cap, "loader image buffer", err)) == NULL) {
            free(w);
            return HALLU_ERR_OOM;
        }
        w->img.capacity = w->img.data ? cap : 0;
        if (pthread_create(&ld->threads[i], NULL, worker_main, w) != 0) {
            hallu_free(w->img.data);
            free(w);
            return hallu_error_set(err, HALLU_ERR_UNSUPPORTED, "loader: pthread_create for worker %d failed", i);
        }
        ld->n_threads++;
    }
    return HALLU_OK;
}

hallu_status hallu_loader_create(hallu_loader **out, const hallu_source *src,
                                 const hallu_loader_config *cfg, hallu_error *err)
{
    *out = NULL;
    hallu_loader *ld = calloc(1, sizeof *ld);
    if (!ld)
        return hallu_error_set(err, HALLU_ERR_OOM, "loader: %zu bytes of state", sizeof *ld);
    ld->src = *src;
    ld->cfg = *cfg;
    pthread_mutex_init(&ld->mu, NULL);
    pthread_cond_init(&ld->work_cv, NULL);
    pthread_cond_init(&ld->done_cv, NULL);
    hallu_status st = hallu_loader_setup_(ld, err);
    if (st == HALLU_OK)
        st = start_workers(ld, err);
    if (st != HALLU_OK) {
        hallu_loader_destroy(ld);
        return st;
    }
    *out = ld;
    return HALLU_OK;
}
