/* bench.c -- clvd_bench: the SPEC section 15 benchmark in one command.
 *
 *   clvd_bench [options]        (bench/run.sh builds Release and runs it)
 *
 * Phases (each with its own redis-server and Kafka mock cluster):
 *   max      the stream as fast as clvd takes it: events/s end to end,
 *            Redis traffic per event, clvd RSS, Redis bytes per customer;
 *   half     the same stream at half the measured rate, for a while:
 *            latency at half load (--rate N instead: one run at N events/s);
 *   ceiling  Redis alone running apply.lua, pipelined, 1 and 2 threads.
 * Prints a table and (--json FILE) writes the figures.  What each figure
 * means and how it is measured: docs/performance.md; --instances N (clvd
 * processes in one group) and --redis-cluster N (masters): docs/scaling.md. */
#include "bench.h"

#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#define TARGET_EVENTS_PER_S 150000.0
#define TARGET_FRACTION 0.60
#define TARGET_P99_MS 25.0
#define TARGET_RSS_MB 64.0
#define TARGET_BYTES_PER_CUSTOMER 300.0
#define TARGET_CUSTOMERS 1000000u

struct results {
    struct b_phase max, half;
    int have_max, have_half;
    struct b_ceiling ce;
    int have_ceiling;
    double fraction;        /* clvd events/s / ceiling events/s (clvd's command mix) */
    double fraction_script; /* clvd apply calls/s / script calls/s */
    double ceiling_events_per_s;
    char date[32], cpu[128], kernel[160], redis_version[64];
    long ncpu;
};

void b_opts_default(struct b_opts *o)
{
    const char *tmp = getenv("TMPDIR");

    memset(o, 0, sizeof(*o));
    o->clvd = "build-release/clvd";
    o->redis_server = getenv("REDIS_SERVER") ? getenv("REDIS_SERVER") : "redis-server";
    o->redis_cli = getenv("REDIS_CLI") ? getenv("REDIS_CLI") : "redis-cli";
    o->workdir = tmp && tmp[0] ? tmp : "/tmp";
    o->commit = "";
    o->customers = 100000;
    o->mix[0] = 60;
    o->mix[1] = 30;
    o->mix[2] = 10;
    o->seed = 1;
    o->partitions = 0;
    o->preload = 1;
    o->out_partitions = 1;
    o->rate_partitions = 0; /* by the rate: rate_partitions_for() */
    o->brokers = 1;
    o->warmup_seconds = 5;
    o->shards = 1024;
    o->linger_ms = 5;
    o->compression = "none";
    o->fetch_wait_ms = 1;
    o->half_seconds = 15;
    o->ceiling_seconds = 4;
    o->ceiling_depth = 1000;
    o->instances = 1;
    o->workers = -1;
    o->state_cache_mb = -1;
}

static void usage(FILE *f)
{
    fprintf(
        f, "usage: clvd_bench [options]\n"
           "  --clvd PATH            clvd binary (default build-release/clvd)\n"
           "  --redis-server PATH    redis-server binary (default from PATH, or $REDIS_SERVER)\n"
           "  --redis-cli PATH       redis-cli binary, for --redis-cluster (default from PATH,\n"
           "                         or $REDIS_CLI)\n"
           "  --instances N          clvd processes in one consumer group, 1..8 (default 1);\n"
           "                         counters and CPU are summed, RSS is the largest and the sum\n"
           "  --redis-cluster N      a Redis Cluster of N masters (3..8) on loopback TCP instead\n"
           "                         of one redis-server on a unix socket; Redis figures are\n"
           "                         summed over the masters; the ceiling is not run\n"
           "  --customers N          customers of the generated shop (default 100000)\n"
           "  --events N             input events (default: the whole generated year)\n"
           "  --mix V,L,P            visits, logins, purchases shares (default 60,30,10)\n"
           "  --acquisition-days D   customers arrive over the first D days (default 365)\n"
           "  --seed N               generator seed (default 1)\n"
           "  --rate N               one run at N events/s instead of max + half\n"
           "  --half-seconds S       length of the half-load run after the warm-up (default 15)\n"
           "  --partitions N         partitions per input topic, max-rate run (default: the\n"
           "                         fewest powers of two, at least 8, that hold the preloaded\n"
           "                         stream in the mock; 8 with --no-preload)\n"
           "  --no-preload           max-rate run: produce while clvd consumes, flow-controlled\n"
           "                         against the mock's capacity, instead of producing the whole\n"
           "                         stream before clvd starts (see docs)\n"
           "  --rate-partitions N    partitions per input topic, half-load and --rate runs\n"
           "                         (default: 1 per 80 000 events/s, rounded up; see docs:\n"
           "                         the mock's fetch path)\n"
           "  --out-partitions N     partitions per output topic, 1..4 (default 1)\n"
           "  --brokers N            brokers of the mock cluster (default 1)\n"
           "  --warmup-seconds S     latency leaves out inputs of the first S seconds (default 5)\n"
           "  --shards N             redis.shards (default 1024)\n"
           "  --history              event times from the generator (a year before now) and\n"
           "                         clock.mode event, instead of live times and the wall clock\n"
           "  --linger-ms N          input producer linger.ms (default 5; see docs)\n"
           "  --compression C        input producer compression.codec (default none)\n"
           "  --fetch-wait-ms N      clvd's fetch.wait.max.ms (default 1; see docs)\n"
           "  --clvd-property K=V    add a kafka.properties entry to clvd's config (repeatable)\n"
           "  --workers N            clvd's processing.workers (default: clvd's)\n"
           "  --state-cache-mb N     clvd's processing.state_cache_mb (default: clvd's)\n"
           "  --redis-config 'K V'   CONFIG SET K V on every redis-server (repeatable, up to 8);\n"
           "                         zset-max-listpack-entries defaults to the value\n"
           "                         docs/scaling.md recommends: 2 x customers per shard\n"
           "  --ceiling-seconds S    length of each ceiling run, 2 rounds of 4 (default 4)\n"
           "  --ceiling-depth N      pipeline depth of the ceiling runs (default 1000)\n"
           "  --skip-ceiling         no Redis ceiling\n"
           "  --skip-half            no half-load run\n"
           "  --skip-max             no max-rate run (with --rate: the rate run only)\n"
           "  --perf FILE            perf record clvd (FILE) and redis-server (FILE.redis)\n"
           "                         during the max run (the first instance and master)\n"
           "  --json FILE            write the results as JSON\n"
           "  --commit LABEL         label printed with the results (e.g. a git commit)\n"
           "  --keep                 keep the temporary directories (logs, configs)\n"
           "  --quiet                no progress lines\n");
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    double v = strtod(s, &end);

    if (end == s || *end != '\0' || !(v >= 0) || v > 1e15)
        return -1;
    *out = (uint64_t)v;
    return 0;
}

static int parse_double(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);

    if (end == s || *end != '\0' || !isfinite(v) || v < 0)
        return -1;
    *out = v;
    return 0;
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    uint64_t v;

    if (parse_u64(s, &v) != 0 || v < (uint64_t)lo || v > (uint64_t)hi)
        return -1;
    *out = (int)v;
    return 0;
}

static int parse_mix(const char *s, double mix[3])
{
    if (sscanf(s, "%lf,%lf,%lf", &mix[0], &mix[1], &mix[2]) != 3)
        return -1;
    for (int i = 0; i < 3; i++)
        if (!(mix[i] >= 0) || !isfinite(mix[i]))
            return -1;
    return mix[2] > 0 ? 0 : -1;
}

/* "key=value" as a line of clvd's kafka.properties (quoted YAML strings). */
/* "name value": a CONFIG SET for the bench's redis-servers. */
static int add_redis_config(struct b_opts *o, const char *nv)
{
    const char *sp = strchr(nv, ' ');
    char(*slot)[64];

    if (sp == NULL || sp == nv || o->nredis_config == 8 || (size_t)(sp - nv) >= 64 ||
        strlen(sp + 1) >= 64)
        return -1;
    slot = o->redis_config[o->nredis_config++];
    snprintf(slot[0], 64, "%.*s", (int)(sp - nv), nv);
    snprintf(slot[1], 64, "%s", sp + 1);
    return 0;
}

/* The Redis setting docs/scaling.md recommends for this many customers per
 * shard, unless --redis-config sets it: a shard's due index stays a compact
 * listpack while it holds at most zset-max-listpack-entries members, and
 * the counts scatter around customers / shards. */
static void recommended_redis_config(struct b_opts *o)
{
    long per_shard = ((long)o->customers + o->shards - 1) / o->shards;
    long entries = 128;

    for (int i = 0; i < o->nredis_config; i++)
        if (strcmp(o->redis_config[i][0], "zset-max-listpack-entries") == 0)
            return;
    while (entries < 2 * per_shard)
        entries *= 2;
    if (entries == 128 || o->nredis_config == 8)
        return; /* Redis's default serves */
    memmove(o->redis_config[1], o->redis_config[0],
            sizeof(o->redis_config[0]) * (size_t)o->nredis_config);
    snprintf(o->redis_config[0][0], 64, "zset-max-listpack-entries");
    snprintf(o->redis_config[0][1], 64, "%ld", entries);
    o->nredis_config++;
}

static int add_property(struct b_opts *o, const char *kv)
{
    const char *eq = strchr(kv, '=');
    size_t used = strlen(o->clvd_properties);
    int n;

    if (eq == NULL || eq == kv || strpbrk(kv, "\"\\\n") != NULL)
        return -1;
    n = snprintf(o->clvd_properties + used, sizeof(o->clvd_properties) - used,
                 "    \"%.*s\": \"%s\"\n", (int)(eq - kv), kv, eq + 1);
    return n > 0 && (size_t)n < sizeof(o->clvd_properties) - used ? 0 : -1;
}

enum {
    O_CLVD = 256,
    O_REDIS,
    O_CUSTOMERS,
    O_EVENTS,
    O_MIX,
    O_ACQ,
    O_SEED,
    O_RATE,
    O_HALF_SECONDS,
    O_PARTITIONS,
    O_OUT_PARTITIONS,
    O_RATE_PARTITIONS,
    O_BROKERS,
    O_WARMUP,
    O_SHARDS,
    O_HISTORY,
    O_LINGER,
    O_COMPRESSION,
    O_FETCH_WAIT,
    O_CLVD_PROP,
    O_WORKERS,
    O_STATE_CACHE,
    O_REDIS_CONFIG,
    O_CEIL_SECONDS,
    O_CEIL_DEPTH,
    O_SKIP_CEILING,
    O_SKIP_HALF,
    O_SKIP_MAX,
    O_NO_PRELOAD,
    O_PERF,
    O_JSON,
    O_COMMIT,
    O_KEEP,
    O_QUIET,
    O_INSTANCES,
    O_REDIS_CLUSTER,
    O_REDIS_CLI,
    O_HELP
};

static int parse_options(int argc, char **argv, struct b_opts *o)
{
    static const struct option lo[] = {
        {"clvd", required_argument, NULL, O_CLVD},
        {"redis-server", required_argument, NULL, O_REDIS},
        {"customers", required_argument, NULL, O_CUSTOMERS},
        {"events", required_argument, NULL, O_EVENTS},
        {"mix", required_argument, NULL, O_MIX},
        {"acquisition-days", required_argument, NULL, O_ACQ},
        {"seed", required_argument, NULL, O_SEED},
        {"rate", required_argument, NULL, O_RATE},
        {"half-seconds", required_argument, NULL, O_HALF_SECONDS},
        {"partitions", required_argument, NULL, O_PARTITIONS},
        {"out-partitions", required_argument, NULL, O_OUT_PARTITIONS},
        {"rate-partitions", required_argument, NULL, O_RATE_PARTITIONS},
        {"brokers", required_argument, NULL, O_BROKERS},
        {"warmup-seconds", required_argument, NULL, O_WARMUP},
        {"shards", required_argument, NULL, O_SHARDS},
        {"history", no_argument, NULL, O_HISTORY},
        {"linger-ms", required_argument, NULL, O_LINGER},
        {"compression", required_argument, NULL, O_COMPRESSION},
        {"fetch-wait-ms", required_argument, NULL, O_FETCH_WAIT},
        {"clvd-property", required_argument, NULL, O_CLVD_PROP},
        {"workers", required_argument, NULL, O_WORKERS},
        {"state-cache-mb", required_argument, NULL, O_STATE_CACHE},
        {"redis-config", required_argument, NULL, O_REDIS_CONFIG},
        {"ceiling-seconds", required_argument, NULL, O_CEIL_SECONDS},
        {"ceiling-depth", required_argument, NULL, O_CEIL_DEPTH},
        {"skip-ceiling", no_argument, NULL, O_SKIP_CEILING},
        {"skip-half", no_argument, NULL, O_SKIP_HALF},
        {"skip-max", no_argument, NULL, O_SKIP_MAX},
        {"no-preload", no_argument, NULL, O_NO_PRELOAD},
        {"perf", required_argument, NULL, O_PERF},
        {"json", required_argument, NULL, O_JSON},
        {"commit", required_argument, NULL, O_COMMIT},
        {"keep", no_argument, NULL, O_KEEP},
        {"quiet", no_argument, NULL, O_QUIET},
        {"instances", required_argument, NULL, O_INSTANCES},
        {"redis-cluster", required_argument, NULL, O_REDIS_CLUSTER},
        {"redis-cli", required_argument, NULL, O_REDIS_CLI},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    uint64_t u;
    int ch, bad = 0;

    while (!bad && (ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (ch) {
        case O_CLVD:
            o->clvd = optarg;
            break;
        case O_REDIS:
            o->redis_server = optarg;
            break;
        case O_CUSTOMERS:
            bad = parse_u64(optarg, &u) != 0 || u < 1 || u > 100000000;
            o->customers = (uint32_t)u;
            break;
        case O_EVENTS:
            bad = parse_u64(optarg, &o->events) != 0;
            break;
        case O_MIX:
            bad = parse_mix(optarg, o->mix) != 0;
            break;
        case O_ACQ:
            bad = parse_double(optarg, &o->acquisition_days) != 0 || o->acquisition_days > 365;
            break;
        case O_SEED:
            bad = parse_u64(optarg, &o->seed) != 0;
            break;
        case O_RATE:
            bad = parse_double(optarg, &o->rate) != 0;
            break;
        case O_HALF_SECONDS:
            bad = parse_double(optarg, &o->half_seconds) != 0 || o->half_seconds < 1;
            break;
        case O_PARTITIONS:
            bad = parse_int(optarg, 1, 1024, &o->partitions) != 0;
            break;
        case O_OUT_PARTITIONS:
            bad = parse_int(optarg, 1, 4, &o->out_partitions) != 0;
            break;
        case O_RATE_PARTITIONS:
            bad = parse_int(optarg, 1, 1024, &o->rate_partitions) != 0;
            break;
        case O_BROKERS:
            bad = parse_int(optarg, 1, 16, &o->brokers) != 0;
            break;
        case O_WARMUP:
            bad = parse_double(optarg, &o->warmup_seconds) != 0;
            break;
        case O_SHARDS:
            bad = parse_int(optarg, 1, 65536, &o->shards) != 0;
            break;
        case O_HISTORY:
            o->time_mode = B_TIME_HISTORY;
            break;
        case O_LINGER:
            bad = parse_int(optarg, 0, 1000, &o->linger_ms) != 0;
            break;
        case O_COMPRESSION:
            o->compression = optarg;
            break;
        case O_FETCH_WAIT:
            bad = parse_int(optarg, 0, 10000, &o->fetch_wait_ms) != 0;
            break;
        case O_CLVD_PROP:
            bad = add_property(o, optarg) != 0;
            break;
        case O_WORKERS:
            bad = parse_int(optarg, 1, 16, &o->workers) != 0;
            break;
        case O_STATE_CACHE:
            bad = parse_int(optarg, 0, 4096, &o->state_cache_mb) != 0;
            break;
        case O_REDIS_CONFIG:
            bad = add_redis_config(o, optarg) != 0;
            break;
        case O_CEIL_SECONDS:
            bad = parse_double(optarg, &o->ceiling_seconds) != 0 || o->ceiling_seconds < 0.5;
            break;
        case O_CEIL_DEPTH:
            bad = parse_int(optarg, 1, 100000, &o->ceiling_depth) != 0;
            break;
        case O_SKIP_CEILING:
            o->skip_ceiling = 1;
            break;
        case O_SKIP_HALF:
            o->skip_half = 1;
            break;
        case O_SKIP_MAX:
            o->skip_max = 1;
            break;
        case O_NO_PRELOAD:
            o->preload = 0;
            break;
        case O_PERF:
            o->perf = optarg;
            break;
        case O_JSON:
            o->json = optarg;
            break;
        case O_COMMIT:
            o->commit = optarg;
            break;
        case O_KEEP:
            o->keep = 1;
            break;
        case O_QUIET:
            o->quiet = 1;
            break;
        case O_INSTANCES:
            bad = parse_int(optarg, 1, B_MAX_INSTANCES, &o->instances) != 0;
            break;
        case O_REDIS_CLUSTER:
            bad = parse_int(optarg, 3, B_CLUSTER_MAX, &o->redis_masters) != 0;
            break;
        case O_REDIS_CLI:
            o->redis_cli = optarg;
            break;
        case O_HELP:
        case 'h':
            usage(stdout);
            exit(0);
        default:
            return -1;
        }
        if (bad)
            fprintf(stderr, "clvd_bench: bad value for --%s: \"%s\"\n", lo[ch - O_CLVD].name,
                    optarg);
    }
    if (bad || optind < argc)
        return -1;
    if (access(o->clvd, X_OK) != 0) {
        fprintf(stderr, "clvd_bench: %s is not an executable clvd (build it, or --clvd PATH)\n",
                o->clvd);
        return -1;
    }
    return 0;
}

/* ---- machine -------------------------------------------------------------------- */

static void machine(struct results *r, const struct b_opts *o)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256], cmd[B_PATHLEN + 32];
    struct utsname u;
    time_t now = time(NULL);

    strftime(r->date, sizeof(r->date), "%Y-%m-%d %H:%M UTC", gmtime(&now));
    r->ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(r->cpu, sizeof(r->cpu), "unknown");
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, "model name", 10) == 0) {
            char *v = strchr(line, ':');
            if (v) {
                snprintf(r->cpu, sizeof(r->cpu), "%s", v + 2);
                r->cpu[strcspn(r->cpu, "\n")] = '\0';
            }
            break;
        }
    if (f)
        fclose(f);
    if (uname(&u) == 0)
        snprintf(r->kernel, sizeof(r->kernel), "%s %s", u.sysname, u.release);
    snprintf(cmd, sizeof(cmd), "%s --version 2>/dev/null", o->redis_server);
    f = popen(cmd, "r");
    if (f) {
        if (fgets(line, sizeof(line), f)) {
            char *v = strstr(line, "v=");
            if (v) {
                snprintf(r->redis_version, sizeof(r->redis_version), "%s", v + 2);
                r->redis_version[strcspn(r->redis_version, " \n")] = '\0';
            }
        }
        pclose(f);
    }
}

/* ---- report ---------------------------------------------------------------------- */

static const char *verdict(char *buf, size_t len, double value, double target, int at_most)
{
    double miss = at_most ? value / target - 1 : 1 - value / target;

    if (value < 0)
        snprintf(buf, len, "not measured");
    else if (miss <= 0)
        snprintf(buf, len, "met");
    else
        snprintf(buf, len, "MISSED by %.0f %%", miss * 100);
    return buf;
}

static void row(const char *name, const char *a, const char *b, const char *target)
{
    printf("  %-46s %-16s %-16s %s\n", name, a, b, target);
}

static void fmt(char *buf, size_t len, int have, const char *f, double v)
{
    if (have)
        snprintf(buf, len, f, v);
    else
        snprintf(buf, len, "-");
}

static void print_table(const struct b_opts *o, const struct results *r)
{
    const struct b_phase *m = &r->max, *h = &r->half;
    char a[64], b[64], t[96], v[48];
    int hm = r->have_max, hh = r->have_half;
    double rss = (double)(m->clvd_hwm_kb > h->clvd_hwm_kb ? m->clvd_hwm_kb : h->clvd_hwm_kb) / 1024;
    const struct b_phase *mem = hm ? m : h;

    printf("\nclvd benchmark  %s  commit %s\n", r->date, o->commit[0] ? o->commit : "?");
    printf("  machine: %ld CPU(s), %s, %s, redis %s\n", r->ncpu, r->cpu, r->kernel,
           r->redis_version);
    printf("  workload: %u customers, mix %g/%g/%g (visits/logins/purchases), %s timestamps, "
           "%d shards\n",
           o->customers, o->mix[0], o->mix[1], o->mix[2],
           o->time_mode == B_TIME_HISTORY ? "historical (clock.mode event)" : "live (wall clock)",
           o->shards);
    if (o->nredis_config > 0) {
        printf("  redis config:");
        for (int i = 0; i < o->nredis_config; i++)
            printf(" %s %s%s", o->redis_config[i][0], o->redis_config[i][1],
                   i + 1 < o->nredis_config ? "," : "");
        printf("  (docs/scaling.md, \"Sizing\")\n");
    }
    printf("\n");
    if (o->instances > 1 || o->redis_masters > 0) {
        char redis[64];
        if (o->redis_masters > 0)
            snprintf(redis, sizeof(redis), "a Redis Cluster of %d master(s) on loopback TCP",
                     o->redis_masters);
        else
            snprintf(redis, sizeof(redis), "one redis-server on a unix socket");
        printf("  setup: %d clvd instance(s) in one consumer group, %s\n", o->instances, redis);
        printf("  (clvd and Redis figures are sums over the instances and the masters)\n\n");
    }
    snprintf(a, sizeof(a), "%s", hm ? (m->rate_target > 0 ? "fixed rate" : "max rate") : "-");
    snprintf(b, sizeof(b), "%s", hh ? "half rate" : "-");
    row("", a, b, "target (SPEC 15)");
    fmt(a, sizeof(a), hm, "%.0f", m->rate_target);
    fmt(b, sizeof(b), hh, "%.0f", h->rate_target);
    row("offered rate (events/s, 0 = unthrottled)", a, b, "");
    fmt(a, sizeof(a), hm, "%.0f", (double)m->partitions);
    fmt(b, sizeof(b), hh, "%.0f", (double)h->partitions);
    row("input partitions per topic", a, b, "");
    fmt(a, sizeof(a), hm, "%.0f", (double)m->produced);
    fmt(b, sizeof(b), hh, "%.0f", (double)h->produced);
    row("input events", a, b, "");
    snprintf(a, sizeof(a), "%s", hm ? (m->preloaded ? "yes" : "no") : "-");
    snprintf(b, sizeof(b), "%s", hh ? (h->preloaded ? "yes" : "no") : "-");
    row("preloaded: in Kafka before clvd starts", a, b, "");
    fmt(a, sizeof(a), hm, "%.2f", m->seconds);
    fmt(b, sizeof(b), hh, "%.2f", h->seconds);
    row(m->preloaded ? "seconds, clvd assigned -> last applied"
                     : "seconds, first produce -> last applied",
        a, b, "");
    fmt(a, sizeof(a), hm, "%.0f", m->events_per_s);
    fmt(b, sizeof(b), hh, "%.0f", h->events_per_s);
    snprintf(t, sizeof(t), ">= 150000: %s",
             verdict(v, sizeof(v), hm && m->rate_target == 0 ? m->events_per_s : -1,
                     TARGET_EVENTS_PER_S, 0));
    row("events/s end to end", a, b, t);
    if (r->have_ceiling) {
        snprintf(a, sizeof(a), "%.0f %%", r->fraction * 100);
        snprintf(t, sizeof(t), ">= 60 %%: %s",
                 verdict(v, sizeof(v), hm && m->rate_target == 0 ? r->fraction : -1,
                         TARGET_FRACTION, 0));
        row("  of the Redis ceiling (clvd's mix)", a, "", t);
        snprintf(a, sizeof(a), "%.0f %%", r->fraction_script * 100);
        row("  updates/s of the script-only ceiling", a, "", "");
    }
    fmt(a, sizeof(a), hm && m->lat.n, "%.1f", m->lat.p50);
    fmt(b, sizeof(b), hh && h->lat.n, "%.1f", h->lat.p50);
    row("latency p50 (ms)", a, b, "");
    fmt(a, sizeof(a), hm && m->lat.n, "%.1f", m->lat.p99);
    fmt(b, sizeof(b), hh && h->lat.n, "%.1f", h->lat.p99);
    snprintf(t, sizeof(t), "<= 25 at half rate: %s",
             verdict(v, sizeof(v), hh && h->lat.n ? h->lat.p99 : -1, TARGET_P99_MS, 1));
    row("latency p99 (ms)", a, b, t);
    fmt(a, sizeof(a), hm && m->lat.n, "%.1f", m->lat.p999);
    fmt(b, sizeof(b), hh && h->lat.n, "%.1f", h->lat.p999);
    row("latency p99.9 (ms)", a, b, "");
    fmt(a, sizeof(a), hm && m->lat.n, "%.0f", (double)m->lat.n);
    fmt(b, sizeof(b), hh && h->lat.n, "%.0f", (double)h->lat.n);
    row("  latency samples (transitions)", a, b, "");
    fmt(a, sizeof(a), hm, "%.0f", (double)m->lat.warmup);
    fmt(b, sizeof(b), hh, "%.0f", (double)h->lat.warmup);
    row("  left out: inputs of the warm-up", a, b, "");
    snprintf(a, sizeof(a), hm && m->lat.n ? "%.1f / %.1f" : "-", m->lat.produce_p50,
             m->lat.produce_p99);
    snprintf(b, sizeof(b), hh && h->lat.n ? "%.1f / %.1f" : "-", h->lat.produce_p50,
             h->lat.produce_p99);
    row("  to clvd's produce call p50 / p99 (ms)", a, b, "");
    snprintf(a, sizeof(a), hm && m->lat.n ? "%.1f / %.1f" : "-", m->lat.input_p50,
             m->lat.input_p99);
    snprintf(b, sizeof(b), hh && h->lat.n ? "%.1f / %.1f" : "-", h->lat.input_p50,
             h->lat.input_p99);
    row("  input side: to its delivery p50 / p99 (ms)", a, b, "");
    snprintf(a, sizeof(a), hm && m->lat.clvd_n ? "%.1f / %.1f" : "-", m->lat.clvd_p50,
             m->lat.clvd_p99);
    snprintf(b, sizeof(b), hh && h->lat.clvd_n ? "%.1f / %.1f" : "-", h->lat.clvd_p50,
             h->lat.clvd_p99);
    row("  clvd's own histogram p50 / p99 (ms)", a, b, "");
    fmt(a, sizeof(a), hm && m->lat.clvd_n && m->lat.clvd_within_25ms >= 0, "%.2f %%",
        m->lat.clvd_within_25ms * 100);
    fmt(b, sizeof(b), hh && h->lat.clvd_n && h->lat.clvd_within_25ms >= 0, "%.2f %%",
        h->lat.clvd_within_25ms * 100);
    row("  clvd's own histogram: share <= 25 ms", a, b, "");
    fmt(a, sizeof(a), hm && m->produced, "%.2f", (double)m->clvd_commands / (double)m->produced);
    fmt(b, sizeof(b), hh && h->produced, "%.2f", (double)h->clvd_commands / (double)h->produced);
    row("Redis commands per event (clvd)", a, b, "");
    fmt(a, sizeof(a), hm && m->produced, "%.4f", (double)m->clvd_round_trips / (double)m->produced);
    fmt(b, sizeof(b), hh && h->produced, "%.4f", (double)h->clvd_round_trips / (double)h->produced);
    row("Redis round trips per event (clvd)", a, b, "");
    fmt(a, sizeof(a), hm && m->produced, "%.2f", (double)m->server_commands / (double)m->produced);
    fmt(b, sizeof(b), hh && h->produced, "%.2f", (double)h->server_commands / (double)h->produced);
    row("  commands per event (Redis, incl. in-script)", a, b, "");
    fmt(a, sizeof(a), hm, "%.3f", m->events_per_update);
    fmt(b, sizeof(b), hh, "%.3f", h->events_per_update);
    row("  events per customer update (apply.lua)", a, b, "");
    fmt(a, sizeof(a), hm && m->script_calls, "%.2f", m->per_call);
    fmt(b, sizeof(b), hh && h->script_calls, "%.2f", h->per_call);
    row("  customer updates per apply.lua call", a, b, "");
    fmt(a, sizeof(a), hm && m->script_calls, "%.2f", m->per_group);
    fmt(b, sizeof(b), hh && h->script_calls, "%.2f", h->per_group);
    row("    of one shard (a group of the call)", a, b, "");
    fmt(a, sizeof(a), hm, "%.1f", (double)m->clvd_hwm_kb / 1024);
    fmt(b, sizeof(b), hh, "%.1f", (double)h->clvd_hwm_kb / 1024);
    snprintf(t, sizeof(t), "<= 64 at 1M customers: %s%s",
             verdict(v, sizeof(v), rss > 0 ? rss : -1, TARGET_RSS_MB, 1),
             o->customers < TARGET_CUSTOMERS ? " (fewer customers)" : "");
    row("clvd peak RSS (MB, VmHWM)", a, b, t);
    if (o->instances > 1) {
        fmt(a, sizeof(a), hm, "%.1f", (double)m->clvd_hwm_sum_kb / 1024);
        fmt(b, sizeof(b), hh, "%.1f", (double)h->clvd_hwm_sum_kb / 1024);
        row("  summed over the instances (MB)", a, b, "");
    }
    fmt(a, sizeof(a), hm, "%.2f", m->seconds > 0 ? m->cpu_clvd / m->seconds : 0);
    fmt(b, sizeof(b), hh, "%.2f", h->seconds > 0 ? h->cpu_clvd / h->seconds : 0);
    row("CPU cores used: clvd", a, b, "");
    fmt(a, sizeof(a), hm, "%.2f", m->seconds > 0 ? m->cpu_redis / m->seconds : 0);
    fmt(b, sizeof(b), hh, "%.2f", h->seconds > 0 ? h->cpu_redis / h->seconds : 0);
    row("CPU cores used: redis-server", a, b, "");
    fmt(a, sizeof(a), hm, "%.2f", m->seconds > 0 ? m->cpu_bench / m->seconds : 0);
    fmt(b, sizeof(b), hh, "%.2f", h->seconds > 0 ? h->cpu_bench / h->seconds : 0);
    row("CPU cores used: bench (producer, Kafka mock)", a, b, "");
    fmt(a, sizeof(a), hm, "%.2f", m->seconds > 0 ? m->cpu_other / m->seconds : 0);
    fmt(b, sizeof(b), hh, "%.2f", h->seconds > 0 ? h->cpu_other / h->seconds : 0);
    row("CPU cores used: other processes", a, b, "");
    fmt(a, sizeof(a), hm, "%.0f", (double)m->customers_stored);
    fmt(b, sizeof(b), hh, "%.0f", (double)h->customers_stored);
    row("customers in Redis", a, b, "");
    fmt(a, sizeof(a), hm, "%.0f", m->bytes_per_customer);
    fmt(b, sizeof(b), hh, "%.0f", h->bytes_per_customer);
    snprintf(t, sizeof(t), "<= 300 at 1M customers: %s%s",
             verdict(v, sizeof(v), mem->customers_stored ? mem->bytes_per_customer : -1,
                     TARGET_BYTES_PER_CUSTOMER, 1),
             mem->customers_stored < TARGET_CUSTOMERS ? " (fewer customers)" : "");
    row("Redis used_memory per customer (bytes)", a, b, t);
    snprintf(a, sizeof(a), hm ? "%.0f / %.0f" : "-", m->state_len_avg, m->state_mem_avg);
    snprintf(b, sizeof(b), hh ? "%.0f / %.0f" : "-", h->state_len_avg, h->state_mem_avg);
    row("  state value / MEMORY USAGE of its key", a, b, "");
    snprintf(a, sizeof(a), hm ? "%.1f/%.1f/%.1f" : "-", m->npdays_avg, m->ndedupe_avg,
             m->nmarks_avg);
    snprintf(b, sizeof(b), hh ? "%.1f/%.1f/%.1f" : "-", h->npdays_avg, h->ndedupe_avg,
             h->nmarks_avg);
    row("  purchase days / event ids / marks kept", a, b, "");
    snprintf(a, sizeof(a), hm && m->customers_stored ? "%.0f / %.0f" : "-",
             (double)m->mem_due / (double)(m->customers_stored ? m->customers_stored : 1),
             (double)(m->mem_stats + m->mem_outbox) /
                 (double)(m->customers_stored ? m->customers_stored : 1));
    snprintf(b, sizeof(b), hh && h->customers_stored ? "%.0f / %.0f" : "-",
             (double)h->mem_due / (double)(h->customers_stored ? h->customers_stored : 1),
             (double)(h->mem_stats + h->mem_outbox) /
                 (double)(h->customers_stored ? h->customers_stored : 1));
    row("  due index / counters+outbox, per customer", a, b, "");
    snprintf(a, sizeof(a), hm ? "%.0f / %.0f" : "-", (double)m->due_entries,
             (double)m->outbox_entries);
    snprintf(b, sizeof(b), hh ? "%.0f / %.0f" : "-", (double)h->due_entries,
             (double)h->outbox_entries);
    row("  due-index / outbox entries", a, b, "");
    fmt(a, sizeof(a), hm, "%.0f", (double)m->outputs_delivered);
    fmt(b, sizeof(b), hh, "%.0f", (double)h->outputs_delivered);
    row("outputs delivered", a, b, "");
    fmt(a, sizeof(a), hm, "%.0f", (double)m->conflicts);
    fmt(b, sizeof(b), hh, "%.0f", (double)h->conflicts);
    row("compare-and-set conflicts", a, b, "");
    fmt(a, sizeof(a), hm, "%.1f", m->throttled_s);
    fmt(b, sizeof(b), hh, "%.1f", h->throttled_s);
    row("producer held back by the mock's capacity (s)", a, b, "");
    for (int k = 0; k < 2; k++) {
        const struct b_phase *p = k ? h : m;
        if (!(k ? hh : hm) || p->lat.nseconds == 0 || p->rate_target == 0)
            continue;
        printf("\n  %s run, second by second after the warm-up: latency p99 (ms) / cores "
               "taken by other processes",
               p->name);
        for (int i = 0; i < p->lat.nseconds; i++) {
            int s = p->lat.sec[i].second;
            if (s < p->nother)
                printf("%s%.0f/%.1f", i % 10 ? "  " : "\n   ", p->lat.sec[i].p99, p->other[s]);
            else
                printf("%s%.0f/-", i % 10 ? "  " : "\n   ", p->lat.sec[i].p99);
        }
        printf("\n");
    }
    if (r->have_ceiling) {
        const struct b_ceiling *ce = &r->ce;
        printf(
            "\n  Redis ceiling for apply.lua (no clvd; %u customers, pipeline %d, %.2f customers "
            "per call\n  in groups of %d of one shard, state %zu B, outbox entry on %.0f %% of "
            "updates, %zu B payload,\n  due-index entry moved on %.1f %%):\n",
            ce->customers, ce->depth, ce->per_call, (int)(ce->per_group + 0.5), ce->blob_len,
            ce->outbox_share * 100, ce->payload_len, ce->due_share * 100);
        for (int i = 0; i < ce->nruns; i++)
            printf("    %-6s %d thread(s)  %9.0f updates/s  %9.0f commands/s  redis cpu %.2f\n",
                   ce->runs[i].mode, ce->runs[i].threads, ce->runs[i].updates_per_s,
                   ce->runs[i].commands_per_s, ce->runs[i].redis_cpu);
        printf("    script alone %.0f updates/s; clvd's mix %.0f updates/s x %.3f events/update = "
               "%.0f "
               "events/s\n",
               ce->script_calls_per_s, ce->updates_per_s, hm ? m->events_per_update : 1.0,
               r->ceiling_events_per_s);
    }
    if (o->redis_masters > 0 && !o->skip_ceiling)
        printf("\n  Redis ceiling: not run with --redis-cluster (it drives one redis-server; run "
               "it without --redis-cluster).\n");
    if (hm && m->cmds.n) {
        printf("\n  Redis commands in the max run, per input event (commandstats; in-script "
               "commands included):\n   ");
        for (int i = 0; i < m->cmds.n && i < 10; i++)
            printf(" %s %.3f", m->cmds.c[i].name, (double)m->cmds.c[i].calls / (double)m->produced);
        printf("\n");
    }
    printf("\n");
}

static void json_phase(FILE *f, const char *key, const struct b_phase *p)
{
    fprintf(f, "  \"%s\": {\n", key);
    fprintf(f,
            "    \"rate_target\": %.0f, \"partitions\": %d, \"events\": %llu, \"sentinels\": "
            "%llu,\n",
            p->rate_target, p->partitions, (unsigned long long)p->produced,
            (unsigned long long)p->sentinels);
    fprintf(f,
            "    \"preloaded\": %s, \"seconds\": %.3f, \"events_per_s\": %.0f, "
            "\"produce_seconds\": %.3f, \"producer_throttled_s\": %.2f, \"window\": %llu,\n",
            p->preloaded ? "true" : "false", p->seconds, p->events_per_s, p->produce_seconds,
            p->throttled_s, (unsigned long long)p->window);
    fprintf(f,
            "    \"consumed\": %llu, \"applied\": %llu, \"duplicates\": %llu, \"rejected\": %llu, "
            "\"dropped\": %llu, \"conflicts\": %llu,\n",
            (unsigned long long)p->consumed, (unsigned long long)p->applied,
            (unsigned long long)p->duplicates, (unsigned long long)p->rejected,
            (unsigned long long)p->dropped, (unsigned long long)p->conflicts);
    fprintf(f,
            "    \"outputs_delivered\": %llu, \"outputs_received\": %llu, "
            "\"output_bytes_avg\": %.0f,\n",
            (unsigned long long)p->outputs_delivered, (unsigned long long)p->outputs_received,
            p->output_bytes_avg);
    fprintf(f,
            "    \"latency_ms\": {\"samples\": %llu, \"p50\": %.2f, \"p90\": %.2f, \"p99\": %.2f, "
            "\"p999\": %.2f, \"max\": %.2f, \"to_produce_p50\": %.2f, \"to_produce_p99\": %.2f, "
            "\"clvd_histogram_p50\": %.2f, \"clvd_histogram_p99\": %.2f, "
            "\"clvd_histogram_count\": %llu, \"clvd_histogram_within_25ms\": %.4f, "
            "\"input_delivery_p50\": %.2f, \"input_delivery_p99\": %.2f, \"warmup_left_out\": "
            "%llu},\n",
            (unsigned long long)p->lat.n, p->lat.p50, p->lat.p90, p->lat.p99, p->lat.p999,
            p->lat.max, p->lat.produce_p50, p->lat.produce_p99, p->lat.clvd_p50, p->lat.clvd_p99,
            (unsigned long long)p->lat.clvd_n, p->lat.clvd_within_25ms, p->lat.input_p50,
            p->lat.input_p99, (unsigned long long)p->lat.warmup);
    fprintf(f, "    \"latency_by_second\": [");
    for (int i = 0; i < p->lat.nseconds; i++)
        fprintf(f, "%s{\"second\": %d, \"n\": %llu, \"p50\": %.2f, \"p99\": %.2f}", i ? ", " : "",
                p->lat.sec[i].second, (unsigned long long)p->lat.sec[i].n, p->lat.sec[i].p50,
                p->lat.sec[i].p99);
    fprintf(f, "],\n    \"other_cores_by_second\": [");
    for (int i = 0; i < p->nother; i++)
        fprintf(f, "%s%.2f", i ? ", " : "", p->other[i]);
    fprintf(f, "],\n");
    fprintf(f,
            "    \"redis\": {\"clvd_commands\": %llu, \"clvd_round_trips\": %llu, "
            "\"commands_per_event\": %.4f, \"round_trips_per_event\": %.5f, "
            "\"server_commands\": %llu, \"server_commands_per_event\": %.4f, "
            "\"customer_updates\": %llu, \"apply_calls\": %llu, \"updates_per_call\": %.3f, "
            "\"updates_per_group\": %.3f, "
            "\"events_per_update\": %.4f, \"commandstats\": {",
            (unsigned long long)p->clvd_commands, (unsigned long long)p->clvd_round_trips,
            p->produced ? (double)p->clvd_commands / (double)p->produced : 0,
            p->produced ? (double)p->clvd_round_trips / (double)p->produced : 0,
            (unsigned long long)p->server_commands,
            p->produced ? (double)p->server_commands / (double)p->produced : 0,
            (unsigned long long)p->apply_calls, (unsigned long long)p->script_calls, p->per_call,
            p->per_group, p->events_per_update);
    for (int i = 0; i < p->cmds.n; i++)
        fprintf(f, "%s\"%s\": {\"calls\": %llu, \"usec\": %.0f}", i ? ", " : "", p->cmds.c[i].name,
                (unsigned long long)p->cmds.c[i].calls, p->cmds.c[i].usec);
    fprintf(f, "}},\n");
    fprintf(f,
            "    \"clvd\": {\"peak_rss_kb\": %ld, \"rss_kb\": %ld, \"exit\": %d, "
            "\"cpu_seconds\": %.2f",
            p->clvd_hwm_kb, p->clvd_rss_kb, p->clvd_exit, p->cpu_clvd);
    if (p->instances > 1)
        fprintf(f, ", \"instances\": %d, \"peak_rss_sum_kb\": %ld, \"rss_sum_kb\": %ld",
                p->instances, p->clvd_hwm_sum_kb, p->clvd_rss_sum_kb);
    fprintf(f, "},\n");
    fprintf(f,
            "    \"cpu_seconds\": {\"clvd\": %.2f, \"redis\": %.2f, \"bench\": %.2f, \"other\": "
            "%.2f},\n",
            p->cpu_clvd, p->cpu_redis, p->cpu_bench, p->cpu_other);
    fprintf(f,
            "    \"redis_memory\": {\"used_memory_base\": %llu, \"used_memory\": %llu, "
            "\"used_memory_peak\": %llu, \"dbsize\": %llu, \"customers\": %llu, "
            "\"bytes_per_customer\": %.1f, \"state_len_avg\": %.1f, \"state_memory_usage_avg\": "
            "%.1f, \"purchase_days_avg\": %.2f, \"event_ids_avg\": %.2f, \"marks_avg\": %.2f, "
            "\"sampled\": %llu, \"due_entries\": %llu, \"outbox_entries\": %llu, "
            "\"due_index_bytes\": %llu, \"stats_bytes\": %llu, \"outbox_bytes\": %llu}\n",
            (unsigned long long)p->mem_base, (unsigned long long)p->mem_after,
            (unsigned long long)p->mem_peak, (unsigned long long)p->dbsize,
            (unsigned long long)p->customers_stored, p->bytes_per_customer, p->state_len_avg,
            p->state_mem_avg, p->npdays_avg, p->ndedupe_avg, p->nmarks_avg,
            (unsigned long long)p->sampled, (unsigned long long)p->due_entries,
            (unsigned long long)p->outbox_entries, (unsigned long long)p->mem_due,
            (unsigned long long)p->mem_stats, (unsigned long long)p->mem_outbox);
    fprintf(f, "  },\n");
}

static int write_json(const char *path, const struct b_opts *o, const struct results *r)
{
    FILE *f = fopen(path, "w");

    if (f == NULL) {
        fprintf(stderr, "clvd_bench: cannot write %s\n", path);
        return -1;
    }
    fprintf(f, "{\n  \"date\": \"%s\", \"commit\": \"%s\",\n", r->date, o->commit);
    fprintf(f,
            "  \"machine\": {\"cpus\": %ld, \"cpu\": \"%s\", \"kernel\": \"%s\", \"redis\": "
            "\"%s\"},\n",
            r->ncpu, r->cpu, r->kernel, r->redis_version);
    fprintf(f,
            "  \"params\": {\"customers\": %u, \"events\": %llu, \"mix\": [%g, %g, %g], "
            "\"seed\": %llu, \"rate\": %.0f, \"preload\": %s, \"partitions\": %d, "
            "\"out_partitions\": %d, "
            "\"rate_partitions\": %d, \"shards\": %d, \"time\": \"%s\", \"linger_ms\": %d, "
            "\"compression\": \"%s\", \"fetch_wait_ms\": %d, \"half_seconds\": %.0f, "
            "\"warmup_seconds\": %.1f, \"workers\": %d, \"state_cache_mb\": %d",
            o->customers, (unsigned long long)o->events, o->mix[0], o->mix[1], o->mix[2],
            (unsigned long long)o->seed, o->rate, o->preload ? "true" : "false", o->partitions,
            o->out_partitions, o->rate_partitions, o->shards,
            o->time_mode == B_TIME_HISTORY ? "history" : "live", o->linger_ms, o->compression,
            o->fetch_wait_ms, o->half_seconds, o->warmup_seconds, o->workers, o->state_cache_mb);
    fprintf(f, ", \"redis_config\": {");
    for (int i = 0; i < o->nredis_config; i++)
        fprintf(f, "%s\"%s\": \"%s\"", i ? ", " : "", o->redis_config[i][0], o->redis_config[i][1]);
    fprintf(f, "}");
    if (o->instances > 1 || o->redis_masters > 0)
        fprintf(f, ", \"instances\": %d, \"redis_cluster_masters\": %d", o->instances,
                o->redis_masters);
    fprintf(f, "},\n");
    if (r->have_max)
        json_phase(f, o->rate > 0 ? "rate" : "max", &r->max);
    if (r->have_half)
        json_phase(f, "half", &r->half);
    if (r->have_ceiling) {
        const struct b_ceiling *ce = &r->ce;
        fprintf(f,
                "  \"ceiling\": {\"customers\": %u, \"depth\": %d, \"blob_len\": %zu, "
                "\"payload_len\": %zu, \"outbox_share\": %.3f, \"due_share\": %.4f, "
                "\"per_call\": %.3f, \"per_group\": %.3f, \"script_calls_per_s\": %.0f, "
                "\"updates_per_s\": %.0f, \"events_per_s\": %.0f, "
                "\"runs\": [",
                ce->customers, ce->depth, ce->blob_len, ce->payload_len, ce->outbox_share,
                ce->due_share, ce->per_call, ce->per_group, ce->script_calls_per_s,
                ce->updates_per_s, r->ceiling_events_per_s);
        for (int i = 0; i < ce->nruns; i++)
            fprintf(f,
                    "%s{\"mode\": \"%s\", \"threads\": %d, \"updates_per_s\": %.0f, "
                    "\"commands_per_s\": %.0f, \"redis_cpu\": %.2f}",
                    i ? ", " : "", ce->runs[i].mode, ce->runs[i].threads, ce->runs[i].updates_per_s,
                    ce->runs[i].commands_per_s, ce->runs[i].redis_cpu);
        fprintf(f, "]},\n");
    }
    fprintf(f, "  \"fraction_of_ceiling\": %.4f, \"fraction_of_script_ceiling\": %.4f\n}\n",
            r->fraction, r->fraction_script);
    return fclose(f) == 0 ? 0 : -1;
}

/* ---- main ------------------------------------------------------------------------------- */

/* One partition of the mock serves up to about 90 000 events/s of this
 * stream: past that its fetch path (a walk from the oldest message set)
 * falls behind for good and the run fails on dropped input.  Fewer, larger
 * sets keep latency down (docs), so: one partition per 80 000 events/s. */
#define MOCK_EVENTS_PER_PARTITION 80000

static int rate_partitions_for(const struct b_opts *o, double rate)
{
    if (o->rate_partitions > 0)
        return o->rate_partitions;
    return 1 + (int)((rate > 1 ? rate - 1 : 0) / MOCK_EVENTS_PER_PARTITION);
}

int main(int argc, char **argv)
{
    struct b_opts o;
    struct results *r = calloc(1, sizeof(*r));
    char err[B_ERRLEN];
    int status = 1, parts;

    signal(SIGPIPE, SIG_IGN);
    b_catch_signals();
    b_opts_default(&o);
    if (r == NULL || parse_options(argc, argv, &o) != 0) {
        usage(stderr);
        free(r);
        return 2;
    }
    recommended_redis_config(&o);
    machine(r, &o);
    if (o.rate > 0)
        o.rate_partitions = rate_partitions_for(&o, o.rate);
    /* 0: as many as a preload needs (at least B_PARTITIONS_DEFAULT) */
    parts = o.rate > 0 ? o.rate_partitions : o.partitions;
    if (!o.quiet && parts > 0 && o.instances > parts)
        fprintf(stderr, "clvd_bench: %d instances for %d partition(s) per topic: some get none\n",
                o.instances, parts);
    if (!o.skip_max) {
        if (!o.quiet)
            fprintf(stderr, "clvd_bench: %s run\n", o.rate > 0 ? "fixed-rate" : "max-rate");
        if (b_run_phase(&o, o.rate > 0 ? "rate" : "max", o.rate, o.events,
                        o.rate > 0 ? o.rate_partitions : o.partitions, o.perf, &r->max, err,
                        sizeof(err)) != 0) {
            fprintf(stderr, "clvd_bench: %s\n", err);
            goto out;
        }
        r->have_max = 1;
    }
    if (!o.skip_half && o.rate == 0 && r->have_max) {
        double rate = r->max.events_per_s / 2;
        uint64_t n = (uint64_t)(rate * (o.half_seconds + o.warmup_seconds));
        if (o.events && n > o.events)
            n = o.events;
        o.rate_partitions = rate_partitions_for(&o, rate);
        if (!o.quiet)
            fprintf(stderr, "clvd_bench: half-rate run, %.0f events/s for %.0f s\n", rate,
                    (double)n / rate);
        if (b_run_phase(&o, "half", rate, n, o.rate_partitions, NULL, &r->half, err, sizeof(err)) !=
            0) {
            fprintf(stderr, "clvd_bench: %s\n", err);
            goto out;
        }
        r->have_half = 1;
    }
    if (!o.skip_ceiling && o.redis_masters == 0) {
        const struct b_phase *p = r->have_max ? &r->max : &r->half;
        int have = r->have_max || r->have_half;
        double share =
            have && p->apply_calls ? (double)p->outputs_delivered / (double)p->apply_calls : 0;
        /* one member per ZADD or ZREM: a floor on clvd's due-index moves,
         * so the ceiling errs high, against clvd */
        double due_share = have && p->apply_calls ? (double)(b_cmdstats_calls(&p->cmds, "zadd") +
                                                             b_cmdstats_calls(&p->cmds, "zrem")) /
                                                        (double)p->apply_calls
                                                  : 1;
        if (!o.quiet)
            fprintf(stderr, "clvd_bench: Redis ceiling\n");
        if (b_run_ceiling(&o, have ? (size_t)(p->state_len_avg + 0.5) : 0,
                          have ? (size_t)(p->output_bytes_avg + 0.5) : 0, share, due_share,
                          have ? p->per_call : 1.0, have ? p->per_group : 1.0, &r->ce, err,
                          sizeof(err)) != 0) {
            fprintf(stderr, "clvd_bench: %s\n", err);
            goto out;
        }
        r->have_ceiling = 1;
        r->ceiling_events_per_s =
            r->ce.updates_per_s * (have && p->events_per_update > 0 ? p->events_per_update : 1.0);
        if (r->have_max && r->ceiling_events_per_s > 0)
            r->fraction = r->max.events_per_s / r->ceiling_events_per_s;
        if (r->have_max && r->ce.script_calls_per_s > 0 && r->max.seconds > 0)
            r->fraction_script =
                (double)r->max.apply_calls / r->max.seconds / r->ce.script_calls_per_s;
    }
    if (r->have_max && r->max.rate_target == 0 && r->max.window > 0 && r->max.throttled_s > 0 &&
        (double)r->max.window < 2 * r->max.events_per_s)
        fprintf(stderr,
                "clvd_bench: warning: the flow-control window (%llu messages) is under 2 s of "
                "clvd's rate, so clvd may have waited for input: use more --partitions\n",
                (unsigned long long)r->max.window);
    print_table(&o, r);
    if (o.json && write_json(o.json, &o, r) != 0)
        goto out;
    if (o.json)
        printf("results written to %s\n", o.json);
    status = 0;
out:
    free(r);
    return status;
}
