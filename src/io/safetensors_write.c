/* safetensors writer: header first (offsets are known from the shapes), then
 * the tensors' bytes streamed through one atomic file. */
#include "io_internal.h"

#include <string.h>

static hallu_status entry_nbytes(const char *path, const hallu_st_entry *e, uint64_t *nbytes,
                                 hallu_error *err)
{
    if (!e->name)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "safetensors write %s: tensor with NULL name", path);
    if (e->dtype != HALLU_DTYPE_F32 && e->dtype != HALLU_DTYPE_I64 && e->dtype != HALLU_DTYPE_I32)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                               "safetensors write %s: tensor '%s' has dtype %d; the writer takes F32, I64, I32",
                               path, e->name, (int)e->dtype);
    if (e->ndim < 0 || e->ndim > HALLU_ST_MAX_DIMS)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "safetensors write %s: tensor '%s' has ndim %d (0..%d)",
                               path, e->name, e->ndim, HALLU_ST_MAX_DIMS);
    uint64_t numel = 1;
    for (int d = 0; d < e->ndim; d++) {
        if (e->shape[d] < 0)
            return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "safetensors write %s: tensor '%s' dim %d is %lld",
                                   path, e->name, d, (long long)e->shape[d]);
        if (e->shape[d] != 0 && numel > (uint64_t)INT64_MAX / (uint64_t)e->shape[d])
            return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "safetensors write %s: tensor '%s' is too large",
                                   path, e->name);
        numel *= (uint64_t)e->shape[d];
    }
    size_t es = hallu_dtype_size(e->dtype);
    if (numel > (uint64_t)INT64_MAX / es)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "safetensors write %s: tensor '%s' is too large", path,
                               e->name);
    *nbytes = numel * es;
    if (*nbytes && !e->data)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "safetensors write %s: tensor '%s' has NULL data", path,
                               e->name);
    return HALLU_OK;
}

static hallu_status check_names(const char *path, const hallu_st_entry *t, int n, const hallu_st_meta *meta,
                                int num_meta, hallu_error *err)
{
    for (int i = 0; i < n; i++) {
        if (t[i].name && strcmp(t[i].name, "__metadata__") == 0)
            return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                                   "safetensors write %s: '__metadata__' is reserved, not a tensor name", path);
        for (int j = 0; j < i; j++)
            if (t[i].name && t[j].name && strcmp(t[i].name, t[j].name) == 0)
                return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                                       "safetensors write %s: duplicate tensor name '%s'", path, t[i].name);
    }
    for (int i = 0; i < num_meta; i++) {
        if (!meta[i].key || !meta[i].value)
            return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "safetensors write %s: metadata entry %d is NULL",
                                   path, i);
        for (int j = 0; j < i; j++)
            if (strcmp(meta[i].key, meta[j].key) == 0)
                return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                                       "safetensors write %s: duplicate metadata key '%s'", path, meta[i].key);
    }
    return HALLU_OK;
}

static void header_metadata(io_strbuf *sb, const hallu_st_meta *meta, int num_meta)
{
    io_sb_puts(sb, "\"__metadata__\":{");
    for (int i = 0; i < num_meta; i++) {
        if (i)
            io_sb_puts(sb, ",");
        io_sb_json_string(sb, meta[i].key);
        io_sb_puts(sb, ":");
        io_sb_json_string(sb, meta[i].value);
    }
    io_sb_puts(sb, "}");
}

static void header_tensor(io_strbuf *sb, const hallu_st_entry *e, uint64_t begin, uint64_t end)
{
    io_sb_json_string(sb, e->name);
    io_sb_printf(sb, ":{\"dtype\":\"%s\",\"shape\":[", hallu_dtype_name(e->dtype));
    for (int d = 0; d < e->ndim; d++)
        io_sb_printf(sb, d ? ",%lld" : "%lld", (long long)e->shape[d]);
    io_sb_printf(sb, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)begin, (unsigned long long)end);
}

/* Builds the padded JSON header; the tensors' byte sizes go into nbytes. */
static hallu_status build_header(io_strbuf *sb, const char *path, const hallu_st_entry *t, int n,
                                 const hallu_st_meta *meta, int num_meta, uint64_t *nbytes, hallu_error *err)
{
    io_sb_puts(sb, "{");
    if (num_meta > 0)
        header_metadata(sb, meta, num_meta);
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        hallu_status s = entry_nbytes(path, &t[i], &nbytes[i], err);
        if (s != HALLU_OK)
            return s;
        if (i || num_meta > 0)
            io_sb_puts(sb, ",");
        header_tensor(sb, &t[i], off, off + nbytes[i]);
        off += nbytes[i];
    }
    io_sb_puts(sb, "}");
    /* Spaces after the JSON are valid padding: 8-byte length + header lands on 8. */
    while (!sb->oom && sb->len % 8 != 0)
        io_sb_puts(sb, " ");
    if (sb->oom)
        return hallu_error_set(err, HALLU_ERR_OOM, "safetensors write %s: out of memory for the header", path);
    return HALLU_OK;
}

static hallu_status write_file(const char *path, const io_strbuf *sb, const hallu_st_entry *t, int n,
                               const uint64_t *nbytes, hallu_error *err)
{
    unsigned char len_le[8];
    for (int i = 0; i < 8; i++)
        len_le[i] = (unsigned char)((uint64_t)sb->len >> (8 * i));
    hallu_atomic_file f;
    hallu_status s = hallu_atomic_begin(&f, path, err);
    if (s != HALLU_OK)
        return s;
    s = hallu_atomic_append(&f, len_le, 8, err);
    if (s == HALLU_OK)
        s = hallu_atomic_append(&f, sb->p, sb->len, err);
    for (int i = 0; i < n && s == HALLU_OK; i++)
        s = hallu_atomic_append(&f, t[i].data, (size_t)nbytes[i], err);
    if (s != HALLU_OK) {
        hallu_atomic_abort(&f);
        return s;
    }
    return hallu_atomic_commit(&f, err);
}

hallu_status hallu_safetensors_write(const char *path, const hallu_st_entry *tensors, int num_tensors,
                                     const hallu_st_meta *meta, int num_meta, hallu_error *err)
{
    if (num_tensors < 0 || num_meta < 0 || (num_tensors > 0 && !tensors) || (num_meta > 0 && !meta))
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "safetensors write %s: bad tensor/metadata list",
                               path ? path : "(null)");
    hallu_status s = check_names(path, tensors, num_tensors, meta, num_meta, err);
    if (s != HALLU_OK)
        return s;
    uint64_t *nbytes = hallu_calloc((size_t)num_tensors * sizeof *nbytes + 8, "safetensors sizes", err);
    if (!nbytes)
        return HALLU_ERR_OOM;
    io_strbuf sb = {0};
    s = build_header(&sb, path, tensors, num_tensors, meta, num_meta, nbytes, err);
    if (s == HALLU_OK)
        s = write_file(path, &sb, tensors, num_tensors, nbytes, err);
    io_sb_free(&sb);
    hallu_free(nbytes);
    return s;
}
