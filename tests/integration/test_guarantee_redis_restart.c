/* test_guarantee_redis_restart.c -- SPEC section 8: Redis down or restarted:
 * consumption pauses, reconnects with backoff, resumes, nothing lost.
 *
 * The scenario's stream (scenario.h) is produced first; clvd consumes it,
 * slowed down so that it takes ~15 s.  About a second after clvd got its
 * partitions, redis-server is killed (SIGKILL; the append-only file is
 * fsynced on every write, so nothing acknowledged is lost), stays down for
 * DOWN_MS and is started again with its data.  Redis forgets its scripts on
 * a restart anyway; once clvd has reconnected the test also runs SCRIPT
 * FLUSH, so that clvd meets NOSCRIPT on a live connection.  The run must
 * then complete with the result of the run without the fault, and
 * /metrics must have counted the reconnects (and, in test_metrics_scrape,
 * none without an outage).
 *
 * Environment: see scenario.h and harness.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "promtext.h"
#include "scenario.h"

#define SEED 0x7265646973727374ULL
#define READY_TIMEOUT_MS 60000
#define UP_FOR_MS 1000
#define DOWN_MS 4000
#define RECONNECT_TIMEOUT_MS 30000
#define METRICS_TIMEOUT_MS 5000 /* clvd publishes its page once a second */

/* clvd_redis_reconnects_total once it is at least 1 (the main thread's
 * connection and the workers' were all cut); -1 if it never gets there. */
static double reconnects_counted(int port)
{
    int64_t t0 = h_mono_ms();
    double v = -1;

    while (h_mono_ms() - t0 < METRICS_TIMEOUT_MS) {
        struct prom_page p;
        char err[256];
        if (prom_scrape(port, &p, NULL, err, sizeof(err)) == 0) {
            int found = prom_get(&p, "clvd_redis_reconnects_total", "", &v);
            prom_page_free(&p);
            if (found && v >= 1)
                return v;
        }
        h_sleep_ms(200);
    }
    return v;
}

static void test_redis_restart_mid_stream(void **state)
{
    struct scen_fixture *f = *state;
    struct h_clvd *d = &f->d[0];
    char err[H_ERRLEN] = "", reply[64];
    int64_t committed, t0;
    int connects, port = prom_free_port();
    double reconnects;

    if (scen_prepare(f, SEED, "redis", 1, 1, 1, 1, err, sizeof(err)) != 0 ||
        scen_config_write_with(f, "redis-metrics", port, NULL, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    if (scen_clvd_start(&f->w, d, f->config, "redis", SCEN_IDLE_EXIT, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    if (h_clvd_wait_log(d, "ready", READY_TIMEOUT_MS) != 0)
        fail_msg("clvd not ready (no partitions) within %d ms", READY_TIMEOUT_MS);
    h_sleep_ms(UP_FOR_MS);
    connects = h_file_count(d->log, "redis: connected");
    t0 = h_mono_ms();
    if (h_redis_restart_after(&f->w.redis, 1, DOWN_MS, err, sizeof(err)) != 0)
        fail_msg("restarting redis-server: %s", err);
    fprintf(stderr, "[redis] killed redis-server, down %d ms, restarted with its data\n", DOWN_MS);
    if (!h_clvd_running(d))
        fail_msg("clvd exited while Redis was down (wait status 0x%x)", d->status);
    committed = scen_committed(&f->w, f->group);
    if (committed < 0 || (size_t)committed >= f->s.n)
        fail_msg("the outage did not hit the stream in its middle: %lld of %zu input offsets "
                 "committed",
                 (long long)committed, f->s.n);
    fprintf(stderr, "[redis] %lld of %zu input offsets committed at restart\n",
            (long long)committed, f->s.n);
    /* once clvd is back, drop the scripts under its feet */
    while (h_file_count(d->log, "redis: connected") <= connects) {
        if (h_mono_ms() - t0 > RECONNECT_TIMEOUT_MS)
            fail_msg("clvd did not reconnect to Redis within %d ms of the restart",
                     RECONNECT_TIMEOUT_MS);
        if (!h_clvd_running(d))
            fail_msg("clvd exited before reconnecting (wait status 0x%x)", d->status);
        h_sleep_ms(50);
    }
    if (h_redis_command(&f->w.redis, "SCRIPT FLUSH", reply, sizeof(reply), err, sizeof(err)) != 0)
        fail_msg("SCRIPT FLUSH: %s", err);
    fprintf(stderr, "[redis] clvd reconnected %.1f s after the kill; SCRIPT FLUSH: %s\n",
            scen_secs(t0), reply);
    reconnects = reconnects_counted(port);
    if (reconnects < 1)
        fail_msg("clvd_redis_reconnects_total = %g after the restart, want >= 1", reconnects);
    fprintf(stderr, "[redis] clvd_redis_reconnects_total = %g\n", reconnects);
    if (scen_finish(f, d, "redis restart", err, sizeof(err)) != 0)
        fail_msg("%s", err);
    f->passed = 1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_redis_restart_mid_stream, scen_fixture_setup,
                                        scen_fixture_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
