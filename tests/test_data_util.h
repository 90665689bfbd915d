/* Helpers for the dataset tests: temp folders, files, and JPEG/PNG writers
 * (libjpeg / libpng) so that every fixture is generated inside the test. */
#ifndef HALLU_TEST_DATA_UTIL_H
#define HALLU_TEST_DATA_UTIL_H

#include "hallu/data.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <png.h>

/* Removes dir and everything below it (no symlinks are followed). */
static inline void tdu_rm_rf(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        size_t n = strlen(dir) + strlen(e->d_name) + 2;
        char *p = malloc(n);
        snprintf(p, n, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            tdu_rm_rf(p);
        else
            remove(p);
        free(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

/* Creates a fresh folder under $TMPDIR (or /tmp); returns a static-free copy. */
static inline char *tdu_mkdtemp(const char *tag)
{
    const char *base = getenv("TMPDIR");
    char *path = malloc(512);
    snprintf(path, 512, "%s/hallu_%s_XXXXXX", base && *base ? base : "/tmp", tag);
    if (!mkdtemp(path)) {
        perror("mkdtemp");
        exit(1);
    }
    return path;
}

static inline void tdu_path(char *out, size_t n, const char *dir, const char *rel)
{
    snprintf(out, n, "%s/%s", dir, rel);
}

static inline void tdu_mkdir(const char *dir, const char *rel)
{
    char p[4096];
    tdu_path(p, sizeof p, dir, rel);
    mkdir(p, 0755);
}

static inline void tdu_write(const char *dir, const char *rel, const void *data, size_t n)
{
    char p[4096];
    tdu_path(p, sizeof p, dir, rel);
    FILE *f = fopen(p, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n)) {
        perror(p);
        exit(1);
    }
    fclose(f);
}

static inline void tdu_write_text(const char *dir, const char *rel, const char *text)
{
    tdu_write(dir, rel, text, strlen(text));
}

/* Reads a whole file (malloc'd); n gets its size. */
static inline uint8_t *tdu_read(const char *dir, const char *rel, size_t *n)
{
    char p[4096];
    tdu_path(p, sizeof p, dir, rel);
    FILE *f = fopen(p, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)len + 1);
    *n = fread(buf, 1, (size_t)len, f);
    fclose(f);
    return buf;
}

/* PNG: rows of w * channels samples of bit_depth bits (16-bit big-endian). */
static inline void tdu_write_png(const char *dir, const char *rel, int w, int h, int color_type,
                          int bit_depth, const uint8_t *pixels, size_t row_bytes,
                          const png_color *palette, int npalette)
{
    char p[4096];
    tdu_path(p, sizeof p, dir, rel);
    FILE *f = fopen(p, "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (!f || !png || !info || setjmp(png_jmpbuf(png))) {
        fprintf(stderr, "cannot write %s\n", p);
        exit(1);
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, bit_depth, color_type,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (palette)
        png_set_PLTE(png, info, palette, npalette);
    png_write_info(png, info);
    for (int y = 0; y < h; y++)
        png_write_row(png, pixels + (size_t)y * row_bytes);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    fclose(f);
}

/* JPEG from interleaved samples with `components` channels in color space cs. */
static inline void tdu_write_jpeg(const char *dir, const char *rel, int w, int h, int components,
                           J_COLOR_SPACE cs, const uint8_t *pixels, int quality)
{
    char p[4096];
    tdu_path(p, sizeof p, dir, rel);
    FILE *f = fopen(p, "wb");
    if (!f) {
        perror(p);
        exit(1);
    }
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = components;
    c.in_color_space = cs;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)c.next_scanline * w * components);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    fclose(f);
}

/* A smooth test pattern (JPEG-friendly), different per seed. */
static inline void tdu_pattern(uint8_t *rgb, int w, int h, int seed)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *px = rgb + ((size_t)y * w + x) * 3;
            px[0] = (uint8_t)(x * 255 / (w > 1 ? w - 1 : 1));
            px[1] = (uint8_t)(y * 255 / (h > 1 ? h - 1 : 1));
            px[2] = (uint8_t)((seed * 37 + (x + y) * 2) & 0xff);
        }
}

static inline double tdu_mean_abs_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += abs((int)a[i] - (int)b[i]);
    return n ? s / (double)n : 0;
}

static inline int tdu_contains(const char *haystack, const char *needle)
{
    return strstr(haystack, needle) != NULL;
}

#endif
