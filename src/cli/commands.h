/* One function per `hallu <command>`; each returns the process exit status
 * (0 ok, 1 runtime failure, 2 usage error). argv[0] is the command's full name. */
#ifndef HALLU_CLI_COMMANDS_H
#define HALLU_CLI_COMMANDS_H

typedef int (*cli_command_fn)(int argc, char **argv);

typedef struct cli_command {
    const char *name;
    cli_command_fn run;
    const char *summary;
} cli_command;

int cmd_version(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_knn(int argc, char **argv);
int cmd_linear(int argc, char **argv);
int cmd_features(int argc, char **argv);
int cmd_plot(int argc, char **argv);

#endif
