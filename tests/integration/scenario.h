/* scenario.h -- the shared workload and result comparison of the guarantee
 * tests (SPEC sections 4, 7, 8, 13).
 *
 * A scenario is a deterministic, seeded stream of valid input events: about
 * ten events per customer over a year of event time (2024-06 to 2025-06),
 * a mix of browsers, one-time buyers, repeat buyers, loyal buyers and
 * customers who lapse and come back, plus a "ticker" customer whose events
 * run half a year past the others so that the event clock passes their
 * at-risk, dormant and churned deadlines.  Events are produced in event-time
 * order, keyed by customer id, so each input partition is in event-time
 * order and the event clock decides the order of application exactly: the
 * result of a run does not depend on timing.  No customer has more events
 * than the de-duplication ring remembers (16), so any re-delivered suffix
 * is recognised.
 *
 * A result is what a run leaves behind:
 *   - the set of distinct (topic, event_id, from, to, reason, at) of every
 *     output message, and a digest of each message without emitted_at;
 *   - a canonical dump of Redis: every customer's decoded state (all of it
 *     but the version and the de-duplication memory -- event-id ring and
 *     offset marks -- which holds receipt times and input offsets), every
 *     shard's stats hash and due index, any outbox entry (there must be
 *     none at the end) and any unexpected key.
 * Two results are compared line by line and every difference is printed.
 * Output topics get SCEN_OUT_PARTITIONS partitions: the mock cluster keeps
 * only ~5 MB per partition and drops the oldest messages beyond (a result
 * notices: an output partition must start at offset 0).
 *
 * A world is one redis-server (or a Redis Cluster: scen_world_start_cluster,
 * or a fixture's `masters`) and one mock cluster with the default topics;
 * a run is clvd started on it with --exit-when-idle.  The reference run
 * always uses one redis-server.
 *
 * Environment: CLVD_IT_CLVD=/path/to/clvd runs another clvd binary; see
 * harness.h for CLVD_IT_KEEP and CLVD_IT_VERBOSE. */
#ifndef CLVD_IT_SCENARIO_H
#define CLVD_IT_SCENARIO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "harness.h"

#define SCEN_CUSTOMERS 5000
#define SCEN_IN_PARTITIONS 4
#define SCEN_OUT_PARTITIONS 16
#define SCEN_IDLE_EXIT "3s"
#define SCEN_RUN_TIMEOUT_MS 180000 /* one clvd run to idle */
#define SCEN_MAX_EVENTS_PER_CUSTOMER 16
/* Fault runs are slowed down so that a fault hits the stream in its middle:
 * the brokers answer after SCEN_RTT_MS and a fetch brings one record batch
 * (at most 32 messages, see h_kafka) per partition, so the stream takes
 * ~15 s instead of ~1.5 s; clvd also fetches at most SCEN_FETCH_BYTES per
 * partition.  The reference runs at full speed (the result does not depend
 * on it). */
#define SCEN_FETCH_BYTES "4096"
#define SCEN_RTT_MS 80

/* ---- the event stream ----------------------------------------------------- */

struct scen_event {
    const char *topic; /* H_T_PURCHASES, H_T_LOGINS or H_T_VISITS */
    char *key;         /* customer id (points into the customer table) */
    char *value;       /* JSON, NUL-terminated */
    size_t len;
    int64_t ts; /* event time, ms */
};

struct scenario {
    uint64_t seed;
    int customers; /* not counting the ticker */
    struct scen_event *ev;
    size_t n, cap;
    char (*ids)[16]; /* customer ids */
    size_t per_topic[3];
    int64_t first_ts, last_ts;
};

/* Generate the stream (events sorted by event time). */
int scenario_generate(struct scenario *s, uint64_t seed, int customers, char *err, size_t errlen);
void scenario_free(struct scenario *s);
/* One line of statistics (events per topic, time span). */
void scenario_describe(const struct scenario *s, FILE *out);

/* ---- worlds and runs ------------------------------------------------------- */

struct scen_world {
    struct h_redis redis; /* redis.masters > 0: a Redis Cluster */
    struct h_kafka kafka;
    char dir[H_PATHLEN]; /* configs and logs */
    char name[48];
    int brokers;
    int runs;
};

/* A fresh redis-server (persist: append-only file, data survives a
 * restart) and mock cluster (`brokers` brokers) with the default topics
 * (SCEN_IN_PARTITIONS per input topic). */
int scen_world_start(struct scen_world *w, const char *name, int brokers, int persist, char *err,
                     size_t errlen);
/* The same with a Redis Cluster of `masters` masters (no persistence). */
int scen_world_start_cluster(struct scen_world *w, const char *name, int brokers, int masters,
                             char *err, size_t errlen);
void scen_world_stop(struct scen_world *w);

/* Set the brokers' round-trip time (0: full speed). */
void scen_throttle(struct scen_world *w, int rtt_ms);

/* Input messages whose offsets group `group` has committed (-1 on error). */
int64_t scen_committed(const struct scen_world *w, const char *group);

/* Produce every event `copies` times: the whole stream keyed by customer
 * id, then again (same keys and event ids) to partitions drawn at random,
 * so that a copy may land on another partition than its original. */
int scenario_produce(const struct scenario *s, struct scen_world *w, int copies, char *err,
                     size_t errlen);

/* The config of the guarantee runs: the harness template (event clock,
 * 16 shards) on the world's Redis (h_config_redis), group `group`, info
 * logging, quick failure detection
 * (session.timeout.ms 6000, heartbeat.interval.ms 500) and small fetches
 * (max.partition.fetch.bytes SCEN_FETCH_BYTES). */
int scen_config(const struct scen_world *w, struct h_config *cfg, const char *group);
/* Write it as <dir>/<name>.yaml; path receives the file name. */
int scen_config_write(const struct scen_world *w, const struct h_config *cfg, const char *name,
                      char *path, size_t pathlen, char *err, size_t errlen);

/* The clvd binary: $CLVD_IT_CLVD if set (to try a modified daemon), else the
 * one built with the tests. */
const char *scen_clvd_binary(void);

/* Start clvd on `config`, logging to <dir>/<name>-<run>.log; with
 * exit_when_idle (a duration, e.g. SCEN_IDLE_EXIT) it gets --exit-when-idle. */
int scen_clvd_start(struct scen_world *w, struct h_clvd *d, const char *config, const char *name,
                    const char *exit_when_idle, char *err, size_t errlen);

/* The counts of clvd's last log line ("stopped: consumed N, applied N,
 * duplicates N"); -1 if the log has none. */
struct scen_counts {
    uint64_t consumed, applied, duplicates;
};
int scen_stopped_counts(const char *logpath, struct scen_counts *c);

/* Customers in Redis now (the sum of the stage populations, over every
 * master of a cluster). */
long scen_redis_customers(const struct scen_world *w);

/* Print the tail of a clvd log (on failure). */
void scen_dump_log(const struct h_clvd *d, FILE *out);

/* ---- results ----------------------------------------------------------------- */

struct scenario_result {
    char **outputs; /* sorted distinct "topic event_id\tfrom to reason at" */
    size_t noutputs;
    char **digests; /* sorted distinct "topic event_id\t<digest without emitted_at>" */
    size_t ndigests;
    char **state; /* sorted canonical Redis dump, "key\tvalue" */
    size_t nstate;
    size_t messages;         /* output messages read, duplicates included */
    size_t per_topic[8];     /* by h_output_topics index */
    size_t dead_letters;     /* messages on the dead-letter topic */
    size_t outbox_entries;   /* entries left in the outboxes (must be 0) */
    size_t inconsistent_ids; /* (topic, event_id) published with differing contents */
    size_t customers;        /* customer states */
    size_t transitions;      /* the sum of the customers' sequence numbers */
    size_t transition_ids;   /* distinct event_ids on the stage and tier topics */
    size_t truncated;        /* output partitions not starting at offset 0 */
    size_t bad_keys;         /* customer keys in the wrong shard, undecodable states */
};

/* Read every output topic from the beginning (clvd has exited) and dump
 * Redis (every master of a cluster). */
int scenario_collect(struct scen_world *w, struct scenario_result *r, char *err, size_t errlen);
void scenario_result_free(struct scenario_result *r);
/* One line: messages per topic, distinct outputs, customers, ... */
void scenario_result_describe(const struct scenario_result *r, const char *title, FILE *out);
/* The run's own invariants: no dead letter, empty outboxes, consistent
 * duplicates, well-formed state.  Returns the number of problems (printed). */
int scenario_result_check(const struct scenario_result *r, const char *title, FILE *out);
/* Write a result to a file, one line each (for diff(1)). */
int scenario_result_save(const struct scenario_result *r, const char *path);
/* Compare a run with the reference; prints every difference (at most
 * `max_lines` of them, then counts) and returns how many there are. */
size_t scenario_compare(const struct scenario_result *ref, const struct scenario_result *got,
                        size_t max_lines, FILE *out);

/* The reference: a fresh world, the stream produced once, one clvd run to
 * idle, its result.  Checks the run's counts (consumed = applied = events,
 * no duplicate) and invariants. */
int scenario_run_clean(const struct scenario *s, struct scenario_result *ref, char *err,
                       size_t errlen);

/* ---- the tests' fixture ---------------------------------------------------------- */

#define SCEN_MAX_CLVD 4

struct scen_fixture {
    int masters; /* set before scen_prepare: > 0 runs the test's world on a Redis
                    Cluster of that many masters (e.g. from h_redis_cluster_env) */
    struct scenario s;
    struct scenario_result ref, got;
    struct scen_world w;
    struct h_clvd d[SCEN_MAX_CLVD];
    char config[H_PATHLEN + 64]; /* the run's config file */
    char group[96];
    int passed;
};

/* cmocka setup / teardown: allocate; kill what runs, print the clvd logs if
 * the test did not pass, stop the world, free. */
int scen_fixture_setup(void **state);
int scen_fixture_teardown(void **state);

/* Generate the scenario (`seed`, SCEN_CUSTOMERS customers), compute the
 * reference with a clean run (one redis-server), start the test's world
 * (`brokers`, `persist`; a cluster of f->masters if set),
 * produce the stream `copies` times into it (the second copy to random
 * partitions), throttle it (SCEN_RTT_MS) if asked, and write its config
 * (group "clvd-<name>-<pid>"). */
int scen_prepare(struct scen_fixture *f, uint64_t seed, const char *name, int brokers, int persist,
                 int copies, int throttle, char *err, size_t errlen);

/* Rewrite the fixture's config (f->config) as <dir>/<name>.yaml: the
 * scenario's, with metrics.listen on 127.0.0.1:`metrics_port` if it is > 0,
 * and `properties` (YAML "key: value" pairs, comma-separated; NULL: none)
 * added to kafka.properties. */
int scen_config_write_with(struct scen_fixture *f, const char *name, int metrics_port,
                           const char *properties, char *err, size_t errlen);

/* Wait for clvd (started with exit_when_idle) to exit 0, lift the throttle,
 * read the result
 * into f->got, check its invariants and compare it with the reference.
 * Returns 0 if equal; otherwise -1 with the differences printed. */
int scen_finish(struct scen_fixture *f, struct h_clvd *d, const char *title, char *err,
                size_t errlen);

/* Seconds since `t0` (h_mono_ms). */
double scen_secs(int64_t t0);

#endif
