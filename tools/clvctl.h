/* clvctl.h -- what the clvctl sources share: commands living in their own
 * files, option and number parsing, the progress line (tools/clvctl.c). */
#ifndef CLVD_CLVCTL_H
#define CLVD_CLVCTL_H

#include <stdint.h>
#include <stdio.h>

#include "common.h"
#include "fit.h"

#define EXIT_USAGE 2

/* ---- commands in their own files -------------------------------------- */

/* `clvctl loadgen` (clvctl_loadgen.c); argv[0] is "loadgen". */
int cmd_loadgen(int argc, char **argv);

/* `clvctl fit --redis` (clvctl_fit_redis.c): the options it takes. */
struct fit_redis_opts {
    const char *config_path; /* clvd.yaml for redis.*, or NULL */
    const char *socket;      /* overrides */
    const char *host;
    int port; /* 0: not given */
    const char *prefix;
    int have_now;
    clv_ms now;
};

/* Scan, fit and print; -1 with a message in err. */
int fit_redis(const struct fit_redis_opts *o, double time_unit_days, char *err, size_t errlen);

/* The fitted models as comments, then the clv: YAML (clvctl.c). */
void print_models(double time_unit_days, const struct fit_bgnbd_result *bg,
                  const struct fit_gg_result *gg);

/* ---- options and numbers ---------------------------------------------- */

/* The value of option argv[*i] ("--opt VALUE" or "--opt=VALUE"); NULL when
 * argv[*i] is not `name`, "" (after a message naming the command argv[0])
 * when the value is missing. */
const char *option_value(int argc, char **argv, int *i, const char *name);

/* A finite number, all of s. */
int parse_double(const char *s, double *out);
/* A decimal integer within [min, max], all of s. */
int parse_ull(const char *s, unsigned long long min, unsigned long long max,
              unsigned long long *out);
/* Exactly n comma-separated finite numbers. */
int parse_list(const char *s, double *out, int n);
/* "YYYY-MM-DD" (00:00 UTC that day) or an RFC 3339 date-time. */
int parse_time(const char *s, clv_ms *out);

#define DATE_BUF 16 /* "YYYY-MM-DD" with room for any int */
void format_day(int32_t day, char buf[DATE_BUF]);

/* ---- the progress line ------------------------------------------------- */

/* A progress line on stderr, redrawn at most 10 times a second, only when
 * stderr is a terminal. */
struct progress {
    int on;
    int drawn;
    clv_ms next; /* monotonic */
};

/* On only if `wanted` and stderr is a terminal. */
void progress_init(struct progress *p, int wanted);
/* "[####      ]  40%  text"; `force` draws even within 100 ms of the last. */
void progress_show(struct progress *p, double fraction, const char *text, int force);
/* Ends the line, if one was drawn. */
void progress_end(struct progress *p);

#endif
