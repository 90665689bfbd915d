/* 2-D convolution through oneDNN. A plan holds forward-training, backward-data
 * and backward-weights primitives created once per geometry. Activations stay in
 * the caller's NHWC buffers; weights are reordered from PyTorch's OIHW into the
 * format oneDNN prefers every call (they change every step, and the reorder is
 * tiny next to the convolution). */
#include "backend/cpu/cpu_internal.h"

#include <string.h>

typedef struct cpu_prim {
    dnnl_primitive_t prim;
    dnnl_memory_t scratch;   /* handle re-pointed at the backend's shared scratchpad */
} cpu_prim;

struct hallu_conv2d_plan {
    hallu_conv2d_geom g;
    cpu_impl *impl;
    cpu_prim fwd, bwd_data, bwd_weights;
    cpu_prim w_to_fwd, w_to_bwd;   /* .prim NULL when oneDNN takes OIHW as is */
    cpu_prim dw_accumulate;        /* diff weights (oneDNN format) -> user OIHW, dst += */
    dnnl_memory_t src, dst, diff_src, diff_dst;   /* NHWC, handles set per call */
    dnnl_memory_t w_user, w_fwd, w_bwd, dw_prim, dw_user;
    void *w_fwd_buf, *w_bwd_buf, *dw_buf;
};

typedef struct conv_mds {
    dnnl_memory_desc_t src, dst, w_user, w_any;
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

static void prim_free(cpu_prim *p)
{
    if (p->prim)
        dnnl_primitive_destroy(p->prim);
    if (p->scratch)
        dnnl_memory_destroy(p->scratch);
    p->prim = NULL;
    p->scratch = NULL;
}

void cpu_conv2d_plan_free(hallu_conv2d_plan *plan)
{
    if (!plan)
        return;
    prim_free(&plan->fwd);
    prim_free(&plan->bwd_data);
    prim_free(&plan->bwd_weights);
    prim_free(&plan->w_to_fwd);
    prim_free(&plan->w_to_bwd);
    prim_free(&plan->dw_accumulate);
    dnnl_memory_t mems[] = { plan->src, plan->dst, plan->diff_src, plan->diff_dst, plan->w_user,
                             plan->w_fwd, plan->w_bwd, plan->dw_prim, plan->dw_user };
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i])
            dnnl_memory_destroy(mems[i]);
    hallu_free(plan->w_fwd_buf);
    hallu_free(plan->w_bwd_buf);
    hallu_free(plan->dw_buf);
    hallu_free(plan);
}

/* Grows the backend's shared scratchpad so that `pd` fits, then creates the
 * primitive and its scratchpad memory object. Takes ownership of pd. */
static hallu_status prim_create(hallu_conv2d_plan *plan, cpu_prim *p, dnnl_primitive_desc_t pd,
                                const char *what, hallu_error *err)
{
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t need = smd ? dnnl_memory_desc_get_size(smd) : 0;
    dnnl_status_t st = dnnl_success;
    if (need > plan->impl->dnnl_scratch_bytes) {
        void *grown = hallu_alloc(need, "oneDNN scratchpad", err);
        if (!grown) {
            dnnl_primitive_desc_destroy(pd);
            return HALLU_ERR_OOM;
        }
        hallu_free(plan->impl->dnnl_scratch);
        plan->impl->dnnl_scratch = grown;
        plan->impl->dnnl_scratch_bytes = need;
    }
    if (need > 0)
        st = dnnl_memory_create(&p->scratch, smd, plan->impl->engine, DNNL_MEMORY_NONE);
    if (st == dnnl_success)
        st = dnnl_primitive_create(&p->prim, pd);
    dnnl_primitive_desc_destroy(pd);
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
        return dnnl_fail(err, &plan->g, "weight reorder", st);
    return prim_create(plan, p, pd, "weight reorder", err);
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

static hallu_status mds_init(hallu_conv2d_plan *plan, conv_mds *md, hallu_error *err)
{
    const hallu_conv2d_geom *g = &plan->g;
    dnnl_dims_t src = { g->n, g->cin, g->h, g->w }, dst = { g->n, g->cout, g->oh, g->ow };
    dnnl_dims_t wts = { g->cout, g->cin, g->k, g->k };
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&md->src, 4, src, dnnl_f32, dnnl_nhwc), "src memory desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&md->dst, 4, dst, dnnl_f32, dnnl_nhwc), "dst memory desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&md->w_user, 4, wts, dnnl_f32, dnnl_oihw), "weight memory desc");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&md->w_any, 4, wts, dnnl_f32, dnnl_format_tag_any), "weight memory desc");
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

static hallu_status build_forward(hallu_conv2d_plan *plan, const conv_mds *md, dnnl_primitive_desc_t *fwd_pd,
                                  hallu_error *err)
{
    const hallu_conv2d_geom *g = &plan->g;
    dnnl_dims_t strides = { g->stride, g->stride }, pad = { g->pad, g->pad };
    dnnl_convolution_desc_t desc;
    DNNL_TRY(dnnl_convolution_forward_desc_init(&desc, dnnl_forward_training, dnnl_convolution_direct, &md->src,
                                                &md->w_any, NULL, &md->dst, strides, pad, pad),
             "forward convolution descriptor");
    hallu_status s = pd_create(plan, fwd_pd, &desc, NULL, "forward primitive descriptor", err);
    if (s != HALLU_OK)
        return s;
    const dnnl_memory_desc_t *want = dnnl_primitive_desc_query_md(*fwd_pd, dnnl_query_weights_md, 0);
    s = weights_for(plan, want, &md->w_user, &plan->w_to_fwd, &plan->w_fwd, &plan->w_fwd_buf, err);
    if (s != HALLU_OK)
        return s;
    dnnl_primitive_desc_t clone;
    DNNL_TRY(dnnl_primitive_desc_clone(&clone, *fwd_pd), "primitive descriptor clone");
    return prim_create(plan, &plan->fwd, clone, "forward primitive", err);
}

static hallu_status build_backward_data(hallu_conv2d_plan *plan, const conv_mds *md,
                                        const_dnnl_primitive_desc_t fwd_pd, hallu_error *err)
{
    const hallu_conv2d_geom *g = &plan->g;
    dnnl_dims_t strides = { g->stride, g->stride }, pad = { g->pad, g->pad };
    dnnl_convolution_desc_t desc;
    DNNL_TRY(dnnl_convolution_backward_data_desc_init(&desc, dnnl_convolution_direct, &md->src, &md->w_any,
                                                      &md->dst, strides, pad, pad),
             "backward-data convolution descriptor");
    dnnl_primitive_desc_t pd;
    hallu_status s = pd_create(plan, &pd, &desc, fwd_pd, "backward-data primitive descriptor", err);
    if (s != HALLU_OK)
        return s;
    const dnnl_memory_desc_t *want = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    s = weights_for(plan, want, &md->w_user, &plan->w_to_bwd, &plan->w_bwd, &plan->w_bwd_buf, err);
    if (s != HALLU_OK) {
        dnnl_primitive_desc_destroy(pd);
        return s;
    }
    return prim_create(plan, &plan->bwd_data, pd, "backward-data primitive", err);
}

static hallu_status build_backward_weights(hallu_conv2d_plan *plan, const conv_mds *md,
                                           const_dnnl_primitive_desc_t fwd_pd, hallu_error *err)
{
    const hallu_conv2d_geom *g = &plan->g;
    dnnl_dims_t strides = { g->stride, g->stride }, pad = { g->pad, g->pad };
    dnnl_convolution_desc_t desc;
    DNNL_TRY(dnnl_convolution_backward_weights_desc_init(&desc, dnnl_convolution_direct, &md->src, &md->w_any,
                                                         NULL, &md->dst, strides, pad, pad),
             "backward-weights convolution descriptor");
    dnnl_primitive_desc_t pd;
    hallu_status s = pd_create(plan, &pd, &desc, fwd_pd, "backward-weights primitive descriptor", err);
    if (s != HALLU_OK)
        return s;
    const dnnl_memory_desc_t *dw_md = dnnl_primitive_desc_query_md(pd, dnnl_query_diff_weights_md, 0);
    s = mem_create(plan, &plan->dw_prim, dw_md, &plan->dw_buf, err);
    if (s == HALLU_OK)
        s = reorder_create(plan, &plan->dw_accumulate, dw_md, &md->w_user, 1, err);
    if (s != HALLU_OK) {
        dnnl_primitive_desc_destroy(pd);
        return s;
    }
    return prim_create(plan, &plan->bwd_weights, pd, "backward-weights primitive", err);
}

static hallu_status plan_build(hallu_conv2d_plan *plan, hallu_error *err)
{
    conv_mds md;
    hallu_status s = mds_init(plan, &md, err);
    if (s != HALLU_OK)
        return s;
    if ((s = mem_create(plan, &plan->src, &md.src, NULL, err)) != HALLU_OK ||
        (s = mem_create(plan, &plan->diff_src, &md.src, NULL, err)) != HALLU_OK ||
        (s = mem_create(plan, &plan->dst, &md.dst, NULL, err)) != HALLU_OK ||
        (s = mem_create(plan, &plan->diff_dst, &md.dst, NULL, err)) != HALLU_OK ||
        (s = mem_create(plan, &plan->w_user, &md.w_user, NULL, err)) != HALLU_OK ||
        (s = mem_create(plan, &plan->dw_user, &md.w_user, NULL, err)) != HALLU_OK)
        return s;
    dnnl_primitive_desc_t fwd_pd = NULL;
    s = build_forward(plan, &md, &fwd_pd, err);
    if (s == HALLU_OK)
        s = build_backward_data(plan, &md, fwd_pd, err);
    if (s == HALLU_OK)
        s = build_backward_weights(plan, &md, fwd_pd, err);
    if (fwd_pd)
        dnnl_primitive_desc_destroy(fwd_pd);
    return s;
}

hallu_status cpu_conv2d_plan_create(hallu_backend *be, const hallu_conv2d_geom *g,
                                    hallu_conv2d_plan **out, hallu_error *err)
{
    if (!out || !g)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "conv2d_plan_create: NULL %s", out ? "geometry" : "out");
    *out = NULL;
    hallu_conv2d_geom check;
    hallu_status s = hallu_conv2d_geom_init(&check, g->n, g->h, g->w, g->cin, g->cout, g->k, g->stride, g->pad, err);
    if (s != HALLU_OK)
        return s;
    if (check.oh != g->oh || check.ow != g->ow)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                               "conv2d_plan_create: output %dx%d does not match " GEOM_FMT " (expected %dx%d)",
                               g->oh, g->ow, GEOM_ARGS(g), check.oh, check.ow);
    hallu_conv2d_plan *plan = hallu_calloc(sizeof *plan, "conv2d plan", err);
    if (!plan)
        return HALLU_ERR_OOM;
    plan->g = check;
    plan->impl = cpu_impl_of(be);
    s = plan_build(plan, err);
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

/* Runs `p` with `args` plus its scratchpad. */
static void prim_run(hallu_conv2d_plan *plan, cpu_prim *p, dnnl_exec_arg_t *args, int nargs)
{
    if (p->scratch) {
        set_handle(p->scratch, plan->impl->dnnl_scratch);
        args[nargs++] = (dnnl_exec_arg_t){ DNNL_ARG_SCRATCHPAD, p->scratch };
    }
    dnnl_primitive_execute(p->prim, plan->impl->stream, nargs, args);
}

static void reorder_run(hallu_conv2d_plan *plan, cpu_prim *p, dnnl_memory_t from, dnnl_memory_t to)
{
    dnnl_exec_arg_t args[3] = { { DNNL_ARG_FROM, from }, { DNNL_ARG_TO, to } };
    prim_run(plan, p, args, 2);
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

void cpu_conv2d_forward(hallu_conv2d_plan *plan, float *y, const float *x, const float *w)
{
    dnnl_memory_t wm = weights_prepare(plan, &plan->w_to_fwd, plan->w_fwd, w);
    set_handle(plan->src, x);
    set_handle(plan->dst, y);
    dnnl_exec_arg_t args[4] = { { DNNL_ARG_SRC, plan->src }, { DNNL_ARG_WEIGHTS, wm }, { DNNL_ARG_DST, plan->dst } };
    prim_run(plan, &plan->fwd, args, 3);
    dnnl_stream_wait(plan->impl->stream);
}

void cpu_conv2d_backward(hallu_conv2d_plan *plan, float *dx, float *dw, const float *dy,
                         const float *x, const float *w)
{
    set_handle(plan->diff_dst, dy);
    if (dx) {
        dnnl_memory_t wm = weights_prepare(plan, &plan->w_to_bwd, plan->w_bwd, w);
        set_handle(plan->diff_src, dx);
        dnnl_exec_arg_t args[4] = { { DNNL_ARG_DIFF_DST, plan->diff_dst }, { DNNL_ARG_WEIGHTS, wm },
                                    { DNNL_ARG_DIFF_SRC, plan->diff_src } };
        prim_run(plan, &plan->bwd_data, args, 3);
    }
    if (dw) {
        set_handle(plan->src, x);
        set_handle(plan->dw_user, dw);
        dnnl_exec_arg_t args[4] = { { DNNL_ARG_SRC, plan->src }, { DNNL_ARG_DIFF_DST, plan->diff_dst },
                                    { DNNL_ARG_DIFF_WEIGHTS, plan->dw_prim } };
        prim_run(plan, &plan->bwd_weights, args, 3);
        reorder_run(plan, &plan->dw_accumulate, plan->dw_prim, plan->dw_user);
    }
    dnnl_stream_wait(plan->impl->stream);
}
