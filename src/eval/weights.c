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

/* Non-strict loading skips what is absent; only the BN batch counter may be. */
static hallu_status check_complete(const hallu_params *ps, const hallu_safetensors *st, const char *prefix,
                                   const char *path, hallu_error *err)
{
    int total = ps->num_trainable + ps->num_state;
    for (int i = 0; i < total; i++) {
        const hallu_tensor_info *t = i < ps->num_trainable ? &ps->trainable[i] : &ps->state[i - ps->num_trainable];
        if (t->flags & HALLU_TENSOR_COUNTER)
            continue;
        char name[HALLU_NAME_MAX + 32];
        snprintf(name, sizeof name, "%s%s", prefix, t->name);
        if (!hallu_safetensors_find(st, name))
            return hallu_error_set(err, HALLU_ERR_FORMAT, "%s: missing tensor '%s' (weights of another "
                                   "architecture?)", path, name);
    }
    return HALLU_OK;
}

hallu_status hallu_eval_load_weights(const char *path, const char *arch, const char *stem,
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
        s = hallu_params_alloc(ps, err);
    if (s == HALLU_OK)
        s = check_complete(ps, &st, prefix, path, err);
    if (s == HALLU_OK)
        s = hallu_params_load(ps, &st, NULL, prefix, 0, err);
    hallu_safetensors_close(&st);
    return s;
}
