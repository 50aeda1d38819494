/* alerts.h -- population figures and churn alerts (SPEC section 10).
 *
 * Every instance periodically sums the shards' counters (customers per
 * stage, buyers, churn by hour) for its metrics.  One instance -- whoever
 * holds the alert lease in Redis -- also evaluates the alert rules and
 * publishes `firing` / `resolved` on clvd.alerts.  Each rule's state lives in
 * Redis, so a new leader neither re-fires nor forgets a firing alert.
 * `resolved` needs the value to fall below above x (1 - hysteresis). */
#ifndef CLVD_ALERTS_H
#define CLVD_ALERTS_H

#include "config.h"
#include "customer.h"
#include "log.h"
#include "producer.h"
#include "state.h"

struct clv_population {
    int64_t stage[CLV_STAGE_COUNT];
    int64_t customers, buyers, buyers_churned;
    int valid;
};

struct clv_alerts {
    const struct clv_config *cfg; /* rules: cfg->alerts (reloadable) */
    const struct clv_log *log;
    char instance[96];
    clv_ms every;           /* evaluation period (wall clock) */
    clv_ms next_mono;       /* next evaluation */
    clv_ms next_state_mono; /* next refresh of the rules' states (non-leaders) */
    int leader;
    struct clv_population pop;
    int firing[CLV_MAX_ALERTS];
    double value[CLV_MAX_ALERTS];
    uint64_t published;
};

void alerts_init(struct clv_alerts *a, const struct clv_config *cfg, const struct clv_log *lg,
                 const char *instance);

/* Run an evaluation if one is due.  `now` is the lifecycle clock (wall, or
 * the event-clock watermark), against which churn windows are measured. */
int alerts_tick(struct clv_alerts *a, struct clv_store *st, struct clv_producer *p, clv_ms now,
                char *err, size_t errlen);

/* The value of one rule over a population and churn count (pure). */
double alerts_rule_value(const struct clv_alert_rule *rule, const struct clv_population *pop,
                         int64_t churned_in_window);

#endif
