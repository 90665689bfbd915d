#include "cli/args.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_default(const cli_arg *a)
{
    switch (a->kind) {
    case CLI_ARG_STR: {
        const char *v = *(const char **)a->dest;
        printf(" (default: %s)", v ? v : "none");
        break;
    }
    case CLI_ARG_INT: printf(" (default: %d)", *(int *)a->dest); break;
    case CLI_ARG_FLOAT: printf(" (default: %g)", *(double *)a->dest); break;
    case CLI_ARG_BOOL:
    case CLI_ARG_CLEAR: break;
    }
}

static void print_help(const char *usage, const char *summary, const cli_arg *args, int nargs)
{
    printf("usage: %s\n\n%s\n\noptions:\n", usage, summary);
    for (int i = 0; i < nargs; i++) {
        const char *meta = args[i].kind == CLI_ARG_STR ? " VALUE" : args[i].kind == CLI_ARG_INT ? " N"
                         : args[i].kind == CLI_ARG_FLOAT ? " X" : "";
        printf("  --%s%s\n      %s", args[i].name, meta, args[i].help);
        print_default(&args[i]);
        printf("\n");
    }
    printf("  --help\n      show this help and exit\n");
}

static int parse_value(const cli_arg *a, const char *text)
{
    char *end = NULL;
    errno = 0;
    switch (a->kind) {
    case CLI_ARG_STR: *(const char **)a->dest = text; return 0;
    case CLI_ARG_INT: {
        long v = strtol(text, &end, 10);
        if (errno || end == text || *end || v < -2147483647L || v > 2147483647L) {
            fprintf(stderr, "error: --%s expects an integer, got '%s'\n", a->name, text);
            return -1;
        }
        *(int *)a->dest = (int)v;
        return 0;
    }
    case CLI_ARG_FLOAT: {
        double v = strtod(text, &end);
        if (errno || end == text || *end || !isfinite(v)) {
            fprintf(stderr, "error: --%s expects a number, got '%s'\n", a->name, text);
            return -1;
        }
        *(double *)a->dest = v;
        return 0;
    }
    case CLI_ARG_BOOL: *(int *)a->dest = 1; return 0;
    case CLI_ARG_CLEAR: *(int *)a->dest = 0; return 0;
    }
    return -1;
}

const cli_arg *cli_arg_find(const cli_arg *args, int nargs, const char *name, size_t len)
{
    for (int j = 0; j < nargs; j++)
        if (strlen(args[j].name) == len && strncmp(args[j].name, name, len) == 0)
            return &args[j];
    return NULL;
}

cli_parse_result cli_parse(const char *usage, const char *summary, const cli_arg *args, int nargs,
                           int argc, char **argv, const char **positional, int max_positional,
                           int *npositional)
{
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *tok = argv[i];
        if (strcmp(tok, "--help") == 0 || strcmp(tok, "-h") == 0) {
            print_help(usage, summary, args, nargs);
            return CLI_PARSE_HELP;
        }
        if (strncmp(tok, "--", 2) != 0) {
            if (!positional || npos >= max_positional) {
                fprintf(stderr, "error: unexpected argument '%s' (see '%s --help')\n", tok, argv[0]);
                return CLI_PARSE_ERROR;
            }
            positional[npos++] = tok;
            continue;
        }
        const char *name = tok + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const cli_arg *a = cli_arg_find(args, nargs, name, len);
        if (!a) {
            fprintf(stderr, "error: unknown flag '--%.*s' for '%s' (see '%s --help')\n", (int)len, name,
                    argv[0], argv[0]);
            return CLI_PARSE_ERROR;
        }
        const char *value = NULL;
        if (a->kind == CLI_ARG_BOOL || a->kind == CLI_ARG_CLEAR) {
            if (eq) {
                fprintf(stderr, "error: --%s takes no value\n", a->name);
                return CLI_PARSE_ERROR;
            }
        } else if (eq) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            fprintf(stderr, "error: --%s needs a value\n", a->name);
            return CLI_PARSE_ERROR;
        }
        if (parse_value(a, value) != 0)
            return CLI_PARSE_ERROR;
    }
    if (npositional)
        *npositional = npos;
    return CLI_PARSE_OK;
}

const char *cli_default_device(void)
{
    const char *d = getenv("HALLU_DEVICE");
    return d && d[0] ? d : "cpu";
}
