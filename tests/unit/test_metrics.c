/* test_metrics.c -- Prometheus exposition and the /metrics, /healthz endpoint.
 *
 * The rendered page is checked by a strict parser of the text format 0.0.4
 * written here (plus clvd's naming rules), and by `promtool check metrics`
 * when promtool is installed (Debian package prometheus; skipped otherwise).
 * The HTTP server is started on 127.0.0.1 port 0 and queried with a tiny
 * socket client. */
#define _GNU_SOURCE /* strcasestr */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "metrics.h"
#include "promtext.h"
#include "producer.h"
#include "state.h"

/* ---- the page must parse as strict Prometheus text ------------------------------
 * The parser is shared with the integration tests (tests/integration/promtext.c). */

static int validate(const char *text, size_t len, char *err, size_t errlen)
{
    struct prom_page page = {0};
    int rc = prom_parse(text, len, &page, err, errlen);

    if (rc == 0)
        prom_page_free(&page);
    return rc;
}

static void assert_valid(const char *text, size_t len)
{
    char err[512];

    if (validate(text, len, err, sizeof(err)) != 0)
        fail_msg("invalid exposition: %s\n---\n%.*s", err, (int)len, text);
}

static void assert_valid_str(const char *text)
{
    assert_valid(text, strlen(text));
}

static void assert_invalid(const char *text, const char *why)
{
    char err[512];

    if (validate(text, strlen(text), err, sizeof(err)) == 0)
        fail_msg("validator accepted a page with %s:\n%s", why, text);
}

static void assert_contains(const struct clv_sbuf *b, const char *needle)
{
    if (b->len == 0 || strstr(b->buf, needle) == NULL)
        fail_msg("page lacks \"%s\"\n---\n%.*s", needle, (int)b->len, b->buf ? b->buf : "");
}

/* ---- fixtures ----------------------------------------------------------------------------- */

static struct clv_kafka_topics default_topics(void)
{
    struct clv_kafka_topics t = {"purchases",
                                 "logins",
                                 "visits",
                                 "customer.stage-changes",
                                 "customer.churn-warnings",
                                 "customer.win-back",
                                 "customer.tier-changes",
                                 "clvd.alerts",
                                 "clvd.dead-letter"};
    return t;
}

#define T0 1772445600000LL /* 2026-03-02T10:00:00Z */

static void populate(struct clv_metrics *m)
{
    struct clv_kafka_topics t = default_topics();
    int64_t customers[CLV_STAGE_COUNT] = {100, 50, 40, 10, 7, 5, 3, 1};
    const double lat[] = {0.0003, 0.004, 0.02, 0.5, 1000, 0.0005};

    metrics_init(m, &t, T0);
    m->consumed[0] = 10;
    m->consumed[1] = 20;
    m->consumed[2] = 30;
    m->applied = 55;
    m->duplicates = 3;
    m->conflicts = 1;
    metrics_count_rejected(m, "invalid_json");
    metrics_count_rejected(m, "invalid_json");
    metrics_count_rejected(m, "missing_field:customer_id");
    metrics_count_rejected(m, "bad\"re\\ason\nx");
    m->transitions[0][CLV_STAGE_PROSPECT] = 5;
    m->transitions[CLV_STAGE_PROSPECT + 1][CLV_STAGE_NEW] = 2;
    m->transitions[CLV_STAGE_ACTIVE + 1][CLV_STAGE_AT_RISK] = 1;
    m->tier_changes = 4;
    for (int i = 0; i < CLV_OUT_COUNT; i++) {
        m->produced[i] = (uint64_t)(10 * i + 3);
        m->delivered[i] = (uint64_t)(10 * i + 2);
        m->failed[i] = (uint64_t)i % 2;
    }
    for (size_t i = 0; i < CLV_ARRAY_LEN(lat); i++)
        histogram_observe(&m->latency, lat[i]);
    histogram_observe(&m->redis_rtt, 0.0002);
    histogram_observe(&m->redis_rtt, 0.0002);
    histogram_observe(&m->redis_rtt, 0.03);
    m->redis_commands = 1234;
    m->redis_round_trips = 99;
    m->redis_reconnects = 2;
    m->reloads_ok = 1;
    metrics_lag_set(m, 0, 0, 5);
    metrics_lag_set(m, 2, 3, 0);
    metrics_lag_set(m, 0, 0, 6); /* replaces */
    metrics_set_customers(m, customers);
    metrics_set_alert(m, "churn_spike", 1);
    metrics_set_alert(m, "at_risk_share", 0);
    metrics_set_alert(m, "odd\"name", 1);
    m->redis_up = 1;
    m->kafka_assigned = 1;
    m->kafka_assigned_partitions = 12;
    m->held_events = 7;
    m->watermark = T0;
    m->ready = 1;
}

/* ---- histograms ------------------------------------------------------------------- */

static void test_histogram(void **state)
{
    const double bounds[] = {0.1, 1, 10};
    const double bad[] = {1, 1};
    struct clv_histogram h, h2, other;

    (void)state;
    assert_int_equal(histogram_init(&h, bad, 2), -1);
    assert_int_equal(histogram_init(&h, bounds, 0), -1);
    assert_int_equal(histogram_init(&h, bounds, 3), 0);
    histogram_observe(&h, 0.1); /* le: a value on a bound counts in that bucket */
    histogram_observe(&h, -5);  /* clamped to 0 */
    histogram_observe(&h, 0.5);
    histogram_observe(&h, 10);
    histogram_observe(&h, 11);
    histogram_observe(&h, NAN); /* ignored */
    assert_int_equal(h.count, 5);
    assert_int_equal(h.buckets[0], 2);
    assert_int_equal(h.buckets[1], 1);
    assert_int_equal(h.buckets[2], 1);
    assert_int_equal(h.buckets[3], 1);
    assert_true(fabs(h.sum - 21.6) < 1e-9);
    /* 2 of 5 in (0, 0.1]: the median (rank 2.5) is half-way into (0.1, 1] */
    assert_true(fabs(histogram_quantile(&h, 0.5) - 0.55) < 1e-9);
    assert_true(fabs(histogram_quantile(&h, 0.2) - 0.05) < 1e-9);
    assert_true(histogram_quantile(&h, 1.0) == 10); /* overflow: the last bound */
    h2 = h;
    assert_int_equal(histogram_merge(&h2, &h), 0);
    assert_int_equal(h2.count, 10);
    assert_int_equal(h2.buckets[0], 4);
    histogram_init_latency(&other);
    assert_int_equal(histogram_merge(&h2, &other), -1);
    assert_int_equal(h2.count, 10);
    histogram_init_redis(&other);
    assert_true(other.nbounds > 8 && other.bounds[0] < 0.001);
    assert_true(histogram_quantile(&other, 0.99) == 0);
}

/* ---- the validator itself ---------------------------------------------------------- */

static void test_validator_rejects(void **state)
{
    (void)state;
    assert_invalid("clvd_x_total 1\n", "a sample without TYPE");
    assert_invalid("# HELP clvd_x_total x\n# TYPE clvd_x_total counter\nclvd_x_total 1",
                   "no final newline");
    assert_invalid("# HELP clvd_x_total x\n# TYPE clvd_x_total counter\nclvd_x_total{a=\"b} 1\n",
                   "an unterminated label");
    assert_invalid(
        "# HELP clvd_x_total x\n# TYPE clvd_x_total counter\nclvd_x_total{a=\"\\t\"} 1\n",
        "a bad escape");
    assert_invalid("# HELP clvd_x_total x\n# TYPE clvd_x_total counter\nclvd_x_total -1\n",
                   "a negative counter");
    assert_invalid("# HELP clvd_x x\n# TYPE clvd_x counter\nclvd_x 1\n",
                   "a counter without _total");
    assert_invalid("# HELP x_total x\n# TYPE x_total counter\nx_total 1\n", "no clvd_ prefix");
    assert_invalid("# HELP clvd_g x\n# TYPE clvd_g gauge\nclvd_g 1\nclvd_g 2\n",
                   "a duplicate series");
    assert_invalid("# HELP clvd_g x\n# TYPE clvd_g gauge\nclvd_g  1\n", "two spaces");
    assert_invalid("# HELP clvd_g x\n# TYPE clvd_g gauge\nclvd_g 0x1\n", "a hex value");
    assert_invalid("# HELP clvd_g x\n# TYPE clvd_g summary\nclvd_g 1\n", "a summary");
    assert_invalid("# HELP clvd_g x\n# TYPE clvd_g gauge\n\nclvd_g 1\n", "an empty line");
    assert_invalid("# HELP clvd_a x\n# TYPE clvd_a gauge\n# HELP clvd_b x\n# TYPE clvd_b gauge\n"
                   "clvd_b 1\nclvd_a 1\n",
                   "samples out of their family");
    assert_invalid("# HELP clvd_h_seconds x\n# TYPE clvd_h_seconds histogram\n"
                   "clvd_h_seconds_bucket{le=\"1\"} 2\nclvd_h_seconds_bucket{le=\"2\"} 1\n"
                   "clvd_h_seconds_bucket{le=\"+Inf\"} 2\nclvd_h_seconds_sum 1\n"
                   "clvd_h_seconds_count 2\n",
                   "non-cumulative buckets");
    assert_invalid("# HELP clvd_h_seconds x\n# TYPE clvd_h_seconds histogram\n"
                   "clvd_h_seconds_bucket{le=\"1\"} 2\nclvd_h_seconds_sum 1\n"
                   "clvd_h_seconds_count 2\n",
                   "no +Inf bucket");
    assert_invalid("# HELP clvd_h_seconds x\n# TYPE clvd_h_seconds histogram\n"
                   "clvd_h_seconds_bucket{le=\"1\"} 2\nclvd_h_seconds_bucket{le=\"+Inf\"} 3\n"
                   "clvd_h_seconds_sum 1\nclvd_h_seconds_count 2\n",
                   "+Inf differing from _count");
    assert_valid_str("# HELP clvd_h_seconds x\n# TYPE clvd_h_seconds histogram\n"
                     "clvd_h_seconds_bucket{le=\"1\"} 2\nclvd_h_seconds_bucket{le=\"+Inf\"} 3\n"
                     "clvd_h_seconds_sum 1.5\nclvd_h_seconds_count 3\n");
}

/* ---- rendering --------------------------------------------------------------------- */

static void test_render_populated(void **state)
{
    struct clv_metrics m;
    struct clv_sbuf b;

    (void)state;
    populate(&m);
    sbuf_init(&b);
    metrics_render(&m, &b);
    assert_valid(b.buf, b.len);
    assert_contains(&b, "\nclvd_messages_consumed_total{topic=\"purchases\"} 10\n");
    assert_contains(&b, "\nclvd_messages_consumed_total{topic=\"visits\"} 30\n");
    assert_contains(&b, "\nclvd_events_applied_total 55\n");
    assert_contains(&b, "\nclvd_events_duplicate_total 3\n");
    assert_contains(&b, "\nclvd_messages_rejected_total{reason=\"invalid_json\"} 2\n");
    assert_contains(&b, "\nclvd_messages_rejected_total{reason=\"missing_field:customer_id\"} 1\n");
    assert_contains(&b, "\nclvd_messages_rejected_total{reason=\"bad\\\"re\\\\ason\\nx\"} 1\n");
    assert_contains(&b, "\nclvd_transitions_total{from=\"none\",to=\"prospect\"} 5\n");
    assert_contains(&b, "\nclvd_transitions_total{from=\"prospect\",to=\"new\"} 2\n");
    assert_contains(&b, "\nclvd_transitions_total{from=\"active\",to=\"at_risk\"} 1\n");
    assert_contains(&b, "\nclvd_transitions_total{from=\"dormant\",to=\"reactivated\"} 0\n");
    assert_null(strstr(b.buf, "{from=\"active\",to=\"active\"}"));
    assert_contains(&b, "\nclvd_tier_changes_total 4\n");
    assert_contains(&b, "\nclvd_outputs_produced_total{topic=\"customer.stage-changes\"} 3\n");
    assert_contains(&b, "\nclvd_outputs_delivered_total{topic=\"clvd.dead-letter\"} 52\n");
    assert_contains(&b, "\nclvd_outputs_failed_total{topic=\"customer.win-back\"} 0\n");
    assert_contains(&b, "\nclvd_processing_latency_seconds_bucket{le=\"0.0005\"} 2\n");
    assert_contains(&b, "\nclvd_processing_latency_seconds_bucket{le=\"0.005\"} 3\n");
    assert_contains(&b, "\nclvd_processing_latency_seconds_bucket{le=\"300\"} 5\n");
    assert_contains(&b, "\nclvd_processing_latency_seconds_bucket{le=\"+Inf\"} 6\n");
    assert_contains(&b, "\nclvd_processing_latency_seconds_count 6\n");
    assert_contains(&b, "\nclvd_redis_roundtrip_seconds_bucket{le=\"0.00025\"} 2\n");
    assert_contains(&b, "\nclvd_redis_roundtrip_seconds_count 3\n");
    assert_contains(&b, "\nclvd_redis_commands_total 1234\n");
    assert_contains(&b, "\nclvd_redis_round_trips_total 99\n");
    assert_contains(&b, "\nclvd_consumer_lag_messages{topic=\"purchases\",partition=\"0\"} 6\n");
    assert_contains(&b, "\nclvd_consumer_lag_messages{topic=\"visits\",partition=\"3\"} 0\n");
    assert_contains(&b, "\nclvd_customers{stage=\"prospect\"} 100\n");
    assert_contains(&b, "\nclvd_customers{stage=\"reactivated\"} 1\n");
    assert_contains(&b, "\nclvd_alert_firing{alert=\"churn_spike\"} 1\n");
    assert_contains(&b, "\nclvd_alert_firing{alert=\"at_risk_share\"} 0\n");
    assert_contains(&b, "\nclvd_alert_firing{alert=\"odd\\\"name\"} 1\n");
    assert_contains(&b, "\nclvd_redis_up 1\n");
    assert_contains(&b, "\nclvd_kafka_assigned_partitions 12\n");
    assert_contains(&b, "\nclvd_held_events 7\n");
    assert_contains(&b, "\nclvd_event_clock_watermark_seconds 1772445600\n");
    assert_contains(&b, "\nclvd_start_time_seconds 1772445600\n");
    assert_contains(&b, "clvd_build_info{version=\"" CLVD_VERSION "\"} 1\n");
    assert_contains(&b, "\nclvd_config_reloads_total{result=\"ok\"} 1\n");
    assert_contains(&b, "\n# TYPE clvd_processing_latency_seconds histogram\n");
    assert_contains(&b, "\n# TYPE clvd_customers gauge\n");
    sbuf_free(&b);
    metrics_free(&m);
}

static void test_render_fresh(void **state)
{
    struct clv_kafka_topics t = default_topics();
    struct clv_metrics m;
    struct clv_sbuf b;

    (void)state;
    metrics_init(&m, &t, T0 + 123);
    sbuf_init(&b);
    metrics_render(&m, &b);
    assert_valid(b.buf, b.len);
    /* unknown gauges are absent, not zero */
    assert_null(strstr(b.buf, "\nclvd_customers{"));
    assert_null(strstr(b.buf, "\nclvd_event_clock_watermark_seconds "));
    assert_null(strstr(b.buf, "\nclvd_consumer_lag_messages{"));
    assert_contains(&b, "\nclvd_start_time_seconds 1772445600.123\n");
    assert_contains(&b, "\nclvd_processing_latency_seconds_bucket{le=\"+Inf\"} 0\n");
    sbuf_free(&b);
    metrics_free(&m);
}

static void test_counting_helpers(void **state)
{
    struct clv_kafka_topics t = default_topics();
    struct clv_batch_stats s;
    struct clv_metrics m;
    char reason[32];
    struct clv_sbuf b;

    (void)state;
    metrics_init(&m, &t, T0);
    for (int i = 0; i < CLV_METRICS_MAX_REASONS + 5; i++) {
        snprintf(reason, sizeof(reason), "bad_type:f%d", i);
        metrics_count_rejected(&m, reason);
    }
    metrics_count_rejected(&m, "bad_type:f0");
    assert_int_equal(m.nrejected, CLV_METRICS_MAX_REASONS);
    assert_int_equal(m.rejected[0].n, 2);
    assert_int_equal(m.rejected_other, 5);
    memset(&s, 0, sizeof(s));
    s.applied = 7;
    s.duplicates = 2;
    s.conflicts = 1;
    s.tier_changes = 3;
    s.transitions[0][CLV_STAGE_NEW] = 4;
    metrics_add_batch(&m, &s);
    metrics_add_batch(&m, &s);
    assert_int_equal(m.applied, 14);
    assert_int_equal(m.duplicates, 4);
    assert_int_equal(m.conflicts, 2);
    assert_int_equal(m.tier_changes, 6);
    assert_int_equal(m.transitions[0][CLV_STAGE_NEW], 8);
    for (int i = 0; i < CLV_MAX_ALERTS; i++) {
        snprintf(reason, sizeof(reason), "rule%d", i);
        assert_int_equal(metrics_set_alert(&m, reason, i % 2), 0);
    }
    assert_int_equal(metrics_set_alert(&m, "one_too_many", 1), -1);
    assert_int_equal(metrics_set_alert(&m, "rule0", 1), 0);
    assert_int_equal(m.alerts[0].firing, 1);
    for (int i = 0; i < 300; i++)
        metrics_lag_set(&m, i % 3, i, i);
    assert_int_equal(m.nlag, 300);
    sbuf_init(&b);
    metrics_render(&m, &b);
    assert_valid(b.buf, b.len);
    assert_contains(&b, "\nclvd_messages_rejected_total{reason=\"other\"} 5\n");
    metrics_lag_reset(&m);
    assert_int_equal(m.nlag, 0);
    sbuf_free(&b);
    metrics_free(&m);
}

static void test_collect_and_health(void **state)
{
    struct clv_kafka_topics t = default_topics();
    struct clv_producer p;
    struct clv_store st;
    struct clv_consumer c;
    struct clv_metrics m;
    char reason[128];

    (void)state;
    metrics_init(&m, &t, T0);
    memset(&p, 0, sizeof(p));
    p.produced[CLV_OUT_WIN_BACK] = 9;
    p.delivered[CLV_OUT_WIN_BACK] = 8;
    p.failed[CLV_OUT_DEAD_LETTER] = 1;
    metrics_collect_producer(&m, &p);
    assert_int_equal(m.produced[CLV_OUT_WIN_BACK], 9);
    assert_int_equal(m.delivered[CLV_OUT_WIN_BACK], 8);
    assert_int_equal(m.failed[CLV_OUT_DEAD_LETTER], 1);
    memset(&st, 0, sizeof(st));
    st.commands = 40;
    st.round_trips = 4;
    metrics_collect_store(&m, &st); /* ctx NULL: disconnected */
    assert_int_equal(m.redis_up, 0);
    assert_int_equal(m.redis_commands, 40);
    assert_int_equal(m.redis_round_trips, 4);
    memset(&c, 0, sizeof(c));
    c.nheld = 11;
    metrics_lag_set(&m, 0, 1, 100);
    metrics_collect_consumer(&m, &c);
    assert_int_equal(m.kafka_assigned, 0);
    assert_int_equal(m.kafka_assigned_partitions, 0);
    assert_int_equal(m.held_events, 11);
    assert_int_equal(m.nlag, 0);

    assert_int_equal(metrics_healthy(&m, reason, sizeof(reason)), 0);
    assert_non_null(strstr(reason, "redis"));
    m.redis_up = 1;
    assert_int_equal(metrics_healthy(&m, reason, sizeof(reason)), 0);
    assert_non_null(strstr(reason, "kafka"));
    m.kafka_assigned = 1;
    assert_int_equal(metrics_healthy(&m, NULL, 0), 1);
    metrics_free(&m);
}

/* Find an executable on PATH; 0 if found. */
/* promtool's own verdict, when the Debian package prometheus is installed
 * (prom_promtool_check is shared with the integration tests). */
static void test_promtool(void **state)
{
    struct clv_metrics m;
    struct clv_sbuf b;
    char err[4608];
    int rc;

    (void)state;
    populate(&m);
    sbuf_init(&b);
    metrics_render(&m, &b);
    rc = prom_promtool_check(b.buf, b.len, err, sizeof(err));
    sbuf_free(&b);
    metrics_free(&m);
    if (rc == 1) {
        print_message("promtool not installed (Debian package prometheus): skipped\n");
        skip();
    }
    if (rc != 0)
        fail_msg("%s", err);
}

/* ---- the HTTP endpoint ------------------------------------------------------------- */

struct http_reply {
    int status;
    char headers[2048];
    char *body;
    size_t body_len;
};

/* One request over a fresh connection (HTTP/1.0: the server closes). */
static int http(int family, int port, const char *request, struct http_reply *r)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    struct timeval tv = {5, 0};
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap), *hdr_end;
    int fd;

    memset(r, 0, sizeof(*r));
    memset(&ss, 0, sizeof(ss));
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        inet_pton(AF_INET, "127.0.0.1", &sin->sin_addr);
        sslen = sizeof(*sin);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        inet_pton(AF_INET6, "::1", &sin6->sin6_addr);
        sslen = sizeof(*sin6);
    }
    fd = socket(family, SOCK_STREAM, 0);
    if (buf == NULL || fd < 0)
        goto fail;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&ss, sslen) != 0)
        goto fail;
    if (write(fd, request, strlen(request)) != (ssize_t)strlen(request))
        goto fail;
    for (;;) {
        ssize_t n;
        if (len + 1 == cap) {
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL)
                goto fail;
            buf = nb;
            cap *= 2;
        }
        n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail;
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    fd = -1;
    buf[len] = '\0';
    hdr_end = strstr(buf, "\r\n\r\n");
    if (hdr_end == NULL || sscanf(buf, "HTTP/1.%*d %d", &r->status) != 1)
        goto fail;
    snprintf(r->headers, sizeof(r->headers), "%.*s", (int)(hdr_end - buf), buf);
    r->body_len = len - (size_t)(hdr_end + 4 - buf);
    r->body = malloc(r->body_len + 1);
    if (r->body == NULL)
        goto fail;
    memcpy(r->body, hdr_end + 4, r->body_len);
    r->body[r->body_len] = '\0';
    free(buf);
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    free(buf);
    return -1;
}

static void get(int port, const char *path, struct http_reply *r)
{
    char req[256];

    snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n", path);
    if (http(AF_INET, port, req, r) != 0)
        fail_msg("GET %s on port %d failed", path, port);
}

static void assert_header(const struct http_reply *r, const char *line)
{
    if (strcasestr(r->headers, line) == NULL)
        fail_msg("response lacks header \"%s\":\n%s", line, r->headers);
}

static void test_server(void **state)
{
    struct clv_metrics_server *srv = NULL;
    struct clv_metrics m;
    struct clv_sbuf b;
    struct http_reply r;
    char err[CLV_ERRLEN];
    int port;

    (void)state;
    assert_int_equal(metrics_server_start(&srv, "127.0.0.1:0", err, sizeof(err)), 0);
    assert_non_null(srv);
    port = metrics_server_port(srv);
    assert_true(port > 0);

    /* before the first publish */
    get(port, "/healthz", &r);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.body, "starting\n");
    free(r.body);
    get(port, "/metrics", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    free(r.body);

    populate(&m);
    sbuf_init(&b);
    metrics_render(&m, &b);
    metrics_server_publish(srv, b.buf, b.len, 1, NULL);
    get(port, "/metrics", &r);
    assert_int_equal(r.status, 200);
    assert_header(&r, "Content-Type: text/plain; version=0.0.4");
    assert_int_equal(r.body_len, b.len);
    assert_memory_equal(r.body, b.buf, b.len);
    assert_valid(r.body, r.body_len);
    free(r.body);
    get(port, "/healthz", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok\n");
    free(r.body);

    /* unhealthy: 503 with the reason on one line */
    metrics_server_publish(srv, b.buf, b.len, 0, "redis: not connected\nsecond line");
    get(port, "/healthz", &r);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.body, "redis: not connected\n");
    free(r.body);
    get(port, "/metrics", &r); /* metrics are still served */
    assert_int_equal(r.status, 200);
    free(r.body);

    /* and back */
    metrics_server_publish(srv, "", 0, 1, NULL);
    get(port, "/healthz", &r);
    assert_int_equal(r.status, 200);
    free(r.body);
    get(port, "/metrics", &r);
    assert_int_equal(r.body_len, 0);
    free(r.body);

    get(port, "/", &r);
    assert_int_equal(r.status, 404);
    free(r.body);
    get(port, "/metrics/x", &r);
    assert_int_equal(r.status, 404);
    free(r.body);
    get(port, "/metrics?name[]=x", &r); /* a query string is ignored */
    assert_int_equal(r.status, 200);
    free(r.body);
    assert_int_equal(
        http(AF_INET, port, "POST /metrics HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc", &r), 0);
    assert_int_equal(r.status, 405);
    assert_header(&r, "Allow: GET, HEAD");
    free(r.body);
    assert_int_equal(http(AF_INET, port, "DELETE /healthz HTTP/1.0\r\n\r\n", &r), 0);
    assert_int_equal(r.status, 405);
    free(r.body);
    assert_int_equal(http(AF_INET, port, "HEAD /healthz HTTP/1.0\r\n\r\n", &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    free(r.body);
    /* HTTP/1.1 keep-alive: two requests on one connection would also work,
     * but one with Connection: close is what Prometheus-like clients send */
    assert_int_equal(
        http(AF_INET, port, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &r),
        0);
    assert_int_equal(r.status, 200);
    free(r.body);

    metrics_server_stop(srv);
    /* stopped: the port is closed */
    assert_int_equal(http(AF_INET, port, "GET /healthz HTTP/1.0\r\n\r\n", &r), -1);
    sbuf_free(&b);
    metrics_free(&m);
}

static void test_server_ipv6(void **state)
{
    struct clv_metrics_server *srv = NULL;
    struct http_reply r;
    char err[CLV_ERRLEN];
    int probe;

    (void)state;
    probe = socket(AF_INET6, SOCK_STREAM, 0);
    if (probe >= 0) {
        struct sockaddr_in6 sin6;
        memset(&sin6, 0, sizeof(sin6));
        sin6.sin6_family = AF_INET6;
        inet_pton(AF_INET6, "::1", &sin6.sin6_addr);
        if (bind(probe, (struct sockaddr *)&sin6, sizeof(sin6)) != 0) {
            close(probe);
            probe = -1;
        }
    }
    if (probe < 0) {
        print_message("no IPv6 loopback here: skipped\n");
        skip();
    }
    close(probe);
    assert_int_equal(metrics_server_start(&srv, "[::1]:0", err, sizeof(err)), 0);
    metrics_server_publish(srv, "", 0, 1, NULL);
    assert_int_equal(http(AF_INET6, metrics_server_port(srv), "GET /healthz HTTP/1.0\r\n\r\n", &r),
                     0);
    assert_int_equal(r.status, 200);
    free(r.body);
    metrics_server_stop(srv);
}

static void test_server_listen_errors(void **state)
{
    static const char *const bad[] = {
        "nohostport",   "127.0.0.1:", "127.0.0.1:99999", "127.0.0.1:abc",
        "[::1",         "[::1]9464",  "::1:9464",        ":9464",
        "127.0.0.1:-1", "[]:80",      "127.0.0.1:80x",
    };
    struct clv_metrics_server *srv = (struct clv_metrics_server *)&srv, *second = NULL;
    char err[CLV_ERRLEN], addr[64];

    (void)state;
    /* "" disables the endpoint; a NULL server is accepted everywhere */
    assert_int_equal(metrics_server_start(&srv, "", err, sizeof(err)), 0);
    assert_null(srv);
    metrics_server_publish(NULL, "x", 1, 1, NULL);
    assert_int_equal(metrics_server_port(NULL), 0);
    metrics_server_stop(NULL);

    for (size_t i = 0; i < CLV_ARRAY_LEN(bad); i++) {
        err[0] = '\0';
        if (metrics_server_start(&srv, bad[i], err, sizeof(err)) == 0) {
            metrics_server_stop(srv);
            fail_msg("accepted metrics.listen \"%s\"", bad[i]);
        }
        assert_null(srv);
        assert_non_null(strstr(err, "metrics.listen"));
    }
    /* a port in use is reported with the system's reason */
    assert_int_equal(metrics_server_start(&srv, "127.0.0.1:0", err, sizeof(err)), 0);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", metrics_server_port(srv));
    assert_int_equal(metrics_server_start(&second, addr, err, sizeof(err)), -1);
    assert_non_null(strstr(err, strerror(EADDRINUSE)));
    metrics_server_stop(srv);
    /* "*" is every IPv4 address; "localhost" resolves */
    assert_int_equal(metrics_server_start(&srv, "*:0", err, sizeof(err)), 0);
    metrics_server_stop(srv);
    assert_int_equal(metrics_server_start(&srv, "localhost:0", err, sizeof(err)), 0);
    metrics_server_stop(srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_histogram),        cmocka_unit_test(test_validator_rejects),
        cmocka_unit_test(test_render_populated), cmocka_unit_test(test_render_fresh),
        cmocka_unit_test(test_counting_helpers), cmocka_unit_test(test_collect_and_health),
        cmocka_unit_test(test_promtool),         cmocka_unit_test(test_server),
        cmocka_unit_test(test_server_ipv6),      cmocka_unit_test(test_server_listen_errors),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
