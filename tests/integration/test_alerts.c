/* test_alerts.c -- alert rules evaluated by one of two instances (SPEC
 * sections 7, 10 and 13; docs/operations.md section 5).
 *
 * Two clvd processes in one consumer group, same config (event clock) but
 * their own metrics port, with two rules:
 *
 *   churned_share  stage_share.churned  above 0.3  hysteresis 0.1
 *   churn_spike    churn_rate, 24h      above 0.5  hysteresis 0.1
 *
 * a. test_alerts_two_instances
 *
 * Phase 1: ten customers x00-x09 buy once on 2025-01-01 10:00 and fall
 * silent; three "ticker" customers t0-t2, one on each purchases partition
 * (so that both instances' partitions move), buy every 20 days and move the
 * event clock to 06-30 12:00, past the silent ones' churned deadline (06-30
 * 10:00, 180 days after their last activity).  Then 10 of 13 customers are
 * churned (share 0.77 > 0.3) and 10 buyers churned within 24 h against 3
 * buyers left (rate 3.3 > 0.5): both rules fire.
 *
 * Phase 2, once both `firing` messages are out: x00-x07 buy again on 07-02
 * 10:00 (churned -> reactivated): share 2/13 = 0.15 < 0.3 * 0.9; the clock
 * passes the churn bucket's 24 h window: rate 0 < 0.45.  Both resolve.
 *
 * Asserted: on clvd.alerts exactly one `firing` then one `resolved` per rule
 * (event_id <name>:1 and <name>:2, keyed by the rule name, with the message
 * fields of SPEC section 10), even though two instances run and evaluate
 * every 5 s; nothing more after further evaluation periods; one instance
 * holds the evaluator lease throughout and is the only one to log the alert;
 * the rule state in Redis (<prefix>alerts:state); clvd_alert_firing on both
 * instances' /metrics: the evaluator shows 1 while firing, no instance shows
 * 1 after `resolved`, and every scrape is a valid exposition.
 *
 * b. test_alerts_lease_handover
 *
 * As a, but while both rules fire the evaluator lease moves to the other
 * instance (set in Redis, as when the evaluator stalls past the 15 s lease
 * and the other takes over).  The new evaluator carries on from the rule
 * state in Redis: no second `firing`, `resolved` with seq 2, published and
 * logged by the new evaluator; it shows clvd_alert_firing 1 while firing,
 * and after `resolved` no instance, the former evaluator included, shows 1.
 *
 * c. test_alerts_clock_one_partition
 *
 * Phase 1 again, but with a single ticker, on one partition: the other
 * partitions, and with them every partition of one of the two instances, go
 * idle.  An idle partition does not hold the event clock back (SPEC 7) and
 * two instances give the results of one (SPEC 13), so the clock must reach
 * 06-30 12:00 and churned_share must fire, as it does with one process.
 *
 * Environment: see harness.h (CLVD_IT_KEEP, CLVD_IT_VERBOSE);
 * CLVD_IT_FILTER=<glob> runs only the matching tests. */
#define _GNU_SOURCE /* vasprintf */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <math.h>

#include <hiredis/hiredis.h>

#include "harness.h"
#include "promtext.h"

#ifndef CLVD_BINARY
#error "CLVD_BINARY (path of the clvd executable) must be defined"
#endif

#define NINST 2
#define IN_PARTS 3
#define NSILENT 10
#define NBACK 8
#define ALERT_TIMEOUT_MS 30000 /* evaluation every 5 s */
#define AFTER_MS 11000         /* two more evaluation periods and some */
#define GAUGE_TIMEOUT_MS 4000  /* the page is rendered about once a second */
#define STOP_TIMEOUT_MS 10000

#define RULES                                                                                      \
    "[{name: churned_share, metric: stage_share.churned, above: 0.3, hysteresis: 0.1},"            \
    " {name: churn_spike, metric: churn_rate, window: 24h, above: 0.5, hysteresis: 0.1}]"

struct rule {
    const char *name, *metric;
    double above, hysteresis;
    int window_seconds; /* 0: none */
};

static const struct rule rules[] = {
    {"churned_share", "stage_share.churned", 0.3, 0.1, 0},
    {"churn_spike", "churn_rate", 0.5, 0.1, 86400},
};
#define NRULES 2

struct fixture {
    struct h_world w; /* dir, redis, kafka */
    struct h_clvd clvd[NINST];
    int port[NINST];
    int passed;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char err[H_ERRLEN];

    if (f == NULL)
        return -1;
    *state = f;
    if (access(CLVD_BINARY, X_OK) != 0) {
        fprintf(stderr, "clvd binary %s is missing: build the clvd target first\n", CLVD_BINARY);
        return -1;
    }
    if (h_world_start(&f->w, IN_PARTS, err, sizeof(err)) != 0) {
        fprintf(stderr, "setup: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    if (f == NULL)
        return 0;
    for (int i = 0; i < NINST; i++) {
        if (!f->passed && f->clvd[i].log[0] != '\0') {
            char title[32];
            snprintf(title, sizeof(title), "clvd #%d log", i);
            h_dump_file(f->clvd[i].log, title, 24 * 1024, stderr);
        }
        h_clvd_kill9(&f->clvd[i]);
    }
    h_world_stop(&f->w);
    free(f);
    return 0;
}

/* ---- input -------------------------------------------------------------------- */

static void purchase(struct fixture *f, const char *cid, int partition, int64_t ts)
{
    char value[256], when[32], err[H_ERRLEN];

    h_fmt_ts(ts, when, sizeof(when));
    snprintf(value, sizeof(value),
             "{\"event_id\":\"%s-%lld\",\"customer_id\":\"%s\",\"ts\":\"%s\",\"amount\":20}", cid,
             (long long)ts, cid, when);
    if (h_produce_async(&f->w.kafka, H_T_PURCHASES, partition, cid, value, strlen(value), err,
                        sizeof(err)) != 0)
        fail_msg("%s", err);
}

static void flush_input(struct fixture *f)
{
    char err[H_ERRLEN];

    if (h_produce_wait(&f->w.kafka, 30000, err, sizeof(err)) != 0)
        fail_msg("producing the input: %s", err);
}

#define T0 "2025-01-01T00:00:00Z"
#define SILENT_BUY "2025-01-01T10:00:00Z"
#define CHURN_AT "2025-06-30T10:00:00Z" /* SILENT_BUY + 180 d */
#define PHASE1_END "2025-06-30T12:00:00Z"
#define COMEBACK "2025-07-02T10:00:00Z"
#define PHASE2_END "2025-07-02T12:00:00Z"

/* Phase 1 with `ntickers` tickers t0.. on purchases partitions 0.. */
static void produce_phase1(struct fixture *f, int ntickers)
{
    char cid[16];

    for (int i = 0; i < NSILENT; i++) {
        snprintf(cid, sizeof(cid), "x%02d", i);
        purchase(f, cid, i % IN_PARTS, h_ts(SILENT_BUY));
    }
    /* a ticker buys every 20 days (at_risk only after 40 d) up to 06-30 */
    for (int t = 0; t < ntickers; t++) {
        snprintf(cid, sizeof(cid), "t%d", t);
        for (int k = 0; k <= 9; k++)
            purchase(f, cid, t, h_ts(T0) + (int64_t)k * 20 * H_DAY_MS);
        purchase(f, cid, t, h_ts(PHASE1_END));
    }
    flush_input(f);
}

static void produce_phase2(struct fixture *f, int ntickers)
{
    char cid[16];

    for (int i = 0; i < NBACK; i++) {
        snprintf(cid, sizeof(cid), "x%02d", i);
        purchase(f, cid, i % IN_PARTS, h_ts(COMEBACK));
    }
    for (int t = 0; t < ntickers; t++) {
        snprintf(cid, sizeof(cid), "t%d", t);
        purchase(f, cid, t, h_ts(PHASE2_END));
    }
    flush_input(f);
}

/* ---- the alerts topic ------------------------------------------------------------ */

static const char *const alert_topics[] = {H_T_ALERTS, NULL};

/* What each instance's /metrics says about the population and the clock
 * (for failure reports). */
static void dump_state(struct fixture *f)
{
    static const char *const names[] = {"clvd_customers",
                                        "clvd_transitions_total",
                                        "clvd_events_applied_total",
                                        "clvd_event_clock_watermark_seconds",
                                        "clvd_held_events",
                                        "clvd_alert_firing",
                                        "clvd_outputs_delivered_total"};
    for (int i = 0; i < NINST; i++) {
        struct prom_page p;
        char err[24 * 1024];

        if (prom_scrape(f->port[i], &p, NULL, err, sizeof(err)) != 0) {
            fprintf(stderr, "clvd #%d: %s\n", i, err);
            continue;
        }
        for (size_t k = 0; k < p.n; k++)
            for (size_t n = 0; n < sizeof(names) / sizeof(names[0]); n++)
                if (strcmp(p.s[k].name, names[n]) == 0 && p.s[k].value != 0)
                    fprintf(stderr, "clvd #%d: %s{%s} %.17g\n", i, p.s[k].name, p.s[k].labels,
                            p.s[k].value);
        prom_page_free(&p);
    }
}

/* Read clvd.alerts until `n` messages are there (or the time is up). */
static void read_alerts(struct fixture *f, size_t n, int timeout_ms, struct h_records *rs)
{
    char err[H_ERRLEN];

    h_records_free(rs);
    if (h_consume(f->w.kafka.bootstraps, alert_topics, n, 500, timeout_ms, rs, err, sizeof(err)) !=
        0) {
        for (int i = 0; i < NINST; i++)
            if (!h_clvd_running(&f->clvd[i]))
                fail_msg("clvd #%d exited (wait status 0x%x); reading alerts: %s", i,
                         f->clvd[i].status, err);
        h_records_dump(rs, stderr);
        dump_state(f);
        fail_msg("%zu message(s) on %s, want %zu: %s", rs->n, H_T_ALERTS, n, err);
    }
}

/* The messages of one rule, in publication order. */
static size_t of_rule(const struct h_records *rs, const char *name, const struct h_record **out,
                      size_t max)
{
    size_t n = 0;

    for (size_t i = 0; i < rs->n; i++)
        if (rs->r[i].json != NULL && h_json_str(rs->r[i].json, "alert") != NULL &&
            strcmp(h_json_str(rs->r[i].json, "alert"), name) == 0) {
            if (n < max)
                out[n] = &rs->r[i];
            n++;
        }
    return n;
}

static int near(double a, double b)
{
    return fabs(a - b) <= 1e-5;
}

/* Check message `seq` (1: firing, 2: resolved) of a rule; `value_lo` /
 * `value_hi` bound its value, `at_lo` / `at_hi` its `at`. */
static void check_alert(const struct h_record *r, const struct rule *rule, int seq, double value_lo,
                        double value_hi, int64_t at_lo, int64_t at_hi)
{
    const json_t *j = r->json;
    char id[96];
    const char *s;
    double v;
    int64_t at;

#define BAD(...)                                                                                   \
    do {                                                                                           \
        fprintf(stderr, "message: %s\n", r->value);                                                \
        fail_msg(__VA_ARGS__);                                                                     \
    } while (0)
    if (j == NULL)
        BAD("not a JSON object");
    snprintf(id, sizeof(id), "%s:%d", rule->name, seq);
    if ((s = h_json_str(j, "schema")) == NULL || strcmp(s, "clvd.alert.v1") != 0)
        BAD("schema %s, want clvd.alert.v1", s ? s : "(none)");
    if ((s = h_json_str(j, "event_id")) == NULL || strcmp(s, id) != 0)
        BAD("event_id %s, want %s", s ? s : "(none)", id);
    if (r->key == NULL || strcmp(r->key, rule->name) != 0)
        BAD("key %s, want the rule name %s", r->key ? r->key : "(none)", rule->name);
    if ((s = h_json_str(j, "state")) == NULL ||
        strcmp(s, seq % 2 == 1 ? "firing" : "resolved") != 0)
        BAD("state %s, want %s", s ? s : "(none)", seq % 2 == 1 ? "firing" : "resolved");
    if ((s = h_json_str(j, "metric")) == NULL || strcmp(s, rule->metric) != 0)
        BAD("metric %s, want %s", s ? s : "(none)", rule->metric);
    if (!h_json_has_number(j, "threshold", &v) || !near(v, rule->above))
        BAD("threshold %g, want %g", v, rule->above);
    if (!h_json_has_number(j, "resolve_below", &v) ||
        !near(v, rule->above * (1 - rule->hysteresis)))
        BAD("resolve_below %g, want %g", v, rule->above * (1 - rule->hysteresis));
    if (!h_json_has_number(j, "value", &v) || v < value_lo - 1e-6 || v > value_hi + 1e-6)
        BAD("value %g, want within [%g, %g]", v, value_lo, value_hi);
    if (rule->window_seconds > 0 &&
        (!h_json_has_number(j, "window_seconds", &v) || v != rule->window_seconds))
        BAD("window_seconds %g, want %d", v, rule->window_seconds);
    if ((s = h_json_str(j, "at")) == NULL)
        BAD("no at");
    at = h_ts(s);
    if (at < at_lo || at > at_hi) {
        char lo[32], hi[32];
        BAD("at %s, want the event clock within [%s, %s]", s, h_fmt_ts(at_lo, lo, sizeof(lo)),
            h_fmt_ts(at_hi, hi, sizeof(hi)));
    }
#undef BAD
}

/* ---- the gauges ---------------------------------------------------------------- */

/* clvd_alert_firing{alert=name} of instance i; -1 if the series is absent. */
static double gauge(struct fixture *f, int i, const char *name)
{
    struct prom_page p;
    char err[24 * 1024], labels[128];
    double v = -1;

    if (prom_scrape(f->port[i], &p, NULL, err, sizeof(err)) != 0)
        fail_msg("clvd #%d: %s", i, err);
    snprintf(labels, sizeof(labels), "alert=\"%s\"", name);
    if (!prom_get(&p, "clvd_alert_firing", labels, &v))
        v = -1;
    prom_page_free(&p);
    return v;
}

/* Wait until the evaluator shows `want` for every rule and, when
 * `all` is set, every instance does. */
static void await_gauges(struct fixture *f, int leader, int want, int all)
{
    int64_t deadline = h_mono_ms() + GAUGE_TIMEOUT_MS;

    for (;;) {
        int ok = 1;
        double seen[NINST][NRULES];
        for (int i = 0; i < NINST; i++)
            for (int r = 0; r < NRULES; r++) {
                seen[i][r] = gauge(f, i, rules[r].name);
                if (seen[i][r] < 0)
                    fail_msg("clvd #%d: no clvd_alert_firing{alert=\"%s\"} series", i,
                             rules[r].name);
                if ((i == leader || all) && seen[i][r] != want)
                    ok = 0;
            }
        if (ok) {
            for (int r = 0; r < NRULES; r++)
                print_message("clvd_alert_firing{alert=\"%s\"}: evaluator %g, other %g\n",
                              rules[r].name, seen[leader][r], seen[1 - leader][r]);
            return;
        }
        if (h_mono_ms() >= deadline) {
            for (int i = 0; i < NINST; i++)
                for (int r = 0; r < NRULES; r++)
                    fprintf(stderr, "clvd #%d%s clvd_alert_firing{alert=\"%s\"} = %g\n", i,
                            i == leader ? " (evaluator)" : "", rules[r].name, seen[i][r]);
            fail_msg("clvd_alert_firing: want %d on %s (see above)", want,
                     all ? "every instance" : "the evaluator");
        }
        h_sleep_ms(250);
    }
}

/* The instance holding the evaluator lease, from the logs: exactly one ever
 * took it, and none lost it. */
static int evaluator(struct fixture *f)
{
    int leader = -1, takes = 0;

    for (int i = 0; i < NINST; i++) {
        int n = h_file_count(f->clvd[i].log, "alerts: this instance is now the evaluator");
        if (n > 0)
            leader = i;
        takes += n;
        if (h_file_count(f->clvd[i].log, "alerts: this instance is no longer the evaluator") != 0)
            fail_msg("clvd #%d lost the evaluator lease while both were running", i);
    }
    if (takes != 1)
        fail_msg("the evaluator lease was taken %d time(s), want once", takes);
    return leader;
}

static void expect_redis_state(struct fixture *f, const char *rule, const char *want)
{
    char cmd[128], reply[64], err[H_ERRLEN];

    snprintf(cmd, sizeof(cmd), "HGET clv:alerts:state %s", rule);
    if (h_redis_command(&f->w.redis, cmd, reply, sizeof(reply), err, sizeof(err)) != 0)
        fail_msg("%s", err);
    if (strcmp(reply, want) != 0)
        fail_msg("%s: \"%s\", want \"%s\"", cmd, reply, want);
}

/* ---- the tests ---------------------------------------------------------------------- */

static void start_instances(struct fixture *f, const char *name)
{
    char err[H_ERRLEN], group[64];

    snprintf(group, sizeof(group), "clvd-it-%s-%d", name, (int)getpid());
    for (int i = 0; i < NINST; i++) {
        struct h_config cfg;
        char cfgpath[H_PATHLEN + 64], logpath[H_PATHLEN + 64], listen[64];
        int rc;

        f->port[i] = prom_free_port();
        assert_true(f->port[i] > 0);
        assert_true(i == 0 || f->port[i] != f->port[0]);
        snprintf(listen, sizeof(listen), "127.0.0.1:%d", f->port[i]);
        snprintf(cfgpath, sizeof(cfgpath), "%s/%s-%d.yaml", f->w.dir, name, i);
        snprintf(logpath, sizeof(logpath), "%s/%s-%d.log", f->w.dir, name, i);
        assert_int_equal(h_config_init(&cfg, f->w.kafka.bootstraps, group, f->w.redis.socket), 0);
        assert_int_equal(h_config_set_str(&cfg, "metrics.listen", listen), 0);
        assert_int_equal(h_config_set(&cfg, "alerts", "%s", RULES), 0);
        /* as the scale-out tests: a member that joins late (or leaves) is
         * settled within seconds, not librdkafka's default 45 s session */
        assert_int_equal(h_config_set(&cfg, "kafka.properties",
                                      "{session.timeout.ms: \"6000\", "
                                      "heartbeat.interval.ms: \"500\"}"),
                         0);
        rc = h_config_write(&cfg, cfgpath, err, sizeof(err));
        h_config_free(&cfg);
        if (rc != 0)
            fail_msg("%s", err);
        if (h_clvd_start(&f->clvd[i], CLVD_BINARY, cfgpath, logpath, err, sizeof(err)) != 0)
            fail_msg("%s", err);
    }
    for (int i = 0; i < NINST; i++)
        if (h_clvd_wait_log(&f->clvd[i], "kafka: assigned", 30000) != 0)
            fail_msg("clvd #%d got no partitions within 30 s", i);
}

#define NTICK 3
#define NCUST (NSILENT + NTICK)

/* Phase 1 with NTICK tickers: both rules fire once; returns the evaluator. */
static int run_phase1(struct fixture *f, struct h_records *rs, int64_t t0)
{
    const struct h_record *m[8];
    int leader;

    produce_phase1(f, NTICK);
    read_alerts(f, NRULES, ALERT_TIMEOUT_MS, rs);
    print_message("both rules fired %lld ms after the start\n", (long long)(h_mono_ms() - t0));
    leader = evaluator(f);
    for (int r = 0; r < NRULES; r++) {
        size_t n = of_rule(rs, rules[r].name, m, 8);
        if (n != 1) {
            h_records_dump(rs, stderr);
            fail_msg("%zu message(s) of %s after phase 1, want 1 (firing)", n, rules[r].name);
        }
        if (r == 0) /* k of 13 customers churned, k <= 10 */
            check_alert(m[0], &rules[r], 1, 0.3, (double)NSILENT / NCUST, h_ts(CHURN_AT),
                        h_ts(PHASE1_END));
        else /* k churned in 24 h / (13 - k) buyers left */
            check_alert(m[0], &rules[r], 1, 0.5, (double)NSILENT / NTICK, h_ts(CHURN_AT),
                        h_ts(PHASE1_END));
        expect_redis_state(f, rules[r].name, "firing:1");
    }
    return leader;
}

/* Exactly one firing (seq 1) and one resolved (seq 2) per rule on the
 * alerts topic, with the resolved values expected after phase 2 and the rule
 * state "ok:2" in Redis. */
static void check_resolved(struct fixture *f, const struct h_records *rs)
{
    const struct h_record *m[8];

    if (rs->n != 2 * NRULES) {
        h_records_dump(rs, stderr);
        fail_msg("%zu messages on %s, want %d", rs->n, H_T_ALERTS, 2 * NRULES);
    }
    for (int r = 0; r < NRULES; r++) {
        size_t n = of_rule(rs, rules[r].name, m, 8);
        if (n != 2) {
            h_records_dump(rs, stderr);
            fail_msg("%zu message(s) of %s, want 2 (firing, resolved)", n, rules[r].name);
        }
        if (r == 0) /* 2 of 13 churned in the end; 3 is below 0.27 too (an
                     * evaluation between two comebacks) */
            check_alert(m[1], &rules[r], 2, (double)(NSILENT - NBACK) / NCUST,
                        (double)(NSILENT - NBACK + 1) / NCUST, h_ts(COMEBACK), h_ts(PHASE2_END));
        else /* the churn bucket of 06-30 10:00 left the 24 h window */
            check_alert(m[1], &rules[r], 2, 0, 0.45, h_ts(CHURN_AT) + H_DAY_MS, h_ts(PHASE2_END));
        expect_redis_state(f, rules[r].name, "ok:2");
    }
}

/* Phase 2: both rules resolve; the gauges follow; then a few more
 * evaluation periods, SIGTERM, and every message read once more: still
 * exactly one firing and one resolved per rule, logged by `firing_by` and
 * `resolved_by` only. */
static void run_phase2(struct fixture *f, struct h_records *rs, int64_t t0, int firing_by,
                       int resolved_by)
{
    char err[H_ERRLEN];

    produce_phase2(f, NTICK);
    read_alerts(f, 2 * NRULES, ALERT_TIMEOUT_MS, rs);
    print_message("both rules resolved %lld ms after the start\n", (long long)(h_mono_ms() - t0));
    check_resolved(f, rs);
    await_gauges(f, resolved_by, 0, 1);

    /* a few more evaluations: nothing more is published */
    h_sleep_ms(AFTER_MS);
    for (int i = 0; i < NINST; i++) {
        if (!h_clvd_running(&f->clvd[i]))
            fail_msg("clvd #%d exited (wait status 0x%x)", i, f->clvd[i].status);
        if (h_clvd_stop(&f->clvd[i], STOP_TIMEOUT_MS, err, sizeof(err)) != 0)
            fail_msg("clvd #%d SIGTERM: %s", i, err);
    }
    read_alerts(f, 2 * NRULES, ALERT_TIMEOUT_MS, rs);
    check_resolved(f, rs);
    for (int r = 0; r < NRULES; r++)
        for (int k = 0; k < 2; k++) {
            char line[64];
            int by = k == 0 ? firing_by : resolved_by;
            snprintf(line, sizeof(line), "alert %s %s", rules[r].name,
                     k == 0 ? "firing" : "resolved");
            if (h_file_count(f->clvd[by].log, line) != 1 ||
                h_file_count(f->clvd[1 - by].log, line) != 0)
                fail_msg("\"%s\" logged %d time(s) by clvd #%d, %d by the other; want 1, 0", line,
                         h_file_count(f->clvd[by].log, line), by,
                         h_file_count(f->clvd[1 - by].log, line));
        }
}

static void test_alerts_two_instances(void **state)
{
    struct fixture *f = *state;
    struct h_records rs = {0};
    int leader;
    int64_t t0 = h_mono_ms();

    start_instances(f, "alerts");
    leader = run_phase1(f, &rs, t0);
    await_gauges(f, leader, 1, 0);
    run_phase2(f, &rs, t0, leader, leader);
    if (evaluator(f) != leader)
        fail_msg("the evaluator changed");
    h_records_free(&rs);
    print_message("%lld ms in all\n", (long long)(h_mono_ms() - t0));
    f->passed = 1;
}

/* The instance id clvd #i registered in the group clock (<prefix>{clock}:exp
 * holds "<host>:<pid>:<hex>" of every instance with partitions). */
static void instance_id(struct fixture *f, int i, char *out, size_t outlen)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectUnixWithTimeout(f->w.redis.socket, tv);
    redisReply *r;
    char needle[32];

    out[0] = '\0';
    if (c == NULL || c->err)
        fail_msg("redis: %s", c ? c->errstr : "out of memory");
    snprintf(needle, sizeof(needle), ":%d:", (int)f->clvd[i].pid);
    r = redisCommand(c, "HKEYS clv:{clock}:exp");
    for (size_t k = 0; r != NULL && r->type == REDIS_REPLY_ARRAY && k < r->elements; k++)
        if (r->element[k]->type == REDIS_REPLY_STRING && strstr(r->element[k]->str, needle))
            snprintf(out, outlen, "%s", r->element[k]->str);
    if (r != NULL)
        freeReplyObject(r);
    redisFree(c);
    if (out[0] == '\0')
        fail_msg("clvd #%d (pid %d) is not in clv:{clock}:exp", i, (int)f->clvd[i].pid);
}

/* The evaluator lease moves while a rule is firing, as when the evaluator
 * stalls past the lease (15 s) and the other instance takes over: the new
 * evaluator carries on from the state in Redis (no second `firing`; the
 * `resolved` has seq 2), and the gauges follow: the new evaluator shows 1,
 * and after `resolved` no instance shows 1. */
static void test_alerts_lease_handover(void **state)
{
    struct fixture *f = *state;
    struct h_records rs = {0};
    char id[128], cmd[256], err[H_ERRLEN];
    int old, next;
    int64_t t0 = h_mono_ms();

    start_instances(f, "handover");
    old = run_phase1(f, &rs, t0);
    next = 1 - old;
    await_gauges(f, old, 1, 0);

    /* the lease, as if it had expired and the other instance had taken it */
    instance_id(f, next, id, sizeof(id));
    snprintf(cmd, sizeof(cmd), "SET clv:alerts:lease %s PX 15000", id);
    if (h_redis_command(&f->w.redis, cmd, NULL, 0, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    if (h_clvd_wait_log(&f->clvd[next], "alerts: this instance is now the evaluator", 15000) != 0 ||
        h_clvd_wait_log(&f->clvd[old], "alerts: this instance is no longer the evaluator", 15000) !=
            0)
        fail_msg("the evaluator lease did not move from clvd #%d to clvd #%d", old, next);
    print_message("evaluator lease moved from clvd #%d to #%d\n", old, next);
    await_gauges(f, next, 1, 0);

    run_phase2(f, &rs, t0, old, next);
    h_records_free(&rs);
    print_message("%lld ms in all\n", (long long)(h_mono_ms() - t0));
    f->passed = 1;
}

static void test_alerts_clock_one_partition(void **state)
{
    struct fixture *f = *state;
    struct h_records rs = {0};
    const struct h_record *m[8];
    int64_t t0 = h_mono_ms();
    char err[H_ERRLEN];

    start_instances(f, "onepart");
    produce_phase1(f, 1);
    /* 10 of 11 churned once the clock passes 06-30 10:00 */
    read_alerts(f, NRULES, ALERT_TIMEOUT_MS, &rs);
    print_message("both rules fired %lld ms after the start\n", (long long)(h_mono_ms() - t0));
    for (int r = 0; r < NRULES; r++)
        if (of_rule(&rs, rules[r].name, m, 8) != 1) {
            h_records_dump(&rs, stderr);
            fail_msg("want one message of %s", rules[r].name);
        }
    of_rule(&rs, rules[0].name, m, 8);
    check_alert(m[0], &rules[0], 1, 0.3, (double)NSILENT / (NSILENT + 1), h_ts(CHURN_AT),
                h_ts(PHASE1_END));
    for (int i = 0; i < NINST; i++)
        if (h_clvd_stop(&f->clvd[i], STOP_TIMEOUT_MS, err, sizeof(err)) != 0)
            fail_msg("clvd #%d SIGTERM: %s", i, err);
    h_records_free(&rs);
    f->passed = 1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_alerts_two_instances, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alerts_lease_handover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alerts_clock_one_partition, setup, teardown),
    };
    const char *filter = getenv("CLVD_IT_FILTER");

    if (filter != NULL && *filter != '\0')
        cmocka_set_test_filter(filter);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
