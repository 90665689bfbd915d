/* Optimizers over one flat parameter buffer, learning-rate schedules and
 * gradient clipping, with PyTorch's float32 semantics (torch 1.13).
 *
 * The parameters are one float block `param` with its gradient `grad` of the
 * same layout (see hallu/params.h). A list of ranges [offset, offset + count)
 * describes the tensors: per-tensor norms (LARS) are taken per range, and a
 * range flagged HALLU_RANGE_NO_DECAY (a bias or norm parameter) is excluded
 * from weight decay and from LARS adaptation when the config asks for it.
 * Elements outside every range are never touched (frozen).
 *
 * Update rules, per element, g = grad, p = param, lr = the step's learning rate:
 *
 * SGD (torch.optim.SGD):
 *   d = g + wd * p                       (when wd != 0)
 *   momentum != 0:  b = d on the first step, else b = momentum * b + (1 - dampening) * d
 *                   d = nesterov ? d + momentum * b : b
 *   p = p - lr * d
 *
 * LARS (solo-learn's solo/utils/lars.py, the SimCLR/BYOL wrapper), per range:
 *   if the range is adapted (not NO_DECAY, or exclude_bias_norm off) and
 *      ||p|| != 0 and ||g|| != 0:
 *        r = eta * ||p|| / (||g|| + wd * ||p|| + eps)       (float32 scalar)
 *        if clip_lr: r = min(r / lr, 1)
 *        d = (g + wd * p) * r
 *   else:
 *        d = g           (no weight decay at all, as solo-learn: an excluded
 *                         bias/BN parameter, or a zero weight or gradient norm)
 *   then momentum, nesterov and p = p - lr * d exactly as SGD above.
 *   Norms are Euclidean over the range, accumulated in double.
 *
 * AdamW (torch.optim.AdamW, amsgrad off), t = step number from 1:
 *   p = p * (1 - lr * wd)
 *   m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g * g
 *   p = p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 *
 * With exclude_bias_norm set, NO_DECAY ranges use wd = 0 in SGD and AdamW (as a
 * separate PyTorch param group with weight_decay 0), and skip adaptation and
 * decay in LARS. Scalar coefficients are computed in double from the double lr,
 * as Python does, and rounded to float where PyTorch rounds them.
 *
 * Everything is deterministic: elementwise loops may run in parallel, and norms
 * are summed in a fixed chunk order independent of the thread count.
 *
 * Parameters, gradients and the optimizer's state are device memory of the
 * optimizer's backend (hallu/backend.h): the updates run as backend ops, and
 * host code reads the state only through hallu_optim_state_download. */
#ifndef HALLU_OPTIM_H
#define HALLU_OPTIM_H

#include "hallu/backend.h"
#include "hallu/core.h"
#include "hallu/params.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Same bits as HALLU_TENSOR_NO_DECAY / HALLU_TENSOR_FIXED_LR, so a tensor's
 * flags can be copied over. A FIXED_LR range steps with cfg.fixed_lr instead of
 * the step's lr when cfg.fixed_lr > 0 (SimSiam's constant predictor lr: a
 * PyTorch param group whose lr the schedule leaves alone). */
enum { HALLU_RANGE_NO_DECAY = 1 << 0, HALLU_RANGE_FIXED_LR = 1 << 2 };

typedef struct hallu_param_range {
    int64_t offset, count;
    int flags;
} hallu_param_range;

typedef enum hallu_optim_kind { HALLU_OPTIM_SGD = 0, HALLU_OPTIM_LARS, HALLU_OPTIM_ADAMW } hallu_optim_kind;

typedef struct hallu_optim_config {
    /* Scalars are doubles like Python's: PyTorch rounds them to float only
     * where they meet a tensor, and uses them in double elsewhere (e.g. beta^t). */
    hallu_optim_kind kind;
    double momentum;          /* SGD/LARS; 0 = plain SGD (no state) */
    double dampening;         /* SGD/LARS; must be 0 with nesterov */
    int nesterov;             /* SGD/LARS */
    double weight_decay;
    int exclude_bias_norm;    /* NO_DECAY ranges: no decay (all), no LARS adaptation */
    double lars_eta;          /* trust coefficient: 0.02 (solo-learn SimCLR) or 0.001 */
    double lars_eps;          /* 1e-8 */
    int lars_clip_lr;         /* solo-learn's clip_lr */
    double beta1, beta2, eps; /* AdamW: 0.9, 0.999, 1e-8 */
    double fixed_lr;          /* > 0: the lr of HALLU_RANGE_FIXED_LR ranges; 0 = off */
} hallu_optim_config;

/* Defaults per kind: SGD momentum 0.9; LARS momentum 0.9, eta 0.02, eps 1e-8,
 * exclude_bias_norm on; AdamW betas (0.9, 0.999), eps 1e-8, weight decay 0.01.
 * Weight decay is 0 for SGD and LARS. */
void hallu_optim_config_default(hallu_optim_config *cfg, hallu_optim_kind kind);
/* "sgd", "lars" or "adamw" -> that kind's defaults. */
hallu_status hallu_optim_parse(const char *name, hallu_optim_config *cfg, hallu_error *err);
const char *hallu_optim_kind_name(hallu_optim_kind kind);
/* Rejects values PyTorch rejects (negative momentum, nesterov with dampening, ...). */
hallu_status hallu_optim_config_check(const hallu_optim_config *cfg, hallu_error *err);

/* The optimizer: config, a private copy of the ranges, and all state in one
 * device block: SGD/LARS with momentum: [momentum_buffer (n)]; AdamW: [exp_avg (n),
 * exp_avg_sq (n)]. step counts completed steps, on the host (a checkpoint
 * restores it with the state; step 0 means "momentum buffers not yet initialised"). */
typedef struct hallu_optimizer {
    hallu_optim_config cfg;
    hallu_backend *be;
    int64_t n;
    hallu_param_range *ranges;   /* sorted by offset, owned */
    int num_ranges;
    hallu_buffer state;          /* num_slots * n floats (device) */
    hallu_buffer lars;           /* LARS: 2 floats per range, the trust ratios of the step (device) */
    int num_slots;
    int64_t step;
} hallu_optimizer;

/* ranges may be NULL (num_ranges 0): then one range [0, n) without flags.
 * Ranges must lie in [0, n) and not overlap. State starts at zero, on be. */
hallu_status hallu_optim_init(hallu_optimizer *o, hallu_backend *be, const hallu_optim_config *cfg, int64_t n,
                              const hallu_param_range *ranges, int num_ranges, hallu_error *err);
/* Safe on a zeroed or already freed optimizer. */
void hallu_optim_free(hallu_optimizer *o);
/* One step with learning rate lr (from a schedule); param and grad are device
 * addresses of the optimizer's backend. Failures are the backend's (check it). */
void hallu_optim_step(hallu_optimizer *o, float *param, const float *grad, double lr);

/* State slots for checkpoints: name ("momentum_buffer", "exp_avg",
 * "exp_avg_sq") and the DEVICE address of its n floats; slot in [0, o->num_slots). */
const char *hallu_optim_slot_name(const hallu_optimizer *o, int slot);
float *hallu_optim_slot(const hallu_optimizer *o, int slot);
/* All state (num_slots * n floats, slot after slot) to or from host memory. */
hallu_status hallu_optim_state_download(const hallu_optimizer *o, float *host, hallu_error *err);
hallu_status hallu_optim_state_upload(hallu_optimizer *o, const float *host, hallu_error *err);

/* Convenience over hallu_params: one range per trainable tensor, with its
 * NO_DECAY flag, on the params' backend (ps->be: allocate the params first).
 * create allocates the struct; free accepts NULL. */
hallu_status hallu_optimizer_create(hallu_optimizer **out, const hallu_optim_config *cfg,
                                    const hallu_params *ps, hallu_error *err);
void hallu_optimizer_free(hallu_optimizer *o);
void hallu_optimizer_step(hallu_optimizer *o, hallu_params *ps, double lr);

/* ---- learning-rate schedules (per step) ------------------------------------------
 * Warm-up (any kind, when warmup_steps > 0): lr = base_lr * (step + 1) / warmup_steps
 * for step < warmup_steps (torch LinearLR(start_factor = 1/W, total_iters = W - 1)).
 * After warm-up, with t = step - warmup_steps:
 *   CONSTANT:  base_lr
 *   COSINE:    min_lr + (base_lr - min_lr) * (1 + cos(pi * t / T)) / 2, T = total_steps -
 *              warmup_steps; min_lr once t >= T (torch CosineAnnealingLR(T_max = T))
 *   MULTISTEP: base_lr * gamma^k, k = number of milestones <= step (absolute
 *              steps, sorted; torch MultiStepLR) */
enum { HALLU_LR_MAX_MILESTONES = 16 };

typedef enum hallu_lr_kind { HALLU_LR_CONSTANT = 0, HALLU_LR_COSINE, HALLU_LR_MULTISTEP } hallu_lr_kind;

typedef struct hallu_lr_schedule {
    hallu_lr_kind kind;
    double base_lr;
    int64_t warmup_steps;
    int64_t total_steps;     /* COSINE */
    double min_lr;           /* COSINE */
    int64_t milestones[HALLU_LR_MAX_MILESTONES];   /* MULTISTEP */
    int num_milestones;
    double gamma;            /* MULTISTEP */
} hallu_lr_schedule;

hallu_status hallu_lr_schedule_check(const hallu_lr_schedule *s, hallu_error *err);
double hallu_lr_at(const hallu_lr_schedule *s, int64_t step);

/* ---- gradient clipping ------------------------------------------------------------ */

/* *norm_dev = Euclidean norm of x[0..n), summed in double in a fixed order and
 * rounded to float; x and norm_dev are device addresses of be (the norm stays
 * on the device until someone downloads it). */
void hallu_l2_norm(hallu_backend *be, float *norm_dev, const float *x, int64_t n);
/* torch.nn.utils.clip_grad_norm_(max_norm, norm_type=2) over the whole buffer:
 * total = ||grad||; if max_norm / (total + 1e-6) < 1, grad *= that factor.
 * total (before clipping) is written to the device float total_norm_dev. */
void hallu_clip_grad_norm(hallu_backend *be, float *grad, float *total_norm_dev, int64_t n, float max_norm);

#ifdef __cplusplus
}
#endif
#endif
