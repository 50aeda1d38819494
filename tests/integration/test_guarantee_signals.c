/* test_guarantee_signals.c -- SPEC section 8, shutdown and reload.
 *
 * sigterm: the scenario's stream (scenario.h), slowed down to ~15 s, is
 *   interrupted twice with SIGTERM: clvd must exit 0 within 10 s each time
 *   (having logged its final counts), and a last run to idle must give the
 *   result of an uninterrupted run.
 *
 * sighup: a small hand-made stream, fed while clvd runs:
 *   - SIGHUP with lifecycle.dormant_after_days changed from 60 to 10 takes
 *     effect without a restart: a customer first seen afterwards goes
 *     dormant 10 days after its last activity, and so does one seen before
 *     the reload (its deadline moved earlier: it must not wait for the old
 *     one);
 *   - SIGHUP with kafka.brokers changed (and dormant_after_days 5) is
 *     refused and logged, naming kafka.brokers; clvd keeps running with the
 *     config it had: the next customer goes dormant after 10 days, not 5.
 *
 * Environment: CLVD_IT_FILTER=<glob> runs only the matching tests; see
 * scenario.h and harness.h. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "scenario.h"

#define SEED 0x7369677465726d31ULL
#define READY_TIMEOUT_MS 60000
#define STOP_TIMEOUT_MS 10000
#define OUTPUT_TIMEOUT_MS 30000

/* ---- SIGTERM mid-stream ---------------------------------------------------------- */

static void test_sigterm_mid_stream(void **state)
{
    struct scen_fixture *f = *state;
    struct h_clvd *d = &f->d[0];
    static const int run_ms[] = {2000, 3500};
    char err[H_ERRLEN];

    if (scen_prepare(f, SEED, "sigterm", 1, 0, 1, 1, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    for (int i = 0; i < 2; i++) {
        struct scen_counts cnt;
        int64_t t0, committed;

        if (scen_clvd_start(&f->w, d, f->config, "sigterm", NULL, err, sizeof(err)) != 0)
            fail_msg("%s", err);
        if (h_clvd_wait_log(d, "ready", READY_TIMEOUT_MS) != 0)
            fail_msg("run %d: clvd not ready (no partitions) within %d ms", i + 1,
                     READY_TIMEOUT_MS);
        h_sleep_ms(run_ms[i]);
        t0 = h_mono_ms();
        if (h_clvd_stop(d, STOP_TIMEOUT_MS, err, sizeof(err)) != 0)
            fail_msg("run %d: SIGTERM: %s", i + 1, err);
        fprintf(stderr, "[sigterm] run %d: exited 0 %.2f s after SIGTERM\n", i + 1, scen_secs(t0));
        if (scen_stopped_counts(d->log, &cnt) != 0)
            fail_msg("run %d: no final counts (\"stopped: consumed ...\") in %s", i + 1, d->log);
        committed = scen_committed(&f->w, f->group);
        fprintf(stderr,
                "[sigterm] run %d: consumed %llu, applied %llu, duplicates %llu; %lld of %zu "
                "input offsets committed\n",
                i + 1, (unsigned long long)cnt.consumed, (unsigned long long)cnt.applied,
                (unsigned long long)cnt.duplicates, (long long)committed, f->s.n);
        if (committed < 0 || (size_t)committed >= f->s.n)
            fail_msg("run %d: SIGTERM did not hit the stream in its middle", i + 1);
    }
    if (scen_clvd_start(&f->w, d, f->config, "sigterm-final", SCEN_IDLE_EXIT, err, sizeof(err)) !=
        0)
        fail_msg("%s", err);
    if (scen_finish(f, d, "after SIGTERM twice", err, sizeof(err)) != 0)
        fail_msg("%s", err);
    f->passed = 1;
}

/* ---- SIGHUP ---------------------------------------------------------------------- */

struct want {
    const char *event_id;
    const char *from, *to, *reason; /* from "null" for none */
    int64_t at;
};

static void write_config(struct scen_fixture *f, const char *brokers, int dormant_days)
{
    struct h_config cfg;
    char err[H_ERRLEN];
    int rc;

    assert_int_equal(scen_config(&f->w, &cfg, f->group), 0);
    assert_int_equal(h_config_set_str(&cfg, "kafka.brokers", brokers), 0);
    assert_int_equal(h_config_set(&cfg, "lifecycle.dormant_after_days", "%d", dormant_days), 0);
    rc = scen_config_write(&f->w, &cfg, "sighup", f->config, sizeof(f->config), err, sizeof(err));
    h_config_free(&cfg);
    if (rc != 0)
        fail_msg("%s", err);
}

static void visit(struct scen_fixture *f, const char *customer, const char *event_id, int64_t ts)
{
    char value[256], iso[32], err[H_ERRLEN];

    snprintf(value, sizeof(value), "{\"event_id\":\"%s\",\"customer_id\":\"%s\",\"ts\":\"%s\"}",
             event_id, customer, h_fmt_ts(ts, iso, sizeof(iso)));
    if (h_produce_str(&f->w.kafka, H_T_VISITS, RD_KAFKA_PARTITION_UA, customer, value, NULL, err,
                      sizeof(err)) != 0)
        fail_msg("%s", err);
}

/* Read customer.stage-changes until every wanted stage change is there or
 * timeout_ms passed; returns how many are missing (0: all there).  Then
 * check that the customers whose id starts with `prefix` have no stage
 * change but wanted ones, with the wanted fields. */
static int expect_stage_changes(struct scen_fixture *f, const struct want *w, int n,
                                const char *prefix, int timeout_ms)
{
    static const char *const topics[] = {H_T_STAGE, NULL};
    int64_t t0 = h_mono_ms();
    struct h_records rs = {0};
    char err[H_ERRLEN];
    int missing;

    for (;;) {
        missing = 0;
        h_records_free(&rs);
        h_consume(f->w.kafka.bootstraps, topics, 0, 300, 10000, &rs, err, sizeof(err));
        for (int i = 0; i < n; i++) {
            int found = 0;
            for (size_t k = 0; k < rs.n && !found; k++) {
                const char *id = h_json_str(rs.r[k].json, "event_id");
                found = id != NULL && strcmp(id, w[i].event_id) == 0;
            }
            missing += !found;
        }
        if (missing == 0 || h_mono_ms() - t0 > timeout_ms)
            break;
        if (!h_clvd_running(&f->d[0]))
            fail_msg("clvd exited (wait status 0x%x)", f->d[0].status);
        h_sleep_ms(300);
    }
    for (size_t k = 0; k < rs.n; k++) {
        const json_t *j = rs.r[k].json;
        const char *id = h_json_str(j, "event_id"), *cust = h_json_str(j, "customer_id");
        const char *from = h_json_is_null(j, "from") ? "null" : h_json_str(j, "from");
        const char *to = h_json_str(j, "to"), *reason = h_json_str(j, "reason");
        const char *at = h_json_str(j, "at");
        int known = 0;
        char want_at[32];

        if (cust == NULL || strncmp(cust, prefix, strlen(prefix)) != 0)
            continue;
        for (int i = 0; i < n && !known; i++) {
            if (id == NULL || strcmp(id, w[i].event_id) != 0)
                continue;
            known = 1;
            h_fmt_ts(w[i].at, want_at, sizeof(want_at));
            if (from == NULL || strcmp(from, w[i].from) != 0 || to == NULL ||
                strcmp(to, w[i].to) != 0 || reason == NULL || strcmp(reason, w[i].reason) != 0 ||
                at == NULL || strcmp(at, want_at) != 0) {
                h_records_dump(&rs, stderr);
                h_records_free(&rs);
                fail_msg("%s: got %s -> %s (%s) at %s; want %s -> %s (%s) at %s", w[i].event_id,
                         from, to, reason, at, w[i].from, w[i].to, w[i].reason, want_at);
            }
        }
        if (!known) {
            h_records_dump(&rs, stderr);
            h_records_free(&rs);
            fail_msg("unexpected stage change %s (%s -> %s, %s, at %s)", id ? id : "(none)", from,
                     to, reason, at);
        }
    }
    if (missing > 0) {
        for (int i = 0; i < n; i++)
            fprintf(stderr, "  want %s: %s -> %s (%s)\n", w[i].event_id, w[i].from, w[i].to,
                    w[i].reason);
        h_records_dump(&rs, stderr);
    }
    h_records_free(&rs);
    return missing;
}

static void test_sighup_reload(void **state)
{
    struct scen_fixture *f = *state;
    struct h_clvd *d = &f->d[0];
    const int64_t D = H_DAY_MS;
    const int64_t t0 = h_ts("2025-03-01T10:00:00Z"), t1 = t0 + 30 * D, t2 = t1 + 40 * D;
    const struct want w_old1 = {"hup-old:1", "null", "prospect", "first_seen", t0};
    const struct want w_old2 = {"hup-old:2", "prospect", "dormant", "inactive", t0 + 10 * D};
    const struct want w_new1 = {"hup-new:1", "null", "prospect", "first_seen", t1};
    const struct want w_new2 = {"hup-new:2", "prospect", "dormant", "inactive", t1 + 10 * D};
    const struct want w_late1 = {"hup-late:1", "null", "prospect", "first_seen", t2};
    const struct want w_late2 = {"hup-late:2", "prospect", "dormant", "inactive", t2 + 10 * D};
    char err[H_ERRLEN], line[1024];
    int old_kept_deadline = 0;

    if (scen_world_start(&f->w, "sighup", 1, 0, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    snprintf(f->group, sizeof(f->group), "clvd-sighup-%d", (int)getpid());
    write_config(f, f->w.kafka.bootstraps, 60);
    if (scen_clvd_start(&f->w, d, f->config, "sighup", NULL, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    if (h_clvd_wait_log(d, "ready", READY_TIMEOUT_MS) != 0)
        fail_msg("clvd not ready (no partitions) within %d ms", READY_TIMEOUT_MS);

    /* a customer under the 60-day rule */
    visit(f, "hup-old", "hup-old-1", t0);
    {
        const struct want w[] = {w_old1};
        if (expect_stage_changes(f, w, 1, "hup-", OUTPUT_TIMEOUT_MS) != 0)
            fail_msg("hup-old was not seen");
    }

    /* 60 -> 10 days, without a restart */
    write_config(f, f->w.kafka.bootstraps, 10);
    if (h_clvd_signal(d, SIGHUP) != 0)
        fail_msg("clvd is not running");
    if (h_clvd_wait_log(d, "reloaded", 10000) != 0)
        fail_msg("no reload logged within 10 s of SIGHUP");
    visit(f, "hup-new", "hup-new-1", t1);
    visit(f, "tick-1", "tick-1-1", t1 + 20 * D); /* the clock passes t1 + 20 d */
    {
        /* a customer first seen after the reload: dormant after 10 days */
        const struct want w[] = {w_old1, w_old2, w_new1, w_new2};
        if (expect_stage_changes(f, w + 2, 2, "hup-new", OUTPUT_TIMEOUT_MS) != 0)
            fail_msg("the reload did not take effect: hup-new did not go dormant 10 days after "
                     "its visit (see above)");
        /* one seen before: its deadline moved from t0 + 60 d to t0 + 10 d,
         * which the clock (t1 + 20 d = t0 + 50 d) has passed */
        if (expect_stage_changes(f, w, 4, "hup-", 3000) != 0) {
            old_kept_deadline = 1;
            fprintf(stderr, "[sighup] FAILURE: hup-old, seen before the reload, did not go "
                            "dormant at its new deadline (t0 + 10 d) although the clock is at "
                            "t0 + 50 d: it kept the deadline of the old config (t0 + 60 d)\n");
        }
    }

    /* a change that needs a restart: refused, the running config kept */
    write_config(f, "127.0.0.1:1", 5);
    if (h_clvd_signal(d, SIGHUP) != 0)
        fail_msg("clvd is not running");
    if (h_clvd_wait_log(d, "refused", 10000) != 0)
        fail_msg("no refused reload logged within 10 s of SIGHUP with kafka.brokers changed");
    if (h_file_last_line(d->log, "refused", line, sizeof(line)) != 0 ||
        strstr(line, "kafka.brokers") == NULL)
        fail_msg("the refusal does not name kafka.brokers: %s", line);
    fprintf(stderr, "[sighup] %s\n", line);
    h_sleep_ms(500);
    if (!h_clvd_running(d))
        fail_msg("clvd exited after the refused reload (wait status 0x%x)", d->status);
    visit(f, "hup-late", "hup-late-1", t2);
    visit(f, "tick-2", "tick-2-1", t2 + 12 * D);
    {
        /* still the 10-day rule, not the refused 5-day one (by now the
         * clock has passed hup-old's old deadline too) */
        const struct want w[] = {w_old1, w_old2, w_new1, w_new2, w_late1, w_late2};
        if (expect_stage_changes(f, w, 6, "hup-", OUTPUT_TIMEOUT_MS) != 0)
            fail_msg("stage changes missing after the refused reload (see above)");
    }
    if (h_file_count(d->log, "starting") != 1)
        fail_msg("clvd restarted (%d \"starting\" lines in its log)",
                 h_file_count(d->log, "starting"));
    if (h_clvd_stop(d, STOP_TIMEOUT_MS, err, sizeof(err)) != 0)
        fail_msg("SIGTERM: %s", err);
    if (old_kept_deadline)
        fail_msg("SIGHUP: a customer seen before the reload kept the dormant deadline of the old "
                 "config (see above)");
    f->passed = 1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sigterm_mid_stream, scen_fixture_setup,
                                        scen_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_sighup_reload, scen_fixture_setup,
                                        scen_fixture_teardown),
    };
    const char *filter = getenv("CLVD_IT_FILTER");

    if (filter != NULL && *filter != '\0')
        cmocka_set_test_filter(filter);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
