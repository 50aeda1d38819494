/* lifecycle_support.c -- the fixture, clvd runs and output checks shared by
 * test_lifecycle.c and test_value.c (see lifecycle_support.h). */
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

#include "lifecycle_support.h"

#ifndef CLVD_BINARY
#error "CLVD_BINARY (path of the clvd executable) must be defined"
#endif

#define CONSUME_TIMEOUT_MS 120000 /* h_consume gives up after 20 s without news */
#define QUIET_MS 1500
#define STOP_TIMEOUT_MS 10000

/* ---- fixture --------------------------------------------------------------- */

int lc_group_setup(void **state, int redis_masters)
{
    struct lc_fixture *f = calloc(1, sizeof(*f));
    char err[H_ERRLEN];

    if (f == NULL)
        return -1;
    if (access(CLVD_BINARY, X_OK) != 0) {
        fprintf(stderr, "clvd binary %s is missing: build the clvd target first\n", CLVD_BINARY);
        free(f);
        return -1;
    }
    f->redis.masters = redis_masters;
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

int lc_group_teardown(void **state)
{
    struct lc_fixture *f = *state;

    h_redis_stop(&f->redis);
    h_tmpdir_remove(f->dir);
    free(f);
    return 0;
}

int lc_setup(void **state)
{
    struct lc_fixture *f = *state;

    memset(&f->kafka, 0, sizeof(f->kafka));
    memset(&f->clvd, 0, sizeof(f->clvd));
    f->passed = 0;
    return 0;
}

int lc_teardown(void **state)
{
    struct lc_fixture *f = *state;

    if (!f->passed && f->clvd.log[0] != '\0')
        h_dump_file(f->clvd.log, "clvd log", 48 * 1024, stderr);
    h_clvd_kill9(&f->clvd);
    h_kafka_stop(&f->kafka);
    return 0;
}

int lc_fresh_world(struct lc_fixture *f, int brokers, int in_partitions, char *err, size_t errlen)
{
    h_kafka_stop(&f->kafka);
    if (h_redis_command(&f->redis, "FLUSHALL", NULL, 0, err, errlen) != 0)
        return -1;
    if (h_kafka_start(&f->kafka, brokers, err, errlen) != 0)
        return -1;
    return h_kafka_create_default_topics(&f->kafka, in_partitions, 1, err, errlen);
}

/* ---- running clvd ---------------------------------------------------------- */

void lc_start_clvd(struct lc_fixture *f, const char *name, const char *const *settings)
{
    char cfgpath[H_PATHLEN + 64], logpath[H_PATHLEN + 64], group[96], err[H_ERRLEN];
    struct h_config cfg;

    f->run++;
    snprintf(cfgpath, sizeof(cfgpath), "%s/%s-%d.yaml", f->dir, name, f->run);
    snprintf(logpath, sizeof(logpath), "%s/%s-%d.log", f->dir, name, f->run);
    snprintf(group, sizeof(group), "clvd-it-%s-%d-%d", name, (int)getpid(), f->run);
    assert_int_equal(h_config_init(&cfg, f->kafka.bootstraps, group, f->redis.socket), 0);
    /* With one redis-server this re-sets the socket h_config_init set. */
    assert_int_equal(h_config_redis(&cfg, &f->redis), 0);
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

void lc_collect_and_stop(struct lc_fixture *f, size_t expected, struct h_records *out)
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

int64_t lc_send_json(struct lc_fixture *f, const char *topic, int32_t partition, const char *key,
                     const char *fmt, ...)
{
    char *value = NULL, err[H_ERRLEN];
    int64_t offset = -1;
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = vasprintf(&value, fmt, ap);
    va_end(ap);
    assert_true(rc >= 0);
    rc = h_produce_str(&f->kafka, topic, partition, key, value, &offset, err, sizeof(err));
    free(value);
    if (rc != 0)
        fail_msg("%s", err);
    return offset;
}

/* ---- expected outputs ------------------------------------------------------ */

int lc_expect(struct lc_expectations *x, const char *topic, const char *customer, int seq,
              const char *from, const char *to, const char *reason, int64_t at, int purchases,
              double revenue)
{
    struct lc_expect e = {.topic = topic,
                          .customer = customer,
                          .seq = seq,
                          .from = from,
                          .to = to,
                          .reason = reason,
                          .at = at,
                          .purchases = purchases,
                          .revenue = revenue,
                          .model = x->model,
                          .p_alive = NAN};

    assert_true(x->n + 1 <= LC_MAX_EXPECT);
    x->e[x->n] = e;
    return x->n++;
}

/* The stage change's copy on another topic. */
static void expect_copy(struct lc_expectations *x, int of, const char *topic, const char *kind)
{
    assert_true(x->n + 1 <= LC_MAX_EXPECT);
    x->e[x->n] = x->e[of];
    x->e[x->n].topic = topic;
    x->e[x->n++].kind = kind;
}

int lc_expect_stage(struct lc_expectations *x, const char *customer, int seq, const char *from,
                    const char *to, const char *reason, int64_t at, int purchases, double revenue)
{
    int first = lc_expect(x, H_T_STAGE, customer, seq, from, to, reason, at, purchases, revenue);
    const char *kind = NULL;

    if (strcmp(to, "at_risk") == 0)
        expect_copy(x, first, H_T_CHURN, NULL);
    if (strcmp(to, "dormant") == 0)
        kind = "dormant";
    else if (strcmp(to, "churned") == 0)
        kind = "churned";
    else if (strcmp(reason, "returned") == 0)
        kind = "returned";
    else if (strcmp(reason, "won_back") == 0)
        kind = "won_back";
    if (kind != NULL && purchases > 0)
        expect_copy(x, first, H_T_WINBACK, kind);
    return first;
}

size_t lc_expected_count(const struct lc_expectations *x, const char *topic)
{
    size_t n = 0;

    for (int i = 0; i < x->n; i++)
        if (topic == NULL || strcmp(x->e[i].topic, topic) == 0)
            n++;
    return n;
}

/* ---- checking the outputs -------------------------------------------------- */

int lc_streq_or_null(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

const struct h_record *lc_find_record(const struct h_records *rs, const char *topic,
                                      const char *customer, int seq, int *count)
{
    const struct h_record *r = NULL;
    char id[192];
    int found = 0;

    snprintf(id, sizeof(id), "%s:%d", customer, seq);
    for (size_t k = 0; k < rs->n; k++)
        if (strcmp(rs->r[k].topic, topic) == 0 &&
            lc_streq_or_null(h_json_str(rs->r[k].json, "event_id"), id)) {
            r = &rs->r[k];
            found++;
        }
    if (count != NULL)
        *count = found;
    return found == 1 ? r : NULL;
}

void lc_problem(FILE *log, const struct lc_expect *e, const char *fmt, ...)
{
    va_list ap;

    fprintf(log, "  %s %s:%d: ", e->topic, e->customer, e->seq);
    va_start(ap, fmt);
    vfprintf(log, fmt, ap);
    va_end(ap);
    fputc('\n', log);
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

/* The message's own fields (SPEC section 5). */
static void check_envelope(const struct lc_expect *e, const struct h_record *r, FILE *log)
{
    const json_t *j = r->json;
    char at[32];

    if (!lc_streq_or_null(r->key, e->customer))
        lc_problem(log, e, "key %s, want %s", r->key ? r->key : "(none)", e->customer);
    if (!lc_streq_or_null(h_json_str(j, "schema"), schema_of(e->topic)))
        lc_problem(log, e, "schema %s, want %s", h_json_str(j, "schema"), schema_of(e->topic));
    if (!lc_streq_or_null(h_json_str(j, "customer_id"), e->customer))
        lc_problem(log, e, "customer_id %s", h_json_str(j, "customer_id"));
    if (e->from == NULL ? !h_json_is_null(j, "from")
                        : !lc_streq_or_null(h_json_str(j, "from"), e->from))
        lc_problem(log, e, "from %s, want %s",
                   h_json_is_null(j, "from") ? "null" : h_json_str(j, "from"),
                   e->from ? e->from : "null");
    if (!lc_streq_or_null(h_json_str(j, "to"), e->to))
        lc_problem(log, e, "to %s, want %s", h_json_str(j, "to"), e->to);
    if (!lc_streq_or_null(h_json_str(j, "reason"), e->reason))
        lc_problem(log, e, "reason %s, want %s", h_json_str(j, "reason"), e->reason);
    h_fmt_ts(e->at, at, sizeof(at));
    if (!lc_streq_or_null(h_json_str(j, "at"), at))
        lc_problem(log, e, "at %s, want %s", h_json_str(j, "at"), at);
    if (h_json_str(j, "emitted_at") == NULL)
        lc_problem(log, e, "no emitted_at");
    if (e->kind != NULL && !lc_streq_or_null(h_json_str(j, "kind"), e->kind))
        lc_problem(log, e, "kind %s, want %s", h_json_str(j, "kind"), e->kind);
    if (e->direction != NULL && !lc_streq_or_null(h_json_str(j, "direction"), e->direction))
        lc_problem(log, e, "direction %s, want %s", h_json_str(j, "direction"), e->direction);
    if (strcmp(e->topic, H_T_CHURN) == 0 &&
        (!h_json_has_number(j, "risk", NULL) || !h_json_has_number(j, "clv_at_stake", NULL)))
        lc_problem(log, e, "risk or clv_at_stake missing or not numbers");
}

/* The customer snapshot the message carries. */
static void check_snapshot(const struct lc_expect *e, const json_t *cust, FILE *log)
{
    double v = NAN;
    const char *s;

    if (!h_json_has_number(cust, "purchases", &v) || v != e->purchases)
        lc_problem(log, e, "customer.purchases %g, want %d", v, e->purchases);
    if (!h_json_has_number(cust, "revenue", &v) || v < e->revenue - 1e-6 || v > e->revenue + 1e-6)
        lc_problem(log, e, "customer.revenue %g, want %g", v, e->revenue);
    s = h_json_str(cust, "tier");
    if (e->tier != NULL && !lc_streq_or_null(s, e->tier))
        lc_problem(log, e, "customer.tier %s, want %s", s, e->tier);
    s = h_json_str(cust, "channel");
    if (e->channel != NULL && !lc_streq_or_null(s, e->channel))
        lc_problem(log, e, "customer.channel %s, want %s", s, e->channel);
}

static void check_message(const struct lc_expect *e, const struct h_record *r,
                          lc_message_check *more, FILE *log)
{
    const json_t *cust = json_object_get(r->json, "customer");

    check_envelope(e, r, log);
    if (!json_is_object(cust)) {
        lc_problem(log, e, "no customer object");
        cust = NULL;
    } else {
        check_snapshot(e, cust, log);
    }
    if (more != NULL)
        more(e, r->json, cust, log);
}

/* Per output topic, as many messages as expected. */
static void check_counts(const struct lc_expectations *x, const struct h_records *rs, FILE *log)
{
    for (int t = 0; h_output_topics[t] != NULL; t++) {
        size_t got = h_records_count(rs, h_output_topics[t]);
        size_t want = lc_expected_count(x, h_output_topics[t]);
        if (got != want)
            fprintf(log, "  %s: %zu message(s), want %zu\n", h_output_topics[t], got, want);
    }
}

/* Per customer and topic, sequence numbers increase in publication order. */
static void check_order(const struct h_records *rs, FILE *log)
{
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
}

void lc_check_outputs(const struct lc_expectations *x, const struct h_records *rs,
                      lc_message_check *message, lc_outputs_check *outputs)
{
    char *text = NULL;
    size_t textlen = 0;
    FILE *log = open_memstream(&text, &textlen);
    int problems;

    assert_non_null(log);
    for (int i = 0; i < x->n; i++) {
        const struct lc_expect *e = &x->e[i];
        int found;
        const struct h_record *r = lc_find_record(rs, e->topic, e->customer, e->seq, &found);

        if (r == NULL) {
            fprintf(log, "  %s %s:%d (%s -> %s, %s): found %d time(s), want once\n", e->topic,
                    e->customer, e->seq, e->from ? e->from : "null", e->to, e->reason, found);
            continue;
        }
        check_message(e, r, message, log);
    }
    check_counts(x, rs, log);
    check_order(rs, log);
    if (outputs != NULL)
        outputs(x, rs, log);
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
