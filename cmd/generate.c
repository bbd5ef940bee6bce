/* generate.c - placeholder until the command lands. */
#include "cmd/cmds.h"
#include "cmd/opts.h"

int cmd_generate(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cmd_fail("generate", "not implemented yet");
}
