/* clvctl_stats.c -- `clvctl stats`: the deployment's population figures
 * (SPEC sections 10 and 14), summed over every shard in pipelined round
 * trips (SHARD_CHUNK shards at a time, each key routed to its node):
 *
 *   HGETALL <prefix>{sN}:stats   customers per stage, buyers, buyers_churned,
 *                                churn:<hour> (buyers entering churned)
 *   ZCARD / ZCOUNT <prefix>{sN}:due   due-index entries, of them overdue
 *   HLEN <prefix>{sN}:out        outbox entries not yet delivered
 *
 * and the alert rules' state (<prefix>alerts:state, "firing:<seq>" or
 * "ok:<seq>"; the evaluator holds <prefix>alerts:lease).  The counters are
 * moved by the same script as the states, so the sums are exact; they are
 * read shard by shard, not in one snapshot, so a running deployment may
 * move between two shards' reads.  A table, or JSON with --json. */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alerts.h"
#include "clvctl.h"
#include "common.h"
#include "config.h"
#include "customer.h"
#include "keys.h"
#include "sbuf.h"
#include "timeutil.h"

#define SHARD_CHUNK 1024
#define MAX_ALERT_STATES 256
#define NWINDOWS 2

static const struct {
    const char *name;
    clv_ms span;
} windows[NWINDOWS] = {{"24h", CLV_MS_PER_DAY}, {"7d", 7 * CLV_MS_PER_DAY}};

struct stats_opts {
    struct deploy_opts d;
    int json;
};

struct alert_state {
    char name[128];
    int firing;
    long seq;
};

/* Buyers entering churned in one hour (churn:<hour>), summed over shards. */
struct bucket {
    int64_t hour, count;
};

struct stats {
    struct deploy_clock clock;
    struct clv_population pop; /* stages, customers, buyers, buyers_churned */
    struct bucket *buckets;    /* by hour once read_shards is done */
    size_t nbuckets, cap;
    int64_t churned[NWINDOWS];
    int64_t due, overdue, outbox;
    struct alert_state alerts[MAX_ALERT_STATES];
    int nalerts;
    char evaluator[128]; /* "" when no lease */
};

static void stats_usage(FILE *out)
{
    fprintf(out,
            "usage: clvctl stats [options]\n"
            "\n"
            "Customers per stage (and shares), buyers and churned buyers, churn over the last\n"
            "24 h and 7 d (churn rate = churned in the window / buyers not churned), the due\n"
            "index (entries, overdue), the outbox backlog and the alert rules' state, summed\n"
            "over every shard of <prefix>{sN}:stats, :due and :out.\n"
            "\n"
            "  --json                   one JSON object instead of the table\n"
            "\n"
            "The churn windows end at --at, or at the event-clock watermark of a running\n"
            "event-clock deployment, or now.  Churn buckets are by the hour of the churn;\n"
            "clvd deletes those older than its longest churn_rate window + 2 h.\n"
            "With -c FILE, each alert rule also shows its current value and threshold.\n"
            "\n");
    deploy_usage(out);
}

/* 0: options in *o; 1: help; -1: usage error. */
static int stats_parse_args(int argc, char **argv, struct stats_opts *o)
{
    memset(o, 0, sizeof(*o));
    for (int i = 1; i < argc; i++) {
        int rc;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return 1;
        if (strcmp(argv[i], "--json") == 0) {
            o->json = 1;
            continue;
        }
        if ((rc = deploy_option(argc, argv, &i, &o->d)) < 0)
            return -1;
        if (rc == 0) {
            fprintf(stderr, "clvctl stats: unknown option or argument '%s'\n", argv[i]);
            return -1;
        }
    }
    return deploy_opts_check("stats", &o->d);
}

/* ---- reading -------------------------------------------------------------- */

static int add_bucket(struct stats *st, int64_t hour, int64_t count)
{
    if (st->nbuckets == st->cap) {
        size_t cap = st->cap ? 2 * st->cap : 256;
        struct bucket *b = realloc(st->buckets, cap * sizeof(*b));
        if (b == NULL)
            return -1;
        st->buckets = b;
        st->cap = cap;
    }
    st->buckets[st->nbuckets++] = (struct bucket){hour, count};
    return 0;
}

static int bucket_cmp(const void *a, const void *b)
{
    const struct bucket *x = a, *y = b;

    return x->hour < y->hour ? -1 : x->hour > y->hour;
}

/* Sort by hour and add up the shards' buckets of one hour. */
static void merge_buckets(struct stats *st)
{
    size_t n = 0;

    if (st->nbuckets == 0)
        return;
    qsort(st->buckets, st->nbuckets, sizeof(*st->buckets), bucket_cmp);
    for (size_t i = 1; i < st->nbuckets; i++) {
        if (st->buckets[i].hour == st->buckets[n].hour)
            st->buckets[n].count += st->buckets[i].count;
        else
            st->buckets[++n] = st->buckets[i];
    }
    st->nbuckets = n + 1;
}

/* Churned in the `window` before the clock: the buckets whose hour overlaps
 * it (as alerts.c counts them). */
static int64_t churned_within(const struct stats *st, clv_ms window)
{
    int64_t sum = 0;

    for (size_t i = 0; i < st->nbuckets; i++) {
        clv_ms start = st->buckets[i].hour * CLV_MS_PER_HOUR;
        if (start <= st->clock.at && start + CLV_MS_PER_HOUR > st->clock.at - window)
            sum += st->buckets[i].count;
    }
    return sum;
}

/* One field of a shard's counters (as alerts.c's add_field). */
static int add_counter(struct stats *st, const redisReply *f, const redisReply *v)
{
    int64_t n;
    int stage;

    if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
        return 0;
    n = strtoll(v->str, NULL, 10);
    if (strncmp(f->str, "churn:", 6) == 0)
        return add_bucket(st, strtoll(f->str + 6, NULL, 10), n);
    if (strcmp(f->str, "buyers") == 0) {
        st->pop.buyers += n;
    } else if (strcmp(f->str, "buyers_churned") == 0) {
        st->pop.buyers_churned += n;
    } else if ((stage = stage_from_name(f->str)) != CLV_STAGE_NONE) {
        st->pop.stage[stage] += n;
    }
    return 0;
}

/* A reply of one of a shard's 4 commands; -1 out of memory. */
static int take_reply(struct stats *st, int cmd, const redisReply *r)
{
    switch (cmd) {
    case 0: /* HGETALL stats */
        for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2)
            if (add_counter(st, r->element[i], r->element[i + 1]) < 0)
                return -1;
        break;
    case 1:
        st->due += r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
        break;
    case 2:
        st->overdue += r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
        break;
    default:
        st->outbox += r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
        break;
    }
    return 0;
}

/* Shards [first, first + n): append every command, then read the replies
 * in the same order (each connection answers in order). */
static int read_chunk(struct deployment *d, struct stats *st, uint32_t first, uint32_t n,
                      redisContext **conn, char *err, size_t errlen)
{
    static const char *const what[4] = {"HGETALL", "ZCARD", "ZCOUNT", "HLEN"};
    char key[CLV_KEY_MAX], at[32];
    size_t len;

    snprintf(at, sizeof(at), "%lld", (long long)st->clock.at);
    for (uint32_t i = 0; i < n; i++) {
        len = keys_stats(key, d->prefix, first + i);
        if ((conn[i] = deploy_conn(d, key, len, err, errlen)) == NULL)
            return -1;
        redisAppendCommand(conn[i], "HGETALL %b", key, len);
        len = keys_due(key, d->prefix, first + i);
        redisAppendCommand(conn[i], "ZCARD %b", key, len);
        redisAppendCommand(conn[i], "ZCOUNT %b -inf %s", key, len, at);
        len = keys_outbox(key, d->prefix, first + i);
        redisAppendCommand(conn[i], "HLEN %b", key, len);
    }
    for (uint32_t i = 0; i < n; i++)
        for (int cmd = 0; cmd < 4; cmd++) {
            redisReply *r = NULL;
            if (redisGetReply(conn[i], (void **)&r) != REDIS_OK)
                r = NULL;
            if (reply_failed(conn[i], r, what[cmd], err, errlen) < 0)
                return -1; /* the connections are not reused after an error */
            int rc = take_reply(st, cmd, r);
            freeReplyObject(r);
            if (rc < 0) {
                clv_seterr(err, errlen, "out of memory");
                return -1;
            }
        }
    return 0;
}

static int read_shards(struct deployment *d, struct stats *st, char *err, size_t errlen)
{
    redisContext **conn = calloc(SHARD_CHUNK, sizeof(*conn));
    int ret = 0;

    if (conn == NULL) {
        clv_seterr(err, errlen, "out of memory");
        return -1;
    }
    for (uint32_t s = 0; s < d->shards && ret == 0; s += SHARD_CHUNK) {
        uint32_t n = d->shards - s < SHARD_CHUNK ? d->shards - s : SHARD_CHUNK;
        ret = read_chunk(d, st, s, n, conn, err, errlen);
    }
    merge_buckets(st);
    for (int w = 0; w < NWINDOWS; w++)
        st->churned[w] = churned_within(st, windows[w].span);
    for (int i = 0; i < CLV_STAGE_COUNT; i++)
        st->pop.customers += st->pop.stage[i];
    st->pop.valid = ret == 0;
    free(conn);
    return ret;
}

static redisReply *command_on_key(struct deployment *d, const char *what, const char *fmt,
                                  const char *key, char *err, size_t errlen)
{
    redisContext *c = deploy_conn(d, key, strlen(key), err, errlen);
    redisReply *r;

    if (c == NULL)
        return NULL;
    r = redisCommand(c, fmt, key);
    return reply_failed(c, r, what, err, errlen) < 0 ? NULL : r;
}

/* <prefix>alerts:state and the evaluator's lease. */
static int read_alerts(struct deployment *d, struct stats *st, char *err, size_t errlen)
{
    char key[CLV_KEY_MAX];
    redisReply *r;

    snprintf(key, sizeof(key), "%salerts:state", d->prefix);
    if ((r = command_on_key(d, "HGETALL", "HGETALL %s", key, err, errlen)) == NULL)
        return -1;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        const char *v = r->element[i + 1]->str, *colon = strchr(v, ':');
        struct alert_state *a;
        if (st->nalerts == MAX_ALERT_STATES)
            break;
        a = &st->alerts[st->nalerts++];
        snprintf(a->name, sizeof(a->name), "%s", r->element[i]->str);
        a->firing = strncmp(v, "firing:", 7) == 0;
        a->seq = colon ? strtol(colon + 1, NULL, 10) : 0;
    }
    freeReplyObject(r);
    snprintf(key, sizeof(key), "%salerts:lease", d->prefix);
    if ((r = command_on_key(d, "GET", "GET %s", key, err, errlen)) == NULL)
        return -1;
    if (r->type == REDIS_REPLY_STRING)
        snprintf(st->evaluator, sizeof(st->evaluator), "%s", r->str);
    freeReplyObject(r);
    return 0;
}

/* ---- figures --------------------------------------------------------------- */

static double churn_rate(const struct stats *st, int w)
{
    int64_t at_stake = st->pop.buyers - st->pop.buyers_churned;

    return at_stake > 0 ? (double)st->churned[w] / (double)at_stake : 0.0;
}

static double share(const struct stats *st, int stage)
{
    return st->pop.customers > 0 ? (double)st->pop.stage[stage] / (double)st->pop.customers : 0.0;
}

static const struct alert_state *find_state(const struct stats *st, const char *name)
{
    for (int i = 0; i < st->nalerts; i++)
        if (strcmp(st->alerts[i].name, name) == 0)
            return &st->alerts[i];
    return NULL;
}

static const char *metric_text(const struct clv_alert_rule *rule, char *buf, size_t len)
{
    if (rule->metric == CLV_ALERT_CHURN_RATE) {
        snprintf(buf, len, "churn_rate over %lld h", (long long)(rule->window / CLV_MS_PER_HOUR));
        return buf;
    }
    snprintf(buf, len, "stage_share.%s", stage_name(rule->stage));
    return buf;
}

/* No stored state: the rule never fired (clvd stores a state only when it
 * changes, and reads a missing one as "ok:0"). */
static const char *state_text(const struct alert_state *a)
{
    return a != NULL && a->firing ? "firing" : "ok";
}

/* ---- the table ----------------------------------------------------------------- */

static void print_alerts_table(const struct deployment *d, const struct stats *st)
{
    char metric[64];
    int shown = 0;

    printf("\nalerts (evaluator: %s)\n", st->evaluator[0] ? st->evaluator : "none");
    if (st->nalerts > 0 || (d->from_file && d->cfg.nalerts > 0))
        printf("  %-24s %-7s %-5s %s\n", "rule", "state", "#msg", "metric");
    for (int i = 0; d->from_file && i < d->cfg.nalerts; i++) {
        const struct clv_alert_rule *rule = &d->cfg.alerts[i];
        const struct alert_state *a = find_state(st, rule->name);
        double v = alerts_rule_value(rule, &st->pop, churned_within(st, rule->window));
        printf("  %-24s %-7s #%-4ld %-28s value %-10.4f above %.4g\n", rule->name, state_text(a),
               a ? a->seq : 0L, metric_text(rule, metric, sizeof(metric)), v, rule->above);
        shown++;
    }
    for (int i = 0; i < st->nalerts; i++) {
        if (d->from_file && d->cfg.nalerts > 0) {
            int configured = 0;
            for (int k = 0; k < d->cfg.nalerts; k++)
                configured |= strcmp(d->cfg.alerts[k].name, st->alerts[i].name) == 0;
            if (configured)
                continue;
        }
        printf("  %-24s %-7s #%-4ld (not in -c FILE)\n", st->alerts[i].name,
               state_text(&st->alerts[i]), st->alerts[i].seq);
        shown++;
    }
    if (shown == 0)
        printf("  %s\n",
               d->from_file ? "no alert rules" : "none has fired (-c FILE lists the rules)");
}

static void print_table(const struct deployment *d, const struct stats *st)
{
    char at[32], from[32];

    rfc3339_format(st->clock.at, at, sizeof(at));
    printf("clvd on %s, prefix '%s', %u shards, as of %s (%s clock)\n\n", d->where, d->prefix,
           d->shards, at, clock_source_name(st->clock.source));
    printf("%-14s %12s %8s\n", "stage", "customers", "share");
    for (int s = 0; s < CLV_STAGE_COUNT; s++)
        printf("%-14s %12lld %7.1f%%\n", stage_name(s), (long long)st->pop.stage[s],
               100.0 * share(st, s));
    printf("%-14s %12lld %7.1f%%\n\n", "total", (long long)st->pop.customers,
           st->pop.customers ? 100.0 : 0.0);
    printf("%-24s %12lld\n", "buyers", (long long)st->pop.buyers);
    printf("%-24s %12lld\n", "churned buyers", (long long)st->pop.buyers_churned);
    for (int w = 0; w < NWINDOWS; w++)
        printf("churned, last %-10s %12lld   churn rate %.4f\n", windows[w].name,
               (long long)st->churned[w], churn_rate(st, w));
    if (st->nbuckets > 0) {
        rfc3339_format(st->buckets[0].hour * CLV_MS_PER_HOUR, from, sizeof(from));
        printf("%-24s %s\n", "churn buckets from", from);
    }
    printf("%-24s %12lld   overdue %lld\n", "due index entries", (long long)st->due,
           (long long)st->overdue);
    printf("%-24s %12lld\n", "outbox backlog", (long long)st->outbox);
    print_alerts_table(d, st);
}

/* ---- JSON ------------------------------------------------------------------------ */

static void json_alert(struct clv_sbuf *b, const struct stats *st, const char *name,
                       const struct clv_alert_rule *rule)
{
    const struct alert_state *a = find_state(st, name);
    char metric[48];

    sbuf_puts(b, "{\"name\":");
    sbuf_json_str(b, name, strlen(name));
    sbuf_printf(b, ",\"state\":\"%s\",\"seq\":%ld", state_text(a), a ? a->seq : 0L);
    if (rule != NULL) {
        if (rule->metric == CLV_ALERT_CHURN_RATE)
            snprintf(metric, sizeof(metric), "churn_rate");
        else
            snprintf(metric, sizeof(metric), "stage_share.%s", stage_name(rule->stage));
        sbuf_printf(b, ",\"metric\":\"%s\",\"value\":", metric);
        sbuf_json_num(b, alerts_rule_value(rule, &st->pop, churned_within(st, rule->window)), 6);
        sbuf_puts(b, ",\"above\":");
        sbuf_json_num(b, rule->above, 6);
    }
    sbuf_puts(b, "}");
}

static void json_alerts(struct clv_sbuf *b, const struct deployment *d, const struct stats *st)
{
    int n = 0;

    sbuf_puts(b, ",\"alerts\":{\"evaluator\":");
    if (st->evaluator[0])
        sbuf_json_str(b, st->evaluator, strlen(st->evaluator));
    else
        sbuf_puts(b, "null");
    sbuf_puts(b, ",\"rules\":[");
    for (int i = 0; d->from_file && i < d->cfg.nalerts; i++, n++) {
        sbuf_puts(b, n ? "," : "");
        json_alert(b, st, d->cfg.alerts[i].name, &d->cfg.alerts[i]);
    }
    for (int i = 0; i < st->nalerts; i++) {
        int configured = 0;
        for (int k = 0; d->from_file && k < d->cfg.nalerts; k++)
            configured |= strcmp(d->cfg.alerts[k].name, st->alerts[i].name) == 0;
        if (configured)
            continue;
        sbuf_puts(b, n++ ? "," : "");
        json_alert(b, st, st->alerts[i].name, NULL);
    }
    sbuf_puts(b, "]}");
}

static void json_stages(struct clv_sbuf *b, const struct stats *st)
{
    sbuf_printf(b, ",\"customers\":%lld,\"stages\":{", (long long)st->pop.customers);
    for (int s = 0; s < CLV_STAGE_COUNT; s++)
        sbuf_printf(b, "%s\"%s\":%lld", s ? "," : "", stage_name(s), (long long)st->pop.stage[s]);
    sbuf_puts(b, "},\"stage_shares\":{");
    for (int s = 0; s < CLV_STAGE_COUNT; s++) {
        sbuf_printf(b, "%s\"%s\":", s ? "," : "", stage_name(s));
        sbuf_json_num(b, share(st, s), 6);
    }
    sbuf_puts(b, "}");
}

static void json_churn(struct clv_sbuf *b, const struct stats *st)
{
    char from[32];

    sbuf_printf(b, ",\"buyers\":%lld,\"buyers_churned\":%lld,\"churn\":{",
                (long long)st->pop.buyers, (long long)st->pop.buyers_churned);
    for (int w = 0; w < NWINDOWS; w++) {
        sbuf_printf(b, "\"%s\":{\"churned\":%lld,\"rate\":", windows[w].name,
                    (long long)st->churned[w]);
        sbuf_json_num(b, churn_rate(st, w), 6);
        sbuf_puts(b, "},");
    }
    sbuf_puts(b, "\"buckets_from\":");
    if (st->nbuckets > 0) {
        rfc3339_format(st->buckets[0].hour * CLV_MS_PER_HOUR, from, sizeof(from));
        sbuf_json_str(b, from, strlen(from));
    } else {
        sbuf_puts(b, "null");
    }
    sbuf_puts(b, "}");
}

static void print_json(const struct deployment *d, const struct stats *st)
{
    struct clv_sbuf b;
    char at[32];

    sbuf_init(&b);
    rfc3339_format(st->clock.at, at, sizeof(at));
    sbuf_puts(&b, "{\"redis\":");
    sbuf_json_str(&b, d->where, strlen(d->where));
    sbuf_puts(&b, ",\"prefix\":");
    sbuf_json_str(&b, d->prefix, strlen(d->prefix));
    sbuf_printf(&b, ",\"shards\":%u,\"as_of\":\"%s\",\"clock\":\"%s\"", d->shards, at,
                clock_source_name(st->clock.source));
    json_stages(&b, st);
    json_churn(&b, st);
    sbuf_printf(&b, ",\"due_index\":{\"entries\":%lld,\"overdue\":%lld},\"outbox\":%lld",
                (long long)st->due, (long long)st->overdue, (long long)st->outbox);
    json_alerts(&b, d, st);
    sbuf_puts(&b, "}\n");
    fwrite(b.buf, 1, b.len, stdout);
    sbuf_free(&b);
}

/* ---- the command ------------------------------------------------------------------ */

int cmd_stats(int argc, char **argv)
{
    struct stats_opts o;
    struct deployment *d = calloc(1, sizeof(*d));
    struct stats *st = calloc(1, sizeof(*st));
    char err[CLV_ERRLEN];
    int ret = 1, opened = 0;

    if (d == NULL || st == NULL) {
        clv_seterr(err, sizeof(err), "out of memory");
        goto out;
    }
    switch (stats_parse_args(argc, argv, &o)) {
    case 1:
        stats_usage(stdout);
        ret = 0;
        goto done;
    case -1:
        stats_usage(stderr);
        ret = EXIT_USAGE;
        goto done;
    }
    if (deploy_open(d, &o.d, err, sizeof(err)) < 0)
        goto out;
    opened = 1;
    if (deploy_clock(d, &o.d, &st->clock, err, sizeof(err)) < 0)
        goto out;
    if (st->clock.source == CLOCK_STOPPED) {
        fprintf(stderr, "clvctl stats: note: clock.mode is event but no clvd instance publishes "
                        "a watermark: the churn windows end now (give --at)\n");
        st->clock.source = CLOCK_WALL;
    }
    if (read_shards(d, st, err, sizeof(err)) < 0 || read_alerts(d, st, err, sizeof(err)) < 0)
        goto out;
    if (o.json)
        print_json(d, st);
    else
        print_table(d, st);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        clv_seterr(err, sizeof(err), "stdout: write error");
        goto out;
    }
    ret = 0;
out:
    if (ret == 1)
        fprintf(stderr, "clvctl stats: %s\n", err);
done:
    if (opened)
        deploy_close(d);
    free(d);
    if (st != NULL)
        free(st->buckets);
    free(st);
    return ret;
}
