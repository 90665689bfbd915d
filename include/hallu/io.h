/* File I/O: atomic writes, safetensors, .npy, JSONL/CSV metrics.
 *
 * Every file the library writes goes through hallu_atomic_*: a temporary file
 * "NAME.tmp.XXXXXX" in the destination's directory is written, flushed and
 * fsynced, renamed over NAME, and the directory is fsynced, so a reader (or a
 * crash) sees either the old file or the complete new one, never a torn one.
 * The metrics appenders are the one exception: they append a line and fsync.
 *
 * Readers treat files as untrusted: every size and offset is validated before
 * use, and errors (HALLU_ERR_FORMAT) name the file, the tensor or offset, and
 * what was expected. */
#ifndef HALLU_IO_H
#define HALLU_IO_H

#include "hallu/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- atomic files ----------------------------------------------------------- */

/* Writes data[0..n) to path atomically. The new file gets mode 0644. */
hallu_status hallu_atomic_write(const char *path, const void *data, size_t n, hallu_error *err);

/* Streaming variant for large files: begin, any number of writes, then exactly
 * one of commit (publishes the file) or abort (removes the temporary). After a
 * failed write the caller must still call abort. */
typedef struct hallu_atomic_file {
    int fd;
    char *path;          /* final name, owned */
    char *tmp_path;      /* temporary name, owned */
    unsigned char *buf;  /* write buffer, owned */
    size_t buf_len, buf_cap;
    uint64_t written;    /* bytes accepted so far */
} hallu_atomic_file;

hallu_status hallu_atomic_begin(hallu_atomic_file *f, const char *path, hallu_error *err);
hallu_status hallu_atomic_append(hallu_atomic_file *f, const void *data, size_t n, hallu_error *err);
hallu_status hallu_atomic_commit(hallu_atomic_file *f, hallu_error *err);
/* Safe to call on a file that was never begun (zeroed), committed or aborted. */
void hallu_atomic_abort(hallu_atomic_file *f);

/* Copies the file src to dst atomically (dst appears whole or not at all), so a
 * file already written once can be kept under a second name without
 * serializing it again. */
hallu_status hallu_atomic_copy(const char *src, const char *dst, hallu_error *err);

/* Element types (hallu_dtype) are declared in core.h. */

/* ---- safetensors ---------------------------------------------------------------
 * Layout: u64 little-endian N, N bytes of JSON header, then the data buffer.
 * The header maps tensor names to {"dtype", "shape", "data_offsets": [b, e]}
 * (offsets relative to the buffer), plus an optional "__metadata__" object of
 * string values. Tensors are contiguous and row-major. */

enum { HALLU_ST_MAX_DIMS = 8 };

/* One tensor to write. */
typedef struct hallu_st_entry {
    const char *name;
    hallu_dtype dtype;       /* the writer accepts F32, I64 and I32 */
    int ndim;                /* 0..HALLU_ST_MAX_DIMS (0 = scalar) */
    int64_t shape[HALLU_ST_MAX_DIMS];
    const void *data;        /* numel * dtype size bytes */
} hallu_st_entry;

/* A string pair for "__metadata__". */
typedef struct hallu_st_meta {
    const char *key, *value;
} hallu_st_meta;

/* Writes the tensors in the given order, atomically. The header is padded with
 * spaces to a multiple of 8 bytes so that the data buffer (and every 8-byte
 * dtype's tensor) is 8-byte aligned in the file. Duplicate names are an error. */
hallu_status hallu_safetensors_write(const char *path, const hallu_st_entry *tensors, int num_tensors,
                                     const hallu_st_meta *meta, int num_meta, hallu_error *err);

/* One tensor of a parsed file. data points into the file image; it is aligned
 * only as far as the writer made it, so read it with memcpy or
 * hallu_safetensors_copy unless the alignment has been checked. */
typedef struct hallu_st_tensor {
    const char *name;
    hallu_dtype dtype;
    int ndim;
    int64_t shape[HALLU_ST_MAX_DIMS];
    int64_t numel;
    uint64_t begin, end;     /* offsets into the data buffer */
    const void *data;
} hallu_st_tensor;

typedef struct hallu_safetensors {
    const unsigned char *bytes;  /* whole file image */
    size_t size;
    int mapped;                  /* bytes came from mmap (1), are borrowed (0), or malloc'd (2) */
    hallu_st_tensor *tensors;    /* sorted by name */
    int num_tensors;
    hallu_st_meta *meta;         /* "__metadata__" pairs, sorted by key */
    int num_meta;
    char *strings;               /* decoded names/keys/values, owned */
    char *source;                /* file name used in errors, owned */
} hallu_safetensors;

/* Maps (or reads) and validates a file. Close with hallu_safetensors_close. */
hallu_status hallu_safetensors_open(hallu_safetensors *st, const char *path, hallu_error *err);
/* Validates a file image in memory. The buffer is borrowed: it must outlive st.
 * name is used in error messages (e.g. "<memory>"). */
hallu_status hallu_safetensors_parse(hallu_safetensors *st, const void *data, size_t size,
                                     const char *name, hallu_error *err);
/* Safe on a zeroed or already closed struct. */
void hallu_safetensors_close(hallu_safetensors *st);

/* NULL when absent. Iterate with st->tensors[0..num_tensors). */
const hallu_st_tensor *hallu_safetensors_find(const hallu_safetensors *st, const char *name);
const char *hallu_safetensors_meta(const hallu_safetensors *st, const char *key);

/* Copies tensor `name` into dst after checking that it exists, has dtype dt and
 * exactly `numel` elements (shape is not checked; use find for that). */
hallu_status hallu_safetensors_copy(const hallu_safetensors *st, const char *name, hallu_dtype dt,
                                    void *dst, int64_t numel, hallu_error *err);

/* ---- .npy (NumPy format 1.0, C order, little-endian) ------------------------------- */

/* dtype F32 ('<f4'), I32 ('<i4') or I64 ('<i8'); the header is padded so that
 * the data starts at a multiple of 64 bytes. Written atomically. */
hallu_status hallu_npy_write(const char *path, hallu_dtype dtype, int ndim, const int64_t *shape,
                             const void *data, hallu_error *err);

/* ---- metrics -------------------------------------------------------------------------- */

/* Appends `line` plus '\n' (the line must not contain one) to path, creating the
 * file when needed, then fsyncs. One write() call, so concurrent appenders do not
 * interleave within a line. */
hallu_status hallu_jsonl_append(const char *path, const char *line, hallu_error *err);

/* A JSON object built in a fixed buffer: {"k": v, ...}. Errors (overflow, a
 * non-finite number) are sticky and reported by hallu_json_obj_finish. */
typedef struct hallu_json_obj {
    char buf[2048];
    size_t len;
    int count;
    int failed;
} hallu_json_obj;

void hallu_json_obj_init(hallu_json_obj *o);
void hallu_json_obj_add_str(hallu_json_obj *o, const char *key, const char *value);
void hallu_json_obj_add_int(hallu_json_obj *o, const char *key, int64_t value);
/* Numbers print with %.9g (float round trip); NaN/inf become null and fail. */
void hallu_json_obj_add_num(hallu_json_obj *o, const char *key, double value);
/* Returns the text ("{...}") or NULL with err set. */
const char *hallu_json_obj_finish(hallu_json_obj *o, hallu_error *err);

/* Appends one CSV row of numbers (%.9g). When the file is new or empty, the
 * header line (comma-separated column names) is written first. */
hallu_status hallu_csv_append(const char *path, const char *header, const double *values, int n,
                              hallu_error *err);

/* Writes a JSON string literal (with quotes and escapes) of s into out;
 * returns the length it needs (excluding the NUL), like snprintf. */
size_t hallu_json_escape(char *out, size_t outsize, const char *s);

#ifdef __cplusplus
}
#endif
#endif
