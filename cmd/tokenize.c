/* tokenize.c - placeholder until the command lands. */
#include "cmd/cmds.h"
#include "cmd/opts.h"

int cmd_tokenize(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cmd_fail("tokenize", "not implemented yet");
}
