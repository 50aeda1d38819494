/* alerts.c -- population figures and the alert evaluator; see alerts.h. */
#include "alerts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keys.h"
#include "sbuf.h"
#include "timeutil.h"

#define ALERT_PERIOD_MS 5000
#define LEASE_MS 15000
#define BUCKET_KEEP_MS (2 * CLV_MS_PER_HOUR)

void alerts_init(struct clv_alerts *a, const struct clv_config *cfg, const struct clv_log *lg,
                 const char *instance)
{
    memset(a, 0, sizeof(*a));
    a->cfg = cfg;
    a->log = lg;
    a->every = ALERT_PERIOD_MS;
    snprintf(a->instance, sizeof(a->instance), "%s", instance);
}

double alerts_rule_value(const struct clv_alert_rule *rule, const struct clv_population *pop,
                         int64_t churned_in_window)
{
    int64_t at_stake;

    if (rule->metric == CLV_ALERT_STAGE_SHARE)
        return pop->customers > 0 ? (double)pop->stage[rule->stage] / (double)pop->customers : 0;
    /* churned in the window / buyers not churned (SPEC section 10) */
    at_stake = pop->buyers - pop->buyers_churned;
    return at_stake > 0 ? (double)churned_in_window / (double)at_stake : 0;
}

/* ---- reading the counters --------------------------------------------------------- */

static clv_ms longest_window(const struct clv_config *cfg)
{
    clv_ms w = 0;

    for (int i = 0; i < cfg->nalerts; i++)
        if (cfg->alerts[i].metric == CLV_ALERT_CHURN_RATE && cfg->alerts[i].window > w)
            w = cfg->alerts[i].window;
    return w;
}

struct churn_hours {
    int64_t *hour, *count;
    size_t n, cap;
};

static void churn_add(struct churn_hours *h, int64_t hour, int64_t count)
{
    for (size_t i = 0; i < h->n; i++)
        if (h->hour[i] == hour) {
            h->count[i] += count;
            return;
        }
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 64;
        h->hour = realloc(h->hour, h->cap * sizeof(*h->hour));
        h->count = realloc(h->count, h->cap * sizeof(*h->count));
        if (h->hour == NULL || h->count == NULL)
            abort();
    }
    h->hour[h->n] = hour;
    h->count[h->n++] = count;
}

static void add_field(struct clv_population *pop, struct churn_hours *h, const redisReply *f,
                      const redisReply *v)
{
    int64_t n = strtoll(v->str, NULL, 10);
    int stage;

    if (strncmp(f->str, "churn:", 6) == 0)
        churn_add(h, strtoll(f->str + 6, NULL, 10), n);
    else if (strcmp(f->str, "buyers") == 0)
        pop->buyers += n;
    else if (strcmp(f->str, "buyers_churned") == 0)
        pop->buyers_churned += n;
    else if ((stage = stage_from_name(f->str)) != CLV_STAGE_NONE)
        pop->stage[stage] += n;
}

/* Churn buckets no window will read again: remembered while the pipeline's
 * replies are read, deleted after. */
struct stale_buckets {
    struct clv_sbuf names; /* "<shard>\0<field>\0" pairs */
};

static void note_stale(struct stale_buckets *sb, uint32_t shard, const redisReply *r,
                       int64_t oldest_hour)
{
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *f = r->element[i];
        if (strncmp(f->str, "churn:", 6) == 0 && strtoll(f->str + 6, NULL, 10) < oldest_hour)
            sbuf_printf(&sb->names, "%u%c%s%c", shard, '\0', f->str, '\0');
    }
}

static void delete_stale(struct clv_store *st, struct stale_buckets *sb)
{
    char key[CLV_KEY_MAX];

    for (size_t off = 0; off < sb->names.len;) {
        const char *shard = sb->names.buf + off, *field = shard + strlen(shard) + 1;
        redisReply *d;
        keys_stats(key, st->cfg->key_prefix, (uint32_t)strtoul(shard, NULL, 10));
        d = store_command(st, "HDEL %s %s", key, field);
        if (d)
            freeReplyObject(d);
        off = (size_t)(field - sb->names.buf) + strlen(field) + 1;
    }
}

static int read_population(struct clv_alerts *a, struct clv_store *st, struct clv_population *pop,
                           struct churn_hours *h, clv_ms now)
{
    uint32_t shards = (uint32_t)st->cfg->shards;
    /* keep a week at least: `clvctl stats` reports churn over 24 h and 7 d */
    clv_ms keep =
        longest_window(a->cfg) > 7 * CLV_MS_PER_DAY ? longest_window(a->cfg) : 7 * CLV_MS_PER_DAY;
    int64_t oldest_hour = (now - keep - BUCKET_KEEP_MS) / CLV_MS_PER_HOUR;
    char key[CLV_KEY_MAX];
    const char *argv[2] = {"HGETALL", key};
    size_t argvlen[2] = {7, 0};
    struct stale_buckets stale;
    double t0 = store_pipeline_begin();
    int rc = 0;

    sbuf_init(&stale.names);
    memset(pop, 0, sizeof(*pop));
    for (uint32_t s = 0; s < shards; s++) {
        argvlen[1] = keys_stats(key, st->cfg->key_prefix, s);
        store_append_argv(st, 2, argv, argvlen);
    }
    for (uint32_t s = 0; s < shards; s++) {
        redisReply *r = store_read_reply(st);
        if (r == NULL) {
            sbuf_free(&stale.names);
            return -1;
        }
        if (r->type == REDIS_REPLY_ARRAY && rc == 0) {
            for (size_t i = 0; i + 1 < r->elements; i += 2)
                add_field(pop, h, r->element[i], r->element[i + 1]);
            if (a->leader)
                note_stale(&stale, s, r, oldest_hour);
        } else {
            rc = -1;
        }
        freeReplyObject(r);
    }
    store_pipeline_end(st, t0);
    delete_stale(st, &stale);
    sbuf_free(&stale.names);
    for (int i = 0; i < CLV_STAGE_COUNT; i++)
        pop->customers += pop->stage[i];
    pop->valid = rc == 0;
    return rc;
}

static int64_t churned_within(const struct churn_hours *h, clv_ms now, clv_ms window)
{
    int64_t sum = 0;

    for (size_t i = 0; i < h->n; i++) {
        clv_ms start = h->hour[i] * CLV_MS_PER_HOUR;
        if (start <= now && start + CLV_MS_PER_HOUR > now - window)
            sum += h->count[i];
    }
    return sum;
}

/* ---- leadership and rule state ------------------------------------------------------ */

static int take_lease(struct clv_alerts *a, struct clv_store *st)
{
    char key[CLV_KEY_MAX], ms[16];
    const char *argv[3] = {key, a->instance, ms};
    size_t argvlen[3];
    redisReply *r;
    int leader = 0;

    snprintf(key, sizeof(key), "%salerts:lease", st->cfg->key_prefix);
    snprintf(ms, sizeof(ms), "%d", LEASE_MS);
    for (int i = 0; i < 3; i++)
        argvlen[i] = strlen(argv[i]);
    r = store_eval(st, CLV_SCRIPT_LEASE, 1, 3, argv, argvlen);
    if (r && r->type == REDIS_REPLY_INTEGER)
        leader = r->integer == 1;
    if (r)
        freeReplyObject(r);
    if (leader != a->leader)
        log_info(a->log, "alerts: this instance %s the evaluator",
                 leader ? "is now" : "is no longer");
    a->leader = leader;
    return leader;
}

/* A rule's stored state "firing:<seq>" / "ok:<seq>"; seq numbers its messages. */
static int load_rule_state(struct clv_store *st, const char *name, int *firing, long *seq)
{
    char key[CLV_KEY_MAX];
    redisReply *r;

    snprintf(key, sizeof(key), "%salerts:state", st->cfg->key_prefix);
    r = store_command(st, "HGET %s %s", key, name);
    if (r == NULL)
        return -1;
    *firing = 0;
    *seq = 0;
    if (r->type == REDIS_REPLY_STRING) {
        *firing = strncmp(r->str, "firing:", 7) == 0;
        *seq = strtol(strchr(r->str, ':') ? strchr(r->str, ':') + 1 : "0", NULL, 10);
    }
    freeReplyObject(r);
    return 0;
}

static void save_rule_state(struct clv_store *st, const char *name, int firing, long seq)
{
    char key[CLV_KEY_MAX], val[48];
    redisReply *r;

    snprintf(key, sizeof(key), "%salerts:state", st->cfg->key_prefix);
    snprintf(val, sizeof(val), "%s:%ld", firing ? "firing" : "ok", seq);
    r = store_command(st, "HSET %s %s %s", key, name, val);
    if (r)
        freeReplyObject(r);
}

static const char *metric_name(const struct clv_alert_rule *rule, char *buf, size_t len)
{
    if (rule->metric == CLV_ALERT_CHURN_RATE)
        return "churn_rate";
    snprintf(buf, len, "stage_share.%s", stage_name(rule->stage));
    return buf;
}

static void render_alert(struct clv_sbuf *b, const struct clv_alert_rule *rule, int firing,
                         long seq, double value, const struct clv_population *pop, clv_ms at)
{
    char ts[32], metric[48];

    sbuf_puts(b, "{\"schema\":\"clvd.alert.v1\",\"event_id\":");
    sbuf_json_str(b, rule->name, strlen(rule->name));
    b->len--;
    sbuf_printf(b, ":%ld\",\"alert\":", seq);
    sbuf_json_str(b, rule->name, strlen(rule->name));
    sbuf_printf(b, ",\"state\":\"%s\",\"metric\":\"%s\",\"value\":", firing ? "firing" : "resolved",
                metric_name(rule, metric, sizeof(metric)));
    sbuf_json_num(b, value, 6);
    sbuf_puts(b, ",\"threshold\":");
    sbuf_json_num(b, rule->above, 6);
    sbuf_puts(b, ",\"resolve_below\":");
    sbuf_json_num(b, rule->above * (1 - rule->hysteresis), 6);
    if (rule->metric == CLV_ALERT_CHURN_RATE)
        sbuf_printf(b, ",\"window_seconds\":%lld", (long long)(rule->window / CLV_MS_PER_SEC));
    rfc3339_format(at, ts, sizeof(ts));
    sbuf_printf(b, ",\"at\":\"%s\"", ts);
    rfc3339_format(clv_now_ms(), ts, sizeof(ts));
    sbuf_printf(b, ",\"emitted_at\":\"%s\",\"customers\":%lld,\"buyers\":%lld}", ts,
                (long long)pop->customers, (long long)pop->buyers);
}

static void evaluate_rule(struct clv_alerts *a, struct clv_store *st, struct clv_producer *p, int i,
                          double value, clv_ms now)
{
    const struct clv_alert_rule *rule = &a->cfg->alerts[i];
    struct clv_sbuf b;
    int firing, next;
    long seq;

    if (load_rule_state(st, rule->name, &firing, &seq) != 0)
        return;
    next = firing ? value >= rule->above * (1 - rule->hysteresis) : value > rule->above;
    a->firing[i] = firing;
    a->value[i] = value;
    if (next == firing)
        return;
    sbuf_init(&b);
    render_alert(&b, rule, next, seq + 1, value, &a->pop, now);
    if (producer_send_plain(p, CLV_OUT_ALERTS, rule->name, strlen(rule->name), b.buf, b.len) == 0) {
        save_rule_state(st, rule->name, next, seq + 1);
        a->firing[i] = next;
        a->published++;
        if (next)
            log_warn(a->log, "alert %s firing: value %.4f above %.4f", rule->name, value,
                     rule->above);
        else
            log_info(a->log, "alert %s resolved: value %.4f", rule->name, value);
    }
    sbuf_free(&b);
}

/* Every instance reports the rules' states as Redis has them, so the
 * gauges agree whichever instance evaluates. */
static void read_rule_states(struct clv_alerts *a, struct clv_store *st)
{
    for (int i = 0; i < a->cfg->nalerts; i++) {
        int firing;
        long seq;
        if (load_rule_state(st, a->cfg->alerts[i].name, &firing, &seq) == 0)
            a->firing[i] = firing;
    }
}

int alerts_tick(struct clv_alerts *a, struct clv_store *st, struct clv_producer *p, clv_ms now,
                char *err, size_t errlen)
{
    struct churn_hours h = {0};
    clv_ms mono = clv_mono_ms();
    int rc = 0;

    if (!store_connected(st))
        return 0;
    if (!a->leader && mono >= a->next_state_mono) {
        read_rule_states(a, st);
        a->next_state_mono = mono + 1000;
    }
    if (mono < a->next_mono)
        return 0;
    a->next_mono = mono + a->every;
    if (a->cfg->nalerts > 0)
        take_lease(a, st);
    if (read_population(a, st, &a->pop, &h, now) != 0) {
        clv_seterr(err, errlen, "alerts: cannot read the shard counters");
        rc = -1;
        goto out;
    }
    if (a->leader && now > 0)
        for (int i = 0; i < a->cfg->nalerts; i++) {
            const struct clv_alert_rule *rule = &a->cfg->alerts[i];
            evaluate_rule(a, st, p, i,
                          alerts_rule_value(rule, &a->pop, churned_within(&h, now, rule->window)),
                          now);
        }
out:
    free(h.hour);
    free(h.count);
    return rc;
}
