/* Convolution weight gradient as im2col + a oneDNN GEMM, for layers where
 * oneDNN 2.6's direct backward-weights kernels are slow.
 * fp32: layers with few output pixels (ResNet's last stages), where the direct
 * AVX2 kernel reaches under half of sgemm's throughput; im2col + sgemm.
 * bf16 (issue 28): the same layers and the stride-2 1x1 downsampling layers,
 * where the AMX backward-weights kernel runs at 4-15% of the bf16 peak while
 * oneDNN's bf16 matmul (also AMX) reaches 60-70% on the same products;
 * im2col of the bf16 x, then one matmul per chunk of images with dy^T read in
 * place (a transposed view of the bf16 NHWC output gradient).
 * Works on NHWC buffers directly, so it needs no layout reorders. */
#include "backend/cpu/cpu_internal.h"

#include <omp.h>
#include <string.h>

/* Output pixels per GEMM: large enough to run near peak. bf16 matmuls want a
 * longer reduction (AMX tiles; measured 1.3-1.7x faster at 4096-16384 than at
 * 2048) and their im2col rows are half the bytes. */
enum { GEMM_ROWS = 2048, GEMM_ROWS_BF16 = 16384 };

int cpu_conv_gemm_wanted(const hallu_conv2d_geom *g, int bf16)
{
    return (g->k > 1 && g->oh * g->ow <= 64) || (bf16 && g->k == 1 && g->stride > 1);
}

/* A bf16 matmul dw_ohwi[cout][kkc] = dy^T[cout][rows] col[rows][kkc] over `rows`
 * output pixels, dy^T read in place from NHWC dy[rows][cout]. */
static hallu_status matmul_create(cpu_impl *impl, const hallu_conv2d_geom *g, cpu_matmul *mm, int64_t rows,
                                  hallu_error *err)
{
    int64_t kkc = (int64_t)g->k * g->k * g->cin;
    dnnl_dims_t a_dims = { g->cout, rows }, a_strides = { 1, g->cout };
    dnnl_dims_t b_dims = { rows, kkc }, c_dims = { g->cout, kkc };
    dnnl_memory_desc_t a, b, c;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_matmul_desc_t desc;
    dnnl_status_t st = dnnl_memory_desc_init_by_strides(&a, 2, a_dims, dnnl_bf16, a_strides);
    if (st == dnnl_success)
        st = dnnl_memory_desc_init_by_tag(&b, 2, b_dims, dnnl_bf16, dnnl_ab);
    if (st == dnnl_success)
        st = dnnl_memory_desc_init_by_tag(&c, 2, c_dims, dnnl_f32, dnnl_ab);
    if (st == dnnl_success)
        st = dnnl_matmul_desc_init(&desc, &a, &b, NULL, &c);
    if (st == dnnl_success)
        st = dnnl_primitive_attr_create(&attr);
    if (st == dnnl_success)
        st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (st == dnnl_success)
        st = dnnl_primitive_desc_create(&pd, &desc, attr, impl->engine, NULL);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    const dnnl_memory_desc_t *smd = pd ? dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0) : NULL;
    size_t need = smd ? dnnl_memory_desc_get_size(smd) : 0;
    if (st == dnnl_success && need > 0)
        st = dnnl_memory_create(&mm->scratch, smd, impl->engine, DNNL_MEMORY_NONE);
    if (st == dnnl_success)
        st = dnnl_primitive_create(&mm->prim, pd);
    if (st == dnnl_success)
        st = dnnl_memory_create(&mm->a, &a, impl->engine, DNNL_MEMORY_NONE);
    if (st == dnnl_success)
        st = dnnl_memory_create(&mm->b, &b, impl->engine, DNNL_MEMORY_NONE);
    if (st == dnnl_success)
        st = dnnl_memory_create(&mm->c, &c, impl->engine, DNNL_MEMORY_NONE);
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    if (st != dnnl_success)
        return hallu_error_set(err, HALLU_ERR_BACKEND, "conv2d_plan_create: bf16 weight-gradient matmul (%d x %lld x "
                               "%lld) failed (oneDNN status %d)", g->cout, (long long)kkc, (long long)rows, (int)st);
    return cpu_shared_reserve(&impl->dnnl_scratch, &impl->dnnl_scratch_bytes, need, "oneDNN scratchpad", err);
}

static void matmul_free(cpu_matmul *mm)
{
    if (mm->prim)
        dnnl_primitive_destroy(mm->prim);
    dnnl_memory_t mems[] = { mm->a, mm->b, mm->c, mm->scratch };
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i])
            dnnl_memory_destroy(mems[i]);
    memset(mm, 0, sizeof *mm);
}

hallu_status cpu_conv_gemm_init(cpu_impl *impl, const hallu_conv2d_geom *g, int bf16, cpu_conv_gemm *cg,
                                hallu_error *err)
{
    int pix = g->oh * g->ow;
    cg->bf16 = bf16;
    cg->chunk = cpu_images_per_chunk(bf16 ? GEMM_ROWS_BF16 : GEMM_ROWS, pix, g->n);
    size_t kkc = (size_t)g->k * g->k * g->cin, elem = bf16 ? sizeof(uint16_t) : sizeof(float);
    cg->dw_ohwi = hallu_alloc((size_t)g->cout * kkc * sizeof(float), "conv2d weight gradient", err);
    if (!cg->dw_ohwi)
        return HALLU_ERR_OOM;
    hallu_status s = cpu_shared_reserve_floats(&impl->col, &impl->col_bytes, (size_t)cg->chunk * pix * kkc * elem,
                                               "conv2d im2col buffer", err);
    int tail = g->n % cg->chunk;
    if (s == HALLU_OK && bf16)
        s = matmul_create(impl, g, &cg->mm[0], (int64_t)cg->chunk * pix, err);
    if (s == HALLU_OK && bf16 && tail)
        s = matmul_create(impl, g, &cg->mm[1], (int64_t)tail * pix, err);
    return s;
}

void cpu_conv_gemm_free(cpu_conv_gemm *cg)
{
    hallu_free(cg->dw_ohwi);
    cg->dw_ohwi = NULL;
    matmul_free(&cg->mm[0]);
    matmul_free(&cg->mm[1]);
}

/* col[p][(ky*k + kx)*cin + ci] = x[img][iy][ix][ci] (0 in the padding) for the
 * output pixels p of images [img0, img0 + cnt); elements of `elem` bytes. */
static void im2col(void *col, const void *x, size_t elem, const hallu_conv2d_geom *g, int img0, int cnt, int nt)
{
    int64_t pix = (int64_t)g->oh * g->ow, rows = cnt * pix, kkc = (int64_t)g->k * g->k * g->cin;
    size_t run = (size_t)g->cin * elem;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t p = 0; p < rows; p++) {
        int64_t img = img0 + p / pix;
        int oy = (int)(p % pix) / g->ow, ox = (int)(p % pix) % g->ow;
        char *dst = (char *)col + p * kkc * (int64_t)elem;
        for (int ky = 0; ky < g->k; ky++) {
            int iy = oy * g->stride - g->pad + ky;
            for (int kx = 0; kx < g->k; kx++, dst += run) {
                int ix = ox * g->stride - g->pad + kx;
                if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w)
                    memset(dst, 0, run);
                else
                    memcpy(dst, (const char *)x + ((img * g->h + iy) * g->w + ix) * (int64_t)run, run);
            }
        }
    }
}

/* dw[co][ci][ky][kx] += ohwi[co][ky][kx][ci] */
static void add_ohwi(float *dw, const float *ohwi, const hallu_conv2d_geom *g, int nt)
{
    int kk = g->k * g->k;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int co = 0; co < g->cout; co++) {
        const float *src = ohwi + (int64_t)co * kk * g->cin;
        float *d = dw + (int64_t)co * g->cin * kk;
        for (int s = 0; s < kk; s++)
            for (int ci = 0; ci < g->cin; ci++)
                d[ci * kk + s] += src[s * g->cin + ci];
    }
}

/* One bf16 chunk: its own matmul result, added into dw (no accumulation across
 * chunks inside oneDNN, so one primitive per chunk length suffices). */
static void matmul_chunk(cpu_impl *impl, const hallu_conv2d_geom *g, cpu_conv_gemm *cg, cpu_matmul *mm, float *dw,
                         const uint16_t *dy)
{
    dnnl_memory_set_data_handle(mm->a, (void *)dy);
    dnnl_memory_set_data_handle(mm->b, impl->col);
    dnnl_memory_set_data_handle(mm->c, cg->dw_ohwi);
    dnnl_exec_arg_t args[4] = { { DNNL_ARG_SRC, mm->a }, { DNNL_ARG_WEIGHTS, mm->b }, { DNNL_ARG_DST, mm->c } };
    int nargs = 3;
    if (mm->scratch) {
        dnnl_memory_set_data_handle(mm->scratch, impl->dnnl_scratch);
        args[nargs++] = (dnnl_exec_arg_t){ DNNL_ARG_SCRATCHPAD, mm->scratch };
    }
    cpu_check(impl, dnnl_primitive_execute(mm->prim, impl->stream, nargs, args),
              "conv2d bf16 weight gradient: dnnl_primitive_execute");
    cpu_check(impl, dnnl_stream_wait(impl->stream), "conv2d bf16 weight gradient: dnnl_stream_wait");
    add_ohwi(dw, cg->dw_ohwi, g, impl->num_threads);
}

void cpu_conv_gemm_backward_weights(cpu_impl *impl, const hallu_conv2d_geom *g, cpu_conv_gemm *cg, float *dw,
                                    const void *dy, const void *x)
{
    int64_t pix = (int64_t)g->oh * g->ow, kkc = (int64_t)g->k * g->k * g->cin;
    size_t elem = cg->bf16 ? sizeof(uint16_t) : sizeof(float);
    for (int img0 = 0; img0 < g->n; img0 += cg->chunk) {
        int cnt = g->n - img0 < cg->chunk ? g->n - img0 : cg->chunk;
        im2col(impl->col, x, elem, g, img0, cnt, impl->num_threads);
        if (cg->bf16) {
            matmul_chunk(impl, g, cg, &cg->mm[cnt == cg->chunk ? 0 : 1], dw,
                         (const uint16_t *)dy + img0 * pix * g->cout);
            continue;
        }
        /* ohwi[cout][kkc] (+)= dy[rows][cout]^T col[rows][kkc] */
        cpu_check(impl,
                  dnnl_sgemm('T', 'N', g->cout, kkc, cnt * pix, 1.0f, (const float *)dy + img0 * pix * g->cout,
                             g->cout, impl->col, kkc, img0 == 0 ? 0.0f : 1.0f, cg->dw_ohwi, kkc),
                  "conv2d weight gradient: dnnl_sgemm");
    }
    if (!cg->bf16)
        add_ohwi(dw, cg->dw_ohwi, g, impl->num_threads);
}
