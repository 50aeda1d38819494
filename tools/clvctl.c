/* clvctl -- the clvd command-line tool (SPEC section 14).
 *
 * `clvctl COMMAND [OPTIONS]`: main() looks the command up in `commands[]`,
 * a table of {name, function, one-line help}; add a command by writing its
 * function (here, or in a tools/clvctl_NAME.c declared in clvctl.h) and
 * adding a row.  Exit status: 0 success, 1 failure, 2 usage.
 *
 * This file: the shared helpers (clvctl.h), `fit` from a file, dispatch.
 * `fit --redis`: clvctl_fit_redis.c.  `loadgen`: clvctl_loadgen.c.
 * `customer`, `stats`, `replay`: clvctl_NAME.c.  Reaching clvd's Redis (one
 * server or a cluster, the shard count, the deployment's clock):
 * clvctl_redis.c.  The idempotent producer: clvctl_kafka.c. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clvctl.h"
#include "common.h"
#include "fit.h"
#include "timeutil.h"

struct command {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
    const char *help;
};

/* ---- shared helpers --------------------------------------------------- */

/* The value of option argv[*i] ("--opt VALUE" or "--opt=VALUE"); NULL when
 * argv[*i] is not `name`, "" (after a message) when the value is missing.
 * argv[0] is the command, for the message. */
const char *option_value(int argc, char **argv, int *i, const char *name)
{
    size_t n = strlen(name);
    const char *arg = argv[*i], *v = NULL;

    if (strncmp(arg, name, n) != 0 || (arg[n] != '=' && arg[n] != '\0'))
        return NULL;
    if (arg[n] == '=')
        v = arg + n + 1;
    else if (*i + 1 < argc)
        v = argv[++*i];
    if (v == NULL || v[0] == '\0') {
        fprintf(stderr, "clvctl %s: %s needs a value\n", argv[0], name);
        return "";
    }
    return v;
}

/* A finite number, all of s. */
int parse_double(const char *s, double *out)
{
    char *end;

    errno = 0;
    *out = strtod(s, &end);
    return errno == 0 && end != s && *end == '\0' && isfinite(*out) ? 0 : -1;
}

/* A decimal integer within [min, max], all of s. */
int parse_ull(const char *s, unsigned long long min, unsigned long long max,
              unsigned long long *out)
{
    char *end;

    if (s[0] < '0' || s[0] > '9')
        return -1;
    errno = 0;
    *out = strtoull(s, &end, 10);
    return errno == 0 && *end == '\0' && *out >= min && *out <= max ? 0 : -1;
}

/* Exactly n comma-separated finite numbers. */
int parse_list(const char *s, double *out, int n)
{
    char buf[512], *save = NULL, *tok;
    int k = 0;

    if (strlen(s) >= sizeof(buf))
        return -1;
    strcpy(buf, s);
    for (tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        if (k == n || parse_double(tok, &out[k++]) < 0)
            return -1;
    }
    return k == n ? 0 : -1;
}

/* "YYYY-MM-DD" (00:00 UTC that day) or an RFC 3339 date-time. */
int parse_time(const char *s, clv_ms *out)
{
    size_t len = strlen(s);
    int32_t day;

    if (len == 10) {
        if (fit_parse_date(s, len, &day) < 0)
            return -1;
        *out = (clv_ms)day * CLV_MS_PER_DAY;
        return 0;
    }
    return rfc3339_parse(s, len, out);
}

void format_day(int32_t day, char buf[DATE_BUF])
{
    int y, m, d;

    fit_day_to_civil(day, &y, &m, &d);
    snprintf(buf, DATE_BUF, "%04d-%02d-%02d", y, m, d);
}

#define PROGRESS_WIDTH 30

void progress_init(struct progress *p, int wanted)
{
    *p = (struct progress){.on = wanted && isatty(STDERR_FILENO), .every = 100};
}

void progress_init_lines(struct progress *p, const char *label, clv_ms every_ms)
{
    progress_init(p, 1);
    if (!p->on)
        *p = (struct progress){
            .lines = 1, .every = every_ms, .label = label, .next = clv_mono_ms() + every_ms};
}

void progress_show(struct progress *p, double fraction, const char *text, int force)
{
    static const char bar[] = "##############################";
    clv_ms now;
    int fill;

    if (!p->on && !p->lines)
        return;
    now = clv_mono_ms();
    if (!force && now < p->next)
        return;
    p->next = now + p->every;
    fraction = fraction < 0.0 ? 0.0 : fraction > 1.0 ? 1.0 : fraction;
    if (p->lines) {
        fprintf(stderr, "%s: %3d%%  %s\n", p->label, (int)(fraction * 100.0), text);
        return;
    }
    fill = (int)(fraction * PROGRESS_WIDTH);
    fprintf(stderr, "\r[%.*s%*s] %3d%%  %s\033[K", fill, bar, PROGRESS_WIDTH - fill, "",
            (int)(fraction * 100.0), text);
    p->drawn = 1;
}

void progress_end(struct progress *p)
{
    if (p->on && p->drawn)
        fputc('\n', stderr);
    p->drawn = 0;
}

/* ---- clvctl fit ------------------------------------------------------- */

enum fit_source { FIT_SRC_NONE, FIT_SRC_CSV, FIT_SRC_CDNOW, FIT_SRC_REDIS };

struct fit_opts {
    enum fit_source source;
    const char *path;
    int have_calibration_end;
    int32_t calibration_end;
    double time_unit_days;
    struct fit_redis_opts redis;
};

static void fit_usage(FILE *out)
{
    fprintf(
        out,
        "usage: clvctl fit (--csv FILE | --cdnow FILE | --redis) [options]\n"
        "\n"
        "Maximum-likelihood fit of BG/NBD (r, alpha, a, b) and Gamma-Gamma (p, q, gamma)\n"
        "to a transaction history; prints the clv: section for clvd.yaml.\n"
        "\n"
        "  --csv FILE               CSV rows customer_id,date,amount (date YYYY-MM-DD or\n"
        "                           RFC 3339; an optional header line; - reads stdin)\n"
        "  --cdnow FILE             the CDNOW sample format (whitespace-separated)\n"
        "  --redis                  the state of every customer in clvd's Redis\n"
        "  --calibration-end DATE   last day (YYYY-MM-DD, inclusive) of the fitting period;\n"
        "                           later rows are ignored (default: the last day in FILE)\n"
        "  --time-unit-days N       the model's time unit in days (default 7: weeks)\n"
        "\n"
        "with --redis (SCAN of <prefix>{sN}:c:* keys, on every master of a cluster):\n"
        "  --config FILE            take redis.* (address, auth, db, key_prefix) from clvd.yaml\n"
        "  --redis-socket PATH      connect to a unix socket\n"
        "  --redis-host H           connect to host H (default 127.0.0.1)\n"
        "  --redis-port P           port (default 6379)\n"
        "  --prefix P               key prefix (default clv:)\n"
        "  --now DATE               the end of observation: YYYY-MM-DD (00:00 UTC, as\n"
        "                           --calibration-end) or RFC 3339; customers who bought\n"
        "                           later are left out (default: the last purchase day)\n");
}

static int set_source(struct fit_opts *o, enum fit_source src, const char *path)
{
    if (o->source != FIT_SRC_NONE) {
        fprintf(stderr, "clvctl fit: give only one of --csv, --cdnow, --redis\n");
        return -1;
    }
    o->source = src;
    o->path = path;
    return 0;
}

static int set_calibration_end(struct fit_opts *o, const char *v)
{
    if (strlen(v) != 10 || fit_parse_date(v, 10, &o->calibration_end) < 0) {
        fprintf(stderr, "clvctl fit: --calibration-end wants YYYY-MM-DD, not '%s'\n", v);
        return -1;
    }
    o->have_calibration_end = 1;
    return 0;
}

static int set_time_unit(struct fit_opts *o, const char *v)
{
    if (parse_double(v, &o->time_unit_days) < 0 || !(o->time_unit_days > 0.0)) {
        fprintf(stderr, "clvctl fit: --time-unit-days wants a positive number, not '%s'\n", v);
        return -1;
    }
    return 0;
}

static int set_redis_port(struct fit_opts *o, const char *v)
{
    unsigned long long port;

    if (parse_ull(v, 1, 65535, &port) < 0) {
        fprintf(stderr, "clvctl fit: --redis-port wants 1..65535, not '%s'\n", v);
        return -1;
    }
    o->redis.conn.port = (int)port;
    return 0;
}

static int set_now(struct fit_opts *o, const char *v)
{
    if (parse_time(v, &o->redis.now) < 0) {
        fprintf(stderr, "clvctl fit: --now wants YYYY-MM-DD or RFC 3339, not '%s'\n", v);
        return -1;
    }
    o->redis.have_now = 1;
    return 0;
}

/* Options taking a string as is: {name, where it goes}. */
static int fit_string_option(int argc, char **argv, int *i, struct fit_opts *o, int *matched)
{
    const struct {
        const char *name;
        const char **dest;
    } opts[] = {{"--config", &o->redis.conn.config_path},
                {"--redis-socket", &o->redis.conn.socket},
                {"--redis-host", &o->redis.conn.host},
                {"--prefix", &o->redis.conn.prefix}};

    for (size_t k = 0; k < CLV_ARRAY_LEN(opts); k++) {
        const char *v = option_value(argc, argv, i, opts[k].name);
        if (v != NULL) {
            *matched = 1;
            *opts[k].dest = v;
            return v[0] ? 0 : -1;
        }
    }
    *matched = 0;
    return 0;
}

/* One option at argv[*i] (consuming its value); -1 after a message. */
static int fit_option(int argc, char **argv, int *i, struct fit_opts *o)
{
    const char *v;
    int matched, rc;

    if ((v = option_value(argc, argv, i, "--csv")) != NULL)
        return v[0] ? set_source(o, FIT_SRC_CSV, v) : -1;
    if ((v = option_value(argc, argv, i, "--cdnow")) != NULL)
        return v[0] ? set_source(o, FIT_SRC_CDNOW, v) : -1;
    if ((v = option_value(argc, argv, i, "--calibration-end")) != NULL)
        return v[0] ? set_calibration_end(o, v) : -1;
    if ((v = option_value(argc, argv, i, "--time-unit-days")) != NULL)
        return v[0] ? set_time_unit(o, v) : -1;
    if ((v = option_value(argc, argv, i, "--redis-port")) != NULL)
        return v[0] ? set_redis_port(o, v) : -1;
    if ((v = option_value(argc, argv, i, "--now")) != NULL)
        return v[0] ? set_now(o, v) : -1;
    if (strcmp(argv[*i], "--redis") == 0)
        return set_source(o, FIT_SRC_REDIS, NULL);
    rc = fit_string_option(argc, argv, i, o, &matched);
    if (matched)
        return rc;
    fprintf(stderr, "clvctl fit: unknown option '%s'\n", argv[*i]);
    return -1;
}

/* Options that belong to one kind of source only. */
static int fit_check_combination(const struct fit_opts *o)
{
    const struct redis_opts *c = &o->redis.conn;
    int redis_only =
        c->config_path || c->socket || c->host || c->port || c->prefix || o->redis.have_now;

    if (o->source == FIT_SRC_REDIS && o->have_calibration_end) {
        fprintf(stderr, "clvctl fit: with --redis, give the end of observation as --now\n");
        return -1;
    }
    if (o->source != FIT_SRC_REDIS && redis_only) {
        fprintf(stderr, "clvctl fit: --config, --redis-*, --prefix and --now go with --redis\n");
        return -1;
    }
    if (c->socket && (c->host || c->port)) {
        fprintf(stderr, "clvctl fit: give --redis-socket or --redis-host/--redis-port\n");
        return -1;
    }
    return 0;
}

/* 0: options in *o; 1: help was asked for; -1: usage error. */
static int fit_parse_args(int argc, char **argv, struct fit_opts *o)
{
    *o = (struct fit_opts){.source = FIT_SRC_NONE, .time_unit_days = 7.0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return 1;
        if (fit_option(argc, argv, &i, o) < 0)
            return -1;
    }
    if (o->source == FIT_SRC_NONE) {
        fprintf(stderr, "clvctl fit: give one of --csv FILE, --cdnow FILE, --redis\n");
        return -1;
    }
    return fit_check_combination(o);
}

/* Read every row of the file into t. */
static int load_transactions(const struct fit_opts *o, struct fit_txns *t, char *err, size_t errlen)
{
    int from_stdin = strcmp(o->path, "-") == 0;
    FILE *f = from_stdin ? stdin : fopen(o->path, "r");
    char *line = NULL, lerr[CLV_ERRLEN];
    size_t cap = 0;
    long lineno = 0;
    int ret = -1;

    if (f == NULL) {
        clv_seterr(err, errlen, "%s: %s", o->path, strerror(errno));
        return -1;
    }
    while (getline(&line, &cap, f) != -1) {
        struct fit_row row;
        int rc = o->source == FIT_SRC_CSV
                     ? fit_parse_csv_line(line, lineno == 0, &row, lerr, sizeof(lerr))
                     : fit_parse_cdnow_line(line, &row, lerr, sizeof(lerr));
        lineno++;
        if (rc == 1 && fit_txns_add(t, &row, lerr, sizeof(lerr)) < 0)
            rc = -1;
        if (rc < 0) {
            clv_seterr(err, errlen, "%s:%ld: %s", o->path, lineno, lerr);
            goto out;
        }
    }
    if (ferror(f)) {
        clv_seterr(err, errlen, "%s: read error: %s", o->path, strerror(errno));
        goto out;
    }
    if (fit_txns_rows(t) == 0) {
        clv_seterr(err, errlen, "%s: no transactions", o->path);
        goto out;
    }
    ret = 0;
out:
    free(line);
    if (!from_stdin)
        fclose(f);
    return ret;
}

/* The fitted models: comments, then the YAML to paste into clvd.yaml. */
void print_models(double time_unit_days, const struct fit_bgnbd_result *bg,
                  const struct fit_gg_result *gg)
{
    printf("# BG/NBD       r = %.6g, alpha = %.6g, a = %.6g, b = %.6g\n", bg->params.r,
           bg->params.alpha, bg->params.a, bg->params.b);
    printf("#              log-likelihood = %.4f over %zu customers\n", bg->loglik, bg->n);
    printf("# Gamma-Gamma  p = %.6g, q = %.6g, gamma = %.6g\n", gg->params.p, gg->params.q,
           gg->params.gamma);
    printf("#              log-likelihood = %.4f over %zu customers\n", gg->loglik, gg->n);
    printf("clv:\n"
           "  model: bgnbd\n"
           "  bgnbd: {r: %.6g, alpha: %.6g, a: %.6g, b: %.6g, time_unit_days: %g}\n"
           "  gamma_gamma: {p: %.6g, q: %.6g, gamma: %.6g}\n",
           bg->params.r, bg->params.alpha, bg->params.a, bg->params.b, time_unit_days, gg->params.p,
           gg->params.q, gg->params.gamma);
}

/* Everything but the YAML itself is a comment, so the output pastes as is. */
static void print_fit(const struct fit_opts *o, const struct fit_txns *t,
                      const struct fit_summary *s, const struct fit_bgnbd_result *bg,
                      const struct fit_gg_result *gg)
{
    char from[DATE_BUF], to[DATE_BUF];

    format_day(fit_txns_first_day(t), from);
    format_day(o->calibration_end, to);
    printf("# %s: %zu rows, %zu customers\n", o->path, fit_txns_rows(t), fit_txns_customers(t));
    printf("# calibration %s .. %s, time unit %g days: %zu customers, %zu with repeat "
           "purchases (%zu repeat purchase days); %zu first seen later, left out\n",
           from, to, o->time_unit_days, s->n, s->n_repeat, s->repeat_days, s->n_later);
    print_models(o->time_unit_days, bg, gg);
}

static int cmd_fit(int argc, char **argv)
{
    struct fit_opts o;
    struct fit_txns *t = NULL;
    struct fit_summary s = {0};
    struct fit_bgnbd_result bg;
    struct fit_gg_result gg;
    char err[CLV_ERRLEN];
    int ret = 1;

    switch (fit_parse_args(argc, argv, &o)) {
    case 1:
        fit_usage(stdout);
        return 0;
    case -1:
        fit_usage(stderr);
        return EXIT_USAGE;
    }
    if (o.source == FIT_SRC_REDIS) {
        ret = fit_redis(&o.redis, o.time_unit_days, err, sizeof(err)) == 0 ? 0 : 1;
        goto out;
    }
    if (fit_txns_new(&t, err, sizeof(err)) < 0 || load_transactions(&o, t, err, sizeof(err)) < 0)
        goto out;
    if (!o.have_calibration_end)
        o.calibration_end = fit_txns_last_day(t);
    if (fit_summarize(t, o.calibration_end, o.time_unit_days, &s, err, sizeof(err)) < 0 ||
        fit_bgnbd(s.x, s.t_x, s.T, s.n, &bg, err, sizeof(err)) < 0 ||
        fit_gamma_gamma(s.x, s.m_x, s.n, &gg, err, sizeof(err)) < 0)
        goto out;
    print_fit(&o, t, &s, &bg, &gg);
    ret = 0;
out:
    if (ret != 0)
        fprintf(stderr, "clvctl fit: %s\n", err);
    fit_summary_free(&s);
    fit_txns_free(t);
    return ret;
}

/* ---- dispatch --------------------------------------------------------- */

static const struct command commands[] = {
    {"customer", cmd_customer, "one customer's state, stage, scores and next deadline, as JSON"},
    {"stats", cmd_stats, "customers per stage, churn rate, due index, outbox, alert state"},
    {"replay", cmd_replay, "produce a JSONL, CSV or CDNOW history into the input topics"},
    {"fit", cmd_fit, "fit BG/NBD and Gamma-Gamma to a transaction history or to Redis"},
    {"loadgen", cmd_loadgen, "synthetic customers (BG/NBD, Gamma-Gamma) to a file or Kafka"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: clvctl COMMAND [OPTIONS]   (clvctl COMMAND --help for its options)\n"
                 "\ncommands:\n");
    for (size_t i = 0; i < CLV_ARRAY_LEN(commands); i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < CLV_ARRAY_LEN(commands); i++) {
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "clvctl: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
