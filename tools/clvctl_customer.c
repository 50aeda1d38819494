/* clvctl_customer.c -- `clvctl customer ID`: one customer's state, stage,
 * scores and next deadline, as one JSON object (SPEC section 14: "what is
 * customer X's state and why").
 *
 * The state is read from <prefix>{sN}:c:<id> (with the due-index entry, one
 * pipelined round trip), decoded with customer_decode() and shown through
 * the daemon's own functions: snapshot_take() and customer_windows() at the
 * chosen time, stages_next_deadline() for the next deadline.  Which rule
 * that deadline belongs to is not guessed: the deadline is replayed on a
 * copy of the state with stages_advance(), which emits exactly the
 * transition clvd will emit then; the explanation quotes that rule's
 * inputs.  Nothing is written to Redis. */
#include <hiredis/hiredis.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clvctl.h"
#include "common.h"
#include "config.h"
#include "customer.h"
#include "keys.h"
#include "sbuf.h"
#include "stages.h"
#include "timeutil.h"

#define WHY_MAX 512

struct customer_opts {
    const char *id;
    struct deploy_opts d;
};

/* Everything one inspection needs; large (two states), so on the heap. */
struct inspection {
    struct clv_customer c, scratch;
    struct clv_rules rules;
    struct clv_snapshot snap;
    struct clv_windows w;
    struct clv_transitions pending; /* deadlines up to `at` not yet applied */
    struct clv_transitions next;    /* what the next deadline does */
    struct deploy_clock clock;
    clv_ms deadline; /* 0: none */
    int has_due;     /* the due index holds the customer */
    clv_ms due;
    size_t state_bytes;
    uint32_t shard;
    char key[CLV_KEY_MAX];
    size_t keylen;
    char why[WHY_MAX];
};

static void customer_usage(FILE *out)
{
    fprintf(out, "usage: clvctl customer ID [options]\n"
                 "\n"
                 "One customer's state as one JSON object: stage and since when, tier, counts,\n"
                 "revenue, rolling 7/30/90-day windows, RFM, historical CLV (and predicted CLV,\n"
                 "P(alive), expected purchases with clv.model: bgnbd), the acquisition channel,\n"
                 "the next time-driven deadline and the rule behind it, transitions already due\n"
                 "but not yet applied, and the sizes of the de-duplication memory.  Read only.\n"
                 "Exit status 1 when the customer does not exist.\n"
                 "\n"
                 "Thresholds, CLV model, RFM cut points and tier names come from -c FILE (give\n"
                 "clvd's config, or the figures follow the defaults).  With clock.mode: event\n"
                 "in FILE and no clvd running, the time is the latest in the customer's state\n"
                 "(its last activity or stage change).\n"
                 "\n");
    deploy_usage(out);
}

/* 0: options in *o; 1: help; -1: usage error. */
static int customer_parse_args(int argc, char **argv, struct customer_opts *o)
{
    memset(o, 0, sizeof(*o));
    for (int i = 1; i < argc; i++) {
        int rc;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return 1;
        if ((rc = deploy_option(argc, argv, &i, &o->d)) != 0) {
            if (rc < 0)
                return -1;
            continue;
        }
        if (strcmp(argv[i], "--") == 0 && i + 1 < argc) {
            i++; /* an id that starts with '-' */
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "clvctl customer: unknown option '%s'\n", argv[i]);
            return -1;
        }
        if (o->id != NULL) {
            fprintf(stderr, "clvctl customer: one ID only ('%s', '%s')\n", o->id, argv[i]);
            return -1;
        }
        o->id = argv[i];
    }
    if (o->id == NULL || o->id[0] == '\0') {
        fprintf(stderr, "clvctl customer: give a customer ID\n");
        return -1;
    }
    return deploy_opts_check("customer", &o->d);
}

/* GET the state and ZSCORE its due-index entry; 1 if found, 0 if there is
 * no such customer, -1 on error. */
static int read_state(struct deployment *d, const char *id, struct inspection *in, char *err,
                      size_t errlen)
{
    size_t idlen = strlen(id);
    char due[CLV_KEY_MAX];
    size_t duelen;
    redisContext *c;
    redisReply *state = NULL, *score = NULL;
    int ret = -1;

    in->shard = keys_shard_of(id, idlen, d->shards);
    in->keylen = keys_customer(in->key, d->prefix, in->shard, id, idlen);
    duelen = keys_due(due, d->prefix, in->shard);
    if ((c = deploy_conn(d, in->key, in->keylen, err, errlen)) == NULL)
        return -1;
    redisAppendCommand(c, "GET %b", in->key, in->keylen);
    redisAppendCommand(c, "ZSCORE %b %b", due, duelen, id, idlen);
    if (redisGetReply(c, (void **)&state) != REDIS_OK ||
        reply_failed(c, state, "GET", err, errlen) < 0) {
        state = NULL;
        goto out;
    }
    if (redisGetReply(c, (void **)&score) != REDIS_OK ||
        reply_failed(c, score, "ZSCORE", err, errlen) < 0) {
        score = NULL;
        goto out;
    }
    if (state->type == REDIS_REPLY_NIL) {
        ret = 0;
        goto out;
    }
    if (state->type != REDIS_REPLY_STRING) {
        clv_seterr(err, errlen, "%s is not a string: not a clvd customer state", in->key);
        goto out;
    }
    if (customer_decode(&in->c, (const unsigned char *)state->str, state->len, err, errlen) != 0)
        goto out;
    in->state_bytes = state->len;
    in->has_due = score->type == REDIS_REPLY_STRING;
    in->due = in->has_due ? (clv_ms)strtod(score->str, NULL) : 0;
    ret = 1;
out:
    if (state)
        freeReplyObject(state);
    if (score)
        freeReplyObject(score);
    return ret;
}

/* ---- the next deadline and why ------------------------------------------- */

static void put_ts(char *buf, size_t len, clv_ms t)
{
    char ts[32];

    rfc3339_format(t, ts, sizeof(ts));
    snprintf(buf, len, "%s", ts);
}

/* The rule's own time, as stages.c computes it, for the "fired as the stage
 * began" note; 0 when not computed here. */
static clv_ms gap_explain(const struct clv_customer *c, const struct clv_lifecycle_config *lc,
                          char *buf, size_t len)
{
    char last[32];
    double mean, scaled, days;

    put_ts(last, sizeof(last), c->last_purchase);
    if (c->purchase_days < 2) {
        days = lc->at_risk_default_gap_days;
        snprintf(buf, len,
                 "no purchase for %.4g days since %s; one purchase day, so "
                 "at_risk.default_gap_days",
                 days, last);
    } else {
        mean = (double)(c->last_pday - c->first_pday) / (double)(c->purchase_days - 1);
        scaled = lc->at_risk_gap_factor * mean;
        days = scaled > lc->at_risk_min_gap_days ? scaled : lc->at_risk_min_gap_days;
        if (scaled > lc->at_risk_min_gap_days)
            snprintf(buf, len,
                     "no purchase for %.4g days since %s = %g x mean gap %.4g days "
                     "between %u purchase days",
                     days, last, lc->at_risk_gap_factor, mean, c->purchase_days);
        else
            snprintf(buf, len,
                     "no purchase for %.4g days since %s = at_risk.min_gap_days; %g x "
                     "mean gap %.4g days between %u purchase days is shorter",
                     days, last, lc->at_risk_gap_factor, mean, c->purchase_days);
    }
    return c->last_purchase + (clv_ms)llround(days * (double)CLV_MS_PER_DAY);
}

static clv_ms inactive_explain(const struct clv_customer *c, const struct clv_lifecycle_config *lc,
                               int to, char *buf, size_t len)
{
    double days = to == CLV_STAGE_CHURNED ? lc->churned_after_days : lc->dormant_after_days;
    char last[32];

    put_ts(last, sizeof(last), c->last_activity);
    snprintf(buf, len, "no activity of any kind for %.4g days (%s) since %s", days,
             to == CLV_STAGE_CHURNED ? "churned_after_days" : "dormant_after_days", last);
    return c->last_activity + (clv_ms)llround(days * (double)CLV_MS_PER_DAY);
}

static const char *tier_name(const struct clv_config *cfg, int tier)
{
    return tier >= 0 && tier < cfg->ntiers ? cfg->tiers[tier].name : NULL;
}

static void tier_explain(const struct clv_customer *c, const struct clv_config *cfg,
                         const struct clv_transition *t, char *buf, size_t len)
{
    const char *from = tier_name(cfg, c->tier);

    if (from == NULL) {
        snprintf(buf, len, "tier %d is no longer configured: to the tier the spend earns", c->tier);
        return;
    }
    snprintf(buf, len,
             "spend over the last %d days (tiers.window_days) falls to %.2f, below %s's "
             "min_spend %.2f",
             cfg->tiers_window_days, customer_revenue_within(c, t->at, cfg->tiers_window_days),
             from, cfg->tiers[c->tier].min_spend);
}

/* The rule behind transition t, the first the next deadline brings. */
static void explain_rule(const struct inspection *in, const struct clv_config *cfg,
                         const struct clv_transition *t, char *buf, size_t len)
{
    const struct clv_lifecycle_config *lc = &in->rules.lc;
    clv_ms own = 0;
    size_t n;

    switch (t->reason) {
    case CLV_REASON_PURCHASE_GAP:
        own = gap_explain(&in->c, lc, buf, len);
        break;
    case CLV_REASON_P_ALIVE:
        snprintf(buf, len, "P(alive) falls to %.4f, below at_risk.p_alive_below %g",
                 t->snap.p_alive, lc->at_risk_p_alive_below);
        break;
    case CLV_REASON_INACTIVE:
        own = inactive_explain(&in->c, lc, t->to, buf, len);
        break;
    case CLV_REASON_TIER_DOWNGRADE:
        tier_explain(&in->c, cfg, t, buf, len);
        break;
    default:
        snprintf(buf, len, "%s", reason_name(t->reason));
        break;
    }
    n = strlen(buf);
    if (own != 0 && own < in->c.stage_since && n < len)
        snprintf(buf + n, len - n,
                 "; that was before the current stage began, so it fires as the stage begins");
}

/* What the next deadline does: replayed on a copy of the state. */
static void explain_deadline(struct inspection *in, const struct clv_config *cfg)
{
    const struct clv_transition *t;
    char at[32], rule[WHY_MAX - 64];
    const char *to;

    in->next.n = 0;
    if (in->deadline == 0)
        return;
    in->scratch = in->c;
    stages_advance(&in->scratch, &in->rules, in->deadline, &in->next);
    if (in->next.n == 0) {
        snprintf(in->why, sizeof(in->why), "no transition at the deadline (a bug: please report)");
        return;
    }
    t = &in->next.t[0];
    to = t->kind == CLV_TRANSITION_TIER ? tier_name(cfg, t->to) : stage_name(t->to);
    put_ts(at, sizeof(at), t->at);
    explain_rule(in, cfg, t, rule, sizeof(rule));
    snprintf(in->why, sizeof(in->why), "%s%s at %s (%s)",
             t->kind == CLV_TRANSITION_TIER ? "tier " : "", to ? to : "?", at, rule);
}

/* ---- the JSON ------------------------------------------------------------- */

static void json_key(struct clv_sbuf *b, const char *key)
{
    sbuf_printf(b, ",\"%s\":", key);
}

static void json_time(struct clv_sbuf *b, const char *key, clv_ms t, int present)
{
    char ts[32];

    json_key(b, key);
    if (!present) {
        sbuf_puts(b, "null");
        return;
    }
    rfc3339_format(t, ts, sizeof(ts));
    sbuf_json_str(b, ts, strlen(ts));
}

static void json_str_or_null(struct clv_sbuf *b, const char *key, const char *s)
{
    json_key(b, key);
    if (s != NULL && s[0] != '\0')
        sbuf_json_str(b, s, strlen(s));
    else
        sbuf_puts(b, "null");
}

static void json_num(struct clv_sbuf *b, const char *key, double v, int decimals, int present)
{
    json_key(b, key);
    if (present)
        sbuf_json_num(b, v, decimals);
    else
        sbuf_puts(b, "null");
}

static void json_head(struct clv_sbuf *b, const char *id, const struct inspection *in,
                      const struct clv_config *cfg)
{
    const struct clv_customer *c = &in->c;

    sbuf_puts(b, "{\"customer_id\":");
    sbuf_json_str(b, id, strlen(id));
    sbuf_printf(b, ",\"shard\":%u", in->shard);
    json_key(b, "key");
    sbuf_json_str(b, in->key, in->keylen);
    json_time(b, "as_of", in->clock.at, 1);
    json_str_or_null(b, "clock", clock_source_name(in->clock.source));
    json_str_or_null(b, "stage", stage_name(c->stage));
    json_time(b, "stage_since", c->stage_since, c->stage != CLV_STAGE_NONE);
    json_str_or_null(b, "tier", tier_name(cfg, c->tier));
    sbuf_printf(b, ",\"seq\":%u,\"version\":%llu", c->seq, (unsigned long long)c->version);
}

static void json_activity(struct clv_sbuf *b, const struct inspection *in)
{
    const struct clv_customer *c = &in->c;
    const struct clv_snapshot *s = &in->snap;
    int bought = c->purchases > 0;

    json_time(b, "first_seen_at", c->first_seen, 1);
    json_time(b, "last_activity_at", c->last_activity, 1);
    json_time(b, "first_purchase_at", c->first_purchase, bought);
    json_time(b, "last_purchase_at", c->last_purchase, bought);
    sbuf_printf(b, ",\"purchases\":%u,\"purchase_days\":%u", c->purchases, c->purchase_days);
    json_num(b, "revenue", c->revenue, 6, 1);
    json_num(b, "avg_order_value", s->avg_order_value, 2, 1);
    sbuf_printf(b, ",\"logins\":%u,\"visits\":%u", c->logins, c->visits);
    json_num(b, "recency_days", s->recency_days, 3, bought);
    json_num(b, "tenure_days", s->tenure_days, 3, 1);
}

static void json_windows(struct clv_sbuf *b, const struct clv_windows *w)
{
    const struct {
        const char *name;
        int active, purchases;
        double revenue;
    } win[] = {{"7d", w->active_days_7d, w->purchases_7d, w->revenue_7d},
               {"30d", w->active_days_30d, w->purchases_30d, w->revenue_30d},
               {"90d", w->active_days_90d, w->purchases_90d, w->revenue_90d}};

    json_key(b, "windows");
    for (size_t i = 0; i < CLV_ARRAY_LEN(win); i++) {
        sbuf_printf(b, "%s\"%s\":{\"active_days\":%d,\"purchases\":%d,\"revenue\":", i ? "," : "{",
                    win[i].name, win[i].active, win[i].purchases);
        sbuf_json_num(b, win[i].revenue, 6);
        sbuf_puts(b, "}");
    }
    sbuf_puts(b, "}");
}

static void json_scores(struct clv_sbuf *b, const struct inspection *in)
{
    const struct clv_snapshot *s = &in->snap;
    char rfm[4];

    clv_rfm_format(s->rfm, rfm);
    json_str_or_null(b, "rfm", rfm);
    json_num(b, "clv_historical", s->clv_historical, 2, 1);
    json_num(b, "clv_predicted", s->clv_predicted, 2, s->model_on);
    json_num(b, "p_alive", s->p_alive, 4, s->model_on);
    json_num(b, "expected_purchases_90d", s->expected_purchases_90d, 3, s->model_on);
    json_str_or_null(b, "channel", in->c.channel);
}

static void json_transition(struct clv_sbuf *b, const struct clv_transition *t,
                            const struct clv_config *cfg)
{
    const char *to = t->kind == CLV_TRANSITION_TIER ? tier_name(cfg, t->to) : stage_name(t->to);

    sbuf_printf(b, "{\"kind\":\"%s\"", t->kind == CLV_TRANSITION_TIER ? "tier" : "stage");
    json_str_or_null(b, "to", to);
    json_str_or_null(b, "reason", reason_name(t->reason));
    json_time(b, "at", t->at, 1);
}

static void json_deadline(struct clv_sbuf *b, const struct inspection *in,
                          const struct clv_config *cfg)
{
    json_key(b, "next_deadline");
    if (in->deadline == 0 || in->next.n == 0) {
        sbuf_puts(b, "null");
    } else {
        json_transition(b, &in->next.t[0], cfg);
        sbuf_printf(b, ",\"overdue\":%s", in->deadline <= in->clock.at ? "true" : "false");
        json_str_or_null(b, "why", in->why);
        sbuf_puts(b, "}");
    }
    json_time(b, "due_index_at", in->due, in->has_due);
    json_key(b, "pending_transitions");
    sbuf_puts(b, "[");
    for (int i = 0; i < in->pending.n; i++) {
        sbuf_puts(b, i ? "," : "");
        json_transition(b, &in->pending.t[i], cfg);
        sbuf_puts(b, "}");
    }
    sbuf_puts(b, "]");
}

static void json_memory(struct clv_sbuf *b, const struct inspection *in,
                        const struct clv_config *cfg)
{
    const struct clv_customer *c = &in->c;

    sbuf_printf(b,
                ",\"dedupe\":{\"event_ids\":%u,\"event_ids_max\":%d,\"partition_marks\":%u,"
                "\"partition_marks_max\":%d}",
                c->ndedupe, cfg->dedupe_max_ids, c->nmarks, CLV_MAX_MARKS);
    sbuf_printf(b, ",\"purchase_day_log\":{\"days\":%u,\"days_max\":%d}", c->npdays, CLV_MAX_PDAYS);
    sbuf_printf(b, ",\"state_bytes\":%zu}\n", in->state_bytes);
}

static void print_customer(const char *id, const struct inspection *in,
                           const struct clv_config *cfg)
{
    struct clv_sbuf b;

    sbuf_init(&b);
    json_head(&b, id, in, cfg);
    json_activity(&b, in);
    json_windows(&b, &in->w);
    json_scores(&b, in);
    json_deadline(&b, in, cfg);
    json_memory(&b, in, cfg);
    fwrite(b.buf, 1, b.len, stdout);
    sbuf_free(&b);
}

/* ---- the command ------------------------------------------------------------ */

/* The figures as of the clock; for a stopped event-clock deployment, the
 * latest time in the state. */
static void inspect(struct inspection *in, const struct clv_config *cfg)
{
    const struct clv_customer *c = &in->c;

    if (in->clock.source == CLOCK_STOPPED)
        in->clock.at = c->stage_since > c->last_activity ? c->stage_since : c->last_activity;
    rules_from_config(&in->rules, cfg);
    snapshot_take(c, &in->rules, in->clock.at, &in->snap);
    customer_windows(c, in->clock.at, &in->w);
    in->deadline = stages_next_deadline(c, &in->rules);
    explain_deadline(in, cfg);
    in->scratch = *c;
    in->pending.n = 0;
    stages_advance(&in->scratch, &in->rules, in->clock.at, &in->pending);
    if (in->clock.at < c->last_activity) {
        char at[32];
        put_ts(at, sizeof(at), c->last_activity);
        fprintf(stderr,
                "clvctl customer: warning: --at is before the last activity (%s); the state "
                "cannot be cut back, so counts include later events\n",
                at);
    }
}

int cmd_customer(int argc, char **argv)
{
    struct customer_opts o;
    struct deployment *d = calloc(1, sizeof(*d));
    struct inspection *in = calloc(1, sizeof(*in));
    char err[CLV_ERRLEN];
    int ret = 1, opened = 0, found;

    if (d == NULL || in == NULL) {
        clv_seterr(err, sizeof(err), "out of memory");
        goto out;
    }
    switch (customer_parse_args(argc, argv, &o)) {
    case 1:
        customer_usage(stdout);
        ret = 0;
        goto done;
    case -1:
        customer_usage(stderr);
        ret = EXIT_USAGE;
        goto done;
    }
    if (deploy_open(d, &o.d, err, sizeof(err)) < 0)
        goto out;
    opened = 1;
    if ((found = read_state(d, o.id, in, err, sizeof(err))) < 0)
        goto out;
    if (found == 0) {
        clv_seterr(err, sizeof(err), "no customer '%s' (no %s on %s, %u shards)", o.id, in->key,
                   d->where, d->shards);
        goto out;
    }
    if (deploy_clock(d, &o.d, &in->clock, err, sizeof(err)) < 0)
        goto out;
    inspect(in, &d->cfg);
    print_customer(o.id, in, &d->cfg);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        clv_seterr(err, sizeof(err), "stdout: write error");
        goto out;
    }
    ret = 0;
out:
    if (ret == 1)
        fprintf(stderr, "clvctl customer: %s\n", err);
done:
    if (opened)
        deploy_close(d);
    free(d);
    free(in);
    return ret;
}
