/* test_guarantee_small_prefetch.c -- a backlog read through a tiny Kafka
 * prefetch queue (include/fetchwake.h): nothing lost, and fetching keeps up.
 *
 * The scenario's stream (scenario.h, ~50 000 events) is produced first;
 * clvd consumes it with kafka.properties queued.min.messages 200 and
 * queued.max.messages.kbytes 64, so librdkafka stops fetching every couple
 * of hundred messages.  In librdkafka 2.0.2 a stopped partition is looked
 * at again only when its broker thread next wakes -- up to a second later --
 * unless clvd's fetch waker sends that thread a request once the queue has
 * drained.  The run must give the result of the reference run, count its
 * wakes in clvd_kafka_fetch_wakeups_total, and read the backlog in less
 * than MAX_READ_MS.  Measured: 9 s with the waker, group join included;
 * 127 s with the clvd of the commit before it, which had none.
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

#define SEED 0x7072656665746368ULL
#define PROPERTIES "queued.min.messages: \"200\", queued.max.messages.kbytes: \"64\""
#define SCRAPE_EVERY_MS 200
/* Reading the whole stream, from clvd's start to its last event applied. */
#define MAX_READ_MS 40000

/* clvd_kafka_fetch_wakeups_total and clvd_events_applied_total, scraped
 * while clvd runs (it exits when idle); the last values seen, and when the
 * applied count last moved. */
struct progress {
    double wakeups, applied;
    int64_t applied_moved_ms;
};

static void scrape(int port, struct progress *pr, int64_t t0)
{
    struct prom_page p;
    char err[256];
    double v;

    if (prom_scrape(port, &p, NULL, err, sizeof(err)) != 0)
        return;
    if (prom_get(&p, "clvd_kafka_fetch_wakeups_total", "", &v))
        pr->wakeups = v;
    if (prom_get(&p, "clvd_events_applied_total", "", &v) && v > pr->applied) {
        pr->applied = v;
        pr->applied_moved_ms = h_mono_ms() - t0;
    }
    prom_page_free(&p);
}

static void test_backlog_through_small_prefetch(void **state)
{
    struct scen_fixture *f = *state;
    struct h_clvd *d = &f->d[0];
    struct progress pr = {0, 0, 0};
    char err[H_ERRLEN] = "";
    int port = prom_free_port();
    int64_t t0;

    if (scen_prepare(f, SEED, "prefetch", 1, 0, 1, 0, err, sizeof(err)) != 0 ||
        scen_config_write_with(f, "prefetch-small", port, PROPERTIES, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    t0 = h_mono_ms();
    if (scen_clvd_start(&f->w, d, f->config, "prefetch", SCEN_IDLE_EXIT, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    while (h_clvd_running(d) && h_mono_ms() - t0 < SCEN_RUN_TIMEOUT_MS) {
        scrape(port, &pr, t0);
        h_sleep_ms(SCRAPE_EVERY_MS);
    }
    fprintf(stderr, "[prefetch] %.0f events applied, the last %.1f s after start; %.0f wakeups\n",
            pr.applied, (double)pr.applied_moved_ms / 1000.0, pr.wakeups);
    if (scen_finish(f, d, "small prefetch", err, sizeof(err)) != 0)
        fail_msg("%s", err);
    if (pr.applied != (double)f->s.n)
        fail_msg("clvd_events_applied_total last read %.0f, want %zu", pr.applied, f->s.n);
    if (pr.wakeups < 1)
        fail_msg("clvd_kafka_fetch_wakeups_total = %.0f: the fetch waker never fired", pr.wakeups);
    if (pr.applied_moved_ms > MAX_READ_MS)
        fail_msg("the backlog took %.1f s to read (limit %d s): fetching stalled on the full "
                 "prefetch queue",
                 (double)pr.applied_moved_ms / 1000.0, MAX_READ_MS / 1000);
    f->passed = 1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_backlog_through_small_prefetch, scen_fixture_setup,
                                        scen_fixture_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
