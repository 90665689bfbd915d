#include "cli/args.h"
#include "cli/commands.h"
#include "hallu/core.h"
#include "hallu/dist.h"

#include <stdio.h>

int cmd_version(int argc, char **argv)
{
    cli_parse_result r = cli_parse("hallu version", "Print the version, the backends and the communicators compiled in.",
                                   NULL, 0, argc, argv, NULL, 0, NULL);
    if (r != CLI_PARSE_OK)
        return r == CLI_PARSE_HELP ? 0 : 2;
    printf("hallu %s\nbackends: %s\ncommunicators: %s\n", hallu_version(), hallu_backends_compiled(),
           hallu_comm_names());
    return 0;
}
