/* test_customer.c -- per-customer aggregates, windows, de-duplication ring and
 * the binary codec (SPEC section 4). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "customer.h"
#include "stages.h"

#define D0 1767225600000LL /* 2026-01-01T00:00:00.000Z */
#define DAY CLV_MS_PER_DAY
#define HOUR CLV_MS_PER_HOUR
#define T(d, h) (D0 + (clv_ms)(d)*DAY + (clv_ms)(h)*HOUR)
#define DAY0 ((int32_t)(D0 / DAY))

enum { PUR = CLV_EV_PURCHASE, LOG = CLV_EV_LOGIN, VIS = CLV_EV_VISIT };

static struct clv_config g_cfg;
static struct clv_rules g_rules;

static int group_setup(void **state)
{
    char err[CLV_ERRLEN];

    (void)state;
    if (config_defaults(&g_cfg, err, sizeof(err)) != 0)
        return -1;
    rules_from_config(&g_rules, &g_cfg);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    config_free(&g_cfg);
    return 0;
}

static uint64_t rng_state = 0x2545f4914f6cdd1dULL;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static struct clv_event mkev(int type, clv_ms ts, double amount, const char *id,
                             const char *channel)
{
    struct clv_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.type = (enum clv_event_type)type;
    ev.ts = ts;
    ev.amount = amount;
    ev.event_id_len = (size_t)snprintf(ev.event_id, sizeof(ev.event_id), "%s", id);
    ev.customer_id_len = (size_t)snprintf(ev.customer_id, sizeof(ev.customer_id), "c1");
    if (channel)
        snprintf(ev.channel, sizeof(ev.channel), "%s", channel);
    return ev;
}

static void add(struct clv_customer *c, int type, clv_ms ts, double amount)
{
    struct clv_event ev = mkev(type, ts, amount, "x", NULL);

    customer_add_event(c, &ev, g_rules.keep_days);
}

static void apply_ev(struct clv_customer *c, const struct clv_event *ev)
{
    struct clv_transitions out;

    out.n = 0;
    stages_apply_event(c, &g_rules, ev, &out);
}

static int near(double a, double b)
{
    return fabs(a - b) <= 1e-9 * (1 + fabs(a) + fabs(b));
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* Every aggregate, field by field (floating sums within rounding); the
 * de-duplication ring as a set.  `what` names the case in failures. */
static void expect_same_aggregates(const struct clv_customer *a, const struct clv_customer *b,
                                   int with_log, const char *what)
{
#define SAME(f)                                                                                    \
    do {                                                                                           \
        if (a->f != b->f)                                                                          \
            fail_msg("%s: " #f " differs: %lld vs %lld", what, (long long)a->f, (long long)b->f);  \
    } while (0)
#define NEAR(f)                                                                                    \
    do {                                                                                           \
        if (!near(a->f, b->f))                                                                     \
            fail_msg("%s: " #f " differs: %.17g vs %.17g", what, (double)a->f, (double)b->f);      \
    } while (0)
    SAME(first_seen);
    SAME(last_activity);
    SAME(first_purchase);
    SAME(last_purchase);
    SAME(purchases);
    NEAR(revenue);
    SAME(logins);
    SAME(visits);
    SAME(purchase_days);
    SAME(first_pday);
    SAME(last_pday);
    NEAR(first_day_revenue);
    SAME(active_anchor);
    SAME(active_bits[0]);
    SAME(active_bits[1]);
    if (strcmp(a->channel, b->channel) != 0)
        fail_msg("%s: channel \"%s\" vs \"%s\"", what, a->channel, b->channel);
    if (with_log) {
        SAME(npdays);
        for (int i = 0; i < a->npdays; i++) {
            SAME(pdays[i].day);
            SAME(pdays[i].count);
            NEAR(pdays[i].revenue);
        }
    }
    SAME(ndedupe);
    {
        uint64_t x[CLV_MAX_DEDUPE], y[CLV_MAX_DEDUPE];

        memcpy(x, a->dedupe, a->ndedupe * sizeof(x[0]));
        memcpy(y, b->dedupe, b->ndedupe * sizeof(y[0]));
        qsort(x, a->ndedupe, sizeof(x[0]), cmp_u64);
        qsort(y, b->ndedupe, sizeof(y[0]), cmp_u64);
        if (memcmp(x, y, a->ndedupe * sizeof(x[0])) != 0)
            fail_msg("%s: de-duplication ids differ", what);
    }
#undef SAME
#undef NEAR
}

static void expect_same_windows(const struct clv_customer *a, const struct clv_customer *b,
                                clv_ms at, const char *what)
{
    struct clv_windows x, y;

    customer_windows(a, at, &x);
    customer_windows(b, at, &y);
    if (x.active_days_7d != y.active_days_7d || x.active_days_30d != y.active_days_30d ||
        x.active_days_90d != y.active_days_90d || x.purchases_7d != y.purchases_7d ||
        x.purchases_30d != y.purchases_30d || x.purchases_90d != y.purchases_90d ||
        !near(x.revenue_7d, y.revenue_7d) || !near(x.revenue_30d, y.revenue_30d) ||
        !near(x.revenue_90d, y.revenue_90d))
        fail_msg("%s: windows at %lld differ", what, (long long)at);
}

/* ---- order independence -------------------------------------------------- */

#define NEV 40

static void make_event_set(struct clv_event *evs, int n, int span_days)
{
    for (int i = 0; i < n; i++) {
        char id[32];
        int type = (int)(rnd() % 3);
        /* a few days get several events */
        int day = (int)(rnd() % (uint64_t)span_days);
        clv_ms ts = T(day, 0) + (clv_ms)(rnd() % (uint64_t)DAY);

        static const char *const channels[] = {NULL, NULL, "search", "email", "social"};

        if (i % 7 == 3)
            ts = evs[i - 1].ts + 1 + (clv_ms)(rnd() % 1000); /* same day, often */
        snprintf(id, sizeof(id), "e%d", i);
        evs[i] = mkev(type, ts, (double)(rnd() % 100000) / 100.0, id, channels[rnd() % 5]);
    }
}

static void shuffle(int *idx, int n)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rnd() % (uint64_t)(i + 1)), t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}

static void fold(struct clv_customer *c, const struct clv_event *evs, const int *idx, int n)
{
    customer_init(c);
    for (int i = 0; i < n; i++) {
        const struct clv_event *ev = &evs[idx[i]];

        customer_add_event(c, ev, g_rules.keep_days);
        customer_remember_event(
            c, customer_event_fingerprint(ev->event_id, ev->event_id_len, ev->ts), 200 * DAY, 64);
    }
}

static void test_aggregates_order_independent(void **state)
{
    struct clv_event evs[NEV];
    int idx[NEV];
    struct clv_customer ref, c;

    (void)state;
    for (int round = 0; round < 20; round++) {
        /* within the retained log (up to 200 days) and across the 128-day
         * activity window */
        make_event_set(evs, NEV, round % 2 ? 200 : 20);
        for (int i = 0; i < NEV; i++)
            idx[i] = i;
        fold(&ref, evs, idx, NEV);
        for (int p = 0; p < 12; p++) {
            if (p == 0) {
                for (int i = 0; i < NEV; i++)
                    idx[i] = NEV - 1 - i;
            } else {
                shuffle(idx, NEV);
            }
            fold(&c, evs, idx, NEV);
            expect_same_aggregates(&ref, &c, 1, "permutation");
            for (int d = 0; d < 230; d += 3)
                expect_same_windows(&ref, &c, T(d, 12), "permutation");
        }
    }
}

/* The same through the rules (with their trimming of the purchase-day log),
 * comparing aggregates only: stages legitimately depend on arrival order. */
static void test_aggregates_order_independent_through_rules(void **state)
{
    struct clv_event evs[NEV];
    int idx[NEV];
    struct clv_customer ref, c;
    struct clv_transitions out;

    (void)state;
    for (int round = 0; round < 10; round++) {
        make_event_set(evs, NEV, 300);
        for (int i = 0; i < NEV; i++)
            idx[i] = i;
        for (int p = 0; p < 8; p++) {
            struct clv_customer *dst = p == 0 ? &ref : &c;

            customer_init(dst);
            for (int i = 0; i < NEV; i++) {
                out.n = 0;
                stages_apply_event(dst, &g_rules, &evs[idx[i]], &out);
            }
            if (p > 0) {
                expect_same_aggregates(&ref, &c, 1, "permutation through rules");
                for (int d = 250; d < 400; d += 7)
                    expect_same_windows(&ref, &c, T(d, 12), "permutation through rules");
            }
            shuffle(idx, NEV);
        }
    }
}

/* SPEC 3: "channel of the first event is kept as acquisition channel", and
 * aggregates do not depend on arrival order: the earliest event's channel. */
static void test_channel_of_earliest_event(void **state)
{
    struct clv_customer c;
    struct clv_event a = mkev(VIS, T(1, 0), 0, "a", "search");
    struct clv_event b = mkev(VIS, T(2, 0), 0, "b", "email");
    struct clv_event n = mkev(VIS, T(0, 0), 0, "n", NULL);

    (void)state;
    customer_init(&c);
    customer_add_event(&c, &a, 365);
    customer_add_event(&c, &b, 365);
    assert_string_equal(c.channel, "search");
    /* an earlier event without a channel does not erase it */
    customer_add_event(&c, &n, 365);
    assert_string_equal(c.channel, "search");

    customer_init(&c);
    customer_add_event(&c, &b, 365); /* arrives first, but is later */
    customer_add_event(&c, &a, 365);
    assert_string_equal(c.channel, "search");
}

/* A second purchase on the first purchase day arrives after the day left
 * the retained log: still one purchase day. */
static void test_late_purchase_on_trimmed_day(void **state)
{
    struct clv_event p1 = mkev(PUR, T(0, 10), 10, "p1", NULL);
    struct clv_event p2 = mkev(PUR, T(0, 12), 20, "p2", NULL);
    struct clv_event p3 = mkev(PUR, T(100, 10), 10, "p3", NULL);
    struct clv_event v = mkev(VIS, T(400, 10), 0, "v", NULL);
    struct clv_customer in_order, late;

    (void)state;
    /* only purchases on day 0; the visit on day 400 trims day 0 from the log */
    customer_init(&in_order);
    customer_init(&late);
    apply_ev(&in_order, &p1);
    apply_ev(&in_order, &p2);
    apply_ev(&in_order, &v);
    apply_ev(&late, &p1);
    apply_ev(&late, &v);
    apply_ev(&late, &p2);
    assert_int_equal(in_order.purchase_days, 1);
    assert_int_equal(late.purchase_days, in_order.purchase_days);
    assert_true(near(late.first_day_revenue, 30));

    /* days 0 and 100; day 0 trimmed while day 100 is still retained */
    customer_init(&in_order);
    customer_init(&late);
    apply_ev(&in_order, &p1);
    apply_ev(&in_order, &p2);
    apply_ev(&in_order, &p3);
    apply_ev(&in_order, &v);
    apply_ev(&late, &p1);
    apply_ev(&late, &p3);
    apply_ev(&late, &v);
    apply_ev(&late, &p2);
    assert_int_equal(in_order.purchase_days, 2);
    assert_int_equal(late.purchase_days, in_order.purchase_days);
    assert_true(near(late.first_day_revenue, 30));
}

/* ---- windows ------------------------------------------------------------- */

static void test_windows_exact_at_day_boundaries(void **state)
{
    struct clv_customer c;
    struct clv_windows w;
    const int lens[3] = {7, 30, 90};

    (void)state;
    for (int k = 0; k < 3; k++) {
        int n = lens[k];

        customer_init(&c);
        add(&c, PUR, T(10, 0) - 1, 5); /* day 9, 23:59:59.999 */
        add(&c, PUR, T(10, 0), 7);     /* day 10, 00:00 */
        add(&c, LOG, T(10 + n, 0), 0); /* day 10+n */
        /* window of n days ending day 9+n: days 10..9+n -> includes day 10 only */
        customer_windows(&c, T(9 + n, 23) + 59 * 60000 + 59999, &w);
        {
            int p = n == 7 ? w.purchases_7d : n == 30 ? w.purchases_30d : w.purchases_90d;
            double r = n == 7 ? w.revenue_7d : n == 30 ? w.revenue_30d : w.revenue_90d;
            int a = n == 7 ? w.active_days_7d : n == 30 ? w.active_days_30d : w.active_days_90d;
            if (p != 1 || !near(r, 7) || a != 1)
                fail_msg("%dd window at end of day %d: %d purchases, %.2f, %d active days", n,
                         9 + n, p, r, a);
        }
        /* one ms earlier is still day 9+n: same; at day 8+n both count */
        customer_windows(&c, T(9 + n, 0), &w);
        {
            int p = n == 7 ? w.purchases_7d : n == 30 ? w.purchases_30d : w.purchases_90d;
            assert_int_equal(p, 1);
        }
        customer_windows(&c, T(9 + n, 0) - 1, &w);
        {
            int p = n == 7 ? w.purchases_7d : n == 30 ? w.purchases_30d : w.purchases_90d;
            double r = n == 7 ? w.revenue_7d : n == 30 ? w.revenue_30d : w.revenue_90d;
            int a = n == 7 ? w.active_days_7d : n == 30 ? w.active_days_30d : w.active_days_90d;
            if (p != 2 || !near(r, 12) || a != 2)
                fail_msg("%dd window at end of day %d: %d purchases, %.2f, %d active days", n,
                         8 + n, p, r, a);
        }
        /* day 10+n: only the login's day */
        customer_windows(&c, T(10 + n, 0), &w);
        {
            int p = n == 7 ? w.purchases_7d : n == 30 ? w.purchases_30d : w.purchases_90d;
            int a = n == 7 ? w.active_days_7d : n == 30 ? w.active_days_30d : w.active_days_90d;
            assert_int_equal(p, 0);
            assert_int_equal(a, 1);
        }
        /* before the purchases: nothing yet counts in a window ending day 8 */
        customer_windows(&c, T(8, 12), &w);
        assert_int_equal(w.purchases_90d, 0);
        assert_int_equal(w.active_days_90d, 0);
    }

    /* helpers agree with the windows */
    customer_init(&c);
    for (int d = 0; d < 100; d++)
        add(&c, PUR, T(d, 12), d);
    customer_windows(&c, T(99, 23), &w);
    assert_int_equal(w.purchases_7d, 7);
    assert_int_equal(w.purchases_30d, 30);
    assert_int_equal(w.purchases_90d, 90);
    assert_int_equal(w.active_days_90d, 90);
    assert_true(near(w.revenue_7d, 93 + 94 + 95 + 96 + 97 + 98 + 99));
    assert_int_equal(customer_purchases_within(&c, T(99, 23), 180), 100);
    assert_true(near(customer_revenue_within(&c, T(99, 23), 2), 98 + 99));
}

/* ---- 128-day activity bitmap --------------------------------------------- */

static int ref_bit(const int *days, int n, int32_t anchor, int i)
{
    for (int k = 0; k < n; k++)
        if (days[k] == anchor - i)
            return 1;
    return 0;
}

static void check_bitmap(const struct clv_customer *c, const int *days, int n, const char *what)
{
    int32_t anchor = days[0];

    for (int k = 1; k < n; k++)
        if (days[k] > anchor)
            anchor = days[k];
    if (c->active_anchor != anchor)
        fail_msg("%s: anchor %d, want %d", what, c->active_anchor, anchor);
    for (int i = 0; i < 128; i++) {
        int got = (int)((c->active_bits[i / 64] >> (i % 64)) & 1);
        if (got != ref_bit(days, n, anchor, i))
            fail_msg("%s: bit %d (day %d) is %d", what, i, anchor - i, got);
    }
}

static void test_active_bitmap_shifting(void **state)
{
    const int shifts[] = {1, 2, 63, 64, 65, 100, 127, 128, 129, 200, 1000};
    struct clv_customer c;

    (void)state;
    /* two events `s` days apart, forward and backward */
    for (size_t k = 0; k < CLV_ARRAY_LEN(shifts); k++) {
        int days[3] = {DAY0 + 5, DAY0 + 5 + shifts[k], DAY0 + 6};
        char what[64];

        snprintf(what, sizeof(what), "shift %d", shifts[k]);
        customer_init(&c);
        add(&c, VIS, T(5, 1), 0);
        add(&c, VIS, T(6, 1), 0);
        add(&c, LOG, T(5 + shifts[k], 1), 0);
        check_bitmap(&c, days, 3, what);
        customer_init(&c);
        add(&c, LOG, T(5 + shifts[k], 1), 0);
        add(&c, VIS, T(6, 1), 0);
        add(&c, VIS, T(5, 1), 0);
        check_bitmap(&c, days, 3, what);
    }
    /* random days in random order */
    for (int round = 0; round < 300; round++) {
        int days[30], n = 1 + (int)(rnd() % 30);

        customer_init(&c);
        for (int k = 0; k < n; k++) {
            days[k] = DAY0 + (int)(rnd() % (round % 3 == 0 ? 400 : 140));
            add(&c, (int)(rnd() % 3), (clv_ms)days[k] * DAY + (clv_ms)(rnd() % (uint64_t)DAY), 1);
        }
        check_bitmap(&c, days, n, "random");
    }
    /* 90-day window reads through the word boundary */
    customer_init(&c);
    for (int d = 0; d < 128; d++)
        add(&c, VIS, T(d, 3), 0);
    {
        struct clv_windows w;

        customer_windows(&c, T(127, 5), &w);
        assert_int_equal(w.active_days_90d, 90);
        customer_windows(&c, T(127 + 80, 5), &w);
        assert_int_equal(w.active_days_90d, 10);
        assert_int_equal(w.active_days_30d, 0);
    }
}

/* ---- purchase-day log ---------------------------------------------------- */

static void test_pday_log_trimming(void **state)
{
    struct clv_customer c;

    (void)state;
    customer_init(&c);
    add(&c, PUR, T(0, 10), 1);
    add(&c, PUR, T(10, 10), 2);
    add(&c, PUR, T(11, 10), 3);
    add(&c, PUR, T(11, 11), 4);
    assert_int_equal(c.npdays, 3);
    assert_int_equal(c.pdays[2].count, 2);
    assert_true(near(c.pdays[2].revenue, 7));
    /* keep 10 days as of day 10: day 0 is exactly 10 days old: kept */
    customer_trim_pdays(&c, T(10, 23), 10);
    assert_int_equal(c.npdays, 3);
    customer_trim_pdays(&c, T(11, 0), 10);
    assert_int_equal(c.npdays, 2);
    assert_int_equal(c.pdays[0].day, DAY0 + 10);
    /* trimming never touches the lifetime figures */
    assert_int_equal(c.purchases, 4);
    assert_int_equal(c.purchase_days, 3);
    assert_true(near(c.revenue, 10));
    assert_int_equal(c.first_pday, DAY0);
    assert_true(near(c.first_day_revenue, 1));
    customer_trim_pdays(&c, T(1000, 0), 10);
    assert_int_equal(c.npdays, 0);
    assert_int_equal(c.purchase_days, 3);

    /* the log is bounded: one purchase a day for 450 days */
    customer_init(&c);
    for (int d = 0; d < 450; d++) {
        struct clv_event ev = mkev(PUR, T(d, 10), 1, "p", NULL);
        customer_add_event(&c, &ev, 1000);
    }
    assert_int_equal(c.npdays, CLV_MAX_PDAYS);
    assert_int_equal(c.pdays[0].day, DAY0 + 450 - CLV_MAX_PDAYS);
    assert_int_equal(c.pdays[CLV_MAX_PDAYS - 1].day, DAY0 + 449);
    assert_int_equal(c.purchase_days, 450);
    assert_int_equal(c.purchases, 450);
    for (int i = 1; i < c.npdays; i++)
        assert_true(c.pdays[i - 1].day < c.pdays[i].day);
    /* a late purchase older than the whole full log: counted, not logged */
    {
        struct clv_event ev = mkev(PUR, T(-5, 10), 1, "p", NULL);
        customer_add_event(&c, &ev, 1000);
    }
    assert_int_equal(c.npdays, CLV_MAX_PDAYS);
    assert_int_equal(c.purchases, 451);
    assert_int_equal(c.purchase_days, 451);
    assert_int_equal(c.first_pday, DAY0 - 5);
}

static void test_first_day_revenue_late_earlier_purchase(void **state)
{
    struct clv_customer c;

    (void)state;
    customer_init(&c);
    add(&c, PUR, T(10, 10), 100);
    add(&c, PUR, T(20, 10), 50);
    assert_int_equal(c.first_pday, DAY0 + 10);
    assert_true(near(c.first_day_revenue, 100));
    /* an earlier purchase arrives late: it is the first day now */
    add(&c, PUR, T(5, 10), 30);
    assert_int_equal(c.first_pday, DAY0 + 5);
    assert_int_equal(c.last_pday, DAY0 + 20);
    assert_true(near(c.first_day_revenue, 30));
    assert_int_equal(c.purchase_days, 3);
    assert_int_equal(c.first_purchase, T(5, 10));
    /* another purchase on the (new) first day */
    add(&c, PUR, T(5, 22), 20);
    assert_true(near(c.first_day_revenue, 50));
    assert_int_equal(c.purchase_days, 3);
    /* repeat spend = revenue - first-day revenue = 150 */
    assert_true(near(c.revenue - c.first_day_revenue, 150));
    /* a purchase on the first day, then an earlier one on a day that already
     * has purchases cannot happen; but an earlier day with two purchases,
     * arriving in reverse order */
    add(&c, PUR, T(1, 20), 4);
    add(&c, PUR, T(1, 2), 6);
    assert_int_equal(c.first_pday, DAY0 + 1);
    assert_true(near(c.first_day_revenue, 10));
    assert_int_equal(c.purchase_days, 4);
    assert_int_equal(c.first_purchase, T(1, 2));
    assert_int_equal(c.last_purchase, T(20, 10));
}

/* ---- de-duplication ------------------------------------------------------ */

static uint64_t fp_of(const char *id, clv_ms ts)
{
    return customer_event_fingerprint(id, strlen(id), ts);
}

static void test_dedupe_ring_bounded_by_max_ids(void **state)
{
    struct clv_customer c;
    char id[32];

    (void)state;
    customer_init(&c);
    for (int i = 0; i < 40; i++) {
        snprintf(id, sizeof(id), "ev-%d", i);
        customer_remember_event(&c, fp_of(id, T(0, 0) + i * HOUR), 7 * DAY, 16);
        assert_true(c.ndedupe <= 16);
    }
    assert_int_equal(c.ndedupe, 16);
    /* the 16 newest are remembered, the older ones are not */
    for (int i = 0; i < 40; i++) {
        snprintf(id, sizeof(id), "ev-%d", i);
        if (customer_seen_event(&c, fp_of(id, T(0, 0) + i * HOUR)) != (i >= 24))
            fail_msg("event %d: seen %d, want %d", i,
                     customer_seen_event(&c, fp_of(id, T(0, 0) + i * HOUR)), i >= 24);
    }
    /* max_ids is capped by the array */
    customer_init(&c);
    for (int i = 0; i < 200; i++) {
        snprintf(id, sizeof(id), "ev-%d", i);
        customer_remember_event(&c, fp_of(id, T(0, 0)), 7 * DAY, 1000);
    }
    assert_int_equal(c.ndedupe, CLV_MAX_DEDUPE);
    /* max_ids = 1 */
    customer_init(&c);
    customer_remember_event(&c, fp_of("a", T(0, 0)), 7 * DAY, 1);
    customer_remember_event(&c, fp_of("b", T(0, 1)), 7 * DAY, 1);
    assert_int_equal(c.ndedupe, 1);
    assert_false(customer_seen_event(&c, fp_of("a", T(0, 0))));
    assert_true(customer_seen_event(&c, fp_of("b", T(0, 1))));
}

static void test_dedupe_ring_bounded_by_window(void **state)
{
    struct clv_customer c;

    (void)state;
    customer_init(&c);
    customer_remember_event(&c, fp_of("old", T(0, 0)), 7 * DAY, 16);
    /* 7 days later: still inside the window */
    customer_remember_event(&c, fp_of("b", T(7, 0)), 7 * DAY, 16);
    assert_true(customer_seen_event(&c, fp_of("old", T(0, 0))));
    assert_int_equal(c.ndedupe, 2);
    /* beyond 7 days (hour granularity): evicted */
    customer_remember_event(&c, fp_of("c", T(7, 1)), 7 * DAY, 16);
    assert_false(customer_seen_event(&c, fp_of("old", T(0, 0))));
    assert_true(customer_seen_event(&c, fp_of("b", T(7, 0))));
    assert_int_equal(c.ndedupe, 2);
    /* an event older than the window of the newest is not remembered */
    customer_remember_event(&c, fp_of("ancient", T(-30, 0)), 7 * DAY, 16);
    assert_false(customer_seen_event(&c, fp_of("ancient", T(-30, 0))));
    assert_int_equal(c.ndedupe, 2);
    /* a newer event far ahead clears everything older than its window */
    customer_remember_event(&c, fp_of("future", T(100, 0)), 7 * DAY, 16);
    assert_int_equal(c.ndedupe, 1);
    assert_true(customer_seen_event(&c, fp_of("future", T(100, 0))));
}

/* "Keep the ids of the newest events" (customer.c): a late, older event must
 * not push a newer id out of a full ring, or a redelivery of the newer event
 * would be applied twice. */
static void test_dedupe_ring_keeps_newest(void **state)
{
    struct clv_customer c;

    (void)state;
    customer_init(&c);
    customer_remember_event(&c, fp_of("e1", T(1, 10)), 7 * DAY, 2);
    customer_remember_event(&c, fp_of("e2", T(1, 11)), 7 * DAY, 2);
    customer_remember_event(&c, fp_of("e0", T(1, 5)), 7 * DAY, 2);
    assert_int_equal(c.ndedupe, 2);
    assert_true(customer_seen_event(&c, fp_of("e1", T(1, 10))));
    assert_true(customer_seen_event(&c, fp_of("e2", T(1, 11))));
}

static void test_dedupe_fingerprint(void **state)
{
    struct clv_customer c;
    char id[32];
    int collisions = 0;

    (void)state;
    /* the id decides, not the time */
    customer_init(&c);
    customer_remember_event(&c, fp_of("order-1", T(3, 4)), 7 * DAY, 16);
    assert_true(customer_seen_event(&c, fp_of("order-1", T(3, 9))));
    assert_false(customer_seen_event(&c, fp_of("order-2", T(3, 4))));
    assert_false(customer_seen_event(&c, fp_of("order-10", T(3, 4))));
    /* ids differing in one byte, with NULs, binary */
    assert_true((fp_of("a", 0) >> 24) != (fp_of("b", 0) >> 24));
    assert_true((customer_event_fingerprint("a\0b", 3, 0) >> 24) !=
                (customer_event_fingerprint("a\0c", 3, 0) >> 24));
    assert_true((customer_event_fingerprint("a", 1, 0) >> 24) !=
                (customer_event_fingerprint("a\0", 2, 0) >> 24));
    /* no collision among 20000 sequential ids within one customer's ring:
     * compare each against 63 others (the ring's worst case) */
    for (int i = 0; i < 20000; i++) {
        uint64_t a, b;

        snprintf(id, sizeof(id), "evt-%d", i);
        a = fp_of(id, 0) >> 24;
        for (int k = 1; k < 64; k++) {
            snprintf(id, sizeof(id), "evt-%d", i + k);
            b = fp_of(id, 0) >> 24;
            collisions += a == b;
        }
    }
    assert_int_equal(collisions, 0);
}

/* ---- codec ----------------------------------------------------------------- */

static void expect_same_state(const struct clv_customer *a, const struct clv_customer *b,
                              const char *what)
{
    if (a->version != b->version || a->stage != b->stage || a->tier != b->tier ||
        a->seq != b->seq || a->stage_since != b->stage_since)
        fail_msg("%s: header differs (version %llu/%llu stage %d/%d tier %d/%d seq %u/%u "
                 "since %lld/%lld)",
                 what, (unsigned long long)a->version, (unsigned long long)b->version, a->stage,
                 b->stage, a->tier, b->tier, a->seq, b->seq, (long long)a->stage_since,
                 (long long)b->stage_since);
    /* exact, not within rounding: the codec stores doubles bit for bit */
    if (memcmp(&a->revenue, &b->revenue, sizeof(double)) != 0 ||
        memcmp(&a->first_day_revenue, &b->first_day_revenue, sizeof(double)) != 0)
        fail_msg("%s: revenue not bit-exact", what);
    for (int i = 0; i < a->npdays && i < b->npdays; i++)
        if (memcmp(&a->pdays[i].revenue, &b->pdays[i].revenue, sizeof(double)) != 0)
            fail_msg("%s: pday %d revenue not bit-exact", what, i);
    expect_same_aggregates(a, b, 1, what);
    for (int i = 0; i < a->ndedupe; i++)
        if (a->dedupe[i] != b->dedupe[i])
            fail_msg("%s: dedupe[%d] differs (order must be kept)", what, i);
    if (strcmp(a->channel, b->channel) != 0)
        fail_msg("%s: channel \"%s\" vs \"%s\"", what, a->channel, b->channel);
}

static void roundtrip(const struct clv_customer *c, const char *what)
{
    unsigned char buf[CLV_STATE_MAX_BYTES], buf2[CLV_STATE_MAX_BYTES];
    struct clv_customer d;
    char err[CLV_ERRLEN] = "";
    size_t n = customer_encode(c, buf, sizeof(buf)), n2;

    if (n == 0)
        fail_msg("%s: encode failed", what);
    for (int i = 0; i < 8; i++)
        assert_int_equal(buf[i], (unsigned char)(c->version >> (8 * i)));
    if (customer_decode(&d, buf, n, err, sizeof(err)) != 0)
        fail_msg("%s: decode failed: %s", what, err);
    expect_same_state(c, &d, what);
    n2 = customer_encode(&d, buf2, sizeof(buf2));
    assert_int_equal(n2, n);
    assert_memory_equal(buf, buf2, n);
    /* a buffer one byte short is refused, never overrun */
    assert_int_equal(customer_encode(c, buf2, n - 1), 0);
    assert_int_equal(customer_encode(c, buf2, 0), 0);
}

static void random_state_by_events(struct clv_customer *c, const struct clv_rules *r, int nev)
{
    struct clv_transitions out;
    clv_ms now = T(0, 0) + (clv_ms)(rnd() % (3000 * (uint64_t)DAY));
    static const char *const channels[] = {NULL, "search", "email", "", "social-media-campaign"};

    customer_init(c);
    for (int i = 0; i < nev; i++) {
        char id[40];
        struct clv_event ev;

        now += (clv_ms)(rnd() % (uint64_t)(rnd() % 4 == 0 ? 100 * DAY : 3 * DAY));
        snprintf(id, sizeof(id), "ev-%llu", (unsigned long long)rnd());
        ev = mkev((int)(rnd() % 3), now - (clv_ms)(rnd() % (uint64_t)(5 * DAY)),
                  (double)(rnd() % 1000000) / 100.0, id, channels[rnd() % 5]);
        out.n = 0;
        stages_apply_event(c, r, &ev, &out);
    }
    out.n = 0;
    stages_advance(c, r, now + (clv_ms)(rnd() % (uint64_t)(400 * DAY)), &out);
    c->version = rnd();
}

static void test_codec_roundtrip_random_states(void **state)
{
    struct clv_customer c;

    (void)state;
    customer_init(&c);
    roundtrip(&c, "empty");
    for (int i = 0; i < 500; i++) {
        random_state_by_events(&c, &g_rules, (int)(rnd() % 120));
        roundtrip(&c, "by events");
    }
    /* random field values, within what the rules can produce */
    for (int i = 0; i < 2000; i++) {
        customer_init(&c);
        c.version = rnd();
        c.stage = (int8_t)((int)(rnd() % (CLV_STAGE_COUNT + 1)) - 1);
        c.tier = (int8_t)(rnd() % CLV_MAX_TIERS);
        c.seq = (uint32_t)rnd();
        /* leave room below year 9999 for the offsets added next */
        c.first_seen = (clv_ms)(rnd() % (253402300799999ULL - 300000 * (uint64_t)DAY));
        c.last_activity = c.first_seen + (clv_ms)(rnd() % (100000 * (uint64_t)DAY));
        c.stage_since = c.first_seen + (clv_ms)(rnd() % (200000 * (uint64_t)DAY));
        if (rnd() % 4) {
            c.first_purchase = c.first_seen + (clv_ms)(rnd() % (1000 * (uint64_t)DAY));
            c.last_purchase = c.first_purchase + (clv_ms)(rnd() % (1000 * (uint64_t)DAY));
            c.purchases = (uint32_t)rnd();
            c.purchase_days = (uint32_t)rnd();
            c.first_pday = clv_day_of(c.first_purchase);
            c.last_pday = clv_day_of(c.last_purchase);
        }
        c.revenue = (double)(int64_t)rnd() / 3.0;
        c.first_day_revenue = (double)rnd() / 7.0;
        c.logins = (uint32_t)rnd();
        c.visits = (uint32_t)rnd();
        c.active_anchor = clv_day_of(c.last_activity);
        c.active_bits[0] = rnd();
        c.active_bits[1] = rnd();
        c.npdays = (uint16_t)(rnd() % (CLV_MAX_PDAYS + 1));
        for (int k = 0, d = c.first_pday > 10 ? c.first_pday - (int)(rnd() % 10) : 0;
             k < c.npdays; k++) {
            d += 1 + (int)(rnd() % 3);
            c.pdays[k].day = d;
            c.pdays[k].count = (uint16_t)rnd();
            c.pdays[k].revenue = (double)(rnd() % 100000000) / 100.0;
        }
        c.ndedupe = (uint8_t)(rnd() % (CLV_MAX_DEDUPE + 1));
        for (int k = 0; k < c.ndedupe; k++)
            c.dedupe[k] = rnd();
        {
            size_t len = rnd() % (CLV_CHANNEL_MAX + 1);
            for (size_t k = 0; k < len; k++)
                c.channel[k] = (char)(1 + rnd() % 255);
            c.channel[len] = '\0';
        }
        roundtrip(&c, "random fields");
    }
    /* the largest state fits CLV_STATE_MAX_BYTES */
    customer_init(&c);
    c.version = UINT64_MAX;
    c.seq = UINT32_MAX;
    c.purchases = c.logins = c.visits = c.purchase_days = UINT32_MAX;
    c.first_seen = 253402300799999LL;
    c.active_bits[0] = c.active_bits[1] = UINT64_MAX;
    c.npdays = CLV_MAX_PDAYS;
    for (int k = 0; k < CLV_MAX_PDAYS; k++)
        c.pdays[k] = (struct clv_pday){.day = k * 7000, .count = UINT16_MAX, .revenue = 1e300};
    c.ndedupe = CLV_MAX_DEDUPE;
    memset(c.dedupe, 0xff, sizeof(c.dedupe));
    memset(c.channel, 'x', CLV_CHANNEL_MAX);
    c.channel[CLV_CHANNEL_MAX] = '\0';
    roundtrip(&c, "largest");
}

static void test_decode_rejects_truncated_and_trailing(void **state)
{
    unsigned char buf[CLV_STATE_MAX_BYTES + 1];
    struct clv_customer c, d;
    char err[CLV_ERRLEN];
    size_t n;

    (void)state;
    for (int round = 0; round < 30; round++) {
        random_state_by_events(&c, &g_rules, 1 + (int)(rnd() % 60));
        n = customer_encode(&c, buf, sizeof(buf) - 1);
        assert_true(n > 8);
        for (size_t k = 0; k < n; k++) {
            unsigned char *copy = malloc(k ? k : 1); /* exact size: ASan sees overreads */

            assert_non_null(copy);
            memcpy(copy, buf, k);
            err[0] = '\0';
            if (customer_decode(&d, copy, k, err, sizeof(err)) == 0)
                fail_msg("accepted a state truncated to %zu of %zu bytes", k, n);
            assert_true(err[0] != '\0');
            free(copy);
        }
        buf[n] = (unsigned char)rnd();
        err[0] = '\0';
        assert_int_equal(customer_decode(&d, buf, n + 1, err, sizeof(err)), -1);
        assert_true(err[0] != '\0');
        assert_int_equal(customer_decode(&d, buf, n, err, sizeof(err)), 0);
    }
    /* another format number */
    customer_init(&c);
    n = customer_encode(&c, buf, sizeof(buf));
    buf[8] = 2;
    assert_int_equal(customer_decode(&d, buf, n, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "format"));
    assert_int_equal(customer_decode(&d, NULL, 0, err, sizeof(err)), -1);
}

/* A state no clvd can have written must not decode: a stage outside the enum
 * (stage_name() returns NULL, output.c would strlen(NULL)), a negative tier,
 * purchase days out of order (breaks the binary search). */
static void test_decode_rejects_impossible_values(void **state)
{
    unsigned char buf[CLV_STATE_MAX_BYTES];
    struct clv_customer c, d;
    char err[CLV_ERRLEN];
    size_t n;

    (void)state;
    random_state_by_events(&c, &g_rules, 30);
    c.stage = 42;
    n = customer_encode(&c, buf, sizeof(buf));
    if (customer_decode(&d, buf, n, err, sizeof(err)) == 0)
        fail_msg("decoded stage %d", d.stage);
    c.stage = -7;
    n = customer_encode(&c, buf, sizeof(buf));
    if (customer_decode(&d, buf, n, err, sizeof(err)) == 0)
        fail_msg("decoded stage %d", d.stage);
    c.stage = CLV_STAGE_ACTIVE;
    c.tier = -1;
    n = customer_encode(&c, buf, sizeof(buf));
    if (customer_decode(&d, buf, n, err, sizeof(err)) == 0)
        fail_msg("decoded tier %d", d.tier);
    c.tier = 0;
    customer_init(&c);
    add(&c, PUR, T(0, 1), 1);
    add(&c, PUR, T(1, 1), 1);
    add(&c, PUR, T(2, 1), 1);
    c.pdays[2].day = c.pdays[0].day;
    n = customer_encode(&c, buf, sizeof(buf));
    if (customer_decode(&d, buf, n, err, sizeof(err)) == 0)
        fail_msg("decoded purchase days out of order");
}

/* ---- stage names --------------------------------------------------------- */

static void test_stage_names(void **state)
{
    static const char *const names[] = {"prospect", "new",     "active",  "loyal",
                                        "at_risk",  "dormant", "churned", "reactivated"};

    (void)state;
    assert_int_equal(CLV_ARRAY_LEN(names), CLV_STAGE_COUNT);
    for (int i = 0; i < CLV_STAGE_COUNT; i++) {
        assert_string_equal(stage_name(i), names[i]);
        assert_int_equal(stage_from_name(names[i]), i);
    }
    assert_null(stage_name(CLV_STAGE_NONE));
    assert_null(stage_name(CLV_STAGE_COUNT));
    assert_int_equal(stage_from_name("Active"), CLV_STAGE_NONE);
    assert_int_equal(stage_from_name(""), CLV_STAGE_NONE);
    assert_int_equal(clv_day_of(0), 0);
    assert_int_equal(clv_day_of(DAY - 1), 0);
    assert_int_equal(clv_day_of(DAY), 1);
    assert_int_equal(clv_day_of(-1), -1);
    assert_int_equal(clv_day_of(-DAY), -1);
    assert_int_equal(clv_day_of(-DAY - 1), -2);
}

/* ---- size ------------------------------------------------------------------ */

static size_t encoded_size(const struct clv_customer *c)
{
    unsigned char buf[CLV_STATE_MAX_BYTES];

    return customer_encode(c, buf, sizeof(buf));
}

static void test_encoded_size_typical(void **state)
{
    struct clv_customer c;
    struct clv_transitions out;
    struct clv_event ev;
    size_t prospect, typical, week, busy;
    unsigned typical_ids;
    char id[64];
    int k = 0;

    (void)state;
    /* a prospect: one visit */
    customer_init(&c);
    ev = mkev(VIS, T(0, 10), 0, "3f6c1a2e-1b7d-4c55-9a3e-6b2f0d8e4a11", "search");
    out.n = 0;
    stages_apply_event(&c, &g_rules, &ev, &out);
    prospect = encoded_size(&c);

    /* typical: 6 purchases over ~5 months, a login or visit every 3 days
     * (uuid event ids) */
    customer_init(&c);
    for (int d = 0; d < 150; d += 3) {
        int type = d % 27 == 0 ? PUR : (d % 2 ? LOG : VIS);

        snprintf(id, sizeof(id), "%08x-1b7d-4c55-9a3e-6b2f0d8e%04x", (unsigned)rnd(), k++);
        ev = mkev(type, T(d, 9 + d % 10), type == PUR ? 37.5 + d : 0, id, "search");
        out.n = 0;
        stages_apply_event(&c, &g_rules, &ev, &out);
    }
    assert_int_equal(c.purchases, 6);
    typical = encoded_size(&c);
    typical_ids = c.ndedupe;
    /* the same after a busy week: the de-duplication ring full (16 ids) */
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof(id), "%08x-1b7d-4c55-9a3e-6b2f0d8e%04x", (unsigned)rnd(), k++);
        ev = mkev(VIS, T(150, 0) + i * 8 * HOUR, 0, id, "search");
        out.n = 0;
        stages_apply_event(&c, &g_rules, &ev, &out);
    }
    assert_int_equal(c.ndedupe, g_rules.dedupe_max_ids);
    week = encoded_size(&c);

    /* busy: a purchase every other day for a year */
    customer_init(&c);
    for (int d = 0; d < 365; d += 2) {
        snprintf(id, sizeof(id), "order-%d", d);
        ev = mkev(PUR, T(d, 12), 20.25, id, "email");
        out.n = 0;
        stages_apply_event(&c, &g_rules, &ev, &out);
    }
    busy = encoded_size(&c);
    print_message("encoded state: prospect %zu B; typical %zu B (6 purchase days, %u ids); "
                  "after a busy week %zu B (%d ids); busy buyer %zu B (%u purchase days)\n",
                  prospect, typical, typical_ids, week, g_rules.dedupe_max_ids, busy,
                  (unsigned)c.npdays);
    assert_true(prospect > 0 && prospect < 80);
    assert_true(typical > 0 && typical < 200);
    assert_true(week > typical && week < 300);
    assert_true(busy > 0 && busy <= CLV_STATE_MAX_BYTES);
}

/* ---- fuzz (last: a sanitizer abort ends the process) --------------------- */

static void decode_check(const unsigned char *buf, size_t len)
{
    struct clv_customer d;
    char err[CLV_ERRLEN];
    unsigned char *copy = malloc(len ? len : 1);

    assert_non_null(copy);
    memcpy(copy, buf, len);
    if (customer_decode(&d, copy, len, err, sizeof(err)) == 0) {
        unsigned char out[CLV_STATE_MAX_BYTES];
        size_t n = customer_encode(&d, out, sizeof(out));
        struct clv_customer d2;

        /* whatever decodes re-encodes and decodes to the same */
        assert_true(n > 0);
        assert_int_equal(customer_decode(&d2, out, n, err, sizeof(err)), 0);
        expect_same_state(&d, &d2, "fuzz re-encode");
        assert_true(d.npdays <= CLV_MAX_PDAYS);
        assert_true(d.ndedupe <= CLV_MAX_DEDUPE);
        assert_true(strlen(d.channel) <= CLV_CHANNEL_MAX);
    } else {
        assert_true(err[0] != '\0');
    }
    free(copy);
}

static void test_decode_fuzz(void **state)
{
    unsigned char buf[1024];
    struct clv_customer c;

    (void)state;
    /* random bytes; half of them with a valid header */
    for (int i = 0; i < 4000; i++) {
        size_t len = (size_t)(rnd() % 300);

        for (size_t k = 0; k < len; k++)
            buf[k] = (unsigned char)rnd();
        if (i % 2 && len > 8)
            buf[8] = 1;
        decode_check(buf, len);
    }
    /* valid encodings with a few bytes changed, inserted or removed */
    for (int i = 0; i < 4000; i++) {
        size_t len;
        int edits = 1 + (int)(rnd() % 3);

        random_state_by_events(&c, &g_rules, (int)(rnd() % 40));
        len = customer_encode(&c, buf, sizeof(buf) - 8);
        assert_true(len > 0);
        for (int e = 0; e < edits; e++) {
            size_t at = (size_t)(rnd() % len);
            switch (rnd() % 4) {
            case 0:
            case 1:
                buf[at] = (unsigned char)rnd();
                break;
            case 2:
                buf[at] ^= (unsigned char)(1u << (rnd() % 8));
                break;
            default:
                if (len > 1) {
                    memmove(buf + at, buf + at + 1, len - at - 1);
                    len--;
                }
                break;
            }
        }
        decode_check(buf, len);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aggregates_order_independent),
        cmocka_unit_test(test_aggregates_order_independent_through_rules),
        cmocka_unit_test(test_channel_of_earliest_event),
        cmocka_unit_test(test_late_purchase_on_trimmed_day),
        cmocka_unit_test(test_windows_exact_at_day_boundaries),
        cmocka_unit_test(test_active_bitmap_shifting),
        cmocka_unit_test(test_pday_log_trimming),
        cmocka_unit_test(test_first_day_revenue_late_earlier_purchase),
        cmocka_unit_test(test_dedupe_ring_bounded_by_max_ids),
        cmocka_unit_test(test_dedupe_ring_bounded_by_window),
        cmocka_unit_test(test_dedupe_ring_keeps_newest),
        cmocka_unit_test(test_dedupe_fingerprint),
        cmocka_unit_test(test_codec_roundtrip_random_states),
        cmocka_unit_test(test_decode_rejects_truncated_and_trailing),
        cmocka_unit_test(test_decode_rejects_impossible_values),
        cmocka_unit_test(test_stage_names),
        cmocka_unit_test(test_encoded_size_typical),
        cmocka_unit_test(test_decode_fuzz),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
