/* Backend-independent helpers of the backend interface. */
#include "hallu/backend.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* The test backend of src/backend/isolated/ (declared here, not in the public
 * header: hallu_backend_create("cpu-isolated") is its way in). */
hallu_status hallu_backend_isolated_create(hallu_backend **out, int num_threads, hallu_error *err);

#ifdef HALLU_HAVE_CUDA_BACKEND
/* hallu_backend_cuda_create (src/backend/cuda/), built with -DHALLU_CUDA=AUTO|ON
 * where nvcc, cuBLAS and cuDNN are found. */
#include "backend/cuda/cuda_internal.h"
#endif

hallu_status hallu_conv2d_geom_init(hallu_conv2d_geom *g, int n, int h, int w, int cin,
                                    int cout, int k, int stride, int pad, hallu_error *err)
{
    if (n <= 0 || h <= 0 || w <= 0 || cin <= 0 || cout <= 0 || k <= 0 || stride <= 0 || pad < 0)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                               "conv2d: sizes must be positive (n=%d h=%d w=%d cin=%d cout=%d k=%d "
                               "stride=%d pad=%d)", n, h, w, cin, cout, k, stride, pad);
    int oh = (h + 2 * pad - k) / stride + 1, ow = (w + 2 * pad - k) / stride + 1;
    if (h + 2 * pad < k || w + 2 * pad < k || oh <= 0 || ow <= 0)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                               "conv2d: kernel %d larger than padded input %dx%d (pad %d)", k, h, w, pad);
    *g = (hallu_conv2d_geom){ .n = n, .h = h, .w = w, .cin = cin, .cout = cout, .k = k,
                              .stride = stride, .pad = pad, .oh = oh, .ow = ow };
    return HALLU_OK;
}

hallu_status hallu_conv2d_geom_check(hallu_conv2d_geom *out, const hallu_conv2d_geom *g, hallu_error *err)
{
    hallu_status s = hallu_conv2d_geom_init(out, g->n, g->h, g->w, g->cin, g->cout, g->k, g->stride, g->pad, err);
    if (s == HALLU_OK && (out->oh != g->oh || out->ow != g->ow))
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                               "conv2d_plan_create: output %dx%d does not match n=%d h=%d w=%d cin=%d cout=%d k=%d "
                               "stride=%d pad=%d (expected %dx%d)", g->oh, g->ow, g->n, g->h, g->w, g->cin, g->cout,
                               g->k, g->stride, g->pad, out->oh, out->ow);
    return s;
}

hallu_status hallu_pool2d_geom_init(hallu_pool2d_geom *g, int n, int h, int w, int c,
                                    int k, int stride, int pad, hallu_error *err)
{
    if (n <= 0 || h <= 0 || w <= 0 || c <= 0 || k <= 0 || stride <= 0 || pad < 0 || 2 * pad > k)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                               "maxpool2d: invalid geometry (n=%d h=%d w=%d c=%d k=%d stride=%d pad=%d)",
                               n, h, w, c, k, stride, pad);
    int oh = (h + 2 * pad - k) / stride + 1, ow = (w + 2 * pad - k) / stride + 1;
    if (oh <= 0 || ow <= 0)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                               "maxpool2d: kernel %d larger than padded input %dx%d", k, h, w);
    *g = (hallu_pool2d_geom){ .n = n, .h = h, .w = w, .c = c, .k = k, .stride = stride,
                              .pad = pad, .oh = oh, .ow = ow };
    return HALLU_OK;
}

void hallu_backend_free(hallu_backend *be)
{
    if (be && be->ops && be->ops->destroy)
        be->ops->destroy(be);
}

const char *hallu_backend_device_names(void)
{
#ifdef HALLU_HAVE_CUDA_BACKEND
    return "cpu, cpu-isolated, cuda[:N]";
#else
    return "cpu, cpu-isolated";
#endif
}

hallu_status hallu_backend_create(const char *device, int num_threads, hallu_backend **out, hallu_error *err)
{
    if (!out)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "hallu_backend_create: out is NULL");
    *out = NULL;
    if (!device || strcmp(device, "cpu") == 0)
        return hallu_backend_cpu_create(out, num_threads, err);
    if (strcmp(device, "cpu-isolated") == 0)
        return hallu_backend_isolated_create(out, num_threads, err);
#ifdef HALLU_HAVE_CUDA_BACKEND
    /* "cuda" or "cuda:N"; other spellings are named by the CUDA backend's parser. */
    if (strncmp(device, "cuda", 4) == 0)
        return hallu_backend_cuda_create(device, num_threads, out, err);
#else
    if (strncmp(device, "cuda", 4) == 0)
        return hallu_error_set(err, HALLU_ERR_UNSUPPORTED,
                               "device '%s': this build of hallu has no CUDA backend (devices: %s)", device,
                               hallu_backend_device_names());
#endif
    return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "device '%s' is unknown (expected one of: %s)", device,
                           hallu_backend_device_names());
}

void hallu_backend_fail(hallu_backend *be, hallu_status code, const char *fmt, ...)
{
    if (!be || be->failed != HALLU_OK)
        return;
    be->failed = code == HALLU_OK ? HALLU_ERR_BACKEND : code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(be->failure, sizeof be->failure, fmt, ap);
    va_end(ap);
}

hallu_status hallu_backend_check(const hallu_backend *be, hallu_error *err)
{
    if (!be || be->failed == HALLU_OK)
        return HALLU_OK;
    return hallu_error_set(err, be->failed, "backend %s: %s", be->ops->name, be->failure);
}

void hallu_backend_clear_failure(hallu_backend *be)
{
    if (!be)
        return;
    be->failed = HALLU_OK;
    be->failure[0] = '\0';
}

void hallu_backend_memory(hallu_backend *be, size_t *live, size_t *peak)
{
    size_t l = 0, p = 0;
    if (be && be->ops->memory)
        be->ops->memory(be, &l, &p);
    if (live)
        *live = l;
    if (peak)
        *peak = p;
}

hallu_status hallu_backend_upload(hallu_backend *be, void *dst_dev, const void *src_host, size_t nbytes,
                                  hallu_error *err)
{
    if (nbytes)
        be->ops->upload(be, dst_dev, src_host, nbytes);
    return hallu_backend_check(be, err);
}

hallu_status hallu_backend_download(hallu_backend *be, void *dst_host, const void *src_dev, size_t nbytes,
                                    hallu_error *err)
{
    if (nbytes)
        be->ops->download(be, dst_host, src_dev, nbytes);
    return hallu_backend_check(be, err);
}

void *hallu_backend_host_alloc(hallu_backend *be, size_t nbytes, const char *what, hallu_error *err)
{
    if (be && be->ops->host_alloc)
        return be->ops->host_alloc(be, nbytes, what, err);
    return hallu_alloc(nbytes, what, err);
}

void hallu_backend_host_free(hallu_backend *be, void *p)
{
    if (!p)
        return;
    if (be && be->ops->host_free)
        be->ops->host_free(be, p);
    else
        hallu_free(p);
}

void hallu_backend_upload_wait(hallu_backend *be)
{
    if (be && be->ops->upload_wait)
        be->ops->upload_wait(be);
}

hallu_status hallu_buffer_alloc(hallu_buffer *b, hallu_backend *be, hallu_dtype dtype, int64_t count,
                                const char *what, hallu_error *err)
{
    memset(b, 0, sizeof *b);
    size_t esize = hallu_dtype_size(dtype);
    if (!be || esize == 0 || count < 0 || (uint64_t)count > SIZE_MAX / esize)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "buffer '%s': %lld elements of dtype %s",
                               what ? what : "?", (long long)count, hallu_dtype_name(dtype));
    size_t nbytes = (size_t)count * esize;
    b->data = be->ops->alloc(be, nbytes ? nbytes : 1, what, err);
    if (!b->data)
        return err ? err->code : HALLU_ERR_OOM;
    b->be = be;
    b->dtype = dtype;
    b->count = count;
    b->nbytes = nbytes;
    return HALLU_OK;
}

void hallu_buffer_free(hallu_buffer *b)
{
    if (b && b->be && b->data)
        b->be->ops->release(b->be, b->data);
    if (b)
        memset(b, 0, sizeof *b);
}

const char *hallu_precision_name(hallu_precision p)
{
    return p == HALLU_PRECISION_BF16 ? "bf16" : "fp32";
}

hallu_status hallu_precision_parse(const char *name, hallu_precision *out, hallu_error *err)
{
    if (name && strcmp(name, "fp32") == 0)
        *out = HALLU_PRECISION_FP32;
    else if (name && strcmp(name, "bf16") == 0)
        *out = HALLU_PRECISION_BF16;
    else
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "--precision %s: expected fp32 or bf16", name ? name : "");
    return HALLU_OK;
}

hallu_status hallu_backend_set_precision(hallu_backend *be, hallu_precision precision, hallu_error *err)
{
    hallu_status s = be->ops->set_precision ? be->ops->set_precision(be, precision, err)
        : precision == HALLU_PRECISION_FP32 ? HALLU_OK
        : hallu_error_set(err, HALLU_ERR_UNSUPPORTED, "--precision %s: backend %s computes in fp32 only",
                          hallu_precision_name(precision), be->ops->name);
    if (s == HALLU_OK)
        be->precision = precision;
    return s;
}

hallu_precision hallu_backend_precision(const hallu_backend *be)
{
    return be->precision;
}

hallu_status hallu_backend_inject_fault(hallu_backend *be, int64_t nth_op, int64_t nth_alloc, hallu_error *err)
{
    if (!be || !be->ops->inject_fault)
        return hallu_error_set(err, HALLU_ERR_UNSUPPORTED, "fault injection: backend %s has no fault hook (use cpu-isolated)",
                               be ? be->ops->name : "(none)");
    return be->ops->inject_fault(be, nth_op, nth_alloc, err);
}
