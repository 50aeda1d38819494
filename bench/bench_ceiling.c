/* bench_ceiling.c -- Redis's own ceiling for the project's update script
 * (daemon/lua/apply.lua), without clvd: client threads drive it through
 * hiredis pipelines with realistic arguments, against a fresh redis-server.
 *
 * Two workloads:
 *   script  EVALSHA apply.lua only, one pipeline per `depth` customers:
 *           the script's own ceiling (customer updates/s);
 *   clvd    what clvd sends per customer update: a pipeline of GETs, then
 *           one of EVALSHAs, then one of HDELs for the outbox entries
 *           (the trim after the delivery report): updates/s.
 * As in clvd on a single Redis, one call updates several customers in
 * groups, each the customers of one shard: `per_call` customers a call and
 * `per_group` a group on average, the figures measured in clvd's run; the
 * "clvd" workload reads states with MGETs of up to 128 keys, as clvd does
 * (but every state: no cache, so the ceiling errs low, for clvd).  Every update succeeds
 * (the client tracks each customer's version), writes a state blob of the
 * size clvd's states had; every 1/due_share-th update moves the customer's
 * due-index entry (the others leave it, as clvd does when a deadline only
 * moved later), and every 1/outbox_share-th update adds an outbox entry and
 * two counter moves. */
#include "bench.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "keys.h"

extern const char clv_lua_apply[];

#define KEY_PREFIX "clv:"
#define ARGS_PER_CUSTOMER 14
#define CEILING_RUNS 4 /* script and clvd, 1 and 2 threads */

struct cthread {
    const char *socket;
    const char *sha;
    int clvd_mix;
    int tid, nthreads, shards, depth;
    uint32_t customers;
    uint64_t *versions; /* shared; a thread owns the customers i with i % nthreads == tid */
    double seconds;     /* 0: one pass over its customers */
    size_t blob_len, payload_len;
    int outbox_every; /* 0: never */
    int due_every;    /* 0: never (but always while the customers are created) */
    double per_call;  /* customers per apply.lua call, >= 1 */
    int per_group;    /* customers per shard group of a call, >= 1 */
    /* results */
    uint64_t updates, commands, errors, calls;
    double elapsed;
    int rc;
    char err[B_ERRLEN];
};

static void put_be64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

struct call {
    char id[32], key[CLV_KEY_MAX], due_key[CLV_KEY_MAX], out_key[CLV_KEY_MAX];
    char stats_key[CLV_KEY_MAX], field[64], due[24];
    size_t idlen, keylen, fieldlen;
    unsigned char old[8];
    int has_out, moves_due;
};

static void call_init(struct cthread *t, struct call *c, uint32_t i, uint64_t calls)
{
    uint32_t shard;

    c->idlen = (size_t)snprintf(c->id, sizeof(c->id), "k%07u", i);
    shard = keys_shard_of(c->id, c->idlen, (uint32_t)t->shards);
    c->keylen = keys_customer(c->key, KEY_PREFIX, shard, c->id, c->idlen);
    keys_due(c->due_key, KEY_PREFIX, shard);
    keys_outbox(c->out_key, KEY_PREFIX, shard);
    keys_stats(c->stats_key, KEY_PREFIX, shard);
    snprintf(c->due, sizeof(c->due), "%lld",
             (long long)(clv_now_ms() + 30 * CLV_MS_PER_DAY + (clv_ms)(i % 86400) * 1000));
    c->has_out = t->outbox_every > 0 && calls % (uint64_t)t->outbox_every == 0;
    c->moves_due = t->seconds == 0 || (t->due_every > 0 && calls % (uint64_t)t->due_every == 0);
    /* clvd deletes each outbox entry after its delivery (the HDEL of the
     * "clvd" workload); without the HDEL the entry is overwritten instead,
     * so that the outbox keeps its size through the run */
    c->fieldlen =
        (size_t)snprintf(c->field, sizeof(c->field), "0:%llu:%s",
                         t->clvd_mix ? (unsigned long long)t->versions[i] + 1 : 1ULL, c->id);
}

struct evalbuf {
    const char **argv;
    size_t *len;
    int n;
    unsigned char *blobs; /* one per customer of the call: each its own version */
    char nkeys[16], ncustomers[16];
    char ngroup[64][16]; /* a group's size, for up to 64 groups a call */
};

static void arg(struct evalbuf *e, const void *p, size_t len)
{
    e->argv[e->n] = p;
    e->len[e->n++] = len;
}

/* Customers of calls[from .. n) in the same shard as the first, at most max. */
static int same_shard(const struct call *calls, int from, int n, int max)
{
    int m = 1;

    while (m < max && from + m < n && strcmp(calls[from + m].due_key, calls[from].due_key) == 0)
        m++;
    return m;
}

static void customer_args(struct cthread *t, struct evalbuf *e, struct call *c, uint32_t idx,
                          unsigned char *blob, const char *payload)
{
    uint64_t version = t->versions[idx];

    put_be64(c->old, version);
    arg(e, c->old, version ? 8 : 0);
    put_be64(blob, version + 1);
    arg(e, blob, t->blob_len);
    if (!c->moves_due && !c->has_out) { /* the short form, like clvd's */
        arg(e, "", 0);
        return;
    }
    arg(e, "+", 1);
    arg(e, c->id, c->idlen);
    if (c->moves_due)
        arg(e, c->due, strlen(c->due));
    else
        arg(e, "-", 1);
    if (c->has_out) {
        arg(e, "1", 1);
        arg(e, c->field, c->fieldlen);
        arg(e, payload, t->payload_len);
        arg(e, "2", 1);
        arg(e, "active", 6);
        arg(e, "-1", 2);
        arg(e, "loyal", 5);
        arg(e, "1", 1);
    } else {
        arg(e, "0", 1);
        arg(e, "0", 1);
    }
}

/* One call of apply.lua for calls[0..m): the customers' keys, the due
 * index, outbox and counters of each run of one shard's customers with one
 * in the full form, and a group of arguments for each run, at most
 * per_group customers each (see apply.lua). */
static void append_eval(redisContext *ctx, struct cthread *t, struct evalbuf *e, struct call *calls,
                        int m, const uint32_t *idx, const char *payload)
{
    int size[64], full[64], ng = 0, nkeys = m;

    for (int k = 0; k < m; k += size[ng++]) { /* m <= 64: at most 64 groups */
        size[ng] = same_shard(calls, k, m, t->per_group);
        full[ng] = 0;
        for (int j = k; j < k + size[ng]; j++)
            full[ng] |= calls[j].moves_due || calls[j].has_out;
        nkeys += full[ng] ? 3 : 0;
    }
    e->n = 0;
    arg(e, "EVALSHA", 7);
    arg(e, t->sha, 40);
    arg(e, e->nkeys, (size_t)snprintf(e->nkeys, sizeof(e->nkeys), "%d", nkeys));
    for (int j = 0; j < m; j++)
        arg(e, calls[j].key, calls[j].keylen);
    for (int g = 0, k = 0; g < ng; k += size[g++]) {
        if (!full[g])
            continue;
        arg(e, calls[k].due_key, strlen(calls[k].due_key));
        arg(e, calls[k].out_key, strlen(calls[k].out_key));
        arg(e, calls[k].stats_key, strlen(calls[k].stats_key));
    }
    arg(e, e->ncustomers, (size_t)snprintf(e->ncustomers, sizeof(e->ncustomers), "%d", m));
    for (int g = 0, k = 0; g < ng; k += size[g++]) {
        arg(e, e->ngroup[g], (size_t)snprintf(e->ngroup[g], sizeof(e->ngroup[g]), "%d", size[g]));
        for (int j = k; j < k + size[g]; j++)
            customer_args(t, e, &calls[j], idx[j], e->blobs + (size_t)j * t->blob_len, payload);
    }
    redisAppendCommandArgv(ctx, e->n, e->argv, e->len);
}

/* Customers per call: per_call on average (calls of floor and ceiling
 * sizes), at most 64 (clvd's largest). */
static int call_size(const struct cthread *t, int from, int n, uint64_t ncall)
{
    int want = (int)((double)(ncall + 1) * t->per_call) - (int)((double)ncall * t->per_call);

    if (want < 1)
        want = 1;
    if (want > 64)
        want = 64;
    return from + want <= n ? want : n - from;
}

/* The key shard_order sorts by: the customer's round (its rank in its
 * shard over per_group), then its shard, then the customer. */
struct order_key {
    uint32_t round, shard, i;
};

static int by_round(const void *x, const void *y)
{
    const struct order_key *a = x, *b = y;

    if (a->round != b->round)
        return a->round < b->round ? -1 : 1;
    if (a->shard != b->shard)
        return a->shard < b->shard ? -1 : 1;
    return a->i < b->i ? -1 : a->i > b->i;
}

static int by_shard(const void *x, const void *y)
{
    const struct order_key *a = x, *b = y;

    if (a->shard != b->shard)
        return a->shard < b->shard ? -1 : 1;
    return a->i < b->i ? -1 : a->i > b->i;
}

/* The thread's customers in runs of per_group of one shard, shard after
 * shard, so that a call's groups fall into shards as clvd's do. */
static uint32_t *shard_order(const struct cthread *t, uint32_t mine)
{
    uint32_t *order = malloc(sizeof(*order) * mine);
    struct order_key *key = malloc(sizeof(*key) * mine);
    char id[32];

    if (order == NULL || key == NULL) {
        free(order);
        free(key);
        return NULL;
    }
    for (uint32_t k = 0; k < mine; k++) {
        uint32_t i = k * (uint32_t)t->nthreads + (uint32_t)t->tid;
        size_t len = (size_t)snprintf(id, sizeof(id), "k%07u", i);
        key[k] = (struct order_key){0, keys_shard_of(id, len, (uint32_t)t->shards), i};
    }
    qsort(key, mine, sizeof(*key), by_shard);
    for (uint32_t k = 0, rank = 0; k < mine; k++) {
        rank = k > 0 && key[k].shard == key[k - 1].shard ? rank + 1 : 0;
        key[k].round = rank / (uint32_t)t->per_group;
    }
    qsort(key, mine, sizeof(*key), by_round);
    for (uint32_t k = 0; k < mine; k++)
        order[k] = key[k].i;
    free(key);
    return order;
}

/* clvd's reads: MGETs of up to 128 keys. */
static void append_reads(redisContext *ctx, struct evalbuf *e, const struct call *calls, int n,
                         int *nreads)
{
    for (int k = 0; k < n; (*nreads)++) {
        e->n = 0;
        arg(e, "MGET", 4);
        for (int end = k + 128 < n ? k + 128 : n; k < end; k++)
            arg(e, calls[k].key, calls[k].keylen);
        redisAppendCommandArgv(ctx, e->n, e->argv, e->len);
    }
}

static int read_replies(redisContext *ctx, int n, int expect_one, uint64_t *errors)
{
    for (int i = 0; i < n; i++) {
        redisReply *r = NULL;
        if (redisGetReply(ctx, (void **)&r) != REDIS_OK)
            return -1;
        if (expect_one && !(r->type == REDIS_REPLY_INTEGER && r->integer == 1))
            (*errors)++;
        freeReplyObject(r);
    }
    return 0;
}

static void *ceiling_main(void *arg)
{
    struct cthread *t = arg;
    struct timeval tv = {10, 0};
    redisContext *ctx = redisConnectUnixWithTimeout(t->socket, tv);
    uint32_t mine =
        (t->customers - (uint32_t)t->tid + (uint32_t)t->nthreads - 1) / (uint32_t)t->nthreads;
    /* command, sha, numkeys, customers; per customer a key, its arguments
     * and at most one group's three keys and size */
    size_t nargs = 4 + (size_t)t->depth * (ARGS_PER_CUSTOMER + 4);
    struct evalbuf e = {malloc(sizeof(*e.argv) * nargs),
                        malloc(sizeof(*e.len) * nargs),
                        0,
                        malloc((size_t)t->depth * (t->blob_len > 8 ? t->blob_len : 8)),
                        "",
                        "",
                        {""}};
    char *payload = malloc(t->payload_len + 1);
    struct call *calls = calloc((size_t)t->depth, sizeof(*calls));
    uint32_t *idx = malloc(sizeof(*idx) * (size_t)t->depth);
    uint32_t *order = mine ? shard_order(t, mine) : NULL;
    uint64_t cursor = 0, total = 0, ncalls = 0;
    double start, end;

    if (ctx == NULL || ctx->err || e.argv == NULL || e.len == NULL || e.blobs == NULL ||
        payload == NULL || calls == NULL || idx == NULL || (mine && order == NULL)) {
        snprintf(t->err, sizeof(t->err), "ceiling thread: %s",
                 ctx && ctx->err ? ctx->errstr : "out of memory");
        t->rc = -1;
        goto out;
    }
    redisSetTimeout(ctx, tv);
    for (size_t i = 0; i < (size_t)t->depth * t->blob_len; i++)
        e.blobs[i] = (unsigned char)(0x41 + (i * 7) % 26);
    memset(payload, 'x', t->payload_len);
    payload[t->payload_len] = '\0';
    if (mine == 0)
        goto out;
    start = b_mono();
    end = start + t->seconds;
    for (;;) {
        int n = 0, nout = 0, sent = 0;
        if (t->seconds > 0 ? b_mono() >= end : cursor >= mine)
            break;
        for (; n < t->depth && (t->seconds > 0 || cursor < mine); n++, cursor++) {
            idx[n] = order[cursor % mine];
            call_init(t, &calls[n], idx[n], total + (uint64_t)n);
        }
        if (t->clvd_mix) {
            int nreads = 0;
            append_reads(ctx, &e, calls, n, &nreads);
            if (read_replies(ctx, nreads, 0, &t->errors) != 0)
                goto lost;
            t->commands += (uint64_t)nreads;
        }
        for (int k = 0; k < n; sent++) {
            int m = call_size(t, k, n, ncalls++);
            append_eval(ctx, t, &e, calls + k, m, idx + k, payload);
            k += m;
        }
        for (int c = 0; c < sent; c++) {
            redisReply *r = NULL;
            if (redisGetReply(ctx, (void **)&r) != REDIS_OK)
                goto lost;
            /* the reply lists conflicts only; there should be none */
            if (r->type != REDIS_REPLY_ARRAY || r->elements > 0)
                t->errors++;
            freeReplyObject(r);
        }
        for (int k = 0; k < n; k++)
            t->versions[idx[k]]++;
        t->commands += (uint64_t)sent;
        t->calls += (uint64_t)sent;
        if (t->clvd_mix) {
            for (int k = 0; k < n; k++)
                if (calls[k].has_out) {
                    redisAppendCommand(ctx, "HDEL %s %b", calls[k].out_key, calls[k].field,
                                       calls[k].fieldlen);
                    nout++;
                }
            if (read_replies(ctx, nout, 0, &t->errors) != 0)
                goto lost;
            t->commands += (uint64_t)nout;
        }
        total += (uint64_t)n;
    }
    t->updates = total;
    t->elapsed = b_mono() - start;
    goto out;
lost:
    snprintf(t->err, sizeof(t->err), "ceiling thread: redis: %s", ctx->errstr);
    t->rc = -1;
out:
    if (ctx)
        redisFree(ctx);
    free(e.argv);
    free(e.len);
    free(e.blobs);
    free(payload);
    free(calls);
    free(idx);
    free(order);
    return NULL;
}

static int run_threads(struct cthread *proto, int nthreads, double seconds, pid_t redis_pid,
                       struct b_ceiling_run *res, char *err, size_t errlen)
{
    struct cthread t[2];
    pthread_t th[2];
    double cpu0 = b_proc_cpu(redis_pid), wall0 = b_mono(), wall;
    int started = 0, rc = 0;

    for (int i = 0; i < nthreads; i++) {
        t[i] = *proto;
        t[i].tid = i;
        t[i].nthreads = nthreads;
        t[i].seconds = seconds;
        if (pthread_create(&th[i], NULL, ceiling_main, &t[i]) != 0)
            break;
        started++;
    }
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    wall = b_mono() - wall0;
    if (started < nthreads) {
        clv_seterr(err, errlen, "cannot start the ceiling threads");
        return -1;
    }
    if (res) {
        memset(res, 0, sizeof(*res));
        res->mode = proto->clvd_mix ? "clvd" : "script";
        res->threads = nthreads;
        res->seconds = wall;
        res->redis_cpu = wall > 0 ? (b_proc_cpu(redis_pid) - cpu0) / wall : 0;
    }
    for (int i = 0; i < nthreads; i++) {
        if (t[i].rc != 0 && rc == 0) {
            clv_seterr(err, errlen, "%s", t[i].err);
            rc = -1;
        }
        if (res) {
            res->updates += t[i].updates;
            res->calls += t[i].calls;
            res->errors += t[i].errors;
            res->commands_per_s += (double)t[i].commands;
        }
    }
    if (res && wall > 0) {
        res->updates_per_s = (double)res->updates / wall;
        res->commands_per_s /= wall;
    }
    return rc;
}

int b_run_ceiling(const struct b_opts *o, size_t blob_len, size_t payload_len, double outbox_share,
                  double due_share, double per_call, double per_group, struct b_ceiling *ce,
                  char *err, size_t errlen)
{
    char dir[B_PATHLEN] = "", sha[41] = "";
    struct b_redis redis;
    redisContext *rc = NULL;
    redisReply *r = NULL;
    struct cthread proto;
    int status = -1;

    memset(&redis, 0, sizeof(redis));
    memset(ce, 0, sizeof(*ce));
    memset(&proto, 0, sizeof(proto));
    ce->customers = o->customers < 1000000 ? o->customers : 1000000;
    ce->depth = o->ceiling_depth;
    if ((uint32_t)ce->depth > ce->customers / 2)
        ce->depth = (int)(ce->customers / 2 > 0 ? ce->customers / 2 : 1);
    ce->blob_len = blob_len >= 8 ? blob_len : 150;
    ce->payload_len = payload_len > 0 ? payload_len : 700;
    ce->outbox_share = outbox_share > 0 && outbox_share <= 1 ? outbox_share : 0.1;
    ce->per_call = per_call >= 1 ? per_call : 1;
    ce->per_group = per_group >= 1 ? per_group : 1;
    ce->due_share = due_share > 0 && due_share <= 1 ? due_share : 1;
    proto.versions = calloc(ce->customers, sizeof(uint64_t));
    if (proto.versions == NULL) {
        clv_seterr(err, errlen, "out of memory");
        goto out;
    }
    if (b_tmpdir(o->workdir, dir, sizeof(dir), err, errlen) != 0 ||
        b_redis_start(&redis, o->redis_server, dir, err, errlen) != 0)
        goto out;
    rc = b_redis_connect(&redis, err, errlen);
    if (rc == NULL || b_redis_configure(rc, o, err, errlen) != 0)
        goto out;
    r = redisCommand(rc, "SCRIPT LOAD %s", clv_lua_apply);
    if (r == NULL || r->type != REDIS_REPLY_STRING || r->len != 40) {
        clv_seterr(err, errlen, "SCRIPT LOAD apply.lua: %s",
                   r && r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        goto out;
    }
    memcpy(sha, r->str, 40);
    proto.socket = redis.socket;
    proto.sha = sha;
    proto.shards = o->shards;
    proto.depth = ce->depth;
    proto.customers = ce->customers;
    proto.blob_len = ce->blob_len;
    proto.payload_len = ce->payload_len;
    proto.outbox_every = (int)(1.0 / ce->outbox_share + 0.5);
    proto.due_every = (int)(1.0 / ce->due_share + 0.5);
    proto.per_call = ce->per_call;
    proto.per_group = (int)(ce->per_group + 0.5);

    /* every customer exists before anything is timed (as after clvd's run) */
    if (!o->quiet)
        fprintf(stderr, "  ceiling: creating %u customers\n", ce->customers);
    if (run_threads(&proto, 2, 0, redis.pid, NULL, err, errlen) != 0)
        goto out;
    /* two rounds of the four workloads, interleaved; the better round counts */
    for (int k = 0; k < 2 * CEILING_RUNS; k++) {
        int mix = (k / 2) % 2, threads = 1 + k % 2;
        struct b_ceiling_run *res = &ce->runs[k % CEILING_RUNS], tmp;
        proto.clvd_mix = mix;
        if (run_threads(&proto, threads, o->ceiling_seconds, redis.pid, &tmp, err, errlen) != 0)
            goto out;
        if (!o->quiet)
            fprintf(stderr, "  ceiling: %-6s %d thread(s): %9.0f updates/s (redis cpu %.2f)\n",
                    tmp.mode, threads, tmp.updates_per_s, tmp.redis_cpu);
        if (tmp.errors) {
            clv_seterr(err, errlen, "ceiling: %llu unexpected replies (%s, %d threads)",
                       (unsigned long long)tmp.errors, tmp.mode, threads);
            goto out;
        }
        if (k < CEILING_RUNS || tmp.updates_per_s > res->updates_per_s)
            *res = tmp;
        if (k < CEILING_RUNS)
            ce->nruns++;
        if (!mix && tmp.updates_per_s > ce->script_calls_per_s)
            ce->script_calls_per_s = tmp.updates_per_s;
        if (mix && tmp.updates_per_s > ce->updates_per_s)
            ce->updates_per_s = tmp.updates_per_s;
    }
    status = 0;
out:
    if (r)
        freeReplyObject(r);
    if (rc)
        redisFree(rc);
    b_redis_stop(&redis);
    if (dir[0]) {
        if (o->keep)
            fprintf(stderr, "bench: ceiling kept in %s\n", dir);
        else
            b_rmtree(dir);
    }
    free(proto.versions);
    return status;
}
