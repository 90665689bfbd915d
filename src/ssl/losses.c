/* The contrastive losses: the large products run as backend gemms around the
 * backend's row ops (ssl_nt_xent_rows, ssl_infonce_rows), which hold the
 * per-row log-sum-exp in double. The loss is written to a device float. */
#include "ssl_internal.h"

void ssl_nt_xent(hallu_backend *be, float *loss, float *dfeat, float *sim, const float *feat, int m, int d,
                 int rows, int row0, int block, int n_src, float temperature, int mask_same_source, float scale)
{
    float inv_t = 1.0f / temperature;
    const float *anchors = feat + (size_t)row0 * d;
    be->ops->gemm(be, 0, 1, rows, m, d, inv_t, anchors, feat, 0.0f, sim);
    be->ops->ssl_nt_xent_rows(be, loss, sim, rows, m, row0, block, n_src, mask_same_source, scale);
    if (dfeat) {
        /* sim = F_a F^T / T, so dF_a = G F / T (the anchors' rows) and dF += G^T F_a / T
         * (every row, as a column of sim). All anchors: dF = (G + G^T) F / T. */
        if (rows < m)
            be->ops->fill(be, dfeat, 0.0f, (int64_t)m * d);
        be->ops->gemm(be, 0, 0, rows, d, m, inv_t, sim, feat, 0.0f, dfeat + (size_t)row0 * d);
        be->ops->gemm(be, 1, 0, m, d, rows, inv_t, sim, anchors, 1.0f, dfeat);
    }
}

void ssl_infonce(hallu_backend *be, float *loss, float *dq, float *neg, const float *q, const float *kpos,
                 const float *queue, int rows, int d, int K, float temperature)
{
    float inv_t = 1.0f / temperature;
    be->ops->gemm(be, 0, 1, rows, K, d, inv_t, q, queue, 0.0f, neg);
    be->ops->ssl_infonce_rows(be, loss, dq, neg, q, kpos, rows, d, K, temperature);
    if (dq)
        be->ops->gemm(be, 0, 0, rows, d, K, inv_t, neg, queue, 1.0f, dq);
}
