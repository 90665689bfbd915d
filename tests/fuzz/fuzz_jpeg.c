/* libFuzzer target: JPEG decoding (libjpeg through hallu_image_decode) on
 * arbitrary bytes. Must decode or fail with FORMAT (or INVALID_ARG when the
 * declared size exceeds the buffer); never crash, leak or read out of bounds. */
#include "hallu/data.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t px[512 * 512 * 3];
    hallu_image img = { px, 0, 0, sizeof px };
    hallu_error err;
    int h, w;
    hallu_status p = hallu_image_probe(data, size, "fuzz.jpg", &h, &w, &err);
    hallu_status st = hallu_image_decode(data, size, "fuzz.jpg", &img, &err);
    if (st != HALLU_OK && st != HALLU_ERR_FORMAT && st != HALLU_ERR_INVALID_ARG &&
        st != HALLU_ERR_OOM)
        abort();
    if (st == HALLU_OK && (p != HALLU_OK || h != img.h || w != img.w))
        abort();
    return 0;
}
