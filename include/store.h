/* store.h -- the Redis connection clvd works through.
 *
 * One struct clv_store is one logical connection: commands, pipelines and
 * EVALSHA of the embedded Lua scripts (loaded once per connection, loaded
 * again on NOSCRIPT), with reconnection and backoff.  hiredis 0.14 leaves a
 * context unusable after any I/O or protocol error, so such a context is
 * freed at once and the next store_ensure() connects again.
 *
 * With redis.cluster the same calls work on a Redis Cluster: one connection
 * per master (opened when first needed, AUTH and the scripts loaded on
 * each), every command routed by its key's slot (cluster.h), a pipeline's
 * commands sent to their nodes in parallel and their replies returned in
 * append order, MOVED / ASK / TRYAGAIN followed inside store_read_reply()
 * and store_command*(), and the slot map refreshed after MOVED and after
 * connection errors.  A reply that cannot be had (a node unreachable)
 * reads as NULL, as a lost connection does on one server: the caller's
 * batch fails and is retried.  Callers read every reply of a pipeline
 * before sending anything else, in both modes. */
#ifndef CLVD_STORE_H
#define CLVD_STORE_H

#include <hiredis/hiredis.h>

#include "common.h"
#include "config.h"
#include "log.h"
#include "sbuf.h"

struct clv_histogram;     /* metrics.h */
struct clv_store_cluster; /* store.c: slot map, nodes, the pipeline in flight */

/* The Lua scripts, from daemon/lua/NAME.lua. */
enum clv_script {
    CLV_SCRIPT_APPLY = 0,
    CLV_SCRIPT_SWEEP,
    CLV_SCRIPT_CLOCK,
    CLV_SCRIPT_LEASE,
    CLV_SCRIPT_COUNT
};

struct clv_store {
    redisContext *ctx;            /* one server: NULL while disconnected */
    struct clv_store_cluster *cl; /* redis.cluster: NULL until store_ensure() */
    const struct clv_redis_config *cfg;
    const struct clv_log *log;
    char sha[CLV_SCRIPT_COUNT][41];
    uint64_t round_trips, commands; /* for the metrics and the benchmark */
    clv_ms next_attempt;            /* reconnect backoff (monotonic ms) */
    clv_ms backoff;
    int reconnected;           /* set on each connection after the first (to a cluster
                                  node: after that node's first); cleared by the owner */
    uint64_t generation;       /* bumped on each new connection (to any node) */
    int fatal;                 /* Redis holds another deployment: never retry */
    struct clv_histogram *rtt; /* round-trip times, when the owner wants them */
    struct clv_sbuf resp;      /* one command in RESP, reused (single-node pipelines) */
    void (*wait_hook)(void *); /* see store_set_wait_hook() */
    void *wait_arg;
};

void store_init(struct clv_store *st, const struct clv_redis_config *cfg, const struct clv_log *lg);

/* Connect (AUTH, SELECT, load scripts, check the shard count) unless
 * connected; on a cluster, read the slot map from the seeds and connect to
 * every master.  Honours the backoff: returns -1 without trying before it
 * ends. */
int store_ensure(struct clv_store *st, char *err, size_t errlen);
void store_disconnect(struct clv_store *st);
int store_connected(const struct clv_store *st);

/* Have `hook(arg)` run about every millisecond while the connection waits
 * for a reply (not while it connects); NULL: wait in the read itself.  The
 * hook must not use this store.  clvd's main thread hands finished batches
 * on from it, so that its own round trips -- which queue behind the
 * workers' pipelines in Redis -- do not hold the workers up. */
void store_set_wait_hook(struct clv_store *st, void (*hook)(void *), void *arg);

/* Run one command and return its reply (caller frees), or NULL after an I/O
 * error (the connection is dropped). */
redisReply *store_command(struct clv_store *st, const char *fmt, ...);
redisReply *store_command_argv(struct clv_store *st, int argc, const char **argv,
                               const size_t *argvlen);

/* EVALSHA of a script with its keys and arguments; on NOSCRIPT the script
 * is loaded again and the call repeated once.  NULL after an I/O error.
 * store_load_scripts() loads them on every master of a cluster. */
redisReply *store_eval(struct clv_store *st, enum clv_script script, int nkeys, int argc,
                       const char **argv, const size_t *argvlen);
int store_load_scripts(struct clv_store *st, char *err, size_t errlen);
const char *store_script_sha(const struct clv_store *st, enum clv_script script);

/* Pipelining: append commands, then read their replies in order; bracket
 * the whole with begin/end to count one round trip and time it. */
double store_pipeline_begin(void);
void store_pipeline_end(struct clv_store *st, double started);
void store_append_argv(struct clv_store *st, int argc, const char **argv, const size_t *argvlen);
redisReply *store_read_reply(struct clv_store *st);

/* A reply as an error: NULL (connection lost) or an error reply (freed)
 * fill `err` with "<what>: ..." and return -1; anything else returns 0. */
int store_reply_error(redisReply *r, const char *what, char *err, size_t errlen);
int store_is_noscript(const redisReply *r);

#endif
