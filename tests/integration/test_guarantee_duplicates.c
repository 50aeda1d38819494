/* test_guarantee_duplicates.c -- SPEC section 8: a duplicate message with an
 * event_id already applied is not applied again, and is counted.
 *
 * Every input message of the scenario (scenario.h, ~50 000 events) is
 * produced twice: the whole stream keyed by customer id, then the whole
 * stream again to partitions drawn at random -- same event ids, different
 * offsets, sometimes another partition than the original.  One clvd run to
 * idle must leave the state and the distinct outputs of the single-delivery
 * run, and report (last log line) consumed = 2N, applied = N, duplicates = N.
 *
 * With CLVD_IT_REDIS_CLUSTER=3 (ctest: integration_guarantee_duplicates_cluster)
 * the run uses a Redis Cluster of three masters, and must still give the
 * result of the reference run on one redis-server.
 *
 * Environment: see scenario.h and harness.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "scenario.h"

#define SEED 0x6475706c69636174ULL

static void test_every_message_twice(void **state)
{
    struct scen_fixture *f = *state;
    struct h_clvd *d = &f->d[0];
    struct scen_counts cnt;
    char err[H_ERRLEN];

    f->masters = h_redis_cluster_env();
    if (scen_prepare(f, SEED, "dups", 1, 0, 2, 0, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    if (scen_clvd_start(&f->w, d, f->config, "dups", SCEN_IDLE_EXIT, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    if (scen_finish(f, d, "every message twice", err, sizeof(err)) != 0)
        fail_msg("%s", err);
    if (scen_stopped_counts(d->log, &cnt) != 0)
        fail_msg("no \"stopped: consumed N, applied N, duplicates N\" line in %s", d->log);
    if (cnt.consumed != 2 * f->s.n || cnt.applied != f->s.n || cnt.duplicates != f->s.n)
        fail_msg("consumed %llu, applied %llu, duplicates %llu; want %zu, %zu, %zu",
                 (unsigned long long)cnt.consumed, (unsigned long long)cnt.applied,
                 (unsigned long long)cnt.duplicates, 2 * f->s.n, f->s.n, f->s.n);
    f->passed = 1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_message_twice, scen_fixture_setup,
                                        scen_fixture_teardown),
    };
    int skip = h_redis_cluster_skip(h_redis_cluster_env());

    if (skip != 0)
        return skip;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
