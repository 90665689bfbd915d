/* Tiny declarative flag parser shared by every command: each command lists its
 * flags once; --help is generated from that list with the defaults (the values
 * the destinations hold before parsing). */
#ifndef HALLU_CLI_ARGS_H
#define HALLU_CLI_ARGS_H

#include <stddef.h>

/* CLI_ARG_BOOL sets *dest to 1, CLI_ARG_CLEAR (a "--no-x" flag) sets it to 0:
 * the later of the two on a command line wins. */
typedef enum { CLI_ARG_STR, CLI_ARG_INT, CLI_ARG_FLOAT, CLI_ARG_BOOL, CLI_ARG_CLEAR } cli_arg_kind;

typedef struct cli_arg {
    const char *name;     /* without the leading "--" */
    cli_arg_kind kind;
    void *dest;           /* const char **, int *, double *, or int * (bool, clear) */
    const char *help;
} cli_arg;

typedef enum { CLI_PARSE_OK = 0, CLI_PARSE_HELP = 1, CLI_PARSE_ERROR = 2 } cli_parse_result;

/* Parses argv[1..argc) (argv[0] is the command name). Prints --help to stdout,
 * errors (naming the flag and the expected value) to stderr. Positional
 * arguments are rejected unless positional != NULL, which receives them
 * (at most max_positional). */
/* The flag named by the first len characters of name, or NULL. */
const cli_arg *cli_arg_find(const cli_arg *args, int nargs, const char *name, size_t len);

/* The --device default of every computing command: $HALLU_DEVICE when set
 * (so a test suite can run every command on cpu-isolated), else "cpu". */
const char *cli_default_device(void);
/* The --device flag's help text (names the devices and the variable). */
#define CLI_DEVICE_HELP "device to compute on: cpu, cpu-isolated (a test backend) or cuda[:N] (GPU N, where `hallu version` lists cuda); default: $HALLU_DEVICE, else cpu"

cli_parse_result cli_parse(const char *usage, const char *summary, const cli_arg *args, int nargs,
                           int argc, char **argv, const char **positional, int max_positional,
                           int *npositional);

#endif
