/* libFuzzer target: the STL-10 reader on arbitrary bytes laid out as
 * [u16 little-endian y length][y bytes][X bytes]; a y length of 0xffff means
 * unlabeled (no y file). Any input must open (then every image and label reads
 * back) or fail with HALLU_ERR_FORMAT. */
#include "data/dataset_internal.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t ylen = (size_t)data[0] | (size_t)data[1] << 8;
    bool unlabeled = ylen == 0xffff;
    if (unlabeled)
        ylen = 0;
    if (ylen > size - 2)
        ylen = size - 2;
    data_buffer y = { data + 2, ylen, "y.bin" };
    data_buffer x = { data + 2 + ylen, size - 2 - ylen, "x.bin" };
    hallu_dataset *ds;
    hallu_error err;
    hallu_status st = stl10_open_buffers(&ds, &x, unlabeled ? NULL : &y, &err);
    if (st != HALLU_OK) {
        if (st != HALLU_ERR_FORMAT && st != HALLU_ERR_OOM)
            abort();
        return 0;
    }
    static uint8_t px[96 * 96 * 3];
    for (int64_t i = 0; i < hallu_dataset_size(ds); i++) {
        hallu_image img = { px, 0, 0, sizeof px };
        int32_t label;
        if (hallu_dataset_get(ds, i, &img, &label, &err) != HALLU_OK || label < -1 || label > 9)
            abort();
    }
    hallu_dataset_close(ds);
    return 0;
}
