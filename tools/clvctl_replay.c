/* clvctl_replay.c -- `clvctl replay FILE`: produce a history into clvd's
 * input topics, for backfills (SPEC section 14).
 *
 * Formats:
 *   jsonl  one SPEC section 3 event per line, produced as is; its "type"
 *          field picks the topic (a line without one is an error).
 *   csv    customer_id,date,amount purchases (an optional header line; date
 *          YYYY-MM-DD, 00:00 UTC, or RFC 3339), as purchase events with
 *          event_id "<customer_id>:<line>".
 *   cdnow  the CDNOW sample (whitespace-separated master id, sample id,
 *          YYYYMMDD, CDs, dollars): purchases of customer "cdnow-<master id>"
 *          at 00:00 UTC, event_id "cdnow-<master id>:<line>".
 *
 * Two passes over the file.  The first converts and checks every line with
 * clvd's own parser (event.h), as clvd will when it consumes it, and stops
 * at the first line clvd would reject, naming FILE:LINE and the reason:
 * nothing is produced from a file with a bad line, so a corrected file can
 * be replayed whole (a half-produced file replayed again would count events
 * twice beyond clvd's de-duplication memory).  The second produces, key =
 * customer id, with the idempotent producer (clvctl_kafka.c), optionally
 * paced, with a progress bar (or a line every few seconds when stderr is not
 * a terminal), and waits for every delivery report: the exit status is 1 if
 * any message was not delivered. */
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <yajl/yajl_tree.h>

#include "clvctl.h"
#include "common.h"
#include "config.h"
#include "event.h"
#include "fit.h"
#include "sbuf.h"
#include "timeutil.h"

#define PROGRESS_LINE_MS 5000
#define DELIVERY_WAIT_MS (15 * 60 * 1000) /* message.timeout.ms ends it first */

enum replay_format { FMT_NONE = -1, FMT_JSONL = 0, FMT_CSV, FMT_CDNOW };

struct replay_opts {
    const char *path;
    enum replay_format format;
    const char *config_path;
    const char *brokers;
    const char *topics[3]; /* by enum clv_event_type */
    char topics_buf[256];
    int have_topics;
    double rate; /* events per second; 0: as fast as it goes */
    const char *props[MAX_KAFKA_PROPS];
    int nprops;
    int check_only;
};

static void replay_usage(FILE *out)
{
    fprintf(out,
            "usage: clvctl replay FILE [options]\n"
            "\n"
            "Produce a history into clvd's input topics (key = customer id).  Every line is\n"
            "first checked with clvd's own event parser; a line clvd would reject stops the\n"
            "replay before anything is produced, naming FILE:LINE.  Waits for every delivery\n"
            "report; exit status 1 if any message was not delivered.\n"
            "\n"
            "  --format F           jsonl: one event per line (SPEC section 3), its \"type\"\n"
            "                       field (purchase, login, visit) picks the topic;\n"
            "                       csv: customer_id,date,amount purchases (optional header;\n"
            "                       date YYYY-MM-DD = 00:00 UTC, or RFC 3339), event_id\n"
            "                       \"<customer_id>:<line>\";\n"
            "                       cdnow: the CDNOW sample (master id, sample id, YYYYMMDD,\n"
            "                       CDs, dollars), customer \"cdnow-<master id>\", event_id\n"
            "                       \"cdnow-<master id>:<line>\".\n"
            "                       Default: csv for *.csv, jsonl otherwise\n"
            "  --brokers HOST:PORT  Kafka bootstrap servers (default: kafka.brokers of -c FILE,\n"
            "                       else localhost:9092)\n"
            "  --topics P,L,V       purchase, login and visit topics (default: -c FILE's, else\n"
            "                       purchases,logins,visits)\n"
            "  -c, --config FILE    clvd's config: brokers, topics, kafka.properties (TLS,\n"
            "                       SASL), max_message_bytes and clock.max_future_skew\n"
            "  --rate N             at most N events per second\n"
            "  -X KEY=VALUE         a librdkafka producer property (repeatable; after -c's)\n"
            "  --check              check the file only; produce nothing\n"
            "\n"
            "Progress goes to stderr: a bar on a terminal, else a line every %d s.\n",
            PROGRESS_LINE_MS / 1000);
}

static int replay_bad(const char *opt, const char *v, const char *want)
{
    fprintf(stderr, "clvctl replay: %s wants %s, not '%s'\n", opt, want, v);
    return -1;
}

static int set_format(struct replay_opts *o, const char *v)
{
    static const char *const names[] = {"jsonl", "csv", "cdnow"};

    for (size_t k = 0; k < CLV_ARRAY_LEN(names); k++)
        if (strcmp(v, names[k]) == 0) {
            o->format = (enum replay_format)k;
            return 0;
        }
    return replay_bad("--format", v, "jsonl, csv or cdnow");
}

static int replay_value_option(const char *name, const char *v, struct replay_opts *o)
{
    if (strcmp(name, "--format") == 0)
        return set_format(o, v);
    if (strcmp(name, "--brokers") == 0) {
        o->brokers = v;
        return 0;
    }
    if (strcmp(name, "--topics") == 0) {
        o->have_topics = 1;
        if (parse_topics(v, o->topics_buf, sizeof(o->topics_buf), o->topics) < 0)
            return replay_bad(name, v, "3 topic names P,L,V");
        return 0;
    }
    if (strcmp(name, "--rate") == 0) {
        if (parse_double(v, &o->rate) < 0 || !(o->rate > 0))
            return replay_bad(name, v, "a positive number of events per second");
        return 0;
    }
    if (strcmp(name, "-X") == 0)
        return kafka_prop_add("replay", v, o->props, &o->nprops);
    o->config_path = v; /* -c, --config */
    return 0;
}

/* One argument at argv[*i]; -1 after a message. */
static int replay_option(int argc, char **argv, int *i, struct replay_opts *o)
{
    static const char *const with_value[] = {"--format", "--brokers", "--topics", "--rate",
                                             "-X",       "-c",        "--config"};
    const char *v;

    if (strcmp(argv[*i], "--check") == 0) {
        o->check_only = 1;
        return 0;
    }
    for (size_t k = 0; k < CLV_ARRAY_LEN(with_value); k++)
        if ((v = option_value(argc, argv, i, with_value[k])) != NULL)
            return v[0] ? replay_value_option(with_value[k], v, o) : -1;
    if (argv[*i][0] == '-' && argv[*i][1] != '\0') {
        fprintf(stderr, "clvctl replay: unknown option '%s'\n", argv[*i]);
        return -1;
    }
    if (o->path != NULL) {
        fprintf(stderr, "clvctl replay: one FILE only ('%s', '%s')\n", o->path, argv[*i]);
        return -1;
    }
    o->path = argv[*i];
    return 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);

    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* 0: options in *o; 1: help; -1: usage error. */
static int replay_parse_args(int argc, char **argv, struct replay_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->format = FMT_NONE;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return 1;
        if (replay_option(argc, argv, &i, o) < 0)
            return -1;
    }
    if (o->path == NULL) {
        fprintf(stderr, "clvctl replay: give a FILE\n");
        return -1;
    }
    if (o->format == FMT_NONE)
        o->format = ends_with(o->path, ".csv") ? FMT_CSV : FMT_JSONL;
    return 0;
}

/* ---- where to produce: -c FILE, then the command line ---------------------- */

struct target {
    struct clv_config cfg; /* the file's, or the defaults */
    int have_cfg;
    const char *brokers;
    const char *topics[3];
    const char *props[2 * MAX_KAFKA_PROPS]; /* kafka.properties, then -X */
    char prop_buf[MAX_KAFKA_PROPS][512];
    int nprops;
    struct clv_event_limits lim;
};

static int target_from(struct target *t, const struct replay_opts *o, char *err, size_t errlen)
{
    const struct clv_kafka_config *k;

    if ((o->config_path ? config_load(o->config_path, &t->cfg, err, errlen)
                        : config_defaults(&t->cfg, err, errlen)) < 0)
        return -1;
    t->have_cfg = 1;
    k = &t->cfg.kafka;
    t->brokers = o->brokers ? o->brokers : k->brokers;
    t->topics[CLV_EV_PURCHASE] = o->have_topics ? o->topics[CLV_EV_PURCHASE] : k->topics.purchases;
    t->topics[CLV_EV_LOGIN] = o->have_topics ? o->topics[CLV_EV_LOGIN] : k->topics.logins;
    t->topics[CLV_EV_VISIT] = o->have_topics ? o->topics[CLV_EV_VISIT] : k->topics.visits;
    t->lim = (struct clv_event_limits){(size_t)k->max_message_bytes, t->cfg.clock.max_future_skew};
    for (int i = 0; i < k->nproperties && i < MAX_KAFKA_PROPS; i++) {
        snprintf(t->prop_buf[i], sizeof(t->prop_buf[i]), "%s=%s", k->properties[i].key,
                 k->properties[i].value);
        t->props[t->nprops++] = t->prop_buf[i];
    }
    for (int i = 0; i < o->nprops; i++)
        t->props[t->nprops++] = o->props[i];
    if (!o->check_only && strcmp(t->brokers, "embedded") == 0) {
        clv_seterr(err, errlen,
                   "kafka.brokers is \"embedded\" (clvd's in-process Kafka): give --brokers");
        return -1;
    }
    return 0;
}

/* ---- reading events --------------------------------------------------------- */

struct reader {
    const struct replay_opts *o;
    const struct target *t;
    FILE *f;
    off_t size;
    char *line;
    size_t cap;
    long lineno;
    int seen_row; /* csv: a header may come before the first row only */
    struct event_parser *parser;
    clv_ms wall_now;
    struct clv_sbuf value; /* the message to produce */
    struct clv_event ev;   /* as clvd will parse it */
};

static int reader_open(struct reader *r, const struct replay_opts *o, const struct target *t,
                       char *err, size_t errlen)
{
    struct stat sb;

    memset(r, 0, sizeof(*r));
    r->o = o;
    r->t = t;
    sbuf_init(&r->value);
    r->f = fopen(o->path, "r");
    if (r->f == NULL) {
        clv_seterr(err, errlen, "%s: %s", o->path, strerror(errno));
        return -1;
    }
    r->size = fstat(fileno(r->f), &sb) == 0 ? sb.st_size : 0;
    r->parser = event_parser_create(err, errlen);
    r->wall_now = clv_now_ms();
    return r->parser != NULL ? 0 : -1;
}

static void reader_close(struct reader *r)
{
    if (r->f != NULL)
        fclose(r->f);
    r->f = NULL;
    event_parser_free(r->parser);
    r->parser = NULL;
    free(r->line);
    r->line = NULL;
    sbuf_free(&r->value);
}

static int reader_rewind(struct reader *r, char *err, size_t errlen)
{
    if (fseek(r->f, 0, SEEK_SET) != 0) {
        clv_seterr(err, errlen, "%s: %s", r->o->path, strerror(errno));
        return -1;
    }
    r->lineno = 0;
    r->seen_row = 0;
    r->wall_now = clv_now_ms();
    return 0;
}

static int is_blank(const char *s)
{
    return s[strspn(s, " \t\r\n")] == '\0';
}

/* The line without its line end. */
static size_t chomp(char *line)
{
    size_t n = strlen(line);

    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    return n;
}

/* jsonl: the "type" field decides the topic. */
static int jsonl_type(const char *line, enum clv_event_type *type, char *err, size_t errlen)
{
    const char *path[] = {"type", NULL};
    static const enum clv_event_type types[] = {CLV_EV_PURCHASE, CLV_EV_LOGIN, CLV_EV_VISIT};
    char yerr[256];
    yajl_val doc = yajl_tree_parse(line, yerr, sizeof(yerr)), v;
    const char *name;
    int ret = -1;

    if (doc == NULL) {
        yerr[strcspn(yerr, "\n")] = '\0';
        clv_seterr(err, errlen, "invalid_json: %s", yerr);
        return -1;
    }
    v = YAJL_IS_OBJECT(doc) ? yajl_tree_get(doc, path, yajl_t_any) : NULL;
    name = YAJL_IS_STRING(v) ? v->u.string : NULL;
    for (size_t k = 0; name != NULL && k < CLV_ARRAY_LEN(types); k++)
        if (strcmp(name, event_type_name(types[k])) == 0) {
            *type = types[k];
            ret = 0;
        }
    if (!YAJL_IS_OBJECT(doc))
        clv_seterr(err, errlen, "not a JSON object");
    else if (v == NULL)
        clv_seterr(err, errlen, "no \"type\" field (purchase, login or visit): it picks the topic");
    else if (ret < 0)
        clv_seterr(err, errlen, "\"type\" is not \"purchase\", \"login\" or \"visit\"");
    yajl_tree_free(doc);
    return ret;
}

/* A purchase event as JSON: ids escaped, amount as %.15g (the shortest
 * text that reads back as the same value for any amount written with up to
 * 15 significant digits). */
static void purchase_json(struct clv_sbuf *b, const char *id, size_t idlen, long lineno, clv_ms ts,
                          double amount)
{
    char t[32];

    rfc3339_format(ts, t, sizeof(t));
    sbuf_reset(b);
    sbuf_puts(b, "{\"event_id\":");
    sbuf_json_str(b, id, idlen);
    b->len--; /* reopen the string: "<id>:<line>" */
    sbuf_printf(b, ":%ld\",\"customer_id\":", lineno);
    sbuf_json_str(b, id, idlen);
    sbuf_printf(b, ",\"type\":\"purchase\",\"ts\":\"%s\",\"amount\":%.15g}", t, amount);
}

/* The next CSV field at *p: blanks trimmed, double quotes removed. */
static int csv_field(const char **p, const char **f, size_t *len)
{
    const char *s = *p + strspn(*p, " \t");

    if (*s == '"') {
        const char *close = strchr(s + 1, '"');
        if (close == NULL)
            return -1;
        *f = s + 1;
        *len = (size_t)(close - s - 1);
        s = close + 1;
    } else {
        *f = s;
        *len = strcspn(s, ",\r\n");
        s += *len;
        while (*len > 0 && ((*f)[*len - 1] == ' ' || (*f)[*len - 1] == '\t'))
            (*len)--;
    }
    *p = s + strspn(s, " \t");
    return 0;
}

/* Exactly n fields. */
static int csv_split(const char *line, const char **f, size_t *len, int n)
{
    const char *p = line;

    for (int i = 0; i < n; i++) {
        if (csv_field(&p, &f[i], &len[i]) < 0)
            return -1;
        if (i + 1 < n && *p++ != ',')
            return -1;
    }
    return *p == '\0' || *p == '\r' || *p == '\n' ? 0 : -1;
}

/* A field copied out as a C string; -1 when it does not fit. */
static int field_str(const char *f, size_t len, char *buf, size_t buflen)
{
    if (len >= buflen)
        return -1;
    memcpy(buf, f, len);
    buf[len] = '\0';
    return 0;
}

/* csv: 1 for an event, 0 for a header or blank line, -1 on error. */
static int csv_line(struct reader *r, char *err, size_t errlen)
{
    const char *f[3];
    size_t len[3];
    char date[64], amount[64];
    clv_ms ts;
    double value;

    if (is_blank(r->line))
        return 0;
    if (csv_split(r->line, f, len, 3) < 0) {
        clv_seterr(err, errlen, "expected 3 fields customer_id,date,amount");
        return -1;
    }
    if (!r->seen_row++ && (len[1] == 0 || f[1][0] < '0' || f[1][0] > '9'))
        return 0; /* a header */
    if (len[0] == 0) {
        clv_seterr(err, errlen, "empty customer_id");
        return -1;
    }
    if (field_str(f[1], len[1], date, sizeof(date)) < 0 || parse_time(date, &ts) < 0) {
        clv_seterr(err, errlen, "bad date '%.*s' (want YYYY-MM-DD or RFC 3339)", (int)len[1], f[1]);
        return -1;
    }
    if (field_str(f[2], len[2], amount, sizeof(amount)) < 0 || parse_double(amount, &value) < 0 ||
        value < 0) {
        clv_seterr(err, errlen, "bad amount '%.*s' (want a number >= 0)", (int)len[2], f[2]);
        return -1;
    }
    purchase_json(&r->value, f[0], len[0], r->lineno, ts, value);
    return 1;
}

/* cdnow: 1 for an event, 0 for a blank line, -1 on error. */
static int cdnow_line(struct reader *r, char *err, size_t errlen)
{
    struct fit_row row;
    char id[CLV_ID_MAX + 1];
    const char *master = r->line + strspn(r->line, " \t");
    size_t mlen = strcspn(master, " \t\r\n");
    int rc = fit_parse_cdnow_line(r->line, &row, err, errlen);
    int n;

    if (rc <= 0)
        return rc;
    n = snprintf(id, sizeof(id), "cdnow-%.*s", (int)mlen, master);
    if (n < 0 || (size_t)n >= sizeof(id)) {
        clv_seterr(err, errlen, "customer id longer than %d bytes", CLV_ID_MAX);
        return -1;
    }
    purchase_json(&r->value, id, (size_t)n, r->lineno, (clv_ms)row.day * CLV_MS_PER_DAY,
                  row.amount);
    return 1;
}

/* The line as an event of the format; 1 for an event (its topic in *type),
 * 0 for a line that holds none, -1 on error. */
static int convert_line(struct reader *r, enum clv_event_type *type, char *err, size_t errlen)
{
    size_t len;

    switch (r->o->format) {
    case FMT_CSV:
        *type = CLV_EV_PURCHASE;
        return csv_line(r, err, errlen);
    case FMT_CDNOW:
        *type = CLV_EV_PURCHASE;
        return cdnow_line(r, err, errlen);
    default:
        if (is_blank(r->line))
            return 0;
        len = chomp(r->line);
        if (jsonl_type(r->line, type, err, errlen) < 0)
            return -1;
        sbuf_reset(&r->value);
        sbuf_append(&r->value, r->line, len);
        return 1;
    }
}

/* The next event: 1 (message in r->value, parsed in r->ev), 0 at the end,
 * -1 with "FILE:LINE: reason" in err. */
static int reader_next(struct reader *r, char *err, size_t errlen)
{
    char why[CLV_ERRLEN];
    enum clv_event_type type = CLV_EV_PURCHASE;
    int rc = 0;

    while (rc == 0) {
        if (getline(&r->line, &r->cap, r->f) == -1) {
            if (!ferror(r->f))
                return 0;
            clv_seterr(err, errlen, "%s: read error: %s", r->o->path, strerror(errno));
            return -1;
        }
        if (r->lineno++ == 0 && memcmp(r->line, "\xef\xbb\xbf", 3) == 0)
            memmove(r->line, r->line + 3, strlen(r->line + 3) + 1); /* a UTF-8 BOM */
        rc = convert_line(r, &type, why, sizeof(why));
    }
    if (rc > 0 && event_parser_parse(r->parser, r->value.buf, r->value.len, type, &r->t->lim,
                                     r->wall_now, &r->ev, why, sizeof(why)) != 0) {
        size_t n = strlen(why);
        snprintf(why + n, sizeof(why) - n, " (clvd would reject it)");
        rc = -1;
    }
    if (rc < 0)
        clv_seterr(err, errlen, "%s:%ld: %s", r->o->path, r->lineno, why);
    return rc;
}

/* ---- the two passes -------------------------------------------------------------- */

struct tally {
    uint64_t events[3]; /* by enum clv_event_type */
    uint64_t total;
    clv_ms first, last; /* event times */
};

static void tally_add(struct tally *t, const struct clv_event *ev)
{
    if (t->total == 0 || ev->ts < t->first)
        t->first = ev->ts;
    if (t->total == 0 || ev->ts > t->last)
        t->last = ev->ts;
    t->events[ev->type]++;
    t->total++;
}

static int check_file(struct reader *r, struct tally *t, char *err, size_t errlen)
{
    struct progress bar;
    char text[96];
    int rc;

    progress_init_lines(&bar, "clvctl replay: checking", PROGRESS_LINE_MS);
    while ((rc = reader_next(r, err, errlen)) == 1) {
        tally_add(t, &r->ev);
        if ((t->total & 1023) == 0) {
            snprintf(text, sizeof(text), "checking line %ld", r->lineno);
            progress_show(&bar, r->size ? (double)ftello(r->f) / (double)r->size : 0, text, 0);
        }
    }
    progress_end(&bar);
    if (rc == 0 && t->total == 0)
        clv_seterr(err, errlen, "%s: no events", r->o->path);
    return rc < 0 || t->total == 0 ? -1 : 0;
}

/* --rate: event k is due k / rate seconds after the start; wait serving
 * delivery reports. */
static void pace(rd_kafka_t *rk, double rate, clv_ms t0, uint64_t k)
{
    clv_ms due = t0 + (clv_ms)((double)k * 1000.0 / rate), now;

    /* a poll returns early when it serves a report */
    while ((now = clv_mono_ms()) < due)
        rd_kafka_poll(rk, (int)(due - now));
}

static void produce_show(struct progress *bar, const struct reader *r, uint64_t n, uint64_t total,
                         clv_ms t0, int force)
{
    char text[128], ts[32];
    double secs = (double)(clv_mono_ms() - t0) / 1000.0;

    rfc3339_format(r->ev.ts, ts, sizeof(ts));
    ts[10] = '\0';
    snprintf(text, sizeof(text), "%llu/%llu events  %.0f/s  %s", (unsigned long long)n,
             (unsigned long long)total, secs > 0 ? (double)n / secs : 0.0, ts);
    progress_show(bar, (double)n / (double)total, text, force);
}

/* Wait for the delivery reports, showing how many are left. */
static int wait_deliveries(rd_kafka_t *rk, const struct delivery *dr, struct progress *bar,
                           uint64_t total, char *err, size_t errlen)
{
    clv_ms until = clv_mono_ms() + DELIVERY_WAIT_MS;
    char text[96];

    while (rd_kafka_outq_len(rk) > 0 && clv_mono_ms() < until) {
        rd_kafka_flush(rk, 500);
        snprintf(text, sizeof(text), "waiting for delivery reports: %llu of %llu delivered",
                 (unsigned long long)dr->delivered, (unsigned long long)total);
        progress_show(bar, (double)(dr->delivered + dr->failed) / (double)total, text, 0);
    }
    return kafka_finish(rk, dr, 1000, err, errlen);
}

static int produce_file(struct reader *r, const struct tally *t, struct delivery *dr, char *err,
                        size_t errlen)
{
    const struct replay_opts *o = r->o;
    rd_kafka_t *rk = kafka_producer(r->t->brokers, r->t->props, r->t->nprops, dr, err, errlen);
    struct progress bar;
    clv_ms t0 = clv_mono_ms();
    uint64_t n = 0;
    int rc = -1;

    if (rk == NULL || reader_rewind(r, err, errlen) < 0)
        goto out;
    progress_init_lines(&bar, "clvctl replay", PROGRESS_LINE_MS);
    while ((rc = reader_next(r, err, errlen)) == 1) {
        if (o->rate > 0)
            pace(rk, o->rate, t0, n);
        if (kafka_send(rk, dr, r->t->topics[r->ev.type], r->ev.customer_id, r->ev.customer_id_len,
                       r->value.buf, r->value.len, err, errlen) < 0) {
            rc = -1;
            break;
        }
        n++;
        produce_show(&bar, r, n, t->total, t0, 0);
    }
    if (rc == 0 && n != t->total) {
        clv_seterr(err, errlen, "%s changed while it was replayed (%llu events, then %llu)",
                   o->path, (unsigned long long)t->total, (unsigned long long)n);
        rc = -1;
    }
    if (rc == 0)
        rc = wait_deliveries(rk, dr, &bar, t->total, err, errlen);
    if (rc == 0)
        produce_show(&bar, r, n, t->total, t0, 1);
    progress_end(&bar);
out:
    if (rk != NULL)
        rd_kafka_destroy(rk); /* after a failure, undelivered messages are dropped */
    return rc == 0 ? 0 : -1;
}

static void print_summary(const struct replay_opts *o, const struct target *t,
                          const struct tally *tl, const struct delivery *dr, clv_ms t0)
{
    double secs = (double)(clv_mono_ms() - t0) / 1000.0;
    char from[32], to[32];

    rfc3339_format(tl->first, from, sizeof(from));
    rfc3339_format(tl->last, to, sizeof(to));
    fprintf(stderr,
            "clvctl replay: %s: %llu events (%llu purchases, %llu logins, %llu visits) from "
            "%s to %s",
            o->path, (unsigned long long)tl->total, (unsigned long long)tl->events[CLV_EV_PURCHASE],
            (unsigned long long)tl->events[CLV_EV_LOGIN],
            (unsigned long long)tl->events[CLV_EV_VISIT], from, to);
    if (o->check_only)
        fprintf(stderr, ": all valid\n");
    else
        fprintf(stderr, "; %llu delivered to %s in %.1f s\n", (unsigned long long)dr->delivered,
                t->brokers, secs);
}

int cmd_replay(int argc, char **argv)
{
    struct replay_opts o;
    struct target *t = calloc(1, sizeof(*t));
    struct reader r = {0};
    struct tally tl = {0};
    struct delivery dr = {0};
    char err[CLV_ERRLEN];
    clv_ms t0 = clv_mono_ms();
    int ret = 1, opened = 0;

    if (t == NULL) {
        fprintf(stderr, "clvctl replay: out of memory\n");
        return 1;
    }
    switch (replay_parse_args(argc, argv, &o)) {
    case 1:
        replay_usage(stdout);
        ret = 0;
        goto done;
    case -1:
        replay_usage(stderr);
        ret = EXIT_USAGE;
        goto done;
    }
    if (target_from(t, &o, err, sizeof(err)) < 0)
        goto out;
    opened = 1;
    if (reader_open(&r, &o, t, err, sizeof(err)) < 0 || check_file(&r, &tl, err, sizeof(err)) < 0)
        goto out;
    if (!o.check_only && produce_file(&r, &tl, &dr, err, sizeof(err)) < 0)
        goto out;
    print_summary(&o, t, &tl, &dr, t0);
    ret = 0;
out:
    if (ret == 1 && dr.delivered > 0)
        fprintf(stderr, "clvctl replay: %s (%llu events were delivered before it)\n", err,
                (unsigned long long)dr.delivered);
    else if (ret == 1)
        fprintf(stderr, "clvctl replay: %s\n", err);
    if (opened)
        reader_close(&r);
done:
    if (t->have_cfg)
        config_free(&t->cfg);
    free(t);
    return ret;
}
