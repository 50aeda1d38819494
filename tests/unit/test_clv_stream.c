/* test_clv_stream.c -- the in-stream CLV figures (stages.c, per event, from
 * the O(1) sufficient statistics) equal the batch maths (clv_predict on
 * (x, t_x, T, m_x) computed here from the full purchase history).
 *
 * The history-side convention, as SPEC section 9 and docs/clv.md state it:
 * purchases on one UTC day are one transaction (amounts summed); x = distinct
 * purchase days - 1; t_x = last - first purchase day, in whole days; T = the
 * time from the start (00:00 UTC) of the first purchase day to `at`, in days;
 * m_x = mean amount of the repeat (non-first) purchase days.
 *
 * p_alive and expected_purchases_90d depend on (x, t_x, T) only and must be
 * bit-for-bit equal.  clv_predicted also depends on m_x, which the stream
 * gets as (revenue - first-day revenue) / x and the history as a sum of the
 * repeat days: the same number up to the rounding of a different order of
 * additions, so it is compared to 1e-12 relative. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clv.h"
#include "config.h"
#include "customer.h"
#include "loadgen.h"
#include "stages.h"
#include "timeutil.h"

#define DAY CLV_MS_PER_DAY
#define CLV_REL_TOL 1e-12

static struct clv_config g_cfg;
static struct clv_rules g_rules;

static int group_setup(void **state)
{
    char err[CLV_ERRLEN];

    (void)state;
    if (config_defaults(&g_cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "config_defaults: %s\n", err);
        return -1;
    }
    g_cfg.clv.model = CLV_MODEL_BGNBD; /* CDNOW parameters, weeks */
    /* also fire the P(alive) at-risk rule, so its snapshots get checked */
    g_cfg.lifecycle.at_risk_p_alive_below = 0.5;
    rules_from_config(&g_rules, &g_cfg);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    config_free(&g_cfg);
    return 0;
}

/* ---- the batch side: a customer's purchases, summarised from scratch ---- */

struct purchase {
    clv_ms ts;
    double amount;
};

struct history {
    struct purchase *p;
    size_t n, cap;
};

static void history_add(struct history *h, clv_ms ts, double amount)
{
    if (h->n == h->cap) {
        h->cap = h->cap ? 2 * h->cap : 16;
        h->p = realloc(h->p, h->cap * sizeof(*h->p));
        assert_non_null(h->p);
    }
    h->p[h->n++] = (struct purchase){ts, amount};
}

static int32_t utc_day(clv_ms t)
{
    return (int32_t)(t >= 0 ? t / DAY : -((-t + DAY - 1) / DAY));
}

static int by_time(const void *a, const void *b)
{
    const struct purchase *x = a, *y = b;

    return (x->ts > y->ts) - (x->ts < y->ts);
}

/* (x, t_x, T, m_x) in days of the first n purchases of h, as of `at`.
 * Returns 1 if `at` is before the start of the last purchase day, which
 * only a late (out-of-order) event brings about: the stream cannot forget
 * the later purchases it already holds, and stages.c then takes T = t_x (as
 * if seen at the last purchase day); so does this function. */
static int batch_stats(const struct history *h, size_t n, clv_ms at, struct clv_customer_stats *s)
{
    struct purchase *p = malloc(n * sizeof(*p));
    int32_t first, last;
    double repeat_spend = 0.0;
    size_t days = 1;

    assert_non_null(p);
    memcpy(p, h->p, n * sizeof(*p));
    qsort(p, n, sizeof(*p), by_time);
    first = last = utc_day(p[0].ts);
    for (size_t i = 1; i < n; i++) {
        int32_t d = utc_day(p[i].ts);
        if (d != last) {
            days++;
            last = d;
        }
        if (d != first)
            repeat_spend += p[i].amount;
    }
    free(p);
    s->x = (double)(days - 1);
    s->t_x_days = (double)(last - first);
    s->T_days = (double)(at - (clv_ms)first * DAY) / (double)DAY;
    s->m_x = days > 1 ? repeat_spend / (double)(days - 1) : 0.0;
    s->spend_count = s->x;
    if (s->T_days < s->t_x_days) {
        s->T_days = s->t_x_days;
        return 1;
    }
    return 0;
}

/* The in-stream snapshot against clv_predict on the first n purchases.
 * Returns 1 when the late-event convention of batch_stats applied. */
static int check_snapshot(const struct clv_snapshot *snap, const struct history *h, size_t n,
                          clv_ms at, const char *what)
{
    struct clv_customer_stats s;
    struct clv_prediction want;
    char err[CLV_ERRLEN];

    int clamped;

    if (n == 0) {
        assert_false(snap->model_on);
        return 0;
    }
    assert_true(snap->model_on);
    clamped = batch_stats(h, n, at, &s);
    if (clv_predict(&g_rules.model, &s, &want, err, sizeof(err)) != 0)
        fail_msg("%s: %s", what, err);
    if (snap->p_alive != want.p_alive ||
        snap->expected_purchases_90d != want.expected_purchases_90d ||
        !(fabs(snap->clv_predicted - want.clv_predicted) <= CLV_REL_TOL * fabs(want.clv_predicted)))
        fail_msg("%s (x=%g t_x=%g T=%.6f m_x=%g): stream p_alive %.17g E90 %.17g clv %.17g, "
                 "batch %.17g %.17g %.17g",
                 what, s.x, s.t_x_days, s.T_days, s.m_x, snap->p_alive,
                 snap->expected_purchases_90d, snap->clv_predicted, want.p_alive,
                 want.expected_purchases_90d, want.clv_predicted);
    return clamped;
}

/* ---- the stream side ------------------------------------------------------ */

struct stream_customer {
    struct clv_customer c;
    struct history h;
    int checks;
    int late; /* snapshots taken before a purchase already applied */
};

static int is_deadline(enum clv_reason r)
{
    return r == CLV_REASON_PURCHASE_GAP || r == CLV_REASON_P_ALIVE || r == CLV_REASON_INACTIVE ||
           r == CLV_REASON_TIER_DOWNGRADE;
}

/* Apply one event through the rules, then check the snapshot of every
 * transition it emitted (a deadline's snapshot predates the event) and the
 * snapshot as of the event. */
static void apply(struct stream_customer *sc, enum clv_event_type type, clv_ms ts, double amount,
                  const char *event_id, const char *channel)
{
    struct clv_event ev = {.type = type, .ts = ts, .amount = amount};
    struct clv_transitions out = {0};
    struct clv_snapshot snap;
    size_t before = sc->h.n;

    ev.event_id_len = strlen(event_id);
    memcpy(ev.event_id, event_id, ev.event_id_len + 1);
    strcpy(ev.customer_id, "test");
    ev.customer_id_len = 4;
    snprintf(ev.channel, sizeof(ev.channel), "%s", channel);
    assert_int_equal(stages_apply_event(&sc->c, &g_rules, &ev, &out), CLV_APPLIED);
    if (type == CLV_EV_PURCHASE)
        history_add(&sc->h, ts, amount);
    for (int i = 0; i < out.n; i++) {
        const struct clv_transition *t = &out.t[i];
        sc->late += check_snapshot(&t->snap, &sc->h, is_deadline(t->reason) ? before : sc->h.n,
                                   t->at, reason_name(t->reason));
        sc->checks++;
    }
    snapshot_take(&sc->c, &g_rules, ts, &snap);
    sc->late += check_snapshot(&snap, &sc->h, sc->h.n, ts, event_id);
    sc->checks++;
}

static void check_at(struct stream_customer *sc, clv_ms at)
{
    struct clv_snapshot snap;

    snapshot_take(&sc->c, &g_rules, at, &snap);
    sc->late += check_snapshot(&snap, &sc->h, sc->h.n, at, "later");
    sc->checks++;
}

static void sc_init(struct stream_customer *sc)
{
    memset(sc, 0, sizeof(*sc));
    customer_init(&sc->c);
}

static void sc_free(struct stream_customer *sc)
{
    free(sc->h.p);
}

static clv_ms ts_of(const char *rfc3339)
{
    clv_ms t;

    assert_int_equal(rfc3339_parse(rfc3339, strlen(rfc3339), &t), 0);
    return t;
}

/* ---- hand-made customers -------------------------------------------------- */

struct step {
    char type; /* 'p'urchase, 'l'ogin, 'v'isit */
    const char *ts;
    double amount;
};

/* Apply the steps, check every snapshot; returns the number of snapshots
 * taken before a purchase already applied (late events). */
static int run_steps(const struct step *steps, size_t n, const char *const *later, size_t nlater)
{
    struct stream_customer sc;
    char id[32];
    int late;

    sc_init(&sc);
    for (size_t i = 0; i < n; i++) {
        enum clv_event_type type = steps[i].type == 'p'   ? CLV_EV_PURCHASE
                                   : steps[i].type == 'l' ? CLV_EV_LOGIN
                                                          : CLV_EV_VISIT;
        snprintf(id, sizeof(id), "e%zu", i);
        apply(&sc, type, ts_of(steps[i].ts), steps[i].amount, id, "email");
    }
    for (size_t i = 0; i < nlater; i++)
        check_at(&sc, ts_of(later[i]));
    late = sc.late;
    sc_free(&sc);
    return late;
}

/* Several purchases on one day are one transaction; their amounts add up. */
static void test_same_day_purchases_merge(void **state)
{
    static const struct step steps[] = {
        {'v', "2025-02-27T10:00:00Z", 0},      {'p', "2025-03-01T09:00:00Z", 10.25},
        {'p', "2025-03-01T18:30:00Z", 5.50},   {'l', "2025-03-02T08:00:00Z", 0},
        {'p', "2025-03-11T00:00:00Z", 20.00},  {'p', "2025-03-11T23:59:59.999Z", 1.25},
        {'p', "2025-04-20T12:00:00Z", 8.00},   {'v', "2025-05-02T12:00:00Z", 0},
        {'p', "2025-05-02T13:00:00.5Z", 3.10},
    };
    static const char *const later[] = {"2025-05-02T23:59:59Z", "2025-06-01T00:00:00Z",
                                        "2026-06-01T07:00:00Z"};

    (void)state;
    assert_int_equal(run_steps(steps, CLV_ARRAY_LEN(steps), later, CLV_ARRAY_LEN(later)), 0);
}

/* One millisecond apart across midnight UTC: two purchase days, t_x = 1. */
static void test_midnight_boundary(void **state)
{
    static const struct step steps[] = {
        {'p', "2025-01-01T23:59:59.999Z", 12.00},
        {'p', "2025-01-02T00:00:00Z", 7.00},
    };
    static const char *const later[] = {"2025-01-02T00:00:00.001Z", "2025-01-09T12:00:00Z"};

    (void)state;
    assert_int_equal(run_steps(steps, CLV_ARRAY_LEN(steps), later, CLV_ARRAY_LEN(later)), 0);
}

/* No repeat purchase: x = 0, P(alive) = 1, and the figures still agree. */
static void test_single_purchase(void **state)
{
    static const struct step steps[] = {
        {'v', "2025-07-01T09:00:00Z", 0},
        {'p', "2025-07-01T09:05:00Z", 42.00},
        {'l', "2025-08-15T09:00:00Z", 0},
    };
    static const char *const later[] = {"2025-10-01T00:00:00Z", "2027-01-01T00:00:00Z"};

    (void)state;
    assert_int_equal(run_steps(steps, CLV_ARRAY_LEN(steps), later, CLV_ARRAY_LEN(later)), 0);
}

/* Purchases arriving out of time order (within the retained window): the
 * sufficient statistics do not depend on the order. */
static void test_out_of_order_purchases(void **state)
{
    static const struct step steps[] = {
        {'p', "2025-03-31T10:00:00Z", 30.00}, {'p', "2025-03-01T10:00:00Z", 11.00},
        {'p', "2025-04-15T10:00:00Z", 5.00},  {'p', "2025-03-01T22:00:00Z", 4.00},
        {'p', "2025-03-11T10:00:00Z", 9.99},  {'p', "2025-04-15T01:00:00Z", 2.50},
        {'l', "2025-04-20T10:00:00Z", 0},
    };
    static const char *const later[] = {"2025-04-20T10:00:00Z", "2025-09-01T00:00:00Z"};

    (void)state;
    /* the snapshots as of the late events themselves see the later purchases
     * too (T = t_x); those as of the newest event, and later, are exact */
    assert_true(run_steps(steps, CLV_ARRAY_LEN(steps), later, CLV_ARRAY_LEN(later)) > 0);
}

/* A late purchase that is still newer than the current stage emits its
 * transitions (here: its spend lifts the customer to silver, 500) with a
 * snapshot as of the late purchase that holds the purchase of five days
 * later: T is taken as t_x.  The documented approximation, not "as of". */
static void test_late_event_transition(void **state)
{
    static const struct step steps[] = {
        {'p', "2025-01-01T10:00:00Z", 100.00}, /* new */
        {'p', "2025-01-21T10:00:00Z", 100.00}, /* active since 01-21 10:00 */
        {'p', "2025-01-31T10:00:00Z", 100.00},
        {'p', "2025-01-26T10:00:00Z", 400.00}, /* late, after stage_since: silver */
    };
    static const char *const later[] = {"2025-02-01T00:00:00Z"};

    (void)state;
    /* the tier change's snapshot and the one as of the late event */
    assert_int_equal(run_steps(steps, CLV_ARRAY_LEN(steps), later, CLV_ARRAY_LEN(later)), 2);
}

/* A buyer whose purchase days outnumber the retained day log (400 days)
 * and outlast every window: x, t_x and m_x stay exact. */
static void test_long_history(void **state)
{
    struct stream_customer sc;
    clv_ms t0 = ts_of("2024-01-01T08:00:00Z");
    char id[32];

    (void)state;
    sc_init(&sc);
    for (int d = 0; d < 450; d++) {
        snprintf(id, sizeof(id), "p%d", d);
        apply(&sc, CLV_EV_PURCHASE, t0 + (clv_ms)d * DAY + (d % 7) * CLV_MS_PER_HOUR,
              1.0 + (d % 13), id, "direct");
    }
    /* then every 9th day for another year and a half */
    for (int d = 450; d < 1000; d += 9) {
        snprintf(id, sizeof(id), "q%d", d);
        apply(&sc, CLV_EV_PURCHASE, t0 + (clv_ms)d * DAY, 25.5, id, "direct");
    }
    assert_true(sc.c.purchase_days == 450 + 62);
    assert_true(sc.c.npdays < sc.c.purchase_days);
    check_at(&sc, t0 + 1100 * DAY);
    assert_int_equal(sc.late, 0);
    sc_free(&sc);
}

/* ---- generated customers -------------------------------------------------- */

#define GEN_CUSTOMERS 250 /* 200 buyers, 50 prospects */

struct gen_ctx {
    struct stream_customer *buyers, *prospects;
    uint32_t nbuyers, nprospects;
};

static int gen_apply(const struct loadgen_event *ev, void *ctx)
{
    struct gen_ctx *g = ctx;
    unsigned long index = strtoul(ev->customer_id + 1, NULL, 10);
    struct stream_customer *sc = ev->buyer ? &g->buyers[index] : &g->prospects[index];

    assert_true(index < (ev->buyer ? g->nbuyers : g->nprospects));
    apply(sc, ev->type, ev->ts, ev->amount, ev->event_id, ev->channel);
    return 0;
}

/* Two years of a generated shop (default mix: logins, visits, prospects),
 * every event through stages_apply_event, every snapshot checked. */
static void test_generated_customers(void **state)
{
    struct loadgen_params p;
    struct loadgen *g;
    struct loadgen_plan plan;
    struct gen_ctx ctx;
    char err[CLV_ERRLEN];
    long checks = 0, repeaters = 0;
    clv_ms end;

    (void)state;
    loadgen_params_default(&p);
    p.customers = GEN_CUSTOMERS;
    p.seed = 99;
    p.start = ts_of("2024-01-01T00:00:00Z");
    p.days = 730;
    p.acquisition_days = 365;
    assert_int_equal(loadgen_new(&g, &p, err, sizeof(err)), 0);
    loadgen_get_plan(g, &plan);
    loadgen_free(g);
    ctx.nbuyers = plan.buyers;
    ctx.nprospects = plan.prospects;
    ctx.buyers = calloc(plan.buyers, sizeof(*ctx.buyers));
    ctx.prospects = calloc(plan.prospects, sizeof(*ctx.prospects));
    assert_non_null(ctx.buyers);
    assert_non_null(ctx.prospects);
    for (uint32_t i = 0; i < plan.buyers; i++)
        sc_init(&ctx.buyers[i]);
    for (uint32_t i = 0; i < plan.prospects; i++)
        sc_init(&ctx.prospects[i]);
    assert_int_equal(loadgen_run(&p, gen_apply, &ctx, err, sizeof(err)), 0);
    end = p.start + 730 * DAY;
    for (uint32_t i = 0; i < plan.buyers; i++) {
        check_at(&ctx.buyers[i], end);
        check_at(&ctx.buyers[i], end + 90 * DAY + 1234567);
        checks += ctx.buyers[i].checks;
        assert_int_equal(ctx.buyers[i].late, 0); /* the generator is in time order */
        repeaters += ctx.buyers[i].c.purchase_days > 1;
        sc_free(&ctx.buyers[i]);
    }
    for (uint32_t i = 0; i < plan.prospects; i++) {
        check_at(&ctx.prospects[i], end);
        checks += ctx.prospects[i].checks;
        sc_free(&ctx.prospects[i]);
    }
    print_message("  %ld snapshots checked, %ld of %u buyers with repeat purchases\n", checks,
                  repeaters, plan.buyers);
    assert_true(repeaters > 50);
    free(ctx.buyers);
    free(ctx.prospects);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_day_purchases_merge),
        cmocka_unit_test(test_midnight_boundary),
        cmocka_unit_test(test_single_purchase),
        cmocka_unit_test(test_out_of_order_purchases),
        cmocka_unit_test(test_late_event_transition),
        cmocka_unit_test(test_long_history),
        cmocka_unit_test(test_generated_customers),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
