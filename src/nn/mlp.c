#include "hallu/nn.h"

#include <stdio.h>
#include <string.h>

hallu_status hallu_mlp_init(hallu_mlp *m, hallu_params *ps, const char *prefix, int in,
                            const hallu_mlp_layer_spec *layers, int num_layers, hallu_error *err)
{
    memset(m, 0, sizeof *m);
    if (num_layers <= 0 || num_layers > HALLU_MLP_MAX_LAYERS || in <= 0)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "mlp '%s': %d layers (1..%d), in=%d", prefix,
                               num_layers, HALLU_MLP_MAX_LAYERS, in);
    m->num_layers = num_layers;
    m->in = in;
    int width = in;
    for (int i = 0; i < num_layers; i++) {
        char name[HALLU_NAME_MAX];
        char index[16];
        snprintf(index, sizeof index, "%d", i);
        hallu_status s = hallu_name_join(name, sizeof name, prefix, index, err);
        if (s != HALLU_OK)
            return s;
        m->kind[i] = layers[i].kind;
        if (layers[i].kind == HALLU_MLP_LINEAR) {
            s = hallu_linear_init(&m->linear[i], ps, name, width, layers[i].out, layers[i].bias, err);
            width = layers[i].out;
        } else if (layers[i].kind == HALLU_MLP_BN) {
            s = hallu_batchnorm_init(&m->bn[i], ps, name, width, layers[i].affine, err);
        }
        if (s != HALLU_OK)
            return s;
        m->width[i] = width;
    }
    m->out = width;
    return HALLU_OK;
}

static int mlp_max_width(const hallu_mlp *m)
{
    int w = m->in;
    for (int i = 0; i < m->num_layers; i++)
        w = m->width[i] > w ? m->width[i] : w;
    return w;
}

hallu_status hallu_mlp_plan(hallu_mlp *m, hallu_backend *be, int max_rows, int num_instances,
                            hallu_error *err)
{
    if (max_rows <= 0 || num_instances <= 0 || num_instances > HALLU_MAX_INSTANCES)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "mlp plan: rows=%d instances=%d (max %d)", max_rows,
                               num_instances, HALLU_MAX_INSTANCES);
    m->max_rows = max_rows;
    for (int i = 0; i < m->num_layers; i++)
        if (m->kind[i] == HALLU_MLP_BN) {
            hallu_status s = hallu_batchnorm_plan(&m->bn[i], be, num_instances, err);
            if (s != HALLU_OK)
                return s;
        }
    for (int t = 0; t < num_instances; t++)
        for (int i = 0; i < m->num_layers; i++) {
            m->act[t][i] = be->ops->alloc(be, (size_t)max_rows * m->width[i] * sizeof(float), "mlp activation", err);
            if (!m->act[t][i])
                return err->code;
        }
    for (int k = 0; k < 2; k++) {
        m->scratch[k] = be->ops->alloc(be, (size_t)max_rows * mlp_max_width(m) * sizeof(float), "mlp gradient", err);
        if (!m->scratch[k])
            return err->code;
    }
    return HALLU_OK;
}

void hallu_mlp_free(hallu_mlp *m, hallu_backend *be)
{
    for (int t = 0; t < HALLU_MAX_INSTANCES; t++)
        for (int i = 0; i < m->num_layers; i++)
            if (m->act[t][i])
                be->ops->release(be, m->act[t][i]);
    for (int k = 0; k < 2; k++)
        if (m->scratch[k])
            be->ops->release(be, m->scratch[k]);
    for (int i = 0; i < m->num_layers; i++)
        if (m->kind[i] == HALLU_MLP_BN)
            hallu_batchnorm_free(&m->bn[i]);
    memset(m, 0, sizeof *m);
}

void hallu_mlp_init_default(hallu_mlp *m, hallu_params *ps, uint64_t seed, uint64_t stream)
{
    for (int i = 0; i < m->num_layers; i++) {
        if (m->kind[i] == HALLU_MLP_LINEAR)
            hallu_linear_init_default(&m->linear[i], ps, seed, stream * 64 + (uint64_t)i);
        else if (m->kind[i] == HALLU_MLP_BN)
            hallu_batchnorm_reset(&m->bn[i], ps, 1.0f);
    }
}

const float *hallu_mlp_forward(hallu_mlp *m, const hallu_nn_ctx *ctx, int inst, const float *x, int rows)
{
    m->input[inst] = x;
    m->rows[inst] = rows;
    const float *cur = x;
    for (int i = 0; i < m->num_layers; i++) {
        float *y = m->act[inst][i];
        switch (m->kind[i]) {
        case HALLU_MLP_LINEAR: hallu_linear_forward(&m->linear[i], ctx, y, cur, rows); break;
        case HALLU_MLP_BN: hallu_batchnorm_forward(&m->bn[i], ctx, inst, y, cur, rows); break;
        case HALLU_MLP_RELU: ctx->be->ops->relu_forward(ctx->be, y, cur, (int64_t)rows * m->width[i]); break;
        }
        cur = y;
    }
    return cur;
}

void hallu_mlp_backward(hallu_mlp *m, const hallu_nn_ctx *ctx, int inst, float *dx, const float *dy)
{
    int rows = m->rows[inst];
    const float *g = dy;
    int pp = 0;
    for (int i = m->num_layers - 1; i >= 0; i--) {
        const float *x = i == 0 ? m->input[inst] : m->act[inst][i - 1];
        float *dst = (i == 0 && dx) ? dx : m->scratch[pp];
        switch (m->kind[i]) {
        case HALLU_MLP_LINEAR:
            hallu_linear_backward(&m->linear[i], ctx, i == 0 ? dx : dst, g, x, rows);
            break;
        case HALLU_MLP_BN:
            hallu_batchnorm_backward(&m->bn[i], ctx, inst, dst, g, x, rows);
            break;
        case HALLU_MLP_RELU:
            if (i > 0 || dx)
                ctx->be->ops->relu_backward(ctx->be, dst, g, m->act[inst][i], (int64_t)rows * m->width[i]);
            break;
        }
        g = dst;
        pp ^= 1;
    }
}
