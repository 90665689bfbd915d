/* 3x3 stride-1 pad-1 convolutions by Winograd F(2x2, 3x3), forward and both
 * backward passes, on the caller's NHWC buffers. The 16 GEMMs of a pass go to
 * oneDNN's sgemm, one per OpenMP thread at a time (nested inside our parallel
 * region it runs single-threaded), so no second thread pool competes for cores.
 *
 * Why: oneDNN 2.6 has Winograd kernels only for AVX-512 cores; on AVX2 its
 * direct 3x3 kernels already run near sgemm speed, so the only way left to a
 * faster step is fewer multiplications. F(2x2, 3x3) does a 2x2 output tile with
 * 16 products per channel pair instead of 36 (2.25x fewer), and its transforms
 * use only 0, +-1 and +-1/2, so float32 results stay within ~1e-6 of direct.
 * On ResNet-18's CIFAR layers it is 1.3-2.6x faster than oneDNN's direct
 * kernels (bench/bench_ops), most where maps are small and channels many.
 *
 * Notation (Lavin & Gray 2016): per tile t and channel pair,
 *   forward          Y_t = A^T [ (G g G^T) . (B^T d_t B) ] A
 *   backward data    the forward pass of dY with g rotated 180 degrees and its
 *                    channel axes swapped
 *   backward weights dg = G^T [ sum_t (A dY_t A^T) . (B^T d_t B) ] G
 * where "." is the element-wise product of 4x4 matrices; summed over channels
 * the element-wise products become 16 GEMMs, one per matrix element e.
 * Buffers: V [16][tiles][c], M [16][tiles][c], U [16][c][c'] (shared by all
 * plans, grown at plan creation; plans run one at a time). Tiles are processed
 * in chunks of whole images to bound the buffers.
 *
 * bf16 plans (CPUs without AMX) with few channels take "block" passes instead:
 * each thread runs its own share of the batch's tiles through the input
 * transform, one batched oneDNN matmul (single-threaded inside our parallel
 * region, on the thread's own stream and scratchpad) and the inverse, about
 * 130 tiles at a time, so that V and M never leave the thread's L2. By chunks,
 * the transforms wrote V and M out to L3 (4 MiB each per 2048-tile chunk at
 * 64 channels) and read them back: a third of a layer's time went to the
 * transforms. See bf16_passes for where each way was faster. */
#include "backend/cpu/cpu_internal.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Tiles per chunk. Small chunks keep a chunk's V and M (16 x tiles x channels
 * each) in the last-level cache between the transforms and the GEMMs: 512 tiles
 * were 1.2-1.5x faster than 4096 at 64 and 128 channels (bench/bench_ops). But
 * each chunk re-reads all 16 weight matrices U[e], so chunks are kept at least
 * twice as tall as U[e] is wide: at 512 channels 512-tile chunks were 1.4x
 * slower than one 1024-tile chunk. */
static int wino_rows(const hallu_conv2d_geom *g)
{
    int c = g->cin > g->cout ? g->cin : g->cout;
    return 2 * c > 512 ? 2 * c : 512;
}

/* Few channels make the GEMMs too thin to pay for the transforms. Outputs under
 * 4x4 are mostly tile padding (a 1x1 output costs 16 products instead of 9),
 * and there the transforms' extra rounding (2-4x direct's, ~3e-7 relative) was
 * amplified past 1e-4 by SimSiam's parity test (batch 8 through 1x1 maps). */
int cpu_wino_wanted(const hallu_conv2d_geom *g)
{
    return g->k == 3 && g->stride == 1 && g->pad == 1 && g->cin >= 16 && g->cout >= 16 && g->oh >= 4 && g->ow >= 4;
}

/* Elements from one of a chunk's 16 V or M planes to the next (fp32): rows x c
 * and one cache line more. Planes rows x c apart start at the same offset in
 * their pages, so a tile's 16 stores (and the GEMMs' reads) all fall in one L1
 * set and, as the pages happen to land, in few L2 sets: in some processes the
 * weight-gradient pass of the 64-channel layers then ran 2x slower (the bf16
 * blocks' 130 rows avoid the same: bf16_passes). */
enum { WINO_PLANE_PAD = 16 };
static size_t plane_elems(size_t rows, int c) { return rows * (size_t)c + WINO_PLANE_PAD; }

static int tiles_per_image(const hallu_conv2d_geom *g)
{
    return ((g->oh + 1) / 2) * ((g->ow + 1) / 2);
}

/* bf16 chunks: alone, the batched matmul ran 1.2x faster at 2048 tile rows
 * than at 512 with 64 channels (AVX512-BF16, 2 threads: 320 against 273
 * GFLOP/s); in the training step 512 and 4096 were no faster. */
static int wino_rows_bf16(const hallu_conv2d_geom *g)
{
    int c = g->cin > g->cout ? g->cin : g->cout;
    return 2 * c > 2048 ? 2 * c : 2048;
}

/* HALLU_CPU_WINOGRAD: how bf16 plans take 3x3 stride-1 layers, read at plan
 * creation. Unset or "auto": as measured best (bf16 Winograd where the CPU has
 * no AMX, block or chunked passes by channel count: bf16_passes); "chunks" or
 * "blocks" force that way for every pass (tests cover both on small layers;
 * A/B measurements); "off": no bf16 Winograd (the direct products, e.g. to
 * measure the machine's bf16 peak). */
typedef enum { WINO_AUTO, WINO_CHUNKS, WINO_BLOCKS, WINO_OFF } wino_mode;

static wino_mode wino_mode_of_env(void)
{
    const char *m = getenv("HALLU_CPU_WINOGRAD");
    if (!m)
        return WINO_AUTO;
    return strcmp(m, "chunks") == 0 ? WINO_CHUNKS : strcmp(m, "blocks") == 0 ? WINO_BLOCKS
         : strcmp(m, "off") == 0 ? WINO_OFF : WINO_AUTO;
}

int cpu_wino_bf16_wanted(const cpu_impl *impl, const hallu_conv2d_geom *g)
{
#if CPU_HAVE_BF16_CVT
    return impl->bf16_winograd && wino_mode_of_env() != WINO_OFF && cpu_has_bf16_cvt() && cpu_wino_wanted(g) &&
           g->cin % 16 == 0 && g->cout % 16 == 0;
#else
    (void)impl, (void)g;
    return 0;
#endif
}

/* The bf16 plan's batched matmuls ([0] a full chunk, [1] the shorter last one). */
static hallu_status bf16_matmuls(cpu_impl *impl, const hallu_conv2d_geom *g, cpu_wino *cw, int per_image,
                                 hallu_error *err)
{
    hallu_status s = HALLU_OK;
    for (int i = 0; i < 2 && s == HALLU_OK; i++) {
        int64_t rows = (int64_t)(i == 0 ? cw->chunk : g->n % cw->chunk) * per_image;
        if (rows == 0)
            break;
        if (!cw->blk)   /* M = V U; dX's M = V(dy) U(flipped w) */
            s = cpu_matmul_create(impl, &cw->mm_fwd[i], 16, rows, g->cout, g->cin, 0, 0, 0, 0, err);
        if (s == HALLU_OK && !cw->blk)
            s = cpu_matmul_create(impl, &cw->mm_dx[i], 16, rows, g->cin, g->cout, 0, 0, 0, 0, err);
        if (s == HALLU_OK && !cw->blk_dw)   /* dU += dM^T V */
            s = cpu_matmul_create(impl, &cw->mm_dw[i], 16, g->cout, g->cin, rows, 1, 0, 0, 1, err);
    }
    return s;
}

/* How a bf16 plan's passes go through the tiles: by per-thread blocks (blk,
 * blk_dw rows) or by chunks (0); HALLU_CPU_WINOGRAD can force either. */
static void bf16_passes(const hallu_conv2d_geom *g, int nthr, cpu_wino *cw)
{
    /* Rows per block: 128 rows would put the 16 planes of V and M a multiple of
     * 4 KiB apart, so that the transforms' 16 concurrent streams share L1 sets;
     * 130 shifts them (64 channels: 64 rows gained nothing, 66 and 130 14-16%).
     * The weight gradient's blocks are longer: each one adds into the thread's
     * whole dU (16 x cin x cout floats). */
    enum { BLK_ROWS = 130, BLK_ROWS_DW = 258 };
    /* Largest channel count where blocks were faster (AVX512-BF16, 2 threads,
     * ResNet-18's CIFAR layers, batch 256): forward and dx 12-16% up to 256
     * channels, 4-8% slower at 512 (U = 8 MiB is re-read by every block);
     * the weight gradient 16-22% up to 128, slower from 256 (each thread's dU
     * of 4 MiB and more, zeroed and summed). */
    enum { BLK_MAX_C = 256, BLK_MAX_C_DW = 128 };
    wino_mode mode = wino_mode_of_env();
    int c = g->cin > g->cout ? g->cin : g->cout;
    int blocks = c <= BLK_MAX_C, blocks_dw = c <= BLK_MAX_C_DW;
    if (mode == WINO_CHUNKS)
        blocks = blocks_dw = 0;
    else if (mode == WINO_BLOCKS)
        blocks = blocks_dw = 1;
    /* no longer than a thread's share of the tiles: the rows past it are zeros */
    int64_t share = ((int64_t)g->n * tiles_per_image(g) + nthr - 1) / nthr;
    cw->blk = blocks ? (int)(share < BLK_ROWS ? share : BLK_ROWS) : 0;
    cw->blk_dw = blocks_dw ? (int)(share < BLK_ROWS_DW ? share : BLK_ROWS_DW) : 0;
}

/* The block passes' matmuls, one set per thread, and the backend's streams and
 * scratchpads of the threads, grown to fit them. */
static hallu_status blk_init(cpu_impl *impl, const hallu_conv2d_geom *g, cpu_wino *cw, hallu_error *err)
{
    int n = impl->num_threads;
    cw->thr = hallu_calloc((size_t)n * sizeof *cw->thr, "winograd per-thread matmuls", err);
    if (!cw->thr)
        return HALLU_ERR_OOM;
    cw->nthr = n;
    hallu_status s = HALLU_OK;
    size_t each = 0;
    for (int i = 0; i < n && s == HALLU_OK; i++) {
        cpu_wino_thread *t = &cw->thr[i];
        if (cw->blk) {
            s = cpu_matmul_create(impl, &t->fwd, 16, cw->blk, g->cout, g->cin, 0, 0, 0, 0, err);   /* M = V U */
            if (s == HALLU_OK)
                s = cpu_matmul_create(impl, &t->dx, 16, cw->blk, g->cin, g->cout, 0, 0, 0, 0, err);
        }
        if (s == HALLU_OK && cw->blk_dw)   /* dU += dM^T V */
            s = cpu_matmul_create(impl, &t->dw, 16, g->cout, g->cin, cw->blk_dw, 1, 0, 0, 1, err);
        const cpu_matmul *mms[3] = { &t->fwd, &t->dx, &t->dw };
        for (int k = 0; k < 3; k++)
            each = each > mms[k]->p.scratch_bytes ? each : mms[k]->p.scratch_bytes;
    }
    return s == HALLU_OK ? cpu_thread_dnnl_reserve(impl, each, err) : s;
}

hallu_status cpu_wino_init(cpu_impl *impl, const hallu_conv2d_geom *g, int bf16, cpu_wino *cw, hallu_error *err)
{
    int per_image = tiles_per_image(g);
    cw->bf16 = bf16;
    cw->chunk = cpu_images_per_chunk(bf16 ? wino_rows_bf16(g) : wino_rows(g), per_image, g->n);
    size_t cmax = (size_t)(g->cin > g->cout ? g->cin : g->cout);
    cw->blk = cw->blk_dw = 0;
    if (bf16)
        bf16_passes(g, impl->num_threads, cw);
    /* the chunked passes' V and M, or each thread's blocks (bf16, float M) */
    size_t rows = (size_t)(cw->blk > cw->blk_dw ? cw->blk : cw->blk_dw) * impl->num_threads;
    if (!cw->blk || !cw->blk_dw)
        rows = rows > (size_t)cw->chunk * per_image ? rows : (size_t)cw->chunk * per_image;
    size_t vm = 16 * plane_elems(rows, (int)cmax) * sizeof(float);
    hallu_status s = cpu_shared_reserve_floats(&impl->wino_v, &impl->wino_v_bytes, vm, "winograd input transforms", err);
    if (s == HALLU_OK)
        s = cpu_shared_reserve_floats(&impl->wino_m, &impl->wino_m_bytes, vm, "winograd products", err);
    if (s == HALLU_OK)
        s = cpu_shared_reserve_floats(&impl->wino_u, &impl->wino_u_bytes, 16 * (size_t)g->cin * g->cout * sizeof(float),
                 "winograd weights", err);
    if (s == HALLU_OK)
        s = cpu_shared_reserve_floats(&impl->wino_zero, &impl->wino_zero_bytes, cmax * sizeof(float), "winograd zero row", err);
    if (s == HALLU_OK)
        s = cpu_shared_reserve_floats(&impl->wino_spill, &impl->wino_spill_bytes, (size_t)impl->num_threads * 4 * cmax * sizeof(float),
                 "winograd spill rows", err);
    if (s == HALLU_OK && bf16)
        s = bf16_matmuls(impl, g, cw, per_image, err);
    if (s == HALLU_OK && cw->blk_dw)
        s = cpu_shared_reserve_floats(&impl->wino_du, &impl->wino_du_bytes,
                                      (size_t)impl->num_threads * 16 * g->cin * g->cout * sizeof(float),
                                      "winograd per-thread weight-gradient sums", err);
    if (s == HALLU_OK && (cw->blk || cw->blk_dw))
        s = blk_init(impl, g, cw, err);
    return s;
}

void cpu_wino_free(cpu_wino *cw)
{
    for (int i = 0; i < cw->nthr; i++) {
        cpu_matmul_free(&cw->thr[i].fwd);
        cpu_matmul_free(&cw->thr[i].dx);
        cpu_matmul_free(&cw->thr[i].dw);
    }
    hallu_free(cw->thr);
    cw->thr = NULL, cw->nthr = 0;
    for (int i = 0; i < 2; i++) {
        cpu_matmul_free(&cw->mm_fwd[i]);
        cpu_matmul_free(&cw->mm_dx[i]);
        cpu_matmul_free(&cw->mm_dw[i]);
    }
}

/* ---- transforms ---- */

/* One 3-point transform by G (4x3): o = G (a0, a1, a2), on floats or on GCC
 * vectors of them (the bf16 weight transform), same operations in the same order. */
#define G3(a0, a1, a2, o0, o1, o2, o3, half) \
    do { o0 = a0; o1 = half * (a0 + a1 + a2); o2 = half * (a0 - a1 + a2); o3 = a2; } while (0)

/* U[e][i][o] for GEMMs V[e] (tiles x ci) * U[e] (ci x co).
 * Forward: i = cin, o = cout, kernel w[o][i]. Backward data (flip): i = cout,
 * o = cin, kernel w[i][o] rotated by 180 degrees.
 * The loop over o vectorises (G3 on named scalars, U's rows contiguous in o,
 * the kernels gathered): one kernel at a time, the scalar transform was ~2% of
 * the fp32 step. */
CPU_HOT static void weights_transform(float *U, const float *w, int cin, int cout, int flip, int nt)
{
    int ni = flip ? cout : cin, no = flip ? cin : cout;
    size_t plane = (size_t)ni * no, ostep = flip ? 9 : (size_t)cin * 9;
    const float half = 0.5f;
    int r = flip ? 8 : 0, d = flip ? -1 : 1;   /* kernel element j at r + d * j */
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int i = 0; i < ni; i++) {
        const float *base = (flip ? w + (size_t)i * cin * 9 : w + (size_t)i * 9) + r;
        float *restrict u = U + (size_t)i * no;
#pragma omp simd
        for (int o = 0; o < no; o++) {
            const float *k = base + (size_t)o * ostep;
            float k0 = k[0], k1 = k[d], k2 = k[2 * d], k3 = k[3 * d], k4 = k[4 * d];
            float k5 = k[5 * d], k6 = k[6 * d], k7 = k[7 * d], k8 = k[8 * d];
            float t0, t1, t2, t3, t4, t5, t6, t7, t8, t9, t10, t11;
            G3(k0, k3, k6, t0, t3, t6, t9, half);   /* t = G k: 4x3, column by column */
            G3(k1, k4, k7, t1, t4, t7, t10, half);
            G3(k2, k5, k8, t2, t5, t8, t11, half);
            G3(t0, t1, t2, u[0 * plane + o], u[1 * plane + o], u[2 * plane + o], u[3 * plane + o], half);
            G3(t3, t4, t5, u[4 * plane + o], u[5 * plane + o], u[6 * plane + o], u[7 * plane + o], half);
            G3(t6, t7, t8, u[8 * plane + o], u[9 * plane + o], u[10 * plane + o], u[11 * plane + o], half);
            G3(t9, t10, t11, u[12 * plane + o], u[13 * plane + o], u[14 * plane + o], u[15 * plane + o], half);
        }
    }
}

/* One 4-point transform of each Winograd matrix, on named scalars so that the
 * per-channel loops around them vectorise (arrays there end up on the stack). */
#define BT4(a0, a1, a2, a3, o0, o1, o2, o3) \
    do { o0 = a0 - a2; o1 = a1 + a2; o2 = a2 - a1; o3 = a1 - a3; } while (0)
#define AT4(a0, a1, a2, a3, o0, o1) do { o0 = a0 + a1 + a2; o1 = a1 - a2 - a3; } while (0)
#define A2(a0, a1, o0, o1, o2, o3) do { o0 = a0; o1 = a0 + a1; o2 = a0 - a1; o3 = -a1; } while (0)

/* Pixel (img, iy, ix) of an NHWC activation of c channels, or `zero` outside. */
static inline const char *pixel_or(const void *a, size_t esz, int h, int w, int c, int img, int iy, int ix,
                                   const void *zero)
{
    if (iy < 0 || iy >= h || ix < 0 || ix >= w)
        return zero;
    return (const char *)a + (((size_t)img * h + iy) * w + ix) * c * esz;
}

/* V[e][t][0..c) = (B^T d B)[e] for the 4x4 patch d at rows 2ty-1.., cols 2tx-1..
 * of image img; pixels outside the image read the zero row. */
CPU_HOT static void input_tile(float *restrict V, size_t es, const float *x, const float *zero, int h, int w,
                               int c, int img, int ty, int tx)
{
    const float *p[16];
    for (int r = 0; r < 4; r++)
        for (int q = 0; q < 4; q++)
            p[r * 4 + q] = (const float *)pixel_or(x, sizeof *x, h, w, c, img, 2 * ty - 1 + r, 2 * tx - 1 + q, zero);
    const float *restrict d0 = p[0], *restrict d1 = p[1], *restrict d2 = p[2], *restrict d3 = p[3];
    const float *restrict d4 = p[4], *restrict d5 = p[5], *restrict d6 = p[6], *restrict d7 = p[7];
    const float *restrict d8 = p[8], *restrict d9 = p[9], *restrict d10 = p[10], *restrict d11 = p[11];
    const float *restrict d12 = p[12], *restrict d13 = p[13], *restrict d14 = p[14], *restrict d15 = p[15];
#pragma omp simd
    for (int ci = 0; ci < c; ci++) {
        float t0, t1, t2, t3, t4, t5, t6, t7, t8, t9, t10, t11, t12, t13, t14, t15;
        BT4(d0[ci], d4[ci], d8[ci], d12[ci], t0, t4, t8, t12);     /* B^T d, column by column */
        BT4(d1[ci], d5[ci], d9[ci], d13[ci], t1, t5, t9, t13);
        BT4(d2[ci], d6[ci], d10[ci], d14[ci], t2, t6, t10, t14);
        BT4(d3[ci], d7[ci], d11[ci], d15[ci], t3, t7, t11, t15);
        BT4(t0, t1, t2, t3, V[0 * es + ci], V[1 * es + ci], V[2 * es + ci], V[3 * es + ci]);   /* (.) B */
        BT4(t4, t5, t6, t7, V[4 * es + ci], V[5 * es + ci], V[6 * es + ci], V[7 * es + ci]);
        BT4(t8, t9, t10, t11, V[8 * es + ci], V[9 * es + ci], V[10 * es + ci], V[11 * es + ci]);
        BT4(t12, t13, t14, t15, V[12 * es + ci], V[13 * es + ci], V[14 * es + ci], V[15 * es + ci]);
    }
}

/* y (2x2 tile at 2ty, 2tx of image img) = A^T M A; pixels past the edge go to
 * spill rows (4 x c, one per position so that the output pointers never alias). */
CPU_HOT static void output_tile(float *y, const float *restrict M, size_t es, int oh, int ow, int c,
                                int img, int ty, int tx, float *spill)
{
    float *p[4];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            int oy = 2 * ty + i, ox = 2 * tx + j;
            p[i * 2 + j] = oy < oh && ox < ow ? y + (((size_t)img * oh + oy) * ow + ox) * c : spill + (i * 2 + j) * c;
        }
    float *restrict y0 = p[0], *restrict y1 = p[1], *restrict y2 = p[2], *restrict y3 = p[3];
#pragma omp simd
    for (int co = 0; co < c; co++) {
        float t0, t1, t2, t3, t4, t5, t6, t7;
        AT4(M[0 * es + co], M[4 * es + co], M[8 * es + co], M[12 * es + co], t0, t4);   /* A^T m */
        AT4(M[1 * es + co], M[5 * es + co], M[9 * es + co], M[13 * es + co], t1, t5);
        AT4(M[2 * es + co], M[6 * es + co], M[10 * es + co], M[14 * es + co], t2, t6);
        AT4(M[3 * es + co], M[7 * es + co], M[11 * es + co], M[15 * es + co], t3, t7);
        AT4(t0, t1, t2, t3, y0[co], y1[co]);   /* (.) A */
        AT4(t4, t5, t6, t7, y2[co], y3[co]);
    }
}

/* dM[e][t] = (A dY_t A^T)[e] for the 2x2 output-gradient tile (zero past the edge). */
CPU_HOT static void grad_tile(float *restrict M, size_t es, const float *dy, const float *zero, int oh, int ow,
                              int c, int img, int ty, int tx)
{
    const float *p[4];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            p[i * 2 + j] = (const float *)pixel_or(dy, sizeof *dy, oh, ow, c, img, 2 * ty + i, 2 * tx + j, zero);
    const float *restrict g0 = p[0], *restrict g1 = p[1], *restrict g2 = p[2], *restrict g3 = p[3];
#pragma omp simd
    for (int co = 0; co < c; co++) {
        float t0, t1, t2, t3, t4, t5, t6, t7;
        A2(g0[co], g2[co], t0, t2, t4, t6);   /* A dY, column by column */
        A2(g1[co], g3[co], t1, t3, t5, t7);
        A2(t0, t1, M[0 * es + co], M[1 * es + co], M[2 * es + co], M[3 * es + co]);   /* (.) A^T */
        A2(t2, t3, M[4 * es + co], M[5 * es + co], M[6 * es + co], M[7 * es + co]);
        A2(t4, t5, M[8 * es + co], M[9 * es + co], M[10 * es + co], M[11 * es + co]);
        A2(t6, t7, M[12 * es + co], M[13 * es + co], M[14 * es + co], M[15 * es + co]);
    }
}

/* ---- passes over chunks of images ---- */

/* The geometry of dx's pass: dy's map in, x's out (the same for "same" layers,
 * but named as the pass reads and writes them). */
static hallu_conv2d_geom transposed(const hallu_conv2d_geom *g)
{
    hallu_conv2d_geom gt = *g;
    gt.h = g->oh, gt.w = g->ow, gt.oh = g->h, gt.ow = g->w;
    return gt;
}

typedef struct chunk {
    int img0, cnt, th, tw;
    size_t tiles;
} chunk;

/* Image and tile row/column of tile t of the chunk. */
static void tile_at(const chunk *ch, int64_t t, int *img, int *ty, int *tx)
{
    int per = ch->th * ch->tw, r = (int)(t % per);
    *img = ch->img0 + (int)(t / per);
    *ty = r / ch->tw;
    *tx = r % ch->tw;
}

/* The tiles of images [img0, img0 + cnt). */
static chunk images(const hallu_conv2d_geom *g, int img0, int cnt)
{
    chunk ch = { img0, cnt, (g->oh + 1) / 2, (g->ow + 1) / 2, 0 };
    ch.tiles = (size_t)ch.cnt * ch.th * ch.tw;
    return ch;
}

static chunk chunk_at(const hallu_conv2d_geom *g, const cpu_wino *cw, int img0)
{
    return images(g, img0, g->n - img0 < cw->chunk ? g->n - img0 : cw->chunk);
}

/* This thread's contiguous share [t0, t1) of the chunk's tiles, inside a parallel region. */
static void my_tiles(const chunk *ch, int64_t *t0, int64_t *t1)
{
    int me = omp_get_thread_num(), team = omp_get_num_threads();
    *t0 = (int64_t)ch->tiles * me / team;
    *t1 = (int64_t)ch->tiles * (me + 1) / team;
}

/* V rows [t0, t1) of the chunk from x (h x w, c channels). */
static void input_tiles(cpu_impl *impl, const chunk *ch, const float *x, int h, int w, int c, int64_t t0, int64_t t1)
{
    for (int64_t t = t0; t < t1; t++) {
        int img, ty, tx;
        tile_at(ch, t, &img, &ty, &tx);
        input_tile(impl->wino_v + t * c, plane_elems(ch->tiles, c), x, impl->wino_zero, h, w, c, img, ty, tx);
    }
}

/* Output tiles [t0, t1) of the chunk from M; pixels past an odd edge go to the
 * calling thread's spill rows. */
static void output_tiles(cpu_impl *impl, const hallu_conv2d_geom *g, const chunk *ch, float *out, int c,
                         int64_t t0, int64_t t1)
{
    float *spill = impl->wino_spill + (size_t)omp_get_thread_num() * 4 * c;
    for (int64_t t = t0; t < t1; t++) {
        int img, ty, tx;
        tile_at(ch, t, &img, &ty, &tx);
        output_tile(out, impl->wino_m + t * c, plane_elems(ch->tiles, c), g->oh, g->ow, c, img, ty, tx, spill);
    }
}

static void inputs_transform(cpu_impl *impl, const chunk *ch, const float *x, int h, int w, int c)
{
#pragma omp parallel num_threads(impl->num_threads)
    {
        int64_t t0, t1;
        my_tiles(ch, &t0, &t1);
        input_tiles(impl, ch, x, h, w, c, t0, t1);
    }
}

/* conv_chunk with the threads sharing out the 16 GEMMs: each reads only its own
 * weight matrices U[e], which matters when they are large. */
static void conv_chunk_by_matrices(cpu_impl *impl, const hallu_conv2d_geom *g, const chunk *ch, float *out,
                                   const float *in, int c_in, int c_out)
{
    inputs_transform(impl, ch, in, g->h, g->w, c_in);
    size_t vs = plane_elems(ch->tiles, c_in), ms = plane_elems(ch->tiles, c_out), us = (size_t)c_in * c_out;
#pragma omp parallel for num_threads(impl->num_threads) schedule(static)
    for (int e = 0; e < 16; e++)
        dnnl_sgemm('N', 'N', (dnnl_dim_t)ch->tiles, c_out, c_in, 1.0f, impl->wino_v + e * vs, c_in,
                   impl->wino_u + e * us, c_out, 0.0f, impl->wino_m + e * ms, c_out);
#pragma omp parallel num_threads(impl->num_threads)
    {
        int64_t t0, t1;
        my_tiles(ch, &t0, &t1);
        output_tiles(impl, g, ch, out, c_out, t0, t1);
    }
}

/* conv_chunk with each thread taking a contiguous share of the chunk's tiles
 * through all three stages: no barrier between the stages, and a thread's rows
 * of V and M stay in its own cache; every thread reads all 16 U[e]. */
static void conv_chunk_by_tiles(cpu_impl *impl, const hallu_conv2d_geom *g, const chunk *ch, float *out,
                                const float *in, int c_in, int c_out)
{
    size_t vs = plane_elems(ch->tiles, c_in), ms = plane_elems(ch->tiles, c_out), us = (size_t)c_in * c_out;
#pragma omp parallel num_threads(impl->num_threads)
    {
        int64_t t0, t1;
        my_tiles(ch, &t0, &t1);
        input_tiles(impl, ch, in, g->h, g->w, c_in, t0, t1);
        for (int e = 0; e < 16 && t1 > t0; e++)
            dnnl_sgemm('N', 'N', (dnnl_dim_t)(t1 - t0), c_out, c_in, 1.0f, impl->wino_v + e * vs + t0 * c_in, c_in,
                       impl->wino_u + e * us, c_out, 0.0f, impl->wino_m + e * ms + t0 * c_out, c_out);
        output_tiles(impl, g, ch, out, c_out, t0, t1);
    }
}

/* out (NHWC, c_out channels) = conv(in, U) for one chunk: transform, 16 GEMMs,
 * inverse. Splitting by tiles was 1.0-1.4x faster up to 128 channels (U = 1 MiB
 * in all; the whole training step ~5% faster); at 512 channels, where U is 16 MiB,
 * splitting by matrices was 1.2-1.5x faster (bench/bench_ops). */
static void conv_chunk(cpu_impl *impl, const hallu_conv2d_geom *g, const chunk *ch, float *out, const float *in,
                       int c_in, int c_out)
{
    if ((size_t)16 * c_in * c_out * sizeof(float) <= ((size_t)1 << 20))
        conv_chunk_by_tiles(impl, g, ch, out, in, c_in, c_out);
    else
        conv_chunk_by_matrices(impl, g, ch, out, in, c_in, c_out);
}

static void forward_f32(cpu_impl *impl, const hallu_conv2d_geom *g, const cpu_wino *cw, float *y, const float *x,
                        const float *w)
{
    weights_transform(impl->wino_u, w, g->cin, g->cout, 0, impl->num_threads);
    for (int img0 = 0; img0 < g->n; img0 += cw->chunk) {
        chunk ch = chunk_at(g, cw, img0);
        conv_chunk(impl, g, &ch, y, x, g->cin, g->cout);
    }
}

/* dw (OIHW) += G^T dU G, dU[e] (cout x cin) the sum of `parts` partial sums
 * 16 * us apart. By runs of oi, the transform vectorised along the run (dU's
 * rows), then added to dw's kernels (9 floats apart; GCC vectorises no
 * stride-9 store group): one kernel at a time it was ~1% of the step. */
CPU_HOT static void dw_from_du(cpu_impl *impl, float *dw, const float *dU, size_t us, int parts)
{
    enum { RUN = 128 };
    int64_t runs = ((int64_t)us + RUN - 1) / RUN;
#pragma omp parallel for num_threads(impl->num_threads) schedule(static)
    for (int64_t run = 0; run < runs; run++) {
        int64_t oi0 = run * RUN;
        int len = (int)((int64_t)us - oi0 < RUN ? (int64_t)us - oi0 : RUN);
        float u[16][RUN], k[9][RUN];
        for (int e = 0; e < 16; e++) {   /* the parts summed in order */
            const float *src = dU + e * us + oi0;
#pragma omp simd
            for (int j = 0; j < len; j++)
                u[e][j] = src[j];
            for (int p = 1; p < parts; p++) {
                src += 16 * us;
#pragma omp simd
                for (int j = 0; j < len; j++)
                    u[e][j] += src[j];
            }
        }
#pragma omp simd
        for (int j = 0; j < len; j++) {   /* named scalars: GCC vectorises no array here */
#define GT_COL(q, a, b, c)   /* column q of t = G^T u: 3x4 */ \
            float a = u[q][j] + 0.5f * (u[4 + q][j] + u[8 + q][j]); \
            float b = 0.5f * (u[4 + q][j] - u[8 + q][j]); \
            float c = 0.5f * (u[4 + q][j] + u[8 + q][j]) + u[12 + q][j];
            GT_COL(0, t0, t4, t8)
            GT_COL(1, t1, t5, t9)
            GT_COL(2, t2, t6, t10)
            GT_COL(3, t3, t7, t11)
#undef GT_COL
#define TG_ROW(r, a0, a1, a2, a3)   /* row r of (G^T u) G: 3x3 */ \
            k[r * 3 + 0][j] = a0 + 0.5f * (a1 + a2); \
            k[r * 3 + 1][j] = 0.5f * (a1 - a2); \
            k[r * 3 + 2][j] = 0.5f * (a1 + a2) + a3;
            TG_ROW(0, t0, t1, t2, t3)
            TG_ROW(1, t4, t5, t6, t7)
            TG_ROW(2, t8, t9, t10, t11)
#undef TG_ROW
        }
        float *d = dw + oi0 * 9;   /* oi = co * cin + ci, as OIHW */
        for (int j = 0; j < len; j++)
            for (int r = 0; r < 9; r++)
                d[j * 9 + r] += k[r][j];
    }
}

/* dU[e] (cout x cin) += dM[e]^T V[e] over all chunks, then dw += G^T dU G. */
static void backward_weights(cpu_impl *impl, const hallu_conv2d_geom *g, const cpu_wino *cw, float *dw,
                             const float *dy, const float *x)
{
    size_t us = (size_t)g->cin * g->cout;
    for (int img0 = 0; img0 < g->n; img0 += cw->chunk) {
        chunk ch = chunk_at(g, cw, img0);
        /* V of x again: keeping the forward pass's would hold 4x each layer's input */
        inputs_transform(impl, &ch, x, g->h, g->w, g->cin);
        int c = g->cout;
        size_t ms = plane_elems(ch.tiles, c), vs = plane_elems(ch.tiles, g->cin);
#pragma omp parallel for num_threads(impl->num_threads) schedule(static)
        for (int64_t t = 0; t < (int64_t)ch.tiles; t++) {
            int img, ty, tx;
            tile_at(&ch, t, &img, &ty, &tx);
            grad_tile(impl->wino_m + t * c, ms, dy, impl->wino_zero, g->oh, g->ow, c, img, ty, tx);
        }
#pragma omp parallel for num_threads(impl->num_threads) schedule(static)
        for (int e = 0; e < 16; e++)
            dnnl_sgemm('T', 'N', g->cout, g->cin, (dnnl_dim_t)ch.tiles, 1.0f, impl->wino_m + e * ms, c,
                       impl->wino_v + e * vs, g->cin, img0 == 0 ? 0.0f : 1.0f, impl->wino_u + e * us, g->cin);
    }
    dw_from_du(impl, dw, impl->wino_u, us, 1);
}

static void backward_f32(cpu_impl *impl, const hallu_conv2d_geom *g, const cpu_wino *cw, float *dx, float *dw,
                         const float *dy, const float *x, const float *w)
{
    if (dx) {
        /* stride 1, pad 1, 3x3: dx is the same convolution of dy with w rotated
         * and its channel axes swapped */
        hallu_conv2d_geom gt = transposed(g);
        weights_transform(impl->wino_u, w, g->cin, g->cout, 1, impl->num_threads);
        for (int img0 = 0; img0 < g->n; img0 += cw->chunk) {
            chunk ch = chunk_at(&gt, cw, img0);
            conv_chunk(impl, &gt, &ch, dx, dy, g->cout, g->cin);
        }
    }
    if (dw)
        backward_weights(impl, g, cw, dw, dy, x);
}

/* ---- bf16 ---- */

#if CPU_HAVE_BF16_CVT
#define BF16_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

/* 16 activations as floats: bf16 values as they are, floats rounded to bf16
 * first (the value the direct bf16 plans multiply) */
BF16_FN static inline __m512 act_load(const void *p, int is16, int i)
{
    if (is16)
        return cpu_bf16_load16((const uint16_t *)p + i);
    __m256i h = (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps((const float *)p + i));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

BF16_FN static inline void bf16_store(uint16_t *p, __m512 v)
{
    _mm256_storeu_si256((__m256i *)p, (__m256i)_mm512_cvtneps_pbh(v));
}

BF16_FN static inline void act_store(void *p, int is16, int i, __m512 v)
{
    if (is16)
        bf16_store((uint16_t *)p + i, v);
    else
        _mm512_storeu_ps((float *)p + i, v);
}

/* V16[e][t][0..c) = bf16((B^T d B)[e]), d the 4x4 patch at rows 2ty-1.., cols
 * 2tx-1.. of image img (bf16 values, or floats when !is16). */
BF16_FN static inline __attribute__((always_inline)) void input_tile16(uint16_t *V, size_t es, const void *x,
                                                                       int is16, const void *zero, int h, int w,
                                                                       int c, int img, int ty, int tx)
{
    const char *p[16];
    #pragma GCC unroll 16
    for (int r = 0; r < 4; r++)
        for (int q = 0; q < 4; q++)
            p[r * 4 + q] = pixel_or(x, is16 ? 2 : 4, h, w, c, img, 2 * ty - 1 + r, 2 * tx - 1 + q, zero);
    for (int ci = 0; ci < c; ci += 16) {
        __m512 d[16], t[16];
        #pragma GCC unroll 16
        for (int i = 0; i < 16; i++)
            d[i] = act_load(p[i], is16, ci);
        #pragma GCC unroll 16
        for (int q = 0; q < 4; q++)   /* B^T d, column by column */
            BT4(d[q], d[4 + q], d[8 + q], d[12 + q], t[q], t[4 + q], t[8 + q], t[12 + q]);
        #pragma GCC unroll 16
        for (int r = 0; r < 4; r++) {   /* (.) B */
            __m512 o0, o1, o2, o3;
            BT4(t[4 * r], t[4 * r + 1], t[4 * r + 2], t[4 * r + 3], o0, o1, o2, o3);
            bf16_store(V + (4 * r + 0) * es + ci, o0);
            bf16_store(V + (4 * r + 1) * es + ci, o1);
            bf16_store(V + (4 * r + 2) * es + ci, o2);
            bf16_store(V + (4 * r + 3) * es + ci, o3);
        }
    }
}

/* The 2x2 output tile at 2ty, 2tx of image img = A^T M A (floats, or bf16
 * when is16); pixels past the edge go to the spill rows. */
BF16_FN static inline __attribute__((always_inline)) void output_tile16(void *y, int is16, const float *M, size_t es,
                                                                        int oh, int ow, int c, int img, int ty,
                                                                        int tx, void *spill)
{
    size_t esz = is16 ? 2 : 4;
    char *p[4];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            int oy = 2 * ty + i, ox = 2 * tx + j;
            p[i * 2 + j] = oy < oh && ox < ow ? (char *)y + (((size_t)img * oh + oy) * ow + ox) * c * esz
                                              : (char *)spill + (size_t)(i * 2 + j) * c * esz;
        }
    for (int co = 0; co < c; co += 16) {
        __m512 m[16], t[8], o0, o1;
        #pragma GCC unroll 16
        for (int e = 0; e < 16; e++)
            m[e] = _mm512_loadu_ps(M + e * es + co);
        #pragma GCC unroll 16
        for (int q = 0; q < 4; q++)   /* A^T m */
            AT4(m[q], m[4 + q], m[8 + q], m[12 + q], t[q], t[4 + q]);
        AT4(t[0], t[1], t[2], t[3], o0, o1);   /* (.) A */
        act_store(p[0], is16, co, o0);
        act_store(p[1], is16, co, o1);
        AT4(t[4], t[5], t[6], t[7], o0, o1);
        act_store(p[2], is16, co, o0);
        act_store(p[3], is16, co, o1);
    }
}

/* dM16[e][t] = bf16((A dY_t A^T)[e]) for the 2x2 output-gradient tile (zero
 * past the edge; bf16 values, or floats when !is16). */
BF16_FN static inline __attribute__((always_inline)) void grad_tile16(uint16_t *M, size_t es, const void *dy,
                                                                      int is16, const void *zero, int oh, int ow,
                                                                      int c, int img, int ty, int tx)
{
    const char *p[4];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            p[i * 2 + j] = pixel_or(dy, is16 ? 2 : 4, oh, ow, c, img, 2 * ty + i, 2 * tx + j, zero);
    for (int co = 0; co < c; co += 16) {
        __m512 g0 = act_load(p[0], is16, co), g1 = act_load(p[1], is16, co);
        __m512 g2 = act_load(p[2], is16, co), g3 = act_load(p[3], is16, co);
        __m512 t[8], o[16];
        A2(g0, g2, t[0], t[2], t[4], t[6]);   /* A dY, column by column */
        A2(g1, g3, t[1], t[3], t[5], t[7]);
        #pragma GCC unroll 16
        for (int r = 0; r < 4; r++)   /* (.) A^T */
            A2(t[2 * r], t[2 * r + 1], o[4 * r], o[4 * r + 1], o[4 * r + 2], o[4 * r + 3]);
        #pragma GCC unroll 16
        for (int e = 0; e < 16; e++)
            bf16_store(M + e * es + co, o[e]);
    }
}

/* weights_transform rounded to bf16, 16 output channels o at a time (no % 16 ==
 * 0): weights_transform's G3 steps on 16 kernels gathered into vectors (one scalar
 * transform per kernel was ~2% of the bf16 step). */
BF16_FN static void weights_transform16(uint16_t *U16, const float *w, int cin, int cout, int flip, int nt)
{
    int ni = flip ? cout : cin, no = flip ? cin : cout;
    size_t plane = (size_t)ni * no;
    /* kernel (o, i) at w + (o * cin + i) * 9, or flipped (i, o) at w + (i * cin + o) * 9 */
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i step = _mm512_mullo_epi32(lane, _mm512_set1_epi32(flip ? 9 : 9 * cin));
    const __m512 half = _mm512_set1_ps(0.5f);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int i = 0; i < ni; i++)
        for (int o0 = 0; o0 < no; o0 += 16) {
            const float *base = flip ? w + ((size_t)i * cin + o0) * 9 : w + ((size_t)o0 * cin + i) * 9;
            __m512 k[9], t[12];
            #pragma GCC unroll 9
            for (int j = 0; j < 9; j++)
                k[j] = _mm512_i32gather_ps(step, base + (flip ? 8 - j : j), 4);
            #pragma GCC unroll 3
            for (int c = 0; c < 3; c++)   /* t = G k: 4x3 */
                G3(k[c], k[3 + c], k[6 + c], t[0 * 3 + c], t[1 * 3 + c], t[2 * 3 + c], t[3 * 3 + c], half);
            uint16_t *u = U16 + (size_t)i * no + o0;
            #pragma GCC unroll 4
            for (int r = 0; r < 4; r++) {   /* u = t G^T: 4x4 */
                __m512 o[4];
                G3(t[r * 3], t[r * 3 + 1], t[r * 3 + 2], o[0], o[1], o[2], o[3], half);
                for (int q = 0; q < 4; q++)
                    bf16_store(u + (r * 4 + q) * plane, o[q]);
            }
        }
}

/* Where a transform puts tile t, or the inverse finds it: row t - first of 16
 * planes es elements apart (a chunk's shared buffer, or a thread's block). */
typedef struct tile_rows {
    void *base;
    size_t es;
    int64_t first;
} tile_rows;

/* Tiles [t0, t1) of the chunk through one of the transforms; the activation
 * is bf16 where its 16-bit pointer is given. */
BF16_FN static void input_tiles16(cpu_impl *impl, const chunk *ch, tile_rows v, const float *x, const uint16_t *x16,
                                  int h, int w, int c, int64_t t0, int64_t t1)
{
    for (int64_t t = t0; t < t1; t++) {
        int img, ty, tx;
        tile_at(ch, t, &img, &ty, &tx);
        uint16_t *V = (uint16_t *)v.base + (t - v.first) * c;
        if (x16)
            input_tile16(V, v.es, x16, 1, impl->wino_zero, h, w, c, img, ty, tx);
        else
            input_tile16(V, v.es, x, 0, impl->wino_zero, h, w, c, img, ty, tx);
    }
}

BF16_FN static void output_tiles16(cpu_impl *impl, const hallu_conv2d_geom *g, const chunk *ch, tile_rows m,
                                   float *y, uint16_t *y16, int c, int64_t t0, int64_t t1)
{
    float *spill = impl->wino_spill + (size_t)omp_get_thread_num() * 4 * c;
    for (int64_t t = t0; t < t1; t++) {
        int img, ty, tx;
        tile_at(ch, t, &img, &ty, &tx);
        const float *M = (const float *)m.base + (t - m.first) * c;
        if (y16)
            output_tile16(y16, 1, M, m.es, g->oh, g->ow, c, img, ty, tx, spill);
        else
            output_tile16(y, 0, M, m.es, g->oh, g->ow, c, img, ty, tx, spill);
    }
}

BF16_FN static void grad_tiles16(cpu_impl *impl, const hallu_conv2d_geom *g, const chunk *ch, tile_rows m,
                                 const float *dy, const uint16_t *dy16, int64_t t0, int64_t t1)
{
    int c = g->cout;
    for (int64_t t = t0; t < t1; t++) {
        int img, ty, tx;
        tile_at(ch, t, &img, &ty, &tx);
        uint16_t *M = (uint16_t *)m.base + (t - m.first) * c;
        if (dy16)
            grad_tile16(M, m.es, dy16, 1, impl->wino_zero, g->oh, g->ow, c, img, ty, tx);
        else
            grad_tile16(M, m.es, dy, 0, impl->wino_zero, g->oh, g->ow, c, img, ty, tx);
    }
}

/* Rows [nb, rows) of a block's 16 bf16 planes set to zero: the matmul runs on
 * all its rows, and past the thread's last tile they must add nothing (dw) and
 * hold no stale bits. */
static void zero_rows16(uint16_t *base, size_t es, int64_t nb, int rows, int c)
{
    if (nb < rows)
        for (int e = 0; e < 16; e++)
            memset(base + e * es + nb * c, 0, (size_t)(rows - nb) * c * sizeof *base);
}

/* out (or out16) = conv(in or in16, U16) over the images: per chunk, the input
 * transforms, one batched matmul, the inverse transforms. */
static void conv16(cpu_impl *impl, const hallu_conv2d_geom *g, cpu_wino *cw, cpu_matmul mm[2], float *out,
                   uint16_t *out16, const float *in, const uint16_t *in16, int c_in, int c_out)
{
    for (int img0 = 0; img0 < g->n; img0 += cw->chunk) {
        chunk ch = chunk_at(g, cw, img0);
#pragma omp parallel num_threads(impl->num_threads)
        {
            int64_t t0, t1;
            my_tiles(&ch, &t0, &t1);
            input_tiles16(impl, &ch, (tile_rows){ impl->wino_v, ch.tiles * c_in, 0 }, in, in16, g->h, g->w, c_in, t0,
                          t1);
        }
        cpu_matmul_run(impl, &mm[ch.cnt == cw->chunk ? 0 : 1], impl->wino_v, impl->wino_u, impl->wino_m);
#pragma omp parallel num_threads(impl->num_threads)
        {
            int64_t t0, t1;
            my_tiles(&ch, &t0, &t1);
            output_tiles16(impl, g, &ch, (tile_rows){ impl->wino_m, ch.tiles * c_out, 0 }, out, out16, c_out, t0, t1);
        }
    }
}

/* conv16 with each thread taking its share of all the tiles through the three
 * stages, cw->blk rows at a time, in its own part of the shared buffers: V and
 * M stay in the thread's cache between the stages. */
BF16_FN static void conv16_blocks(cpu_impl *impl, const hallu_conv2d_geom *g, cpu_wino *cw, int dx,
                                  float *out, uint16_t *out16, const float *in, const uint16_t *in16, int c_in,
                                  int c_out)
{
    chunk all = images(g, 0, g->n);   /* the block passes split the whole batch */
    int R = cw->blk;
    dnnl_status_t failed = dnnl_success;
#pragma omp parallel num_threads(impl->num_threads)
    {
        int me = omp_get_thread_num();
        uint16_t *V = (uint16_t *)impl->wino_v + (size_t)me * 16 * R * c_in;
        float *M = impl->wino_m + (size_t)me * 16 * R * c_out;
        cpu_wino_thread *th = &cw->thr[me];
        dnnl_stream_t stream = impl->thread_stream[me];
        void *scratch = cpu_thread_scratch(impl, me);
        size_t ves = (size_t)R * c_in, mes = (size_t)R * c_out;
        int64_t t0, t1;
        my_tiles(&all, &t0, &t1);
        for (int64_t b0 = t0; b0 < t1; b0 += R) {
            int64_t nb = t1 - b0 < R ? t1 - b0 : R;
            input_tiles16(impl, &all, (tile_rows){ V, ves, b0 }, in, in16, g->h, g->w, c_in, b0, b0 + nb);
            zero_rows16(V, ves, nb, R, c_in);
            cpu_matmul *mm = dx ? &th->dx : &th->fwd;
            cpu_first_failure(&failed, cpu_matmul_exec_on(mm, stream, scratch, V, impl->wino_u, M));
            output_tiles16(impl, g, &all, (tile_rows){ M, mes, b0 }, out, out16, c_out, b0, b0 + nb);
        }
    }
    cpu_check(impl, failed, "conv2d bf16 Winograd: a thread's block matmul");
}

/* dw += the weight gradient with each thread taking its share of all the
 * tiles, cw->blk_dw rows at a time: both transforms into its own part of the
 * shared buffers, then a matmul adding dM^T V into its own dU. */
BF16_FN static void backward_weights_blocks(cpu_impl *impl, const hallu_conv2d_geom *g, cpu_wino *cw, float *dw,
                                            const float *dy, const uint16_t *dy16, const float *x,
                                            const uint16_t *x16)
{
    chunk all = images(g, 0, g->n);   /* the block passes split the whole batch */
    int R = cw->blk_dw, cin = g->cin, cout = g->cout;
    size_t us = (size_t)cin * cout, ves = (size_t)R * cin, mes = (size_t)R * cout;
    int parts = 1;
    dnnl_status_t failed = dnnl_success;
#pragma omp parallel num_threads(impl->num_threads)
    {
        int me = omp_get_thread_num();
        if (me == 0)
            parts = omp_get_num_threads();
        cpu_wino_thread *th = &cw->thr[me];
        uint16_t *V = (uint16_t *)impl->wino_v + (size_t)me * 16 * ves;
        uint16_t *M = (uint16_t *)impl->wino_m + (size_t)me * 16 * mes;
        float *dU = impl->wino_du + (size_t)me * 16 * us;
        dnnl_stream_t stream = impl->thread_stream[me];
        void *scratch = cpu_thread_scratch(impl, me);
        memset(dU, 0, 16 * us * sizeof *dU);
        int64_t t0, t1;
        my_tiles(&all, &t0, &t1);
        for (int64_t b0 = t0; b0 < t1; b0 += R) {
            int64_t nb = t1 - b0 < R ? t1 - b0 : R;
            input_tiles16(impl, &all, (tile_rows){ V, ves, b0 }, x, x16, g->h, g->w, cin, b0, b0 + nb);
            grad_tiles16(impl, g, &all, (tile_rows){ M, mes, b0 }, dy, dy16, b0, b0 + nb);
            zero_rows16(V, ves, nb, R, cin);
            zero_rows16(M, mes, nb, R, cout);
            cpu_first_failure(&failed, cpu_matmul_exec_on(&th->dw, stream, scratch, M, V, dU));
        }
    }
    cpu_check(impl, failed, "conv2d bf16 Winograd: a thread's block weight-gradient matmul");
    dw_from_du(impl, dw, impl->wino_du, us, parts);
}

static void forward_bf16(cpu_impl *impl, const hallu_conv2d_geom *g, cpu_wino *cw, float *y, uint16_t *y16,
                         const float *x, const uint16_t *x16, const float *w)
{
    weights_transform16((uint16_t *)impl->wino_u, w, g->cin, g->cout, 0, impl->num_threads);
    if (cw->blk)
        conv16_blocks(impl, g, cw, 0, y, y16, x, x16, g->cin, g->cout);
    else
        conv16(impl, g, cw, cw->mm_fwd, y, y16, x, x16, g->cin, g->cout);
}

static void backward_bf16(cpu_impl *impl, const hallu_conv2d_geom *g, cpu_wino *cw, float *dx, uint16_t *dx16,
                          float *dw, const float *dy, const uint16_t *dy16, const float *x, const uint16_t *x16,
                          const float *w)
{
    if (dx || dx16) {   /* the forward pass of dy with w rotated, channel axes swapped (as backward_f32) */
        hallu_conv2d_geom gt = transposed(g);
        weights_transform16((uint16_t *)impl->wino_u, w, g->cin, g->cout, 1, impl->num_threads);
        if (cw->blk)
            conv16_blocks(impl, &gt, cw, 1, dx, dx16, dy, dy16, g->cout, g->cin);
        else
            conv16(impl, &gt, cw, cw->mm_dx, dx, dx16, dy, dy16, g->cout, g->cin);
    }
    if (!dw)
        return;
    if (cw->blk_dw) {
        backward_weights_blocks(impl, g, cw, dw, dy, dy16, x, x16);
        return;
    }
    size_t us = (size_t)g->cin * g->cout;
    memset(impl->wino_u, 0, 16 * us * sizeof(float));
    for (int img0 = 0; img0 < g->n; img0 += cw->chunk) {
        chunk ch = chunk_at(g, cw, img0);
#pragma omp parallel num_threads(impl->num_threads)
        {
            int64_t t0, t1;
            my_tiles(&ch, &t0, &t1);
            input_tiles16(impl, &ch, (tile_rows){ impl->wino_v, ch.tiles * g->cin, 0 }, x, x16, g->h, g->w, g->cin, t0,
                          t1);
            grad_tiles16(impl, g, &ch, (tile_rows){ impl->wino_m, ch.tiles * g->cout, 0 }, dy, dy16, t0, t1);
        }
        cpu_matmul_run(impl, &cw->mm_dw[ch.cnt == cw->chunk ? 0 : 1], impl->wino_m, impl->wino_v, impl->wino_u);
    }
    dw_from_du(impl, dw, impl->wino_u, us, 1);
}
#endif

void cpu_wino_forward(cpu_impl *impl, const hallu_conv2d_geom *g, cpu_wino *cw, float *y, uint16_t *y16,
                      const float *x, const uint16_t *x16, const float *w)
{
#if CPU_HAVE_BF16_CVT
    if (cw->bf16) {
        forward_bf16(impl, g, cw, y, y16, x, x16, w);
        return;
    }
#endif
    (void)y16, (void)x16;
    forward_f32(impl, g, cw, y, x, w);
}

void cpu_wino_backward(cpu_impl *impl, const hallu_conv2d_geom *g, cpu_wino *cw, float *dx, uint16_t *dx16,
                       float *dw, const float *dy, const uint16_t *dy16, const float *x, const uint16_t *x16,
                       const float *w)
{
#if CPU_HAVE_BF16_CVT
    if (cw->bf16) {
        backward_bf16(impl, g, cw, dx, dx16, dw, dy, dy16, x, x16, w);
        return;
    }
#endif
    (void)dx16, (void)dy16, (void)x16;
    backward_f32(impl, g, cw, dx, dw, dy, x, w);
}
