/* lifecycle_support.h -- what the output-checking integration tests
 * (test_lifecycle.c, test_value.c) share.
 *
 * The fixture: one redis-server per cmocka group (or a Redis Cluster), a
 * fresh mock cluster per test, clvd as a child process in event-clock mode.
 * A test produces all of its input first, starts clvd on a flushed Redis
 * with a fresh consumer group, reads the output topics until the expected
 * number of messages arrived and they stayed quiet, stops clvd with SIGTERM
 * and checks every message against a list of expectations
 * (lc_check_outputs): each exactly once, with the right envelope and
 * customer snapshot, in sequence order, and nothing else on any output
 * topic.  What only one test knows how to check (e.g. the BG/NBD figures of
 * test_value.c) it checks in hooks.
 *
 * Failures end the test with cmocka's fail_msg / assert_*, as in the tests
 * themselves. */
#ifndef CLVD_IT_LIFECYCLE_SUPPORT_H
#define CLVD_IT_LIFECYCLE_SUPPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "harness.h"

/* ---- fixture --------------------------------------------------------------- */

struct lc_fixture {
    struct h_redis redis; /* one per group (or a cluster), flushed before each test */
    char dir[H_PATHLEN];  /* configs and logs */
    int run;              /* clvd runs so far: unique group ids and file names */
    /* per test */
    struct h_kafka kafka;
    struct h_clvd clvd;
    int passed; /* set at the end of a test: teardown then keeps quiet */
};

/* cmocka group setup: the fixture and its Redis (`redis_masters` > 0: a
 * Redis Cluster of that many masters). */
int lc_group_setup(void **state, int redis_masters);
int lc_group_teardown(void **state);
/* cmocka per-test setup and teardown (the latter dumps clvd's log of a test
 * that did not pass, and kills what is left). */
int lc_setup(void **state);
int lc_teardown(void **state);

/* Fresh Redis data and a fresh mock cluster with the default topics. */
int lc_fresh_world(struct lc_fixture *f, int brokers, int in_partitions, char *err, size_t errlen);
/* Write a config for the current cluster and Redis, with `settings` (NULL,
 * or a NULL-terminated list of dotted key, raw YAML value pairs) on top of
 * the test template, and start clvd. */
void lc_start_clvd(struct lc_fixture *f, const char *name, const char *const *settings);
/* Read the outputs until `expected` messages arrived and the topics stayed
 * quiet; then SIGTERM clvd (exit 0 within 10 s) and check that nothing more
 * was published on the way out.  Too few messages is not fatal here: the
 * caller's lc_check_outputs() then says which ones are missing. */
void lc_collect_and_stop(struct lc_fixture *f, size_t expected, struct h_records *out);

/* Produce a JSON value (printf format); returns its offset. */
int64_t lc_send_json(struct lc_fixture *f, const char *topic, int32_t partition, const char *key,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* ---- expected outputs ------------------------------------------------------ */

struct lc_expect {
    const char *topic;
    const char *customer;
    int seq;
    const char *from; /* NULL: JSON null */
    const char *to;
    const char *reason;
    int64_t at;
    const char *kind;      /* win-back */
    const char *direction; /* tier changes; checked when not NULL */
    int purchases;
    double revenue;
    const char *tier;    /* customer.tier; checked when not NULL */
    const char *channel; /* customer.channel; checked when not NULL */
    /* For test_value.c's hook: */
    int model;      /* the model's figures: numbers for buyers (else null); 0: all null */
    double p_alive; /* customer.p_alive and the churn warning's risk; NAN: unchecked */
};

#define LC_MAX_EXPECT 96
struct lc_expectations {
    int n;
    int model; /* copied into every expectation (test_value.c: clv.model: bgnbd) */
    struct lc_expect e[LC_MAX_EXPECT];
};

/* Add one expectation (no kind, direction, tier or channel; P(alive)
 * unchecked); returns its index. */
int lc_expect(struct lc_expectations *x, const char *topic, const char *customer, int seq,
              const char *from, const char *to, const char *reason, int64_t at, int purchases,
              double revenue);
/* A stage change and what it implies (SPEC section 6): a churn warning when
 * entering at_risk; a win-back trigger when entering dormant or churned and
 * for returned / won_back, only for customers with >= 1 purchase.  Returns
 * the index of the first expectation added, so that the caller can refine
 * them. */
int lc_expect_stage(struct lc_expectations *x, const char *customer, int seq, const char *from,
                    const char *to, const char *reason, int64_t at, int purchases, double revenue);
/* Expectations on `topic` (NULL: all). */
size_t lc_expected_count(const struct lc_expectations *x, const char *topic);

/* ---- checking the outputs -------------------------------------------------- */

int lc_streq_or_null(const char *a, const char *b);
/* The one record of `topic` with event_id "customer:seq", or NULL (also when
 * there are several); `count` (if not NULL) gets how many there are. */
const struct h_record *lc_find_record(const struct h_records *rs, const char *topic,
                                      const char *customer, int seq, int *count);
/* Log a problem with expectation `e` ("  topic customer:seq: ..."). */
void lc_problem(FILE *log, const struct lc_expect *e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Hooks: more checks of one message (`customer`: its snapshot object, NULL
 * when it has none), and of all the outputs; problems go to `log`. */
typedef void lc_message_check(const struct lc_expect *e, const json_t *msg, const json_t *customer,
                              FILE *log);
typedef void lc_outputs_check(const struct lc_expectations *x, const struct h_records *rs,
                              FILE *log);

/* Every expected message exactly once with the right fields, per customer in
 * sequence order on each topic, and nothing else on any output topic; plus
 * the hooks (either may be NULL).  Fails the test listing every problem. */
void lc_check_outputs(const struct lc_expectations *x, const struct h_records *rs,
                      lc_message_check *message, lc_outputs_check *outputs);

#endif
