/* clvctl_redis.c -- reaching clvd's Redis from clvctl: where it is (clvd.yaml
 * and the command line), connecting (AUTH, SELECT), routing a key to the
 * node that holds it (one server, or the masters of a Redis Cluster by hash
 * slot, from CLUSTER SLOTS), the deployment's shard count (<prefix>meta) and
 * its clock (--at, the wall clock, or the group watermark of an event-clock
 * deployment).
 *
 * hiredis directly: a one-shot tool needs none of state.c's scripts or
 * reconnection.  A slot that moves while a command runs is an error, not a
 * redirect: run the command again. */
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clvctl.h"
#include "common.h"
#include "config.h"
#include "keys.h"
#include "timeutil.h"

/* ---- where and how to connect ------------------------------------------- */

/* clvd.yaml's redis section (or its defaults), then the command line.  The
 * strings point into cfg or argv. */
void redis_target_from(const struct redis_opts *o, const struct clv_config *cfg,
                       struct redis_target *t)
{
    const struct clv_redis_config *rc = &cfg->redis;

    *t = (struct redis_target){.host = rc->host,
                               .port = rc->port,
                               .socket =
                                   rc->unix_socket && rc->unix_socket[0] ? rc->unix_socket : NULL,
                               .db = rc->db,
                               .user = rc->user,
                               .password = rc->password,
                               .timeout_ms = rc->timeout_ms,
                               .prefix = rc->key_prefix};
    if (rc->cluster && rc->nseeds > 0) {
        /* a cluster: start from the first seed "host:port" */
        const char *colon = strrchr(rc->seeds[0], ':');
        size_t len = colon ? (size_t)(colon - rc->seeds[0]) : 0;
        if (colon != NULL && len < sizeof(t->seed_host)) {
            memcpy(t->seed_host, rc->seeds[0], len);
            t->seed_host[len] = '\0';
            t->host = t->seed_host;
            t->port = atoi(colon + 1);
            t->socket = NULL;
        }
    }
    if (o->socket) {
        t->socket = o->socket;
    } else if (o->host || o->port) {
        t->socket = NULL;
        t->host = o->host ? o->host : t->host;
        t->port = o->port ? o->port : t->port;
    }
    if (o->prefix)
        t->prefix = o->prefix;
}

void redis_target_name(const struct redis_target *t, char *buf, size_t len)
{
    if (t->socket)
        snprintf(buf, len, "unix:%s", t->socket);
    else
        snprintf(buf, len, "%s:%d", t->host, t->port);
}

int reply_failed(redisContext *c, redisReply *reply, const char *what, char *err, size_t errlen)
{
    if (reply == NULL) {
        clv_seterr(err, errlen, "redis %s: %s", what, c->errstr[0] ? c->errstr : "no reply");
        return -1;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        clv_seterr(err, errlen, "redis %s: %s", what, reply->str);
        freeReplyObject(reply);
        return -1;
    }
    return 0;
}

static int redis_command_ok(redisContext *c, const char *what, char *err, size_t errlen,
                            const char *fmt, ...)
{
    va_list ap;
    redisReply *reply;

    va_start(ap, fmt);
    reply = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (reply_failed(c, reply, what, err, errlen) < 0)
        return -1;
    freeReplyObject(reply);
    return 0;
}

redisContext *redis_open(const struct redis_target *t, const char *host, int port,
                         const char *socket, char *err, size_t errlen)
{
    struct timeval tv = {t->timeout_ms / 1000, (t->timeout_ms % 1000) * 1000};
    redisContext *c =
        socket ? redisConnectUnixWithTimeout(socket, tv) : redisConnectWithTimeout(host, port, tv);

    if (c == NULL || c->err) {
        if (socket)
            clv_seterr(err, errlen, "redis unix:%s: %s", socket, c ? c->errstr : "out of memory");
        else
            clv_seterr(err, errlen, "redis %s:%d: %s", host, port, c ? c->errstr : "out of memory");
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    if (t->password && t->password[0] &&
        ((t->user && t->user[0]
              ? redis_command_ok(c, "AUTH", err, errlen, "AUTH %s %s", t->user, t->password)
              : redis_command_ok(c, "AUTH", err, errlen, "AUTH %s", t->password)) < 0))
        goto fail;
    if (t->db != 0 && redis_command_ok(c, "SELECT", err, errlen, "SELECT %d", t->db) < 0)
        goto fail;
    return c;
fail:
    redisFree(c);
    return NULL;
}

/* ---- Redis Cluster -------------------------------------------------------- */

/* The index of (host, port) in m[], adding it when there is room; -1 if full. */
static int master_index(struct master *m, int max, int *n, const char *host, int port)
{
    int k;

    for (k = 0; k < *n && !(m[k].port == port && strcmp(m[k].host, host) == 0); k++)
        ;
    if (k == *n) {
        if (*n == max)
            return -1;
        snprintf(m[k].host, sizeof(m[k].host), "%s", host);
        m[(*n)++].port = port;
    }
    return k;
}

/* One CLUSTER SLOTS range [start, end, [host, port, ...], ...]: its master's
 * index, adding it to m[]; -1 when malformed.  An empty address means the
 * node that answered. */
static int range_master(const redisReply *range, const struct redis_target *t, struct master *m,
                        int max, int *n, long long *start, long long *end)
{
    const redisReply *node;

    if (range->type != REDIS_REPLY_ARRAY || range->elements < 3 ||
        range->element[0]->type != REDIS_REPLY_INTEGER ||
        range->element[1]->type != REDIS_REPLY_INTEGER)
        return -1;
    node = range->element[2];
    if (node->type != REDIS_REPLY_ARRAY || node->elements < 2 ||
        node->element[0]->type != REDIS_REPLY_STRING ||
        node->element[1]->type != REDIS_REPLY_INTEGER)
        return -1;
    *start = range->element[0]->integer;
    *end = range->element[1]->integer;
    return master_index(m, max, n, node->element[0]->len ? node->element[0]->str : t->host,
                        (int)node->element[1]->integer);
}

/* The masters and, if slot_master is not NULL, which serves each slot. */
static int cluster_map(redisContext *c, const struct redis_target *t, struct master *m, int max,
                       int *n, uint16_t *slot_master, char *err, size_t errlen)
{
    redisReply *reply = redisCommand(c, "CLUSTER SLOTS");

    *n = 0;
    if (reply == NULL)
        return reply_failed(c, NULL, "CLUSTER SLOTS", err, errlen);
    /* an error reply: not in cluster mode */
    for (size_t i = 0; reply->type == REDIS_REPLY_ARRAY && i < reply->elements; i++) {
        long long start, end;
        int k = range_master(reply->element[i], t, m, max, n, &start, &end);
        if (k < 0 || slot_master == NULL)
            continue;
        for (long long s = start; s <= end && s < 16384; s++)
            if (s >= 0)
                slot_master[s] = (uint16_t)k;
    }
    freeReplyObject(reply);
    return 0;
}

int cluster_masters(redisContext *c, const struct redis_target *t, struct master *m, int max,
                    int *n, char *err, size_t errlen)
{
    return cluster_map(c, t, m, max, n, NULL, err, errlen);
}

/* ---- options ---------------------------------------------------------------- */

void deploy_usage(FILE *out)
{
    fprintf(out,
            "where clvd's Redis is (default: clvd.yaml's defaults, 127.0.0.1:6379, prefix clv:):\n"
            "  -c, --config FILE        take redis.* (address, auth, db, key_prefix, cluster\n"
            "                           seeds) and the rules (lifecycle, clv, rfm, tiers,\n"
            "                           alerts, clock.mode) from clvd's config\n"
            "  --redis-socket PATH      connect to a unix socket\n"
            "  --redis-host H           connect to host H (with --redis-port)\n"
            "  --redis-port P           port\n"
            "  --prefix P               key prefix (default: redis.key_prefix, clv:)\n"
            "  --shards N               shard count (default: read from <prefix>meta)\n"
            "  --at TIME                compute windows and deadlines at TIME (YYYY-MM-DD or\n"
            "                           RFC 3339); default: the deployment's clock (below)\n"
            "\n"
            "The clock: with clock.mode wall (or no event clock in Redis) the wall clock;\n"
            "with an event-clock deployment the group watermark of the running instances\n"
            "(<prefix>{clock}:wm); when none is running (clock.mode: event in -c FILE),\n"
            "`customer` takes the latest time in the customer's state, `stats` the wall\n"
            "clock (give --at).\n");
}

static int deploy_set_number(const char *cmd, const char *name, const char *v,
                             struct deploy_opts *o)
{
    unsigned long long u;

    if (strcmp(name, "--redis-port") == 0) {
        if (parse_ull(v, 1, 65535, &u) < 0) {
            fprintf(stderr, "clvctl %s: --redis-port wants 1..65535, not '%s'\n", cmd, v);
            return -1;
        }
        o->redis.port = (int)u;
        return 1;
    }
    if (strcmp(name, "--shards") == 0) {
        if (parse_ull(v, 1, 65536, &u) < 0) {
            fprintf(stderr, "clvctl %s: --shards wants 1..65536, not '%s'\n", cmd, v);
            return -1;
        }
        o->shards = (unsigned)u;
        return 1;
    }
    if (parse_time(v, &o->at) < 0) { /* --at */
        fprintf(stderr, "clvctl %s: --at wants YYYY-MM-DD or RFC 3339, not '%s'\n", cmd, v);
        return -1;
    }
    o->have_at = 1;
    return 1;
}

int deploy_option(int argc, char **argv, int *i, struct deploy_opts *o)
{
    const struct {
        const char *name;
        const char **dest; /* NULL: a number */
    } opts[] = {{"-c", &o->redis.config_path},
                {"--config", &o->redis.config_path},
                {"--redis-socket", &o->redis.socket},
                {"--redis-host", &o->redis.host},
                {"--prefix", &o->redis.prefix},
                {"--redis-port", NULL},
                {"--shards", NULL},
                {"--at", NULL}};

    for (size_t k = 0; k < CLV_ARRAY_LEN(opts); k++) {
        const char *v = option_value(argc, argv, i, opts[k].name);
        if (v == NULL)
            continue;
        if (v[0] == '\0')
            return -1;
        if (opts[k].dest == NULL)
            return deploy_set_number(argv[0], opts[k].name, v, o);
        *opts[k].dest = v;
        return 1;
    }
    return 0;
}

int deploy_opts_check(const char *cmd, const struct deploy_opts *o)
{
    if (o->redis.socket && (o->redis.host || o->redis.port)) {
        fprintf(stderr, "clvctl %s: give --redis-socket or --redis-host/--redis-port\n", cmd);
        return -1;
    }
    return 0;
}

/* ---- the deployment ----------------------------------------------------------- */

/* <prefix>meta's shards, or --shards. */
static int read_shards(struct deployment *d, unsigned given, char *err, size_t errlen)
{
    char key[CLV_KEY_MAX];
    size_t len = keys_meta(key, d->prefix);
    redisContext *c = deploy_conn(d, key, len, err, errlen);
    redisReply *r;
    unsigned long long n;

    if (given) {
        d->shards = given;
        return 0;
    }
    if (c == NULL)
        return -1;
    r = redisCommand(c, "HGET %b shards", key, len);
    if (reply_failed(c, r, "HGET meta", err, errlen) < 0)
        return -1;
    if (r->type != REDIS_REPLY_STRING || parse_ull(r->str, 1, 65536, &n) < 0) {
        clv_seterr(err, errlen,
                   "%s on %s has no shard count: no clvd deployment with key prefix '%s' "
                   "there (check --prefix, -c), or give --shards",
                   key, d->where, d->prefix);
        freeReplyObject(r);
        return -1;
    }
    freeReplyObject(r);
    d->shards = (uint32_t)n;
    return 0;
}

static int deploy_connect(struct deployment *d, char *err, size_t errlen)
{
    const struct redis_target *t = &d->target;

    redis_target_name(t, d->where, sizeof(d->where));
    d->main = redis_open(t, t->host, t->port, t->socket, err, errlen);
    if (d->main == NULL)
        return -1;
    if (cluster_map(d->main, t, d->masters, MAX_MASTERS, &d->nmasters, d->slot_master, err,
                    errlen) < 0)
        return -1;
    if (d->nmasters > 0) {
        size_t n = strlen(d->where);
        snprintf(d->where + n, sizeof(d->where) - n, " (cluster, %d masters)", d->nmasters);
    }
    return 0;
}

int deploy_open(struct deployment *d, const struct deploy_opts *o, char *err, size_t errlen)
{
    const char *path = o->redis.config_path;

    memset(d, 0, sizeof(*d));
    if ((path ? config_load(path, &d->cfg, err, errlen) : config_defaults(&d->cfg, err, errlen)) <
        0)
        return -1;
    d->have_cfg = 1;
    d->from_file = path != NULL;
    redis_target_from(&o->redis, &d->cfg, &d->target);
    d->prefix = d->target.prefix;
    if (deploy_connect(d, err, errlen) < 0 || read_shards(d, o->shards, err, errlen) < 0) {
        deploy_close(d);
        return -1;
    }
    return 0;
}

void deploy_close(struct deployment *d)
{
    for (int i = 0; i < d->nmasters; i++) {
        redisFree(d->node[i]);
        d->node[i] = NULL;
    }
    redisFree(d->main);
    d->main = NULL;
    if (d->have_cfg)
        config_free(&d->cfg);
    d->have_cfg = 0;
}

redisContext *deploy_conn(struct deployment *d, const char *key, size_t len, char *err,
                          size_t errlen)
{
    int k;

    if (d->nmasters == 0)
        return d->main;
    k = d->slot_master[keys_cluster_slot(key, len)];
    if (d->node[k] == NULL)
        d->node[k] =
            redis_open(&d->target, d->masters[k].host, d->masters[k].port, NULL, err, errlen);
    return d->node[k];
}

/* ---- the clock ------------------------------------------------------------------ */

const char *clock_source_name(enum clock_source s)
{
    switch (s) {
    case CLOCK_GIVEN:
        return "given";
    case CLOCK_WALL:
        return "wall";
    case CLOCK_EVENT:
        return "event";
    default:
        return "state";
    }
}

/* The group watermark: the smallest of the instances whose entry has not
 * expired (as clock.lua computes it).  0 when none is running. */
static int group_watermark(struct deployment *d, clv_ms now, clv_ms *wm, int *instances, char *err,
                           size_t errlen)
{
    char wkey[CLV_KEY_MAX], ekey[CLV_KEY_MAX];
    redisContext *c;
    redisReply *w = NULL, *e = NULL;
    int ret = -1;

    keys_clock(wkey, ekey, d->prefix);
    if ((c = deploy_conn(d, wkey, strlen(wkey), err, errlen)) == NULL)
        return -1;
    redisAppendCommand(c, "ZRANGE %s 0 -1 WITHSCORES", wkey);
    redisAppendCommand(c, "HGETALL %s", ekey); /* same slot: {clock} */
    if (redisGetReply(c, (void **)&w) != REDIS_OK || reply_failed(c, w, "ZRANGE", err, errlen) < 0)
        return -1; /* w is freed or NULL */
    if (redisGetReply(c, (void **)&e) != REDIS_OK ||
        reply_failed(c, e, "HGETALL", err, errlen) < 0) {
        e = NULL;
        goto out;
    }
    *wm = 0;
    *instances = 0;
    for (size_t i = 0; w->type == REDIS_REPLY_ARRAY && i + 1 < w->elements; i += 2) {
        clv_ms expires = 0, at = strtoll(w->element[i + 1]->str, NULL, 10);
        for (size_t j = 0; e->type == REDIS_REPLY_ARRAY && j + 1 < e->elements; j += 2)
            if (strcmp(e->element[j]->str, w->element[i]->str) == 0)
                expires = strtoll(e->element[j + 1]->str, NULL, 10);
        if (expires < now)
            continue; /* a stopped or dead instance */
        if (*instances == 0 || at < *wm)
            *wm = at;
        (*instances)++;
    }
    ret = 0;
out:
    freeReplyObject(w);
    if (e != NULL)
        freeReplyObject(e);
    return ret;
}

int deploy_clock(struct deployment *d, const struct deploy_opts *o, struct deploy_clock *out,
                 char *err, size_t errlen)
{
    clv_ms now = clv_now_ms(), wm;
    int instances;

    *out = (struct deploy_clock){.source = CLOCK_WALL, .at = now};
    if (o->have_at) {
        *out = (struct deploy_clock){.source = CLOCK_GIVEN, .at = o->at};
        return 0;
    }
    if (d->from_file && d->cfg.clock.mode == CLV_CLOCK_WALL)
        return 0;
    if (group_watermark(d, now, &wm, &instances, err, errlen) < 0)
        return -1;
    if (instances > 0)
        *out = (struct deploy_clock){.source = CLOCK_EVENT, .at = wm, .instances = instances};
    else if (d->from_file) /* clock.mode: event, nothing running */
        out->source = CLOCK_STOPPED;
    return 0;
}
