/* Per-channel statistics over a dataset (or a deterministic subsample). */
#include "data/dataset_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Decodes image i into *img, growing its buffer when the image needs more. */
static hallu_status get_growing(const hallu_dataset *ds, int64_t i, hallu_image *img,
                                hallu_error *err)
{
    int32_t label;
    hallu_status st = hallu_dataset_get(ds, i, img, &label, err);
    size_t need = (size_t)img->h * (size_t)img->w * 3;
    if (st != HALLU_ERR_INVALID_ARG || need <= img->capacity || need == 0)
        return st;
    uint8_t *grown = realloc(img->data, need);
    if (!grown)
        return hallu_error_set(err, HALLU_ERR_OOM, "stats: cannot allocate %zu bytes", need);
    img->data = grown;
    img->capacity = need;
    return hallu_dataset_get(ds, i, img, &label, err);
}

static void accumulate(const hallu_image *img, double sum[3], double sq[3])
{
    size_t n = (size_t)img->h * (size_t)img->w;
    /* Integer sums per image keep the float accumulation short and exact. */
    uint64_t s[3] = { 0, 0, 0 }, q[3] = { 0, 0, 0 };
    for (size_t p = 0; p < n; p++)
        for (int c = 0; c < 3; c++) {
            uint64_t v = img->data[p * 3 + c];
            s[c] += v;
            q[c] += v * v;
        }
    for (int c = 0; c < 3; c++) {
        sum[c] += (double)s[c];
        sq[c] += (double)q[c];
    }
}

static void note_size(hallu_dataset_stats *out, const hallu_image *img)
{
    if (out->images == 0 || img->h < out->min_h)
        out->min_h = img->h;
    if (out->images == 0 || img->w < out->min_w)
        out->min_w = img->w;
    if (img->h > out->max_h)
        out->max_h = img->h;
    if (img->w > out->max_w)
        out->max_w = img->w;
}

hallu_status hallu_dataset_compute_stats(const hallu_dataset *ds, int64_t max_images,
                                         int skip_bad, hallu_dataset_stats *out,
                                         hallu_error *err)
{
    memset(out, 0, sizeof *out);
    int64_t n = ds->size;
    int64_t m = max_images > 0 && max_images < n ? max_images : n;
    hallu_image img = { 0 };
    double sum[3] = { 0 }, sq[3] = { 0 }, pixels = 0;
    hallu_status st = HALLU_OK;
    for (int64_t k = 0; k < m && st == HALLU_OK; k++) {
        int64_t i = m == n ? k : (int64_t)((double)k * (double)n / (double)m);
        st = get_growing(ds, i, &img, err);
        if (st != HALLU_OK && skip_bad && st != HALLU_ERR_OOM) {
            out->bad++;
            st = HALLU_OK;
            continue;
        }
        if (st != HALLU_OK)
            break;
        note_size(out, &img);
        accumulate(&img, sum, sq);
        pixels += (double)img.h * img.w;
        out->images++;
    }
    free(img.data);
    if (st != HALLU_OK)
        return st;
    for (int c = 0; c < 3 && pixels > 0; c++) {
        double mean = sum[c] / pixels;
        double var = sq[c] / pixels - mean * mean;
        out->mean[c] = mean / 255.0;
        out->std[c] = sqrt(var > 0 ? var : 0) / 255.0;
    }
    return HALLU_OK;
}
