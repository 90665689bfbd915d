/* libFuzzer target: the `hallu train --config FILE` reader (src/cli/config_file.c)
 * on arbitrary bytes, with a copy of hallu train's flag table (every flag kind:
 * strings, integers, numbers, booleans and their --no- forms). Any input must
 * either give argv tokens or fail with a message naming the file; the tokens
 * must be "--flag" for a boolean flag or "--flag VALUE" for the others, and
 * when every numeric value is well formed the flag parser must accept them. */
#include "cli/config_file.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *s_val[10];
static int i_val[24];
static double f_val[12];

/* hallu train's flags (src/cli/cmd_train.c, 2026-12-02, --init and --crop
 * included); the kinds matter here, not the destinations or the help. */
static const cli_arg train_args[] = {
    { "method", CLI_ARG_STR, &s_val[0], "" },
    { "hallucinator", CLI_ARG_BOOL, &i_val[0], "" },
    { "no-hallucinator", CLI_ARG_CLEAR, &i_val[0], "" },
    { "hal-init", CLI_ARG_STR, &s_val[1], "" },
    { "hal-ratio-max", CLI_ARG_FLOAT, &f_val[0], "" },
    { "hal-fixed-ratio", CLI_ARG_FLOAT, &f_val[1], "" },
    { "hal-hidden", CLI_ARG_INT, &i_val[1], "" },
    { "enqueue-duplicates", CLI_ARG_BOOL, &i_val[2], "" },
    { "mask-duplicates", CLI_ARG_BOOL, &i_val[3], "" },
    { "fix-pred-lr", CLI_ARG_BOOL, &i_val[4], "" },
    { "temperature", CLI_ARG_FLOAT, &f_val[2], "" },
    { "base-temperature", CLI_ARG_FLOAT, &f_val[3], "" },
    { "queue-size", CLI_ARG_INT, &i_val[5], "" },
    { "moco-momentum", CLI_ARG_FLOAT, &f_val[4], "" },
    { "bn-splits", CLI_ARG_INT, &i_val[6], "" },
    { "proj-dim", CLI_ARG_INT, &i_val[7], "" },
    { "data", CLI_ARG_STR, &s_val[2], "" },
    { "train-subset", CLI_ARG_INT, &i_val[8], "" },
    { "arch", CLI_ARG_STR, &s_val[3], "" },
    { "stem", CLI_ARG_STR, &s_val[4], "" },
    { "zero-init-residual", CLI_ARG_BOOL, &i_val[9], "" },
    { "crop", CLI_ARG_STR, &s_val[8], "" },
    { "init", CLI_ARG_STR, &s_val[9], "" },
    { "optimizer", CLI_ARG_STR, &s_val[5], "" },
    { "epochs", CLI_ARG_INT, &i_val[10], "" },
    { "batch-size", CLI_ARG_INT, &i_val[11], "" },
    { "lr", CLI_ARG_FLOAT, &f_val[5], "" },
    { "warmup-epochs", CLI_ARG_INT, &i_val[12], "" },
    { "momentum", CLI_ARG_FLOAT, &f_val[6], "" },
    { "weight-decay", CLI_ARG_FLOAT, &f_val[7], "" },
    { "seed", CLI_ARG_INT, &i_val[13], "" },
    { "threads", CLI_ARG_INT, &i_val[14], "" },
    { "no-knn-floor", CLI_ARG_CLEAR, &i_val[15], "" },
    { "keep-best", CLI_ARG_BOOL, &i_val[16], "" },
    { "out", CLI_ARG_STR, &s_val[6], "" },
    { "resume", CLI_ARG_BOOL, &i_val[17], "" },
    { "config", CLI_ARG_STR, &s_val[7], "" },
};
enum { NARGS = (int)(sizeof train_args / sizeof train_args[0]) };

static const cli_arg *flag_of(const char *tok)
{
    if (strncmp(tok, "--", 2) != 0)
        return NULL;
    return cli_arg_find(train_args, NARGS, tok + 2, strlen(tok + 2));
}

/* The value as the flag parser would take it (see parse_value in src/cli/args.c). */
static int value_ok(const cli_arg *a, const char *v)
{
    char *end = NULL;
    errno = 0;
    if (a->kind == CLI_ARG_INT) {
        long x = strtol(v, &end, 10);
        return !errno && end != v && !*end && x >= -2147483647L && x <= 2147483647L;
    }
    if (a->kind == CLI_ARG_FLOAT) {
        double x = strtod(v, &end);
        return !errno && end != v && !*end && isfinite(x);
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const ignored[] = { "image-size", NULL };
    cli_config_argv cfg;
    char msg[700];
    msg[0] = '\0';
    if (cli_config_parse((const char *)data, size, "fuzz.json", train_args, NARGS, ignored, &cfg, msg,
                         sizeof msg) != 0) {
        if (strncmp(msg, "--config fuzz.json: ", 20) != 0 || cfg.argv || cfg.argc)
            abort();
        return 0;
    }
    int numbers_ok = 1;
    for (int i = 0; i < cfg.argc; i++) {
        const cli_arg *a = flag_of(cfg.argv[i]);
        if (!a)
            abort();                          /* every token pair starts with a known flag */
        if (a->kind == CLI_ARG_BOOL || a->kind == CLI_ARG_CLEAR)
            continue;
        if (++i >= cfg.argc)
            abort();                          /* a valued flag without its value */
        numbers_ok &= value_ok(a, cfg.argv[i]);
    }
    char *argv0[] = { "train", NULL };
    int merged_argc = 0;
    char **merged = cli_config_merge(&cfg, 1, argv0, &merged_argc);
    if (!merged || merged_argc != cfg.argc + 1 || merged[merged_argc])
        abort();
    if (numbers_ok && cli_parse("", "", train_args, NARGS, merged_argc, merged, NULL, 0, NULL) != CLI_PARSE_OK)
        abort();
    free(merged);
    cli_config_free(&cfg);
    return 0;
}
