#include "hallu/params.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void hallu_params_init(hallu_params *ps) { memset(ps, 0, sizeof *ps); }

void hallu_params_free(hallu_params *ps)
{
    free(ps->trainable);
    free(ps->state);
    hallu_free(ps->param);
    hallu_free(ps->grad);
    hallu_free(ps->buffer);
    memset(ps, 0, sizeof *ps);
}

hallu_status hallu_name_join(char *out, size_t outsize, const char *prefix, const char *name,
                             hallu_error *err)
{
    int n = (prefix && prefix[0]) ? snprintf(out, outsize, "%s.%s", prefix, name)
                                  : snprintf(out, outsize, "%s", name);
    if (n < 0 || (size_t)n >= outsize)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "tensor name '%s.%s' longer than %zu bytes",
                               prefix ? prefix : "", name, outsize - 1);
    return HALLU_OK;
}

static int64_t add_tensor(hallu_tensor_info **list, int *count, int *cap, int64_t *total,
                          const hallu_params *ps, const char *prefix, const char *name, int flags,
                          int ndim, const int64_t *shape, hallu_error *err)
{
    if (ps->param || ps->buffer) {
        hallu_error_set(err, HALLU_ERR_INVALID_ARG, "params: cannot add '%s' after allocation", name);
        return -1;
    }
    if (ndim < 0 || ndim > HALLU_MAX_DIMS) {
        hallu_error_set(err, HALLU_ERR_INVALID_ARG, "params: '%s' has %d dims (max %d)", name, ndim,
                        HALLU_MAX_DIMS);
        return -1;
    }
    if (*count == *cap) {
        int ncap = *cap ? *cap * 2 : 64;
        hallu_tensor_info *grown = realloc(*list, (size_t)ncap * sizeof **list);
        if (!grown) {
            hallu_error_set(err, HALLU_ERR_OOM, "params: out of memory growing the tensor table to %d", ncap);
            return -1;
        }
        *list = grown;
        *cap = ncap;
    }
    hallu_tensor_info *t = &(*list)[*count];
    memset(t, 0, sizeof *t);
    if (hallu_name_join(t->name, sizeof t->name, prefix, name, err) != HALLU_OK)
        return -1;
    t->ndim = ndim;
    t->numel = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] <= 0) {
            hallu_error_set(err, HALLU_ERR_INVALID_ARG, "params: '%s' dim %d is %lld", t->name, d,
                            (long long)shape[d]);
            return -1;
        }
        t->shape[d] = shape[d];
        t->numel *= shape[d];
    }
    t->flags = flags;
    /* Keep each tensor 16-float aligned so vector loops never straddle tensors. */
    t->offset = (*total + 15) / 16 * 16;
    *total = t->offset + t->numel;
    (*count)++;
    return t->offset;
}

int64_t hallu_params_add(hallu_params *ps, const char *prefix, const char *name, int flags,
                         int ndim, const int64_t *shape, hallu_error *err)
{
    return add_tensor(&ps->trainable, &ps->num_trainable, &ps->cap_trainable, &ps->trainable_numel,
                      ps, prefix, name, flags, ndim, shape, err);
}

int64_t hallu_params_add_state(hallu_params *ps, const char *prefix, const char *name, int flags,
                               int ndim, const int64_t *shape, hallu_error *err)
{
    return add_tensor(&ps->state, &ps->num_state, &ps->cap_state, &ps->state_numel,
                      ps, prefix, name, flags, ndim, shape, err);
}

hallu_status hallu_params_alloc(hallu_params *ps, hallu_error *err)
{
    size_t np = (size_t)ps->trainable_numel * sizeof(float);
    size_t ns = (size_t)ps->state_numel * sizeof(float);
    ps->param = hallu_calloc(np, "parameters", err);
    ps->grad = ps->param ? hallu_calloc(np, "gradients", err) : NULL;
    ps->buffer = ps->grad ? hallu_calloc(ns, "state buffers", err) : NULL;
    if (!ps->buffer) {
        hallu_free(ps->param);
        hallu_free(ps->grad);
        ps->param = ps->grad = NULL;
        return err ? err->code : HALLU_ERR_OOM;
    }
    return HALLU_OK;
}

void hallu_params_zero_grad(hallu_params *ps)
{
    memset(ps->grad, 0, (size_t)ps->trainable_numel * sizeof(float));
}

const hallu_tensor_info *hallu_params_find(const hallu_params *ps, const char *name, int *is_state)
{
    for (int i = 0; i < ps->num_trainable; i++)
        if (strcmp(ps->trainable[i].name, name) == 0) {
            if (is_state)
                *is_state = 0;
            return &ps->trainable[i];
        }
    for (int i = 0; i < ps->num_state; i++)
        if (strcmp(ps->state[i].name, name) == 0) {
            if (is_state)
                *is_state = 1;
            return &ps->state[i];
        }
    return NULL;
}
