/* output.h -- the JSON messages clvd publishes (SPEC section 6).
 *
 * Pure: renders into a caller's buffer.  Field order is fixed and numbers
 * are printed with fixed precision, so the same transition always renders
 * to the same bytes (apart from emitted_at). */
#ifndef CLVD_OUTPUT_H
#define CLVD_OUTPUT_H

#include "config.h"
#include "sbuf.h"
#include "stages.h"

enum clv_out_topic {
    CLV_OUT_STAGE_CHANGES = 0,
    CLV_OUT_CHURN_WARNINGS,
    CLV_OUT_WIN_BACK,
    CLV_OUT_TIER_CHANGES,
    CLV_OUT_ALERTS,
    CLV_OUT_DEAD_LETTER,
    CLV_OUT_COUNT
};

const char *output_topic_name(const struct clv_kafka_topics *t, enum clv_out_topic which);

/* One rendered message: a slice [off, off+len) of the sbuf it was written to. */
struct clv_outmsg {
    enum clv_out_topic topic;
    size_t off, len;
};

#define CLV_MAX_MSGS_PER_TRANSITION 3

/* Render the messages one transition publishes (a stage change, plus a churn
 * warning and/or a win-back trigger; or a tier change).  Appends them to `b` and
 * describes them in `msgs`; returns how many. */
int output_transition(const struct clv_transition *t, const char *id, size_t idlen,
                      const struct clv_tier *tiers, int ntiers, clv_ms emitted_at,
                      struct clv_sbuf *b, struct clv_outmsg *msgs);

/* The dead-letter record of a rejected input message. */
void output_dead_letter(struct clv_sbuf *b, const char *reason, const char *topic,
                        int32_t partition, int64_t offset, const void *key, size_t keylen,
                        const void *value, size_t len, clv_ms emitted_at);

#endif
