/* clvctl_loadgen.c -- `clvctl loadgen`: events from loadgen.h (synthetic
 * customers drawn from BG/NBD and Gamma-Gamma, with logins and visits), in
 * time order, to a file (JSON lines, or the purchases as CSV for `clvctl fit
 * --csv`) or to Kafka's input topics (key: the customer id; value: the JSON
 * of SPEC section 3), optionally paced, with a progress line. */
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clvctl.h"
#include "common.h"
#include "event.h"
#include "loadgen.h"
#include "timeutil.h"

enum lg_format { LG_JSONL = 0, LG_CSV = 1 };

#define LG_JSON_MAX 512

struct lg_opts {
    struct loadgen_params p;
    int have_start, have_mix, purchases_only;
    enum lg_format format;
    const char *output; /* NULL: stdout */
    const char *brokers;
    const char *topics[3]; /* by enum clv_event_type */
    char topics_buf[256];
    double rate; /* events per second; 0: as fast as it goes */
    const char *props[MAX_KAFKA_PROPS];
    int nprops;
};

static void loadgen_usage(FILE *out)
{
    fprintf(out,
            "usage: clvctl loadgen [options]\n"
            "\n"
            "Synthetic customers drawn from BG/NBD (purchases, dropout) and Gamma-Gamma\n"
            "(spend), with logins and visits while alive and prospects who only visit, in\n"
            "time order.  The same options and seed give the same events (docs/clv.md).\n"
            "\n"
            "  --customers N        customer ids, buyers and prospects (default 100000)\n"
            "  --seed S             random seed (default 1)\n"
            "  --start DATE         start of the period, YYYY-MM-DD or RFC 3339 (default: the\n"
            "                       period ends today at 00:00 UTC)\n"
            "  --days D             length of the period in days (default 365)\n"
            "  --acquisition-days A first events spread over the first A days (default D)\n"
            "  --mix V,L,P          shares of visits, logins, purchases (default 60,30,10)\n"
            "  --prospects SHARE    share of the ids that never buy (default 0.2)\n"
            "  --purchases-only     every id a buyer, no logins or visits (model-faithful)\n"
            "  --model R,ALPHA,A,B,P,Q,GAMMA\n"
            "                       BG/NBD and Gamma-Gamma parameters (default CDNOW:\n"
            "                       0.243,4.414,0.793,2.426,6.25,3.74,15.44)\n"
            "  --time-unit-days N   the BG/NBD time unit in days (default 7)\n"
            "  --id-prefix S        prefix of the customer ids (default none: c000000, p000000)\n"
            "  --format jsonl|csv   JSON lines (all events, default) or CSV\n"
            "                       customer_id,date,amount of the purchases (clvctl fit --csv)\n"
            "  --output FILE        write to FILE (default stdout)\n"
            "  --brokers HOST:PORT  produce to Kafka instead (JSON values, key = customer id)\n"
            "  --topics P,L,V       input topics (default purchases,logins,visits)\n"
            "  --rate N             at most N events per second\n"
            "  -X KEY=VALUE         a librdkafka producer property (repeatable)\n"
            "\n"
            "Progress goes to stderr when it is a terminal; a summary line at the end.\n");
}

static int lg_bad(const char *opt, const char *v, const char *want)
{
    fprintf(stderr, "clvctl loadgen: %s wants %s, not '%s'\n", opt, want, v);
    return -1;
}

static int lg_set_model(struct lg_opts *o, const char *v)
{
    double m[7];

    if (parse_list(v, m, 7) < 0)
        return lg_bad("--model", v, "7 numbers r,alpha,a,b,p,q,gamma");
    o->p.model.r = m[0];
    o->p.model.alpha = m[1];
    o->p.model.a = m[2];
    o->p.model.b = m[3];
    o->p.model.p = m[4];
    o->p.model.q = m[5];
    o->p.model.gamma = m[6];
    return 0;
}

static int lg_set_topics(struct lg_opts *o, const char *v)
{
    if (parse_topics(v, o->topics_buf, sizeof(o->topics_buf), o->topics) < 0)
        return lg_bad("--topics", v, "3 topic names P,L,V");
    return 0;
}

static int lg_set_number(const char *opt, const char *v, double min, double max, double *out)
{
    if (parse_double(v, out) < 0 || *out < min || *out > max) {
        char want[64];
        snprintf(want, sizeof(want), "a number within %g..%g", min, max);
        return lg_bad(opt, v, want);
    }
    return 0;
}

static int lg_set_format(struct lg_opts *o, const char *v)
{
    if (strcmp(v, "jsonl") == 0)
        o->format = LG_JSONL;
    else if (strcmp(v, "csv") == 0)
        o->format = LG_CSV;
    else
        return lg_bad("--format", v, "jsonl or csv");
    return 0;
}

/* Options with a numeric value. */
static int lg_numeric_option(const char *name, const char *v, struct lg_opts *o)
{
    unsigned long long u;

    if (strcmp(name, "--customers") == 0) {
        if (parse_ull(v, 1, 1000000000ULL, &u) < 0)
            return lg_bad(name, v, "an integer within 1..1000000000");
        o->p.customers = (uint32_t)u;
        return 0;
    }
    if (strcmp(name, "--seed") == 0) {
        if (parse_ull(v, 0, ULLONG_MAX, &u) < 0)
            return lg_bad(name, v, "an unsigned integer");
        o->p.seed = u;
        return 0;
    }
    if (strcmp(name, "--days") == 0)
        return lg_set_number(name, v, 1e-3, 36525, &o->p.days);
    if (strcmp(name, "--acquisition-days") == 0)
        return lg_set_number(name, v, 0, 36525, &o->p.acquisition_days);
    if (strcmp(name, "--prospects") == 0)
        return lg_set_number(name, v, 0, 0.999999, &o->p.prospect_share);
    if (strcmp(name, "--time-unit-days") == 0)
        return lg_set_number(name, v, 1e-6, 36525, &o->p.model.time_unit_days);
    return lg_set_number(name, v, 1e-3, 1e9, &o->rate); /* --rate */
}

/* Options with a value of another kind. */
static int lg_other_option(const char *name, const char *v, struct lg_opts *o)
{
    if (strcmp(name, "--start") == 0) {
        o->have_start = 1;
        return parse_time(v, &o->p.start) == 0 ? 0 : lg_bad(name, v, "YYYY-MM-DD or RFC 3339");
    }
    if (strcmp(name, "--mix") == 0) {
        o->have_mix = 1;
        return parse_list(v, o->p.mix, 3) == 0 ? 0 : lg_bad(name, v, "3 numbers V,L,P");
    }
    if (strcmp(name, "--model") == 0)
        return lg_set_model(o, v);
    if (strcmp(name, "--id-prefix") == 0) {
        if (strlen(v) >= sizeof(o->p.id_prefix))
            return lg_bad(name, v, "at most 31 characters");
        strcpy(o->p.id_prefix, v);
        return 0;
    }
    if (strcmp(name, "--format") == 0)
        return lg_set_format(o, v);
    if (strcmp(name, "--output") == 0) {
        o->output = v;
        return 0;
    }
    if (strcmp(name, "--brokers") == 0) {
        o->brokers = v;
        return 0;
    }
    if (strcmp(name, "--topics") == 0)
        return lg_set_topics(o, v);
    return kafka_prop_add("loadgen", v, o->props, &o->nprops); /* -X */
}

static int loadgen_option(int argc, char **argv, int *i, struct lg_opts *o)
{
    static const char *const numeric[] = {
        "--customers", "--seed",           "--days", "--acquisition-days",
        "--prospects", "--time-unit-days", "--rate"};
    static const char *const other[] = {"--start",     "--mix",    "--model",
                                        "--id-prefix", "--format", "--output",
                                        "--brokers",   "--topics", "-X"};
    const char *v;

    if (strcmp(argv[*i], "--purchases-only") == 0) {
        o->purchases_only = 1;
        return 0;
    }
    for (size_t k = 0; k < CLV_ARRAY_LEN(numeric); k++)
        if ((v = option_value(argc, argv, i, numeric[k])) != NULL)
            return v[0] ? lg_numeric_option(numeric[k], v, o) : -1;
    for (size_t k = 0; k < CLV_ARRAY_LEN(other); k++)
        if ((v = option_value(argc, argv, i, other[k])) != NULL)
            return v[0] ? lg_other_option(other[k], v, o) : -1;
    fprintf(stderr, "clvctl loadgen: unknown option '%s'\n", argv[*i]);
    return -1;
}

/* 0: options in *o; 1: help; -1: usage error. */
static int loadgen_parse_args(int argc, char **argv, struct lg_opts *o)
{
    char err[CLV_ERRLEN];

    memset(o, 0, sizeof(*o));
    loadgen_params_default(&o->p);
    o->topics[CLV_EV_PURCHASE] = "purchases";
    o->topics[CLV_EV_LOGIN] = "logins";
    o->topics[CLV_EV_VISIT] = "visits";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return 1;
        if (loadgen_option(argc, argv, &i, o) < 0)
            return -1;
    }
    if (o->purchases_only && o->have_mix) {
        fprintf(stderr, "clvctl loadgen: give --mix or --purchases-only, not both\n");
        return -1;
    }
    if (o->brokers && (o->output || o->format == LG_CSV)) {
        fprintf(stderr, "clvctl loadgen: --brokers produces to Kafka: no --output or --format\n");
        return -1;
    }
    if (o->purchases_only)
        o->p.mode = LOADGEN_MODEL; /* login_rate = visit_rate = 0 */
    if (!o->have_start) {
        /* the period ends today at 00:00 UTC */
        clv_ms today = clv_now_ms() / CLV_MS_PER_DAY * CLV_MS_PER_DAY;
        o->p.start = today - (clv_ms)llround(o->p.days * (double)CLV_MS_PER_DAY);
    }
    if (loadgen_params_check(&o->p, err, sizeof(err)) < 0) {
        fprintf(stderr, "clvctl %s\n", err);
        return -1;
    }
    return 0;
}

/* Where the events go. */
struct lg_sink {
    FILE *out; /* a file format; NULL with Kafka */
    int close_out;
    enum lg_format format;
    rd_kafka_t *rk;
    const char *const *topics;
    struct delivery dr;
    uint64_t written;
};

static int sink_open(struct lg_sink *s, const struct lg_opts *o, char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    s->format = o->format;
    s->topics = o->topics;
    if (o->brokers) {
        s->rk = kafka_producer(o->brokers, o->props, o->nprops, &s->dr, err, errlen);
        return s->rk != NULL ? 0 : -1;
    }
    s->out = stdout;
    if (o->output) {
        s->out = fopen(o->output, "w");
        if (s->out == NULL) {
            clv_seterr(err, errlen, "%s: %s", o->output, strerror(errno));
            return -1;
        }
        s->close_out = 1;
    }
    setvbuf(s->out, NULL, _IOFBF, 1 << 20);
    if (s->format == LG_CSV)
        fputs("customer_id,date,amount\n", s->out);
    return 0;
}

/* The event as the JSON object of SPEC section 3.  Ids and channel need no
 * escaping: loadgen makes them of letters, digits and '-' (and a checked
 * prefix). */
static size_t event_json(const struct loadgen_event *ev, char *buf, size_t buflen)
{
    char ts[32];
    int n;

    rfc3339_format(ev->ts, ts, sizeof(ts));
    if (ev->type == CLV_EV_PURCHASE)
        n = snprintf(buf, buflen,
                     "{\"event_id\":\"%s\",\"customer_id\":\"%s\",\"type\":\"purchase\","
                     "\"ts\":\"%s\",\"amount\":%.2f,\"channel\":\"%s\"}",
                     ev->event_id, ev->customer_id, ts, ev->amount, ev->channel);
    else
        n = snprintf(buf, buflen,
                     "{\"event_id\":\"%s\",\"customer_id\":\"%s\",\"type\":\"%s\","
                     "\"ts\":\"%s\",\"channel\":\"%s\"}",
                     ev->event_id, ev->customer_id, event_type_name(ev->type), ts, ev->channel);
    return n > 0 && (size_t)n < buflen ? (size_t)n : 0;
}

static int sink_write(struct lg_sink *s, const struct loadgen_event *ev, char *err, size_t errlen)
{
    char json[LG_JSON_MAX], ts[32];
    size_t len;

    if (s->rk == NULL && s->format == LG_CSV) {
        if (ev->type != CLV_EV_PURCHASE)
            return 0;
        rfc3339_format(ev->ts, ts, sizeof(ts));
        fprintf(s->out, "%s,%s,%.2f\n", ev->customer_id, ts, ev->amount);
        s->written++;
        return 0;
    }
    len = event_json(ev, json, sizeof(json));
    if (len == 0) {
        clv_seterr(err, errlen, "event %s does not fit in %d bytes", ev->event_id, LG_JSON_MAX);
        return -1;
    }
    s->written++;
    if (s->rk != NULL)
        return kafka_send(s->rk, &s->dr, s->topics[ev->type], ev->customer_id,
                          strlen(ev->customer_id), json, len, err, errlen);
    json[len] = '\n';
    fwrite(json, 1, len + 1, s->out);
    return 0;
}

/* Flush and close; -1 if anything was lost. */
static int sink_close(struct lg_sink *s, int ok, char *err, size_t errlen)
{
    int ret = 0;

    if (s->rk != NULL) {
        if (ok && kafka_finish(s->rk, &s->dr, 60000, err, errlen) < 0)
            ret = -1;
        rd_kafka_destroy(s->rk);
        s->rk = NULL;
    }
    if (s->out != NULL) {
        if ((fflush(s->out) != 0 || ferror(s->out)) && ok) {
            clv_seterr(err, errlen, "write error: %s", strerror(errno));
            ret = -1;
        }
        if (s->close_out && fclose(s->out) != 0 && ok && ret == 0) {
            clv_seterr(err, errlen, "write error: %s", strerror(errno));
            ret = -1;
        }
        s->out = NULL;
    }
    return ok ? ret : -1;
}

/* --rate: event k is due at k / rate seconds after the start. */
static void pace(struct lg_sink *s, double rate, clv_ms t0, uint64_t k)
{
    clv_ms due = t0 + (clv_ms)((double)k * 1000.0 / rate), now = clv_mono_ms();

    if (due <= now)
        return;
    if (s->rk != NULL) {
        /* wait while serving reports; a poll returns early when it serves one */
        for (; now < due; now = clv_mono_ms())
            rd_kafka_poll(s->rk, (int)(due - now));
    } else {
        struct timespec ts = {(time_t)((due - now) / 1000), (long)((due - now) % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void loadgen_show(struct progress *bar, const struct lg_opts *o,
                         const struct loadgen_event *ev, uint64_t n, clv_ms t0, int force)
{
    char text[128], ts[32];
    double secs = (double)(clv_mono_ms() - t0) / 1000.0;
    double span = o->p.days * (double)CLV_MS_PER_DAY;

    rfc3339_format(ev->ts, ts, sizeof(ts));
    ts[10] = '\0';
    snprintf(text, sizeof(text), "%s  %llu events  %.0f/s", ts, (unsigned long long)n,
             secs > 0 ? (double)n / secs : 0.0);
    progress_show(bar, force ? 1.0 : (double)(ev->ts - o->p.start) / span, text, force);
}

static void loadgen_summary(const struct lg_opts *o, const struct loadgen *g, uint64_t written,
                            clv_ms t0)
{
    struct loadgen_stats st;
    struct loadgen_plan plan;
    double secs = (double)(clv_mono_ms() - t0) / 1000.0;
    uint64_t total;

    loadgen_get_stats(g, &st);
    loadgen_get_plan(g, &plan);
    total = st.events[CLV_EV_PURCHASE] + st.events[CLV_EV_LOGIN] + st.events[CLV_EV_VISIT];
    fprintf(stderr,
            "clvctl loadgen: %llu events (%llu visits, %llu logins, %llu purchases) of %u "
            "customers (%u buyers, %u prospects, %u dropped out) in %.1f s",
            (unsigned long long)total, (unsigned long long)st.events[CLV_EV_VISIT],
            (unsigned long long)st.events[CLV_EV_LOGIN],
            (unsigned long long)st.events[CLV_EV_PURCHASE], st.arrived, plan.buyers, plan.prospects,
            st.dropped, secs);
    if (o->brokers)
        fprintf(stderr, "; %llu produced to %s\n", (unsigned long long)written, o->brokers);
    else
        fprintf(stderr, "; %llu %s written to %s\n", (unsigned long long)written,
                o->format == LG_CSV ? "purchases" : "lines", o->output ? o->output : "stdout");
}

static void warn_future(const struct lg_opts *o)
{
    clv_ms end = o->p.start + (clv_ms)llround(o->p.days * (double)CLV_MS_PER_DAY);
    char at[32];

    if (o->brokers == NULL || end <= clv_now_ms())
        return;
    rfc3339_format(end, at, sizeof(at));
    fprintf(stderr,
            "clvctl loadgen: warning: the period runs to %s, in the future; clvd rejects "
            "events more than clock.max_future_skew ahead (future_timestamp)\n",
            at);
}

int cmd_loadgen(int argc, char **argv)
{
    struct lg_opts o;
    struct lg_sink sink;
    struct loadgen *g = NULL;
    struct loadgen_event ev;
    struct progress bar;
    char err[CLV_ERRLEN];
    uint64_t n = 0;
    clv_ms t0 = clv_mono_ms();
    int rc, ok = 0, opened = 0;

    switch (loadgen_parse_args(argc, argv, &o)) {
    case 1:
        loadgen_usage(stdout);
        return 0;
    case -1:
        loadgen_usage(stderr);
        return EXIT_USAGE;
    }
    warn_future(&o);
    if (loadgen_new(&g, &o.p, err, sizeof(err)) < 0 || sink_open(&sink, &o, err, sizeof(err)) < 0)
        goto out;
    opened = 1;
    /* a progress bar on the terminal the data goes to would garble it */
    progress_init(&bar, o.brokers || o.output || !isatty(STDOUT_FILENO));
    while ((rc = loadgen_next(g, &ev)) == 1) {
        if (o.rate > 0)
            pace(&sink, o.rate, t0, n);
        if (sink_write(&sink, &ev, err, sizeof(err)) < 0)
            goto out;
        if ((++n & 1023) == 0)
            loadgen_show(&bar, &o, &ev, n, t0, 0);
    }
    if (rc < 0) {
        clv_seterr(err, sizeof(err), "loadgen: out of memory");
        goto out;
    }
    ok = 1;
out:
    if (opened) {
        if (ok && n > 0)
            loadgen_show(&bar, &o, &ev, n, t0, 1);
        progress_end(&bar);
        if (sink_close(&sink, ok, ok ? err : NULL, ok ? sizeof(err) : 0) < 0)
            ok = 0;
        else
            loadgen_summary(&o, g, sink.written, t0);
    }
    if (!ok)
        fprintf(stderr, "clvctl loadgen: %s\n", err);
    loadgen_free(g);
    return ok ? 0 : 1;
}
