/* threads.c - thread count for every command: $FTQ_THREADS or all cores. */
#include <stdlib.h>

#include "cmd/cmds.h"
#include "include/ftq.h"

void cmd_init_threads(void)
{
    const char *env = getenv("FTQ_THREADS");
    int n = 0;
    if (env && *env) {
        char *end = NULL;
        long v = strtol(env, &end, 10);
        if (end != env && !*end && v > 0 && v < 1024)
            n = (int)v;
    }
    ftq_set_threads(n);
}
