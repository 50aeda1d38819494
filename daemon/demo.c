/* demo.c -- `clvd demo`; see demo.h.
 *
 * Who does what:
 *
 *   main thread    the shop: N customers drawn from BG/NBD + Gamma-Gamma,
 *                  whose events are produced in event-time order, paced so
 *                  that 2025 takes about PACE_WALL_MS of wall time; the
 *                  watcher: a consumer assigned every output topic from the
 *                  beginning, which prints the transitions and counts them;
 *   daemon thread  clvd_run() on a temporary config: brokers = the embedded
 *                  Kafka's bootstrap address, Redis = the private socket,
 *                  clock.mode = event (the year runs on event time);
 *   child process  a private redis-server on a unix socket in the temp dir.
 *
 * While the demo runs, file descriptor 2 points at <tmpdir>/clvd.log, so the
 * daemon's and librdkafka's log lines never garble the screen; the demo's own
 * messages go to the saved terminal stderr.  Everything is torn down on every
 * exit path: daemon stopped and joined, Kafka handles destroyed, redis-server
 * sent SIGTERM and reaped, temp dir removed (kept, and named, on failure).
 *
 * The year: clvd's first message is a deliberately bad event, whose dead
 * letter says that clvd is consuming; the simulated clock then starts.  Four
 * bad events in all show the dead-letter path.  After the last event of 2025,
 * the clock customer's visit at 2026-01-01T00:00Z brings the event-time
 * watermark to the end of the year; once its transition has arrived and the
 * outputs have been quiet for SETTLE_QUIET_MS, the summary is printed from
 * Redis (customers per stage) and from the output topics.
 *
 * The only global state is the signal flag: before clvd_run() installs its
 * own handlers, Ctrl-C lands here; afterwards it stops the daemon, and the
 * demo notices that the daemon thread has ended. */
#include "demo.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>
#include <yajl/yajl_tree.h>

#include "common.h"
#include "config.h"
#include "customer.h"
#include "daemon.h"
#include "embedded.h"
#include "event.h"
#include "keys.h"
#include "loadgen.h"
#include "output.h"
#include "timeutil.h"

static volatile sig_atomic_t demo_signalled;

static void on_demo_signal(int sig)
{
    (void)sig;
    demo_signalled = 1;
}

/* ---- constants ------------------------------------------------------------------- */

#define SIM_START_MS 1735689600000LL /* 2025-01-01T00:00:00Z */
#define SIM_END_MS 1767225600000LL   /* 2026-01-01T00:00:00Z */
#define SIM_YEAR_MS (SIM_END_MS - SIM_START_MS)
#define SIM_DAYS 365
#define PACE_WALL_MS 32000LL /* wall time of the simulated year */

#define DEMO_SHARDS 64
#define DEMO_GROUP "clvd-demo"
#define CLOCK_CUSTOMER "demo-clock"
#define SETTLE_QUIET_MS 2000      /* outputs settled: nothing new for this long */
#define SETTLE_TIMEOUT_MS 30000   /* after the last event was produced */
#define WARMUP_TIMEOUT_MS 30000   /* for clvd to start consuming */
#define PROGRESS_TTY_MS 100       /* progress line redraw on a terminal */
#define PROGRESS_PLAIN_MS 5000    /* progress line when stdout is not a terminal */
#define LINES_PER_KIND_PER_SEC 2. /* 10 kinds: at most ~20 lines/s */
#define LINE_BURST 2.
#define PRODUCE_BUDGET 20000 /* events per loop turn, so the screen stays live */
#define WATCH_BUDGET 5000    /* output messages per loop turn */
#define BACKLOG_MAX 60000    /* events produced but not yet seen applied, see backlog() */

/* The generative model, in days and the shop's currency.  BG/NBD: while
 * alive a customer buys at Poisson rate lambda ~ Gamma(BG_R, rate BG_ALPHA)
 * and drops out after each purchase with probability p ~ Beta(BG_A, BG_B)
 * (the CDNOW shape parameters, rates scaled so the shop looks lively: one
 * purchase per 15 days on average).  Gamma-Gamma: order values
 * ~ Gamma(GG_P, rate nu), nu ~ Gamma(GG_Q, rate GG_GAMMA) (mean ~70).
 * Around that: logins and visits at a few times the purchase rate while
 * alive, window shoppers who never buy, and some customers who come back
 * after a long absence (dropped-out customers never do in BG/NBD, but the
 * win-back campaigns need someone to win back). */
#define BG_R (0.243 * 4.)
#define BG_ALPHA (BG_R * 15.)
#define BG_A 0.793
#define BG_B 2.426
#define GG_P 6.25
#define GG_Q 3.74
#define GG_GAMMA 30.88
#define LAMBDA_MIN (1. / 150.)
#define LAMBDA_MAX 0.5
#define LOGINS_PER_PURCHASE 2.
#define VISITS_PER_PURCHASE 3.
#define BUYER_SHARE 0.75
#define ACQUISITION_DAYS 300.
#define FIRST_PURCHASE_MEAN_DAYS 2.
#define BROWSE_GAP_MEAN_DAYS 10.
#define BROWSE_STOP 0.4
#define COMEBACK_BUYER 0.35
#define COMEBACK_BROWSER 0.25
#define COMEBACK_MIN_DAYS 60.
#define COMEBACK_MEAN_DAYS 80.

static const char *const channels[] = {"search", "social", "email", "direct"};
static const double channel_weights[] = {0.40, 0.25, 0.15, 0.20};

/* ---- options ----------------------------------------------------------------------- */

struct demo_opts {
    long customers;
    uint64_t seed;
    int fast;
    int quiet;
};

static void demo_usage(FILE *out)
{
    fprintf(out, "usage: clvd demo [--customers N] [--seed S] [--fast] [--quiet]\n"
                 "  --customers N  customers in the synthetic shop (default 2000)\n"
                 "  --seed S       random seed (default 1): the same seed, the same year\n"
                 "  --fast         no pacing: produce the year as fast as clvd takes it\n"
                 "  --quiet        no per-transition lines: progress and summary only\n");
}

static int parse_number(const char *s, unsigned long long max, unsigned long long *out)
{
    char *end;

    errno = 0;
    *out = strtoull(s, &end, 10);
    return s[0] >= '0' && s[0] <= '9' && *end == '\0' && errno == 0 && *out <= max ? 0 : -1;
}

static int bad_value(const char *opt, const char *value)
{
    fprintf(stderr, "clvd demo: %s: bad value \"%s\" (%s)\n", opt, value,
            strcmp(opt, "--customers") == 0 ? "1 to 1000000" : "a non-negative integer");
    return 2;
}

/* 0: run; 1: help printed; 2: bad usage (message printed). */
static int parse_opts(int argc, char **argv, struct demo_opts *o)
{
    static const struct option longopts[] = {
        {"customers", required_argument, NULL, 'n'},
        {"seed", required_argument, NULL, 's'},
        {"fast", no_argument, NULL, 'f'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char **args = calloc((size_t)argc + 2, sizeof(*args));
    unsigned long long v;
    int ch, rc = 0;

    if (args == NULL)
        return 2;
    args[0] = "clvd demo";
    memcpy(args + 1, argv, sizeof(*args) * (size_t)argc);
    *o = (struct demo_opts){2000, 1, 0, 0};
    optind = 0; /* glibc: start a fresh scan */
    while (rc == 0 && (ch = getopt_long(argc + 1, args, "h", longopts, NULL)) != -1) {
        if (ch == 'n' && parse_number(optarg, 1000000, &v) == 0 && v > 0)
            o->customers = (long)v;
        else if (ch == 's' && parse_number(optarg, UINT64_MAX, &v) == 0)
            o->seed = v;
        else if (ch == 'n' || ch == 's')
            rc = bad_value(ch == 'n' ? "--customers" : "--seed", optarg);
        else if (ch == 'f')
            o->fast = 1;
        else if (ch == 'q')
            o->quiet = 1;
        else if (ch == 'h')
            rc = 1;
        else
            rc = 2;
    }
    if (rc == 0 && optind < argc + 1) {
        fprintf(stderr, "clvd demo: unexpected argument \"%s\"\n", args[optind]);
        rc = 2;
    }
    if (rc != 0)
        demo_usage(rc == 1 ? stdout : stderr);
    free(args);
    return rc;
}

/* ---- random numbers ------------------------------------------------------------------ */

/* One splitmix64 word of state per customer, so that each customer's history
 * depends on the seed and its index only; the variates are loadgen's. */
struct rng {
    uint64_t s;
};

static uint64_t rng_bits(void *state)
{
    return loadgen_splitmix64(state);
}

/* Uniform in (0, 1). */
static double rng_unit(struct rng *r)
{
    return loadgen_uniform(rng_bits, &r->s);
}

static double rng_exp(struct rng *r, double mean)
{
    return mean * loadgen_exponential(rng_bits, &r->s);
}

static double rng_gamma(struct rng *r, double shape, double scale)
{
    return loadgen_gamma(rng_bits, &r->s, shape) * scale;
}

static double rng_beta(struct rng *r, double a, double b)
{
    return loadgen_beta(rng_bits, &r->s, a, b);
}

static int rng_pick(struct rng *r, const double *weights, int n)
{
    double u = rng_unit(r);

    for (int i = 0; i < n - 1; i++) {
        if (u < weights[i])
            return i;
        u -= weights[i];
    }
    return n - 1;
}

/* ---- the shop ---------------------------------------------------------------------- */

enum shopper_phase { SHOP_BROWSING, SHOP_FIRST_PURCHASE, SHOP_ALIVE, SHOP_GONE };

/* One customer, generated lazily: only its next event is known. */
struct shopper {
    struct rng rng;
    clv_ms next_ts;
    int8_t next_type; /* enum clv_event_type; -1 when the customer is done */
    int8_t phase;     /* enum shopper_phase */
    int8_t channel;
    int8_t buyer;
    uint32_t nevents;
    double lambda; /* purchases per day while alive */
    double p_drop; /* dropout probability after each purchase */
    double nu;     /* Gamma-Gamma spend rate: mean order value GG_P / nu */
};

struct shop {
    struct shopper *sh;
    uint32_t *heap; /* customers by (next_ts, index) */
    size_t nheap;
    long n;
    int idwidth;
    int next_bad;               /* index into bad_events of the next one to produce */
    clv_ms last_ts;             /* event time of the last event produced */
    long customers_on;          /* customers with at least one event produced */
    uint64_t events;            /* shop events produced */
    uint64_t through[SIM_DAYS]; /* events produced up to the end of each finished day */
    long day;                   /* day of the last event produced, -1 none */
    uint64_t produced[3];
    uint64_t bad_produced;
};

/* Count an event of time ts (events come in time order). */
static void shop_count(struct shop *s, clv_ms ts)
{
    long day = (long)((ts - SIM_START_MS) / CLV_MS_PER_DAY);

    for (; s->day < day; s->day++)
        if (s->day >= 0)
            s->through[s->day] = s->events;
    s->day = day;
    s->events++;
}

/* Events produced with a time on or before `day` (-1: none). */
static uint64_t shop_events_through(const struct shop *s, long day)
{
    if (day < 0)
        return 0;
    return day >= s->day ? s->events : s->through[day];
}

static clv_ms days_ms(double days)
{
    return (clv_ms)llround(days * (double)CLV_MS_PER_DAY);
}

static void format_id(char *buf, size_t len, const struct shop *s, long i)
{
    snprintf(buf, len, "c%0*ld", s->idwidth, i);
}

/* Schedule the next event `after_days` from `from`, or end the customer
 * when that falls after the simulated year. */
static void shopper_schedule(struct shopper *c, clv_ms from, double after_days,
                             enum clv_event_type type)
{
    c->next_ts = from + days_ms(after_days);
    c->next_type = c->next_ts < SIM_END_MS ? (int8_t)type : -1;
}

/* The customer leaves; some come back after a long absence. */
static void shopper_leave(struct shopper *c, clv_ms now)
{
    double back = c->buyer ? COMEBACK_BUYER : COMEBACK_BROWSER;
    double after = COMEBACK_MIN_DAYS + rng_exp(&c->rng, COMEBACK_MEAN_DAYS);

    if (rng_unit(&c->rng) >= back) {
        c->phase = SHOP_GONE;
        c->next_type = -1;
        return;
    }
    if (c->buyer) {
        c->phase = SHOP_ALIVE;
        c->p_drop = rng_beta(&c->rng, BG_A, BG_B);
        shopper_schedule(c, now, after, rng_unit(&c->rng) < 0.5 ? CLV_EV_PURCHASE : CLV_EV_VISIT);
    } else {
        c->phase = SHOP_BROWSING;
        shopper_schedule(c, now, after, CLV_EV_VISIT);
    }
}

/* While alive: purchases, logins and visits as one Poisson process. */
static void shopper_next_alive(struct shopper *c, clv_ms now)
{
    double total = 1. + LOGINS_PER_PURCHASE + VISITS_PER_PURCHASE;
    const double shares[] = {1. / total, LOGINS_PER_PURCHASE / total, VISITS_PER_PURCHASE / total};
    double after = rng_exp(&c->rng, 1. / (c->lambda * total));

    shopper_schedule(c, now, after, (enum clv_event_type)rng_pick(&c->rng, shares, 3));
}

/* Called after the pending event was produced: draw the one after it. */
static void shopper_advance(struct shopper *c)
{
    clv_ms now = c->next_ts;
    enum clv_event_type done = (enum clv_event_type)c->next_type;

    switch (c->phase) {
    case SHOP_FIRST_PURCHASE:
        c->phase = SHOP_ALIVE;
        shopper_schedule(c, now, rng_exp(&c->rng, FIRST_PURCHASE_MEAN_DAYS), CLV_EV_PURCHASE);
        break;
    case SHOP_BROWSING:
        if (rng_unit(&c->rng) < BROWSE_STOP)
            shopper_leave(c, now);
        else
            shopper_schedule(c, now, rng_exp(&c->rng, BROWSE_GAP_MEAN_DAYS), CLV_EV_VISIT);
        break;
    case SHOP_ALIVE:
        if (done == CLV_EV_PURCHASE && rng_unit(&c->rng) < c->p_drop)
            shopper_leave(c, now);
        else
            shopper_next_alive(c, now);
        break;
    default:
        c->next_type = -1;
    }
}

static void shopper_init(struct shopper *c, uint64_t seed, long index)
{
    double lambda;

    memset(c, 0, sizeof(*c));
    c->rng.s = seed * 0x9e3779b97f4a7c15ULL ^ ((uint64_t)index << 20) ^ 0x5eedULL;
    loadgen_splitmix64(&c->rng.s);
    c->channel = (int8_t)rng_pick(&c->rng, channel_weights, (int)CLV_ARRAY_LEN(channels));
    c->buyer = rng_unit(&c->rng) < BUYER_SHARE;
    lambda = rng_gamma(&c->rng, BG_R, 1. / BG_ALPHA);
    c->lambda = fmin(fmax(lambda, LAMBDA_MIN), LAMBDA_MAX);
    c->p_drop = rng_beta(&c->rng, BG_A, BG_B);
    c->nu = rng_gamma(&c->rng, GG_Q, 1. / GG_GAMMA);
    c->phase = c->buyer ? SHOP_FIRST_PURCHASE : SHOP_BROWSING;
    /* everyone arrives with a visit: a prospect first */
    shopper_schedule(c, SIM_START_MS, rng_unit(&c->rng) * ACQUISITION_DAYS, CLV_EV_VISIT);
}

static double shopper_order_value(struct shopper *c)
{
    return round(rng_gamma(&c->rng, GG_P, 1. / c->nu) * 100.) / 100.;
}

static int heap_less(const struct shop *s, uint32_t a, uint32_t b)
{
    clv_ms ta = s->sh[a].next_ts, tb = s->sh[b].next_ts;

    return ta < tb || (ta == tb && a < b);
}

static void heap_down(struct shop *s, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        uint32_t tmp;

        if (l < s->nheap && heap_less(s, s->heap[l], s->heap[m]))
            m = l;
        if (r < s->nheap && heap_less(s, s->heap[r], s->heap[m]))
            m = r;
        if (m == i)
            return;
        tmp = s->heap[i];
        s->heap[i] = s->heap[m];
        s->heap[m] = tmp;
        i = m;
    }
}

static int shop_init(struct shop *s, long n, uint64_t seed, char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    s->sh = calloc((size_t)n, sizeof(*s->sh));
    s->heap = calloc((size_t)n, sizeof(*s->heap));
    if (s->sh == NULL || s->heap == NULL) {
        clv_seterr(err, errlen, "out of memory for %ld customers", n);
        return -1;
    }
    s->n = n;
    s->day = -1;
    s->idwidth = 4;
    for (long m = n - 1; m >= 10000; m /= 10)
        s->idwidth++;
    for (long i = 0; i < n; i++) {
        shopper_init(&s->sh[i], seed, i);
        if (s->sh[i].next_type >= 0)
            s->heap[s->nheap++] = (uint32_t)i;
    }
    for (size_t i = s->nheap / 2; i-- > 0;)
        heap_down(s, i);
    return 0;
}

static void shop_free(struct shop *s)
{
    free(s->sh);
    free(s->heap);
    memset(s, 0, sizeof(*s));
}

/* Render the pending event of customer i as the JSON of SPEC section 3. */
static size_t shop_render(struct shop *s, long i, char *buf, size_t len)
{
    struct shopper *c = &s->sh[i];
    char id[24], ts[32];
    int n;

    format_id(id, sizeof(id), s, i);
    rfc3339_format(c->next_ts, ts, sizeof(ts));
    c->nevents++;
    if (c->next_type == CLV_EV_PURCHASE)
        n = snprintf(buf, len,
                     "{\"event_id\":\"%s-%u\",\"customer_id\":\"%s\",\"ts\":\"%s\",\"type\":"
                     "\"purchase\",\"amount\":%.2f,\"order_id\":\"o-%s-%u\",\"channel\":\"%s\"}",
                     id, c->nevents, id, ts, shopper_order_value(c), id, c->nevents,
                     channels[c->channel]);
    else
        n = snprintf(buf, len,
                     "{\"event_id\":\"%s-%u\",\"customer_id\":\"%s\",\"ts\":\"%s\",\"type\":\"%s\","
                     "\"channel\":\"%s\"}",
                     id, c->nevents, id, ts, event_type_name((enum clv_event_type)c->next_type),
                     channels[c->channel]);
    return n < 0 ? 0 : (size_t)n >= len ? len - 1 : (size_t)n;
}

/* ---- deliberately bad input (shows the dead-letter path) ------------------------------- */

struct bad_event {
    double day; /* of the simulated year */
    enum clv_event_type topic;
};

/* Rendered by bad_render.  The first is produced before the year starts: its
 * dead letter tells that clvd has joined its consumer group (the embedded
 * Kafka delays a group's first assignment by 3 s) and is consuming. */
static const struct bad_event bad_events[] = {
    {0., CLV_EV_VISIT},       /* invalid_json */
    {120.5, CLV_EV_PURCHASE}, /* negative_amount */
    {212.5, CLV_EV_LOGIN},    /* missing_field:customer_id */
    {304.5, CLV_EV_VISIT},    /* future_timestamp */
};

static size_t bad_render(int k, char *buf, size_t len)
{
    char ts[32];
    int n;

    rfc3339_format(SIM_START_MS + days_ms(bad_events[k].day), ts, sizeof(ts));
    switch (k) {
    case 0:
        n = snprintf(buf, len, "{\"event_id\":\"bad-1\",\"customer_id\":\"c0000\",\"ts\":");
        break;
    case 1:
        n = snprintf(buf, len,
                     "{\"event_id\":\"bad-2\",\"customer_id\":\"c0000\",\"ts\":\"%s\","
                     "\"amount\":-19.99}",
                     ts);
        break;
    case 2:
        n = snprintf(buf, len, "{\"event_id\":\"bad-3\",\"ts\":\"%s\"}", ts);
        break;
    default:
        /* a month ahead of the wall clock */
        rfc3339_format(clv_now_ms() + 30 * CLV_MS_PER_DAY, ts, sizeof(ts));
        n = snprintf(buf, len, "{\"event_id\":\"bad-4\",\"customer_id\":\"c0000\",\"ts\":\"%s\"}",
                     ts);
    }
    return n < 0 ? 0 : (size_t)n >= len ? len - 1 : (size_t)n;
}

/* ---- Kafka: producer ----------------------------------------------------------------- */

struct sender {
    rd_kafka_t *rk;
    const char *topics[3]; /* by enum clv_event_type */
    uint64_t failed;       /* delivery reports with an error */
    char first_error[CLV_ERRLEN];
};

/* Served by rd_kafka_poll, in the main thread. */
static void sender_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct sender *s = opaque;

    (void)rk;
    if (m->err && s->failed++ == 0)
        snprintf(s->first_error, sizeof(s->first_error), "%s", rd_kafka_err2str(m->err));
}

static int sender_check(const struct sender *s, char *err, size_t errlen)
{
    if (s->failed == 0)
        return 0;
    clv_seterr(err, errlen, "%llu event(s) not delivered to Kafka: %s",
               (unsigned long long)s->failed, s->first_error);
    return -1;
}

static int kafka_conf(rd_kafka_conf_t *conf, const char *const (*kv)[2], size_t n, char *err,
                      size_t errlen)
{
    char kerr[256];

    for (size_t i = 0; i < n; i++)
        if (rd_kafka_conf_set(conf, kv[i][0], kv[i][1], kerr, sizeof(kerr)) != RD_KAFKA_CONF_OK) {
            clv_seterr(err, errlen, "kafka %s: %s", kv[i][0], kerr);
            return -1;
        }
    return 0;
}

static int sender_open(struct sender *s, const char *brokers, const struct clv_kafka_topics *t,
                       char *err, size_t errlen)
{
    const char *const kv[][2] = {
        {"bootstrap.servers", brokers},
        {"enable.idempotence", "true"},
        {"linger.ms", "5"},
        {"queue.buffering.max.messages", "1000000"},
        {"queue.buffering.max.kbytes", "1048576"},
        {"log_level", "4"},
    };
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char kerr[256];

    s->topics[CLV_EV_PURCHASE] = t->purchases;
    s->topics[CLV_EV_LOGIN] = t->logins;
    s->topics[CLV_EV_VISIT] = t->visits;
    if (kafka_conf(conf, kv, CLV_ARRAY_LEN(kv), err, errlen) != 0) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_conf_set_opaque(conf, s);
    rd_kafka_conf_set_dr_msg_cb(conf, sender_dr);
    s->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, kerr, sizeof(kerr));
    if (s->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        clv_seterr(err, errlen, "kafka producer: %s", kerr);
        return -1;
    }
    return 0;
}

static int sender_send(struct sender *s, enum clv_event_type topic, const char *key,
                       const char *value, size_t len, char *err, size_t errlen)
{
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            s->rk, RD_KAFKA_V_TOPIC(s->topics[topic]), RD_KAFKA_V_KEY(key, strlen(key)),
            RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            return 0;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            clv_seterr(err, errlen, "produce to %s: %s", s->topics[topic], rd_kafka_err2str(e));
            return -1;
        }
        rd_kafka_poll(s->rk, 10);
    }
}

static void sender_close(struct sender *s)
{
    if (s->rk == NULL)
        return;
    rd_kafka_flush(s->rk, 2000);
    rd_kafka_destroy(s->rk);
    s->rk = NULL;
}

/* ---- Kafka: the watcher of the output topics ------------------------------------------- */

enum { KIND_RETURNED = CLV_STAGE_COUNT, KIND_TIER, KIND_COUNT };

#define MAX_DLQ_REASONS 16
struct reason_tally {
    char reason[48];
    uint64_t n;
};

struct watcher {
    rd_kafka_t *rk;
    const char *topics[CLV_OUT_COUNT];
    uint64_t msgs[CLV_OUT_COUNT], dups;
    uint64_t entered[CLV_STAGE_COUNT], returned, tier_up, tier_down;
    uint64_t win_back[4]; /* dormant, churned, returned, won_back */
    struct reason_tally dlq[MAX_DLQ_REASONS];
    int ndlq;
    int8_t *stage;      /* current stage of each shop customer, from the stage changes */
    uint32_t *next_seq; /* per customer and customer topic: last seq + 1, for duplicates */
    int clock_stage;    /* the clock customer's stage */
    clv_ms clock_seen;  /* monotonic time its transition arrived; 0 = not yet */
    clv_ms last_msg;    /* monotonic time of the last output message */
    clv_ms max_at;      /* time of the newest transition seen, 0 none */
};

static const char *const win_back_kinds[] = {"dormant", "churned", "returned", "won_back"};

static int watcher_assign(struct watcher *w, char *err, size_t errlen)
{
    const struct rd_kafka_metadata *md;
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(16);
    rd_kafka_resp_err_t e = rd_kafka_metadata(w->rk, 1, NULL, &md, 10000);
    int found = 0;

    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_topic_partition_list_destroy(parts);
        clv_seterr(err, errlen, "kafka metadata: %s", rd_kafka_err2str(e));
        return -1;
    }
    for (int i = 0; i < md->topic_cnt; i++)
        for (int t = 0; t < CLV_OUT_COUNT; t++) {
            if (strcmp(md->topics[i].topic, w->topics[t]) != 0)
                continue;
            found++;
            for (int p = 0; p < md->topics[i].partition_cnt; p++)
                rd_kafka_topic_partition_list_add(parts, w->topics[t],
                                                  md->topics[i].partitions[p].id)
                    ->offset = RD_KAFKA_OFFSET_BEGINNING;
        }
    rd_kafka_metadata_destroy(md);
    e = found == CLV_OUT_COUNT ? rd_kafka_assign(w->rk, parts) : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
    rd_kafka_topic_partition_list_destroy(parts);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        clv_seterr(err, errlen, "kafka: cannot assign the output topics: %s", rd_kafka_err2str(e));
        return -1;
    }
    return 0;
}

static int watcher_open(struct watcher *w, const char *brokers, const struct clv_kafka_topics *t,
                        long customers, char *err, size_t errlen)
{
    const char *const kv[][2] = {
        {"bootstrap.servers", brokers},
        {"group.id", DEMO_GROUP "-watch"},
        {"enable.auto.commit", "false"},
        {"fetch.wait.max.ms", "10"},
        {"log_level", "4"},
    };
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char kerr[256];

    for (int i = 0; i < CLV_OUT_COUNT; i++)
        w->topics[i] = output_topic_name(t, (enum clv_out_topic)i);
    w->clock_stage = CLV_STAGE_NONE;
    w->stage = malloc((size_t)customers);
    w->next_seq = calloc((size_t)customers * CLV_OUT_ALERTS, sizeof(*w->next_seq));
    if (w->stage == NULL || w->next_seq == NULL) {
        rd_kafka_conf_destroy(conf);
        clv_seterr(err, errlen, "out of memory");
        return -1;
    }
    memset(w->stage, CLV_STAGE_NONE, (size_t)customers);
    if (kafka_conf(conf, kv, CLV_ARRAY_LEN(kv), err, errlen) != 0) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    w->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, kerr, sizeof(kerr));
    if (w->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        clv_seterr(err, errlen, "kafka consumer: %s", kerr);
        return -1;
    }
    rd_kafka_poll_set_consumer(w->rk);
    return watcher_assign(w, err, errlen);
}

static void watcher_close(struct watcher *w)
{
    if (w->rk) {
        rd_kafka_consumer_close(w->rk);
        rd_kafka_destroy(w->rk);
    }
    free(w->stage);
    free(w->next_seq);
    memset(w, 0, sizeof(*w));
}

static void watcher_count_dlq(struct watcher *w, const char *reason)
{
    int i;

    for (i = 0; i < w->ndlq; i++)
        if (strcmp(w->dlq[i].reason, reason) == 0)
            break;
    if (i == w->ndlq && w->ndlq == MAX_DLQ_REASONS)
        return;
    if (i == w->ndlq)
        snprintf(w->dlq[w->ndlq++].reason, sizeof(w->dlq[0].reason), "%s", reason);
    w->dlq[i].n++;
}

/* ---- output records ----------------------------------------------------------------- */

/* The fields of a customer message the demo reads. */
struct out_record {
    const char *customer_id, *from, *to, *reason, *at, *kind, *direction;
    uint32_t seq;
    double clv;
};

static const char *json_str(yajl_val root, const char *a, const char *b)
{
    const char *path[] = {a, b, NULL};
    yajl_val v = yajl_tree_get(root, path, yajl_t_string);

    return v ? YAJL_GET_STRING(v) : NULL;
}

static int json_num(yajl_val root, const char *a, const char *b, double *out)
{
    const char *path[] = {a, b, NULL};
    yajl_val v = yajl_tree_get(root, path, yajl_t_number);

    if (v == NULL || !(v->u.number.flags & YAJL_NUMBER_DOUBLE_VALID))
        return -1;
    *out = v->u.number.d;
    return 0;
}

static int record_read(yajl_val root, struct out_record *r)
{
    const char *eid = json_str(root, "event_id", NULL), *colon;

    memset(r, 0, sizeof(*r));
    r->customer_id = json_str(root, "customer_id", NULL);
    r->from = json_str(root, "from", NULL);
    r->to = json_str(root, "to", NULL);
    r->reason = json_str(root, "reason", NULL);
    r->at = json_str(root, "at", NULL);
    r->kind = json_str(root, "kind", NULL);
    r->direction = json_str(root, "direction", NULL);
    if (json_num(root, "customer", "clv_predicted", &r->clv) != 0 &&
        json_num(root, "customer", "clv_historical", &r->clv) != 0)
        r->clv = 0;
    colon = eid ? strrchr(eid, ':') : NULL;
    if (r->customer_id == NULL || r->to == NULL || r->reason == NULL || r->at == NULL ||
        colon == NULL)
        return -1;
    r->seq = (uint32_t)strtoul(colon + 1, NULL, 10);
    return 0;
}

/* ---- the screen --------------------------------------------------------------------- */

struct screen {
    FILE *out;
    int tty, color, quiet;
    int progress_drawn; /* a progress line without newline is on screen */
    clv_ms next_progress;
    double tokens[KIND_COUNT];
    clv_ms tokens_at;
    uint64_t shown, hidden;
    uint64_t rate_events; /* for events/s */
    clv_ms rate_at;
    double rate;
};

static const char *const kind_colors[KIND_COUNT] = {
    "\033[2m",  "\033[36m",   "\033[32m",   "\033[1;32m", "\033[33m",
    "\033[35m", "\033[1;31m", "\033[1;36m", "\033[1;33m", "\033[34m",
};

static void screen_init(struct screen *sc, int quiet)
{
    const char *nc = getenv("NO_COLOR"), *term = getenv("TERM");

    memset(sc, 0, sizeof(*sc));
    sc->out = stdout;
    sc->tty = isatty(STDOUT_FILENO);
    sc->color = sc->tty && (nc == NULL || nc[0] == '\0') && term && strcmp(term, "dumb") != 0;
    sc->quiet = quiet;
    for (int k = 0; k < KIND_COUNT; k++)
        sc->tokens[k] = LINE_BURST;
}

static void screen_clear_progress(struct screen *sc)
{
    if (sc->progress_drawn)
        fputs("\r\033[K", sc->out);
    sc->progress_drawn = 0;
}

/* Leave the progress line on screen. */
static void screen_end_progress(struct screen *sc)
{
    if (sc->progress_drawn)
        fputc('\n', sc->out);
    sc->progress_drawn = 0;
}

/* Per-kind token buckets: every kind of transition gets its share of the
 * screen, the common ones cannot crowd out the rare ones. */
static int screen_admit(struct screen *sc, int kind, clv_ms now)
{
    double dt = (double)(now - sc->tokens_at) / 1000.;

    if (dt > 0) {
        for (int k = 0; k < KIND_COUNT; k++)
            sc->tokens[k] = fmin(LINE_BURST, sc->tokens[k] + dt * LINES_PER_KIND_PER_SEC);
        sc->tokens_at = now;
    }
    if (sc->quiet || sc->tokens[kind] < 1.) {
        sc->hidden++;
        return 0;
    }
    sc->tokens[kind] -= 1.;
    sc->shown++;
    return 1;
}

static void screen_transition(struct screen *sc, const struct out_record *r, int kind)
{
    const char *on = sc->color ? kind_colors[kind] : "", *off = sc->color ? "\033[0m" : "";

    screen_clear_progress(sc);
    fprintf(sc->out, "%.10s  %-6s ", r->at, r->customer_id);
    if (r->from)
        fprintf(sc->out, "%12s", r->from);
    else
        fprintf(sc->out, "%11s—", ""); /* one column, three bytes */
    fprintf(sc->out, " → %s%-12s%s (%s%s)  CLV %.2f\n", on, r->to, off,
            kind == KIND_TIER ? "tier " : "", r->reason, r->clv);
}

static void format_day(clv_ms t, char *buf, size_t len)
{
    char ts[32];

    rfc3339_format(t, ts, sizeof(ts));
    snprintf(buf, len, "%.10s", ts);
}

/* ---- the redis-server child ------------------------------------------------------------ */

struct redis_proc {
    pid_t pid;
    char sock[108];
    char log[PATH_MAX];
};

/* A clear message when redis-server is not on PATH (execvp would only say
 * "No such file" from the child). */
static int find_in_path(const char *prog)
{
    const char *path = getenv("PATH");
    char buf[PATH_MAX];

    if (path == NULL || *path == '\0')
        path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        size_t n = strcspn(path, ":");
        snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, path, prog);
        if (n > 0 && access(buf, X_OK) == 0)
            return 0;
        path += n + (path[n] == ':');
    }
    return -1;
}

static void redis_child(const struct redis_proc *rp, const char *dir)
{
    char *argv[] = {"redis-server",
                    "--port",
                    "0",
                    "--unixsocket",
                    (char *)rp->sock,
                    "--unixsocketperm",
                    "700",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    (char *)dir,
                    "--logfile",
                    (char *)rp->log,
                    "--daemonize",
                    "no",
                    NULL};
    int null = open("/dev/null", O_RDWR);

    setpgid(0, 0);                    /* Ctrl-C is for clvd; the demo stops redis itself */
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* and never outlives the demo */
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
    }
    execvp(argv[0], argv);
    _exit(127);
}

static int redis_ping(const char *sock)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectUnixWithTimeout(sock, tv);
    redisReply *r;
    int ok;

    if (c == NULL || c->err) {
        redisFree(c);
        return -1;
    }
    r = redisCommand(c, "PING");
    ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
    freeReplyObject(r);
    redisFree(c);
    return ok ? 0 : -1;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

static int redis_wait_ready(struct redis_proc *rp, char *err, size_t errlen)
{
    clv_ms deadline = clv_mono_ms() + 10000;
    int status;

    while (redis_ping(rp->sock) != 0) {
        if (waitpid(rp->pid, &status, WNOHANG) == rp->pid) {
            rp->pid = 0;
            if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
                clv_seterr(err, errlen, "could not run redis-server");
            else
                clv_seterr(err, errlen, "redis-server exited at start; see %s", rp->log);
            return -1;
        }
        if (demo_signalled || clv_mono_ms() > deadline) {
            clv_seterr(err, errlen, "%s",
                       demo_signalled ? "interrupted" : "redis-server did not answer PING");
            return -1;
        }
        sleep_ms(20);
    }
    return 0;
}

static int redis_start(struct redis_proc *rp, const char *dir, char *err, size_t errlen)
{
    if (find_in_path("redis-server") != 0) {
        clv_seterr(err, errlen,
                   "redis-server is not installed (not on PATH); install it "
                   "(Debian/Ubuntu: apt-get install redis-server) or run scripts/demo.sh");
        return -1;
    }
    if ((size_t)snprintf(rp->sock, sizeof(rp->sock), "%s/redis.sock", dir) >= sizeof(rp->sock)) {
        clv_seterr(err, errlen, "temp dir name too long for a unix socket: %s", dir);
        return -1;
    }
    if ((size_t)snprintf(rp->log, sizeof(rp->log), "%s/redis.log", dir) >= sizeof(rp->log)) {
        clv_seterr(err, errlen, "temp dir name too long: %s", dir);
        return -1;
    }
    rp->pid = fork();
    if (rp->pid < 0) {
        rp->pid = 0;
        clv_seterr(err, errlen, "fork: %s", strerror(errno));
        return -1;
    }
    if (rp->pid == 0)
        redis_child(rp, dir);
    return redis_wait_ready(rp, err, errlen);
}

static void redis_stop(struct redis_proc *rp)
{
    clv_ms deadline = clv_mono_ms() + 5000;

    if (rp->pid <= 0)
        return;
    kill(rp->pid, SIGTERM);
    while (waitpid(rp->pid, NULL, WNOHANG) == 0) {
        if (clv_mono_ms() > deadline) {
            kill(rp->pid, SIGKILL);
            waitpid(rp->pid, NULL, 0);
            break;
        }
        sleep_ms(10);
    }
    rp->pid = 0;
}

/* Customers per stage: the sum over shards of the <prefix>{sN}:stats hashes. */
static int redis_stage_counts(const char *sock, const char *prefix, int shards, int64_t *counts,
                              char *err, size_t errlen)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectUnixWithTimeout(sock, tv);
    char key[CLV_KEY_MAX];
    int rc = 0;

    if (c == NULL || c->err) {
        clv_seterr(err, errlen, "redis %s: %s", sock, c ? c->errstr : "out of memory");
        redisFree(c);
        return -1;
    }
    for (int s = 0; s < shards && rc == 0; s++) {
        redisReply *r;
        keys_stats(key, prefix, (uint32_t)s);
        r = redisCommand(c, "HGETALL %s", key);
        if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
            clv_seterr(err, errlen, "redis HGETALL %s: %s", key, r && r->str ? r->str : c->errstr);
            rc = -1;
        }
        for (size_t i = 0; rc == 0 && i + 1 < r->elements; i += 2) {
            int st = stage_from_name(r->element[i]->str);
            if (st != CLV_STAGE_NONE)
                counts[st] += strtoll(r->element[i + 1]->str, NULL, 10);
        }
        freeReplyObject(r);
    }
    redisFree(c);
    return rc;
}

/* ---- the daemon thread ------------------------------------------------------------- */

struct daemon_thread {
    pthread_t tid;
    int started;
    struct clvd_options opt;
    int status;
    atomic_int finished;
};

static void *daemon_main(void *arg)
{
    struct daemon_thread *t = arg;

    t->status = clvd_run(&t->opt);
    atomic_store(&t->finished, 1);
    return NULL;
}

static int daemon_start(struct daemon_thread *t, const char *config, char *err, size_t errlen)
{
    int e;

    t->opt = (struct clvd_options){config, 0};
    e = pthread_create(&t->tid, NULL, daemon_main, t);
    if (e != 0) {
        clv_seterr(err, errlen, "pthread_create: %s", strerror(e));
        return -1;
    }
    t->started = 1;
    return 0;
}

static void daemon_stop(struct daemon_thread *t)
{
    if (!t->started)
        return;
    clvd_request_stop();
    pthread_join(t->tid, NULL);
    t->started = 0;
}

/* ---- the demo ---------------------------------------------------------------------- */

enum demo_phase { PHASE_WARMING, PHASE_PRODUCING, PHASE_SETTLING, PHASE_DONE };

struct demo {
    struct demo_opts opt;
    char dir[PATH_MAX], config_path[PATH_MAX], log_path[PATH_MAX];
    FILE *err;        /* the terminal's stderr while fd 2 goes to the log */
    int saved_stderr; /* -1 when fd 2 is not redirected */
    struct redis_proc redis;
    struct clv_config cfg;
    int cfg_loaded;
    struct clv_embedded emb;
    struct sender snd;
    struct watcher w;
    struct daemon_thread daemon;
    struct shop shop;
    struct screen sc;
    enum demo_phase phase;
    clv_ms t_warm, t_start, t_produced, t_settled; /* monotonic */
    clv_ms t_consuming;                            /* the first output arrived: clvd consumes */
    int blocked;                                   /* production waits for clvd, see backlog() */
    int interrupted;
};

static int make_tmpdir(struct demo *d, char *err, size_t errlen)
{
    const char *base = getenv("TMPDIR");

    /* the redis socket path must stay under 108 bytes */
    if (base == NULL || base[0] == '\0' || strlen(base) > 60)
        base = "/tmp";
    snprintf(d->dir, sizeof(d->dir), "%s/clvd-demo.XXXXXX", base);
    if (mkdtemp(d->dir) == NULL) {
        clv_seterr(err, errlen, "mkdtemp %s: %s", d->dir, strerror(errno));
        d->dir[0] = '\0';
        return -1;
    }
    if ((size_t)snprintf(d->config_path, sizeof(d->config_path), "%s/clvd.yaml", d->dir) >=
            sizeof(d->config_path) ||
        (size_t)snprintf(d->log_path, sizeof(d->log_path), "%s/clvd.log", d->dir) >=
            sizeof(d->log_path)) {
        clv_seterr(err, errlen, "temp dir name too long: %s", d->dir);
        return -1;
    }
    return 0;
}

static void remove_tmpdir(struct demo *d)
{
    const char *names[] = {"clvd.yaml", "clvd.log", "redis.log", "redis.sock"};
    char path[PATH_MAX + 16];

    if (d->dir[0] == '\0')
        return;
    for (size_t i = 0; i < CLV_ARRAY_LEN(names); i++) {
        snprintf(path, sizeof(path), "%s/%s", d->dir, names[i]);
        unlink(path);
    }
    rmdir(d->dir);
}

/* Send fd 2 (the daemon's and librdkafka's logs) to <tmpdir>/clvd.log. */
static int redirect_stderr(struct demo *d, char *err, size_t errlen)
{
    int fd = open(d->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    int saved = fd < 0 ? -1 : fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    FILE *f = saved < 0 ? NULL : fdopen(saved, "w");

    if (f == NULL) {
        clv_seterr(err, errlen, "%s: %s", d->log_path, strerror(errno));
        if (saved >= 0)
            close(saved);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    setvbuf(f, NULL, _IOLBF, 0);
    fflush(stderr);
    dup2(fd, STDERR_FILENO);
    close(fd);
    d->err = f;
    d->saved_stderr = saved;
    return 0;
}

static void restore_stderr(struct demo *d)
{
    if (d->saved_stderr < 0)
        return;
    fflush(stderr);
    dup2(d->saved_stderr, STDERR_FILENO);
    fclose(d->err);
    d->err = stderr;
    d->saved_stderr = -1;
}

/* The daemon's config: like any deployment, pointed at our Kafka and Redis. */
static int write_config(struct demo *d, char *err, size_t errlen)
{
    FILE *f = fopen(d->config_path, "w");

    if (f == NULL) {
        clv_seterr(err, errlen, "%s: %s", d->config_path, strerror(errno));
        return -1;
    }
    fprintf(f,
            "# written by clvd demo\n"
            "kafka:\n"
            "  brokers: \"%s\"\n"
            "  group_id: \"%s\"\n"
            "  properties: {fetch.wait.max.ms: \"10\"}  # deliver promptly, not in 500 ms bursts\n"
            "redis:\n"
            "  unix_socket: \"%s\"\n"
            "  shards: %d\n"
            "clock:\n"
            "  mode: event\n"
            "  lateness: 1d        # ~90 ms of wall time at the demo's pace\n"
            "  idle_after: 1s\n"
            "clv:\n"
            "  model: bgnbd        # the generator's own parameters, in days\n"
            "  bgnbd: {r: %.4f, alpha: %.4f, a: %.3f, b: %.3f, time_unit_days: 1}\n"
            "  gamma_gamma: {p: %.2f, q: %.2f, gamma: %.2f}\n"
            "metrics: {listen: \"\"}\n"
            "log: {level: warning}\n",
            d->emb.bootstraps, DEMO_GROUP, d->redis.sock, DEMO_SHARDS, BG_R, BG_ALPHA, BG_A, BG_B,
            GG_P, GG_Q, GG_GAMMA);
    if (fclose(f) != 0) {
        clv_seterr(err, errlen, "%s: %s", d->config_path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Embedded Kafka with the default topics, then the config that points at it. */
static int start_kafka(struct demo *d, char *err, size_t errlen)
{
    struct clv_config defaults;

    if (config_defaults(&defaults, err, errlen) != 0)
        return -1;
    if (embedded_start(&d->emb, &defaults, err, errlen) != 0) {
        config_free(&defaults);
        return -1;
    }
    config_free(&defaults);
    if (write_config(d, err, errlen) != 0 || config_load(d->config_path, &d->cfg, err, errlen) != 0)
        return -1;
    d->cfg_loaded = 1;
    return 0;
}

/* ---- producing ----------------------------------------------------------------------- */

static int produce_bad(struct demo *d, char *err, size_t errlen)
{
    char buf[512];
    int k = d->shop.next_bad++;
    size_t len = bad_render(k, buf, sizeof(buf));

    d->shop.bad_produced++;
    return sender_send(&d->snd, bad_events[k].topic, "c0000", buf, len, err, errlen);
}

static int bad_due(const struct demo *d, clv_ms until)
{
    int k = d->shop.next_bad;

    return k < (int)CLV_ARRAY_LEN(bad_events) && SIM_START_MS + days_ms(bad_events[k].day) <= until;
}

static int produce_one(struct demo *d, char *err, size_t errlen)
{
    struct shop *s = &d->shop;
    uint32_t i = s->heap[0];
    struct shopper *c = &s->sh[i];
    enum clv_event_type type = (enum clv_event_type)c->next_type;
    char id[24], buf[512];
    size_t len;

    format_id(id, sizeof(id), s, i);
    if (c->nevents == 0)
        s->customers_on++;
    len = shop_render(s, i, buf, sizeof(buf));
    if (sender_send(&d->snd, type, id, buf, len, err, errlen) != 0)
        return -1;
    s->produced[type]++;
    shop_count(s, c->next_ts);
    s->last_ts = c->next_ts;
    shopper_advance(c);
    if (c->next_type < 0)
        s->heap[0] = s->heap[--s->nheap];
    heap_down(s, 0);
    return 0;
}

/* The clock customer's visit at the end of the year: the watermark reaches
 * 2026-01-01, so every deadline of the year fires. */
static int produce_clock(struct demo *d, char *err, size_t errlen)
{
    char ts[32], buf[256];
    int n;

    rfc3339_format(SIM_END_MS, ts, sizeof(ts));
    n = snprintf(buf, sizeof(buf),
                 "{\"event_id\":\"%s-1\",\"customer_id\":\"%s\",\"ts\":\"%s\",\"type\":\"visit\"}",
                 CLOCK_CUSTOMER, CLOCK_CUSTOMER, ts);
    d->shop.produced[CLV_EV_VISIT]++;
    d->shop.last_ts = SIM_END_MS;
    return sender_send(&d->snd, CLV_EV_VISIT, CLOCK_CUSTOMER, buf, (size_t)n, err, errlen);
}

static clv_ms sim_due(const struct demo *d, clv_ms now)
{
    if (d->opt.fast)
        return SIM_END_MS;
    return SIM_START_MS + (now - d->t_start) * (SIM_YEAR_MS / PACE_WALL_MS);
}

/* Events with times up to the newest transition seen have been consumed
 * (transitions come out once the watermark passes them); the rest is the
 * backlog that the embedded Kafka must hold, and it keeps only ~5 MB per
 * partition.  Bounding it binds with --fast, or if clvd cannot keep up. */
static uint64_t backlog(const struct demo *d)
{
    long day = d->w.max_at ? (long)((d->w.max_at - SIM_START_MS) / CLV_MS_PER_DAY) - 1 : -1;

    return d->shop.events - shop_events_through(&d->shop, day);
}

/* Produce what is due by now; returns how many, -1 on error. */
static int produce_due(struct demo *d, clv_ms now, char *err, size_t errlen)
{
    clv_ms until = sim_due(d, now);
    int n = 0;

    d->blocked = 0;

    while (n < PRODUCE_BUDGET && d->shop.nheap > 0 &&
           d->shop.sh[d->shop.heap[0]].next_ts <= until &&
           !(d->blocked = backlog(d) >= BACKLOG_MAX)) {
        if (bad_due(d, d->shop.sh[d->shop.heap[0]].next_ts) && produce_bad(d, err, errlen) != 0)
            return -1;
        if (produce_one(d, err, errlen) != 0)
            return -1;
        n++;
    }
    if (d->shop.nheap == 0)
        while (bad_due(d, SIM_END_MS))
            if (produce_bad(d, err, errlen) != 0)
                return -1;
    if (d->shop.nheap == 0 && sim_due(d, now) >= SIM_END_MS) {
        if (produce_clock(d, err, errlen) != 0)
            return -1;
        d->phase = PHASE_SETTLING;
        d->t_produced = now;
    }
    return n;
}

static uint64_t produced_total(const struct demo *d)
{
    return d->shop.produced[0] + d->shop.produced[1] + d->shop.produced[2] + d->shop.bad_produced;
}

/* ---- watching -------------------------------------------------------------------------- */

/* Index of a shop customer ("c0042" -> 42), or -1 (the clock customer). */
static long customer_index(const struct demo *d, const char *id)
{
    char *end;
    long i;

    if (id[0] != 'c' || id[1] < '0' || id[1] > '9' || (int)strlen(id + 1) != d->shop.idwidth)
        return -1;
    i = strtol(id + 1, &end, 10);
    return *end == '\0' && i >= 0 && i < d->shop.n ? i : -1;
}

/* 1 when this message repeats one already seen (the same event_id). */
static int is_duplicate(struct watcher *w, long idx, int topic, uint32_t seq)
{
    uint32_t *last;

    if (idx < 0)
        return 0;
    last = &w->next_seq[(size_t)idx * CLV_OUT_ALERTS + (size_t)topic];
    if (seq < *last)
        return 1;
    *last = seq + 1;
    return 0;
}

static void note_at(struct watcher *w, const char *at)
{
    clv_ms t;

    if (rfc3339_parse(at, strlen(at), &t) == 0 && t > w->max_at)
        w->max_at = t;
}

static void on_stage_change(struct demo *d, const struct out_record *r, long idx, clv_ms now)
{
    struct watcher *w = &d->w;
    int to = stage_from_name(r->to);
    int returned = strcmp(r->reason, "returned") == 0;

    if (to == CLV_STAGE_NONE)
        return;
    w->entered[to]++;
    w->returned += (uint64_t)returned;
    note_at(w, r->at);
    if (idx < 0) {
        w->clock_stage = to;
        if (strcmp(r->customer_id, CLOCK_CUSTOMER) == 0 && w->clock_seen == 0)
            w->clock_seen = now;
        return;
    }
    w->stage[idx] = (int8_t)to;
    if (screen_admit(&d->sc, returned ? KIND_RETURNED : to, now))
        screen_transition(&d->sc, r, returned ? KIND_RETURNED : to);
}

static void on_customer_message(struct demo *d, int topic, yajl_val root, clv_ms now)
{
    struct watcher *w = &d->w;
    struct out_record r;
    long idx;

    if (record_read(root, &r) != 0)
        return;
    idx = customer_index(d, r.customer_id);
    if (is_duplicate(w, idx, topic, r.seq)) {
        w->dups++;
        return;
    }
    w->msgs[topic]++;
    if (topic == CLV_OUT_STAGE_CHANGES) {
        on_stage_change(d, &r, idx, now);
    } else if (topic == CLV_OUT_TIER_CHANGES) {
        int up = r.direction && strcmp(r.direction, "upgrade") == 0;
        w->tier_up += (uint64_t)up;
        w->tier_down += (uint64_t)!up;
        note_at(w, r.at);
        if (idx >= 0 && screen_admit(&d->sc, KIND_TIER, now))
            screen_transition(&d->sc, &r, KIND_TIER);
    } else if (topic == CLV_OUT_WIN_BACK && r.kind) {
        for (size_t k = 0; k < CLV_ARRAY_LEN(win_back_kinds); k++)
            if (strcmp(r.kind, win_back_kinds[k]) == 0)
                w->win_back[k]++;
    }
}

static void on_message(struct demo *d, const rd_kafka_message_t *m, clv_ms now)
{
    const char *name = rd_kafka_topic_name(m->rkt);
    char *json;
    yajl_val root;
    int topic = -1;

    for (int t = 0; t < CLV_OUT_COUNT; t++)
        if (strcmp(name, d->w.topics[t]) == 0)
            topic = t;
    if (topic < 0 || m->payload == NULL)
        return;
    d->w.last_msg = now;
    if (d->t_consuming == 0)
        d->t_consuming = now;
    json = strndup(m->payload, m->len);
    root = json ? yajl_tree_parse(json, NULL, 0) : NULL;
    free(json);
    if (root == NULL)
        return;
    if (topic == CLV_OUT_DEAD_LETTER) {
        const char *reason = json_str(root, "reason", NULL);
        d->w.msgs[topic]++;
        watcher_count_dlq(&d->w, reason ? reason : "?");
    } else if (topic == CLV_OUT_ALERTS) {
        d->w.msgs[topic]++;
    } else {
        on_customer_message(d, topic, root, now);
    }
    yajl_tree_free(root);
}

/* Read what has arrived on the output topics; returns how many messages. */
static int watch_poll(struct demo *d, clv_ms now)
{
    int n = 0;

    while (n < WATCH_BUDGET) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(d->w.rk, 0);
        if (m == NULL)
            break;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            on_message(d, m, now);
            n++;
        }
        rd_kafka_message_destroy(m);
    }
    return n;
}

/* ---- progress ---------------------------------------------------------------------------- */

static uint64_t transitions_seen(const struct demo *d)
{
    return d->w.msgs[CLV_OUT_STAGE_CHANGES] + d->w.msgs[CLV_OUT_TIER_CHANGES];
}

static void progress_bar(char *buf, size_t len, double frac)
{
    int cells = 12, full = (int)(frac * cells + 0.5);
    size_t off = 0;

    for (int i = 0; i < cells && off + 4 < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s", i < full ? "█" : "░");
}

static void progress_rate(struct screen *sc, uint64_t produced, clv_ms now)
{
    if (now - sc->rate_at < 1000)
        return;
    sc->rate = (double)(produced - sc->rate_events) * 1000. / (double)(now - sc->rate_at);
    sc->rate_events = produced;
    sc->rate_at = now;
}

static void progress_year(struct demo *d, clv_ms now, char *buf, size_t len)
{
    struct screen *sc = &d->sc;
    clv_ms sim = d->shop.last_ts;
    char day[16], outs[16] = "-", bar[128], rate[32];

    if (d->phase == PHASE_PRODUCING && !d->opt.fast && !d->blocked)
        sim = sim_due(d, now);
    if (d->w.max_at)
        format_day(d->w.max_at, outs, sizeof(outs));
    sim = sim < SIM_START_MS ? SIM_START_MS : sim > SIM_END_MS ? SIM_END_MS : sim;
    format_day(sim, day, sizeof(day));
    progress_bar(bar, sizeof(bar), (double)(sim - SIM_START_MS) / (double)SIM_YEAR_MS);
    progress_rate(sc, produced_total(d), now);
    if (d->phase != PHASE_PRODUCING)
        snprintf(rate, sizeof(rate), "%s", d->phase == PHASE_SETTLING ? "settling" : "done");
    else
        snprintf(rate, sizeof(rate), "%.0f/s", sc->rate);
    /* "clvd at": the newest transition seen, i.e. how far clvd's clock is */
    snprintf(buf, len, "%s ▕%s▏ %llu events  %llu transitions  %s  clvd at %s", day, bar,
             (unsigned long long)produced_total(d), (unsigned long long)transitions_seen(d), rate,
             outs + (d->w.max_at ? 5 : 0));
}

/* Cut a UTF-8 line to the terminal's width, so that \r can redraw it. */
static void fit_width(char *line)
{
    struct winsize ws;
    int cols = 0;

    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) != 0 || ws.ws_col < 20)
        return;
    for (char *p = line; *p; p++)
        if (((unsigned char)*p & 0xC0) != 0x80 && ++cols == ws.ws_col) {
            *p = '\0';
            return;
        }
}

/* The progress line: redrawn in place on a terminal, a line every few
 * seconds otherwise. */
static void progress(struct demo *d, clv_ms now, int force)
{
    struct screen *sc = &d->sc;
    char line[512];

    if (!force && now < sc->next_progress)
        return;
    sc->next_progress = now + (sc->tty ? PROGRESS_TTY_MS : PROGRESS_PLAIN_MS);
    if (d->phase == PHASE_WARMING)
        snprintf(line, sizeof(line), "waiting for clvd to join its consumer group (%.1f s)…",
                 (double)(now - d->t_warm) / 1000.);
    else
        progress_year(d, now, line, sizeof(line));
    screen_clear_progress(sc);
    if (sc->tty) {
        fit_width(line);
        fputs(line, sc->out);
        sc->progress_drawn = 1;
    } else {
        fprintf(sc->out, "[progress] %s\n", line);
    }
    fflush(sc->out);
}

/* ---- the main loop ---------------------------------------------------------------------- */

static int daemon_failed(struct demo *d, char *err, size_t errlen)
{
    if (!atomic_load(&d->daemon.finished) && !demo_signalled)
        return 0;
    if (demo_signalled || d->daemon.status == 0) {
        d->interrupted = 1;
        clv_seterr(err, errlen, "interrupted");
    } else {
        clv_seterr(err, errlen, "the daemon stopped with status %d", d->daemon.status);
    }
    return 1;
}

/* Before the year: one bad event, and wait for its dead letter, so that the
 * simulated clock starts when clvd is consuming.  Not with --fast: then the
 * first events are produced while clvd is still joining, so that every
 * input partition has its backlog at the first fetch.  A burst produced
 * after clvd has sat idle for clock.idle_after would let the partitions that
 * deliver first move the watermark past events still on their way in the
 * others (an idle partition does not hold the watermark back). */
static int warm_up(struct demo *d, clv_ms now, char *err, size_t errlen)
{
    if (d->shop.next_bad == 0)
        return produce_bad(d, err, errlen) == 0 ? 1 : -1;
    if (d->opt.fast || d->t_consuming) {
        d->phase = PHASE_PRODUCING;
        d->t_start = now;
        d->sc.rate_at = now;
        d->sc.rate_events = produced_total(d);
        return 1;
    }
    if (now - d->t_warm > WARMUP_TIMEOUT_MS) {
        clv_seterr(err, errlen, "clvd did not start consuming within %d s",
                   WARMUP_TIMEOUT_MS / 1000);
        return -1;
    }
    return 0;
}

/* After the year: done once the clock customer's transition is in and
 * nothing new has arrived for SETTLE_QUIET_MS. */
static int settle(struct demo *d, clv_ms now, char *err, size_t errlen)
{
    if (d->w.clock_seen && now - d->w.clock_seen >= SETTLE_QUIET_MS &&
        now - d->w.last_msg >= SETTLE_QUIET_MS) {
        d->phase = PHASE_DONE;
        d->t_settled = now;
        return 1;
    }
    if (now - d->t_produced > SETTLE_TIMEOUT_MS) {
        clv_seterr(err, errlen, "the outputs did not settle within %d s", SETTLE_TIMEOUT_MS / 1000);
        return -1;
    }
    return 0;
}

/* One turn of the current phase's work: how much was done, -1 on error. */
static int step(struct demo *d, clv_ms now, char *err, size_t errlen)
{
    switch (d->phase) {
    case PHASE_WARMING:
        return warm_up(d, now, err, errlen);
    case PHASE_PRODUCING:
        return produce_due(d, now, err, errlen);
    case PHASE_SETTLING:
        return settle(d, now, err, errlen);
    default:
        return 0;
    }
}

static int run_loop(struct demo *d, char *err, size_t errlen)
{
    d->t_warm = clv_mono_ms();
    while (d->phase != PHASE_DONE) {
        clv_ms now = clv_mono_ms();
        int seen, done;

        if (daemon_failed(d, err, errlen))
            return -1;
        rd_kafka_poll(d->snd.rk, 0);
        if (sender_check(&d->snd, err, errlen) != 0)
            return -1;
        seen = watch_poll(d, now);
        done = step(d, now, err, errlen);
        if (done < 0)
            return -1;
        progress(d, now, 0);
        if (seen + done == 0)
            sleep_ms(5);
    }
    progress(d, clv_mono_ms(), 1);
    screen_end_progress(&d->sc);
    return 0;
}

/* ---- the summary -------------------------------------------------------------------------- */

static double per_sec(uint64_t n, clv_ms ms)
{
    return (double)n * 1000. / (double)(ms > 0 ? ms : 1);
}

/* Customers per stage from Redis, checked two ways: their sum is the number
 * of customers with events, and each customer's last stage on the
 * stage-change topic gives the same counts.  Returns 0 when both hold. */
static int summary_stages(struct demo *d, const int64_t *redis_counts)
{
    FILE *o = d->sc.out;
    int64_t stream[CLV_STAGE_COUNT] = {0}, total = 0;
    long expected = d->shop.customers_on + 1; /* + the clock customer */
    int same;

    for (long i = 0; i < d->shop.n; i++)
        if (d->w.stage[i] != CLV_STAGE_NONE)
            stream[d->w.stage[i]]++;
    if (d->w.clock_stage != CLV_STAGE_NONE)
        stream[d->w.clock_stage]++;
    for (int s = 0; s < CLV_STAGE_COUNT; s++)
        total += redis_counts[s];
    same = memcmp(stream, redis_counts, sizeof(stream)) == 0;
    fprintf(o, "\n  %-13s %9s %7s %9s\n", "stage", "customers", "share", "entered");
    for (int s = 0; s < CLV_STAGE_COUNT; s++)
        fprintf(o, "  %-13s %9lld %6.1f%% %9llu\n", stage_name(s), (long long)redis_counts[s],
                total ? 100. * (double)redis_counts[s] / (double)total : 0.,
                (unsigned long long)d->w.entered[s]);
    fprintf(o, "  %-13s %9lld %6.1f%% %9llu\n", "total", (long long)total, 100.,
            (unsigned long long)d->w.msgs[CLV_OUT_STAGE_CHANGES]);
    fprintf(o,
            "  customers: Redis clv:{sN}:stats summed over %d shards; %ld shop customers with "
            "events + 1 clock customer = %ld: %s\n",
            DEMO_SHARDS, d->shop.customers_on, expected, total == expected ? "OK" : "MISMATCH");
    fprintf(o, "  each customer's last stage on %s: %s\n", d->w.topics[CLV_OUT_STAGE_CHANGES],
            same ? "the same counts, OK" : "DIFFERENT counts");
    fprintf(o, "  entered by returning (a visit after dormant/churned): %llu\n",
            (unsigned long long)d->w.returned);
    return total == expected && same ? 0 : -1;
}

static void summary_topics(struct demo *d)
{
    FILE *o = d->sc.out;
    struct watcher *w = &d->w;

    fprintf(o, "\n  %-26s %9s\n", "topic", "messages");
    for (int t = 0; t < CLV_OUT_COUNT; t++) {
        fprintf(o, "  %-26s %9llu", w->topics[t], (unsigned long long)w->msgs[t]);
        if (t == CLV_OUT_WIN_BACK)
            for (size_t k = 0; k < CLV_ARRAY_LEN(win_back_kinds); k++)
                fprintf(o, "%s%s %llu", k ? ", " : "   ", win_back_kinds[k],
                        (unsigned long long)w->win_back[k]);
        if (t == CLV_OUT_TIER_CHANGES)
            fprintf(o, "   upgrades %llu, downgrades %llu", (unsigned long long)w->tier_up,
                    (unsigned long long)w->tier_down);
        if (t == CLV_OUT_DEAD_LETTER)
            for (int k = 0; k < w->ndlq; k++)
                fprintf(o, "%s%s %llu", k ? ", " : "   ", w->dlq[k].reason,
                        (unsigned long long)w->dlq[k].n);
        fputc('\n', o);
    }
    if (w->dups)
        fprintf(o, "  (%llu redelivered duplicates dropped by event_id)\n",
                (unsigned long long)w->dups);
    if (!d->opt.quiet)
        fprintf(o, "  on screen: %llu of %llu transitions (at most %.0f lines/s per kind)\n",
                (unsigned long long)d->sc.shown, (unsigned long long)(d->sc.shown + d->sc.hidden),
                LINES_PER_KIND_PER_SEC);
}

/* Times are from the first event of the year (with --fast that includes
 * clvd's group join, which paced runs wait for before the year starts). */
static void summary_throughput(struct demo *d)
{
    FILE *o = d->sc.out;
    uint64_t produced = produced_total(d), valid = produced - d->shop.bad_produced, outputs = 0;
    clv_ms prod_ms = d->t_produced - d->t_start, applied_ms = d->w.clock_seen - d->t_start;

    for (int t = 0; t < CLV_OUT_COUNT; t++)
        outputs += d->w.msgs[t];
    fprintf(o,
            "\n  events produced  %llu (purchases %llu, logins %llu, visits %llu, bad %llu) in "
            "%.1f s: %.0f/s%s\n",
            (unsigned long long)produced, (unsigned long long)d->shop.produced[CLV_EV_PURCHASE],
            (unsigned long long)d->shop.produced[CLV_EV_LOGIN],
            (unsigned long long)d->shop.produced[CLV_EV_VISIT],
            (unsigned long long)d->shop.bad_produced, (double)prod_ms / 1000.,
            per_sec(produced, prod_ms), d->opt.fast ? " (--fast)" : " (paced)");
    fprintf(o,
            "  events applied   %llu in %.1f s: %.0f/s (until the last one's transition came%s)\n",
            (unsigned long long)valid, (double)applied_ms / 1000., per_sec(valid, applied_ms),
            d->opt.fast ? ", group join included" : "");
    fprintf(o, "  outputs          %llu messages, settled after %.1f s\n",
            (unsigned long long)outputs, (double)(d->t_settled - d->t_start) / 1000.);
    fprintf(o, "  startup          %.1f s until clvd's first output (embedded Kafka group join)\n",
            (double)(d->t_consuming - d->t_warm) / 1000.);
}

static int summary(struct demo *d, char *err, size_t errlen)
{
    int64_t counts[CLV_STAGE_COUNT] = {0};
    int ok;

    if (redis_stage_counts(d->redis.sock, d->cfg.redis.key_prefix, d->cfg.redis.shards, counts, err,
                           errlen) != 0)
        return -1;
    fprintf(d->sc.out, "\n── clvd demo: 2025-01-01 → 2026-01-01, %ld customer%s, seed %llu ──\n",
            d->opt.customers, d->opt.customers == 1 ? "" : "s", (unsigned long long)d->opt.seed);
    ok = summary_stages(d, counts) == 0;
    summary_topics(d);
    summary_throughput(d);
    fflush(d->sc.out);
    if (!ok) {
        clv_seterr(err, errlen, "the customers per stage do not add up (see above)");
        return -1;
    }
    return 0;
}

/* ---- start and stop ----------------------------------------------------------------------- */

static int setup(struct demo *d, char *err, size_t errlen)
{
    if (shop_init(&d->shop, d->opt.customers, d->opt.seed, err, errlen) != 0 ||
        make_tmpdir(d, err, errlen) != 0 || redirect_stderr(d, err, errlen) != 0 ||
        redis_start(&d->redis, d->dir, err, errlen) != 0 || start_kafka(d, err, errlen) != 0)
        return -1;
    if (sender_open(&d->snd, d->emb.bootstraps, &d->cfg.kafka.topics, err, errlen) != 0 ||
        watcher_open(&d->w, d->emb.bootstraps, &d->cfg.kafka.topics, d->opt.customers, err,
                     errlen) != 0)
        return -1;
    if (demo_signalled) {
        clv_seterr(err, errlen, "interrupted");
        return -1;
    }
    return daemon_start(&d->daemon, d->config_path, err, errlen);
}

static void intro(struct demo *d)
{
    char pace[32] = " as fast as possible";

    if (!d->opt.fast)
        snprintf(pace, sizeof(pace), " in ~%lld s", PACE_WALL_MS / 1000);
    fprintf(d->sc.out,
            "clvd demo: %ld customer%s (seed %llu), simulated year 2025%s; Kafka %s (embedded), "
            "Redis %s\n",
            d->opt.customers, d->opt.customers == 1 ? "" : "s", (unsigned long long)d->opt.seed,
            pace, d->emb.bootstraps, d->redis.sock);
    if (!d->opt.quiet)
        fprintf(d->sc.out, "%-10s  %-6s %12s   %-12s %s\n", "date", "id", "from", "to",
                "(reason)  CLV");
    fflush(d->sc.out);
}

/* Print the end of the daemon's log (it went to a file). */
static void show_log_tail(struct demo *d)
{
    FILE *f = fopen(d->log_path, "r");
    char buf[4096];
    long size;
    size_t n;

    if (f == NULL)
        return;
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, size > (long)sizeof(buf) - 1 ? size - (long)sizeof(buf) + 1 : 0, SEEK_SET);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    if (n > 0)
        fprintf(d->err, "---- end of %s ----\n%s", d->log_path, buf);
}

/* Anything worth keeping the temp dir for? */
static int has_logs(const struct demo *d)
{
    struct stat st;

    return d->dir[0] && ((stat(d->log_path, &st) == 0 && st.st_size > 0) ||
                         (stat(d->redis.log, &st) == 0 && st.st_size > 0));
}

static void teardown(struct demo *d, int failed)
{
    int keep;

    daemon_stop(&d->daemon);
    sender_close(&d->snd);
    watcher_close(&d->w);
    embedded_stop(&d->emb);
    redis_stop(&d->redis);
    keep = failed && !d->interrupted && has_logs(d);
    if (keep)
        show_log_tail(d);
    restore_stderr(d);
    if (d->cfg_loaded)
        config_free(&d->cfg);
    if (keep)
        fprintf(stderr, "clvd demo: logs kept in %s\n", d->dir);
    else
        remove_tmpdir(d);
    shop_free(&d->shop);
}

static void install_demo_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_demo_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int demo_run(int argc, char **argv)
{
    struct demo *d;
    char err[CLV_ERRLEN] = "";
    int rc;

    d = calloc(1, sizeof(*d));
    if (d == NULL)
        return 1;
    rc = parse_opts(argc, argv, &d->opt);
    if (rc != 0) {
        free(d);
        return rc == 1 ? 0 : 2;
    }
    d->err = stderr;
    d->saved_stderr = -1;
    screen_init(&d->sc, d->opt.quiet);
    install_demo_signals();
    rc = setup(d, err, sizeof(err));
    if (rc == 0) {
        intro(d);
        rc = run_loop(d, err, sizeof(err));
    }
    if (rc == 0) {
        daemon_stop(&d->daemon);
        watch_poll(d, clv_mono_ms());
        rc = summary(d, err, sizeof(err));
    }
    screen_clear_progress(&d->sc);
    fflush(d->sc.out);
    d->interrupted |= demo_signalled;
    if (rc != 0)
        fprintf(d->err, "\nclvd demo: %s\n", err);
    teardown(d, rc != 0);
    rc = rc == 0 ? 0 : d->interrupted ? 130 : 1;
    free(d);
    return rc;
}
