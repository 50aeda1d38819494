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
#include "keys.h"
#include "log.h"
#include "metrics.h"
#include "output.h"
#include "producer.h"
#include "stages.h"
#include "state.h"
#include "sweeper.h"
#include "worker.h"

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

/* Events, or customers, in one worker's batch.  Only a backlog fills it (at
 * lower rates a batch is what arrived while the last one was applied); then
 * a larger batch merges more events per customer and more customers per
 * apply.lua call, which is what takes Redis's work per event down.
 * Measured (performance.md): 2000 -> 6000 took Redis from 5.8 to 4.7 us per
 * event; past 6000 it is memory that decides, once a job's large buffers
 * are released between batches (state.c): at 1 M customers 9000 peaked at
 * 58.8-58.9 MB RSS (62.7 with the prefetch of consumer.c), 12000 at
 * 61.3-65.4 MB (the target is 64), for about 5 % more events/s. */
#define BATCH_MAX 9000
#define SHUTDOWN_GRACE_MS 6000
/* A failed batch is tried again this often (the store's backoff spaces the
 * reconnects themselves). */
#define RETRY_MS 200
/* The main thread's own Redis work -- group clock, sweeper, alerts, outbox
 * trim and drain -- at most this often: the loop turns much faster while
 * workers are busy, and each of these is a round trip. */
#define TICK_MS 10
/* Nothing to read and a worker busy, or input flowing: wait this long (on
 * the workers, not in Kafka) before polling Kafka again. */
#define WAIT_MS 1
/* Input that arrived within this long counts as flowing. */
#define FLOWING_MS 100

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
    struct clv_workers workers;
    struct clv_batch sweep; /* what the sweeper found, before the workers get it */
    int sweep_pending;      /* jobs holding swept customers not yet applied */
    int paused;             /* consumption paused: a worker's batch failed */
    int store_fatal;        /* a worker met another deployment in Redis */
    clv_ms next_tick;
    clv_ms next_batch_warning;
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

/* ---- the workers' state, as the main thread sees it -------------------------------- */

static int job_full(const struct clv_job *j)
{
    return j->batch.nevents >= BATCH_MAX || j->batch.nitems >= BATCH_MAX;
}

/* A worker's next batch is full while it is still busy with the last one:
 * fetch nothing more until it is done. */
static int input_blocked(const struct clvd *d)
{
    for (int i = 0; i < d->workers.n; i++)
        if (job_full(d->workers.w[i].filling))
            return 1;
    return 0;
}

static int any_failed(const struct clvd *d)
{
    for (int i = 0; i < d->workers.n; i++)
        if (d->workers.w[i].failed != NULL)
            return 1;
    return 0;
}

static int any_inflight(const struct clvd *d)
{
    for (int i = 0; i < d->workers.n; i++)
        if (d->workers.w[i].inflight != NULL)
            return 1;
    return 0;
}

/* Anything handed to the workers and not yet applied. */
static int work_pending(const struct clvd *d)
{
    for (int i = 0; i < d->workers.n; i++)
        if (worker_busy(&d->workers.w[i]) || job_pending(d->workers.w[i].filling))
            return 1;
    return 0;
}

/* The earliest event time handed to the workers and not yet applied, into
 * *out; 0 if there is none.  The main thread alone writes a job's refs and
 * min_ts, so it may read those of a job a worker is applying. */
static int earliest_pending(const struct clvd *d, clv_ms *out)
{
    int found = 0;

    for (int i = 0; i < d->workers.n; i++) {
        const struct clv_worker *w = &d->workers.w[i];
        const struct clv_job *jobs[3] = {w->filling, w->inflight, w->failed};
        for (int k = 0; k < 3; k++)
            if (jobs[k] != NULL && jobs[k]->nrefs > 0 && (!found || jobs[k]->min_ts < *out)) {
                *out = jobs[k]->min_ts;
                found = 1;
            }
    }
    return found;
}

/* ---- input ------------------------------------------------------------------------ */

/* Into the batch of the worker owning the customer's shard, with the
 * partition's frontier as of now (see clv_mark). */
static void queue_event(struct clvd *d, struct clv_event *ev, const struct clv_msgref *ref)
{
    uint32_t shards = (uint32_t)d->cfg.redis.shards;
    uint32_t shard = keys_shard_of(ev->customer_id, ev->customer_id_len, shards);
    struct clv_job *j = workers_for_shard(&d->workers, shard)->filling;

    ev->src_frontier = consumer_frontier(&d->consumer, ref);
    if (j->nrefs == 0 || ev->ts < j->min_ts)
        j->min_ts = ev->ts;
    batch_add_event(&j->batch, ev, shards);
    job_add_ref(j, ref);
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

static void handle_message(struct clvd *d, const rd_kafka_message_t *m, clv_ms now, clv_ms now_mono)
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
         event_parser_parse(d->parser, m->payload, m->len, (enum clv_event_type)topic, &lim, now,
                            &d->ev, reason, sizeof(reason)) == 0;
    if (m->payload == NULL)
        snprintf(reason, sizeof(reason), "invalid_json");
    ref = consumer_track(&d->consumer, m, topic, ok ? d->ev.ts : 0, now_mono);
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

/* How often the fetch loop looks for a finished worker: a worker should not
 * wait for the rest of a fetch to get its next batch. */
#define DONE_CHECK_EVERY 32

/* Up to BATCH_MAX messages per fetch, fewer if a worker's next batch is full
 * or a worker has finished its batch. */
static int fetch_more(struct clvd *d, int n)
{
    if (n >= BATCH_MAX || input_blocked(d))
        return 0;
    return n % DONE_CHECK_EVERY != DONE_CHECK_EVERY - 1 || !workers_any_done(&d->workers);
}

/* Fetch messages (see fetch_more); waits at most `timeout_ms` for the first.
 * The clocks are read once every DONE_CHECK_EVERY messages, not for each:
 * a few milliseconds do not matter to what they time (idleness, the
 * de-duplication window, the future-skew check), and per message they were
 * a few per cent of the main thread's profile.  Returns how many, or -1 on
 * a fatal consumer error. */
static int poll_input(struct clvd *d, int timeout_ms)
{
    clv_ms now = 0, now_mono = 0;
    int n;

    for (n = 0; fetch_more(d, n); n++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(d->consumer.rk, n == 0 ? timeout_ms : 0);
        if (m == NULL)
            break;
        if (n % DONE_CHECK_EVERY == 0) {
            now = clv_now_ms();
            now_mono = clv_mono_ms();
        }
        if (m->err) {
            int fatal = fatal_consumer_error(d, m);
            rd_kafka_message_destroy(m);
            if (fatal)
                return -1;
            continue;
        }
        d->last_input_mono = now_mono;
        handle_message(d, m, now, now_mono);
        rd_kafka_message_destroy(m);
    }
    return n;
}

/* Event clock: move every held event the watermark has passed into the
 * workers' batches, in (time, topic, partition, offset) order. */
static void release_held(struct clvd *d)
{
    struct clv_held h;

    consumer_watermark(&d->consumer, clv_mono_ms());
    while (!input_blocked(d) && consumer_release(&d->consumer, &h))
        queue_event(d, &h.ev, &h.ref);
}

/* ---- applying: the workers do it, the main thread publishes and acknowledges ------ */

static void applied(struct clvd *d, struct clv_worker *w, struct clv_job *j)
{
    producer_send_batch(&d->producer, &j->batch);
    metrics_add_batch(&d->metrics, &j->batch.stats);
    for (int i = 0; i < j->nrefs; i++)
        consumer_done(&d->consumer, &j->refs[i]);
    if (j->nadvances > 0)
        d->sweep_pending--;
    worker_recycle(w, j);
}

/* Nothing of the batch is acknowledged; the worker gets it again before
 * anything queued after it, and input stops until it goes through. */
static void not_applied(struct clvd *d, struct clv_worker *w, struct clv_job *j)
{
    clv_ms now = clv_mono_ms();

    /* every worker retries every RETRY_MS while Redis is away: say so at
     * the first failure of a batch, then now and then */
    if (++j->failures == 1 || now >= d->next_batch_warning) {
        log_warn(&d->log, "batch of %d customer(s) not applied (attempt %d), will retry: %s",
                 j->batch.nitems, j->failures, j->err);
        d->next_batch_warning = now + 5 * CLV_MS_PER_SEC;
    }
    /* customers written before the failure have outbox entries nobody
     * is publishing: drain the outboxes once Redis is back */
    d->producer.drain_needed = 1;
    if (j->store_fatal)
        d->store_fatal = 1;
    worker_retry(w, j, now + RETRY_MS);
    if (!d->paused)
        consumer_pause_all(&d->consumer, 1);
    d->paused = 1;
}

static void collect(struct clvd *d)
{
    for (int i = 0; i < d->workers.n; i++) {
        struct clv_worker *w = &d->workers.w[i];
        struct clv_job *j = worker_collect(w);
        if (j == NULL)
            continue;
        if (j->rc == 0) {
            /* The worker's next batch before this one's outputs: the worker
             * need not wait while they are produced.  Not after a failure,
             * which must go again before anything queued after it. */
            worker_dispatch(w, clv_mono_ms());
            applied(d, w, j);
        } else {
            not_applied(d, w, j);
        }
    }
    if (d->paused && !any_failed(d)) {
        consumer_pause_all(&d->consumer, 0);
        d->paused = 0;
    }
}

static void dispatch(struct clvd *d)
{
    clv_ms now = clv_mono_ms();

    for (int i = 0; i < d->workers.n; i++)
        worker_dispatch(&d->workers.w[i], now);
}

/* Finished batches out, next batches in: as soon as possible, so that no
 * worker idles while the main thread has its next batch. */
static void turn_over(struct clvd *d)
{
    collect(d);
    dispatch(d);
}

/* While the main thread waits for its own Redis replies (sweeper, alerts,
 * outbox trims), which queue in Redis behind the workers' pipelines: a
 * worker that finishes meanwhile gets its next batch, and its outputs go
 * out, instead of waiting for the round trip (up to 30 ms measured under
 * load; docs/performance.md, ninth session). */
static void turn_over_while_waiting(void *arg)
{
    turn_over(arg);
}

/* Read input unless a worker holds it up.  Kafka is waited on only once
 * the input has gone quiet and no worker is busy; otherwise it is polled
 * and the wait is on the workers: a finished batch must not sit until the
 * next message arrives, and librdkafka 2.0.2 fetches far less while the
 * application waits inside rd_kafka_consumer_poll() (measured: a third of
 * the events/s once the workers had less to wait for in Redis). */
static int take_input(struct clvd *d)
{
    int busy, n;

    turn_over(d); /* a full batch whose worker is idle blocks nothing */
    busy = any_inflight(d) || clv_mono_ms() - d->last_input_mono < FLOWING_MS;
    if (input_blocked(d)) {
        fetchwake_held(&d->consumer.wake); /* Kafka's queue may fill meanwhile */
        workers_wait(&d->workers, 50);     /* woken when a batch is done */
        return 0;
    }
    n = poll_input(d, busy ? 0 : any_failed(d) ? RETRY_MS : 50);
    if (n == 0 && busy)
        workers_wait(&d->workers, WAIT_MS);
    return n < 0 ? -1 : 0;
}

/* The sweeper's "now": the wall clock, or in event mode the group's
 * watermark -- never ahead of any instance's, so that no customer is timed
 * out before another instance has applied its events. */
static clv_ms clock_now(struct clvd *d)
{
    clv_ms own, group, first = 0;
    int pending;

    if (d->cfg.clock.mode == CLV_CLOCK_WALL)
        return clv_now_ms();
    own = d->consumer.assignment && d->consumer.assignment->cnt > 0
              ? consumer_applied_until(&d->consumer)
              : 0;
    /* an event released to a worker is not applied until it hands it back */
    pending = earliest_pending(d, &first);
    if (own > 0 && pending && first - 1 < own)
        own = first - 1;
    group = sweeper_group_clock(&d->sweeper, &d->store, own,
                                d->consumer.all_idle && d->consumer.nheld == 0 && !pending,
                                d->cfg.clock.idle_after * 2 + 10 * CLV_MS_PER_SEC);
    /* the group clock already counts this instance unless it is idle, and
     * then it must not hold the shards it sweeps back either */
    return group;
}

/* Due customers go to the workers owning them, behind the events already
 * queued for them: a customer is never advanced by two threads at once, and
 * in event mode it is advanced in the order the sequential loop had. */
static void hand_over_sweep(struct clvd *d)
{
    uint32_t shards = (uint32_t)d->cfg.redis.shards;

    for (int i = 0; i < d->sweep.nitems; i++) {
        const struct clv_item *it = &d->sweep.items[i];
        struct clv_job *j = workers_for_shard(&d->workers, it->shard)->filling;
        if (j->nadvances++ == 0)
            d->sweep_pending++;
        batch_add_advance(&j->batch, batch_item_id(&d->sweep, it), it->idlen, shards,
                          it->advance_to);
    }
}

/* One sweep at a time: until its customers are applied the due index still
 * lists them, and a second sweep would queue them again. */
static void sweep(struct clvd *d, clv_ms now)
{
    char err[CLV_ERRLEN];

    if (now <= 0 || d->sweep_pending > 0 || !store_connected(&d->store))
        return;
    batch_reset(&d->sweep);
    if (sweeper_collect(&d->sweeper, &d->store, now, &d->sweep, err, sizeof(err)) < 0) {
        log_warn(&d->log, "sweeper: %s", err);
        return;
    }
    hand_over_sweep(d);
}

/* ---- housekeeping ------------------------------------------------------------------ */

static void serve_outputs(struct clvd *d)
{
    if (!store_connected(&d->store))
        return;
    producer_trim_outbox(&d->producer, &d->store);
    producer_drain_step(&d->producer, &d->store, 64);
}

/* The main thread's Redis work, every TICK_MS at most. */
static void tick(struct clvd *d)
{
    clv_ms mono = clv_mono_ms();
    char err[CLV_ERRLEN];

    if (mono < d->next_tick)
        return;
    d->next_tick = mono + TICK_MS;
    if (store_connected(&d->store) && !any_failed(d)) {
        clv_ms now = clock_now(d);
        sweep(d, now);
        if (alerts_tick(&d->alerts, &d->store, &d->producer, now, err, sizeof(err)) != 0)
            log_warn(&d->log, "%s", err);
    }
    serve_outputs(d);
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
    /* workers read the config and the rules while they apply */
    workers_hold(&d->workers);
    old = d->cfg;
    d->cfg = next;
    rules_from_config(&d->rules, &d->cfg);
    d->log.level = d->cfg.log_level;
    workers_release(&d->workers);
    config_free(&old);
    if (ahead > 0) {
        /* every due entry was scored by the old rules and may now be late:
         * re-score the due index once, in the background */
        sweeper_rescan(&d->sweeper, (uint32_t)d->cfg.redis.shards);
        log_info(&d->log,
                 "reload brings deadlines forward by up to %lld day(s): re-scoring the due index",
                 (long long)((ahead + CLV_MS_PER_DAY - 1) / CLV_MS_PER_DAY));
    }
    d->metrics.reloads_ok++;
    log_info(&d->log, "configuration reloaded from %s", d->opt->config_path);
}

/* Every partition idle and nothing left to do (demo and tests).  Idle
 * means no message for a while *and* read up to the end: a broker that
 * fails its fetches (down, or answering with errors) for longer than
 * exit_when_idle must not end the run with input unread. */
static int finished(struct clvd *d)
{
    clv_ms idle = clv_mono_ms() - d->last_input_mono;

    return d->opt->exit_when_idle > 0 && d->ready && idle >= d->opt->exit_when_idle &&
           d->consumer.nheld == 0 && !work_pending(d) && d->producer.in_flight == 0 &&
           !d->producer.drain_active && !d->producer.drain_needed &&
           consumer_caught_up(&d->consumer);
}

/* The main thread's connection and every worker's, as one. */
static void collect_stores(struct clvd *d)
{
    metrics_collect_store(&d->metrics, &d->store);
    for (int i = 0; i < d->workers.n; i++) {
        struct clv_store_stats s;
        worker_take_stats(&d->workers.w[i], &s);
        metrics_add_store(&d->metrics, s.commands, s.round_trips, s.up, &s.rtt);
        d->metrics.redis_reconnects += s.reconnects;
        if (s.reconnects > 0)
            d->producer.drain_needed = 1; /* what the outage left in the outboxes */
    }
}

static void publish_metrics(struct clvd *d, const char *unhealthy)
{
    char reason[128] = "";
    int healthy;

    metrics_collect_consumer(&d->metrics, &d->consumer);
    metrics_collect_producer(&d->metrics, &d->producer);
    collect_stores(d);
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
        if (take_input(d) != 0)
            return 1;
        if (d->cfg.clock.mode == CLV_CLOCK_EVENT && !any_failed(d))
            release_held(d);
        turn_over(d);
        tick(d);
        producer_poll(&d->producer, 0);
        housekeeping(d);
        notify_systemd(d);
        if (d->store.fatal || d->store_fatal) {
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
    if (workers_start(&d->workers, d->cfg.processing_workers, &d->cfg, &d->rules, &d->log, err,
                      errlen) != 0)
        return -1;
    store_set_wait_hook(&d->store, turn_over_while_waiting, d);
    sweeper_init(&d->sweeper, (uint32_t)d->cfg.redis.shards);
    alerts_init(&d->alerts, &d->cfg, &d->log, d->sweeper.instance);
    if (sd_watchdog_enabled(0, &wd_usec) > 0)
        d->watchdog_every = (clv_ms)(wd_usec / 2000);
    d->last_input_mono = clv_mono_ms();
    return 0;
}

/* Apply what the workers were given (failed batches retried) within the
 * grace period, then stop them; what they finish meanwhile still counts. */
static void finish_work(struct clvd *d)
{
    clv_ms deadline = clv_mono_ms() + SHUTDOWN_GRACE_MS;

    while (work_pending(d) && clv_mono_ms() < deadline) {
        turn_over(d);
        producer_poll(&d->producer, 0);
        workers_wait(&d->workers, 100);
    }
    workers_stop(&d->workers);
    store_set_wait_hook(&d->store, NULL, NULL);
    collect(d);
}

/* Finish the batches in hand, flush outputs, commit offsets (SPEC section 8). */
static void shutdown_gracefully(struct clvd *d)
{
    log_info(&d->log, "shutting down");
    sd_notify(0, "STOPPING=1");
    publish_metrics(d, "shutting down");
    finish_work(d);
    if (d->cfg.clock.mode == CLV_CLOCK_EVENT && store_connected(&d->store))
        sweeper_group_clock(&d->sweeper, &d->store, 0, 0, 0); /* leave the group clock */
    producer_flush(&d->producer, 3000);
    producer_poll(&d->producer, 0);
    if (store_connected(&d->store))
        producer_trim_outbox(&d->producer, &d->store);
}

static void teardown(struct clvd *d)
{
    /* stopped already, unless the start failed */
    workers_stop(&d->workers);
    consumer_close(&d->consumer); /* commits the stored offsets */
    producer_close(&d->producer);
    store_disconnect(&d->store);
    workers_free(&d->workers);
    embedded_stop(&d->emb);
    batch_free(&d->sweep);
    sweeper_free(&d->sweeper);
    sbuf_free(&d->dlq);
    if (d->http)
        metrics_server_stop(d->http);
    metrics_free(&d->metrics);
    sbuf_free(&d->page);
    if (d->parser)
        event_parser_free(d->parser);
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
    batch_init(&d->sweep);
    sbuf_init(&d->dlq);
    install_signals();
    log_info(&d->log, "clvd %s starting (clock %s, %d shards, %d worker(s))", CLVD_VERSION,
             d->cfg.clock.mode == CLV_CLOCK_EVENT ? "event" : "wall", d->cfg.redis.shards,
             d->cfg.processing_workers);
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
