/* harness.h -- building blocks of the clvd integration tests.
 *
 * A private redis-server on a unix socket, a librdkafka mock cluster inside
 * the test process, a YAML config writer, a clvd child process, and
 * synchronous produce / consume helpers.
 *
 * Conventions (as in the daemon): functions that can fail return 0 on
 * success and -1 on failure with a one-line reason in `err` (errlen bytes).
 * Every object lives in a caller-owned struct; there is no global state.
 * The stop / destroy functions are idempotent, so teardown may call them
 * whatever state a failed test left behind.  Child processes (redis-server,
 * clvd) are started with PR_SET_PDEATHSIG, so they die with the test process
 * even if it crashes or is killed.
 *
 * Environment:
 *   REDIS_SERVER    redis-server binary (default: "redis-server" from PATH)
 *   REDIS_CLI       redis-cli binary (default: "redis-cli" from PATH), for
 *                   creating and resharding a Redis Cluster
 *   CLVD_IT_REDIS_CLUSTER=N  tests that support it run against a Redis
 *                   Cluster of N masters (3 .. H_CLUSTER_MAX) instead of one
 *                   redis-server (h_redis_cluster_env)
 *   CLVD_IT_KEEP=1  keep temporary directories (logs, configs) after the run
 *   CLVD_IT_VERBOSE=1  print harness progress to stderr */
#ifndef CLVD_IT_HARNESS_H
#define CLVD_IT_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "redis_procs.h" /* support/: processes and Redis Cluster, shared with the bench */

#define H_ERRLEN 512
#define H_PATHLEN 256

/* ---- misc ---------------------------------------------------------------- */

/* Milliseconds: wall clock (epoch) and monotonic. */
int64_t h_now_ms(void);
int64_t h_mono_ms(void);
void h_sleep_ms(int ms);

/* "2025-01-02T10:00:00Z" (or with .mmm) -> epoch ms; aborts the test on a
 * malformed literal (it is a bug in the test). */
int64_t h_ts(const char *rfc3339);
/* epoch ms -> "YYYY-MM-DDTHH:MM:SS.mmmZ" (buf >= 25 bytes); returns buf. */
char *h_fmt_ts(int64_t ms, char *buf, size_t buflen);

#define H_DAY_MS (24LL * 3600 * 1000)

/* mkdtemp under $TMPDIR (default /tmp), e.g. "/tmp/clvd-it.AbC123". */
int h_tmpdir_create(char *out, size_t outlen, char *err, size_t errlen);
/* rm -r, unless CLVD_IT_KEEP is set (then it says where it is). */
void h_tmpdir_remove(const char *dir);

int h_write_file(const char *path, const void *data, size_t len, char *err, size_t errlen);
/* Print the last `tail_bytes` of a file to `out` with a header line. */
void h_dump_file(const char *path, const char *title, size_t tail_bytes, FILE *out);

/* ---- redis-server ---------------------------------------------------------- */

#define H_CLUSTER_MAX 6
#define H_SKIP 77 /* exit status of a skipped test (ctest SKIP_RETURN_CODE) */

struct h_redis {
    pid_t pid;              /* 0 when not running */
    int persist;            /* set before start: appendonly yes (data survives restart) */
    int masters;            /* set before start: > 0 starts a Redis Cluster of that many
                               masters on loopback TCP ports instead (no socket) */
    char dir[H_PATHLEN];    /* private working directory */
    char socket[H_PATHLEN]; /* dir/redis.sock; "" for a cluster */
    char log[RP_PATHLEN];   /* dir/redis.log; a cluster: the first master's */
    struct rp_node node[H_CLUSTER_MAX]; /* the masters of a cluster: pid, port, id, log */
};

/* Create a fresh temp dir (when r->dir is empty) and start redis-server on a
 * unix socket in it; returns once PING answers (10 s at most).  With
 * r->masters > 0: that many redis-servers with cluster-enabled on free
 * ports (a random base in 20000..40000, bus ports checked too), joined by
 * `redis-cli --cluster create` (no replicas); returns once every master
 * reports cluster_state:ok and agrees on the slots. */
int h_redis_start(struct h_redis *r, char *err, size_t errlen);
/* SIGTERM, waitpid (SIGKILL after 5 s), then remove the temp dir; every
 * master of a cluster. */
void h_redis_stop(struct h_redis *r);
/* Stop (SIGTERM, or SIGKILL when `hard`) and start again on the same socket,
 * keeping the directory (and, with `persist`, the data).  Not for a cluster. */
int h_redis_restart(struct h_redis *r, int hard, char *err, size_t errlen);
/* The same, staying down for `down_ms` before starting again (the socket
 * file is removed at once, so clients see "connection refused"). */
int h_redis_restart_after(struct h_redis *r, int hard, int down_ms, char *err, size_t errlen);
/* Run one command (no arguments with spaces), e.g. "FLUSHALL", "DBSIZE".  If
 * reply is not NULL the reply (status, string or integer) is written there.
 * On a cluster it runs on every master: MOVED / ASK replies are skipped (a
 * keyed command counts where its key lives), integer replies are summed
 * (DBSIZE is the cluster's), otherwise the first reply is kept. */
int h_redis_command(const struct h_redis *r, const char *cmd, char *reply, size_t replylen,
                    char *err, size_t errlen);

/* CLVD_IT_REDIS_CLUSTER: 0 when unset or empty, the number of masters
 * (3 .. H_CLUSTER_MAX), or -1 (with a message on stderr) for anything else. */
int h_redis_cluster_env(void);
/* 0 if redis-server and redis-cli can be run; else -1 and err says which is
 * missing (a cluster test then exits with H_SKIP). */
int h_redis_cluster_tools(char *err, size_t errlen);

/* For a test's main(): 0 to go on; otherwise the status to exit with --
 * H_SKIP (with a message) when `masters` > 0 and the tools are missing, 1
 * when `masters` < 0 (a bad CLVD_IT_REDIS_CLUSTER). */
int h_redis_cluster_skip(int masters);

/* Data nodes: 1 for one redis-server, the masters of a cluster. */
int h_redis_nodes(const struct h_redis *r);
/* A connection to data node i (the caller frees it with redisFree). */
struct redisContext *h_redis_connect_node(const struct h_redis *r, int i, char *err, size_t errlen);
/* SCAN every data node; fn gets each key with the connection of the node
 * that holds it (so it can read the key there) and returns 0, or -1 to stop.
 * Returns 0, or -1 on error or when fn stopped (err says why). */
typedef int (*h_key_fn)(struct redisContext *c, const char *key, size_t len, void *opaque);
int h_redis_scan(const struct h_redis *r, h_key_fn fn, void *opaque, char *err, size_t errlen);
/* Run a keyed command (hiredis format) where its key lives: the reply of the
 * first node that does not answer MOVED / ASK (the caller frees it), or
 * NULL. */
struct redisReply *h_redis_key_command(const struct h_redis *r, const char *fmt, ...);

/* Move `slots` hash slots from master `from` to master `to` (indexes into
 * node[]) with `redis-cli --cluster reshard` (it takes the source's lowest
 * slots first), after waiting for the masters to agree on the slot map;
 * returns once they agree again.  Its output is appended to dir/reshard.log. */
int h_redis_cluster_reshard(struct h_redis *r, int from, int to, int slots, char *err,
                            size_t errlen);
/* Stop master i (SIGSTOP) for `ms` milliseconds, then let it go on
 * (SIGCONT): its clients' reads time out while the cluster (node timeout
 * 5 s) does not fail it over. */
int h_redis_cluster_pause(struct h_redis *r, int i, int ms, char *err, size_t errlen);
/* The master (index into node[]) serving the slot of `key`, or -1. */
int h_redis_cluster_owner(const struct h_redis *r, const char *key);
/* Slots served by master i, as its own CLUSTER SLOTS says (-1 on error). */
int h_redis_cluster_slot_count(const struct h_redis *r, int i);

/* ---- mock Kafka cluster ---------------------------------------------------- */

/* Delivery bookkeeping of h_produce_async (internal). */
struct h_async_dr {
    int magic;
    long pending, failed;
    rd_kafka_resp_err_t first_err;
};

struct h_kafka {
    rd_kafka_t *host; /* dummy producer hosting the cluster */
    rd_kafka_mock_cluster_t *mcluster;
    rd_kafka_t *producer; /* producer connected to the cluster (record batches of at most
                             32 messages) */
    char bootstraps[256];
    struct h_async_dr async;
};

int h_kafka_start(struct h_kafka *k, int brokers, char *err, size_t errlen);
void h_kafka_stop(struct h_kafka *k);
int h_kafka_create_topic(struct h_kafka *k, const char *topic, int partitions, char *err,
                         size_t errlen);

/* Default topic names (SPEC section 11). */
#define H_T_PURCHASES "purchases"
#define H_T_LOGINS "logins"
#define H_T_VISITS "visits"
#define H_T_STAGE "customer.stage-changes"
#define H_T_CHURN "customer.churn-warnings"
#define H_T_WINBACK "customer.win-back"
#define H_T_TIER "customer.tier-changes"
#define H_T_ALERTS "clvd.alerts"
#define H_T_DEAD "clvd.dead-letter"

/* The sum over every partition of `topics` of the offset committed by
 * consumer group `group` (a partition without one counts 0), read without
 * joining the group.  -1 on error. */
int64_t h_kafka_committed(const char *bootstraps, const char *group, const char *const *topics,
                          char *err, size_t errlen);

/* NULL-terminated lists of the default input and output topic names. */
extern const char *const h_input_topics[];
extern const char *const h_output_topics[];

/* Create the three input topics with `in_partitions` partitions each and the
 * six output topics with `out_partitions` each. */
int h_kafka_create_default_topics(struct h_kafka *k, int in_partitions, int out_partitions,
                                  char *err, size_t errlen);

/* Produce one message and wait for its delivery report (10 s).  key may be
 * NULL (no key); partition may be RD_KAFKA_PARTITION_UA.  *offset (if not
 * NULL) receives the offset it was written at. */
int h_produce(struct h_kafka *k, const char *topic, int32_t partition, const char *key,
              const void *value, size_t len, int64_t *offset, char *err, size_t errlen);
/* Same with a NUL-terminated value. */
int h_produce_str(struct h_kafka *k, const char *topic, int32_t partition, const char *key,
                  const char *value, int64_t *offset, char *err, size_t errlen);
/* Produce without waiting (bulk loading); h_produce_wait() then waits up to
 * timeout_ms for every delivery report and fails if any delivery failed. */
int h_produce_async(struct h_kafka *k, const char *topic, int32_t partition, const char *key,
                    const void *value, size_t len, char *err, size_t errlen);
int h_produce_wait(struct h_kafka *k, int timeout_ms, char *err, size_t errlen);

/* ---- a private world --------------------------------------------------------- */

/* A temp dir, a private redis-server and a one-broker mock cluster with the
 * default topics: what most tests start from. */
struct h_world {
    char dir[H_PATHLEN];
    struct h_redis redis;
    struct h_kafka kafka;
};

int h_world_start(struct h_world *w, int in_partitions, char *err, size_t errlen);
/* Stop whatever was started (idempotent), and remove the temp dir. */
void h_world_stop(struct h_world *w);

/* ---- consuming outputs ----------------------------------------------------- */

struct h_record {
    char *topic;
    int32_t partition;
    int64_t offset;
    char *key; /* NUL-terminated copy, NULL if the message had no key */
    size_t key_len;
    char *value; /* NUL-terminated copy (may contain NULs: use value_len) */
    size_t value_len;
    json_t *json; /* parsed value, NULL if not a JSON object */
};

struct h_records {
    size_t n, cap;
    struct h_record *r;
};

/* Read every partition of `topics` (NULL-terminated) from the beginning,
 * without a consumer group, until at least `expected` messages have been read
 * and no further message arrived for `quiet_ms`, or until `timeout_ms`.
 * It gives up early when messages were read, every partition is at its end
 * and nothing new arrived for H_CONSUME_STALL_MS.
 * Records are in arrival order (per partition: offset order).  Returns 0 when
 * `expected` was reached; -1 on error or timeout (err says which; `out`
 * still holds what was read).  `out` must be zeroed or freed before. */
#define H_CONSUME_STALL_MS 20000
int h_consume(const char *bootstraps, const char *const *topics, size_t expected, int quiet_ms,
              int timeout_ms, struct h_records *out, char *err, size_t errlen);
void h_records_free(struct h_records *rs);
/* Like h_consume, but hands every message to `cb` (which returns 0, or -1 to
 * fail the read) instead of keeping it; `*count` (may be NULL) receives the
 * number of messages read. */
typedef int (*h_message_cb)(const rd_kafka_message_t *m, void *opaque);
int h_consume_each(const char *bootstraps, const char *const *topics, size_t expected, int quiet_ms,
                   int timeout_ms, h_message_cb cb, void *opaque, size_t *count, char *err,
                   size_t errlen);
size_t h_records_count(const struct h_records *rs, const char *topic);
/* Print the records (topic, partition, offset, key, value) to `out`. */
void h_records_dump(const struct h_records *rs, FILE *out);

/* Accessors on a record's JSON object; NULL / 0 when absent or mistyped. */
const char *h_json_str(const json_t *obj, const char *field);
int h_json_is_null(const json_t *obj, const char *field);
int h_json_has_number(const json_t *obj, const char *field, double *out);

/* ---- clvd config ---------------------------------------------------------- */

#define H_CONFIG_MAX 96

/* A config is an ordered list of dotted key paths and YAML values (flow
 * scalars or flow collections, written as they should appear in the file),
 * rendered as nested block mappings:  "clock.lateness" = "1s" ->
 *   clock:
 *     lateness: 1s                                                        */
struct h_config {
    int n;
    char *key[H_CONFIG_MAX];
    char *value[H_CONFIG_MAX];
};

/* The test template: event clock, lateness 1s, idle_after 1s, 16 shards,
 * metrics off, log level debug, default topic names. */
int h_config_init(struct h_config *c, const char *brokers, const char *group_id,
                  const char *redis_socket);
/* Point the config at `r`: redis.unix_socket for one redis-server;
 * redis.cluster true and redis.seeds (every master) for a cluster. */
int h_config_redis(struct h_config *c, const struct h_redis *r);
/* Set (or replace) a key; value is raw YAML (printf format).  A NULL format
 * removes the key. */
int h_config_set(struct h_config *c, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Set a string value, double-quoted and escaped. */
int h_config_set_str(struct h_config *c, const char *key, const char *s);
int h_config_write(const struct h_config *c, const char *path, char *err, size_t errlen);
void h_config_free(struct h_config *c);

/* ---- the clvd process ------------------------------------------------------- */

struct h_clvd {
    pid_t pid;  /* 0 when not running */
    int status; /* wait status once reaped */
    char log[H_PATHLEN];
};

/* Spawn `binary -c config` with stdout and stderr appended to `log`. */
int h_clvd_start(struct h_clvd *d, const char *binary, const char *config, const char *log,
                 char *err, size_t errlen);
/* The same with further arguments (NULL-terminated list, or NULL), e.g.
 * {"--exit-when-idle", "3s", NULL}. */
int h_clvd_start_args(struct h_clvd *d, const char *binary, const char *config, const char *log,
                      const char *const *extra, char *err, size_t errlen);
/* Send a signal (e.g. SIGHUP); -1 if it is not running. */
int h_clvd_signal(struct h_clvd *d, int sig);
/* Wait up to timeout_ms for clvd to exit by itself (--exit-when-idle); 0 if
 * it exited with status 0.  Otherwise -1 (err says how it ended); a process
 * still running after the timeout is killed with SIGKILL. */
int h_clvd_wait_exit(struct h_clvd *d, int timeout_ms, char *err, size_t errlen);
/* 1 while running; reaps it (filling status) once it has exited. */
int h_clvd_running(struct h_clvd *d);
/* SIGTERM and wait up to timeout_ms; 0 if it exited with status 0 in time.
 * Otherwise -1 (err says how it ended); a process still running after the
 * timeout is killed with SIGKILL. */
int h_clvd_stop(struct h_clvd *d, int timeout_ms, char *err, size_t errlen);
/* SIGKILL and reap. */
void h_clvd_kill9(struct h_clvd *d);
/* Wait up to timeout_ms until `needle` appears in the log; 0 if it did. */
int h_clvd_wait_log(const struct h_clvd *d, const char *needle, int timeout_ms);
/* Occurrences of `needle` in a file (0 if it cannot be read). */
int h_file_count(const char *path, const char *needle);
/* The last line of a file containing `needle`, copied to buf (without the
 * newline); 0 if one was found. */
int h_file_last_line(const char *path, const char *needle, char *buf, size_t buflen);

#endif
