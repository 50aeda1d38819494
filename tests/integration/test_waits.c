/* test_waits.c -- what clvd waits for, and what it does not
 * (docs/performance.md, ninth and tenth sessions).
 *
 * a. test_wait_hook_runs_while_redis_answers
 *
 * The store's wait hook (store.h) runs about every millisecond while a reply
 * is awaited -- a single command and a pipeline's reply alike -- and the
 * replies are what Redis sent, in order.  BLPOP on an empty list with a
 * 0.3 s timeout is the slow reply; the hook must run at least 30 times (it
 * would run ~300 times on an idle machine) and not at all for a command
 * answered at once, nor with no hook set.
 *
 * b. test_wait_hook_keeps_the_timeout
 *
 * redis.timeout_ms still holds with a hook: BLPOP for 2 s on a connection
 * with a 200 ms timeout fails (NULL, connection dropped) after 0.2-1.5 s,
 * the hook having run meanwhile; the store connects again afterwards.
 *
 * c. test_output_topics_known_at_start
 *
 * clvd asks for its output topics' metadata when it starts, not at the
 * first output (which librdkafka would queue until its next topic scan).
 * The win-back topic is named "no-such-topic", which the mock cluster does
 * not have: once clvd has its partitions, with no input and so no output,
 * the mock lists the topic -- it creates a topic a producer asks for, as a
 * broker with auto.create.topics.enable does (a broker without it answers
 * "unknown topic", which clvd logs as a warning naming the topic).
 *
 * d. test_pipeline_written_as_it_grows
 *
 * A pipeline reaches Redis while it is still being built, not only when its
 * first reply is read, so that Redis works on one apply.lua call while a
 * worker computes the next (docs/performance.md, tenth session).  A 20 kB
 * SET is appended and no reply read: another connection must see the key
 * within a second.  With the old 256 kB threshold it stayed in hiredis's
 * buffer until the read.  Its reply, and a PING's after it, still come in
 * order.
 *
 * e. test_idle_exit_waits_for_unread_input
 *
 * --exit-when-idle (demo, tests) stops clvd only once its input is read to
 * the end, not merely quiet: with 5 visits in the topic and the broker
 * failing clvd's first 12 fetches (~6 s at librdkafka's 500 ms fetch error
 * backoff), clvd started with --exit-when-idle 1s must still run 2.5 s
 * after it got its partitions (it used to exit at 1 s with the visits
 * unread), then read the visits, commit them and exit by itself.
 *
 * Environment: see harness.h (CLVD_IT_KEEP, CLVD_IT_VERBOSE);
 * CLVD_IT_FILTER=<glob> runs only the matching tests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "config.h"
#include "harness.h"
#include "log.h"
#include "store.h"

struct fixture {
    struct h_world w;
    struct clv_config cfg;
    struct clv_log log;
    struct clv_store st;
    struct h_clvd clvd;
    int passed;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char err[H_ERRLEN];

    if (f == NULL)
        return -1;
    *state = f;
    if (h_world_start(&f->w, 1, err, sizeof(err)) != 0 ||
        config_defaults(&f->cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "setup: %s\n", err);
        return -1;
    }
    free(f->cfg.redis.unix_socket);
    f->cfg.redis.unix_socket = strdup(f->w.redis.socket);
    log_init(&f->log, CLV_LOG_WARNING, CLV_LOG_TEXT);
    return f->cfg.redis.unix_socket ? 0 : -1;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    if (f == NULL)
        return 0;
    if (!f->passed && f->clvd.log[0] != '\0')
        h_dump_file(f->clvd.log, "clvd log", 24 * 1024, stderr);
    h_clvd_kill9(&f->clvd);
    store_disconnect(&f->st);
    config_free(&f->cfg);
    h_world_stop(&f->w);
    free(f);
    return 0;
}

static void count_call(void *arg)
{
    (*(int *)arg)++;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void connect_store(struct fixture *f)
{
    char err[CLV_ERRLEN];

    store_init(&f->st, &f->cfg.redis, &f->log);
    if (store_ensure(&f->st, err, sizeof(err)) != 0)
        fail_msg("store_ensure: %s", err);
}

static void assert_reply(redisReply *r, int type, const char *str)
{
    if (r == NULL)
        fail_msg("no reply");
    assert_int_equal(r->type, type);
    if (str != NULL)
        assert_string_equal(r->str, str);
    freeReplyObject(r);
}

static void test_wait_hook_runs_while_redis_answers(void **state)
{
    struct fixture *f = *state;
    const char *blpop[] = {"BLPOP", "clvtest:empty", "0.3"}, *ping[] = {"PING"};
    const size_t blpop_len[] = {5, 13, 3}, ping_len[] = {4};
    int calls = 0;

    connect_store(f);
    /* no hook: nothing calls it */
    assert_reply(store_command(&f->st, "BLPOP clvtest:empty 0.05"), REDIS_REPLY_NIL, NULL);

    store_set_wait_hook(&f->st, count_call, &calls);
    assert_reply(store_command(&f->st, "SET clvtest:k v"), REDIS_REPLY_STATUS, "OK");
    assert_true(calls < 5); /* answered at once: a wait of a millisecond or two at most */

    calls = 0;
    assert_reply(store_command(&f->st, "BLPOP clvtest:empty 0.3"), REDIS_REPLY_NIL, NULL);
    if (calls < 30)
        fail_msg("the hook ran %d times in a 0.3 s wait", calls);

    /* a pipeline: the hook runs while the first reply is awaited, the
     * replies keep their order */
    calls = 0;
    store_append_argv(&f->st, 3, blpop, blpop_len);
    store_append_argv(&f->st, 1, ping, ping_len);
    assert_reply(store_read_reply(&f->st), REDIS_REPLY_NIL, NULL);
    assert_reply(store_read_reply(&f->st), REDIS_REPLY_STATUS, "PONG");
    if (calls < 30)
        fail_msg("the hook ran %d times in a 0.3 s pipelined wait", calls);
    assert_reply(store_command_argv(&f->st, 1, ping, ping_len), REDIS_REPLY_STATUS, "PONG");
    assert_true(store_connected(&f->st));
    f->passed = 1;
}

static void test_wait_hook_keeps_the_timeout(void **state)
{
    struct fixture *f = *state;
    char err[CLV_ERRLEN];
    int calls = 0;
    double t0, took;

    f->cfg.redis.timeout_ms = 200;
    connect_store(f);
    store_set_wait_hook(&f->st, count_call, &calls);
    t0 = now_s();
    assert_null(store_command(&f->st, "BLPOP clvtest:empty 2"));
    took = now_s() - t0;
    if (took < 0.2 || took > 1.5)
        fail_msg("a 200 ms timeout took %.3f s", took);
    assert_false(store_connected(&f->st));
    assert_true(calls >= 20);

    /* the backoff passes, and the store connects again */
    usleep(300 * 1000);
    if (store_ensure(&f->st, err, sizeof(err)) != 0)
        fail_msg("reconnect: %s", err);
    assert_reply(store_command(&f->st, "PING"), REDIS_REPLY_STATUS, "PONG");
    f->passed = 1;
}

/* 1 if `key` exists, asked on a connection of its own. */
static int key_exists_elsewhere(struct fixture *f, const char *key)
{
    redisContext *c = redisConnectUnix(f->w.redis.socket);
    redisReply *r;
    int exists = -1;

    if (c == NULL || c->err)
        fail_msg("connect: %s", c ? c->errstr : "no memory");
    r = redisCommand(c, "EXISTS %s", key);
    if (r != NULL && r->type == REDIS_REPLY_INTEGER)
        exists = (int)r->integer;
    freeReplyObject(r);
    redisFree(c);
    if (exists < 0)
        fail_msg("EXISTS %s: no integer reply", key);
    return exists;
}

static void test_pipeline_written_as_it_grows(void **state)
{
    struct fixture *f = *state;
    static char value[20 * 1024];
    const char *set[] = {"SET", "clvtest:early", value}, *ping[] = {"PING"};
    const size_t set_len[] = {3, 13, sizeof(value)}, ping_len[] = {4};
    double t0;

    memset(value, 'v', sizeof(value));
    connect_store(f);
    store_append_argv(&f->st, 3, set, set_len);
    store_append_argv(&f->st, 1, ping, ping_len);
    t0 = now_s();
    while (!key_exists_elsewhere(f, "clvtest:early")) {
        if (now_s() - t0 > 1.0)
            fail_msg("a 20 kB command appended 1 s ago has not reached Redis");
        usleep(10 * 1000);
    }
    assert_reply(store_read_reply(&f->st), REDIS_REPLY_STATUS, "OK");
    assert_reply(store_read_reply(&f->st), REDIS_REPLY_STATUS, "PONG");
    assert_true(store_connected(&f->st));
    f->passed = 1;
}

/* Write config c (and free it), start clvd with it and the extra
 * arguments (or NULL), and wait until it has its partitions. */
static void start_clvd(struct fixture *f, struct h_config *c, const char *const *extra)
{
    char err[H_ERRLEN], path[H_PATHLEN + 16], log[H_PATHLEN + 16];

    snprintf(path, sizeof(path), "%s/clvd.yaml", f->w.dir);
    snprintf(log, sizeof(log), "%s/clvd.log", f->w.dir);
    if (h_config_write(c, path, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    h_config_free(c);
    if (h_clvd_start_args(&f->clvd, CLVD_BINARY, path, log, extra, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    if (h_clvd_wait_log(&f->clvd, "kafka: assigned", 20000) != 0)
        fail_msg("clvd got no partitions");
}

/* 1 if the cluster lists `topic` (all topics: asking for this one by name
 * would create it), 0 if not, -1 on error. */
static int cluster_has_topic(struct fixture *f, const char *topic)
{
    const struct rd_kafka_metadata *md = NULL;
    int found = 0;

    if (rd_kafka_metadata(f->w.kafka.producer, 1, NULL, &md, 5000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return -1;
    for (int i = 0; i < md->topic_cnt; i++)
        if (strcmp(md->topics[i].topic, topic) == 0 &&
            md->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR)
            found = 1;
    rd_kafka_metadata_destroy(md);
    return found;
}

static void test_output_topics_known_at_start(void **state)
{
    struct fixture *f = *state;
    char err[H_ERRLEN];
    struct h_config c;

    if (h_config_init(&c, f->w.kafka.bootstraps, "clvd-waits", f->w.redis.socket) != 0 ||
        h_config_set_str(&c, "kafka.topics.win_back", "no-such-topic") != 0)
        fail_msg("config");
    assert_int_equal(cluster_has_topic(f, "no-such-topic"), 0);
    start_clvd(f, &c, NULL);
    /* no input, no output yet: only clvd's start can have asked for it (the
     * mock creates a topic a producer asks for, as a broker with
     * auto.create.topics.enable does; one without names it in a warning) */
    assert_int_equal(cluster_has_topic(f, "no-such-topic"), 1);
    if (h_clvd_stop(&f->clvd, 15000, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    f->passed = 1;
}

#define API_FETCH 1 /* Kafka protocol ApiKey */

static void test_idle_exit_waits_for_unread_input(void **state)
{
    struct fixture *f = *state;
    const char *const idle[] = {"--exit-when-idle", "1s", NULL};
    char err[H_ERRLEN], value[256], id[32], iso[32];
    rd_kafka_resp_err_t fails[12];
    struct h_config c;

    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof(id), "c%d", i);
        snprintf(value, sizeof(value),
                 "{\"event_id\":\"e%d\",\"customer_id\":\"%s\",\"ts\":\"%s\"}", i, id,
                 h_fmt_ts(1717200000000LL + i * 1000, iso, sizeof(iso)));
        if (h_produce_str(&f->w.kafka, H_T_VISITS, 0, id, value, NULL, err, sizeof(err)) != 0)
            fail_msg("%s", err);
    }
    for (size_t i = 0; i < sizeof(fails) / sizeof(fails[0]); i++)
        fails[i] = RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT;
    rd_kafka_mock_push_request_errors_array(f->w.kafka.mcluster, API_FETCH,
                                            sizeof(fails) / sizeof(fails[0]), fails);

    if (h_config_init(&c, f->w.kafka.bootstraps, "clvd-idle", f->w.redis.socket) != 0)
        fail_msg("config");
    start_clvd(f, &c, idle);
    h_sleep_ms(2500);
    if (!h_clvd_running(&f->clvd))
        fail_msg("clvd exited (wait status 0x%x) with its input unread: %lld of 5 committed",
                 f->clvd.status,
                 (long long)h_kafka_committed(f->w.kafka.bootstraps, "clvd-idle", h_input_topics,
                                              err, sizeof(err)));
    if (h_clvd_wait_exit(&f->clvd, 60000, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_int_equal(
        h_kafka_committed(f->w.kafka.bootstraps, "clvd-idle", h_input_topics, err, sizeof(err)), 5);
    f->passed = 1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_wait_hook_runs_while_redis_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_hook_keeps_the_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_topics_known_at_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_written_as_it_grows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_exit_waits_for_unread_input, setup, teardown),
    };
    const char *filter = getenv("CLVD_IT_FILTER");

    if (filter != NULL && *filter != '\0')
        cmocka_set_test_filter(filter);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
