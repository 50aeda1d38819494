/* stages.c -- lifecycle and tier rules (SPEC sections 5 and 9). */
#include "stages.h"

#include <math.h>
#include <string.h>

static const char *const reason_names[] = {
    [CLV_REASON_FIRST_SEEN] = "first_seen",
    [CLV_REASON_FIRST_PURCHASE] = "first_purchase",
    [CLV_REASON_REPEAT_PURCHASE] = "repeat_purchase",
    [CLV_REASON_LOYAL_THRESHOLD] = "loyal_threshold",
    [CLV_REASON_RECOVERED] = "recovered",
    [CLV_REASON_WON_BACK] = "won_back",
    [CLV_REASON_RETURNED] = "returned",
    [CLV_REASON_PURCHASE_GAP] = "purchase_gap",
    [CLV_REASON_P_ALIVE] = "p_alive",
    [CLV_REASON_INACTIVE] = "inactive",
    [CLV_REASON_TIER_UPGRADE] = "upgrade",
    [CLV_REASON_TIER_DOWNGRADE] = "downgrade",
};

const char *reason_name(enum clv_reason r)
{
    return reason_names[r];
}

void rules_from_config(struct clv_rules *r, const struct clv_config *cfg)
{
    memset(r, 0, sizeof(*r));
    r->lc = cfg->lifecycle;
    r->tiers_window_days = cfg->tiers_window_days;
    r->ntiers = cfg->ntiers;
    for (int i = 0; i < cfg->ntiers; i++)
        r->tier_min_spend[i] = cfg->tiers[i].min_spend;
    r->keep_days = 90;
    if (r->lc.loyal_window_days > r->keep_days)
        r->keep_days = r->lc.loyal_window_days;
    if (r->tiers_window_days > r->keep_days)
        r->keep_days = r->tiers_window_days;
    r->dedupe_window = cfg->dedupe_window;
    r->dedupe_max_ids = cfg->dedupe_max_ids;
    r->model_on = cfg->clv.model == CLV_MODEL_BGNBD;
    r->model = (struct clv_model_params){
        .r = cfg->clv.r,
        .alpha = cfg->clv.alpha,
        .a = cfg->clv.a,
        .b = cfg->clv.b,
        .time_unit_days = cfg->clv.time_unit_days,
        .p = cfg->clv.gg_p,
        .q = cfg->clv.gg_q,
        .gamma = cfg->clv.gg_gamma,
        .horizon_days = cfg->clv.horizon_days,
        .discount_rate = cfg->clv.discount_rate,
        .margin = cfg->clv.margin,
    };
    r->lifespan_years = cfg->clv.lifespan_years;
    r->rfm = cfg->rfm;
    r->cac_default = cfg->clv.cac_default;
    r->cac_by_channel = cfg->clv.cac_by_channel;
    r->ncac_by_channel = cfg->clv.ncac_by_channel;
}

/* ---- the customer's model inputs ----------------------------------------- */

static double days_between(clv_ms from, clv_ms to)
{
    return (double)(to - from) / (double)CLV_MS_PER_DAY;
}

/* BG/NBD's (x, t_x, T) in days, same-day purchases merged. */
static void model_inputs(const struct clv_customer *c, clv_ms at, double *x, double *t_x, double *T,
                         double *m_x)
{
    clv_ms first_day_start = (clv_ms)c->first_pday * CLV_MS_PER_DAY;

    *x = c->purchase_days > 0 ? c->purchase_days - 1 : 0;
    *t_x = (double)(c->last_pday - c->first_pday);
    *T = days_between(first_day_start, at);
    if (*T < *t_x)
        *T = *t_x;
    *m_x = *x > 0 ? (c->revenue - c->first_day_revenue) / *x : 0;
}

static double customer_p_alive(const struct clv_customer *c, const struct clv_rules *r, clv_ms at)
{
    struct clv_bgnbd m = {r->model.r, r->model.alpha, r->model.a, r->model.b};
    double x, t_x, T, m_x, unit = r->model.time_unit_days;

    model_inputs(c, at, &x, &t_x, &T, &m_x);
    return clv_bgnbd_p_alive(&m, x, t_x / unit, T / unit);
}

/* ---- deadlines ----------------------------------------------------------- */

static int stage_can_go_at_risk(int stage)
{
    return stage == CLV_STAGE_NEW || stage == CLV_STAGE_ACTIVE || stage == CLV_STAGE_LOYAL ||
           stage == CLV_STAGE_REACTIVATED;
}

/* The mean gap between purchase days, or the configured default for a
 * customer with one purchase day (scaled so the default is the deadline). */
static double expected_gap_days(const struct clv_customer *c, const struct clv_rules *r)
{
    if (c->purchase_days >= 2)
        return (double)(c->last_pday - c->first_pday) / (double)(c->purchase_days - 1);
    return r->lc.at_risk_default_gap_days / r->lc.at_risk_gap_factor;
}

static double at_risk_gap_days(const struct clv_customer *c, const struct clv_rules *r)
{
    double gap;

    if (c->purchase_days < 2)
        return r->lc.at_risk_default_gap_days;
    gap = r->lc.at_risk_gap_factor * expected_gap_days(c, r);
    return gap > r->lc.at_risk_min_gap_days ? gap : r->lc.at_risk_min_gap_days;
}

static clv_ms days_after(clv_ms t, double days)
{
    return t + (clv_ms)llround(days * (double)CLV_MS_PER_DAY);
}

/* P(alive) only falls while no purchase arrives, so the first moment it is
 * below the threshold is found by bisection, to the second. */
static clv_ms p_alive_deadline(const struct clv_customer *c, const struct clv_rules *r)
{
    clv_ms lo = c->last_purchase, hi = days_after(c->last_purchase, 3650);

    if (!r->model_on || r->lc.at_risk_p_alive_below <= 0 || c->purchase_days < 2)
        return 0;
    if (customer_p_alive(c, r, hi) >= r->lc.at_risk_p_alive_below)
        return 0;
    if (customer_p_alive(c, r, lo) < r->lc.at_risk_p_alive_below)
        return lo;
    while (hi - lo > CLV_MS_PER_SEC) {
        clv_ms mid = lo + (hi - lo) / 2;
        if (customer_p_alive(c, r, mid) < r->lc.at_risk_p_alive_below)
            hi = mid;
        else
            lo = mid;
    }
    return hi;
}

/* Spend that counts for the tier as of `at`. */
static double tier_spend(const struct clv_customer *c, const struct clv_rules *r, clv_ms at)
{
    if (r->tiers_window_days <= 0)
        return c->revenue;
    return customer_revenue_within(c, at, r->tiers_window_days);
}

static int tier_for_spend(const struct clv_rules *r, double spend)
{
    int tier = 0;

    for (int i = 1; i < r->ntiers; i++)
        if (spend + 1e-9 >= r->tier_min_spend[i])
            tier = i;
    return tier;
}

/* Purchase days leave the tier window one by one; the downgrade comes at the
 * start of the day the remaining spend first falls below the tier's floor. */
static clv_ms tier_downgrade_deadline(const struct clv_customer *c, const struct clv_rules *r,
                                      int *new_tier)
{
    double remaining;

    if (r->tiers_window_days <= 0 || c->tier <= 0)
        return 0;
    remaining = 0;
    for (int i = 0; i < c->npdays; i++)
        remaining += c->pdays[i].revenue;
    for (int i = 0; i < c->npdays; i++) {
        remaining -= c->pdays[i].revenue;
        if (remaining + 1e-9 < r->tier_min_spend[c->tier]) {
            *new_tier = tier_for_spend(r, remaining);
            return (clv_ms)(c->pdays[i].day + r->tiers_window_days) * CLV_MS_PER_DAY;
        }
    }
    return 0;
}

struct deadline {
    clv_ms at; /* 0 = none */
    enum clv_transition_kind kind;
    int to;
    enum clv_reason reason;
};

static void consider(struct deadline *best, clv_ms at, enum clv_transition_kind kind, int to,
                     enum clv_reason reason)
{
    if (at != 0 && (best->at == 0 || at < best->at))
        *best = (struct deadline){at, kind, to, reason};
}

static struct deadline next_deadline(const struct clv_customer *c, const struct clv_rules *r)
{
    struct deadline d = {0, CLV_TRANSITION_STAGE, 0, CLV_REASON_INACTIVE};
    int tier_to = 0;
    clv_ms t;

    if (c->stage == CLV_STAGE_NONE)
        return d;
    if (stage_can_go_at_risk(c->stage) && c->purchases > 0) {
        consider(&d, days_after(c->last_purchase, at_risk_gap_days(c, r)), CLV_TRANSITION_STAGE,
                 CLV_STAGE_AT_RISK, CLV_REASON_PURCHASE_GAP);
        consider(&d, p_alive_deadline(c, r), CLV_TRANSITION_STAGE, CLV_STAGE_AT_RISK,
                 CLV_REASON_P_ALIVE);
    }
    if (c->stage != CLV_STAGE_DORMANT && c->stage != CLV_STAGE_CHURNED)
        consider(&d, days_after(c->last_activity, r->lc.dormant_after_days), CLV_TRANSITION_STAGE,
                 CLV_STAGE_DORMANT, CLV_REASON_INACTIVE);
    if (c->stage == CLV_STAGE_DORMANT)
        consider(&d, days_after(c->last_activity, r->lc.churned_after_days), CLV_TRANSITION_STAGE,
                 CLV_STAGE_CHURNED, CLV_REASON_INACTIVE);
    if (c->tier >= r->ntiers) {
        /* a reload removed the customer's tier: move to what spend earns now */
        int to = tier_for_spend(r, tier_spend(c, r, c->last_activity));
        consider(&d, c->stage_since, CLV_TRANSITION_TIER, to, CLV_REASON_TIER_DOWNGRADE);
    } else {
        t = tier_downgrade_deadline(c, r, &tier_to);
        consider(&d, t, CLV_TRANSITION_TIER, tier_to, CLV_REASON_TIER_DOWNGRADE);
    }
    /* A deadline that passed before the current stage began fires as the
     * stage begins: transitions never go back in time. */
    if (d.at != 0 && d.at < c->stage_since)
        d.at = c->stage_since;
    return d;
}

clv_ms stages_next_deadline(const struct clv_customer *c, const struct clv_rules *r)
{
    return next_deadline(c, r).at;
}

/* ---- snapshots ----------------------------------------------------------- */

static double channel_cac(const struct clv_rules *r, const char *channel)
{
    for (int i = 0; i < r->ncac_by_channel; i++)
        if (strcmp(r->cac_by_channel[i].channel, channel) == 0)
            return r->cac_by_channel[i].cac;
    return r->cac_default;
}

static void snapshot_model(const struct clv_customer *c, const struct clv_rules *r, clv_ms at,
                           struct clv_snapshot *s)
{
    struct clv_customer_stats st;
    struct clv_prediction p;

    s->model_on = r->model_on && c->purchases > 0;
    if (!s->model_on)
        return;
    model_inputs(c, at, &st.x, &st.t_x_days, &st.T_days, &st.m_x);
    st.spend_count = st.x;
    /* the parameters were checked at load: a failure here is a bug, and
     * null figures are better than made-up ones */
    if (clv_predict(&r->model, &st, &p, NULL, 0) != 0) {
        s->model_on = 0;
        return;
    }
    s->p_alive = p.p_alive;
    s->expected_purchases_90d = p.expected_purchases_90d;
    s->clv_predicted = p.clv_predicted;
}

static void snapshot_risk(const struct clv_customer *c, const struct clv_rules *r,
                          struct clv_snapshot *s)
{
    double expected = expected_gap_days(c, r);

    if (s->model_on)
        s->risk = 1.0 - s->p_alive;
    else if (c->purchases > 0 && expected > 0)
        s->risk = (s->recency_days - expected) / expected;
    else
        s->risk = 0;
    s->clv_at_stake = s->model_on ? s->clv_predicted : s->clv_historical;
}

void snapshot_take(const struct clv_customer *c, const struct clv_rules *r, clv_ms at,
                   struct clv_snapshot *s)
{
    struct clv_windows w;

    memset(s, 0, sizeof(*s));
    customer_windows(c, at, &w);
    s->first_purchase = c->first_purchase;
    s->last_purchase = c->last_purchase;
    s->last_activity = c->last_activity;
    s->purchases = c->purchases;
    s->revenue = c->revenue;
    s->avg_order_value = c->purchases ? c->revenue / c->purchases : 0;
    s->recency_days = c->purchases ? days_between(c->last_purchase, at) : 0;
    s->tenure_days = days_between(c->first_seen, at);
    s->active_days_30d = w.active_days_30d;
    s->purchases_90d = w.purchases_90d;
    s->tier = c->tier;
    memcpy(s->channel, c->channel, sizeof(s->channel));
    s->rfm = clv_rfm_score(c->purchases ? s->recency_days : NAN, c->purchases, c->revenue,
                           r->rfm.recency_days, r->rfm.frequency, r->rfm.monetary);
    s->clv_historical = clv_historical(c->purchases, c->revenue, s->tenure_days, r->lifespan_years,
                                       r->model.margin, channel_cac(r, c->channel));
    snapshot_model(c, r, at, s);
    snapshot_risk(c, r, s);
}

/* ---- transitions --------------------------------------------------------- */

static void emit(struct clv_customer *c, const struct clv_rules *r, struct clv_transitions *out,
                 enum clv_transition_kind kind, int to, enum clv_reason reason, clv_ms at)
{
    struct clv_transition *t;

    if (out->n == CLV_MAX_TRANSITIONS)
        return; /* cannot happen: bounded by the number of deadlines */
    t = &out->t[out->n++];
    t->kind = kind;
    t->from = kind == CLV_TRANSITION_STAGE ? c->stage : c->tier;
    t->to = to;
    t->reason = reason;
    t->at = at;
    t->seq = ++c->seq;
    t->purchased = c->purchases > 0;
    if (kind == CLV_TRANSITION_STAGE) {
        c->stage = (int8_t)to;
        c->stage_since = at;
    } else {
        c->tier = (int8_t)to;
    }
    snapshot_take(c, r, at, &t->snap);
}

void stages_advance(struct clv_customer *c, const struct clv_rules *r, clv_ms until,
                    struct clv_transitions *out)
{
    for (;;) {
        struct deadline d = next_deadline(c, r);
        if (d.at == 0 || d.at > until)
            return;
        emit(c, r, out, d.kind, d.to, d.reason, d.at);
    }
}

static int meets_loyal_rule(const struct clv_customer *c, const struct clv_rules *r, clv_ms at)
{
    return customer_purchases_within(c, at, r->lc.loyal_window_days) >= r->lc.loyal_min_purchases;
}

static void purchase_transition(struct clv_customer *c, const struct clv_rules *r,
                                const struct clv_event *ev, struct clv_transitions *out)
{
    switch (c->stage) {
    case CLV_STAGE_NONE:
    case CLV_STAGE_PROSPECT:
        emit(c, r, out, CLV_TRANSITION_STAGE, CLV_STAGE_NEW, CLV_REASON_FIRST_PURCHASE, ev->ts);
        break;
    case CLV_STAGE_NEW:
    case CLV_STAGE_REACTIVATED:
        emit(c, r, out, CLV_TRANSITION_STAGE, CLV_STAGE_ACTIVE, CLV_REASON_REPEAT_PURCHASE, ev->ts);
        break;
    case CLV_STAGE_ACTIVE:
        if (meets_loyal_rule(c, r, ev->ts))
            emit(c, r, out, CLV_TRANSITION_STAGE, CLV_STAGE_LOYAL, CLV_REASON_LOYAL_THRESHOLD,
                 ev->ts);
        break;
    case CLV_STAGE_AT_RISK:
        emit(c, r, out, CLV_TRANSITION_STAGE,
             meets_loyal_rule(c, r, ev->ts) ? CLV_STAGE_LOYAL : CLV_STAGE_ACTIVE,
             CLV_REASON_RECOVERED, ev->ts);
        break;
    case CLV_STAGE_DORMANT:
    case CLV_STAGE_CHURNED:
        emit(c, r, out, CLV_TRANSITION_STAGE, CLV_STAGE_REACTIVATED, CLV_REASON_WON_BACK, ev->ts);
        break;
    default:
        break;
    }
}

static void visit_transition(struct clv_customer *c, const struct clv_rules *r,
                             const struct clv_event *ev, struct clv_transitions *out)
{
    switch (c->stage) {
    case CLV_STAGE_NONE:
        emit(c, r, out, CLV_TRANSITION_STAGE, CLV_STAGE_PROSPECT, CLV_REASON_FIRST_SEEN, ev->ts);
        break;
    case CLV_STAGE_DORMANT:
    case CLV_STAGE_CHURNED:
        emit(c, r, out, CLV_TRANSITION_STAGE,
             c->purchases > 0 ? CLV_STAGE_AT_RISK : CLV_STAGE_PROSPECT, CLV_REASON_RETURNED,
             ev->ts);
        break;
    default:
        break;
    }
}

static void tier_upgrade(struct clv_customer *c, const struct clv_rules *r, clv_ms at,
                         struct clv_transitions *out)
{
    int tier = tier_for_spend(r, tier_spend(c, r, at));

    if (tier > c->tier)
        emit(c, r, out, CLV_TRANSITION_TIER, tier, CLV_REASON_TIER_UPGRADE, at);
}

enum clv_apply_result stages_apply_event(struct clv_customer *c, const struct clv_rules *r,
                                         const struct clv_event *ev, struct clv_transitions *out)
{
    /* a re-delivery comes soon after in wall-clock time, however far apart
     * the event times of a fast backfill are: age the memory by receipt */
    uint64_t fp = customer_event_fingerprint(ev->event_id, ev->event_id_len,
                                             ev->received ? ev->received : ev->ts);
    int in_order;

    if (customer_below_mark(c, ev, r->dedupe_window) || customer_seen_event(c, fp))
        return CLV_DUPLICATE;
    stages_advance(c, r, ev->ts, out);
    in_order = c->stage == CLV_STAGE_NONE || ev->ts >= c->stage_since;
    customer_add_event(c, ev, r->keep_days);
    customer_remember_event(c, fp, r->dedupe_window, r->dedupe_max_ids);
    customer_update_mark(c, ev, r->dedupe_window);
    customer_trim_pdays(c, c->last_activity, r->keep_days);
    if (!in_order)
        return CLV_APPLIED;
    if (ev->type == CLV_EV_PURCHASE) {
        int first = out->n;
        purchase_transition(c, r, ev, out);
        tier_upgrade(c, r, ev->ts, out);
        /* snapshots are as of `at`: a stage change at the purchase shows the
         * tier the same purchase reached */
        for (int i = first; i < out->n; i++)
            out->t[i].snap.tier = c->tier;
    } else {
        visit_transition(c, r, ev, out);
    }
    return CLV_APPLIED;
}
