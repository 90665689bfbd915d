/* .npy writer, format version 1.0: magic, version, u16 header length, a Python
 * dict literal padded with spaces and '\n' so the data starts on 64 bytes. */
#include "io_internal.h"

#include <string.h>

static const char *npy_descr(hallu_dtype dt)
{
    switch (dt) {
    case HALLU_DTYPE_F32: return "<f4";
    case HALLU_DTYPE_I32: return "<i4";
    case HALLU_DTYPE_I64: return "<i8";
    default: return NULL;
    }
}

static hallu_status npy_numel(const char *path, int ndim, const int64_t *shape, uint64_t *numel,
                              hallu_error *err)
{
    if (ndim < 0 || ndim > 32 || (ndim > 0 && !shape))
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "npy write %s: ndim %d (0..32)", path, ndim);
    *numel = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0)
            return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "npy write %s: dim %d is %lld", path, d,
                                   (long long)shape[d]);
        if (shape[d] && *numel > (uint64_t)INT64_MAX / 8 / (uint64_t)shape[d])
            return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "npy write %s: array too large", path);
        *numel *= (uint64_t)shape[d];
    }
    return HALLU_OK;
}

static void npy_header(io_strbuf *sb, const char *descr, int ndim, const int64_t *shape)
{
    static const char magic[8] = {'\x93', 'N', 'U', 'M', 'P', 'Y', 1, 0};
    io_sb_append(sb, magic, 8);
    io_sb_append(sb, "\0\0", 2);   /* header length, patched below */
    io_sb_printf(sb, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int d = 0; d < ndim; d++)
        io_sb_printf(sb, d ? ", %lld" : "%lld", (long long)shape[d]);
    io_sb_puts(sb, ndim == 1 ? ",), }" : "), }");
    while (!sb->oom && (sb->len + 1) % 64 != 0)
        io_sb_puts(sb, " ");
    io_sb_puts(sb, "\n");
    if (!sb->oom) {
        size_t hlen = sb->len - 10;
        sb->p[8] = (char)(hlen & 0xff);
        sb->p[9] = (char)(hlen >> 8);
    }
}

hallu_status hallu_npy_write(const char *path, hallu_dtype dtype, int ndim, const int64_t *shape, const void *data,
                             hallu_error *err)
{
    const char *descr = npy_descr(dtype);
    if (!descr)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "npy write %s: dtype %s (expected F32, I32 or I64)", path,
                               hallu_dtype_name(dtype));
    uint64_t numel = 0;
    hallu_status s = npy_numel(path, ndim, shape, &numel, err);
    if (s != HALLU_OK)
        return s;
    uint64_t nbytes = numel * hallu_dtype_size(dtype);
    if (nbytes && !data)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "npy write %s: NULL data", path);
    io_strbuf sb = {0};
    npy_header(&sb, descr, ndim, shape);
    if (sb.oom || sb.len - 10 > 65535) {
        io_sb_free(&sb);
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "npy write %s: header does not fit format 1.0", path);
    }
    hallu_atomic_file f;
    s = hallu_atomic_begin(&f, path, err);
    if (s == HALLU_OK)
        s = hallu_atomic_append(&f, sb.p, sb.len, err);
    if (s == HALLU_OK)
        s = hallu_atomic_append(&f, data, (size_t)nbytes, err);
    io_sb_free(&sb);
    if (s != HALLU_OK) {
        hallu_atomic_abort(&f);
        return s;
    }
    return hallu_atomic_commit(&f, err);
}
