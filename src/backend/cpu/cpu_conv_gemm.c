/* Convolutions as im2col + a oneDNN GEMM, for layers where oneDNN 2.6's
 * direct kernels are slow. Works on NHWC buffers directly (no layout reorders).
 * fp32: the weight gradient of layers with few output pixels (ResNet's last
 * stages), where the direct AVX2 kernel reaches under half of sgemm's
 * throughput; im2col + sgemm.
 * bf16 (issue 28), on the bf16 x and dy the plan's boundary reorders write:
 * - the weight gradient of the same layers and of the stride-2 1x1
 *   downsampling layers, where the AMX backward-weights kernel ran at 4-15% of
 *   the bf16 peak while oneDNN's bf16 matmul (also AMX) reaches 60-70% on the
 *   same products: im2col, then dw^T-shaped [cout][k*k*cin] = dy^T col, dy^T
 *   a transposed view of the NHWC gradient;
 * - forward and input gradient of 3x3 layers with <= 16 output pixels (the
 *   last stage at 32x32), where the direct kernels ran at 25-35%:
 *   y = col W^T, and dcol = dy W then col2im (a scatter-add, per image, in a
 *   fixed order), with W as bf16 [cout][k][k][cin] converted per call; where
 *   the layer is its own transpose's geometry (stride 1, cin == cout), dx as
 *   that forward instead: im2col(dy) times the flipped weights;
 * - the input gradient of the stride-2 1x1 downsampling layers (oneDNN's ran
 *   at 5-8% of the peak): dcol = dy W, then col2im writes it to the even
 *   pixels and zeros to the others. */
#include "backend/cpu/cpu_internal.h"

#include <omp.h>
#include <string.h>

/* Output pixels per GEMM: large enough to run near peak. bf16 matmuls want a
 * longer reduction (AMX tiles; measured 1.3-1.7x faster at 4096-16384 than at
 * 2048) and their im2col rows are half the bytes. */
enum { GEMM_ROWS = 2048, GEMM_ROWS_BF16 = 16384 };

int cpu_conv_gemm_passes(const hallu_conv2d_geom *g, int bf16)
{
    int pix = g->oh * g->ow, passes = 0;
    if ((g->k > 1 && pix <= 64) || (bf16 && g->k == 1 && g->stride > 1))
        passes |= CPU_GEMM_DW;
    if (bf16 && g->k > 1 && pix <= 16)
        passes |= CPU_GEMM_FWD | CPU_GEMM_DX;
    if (bf16 && g->k == 1 && g->stride > 1)
        passes |= CPU_GEMM_DX;
    return passes;
}

/* C[b][m][n] (fp32, or bf16 when c16; += C when accumulate) = A[b][m][k] B[b][k][n]
 * in bf16 for b < batch, A stored [k][m] when a_trans and B stored [n][k] when
 * b_trans; handles set per call. batch 1 makes 2-D descriptors. */
hallu_status cpu_matmul_create(cpu_impl *impl, cpu_matmul *mm, int64_t batch, int64_t m, int64_t n, int64_t k,
                               int a_trans, int b_trans, int c16, int accumulate, hallu_error *err)
{
    int nd = batch > 1 ? 3 : 2, o = nd - 2;   /* o: index of the m / k row dimension */
    dnnl_dims_t a_dims = { batch }, b_dims = { batch }, c_dims = { batch }, a_strides = { m * k }, b_strides = { k * n };
    a_dims[o] = m, a_dims[o + 1] = k, b_dims[o] = k, b_dims[o + 1] = n, c_dims[o] = m, c_dims[o + 1] = n;
    a_strides[o] = a_trans ? 1 : k, a_strides[o + 1] = a_trans ? m : 1;
    b_strides[o] = b_trans ? 1 : n, b_strides[o + 1] = b_trans ? k : 1;
    dnnl_memory_desc_t a, b, c;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_matmul_desc_t desc;
    hallu_status s = HALLU_OK;
    dnnl_status_t st = dnnl_memory_desc_init_by_strides(&a, nd, a_dims, dnnl_bf16, a_strides);
    if (st == dnnl_success)
        st = dnnl_memory_desc_init_by_strides(&b, nd, b_dims, dnnl_bf16, b_strides);
    if (st == dnnl_success)
        st = dnnl_memory_desc_init_by_tag(&c, nd, c_dims, c16 ? dnnl_bf16 : dnnl_f32, nd == 3 ? dnnl_abc : dnnl_ab);
    if (st == dnnl_success)
        st = dnnl_matmul_desc_init(&desc, &a, &b, NULL, &c);
    if (st == dnnl_success)
        st = dnnl_primitive_attr_create(&attr);
    if (st == dnnl_success)
        st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (st == dnnl_success && accumulate) {
        st = dnnl_post_ops_create(&po);
        if (st == dnnl_success)
            st = dnnl_post_ops_append_sum(po, 1.0f);
        if (st == dnnl_success)
            st = dnnl_primitive_attr_set_post_ops(attr, po);
    }
    if (st == dnnl_success)
        st = dnnl_primitive_desc_create(&pd, &desc, attr, impl->engine, NULL);
    if (po)
        dnnl_post_ops_destroy(po);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    if (st == dnnl_success)
        s = cpu_prim_create(impl, &mm->p, pd, &st, err);
    if (s != HALLU_OK)
        return s;
    if (st == dnnl_success)
        st = dnnl_memory_create(&mm->a, &a, impl->engine, DNNL_MEMORY_NONE);
    if (st == dnnl_success)
        st = dnnl_memory_create(&mm->b, &b, impl->engine, DNNL_MEMORY_NONE);
    if (st == dnnl_success)
        st = dnnl_memory_create(&mm->c, &c, impl->engine, DNNL_MEMORY_NONE);
    if (st != dnnl_success)
        return hallu_error_set(err, HALLU_ERR_BACKEND, "conv2d_plan_create: bf16 matmul %lld x %lld x %lld x %lld "
                               "failed (oneDNN status %d)", (long long)batch, (long long)m, (long long)n,
                               (long long)k, (int)st);
    return HALLU_OK;
}

void cpu_matmul_free(cpu_matmul *mm)
{
    cpu_prim_free(&mm->p);
    dnnl_memory_t mems[] = { mm->a, mm->b, mm->c };
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i])
            dnnl_memory_destroy(mems[i]);
    memset(mm, 0, sizeof *mm);
}

void cpu_matmul_run(cpu_impl *impl, cpu_matmul *mm, const void *a, const void *b, void *c)
{
    dnnl_status_t st = cpu_matmul_exec_on(mm, impl->stream, impl->dnnl_scratch, a, b, c);
    cpu_check(impl, st, "conv2d bf16 matmul: execute and wait");
}

dnnl_status_t cpu_matmul_exec_on(cpu_matmul *mm, dnnl_stream_t stream, void *scratch, const void *a, const void *b,
                                 void *c)
{
    dnnl_memory_set_data_handle(mm->a, (void *)a);
    dnnl_memory_set_data_handle(mm->b, (void *)b);
    dnnl_memory_set_data_handle(mm->c, c);
    dnnl_exec_arg_t args[4] = { { DNNL_ARG_SRC, mm->a }, { DNNL_ARG_WEIGHTS, mm->b }, { DNNL_ARG_DST, mm->c } };
    dnnl_status_t st = cpu_prim_exec_on(&mm->p, stream, scratch, args, 3);
    return st == dnnl_success ? dnnl_stream_wait(stream) : st;
}

/* The pass's matmuls for `chunk` images ([0]) and the shorter last chunk ([1]). */
static hallu_status matmul_pair(cpu_impl *impl, const hallu_conv2d_geom *g, int chunk, cpu_matmul *mm, int pass,
                                int c16, hallu_error *err)
{
    int64_t pix = (int64_t)g->oh * g->ow, kkc = (int64_t)g->k * g->k * g->cin;
    int tail = g->n % chunk;
    hallu_status s = HALLU_OK;
    for (int i = 0; i < 2 && s == HALLU_OK; i++) {
        int64_t rows = (i == 0 ? chunk : tail) * pix;
        if (rows == 0)
            break;
        if (pass == CPU_GEMM_DW)   /* dw[cout][kkc] = dy^T col */
            s = cpu_matmul_create(impl, &mm[i], 1, g->cout, kkc, rows, 1, 0, 0, 0, err);
        else if (pass == CPU_GEMM_FWD)   /* y[rows][cout] = col W^T */
            s = cpu_matmul_create(impl, &mm[i], 1, rows, g->cout, kkc, 0, 1, c16, 0, err);
        else   /* dcol[rows][kkc] = dy W */
            s = cpu_matmul_create(impl, &mm[i], 1, rows, kkc, g->cout, 0, 0, c16, 0, err);
    }
    return s;
}

hallu_status cpu_conv_gemm_init(cpu_impl *impl, const hallu_conv2d_geom *g, int bf16, int passes, cpu_conv_gemm *cg,
                                hallu_error *err)
{
    int pix = g->oh * g->ow;
    cg->bf16 = bf16;
    cg->passes = passes;
    cg->chunk = cpu_images_per_chunk(bf16 ? GEMM_ROWS_BF16 : GEMM_ROWS, pix, g->n);
    size_t kkc = (size_t)g->k * g->k * g->cin, rows = (size_t)cg->chunk * pix;
    /* the shared buffer holds a chunk's im2col rows, or its fp32 dcol rows */
    size_t col_bytes = rows * kkc * (bf16 ? sizeof(uint16_t) : sizeof(float));
    if (passes & CPU_GEMM_DX)
        col_bytes = rows * kkc * sizeof(float);
    hallu_status s = cpu_shared_reserve_floats(&impl->col, &impl->col_bytes, col_bytes, "conv2d im2col buffer", err);
    if (s == HALLU_OK && (passes & CPU_GEMM_DW)) {
        cg->dw_ohwi = hallu_alloc((size_t)g->cout * kkc * sizeof(float), "conv2d weight gradient", err);
        s = cg->dw_ohwi ? HALLU_OK : HALLU_ERR_OOM;
    }
    if (s == HALLU_OK && (passes & (CPU_GEMM_FWD | CPU_GEMM_DX))) {
        cg->w_ohwi = hallu_alloc((size_t)g->cout * kkc * sizeof(uint16_t), "conv2d bf16 weights", err);
        s = cg->w_ohwi ? HALLU_OK : HALLU_ERR_OOM;
    }
    if (!bf16)
        return s;
    if (s == HALLU_OK && (passes & CPU_GEMM_DW))
        s = matmul_pair(impl, g, cg->chunk, cg->mm_dw, CPU_GEMM_DW, 0, err);
    if (s == HALLU_OK && (passes & CPU_GEMM_FWD))
        s = matmul_pair(impl, g, cg->chunk, cg->mm_fwd, CPU_GEMM_FWD, 0, err);
    if (s == HALLU_OK && bf16 && (passes & CPU_GEMM_FWD))
        s = matmul_pair(impl, g, cg->chunk, cg->mm_fwd16, CPU_GEMM_FWD, 1, err);
    if (s == HALLU_OK && (passes & CPU_GEMM_DX))
        s = matmul_pair(impl, g, cg->chunk, cg->mm_dx, CPU_GEMM_DX, 0, err);
    if (s == HALLU_OK && (passes & CPU_GEMM_DX) && g->k == 1)
        s = matmul_pair(impl, g, cg->chunk, cg->mm_dx16, CPU_GEMM_DX, 1, err);
    return s;
}

void cpu_conv_gemm_free(cpu_conv_gemm *cg)
{
    hallu_free(cg->dw_ohwi);
    hallu_free(cg->w_ohwi);
    cg->dw_ohwi = NULL;
    cg->w_ohwi = NULL;
    for (int i = 0; i < 2; i++) {
        cpu_matmul_free(&cg->mm_dw[i]);
        cpu_matmul_free(&cg->mm_fwd[i]);
        cpu_matmul_free(&cg->mm_fwd16[i]);
        cpu_matmul_free(&cg->mm_dx[i]);
        cpu_matmul_free(&cg->mm_dx16[i]);
    }
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

static CPU_HOT void add_run(float *restrict d, const float *restrict s, int n)
{
    for (int i = 0; i < n; i++)
        d[i] += s[i];
}

/* dx[img] = the sum of dcol's rows over the taps that read each input pixel,
 * for images [img0, img0 + cnt): the transpose of im2col, in a fixed order. */
static void col2im(float *dx, const float *dcol, const hallu_conv2d_geom *g, int img0, int cnt, int nt)
{
    int64_t pix = (int64_t)g->oh * g->ow, kkc = (int64_t)g->k * g->k * g->cin, img_elems = (int64_t)g->h * g->w * g->cin;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int i = 0; i < cnt; i++) {
        float *d = dx + (img0 + i) * img_elems;
        memset(d, 0, (size_t)img_elems * sizeof(float));
        for (int64_t q = 0; q < pix; q++) {
            int oy = (int)(q / g->ow), ox = (int)(q % g->ow);
            const float *src = dcol + (i * pix + q) * kkc;
            for (int ky = 0; ky < g->k; ky++) {
                int iy = oy * g->stride - g->pad + ky;
                for (int kx = 0; kx < g->k; kx++, src += g->cin) {
                    int ix = ox * g->stride - g->pad + kx;
                    if (iy >= 0 && iy < g->h && ix >= 0 && ix < g->w)
                        add_run(d + ((int64_t)iy * g->w + ix) * g->cin, src, g->cin);
                }
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

/* ohwi[co][ky][kx][ci] = bf16(w[co][ci][ky][kx]) */
static void weights_to_ohwi_bf16(uint16_t *ohwi, const float *w, const hallu_conv2d_geom *g, int nt)
{
    int kk = g->k * g->k;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int co = 0; co < g->cout; co++) {
        const float *src = w + (int64_t)co * g->cin * kk;
        uint16_t *d = ohwi + (int64_t)co * kk * g->cin;
        for (int s = 0; s < kk; s++)
            for (int ci = 0; ci < g->cin; ci++)
                d[s * g->cin + ci] = cpu_bf16_round(src[ci * kk + s]);
    }
}

static int chunk_len(const hallu_conv2d_geom *g, const cpu_conv_gemm *cg, int img0)
{
    return g->n - img0 < cg->chunk ? g->n - img0 : cg->chunk;
}

/* y (or y16) = im2col(x) w_ohwi^T, chunk by chunk, with the weights already in cg->w_ohwi. */
static void forward_products(cpu_impl *impl, const hallu_conv2d_geom *g, cpu_conv_gemm *cg, float *y, uint16_t *y16,
                             const uint16_t *x)
{
    int64_t pix = (int64_t)g->oh * g->ow;
    for (int img0 = 0; img0 < g->n; img0 += cg->chunk) {
        int cnt = chunk_len(g, cg, img0);
        im2col(impl->col, x, sizeof(uint16_t), g, img0, cnt, impl->num_threads);
        int last = cnt == cg->chunk ? 0 : 1;
        if (y16)
            cpu_matmul_run(impl, &cg->mm_fwd16[last], impl->col, cg->w_ohwi, y16 + img0 * pix * g->cout);
        else
            cpu_matmul_run(impl, &cg->mm_fwd[last], impl->col, cg->w_ohwi, y + img0 * pix * g->cout);
    }
}

void cpu_conv_gemm_forward(cpu_impl *impl, const hallu_conv2d_geom *g, cpu_conv_gemm *cg, float *y, uint16_t *y16,
                           const uint16_t *x, const float *w)
{
    weights_to_ohwi_bf16(cg->w_ohwi, w, g, impl->num_threads);
    forward_products(impl, g, cg, y, y16, x);
}

/* ohwi[ci][ky][kx][co] = bf16(w[co][ci][k-1-ky][k-1-kx]): the weights of the
 * forward convolution that is this layer's transpose (cin == cout). */
static void weights_flipped_to_ohwi_bf16(uint16_t *ohwi, const float *w, const hallu_conv2d_geom *g, int nt)
{
    int kk = g->k * g->k, c = g->cin;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int ci = 0; ci < c; ci++) {
        uint16_t *d = ohwi + (int64_t)ci * kk * c;
        for (int s = 0; s < kk; s++)
            for (int co = 0; co < c; co++)
                d[s * c + co] = cpu_bf16_round(w[((int64_t)co * c + ci) * kk + kk - 1 - s]);
    }
}

/* A stride-1 layer with cin == cout whose output keeps its input's size is its
 * own transpose's geometry: dx = conv(dy, flipped w) by the forward's im2col
 * and matmul, which writes dx once instead of a 9x larger fp32 dcol that
 * col2im reads back (same products, summed in the matmul's order). */
static int dx_as_forward(const hallu_conv2d_geom *g, const cpu_conv_gemm *cg)
{
    return (cg->passes & CPU_GEMM_FWD) && g->stride == 1 && g->cin == g->cout && 2 * g->pad == g->k - 1;
}

int cpu_conv_gemm_dx16_ok(const hallu_conv2d_geom *g, const cpu_conv_gemm *cg)
{
    return cg->bf16 && (cg->passes & CPU_GEMM_DX) && (dx_as_forward(g, cg) || cg->mm_dx16[0].p.prim);
}

/* col2im of a 1x1 layer (each input pixel gets at most one row of dcol) in
 * bf16: dx16 = the bf16 dcol rows at the pixels the layer reads, 0 elsewhere. */
static void col2im_k1_x16(uint16_t *dx16, const uint16_t *dcol, const hallu_conv2d_geom *g, int img0, int cnt, int nt)
{
    int64_t pix = (int64_t)g->oh * g->ow, img_elems = (int64_t)g->h * g->w * g->cin;
    size_t run = (size_t)g->cin * sizeof(uint16_t);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int i = 0; i < cnt; i++) {
        uint16_t *d = dx16 + (img0 + i) * img_elems;
        memset(d, 0, (size_t)img_elems * sizeof(uint16_t));
        for (int64_t q = 0; q < pix; q++) {
            int iy = (int)(q / g->ow) * g->stride - g->pad, ix = (int)(q % g->ow) * g->stride - g->pad;
            if (iy >= 0 && iy < g->h && ix >= 0 && ix < g->w)
                memcpy(d + ((int64_t)iy * g->w + ix) * g->cin, dcol + (i * pix + q) * g->cin, run);
        }
    }
}

void cpu_conv_gemm_backward_data(cpu_impl *impl, const hallu_conv2d_geom *g, cpu_conv_gemm *cg, float *dx,
                                 uint16_t *dx16, const uint16_t *dy, const float *w)
{
    int64_t pix = (int64_t)g->oh * g->ow;
    if (dx_as_forward(g, cg)) {   /* cin == cout: dx and dy have the forward's shapes */
        weights_flipped_to_ohwi_bf16(cg->w_ohwi, w, g, impl->num_threads);
        forward_products(impl, g, cg, dx, dx16, dy);
        return;
    }
    weights_to_ohwi_bf16(cg->w_ohwi, w, g, impl->num_threads);
    for (int img0 = 0; img0 < g->n; img0 += cg->chunk) {
        int cnt = chunk_len(g, cg, img0), last = cnt == cg->chunk ? 0 : 1;
        if (dx16) {   /* 1x1 (cpu_conv_gemm_dx16_ok): one bf16 product per pixel */
            cpu_matmul_run(impl, &cg->mm_dx16[last], dy + img0 * pix * g->cout, cg->w_ohwi, impl->col);
            col2im_k1_x16(dx16, (const uint16_t *)impl->col, g, img0, cnt, impl->num_threads);
            continue;
        }
        cpu_matmul_run(impl, &cg->mm_dx[last], dy + img0 * pix * g->cout, cg->w_ohwi, impl->col);
        col2im(dx, impl->col, g, img0, cnt, impl->num_threads);
    }
}

void cpu_conv_gemm_backward_weights(cpu_impl *impl, const hallu_conv2d_geom *g, cpu_conv_gemm *cg, float *dw,
                                    const void *dy, const void *x)
{
    int64_t pix = (int64_t)g->oh * g->ow, kkc = (int64_t)g->k * g->k * g->cin;
    size_t elem = cg->bf16 ? sizeof(uint16_t) : sizeof(float);
    for (int img0 = 0; img0 < g->n; img0 += cg->chunk) {
        int cnt = chunk_len(g, cg, img0);
        im2col(impl->col, x, elem, g, img0, cnt, impl->num_threads);
        if (cg->bf16) {
            /* each chunk's own product, added into dw: one primitive per chunk length */
            cpu_matmul_run(impl, &cg->mm_dw[cnt == cg->chunk ? 0 : 1], (const uint16_t *)dy + img0 * pix * g->cout,
                       impl->col, cg->dw_ohwi);
            add_ohwi(dw, cg->dw_ohwi, g, impl->num_threads);
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
