/* consumer.h -- the input side: Kafka consumer, offset tracking, event clock.
 *
 * Offsets: every message fetched is registered with its partition; it is
 * marked done once its effect is durable (state written in Redis with its
 * outbox, or the dead letter acknowledged by Kafka).  Only the frontier --
 * the first offset not yet done -- is stored for commit, so a crash
 * re-delivers exactly the messages whose effect might be missing.
 *
 * Event clock (clock.mode: event): events are held in a heap ordered by
 * (time, topic, partition, offset) until the watermark passes them. */
#ifndef CLVD_CONSUMER_H
#define CLVD_CONSUMER_H

#include <librdkafka/rdkafka.h>

#include "config.h"
#include "event.h"
#include "fetchwake.h"
#include "log.h"
#include "offq.h"

#define CLV_INPUT_TOPICS 3 /* purchases, logins, visits = enum clv_event_type */

/* A reference to one input message, for marking it done later. */
struct clv_msgref {
    int8_t topic; /* enum clv_event_type */
    int32_t partition;
    int64_t offset;
    uint32_t gen; /* assignment generation: marks from an older one are ignored */
};

struct clv_partition {
    int assigned;
    uint32_t gen;
    struct clv_offq inflight; /* offsets handed out, not yet committable */
    int64_t stored;           /* last offset stored for commit (frontier), -1 none */
    clv_ms max_ts;            /* largest event time seen, 0 none */
    clv_ms last_msg_mono;
    clv_ms assigned_mono;
    int paused;
    int64_t high_watermark; /* for the lag metric */
    int64_t last_offset;
    int64_t start_offset; /* where consumption began: committed offset, -1 = log start */
};

struct clv_held {
    struct clv_event ev;
    struct clv_msgref ref;
};

/* The heap orders small keys; the events themselves stay put in a slab. */
struct clv_heldkey {
    clv_ms ts;
    int64_t offset;
    int32_t partition;
    int8_t topic;
    uint32_t slot;
};

struct clv_consumer {
    rd_kafka_t *rk;
    struct clv_fetchwake wake;
    const struct clv_config *cfg;
    const struct clv_log *log;
    rd_kafka_topic_partition_list_t *assignment;
    struct clv_partition *parts[CLV_INPUT_TOPICS];
    int nparts[CLV_INPUT_TOPICS];
    uint32_t gen;
    int ever_assigned;
    int rebalanced; /* set on every assignment change; cleared by the owner */
    /* event clock */
    struct clv_heldkey *heap;
    struct clv_held *slab;
    uint32_t *free_slots;
    size_t nheld, heap_cap, nfree;
    clv_ms watermark;
    int all_idle; /* every assigned partition idle at the last watermark */
    int held_paused;
};

int consumer_open(struct clv_consumer *c, const struct clv_config *cfg, const char *brokers,
                  const struct clv_log *lg, char *err, size_t errlen);
/* Commit what is done and leave the group (rd_kafka_consumer_close). */
void consumer_close(struct clv_consumer *c);

/* Which input topic a message came from, or -1. */
int consumer_topic_index(const struct clv_consumer *c, const char *topic);

/* Register a fetched message (fetched at `now_mono`); returns its reference. */
struct clv_msgref consumer_track(struct clv_consumer *c, const rd_kafka_message_t *m, int topic,
                                 clv_ms ts, clv_ms now_mono);
/* Mark a message's effect durable; stores the new frontier if it moved. */
void consumer_done(struct clv_consumer *c, const struct clv_msgref *ref);

/* The partition's frontier: its first offset not yet done (every offset
 * below is applied), or -1 if unknown or revoked. */
int64_t consumer_frontier(const struct clv_consumer *c, const struct clv_msgref *ref);

/* Pause or resume every assigned partition (Redis down: stop fetching). */
void consumer_pause_all(struct clv_consumer *c, int pause);

/* ---- event clock ------------------------------------------------------------ */

void consumer_hold(struct clv_consumer *c, const struct clv_event *ev,
                   const struct clv_msgref *ref);
/* Recompute the watermark (monotonic) and pause partitions that run ahead
 * while the heap is full. */
clv_ms consumer_watermark(struct clv_consumer *c, clv_ms now_mono);
/* The time up to which every event of this instance is applied: the
 * watermark, but never at or past an event still held (a release is capped
 * per batch).  The sweeper must not advance customers beyond it. */
clv_ms consumer_applied_until(const struct clv_consumer *c);

/* Pop the earliest held event if the watermark has passed it. */
int consumer_release(struct clv_consumer *c, struct clv_held *out);

/* Total lag (high watermark - next offset) over assigned partitions. */
int64_t consumer_lag(struct clv_consumer *c);
/* Every assigned partition read up to the high watermark its broker last
 * reported; a partition whose broker has not answered a fetch yet is not. */
int consumer_caught_up(const struct clv_consumer *c);

#endif
