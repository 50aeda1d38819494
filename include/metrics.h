/* metrics.h -- Prometheus metrics and the /metrics, /healthz endpoint
 * (SPEC sections 10 and 12).
 *
 * The main loop owns every counter in one plain struct clv_metrics and bumps
 * it without locks.  About once a second it refreshes the gauges
 * (metrics_collect_*), renders the Prometheus text page (metrics_render) into
 * a buffer and hands a copy to the HTTP server together with the health flag
 * (metrics_server_publish).  The server -- libmicrohttpd with its own
 * polling thread -- only ever serves the last published page, so a scrape
 * never touches the loop's data and the loop never waits for a scrape.
 *
 *   GET /metrics   200, text/plain; version=0.0.4, the last published page
 *   GET /healthz   200 "ok" when healthy, 503 and a one-line reason otherwise
 *   anything else  404; methods other than GET and HEAD: 405
 *
 * Naming: every metric starts with clvd_, counters end in _total, durations
 * are histograms in seconds (_seconds). */
#ifndef CLVD_METRICS_H
#define CLVD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "config.h"
#include "consumer.h"
#include "customer.h"
#include "output.h"
#include "sbuf.h"

struct clv_batch_stats;
struct clv_producer;
struct clv_store;

/* ---- histograms --------------------------------------------------------------- */

#define CLV_HIST_MAX_BOUNDS 24

/* A histogram with fixed upper bounds (seconds, strictly increasing).  Plain
 * data: it may be copied, embedded in another module's struct and merged. */
struct clv_histogram {
    int nbounds;
    double bounds[CLV_HIST_MAX_BOUNDS];
    /* observations per bucket, not cumulative: buckets[i] counts
     * bounds[i-1] < v <= bounds[i]; buckets[nbounds] counts v > the last bound */
    uint64_t buckets[CLV_HIST_MAX_BOUNDS + 1];
    uint64_t count;
    double sum;
};

/* Set the bounds and clear the counts; -1 if there are more than
 * CLV_HIST_MAX_BOUNDS or they are not finite and strictly increasing. */
int histogram_init(struct clv_histogram *h, const double *bounds, int nbounds);
/* The two presets clvd uses: end-to-end processing latency (0.5 ms .. 5 min)
 * and Redis round trips (50 us .. 2.5 s). */
void histogram_init_latency(struct clv_histogram *h);
void histogram_init_redis(struct clv_histogram *h);
/* Count one observation; negative values count as 0, NaN is ignored. */
void histogram_observe(struct clv_histogram *h, double seconds);
/* Add src's observations into dst; -1 (dst unchanged) if the bounds differ. */
int histogram_merge(struct clv_histogram *dst, const struct clv_histogram *src);
/* Estimate the q-quantile (0..1) by linear interpolation inside the bucket,
 * as Prometheus's histogram_quantile does; 0 when empty, the last bound when
 * it falls in the overflow bucket. */
double histogram_quantile(const struct clv_histogram *h, double q);

/* ---- the counters --------------------------------------------------------------- */

#define CLV_METRICS_MAX_REASONS 64
#define CLV_METRICS_REASON_LEN 64
#define CLV_METRICS_TOPIC_LEN 256 /* Kafka topic names are at most 249 bytes */
#define CLV_METRICS_ALERT_LEN 64

struct clv_metrics_reason {
    char reason[CLV_METRICS_REASON_LEN];
    uint64_t n;
};

struct clv_metrics_lag {
    int topic; /* input topic index (enum clv_event_type) */
    int32_t partition;
    int64_t lag;
};

struct clv_metrics_alert {
    char name[CLV_METRICS_ALERT_LEN];
    int firing;
};

struct clv_metrics {
    clv_ms start_time; /* wall clock, for clvd_start_time_seconds */
    char topic_in[CLV_INPUT_TOPICS][CLV_METRICS_TOPIC_LEN];
    char topic_out[CLV_OUT_COUNT][CLV_METRICS_TOPIC_LEN];

    /* counters (monotonic for the life of the process) */
    uint64_t consumed[CLV_INPUT_TOPICS]; /* input messages fetched, per topic */
    uint64_t applied;                    /* events applied to a customer's state */
    uint64_t duplicates;                 /* events dropped as already applied */
    uint64_t conflicts;                  /* compare-and-set retries */
    uint64_t customer_updates;           /* compare-and-set writes that went through */
    uint64_t apply_calls;                /* apply.lua calls */
    uint64_t apply_groups;               /* their shard groups */
    uint64_t cache_hits, state_reads;    /* states from the workers' caches, by GET */
    struct clv_metrics_reason rejected[CLV_METRICS_MAX_REASONS];
    int nrejected;
    uint64_t rejected_other; /* reasons beyond the table, rendered as "other" */
    /* [from + 1][to]: row 0 is a customer's first transition (from none) */
    uint64_t transitions[CLV_STAGE_COUNT + 1][CLV_STAGE_COUNT];
    uint64_t tier_changes;
    uint64_t produced[CLV_OUT_COUNT], delivered[CLV_OUT_COUNT], failed[CLV_OUT_COUNT];
    uint64_t redis_commands, redis_round_trips, redis_reconnects;
    uint64_t reloads_ok, reloads_refused;
    struct clv_histogram latency;   /* message timestamp -> output delivery report */
    struct clv_histogram redis_rtt; /* one Redis round trip (a pipeline counts once) */

    /* gauges (refreshed before each render) */
    struct clv_metrics_lag *lag; /* per assigned partition whose lag is known */
    int nlag, lag_cap;
    int customers_valid; /* customers[] was read from Redis at least once */
    int64_t customers[CLV_STAGE_COUNT];
    struct clv_metrics_alert alerts[CLV_MAX_ALERTS];
    int nalerts;
    int redis_up;
    int kafka_assigned; /* the consumer holds an assignment (possibly empty) */
    int kafka_assigned_partitions;
    uint64_t fetch_wakeups; /* counter: the consumer's fetch waker (fetchwake.h) */
    int64_t held_events;    /* event clock: events waiting for the watermark */
    clv_ms watermark;       /* event clock; 0 = none (wall clock or not yet known) */
    int ready;              /* READY=1 was sent */
};

/* Zero everything, set up the histograms, copy the topic names. */
void metrics_init(struct clv_metrics *m, const struct clv_kafka_topics *topics, clv_ms start_time);
void metrics_free(struct clv_metrics *m);

/* Count one rejected input message under its dead-letter reason. */
void metrics_count_rejected(struct clv_metrics *m, const char *reason);
/* Add an applied batch's statistics (applied, duplicates, conflicts,
 * customer updates, transitions, tier changes). */
void metrics_add_batch(struct clv_metrics *m, const struct clv_batch_stats *s);
/* Set an alert rule's state, adding the rule on first use; -1 when the table
 * is full. */
int metrics_set_alert(struct clv_metrics *m, const char *name, int firing);
/* Customers per stage as summed from the shards' counters in Redis. */
void metrics_set_customers(struct clv_metrics *m, const int64_t counts[CLV_STAGE_COUNT]);
/* Replace the lag table. */
void metrics_lag_reset(struct clv_metrics *m);
void metrics_lag_set(struct clv_metrics *m, int topic, int32_t partition, int64_t lag);

/* Refresh from the modules (once a second, before rendering):
 *  consumer: assignment, assigned partitions, lag per partition (from
 *            librdkafka's cached high watermarks, no broker round trip),
 *            held events, watermark;
 *  producer: produced / delivered / failed per output topic;
 *  store:    redis_up, commands, round trips. */
void metrics_collect_consumer(struct clv_metrics *m, const struct clv_consumer *c);
void metrics_collect_producer(struct clv_metrics *m, const struct clv_producer *p);
void metrics_collect_store(struct clv_metrics *m, const struct clv_store *st);
/* Add a further connection (a worker's), after metrics_collect_store(): its
 * commands and round trips add up, Redis counts as up only while every
 * connection is, and `rtt` (its round trips since the last call; may be
 * NULL) joins the histogram. */
void metrics_add_store(struct clv_metrics *m, uint64_t commands, uint64_t round_trips, int up,
                       const struct clv_histogram *rtt);

/* SPEC 10: healthy when the consumer holds an assignment and Redis answers.
 * Returns 1 or 0; when 0, `reason` (may be NULL) says why in one line. */
int metrics_healthy(const struct clv_metrics *m, char *reason, size_t reasonlen);

/* Append the Prometheus text exposition (format 0.0.4) of m to out. */
void metrics_render(const struct clv_metrics *m, struct clv_sbuf *out);

/* ---- the HTTP endpoint ------------------------------------------------------------ */

struct clv_metrics_server;

/* Listen on `listen`: "host:port", "[ipv6]:port" or "*:port" (all IPv4
 * addresses); port 0 picks a free port (metrics_server_port tells which).  An
 * empty string disables the endpoint: *out is set to NULL and 0 returned.
 * Until the first publish, /metrics serves an empty page and /healthz 503
 * "starting".  Call it early at start-up, before the Kafka clients' threads
 * exist: a busy port then fails the start at once, and the error path can
 * safely close the socket libmicrohttpd may have closed already. */
int metrics_server_start(struct clv_metrics_server **out, const char *listen, char *err,
                         size_t errlen);
/* Replace the page served and the health state (copies both; thread-safe).
 * `reason` is shown by /healthz when not healthy (NULL: "unhealthy").  A NULL
 * server is ignored. */
void metrics_server_publish(struct clv_metrics_server *srv, const char *page, size_t len,
                            int healthy, const char *reason);
/* The TCP port listened on, 0 for a NULL server. */
int metrics_server_port(const struct clv_metrics_server *srv);
/* Stop the server thread, close the socket, free; NULL is ignored. */
void metrics_server_stop(struct clv_metrics_server *srv);

#endif
