/* test_value.c -- customer value in the outputs (SPEC sections 5, 6, 9):
 * membership tiers over a trailing spend window, and at_risk by P(alive)
 * under the BG/NBD model.
 *
 *   a. tiers: purchases lift a customer's trailing-window spend across the
 *      silver and gold floors (an upgrade each, at the purchase), then the
 *      purchase days age out of the window one by one and the tier falls at
 *      00:00 UTC of the day the remaining spend first drops below the floor:
 *      gold -> silver -> standard for one customer, gold -> standard in one
 *      step for another.  The expected changes are written out by hand and
 *      checked against a small independent simulation of the rule.
 *   b. p_alive: with clv.model: bgnbd (the CDNOW estimates, weeks) and
 *      lifecycle.at_risk.p_alive_below, a customer who bought four times in a
 *      week and then went silent is at_risk (reason p_alive) at the first
 *      second P(alive) is below the threshold, days before the purchase-gap
 *      deadline.  P(alive) is recomputed here with clv_bgnbd_p_alive (clvcore)
 *      from the purchase times, so the instant, the churn warning's risk
 *      (1 - P(alive)) and every snapshot's p_alive are checked independently.
 *   c. the control: the same input with p_alive_below: 0 goes at_risk by
 *      purchase_gap, still with the model's figures in the snapshots.
 *
 * As in test_lifecycle.c: all input is produced first (each customer on a
 * partition of its own, in time order), then clvd runs on the event clock
 * with a fresh consumer group on a flushed Redis; a "ticker" customer's
 * visits carry the watermark to the end of the scenario.  Every output
 * message is checked, and nothing else may be published.
 *
 * Environment: CLVD_IT_FILTER=<glob> runs only the matching tests; see
 * harness.h for CLVD_IT_KEEP and CLVD_IT_VERBOSE. */
#define _GNU_SOURCE /* open_memstream, vasprintf */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "clv.h"
#include "harness.h"

#ifndef CLVD_BINARY
#error "CLVD_BINARY (path of the clvd executable) must be defined"
#endif

#define CONSUME_TIMEOUT_MS 120000 /* h_consume gives up after 20 s without news */
#define QUIET_MS 1500
#define STOP_TIMEOUT_MS 10000

/* Output numbers are rounded (p_alive and risk to 4 decimals). */
#define ROUND4 (0.00005 + 1e-9)

/* ---- fixture --------------------------------------------------------------- */

struct fixture {
    struct h_redis redis; /* one per group, flushed before each test */
    char dir[H_PATHLEN];  /* configs and logs */
    int run;              /* clvd runs so far: unique group ids and file names */
    /* per test */
    struct h_kafka kafka;
    struct h_clvd clvd;
    int passed;
};

static int group_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char err[H_ERRLEN];

    if (f == NULL)
        return -1;
    if (access(CLVD_BINARY, X_OK) != 0) {
        fprintf(stderr, "clvd binary %s is missing: build the clvd target first\n", CLVD_BINARY);
        free(f);
        return -1;
    }
    if (h_tmpdir_create(f->dir, sizeof(f->dir), err, sizeof(err)) != 0 ||
        h_redis_start(&f->redis, err, sizeof(err)) != 0) {
        fprintf(stderr, "group setup: %s\n", err);
        h_redis_stop(&f->redis);
        h_tmpdir_remove(f->dir);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int group_teardown(void **state)
{
    struct fixture *f = *state;

    h_redis_stop(&f->redis);
    h_tmpdir_remove(f->dir);
    free(f);
    return 0;
}

/* Fresh Redis data and a fresh mock cluster with the default topics. */
static int fresh_world(struct fixture *f, int in_partitions, char *err, size_t errlen)
{
    h_kafka_stop(&f->kafka);
    if (h_redis_command(&f->redis, "FLUSHALL", NULL, 0, err, errlen) != 0)
        return -1;
    if (h_kafka_start(&f->kafka, 1, err, errlen) != 0)
        return -1;
    return h_kafka_create_default_topics(&f->kafka, in_partitions, 1, err, errlen);
}

static int setup(void **state)
{
    struct fixture *f = *state;

    memset(&f->kafka, 0, sizeof(f->kafka));
    memset(&f->clvd, 0, sizeof(f->clvd));
    f->passed = 0;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    if (!f->passed && f->clvd.log[0] != '\0')
        h_dump_file(f->clvd.log, "clvd log", 48 * 1024, stderr);
    h_clvd_kill9(&f->clvd);
    h_kafka_stop(&f->kafka);
    return 0;
}

/* Write a config for the current cluster and Redis, with `settings` (a
 * NULL-terminated list of dotted key, raw YAML value pairs) on top of the
 * test template, and start clvd. */
static void start_clvd(struct fixture *f, const char *name, const char *const *settings)
{
    char cfgpath[H_PATHLEN + 64], logpath[H_PATHLEN + 64], group[96], err[H_ERRLEN];
    struct h_config cfg;

    f->run++;
    snprintf(cfgpath, sizeof(cfgpath), "%s/%s-%d.yaml", f->dir, name, f->run);
    snprintf(logpath, sizeof(logpath), "%s/%s-%d.log", f->dir, name, f->run);
    snprintf(group, sizeof(group), "clvd-it-%s-%d-%d", name, (int)getpid(), f->run);
    assert_int_equal(h_config_init(&cfg, f->kafka.bootstraps, group, f->redis.socket), 0);
    for (int i = 0; settings != NULL && settings[i] != NULL; i += 2)
        assert_int_equal(h_config_set(&cfg, settings[i], "%s", settings[i + 1]), 0);
    if (h_config_write(&cfg, cfgpath, err, sizeof(err)) != 0) {
        h_config_free(&cfg);
        fail_msg("%s", err);
    }
    h_config_free(&cfg);
    if (h_clvd_start(&f->clvd, CLVD_BINARY, cfgpath, logpath, err, sizeof(err)) != 0)
        fail_msg("%s", err);
}

/* Read the outputs until `expected` messages arrived and the topics stayed
 * quiet; then SIGTERM clvd (exit 0 within 10 s) and check that nothing more
 * was published on the way out.  Too few messages is not fatal here: the
 * caller's checks then say which ones are missing. */
static void collect_and_stop(struct fixture *f, size_t expected, struct h_records *out)
{
    char err[H_ERRLEN];
    struct h_records after = {0};
    size_t n;

    if (h_consume(f->kafka.bootstraps, h_output_topics, expected, QUIET_MS, CONSUME_TIMEOUT_MS, out,
                  err, sizeof(err)) != 0) {
        if (!h_clvd_running(&f->clvd))
            fail_msg("%s; clvd is not running (wait status 0x%x)", err, f->clvd.status);
        fprintf(stderr, "[warning] reading the outputs: %s\n", err);
    }
    if (h_clvd_stop(&f->clvd, STOP_TIMEOUT_MS, err, sizeof(err)) != 0)
        fail_msg("SIGTERM: %s", err);
    n = out->n;
    if (h_consume(f->kafka.bootstraps, h_output_topics, n, 500, 30000, &after, err, sizeof(err)) !=
            0 ||
        after.n != n) {
        h_records_dump(&after, stderr);
        h_records_free(&after);
        fail_msg("%zu output message(s) before SIGTERM, other count after: %s", n, err);
    }
    h_records_free(&after);
}

/* ---- input ----------------------------------------------------------------- */

/* One purchase of a customer's history (in time order). */
struct purchase {
    const char *ts; /* RFC 3339, UTC */
    double amount;
};

/* A customer who buys, alone on its input partition. */
struct buyer {
    const char *id;
    int partition;
    const struct purchase *p;
    int n;
};

static void send_json(struct fixture *f, const char *topic, int32_t partition, const char *key,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void send_json(struct fixture *f, const char *topic, int32_t partition, const char *key,
                      const char *fmt, ...)
{
    char *value = NULL, err[H_ERRLEN];
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = vasprintf(&value, fmt, ap);
    va_end(ap);
    assert_true(rc >= 0);
    rc = h_produce_str(&f->kafka, topic, partition, key, value, NULL, err, sizeof(err));
    free(value);
    if (rc != 0)
        fail_msg("%s", err);
}

static void send_purchases(struct fixture *f, const struct buyer *b)
{
    for (int i = 0; i < b->n; i++)
        send_json(f, H_T_PURCHASES, b->partition, b->id,
                  "{\"event_id\":\"%s/p%d\",\"customer_id\":\"%s\",\"ts\":\"%s\",\"amount\":%.2f}",
                  b->id, i + 1, b->id, b->p[i].ts, b->p[i].amount);
}

/* The ticker's visits, every 10 days from `from` up to and including `to`
 * (which is where the watermark ends). */
static void send_ticker(struct fixture *f, int partition, int64_t from, int64_t to)
{
    char ts[32];

    for (int64_t t = from;; t += 10 * H_DAY_MS) {
        if (t > to)
            t = to;
        h_fmt_ts(t, ts, sizeof(ts));
        send_json(f, H_T_VISITS, partition, "ticker",
                  "{\"event_id\":\"ticker/%s\",\"customer_id\":\"ticker\",\"ts\":\"%s\"}", ts, ts);
        if (t == to)
            break;
    }
}

/* ---- the BG/NBD model, recomputed ------------------------------------------ */

/* The CDNOW estimates (SPEC section 9), fitted in weeks. */
#define BG_R 0.243
#define BG_ALPHA 4.414
#define BG_A 0.793
#define BG_B 2.426
#define BG_UNIT_DAYS 7.0

/* The same as clv.bgnbd in the config. */
#define BG_YAML "{r: 0.243, alpha: 4.414, a: 0.793, b: 2.426, time_unit_days: 7}"

static int64_t day_of(int64_t ms)
{
    return ms >= 0 ? ms / H_DAY_MS : -((-ms + H_DAY_MS - 1) / H_DAY_MS);
}

/* P(alive) of buyer `b` at `at` from its purchases up to `at`, with the
 * usual BG/NBD inputs (SPEC section 9; daemon/stages.c model_inputs): same-day
 * purchases merged, x = purchase days - 1, t_x = whole days from the first to
 * the last purchase day, T = `at` minus 00:00 UTC of the first purchase day
 * (at least t_x), all in the model's weeks.  NAN before the first purchase. */
static double model_p_alive(const struct buyer *b, int64_t at)
{
    const struct clv_bgnbd m = {BG_R, BG_ALPHA, BG_A, BG_B};
    int64_t first = 0, last = 0;
    int days = 0;
    double x, t_x, T;

    for (int i = 0; i < b->n; i++) { /* in time order */
        int64_t t = h_ts(b->p[i].ts), d = day_of(t);
        if (t > at)
            break;
        if (days == 0)
            first = d;
        if (days == 0 || d != last)
            days++;
        last = d;
    }
    if (days == 0)
        return NAN;
    x = days - 1;
    t_x = (double)(last - first);
    T = (double)(at - first * H_DAY_MS) / (double)H_DAY_MS;
    if (T < t_x)
        T = t_x;
    return clv_bgnbd_p_alive(&m, x, t_x / BG_UNIT_DAYS, T / BG_UNIT_DAYS);
}

/* ---- expected outputs ------------------------------------------------------ */

struct expect {
    const char *topic;
    const char *customer;
    int seq;
    const char *from; /* NULL: JSON null */
    const char *to;
    const char *reason;
    int64_t at;
    const char *kind;      /* win-back */
    const char *direction; /* tier changes */
    const char *tier;      /* customer.tier; checked when not NULL */
    int purchases;
    double revenue;
    int model;      /* the model's figures: numbers for buyers (else null); 0: all null */
    double p_alive; /* customer.p_alive and the churn warning's risk; NAN: unchecked */
};

#define MAX_EXPECT 64
struct expectations {
    int n;
    int model; /* clv.model: bgnbd in this run */
    struct expect e[MAX_EXPECT];
};

/* A stage change and what it implies (SPEC section 6): a churn warning when
 * entering at_risk; a win-back trigger when entering dormant or churned and
 * for returned / won_back, only for customers with >= 1 purchase.  Returns
 * the index of the first expectation added (see annotate()). */
static int expect_stage(struct expectations *x, const char *customer, int seq, const char *from,
                        const char *to, const char *reason, int64_t at, int purchases,
                        double revenue)
{
    struct expect base = {H_T_STAGE, customer, seq,  from,      to,      reason,   at,
                          NULL,      NULL,     NULL, purchases, revenue, x->model, NAN};
    const char *kind = NULL;
    int first = x->n;

    assert_true(x->n + 3 <= MAX_EXPECT);
    x->e[x->n++] = base;
    if (strcmp(to, "at_risk") == 0) {
        x->e[x->n] = base;
        x->e[x->n++].topic = H_T_CHURN;
    }
    if (strcmp(to, "dormant") == 0)
        kind = "dormant";
    else if (strcmp(to, "churned") == 0)
        kind = "churned";
    else if (strcmp(reason, "returned") == 0)
        kind = "returned";
    else if (strcmp(reason, "won_back") == 0)
        kind = "won_back";
    if (kind != NULL && purchases > 0) {
        x->e[x->n] = base;
        x->e[x->n].topic = H_T_WINBACK;
        x->e[x->n++].kind = kind;
    }
    return first;
}

/* A tier change: reason and direction "upgrade" / "downgrade"; the snapshot
 * carries the new tier. */
static int expect_tier(struct expectations *x, const char *customer, int seq, const char *from,
                       const char *to, const char *direction, int64_t at, int purchases,
                       double revenue)
{
    struct expect e = {H_T_TIER, customer,  seq, from,      to,      direction, at,
                       NULL,     direction, to,  purchases, revenue, x->model,  NAN};

    assert_true(x->n + 1 <= MAX_EXPECT);
    x->e[x->n++] = e;
    return x->n - 1;
}

/* Set the expected customer.tier (when not NULL) and P(alive) of the
 * expectations from index `first` on. */
static void annotate(struct expectations *x, int first, const char *tier, double p_alive)
{
    for (int i = first; i < x->n; i++) {
        if (tier != NULL)
            x->e[i].tier = tier;
        x->e[i].p_alive = p_alive;
    }
}

static size_t expected_count(const struct expectations *x, const char *topic)
{
    size_t n = 0;

    for (int i = 0; i < x->n; i++)
        if (topic == NULL || strcmp(x->e[i].topic, topic) == 0)
            n++;
    return n;
}

static const char *schema_of(const char *topic)
{
    if (strcmp(topic, H_T_STAGE) == 0)
        return "clvd.stage_change.v1";
    if (strcmp(topic, H_T_CHURN) == 0)
        return "clvd.churn_warning.v1";
    if (strcmp(topic, H_T_TIER) == 0)
        return "clvd.tier_change.v1";
    return "clvd.win_back.v1";
}

static int streq_or_null(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* The one record of `topic` with this event_id, or NULL (also when there are
 * several). */
static const struct h_record *find_record(const struct h_records *rs, const char *topic,
                                          const char *customer, int seq)
{
    const struct h_record *r = NULL;
    char id[192];
    int found = 0;

    snprintf(id, sizeof(id), "%s:%d", customer, seq);
    for (size_t k = 0; k < rs->n; k++)
        if (strcmp(rs->r[k].topic, topic) == 0 &&
            streq_or_null(h_json_str(rs->r[k].json, "event_id"), id)) {
            r = &rs->r[k];
            found++;
        }
    return found == 1 ? r : NULL;
}

/* Check one output message against its expectation; problems go to `log`. */
static void check_message(const struct expect *e, const struct h_record *r, FILE *log)
{
    static const char *const model_fields[] = {"p_alive", "clv_predicted",
                                               "expected_purchases_90d"};
    const json_t *j = r->json, *cust;
    char at[32], id[192];
    const char *s;
    double v = NAN;

    snprintf(id, sizeof(id), "%s:%d", e->customer, e->seq);
#define PROBLEM(...)                                                                               \
    do {                                                                                           \
        fprintf(log, "  %s %s: ", e->topic, id);                                                   \
        fprintf(log, __VA_ARGS__);                                                                 \
        fputc('\n', log);                                                                          \
    } while (0)
    if (!streq_or_null(r->key, e->customer))
        PROBLEM("key %s, want %s", r->key ? r->key : "(none)", e->customer);
    if (!streq_or_null(h_json_str(j, "schema"), schema_of(e->topic)))
        PROBLEM("schema %s, want %s", h_json_str(j, "schema"), schema_of(e->topic));
    if (!streq_or_null(h_json_str(j, "customer_id"), e->customer))
        PROBLEM("customer_id %s", h_json_str(j, "customer_id"));
    if (e->from == NULL ? !h_json_is_null(j, "from")
                        : !streq_or_null(h_json_str(j, "from"), e->from))
        PROBLEM("from %s, want %s", h_json_is_null(j, "from") ? "null" : h_json_str(j, "from"),
                e->from ? e->from : "null");
    if (!streq_or_null(h_json_str(j, "to"), e->to))
        PROBLEM("to %s, want %s", h_json_str(j, "to"), e->to);
    if (!streq_or_null(h_json_str(j, "reason"), e->reason))
        PROBLEM("reason %s, want %s", h_json_str(j, "reason"), e->reason);
    h_fmt_ts(e->at, at, sizeof(at));
    if (!streq_or_null(h_json_str(j, "at"), at))
        PROBLEM("at %s, want %s", h_json_str(j, "at"), at);
    if (h_json_str(j, "emitted_at") == NULL)
        PROBLEM("no emitted_at");
    if (e->kind != NULL && !streq_or_null(h_json_str(j, "kind"), e->kind))
        PROBLEM("kind %s, want %s", h_json_str(j, "kind"), e->kind);
    if (e->direction != NULL && !streq_or_null(h_json_str(j, "direction"), e->direction))
        PROBLEM("direction %s, want %s", h_json_str(j, "direction"), e->direction);
    if (strcmp(e->topic, H_T_CHURN) == 0) {
        if (!h_json_has_number(j, "risk", &v) || !h_json_has_number(j, "clv_at_stake", NULL))
            PROBLEM("risk or clv_at_stake missing or not numbers");
        else if (e->model && !isnan(e->p_alive) && fabs(v - (1.0 - e->p_alive)) > ROUND4)
            PROBLEM("risk %.4f, want 1 - P(alive) = %.6f", v, 1.0 - e->p_alive);
    }
    cust = json_object_get(j, "customer");
    if (!json_is_object(cust)) {
        PROBLEM("no customer object");
        return;
    }
    if (!h_json_has_number(cust, "purchases", &v) || v != e->purchases)
        PROBLEM("customer.purchases %g, want %d", v, e->purchases);
    if (!h_json_has_number(cust, "revenue", &v) || v < e->revenue - 1e-6 || v > e->revenue + 1e-6)
        PROBLEM("customer.revenue %g, want %g", v, e->revenue);
    s = h_json_str(cust, "tier");
    if (e->tier != NULL && !streq_or_null(s, e->tier))
        PROBLEM("customer.tier %s, want %s", s, e->tier);
    for (size_t i = 0; i < sizeof(model_fields) / sizeof(model_fields[0]); i++) {
        if (e->model && e->purchases > 0) {
            if (!h_json_has_number(cust, model_fields[i], NULL))
                PROBLEM("customer.%s is not a number (clv.model: bgnbd)", model_fields[i]);
        } else if (!h_json_is_null(cust, model_fields[i])) {
            PROBLEM("customer.%s is not null (%s)", model_fields[i],
                    e->model ? "no purchase yet" : "clv.model: none");
        }
    }
    if (e->model && !isnan(e->p_alive) && h_json_has_number(cust, "p_alive", &v) &&
        fabs(v - e->p_alive) > ROUND4)
        PROBLEM("customer.p_alive %.4f, want %.6f", v, e->p_alive);
#undef PROBLEM
}

/* Every expected message exactly once with the right fields, per customer in
 * sequence order on each topic, and nothing else on any output topic. */
static void check_outputs(const struct expectations *x, const struct h_records *rs)
{
    char *text = NULL;
    size_t textlen = 0;
    FILE *log = open_memstream(&text, &textlen);
    int problems;

    assert_non_null(log);
    for (int i = 0; i < x->n; i++) {
        const struct expect *e = &x->e[i];
        const struct h_record *r = find_record(rs, e->topic, e->customer, e->seq);

        if (r == NULL) {
            fprintf(log, "  %s %s:%d (%s -> %s, %s): missing or published more than once\n",
                    e->topic, e->customer, e->seq, e->from ? e->from : "null", e->to, e->reason);
            continue;
        }
        check_message(e, r, log);
    }
    for (int t = 0; h_output_topics[t] != NULL; t++) {
        size_t got = h_records_count(rs, h_output_topics[t]);
        size_t want = expected_count(x, h_output_topics[t]);
        if (got != want)
            fprintf(log, "  %s: %zu message(s), want %zu\n", h_output_topics[t], got, want);
    }
    /* Per customer and topic, sequence numbers increase in publication order. */
    for (size_t a = 0; a < rs->n; a++) {
        const char *ida = h_json_str(rs->r[a].json, "event_id"), *ca;
        if (ida == NULL || (ca = strrchr(ida, ':')) == NULL)
            continue;
        for (size_t b = a + 1; b < rs->n; b++) {
            const char *idb = h_json_str(rs->r[b].json, "event_id"), *cb;
            if (idb == NULL || (cb = strrchr(idb, ':')) == NULL ||
                strcmp(rs->r[a].topic, rs->r[b].topic) != 0 || ca - ida != cb - idb ||
                strncmp(ida, idb, (size_t)(ca - ida)) != 0)
                continue;
            if (atoi(cb + 1) <= atoi(ca + 1))
                fprintf(log, "  %s: %s published after %s\n", rs->r[a].topic, idb, ida);
        }
    }
    /* Stage and tier changes share each customer's transition sequence:
     * 1, 2, 3, ... over both topics, no gap, no number twice, in time order. */
    for (int i = 0; i < x->n; i++) {
        const char *cust = x->e[i].customer;
        int seen = 0, n = 0;
        int64_t prev = INT64_MIN;

        for (int k = 0; k < i && !seen; k++)
            seen = strcmp(x->e[k].customer, cust) == 0;
        if (seen)
            continue;
        for (size_t k = 0; k < rs->n; k++)
            if ((strcmp(rs->r[k].topic, H_T_STAGE) == 0 || strcmp(rs->r[k].topic, H_T_TIER) == 0) &&
                streq_or_null(h_json_str(rs->r[k].json, "customer_id"), cust))
                n++;
        for (int seq = 1; seq <= n; seq++) {
            const struct h_record *st = find_record(rs, H_T_STAGE, cust, seq);
            const struct h_record *ti = find_record(rs, H_T_TIER, cust, seq);
            const struct h_record *r = st != NULL ? st : ti;
            const char *at = r != NULL ? h_json_str(r->json, "at") : NULL;
            if ((st != NULL) == (ti != NULL) || at == NULL) {
                fprintf(log, "  %s:%d: want exactly one stage or tier change with a time\n", cust,
                        seq);
                break;
            }
            if (h_ts(at) < prev)
                fprintf(log, "  %s:%d at %s: earlier than the transition before it\n", cust, seq,
                        at);
            prev = h_ts(at);
        }
    }
    fclose(log);
    problems = textlen > 0;
    if (problems) {
        h_records_dump(rs, stderr);
        fprintf(stderr, "==== output problems:\n%s", text);
    }
    free(text);
    if (problems)
        fail_msg("the outputs differ from the expected ones (see above)");
}

/* An output time "YYYY-MM-DDTHH:MM:SS.mmmZ" -> epoch ms; 0 if it is not one
 * (h_ts would abort the whole run on a malformed literal). */
static int parse_at(const char *s, int64_t *out)
{
    int y, mo, d, h, mi, sec, ms, n = 0;

    if (s == NULL ||
        sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ%n", &y, &mo, &d, &h, &mi, &sec, &ms, &n) != 7 ||
        n != 24 || s[n] != '\0')
        return 0;
    *out = h_ts(s);
    return 1;
}

/* ---- a. tiers ------------------------------------------------------------------ */

#define TIER_WINDOW_DAYS 30
static const char *const tier_names[] = {"standard", "silver", "gold", "platinum"};
static const double tier_floors[] = {0, 500, 1000, 5000};
#define NTIERS 4
#define TIER_LEVELS_YAML                                                                           \
    "[{name: standard, min_spend: 0}, {name: silver, min_spend: 500}, "                            \
    "{name: gold, min_spend: 1000}, {name: platinum, min_spend: 5000}]"

static int tier_for(double spend)
{
    int t = 0;

    for (int i = 1; i < NTIERS; i++)
        if (spend >= tier_floors[i])
            t = i;
    return t;
}

struct tier_change {
    int64_t at;
    int from, to;
};

/* The tier rule of SPEC section 9, simulated day by day: the spend that
 * counts at a moment of day D is that of days D - window + 1 .. D up to that
 * moment.  At 00:00 UTC of each day the oldest day has left the window (a
 * downgrade, to whatever tier the rest earns, if it is lower); after each
 * purchase the spend may earn a higher tier (an upgrade).  Returns the number
 * of changes up to `end`. */
static int simulate_tiers(const struct buyer *b, int64_t end, struct tier_change *out, int max)
{
    int n = 0, cur = 0;

    for (int64_t day = day_of(h_ts(b->p[0].ts)); day * H_DAY_MS <= end; day++) {
        double spend = 0;
        for (int i = 0; i < b->n; i++) {
            int64_t d = day_of(h_ts(b->p[i].ts));
            if (d > day - TIER_WINDOW_DAYS && d < day)
                spend += b->p[i].amount;
        }
        if (tier_for(spend) < cur) {
            assert_true(n < max);
            out[n++] = (struct tier_change){day * H_DAY_MS, cur, tier_for(spend)};
            cur = tier_for(spend);
        }
        for (int i = 0; i < b->n; i++) {
            int64_t t = h_ts(b->p[i].ts);
            if (day_of(t) != day || t > end)
                continue;
            spend += b->p[i].amount; /* in time order: the day's earlier ones are in */
            if (tier_for(spend) > cur) {
                assert_true(n < max);
                out[n++] = (struct tier_change){t, cur, tier_for(spend)};
                cur = tier_for(spend);
            }
        }
    }
    return n;
}

/* The simulation must give exactly the changes the expectations spell out. */
static void check_tier_model(const struct buyer *b, int64_t end, const struct tier_change *want,
                             int nwant)
{
    struct tier_change got[16];
    int n = simulate_tiers(b, end, got, 16);
    char a[32], c[32];

    for (int i = 0; i < n || i < nwant; i++) {
        if (i < n && i < nwant && got[i].at == want[i].at && got[i].from == want[i].from &&
            got[i].to == want[i].to)
            continue;
        fail_msg("%s: tier change %d: the rule gives %s %s -> %s, the test expects %s %s -> %s",
                 b->id, i + 1, i < n ? h_fmt_ts(got[i].at, a, sizeof(a)) : "(none)",
                 i < n ? tier_names[got[i].from] : "", i < n ? tier_names[got[i].to] : "",
                 i < nwant ? h_fmt_ts(want[i].at, c, sizeof(c)) : "(none)",
                 i < nwant ? tier_names[want[i].from] : "",
                 i < nwant ? tier_names[want[i].to] : "");
    }
}

/* tina: 300 (standard), +250 = 550 (silver), +500 = 1050 (gold). */
static const struct purchase tina_p[] = {
    {"2025-03-03T10:00:00Z", 300}, {"2025-03-05T12:00:00Z", 250}, {"2025-03-10T09:00:00Z", 500}};
/* tom: 600 (silver at once), +450 = 1050 (gold). */
static const struct purchase tom_p[] = {{"2025-03-04T11:00:00Z", 600},
                                        {"2025-03-06T15:00:00Z", 450}};

static void test_tiers(void **state)
{
    struct fixture *f = *state;
    const struct buyer tina = {"tina", 0, tina_p, 3}, tom = {"tom", 1, tom_p, 2};
    const int64_t D = H_DAY_MS, end = h_ts("2025-04-20T00:00:00Z");
    const char *const settings[] = {"tiers.window_days", "30", "tiers.levels", TIER_LEVELS_YAML,
                                    NULL};
    /* With a 30-day window, purchase day d leaves it at 00:00 UTC of d + 30. */
    const int64_t tina_out1 = h_ts("2025-03-03T00:00:00Z") + 30 * D; /* 04-02: 750 left */
    const int64_t tina_out3 = h_ts("2025-03-10T00:00:00Z") + 30 * D; /* 04-09: 0 left */
    const int64_t tom_out1 = h_ts("2025-03-04T00:00:00Z") + 30 * D;  /* 04-03: 450 left */
    const struct tier_change tina_tiers[] = {
        {h_ts(tina_p[1].ts), 0, 1}, /* 550 >= 500 */
        {h_ts(tina_p[2].ts), 1, 2}, /* 1050 >= 1000 */
        {tina_out1, 2, 1},          /* 03-05 + 03-10 = 750: still silver */
        /* 03-05 leaves on 04-04, but 500 is still silver: no change */
        {tina_out3, 1, 0},
    };
    const struct tier_change tom_tiers[] = {
        {h_ts(tom_p[0].ts), 0, 1}, /* 600 */
        {h_ts(tom_p[1].ts), 1, 2}, /* 1050 */
        {tom_out1, 2, 0},          /* 450: below silver too, one step to standard */
    };
    struct expectations x;
    struct h_records rs = {0};
    char err[H_ERRLEN];
    int i;

    check_tier_model(&tina, end, tina_tiers, 4);
    check_tier_model(&tom, end, tom_tiers, 3);

    memset(&x, 0, sizeof(x));
    x.model = 0; /* clv.model: none: the model's figures are null */

    /* tina: purchase days 03-03, 03-05, 03-10 (mean gap 3.5 d): at_risk
     * max(14, 7) = 14 d after the last purchase, before the downgrades.  A
     * purchase's stage change comes before its tier change (seq 2, 3). */
    i = expect_stage(&x, "tina", 1, NULL, "new", "first_purchase", h_ts(tina_p[0].ts), 1, 300);
    annotate(&x, i, "standard", NAN); /* the base tier, silently */
    expect_stage(&x, "tina", 2, "new", "active", "repeat_purchase", h_ts(tina_p[1].ts), 2, 550);
    expect_tier(&x, "tina", 3, "standard", "silver", "upgrade", h_ts(tina_p[1].ts), 2, 550);
    expect_tier(&x, "tina", 4, "silver", "gold", "upgrade", h_ts(tina_p[2].ts), 3, 1050);
    i = expect_stage(&x, "tina", 5, "active", "at_risk", "purchase_gap",
                     h_ts(tina_p[2].ts) + 14 * D, 3, 1050);
    annotate(&x, i, "gold", NAN);
    expect_tier(&x, "tina", 6, "gold", "silver", "downgrade", tina_out1, 3, 1050);
    expect_tier(&x, "tina", 7, "silver", "standard", "downgrade", tina_out3, 3, 1050);
    /* Her dormant deadline (05-09) is after the end. */

    /* tom: one purchase straight into silver; gold on the second; purchase
     * days 03-04, 03-06: at_risk max(14, 4) = 14 d after 03-06T15:00; gold
     * -> standard in one step when 03-04 leaves the window. */
    expect_stage(&x, "tom", 1, NULL, "new", "first_purchase", h_ts(tom_p[0].ts), 1, 600);
    expect_tier(&x, "tom", 2, "standard", "silver", "upgrade", h_ts(tom_p[0].ts), 1, 600);
    expect_stage(&x, "tom", 3, "new", "active", "repeat_purchase", h_ts(tom_p[1].ts), 2, 1050);
    expect_tier(&x, "tom", 4, "silver", "gold", "upgrade", h_ts(tom_p[1].ts), 2, 1050);
    i = expect_stage(&x, "tom", 5, "active", "at_risk", "purchase_gap", h_ts(tom_p[1].ts) + 14 * D,
                     2, 1050);
    annotate(&x, i, "gold", NAN);
    expect_tier(&x, "tom", 6, "gold", "standard", "downgrade", tom_out1, 2, 1050);

    /* ticker: visits every 10 days, never a purchase, never dormant. */
    i = expect_stage(&x, "ticker", 1, NULL, "prospect", "first_seen", h_ts("2025-03-01T00:00:00Z"),
                     0, 0);
    annotate(&x, i, "standard", NAN);
    assert_int_equal(expected_count(&x, H_T_TIER), 7);

    if (fresh_world(f, 3, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    send_purchases(f, &tina);
    send_purchases(f, &tom);
    send_ticker(f, 2, h_ts("2025-03-01T00:00:00Z"), end);
    start_clvd(f, "tiers", settings);
    collect_and_stop(f, expected_count(&x, NULL), &rs);
    check_outputs(&x, &rs);
    h_records_free(&rs);
    f->passed = 1;
}

/* ---- b, c. at_risk by P(alive) ---------------------------------------------- */

#define P_ALIVE_BELOW 0.7

/* pam: four purchase days in a week, then silence.  P(alive) falls below 0.7
 * about 11 days after her last purchase; the purchase-gap deadline is
 * max(14, 2 x 2) = 14 days after it. */
static const struct purchase pam_p[] = {{"2025-06-02T10:00:00Z", 40},
                                        {"2025-06-04T10:00:00Z", 25},
                                        {"2025-06-06T10:00:00Z", 30},
                                        {"2025-06-08T10:00:00Z", 35}};
/* solo: one purchase day: no repeat purchase, P(alive) = 1, so only the
 * default gap (30 d) puts her at risk, model or not. */
static const struct purchase solo_p[] = {{"2025-06-03T12:00:00Z", 50}};

static const struct buyer pam = {"pam", 0, pam_p, 4}, solo = {"solo", 1, solo_p, 1};

#define PAM_GAP_DEADLINE_DAYS 14
#define P_ALIVE_END "2025-07-10T00:00:00Z" /* before pam's dormant deadline (08-07) */

/* Produce the model scenario, run clvd with p_alive_below = `below` and read
 * the outputs (`expected` messages). */
static void run_model(struct fixture *f, const char *name, const char *below, size_t expected,
                      struct h_records *rs)
{
    const char *const settings[] = {
        "clv.model", "bgnbd", "clv.bgnbd", BG_YAML, "lifecycle.at_risk.p_alive_below", below, NULL};
    char err[H_ERRLEN];

    if (fresh_world(f, 3, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    send_purchases(f, &pam);
    send_purchases(f, &solo);
    send_ticker(f, 2, h_ts("2025-06-01T00:00:00Z"), h_ts(P_ALIVE_END));
    start_clvd(f, name, settings);
    collect_and_stop(f, expected, rs);
}

/* Everything but pam's at_risk, which the caller adds.  Every snapshot of a
 * buyer carries P(alive) as recomputed here. */
static void model_expectations(struct expectations *x)
{
    const int64_t p1 = h_ts(pam_p[0].ts), p2 = h_ts(pam_p[1].ts), s1 = h_ts(solo_p[0].ts);
    int i;

    memset(x, 0, sizeof(*x));
    x->model = 1;
    i = expect_stage(x, "pam", 1, NULL, "new", "first_purchase", p1, 1, 40);
    annotate(x, i, "standard", model_p_alive(&pam, p1)); /* no repeat yet: 1 */
    i = expect_stage(x, "pam", 2, "new", "active", "repeat_purchase", p2, 2, 65);
    annotate(x, i, "standard", model_p_alive(&pam, p2));
    /* her third and fourth purchases change nothing (loyal needs 5) */
    i = expect_stage(x, "solo", 1, NULL, "new", "first_purchase", s1, 1, 50);
    annotate(x, i, "standard", 1.0);
    i = expect_stage(x, "solo", 2, "new", "at_risk", "purchase_gap", s1 + 30 * H_DAY_MS, 1, 50);
    annotate(x, i, "standard", 1.0); /* risk 0 */
    i = expect_stage(x, "ticker", 1, NULL, "prospect", "first_seen", h_ts("2025-06-01T00:00:00Z"),
                     0, 0);
    annotate(x, i, "standard", NAN); /* no purchase: the model's figures are null */
}

static void test_p_alive_at_risk(void **state)
{
    struct fixture *f = *state;
    const int64_t last = h_ts(pam_p[3].ts);
    const int64_t gap_deadline = last + PAM_GAP_DEADLINE_DAYS * H_DAY_MS;
    struct expectations x;
    struct h_records rs = {0};
    const struct h_record *r;
    char below[32], ts[32];
    double p_at, p_before;
    int64_t at = 0;
    int i;

    /* The test's own model agrees with the premise: above the threshold at
     * the last purchase, below it well before the purchase-gap deadline. */
    assert_true(model_p_alive(&pam, last) >= P_ALIVE_BELOW);
    assert_true(model_p_alive(&pam, gap_deadline - H_DAY_MS) < P_ALIVE_BELOW);

    model_expectations(&x);
    snprintf(below, sizeof(below), "%g", P_ALIVE_BELOW);
    run_model(f, "p-alive", below, expected_count(&x, NULL) + 2, &rs);

    /* pam's third transition: at_risk by p_alive, at the first second
     * P(alive) < 0.7 (clvd bisects to the second). */
    r = find_record(&rs, H_T_STAGE, "pam", 3);
    if (r == NULL || !parse_at(h_json_str(r->json, "at"), &at)) {
        h_records_dump(&rs, stderr);
        fail_msg("no single stage change pam:3 with a valid \"at\"");
    }
    p_at = model_p_alive(&pam, at);
    p_before = model_p_alive(&pam, at - 2000);
    h_fmt_ts(at, ts, sizeof(ts));
    fprintf(stderr,
            "[info] pam at_risk at %s (%s, %.2f d after her last purchase, %.2f d before the "
            "purchase-gap deadline): P(alive) %.9f there, %.9f 2 s before\n",
            ts, h_json_str(r->json, "reason"), (double)(at - last) / H_DAY_MS,
            (double)(gap_deadline - at) / H_DAY_MS, p_at, p_before);
    if (!(at > last && at < gap_deadline)) {
        h_records_dump(&rs, stderr);
        fail_msg("pam:3 at %s: not between her last purchase and the purchase-gap deadline", ts);
    }
    if (!(p_at < P_ALIVE_BELOW && p_before >= P_ALIVE_BELOW)) {
        h_records_dump(&rs, stderr);
        fail_msg("pam:3 at %s: P(alive) %.6f there and %.6f 2 s before; the threshold %g must be "
                 "crossed in between",
                 ts, p_at, p_before, P_ALIVE_BELOW);
    }
    i = expect_stage(&x, "pam", 3, "active", "at_risk", "p_alive", at, 4, 130);
    annotate(&x, i, "standard", p_at); /* the churn warning's risk: 1 - P(alive) */
    /* Nothing more for pam: at_risk already, dormant (08-07) after the end. */
    check_outputs(&x, &rs);
    h_records_free(&rs);
    f->passed = 1;
}

/* The control: the same input with p_alive_below: 0 (off).  pam goes
 * at_risk by purchase_gap, 14 days after her last purchase; the snapshots
 * still carry the model's figures, and the warning's risk is 1 - P(alive). */
static void test_p_alive_off(void **state)
{
    struct fixture *f = *state;
    const int64_t at = h_ts(pam_p[3].ts) + PAM_GAP_DEADLINE_DAYS * H_DAY_MS;
    struct expectations x;
    struct h_records rs = {0};
    int i;

    model_expectations(&x);
    i = expect_stage(&x, "pam", 3, "active", "at_risk", "purchase_gap", at, 4, 130);
    annotate(&x, i, "standard", model_p_alive(&pam, at));
    assert_true(model_p_alive(&pam, at) < P_ALIVE_BELOW); /* it would have been p_alive */
    run_model(f, "p-alive-off", "0", expected_count(&x, NULL), &rs);
    check_outputs(&x, &rs);
    h_records_free(&rs);
    f->passed = 1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tiers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_p_alive_at_risk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_p_alive_off, setup, teardown),
    };
    const char *filter = getenv("CLVD_IT_FILTER");

    if (filter != NULL && *filter != '\0')
        cmocka_set_test_filter(filter);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
