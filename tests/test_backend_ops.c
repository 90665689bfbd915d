/* One op harness across backends (as ggml's test-backend-ops): every op of
 * hallu_backend_ops runs on the device under test (argv[1], else
 * HALLU_TEST_DEVICE, else "cpu-isolated") and on "cpu" with the same seeded
 * random inputs, uploaded to each backend; the outputs are downloaded and
 * compared, one line per op case with the measured error:
 *
 * - float outputs: max |a - b| / max(max |b|, 1e-30) per tensor, within 1e-4
 *   (fp32 kernels with another summation order, cuDNN/cuBLAS with TF32 off);
 *   reductions (losses, norms, scalars): ||a - b|| / ||b||, same bound;
 * - doubles (BN statistics, kNN scores): the same measures, within 1e-4;
 * - integers (argmax, hits, classes, the MoCo pointer): exactly;
 * - kNN top-k: as sets, each row sorted by (sim desc, idx asc) first (the
 *   heap's layout may differ between backends);
 * - "cpu-isolated" (and "cpu") promise the CPU backend's results bit for bit:
 *   for those every output must also be bit-identical.
 *
 * Parameter gradients ACCUMULATE (dw += ...): both sides start from the same
 * nonzero contents. Inputs that an op takes from another op's output (saved
 * BN statistics, the pooling argmax, the kNN heap) are the reference's,
 * copied to the device under test, so each line measures one op alone.
 *
 * Coverage guard: every call goes through OP(), which marks the slot of the
 * device under test's table; at the end every non-NULL slot must have been
 * marked (the list of slots is checked against sizeof(hallu_backend_ops) at
 * compile time and against the offsets at run time). A cuda device that
 * cannot be created (HALLU_ERR_UNSUPPORTED: no GPU, or a build without CUDA)
 * skips the test (exit 77). */
#include "hallu/augment.h"
#include "hallu/backend.h"
#include "hallu/rng.h"
#include "testutil.h"

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TOL 1e-4
#define TINY 1e-30

/* ---- the slots of the op table ---- */

#define SLOT(f) { offsetof(hallu_backend_ops, f), #f }
static const struct slot {
    size_t off;
    const char *name;
} k_slots[] = {
    SLOT(destroy), SLOT(alloc), SLOT(release), SLOT(upload), SLOT(download), SLOT(copy), SLOT(fill),
    SLOT(memory), SLOT(host_alloc), SLOT(host_free), SLOT(upload_wait), SLOT(set_precision), SLOT(inject_fault),
    SLOT(conv2d_plan_create), SLOT(conv2d_plan_free), SLOT(conv2d_forward), SLOT(conv2d_forward_y16), SLOT(conv2d_backward),
    SLOT(conv2d_backward_dx16),
    SLOT(batchnorm_forward_train), SLOT(batchnorm_forward_eval), SLOT(batchnorm_backward), SLOT(batchnorm_backward_x16),
    SLOT(batchnorm_normalize_fused), SLOT(batchnorm_backward_fused), SLOT(batchnorm_stats_x16),
    SLOT(relu_forward), SLOT(relu_backward), SLOT(relu_forward_x16), SLOT(add), SLOT(add_relu_backward),
    SLOT(add_relu_backward_x16), SLOT(axpy), SLOT(scale), SLOT(normalize_u8),
    SLOT(maxpool2d_forward), SLOT(maxpool2d_backward), SLOT(global_avgpool_forward), SLOT(global_avgpool_backward),
    SLOT(gemm), SLOT(linear_forward), SLOT(linear_backward),
    SLOT(l2norm_rows_forward), SLOT(l2norm_rows_backward), SLOT(softmax_xent_forward), SLOT(softmax_xent_backward),
    SLOT(copy_cols), SLOT(slice_cols),
    SLOT(batchnorm_stats), SLOT(batchnorm_normalize), SLOT(batchnorm_update_running),
    SLOT(batchnorm_stats_to_moments), SLOT(batchnorm_moments_to_stats), SLOT(batchnorm_backward_reduce),
    SLOT(batchnorm_backward_apply), SLOT(batchnorm_update_running_grouped), SLOT(add_scalar), SLOT(l2_norm),
    SLOT(clip_by_norm), SLOT(lars_coef), SLOT(sgd_update), SLOT(adamw_update),
    SLOT(ssl_nt_xent_rows), SLOT(ssl_infonce_rows), SLOT(ssl_neg_cosine), SLOT(ssl_collapse_std),
    SLOT(ssl_hal_input), SLOT(ssl_hal_output), SLOT(ssl_hal_backward), SLOT(ssl_gather_rows),
    SLOT(ssl_scatter_rows), SLOT(ssl_enqueue_rows),
    SLOT(knn_inverse_norms), SLOT(knn_scale_rows), SLOT(knn_scale_cols), SLOT(knn_top_k), SLOT(knn_vote),
    SLOT(argmax_hits), SLOT(class_rank_hits),
};
#define N_SLOTS (sizeof k_slots / sizeof k_slots[0])
#define PTR ((size_t)sizeof(void (*)(void)))
/* The table is `name`, `destroy`, `host_memory` (an int, padded to a pointer),
 * then function pointers only: a member added to hallu_backend_ops without a
 * line above fails to compile here. */
_Static_assert(offsetof(hallu_backend_ops, destroy) == PTR && offsetof(hallu_backend_ops, alloc) == 3 * PTR,
               "hallu_backend_ops starts with name, destroy, host_memory");
_Static_assert((N_SLOTS + 2) * PTR == sizeof(hallu_backend_ops),
               "k_slots must list every function pointer of hallu_backend_ops");

/* ---- the two backends ---- */

static hallu_backend *g_be[2];            /* [0] device under test, [1] cpu (reference) */
static hallu_backend_ops g_dut_ops;       /* the device under test's table (a copy it runs through) */
static unsigned char g_marked[sizeof(hallu_backend_ops) / PTR];
static int g_side;                        /* which backend the arguments being built belong to */
static int g_exact;                       /* the device promises the cpu backend's bits */
static hallu_rng g_rng;
static int g_failures;

/* The table of side s, marking slot `off` as exercised when s is the device under test. */
static const hallu_backend_ops *ops_of(int s, size_t off)
{
    if (s == 0)
        g_marked[off / PTR] = 1;
    return g_be[s]->ops;
}
#define OP(f) (ops_of(g_side, offsetof(hallu_backend_ops, f))->f)
/* Runs backend op f on both sides; the arguments are evaluated per side (F(b), ...). */
#define BOTH(f, ...)                                    \
    do {                                                \
        for (g_side = 0; g_side < 2; g_side++)          \
            OP(f)(g_be[g_side], __VA_ARGS__);           \
        g_side = 0;                                     \
    } while (0)
#define BOTH_PLAN(f, plans, ...)                        \
    do {                                                \
        for (g_side = 0; g_side < 2; g_side++)          \
            OP(f)((plans)[g_side], __VA_ARGS__);        \
        g_side = 0;                                     \
    } while (0)

/* ---- buffers: one device allocation per side ---- */

enum { T_F32, T_F64, T_I32, T_I64, T_U8, T_U16 };
static const size_t k_tsize[] = { 4, 8, 4, 8, 1, 2 };

typedef struct buf {
    void *p[2];
    size_t n;
    int type;
} buf;
#define F(b) ((float *)(b).p[g_side])
#define DB(b) ((double *)(b).p[g_side])
#define I32(b) ((int32_t *)(b).p[g_side])
#define I64(b) ((int64_t *)(b).p[g_side])

#define MAX_BUFS 1024
static buf g_bufs[MAX_BUFS];
static int g_nbufs;

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "test_backend_ops: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static buf mk(int type, size_t n)
{
    buf b = { .n = n, .type = type };
    for (int s = 0; s < 2; s++) {
        hallu_error err = { 0 };
        b.p[s] = ops_of(s, offsetof(hallu_backend_ops, alloc))->alloc(g_be[s], (n ? n : 1) * k_tsize[type],
                                                                      "test_backend_ops", &err);
        if (!b.p[s])
            die("alloc of %zu bytes on %s: %s", n * k_tsize[type], g_be[s]->ops->name, err.msg);
    }
    if (g_nbufs == MAX_BUFS)
        die("too many buffers");
    g_bufs[g_nbufs++] = b;
    return b;
}

/* Host contents -> both sides. */
static void put(buf b, const void *host)
{
    for (int s = 0; s < 2; s++)
        ops_of(s, offsetof(hallu_backend_ops, upload))->upload(g_be[s], b.p[s], host, b.n * k_tsize[b.type]);
}

static void get(buf b, int s, void *host)
{
    ops_of(s, offsetof(hallu_backend_ops, download))->download(g_be[s], host, b.p[s], b.n * k_tsize[b.type]);
}

/* The reference's contents -> the device under test (an input made by another op). */
static void sync_ref(buf b)
{
    void *h = tu_xmalloc(b.n * k_tsize[b.type] + 1);
    get(b, 1, h);
    ops_of(0, offsetof(hallu_backend_ops, upload))->upload(g_be[0], b.p[0], h, b.n * k_tsize[b.type]);
    free(h);
}

static buf f32u(size_t n, double lo, double hi)
{
    buf b = mk(T_F32, n);
    float *h = tu_falloc(n + 1);
    tu_fill_uniform_f(h, n, &g_rng, lo, hi);
    put(b, h);
    free(h);
    return b;
}

static buf f32h(const float *h, size_t n)
{
    buf b = mk(T_F32, n);
    put(b, h);
    return b;
}

static buf f64u(size_t n, double lo, double hi)
{
    buf b = mk(T_F64, n);
    double *h = tu_dalloc(n + 1);
    tu_fill_uniform_d(h, n, &g_rng, lo, hi);
    put(b, h);
    free(h);
    return b;
}

static buf i32h(const int32_t *h, size_t n)
{
    buf b = mk(T_I32, n);
    put(b, h);
    return b;
}

static buf i32labels(size_t n, int classes)
{
    int32_t *h = tu_xmalloc((n + 1) * sizeof *h);
    tu_fill_targets(h, n, &g_rng, classes);
    buf b = i32h(h, n);
    free(h);
    return b;
}

/* ---- one line per op case ---- */

static struct {
    char label[160];
    double worst;
    char worst_name[40];
    int bad, compared, bits_differ;
    clock_t t0;
} g_op;

static void op_begin(const char *fmt, ...)
{
    memset(&g_op, 0, sizeof g_op);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_op.label, sizeof g_op.label, fmt, ap);
    va_end(ap);
    g_op.t0 = clock();
}

static void op_note(const char *name, double e, int bits_equal)
{
    g_op.compared++;
    if (!(e <= TOL) || (g_exact && !bits_equal)) {
        if (!g_op.bad)
            fprintf(stderr, "FAIL %s: %s differs: error %.3g%s\n", g_op.label, name, e,
                    g_exact && !bits_equal ? " (not bit-identical)" : "");
        g_op.bad = 1;
    }
    if (!bits_equal)
        g_op.bits_differ = 1;
    if (g_op.compared == 1 || !(e <= g_op.worst)) {
        g_op.worst = e;
        snprintf(g_op.worst_name, sizeof g_op.worst_name, "%s", name);
    }
}

static void op_end(void)
{
    for (int s = 0; s < 2; s++) {
        hallu_error err = { 0 };
        if (hallu_backend_check(g_be[s], &err) != HALLU_OK) {
            fprintf(stderr, "FAIL %s: %s\n", g_op.label, err.msg);
            hallu_backend_clear_failure(g_be[s]);
            g_op.bad = 1;
        }
    }
    if (!g_op.compared) {
        fprintf(stderr, "FAIL %s: nothing compared\n", g_op.label);
        g_op.bad = 1;
    }
    printf("%-62s err %.2e (%s)%s%s\n", g_op.label, g_op.worst, g_op.worst_name,
           g_op.bits_differ ? "" : " bits equal", g_op.bad ? "  FAIL" : "");
    g_failures += g_op.bad;
}

/* Downloads b from both sides into fresh host arrays. */
static void fetch2(buf b, void **a, void **r)
{
    size_t nb = b.n * k_tsize[b.type] + 8;
    *a = tu_xmalloc(nb);
    *r = tu_xmalloc(nb);
    get(b, 0, *a);
    get(b, 1, *r);
}

static double err_of(const double *a, const double *r, size_t n, int normwise)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = a[i] - r[i];
        if (isnan(a[i]) != isnan(r[i]))
            return INFINITY;
        if (isnan(r[i]))
            continue;
        if (normwise) {
            num += d * d;
            den += r[i] * r[i];
        } else {
            num = fabs(d) > num ? fabs(d) : num;
            den = fabs(r[i]) > den ? fabs(r[i]) : den;
        }
    }
    if (normwise) {
        num = sqrt(num);
        den = sqrt(den);
    }
    return num / (den > TINY ? den : TINY);
}

/* Compares buffer b between the sides: floats by max |a-b| / max |b| (normwise:
 * ||a-b|| / ||b||), integers exactly. */
static void cmp_(const char *name, buf b, int normwise)
{
    void *a, *r;
    fetch2(b, &a, &r);
    int bits = memcmp(a, r, b.n * k_tsize[b.type]) == 0;
    double e = 0;
    if (b.type == T_F32 || b.type == T_F64) {
        double *da = tu_dalloc(b.n + 1), *dr = tu_dalloc(b.n + 1);
        for (size_t i = 0; i < b.n; i++) {
            da[i] = b.type == T_F32 ? ((float *)a)[i] : ((double *)a)[i];
            dr[i] = b.type == T_F32 ? ((float *)r)[i] : ((double *)r)[i];
        }
        e = err_of(da, dr, b.n, normwise);
        free(da);
        free(dr);
    } else {
        size_t wrong = 0;
        for (size_t i = 0; i < b.n; i++)
            wrong += b.type == T_I32   ? ((int32_t *)a)[i] != ((int32_t *)r)[i]
                     : b.type == T_I64 ? ((int64_t *)a)[i] != ((int64_t *)r)[i]
                                       : ((uint8_t *)a)[i] != ((uint8_t *)r)[i];
        e = wrong ? INFINITY : 0;
        if (wrong)
            fprintf(stderr, "    %s: %zu of %zu integers differ\n", name, wrong, b.n);
    }
    op_note(name, e, bits);
    free(a);
    free(r);
}
#define CMP(name, b) cmp_((name), (b), 0)
#define CMPN(name, b) cmp_((name), (b), 1)

/* Buffers a and b (same type and length) hold the same bytes on the device
 * under test. */
static void dut_bytes_same(const char *name, buf a, buf b)
{
    size_t bytes = a.n * k_tsize[a.type];
    void *ha = tu_xmalloc(bytes + 1), *hb = tu_xmalloc(bytes + 1);
    get(a, 0, ha);
    get(b, 0, hb);
    int bad = a.n != b.n || a.type != b.type || memcmp(ha, hb, bytes) != 0;
    op_note(name, bad, !bad);
    free(ha), free(hb);
}

static void cmp_scalar(const char *name, float a, float r)
{
    double da = a, dr = r;
    op_note(name, err_of(&da, &dr, 1, 1), memcmp(&a, &r, sizeof a) == 0);
}

/* ---- memory ---- */

static void t_memory(void)
{
    hallu_error err = { 0 };
    size_t live0[2], peak0[2];
    for (g_side = 0; g_side < 2; g_side++)
        OP(memory)(g_be[g_side], &live0[g_side], &peak0[g_side]);
    g_side = 0;

    op_begin("alloc (zero-filled) n=%d", 4099);
    buf z = mk(T_F32, 4099);
    {
        float *h = tu_falloc(4100);
        get(z, 0, h);
        int nz = 0;
        for (int i = 0; i < 4099; i++)
            nz += h[i] != 0.0f;
        op_note("zeros", nz ? INFINITY : 0, nz == 0);
        free(h);
    }
    CMP("contents", z);
    op_end();

    op_begin("memory (live/peak grow with alloc)");
    size_t live1[2], peak1[2];
    for (g_side = 0; g_side < 2; g_side++)
        OP(memory)(g_be[g_side], &live1[g_side], &peak1[g_side]);
    g_side = 0;
    int ok = live1[0] >= live0[0] + 4099 * sizeof(float) && peak1[0] >= live1[0] && peak1[0] >= peak0[0];
    op_note("live/peak", ok ? 0 : INFINITY, 1);
    if (!ok)
        fprintf(stderr, "    live %zu -> %zu, peak %zu -> %zu\n", live0[0], live1[0], peak0[0], peak1[0]);
    op_end();

    op_begin("upload/download round trip (offset, odd size)");
    {
        size_t nb = 4 * 251;
        unsigned char *h = tu_xmalloc(nb), *back = tu_xmalloc(nb);
        for (size_t i = 0; i < nb; i++)
            h[i] = (unsigned char)hallu_rng_u32(&g_rng);
        buf b = mk(T_F32, 300);
        for (g_side = 0; g_side < 2; g_side++)
            OP(upload)(g_be[g_side], (char *)b.p[g_side] + 12, h, nb);
        g_side = 0;
        OP(download)(g_be[0], back, (char *)b.p[0] + 12, nb);
        int same = memcmp(h, back, nb) == 0;
        op_note("round trip", same ? 0 : INFINITY, same);
        CMP("buffer", b);
        free(h);
        free(back);
    }
    op_end();

    op_begin("host_alloc / upload_wait / host_free (staging memory)");
    if (g_dut_ops.host_alloc) {
        size_t nb = 4 * 300;
        unsigned char *h = OP(host_alloc)(g_be[0], nb, "test staging", &err), *orig = tu_xmalloc(nb);
        if (!h)
            die("host_alloc of %zu bytes on %s: %s", nb, g_dut_ops.name, err.msg);
        for (size_t i = 0; i < nb; i++)
            h[i] = orig[i] = (unsigned char)hallu_rng_u32(&g_rng);
        buf b = mk(T_F32, 300);
        OP(upload)(g_be[0], b.p[0], h, nb);
        ops_of(1, offsetof(hallu_backend_ops, upload))->upload(g_be[1], b.p[1], orig, nb);
        OP(upload_wait)(g_be[0]);
        memset(h, 0xA5, nb);   /* allowed now: the upload has read the bytes */
        CMP("buffer (staging bytes changed after upload_wait)", b);
        if (strcmp(g_dut_ops.name, "cpu-isolated") == 0) {
            /* that backend checks the contract: bytes changed before upload_wait fail, named */
            OP(upload)(g_be[0], b.p[0], h, nb);
            h[17] ^= 1;
            OP(upload_wait)(g_be[0]);
            hallu_error e2 = { 0 };
            int seen = hallu_backend_check(g_be[0], &e2) != HALLU_OK && strstr(e2.msg, "before upload_wait");
            hallu_backend_clear_failure(g_be[0]);
            op_note("bytes changed before upload_wait reported", seen ? 0 : INFINITY, seen);
            sync_ref(b);
        }
        OP(host_free)(g_be[0], h);
        free(orig);
    } else {
        op_note("no staging memory (NULL slots)", 0, 1);
    }
    op_end();

    op_begin("copy (device to device, offsets)");
    {
        buf src = f32u(500, -3, 3), dst = f32u(600, -1, 1);
        BOTH(copy, F(dst) + 37, F(src) + 11, 401 * sizeof(float));
        CMP("dst", dst);
    }
    op_end();

    op_begin("fill (offset range)");
    {
        buf y = f32u(1000, -1, 1);
        BOTH(fill, F(y) + 5, -2.75f, 777);
        BOTH(fill, F(y) + 900, 0.0f, 3);
        CMP("y", y);
    }
    op_end();

    op_begin("set_precision fp32");
    {
        int bad = 0;
        if (g_dut_ops.set_precision)
            bad = OP(set_precision)(g_be[0], HALLU_PRECISION_FP32, &err) != HALLU_OK;
        op_note("status", bad ? INFINITY : 0, 1);
        if (bad)
            fprintf(stderr, "    %s\n", err.msg);
    }
    op_end();

    op_begin("inject_fault (the next op fails, then clears)");
    if (g_dut_ops.inject_fault) {
        buf y = f32u(16, -1, 1);
        hallu_status s = OP(inject_fault)(g_be[0], 1, 0, &err);
        int bad = s != HALLU_OK;
        OP(fill)(g_be[0], F(y), 1.0f, 16);
        hallu_error e2 = { 0 };
        bad |= hallu_backend_check(g_be[0], &e2) == HALLU_OK;   /* the injected failure must show */
        hallu_backend_clear_failure(g_be[0]);
        bad |= OP(inject_fault)(g_be[0], 0, 0, &err) != HALLU_OK;
        op_note("fault seen", bad ? INFINITY : 0, 1);
        CMP("y (untouched by the failed fill)", y);
    } else {
        op_note("no hook (NULL slot)", 0, 1);
    }
    op_end();
}

/* ---- convolution ---- */

static void t_conv(int n, int h, int w, int cin, int cout, int k, int stride, int pad, int null_variants)
{
    hallu_error err = { 0 };
    hallu_conv2d_geom g;
    if (hallu_conv2d_geom_init(&g, n, h, w, cin, cout, k, stride, pad, &err) != HALLU_OK)
        die("%s", err.msg);
    hallu_conv2d_plan *plan[2] = { NULL, NULL };
    for (g_side = 0; g_side < 2; g_side++)
        if (OP(conv2d_plan_create)(g_be[g_side], &g, &plan[g_side], &err) != HALLU_OK)
            die("conv2d_plan_create on %s: %s", g_be[g_side]->ops->name, err.msg);
    g_side = 0;
    size_t nx = (size_t)n * h * w * cin, nw = (size_t)cout * cin * k * k, ny = (size_t)n * g.oh * g.ow * cout;
    char geo[96];
    snprintf(geo, sizeof geo, "n=%d %dx%dx%d->%d k=%d s=%d p=%d", n, h, w, cin, cout, k, stride, pad);

    buf x = f32u(nx, -1, 1), wt = f32u(nw, -0.5, 0.5), y = f32u(ny, -9, 9);
    op_begin("conv2d_forward %s", geo);
    BOTH_PLAN(conv2d_forward, plan, F(y), F(x), NULL, F(wt));
    CMP("y", y);
    op_end();

    /* bf16 plans' conv2d_forward_y16 is checked against bf16(y) in
     * test_conv_bf16; the plans here are fp32: refused, nothing written. */
    op_begin("conv2d_forward_y16 on an fp32 plan: refused %s", geo);
    if (g_dut_ops.conv2d_forward_y16) {
        buf y16 = mk(T_U16, ny), keep = mk(T_U16, ny);
        BOTH(fill, F(y16), 3.0f, (int64_t)(ny / 2));
        BOTH(copy, F(keep), F(y16), ny * 2);
        int done = OP(conv2d_forward_y16)(plan[0], (uint16_t *)y16.p[0], F(x), NULL, F(wt));
        op_note("return value (1: wrote)", done, !done);
        dut_bytes_same("y16 untouched", y16, keep);
    }
    op_end();

    op_begin("conv2d_backward_dx16 on an fp32 plan: refused %s", geo);
    if (g_dut_ops.conv2d_backward_dx16) {
        buf dx16 = mk(T_U16, nx), keep = mk(T_U16, nx), dy1 = f32u(ny, -1, 1);
        BOTH(fill, F(dx16), 3.0f, (int64_t)(nx / 2));
        BOTH(copy, F(keep), F(dx16), nx * 2);
        int done = OP(conv2d_backward_dx16)(plan[0], (uint16_t *)dx16.p[0], NULL, F(dy1), NULL, F(x), NULL, F(wt));
        op_note("return value (1: ran)", done, !done);
        dut_bytes_same("dx16 untouched", dx16, keep);
    }
    op_end();

    buf dy = f32u(ny, -1, 1), dx = f32u(nx, -9, 9), dw = f32u(nw, -0.3, 0.3);
    op_begin("conv2d_backward %s", geo);
    BOTH_PLAN(conv2d_backward, plan, F(dx), F(dw), F(dy), NULL, F(x), NULL, F(wt));
    CMP("dx", dx);
    CMP("dw (accumulated)", dw);
    op_end();

    if (null_variants) {
        op_begin("conv2d_backward dx=NULL %s", geo);
        sync_ref(dw);
        BOTH_PLAN(conv2d_backward, plan, NULL, F(dw), F(dy), NULL, F(x), NULL, F(wt));
        CMP("dw", dw);
        op_end();
        op_begin("conv2d_backward dw=NULL %s", geo);
        BOTH_PLAN(conv2d_backward, plan, F(dx), NULL, F(dy), NULL, F(x), NULL, F(wt));
        CMP("dx", dx);
        op_end();
    }
    for (g_side = 0; g_side < 2; g_side++)
        OP(conv2d_plan_free)(plan[g_side]);
    g_side = 0;
}

/* ---- batch norm ---- */

/* x [m][c] with a per-column offset (BN must not lose digits to it). */
static buf bn_input(int64_t m, int c)
{
    float *h = tu_falloc((size_t)m * c);
    for (int j = 0; j < c; j++) {
        double off = hallu_rng_range(&g_rng, -3, 3), sc = hallu_rng_range(&g_rng, 0.2, 2);
        for (int64_t i = 0; i < m; i++)
            h[i * c + j] = (float)(off + sc * hallu_rng_normal(&g_rng));
    }
    buf b = f32h(h, (size_t)m * c);
    free(h);
    return b;
}


/* Elements of `got` whose bits differ from `want`'s on the device under test
 * (a fused op against the ops it fuses, run there). want16: got holds bf16,
 * compared with the bf16 rounding of want's floats. */
static void dut_same(const char *name, buf got, buf want, int want16)
{
    size_t n = got.n;
    float *w = tu_falloc(n);
    void *g = tu_xmalloc(n * k_tsize[got.type] + 1);
    get(want, 0, w);
    get(got, 0, g);
    int64_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += want16 ? ((uint16_t *)g)[i] != bf16_bits(w[i]) : memcmp((float *)g + i, w + i, sizeof(float)) != 0;
    op_note(name, (double)bad, bad == 0);
    free(w), free(g);
}

/* The fused ops (batchnorm_normalize_fused, batchnorm_backward_fused) against
 * the ops they fuse, on the device under test, bit for bit, and against the
 * reference as every op. Channel 0 has gamma = beta = 0: bn(x) is exactly 0
 * there, ReLU's kink (y = 0, gradient cut). */
static void t_batchnorm_relu(int64_t m, int c, buf x, buf hm, buf hv)
{
    op_begin("batchnorm_normalize_fused m=%lld c=%d: relu(batchnorm_normalize + residual), y16 = bf16", (long long)m,
             c);
    if (!g_dut_ops.batchnorm_normalize_fused) {
        op_end();
        return;
    }
    const float eps = 1e-5f;
    size_t n = (size_t)m * c;
    buf gamma = f32u(c, 0.5, 1.5), beta = f32u(c, -0.5, 0.5);
    BOTH(fill, F(gamma), 0.0f, 1);
    BOTH(fill, F(beta), 0.0f, 1);
    buf res = f32u(n, -1, 1), bn = mk(T_F32, n), want = mk(T_F32, n), y = mk(T_F32, n), y16 = mk(T_U16, n);
    buf sm = f32u(c, -9, 9), si = f32u(c, -9, 9), ss = f32u(c, -9, 9), sm2 = mk(T_F32, c), si2 = mk(T_F32, c);
    BOTH(batchnorm_normalize, F(bn), F(sm2), F(si2), F(x), DB(hm), DB(hv), F(gamma), F(beta), m, c, eps);
    BOTH(add, F(want), F(bn), F(res), (int64_t)n);
    BOTH(relu_forward, F(want), F(want), (int64_t)n);
    BOTH(batchnorm_normalize_fused, F(y), (uint16_t *)y16.p[g_side], F(sm), F(si), F(ss), F(x), NULL, DB(hm), DB(hv),
         F(gamma), F(beta), F(res), NULL, 1, m, c, eps);
    CMP("y", y);
    CMP("y16", y16);
    CMP("save_mean", sm);
    CMP("save_invstd", si);
    CMP("save_scale", ss);
    dut_same("y vs batchnorm_normalize, add, relu_forward (elements off)", y, want, 0);
    dut_same("y16 vs bf16 of that (elements off)", y16, want, 1);
    dut_same("save_mean vs batchnorm_normalize's (elements off)", sm, sm2, 0);
    dut_same("save_invstd vs batchnorm_normalize's (elements off)", si, si2, 0);
    {   /* save_scale: the float of invstd * gamma in double, as batchnorm_normalize scales */
        double *hvar = tu_dalloc(c);
        float *hg = tu_falloc(c), *hs = tu_falloc(c);
        get(hv, 0, hvar);
        get(gamma, 0, hg);
        get(ss, 0, hs);
        int64_t bad = 0;
        for (int j = 0; j < c; j++)
            bad += hs[j] != (float)(1.0 / sqrt(hvar[j] + (double)eps) * (double)hg[j]);
        op_note("save_scale vs float(invstd * gamma) (channels off)", (double)bad, bad == 0);
        free(hvar), free(hg), free(hs);
    }
    /* No residual, y16 only / y only. */
    BOTH(copy, F(want), F(bn), n * sizeof(float));
    BOTH(relu_forward, F(want), F(want), (int64_t)n);
    BOTH(fill, F(y), 7.0f, (int64_t)n);
    BOTH(batchnorm_normalize_fused, NULL, (uint16_t *)y16.p[g_side], F(sm), F(si), F(ss), F(x), NULL, DB(hm), DB(hv),
         F(gamma), F(beta), NULL, NULL, 1, m, c, eps);
    BOTH(batchnorm_normalize_fused, F(y), NULL, F(sm), F(si), F(ss), F(x), NULL, DB(hm), DB(hv), F(gamma), F(beta),
         NULL, NULL, 1, m, c, eps);
    CMP("y (no residual)", y);
    dut_same("y (no residual) vs batchnorm_normalize, relu_forward (elements off)", y, want, 0);
    dut_same("y16 alone (no residual) vs bf16 of that (elements off)", y16, want, 1);
    op_end();

    op_begin("batchnorm_backward_fused m=%lld c=%d: relu_backward, then batchnorm_backward (_x16)", (long long)m, c);
    buf dy = f32u(n, -1, 1), dyr = mk(T_F32, n), dx = mk(T_F32, n), dxw = mk(T_F32, n), dx16 = mk(T_U16, n);
    buf dg = f32u(c, -0.2, 0.2), db = f32u(c, -0.2, 0.2), dgw = mk(T_F32, c), dbw = mk(T_F32, c);
    BOTH(copy, F(dgw), F(dg), c * sizeof(float));
    BOTH(copy, F(dbw), F(db), c * sizeof(float));
    BOTH(relu_backward, F(dyr), F(dy), F(want), (int64_t)n);   /* want: relu(bn(x)), the forward's output */
    BOTH(batchnorm_backward, F(dxw), F(dgw), F(dbw), F(dyr), F(x), F(sm), F(si), F(gamma), m, c);
    BOTH(batchnorm_backward_fused, F(dx), NULL, F(dg), F(db), F(dy), NULL, F(x), NULL, F(sm), F(si), F(ss), F(gamma),
         F(beta), m, c);
    CMP("dx", dx);
    CMP("dgamma (accumulated)", dg);
    CMP("dbeta (accumulated)", db);
    dut_same("dx vs relu_backward + batchnorm_backward (elements off)", dx, dxw, 0);
    dut_same("dgamma vs the same (elements off)", dg, dgw, 0);
    dut_same("dbeta vs the same (elements off)", db, dbw, 0);
    BOTH(batchnorm_backward_fused, NULL, (uint16_t *)dx16.p[g_side], NULL, NULL, F(dy), NULL, F(x), NULL, F(sm), F(si),
         F(ss), F(gamma), F(beta), m, c);
    dut_same("dx16 vs bf16 of that dx (elements off)", dx16, dxw, 1);
    BOTH(batchnorm_backward_fused, F(dy), NULL, NULL, NULL, F(dy), NULL, F(x), NULL, F(sm), F(si), F(ss), F(gamma),
         F(beta), m, c);
    dut_same("dx in place (dx = dy) vs the same (elements off)", dy, dxw, 0);
    op_end();
}

/* Columns [0, w) of the device under test's x [m][c], as a new [m][w] buffer
 * (on both sides). */
static buf columns(buf x, int64_t m, int c, int w)
{
    float *h = tu_falloc((size_t)m * c), *hw = tu_falloc((size_t)m * w);
    get(x, 0, h);
    for (int64_t r = 0; r < m; r++)
        memcpy(hw + r * w, h + r * c, (size_t)w * sizeof(float));
    buf b = f32h(hw, (size_t)m * w);
    free(h), free(hw);
    return b;
}

/* Batch norm's sums over wide rows run in groups of 64 channels (the CPU's
 * AVX-512 path) and the channels past the last group one by one: a channel's
 * statistics and gradients must not depend on which way it went. The first 8
 * of 72 channels (in a group) against the same 8 columns alone (c = 8: none
 * in a group), bit for bit, for the CPU backends (same row split: same m). */
static void t_bn_channel_groups(int64_t m)
{
    enum { C = 72, W = 8 };
    op_begin("batchnorm sums m=%lld: channels in groups of 64 vs alone (c=%d vs %d)", (long long)m, C, W);
    if (!g_exact || !g_dut_ops.batchnorm_normalize_fused) {
        op_end();
        return;
    }
    const float eps = 1e-5f;
    buf x = bn_input(m, C), dy = f32u((size_t)m * C, -1, 1), gamma = f32u(C, 0.5, 1.5), beta = f32u(C, -0.5, 0.5);
    BOTH(fill, F(gamma) + 3, 0.0f, 1);   /* a channel at ReLU's kink */
    BOTH(fill, F(beta) + 3, 0.0f, 1);
    buf xw = columns(x, m, C, W), dyw = columns(dy, m, C, W);
    buf mean = mk(T_F64, 2 * C), meanw = mk(T_F64, 2 * W);
    BOTH(batchnorm_stats, DB(mean), DB(mean) + C, F(x), m, C);
    BOTH(batchnorm_stats, DB(meanw), DB(meanw) + W, F(xw), m, W);
    double *hm = tu_dalloc(2 * C), *hmw = tu_dalloc(2 * W);
    get(mean, 0, hm);
    get(meanw, 0, hmw);
    int bad = memcmp(hm, hmw, W * sizeof(double)) != 0 || memcmp(hm + C, hmw + W, W * sizeof(double)) != 0;
    op_note("mean and var of the first 8 channels", bad, !bad);
    free(hm), free(hmw);
    buf sm = mk(T_F32, C), si = mk(T_F32, C), ss = mk(T_F32, C), y16 = mk(T_U16, (size_t)m * C);
    buf smw = mk(T_F32, W), siw = mk(T_F32, W), ssw = mk(T_F32, W), y16w = mk(T_U16, (size_t)m * W);
    BOTH(batchnorm_normalize_fused, NULL, (uint16_t *)y16.p[g_side], F(sm), F(si), F(ss), F(x), NULL, DB(mean),
         DB(mean) + C, F(gamma), F(beta), NULL, NULL, 1, m, C, eps);
    BOTH(batchnorm_normalize_fused, NULL, (uint16_t *)y16w.p[g_side], F(smw), F(siw), F(ssw), F(xw), NULL,
         DB(meanw), DB(meanw) + W, F(gamma), F(beta), NULL, NULL, 1, m, W, eps);
    for (int relu = 0; relu < 2; relu++) {
        buf dx = mk(T_F32, (size_t)m * C), dg = mk(T_F32, C), db = mk(T_F32, C);
        buf dxw = mk(T_F32, (size_t)m * W), dgw = mk(T_F32, W), dbw = mk(T_F32, W);
        BOTH(fill, F(dg), 0.0f, C);
        BOTH(fill, F(db), 0.0f, C);
        BOTH(fill, F(dgw), 0.0f, W);
        BOTH(fill, F(dbw), 0.0f, W);
        BOTH(batchnorm_backward_fused, F(dx), NULL, F(dg), F(db), F(dy), NULL, F(x), NULL, F(sm), F(si),
             relu ? F(ss) : NULL, F(gamma), F(beta), m, C);
        BOTH(batchnorm_backward_fused, F(dxw), NULL, F(dgw), F(dbw), F(dyw), NULL, F(xw), NULL, F(smw), F(siw),
             relu ? F(ssw) : NULL, F(gamma), F(beta), m, W);
        buf dxc = columns(dx, m, C, W), dgc = columns(dg, 1, C, W), dbc = columns(db, 1, C, W);
        dut_same(relu ? "dx with the ReLU mask" : "dx", dxc, dxw, 0);
        dut_same(relu ? "dgamma with the ReLU mask" : "dgamma", dgc, dgw, 0);
        dut_same(relu ? "dbeta with the ReLU mask" : "dbeta", dbc, dbw, 0);
    }
    op_end();
}

/* b16 = bf16(b) and bw = its floats, from the device under test's b (both sides). */
static void bf16_pair(buf b, buf b16, buf bw)
{
    float *h = tu_falloc(b.n);
    uint16_t *h16 = tu_xmalloc(b.n * 2);
    get(b, 0, h);
    for (size_t i = 0; i < b.n; i++) {
        h16[i] = bf16_bits(h[i]);
        uint32_t u = (uint32_t)h16[i] << 16;
        memcpy(&h[i], &u, sizeof u);
    }
    put(b16, h16);
    put(bw, h);
    free(h), free(h16);
}

/* Batch norm reading bf16 values (x16: a bf16 convolution's stored output)
 * against the same ops on those values as floats, bit for bit: statistics,
 * the fused normalize (ReLU, residual, both outputs) and the fused backward
 * with and without the ReLU mask, dx and dx16. c = 72: a group of 64 channels
 * and 8 past it (the CPU's two sums paths). */
static void t_bn_x16(int64_t m)
{
    enum { C = 72 };
    op_begin("batchnorm ops on bf16 input (x16) m=%lld c=%d: as on its floats", (long long)m, C);
    if (!g_dut_ops.batchnorm_stats_x16 || !g_dut_ops.batchnorm_normalize_fused) {
        op_end();
        return;
    }
    const float eps = 1e-5f;
    size_t n = (size_t)m * C;
    buf xf = bn_input(m, C), x16 = mk(T_U16, n), xw = mk(T_F32, n);
    bf16_pair(xf, x16, xw);   /* x16 = bf16(xf), xw = its floats */
    buf st16 = mk(T_F64, 2 * C), st = mk(T_F64, 2 * C);
    BOTH(batchnorm_stats_x16, DB(st16), DB(st16) + C, (uint16_t *)x16.p[g_side], m, C);
    BOTH(batchnorm_stats, DB(st), DB(st) + C, F(xw), m, C);
    CMP("mean and var from x16", st16);
    dut_bytes_same("mean and var vs batchnorm_stats on its floats", st16, st);
    buf gamma = f32u(C, 0.5, 1.5), beta = f32u(C, -0.5, 0.5), res = f32u(n, -1, 1);
    BOTH(fill, F(gamma) + 3, 0.0f, 1);   /* a channel at ReLU's kink */
    BOTH(fill, F(beta) + 3, 0.0f, 1);
    buf sm = mk(T_F32, C), si = mk(T_F32, C), ss = mk(T_F32, C), smw = mk(T_F32, C), siw = mk(T_F32, C);
    buf ssw = mk(T_F32, C), y = mk(T_F32, n), yw = mk(T_F32, n), y16 = mk(T_U16, n), y16w = mk(T_U16, n);
    for (int relu = 0; relu < 2; relu++) {
        BOTH(batchnorm_normalize_fused, F(y), (uint16_t *)y16.p[g_side], F(sm), F(si), F(ss), NULL,
             (uint16_t *)x16.p[g_side], DB(st), DB(st) + C, F(gamma), F(beta), relu ? F(res) : NULL, NULL, relu, m, C,
             eps);
        BOTH(batchnorm_normalize_fused, F(yw), (uint16_t *)y16w.p[g_side], F(smw), F(siw), F(ssw), F(xw), NULL,
             DB(st), DB(st) + C, F(gamma), F(beta), relu ? F(res) : NULL, NULL, relu, m, C, eps);
        dut_same(relu ? "y (residual, relu)" : "y", y, yw, 0);
        dut_same("save_scale", ss, ssw, 0);
        CMP("y16", y16);
        dut_bytes_same("y16 vs on the floats", y16, y16w);
    }
    {   /* the residual as bf16 values (residual16) vs on its floats, with x16 and x, y and y16 written */
        buf r16 = mk(T_U16, n), rw = mk(T_F32, n);
        bf16_pair(res, r16, rw);
        for (int in16 = 0; in16 < 2; in16++) {
            BOTH(batchnorm_normalize_fused, F(y), (uint16_t *)y16.p[g_side], F(sm), F(si), F(ss), in16 ? NULL : F(xw),
                 in16 ? (uint16_t *)x16.p[g_side] : NULL, DB(st), DB(st) + C, F(gamma), F(beta), NULL,
                 (uint16_t *)r16.p[g_side], 1, m, C, eps);
            BOTH(batchnorm_normalize_fused, F(yw), (uint16_t *)y16w.p[g_side], F(smw), F(siw), F(ssw), F(xw), NULL,
                 DB(st), DB(st) + C, F(gamma), F(beta), F(rw), NULL, 1, m, C, eps);
            dut_same("y (residual16, relu) vs on its floats", y, yw, 0);
            dut_bytes_same("y16 (residual16) vs on its floats", y16, y16w);
            CMP("y (residual16)", y);
            BOTH(batchnorm_normalize_fused, NULL, (uint16_t *)y16.p[g_side], F(sm), F(si), F(ss), in16 ? NULL : F(xw),
                 in16 ? (uint16_t *)x16.p[g_side] : NULL, DB(st), DB(st) + C, F(gamma), F(beta), NULL,
                 (uint16_t *)r16.p[g_side], 1, m, C, eps);
            dut_bytes_same("y16 alone (residual16) vs on its floats", y16, y16w);
        }
    }
    /* y (ReLU of bn(x) + res) as the backward's dy, the forward's saved statistics */
    buf dx = mk(T_F32, n), dxw = mk(T_F32, n), dx16 = mk(T_U16, n), dg = mk(T_F32, C), dgw = mk(T_F32, C);
    buf db = mk(T_F32, C), dbw = mk(T_F32, C);
    for (int relu = 0; relu < 2; relu++) {
        BOTH(fill, F(dg), 0.0f, C);
        BOTH(fill, F(db), 0.0f, C);
        BOTH(fill, F(dgw), 0.0f, C);
        BOTH(fill, F(dbw), 0.0f, C);
        BOTH(batchnorm_backward_fused, F(dx), NULL, F(dg), F(db), F(res), NULL, NULL, (uint16_t *)x16.p[g_side], F(sm),
             F(si), relu ? F(ss) : NULL, F(gamma), F(beta), m, C);
        BOTH(batchnorm_backward_fused, F(dxw), NULL, F(dgw), F(dbw), F(res), NULL, F(xw), NULL, F(sm), F(si),
             relu ? F(ss) : NULL, F(gamma), F(beta), m, C);
        BOTH(batchnorm_backward_fused, NULL, (uint16_t *)dx16.p[g_side], NULL, NULL, F(res), NULL, NULL,
             (uint16_t *)x16.p[g_side], F(sm), F(si), relu ? F(ss) : NULL, F(gamma), F(beta), m, C);
        dut_same(relu ? "dx (relu mask)" : "dx", dx, dxw, 0);
        dut_same(relu ? "dgamma (relu mask)" : "dgamma", dg, dgw, 0);
        dut_same(relu ? "dbeta (relu mask)" : "dbeta", db, dbw, 0);
        dut_same(relu ? "dx16 (relu mask) vs bf16 of dx" : "dx16 vs bf16 of dx", dx16, dxw, 1);
        CMP("dx", dx);
    }
    /* The gradient as bf16 values (dy16, a bf16 convolution's input gradient)
     * against the same op on its floats, with x16 and with x. */
    buf res16 = mk(T_U16, n), resw = mk(T_F32, n);
    bf16_pair(res, res16, resw);
    for (int relu = 0; relu < 2; relu++)
        for (int in16 = 0; in16 < 2; in16++) {
            BOTH(fill, F(dg), 0.0f, C);
            BOTH(fill, F(db), 0.0f, C);
            BOTH(fill, F(dgw), 0.0f, C);
            BOTH(fill, F(dbw), 0.0f, C);
            BOTH(batchnorm_backward_fused, F(dx), NULL, F(dg), F(db), NULL, (uint16_t *)res16.p[g_side],
                 in16 ? NULL : F(xw), in16 ? (uint16_t *)x16.p[g_side] : NULL, F(sm), F(si), relu ? F(ss) : NULL,
                 F(gamma), F(beta), m, C);
            BOTH(batchnorm_backward_fused, F(dxw), NULL, F(dgw), F(dbw), F(resw), NULL, F(xw), NULL, F(sm), F(si),
                 relu ? F(ss) : NULL, F(gamma), F(beta), m, C);
            BOTH(batchnorm_backward_fused, NULL, (uint16_t *)dx16.p[g_side], NULL, NULL, NULL,
                 (uint16_t *)res16.p[g_side], in16 ? NULL : F(xw), in16 ? (uint16_t *)x16.p[g_side] : NULL, F(sm),
                 F(si), relu ? F(ss) : NULL, F(gamma), F(beta), m, C);
            dut_same(relu ? "dx from dy16 (relu mask) vs from its floats" : "dx from dy16 vs from its floats", dx, dxw,
                     0);
            dut_same("dgamma from dy16", dg, dgw, 0);
            dut_same("dbeta from dy16", db, dbw, 0);
            dut_same("dx16 from dy16 vs bf16 of dx from its floats", dx16, dxw, 1);
            CMP("dx from dy16", dx);
        }
    op_end();
}

/* add_relu_backward_x16: each input as floats or bf16, the result as floats
 * or bf16, without the mask and with it from y or y16, against add_relu_backward (add) on the
 * inputs' floats, bit for bit; a length off the vector width (tails). */
static void t_add_relu_x16(size_t n)
{
    op_begin("add_relu_backward_x16 n=%zu: add_relu_backward on the floats, then bf16", n);
    if (!g_dut_ops.add_relu_backward_x16 || !g_dut_ops.add_relu_backward) {
        op_end();
        return;
    }
    buf a = f32u(n, -2, 2), b = f32u(n, -2, 2), y = f32u(n, -1, 1);
    BOTH(fill, F(y), 0.0f, 7);   /* y == 0: masked */
    buf a16 = mk(T_U16, n), aw = mk(T_F32, n), b16 = mk(T_U16, n), bw = mk(T_F32, n);
    buf y16 = mk(T_U16, n), yw = mk(T_F32, n);
    bf16_pair(a, a16, aw);
    bf16_pair(b, b16, bw);
    bf16_pair(y, y16, yw);
    buf want = mk(T_F32, n), got = mk(T_F32, n), got16 = mk(T_U16, n);
    for (int k = 0; k < 24; k++) {   /* mask: 0 none, 1 from y, 2 from y16 */
        int in_a16 = k & 1, in_b16 = (k >> 1) & 1, out16 = (k >> 2) & 1, mask = k >> 3;
        const char *what[3][2] = { { "dx (no mask)", "dx16 (no mask)" }, { "dx (mask y)", "dx16 (mask y)" },
                                   { "dx (mask y16)", "dx16 (mask y16)" } };
        if (mask)
            BOTH(add_relu_backward, F(want), in_a16 ? F(aw) : F(a), in_b16 ? F(bw) : F(b), mask == 1 ? F(y) : F(yw),
                 (int64_t)n);
        else
            BOTH(add, F(want), in_a16 ? F(aw) : F(a), in_b16 ? F(bw) : F(b), (int64_t)n);
        BOTH(add_relu_backward_x16, out16 ? NULL : F(got), out16 ? (uint16_t *)got16.p[g_side] : NULL,
             in_a16 ? NULL : F(a), in_a16 ? (uint16_t *)a16.p[g_side] : NULL, in_b16 ? NULL : F(b),
             in_b16 ? (uint16_t *)b16.p[g_side] : NULL, mask == 1 ? F(y) : NULL,
             mask == 2 ? (uint16_t *)y16.p[g_side] : NULL, (int64_t)n);
        dut_same(what[mask][out16], out16 ? got16 : got, want, out16);
        if (out16)
            CMP("dx16", got16);
        else
            CMP("dx", got);
    }
    /* in place: dx16 over a16 */
    BOTH(add_relu_backward, F(want), F(aw), F(b), F(y), (int64_t)n);
    BOTH(add_relu_backward_x16, NULL, (uint16_t *)a16.p[g_side], NULL, (uint16_t *)a16.p[g_side], F(b), NULL, F(y),
         NULL, (int64_t)n);
    dut_same("dx16 in place over a16", a16, want, 1);
    op_end();
}

static void t_batchnorm(int64_t m, int c)
{
    const float eps = 1e-5f, mom = 0.1f;
    buf x = bn_input(m, c), gamma = f32u(c, 0.5, 1.5), beta = f32u(c, -0.5, 0.5);
    buf y = f32u((size_t)m * c, -9, 9), sm = f32u(c, -9, 9), si = f32u(c, -9, 9);
    buf rm = f32u(c, -0.5, 0.5), rv = f32u(c, 0.5, 2);

    op_begin("batchnorm_forward_train m=%lld c=%d", (long long)m, c);
    BOTH(batchnorm_forward_train, F(y), F(sm), F(si), F(rm), F(rv), F(x), F(gamma), F(beta), m, c, mom, eps);
    CMP("y", y);
    CMP("save_mean", sm);
    CMP("save_invstd", si);
    CMP("running_mean", rm);
    CMP("running_var", rv);
    op_end();

    op_begin("batchnorm_forward_train affine=false m=%lld c=%d", (long long)m, c);
    BOTH(batchnorm_forward_train, F(y), F(sm), F(si), F(rm), F(rv), F(x), NULL, NULL, m, c, mom, eps);
    CMP("y", y);
    CMP("save_invstd", si);
    CMP("running_var", rv);
    op_end();

    op_begin("batchnorm_forward_eval m=%lld c=%d", (long long)m, c);
    sync_ref(rm);
    sync_ref(rv);
    BOTH(batchnorm_forward_eval, F(y), F(x), F(rm), F(rv), F(gamma), F(beta), m, c, eps);
    CMP("y", y);
    BOTH(batchnorm_forward_eval, F(y), F(x), F(rm), F(rv), NULL, NULL, m, c, eps);
    CMP("y (affine=false)", y);
    op_end();

    /* Backward from the reference's saved statistics of x. */
    BOTH(batchnorm_forward_train, F(y), F(sm), F(si), NULL, NULL, F(x), F(gamma), F(beta), m, c, mom, eps);
    sync_ref(sm);
    sync_ref(si);
    buf dy = f32u((size_t)m * c, -1, 1), dx = f32u((size_t)m * c, -9, 9);
    buf dg = f32u(c, -0.2, 0.2), db = f32u(c, -0.2, 0.2);
    op_begin("batchnorm_backward m=%lld c=%d", (long long)m, c);
    BOTH(batchnorm_backward, F(dx), F(dg), F(db), F(dy), F(x), F(sm), F(si), F(gamma), m, c);
    CMP("dx", dx);
    CMP("dgamma (accumulated)", dg);
    CMP("dbeta (accumulated)", db);
    op_end();

    op_begin("batchnorm_backward in place dx=dy, affine=false");
    buf dyy = mk(T_F32, (size_t)m * c);
    BOTH(copy, F(dyy), F(dy), (size_t)m * c * sizeof(float));
    BOTH(batchnorm_backward, F(dyy), NULL, NULL, F(dyy), F(x), F(sm), F(si), NULL, m, c);
    CMP("dx", dyy);
    op_end();

    op_begin("batchnorm_backward dx=NULL (parameter gradients only)");
    sync_ref(dg);
    sync_ref(db);
    BOTH(batchnorm_backward, NULL, F(dg), F(db), F(dy), F(x), F(sm), F(si), F(gamma), m, c);
    CMP("dgamma", dg);
    CMP("dbeta", db);
    op_end();

    op_begin("batchnorm_backward_x16 m=%lld c=%d: dx16 = bf16 of batchnorm_backward's dx", (long long)m, c);
    if (g_dut_ops.batchnorm_backward_x16) {
        size_t n = (size_t)m * c;
        buf dx16 = mk(T_U16, n);
        sync_ref(dg);
        sync_ref(db);
        BOTH(batchnorm_backward_x16, (uint16_t *)dx16.p[g_side], F(dg), F(db), F(dy), F(x), F(sm), F(si), F(gamma),
             m, c);
        CMP("dgamma (accumulated)", dg);
        CMP("dbeta (accumulated)", db);
        float *want = tu_falloc(n);
        uint16_t *got = tu_xmalloc(n * 2);
        get(dx, 0, want);   /* batchnorm_backward's dx of the same inputs, above */
        get(dx16, 0, got);
        int64_t bad = 0;
        for (size_t i = 0; i < n; i++)
            bad += got[i] != bf16_bits(want[i]);
        op_note("dx16 vs bf16(dx) (elements off)", (double)bad, bad == 0);
        free(want), free(got);
    }
    op_end();

    /* The split ops (SyncBN). */
    buf mean = f64u(c, -9, 9), var = f64u(c, -9, 9);
    op_begin("batchnorm_stats m=%lld c=%d", (long long)m, c);
    BOTH(batchnorm_stats, DB(mean), DB(var), F(x), m, c);
    CMP("mean (double)", mean);
    CMP("var (double)", var);
    op_end();

    buf hm = f64u(c, -2, 2), hv = f64u(c, 0.3, 3);
    op_begin("batchnorm_normalize m=%lld c=%d", (long long)m, c);
    BOTH(batchnorm_normalize, F(y), F(sm), F(si), F(x), DB(hm), DB(hv), F(gamma), F(beta), m, c, eps);
    CMP("y", y);
    CMP("save_mean", sm);
    CMP("save_invstd", si);
    BOTH(batchnorm_normalize, F(y), F(sm), F(si), F(x), DB(hm), DB(hv), NULL, NULL, m, c, eps);
    CMP("y (affine=false)", y);
    op_end();

    t_batchnorm_relu(m, c, x, hm, hv);

    op_begin("batchnorm_update_running m=%lld c=%d", (long long)m, c);
    sync_ref(rm);
    sync_ref(rv);
    BOTH(batchnorm_update_running, F(rm), F(rv), DB(hm), DB(hv), m, c, mom);
    CMP("running_mean", rm);
    CMP("running_var", rv);
    BOTH(batchnorm_update_running, NULL, F(rv), DB(hm), DB(hv), m, c, 0.25f);
    BOTH(batchnorm_update_running, F(rm), NULL, DB(hm), DB(hv), m, c, 0.25f);
    CMP("running_mean (var NULL)", rm);
    CMP("running_var (mean NULL)", rv);
    op_end();

    op_begin("batchnorm_stats_to_moments c=%d", c);
    buf mm = f64u(c, -2, 2), mv = f64u(c, 0.1, 3);
    BOTH(batchnorm_stats_to_moments, DB(mm), DB(mv), c);
    CMP("mean", mm);
    CMP("E[x^2]", mv);
    op_end();

    op_begin("batchnorm_moments_to_stats c=%d (sums of 2 ranks, a clamp)", c);
    {
        double *h1 = tu_dalloc(c), *h2 = tu_dalloc(c);
        for (int j = 0; j < c; j++) {
            h1[j] = hallu_rng_range(&g_rng, -4, 4);
            h2[j] = 2 * (h1[j] / 2) * (h1[j] / 2) + hallu_rng_range(&g_rng, 0.01, 3);
        }
        h2[0] = 2 * (h1[0] / 2) * (h1[0] / 2) - 1e-9;   /* rounding below mean^2: var clamps at 0 */
        buf sm1 = mk(T_F64, c), sm2 = mk(T_F64, c);
        put(sm1, h1);
        put(sm2, h2);
        BOTH(batchnorm_moments_to_stats, DB(sm1), DB(sm2), c, 0.5);
        CMP("mean", sm1);
        CMP("var", sm2);
        free(h1);
        free(h2);
    }
    op_end();

    op_begin("batchnorm_backward_reduce m=%lld c=%d", (long long)m, c);
    buf sums = f64u(2 * (size_t)c, -9, 9);
    sync_ref(dg);
    sync_ref(db);
    BOTH(batchnorm_backward_reduce, DB(sums), F(dg), F(db), F(dy), F(x), F(sm), F(si), m, c);
    CMP("sums (double)", sums);
    CMP("dgamma (accumulated)", dg);
    CMP("dbeta (accumulated)", db);
    BOTH(batchnorm_backward_reduce, DB(sums), NULL, NULL, F(dy), F(x), F(sm), F(si), m, c);
    CMP("sums (dgamma/dbeta NULL)", sums);
    op_end();

    op_begin("batchnorm_backward_apply m=%lld m_total=%lld c=%d", (long long)m, (long long)(3 * m), c);
    {
        /* Sums over 3 ranks' rows: this rank's sums times ~3. */
        double *hs = tu_dalloc(2 * (size_t)c);
        get(sums, 1, hs);
        for (int j = 0; j < 2 * c; j++)
            hs[j] = hs[j] * 3 + hallu_rng_range(&g_rng, -1, 1);
        buf s3 = mk(T_F64, 2 * (size_t)c);
        put(s3, hs);
        BOTH(batchnorm_backward_apply, F(dx), F(dy), F(x), F(sm), F(si), F(gamma), DB(s3), m, 3 * m, c);
        CMP("dx", dx);
        BOTH(batchnorm_backward_apply, F(dx), F(dy), F(x), F(sm), F(si), NULL, DB(s3), m, 3 * m, c);
        CMP("dx (affine=false)", dx);
        free(hs);
    }
    op_end();
}

static void t_bn_grouped(int groups, int64_t rows_per, int c)
{
    op_begin("batchnorm_update_running_grouped groups=%d rows=%lld c=%d", groups, (long long)rows_per, c);
    buf sm = f32u((size_t)groups * c, -2, 2), si = f32u((size_t)groups * c, 0.5, 3);
    buf rm = f32u(c, -0.5, 0.5), rv = f32u(c, 0.5, 2);
    BOTH(batchnorm_update_running_grouped, F(rm), F(rv), F(sm), F(si), groups, rows_per, c, 0.1f, 1e-5f);
    CMP("running_mean", rm);
    CMP("running_var", rv);
    op_end();
}

/* ---- elementwise ---- */

static void t_eltwise(void)
{
    const int64_t n = 40000;   /* above the CPU's parallel threshold */
    buf x = f32u(n, -1, 1), y = f32u(n, -9, 9), a = f32u(n, -2, 2), b = f32u(n, -2, 2);
    BOTH(fill, F(x) + 100, 0.0f, 50);   /* exact zeros: ReLU's kink */

    op_begin("relu_forward n=%lld (and in place)", (long long)n);
    BOTH(relu_forward, F(y), F(x), n);
    CMP("y", y);
    buf xi = mk(T_F32, n);
    BOTH(copy, F(xi), F(x), n * sizeof(float));
    BOTH(relu_forward, F(xi), F(xi), n);
    CMP("y (in place)", xi);
    op_end();

    op_begin("relu_forward_x16 n=%lld (and in place): y as relu_forward, y16 = bf16(y)", (long long)n);
    if (g_dut_ops.relu_forward_x16) {
        /* rounding cases: ties to even both ways, a carry into the exponent,
         * overflow to infinity, NaN, denormals (flushed to zero, as
         * vcvtneps2bf16 and oneDNN's reorders do) */
        static const uint32_t special[] = { 0x3f808000u, 0x3f818000u, 0x3f80c000u, 0x3f7fffffu, 0x7f7fffffu,
                                            0x7fc00001u, 0x7f800001u, 0x00008000u, 0x00018000u, 0x007fffffu };
        float *hx = tu_falloc(n), *hy = tu_falloc(n);
        get(x, 1, hx);
        /* at 200 (a vector loop's body) and before n - 3 (the in-place call
         * below runs on n - 3 elements: a scalar tail where vector loops step 16) */
        enum { NS = sizeof special / sizeof special[0] };
        for (size_t i = 0; i < NS; i++) {
            memcpy(&hx[200 + i], &special[i], sizeof special[i]);
            memcpy(&hx[n - 3 - NS + i], &special[i], sizeof special[i]);
        }
        buf xs = mk(T_F32, n), y16 = mk(T_U16, n), yi = mk(T_F32, n), yi16 = mk(T_U16, n);
        put(xs, hx);
        BOTH(relu_forward_x16, F(y), (uint16_t *)y16.p[g_side], F(xs), n);
        CMP("y", y);
        BOTH(copy, F(yi), F(xs), n * sizeof(float));
        BOTH(fill, F(yi16), 0.0f, n / 2);   /* the 3 elements past n - 3: zero bits */
        BOTH(relu_forward_x16, F(yi), (uint16_t *)yi16.p[g_side], F(yi), n - 3);
        CMP("y (in place)", yi);
        uint16_t *got = tu_xmalloc(n * 2), *got_in_place = tu_xmalloc(n * 2);
        get(y16, 0, got);
        get(yi16, 0, got_in_place);
        get(y, 0, hy);
        int64_t bad = 0;
        for (int64_t i = 0; i < n; i++) {
            uint16_t want = bf16_bits(hy[i]);
            bad += got[i] != want || got_in_place[i] != (i < n - 3 ? want : 0);
        }
        op_note("y16 vs round-to-nearest-even bf16 of y (elements off)", (double)bad, bad == 0);
        free(hx), free(hy), free(got), free(got_in_place);
    }
    op_end();

    op_begin("relu_backward n=%lld (and in place)", (long long)n);
    buf dy = f32u(n, -1, 1), dx = f32u(n, -9, 9);
    BOTH(relu_backward, F(dx), F(dy), F(y), n);
    CMP("dx", dx);
    BOTH(relu_backward, F(dy), F(dy), F(y), n);
    CMP("dx (in place)", dy);
    op_end();

    op_begin("add n=%lld", (long long)n);
    BOTH(add, F(y), F(a), F(b), n);
    CMP("y", y);
    op_end();

    op_begin("add_relu_backward n=%lld (and in place): add, then relu_backward", (long long)n);
    if (g_dut_ops.add_relu_backward) {
        buf want = mk(T_F32, n), da = mk(T_F32, n);
        BOTH(relu_forward, F(y), F(x), n);   /* a ReLU output with exact zeros */
        BOTH(add, F(want), F(a), F(b), n);
        BOTH(relu_backward, F(want), F(want), F(y), n);
        BOTH(add_relu_backward, F(dx), F(a), F(b), F(y), n);
        CMP("dx", dx);
        dut_same("dx vs add + relu_backward (elements off)", dx, want, 0);
        BOTH(copy, F(da), F(a), n * sizeof(float));
        BOTH(add_relu_backward, F(da), F(da), F(b), F(y), n);
        dut_same("dx in place (dx = a) vs the same (elements off)", da, want, 0);
    }
    op_end();

    op_begin("axpy n=%lld", (long long)n);
    BOTH(axpy, F(y), -0.37f, F(a), n);
    CMP("y", y);
    op_end();

    op_begin("scale n=%lld", (long long)n);
    BOTH(scale, F(y), 1.7f, F(b), n);
    CMP("y", y);
    op_end();

    op_begin("normalize_u8 (every byte value, odd size): the loader's bits");
    {
        int64_t pixels = 1031;
        size_t nb = (size_t)pixels * 3;
        uint8_t *h = tu_xmalloc(nb);
        for (size_t i = 0; i < nb; i++)
            h[i] = i < 768 ? (uint8_t)(i / 3) : (uint8_t)hallu_rng_u32(&g_rng);
        buf x = mk(T_U8, nb), out = f32u(nb + 8, -1, 1);
        put(x, h);
        BOTH(normalize_u8, F(out) + 3, (const uint8_t *)x.p[g_side] + 0, pixels, HALLU_CIFAR_MEAN, HALLU_CIFAR_STD);
        CMP("y", out);
        /* against the loader's own normalisation, on the host, bit for bit */
        float *want = tu_falloc(nb), *got = tu_falloc(nb + 8);
        hallu_image img = { h, 1, (int)pixels, nb };
        hallu_aug_normalize(want, &img, HALLU_CIFAR_MEAN, HALLU_CIFAR_STD);
        get(out, 0, got);
        int same = memcmp(want, got + 3, nb * sizeof(float)) == 0;
        op_note("y vs hallu_aug_normalize (bits)", same ? 0 : INFINITY, same);
        free(h);
        free(want);
        free(got);
    }
    op_end();

    op_begin("add_scalar n=7");
    BOTH(add_scalar, F(y) + 3, 1.0f, 7);
    BOTH(add_scalar, F(y) + 5, -0.125f, 7);
    CMP("y", y);
    op_end();
}

/* ---- pooling ---- */

static void t_maxpool(int n, int h, int w, int c, int k, int s, int p, int relu_input)
{
    hallu_error err = { 0 };
    hallu_pool2d_geom g;
    if (hallu_pool2d_geom_init(&g, n, h, w, c, k, s, p, &err) != HALLU_OK)
        die("%s", err.msg);
    size_t nx = (size_t)n * h * w * c, ny = (size_t)n * g.oh * g.ow * c;
    buf x = f32u(nx, -1, 1), y = f32u(ny, -9, 9), am = mk(T_I32, ny);
    if (relu_input)   /* after a ReLU: many zeros, whole windows of ties */
        BOTH(relu_forward, F(x), F(x), (int64_t)nx);
    op_begin("maxpool2d_forward n=%d %dx%dx%d k=%d s=%d p=%d%s", n, h, w, c, k, s, p, relu_input ? " (ties)" : "");
    BOTH(maxpool2d_forward, F(y), I32(am), F(x), &g);
    CMP("y", y);
    CMP("argmax", am);
    op_end();

    op_begin("maxpool2d_backward n=%d %dx%dx%d k=%d s=%d p=%d", n, h, w, c, k, s, p);
    sync_ref(am);
    buf dy = f32u(ny, -1, 1), dx = f32u(nx, -9, 9);
    BOTH(maxpool2d_backward, F(dx), F(dy), I32(am), &g);
    CMP("dx", dx);
    op_end();
}

static void t_avgpool(int n, int hw, int c)
{
    buf x = f32u((size_t)n * hw * c, 0, 3), y = f32u((size_t)n * c, -9, 9);
    op_begin("global_avgpool_forward n=%d hw=%d c=%d", n, hw, c);
    BOTH(global_avgpool_forward, F(y), F(x), n, hw, c);
    CMP("y", y);
    op_end();
    op_begin("global_avgpool_backward n=%d hw=%d c=%d", n, hw, c);
    buf dy = f32u((size_t)n * c, -1, 1);
    BOTH(global_avgpool_backward, F(x), F(dy), n, hw, c);
    CMP("dx", x);
    op_end();
}

/* ---- dense ---- */

static void t_gemm(int ta, int tb, int m, int n, int k, float alpha, float beta)
{
    buf a = f32u((size_t)m * k, -1, 1), b = f32u((size_t)k * n, -1, 1), c = f32u((size_t)m * n, -1, 1);
    op_begin("gemm %c%c m=%d n=%d k=%d alpha=%g beta=%g", ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, beta);
    BOTH(gemm, ta, tb, m, n, k, alpha, F(a), F(b), beta, F(c));
    CMP("c", c);
    op_end();
}

static void t_linear(int rows, int in, int out)
{
    buf x = f32u((size_t)rows * in, -1, 1), w = f32u((size_t)out * in, -0.3, 0.3), bias = f32u(out, -1, 1);
    buf y = f32u((size_t)rows * out, -9, 9);
    op_begin("linear_forward rows=%d in=%d out=%d (bias, NULL bias)", rows, in, out);
    BOTH(linear_forward, F(y), F(x), F(w), F(bias), rows, in, out);
    CMP("y", y);
    BOTH(linear_forward, F(y), F(x), F(w), NULL, rows, in, out);
    CMP("y (no bias)", y);
    op_end();

    buf dy = f32u((size_t)rows * out, -1, 1), dx = f32u((size_t)rows * in, -9, 9);
    buf dw = f32u((size_t)out * in, -0.1, 0.1), db = f32u(out, -0.1, 0.1);
    op_begin("linear_backward rows=%d in=%d out=%d", rows, in, out);
    BOTH(linear_backward, F(dx), F(dw), F(db), F(dy), F(x), F(w), rows, in, out);
    CMP("dx", dx);
    CMP("dw (accumulated)", dw);
    CMP("dbias (accumulated)", db);
    op_end();
    op_begin("linear_backward dx=NULL");
    sync_ref(dw);
    sync_ref(db);
    BOTH(linear_backward, NULL, F(dw), F(db), F(dy), F(x), F(w), rows, in, out);
    CMP("dw", dw);
    CMP("dbias", db);
    op_end();
    op_begin("linear_backward dw=NULL dbias=NULL");
    BOTH(linear_backward, F(dx), NULL, NULL, F(dy), F(x), F(w), rows, in, out);
    CMP("dx", dx);
    op_end();
    op_begin("linear_backward dbias=NULL");
    sync_ref(dw);
    BOTH(linear_backward, F(dx), F(dw), NULL, F(dy), F(x), F(w), rows, in, out);
    CMP("dx", dx);
    CMP("dw", dw);
    op_end();
}

/* ---- rows ---- */

static void t_rows(void)
{
    const int rows = 24, cols = 33;
    buf x = f32u((size_t)rows * cols, -1, 1), y = f32u((size_t)rows * cols, -9, 9), norms = f32u(rows, -9, 9);
    BOTH(fill, F(x) + 5 * cols, 0.0f, cols);   /* a zero row: clamped at eps */
    op_begin("l2norm_rows_forward rows=%d cols=%d (a zero row)", rows, cols);
    BOTH(l2norm_rows_forward, F(y), F(norms), F(x), rows, cols, 1e-12f);
    CMP("y", y);
    CMPN("norms", norms);
    op_end();

    buf x2 = f32u((size_t)rows * cols, -1, 1), n2 = mk(T_F32, rows);
    BOTH(scale, F(x2) + 7 * cols, 1e-4f, F(x2) + 7 * cols, cols);   /* a row below eps */
    BOTH(l2norm_rows_forward, F(y), F(n2), F(x2), rows, cols, 1e-2f);
    sync_ref(n2);
    buf dy = f32u((size_t)rows * cols, -1, 1), dx = f32u((size_t)rows * cols, -9, 9);
    op_begin("l2norm_rows_backward rows=%d cols=%d (a row below eps)", rows, cols);
    BOTH(l2norm_rows_backward, F(dx), F(dy), F(x2), F(n2), rows, cols, 1e-2f);
    CMP("dx", dx);
    op_end();

    const int r2 = 37, classes = 10;
    buf logits = f32u((size_t)r2 * classes, -4, 4), probs = f32u((size_t)r2 * classes, -9, 9);
    buf tg = i32labels(r2, classes);
    op_begin("softmax_xent_forward rows=%d classes=%d", r2, classes);
    float loss[2];
    for (g_side = 0; g_side < 2; g_side++)
        loss[g_side] = OP(softmax_xent_forward)(g_be[g_side], F(probs), F(logits), I32(tg), r2, classes);
    g_side = 0;
    cmp_scalar("loss", loss[0], loss[1]);
    CMP("probs", probs);
    op_end();
    op_begin("softmax_xent_backward rows=%d classes=%d scale=0.5", r2, classes);
    sync_ref(probs);
    buf dl = f32u((size_t)r2 * classes, -9, 9);
    BOTH(softmax_xent_backward, F(dl), F(probs), I32(tg), r2, classes, 0.5f);
    CMP("dlogits", dl);
    op_end();

    buf dst = f32u(9 * 40, -1, 1), src = f32u(9 * 13, -1, 1);
    op_begin("copy_cols rows=9 dst=40 col0=11 src=13");
    BOTH(copy_cols, F(dst), 40, 11, F(src), 13, 9);
    BOTH(copy_cols, F(dst), 40, 27, F(src), 13, 9);
    CMP("dst", dst);
    op_end();
    op_begin("slice_cols rows=9 dst=13 src=40 col0=20");
    sync_ref(dst);
    BOTH(slice_cols, F(src), 13, F(dst), 40, 20, 9);
    CMP("dst", src);
    op_end();
}

/* ---- optimizer ops ---- */

static void t_optim(void)
{
    const int64_t n = 100003;   /* several of the CPU's norm chunks */
    buf x = f32u(n, -1, 1), norm = f32u(1, -9, 9);
    op_begin("l2_norm n=%lld", (long long)n);
    BOTH(l2_norm, F(norm), F(x), n);
    CMPN("norm", norm);
    op_end();

    op_begin("clip_by_norm n=%lld (scales; no-op)", (long long)n);
    float tot = 5.0f, small = 0.5f;
    buf t1 = f32h(&tot, 1), t2 = f32h(&small, 1);
    BOTH(clip_by_norm, F(x), F(t1), n, 1.0f);
    CMP("x (scaled)", x);
    BOTH(clip_by_norm, F(x), F(t2), n, 1.0f);
    CMP("x (unchanged)", x);
    op_end();

    const int64_t m = 40000;
    buf p = f32u(m, -1, 1), g = f32u(m, -0.01, 0.01), coef = f32u(2, -9, 9);
    op_begin("lars_coef n=%lld (plain, clip_lr hit/miss)", (long long)m);
    BOTH(lars_coef, F(coef), F(p), F(g), m, 1e-6f, 1e-8f, 0.02f, 0, 0.3f);
    CMPN("coef", coef);
    BOTH(lars_coef, F(coef), F(p), F(g), m, 1e-6f, 1e-8f, 0.02f, 1, 0.3f);    /* r / lr > 1: capped */
    CMPN("coef (clip hit)", coef);
    BOTH(lars_coef, F(coef), F(p), F(g), m, 1e-6f, 1e-8f, 0.0002f, 1, 3.0f);  /* below the cap */
    CMPN("coef (clip miss)", coef);
    op_end();

    op_begin("lars_coef zero-norm edge (p = 0, g = 0)");
    buf zero = mk(T_F32, m);
    BOTH(lars_coef, F(coef), F(zero), F(g), m, 1e-6f, 1e-8f, 0.02f, 0, 0.3f);
    CMP("coef (p = 0)", coef);
    BOTH(fill, F(coef), 7.0f, 2);
    BOTH(lars_coef, F(coef), F(p), F(zero), m, 1e-6f, 1e-8f, 0.02f, 1, 0.3f);
    CMP("coef (g = 0)", coef);
    op_end();

    buf buf_m = f32u(m, -0.1, 0.1);
    float lc[2] = { 0.37f, 1.0f }, lu[2] = { 1.0f, 0.0f };
    buf lars_a = f32h(lc, 2), lars_u = f32h(lu, 2);
    op_begin("sgd_update plain (no momentum, wd)");
    BOTH(sgd_update, F(p), F(g), NULL, NULL, 1e-4f, 0.0f, 1.0f, -0.1f, 0, 0, m);
    CMP("p", p);
    op_end();
    op_begin("sgd_update momentum first step");
    BOTH(sgd_update, F(p), F(g), F(buf_m), NULL, 1e-4f, 0.9f, 1.0f, -0.1f, 0, 1, m);
    CMP("p", p);
    CMP("buf", buf_m);
    op_end();
    op_begin("sgd_update momentum, dampening 0.1");
    BOTH(sgd_update, F(p), F(g), F(buf_m), NULL, 5e-4f, 0.9f, 0.9f, -0.05f, 0, 0, m);
    CMP("p", p);
    CMP("buf", buf_m);
    op_end();
    op_begin("sgd_update nesterov");
    BOTH(sgd_update, F(p), F(g), F(buf_m), NULL, 1e-4f, 0.9f, 1.0f, -0.1f, 1, 0, m);
    CMP("p", p);
    CMP("buf", buf_m);
    op_end();
    op_begin("sgd_update lars (adapted; unadapted drops wd)");
    BOTH(sgd_update, F(p), F(g), F(buf_m), F(lars_a), 1e-4f, 0.9f, 1.0f, -0.3f, 0, 0, m);
    CMP("p", p);
    CMP("buf", buf_m);
    BOTH(sgd_update, F(p), F(g), F(buf_m), F(lars_u), 1e-1f, 0.9f, 1.0f, -0.3f, 0, 0, m);
    CMP("p (unadapted)", p);
    CMP("buf (unadapted)", buf_m);
    op_end();

    op_begin("adamw_update n=%lld", (long long)m);
    buf am = f32u(m, -0.01, 0.01), av = f32u(m, 0, 1e-4);
    const float lr = 1e-3f, wd = 0.05f, b1 = 0.9f, b2 = 0.999f;
    float bc1 = 1.0f - powf(b1, 3), bc2 = 1.0f - powf(b2, 3);
    BOTH(adamw_update, F(p), F(g), F(am), F(av), 1.0f - lr * wd, b1, 1.0f - b1, b2, 1.0f - b2, sqrtf(bc2), 1e-8f,
         -lr / bc1, m);
    CMP("p", p);
    CMP("exp_avg", am);
    CMP("exp_avg_sq", av);
    op_end();
}

/* ---- ssl ops ---- */

static void t_nt_xent(int rows, int m, int row0, int block, int n_src, int mask, float scale)
{
    buf loss = f32u(1, -9, 9), sim = f32u((size_t)rows * m, -5, 5);
    op_begin("ssl_nt_xent_rows rows=%d m=%d row0=%d block=%d n_src=%d mask=%d", rows, m, row0, block, n_src, mask);
    BOTH(ssl_nt_xent_rows, F(loss), F(sim), rows, m, row0, block, n_src, mask, scale);
    CMPN("loss", loss);
    CMP("dsim", sim);
    op_end();
}

/* Rows of unit norm (as the methods' normalised embeddings). */
static buf unit_rows(int rows, int d)
{
    float *h = tu_falloc((size_t)rows * d);
    for (int r = 0; r < rows; r++) {
        double ss = 0;
        for (int j = 0; j < d; j++) {
            h[(size_t)r * d + j] = (float)hallu_rng_normal(&g_rng);
            ss += (double)h[(size_t)r * d + j] * h[(size_t)r * d + j];
        }
        for (int j = 0; j < d; j++)
            h[(size_t)r * d + j] = (float)(h[(size_t)r * d + j] / sqrt(ss));
    }
    buf b = f32h(h, (size_t)rows * d);
    free(h);
    return b;
}

static void t_ssl(void)
{
    t_nt_xent(16, 16, 0, 16, 8, 0, 1.0f);    /* SimCLR in one process: 8 images x 2 views */
    t_nt_xent(16, 32, 16, 16, 4, 1, 0.5f);   /* rank 1 of 2 (blocks > 1), 4 rows per source masked */
    t_nt_xent(5, 24, 3, 8, 2, 1, 1.0f);      /* a few anchors of three blocks */

    const int rows = 12, d = 16, K = 64;
    const float T = 0.2f;
    buf q = unit_rows(rows, d), kp = unit_rows(rows, d), loss = f32u(1, -9, 9);
    buf neg = f32u((size_t)rows * K, -1 / T, 1 / T), dq = f32u((size_t)rows * d, -9, 9);
    buf neg0 = mk(T_F32, (size_t)rows * K);
    BOTH(copy, F(neg0), F(neg), (size_t)rows * K * sizeof(float));
    op_begin("ssl_infonce_rows rows=%d d=%d K=%d", rows, d, K);
    BOTH(ssl_infonce_rows, F(loss), F(dq), F(neg), F(q), F(kp), rows, d, K, T);
    CMPN("loss", loss);
    CMP("dq", dq);
    CMP("dneg", neg);
    op_end();
    op_begin("ssl_infonce_rows dq=NULL (loss only)");
    BOTH(ssl_infonce_rows, F(loss), NULL, F(neg0), F(q), F(kp), rows, d, K, T);
    CMPN("loss", loss);
    CMP("neg (untouched)", neg0);
    op_end();

    buf p = f32u((size_t)rows * d, -1, 1), z = f32u((size_t)rows * d, -1, 1), dp = f32u((size_t)rows * d, -9, 9);
    op_begin("ssl_neg_cosine rows=%d d=%d (=, then += without dp)", rows, d);
    BOTH(ssl_neg_cosine, F(loss), F(dp), F(p), F(z), rows, d, 0.5f, 0);
    CMPN("loss", loss);
    CMP("dp", dp);
    sync_ref(loss);
    BOTH(ssl_neg_cosine, F(loss), NULL, F(z), F(p), rows, d, 0.5f, 1);
    CMPN("loss (accumulated)", loss);
    op_end();

    op_begin("ssl_collapse_std rows=32 d=%d", d);
    buf zz = f32u(32 * (size_t)d, -1, 1), out = f32u(1, -9, 9), nrm = f32u(32, -9, 9);
    BOTH(ssl_collapse_std, F(out), F(nrm), F(zz), 32, d);
    CMPN("std", out);
    CMPN("norms", nrm);
    op_end();

    const float r = 0.3f;
    buf x = f32u((size_t)rows * d, -1, 1), k = f32u((size_t)rows * d, -1, 1), xg = f32u(2 * (size_t)rows * d, -9, 9);
    op_begin("ssl_hal_input rows=%d d=%d r=%g", rows, d, r);
    BOTH(ssl_hal_input, F(xg), F(x), F(k), rows, d, r);
    CMP("xg", xg);
    op_end();
    buf mlp = f32u((size_t)rows * d, -1, 1), h = f32u((size_t)rows * d, -9, 9);
    for (int res = 0; res < 2; res++) {
        op_begin("ssl_hal_output residual=%d", res);
        BOTH(ssl_hal_output, F(h), F(mlp), F(xg), rows, d, res);
        CMP("h", h);
        op_end();
    }
    buf dxg = f32u(2 * (size_t)rows * d, -1, 1), dout = f32u(2 * (size_t)rows * d, -1, 1);
    buf gx = f32u((size_t)rows * d, -0.5, 0.5), gk = f32u((size_t)rows * d, -0.5, 0.5);
    for (int res = 0; res < 2; res++) {
        op_begin("ssl_hal_backward residual=%d (dk, then dk=NULL)", res);
        sync_ref(gx);
        sync_ref(gk);
        BOTH(ssl_hal_backward, F(gx), F(gk), F(dxg), F(dout), rows, d, r, res);
        CMP("dx (accumulated)", gx);
        CMP("dk (accumulated)", gk);
        BOTH(ssl_hal_backward, F(gx), NULL, F(dxg), F(dout), rows, d, r, res);
        CMP("dx (dk NULL)", gx);
        op_end();
    }

    const int pr = 20;
    const int64_t cols = 37;
    uint32_t perm[20];
    int32_t idx[20], rep[20];
    hallu_rng_permutation(&g_rng, perm, pr);
    for (int i = 0; i < pr; i++) {
        idx[i] = (int32_t)perm[i];
        rep[i] = (int32_t)hallu_rng_below(&g_rng, pr);
    }
    buf src = f32u(pr * cols, -1, 1), dst = f32u(pr * cols, -9, 9), ix = i32h(idx, pr), rx = i32h(rep, pr);
    op_begin("ssl_gather_rows rows=%d cols=%lld (permutation, repeats)", pr, (long long)cols);
    BOTH(ssl_gather_rows, F(dst), F(src), I32(ix), pr, cols);
    CMP("dst", dst);
    BOTH(ssl_gather_rows, F(dst), F(src), I32(rx), pr, cols);
    CMP("dst (repeats)", dst);
    op_end();
    op_begin("ssl_scatter_rows rows=%d cols=%lld", pr, (long long)cols);
    BOTH(ssl_scatter_rows, F(dst), F(src), I32(ix), pr, cols);
    CMP("dst", dst);
    op_end();

    const int Kq = 10, dq2 = 8;
    buf queue = f32u((size_t)Kq * dq2, -1, 1), ptr = mk(T_I64, 1), rows_in = f32u(13 * (size_t)dq2, -1, 1);
    int64_t p0 = 7;
    put(ptr, &p0);
    op_begin("ssl_enqueue_rows K=%d: 6 rows at 7 (wraps), then 13 rows (> K)", Kq);
    BOTH(ssl_enqueue_rows, F(queue), I64(ptr), F(rows_in), 6, dq2, Kq);
    CMP("queue", queue);
    CMP("ptr", ptr);
    BOTH(ssl_enqueue_rows, F(queue), I64(ptr), F(rows_in), 13, dq2, Kq);
    CMP("queue (later rows win)", queue);
    CMP("ptr (after 13)", ptr);
    op_end();
}

/* ---- eval ops ---- */

typedef struct nb {
    float s;
    int32_t i;
} nb;

static int nb_cmp(const void *a, const void *b)
{
    const nb *x = a, *y = b;
    if (x->s != y->s)
        return x->s > y->s ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* The k best of each row as sets: both sides' heaps sorted by (sim desc, idx asc). */
static void cmp_topk(buf ts, buf ti, int rows, int k)
{
    float *sa, *sr;
    int32_t *ia, *ir;
    fetch2(ts, (void **)&sa, (void **)&sr);
    fetch2(ti, (void **)&ia, (void **)&ir);
    int bits = memcmp(sa, sr, (size_t)rows * k * 4) == 0 && memcmp(ia, ir, (size_t)rows * k * 4) == 0;
    nb *ra = tu_xmalloc((size_t)k * sizeof *ra), *rr = tu_xmalloc((size_t)k * sizeof *rr);
    double e = 0;
    int idx_wrong = 0;
    for (int r = 0; r < rows; r++) {
        for (int j = 0; j < k; j++) {
            ra[j] = (nb){ sa[(size_t)r * k + j], ia[(size_t)r * k + j] };
            rr[j] = (nb){ sr[(size_t)r * k + j], ir[(size_t)r * k + j] };
        }
        qsort(ra, k, sizeof *ra, nb_cmp);
        qsort(rr, k, sizeof *rr, nb_cmp);
        for (int j = 0; j < k; j++) {
            idx_wrong += ra[j].i != rr[j].i;
            double d = fabs((double)ra[j].s - rr[j].s) / (fabs(rr[j].s) > TINY ? fabs(rr[j].s) : TINY);
            e = d > e ? d : e;
        }
    }
    if (idx_wrong)
        fprintf(stderr, "    top-k: %d neighbour indices differ\n", idx_wrong);
    op_note("top_sim (sorted)", e, bits);
    op_note("top_idx (as sets)", idx_wrong ? INFINITY : 0, bits);
    free(sa), free(sr), free(ia), free(ir), free(ra), free(rr);
}

static void t_topk(int rows, int64_t n, int k, int levels)
{
    float *h = tu_falloc((size_t)rows * n);
    for (size_t i = 0; i < (size_t)rows * n; i++) {
        double v = hallu_rng_range(&g_rng, -1, 1);
        h[i] = levels ? (float)(floor(v * levels) / levels) : (float)v;   /* levels: many ties */
    }
    buf sims = f32h(h, (size_t)rows * n), ts = f32u((size_t)rows * k, -9, 9), ti = mk(T_I32, (size_t)rows * k);
    op_begin("knn_top_k rows=%d n=%lld k=%d%s", rows, (long long)n, k, levels ? " (ties)" : "");
    BOTH(knn_top_k, F(ts), I32(ti), F(sims), rows, n, k);
    cmp_topk(ts, ti, rows, k);
    op_end();
    free(h);
}

static void t_eval(void)
{
    const int rows = 20, dim = 32;
    buf x = f32u((size_t)rows * dim, -1, 1), inv = f32u(rows, -9, 9), y = f32u((size_t)rows * dim, -9, 9);
    BOTH(fill, F(x) + 4 * dim, 0.0f, dim);   /* zero row: inverse norm 0 */
    op_begin("knn_inverse_norms rows=%d dim=%d (a zero row)", rows, dim);
    BOTH(knn_inverse_norms, F(inv), F(x), rows, dim);
    CMP("inv", inv);
    op_end();
    op_begin("knn_scale_rows rows=%d dim=%d (and in place)", rows, dim);
    sync_ref(inv);
    BOTH(knn_scale_rows, F(y), F(x), F(inv), rows, dim);
    CMP("y", y);
    BOTH(knn_scale_rows, F(x), F(x), F(inv), rows, dim);
    CMP("y (in place)", x);
    op_end();
    op_begin("knn_scale_cols rows=7 cols=%d", rows);
    buf s = f32u(7 * (size_t)rows, -1, 1);
    BOTH(knn_scale_cols, F(s), F(inv), 7, rows);
    CMP("s", s);
    op_end();

    t_topk(7, 60, 10, 8);
    t_topk(5, 600, 20, 0);
    t_topk(3, 12, 12, 4);   /* k = n */
    t_topk(4, 50, 1, 3);    /* k = 1 */

    /* Votes over the reference's heaps. */
    for (int ties = 0; ties < 2; ties++) {
        const int vr = 9, n = 80, k = 15, classes = ties ? 6 : 10, nbest = ties ? 6 : 5;
        float *h = tu_falloc((size_t)vr * n);
        for (size_t i = 0; i < (size_t)vr * n; i++)
            h[i] = ties ? 0.5f : (float)hallu_rng_range(&g_rng, -1, 1);
        buf sims = f32h(h, (size_t)vr * n), ts = mk(T_F32, (size_t)vr * k), ti = mk(T_I32, (size_t)vr * k);
        BOTH(knn_top_k, F(ts), I32(ti), F(sims), vr, n, k);
        sync_ref(ts);
        sync_ref(ti);
        buf labels = i32labels(n, classes), best = mk(T_I32, (size_t)vr * nbest);
        buf scores = f64u((size_t)vr * classes, -9, 9);
        op_begin("knn_vote rows=%d k=%d classes=%d nbest=%d%s", vr, k, classes, nbest, ties ? " (tied scores)" : "");
        BOTH(knn_vote, I32(best), DB(scores), F(ts), I32(ti), I32(labels), vr, k, 0.07f, classes, nbest);
        CMP("best", best);
        CMP("scores (double)", scores);
        op_end();
        free(h);
    }

    const int pr = 60, classes = 10;
    float *hl = tu_falloc((size_t)pr * classes);
    for (size_t i = 0; i < (size_t)pr * classes; i++)
        hl[i] = (float)(hallu_rng_below(&g_rng, 5) * 0.25);   /* ties: first largest wins */
    buf logits = f32h(hl, (size_t)pr * classes), labels = i32labels(pr, classes);
    int64_t h0[2] = { 7, 11 };
    buf hits = mk(T_I64, 1), hits2 = mk(T_I64, 2);
    put(hits, h0);
    put(hits2, h0);
    op_begin("argmax_hits rows=%d classes=%d (ties; accumulates)", pr, classes);
    BOTH(argmax_hits, I64(hits), F(logits), I32(labels), pr, classes);
    BOTH(argmax_hits, I64(hits), F(logits), I32(labels), pr / 2, classes);
    CMP("hits", hits);
    op_end();
    op_begin("class_rank_hits rows=%d classes=%d (ties; accumulates)", pr, classes);
    BOTH(class_rank_hits, I64(hits2), F(logits), I32(labels), pr, classes);
    CMP("hits top-1/top-5", hits2);
    op_end();
    free(hl);
}

/* ---- coverage and main ---- */

static int check_coverage(void)
{
    /* The list covers every pointer slot from alloc to the end of the table. */
    for (size_t off = offsetof(hallu_backend_ops, alloc); off < sizeof(hallu_backend_ops); off += PTR) {
        size_t i = 0;
        while (i < N_SLOTS && k_slots[i].off != off)
            i++;
        if (i == N_SLOTS) {
            fprintf(stderr, "FAIL coverage: the slot at offset %zu is not in the harness's list\n", off);
            return 1;
        }
    }
    int missing = 0, nonnull = 0;
    for (size_t i = 0; i < N_SLOTS; i++) {
        void (*fp)(void);
        memcpy(&fp, (const char *)&g_dut_ops + k_slots[i].off, sizeof fp);
        if (!fp)
            continue;
        nonnull++;
        if (!g_marked[k_slots[i].off / PTR]) {
            fprintf(stderr, "FAIL coverage: op %s of %s was never checked\n", k_slots[i].name, g_dut_ops.name);
            missing++;
        }
    }
    printf("coverage: %d of %d non-NULL slots of %s checked (%zu slots in the table)\n", nonnull - missing, nonnull,
           g_dut_ops.name, N_SLOTS);
    return missing;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);   /* op lines and FAIL lines (stderr) in order */
    const char *dev = argc > 1 ? argv[1] : getenv("HALLU_TEST_DEVICE");
    if (!dev || !dev[0])
        dev = "cpu-isolated";
    hallu_error err = { 0 };
    hallu_status s = hallu_backend_create(dev, 2, &g_be[0], &err);
    if (s != HALLU_OK) {
        if (strncmp(dev, "cuda", 4) == 0 && s == HALLU_ERR_UNSUPPORTED) {
            printf("skipped: device %s: %s\n", dev, err.msg);
            return 77;
        }
        fprintf(stderr, "test_backend_ops: device %s: %s\n", dev, err.msg);
        return 1;
    }
    if (hallu_backend_create("cpu", 2, &g_be[1], &err) != HALLU_OK) {
        fprintf(stderr, "test_backend_ops: device cpu: %s\n", err.msg);
        return 1;
    }
    /* The device under test runs through a copy of its table (a place to swap
     * an entry when showing that a wrong op is caught). */
    g_dut_ops = *g_be[0]->ops;
    g_be[0]->ops = &g_dut_ops;
    g_exact = strcmp(dev, "cpu-isolated") == 0 || strcmp(dev, "cpu") == 0;
    hallu_rng_init(&g_rng, 20240527, 1);
    printf("backend ops: %s vs cpu; fp32 tolerance %.0e (max |a-b| / max |b|; ||a-b|| / ||b|| for reductions)%s\n",
           g_dut_ops.name, TOL, g_exact ? ", and bit-identical" : "");
    clock_t t0 = clock();

    t_memory();

    /* ResNet-like geometries; the CPU backend's Winograd (k3 s1 p1 >= 16 channels),
     * im2col (k > 1, <= 64 output pixels) and oneDNN paths all appear. */
    t_conv(2, 12, 12, 3, 8, 3, 1, 1, 1);    /* stem-like k3 */
    t_conv(2, 8, 8, 16, 16, 3, 1, 1, 1);    /* Winograd on the CPU */
    t_conv(2, 9, 9, 8, 12, 3, 2, 1, 0);     /* k3 s2 */
    t_conv(1, 20, 20, 3, 8, 7, 2, 3, 1);    /* ImageNet stem k7 s2 p3 */
    t_conv(3, 6, 6, 8, 16, 1, 2, 0, 0);     /* 1x1 s2 downsample */
    t_conv(1, 5, 5, 16, 24, 1, 1, 0, 0);    /* 1x1 s1 */
    t_conv(1, 7, 7, 5, 4, 3, 1, 0, 0);      /* no padding */
    printf("%-62s (%d geometries)\n", "conv2d_plan_create / conv2d_plan_free", 7);

    t_batchnorm(128, 24);
    t_batchnorm(4, 40);      /* small batch (2 rows would leave dx ~ 0: rounding noise only) */
    t_bn_grouped(4, 8, 24);
    t_bn_channel_groups(300);
    t_bn_x16(300);
    t_eltwise();
    t_add_relu_x16(1037);
    t_maxpool(2, 10, 10, 6, 3, 2, 1, 0);
    t_maxpool(2, 9, 9, 5, 3, 2, 1, 1);
    t_maxpool(1, 8, 8, 3, 2, 2, 0, 0);
    t_avgpool(3, 49, 16);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            t_gemm(ta, tb, 13, 17, 19, 0.7f, 0.5f);
    t_gemm(0, 0, 13, 17, 19, 1.0f, 0.0f);
    t_gemm(1, 0, 64, 96, 128, 1.0f, 1.0f);
    t_linear(24, 40, 12);
    t_rows();
    t_optim();
    t_ssl();
    t_eval();

    /* Release everything; live memory must fall. */
    size_t live[2], peak[2], live2[2], peak2[2];
    for (g_side = 0; g_side < 2; g_side++)
        OP(memory)(g_be[g_side], &live[g_side], &peak[g_side]);
    for (int i = 0; i < g_nbufs; i++)
        for (g_side = 0; g_side < 2; g_side++)
            OP(release)(g_be[g_side], g_bufs[i].p[g_side]);
    for (g_side = 0; g_side < 2; g_side++)
        OP(memory)(g_be[g_side], &live2[g_side], &peak2[g_side]);
    g_side = 0;
    op_begin("release (%d buffers)", g_nbufs);
    int ok = live2[0] < live[0] && peak2[0] >= peak[0];
    op_note("live falls", ok ? 0 : INFINITY, 1);
    if (!ok)
        fprintf(stderr, "    live %zu -> %zu, peak %zu -> %zu\n", live[0], live2[0], peak[0], peak2[0]);
    op_end();

    for (g_side = 0; g_side < 2; g_side++)
        OP(destroy)(g_be[g_side]);
    g_side = 0;
    int missing = check_coverage();
    printf("%d op cases failed; %.2f s CPU\n", g_failures, (double)(clock() - t0) / CLOCKS_PER_SEC);
    return g_failures || missing ? 1 : 0;
}
