/* metrics.c -- Prometheus text exposition and the libmicrohttpd endpoint; see
 * metrics.h. */
#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "producer.h"
#include "state.h"

/* ---- histograms --------------------------------------------------------------- */

static const double latency_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.015,
                                        0.025,  0.05,  0.1,    0.25,  0.5,  1,
                                        2.5,    5,     10,     30,    60,   300};
static const double redis_bounds[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                      0.025,   0.05,   0.1,     0.25,   0.5,   1,      2.5};

int histogram_init(struct clv_histogram *h, const double *bounds, int nbounds)
{
    if (nbounds < 1 || nbounds > CLV_HIST_MAX_BOUNDS)
        return -1;
    for (int i = 0; i < nbounds; i++)
        if (!isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1]))
            return -1;
    memset(h, 0, sizeof(*h));
    h->nbounds = nbounds;
    memcpy(h->bounds, bounds, sizeof(bounds[0]) * (size_t)nbounds);
    return 0;
}

void histogram_init_latency(struct clv_histogram *h)
{
    histogram_init(h, latency_bounds, (int)CLV_ARRAY_LEN(latency_bounds));
}

void histogram_init_redis(struct clv_histogram *h)
{
    histogram_init(h, redis_bounds, (int)CLV_ARRAY_LEN(redis_bounds));
}

void histogram_observe(struct clv_histogram *h, double seconds)
{
    int lo = 0, hi = h->nbounds;

    if (isnan(seconds))
        return;
    if (seconds < 0)
        seconds = 0;
    /* first bound >= seconds (le is "less or equal"), nbounds if none */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (h->bounds[mid] < seconds)
            lo = mid + 1;
        else
            hi = mid;
    }
    h->buckets[lo]++;
    h->count++;
    if (isfinite(seconds))
        h->sum += seconds;
}

int histogram_merge(struct clv_histogram *dst, const struct clv_histogram *src)
{
    if (dst->nbounds != src->nbounds ||
        memcmp(dst->bounds, src->bounds, sizeof(dst->bounds[0]) * (size_t)dst->nbounds) != 0)
        return -1;
    for (int i = 0; i <= dst->nbounds; i++)
        dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    dst->sum += src->sum;
    return 0;
}

double histogram_quantile(const struct clv_histogram *h, double q)
{
    double rank, below = 0;

    if (h->count == 0)
        return 0;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    rank = q * (double)h->count;
    for (int i = 0; i < h->nbounds; i++) {
        double n = (double)h->buckets[i];
        if (n > 0 && below + n >= rank) {
            double lower = i == 0 ? 0 : h->bounds[i - 1];
            return lower + (h->bounds[i] - lower) * (rank - below) / n;
        }
        below += n;
    }
    return h->bounds[h->nbounds - 1];
}

/* ---- the counters --------------------------------------------------------------- */

void metrics_init(struct clv_metrics *m, const struct clv_kafka_topics *topics, clv_ms start_time)
{
    const char *in[CLV_INPUT_TOPICS] = {topics->purchases, topics->logins, topics->visits};

    memset(m, 0, sizeof(*m));
    m->start_time = start_time;
    for (int i = 0; i < CLV_INPUT_TOPICS; i++)
        snprintf(m->topic_in[i], sizeof(m->topic_in[i]), "%s", in[i] ? in[i] : "");
    for (int i = 0; i < CLV_OUT_COUNT; i++) {
        const char *name = output_topic_name(topics, (enum clv_out_topic)i);
        snprintf(m->topic_out[i], sizeof(m->topic_out[i]), "%s", name ? name : "");
    }
    histogram_init_latency(&m->latency);
    histogram_init_redis(&m->redis_rtt);
}

void metrics_free(struct clv_metrics *m)
{
    free(m->lag);
    m->lag = NULL;
    m->nlag = m->lag_cap = 0;
}

void metrics_count_rejected(struct clv_metrics *m, const char *reason)
{
    for (int i = 0; i < m->nrejected; i++)
        if (strcmp(m->rejected[i].reason, reason) == 0) {
            m->rejected[i].n++;
            return;
        }
    if (m->nrejected == CLV_METRICS_MAX_REASONS || strlen(reason) >= CLV_METRICS_REASON_LEN ||
        strcmp(reason, "other") == 0) {
        m->rejected_other++;
        return;
    }
    snprintf(m->rejected[m->nrejected].reason, sizeof(m->rejected[0].reason), "%s", reason);
    m->rejected[m->nrejected++].n = 1;
}

void metrics_add_batch(struct clv_metrics *m, const struct clv_batch_stats *s)
{
    m->applied += s->applied;
    m->duplicates += s->duplicates;
    m->conflicts += s->conflicts;
    m->customer_updates += s->updates;
    m->apply_calls += s->calls;
    m->apply_groups += s->groups;
    m->cache_hits += s->cache_hits;
    m->state_reads += s->state_reads;
    m->tier_changes += s->tier_changes;
    for (int f = 0; f <= CLV_STAGE_COUNT; f++)
        for (int t = 0; t < CLV_STAGE_COUNT; t++)
            m->transitions[f][t] += s->transitions[f][t];
}

int metrics_set_alert(struct clv_metrics *m, const char *name, int firing)
{
    for (int i = 0; i < m->nalerts; i++)
        if (strcmp(m->alerts[i].name, name) == 0) {
            m->alerts[i].firing = firing != 0;
            return 0;
        }
    if (m->nalerts == CLV_MAX_ALERTS)
        return -1;
    snprintf(m->alerts[m->nalerts].name, sizeof(m->alerts[0].name), "%s", name);
    m->alerts[m->nalerts++].firing = firing != 0;
    return 0;
}

void metrics_set_customers(struct clv_metrics *m, const int64_t counts[CLV_STAGE_COUNT])
{
    memcpy(m->customers, counts, sizeof(m->customers));
    m->customers_valid = 1;
}

void metrics_lag_reset(struct clv_metrics *m)
{
    m->nlag = 0;
}

void metrics_lag_set(struct clv_metrics *m, int topic, int32_t partition, int64_t lag)
{
    for (int i = 0; i < m->nlag; i++)
        if (m->lag[i].topic == topic && m->lag[i].partition == partition) {
            m->lag[i].lag = lag;
            return;
        }
    if (m->nlag == m->lag_cap) {
        int ncap = m->lag_cap ? m->lag_cap * 2 : 64;
        struct clv_metrics_lag *n = realloc(m->lag, sizeof(*n) * (size_t)ncap);
        if (n == NULL)
            abort(); /* as sbuf: a few kilobytes or a restart */
        m->lag = n;
        m->lag_cap = ncap;
    }
    m->lag[m->nlag++] = (struct clv_metrics_lag){topic, partition, lag};
}

void metrics_collect_consumer(struct clv_metrics *m, const struct clv_consumer *c)
{
    m->kafka_assigned = c->assignment != NULL;
    m->kafka_assigned_partitions = c->assignment ? c->assignment->cnt : 0;
    m->held_events = (int64_t)c->nheld;
    m->fetch_wakeups = atomic_load_explicit(&c->wake.wakes, memory_order_relaxed);
    m->watermark = c->cfg != NULL && c->cfg->clock.mode == CLV_CLOCK_EVENT ? c->watermark : 0;
    metrics_lag_reset(m);
    if (c->rk == NULL)
        return;
    for (int t = 0; t < CLV_INPUT_TOPICS; t++) {
        for (int p = 0; p < c->nparts[t]; p++) {
            const struct clv_partition *pt = &c->parts[t][p];
            int64_t lo = -1, hi = -1, lag;
            if (!pt->assigned)
                continue;
            /* cached from the last fetch response: no broker round trip */
            if (rd_kafka_get_watermark_offsets(c->rk, m->topic_in[t], p, &lo, &hi) !=
                    RD_KAFKA_RESP_ERR_NO_ERROR ||
                hi < 0)
                continue;
            if (pt->last_offset >= 0)
                lag = hi - (pt->last_offset + 1);
            else if (lo == hi)
                lag = 0; /* empty partition */
            else
                continue; /* nothing consumed since assignment: position unknown */
            metrics_lag_set(m, t, p, lag < 0 ? 0 : lag);
        }
    }
}

void metrics_collect_producer(struct clv_metrics *m, const struct clv_producer *p)
{
    memcpy(m->produced, p->produced, sizeof(m->produced));
    memcpy(m->delivered, p->delivered, sizeof(m->delivered));
    memcpy(m->failed, p->failed, sizeof(m->failed));
}

void metrics_collect_store(struct clv_metrics *m, const struct clv_store *st)
{
    m->redis_up = store_connected(st);
    m->redis_commands = st->commands;
    m->redis_round_trips = st->round_trips;
}

void metrics_add_store(struct clv_metrics *m, uint64_t commands, uint64_t round_trips, int up,
                       const struct clv_histogram *rtt)
{
    m->redis_up = m->redis_up && up;
    m->redis_commands += commands;
    m->redis_round_trips += round_trips;
    if (rtt)
        histogram_merge(&m->redis_rtt, rtt);
}

int metrics_healthy(const struct clv_metrics *m, char *reason, size_t reasonlen)
{
    const char *why = NULL;

    if (!m->redis_up)
        why = "redis: not connected";
    else if (!m->kafka_assigned)
        why = "kafka: no partition assignment";
    if (why == NULL)
        return 1;
    if (reason != NULL && reasonlen > 0)
        snprintf(reason, reasonlen, "%s", why);
    return 0;
}

/* ---- rendering ---------------------------------------------------------------- */

/* Integers as such, other values in the shortest "%g" form that reads back
 * as the same double. */
static void fmt_double(char *buf, size_t len, double v)
{
    if (isnan(v)) {
        snprintf(buf, len, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, len, "%s", v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (v == floor(v) && fabs(v) < 9007199254740992.0) { /* integral: no exponent */
        snprintf(buf, len, "%.0f", v);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

static void family(struct clv_sbuf *b, const char *name, const char *type, const char *help)
{
    /* help texts are literals here without backslashes or newlines */
    sbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A sample is written as begin, zero or more labels, then one end_*. */
static void begin(struct clv_sbuf *b, const char *name, const char *suffix, int *nlabels)
{
    sbuf_puts(b, name);
    if (suffix)
        sbuf_puts(b, suffix);
    *nlabels = 0;
}

static void label(struct clv_sbuf *b, int *nlabels, const char *key, const char *value)
{
    const char *s = value, *run = value;

    sbuf_puts(b, *nlabels ? "," : "{");
    sbuf_puts(b, key);
    sbuf_puts(b, "=\"");
    for (; *s; s++) {
        const char *esc = *s == '\\' ? "\\\\" : *s == '"' ? "\\\"" : *s == '\n' ? "\\n" : NULL;
        if (esc == NULL)
            continue;
        sbuf_append(b, run, (size_t)(s - run));
        sbuf_puts(b, esc);
        run = s + 1;
    }
    sbuf_append(b, run, (size_t)(s - run));
    sbuf_puts(b, "\"");
    (*nlabels)++;
}

static void end_u64(struct clv_sbuf *b, int nlabels, uint64_t v)
{
    sbuf_printf(b, "%s %llu\n", nlabels ? "}" : "", (unsigned long long)v);
}

static void end_i64(struct clv_sbuf *b, int nlabels, int64_t v)
{
    sbuf_printf(b, "%s %lld\n", nlabels ? "}" : "", (long long)v);
}

static void end_double(struct clv_sbuf *b, int nlabels, double v)
{
    char num[40];

    fmt_double(num, sizeof(num), v);
    sbuf_printf(b, "%s %s\n", nlabels ? "}" : "", num);
}

static void simple_u64(struct clv_sbuf *b, const char *name, const char *type, const char *help,
                       uint64_t v)
{
    int nl;

    family(b, name, type, help);
    begin(b, name, NULL, &nl);
    end_u64(b, nl, v);
}

static void simple_i64(struct clv_sbuf *b, const char *name, const char *help, int64_t v)
{
    int nl;

    family(b, name, "gauge", help);
    begin(b, name, NULL, &nl);
    end_i64(b, nl, v);
}

static void by_topic(struct clv_sbuf *b, const char *name, const char *help, const uint64_t *values,
                     const char (*topics)[CLV_METRICS_TOPIC_LEN], int n)
{
    int nl;

    family(b, name, "counter", help);
    for (int i = 0; i < n; i++) {
        begin(b, name, NULL, &nl);
        label(b, &nl, "topic", topics[i]);
        end_u64(b, nl, values[i]);
    }
}

static void histogram(struct clv_sbuf *b, const char *name, const char *help,
                      const struct clv_histogram *h)
{
    uint64_t cum = 0;
    char le[40];
    int nl;

    family(b, name, "histogram", help);
    for (int i = 0; i < h->nbounds; i++) {
        cum += h->buckets[i];
        fmt_double(le, sizeof(le), h->bounds[i]);
        begin(b, name, "_bucket", &nl);
        label(b, &nl, "le", le);
        end_u64(b, nl, cum);
    }
    begin(b, name, "_bucket", &nl);
    label(b, &nl, "le", "+Inf");
    end_u64(b, nl, h->count);
    begin(b, name, "_sum", &nl);
    end_double(b, nl, h->sum);
    begin(b, name, "_count", &nl);
    end_u64(b, nl, h->count);
}

static void render_input(const struct clv_metrics *m, struct clv_sbuf *b)
{
    int nl;

    by_topic(b, "clvd_messages_consumed_total", "Input messages fetched from Kafka, by topic.",
             m->consumed, m->topic_in, CLV_INPUT_TOPICS);
    simple_u64(b, "clvd_events_applied_total", "counter",
               "Input events applied to a customer's state in Redis.", m->applied);
    simple_u64(b, "clvd_events_duplicate_total", "counter",
               "Input events not applied again: event_id already applied within dedupe.window.",
               m->duplicates);
    family(b, "clvd_messages_rejected_total", "counter",
           "Input messages rejected to the dead-letter topic, by reason.");
    for (int i = 0; i < m->nrejected; i++) {
        begin(b, "clvd_messages_rejected_total", NULL, &nl);
        label(b, &nl, "reason", m->rejected[i].reason);
        end_u64(b, nl, m->rejected[i].n);
    }
    if (m->rejected_other > 0) {
        begin(b, "clvd_messages_rejected_total", NULL, &nl);
        label(b, &nl, "reason", "other");
        end_u64(b, nl, m->rejected_other);
    }
    simple_u64(b, "clvd_cas_conflicts_total", "counter",
               "Customer updates recomputed because the state changed since it was read.",
               m->conflicts);
    simple_u64(b, "clvd_customer_updates_total", "counter",
               "Customer states written to Redis (compare-and-set writes that went through).",
               m->customer_updates);
    simple_u64(b, "clvd_apply_calls_total", "counter",
               "apply.lua calls (each writes up to 64 of a batch's customers).", m->apply_calls);
    simple_u64(b, "clvd_apply_groups_total", "counter",
               "Shard groups in apply.lua calls (one per shard a call writes).", m->apply_groups);
    simple_u64(b, "clvd_state_cache_hits_total", "counter",
               "Customer states taken from the workers' state caches instead of Redis.",
               m->cache_hits);
    simple_u64(b, "clvd_state_reads_total", "counter",
               "Customer states read from Redis with MGET (cache misses and new customers).",
               m->state_reads);
}

static void render_lifecycle(const struct clv_metrics *m, struct clv_sbuf *b)
{
    int nl;

    family(b, "clvd_transitions_total", "counter",
           "Lifecycle stage transitions committed, by from and to stage (from=\"none\": first).");
    for (int f = 0; f <= CLV_STAGE_COUNT; f++) {
        for (int t = 0; t < CLV_STAGE_COUNT; t++) {
            if (f - 1 == t && m->transitions[f][t] == 0)
                continue;
            begin(b, "clvd_transitions_total", NULL, &nl);
            label(b, &nl, "from", f == 0 ? "none" : stage_name(f - 1));
            label(b, &nl, "to", stage_name(t));
            end_u64(b, nl, m->transitions[f][t]);
        }
    }
    simple_u64(b, "clvd_tier_changes_total", "counter",
               "Membership tier changes committed (upgrades and downgrades).", m->tier_changes);
    family(b, "clvd_customers", "gauge",
           "Customers per lifecycle stage, summed from the shard counters in Redis.");
    if (m->customers_valid) {
        for (int s = 0; s < CLV_STAGE_COUNT; s++) {
            begin(b, "clvd_customers", NULL, &nl);
            label(b, &nl, "stage", stage_name(s));
            end_i64(b, nl, m->customers[s]);
        }
    }
    family(b, "clvd_alert_firing", "gauge", "Alert rule state: 1 firing, 0 resolved.");
    for (int i = 0; i < m->nalerts; i++) {
        begin(b, "clvd_alert_firing", NULL, &nl);
        label(b, &nl, "alert", m->alerts[i].name);
        end_u64(b, nl, (uint64_t)(m->alerts[i].firing != 0));
    }
}

static void render_output(const struct clv_metrics *m, struct clv_sbuf *b)
{
    by_topic(b, "clvd_outputs_produced_total", "Output messages handed to the Kafka producer.",
             m->produced, m->topic_out, CLV_OUT_COUNT);
    by_topic(b, "clvd_outputs_delivered_total",
             "Output messages acknowledged by Kafka (delivery report).", m->delivered, m->topic_out,
             CLV_OUT_COUNT);
    by_topic(b, "clvd_outputs_failed_total",
             "Output messages whose delivery failed (customer messages stay in the outbox).",
             m->failed, m->topic_out, CLV_OUT_COUNT);
    histogram(b, "clvd_processing_latency_seconds",
              "Input message timestamp to the output's delivery report.", &m->latency);
}

static void render_redis(const struct clv_metrics *m, struct clv_sbuf *b)
{
    simple_u64(b, "clvd_redis_up", "gauge", "1 when every Redis connection is up.",
               (uint64_t)(m->redis_up != 0));
    histogram(b, "clvd_redis_roundtrip_seconds",
              "Redis round trips (a pipeline counts once), request to last reply.", &m->redis_rtt);
    simple_u64(b, "clvd_redis_commands_total", "counter", "Redis commands sent.",
               m->redis_commands);
    simple_u64(b, "clvd_redis_round_trips_total", "counter",
               "Redis round trips (pipelines count once).", m->redis_round_trips);
    simple_u64(b, "clvd_redis_reconnects_total", "counter",
               "Connections to Redis established after the first.", m->redis_reconnects);
}

static void render_kafka(const struct clv_metrics *m, struct clv_sbuf *b)
{
    char part[16];
    int nl;

    simple_i64(b, "clvd_kafka_assigned_partitions",
               "Input partitions assigned to this instance by the consumer group.",
               m->kafka_assigned_partitions);
    simple_u64(b, "clvd_kafka_fetch_wakeups_total", "counter",
               "Requests sent to restart fetching once a full prefetch queue was drained.",
               m->fetch_wakeups);
    family(b, "clvd_consumer_lag_messages", "gauge",
           "Messages in an assigned partition after the last one fetched (high watermark).");
    for (int i = 0; i < m->nlag; i++) {
        const struct clv_metrics_lag *l = &m->lag[i];
        if (l->topic < 0 || l->topic >= CLV_INPUT_TOPICS)
            continue;
        snprintf(part, sizeof(part), "%d", (int)l->partition);
        begin(b, "clvd_consumer_lag_messages", NULL, &nl);
        label(b, &nl, "topic", m->topic_in[l->topic]);
        label(b, &nl, "partition", part);
        end_i64(b, nl, l->lag);
    }
    simple_i64(b, "clvd_held_events", "Event clock: events held until the watermark passes them.",
               m->held_events);
    family(b, "clvd_event_clock_watermark_seconds", "gauge",
           "Event clock: the watermark (Unix time); absent with the wall clock.");
    if (m->watermark > 0) {
        begin(b, "clvd_event_clock_watermark_seconds", NULL, &nl);
        end_double(b, nl, (double)m->watermark / 1000.0);
    }
}

void metrics_render(const struct clv_metrics *m, struct clv_sbuf *out)
{
    int nl;

    family(out, "clvd_build_info", "gauge", "Always 1; the version label says which clvd runs.");
    begin(out, "clvd_build_info", NULL, &nl);
    label(out, &nl, "version", CLVD_VERSION);
    end_u64(out, nl, 1);
    family(out, "clvd_start_time_seconds", "gauge", "Process start time (Unix time).");
    begin(out, "clvd_start_time_seconds", NULL, &nl);
    end_double(out, nl, (double)m->start_time / 1000.0);
    simple_u64(out, "clvd_ready", "gauge",
               "1 once the first partition assignment arrived (READY=1 sent to systemd).",
               (uint64_t)(m->ready != 0));
    family(out, "clvd_config_reloads_total", "counter",
           "SIGHUP reloads, by result (ok, or refused and the old config kept).");
    begin(out, "clvd_config_reloads_total", NULL, &nl);
    label(out, &nl, "result", "ok");
    end_u64(out, nl, m->reloads_ok);
    begin(out, "clvd_config_reloads_total", NULL, &nl);
    label(out, &nl, "result", "refused");
    end_u64(out, nl, m->reloads_refused);
    render_input(m, out);
    render_lifecycle(m, out);
    render_output(m, out);
    render_redis(m, out);
    render_kafka(m, out);
}

/* ---- the HTTP endpoint ------------------------------------------------------------ */

#define CT_METRICS "text/plain; version=0.0.4; charset=utf-8"
#define CT_TEXT "text/plain; charset=utf-8"

struct clv_metrics_server {
    struct MHD_Daemon *mhd;
    int port;
    pthread_mutex_t lock; /* guards what follows */
    char *page;
    size_t len, cap;
    int healthy;
    char reason[160];
};

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned int status,
                             const char *content_type, const char *body, size_t len)
{
    struct MHD_Response *r;
    enum MHD_Result rc;

    r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls)
{
    struct clv_metrics_server *srv = cls;
    enum MHD_Result rc;
    char body[sizeof(srv->reason) + 2];
    int healthy;

    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)con_cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        static const char msg[] = "method not allowed\n";
        return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, CT_TEXT, msg, sizeof(msg) - 1);
    }
    if (strcmp(url, "/metrics") == 0) {
        pthread_mutex_lock(&srv->lock);
        rc = reply(conn, MHD_HTTP_OK, CT_METRICS, srv->page ? srv->page : "", srv->len);
        pthread_mutex_unlock(&srv->lock);
        return rc;
    }
    if (strcmp(url, "/healthz") == 0) {
        pthread_mutex_lock(&srv->lock);
        healthy = srv->healthy;
        snprintf(body, sizeof(body), "%s\n", healthy ? "ok" : srv->reason);
        pthread_mutex_unlock(&srv->lock);
        return reply(conn, healthy ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, CT_TEXT, body,
                     strlen(body));
    }
    {
        static const char msg[] = "not found: try /metrics or /healthz\n";
        return reply(conn, MHD_HTTP_NOT_FOUND, CT_TEXT, msg, sizeof(msg) - 1);
    }
}

/* "host:port", "[v6]:port", "*:port" -> host ("*" = 0.0.0.0) and port. */
static int split_listen(const char *addr, char *host, size_t hostlen, char *port, size_t portlen,
                        char *err, size_t errlen)
{
    const char *colon, *h = addr, *hend;
    char *end;
    long p;

    if (addr[0] == '[') {
        hend = strchr(addr, ']');
        if (hend == NULL || hend[1] != ':') {
            clv_seterr(err, errlen, "metrics.listen \"%s\": expected [address]:port", addr);
            return -1;
        }
        h = addr + 1;
        colon = hend + 1;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL || colon == addr || memchr(addr, ':', (size_t)(colon - addr))) {
            clv_seterr(err, errlen,
                       "metrics.listen \"%s\": expected host:port (IPv6 as [address]:port)", addr);
            return -1;
        }
        hend = colon;
    }
    errno = 0;
    p = strtol(colon + 1, &end, 10);
    if (colon[1] < '0' || colon[1] > '9' || *end != '\0' || errno != 0 || p < 0 || p > 65535) {
        clv_seterr(err, errlen, "metrics.listen \"%s\": bad port", addr);
        return -1;
    }
    if ((size_t)(hend - h) >= hostlen || hend == h) {
        clv_seterr(err, errlen, "metrics.listen \"%s\": bad host", addr);
        return -1;
    }
    memcpy(host, h, (size_t)(hend - h));
    host[hend - h] = '\0';
    if (strcmp(host, "*") == 0)
        snprintf(host, hostlen, "0.0.0.0");
    snprintf(port, portlen, "%ld", p);
    return 0;
}

/* Bind and listen on the first address of `addr` that works; returns the
 * socket or -1. */
static int open_listener(const char *addr, int *port_out, char *err, size_t errlen)
{
    struct addrinfo hints, *res = NULL, *ai;
    char host[256], port[8];
    int fd = -1, rc, one = 1, saved = 0;
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);

    if (split_listen(addr, host, sizeof(host), port, sizeof(port), err, errlen) != 0)
        return -1;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        clv_seterr(err, errlen, "metrics.listen \"%s\": %s", addr, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 64) == 0)
            break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        clv_seterr(err, errlen, "metrics.listen \"%s\": %s", addr, strerror(saved));
        return -1;
    }
    *port_out = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &sslen) == 0) {
        if (ss.ss_family == AF_INET)
            *port_out = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            *port_out = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return fd;
}

int metrics_server_start(struct clv_metrics_server **out, const char *addr, char *err,
                         size_t errlen)
{
    struct clv_metrics_server *srv = NULL;
    int fd = -1;

    *out = NULL;
    if (addr == NULL || addr[0] == '\0')
        return 0; /* disabled */
    srv = calloc(1, sizeof(*srv));
    if (srv == NULL) {
        clv_seterr(err, errlen, "metrics: out of memory");
        return -1;
    }
    pthread_mutex_init(&srv->lock, NULL);
    snprintf(srv->reason, sizeof(srv->reason), "starting");
    fd = open_listener(addr, &srv->port, err, errlen);
    if (fd < 0)
        goto fail;
    /* MHD owns the socket from here and closes it in MHD_stop_daemon */
    srv->mhd = MHD_start_daemon(MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL,
                                handle, srv, MHD_OPTION_LISTEN_SOCKET, fd,
                                MHD_OPTION_CONNECTION_LIMIT, (unsigned int)32,
                                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10, MHD_OPTION_END);
    if (srv->mhd == NULL) {
        clv_seterr(err, errlen, "metrics.listen \"%s\": libmicrohttpd did not start", addr);
        /* libmicrohttpd 0.9.75 leaves the socket open when it rejects the
         * options, but closes it when it fails later on: close it only if
         * it is still ours (this runs at start, before other threads open
         * descriptors that could reuse the number) */
        if (fcntl(fd, F_GETFD) != -1)
            close(fd);
        goto fail;
    }
    *out = srv;
    return 0;
fail:
    pthread_mutex_destroy(&srv->lock);
    free(srv);
    return -1;
}

void metrics_server_publish(struct clv_metrics_server *srv, const char *page, size_t len,
                            int healthy, const char *reason)
{
    if (srv == NULL)
        return;
    pthread_mutex_lock(&srv->lock);
    if (len + 1 > srv->cap) {
        size_t ncap = srv->cap ? srv->cap : 16384;
        char *p;
        while (ncap < len + 1)
            ncap *= 2;
        p = realloc(srv->page, ncap);
        if (p == NULL)
            abort();
        srv->page = p;
        srv->cap = ncap;
    }
    if (len > 0)
        memcpy(srv->page, page, len);
    srv->page[len] = '\0';
    srv->len = len;
    srv->healthy = healthy != 0;
    /* one line: a newline in the reason would end the body early */
    snprintf(srv->reason, sizeof(srv->reason), "%s", reason && reason[0] ? reason : "unhealthy");
    srv->reason[strcspn(srv->reason, "\r\n")] = '\0';
    pthread_mutex_unlock(&srv->lock);
}

int metrics_server_port(const struct clv_metrics_server *srv)
{
    return srv ? srv->port : 0;
}

void metrics_server_stop(struct clv_metrics_server *srv)
{
    if (srv == NULL)
        return;
    if (srv->mhd)
        MHD_stop_daemon(srv->mhd);
    pthread_mutex_destroy(&srv->lock);
    free(srv->page);
    free(srv);
}
