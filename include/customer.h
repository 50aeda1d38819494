/* customer.h -- one customer's rolling state, its aggregates and its codec.
 *
 * Pure: no I/O.  The state is what Redis stores (as a compact binary blob,
 * customer_encode/customer_decode) and what the lifecycle rules (stages.h)
 * read and change.  Aggregates are order-independent, so events may arrive
 * out of time order. */
#ifndef CLVD_CUSTOMER_H
#define CLVD_CUSTOMER_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "event.h"

enum clv_stage {
    CLV_STAGE_NONE = -1, /* not yet seen */
    CLV_STAGE_PROSPECT = 0,
    CLV_STAGE_NEW,
    CLV_STAGE_ACTIVE,
    CLV_STAGE_LOYAL,
    CLV_STAGE_AT_RISK,
    CLV_STAGE_DORMANT,
    CLV_STAGE_CHURNED,
    CLV_STAGE_REACTIVATED,
    CLV_STAGE_COUNT
};

/* Purchase days are kept individually for the longest window any rule looks
 * at (rolling 90 days, the loyal rule, the tier window); older days fold into
 * the lifetime totals only. */
#define CLV_MAX_PDAYS 400
struct clv_pday {
    int32_t day; /* days since the epoch, UTC */
    uint16_t count;
    double revenue;
};

#define CLV_MAX_DEDUPE 64

/* Per input partition the customer's events came from: the partition's
 * frontier when the customer was last written.  Every offset below it had
 * been applied, so a re-delivered message below it is a duplicate, however
 * long the re-delivered suffix; the event-id ring covers the rest. */
#define CLV_MAX_MARKS 8
struct clv_mark {
    int8_t topic;
    int32_t partition;
    int64_t frontier;
    clv_ms at; /* wall clock of the write: marks age out with dedupe.window */
};
struct clv_customer {
    uint64_t version; /* bumped on every write; the compare-and-set token */
    int8_t stage;     /* enum clv_stage */
    int8_t tier;      /* index into the configured tiers; 0 (the base tier) at first */
    uint32_t seq;     /* transitions emitted so far; event_id = "<id>:<seq>" */
    clv_ms stage_since;
    clv_ms first_seen;
    clv_ms last_activity;
    clv_ms first_purchase; /* 0 = never purchased */
    clv_ms last_purchase;
    uint32_t purchases; /* purchase events, not days */
    double revenue;
    uint32_t logins, visits;
    /* Sufficient statistics of BG/NBD and Gamma-Gamma: distinct purchase
     * days (frequency x = purchase_days - 1), first and last purchase day,
     * and the revenue of the first purchase day, so that the repeat spend is
     * revenue - first_day_revenue whatever order purchases arrive in. */
    uint32_t purchase_days;
    int32_t first_pday, last_pday;
    double first_day_revenue;
    /* Active days (any event) over the last 128 days, bit i = anchor - i. */
    int32_t active_anchor;
    uint64_t active_bits[2];
    /* Purchase days inside the retained window, ascending by day. */
    uint16_t npdays;
    struct clv_pday pdays[CLV_MAX_PDAYS];
    /* Recently applied event ids: (40-bit hash << 24) | hour of event time. */
    uint8_t ndedupe;
    uint64_t dedupe[CLV_MAX_DEDUPE];
    uint8_t nmarks;
    struct clv_mark marks[CLV_MAX_MARKS];
    /* Purchase days before this one were trimmed from the log. */
    int32_t pdays_from;
    /* Acquisition channel: that of the earliest event carrying one, so the
     * answer does not depend on delivery order. */
    char channel[CLV_CHANNEL_MAX + 1];
    clv_ms channel_ts;
};

/* Windowed figures as of a given time (SPEC section 4). */
struct clv_windows {
    int active_days_7d, active_days_30d, active_days_90d;
    int purchases_7d, purchases_30d, purchases_90d;
    double revenue_7d, revenue_30d, revenue_90d;
};

static inline int32_t clv_day_of(clv_ms t)
{
    /* floor division: days before 1970 stay on the right side */
    return (int32_t)(t >= 0 ? t / CLV_MS_PER_DAY : -((-t + CLV_MS_PER_DAY - 1) / CLV_MS_PER_DAY));
}

void customer_init(struct clv_customer *c);

/* Fold one event into the aggregates (not the stage: see stages.h).
 * `keep_days` bounds the purchase-day log (the longest window in use). */
void customer_add_event(struct clv_customer *c, const struct clv_event *ev, int keep_days);

/* Drop purchase days that fell out of every window as of `now`. */
void customer_trim_pdays(struct clv_customer *c, clv_ms now, int keep_days);

void customer_windows(const struct clv_customer *c, clv_ms at, struct clv_windows *w);

/* Purchases and revenue over the `days` days ending with the day of `at`. */
int customer_purchases_within(const struct clv_customer *c, clv_ms at, int days);
double customer_revenue_within(const struct clv_customer *c, clv_ms at, int days);

/* De-duplication by event id within `window` of the newest remembered event,
 * remembering at most `max_ids` ids. */
uint64_t customer_event_fingerprint(const char *event_id, size_t len, clv_ms ts);
int customer_seen_event(const struct clv_customer *c, uint64_t fingerprint);
void customer_remember_event(struct clv_customer *c, uint64_t fingerprint, clv_ms window,
                             int max_ids);

/* Offset-based de-duplication (see struct clv_mark). */
int customer_below_mark(const struct clv_customer *c, const struct clv_event *ev, clv_ms window);
void customer_update_mark(struct clv_customer *c, const struct clv_event *ev, clv_ms window);

/* Binary codec.  The first 8 bytes of an encoded state are the version, so
 * the compare-and-set script can check it without decoding. */
#define CLV_STATE_MAX_BYTES                                                                        \
    (160 + CLV_MAX_PDAYS * 24 + CLV_MAX_DEDUPE * 8 + CLV_MAX_MARKS * 32 + CLV_CHANNEL_MAX)
size_t customer_encode(const struct clv_customer *c, unsigned char *buf, size_t buflen);
int customer_decode(struct clv_customer *c, const unsigned char *buf, size_t len, char *err,
                    size_t errlen);

const char *stage_name(int stage);
int stage_from_name(const char *name);

#endif
