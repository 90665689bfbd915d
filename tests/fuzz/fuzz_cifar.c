/* libFuzzer target: the CIFAR-10/100 record parser on arbitrary bytes. The
 * first byte picks the variant (bit 0: CIFAR-100) and where the bytes split
 * into two files; any input must either open (then every record reads back)
 * or fail with HALLU_ERR_FORMAT. */
#include "data/dataset_internal.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int variant = data[0] & 1 ? 100 : 10;
    size_t rest = size - 1, cut = rest * (data[0] >> 1) / 127;
    cut = cut > rest ? rest : cut;
    data_buffer bufs[2] = { { data + 1, cut, "a.bin" }, { data + 1 + cut, rest - cut, "b.bin" } };
    int nbufs = cut > 0 && cut < rest ? 2 : 1;
    if (nbufs == 1)
        bufs[0] = (data_buffer){ data + 1, rest, "a.bin" };
    hallu_dataset *ds;
    hallu_error err;
    hallu_status st = cifar_open_buffers(&ds, variant, bufs, nbufs, &err);
    if (st != HALLU_OK) {
        if (st != HALLU_ERR_FORMAT && st != HALLU_ERR_OOM)
            abort();
        return 0;
    }
    uint8_t px[3072];
    for (int64_t i = 0; i < hallu_dataset_size(ds); i++) {
        hallu_image img = { px, 0, 0, sizeof px };
        int32_t label;
        char where[128];
        if (hallu_dataset_get(ds, i, &img, &label, &err) != HALLU_OK || label < 0 ||
            label >= variant)
            abort();
        hallu_dataset_describe(ds, i, where, sizeof where);
    }
    hallu_dataset_close(ds);
    return 0;
}
