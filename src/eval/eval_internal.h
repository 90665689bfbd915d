/* Helpers shared by the eval module's files. */
#ifndef HALLU_EVAL_INTERNAL_H
#define HALLU_EVAL_INTERNAL_H

#include "hallu/eval.h"
#include "hallu/loader.h"

/* Every label in [0, num_classes); the error names `what` and the sample. */
hallu_status eval_check_labels(const int32_t *labels, int64_t n, int num_classes, const char *what,
                               hallu_error *err);

/* Parses one line holding a JSON object; for each of keys[0..nkeys) present
 * with a finite number value sets values[i] and present[i] = 1 (others get
 * present[i] = 0). Returns 0, or -1 when the line is not a well-formed object. */
/* Device buffers for loader batches on their way to the backbone (grown on
 * demand): the float images, and their bytes where the device normalises
 * them (hallu_loader_config_for_device). */
typedef struct eval_input {
    hallu_buffer img;      /* F32 [n][h][w][3] */
    hallu_buffer bytes;    /* U8, with u8_views */
} eval_input;

void eval_input_free(eval_input *in);
/* The frozen backbone on images [off, off + n) of b (a batch of ld): uploads
 * them (hallu_loader_upload_view) and forwards; *features ([n][feature_dim])
 * is the net's device output, valid until its next forward. Waits for the
 * upload before returning, so b may go back to the loader at once. */
hallu_status eval_forward_batch(hallu_resnet *net, const hallu_nn_ctx *ctx, eval_input *in, const hallu_loader *ld,
                                const hallu_batch *b, int off, int n, const float **features, hallu_error *err);

int eval_json_numbers(const char *line, const char *const *keys, int nkeys, double *values, int *present);

/* `hallu plot` in memory: metrics JSON lines text[0..len) (need not be
 * NUL-terminated; name stands for the file in messages) to the SVG text, a new
 * NUL-terminated buffer of *svg_len bytes (free it). hallu_plot_training reads
 * the file, calls this and writes the result atomically; the fuzz target
 * tests/fuzz/fuzz_metrics.c calls it directly. */
hallu_status eval_plot_svg(const char *text, size_t len, const char *name, char **svg, size_t *svg_len,
                           hallu_error *err);

#endif
