/* fetchwake.h -- wakes librdkafka's fetchers once the application has
 * drained a full prefetch queue.
 *
 * librdkafka stops fetching a partition while the consumer's queue holds
 * queued.min.messages (or queued.max.messages.kbytes), and in 2.0.2 looks at
 * it again only when that broker's thread next wakes for another reason:
 * with nothing else in flight, up to a second later (librdkafka issue #2879;
 * 2.2 added fetch.queue.backoff.ms).  Under a backlog the queue is full most
 * of the time, so the queue had to hold a second of input -- tens of MB of
 * librdkafka's per-message overhead -- or the workers starved.
 *
 * A broker thread wakes when a request is queued for it.  Every 5 ms this
 * thread looks whether fetching may have stopped and the application has
 * since drained the queue below half of queued.min.messages (fetchwake.c,
 * should_wake); if so it sends one cheap query (a partition's watermark
 * offsets, ListOffsets) to the leader of an assigned partition, and
 * fetching restarts within a few milliseconds: the queue can be kept small.
 * The partition goes round the assignment, which reaches each leader in
 * turn when there are several brokers.  A consumer that is caught up, or
 * idle, sends nothing. */
#ifndef CLVD_FETCHWAKE_H
#define CLVD_FETCHWAKE_H

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>

#include "common.h"

struct clv_fetchwake {
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue; /* the consumer queue, for its length */
    int low_mark;            /* wake below this many queued messages */
    pthread_t thread;
    int started;
    atomic_int stop;
    atomic_ullong consumed; /* messages the application has taken */
    atomic_int held;        /* the application stopped taking for a while */
    atomic_ullong wakes;    /* requests sent (clvd_kafka_fetch_wakeups_total) */
    pthread_mutex_t mu;     /* guards the targets */
    rd_kafka_topic_partition_list_t *targets;
    int next; /* round robin over targets */
};

/* Start the thread for consumer `rk`, whose queued.min.messages is
 * `queued_min`. */
int fetchwake_start(struct clv_fetchwake *w, rd_kafka_t *rk, int queued_min, char *err,
                    size_t errlen);
/* Stop and join the thread; before rd_kafka_consumer_close().  Safe on a
 * zeroed or never started struct. */
void fetchwake_stop(struct clv_fetchwake *w);

/* The partitions to wake (copied); NULL or empty: none. */
void fetchwake_set_targets(struct clv_fetchwake *w, const rd_kafka_topic_partition_list_t *parts);
/* The application took n messages from the queue. */
static inline void fetchwake_consumed(struct clv_fetchwake *w, int n)
{
    atomic_fetch_add_explicit(&w->consumed, (unsigned long long)n, memory_order_relaxed);
}
/* The application stops taking messages for a while (its workers are
 * full): the queue may fill up and fetching stop. */
static inline void fetchwake_held(struct clv_fetchwake *w)
{
    atomic_store_explicit(&w->held, 1, memory_order_relaxed);
}

#endif
