/* store.c -- the Redis connection: commands, pipelines, scripts, reconnects,
 * and on a Redis Cluster the routing (slot map and parsing in cluster.c). */
#include "store.h"

#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster.h"
#include "keys.h"
#include "metrics.h"
#include "sbuf.h"

#include <hiredis/sds.h>

extern const char clv_lua_apply[], clv_lua_sweep[], clv_lua_clock[], clv_lua_lease[];

static const char *const script_source[CLV_SCRIPT_COUNT] = {
    [CLV_SCRIPT_APPLY] = clv_lua_apply,
    [CLV_SCRIPT_SWEEP] = clv_lua_sweep,
    [CLV_SCRIPT_CLOCK] = clv_lua_clock,
    [CLV_SCRIPT_LEASE] = clv_lua_lease,
};

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

/* Cluster mode: redirections followed per command before giving up (a
 * slot moves once per resharding step; more means a confused cluster),
 * how long TRYAGAIN (a multi-key script while its slot migrates) is
 * retried, and how often the redirections are summed up in the log. */
#define MAX_REDIRECTS 5
#define TRYAGAIN_BUDGET_MS 5000
#define NODE_RETRY_MS 200
#define REPORT_EVERY_MS 5000
#define WARN_EVERY_MS 10000
#define MAX_SYNC_ARGS 64

static const char asking_cmd[] = "*1\r\n$6\r\nASKING\r\n";

/* One command of a cluster pipeline, from append until its reply is read. */
struct store_cmd {
    int node;          /* the node it was last sent to; -1: not sent */
    unsigned gen;      /* that node's connection number then */
    unsigned slot;     /* CLV_CLUSTER_SLOTS: no key */
    size_t off, len;   /* its RESP text in cl->cmds, kept to re-send it */
    redisReply *early; /* its reply, read ahead of its turn */
};

struct clv_store_cluster {
    struct clv_cluster_map map;
    struct store_cmd *q; /* the pipeline, in append order */
    size_t nq, qcap, next;
    struct clv_sbuf cmds; /* their RESP text */
    int flushed;          /* output buffers written since the last append */
    int ready;            /* slot map loaded, masters connected */
    int need_refresh;     /* re-read the slot map before the next pipeline */
    uint64_t moved, asked, tryagain, refreshes, reported;
    clv_ms next_report;
};

/* ---- connection ------------------------------------------------------------ */

static double mono_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void observe_rtt(struct clv_store *st, double started)
{
    if (st->rtt)
        histogram_observe(st->rtt, mono_seconds() - started);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

static void cl_free(struct clv_store *st);
static redisReply *cl_command_staged(struct clv_store *st, size_t off);
static void cl_append(struct clv_store *st, const char *key, size_t keylen, size_t off);
static redisReply *cl_read_reply(struct clv_store *st);
static void cl_report(struct clv_store *st);
static int cl_load_scripts(struct clv_store *st, char *err, size_t errlen);
static int cl_connect(struct clv_store *st, char *err, size_t errlen);
static void cl_drop_unread(struct clv_store *st);

void store_init(struct clv_store *st, const struct clv_redis_config *cfg, const struct clv_log *lg)
{
    memset(st, 0, sizeof(*st));
    st->cfg = cfg;
    st->log = lg;
}

int store_connected(const struct clv_store *st)
{
    return st->cl ? st->cl->ready : st->ctx != NULL;
}

void store_disconnect(struct clv_store *st)
{
    if (st->ctx) {
        redisFree(st->ctx);
        st->ctx = NULL;
    }
    cl_free(st);
    sbuf_free(&st->resp);
}

void store_set_wait_hook(struct clv_store *st, void (*hook)(void *), void *arg)
{
    st->wait_hook = hook;
    st->wait_arg = arg;
}

/* How often the wait hook runs while a reply is awaited. */
#define WAIT_HOOK_EVERY_MS 1

/* Past the timeout with nothing to read: a read that cannot block fails
 * with EAGAIN, the error hiredis reports when SO_RCVTIMEO runs out. */
static int read_or_time_out(redisContext *c, int timed_out)
{
    int flags = timed_out ? fcntl(c->fd, F_GETFL) : -1, rc;

    if (flags >= 0)
        fcntl(c->fd, F_SETFL, flags | O_NONBLOCK);
    rc = redisBufferRead(c);
    if (flags >= 0)
        fcntl(c->fd, F_SETFL, flags);
    return rc;
}

/* redisGetReply(), with the owner's wait hook run while the reply is not
 * there yet.  Same outcome otherwise, the timeout included (redis.timeout_ms
 * without a byte from Redis). */
static int get_reply(struct clv_store *st, redisContext *c, void **reply)
{
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    clv_ms give_up;
    int done = 0;

    if (st->wait_hook == NULL)
        return redisGetReply(c, reply);
    *reply = NULL;
    if (redisGetReplyFromReader(c, reply) != REDIS_OK)
        return REDIS_ERR;
    while (*reply == NULL && !done)
        if (redisBufferWrite(c, &done) != REDIS_OK)
            return REDIS_ERR;
    give_up = clv_mono_ms() + st->cfg->timeout_ms;
    while (*reply == NULL) {
        clv_ms now = clv_mono_ms();
        if (poll(&pfd, 1, WAIT_HOOK_EVERY_MS) == 0 && now < give_up) {
            st->wait_hook(st->wait_arg);
            continue;
        }
        if (read_or_time_out(c, now >= give_up) != REDIS_OK ||
            redisGetReplyFromReader(c, reply) != REDIS_OK)
            return REDIS_ERR;
        if (*reply == NULL && now < give_up)
            give_up = now + st->cfg->timeout_ms; /* bytes came: the timeout starts again */
    }
    return REDIS_OK;
}

/* hiredis 0.14: after an I/O or protocol error the context is unusable. */
static void drop_broken(struct clv_store *st)
{
    if (st->ctx && st->ctx->err) {
        log_warn(st->log, "redis: connection lost: %s", st->ctx->errstr);
        store_disconnect(st);
    }
}

/* One command on a given context (connection setup, node-level commands). */
static redisReply *ctx_command(struct clv_store *st, redisContext *c, const char *fmt, ...)
{
    va_list ap;
    redisReply *r;
    double t0 = mono_seconds();

    va_start(ap, fmt);
    r = redisvCommand(c, fmt, ap);
    va_end(ap);
    observe_rtt(st, t0);
    st->round_trips++;
    st->commands++;
    return r;
}

redisReply *store_command(struct clv_store *st, const char *fmt, ...)
{
    va_list ap;
    redisReply *r;
    double t0;
    int rc;

    if (st->cl) {
        char *cmd = NULL;
        int len;
        size_t off = st->cl->cmds.len;
        va_start(ap, fmt);
        len = redisvFormatCommand(&cmd, fmt, ap);
        va_end(ap);
        if (len < 0)
            return NULL;
        sbuf_append(&st->cl->cmds, cmd, (size_t)len);
        free(cmd);
        return cl_command_staged(st, off);
    }
    if (st->ctx == NULL)
        return NULL;
    t0 = mono_seconds();
    va_start(ap, fmt);
    rc = redisvAppendCommand(st->ctx, fmt, ap);
    va_end(ap);
    r = NULL;
    if (rc == REDIS_OK)
        get_reply(st, st->ctx, (void **)&r);
    observe_rtt(st, t0);
    st->round_trips++;
    st->commands++;
    if (r == NULL)
        drop_broken(st);
    return r;
}

redisReply *store_command_argv(struct clv_store *st, int argc, const char **argv,
                               const size_t *argvlen)
{
    redisReply *r;
    double t0;

    if (st->cl) {
        size_t off = st->cl->cmds.len;
        cluster_format_argv(&st->cl->cmds, argc, argv, argvlen);
        return cl_command_staged(st, off);
    }
    if (st->ctx == NULL)
        return NULL;
    t0 = mono_seconds();
    r = NULL;
    if (redisAppendCommandArgv(st->ctx, argc, argv, argvlen) == REDIS_OK)
        get_reply(st, st->ctx, (void **)&r);
    observe_rtt(st, t0);
    st->round_trips++;
    st->commands++;
    if (r == NULL)
        drop_broken(st);
    return r;
}

double store_pipeline_begin(void)
{
    return mono_seconds();
}

void store_pipeline_end(struct clv_store *st, double started)
{
    st->round_trips++;
    observe_rtt(st, started);
    if (st->cl)
        cl_report(st);
}

/* A pipeline is written out whenever this much is waiting, not only when
 * its first reply is read, so that Redis works on one call while the
 * worker computes the next.  About one apply.lua call of the half-rate
 * shape (50-60 customers, 12-16 kB): with 256 kB, most batches at half
 * rate (100-300 customers) reached Redis only once wholly computed, and
 * the worker's CPU and Redis's took turns (docs/performance.md, tenth
 * session).  A write error is left for the reply read to report. */
#define STORE_FLUSH_BYTES (16 << 10)

static void flush_pipeline(redisContext *ctx)
{
    int done = 0;

    while (!done)
        if (redisBufferWrite(ctx, &done) != REDIS_OK)
            return;
}

void store_append_argv(struct clv_store *st, int argc, const char **argv, const size_t *argvlen)
{
    if (st->cl) {
        const char *key = NULL;
        size_t keylen = 0, off = st->cl->cmds.len;
        cluster_format_argv(&st->cl->cmds, argc, argv, argvlen);
        if (cluster_routing_key(argc, argv, argvlen, &key, &keylen) != 0)
            key = NULL;
        cl_append(st, key, keylen, off);
        return;
    }
    if (st->ctx == NULL)
        return;
    /* Formatted here, into a buffer kept from one command to the next:
     * redisAppendCommandArgv allocates and printf-formats every command
     * (measured: a tenth of a worker's time). */
    sbuf_reset(&st->resp);
    cluster_format_argv(&st->resp, argc, argv, argvlen);
    redisAppendFormattedCommand(st->ctx, st->resp.buf, st->resp.len);
    st->commands++;
    if (sdslen(st->ctx->obuf) >= STORE_FLUSH_BYTES)
        flush_pipeline(st->ctx);
}

redisReply *store_read_reply(struct clv_store *st)
{
    void *r = NULL;

    if (st->cl)
        return cl_read_reply(st);
    if (st->ctx == NULL)
        return NULL;
    if (get_reply(st, st->ctx, &r) != REDIS_OK) {
        drop_broken(st);
        return NULL;
    }
    return r;
}

int store_reply_error(redisReply *r, const char *what, char *err, size_t errlen)
{
    if (r == NULL) {
        clv_seterr(err, errlen, "%s: connection lost", what);
        return -1;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        clv_seterr(err, errlen, "%s: %s", what, r->str);
        freeReplyObject(r);
        return -1;
    }
    return 0;
}

static redisContext *open_tcp(const char *host, int port, int timeout_ms)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    redisContext *ctx = redisConnectWithTimeout(host, port, tv);

    if (ctx && !ctx->err)
        redisSetTimeout(ctx, tv);
    return ctx;
}

static redisContext *open_context(const struct clv_redis_config *cfg)
{
    struct timeval tv = {cfg->timeout_ms / 1000, (cfg->timeout_ms % 1000) * 1000};
    redisContext *ctx;

    if (cfg->unix_socket && cfg->unix_socket[0])
        ctx = redisConnectUnixWithTimeout(cfg->unix_socket, tv);
    else
        return open_tcp(cfg->host, cfg->port, cfg->timeout_ms);
    if (ctx && !ctx->err)
        redisSetTimeout(ctx, tv);
    return ctx;
}

static int authenticate(struct clv_store *st, redisContext *c, char *err, size_t errlen)
{
    const struct clv_redis_config *cfg = st->cfg;
    redisReply *r;

    if (cfg->password == NULL || cfg->password[0] == '\0')
        return 0;
    if (cfg->user && cfg->user[0])
        r = ctx_command(st, c, "AUTH %s %s", cfg->user, cfg->password);
    else
        r = ctx_command(st, c, "AUTH %s", cfg->password);
    if (store_reply_error(r, "redis AUTH", err, errlen) != 0)
        return -1;
    freeReplyObject(r);
    return 0;
}

static int select_db(struct clv_store *st, char *err, size_t errlen)
{
    redisReply *r;

    if (st->cfg->db == 0)
        return 0;
    r = store_command(st, "SELECT %d", st->cfg->db);
    if (store_reply_error(r, "redis SELECT", err, errlen) != 0)
        return -1;
    freeReplyObject(r);
    return 0;
}

/* Scripts are loaded once per connection and called by SHA; Redis forgets
 * them on restart or failover, which NOSCRIPT replies reveal.  The SHA of
 * a script is the same on every server. */
static int load_scripts_on(struct clv_store *st, redisContext *c, char *err, size_t errlen)
{
    for (int i = 0; i < CLV_SCRIPT_COUNT; i++) {
        redisReply *r = ctx_command(st, c, "SCRIPT LOAD %s", script_source[i]);
        if (store_reply_error(r, "redis SCRIPT LOAD", err, errlen) != 0)
            return -1;
        if (r->type != REDIS_REPLY_STRING || r->len != 40) {
            clv_seterr(err, errlen, "redis SCRIPT LOAD: unexpected reply");
            freeReplyObject(r);
            return -1;
        }
        memcpy(st->sha[i], r->str, 40);
        st->sha[i][40] = '\0';
        freeReplyObject(r);
    }
    return 0;
}

int store_load_scripts(struct clv_store *st, char *err, size_t errlen)
{
    if (st->cl)
        return cl_load_scripts(st, err, errlen);
    if (st->ctx == NULL) {
        clv_seterr(err, errlen, "redis SCRIPT LOAD: not connected");
        return -1;
    }
    if (load_scripts_on(st, st->ctx, err, errlen) != 0) {
        drop_broken(st);
        return -1;
    }
    return 0;
}

const char *store_script_sha(const struct clv_store *st, enum clv_script script)
{
    return st->sha[script];
}

int store_is_noscript(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0;
}

redisReply *store_eval(struct clv_store *st, enum clv_script script, int nkeys, int argc,
                       const char **argv, const size_t *argvlen)
{
    const char *av[32];
    size_t avlen[32];
    char nk[16];
    redisReply *r = NULL;

    if (argc + 3 > (int)CLV_ARRAY_LEN(av))
        return NULL;
    av[0] = "EVALSHA";
    avlen[0] = 7;
    av[2] = nk;
    avlen[2] = (size_t)snprintf(nk, sizeof(nk), "%d", nkeys);
    memcpy(av + 3, argv, sizeof(*argv) * (size_t)argc);
    memcpy(avlen + 3, argvlen, sizeof(*argvlen) * (size_t)argc);
    for (int attempt = 0; attempt < 2; attempt++) {
        char err[CLV_ERRLEN];
        av[1] = st->sha[script];
        avlen[1] = 40;
        r = store_command_argv(st, argc + 3, av, avlen);
        if (r == NULL || !store_is_noscript(r))
            return r;
        freeReplyObject(r);
        r = NULL;
        log_warn(st->log, "redis: script cache empty (restart or failover?): loading it again");
        if (store_load_scripts(st, err, sizeof(err)) != 0) {
            log_warn(st->log, "%s", err);
            return NULL;
        }
    }
    return r;
}

/* The shard count decides where every customer lives: it is written on
 * first start and must match on every later one. */
static int check_shards(struct clv_store *st, char *err, size_t errlen)
{
    char key[CLV_KEY_MAX];
    redisReply *r;
    long have;

    keys_meta(key, st->cfg->key_prefix);
    r = store_command(st, "HSETNX %s shards %d", key, st->cfg->shards);
    if (store_reply_error(r, "redis HSETNX meta", err, errlen) != 0)
        return -1;
    freeReplyObject(r);
    r = store_command(st, "HGET %s shards", key);
    if (store_reply_error(r, "redis HGET meta", err, errlen) != 0)
        return -1;
    have = r->type == REDIS_REPLY_STRING ? strtol(r->str, NULL, 10) : -1;
    freeReplyObject(r);
    if (have != st->cfg->shards) {
        st->fatal = 1;
        clv_seterr(err, errlen,
                   "redis.shards is %d but this deployment was created with %ld shards (%s); "
                   "the shard count cannot change",
                   st->cfg->shards, have, key);
        return -1;
    }
    return 0;
}

static int connect_now(struct clv_store *st, char *err, size_t errlen)
{
    if (st->cfg->cluster)
        return cl_connect(st, err, errlen);
    st->ctx = open_context(st->cfg);
    if (st->ctx == NULL || st->ctx->err) {
        clv_seterr(err, errlen, "redis connect: %s",
                   st->ctx ? st->ctx->errstr : "cannot allocate context");
        store_disconnect(st);
        return -1;
    }
    if (authenticate(st, st->ctx, err, errlen) != 0 || select_db(st, err, errlen) != 0 ||
        store_load_scripts(st, err, errlen) != 0 || check_shards(st, err, errlen) != 0) {
        store_disconnect(st);
        return -1;
    }
    log_info(st->log, "redis: connected to %s",
             st->cfg->unix_socket[0] ? st->cfg->unix_socket : st->cfg->host);
    return 0;
}

int store_ensure(struct clv_store *st, char *err, size_t errlen)
{
    clv_ms now = clv_mono_ms();

    if (store_connected(st))
        return 0;
    if (now < st->next_attempt) {
        clv_seterr(err, errlen, "redis: waiting %lld ms before reconnecting",
                   (long long)(st->next_attempt - now));
        return -1;
    }
    if (connect_now(st, err, errlen) != 0) {
        st->backoff = st->backoff ? st->backoff * 2 : BACKOFF_MIN_MS;
        if (st->backoff > BACKOFF_MAX_MS)
            st->backoff = BACKOFF_MAX_MS;
        st->next_attempt = now + st->backoff;
        return -1;
    }
    st->backoff = 0;
    /* the first connection is not a reconnect: nothing was lost before it */
    st->reconnected = st->generation > 0;
    st->generation++;
    return 0;
}

/* ---- cluster: nodes ------------------------------------------------------------
 *
 * One connection per master, opened when a command first needs it, with
 * AUTH and the scripts loaded, so that EVALSHA works on whichever node a
 * slot moves to. */

static void cl_close_node(struct clv_store *st, int i, const char *why)
{
    struct clv_cluster_node *n = &st->cl->map.node[i];

    if (n->ctx == NULL)
        return;
    if (why) {
        log_warn(st->log, "redis cluster: connection to %s:%d lost: %s", n->host, n->port, why);
        n->lost = 1;
        st->cl->need_refresh = 1;
    }
    redisFree(n->ctx);
    n->ctx = NULL;
}

/* After an I/O error: the context is unusable (hiredis 0.14). */
static void cl_node_broken(struct clv_store *st, int i)
{
    redisContext *c = st->cl->map.node[i].ctx;

    cl_close_node(st, i, c && c->err ? c->errstr : "protocol error");
}

static void cl_close_all(struct clv_store *st)
{
    for (int i = 0; i < st->cl->map.nnodes; i++)
        cl_close_node(st, i, NULL);
}

/* A connection to node n with AUTH and the scripts loaded; NULL on error. */
static redisContext *cl_node_open(struct clv_store *st, const struct clv_cluster_node *n, char *err,
                                  size_t errlen)
{
    redisContext *c = open_tcp(n->host, n->port, st->cfg->timeout_ms);

    if (c == NULL || c->err) {
        clv_seterr(err, errlen, "redis connect %s:%d: %s", n->host, n->port,
                   c ? c->errstr : "cannot allocate context");
    } else if (authenticate(st, c, err, errlen) == 0 && load_scripts_on(st, c, err, errlen) == 0) {
        return c;
    }
    if (c)
        redisFree(c);
    return NULL;
}

static int cl_node_connect(struct clv_store *st, int i, char *err, size_t errlen)
{
    struct clv_cluster_node *n = &st->cl->map.node[i];
    char why[CLV_ERRLEN];
    clv_ms now;

    if (n->ctx)
        return 0;
    now = clv_mono_ms();
    if (now < n->retry_at) {
        clv_seterr(err, errlen, "redis %s:%d: waiting before reconnecting", n->host, n->port);
        return -1;
    }
    n->ctx = cl_node_open(st, n, why, sizeof(why));
    if (n->ctx == NULL) {
        clv_seterr(err, errlen, "%s", why);
        n->retry_at = now + NODE_RETRY_MS;
        st->cl->need_refresh = 1;
        if (now >= n->next_warning) { /* a node down is retried often: say so now and then */
            log_warn(st->log, "redis cluster: %s", why);
            n->next_warning = now + WARN_EVERY_MS;
        }
        return -1;
    }
    n->gen++;
    n->retry_at = 0;
    log_info(st->log, "redis cluster: %sconnected to %s:%d", n->lost ? "re" : "", n->host, n->port);
    st->generation++;
    if (n->lost)
        st->reconnected = 1; /* what the outage left in the outboxes needs a drain */
    n->lost = 0;
    return 0;
}

/* Read the next reply of node i; NULL (and the node closed) on error. */
static redisReply *cl_node_reply(struct clv_store *st, int i)
{
    void *r = NULL;

    if (get_reply(st, st->cl->map.node[i].ctx, &r) != REDIS_OK) {
        cl_node_broken(st, i);
        return NULL;
    }
    return r;
}

/* ---- cluster: the slot map --------------------------------------------------------- */

static int cl_slots_from(struct clv_store *st, redisContext *c, const char *host, char *err,
                         size_t errlen)
{
    redisReply *r = ctx_command(st, c, "CLUSTER SLOTS");
    int masters;

    if (r == NULL) {
        clv_seterr(err, errlen, "redis CLUSTER SLOTS from %s: %s", host, c->errstr);
        return -1;
    }
    masters = cluster_apply_slots(&st->cl->map, r, host, err, errlen);
    freeReplyObject(r);
    return masters;
}

/* A seed: a connection of its own, only to ask for the slot map. */
static int cl_slots_from_seed(struct clv_store *st, const char *seed, char *err, size_t errlen)
{
    char host[CLV_CLUSTER_HOST_MAX];
    redisContext *c;
    int port, masters = -1;

    if (cluster_parse_hostport(seed, strlen(seed), host, sizeof(host), &port) != 0) {
        clv_seterr(err, errlen, "redis.seeds: bad address \"%s\"", seed);
        return -1;
    }
    c = open_tcp(host, port, st->cfg->timeout_ms);
    if (c == NULL || c->err)
        clv_seterr(err, errlen, "redis connect %s: %s", seed, c ? c->errstr : "out of memory");
    else if (authenticate(st, c, err, errlen) == 0)
        masters = cl_slots_from(st, c, host, err, errlen);
    if (c)
        redisFree(c);
    return masters;
}

/* Nodes no slot points to any more (a master that became a replica, or
 * left) are closed and forgotten.  Only between pipelines. */
static void cl_forget_unused(struct clv_store *st)
{
    struct clv_cluster_map *m = &st->cl->map;
    int used[CLV_CLUSTER_MAX_NODES] = {0};

    for (int s = 0; s < CLV_CLUSTER_SLOTS; s++)
        if (m->slot[s] >= 0)
            used[m->slot[s]] = 1;
    for (int i = 0; i < m->nnodes; i++)
        if (!used[i] && m->node[i].host[0] != '\0') {
            cl_close_node(st, i, NULL);
            cluster_node_forget(m, i);
        }
}

/* CLUSTER SLOTS from a node already connected (no connection set-up),
 * else from the seeds in order, else from any other node known. */
static int cl_refresh(struct clv_store *st, char *err, size_t errlen)
{
    struct clv_cluster_map *m = &st->cl->map;
    int masters = -1, i;

    for (i = 0; i < m->nnodes && masters < 0; i++)
        if (m->node[i].ctx) {
            masters = cl_slots_from(st, m->node[i].ctx, m->node[i].host, err, errlen);
            if (masters < 0 && m->node[i].ctx->err)
                cl_node_broken(st, i);
        }
    for (i = 0; i < st->cfg->nseeds && masters < 0; i++)
        masters = cl_slots_from_seed(st, st->cfg->seeds[i], err, errlen);
    for (i = 0; i < m->nnodes && masters < 0; i++)
        if (m->node[i].host[0] != '\0' && m->node[i].ctx == NULL &&
            cl_node_connect(st, i, err, errlen) == 0)
            masters = cl_slots_from(st, m->node[i].ctx, m->node[i].host, err, errlen);
    if (masters < 0)
        return -1;
    cl_forget_unused(st);
    st->cl->need_refresh = 0;
    st->cl->refreshes++;
    log_debug(st->log, "redis cluster: slot map refreshed, %d master(s)", masters);
    return masters;
}

/* Connect to every master, loading the scripts (on each: a failover
 * promotes a node that never saw our SCRIPT LOAD). */
static int cl_load_scripts(struct clv_store *st, char *err, size_t errlen)
{
    struct clv_cluster_map *m = &st->cl->map;
    int used[CLV_CLUSTER_MAX_NODES] = {0};

    cl_drop_unread(st);
    for (int s = 0; s < CLV_CLUSTER_SLOTS; s++)
        if (m->slot[s] >= 0)
            used[m->slot[s]] = 1;
    for (int i = 0; i < m->nnodes; i++) {
        if (!used[i])
            continue;
        if (m->node[i].ctx == NULL) {
            if (cl_node_connect(st, i, err, errlen) != 0) /* loads them */
                return -1;
        } else if (load_scripts_on(st, m->node[i].ctx, err, errlen) != 0) {
            if (m->node[i].ctx->err)
                cl_node_broken(st, i);
            return -1;
        }
    }
    return 0;
}

static int cl_connect(struct clv_store *st, char *err, size_t errlen)
{
    int masters;

    if (st->cl == NULL) {
        st->cl = calloc(1, sizeof(*st->cl));
        if (st->cl == NULL) {
            clv_seterr(err, errlen, "redis cluster: out of memory");
            return -1;
        }
        cluster_map_init(&st->cl->map);
        sbuf_init(&st->cl->cmds);
    }
    masters = cl_refresh(st, err, errlen);
    if (masters < 0 || cl_load_scripts(st, err, errlen) != 0)
        goto fail;
    st->cl->ready = 1;
    if (check_shards(st, err, errlen) != 0)
        goto fail;
    log_info(st->log, "redis: connected to a cluster of %d master(s)", masters);
    return 0;
fail:
    cl_close_all(st);
    st->cl->ready = 0;
    return -1;
}

static void cl_free(struct clv_store *st)
{
    struct clv_store_cluster *cl = st->cl;

    if (cl == NULL)
        return;
    cl->next_report = 0; /* the last word on redirections */
    cl_report(st);
    for (size_t i = cl->next; i < cl->nq; i++)
        if (cl->q[i].early)
            freeReplyObject(cl->q[i].early);
    cl_close_all(st);
    free(cl->q);
    sbuf_free(&cl->cmds);
    free(cl);
    st->cl = NULL;
}

/* The redirections of the last few seconds, summed up: one line, not one
 * per command, while slots move. */
static void cl_report(struct clv_store *st)
{
    struct clv_store_cluster *cl = st->cl;
    uint64_t total = cl->moved + cl->asked + cl->tryagain;
    clv_ms now = clv_mono_ms();

    if (total == cl->reported || now < cl->next_report)
        return;
    log_info(st->log,
             "redis cluster: followed %llu MOVED, %llu ASK, %llu TRYAGAIN so far; slot map "
             "refreshed %llu time(s)",
             (unsigned long long)cl->moved, (unsigned long long)cl->asked,
             (unsigned long long)cl->tryagain, (unsigned long long)cl->refreshes);
    cl->reported = total;
    cl->next_report = now + REPORT_EVERY_MS;
}

/* ---- cluster: pipelines ----------------------------------------------------------
 *
 * Commands are formatted into cl->cmds and appended to their node's
 * output buffer; the first read writes every buffer out (the nodes work in
 * parallel), then replies are read in append order, each from its node. */

static void cl_reset_queue(struct clv_store_cluster *cl)
{
    cl->nq = cl->next = 0;
    cl->flushed = 1;
    sbuf_reset(&cl->cmds);
}

/* Give up on the rest of a pipeline: read (and drop) what is on its way,
 * so that the connections carry no stale reply into the next one. */
static void cl_abandon(struct clv_store *st)
{
    struct clv_store_cluster *cl = st->cl;

    for (size_t i = cl->next; i < cl->nq; i++) {
        struct store_cmd *e = &cl->q[i];
        struct clv_cluster_node *n = e->node >= 0 ? &cl->map.node[e->node] : NULL;
        redisReply *r = e->early;
        if (r == NULL && n && n->ctx && n->gen == e->gen)
            r = cl_node_reply(st, e->node);
        if (r)
            freeReplyObject(r);
    }
    cl_reset_queue(cl);
}

/* A command outside a pipeline while replies of one are unread is a
 * caller bug; the unread replies are dropped so that they cannot be taken
 * for this command's. */
static void cl_drop_unread(struct clv_store *st)
{
    struct clv_store_cluster *cl = st->cl;

    if (cl->next >= cl->nq)
        return;
    log_error(st->log, "redis cluster: %zu unread pipeline repl(ies) dropped", cl->nq - cl->next);
    cl_abandon(st);
}

/* A new pipeline starts from a fresh slot map if one is due. */
static void cl_begin(struct clv_store *st)
{
    char err[CLV_ERRLEN];

    if (!st->cl->need_refresh || !st->cl->ready)
        return;
    if (cl_refresh(st, err, sizeof(err)) < 0) {
        /* nobody answers: reconnect from the seeds, with backoff */
        log_warn(st->log, "redis cluster: %s", err);
        cl_close_all(st);
        st->cl->ready = 0;
    }
}

/* Write node i's output buffer.  On error the node is closed: what was
 * sent on that connection is lost, and its reply read fails the batch. */
static void cl_write_node(struct clv_store *st, int i)
{
    int done = 0;

    while (st->cl->map.node[i].ctx && !done)
        if (redisBufferWrite(st->cl->map.node[i].ctx, &done) != REDIS_OK)
            cl_node_broken(st, i);
}

/* Write every node's output buffer. */
static void cl_flush(struct clv_store *st)
{
    for (int i = 0; i < st->cl->map.nnodes; i++)
        cl_write_node(st, i);
    st->cl->flushed = 1;
}

static void cl_append(struct clv_store *st, const char *key, size_t keylen, size_t off)
{
    struct clv_store_cluster *cl = st->cl;
    struct store_cmd *e;

    if (cl->nq == 0)
        cl_begin(st);
    if (cl->nq == cl->qcap) {
        size_t ncap = cl->qcap ? cl->qcap * 2 : 256;
        struct store_cmd *nq = realloc(cl->q, ncap * sizeof(*nq));
        if (nq == NULL)
            abort(); /* as sbuf: a daemon that cannot allocate cannot go on */
        cl->q = nq;
        cl->qcap = ncap;
    }
    e = &cl->q[cl->nq++];
    e->off = off;
    e->len = cl->cmds.len - off;
    e->early = NULL;
    e->slot = key ? keys_cluster_slot(key, keylen) : CLV_CLUSTER_SLOTS;
    e->node = !cl->ready ? -1
              : key      ? cluster_slot_node(&cl->map, e->slot)
                         : cluster_any_node(&cl->map);
    if (e->node >= 0 && cl_node_connect(st, e->node, NULL, 0) == 0) {
        struct clv_cluster_node *n = &cl->map.node[e->node];
        redisAppendFormattedCommand(n->ctx, cl->cmds.buf + e->off, e->len);
        e->gen = n->gen;
        if (sdslen(n->ctx->obuf) >= STORE_FLUSH_BYTES)
            cl_write_node(st, e->node);
    } else {
        e->node = -1;
        cl->need_refresh = 1;
    }
    cl->flushed = 0;
    st->commands++;
}

/* The reply of e as sent: read ahead already, or next on its node. */
static redisReply *cl_first_reply(struct clv_store *st, struct store_cmd *e)
{
    struct clv_cluster_node *n;
    redisReply *r = e->early;

    if (r) {
        e->early = NULL;
        return r;
    }
    if (e->node < 0)
        return NULL;
    n = &st->cl->map.node[e->node];
    if (n->ctx == NULL || n->gen != e->gen)
        return NULL; /* that connection broke: its replies are lost */
    return cl_node_reply(st, e->node);
}

/* Before a command is re-sent to node i, the replies that node still owes
 * for later commands of the pipeline are read and kept: they come first. */
static int cl_read_ahead(struct clv_store *st, int i)
{
    struct clv_store_cluster *cl = st->cl;

    for (size_t j = cl->next; j < cl->nq; j++) {
        struct store_cmd *e = &cl->q[j];
        if (e->node != i || e->early || e->gen != cl->map.node[i].gen)
            continue;
        e->early = cl_node_reply(st, i);
        if (e->early == NULL)
            return -1;
    }
    return 0;
}

/* Send e again, to node i (after ASKING for an ASK), and read its reply. */
static redisReply *cl_resend(struct clv_store *st, struct store_cmd *e, int i, int asking)
{
    struct clv_cluster_node *n = &st->cl->map.node[i];
    redisReply *r;
    if (cl_node_connect(st, i, NULL, 0) != 0)
        return NULL;
    if (cl_read_ahead(st, i) != 0 || n->ctx == NULL)
        return NULL;
    if (asking)
        redisAppendFormattedCommand(n->ctx, asking_cmd, sizeof(asking_cmd) - 1);
    redisAppendFormattedCommand(n->ctx, st->cl->cmds.buf + e->off, e->len);
    e->node = i;
    e->gen = n->gen;
    st->commands += 1 + (asking != 0);
    st->round_trips++;
    if (asking) {
        r = cl_node_reply(st, i);
        if (r == NULL)
            return NULL;
        freeReplyObject(r); /* +OK */
    }
    return cl_node_reply(st, i);
}

/* MOVED or ASK in r: where to.  -1 if it is neither (or the address
 * cannot be used). */
static int cl_redirect_target(struct clv_store *st, const struct store_cmd *e, const redisReply *r,
                              int *kind, unsigned *slot)
{
    struct clv_cluster_map *m = &st->cl->map;
    char host[CLV_CLUSTER_HOST_MAX];
    int port;

    *kind = cluster_parse_redirect(r->str, r->len, slot, host, sizeof(host), &port);
    if (*kind <= 0)
        return -1;
    if (host[0] == '\0') /* the node does not know its address: it is the one that said so */
        snprintf(host, sizeof(host), "%s", m->node[e->node].host);
    return cluster_node_add(m, host, port);
}

/* Follow redirections until a real reply (or give up and return what we
 * have: the caller sees the error). */
static redisReply *cl_follow(struct clv_store *st, struct store_cmd *e, redisReply *r)
{
    struct clv_store_cluster *cl = st->cl;
    clv_ms deadline = 0;
    int hops = 0, kind, target, pause = 10;
    unsigned slot;

    while (r && r->type == REDIS_REPLY_ERROR) {
        if ((target = cl_redirect_target(st, e, r, &kind, &slot)) >= 0) {
            if (++hops > MAX_REDIRECTS)
                break;
            if (kind == CLV_REDIRECT_MOVED) {
                log_debug(st->log, "redis cluster: MOVED: slot %u is on %s:%d", slot,
                          cl->map.node[target].host, cl->map.node[target].port);
                cluster_set_slot(&cl->map, slot, target);
                cl->need_refresh = 1; /* others have probably moved too */
                cl->moved++;
            } else {
                log_debug(st->log, "redis cluster: ASK: slot %u is moving to %s:%d", slot,
                          cl->map.node[target].host, cl->map.node[target].port);
                cl->asked++;
            }
        } else if (cluster_is_error(r, "TRYAGAIN")) {
            /* a script's keys are split between the two nodes of a
             * migrating slot: wait for the migration to move on */
            clv_ms now = clv_mono_ms();
            if (deadline == 0)
                deadline = now + TRYAGAIN_BUDGET_MS;
            if (now >= deadline || e->slot >= CLV_CLUSTER_SLOTS ||
                (target = cluster_slot_node(&cl->map, e->slot)) < 0)
                break;
            cl->tryagain++;
            sleep_ms(pause);
            pause = pause < 50 ? pause * 2 : 50;
            hops = 0;
            kind = CLV_REDIRECT_NONE;
        } else {
            if (cluster_is_error(r, "CLUSTERDOWN"))
                cl->need_refresh = 1;
            break;
        }
        freeReplyObject(r);
        r = cl_resend(st, e, target, kind == CLV_REDIRECT_ASK);
    }
    return r;
}

static redisReply *cl_read_reply(struct clv_store *st)
{
    struct clv_store_cluster *cl = st->cl;
    struct store_cmd *e;
    redisReply *r;

    if (cl->next >= cl->nq)
        return NULL;
    if (!cl->flushed)
        cl_flush(st);
    e = &cl->q[cl->next++];
    r = cl_follow(st, e, cl_first_reply(st, e));
    if (r == NULL) {
        /* as a lost connection on one server: the caller's batch fails
         * (and is retried), and nothing of this pipeline is read later */
        cl->need_refresh = 1;
        cl_abandon(st);
    } else if (cl->next == cl->nq) {
        cl_reset_queue(cl);
    }
    return r;
}

/* One command, formatted at cl->cmds + off, routed by its key. */
static redisReply *cl_command_staged(struct clv_store *st, size_t off)
{
    struct clv_store_cluster *cl = st->cl;
    const char *argv[MAX_SYNC_ARGS], *key = NULL;
    size_t argvlen[MAX_SYNC_ARGS], keylen = 0;
    double t0 = mono_seconds();
    redisReply *r;
    int argc;

    if (cl->next < cl->nq) {
        size_t len = cl->cmds.len - off;
        memmove(cl->cmds.buf, cl->cmds.buf + off, len);
        cl_drop_unread(st); /* reads only: the commands' text is not needed */
        cl->cmds.len = len;
        off = 0;
    }
    argc = cluster_resp_argv(cl->cmds.buf + off, cl->cmds.len - off, MAX_SYNC_ARGS, argv, argvlen);
    if (argc > 0 && cluster_routing_key(argc, argv, argvlen, &key, &keylen) != 0)
        key = NULL;
    cl_append(st, key, keylen, off);
    r = cl_read_reply(st);
    observe_rtt(st, t0);
    st->round_trips++;
    cl_report(st);
    return r;
}
