/* fetchwake.c -- wakes librdkafka's fetchers; see fetchwake.h. */
#define _GNU_SOURCE /* pthread_setname_np */
#include "fetchwake.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* How often the queue is looked at; at most one wake per look.  A wake is a
 * watermark-offsets query: ListOffsets requests to one broker, one round
 * trip. */
#define WAKE_EVERY_MS 5
/* A wake whose broker does not answer is given up: the next one follows. */
#define WAKE_TIMEOUT_MS 100

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* The next partition to wake, round the targets, into topic/partition;
 * 0 if there is none. */
static int next_target(struct clv_fetchwake *w, char *topic, size_t topiclen, int32_t *partition)
{
    int found = 0;

    pthread_mutex_lock(&w->mu);
    if (w->targets != NULL && w->targets->cnt > 0) {
        const rd_kafka_topic_partition_t *t = &w->targets->elems[w->next++ % w->targets->cnt];
        snprintf(topic, topiclen, "%s", t->topic);
        *partition = t->partition;
        found = 1;
    }
    pthread_mutex_unlock(&w->mu);
    return found;
}

/* The partition has messages at the broker beyond what the application has
 * taken (high watermark as of the last fetch response, no round trip). */
static int partition_behind(rd_kafka_t *rk, const char *topic, int32_t partition)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    int64_t lo, hi, pos;

    rd_kafka_topic_partition_list_add(l, topic, partition);
    rd_kafka_position(rk, l);
    pos = l->elems[0].offset;
    rd_kafka_topic_partition_list_destroy(l);
    if (rd_kafka_get_watermark_offsets(rk, topic, partition, &lo, &hi) !=
            RD_KAFKA_RESP_ERR_NO_ERROR ||
        hi < 0)
        return 0;
    return pos >= 0 ? pos < hi : lo < hi; /* nothing taken yet: whether it holds any */
}

/* Whether to wake the broker of `topic` [partition] now.  Only when fetching
 * may have stopped: waking when it had not cost latency (measured: the
 * half-rate p50 doubled; the requests share the connection with the
 * fetches).  Fetching may have stopped once the queue was seen at half of
 * queued.min.messages or more (librdkafka stops at all of it, or earlier at
 * the bytes bound with large messages), or the application held its input
 * back (`*armed`); or when the queue is empty while the partition has
 * messages waiting (a queue so small that it fills and drains between two
 * looks).  In every case the application must be taking from the queue,
 * and the queue must have drained below half. */
static int should_wake(struct clv_fetchwake *w, int *armed, unsigned long long seen,
                       const char *topic, int32_t partition)
{
    int len = (int)rd_kafka_queue_length(w->queue);

    if (len >= w->low_mark || atomic_exchange(&w->held, 0))
        *armed = 1;
    if (len >= w->low_mark || atomic_load_explicit(&w->consumed, memory_order_relaxed) == seen)
        return 0;
    return *armed || (len == 0 && partition_behind(w->rk, topic, partition));
}

static void *fetchwake_main(void *arg)
{
    struct clv_fetchwake *w = arg;
    unsigned long long seen = 0;
    int armed = 0;
    char topic[256];
    int32_t partition;
    int64_t lo, hi;

    while (!atomic_load(&w->stop)) {
        sleep_ms(WAKE_EVERY_MS);
        if (!next_target(w, topic, sizeof(topic), &partition) ||
            !should_wake(w, &armed, seen, topic, partition))
            continue;
        /* The answer is not needed, only the request reaching the leader's
         * broker thread; after an error (leader unknown, broker down) the
         * next look tries again. */
        if (rd_kafka_query_watermark_offsets(w->rk, topic, partition, &lo, &hi, WAKE_TIMEOUT_MS) ==
            RD_KAFKA_RESP_ERR_NO_ERROR) {
            armed = 0;
            seen = atomic_load_explicit(&w->consumed, memory_order_relaxed);
        }
        atomic_fetch_add_explicit(&w->wakes, 1, memory_order_relaxed);
    }
    return NULL;
}

int fetchwake_start(struct clv_fetchwake *w, rd_kafka_t *rk, int queued_min, char *err,
                    size_t errlen)
{
    memset(w, 0, sizeof(*w));
    w->rk = rk;
    w->low_mark = queued_min / 2 > 0 ? queued_min / 2 : 1;
    w->queue = rd_kafka_queue_get_consumer(rk);
    if (w->queue == NULL) {
        clv_seterr(err, errlen, "kafka consumer: no consumer queue");
        return -1;
    }
    pthread_mutex_init(&w->mu, NULL);
    if (pthread_create(&w->thread, NULL, fetchwake_main, w) != 0) {
        clv_seterr(err, errlen, "kafka consumer: cannot start the fetch waker thread");
        pthread_mutex_destroy(&w->mu);
        rd_kafka_queue_destroy(w->queue);
        w->queue = NULL;
        return -1;
    }
    pthread_setname_np(w->thread, "clvd-fetchwake");
    w->started = 1;
    return 0;
}

void fetchwake_stop(struct clv_fetchwake *w)
{
    if (!w->started)
        return;
    atomic_store(&w->stop, 1);
    pthread_join(w->thread, NULL);
    if (w->targets != NULL)
        rd_kafka_topic_partition_list_destroy(w->targets);
    rd_kafka_queue_destroy(w->queue);
    pthread_mutex_destroy(&w->mu);
    w->targets = NULL;
    w->queue = NULL;
    w->started = 0;
}

void fetchwake_set_targets(struct clv_fetchwake *w, const rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_topic_partition_list_t *copy = NULL, *old;

    if (!w->started)
        return;
    if (parts != NULL && parts->cnt > 0)
        copy = rd_kafka_topic_partition_list_copy(parts);
    pthread_mutex_lock(&w->mu);
    old = w->targets;
    w->targets = copy;
    w->next = 0;
    pthread_mutex_unlock(&w->mu);
    if (old != NULL)
        rd_kafka_topic_partition_list_destroy(old);
}
