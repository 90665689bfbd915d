/* A reader for one JSON object per line that extracts numeric members by key.
 * Enough JSON to skip anything else (strings, nested arrays/objects, literals)
 * without misreading a key inside a string. */
#include "eval_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    return p;
}

/* p at '"'; returns the char after the closing quote, or NULL. The raw (still
 * escaped) contents are [*begin, *end). */
static const char *scan_string(const char *p, const char **begin, const char **end)
{
    *begin = ++p;
    for (; *p && *p != '"'; p++)
        if (*p == '\\' && !*++p)
            return NULL;
    if (*p != '"')
        return NULL;
    *end = p;
    return p + 1;
}

/* Skips one value of any kind; NULL on malformed input. */
static const char *skip_value(const char *p, int depth)
{
    p = skip_ws(p);
    const char *b, *e;
    if (*p == '"')
        return scan_string(p, &b, &e);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        if (depth > 32)
            return NULL;
        p = skip_ws(p + 1);
        if (*p == close)
            return p + 1;
        for (;;) {
            if (close == '}') {
                if (*p != '"' || !(p = scan_string(p, &b, &e)) || *(p = skip_ws(p)) != ':')
                    return NULL;
                p++;
            }
            if (!(p = skip_value(p, depth + 1)))
                return NULL;
            p = skip_ws(p);
            if (*p == close)
                return p + 1;
            if (*p != ',')
                return NULL;
            p = skip_ws(p + 1);
        }
    }
    static const char *const literals[] = { "true", "false", "null" };
    for (int i = 0; i < 3; i++)
        if (strncmp(p, literals[i], strlen(literals[i])) == 0)
            return p + strlen(literals[i]);
    char *endp = NULL;
    errno = 0;
    strtod(p, &endp);
    return endp != p ? endp : NULL;
}

static int key_index(const char *b, const char *e, const char *const *keys, int nkeys)
{
    size_t len = (size_t)(e - b);
    for (int i = 0; i < nkeys; i++)
        if (strlen(keys[i]) == len && memcmp(keys[i], b, len) == 0)
            return i;
    return -1;
}

int eval_json_numbers(const char *line, const char *const *keys, int nkeys, double *values, int *present)
{
    memset(present, 0, (size_t)nkeys * sizeof *present);
    const char *p = skip_ws(line);
    if (*p++ != '{')
        return -1;
    p = skip_ws(p);
    if (*p == '}')
        return *skip_ws(p + 1) ? -1 : 0;
    for (;;) {
        const char *kb, *ke;
        if (*p != '"' || !(p = scan_string(p, &kb, &ke)) || *(p = skip_ws(p)) != ':')
            return -1;
        p = skip_ws(p + 1);
        int k = key_index(kb, ke, keys, nkeys);
        const char *v = p;
        if (!(p = skip_value(p, 0)))
            return -1;
        if (k >= 0 && (*v == '-' || (*v >= '0' && *v <= '9'))) {
            double d = strtod(v, NULL);
            if (isfinite(d)) {
                values[k] = d;
                present[k] = 1;
            }
        }
        p = skip_ws(p);
        if (*p == '}')
            return *skip_ws(p + 1) ? -1 : 0;
        if (*p != ',')
            return -1;
        p = skip_ws(p + 1);
    }
}
