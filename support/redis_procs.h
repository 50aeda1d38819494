/* redis_procs.h -- child processes and throwaway Redis servers, shared by the
 * benchmark (bench/) and the integration-test harness (tests/integration/).
 *
 * Both start redis-server on a private unix socket or, for a Redis Cluster,
 * N masters with cluster-enabled on free 127.0.0.1 ports joined by
 * `redis-cli --cluster create`, and both need that cluster settled before
 * they point clvd at it.  This library holds that logic once; it links
 * hiredis only (neither cmocka nor clvcore), so each side links it without
 * dragging in the other.
 *
 * Conventions as in the daemon: functions that can fail return 0 or -1 with
 * a one-line reason in `err` (errlen bytes; err may be NULL); no global
 * state.  Children get PR_SET_PDEATHSIG(SIGKILL): they die with the caller
 * even if it crashes. */
#ifndef CLVD_REDIS_PROCS_H
#define CLVD_REDIS_PROCS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define RP_ERRLEN 512
#define RP_PATHLEN 320   /* a log path: a directory (256 at most) and a name */
#define RP_CLUSTER_MAX 8 /* masters of a Redis Cluster */

struct redisContext; /* hiredis */
struct redisReply;

/* clv_seterr (include/common.h), for code that does not link clvcore. */
void rp_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Monotonic clock in milliseconds; a sleep that survives signals. */
int64_t rp_mono_ms(void);
void rp_sleep_ms(int ms);

/* Print the last `tail_bytes` of a file to `out`, between header lines. */
void rp_dump_file(const char *path, const char *title, size_t tail_bytes, FILE *out);

/* rm -r: a temp dir of servers' logs and configs (missing files are fine). */
void rp_rmtree(const char *dir);

/* ---- child processes ---------------------------------------------------------- */

/* fork + exec argv (argv[0] looked up in PATH) with stdin from /dev/null and
 * stdout+stderr appended to `log` (NULL: inherited), in a process group of
 * its own (a ^C reaches the caller only, which then stops it in order).  An
 * exec failure is reported here, not in the log.  *pid is 0 on failure. */
int rp_spawn(char *const argv[], const char *log, pid_t *pid, char *err, size_t errlen);
/* Wait up to timeout_ms for pid to exit: 1 once reaped (*status filled), 0
 * while it still runs, -1 if it is not our child (*status 0). */
int rp_wait(pid_t pid, int timeout_ms, int *status);
/* Send `sig`, wait up to grace_ms, then SIGKILL; returns the wait status, or
 * -1 if pid is not a running child of ours. */
int rp_stop(pid_t pid, int sig, int grace_ms);
/* "exit status 1", "killed by signal 9 (Killed)", ... */
void rp_describe_status(int status, char *buf, size_t len);
/* Run a tool (redis-cli) to its end, killed after timeout_ms; 0 if it exited
 * with status 0. */
int rp_run_tool(char *const argv[], const char *log, int timeout_ms, char *err, size_t errlen);

/* ---- redis-server --------------------------------------------------------------- */

/* A connection to the unix socket `socket`, or (socket NULL) to
 * 127.0.0.1:port, with timeout_ms for the connect and every command. */
struct redisContext *rp_connect(const char *socket, int port, int timeout_ms, char *err,
                                size_t errlen);
/* Spawn a redis-server (argv[0] is the binary) with its output appended to
 * `log` and wait up to 10 s until it answers PING on `socket` (or, socket
 * NULL, on 127.0.0.1:port).  On failure nothing is left running and the
 * log's tail is on stderr. */
int rp_redis_spawn(char *const argv[], const char *log, const char *socket, int port, pid_t *pid,
                   char *err, size_t errlen);

/* A master of a Redis Cluster. */
struct rp_node {
    pid_t pid;   /* 0 when not running */
    int port;    /* on 127.0.0.1; its cluster bus is port + 10000 */
    char id[48]; /* CLUSTER MYID, once the cluster is up */
    char log[RP_PATHLEN];
};

/* One command (hiredis format) on a master over a fresh connection; the
 * reply (the caller frees it) or NULL. */
struct redisReply *rp_node_command(const struct rp_node *n, const char *fmt, ...);
/* SIGTERM, SIGKILL after 5 s; idempotent. */
void rp_node_stop(struct rp_node *n);

/* A cluster as the library sees it: the callers keep the masters in their
 * own structs (which tests and the bench read directly) and lend them here. */
struct rp_cluster {
    const char *server;   /* redis-server binary */
    const char *cli;      /* redis-cli binary */
    const char *dir;      /* nodes-PORT.conf, redis-PORT.log, cluster-create.log, reshard.log */
    int masters;          /* 1 .. RP_CLUSTER_MAX */
    struct rp_node *node; /* node[0 .. masters-1] */
};

/* Start the masters (cluster-enabled, persistence off, node timeout 5 s) on
 * consecutive free ports in 20000..40000 whose bus ports are free too, join
 * them with `redis-cli --cluster create` (no replicas), and return once every
 * master says cluster_state:ok and all agree on who serves which slot; the
 * node ids are filled in.  A port taken by someone else between the check
 * and the bind makes it try elsewhere (3 attempts, each failure on stderr). */
int rp_cluster_start(const struct rp_cluster *c, char *err, size_t errlen);
/* Stop every master (idempotent). */
void rp_cluster_stop(const struct rp_cluster *c);
/* Wait up to timeout_ms until every master says cluster_state:ok, no slot is
 * migrating and all agree on the slot map (what redis-cli --cluster checks
 * before it reshards). */
int rp_cluster_settle(const struct rp_cluster *c, int timeout_ms, char *err, size_t errlen);
/* Move `slots` slots from master `from` to master `to` with `redis-cli
 * --cluster reshard` (the source's lowest slots first) between two settles;
 * its output is appended to dir/reshard.log. */
int rp_cluster_reshard(const struct rp_cluster *c, int from, int to, int slots, char *err,
                       size_t errlen);

#endif
