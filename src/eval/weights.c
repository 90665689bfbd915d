/* Backbone weights from a torchvision-named safetensors file. */
#include "hallu/eval.h"
#include "hallu/params.h"

#include <stdio.h>
#include <string.h>

static const char *find_prefix(const hallu_safetensors *st)
{
    static const char *const prefixes[] = { "", "encoder.", "model.encoder." };
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "%sconv1.weight", prefixes[i]);
        if (hallu_safetensors_find(st, name))
            return prefixes[i];
    }
    return NULL;
}

hallu_status hallu_eval_load_weights(const char *path, const char *arch, const char *stem, hallu_backend *be,
                                     hallu_resnet_config *cfg, hallu_params *ps, hallu_resnet **net,
                                     hallu_error *err)
{
    *net = NULL;
    hallu_safetensors st;
    memset(&st, 0, sizeof st);
    hallu_status s = hallu_resnet_parse_arch(arch, stem, cfg, err);
    if (s == HALLU_OK)
        s = hallu_safetensors_open(&st, path, err);
    const char *prefix = s == HALLU_OK ? find_prefix(&st) : NULL;
    if (s == HALLU_OK && !prefix)
        s = hallu_error_set(err, HALLU_ERR_FORMAT, "%s: no conv1.weight (nor encoder.conv1.weight): not ResNet "
                            "backbone weights", path);
    if (s == HALLU_OK)
        s = hallu_resnet_create(net, cfg, ps, "", err);
    if (s == HALLU_OK)
        s = hallu_params_alloc(ps, be, err);
    /* Other tensors (a classifier's fc.*, heads) are skipped; every backbone
     * tensor must be there with its shape (num_batches_tracked may be missing). */
    char target[96];
    snprintf(target, sizeof target, "--arch %s --stem %s", arch ? arch : "?", stem ? stem : "?");
    hallu_params_fit fit = { .add = prefix, .allow_extra = 1, .what = path, .target = target };
    if (s == HALLU_OK)
        s = hallu_params_load_fit(ps, &st, &fit, err);
    hallu_safetensors_close(&st);
    return s;
}
