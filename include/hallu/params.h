/* Named tensors in flat blocks: every trainable parameter of a model lives in one
 * float block (param), its gradient in a second (grad) of the same layout, and
 * non-trainable state (BN running stats and counters) in a third (buffer). One
 * block makes the optimizer step, the gradient norm and an allreduce one loop.
 *
 * Lifecycle: modules register tensors (hallu_params_add*) while a model is built,
 * receiving offsets; hallu_params_alloc then allocates the blocks once, on a
 * backend. Offsets stay valid forever; device addresses are param + offset.
 * Names are torchvision's.
 *
 * The blocks are device memory (backend.h): ops take param/grad/buffer, host
 * code never dereferences them. Initialisation and files work on host copies
 * between hallu_params_stage (download) and hallu_params_commit (upload). */
#ifndef HALLU_PARAMS_H
#define HALLU_PARAMS_H

#include "hallu/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { HALLU_NAME_MAX = 96, HALLU_MAX_DIMS = 4 };

typedef enum hallu_tensor_flags {
    HALLU_TENSOR_NO_DECAY = 1 << 0,  /* bias or norm parameter: excluded from decay/LARS when asked */
    HALLU_TENSOR_COUNTER = 1 << 1,   /* integer counter kept as float, exported as I64 */
    HALLU_TENSOR_FIXED_LR = 1 << 2,  /* trained at the optimizer's fixed_lr, not the schedule's (SimSiam) */
} hallu_tensor_flags;

typedef struct hallu_tensor_info {
    char name[HALLU_NAME_MAX];
    int ndim;
    int64_t shape[HALLU_MAX_DIMS];
    int64_t numel;
    int64_t offset;          /* into param/grad (trainable) or buffer (state) */
    int flags;
} hallu_tensor_info;

typedef struct hallu_params {
    hallu_tensor_info *trainable;
    int num_trainable, cap_trainable;
    hallu_tensor_info *state;
    int num_state, cap_state;
    int64_t trainable_numel, state_numel;
    hallu_backend *be;                       /* owner of the blocks; NULL until hallu_params_alloc */
    hallu_buffer param_buf, grad_buf, buffer_buf;
    float *param, *grad, *buffer;            /* device addresses of the blocks; NULL until alloc */
    /* Host copies of param and buffer while staged (NULL otherwise). */
    float *host_param, *host_buffer;
    int staged;                              /* nesting depth of hallu_params_stage */
} hallu_params;

void hallu_params_init(hallu_params *ps);
void hallu_params_free(hallu_params *ps);

/* Registers a trainable tensor named prefix + "." + name (or name alone when
 * prefix is empty); returns its offset, or -1 with err set. */
int64_t hallu_params_add(hallu_params *ps, const char *prefix, const char *name, int flags,
                         int ndim, const int64_t *shape, hallu_error *err);
int64_t hallu_params_add_state(hallu_params *ps, const char *prefix, const char *name, int flags,
                               int ndim, const int64_t *shape, hallu_error *err);

/* Allocates param, grad and buffer (all zero) on backend be. */
hallu_status hallu_params_alloc(hallu_params *ps, hallu_backend *be, hallu_error *err);
void hallu_params_zero_grad(hallu_params *ps);

/* Host staging: the first stage downloads param and buffer into host_param and
 * host_buffer; stages nest; the matching last commit uploads them and frees the
 * copies (unstage frees them without uploading). Init code writes host_*. */
hallu_status hallu_params_stage(hallu_params *ps, hallu_error *err);
hallu_status hallu_params_commit(hallu_params *ps, hallu_error *err);
void hallu_params_unstage(hallu_params *ps);

/* Host copy of the whole gradient block (trainable_numel floats), for tests and tools. */
hallu_status hallu_params_download_grad(const hallu_params *ps, float *host, hallu_error *err);

const hallu_tensor_info *hallu_params_find(const hallu_params *ps, const char *name, int *is_state);

/* Joins prefix and name with '.' into out (truncation is an error). */
hallu_status hallu_name_join(char *out, size_t outsize, const char *prefix, const char *name,
                             hallu_error *err);

#ifdef __cplusplus
}
#endif
#endif

/* ---- safetensors bridge (torchvision names) ---- */
#ifndef HALLU_PARAMS_IO_H
#define HALLU_PARAMS_IO_H
#include "hallu/io.h"
#ifdef __cplusplus
extern "C" {
#endif

/* Saves every tensor whose name starts with `select` (NULL/"" = all) under the
 * name with `select` removed and `add` prepended (NULL = nothing). Parameters
 * and buffers are F32; counters (num_batches_tracked) are I64 as in PyTorch.
 * Reads through a host staging copy (hallu_params_stage; ps is not otherwise
 * changed; a copy already staged is what gets saved). */
hallu_status hallu_params_save(hallu_params *ps, const char *path, const char *select,
                               const char *add, const hallu_st_meta *meta, int num_meta, hallu_error *err);

/* Loads every tensor of ps whose name starts with `select` from the file tensor
 * named add + (name minus select). Shapes must match exactly; F32 (I64 for
 * counters, F32 accepted too). strict: every selected tensor must be present and
 * the file must hold no other tensor under `add`. Loads into a host staging copy
 * and commits it (uploads) only when everything loaded; on an error the device
 * copy is unchanged. */
hallu_status hallu_params_load(hallu_params *ps, const hallu_safetensors *st, const char *select,
                               const char *add, int strict, hallu_error *err);

/* Loading weights made elsewhere (a torchvision state dict, `hallu export`), with
 * a report of everything that does not fit rather than the first problem. */
typedef struct hallu_params_fit {
    const char *select;        /* the model's tensors under this prefix (NULL/"" = all) ... */
    const char *add;           /* ... read from file tensor add + (name minus select) */
    const char *const *ignore; /* NULL-terminated prefixes of file tensor names that are skipped */
    int allow_extra;           /* 1: any other file tensor is skipped too; 0: it is a misfit */
    const char *what;          /* the errors' subject, e.g. "--init r18.safetensors" */
    const char *target;        /* what the tensors must fit, e.g. "--arch resnet18 --stem cifar" */
} hallu_params_fit;

/* Every selected model tensor must be in the file with its shape and dtype F32
 * (counters: I64 or F32; a missing counter keeps its value); every file tensor
 * under `add` must be a model tensor unless ignored or allow_extra. Misfits
 * (missing, unexpected, another shape or dtype) give HALLU_ERR_FORMAT naming
 * the count and the first few, e.g. "what: 3 tensors do not fit target:
 * layer1.0.conv3.weight unexpected, layer1.0.conv1.weight is [64,64,1,1],
 * expected [64,64,3,3], ..."; then nothing is loaded. */
hallu_status hallu_params_load_fit(hallu_params *ps, const hallu_safetensors *st, const hallu_params_fit *fit,
                                   hallu_error *err);

#ifdef __cplusplus
}
#endif
#endif
