/* The trainer's data-parallel parts: agreeing across ranks (statuses, stop
 * requests, configuration, data, replicated weights) and averaging gradients.
 * With one rank (the "single" communicator) every call is a no-op or the
 * identity, so the loop is the same code for one process and for N. */
#include "train_internal.h"

#include <stdio.h>
#include <string.h>

hallu_status train_agree(train_run *run, hallu_status mine, hallu_error *err)
{
    return hallu_comm_agree(run->comm, mine, err);
}

int train_stop_agreed(train_run *run, int mine, hallu_error *err, hallu_status *s)
{
    if (run->comm->size == 1)
        return mine;
    int64_t flag = mine != 0;
    hallu_status c = run->comm->ops->host_allreduce_i64(run->comm, &flag, 1, HALLU_REDUCE_MAX, err);
    if (c != HALLU_OK)
        *s = c;
    return flag != 0;
}

/* Gradient all-reduce in buckets (DDP's 25 MB by default): each bucket is one
 * collective; the mean over ranks is what one process with the global batch
 * computes, as every rank's loss is the mean over its own rows. */
void train_allreduce_grads(train_run *run)
{
    hallu_comm_allreduce_mean_f32(run->comm, run->be, run->ps.grad, run->ps.trainable_numel, run->bucket_floats,
                                  "gradient all-reduce");
}

/* Rank 0's configuration is authoritative: every rank must have built the
 * same recorded config and see a training set of the same size, image size
 * and content at its ends (the first and last images' pixels and labels). */
hallu_status train_check_same_setup(train_run *run, hallu_error *err)
{
    if (run->comm->size == 1)
        return HALLU_OK;
    uint64_t config = hallu_fnv1a64(HALLU_FNV_OFFSET, run->config_json, strlen(run->config_json));
    hallu_status s = hallu_comm_check_same(run->comm, config, "the configuration (flags)", err);
    if (s != HALLU_OK)
        return s;
    const hallu_source *src = &run->train_src;
    int64_t shape[4] = { src->size, src->image_h, src->image_w, run->steps_per_epoch };
    uint64_t data = hallu_fnv1a64(HALLU_FNV_OFFSET, shape, sizeof shape);
    hallu_status mine = HALLU_OK;
    hallu_error local;
    hallu_error_clear(&local);
    hallu_image img = { 0 };
    for (int k = 0; k < 2 && mine == HALLU_OK; k++) {
        int64_t index = k == 0 ? 0 : src->size - 1;
        int32_t label = -1;
        mine = hallu_source_read(src, index, &img, &label, &local);
        if (mine == HALLU_OK) {
            data = hallu_fnv1a64(data, img.data, (size_t)img.h * img.w * 3);
            data = hallu_fnv1a64(data, &label, sizeof label);
        }
    }
    hallu_free(img.data);
    if (mine != HALLU_OK)
        *err = local;
    s = train_agree(run, mine, err);
    return s == HALLU_OK ? hallu_comm_check_same(run->comm, data, "the training data (--data: size, image size, or "
                                                 "the first and last images differ)", err) : s;
}

/* Replicated state must stay replicated: the same parameters and buffers on
 * every rank (checked where a checkpoint is written). */
hallu_status train_check_replicas(train_run *run, hallu_error *err)
{
    if (run->comm->size == 1)
        return HALLU_OK;
    hallu_status s = hallu_params_stage(&run->ps, err);
    uint64_t h = HALLU_FNV_OFFSET;
    if (s == HALLU_OK) {
        h = hallu_fnv1a64(h, run->ps.host_param, (size_t)run->ps.trainable_numel * sizeof(float));
        h = hallu_fnv1a64(h, run->ps.host_buffer, (size_t)run->ps.state_numel * sizeof(float));
        hallu_params_unstage(&run->ps);
    }
    s = train_agree(run, s, err);
    if (s != HALLU_OK)
        return s;
    char what[96];
    snprintf(what, sizeof what, "the weights after step %lld (replicas drifted apart)", (long long)run->global_step);
    return hallu_comm_check_same(run->comm, h, what, err);
}
