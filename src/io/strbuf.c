#include "io_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int sb_reserve(io_strbuf *sb, size_t extra)
{
    if (sb->oom)
        return 0;
    if (sb->len + extra + 1 <= sb->cap)
        return 1;
    size_t cap = sb->cap ? sb->cap : 256;
    while (cap < sb->len + extra + 1) {
        if (cap > ((size_t)-1) / 2) {
            sb->oom = 1;
            return 0;
        }
        cap *= 2;
    }
    char *p = realloc(sb->p, cap);
    if (!p) {
        sb->oom = 1;
        return 0;
    }
    sb->p = p;
    sb->cap = cap;
    return 1;
}

void io_sb_append(io_strbuf *sb, const char *s, size_t n)
{
    if (!sb_reserve(sb, n))
        return;
    memcpy(sb->p + sb->len, s, n);
    sb->len += n;
    sb->p[sb->len] = '\0';
}

void io_sb_puts(io_strbuf *sb, const char *s)
{
    io_sb_append(sb, s, strlen(s));
}

void io_sb_printf(io_strbuf *sb, const char *fmt, ...)
{
    char small[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        sb->oom = 1;
        return;
    }
    if ((size_t)n < sizeof small) {
        io_sb_append(sb, small, (size_t)n);
        return;
    }
    if (!sb_reserve(sb, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(sb->p + sb->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb->len += (size_t)n;
}

void io_sb_json_string(io_strbuf *sb, const char *s)
{
    size_t need = hallu_json_escape(NULL, 0, s);
    if (!sb_reserve(sb, need))
        return;
    hallu_json_escape(sb->p + sb->len, need + 1, s);
    sb->len += need;
}

void io_sb_free(io_strbuf *sb)
{
    free(sb->p);
    sb->p = NULL;
    sb->len = sb->cap = 0;
    sb->oom = 0;
}

size_t hallu_json_escape(char *out, size_t outsize, const char *s)
{
    size_t n = 0;
#define EMIT(c) do { if (n + 1 < outsize) out[n] = (c); n++; } while (0)
    EMIT('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            EMIT('\\');
            EMIT((char)c);
        } else if (c == '\n') {
            EMIT('\\');
            EMIT('n');
        } else if (c == '\t') {
            EMIT('\\');
            EMIT('t');
        } else if (c == '\r') {
            EMIT('\\');
            EMIT('r');
        } else if (c < 0x20 || c == 0x7f) {
            static const char hex[] = "0123456789abcdef";
            EMIT('\\');
            EMIT('u');
            EMIT('0');
            EMIT('0');
            EMIT(hex[c >> 4]);
            EMIT(hex[c & 15]);
        } else {
            EMIT((char)c);   /* UTF-8 passes through unchanged */
        }
    }
    EMIT('"');
#undef EMIT
    if (outsize)
        out[n < outsize ? n : outsize - 1] = '\0';
    return n;
}
