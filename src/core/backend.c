/* Backend-independent helpers of the backend interface. */
#include "hallu/backend.h"

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
