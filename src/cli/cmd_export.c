/* hallu export: a checkpoint's backbone (and optionally heads) as safetensors
 * with torchvision's names, for fine-tuning in PyTorch frameworks. */
#include "cli/args.h"
#include "cli/commands.h"
#include "hallu/checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char ENCODER[] = "model.encoder.";
static const char MODEL[] = "model.";

/* The exported name of a checkpoint tensor, or NULL when it is not exported. */
static const char *export_name(const char *name, int heads)
{
    if (strncmp(name, ENCODER, sizeof ENCODER - 1) == 0)
        return name + sizeof ENCODER - 1;
    if (heads && strncmp(name, MODEL, sizeof MODEL - 1) == 0)
        return name + sizeof MODEL - 1;
    return NULL;
}

static int export_tensors(const hallu_safetensors *st, const char *out, int heads, hallu_error *err)
{
    hallu_st_entry *entries = calloc((size_t)st->num_tensors + 1, sizeof *entries);
    if (!entries) {
        hallu_error_set(err, HALLU_ERR_OOM, "export: out of memory");
        return 0;
    }
    int n = 0;
    for (int i = 0; i < st->num_tensors; i++) {
        const hallu_st_tensor *t = &st->tensors[i];
        const char *name = export_name(t->name, heads);
        if (!name)
            continue;
        entries[n] = (hallu_st_entry){ .name = name, .dtype = t->dtype, .ndim = t->ndim, .data = t->data };
        memcpy(entries[n].shape, t->shape, sizeof t->shape);
        n++;
    }
    const char *arch = hallu_safetensors_meta(st, "arch"), *stem = hallu_safetensors_meta(st, "stem");
    hallu_st_meta meta[] = { { "format", "pt" }, { "arch", arch ? arch : "" }, { "stem", stem ? stem : "" },
                             { "source", "hallu export" } };
    hallu_status s = n > 0 ? hallu_safetensors_write(out, entries, n, meta, 4, err)
                           : hallu_error_set(err, HALLU_ERR_FORMAT, "checkpoint holds no model.encoder.* tensors");
    free(entries);
    if (s == HALLU_OK)
        printf("wrote %s: %d tensors (%s/%s%s), torchvision names\n", out, n, arch ? arch : "?", stem ? stem : "?",
               heads ? ", with heads" : "");
    return s == HALLU_OK;
}

int cmd_export(int argc, char **argv)
{
    const char *checkpoint = NULL, *out = NULL;
    int heads = 0;
    cli_arg args[] = {
        { "checkpoint", CLI_ARG_STR, &checkpoint, "checkpoint.hlu written by hallu train (required)" },
        { "out", CLI_ARG_STR, &out, "output .safetensors file (required; written atomically)" },
        { "heads", CLI_ARG_BOOL, &heads, "also export projector/predictor/hallucinator tensors (their own names)" },
    };
    cli_parse_result r = cli_parse("hallu export --checkpoint FILE --out FILE.safetensors [--heads]",
                                   "Export a checkpoint's backbone with torchvision's parameter names: "
                                   "torchvision.models.resnet18() with fc = Identity (and, for the cifar stem, "
                                   "a 3x3 conv1 and no max-pool) loads it with strict=True.",
                                   args, (int)(sizeof args / sizeof args[0]), argc, argv, NULL, 0, NULL);
    if (r != CLI_PARSE_OK)
        return r == CLI_PARSE_HELP ? 0 : 2;
    if (!checkpoint || !out) {
        fprintf(stderr, "error: --checkpoint and --out are required (see 'hallu export --help')\n");
        return 2;
    }
    hallu_error err;
    hallu_error_clear(&err);
    hallu_safetensors st;
    memset(&st, 0, sizeof st);
    if (hallu_checkpoint_open(&st, checkpoint, &err) != HALLU_OK) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    int ok = export_tensors(&st, out, heads, &err);
    if (!ok)
        fprintf(stderr, "error: %s\n", err.msg);
    hallu_safetensors_close(&st);
    return ok ? 0 : 1;
}
