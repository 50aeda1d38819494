/* demo.c -- placeholder until the demo lands (issue 2). */
#include "demo.h"

#include <stdio.h>

int demo_run(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "clvd demo: not built yet\n");
    return 1;
}
