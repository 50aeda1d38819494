/* daemon.c -- the clvd main loop; see daemon.h. */
#include "daemon.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "alerts.h"
#include "consumer.h"
#include "embedded.h"
#include "event.h"
#include "log.h"
#include "metrics.h"
#include "output.h"
#include "producer.h"
#include "stages.h"
#include "state.h"
#include "sweeper.h"

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t reload_requested;

void clvd_request_stop(void)
{
    stop_requested = 1;
}

void clvd_request_reload(void)
{
    reload_requested = 1;
}

static void on_signal(int sig)
{
    if (sig == SIGHUP)
        reload_requested = 1;
    else
        stop_requested = 1;
}

#define BATCH_MAX 2000
#define SHUTDOWN_GRACE_MS 6000

struct clvd {
    const struct clvd_options *opt;
    struct clv_config cfg;
    struct clv_log log;
    struct clv_rules rules;
    struct clv_embedded emb;
    struct clv_store store;
    struct clv_consumer consumer;
    struct clv_producer producer;
    struct clv_sweeper sweeper;
    struct clv_alerts alerts;
    struct clv_batch batch, sweep;
    struct clv_msgref *refs; /* input messages of `batch` */
    int nrefs, refs_cap;
    int batch_failed; /* Redis refused the batch: retry before fetching more */
    struct clv_event ev;
    struct event_parser *parser;
    struct clv_sbuf dlq;
    struct clv_metrics metrics;
    struct clv_metrics_server *http;
    struct clv_sbuf page;
    clv_ms next_metrics;
    clv_ms next_redis_warning;
    int ready;
    clv_ms next_watchdog, watchdog_every, next_status, last_input_mono;
    uint64_t applied_at_status;
};

/* ---- input ------------------------------------------------------------------------ */

static void push_ref(struct clvd *d, const struct clv_msgref *ref)
{
    if (d->nrefs == d->refs_cap) {
        int ncap = d->refs_cap ? d->refs_cap * 2 : BATCH_MAX;
        struct clv_msgref *n = realloc(d->refs, sizeof(*n) * (size_t)ncap);
        if (n == NULL)
            abort();
        d->refs = n;
        d->refs_cap = ncap;
    }
    d->refs[d->nrefs++] = *ref;
}

/* Into the batch, with the partition's frontier as of now (see clv_mark). */
static void queue_event(struct clvd *d, struct clv_event *ev, const struct clv_msgref *ref)
{
    ev->src_frontier = consumer_frontier(&d->consumer, ref);
    batch_add_event(&d->batch, ev, (uint32_t)d->cfg.redis.shards);
    push_ref(d, ref);
}

static void dead_letter(struct clvd *d, const rd_kafka_message_t *m, const struct clv_msgref *ref,
                        const char *reason)
{
    sbuf_reset(&d->dlq);
    output_dead_letter(&d->dlq, reason, rd_kafka_topic_name(m->rkt), m->partition, m->offset,
                       m->key, m->key_len, m->payload ? m->payload : "", m->payload ? m->len : 0,
                       clv_now_ms());
    producer_dead_letter(&d->producer, ref, d->dlq.buf, d->dlq.len, m->key, m->key_len);
    metrics_count_rejected(&d->metrics, reason);
    log_debug(&d->log, "rejected %s[%d]@%lld: %s", rd_kafka_topic_name(m->rkt), m->partition,
              (long long)m->offset, reason);
}

static void handle_message(struct clvd *d, const rd_kafka_message_t *m)
{
    struct clv_event_limits lim = {(size_t)d->cfg.kafka.max_message_bytes,
                                   d->cfg.clock.max_future_skew};
    int topic = consumer_topic_index(&d->consumer, rd_kafka_topic_name(m->rkt));
    char reason[64];
    struct clv_msgref ref;
    int ok;

    if (topic < 0)
        return;
    d->metrics.consumed[topic]++;
    ok = m->payload != NULL &&
         event_parser_parse(d->parser, m->payload, m->len, (enum clv_event_type)topic, &lim,
                            clv_now_ms(), &d->ev, reason, sizeof(reason)) == 0;
    if (m->payload == NULL)
        snprintf(reason, sizeof(reason), "invalid_json");
    ref = consumer_track(&d->consumer, m, topic, ok ? d->ev.ts : 0);
    if (!ok) {
        dead_letter(d, m, &ref, reason);
        return;
    }
    d->ev.src_topic = (int8_t)topic;
    d->ev.src_partition = m->partition;
    d->ev.src_offset = m->offset;
    d->ev.src_ts = rd_kafka_message_timestamp(m, NULL);
    if (d->cfg.clock.mode == CLV_CLOCK_EVENT)
        consumer_hold(&d->consumer, &d->ev, &ref);
    else
        queue_event(d, &d->ev, &ref);
}

static int fatal_consumer_error(struct clvd *d, const rd_kafka_message_t *m)
{
    char buf[512];

    if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
        rd_kafka_fatal_error(d->consumer.rk, buf, sizeof(buf));
        log_error(&d->log, "kafka consumer: fatal error: %s", buf);
        return 1;
    }
    log_warn(&d->log, "kafka consumer: %s", rd_kafka_message_errstr(m));
    return 0;
}

/* Fetch up to BATCH_MAX messages; waits at most `timeout_ms` for the first. */
static int poll_input(struct clvd *d, int timeout_ms)
{
    for (int n = 0; n < BATCH_MAX; n++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(d->consumer.rk, n == 0 ? timeout_ms : 0);
        if (m == NULL)
            break;
        if (m->err) {
            int fatal = fatal_consumer_error(d, m);
            rd_kafka_message_destroy(m);
            if (fatal)
                return -1;
            continue;
        }
        d->last_input_mono = clv_mono_ms();
        handle_message(d, m);
        rd_kafka_message_destroy(m);
    }
    return 0;
}

/* Event clock: move every held event the watermark has passed into the batch,
 * in (time, topic, partition, offset) order. */
static void release_held(struct clvd *d)
{
    struct clv_held h;

    consumer_watermark(&d->consumer, clv_mono_ms());
    while (d->batch.nevents < BATCH_MAX && consumer_release(&d->consumer, &h))
        queue_event(d, &h.ev, &h.ref);
}

/* ---- applying ---------------------------------------------------------------------- */

static int apply(struct clvd *d, struct clv_batch *b)
{
    char err[CLV_ERRLEN];

    if (b->nitems == 0)
        return 0;
    if (state_apply_batch(&d->store, b, &d->rules, &d->cfg, err, sizeof(err)) != 0) {
        log_warn(&d->log, "batch of %d customer(s) not applied, will retry: %s", b->nitems, err);
        /* customers written before the failure have outbox entries nobody
         * is publishing: drain the outboxes once Redis is back */
        d->producer.drain_needed = 1;
        return -1;
    }
    producer_send_batch(&d->producer, b);
    metrics_add_batch(&d->metrics, &b->stats);
    return 0;
}

static void apply_input(struct clvd *d)
{
    if (d->batch.nitems == 0 && d->nrefs == 0)
        return;
    if (apply(d, &d->batch) != 0) {
        if (!d->batch_failed)
            consumer_pause_all(&d->consumer, 1);
        d->batch_failed = 1;
        return;
    }
    for (int i = 0; i < d->nrefs; i++)
        consumer_done(&d->consumer, &d->refs[i]);
    if (d->batch_failed)
        consumer_pause_all(&d->consumer, 0);
    d->batch_failed = 0;
    d->nrefs = 0;
    batch_reset(&d->batch);
}

/* The sweeper's "now": the wall clock, or in event mode the group's
 * watermark -- never ahead of any instance's, so that no customer is timed
 * out before another instance has applied its events. */
static clv_ms clock_now(struct clvd *d)
{
    clv_ms own, group;

    if (d->cfg.clock.mode == CLV_CLOCK_WALL)
        return clv_now_ms();
    own = d->consumer.assignment && d->consumer.assignment->cnt > 0
              ? consumer_applied_until(&d->consumer)
              : 0;
    group = sweeper_group_clock(&d->sweeper, &d->store, own,
                                d->consumer.all_idle && d->consumer.nheld == 0,
                                d->cfg.clock.idle_after * 2 + 10 * CLV_MS_PER_SEC);
    /* the group clock already counts this instance unless it is idle, and
     * then it must not hold the shards it sweeps back either */
    return group;
}

static void sweep(struct clvd *d, clv_ms now)
{
    char err[CLV_ERRLEN];

    if (d->batch_failed || now <= 0 || !store_connected(&d->store))
        return;
    batch_reset(&d->sweep);
    if (sweeper_collect(&d->sweeper, &d->store, now, &d->sweep, err, sizeof(err)) < 0) {
        log_warn(&d->log, "sweeper: %s", err);
        return;
    }
    apply(d, &d->sweep);
}

/* ---- housekeeping ------------------------------------------------------------------ */

static void serve_outputs(struct clvd *d)
{
    producer_poll(&d->producer, 0);
    if (!store_connected(&d->store))
        return;
    producer_trim_outbox(&d->producer, &d->store);
    producer_drain_step(&d->producer, &d->store, 64);
}

static void notify_systemd(struct clvd *d)
{
    clv_ms now = clv_mono_ms();

    if (!d->ready && d->consumer.ever_assigned) {
        d->ready = 1;
        sd_notify(0, "READY=1\nSTATUS=consuming");
        d->metrics.ready = 1;
        log_info(&d->log, "ready");
    }
    if (d->watchdog_every && now >= d->next_watchdog) {
        sd_notify(0, "WATCHDOG=1");
        d->next_watchdog = now + d->watchdog_every;
    }
    if (now >= d->next_status) {
        sd_notifyf(0, "STATUS=%s; applied %llu events (%.0f/s); redis %s",
                   d->ready ? "consuming" : "waiting for partitions",
                   (unsigned long long)d->metrics.applied,
                   (double)(d->metrics.applied - d->applied_at_status) / 5.0,
                   store_connected(&d->store) ? "up" : "down");
        d->applied_at_status = d->metrics.applied;
        d->next_status = now + 5000;
    }
}

static clv_ms days_earlier(double before, double after)
{
    return after < before ? (clv_ms)((before - after) * (double)CLV_MS_PER_DAY) + 1 : 0;
}

static clv_ms max_ms(clv_ms a, clv_ms b)
{
    return a > b ? a : b;
}

/* How far a reload can bring a due deadline forward.  Rules whose effect is
 * not a fixed shift (gap factor, P(alive), model, tiers) may move any
 * deadline: then everything due within ten years is looked at again. */
static clv_ms deadlines_moved_by(const struct clv_config *a, const struct clv_config *b)
{
    const struct clv_lifecycle_config *x = &a->lifecycle, *y = &b->lifecycle;
    clv_ms ahead = 0;

    if (x->at_risk_gap_factor != y->at_risk_gap_factor ||
        x->at_risk_p_alive_below != y->at_risk_p_alive_below || a->clv.model != b->clv.model ||
        a->clv.r != b->clv.r || a->clv.alpha != b->clv.alpha || a->clv.a != b->clv.a ||
        a->clv.b != b->clv.b || a->tiers_window_days != b->tiers_window_days ||
        a->ntiers != b->ntiers)
        return 3650 * CLV_MS_PER_DAY;
    for (int i = 0; i < a->ntiers; i++)
        if (a->tiers[i].min_spend != b->tiers[i].min_spend)
            return 3650 * CLV_MS_PER_DAY;
    ahead = max_ms(ahead, days_earlier(x->at_risk_min_gap_days, y->at_risk_min_gap_days));
    ahead = max_ms(ahead, days_earlier(x->at_risk_default_gap_days, y->at_risk_default_gap_days));
    ahead = max_ms(ahead, days_earlier(x->dormant_after_days, y->dormant_after_days));
    ahead = max_ms(ahead, days_earlier(x->churned_after_days, y->churned_after_days));
    return ahead;
}

static void reload(struct clvd *d)
{
    struct clv_config next, old;
    char err[CLV_ERRLEN];
    clv_ms ahead;

    reload_requested = 0;
    if (config_load(d->opt->config_path, &next, err, sizeof(err)) != 0) {
        log_error(&d->log, "reload refused, keeping the running config: %s", err);
        d->metrics.reloads_refused++;
        return;
    }
    if (config_reloadable(&d->cfg, &next, err, sizeof(err)) != 0) {
        log_error(&d->log, "reload refused, keeping the running config: %s", err);
        d->metrics.reloads_refused++;
        config_free(&next);
        return;
    }
    ahead = deadlines_moved_by(&d->cfg, &next);
    old = d->cfg;
    d->cfg = next;
    config_free(&old);
    rules_from_config(&d->rules, &d->cfg);
    if (ahead > 0) {
        /* every due entry was scored by the old rules and may now be late:
         * re-score the due index once, in the background */
        sweeper_rescan(&d->sweeper, (uint32_t)d->cfg.redis.shards);
        log_info(&d->log,
                 "reload brings deadlines forward by up to %lld day(s): re-scoring the due index",
                 (long long)((ahead + CLV_MS_PER_DAY - 1) / CLV_MS_PER_DAY));
    }
    d->log.level = d->cfg.log_level;
    d->metrics.reloads_ok++;
    log_info(&d->log, "configuration reloaded from %s", d->opt->config_path);
}

/* Every partition idle and nothing left to do (demo and tests). */
static int finished(struct clvd *d)
{
    clv_ms idle = clv_mono_ms() - d->last_input_mono;

    return d->opt->exit_when_idle > 0 && d->ready && idle >= d->opt->exit_when_idle &&
           d->consumer.nheld == 0 && d->batch.nitems == 0 && d->producer.in_flight == 0 &&
           !d->producer.drain_active && !d->producer.drain_needed;
}

static void publish_metrics(struct clvd *d, const char *unhealthy)
{
    char reason[128] = "";
    int healthy;

    metrics_collect_consumer(&d->metrics, &d->consumer);
    metrics_collect_producer(&d->metrics, &d->producer);
    metrics_collect_store(&d->metrics, &d->store);
    if (d->alerts.pop.valid)
        metrics_set_customers(&d->metrics, d->alerts.pop.stage);
    for (int i = 0; i < d->cfg.nalerts; i++)
        metrics_set_alert(&d->metrics, d->cfg.alerts[i].name, d->alerts.firing[i]);
    healthy = metrics_healthy(&d->metrics, reason, sizeof(reason));
    if (unhealthy) {
        healthy = 0;
        snprintf(reason, sizeof(reason), "%s", unhealthy);
    }
    sbuf_reset(&d->page);
    metrics_render(&d->metrics, &d->page);
    if (d->http)
        metrics_server_publish(d->http, d->page.buf, d->page.len, healthy, reason);
}

/* An idle clvd must notice Redis coming back too, not only a batch. */
static void keep_redis_connected(struct clvd *d)
{
    char err[CLV_ERRLEN];
    clv_ms now = clv_mono_ms();

    if (store_connected(&d->store) || now < d->store.next_attempt)
        return;
    if (store_ensure(&d->store, err, sizeof(err)) != 0 && now >= d->next_redis_warning) {
        log_warn(&d->log, "%s", err);
        d->next_redis_warning = now + 10 * CLV_MS_PER_SEC;
    }
}

static void housekeeping(struct clvd *d)
{
    clv_ms now = clv_mono_ms();

    if (d->consumer.rebalanced) {
        d->consumer.rebalanced = 0;
        d->last_input_mono = now; /* idle counts from the new assignment */
        /* an instance that left may have left undelivered outbox entries */
        d->producer.drain_needed = 1;
    }

    keep_redis_connected(d);
    if (d->store.reconnected) {
        d->store.reconnected = 0;
        d->metrics.redis_reconnects++;
        d->producer.drain_needed = 1; /* what the outage left in the outboxes */
    }
    if (now >= d->next_metrics) {
        publish_metrics(d, NULL);
        d->next_metrics = now + 1000;
    }
}

static int loop(struct clvd *d)
{
    while (!stop_requested) {
        if (reload_requested)
            reload(d);
        if (poll_input(d, d->batch_failed ? 200 : 50) != 0)
            return 1;
        if (d->cfg.clock.mode == CLV_CLOCK_EVENT && !d->batch_failed)
            release_held(d);
        apply_input(d);
        if (store_connected(&d->store) && !d->batch_failed) {
            clv_ms now = clock_now(d);
            char err[CLV_ERRLEN];
            sweep(d, now);
            if (alerts_tick(&d->alerts, &d->store, &d->producer, now, err, sizeof(err)) != 0)
                log_warn(&d->log, "%s", err);
        }
        serve_outputs(d);
        housekeeping(d);
        notify_systemd(d);
        if (d->store.fatal) {
            /* a restart cannot help: status 2 is RestartPreventExitStatus */
            log_error(&d->log, "redis: this is not the deployment clvd was configured for");
            return 2;
        }
        if (d->producer.fatal) {
            log_error(&d->log, "kafka: cannot deliver; exiting so that a restart retries");
            return 1;
        }
        if (finished(d))
            break;
    }
    return 0;
}

/* ---- start and stop ---------------------------------------------------------------- */

static void install_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static int start(struct clvd *d, char *err, size_t errlen)
{
    const char *brokers = d->cfg.kafka.brokers;
    uint64_t wd_usec = 0;

    /* first, so that a busy port fails before any Kafka thread exists */
    if (d->cfg.metrics_listen[0] &&
        metrics_server_start(&d->http, d->cfg.metrics_listen, err, errlen) != 0)
        return -1;
    if (d->http)
        log_info(&d->log, "metrics on http://%s/metrics", d->cfg.metrics_listen);
    if (strcmp(brokers, "embedded") == 0) {
        if (embedded_start(&d->emb, &d->cfg, err, errlen) != 0)
            return -1;
        brokers = d->emb.bootstraps;
        log_warn(&d->log,
                 "kafka: embedded mock cluster at %s -- for demos and tests, never for "
                 "production",
                 brokers);
    }
    d->parser = event_parser_create(err, errlen);
    if (d->parser == NULL)
        return -1;
    store_init(&d->store, &d->cfg.redis, &d->log);
    if (store_ensure(&d->store, err, errlen) != 0) {
        if (d->store.fatal)
            return -1;
        /* Redis may come up after us: consume nothing until it does */
        log_warn(&d->log, "%s; retrying", err);
    }
    if (consumer_open(&d->consumer, &d->cfg, brokers, &d->log, err, errlen) != 0)
        return -1;
    if (producer_open(&d->producer, &d->cfg, brokers, &d->consumer, &d->log, err, errlen) != 0)
        return -1;
    d->store.rtt = &d->metrics.redis_rtt;
    d->producer.latency = &d->metrics.latency;
    sweeper_init(&d->sweeper, (uint32_t)d->cfg.redis.shards);
    alerts_init(&d->alerts, &d->cfg, &d->log, d->sweeper.instance);
    if (sd_watchdog_enabled(0, &wd_usec) > 0)
        d->watchdog_every = (clv_ms)(wd_usec / 2000);
    d->last_input_mono = clv_mono_ms();
    return 0;
}

/* Finish the batch in hand, flush outputs, commit offsets (SPEC section 8). */
static void shutdown_gracefully(struct clvd *d)
{
    clv_ms deadline = clv_mono_ms() + SHUTDOWN_GRACE_MS;
    char err[CLV_ERRLEN];

    log_info(&d->log, "shutting down");
    sd_notify(0, "STOPPING=1");
    publish_metrics(d, "shutting down");
    while ((d->batch.nitems > 0 || d->nrefs > 0) && clv_mono_ms() < deadline) {
        store_ensure(&d->store, err, sizeof(err));
        apply_input(d);
        if (d->batch.nitems > 0)
            producer_poll(&d->producer, 100);
    }
    if (d->cfg.clock.mode == CLV_CLOCK_EVENT && store_connected(&d->store))
        sweeper_group_clock(&d->sweeper, &d->store, 0, 0, 0); /* leave the group clock */
    producer_flush(&d->producer, 3000);
    producer_poll(&d->producer, 0);
    if (store_connected(&d->store))
        producer_trim_outbox(&d->producer, &d->store);
}

static void teardown(struct clvd *d)
{
    consumer_close(&d->consumer); /* commits the stored offsets */
    producer_close(&d->producer);
    store_disconnect(&d->store);
    embedded_stop(&d->emb);
    batch_free(&d->batch);
    batch_free(&d->sweep);
    sweeper_free(&d->sweeper);
    sbuf_free(&d->dlq);
    if (d->http)
        metrics_server_stop(d->http);
    metrics_free(&d->metrics);
    sbuf_free(&d->page);
    if (d->parser)
        event_parser_free(d->parser);
    free(d->refs);
    config_free(&d->cfg);
}

int clvd_run(const struct clvd_options *opt)
{
    struct clvd *d = calloc(1, sizeof(*d));
    char err[CLV_ERRLEN];
    int status = 1;

    if (d == NULL)
        return 1;
    d->opt = opt;
    log_init(&d->log, CLV_LOG_INFO, CLV_LOG_TEXT);
    if (config_load(opt->config_path, &d->cfg, err, sizeof(err)) != 0) {
        log_error(&d->log, "%s", err);
        free(d);
        return 2;
    }
    log_init(&d->log, d->cfg.log_level, d->cfg.log_format);
    rules_from_config(&d->rules, &d->cfg);
    metrics_init(&d->metrics, &d->cfg.kafka.topics, clv_now_ms());
    sbuf_init(&d->page);
    batch_init(&d->batch);
    batch_init(&d->sweep);
    sbuf_init(&d->dlq);
    install_signals();
    log_info(&d->log, "clvd %s starting (clock %s, %d shards)", CLVD_VERSION,
             d->cfg.clock.mode == CLV_CLOCK_EVENT ? "event" : "wall", d->cfg.redis.shards);
    if (start(d, err, sizeof(err)) != 0) {
        log_error(&d->log, "%s", err);
        status = d->store.fatal ? 2 : 1;
        goto out;
    }
    status = loop(d);
    shutdown_gracefully(d);
    log_info(&d->log, "stopped: consumed %llu, applied %llu, duplicates %llu",
             (unsigned long long)(d->metrics.consumed[0] + d->metrics.consumed[1] +
                                  d->metrics.consumed[2]),
             (unsigned long long)d->metrics.applied, (unsigned long long)d->metrics.duplicates);
out:
    teardown(d);
    free(d);
    return status;
}
