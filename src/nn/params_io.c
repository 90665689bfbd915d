/* hallu_params <-> safetensors, with torchvision names. */
#include "hallu/params.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct name_map {
    const char *select, *add;
} name_map;

static int selected(const name_map *map, const char *name)
{
    return !map->select || strncmp(name, map->select, strlen(map->select)) == 0;
}

static hallu_status file_name(char *out, size_t outsize, const name_map *map, const char *name,
                              hallu_error *err)
{
    const char *rest = name + (map->select ? strlen(map->select) : 0);
    int n = snprintf(out, outsize, "%s%s", map->add ? map->add : "", rest);
    if (n < 0 || (size_t)n >= outsize)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "tensor name '%s%s' too long", map->add, rest);
    return HALLU_OK;
}

static void fill_entry(hallu_st_entry *e, const hallu_tensor_info *t, const char *name, const void *data,
                       hallu_dtype dt)
{
    memset(e, 0, sizeof *e);
    e->name = name;
    e->dtype = dt;
    e->ndim = t->ndim;
    for (int d = 0; d < t->ndim; d++)
        e->shape[d] = t->shape[d];
    e->data = data;
}

/* Files are written from and read into host staging copies (hallu_params_stage):
 * the blocks themselves are device memory. */
hallu_status hallu_params_save(hallu_params *ps, const char *path, const char *select,
                               const char *add, const hallu_st_meta *meta, int num_meta, hallu_error *err)
{
    name_map map = { select && select[0] ? select : NULL, add };
    int total = ps->num_trainable + ps->num_state, count = 0;
    hallu_status s = hallu_params_stage(ps, err);
    if (s != HALLU_OK)
        return hallu_error_prefix(err, s, "saving %s", path);
    hallu_st_entry *entries = calloc((size_t)total + 1, sizeof *entries);
    char (*names)[HALLU_NAME_MAX + 64] = calloc((size_t)total + 1, sizeof *names);
    int64_t *counters = calloc((size_t)total + 1, sizeof *counters);
    s = entries && names && counters ? HALLU_OK
        : hallu_error_set(err, HALLU_ERR_OOM, "saving %s: out of memory for %d tensor entries", path, total);
    for (int i = 0; i < total && s == HALLU_OK; i++) {
        int is_state = i >= ps->num_trainable;
        const hallu_tensor_info *t = is_state ? &ps->state[i - ps->num_trainable] : &ps->trainable[i];
        if (!selected(&map, t->name))
            continue;
        s = file_name(names[count], sizeof names[count], &map, t->name, err);
        const float *src = (is_state ? ps->host_buffer : ps->host_param) + t->offset;
        if (t->flags & HALLU_TENSOR_COUNTER) {
            counters[count] = (int64_t)src[0];
            fill_entry(&entries[count], t, names[count], &counters[count], HALLU_DTYPE_I64);
        } else {
            fill_entry(&entries[count], t, names[count], src, HALLU_DTYPE_F32);
        }
        count++;
    }
    if (s == HALLU_OK)
        s = hallu_safetensors_write(path, entries, count, meta, num_meta, err);
    free(entries);
    free(names);
    free(counters);
    hallu_params_unstage(ps);
    return s;
}

static hallu_status load_one(const hallu_tensor_info *t, float *dst, const hallu_st_tensor *ft,
                             const hallu_safetensors *st, hallu_error *err)
{
    int same = ft->ndim == t->ndim;
    for (int d = 0; same && d < t->ndim; d++)
        same = ft->shape[d] == t->shape[d];
    if (!same || ft->numel != t->numel)
        return hallu_error_set(err, HALLU_ERR_FORMAT, "%s: tensor '%s' has %d dims / %lld elements, expected "
                               "%d dims / %lld (shape [%lld, %lld, %lld, %lld])", st->source ? st->source : "weights",
                               ft->name, ft->ndim, (long long)ft->numel, t->ndim, (long long)t->numel,
                               (long long)t->shape[0], (long long)t->shape[1], (long long)t->shape[2],
                               (long long)t->shape[3]);
    if ((t->flags & HALLU_TENSOR_COUNTER) && ft->dtype == HALLU_DTYPE_I64) {
        int64_t v;
        memcpy(&v, ft->data, sizeof v);
        dst[0] = (float)v;
        return HALLU_OK;
    }
    if (ft->dtype != HALLU_DTYPE_F32)
        return hallu_error_set(err, HALLU_ERR_FORMAT, "%s: tensor '%s' has dtype %s, expected F32",
                               st->source ? st->source : "weights", ft->name, hallu_dtype_name(ft->dtype));
    memcpy(dst, ft->data, (size_t)t->numel * sizeof(float));
    return HALLU_OK;
}

/* ---- loading with a report of every tensor that does not fit ---- */

/* Misfits by kind, each kind's first few kept: the report shows a few of every
 * kind (a wrong shape says more than the tenth unexpected tensor). */
enum { FIT_SHAPE, FIT_UNEXPECTED, FIT_MISSING, FIT_KINDS, FIT_SHOWN_PER_KIND = 2 };

typedef struct fit_report {
    int count, kept[FIT_KINDS];
    char text[FIT_KINDS][FIT_SHOWN_PER_KIND][200];
} fit_report;

static void shape_text(char *out, size_t n, int ndim, const int64_t *shape)
{
    size_t len = (size_t)snprintf(out, n, "[");
    for (int d = 0; d < ndim && len < n; d++)
        len += (size_t)snprintf(out + len, n - len, d ? ",%lld" : "%lld", (long long)shape[d]);
    if (len < n)
        snprintf(out + len, n - len, "]");
}

static void misfit(fit_report *r, int kind, const char *fmt, ...)
{
    r->count++;
    if (r->kept[kind] == FIT_SHOWN_PER_KIND)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->text[kind][r->kept[kind]++], sizeof r->text[0][0], fmt, ap);
    va_end(ap);
}

/* "a, b, c, ... (N more)" into out. */
static void fit_list(const fit_report *r, char *out, size_t n)
{
    size_t len = 0;
    int shown = 0;
    out[0] = '\0';
    for (int k = 0; k < FIT_KINDS; k++)
        for (int i = 0; i < r->kept[k] && len < n; i++)
            len += (size_t)snprintf(out + len, n - len, "%s%s", shown++ ? ", " : "", r->text[k][i]);
    if (shown < r->count && len < n)
        snprintf(out + len, n - len, ", ... (%d more)", r->count - shown);
}

static int has_prefix(const char *name, const char *const *prefixes)
{
    for (int i = 0; prefixes && prefixes[i]; i++)
        if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0)
            return 1;
    return 0;
}

/* The model tensor that file tensor ft would load into, or NULL. */
static const hallu_tensor_info *fit_target(const hallu_params *ps, const name_map *map, const char *fname,
                                           int *is_state)
{
    size_t addlen = map->add ? strlen(map->add) : 0;
    if (addlen && strncmp(fname, map->add, addlen) != 0)
        return NULL;
    char name[HALLU_NAME_MAX + 64];
    int n = snprintf(name, sizeof name, "%s%s", map->select ? map->select : "", fname + addlen);
    return n > 0 && (size_t)n < sizeof name ? hallu_params_find(ps, name, is_state) : NULL;
}

/* The misfit of one file tensor against its model tensor t (NULL: none). */
static void check_file_tensor(fit_report *r, const hallu_tensor_info *t, const hallu_st_tensor *ft)
{
    char got[96], want[96];
    int same = ft->ndim == t->ndim;
    for (int d = 0; same && d < t->ndim; d++)
        same = ft->shape[d] == t->shape[d];
    if (!same) {
        shape_text(got, sizeof got, ft->ndim, ft->shape);
        shape_text(want, sizeof want, t->ndim, t->shape);
        misfit(r, FIT_SHAPE, "%s is %s, expected %s", ft->name, got, want);
    } else if (ft->dtype != HALLU_DTYPE_F32 && !((t->flags & HALLU_TENSOR_COUNTER) && ft->dtype == HALLU_DTYPE_I64)) {
        misfit(r, FIT_SHAPE, "%s is %s, expected %s", ft->name, hallu_dtype_name(ft->dtype),
               t->flags & HALLU_TENSOR_COUNTER ? "I64" : "F32");
    }
}

hallu_status hallu_params_load_fit(hallu_params *ps, const hallu_safetensors *st, const hallu_params_fit *fit,
                                   hallu_error *err)
{
    name_map map = { fit->select && fit->select[0] ? fit->select : NULL, fit->add && fit->add[0] ? fit->add : NULL };
    fit_report r;
    memset(&r, 0, sizeof r);
    size_t addlen = map.add ? strlen(map.add) : 0;
    for (int i = 0; i < st->num_tensors; i++) {
        const hallu_st_tensor *ft = &st->tensors[i];
        if ((addlen && strncmp(ft->name, map.add, addlen) != 0) || has_prefix(ft->name, fit->ignore))
            continue;
        int is_state = 0;
        const hallu_tensor_info *t = fit_target(ps, &map, ft->name, &is_state);
        if (t && selected(&map, t->name))
            check_file_tensor(&r, t, ft);
        else if (!fit->allow_extra)
            misfit(&r, FIT_UNEXPECTED, "%s unexpected", ft->name);
    }
    char name[HALLU_NAME_MAX + 64];
    int total = ps->num_trainable + ps->num_state;
    for (int i = 0; i < total; i++) {
        const hallu_tensor_info *t = i < ps->num_trainable ? &ps->trainable[i] : &ps->state[i - ps->num_trainable];
        if (!selected(&map, t->name) || (t->flags & HALLU_TENSOR_COUNTER))
            continue;   /* num_batches_tracked is optional: it keeps its value */
        hallu_status s = file_name(name, sizeof name, &map, t->name, err);
        if (s != HALLU_OK)
            return s;
        if (!hallu_safetensors_find(st, name))
            misfit(&r, FIT_MISSING, "%s missing", name);
    }
    if (r.count > 0) {
        char list[HALLU_ERROR_MSG_MAX];
        fit_list(&r, list, sizeof list);
        return hallu_error_set(err, HALLU_ERR_FORMAT, "%s: %d tensor%s %s not fit %s: %s", fit->what, r.count,
                               r.count == 1 ? "" : "s", r.count == 1 ? "does" : "do", fit->target, list);
    }
    /* Everything fits: load (a missing counter keeps its value). */
    return hallu_params_load(ps, st, map.select, map.add, 0, err);
}

static hallu_status load_staged(hallu_params *ps, const hallu_safetensors *st, const char *select,
                               const char *add, int strict, hallu_error *err)
{
    name_map map = { select && select[0] ? select : NULL, add };
    int total = ps->num_trainable + ps->num_state, matched = 0;
    char name[HALLU_NAME_MAX + 64];
    for (int i = 0; i < total; i++) {
        int is_state = i >= ps->num_trainable;
        const hallu_tensor_info *t = is_state ? &ps->state[i - ps->num_trainable] : &ps->trainable[i];
        if (!selected(&map, t->name))
            continue;
        hallu_status s = file_name(name, sizeof name, &map, t->name, err);
        if (s != HALLU_OK)
            return s;
        const hallu_st_tensor *ft = hallu_safetensors_find(st, name);
        if (!ft) {
            if (strict)
                return hallu_error_set(err, HALLU_ERR_FORMAT, "%s: missing tensor '%s'",
                                       st->source ? st->source : "weights", name);
            continue;
        }
        s = load_one(t, (is_state ? ps->host_buffer : ps->host_param) + t->offset, ft, st, err);
        if (s != HALLU_OK)
            return s;
        matched++;
    }
    if (strict) {
        size_t addlen = add ? strlen(add) : 0;
        int under = 0;
        for (int i = 0; i < st->num_tensors; i++)
            under += !add || strncmp(st->tensors[i].name, add, addlen) == 0;
        if (under != matched)
            return hallu_error_set(err, HALLU_ERR_FORMAT, "%s: %d tensors under '%s' but the model takes %d "
                                   "(another architecture?)", st->source ? st->source : "weights", under,
                                   add ? add : "", matched);
    }
    return HALLU_OK;
}

/* Nothing reaches the device unless the whole load succeeds. */
hallu_status hallu_params_load(hallu_params *ps, const hallu_safetensors *st, const char *select,
                               const char *add, int strict, hallu_error *err)
{
    hallu_status s = hallu_params_stage(ps, err);
    if (s != HALLU_OK)
        return s;
    s = load_staged(ps, st, select, add, strict, err);
    if (s != HALLU_OK) {
        hallu_params_unstage(ps);
        return s;
    }
    return hallu_params_commit(ps, err);
}
