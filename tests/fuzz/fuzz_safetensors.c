/* libFuzzer target: the safetensors reader on arbitrary bytes. Any input must
 * either parse (then every tensor lies inside the buffer) or fail with
 * HALLU_ERR_FORMAT; a crash, leak or sanitizer report is a bug. */
#include "hallu/io.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hallu_safetensors st;
    hallu_error err;
    hallu_status s = hallu_safetensors_parse(&st, data, size, "fuzz", &err);
    if (s != HALLU_OK) {
        if (s != HALLU_ERR_FORMAT && s != HALLU_ERR_OOM)
            abort();
        return 0;
    }
    const unsigned char *lo = data, *hi = data + size;
    volatile unsigned sink = 0;
    for (int i = 0; i < st.num_tensors; i++) {
        const hallu_st_tensor *t = &st.tensors[i];
        size_t n = (size_t)(t->end - t->begin);
        const unsigned char *p = t->data;
        if (n && (p < lo || p + n > hi))
            abort();
        if (n)
            sink += p[0] + p[n - 1];   /* touch both ends under ASan */
        if (hallu_safetensors_find(&st, t->name) != t)
            abort();
    }
    for (int i = 0; i < st.num_meta; i++)
        if (!hallu_safetensors_meta(&st, st.meta[i].key))
            abort();
    (void)sink;
    hallu_safetensors_close(&st);
    return 0;
}
