/* clv.c -- customer-value maths (SPEC section 9).  See clv.h and docs/clv.md.
 *
 * Everything that can over- or underflow is computed in log space: the
 * likelihoods use lgamma and a log-sum-exp, P(alive) a stable logistic, and
 * the BG/NBD expectation a cancellation-free series (see bgnbd_growth). */
#include "clv.h"

#include <float.h>
#include <math.h>

/* lgamma() writes the global signgam: clvd computes from several worker
 * threads, so use the reentrant form (every argument here is positive). */
static double lgam(double x)
{
    int sign;

    return lgamma_r(x, &sign);
}

/* A series is summed until the bound on its tail falls below this fraction
 * of the sum, or given up (NaN) after CLV_SERIES_MAX_TERMS terms.  The terms
 * shrink like z^n, so the cap is reached only for z within ~1e-4 of 1. */
#define CLV_SERIES_TOL (4.0 * DBL_EPSILON)
#define CLV_SERIES_MAX_TERMS 200000

/* ---- series ----------------------------------------------------------- */

/* Sum of t_n for n >= 0, where t_{n+1} / t_n = z (p1 + n)(p2 + n) / ((q1 + n)(q2 + n))
 * and 0 <= z < 1.  Past the initial hump of the terms the ratio tends to z, so
 * the tail after t_n is bounded by |t_n| rho / (1 - rho) with
 * rho = max(|ratio|, z): stop when that is negligible. */
static double series_sum(double t0, double p1, double p2, double q1, double q2, double z)
{
    double term = t0, sum = t0;

    for (int n = 0; n < CLV_SERIES_MAX_TERMS; n++) {
        double ratio = z * (p1 + n) * (p2 + n) / ((q1 + n) * (q2 + n));
        double rho = fmax(fabs(ratio), z);

        if (term == 0.0)
            return sum; /* a terminating series (p1 or p2 a non-positive integer) */
        if (rho < 1.0 && fabs(term) * rho <= CLV_SERIES_TOL * (1.0 - rho) * fabs(sum))
            return sum;
        term *= ratio;
        sum += term;
        if (!isfinite(sum))
            return NAN;
    }
    return NAN;
}

static int is_nonpositive_integer(double v)
{
    return v <= 0.0 && v == floor(v);
}

double clv_hyp2f1(double a, double b, double c, double z)
{
    if (!(z < 1.0) || is_nonpositive_integer(c) || isnan(a) || isnan(b) || isnan(c))
        return NAN;
    if (z < 0.0) {
        /* Pfaff: 2F1(a,b;c;z) = (1-z)^-a 2F1(a, c-b; c; z/(z-1)), which maps
         * z < 0 into [0, 1) where the terms no longer alternate, and turns
         * |z| >= 1 (divergent) into a convergent series. */
        double w = z / (z - 1.0);
        double s = series_sum(1.0, a, c - b, c, 1.0, w);
        return s * exp(-a * log1p(-z));
    }
    return series_sum(1.0, a, b, c, 1.0, z);
}

/* ---- BG/NBD ------------------------------------------------------------ */

/* log(e^u + e^v) without overflow. */
static double log_sum_exp(double u, double v)
{
    double hi = fmax(u, v), lo = fmin(u, v);

    if (hi == -INFINITY)
        return -INFINITY;
    return hi + log1p(exp(lo - hi));
}

double clv_bgnbd_loglik(const struct clv_bgnbd *m, double x, double t_x, double T)
{
    double r = m->r, alpha = m->alpha, a = m->a, b = m->b;
    double head = lgam(r + x) - lgam(r) + r * log(alpha) + lgam(a + b) - lgam(b) - lgam(a + b + x);
    /* A1: still alive at T; A2: dropped out right after the last purchase. */
    double a1 = lgam(b + x) - (r + x) * log(alpha + T);

    if (x <= 0.0)
        return head + a1;
    double a2 = log(a) + lgam(b + x - 1.0) - (r + x) * log(alpha + t_x);
    return head + log_sum_exp(a1, a2);
}

/* log of the odds of having dropped out:
 * a / (b + x - 1) * ((alpha + T) / (alpha + t_x))^(r + x), for x > 0. */
static double bgnbd_log_dropout_odds(const struct clv_bgnbd *m, double x, double t_x, double T)
{
    return log(m->a) - log(m->b + x - 1.0) + (m->r + x) * log1p((T - t_x) / (m->alpha + t_x));
}

double clv_bgnbd_p_alive(const struct clv_bgnbd *m, double x, double t_x, double T)
{
    if (x <= 0.0)
        return 1.0; /* no repeat purchase, so no chance yet to drop out */
    double l = bgnbd_log_dropout_odds(m, x, t_x, T);
    /* 1 / (1 + e^l), written so that neither branch can overflow */
    if (l > 0.0) {
        double e = exp(-l);
        return e / (1.0 + e);
    }
    return 1.0 / (1.0 + exp(l));
}

/* G(t) = [1 - (1-z)^(a-1) 2F1(a+b-1-r, a-1; c; z)] / (a-1), c = a+b+x-1,
 * z = t / (alpha + T + t), so that E[Y(t)|x,t_x,T] = P(alive) c G(t).
 *
 * The published formula has (1-z)^(r+x) 2F1(r+x, b+x; c; z); Euler's
 * transformation 2F1(A,B;C;z) = (1-z)^(C-A-B) 2F1(C-A, C-B; C; z) turns it
 * into the form above, whose parameters do not grow with x (no huge terms
 * for heavy buyers).  Every term of 2F1 past the first carries a factor
 * (a-1), and 1 - (1-z)^(a-1) = -expm1(u) with u = (a-1) log(1-z), so the
 * division by (a-1) is done analytically: no cancellation near a = 1, and
 * a = 1 itself is fine:
 *   G = L expm1(u)/u - e^u S,  L = -log(1-z) = log1p(t / (alpha + T)),
 *   S = sum_{n>=1} (a+b-1-r)_n (a)_{n-1} z^n / ((c)_n n!). */
static double bgnbd_growth(const struct clv_bgnbd *m, double t, double x, double T)
{
    double a = m->a;
    double big_a = a + m->b - 1.0 - m->r, c = a + m->b + x - 1.0;
    double z = t / (m->alpha + T + t);
    double l = log1p(t / (m->alpha + T));
    double u = -(a - 1.0) * l;
    double phi = u == 0.0 ? 1.0 : expm1(u) / u;
    double s = series_sum(big_a * z / c, big_a + 1.0, a, c + 1.0, 2.0, z);

    return l * phi - exp(u) * s;
}

double clv_bgnbd_expected_conditional(const struct clv_bgnbd *m, double t, double x, double t_x,
                                      double T)
{
    if (t <= 0.0)
        return 0.0;
    double c = m->a + m->b + x - 1.0;
    return clv_bgnbd_p_alive(m, x, t_x, T) * c * bgnbd_growth(m, t, x, T);
}

double clv_bgnbd_expected_unconditional(const struct clv_bgnbd *m, double t)
{
    /* E[X(t)] is E[Y(t)] of a customer seen at time 0 with no repeat yet:
     * (a+b-1)/(a-1) [1 - (alpha/(alpha+t))^r 2F1(r, b; a+b-1; t/(alpha+t))]. */
    return clv_bgnbd_expected_conditional(m, t, 0.0, 0.0, 0.0);
}

/* ---- Gamma-Gamma ------------------------------------------------------- */

double clv_gg_loglik(const struct clv_gamma_gamma *m, double x, double m_x)
{
    double px = m->p * x;

    /* density of the mean of x gamma(p, nu) spends, nu ~ gamma(q, gamma) */
    return lgam(px + m->q) - lgam(px) - lgam(m->q) + m->q * log(m->gamma) + (px - 1.0) * log(m_x) +
           px * log(x) - (px + m->q) * log(m->gamma + m_x * x);
}

double clv_gg_expected_spend(const struct clv_gamma_gamma *m, double x, double m_x)
{
    return (m->gamma + m_x * x) * m->p / (m->p * x + m->q - 1.0);
}

/* ---- per-customer prediction ------------------------------------------ */

static int positive_finite(double v)
{
    return isfinite(v) && v > 0.0;
}

int clv_params_check(const struct clv_model_params *p, char *err, size_t errlen)
{
    const struct {
        const char *name;
        double value;
    } pos[] = {{"r", p->r},         {"alpha", p->alpha},
               {"a", p->a},         {"b", p->b},
               {"p", p->p},         {"q", p->q},
               {"gamma", p->gamma}, {"time_unit_days", p->time_unit_days}};

    for (size_t i = 0; i < CLV_ARRAY_LEN(pos); i++) {
        if (!positive_finite(pos[i].value)) {
            clv_seterr(err, errlen, "clv: %s must be a positive number, not %g", pos[i].name,
                       pos[i].value);
            return -1;
        }
    }
    if (!(p->q > 1.0)) {
        clv_seterr(err, errlen, "clv: gamma_gamma q must exceed 1 (mean spend), not %g", p->q);
        return -1;
    }
    /* bounded horizon = bounded work per event (one series per month) */
    if (!(p->horizon_days >= 0.0 && p->horizon_days <= 100.0 * CLV_DAYS_PER_YEAR)) {
        clv_seterr(err, errlen, "clv: horizon_days must be within 0..36525, not %g",
                   p->horizon_days);
        return -1;
    }
    if (!(p->discount_rate > -1.0 && isfinite(p->discount_rate))) {
        clv_seterr(err, errlen, "clv: discount_rate must exceed -1, not %g", p->discount_rate);
        return -1;
    }
    if (!isfinite(p->margin)) {
        clv_seterr(err, errlen, "clv: margin must be a finite number");
        return -1;
    }
    return 0;
}

static int stats_check(const struct clv_customer_stats *s, char *err, size_t errlen)
{
    if (!(s->x >= 0.0 && isfinite(s->x) && s->t_x_days >= 0.0 && s->T_days >= s->t_x_days &&
          isfinite(s->T_days))) {
        clv_seterr(err, errlen, "clv: bad customer statistics x=%g t_x=%g T=%g days", s->x,
                   s->t_x_days, s->T_days);
        return -1;
    }
    if (!(s->m_x >= 0.0 && isfinite(s->m_x) && s->spend_count >= 0.0 && isfinite(s->spend_count))) {
        clv_seterr(err, errlen, "clv: bad customer spend m_x=%g over %g transactions", s->m_x,
                   s->spend_count);
        return -1;
    }
    return 0;
}

double clv_bgnbd_discounted_purchases(const struct clv_bgnbd *m, double x, double t_x, double T,
                                      double horizon_units, double step_units, double year_units,
                                      double discount_rate)
{
    if (!(horizon_units > 0.0) || !(step_units > 0.0))
        return 0.0;
    /* E[Y(t)] = P(alive) c G(t): only G depends on t */
    double scale = clv_bgnbd_p_alive(m, x, t_x, T) * (m->a + m->b + x - 1.0);
    double log_disc = log1p(discount_rate) / year_units;
    double prev = 0.0, sum = 0.0;
    int steps = (int)ceil(horizon_units / step_units - 1e-9);

    for (int k = 1; k <= steps; k++) {
        double t = k == steps ? horizon_units : k * step_units;
        double cur = bgnbd_growth(m, t, x, T);
        if (isnan(cur))
            return NAN; /* no convergence: later steps, further from 0, won't either */
        /* purchases of step k are discounted from the end of the step */
        sum += (cur - prev) * exp(-t * log_disc);
        prev = cur;
    }
    return scale * sum;
}

int clv_predict(const struct clv_model_params *p, const struct clv_customer_stats *s,
                struct clv_prediction *out, char *err, size_t errlen)
{
    if (clv_params_check(p, err, errlen) < 0 || stats_check(s, err, errlen) < 0)
        return -1;

    const struct clv_bgnbd bg = {.r = p->r, .alpha = p->alpha, .a = p->a, .b = p->b};
    const struct clv_gamma_gamma gg = {.p = p->p, .q = p->q, .gamma = p->gamma};
    double unit = p->time_unit_days;
    double t_x = s->x > 0.0 ? s->t_x_days / unit : 0.0, T = s->T_days / unit;
    double spend_n = s->spend_count > 0.0 ? s->spend_count : s->x;
    double purchases;

    out->p_alive = clv_bgnbd_p_alive(&bg, s->x, t_x, T);
    out->expected_purchases_90d = clv_bgnbd_expected_conditional(&bg, 90.0 / unit, s->x, t_x, T);
    out->expected_spend = clv_gg_expected_spend(&gg, spend_n, spend_n > 0.0 ? s->m_x : 0.0);
    purchases = clv_bgnbd_discounted_purchases(&bg, s->x, t_x, T, p->horizon_days / unit,
                                               CLV_STEP_DAYS / unit, CLV_DAYS_PER_YEAR / unit,
                                               p->discount_rate);
    out->clv_predicted = p->margin * out->expected_spend * purchases;
    if (!isfinite(out->expected_purchases_90d) || !isfinite(out->clv_predicted)) {
        clv_seterr(err, errlen, "clv: prediction did not converge (x=%g t_x=%g T=%g days)", s->x,
                   s->t_x_days, s->T_days);
        return -1;
    }
    return 0;
}

/* ---- historical CLV, RFM ---------------------------------------------- */

double clv_historical(double purchases, double revenue, double tenure_days, double lifespan_years,
                      double margin, double cac)
{
    if (!(purchases > 0.0))
        return -cac;
    double years = fmax(tenure_days / CLV_DAYS_PER_YEAR, CLV_HIST_MIN_TENURE_YEARS);
    double yearly_frequency = purchases / years;
    double avg_order_value = revenue / purchases;

    return yearly_frequency * avg_order_value * lifespan_years * margin - cac;
}

/* 1 + the number of cut points reached; with increasing cut points this is
 * the band the value falls in.  NaN reaches none. */
static int rfm_digit(double v, const double cuts[4], int lower_is_better)
{
    int digit = 1;

    for (int i = 0; i < 4; i++) {
        if (lower_is_better ? v <= cuts[i] : v >= cuts[i])
            digit++;
    }
    return digit;
}

int clv_rfm_score(double recency_days, double frequency, double monetary,
                  const double recency_cuts[4], const double frequency_cuts[4],
                  const double monetary_cuts[4])
{
    return rfm_digit(recency_days, recency_cuts, 1) * 100 +
           rfm_digit(frequency, frequency_cuts, 0) * 10 + rfm_digit(monetary, monetary_cuts, 0);
}

void clv_rfm_format(int score, char buf[4])
{
    buf[0] = (char)('0' + score / 100 % 10);
    buf[1] = (char)('0' + score / 10 % 10);
    buf[2] = (char)('0' + score % 10);
    buf[3] = '\0';
}
