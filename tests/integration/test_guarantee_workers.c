/* test_guarantee_workers.c -- SPEC sections 4 and 8 with processing.workers:
 * the result does not depend on how many threads apply the batches, nor on
 * a kill -9 while several of them have batches in flight.
 *
 * The reference is the clean run of the scenario (scenario.h) with the
 * default configuration (2 workers).  Then, each on a fresh Redis and Kafka:
 *   - one worker, the stream at full speed, one run to idle;
 *   - three workers, the stream slowed down (~15 s), clvd killed with
 *     SIGKILL KILLS times at a random moment (seeded) after it got its
 *     partitions, then a last run to idle.
 * Each result must equal the reference: same distinct outputs, same Redis
 * state, no outbox entry left.
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

#define SEED 0x776f726b65727321ULL
#define KILLS 3
#define READY_TIMEOUT_MS 60000

/* Rewrite the run's config (f->config) with processing.workers = n. */
static void use_workers(struct scen_fixture *f, const char *name, int n)
{
    struct h_config cfg;
    char err[H_ERRLEN];

    if (scen_config(&f->w, &cfg, f->group) != 0 ||
        h_config_set(&cfg, "processing.workers", "%d", n) != 0)
        fail_msg("config: out of memory");
    if (scen_config_write(&f->w, &cfg, name, f->config, sizeof(f->config), err, sizeof(err)) != 0)
        fail_msg("%s", err);
    h_config_free(&cfg);
}

/* The log says how many workers the run had. */
static void expect_workers(const struct h_clvd *d, int n)
{
    char needle[64];

    snprintf(needle, sizeof(needle), "shards, %d worker(s))", n);
    if (h_file_count(d->log, needle) < 1)
        fail_msg("%s: no \"%s\": processing.workers not applied", d->log, needle);
}

/* A fresh world for the next run, the stream produced into it once. */
static void fresh_world(struct scen_fixture *f, const char *name, int throttle)
{
    char err[H_ERRLEN];

    scen_world_stop(&f->w);
    if (scen_world_start(&f->w, name, 1, 0, err, sizeof(err)) != 0 ||
        scenario_produce(&f->s, &f->w, 1, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    if (throttle)
        scen_throttle(&f->w, SCEN_RTT_MS);
}

static void one_worker(struct scen_fixture *f)
{
    struct h_clvd *d = &f->d[0];
    char err[H_ERRLEN];

    use_workers(f, "workers1", 1);
    if (scen_clvd_start(&f->w, d, f->config, "workers1", SCEN_IDLE_EXIT, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    if (scen_finish(f, d, "one worker", err, sizeof(err)) != 0)
        fail_msg("%s", err);
    expect_workers(d, 1);
}

static void three_workers_killed(struct scen_fixture *f)
{
    struct h_clvd *d = &f->d[1];
    char err[H_ERRLEN];
    uint64_t rng = SEED ^ 0x5eedULL;
    int mid_stream = 0;

    fresh_world(f, "workers3", 1);
    use_workers(f, "workers3", 3);
    for (int k = 0; k < KILLS; k++) {
        int64_t committed;
        int delay;

        if (scen_clvd_start(&f->w, d, f->config, "workers3", NULL, err, sizeof(err)) != 0)
            fail_msg("%s", err);
        if (h_clvd_wait_log(d, "ready", READY_TIMEOUT_MS) != 0)
            fail_msg("run %d: clvd not ready (no partitions) within %d ms", k + 1,
                     READY_TIMEOUT_MS);
        expect_workers(d, 3);
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        delay = 500 + (int)((rng >> 33) % 2001);
        h_sleep_ms(delay);
        if (!h_clvd_running(d))
            fail_msg("run %d: clvd exited by itself before the kill (wait status 0x%x)", k + 1,
                     d->status);
        h_clvd_kill9(d);
        committed = scen_committed(&f->w, f->group);
        fprintf(stderr,
                "[workers] run %d: killed %d ms after ready; %lld of %zu offsets committed\n",
                k + 1, delay, (long long)committed, f->s.n);
        if (committed >= 0 && (size_t)committed < f->s.n)
            mid_stream++;
    }
    if (mid_stream < (KILLS + 1) / 2)
        fail_msg("only %d of %d kills hit the stream before its end", mid_stream, KILLS);
    if (scen_clvd_start(&f->w, d, f->config, "workers3-final", SCEN_IDLE_EXIT, err, sizeof(err)) !=
        0)
        fail_msg("%s", err);
    if (scen_finish(f, d, "three workers, kill -9", err, sizeof(err)) != 0)
        fail_msg("%s", err);
}

static void test_result_independent_of_workers(void **state)
{
    struct scen_fixture *f = *state;
    char err[H_ERRLEN];
    int64_t t0;

    if (scen_prepare(f, SEED, "workers", 1, 0, 1, 0, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    t0 = h_mono_ms();
    one_worker(f);
    fprintf(stderr, "[timing] one worker: %.1f s\n", scen_secs(t0));
    t0 = h_mono_ms();
    three_workers_killed(f);
    fprintf(stderr, "[timing] three workers, %d kills: %.1f s\n", KILLS, scen_secs(t0));
    f->passed = 1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_result_independent_of_workers, scen_fixture_setup,
                                        scen_fixture_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
