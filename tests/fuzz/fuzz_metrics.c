/* libFuzzer target: `hallu plot` on an arbitrary metrics.jsonl (src/eval/plot.c
 * and the JSON line reader under it, src/eval/json_line.c), in memory: any
 * input must either fail with HALLU_ERR_FORMAT (or OOM) and a message, or give
 * a complete SVG whose coordinates are all finite numbers. */
#include "eval/eval_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *svg = NULL;
    size_t len = 0;
    hallu_error err = { 0 };
    hallu_status st = eval_plot_svg((const char *)data, size, "metrics.jsonl", &svg, &len, &err);
    if (st != HALLU_OK) {
        if ((st != HALLU_ERR_FORMAT && st != HALLU_ERR_OOM) || svg || !err.msg[0])
            abort();
        return 0;
    }
    static const char head[] = "<?xml", tail[] = "</svg>\n";
    if (!svg || strlen(svg) != len || len < sizeof tail || strncmp(svg, head, 5) != 0 ||
        strcmp(svg + len - (sizeof tail - 1), tail) != 0)
        abort();
    if (strstr(svg, "nan") || strstr(svg, "inf"))
        abort();                              /* a NaN or infinite coordinate */
    free(svg);
    return 0;
}
