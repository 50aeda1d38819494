/* clvctl -- the clvd command-line tool (SPEC section 14).
 *
 * `clvctl COMMAND [OPTIONS]`: main() looks the command up in `commands[]`,
 * a table of {name, function, one-line help}; add a command by writing its
 * function and adding a row.  Exit status: 0 success, 1 failure, 2 usage. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "fit.h"

#define EXIT_USAGE 2

struct command {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
    const char *help;
};

/* ---- clvctl fit ------------------------------------------------------- */

enum fit_source { FIT_SRC_NONE, FIT_SRC_CSV, FIT_SRC_CDNOW, FIT_SRC_REDIS };

struct fit_opts {
    enum fit_source source;
    const char *path;
    int have_calibration_end;
    int32_t calibration_end;
    double time_unit_days;
};

static void fit_usage(FILE *out)
{
    fprintf(out,
            "usage: clvctl fit (--csv FILE | --cdnow FILE | --redis) [options]\n"
            "\n"
            "Maximum-likelihood fit of BG/NBD (r, alpha, a, b) and Gamma-Gamma (p, q, gamma)\n"
            "to a transaction history; prints the clv: section for clvd.yaml.\n"
            "\n"
            "  --csv FILE               CSV rows customer_id,date,amount (date YYYY-MM-DD or\n"
            "                           RFC 3339; an optional header line)\n"
            "  --cdnow FILE             the CDNOW sample format (whitespace-separated)\n"
            "  --redis                  the state of all customers in Redis (not yet supported)\n"
            "  --calibration-end DATE   last day (YYYY-MM-DD, inclusive) of the fitting period;\n"
            "                           later rows are ignored (default: the last day in FILE)\n"
            "  --time-unit-days N       the model's time unit in days (default 7: weeks)\n");
}

/* The value of option argv[*i] ("--opt VALUE" or "--opt=VALUE"); NULL when
 * argv[*i] is not `name`, "" (after a message) when the value is missing. */
static const char *option_value(int argc, char **argv, int *i, const char *name)
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
        fprintf(stderr, "clvctl fit: %s needs a value\n", name);
        return "";
    }
    return v;
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
    char *end;

    errno = 0;
    o->time_unit_days = strtod(v, &end);
    if (errno != 0 || *end != '\0' || !(o->time_unit_days > 0.0) || !isfinite(o->time_unit_days)) {
        fprintf(stderr, "clvctl fit: --time-unit-days wants a positive number, not '%s'\n", v);
        return -1;
    }
    return 0;
}

/* One option at argv[*i] (consuming its value); -1 after a message. */
static int fit_option(int argc, char **argv, int *i, struct fit_opts *o)
{
    const char *v;

    if ((v = option_value(argc, argv, i, "--csv")) != NULL)
        return v[0] ? set_source(o, FIT_SRC_CSV, v) : -1;
    if ((v = option_value(argc, argv, i, "--cdnow")) != NULL)
        return v[0] ? set_source(o, FIT_SRC_CDNOW, v) : -1;
    if ((v = option_value(argc, argv, i, "--calibration-end")) != NULL)
        return v[0] ? set_calibration_end(o, v) : -1;
    if ((v = option_value(argc, argv, i, "--time-unit-days")) != NULL)
        return v[0] ? set_time_unit(o, v) : -1;
    if (strcmp(argv[*i], "--redis") == 0)
        return set_source(o, FIT_SRC_REDIS, NULL);
    fprintf(stderr, "clvctl fit: unknown option '%s'\n", argv[*i]);
    return -1;
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
    return 0;
}

/* Read every row of the file into t. */
static int load_transactions(const struct fit_opts *o, struct fit_txns *t, char *err, size_t errlen)
{
    FILE *f = fopen(o->path, "r");
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
    fclose(f);
    return ret;
}

#define DATE_BUF 16 /* "YYYY-MM-DD" with room for any int */

static void format_day(int32_t day, char buf[DATE_BUF])
{
    int y, m, d;

    fit_day_to_civil(day, &y, &m, &d);
    snprintf(buf, DATE_BUF, "%04d-%02d-%02d", y, m, d);
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
           bg->params.r, bg->params.alpha, bg->params.a, bg->params.b, o->time_unit_days,
           gg->params.p, gg->params.q, gg->params.gamma);
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
        fprintf(stderr, "clvctl fit: --redis not yet supported; export the history as CSV "
                        "and use --csv\n");
        return 1;
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
    {"fit", cmd_fit, "fit BG/NBD and Gamma-Gamma to a transaction history"},
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
