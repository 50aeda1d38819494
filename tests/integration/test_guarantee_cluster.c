/* test_guarantee_cluster.c -- SPEC section 13 on a Redis Cluster: clvd
 * follows MOVED / ASK and refreshes its slot map, and several instances
 * give the result of one.
 *
 * Both tests run the scenario (scenario.h) against a Redis Cluster of three
 * masters started by the harness and compare the result with the reference
 * run on one redis-server:
 *
 *   test_reshard_under_load  while one clvd consumes the stream (slowed
 *       down, ~15 s), 3000 slots move from the first master to the second,
 *       then 2000 from the second to the third, with `redis-cli --cluster
 *       reshard`.  The moved slots include those of shards s2, s6, s10 and
 *       s14 (redis-cli moves the source's lowest slots first), so keys move
 *       under live compare-and-set scripts, sweeps and outbox deletes.  clvd
 *       must log the redirections it followed.  Between the two, every
 *       master's script cache is flushed (NOSCRIPT in the middle of
 *       pipelines to three nodes) and the third master is stopped for 3 s
 *       (SIGSTOP: clvd's reads from it time out, the connection is dropped
 *       with replies of other nodes in flight, the batch is retried, the
 *       writes the stopped node applies late meet the compare-and-set);
 *       clvd must log that it reconnected.
 *   test_instances_1_2_3  the stream consumed by 1, then 2, then 3 clvd
 *       instances in one consumer group (fresh Kafka, flushed cluster and a
 *       new group each time); every run must give the reference result.
 *
 * Exits with 77 (skipped) only when redis-server or redis-cli is missing.
 * Environment: CLVD_IT_FILTER=<glob>; see scenario.h and harness.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "scenario.h"

#define MASTERS 3
#define SEED_RESHARD 0x7265736861726431ULL
#define SEED_INSTANCES 0x696e7374616e6365ULL
#define PROGRESS_TIMEOUT_MS 60000
#define STALL_MS 3000        /* > redis.timeout_ms (2 s), < the cluster node timeout (5 s) */
#define MULTI_IDLE_EXIT "8s" /* an instance's partitions may run dry before the others' */

/* ---- helpers ---------------------------------------------------------------------- */

/* The counts of clvd's last "redis cluster: followed N MOVED, N ASK, N
 * TRYAGAIN" line; -1 if there is none. */
static int redirections(const char *log, unsigned long long *moved, unsigned long long *ask,
                        unsigned long long *tryagain)
{
    static const char needle[] = "redis cluster: followed ";
    char line[512];
    const char *p;

    if (h_file_last_line(log, needle, line, sizeof(line)) != 0 ||
        (p = strstr(line, needle)) == NULL ||
        sscanf(p + sizeof(needle) - 1, "%llu MOVED, %llu ASK, %llu TRYAGAIN", moved, ask,
               tryagain) != 3)
        return -1;
    return 0;
}

/* Wait until group `group` has committed `share` of the input. */
static void wait_progress(struct scen_fixture *f, struct h_clvd *d, double share)
{
    int64_t t0 = h_mono_ms(), want = (int64_t)((double)f->s.n * share), got;

    while ((got = scen_committed(&f->w, f->group)) < want) {
        if (h_mono_ms() - t0 > PROGRESS_TIMEOUT_MS)
            fail_msg("only %lld of %zu input offsets committed after %d ms", (long long)got, f->s.n,
                     PROGRESS_TIMEOUT_MS);
        if (!h_clvd_running(d))
            fail_msg("clvd exited before %.0f %% of the input was committed", share * 100);
        h_sleep_ms(100);
    }
}

static void reshard(struct scen_fixture *f, int from, int to, int slots)
{
    char err[H_ERRLEN];
    int64_t t0 = h_mono_ms();

    if (h_redis_cluster_reshard(&f->w.redis, from, to, slots, err, sizeof(err)) != 0) {
        char log[H_PATHLEN + 32];
        snprintf(log, sizeof(log), "%s/reshard.log", f->w.redis.dir);
        h_dump_file(log, "redis-cli --cluster reshard", 4096, stderr);
        fail_msg("%s", err);
    }
    fprintf(stderr,
            "[cluster] moved %d slots from master %d to master %d in %.1f s, %lld of %zu input "
            "offsets committed; slots now %d / %d / %d\n",
            slots, from, to, scen_secs(t0), (long long)scen_committed(&f->w, f->group), f->s.n,
            h_redis_cluster_slot_count(&f->w.redis, 0), h_redis_cluster_slot_count(&f->w.redis, 1),
            h_redis_cluster_slot_count(&f->w.redis, 2));
}

/* ---- resharding under load ---------------------------------------------------------- */

static void test_reshard_under_load(void **state)
{
    struct scen_fixture *f = *state;
    struct h_clvd *d = &f->d[0];
    unsigned long long moved = 0, ask = 0, tryagain = 0;
    char err[H_ERRLEN];
    int busy;

    f->masters = MASTERS;
    if (scen_prepare(f, SEED_RESHARD, "reshard", 1, 0, 1, 1, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    /* the slots that move first hold shards (see the header) */
    busy = h_redis_cluster_owner(&f->w.redis, "{s2}");
    if (busy != 0 || h_redis_cluster_owner(&f->w.redis, "{s14}") != 0)
        fail_msg("unexpected slot layout: {s2} on master %d", busy);
    if (scen_clvd_start(&f->w, d, f->config, "reshard", SCEN_IDLE_EXIT, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    wait_progress(f, d, 0.15);
    reshard(f, 0, 1, 3000);
    if (h_redis_cluster_owner(&f->w.redis, "{s2}") != 1)
        fail_msg("shard s2 did not move");
    if (h_redis_command(&f->w.redis, "SCRIPT FLUSH", NULL, 0, err, sizeof(err)) != 0 ||
        h_redis_cluster_pause(&f->w.redis, 2, STALL_MS, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    fprintf(stderr,
            "[cluster] scripts flushed, master 2 stopped for %d ms; %lld of %zu committed\n",
            STALL_MS, (long long)scen_committed(&f->w, f->group), f->s.n);
    reshard(f, 1, 2, 2000);
    if (h_redis_cluster_owner(&f->w.redis, "{s14}") != 2)
        fail_msg("shard s14 did not move");
    if (scen_finish(f, d, "resharded twice under load", err, sizeof(err)) != 0)
        fail_msg("%s", err);
    if (redirections(d->log, &moved, &ask, &tryagain) != 0)
        fail_msg("clvd's log does not say it followed any redirection");
    fprintf(stderr, "[cluster] clvd followed %llu MOVED, %llu ASK, %llu TRYAGAIN\n", moved, ask,
            tryagain);
    if (moved == 0)
        fail_msg("no MOVED followed: the slots moved without clvd noticing?");
    if (h_file_count(d->log, "redis cluster: reconnected to") == 0)
        fail_msg("clvd did not reconnect to the stopped master (no \"reconnected\" line)");
    f->passed = 1;
}

/* ---- one, two and three instances ---------------------------------------------------- */

/* A fresh mock cluster with the stream, a flushed Redis Cluster and a new
 * group (its config in f->config). */
static void fresh_run(struct scen_fixture *f, int run, int throttle)
{
    char err[H_ERRLEN], name[32];
    struct h_config cfg;
    int rc;

    h_kafka_stop(&f->w.kafka);
    if (h_kafka_start(&f->w.kafka, 1, err, sizeof(err)) != 0 ||
        h_kafka_create_default_topics(&f->w.kafka, SCEN_IN_PARTITIONS, SCEN_OUT_PARTITIONS, err,
                                      sizeof(err)) != 0 ||
        scenario_produce(&f->s, &f->w, 1, err, sizeof(err)) != 0 ||
        h_redis_command(&f->w.redis, "FLUSHALL", NULL, 0, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    if (throttle)
        scen_throttle(&f->w, SCEN_RTT_MS);
    snprintf(f->group, sizeof(f->group), "clvd-instances-%d-%d", run, (int)getpid());
    snprintf(name, sizeof(name), "instances-%d", run);
    assert_int_equal(scen_config(&f->w, &cfg, f->group), 0);
    rc = scen_config_write(&f->w, &cfg, name, f->config, sizeof(f->config), err, sizeof(err));
    h_config_free(&cfg);
    if (rc != 0)
        fail_msg("%s", err);
}

static void run_instances(struct scen_fixture *f, int n)
{
    char err[H_ERRLEN], name[32], title[64];
    int64_t t0 = h_mono_ms();

    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "instances-%d-%c", n, 'a' + i);
        if (scen_clvd_start(&f->w, &f->d[i], f->config, name,
                            n == 1 ? SCEN_IDLE_EXIT : MULTI_IDLE_EXIT, err, sizeof(err)) != 0)
            fail_msg("%s", err);
    }
    for (int i = 0; i + 1 < n; i++)
        if (h_clvd_wait_exit(&f->d[i], SCEN_RUN_TIMEOUT_MS, err, sizeof(err)) != 0)
            fail_msg("instance %d of %d: %s", i + 1, n, err);
    snprintf(title, sizeof(title), "%d instance(s) on the cluster", n);
    if (scen_finish(f, &f->d[n - 1], title, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    for (int i = 0; i < n; i++) {
        char line[256] = "";
        int parts = 0;
        /* every instance took part: it had partitions at some point */
        if (h_file_count(f->d[i].log, "kafka: assigned ") == 0 ||
            h_file_count(f->d[i].log, "kafka: assigned 0 ") ==
                h_file_count(f->d[i].log, "kafka: assigned "))
            fail_msg("instance %d of %d never held a partition", i + 1, n);
        h_file_last_line(f->d[i].log, "kafka: assigned ", line, sizeof(line));
        if (strstr(line, "assigned ") != NULL)
            sscanf(strstr(line, "assigned ") + 9, "%d", &parts);
        fprintf(stderr, "[cluster] %d instance(s): instance %d last held %d partition(s)\n", n,
                i + 1, parts);
    }
    fprintf(stderr, "[timing] %d instance(s): %.1f s\n", n, scen_secs(t0));
}

static void test_instances_1_2_3(void **state)
{
    struct scen_fixture *f = *state;
    char err[H_ERRLEN];

    f->masters = MASTERS;
    if (scen_prepare(f, SEED_INSTANCES, "instances", 1, 0, 1, 0, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    run_instances(f, 1);
    for (int n = 2; n <= 3; n++) {
        /* slowed down, so that every instance joins while there is work */
        fresh_run(f, n, 1);
        run_instances(f, n);
    }
    f->passed = 1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reshard_under_load, scen_fixture_setup,
                                        scen_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_instances_1_2_3, scen_fixture_setup,
                                        scen_fixture_teardown),
    };
    const char *filter = getenv("CLVD_IT_FILTER");
    int skip = h_redis_cluster_skip(MASTERS);

    if (skip != 0)
        return skip;
    if (filter != NULL && *filter != '\0')
        cmocka_set_test_filter(filter);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
