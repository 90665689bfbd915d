/* libFuzzer target: the packed-file header/layout parser on arbitrary bytes.
 * When the first byte is odd, the harness first repairs the checksums of the
 * remaining bytes (where the header's offsets allow), so the fuzzer reaches
 * the layout, names and label checks behind them. Any input must open (then
 * every image reads back) or fail with HALLU_ERR_FORMAT. */
#include "data/dataset_internal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int k = 7; k >= 0; k--)
        v = v << 8 | p[k];
    return v;
}

static void wr64(uint8_t *p, uint64_t v)
{
    for (int k = 0; k < 8; k++)
        p[k] = (uint8_t)(v >> (8 * k));
}

static int in_file(uint64_t off, uint64_t len, size_t size)
{
    return off <= size && len <= size - off;
}

static void repair(uint8_t *b, size_t size)
{
    if (size < HALLU_PACKED_HEADER_BYTES)
        return;
    uint64_t count = rd64(b + 16), h = b[24] | b[25] << 8, w = b[28] | b[29] << 8;
    uint64_t names = rd64(b + 40), nbytes = rd64(b + 48), pix = rd64(b + 56), lab = rd64(b + 64);
    uint64_t image = h * w * 3;
    if (count < (1u << 20) && in_file(names, nbytes, size) && in_file(lab, 4 * count, size)) {
        uint64_t m = hallu_fnv1a64(HALLU_FNV_OFFSET, b + names, nbytes);
        wr64(b + 88, hallu_fnv1a64(m, b + lab, 4 * count));
    }
    if (count < (1u << 20) && image < (1u << 20) && in_file(pix, count * image, size))
        wr64(b + 80, hallu_fnv1a64(HALLU_FNV_OFFSET, b + pix, count * image));
    wr64(b + 120, hallu_fnv1a64(HALLU_FNV_OFFSET, b, 120));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t *copy = malloc(size);
    memcpy(copy, data + 1, size - 1);
    if (data[0] & 1)
        repair(copy, size - 1);
    data_buffer buf = { copy, size - 1, "fuzz.hpk" };
    hallu_dataset *ds;
    hallu_error err;
    hallu_status st = packed_open_buffer(&ds, &buf, HALLU_SPLIT_TRAIN, false, true, &err);
    if (st != HALLU_OK) {
        if (st != HALLU_ERR_FORMAT && st != HALLU_ERR_OOM)
            abort();
        free(copy);
        return 0;
    }
    size_t cap = hallu_dataset_max_image_bytes(ds);
    uint8_t *px = malloc(cap);
    for (int64_t i = 0; i < hallu_dataset_size(ds); i++) {
        hallu_image img = { px, 0, 0, cap };
        int32_t label;
        if (hallu_dataset_get(ds, i, &img, &label, &err) != HALLU_OK || label < -1 ||
            label >= hallu_dataset_num_classes(ds))
            abort();
        for (int c = 0; c < hallu_dataset_num_classes(ds); c++)
            if (!hallu_dataset_class_name(ds, c) || !hallu_dataset_class_name(ds, c)[0])
                abort();
    }
    free(px);
    hallu_dataset_close(ds);
    free(copy);
    return 0;
}
