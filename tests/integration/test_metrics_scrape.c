/* test_metrics_scrape.c -- the Prometheus endpoint of a running clvd against
 * a known input (SPEC sections 10 and 12; docs/operations.md section 5).
 *
 * One clvd (event clock) with metrics.listen on a free loopback port reads a
 * scripted workload of 200 customers in three phases, produced while it runs:
 *
 *   phase 1 (2025-03-01..02)  A c000-c049 visit; B c050-c099 visit, buy;
 *                             C c100-c149 buy; D c150-c198 log in; the
 *                             ticker visits; plus 15 duplicates (same
 *                             event_id again) and 6 rejected messages
 *   phase 2 (03-05..08)       C buy again; D buy and log in; 4 duplicates,
 *                             2 rejected
 *   phase 3 (03-21..06-01)    the ticker alone visits every 20 days, moving
 *                             the event clock past everyone's deadlines
 *
 * After each phase /metrics is scraped until it shows the phase's figures
 * (every scrape on the way, mid-stream, must be a valid exposition whose
 * counters never go down), then every figure is asserted exactly: consumed
 * per topic, applied, duplicates, rejected per reason, every transition
 * series from/to, customers per stage (summing to the customers seen), tier
 * changes, and at the end the output counters against what was read from the
 * output topics, lag, held events, watermark.  /healthz answers 200 while it
 * runs.  promtool check metrics is run on the last page when it is on PATH.
 *
 * The transitions (lifecycle defaults, SPEC section 5):
 *   A  none->prospect (03-01), prospect->dormant (04-30, 60 d inactive)
 *   B  none->prospect, prospect->new (03-02), new->at_risk (04-01, one
 *      purchase day: 30 d), at_risk->dormant (05-01)
 *   C  none->new (03-01), new->active (03-05), active->at_risk (03-19: gap 4 d
 *      -> max(14, 8) d), at_risk->dormant (05-04)
 *   D  none->prospect (03-01), prospect->new (03-06), new->at_risk (04-05),
 *      at_risk->dormant (05-07, 60 d after the login of 03-08)
 *   ticker  none->prospect; active every 20 days, never dormant.
 *
 * Environment: see harness.h (CLVD_IT_KEEP, CLVD_IT_VERBOSE). */
#define _GNU_SOURCE /* vasprintf, open_memstream */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "promtext.h"

#ifndef CLVD_BINARY
#error "CLVD_BINARY (path of the clvd executable) must be defined"
#endif

#define PHASE_TIMEOUT_MS 45000 /* customers per stage are re-read every 5 s */
#define SCRAPE_EVERY_MS 200
#define STOP_TIMEOUT_MS 10000
#define IN_PARTS 3

#define NA 50 /* c000-c049 */
#define NB 50 /* c050-c099 */
#define NC 50 /* c100-c149 */
#define ND 49 /* c150-c198 */
#define NCUST (NA + NB + NC + ND + 1)
#define DUP_A 10 /* A's visits sent twice */
#define DUP_B 5  /* B's purchases sent twice */
#define DUP_D 4  /* D's logins sent twice */

static const char *const stages[] = {"prospect", "new",     "active",  "loyal",
                                     "at_risk",  "dormant", "churned", "reactivated"};
#define NSTAGES 8
enum { S_PROSPECT, S_NEW, S_ACTIVE, S_LOYAL, S_AT_RISK, S_DORMANT, S_CHURNED, S_REACTIVATED };
#define S_NONE NSTAGES /* row of a customer's first transition */

/* ---- what the metrics must say ------------------------------------------------------ */

struct figures {
    double consumed[3]; /* purchases, logins, visits */
    double applied, duplicates;
    int nrejected;
    struct {
        const char *reason;
        double n;
    } rejected[8];
    double transitions[NSTAGES + 1][NSTAGES]; /* [from or S_NONE][to] */
    double customers[NSTAGES];
};

static const char *const in_topics[3] = {H_T_PURCHASES, H_T_LOGINS, H_T_VISITS};

static void add_rejected(struct figures *x, const char *reason, int n)
{
    for (int i = 0; i < x->nrejected; i++)
        if (strcmp(x->rejected[i].reason, reason) == 0) {
            x->rejected[i].n += n;
            return;
        }
    assert_true(x->nrejected < 8);
    x->rejected[x->nrejected].reason = reason;
    x->rejected[x->nrejected++].n = n;
}

static void after_phase1(struct figures *x)
{
    memset(x, 0, sizeof(*x));
    x->consumed[0] = NB + NC + DUP_B + 1;     /* + negative_amount */
    x->consumed[1] = ND + 2;                  /* + 2 missing_field:customer_id */
    x->consumed[2] = NA + NB + 1 + DUP_A + 3; /* + ticker + 3 invalid_json */
    x->applied = NA + NB + 1 + ND + NB + NC;
    x->duplicates = DUP_A + DUP_B;
    add_rejected(x, "invalid_json", 3);
    add_rejected(x, "missing_field:customer_id", 2);
    add_rejected(x, "negative_amount", 1);
    x->transitions[S_NONE][S_PROSPECT] = NA + NB + ND + 1;
    x->transitions[S_NONE][S_NEW] = NC;
    x->transitions[S_PROSPECT][S_NEW] = NB;
    x->customers[S_PROSPECT] = NA + ND + 1;
    x->customers[S_NEW] = NB + NC;
}

static void after_phase2(struct figures *x)
{
    after_phase1(x);
    x->consumed[0] += NC + ND;
    x->consumed[1] += ND + DUP_D + 2; /* + 2 bad_timestamp */
    x->applied += NC + ND + ND;
    x->duplicates += DUP_D;
    add_rejected(x, "bad_timestamp", 2);
    x->transitions[S_NEW][S_ACTIVE] = NC;
    x->transitions[S_PROSPECT][S_NEW] += ND;
    x->customers[S_PROSPECT] = NA + 1;
    x->customers[S_NEW] = NB + ND;
    x->customers[S_ACTIVE] = NC;
}

#define TICKER_LATER 5 /* phase 3 visits */

static void after_phase3(struct figures *x)
{
    after_phase2(x);
    x->consumed[2] += TICKER_LATER;
    x->applied += TICKER_LATER;
    x->transitions[S_PROSPECT][S_DORMANT] = NA;
    x->transitions[S_NEW][S_AT_RISK] = NB + ND;
    x->transitions[S_ACTIVE][S_AT_RISK] = NC;
    x->transitions[S_AT_RISK][S_DORMANT] = NB + NC + ND;
    memset(x->customers, 0, sizeof(x->customers));
    x->customers[S_PROSPECT] = 1;
    x->customers[S_DORMANT] = NA + NB + NC + ND;
}

static double total_customers(const struct figures *x)
{
    double n = 0;

    for (int s = 0; s < NSTAGES; s++)
        n += x->customers[s];
    return n;
}

static double total_transitions(const struct figures *x)
{
    double n = 0;

    for (int f = 0; f <= NSTAGES; f++)
        for (int t = 0; t < NSTAGES; t++)
            n += x->transitions[f][t];
    return n;
}

static double transitions_to(const struct figures *x, int to)
{
    double n = 0;

    for (int f = 0; f <= NSTAGES; f++)
        n += x->transitions[f][to];
    return n;
}

static int stage_index(const char *name)
{
    if (name == NULL)
        return -1;
    for (int s = 0; s < NSTAGES; s++)
        if (strcmp(stages[s], name) == 0)
            return s;
    return strcmp(name, "none") == 0 ? S_NONE : -1;
}

/* Compare the page with the figures; problems are written to `log`.
 * Returns the number of problems. */
static int compare(const struct prom_page *p, const struct figures *x, FILE *log)
{
    char labels[256], a[64], b[64];
    int problems = 0;
    double v;

#define PROBLEM(...)                                                                               \
    do {                                                                                           \
        fprintf(log, "  ");                                                                        \
        fprintf(log, __VA_ARGS__);                                                                 \
        fputc('\n', log);                                                                          \
        problems++;                                                                                \
    } while (0)
    for (int t = 0; t < 3; t++) {
        snprintf(labels, sizeof(labels), "topic=\"%s\"", in_topics[t]);
        if (!prom_get(p, "clvd_messages_consumed_total", labels, &v))
            PROBLEM("clvd_messages_consumed_total{%s} missing", labels);
        else if (v != x->consumed[t])
            PROBLEM("clvd_messages_consumed_total{%s} = %g, want %g", labels, v, x->consumed[t]);
    }
    if (prom_count(p, "clvd_messages_consumed_total") != 3)
        PROBLEM("clvd_messages_consumed_total has %zu series, want 3 (one per input topic)",
                prom_count(p, "clvd_messages_consumed_total"));
    if (!prom_get(p, "clvd_events_applied_total", "", &v) || v != x->applied)
        PROBLEM("clvd_events_applied_total = %g, want %g", v, x->applied);
    if (!prom_get(p, "clvd_events_duplicate_total", "", &v) || v != x->duplicates)
        PROBLEM("clvd_events_duplicate_total = %g, want %g", v, x->duplicates);

    /* rejected: exactly the expected reasons */
    for (int i = 0; i < x->nrejected; i++) {
        snprintf(labels, sizeof(labels), "reason=\"%s\"", x->rejected[i].reason);
        if (!prom_get(p, "clvd_messages_rejected_total", labels, &v))
            PROBLEM("clvd_messages_rejected_total{%s} missing", labels);
        else if (v != x->rejected[i].n)
            PROBLEM("clvd_messages_rejected_total{%s} = %g, want %g", labels, v, x->rejected[i].n);
    }
    for (size_t i = 0; i < p->n; i++) {
        int known = 0;
        if (strcmp(p->s[i].name, "clvd_messages_rejected_total") != 0)
            continue;
        for (int k = 0; k < x->nrejected; k++) {
            snprintf(labels, sizeof(labels), "reason=\"%s\"", x->rejected[k].reason);
            known |= strcmp(labels, p->s[i].labels) == 0;
        }
        if (!known)
            PROBLEM("unexpected clvd_messages_rejected_total{%s} = %g", p->s[i].labels,
                    p->s[i].value);
    }

    /* transitions: every series present matches; every expected one present */
    for (size_t i = 0; i < p->n; i++) {
        int f, t;
        if (strcmp(p->s[i].name, "clvd_transitions_total") != 0)
            continue;
        if (prom_label(p->s[i].labels, "from", a, sizeof(a)) != 0 ||
            prom_label(p->s[i].labels, "to", b, sizeof(b)) != 0 || (f = stage_index(a)) < 0 ||
            (t = stage_index(b)) < 0 || t == S_NONE) {
            PROBLEM("clvd_transitions_total{%s}: unknown labels", p->s[i].labels);
            continue;
        }
        if (p->s[i].value != x->transitions[f][t])
            PROBLEM("clvd_transitions_total{%s} = %g, want %g", p->s[i].labels, p->s[i].value,
                    x->transitions[f][t]);
    }
    for (int f = 0; f <= NSTAGES; f++)
        for (int t = 0; t < NSTAGES; t++) {
            if (x->transitions[f][t] == 0)
                continue;
            snprintf(labels, sizeof(labels), "from=\"%s\",to=\"%s\"",
                     f == S_NONE ? "none" : stages[f], stages[t]);
            if (!prom_get(p, "clvd_transitions_total", labels, NULL))
                PROBLEM("clvd_transitions_total{%s} missing (want %g)", labels,
                        x->transitions[f][t]);
        }

    /* customers per stage: all eight, summing to the customers seen */
    for (int s = 0; s < NSTAGES; s++) {
        snprintf(labels, sizeof(labels), "stage=\"%s\"", stages[s]);
        if (!prom_get(p, "clvd_customers", labels, &v))
            PROBLEM("clvd_customers{%s} missing", labels);
        else if (v != x->customers[s])
            PROBLEM("clvd_customers{%s} = %g, want %g", labels, v, x->customers[s]);
    }
    if (prom_count(p, "clvd_customers") != NSTAGES)
        PROBLEM("clvd_customers has %zu series, want %d", prom_count(p, "clvd_customers"), NSTAGES);
    if (prom_sum(p, "clvd_customers") != total_customers(x))
        PROBLEM("clvd_customers sums to %g, want %g", prom_sum(p, "clvd_customers"),
                total_customers(x));
    if (!prom_get(p, "clvd_tier_changes_total", "", &v) || v != 0)
        PROBLEM("clvd_tier_changes_total = %g, want 0 (no spend reaches silver)", v);
    if (!prom_get(p, "clvd_ready", "", &v) || v != 1)
        PROBLEM("clvd_ready = %g, want 1", v);
    if (!prom_get(p, "clvd_redis_up", "", &v) || v != 1)
        PROBLEM("clvd_redis_up = %g, want 1", v);
    /* Redis never went away: the first connections (main thread and
     * workers) are not reconnects */
    if (!prom_get(p, "clvd_redis_reconnects_total", "", &v) || v != 0)
        PROBLEM("clvd_redis_reconnects_total = %g, want 0", v);
    if (!prom_get(p, "clvd_kafka_assigned_partitions", "", &v) || v != 3 * IN_PARTS)
        PROBLEM("clvd_kafka_assigned_partitions = %g, want %d", v, 3 * IN_PARTS);
#undef PROBLEM
    return problems;
}

/* Counters never go down between two scrapes of one process. */
static void check_monotonic(const struct prom_page *prev, const struct prom_page *cur)
{
    for (size_t i = 0; i < prev->n; i++) {
        const struct prom_sample *s = &prev->s[i];
        double v;
        int is_count = strcmp(s->type, "counter") == 0 ||
                       (strcmp(s->type, "histogram") == 0 && strstr(s->name, "_sum") == NULL);
        if (!is_count)
            continue;
        if (!prom_get(cur, s->name, s->labels, &v))
            fail_msg("%s{%s} disappeared between two scrapes", s->name, s->labels);
        if (v < s->value)
            fail_msg("counter %s{%s} went down between two scrapes: %g -> %g", s->name, s->labels,
                     s->value, v);
    }
}

/* ---- fixture --------------------------------------------------------------- */

struct fixture {
    struct h_world w; /* dir, redis, kafka */
    struct h_clvd clvd;
    int port;
    int scrapes;
    struct prom_page last; /* the latest valid scrape */
    char *last_text;
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
    if (!f->passed && f->clvd.log[0] != '\0')
        h_dump_file(f->clvd.log, "clvd log", 32 * 1024, stderr);
    h_clvd_kill9(&f->clvd);
    h_world_stop(&f->w);
    prom_page_free(&f->last);
    free(f->last_text);
    free(f);
    return 0;
}

/* One scrape: valid, counters monotonic against the previous one; kept as
 * f->last. */
static void scrape(struct fixture *f)
{
    struct prom_page p;
    char err[24 * 1024], *text = NULL;

    if (prom_scrape(f->port, &p, &text, err, sizeof(err)) != 0) {
        if (!h_clvd_running(&f->clvd))
            fail_msg("clvd is not running (wait status 0x%x); last error: %s", f->clvd.status, err);
        fail_msg("scrape %d: %s", f->scrapes + 1, err);
    }
    f->scrapes++;
    check_monotonic(&f->last, &p);
    prom_page_free(&f->last);
    free(f->last_text);
    f->last = p;
    f->last_text = text;
}

static void expect_healthz(struct fixture *f, int want)
{
    struct prom_reply r;
    char err[H_ERRLEN];

    if (prom_http_get(f->port, "/healthz", &r, err, sizeof(err)) != 0)
        fail_msg("/healthz: %s", err);
    if (r.status != want) {
        int got = r.status;
        char body[256];
        snprintf(body, sizeof(body), "%s", r.body ? r.body : "");
        prom_reply_free(&r);
        fail_msg("/healthz answered %d \"%s\", want %d", got, body, want);
    }
    prom_reply_free(&r);
}

/* Scrape until the page shows `x` (or the time is up: then fail, listing
 * the differences). */
static void await_figures(struct fixture *f, const struct figures *x, const char *phase)
{
    int64_t deadline = h_mono_ms() + PHASE_TIMEOUT_MS, t0 = h_mono_ms();
    int first = f->scrapes;

    for (;;) {
        char *text = NULL;
        size_t len = 0;
        FILE *log = open_memstream(&text, &len);
        int problems;

        assert_non_null(log);
        scrape(f);
        problems = compare(&f->last, x, log);
        fclose(log);
        if (problems == 0) {
            print_message("%s: figures reached after %lld ms, %d scrape(s)\n", phase,
                          (long long)(h_mono_ms() - t0), f->scrapes - first);
            free(text);
            return;
        }
        if (h_mono_ms() >= deadline) {
            fprintf(stderr, "==== last /metrics page:\n%s==== end of page\n", f->last_text);
            fprintf(stderr, "%s: %d problem(s) after %d ms:\n%s", phase, problems, PHASE_TIMEOUT_MS,
                    text);
            free(text);
            fail_msg("%s: /metrics does not show the expected figures (see above)", phase);
        }
        free(text);
        h_sleep_ms(SCRAPE_EVERY_MS);
    }
}

/* ---- the workload ------------------------------------------------------------ */

static void send_msg(struct fixture *f, const char *topic, int partition, const char *key,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void send_msg(struct fixture *f, const char *topic, int partition, const char *key,
                     const char *fmt, ...)
{
    char *value = NULL, err[H_ERRLEN];
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = vasprintf(&value, fmt, ap);
    va_end(ap);
    assert_true(rc >= 0);
    rc =
        h_produce_async(&f->w.kafka, topic, partition, key, value, strlen(value), err, sizeof(err));
    free(value);
    if (rc != 0)
        fail_msg("%s", err);
}

static void flush_input(struct fixture *f)
{
    char err[H_ERRLEN];

    if (h_produce_wait(&f->w.kafka, 30000, err, sizeof(err)) != 0)
        fail_msg("producing the input: %s", err);
}

/* An event of customer i (c%03d, partition i % 3). */
static void event(struct fixture *f, const char *topic, int i, const char *tag, const char *ts)
{
    char cid[16];

    snprintf(cid, sizeof(cid), "c%03d", i);
    if (strcmp(topic, H_T_PURCHASES) == 0)
        send_msg(f, topic, i % IN_PARTS, cid,
                 "{\"event_id\":\"%s-%s\",\"customer_id\":\"%s\",\"ts\":\"%s\",\"amount\":20}", cid,
                 tag, cid, ts);
    else
        send_msg(f, topic, i % IN_PARTS, cid,
                 "{\"event_id\":\"%s-%s\",\"customer_id\":\"%s\",\"ts\":\"%s\"}", cid, tag, cid,
                 ts);
}

static void ticker(struct fixture *f, const char *ts)
{
    send_msg(f, H_T_VISITS, 2, "ticker",
             "{\"event_id\":\"ticker-%s\",\"customer_id\":\"ticker\",\"ts\":\"%s\"}", ts, ts);
}

static void produce_phase1(struct fixture *f)
{
    const int a = 0, b = NA, c = NA + NB, d = NA + NB + NC;

    ticker(f, "2025-03-01T00:00:00Z");
    for (int i = 0; i < NA; i++)
        event(f, H_T_VISITS, a + i, "v1", "2025-03-01T10:00:00Z");
    for (int i = 0; i < NB; i++) {
        event(f, H_T_VISITS, b + i, "v1", "2025-03-01T10:00:00Z");
        event(f, H_T_PURCHASES, b + i, "p1", "2025-03-02T10:00:00Z");
    }
    for (int i = 0; i < NC; i++)
        event(f, H_T_PURCHASES, c + i, "p1", "2025-03-01T10:00:00Z");
    for (int i = 0; i < ND; i++)
        event(f, H_T_LOGINS, d + i, "l1", "2025-03-01T10:00:00Z");
    /* the same messages again (same event_id, same content, later offsets) */
    for (int i = 0; i < DUP_A; i++)
        event(f, H_T_VISITS, a + i, "v1", "2025-03-01T10:00:00Z");
    for (int i = 0; i < DUP_B; i++)
        event(f, H_T_PURCHASES, b + i, "p1", "2025-03-02T10:00:00Z");
    /* rejected */
    for (int i = 0; i < 3; i++)
        send_msg(f, H_T_VISITS, i, "bad", "{\"event_id\":\"bad-json-%d\",\"customer_id\":", i);
    send_msg(f, H_T_LOGINS, 0, "bad", "{\"event_id\":\"nocid-1\",\"ts\":\"2025-03-01T12:00:00Z\"}");
    send_msg(f, H_T_LOGINS, 1, NULL, "{\"event_id\":\"nocid-2\",\"ts\":1740830400000}");
    send_msg(f, H_T_PURCHASES, 2, "neg",
             "{\"event_id\":\"neg-1\",\"customer_id\":\"neg\",\"ts\":\"2025-03-01T12:00:00Z\","
             "\"amount\":-5}");
    flush_input(f);
}

static void produce_phase2(struct fixture *f)
{
    const int c = NA + NB, d = NA + NB + NC;

    for (int i = 0; i < NC; i++)
        event(f, H_T_PURCHASES, c + i, "p2", "2025-03-05T10:00:00Z");
    for (int i = 0; i < ND; i++) {
        event(f, H_T_PURCHASES, d + i, "p1", "2025-03-06T10:00:00Z");
        event(f, H_T_LOGINS, d + i, "l2", "2025-03-08T10:00:00Z");
    }
    for (int i = 0; i < DUP_D; i++)
        event(f, H_T_LOGINS, d + i, "l2", "2025-03-08T10:00:00Z");
    send_msg(
        f, H_T_LOGINS, 2, "badts",
        "{\"event_id\":\"badts-1\",\"customer_id\":\"badts\",\"ts\":\"2025-13-45T99:00:00Z\"}");
    send_msg(f, H_T_LOGINS, 0, "badts",
             "{\"event_id\":\"badts-2\",\"customer_id\":\"badts\",\"ts\":\"yesterday\"}");
    flush_input(f);
}

static void produce_phase3(struct fixture *f)
{
    static const char *const later[TICKER_LATER] = {"2025-03-21T00:00:00Z", "2025-04-10T00:00:00Z",
                                                    "2025-04-30T00:00:00Z", "2025-05-20T00:00:00Z",
                                                    "2025-06-01T00:00:00Z"};

    for (int i = 0; i < TICKER_LATER; i++)
        ticker(f, later[i]);
    flush_input(f);
}

/* ---- the outputs against the counters ------------------------------------------- */

static void check_outputs(struct fixture *f, const struct figures *x)
{
    static const char *const out_topics[] = {H_T_STAGE, H_T_CHURN,  H_T_WINBACK,
                                             H_T_TIER,  H_T_ALERTS, H_T_DEAD};
    double tr[NSTAGES + 1][NSTAGES];
    size_t want = (size_t)(total_transitions(x) + transitions_to(x, S_AT_RISK) +
                           (NB + NC + ND) /* win-back "dormant": buyers only */);
    struct h_records rs = {0};
    char err[H_ERRLEN], labels[256];
    int problems = 0;
    double v, rejected = 0;

    for (int i = 0; i < x->nrejected; i++)
        rejected += x->rejected[i].n;
    want += (size_t)rejected;
    if (h_consume(f->w.kafka.bootstraps, h_output_topics, want, 1000, 60000, &rs, err,
                  sizeof(err)) != 0)
        fprintf(stderr, "[warning] reading the outputs: %s\n", err);
    memset(tr, 0, sizeof(tr));
    for (size_t i = 0; i < rs.n; i++) {
        const json_t *j = rs.r[i].json;
        int fi, ti;
        if (strcmp(rs.r[i].topic, H_T_STAGE) != 0)
            continue;
        fi = h_json_is_null(j, "from") ? S_NONE : stage_index(h_json_str(j, "from"));
        ti = stage_index(h_json_str(j, "to"));
        if (fi < 0 || ti < 0 || ti == S_NONE) {
            fprintf(stderr, "bad stage change: %s\n", rs.r[i].value);
            problems++;
            continue;
        }
        tr[fi][ti]++;
    }
    /* the transitions published, by from and to, are the counted ones */
    for (int fr = 0; fr <= NSTAGES; fr++)
        for (int t = 0; t < NSTAGES; t++) {
            snprintf(labels, sizeof(labels), "from=\"%s\",to=\"%s\"",
                     fr == S_NONE ? "none" : stages[fr], stages[t]);
            if (!prom_get(&f->last, "clvd_transitions_total", labels, &v))
                v = 0;
            if (tr[fr][t] != v || tr[fr][t] != x->transitions[fr][t]) {
                fprintf(stderr, "  %s -> %s: %g published, %g counted, %g expected\n",
                        fr == S_NONE ? "none" : stages[fr], stages[t], tr[fr][t], v,
                        x->transitions[fr][t]);
                problems++;
            }
        }
    /* delivered per output topic = messages on the topic; nothing failed */
    for (size_t t = 0; t < sizeof(out_topics) / sizeof(out_topics[0]); t++) {
        size_t n = h_records_count(&rs, out_topics[t]);
        snprintf(labels, sizeof(labels), "topic=\"%s\"", out_topics[t]);
        if (!prom_get(&f->last, "clvd_outputs_delivered_total", labels, &v) || v != (double)n) {
            fprintf(stderr, "  clvd_outputs_delivered_total{%s} = %g, %zu on the topic\n", labels,
                    v, n);
            problems++;
        }
        if (!prom_get(&f->last, "clvd_outputs_failed_total", labels, &v) || v != 0) {
            fprintf(stderr, "  clvd_outputs_failed_total{%s} = %g, want 0\n", labels, v);
            problems++;
        }
    }
    if (h_records_count(&rs, H_T_DEAD) != (size_t)rejected) {
        fprintf(stderr, "  %zu dead letters, want %g\n", h_records_count(&rs, H_T_DEAD), rejected);
        problems++;
    }
    if (h_records_count(&rs, H_T_CHURN) != (size_t)transitions_to(x, S_AT_RISK) ||
        h_records_count(&rs, H_T_WINBACK) != (size_t)(NB + NC + ND) ||
        h_records_count(&rs, H_T_TIER) != 0 || h_records_count(&rs, H_T_ALERTS) != 0) {
        fprintf(stderr,
                "  churn warnings %zu (want %g), win-back %zu (want %d), tier %zu, alerts %zu\n",
                h_records_count(&rs, H_T_CHURN), transitions_to(x, S_AT_RISK),
                h_records_count(&rs, H_T_WINBACK), NB + NC + ND, h_records_count(&rs, H_T_TIER),
                h_records_count(&rs, H_T_ALERTS));
        problems++;
    }
    /* the processing-latency histogram saw every delivered customer output */
    if (!prom_get(&f->last, "clvd_processing_latency_seconds_count", "", &v) || v <= 0) {
        fprintf(stderr, "  clvd_processing_latency_seconds_count = %g, want > 0\n", v);
        problems++;
    }
    if (problems > 0) {
        h_records_dump(&rs, stderr);
        fprintf(stderr, "==== last /metrics page:\n%s==== end of page\n", f->last_text);
    }
    h_records_free(&rs);
    if (problems > 0)
        fail_msg("%d problem(s) between the outputs and the counters (see above)", problems);
}

/* Every customer update started from a state: read with GET or taken from
 * a worker's cache.  Each customer's first one is a GET (nothing cached
 * yet), and the later phases update customers the earlier ones wrote, on
 * the same connection, so some come from the cache. */
static void check_state_reads(const struct prom_page *p, const struct figures *x)
{
    double reads, hits, updates;

    if (!prom_get(p, "clvd_state_reads_total", "", &reads) ||
        !prom_get(p, "clvd_state_cache_hits_total", "", &hits) ||
        !prom_get(p, "clvd_customer_updates_total", "", &updates))
        fail_msg("clvd_state_reads_total, clvd_state_cache_hits_total or "
                 "clvd_customer_updates_total missing");
    if (reads + hits < updates)
        fail_msg("state reads %g + cache hits %g < customer updates %g", reads, hits, updates);
    if (reads < total_customers(x))
        fail_msg("state reads %g < customers %g: a first update without a GET", reads,
                 total_customers(x));
    if (hits == 0)
        fail_msg("no state came from the cache although customers were updated again");
}

static void check_idle_figures(struct fixture *f, const struct figures *x)
{
    double v;

    /* all consumed: no lag on any partition, nothing held */
    for (size_t i = 0; i < f->last.n; i++)
        if (strcmp(f->last.s[i].name, "clvd_consumer_lag_messages") == 0 && f->last.s[i].value != 0)
            fail_msg("clvd_consumer_lag_messages{%s} = %g after everything was applied",
                     f->last.s[i].labels, f->last.s[i].value);
    if (!prom_get(&f->last, "clvd_held_events", "", &v) || v != 0)
        fail_msg("clvd_held_events = %g after everything was applied", v);
    /* the event clock is the last event time (every partition idle) */
    if (!prom_get(&f->last, "clvd_event_clock_watermark_seconds", "", &v) ||
        v < (double)(h_ts("2025-06-01T00:00:00Z") - 1000) / 1000.0 ||
        v > (double)h_ts("2025-06-01T00:00:00Z") / 1000.0)
        fail_msg("clvd_event_clock_watermark_seconds = %.3f, want the last event time %.3f", v,
                 (double)h_ts("2025-06-01T00:00:00Z") / 1000.0);
    if (prom_count(&f->last, "clvd_build_info") != 1 || prom_sum(&f->last, "clvd_build_info") != 1)
        fail_msg("clvd_build_info: want one series of value 1");
    check_state_reads(&f->last, x);
}

/* ---- the test ------------------------------------------------------------------ */

static void test_metrics_scrape(void **state)
{
    struct fixture *f = *state;
    struct h_config cfg;
    struct figures x;
    char cfgpath[H_PATHLEN + 32], logpath[H_PATHLEN + 32], listen[64], group[64], err[8192];
    int64_t t0;
    int rc;

    f->port = prom_free_port();
    assert_true(f->port > 0);
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", f->port);
    snprintf(cfgpath, sizeof(cfgpath), "%s/clvd.yaml", f->w.dir);
    snprintf(logpath, sizeof(logpath), "%s/clvd.log", f->w.dir);
    snprintf(group, sizeof(group), "clvd-it-metrics-%d", (int)getpid());
    assert_int_equal(h_config_init(&cfg, f->w.kafka.bootstraps, group, f->w.redis.socket), 0);
    assert_int_equal(h_config_set_str(&cfg, "metrics.listen", listen), 0);
    rc = h_config_write(&cfg, cfgpath, err, sizeof(err));
    h_config_free(&cfg);
    if (rc != 0)
        fail_msg("%s", err);
    if (h_clvd_start(&f->clvd, CLVD_BINARY, cfgpath, logpath, err, sizeof(err)) != 0)
        fail_msg("%s", err);

    /* /healthz turns 200 once the partitions are assigned */
    t0 = h_mono_ms();
    for (;;) {
        struct prom_reply r;
        int status = 0;
        if (prom_http_get(f->port, "/healthz", &r, err, sizeof(err)) == 0) {
            status = r.status;
            prom_reply_free(&r);
        }
        if (status == 200)
            break;
        if (!h_clvd_running(&f->clvd))
            fail_msg("clvd exited at start (wait status 0x%x)", f->clvd.status);
        if (h_mono_ms() - t0 > 30000)
            fail_msg("/healthz not 200 within 30 s of the start (last: %d %s)", status, err);
        h_sleep_ms(100);
    }
    print_message("/healthz 200 after %lld ms\n", (long long)(h_mono_ms() - t0));
    scrape(f); /* before any input: valid too */

    produce_phase1(f);
    after_phase1(&x);
    await_figures(f, &x, "phase 1");
    expect_healthz(f, 200);

    produce_phase2(f);
    after_phase2(&x);
    await_figures(f, &x, "phase 2");
    expect_healthz(f, 200);

    produce_phase3(f);
    after_phase3(&x);
    assert_int_equal(total_customers(&x), NCUST);
    await_figures(f, &x, "phase 3");
    expect_healthz(f, 200);
    /* a last look a second later: nothing more moves */
    h_sleep_ms(1500);
    scrape(f);
    {
        char *text = NULL;
        size_t len = 0;
        FILE *log = open_memstream(&text, &len);
        int problems;
        assert_non_null(log);
        problems = compare(&f->last, &x, log);
        fclose(log);
        if (problems)
            fprintf(stderr, "%s", text);
        free(text);
        if (problems)
            fail_msg("the figures moved after everything was applied");
    }
    check_idle_figures(f, &x);
    check_outputs(f, &x);

    rc = prom_promtool_check(f->last_text, strlen(f->last_text), err, sizeof(err));
    if (rc < 0)
        fail_msg("%s\n---\n%s", err, f->last_text);
    print_message(rc == 1 ? "promtool not on PATH: format checked by the built-in parser only\n"
                          : "promtool check metrics: OK\n");
    print_message("%d scrapes, all valid\n", f->scrapes);

    if (h_clvd_stop(&f->clvd, STOP_TIMEOUT_MS, err, sizeof(err)) != 0)
        fail_msg("SIGTERM: %s", err);
    f->passed = 1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_metrics_scrape, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
