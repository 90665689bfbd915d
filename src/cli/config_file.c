#include "cli/config_file.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_MAX_BYTES (1 << 20)

typedef struct cfg_parser {
    const char *base, *p, *end, *path;
    char *msg;
    size_t msg_len;
} cfg_parser;

static int fail(cfg_parser *ps, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(ps->msg, ps->msg_len, "--config %s: %s (byte %ld); expected a JSON object of flag values such as "
             "a run's config.json", ps->path, what, (long)(ps->p - ps->base));
    return -1;
}

static void skip_ws(cfg_parser *ps)
{
    while (ps->p < ps->end && isspace((unsigned char)*ps->p))
        ps->p++;
}

static int accept_char(cfg_parser *ps, char c)
{
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == c) {
        ps->p++;
        return 1;
    }
    return 0;
}

/* The escape after a backslash at ps->p: one of \" \\ \/ \b \f \n \r \t, or
 * \u0001..\u007f (hallu's own JSON writer escapes control characters so). */
static int parse_escape(cfg_parser *ps, char *out)
{
    static const char esc[] = "\"\\/bfnrt", val[] = "\"\\/\b\f\n\r\t";
    if (ps->p < ps->end && *ps->p == 'u') {
        unsigned v = 0;
        int ok = ps->end - ps->p >= 5;
        for (int i = 1; ok && i <= 4; i++) {
            char h = ps->p[i];
            ok = isxdigit((unsigned char)h) != 0;
            v = v * 16 + (unsigned)(isdigit((unsigned char)h) ? h - '0' : tolower((unsigned char)h) - 'a' + 10);
        }
        if (!ok || v == 0 || v > 0x7f)
            return fail(ps, "only \\u0001..\\u007f escapes are supported in a string");
        *out = (char)v;
        ps->p += 5;
        return 0;
    }
    const char *k = ps->p < ps->end && *ps->p ? strchr(esc, *ps->p) : NULL;
    if (!k)
        return fail(ps, "unsupported escape in a string");
    *out = val[k - esc];
    ps->p++;
    return 0;
}

/* A JSON string into a new buffer. */
static int parse_string(cfg_parser *ps, char **out)
{
    if (!accept_char(ps, '"'))
        return fail(ps, "expected a string");
    char *s = malloc((size_t)(ps->end - ps->p) + 1);
    if (!s)
        return fail(ps, "out of memory");
    size_t n = 0;
    while (ps->p < ps->end && *ps->p != '"') {
        if ((unsigned char)*ps->p < 0x20) {   /* raw NUL, newline, ...: not JSON, and a NUL would cut the text */
            free(s);
            return fail(ps, "a control character in a string (write it as \\u00XX)");
        }
        char c = *ps->p++;
        if (c == '\\' && parse_escape(ps, &c) != 0) {
            free(s);
            return -1;
        }
        s[n++] = c;
    }
    if (ps->p >= ps->end) {
        free(s);
        return fail(ps, "unterminated string");
    }
    ps->p++;
    s[n] = '\0';
    *out = s;
    return 0;
}

/* A number, true, false or null as its text; an array is skipped (*out NULL). */
static int parse_scalar(cfg_parser *ps, char **out)
{
    skip_ws(ps);
    *out = NULL;
    if (ps->p < ps->end && *ps->p == '[') {
        int depth = 0, in_string = 0;
        do {   /* brackets inside strings ("image_size": ["]"]) do not count */
            char c = *ps->p++;
            if (in_string) {
                if (c == '\\' && ps->p < ps->end)
                    ps->p++;                  /* the escaped character */
                else if (c == '"')
                    in_string = 0;
            } else if (c == '"') {
                in_string = 1;
            } else {
                depth += c == '[' ? 1 : c == ']' ? -1 : 0;
            }
        } while (ps->p < ps->end && depth > 0);
        return depth == 0 ? 0 : fail(ps, "unterminated array");
    }
    const char *start = ps->p;
    while (ps->p < ps->end && *ps->p && (isalnum((unsigned char)*ps->p) || strchr("+-.", *ps->p)))
        ps->p++;
    if (ps->p == start)
        return fail(ps, "expected a value");
    *out = strndup(start, (size_t)(ps->p - start));
    return *out ? 0 : fail(ps, "out of memory");
}

static int is_ignored(const char *key, const char *const *ignored)
{
    for (int i = 0; ignored && ignored[i]; i++)
        if (strcmp(ignored[i], key) == 0)
            return 1;
    return 0;
}

static int push(cli_config_argv *c, const char *prefix, const char *text)
{
    char **grown = realloc(c->argv, (size_t)(c->argc + 1) * sizeof *grown);
    if (!grown)
        return -1;
    c->argv = grown;
    size_t n = strlen(prefix) + strlen(text) + 1;
    if (!(c->argv[c->argc] = malloc(n)))
        return -1;
    snprintf(c->argv[c->argc++], n, "%s%s", prefix, text);
    return 0;
}

/* A boolean flag's value: true, false, null or a number (non-zero is true);
 * -1 for anything else. */
static int truth(const char *v)
{
    if (strcmp(v, "true") == 0)
        return 1;
    if (strcmp(v, "false") == 0 || strcmp(v, "null") == 0)
        return 0;
    char *end = NULL;
    double d = strtod(v, &end);
    return end != v && *end == '\0' ? d != 0.0 : -1;
}

/* One "key": value pair into argv tokens. */
static int add_pair(cfg_parser *ps, const cli_arg *args, int nargs, const char *const *ignored, char *key,
                    char *value, int value_is_string, cli_config_argv *out)
{
    char flag_name[256];
    snprintf(flag_name, sizeof flag_name, "%s", key);
    for (char *q = flag_name; *q; q++)
        if (*q == '_')
            *q = '-';
    const cli_arg *a = cli_arg_find(args, nargs, flag_name, strlen(flag_name));
    if (!a)
        return is_ignored(flag_name, ignored) ? 0 : fail(ps, "unknown key \"%s\" (not a flag of this command)", key);
    if (!value)
        return fail(ps, "key \"%s\": an array is not a flag value", key);
    if (a->kind == CLI_ARG_BOOL || a->kind == CLI_ARG_CLEAR) {
        int t = value_is_string ? -1 : truth(value);
        if (t < 0)
            return fail(ps, "key \"%s\": expected true/false or 1/0, got %s%s%s", key, value_is_string ? "\"" : "",
                        value, value_is_string ? "\"" : "");
        char negated[300];
        snprintf(negated, sizeof negated, "no-%s", flag_name);
        const char *flag = t ? a->name : a->kind == CLI_ARG_BOOL && cli_arg_find(args, nargs, negated, strlen(negated))
                                                          ? negated : NULL;
        return flag && push(out, "--", flag) ? fail(ps, "out of memory") : 0;
    }
    if ((a->kind == CLI_ARG_STR) != value_is_string)
        return fail(ps, "key \"%s\": expected a %s", key, a->kind == CLI_ARG_STR ? "string" : "number");
    if (push(out, "--", a->name) || push(out, "", value))
        return fail(ps, "out of memory");
    return 0;
}

static int parse_object(cfg_parser *ps, const cli_arg *args, int nargs, const char *const *ignored,
                        cli_config_argv *out)
{
    if (!accept_char(ps, '{'))
        return fail(ps, "expected '{'");
    if (accept_char(ps, '}'))
        return 0;
    do {
        char *key = NULL, *value = NULL;
        int rc = parse_string(ps, &key);
        if (rc == 0 && !accept_char(ps, ':'))
            rc = fail(ps, "expected ':' after \"%s\"", key);
        skip_ws(ps);
        int is_string = ps->p < ps->end && *ps->p == '"';
        if (rc == 0)
            rc = is_string ? parse_string(ps, &value) : parse_scalar(ps, &value);
        if (rc == 0)
            rc = add_pair(ps, args, nargs, ignored, key, value, is_string, out);
        free(key);
        free(value);
        if (rc != 0)
            return rc;
    } while (accept_char(ps, ','));
    if (!accept_char(ps, '}'))
        return fail(ps, "expected ',' or '}'");
    skip_ws(ps);
    return ps->p == ps->end ? 0 : fail(ps, "trailing characters after the object");
}

static char *read_file(const char *path, size_t *len, char *msg, size_t msg_len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(msg, msg_len, "--config %s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(CONFIG_MAX_BYTES + 1);
    size_t n = buf ? fread(buf, 1, CONFIG_MAX_BYTES + 1, f) : 0;
    int bad = !buf || ferror(f) || n > CONFIG_MAX_BYTES;
    fclose(f);
    if (bad) {
        snprintf(msg, msg_len, "--config %s: %s", path, !buf ? "out of memory"
                 : n > CONFIG_MAX_BYTES ? "larger than 1 MiB; expected a small JSON object" : "read error");
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

int cli_config_load(const char *path, const cli_arg *args, int nargs, const char *const *ignored,
                    cli_config_argv *out, char *msg, size_t msg_len)
{
    out->argv = NULL;
    out->argc = 0;
    size_t len = 0;
    char *text = read_file(path, &len, msg, msg_len);
    if (!text)
        return -1;
    int rc = cli_config_parse(text, len, path, args, nargs, ignored, out, msg, msg_len);
    free(text);
    return rc;
}

int cli_config_parse(const char *text, size_t len, const char *name, const cli_arg *args, int nargs,
                     const char *const *ignored, cli_config_argv *out, char *msg, size_t msg_len)
{
    out->argv = NULL;
    out->argc = 0;
    cfg_parser ps = { .base = text, .p = text, .end = text + len, .path = name, .msg = msg, .msg_len = msg_len };
    int rc = parse_object(&ps, args, nargs, ignored, out);
    if (rc != 0)
        cli_config_free(out);
    return rc;
}

void cli_config_free(cli_config_argv *c)
{
    for (int i = 0; i < c->argc; i++)
        free(c->argv[i]);
    free(c->argv);
    c->argv = NULL;
    c->argc = 0;
}

char **cli_config_merge(const cli_config_argv *file, int argc, char **argv, int *merged_argc)
{
    char **m = malloc((size_t)(argc + file->argc + 1) * sizeof *m);
    if (!m)
        return NULL;
    m[0] = argv[0];
    if (file->argc > 0)   /* an empty object leaves file->argv NULL: no memcpy from NULL */
        memcpy(m + 1, file->argv, (size_t)file->argc * sizeof *m);
    if (argc > 1)
        memcpy(m + 1 + file->argc, argv + 1, (size_t)(argc - 1) * sizeof *m);
    m[argc + file->argc] = NULL;
    *merged_argc = argc + file->argc;
    return m;
}

const char *cli_find_flag(int argc, char **argv, const char *name)
{
    size_t len = strlen(name);
    for (int i = 1; i < argc; i++) {
        const char *t = argv[i];
        if (strncmp(t, "--", 2) != 0 || strncmp(t + 2, name, len) != 0)
            continue;
        if (t[2 + len] == '=')
            return t + 3 + len;
        if (t[2 + len] == '\0' && i + 1 < argc)
            return argv[i + 1];
    }
    return NULL;
}
