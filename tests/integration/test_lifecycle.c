/* test_lifecycle.c -- end-to-end lifecycle tests of clvd (SPEC sections 3, 5,
 * 6, 7): a real redis-server, librdkafka's mock cluster, clvd as a child
 * process in event-clock mode.
 *
 * Every test produces all of its input first, then starts clvd with a fresh
 * consumer group on a flushed Redis, reads the output topics from the
 * beginning until the expected number of messages arrived and the topics
 * stayed quiet, stops clvd with SIGTERM (exit 0 within 10 s) and checks every
 * message.  With all input present at start, event-time order is decided by
 * the watermark alone (no late events), and once every partition is idle the
 * watermark reaches the largest event time: deadlines up to the last event
 * fire, later ones do not.
 *
 * Environment: CLVD_IT_FILTER=<glob> runs only the matching tests;
 * CLVD_IT_REDIS_CLUSTER=3 runs them against a Redis Cluster of three masters
 * (ctest: integration_lifecycle_cluster); see harness.h for CLVD_IT_KEEP and
 * CLVD_IT_VERBOSE. */
#define _GNU_SOURCE /* open_memstream */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "harness.h"
#include "keys.h"
#include "lifecycle_support.h"
#include "promtext.h"

/* ---- fixture --------------------------------------------------------------- */

/* The fixture, the clvd runs and the output checks are shared with
 * test_value.c (lifecycle_support.c).  Only these tests also run against a
 * Redis Cluster (CLVD_IT_REDIS_CLUSTER). */
static int group_setup(void **state)
{
    return lc_group_setup(state, h_redis_cluster_env());
}

/* ---- producing events ------------------------------------------------------ */

/* One input event.  `ts` is an RFC 3339 literal or, starting with '#', epoch
 * milliseconds; event ids are derived from the content, so two runs with the
 * same events carry the same ids. */
struct ev {
    const char *topic;
    int partition;
    const char *key; /* NULL: no key */
    const char *customer;
    const char *ts;
    double amount;     /* purchases */
    const char *extra; /* more JSON members, e.g. "\"channel\":\"search\"", or NULL */
};

static void send_event(struct lc_fixture *f, const struct ev *e)
{
    char ts[64], amount[64] = "";

    if (e->ts[0] == '#')
        snprintf(ts, sizeof(ts), "%s", e->ts + 1);
    else
        snprintf(ts, sizeof(ts), "\"%s\"", e->ts);
    if (strcmp(e->topic, H_T_PURCHASES) == 0)
        snprintf(amount, sizeof(amount), ",\"amount\":%.2f", e->amount);
    lc_send_json(f, e->topic, e->partition, e->key,
                 "{\"event_id\":\"%s/%s/%s\",\"customer_id\":\"%s\",\"ts\":%s%s%s%s}", e->customer,
                 e->topic, e->ts[0] == '#' ? e->ts + 1 : e->ts, e->customer, ts, amount,
                 e->extra != NULL ? "," : "", e->extra != NULL ? e->extra : "");
}

/* ---- a. the lifecycle walk -------------------------------------------------- */

static const struct ev lifecycle_events[] = {
    /* In time order; every partition is written in time order too.  The ticker
     * visits every 10 days (epoch-ms timestamps), keeping itself active. */
    {H_T_VISITS, 2, "ticker", "ticker", "#1735689600000", 0, NULL}, /* 2025-01-01T00:00Z */
    {H_T_VISITS, 0, "alice", "alice", "2025-01-01T08:00:00Z", 0, "\"channel\":\"search\""},
    {H_T_PURCHASES, 1, "alice", "alice", "2025-01-02T10:00:00Z", 20, "\"channel\":\"email\""},
    {H_T_VISITS, 1, "carol", "carol", "2025-01-05T09:00:00Z", 0, NULL},
    {H_T_VISITS, 2, "ticker", "ticker", "#1736553600000", 0, NULL}, /* 01-11 */
    {H_T_PURCHASES, 1, "alice", "alice", "2025-01-12T10:00:00.000Z", 30, NULL},
    {H_T_LOGINS, 2, "alice", "alice", "2025-01-20T20:30:00+02:00", 0, NULL}, /* 18:30Z */
    {H_T_VISITS, 2, "ticker", "ticker", "#1737417600000", 0, NULL},          /* 01-21 */
    {H_T_VISITS, 2, "ticker", "ticker", "#1738281600000", 0, NULL},          /* 01-31 */
    {H_T_PURCHASES, 2, "bob", "bob", "2025-02-01T12:00:00Z", 40, NULL},
    {H_T_VISITS, 2, "ticker", "ticker", "#1739145600000", 0, NULL},  /* 02-10 */
    {H_T_VISITS, 2, "ticker", "ticker", "#1740009600000", 0, NULL},  /* 02-20 */
    {H_T_VISITS, 2, "ticker", "ticker", "#1740873600000", 0, NULL},  /* 03-02 */
    {H_T_VISITS, 2, "ticker", "ticker", "#1741737600000", 0, NULL},  /* 03-12 */
    {H_T_VISITS, 2, "ticker", "ticker", "#1742601600000", 0, NULL},  /* 03-22 */
    {H_T_VISITS, 1, NULL, "carol", "2025-04-01T09:00:00Z", 0, NULL}, /* no key */
    {H_T_VISITS, 2, "ticker", "ticker", "#1743465600000", 0, NULL},  /* 04-01 */
    {H_T_VISITS, 2, "ticker", "ticker", "#1744329600000", 0, NULL},  /* 04-11 */
    {H_T_VISITS, 2, "ticker", "ticker", "#1745193600000", 0, NULL},  /* 04-21 */
    {H_T_PURCHASES, 2, "bob", "bob", "2025-05-01T15:00:00Z", 35, NULL},
    {H_T_VISITS, 2, "ticker", "ticker", "#1746057600000", 0, NULL},              /* 05-01 */
    {H_T_PURCHASES, 2, "someone-else", "bob", "2025-05-10T15:00:00Z", 20, NULL}, /* wrong key */
    {H_T_VISITS, 2, "ticker", "ticker", "#1746921600000", 0, NULL},              /* 05-11 */
    {H_T_VISITS, 2, "ticker", "ticker", "#1747785600000", 0, NULL},              /* 05-21 */
    {H_T_VISITS, 2, "ticker", "ticker", "#1748649600000", 0, NULL},              /* 05-31 */
    {H_T_PURCHASES, 0, "dave", "dave", "2025-06-01T14:00:00Z", 20, NULL},
    {H_T_PURCHASES, 0, "dave", "dave", "2025-06-03T14:00:00Z", 20, NULL},
    {H_T_PURCHASES, 0, "dave", "dave", "2025-06-05T14:00:00Z", 20, NULL},
    {H_T_PURCHASES, 0, "dave", "dave", "2025-06-07T14:00:00Z", 20, NULL},
    {H_T_PURCHASES, 0, "dave", "dave", "2025-06-09T14:00:00Z", 20, NULL},
    {H_T_VISITS, 2, "ticker", "ticker", "#1749513600000", 0, NULL}, /* 06-10 */
    {H_T_VISITS, 2, "ticker", "ticker", "#1750377600000", 0, NULL}, /* 06-20 */
    {H_T_VISITS, 2, "ticker", "ticker", "#1751241600000", 0, NULL}, /* 06-30 */
    {H_T_VISITS, 2, "ticker", "ticker", "#1752105600000", 0, NULL}, /* 07-10 */
    {H_T_VISITS, 2, "ticker", "ticker", "#1752969600000", 0, NULL}, /* 07-20 */
    {H_T_VISITS, 2, "ticker", "ticker", "#1753833600000", 0, NULL}, /* 07-30 */
    {H_T_LOGINS, 2, "alice", "alice", "2025-08-01T09:00:00Z", 0, NULL},
    {H_T_PURCHASES, 1, "alice", "alice", "2025-08-05T12:00:00Z", 25, NULL},
    {H_T_VISITS, 2, "ticker", "ticker", "#1754697600000", 0, NULL}, /* 08-09 */
    {H_T_VISITS, 2, "ticker", "ticker", "#1755561600000", 0, NULL}, /* 08-19 */
    {H_T_VISITS, 2, "ticker", "ticker", "#1756425600000", 0, NULL}, /* 08-29 */
    {H_T_VISITS, 2, "ticker", "ticker", "#1756684800000", 0, NULL}, /* 09-01: the end */
};

static void lifecycle_expectations(struct lc_expectations *x)
{
    const int64_t D = H_DAY_MS;
    int64_t a_p2 = h_ts("2025-01-12T10:00:00Z"), a_login = h_ts("2025-01-20T18:30:00Z");
    int64_t b_p1 = h_ts("2025-02-01T12:00:00Z"), b_p3 = h_ts("2025-05-10T15:00:00Z");
    int64_t c_v1 = h_ts("2025-01-05T09:00:00Z"), c_v2 = h_ts("2025-04-01T09:00:00Z");
    int64_t d_p5 = h_ts("2025-06-09T14:00:00Z");
    int first;

    memset(x, 0, sizeof(*x));

    /* alice: purchase days 01-02 and 01-12, mean gap 10 d -> at_risk after
     * max(14, 2 * 10) = 20 d without a purchase.  Dormant and churned count
     * from her last activity, the login of 01-20 18:30Z. */
    first = x->n;
    lc_expect_stage(x, "alice", 1, NULL, "prospect", "first_seen", h_ts("2025-01-01T08:00:00Z"), 0,
                    0);
    lc_expect_stage(x, "alice", 2, "prospect", "new", "first_purchase",
                    h_ts("2025-01-02T10:00:00Z"), 1, 20);
    lc_expect_stage(x, "alice", 3, "new", "active", "repeat_purchase", a_p2, 2, 50);
    lc_expect_stage(x, "alice", 4, "active", "at_risk", "purchase_gap", a_p2 + 20 * D, 2, 50);
    lc_expect_stage(x, "alice", 5, "at_risk", "dormant", "inactive", a_login + 60 * D, 2, 50);
    lc_expect_stage(x, "alice", 6, "dormant", "churned", "inactive", a_login + 180 * D, 2, 50);
    lc_expect_stage(x, "alice", 7, "churned", "at_risk", "returned", h_ts("2025-08-01T09:00:00Z"),
                    2, 50);
    lc_expect_stage(x, "alice", 8, "at_risk", "active", "recovered", h_ts("2025-08-05T12:00:00Z"),
                    3, 75);
    /* Her next deadline, dormant on 10-04, is after the last event. */
    for (int i = first; i < x->n; i++)
        x->e[i].channel = "search"; /* the channel of her first event */

    /* bob: one purchase day -> at_risk after 30 d; won back; then purchase
     * days 02-01, 05-01, 05-10 (mean gap 49 d, at_risk after 98 d) but
     * dormant comes first, 60 d after 05-10.  Churned (11-06) is too late. */
    lc_expect_stage(x, "bob", 1, NULL, "new", "first_purchase", b_p1, 1, 40);
    lc_expect_stage(x, "bob", 2, "new", "at_risk", "purchase_gap", b_p1 + 30 * D, 1, 40);
    lc_expect_stage(x, "bob", 3, "at_risk", "dormant", "inactive", b_p1 + 60 * D, 1, 40);
    lc_expect_stage(x, "bob", 4, "dormant", "reactivated", "won_back", h_ts("2025-05-01T15:00:00Z"),
                    2, 75);
    lc_expect_stage(x, "bob", 5, "reactivated", "active", "repeat_purchase", b_p3, 3, 95);
    lc_expect_stage(x, "bob", 6, "active", "dormant", "inactive", b_p3 + 60 * D, 3, 95);

    /* carol never buys: no churn warnings and no win-back triggers. */
    lc_expect_stage(x, "carol", 1, NULL, "prospect", "first_seen", c_v1, 0, 0);
    lc_expect_stage(x, "carol", 2, "prospect", "dormant", "inactive", c_v1 + 60 * D, 0, 0);
    lc_expect_stage(x, "carol", 3, "dormant", "prospect", "returned", c_v2, 0, 0);
    lc_expect_stage(x, "carol", 4, "prospect", "dormant", "inactive", c_v2 + 60 * D, 0, 0);

    /* dave: 5 purchases in 9 days -> loyal; mean gap 2 d -> at_risk after
     * max(14, 4) = 14 d; dormant 60 d after the last purchase. */
    lc_expect_stage(x, "dave", 1, NULL, "new", "first_purchase", h_ts("2025-06-01T14:00:00Z"), 1,
                    20);
    lc_expect_stage(x, "dave", 2, "new", "active", "repeat_purchase", h_ts("2025-06-03T14:00:00Z"),
                    2, 40);
    lc_expect_stage(x, "dave", 3, "active", "loyal", "loyal_threshold", d_p5, 5, 100);
    lc_expect_stage(x, "dave", 4, "loyal", "at_risk", "purchase_gap", d_p5 + 14 * D, 5, 100);
    lc_expect_stage(x, "dave", 5, "at_risk", "dormant", "inactive", d_p5 + 60 * D, 5, 100);

    /* ticker: seen every 10 days, never dormant. */
    lc_expect_stage(x, "ticker", 1, NULL, "prospect", "first_seen", h_ts("2025-01-01T00:00:00Z"), 0,
                    0);
}

static void test_lifecycle_walk(void **state)
{
    struct lc_fixture *f = *state;
    struct lc_expectations x;
    struct h_records rs = {0};
    char err[H_ERRLEN];

    if (lc_fresh_world(f, 3, 3, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    for (size_t i = 0; i < sizeof(lifecycle_events) / sizeof(lifecycle_events[0]); i++)
        send_event(f, &lifecycle_events[i]);
    lifecycle_expectations(&x);
    assert_int_equal(lc_expected_count(&x, H_T_STAGE), 24);
    assert_int_equal(lc_expected_count(&x, H_T_CHURN), 4);
    assert_int_equal(lc_expected_count(&x, H_T_WINBACK), 7);

    lc_start_clvd(f, "walk", NULL);
    lc_collect_and_stop(f, lc_expected_count(&x, NULL), &rs);
    lc_check_outputs(&x, &rs, NULL, NULL);
    h_records_free(&rs);
    f->passed = 1;
}

/* ---- b. dead letters ---------------------------------------------------------- */

struct dead {
    const char *topic;
    int partition;
    int64_t offset;
    const char *reason; /* NULL: any (printed) */
    char *value;        /* owned */
    size_t len;
    int binary; /* not UTF-8: expect value_base64 */
};

static int b64val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Decode padded base64; returns the length or -1. */
static long b64decode(const char *in, unsigned char *out, size_t outlen)
{
    size_t n = 0, len = strlen(in);

    if (len % 4 != 0)
        return -1;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++)
            v[k] = in[i + k] == '=' ? 0 : b64val(in[i + k]);
        if (v[0] < 0 || v[1] < 0 || v[2] < 0 || v[3] < 0)
            return -1;
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | v[3];
        unsigned char b[3] = {(unsigned char)(w >> 16), (unsigned char)(w >> 8), (unsigned char)w};
        int take = in[i + 2] == '=' ? 1 : in[i + 3] == '=' ? 2 : 3;
        for (int k = 0; k < take; k++) {
            if (n == outlen)
                return -1;
            out[n++] = b[k];
        }
    }
    return (long)n;
}

static void send_bad(struct lc_fixture *f, struct dead *d, const char *topic, int partition,
                     const char *reason, const void *value, size_t len, int binary)
{
    char err[H_ERRLEN];

    d->topic = topic;
    d->partition = partition;
    d->reason = reason;
    d->binary = binary;
    d->len = len;
    d->value = malloc(len + 1);
    assert_non_null(d->value);
    memcpy(d->value, value, len);
    d->value[len] = '\0';
    if (h_produce(&f->kafka, topic, partition, "bad", value, len, &d->offset, err, sizeof(err)) !=
        0)
        fail_msg("%s", err);
}

/* Remove (and free) the records of one topic. */
static void drop_topic(struct h_records *rs, const char *topic)
{
    size_t keep = 0;

    for (size_t k = 0; k < rs->n; k++) {
        if (strcmp(rs->r[k].topic, topic) != 0) {
            rs->r[keep++] = rs->r[k];
            continue;
        }
        free(rs->r[k].topic);
        free(rs->r[k].key);
        free(rs->r[k].value);
        if (rs->r[k].json != NULL)
            json_decref(rs->r[k].json);
    }
    rs->n = keep;
}

static void test_dead_letters(void **state)
{
    struct lc_fixture *f = *state;
    struct dead dl[16];
    int ndl = 0;
    struct lc_expectations x;
    struct h_records rs = {0};
    char err[H_ERRLEN], future[32], buf[256], *big;
    const size_t big_len = 70000;
    static const char utf8_bad[] = "{\"event_id\":\"dl-utf8\",\"customer_id\":\"dl-\xff\xfe\","
                                   "\"ts\":\"2025-03-02T12:00:00Z\"}";
    size_t off;
    char *text = NULL;
    size_t textlen = 0;
    FILE *log;

    if (lc_fresh_world(f, 1, 2, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    memset(dl, 0, sizeof(dl));
    h_fmt_ts(h_now_ms() + 3600 * 1000, future, sizeof(future));

    /* Valid events of dl1 interleaved with one rejected message per reason. */
    lc_send_json(
        f, H_T_VISITS, 0, "dl1",
        "{\"event_id\":\"dl1-v1\",\"customer_id\":\"dl1\",\"ts\":\"2025-03-01T10:00:00Z\"}");
#define BAD(topic, part, reason, literal)                                                          \
    send_bad(f, &dl[ndl++], topic, part, reason, literal, sizeof(literal) - 1, 0)
    BAD(H_T_VISITS, 0, "invalid_json", "{\"event_id\":\"dl-json\",\"customer_id\":");
    lc_send_json(f, H_T_PURCHASES, 0, "dl1",
                 "{\"event_id\":\"dl1-p1\",\"customer_id\":\"dl1\",\"ts\":\"2025-03-02T10:00:00Z\","
                 "\"amount\":20}");
    BAD(H_T_PURCHASES, 0, "missing_field:event_id",
        "{\"customer_id\":\"dl-noid\",\"ts\":\"2025-03-02T11:00:00Z\",\"amount\":10}");
    BAD(H_T_PURCHASES, 0, "bad_type:amount",
        "{\"event_id\":\"dl-amt\",\"customer_id\":\"dl-amt\",\"ts\":\"2025-03-02T11:00:00Z\","
        "\"amount\":\"12.50\"}");
    BAD(H_T_PURCHASES, 1, "negative_amount",
        "{\"event_id\":\"dl-neg\",\"customer_id\":\"dl-neg\",\"ts\":\"2025-03-02T11:00:00Z\","
        "\"amount\":-5}");
    BAD(H_T_PURCHASES, 1, "type_mismatch",
        "{\"event_id\":\"dl-type\",\"customer_id\":\"dl-type\",\"ts\":\"2025-03-02T11:00:00Z\","
        "\"type\":\"visit\",\"amount\":5}");
    BAD(H_T_VISITS, 1, "bad_timestamp",
        "{\"event_id\":\"dl-ts\",\"customer_id\":\"dl-ts\",\"ts\":\"2025-13-45T99:00:00Z\"}");
    snprintf(buf, sizeof(buf),
             "{\"event_id\":\"dl-future\",\"customer_id\":\"dl-future\",\"ts\":\"%s\"}", future);
    send_bad(f, &dl[ndl++], H_T_LOGINS, 0, "future_timestamp", buf, strlen(buf), 0);
    BAD(H_T_LOGINS, 0, "bad_customer_id",
        "{\"event_id\":\"dl-cid\",\"customer_id\":\"bad\\u0001id\",\"ts\":\"2025-03-02T11:00:"
        "00Z\"}");
    /* Valid JSON, but over max_message_bytes (64 KiB). */
    big = malloc(big_len + 1);
    assert_non_null(big);
    off = (size_t)snprintf(big, big_len,
                           "{\"event_id\":\"dl-big\",\"customer_id\":\"dl-big\","
                           "\"ts\":\"2025-03-02T11:00:00Z\",\"pad\":\"");
    memset(big + off, 'x', big_len - off - 2);
    memcpy(big + big_len - 2, "\"}", 2);
    big[big_len] = '\0';
    send_bad(f, &dl[ndl++], H_T_VISITS, 0, "too_large", big, big_len, 0);
    free(big);
    /* Not UTF-8: the dead letter carries value_base64; the reason is not
     * named by the spec (invalid_json or similar). */
    send_bad(f, &dl[ndl++], H_T_LOGINS, 1, NULL, utf8_bad, sizeof(utf8_bad) - 1, 1);
#undef BAD
    lc_send_json(f, H_T_PURCHASES, 0, "dl1",
                 "{\"event_id\":\"dl1-p2\",\"customer_id\":\"dl1\",\"ts\":\"2025-03-05T10:00:00Z\","
                 "\"amount\":25}");
    lc_send_json(
        f, H_T_LOGINS, 1, "dl1",
        "{\"event_id\":\"dl1-l1\",\"customer_id\":\"dl1\",\"ts\":\"2025-03-06T10:00:00Z\"}");

    /* dl1's transitions, and nothing else: a rejected event (the one 1 h in
     * the future in particular) must not move the clock -- if it did, dl1's
     * at_risk deadline (03-19) would fire. */
    memset(&x, 0, sizeof(x));
    lc_expect_stage(&x, "dl1", 1, NULL, "prospect", "first_seen", h_ts("2025-03-01T10:00:00Z"), 0,
                    0);
    lc_expect_stage(&x, "dl1", 2, "prospect", "new", "first_purchase", h_ts("2025-03-02T10:00:00Z"),
                    1, 20);
    lc_expect_stage(&x, "dl1", 3, "new", "active", "repeat_purchase", h_ts("2025-03-05T10:00:00Z"),
                    2, 45);

    lc_start_clvd(f, "dead", NULL);
    lc_collect_and_stop(f, lc_expected_count(&x, NULL) + (size_t)ndl, &rs);

    /* Check the dead letters, then drop them and check the rest. */
    log = open_memstream(&text, &textlen);
    assert_non_null(log);
    for (int i = 0; i < ndl; i++) {
        const struct dead *d = &dl[i];
        const struct h_record *r = NULL;
        int found = 0;
        const char *reason, *value;

        for (size_t k = 0; k < rs.n; k++) {
            const json_t *j = rs.r[k].json;
            double p = -1, o = -1;
            if (strcmp(rs.r[k].topic, H_T_DEAD) == 0 &&
                lc_streq_or_null(h_json_str(j, "topic"), d->topic) &&
                h_json_has_number(j, "partition", &p) && p == d->partition &&
                h_json_has_number(j, "offset", &o) && o == (double)d->offset) {
                r = &rs.r[k];
                found++;
            }
        }
        if (found != 1) {
            fprintf(log, "  %s[%d]@%lld (%s): %d dead letter(s), want 1\n", d->topic, d->partition,
                    (long long)d->offset, d->reason ? d->reason : "not UTF-8", found);
            continue;
        }
        reason = h_json_str(r->json, "reason");
        if (d->reason != NULL && !lc_streq_or_null(reason, d->reason))
            fprintf(log, "  %s[%d]@%lld: reason %s, want %s\n", d->topic, d->partition,
                    (long long)d->offset, reason, d->reason);
        if (d->reason == NULL)
            fprintf(stderr, "[info] reason for invalid UTF-8: %s\n", reason ? reason : "(none)");
        if (reason == NULL || reason[0] == '\0')
            fprintf(log, "  %s[%d]@%lld: no reason\n", d->topic, d->partition,
                    (long long)d->offset);
        if (d->binary) {
            unsigned char dec[512];
            long n;
            value = h_json_str(r->json, "value_base64");
            n = value != NULL ? b64decode(value, dec, sizeof(dec)) : -1;
            if (n != (long)d->len || memcmp(dec, d->value, d->len) != 0)
                fprintf(log, "  %s[%d]@%lld: value_base64 %s does not decode to the input\n",
                        d->topic, d->partition, (long long)d->offset, value ? value : "(none)");
        } else {
            json_t *jv = json_object_get(r->json, "value");
            if (!json_is_string(jv) || json_string_length(jv) != d->len ||
                memcmp(json_string_value(jv), d->value, d->len) != 0)
                fprintf(log, "  %s[%d]@%lld: value is not the original bytes\n", d->topic,
                        d->partition, (long long)d->offset);
        }
    }
    fclose(log);
    if (textlen > 0) {
        h_records_dump(&rs, stderr);
        fprintf(stderr, "==== dead-letter problems:\n%s", text);
        free(text);
        fail_msg("dead letters differ from the expected ones (see above)");
    }
    free(text);
    if (h_records_count(&rs, H_T_DEAD) != (size_t)ndl) {
        h_records_dump(&rs, stderr);
        fail_msg("%zu dead letters, want %d", h_records_count(&rs, H_T_DEAD), ndl);
    }
    /* The rest, as in the lifecycle test. */
    drop_topic(&rs, H_T_DEAD);
    lc_check_outputs(&x, &rs, NULL, NULL);
    for (int i = 0; i < ndl; i++)
        free(dl[i].value);
    h_records_free(&rs);
    f->passed = 1;
}

/* ---- c. determinism ------------------------------------------------------------ */

struct det_ev {
    const char *topic;
    const char *ts;
    double amount;
};

static const struct det_ev det_events[] = {
    {H_T_VISITS, "2024-03-01T10:00:00Z", 0},     {H_T_LOGINS, "2024-03-02T10:00:00Z", 0},
    {H_T_PURCHASES, "2024-03-05T10:00:00Z", 30}, {H_T_VISITS, "2024-03-10T11:00:00Z", 0},
    {H_T_PURCHASES, "2024-03-20T10:00:00Z", 25}, {H_T_LOGINS, "2024-05-01T10:00:00Z", 0},
    {H_T_PURCHASES, "2024-05-03T10:00:00Z", 40}, {H_T_VISITS, "2024-09-01T10:00:00Z", 0},
    {H_T_PURCHASES, "2024-09-03T10:00:00Z", 35}, {H_T_PURCHASES, "2024-09-05T10:00:00Z", 20},
    {H_T_PURCHASES, "2024-09-10T10:00:00Z", 20}, {H_T_LOGINS, "2024-09-20T10:00:00Z", 0},
    {H_T_VISITS, "2024-10-01T10:00:00Z", 0},
};
#define NDET (sizeof(det_events) / sizeof(det_events[0]))

static void det_expectations(struct lc_expectations *x)
{
    const int64_t D = H_DAY_MS;

    memset(x, 0, sizeof(*x));
    lc_expect_stage(x, "det", 1, NULL, "prospect", "first_seen", h_ts("2024-03-01T10:00:00Z"), 0,
                    0);
    lc_expect_stage(x, "det", 2, "prospect", "new", "first_purchase", h_ts("2024-03-05T10:00:00Z"),
                    1, 30);
    lc_expect_stage(x, "det", 3, "new", "active", "repeat_purchase", h_ts("2024-03-20T10:00:00Z"),
                    2, 55);
    /* mean gap 15 d -> 30 d */
    lc_expect_stage(x, "det", 4, "active", "at_risk", "purchase_gap",
                    h_ts("2024-03-20T10:00:00Z") + 30 * D, 2, 55);
    lc_expect_stage(x, "det", 5, "at_risk", "active", "recovered", h_ts("2024-05-03T10:00:00Z"), 3,
                    95);
    /* purchase days 03-05, 03-20, 05-03: mean gap 29.5 d -> 59 d */
    lc_expect_stage(x, "det", 6, "active", "at_risk", "purchase_gap",
                    h_ts("2024-05-03T10:00:00Z") + 59 * D, 3, 95);
    lc_expect_stage(x, "det", 7, "at_risk", "dormant", "inactive",
                    h_ts("2024-05-03T10:00:00Z") + 60 * D, 3, 95);
    lc_expect_stage(x, "det", 8, "dormant", "at_risk", "returned", h_ts("2024-09-01T10:00:00Z"), 3,
                    95);
    lc_expect_stage(x, "det", 9, "at_risk", "active", "recovered", h_ts("2024-09-03T10:00:00Z"), 4,
                    130);
    /* 03-20, 05-03, 09-03, 09-05, 09-10: 5 purchases within 180 d */
    lc_expect_stage(x, "det", 10, "active", "loyal", "loyal_threshold",
                    h_ts("2024-09-10T10:00:00Z"), 6, 170);
}

static void send_det(struct lc_fixture *f, const struct det_ev *e, int partition)
{
    struct ev ev = {e->topic, partition, "det", "det", e->ts, e->amount, NULL};

    send_event(f, &ev);
}

/* The value without its "emitted_at" member (malloc'ed). */
static char *strip_emitted_at(const struct h_record *r)
{
    static const char needle[] = "\"emitted_at\":\"";
    char *out = strdup(r->value), *p, *q;

    assert_non_null(out);
    p = strstr(out, needle);
    if (p == NULL)
        return out;
    q = strchr(p + sizeof(needle) - 1, '"');
    if (q == NULL)
        return out;
    q++;
    if (*q == ',')
        q++;
    else if (p > out && p[-1] == ',')
        p--;
    memmove(p, q, strlen(q) + 1);
    return out;
}

static void run_det(struct lc_fixture *f, int shuffled, const struct lc_expectations *x,
                    struct h_records *out)
{
    char err[H_ERRLEN];

    if (lc_fresh_world(f, 1, shuffled ? 3 : 1, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    if (!shuffled) {
        for (size_t i = 0; i < NDET; i++)
            send_det(f, &det_events[i], 0);
    } else {
        /* All purchases first, then the visits (spread over two partitions),
         * then the logins, on other partitions than in the first run. */
        static const char *const order[] = {H_T_PURCHASES, H_T_VISITS, H_T_LOGINS};
        for (int t = 0; t < 3; t++) {
            int nth = 0;
            for (size_t i = 0; i < NDET; i++)
                if (strcmp(det_events[i].topic, order[t]) == 0)
                    send_det(f, &det_events[i], t == 0 ? 2 : t == 1 ? (nth++ < 2 ? 0 : 1) : 1);
        }
    }
    lc_start_clvd(f, shuffled ? "det-shuffled" : "det-ordered", NULL);
    lc_collect_and_stop(f, lc_expected_count(x, NULL), out);
}

static void test_determinism(void **state)
{
    struct lc_fixture *f = *state;
    struct lc_expectations x;
    struct h_records a = {0}, b = {0};
    int diffs = 0;

    det_expectations(&x);
    run_det(f, 0, &x, &a);
    run_det(f, 1, &x, &b);
    if (a.n != b.n) {
        h_records_dump(&a, stderr);
        h_records_dump(&b, stderr);
        fail_msg("%zu output messages in order, %zu out of order", a.n, b.n);
    }
    for (int t = 0; h_output_topics[t] != NULL; t++) {
        size_t ia = 0, ib = 0;
        for (;;) {
            char *va, *vb;
            while (ia < a.n && strcmp(a.r[ia].topic, h_output_topics[t]) != 0)
                ia++;
            while (ib < b.n && strcmp(b.r[ib].topic, h_output_topics[t]) != 0)
                ib++;
            if (ia >= a.n || ib >= b.n) {
                assert_true(ia >= a.n && ib >= b.n);
                break;
            }
            va = strip_emitted_at(&a.r[ia]);
            vb = strip_emitted_at(&b.r[ib]);
            if (strcmp(va, vb) != 0 || !lc_streq_or_null(a.r[ia].key, b.r[ib].key)) {
                fprintf(stderr, "%s differs:\n  in order:     %s\n  out of order: %s\n",
                        h_output_topics[t], va, vb);
                diffs++;
            }
            free(va);
            free(vb);
            ia++;
            ib++;
        }
    }
    if (diffs > 0)
        fail_msg("%d output message(s) differ between the two deliveries", diffs);
    /* Identical; and right? */
    lc_check_outputs(&x, &a, NULL, NULL);
    h_records_free(&a);
    h_records_free(&b);
    f->passed = 1;
}

/* ---- d. a corrupt state ------------------------------------------------------- */

#define CORRUPT_CUSTOMERS 40

/* Removes every record byte-identical (topic, key, value) to an earlier
 * one; returns how many.  After a failed batch clvd re-publishes what its
 * outboxes hold, and SPEC section 8 allows that: at least once, the
 * duplicates identical. */
static size_t drop_repeats(struct h_records *rs)
{
    size_t kept = 0, n = rs->n;

    for (size_t i = 0; i < n; i++) {
        struct h_record *r = &rs->r[i];
        int seen = 0;
        for (size_t j = 0; j < kept && !seen; j++) {
            const struct h_record *q = &rs->r[j];
            seen = strcmp(q->topic, r->topic) == 0 && lc_streq_or_null(q->key, r->key) &&
                   q->value_len == r->value_len && memcmp(q->value, r->value, r->value_len) == 0;
        }
        if (seen) {
            free(r->topic);
            free(r->key);
            free(r->value);
            if (r->json != NULL)
                json_decref(r->json);
        } else {
            rs->r[kept++] = *r;
        }
    }
    rs->n = kept;
    return n - kept;
}

/* A stored state clvd cannot decode stops its batch: clvd names the
 * customer, acknowledges nothing of the batch and tries it again until an
 * operator deletes the key; then every customer's outputs arrive exactly
 * once, and the customer starts afresh.  With one worker the whole input is
 * one batch, whose calls go out shard by shard while it is computed: the
 * calls of the shards before the corrupt customer's are in Redis when her
 * state fails to decode.  Their replies must still be read (a connection
 * left a reply behind would pair the retry's GETs with them), and what they
 * applied must be published once, from the outboxes. */
static void test_corrupt_state(void **state)
{
    struct lc_fixture *f = *state;
    static const char *const settings[] = {"processing.workers", "1", NULL};
    const char *bad = "mallory";
    struct lc_expectations x = {0};
    struct h_records rs = {0};
    static char ids[CORRUPT_CUSTOMERS][8]; /* the expectations point to them */
    char err[H_ERRLEN], key[CLV_KEY_MAX], cmd[CLV_KEY_MAX + 64], ts[32];
    int64_t t0 = 1740823200000; /* 2025-03-01T10:00Z */
    uint32_t bad_shard = keys_shard_of(bad, strlen(bad), 16);
    int before = 0;

    if (lc_fresh_world(f, 1, 1, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    keys_customer(key, "clv:", bad_shard, bad, strlen(bad));
    snprintf(cmd, sizeof(cmd), "SET %s not-a-state", key);
    if (h_redis_command(&f->redis, cmd, NULL, 0, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    for (int i = 0; i < CORRUPT_CUSTOMERS; i++) {
        const char *id = ids[i];
        snprintf(ids[i], sizeof(ids[i]), "cs%02d", i);
        before += keys_shard_of(id, strlen(id), 16) < bad_shard;
        snprintf(ts, sizeof(ts), "#%lld", (long long)(t0 + i * 60000));
        send_event(f, &(struct ev){H_T_VISITS, 0, id, id, ts, 0, NULL});
        lc_expect_stage(&x, id, 1, NULL, "prospect", "first_seen", t0 + i * 60000, 0, 0);
    }
    /* before the last event: released with the others, in one batch */
    send_event(f, &(struct ev){H_T_VISITS, 0, bad, bad, "#1740824430000", 0, NULL}); /* 10:20:30 */
    lc_expect_stage(&x, bad, 1, NULL, "prospect", "first_seen", 1740824430000, 0, 0);
    if (before == 0)
        fail_msg("no customer's shard comes before %s's (%u): pick other ids", bad, bad_shard);

    lc_start_clvd(f, "corrupt", settings);
    if (h_clvd_wait_log(&f->clvd, "(customer mallory)", 30000) != 0)
        fail_msg("%s: the batch did not fail on %s's state within 30 s", f->clvd.log, bad);
    h_sleep_ms(1000); /* retried every 200 ms meanwhile, each time on her state alone */
    assert_int_equal(h_file_count(f->clvd.log, "not applied"),
                     h_file_count(f->clvd.log, "(customer mallory)"));
    /* the customers of the calls sent before hers were written, their
     * outputs are in the outboxes: the path this test is about was taken */
    if (h_file_count(f->clvd.log, "outbox: re-published") < 1)
        fail_msg("%s: nothing was applied before %s's state failed", f->clvd.log, bad);
    snprintf(cmd, sizeof(cmd), "DEL %s", key);
    if (h_redis_command(&f->redis, cmd, NULL, 0, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    lc_collect_and_stop(f, lc_expected_count(&x, NULL), &rs);
    drop_repeats(&rs);
    lc_check_outputs(&x, &rs, NULL, NULL);
    h_records_free(&rs);
    f->passed = 1;
}

/* ---- a state changed behind clvd's back --------------------------------------------- */

/* carol's stored state version (the first 8 bytes, little-endian), or -1
 * when she has none yet. */
static int64_t stored_version(struct lc_fixture *f, const char *key, redisReply **state)
{
    redisReply *r = h_redis_key_command(&f->redis, "GET %s", key);
    int64_t v = -1;

    if (r == NULL || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL))
        fail_msg("GET %s: %s", key, r && r->type == REDIS_REPLY_ERROR ? r->str : "no reply");
    if (r->type == REDIS_REPLY_STRING && r->len >= 8) {
        v = 0;
        for (int i = 7; i >= 0; i--)
            v = (v << 8) | (unsigned char)r->str[i];
    }
    if (state != NULL && v >= 0)
        *state = r;
    else
        freeReplyObject(r);
    return v;
}

static int64_t wait_version(struct lc_fixture *f, const char *key, int64_t want, int timeout_ms)
{
    int64_t v = -1;

    for (int waited = 0; waited < timeout_ms; waited += 50) {
        v = stored_version(f, key, NULL);
        if (want < 0 ? v >= 0 : v == want)
            break;
        h_sleep_ms(50);
    }
    return v;
}

/* clvd keeps the states it wrote (cache.h) and apply.lua compares versions:
 * when another writer changed carol's state since, her next event meets a
 * conflict, which must leave the stored state as the other writer left it
 * and be recomputed from that state -- one write on top of it, not on top
 * of clvd's stale copy. */
static void test_conflict_recomputed(void **state)
{
    struct lc_fixture *f = *state;
    const char *carol = "carol";
    char listen[64], key[CLV_KEY_MAX], err[H_ERRLEN], perr[24 * 1024];
    const char *settings[] = {"processing.workers", "1", "metrics.listen", listen, NULL};
    struct lc_expectations x = {0};
    struct h_records rs = {0};
    struct prom_page page;
    redisReply *was = NULL, *r;
    unsigned char blob[4096];
    int64_t v0, bumped, v;
    double conflicts = 0;
    int port = prom_free_port();

    if (lc_fresh_world(f, 1, 1, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    snprintf(listen, sizeof(listen), "\"127.0.0.1:%d\"", port);
    keys_customer(key, "clv:", keys_shard_of(carol, strlen(carol), 16), carol, strlen(carol));
    send_event(f, &(struct ev){H_T_VISITS, 0, carol, carol, "2025-03-01T10:00:00Z", 0, NULL});
    lc_expect_stage(&x, carol, 1, NULL, "prospect", "first_seen", 1740823200000, 0, 0);
    lc_start_clvd(f, "conflict", settings);

    v0 = wait_version(f, key, -1, 30000);
    if (v0 < 0)
        fail_msg("%s: carol's first event was not applied within 30 s", f->clvd.log);
    /* another writer: the same state, 1000 versions on */
    stored_version(f, key, &was);
    if (was->len > sizeof(blob))
        fail_msg("carol's state is %zu bytes", was->len);
    memcpy(blob, was->str, was->len);
    bumped = v0 + 1000;
    for (int i = 0; i < 8; i++)
        blob[i] = (unsigned char)((uint64_t)bumped >> (8 * i));
    r = h_redis_key_command(&f->redis, "SET %s %b", key, blob, was->len);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    freeReplyObject(was);

    send_event(f, &(struct ev){H_T_VISITS, 0, carol, carol, "2025-03-01T10:05:00Z", 0, NULL});
    v = wait_version(f, key, bumped + 1, 30000);
    assert_int_equal(v, bumped + 1);
    h_sleep_ms(500); /* nothing more to write for her */
    assert_int_equal(stored_version(f, key, NULL), bumped + 1);

    /* the page is rendered once a second */
    for (int waited = 0; conflicts < 1 && waited < 5000; waited += 200) {
        h_sleep_ms(200);
        if (prom_scrape(port, &page, NULL, perr, sizeof(perr)) != 0)
            fail_msg("metrics: %s", perr);
        prom_get(&page, "clvd_cas_conflicts_total", "", &conflicts);
        prom_page_free(&page);
    }
    if (conflicts < 1)
        fail_msg("no compare-and-set conflict counted: the cached state was not used");
    /* one conflict, resolved at once: had the conflicting write gone
     * through, the next attempt would conflict with clvd's own first
     * attempt, and so on */
    assert_int_equal((int)conflicts, 1);
    assert_int_equal(h_file_count(f->clvd.log, "not applied"), 0);

    lc_collect_and_stop(f, lc_expected_count(&x, NULL), &rs);
    lc_check_outputs(&x, &rs, NULL, NULL);
    h_records_free(&rs);
    f->passed = 1;
}

/* apply.lua itself, on one shard's keys (so that it runs on a cluster too),
 * in two groups: a customer whose state vanished since it was read (a
 * conflict with no state) is left without one and writes nothing else,
 * while the others of the call are applied; then a stale version leaves the
 * state as it was and returns it. */
extern const char clv_lua_apply[];

static redisReply *key_get(struct lc_fixture *f, const char *cmd, const char *key, const char *arg)
{
    redisReply *r = arg ? h_redis_key_command(&f->redis, "%s %s %s", cmd, key, arg)
                        : h_redis_key_command(&f->redis, "%s %s", cmd, key);
    if (r == NULL || r->type == REDIS_REPLY_ERROR)
        fail_msg("%s %s: %s", cmd, key, r ? r->str : "no reply");
    return r;
}

static void assert_string_reply(struct lc_fixture *f, const char *cmd, const char *key,
                                const char *arg, const char *want)
{
    redisReply *r = key_get(f, cmd, key, arg);

    if (want == NULL) {
        if (r->type != REDIS_REPLY_NIL)
            fail_msg("%s %s %s: expected nothing, got %s", cmd, key, arg ? arg : "",
                     r->type == REDIS_REPLY_STRING ? r->str : "a non-string");
    } else if (r->type != REDIS_REPLY_STRING || strcmp(r->str, want) != 0) {
        fail_msg("%s %s %s: expected %s", cmd, key, arg ? arg : "", want);
    }
    freeReplyObject(r);
}

/* A counter of a stats hash; 0 when the field is not there. */
static long long hash_int(struct lc_fixture *f, const char *key, const char *field)
{
    redisReply *r = key_get(f, "HGET", key, field);
    long long v = 0;

    if (r->type == REDIS_REPLY_STRING)
        v = strtoll(r->str, NULL, 10);
    else if (r->type != REDIS_REPLY_NIL)
        fail_msg("HGET %s %s: not a string", key, field);
    freeReplyObject(r);
    return v;
}

static void test_apply_script(void **state)
{
    struct lc_fixture *f = *state;
    const uint32_t shard = 5;
    char due[CLV_KEY_MAX], out[CLV_KEY_MAX], stats[CLV_KEY_MAX], ann[CLV_KEY_MAX],
        dave[CLV_KEY_MAX], eve[CLV_KEY_MAX], fay[CLV_KEY_MAX], err[H_ERRLEN];
    char due6[CLV_KEY_MAX], out6[CLV_KEY_MAX], stats6[CLV_KEY_MAX], gus[CLV_KEY_MAX],
        hal[CLV_KEY_MAX];
    redisReply *r;

    if (lc_fresh_world(f, 1, 1, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    keys_due(due, "clv:", shard);
    keys_outbox(out, "clv:", shard);
    keys_stats(stats, "clv:", shard);
    keys_customer(ann, "clv:", shard, "ann", 3);
    keys_customer(dave, "clv:", shard, "dave", 4);
    keys_customer(eve, "clv:", shard, "eve", 3);
    keys_customer(fay, "clv:", shard, "fay", 3);

    /* four customers in two groups (of the same shard, as a call would
     * never have them, but apply.lua does not care), then the due index,
     * outbox and counters of the groups with a customer in the full form
     * -- the second only: group 1 is eve (new, the short form: the
     * state and nothing else), group 2 ann (new), dave (read with version
     * DAVE0001, gone since) and fay (new, no outbox entry; her counter move
     * adds to ann's).  The reply lists the conflicts only: dave, the
     * call's third. */
    r = h_redis_key_command(&f->redis,
                            "EVAL %s 7 %s %s %s %s %s %s %s 4 "
                            "1 %s EVE-0001-state %s "
                            "3 %s ANN-0001-state + ann 1000 1 f1 m1 1 prospect 1 "
                            "DAVE0001 DAVE0002-state + dave 2000 1 f2 m2 1 prospect 1 "
                            "%s FAY-0001-state + fay 3000 0 2 prospect 1 buyers 1",
                            clv_lua_apply, eve, ann, dave, fay, due, out, stats, "", "", "", "");
    assert_non_null(r);
    if (r->type != REDIS_REPLY_ARRAY)
        fail_msg("apply.lua: %s", r->type == REDIS_REPLY_ERROR ? r->str : "not an array");
    assert_int_equal(r->elements, 2);
    assert_int_equal(r->element[0]->type, REDIS_REPLY_INTEGER);
    assert_int_equal(r->element[0]->integer, 3);
    assert_int_equal(r->element[1]->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    assert_string_reply(f, "GET", ann, NULL, "ANN-0001-state");
    assert_string_reply(f, "GET", dave, NULL, NULL);
    assert_string_reply(f, "GET", eve, NULL, "EVE-0001-state");
    assert_string_reply(f, "ZSCORE", due, "ann", "1000");
    assert_string_reply(f, "ZSCORE", due, "dave", NULL);
    assert_string_reply(f, "HGET", out, "f1", "m1");
    assert_string_reply(f, "HGET", out, "f2", NULL);
    assert_string_reply(f, "HGET", stats, "prospect", "2");
    assert_string_reply(f, "HGET", stats, "buyers", "1");
    assert_string_reply(f, "ZSCORE", due, "fay", "3000");
    assert_string_reply(f, "ZSCORE", due, "eve", NULL);

    /* a stale version: ann's state stays, and comes back, after eve's
     * update in the short form went through */
    r = h_redis_key_command(&f->redis,
                            "EVAL %s 5 %s %s %s %s %s 2 2 EVE-0001 EVE-0002-state %s "
                            "ANN-0000 ANN-0009-state + ann 9000 1 f9 m9 1 prospect 1",
                            clv_lua_apply, eve, ann, due, out, stats, "");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 2);
    assert_int_equal(r->element[0]->type, REDIS_REPLY_INTEGER);
    assert_int_equal(r->element[0]->integer, 2);
    assert_int_equal(r->element[1]->type, REDIS_REPLY_STRING);
    assert_string_equal(r->element[1]->str, "ANN-0001-state");
    freeReplyObject(r);
    assert_string_reply(f, "GET", eve, NULL, "EVE-0002-state");
    assert_string_reply(f, "GET", ann, NULL, "ANN-0001-state");
    assert_string_reply(f, "ZSCORE", due, "ann", "1000");
    assert_string_reply(f, "HGET", out, "f9", NULL);
    assert_string_reply(f, "HGET", stats, "prospect", "2");

    /* two shards in one call, as clvd sends them to a single Redis (on a
     * cluster a call is one shard): each outbox entry, due entry and
     * counter move in its own shard */
    if (f->redis.masters > 0) {
        f->passed = 1;
        return;
    }
    keys_due(due6, "clv:", shard + 1);
    keys_outbox(out6, "clv:", shard + 1);
    keys_stats(stats6, "clv:", shard + 1);
    keys_customer(gus, "clv:", shard, "gus", 3);
    keys_customer(hal, "clv:", shard + 1, "hal", 3);
    r = h_redis_key_command(&f->redis,
                            "EVAL %s 8 %s %s %s %s %s %s %s %s 2 "
                            "1 %s GUS-0001-state + gus 4000 1 f5 m5 1 prospect 1 "
                            "1 %s HAL-0001-state + hal 5000 1 f6 m6 2 prospect 1 buyers -1",
                            clv_lua_apply, gus, hal, due, out, stats, due6, out6, stats6, "", "");
    assert_non_null(r);
    if (r->type != REDIS_REPLY_ARRAY)
        fail_msg("apply.lua: %s", r->type == REDIS_REPLY_ERROR ? r->str : "not an array");
    assert_int_equal(r->elements, 0);
    freeReplyObject(r);
    assert_string_reply(f, "HGET", out, "f5", "m5");
    assert_string_reply(f, "HGET", out6, "f6", "m6");
    assert_string_reply(f, "ZSCORE", due, "gus", "4000");
    assert_string_reply(f, "ZSCORE", due6, "hal", "5000");
    assert_int_equal(hash_int(f, stats, "prospect"), 3);
    assert_int_equal(hash_int(f, stats6, "prospect"), 1);
    assert_int_equal(hash_int(f, stats, "buyers"), 1);
    assert_int_equal(hash_int(f, stats6, "buyers"), -1);
    f->passed = 1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lifecycle_walk, lc_setup, lc_teardown),
        cmocka_unit_test_setup_teardown(test_dead_letters, lc_setup, lc_teardown),
        cmocka_unit_test_setup_teardown(test_determinism, lc_setup, lc_teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_state, lc_setup, lc_teardown),
        cmocka_unit_test_setup_teardown(test_conflict_recomputed, lc_setup, lc_teardown),
        cmocka_unit_test_setup_teardown(test_apply_script, lc_setup, lc_teardown),
    };
    const char *filter = getenv("CLVD_IT_FILTER");
    int skip = h_redis_cluster_skip(h_redis_cluster_env());

    if (skip != 0)
        return skip;
    if (filter != NULL && *filter != '\0')
        cmocka_set_test_filter(filter);
    return cmocka_run_group_tests(tests, group_setup, lc_group_teardown);
}
