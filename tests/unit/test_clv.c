/* test_clv.c -- BG/NBD, Gamma-Gamma, CLV and RFM maths against published
 * CDNOW figures (Fader, Hardie & Lee 2005) and closed forms. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "clv.h"

/* The published CDNOW estimates, in weeks. */
static const struct clv_bgnbd cdnow = {.r = 0.243, .alpha = 4.414, .a = 0.793, .b = 2.426};
static const struct clv_gamma_gamma cdnow_gg = {.p = 6.25, .q = 3.74, .gamma = 15.44};

static void assert_rel(double got, double want, double rel)
{
    if (!(fabs(got - want) <= rel * fabs(want)))
        fail_msg("got %.10g, want %.10g (relative tolerance %g)", got, want, rel);
}

/* The published E[Y(t)|x,t_x,T], term by term, with clv_hyp2f1 taken at
 * face value: a cross-check of the transformed series in clv.c. */
static double published_conditional(const struct clv_bgnbd *m, double t, double x, double t_x,
                                    double T)
{
    double r = m->r, al = m->alpha, a = m->a, b = m->b;
    double z = t / (al + T + t);
    double f = clv_hyp2f1(r + x, b + x, a + b + x - 1.0, z);
    double num = (a + b + x - 1.0) / (a - 1.0) * (1.0 - pow((al + T) / (al + T + t), r + x) * f);
    double den = 1.0 + (x > 0 ? a / (b + x - 1.0) * pow((al + T) / (al + t_x), r + x) : 0.0);
    return num / den;
}

/* ---- BG/NBD against the paper ----------------------------------------- */

static void test_conditional_expectation_published(void **state)
{
    (void)state;
    /* FHL 2005, section 5: x=2, t_x=30.43, T=38.86 -> 1.226 in 39 weeks */
    assert_rel(clv_bgnbd_expected_conditional(&cdnow, 39.0, 2.0, 30.43, 38.86), 1.226, 1e-3);
    /* a heavy buyer: x=26, t_x=30.857, T=31 -> 25.76 in 52 weeks */
    assert_rel(clv_bgnbd_expected_conditional(&cdnow, 52.0, 26.0, 30.857, 31.0), 25.76, 1e-3);
}

static void test_p_alive_published(void **state)
{
    (void)state;
    assert_rel(clv_bgnbd_p_alive(&cdnow, 26.0, 30.857, 31.0), 0.9689, 1e-3);
    /* no repeat purchase: alive with certainty, whatever t_x and T */
    assert_true(clv_bgnbd_p_alive(&cdnow, 0.0, 0.0, 38.86) == 1.0);
    assert_true(clv_bgnbd_p_alive(&cdnow, 0.0, 0.0, 1e6) == 1.0);
}

static void test_p_alive_extreme_no_overflow(void **state)
{
    double p, e;

    (void)state;
    p = clv_bgnbd_p_alive(&cdnow, 1000.0, 10.0, 100.0);
    assert_true(isfinite(p));
    assert_true(p >= 0.0 && p < 1e-12);
    e = clv_bgnbd_expected_conditional(&cdnow, 52.0, 1000.0, 10.0, 100.0);
    assert_true(isfinite(e) && e >= 0.0 && e < 1e-9);
    /* and the buyer who bought right up to now is almost surely alive */
    p = clv_bgnbd_p_alive(&cdnow, 1000.0, 100.0, 100.0);
    assert_true(isfinite(p) && p > 0.99);
    e = clv_bgnbd_expected_conditional(&cdnow, 52.0, 1000.0, 100.0, 100.0);
    assert_true(isfinite(e) && e > 400.0 && e < 600.0); /* about 10 a week */
}

static void test_conditional_matches_published_formula(void **state)
{
    const double cases[][4] = {/* t, x, t_x, T */
                               {39, 0, 0, 38.86}, {39, 1, 5, 20},    {52, 2, 30.43, 38.86},
                               {10, 5, 20, 30},   {100, 3, 1, 2},    {1, 26, 30.857, 31},
                               {39, 0, 0, 0.5},   {200, 10, 40, 50}, {0.01, 1, 1, 1}};
    (void)state;
    for (size_t i = 0; i < CLV_ARRAY_LEN(cases); i++) {
        const double *c = cases[i];
        assert_rel(clv_bgnbd_expected_conditional(&cdnow, c[0], c[1], c[2], c[3]),
                   published_conditional(&cdnow, c[0], c[1], c[2], c[3]), 1e-10);
    }
}

static void test_conditional_continuous_at_a_equal_1(void **state)
{
    struct clv_bgnbd one = cdnow, below = cdnow, above = cdnow;
    double e1, e0, e2;

    (void)state;
    one.a = 1.0;
    below.a = 1.0 - 1e-7;
    above.a = 1.0 + 1e-7;
    e1 = clv_bgnbd_expected_conditional(&one, 39.0, 2.0, 30.0, 38.0);
    e0 = clv_bgnbd_expected_conditional(&below, 39.0, 2.0, 30.0, 38.0);
    e2 = clv_bgnbd_expected_conditional(&above, 39.0, 2.0, 30.0, 38.0);
    assert_true(isfinite(e1));
    assert_rel(e0, e1, 1e-6);
    assert_rel(e2, e1, 1e-6);
}

static void test_unconditional_expectation(void **state)
{
    double r = cdnow.r, al = cdnow.alpha, a = cdnow.a, b = cdnow.b;

    (void)state;
    for (double t = 1.0; t <= 78.0; t *= 3.0) {
        double z = t / (al + t);
        double want = (a + b - 1.0) / (a - 1.0) *
                      (1.0 - pow(al / (al + t), r) * clv_hyp2f1(r, b, a + b - 1.0, z));
        assert_rel(clv_bgnbd_expected_unconditional(&cdnow, t), want, 1e-10);
    }
    /* for small t the purchase rate is the prior mean r / alpha */
    assert_rel(clv_bgnbd_expected_unconditional(&cdnow, 1e-6), 1e-6 * r / al, 1e-4);
    assert_true(clv_bgnbd_expected_unconditional(&cdnow, 0.0) == 0.0);
}

static void test_loglik_matches_direct_formula(void **state)
{
    double r = cdnow.r, al = cdnow.alpha, a = cdnow.a, b = cdnow.b;
    double x = 2.0, t_x = 30.43, T = 38.86;
    double beta = exp(lgamma(a + b) - lgamma(a) - lgamma(b));
    double b1 = exp(lgamma(a) + lgamma(b + x) - lgamma(a + b + x)) * beta;
    double b2 = exp(lgamma(a + 1.0) + lgamma(b + x - 1.0) - lgamma(a + b + x)) * beta;
    double g = exp(lgamma(r + x) - lgamma(r)) * pow(al, r);
    double want = log(b1 * g / pow(al + T, r + x) + b2 * g / pow(al + t_x, r + x));

    (void)state;
    assert_rel(clv_bgnbd_loglik(&cdnow, x, t_x, T), want, 1e-12);
    want = r * log(al / (al + T)); /* x = 0: L = (alpha / (alpha + T))^r */
    assert_rel(clv_bgnbd_loglik(&cdnow, 0.0, 0.0, T), want, 1e-12);
    assert_true(isfinite(clv_bgnbd_loglik(&cdnow, 1000.0, 10.0, 100.0)));
}

/* ---- 2F1 -------------------------------------------------------------- */

static void test_hyp2f1_known_values(void **state)
{
    (void)state;
    /* 2F1(1,1;2;z) = -log(1-z)/z, both sides of 0 and near 1 */
    const double zs[] = {0.5, 0.9, 0.99, -0.5, -1.0, -3.0, -50.0};
    for (size_t i = 0; i < CLV_ARRAY_LEN(zs); i++)
        assert_rel(clv_hyp2f1(1, 1, 2, zs[i]), -log1p(-zs[i]) / zs[i], 1e-13);
    assert_true(clv_hyp2f1(1, 1, 2, 0.0) == 1.0);
    /* arcsin z / z = 2F1(1/2, 1/2; 3/2; z^2); arctan z / z = 2F1(1/2, 1; 3/2; -z^2) */
    assert_rel(clv_hyp2f1(0.5, 0.5, 1.5, 0.25), asin(0.5) / 0.5, 1e-14);
    assert_rel(clv_hyp2f1(0.5, 1.0, 1.5, -9.0), atan(3.0) / 3.0, 1e-13);
    /* 2F1(a,b;b;z) = (1-z)^-a */
    assert_rel(clv_hyp2f1(2.7, 1.3, 1.3, 0.8), pow(0.2, -2.7), 1e-12);
    assert_rel(clv_hyp2f1(2.7, 1.3, 1.3, -4.0), pow(5.0, -2.7), 1e-12);
    /* terminating: 2F1(-2,b;c;z) = 1 - 2bz/c + b(b+1)z^2/(c(c+1)) */
    assert_rel(clv_hyp2f1(-2, 3, 4, 0.7), 1.0 - 2 * 3 * 0.7 / 4 + 3 * 4 * 0.49 / 20, 1e-14);
    /* outside the domain */
    assert_true(isnan(clv_hyp2f1(1, 1, 2, 1.0)));
    assert_true(isnan(clv_hyp2f1(1, 1, -1, 0.5)));
    assert_true(isnan(clv_hyp2f1(1, 1, 0, 0.5)));
}

/* ---- Gamma-Gamma ------------------------------------------------------ */

static void test_gg_expected_spend(void **state)
{
    (void)state;
    /* (gamma + m x) p / (p x + q - 1) */
    assert_rel(clv_gg_expected_spend(&cdnow_gg, 3.0, 40.0),
               (15.44 + 120.0) * 6.25 / (6.25 * 3.0 + 2.74), 1e-14);
    /* no repeat purchase: the population mean gamma p / (q - 1) = 35.22 */
    assert_rel(clv_gg_expected_spend(&cdnow_gg, 0.0, 0.0), 35.22, 1e-3);
    /* more transactions pull the estimate towards the customer's own mean */
    assert_true(fabs(clv_gg_expected_spend(&cdnow_gg, 50.0, 100.0) - 100.0) <
                fabs(clv_gg_expected_spend(&cdnow_gg, 2.0, 100.0) - 100.0));
}

static void test_gg_density_integrates_to_one(void **state)
{
    double sum = 0.0, h = 0.001;

    (void)state;
    /* over log m: integral of f(m) dm = integral of f(e^u) e^u du */
    for (double u = -12.0; u < 12.0; u += h)
        sum += exp(clv_gg_loglik(&cdnow_gg, 2.0, exp(u)) + u) * h;
    assert_rel(sum, 1.0, 1e-6);
}

/* ---- CLV -------------------------------------------------------------- */

static const struct clv_model_params cdnow_params = {.r = 0.243,
                                                     .alpha = 4.414,
                                                     .a = 0.793,
                                                     .b = 2.426,
                                                     .time_unit_days = 7.0,
                                                     .p = 6.25,
                                                     .q = 3.74,
                                                     .gamma = 15.44,
                                                     .horizon_days = 365.0,
                                                     .discount_rate = 0.10,
                                                     .margin = 0.3};

static void test_discount_zero_is_undiscounted_sum(void **state)
{
    double H = 52.0;
    double plain = clv_bgnbd_expected_conditional(&cdnow, H, 2.0, 30.43, 38.86);

    (void)state;
    assert_rel(clv_bgnbd_discounted_purchases(&cdnow, 2.0, 30.43, 38.86, H, 30.4375 / 7.0,
                                              365.25 / 7.0, 0.0),
               plain, 1e-12);
    double disc = clv_bgnbd_discounted_purchases(&cdnow, 2.0, 30.43, 38.86, H, 30.4375 / 7.0,
                                                 365.25 / 7.0, 0.10);
    /* discounting at the end of each month: between the undiscounted sum and
     * everything discounted a full year */
    assert_true(disc < plain && disc > plain / 1.10);
    assert_true(clv_bgnbd_discounted_purchases(&cdnow, 2.0, 30.43, 38.86, 0.0, 1.0, 52.0, 0.1) ==
                0.0);
}

static void test_predict_in_days(void **state)
{
    struct clv_model_params p = cdnow_params;
    const struct clv_customer_stats s = {
        .x = 2.0, .t_x_days = 30.43 * 7.0, .T_days = 38.86 * 7.0, .m_x = 40.0, .spend_count = 2};
    struct clv_prediction out;
    char err[CLV_ERRLEN];

    (void)state;
    p.discount_rate = 0.0;
    assert_int_equal(clv_predict(&p, &s, &out, err, sizeof(err)), 0);
    assert_rel(out.p_alive, clv_bgnbd_p_alive(&cdnow, 2.0, 30.43, 38.86), 1e-12);
    assert_rel(out.expected_purchases_90d,
               clv_bgnbd_expected_conditional(&cdnow, 90.0 / 7.0, 2.0, 30.43, 38.86), 1e-12);
    assert_rel(out.expected_spend, clv_gg_expected_spend(&cdnow_gg, 2.0, 40.0), 1e-12);
    assert_rel(out.clv_predicted,
               0.3 * out.expected_spend *
                   clv_bgnbd_expected_conditional(&cdnow, 365.0 / 7.0, 2.0, 30.43, 38.86),
               1e-10);

    /* a new customer: p_alive 1, population mean spend, positive value */
    const struct clv_customer_stats fresh = {.x = 0, .t_x_days = 0, .T_days = 0};
    p.discount_rate = 0.10;
    assert_int_equal(clv_predict(&p, &fresh, &out, err, sizeof(err)), 0);
    assert_true(out.p_alive == 1.0);
    assert_rel(out.expected_spend, 35.22, 1e-3);
    assert_true(out.clv_predicted > 0.0 && isfinite(out.clv_predicted));
}

static void test_predict_rejects_bad_input(void **state)
{
    struct clv_model_params p = cdnow_params;
    const struct clv_customer_stats ok = {.x = 1, .t_x_days = 10, .T_days = 20, .m_x = 5};
    struct clv_customer_stats bad = ok;
    struct clv_prediction out;
    char err[CLV_ERRLEN];

    (void)state;
    bad.T_days = 5; /* last purchase after now */
    assert_int_equal(clv_predict(&p, &bad, &out, err, sizeof(err)), -1);
    bad = ok;
    bad.x = NAN;
    assert_int_equal(clv_predict(&p, &bad, &out, err, sizeof(err)), -1);
    p.q = 1.0; /* no finite mean spend */
    assert_int_equal(clv_predict(&p, &ok, &out, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "q"));
    p = cdnow_params;
    p.alpha = -1;
    assert_int_equal(clv_params_check(&p, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "alpha"));
    assert_int_equal(clv_params_check(&cdnow_params, err, sizeof(err)), 0);
}

/* ---- historical CLV, RFM ---------------------------------------------- */

static void test_historical_clv(void **state)
{
    (void)state;
    /* 2 years, 10 purchases, 500 revenue: 5/yr x 50 x 3 years x 0.3 - 20 */
    assert_rel(clv_historical(10, 500.0, 2.0 * 365.25, 3.0, 0.3, 20.0), 5 * 50 * 3 * 0.3 - 20,
               1e-12);
    /* a week-old customer is credited with what they bought, not 52x it */
    assert_rel(clv_historical(2, 100.0, 7.0, 3.0, 0.3, 0.0), 2 * 50 * 3 * 0.3, 1e-12);
    /* never purchased: only the acquisition cost */
    assert_true(clv_historical(0, 0.0, 100.0, 3.0, 0.3, 35.0) == -35.0);
}

static void test_rfm_cut_points(void **state)
{
    const double rc[4] = {7, 30, 90, 180}, fc[4] = {2, 3, 5, 10}, mc[4] = {50, 100, 250, 1000};
    char buf[4];

    (void)state;
    /* recency reaches a cut point at or below it; F and M at or above */
    assert_int_equal(clv_rfm_score(7, 10, 1000, rc, fc, mc), 555);
    assert_int_equal(clv_rfm_score(7.001, 9.999, 999.99, rc, fc, mc), 444);
    assert_int_equal(clv_rfm_score(30, 5, 250, rc, fc, mc), 444);
    assert_int_equal(clv_rfm_score(90, 3, 100, rc, fc, mc), 333);
    assert_int_equal(clv_rfm_score(180, 2, 50, rc, fc, mc), 222);
    assert_int_equal(clv_rfm_score(180.5, 1, 49.99, rc, fc, mc), 111);
    assert_int_equal(clv_rfm_score(0, 1, 0, rc, fc, mc), 511);
    assert_int_equal(clv_rfm_score(INFINITY, 0, 0, rc, fc, mc), 111);
    assert_int_equal(clv_rfm_score(NAN, 4, 300, rc, fc, mc), 134);
    clv_rfm_format(245, buf);
    assert_string_equal(buf, "245");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conditional_expectation_published),
        cmocka_unit_test(test_p_alive_published),
        cmocka_unit_test(test_p_alive_extreme_no_overflow),
        cmocka_unit_test(test_conditional_matches_published_formula),
        cmocka_unit_test(test_conditional_continuous_at_a_equal_1),
        cmocka_unit_test(test_unconditional_expectation),
        cmocka_unit_test(test_loglik_matches_direct_formula),
        cmocka_unit_test(test_hyp2f1_known_values),
        cmocka_unit_test(test_gg_expected_spend),
        cmocka_unit_test(test_gg_density_integrates_to_one),
        cmocka_unit_test(test_discount_zero_is_undiscounted_sum),
        cmocka_unit_test(test_predict_in_days),
        cmocka_unit_test(test_predict_rejects_bad_input),
        cmocka_unit_test(test_historical_clv),
        cmocka_unit_test(test_rfm_cut_points),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
