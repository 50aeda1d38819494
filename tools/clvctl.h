/* clvctl.h -- what the clvctl sources share: commands living in their own
 * files, option and number parsing, the progress line (tools/clvctl.c),
 * reaching clvd's Redis (tools/clvctl_redis.c) and producing to Kafka
 * (tools/clvctl_kafka.c). */
#ifndef CLVD_CLVCTL_H
#define CLVD_CLVCTL_H

#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>

#include "common.h"
#include "config.h"
#include "fit.h"

#define EXIT_USAGE 2

/* ---- commands in their own files -------------------------------------- */

/* Each takes argv[0] = its own name. */
int cmd_loadgen(int argc, char **argv);  /* clvctl_loadgen.c */
int cmd_customer(int argc, char **argv); /* clvctl_customer.c */
int cmd_stats(int argc, char **argv);    /* clvctl_stats.c */
int cmd_replay(int argc, char **argv);   /* clvctl_replay.c */

/* Where clvd's Redis is: clvd.yaml's redis section (or its defaults), then
 * the command line. */
struct redis_opts {
    const char *config_path; /* clvd.yaml, or NULL */
    const char *socket;      /* overrides */
    const char *host;
    int port; /* 0: not given */
    const char *prefix;
};

/* `clvctl fit --redis` (clvctl_fit_redis.c): the options it takes. */
struct fit_redis_opts {
    struct redis_opts conn;
    int have_now;
    clv_ms now;
};

/* Scan, fit and print; -1 with a message in err. */
int fit_redis(const struct fit_redis_opts *o, double time_unit_days, char *err, size_t errlen);

/* The fitted models as comments, then the clv: YAML (clvctl.c). */
void print_models(double time_unit_days, const struct fit_bgnbd_result *bg,
                  const struct fit_gg_result *gg);

/* ---- clvd's Redis (clvctl_redis.c) -------------------------------------- */

/* Where to connect, resolved; the strings point into a config or argv. */
struct redis_target {
    const char *host;
    int port;
    const char *socket; /* NULL: host and port */
    int db;
    const char *user, *password;
    int timeout_ms;
    const char *prefix;
    char seed_host[256]; /* a cluster's first seed, when host points here */
};

void redis_target_from(const struct redis_opts *o, const struct clv_config *cfg,
                       struct redis_target *t);
/* "unix:PATH" or "HOST:PORT". */
void redis_target_name(const struct redis_target *t, char *buf, size_t len);

/* Connect, AUTH and SELECT; NULL with a message in err. */
redisContext *redis_open(const struct redis_target *t, const char *host, int port,
                         const char *socket, char *err, size_t errlen);

/* -1 (and frees an error reply) when a reply is missing or an error. */
int reply_failed(redisContext *c, redisReply *reply, const char *what, char *err, size_t errlen);

#define MAX_MASTERS 256
struct master {
    char host[64];
    int port;
};

/* The masters of a cluster from CLUSTER SLOTS; *n = 0 when the server is not
 * in cluster mode (then it alone holds every key). */
int cluster_masters(redisContext *c, const struct redis_target *t, struct master *m, int max,
                    int *n, char *err, size_t errlen);

/* The options of the commands that read clvd's Redis (customer, stats):
 * -c/--config, --redis-socket, --redis-host, --redis-port, --prefix,
 * --shards, --at. */
struct deploy_opts {
    struct redis_opts redis;
    unsigned shards; /* 0: from <prefix>meta */
    int have_at;
    clv_ms at;
};

/* 1 if argv[*i] was one of them (its value consumed), 0 if not, -1 after a
 * message. */
int deploy_option(int argc, char **argv, int *i, struct deploy_opts *o);
/* Options that do not go together; -1 after a message. */
int deploy_opts_check(const char *cmd, const struct deploy_opts *o);
/* The connection options, for a command's usage text. */
void deploy_usage(FILE *out);

/* An open deployment: its config (the file's, or the defaults), a connection
 * that routes each key to the node holding it (one server, or the masters of
 * a cluster by slot), its shard count. */
struct deployment {
    struct clv_config cfg;
    int have_cfg;  /* cfg must be freed */
    int from_file; /* -c was given */
    struct redis_target target;
    char where[300]; /* "unix:PATH" / "HOST:PORT" (+ " (cluster, N masters)") */
    const char *prefix;
    uint32_t shards;
    /* routing */
    redisContext *main;
    int nmasters; /* 0: not a cluster */
    struct master masters[MAX_MASTERS];
    redisContext *node[MAX_MASTERS];
    uint16_t slot_master[16384];
};

/* Load the config, connect, read the shard count; -1 with a message. */
int deploy_open(struct deployment *d, const struct deploy_opts *o, char *err, size_t errlen);
void deploy_close(struct deployment *d);
/* The connection holding `key`; NULL with a message. */
redisContext *deploy_conn(struct deployment *d, const char *key, size_t len, char *err,
                          size_t errlen);

/* The time figures are computed at: --at, else the deployment's clock. */
enum clock_source {
    CLOCK_GIVEN,   /* --at */
    CLOCK_WALL,    /* clock.mode: wall, or no event clock in Redis */
    CLOCK_EVENT,   /* the group watermark of the running instances */
    CLOCK_STOPPED, /* clock.mode: event and no instance running: the caller decides */
};
struct deploy_clock {
    enum clock_source source;
    clv_ms at;
    int instances; /* CLOCK_EVENT: instances publishing a watermark */
};

int deploy_clock(struct deployment *d, const struct deploy_opts *o, struct deploy_clock *out,
                 char *err, size_t errlen);
const char *clock_source_name(enum clock_source s);

/* ---- producing to Kafka (clvctl_kafka.c) --------------------------------- */

#define MAX_KAFKA_PROPS 32

struct delivery {
    uint64_t delivered, failed;
    char first_error[CLV_ERRLEN];
};

/* An idempotent producer (no duplicates or reordering on retries) with the
 * delivery reports counted in *dr; props are "key=value" librdkafka
 * properties applied last.  NULL with a message. */
rd_kafka_t *kafka_producer(const char *brokers, const char *const *props, int nprops,
                           struct delivery *dr, char *err, size_t errlen);
/* Produce a copy of value, waiting for room when the queue is full; -1 when a
 * delivery already failed or the message is refused. */
int kafka_send(rd_kafka_t *rk, const struct delivery *dr, const char *topic, const char *key,
               size_t keylen, const void *value, size_t len, char *err, size_t errlen);
/* Wait for every delivery report (up to timeout_ms); -1 if any message was
 * not delivered.  Does not destroy the producer. */
int kafka_finish(rd_kafka_t *rk, const struct delivery *dr, int timeout_ms, char *err,
                 size_t errlen);
/* "P,L,V": the purchase, login and visit topics into topics[] (indexed by
 * enum clv_event_type), pointing into buf; -1 unless exactly 3 names. */
int parse_topics(const char *v, char *buf, size_t buflen, const char *topics[3]);
/* "-X key=value": check the form; -1 after a message naming cmd. */
int kafka_prop_add(const char *cmd, const char *v, const char **props, int *nprops);

/* ---- options and numbers ---------------------------------------------- */

/* The value of option argv[*i] ("--opt VALUE" or "--opt=VALUE"); NULL when
 * argv[*i] is not `name`, "" (after a message naming the command argv[0])
 * when the value is missing. */
const char *option_value(int argc, char **argv, int *i, const char *name);

/* A finite number, all of s. */
int parse_double(const char *s, double *out);
/* A decimal integer within [min, max], all of s. */
int parse_ull(const char *s, unsigned long long min, unsigned long long max,
              unsigned long long *out);
/* Exactly n comma-separated finite numbers. */
int parse_list(const char *s, double *out, int n);
/* "YYYY-MM-DD" (00:00 UTC that day) or an RFC 3339 date-time. */
int parse_time(const char *s, clv_ms *out);

#define DATE_BUF 16 /* "YYYY-MM-DD" with room for any int */
void format_day(int32_t day, char buf[DATE_BUF]);

/* ---- the progress line ------------------------------------------------- */

/* A progress line on stderr, redrawn at most 10 times a second, only when
 * stderr is a terminal. */
struct progress {
    int on;    /* the bar */
    int lines; /* a line every `every` */
    int drawn;
    clv_ms next; /* monotonic */
    clv_ms every;
    const char *label;
};

/* On only if `wanted` and stderr is a terminal. */
void progress_init(struct progress *p, int wanted);
/* The same, but when stderr is not a terminal, a line "LABEL: NN%  text" every
 * `every_ms` instead of the bar (for logs and CI). */
void progress_init_lines(struct progress *p, const char *label, clv_ms every_ms);
/* "[####      ]  40%  text"; `force` draws even within 100 ms of the last. */
void progress_show(struct progress *p, double fraction, const char *text, int force);
/* Ends the line, if one was drawn. */
void progress_end(struct progress *p);

#endif
