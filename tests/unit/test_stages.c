/* test_stages.c -- lifecycle rules (SPEC section 5), tiers (section 9) and
 * snapshots (section 6), against the default configuration. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "clv.h"
#include "config.h"
#include "customer.h"
#include "stages.h"

#define D0 1767225600000LL /* 2026-01-01T00:00:00.000Z */
#define DAY CLV_MS_PER_DAY
#define HOUR CLV_MS_PER_HOUR

/* day `d` (from D0) at hour `h` */
#define T(d, h) (D0 + (clv_ms)(d)*DAY + (clv_ms)(h)*HOUR)

enum { PUR = CLV_EV_PURCHASE, LOG = CLV_EV_LOGIN, VIS = CLV_EV_VISIT };
enum { STG = CLV_TRANSITION_STAGE, TIER = CLV_TRANSITION_TIER };

static struct clv_config g_cfg;
static struct clv_rules g_rules;
static int g_evno;

static int group_setup(void **state)
{
    char err[CLV_ERRLEN];

    (void)state;
    if (config_defaults(&g_cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "config_defaults: %s\n", err);
        return -1;
    }
    rules_from_config(&g_rules, &g_cfg);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    config_free(&g_cfg);
    return 0;
}

static struct clv_event mkev_id(int type, clv_ms ts, double amount, const char *id)
{
    struct clv_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.type = (enum clv_event_type)type;
    ev.ts = ts;
    ev.amount = amount;
    if (id != NULL)
        ev.event_id_len = (size_t)snprintf(ev.event_id, sizeof(ev.event_id), "%s", id);
    else
        ev.event_id_len = (size_t)snprintf(ev.event_id, sizeof(ev.event_id), "ev-%d", ++g_evno);
    memcpy(ev.customer_id, "c42", 4);
    ev.customer_id_len = 3;
    return ev;
}

/* Apply one event with a fresh event id; `out` is reset first. */
static int apply_r(struct clv_customer *c, const struct clv_rules *r, int type, clv_ms ts,
                   double amount, struct clv_transitions *out)
{
    struct clv_event ev = mkev_id(type, ts, amount, NULL);

    out->n = 0;
    return (int)stages_apply_event(c, r, &ev, out);
}

static int apply(struct clv_customer *c, int type, clv_ms ts, double amount,
                 struct clv_transitions *out)
{
    return apply_r(c, &g_rules, type, ts, amount, out);
}

static void advance_r(struct clv_customer *c, const struct clv_rules *r, clv_ms until,
                      struct clv_transitions *out)
{
    out->n = 0;
    stages_advance(c, r, until, out);
}

static void advance(struct clv_customer *c, clv_ms until, struct clv_transitions *out)
{
    advance_r(c, &g_rules, until, out);
}

static const char *sname(int s)
{
    const char *n = stage_name(s);

    return n ? n : "(none)";
}

static void check_tr_at(const struct clv_transition *t, int kind, int from, int to,
                        enum clv_reason reason, clv_ms at, int line)
{
    if ((int)t->kind != kind || t->from != from || t->to != to || t->reason != reason ||
        t->at != at)
        fail_msg("line %d: got kind %d %s(%d) -> %s(%d) %s at %lld, want kind %d %s(%d) -> "
                 "%s(%d) %s at %lld",
                 line, (int)t->kind, sname(t->from), t->from, sname(t->to), t->to,
                 reason_name(t->reason), (long long)t->at, kind, sname(from), from, sname(to), to,
                 reason_name(reason), (long long)at);
}

#define CHECK_TR(t, kind, from, to, reason, at)                                                    \
    check_tr_at((t), (kind), (from), (to), (reason), (at), __LINE__)

static void check_n_at(const struct clv_transitions *out, int n, int line)
{
    if (out->n != n) {
        char buf[1024];
        size_t len = 0;

        buf[0] = '\0';
        for (int i = 0; i < out->n && len < sizeof(buf) - 100; i++)
            len += (size_t)snprintf(
                buf + len, sizeof(buf) - len, " [%s->%s %s @%lld]",
                out->t[i].kind == CLV_TRANSITION_STAGE ? sname(out->t[i].from) : "tier",
                out->t[i].kind == CLV_TRANSITION_STAGE ? sname(out->t[i].to) : "tier",
                reason_name(out->t[i].reason), (long long)out->t[i].at);
        fail_msg("line %d: %d transitions, want %d:%s", line, out->n, n, buf);
    }
}

#define CHECK_N(out, n) check_n_at((out), (n), __LINE__)

/* ---- builders: customers in each stage ----------------------------------- */

static void make_prospect(struct clv_customer *c)
{
    struct clv_transitions out;

    customer_init(c);
    apply(c, VIS, T(0, 10), 0, &out);
    assert_int_equal(c->stage, CLV_STAGE_PROSPECT);
}

static void make_new(struct clv_customer *c)
{
    struct clv_transitions out;

    customer_init(c);
    apply(c, PUR, T(0, 10), 10, &out);
    assert_int_equal(c->stage, CLV_STAGE_NEW);
}

/* purchases on days 0 and 1 at 10:00 */
static void make_active(struct clv_customer *c)
{
    struct clv_transitions out;

    make_new(c);
    apply(c, PUR, T(1, 10), 10, &out);
    assert_int_equal(c->stage, CLV_STAGE_ACTIVE);
}

/* purchases on days 0..4 at 10:00 */
static void make_loyal(struct clv_customer *c)
{
    struct clv_transitions out;

    make_active(c);
    for (int d = 2; d <= 4; d++)
        apply(c, PUR, T(d, 10), 10, &out);
    assert_int_equal(c->stage, CLV_STAGE_LOYAL);
}

static void make_at_risk(struct clv_customer *c)
{
    struct clv_transitions out;

    make_active(c);
    advance(c, T(1, 10) + 14 * DAY, &out);
    assert_int_equal(c->stage, CLV_STAGE_AT_RISK);
}

static void make_dormant_p(struct clv_customer *c)
{
    struct clv_transitions out;

    make_active(c);
    advance(c, T(1, 10) + 60 * DAY, &out);
    assert_int_equal(c->stage, CLV_STAGE_DORMANT);
}

static void make_dormant_np(struct clv_customer *c)
{
    struct clv_transitions out;

    make_prospect(c);
    advance(c, T(0, 10) + 60 * DAY, &out);
    assert_int_equal(c->stage, CLV_STAGE_DORMANT);
}

static void make_churned_p(struct clv_customer *c)
{
    struct clv_transitions out;

    make_active(c);
    advance(c, T(1, 10) + 180 * DAY, &out);
    assert_int_equal(c->stage, CLV_STAGE_CHURNED);
}

static void make_churned_np(struct clv_customer *c)
{
    struct clv_transitions out;

    make_prospect(c);
    advance(c, T(0, 10) + 180 * DAY, &out);
    assert_int_equal(c->stage, CLV_STAGE_CHURNED);
}

static void make_reactivated(struct clv_customer *c)
{
    struct clv_transitions out;

    make_dormant_p(c);
    apply(c, PUR, c->stage_since + HOUR, 10, &out);
    assert_int_equal(c->stage, CLV_STAGE_REACTIVATED);
}

static void make_none(struct clv_customer *c)
{
    customer_init(c);
}

/* ---- the event-driven table ---------------------------------------------- */

struct row {
    const char *name;
    void (*build)(struct clv_customer *c);
    int from;
    int ev;
    int to; /* -2: no transition */
    enum clv_reason reason;
};

#define NO_TR (-2)

static const struct row event_rows[] = {
    {"none+visit", make_none, CLV_STAGE_NONE, VIS, CLV_STAGE_PROSPECT, CLV_REASON_FIRST_SEEN},
    {"none+login", make_none, CLV_STAGE_NONE, LOG, CLV_STAGE_PROSPECT, CLV_REASON_FIRST_SEEN},
    {"none+purchase", make_none, CLV_STAGE_NONE, PUR, CLV_STAGE_NEW, CLV_REASON_FIRST_PURCHASE},
    {"prospect+visit", make_prospect, CLV_STAGE_PROSPECT, VIS, NO_TR, 0},
    {"prospect+login", make_prospect, CLV_STAGE_PROSPECT, LOG, NO_TR, 0},
    {"prospect+purchase", make_prospect, CLV_STAGE_PROSPECT, PUR, CLV_STAGE_NEW,
     CLV_REASON_FIRST_PURCHASE},
    {"new+visit", make_new, CLV_STAGE_NEW, VIS, NO_TR, 0},
    {"new+login", make_new, CLV_STAGE_NEW, LOG, NO_TR, 0},
    {"new+purchase", make_new, CLV_STAGE_NEW, PUR, CLV_STAGE_ACTIVE, CLV_REASON_REPEAT_PURCHASE},
    {"active+visit", make_active, CLV_STAGE_ACTIVE, VIS, NO_TR, 0},
    {"active+login", make_active, CLV_STAGE_ACTIVE, LOG, NO_TR, 0},
    {"active+purchase(below loyal)", make_active, CLV_STAGE_ACTIVE, PUR, NO_TR, 0},
    {"loyal+visit", make_loyal, CLV_STAGE_LOYAL, VIS, NO_TR, 0},
    {"loyal+login", make_loyal, CLV_STAGE_LOYAL, LOG, NO_TR, 0},
    {"loyal+purchase", make_loyal, CLV_STAGE_LOYAL, PUR, NO_TR, 0},
    {"at_risk+visit", make_at_risk, CLV_STAGE_AT_RISK, VIS, NO_TR, 0},
    {"at_risk+login", make_at_risk, CLV_STAGE_AT_RISK, LOG, NO_TR, 0},
    {"at_risk+purchase", make_at_risk, CLV_STAGE_AT_RISK, PUR, CLV_STAGE_ACTIVE,
     CLV_REASON_RECOVERED},
    {"dormant(bought)+visit", make_dormant_p, CLV_STAGE_DORMANT, VIS, CLV_STAGE_AT_RISK,
     CLV_REASON_RETURNED},
    {"dormant(bought)+login", make_dormant_p, CLV_STAGE_DORMANT, LOG, CLV_STAGE_AT_RISK,
     CLV_REASON_RETURNED},
    {"dormant(bought)+purchase", make_dormant_p, CLV_STAGE_DORMANT, PUR, CLV_STAGE_REACTIVATED,
     CLV_REASON_WON_BACK},
    {"dormant(never)+visit", make_dormant_np, CLV_STAGE_DORMANT, VIS, CLV_STAGE_PROSPECT,
     CLV_REASON_RETURNED},
    {"dormant(never)+login", make_dormant_np, CLV_STAGE_DORMANT, LOG, CLV_STAGE_PROSPECT,
     CLV_REASON_RETURNED},
    {"dormant(never)+purchase", make_dormant_np, CLV_STAGE_DORMANT, PUR, CLV_STAGE_REACTIVATED,
     CLV_REASON_WON_BACK},
    {"churned(bought)+visit", make_churned_p, CLV_STAGE_CHURNED, VIS, CLV_STAGE_AT_RISK,
     CLV_REASON_RETURNED},
    {"churned(bought)+login", make_churned_p, CLV_STAGE_CHURNED, LOG, CLV_STAGE_AT_RISK,
     CLV_REASON_RETURNED},
    {"churned(bought)+purchase", make_churned_p, CLV_STAGE_CHURNED, PUR, CLV_STAGE_REACTIVATED,
     CLV_REASON_WON_BACK},
    {"churned(never)+visit", make_churned_np, CLV_STAGE_CHURNED, VIS, CLV_STAGE_PROSPECT,
     CLV_REASON_RETURNED},
    {"churned(never)+login", make_churned_np, CLV_STAGE_CHURNED, LOG, CLV_STAGE_PROSPECT,
     CLV_REASON_RETURNED},
    {"churned(never)+purchase", make_churned_np, CLV_STAGE_CHURNED, PUR, CLV_STAGE_REACTIVATED,
     CLV_REASON_WON_BACK},
    {"reactivated+visit", make_reactivated, CLV_STAGE_REACTIVATED, VIS, NO_TR, 0},
    {"reactivated+login", make_reactivated, CLV_STAGE_REACTIVATED, LOG, NO_TR, 0},
    {"reactivated+purchase", make_reactivated, CLV_STAGE_REACTIVATED, PUR, CLV_STAGE_ACTIVE,
     CLV_REASON_REPEAT_PURCHASE},
};

static void test_event_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < CLV_ARRAY_LEN(event_rows); i++) {
        const struct row *row = &event_rows[i];
        struct clv_customer c;
        struct clv_transitions out;
        uint32_t seq0, purchases0;
        clv_ms since0, ts;
        int8_t stage0;

        row->build(&c);
        if (c.stage != row->from)
            fail_msg("%s: builder gave stage %s", row->name, sname(c.stage));
        seq0 = c.seq;
        since0 = c.stage_since;
        stage0 = c.stage;
        purchases0 = c.purchases;
        /* an hour after the stage began: no deadline in between */
        ts = c.stage == CLV_STAGE_NONE ? T(0, 10) : c.stage_since + HOUR;
        assert_int_equal(apply(&c, row->ev, ts, 10, &out), CLV_APPLIED);
        if (row->to == NO_TR) {
            if (out.n != 0)
                fail_msg("%s: %d transitions (first to %s), want none", row->name, out.n,
                         sname(out.t[0].to));
            assert_int_equal(c.stage, stage0);
            assert_int_equal(c.stage_since, since0);
            assert_int_equal(c.seq, seq0);
        } else {
            if (out.n != 1)
                fail_msg("%s: %d transitions, want 1", row->name, out.n);
            if (out.t[0].to != row->to || out.t[0].reason != row->reason ||
                out.t[0].from != row->from)
                fail_msg("%s: got %s -> %s (%s), want %s -> %s (%s)", row->name,
                         sname(out.t[0].from), sname(out.t[0].to), reason_name(out.t[0].reason),
                         sname(row->from), sname(row->to), reason_name(row->reason));
            CHECK_TR(&out.t[0], STG, row->from, row->to, row->reason, ts);
            assert_int_equal(out.t[0].seq, seq0 + 1);
            assert_int_equal(c.seq, seq0 + 1);
            assert_int_equal(c.stage, row->to);
            assert_int_equal(c.stage_since, ts);
            /* win-back eligibility: the customer had bought by then */
            assert_int_equal(out.t[0].purchased, (purchases0 + (row->ev == PUR)) > 0);
        }
        if (row->ev == PUR)
            assert_int_equal(c.purchases, purchases0 + 1);
    }
}

static void test_first_transition_from_none(void **state)
{
    struct clv_customer c;
    struct clv_transitions out;

    (void)state;
    customer_init(&c);
    assert_int_equal(c.stage, CLV_STAGE_NONE);
    assert_int_equal(stages_next_deadline(&c, &g_rules), 0);
    apply(&c, LOG, T(3, 7), 0, &out);
    CHECK_N(&out, 1);
    CHECK_TR(&out.t[0], STG, CLV_STAGE_NONE, CLV_STAGE_PROSPECT, CLV_REASON_FIRST_SEEN, T(3, 7));
    assert_int_equal(out.t[0].seq, 1);
    assert_int_equal(out.t[0].purchased, 0);
    assert_int_equal(c.first_seen, T(3, 7));
    assert_int_equal(c.logins, 1);
}

static void test_event_at_stage_since_is_in_order(void **state)
{
    struct clv_customer c;
    struct clv_transitions out;

    (void)state;
    make_prospect(&c);
    /* not older than stage_since: the rule applies */
    apply(&c, PUR, c.stage_since, 10, &out);
    CHECK_N(&out, 1);
    CHECK_TR(&out.t[0], STG, CLV_STAGE_PROSPECT, CLV_STAGE_NEW, CLV_REASON_FIRST_PURCHASE,
             T(0, 10));
}

/* ---- loyal rule ------------------------------------------------------- */

static void test_loyal_rule(void **state)
{
    struct clv_customer c, base;
    struct clv_transitions out;

    (void)state;
    /* purchases 1..4 leave an active customer active, the 5th makes it loyal */
    make_active(&c);
    apply(&c, PUR, T(2, 10), 10, &out);
    CHECK_N(&out, 0);
    apply(&c, PUR, T(3, 10), 10, &out);
    CHECK_N(&out, 0);
    assert_int_equal(c.stage, CLV_STAGE_ACTIVE);
    apply(&c, PUR, T(4, 10), 10, &out);
    CHECK_N(&out, 1);
    CHECK_TR(&out.t[0], STG, CLV_STAGE_ACTIVE, CLV_STAGE_LOYAL, CLV_REASON_LOYAL_THRESHOLD,
             T(4, 10));

    /* 180-day window, day granularity: day 0 counts on day 179, not on day 180.
     * Gaps of 45 days keep the customer active (at_risk after 90 days
     * without purchase, dormant after 60 without activity). */
    customer_init(&base);
    apply(&base, PUR, T(0, 10), 10, &out);
    apply(&base, PUR, T(45, 10), 10, &out);
    apply(&base, PUR, T(90, 10), 10, &out);
    apply(&base, PUR, T(135, 10), 10, &out);
    assert_int_equal(base.stage, CLV_STAGE_ACTIVE);
    c = base;
    apply(&c, PUR, T(179, 23) + 59 * CLV_MS_PER_MIN, 10, &out);
    CHECK_N(&out, 1);
    assert_int_equal(out.t[0].to, CLV_STAGE_LOYAL);
    c = base;
    apply(&c, PUR, T(180, 0), 10, &out);
    CHECK_N(&out, 0);
    assert_int_equal(c.stage, CLV_STAGE_ACTIVE);

    /* same-day purchases count one by one (purchases, not days) */
    customer_init(&c);
    for (int i = 0; i < 4; i++)
        apply(&c, PUR, T(0, 8 + i), 10, &out);
    assert_int_equal(c.stage, CLV_STAGE_ACTIVE);
    apply(&c, PUR, T(0, 20), 10, &out);
    CHECK_N(&out, 1);
    assert_int_equal(out.t[0].to, CLV_STAGE_LOYAL);
}

static void test_at_risk_purchase_recovers_to_loyal(void **state)
{
    struct clv_customer c;
    struct clv_transitions out;

    (void)state;
    /* 4 purchases, then at_risk; the 5th within 180 days -> loyal */
    make_active(&c);
    apply(&c, PUR, T(2, 10), 10, &out);
    apply(&c, PUR, T(3, 10), 10, &out);
    assert_int_equal(c.stage, CLV_STAGE_ACTIVE);
    advance(&c, T(3, 10) + 14 * DAY, &out);
    CHECK_N(&out, 1);
    CHECK_TR(&out.t[0], STG, CLV_STAGE_ACTIVE, CLV_STAGE_AT_RISK, CLV_REASON_PURCHASE_GAP,
             T(17, 10));
    apply(&c, PUR, T(20, 10), 10, &out);
    CHECK_N(&out, 1);
    CHECK_TR(&out.t[0], STG, CLV_STAGE_AT_RISK, CLV_STAGE_LOYAL, CLV_REASON_RECOVERED, T(20, 10));

    /* loyal customers also go at_risk on a purchase gap */
    advance(&c, T(60, 0), &out);
    CHECK_N(&out, 1);
    assert_int_equal(out.t[0].from, CLV_STAGE_LOYAL);
    assert_int_equal(out.t[0].to, CLV_STAGE_AT_RISK);
}

/* ---- at_risk deadline ------------------------------------------------- */

/* Purchases at the given times, then: next deadline is `want`, advancing to
 * want-1 emits nothing and to want emits at_risk (purchase_gap) at `want`. */
static void check_at_risk_deadline(const struct clv_rules *r, const clv_ms *times, int n,
                                   clv_ms want, int line)
{
    struct clv_customer c, c2;
    struct clv_transitions out;

    customer_init(&c);
    for (int i = 0; i < n; i++)
        apply_r(&c, r, PUR, times[i], 10, &out);
    if (stages_next_deadline(&c, r) != want)
        fail_msg("line %d: next deadline %lld, want %lld (%+.3f days)", line,
                 (long long)stages_next_deadline(&c, r), (long long)want,
                 (double)(stages_next_deadline(&c, r) - want) / DAY);
    c2 = c;
    advance_r(&c2, r, want - 1, &out);
    check_n_at(&out, 0, line);
    advance_r(&c, r, want, &out);
    check_n_at(&out, 1, line);
    check_tr_at(&out.t[0], STG, out.t[0].from, CLV_STAGE_AT_RISK, CLV_REASON_PURCHASE_GAP, want,
                line);
}

static void test_at_risk_deadline_formula(void **state)
{
    struct clv_rules r = g_rules;
    (void)state;

    { /* one purchase: default_gap_days = 30, not min_gap, not factor x 0 */
        clv_ms t[] = {T(0, 10)};
        check_at_risk_deadline(&g_rules, t, 1, T(30, 10), __LINE__);
    }
    { /* several purchases on one day are one purchase day: still 30 days
       * from the last purchase */
        clv_ms t[] = {T(0, 9), T(0, 10), T(0, 23)};
        check_at_risk_deadline(&g_rules, t, 3, T(30, 23), __LINE__);
    }
    { /* mean gap 10 days -> 2 x 10 = 20 days */
        clv_ms t[] = {T(0, 10), T(10, 10), T(20, 10)};
        check_at_risk_deadline(&g_rules, t, 3, T(40, 10), __LINE__);
    }
    { /* mean gap 1 day -> min_gap 14 */
        clv_ms t[] = {T(0, 10), T(1, 10), T(2, 10)};
        check_at_risk_deadline(&g_rules, t, 3, T(16, 10), __LINE__);
    }
    { /* mean gap 7 -> exactly 14 */
        clv_ms t[] = {T(0, 10), T(7, 10)};
        check_at_risk_deadline(&g_rules, t, 2, T(21, 10), __LINE__);
    }
    { /* same-day purchases merged in the mean: days 0,0,0,10,20,20 have a
       * mean gap of 10 days (not 20/5 = 4) -> 20 days */
        clv_ms t[] = {T(0, 8), T(0, 9), T(0, 10), T(10, 10), T(20, 8), T(20, 10)};
        check_at_risk_deadline(&g_rules, t, 6, T(40, 10), __LINE__);
    }
    { /* gaps between purchase DAYS: 23:00 on day 0 and 01:00 on day 10 is a
       * 10-day gap (not 9.08), 20 days after the last purchase */
        clv_ms t[] = {T(0, 23), T(10, 1)};
        check_at_risk_deadline(&g_rules, t, 2, T(30, 1), __LINE__);
    }
    { /* non-integer mean: days 0, 15, 25 -> 12.5 -> 25 days */
        clv_ms t[] = {T(0, 10), T(15, 10), T(25, 10)};
        check_at_risk_deadline(&g_rules, t, 3, T(50, 10), __LINE__);
    }
    { /* order of arrival does not matter */
        clv_ms t[] = {T(20, 10), T(0, 10), T(10, 10)};
        struct clv_customer c;
        struct clv_transitions out;

        customer_init(&c);
        for (int i = 0; i < 3; i++)
            apply(&c, PUR, t[i], 10, &out);
        assert_int_equal(stages_next_deadline(&c, &g_rules), T(40, 10));
    }
    /* configured factor and minimum */
    r.lc.at_risk_gap_factor = 3.0;
    r.lc.at_risk_min_gap_days = 5;
    r.lc.at_risk_default_gap_days = 9;
    {
        clv_ms t[] = {T(0, 10), T(2, 10), T(4, 10)}; /* 3 x 2 = 6 > 5 */
        check_at_risk_deadline(&r, t, 3, T(10, 10), __LINE__);
    }
    {
        clv_ms t[] = {T(0, 10), T(1, 10)}; /* 3 x 1 = 3 < 5 */
        check_at_risk_deadline(&r, t, 2, T(6, 10), __LINE__);
    }
    {
        clv_ms t[] = {T(0, 10)};
        check_at_risk_deadline(&r, t, 1, T(9, 10), __LINE__);
    }
}

static void test_at_risk_from_each_stage(void **state)
{
    struct clv_customer c;
    struct clv_transitions out;

    (void)state;
    make_new(&c); /* one purchase day: 30 days */
    advance(&c, T(40, 0), &out);
    CHECK_N(&out, 1);
    CHECK_TR(&out.t[0], STG, CLV_STAGE_NEW, CLV_STAGE_AT_RISK, CLV_REASON_PURCHASE_GAP, T(30, 10));

    make_loyal(&c); /* mean gap 1: 14 days */
    advance(&c, T(30, 0), &out);
    CHECK_N(&out, 1);
    CHECK_TR(&out.t[0], STG, CLV_STAGE_LOYAL, CLV_STAGE_AT_RISK, CLV_REASON_PURCHASE_GAP,
             T(18, 10));

    make_reactivated(&c); /* days 0, 1, 61: mean gap 30.5 -> 61 days */
    {
        clv_ms lp = c.last_purchase;
        /* keep it from going dormant first */
        apply(&c, VIS, lp + 50 * DAY, 0, &out);
        CHECK_N(&out, 0);
        advance(&c, lp + 61 * DAY - 1, &out);
        CHECK_N(&out, 0);
        advance(&c, lp + 61 * DAY, &out);
        CHECK_N(&out, 1);
        CHECK_TR(&out.t[0], STG, CLV_STAGE_REACTIVATED, CLV_STAGE_AT_RISK, CLV_REASON_PURCHASE_GAP,
                 lp + 61 * DAY);
    }

    /* prospects never go at_risk (no purchase) */
    make_prospect(&c);
    apply(&c, VIS, T(50, 10), 0, &out);
    advance(&c, T(100, 0), &out);
    CHECK_N(&out, 0);
}

/* ---- dormant, churned ------------------------------------------------- */

static void test_dormant_after_60_days_from_each_stage(void **state)
{
    struct clv_customer c;
    struct clv_transitions out;

    (void)state;
    /* prospect */
    make_prospect(&c);
    assert_int_equal(stages_next_deadline(&c, &g_rules), T(60, 10));
    advance(&c, T(60, 10) - 1, &out);
    CHECK_N(&out, 0);
    advance(&c, T(60, 10), &out);
    CHECK_N(&out, 1);
    CHECK_TR(&out.t[0], STG, CLV_STAGE_PROSPECT, CLV_STAGE_DORMANT, CLV_REASON_INACTIVE, T(60, 10));
    assert_int_equal(out.t[0].purchased, 0);

    /* any activity restarts the clock: a login on day 50 */
    make_prospect(&c);
    apply(&c, LOG, T(50, 0), 0, &out);
    CHECK_N(&out, 0);
    advance(&c, T(109, 23), &out);
    CHECK_N(&out, 0);
    advance(&c, T(110, 0), &out);
    CHECK_N(&out, 1);
    CHECK_TR(&out.t[0], STG, CLV_STAGE_PROSPECT, CLV_STAGE_DORMANT, CLV_REASON_INACTIVE, T(110, 0));

    /* new: at_risk at 30 days, then dormant at 60 */
    make_new(&c);
    advance(&c, T(100, 0), &out);
    CHECK_N(&out, 2);
    CHECK_TR(&out.t[0], STG, CLV_STAGE_NEW, CLV_STAGE_AT_RISK, CLV_REASON_PURCHASE_GAP, T(30, 10));
    CHECK_TR(&out.t[1], STG, CLV_STAGE_AT_RISK, CLV_STAGE_DORMANT, CLV_REASON_INACTIVE, T(60, 10));
    assert_int_equal(out.t[1].purchased, 1);

    /* active with a long mean gap (40 days -> at_risk after 80): dormant
     * comes first, straight from active */
    customer_init(&c);
    apply(&c, PUR, T(0, 10), 10, &out);
    apply(&c, PUR, T(40, 10), 10, &out);
    assert_int_equal(c.stage, CLV_STAGE_ACTIVE);
    advance(&c, T(200, 0), &out);
    CHECK_N(&out, 1);
    CHECK_TR(&out.t[0], STG, CLV_STAGE_ACTIVE, CLV_STAGE_DORMANT, CLV_REASON_INACTIVE, T(100, 10));

    /* loyal with a 35-day mean gap: dormant after 60 days, before at_risk at 70 */
    customer_init(&c);
    for (int i = 0; i < 5; i++)
        apply(&c, PUR, T(35 * i, 10), 10, &out);
    assert_int_equal(c.stage, CLV_STAGE_LOYAL);
    advance(&c, T(300, 0), &out);
    CHECK_N(&out, 1);
    CHECK_TR(&out.t[0], STG, CLV_STAGE_LOYAL, CLV_STAGE_DORMANT, CLV_REASON_INACTIVE, T(200, 10));

    /* reactivated (days 0, 1, 61: at_risk after 61 days, dormant after 60) */
    make_reactivated(&c);
    {
        clv_ms la = c.last_activity;
        advance(&c, la + 60 * DAY, &out);
        CHECK_N(&out, 1);
        CHECK_TR(&out.t[0], STG, CLV_STAGE_REACTIVATED, CLV_STAGE_DORMANT, CLV_REASON_INACTIVE,
                 la + 60 * DAY);
    }
}

static void test_churned_180_days_after_last_activity(void **state)
{
    struct clv_customer c;
    struct clv_transitions out;

    (void)state;
    make_dormant_np(&c);
    /* 180 days after the last activity, not 180 after becoming dormant */
    assert_int_equal(stages_next_deadline(&c, &g_rules), T(180, 10));
    advance(&c, T(180, 10) - 1, &out);
    CHECK_N(&out, 0);
    advance(&c, T(180, 10), &out);
    CHECK_N(&out, 1);
    CHECK_TR(&out.t[0], STG, CLV_STAGE_DORMANT, CLV_STAGE_CHURNED, CLV_REASON_INACTIVE, T(180, 10));
    /* churned is final while nothing happens */
    assert_int_equal(stages_next_deadline(&c, &g_rules), 0);
    advance(&c, T(5000, 0), &out);
    CHECK_N(&out, 0);
}

/* ---- catch-up ------------------------------------------------------------ */

static void test_catch_up_then_event(void **state)
{
    struct clv_customer c, c2;
    struct clv_transitions out;
    clv_ms lp = T(1, 10);

    (void)state;
    make_active(&c); /* seq 2 */
    c2 = c;
    assert_int_equal(c.seq, 2);
    apply(&c, VIS, T(400, 0), 0, &out);
    CHECK_N(&out, 4);
    CHECK_TR(&out.t[0], STG, CLV_STAGE_ACTIVE, CLV_STAGE_AT_RISK, CLV_REASON_PURCHASE_GAP,
             lp + 14 * DAY);
    CHECK_TR(&out.t[1], STG, CLV_STAGE_AT_RISK, CLV_STAGE_DORMANT, CLV_REASON_INACTIVE,
             lp + 60 * DAY);
    CHECK_TR(&out.t[2], STG, CLV_STAGE_DORMANT, CLV_STAGE_CHURNED, CLV_REASON_INACTIVE,
             lp + 180 * DAY);
    CHECK_TR(&out.t[3], STG, CLV_STAGE_CHURNED, CLV_STAGE_AT_RISK, CLV_REASON_RETURNED, T(400, 0));
    for (int i = 0; i < 4; i++)
        assert_int_equal(out.t[i].seq, 3 + i);
    /* snapshots as of each transition's own time */
    assert_true(fabs(out.t[0].snap.recency_days - 14.0) < 1e-9);
    assert_true(fabs(out.t[1].snap.recency_days - 60.0) < 1e-9);
    assert_true(fabs(out.t[2].snap.recency_days - 180.0) < 1e-9);
    assert_int_equal(out.t[2].snap.active_days_30d, 0);
    assert_int_equal(out.t[3].snap.active_days_30d, 1); /* the visit itself */
    assert_int_equal(c.seq, 6);
    assert_int_equal(c.stage_since, T(400, 0));

    /* a purchase instead: ... churned, then won back */
    apply(&c2, PUR, T(400, 0), 10, &out);
    CHECK_N(&out, 4);
    CHECK_TR(&out.t[2], STG, CLV_STAGE_DORMANT, CLV_STAGE_CHURNED, CLV_REASON_INACTIVE,
             lp + 180 * DAY);
    CHECK_TR(&out.t[3], STG, CLV_STAGE_CHURNED, CLV_STAGE_REACTIVATED, CLV_REASON_WON_BACK,
             T(400, 0));
    assert_int_equal(out.t[3].seq, 6);
}

static int same_transitions(const struct clv_transitions *a, const struct clv_transitions *b)
{
    if (a->n != b->n)
        return 0;
    for (int i = 0; i < a->n; i++)
        if (a->t[i].kind != b->t[i].kind || a->t[i].from != b->t[i].from ||
            a->t[i].to != b->t[i].to || a->t[i].reason != b->t[i].reason ||
            a->t[i].at != b->t[i].at || a->t[i].seq != b->t[i].seq)
            return 0;
    return 1;
}

static void append_transitions(struct clv_transitions *all, const struct clv_transitions *part)
{
    for (int i = 0; i < part->n && all->n < CLV_MAX_TRANSITIONS; i++)
        all->t[all->n++] = part->t[i];
}

static void test_catch_up_independent_of_sweeper_progress(void **state)
{
    struct clv_customer a, b;
    struct clv_transitions out, all_a, all_b;
    struct clv_event ev = mkev_id(PUR, T(500, 12), 700, "late-purchase");
    unsigned char ba[CLV_STATE_MAX_BYTES], bb[CLV_STATE_MAX_BYTES];
    size_t la, lb;

    (void)state;
    /* silver from day 100: tier downgrade at day 365 interleaves with stages */
    customer_init(&a);
    apply(&a, PUR, T(0, 10), 300, &out);
    apply(&a, PUR, T(100, 10), 300, &out);
    assert_int_equal(a.tier, 1);
    b = a;
    all_a.n = all_b.n = 0;
    /* a: the sweeper ran now and then */
    for (int d = 120; d < 500; d += 37) {
        advance(&a, T(d, 0), &out);
        append_transitions(&all_a, &out);
    }
    out.n = 0;
    assert_int_equal(stages_apply_event(&a, &g_rules, &ev, &out), CLV_APPLIED);
    append_transitions(&all_a, &out);
    /* b: nothing until the event */
    out.n = 0;
    assert_int_equal(stages_apply_event(&b, &g_rules, &ev, &out), CLV_APPLIED);
    append_transitions(&all_b, &out);
    assert_true(same_transitions(&all_a, &all_b));
    /* (day 0 new, at_risk 30, dormant 60, day 100 reactivated + silver)
     * dormant (160), churned (280), downgrade (365), won back, upgrade */
    CHECK_N(&all_b, 5);
    CHECK_TR(&all_b.t[0], STG, CLV_STAGE_REACTIVATED, CLV_STAGE_DORMANT, CLV_REASON_INACTIVE,
             T(160, 10));
    CHECK_TR(&all_b.t[1], STG, CLV_STAGE_DORMANT, CLV_STAGE_CHURNED, CLV_REASON_INACTIVE,
             T(280, 10));
    CHECK_TR(&all_b.t[2], TIER, 1, 0, CLV_REASON_TIER_DOWNGRADE, T(365, 0));
    CHECK_TR(&all_b.t[3], STG, CLV_STAGE_CHURNED, CLV_STAGE_REACTIVATED, CLV_REASON_WON_BACK,
             T(500, 12));
    CHECK_TR(&all_b.t[4], TIER, 0, 1, CLV_REASON_TIER_UPGRADE, T(500, 12));
    for (int i = 0; i < all_b.n; i++)
        assert_int_equal(all_b.t[i].seq, 6 + i);
    la = customer_encode(&a, ba, sizeof(ba));
    lb = customer_encode(&b, bb, sizeof(bb));
    assert_true(la > 0);
    assert_int_equal(la, lb);
    assert_memory_equal(ba, bb, la);
}

/* ---- out of order, duplicates ----------------------------------------- */

static void test_old_event_updates_aggregates_only(void **state)
{
    struct clv_customer c;
    struct clv_transitions out;

    (void)state;
    /* active since day 1 10:00; a purchase of day 0 20:00 arrives late */
    make_active(&c);
    assert_int_equal(c.stage_since, T(1, 10));
    assert_int_equal(apply(&c, PUR, T(0, 20), 30, &out), CLV_APPLIED);
    CHECK_N(&out, 0);
    assert_int_equal(c.stage, CLV_STAGE_ACTIVE);
    assert_int_equal(c.stage_since, T(1, 10));
    assert_int_equal(c.seq, 2);
    assert_int_equal(c.purchases, 3);
    assert_true(fabs(c.revenue - 50) < 1e-9);
    assert_int_equal(c.purchase_days, 2); /* day 0 already was one */
    assert_true(fabs(c.first_day_revenue - 40) < 1e-9);

    /* a prospect since day 10 whose purchase of day 5 arrives late stays a
     * prospect, but has bought */
    customer_init(&c);
    apply(&c, VIS, T(10, 10), 0, &out);
    apply(&c, PUR, T(5, 10), 20, &out);
    CHECK_N(&out, 0);
    assert_int_equal(c.stage, CLV_STAGE_PROSPECT);
    assert_int_equal(c.purchases, 1);
    assert_int_equal(c.first_purchase, T(5, 10));
    assert_int_equal(c.first_seen, T(5, 10));

    /* a dormant customer's late visit from before it went dormant: no
     * `returned`, but the activity counts for the churn deadline */
    make_dormant_p(&c);
    assert_int_equal(c.stage_since, T(61, 10));
    apply(&c, VIS, T(30, 0), 0, &out);
    CHECK_N(&out, 0);
    assert_int_equal(c.stage, CLV_STAGE_DORMANT);
    assert_int_equal(c.visits, 1);
    assert_int_equal(c.last_activity, T(30, 0));
    assert_int_equal(stages_next_deadline(&c, &g_rules), T(210, 0));
}

static void test_duplicates_change_nothing(void **state)
{
    struct clv_customer c, before;
    struct clv_transitions out;
    struct clv_event ev = mkev_id(PUR, T(2, 10), 25, "order-77");
    struct clv_event later = mkev_id(PUR, T(900, 10), 25, "order-77");
    struct clv_event vis = mkev_id(VIS, T(2, 11), 0, "order-77");

    (void)state;
    make_active(&c);
    out.n = 0;
    assert_int_equal(stages_apply_event(&c, &g_rules, &ev, &out), CLV_APPLIED);
    memcpy(&before, &c, sizeof(c));
    out.n = 0;
    assert_int_equal(stages_apply_event(&c, &g_rules, &ev, &out), CLV_DUPLICATE);
    CHECK_N(&out, 0);
    assert_memory_equal(&c, &before, sizeof(c));
    /* the same id with another time (or type) is the same event: nothing
     * happens, not even the catch-up of the deadlines it would pass */
    assert_int_equal(stages_apply_event(&c, &g_rules, &later, &out), CLV_DUPLICATE);
    assert_int_equal(stages_apply_event(&c, &g_rules, &vis, &out), CLV_DUPLICATE);
    CHECK_N(&out, 0);
    assert_memory_equal(&c, &before, sizeof(c));

    /* first event of a customer, delivered twice */
    customer_init(&c);
    ev = mkev_id(VIS, T(0, 1), 0, "v-1");
    out.n = 0;
    assert_int_equal(stages_apply_event(&c, &g_rules, &ev, &out), CLV_APPLIED);
    CHECK_N(&out, 1);
    out.n = 0;
    assert_int_equal(stages_apply_event(&c, &g_rules, &ev, &out), CLV_DUPLICATE);
    CHECK_N(&out, 0);
    assert_int_equal(c.visits, 1);
    assert_int_equal(c.seq, 1);
}

/* SPEC 8: "Re-delivery of any suffix of the input ... changes no count twice";
 * a message whose event_id was applied within dedupe.window is not applied
 * again.  A burst of 20 events of one customer within an hour, delivered
 * twice (crash before the offsets were committed, or a restart from an older
 * offset). */
static void test_redelivered_burst_is_duplicate(void **state)
{
    struct clv_customer c;
    struct clv_transitions out;
    struct clv_event evs[20];
    int dup = 0;

    (void)state;
    customer_init(&c);
    for (int i = 0; i < 20; i++) {
        char id[16];

        snprintf(id, sizeof(id), "burst-%d", i);
        evs[i] = mkev_id(i % 2 ? VIS : LOG, T(0, 10) + i * 60000, 0, id);
        /* as the consumer sets it: one partition, offsets 0..19, each applied
         * in its own batch, so the frontier is the event's own offset */
        evs[i].src_topic = 1;
        evs[i].src_partition = 0;
        evs[i].src_offset = i;
        evs[i].src_frontier = i;
        out.n = 0;
        assert_int_equal(stages_apply_event(&c, &g_rules, &evs[i], &out), CLV_APPLIED);
    }
    assert_int_equal(c.logins + c.visits, 20);
    for (int i = 0; i < 20; i++) {
        out.n = 0;
        dup += stages_apply_event(&c, &g_rules, &evs[i], &out) == CLV_DUPLICATE;
    }
    if (dup != 20 || c.logins + c.visits != 20)
        fail_msg("re-delivery of 20 events: %d recognised as duplicates, %u logins+visits "
                 "counted (dedupe.max_ids = %d)",
                 dup, c.logins + c.visits, g_rules.dedupe_max_ids);
}

/* ---- tiers --------------------------------------------------------------- */

static void test_tier_upgrade(void **state)
{
    struct clv_customer c, base;
    struct clv_transitions out;

    (void)state;
    customer_init(&c);
    apply(&c, PUR, T(0, 10), 300, &out);
    CHECK_N(&out, 1);
    assert_int_equal(c.tier, 0);
    apply(&c, PUR, T(1, 10), 200, &out); /* 500 within the year */
    CHECK_N(&out, 2);
    CHECK_TR(&out.t[0], STG, CLV_STAGE_NEW, CLV_STAGE_ACTIVE, CLV_REASON_REPEAT_PURCHASE, T(1, 10));
    CHECK_TR(&out.t[1], TIER, 0, 1, CLV_REASON_TIER_UPGRADE, T(1, 10));
    assert_int_equal(out.t[0].seq, 2);
    assert_int_equal(out.t[1].seq, 3);
    assert_int_equal(out.t[1].snap.tier, 1);
    assert_int_equal(c.tier, 1);
    assert_int_equal(c.stage, CLV_STAGE_ACTIVE); /* tier changes leave the stage alone */

    /* just below the floor */
    customer_init(&c);
    apply(&c, PUR, T(0, 10), 300, &out);
    apply(&c, PUR, T(1, 10), 199.99, &out);
    CHECK_N(&out, 1);
    assert_int_equal(c.tier, 0);

    /* first purchase straight to gold: stage first, then the tier */
    customer_init(&c);
    apply(&c, PUR, T(0, 10), 1200, &out);
    CHECK_N(&out, 2);
    CHECK_TR(&out.t[0], STG, CLV_STAGE_NONE, CLV_STAGE_NEW, CLV_REASON_FIRST_PURCHASE, T(0, 10));
    CHECK_TR(&out.t[1], TIER, 0, 2, CLV_REASON_TIER_UPGRADE, T(0, 10));

    /* the window: 300 on day 0 and 250 on day 364 make 550 within 365 days,
     * on day 365 day 0 has left the window */
    customer_init(&base);
    apply(&base, PUR, T(0, 10), 300, &out);
    c = base;
    apply(&c, PUR, T(364, 23), 250, &out);
    assert_int_equal(c.tier, 1);
    assert_int_equal(out.t[out.n - 1].kind, CLV_TRANSITION_TIER);
    c = base;
    apply(&c, PUR, T(365, 0), 250, &out);
    assert_int_equal(c.tier, 0);
    for (int i = 0; i < out.n; i++)
        assert_int_equal(out.t[i].kind, CLV_TRANSITION_STAGE);

    /* visits and logins never upgrade */
    customer_init(&c);
    apply(&c, PUR, T(0, 10), 499, &out);
    apply(&c, VIS, T(0, 11), 0, &out);
    apply(&c, LOG, T(0, 12), 0, &out);
    assert_int_equal(c.tier, 0);
}

static void test_tier_downgrade_time_driven(void **state)
{
    struct clv_customer c, c2;
    struct clv_transitions out;

    (void)state;
    customer_init(&c);
    apply(&c, PUR, T(0, 10), 300, &out);
    apply(&c, PUR, T(100, 10), 300, &out);
    assert_int_equal(c.tier, 1);
    /* dormant at 160, churned at 280 */
    advance(&c, T(365, 0) - 1, &out);
    CHECK_N(&out, 2);
    assert_int_equal(c.tier, 1);
    /* the 300 of day 0 leaves the window at the start of day 365 */
    assert_int_equal(stages_next_deadline(&c, &g_rules), T(365, 0));
    advance(&c, T(365, 0), &out);
    CHECK_N(&out, 1);
    CHECK_TR(&out.t[0], TIER, 1, 0, CLV_REASON_TIER_DOWNGRADE, T(365, 0));
    /* new, at_risk, dormant, reactivated, silver, dormant, churned */
    assert_int_equal(out.t[0].seq, 8);
    assert_int_equal(out.t[0].snap.tier, 0);
    assert_int_equal(c.tier, 0);
    assert_int_equal(c.stage, CLV_STAGE_CHURNED);
    assert_int_equal(stages_next_deadline(&c, &g_rules), 0);

    /* gold -> silver -> standard, each at its own day; an event on day 500
     * catches all of it up in time order */
    customer_init(&c);
    apply(&c, PUR, T(0, 10), 600, &out);
    apply(&c, PUR, T(100, 10), 600, &out);
    assert_int_equal(c.tier, 2);
    c2 = c;
    apply(&c, VIS, T(500, 0), 0, &out);
    CHECK_N(&out, 5);
    CHECK_TR(&out.t[0], STG, CLV_STAGE_REACTIVATED, CLV_STAGE_DORMANT, CLV_REASON_INACTIVE,
             T(160, 10));
    CHECK_TR(&out.t[1], STG, CLV_STAGE_DORMANT, CLV_STAGE_CHURNED, CLV_REASON_INACTIVE, T(280, 10));
    CHECK_TR(&out.t[2], TIER, 2, 1, CLV_REASON_TIER_DOWNGRADE, T(365, 0));
    CHECK_TR(&out.t[3], TIER, 1, 0, CLV_REASON_TIER_DOWNGRADE, T(465, 0));
    CHECK_TR(&out.t[4], STG, CLV_STAGE_CHURNED, CLV_STAGE_AT_RISK, CLV_REASON_RETURNED, T(500, 0));
    /* the same through stages_advance alone */
    advance(&c2, T(465, 0) - 1, &out);
    CHECK_N(&out, 3);
    advance(&c2, T(465, 0), &out);
    CHECK_N(&out, 1);
    CHECK_TR(&out.t[0], TIER, 1, 0, CLV_REASON_TIER_DOWNGRADE, T(465, 0));

    /* a purchase at 23:59:59.999 belongs to its day */
    customer_init(&c);
    apply(&c, PUR, T(1, 0) - 1, 600, &out);
    assert_int_equal(c.tier, 1);
    advance(&c, T(365, 0) - 1, &out);
    for (int i = 0; i < out.n; i++)
        assert_int_equal(out.t[i].kind, CLV_TRANSITION_STAGE);
    advance(&c, T(365, 0), &out);
    CHECK_N(&out, 1);
    CHECK_TR(&out.t[0], TIER, 1, 0, CLV_REASON_TIER_DOWNGRADE, T(365, 0));
}

static void test_tier_lifetime_window(void **state)
{
    struct clv_rules r = g_rules;
    struct clv_customer c;
    struct clv_transitions out;

    (void)state;
    r.tiers_window_days = 0; /* lifetime spend: no downgrade ever */
    customer_init(&c);
    apply_r(&c, &r, PUR, T(0, 10), 300, &out);
    apply_r(&c, &r, PUR, T(700, 10), 300, &out);
    assert_int_equal(c.tier, 1);
    advance_r(&c, &r, T(5000, 0), &out);
    for (int i = 0; i < out.n; i++)
        assert_int_equal(out.t[i].kind, CLV_TRANSITION_STAGE);
    assert_int_equal(c.tier, 1);
}

/* Tiers are reloadable (SIGHUP).  After a reload that shortens the list, a
 * customer whose stored tier no longer exists must come back to a tier of
 * the new list (by its spend) on its next sweep or event, not keep an index
 * that renders as "" forever and is never downgraded. */
static void test_tier_out_of_range_after_reload(void **state)
{
    struct clv_rules r2 = g_rules;
    struct clv_customer c;
    struct clv_transitions out;
    int tier_tr = 0;

    (void)state;
    customer_init(&c);
    apply(&c, PUR, T(0, 10), 6000, &out);
    assert_int_equal(c.tier, 3); /* platinum */
    r2.ntiers = 2;               /* standard, silver */
    for (int i = 2; i < CLV_MAX_TIERS; i++)
        r2.tier_min_spend[i] = 0;
    apply_r(&c, &r2, VIS, T(1, 10), 0, &out);
    advance_r(&c, &r2, T(2, 0), &out);
    for (int i = 0; i < out.n; i++)
        tier_tr += out.t[i].kind == CLV_TRANSITION_TIER;
    if (c.tier < 0 || c.tier >= r2.ntiers)
        fail_msg("tier index %d with %d tiers configured (%d tier transitions)", c.tier, r2.ntiers,
                 tier_tr);
    assert_int_equal(c.tier, 1); /* 6000 within the year: silver */
}

/* ---- P(alive) ----------------------------------------------------------- */

static double p_alive_at(const struct clv_rules *r, double x, double t_x_days, double T_days)
{
    struct clv_bgnbd m = {r->model.r, r->model.alpha, r->model.a, r->model.b};

    return clv_bgnbd_p_alive(&m, x, t_x_days / r->model.time_unit_days,
                             T_days / r->model.time_unit_days);
}

static void test_p_alive_rule(void **state)
{
    struct clv_rules r = g_rules;
    struct clv_customer c, c2;
    struct clv_transitions out;
    clv_ms d;
    double pa, pb;

    (void)state;
    r.model_on = 1;
    r.lc.at_risk_p_alive_below = 0.7;
    /* purchase days 0, 1, 2: x = 2, t_x = 2 days.  Purchase gap: 14 days
     * (day 16); P(alive) falls below 0.7 around day 12.4 */
    customer_init(&c);
    apply_r(&c, &r, PUR, T(0, 10), 20, &out);
    apply_r(&c, &r, PUR, T(1, 10), 20, &out);
    apply_r(&c, &r, PUR, T(2, 10), 20, &out);
    assert_int_equal(c.stage, CLV_STAGE_ACTIVE);
    d = stages_next_deadline(&c, &r);
    assert_true(d > T(2, 10));
    assert_true(d < T(16, 10));
    pa = p_alive_at(&r, 2, 2, (double)(d - D0) / DAY);
    pb = p_alive_at(&r, 2, 2, (double)(d - CLV_MS_PER_SEC - D0) / DAY);
    if (!(pa < 0.7 && pb >= 0.7))
        fail_msg("deadline %+.4f days: P(alive) %.6f there, %.6f a second before",
                 (double)(d - D0) / DAY, pa, pb);
    assert_true(fabs((double)(d - D0) / DAY - 12.4) < 0.2);
    c2 = c;
    advance_r(&c2, &r, d - 1, &out);
    CHECK_N(&out, 0);
    advance_r(&c, &r, d, &out);
    CHECK_N(&out, 1);
    CHECK_TR(&out.t[0], STG, CLV_STAGE_ACTIVE, CLV_STAGE_AT_RISK, CLV_REASON_P_ALIVE, d);
    assert_int_equal(out.t[0].snap.model_on, 1);
    assert_true(out.t[0].snap.p_alive < 0.7);
    assert_true(fabs(out.t[0].snap.risk - (1.0 - out.t[0].snap.p_alive)) < 1e-12);
    assert_true(fabs(out.t[0].snap.clv_at_stake - out.t[0].snap.clv_predicted) < 1e-12);

    /* threshold 0 switches the rule off: purchase gap at day 16 */
    r.lc.at_risk_p_alive_below = 0;
    customer_init(&c);
    for (int dd = 0; dd < 3; dd++)
        apply_r(&c, &r, PUR, T(dd, 10), 20, &out);
    assert_int_equal(stages_next_deadline(&c, &r), T(16, 10));
    advance_r(&c, &r, T(16, 10), &out);
    CHECK_N(&out, 1);
    assert_int_equal(out.t[0].reason, CLV_REASON_PURCHASE_GAP);

    /* model off (the default): the threshold is ignored */
    r = g_rules;
    r.lc.at_risk_p_alive_below = 0.7;
    customer_init(&c);
    for (int dd = 0; dd < 3; dd++)
        apply_r(&c, &r, PUR, T(dd, 10), 20, &out);
    assert_int_equal(stages_next_deadline(&c, &r), T(16, 10));

    /* one purchase day: P(alive) is 1, the default gap rules */
    r.model_on = 1;
    customer_init(&c);
    apply_r(&c, &r, PUR, T(0, 10), 20, &out);
    assert_int_equal(stages_next_deadline(&c, &r), T(30, 10));
}

/* ---- snapshot ------------------------------------------------------------ */

static void test_snapshot_as_of_at(void **state)
{
    struct clv_customer c;
    struct clv_transitions out;
    const struct clv_snapshot *s;
    struct clv_event ev = mkev_id(PUR, T(0, 10), 100, NULL);

    (void)state;
    customer_init(&c);
    memcpy(ev.channel, "search", 7);
    out.n = 0;
    stages_apply_event(&c, &g_rules, &ev, &out);
    apply(&c, VIS, T(5, 10), 0, &out);
    apply(&c, PUR, T(10, 10), 50, &out);
    apply(&c, PUR, T(20, 10), 30, &out);
    /* mean gap 10 -> at_risk 20 days after day 20 */
    advance(&c, T(45, 0), &out);
    CHECK_N(&out, 1);
    CHECK_TR(&out.t[0], STG, CLV_STAGE_ACTIVE, CLV_STAGE_AT_RISK, CLV_REASON_PURCHASE_GAP,
             T(40, 10));
    s = &out.t[0].snap;
    assert_int_equal(s->first_purchase, T(0, 10));
    assert_int_equal(s->last_purchase, T(20, 10));
    assert_int_equal(s->last_activity, T(20, 10));
    assert_int_equal(s->purchases, 3);
    assert_true(fabs(s->revenue - 180) < 1e-9);
    assert_true(fabs(s->avg_order_value - 60) < 1e-9);
    assert_true(fabs(s->recency_days - 20.0) < 1e-9);
    assert_true(fabs(s->tenure_days - 40.0) < 1e-9);
    assert_int_equal(s->active_days_30d, 1); /* days 11..40: day 20 */
    assert_int_equal(s->purchases_90d, 3);
    assert_int_equal(s->tier, 0);
    assert_string_equal(s->channel, "search");
    assert_int_equal(s->model_on, 0);
    assert_true(fabs(s->clv_historical - clv_historical(3, 180, 40.0, 3, 0.3, 0)) < 1e-9);
    /* RFM: recency 20 -> 4, frequency 3 -> 3, monetary 180 -> 3 */
    assert_int_equal(s->rfm, clv_rfm_score(20.0, 3, 180, g_rules.rfm.recency_days,
                                           g_rules.rfm.frequency, g_rules.rfm.monetary));
    assert_int_equal(s->rfm, 433);
    /* churn-warning figures: days overdue / expected gap, CLV at stake */
    assert_true(fabs(s->risk - 1.0) < 1e-9);
    assert_true(fabs(s->clv_at_stake - s->clv_historical) < 1e-9);

    /* snapshot_take measures to its own time, not to the last event */
    {
        struct clv_snapshot s2;

        snapshot_take(&c, &g_rules, T(100, 10), &s2);
        assert_true(fabs(s2.recency_days - 80.0) < 1e-9);
        assert_true(fabs(s2.tenure_days - 100.0) < 1e-9);
        assert_int_equal(s2.active_days_30d, 0);
        assert_int_equal(s2.purchases_90d, 1); /* days 11..100: day 20 only */
    }
}

/* ---- deadline / advance consistency (randomised) ------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void random_history(const struct clv_rules *r, int steps)
{
    struct clv_customer c;
    struct clv_transitions out;
    clv_ms now = T(0, 0), last_at = 0;
    uint32_t seq = 0;
    int stage = CLV_STAGE_NONE, tier = 0;

    customer_init(&c);
    for (int i = 0; i < steps; i++) {
        clv_ms d = stages_next_deadline(&c, r);

        if (d != 0) {
            struct clv_customer probe = c;

            advance_r(&probe, r, d - 1, &out);
            if (out.n != 0)
                fail_msg("step %d: advancing to deadline-1 emitted %d", i, out.n);
            advance_r(&probe, r, d, &out);
            if (out.n < 1 || out.t[0].at != d)
                fail_msg("step %d: advancing to the deadline %lld emitted %d (first at %lld)", i,
                         (long long)d, out.n, out.n ? (long long)out.t[0].at : 0LL);
        } else {
            struct clv_customer probe = c;

            advance_r(&probe, r, now + 20000 * DAY, &out);
            if (out.n != 0)
                fail_msg("step %d: no deadline, but advancing emitted %d", i, out.n);
        }
        /* the next event: mostly forward in time, sometimes late */
        {
            int type = (int)(rnd() % 3);
            clv_ms gap = (clv_ms)(rnd() % (90 * DAY));
            clv_ms ts;

            if (rnd() % 6 == 0)
                gap = (clv_ms)(rnd() % (400 * DAY));
            now += gap;
            ts = now;
            if (rnd() % 8 == 0)
                ts -= (clv_ms)(rnd() % (30 * DAY));
            apply_r(&c, r, type, ts, (double)(rnd() % 40000) / 100.0, &out);
        }
        for (int k = 0; k < out.n; k++) {
            const struct clv_transition *t = &out.t[k];

            if (t->seq != seq + 1)
                fail_msg("step %d: seq %u after %u", i, t->seq, seq);
            seq = t->seq;
            if (t->kind == CLV_TRANSITION_STAGE) {
                if (t->from != stage)
                    fail_msg("step %d: from %s, but the stage was %s", i, sname(t->from),
                             sname(stage));
                stage = t->to;
                /* stage transitions never go back in time */
                if (t->at < last_at)
                    fail_msg("step %d: transition at %lld before the previous one at %lld", i,
                             (long long)t->at, (long long)last_at);
                last_at = t->at;
            } else {
                if (t->from != tier)
                    fail_msg("step %d: tier from %d, but the tier was %d", i, t->from, tier);
                tier = t->to;
            }
        }
        assert_int_equal(c.seq, seq);
        assert_int_equal(c.stage, stage);
        assert_int_equal(c.tier, tier);
    }
}

static void test_next_deadline_consistent_with_advance(void **state)
{
    struct clv_rules r = g_rules;

    (void)state;
    for (int i = 0; i < 40; i++)
        random_history(&g_rules, 60);
    r.model_on = 1;
    r.lc.at_risk_p_alive_below = 0.3;
    for (int i = 0; i < 10; i++)
        random_history(&r, 40);
}

static void test_reason_names(void **state)
{
    (void)state;
    assert_string_equal(reason_name(CLV_REASON_FIRST_SEEN), "first_seen");
    assert_string_equal(reason_name(CLV_REASON_FIRST_PURCHASE), "first_purchase");
    assert_string_equal(reason_name(CLV_REASON_REPEAT_PURCHASE), "repeat_purchase");
    assert_string_equal(reason_name(CLV_REASON_LOYAL_THRESHOLD), "loyal_threshold");
    assert_string_equal(reason_name(CLV_REASON_RECOVERED), "recovered");
    assert_string_equal(reason_name(CLV_REASON_WON_BACK), "won_back");
    assert_string_equal(reason_name(CLV_REASON_RETURNED), "returned");
    assert_string_equal(reason_name(CLV_REASON_PURCHASE_GAP), "purchase_gap");
    assert_string_equal(reason_name(CLV_REASON_P_ALIVE), "p_alive");
    assert_string_equal(reason_name(CLV_REASON_INACTIVE), "inactive");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_table),
        cmocka_unit_test(test_first_transition_from_none),
        cmocka_unit_test(test_event_at_stage_since_is_in_order),
        cmocka_unit_test(test_loyal_rule),
        cmocka_unit_test(test_at_risk_purchase_recovers_to_loyal),
        cmocka_unit_test(test_at_risk_deadline_formula),
        cmocka_unit_test(test_at_risk_from_each_stage),
        cmocka_unit_test(test_dormant_after_60_days_from_each_stage),
        cmocka_unit_test(test_churned_180_days_after_last_activity),
        cmocka_unit_test(test_catch_up_then_event),
        cmocka_unit_test(test_catch_up_independent_of_sweeper_progress),
        cmocka_unit_test(test_old_event_updates_aggregates_only),
        cmocka_unit_test(test_duplicates_change_nothing),
        cmocka_unit_test(test_redelivered_burst_is_duplicate),
        cmocka_unit_test(test_tier_upgrade),
        cmocka_unit_test(test_tier_downgrade_time_driven),
        cmocka_unit_test(test_tier_lifetime_window),
        cmocka_unit_test(test_tier_out_of_range_after_reload),
        cmocka_unit_test(test_p_alive_rule),
        cmocka_unit_test(test_snapshot_as_of_at),
        cmocka_unit_test(test_next_deadline_consistent_with_advance),
        cmocka_unit_test(test_reason_names),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
