/* fit.h -- maximum-likelihood fitting of BG/NBD and Gamma-Gamma (SPEC
 * section 9, `clvctl fit`), and the per-customer summaries they are fitted on.
 *
 * No I/O: callers read files and hand over parsed rows.  The fits are pure
 * functions of their input arrays; the transaction set owns its memory and is
 * released with fit_txns_free().  Methods: docs/clv.md. */
#ifndef CLVD_FIT_H
#define CLVD_FIT_H

#include <stddef.h>
#include <stdint.h>

#include "clv.h"
#include "common.h"

/* ---- maximum likelihood ----------------------------------------------- */

struct fit_bgnbd_result {
    struct clv_bgnbd params;
    double loglik;   /* total over the customers */
    size_t n;        /* customers used */
    int evaluations; /* likelihood evaluations spent */
};

struct fit_gg_result {
    struct clv_gamma_gamma params;
    double loglik;
    size_t n; /* customers used: x > 0 and m_x > 0 */
    int evaluations;
};

/* BG/NBD (r, alpha, a, b) from each customer's x repeat purchases, last at
 * t_x, observed over (0, T], in one time unit.  Needs n >= 1 and at least one
 * customer with x > 0. */
int fit_bgnbd(const double *x, const double *t_x, const double *T, size_t n,
              struct fit_bgnbd_result *out, char *err, size_t errlen);

/* Gamma-Gamma (p, q, gamma) from each customer's repeat transaction count x
 * and mean repeat spend m_x.  Customers with x = 0 or m_x = 0 carry no
 * information on spend (the density has no mass at 0) and are skipped. */
int fit_gamma_gamma(const double *x, const double *m_x, size_t n, struct fit_gg_result *out,
                    char *err, size_t errlen);

/* ---- transactions to per-customer summaries --------------------------- */

/* One parsed input row; `id` points into the caller's line. */
struct fit_row {
    const char *id;
    size_t id_len;
    int32_t day; /* days since 1970-01-01, UTC */
    double amount;
};

/* A growing set of transaction rows, customers identified by string id. */
struct fit_txns;

int fit_txns_new(struct fit_txns **out, char *err, size_t errlen);
void fit_txns_free(struct fit_txns *t);
int fit_txns_add(struct fit_txns *t, const struct fit_row *row, char *err, size_t errlen);
size_t fit_txns_rows(const struct fit_txns *t);
size_t fit_txns_customers(const struct fit_txns *t);
/* First and last transaction day (0 when empty). */
int32_t fit_txns_first_day(const struct fit_txns *t);
int32_t fit_txns_last_day(const struct fit_txns *t);

/* The summaries of the usual convention: purchases on one day merge into one
 * transaction (amounts summed); within the calibration period (days up to
 * and including calibration_end) x = distinct purchase days - 1,
 * t_x = (last - first purchase day) / unit, T = (calibration_end - first
 * purchase day) / unit, m_x = mean amount of the repeat (non-first) days.
 * Customers first seen after calibration_end are left out. */
struct fit_summary {
    size_t n; /* customers in calibration */
    double *x, *t_x, *T, *m_x;
    size_t n_repeat; /* of them with x > 0 */
    size_t n_later;  /* customers whose first purchase is after calibration_end */
    size_t repeat_days;
};

int fit_summarize(struct fit_txns *t, int32_t calibration_end, double time_unit_days,
                  struct fit_summary *out, char *err, size_t errlen);
void fit_summary_free(struct fit_summary *s);

/* ---- line parsers ----------------------------------------------------- */

/* Days since 1970-01-01 of a valid proleptic Gregorian date. */
int fit_civil_to_day(int year, int month, int mday, int32_t *day);
void fit_day_to_civil(int32_t day, int *year, int *month, int *mday);

/* "YYYY-MM-DD", "YYYYMMDD", or an RFC 3339 date-time (its UTC day). */
int fit_parse_date(const char *s, size_t len, int32_t *day);

/* A CDNOW sample line: whitespace-separated master id, sample id, YYYYMMDD,
 * CDs, dollars; a trailing CR is fine.  The sample id is the customer id.
 * Returns 1 for a row, 0 for a blank line, -1 on error. */
int fit_parse_cdnow_line(const char *line, struct fit_row *row, char *err, size_t errlen);

/* A CSV line "customer_id,date,amount" (fields may be double-quoted, without
 * embedded quotes).  Returns 1 for a row, 0 for a blank line or, when
 * `first_line` is set, a header (a date field that does not start with a
 * digit), -1 on error. */
int fit_parse_csv_line(const char *line, int first_line, struct fit_row *row, char *err,
                       size_t errlen);

#endif
