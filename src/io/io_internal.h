/* Helpers shared by the io module's files (not public API). */
#ifndef HALLU_IO_INTERNAL_H
#define HALLU_IO_INTERNAL_H

#include "hallu/io.h"

#include <stddef.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "hallu io writes tensors in host byte order, which must be little-endian"
#endif

/* A growable string; allocation failure is sticky (oom) and checked once at the end. */
typedef struct io_strbuf {
    char *p;
    size_t len, cap;
    int oom;
} io_strbuf;

void io_sb_append(io_strbuf *sb, const char *s, size_t n);
void io_sb_puts(io_strbuf *sb, const char *s);
void io_sb_printf(io_strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal, quotes included. */
void io_sb_json_string(io_strbuf *sb, const char *s);
void io_sb_free(io_strbuf *sb);

#endif
