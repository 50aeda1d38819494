/* test_value.c -- customer value in the outputs (SPEC sections 5, 6, 9):
 * membership tiers over a trailing spend window, and at_risk by P(alive)
 * under the BG/NBD model.
 *
 *   a. tiers: purchases lift a customer's trailing-window spend across the
 *      silver and gold floors (an upgrade each, at the purchase), then the
 *      purchase days age out of the window one by one and the tier falls at
 *      00:00 UTC of the day the remaining spend first drops below the floor:
 *      gold -> silver -> standard for one customer, gold -> standard in one
 *      step for another.  The expected changes are written out by hand and
 *      checked against a small independent simulation of the rule.
 *   b. p_alive: with clv.model: bgnbd (the CDNOW estimates, weeks) and
 *      lifecycle.at_risk.p_alive_below, a customer who bought four times in a
 *      week and then went silent is at_risk (reason p_alive) at the first
 *      second P(alive) is below the threshold, days before the purchase-gap
 *      deadline.  P(alive) is recomputed here with clv_bgnbd_p_alive (clvcore)
 *      from the purchase times, so the instant, the churn warning's risk
 *      (1 - P(alive)) and every snapshot's p_alive are checked independently.
 *   c. the control: the same input with p_alive_below: 0 goes at_risk by
 *      purchase_gap, still with the model's figures in the snapshots.
 *
 * As in test_lifecycle.c: all input is produced first (each customer on a
 * partition of its own, in time order), then clvd runs on the event clock
 * with a fresh consumer group on a flushed Redis; a "ticker" customer's
 * visits carry the watermark to the end of the scenario.  Every output
 * message is checked, and nothing else may be published.
 *
 * Environment: CLVD_IT_FILTER=<glob> runs only the matching tests; see
 * harness.h for CLVD_IT_KEEP and CLVD_IT_VERBOSE. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "clv.h"
#include "harness.h"
#include "lifecycle_support.h"

/* Output numbers are rounded (p_alive and risk to 4 decimals). */
#define ROUND4 (0.00005 + 1e-9)

/* ---- fixture --------------------------------------------------------------- */

/* The fixture, the clvd runs and the output checks are shared with
 * test_lifecycle.c (lifecycle_support.c); here always on one redis-server. */
static int group_setup(void **state)
{
    return lc_group_setup(state, 0);
}

/* ---- input ----------------------------------------------------------------- */

/* One purchase of a customer's history (in time order). */
struct purchase {
    const char *ts; /* RFC 3339, UTC */
    double amount;
};

/* A customer who buys, alone on its input partition. */
struct buyer {
    const char *id;
    int partition;
    const struct purchase *p;
    int n;
};

static void send_purchases(struct lc_fixture *f, const struct buyer *b)
{
    for (int i = 0; i < b->n; i++)
        lc_send_json(
            f, H_T_PURCHASES, b->partition, b->id,
            "{\"event_id\":\"%s/p%d\",\"customer_id\":\"%s\",\"ts\":\"%s\",\"amount\":%.2f}", b->id,
            i + 1, b->id, b->p[i].ts, b->p[i].amount);
}

/* The ticker's visits, every 10 days from `from` up to and including `to`
 * (which is where the watermark ends). */
static void send_ticker(struct lc_fixture *f, int partition, int64_t from, int64_t to)
{
    char ts[32];

    for (int64_t t = from;; t += 10 * H_DAY_MS) {
        if (t > to)
            t = to;
        h_fmt_ts(t, ts, sizeof(ts));
        lc_send_json(f, H_T_VISITS, partition, "ticker",
                     "{\"event_id\":\"ticker/%s\",\"customer_id\":\"ticker\",\"ts\":\"%s\"}", ts,
                     ts);
        if (t == to)
            break;
    }
}

/* ---- the BG/NBD model, recomputed ------------------------------------------ */

/* The CDNOW estimates (SPEC section 9), fitted in weeks. */
#define BG_R 0.243
#define BG_ALPHA 4.414
#define BG_A 0.793
#define BG_B 2.426
#define BG_UNIT_DAYS 7.0

/* The same as clv.bgnbd in the config. */
#define BG_YAML "{r: 0.243, alpha: 4.414, a: 0.793, b: 2.426, time_unit_days: 7}"

static int64_t day_of(int64_t ms)
{
    return ms >= 0 ? ms / H_DAY_MS : -((-ms + H_DAY_MS - 1) / H_DAY_MS);
}

/* P(alive) of buyer `b` at `at` from its purchases up to `at`, with the
 * usual BG/NBD inputs (SPEC section 9; daemon/stages.c model_inputs): same-day
 * purchases merged, x = purchase days - 1, t_x = whole days from the first to
 * the last purchase day, T = `at` minus 00:00 UTC of the first purchase day
 * (at least t_x), all in the model's weeks.  NAN before the first purchase. */
static double model_p_alive(const struct buyer *b, int64_t at)
{
    const struct clv_bgnbd m = {BG_R, BG_ALPHA, BG_A, BG_B};
    int64_t first = 0, last = 0;
    int days = 0;
    double x, t_x, T;

    for (int i = 0; i < b->n; i++) { /* in time order */
        int64_t t = h_ts(b->p[i].ts), d = day_of(t);
        if (t > at)
            break;
        if (days == 0)
            first = d;
        if (days == 0 || d != last)
            days++;
        last = d;
    }
    if (days == 0)
        return NAN;
    x = days - 1;
    t_x = (double)(last - first);
    T = (double)(at - first * H_DAY_MS) / (double)H_DAY_MS;
    if (T < t_x)
        T = t_x;
    return clv_bgnbd_p_alive(&m, x, t_x / BG_UNIT_DAYS, T / BG_UNIT_DAYS);
}

/* ---- expected outputs ------------------------------------------------------ */

/* Stage changes: lc_expect_stage (lifecycle_support.c).  A tier change:
 * reason and direction "upgrade" / "downgrade"; the snapshot carries the new
 * tier. */
static int expect_tier(struct lc_expectations *x, const char *customer, int seq, const char *from,
                       const char *to, const char *direction, int64_t at, int purchases,
                       double revenue)
{
    int i = lc_expect(x, H_T_TIER, customer, seq, from, to, direction, at, purchases, revenue);

    x->e[i].direction = direction;
    x->e[i].tier = to;
    return i;
}

/* Set the expected customer.tier (when not NULL) and P(alive) of the
 * expectations from index `first` on. */
static void annotate(struct lc_expectations *x, int first, const char *tier, double p_alive)
{
    for (int i = first; i < x->n; i++) {
        if (tier != NULL)
            x->e[i].tier = tier;
        x->e[i].p_alive = p_alive;
    }
}

/* The model's figures in one message (lc_check_outputs hook): the churn
 * warning's risk is 1 - P(alive); a buyer's snapshot carries numbers with
 * clv.model: bgnbd, every other snapshot nulls. */
static void check_model(const struct lc_expect *e, const json_t *j, const json_t *cust, FILE *log)
{
    static const char *const model_fields[] = {"p_alive", "clv_predicted",
                                               "expected_purchases_90d"};
    double v = NAN;

    /* A missing risk or clv_at_stake is lc_check_outputs' problem. */
    if (strcmp(e->topic, H_T_CHURN) == 0 && h_json_has_number(j, "risk", &v) &&
        h_json_has_number(j, "clv_at_stake", NULL) && e->model && !isnan(e->p_alive) &&
        fabs(v - (1.0 - e->p_alive)) > ROUND4)
        lc_problem(log, e, "risk %.4f, want 1 - P(alive) = %.6f", v, 1.0 - e->p_alive);
    if (cust == NULL)
        return;
    for (size_t i = 0; i < sizeof(model_fields) / sizeof(model_fields[0]); i++) {
        if (e->model && e->purchases > 0) {
            if (!h_json_has_number(cust, model_fields[i], NULL))
                lc_problem(log, e, "customer.%s is not a number (clv.model: bgnbd)",
                           model_fields[i]);
        } else if (!h_json_is_null(cust, model_fields[i])) {
            lc_problem(log, e, "customer.%s is not null (%s)", model_fields[i],
                       e->model ? "no purchase yet" : "clv.model: none");
        }
    }
    if (e->model && !isnan(e->p_alive) && h_json_has_number(cust, "p_alive", &v) &&
        fabs(v - e->p_alive) > ROUND4)
        lc_problem(log, e, "customer.p_alive %.4f, want %.6f", v, e->p_alive);
}

/* Stage and tier changes share each customer's transition sequence:
 * 1, 2, 3, ... over both topics, no gap, no number twice, in time order
 * (lc_check_outputs hook). */
static void check_transitions(const struct lc_expectations *x, const struct h_records *rs,
                              FILE *log)
{
    for (int i = 0; i < x->n; i++) {
        const char *cust = x->e[i].customer;
        int seen = 0, n = 0;
        int64_t prev = INT64_MIN;

        for (int k = 0; k < i && !seen; k++)
            seen = strcmp(x->e[k].customer, cust) == 0;
        if (seen)
            continue;
        for (size_t k = 0; k < rs->n; k++)
            if ((strcmp(rs->r[k].topic, H_T_STAGE) == 0 || strcmp(rs->r[k].topic, H_T_TIER) == 0) &&
                lc_streq_or_null(h_json_str(rs->r[k].json, "customer_id"), cust))
                n++;
        for (int seq = 1; seq <= n; seq++) {
            const struct h_record *st = lc_find_record(rs, H_T_STAGE, cust, seq, NULL);
            const struct h_record *ti = lc_find_record(rs, H_T_TIER, cust, seq, NULL);
            const struct h_record *r = st != NULL ? st : ti;
            const char *at = r != NULL ? h_json_str(r->json, "at") : NULL;
            if ((st != NULL) == (ti != NULL) || at == NULL) {
                fprintf(log, "  %s:%d: want exactly one stage or tier change with a time\n", cust,
                        seq);
                break;
            }
            if (h_ts(at) < prev)
                fprintf(log, "  %s:%d at %s: earlier than the transition before it\n", cust, seq,
                        at);
            prev = h_ts(at);
        }
    }
}

/* Every expected message exactly once and right, nothing else, and the
 * checks above. */
static void check_outputs(const struct lc_expectations *x, const struct h_records *rs)
{
    lc_check_outputs(x, rs, check_model, check_transitions);
}

/* An output time "YYYY-MM-DDTHH:MM:SS.mmmZ" -> epoch ms; 0 if it is not one
 * (h_ts would abort the whole run on a malformed literal). */
static int parse_at(const char *s, int64_t *out)
{
    int y, mo, d, h, mi, sec, ms, n = 0;

    if (s == NULL ||
        sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ%n", &y, &mo, &d, &h, &mi, &sec, &ms, &n) != 7 ||
        n != 24 || s[n] != '\0')
        return 0;
    *out = h_ts(s);
    return 1;
}

/* ---- a. tiers ------------------------------------------------------------------ */

#define TIER_WINDOW_DAYS 30
static const char *const tier_names[] = {"standard", "silver", "gold", "platinum"};
static const double tier_floors[] = {0, 500, 1000, 5000};
#define NTIERS 4
#define TIER_LEVELS_YAML                                                                           \
    "[{name: standard, min_spend: 0}, {name: silver, min_spend: 500}, "                            \
    "{name: gold, min_spend: 1000}, {name: platinum, min_spend: 5000}]"

static int tier_for(double spend)
{
    int t = 0;

    for (int i = 1; i < NTIERS; i++)
        if (spend >= tier_floors[i])
            t = i;
    return t;
}

struct tier_change {
    int64_t at;
    int from, to;
};

/* The tier rule of SPEC section 9, simulated day by day: the spend that
 * counts at a moment of day D is that of days D - window + 1 .. D up to that
 * moment.  At 00:00 UTC of each day the oldest day has left the window (a
 * downgrade, to whatever tier the rest earns, if it is lower); after each
 * purchase the spend may earn a higher tier (an upgrade).  Returns the number
 * of changes up to `end`. */
static int simulate_tiers(const struct buyer *b, int64_t end, struct tier_change *out, int max)
{
    int n = 0, cur = 0;

    for (int64_t day = day_of(h_ts(b->p[0].ts)); day * H_DAY_MS <= end; day++) {
        double spend = 0;
        for (int i = 0; i < b->n; i++) {
            int64_t d = day_of(h_ts(b->p[i].ts));
            if (d > day - TIER_WINDOW_DAYS && d < day)
                spend += b->p[i].amount;
        }
        if (tier_for(spend) < cur) {
            assert_true(n < max);
            out[n++] = (struct tier_change){day * H_DAY_MS, cur, tier_for(spend)};
            cur = tier_for(spend);
        }
        for (int i = 0; i < b->n; i++) {
            int64_t t = h_ts(b->p[i].ts);
            if (day_of(t) != day || t > end)
                continue;
            spend += b->p[i].amount; /* in time order: the day's earlier ones are in */
            if (tier_for(spend) > cur) {
                assert_true(n < max);
                out[n++] = (struct tier_change){t, cur, tier_for(spend)};
                cur = tier_for(spend);
            }
        }
    }
    return n;
}

/* The simulation must give exactly the changes the expectations spell out. */
static void check_tier_model(const struct buyer *b, int64_t end, const struct tier_change *want,
                             int nwant)
{
    struct tier_change got[16];
    int n = simulate_tiers(b, end, got, 16);
    char a[32], c[32];

    for (int i = 0; i < n || i < nwant; i++) {
        if (i < n && i < nwant && got[i].at == want[i].at && got[i].from == want[i].from &&
            got[i].to == want[i].to)
            continue;
        fail_msg("%s: tier change %d: the rule gives %s %s -> %s, the test expects %s %s -> %s",
                 b->id, i + 1, i < n ? h_fmt_ts(got[i].at, a, sizeof(a)) : "(none)",
                 i < n ? tier_names[got[i].from] : "", i < n ? tier_names[got[i].to] : "",
                 i < nwant ? h_fmt_ts(want[i].at, c, sizeof(c)) : "(none)",
                 i < nwant ? tier_names[want[i].from] : "",
                 i < nwant ? tier_names[want[i].to] : "");
    }
}

/* tina: 300 (standard), +250 = 550 (silver), +500 = 1050 (gold). */
static const struct purchase tina_p[] = {
    {"2025-03-03T10:00:00Z", 300}, {"2025-03-05T12:00:00Z", 250}, {"2025-03-10T09:00:00Z", 500}};
/* tom: 600 (silver at once), +450 = 1050 (gold). */
static const struct purchase tom_p[] = {{"2025-03-04T11:00:00Z", 600},
                                        {"2025-03-06T15:00:00Z", 450}};

static void test_tiers(void **state)
{
    struct lc_fixture *f = *state;
    const struct buyer tina = {"tina", 0, tina_p, 3}, tom = {"tom", 1, tom_p, 2};
    const int64_t D = H_DAY_MS, end = h_ts("2025-04-20T00:00:00Z");
    const char *const settings[] = {"tiers.window_days", "30", "tiers.levels", TIER_LEVELS_YAML,
                                    NULL};
    /* With a 30-day window, purchase day d leaves it at 00:00 UTC of d + 30. */
    const int64_t tina_out1 = h_ts("2025-03-03T00:00:00Z") + 30 * D; /* 04-02: 750 left */
    const int64_t tina_out3 = h_ts("2025-03-10T00:00:00Z") + 30 * D; /* 04-09: 0 left */
    const int64_t tom_out1 = h_ts("2025-03-04T00:00:00Z") + 30 * D;  /* 04-03: 450 left */
    const struct tier_change tina_tiers[] = {
        {h_ts(tina_p[1].ts), 0, 1}, /* 550 >= 500 */
        {h_ts(tina_p[2].ts), 1, 2}, /* 1050 >= 1000 */
        {tina_out1, 2, 1},          /* 03-05 + 03-10 = 750: still silver */
        /* 03-05 leaves on 04-04, but 500 is still silver: no change */
        {tina_out3, 1, 0},
    };
    const struct tier_change tom_tiers[] = {
        {h_ts(tom_p[0].ts), 0, 1}, /* 600 */
        {h_ts(tom_p[1].ts), 1, 2}, /* 1050 */
        {tom_out1, 2, 0},          /* 450: below silver too, one step to standard */
    };
    struct lc_expectations x;
    struct h_records rs = {0};
    char err[H_ERRLEN];
    int i;

    check_tier_model(&tina, end, tina_tiers, 4);
    check_tier_model(&tom, end, tom_tiers, 3);

    memset(&x, 0, sizeof(x));
    x.model = 0; /* clv.model: none: the model's figures are null */

    /* tina: purchase days 03-03, 03-05, 03-10 (mean gap 3.5 d): at_risk
     * max(14, 7) = 14 d after the last purchase, before the downgrades.  A
     * purchase's stage change comes before its tier change (seq 2, 3). */
    i = lc_expect_stage(&x, "tina", 1, NULL, "new", "first_purchase", h_ts(tina_p[0].ts), 1, 300);
    annotate(&x, i, "standard", NAN); /* the base tier, silently */
    lc_expect_stage(&x, "tina", 2, "new", "active", "repeat_purchase", h_ts(tina_p[1].ts), 2, 550);
    expect_tier(&x, "tina", 3, "standard", "silver", "upgrade", h_ts(tina_p[1].ts), 2, 550);
    expect_tier(&x, "tina", 4, "silver", "gold", "upgrade", h_ts(tina_p[2].ts), 3, 1050);
    i = lc_expect_stage(&x, "tina", 5, "active", "at_risk", "purchase_gap",
                        h_ts(tina_p[2].ts) + 14 * D, 3, 1050);
    annotate(&x, i, "gold", NAN);
    expect_tier(&x, "tina", 6, "gold", "silver", "downgrade", tina_out1, 3, 1050);
    expect_tier(&x, "tina", 7, "silver", "standard", "downgrade", tina_out3, 3, 1050);
    /* Her dormant deadline (05-09) is after the end. */

    /* tom: one purchase straight into silver; gold on the second; purchase
     * days 03-04, 03-06: at_risk max(14, 4) = 14 d after 03-06T15:00; gold
     * -> standard in one step when 03-04 leaves the window. */
    lc_expect_stage(&x, "tom", 1, NULL, "new", "first_purchase", h_ts(tom_p[0].ts), 1, 600);
    expect_tier(&x, "tom", 2, "standard", "silver", "upgrade", h_ts(tom_p[0].ts), 1, 600);
    lc_expect_stage(&x, "tom", 3, "new", "active", "repeat_purchase", h_ts(tom_p[1].ts), 2, 1050);
    expect_tier(&x, "tom", 4, "silver", "gold", "upgrade", h_ts(tom_p[1].ts), 2, 1050);
    i = lc_expect_stage(&x, "tom", 5, "active", "at_risk", "purchase_gap",
                        h_ts(tom_p[1].ts) + 14 * D, 2, 1050);
    annotate(&x, i, "gold", NAN);
    expect_tier(&x, "tom", 6, "gold", "standard", "downgrade", tom_out1, 2, 1050);

    /* ticker: visits every 10 days, never a purchase, never dormant. */
    i = lc_expect_stage(&x, "ticker", 1, NULL, "prospect", "first_seen",
                        h_ts("2025-03-01T00:00:00Z"), 0, 0);
    annotate(&x, i, "standard", NAN);
    assert_int_equal(lc_expected_count(&x, H_T_TIER), 7);

    if (lc_fresh_world(f, 1, 3, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    send_purchases(f, &tina);
    send_purchases(f, &tom);
    send_ticker(f, 2, h_ts("2025-03-01T00:00:00Z"), end);
    lc_start_clvd(f, "tiers", settings);
    lc_collect_and_stop(f, lc_expected_count(&x, NULL), &rs);
    check_outputs(&x, &rs);
    h_records_free(&rs);
    f->passed = 1;
}

/* ---- b, c. at_risk by P(alive) ---------------------------------------------- */

#define P_ALIVE_BELOW 0.7

/* pam: four purchase days in a week, then silence.  P(alive) falls below 0.7
 * about 11 days after her last purchase; the purchase-gap deadline is
 * max(14, 2 x 2) = 14 days after it. */
static const struct purchase pam_p[] = {{"2025-06-02T10:00:00Z", 40},
                                        {"2025-06-04T10:00:00Z", 25},
                                        {"2025-06-06T10:00:00Z", 30},
                                        {"2025-06-08T10:00:00Z", 35}};
/* solo: one purchase day: no repeat purchase, P(alive) = 1, so only the
 * default gap (30 d) puts her at risk, model or not. */
static const struct purchase solo_p[] = {{"2025-06-03T12:00:00Z", 50}};

static const struct buyer pam = {"pam", 0, pam_p, 4}, solo = {"solo", 1, solo_p, 1};

#define PAM_GAP_DEADLINE_DAYS 14
#define P_ALIVE_END "2025-07-10T00:00:00Z" /* before pam's dormant deadline (08-07) */

/* Produce the model scenario, run clvd with p_alive_below = `below` and read
 * the outputs (`expected` messages). */
static void run_model(struct lc_fixture *f, const char *name, const char *below, size_t expected,
                      struct h_records *rs)
{
    const char *const settings[] = {
        "clv.model", "bgnbd", "clv.bgnbd", BG_YAML, "lifecycle.at_risk.p_alive_below", below, NULL};
    char err[H_ERRLEN];

    if (lc_fresh_world(f, 1, 3, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    send_purchases(f, &pam);
    send_purchases(f, &solo);
    send_ticker(f, 2, h_ts("2025-06-01T00:00:00Z"), h_ts(P_ALIVE_END));
    lc_start_clvd(f, name, settings);
    lc_collect_and_stop(f, expected, rs);
}

/* Everything but pam's at_risk, which the caller adds.  Every snapshot of a
 * buyer carries P(alive) as recomputed here. */
static void model_expectations(struct lc_expectations *x)
{
    const int64_t p1 = h_ts(pam_p[0].ts), p2 = h_ts(pam_p[1].ts), s1 = h_ts(solo_p[0].ts);
    int i;

    memset(x, 0, sizeof(*x));
    x->model = 1;
    i = lc_expect_stage(x, "pam", 1, NULL, "new", "first_purchase", p1, 1, 40);
    annotate(x, i, "standard", model_p_alive(&pam, p1)); /* no repeat yet: 1 */
    i = lc_expect_stage(x, "pam", 2, "new", "active", "repeat_purchase", p2, 2, 65);
    annotate(x, i, "standard", model_p_alive(&pam, p2));
    /* her third and fourth purchases change nothing (loyal needs 5) */
    i = lc_expect_stage(x, "solo", 1, NULL, "new", "first_purchase", s1, 1, 50);
    annotate(x, i, "standard", 1.0);
    i = lc_expect_stage(x, "solo", 2, "new", "at_risk", "purchase_gap", s1 + 30 * H_DAY_MS, 1, 50);
    annotate(x, i, "standard", 1.0); /* risk 0 */
    i = lc_expect_stage(x, "ticker", 1, NULL, "prospect", "first_seen",
                        h_ts("2025-06-01T00:00:00Z"), 0, 0);
    annotate(x, i, "standard", NAN); /* no purchase: the model's figures are null */
}

static void test_p_alive_at_risk(void **state)
{
    struct lc_fixture *f = *state;
    const int64_t last = h_ts(pam_p[3].ts);
    const int64_t gap_deadline = last + PAM_GAP_DEADLINE_DAYS * H_DAY_MS;
    struct lc_expectations x;
    struct h_records rs = {0};
    const struct h_record *r;
    char below[32], ts[32];
    double p_at, p_before;
    int64_t at = 0;
    int i;

    /* The test's own model agrees with the premise: above the threshold at
     * the last purchase, below it well before the purchase-gap deadline. */
    assert_true(model_p_alive(&pam, last) >= P_ALIVE_BELOW);
    assert_true(model_p_alive(&pam, gap_deadline - H_DAY_MS) < P_ALIVE_BELOW);

    model_expectations(&x);
    snprintf(below, sizeof(below), "%g", P_ALIVE_BELOW);
    run_model(f, "p-alive", below, lc_expected_count(&x, NULL) + 2, &rs);

    /* pam's third transition: at_risk by p_alive, at the first second
     * P(alive) < 0.7 (clvd bisects to the second). */
    r = lc_find_record(&rs, H_T_STAGE, "pam", 3, NULL);
    if (r == NULL || !parse_at(h_json_str(r->json, "at"), &at)) {
        h_records_dump(&rs, stderr);
        fail_msg("no single stage change pam:3 with a valid \"at\"");
    }
    p_at = model_p_alive(&pam, at);
    p_before = model_p_alive(&pam, at - 2000);
    h_fmt_ts(at, ts, sizeof(ts));
    fprintf(stderr,
            "[info] pam at_risk at %s (%s, %.2f d after her last purchase, %.2f d before the "
            "purchase-gap deadline): P(alive) %.9f there, %.9f 2 s before\n",
            ts, h_json_str(r->json, "reason"), (double)(at - last) / H_DAY_MS,
            (double)(gap_deadline - at) / H_DAY_MS, p_at, p_before);
    if (!(at > last && at < gap_deadline)) {
        h_records_dump(&rs, stderr);
        fail_msg("pam:3 at %s: not between her last purchase and the purchase-gap deadline", ts);
    }
    if (!(p_at < P_ALIVE_BELOW && p_before >= P_ALIVE_BELOW)) {
        h_records_dump(&rs, stderr);
        fail_msg("pam:3 at %s: P(alive) %.6f there and %.6f 2 s before; the threshold %g must be "
                 "crossed in between",
                 ts, p_at, p_before, P_ALIVE_BELOW);
    }
    i = lc_expect_stage(&x, "pam", 3, "active", "at_risk", "p_alive", at, 4, 130);
    annotate(&x, i, "standard", p_at); /* the churn warning's risk: 1 - P(alive) */
    /* Nothing more for pam: at_risk already, dormant (08-07) after the end. */
    check_outputs(&x, &rs);
    h_records_free(&rs);
    f->passed = 1;
}

/* The control: the same input with p_alive_below: 0 (off).  pam goes
 * at_risk by purchase_gap, 14 days after her last purchase; the snapshots
 * still carry the model's figures, and the warning's risk is 1 - P(alive). */
static void test_p_alive_off(void **state)
{
    struct lc_fixture *f = *state;
    const int64_t at = h_ts(pam_p[3].ts) + PAM_GAP_DEADLINE_DAYS * H_DAY_MS;
    struct lc_expectations x;
    struct h_records rs = {0};
    int i;

    model_expectations(&x);
    i = lc_expect_stage(&x, "pam", 3, "active", "at_risk", "purchase_gap", at, 4, 130);
    annotate(&x, i, "standard", model_p_alive(&pam, at));
    assert_true(model_p_alive(&pam, at) < P_ALIVE_BELOW); /* it would have been p_alive */
    run_model(f, "p-alive-off", "0", lc_expected_count(&x, NULL), &rs);
    check_outputs(&x, &rs);
    h_records_free(&rs);
    f->passed = 1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tiers, lc_setup, lc_teardown),
        cmocka_unit_test_setup_teardown(test_p_alive_at_risk, lc_setup, lc_teardown),
        cmocka_unit_test_setup_teardown(test_p_alive_off, lc_setup, lc_teardown),
    };
    const char *filter = getenv("CLVD_IT_FILTER");

    if (filter != NULL && *filter != '\0')
        cmocka_set_test_filter(filter);
    return cmocka_run_group_tests(tests, group_setup, lc_group_teardown);
}
