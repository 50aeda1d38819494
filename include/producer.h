/* producer.h -- the output side: idempotent producer, outbox, dead letters.
 *
 * Customer messages are first written to their shard's outbox in Redis by
 * the same script that writes the state (state.h).  They are then produced;
 * a successful delivery report deletes the outbox entry.  If clvd dies in
 * between, the outbox still holds the message and the next drain (at start,
 * after a Redis reconnect or a failed batch) publishes it again with the
 * same event_id.  Dead letters are produced directly; the input offset they
 * stand for is marked done only on their delivery report. */
#ifndef CLVD_PRODUCER_H
#define CLVD_PRODUCER_H

#include <librdkafka/rdkafka.h>

#include "config.h"
#include "consumer.h"
#include "log.h"
#include "output.h"
#include "state.h"

struct clv_histogram;

struct clv_producer {
    rd_kafka_t *rk;
    rd_kafka_topic_t *topics[CLV_OUT_COUNT]; /* held so that their leaders stay known */
    const struct clv_config *cfg;
    const struct clv_log *log;
    struct clv_consumer *consumer; /* to mark dead-lettered offsets done */
    /* delivered outbox entries waiting for their HDEL */
    struct clv_dr_ref **acked;
    size_t nacked, acked_cap;
    int drain_needed;      /* an outbox may hold undelivered messages */
    uint32_t drain_cursor; /* next shard to drain */
    int drain_active;
    int fatal; /* a dead letter could not be delivered */
    uint64_t produced[CLV_OUT_COUNT], delivered[CLV_OUT_COUNT], failed[CLV_OUT_COUNT];
    int64_t in_flight;
    struct clv_histogram *latency; /* input timestamp -> delivery report, if wanted */
};

int producer_open(struct clv_producer *p, const struct clv_config *cfg, const char *brokers,
                  struct clv_consumer *consumer, const struct clv_log *lg, char *err,
                  size_t errlen);
void producer_close(struct clv_producer *p);

/* Produce one customer message that sits in shard `shard`'s outbox under
 * `field`. */
int producer_send_outbox(struct clv_producer *p, enum clv_out_topic topic, uint32_t shard,
                         const char *field, size_t fieldlen, const char *key, size_t keylen,
                         const char *payload, size_t len, clv_ms input_ts);

/* Produce a message that is not in any outbox (alerts). */
int producer_send_plain(struct clv_producer *p, enum clv_out_topic topic, const char *key,
                        size_t keylen, const char *payload, size_t len);

/* Produce the messages of an applied batch. */
void producer_send_batch(struct clv_producer *p, const struct clv_batch *b);

/* Produce a dead letter for input message `ref`. */
void producer_dead_letter(struct clv_producer *p, const struct clv_msgref *ref, const char *payload,
                          size_t len, const char *key, size_t keylen);

/* Serve delivery reports (non-blocking). */
void producer_poll(struct clv_producer *p, int timeout_ms);

/* Delete delivered entries from the outboxes (one pipeline). */
int producer_trim_outbox(struct clv_producer *p, struct clv_store *st);

/* Re-publish what the outboxes hold, `max_shards` shards per call; returns
 * 1 while a drain is in progress. */
int producer_drain_step(struct clv_producer *p, struct clv_store *st, uint32_t max_shards);

/* Wait for every message in flight (shutdown). */
void producer_flush(struct clv_producer *p, int timeout_ms);

#endif
