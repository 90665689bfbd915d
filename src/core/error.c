#include "hallu/core.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

hallu_status hallu_error_set(hallu_error *err, hallu_status code, const char *fmt, ...)
{
    if (err) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

hallu_status hallu_error_prefix(hallu_error *err, hallu_status code, const char *fmt, ...)
{
    if (!err)
        return code;
    char msg[HALLU_ERROR_MSG_MAX];
    memcpy(msg, err->msg, sizeof msg);
    msg[sizeof msg - 1] = '\0';
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    /* the earlier message goes after the new one, cut to what fits (bounded by design) */
    if (n >= 0 && (size_t)n < sizeof err->msg && snprintf(err->msg + n, sizeof err->msg - (size_t)n, ": %s", msg) < 0)
        err->msg[n] = '\0';   /* an output error: the new message alone */
    err->code = code;
    return code;
}

void hallu_error_clear(hallu_error *err)
{
    if (err) {
        err->code = HALLU_OK;
        err->msg[0] = '\0';
    }
}

const char *hallu_status_name(hallu_status code)
{
    switch (code) {
    case HALLU_OK: return "ok";
    case HALLU_ERR_INVALID_ARG: return "invalid argument";
    case HALLU_ERR_OOM: return "out of memory";
    case HALLU_ERR_IO: return "I/O error";
    case HALLU_ERR_FORMAT: return "bad file format";
    case HALLU_ERR_UNSUPPORTED: return "unsupported";
    case HALLU_ERR_BACKEND: return "backend failure";
    case HALLU_ERR_INTERRUPTED: return "interrupted";
    }
    return "unknown status";
}
