/* hallu_source adapter over an open hallu_dataset (kept apart from loader.c so
 * that programs using only custom sources do not pull in the dataset readers). */
#include "hallu/loader.h"

static hallu_status dataset_get(void *ctx, int64_t index, hallu_image *img, int32_t *label,
                                hallu_error *err)
{
    return hallu_dataset_get((const hallu_dataset *)ctx, index, img, label, err);
}

void hallu_source_from_dataset(hallu_source *src, const hallu_dataset *ds)
{
    /* The dataset is read-only after open; the cast only passes it through void*. */
    src->ctx = (void *)ds;
    src->get = dataset_get;
    src->size = hallu_dataset_size(ds);
    src->image_h = hallu_dataset_image_height(ds);
    src->image_w = hallu_dataset_image_width(ds);
    src->max_image_bytes = hallu_dataset_max_image_bytes(ds);
}
