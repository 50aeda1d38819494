/* test_harness.c -- self-test of the integration harness (no clvd needed):
 * private redis start / command / restart / stop, mock cluster produce and
 * consume round trip, config rendering, child process start / stop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

struct fixture {
    struct h_redis redis;
    char tmp[H_PATHLEN];
};

static int group_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char err[H_ERRLEN];

    if (f == NULL)
        return -1;
    if (h_tmpdir_create(f->tmp, sizeof(f->tmp), err, sizeof(err)) != 0 ||
        h_redis_start(&f->redis, err, sizeof(err)) != 0) {
        fprintf(stderr, "group setup: %s\n", err);
        h_redis_stop(&f->redis);
        h_tmpdir_remove(f->tmp);
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
    h_tmpdir_remove(f->tmp);
    free(f);
    return 0;
}

static void test_timestamps(void **state)
{
    char buf[32];

    (void)state;
    assert_int_equal(h_ts("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(h_ts("2025-01-01T00:00:00.250Z"), 1735689600250LL);
    assert_string_equal(h_fmt_ts(h_ts("2025-01-12T10:00:00Z") + 20 * H_DAY_MS, buf, sizeof(buf)),
                        "2025-02-01T10:00:00.000Z");
    assert_string_equal(h_fmt_ts(h_ts("2024-02-28T23:59:59.999Z") + 1, buf, sizeof(buf)),
                        "2024-02-29T00:00:00.000Z");
}

static void test_redis(void **state)
{
    struct fixture *f = *state;
    char reply[128], err[H_ERRLEN];
    struct h_redis p;

    assert_int_equal(h_redis_command(&f->redis, "PING", reply, sizeof(reply), err, sizeof(err)), 0);
    assert_string_equal(reply, "PONG");
    assert_int_equal(h_redis_command(&f->redis, "SET k v1", NULL, 0, err, sizeof(err)), 0);
    assert_int_equal(h_redis_command(&f->redis, "GET k", reply, sizeof(reply), err, sizeof(err)),
                     0);
    assert_string_equal(reply, "v1");
    assert_int_equal(h_redis_command(&f->redis, "NOSUCHCMD", NULL, 0, err, sizeof(err)), -1);

    /* Restart without persistence: same socket, data gone. */
    assert_int_equal(h_redis_restart(&f->redis, 0, err, sizeof(err)), 0);
    assert_int_equal(h_redis_command(&f->redis, "DBSIZE", reply, sizeof(reply), err, sizeof(err)),
                     0);
    assert_string_equal(reply, "0");

    /* A persistent instance keeps its data across a kill -9. */
    memset(&p, 0, sizeof(p));
    p.persist = 1;
    if (h_redis_start(&p, err, sizeof(err)) != 0) {
        h_redis_stop(&p);
        fail_msg("%s", err);
    }
    assert_int_equal(h_redis_command(&p, "SET k kept", NULL, 0, err, sizeof(err)), 0);
    assert_int_equal(h_redis_restart(&p, 1, err, sizeof(err)), 0);
    assert_int_equal(h_redis_command(&p, "GET k", reply, sizeof(reply), err, sizeof(err)), 0);
    assert_string_equal(reply, "kept");
    h_redis_stop(&p);
    assert_int_equal(p.pid, 0);
    assert_int_equal(access(p.socket, F_OK), -1);
    h_redis_stop(&p); /* idempotent */
}

static void test_kafka_round_trip(void **state)
{
    struct h_kafka k;
    struct h_records rs = {0};
    char err[H_ERRLEN];
    int64_t off[4];
    const char *const topics[] = {"in", "out", NULL};
    const char *const empty[] = {"empty", NULL};
    static const unsigned char binary[] = {'{', 0xff, 0xfe, 0x00, '}'};

    (void)state;
    if (h_kafka_start(&k, 3, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_true(strlen(k.bootstraps) > 0);
    assert_int_equal(h_kafka_create_topic(&k, "in", 3, err, sizeof(err)), 0);
    assert_int_equal(h_kafka_create_topic(&k, "out", 1, err, sizeof(err)), 0);
    assert_int_equal(h_kafka_create_topic(&k, "empty", 2, err, sizeof(err)), 0);

    assert_int_equal(h_produce_str(&k, "in", 0, "c1", "{\"a\":1}", &off[0], err, sizeof(err)), 0);
    assert_int_equal(h_produce_str(&k, "in", 2, NULL, "{\"a\":2}", &off[1], err, sizeof(err)), 0);
    assert_int_equal(h_produce_str(&k, "in", 0, "c1", "not json", &off[2], err, sizeof(err)), 0);
    assert_int_equal(
        h_produce(&k, "out", 0, "c2", binary, sizeof(binary), &off[3], err, sizeof(err)), 0);
    assert_int_equal(off[0], 0);
    assert_int_equal(off[1], 0);
    assert_int_equal(off[2], 1);
    assert_int_equal(off[3], 0);

    if (h_consume(k.bootstraps, topics, 4, 500, 20000, &rs, err, sizeof(err)) != 0) {
        h_records_dump(&rs, stderr);
        fail_msg("%s", err);
    }
    assert_int_equal(rs.n, 4);
    assert_int_equal(h_records_count(&rs, "in"), 3);
    assert_int_equal(h_records_count(&rs, "out"), 1);
    for (size_t i = 0; i < rs.n; i++) {
        const struct h_record *r = &rs.r[i];
        if (strcmp(r->topic, "out") == 0) {
            assert_int_equal(r->value_len, sizeof(binary));
            assert_memory_equal(r->value, binary, sizeof(binary));
            assert_null(r->json);
        } else if (r->partition == 2) {
            assert_null(r->key);
            assert_non_null(r->json);
            assert_true(h_json_has_number(r->json, "a", NULL));
        } else if (r->offset == 0) {
            assert_string_equal(r->key, "c1");
            assert_string_equal(r->value, "{\"a\":1}");
        } else {
            assert_int_equal(r->offset, 1);
            assert_null(r->json);
        }
    }
    h_records_free(&rs);

    /* An empty topic: returns once every partition reported its end. */
    assert_int_equal(h_consume(k.bootstraps, empty, 0, 300, 20000, &rs, err, sizeof(err)), 0);
    assert_int_equal(rs.n, 0);
    h_records_free(&rs);

    /* Expecting more than there is times out. */
    assert_int_equal(h_consume(k.bootstraps, empty, 1, 300, 1500, &rs, err, sizeof(err)), -1);
    h_records_free(&rs);

    h_kafka_stop(&k);
    h_kafka_stop(&k); /* idempotent */
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = calloc(1, (size_t)n + 1);
    if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

static void test_config(void **state)
{
    struct fixture *f = *state;
    struct h_config c;
    char path[H_PATHLEN + 16], err[H_ERRLEN], *text;

    snprintf(path, sizeof(path), "%s/cfg.yaml", f->tmp);
    assert_int_equal(h_config_init(&c, "127.0.0.1:1234", "g1", "/tmp/x/redis.sock"), 0);
    assert_int_equal(h_config_set(&c, "kafka.max_message_bytes", "%d", 4096), 0);
    assert_int_equal(h_config_set(&c, "lifecycle.at_risk.min_gap_days", "7"), 0);
    assert_int_equal(h_config_set(&c, "clock.lateness", "2s"), 0); /* replace */
    assert_int_equal(h_config_set(&c, "log.level", NULL), 0);      /* remove */
    assert_int_equal(h_config_set_str(&c, "kafka.group_id", "a\"b"), 0);
    assert_int_equal(h_config_write(&c, path, err, sizeof(err)), 0);
    h_config_free(&c);
    text = slurp(path);
    assert_non_null(text);
    assert_string_equal(text, "# written by the clvd integration tests\n"
                              "kafka:\n"
                              "  brokers: \"127.0.0.1:1234\"\n"
                              "  group_id: \"a\\\"b\"\n"
                              "  topics:\n"
                              "    purchases: \"purchases\"\n"
                              "    logins: \"logins\"\n"
                              "    visits: \"visits\"\n"
                              "    stage_changes: \"customer.stage-changes\"\n"
                              "    churn_warnings: \"customer.churn-warnings\"\n"
                              "    win_back: \"customer.win-back\"\n"
                              "    tier_changes: \"customer.tier-changes\"\n"
                              "    alerts: \"clvd.alerts\"\n"
                              "    dead_letter: \"clvd.dead-letter\"\n"
                              "  max_message_bytes: 4096\n"
                              "redis:\n"
                              "  unix_socket: \"/tmp/x/redis.sock\"\n"
                              "  shards: 16\n"
                              "clock:\n"
                              "  mode: event\n"
                              "  lateness: 2s\n"
                              "  idle_after: 1s\n"
                              "metrics:\n"
                              "  listen: \"\"\n"
                              "lifecycle:\n"
                              "  at_risk:\n"
                              "    min_gap_days: 7\n");
    free(text);
}

static void write_script(const char *path, const char *body)
{
    char err[H_ERRLEN];

    assert_int_equal(h_write_file(path, body, strlen(body), err, sizeof(err)), 0);
    assert_int_equal(chmod(path, 0755), 0);
}

static void test_process(void **state)
{
    struct fixture *f = *state;
    char script[H_PATHLEN + 16], log[H_PATHLEN + 16], err[H_ERRLEN];
    struct h_clvd d;

    snprintf(script, sizeof(script), "%s/fake.sh", f->tmp);
    snprintf(log, sizeof(log), "%s/fake.log", f->tmp);

    /* Graceful: exits 0 on SIGTERM. */
    write_script(script, "#!/bin/sh\ntrap 'echo bye >&2; exit 0' TERM\n"
                         "echo \"started $1 $2\" >&2\nwhile :; do sleep 0.05; done\n");
    assert_int_equal(h_clvd_start(&d, script, "cfg.yaml", log, err, sizeof(err)), 0);
    assert_int_equal(h_clvd_wait_log(&d, "started -c cfg.yaml", 5000), 0);
    assert_true(h_clvd_running(&d));
    assert_int_equal(h_clvd_stop(&d, 5000, err, sizeof(err)), 0);
    assert_int_equal(h_clvd_wait_log(&d, "bye", 1000), 0);

    /* Exits non-zero on SIGTERM. */
    write_script(script, "#!/bin/sh\ntrap 'exit 3' TERM\nwhile :; do sleep 0.05; done\n");
    assert_int_equal(h_clvd_start(&d, script, "cfg.yaml", log, err, sizeof(err)), 0);
    h_sleep_ms(200);
    assert_int_equal(h_clvd_stop(&d, 5000, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "exit status 3"));

    /* Ignores SIGTERM: killed after the timeout. */
    write_script(script, "#!/bin/sh\ntrap '' TERM\nwhile :; do sleep 0.05; done\n");
    assert_int_equal(h_clvd_start(&d, script, "cfg.yaml", log, err, sizeof(err)), 0);
    h_sleep_ms(200);
    assert_int_equal(h_clvd_stop(&d, 500, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "did not exit"));
    assert_false(h_clvd_running(&d));

    /* kill -9. */
    write_script(script, "#!/bin/sh\nwhile :; do sleep 0.05; done\n");
    assert_int_equal(h_clvd_start(&d, script, "cfg.yaml", log, err, sizeof(err)), 0);
    h_clvd_kill9(&d);
    assert_false(h_clvd_running(&d));

    /* A binary that does not exist. */
    assert_int_equal(h_clvd_start(&d, "/nonexistent/clvd", "cfg.yaml", log, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "No such file"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timestamps),       cmocka_unit_test(test_redis),
        cmocka_unit_test(test_kafka_round_trip), cmocka_unit_test(test_config),
        cmocka_unit_test(test_process),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
