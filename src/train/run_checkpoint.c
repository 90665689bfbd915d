/* Saving and restoring everything a bit-exact resume needs: model parameters and
 * BN state, optimizer state, the method's extra state (key encoder, queue,
 * Hallucinator RNG) and the position in the run. */
#include "train_internal.h"
#include "hallu/checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry_list {
    hallu_st_entry *items;
    char (*names)[HALLU_NAME_MAX + 32];
    int64_t *counters;
    int count, cap;
} entry_list;

static hallu_st_entry *entry_add(entry_list *l, const char *prefix, const char *name, hallu_dtype dt, int ndim,
                                 const int64_t *shape, const void *data)
{
    hallu_st_entry *e = &l->items[l->count];
    snprintf(l->names[l->count], sizeof l->names[0], "%s%s", prefix, name);
    *e = (hallu_st_entry){ .name = l->names[l->count], .dtype = dt, .ndim = ndim, .data = data };
    for (int d = 0; d < ndim; d++)
        e->shape[d] = shape[d];
    l->count++;
    return e;
}

/* The model's tensors from its host staging copy (ps must be staged until the
 * entries are written). */
static void add_params(entry_list *l, const hallu_params *ps)
{
    for (int i = 0; i < ps->num_trainable; i++) {
        const hallu_tensor_info *t = &ps->trainable[i];
        entry_add(l, "model.", t->name, HALLU_DTYPE_F32, t->ndim, t->shape, ps->host_param + t->offset);
    }
    for (int i = 0; i < ps->num_state; i++) {
        const hallu_tensor_info *t = &ps->state[i];
        if (t->flags & HALLU_TENSOR_COUNTER) {
            l->counters[l->count] = (int64_t)ps->host_buffer[t->offset];
            entry_add(l, "model.", t->name, HALLU_DTYPE_I64, t->ndim, t->shape, &l->counters[l->count]);
        } else {
            entry_add(l, "model.", t->name, HALLU_DTYPE_F32, t->ndim, t->shape, ps->host_buffer + t->offset);
        }
    }
}

hallu_status train_save_checkpoint(train_run *run, const char *path, hallu_error *err)
{
    int nstate = hallu_ssl_state_count(run->ssl);
    int cap = run->ps.num_trainable + run->ps.num_state + nstate + 4;
    entry_list l = { .items = calloc((size_t)cap, sizeof *l.items), .names = calloc((size_t)cap, sizeof *l.names),
                     .counters = calloc((size_t)cap, sizeof *l.counters), .cap = cap };
    hallu_status s = l.items && l.names && l.counters ? HALLU_OK
        : hallu_error_set(err, HALLU_ERR_OOM, "checkpoint %s: out of memory for %d entries", path, cap);
    /* The model's parameters and buffers come off the device into a host copy. */
    int staged = s == HALLU_OK && (s = hallu_params_stage(&run->ps, err)) == HALLU_OK;
    if (s == HALLU_OK)
        add_params(&l, &run->ps);
    int64_t opt_numel = run->opt->n * run->opt->num_slots, one = 1;
    float *opt_host = NULL;   /* the optimizer state is device memory: a host copy to write */
    if (s == HALLU_OK && opt_numel > 0) {
        opt_host = hallu_alloc((size_t)opt_numel * sizeof(float), "optimizer state copy", err);
        s = opt_host ? hallu_optim_state_download(run->opt, opt_host, err) : err->code;
    }
    if (s == HALLU_OK && opt_numel > 0)
        entry_add(&l, "", "optim.state", HALLU_DTYPE_F32, 1, &opt_numel, opt_host);
    if (s == HALLU_OK)
        entry_add(&l, "", "optim.step", HALLU_DTYPE_I64, 1, &one, &run->opt->step);
    for (int i = 0; i < nstate && s == HALLU_OK; i++) {
        hallu_ssl_blob blob;
        s = hallu_ssl_state_get(run->ssl, i, &blob, err);
        if (s == HALLU_OK)
            entry_add(&l, "", blob.name, blob.dtype, blob.ndim, blob.shape, blob.data);
    }
    int64_t position[3] = { run->epoch, run->step_in_epoch, run->global_step }, three = 3;
    if (s == HALLU_OK)
        entry_add(&l, "", "train.position", HALLU_DTYPE_I64, 1, &three, position);
    char epoch[32], step[32], best[40], floor[40];
    snprintf(epoch, sizeof epoch, "%d", run->epoch);
    snprintf(step, sizeof step, "%lld", (long long)run->global_step);
    snprintf(best, sizeof best, "%.17g", run->best_knn_top1);
    snprintf(floor, sizeof floor, "%.17g", run->knn_floor_top1);
    hallu_st_meta meta[] = {
        { "config", run->config_json }, { "arch", run->cfg->arch }, { "stem", run->cfg->stem },
        { "method", run->cfg->method }, { "epoch", epoch }, { "step", step }, { "best_knn_top1", best },
        { "knn_floor_top1", floor }, { "init", run->init_path },   /* last: only when --init was given */
    };
    int num_meta = (int)(sizeof meta / sizeof meta[0]) - (run->init_path[0] ? 0 : 1);
    if (s == HALLU_OK)
        s = hallu_checkpoint_write(path, l.items, l.count, meta, num_meta, err);
    if (staged)
        hallu_params_unstage(&run->ps);
    free(l.items);
    free(l.names);
    free(l.counters);
    hallu_free(opt_host);
    return s;
}

static hallu_status restore_extra(train_run *run, const hallu_safetensors *st, const char *path, hallu_error *err)
{
    int64_t opt_numel = run->opt->n * run->opt->num_slots;
    float *opt_host = opt_numel > 0 ? hallu_alloc((size_t)opt_numel * sizeof(float), "optimizer state copy", err)
                                    : NULL;
    hallu_status s = opt_numel > 0 && !opt_host ? err->code : HALLU_OK;
    if (s == HALLU_OK && opt_numel > 0)
        s = hallu_safetensors_copy(st, "optim.state", HALLU_DTYPE_F32, opt_host, opt_numel, err);
    if (s == HALLU_OK && opt_numel > 0)
        s = hallu_optim_state_upload(run->opt, opt_host, err);
    hallu_free(opt_host);
    if (s == HALLU_OK)
        s = hallu_safetensors_copy(st, "optim.step", HALLU_DTYPE_I64, &run->opt->step, 1, err);
    int nstate = hallu_ssl_state_count(run->ssl);
    for (int i = 0; i < nstate && s == HALLU_OK; i++) {
        hallu_ssl_blob blob;
        s = hallu_ssl_state_get(run->ssl, i, &blob, err);
        size_t esize = hallu_dtype_size(blob.dtype);
        if (s == HALLU_OK)
            s = hallu_safetensors_copy(st, blob.name, blob.dtype, blob.data, (int64_t)(blob.nbytes / esize), err);
    }
    if (s == HALLU_OK)
        s = hallu_ssl_state_commit(run->ssl, err);
    int64_t position[3];
    if (s == HALLU_OK)
        s = hallu_safetensors_copy(st, "train.position", HALLU_DTYPE_I64, position, 3, err);
    if (s == HALLU_OK && (position[0] < 0 || position[1] < 0 || position[2] < 0 ||
                          position[2] != position[0] * run->steps_per_epoch + position[1]))
        s = hallu_error_set(err, HALLU_ERR_FORMAT, "%s: position epoch %lld step %lld/%lld does not fit %lld steps "
                            "per epoch", path, (long long)position[0], (long long)position[1], (long long)position[2],
                            (long long)run->steps_per_epoch);
    if (s == HALLU_OK) {
        run->epoch = (int)position[0];
        run->step_in_epoch = position[1];
        run->global_step = position[2];
    }
    return s;
}

/* A recorded kNN top-1 (-1: none): the best so far, so that --keep-best after a
 * resume only replaces a better checkpoint_best.hlu, and the untrained floor that
 * the end of the run compares with; checkpoints from before they were recorded
 * have none. */
static hallu_status restore_percent(const hallu_safetensors *st, const char *key, double *out, const char *path,
                                    hallu_error *err)
{
    const char *text = hallu_safetensors_meta(st, key);
    if (!text) {
        *out = -1;
        return HALLU_OK;
    }
    char *end = NULL;
    double v = strtod(text, &end);
    if (end == text || *end != '\0' || !(v >= -1 && v <= 100))
        return hallu_error_set(err, HALLU_ERR_FORMAT, "%s: %s '%.40s' is not a percentage", path, key, text);
    *out = v;
    return HALLU_OK;
}

hallu_status train_load_checkpoint(train_run *run, hallu_error *err)
{
    const char *path = run->path_checkpoint;
    hallu_safetensors st;
    memset(&st, 0, sizeof st);
    hallu_status s = hallu_checkpoint_open(&st, path, err);
    if (s != HALLU_OK)
        return s;
    const char *saved = hallu_safetensors_meta(&st, "config");
    if (!saved || strcmp(saved, run->config_json) != 0)
        s = hallu_error_set(err, HALLU_ERR_INVALID_ARG, "--resume: %s was written with another configuration; "
                            "resume with the same flags.\n  checkpoint: %.700s\n  now:        %.700s", path,
                            saved ? saved : "(none)", run->config_json);
    if (s == HALLU_OK)
        s = hallu_params_load(&run->ps, &st, NULL, "model.", 1, err);
    if (s == HALLU_OK)
        s = restore_extra(run, &st, path, err);
    if (s == HALLU_OK)
        s = restore_percent(&st, "best_knn_top1", &run->best_knn_top1, path, err);
    if (s == HALLU_OK)
        s = restore_percent(&st, "knn_floor_top1", &run->knn_floor_top1, path, err);
    if (s == HALLU_OK)
        s = train_check_resumed_init(run, hallu_safetensors_meta(&st, "init"), err);
    hallu_safetensors_close(&st);
    return s;
}
