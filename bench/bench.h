/* bench.h -- the clvd end-to-end benchmark (SPEC section 15), shared by
 * bench.c (options, phases, report), bench_util.c (processes, Redis, HTTP,
 * /proc), bench_e2e.c (one clvd run against a private Redis and an
 * in-process Kafka mock cluster) and bench_ceiling.c (Redis's own ceiling
 * for daemon/lua/apply.lua, without clvd).
 *
 * Conventions as in the daemon: 0 / -1 and a one-line reason in `err`;
 * every object in a caller-owned struct; no global mutable state. */
#ifndef CLVD_BENCH_H
#define CLVD_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <hiredis/hiredis.h>

#include "redis_procs.h"
#include "sbuf.h"

#define B_ERRLEN 512
#define B_PARTITIONS_DEFAULT 8 /* per input topic, max-rate run, unless preloaded */
#define B_PATHLEN 256
#define B_MAX_INSTANCES 8            /* clvd processes of one run (--instances) */
#define B_CLUSTER_MAX RP_CLUSTER_MAX /* masters of a Redis Cluster (--redis-cluster) */

/* Default topic names (SPEC section 11); the bench writes no topic names
 * into clvd's config, so these are the ones clvd uses. */
#define B_NINPUT 3
#define B_NOUTPUT 6
extern const char *const b_input_topics[B_NINPUT];   /* by enum clv_event_type */
extern const char *const b_output_topics[B_NOUTPUT]; /* stage-changes, ... dead-letter */

/* ---- options ------------------------------------------------------------------ */

enum b_time_mode {
    B_TIME_LIVE = 0, /* ts = wall clock at produce, clock.mode wall */
    B_TIME_HISTORY   /* ts = the generator's (the year before now), clock.mode event */
};

struct b_opts {
    const char *clvd;         /* clvd binary */
    const char *redis_server; /* redis-server binary */
    const char *redis_cli;    /* redis-cli binary (--redis-cluster) */
    const char *json;         /* results file, NULL: none */
    const char *perf;         /* perf.data path prefix, NULL: no profile */
    const char *commit;       /* label for the report */
    const char *workdir;      /* parent of the temp dir (TMPDIR or /tmp) */
    uint32_t customers;
    uint64_t events; /* 0: the whole generated stream */
    double mix[3];   /* visits, logins, purchases */
    double acquisition_days;
    uint64_t seed;
    double rate;    /* events/s, 0: as fast as clvd takes them */
    int partitions; /* per input topic, max-rate run; 0: 8, or what a preload needs */
    int out_partitions;
    int preload;         /* max-rate run: the whole stream into Kafka before clvd starts */
    int rate_partitions; /* input partitions of the half-load / --rate run */
    int brokers;         /* mock brokers (partition leaders spread over them) */
    double warmup_seconds;
    int shards;
    int linger_ms;
    const char *compression;
    enum b_time_mode time_mode;
    int fetch_wait_ms;           /* clvd's fetch.wait.max.ms (the mock does not cut waits short) */
    char clvd_properties[1024];  /* more kafka.properties lines for clvd's config */
    int workers, state_cache_mb; /* clvd's processing.*, -1 = its default */
    /* CONFIG SET for every redis-server, max-rate, half-rate and ceiling alike */
    char redis_config[8][2][64];
    int nredis_config;
    int skip_ceiling, skip_half, skip_max;
    double half_seconds;
    double ceiling_seconds;
    int ceiling_depth;
    int instances;     /* clvd processes in one consumer group */
    int redis_masters; /* 0: one redis-server on a unix socket; N: a Redis Cluster */
    int keep;
    int quiet;
};

void b_opts_default(struct b_opts *o);

/* ---- results ------------------------------------------------------------------ */

#define B_MAX_CMDS 64

struct b_cmdstat {
    char name[48];
    uint64_t calls;
    double usec;
};

struct b_cmdstats {
    int n;
    struct b_cmdstat c[B_MAX_CMDS];
};

#define B_MAX_SECONDS 120

struct b_latency_second {
    int second; /* after the warm-up, by input timestamp */
    uint64_t n;
    double p50, p99;
};

struct b_latency {
    uint64_t n;                      /* samples (transitions with an event behind them) */
    double p50, p90, p99, p999, max; /* ms, input timestamp -> output received */
    double produce_p50, produce_p99; /* ms, input timestamp -> output CreateTime (clvd produce) */
    double input_p50, input_p99;     /* ms, input timestamp -> its delivery report (bench side) */
    double clvd_p50, clvd_p99;       /* ms, clvd's own histogram (delivery report), bucketed */
    uint64_t clvd_n;
    double clvd_within_25ms; /* share of clvd's histogram at or below 25 ms */
    uint64_t warmup;         /* transitions left out: inputs of the warm-up */
    int nseconds;
    struct b_latency_second sec[B_MAX_SECONDS];
};

struct b_phase {
    const char *name;
    double rate_target; /* 0: unthrottled */
    int partitions;     /* per input topic */
    /* volume */
    uint64_t produced;  /* input messages, sentinels included */
    uint64_t sentinels; /* one per input partition, last in it: the end marker */
    uint64_t consumed, applied, duplicates, rejected, conflicts;
    uint64_t dropped; /* produced - consumed after the drain: lost in the mock */
    uint64_t outputs_delivered, outputs_received;
    double output_bytes_avg;
    /* time */
    int preloaded;          /* the stream was in Kafka before clvd started */
    double seconds;         /* first produce (preloaded: clvd's partition assignment) ->
                               last end-marker output received */
    double events_per_s;    /* produced / seconds */
    double produce_seconds; /* first -> last produce call */
    double throttled_s;     /* producer waiting for clvd to consume (mock capacity) */
    uint64_t window;        /* the flow-control window, messages */
    struct b_latency lat;
    /* Redis traffic */
    uint64_t clvd_commands, clvd_round_trips; /* clvd's counters, whole run */
    uint64_t server_commands;                 /* total_commands_processed delta */
    struct b_cmdstats cmds;                   /* commandstats delta */
    uint64_t apply_calls;                     /* customer updates (apply.lua successes) */
    uint64_t script_calls;                    /* apply.lua calls (several updates each) */
    double per_call;                          /* updates per apply.lua call */
    double per_group;                         /* updates per shard group of a call */
    double events_per_update;
    /* resources */
    int instances;                         /* clvd processes */
    int redis_masters;                     /* 0: one redis-server */
    long clvd_hwm_kb, clvd_rss_kb;         /* the largest instance's */
    long clvd_hwm_sum_kb, clvd_rss_sum_kb; /* summed over the instances */
    double cpu_clvd, cpu_redis, cpu_bench; /* seconds over the measured window (sums) */
    double cpu_other;                      /* every other process on the machine */
    int nother;
    double other[B_MAX_SECONDS]; /* cores other processes took, per second after the warm-up */
    int clvd_exit;               /* status at SIGTERM, -1 unknown (the first non-zero one) */
    /* Redis memory (summed over the masters of a cluster) */
    uint64_t mem_base, mem_after, mem_peak;
    uint64_t dbsize, customers_stored, outbox_entries, due_entries;
    uint64_t mem_due, mem_stats, mem_outbox; /* MEMORY USAGE summed over the shards */
    double bytes_per_customer;
    double state_len_avg, state_mem_avg; /* STRLEN, MEMORY USAGE (sampled) */
    double npdays_avg, ndedupe_avg, nmarks_avg;
    uint64_t sampled;
};

struct b_ceiling_run {
    const char *mode; /* "script" or "clvd" */
    int threads;
    double seconds;
    uint64_t updates, errors, calls;
    double updates_per_s; /* customer updates per second */
    double commands_per_s;
    double redis_cpu; /* Redis CPU seconds / wall seconds */
};

struct b_ceiling {
    uint32_t customers;
    int depth;
    size_t blob_len, payload_len;
    double outbox_share; /* outbox entries per customer update */
    double due_share;    /* due-index moves per customer update */
    double per_call;     /* customer updates per apply.lua call (clvd's run) */
    double per_group;    /* of those, per shard group (clvd's run) */
    int nruns;
    struct b_ceiling_run runs[4];
    double script_calls_per_s; /* best "script" run */
    double updates_per_s;      /* best "clvd" run: GET + EVALSHA (+ HDEL) per update */
};

/* ---- bench_util.c ------------------------------------------------------------- */

double b_mono(void);     /* seconds, CLOCK_MONOTONIC */
int64_t b_wall_us(void); /* microseconds since the epoch */
void b_sleep(double seconds);

int b_tmpdir(const char *parent, char *out, size_t outlen, char *err, size_t errlen);
void b_rmtree(const char *dir);

/* rp_spawn (support/redis_procs.h): stdout/stderr appended to `log` (NULL:
 * inherit), a process group of its own and PR_SET_PDEATHSIG(SIGKILL), so the
 * child dies with the bench. */
int b_spawn(char *const argv[], const char *log, pid_t *pid, char *err, size_t errlen);
/* SIGTERM, wait up to `grace` seconds, then SIGKILL; returns the exit status
 * (0..255), 128+signal, or -1 if it was not running. */
int b_stop(pid_t pid, double grace);
int b_alive(pid_t pid);
void b_tail(const char *path, size_t bytes, const char *title); /* to stderr */

/* SIGINT / SIGTERM make b_interrupted() true (once; a second signal kills
 * as usual, and the children die with the bench: PR_SET_PDEATHSIG). */
void b_catch_signals(void);
int b_interrupted(void);

/* /proc: user+system CPU seconds of a process; a "Vm...:" field in kB. */
double b_proc_cpu(pid_t pid);
/* TCP_NODELAY on this process's TCP sockets (the Kafka mock's); how many. */
int b_nodelay_sockets(void);
long b_proc_status_kb(pid_t pid, const char *field);
double b_self_cpu(void);
/* CPU seconds all processes spent so far (/proc/stat, busy time). */
double b_system_busy(void);

struct b_redis {
    pid_t pid; /* one server; 0 for a cluster */
    char dir[B_PATHLEN];
    char socket[B_PATHLEN];             /* one server; "" for a cluster */
    char log[RP_PATHLEN];               /* redis.log, or the first master's */
    int masters;                        /* 0: one server on `socket`; N: a cluster, node[0..N-1] */
    struct rp_node node[B_CLUSTER_MAX]; /* port, pid, log of each master */
};

/* Start redis-server on a unix socket in `dir` (persistence off); returns
 * when it answers PING. */
int b_redis_start(struct b_redis *r, const char *bin, const char *dir, char *err, size_t errlen);
/* A Redis Cluster of `masters` redis-servers (rp_cluster_start: cluster-enabled,
 * persistence off, free loopback ports, `redis-cli --cluster create` with no
 * replicas); returns once every master reports cluster_state:ok and all
 * agree on the slot map. */
int b_redis_cluster_start(struct b_redis *r, const char *server, const char *cli, int masters,
                          const char *dir, char *err, size_t errlen);
/* Stops every server (one, or a cluster's masters). */
void b_redis_stop(struct b_redis *r);
redisContext *b_redis_connect(const struct b_redis *r, char *err, size_t errlen);
/* CONFIG SET each of --redis-config's pairs on one server. */
int b_redis_configure(redisContext *c, const struct b_opts *o, char *err, size_t errlen);
/* Data nodes: 1 for one server, else the masters; node i's connection / pid. */
int b_redis_nodes(const struct b_redis *r);
redisContext *b_redis_connect_node(const struct b_redis *r, int i, char *err, size_t errlen);
pid_t b_redis_pid(const struct b_redis *r, int i);
/* CPU seconds of every server, summed. */
double b_redis_cpu(const struct b_redis *r);
/* A numeric field of INFO <section>. */
int b_info_u64(redisContext *c, const char *section, const char *field, uint64_t *out);
int b_cmdstats_read(redisContext *c, struct b_cmdstats *cs);
/* after - before, per command, sorted by calls (descending). */
void b_cmdstats_delta(const struct b_cmdstats *before, const struct b_cmdstats *after,
                      struct b_cmdstats *out);
uint64_t b_cmdstats_calls(const struct b_cmdstats *cs, const char *name);
/* sum += x, per command (a cluster's masters' commandstats). */
void b_cmdstats_add(struct b_cmdstats *sum, const struct b_cmdstats *x);

/* A free TCP port on 127.0.0.1 (bound and released). */
int b_free_port(void);
/* HTTP/1.0 GET of 127.0.0.1:port/path into `body`; returns the status code or -1. */
int b_http_get(int port, const char *path, struct clv_sbuf *body);
/* The sum of every sample of metric `name` whose labels contain `label`
 * (NULL: any); 0 if none. */
double b_metric(const char *page, const char *name, const char *label);
int b_metric_has(const char *page, const char *name); /* 1 if any sample of it is there */
/* A Prometheus histogram read from a page: cumulative counts per bound;
 * a page of several instances' pages put together gives the sum (buckets
 * of the same bound are added). */
#define B_HIST_MAX 40
struct b_hist {
    int n;
    double le[B_HIST_MAX], cum[B_HIST_MAX]; /* le in seconds; the last is +Inf */
};
int b_hist_read(const char *page, const char *name, struct b_hist *h);
void b_hist_sub(struct b_hist *h, const struct b_hist *before); /* h -= before */
uint64_t b_hist_count(const struct b_hist *h);
/* q-quantile (0..1), interpolated inside the bucket as Prometheus does; -1 if empty. */
double b_hist_quantile(const struct b_hist *h, double q);
/* Share (0..1) of the observations at or below the bound `le`; -1 if no such bound. */
double b_hist_share(const struct b_hist *h, double le);

/* Exact quantile of a sorted array. */
double b_quantile_sorted(const double *v, size_t n, double q);

/* ---- bench_e2e.c ---------------------------------------------------------------- */

/* One run: private Redis, mock Kafka, clvd child, producer and output
 * consumer threads.  `rate` 0 = unthrottled; `events` 0 = the whole stream. */
int b_run_phase(const struct b_opts *o, const char *name, double rate, uint64_t events,
                int partitions, const char *perf, struct b_phase *ph, char *err, size_t errlen);

/* ---- bench_ceiling.c -------------------------------------------------------------- */

/* Redis alone driving apply.lua with pipelines from 1 and 2 threads; blob,
 * payload sizes and the outbox share come from the clvd run when known. */
int b_run_ceiling(const struct b_opts *o, size_t blob_len, size_t payload_len, double outbox_share,
                  double due_share, double per_call, double per_group, struct b_ceiling *ce,
                  char *err, size_t errlen);

#endif
