/* bench_e2e.c -- one measured clvd run (see bench.h, docs/performance.md).
 *
 *   bench process                                   clvd (child)        redis-server (child)
 *   ├─ mock Kafka cluster (librdkafka, loopback)  ◀──── consumer/producer ──▶ unix socket
 *   ├─ producer thread: loadgen → inputs, flow-controlled against the
 *   │  mock's per-partition capacity, then one end marker per partition;
 *   │  or, preloaded (max rate), all of it before clvd starts
 *   ├─ output thread: reads every output partition, latency per transition
 *   └─ main: scrapes clvd's /metrics, waits for the end markers, measures
 *
 * Latency: the input message's timestamp (CreateTime, set by the bench to
 * the event's `ts`) to the moment the bench's own consumer receives the
 * transition it caused (stage-changes and tier-changes; their `at` is the
 * `ts` of the event behind them).  The end of the run is the moment the end
 * markers' transitions arrive: every partition's last message is applied. */
#define _GNU_SOURCE
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "customer.h"
#include "keys.h"
#include "loadgen.h"
#include "timeutil.h"

/* librdkafka 2.0's mock keeps at most 5 MB (and 100 000 message sets) per
 * partition and silently drops the oldest beyond that. */
#define MOCK_PARTITION_BYTES (5.0 * 1024 * 1024)
#define WINDOW_SHARE 0.5
#define PRELOAD_SHARE 0.6 /* of the capacity: keys do not spread exactly evenly */
#define PRELOAD_MIN_PARTITIONS 8
#define PRELOAD_LINGER_MS 100
#define MAX_PARTITIONS 1024
#define RECORD_OVERHEAD 40.0 /* record header and a share of the batch header */
#define SENTINEL_PREFIX "zz-bench-end-"
#define KEY_PREFIX "clv:"
#define STALL_SECONDS 60.0
#define SAMPLE_KEYS 2000
#define DR_BUCKETS 20000 /* 0.1 ms each: 2 s */
/* successful customer compare-and-sets, if clvd exports it (see the docs) */
#define UPDATES_METRIC "clvd_customer_updates_total"
#define CALLS_METRIC "clvd_apply_calls_total"
#define GROUPS_METRIC "clvd_apply_groups_total"

/* ---- producer thread ---------------------------------------------------------- */

struct prod {
    const struct b_opts *o;
    rd_kafka_t *rk;
    struct loadgen *lg;
    struct loadgen_event *pre; /* rate runs: the stream, generated ahead */
    uint64_t npre;
    uint64_t limit;  /* events before the end markers */
    int64_t from_ms; /* delivery delays of the inputs stamped from then on */
    double rate;
    int preload; /* clvd is not running: no flow control, but the mock's capacity */
    atomic_uint_fast64_t consumed[B_NINPUT]; /* clvd's count, from /metrics */
    atomic_uint_fast64_t produced[B_NINPUT];
    atomic_uint_fast64_t bytes[B_NINPUT];
    atomic_uint_fast64_t dr_ok, dr_failed;
    atomic_int started, done, stop;
    /* input delivery delay (CreateTime -> delivery report), 0.1 ms buckets;
     * touched by the producer thread only (it serves the reports) */
    uint32_t dr_hist[DR_BUCKETS + 1];
    double t_first, t_last, throttled; /* monotonic seconds */
    uint64_t window;                   /* largest flow-control window used */
    int rc;
    char err[B_ERRLEN];
};

static void prod_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct prod *p = opaque;
    int64_t created, delay;

    (void)rk;
    if (m->err) {
        atomic_fetch_add(&p->dr_failed, 1);
        return;
    }
    atomic_fetch_add(&p->dr_ok, 1);
    /* the message's timestamp in a delivery report is the broker's
     * LogAppendTime when it sends one (the mock sends a dummy): the opaque
     * carries the CreateTime instead */
    created = (int64_t)(intptr_t)m->_private;
    if (created < p->from_ms || p->o->time_mode != B_TIME_LIVE)
        return;
    delay = (b_wall_us() - created * 1000) / 100;
    p->dr_hist[delay < 0 ? 0 : delay > DR_BUCKETS ? DR_BUCKETS : delay]++;
}

/* q-quantile of the input delivery delays, ms */
static double dr_quantile(const struct prod *p, double q)
{
    uint64_t n = 0, seen = 0;

    for (int i = 0; i <= DR_BUCKETS; i++)
        n += p->dr_hist[i];
    for (int i = 0; i <= DR_BUCKETS && n; i++) {
        seen += p->dr_hist[i];
        if ((double)seen >= q * (double)n)
            return (i + 0.5) / 10.0;
    }
    return 0;
}

/* Keep what clvd has not yet consumed within half the mock's capacity.
 * Only when producing flat out: at a fixed rate clvd keeps up (or the run
 * shows that it does not), and clvd's consumed counter, published once a
 * second, is too stale a signal for a window of a second or less; a loss
 * would still be caught by the produced == consumed check at the end. */
static void wait_window(struct prod *p, int t)
{
    double waited = 0;

    if (p->rate > 0 || p->preload)
        return;
    for (;;) {
        uint64_t n = atomic_load(&p->produced[t]), c = atomic_load(&p->consumed[t]);
        uint64_t bytes = atomic_load(&p->bytes[t]);
        double avg = (n ? (double)bytes / (double)n : 160.0) + RECORD_OVERHEAD;
        uint64_t win = (uint64_t)(WINDOW_SHARE * p->o->partitions * MOCK_PARTITION_BYTES / avg);
        if (win > p->window)
            p->window = win;
        if (n < c + win || atomic_load(&p->stop))
            break;
        if (waited == 0)
            waited = b_mono();
        rd_kafka_poll(p->rk, 2);
    }
    if (waited > 0)
        p->throttled += b_mono() - waited;
}

/* Bytes a topic takes in the mock, and whether a preload still fits: with
 * no consumer to make room, what overflows is lost. */
static double topic_bytes(double payload, uint64_t messages)
{
    return payload + (double)messages * RECORD_OVERHEAD;
}

static int preload_fits(struct prod *p, int t)
{
    double cap = PRELOAD_SHARE * p->o->partitions * MOCK_PARTITION_BYTES;

    if (!p->preload ||
        topic_bytes((double)atomic_load(&p->bytes[t]), atomic_load(&p->produced[t])) <= cap)
        return 1;
    snprintf(p->err, sizeof(p->err),
             "the preloaded stream outgrew the mock's %d partition(s) of %s: use more "
             "--partitions, or --no-preload",
             p->o->partitions, b_input_topics[t]);
    return 0;
}

static int produce(struct prod *p, int t, int32_t partition, const char *key, size_t keylen,
                   const char *val, size_t len, clv_ms ts)
{
    rd_kafka_resp_err_t e;

    for (;;) {
        e = rd_kafka_producev(p->rk, RD_KAFKA_V_TOPIC(b_input_topics[t]),
                              RD_KAFKA_V_PARTITION(partition), RD_KAFKA_V_KEY(key, keylen),
                              RD_KAFKA_V_VALUE((void *)val, len),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_TIMESTAMP(ts),
                              RD_KAFKA_V_OPAQUE((void *)(intptr_t)ts), RD_KAFKA_V_END);
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            break;
        rd_kafka_poll(p->rk, 5);
    }
    if (e) {
        snprintf(p->err, sizeof(p->err), "produce to %s: %s", b_input_topics[t],
                 rd_kafka_err2str(e));
        return -1;
    }
    atomic_fetch_add(&p->bytes[t], len + keylen);
    atomic_fetch_add(&p->produced[t], 1);
    return 0;
}

/* SPEC section 3: one JSON object, keyed by customer id. */
static size_t format_event(char *buf, size_t len, int type, const char *event_id,
                           const char *customer_id, clv_ms ts, double amount, const char *channel)
{
    char tsb[32];
    int n;

    rfc3339_format(ts, tsb, sizeof(tsb));
    if (type == CLV_EV_PURCHASE)
        n = snprintf(buf, len,
                     "{\"event_id\":\"%s\",\"customer_id\":\"%s\",\"ts\":\"%s\",\"amount\":%.2f,"
                     "\"channel\":\"%s\"}",
                     event_id, customer_id, tsb, amount, channel);
    else
        n = snprintf(
            buf, len,
            "{\"event_id\":\"%s\",\"customer_id\":\"%s\",\"ts\":\"%s\",\"channel\":\"%s\"}",
            event_id, customer_id, tsb, channel);
    return n > 0 && (size_t)n < len ? (size_t)n : 0;
}

static void pace(struct prod *p, uint64_t i)
{
    double due = p->t_first + (double)i / p->rate, now = b_mono();

    /* sleeping is coarse: only when ahead by more than half a millisecond */
    if (due - now > 0.0005)
        b_sleep(due - now);
}

/* Rate runs generate the whole stream before anything is timed, so that
 * the load generator's own work -- a heap over the customers and random
 * draws, a quarter of the bench's CPU at half rate in a perf profile --
 * does not take the two cores from clvd and Redis while the latency is
 * measured.  (A real deployment's producers run elsewhere.) */
static int pregenerate(struct prod *p, char *err, size_t errlen)
{
    struct loadgen_event ev;
    uint64_t cap = 0;
    int r = 1;

    while (p->npre < p->limit && (r = loadgen_next(p->lg, &ev)) == 1) {
        if (p->npre == cap) {
            uint64_t ncap = cap ? cap * 2 : 65536;
            struct loadgen_event *n = realloc(p->pre, ncap * sizeof(*n));
            if (n == NULL) {
                r = -1;
                break;
            }
            p->pre = n;
            cap = ncap;
        }
        p->pre[p->npre++] = ev;
    }
    if (r < 0) {
        clv_seterr(err, errlen, "loadgen: out of memory generating the stream ahead");
        return -1;
    }
    return 0;
}

static int next_event(struct prod *p, uint64_t i, struct loadgen_event *ev)
{
    if (p->pre == NULL)
        return loadgen_next(p->lg, ev);
    if (i >= p->npre)
        return 0;
    *ev = p->pre[i];
    return 1;
}

static void *producer_main(void *arg)
{
    struct prod *p = arg;
    const struct b_opts *o = p->o;
    struct loadgen_event ev;
    char val[512], id[64], eid[80];
    clv_ms last_ts = 0;
    uint64_t i = 0;
    double last_poll = 0;
    size_t len;

    p->t_first = b_mono();
    atomic_store(&p->started, 1);
    while (i < p->limit && !atomic_load(&p->stop)) {
        clv_ms ts;
        int r = next_event(p, i, &ev);
        if (r == 0)
            break;
        if (r < 0) {
            snprintf(p->err, sizeof(p->err), "loadgen: out of memory");
            goto fail;
        }
        if (p->rate > 0)
            pace(p, i);
        wait_window(p, (int)ev.type);
        if (!preload_fits(p, (int)ev.type))
            goto fail;
        ts = o->time_mode == B_TIME_HISTORY ? ev.ts : clv_now_ms();
        last_ts = ts;
        len = format_event(val, sizeof(val), (int)ev.type, ev.event_id, ev.customer_id, ts,
                           ev.amount, ev.channel);
        if (len == 0) {
            snprintf(p->err, sizeof(p->err), "event %s does not fit the buffer", ev.event_id);
            goto fail;
        }
        if (produce(p, (int)ev.type, RD_KAFKA_PARTITION_UA, ev.customer_id, strlen(ev.customer_id),
                    val, len, ts) != 0)
            goto fail;
        i++;
        if ((i & 15) == 0 && b_mono() - last_poll > 0.0005) {
            rd_kafka_poll(p->rk, 0); /* delivery reports, timed to 0.5 ms */
            last_poll = b_mono();
        }
    }
    /* End markers: a new customer per input partition, the last message in
     * it; its transition arrives once everything before it is applied. */
    for (int t = 0; t < B_NINPUT; t++) {
        for (int part = 0; part < o->partitions; part++) {
            clv_ms ts = o->time_mode == B_TIME_HISTORY ? last_ts + 1 : clv_now_ms();
            wait_window(p, t);
            snprintf(id, sizeof(id), SENTINEL_PREFIX "%d-%d", t, part);
            snprintf(eid, sizeof(eid), "%s-0", id);
            len = format_event(val, sizeof(val), t, eid, id, ts, 1.0, "direct");
            if (produce(p, t, part, id, strlen(id), val, len, ts) != 0)
                goto fail;
        }
    }
    p->t_last = b_mono();
    while (rd_kafka_outq_len(p->rk) > 0 && !atomic_load(&p->stop))
        rd_kafka_poll(p->rk, 10);
    atomic_store(&p->done, 1);
    return NULL;
fail:
    p->rc = -1;
    p->t_last = b_mono();
    atomic_store(&p->done, 1);
    return NULL;
}

/* The partitions per input topic that hold the whole stream with every
 * topic at most PRELOAD_SHARE full: the fewest powers of two, at least
 * PRELOAD_MIN_PARTITIONS.  One pass of the generator, each event formatted
 * as the producer will format it. */
static int preload_partitions(const struct loadgen_params *lp, uint64_t limit, char *err,
                              size_t errlen)
{
    struct loadgen *lg;
    struct loadgen_event ev;
    char val[512];
    double bytes[B_NINPUT] = {0};
    uint64_t n[B_NINPUT] = {0}, i = 0;
    int parts = PRELOAD_MIN_PARTITIONS, r = 1;

    if (loadgen_new(&lg, lp, err, errlen) != 0)
        return -1;
    while (i < limit && (r = loadgen_next(lg, &ev)) > 0) {
        size_t len = format_event(val, sizeof(val), (int)ev.type, ev.event_id, ev.customer_id,
                                  clv_now_ms(), ev.amount, ev.channel);
        bytes[ev.type] += (double)(len + strlen(ev.customer_id));
        n[ev.type]++;
        i++;
    }
    loadgen_free(lg);
    if (r < 0) {
        clv_seterr(err, errlen, "loadgen: out of memory");
        return -1;
    }
    for (int t = 0; t < B_NINPUT; t++)
        while (topic_bytes(bytes[t], n[t]) > PRELOAD_SHARE * parts * MOCK_PARTITION_BYTES)
            parts *= 2;
    if (parts > MAX_PARTITIONS) {
        clv_seterr(err, errlen,
                   "preloading this stream needs more than %d partitions per topic in the "
                   "mock: use --no-preload",
                   MAX_PARTITIONS);
        return -1;
    }
    return parts;
}

/* The whole stream, end markers included, delivered before clvd starts. */
static int preload_stream(struct prod *p, const char *name, char *err, size_t errlen)
{
    if (!p->o->quiet)
        fprintf(stderr, "  %s: preloading the stream into the mock cluster\n", name);
    producer_main(p);
    if (p->rc != 0) {
        clv_seterr(err, errlen, "preload: %s", p->err);
        return -1;
    }
    if (atomic_load(&p->dr_failed) > 0) {
        clv_seterr(err, errlen, "preload: %llu message(s) not delivered",
                   (unsigned long long)atomic_load(&p->dr_failed));
        return -1;
    }
    return 0;
}

static rd_kafka_t *input_producer(const struct b_opts *o, const char *bootstraps, struct prod *p,
                                  char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char kerr[256], linger[16];
    rd_kafka_t *rk;
    const char *kv[][2] = {
        {"bootstrap.servers", bootstraps},
        {"linger.ms", linger},
        {"batch.num.messages", "10000"},
        {"queue.buffering.max.messages", "1000000"},
        {"queue.buffering.max.kbytes", "1048576"},
        {"compression.codec", o->compression},
        {"acks", "1"},
        {"client.id", "clvd-bench-input"},
        {"log_level", "3"},
    };

    /* a preload is not timed: larger message sets make the mock's fetches
     * cheaper while clvd runs (see docs/performance.md) */
    snprintf(linger, sizeof(linger), "%d",
             p->preload && o->linger_ms < PRELOAD_LINGER_MS ? PRELOAD_LINGER_MS : o->linger_ms);
    for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
        if (rd_kafka_conf_set(conf, kv[i][0], kv[i][1], kerr, sizeof(kerr)) != RD_KAFKA_CONF_OK) {
            clv_seterr(err, errlen, "input producer: %s: %s", kv[i][0], kerr);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    rd_kafka_conf_set_opaque(conf, p);
    rd_kafka_conf_set_dr_msg_cb(conf, prod_dr);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, kerr, sizeof(kerr));
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        clv_seterr(err, errlen, "input producer: %s", kerr);
    }
    return rk;
}

/* ---- output consumer thread ---------------------------------------------------- */

struct outc {
    rd_kafka_t *rk;
    int live;        /* latency only with live timestamps */
    int64_t from_ms; /* latency of the inputs stamped from then on (after the warm-up) */
    int nsentinels;  /* expected */
    uint8_t *seen;   /* [topic * partitions + partition] */
    int partitions;
    atomic_int stop;
    atomic_int sentinels;
    atomic_uint_fast64_t received[B_NOUTPUT];
    double t_end; /* monotonic, when the last end marker arrived (valid once sentinels done) */
    /* owned by the thread until joined */
    double *lat, *lat_prod, *when; /* when: input time, seconds after from_ms */
    size_t n, cap;
    FILE *dump; /* $CLVD_BENCH_LATENCY_DUMP: one line per sample */
    uint64_t bytes, customer_msgs, warmup;
};

static int out_topic_index(const char *name)
{
    for (int i = 0; i < B_NOUTPUT; i++)
        if (strcmp(name, b_output_topics[i]) == 0)
            return i;
    return -1;
}

static void sentinel_seen(struct outc *oc, const rd_kafka_message_t *m)
{
    size_t plen = strlen(SENTINEL_PREFIX);
    char key[64];
    int t, part;

    if (m->key_len <= plen || m->key_len >= sizeof(key) ||
        memcmp(m->key, SENTINEL_PREFIX, plen) != 0)
        return;
    memcpy(key, m->key, m->key_len);
    key[m->key_len] = '\0';
    if (sscanf(key + plen, "%d-%d", &t, &part) != 2 || t < 0 || t >= B_NINPUT || part < 0 ||
        part >= oc->partitions || oc->seen[t * oc->partitions + part])
        return;
    oc->seen[t * oc->partitions + part] = 1;
    if (atomic_load(&oc->sentinels) + 1 == oc->nsentinels)
        oc->t_end = b_mono();
    atomic_fetch_add(&oc->sentinels, 1);
}

static void latency_sample(struct outc *oc, const rd_kafka_message_t *m, int64_t recv_us)
{
    const char *v = m->payload, *at;
    rd_kafka_timestamp_type_t tstype;
    int64_t created;
    clv_ms at_ms;

    at = memmem(v, m->len, "\"at\":\"", 6);
    if (at == NULL || at + 6 + 24 > v + m->len || rfc3339_parse(at + 6, 24, &at_ms) != 0)
        return;
    if (oc->n == oc->cap) {
        size_t ncap = oc->cap ? oc->cap * 2 : 65536;
        double *a = realloc(oc->lat, ncap * sizeof(*a)), *b, *c;
        if (a == NULL)
            return;
        oc->lat = a;
        b = realloc(oc->lat_prod, ncap * sizeof(*b));
        if (b == NULL)
            return;
        oc->lat_prod = b;
        c = realloc(oc->when, ncap * sizeof(*c));
        if (c == NULL)
            return;
        oc->when = c;
        oc->cap = ncap;
    }
    if (at_ms < oc->from_ms) {
        oc->warmup++;
        return;
    }
    created = rd_kafka_message_timestamp(m, &tstype);
    oc->lat[oc->n] = (double)(recv_us - at_ms * 1000) / 1000.0;
    oc->lat_prod[oc->n] = (double)(created - at_ms);
    oc->when[oc->n] = (double)(at_ms - oc->from_ms) / 1000.0;
    if (oc->dump)
        fprintf(oc->dump, "%lld %.3f %.0f\n", (long long)recv_us, oc->lat[oc->n],
                oc->lat_prod[oc->n]);
    oc->n++;
}

static void *output_main(void *arg)
{
    struct outc *oc = arg;

    while (!atomic_load(&oc->stop)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(oc->rk, 50);
        int64_t recv_us = b_wall_us();
        int t;
        if (m == NULL)
            continue;
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        t = out_topic_index(rd_kafka_topic_name(m->rkt));
        if (t >= 0) {
            atomic_fetch_add(&oc->received[t], 1);
            if (t <= 3) {
                oc->bytes += m->len;
                oc->customer_msgs++;
            }
            if (t == 0)
                sentinel_seen(oc, m);
            if (oc->live && (t == 0 || t == 3) && m->payload)
                latency_sample(oc, m, recv_us);
        }
        rd_kafka_message_destroy(m);
    }
    return NULL;
}

static rd_kafka_t *output_consumer(const struct b_opts *o, const char *bootstraps, char *err,
                                   size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *l;
    char kerr[256];
    rd_kafka_t *rk;
    const char *kv[][2] = {
        {"bootstrap.servers", bootstraps},   {"group.id", "clvd-bench-outputs"},
        {"enable.auto.commit", "false"},     {"enable.partition.eof", "false"},
        {"fetch.wait.max.ms", "1"},          {"fetch.error.backoff.ms", "5"},
        {"client.id", "clvd-bench-outputs"}, {"log_level", "3"},
    };

    for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
        if (rd_kafka_conf_set(conf, kv[i][0], kv[i][1], kerr, sizeof(kerr)) != RD_KAFKA_CONF_OK) {
            clv_seterr(err, errlen, "output consumer: %s: %s", kv[i][0], kerr);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, kerr, sizeof(kerr));
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        clv_seterr(err, errlen, "output consumer: %s", kerr);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    l = rd_kafka_topic_partition_list_new(B_NOUTPUT * o->out_partitions);
    for (int t = 0; t < B_NOUTPUT; t++)
        for (int part = 0; part < o->out_partitions; part++)
            rd_kafka_topic_partition_list_add(l, b_output_topics[t], part)->offset =
                RD_KAFKA_OFFSET_BEGINNING;
    if (rd_kafka_assign(rk, l) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        clv_seterr(err, errlen, "output consumer: assign failed");
        rd_kafka_topic_partition_list_destroy(l);
        rd_kafka_destroy(rk);
        return NULL;
    }
    rd_kafka_topic_partition_list_destroy(l);
    return rk;
}

/* ---- Kafka mock cluster and clvd ------------------------------------------------------ */

static int mock_start(const struct b_opts *o, rd_kafka_t **host, rd_kafka_mock_cluster_t **mc,
                      char *bootstraps, size_t blen, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char kerr[256];

    rd_kafka_conf_set(conf, "log_level", "3", kerr, sizeof(kerr));
    *host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, kerr, sizeof(kerr));
    if (*host == NULL) {
        rd_kafka_conf_destroy(conf);
        clv_seterr(err, errlen, "mock cluster host: %s", kerr);
        return -1;
    }
    *mc = rd_kafka_mock_cluster_new(*host, o->brokers);
    if (*mc == NULL) {
        clv_seterr(err, errlen, "cannot start the Kafka mock cluster");
        return -1;
    }
    for (int t = 0; t < B_NINPUT; t++)
        if (rd_kafka_mock_topic_create(*mc, b_input_topics[t], o->partitions, 1)) {
            clv_seterr(err, errlen, "mock topic %s: cannot create", b_input_topics[t]);
            return -1;
        }
    for (int t = 0; t < B_NOUTPUT; t++)
        if (rd_kafka_mock_topic_create(*mc, b_output_topics[t], o->out_partitions, 1)) {
            clv_seterr(err, errlen, "mock topic %s: cannot create", b_output_topics[t]);
            return -1;
        }
    snprintf(bootstraps, blen, "%s", rd_kafka_mock_cluster_bootstraps(*mc));
    return 0;
}

/* clvd's redis section: the unix socket of one server, or the cluster's masters as seeds. */
static void redis_yaml(FILE *f, const struct b_redis *redis, int shards)
{
    fprintf(f, "redis:\n");
    if (redis->masters == 0) {
        fprintf(f, "  unix_socket: \"%s\"\n", redis->socket);
    } else {
        fprintf(f, "  cluster: true\n  seeds: [");
        for (int i = 0; i < redis->masters; i++)
            fprintf(f, "%s\"127.0.0.1:%d\"", i ? ", " : "", redis->node[i].port);
        fprintf(f, "]\n");
    }
    fprintf(f, "  shards: %d\n", shards);
}

static int write_config(const struct b_opts *o, const char *path, const char *bootstraps,
                        const struct b_redis *redis, int port, char *err, size_t errlen)
{
    FILE *f = fopen(path, "w");

    if (f == NULL) {
        clv_seterr(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    fprintf(f,
            "# written by clvd_bench\n"
            "kafka:\n"
            "  brokers: \"%s\"\n"
            "  group_id: clvd-bench\n"
            "  properties:\n"
            "    fetch.wait.max.ms: \"%d\"\n"
            "%s",
            bootstraps, o->fetch_wait_ms, o->clvd_properties);
    redis_yaml(f, redis, o->shards);
    if (o->workers > 0 || o->state_cache_mb >= 0)
        fprintf(f, "processing:\n");
    if (o->workers > 0)
        fprintf(f, "  workers: %d\n", o->workers);
    if (o->state_cache_mb >= 0)
        fprintf(f, "  state_cache_mb: %d\n", o->state_cache_mb);
    fprintf(f,
            "clock:\n"
            "  mode: %s\n"
            "%s"
            "metrics:\n"
            "  listen: \"127.0.0.1:%d\"\n"
            "log:\n"
            "  level: %s\n",
            o->time_mode == B_TIME_HISTORY ? "event" : "wall",
            o->time_mode == B_TIME_HISTORY ? "  idle_after: 1s\n" : "", port,
            getenv("CLVD_BENCH_LOG_LEVEL") ? getenv("CLVD_BENCH_LOG_LEVEL") : "info");
    if (fclose(f) != 0) {
        clv_seterr(err, errlen, "%s: write failed", path);
        return -1;
    }
    return 0;
}

/* Until /healthz says 200: consumer assigned and Redis up. */
static int wait_ready(int port, pid_t clvd, const char *log, double timeout, char *err,
                      size_t errlen)
{
    double deadline = b_mono() + timeout;
    struct clv_sbuf body;
    int rc = -1;

    sbuf_init(&body);
    while (b_mono() < deadline) {
        if (!b_alive(clvd)) {
            b_tail(log, 3000, "clvd log");
            clv_seterr(err, errlen, "clvd exited at start (log: %s)", log);
            goto out;
        }
        if (b_http_get(port, "/healthz", &body) == 200) {
            rc = 0;
            goto out;
        }
        if (b_interrupted()) {
            clv_seterr(err, errlen, "interrupted");
            goto out;
        }
        b_sleep(0.1);
    }
    b_tail(log, 3000, "clvd log");
    clv_seterr(err, errlen, "clvd not healthy after %.0f s", timeout);
out:
    sbuf_free(&body);
    return rc;
}

static pid_t perf_start(const char *out, pid_t pid)
{
    char p[32], *argv[] = {"perf", "record", "-F", "999",       "-e",      "cpu-clock",
                           "-p",   p,        "-o", (char *)out, "--quiet", NULL};
    char err[B_ERRLEN];
    pid_t perf = 0;

    snprintf(p, sizeof(p), "%d", (int)pid);
    if (b_spawn(argv, "/dev/null", &perf, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench: perf: %s\n", err);
        return 0;
    }
    return perf;
}

static void perf_stop(pid_t perf)
{
    int status;
    double deadline = b_mono() + 20;

    if (perf <= 0)
        return;
    kill(perf, SIGINT); /* perf writes its file on SIGINT */
    while (b_mono() < deadline)
        if (waitpid(perf, &status, WNOHANG) == perf)
            return;
        else
            b_sleep(0.05);
    b_stop(perf, 1);
}

/* ---- measuring Redis ---------------------------------------------------------------- */

/* One connection per data node: one server, or every master of a cluster.
 * A keyed command sent to every node is answered by its key's master; the
 * others answer MOVED, which is skipped, so sums over the nodes are the
 * cluster's. */
struct rnodes {
    int n;
    redisContext *c[B_CLUSTER_MAX];
};

static int rnodes_connect(struct rnodes *rn, const struct b_redis *r, const struct b_opts *o,
                          char *err, size_t errlen)
{
    for (rn->n = 0; rn->n < b_redis_nodes(r); rn->n++) {
        rn->c[rn->n] = b_redis_connect_node(r, rn->n, err, errlen);
        if (rn->c[rn->n] == NULL || b_redis_configure(rn->c[rn->n], o, err, errlen) != 0)
            return -1;
    }
    return 0;
}

static void rnodes_free(struct rnodes *rn)
{
    for (int i = 0; i < rn->n; i++)
        if (rn->c[i])
            redisFree(rn->c[i]);
    rn->n = 0;
}

/* A numeric INFO field, summed over the nodes. */
static uint64_t info_sum(const struct rnodes *rn, const char *section, const char *field)
{
    uint64_t sum = 0;

    for (int i = 0; i < rn->n; i++) {
        uint64_t v = 0;
        if (b_info_u64(rn->c[i], section, field, &v) == 0)
            sum += v;
    }
    return sum;
}

static void cmdstats_sum(const struct rnodes *rn, struct b_cmdstats *cs)
{
    struct b_cmdstats one;

    memset(cs, 0, sizeof(*cs));
    for (int i = 0; i < rn->n; i++)
        if (b_cmdstats_read(rn->c[i], &one) == 0)
            b_cmdstats_add(cs, &one);
}

/* The integer replies to `count` pipelined commands, summed (errors skipped). */
static uint64_t integer_replies(redisContext *c, int count)
{
    uint64_t sum = 0;

    for (int i = 0; i < count; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK)
            break;
        if (r->type == REDIS_REPLY_INTEGER)
            sum += (uint64_t)r->integer;
        freeReplyObject(r);
    }
    return sum;
}

static uint64_t shard_sum(const struct rnodes *rn, const char *cmd, int shards, int outbox)
{
    char key[CLV_KEY_MAX];
    uint64_t sum = 0;

    for (int i = 0; i < rn->n; i++) {
        for (int s = 0; s < shards; s++) {
            if (outbox)
                keys_outbox(key, KEY_PREFIX, (uint32_t)s);
            else
                keys_due(key, KEY_PREFIX, (uint32_t)s);
            redisAppendCommand(rn->c[i], "%s %s", cmd, key);
        }
        sum += integer_replies(rn->c[i], shards);
    }
    return sum;
}

/* MEMORY USAGE of one kind of shard key, summed over the shards. */
static uint64_t shard_memory(const struct rnodes *rn, int shards,
                             size_t (*key)(char *, const char *, uint32_t))
{
    char k[CLV_KEY_MAX];
    uint64_t sum = 0;

    for (int i = 0; i < rn->n; i++) {
        for (int s = 0; s < shards; s++) {
            key(k, KEY_PREFIX, (uint32_t)s);
            redisAppendCommand(rn->c[i], "MEMORY USAGE %s SAMPLES 0", k);
        }
        sum += integer_replies(rn->c[i], shards);
    }
    return sum;
}

static uint64_t dbsize_sum(const struct rnodes *rn)
{
    uint64_t sum = 0;

    for (int i = 0; i < rn->n; i++) {
        redisReply *r = redisCommand(rn->c[i], "DBSIZE");
        if (r && r->type == REDIS_REPLY_INTEGER)
            sum += (uint64_t)r->integer;
        if (r)
            freeReplyObject(r);
    }
    return sum;
}

/* Sums over the sampled states. */
struct state_sample {
    size_t n;
    double len, mem, npd, ndd, nmk;
    uint64_t decoded;
};

/* Count a node's customer keys (SCAN); keep up to `quota` names in `sample`. */
static size_t scan_customers(redisContext *c, char **sample, size_t quota, struct b_phase *ph)
{
    unsigned long long cursor = 0;
    size_t ns = 0;

    do {
        redisReply *r =
            redisCommand(c, "SCAN %llu MATCH %s COUNT 2000", cursor, KEY_PREFIX "{s*}:c:*");
        if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            if (r)
                freeReplyObject(r);
            break;
        }
        cursor = strtoull(r->element[0]->str, NULL, 10);
        ph->customers_stored += r->element[1]->elements;
        for (size_t i = 0; i < r->element[1]->elements && ns < quota; i++)
            sample[ns++] = strdup(r->element[1]->element[i]->str);
        freeReplyObject(r);
    } while (cursor != 0);
    return ns;
}

/* GET and MEMORY USAGE of the sampled keys, decoded. */
static void sample_states(redisContext *c, char **sample, size_t ns, struct clv_customer *cu,
                          struct state_sample *a)
{
    for (size_t i = 0; i < ns; i++) {
        redisAppendCommand(c, "GET %s", sample[i]);
        redisAppendCommand(c, "MEMORY USAGE %s SAMPLES 0", sample[i]);
    }
    for (size_t i = 0; i < ns; i++) {
        redisReply *g = NULL, *m = NULL;
        char err[128];
        if (redisGetReply(c, (void **)&g) != REDIS_OK || redisGetReply(c, (void **)&m) != REDIS_OK)
            break;
        a->n++;
        if (g->type == REDIS_REPLY_STRING) {
            a->len += (double)g->len;
            if (customer_decode(cu, (const unsigned char *)g->str, g->len, err, sizeof(err)) == 0) {
                a->npd += cu->npdays;
                a->ndd += cu->ndedupe;
                a->nmk += cu->nmarks;
                a->decoded++;
            }
        }
        if (m->type == REDIS_REPLY_INTEGER)
            a->mem += (double)m->integer;
        freeReplyObject(g);
        freeReplyObject(m);
    }
}

/* Count the customer keys (SCAN, every node) and look closely at a sample
 * of them (an equal share per node). */
static void measure_states(const struct rnodes *rn, struct b_phase *ph)
{
    char **sample = calloc(SAMPLE_KEYS, sizeof(char *));
    struct clv_customer *cu = malloc(sizeof(*cu));
    struct state_sample a;

    memset(&a, 0, sizeof(a));
    for (int k = 0; k < rn->n && sample && cu; k++) {
        size_t ns = scan_customers(rn->c[k], sample, (SAMPLE_KEYS + rn->n - 1) / rn->n, ph);
        sample_states(rn->c[k], sample, ns, cu, &a);
        for (size_t i = 0; i < ns; i++)
            free(sample[i]);
    }
    ph->sampled = a.n;
    if (a.n) {
        ph->state_len_avg = a.len / (double)a.n;
        ph->state_mem_avg = a.mem / (double)a.n;
    }
    if (a.decoded) {
        ph->npdays_avg = a.npd / (double)a.decoded;
        ph->ndedupe_avg = a.ndd / (double)a.decoded;
        ph->nmarks_avg = a.nmk / (double)a.decoded;
    }
    free(sample);
    free(cu);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* p50 and p99 of the transitions whose input was stamped in each second */
static void by_second(const struct outc *oc, struct b_latency *l)
{
    double *v = malloc(oc->n * sizeof(double) + 1);

    l->nseconds = 0;
    if (v == NULL)
        return;
    for (int sec = 0; sec < B_MAX_SECONDS; sec++) {
        size_t k = 0;
        for (size_t i = 0; i < oc->n; i++)
            if (oc->when[i] >= sec && oc->when[i] < sec + 1)
                v[k++] = oc->lat[i];
        if (k == 0)
            continue;
        qsort(v, k, sizeof(double), cmp_double);
        l->sec[l->nseconds].second = sec;
        l->sec[l->nseconds].n = k;
        l->sec[l->nseconds].p50 = b_quantile_sorted(v, k, 0.5);
        l->sec[l->nseconds].p99 = b_quantile_sorted(v, k, 0.99);
        l->nseconds++;
    }
    free(v);
}

static void latency_figures(struct outc *oc, const char *page, const char *page_warm,
                            struct b_phase *ph)
{
    struct b_latency *l = &ph->lat;
    struct b_hist h, h0;

    l->n = oc->n;
    l->warmup = oc->warmup;
    by_second(oc, l);
    if (oc->n) {
        qsort(oc->lat, oc->n, sizeof(double), cmp_double);
        qsort(oc->lat_prod, oc->n, sizeof(double), cmp_double);
        l->p50 = b_quantile_sorted(oc->lat, oc->n, 0.50);
        l->p90 = b_quantile_sorted(oc->lat, oc->n, 0.90);
        l->p99 = b_quantile_sorted(oc->lat, oc->n, 0.99);
        l->p999 = b_quantile_sorted(oc->lat, oc->n, 0.999);
        l->max = oc->lat[oc->n - 1];
        l->produce_p50 = b_quantile_sorted(oc->lat_prod, oc->n, 0.50);
        l->produce_p99 = b_quantile_sorted(oc->lat_prod, oc->n, 0.99);
    }
    l->clvd_within_25ms = -1;
    if (!oc->live)
        return; /* event times a year back: clvd's histogram says nothing */
    /* clvd's histogram since the end of the warm-up (the first page published after it) */
    if (b_hist_read(page, "clvd_processing_latency_seconds", &h) != 0)
        return;
    if (b_hist_read(page_warm, "clvd_processing_latency_seconds", &h0) == 0)
        b_hist_sub(&h, &h0);
    l->clvd_n = b_hist_count(&h);
    l->clvd_p50 = b_hist_quantile(&h, 0.50) * 1000;
    l->clvd_p99 = b_hist_quantile(&h, 0.99) * 1000;
    l->clvd_within_25ms = b_hist_share(&h, 0.025);
}

/* More events than a year of the shop yields: a longer period (same
 * customers, more of their activity), until a dry run of the generator
 * (a few million events a second) reaches the count. */
static int stream_long_enough(struct loadgen_params *lp, uint64_t events, double max_days,
                              char *err, size_t errlen)
{
    struct loadgen_event ev;
    struct loadgen *g;

    while (events > 0) {
        uint64_t n = 0;
        int r = 1;
        if (loadgen_new(&g, lp, err, errlen) != 0)
            return -1;
        while (n < events && (r = loadgen_next(g, &ev)) == 1)
            n++;
        loadgen_free(g);
        if (r < 0) {
            clv_seterr(err, errlen, "loadgen: out of memory");
            return -1;
        }
        if (n >= events || lp->days * 1.5 > max_days)
            break;
        lp->days *= 1.5;
    }
    return 0;
}

/* ---- the clvd instances --------------------------------------------------------------- */

/* --instances: processes with the same config (group clvd-bench), each its
 * own metrics port, config file and log. */
struct clvds {
    int n;
    pid_t pid[B_MAX_INSTANCES];
    int port[B_MAX_INSTANCES];
    char cfg[B_MAX_INSTANCES][B_PATHLEN + 16];
    char log[B_MAX_INSTANCES][B_PATHLEN + 16];
};

static int clvds_start(struct clvds *cv, const struct b_opts *o, const char *dir,
                       const char *bootstraps, const struct b_redis *redis, char *err,
                       size_t errlen)
{
    for (cv->n = 0; cv->n < o->instances; cv->n++) {
        int i = cv->n;
        char *argv[] = {(char *)o->clvd, "-c", cv->cfg[i], NULL};
        if (i == 0) {
            snprintf(cv->cfg[i], sizeof(cv->cfg[i]), "%s/clvd.yaml", dir);
            snprintf(cv->log[i], sizeof(cv->log[i]), "%s/clvd.log", dir);
        } else {
            snprintf(cv->cfg[i], sizeof(cv->cfg[i]), "%s/clvd-%d.yaml", dir, i + 1);
            snprintf(cv->log[i], sizeof(cv->log[i]), "%s/clvd-%d.log", dir, i + 1);
        }
        cv->port[i] = b_free_port();
        if (cv->port[i] <= 0) {
            clv_seterr(err, errlen, "no free loopback port for clvd's metrics");
            return -1;
        }
        if (write_config(o, cv->cfg[i], bootstraps, redis, cv->port[i], err, errlen) != 0 ||
            b_spawn(argv, cv->log[i], &cv->pid[i], err, errlen) != 0)
            return -1;
    }
    return 0;
}

/* -1 (with its log's tail) if an instance has exited. */
static int clvds_check(struct clvds *cv, char *err, size_t errlen)
{
    for (int i = 0; i < cv->n; i++)
        if (!b_alive(cv->pid[i])) {
            cv->pid[i] = 0;
            b_tail(cv->log[i], 3000, "clvd log");
            clv_seterr(err, errlen, "clvd exited during the run (log: %s)", cv->log[i]);
            return -1;
        }
    return 0;
}

static double clvds_cpu(const struct clvds *cv)
{
    double sum = 0;

    for (int i = 0; i < cv->n; i++) {
        double c = b_proc_cpu(cv->pid[i]);
        sum += c > 0 ? c : 0;
    }
    return sum;
}

/* Peak and current RSS (the largest instance's, and the sum), then SIGTERM. */
static void clvds_stop(struct clvds *cv, struct b_phase *ph)
{
    for (int i = 0; i < cv->n; i++) {
        long hwm, rss;
        if (cv->pid[i] <= 0)
            continue;
        hwm = b_proc_status_kb(cv->pid[i], "VmHWM:");
        rss = b_proc_status_kb(cv->pid[i], "VmRSS:");
        ph->clvd_hwm_kb = hwm > ph->clvd_hwm_kb ? hwm : ph->clvd_hwm_kb;
        ph->clvd_rss_kb = rss > ph->clvd_rss_kb ? rss : ph->clvd_rss_kb;
        ph->clvd_hwm_sum_kb += hwm > 0 ? hwm : 0;
        ph->clvd_rss_sum_kb += rss > 0 ? rss : 0;
        kill(cv->pid[i], SIGTERM); /* all at once: no rebalance on the way out */
    }
    for (int i = 0; i < cv->n; i++) {
        int code;
        if (cv->pid[i] <= 0)
            continue;
        code = b_stop(cv->pid[i], 15);
        if (ph->clvd_exit <= 0)
            ph->clvd_exit = code;
        cv->pid[i] = 0;
    }
}

/* When the first instance was assigned its partitions (its log line
 * "kafka: assigned"), on the monotonic clock; -1 if none logged it.  A
 * preloaded run is timed from there.  The log's millisecond is truncated,
 * so this errs early: against clvd. */
static double assigned_at(const struct clvds *cv)
{
    clv_ms first = -1;
    char line[1024];

    for (int i = 0; i < cv->n; i++) {
        FILE *f = fopen(cv->log[i], "r");
        if (f == NULL)
            continue;
        while (fgets(line, sizeof(line), f)) {
            const char *sp = strchr(line, ' ');
            clv_ms ms;
            if (strstr(line, " kafka: assigned ") == NULL || sp == NULL)
                continue;
            if (rfc3339_parse(line, (size_t)(sp - line), &ms) == 0 && (first < 0 || ms < first))
                first = ms;
            break;
        }
        fclose(f);
    }
    if (first < 0)
        return -1;
    return b_mono() - (double)(clv_now_ms() - first) / 1000.0;
}

/* ---- the run -------------------------------------------------------------------------- */

struct scrape {
    uint64_t consumed[B_NINPUT], consumed_total, applied, duplicates, rejected, conflicts;
    uint64_t out_produced, out_delivered, commands, round_trips;
    int has_updates;             /* clvd exports its successful compare-and-sets */
    uint64_t updates;            /* clvd_customer_updates_total, when it does */
    uint64_t calls;              /* clvd_apply_calls_total: apply.lua calls (0 if not exported) */
    uint64_t groups;             /* clvd_apply_groups_total: their shard groups (0 if not) */
    uint64_t assigned, redis_up; /* partitions assigned, instances connected to Redis */
};

/* Every instance's /metrics page, one after the other in `page`: a counter
 * read from it (b_metric sums every sample) is the sum over the instances. */
static int fetch_pages(const struct clvds *cv, struct clv_sbuf *page)
{
    struct clv_sbuf one;
    int rc = 0;

    if (cv->n == 1)
        return b_http_get(cv->port[0], "/metrics", page) == 200 && page->len > 0 ? 0 : -1;
    sbuf_init(&one);
    sbuf_reset(page);
    for (int i = 0; i < cv->n && rc == 0; i++) {
        if (b_http_get(cv->port[i], "/metrics", &one) != 200 || one.len == 0)
            rc = -1;
        else {
            sbuf_append(page, one.buf, one.len);
            sbuf_append(page, "\n", 1);
        }
    }
    sbuf_append(page, "", 1);
    page->len--; /* NUL-terminated, as b_http_get leaves it */
    sbuf_free(&one);
    return rc;
}

static int scrape(const struct clvds *cv, struct clv_sbuf *page, struct scrape *s)
{
    char label[64];

    if (fetch_pages(cv, page) != 0)
        return -1;
    memset(s, 0, sizeof(*s));
    for (int t = 0; t < B_NINPUT; t++) {
        snprintf(label, sizeof(label), "topic=\"%s\"", b_input_topics[t]);
        s->consumed[t] = (uint64_t)b_metric(page->buf, "clvd_messages_consumed_total", label);
        s->consumed_total += s->consumed[t];
    }
    s->applied = (uint64_t)b_metric(page->buf, "clvd_events_applied_total", NULL);
    s->duplicates = (uint64_t)b_metric(page->buf, "clvd_events_duplicate_total", NULL);
    s->rejected = (uint64_t)b_metric(page->buf, "clvd_messages_rejected_total", NULL);
    s->conflicts = (uint64_t)b_metric(page->buf, "clvd_cas_conflicts_total", NULL);
    s->out_produced = (uint64_t)b_metric(page->buf, "clvd_outputs_produced_total", NULL);
    s->out_delivered = (uint64_t)b_metric(page->buf, "clvd_outputs_delivered_total", NULL);
    s->commands = (uint64_t)b_metric(page->buf, "clvd_redis_commands_total", NULL);
    s->round_trips = (uint64_t)b_metric(page->buf, "clvd_redis_round_trips_total", NULL);
    s->has_updates = b_metric_has(page->buf, UPDATES_METRIC);
    s->updates = (uint64_t)b_metric(page->buf, UPDATES_METRIC, NULL);
    s->calls = (uint64_t)b_metric(page->buf, CALLS_METRIC, NULL);
    s->groups = (uint64_t)b_metric(page->buf, GROUPS_METRIC, NULL);
    s->assigned = (uint64_t)b_metric(page->buf, "clvd_kafka_assigned_partitions", NULL);
    s->redis_up = (uint64_t)b_metric(page->buf, "clvd_redis_up", NULL);
    return 0;
}

/* One instance: healthy (/healthz: assigned and Redis up).  More: the group
 * has settled, every input partition assigned once over the instances (one
 * may have none) and every instance connected to Redis, on two pages a
 * second apart (clvd publishes once a second). */
static int wait_group(struct clvds *cv, int partitions, double timeout, char *err, size_t errlen)
{
    double deadline = b_mono() + timeout;
    struct clv_sbuf page;
    struct scrape s;
    int stable = 0, rc = -1;

    if (cv->n == 1)
        return wait_ready(cv->port[0], cv->pid[0], cv->log[0], timeout, err, errlen);
    sbuf_init(&page);
    while (b_mono() < deadline && !b_interrupted()) {
        if (clvds_check(cv, err, errlen) != 0)
            goto out;
        if (scrape(cv, &page, &s) == 0 && s.assigned == (uint64_t)(B_NINPUT * partitions) &&
            s.redis_up == (uint64_t)cv->n)
            stable++;
        else
            stable = 0;
        if (stable == 2) {
            rc = 0;
            goto out;
        }
        b_sleep(1.1);
    }
    clv_seterr(err, errlen, "%s",
               b_interrupted() ? "interrupted"
                               : "the clvd instances' consumer group did not settle in time");
out:
    sbuf_free(&page);
    return rc;
}

/* Start the clvd instances and wait until their group has settled. */
static int clvds_start_settled(struct clvds *cv, const struct b_opts *o, const char *dir,
                               const char *bootstraps, const struct b_redis *redis, char *err,
                               size_t errlen)
{
    if (clvds_start(cv, o, dir, bootstraps, redis, err, errlen) != 0)
        return -1;
    return wait_group(cv, o->partitions, 60, err, errlen);
}

static uint64_t produced_total(struct prod *p)
{
    uint64_t n = 0;

    for (int t = 0; t < B_NINPUT; t++)
        n += atomic_load(&p->produced[t]);
    return n;
}

static int redis_start(const struct b_opts *o, const char *dir, struct b_redis *redis, char *err,
                       size_t errlen)
{
    if (o->redis_masters > 0)
        return b_redis_cluster_start(redis, o->redis_server, o->redis_cli, o->redis_masters, dir,
                                     err, errlen);
    return b_redis_start(redis, o->redis_server, dir, err, errlen);
}

int b_run_phase(const struct b_opts *opts, const char *name, double rate, uint64_t events,
                int partitions, const char *perf, struct b_phase *ph, char *err, size_t errlen)
{
    struct b_opts local = *opts;
    const struct b_opts *o = &local;
    char dir[B_PATHLEN] = "", bootstraps[256];
    struct b_redis redis;
    struct rnodes rn;
    struct clvds *cv = calloc(1, sizeof(*cv));
    rd_kafka_t *host = NULL, *out_rk = NULL;
    rd_kafka_mock_cluster_t *mc = NULL;
    struct prod *pr = calloc(1, sizeof(*pr));
    struct outc *oc = calloc(1, sizeof(*oc));
    struct loadgen_params lp;
    pthread_t prod_thread, out_thread;
    int prod_running = 0, out_running = 0, status = -1;
    pid_t perf_pid = 0, perf_redis = 0;
    char perf_redis_path[B_PATHLEN + 16];
    struct clv_sbuf page, page_warm;
    struct scrape s0, s;
    struct b_cmdstats cs0, cs1;
    uint64_t total_cmds0 = 0, total_cmds1 = 0, last_applied = 0, produced;
    clv_ms load_next;
    double cpu_clvd0, cpu_redis0, cpu_self0, sys0 = 0, load_prev, last_progress, next_scrape = 0,
                                             next_line = 0;
    double deadline, t_start, t_go = 0; /* t_go: when clvd started, if preloaded */
    int preload = o->preload && rate == 0;

    memset(&redis, 0, sizeof(redis));
    memset(&rn, 0, sizeof(rn));
    memset(ph, 0, sizeof(*ph));
    memset(&s0, 0, sizeof(s0));
    memset(&s, 0, sizeof(s));
    ph->name = name;
    ph->rate_target = rate;
    ph->preloaded = preload;
    ph->instances = o->instances;
    ph->redis_masters = o->redis_masters;
    ph->clvd_exit = -1;
    sbuf_init(&page);
    sbuf_init(&page_warm);
    if (pr == NULL || oc == NULL || cv == NULL) {
        clv_seterr(err, errlen, "out of memory");
        goto out;
    }
    if (b_tmpdir(o->workdir, dir, sizeof(dir), err, errlen) != 0)
        goto out;

    /* the workload */
    loadgen_params_default(&lp);
    lp.seed = o->seed;
    lp.customers = o->customers;
    memcpy(lp.mix, o->mix, sizeof(lp.mix));
    if (o->acquisition_days > 0)
        lp.acquisition_days = o->acquisition_days;
    /* history: the period ends an hour ago, so it cannot reach back past 1970 */
    if (stream_long_enough(
            &lp, events,
            o->time_mode == B_TIME_HISTORY ? (double)(clv_now_ms() / CLV_MS_PER_DAY) - 1 : 36500,
            err, errlen) != 0)
        goto out;
    lp.start = clv_now_ms() - (clv_ms)(lp.days * CLV_MS_PER_DAY) - CLV_MS_PER_HOUR;
    if (lp.start < 0)
        lp.start = 0; /* live timestamps: the generator's own times are not used */
    pr->limit = events ? events : UINT64_MAX;
    if (partitions <= 0)
        partitions =
            preload ? preload_partitions(&lp, pr->limit, err, errlen) : B_PARTITIONS_DEFAULT;
    if (partitions <= 0)
        goto out;
    local.partitions = ph->partitions = partitions;
    if (loadgen_new(&pr->lg, &lp, err, errlen) != 0)
        goto out;
    pr->o = o;
    pr->rate = rate;
    pr->preload = preload;
    if (rate > 0 && !o->quiet)
        fprintf(stderr, "  %s: generating the stream ahead\n", name);
    if (rate > 0 && pregenerate(pr, err, errlen) != 0)
        goto out;

    /* Redis, Kafka, clvd */
    if (redis_start(o, dir, &redis, err, errlen) != 0 ||
        rnodes_connect(&rn, &redis, o, err, errlen))
        goto out;
    if (mock_start(o, &host, &mc, bootstraps, sizeof(bootstraps), err, errlen) != 0)
        goto out;
    if (!preload && clvds_start_settled(cv, o, dir, bootstraps, &redis, err, errlen) != 0)
        goto out;

    /* the output reader, then the baselines */
    oc->live = o->time_mode == B_TIME_LIVE;
    if (getenv("CLVD_BENCH_LATENCY_DUMP"))
        oc->dump = fopen(getenv("CLVD_BENCH_LATENCY_DUMP"), "w");
    oc->partitions = o->partitions;
    oc->nsentinels = B_NINPUT * o->partitions;
    oc->seen = calloc((size_t)oc->nsentinels, 1);
    if (oc->seen == NULL) {
        clv_seterr(err, errlen, "out of memory");
        goto out;
    }
    out_rk = output_consumer(o, bootstraps, err, errlen);
    if (out_rk == NULL)
        goto out;
    oc->rk = out_rk;
    if (pthread_create(&out_thread, NULL, output_main, oc) != 0) {
        clv_seterr(err, errlen, "cannot start the output thread");
        goto out;
    }
    out_running = 1;
    pr->rk = input_producer(o, bootstraps, pr, err, errlen);
    if (pr->rk == NULL)
        goto out;
    if (preload) {
        /* clvd starts after the baselines, its counters from zero (s0) */
        if (preload_stream(pr, name, err, errlen) != 0)
            goto out;
    } else {
        b_sleep(1.5); /* clvd publishes /metrics once a second: a settled baseline */
        if (scrape(cv, &page, &s0) != 0) {
            clv_seterr(err, errlen, "cannot read clvd's /metrics on port %d", cv->port[0]);
            goto out;
        }
    }
    ph->mem_base = info_sum(&rn, "memory", "used_memory");
    total_cmds0 = info_sum(&rn, "stats", "total_commands_processed");
    cmdstats_sum(&rn, &cs0);
    s = s0;
    cpu_clvd0 = clvds_cpu(cv);
    cpu_redis0 = b_redis_cpu(&redis);
    cpu_self0 = b_self_cpu();
    sys0 = b_system_busy();
    t_go = b_mono();
    if (preload && clvds_start_settled(cv, o, dir, bootstraps, &redis, err, errlen) != 0)
        goto out;
    if (perf) {
        /* the first instance and the first Redis node */
        snprintf(perf_redis_path, sizeof(perf_redis_path), "%s.redis", perf);
        perf_pid = perf_start(perf, cv->pid[0]);
        perf_redis = perf_start(perf_redis_path, b_redis_pid(&redis, 0));
    }

    /* every client is connected by now: the mock's side of each
     * connection behaves like a real broker's from here on */
    b_nodelay_sockets();

    /* go */
    oc->from_ms = clv_now_ms() + (clv_ms)(o->warmup_seconds * 1000);
    pr->from_ms = oc->from_ms;
    if (!preload) {
        if (pthread_create(&prod_thread, NULL, producer_main, pr) != 0) {
            clv_seterr(err, errlen, "cannot start the producer thread");
            goto out;
        }
        prod_running = 1;
    }
    last_progress = b_mono();
    load_next = oc->from_ms + 1000;
    load_prev = b_system_busy() - clvds_cpu(cv) - b_redis_cpu(&redis) - b_self_cpu();
    for (;;) {
        double now = b_mono();
        if (clv_now_ms() >= load_next && ph->nother < B_MAX_SECONDS) {
            /* what the rest of the machine took, second by second */
            double others = b_system_busy() - clvds_cpu(cv) - b_redis_cpu(&redis) - b_self_cpu();
            ph->other[ph->nother++] = others - load_prev > 0 ? others - load_prev : 0;
            load_prev = others;
            load_next += 1000;
        }
        if (clvds_check(cv, err, errlen) != 0)
            goto out;
        if (b_interrupted()) {
            clv_seterr(err, errlen, "interrupted");
            goto out;
        }
        if (now >= next_scrape && scrape(cv, &page, &s) == 0) {
            /* keep the first page clvd published after the warm-up */
            if (page_warm.len == 0 && clv_now_ms() >= oc->from_ms + 1100)
                sbuf_append(&page_warm, page.buf, page.len + 1);
            for (int t = 0; t < B_NINPUT; t++)
                atomic_store(&pr->consumed[t], s.consumed[t]);
            if (s.applied != last_applied) {
                last_applied = s.applied;
                last_progress = now;
            }
            next_scrape = now + 0.2;
        }
        if (!o->quiet && now >= next_line && atomic_load(&pr->started)) {
            double el = now - (preload ? t_go : pr->t_first);
            fprintf(stderr, "\r  %s: %6.1f s  produced %10llu  applied %10llu  (%.0f/s)   ", name,
                    el, (unsigned long long)produced_total(pr),
                    (unsigned long long)(s.applied - s0.applied),
                    el > 0 ? (double)(s.applied - s0.applied) / el : 0.0);
            next_line = now + 1;
        }
        if (atomic_load(&pr->done) && pr->rc != 0) {
            clv_seterr(err, errlen, "producer: %s", pr->err);
            goto out;
        }
        if (atomic_load(&pr->done) && atomic_load(&oc->sentinels) == oc->nsentinels)
            break;
        if (now - last_progress > STALL_SECONDS) {
            b_tail(cv->log[0], 3000, "clvd log");
            clv_seterr(err, errlen, "no progress for %.0f s (applied %llu of %llu produced)",
                       STALL_SECONDS, (unsigned long long)(s.applied - s0.applied),
                       (unsigned long long)produced_total(pr));
            goto out;
        }
        b_sleep(0.01);
    }
    /* the measured window ends with the last end marker */
    ph->cpu_clvd = clvds_cpu(cv) - cpu_clvd0;
    ph->cpu_redis = b_redis_cpu(&redis) - cpu_redis0;
    ph->cpu_bench = b_self_cpu() - cpu_self0;
    ph->cpu_other = b_system_busy() - sys0 - ph->cpu_clvd - ph->cpu_redis - ph->cpu_bench;
    if (ph->cpu_other < 0)
        ph->cpu_other = 0; /* clock-tick rounding */
    perf_stop(perf_pid);
    perf_stop(perf_redis);
    perf_pid = perf_redis = 0;
    if (!o->quiet)
        fprintf(stderr, "\n");
    produced = produced_total(pr);
    ph->produced = produced;
    ph->sentinels = (uint64_t)oc->nsentinels;
    t_start = preload ? assigned_at(cv) : pr->t_first;
    if (t_start < 0) {
        clv_seterr(err, errlen, "no \"kafka: assigned\" line in clvd's log (%s)", cv->log[0]);
        goto out;
    }
    ph->seconds = oc->t_end - t_start;
    ph->events_per_s = ph->seconds > 0 ? (double)produced / ph->seconds : 0;
    ph->produce_seconds = pr->t_last - pr->t_first;
    ph->throttled_s = pr->throttled;
    ph->lat.input_p50 = dr_quantile(pr, 0.50);
    ph->lat.input_p99 = dr_quantile(pr, 0.99);
    ph->window = pr->window;

    /* let clvd finish: counters (summed over the instances), deliveries, outbox trims */
    deadline = b_mono() + 30;
    while (b_mono() < deadline && !b_interrupted()) {
        uint64_t recv = 0;
        for (int t = 0; t < B_NOUTPUT; t++)
            recv += atomic_load(&oc->received[t]);
        if (scrape(cv, &page, &s) == 0 &&
            s.applied + s.duplicates + s.rejected - s0.applied - s0.duplicates - s0.rejected >=
                produced &&
            s.out_delivered == s.out_produced && recv >= s.out_delivered - s0.out_delivered &&
            shard_sum(&rn, "HLEN", o->shards, 1) == 0)
            break;
        b_sleep(0.25);
    }
    b_sleep(1.2); /* one more page: the settled counters */
    scrape(cv, &page, &s);
    total_cmds1 = info_sum(&rn, "stats", "total_commands_processed");
    cmdstats_sum(&rn, &cs1);
    b_cmdstats_delta(&cs0, &cs1, &ph->cmds);
    ph->server_commands = total_cmds1 - total_cmds0;
    ph->consumed = s.consumed_total - s0.consumed_total;
    ph->applied = s.applied - s0.applied;
    ph->duplicates = s.duplicates - s0.duplicates;
    ph->rejected = s.rejected - s0.rejected;
    ph->conflicts = s.conflicts - s0.conflicts;
    ph->dropped = produced > ph->consumed ? produced - ph->consumed : 0;
    ph->outputs_delivered = s.out_delivered - s0.out_delivered;
    for (int t = 0; t < B_NOUTPUT; t++)
        ph->outputs_received += atomic_load(&oc->received[t]);
    ph->clvd_commands = s.commands - s0.commands;
    ph->clvd_round_trips = s.round_trips - s0.round_trips;
    /* customer updates: clvd's own counter if it has one, else inferred
     * from Redis (before apply.lua took several customers per call, each
     * successful call did one ZADD or ZREM) */
    ph->apply_calls =
        s.has_updates ? s.updates - s0.updates
                      : b_cmdstats_calls(&ph->cmds, "zadd") + b_cmdstats_calls(&ph->cmds, "zrem");
    ph->script_calls = s.calls - s0.calls;
    ph->per_call = ph->script_calls ? (double)ph->apply_calls / (double)ph->script_calls : 1.0;
    /* before calls spanned shards, a call was one group */
    ph->per_group = s.groups > s0.groups ? (double)ph->apply_calls / (double)(s.groups - s0.groups)
                                         : ph->per_call;
    ph->events_per_update = ph->apply_calls ? (double)ph->applied / (double)ph->apply_calls : 0;

    /* memory */
    ph->mem_after = info_sum(&rn, "memory", "used_memory");
    ph->mem_peak = info_sum(&rn, "memory", "used_memory_peak");
    ph->dbsize = dbsize_sum(&rn);
    ph->outbox_entries = shard_sum(&rn, "HLEN", o->shards, 1);
    ph->due_entries = shard_sum(&rn, "ZCARD", o->shards, 0);
    measure_states(&rn, ph);
    ph->mem_due = shard_memory(&rn, o->shards, keys_due);
    ph->mem_stats = shard_memory(&rn, o->shards, keys_stats);
    ph->mem_outbox = shard_memory(&rn, o->shards, keys_outbox);
    ph->bytes_per_customer =
        ph->customers_stored ? (double)(ph->mem_after - ph->mem_base) / (double)ph->customers_stored
                             : 0;

    /* clvd's memory, then stop it */
    clvds_stop(cv, ph);

    atomic_store(&oc->stop, 1);
    pthread_join(out_thread, NULL);
    out_running = 0;
    ph->output_bytes_avg = oc->customer_msgs ? (double)oc->bytes / (double)oc->customer_msgs : 0;
    latency_figures(oc, page.buf, page_warm.len ? page_warm.buf : NULL, ph);
    if (preload)
        memset(&ph->lat, 0, sizeof(ph->lat)); /* every input waited since the preload */
    if (ph->dropped > 0) {
        clv_seterr(err, errlen,
                   "%llu input message(s) produced but never consumed: the mock cluster dropped "
                   "them (use more --partitions)",
                   (unsigned long long)ph->dropped);
        goto out;
    }
    status = 0;
out:
    if (perf_pid > 0)
        perf_stop(perf_pid);
    if (perf_redis > 0)
        perf_stop(perf_redis);
    if (prod_running) {
        atomic_store(&pr->stop, 1);
        pthread_join(prod_thread, NULL);
    }
    if (out_running) {
        atomic_store(&oc->stop, 1);
        pthread_join(out_thread, NULL);
    }
    if (cv)
        clvds_stop(cv, ph);
    if (out_rk) {
        rd_kafka_consumer_close(out_rk);
        rd_kafka_destroy(out_rk);
    }
    if (pr && pr->rk)
        rd_kafka_destroy(pr->rk);
    if (mc)
        rd_kafka_mock_cluster_destroy(mc);
    if (host)
        rd_kafka_destroy(host);
    rnodes_free(&rn);
    b_redis_stop(&redis);
    if (pr && pr->lg)
        loadgen_free(pr->lg);
    if (pr)
        free(pr->pre);
    if (oc) {
        if (oc->dump)
            fclose(oc->dump);
        free(oc->seen);
        free(oc->lat);
        free(oc->lat_prod);
        free(oc->when);
    }
    free(pr);
    free(oc);
    free(cv);
    sbuf_free(&page);
    sbuf_free(&page_warm);
    if (dir[0]) {
        if (o->keep || status != 0)
            fprintf(stderr, "bench: %s kept in %s\n", name, dir);
        else
            b_rmtree(dir);
    }
    return status;
}
