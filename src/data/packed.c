/* Packed files (layout in include/hallu/data.h): a split decoded once into
 * uint8 HWC pixels + int32 labels, memory-mapped on open and checked against
 * FNV-1a 64 checksums. */
#include "data/dataset_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_CLASSES (1 << 20)

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p)
{
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int k = 0; k < 4; k++)
        p[k] = (uint8_t)(v >> (8 * k));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    put_u32(p, (uint32_t)v);
    put_u32(p + 4, (uint32_t)(v >> 32));
}

void packed_header_encode(const packed_header *hd, uint8_t b[HALLU_PACKED_HEADER_BYTES])
{
    memset(b, 0, HALLU_PACKED_HEADER_BYTES);
    memcpy(b, HALLU_PACKED_MAGIC, 8);
    put_u32(b + 8, hd->version);
    put_u32(b + 12, hd->split);
    put_u64(b + 16, hd->count);
    put_u32(b + 24, hd->h);
    put_u32(b + 28, hd->w);
    put_u32(b + 32, hd->channels);
    put_u32(b + 36, hd->num_classes);
    put_u64(b + 40, hd->names_offset);
    put_u64(b + 48, hd->names_bytes);
    put_u64(b + 56, hd->pixels_offset);
    put_u64(b + 64, hd->labels_offset);
    put_u64(b + 72, hd->file_size);
    put_u64(b + 80, hd->pixels_sum);
    put_u64(b + 88, hd->meta_sum);
    put_u64(b + 120, hallu_fnv1a64(HALLU_FNV_OFFSET, b, 120));
}

static void header_decode(const uint8_t *b, packed_header *hd)
{
    hd->version = get_u32(b + 8);
    hd->split = get_u32(b + 12);
    hd->count = get_u64(b + 16);
    hd->h = get_u32(b + 24);
    hd->w = get_u32(b + 28);
    hd->channels = get_u32(b + 32);
    hd->num_classes = get_u32(b + 36);
    hd->names_offset = get_u64(b + 40);
    hd->names_bytes = get_u64(b + 48);
    hd->pixels_offset = get_u64(b + 56);
    hd->labels_offset = get_u64(b + 64);
    hd->file_size = get_u64(b + 72);
    hd->pixels_sum = get_u64(b + 80);
    hd->meta_sum = get_u64(b + 88);
    hd->header_sum = get_u64(b + 120);
}

/* ---- reading ------------------------------------------------------------- */

typedef struct packed_impl {
    data_buffer buf;
    mapped_file file;
    packed_header hd;
    size_t image_bytes;
} packed_impl;

static void packed_destroy(void *p)
{
    packed_impl *k = p;
    if (!k)
        return;
    unmap_file(&k->file);
    free(k);
}

static hallu_status packed_label(const hallu_dataset *ds, int64_t i, int32_t *label,
                                 hallu_error *err)
{
    const packed_impl *k = ds->impl;
    *label = (int32_t)get_u32(k->buf.data + k->hd.labels_offset + 4 * (uint64_t)i);
    return HALLU_OK;
}

static hallu_status packed_get(const hallu_dataset *ds, int64_t i, hallu_image *img,
                               int32_t *label, hallu_error *err)
{
    const packed_impl *k = ds->impl;
    char what[256];
    snprintf(what, sizeof what, "%s image %lld", k->buf.name, (long long)i);
    hallu_status st = image_prepare(img, (int)k->hd.h, (int)k->hd.w, what, err);
    if (st != HALLU_OK)
        return st;
    memcpy(img->data, k->buf.data + k->hd.pixels_offset + (uint64_t)i * k->image_bytes,
           k->image_bytes);
    return packed_label(ds, i, label, err);
}

static void packed_describe(const hallu_dataset *ds, int64_t i, char *buf, size_t n)
{
    const packed_impl *k = ds->impl;
    snprintf(buf, n, "%s image %lld", k->buf.name, (long long)i);
}

static const dataset_ops packed_ops = {
    .get = packed_get, .label = packed_label, .describe = packed_describe,
    .destroy = packed_destroy,
};

#define FAIL(...) hallu_error_set(err, HALLU_ERR_FORMAT, __VA_ARGS__)

static hallu_status check_shape(const packed_header *hd, const char *name, hallu_error *err)
{
    if (hd->version != HALLU_PACKED_VERSION)
        return FAIL("packed: %s: version %u, this build reads version %u", name, hd->version,
                    HALLU_PACKED_VERSION);
    if (hd->channels != 3 || hd->h < 1 || hd->h > 65535 || hd->w < 1 || hd->w > 65535)
        return FAIL("packed: %s: image shape %ux%ux%u, expected HxWx3 with 1 <= H, W <= 65535",
                    name, hd->h, hd->w, hd->channels);
    if (hd->split > HALLU_SPLIT_UNLABELED || hd->num_classes > MAX_CLASSES)
        return FAIL("packed: %s: split %u / %u classes out of range", name, hd->split,
                    hd->num_classes);
    return HALLU_OK;
}

/* Every section must lie inside the file, in order, without overflow. */
static hallu_status check_layout(const packed_header *hd, size_t size, const char *name,
                                 hallu_error *err)
{
    uint64_t image = (uint64_t)hd->h * hd->w * 3;
    if (hd->file_size != size)
        return FAIL("packed: %s: header says %llu bytes, file has %zu (truncated or appended?)",
                    name, (unsigned long long)hd->file_size, size);
    if (hd->count == 0 || hd->count > size / image)
        return FAIL("packed: %s: %llu images of %llu bytes cannot fit in %zu bytes", name,
                    (unsigned long long)hd->count, (unsigned long long)image, size);
    if (hd->names_offset != HALLU_PACKED_HEADER_BYTES || hd->names_bytes > size ||
        hd->names_offset + hd->names_bytes > hd->pixels_offset || hd->pixels_offset > size)
        return FAIL("packed: %s: class names at %llu (+%llu bytes) overlap the pixels at %llu",
                    name, (unsigned long long)hd->names_offset,
                    (unsigned long long)hd->names_bytes, (unsigned long long)hd->pixels_offset);
    uint64_t pixel_end = hd->pixels_offset + hd->count * image;
    if (pixel_end < hd->pixels_offset || pixel_end > hd->labels_offset ||
        hd->labels_offset > size || (size - hd->labels_offset) / 4 != hd->count ||
        (size - hd->labels_offset) % 4 != 0)
        return FAIL("packed: %s: pixels end at %llu, labels at %llu: expected %llu labels of "
                    "4 bytes to end the %zu-byte file",
                    name, (unsigned long long)pixel_end, (unsigned long long)hd->labels_offset,
                    (unsigned long long)hd->count, size);
    return HALLU_OK;
}

static hallu_status parse_names(const uint8_t *p, const packed_header *hd, const char *name,
                                char ***out, hallu_error *err)
{
    *out = NULL;
    if (hd->num_classes == 0)
        return HALLU_OK;
    if ((uint64_t)hd->num_classes * 2 > hd->names_bytes)
        return FAIL("packed: %s: %u class names cannot fit in %llu bytes", name, hd->num_classes,
                    (unsigned long long)hd->names_bytes);
    char **names = calloc(hd->num_classes, sizeof *names);
    if (!names)
        return hallu_error_set(err, HALLU_ERR_OOM, "packed: %s: out of memory", name);
    size_t pos = 0;
    for (uint32_t c = 0; c < hd->num_classes; c++) {
        const uint8_t *nul = memchr(p + pos, 0, hd->names_bytes - pos);
        if (!nul || nul == p + pos || !(names[c] = strdup((const char *)p + pos))) {
            free_strings(names, hd->num_classes);
            return FAIL("packed: %s: class name %u is empty or not NUL-terminated", name, c);
        }
        pos = (size_t)(nul - p) + 1;
    }
    if (pos != hd->names_bytes) {
        free_strings(names, hd->num_classes);
        return FAIL("packed: %s: %llu bytes of class names, %zu used by %u names", name,
                    (unsigned long long)hd->names_bytes, pos, hd->num_classes);
    }
    *out = names;
    return HALLU_OK;
}

static hallu_status check_sums(const uint8_t *d, const packed_header *hd, bool verify_pixels,
                               const char *name, hallu_error *err)
{
    uint64_t meta = hallu_fnv1a64(HALLU_FNV_OFFSET, d + hd->names_offset, hd->names_bytes);
    meta = hallu_fnv1a64(meta, d + hd->labels_offset, 4 * hd->count);
    if (meta != hd->meta_sum)
        return FAIL("packed: %s: checksum of class names + labels is %016llx, header says %016llx "
                    "(file corrupt)", name, (unsigned long long)meta,
                    (unsigned long long)hd->meta_sum);
    if (!verify_pixels)
        return HALLU_OK;
    uint64_t image = (uint64_t)hd->h * hd->w * 3;
    uint64_t pix = hallu_fnv1a64(HALLU_FNV_OFFSET, d + hd->pixels_offset, hd->count * image);
    if (pix != hd->pixels_sum)
        return FAIL("packed: %s: pixel checksum is %016llx, header says %016llx (file corrupt)",
                    name, (unsigned long long)pix, (unsigned long long)hd->pixels_sum);
    return HALLU_OK;
}

static hallu_status check_labels(const uint8_t *d, const packed_header *hd, const char *name,
                                 hallu_error *err)
{
    for (uint64_t i = 0; i < hd->count; i++) {
        int32_t l = (int32_t)get_u32(d + hd->labels_offset + 4 * i);
        if (l < -1 || l >= (int32_t)hd->num_classes)
            return FAIL("packed: %s: image %llu has label %d, expected -1..%d", name,
                        (unsigned long long)i, l, (int)hd->num_classes - 1);
    }
    return HALLU_OK;
}

static hallu_status packed_validate(const data_buffer *buf, packed_header *hd,
                                    bool verify_pixels, hallu_error *err)
{
    const char *name = buf->name;
    if (buf->size < HALLU_PACKED_HEADER_BYTES || memcmp(buf->data, HALLU_PACKED_MAGIC, 8) != 0)
        return FAIL("packed: %s: not a packed file (needs the %d-byte header starting with '%s')",
                    name, HALLU_PACKED_HEADER_BYTES, HALLU_PACKED_MAGIC);
    header_decode(buf->data, hd);
    uint64_t sum = hallu_fnv1a64(HALLU_FNV_OFFSET, buf->data, 120);
    if (sum != hd->header_sum)
        return FAIL("packed: %s: header checksum is %016llx, header says %016llx (file corrupt)",
                    name, (unsigned long long)sum, (unsigned long long)hd->header_sum);
    hallu_status st = check_shape(hd, name, err);
    if (st == HALLU_OK)
        st = check_layout(hd, buf->size, name, err);
    if (st == HALLU_OK)
        st = check_sums(buf->data, hd, verify_pixels, name, err);
    if (st == HALLU_OK)
        st = check_labels(buf->data, hd, name, err);
    return st;
}

static hallu_status packed_build(hallu_dataset **out, packed_impl *k, hallu_split want,
                                 bool check_split, bool verify_pixels, hallu_error *err)
{
    char **names = NULL;
    hallu_status st = packed_validate(&k->buf, &k->hd, verify_pixels, err);
    if (st == HALLU_OK && check_split && k->hd.split != (uint32_t)want)
        st = hallu_error_set(err, HALLU_ERR_UNSUPPORTED,
                             "packed: %s holds the '%s' split, not '%s'", k->buf.name,
                             hallu_split_name((hallu_split)k->hd.split), hallu_split_name(want));
    if (st == HALLU_OK)
        st = parse_names(k->buf.data + k->hd.names_offset, &k->hd, k->buf.name, &names, err);
    if (st != HALLU_OK) {
        packed_destroy(k);
        return st;
    }
    k->image_bytes = (size_t)k->hd.h * k->hd.w * 3;
    packed_header hd = k->hd;
    if ((st = dataset_create(out, "packed", &packed_ops, k, err)) != HALLU_OK) {
        free_strings(names, hd.num_classes);
        return st;
    }
    (*out)->size = (int64_t)hd.count;
    (*out)->num_classes = (int)hd.num_classes;
    (*out)->class_names = names;
    (*out)->h = (int)hd.h;
    (*out)->w = (int)hd.w;
    (*out)->max_bytes = (size_t)hd.h * hd.w * 3;
    return HALLU_OK;
}

hallu_status packed_open_buffer(hallu_dataset **out, const data_buffer *buf, hallu_split want,
                                bool check_split, bool verify_pixels, hallu_error *err)
{
    *out = NULL;
    packed_impl *k = calloc(1, sizeof *k);
    if (!k)
        return hallu_error_set(err, HALLU_ERR_OOM, "packed: out of memory");
    k->buf = *buf;
    return packed_build(out, k, want, check_split, verify_pixels, err);
}

static hallu_status open_mapped(hallu_dataset **out, const char *path, hallu_split want,
                                bool check_split, bool verify_pixels, hallu_error *err)
{
    *out = NULL;
    packed_impl *k = calloc(1, sizeof *k);
    if (!k)
        return hallu_error_set(err, HALLU_ERR_OOM, "packed: out of memory");
    hallu_status st = map_file(&k->file, path, "packed", err);
    if (st != HALLU_OK) {
        free(k);
        return st;
    }
    k->buf = (data_buffer){ k->file.data, k->file.size, k->file.path };
    return packed_build(out, k, want, check_split, verify_pixels, err);
}

hallu_status hallu_packed_open(hallu_dataset **out, const char *path, int verify_pixels,
                               hallu_error *err)
{
    return open_mapped(out, path, HALLU_SPLIT_TRAIN, false, verify_pixels != 0, err);
}

hallu_status packed_open_spec(hallu_dataset **out, const char *path, hallu_split split,
                              hallu_error *err)
{
    if (!path_exists(path, true))
        return open_mapped(out, path, split, true, true, err);
    char name[32];
    snprintf(name, sizeof name, "%s.hpk", hallu_split_name(split));
    char *file = path_join(path, name);
    if (!file)
        return hallu_error_set(err, HALLU_ERR_OOM, "packed: out of memory");
    hallu_status st;
    if (!path_exists(file, false))
        st = hallu_error_set(err, HALLU_ERR_UNSUPPORTED, "packed: %s has no '%s' split (no %s)",
                             path, hallu_split_name(split), file);
    else
        st = open_mapped(out, file, split, true, true, err);
    free(file);
    return st;
}
