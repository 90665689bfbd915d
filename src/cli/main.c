#include "cli/commands.h"
#include "hallu/core.h"

#include <stdio.h>
#include <string.h>

static const cli_command commands[] = {
    { "train", cmd_train, "self-supervised pre-training (SimCLR, MoCo v1/v2, SimSiam; --hallucinator)" },
    { "export", cmd_export, "export a checkpoint's backbone as safetensors with torchvision names" },
    { "version", cmd_version, "print the version and the compiled-in backends" },
    { "data", cmd_data, "inspect, verify or pack a dataset (info, pack)" },
    { "knn", cmd_knn, "kNN accuracy of a frozen backbone (k=200, T=0.1, cosine)" },
    { "linear", cmd_linear, "linear-probe accuracy of a frozen backbone (SGD, 100 epochs)" },
    { "features", cmd_features, "write a frozen backbone's features of a dataset as .npy" },
    { "plot", cmd_plot, "plot a run's loss, lr and kNN accuracy to RUNDIR/training.svg" },
};
enum { NUM_COMMANDS = sizeof commands / sizeof commands[0] };

static void print_usage(FILE *out)
{
    fprintf(out, "hallu %s: self-supervised visual representation learning with the Hallucinator\n\n"
                 "usage: hallu <command> [options]   (hallu <command> --help for its flags)\n\ncommands:\n",
            hallu_version());
    for (int i = 0; i < NUM_COMMANDS; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        print_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0)
        return cmd_version(argc - 1, argv + 1);
    for (int i = 0; i < NUM_COMMANDS; i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            char full[64];
            snprintf(full, sizeof full, "hallu %s", commands[i].name);
            argv[1] = full;
            return commands[i].run(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "error: unknown command '%s'\n\n", argv[1]);
    print_usage(stderr);
    return 2;
}
