/* Private pieces of the ssl module: the Hallucinator module, the losses and the
 * method object. Every float pointer here is a device address (backend.h):
 * the module computes only through backend ops; the host keeps sizes, the
 * Hallucinator RNG and MoCo's key order, which it draws and uploads. */
#ifndef HALLU_SSL_INTERNAL_H
#define HALLU_SSL_INTERNAL_H

#include "hallu/ssl.h"

/* ---- Hallucinator ---- */
typedef struct ssl_hal {
    int d, hidden, residual, max_rows;
    hallu_mlp mlp;
    float r[HALLU_MAX_INSTANCES];
    int rows[HALLU_MAX_INSTANCES];
    const float *x[HALLU_MAX_INSTANCES];
    float *xg[HALLU_MAX_INSTANCES];    /* [max_rows][2d]: [x, g] */
    float *out[HALLU_MAX_INSTANCES];   /* [2 max_rows][d]: [x; h] */
    float *dxg;                        /* [max_rows][2d] backward scratch */
} ssl_hal;

hallu_status ssl_hal_init(ssl_hal *h, hallu_params *ps, const char *prefix, int d, int hidden,
                          int residual, hallu_error *err);
hallu_status ssl_hal_plan(ssl_hal *h, hallu_backend *be, int max_rows, int instances, hallu_error *err);
void ssl_hal_free(ssl_hal *h, hallu_backend *be);
/* PyTorch default init; the residual variant zeroes the last layer. */
void ssl_hal_init_weights(ssl_hal *h, hallu_params *ps, uint64_t seed, uint64_t stream);
/* Returns [x; h] ([2 rows][d], owned, valid until the next forward of inst);
 * x, k and the result are device addresses. */
const float *ssl_hal_forward(ssl_hal *h, const hallu_nn_ctx *ctx, int inst, const float *x,
                             const float *k, int rows, float r);
/* ADDS the gradients w.r.t. x into dx and w.r.t. k into dk (dk may be NULL:
 * k carries no gradient); dout [2 rows][d]. */
void ssl_hal_backward(ssl_hal *h, const hallu_nn_ctx *ctx, int inst, float *dx, float *dk, const float *dout);

/* ---- losses (float in, float gradients out, double row sums; *loss is a device float) ---- */

/* NT-Xent over m normalised rows feat [m][d] in blocks of `block` rows (one
 * per rank; block = m in one process): in a block, the positive of row l is
 * (l + block/2) % block and its source l % n_src; denominators exclude the
 * anchor itself and, with mask_same_source, every other same-source row but
 * the positive. The anchors are rows row0 .. row0 + rows - 1 (a rank's own):
 * *loss = scale * their mean loss; dfeat [m][d] (may be NULL) = its gradient
 * w.r.t. EVERY row (other ranks' rows too: the all-gather's backward sums them
 * across ranks). sim: [rows][m] workspace. */
void ssl_nt_xent(hallu_backend *be, float *loss, float *dfeat, float *sim, const float *feat, int m, int d,
                 int rows, int row0, int block, int n_src, float temperature, int mask_same_source, float scale);

/* InfoNCE: logits_r = [q_r . kpos_r, q_r . queue^T] / T, target 0, mean over
 * rows into *loss. q, kpos: [rows][d] (normalised), queue [K][d]. dq (may be
 * NULL) gets the gradient; neg: [rows][K] workspace. */
void ssl_infonce(hallu_backend *be, float *loss, float *dq, float *neg, const float *q, const float *kpos,
                 const float *queue, int rows, int d, int K, float temperature);

/* SimSiam's negative cosine and the collapse metric are single backend ops
 * (ssl_neg_cosine, ssl_collapse_std). */

/* ---- the method object ---- */
struct hallu_ssl {
    hallu_ssl_config cfg;
    hallu_backend *be;                 /* set by plan */
    hallu_comm *comm;                  /* data-parallel ranks (hallu_ssl_set_comm; NULL: one process) */
    int ranks, rank;                   /* comm's size and rank (1, 0 without one) */
    int feat_dim, dim, max_batch, h, w;
    hallu_resnet *encoder;
    hallu_mlp projector, predictor;
    int has_predictor, has_hal, planned;
    ssl_hal hal;
    hallu_rng rng;
    int64_t rng_words[6];

    /* MoCo */
    int is_moco;
    hallu_params key_ps;
    hallu_resnet *key_encoder;
    hallu_mlp key_projector;
    int q_first, q_count;              /* query tensors mirrored by key_ps->trainable[0..q_count) */
    hallu_buffer queue_buf;            /* [K][dim] */
    hallu_buffer queue_ptr_buf;        /* I64 [1]: the next row to overwrite, advanced by the enqueue op */
    float *queue;                      /* = queue_buf's data (device) */
    float *pending;                    /* keys of the last step, [2 max_batch][dim] (device) */
    int pending_rows;
    uint32_t *key_order;               /* Shuffle BN (host, drawn from the RNG by rank 0, broadcast): image
                                          key_order[i] of the global batch (ranks x max_batch, rank order)
                                          is row i of the shuffled key batch; rank r takes rows r n .. */
    hallu_buffer key_order_buf;        /* I32 [ranks x max_batch]: key_order uploaded for gather/scatter */

    /* Checkpoint blobs: host copies that hallu_ssl_state_get downloads into and
     * hallu_ssl_state_commit uploads from (only the blobs handed out since the
     * last commit: marked[index]). Allocated on the first get. */
    float *host_key_param, *host_key_buffer, *host_queue;
    int64_t host_queue_ptr;
    unsigned char *marked;

    /* Step statistics on the device, downloaded once when the caller asks. */
    hallu_buffer stats_buf;            /* F32 [SSL_STAT_COUNT] */

    /* planned work buffers (sizes in the method files) */
    float *buf[16];
    int num_buf;
};

float *ssl_buffer(hallu_ssl *ssl, size_t floats, const char *what, hallu_error *err);
/* A failed collective becomes the backend's failure (the step's check reports it). */
void ssl_comm_check(hallu_ssl *ssl, hallu_status s, const hallu_error *err);

/* Slots of stats_buf: the step's loss and collapse std (device floats). */
enum { SSL_STAT_LOSS = 0, SSL_STAT_COLLAPSE, SSL_STAT_COUNT };
static inline float *ssl_stat(hallu_ssl *ssl, int slot) { return hallu_buffer_f32(&ssl->stats_buf) + slot; }

hallu_status ssl_simclr_step(hallu_ssl *ssl, const hallu_nn_ctx *ctx, const float *v1, const float *v2,
                             int n, hallu_ssl_stats *st, hallu_error *err);
hallu_status ssl_moco_step(hallu_ssl *ssl, const hallu_nn_ctx *ctx, const float *v1, const float *v2,
                           int n, hallu_ssl_stats *st, hallu_error *err);
hallu_status ssl_simsiam_step(hallu_ssl *ssl, const hallu_nn_ctx *ctx, const float *v1, const float *v2,
                              int n, hallu_ssl_stats *st, hallu_error *err);
hallu_status ssl_simclr_plan(hallu_ssl *ssl, hallu_error *err);
hallu_status ssl_moco_plan(hallu_ssl *ssl, hallu_error *err);
hallu_status ssl_simsiam_plan(hallu_ssl *ssl, hallu_error *err);
/* Next Hallucinator ratio: cfg.fixed_ratio when >= 0, else U(lo, hi). */
float ssl_draw_ratio(hallu_ssl *ssl);
/* Fills the projector's layer list for cfg; returns the layer count. */
int ssl_projector_layers(const hallu_ssl_config *c, int feat, hallu_mlp_layer_spec *layers);
hallu_status ssl_moco_create(hallu_ssl *ssl, hallu_params *ps, hallu_error *err);
void ssl_moco_after_step(hallu_ssl *ssl, const hallu_nn_ctx *ctx);

/* Per-method planned buffers, by index into ssl->buf. */
enum {
    SIMCLR_IMAGES = 0, SIMCLR_FEAT, SIMCLR_FNORM, SIMCLR_NORMS, SIMCLR_DFN, SIMCLR_DF, SIMCLR_SIM,
    SIMCLR_DZ, SIMCLR_DFEAT, SIMCLR_DFN_OWN, SIMCLR_NBUF
};
enum {
    MOCO_KNORM = 0, MOCO_KNORMS, MOCO_KPOS, MOCO_QN, MOCO_QNORMS, MOCO_DQN, MOCO_DQ2, MOCO_DQ,
    MOCO_NEG, MOCO_DFEAT, MOCO_PENDING, MOCO_SHUFFLED, MOCO_KSHUF, MOCO_IMAGES_ALL, MOCO_NBUF
};
enum {
    SIMSIAM_T1 = 0, SIMSIAM_T2, SIMSIAM_DP1H, SIMSIAM_DP2H, SIMSIAM_DP1, SIMSIAM_DP2, SIMSIAM_DZ,
    SIMSIAM_DFEAT, SIMSIAM_CNORM, SIMSIAM_NBUF
};

#endif
