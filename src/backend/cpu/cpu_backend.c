/* The CPU backend's function table, creation and memory. */
#include "backend/cpu/cpu_internal.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Each allocation carries its size in a header one alignment unit long, so that
 * release can keep the memory count. */
enum { CPU_ALLOC_HEADER = 64 };

static void *cpu_alloc(hallu_backend *be, size_t nbytes, const char *what, hallu_error *err)
{
    if (nbytes > SIZE_MAX - CPU_ALLOC_HEADER) {
        hallu_error_set(err, HALLU_ERR_OOM, "out of memory allocating %zu bytes for %s", nbytes, what ? what : "buffer");
        return NULL;
    }
    char *p = hallu_calloc(nbytes + CPU_ALLOC_HEADER, what, err);
    if (!p)
        return NULL;
    memcpy(p, &nbytes, sizeof nbytes);
    cpu_impl *impl = cpu_impl_of(be);
    impl->bytes_live += nbytes;
    if (impl->bytes_live > impl->bytes_peak)
        impl->bytes_peak = impl->bytes_live;
    return p + CPU_ALLOC_HEADER;
}

static void cpu_release(hallu_backend *be, void *p)
{
    if (!p)
        return;
    char *base = (char *)p - CPU_ALLOC_HEADER;
    size_t nbytes;
    memcpy(&nbytes, base, sizeof nbytes);
    cpu_impl_of(be)->bytes_live -= nbytes;
    hallu_free(base);
}

static void cpu_memory(hallu_backend *be, size_t *live, size_t *peak)
{
    *live = cpu_impl_of(be)->bytes_live;
    *peak = cpu_impl_of(be)->bytes_peak;
}

/* Host and device memory are the same memory here: transfers are copies. */
static void cpu_copy(hallu_backend *be, void *dst, const void *src, size_t nbytes)
{
    (void)be;
    if (nbytes)
        memcpy(dst, src, nbytes);
}

void cpu_fill(hallu_backend *be, float *y, float value, int64_t n)
{
    int nt = cpu_threads_for(be, n, 1 << 16);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t i = 0; i < n; i++)
        y[i] = value;
}

static void cpu_destroy(hallu_backend *be)
{
    if (!be)
        return;
    cpu_impl *impl = be->impl;
    if (impl) {
        if (impl->stream)
            dnnl_stream_destroy(impl->stream);
        for (int t = 0; impl->thread_stream && t < impl->num_threads; t++)
            if (impl->thread_stream[t])
                dnnl_stream_destroy(impl->thread_stream[t]);
        hallu_free(impl->thread_stream);
        hallu_free(impl->thread_scratch);
        if (impl->engine)
            dnnl_engine_destroy(impl->engine);
        hallu_free(impl->dnnl_scratch);
        hallu_free(impl->act[0]);
        hallu_free(impl->act[1]);
        hallu_free(impl->col);
        hallu_free(impl->wino_v);
        hallu_free(impl->wino_m);
        hallu_free(impl->wino_u);
        hallu_free(impl->wino_zero);
        hallu_free(impl->wino_spill);
        hallu_free(impl->wino_du);
        hallu_free(impl->red);
        hallu_free(impl);
    }
    hallu_free(be);
}

static const char *cpu_isa_name(dnnl_cpu_isa_t isa)
{
    switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "other";
    }
}

/* bf16 products need bf16 instructions: oneDNN's effective ISA (which
 * ONEDNN_MAX_CPU_ISA can cap) must include AVX512-BF16 (AMX implies it). */
static hallu_status cpu_set_precision(hallu_backend *be, hallu_precision precision, hallu_error *err)
{
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    if (precision == HALLU_PRECISION_BF16) {
        if ((isa & dnnl_cpu_isa_avx512_core_bf16) != dnnl_cpu_isa_avx512_core_bf16)
            return hallu_error_set(err, HALLU_ERR_UNSUPPORTED, "--precision bf16: this CPU has no bf16 instructions "
                                   "(AVX512-BF16 or AMX; oneDNN's ISA here is %s%s); bf16 would run emulated, slower "
                                   "than fp32: use --precision fp32", cpu_isa_name(isa),
                                   getenv("ONEDNN_MAX_CPU_ISA") || getenv("DNNL_MAX_CPU_ISA")
                                       ? ", capped by ONEDNN_MAX_CPU_ISA" : "");
    }
    /* AMX multiplies bf16 ~8x faster than AVX512-BF16: there the direct kernels
     * and matmuls are bound by memory traffic, which Winograd's transforms
     * add to; with AVX512-BF16 alone they are bound by the products, which
     * F(2x2, 3x3) makes 2.25x fewer (docs/PERFORMANCE.md) */
    cpu_impl_of(be)->bf16_winograd = (isa & dnnl_cpu_isa_avx512_core_amx) != dnnl_cpu_isa_avx512_core_amx;
    cpu_impl_of(be)->precision = precision;
    return HALLU_OK;
}

static const hallu_backend_ops cpu_ops = {
    .name = "cpu",
    .host_memory = 1,
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .upload = cpu_copy,
    .download = cpu_copy,
    .copy = cpu_copy,
    .fill = cpu_fill,
    .memory = cpu_memory,
    .set_precision = cpu_set_precision,
    .conv2d_plan_create = cpu_conv2d_plan_create,
    .conv2d_plan_free = cpu_conv2d_plan_free,
    .conv2d_forward = cpu_conv2d_forward,
    .conv2d_forward_y16 = cpu_conv2d_forward_y16,
    .conv2d_backward = cpu_conv2d_backward,
    .conv2d_backward_dx16 = cpu_conv2d_backward_dx16,
    .batchnorm_forward_train = cpu_batchnorm_forward_train,
    .batchnorm_forward_eval = cpu_batchnorm_forward_eval,
    .batchnorm_backward = cpu_batchnorm_backward,
    .batchnorm_backward_x16 = cpu_batchnorm_backward_x16,
    .batchnorm_normalize_fused = cpu_batchnorm_normalize_fused,
    .batchnorm_backward_fused = cpu_batchnorm_backward_fused,
    .batchnorm_stats_x16 = cpu_batchnorm_stats_x16,
    .relu_forward = cpu_relu_forward,
    .relu_forward_x16 = cpu_relu_forward_x16,
    .relu_backward = cpu_relu_backward,
    .add = cpu_add,
    .add_relu_backward = cpu_add_relu_backward,
    .add_relu_backward_x16 = cpu_add_relu_backward_x16,
    .axpy = cpu_axpy,
    .scale = cpu_scale,
    .normalize_u8 = cpu_normalize_u8,
    .maxpool2d_forward = cpu_maxpool2d_forward,
    .maxpool2d_backward = cpu_maxpool2d_backward,
    .global_avgpool_forward = cpu_global_avgpool_forward,
    .global_avgpool_backward = cpu_global_avgpool_backward,
    .gemm = cpu_gemm,
    .linear_forward = cpu_linear_forward,
    .linear_backward = cpu_linear_backward,
    .l2norm_rows_forward = cpu_l2norm_rows_forward,
    .l2norm_rows_backward = cpu_l2norm_rows_backward,
    .softmax_xent_forward = cpu_softmax_xent_forward,
    .softmax_xent_backward = cpu_softmax_xent_backward,
    .copy_cols = cpu_copy_cols,
    .slice_cols = cpu_slice_cols,
    /* nn and optimizer ops (batch norm split, parameter updates, norms) */
    .batchnorm_stats = cpu_batchnorm_stats,
    .batchnorm_stats_to_moments = cpu_batchnorm_stats_to_moments,
    .batchnorm_moments_to_stats = cpu_batchnorm_moments_to_stats,
    .batchnorm_backward_reduce = cpu_batchnorm_backward_reduce,
    .batchnorm_backward_apply = cpu_batchnorm_backward_apply,
    .batchnorm_normalize = cpu_batchnorm_normalize,
    .batchnorm_update_running = cpu_batchnorm_update_running,
    .batchnorm_update_running_grouped = cpu_batchnorm_update_running_grouped,
    .add_scalar = cpu_add_scalar,
    .l2_norm = cpu_l2_norm,
    .clip_by_norm = cpu_clip_by_norm,
    .lars_coef = cpu_lars_coef,
    .sgd_update = cpu_sgd_update,
    .adamw_update = cpu_adamw_update,
    /* (end of nn ops) */
    /* ssl ops (losses, Hallucinator, MoCo) */
    .ssl_nt_xent_rows = cpu_ssl_nt_xent_rows,
    .ssl_infonce_rows = cpu_ssl_infonce_rows,
    .ssl_neg_cosine = cpu_ssl_neg_cosine,
    .ssl_collapse_std = cpu_ssl_collapse_std,
    .ssl_hal_input = cpu_ssl_hal_input,
    .ssl_hal_output = cpu_ssl_hal_output,
    .ssl_hal_backward = cpu_ssl_hal_backward,
    .ssl_gather_rows = cpu_ssl_gather_rows,
    .ssl_scatter_rows = cpu_ssl_scatter_rows,
    .ssl_enqueue_rows = cpu_ssl_enqueue_rows,
    /* (end of ssl ops) */
    /* eval ops (kNN, linear probe) */
    .knn_inverse_norms = cpu_knn_inverse_norms,
    .knn_scale_rows = cpu_knn_scale_rows,
    .knn_scale_cols = cpu_knn_scale_cols,
    .knn_top_k = cpu_knn_top_k,
    .knn_vote = cpu_knn_vote,
    .argmax_hits = cpu_argmax_hits,
    .class_rank_hits = cpu_class_rank_hits,
    /* (end of eval ops) */
};

hallu_status cpu_shared_reserve(void **buf, size_t *have, size_t need, const char *what, hallu_error *err)
{
    if (need <= *have)
        return HALLU_OK;
    void *grown = hallu_calloc(need, what, err);
    if (!grown)
        return HALLU_ERR_OOM;
    hallu_free(*buf);
    *buf = grown;
    *have = need;
    return HALLU_OK;
}

hallu_status cpu_thread_dnnl_reserve(cpu_impl *impl, size_t scratch_each, hallu_error *err)
{
    int n = impl->num_threads;
    if (!impl->thread_stream) {
        impl->thread_stream = hallu_calloc((size_t)n * sizeof *impl->thread_stream, "per-thread oneDNN streams", err);
        if (!impl->thread_stream)
            return HALLU_ERR_OOM;
        for (int t = 0; t < n; t++) {
            dnnl_status_t st = dnnl_stream_create(&impl->thread_stream[t], impl->engine, dnnl_stream_default_flags);
            if (st != dnnl_success) {   /* none kept: a later plan tries again */
                for (int made = 0; made < t; made++)
                    dnnl_stream_destroy(impl->thread_stream[made]);
                hallu_free(impl->thread_stream);
                impl->thread_stream = NULL;
                return hallu_error_set(err, HALLU_ERR_BACKEND, "conv2d_plan_create: dnnl_stream_create failed for "
                                       "thread %d (oneDNN status %d)", t, (int)st);
            }
        }
    }
    /* page-aligned slices, so that two threads' scratchpads share no cache line */
    size_t each = (scratch_each + 4095) / 4096 * 4096;
    if (each <= impl->thread_scratch_each)
        return HALLU_OK;
    hallu_status s = cpu_shared_reserve(&impl->thread_scratch, &impl->thread_scratch_bytes, (size_t)n * each,
                                        "per-thread oneDNN scratchpads", err);
    if (s == HALLU_OK)
        impl->thread_scratch_each = each;
    return s;
}

static hallu_status cpu_impl_init(cpu_impl *impl, hallu_backend *be, int num_threads, hallu_error *err)
{
    impl->be = be;
    impl->num_threads = num_threads;
    impl->red = hallu_alloc(cpu_red_block_bytes() * (size_t)(num_threads + 1), "cpu backend reduction scratch", err);
    if (!impl->red)
        return HALLU_ERR_OOM;
    dnnl_status_t st = dnnl_engine_create(&impl->engine, dnnl_cpu, 0);
    if (st != dnnl_success)
        return hallu_error_set(err, HALLU_ERR_BACKEND, "hallu_backend_cpu_create: dnnl_engine_create failed (oneDNN status %d)", (int)st);
    st = dnnl_stream_create(&impl->stream, impl->engine, dnnl_stream_default_flags);
    if (st != dnnl_success)
        return hallu_error_set(err, HALLU_ERR_BACKEND, "hallu_backend_cpu_create: dnnl_stream_create failed (oneDNN status %d)", (int)st);
    return HALLU_OK;
}

hallu_status hallu_backend_cpu_create(hallu_backend **out, int num_threads, hallu_error *err)
{
    if (!out)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "hallu_backend_cpu_create: out is NULL");
    *out = NULL;
    if (num_threads > 1024)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "hallu_backend_cpu_create: num_threads=%d (max 1024)", num_threads);
    /* The count belongs to this backend: ops that call oneDNN set it around the
     * call (cpu_threads_enter), the other loops name it in num_threads(). */
    if (num_threads <= 0)
        num_threads = omp_get_max_threads();
    hallu_backend *be = hallu_calloc(sizeof *be, "cpu backend", err);
    cpu_impl *impl = be ? hallu_calloc(sizeof *impl, "cpu backend state", err) : NULL;
    if (!impl) {
        hallu_free(be);
        return HALLU_ERR_OOM;
    }
    *be = (hallu_backend){ .ops = &cpu_ops, .num_threads = num_threads, .impl = impl };
    hallu_status s = cpu_impl_init(impl, be, num_threads, err);
    if (s != HALLU_OK) {
        cpu_destroy(be);
        return s;
    }
    *out = be;
    return HALLU_OK;
}
