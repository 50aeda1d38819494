/* event.h -- parse and validate one input message (SPEC section 3).
 *
 * Pure: no I/O.  The parsed event is copied into caller-owned storage
 * (struct clv_event), so a batch of events can be parsed into a reused array.
 * The hot path uses a struct event_parser (below), which allocates nothing
 * per message; event_parse() is a convenience that creates one per call.
 *
 * Decisions beyond SPEC section 3 (see docs/json.md):
 *   - a key clvd reads (event_id, customer_id, ts, type, amount, channel)
 *     appearing twice makes the message invalid_json;
 *   - unpaired UTF-16 surrogate escapes (\ud800 alone) are invalid_json;
 *   - ts as a number must be a JSON integer literal (no '.', no exponent),
 *     else bad_type:ts; outside 1970-01-01..9999-12-31 is bad_timestamp;
 *   - event_id may hold any UTF-8 but no NUL (\u0000) -> bad_event_id;
 *   - customer_id rejects C0, DEL and C1 controls (after unescaping);
 *   - a channel that is not a string, or holds control characters, is
 *     ignored (channel = ""), never an error;
 *   - amount -0 is stored as 0; a number longer than 511 characters is
 *     bad_amount. */
#ifndef CLVD_EVENT_H
#define CLVD_EVENT_H

#include <stddef.h>

#include "common.h"

enum clv_event_type { CLV_EV_PURCHASE = 0, CLV_EV_LOGIN = 1, CLV_EV_VISIT = 2 };

#define CLV_ID_MAX 128
#define CLV_CHANNEL_MAX 64

struct clv_event {
    enum clv_event_type type;
    clv_ms ts;
    clv_ms received; /* wall clock when parsed: ages the de-duplication memory */
    double amount;   /* purchases only; 0 otherwise */
    char event_id[CLV_ID_MAX + 1];
    size_t event_id_len;
    char customer_id[CLV_ID_MAX + 1];
    size_t customer_id_len;
    char channel[CLV_CHANNEL_MAX + 1]; /* "" when absent; longer values are truncated */
    /* Where it came from, set by the consumer (not by the parser): the input
     * partition, the message's offset, and the partition's frontier then
     * (every offset below it is applied).  topic -1 = unknown. */
    int8_t src_topic;
    int32_t src_partition;
    int64_t src_offset;
    int64_t src_frontier;
    clv_ms src_ts; /* the Kafka message's timestamp, for the latency metric; 0 none */
};

struct clv_event_limits {
    size_t max_message_bytes;
    clv_ms max_future_skew;
};

/* Reason codes of SPEC section 3.  event_parse() writes one of these (with
 * ":<field>" for missing_field and bad_type) into `reason`:
 *   too_large, invalid_json, not_object, missing_field:<name>, bad_type:<name>,
 *   bad_timestamp, future_timestamp, negative_amount, bad_amount,
 *   bad_customer_id, bad_event_id, type_mismatch */
int event_parse(const char *buf, size_t len, enum clv_event_type topic_type,
                const struct clv_event_limits *lim, clv_ms wall_now, struct clv_event *ev,
                char *reason, size_t reasonlen);

const char *event_type_name(enum clv_event_type t);

/* Latest accepted event time: 9999-12-31T23:59:59.999Z. */
#define CLV_EVENT_TS_MAX 253402300799999LL

/* Reusable parser for the consumer's hot path: keeps one JSON parser handle
 * and number-conversion locale, so parsing a message allocates nothing.  Not
 * thread-safe: one per consuming thread.  event_parser_parse() has the same
 * contract as event_parse(); it additionally fails with reason
 * "internal_error" if the parser handle cannot be re-created after a bad
 * message (out of memory). */
struct event_parser;

/* Returns NULL (and a reason in err) on allocation failure. */
struct event_parser *event_parser_create(char *err, size_t errlen);
void event_parser_free(struct event_parser *p);
int event_parser_parse(struct event_parser *p, const char *buf, size_t len,
                       enum clv_event_type topic_type, const struct clv_event_limits *lim,
                       clv_ms wall_now, struct clv_event *ev, char *reason, size_t reasonlen);

#endif
