#include "train_internal.h"

/* Image j of the subset is image floor(j * size / n) of the base: evenly spaced,
 * so class-sorted folders keep every class. */
static hallu_status subset_get(void *ctx, int64_t index, hallu_image *img, int32_t *label, hallu_error *err)
{
    const train_subset *s = ctx;
    int64_t base_index = (int64_t)((__int128)index * s->base.size / s->n);
    return s->base.get(s->base.ctx, base_index, img, label, err);
}

void train_subset_init(train_subset *s, hallu_source *src, int64_t n)
{
    s->base = *src;
    if (n <= 0 || n >= src->size)
        return;
    s->n = n;
    src->ctx = s;
    src->get = subset_get;
    src->size = n;
}
