/* main.c -- the clvd command line. */
#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "daemon.h"
#include "demo.h"

#define DEFAULT_CONFIG "/etc/clvd/clvd.yaml"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: clvd [-c FILE]          run the daemon (default %s)\n"
            "       clvd --check-config FILE validate FILE, print the effective config\n"
            "       clvd demo | --demo        embedded Kafka, private Redis, a year of a "
            "synthetic shop\n"
            "       clvd --version\n",
            DEFAULT_CONFIG);
}

static int check_config(const char *path)
{
    struct clv_config cfg;
    char err[CLV_ERRLEN];

    if (config_load(path, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    config_print(&cfg, stdout);
    config_free(&cfg);
    fprintf(stderr, "%s: OK\n", path);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", required_argument, NULL, 'k'},
        {"demo", no_argument, NULL, 'd'},
        {"exit-when-idle", required_argument, NULL, 'i'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct clvd_options opt = {DEFAULT_CONFIG, 0};
    int ch;

    /* glibc gives every thread that allocates an arena of its own, up to 8
     * per core; librdkafka's threads, the workers and the metrics server
     * then each keep freed memory the others cannot reuse.  Two arenas cut
     * the peak RSS by about 10 MB at the same throughput (performance.md).
     * MALLOC_ARENA_MAX in the environment still wins. */
    if (getenv("MALLOC_ARENA_MAX") == NULL)
        mallopt(M_ARENA_MAX, 2);
    /* A fixed mmap threshold: glibc otherwise raises it to the size of each
     * large block freed, after which a batch's growing buffers come from
     * the arenas and stay there, fragmented.  Mapped, they go back to the
     * kernel when freed and grow by mremap: 74-76 -> 62-64 MB peak RSS with
     * 12 000-event batches (performance.md). */
    if (getenv("MALLOC_MMAP_THRESHOLD_") == NULL)
        mallopt(M_MMAP_THRESHOLD, 128 << 10);

    /* "+": stop at the first non-option, so "clvd demo --fast" leaves
     * --fast to the demo */
    while ((ch = getopt_long(argc, argv, "+c:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            opt.config_path = optarg;
            break;
        case 'k':
            return check_config(optarg);
        case 'd':
            return demo_run(argc - optind, argv + optind);
        case 'i':
            if (config_parse_duration(optarg, &opt.exit_when_idle) != 0) {
                fprintf(stderr, "clvd: --exit-when-idle: bad duration \"%s\"\n", optarg);
                return 2;
            }
            break;
        case 'V':
            printf("clvd %s\n", CLVD_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc && strcmp(argv[optind], "demo") == 0)
        return demo_run(argc - optind - 1, argv + optind + 1);
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    return clvd_run(&opt);
}
