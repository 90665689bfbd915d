/* safetensors reader. The header is untrusted input: a small strict JSON parser
 * accepts exactly the shapes safetensors uses (one object of tensor objects and
 * an optional "__metadata__" object of strings), then every size and offset is
 * checked before any pointer into the data buffer is formed. As in the
 * reference implementation, the tensors must tile the data buffer exactly: no
 * overlap, no hole, no trailing bytes. */
#include "io_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The reference implementation's cap; anything larger is hostile or broken. */
#define ST_MAX_HEADER ((uint64_t)100 << 20)

typedef struct st_parser {
    const char *p, *begin, *end;   /* the header text */
    char *out;                     /* decoded-string arena cursor */
    const char *src;               /* file name for messages */
    hallu_error *err;
    hallu_safetensors *st;
    int cap_tensors, cap_meta;
    int seen_meta;
} st_parser;

static hallu_status fail(st_parser *ps, const char *what)
{
    /* Positions are file offsets (the header starts after the 8-byte length). */
    size_t pos = (size_t)(ps->p - ps->begin) + 8;
    return hallu_error_set(ps->err, HALLU_ERR_FORMAT, "safetensors %s: bad JSON header at byte %zu: %s", ps->src,
                           pos, what);
}

static void skip_ws(st_parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

/* Skips whitespace and consumes c if it is next. */
static int accept(st_parser *ps, char c)
{
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == c) {
        ps->p++;
        return 1;
    }
    return 0;
}

static hallu_status expect(st_parser *ps, char c, const char *what)
{
    return accept(ps, c) ? HALLU_OK : fail(ps, what);
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int read_hex4(st_parser *ps, unsigned *v)
{
    if (ps->end - ps->p < 4)
        return 0;
    *v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_digit(ps->p[i]);
        if (h < 0)
            return 0;
        *v = *v * 16 + (unsigned)h;
    }
    ps->p += 4;
    return 1;
}

static void put_utf8(st_parser *ps, unsigned cp)
{
    if (cp < 0x80) {
        *ps->out++ = (char)cp;
    } else if (cp < 0x800) {
        *ps->out++ = (char)(0xC0 | (cp >> 6));
        *ps->out++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *ps->out++ = (char)(0xE0 | (cp >> 12));
        *ps->out++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *ps->out++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *ps->out++ = (char)(0xF0 | (cp >> 18));
        *ps->out++ = (char)(0x80 | ((cp >> 12) & 0x3F));
        *ps->out++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *ps->out++ = (char)(0x80 | (cp & 0x3F));
    }
}

/* \uXXXX, with surrogate pairs; NUL is refused since names are C strings. */
static hallu_status parse_unicode_escape(st_parser *ps)
{
    unsigned cp, lo;
    if (!read_hex4(ps, &cp))
        return fail(ps, "bad \\u escape (expected 4 hex digits)");
    if (cp >= 0xDC00 && cp <= 0xDFFF)
        return fail(ps, "unpaired low surrogate in \\u escape");
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u')
            return fail(ps, "high surrogate not followed by \\u low surrogate");
        ps->p += 2;
        if (!read_hex4(ps, &lo) || lo < 0xDC00 || lo > 0xDFFF)
            return fail(ps, "bad low surrogate in \\u escape");
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    if (cp == 0)
        return fail(ps, "\\u0000 in a string");
    put_utf8(ps, cp);
    return HALLU_OK;
}

static hallu_status parse_escape(st_parser *ps)
{
    if (ps->p >= ps->end)
        return fail(ps, "unterminated escape");
    char c = *ps->p++;
    switch (c) {
    case '"': *ps->out++ = '"'; return HALLU_OK;
    case '\\': *ps->out++ = '\\'; return HALLU_OK;
    case '/': *ps->out++ = '/'; return HALLU_OK;
    case 'b': *ps->out++ = '\b'; return HALLU_OK;
    case 'f': *ps->out++ = '\f'; return HALLU_OK;
    case 'n': *ps->out++ = '\n'; return HALLU_OK;
    case 'r': *ps->out++ = '\r'; return HALLU_OK;
    case 't': *ps->out++ = '\t'; return HALLU_OK;
    case 'u': return parse_unicode_escape(ps);
    default: ps->p--; return fail(ps, "unknown escape in a string");
    }
}

/* Decodes a string into the arena (never longer than its encoding + NUL). */
static hallu_status parse_string(st_parser *ps, const char **out)
{
    skip_ws(ps);
    if (ps->p >= ps->end || *ps->p != '"')
        return fail(ps, "expected a string");
    ps->p++;
    *out = ps->out;
    while (ps->p < ps->end && *ps->p != '"') {
        unsigned char c = (unsigned char)*ps->p;
        if (c < 0x20)
            return fail(ps, "control character in a string");
        ps->p++;
        if (c == '\\') {
            hallu_status s = parse_escape(ps);
            if (s != HALLU_OK)
                return s;
        } else {
            *ps->out++ = (char)c;
        }
    }
    if (ps->p >= ps->end)
        return fail(ps, "unterminated string");
    ps->p++;
    *ps->out++ = '\0';
    return HALLU_OK;
}

static hallu_status parse_uint(st_parser *ps, uint64_t *v)
{
    skip_ws(ps);
    if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
        return fail(ps, "expected a non-negative integer");
    if (*ps->p == '0' && ps->end - ps->p > 1 && ps->p[1] >= '0' && ps->p[1] <= '9')
        return fail(ps, "integer with a leading zero");
    *v = 0;
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
        unsigned d = (unsigned)(*ps->p - '0');
        if (*v > (UINT64_MAX - d) / 10)
            return fail(ps, "integer overflows 64 bits");
        *v = *v * 10 + d;
        ps->p++;
    }
    return HALLU_OK;
}

/* [n, n, ...] with at most max entries. */
static hallu_status parse_uint_array(st_parser *ps, uint64_t *vals, int max, int *count, const char *what)
{
    hallu_status s = expect(ps, '[', what);
    if (s != HALLU_OK)
        return s;
    *count = 0;
    if (accept(ps, ']'))
        return HALLU_OK;
    for (;;) {
        if (*count >= max)
            return fail(ps, "too many entries in an integer array");
        s = parse_uint(ps, &vals[(*count)++]);
        if (s != HALLU_OK)
            return s;
        if (accept(ps, ']'))
            return HALLU_OK;
        s = expect(ps, ',', "expected ',' or ']' in an integer array");
        if (s != HALLU_OK)
            return s;
    }
}

static hallu_status parse_dtype(st_parser *ps, hallu_dtype *dt)
{
    const char *name;
    hallu_status s = parse_string(ps, &name);
    if (s != HALLU_OK)
        return s;
    for (int d = 0; d < HALLU_DTYPE_COUNT; d++)
        if (strcmp(name, hallu_dtype_name((hallu_dtype)d)) == 0) {
            *dt = (hallu_dtype)d;
            return HALLU_OK;
        }
    return fail(ps, "unknown dtype (expected F32, F64, F16, BF16, I64, I32, I16, I8, U8, U16, U32, U64, BOOL)");
}

enum { SEEN_DTYPE = 1, SEEN_SHAPE = 2, SEEN_OFFSETS = 4 };

static hallu_status parse_tensor_field(st_parser *ps, hallu_st_tensor *t, int *seen)
{
    const char *key;
    hallu_status s = parse_string(ps, &key);
    if (s == HALLU_OK)
        s = expect(ps, ':', "expected ':' after a key");
    if (s != HALLU_OK)
        return s;
    uint64_t vals[HALLU_ST_MAX_DIMS + 1];
    int n = 0, bit = strcmp(key, "dtype") == 0 ? SEEN_DTYPE
                   : strcmp(key, "shape") == 0 ? SEEN_SHAPE
                   : strcmp(key, "data_offsets") == 0 ? SEEN_OFFSETS : 0;
    if (!bit)
        return fail(ps, "unknown key in a tensor entry (expected dtype, shape, data_offsets)");
    if (*seen & bit)
        return fail(ps, "duplicate key in a tensor entry");
    *seen |= bit;
    if (bit == SEEN_DTYPE)
        return parse_dtype(ps, &t->dtype);
    if (bit == SEEN_SHAPE) {
        s = parse_uint_array(ps, vals, HALLU_ST_MAX_DIMS, &n, "expected '[' for shape");
        t->ndim = n;
        for (int d = 0; d < n; d++) {
            if (vals[d] > (uint64_t)INT64_MAX)
                return fail(ps, "shape dimension too large");
            t->shape[d] = (int64_t)vals[d];
        }
        return s;
    }
    s = parse_uint_array(ps, vals, 2, &n, "expected '[' for data_offsets");
    if (s == HALLU_OK && n != 2)
        return fail(ps, "data_offsets must have exactly 2 entries");
    t->begin = vals[0];
    t->end = vals[1];
    return s;
}

static hallu_status parse_tensor(st_parser *ps, const char *name)
{
    hallu_safetensors *st = ps->st;
    if (st->num_tensors == ps->cap_tensors) {
        int cap = ps->cap_tensors ? 2 * ps->cap_tensors : 16;
        hallu_st_tensor *t = realloc(st->tensors, (size_t)cap * sizeof *t);
        if (!t)
            return hallu_error_set(ps->err, HALLU_ERR_OOM, "safetensors %s: out of memory", ps->src);
        st->tensors = t;
        ps->cap_tensors = cap;
    }
    hallu_st_tensor *t = &st->tensors[st->num_tensors++];
    memset(t, 0, sizeof *t);
    t->name = name;
    hallu_status s = expect(ps, '{', "expected '{' for a tensor entry");
    int seen = 0;
    if (s == HALLU_OK && !accept(ps, '}')) {
        for (;;) {
            s = parse_tensor_field(ps, t, &seen);
            if (s != HALLU_OK || accept(ps, '}'))
                break;
            s = expect(ps, ',', "expected ',' or '}' in a tensor entry");
            if (s != HALLU_OK)
                break;
        }
    }
    if (s == HALLU_OK && seen != (SEEN_DTYPE | SEEN_SHAPE | SEEN_OFFSETS))
        return hallu_error_set(ps->err, HALLU_ERR_FORMAT,
                               "safetensors %s: tensor '%s' lacks %s (needs dtype, shape, data_offsets)", ps->src,
                               name, !(seen & SEEN_DTYPE) ? "dtype" : !(seen & SEEN_SHAPE) ? "shape" : "data_offsets");
    return s;
}

static hallu_status parse_metadata(st_parser *ps)
{
    hallu_safetensors *st = ps->st;
    if (ps->seen_meta)
        return fail(ps, "duplicate __metadata__");
    ps->seen_meta = 1;
    hallu_status s = expect(ps, '{', "expected '{' for __metadata__");
    if (s != HALLU_OK || accept(ps, '}'))
        return s;
    for (;;) {
        if (st->num_meta == ps->cap_meta) {
            int cap = ps->cap_meta ? 2 * ps->cap_meta : 8;
            hallu_st_meta *m = realloc(st->meta, (size_t)cap * sizeof *m);
            if (!m)
                return hallu_error_set(ps->err, HALLU_ERR_OOM, "safetensors %s: out of memory", ps->src);
            st->meta = m;
            ps->cap_meta = cap;
        }
        hallu_st_meta *m = &st->meta[st->num_meta++];
        s = parse_string(ps, &m->key);
        if (s == HALLU_OK)
            s = expect(ps, ':', "expected ':' after a key");
        if (s == HALLU_OK)
            s = parse_string(ps, &m->value);
        if (s != HALLU_OK || accept(ps, '}'))
            return s;
        s = expect(ps, ',', "expected ',' or '}' in __metadata__");
        if (s != HALLU_OK)
            return s;
    }
}

static hallu_status parse_header(st_parser *ps)
{
    hallu_status s = expect(ps, '{', "expected '{' at the start of the header");
    if (s != HALLU_OK)
        return s;
    if (!accept(ps, '}')) {
        for (;;) {
            const char *key;
            s = parse_string(ps, &key);
            if (s == HALLU_OK)
                s = expect(ps, ':', "expected ':' after a key");
            if (s == HALLU_OK)
                s = strcmp(key, "__metadata__") == 0 ? parse_metadata(ps) : parse_tensor(ps, key);
            if (s != HALLU_OK || accept(ps, '}'))
                break;
            s = expect(ps, ',', "expected ',' or '}' between tensors");
            if (s != HALLU_OK)
                return s;
        }
    }
    if (s != HALLU_OK)
        return s;
    skip_ws(ps);
    if (ps->p != ps->end)
        return fail(ps, "trailing bytes after the header object (only space padding is allowed)");
    return HALLU_OK;
}

/* ---- validation ------------------------------------------------------------- */

static hallu_status check_tensor_size(const char *src, hallu_st_tensor *t, uint64_t data_len, hallu_error *err)
{
    uint64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        uint64_t dim = (uint64_t)t->shape[d];
        if (dim != 0 && numel > (uint64_t)INT64_MAX / dim)
            return hallu_error_set(err, HALLU_ERR_FORMAT, "safetensors %s: tensor '%s': shape overflows 64 bits",
                                   src, t->name);
        numel *= dim;
    }
    uint64_t es = hallu_dtype_size(t->dtype);
    if (numel > (uint64_t)INT64_MAX / es)
        return hallu_error_set(err, HALLU_ERR_FORMAT, "safetensors %s: tensor '%s': byte size overflows 64 bits",
                               src, t->name);
    t->numel = (int64_t)numel;
    if (t->begin > t->end || t->end > data_len)
        return hallu_error_set(err, HALLU_ERR_FORMAT,
                               "safetensors %s: tensor '%s': data_offsets [%llu, %llu] not within the %llu-byte data "
                               "buffer",
                               src, t->name, (unsigned long long)t->begin, (unsigned long long)t->end,
                               (unsigned long long)data_len);
    if (t->end - t->begin != numel * es)
        return hallu_error_set(err, HALLU_ERR_FORMAT,
                               "safetensors %s: tensor '%s': data_offsets [%llu, %llu] span %llu bytes, expected %llu "
                               "(%llu elements of %s)",
                               src, t->name, (unsigned long long)t->begin, (unsigned long long)t->end,
                               (unsigned long long)(t->end - t->begin), (unsigned long long)(numel * es),
                               (unsigned long long)numel, hallu_dtype_name(t->dtype));
    return HALLU_OK;
}

static int cmp_offsets(const void *a, const void *b)
{
    const hallu_st_tensor *x = *(const hallu_st_tensor *const *)a, *y = *(const hallu_st_tensor *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Sorted by offset, each tensor must start where the previous one ended. */
static hallu_status check_tiling(const hallu_safetensors *st, uint64_t data_len, hallu_error *err)
{
    int n = st->num_tensors;
    const hallu_st_tensor **order = malloc((size_t)(n ? n : 1) * sizeof *order);
    if (!order)
        return hallu_error_set(err, HALLU_ERR_OOM, "safetensors %s: out of memory", st->source);
    for (int i = 0; i < n; i++)
        order[i] = &st->tensors[i];
    if (n > 1)
        qsort(order, (size_t)n, sizeof *order, cmp_offsets);
    uint64_t pos = 0;
    hallu_status s = HALLU_OK;
    for (int i = 0; i < n && s == HALLU_OK; i++) {
        const hallu_st_tensor *t = order[i];
        if (t->begin < pos)
            s = hallu_error_set(err, HALLU_ERR_FORMAT,
                                "safetensors %s: tensor '%s' [%llu, %llu] overlaps tensor '%s' (ends at %llu)",
                                st->source, t->name, (unsigned long long)t->begin, (unsigned long long)t->end,
                                order[i - 1]->name, (unsigned long long)pos);
        else if (t->begin > pos)
            s = hallu_error_set(err, HALLU_ERR_FORMAT,
                                "safetensors %s: hole in the data buffer: bytes [%llu, %llu) before tensor '%s' "
                                "belong to no tensor",
                                st->source, (unsigned long long)pos, (unsigned long long)t->begin, t->name);
        pos = t->end;
    }
    if (s == HALLU_OK && pos != data_len)
        s = hallu_error_set(err, HALLU_ERR_FORMAT,
                            "safetensors %s: data buffer has %llu bytes but the tensors cover %llu", st->source,
                            (unsigned long long)data_len, (unsigned long long)pos);
    free(order);
    return s;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(((const hallu_st_tensor *)a)->name, ((const hallu_st_tensor *)b)->name);
}

static int cmp_meta(const void *a, const void *b)
{
    return strcmp(((const hallu_st_meta *)a)->key, ((const hallu_st_meta *)b)->key);
}

static hallu_status check_unique(hallu_safetensors *st, hallu_error *err)
{
    /* qsort/bsearch take no NULL base, even for zero elements. */
    if (st->num_tensors > 1)
        qsort(st->tensors, (size_t)st->num_tensors, sizeof *st->tensors, cmp_names);
    for (int i = 1; i < st->num_tensors; i++)
        if (strcmp(st->tensors[i].name, st->tensors[i - 1].name) == 0)
            return hallu_error_set(err, HALLU_ERR_FORMAT, "safetensors %s: duplicate tensor name '%s'", st->source,
                                   st->tensors[i].name);
    if (st->num_meta > 1)
        qsort(st->meta, (size_t)st->num_meta, sizeof *st->meta, cmp_meta);
    for (int i = 1; i < st->num_meta; i++)
        if (strcmp(st->meta[i].key, st->meta[i - 1].key) == 0)
            return hallu_error_set(err, HALLU_ERR_FORMAT, "safetensors %s: duplicate __metadata__ key '%s'",
                                   st->source, st->meta[i].key);
    return HALLU_OK;
}

static hallu_status parse_and_validate(hallu_safetensors *st, hallu_error *err)
{
    const char *src = st->source;
    if (st->size < 8)
        return hallu_error_set(err, HALLU_ERR_FORMAT,
                               "safetensors %s: file has %zu bytes, too short for the 8-byte header length", src,
                               st->size);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++)
        hlen |= (uint64_t)st->bytes[i] << (8 * i);
    if (hlen > st->size - 8 || hlen > ST_MAX_HEADER)
        return hallu_error_set(err, HALLU_ERR_FORMAT,
                               "safetensors %s: header length %llu exceeds the %zu bytes after it (or the 100 MiB limit)",
                               src, (unsigned long long)hlen, st->size - 8);
    st->strings = malloc((size_t)hlen + 1);
    if (!st->strings)
        return hallu_error_set(err, HALLU_ERR_OOM, "safetensors %s: out of memory for a %llu-byte header", src,
                               (unsigned long long)hlen);
    st_parser ps = {.p = (const char *)st->bytes + 8, .begin = (const char *)st->bytes + 8,
                    .end = (const char *)st->bytes + 8 + hlen, .out = st->strings, .src = src, .err = err, .st = st};
    hallu_status s = parse_header(&ps);
    if (s != HALLU_OK)
        return s;
    uint64_t data_len = st->size - 8 - hlen;
    const unsigned char *data = st->bytes + 8 + hlen;
    for (int i = 0; i < st->num_tensors; i++) {
        s = check_tensor_size(src, &st->tensors[i], data_len, err);
        if (s != HALLU_OK)
            return s;
        st->tensors[i].data = data + st->tensors[i].begin;
    }
    s = check_tiling(st, data_len, err);
    return s == HALLU_OK ? check_unique(st, err) : s;
}

static hallu_status set_source(hallu_safetensors *st, const char *name, hallu_error *err)
{
    if (!name)
        name = "<memory>";
    size_t n = strlen(name) + 1;
    st->source = malloc(n);
    if (!st->source)
        return hallu_error_set(err, HALLU_ERR_OOM, "safetensors %s: out of memory", name);
    memcpy(st->source, name, n);
    return HALLU_OK;
}

hallu_status hallu_safetensors_parse(hallu_safetensors *st, const void *data, size_t size, const char *name,
                                     hallu_error *err)
{
    memset(st, 0, sizeof *st);
    hallu_status s = set_source(st, name, err);
    if (s != HALLU_OK)
        return s;
    if (!data && size) {
        s = hallu_error_set(err, HALLU_ERR_INVALID_ARG, "safetensors %s: NULL buffer", st->source);
        hallu_safetensors_close(st);
        return s;
    }
    st->bytes = data;
    st->size = size;
    s = parse_and_validate(st, err);
    if (s != HALLU_OK)
        hallu_safetensors_close(st);
    return s;
}

/* mmap for regular files; falls back to read() where mapping is refused. */
static hallu_status load_file(int fd, const char *path, size_t size, const unsigned char **bytes, int *mapped,
                              hallu_error *err)
{
    if (size == 0) {
        *bytes = NULL;
        *mapped = 0;
        return HALLU_OK;
    }
    void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m != MAP_FAILED) {
        *bytes = m;
        *mapped = 1;
        return HALLU_OK;
    }
    unsigned char *buf = hallu_alloc(size, path, err);
    if (!buf)
        return HALLU_ERR_OOM;
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            hallu_free(buf);
            return hallu_error_set(err, HALLU_ERR_IO, "safetensors %s: read failed at byte %zu: %s", path, got,
                                   r < 0 ? strerror(errno) : "unexpected end of file");
        }
        got += (size_t)r;
    }
    *bytes = buf;
    *mapped = 2;
    return HALLU_OK;
}

hallu_status hallu_safetensors_open(hallu_safetensors *st, const char *path, hallu_error *err)
{
    memset(st, 0, sizeof *st);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return hallu_error_set(err, HALLU_ERR_IO, "safetensors %s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return hallu_error_set(err, HALLU_ERR_IO, "safetensors %s: not a regular file", path);
    }
    const unsigned char *bytes = NULL;
    int mapped = 0;
    hallu_status s = load_file(fd, path, (size_t)sb.st_size, &bytes, &mapped, err);
    close(fd);
    if (s != HALLU_OK)
        return s;
    s = hallu_safetensors_parse(st, bytes, (size_t)sb.st_size, path, err);
    if (s != HALLU_OK) {
        if (mapped == 1)
            munmap((void *)bytes, (size_t)sb.st_size);
        else if (mapped == 2)
            hallu_free((void *)bytes);
        return s;
    }
    st->mapped = mapped;
    return HALLU_OK;
}

void hallu_safetensors_close(hallu_safetensors *st)
{
    if (st->mapped == 1)
        munmap((void *)st->bytes, st->size);
    else if (st->mapped == 2)
        hallu_free((void *)st->bytes);
    free(st->tensors);
    free(st->meta);
    free(st->strings);
    free(st->source);
    memset(st, 0, sizeof *st);
}

const hallu_st_tensor *hallu_safetensors_find(const hallu_safetensors *st, const char *name)
{
    hallu_st_tensor key = {.name = name};
    if (st->num_tensors == 0 || !name)
        return NULL;
    return bsearch(&key, st->tensors, (size_t)st->num_tensors, sizeof key, cmp_names);
}

const char *hallu_safetensors_meta(const hallu_safetensors *st, const char *key)
{
    hallu_st_meta k = {.key = key};
    if (st->num_meta == 0 || !key)
        return NULL;
    const hallu_st_meta *m = bsearch(&k, st->meta, (size_t)st->num_meta, sizeof k, cmp_meta);
    return m ? m->value : NULL;
}

hallu_status hallu_safetensors_copy(const hallu_safetensors *st, const char *name, hallu_dtype dt, void *dst,
                                    int64_t numel, hallu_error *err)
{
    const hallu_st_tensor *t = hallu_safetensors_find(st, name);
    if (!t)
        return hallu_error_set(err, HALLU_ERR_FORMAT, "safetensors %s: no tensor '%s'", st->source, name);
    if (t->dtype != dt)
        return hallu_error_set(err, HALLU_ERR_FORMAT, "safetensors %s: tensor '%s' has dtype %s, expected %s",
                               st->source, name, hallu_dtype_name(t->dtype), hallu_dtype_name(dt));
    if (t->numel != numel)
        return hallu_error_set(err, HALLU_ERR_FORMAT, "safetensors %s: tensor '%s' has %lld elements, expected %lld",
                               st->source, name, (long long)t->numel, (long long)numel);
    if (numel)
        memcpy(dst, t->data, (size_t)(t->end - t->begin));
    return HALLU_OK;
}
