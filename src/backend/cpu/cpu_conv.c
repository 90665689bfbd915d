/* 2-D convolution through oneDNN. A plan holds forward-training, backward-data
 * and backward-weights primitives created once per geometry.
 *
 * Layouts: the caller's activations are NHWC. oneDNN 2.6's AVX2 kernels run
 * 3x3 convolutions ~1.3-1.6x faster on its blocked layout (nChw8c) than on NHWC,
 * which pays for reordering at the boundary, so for k > 1 the primitives pick
 * their activation layout ("any") and each call reorders in and out through two
 * buffers shared by all plans. 1x1 convolutions run on NHWC directly (equally
 * fast there). Weights are reordered from PyTorch's OIHW into the primitives'
 * layout every call (they change every step; the reorder is tiny), and the
 * weight gradient is reordered back with a sum post-op, which gives dw += .
 *
 * bf16 plans (impl->precision, issue 28): the primitives take bf16 source,
 * weights and output gradient and give fp32 output, input gradient and weight
 * gradient (fp32 accumulation, as autocast), or the output and input gradient
 * rounded to bf16 by twin primitives with a bf16 dst (conv2d_forward_y16,
 * conv2d_backward_dx16, where oneDNN takes the same weights for them); every activation stays NHWC
 * (oneDNN's AMX kernels take it), so the boundary "reorders" are the fp32 ->
 * bf16 roundings of x, dy and the weights; x's is skipped when the caller
 * passes its bf16 copy (x16). 3x3 stride-1 layers run bf16 Winograd where the
 * CPU's bf16 products are AVX512-BF16's rather than AMX's (cpu_conv_wino.c;
 * there the direct kernels are bound by the products). Otherwise the passes
 * where oneDNN 2.6's direct kernels are slow go by im2col + bf16 matmul (cpu_conv_gemm.c) on the same
 * bf16 x and dy, and the input gradient of stride-1 "same" layers goes as a
 * forward convolution of dy with the flipped, transposed weights (oneDNN 2.6's
 * AMX forward kernels are ~1.4-2x faster than its backward-data ones there). */
#include "backend/cpu/cpu_internal.h"

#include <string.h>

/* One activation boundary (input side or output side of the convolution). */
typedef struct act_port {
    dnnl_memory_t user;      /* NHWC, handle set per call */
    dnnl_memory_t prim;      /* primitive layout in impl->act[side]; NULL if NHWC */
    cpu_prim to_prim, from_prim;
    int side;
} act_port;

struct hallu_conv2d_plan {
    hallu_conv2d_geom g;
    cpu_impl *impl;
    cpu_prim fwd, bwd_data, bwd_weights;
    cpu_prim fwd16;                /* bf16 plans: fwd with a bf16 dst (conv2d_forward_y16); NULL if oneDNN wanted
                                    * other weights for it than for fwd */
    dnnl_memory_t y16;             /* its dst, NHWC bf16, handle set per call */
    act_port in, out, in_grad;     /* src, dst/diff_dst, diff_src */
    act_port out_grad;             /* bf16 plans: diff_dst (out is the fp32 dst) */
    int bf16;
    cpu_prim w_to_fwd, w_to_bwd;   /* .prim NULL when oneDNN takes OIHW as is */
    cpu_prim dw_accumulate;        /* diff weights (oneDNN layout) -> user OIHW, dst += */
    dnnl_memory_t w_user, w_fwd, w_bwd, dw_prim, dw_user;
    void *w_fwd_buf, *w_bwd_buf, *dw_buf;
    int gemm_passes;               /* CPU_GEMM_*: passes by im2col + a GEMM instead */
    cpu_conv_gemm gemm;
    /* bf16 stride-1 "same" plans: the input gradient as a forward convolution
     * of dy with the flipped, transposed weights (oneDNN 2.6's AMX forward
     * kernels run these shapes ~2x faster than its backward-data ones) */
    cpu_prim dx_fwd, w_to_dx_fwd;
    cpu_prim dx_fwd16;                /* the same with a bf16 dst (conv2d_backward_dx16); NULL if oneDNN wanted other
                                       * weights for it */
    dnnl_memory_t dx16_mem;           /* its dst, NHWC bf16, handle set per call (also bwd_data16's diff_src) */
    cpu_prim bwd_data16;              /* bf16 plans without dx_fwd: bwd_data with a bf16 diff_src; NULL if oneDNN
                                       * wanted other weights for it */
    dnnl_memory_t w_flip, w_dx_fwd;   /* fp32 [cin][cout][k][k] (plan-owned), then the primitive's layout */
    float *w_flip_buf;
    void *w_dx_fwd_buf;
    int use_wino;                  /* all three passes by Winograd, no oneDNN primitives */
    cpu_wino wino;
};

typedef struct conv_mds {
    dnnl_memory_desc_t src_user, dst_user, src_any, dst_any, w_user, w_any;
    dnnl_memory_desc_t dsrc_any, dw_any, ddst_bf16;   /* backward: diff_src, diff_weights, bf16 diff_dst */
    const dnnl_memory_desc_t *src, *dst;   /* the forward primitive's choice */
    const dnnl_memory_desc_t *ddst;        /* the backward passes' diff_dst */
} conv_mds;

#define GEOM_FMT "n=%d h=%d w=%d cin=%d cout=%d k=%d stride=%d pad=%d"
#define GEOM_ARGS(g) (g)->n, (g)->h, (g)->w, (g)->cin, (g)->cout, (g)->k, (g)->stride, (g)->pad

static hallu_status dnnl_fail(hallu_error *err, const hallu_conv2d_geom *g, const char *what,
                              dnnl_status_t st)
{
    return hallu_error_set(err, HALLU_ERR_BACKEND, "conv2d_plan_create: %s failed (oneDNN status %d) for " GEOM_FMT,
                           what, (int)st, GEOM_ARGS(g));
}

#define DNNL_TRY(call, what) do { dnnl_status_t st_ = (call); \
    if (st_ != dnnl_success) return dnnl_fail(err, &plan->g, (what), st_); } while (0)

void cpu_prim_free(cpu_prim *p)
{
    if (p->prim)
        dnnl_primitive_destroy(p->prim);
    if (p->scratch)
        dnnl_memory_destroy(p->scratch);
    p->prim = NULL;
    p->scratch = NULL;
    p->scratch_bytes = 0;
}

static void mem_free(dnnl_memory_t m)
{
    if (m)
        dnnl_memory_destroy(m);
}

static void port_free(act_port *p)
{
    mem_free(p->user);
    mem_free(p->prim);
    cpu_prim_free(&p->to_prim);
    cpu_prim_free(&p->from_prim);
}

void cpu_conv2d_plan_free(hallu_conv2d_plan *plan)
{
    if (!plan)
        return;
    cpu_prim_free(&plan->fwd);
    cpu_prim_free(&plan->fwd16);
    mem_free(plan->y16);
    cpu_prim_free(&plan->bwd_data);
    cpu_prim_free(&plan->bwd_weights);
    cpu_prim_free(&plan->w_to_fwd);
    cpu_prim_free(&plan->w_to_bwd);
    cpu_prim_free(&plan->dw_accumulate);
    cpu_prim_free(&plan->dx_fwd);
    cpu_prim_free(&plan->dx_fwd16);
    cpu_prim_free(&plan->bwd_data16);
    mem_free(plan->dx16_mem);
    cpu_prim_free(&plan->w_to_dx_fwd);
    mem_free(plan->w_flip);
    mem_free(plan->w_dx_fwd);
    hallu_free(plan->w_flip_buf);
    hallu_free(plan->w_dx_fwd_buf);
    port_free(&plan->in);
    port_free(&plan->out);
    port_free(&plan->in_grad);
    port_free(&plan->out_grad);
    mem_free(plan->w_user);
    mem_free(plan->w_fwd);
    mem_free(plan->w_bwd);
    mem_free(plan->dw_prim);
    mem_free(plan->dw_user);
    hallu_free(plan->w_fwd_buf);
    hallu_free(plan->w_bwd_buf);
    hallu_free(plan->dw_buf);
    cpu_conv_gemm_free(&plan->gemm);
    cpu_wino_free(&plan->wino);
    hallu_free(plan);
}

hallu_status cpu_prim_create(cpu_impl *impl, cpu_prim *p, dnnl_primitive_desc_t pd, dnnl_status_t *st,
                             hallu_error *err)
{
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t need = smd ? dnnl_memory_desc_get_size(smd) : 0;
    hallu_status s = cpu_shared_reserve(&impl->dnnl_scratch, &impl->dnnl_scratch_bytes, need, "oneDNN scratchpad",
                                        err);
    *st = dnnl_success;
    if (s == HALLU_OK && need > 0) {
        *st = dnnl_memory_create(&p->scratch, smd, impl->engine, DNNL_MEMORY_NONE);
        p->scratch_bytes = need;
    }
    if (s == HALLU_OK && *st == dnnl_success)
        *st = dnnl_primitive_create(&p->prim, pd);
    dnnl_primitive_desc_destroy(pd);
    return s;
}

/* cpu_prim_create for the plan, oneDNN's refusal named with its geometry. */
static hallu_status prim_create(hallu_conv2d_plan *plan, cpu_prim *p, dnnl_primitive_desc_t pd,
                                const char *what, hallu_error *err)
{
    dnnl_status_t st;
    hallu_status s = cpu_prim_create(plan->impl, p, pd, &st, err);
    if (s != HALLU_OK)
        return s;
    return st == dnnl_success ? HALLU_OK : dnnl_fail(err, &plan->g, what, st);
}

static hallu_status attr_create(dnnl_primitive_attr_t *attr, int accumulate, hallu_conv2d_plan *plan,
                                hallu_error *err)
{
    DNNL_TRY(dnnl_primitive_attr_create(attr), "dnnl_primitive_attr_create");
    dnnl_status_t st = dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user);
    if (st == dnnl_success && accumulate) {
        dnnl_post_ops_t po = NULL;
        st = dnnl_post_ops_create(&po);
        if (st == dnnl_success)
            st = dnnl_post_ops_append_sum(po, 1.0f);
        if (st == dnnl_success)
            st = dnnl_primitive_attr_set_post_ops(*attr, po);
        if (po)
            dnnl_post_ops_destroy(po);
    }
    if (st != dnnl_success) {
        dnnl_primitive_attr_destroy(*attr);
        return dnnl_fail(err, &plan->g, "primitive attributes", st);
    }
    return HALLU_OK;
}

/* Creates memory `*mem` for md; when `buf` is non-NULL the plan owns a buffer for it. */
static hallu_status mem_create(hallu_conv2d_plan *plan, dnnl_memory_t *mem, const dnnl_memory_desc_t *md,
                               void **buf, hallu_error *err)
{
    if (buf) {
        *buf = hallu_alloc(dnnl_memory_desc_get_size(md), "conv2d weight buffer", err);
        if (!*buf)
            return HALLU_ERR_OOM;
    }
    DNNL_TRY(dnnl_memory_create(mem, md, plan->impl->engine, buf ? *buf : DNNL_MEMORY_NONE), "dnnl_memory_create");
    return HALLU_OK;
}

/* A reorder from `from` to `to` (accumulating into `to` when asked). */
static hallu_status reorder_create(hallu_conv2d_plan *plan, cpu_prim *p, const dnnl_memory_desc_t *from,
                                   const dnnl_memory_desc_t *to, int accumulate, hallu_error *err)
{
    dnnl_primitive_attr_t attr;
    hallu_status s = attr_create(&attr, accumulate, plan, err);
    if (s != HALLU_OK)
        return s;
    dnnl_primitive_desc_t pd;
    dnnl_status_t st = dnnl_reorder_primitive_desc_create(&pd, from, plan->impl->engine, to, plan->impl->engine, attr);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success)
        return dnnl_fail(err, &plan->g, "reorder primitive descriptor", st);
    return prim_create(plan, p, pd, "reorder primitive", err);
}

/* The weight memory a primitive wants: the user's OIHW if oneDNN chose it, else
 * a plan-owned buffer filled by a reorder. */
static hallu_status weights_for(hallu_conv2d_plan *plan, const dnnl_memory_desc_t *want,
                                const dnnl_memory_desc_t *user, cpu_prim *reorder, dnnl_memory_t *mem,
                                void **buf, hallu_error *err)
{
    if (dnnl_memory_desc_equal(want, user))
        return HALLU_OK;   /* *mem stays NULL: use plan->w_user */
    hallu_status s = mem_create(plan, mem, want, buf, err);
    return s != HALLU_OK ? s : reorder_create(plan, reorder, user, want, 0, err);
}

/* Sets up one activation boundary for the primitive layout `prim_md`. */
static hallu_status port_init(hallu_conv2d_plan *plan, act_port *p, int side, const dnnl_memory_desc_t *user_md,
                              const dnnl_memory_desc_t *prim_md, hallu_error *err)
{
    p->side = side;
    hallu_status s = mem_create(plan, &p->user, user_md, NULL, err);
    if (s != HALLU_OK || dnnl_memory_desc_equal(user_md, prim_md))
        return s;
    cpu_impl *impl = plan->impl;
    if ((s = cpu_shared_reserve(&impl->act[side], &impl->act_bytes[side], dnnl_memory_desc_get_size(prim_md),
                                "conv2d blocked activations", err)) != HALLU_OK ||
        (s = mem_create(plan, &p->prim, prim_md, NULL, err)) != HALLU_OK ||
        (s = reorder_create(plan, &p->to_prim, user_md, prim_md, 0, err)) != HALLU_OK)
        return s;
    return reorder_create(plan, &p->from_prim, prim_md, user_md, 0, err);
}

static hallu_status mds_init(hallu_conv2d_plan *plan, conv_mds *md, hallu_error *err)
{
    const hallu_conv2d_geom *g = &plan->g;
    dnnl_dims_t src = { g->n, g->cin, g->h, g->w }, dst = { g->n, g->cout, g->oh, g->ow };
    dnnl_dims_t wts = { g->cout, g->cin, g->k, g->k };
    /* 1x1 kernels are as fast on NHWC, so they skip the boundary reorders; bf16 plans stay NHWC. */
    dnnl_format_tag_t act = g->k > 1 && !plan->bf16 ? dnnl_format_tag_any : dnnl_nhwc;
    dnnl_data_type_t in_t = plan->bf16 ? dnnl_bf16 : dnnl_f32;   /* what the products read */
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&md->src_user, 4, src, dnnl_f32, dnnl_nhwc), "src memory desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&md->dst_user, 4, dst, dnnl_f32, dnnl_nhwc), "dst memory desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&md->src_any, 4, src, in_t, act), "src memory desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&md->dst_any, 4, dst, dnnl_f32, act), "dst memory desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&md->w_user, 4, wts, dnnl_f32, dnnl_oihw), "weight memory desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&md->w_any, 4, wts, in_t, dnnl_format_tag_any), "weight memory desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&md->dsrc_any, 4, src, dnnl_f32, act), "diff_src memory desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&md->dw_any, 4, wts, dnnl_f32, dnnl_format_tag_any), "diff weights desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&md->ddst_bf16, 4, dst, dnnl_bf16, dnnl_nhwc), "diff_dst memory desc");
    return HALLU_OK;
}

static hallu_status pd_create(hallu_conv2d_plan *plan, dnnl_primitive_desc_t *pd, const dnnl_convolution_desc_t *desc,
                              const_dnnl_primitive_desc_t hint, const char *what, hallu_error *err)
{
    dnnl_primitive_attr_t attr;
    hallu_status s = attr_create(&attr, 0, plan, err);
    if (s != HALLU_OK)
        return s;
    dnnl_status_t st = dnnl_primitive_desc_create(pd, desc, attr, plan->impl->engine, hint);
    dnnl_primitive_attr_destroy(attr);
    return st == dnnl_success ? HALLU_OK : dnnl_fail(err, &plan->g, what, st);
}

static hallu_status build_forward(hallu_conv2d_plan *plan, conv_mds *md, dnnl_primitive_desc_t *fwd_pd,
                                  hallu_error *err)
{
    const hallu_conv2d_geom *g = &plan->g;
    dnnl_dims_t strides = { g->stride, g->stride }, pad = { g->pad, g->pad };
    dnnl_convolution_desc_t desc;
    DNNL_TRY(dnnl_convolution_forward_desc_init(&desc, dnnl_forward_training, dnnl_convolution_direct, &md->src_any,
                                                &md->w_any, NULL, &md->dst_any, strides, pad, pad),
             "forward convolution descriptor");
    hallu_status s = pd_create(plan, fwd_pd, &desc, NULL, "forward primitive descriptor", err);
    if (s != HALLU_OK)
        return s;
    md->src = dnnl_primitive_desc_query_md(*fwd_pd, dnnl_query_src_md, 0);
    md->dst = dnnl_primitive_desc_query_md(*fwd_pd, dnnl_query_dst_md, 0);
    md->ddst = plan->bf16 ? &md->ddst_bf16 : md->dst;
    const dnnl_memory_desc_t *want = dnnl_primitive_desc_query_md(*fwd_pd, dnnl_query_weights_md, 0);
    if ((s = port_init(plan, &plan->in, 0, &md->src_user, md->src, err)) != HALLU_OK ||
        (s = port_init(plan, &plan->out, 1, &md->dst_user, md->dst, err)) != HALLU_OK ||
        (s = weights_for(plan, want, &md->w_user, &plan->w_to_fwd, &plan->w_fwd, &plan->w_fwd_buf, err)) != HALLU_OK)
        return s;
    dnnl_primitive_desc_t clone;
    DNNL_TRY(dnnl_primitive_desc_clone(&clone, *fwd_pd), "primitive descriptor clone");
    return prim_create(plan, &plan->fwd, clone, "forward primitive", err);
}

/* A bf16-output twin of one of the plan's primitives (pd, owned from here):
 * created, with its bf16 memory object, only where oneDNN chose for it the
 * weight layout `weights` (and the source layout `src`, when given) of the
 * primitive it stands in for, so that both read the same converted weights;
 * otherwise left out (HALLU_OK, the twin stays empty). */
static hallu_status twin_create(hallu_conv2d_plan *plan, cpu_prim *twin, dnnl_memory_t *mem,
                                const dnnl_memory_desc_t *mem_md, dnnl_primitive_desc_t pd,
                                const dnnl_memory_desc_t *weights, const dnnl_memory_desc_t *src, const char *what,
                                hallu_error *err)
{
    hallu_status s = HALLU_OK;
    if (!dnnl_memory_desc_equal(dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0), weights) ||
        (src && !dnnl_memory_desc_equal(dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0), src)) ||
        (s = mem_create(plan, mem, mem_md, NULL, err)) != HALLU_OK) {
        dnnl_primitive_desc_destroy(pd);
        return s;
    }
    return prim_create(plan, twin, pd, what, err);
}

/* bf16 plans: the forward again with a bf16 dst, for conv2d_forward_y16, used
 * where oneDNN picks the same source and weight layouts for it as for fwd (the
 * weights are converted once per call, for fwd's layout). */
static hallu_status build_forward16(hallu_conv2d_plan *plan, conv_mds *md, const_dnnl_primitive_desc_t fwd_pd,
                                    hallu_error *err)
{
    const hallu_conv2d_geom *g = &plan->g;
    dnnl_dims_t strides = { g->stride, g->stride }, pad = { g->pad, g->pad };
    dnnl_convolution_desc_t desc;
    DNNL_TRY(dnnl_convolution_forward_desc_init(&desc, dnnl_forward_training, dnnl_convolution_direct, &md->src_any,
                                                &md->w_any, NULL, &md->ddst_bf16, strides, pad, pad),
             "bf16-output forward convolution descriptor");
    dnnl_primitive_desc_t pd;
    hallu_status s = pd_create(plan, &pd, &desc, NULL, "bf16-output forward primitive descriptor", err);
    if (s != HALLU_OK)
        return s;
    return twin_create(plan, &plan->fwd16, &plan->y16, &md->ddst_bf16, pd,
                       dnnl_primitive_desc_query_md(fwd_pd, dnnl_query_weights_md, 0),
                       dnnl_primitive_desc_query_md(fwd_pd, dnnl_query_src_md, 0), "bf16-output forward primitive",
                       err);
}

static hallu_status build_backward_data(hallu_conv2d_plan *plan, const conv_mds *md,
                                        const_dnnl_primitive_desc_t fwd_pd, hallu_error *err)
{
    const hallu_conv2d_geom *g = &plan->g;
    dnnl_dims_t strides = { g->stride, g->stride }, pad = { g->pad, g->pad };
    dnnl_convolution_desc_t desc;
    /* diff_src gets its own choice: with few input channels the forward takes
     * plain NCHW, for which only the reference backward-data kernel exists. */
    DNNL_TRY(dnnl_convolution_backward_data_desc_init(&desc, dnnl_convolution_direct, &md->dsrc_any, &md->w_any,
                                                      md->ddst, strides, pad, pad),
             "backward-data convolution descriptor");
    dnnl_primitive_desc_t pd;
    hallu_status s = pd_create(plan, &pd, &desc, fwd_pd, "backward-data primitive descriptor", err);
    if (s != HALLU_OK)
        return s;
    const dnnl_memory_desc_t *want = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *diff_src = dnnl_primitive_desc_query_md(pd, dnnl_query_diff_src_md, 0);
    s = port_init(plan, &plan->in_grad, 0, &md->src_user, diff_src, err);
    if (s == HALLU_OK && plan->bf16)   /* dy rounded to bf16 on its way in */
        s = port_init(plan, &plan->out_grad, 1, &md->dst_user, md->ddst, err);
    if (s == HALLU_OK)
        s = weights_for(plan, want, &md->w_user, &plan->w_to_bwd, &plan->w_bwd, &plan->w_bwd_buf, err);
    if (s != HALLU_OK) {
        dnnl_primitive_desc_destroy(pd);
        return s;
    }
    return prim_create(plan, &plan->bwd_data, pd, "backward-data primitive", err);
}

/* The transposed convolution of a stride-1 layer whose output has its input's
 * size is itself a forward convolution: dx = conv(dy, W') with
 * W'[ci][co][ky][kx] = W[co][ci][k-1-ky][k-1-kx], padding k-1-pad. Used for
 * bf16 plans with channel counts AMX blocks well; dx is the same sum of the
 * same bf16 products, in another order. */
static int dx_as_forward_wanted(const hallu_conv2d_plan *plan)
{
    const hallu_conv2d_geom *g = &plan->g;
    return plan->bf16 && g->stride == 1 && g->k > 1 && 2 * g->pad == g->k - 1 && g->cin % 16 == 0 &&
           g->cout % 16 == 0 && !(plan->gemm_passes & CPU_GEMM_DX);
}

static hallu_status build_dx_as_forward(hallu_conv2d_plan *plan, const conv_mds *md, hallu_error *err)
{
    const hallu_conv2d_geom *g = &plan->g;
    dnnl_dims_t strides = { 1, 1 }, pad = { g->k - 1 - g->pad, g->k - 1 - g->pad };
    dnnl_dims_t wts = { g->cin, g->cout, g->k, g->k };
    dnnl_memory_desc_t w_flip, w_any;
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&w_flip, 4, wts, dnnl_f32, dnnl_oihw), "flipped weight memory desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&w_any, 4, wts, dnnl_bf16, dnnl_format_tag_any), "flipped weight desc");
    dnnl_convolution_desc_t desc;
    DNNL_TRY(dnnl_convolution_forward_desc_init(&desc, dnnl_forward_inference, dnnl_convolution_direct,
                                                &md->ddst_bf16, &w_any, NULL, &md->src_user, strides, pad, pad),
             "input-gradient forward convolution descriptor");
    dnnl_primitive_desc_t pd;
    hallu_status s = pd_create(plan, &pd, &desc, NULL, "input-gradient forward primitive descriptor", err);
    if (s != HALLU_OK)
        return s;
    const dnnl_memory_desc_t *want = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    s = mem_create(plan, &plan->w_flip, &w_flip, (void **)&plan->w_flip_buf, err);
    if (s == HALLU_OK)
        s = mem_create(plan, &plan->w_dx_fwd, want, &plan->w_dx_fwd_buf, err);
    if (s == HALLU_OK)
        s = reorder_create(plan, &plan->w_to_dx_fwd, &w_flip, want, 0, err);
    if (s != HALLU_OK) {
        dnnl_primitive_desc_destroy(pd);
        return s;
    }
    dnnl_memory_desc_t want_md = *want;   /* pd (which owns *want) goes to the primitive */
    s = prim_create(plan, &plan->dx_fwd, pd, "input-gradient forward primitive", err);
    /* the bf16-output twin, where it takes the same weights */
    dnnl_memory_desc_t dx16_md;
    dnnl_dims_t src = { g->n, g->cin, g->h, g->w };
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&dx16_md, 4, src, dnnl_bf16, dnnl_nhwc), "bf16 diff_src memory desc");
    DNNL_TRY(dnnl_convolution_forward_desc_init(&desc, dnnl_forward_inference, dnnl_convolution_direct,
                                                &md->ddst_bf16, &w_any, NULL, &dx16_md, strides, pad, pad),
             "bf16 input-gradient forward convolution descriptor");
    if (s != HALLU_OK || (s = pd_create(plan, &pd, &desc, NULL, "bf16 input-gradient forward primitive descriptor",
                                        err)) != HALLU_OK)
        return s;
    return twin_create(plan, &plan->dx_fwd16, &plan->dx16_mem, &dx16_md, pd, &want_md, NULL,
                       "bf16 input-gradient forward primitive", err);
}

/* bf16 plans whose input gradient stays oneDNN's backward-data: its twin
 * with a bf16 diff_src (conv2d_backward_dx16), where oneDNN has one taking
 * the same weights (else none: conv2d_backward_dx16 refuses). */
static hallu_status build_backward_data16(hallu_conv2d_plan *plan, const conv_mds *md,
                                          const_dnnl_primitive_desc_t fwd_pd, hallu_error *err)
{
    const hallu_conv2d_geom *g = &plan->g;
    dnnl_dims_t strides = { g->stride, g->stride }, pad = { g->pad, g->pad }, src = { g->n, g->cin, g->h, g->w };
    dnnl_memory_desc_t dx16_md;
    dnnl_convolution_desc_t desc;
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&dx16_md, 4, src, dnnl_bf16, dnnl_nhwc), "bf16 diff_src memory desc");
    DNNL_TRY(dnnl_convolution_backward_data_desc_init(&desc, dnnl_convolution_direct, &dx16_md, &md->w_any, md->ddst,
                                                      strides, pad, pad),
             "bf16 backward-data convolution descriptor");
    dnnl_primitive_attr_t attr;
    hallu_status s = attr_create(&attr, 0, plan, err);
    if (s != HALLU_OK)
        return s;
    dnnl_primitive_desc_t pd;
    dnnl_status_t st = dnnl_primitive_desc_create(&pd, &desc, attr, plan->impl->engine, fwd_pd);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success)
        return HALLU_OK;
    const_dnnl_primitive_desc_t f32_pd = NULL;
    DNNL_TRY(dnnl_primitive_get_primitive_desc(plan->bwd_data.prim, &f32_pd), "backward-data primitive descriptor");
    return twin_create(plan, &plan->bwd_data16, &plan->dx16_mem, &dx16_md, pd,
                       dnnl_primitive_desc_query_md(f32_pd, dnnl_query_weights_md, 0), NULL,
                       "bf16 backward-data primitive", err);
}

static hallu_status build_backward_weights(hallu_conv2d_plan *plan, const conv_mds *md,
                                           const_dnnl_primitive_desc_t fwd_pd, hallu_error *err)
{
    const hallu_conv2d_geom *g = &plan->g;
    dnnl_dims_t strides = { g->stride, g->stride }, pad = { g->pad, g->pad };
    dnnl_convolution_desc_t desc;
    DNNL_TRY(dnnl_convolution_backward_weights_desc_init(&desc, dnnl_convolution_direct, md->src,
                                                         plan->bf16 ? &md->dw_any : &md->w_any, NULL, md->ddst,
                                                         strides, pad, pad),
             "backward-weights convolution descriptor");
    dnnl_primitive_desc_t pd;
    hallu_status s = pd_create(plan, &pd, &desc, fwd_pd, "backward-weights primitive descriptor", err);
    if (s != HALLU_OK)
        return s;
    const dnnl_memory_desc_t *dw_md = dnnl_primitive_desc_query_md(pd, dnnl_query_diff_weights_md, 0);
    if ((s = mem_create(plan, &plan->dw_prim, dw_md, &plan->dw_buf, err)) != HALLU_OK ||
        (s = mem_create(plan, &plan->dw_user, &md->w_user, NULL, err)) != HALLU_OK ||
        (s = reorder_create(plan, &plan->dw_accumulate, dw_md, &md->w_user, 1, err)) != HALLU_OK) {
        dnnl_primitive_desc_destroy(pd);
        return s;
    }
    return prim_create(plan, &plan->bwd_weights, pd, "backward-weights primitive", err);
}

static hallu_status plan_build(hallu_conv2d_plan *plan, hallu_error *err)
{
    plan->bf16 = plan->impl->precision == HALLU_PRECISION_BF16;
    plan->use_wino = plan->bf16 ? cpu_wino_bf16_wanted(plan->impl, &plan->g) : cpu_wino_wanted(&plan->g);
    if (plan->use_wino)
        return cpu_wino_init(plan->impl, &plan->g, plan->bf16, &plan->wino, err);
    conv_mds md;
    hallu_status s = mds_init(plan, &md, err);
    if (s == HALLU_OK)
        s = mem_create(plan, &plan->w_user, &md.w_user, NULL, err);
    if (s != HALLU_OK)
        return s;
    dnnl_primitive_desc_t fwd_pd = NULL;
    s = build_forward(plan, &md, &fwd_pd, err);
    if (s == HALLU_OK)
        s = build_backward_data(plan, &md, fwd_pd, err);
    plan->gemm_passes = cpu_conv_gemm_passes(&plan->g, plan->bf16);
    if (s == HALLU_OK && plan->bf16 && !(plan->gemm_passes & CPU_GEMM_FWD))
        s = build_forward16(plan, &md, fwd_pd, err);
    if (s == HALLU_OK && dx_as_forward_wanted(plan))
        s = build_dx_as_forward(plan, &md, err);
    else if (s == HALLU_OK && plan->bf16 && !(plan->gemm_passes & CPU_GEMM_DX) && plan->g.cin % 16 == 0)
        s = build_backward_data16(plan, &md, fwd_pd, err);
    if (s == HALLU_OK && plan->gemm_passes)
        s = cpu_conv_gemm_init(plan->impl, &plan->g, plan->bf16, plan->gemm_passes, &plan->gemm, err);
    if (s == HALLU_OK && !(plan->gemm_passes & CPU_GEMM_DW))
        s = build_backward_weights(plan, &md, fwd_pd, err);
    if (fwd_pd)
        dnnl_primitive_desc_destroy(fwd_pd);
    return s;
}

hallu_status cpu_conv2d_plan_create(hallu_backend *be, const hallu_conv2d_geom *g,
                                    hallu_conv2d_plan **out, hallu_error *err)
{
    if (!be || !out || !g)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "conv2d_plan_create: NULL %s",
                               !be ? "backend" : !out ? "out" : "geometry");
    *out = NULL;
    hallu_conv2d_geom check;
    hallu_status s = hallu_conv2d_geom_check(&check, g, err);
    if (s != HALLU_OK)
        return s;
    hallu_conv2d_plan *plan = hallu_calloc(sizeof *plan, "conv2d plan", err);
    if (!plan)
        return HALLU_ERR_OOM;
    plan->g = check;
    plan->impl = cpu_impl_of(be);
    int caller = cpu_threads_enter(plan->impl);
    s = plan_build(plan, err);
    cpu_threads_leave(plan->impl, caller);
    if (s != HALLU_OK) {
        cpu_conv2d_plan_free(plan);
        return s;
    }
    *out = plan;
    return HALLU_OK;
}

/* ---- execution: no allocation, only handle updates and primitive calls ---- */

static void set_handle(dnnl_memory_t mem, const void *p)
{
    dnnl_memory_set_data_handle(mem, (void *)p);
}

void cpu_prim_run(cpu_impl *impl, cpu_prim *p, dnnl_exec_arg_t *args, int nargs, const char *what)
{
    cpu_check(impl, cpu_prim_exec_on(p, impl->stream, impl->dnnl_scratch, args, nargs), what);
}

dnnl_status_t cpu_prim_exec_on(cpu_prim *p, dnnl_stream_t stream, void *scratch, dnnl_exec_arg_t *args, int nargs)
{
    if (p->scratch) {
        dnnl_memory_set_data_handle(p->scratch, scratch);
        args[nargs++] = (dnnl_exec_arg_t){ DNNL_ARG_SCRATCHPAD, p->scratch };
    }
    return dnnl_primitive_execute(p->prim, stream, nargs, args);
}

static void prim_run(hallu_conv2d_plan *plan, cpu_prim *p, dnnl_exec_arg_t *args, int nargs)
{
    cpu_prim_run(plan->impl, p, args, nargs, "conv2d: dnnl_primitive_execute");
}

static void reorder_run(hallu_conv2d_plan *plan, cpu_prim *p, dnnl_memory_t from, dnnl_memory_t to)
{
    dnnl_exec_arg_t args[3] = { { DNNL_ARG_FROM, from }, { DNNL_ARG_TO, to } };
    prim_run(plan, p, args, 2);
}

/* The primitive-side memory holding the NHWC activation `a` (reordered if needed). */
static dnnl_memory_t port_in(hallu_conv2d_plan *plan, act_port *p, const float *a)
{
    set_handle(p->user, a);
    if (!p->prim)
        return p->user;
    set_handle(p->prim, plan->impl->act[p->side]);
    reorder_run(plan, &p->to_prim, p->user, p->prim);
    return p->prim;
}

/* port_in for a bf16 plan's input given also as its bf16 copy a16 (may be
 * NULL): the primitive reads a16 in place of the rounding reorder. */
static dnnl_memory_t port_in16(hallu_conv2d_plan *plan, act_port *p, const float *a, const uint16_t *a16)
{
    if (!a16 || !plan->bf16 || !p->prim)
        return port_in(plan, p, a);
    set_handle(p->prim, a16);
    return p->prim;
}

/* The primitive-side memory a primitive writes for the NHWC output `a`. */
static dnnl_memory_t port_out(hallu_conv2d_plan *plan, act_port *p, float *a)
{
    set_handle(p->user, a);
    if (!p->prim)
        return p->user;
    set_handle(p->prim, plan->impl->act[p->side]);
    return p->prim;
}

/* Completes port_out: copies the primitive's result into the NHWC buffer. */
static void port_out_finish(hallu_conv2d_plan *plan, act_port *p)
{
    if (p->prim)
        reorder_run(plan, &p->from_prim, p->prim, p->user);
}

/* Weight memory for a primitive, reordering the user's OIHW if needed. */
static dnnl_memory_t weights_prepare(hallu_conv2d_plan *plan, cpu_prim *reorder, dnnl_memory_t mem, const float *w)
{
    set_handle(plan->w_user, w);
    if (!reorder->prim)
        return plan->w_user;
    reorder_run(plan, reorder, plan->w_user, mem);
    return mem;
}

/* The data of a memory object (a bf16 boundary buffer, for the GEMM passes). */
static const uint16_t *mem_data(dnnl_memory_t mem)
{
    void *h = NULL;
    dnnl_memory_get_data_handle(mem, &h);
    return h;
}

/* y, or its bf16 rounding into y16 (bf16 plans with fwd16 or the GEMM forward). */
static void conv_forward(hallu_conv2d_plan *plan, float *y, uint16_t *y16, const float *x, const uint16_t *x16,
                         const float *w)
{
    if (plan->use_wino) {
        cpu_wino_forward(plan->impl, &plan->g, &plan->wino, y, y16, x, x16, w);
        return;
    }
    dnnl_memory_t src = port_in16(plan, &plan->in, x, x16);
    if (plan->gemm_passes & CPU_GEMM_FWD) {
        cpu_check(plan->impl, dnnl_stream_wait(plan->impl->stream), "conv2d: dnnl_stream_wait");
        cpu_conv_gemm_forward(plan->impl, &plan->g, &plan->gemm, y, y16, mem_data(src), w);
        return;
    }
    dnnl_memory_t wts = weights_prepare(plan, &plan->w_to_fwd, plan->w_fwd, w);
    if (y16)
        set_handle(plan->y16, y16);
    dnnl_memory_t dst = y16 ? plan->y16 : port_out(plan, &plan->out, y);
    dnnl_exec_arg_t args[4] = { { DNNL_ARG_SRC, src }, { DNNL_ARG_WEIGHTS, wts }, { DNNL_ARG_DST, dst } };
    prim_run(plan, y16 ? &plan->fwd16 : &plan->fwd, args, 3);
    if (!y16)
        port_out_finish(plan, &plan->out);
    cpu_check(plan->impl, dnnl_stream_wait(plan->impl->stream), "conv2d: dnnl_stream_wait");
}

/* w_flip[ci][co][ky][kx] = w[co][ci][k-1-ky][k-1-kx], then rounded into the primitive's layout */
static dnnl_memory_t weights_flipped(hallu_conv2d_plan *plan, const float *w)
{
    const hallu_conv2d_geom *g = &plan->g;
    int k = g->k, kk = k * k, cin = g->cin, cout = g->cout;
    float *wf = plan->w_flip_buf;
#pragma omp parallel for num_threads(plan->impl->num_threads) schedule(static)
    for (int ci = 0; ci < cin; ci++)
        for (int co = 0; co < cout; co++) {
            const float *src = w + ((int64_t)co * cin + ci) * kk;
            float *dst = wf + ((int64_t)ci * cout + co) * kk;
            for (int t = 0; t < kk; t++)
                dst[t] = src[kk - 1 - t];
        }
    reorder_run(plan, &plan->w_to_dx_fwd, plan->w_flip, plan->w_dx_fwd);
    return plan->w_dx_fwd;
}

/* dx, or its bf16 rounding into dx16 (plans with dx_fwd16 only) */
static void backward_data(hallu_conv2d_plan *plan, float *dx, uint16_t *dx16, dnnl_memory_t ddst, const float *w)
{
    if (plan->dx_fwd.prim) {
        dnnl_memory_t wts = weights_flipped(plan, w);
        if (dx16)
            set_handle(plan->dx16_mem, dx16);
        dnnl_memory_t dsrc = dx16 ? plan->dx16_mem : port_out(plan, &plan->in_grad, dx);
        dnnl_exec_arg_t args[4] = { { DNNL_ARG_SRC, ddst }, { DNNL_ARG_WEIGHTS, wts }, { DNNL_ARG_DST, dsrc } };
        prim_run(plan, dx16 ? &plan->dx_fwd16 : &plan->dx_fwd, args, 3);
        if (!dx16)
            port_out_finish(plan, &plan->in_grad);
        return;
    }
    dnnl_memory_t wts = weights_prepare(plan, &plan->w_to_bwd, plan->w_bwd, w);
    if (dx16)
        set_handle(plan->dx16_mem, dx16);
    dnnl_memory_t dsrc = dx16 ? plan->dx16_mem : port_out(plan, &plan->in_grad, dx);
    dnnl_exec_arg_t args[4] = { { DNNL_ARG_DIFF_DST, ddst }, { DNNL_ARG_WEIGHTS, wts }, { DNNL_ARG_DIFF_SRC, dsrc } };
    prim_run(plan, dx16 ? &plan->bwd_data16 : &plan->bwd_data, args, 3);
    if (!dx16)
        port_out_finish(plan, &plan->in_grad);
}

static void backward_weights(hallu_conv2d_plan *plan, float *dw, dnnl_memory_t ddst, const float *x,
                             const uint16_t *x16)
{
    dnnl_memory_t src = port_in16(plan, &plan->in, x, x16);
    set_handle(plan->dw_user, dw);
    dnnl_exec_arg_t args[4] = { { DNNL_ARG_SRC, src }, { DNNL_ARG_DIFF_DST, ddst },
                                { DNNL_ARG_DIFF_WEIGHTS, plan->dw_prim } };
    prim_run(plan, &plan->bwd_weights, args, 3);
    reorder_run(plan, &plan->dw_accumulate, plan->dw_prim, plan->dw_user);
}

/* Order matters with the shared buffers: dy stays in act[1] throughout; act[0]
 * holds diff_src until it is copied out, then x for the weight gradient. */
static void conv_backward(hallu_conv2d_plan *plan, float *dx, uint16_t *dx16, float *dw, const float *dy,
                          const uint16_t *dy16, const float *x, const uint16_t *x16, const float *w)
{
    if (plan->use_wino) {
        cpu_wino_backward(plan->impl, &plan->g, &plan->wino, dx, dx16, dw, dy, dy16, x, x16, w);
        return;
    }
    int want_dx = dx || dx16;
    int gemm_dx = want_dx && (plan->gemm_passes & CPU_GEMM_DX), gemm_dw = dw && (plan->gemm_passes & CPU_GEMM_DW);
    int onednn_dx = want_dx && !gemm_dx, onednn_dw = dw && !gemm_dw;
    act_port *grad_port = plan->bf16 ? &plan->out_grad : &plan->out;
    /* bf16 plans' GEMM passes read the bf16 dy (and x) that the boundary
     * reorders write, as oneDNN's primitives do. */
    int want_ddst = onednn_dx || onednn_dw || (plan->bf16 && (gemm_dx || gemm_dw));
    dnnl_memory_t ddst = want_ddst ? port_in16(plan, grad_port, dy, dy16) : NULL;
    if (onednn_dx)
        backward_data(plan, dx, dx16, ddst, w);
    if (onednn_dw)
        backward_weights(plan, dw, ddst, x, x16);
    const void *gemm_dy = dy, *gemm_x = x;
    if (plan->bf16 && gemm_dw) {
        gemm_dy = mem_data(ddst);
        gemm_x = mem_data(port_in16(plan, &plan->in, x, x16));
    }
    cpu_check(plan->impl, dnnl_stream_wait(plan->impl->stream), "conv2d: dnnl_stream_wait");
    /* After the wait: the GEMM passes run outside oneDNN's stream. */
    if (gemm_dx)
        cpu_conv_gemm_backward_data(plan->impl, &plan->g, &plan->gemm, dx, dx16, mem_data(ddst), w);
    if (gemm_dw)
        cpu_conv_gemm_backward_weights(plan->impl, &plan->g, &plan->gemm, dw, gemm_dy, gemm_x);
}

void cpu_conv2d_forward(hallu_conv2d_plan *plan, float *y, const float *x, const uint16_t *x16, const float *w)
{
    int caller = cpu_threads_enter(plan->impl);
    conv_forward(plan, y, NULL, x, x16, w);
    cpu_threads_leave(plan->impl, caller);
}

int cpu_conv2d_forward_y16(hallu_conv2d_plan *plan, uint16_t *y16, const float *x, const uint16_t *x16,
                           const float *w)
{
    if (!plan->bf16 || (!plan->use_wino && !(plan->gemm_passes & CPU_GEMM_FWD) && !plan->fwd16.prim))
        return 0;
    int caller = cpu_threads_enter(plan->impl);
    conv_forward(plan, NULL, y16, x, x16, w);
    cpu_threads_leave(plan->impl, caller);
    return 1;
}

int cpu_conv2d_backward_dx16(hallu_conv2d_plan *plan, uint16_t *dx16, float *dw, const float *dy,
                             const uint16_t *dy16, const float *x, const uint16_t *x16, const float *w)
{
    int gemm_dx = (plan->gemm_passes & CPU_GEMM_DX) != 0;
    int ok = plan->bf16 && dx16 &&
             (plan->use_wino ? 1
              : gemm_dx    ? cpu_conv_gemm_dx16_ok(&plan->g, &plan->gemm)
              : plan->dx_fwd.prim ? plan->dx_fwd16.prim != NULL : plan->bwd_data16.prim != NULL);
    if (!ok)
        return 0;
    int caller = cpu_threads_enter(plan->impl);
    conv_backward(plan, NULL, dx16, dw, dy, dy16, x, x16, w);
    cpu_threads_leave(plan->impl, caller);
    return 1;
}

void cpu_conv2d_backward(hallu_conv2d_plan *plan, float *dx, float *dw, const float *dy, const uint16_t *dy16,
                         const float *x, const uint16_t *x16, const float *w)
{
    int caller = cpu_threads_enter(plan->impl);
    conv_backward(plan, dx, NULL, dw, dy, dy16, x, x16, w);
    cpu_threads_leave(plan->impl, caller);
}
