/* Data-pipeline throughput: METHOD.md's two-view CIFAR SSL augmentation
 * (ContrastiveCrop + RRC, flip, jitter p0.8, grey p0.2, normalise) through the
 * threaded loader, (1) from decoded images held in memory (the packed-cache
 * path), (2) from a packed file written by hallu_packed_write (memory-mapped
 * uint8, the packed-cache reader) and (3) decoding JPEGs from an ImageFolder.
 * Prints "RESULT <name> <images/s>" lines for bench/run_data_bench.sh.
 * --size S sets the views' side (32: CIFAR; 224 with --asymmetric 1: the
 * ImageNet-scale two views with BYOL's blur/solarize, what a GPU pre-training
 * run at 224 asks of the loader).
 * Usage: bench_data [--folder DIR [--pack FILE]] [--n N] [--workers W] [--batch B] [--epochs E]
 *                   [--size S] [--asymmetric 0|1] */
#include "hallu/loader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct mem_images {
    uint8_t *pixels;  /* [n][h][w][3] */
    int32_t *labels;
    int64_t n;
    int h, w;
} mem_images;

static hallu_status mem_get(void *ctx, int64_t i, hallu_image *img, int32_t *label,
                            hallu_error *err)
{
    const mem_images *m = ctx;
    size_t bytes = (size_t)m->h * m->w * 3;
    img->h = m->h;
    img->w = m->w;
    if (img->capacity < bytes)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "mem source: buffer too small");
    memcpy(img->data, m->pixels + (size_t)i * bytes, bytes);
    *label = m->labels[i];
    return HALLU_OK;
}

typedef struct bench_args {
    const char *folder, *pack;
    int64_t n;
    int workers, batch, epochs, size, asymmetric;
} bench_args;

static int parse_args(int argc, char **argv, bench_args *a)
{
    *a = (bench_args){NULL, NULL, 20000, 2, 256, 1, 32, 0};
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--folder"))
            a->folder = argv[i + 1];
        else if (!strcmp(argv[i], "--pack"))
            a->pack = argv[i + 1];
        else if (!strcmp(argv[i], "--n"))
            a->n = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--workers"))
            a->workers = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch"))
            a->batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--epochs"))
            a->epochs = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--size"))
            a->size = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--asymmetric"))
            a->asymmetric = atoi(argv[i + 1]);
        else
            return 0;
    }
    return a->n > 0 && a->workers > 0 && a->batch > 0 && a->epochs > 0 && a->size >= 8 && a->size <= 1024 &&
           (a->asymmetric == 0 || a->asymmetric == 1);
}

/* Decodes the first n images of the folder into memory (what a packed cache holds;
 * they must share the first one's size), or makes random 32x32 images when there
 * is no folder. */
static hallu_status load_memory(const bench_args *a, hallu_dataset *ds, mem_images *m,
                                hallu_error *err)
{
    m->h = m->w = 32;
    if (ds) {
        m->n = hallu_dataset_size(ds) < a->n ? hallu_dataset_size(ds) : a->n;
        m->h = hallu_dataset_image_height(ds);
        m->w = hallu_dataset_image_width(ds);
        if (!m->h || !m->w) {   /* a folder of JPEGs: its first image tells (all must share it) */
            size_t cap = (size_t)8192 * 8192 * 3;
            hallu_image probe = {malloc(cap), 0, 0, cap};
            int32_t label;
            hallu_status st = probe.data ? hallu_dataset_get(ds, 0, &probe, &label, err)
                                         : hallu_error_set(err, HALLU_ERR_OOM, "bench: probe image buffer");
            free(probe.data);
            if (st != HALLU_OK)
                return st;
            m->h = probe.h;
            m->w = probe.w;
        }
    } else {
        m->n = a->n;
    }
    size_t bytes = (size_t)m->h * m->w * 3;
    m->pixels = malloc(bytes * (size_t)m->n);
    m->labels = malloc(sizeof(int32_t) * (size_t)m->n);
    if (!m->pixels || !m->labels)
        return hallu_error_set(err, HALLU_ERR_OOM, "bench: %lld images in memory", (long long)m->n);
    hallu_rng rng;
    hallu_rng_init(&rng, 7, 0);
    for (int64_t i = 0; i < m->n; i++) {
        hallu_image img = {m->pixels + (size_t)i * bytes, m->h, m->w, bytes};
        if (!ds) {
            for (size_t k = 0; k < bytes; k++)
                img.data[k] = (uint8_t)hallu_rng_u32(&rng);
            m->labels[i] = (int32_t)(i % 10);
            continue;
        }
        hallu_status st = hallu_dataset_get(ds, i, &img, &m->labels[i], err);
        if (st != HALLU_OK)
            return st;
    }
    return HALLU_OK;
}

static hallu_status run(const char *name, const hallu_source *src, const bench_args *a,
                        hallu_error *err)
{
    hallu_loader_config cfg;
    hallu_loader_config_default(&cfg);
    cfg.batch_size = a->batch;
    cfg.num_workers = a->workers;
    cfg.seed = 1;
    cfg.n_views = 2;
    hallu_ssl_views_config vc;
    hallu_ssl_views_default(&vc, a->size);
    if (a->asymmetric)
        hallu_ssl_views_set_asymmetric(&vc);
    hallu_status st = hallu_ssl_views_build(&vc, cfg.views, err);
    hallu_loader *ld = NULL;
    if (st == HALLU_OK)
        st = hallu_loader_create(&ld, src, &cfg, err);
    if (st != HALLU_OK)
        return st;
    int64_t images = 0;
    double checksum = 0.0, t0 = hallu_now();
    for (int e = 0; e < a->epochs && st == HALLU_OK; e++) {
        st = hallu_loader_start_epoch(ld, (uint32_t)e, err);
        const hallu_batch *b;
        while (st == HALLU_OK && (st = hallu_loader_next(ld, &b, err)) == HALLU_OK && b) {
            images += b->n;
            checksum += b->views[0][0] + b->views[1][0];
        }
    }
    double dt = hallu_now() - t0;
    if (st == HALLU_OK) {
        printf("%s: %lld images x 2 views in %.3f s (consumer waited %.3f s, checksum %.3f)\n",
               name, (long long)images, dt, hallu_loader_wait_seconds(ld), checksum);
        printf("RESULT %s %.1f\n", name, images / dt);
    }
    hallu_loader_destroy(ld);
    return st;
}

/* Packs the folder once (reused by later runs), then reads it back memory-mapped. */
static hallu_status run_packed(const hallu_dataset *folder, const bench_args *a, int64_t n,
                               hallu_error *err)
{
    hallu_status st = HALLU_OK;
    FILE *f = fopen(a->pack, "rb");
    if (f) {
        fclose(f);
    } else {
        hallu_pack_options opt = {0};
        double t0 = hallu_now();
        st = hallu_packed_write(folder, HALLU_SPLIT_TRAIN, a->pack, &opt, NULL, err);
        if (st == HALLU_OK)
            printf("packed %s in %.1f s\n", a->pack, hallu_now() - t0);
    }
    hallu_dataset *pk = NULL;
    if (st == HALLU_OK)
        st = hallu_packed_open(&pk, a->pack, 0, err);
    if (st == HALLU_OK) {
        hallu_source src;
        hallu_source_from_dataset(&src, pk);
        src.size = n < src.size ? n : src.size;
        st = run("hallu_packed", &src, a, err);
    }
    hallu_dataset_close(pk);
    return st;
}

int main(int argc, char **argv)
{
    bench_args a;
    if (!parse_args(argc, argv, &a)) {
        fprintf(stderr, "usage: bench_data [--folder DIR [--pack FILE]] [--n N] [--workers W] [--batch B] [--epochs E] "
                        "[--size S (8..1024)] [--asymmetric 0|1]\n");
        return 2;
    }
    hallu_error err;
    hallu_error_clear(&err);
    hallu_dataset *ds = NULL;
    char spec[4096];
    snprintf(spec, sizeof spec, "imagefolder:%s", a.folder ? a.folder : "");
    hallu_status st = a.folder ? hallu_dataset_open(&ds, spec, HALLU_SPLIT_TRAIN, &err) : HALLU_OK;
    mem_images m = {0};
    if (st == HALLU_OK)
        st = load_memory(&a, ds, &m, &err);
    hallu_source src = {&m, mem_get, m.n, m.h, m.w, (size_t)m.h * m.w * 3};
    printf("bench_data: %d workers, batch %d, %lld images (%s), views %dx%d%s\n", a.workers, a.batch,
           (long long)m.n, ds ? "decoded from the folder" : "random pixels", a.size, a.size,
           a.asymmetric ? " with blur/solarize" : "");
    if (st == HALLU_OK)
        st = run("hallu_memory", &src, &a, &err);
    if (st == HALLU_OK && ds && a.pack)
        st = run_packed(ds, &a, m.n, &err);
    if (st == HALLU_OK && ds) {
        hallu_source_from_dataset(&src, ds);
        src.size = m.n; /* same images as the memory run */
        st = run("hallu_jpeg_folder", &src, &a, &err);
    }
    free(m.pixels);
    free(m.labels);
    hallu_dataset_close(ds);
    if (st != HALLU_OK) {
        fprintf(stderr, "bench_data: %s\n", err.msg);
        return 1;
    }
    return 0;
}
