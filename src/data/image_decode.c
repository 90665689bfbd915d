/* JPEG (libjpeg API) and PNG (libpng) decoding from memory into RGB8 HWC.
 * Every call owns its decoder state, so decoding is thread-safe. Both
 * libraries report errors by longjmp; the handlers copy the message into a
 * per-call buffer first. */
#include "data/dataset_internal.h"

#include <setjmp.h>
#include <stdio.h>  /* before jpeglib.h, which uses FILE */

#include <jpeglib.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>

/* ---- JPEG ------------------------------------------------------------- */

typedef struct jpeg_err {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
} jpeg_err;

static void jpeg_on_error(j_common_ptr cinfo)
{
    jpeg_err *e = (jpeg_err *)cinfo->err;
    e->pub.format_message(cinfo, e->msg);
    longjmp(e->jump, 1);
}

/* Level -1 is a corrupt-data warning (truncated file, bad Huffman code): the
 * decoder would fill in grey, which must not pass as a valid image. */
static void jpeg_on_message(j_common_ptr cinfo, int level)
{
    if (level < 0)
        jpeg_on_error(cinfo);
}

/* Adobe writes CMYK inverted (0 = full ink); plain CMYK is not. */
static void cmyk_to_rgb(const uint8_t *src, uint8_t *dst, int w, int inverted)
{
    for (int x = 0; x < w; x++) {
        unsigned c = src[4 * x], m = src[4 * x + 1], y = src[4 * x + 2], k = src[4 * x + 3];
        if (!inverted) {
            c = 255 - c;
            m = 255 - m;
            y = 255 - y;
            k = 255 - k;
        }
        dst[3 * x] = (uint8_t)((c * k + 127) / 255);
        dst[3 * x + 1] = (uint8_t)((m * k + 127) / 255);
        dst[3 * x + 2] = (uint8_t)((y * k + 127) / 255);
    }
}

static void jpeg_read_rows(struct jpeg_decompress_struct *cinfo, hallu_image *img, uint8_t *cmyk)
{
    while (cinfo->output_scanline < cinfo->output_height) {
        uint8_t *dst = img->data + (size_t)cinfo->output_scanline * (size_t)img->w * 3;
        JSAMPROW row = cmyk ? cmyk : dst;
        if (jpeg_read_scanlines(cinfo, &row, 1) != 1)
            break;
        if (cmyk)
            cmyk_to_rgb(cmyk, dst, img->w, cinfo->saw_Adobe_marker);
    }
}

/* A corrupt or hostile header must not size buffers: training images are small. */
enum { IMAGE_MAX_SIDE = 16384 };

/* The header's size into *ph, *pw (0 when refused) and, with img, the buffer
 * checked for it. */
static hallu_status accept_size(const char *name, unsigned long h, unsigned long w, hallu_image *img, int *ph,
                                int *pw, hallu_error *err)
{
    int ok = h > 0 && w > 0 && h <= IMAGE_MAX_SIDE && w <= IMAGE_MAX_SIDE;
    *ph = ok ? (int)h : 0;
    *pw = ok ? (int)w : 0;
    if (!ok)
        return hallu_error_set(err, HALLU_ERR_FORMAT, "%s: header says %lux%lu pixels; expected 1..%d per side",
                               name, h, w, IMAGE_MAX_SIDE);
    return img ? image_prepare(img, *ph, *pw, name, err) : HALLU_OK;
}

static hallu_status jpeg_decode(const uint8_t *bytes, size_t len, const char *name,
                                hallu_image *img, int *ph, int *pw, hallu_error *err)
{
    struct jpeg_decompress_struct cinfo;
    jpeg_err je;
    uint8_t *volatile cmyk = NULL;
    hallu_status volatile st = HALLU_OK;
    cinfo.err = jpeg_std_error(&je.pub);
    je.pub.error_exit = jpeg_on_error;
    je.pub.emit_message = jpeg_on_message;
    if (setjmp(je.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(cmyk);
        return hallu_error_set(err, HALLU_ERR_FORMAT, "%s: corrupt JPEG: %s", name, je.msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, bytes, (unsigned long)len);
    jpeg_read_header(&cinfo, TRUE);
    st = accept_size(name, cinfo.image_height, cinfo.image_width, img, ph, pw, err);
    if (!img || st != HALLU_OK) {
        jpeg_destroy_decompress(&cinfo);
        return st;
    }
    bool is_cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    cinfo.out_color_space = is_cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    if (is_cmyk && !(cmyk = malloc((size_t)img->w * 4))) {
        jpeg_destroy_decompress(&cinfo);
        return hallu_error_set(err, HALLU_ERR_OOM, "%s: out of memory for a CMYK row", name);
    }
    jpeg_read_rows(&cinfo, img, cmyk);
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(cmyk);
    return HALLU_OK;
}

/* ---- PNG -------------------------------------------------------------- */

enum { PNG_CHUNK_MALLOC_MAX = 1 << 22 };   /* bytes libpng may allocate for one chunk */

typedef struct png_src {
    const uint8_t *bytes;
    size_t len, pos;
    char msg[256];
} png_src;

static void png_on_read(png_structp png, png_bytep out, size_t n)
{
    png_src *s = png_get_io_ptr(png);
    if (n > s->len - s->pos)
        png_error(png, "file is truncated");
    memcpy(out, s->bytes + s->pos, n);
    s->pos += n;
}

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_src *s = png_get_error_ptr(png);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

/* Every source layout ends as 8-bit RGB: the same conversions PIL's
 * convert("RGB") makes (16-bit keeps the high byte, alpha is dropped). */
static void png_to_rgb8(png_structp png, png_infop info)
{
    png_set_expand(png);
    png_set_strip_16(png);
    png_set_strip_alpha(png);
    png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
}

static hallu_status png_decode(const uint8_t *bytes, size_t len, const char *name,
                               hallu_image *img, int *ph, int *pw, hallu_error *err)
{
    png_src src = { bytes, len, 0, "" };
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_on_error,
                                             png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return hallu_error_set(err, HALLU_ERR_OOM, "%s: cannot create a PNG decoder", name);
    }
    png_bytep *volatile rows = NULL;
    hallu_status volatile st = HALLU_OK;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(rows);
        return hallu_error_set(err, HALLU_ERR_FORMAT, "%s: corrupt PNG: %s", name, src.msg);
    }
    png_set_read_fn(png, &src, png_on_read);
    /* libpng reads the ancillary chunks that carry variable data (sPLT, iCCP,
     * text, ...) into a buffer as long as the chunk says, so a crafted length
     * alone would make it allocate up to 2 GiB (found by fuzz_png). Pixels
     * need none of them: skip them unread, and cap any chunk buffer besides
     * (image data is streamed, not buffered). */
    static const png_byte skipped[] = "iCCP\0sPLT\0tEXt\0zTXt\0iTXt\0eXIf\0pCAL\0sCAL\0hIST\0tIME\0";
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, skipped, (int)(sizeof skipped / 5));
    png_set_chunk_malloc_max(png, PNG_CHUNK_MALLOC_MAX);
    png_read_info(png, info);
    st = accept_size(name, png_get_image_height(png, info), png_get_image_width(png, info), img, ph, pw, err);
    if (img && st == HALLU_OK) {
        png_to_rgb8(png, info);
        if (png_get_rowbytes(png, info) != (size_t)*pw * 3)
            png_error(png, "unexpected row size after conversion to RGB8");
        if (!(rows = malloc((size_t)*ph * sizeof *rows)))
            png_error(png, "out of memory for row pointers");
        for (int y = 0; y < *ph; y++)
            rows[y] = img->data + (size_t)y * (size_t)*pw * 3;
        png_read_image(png, rows);
        png_read_end(png, NULL);
    }
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    return st;
}

/* ---- dispatch ------------------------------------------------------------ */

static hallu_status decode_any(const uint8_t *bytes, size_t len, const char *name,
                               hallu_image *img, int *h, int *w, hallu_error *err)
{
    static const uint8_t png_magic[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
    if (len >= 3 && bytes[0] == 0xff && bytes[1] == 0xd8 && bytes[2] == 0xff)
        return jpeg_decode(bytes, len, name, img, h, w, err);
    if (len >= 8 && memcmp(bytes, png_magic, 8) == 0)
        return png_decode(bytes, len, name, img, h, w, err);
    if (len < 8)
        return hallu_error_set(err, HALLU_ERR_FORMAT,
                               "%s: %zu bytes are too short for a JPEG or PNG image", name, len);
    return hallu_error_set(err, HALLU_ERR_FORMAT,
                           "%s: not a JPEG or PNG image (starts with %02x %02x %02x %02x)", name,
                           bytes[0], bytes[1], bytes[2], bytes[3]);
}

hallu_status hallu_image_decode(const uint8_t *bytes, size_t len, const char *name,
                                hallu_image *img, hallu_error *err)
{
    int h, w;
    return decode_any(bytes, len, name ? name : "image", img, &h, &w, err);
}

hallu_status hallu_image_probe(const uint8_t *bytes, size_t len, const char *name, int *h, int *w,
                               hallu_error *err)
{
    return decode_any(bytes, len, name ? name : "image", NULL, h, w, err);
}
