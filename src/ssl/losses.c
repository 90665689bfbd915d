/* The contrastive losses: the large products run as backend gemms around the
 * backend's row ops (ssl_nt_xent_rows, ssl_infonce_rows), which hold the
 * per-row log-sum-exp in double. The loss is written to a device float. */
#include "ssl_internal.h"

void ssl_nt_xent(hallu_backend *be, float *loss, float *dfeat, float *sim, const float *feat, int m, int d,
                 int n_src, float temperature, int mask_same_source, float scale)
{
    float inv_t = 1.0f / temperature;
    be->ops->gemm(be, 0, 1, m, m, d, inv_t, feat, feat, 0.0f, sim);
    be->ops->ssl_nt_xent_rows(be, loss, sim, m, n_src, mask_same_source, scale);
    if (dfeat) {
        /* sim = F F^T / T, so dF = (G + G^T) F / T. */
        be->ops->gemm(be, 0, 0, m, d, m, inv_t, sim, feat, 0.0f, dfeat);
        be->ops->gemm(be, 1, 0, m, d, m, inv_t, sim, feat, 1.0f, dfeat);
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
