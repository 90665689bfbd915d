/* hallu plot RUNDIR: RUNDIR/metrics.jsonl -> RUNDIR/training.svg. */
#include "cli/args.h"
#include "cli/commands.h"
#include "hallu/eval.h"
#include "hallu/train.h"

#include <stdio.h>

int cmd_plot(int argc, char **argv)
{
    const char *out = NULL, *metrics = NULL, *pos[1] = { NULL };
    int npos = 0;
    cli_arg args[] = {
        { "metrics", CLI_ARG_STR, &metrics, "metrics file (default: RUNDIR/metrics.jsonl)" },
        { "out", CLI_ARG_STR, &out, "SVG to write (default: RUNDIR/training.svg)" },
    };
    cli_parse_result r = cli_parse("hallu plot RUNDIR [options]",
                                   "Plot a training run: loss, learning rate and kNN top-1 against epochs, as three "
                                   "stacked panels in one self-contained SVG (written atomically).",
                                   args, (int)(sizeof args / sizeof args[0]), argc, argv, pos, 1, &npos);
    if (r != CLI_PARSE_OK)
        return r == CLI_PARSE_HELP ? 0 : 2;
    if (npos != 1) {
        fprintf(stderr, "error: %s needs the run directory: %s RUNDIR (see '%s --help')\n", argv[0], argv[0], argv[0]);
        return 2;
    }
    char metrics_buf[4096], out_buf[4096];
    int n1 = snprintf(metrics_buf, sizeof metrics_buf, "%s/" HALLU_RUN_METRICS_FILE, pos[0]);
    int n2 = snprintf(out_buf, sizeof out_buf, "%s/training.svg", pos[0]);
    if (n1 < 0 || n2 < 0 || (size_t)n1 >= sizeof metrics_buf || (size_t)n2 >= sizeof out_buf) {
        fprintf(stderr, "error: run directory path too long: %s\n", pos[0]);
        return 2;
    }
    hallu_error err;
    hallu_error_clear(&err);
    const char *svg = out ? out : out_buf;
    if (hallu_plot_training(metrics ? metrics : metrics_buf, svg, &err) != HALLU_OK) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    printf("wrote %s\n", svg);
    return 0;
}
