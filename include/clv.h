/* clv.h -- customer-value maths (SPEC section 9): BG/NBD, Gamma-Gamma,
 * predicted and historical CLV, RFM.
 *
 * Pure: no I/O, no allocation, no global state.  Every per-customer function
 * runs in O(1) (bounded series) from the customer's sufficient statistics, so
 * the daemon can call it on every event and clvctl in batch.
 *
 * Units.  The model functions (clv_bgnbd_*, clv_gg_*) work in the model's own
 * time unit (the one its parameters were fitted in: weeks for the published
 * CDNOW figures).  clv_predict() takes days and converts with
 * params->time_unit_days.  Formulas and numerical methods: docs/clv.md. */
#ifndef CLVD_CLV_H
#define CLVD_CLV_H

#include <stddef.h>

#include "common.h"

/* Length of a year in days, for discounting and historical CLV. */
#define CLV_DAYS_PER_YEAR 365.25

/* Historical CLV annualises the purchase rate over at least this many years
 * of tenure, so a customer younger than that is credited with exactly the
 * purchases made so far ("a new customer's first year is what they bought"),
 * never with an extrapolated burst. */
#define CLV_HIST_MIN_TENURE_YEARS 1.0

/* Discounted CLV sums the expected purchases over steps of this many days. */
#define CLV_STEP_DAYS (CLV_DAYS_PER_YEAR / 12.0)

/* ---- Gaussian hypergeometric function ---------------------------------- */

/* 2F1(a, b; c; z) for real z < 1.  z in [0, 1): the power series; z < 0: the
 * Pfaff transformation to z/(z-1) in [0, 1).  Returns NaN when z >= 1, when
 * c is 0 or a negative integer, or when the series has not converged after a
 * bounded number of terms (only for z within ~1e-4 of 1). */
double clv_hyp2f1(double a, double b, double c, double z);

/* ---- BG/NBD (Fader, Hardie & Lee 2005) -------------------------------- */

struct clv_bgnbd {
    double r, alpha; /* gamma heterogeneity of the purchase rate */
    double a, b;     /* beta heterogeneity of the dropout probability */
};

/* Individual log-likelihood of x repeat purchases, the last at t_x, observed
 * over (0, T] (time in model units). */
double clv_bgnbd_loglik(const struct clv_bgnbd *m, double x, double t_x, double T);

/* P(alive at T | x, t_x, T).  Exactly 1 for x = 0; never NaN or inf. */
double clv_bgnbd_p_alive(const struct clv_bgnbd *m, double x, double t_x, double T);

/* E[Y(t) | x, t_x, T]: expected purchases in (T, T + t]. */
double clv_bgnbd_expected_conditional(const struct clv_bgnbd *m, double t, double x, double t_x,
                                      double T);

/* E[X(t)]: expected purchases in (0, t] for a customer picked at random. */
double clv_bgnbd_expected_unconditional(const struct clv_bgnbd *m, double t);

/* ---- Gamma-Gamma spend model ------------------------------------------ */

struct clv_gamma_gamma {
    double p, q, gamma;
};

/* Log-likelihood of the mean spend m_x > 0 over x >= 1 repeat transactions. */
double clv_gg_loglik(const struct clv_gamma_gamma *m, double x, double m_x);

/* E[M | m_x, x] = (gamma + m_x x) p / (p x + q - 1); for x = 0 the population
 * mean gamma p / (q - 1).  Needs q > 1. */
double clv_gg_expected_spend(const struct clv_gamma_gamma *m, double x, double m_x);

/* ---- Per-customer prediction ------------------------------------------ */

struct clv_model_params {
    double r, alpha, a, b, time_unit_days; /* BG/NBD, fitted in units of time_unit_days */
    double p, q, gamma;                    /* Gamma-Gamma */
    double horizon_days;                   /* CLV horizon */
    double discount_rate;                  /* yearly, e.g. 0.10 */
    double margin;                         /* fraction of spend that is margin */
};

/* A customer's sufficient statistics, in days.  Purchases on one day count
 * as one transaction; only repeat (non-first) purchase days count in x. */
struct clv_customer_stats {
    double x;           /* repeat purchase days */
    double t_x_days;    /* last minus first purchase day */
    double T_days;      /* now minus first purchase */
    double m_x;         /* mean spend of the repeat purchase days */
    double spend_count; /* repeat transactions behind m_x (normally x); 0 = unknown */
};

struct clv_prediction {
    double p_alive;
    double expected_purchases_90d; /* E[Y(90 days)] */
    double expected_spend;         /* Gamma-Gamma E[M] per transaction */
    double clv_predicted;          /* margin x E[M] x discounted E[purchases] over the horizon */
};

/* 0 if the parameters are usable (all positive and finite, q > 1,
 * time_unit_days > 0, horizon_days >= 0, discount_rate > -1, margin finite);
 * else -1 with a message naming the first bad one. */
int clv_params_check(const struct clv_model_params *p, char *err, size_t errlen);

/* The one per-customer prediction of the daemon and clvctl.  Returns -1 on
 * unusable parameters or statistics (negative, NaN, t_x > T, ...). */
int clv_predict(const struct clv_model_params *p, const struct clv_customer_stats *s,
                struct clv_prediction *out, char *err, size_t errlen);

/* Discounted expected purchases over (T, T + horizon], in model units:
 * sum over steps k of (E[Y(t_k)] - E[Y(t_k-1)]) / (1 + d)^(t_k / year).
 * step_units and year_units are the step and the year in model units. */
double clv_bgnbd_discounted_purchases(const struct clv_bgnbd *m, double x, double t_x, double T,
                                      double horizon_units, double step_units, double year_units,
                                      double discount_rate);

/* ---- Historical CLV, RFM --------------------------------------------- */

/* Yearly frequency x average order value x lifespan x margin - cac, where
 * yearly frequency = purchases / max(tenure_years, CLV_HIST_MIN_TENURE_YEARS)
 * and the average order value = revenue / purchases.  With no purchase this
 * is -cac. */
double clv_historical(double purchases, double revenue, double tenure_days, double lifespan_years,
                      double margin, double cac);

/* RFM score 111..555.  Each digit is 1 + the number of the 4 increasing cut
 * points reached: recency (days since the last purchase; fewer is better)
 * reaches cut c when recency_days <= c; frequency and monetary when the
 * value >= c.  A NaN or infinite recency (no purchase) scores 1. */
int clv_rfm_score(double recency_days, double frequency, double monetary,
                  const double recency_cuts[4], const double frequency_cuts[4],
                  const double monetary_cuts[4]);

/* The score as 3 digits and a NUL ("245"); buf must hold 4 bytes. */
void clv_rfm_format(int score, char buf[4]);

#endif
