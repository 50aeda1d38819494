/* test_guarantee_scale_out.c -- SPEC section 13: several clvd processes with
 * one group.id share the partitions; results are the same as with one
 * process -- here also when one of them dies.
 *
 * Two clvd instances in one consumer group consume the scenario's stream
 * (scenario.h), slowed down so that it takes ~15 s.  Once both hold
 * partitions and about 40 % of the input offsets are committed, one is
 * killed with SIGKILL; the other gets its partitions when the dead member's
 * session times out (6 s) and runs to idle.  The result must equal that of
 * one uninterrupted instance.  The survivor runs with --exit-when-idle
 * SURVIVOR_IDLE_EXIT: its own partitions may run dry before the group gives
 * it the dead member's, and it must not leave before.
 *
 * Environment: see scenario.h and harness.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "scenario.h"

#define SEED 0x7363616c656f7574ULL
#define SHARE_TIMEOUT_MS 60000
#define HALFWAY_TIMEOUT_MS 120000
#define SURVIVOR_IDLE_EXIT "12s"

/* Partitions of the last assignment logged, 0 if none (or revoked since). */
static int assigned_partitions(const struct h_clvd *d)
{
    char line[512];
    const char *p;
    int n = 0;

    if (h_file_last_line(d->log, "kafka: assigned ", line, sizeof(line)) != 0)
        return 0;
    p = strstr(line, "kafka: assigned ");
    if (p == NULL || sscanf(p + strlen("kafka: assigned "), "%d", &n) != 1)
        return 0;
    return n;
}

static void test_two_instances_one_killed(void **state)
{
    struct scen_fixture *f = *state;
    struct h_clvd *a = &f->d[0], *b = &f->d[1];
    char err[H_ERRLEN];
    int64_t t0, committed = 0;
    int na = 0, nb = 0;

    if (scen_prepare(f, SEED, "scale", 1, 0, 1, 1, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    if (scen_clvd_start(&f->w, a, f->config, "scale-a", NULL, err, sizeof(err)) != 0 ||
        scen_clvd_start(&f->w, b, f->config, "scale-b", SURVIVOR_IDLE_EXIT, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    /* both in the group, sharing the partitions */
    t0 = h_mono_ms();
    for (;;) {
        na = assigned_partitions(a);
        nb = assigned_partitions(b);
        if (na > 0 && nb > 0 && na + nb == 3 * SCEN_IN_PARTITIONS)
            break;
        if (h_mono_ms() - t0 > SHARE_TIMEOUT_MS)
            fail_msg("the two instances do not share the partitions after %d ms (%d and %d)",
                     SHARE_TIMEOUT_MS, na, nb);
        if (!h_clvd_running(a) || !h_clvd_running(b))
            fail_msg("an instance exited before sharing the partitions");
        h_sleep_ms(100);
    }
    fprintf(stderr, "[scale] partitions shared %d + %d after %.1f s\n", na, nb, scen_secs(t0));
    /* half-way (a little less: what is held in the event clock commits late) */
    while ((committed = scen_committed(&f->w, f->group)) < (int64_t)(f->s.n * 2 / 5)) {
        if (h_mono_ms() - t0 > HALFWAY_TIMEOUT_MS)
            fail_msg("only %lld of %zu input offsets committed after %d ms", (long long)committed,
                     f->s.n, HALFWAY_TIMEOUT_MS);
        if (!h_clvd_running(a) || !h_clvd_running(b))
            fail_msg("an instance exited before the kill");
        h_sleep_ms(200);
    }
    h_clvd_kill9(a);
    fprintf(stderr, "[scale] killed instance A at %lld of %zu input offsets committed, %.1f s\n",
            (long long)committed, f->s.n, scen_secs(t0));
    if ((size_t)committed >= f->s.n)
        fail_msg("the kill came after the end of the stream");
    if (scen_finish(f, b, "two instances, one killed", err, sizeof(err)) != 0)
        fail_msg("%s", err);
    fprintf(stderr, "[scale] instance B's last assignment: %d partition(s)\n",
            assigned_partitions(b));
    if (assigned_partitions(b) != 3 * SCEN_IN_PARTITIONS)
        fail_msg("the survivor never got the dead instance's partitions");
    f->passed = 1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_two_instances_one_killed, scen_fixture_setup,
                                        scen_fixture_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
