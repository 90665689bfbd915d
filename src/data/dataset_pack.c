/* Writing packed files: decode every image once (optionally resizing to a
 * square), stream pixels to a temp file, then header + fsync + rename. */
#include "data/dataset_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- resize: shorter side to N (antialiased bilinear), centre crop N x N ---- */

typedef struct taps {
    int *start, *count;
    float *w;          /* out * maxk weights */
    int maxk;
} taps;

/* PIL-style triangle filter widened by the downscale factor: output o (of a
 * full length out_full, offset by off for the crop) averages the inputs under
 * the triangle centred at (o + off + 0.5) * in / out_full. */
static bool taps_init(taps *t, int in, int out_full, int off, int out)
{
    double scale = (double)in / out_full, support = scale > 1 ? scale : 1;
    t->maxk = (int)ceil(support) * 2 + 2;
    t->start = malloc((size_t)out * sizeof *t->start);
    t->count = malloc((size_t)out * sizeof *t->count);
    t->w = malloc((size_t)out * t->maxk * sizeof *t->w);
    if (!t->start || !t->count || !t->w)
        return false;
    for (int o = 0; o < out; o++) {
        double c = (o + off + 0.5) * scale;
        int lo = (int)floor(c - support), hi = (int)ceil(c + support);
        lo = lo < 0 ? 0 : lo;
        hi = hi > in ? in : hi;
        hi = hi - lo > t->maxk ? lo + t->maxk : hi;
        double sum = 0;
        float *w = t->w + (size_t)o * t->maxk;
        for (int j = lo; j < hi; j++) {
            double d = fabs((j + 0.5 - c) / support);
            w[j - lo] = (float)(d < 1 ? 1 - d : 0);
            sum += w[j - lo];
        }
        for (int j = lo; j < hi && sum > 0; j++)
            w[j - lo] = (float)(w[j - lo] / sum);
        t->start[o] = lo;
        t->count[o] = hi - lo;
    }
    return true;
}

static void taps_free(taps *t)
{
    free(t->start);
    free(t->count);
    free(t->w);
}

static void resize_rows(const hallu_image *src, const taps *tx, int n, float *tmp)
{
    for (int y = 0; y < src->h; y++)
        for (int o = 0; o < n; o++) {
            const float *w = tx->w + (size_t)o * tx->maxk;
            float acc[3] = { 0, 0, 0 };
            for (int k = 0; k < tx->count[o]; k++) {
                const uint8_t *p = src->data + ((size_t)y * src->w + tx->start[o] + k) * 3;
                for (int c = 0; c < 3; c++)
                    acc[c] += w[k] * p[c];
            }
            for (int c = 0; c < 3; c++)
                tmp[((size_t)y * n + o) * 3 + c] = acc[c];
        }
}

static void resize_cols(const float *tmp, const taps *ty, int n, uint8_t *dst)
{
    for (int o = 0; o < n; o++)
        for (int x = 0; x < n; x++) {
            const float *w = ty->w + (size_t)o * ty->maxk;
            float acc[3] = { 0, 0, 0 };
            for (int k = 0; k < ty->count[o]; k++)
                for (int c = 0; c < 3; c++)
                    acc[c] += w[k] * tmp[((size_t)(ty->start[o] + k) * n + x) * 3 + c];
            for (int c = 0; c < 3; c++) {
                float v = acc[c] + 0.5f;
                dst[((size_t)o * n + x) * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
}

static hallu_status resize_square(const hallu_image *src, int n, uint8_t *dst, hallu_error *err)
{
    int shorter = src->h < src->w ? src->h : src->w;
    int full_h = src->h == shorter ? n : (int)((double)n * src->h / shorter);
    int full_w = src->w == shorter ? n : (int)((double)n * src->w / shorter);
    taps tx = { 0 }, ty = { 0 };
    float *tmp = malloc((size_t)src->h * n * 3 * sizeof *tmp);
    hallu_status st = HALLU_OK;
    if (!tmp || !taps_init(&tx, src->w, full_w, (full_w - n) / 2, n) ||
        !taps_init(&ty, src->h, full_h, (full_h - n) / 2, n))
        st = hallu_error_set(err, HALLU_ERR_OOM, "pack: out of memory resizing a %dx%d image",
                             src->h, src->w);
    if (st == HALLU_OK) {
        resize_rows(src, &tx, n, tmp);
        resize_cols(tmp, &ty, n, dst);
    }
    taps_free(&tx);
    taps_free(&ty);
    free(tmp);
    return st;
}

/* ---- writing --------------------------------------------------------------- */

typedef struct pack_state {
    const hallu_dataset *ds;
    const hallu_pack_options *opt;
    FILE *f;
    const char *tmp_path;
    hallu_image img;              /* decode buffer (grown on demand) */
    uint8_t *out;                 /* one packed image */
    int h, w;                     /* output size, 0 until known */
    int32_t *labels;
    int64_t count, skipped;
    uint64_t pixels_sum;
} pack_state;

static hallu_status get_image(pack_state *ps, int64_t i, int32_t *label, hallu_error *err)
{
    hallu_status st = hallu_dataset_get(ps->ds, i, &ps->img, label, err);
    size_t need = (size_t)ps->img.h * ps->img.w * 3;
    if (st != HALLU_ERR_INVALID_ARG || need <= ps->img.capacity || need == 0)
        return st;
    uint8_t *grown = realloc(ps->img.data, need);
    if (!grown)
        return hallu_error_set(err, HALLU_ERR_OOM, "pack: cannot allocate %zu bytes", need);
    ps->img.data = grown;
    ps->img.capacity = need;
    return hallu_dataset_get(ps->ds, i, &ps->img, label, err);
}

static hallu_status set_size(pack_state *ps, int h, int w, hallu_error *err)
{
    ps->h = h;
    ps->w = w;
    ps->out = malloc((size_t)h * w * 3);
    if (!ps->out)
        return hallu_error_set(err, HALLU_ERR_OOM, "pack: out of memory for a %dx%d image", h, w);
    return HALLU_OK;
}

/* The image in ps->img, converted to the packed size, into ps->out. */
static hallu_status convert(pack_state *ps, int64_t i, hallu_error *err)
{
    if (ps->opt->size > 0)
        return resize_square(&ps->img, ps->opt->size, ps->out, err);
    if (ps->img.h != ps->h || ps->img.w != ps->w) {
        char what[512];
        hallu_dataset_describe(ps->ds, i, what, sizeof what);
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG,
                               "pack: %s is %dx%d but earlier images are %dx%d; images of "
                               "different sizes need --size N", what, ps->img.h, ps->img.w,
                               ps->h, ps->w);
    }
    memcpy(ps->out, ps->img.data, (size_t)ps->h * ps->w * 3);
    return HALLU_OK;
}

static hallu_status write_bytes(pack_state *ps, const void *p, size_t n, hallu_error *err)
{
    if (n && fwrite(p, 1, n, ps->f) != n)
        return hallu_error_set(err, HALLU_ERR_IO, "pack: writing %s: %s", ps->tmp_path,
                               strerror(errno));
    return HALLU_OK;
}

static hallu_status pack_one(pack_state *ps, int64_t i, hallu_error *err)
{
    int32_t label;
    hallu_status st = get_image(ps, i, &label, err);
    /* Only undecodable images are skippable; a size mismatch is a usage error. */
    if (st != HALLU_OK && st != HALLU_ERR_OOM && ps->opt->skip_bad) {
        ps->skipped++;
        return HALLU_OK;
    }
    if (st == HALLU_OK && ps->h == 0)
        st = ps->opt->size > 0 ? set_size(ps, ps->opt->size, ps->opt->size, err)
                               : set_size(ps, ps->img.h, ps->img.w, err);
    if (st == HALLU_OK)
        st = convert(ps, i, err);
    if (st != HALLU_OK)
        return st;
    size_t n = (size_t)ps->h * ps->w * 3;
    ps->pixels_sum = hallu_fnv1a64(ps->pixels_sum, ps->out, n);
    ps->labels[ps->count++] = label;
    return write_bytes(ps, ps->out, n, err);
}

static hallu_status write_padding(pack_state *ps, uint64_t from, uint64_t to, hallu_error *err)
{
    static const uint8_t zeros[64];
    return write_bytes(ps, zeros, (size_t)(to - from), err);
}

static void names_section(const hallu_dataset *ds, uint8_t **buf, size_t *len)
{
    size_t n = 0;
    for (int c = 0; c < ds->num_classes; c++)
        n += strlen(hallu_dataset_class_name(ds, c)) + 1;
    *buf = malloc(n ? n : 1);
    *len = n;
    for (int c = 0, pos = 0; *buf && c < ds->num_classes; c++) {
        size_t l = strlen(hallu_dataset_class_name(ds, c)) + 1;
        memcpy(*buf + pos, hallu_dataset_class_name(ds, c), l);
        pos += (int)l;
    }
}

static hallu_status write_tail(pack_state *ps, packed_header *hd, const uint8_t *names,
                               hallu_error *err)
{
    uint64_t pixel_end = hd->pixels_offset + (uint64_t)ps->count * ps->h * ps->w * 3;
    hd->labels_offset = (pixel_end + 63) & ~(uint64_t)63;
    hallu_status st = write_padding(ps, pixel_end, hd->labels_offset, err);
    uint8_t *le = malloc((size_t)ps->count * 4);
    if (!le)
        return hallu_error_set(err, HALLU_ERR_OOM, "pack: out of memory for labels");
    for (int64_t i = 0; i < ps->count; i++)
        for (int k = 0; k < 4; k++)
            le[4 * i + k] = (uint8_t)((uint32_t)ps->labels[i] >> (8 * k));
    if (st == HALLU_OK)
        st = write_bytes(ps, le, (size_t)ps->count * 4, err);
    hd->meta_sum = hallu_fnv1a64(hallu_fnv1a64(HALLU_FNV_OFFSET, names, hd->names_bytes), le,
                                (size_t)ps->count * 4);
    free(le);
    hd->count = (uint64_t)ps->count;
    hd->h = (uint32_t)ps->h;
    hd->w = (uint32_t)ps->w;
    hd->pixels_sum = ps->pixels_sum;
    hd->file_size = hd->labels_offset + 4 * hd->count;
    uint8_t b[HALLU_PACKED_HEADER_BYTES];
    packed_header_encode(hd, b);
    if (st == HALLU_OK && fseek(ps->f, 0, SEEK_SET) != 0)
        st = hallu_error_set(err, HALLU_ERR_IO, "pack: seek in %s: %s", ps->tmp_path,
                             strerror(errno));
    return st == HALLU_OK ? write_bytes(ps, b, sizeof b, err) : st;
}

static hallu_status pack_all(pack_state *ps, hallu_split split, hallu_error *err)
{
    uint8_t *names;
    packed_header hd = { .version = HALLU_PACKED_VERSION, .split = (uint32_t)split,
                         .channels = 3, .num_classes = (uint32_t)ps->ds->num_classes,
                         .names_offset = HALLU_PACKED_HEADER_BYTES };
    size_t names_len;
    names_section(ps->ds, &names, &names_len);
    if (!names)
        return hallu_error_set(err, HALLU_ERR_OOM, "pack: out of memory for class names");
    hd.names_bytes = names_len;
    hd.pixels_offset = (HALLU_PACKED_HEADER_BYTES + names_len + 63) & ~(uint64_t)63;
    uint8_t zero_header[HALLU_PACKED_HEADER_BYTES] = { 0 };
    hallu_status st = write_bytes(ps, zero_header, sizeof zero_header, err);
    if (st == HALLU_OK)
        st = write_bytes(ps, names, names_len, err);
    if (st == HALLU_OK)
        st = write_padding(ps, HALLU_PACKED_HEADER_BYTES + names_len, hd.pixels_offset, err);
    int64_t n = hallu_dataset_size(ps->ds);
    for (int64_t i = 0; i < n && st == HALLU_OK; i++) {
        st = pack_one(ps, i, err);
        if (ps->opt->progress && ((i + 1) % 256 == 0 || i + 1 == n))
            ps->opt->progress(ps->opt->progress_ctx, i + 1, n);
    }
    if (st == HALLU_OK && ps->count == 0)
        st = hallu_error_set(err, HALLU_ERR_FORMAT, "pack: no image could be decoded (%lld skipped)",
                             (long long)ps->skipped);
    if (st == HALLU_OK)
        st = write_tail(ps, &hd, names, err);
    free(names);
    return st;
}

/* fsync the file, then its directory, so the rename survives a crash. */
static hallu_status commit_file(pack_state *ps, const char *path, hallu_error *err)
{
    int fd = fileno(ps->f);
    bool ok = fflush(ps->f) == 0 && fsync(fd) == 0;
    ok = (fclose(ps->f) == 0) && ok;
    ps->f = NULL;
    if (!ok || rename(ps->tmp_path, path) != 0)
        return hallu_error_set(err, HALLU_ERR_IO, "pack: cannot write %s: %s", path,
                               strerror(errno));
    char *copy = strdup(path);
    int dfd = copy ? open(dirname(copy), O_RDONLY | O_DIRECTORY) : -1;
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(copy);
    return HALLU_OK;
}

hallu_status hallu_packed_write(const hallu_dataset *ds, hallu_split split, const char *path,
                                const hallu_pack_options *opt, int64_t *skipped,
                                hallu_error *err)
{
    hallu_pack_options defaults = { 0 };
    pack_state ps = { .ds = ds, .opt = opt ? opt : &defaults, .pixels_sum = HALLU_FNV_OFFSET };
    if (ps.opt->size < 0 || ps.opt->size > 65535)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "pack: size %d outside 0..65535",
                               ps.opt->size);
    char *tmp = malloc(strlen(path) + 16);
    ps.labels = malloc((size_t)(ds->size > 0 ? ds->size : 1) * sizeof *ps.labels);
    if (!tmp || !ps.labels) {
        free(tmp);
        free(ps.labels);
        return hallu_error_set(err, HALLU_ERR_OOM, "pack: out of memory");
    }
    sprintf(tmp, "%s.tmp.XXXXXX", path);
    ps.tmp_path = tmp;
    int fd = mkstemp(tmp);
    hallu_status st = HALLU_OK;
    /* mkstemp creates 0600; a dataset file is meant to be shared like any other. */
    if (fd < 0 || fchmod(fd, 0644) != 0 || !(ps.f = fdopen(fd, "wb")))
        st = hallu_error_set(err, HALLU_ERR_IO, "pack: cannot create %s: %s", tmp,
                             strerror(errno));
    if (fd >= 0 && !ps.f)
        close(fd);
    if (st == HALLU_OK)
        st = pack_all(&ps, split, err);
    if (st == HALLU_OK)
        st = commit_file(&ps, path, err);
    if (ps.f)
        fclose(ps.f);
    if (st != HALLU_OK && fd >= 0)
        unlink(tmp);
    if (skipped)
        *skipped = ps.skipped;
    free(tmp);
    free(ps.labels);
    free(ps.out);
    free(ps.img.data);
    return st;
}
