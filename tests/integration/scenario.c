/* scenario.c -- the shared workload and result comparison of the guarantee
 * tests; see scenario.h. */
#define _GNU_SOURCE /* open_memstream, strdup */
#include "scenario.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "common.h"
#include "customer.h"
#include "keys.h"

#ifndef CLVD_BINARY
#error "CLVD_BINARY (path of the clvd executable) must be defined"
#endif

/* ---- deterministic randomness (splitmix64) ------------------------------------ */

static uint64_t rng_next(uint64_t *st)
{
    uint64_t z = (*st += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double rng_unit(uint64_t *st)
{
    return (double)(rng_next(st) >> 11) * 0x1.0p-53;
}

/* Uniform integer in [lo, hi]. */
static int64_t rng_range(uint64_t *st, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(rng_next(st) % (uint64_t)(hi - lo + 1));
}

static double rng_exp(uint64_t *st, double mean)
{
    return -mean * log(1.0 - rng_unit(st));
}

/* ---- generating the stream ---------------------------------------------------- */

enum { EV_PURCHASE, EV_LOGIN, EV_VISIT }; /* the order of h_input_topics */

#define SCEN_START_LITERAL "2024-06-01T00:00:00Z"
#define SCEN_END_LITERAL "2025-06-01T00:00:00Z"
#define TICKER_ID "ticker"
#define TICKER_FIRST_LITERAL "2025-06-08T12:00:00Z"
#define TICKER_EVENTS 15 /* every 14 days: until 2025-12-21 */

struct plan {
    int type[SCEN_MAX_EVENTS_PER_CUSTOMER];
    int64_t ts[SCEN_MAX_EVENTS_PER_CUSTOMER];
    long cents[SCEN_MAX_EVENTS_PER_CUSTOMER];
    int n;
};

/* Kinds of customers: how many events, how many purchases, how far apart. */
enum kind { K_BROWSER, K_ONE_TIME, K_REPEAT, K_LOYAL, K_LAPSED };

static enum kind pick_kind(uint64_t *st)
{
    double u = rng_unit(st);

    if (u < 0.30)
        return K_BROWSER;
    if (u < 0.52)
        return K_ONE_TIME;
    if (u < 0.80)
        return K_REPEAT;
    if (u < 0.92)
        return K_LOYAL;
    return K_LAPSED;
}

static long order_cents(uint64_t *st, enum kind k)
{
    double u = rng_unit(st);

    if (u < 0.03)
        return (long)rng_range(st, 30000, 150000); /* a big order: tier upgrades */
    return 500 + (long)rng_exp(st, k == K_LOYAL ? 9000.0 : 5000.0);
}

static void plan_customer(uint64_t *st, int64_t start, int64_t end, struct plan *p)
{
    enum kind k = pick_kind(st);
    int n, np, lapse_at = -1;
    double gap_days;
    int64_t t;

    switch (k) {
    case K_BROWSER:
        n = (int)rng_range(st, 3, 12), np = 0, gap_days = 12;
        break;
    case K_ONE_TIME:
        n = (int)rng_range(st, 4, 14), np = 1, gap_days = 10;
        break;
    case K_REPEAT:
        n = (int)rng_range(st, 8, 16), np = (int)rng_range(st, 2, 5), gap_days = 14;
        break;
    case K_LOYAL:
        n = (int)rng_range(st, 12, 16), np = (int)rng_range(st, 6, 9), gap_days = 6;
        break;
    default:
        n = (int)rng_range(st, 8, 16), np = (int)rng_range(st, 1, 4), gap_days = 8;
        lapse_at = n / 2;
        break;
    }
    for (int i = 0; i < n; i++)
        p->type[i] = rng_unit(st) < 0.65 ? EV_VISIT : EV_LOGIN;
    /* purchases at distinct positions, never the very first event but for
     * one customer in five (a purchase out of nowhere) */
    for (int placed = 0; placed < np;) {
        int lo = rng_unit(st) < 0.2 ? 0 : 1;
        int at = (int)rng_range(st, lo, n - 1);
        if (p->type[at] == EV_PURCHASE)
            continue;
        p->type[at] = EV_PURCHASE;
        placed++;
    }
    if (lapse_at > 0 && lapse_at < n) /* come back with a visit or a purchase */
        p->type[lapse_at] = rng_unit(st) < 0.5 ? EV_PURCHASE : EV_VISIT;
    t = start + (int64_t)(rng_unit(st) * 300.0 * (double)H_DAY_MS);
    p->n = 0;
    for (int i = 0; i < n; i++) {
        if (i > 0) {
            double d = rng_exp(st, gap_days);
            if (i == lapse_at)
                d = (double)rng_range(st, 70, 200) + rng_unit(st);
            t += (int64_t)(d * (double)H_DAY_MS);
            t += rng_range(st, 60000, 3600000); /* strictly increasing */
        }
        if (t > end)
            break;
        p->type[p->n] = p->type[i];
        p->ts[p->n] = t;
        p->cents[p->n] = p->type[i] == EV_PURCHASE ? order_cents(st, k) : 0;
        p->n++;
    }
}

/* The event time as JSON: RFC 3339 in UTC, with an offset, or epoch ms. */
static void format_ts(uint64_t *st, int64_t ts, char *buf, size_t buflen)
{
    static const int offsets[] = {120, -300, 330, 60, -180};
    double u = rng_unit(st);

    if (u < 0.60) {
        char iso[32];
        snprintf(buf, buflen, "\"%s\"", h_fmt_ts(ts, iso, sizeof(iso)));
    } else if (u < 0.85) {
        snprintf(buf, buflen, "%" PRId64, ts);
    } else {
        int off = offsets[rng_range(st, 0, 4)];
        char local[32];
        h_fmt_ts(ts + (int64_t)off * 60000, local, sizeof(local));
        local[23] = '\0'; /* drop the Z */
        snprintf(buf, buflen, "\"%s%c%02d:%02d\"", local, off < 0 ? '-' : '+', abs(off) / 60,
                 abs(off) % 60);
    }
}

static const char *const channels[] = {"search", "email",     "social",
                                       "direct", "affiliate", "display"};

static int add_event(struct scenario *s, uint64_t *st, const char *id, int seq, int type,
                     int64_t ts, long cents, int first)
{
    char ts_json[64], extra[160] = "", value[512];
    struct scen_event *e;
    int n;

    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 65536;
        struct scen_event *ne = realloc(s->ev, ncap * sizeof(*ne));
        if (ne == NULL)
            return -1;
        s->ev = ne;
        s->cap = ncap;
    }
    format_ts(st, ts, ts_json, sizeof(ts_json));
    if (first || rng_unit(st) < 0.15)
        snprintf(extra, sizeof(extra), ",\"channel\":\"%s\"", channels[rng_range(st, 0, 5)]);
    if (rng_unit(st) < 0.3)
        snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra), ",\"type\":\"%s\"",
                 type == EV_PURCHASE ? "purchase"
                 : type == EV_LOGIN  ? "login"
                                     : "visit");
    switch (type) {
    case EV_PURCHASE:
        n = snprintf(
            value, sizeof(value),
            "{\"event_id\":\"%s-%02d\",\"customer_id\":\"%s\",\"ts\":%s,\"amount\":%ld.%02ld,"
            "\"currency\":\"EUR\",\"order_id\":\"o-%s-%d\"%s}",
            id, seq, id, ts_json, cents / 100, cents % 100, id, seq, extra);
        break;
    case EV_LOGIN:
        n = snprintf(
            value, sizeof(value),
            "{\"event_id\":\"%s-%02d\",\"customer_id\":\"%s\",\"ts\":%s,\"device\":\"%s\"%s}", id,
            seq, id, ts_json,
            rng_unit(st) < 0.5   ? "web"
            : rng_unit(st) < 0.5 ? "ios"
                                 : "android",
            extra);
        break;
    default:
        n = snprintf(
            value, sizeof(value),
            "{\"event_id\":\"%s-%02d\",\"customer_id\":\"%s\",\"ts\":%s,\"page\":\"/p/%d\"%s}", id,
            seq, id, ts_json, (int)rng_range(st, 1, 5000), extra);
        break;
    }
    if (n < 0 || (size_t)n >= sizeof(value))
        return -1;
    e = &s->ev[s->n++];
    e->topic = h_input_topics[type];
    e->key = (char *)id;
    e->value = strdup(value);
    e->len = (size_t)n;
    e->ts = ts;
    if (e->value == NULL)
        return -1;
    s->per_topic[type]++;
    return 0;
}

static int event_order(const void *pa, const void *pb)
{
    const struct scen_event *a = pa, *b = pb;
    int c;

    if (a->ts != b->ts)
        return a->ts < b->ts ? -1 : 1;
    c = strcmp(a->key, b->key);
    if (c != 0)
        return c;
    return strcmp(a->value, b->value);
}

int scenario_generate(struct scenario *s, uint64_t seed, int customers, char *err, size_t errlen)
{
    int64_t start = h_ts(SCEN_START_LITERAL), end = h_ts(SCEN_END_LITERAL);
    int64_t tick = h_ts(TICKER_FIRST_LITERAL);
    uint64_t st = seed;
    struct plan p;

    memset(s, 0, sizeof(*s));
    s->seed = seed;
    s->customers = customers;
    s->ids = calloc((size_t)customers + 1, sizeof(*s->ids));
    if (s->ids == NULL)
        goto oom;
    for (int c = 0; c < customers; c++) {
        snprintf(s->ids[c], sizeof(s->ids[c]), "c%05d", c);
        plan_customer(&st, start, end, &p);
        for (int i = 0; i < p.n; i++)
            if (add_event(s, &st, s->ids[c], i, p.type[i], p.ts[i], p.cents[i], i == 0) != 0)
                goto oom;
    }
    /* The ticker: a visit every 14 days for half a year after the others. */
    snprintf(s->ids[customers], sizeof(s->ids[customers]), "%s", TICKER_ID);
    for (int i = 0; i < TICKER_EVENTS; i++)
        if (add_event(s, &st, s->ids[customers], i, EV_VISIT,
                      tick + i * 14 * H_DAY_MS + rng_range(&st, 0, 3600000), 0, i == 0) != 0)
            goto oom;
    qsort(s->ev, s->n, sizeof(*s->ev), event_order);
    s->first_ts = s->ev[0].ts;
    s->last_ts = s->ev[s->n - 1].ts;
    return 0;
oom:
    scenario_free(s);
    clv_seterr(err, errlen, "scenario: out of memory");
    return -1;
}

void scenario_free(struct scenario *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->ev[i].value);
    free(s->ev);
    free(s->ids);
    memset(s, 0, sizeof(*s));
}

void scenario_describe(const struct scenario *s, FILE *out)
{
    char a[32], b[32];

    fprintf(out,
            "[scenario] seed %#" PRIx64 ": %zu events (%zu purchases, %zu logins, %zu visits) of "
            "%d customers + ticker, %s .. %s\n",
            s->seed, s->n, s->per_topic[EV_PURCHASE], s->per_topic[EV_LOGIN],
            s->per_topic[EV_VISIT], s->customers, h_fmt_ts(s->first_ts, a, sizeof(a)),
            h_fmt_ts(s->last_ts, b, sizeof(b)));
}

/* ---- worlds and runs --------------------------------------------------------------- */

static int world_start(struct scen_world *w, const char *name, int brokers, int persist,
                       int masters, char *err, size_t errlen)
{
    memset(w, 0, sizeof(*w));
    snprintf(w->name, sizeof(w->name), "%s", name);
    w->brokers = brokers;
    w->redis.persist = persist;
    w->redis.masters = masters;
    if (h_tmpdir_create(w->dir, sizeof(w->dir), err, errlen) != 0 ||
        h_redis_start(&w->redis, err, errlen) != 0 ||
        h_kafka_start(&w->kafka, brokers, err, errlen) != 0 ||
        h_kafka_create_default_topics(&w->kafka, SCEN_IN_PARTITIONS, SCEN_OUT_PARTITIONS, err,
                                      errlen) != 0) {
        scen_world_stop(w);
        return -1;
    }
    return 0;
}

int scen_world_start(struct scen_world *w, const char *name, int brokers, int persist, char *err,
                     size_t errlen)
{
    return world_start(w, name, brokers, persist, 0, err, errlen);
}

int scen_world_start_cluster(struct scen_world *w, const char *name, int brokers, int masters,
                             char *err, size_t errlen)
{
    return world_start(w, name, brokers, 0, masters, err, errlen);
}

void scen_world_stop(struct scen_world *w)
{
    h_kafka_stop(&w->kafka);
    h_redis_stop(&w->redis);
    if (w->dir[0] != '\0') {
        h_tmpdir_remove(w->dir);
        w->dir[0] = '\0';
    }
}

void scen_throttle(struct scen_world *w, int rtt_ms)
{
    if (w->kafka.mcluster != NULL)
        rd_kafka_mock_broker_set_rtt(w->kafka.mcluster, -1, rtt_ms);
}

int64_t scen_committed(const struct scen_world *w, const char *group)
{
    char err[H_ERRLEN];
    int64_t n = h_kafka_committed(w->kafka.bootstraps, group, h_input_topics, err, sizeof(err));

    if (n < 0)
        fprintf(stderr, "[scenario] %s\n", err);
    return n;
}

int scenario_produce(const struct scenario *s, struct scen_world *w, int copies, char *err,
                     size_t errlen)
{
    uint64_t st = s->seed ^ 0xc0b1e5ULL;

    for (int c = 0; c < copies; c++)
        for (size_t i = 0; i < s->n; i++) {
            const struct scen_event *e = &s->ev[i];
            int32_t part =
                c == 0 ? RD_KAFKA_PARTITION_UA : (int32_t)rng_range(&st, 0, SCEN_IN_PARTITIONS - 1);
            if (h_produce_async(&w->kafka, e->topic, part, e->key, e->value, e->len, err, errlen) !=
                0)
                return -1;
        }
    return h_produce_wait(&w->kafka, 120000, err, errlen);
}

int scen_config(const struct scen_world *w, struct h_config *cfg, const char *group)
{
    if (h_config_init(cfg, w->kafka.bootstraps, group, w->redis.socket) != 0 ||
        h_config_redis(cfg, &w->redis) != 0 || h_config_set(cfg, "log.level", "info") != 0 ||
        h_config_set(cfg, "kafka.properties",
                     "{session.timeout.ms: \"6000\", heartbeat.interval.ms: \"500\", "
                     "max.partition.fetch.bytes: \"%s\"}",
                     SCEN_FETCH_BYTES) != 0) {
        h_config_free(cfg);
        return -1;
    }
    return 0;
}

int scen_config_write(const struct scen_world *w, const struct h_config *cfg, const char *name,
                      char *path, size_t pathlen, char *err, size_t errlen)
{
    if ((size_t)snprintf(path, pathlen, "%s/%s.yaml", w->dir, name) >= pathlen) {
        clv_seterr(err, errlen, "config path too long");
        return -1;
    }
    return h_config_write(cfg, path, err, errlen);
}

int scen_config_write_with(struct scen_fixture *f, const char *name, int metrics_port,
                           const char *properties, char *err, size_t errlen)
{
    struct h_config cfg;
    char listen[64];
    int rc = 0;

    err[0] = '\0';
    if (scen_config(&f->w, &cfg, f->group) != 0) {
        clv_seterr(err, errlen, "config: out of memory");
        return -1;
    }
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", metrics_port);
    if (metrics_port > 0 && h_config_set_str(&cfg, "metrics.listen", listen) != 0)
        rc = -1;
    if (rc == 0 && properties != NULL &&
        h_config_set(&cfg, "kafka.properties",
                     "{session.timeout.ms: \"6000\", heartbeat.interval.ms: \"500\", "
                     "max.partition.fetch.bytes: \"%s\", %s}",
                     SCEN_FETCH_BYTES, properties) != 0)
        rc = -1;
    if (rc == 0)
        rc = scen_config_write(&f->w, &cfg, name, f->config, sizeof(f->config), err, errlen);
    if (rc != 0 && !err[0])
        clv_seterr(err, errlen, "config: out of memory");
    h_config_free(&cfg);
    return rc;
}

const char *scen_clvd_binary(void)
{
    const char *b = getenv("CLVD_IT_CLVD");

    return b != NULL && *b != '\0' ? b : CLVD_BINARY;
}

int scen_clvd_start(struct scen_world *w, struct h_clvd *d, const char *config, const char *name,
                    const char *exit_when_idle, char *err, size_t errlen)
{
    const char *const idle_args[] = {"--exit-when-idle", exit_when_idle, NULL};
    char logpath[H_PATHLEN + 96];

    w->runs++;
    snprintf(logpath, sizeof(logpath), "%s/%s-%d.log", w->dir, name, w->runs);
    return h_clvd_start_args(d, scen_clvd_binary(), config, logpath,
                             exit_when_idle != NULL ? idle_args : NULL, err, errlen);
}

int scen_stopped_counts(const char *logpath, struct scen_counts *c)
{
    static const char needle[] = "stopped: consumed ";
    char line[512];
    const char *p;
    unsigned long long a, b, d;

    if (h_file_last_line(logpath, needle, line, sizeof(line)) != 0)
        return -1;
    p = strstr(line, needle);
    if (p == NULL ||
        sscanf(p + sizeof(needle) - 1, "%llu, applied %llu, duplicates %llu", &a, &b, &d) != 3)
        return -1;
    c->consumed = a;
    c->applied = b;
    c->duplicates = d;
    return 0;
}

void scen_dump_log(const struct h_clvd *d, FILE *out)
{
    if (d->log[0] != '\0')
        h_dump_file(d->log, "clvd log", 24 * 1024, out);
}

static int sum_stats(redisContext *c, const char *key, size_t len, void *opaque)
{
    long *sum = opaque;
    redisReply *r;

    if (len < 7 || strcmp(key + len - 6, ":stats") != 0)
        return 0;
    r = redisCommand(c, "HGETALL %b", key, len);
    if (r == NULL)
        return -1;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2)
        if (stage_from_name(r->element[i]->str) >= 0)
            *sum += strtol(r->element[i + 1]->str, NULL, 10);
    freeReplyObject(r);
    return 0;
}

long scen_redis_customers(const struct scen_world *w)
{
    char err[H_ERRLEN];
    long sum = 0;

    if (h_redis_scan(&w->redis, sum_stats, &sum, err, sizeof(err)) != 0) {
        fprintf(stderr, "[scenario] counting customers: %s\n", err);
        return -1;
    }
    return sum;
}

/* ---- results: line lists ------------------------------------------------------------ */

struct lines {
    char **v;
    size_t n, cap;
};

static int lines_add(struct lines *l, char *line) /* takes ownership */
{
    if (line == NULL)
        return -1;
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 1024;
        char **nv = realloc(l->v, ncap * sizeof(*nv));
        if (nv == NULL) {
            free(line);
            return -1;
        }
        l->v = nv;
        l->cap = ncap;
    }
    l->v[l->n++] = line;
    return 0;
}

static int lines_addf(struct lines *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int lines_addf(struct lines *l, const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    int rc;

    va_start(ap, fmt);
    rc = vasprintf(&s, fmt, ap);
    va_end(ap);
    return rc < 0 ? -1 : lines_add(l, s);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sort and drop repeated lines. */
static void lines_unique(struct lines *l)
{
    size_t k = 0;

    qsort(l->v, l->n, sizeof(*l->v), cmp_str);
    for (size_t i = 0; i < l->n; i++) {
        if (k > 0 && strcmp(l->v[k - 1], l->v[i]) == 0) {
            free(l->v[i]);
            continue;
        }
        l->v[k++] = l->v[i];
    }
    l->n = k;
}

/* Length of a line's key: up to the tab. */
static size_t key_len(const char *line)
{
    const char *t = strchr(line, '\t');

    return t ? (size_t)(t - line) : strlen(line);
}

static int same_key(const char *a, const char *b)
{
    size_t la = key_len(a);

    return la == key_len(b) && memcmp(a, b, la) == 0;
}

/* Sorted lines with the same key next to each other: count the keys that
 * have more than one value. */
static size_t conflicting_keys(char **v, size_t n)
{
    size_t bad = 0;

    for (size_t i = 1; i < n; i++)
        if (same_key(v[i - 1], v[i]) && (i < 2 || !same_key(v[i - 2], v[i - 1])))
            bad++;
    return bad;
}

static void free_lines(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void scenario_result_free(struct scenario_result *r)
{
    free_lines(r->outputs, r->noutputs);
    free_lines(r->digests, r->ndigests);
    free_lines(r->state, r->nstate);
    memset(r, 0, sizeof(*r));
}

/* ---- results: outputs ---------------------------------------------------------------- */

#define MAX_OUT_PARTITIONS 64

struct out_ctx {
    struct scenario_result *r;
    struct lines outputs, digests;
    int64_t first_offset[8][MAX_OUT_PARTITIONS]; /* by topic index, partition; -1: none */
};

static uint64_t fnv1a(const void *p, size_t len)
{
    const unsigned char *b = p;
    uint64_t h = 1469598103934665603ULL;

    for (size_t i = 0; i < len; i++) {
        h ^= b[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static const char *jstr(json_t *o, const char *field)
{
    json_t *v = json_object_get(o, field);

    if (json_is_null(v))
        return "null";
    return json_is_string(v) ? json_string_value(v) : "?";
}

static int on_output(const rd_kafka_message_t *m, void *opaque)
{
    struct out_ctx *x = opaque;
    const char *topic = rd_kafka_topic_name(m->rkt);
    json_error_t jerr;
    json_t *j;
    char *canon;
    int t, rc;

    x->r->messages++;
    for (t = 0; h_output_topics[t] != NULL; t++)
        if (strcmp(h_output_topics[t], topic) == 0)
            break;
    if (h_output_topics[t] != NULL) {
        x->r->per_topic[t]++;
        if (m->partition >= 0 && m->partition < MAX_OUT_PARTITIONS &&
            x->first_offset[t][m->partition] < 0)
            x->first_offset[t][m->partition] = m->offset;
    }
    j = json_loadb(m->payload, m->len, 0, &jerr);
    if (!json_is_object(j)) {
        json_decref(j);
        return lines_addf(&x->outputs, "%s %d:%lld\tnot a JSON object: %.*s", topic,
                          (int)m->partition, (long long)m->offset,
                          (int)(m->len > 200 ? 200 : m->len), (const char *)m->payload);
    }
    if (strcmp(topic, H_T_DEAD) == 0) {
        x->r->dead_letters++;
        json_t *off = json_object_get(j, "offset");
        rc = lines_addf(&x->outputs, "%s %s:%lld\t%s", topic, jstr(j, "topic"),
                        json_is_integer(off) ? (long long)json_integer_value(off) : -1LL,
                        jstr(j, "reason"));
        json_decref(j);
        return rc;
    }
    rc = lines_addf(&x->outputs, "%s %s\t%s %s %s %s", topic, jstr(j, "event_id"), jstr(j, "from"),
                    jstr(j, "to"), jstr(j, "reason"), jstr(j, "at"));
    json_object_del(j, "emitted_at");
    canon = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
    if (rc == 0)
        rc = canon != NULL ? lines_addf(&x->digests, "%s %s\t%016" PRIx64, topic,
                                        jstr(j, "event_id"), fnv1a(canon, strlen(canon)))
                           : -1;
    free(canon);
    json_decref(j);
    return rc;
}

static int collect_outputs(struct scen_world *w, struct scenario_result *r, char *err,
                           size_t errlen)
{
    struct out_ctx x = {r, {0}, {0}, {{0}}};
    int rc;

    for (int t = 0; t < 8; t++)
        for (int p = 0; p < MAX_OUT_PARTITIONS; p++)
            x.first_offset[t][p] = -1;
    rc = h_consume_each(w->kafka.bootstraps, h_output_topics, 0, 1000, 120000, on_output, &x, NULL,
                        err, errlen);
    lines_unique(&x.outputs);
    lines_unique(&x.digests);
    r->outputs = x.outputs.v;
    r->noutputs = x.outputs.n;
    r->digests = x.digests.v;
    r->ndigests = x.digests.n;
    r->inconsistent_ids =
        conflicting_keys(r->outputs, r->noutputs) + conflicting_keys(r->digests, r->ndigests);
    for (int t = 0; t < 8; t++)
        for (int p = 0; p < MAX_OUT_PARTITIONS; p++)
            if (x.first_offset[t][p] > 0)
                r->truncated++; /* the mock cluster dropped its oldest messages */
    /* distinct transition ids: stage changes and tier changes */
    for (size_t i = 0; i < r->noutputs; i++)
        if ((strncmp(r->outputs[i], H_T_STAGE " ", strlen(H_T_STAGE) + 1) == 0 ||
             strncmp(r->outputs[i], H_T_TIER " ", strlen(H_T_TIER) + 1) == 0) &&
            (i == 0 || !same_key(r->outputs[i - 1], r->outputs[i])))
            r->transition_ids++;
    return rc;
}

/* ---- results: the Redis dump -------------------------------------------------------------- */

struct dump_ctx {
    struct scenario_result *r;
    struct lines state;
    long shards;
};

static const char *fmt_time(int64_t ms, char *buf, size_t len)
{
    if (ms == 0)
        return "0";
    return h_fmt_ts(ms, buf, len);
}

/* Everything but the version and the de-duplication memory (event-id ring
 * and offset marks), by name; what is not named (a field added later) is
 * covered by `rest`, a digest of the whole struct with those cleared. */
static int dump_customer(struct dump_ctx *x, const char *id, size_t idlen, long shard,
                         const redisReply *v)
{
    struct clv_customer *c = malloc(sizeof(*c));
    char err[256], t1[32], t2[32], t3[32], t4[32], t5[32], t6[32];
    char *pdays = NULL;
    size_t pdayslen = 0;
    FILE *lf;
    int rc;

    if (c == NULL)
        return -1;
    x->r->customers++;
    if (v->type != REDIS_REPLY_STRING ||
        customer_decode(c, (const unsigned char *)v->str, v->len, err, sizeof(err)) != 0) {
        x->r->bad_keys++;
        free(c);
        return lines_addf(&x->state, "C %.*s\tundecodable: %s", (int)idlen, id,
                          v->type == REDIS_REPLY_STRING ? err : "not a string");
    }
    if (x->shards > 0 && keys_shard_of(id, idlen, (uint32_t)x->shards) != (uint32_t)shard) {
        x->r->bad_keys++;
        lines_addf(&x->state, "X %.*s\tin shard %ld, belongs to shard %u", (int)idlen, id, shard,
                   keys_shard_of(id, idlen, (uint32_t)x->shards));
    }
    lf = open_memstream(&pdays, &pdayslen);
    if (lf == NULL) {
        free(c);
        return -1;
    }
    for (int i = 0; i < c->npdays; i++)
        fprintf(lf, "%s%d:%u:%.17g", i ? "," : "", (int)c->pdays[i].day,
                (unsigned)c->pdays[i].count, c->pdays[i].revenue);
    fclose(lf);
    /* what legitimately differs: the compare-and-set token and the
     * de-duplication memory (receipt times, input offsets) */
    c->version = 0;
    c->ndedupe = 0;
    memset(c->dedupe, 0, sizeof(c->dedupe));
    c->nmarks = 0;
    memset(c->marks, 0, sizeof(c->marks));
    x->r->transitions += c->seq;
    rc = lines_addf(
        &x->state,
        "C %.*s\tstage=%s tier=%d seq=%u stage_since=%s first_seen=%s "
        "last_activity=%s first_purchase=%s last_purchase=%s purchases=%u "
        "revenue=%.17g logins=%u visits=%u purchase_days=%u first_pday=%d "
        "last_pday=%d first_day_revenue=%.17g active_anchor=%d "
        "active_bits=%016" PRIx64 ":%016" PRIx64 " pdays=[%s] channel=%s "
        "pdays_from=%d channel_ts=%s rest=%016" PRIx64,
        (int)idlen, id, stage_name(c->stage), (int)c->tier, (unsigned)c->seq,
        fmt_time(c->stage_since, t1, sizeof(t1)), fmt_time(c->first_seen, t2, sizeof(t2)),
        fmt_time(c->last_activity, t3, sizeof(t3)), fmt_time(c->first_purchase, t4, sizeof(t4)),
        fmt_time(c->last_purchase, t5, sizeof(t5)), (unsigned)c->purchases, c->revenue,
        (unsigned)c->logins, (unsigned)c->visits, (unsigned)c->purchase_days, (int)c->first_pday,
        (int)c->last_pday, c->first_day_revenue, (int)c->active_anchor, c->active_bits[0],
        c->active_bits[1], pdays ? pdays : "", c->channel[0] ? c->channel : "-", (int)c->pdays_from,
        fmt_time(c->channel_ts, t6, sizeof(t6)), fnv1a(c, sizeof(*c)));
    free(pdays);
    free(c);
    return rc;
}

static int dump_key(redisContext *c, const char *key, size_t len, void *opaque)
{
    struct dump_ctx *x = opaque;
    char shardtag[32];
    const char *rest;
    redisReply *r;
    long shard = -1;
    int rc = 0, n = 0;

    if (len > 6 && memcmp(key, "clv:{s", 6) == 0 && sscanf(key + 6, "%ld}:%n", &shard, &n) == 1 &&
        n > 0) {
        rest = key + 6 + n;
        snprintf(shardtag, sizeof(shardtag), "s%ld", shard);
        size_t restlen = len - (size_t)(rest - key);
        if (restlen > 2 && memcmp(rest, "c:", 2) == 0) {
            r = redisCommand(c, "GET %b", key, len);
            if (r == NULL)
                return -1;
            rc = dump_customer(x, rest + 2, restlen - 2, shard, r);
            freeReplyObject(r);
            return rc;
        }
        if (restlen == 3 && memcmp(rest, "due", 3) == 0) {
            r = redisCommand(c, "ZRANGE %b 0 -1 WITHSCORES", key, len);
            if (r == NULL)
                return -1;
            /* which customers have an entry, not its score: an update that
             * only pushes a deadline later leaves the entry early (harmless,
             * the sweeper then writes the exact one), so scores depend on
             * how events fell into batches; the outputs show any late one */
            for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements && rc == 0;
                 i += 2)
                rc = lines_addf(&x->state, "D %s %s", shardtag, r->element[i]->str);
            freeReplyObject(r);
            return rc;
        }
        if ((restlen == 5 && memcmp(rest, "stats", 5) == 0) ||
            (restlen == 3 && memcmp(rest, "out", 3) == 0)) {
            int out = rest[0] == 'o';
            r = redisCommand(c, "HGETALL %b", key, len);
            if (r == NULL)
                return -1;
            for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements && rc == 0;
                 i += 2) {
                if (out) {
                    x->r->outbox_entries++;
                    rc = lines_addf(
                        &x->state, "O %s %s\t%.*s", shardtag, r->element[i]->str,
                        (int)(r->element[i + 1]->len > 120 ? 120 : r->element[i + 1]->len),
                        r->element[i + 1]->str);
                } else if (strcmp(r->element[i + 1]->str, "0") != 0) {
                    rc = lines_addf(&x->state, "S %s %s\t%s", shardtag, r->element[i]->str,
                                    r->element[i + 1]->str);
                }
            }
            freeReplyObject(r);
            return rc;
        }
        if (restlen == 5 && memcmp(rest, "lease", 5) == 0)
            return 0; /* who sweeps a shard: run-specific */
    }
    if (len > 11 && memcmp(key, "clv:{clock}", 11) == 0)
        return 0; /* the group's event clock: run-specific */
    if (len == 8 && memcmp(key, "clv:meta", 8) == 0) {
        r = redisCommand(c, "HGETALL clv:meta");
        if (r == NULL)
            return -1;
        for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements && rc == 0; i += 2)
            rc = lines_addf(&x->state, "M %s\t%s", r->element[i]->str, r->element[i + 1]->str);
        freeReplyObject(r);
        return rc;
    }
    r = redisCommand(c, "TYPE %b", key, len);
    rc = lines_addf(&x->state, "? %.*s\tunexpected key of type %s", (int)len, key,
                    r != NULL && r->type == REDIS_REPLY_STATUS ? r->str : "?");
    if (r)
        freeReplyObject(r);
    return rc;
}

static int dump_redis(struct scen_world *w, struct scenario_result *r, char *err, size_t errlen)
{
    struct dump_ctx x = {r, {0}, 0};
    char why[H_ERRLEN];
    redisReply *rep;
    int rc;

    /* a cluster: meta lives on one master; every key is dumped where it
     * lives (the masters' SCANs) */
    rep = h_redis_key_command(&w->redis, "HGET clv:meta shards");
    if (rep != NULL && rep->type == REDIS_REPLY_STRING)
        x.shards = strtol(rep->str, NULL, 10);
    if (rep)
        freeReplyObject(rep);
    rc = h_redis_scan(&w->redis, dump_key, &x, why, sizeof(why));
    lines_unique(&x.state);
    r->state = x.state.v;
    r->nstate = x.state.n;
    if (rc != 0)
        clv_seterr(err, errlen, "redis dump failed: %s", why);
    return rc;
}

int scenario_collect(struct scen_world *w, struct scenario_result *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof(*r));
    if (collect_outputs(w, r, err, errlen) != 0)
        return -1;
    return dump_redis(w, r, err, errlen);
}

void scenario_result_describe(const struct scenario_result *r, const char *title, FILE *out)
{
    fprintf(out, "[scenario] %s: %zu output messages (", title, r->messages);
    for (int t = 0; h_output_topics[t] != NULL; t++)
        fprintf(out, "%s%s %zu", t ? ", " : "", h_output_topics[t], r->per_topic[t]);
    fprintf(out, "), %zu distinct; %zu customers, %zu state lines\n", r->noutputs, r->customers,
            r->nstate);
}

int scenario_result_check(const struct scenario_result *r, const char *title, FILE *out)
{
    int problems = 0;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(out, "[scenario] %s: ", title);                                                \
            fprintf(out, __VA_ARGS__);                                                             \
            fputc('\n', out);                                                                      \
            problems++;                                                                            \
        }                                                                                          \
    } while (0)
    CHECK(r->dead_letters == 0, "%zu dead letter(s) for valid input", r->dead_letters);
    CHECK(r->outbox_entries == 0, "%zu outbox entr(ies) left at the end", r->outbox_entries);
    CHECK(r->inconsistent_ids == 0,
          "%zu (topic, event_id) published with differing contents (see the diff)",
          r->inconsistent_ids);
    CHECK(r->bad_keys == 0, "%zu customer key(s) undecodable or in the wrong shard", r->bad_keys);
    CHECK(r->truncated == 0,
          "%zu output partition(s) lost their oldest messages (the mock cluster keeps ~5 MB per "
          "partition: use more output partitions)",
          r->truncated);
    CHECK(r->transition_ids == r->transitions,
          "%zu distinct stage/tier change ids published, but the customers' sequence numbers "
          "add up to %zu transitions (lost triggers?)",
          r->transition_ids, r->transitions);
    CHECK(r->noutputs > 0 && r->customers > 0, "nothing happened");
#undef CHECK
    if (r->inconsistent_ids > 0) {
        for (size_t i = 1; i < r->ndigests; i++)
            if (same_key(r->digests[i - 1], r->digests[i]))
                fprintf(out, "    %s\n    %s\n", r->digests[i - 1], r->digests[i]);
        for (size_t i = 1; i < r->noutputs; i++)
            if (same_key(r->outputs[i - 1], r->outputs[i]))
                fprintf(out, "    %s\n    %s\n", r->outputs[i - 1], r->outputs[i]);
    }
    return problems;
}

/* ---- comparing ------------------------------------------------------------------------- */

/* Print the tokens of two "name=value ..." values that differ. */
static void print_field_diff(const char *a, const char *b, FILE *out)
{
    char *ca = strdup(a), *cb = strdup(b), *sa = NULL, *sb = NULL;
    char *ta = ca ? strtok_r(ca, " ", &sa) : NULL, *tb = cb ? strtok_r(cb, " ", &sb) : NULL;

    while (ta != NULL || tb != NULL) {
        if (ta == NULL || tb == NULL || strcmp(ta, tb) != 0)
            fprintf(out, "      want %-40s got %s\n", ta ? ta : "(none)", tb ? tb : "(none)");
        ta = ta ? strtok_r(NULL, " ", &sa) : NULL;
        tb = tb ? strtok_r(NULL, " ", &sb) : NULL;
    }
    free(ca);
    free(cb);
}

/* Merge two sorted line lists; print and count what is only in one. */
static size_t diff_lines(const char *what, char **a, size_t na, char **b, size_t nb,
                         size_t max_lines, size_t *printed, FILE *out)
{
    size_t i = 0, j = 0, diffs = 0;

    while (i < na || j < nb) {
        int c = i >= na ? 1 : j >= nb ? -1 : strcmp(a[i], b[j]);
        if (c == 0) {
            i++, j++;
            continue;
        }
        diffs++;
        if (i < na && j < nb && same_key(a[i], b[j])) {
            /* the same key with another value */
            if (*printed < max_lines) {
                const char *va = a[i] + key_len(a[i]), *vb = b[j] + key_len(b[j]);
                fprintf(out, "  ~ %s %.*s\n", what, (int)key_len(a[i]), a[i]);
                if (strchr(va, '=') != NULL)
                    print_field_diff(va + 1, vb + 1, out);
                else
                    fprintf(out, "      want %s\n      got  %s\n", va + 1, vb + 1);
                (*printed)++;
            }
            i++, j++;
            continue;
        }
        if (c < 0) {
            if (*printed < max_lines)
                fprintf(out, "  - %s missing: %s\n", what, a[i]);
            i++;
        } else {
            if (*printed < max_lines)
                fprintf(out, "  + %s unexpected: %s\n", what, b[j]);
            j++;
        }
        (*printed)++;
    }
    return diffs;
}

int scenario_result_save(const struct scenario_result *r, const char *path)
{
    FILE *f = fopen(path, "w");

    if (f == NULL)
        return -1;
    for (size_t i = 0; i < r->noutputs; i++)
        fprintf(f, "%s\n", r->outputs[i]);
    for (size_t i = 0; i < r->ndigests; i++)
        fprintf(f, "%s\n", r->digests[i]);
    for (size_t i = 0; i < r->nstate; i++)
        fprintf(f, "%s\n", r->state[i]);
    return fclose(f);
}

size_t scenario_compare(const struct scenario_result *ref, const struct scenario_result *got,
                        size_t max_lines, FILE *out)
{
    size_t printed = 0, d_out, d_dig, d_state;

    d_out = diff_lines("output", ref->outputs, ref->noutputs, got->outputs, got->noutputs,
                       max_lines, &printed, out);
    d_state = diff_lines("redis", ref->state, ref->nstate, got->state, got->nstate, max_lines,
                         &printed, out);
    /* contents beyond the tuple (snapshot, kind, risk, ...), once the
     * tuples agree */
    d_dig = diff_lines("output content", ref->digests, ref->ndigests, got->digests, got->ndigests,
                       d_out == 0 ? max_lines : 0, &printed, out);
    if (printed > max_lines)
        fprintf(out, "  ... %zu more difference(s) not shown\n", printed - max_lines);
    if (d_out + d_state + d_dig > 0)
        fprintf(out,
                "[scenario] %zu output tuple difference(s), %zu Redis state difference(s), %zu "
                "output content difference(s)\n",
                d_out, d_state, d_dig);
    return d_out + d_state + d_dig;
}

/* ---- the reference run ------------------------------------------------------------------ */

int scenario_run_clean(const struct scenario *s, struct scenario_result *ref, char *err,
                       size_t errlen)
{
    struct scen_world w;
    struct h_config cfg;
    struct h_clvd d = {0};
    struct scen_counts cnt;
    char cfgpath[H_PATHLEN + 64], group[64];
    int64_t t0 = h_mono_ms(), t1;
    int rc = -1;

    memset(ref, 0, sizeof(*ref));
    if (scen_world_start(&w, "clean", 1, 0, err, errlen) != 0)
        return -1;
    if (scenario_produce(s, &w, 1, err, errlen) != 0)
        goto out;
    snprintf(group, sizeof(group), "clvd-clean-%d", (int)getpid());
    if (scen_config(&w, &cfg, group) != 0) {
        clv_seterr(err, errlen, "config: out of memory");
        goto out;
    }
    rc = scen_config_write(&w, &cfg, "clean", cfgpath, sizeof(cfgpath), err, errlen);
    h_config_free(&cfg);
    if (rc != 0)
        goto out;
    rc = -1;
    t1 = h_mono_ms();
    if (scen_clvd_start(&w, &d, cfgpath, "clean", SCEN_IDLE_EXIT, err, errlen) != 0)
        goto out;
    if (h_clvd_wait_exit(&d, SCEN_RUN_TIMEOUT_MS, err, errlen) != 0) {
        scen_dump_log(&d, stderr);
        goto out;
    }
    fprintf(stderr, "[timing] reference: produced %zu events in %.1f s, clvd ran %.1f s\n", s->n,
            (double)(t1 - t0) / 1000.0, (double)(h_mono_ms() - t1) / 1000.0);
    if (scen_stopped_counts(d.log, &cnt) != 0) {
        scen_dump_log(&d, stderr);
        clv_seterr(err, errlen, "reference run: no \"stopped: consumed\" line in %s", d.log);
        goto out;
    }
    if (cnt.consumed != s->n || cnt.applied != s->n || cnt.duplicates != 0) {
        scen_dump_log(&d, stderr);
        clv_seterr(
            err, errlen,
            "reference run: consumed %llu, applied %llu, duplicates %llu; want %zu, %zu, 0%s",
            (unsigned long long)cnt.consumed, (unsigned long long)cnt.applied,
            (unsigned long long)cnt.duplicates, s->n, s->n,
            cnt.consumed < s->n ? " (clvd --exit-when-idle " SCEN_IDLE_EXIT
                                  " exited before the input was idle that long)"
                                : "");
        goto out;
    }
    if (scenario_collect(&w, ref, err, errlen) != 0)
        goto out;
    scenario_result_describe(ref, "reference", stderr);
    if (scenario_result_check(ref, "reference", stderr) != 0 ||
        ref->customers != (size_t)s->customers + 1) {
        clv_seterr(err, errlen, "the reference run is not sound (%zu customers in Redis, want %d)",
                   ref->customers, s->customers + 1);
        goto out;
    }
    rc = 0;
out:
    h_clvd_kill9(&d);
    if (rc != 0)
        scenario_result_free(ref);
    scen_world_stop(&w);
    return rc;
}

/* ---- the tests' fixture ------------------------------------------------------------------ */

double scen_secs(int64_t t0)
{
    return (double)(h_mono_ms() - t0) / 1000.0;
}

int scen_fixture_setup(void **state)
{
    struct scen_fixture *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return -1;
    if (access(scen_clvd_binary(), X_OK) != 0) {
        fprintf(stderr, "clvd binary %s is missing: build the clvd target first\n",
                scen_clvd_binary());
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

int scen_fixture_teardown(void **state)
{
    struct scen_fixture *f = *state;

    for (int i = 0; i < SCEN_MAX_CLVD; i++) {
        h_clvd_kill9(&f->d[i]);
        if (!f->passed)
            scen_dump_log(&f->d[i], stderr);
    }
    for (int i = 0; !f->passed && i < f->w.redis.masters; i++)
        h_dump_file(f->w.redis.node[i].log, "redis-server log", 4096, stderr);
    if (!f->passed && f->w.redis.masters == 0 && f->w.redis.log[0] != '\0')
        h_dump_file(f->w.redis.log, "redis-server log", 4096, stderr);
    scen_world_stop(&f->w);
    scenario_result_free(&f->ref);
    scenario_result_free(&f->got);
    scenario_free(&f->s);
    free(f);
    return 0;
}

int scen_prepare(struct scen_fixture *f, uint64_t seed, const char *name, int brokers, int persist,
                 int copies, int throttle, char *err, size_t errlen)
{
    struct h_config cfg;
    int64_t t0 = h_mono_ms();
    int rc;

    if (scenario_generate(&f->s, seed, SCEN_CUSTOMERS, err, errlen) != 0)
        return -1;
    scenario_describe(&f->s, stderr);
    if (scenario_run_clean(&f->s, &f->ref, err, errlen) != 0)
        return -1;
    fprintf(stderr, "[timing] reference result in %.1f s\n", scen_secs(t0));
    if (world_start(&f->w, name, brokers, persist, f->masters, err, errlen) != 0)
        return -1;
    t0 = h_mono_ms();
    if (scenario_produce(&f->s, &f->w, copies, err, errlen) != 0)
        return -1;
    fprintf(stderr, "[timing] produced %zu message(s) in %.1f s\n", f->s.n * (size_t)copies,
            scen_secs(t0));
    if (throttle)
        scen_throttle(&f->w, SCEN_RTT_MS);
    snprintf(f->group, sizeof(f->group), "clvd-%s-%d", name, (int)getpid());
    if (scen_config(&f->w, &cfg, f->group) != 0) {
        clv_seterr(err, errlen, "config: out of memory");
        return -1;
    }
    rc = scen_config_write(&f->w, &cfg, name, f->config, sizeof(f->config), err, errlen);
    h_config_free(&cfg);
    return rc;
}

int scen_finish(struct scen_fixture *f, struct h_clvd *d, const char *title, char *err,
                size_t errlen)
{
    int64_t t0 = h_mono_ms();
    struct scen_counts cnt;
    size_t diffs;

    if (h_clvd_wait_exit(d, SCEN_RUN_TIMEOUT_MS, err, errlen) != 0)
        return -1;
    fprintf(stderr, "[timing] %s: last clvd run exited %.1f s after the wait began\n", title,
            scen_secs(t0));
    if (scen_stopped_counts(d->log, &cnt) == 0)
        fprintf(stderr, "[scenario] %s: last run consumed %llu, applied %llu, duplicates %llu\n",
                title, (unsigned long long)cnt.consumed, (unsigned long long)cnt.applied,
                (unsigned long long)cnt.duplicates);
    scenario_result_free(&f->got);
    scen_throttle(&f->w, 0);
    for (int16_t api = 0; api < 64 && f->w.kafka.mcluster != NULL; api++)
        rd_kafka_mock_clear_request_errors(f->w.kafka.mcluster, api); /* injected, unused */
    if (scenario_collect(&f->w, &f->got, err, errlen) != 0)
        return -1;
    scenario_result_describe(&f->got, title, stderr);
    diffs = (size_t)scenario_result_check(&f->got, title, stderr);
    diffs += scenario_compare(&f->ref, &f->got, 60, stderr);
    if (diffs > 0 && f->w.dir[0] != '\0') {
        char a[H_PATHLEN + 32], b[H_PATHLEN + 32];
        snprintf(a, sizeof(a), "%s/reference.txt", f->w.dir);
        snprintf(b, sizeof(b), "%s/result.txt", f->w.dir);
        if (scenario_result_save(&f->ref, a) == 0 && scenario_result_save(&f->got, b) == 0)
            fprintf(stderr, "[scenario] both results written: diff %s %s\n", a, b);
    }
    if (diffs > 0) {
        clv_seterr(err, errlen, "%s: the result differs from the reference run (see above)", title);
        return -1;
    }
    fprintf(stderr, "[scenario] %s: same result as the reference (%zu outputs, %zu state lines)\n",
            title, f->got.noutputs, f->got.nstate);
    return 0;
}
