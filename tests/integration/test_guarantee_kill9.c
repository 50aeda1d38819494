/* test_guarantee_kill9.c -- SPEC section 8: at-least-once consumption,
 * exactly-once effect, no lost triggers, across kill -9.
 *
 * The whole stream (scenario.h, ~50 000 events) is produced first.  Then clvd
 * is started, killed with SIGKILL at a random moment 0.5-3 s (seeded) after
 * it got its partitions, and started again, at least KILLS times; a last run
 * goes on until the input is idle (--exit-when-idle).  The final Redis state
 * and the set of distinct outputs must equal those of an uninterrupted run,
 * and the kills must have hit the stream in the middle.
 *
 * Environment: see harness.h (CLVD_IT_KEEP, CLVD_IT_VERBOSE). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "scenario.h"

#define SEED 0x6b696c6c2d392d31ULL
#define KILLS 6
#define READY_TIMEOUT_MS 60000

static void test_kill9_and_restart(void **state)
{
    struct scen_fixture *f = *state;
    struct h_clvd *d = &f->d[0];
    char err[H_ERRLEN];
    uint64_t rng = SEED ^ 0x5eedULL;
    int mid_stream = 0;
    int64_t t0;

    if (scen_prepare(f, SEED, "kill9", 1, 0, 1, 1, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    t0 = h_mono_ms();
    for (int k = 0; k < KILLS; k++) {
        int64_t started = h_mono_ms(), ready;
        int delay;
        long customers;
        int64_t committed;

        if (scen_clvd_start(&f->w, d, f->config, "kill9", NULL, err, sizeof(err)) != 0)
            fail_msg("%s", err);
        /* a rebalance after the previous kill waits for the dead member's
         * session to time out: kill only once this run has partitions */
        if (h_clvd_wait_log(d, "ready", READY_TIMEOUT_MS) != 0)
            fail_msg("run %d: clvd not ready (no partitions) within %d ms", k + 1,
                     READY_TIMEOUT_MS);
        ready = h_mono_ms();
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        delay = 500 + (int)((rng >> 33) % 2501);
        h_sleep_ms(delay);
        if (!h_clvd_running(d))
            fail_msg("run %d: clvd exited by itself before the kill (wait status 0x%x)", k + 1,
                     d->status);
        h_clvd_kill9(d);
        customers = scen_redis_customers(&f->w);
        committed = scen_committed(&f->w, f->group);
        fprintf(stderr,
                "[kill9] run %d: ready after %.1f s, killed %d ms later; %ld of %zu customers in "
                "Redis, %lld of %zu input offsets committed\n",
                k + 1, (double)(ready - started) / 1000.0, delay, customers, f->ref.customers,
                (long long)committed, f->s.n);
        if (committed >= 0 && (size_t)committed < f->s.n)
            mid_stream++;
    }
    fprintf(stderr, "[timing] %d kills in %.1f s\n", KILLS, scen_secs(t0));
    /* at least half of the kills must have interrupted the stream, or the
     * test proves nothing */
    if (mid_stream < KILLS / 2)
        fail_msg("only %d of %d kills hit the stream before its end: clvd is too fast for this "
                 "test",
                 mid_stream, KILLS);
    if (scen_clvd_start(&f->w, d, f->config, "kill9-final", SCEN_IDLE_EXIT, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    if (scen_finish(f, d, "after kill -9", err, sizeof(err)) != 0)
        fail_msg("%s", err);
    f->passed = 1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_kill9_and_restart, scen_fixture_setup,
                                        scen_fixture_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
