/* store.c -- the Redis connection: commands, pipelines, scripts, reconnects. */
#include "store.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keys.h"
#include "metrics.h"

extern const char clv_lua_apply[], clv_lua_sweep[], clv_lua_clock[], clv_lua_lease[];

static const char *const script_source[CLV_SCRIPT_COUNT] = {
    [CLV_SCRIPT_APPLY] = clv_lua_apply,
    [CLV_SCRIPT_SWEEP] = clv_lua_sweep,
    [CLV_SCRIPT_CLOCK] = clv_lua_clock,
    [CLV_SCRIPT_LEASE] = clv_lua_lease,
};

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

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

void store_init(struct clv_store *st, const struct clv_redis_config *cfg, const struct clv_log *lg)
{
    memset(st, 0, sizeof(*st));
    st->cfg = cfg;
    st->log = lg;
}

int store_connected(const struct clv_store *st)
{
    return st->ctx != NULL;
}

void store_disconnect(struct clv_store *st)
{
    if (st->ctx) {
        redisFree(st->ctx);
        st->ctx = NULL;
    }
}

/* hiredis 0.14: after an I/O or protocol error the context is unusable. */
static void drop_broken(struct clv_store *st)
{
    if (st->ctx && st->ctx->err) {
        log_warn(st->log, "redis: connection lost: %s", st->ctx->errstr);
        store_disconnect(st);
    }
}

redisReply *store_command(struct clv_store *st, const char *fmt, ...)
{
    va_list ap;
    redisReply *r;
    double t0;

    if (st->ctx == NULL)
        return NULL;
    t0 = mono_seconds();
    va_start(ap, fmt);
    r = redisvCommand(st->ctx, fmt, ap);
    va_end(ap);
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

    if (st->ctx == NULL)
        return NULL;
    t0 = mono_seconds();
    r = redisCommandArgv(st->ctx, argc, argv, argvlen);
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
}

void store_append_argv(struct clv_store *st, int argc, const char **argv, const size_t *argvlen)
{
    if (st->ctx == NULL)
        return;
    redisAppendCommandArgv(st->ctx, argc, argv, argvlen);
    st->commands++;
}

redisReply *store_read_reply(struct clv_store *st)
{
    void *r = NULL;

    if (st->ctx == NULL)
        return NULL;
    if (redisGetReply(st->ctx, &r) != REDIS_OK) {
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

static redisContext *open_context(const struct clv_redis_config *cfg)
{
    struct timeval tv = {cfg->timeout_ms / 1000, (cfg->timeout_ms % 1000) * 1000};
    redisContext *ctx;

    if (cfg->unix_socket && cfg->unix_socket[0])
        ctx = redisConnectUnixWithTimeout(cfg->unix_socket, tv);
    else
        ctx = redisConnectWithTimeout(cfg->host, cfg->port, tv);
    if (ctx && !ctx->err)
        redisSetTimeout(ctx, tv);
    return ctx;
}

static int authenticate(struct clv_store *st, char *err, size_t errlen)
{
    const struct clv_redis_config *cfg = st->cfg;
    redisReply *r;

    if (cfg->password == NULL || cfg->password[0] == '\0')
        return 0;
    if (cfg->user && cfg->user[0])
        r = store_command(st, "AUTH %s %s", cfg->user, cfg->password);
    else
        r = store_command(st, "AUTH %s", cfg->password);
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
 * them on restart or failover, which NOSCRIPT replies reveal. */
int store_load_scripts(struct clv_store *st, char *err, size_t errlen)
{
    for (int i = 0; i < CLV_SCRIPT_COUNT; i++) {
        redisReply *r = store_command(st, "SCRIPT LOAD %s", script_source[i]);
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
    st->ctx = open_context(st->cfg);
    if (st->ctx == NULL || st->ctx->err) {
        clv_seterr(err, errlen, "redis connect: %s",
                   st->ctx ? st->ctx->errstr : "cannot allocate context");
        store_disconnect(st);
        return -1;
    }
    if (authenticate(st, err, errlen) != 0 || select_db(st, err, errlen) != 0 ||
        store_load_scripts(st, err, errlen) != 0 || check_shards(st, err, errlen) != 0) {
        store_disconnect(st);
        return -1;
    }
    return 0;
}

int store_ensure(struct clv_store *st, char *err, size_t errlen)
{
    clv_ms now = clv_mono_ms();

    if (st->ctx)
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
    st->reconnected = 1;
    log_info(st->log, "redis: connected to %s",
             st->cfg->unix_socket[0] ? st->cfg->unix_socket : st->cfg->host);
    return 0;
}
