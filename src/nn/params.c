#include "hallu/params.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void hallu_params_init(hallu_params *ps) { memset(ps, 0, sizeof *ps); }

void hallu_params_free(hallu_params *ps)
{
    free(ps->trainable);
    free(ps->state);
    hallu_buffer_free(&ps->param_buf);
    hallu_buffer_free(&ps->grad_buf);
    hallu_buffer_free(&ps->buffer_buf);
    hallu_free(ps->host_param);
    hallu_free(ps->host_buffer);
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
    if (ps->be) {
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

hallu_status hallu_params_alloc(hallu_params *ps, hallu_backend *be, hallu_error *err)
{
    if (ps->be)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "params: allocated twice");
    hallu_status s = hallu_buffer_alloc(&ps->param_buf, be, HALLU_DTYPE_F32, ps->trainable_numel, "parameters", err);
    if (s == HALLU_OK)
        s = hallu_buffer_alloc(&ps->grad_buf, be, HALLU_DTYPE_F32, ps->trainable_numel, "gradients", err);
    if (s == HALLU_OK)
        s = hallu_buffer_alloc(&ps->buffer_buf, be, HALLU_DTYPE_F32, ps->state_numel, "state buffers", err);
    if (s != HALLU_OK) {
        hallu_buffer_free(&ps->param_buf);
        hallu_buffer_free(&ps->grad_buf);
        return s;
    }
    ps->be = be;
    ps->param = hallu_buffer_f32(&ps->param_buf);
    ps->grad = hallu_buffer_f32(&ps->grad_buf);
    ps->buffer = hallu_buffer_f32(&ps->buffer_buf);
    return HALLU_OK;
}

void hallu_params_zero_grad(hallu_params *ps)
{
    ps->be->ops->fill(ps->be, ps->grad, 0.0f, ps->trainable_numel);
}

hallu_status hallu_params_stage(hallu_params *ps, hallu_error *err)
{
    if (!ps->be)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "params: staged before hallu_params_alloc");
    if (ps->staged++ > 0)
        return HALLU_OK;
    size_t np = (size_t)ps->trainable_numel * sizeof(float), ns = (size_t)ps->state_numel * sizeof(float);
    ps->host_param = hallu_alloc(np ? np : 1, "host copy of the parameters", err);
    ps->host_buffer = ps->host_param ? hallu_alloc(ns ? ns : 1, "host copy of the state buffers", err) : NULL;
    hallu_status s = ps->host_buffer ? HALLU_OK : HALLU_ERR_OOM;
    if (s == HALLU_OK)
        s = hallu_backend_download(ps->be, ps->host_param, ps->param, np, err);
    if (s == HALLU_OK)
        s = hallu_backend_download(ps->be, ps->host_buffer, ps->buffer, ns, err);
    if (s != HALLU_OK) {
        ps->staged = 1;
        hallu_params_unstage(ps);
    }
    return s;
}

void hallu_params_unstage(hallu_params *ps)
{
    if (ps->staged <= 0 || --ps->staged > 0)
        return;
    hallu_free(ps->host_param);
    hallu_free(ps->host_buffer);
    ps->host_param = ps->host_buffer = NULL;
}

hallu_status hallu_params_commit(hallu_params *ps, hallu_error *err)
{
    if (ps->staged <= 0)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "params: commit without stage");
    hallu_status s = HALLU_OK;
    if (ps->staged == 1) {
        s = hallu_backend_upload(ps->be, ps->param, ps->host_param, (size_t)ps->trainable_numel * sizeof(float), err);
        if (s == HALLU_OK)
            s = hallu_backend_upload(ps->be, ps->buffer, ps->host_buffer, (size_t)ps->state_numel * sizeof(float), err);
    }
    hallu_params_unstage(ps);
    return s;
}

hallu_status hallu_params_download_grad(const hallu_params *ps, float *host, hallu_error *err)
{
    return hallu_backend_download(ps->be, host, ps->grad, (size_t)ps->trainable_numel * sizeof(float), err);
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
