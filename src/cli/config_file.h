/* --config FILE: a flat JSON object of flag values (the config.json that
 * `hallu train` writes into every run directory is one), turned into argv
 * tokens that go before the command line's own, so explicit flags win. */
#ifndef HALLU_CLI_CONFIG_FILE_H
#define HALLU_CLI_CONFIG_FILE_H

#include "cli/args.h"

#include <stddef.h>

typedef struct cli_config_argv {
    char **argv;      /* argc tokens; owns each string */
    int argc;
} cli_config_argv;

/* Reads path: each key (underscores read as dashes) must name a flag in args
 * or one of the ignored keys. A string or number gives "--key value"; true or
 * a non-zero number for a boolean flag gives "--key", false, null or 0 gives
 * "--no-key" (when args has it); any other value of a boolean flag is an
 * error, as is a raw control character (NUL included) in a string. On failure
 * writes a message naming the file and the key into msg and returns -1. */
int cli_config_load(const char *path, const cli_arg *args, int nargs, const char *const *ignored,
                    cli_config_argv *out, char *msg, size_t msg_len);
/* The same on text[0..len) (need not be NUL-terminated); name stands for the
 * file in messages. cli_config_load reads the file and calls this (so does the
 * fuzz target tests/fuzz/fuzz_config.c). */
int cli_config_parse(const char *text, size_t len, const char *name, const cli_arg *args, int nargs,
                     const char *const *ignored, cli_config_argv *out, char *msg, size_t msg_len);
void cli_config_free(cli_config_argv *c);

/* argv[0], the file's tokens, then argv[1..argc): a new array (free it; the
 * strings stay owned by file and argv). NULL when out of memory. */
char **cli_config_merge(const cli_config_argv *file, int argc, char **argv, int *merged_argc);

/* The value of "--name VALUE" or "--name=VALUE" in argv[1..argc), or NULL. */
const char *cli_find_flag(int argc, char **argv, const char *name);

#endif
