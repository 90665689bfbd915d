#include "hallu/checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int64_t entry_bytes(const hallu_st_entry *e)
{
    int64_t numel = 1;
    for (int d = 0; d < e->ndim; d++)
        numel *= e->shape[d];
    return numel * (int64_t)hallu_dtype_size(e->dtype);
}

static int cmp_entry_name(const void *a, const void *b)
{
    return strcmp((*(const hallu_st_entry *const *)a)->name, (*(const hallu_st_entry *const *)b)->name);
}

void hallu_checkpoint_checksum(const hallu_st_entry *entries, int num_entries, char out[17])
{
    const hallu_st_entry **order = malloc((size_t)(num_entries + 1) * sizeof *order);
    uint64_t h = HALLU_FNV_OFFSET;
    if (order) {
        for (int i = 0; i < num_entries; i++)
            order[i] = &entries[i];
        qsort(order, (size_t)num_entries, sizeof *order, cmp_entry_name);
        for (int i = 0; i < num_entries; i++) {
            h = hallu_fnv1a64(h, order[i]->name, strlen(order[i]->name) + 1);
            h = hallu_fnv1a64(h, order[i]->data, (size_t)entry_bytes(order[i]));
        }
        free(order);
    }
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

hallu_status hallu_checkpoint_write(const char *path, const hallu_st_entry *entries, int num_entries,
                                    const hallu_st_meta *meta, int num_meta, hallu_error *err)
{
    hallu_st_meta *all = calloc((size_t)num_meta + 3, sizeof *all);
    if (!all)
        return hallu_error_set(err, HALLU_ERR_OOM, "checkpoint %s: out of memory", path);
    char sum[17];
    hallu_checkpoint_checksum(entries, num_entries, sum);
    all[0] = (hallu_st_meta){ "format", HALLU_CHECKPOINT_FORMAT };
    all[1] = (hallu_st_meta){ "version", HALLU_CHECKPOINT_VERSION };
    all[2] = (hallu_st_meta){ "checksum", sum };
    for (int i = 0; i < num_meta; i++)
        all[3 + i] = meta[i];
    hallu_status s = hallu_safetensors_write(path, entries, num_entries, all, num_meta + 3, err);
    free(all);
    return s;
}

hallu_status hallu_checkpoint_open(hallu_safetensors *st, const char *path, hallu_error *err)
{
    hallu_status s = hallu_safetensors_open(st, path, err);
    if (s != HALLU_OK)
        return s;
    const char *format = hallu_safetensors_meta(st, "format");
    const char *version = hallu_safetensors_meta(st, "version");
    const char *sum = hallu_safetensors_meta(st, "checksum");
    if (!format || strcmp(format, HALLU_CHECKPOINT_FORMAT) != 0 || !version || !sum) {
        hallu_safetensors_close(st);
        return hallu_error_set(err, HALLU_ERR_FORMAT, "%s: not a hallu checkpoint (metadata format='%s')", path,
                               format ? format : "(none)");
    }
    if (strcmp(version, HALLU_CHECKPOINT_VERSION) != 0) {
        hallu_safetensors_close(st);
        return hallu_error_set(err, HALLU_ERR_FORMAT, "%s: checkpoint version %s, this build reads version %s",
                               path, version, HALLU_CHECKPOINT_VERSION);
    }
    hallu_st_entry *entries = calloc((size_t)st->num_tensors + 1, sizeof *entries);
    if (!entries) {
        hallu_safetensors_close(st);
        return hallu_error_set(err, HALLU_ERR_OOM, "%s: out of memory verifying the checksum", path);
    }
    for (int i = 0; i < st->num_tensors; i++) {
        const hallu_st_tensor *t = &st->tensors[i];
        entries[i] = (hallu_st_entry){ .name = t->name, .dtype = t->dtype, .ndim = t->ndim, .data = t->data };
        memcpy(entries[i].shape, t->shape, sizeof t->shape);
    }
    char actual[17];
    hallu_checkpoint_checksum(entries, st->num_tensors, actual);
    free(entries);
    if (strcmp(actual, sum) != 0) {
        hallu_safetensors_close(st);
        return hallu_error_set(err, HALLU_ERR_FORMAT, "%s: checksum mismatch (file says %s, contents give %s): "
                               "the checkpoint is corrupt", path, sum, actual);
    }
    return HALLU_OK;
}

hallu_status hallu_checkpoint_load_backbone(const char *path, hallu_backend *be, hallu_resnet_config *cfg,
                                            hallu_params *ps, hallu_resnet **net, hallu_error *err)
{
    hallu_safetensors st;
    memset(&st, 0, sizeof st);
    hallu_status s = hallu_checkpoint_open(&st, path, err);
    if (s != HALLU_OK)
        return s;
    const char *arch = hallu_safetensors_meta(&st, "arch"), *stem = hallu_safetensors_meta(&st, "stem");
    if (!arch || !stem)
        s = hallu_error_set(err, HALLU_ERR_FORMAT, "%s: checkpoint metadata lacks arch/stem", path);
    if (s == HALLU_OK)
        s = hallu_resnet_parse_arch(arch, stem, cfg, err);
    if (s == HALLU_OK)
        s = hallu_resnet_create(net, cfg, ps, "", err);
    if (s == HALLU_OK)
        s = hallu_params_alloc(ps, be, err);
    if (s == HALLU_OK)
        s = hallu_params_load(ps, &st, NULL, "model.encoder.", 1, err);
    hallu_safetensors_close(&st);
    return s;
}
