/* Multi-threaded batch loader: worker threads decode images from a source, run
 * one view pipeline per view and fill a bounded ring of ready batches that the
 * consumer takes in order.
 *
 * Determinism: which images make up batch b of an epoch, and every random
 * parameter of their augmentation, depend only on (seed, epoch, rank,
 * world_size) and the image index, never on the number of threads or on
 * scheduling. Epoch order is hallu_rng_permutation(seed, stream = epoch);
 * global batch g is positions [g G, (g+1) G) of it, G = world_size x
 * batch_size, and rank r takes its r-th slice of batch_size positions, so
 * the ranks' batches of a step, concatenated in rank order, are the batch one
 * process with batch G would take. Without drop_last a last partial global
 * batch of R images gives every rank ceil(R / world_size) of them, padded by
 * wrapping to the order's start: every rank runs the same number of batches.
 * View v of image i uses hallu_aug_rng_init(seed, epoch, i, v). */
#ifndef HALLU_LOADER_H
#define HALLU_LOADER_H

#include "hallu/augment.h"
#include "hallu/backend.h"
#include "hallu/core.h"
#include "hallu/data.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Where images come from. get must be safe to call from many threads at once.
 * Like hallu_dataset_get, when img->capacity is too small it fails with
 * HALLU_ERR_INVALID_ARG and sets img->h/w; the loader then grows the buffer and
 * retries. */
typedef hallu_status (*hallu_source_get_fn)(void *ctx, int64_t index, hallu_image *img,
                                            int32_t *label, hallu_error *err);

typedef struct hallu_source {
    void *ctx;
    hallu_source_get_fn get;
    int64_t size;
    int image_h, image_w;     /* native size when fixed, else 0 */
    size_t max_image_bytes;   /* initial buffer size per worker (0: grow on demand) */
} hallu_source;

/* One image of src into *img, growing img->data (hallu_alloc; free it with
 * hallu_free) once when the source names a larger size, as the contract of
 * hallu_source_get_fn above allows. */
hallu_status hallu_source_read(const hallu_source *src, int64_t index, hallu_image *img, int32_t *label,
                               hallu_error *err);

/* Adapter: a source reading from an open dataset (which must outlive the loader). */
void hallu_source_from_dataset(hallu_source *src, const hallu_dataset *ds);

#define HALLU_LOADER_MAX_VIEWS 4

/* Where a loader's batch views live (alloc NULL: hallu_alloc / hallu_free),
 * e.g. a backend's staging memory (hallu_backend_host_alloc), from which
 * uploads run asynchronously. */
typedef struct hallu_host_allocator {
    void *ctx;
    void *(*alloc)(void *ctx, size_t nbytes, const char *what, hallu_error *err);
    void (*free)(void *ctx, void *p);
} hallu_host_allocator;

typedef struct hallu_loader_config {
    int batch_size;
    int num_workers;          /* >= 1 */
    int prefetch;             /* ready batches buffered ahead (>= 1) */
    int shuffle;              /* 0: dataset order every epoch */
    int drop_last;            /* drop the rank's last incomplete batch */
    int skip_bad;             /* 1: drop images whose decode fails and count them;
                               * 0: the first failure is returned by next() */
    uint64_t seed;
    int rank, world_size;     /* world_size >= 1, 0 <= rank < world_size */
    int n_views;              /* 1..HALLU_LOADER_MAX_VIEWS */
    hallu_view_pipeline views[HALLU_LOADER_MAX_VIEWS];
    /* 1: batches carry each view's bytes before normalisation (views_u8), for
     * a device to normalise (the backend's normalize_u8 with the view's
     * mean/std gives the bits of views[]): a quarter of the bytes to copy. */
    int u8_views;
    hallu_host_allocator batch_memory;
} hallu_loader_config;

/* batch_size 256, 2 workers, prefetch 4, shuffle, drop_last, one rank, no
 * views, float views in hallu_alloc memory. */
void hallu_loader_config_default(hallu_loader_config *cfg);

/* A ready batch; valid until the next hallu_loader_next / start_epoch / destroy. */
typedef struct hallu_batch {
    int64_t step;             /* batch number within the epoch (0-based) */
    int n;                    /* images (may be < batch_size: last batch, skipped images) */
    int n_views, h, w;
    float *views[HALLU_LOADER_MAX_VIEWS]; /* each [n][h][w][3], normalised (NULL with u8_views) */
    uint8_t *views_u8[HALLU_LOADER_MAX_VIEWS]; /* u8_views: each [n][h][w][3] bytes (else NULL) */
    int32_t *labels;          /* [n], -1 when unlabeled */
    int64_t *indices;         /* [n] source indices */
} hallu_batch;

typedef struct hallu_loader hallu_loader;

/* Validates the config and starts the worker threads (idle until start_epoch). */
hallu_status hallu_loader_create(hallu_loader **out, const hallu_source *src,
                                 const hallu_loader_config *cfg, hallu_error *err);
/* Begins epoch `epoch`: cancels what is left of the previous one, reshuffles and
 * lets the workers run ahead up to `prefetch` batches. */
hallu_status hallu_loader_start_epoch(hallu_loader *ld, uint32_t epoch, hallu_error *err);
/* Blocks until the next batch is ready. At the end of the epoch returns HALLU_OK
 * with *batch = NULL. A decode or augmentation failure is returned here with the
 * source's message and the image index (unless skip_bad). */
hallu_status hallu_loader_next(hallu_loader *ld, const hallu_batch **batch, hallu_error *err);
int64_t hallu_loader_batches_per_epoch(const hallu_loader *ld);
int64_t hallu_loader_samples_per_epoch(const hallu_loader *ld); /* this rank, before drop_last */
/* Seconds the consumer spent blocked in next() since create. */
double hallu_loader_wait_seconds(const hallu_loader *ld);
/* Images skipped because of errors since create (skip_bad only). */
int64_t hallu_loader_skipped(const hallu_loader *ld);
/* Output size of each view. */
void hallu_loader_view_dims(const hallu_loader *ld, int *h, int *w);
/* ---- batches to a device ----
 * On a backend with its own memory (not host_memory) a batch crosses as bytes
 * (u8_views, in the backend's staging memory: a quarter of the floats, and an
 * asynchronous copy on CUDA) and the device normalises it (normalize_u8, the
 * same bits); on the cpu backend the workers' float views go as they are. */
/* Sets cfg's u8_views and batch_memory for device be (before hallu_loader_create). */
void hallu_loader_config_for_device(hallu_loader_config *cfg, hallu_backend *be);
/* Images [off, off + n) of view v of b (a batch of ld) into the device floats
 * dst [n][h][w][3] of be: uploaded, or with u8_views uploaded into bytes_dev
 * (device, >= n*h*w*3 bytes) and normalised there with the view's mean/std.
 * The bytes may still be read after the call: hallu_backend_upload_wait
 * before b goes back to the loader (the next hallu_loader_next). */
hallu_status hallu_loader_upload_view(const hallu_loader *ld, hallu_backend *be, const hallu_batch *b, int v, int off,
                                      int n, float *dst, void *bytes_dev, hallu_error *err);

/* Stops and joins the workers, frees everything. NULL is fine. */
void hallu_loader_destroy(hallu_loader *ld);

#ifdef __cplusplus
}
#endif
#endif
