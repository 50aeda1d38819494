/* test_fit.c -- maximum-likelihood fits reproduce the published CDNOW
 * estimates; transaction summaries, id map and line parsers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fit.h"

#ifndef CLVD_SOURCE_DIR
#define CLVD_SOURCE_DIR "."
#endif
#define CDNOW_PATH CLVD_SOURCE_DIR "/../shared/data/cdnow_sample/CDNOW_sample.txt"

static int32_t day_of(int y, int m, int d)
{
    int32_t day = 0;

    assert_int_equal(fit_civil_to_day(y, m, d, &day), 0);
    return day;
}

/* Equal when rounded to 3 significant figures ("0.2426" matches "0.243"). */
static void assert_sig3(double got, double want)
{
    char g[32], w[32];

    snprintf(g, sizeof(g), "%.3g", got);
    snprintf(w, sizeof(w), "%.3g", want);
    if (strcmp(g, w) != 0)
        fail_msg("got %.6g (%s), want %s to 3 significant figures", got, g, w);
}

static struct fit_txns *load_cdnow(void)
{
    struct fit_txns *t;
    char err[CLV_ERRLEN], line[256];
    FILE *f = fopen(CDNOW_PATH, "r");

    if (f == NULL)
        fail_msg("cannot open %s", CDNOW_PATH);
    assert_int_equal(fit_txns_new(&t, err, sizeof(err)), 0);
    while (fgets(line, sizeof(line), f) != NULL) {
        struct fit_row row;
        int rc = fit_parse_cdnow_line(line, &row, err, sizeof(err));
        if (rc < 0)
            fail_msg("%s: %s", CDNOW_PATH, err);
        if (rc == 1)
            assert_int_equal(fit_txns_add(t, &row, err, sizeof(err)), 0);
    }
    fclose(f);
    return t;
}

/* Weeks, calibration 1997-01-01 .. 1997-09-30 (FHL 2005). */
static void summarize_cdnow(struct fit_txns *t, struct fit_summary *s)
{
    char err[CLV_ERRLEN];

    assert_int_equal(fit_summarize(t, day_of(1997, 9, 30), 7.0, s, err, sizeof(err)), 0);
}

static void test_cdnow_summary(void **state)
{
    struct fit_txns *t = load_cdnow();
    struct fit_summary s;

    (void)state;
    assert_int_equal(fit_txns_rows(t), 6919);
    assert_int_equal(fit_txns_customers(t), 2357);
    summarize_cdnow(t, &s);
    /* the data README: 2,357 first purchases and 2,457 repeat purchase days */
    assert_int_equal(s.n, 2357);
    assert_int_equal(s.repeat_days, 2457);
    assert_int_equal(s.n_repeat, 946);
    assert_int_equal(s.n_later, 0);
    /* customer 0001: 1997-01-01, 01-18, 08-02 in calibration (then 12-12) */
    assert_true(s.x[0] == 2.0);
    assert_true(fabs(s.t_x[0] - 213.0 / 7.0) < 1e-12);
    assert_true(fabs(s.T[0] - 272.0 / 7.0) < 1e-12);
    assert_true(fabs(s.m_x[0] - (29.73 + 14.96) / 2.0) < 1e-9);
    fit_summary_free(&s);
    fit_txns_free(t);
}

static void test_cdnow_fit_reproduces_published(void **state)
{
    struct fit_txns *t = load_cdnow();
    struct fit_summary s;
    struct fit_bgnbd_result bg;
    struct fit_gg_result gg;
    char err[CLV_ERRLEN];

    (void)state;
    summarize_cdnow(t, &s);
    assert_int_equal(fit_bgnbd(s.x, s.t_x, s.T, s.n, &bg, err, sizeof(err)), 0);
    assert_sig3(bg.params.r, 0.243);
    assert_sig3(bg.params.alpha, 4.414);
    assert_sig3(bg.params.a, 0.793);
    assert_sig3(bg.params.b, 2.426);
    assert_true(fabs(bg.loglik - -9582.43) <= 0.01);
    assert_int_equal(bg.n, 2357);

    assert_int_equal(fit_gamma_gamma(s.x, s.m_x, s.n, &gg, err, sizeof(err)), 0);
    assert_sig3(gg.params.p, 6.25);
    assert_sig3(gg.params.q, 3.74);
    assert_sig3(gg.params.gamma, 15.44);
    assert_true(fabs(gg.loglik - -4055.92) <= 0.01);
    assert_int_equal(gg.n, 946);
    fit_summary_free(&s);
    fit_txns_free(t);
}

static void test_fit_rejects_degenerate_data(void **state)
{
    const double zero[3] = {0, 0, 0}, T[3] = {10, 20, 30};
    const double bad_tx[1] = {5}, bad_T[1] = {4}, one[1] = {1};
    struct fit_bgnbd_result bg;
    struct fit_gg_result gg;
    char err[CLV_ERRLEN];

    (void)state;
    /* nobody came back: a and b are not identified */
    assert_int_equal(fit_bgnbd(zero, zero, T, 3, &bg, err, sizeof(err)), -1);
    assert_int_equal(fit_bgnbd(one, bad_tx, bad_T, 1, &bg, err, sizeof(err)), -1);
    assert_int_equal(fit_gamma_gamma(zero, T, 3, &gg, err, sizeof(err)), -1);
    assert_int_equal(fit_bgnbd(NULL, NULL, NULL, 0, &bg, err, sizeof(err)), -1);
}

/* ---- summaries -------------------------------------------------------- */

static void add(struct fit_txns *t, const char *id, int32_t day, double amount)
{
    const struct fit_row row = {.id = id, .id_len = strlen(id), .day = day, .amount = amount};
    char err[CLV_ERRLEN];

    assert_int_equal(fit_txns_add(t, &row, err, sizeof(err)), 0);
}

static void test_summary_merges_days_and_cuts_calibration(void **state)
{
    struct fit_txns *t;
    struct fit_summary s;
    char err[CLV_ERRLEN];

    (void)state;
    assert_int_equal(fit_txns_new(&t, err, sizeof(err)), 0);
    /* out of order on purpose; day 14 twice (merged), day 40 after the end */
    add(t, "a", 14, 5.0);
    add(t, "a", 0, 100.0);
    add(t, "a", 14, 15.0);
    add(t, "a", 7, 10.0);
    add(t, "a", 40, 999.0);
    add(t, "b", 21, 8.0); /* one purchase */
    add(t, "c", 29, 1.0); /* first purchase after calibration: left out */
    assert_int_equal(fit_txns_first_day(t), 0);
    assert_int_equal(fit_txns_last_day(t), 40);
    assert_int_equal(fit_summarize(t, 28, 7.0, &s, err, sizeof(err)), 0);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.n_later, 1);
    assert_int_equal(s.n_repeat, 1);
    /* a: days 0, 7, 14 -> x = 2, t_x = 2 weeks, T = 4 weeks, m_x = (10 + 20) / 2 */
    assert_true(s.x[0] == 2.0 && s.t_x[0] == 2.0 && s.T[0] == 4.0 && s.m_x[0] == 15.0);
    /* b: x = 0, T = 1 week, no repeat spend */
    assert_true(s.x[1] == 0.0 && s.t_x[1] == 0.0 && s.T[1] == 1.0 && s.m_x[1] == 0.0);
    fit_summary_free(&s);
    fit_txns_free(t);
}

static void test_idmap_many_customers(void **state)
{
    struct fit_txns *t;
    char err[CLV_ERRLEN], id[32];

    (void)state;
    assert_int_equal(fit_txns_new(&t, err, sizeof(err)), 0);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 20000; i++) {
            snprintf(id, sizeof(id), "cust-%d", i);
            add(t, id, round, 1.0);
        }
    }
    assert_int_equal(fit_txns_customers(t), 20000);
    assert_int_equal(fit_txns_rows(t), 40000);
    /* an id that is a prefix of another is a different customer */
    add(t, "x", 0, 1.0);
    add(t, "xx", 0, 1.0);
    add(t, "x", 1, 1.0);
    assert_int_equal(fit_txns_customers(t), 20002);
    fit_txns_free(t);
}

/* ---- parsers ---------------------------------------------------------- */

static void test_parse_dates(void **state)
{
    int32_t day;
    int y, m, d;

    (void)state;
    assert_int_equal(fit_parse_date("1970-01-01", 10, &day), 0);
    assert_int_equal(day, 0);
    assert_int_equal(fit_parse_date("19970930", 8, &day), 0);
    assert_int_equal(day, day_of(1997, 9, 30));
    fit_day_to_civil(day, &y, &m, &d);
    assert_true(y == 1997 && m == 9 && d == 30);
    assert_int_equal(fit_parse_date("2024-02-29", 10, &day), 0);
    assert_int_equal(fit_parse_date("2023-02-29", 10, &day), -1);
    assert_int_equal(fit_parse_date("1997-13-01", 10, &day), -1);
    assert_int_equal(fit_parse_date("1997-1-01", 9, &day), -1);
    /* RFC 3339: the UTC day */
    assert_int_equal(fit_parse_date("1997-09-30T23:30:00-02:00", 25, &day), 0);
    assert_int_equal(day, day_of(1997, 10, 1));
    assert_int_equal(fit_parse_date("1969-12-31T12:00:00Z", 20, &day), 0);
    assert_int_equal(day, -1);
    for (int32_t k = -700000; k <= 2900000; k += 997) {
        int32_t back;
        fit_day_to_civil(k, &y, &m, &d);
        assert_int_equal(fit_civil_to_day(y, m, d, &back), 0);
        assert_int_equal(back, k);
    }
}

static void test_parse_cdnow_line(void **state)
{
    struct fit_row row;
    char err[CLV_ERRLEN];

    (void)state;
    assert_int_equal(
        fit_parse_cdnow_line(" 00004 0001 19970101  2   29.33\r\n", &row, err, sizeof(err)), 1);
    assert_int_equal(row.id_len, 4);
    assert_memory_equal(row.id, "0001", 4);
    assert_int_equal(row.day, day_of(1997, 1, 1));
    assert_true(row.amount == 29.33);
    assert_int_equal(fit_parse_cdnow_line("\r\n", &row, err, sizeof(err)), 0);
    assert_int_equal(fit_parse_cdnow_line(" 00004 0001 19970101 2\r\n", &row, err, sizeof(err)),
                     -1);
    assert_int_equal(fit_parse_cdnow_line(" 1 2 1997-01-01 2 3\n", &row, err, sizeof(err)), -1);
    assert_int_equal(fit_parse_cdnow_line(" 1 2 19970101 2 -3\n", &row, err, sizeof(err)), -1);
}

static void test_parse_csv_line(void **state)
{
    struct fit_row row;
    char err[CLV_ERRLEN];

    (void)state;
    assert_int_equal(fit_parse_csv_line("customer_id,date,amount\n", 1, &row, err, sizeof(err)), 0);
    assert_int_equal(fit_parse_csv_line("c42,1997-01-02,12.5\r\n", 1, &row, err, sizeof(err)), 1);
    assert_int_equal(row.id_len, 3);
    assert_memory_equal(row.id, "c42", 3);
    assert_int_equal(row.day, day_of(1997, 1, 2));
    assert_true(row.amount == 12.5);
    assert_int_equal(
        fit_parse_csv_line("\"a,b\", 2026-03-02T10:00:00Z , 0\n", 0, &row, err, sizeof(err)), 1);
    assert_int_equal(row.id_len, 3);
    assert_memory_equal(row.id, "a,b", 3);
    assert_int_equal(row.day, day_of(2026, 3, 2));
    assert_true(row.amount == 0.0);
    assert_int_equal(fit_parse_csv_line("\n", 0, &row, err, sizeof(err)), 0);
    /* a header is only recognised on the first line */
    assert_int_equal(fit_parse_csv_line("customer_id,date,amount\n", 0, &row, err, sizeof(err)),
                     -1);
    assert_int_equal(fit_parse_csv_line("c,1997-01-02\n", 0, &row, err, sizeof(err)), -1);
    assert_int_equal(fit_parse_csv_line("c,1997-01-02,1,2\n", 0, &row, err, sizeof(err)), -1);
    assert_int_equal(fit_parse_csv_line("c,1997-01-02,-1\n", 0, &row, err, sizeof(err)), -1);
    assert_int_equal(fit_parse_csv_line("c,1997-01-02,abc\n", 0, &row, err, sizeof(err)), -1);
    assert_int_equal(fit_parse_csv_line(",1997-01-02,1\n", 0, &row, err, sizeof(err)), -1);
    assert_int_equal(fit_parse_csv_line("c,02/01/1997,1\n", 0, &row, err, sizeof(err)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cdnow_summary),
        cmocka_unit_test(test_cdnow_fit_reproduces_published),
        cmocka_unit_test(test_fit_rejects_degenerate_data),
        cmocka_unit_test(test_summary_merges_days_and_cuts_calibration),
        cmocka_unit_test(test_idmap_many_customers),
        cmocka_unit_test(test_parse_dates),
        cmocka_unit_test(test_parse_cdnow_line),
        cmocka_unit_test(test_parse_csv_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
