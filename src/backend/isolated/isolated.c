/* "cpu-isolated": the CPU backend behind device addresses that host code cannot
 * dereference, the proof that nothing outside src/backend/ touches device memory.
 *
 * How: every address this backend hands out is the CPU backend's address with
 * bit 62 set. On x86-64 (and AArch64 without tagging) such an address is not
 * canonical, so a load or store through it from host code faults at once, and a
 * system call given one (write, memcpy into a file) fails with EFAULT. Offsets
 * and NULL tests on device addresses still work, as with CUDA's device pointers.
 * Each op strips the tag from its arguments and runs the CPU backend's op, so
 * results are the CPU backend's, bit for bit. An op handed an address without
 * the tag (a host pointer where a device one belongs) stops the process with a
 * message naming the op: that is a bug in the caller, as it would be on a GPU.
 *
 * It is also where the test-only fault hook lives (hallu_backend_inject_fault):
 * the Nth op or allocation fails as a real failure would, so tests can show
 * that every failure becomes a named error and loses nothing. */
#include "hallu/backend.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

hallu_status hallu_backend_isolated_create(hallu_backend **out, int num_threads, hallu_error *err);

#define ISO_TAG ((uintptr_t)1 << 62)

/* A block of staging memory (host_alloc), and an upload read from one that
 * upload_wait has not yet confirmed. */
typedef struct iso_block {
    const unsigned char *p;
    size_t n;
} iso_block;
typedef struct iso_pending {
    const unsigned char *src;
    size_t n;
    uint64_t sum;           /* FNV-1a of the bytes when the upload read them */
} iso_pending;
#define ISO_MAX_PENDING 64

typedef struct iso_impl {
    hallu_backend *inner;   /* the CPU backend doing the work */
    int64_t fault_op;       /* countdown to an injected op failure; 0 = off */
    int64_t fault_alloc;    /* countdown to an injected allocation failure; 0 = off */
    iso_block *blocks;      /* live staging blocks */
    int n_blocks, cap_blocks;
    iso_pending pending[ISO_MAX_PENDING];
    int n_pending;
} iso_impl;

/* A conv plan of this backend: the inner backend's plan and the owner. */
typedef struct iso_plan {
    hallu_conv2d_plan *inner;
    hallu_backend *be;
} iso_plan;

static iso_impl *iso_of(hallu_backend *be) { return (iso_impl *)be->impl; }
static hallu_backend *inner_of(hallu_backend *be) { return iso_of(be)->inner; }

static void *iso_tag(void *p) { return p ? (void *)((uintptr_t)p | ISO_TAG) : NULL; }

/* The inner backend's address for device address p. */
static void *dev_at(const void *p, const char *op)
{
    if (!p)
        return NULL;
    if (!((uintptr_t)p & ISO_TAG)) {
        fprintf(stderr, "hallu cpu-isolated: op %s was given the host address %p where a device address "
                        "belongs (a caller outside src/backend/ passes host memory to an op)\n", op, p);
        abort();
    }
    return (void *)((uintptr_t)p & ~ISO_TAG);
}
#define D(p) dev_at((p), __func__)

/* Whether the op may run: not after a failure (sticky, as on a GPU), and not
 * when the fault hook's countdown ends here. */
static int iso_enter(hallu_backend *be, const char *op)
{
    if (be->failed != HALLU_OK)
        return 0;
    iso_impl *impl = iso_of(be);
    if (impl->fault_op > 0 && --impl->fault_op == 0) {
        hallu_backend_fail(be, HALLU_ERR_BACKEND, "%s: injected fault (test hook)", op + 4);   /* op minus "iso_" */
        return 0;
    }
    return 1;
}

/* Carries a failure the inner backend recorded during the op over to be. */
static void iso_leave(hallu_backend *be)
{
    hallu_backend *in = inner_of(be);
    if (in->failed != HALLU_OK && be->failed == HALLU_OK)
        hallu_backend_fail(be, in->failed, "%s", in->failure);
}

#define ENTER(be) if (!iso_enter((be), __func__)) return
#define RUN(be, call) do { call; iso_leave(be); } while (0)

/* ---- lifetime and memory ---- */

static void iso_destroy(hallu_backend *be)
{
    if (!be)
        return;
    if (be->impl) {
        free(iso_of(be)->blocks);
        hallu_backend_free(inner_of(be));
        hallu_free(be->impl);
    }
    hallu_free(be);
}

static void *iso_alloc(hallu_backend *be, size_t nbytes, const char *what, hallu_error *err)
{
    iso_impl *impl = iso_of(be);
    if (impl->fault_alloc > 0 && --impl->fault_alloc == 0) {
        hallu_error_set(err, HALLU_ERR_OOM, "out of memory allocating %zu bytes for %s (injected fault, test hook)",
                        nbytes, what ? what : "buffer");
        return NULL;
    }
    return iso_tag(impl->inner->ops->alloc(impl->inner, nbytes, what, err));
}

static void iso_release(hallu_backend *be, void *p)
{
    if (p)
        inner_of(be)->ops->release(inner_of(be), D(p));
}

/* ---- staging memory: the asynchronous-upload contract, checked ----
 * On a GPU an upload from page-locked memory reads its source some time after
 * the call returns, so the caller must leave those bytes alone until
 * upload_wait returns. This backend reads them at once (results stay the cpu
 * backend's) and keeps a checksum of each such upload; upload_wait compares:
 * bytes changed in between are a named failure, the bug that on a GPU would
 * feed a step torn images. */

static iso_block *iso_block_of(iso_impl *impl, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (int i = 0; i < impl->n_blocks; i++)
        if (c >= impl->blocks[i].p && c < impl->blocks[i].p + impl->blocks[i].n)
            return n <= (size_t)(impl->blocks[i].p + impl->blocks[i].n - c) ? &impl->blocks[i] : NULL;
    return NULL;
}

static void *iso_host_alloc(hallu_backend *be, size_t nbytes, const char *what, hallu_error *err)
{
    iso_impl *impl = iso_of(be);
    if (impl->n_blocks == impl->cap_blocks) {
        int cap = impl->cap_blocks ? 2 * impl->cap_blocks : 16;
        iso_block *b = realloc(impl->blocks, (size_t)cap * sizeof *b);
        if (!b) {
            hallu_error_set(err, HALLU_ERR_OOM, "out of memory registering staging memory for %s", what ? what : "?");
            return NULL;
        }
        impl->blocks = b;
        impl->cap_blocks = cap;
    }
    void *p = hallu_alloc(nbytes ? nbytes : 1, what, err);
    if (p)
        impl->blocks[impl->n_blocks++] = (iso_block){ p, nbytes };
    return p;
}

/* Confirms pending upload i (its bytes unchanged) and drops it. */
static void iso_confirm(hallu_backend *be, int i)
{
    iso_impl *impl = iso_of(be);
    iso_pending q = impl->pending[i];
    impl->pending[i] = impl->pending[--impl->n_pending];
    if (hallu_fnv1a64(HALLU_FNV_OFFSET, q.src, q.n) != q.sum)
        hallu_backend_fail(be, HALLU_ERR_BACKEND, "upload_wait: the %zu staging bytes at %p changed after their "
                           "upload and before upload_wait (an asynchronous copy would have read the new bytes)",
                           q.n, (const void *)q.src);
}

static void iso_host_free(hallu_backend *be, void *p)
{
    iso_impl *impl = iso_of(be);
    for (int i = 0; i < impl->n_blocks; i++) {
        if (impl->blocks[i].p != p)
            continue;
        iso_block blk = impl->blocks[i];
        for (int j = impl->n_pending - 1; j >= 0; j--)
            if (impl->pending[j].src >= blk.p && impl->pending[j].src < blk.p + blk.n) {
                impl->pending[j] = impl->pending[--impl->n_pending];
                hallu_backend_fail(be, HALLU_ERR_BACKEND, "host_free: staging memory %p freed before upload_wait "
                                   "confirmed an upload from it", p);
            }
        impl->blocks[i] = impl->blocks[--impl->n_blocks];
        hallu_free(p);
        return;
    }
    fprintf(stderr, "hallu cpu-isolated: host_free of %p, which host_alloc did not return\n", p);
    abort();
}

static void iso_upload_wait(hallu_backend *be)
{
    while (iso_of(be)->n_pending > 0)
        iso_confirm(be, 0);
}

static void iso_upload(hallu_backend *be, void *dst, const void *src, size_t nbytes)
{
    ENTER(be);
    iso_impl *impl = iso_of(be);
    if (nbytes && iso_block_of(impl, src, nbytes)) {
        if (impl->n_pending == ISO_MAX_PENDING)   /* a caller that never waits: check the oldest now */
            iso_confirm(be, 0);
        impl->pending[impl->n_pending++] = (iso_pending){ src, nbytes, hallu_fnv1a64(HALLU_FNV_OFFSET, src, nbytes) };
    }
    RUN(be, inner_of(be)->ops->upload(inner_of(be), D(dst), src, nbytes));
}

static void iso_download(hallu_backend *be, void *dst, const void *src, size_t nbytes)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->download(inner_of(be), dst, D(src), nbytes));
}

static void iso_copy(hallu_backend *be, void *dst, const void *src, size_t nbytes)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->copy(inner_of(be), D(dst), D(src), nbytes));
}

static void iso_fill(hallu_backend *be, float *y, float value, int64_t n)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->fill(inner_of(be), D(y), value, n));
}

static void iso_memory(hallu_backend *be, size_t *live, size_t *peak)
{
    inner_of(be)->ops->memory(inner_of(be), live, peak);
}

static hallu_status iso_set_precision(hallu_backend *be, hallu_precision precision, hallu_error *err)
{
    return hallu_backend_set_precision(inner_of(be), precision, err);
}

static hallu_status iso_inject_fault(hallu_backend *be, int64_t nth_op, int64_t nth_alloc, hallu_error *err)
{
    if (nth_op < 0 || nth_alloc < 0)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "fault injection: op %lld, alloc %lld (expected >= 0)",
                               (long long)nth_op, (long long)nth_alloc);
    iso_of(be)->fault_op = nth_op;
    iso_of(be)->fault_alloc = nth_alloc;
    return HALLU_OK;
}

/* ---- convolution ---- */

static hallu_status iso_conv2d_plan_create(hallu_backend *be, const hallu_conv2d_geom *g, hallu_conv2d_plan **out,
                                           hallu_error *err)
{
    *out = NULL;
    iso_plan *p = hallu_calloc(sizeof *p, "conv2d plan", err);
    if (!p)
        return HALLU_ERR_OOM;
    p->be = be;
    hallu_status s = inner_of(be)->ops->conv2d_plan_create(inner_of(be), g, &p->inner, err);
    if (s != HALLU_OK) {
        hallu_free(p);
        return s;
    }
    *out = (hallu_conv2d_plan *)p;
    return HALLU_OK;
}

static void iso_conv2d_plan_free(hallu_conv2d_plan *plan)
{
    iso_plan *p = (iso_plan *)plan;
    if (!p)
        return;
    inner_of(p->be)->ops->conv2d_plan_free(p->inner);
    hallu_free(p);
}

static void iso_conv2d_forward(hallu_conv2d_plan *plan, float *y, const float *x, const uint16_t *x16,
                               const float *w)
{
    iso_plan *p = (iso_plan *)plan;
    ENTER(p->be);
    RUN(p->be, inner_of(p->be)->ops->conv2d_forward(p->inner, D(y), D(x), D(x16), D(w)));
}

/* A refused op (failed backend, fault hook) counts as done: the failure is
 * recorded and every later op is refused too. */
static int iso_conv2d_forward_y16(hallu_conv2d_plan *plan, uint16_t *y16, const float *x, const uint16_t *x16,
                                  const float *w)
{
    iso_plan *p = (iso_plan *)plan;
    if (!iso_enter(p->be, __func__))
        return 1;
    int done = inner_of(p->be)->ops->conv2d_forward_y16(p->inner, D(y16), D(x), D(x16), D(w));
    iso_leave(p->be);
    return done;
}

static int iso_conv2d_backward_dx16(hallu_conv2d_plan *plan, uint16_t *dx16, float *dw, const float *dy,
                                   const uint16_t *dy16, const float *x, const uint16_t *x16, const float *w)
{
    iso_plan *p = (iso_plan *)plan;
    if (!iso_enter(p->be, __func__))
        return 1;
    int done = inner_of(p->be)->ops->conv2d_backward_dx16(p->inner, D(dx16), D(dw), D(dy), D(dy16), D(x), D(x16),
                                                          D(w));
    iso_leave(p->be);
    return done;
}

static void iso_conv2d_backward(hallu_conv2d_plan *plan, float *dx, float *dw, const float *dy,
                                const uint16_t *dy16, const float *x, const uint16_t *x16, const float *w)
{
    iso_plan *p = (iso_plan *)plan;
    ENTER(p->be);
    RUN(p->be, inner_of(p->be)->ops->conv2d_backward(p->inner, D(dx), D(dw), D(dy), D(dy16), D(x), D(x16), D(w)));
}

/* ---- batch norm ---- */

static void iso_batchnorm_forward_train(hallu_backend *be, float *y, float *save_mean, float *save_invstd,
                                        float *running_mean, float *running_var, const float *x, const float *gamma,
                                        const float *beta, int64_t m, int c, float momentum, float eps)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->batchnorm_forward_train(inner_of(be), D(y), D(save_mean), D(save_invstd),
                                                       D(running_mean), D(running_var), D(x), D(gamma), D(beta), m,
                                                       c, momentum, eps));
}

static void iso_batchnorm_forward_eval(hallu_backend *be, float *y, const float *x, const float *running_mean,
                                       const float *running_var, const float *gamma, const float *beta, int64_t m,
                                       int c, float eps)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->batchnorm_forward_eval(inner_of(be), D(y), D(x), D(running_mean), D(running_var),
                                                      D(gamma), D(beta), m, c, eps));
}

static void iso_batchnorm_backward(hallu_backend *be, float *dx, float *dgamma, float *dbeta, const float *dy,
                                   const float *x, const float *save_mean, const float *save_invstd,
                                   const float *gamma, int64_t m, int c)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->batchnorm_backward(inner_of(be), D(dx), D(dgamma), D(dbeta), D(dy), D(x),
                                                  D(save_mean), D(save_invstd), D(gamma), m, c));
}

static void iso_batchnorm_backward_x16(hallu_backend *be, uint16_t *dx16, float *dgamma, float *dbeta,
                                       const float *dy, const float *x, const float *save_mean,
                                       const float *save_invstd, const float *gamma, int64_t m, int c)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->batchnorm_backward_x16(inner_of(be), D(dx16), D(dgamma), D(dbeta), D(dy), D(x),
                                                      D(save_mean), D(save_invstd), D(gamma), m, c));
}

static void iso_batchnorm_normalize_fused(hallu_backend *be, float *y, uint16_t *y16, float *save_mean,
                                          float *save_invstd, float *save_scale, const float *x, const uint16_t *x16,
                                          const double *mean, const double *var, const float *gamma,
                                          const float *beta, const float *residual, const uint16_t *residual16,
                                          int relu, int64_t m, int c, float eps)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->batchnorm_normalize_fused(inner_of(be), D(y), D(y16), D(save_mean), D(save_invstd),
                                                         D(save_scale), D(x), D(x16), D(mean), D(var), D(gamma),
                                                         D(beta), D(residual), D(residual16), relu, m, c, eps));
}

static void iso_batchnorm_backward_fused(hallu_backend *be, float *dx, uint16_t *dx16, float *dgamma, float *dbeta,
                                         const float *dy, const uint16_t *dy16, const float *x, const uint16_t *x16,
                                         const float *save_mean, const float *save_invstd, const float *save_scale,
                                         const float *gamma, const float *beta, int64_t m, int c)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->batchnorm_backward_fused(inner_of(be), D(dx), D(dx16), D(dgamma), D(dbeta), D(dy),
                                                        D(dy16), D(x), D(x16), D(save_mean), D(save_invstd),
                                                        D(save_scale),
                                                        D(gamma), D(beta), m, c));
}

static void iso_batchnorm_stats_x16(hallu_backend *be, double *mean, double *var, const uint16_t *x16, int64_t m,
                                    int c)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->batchnorm_stats_x16(inner_of(be), D(mean), D(var), D(x16), m, c));
}

/* ---- elementwise ---- */

static void iso_relu_forward(hallu_backend *be, float *y, const float *x, int64_t n)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->relu_forward(inner_of(be), D(y), D(x), n));
}

static void iso_relu_forward_x16(hallu_backend *be, float *y, uint16_t *y16, const float *x, int64_t n)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->relu_forward_x16(inner_of(be), D(y), D(y16), D(x), n));
}

static void iso_relu_backward(hallu_backend *be, float *dx, const float *dy, const float *y, int64_t n)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->relu_backward(inner_of(be), D(dx), D(dy), D(y), n));
}

static void iso_add(hallu_backend *be, float *y, const float *a, const float *b, int64_t n)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->add(inner_of(be), D(y), D(a), D(b), n));
}

static void iso_add_relu_backward(hallu_backend *be, float *dx, const float *a, const float *b, const float *y,
                                  int64_t n)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->add_relu_backward(inner_of(be), D(dx), D(a), D(b), D(y), n));
}

static void iso_add_relu_backward_x16(hallu_backend *be, float *dx, uint16_t *dx16, const float *a,
                                      const uint16_t *a16, const float *b, const uint16_t *b16, const float *y,
                                      const uint16_t *y16, int64_t n)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->add_relu_backward_x16(inner_of(be), D(dx), D(dx16), D(a), D(a16), D(b), D(b16), D(y),
                                                     D(y16), n));
}

static void iso_axpy(hallu_backend *be, float *y, float alpha, const float *x, int64_t n)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->axpy(inner_of(be), D(y), alpha, D(x), n));
}

static void iso_scale(hallu_backend *be, float *y, float alpha, const float *x, int64_t n)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->scale(inner_of(be), D(y), alpha, D(x), n));
}

static void iso_normalize_u8(hallu_backend *be, float *y, const uint8_t *x, int64_t pixels, const float *mean,
                             const float *std)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->normalize_u8(inner_of(be), D(y), D(x), pixels, mean, std));
}

/* ---- pooling ---- */

static void iso_maxpool2d_forward(hallu_backend *be, float *y, int32_t *argmax, const float *x,
                                  const hallu_pool2d_geom *g)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->maxpool2d_forward(inner_of(be), D(y), D(argmax), D(x), g));
}

static void iso_maxpool2d_backward(hallu_backend *be, float *dx, const float *dy, const int32_t *argmax,
                                   const hallu_pool2d_geom *g)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->maxpool2d_backward(inner_of(be), D(dx), D(dy), D(argmax), g));
}

static void iso_global_avgpool_forward(hallu_backend *be, float *y, const float *x, int n, int hw, int c)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->global_avgpool_forward(inner_of(be), D(y), D(x), n, hw, c));
}

static void iso_global_avgpool_backward(hallu_backend *be, float *dx, const float *dy, int n, int hw, int c)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->global_avgpool_backward(inner_of(be), D(dx), D(dy), n, hw, c));
}

/* ---- dense ---- */

static void iso_gemm(hallu_backend *be, int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
                     const float *b, float beta, float *c)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->gemm(inner_of(be), trans_a, trans_b, m, n, k, alpha, D(a), D(b), beta, D(c)));
}

static void iso_linear_forward(hallu_backend *be, float *y, const float *x, const float *w, const float *bias,
                               int rows, int in, int out)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->linear_forward(inner_of(be), D(y), D(x), D(w), D(bias), rows, in, out));
}

static void iso_linear_backward(hallu_backend *be, float *dx, float *dw, float *dbias, const float *dy,
                                const float *x, const float *w, int rows, int in, int out)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->linear_backward(inner_of(be), D(dx), D(dw), D(dbias), D(dy), D(x), D(w), rows, in,
                                               out));
}

/* ---- rows ---- */

static void iso_l2norm_rows_forward(hallu_backend *be, float *y, float *norms, const float *x, int rows, int cols,
                                    float eps)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->l2norm_rows_forward(inner_of(be), D(y), D(norms), D(x), rows, cols, eps));
}

static void iso_l2norm_rows_backward(hallu_backend *be, float *dx, const float *dy, const float *x,
                                     const float *norms, int rows, int cols, float eps)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->l2norm_rows_backward(inner_of(be), D(dx), D(dy), D(x), D(norms), rows, cols, eps));
}

static float iso_softmax_xent_forward(hallu_backend *be, float *probs, const float *logits, const int32_t *targets,
                                      int rows, int classes)
{
    if (!iso_enter(be, __func__))
        return 0.0f;
    float loss = inner_of(be)->ops->softmax_xent_forward(inner_of(be), D(probs), D(logits), D(targets), rows,
                                                         classes);
    iso_leave(be);
    return loss;
}

static void iso_softmax_xent_backward(hallu_backend *be, float *dlogits, const float *probs, const int32_t *targets,
                                      int rows, int classes, float scale)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->softmax_xent_backward(inner_of(be), D(dlogits), D(probs), D(targets), rows, classes,
                                                     scale));
}

static void iso_copy_cols(hallu_backend *be, float *dst, int cols_dst, int col0, const float *src, int cols_src,
                          int rows)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->copy_cols(inner_of(be), D(dst), cols_dst, col0, D(src), cols_src, rows));
}

static void iso_slice_cols(hallu_backend *be, float *dst, int cols_dst, const float *src, int cols_src, int col0,
                           int rows)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->slice_cols(inner_of(be), D(dst), cols_dst, D(src), cols_src, col0, rows));
}

/* ---- nn and optimizer ops (batch norm split, parameter updates, norms) ---- */
static void iso_batchnorm_stats(hallu_backend *be, double *mean, double *var, const float *x, int64_t m, int c)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->batchnorm_stats(inner_of(be), D(mean), D(var), D(x), m, c));
}

static void iso_batchnorm_stats_to_moments(hallu_backend *be, double *mean, double *var, int c)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->batchnorm_stats_to_moments(inner_of(be), D(mean), D(var), c));
}

static void iso_batchnorm_moments_to_stats(hallu_backend *be, double *mean, double *var, int c, double inv_count)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->batchnorm_moments_to_stats(inner_of(be), D(mean), D(var), c, inv_count));
}

static void iso_batchnorm_backward_reduce(hallu_backend *be, double *sums, float *dgamma, float *dbeta,
                                          const float *dy, const float *x, const float *save_mean,
                                          const float *save_invstd, int64_t m, int c)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->batchnorm_backward_reduce(inner_of(be), D(sums), D(dgamma), D(dbeta), D(dy), D(x),
                                                         D(save_mean), D(save_invstd), m, c));
}

static void iso_batchnorm_backward_apply(hallu_backend *be, float *dx, const float *dy, const float *x,
                                         const float *save_mean, const float *save_invstd, const float *gamma,
                                         const double *sums, int64_t m, int64_t m_total, int c)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->batchnorm_backward_apply(inner_of(be), D(dx), D(dy), D(x), D(save_mean),
                                                        D(save_invstd), D(gamma), D(sums), m, m_total, c));
}

static void iso_batchnorm_normalize(hallu_backend *be, float *y, float *save_mean, float *save_invstd,
                                    const float *x, const double *mean, const double *var, const float *gamma,
                                    const float *beta, int64_t m, int c, float eps)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->batchnorm_normalize(inner_of(be), D(y), D(save_mean), D(save_invstd), D(x), D(mean),
                                                   D(var), D(gamma), D(beta), m, c, eps));
}

static void iso_batchnorm_update_running(hallu_backend *be, float *running_mean, float *running_var,
                                         const double *mean, const double *var, int64_t m, int c, float momentum)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->batchnorm_update_running(inner_of(be), D(running_mean), D(running_var), D(mean),
                                                        D(var), m, c, momentum));
}

static void iso_batchnorm_update_running_grouped(hallu_backend *be, float *running_mean, float *running_var,
                                                 const float *save_mean, const float *save_invstd, int groups,
                                                 int64_t rows_per, int c, float momentum, float eps)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->batchnorm_update_running_grouped(inner_of(be), D(running_mean), D(running_var),
                                                                D(save_mean), D(save_invstd), groups, rows_per, c,
                                                                momentum, eps));
}

static void iso_add_scalar(hallu_backend *be, float *y, float value, int64_t n)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->add_scalar(inner_of(be), D(y), value, n));
}

static void iso_l2_norm(hallu_backend *be, float *norm, const float *x, int64_t n)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->l2_norm(inner_of(be), D(norm), D(x), n));
}

static void iso_clip_by_norm(hallu_backend *be, float *x, const float *total, int64_t n, float max_norm)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->clip_by_norm(inner_of(be), D(x), D(total), n, max_norm));
}

static void iso_lars_coef(hallu_backend *be, float *coef, const float *p, const float *g, int64_t n, float wd,
                          float eps, float eta, int clip_lr, float lr)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->lars_coef(inner_of(be), D(coef), D(p), D(g), n, wd, eps, eta, clip_lr, lr));
}

static void iso_sgd_update(hallu_backend *be, float *p, const float *g, float *buf, const float *lars, float wd,
                           float momentum, float damp1, float neg_lr, int nesterov, int first, int64_t n)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->sgd_update(inner_of(be), D(p), D(g), D(buf), D(lars), wd, momentum, damp1, neg_lr,
                                          nesterov, first, n));
}

static void iso_adamw_update(hallu_backend *be, float *p, const float *g, float *m, float *v, float decay,
                             float beta1, float one_m_beta1, float beta2, float one_m_beta2, float bc2_sqrt,
                             float eps, float neg_step, int64_t n)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->adamw_update(inner_of(be), D(p), D(g), D(m), D(v), decay, beta1, one_m_beta1, beta2,
                                            one_m_beta2, bc2_sqrt, eps, neg_step, n));
}

/* (end of nn ops) */

/* ---- ssl ops (losses, Hallucinator, MoCo) ---- */
static void iso_ssl_nt_xent_rows(hallu_backend *be, float *loss, float *sim, int rows, int m, int row0, int block,
                                 int n_src, int mask_same_source, float scale)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->ssl_nt_xent_rows(inner_of(be), D(loss), D(sim), rows, m, row0, block, n_src,
                                                mask_same_source, scale));
}

static void iso_ssl_infonce_rows(hallu_backend *be, float *loss, float *dq, float *neg, const float *q,
                                 const float *kpos, int rows, int d, int K, float temperature)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->ssl_infonce_rows(inner_of(be), D(loss), D(dq), D(neg), D(q), D(kpos), rows, d, K,
                                                temperature));
}

static void iso_ssl_neg_cosine(hallu_backend *be, float *loss, float *dp, const float *p, const float *z, int rows,
                               int d, float scale, int accumulate)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->ssl_neg_cosine(inner_of(be), D(loss), D(dp), D(p), D(z), rows, d, scale, accumulate));
}

static void iso_ssl_collapse_std(hallu_backend *be, float *out, float *norms, const float *z, int rows, int d)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->ssl_collapse_std(inner_of(be), D(out), D(norms), D(z), rows, d));
}

static void iso_ssl_hal_input(hallu_backend *be, float *xg, const float *x, const float *k, int rows, int d, float r)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->ssl_hal_input(inner_of(be), D(xg), D(x), D(k), rows, d, r));
}

static void iso_ssl_hal_output(hallu_backend *be, float *h, const float *mlp, const float *xg, int rows, int d,
                               int residual)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->ssl_hal_output(inner_of(be), D(h), D(mlp), D(xg), rows, d, residual));
}

static void iso_ssl_hal_backward(hallu_backend *be, float *dx, float *dk, const float *dxg, const float *dout, int rows,
                                 int d, float r, int residual)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->ssl_hal_backward(inner_of(be), D(dx), D(dk), D(dxg), D(dout), rows, d, r, residual));
}

static void iso_ssl_gather_rows(hallu_backend *be, float *dst, const float *src, const int32_t *index, int rows,
                                int64_t cols)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->ssl_gather_rows(inner_of(be), D(dst), D(src), D(index), rows, cols));
}

static void iso_ssl_scatter_rows(hallu_backend *be, float *dst, const float *src, const int32_t *index, int rows,
                                 int64_t cols)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->ssl_scatter_rows(inner_of(be), D(dst), D(src), D(index), rows, cols));
}

static void iso_ssl_enqueue_rows(hallu_backend *be, float *queue, int64_t *ptr, const float *src, int rows, int d,
                                 int K)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->ssl_enqueue_rows(inner_of(be), D(queue), D(ptr), D(src), rows, d, K));
}
/* (end of ssl ops) */

/* ---- eval ops (kNN, linear probe) ---- */
static void iso_knn_inverse_norms(hallu_backend *be, float *inv, const float *x, int64_t rows, int dim)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->knn_inverse_norms(inner_of(be), D(inv), D(x), rows, dim));
}

static void iso_knn_scale_rows(hallu_backend *be, float *y, const float *x, const float *inv, int64_t rows, int dim)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->knn_scale_rows(inner_of(be), D(y), D(x), D(inv), rows, dim));
}

static void iso_knn_scale_cols(hallu_backend *be, float *s, const float *inv, int rows, int64_t cols)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->knn_scale_cols(inner_of(be), D(s), D(inv), rows, cols));
}

static void iso_knn_top_k(hallu_backend *be, float *top_sim, int32_t *top_idx, const float *sims, int rows, int64_t n,
                          int k)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->knn_top_k(inner_of(be), D(top_sim), D(top_idx), D(sims), rows, n, k));
}

static void iso_knn_vote(hallu_backend *be, int32_t *best, double *scores, const float *top_sim, const int32_t *top_idx,
                         const int32_t *train_labels, int rows, int k, float temperature, int classes, int nbest)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->knn_vote(inner_of(be), D(best), D(scores), D(top_sim), D(top_idx), D(train_labels),
                                        rows, k, temperature, classes, nbest));
}

static void iso_argmax_hits(hallu_backend *be, int64_t *hits, const float *logits, const int32_t *labels, int rows,
                            int classes)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->argmax_hits(inner_of(be), D(hits), D(logits), D(labels), rows, classes));
}

static void iso_class_rank_hits(hallu_backend *be, int64_t *hits, const float *logits, const int32_t *labels,
                                int rows, int classes)
{
    ENTER(be);
    RUN(be, inner_of(be)->ops->class_rank_hits(inner_of(be), D(hits), D(logits), D(labels), rows, classes));
}

/* (end of eval ops) */

static const hallu_backend_ops iso_ops = {
    .name = "cpu-isolated",
    .destroy = iso_destroy,
    .alloc = iso_alloc,
    .release = iso_release,
    .upload = iso_upload,
    .download = iso_download,
    .copy = iso_copy,
    .fill = iso_fill,
    .memory = iso_memory,
    .host_alloc = iso_host_alloc,
    .host_free = iso_host_free,
    .upload_wait = iso_upload_wait,
    .inject_fault = iso_inject_fault,
    .set_precision = iso_set_precision,
    .conv2d_plan_create = iso_conv2d_plan_create,
    .conv2d_plan_free = iso_conv2d_plan_free,
    .conv2d_forward = iso_conv2d_forward,
    .conv2d_forward_y16 = iso_conv2d_forward_y16,
    .conv2d_backward = iso_conv2d_backward,
    .conv2d_backward_dx16 = iso_conv2d_backward_dx16,
    .batchnorm_forward_train = iso_batchnorm_forward_train,
    .batchnorm_forward_eval = iso_batchnorm_forward_eval,
    .batchnorm_backward = iso_batchnorm_backward,
    .batchnorm_backward_x16 = iso_batchnorm_backward_x16,
    .batchnorm_normalize_fused = iso_batchnorm_normalize_fused,
    .batchnorm_backward_fused = iso_batchnorm_backward_fused,
    .batchnorm_stats_x16 = iso_batchnorm_stats_x16,
    .relu_forward = iso_relu_forward,
    .relu_forward_x16 = iso_relu_forward_x16,
    .relu_backward = iso_relu_backward,
    .add = iso_add,
    .add_relu_backward = iso_add_relu_backward,
    .add_relu_backward_x16 = iso_add_relu_backward_x16,
    .axpy = iso_axpy,
    .scale = iso_scale,
    .normalize_u8 = iso_normalize_u8,
    .maxpool2d_forward = iso_maxpool2d_forward,
    .maxpool2d_backward = iso_maxpool2d_backward,
    .global_avgpool_forward = iso_global_avgpool_forward,
    .global_avgpool_backward = iso_global_avgpool_backward,
    .gemm = iso_gemm,
    .linear_forward = iso_linear_forward,
    .linear_backward = iso_linear_backward,
    .l2norm_rows_forward = iso_l2norm_rows_forward,
    .l2norm_rows_backward = iso_l2norm_rows_backward,
    .softmax_xent_forward = iso_softmax_xent_forward,
    .softmax_xent_backward = iso_softmax_xent_backward,
    .copy_cols = iso_copy_cols,
    .slice_cols = iso_slice_cols,
    /* nn and optimizer ops (batch norm split, parameter updates, norms) */
    .batchnorm_stats = iso_batchnorm_stats,
    .batchnorm_stats_to_moments = iso_batchnorm_stats_to_moments,
    .batchnorm_moments_to_stats = iso_batchnorm_moments_to_stats,
    .batchnorm_backward_reduce = iso_batchnorm_backward_reduce,
    .batchnorm_backward_apply = iso_batchnorm_backward_apply,
    .batchnorm_normalize = iso_batchnorm_normalize,
    .batchnorm_update_running = iso_batchnorm_update_running,
    .batchnorm_update_running_grouped = iso_batchnorm_update_running_grouped,
    .add_scalar = iso_add_scalar,
    .l2_norm = iso_l2_norm,
    .clip_by_norm = iso_clip_by_norm,
    .lars_coef = iso_lars_coef,
    .sgd_update = iso_sgd_update,
    .adamw_update = iso_adamw_update,
    /* (end of nn ops) */
    /* ssl ops (losses, Hallucinator, MoCo) */
    .ssl_nt_xent_rows = iso_ssl_nt_xent_rows,
    .ssl_infonce_rows = iso_ssl_infonce_rows,
    .ssl_neg_cosine = iso_ssl_neg_cosine,
    .ssl_collapse_std = iso_ssl_collapse_std,
    .ssl_hal_input = iso_ssl_hal_input,
    .ssl_hal_output = iso_ssl_hal_output,
    .ssl_hal_backward = iso_ssl_hal_backward,
    .ssl_gather_rows = iso_ssl_gather_rows,
    .ssl_scatter_rows = iso_ssl_scatter_rows,
    .ssl_enqueue_rows = iso_ssl_enqueue_rows,
    /* (end of ssl ops) */
    /* eval ops (kNN, linear probe) */
    .knn_inverse_norms = iso_knn_inverse_norms,
    .knn_scale_rows = iso_knn_scale_rows,
    .knn_scale_cols = iso_knn_scale_cols,
    .knn_top_k = iso_knn_top_k,
    .knn_vote = iso_knn_vote,
    .argmax_hits = iso_argmax_hits,
    .class_rank_hits = iso_class_rank_hits,
    /* (end of eval ops) */
};

hallu_status hallu_backend_isolated_create(hallu_backend **out, int num_threads, hallu_error *err)
{
    *out = NULL;
    if (sizeof(void *) != 8)
        return hallu_error_set(err, HALLU_ERR_UNSUPPORTED, "device cpu-isolated needs a 64-bit build");
    hallu_backend *inner = NULL;
    hallu_status s = hallu_backend_cpu_create(&inner, num_threads, err);
    if (s != HALLU_OK)
        return s;
    hallu_backend *be = hallu_calloc(sizeof *be, "cpu-isolated backend", err);
    iso_impl *impl = be ? hallu_calloc(sizeof *impl, "cpu-isolated backend state", err) : NULL;
    if (!impl) {
        hallu_free(be);
        hallu_backend_free(inner);
        return HALLU_ERR_OOM;
    }
    impl->inner = inner;
    *be = (hallu_backend){ .ops = &iso_ops, .num_threads = inner->num_threads, .impl = impl };
    *out = be;
    return HALLU_OK;
}
