/* stages.h -- the lifecycle rules of SPEC section 5 and tiers of section 9.
 *
 * Pure and deterministic: given a customer's state, the rules and an event
 * (or a point in time), compute the transitions and the new state.  This is
 * the only place the rules live; Redis only stores what they decide. */
#ifndef CLVD_STAGES_H
#define CLVD_STAGES_H

#include "clv.h"
#include "config.h"
#include "customer.h"

/* The settings the rules read, derived from the config (reloadable). */
struct clv_rules {
    struct clv_lifecycle_config lc;
    int tiers_window_days;
    double tier_min_spend[CLV_MAX_TIERS];
    int ntiers;
    int keep_days; /* purchase-day log length: longest window in use */
    clv_ms dedupe_window;
    int dedupe_max_ids;
    int model_on;
    struct clv_model_params model;
    double lifespan_years;
    struct clv_rfm_config rfm;
    double cac_default;
    const struct clv_channel_cac *cac_by_channel;
    int ncac_by_channel;
};

void rules_from_config(struct clv_rules *r, const struct clv_config *cfg);

enum clv_reason {
    CLV_REASON_FIRST_SEEN = 0,
    CLV_REASON_FIRST_PURCHASE,
    CLV_REASON_REPEAT_PURCHASE,
    CLV_REASON_LOYAL_THRESHOLD,
    CLV_REASON_RECOVERED,
    CLV_REASON_WON_BACK,
    CLV_REASON_RETURNED,
    CLV_REASON_PURCHASE_GAP,
    CLV_REASON_P_ALIVE,
    CLV_REASON_INACTIVE,
    CLV_REASON_TIER_UPGRADE,
    CLV_REASON_TIER_DOWNGRADE,
};

const char *reason_name(enum clv_reason r);

/* The customer's figures as of a transition's `at` (SPEC section 6). */
struct clv_snapshot {
    clv_ms first_purchase, last_purchase, last_activity;
    uint32_t purchases;
    double revenue, avg_order_value, recency_days, tenure_days;
    int active_days_30d, purchases_90d;
    int tier;
    int rfm; /* e.g. 245 */
    char channel[CLV_CHANNEL_MAX + 1];
    double clv_historical;
    int model_on;
    double clv_predicted, p_alive, expected_purchases_90d;
    double risk, clv_at_stake; /* churn warnings */
};

enum clv_transition_kind { CLV_TRANSITION_STAGE = 0, CLV_TRANSITION_TIER = 1 };

struct clv_transition {
    enum clv_transition_kind kind;
    int from, to; /* stages (CLV_STAGE_NONE for the first) or tier indexes */
    enum clv_reason reason;
    clv_ms at;
    uint32_t seq;
    int purchased; /* customer has >= 1 purchase (win-back eligibility) */
    struct clv_snapshot snap;
};

/* A catch-up can pass several deadlines: at_risk, dormant, churned and a
 * tier downgrade per tier, then the event's own transition and upgrade. */
#define CLV_MAX_TRANSITIONS (8 + 2 * CLV_MAX_TIERS)
struct clv_transitions {
    int n;
    struct clv_transition t[CLV_MAX_TRANSITIONS];
};

/* Apply every time-driven transition whose deadline is <= until, in order,
 * each at its own deadline. */
void stages_advance(struct clv_customer *c, const struct clv_rules *r, clv_ms until,
                    struct clv_transitions *out);

enum clv_apply_result { CLV_APPLIED = 0, CLV_DUPLICATE = 1 };

/* Apply one event: first the deadlines up to its time, then its aggregates,
 * then its event-driven transition (none if it is older than stage_since).
 * A duplicate event id within the dedupe window changes nothing. */
enum clv_apply_result stages_apply_event(struct clv_customer *c, const struct clv_rules *r,
                                         const struct clv_event *ev, struct clv_transitions *out);

/* The earliest time-driven deadline of this customer, or 0 if none. */
clv_ms stages_next_deadline(const struct clv_customer *c, const struct clv_rules *r);

void snapshot_take(const struct clv_customer *c, const struct clv_rules *r, clv_ms at,
                   struct clv_snapshot *s);

#endif
