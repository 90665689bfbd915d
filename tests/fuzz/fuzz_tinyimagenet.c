/* libFuzzer target: Tiny ImageNet's val_annotations.txt parser on arbitrary
 * text, against a fixed sorted wnid list. Must parse (every label in range,
 * every file a plain name) or fail with HALLU_ERR_FORMAT. */
#include "data/dataset_internal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char w0[] = "n01443537", w1[] = "n01629819", w2[] = "n12267677";
    char *wnids[] = { w0, w1, w2 };
    char **files;
    int32_t *labels;
    int64_t n;
    hallu_error err;
    hallu_status st = tinyimagenet_parse_annotations((const char *)data, size, "fuzz.txt", wnids,
                                                     3, &files, &labels, &n, &err);
    if (st != HALLU_OK) {
        if (st != HALLU_ERR_FORMAT && st != HALLU_ERR_OOM)
            abort();
        return 0;
    }
    for (int64_t i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] > 2 || !files[i][0] || strchr(files[i], '/'))
            abort();
    free_strings(files, n);
    free(labels);
    return 0;
}
