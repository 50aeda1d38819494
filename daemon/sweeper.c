/* sweeper.c -- due index scanning and the group clock; see sweeper.h. */
#include "sweeper.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keys.h"

#define SWEEP_PASS_TICKS 16
#define SWEEP_MAX_ITEMS 4096
/* Between ticks that found little: a pass over every shard then takes
 * about 1.6 s, well inside the 5 s lease, and an idle deployment does not
 * spend Redis time on sweep calls at every turn of the main loop. */
#define SWEEP_TICK_MS 100

void sweeper_init(struct clv_sweeper *s, uint32_t shards)
{
    char host[64] = "host";
    struct timespec ts;

    memset(s, 0, sizeof(*s));
    gethostname(host, sizeof(host) - 1);
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(s->instance, sizeof(s->instance), "%s:%d:%lx", host, (int)getpid(),
             (unsigned long)(ts.tv_nsec ^ ts.tv_sec));
    /* A full pass over the shards takes about SWEEP_PASS_TICKS ticks, and a
     * tick queues at most SWEEP_MAX_ITEMS customers, whatever the shard
     * count: the batch (memory, and the latency of the events queued behind
     * it) stays bounded. */
    s->per_tick = shards / SWEEP_PASS_TICKS > 64 ? shards / SWEEP_PASS_TICKS : 64;
    if (s->per_tick > shards)
        s->per_tick = shards;
    s->per_shard = SWEEP_MAX_ITEMS / (int)s->per_tick;
    if (s->per_shard < 16)
        s->per_shard = 16;
    s->lease_ms = 5000;
    s->cursor = (uint32_t)(ts.tv_nsec % shards); /* instances start apart */
}

static void append_sweep(struct clv_sweeper *s, struct clv_store *st, uint32_t shard,
                         const char *now, const char *limit, const char *lease)
{
    char lkey[CLV_KEY_MAX], dkey[CLV_KEY_MAX];
    const char *argv[9] = {
        "EVALSHA", store_script_sha(st, CLV_SCRIPT_SWEEP), "2", lkey, dkey, s->instance, lease, now,
        limit};
    size_t argvlen[9];

    keys_lease(lkey, st->cfg->key_prefix, shard);
    keys_due(dkey, st->cfg->key_prefix, shard);
    for (int i = 0; i < 9; i++)
        argvlen[i] = strlen(argv[i]);
    store_append_argv(st, 9, argv, argvlen);
}

static int queue_due(struct clv_batch *b, redisReply *r, uint32_t shards, clv_ms now)
{
    for (size_t k = 0; k < r->elements; k++)
        batch_add_advance(b, r->element[k]->str, r->element[k]->len, shards, now);
    return (int)r->elements;
}

static int sweep_due(struct clv_sweeper *s, struct clv_store *st, clv_ms now, struct clv_batch *b,
                     char *err, size_t errlen);

void sweeper_rescan(struct clv_sweeper *s, uint32_t shards)
{
    free(s->rescan_from);
    s->rescan_from = malloc(sizeof(*s->rescan_from) * shards);
    if (s->rescan_from == NULL)
        abort();
    for (uint32_t i = 0; i < shards; i++)
        s->rescan_from[i] = INT64_MIN;
    s->rescan_left = shards;
}

void sweeper_free(struct clv_sweeper *s)
{
    free(s->rescan_from);
    s->rescan_from = NULL;
    s->rescan_left = 0;
}

#define RESCAN_SHARDS_PER_TICK 16

/* Through the store, which routes it to the shard's node on a cluster. */
static void append_rescan(struct clv_store *st, uint32_t shard, int64_t from, int limit)
{
    char key[CLV_KEY_MAX], min[32], lim[16];
    const char *argv[8] = {"ZRANGEBYSCORE", key, min, "+inf", "WITHSCORES", "LIMIT", "0", lim};
    size_t argvlen[8];

    keys_due(key, st->cfg->key_prefix, shard);
    if (from == INT64_MIN)
        snprintf(min, sizeof(min), "-inf");
    else
        snprintf(min, sizeof(min), "(%lld", (long long)from);
    snprintf(lim, sizeof(lim), "%d", limit);
    for (int i = 0; i < 8; i++)
        argvlen[i] = strlen(argv[i]);
    store_append_argv(st, 8, argv, argvlen);
}

/* One step of a rescan: a few shards, each from where it got to. */
static int rescan_step(struct clv_sweeper *s, struct clv_store *st, clv_ms now, struct clv_batch *b)
{
    uint32_t shards = (uint32_t)st->cfg->shards, picked[RESCAN_SHARDS_PER_TICK];
    int n = 0, queued = 0;
    double t0 = store_pipeline_begin();

    for (uint32_t i = 0; i < shards && n < RESCAN_SHARDS_PER_TICK; i++)
        if (s->rescan_from[i] != INT64_MAX) {
            append_rescan(st, i, s->rescan_from[i], s->per_shard);
            picked[n++] = i;
        }
    for (int k = 0; k < n; k++) {
        redisReply *r = store_read_reply(st);
        uint32_t shard = picked[k];
        if (r == NULL)
            return -1;
        if (r->type == REDIS_REPLY_ARRAY) {
            for (size_t e = 0; e + 1 < r->elements; e += 2)
                batch_add_advance(b, r->element[e]->str, r->element[e]->len, shards, now);
            queued += (int)(r->elements / 2);
            if ((int)(r->elements / 2) < s->per_shard) {
                s->rescan_from[shard] = INT64_MAX;
                s->rescan_left--;
            } else {
                s->rescan_from[shard] = strtoll(r->element[r->elements - 1]->str, NULL, 10);
            }
        }
        freeReplyObject(r);
    }
    store_pipeline_end(st, t0);
    return queued;
}

int sweeper_collect(struct clv_sweeper *s, struct clv_store *st, clv_ms now, struct clv_batch *b,
                    char *err, size_t errlen)
{
    if (s->rescan_left > 0) {
        if (store_ensure(st, err, errlen) != 0)
            return -1;
        return rescan_step(s, st, now, b);
    }
    return sweep_due(s, st, now, b, err, errlen);
}

static int sweep_due(struct clv_sweeper *s, struct clv_store *st, clv_ms now, struct clv_batch *b,
                     char *err, size_t errlen)
{
    uint32_t shards = (uint32_t)st->cfg->shards;
    char nows[32], limit[16], lease[16];
    uint32_t first = s->cursor;
    int queued = 0, rc = 0, full = 0;
    double t0;

    if (clv_mono_ms() < s->next_tick)
        return 0;
    if (store_ensure(st, err, errlen) != 0)
        return -1;
    snprintf(nows, sizeof(nows), "%lld", (long long)now);
    snprintf(limit, sizeof(limit), "%d", s->per_shard);
    snprintf(lease, sizeof(lease), "%lld", (long long)s->lease_ms);
    t0 = store_pipeline_begin();
    for (uint32_t i = 0; i < s->per_tick; i++)
        append_sweep(s, st, (first + i) % shards, nows, limit, lease);
    for (uint32_t i = 0; i < s->per_tick; i++) {
        redisReply *r = store_read_reply(st);
        if (r == NULL) {
            clv_seterr(err, errlen, "redis sweep: connection lost");
            return -1;
        }
        if (r->type == REDIS_REPLY_ARRAY && rc == 0) {
            queued += queue_due(b, r, shards, now);
            full = full || (int)r->elements == s->per_shard;
        } else if (r->type == REDIS_REPLY_ERROR && rc == 0) {
            clv_seterr(err, errlen, "redis sweep: %s", r->str);
            rc = -1;
        }
        freeReplyObject(r); /* NIL: another instance holds the lease */
    }
    store_pipeline_end(st, t0);
    if (rc != 0) {
        if (strstr(err, "NOSCRIPT"))
            store_load_scripts(st, err, errlen);
        return -1;
    }
    s->cursor = (first + s->per_tick) % shards;
    s->swept += (uint64_t)queued;
    /* a shard with more due than one tick takes: catching up, no pause */
    s->next_tick = full ? 0 : clv_mono_ms() + SWEEP_TICK_MS;
    return queued;
}

clv_ms sweeper_group_clock(struct clv_sweeper *s, struct clv_store *st, clv_ms own, int idle,
                           clv_ms ttl)
{
    char wkey[CLV_KEY_MAX], ekey[CLV_KEY_MAX], owns[32] = "", nows[32], ttls[32];
    const char *argv[7] = {wkey, ekey, s->instance, owns, nows, ttls, idle ? "1" : "0"};
    size_t argvlen[7];
    redisReply *r;
    clv_ms group = 0;

    keys_clock(wkey, ekey, st->cfg->key_prefix);
    if (own > 0)
        snprintf(owns, sizeof(owns), "%lld", (long long)own);
    snprintf(nows, sizeof(nows), "%lld", (long long)clv_now_ms());
    snprintf(ttls, sizeof(ttls), "%lld", (long long)ttl);
    for (int i = 0; i < 7; i++)
        argvlen[i] = strlen(argv[i]);
    r = store_eval(st, CLV_SCRIPT_CLOCK, 2, 7, argv, argvlen);
    if (r == NULL)
        return 0;
    if (r->type == REDIS_REPLY_STRING)
        group = strtoll(r->str, NULL, 10);
    freeReplyObject(r);
    return group;
}
