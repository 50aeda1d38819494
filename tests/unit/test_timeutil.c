/* test_timeutil.c -- RFC 3339 parse/format, strict UTF-8, base64. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "timeutil.h"

#define T_2026_03_02_10 1772445600000LL /* 2026-03-02T10:00:00Z */

/* Parse a NUL-terminated string; -1 on failure. */
static int parse(const char *s, clv_ms *out)
{
    return rfc3339_parse(s, strlen(s), out);
}

static void assert_parses(const char *s, clv_ms want)
{
    clv_ms got = 0;

    if (parse(s, &got) != 0)
        fail_msg("rejected valid timestamp \"%s\"", s);
    if (got != want)
        fail_msg("\"%s\": got %lld, want %lld", s, (long long)got, (long long)want);
}

static void assert_rejects(const char *s)
{
    clv_ms got = 12345;

    if (parse(s, &got) == 0)
        fail_msg("accepted invalid timestamp \"%s\" as %lld", s, (long long)got);
    assert_int_equal(got, 12345); /* output untouched on failure */
}

static void assert_formats(clv_ms t, const char *want)
{
    char buf[32];

    assert_int_equal(rfc3339_format(t, buf, sizeof(buf)), 24);
    assert_string_equal(buf, want);
}

/* ---- rfc3339_parse ------------------------------------------------------ */

static void test_parse_basic_and_separators(void **state)
{
    (void)state;
    assert_parses("2026-03-02T10:00:00Z", T_2026_03_02_10);
    assert_parses("2026-03-02t10:00:00z", T_2026_03_02_10);
    assert_parses("2026-03-02 10:00:00Z", T_2026_03_02_10);
    assert_parses("1970-01-01T00:00:00Z", 0);
    assert_parses("2000-02-29T12:34:56Z", 951827696000LL);
    assert_parses("1900-01-01T00:00:00Z", -2208988800000LL);
    assert_parses("1969-12-31T23:59:59.999Z", -1);
    assert_parses("0001-01-01T00:00:00Z", -62135596800000LL);
    assert_parses("0000-01-01T00:00:00Z", -62167219200000LL);
    assert_parses("9999-12-31T23:59:59.999Z", 253402300799999LL);
}

static void test_parse_fraction(void **state)
{
    (void)state;
    assert_parses("2026-03-02T10:00:00.1Z", T_2026_03_02_10 + 100);
    assert_parses("2026-03-02T10:00:00.12Z", T_2026_03_02_10 + 120);
    assert_parses("2026-03-02T10:00:00.123Z", T_2026_03_02_10 + 123);
    /* extra digits truncated, never rounded up into the next second */
    assert_parses("2026-03-02T10:00:00.1239Z", T_2026_03_02_10 + 123);
    assert_parses("2026-03-02T10:00:00.999999999Z", T_2026_03_02_10 + 999);
    assert_parses("2026-03-02T10:00:00.000000000000000000000000001Z", T_2026_03_02_10);
    assert_parses("2026-03-02T10:00:00.5+01:00", T_2026_03_02_10 - 3600000 + 500);
    assert_rejects("2026-03-02T10:00:00.Z");
    assert_rejects("2026-03-02T10:00:00,5Z");
    assert_rejects("2026-03-02T10:00:00.5.5Z");
    assert_rejects("2026-03-02T10:00:00.-5Z");
}

static void test_parse_offsets(void **state)
{
    (void)state;
    assert_parses("2026-03-02T12:00:00+02:00", T_2026_03_02_10);
    assert_parses("2026-03-02T04:30:00-05:30", T_2026_03_02_10);
    assert_parses("2026-03-02T10:00:00-00:00", T_2026_03_02_10);
    assert_parses("2026-03-02T10:00:00+00:00", T_2026_03_02_10);
    assert_parses("2026-03-03T09:59:00+23:59", T_2026_03_02_10);
    /* an offset may move the instant across a day, month and year */
    assert_parses("2026-01-01T00:30:00+01:00", 1767223800000LL);
    assert_parses("1970-01-01T00:00:00+00:01", -60000);
    assert_rejects("2026-03-02T10:00:00+24:00");
    assert_rejects("2026-03-02T10:00:00+02:60");
    assert_rejects("2026-03-02T10:00:00+0200");
    assert_rejects("2026-03-02T10:00:00+2:00");
    assert_rejects("2026-03-02T10:00:00+02");
    assert_rejects("2026-03-02T10:00:00 +02:00");
    assert_rejects("2026-03-02T10:00:00UTC");
    assert_rejects("2026-03-02T10:00:00");
}

static void test_parse_calendar_ranges(void **state)
{
    (void)state;
    assert_parses("2024-02-29T00:00:00Z", 1709164800000LL);
    assert_parses("2000-02-29T00:00:00Z", 951782400000LL);
    assert_parses("2400-02-29T00:00:00Z", 13574563200000LL);
    assert_rejects("2023-02-29T00:00:00Z");
    assert_rejects("1900-02-29T00:00:00Z");
    assert_rejects("2100-02-29T00:00:00Z");
    assert_rejects("2024-02-30T00:00:00Z");
    assert_parses("2026-04-30T00:00:00Z", 1777507200000LL);
    assert_rejects("2026-04-31T00:00:00Z");
    assert_rejects("2026-06-31T00:00:00Z");
    assert_rejects("2026-09-31T00:00:00Z");
    assert_rejects("2026-11-31T00:00:00Z");
    assert_parses("2026-12-31T00:00:00Z", 1798675200000LL);
    assert_rejects("2026-13-01T00:00:00Z");
    assert_rejects("2026-00-01T00:00:00Z");
    assert_rejects("2026-01-00T00:00:00Z");
    assert_rejects("2026-01-32T00:00:00Z");
    assert_rejects("2026-01-01T24:00:00Z");
    assert_rejects("2026-01-01T23:60:00Z");
    assert_rejects("2026-01-01T23:59:61Z");
    assert_rejects("2026-1-01T00:00:00Z");
    assert_rejects("26-01-01T00:00:00Z");
    assert_rejects("+2026-01-01T00:00:00Z");
    assert_rejects("2026-01-01");
    assert_rejects("2026-01-01X00:00:00Z");
    assert_rejects("2026-01-01T0a:00:00Z");
    assert_rejects("");
}

static void test_parse_leap_second(void **state)
{
    (void)state;
    /* accepted only as the last second of a month (UTC), clamped to :59.999 */
    assert_parses("2016-12-31T23:59:60Z", 1483228799999LL);
    assert_parses("2016-12-31T23:59:60.5Z", 1483228799999LL);
    assert_parses("2017-01-01T00:59:60+01:00", 1483228799999LL);
    assert_parses("2015-06-30T23:59:60Z", 1435708799999LL);
    assert_rejects("2016-12-30T23:59:60Z");
    assert_rejects("2016-12-31T22:59:60Z");
    assert_rejects("2016-12-31T23:58:60Z");
    assert_rejects("2016-12-31T23:59:60+01:00"); /* 22:59:60 UTC */
}

static void test_parse_trailing_and_length(void **state)
{
    clv_ms t = 0;
    const char buf[] = "2026-03-02T10:00:00Zgarbage";
    const char nul[] = "2026-03-02T10:00:00Z\0";

    (void)state;
    assert_rejects("2026-03-02T10:00:00Z ");
    assert_rejects(" 2026-03-02T10:00:00Z");
    assert_rejects("2026-03-02T10:00:00Zx");
    assert_rejects("2026-03-02T10:00:00+02:00:00");
    /* the length, not a NUL, ends the input */
    assert_int_equal(rfc3339_parse(buf, 20, &t), 0);
    assert_int_equal(t, T_2026_03_02_10);
    assert_int_equal(rfc3339_parse(buf, 21, &t), -1);
    assert_int_equal(rfc3339_parse(buf, 19, &t), -1);
    assert_int_equal(rfc3339_parse(nul, sizeof(nul) - 1, &t), -1);
    assert_int_equal(rfc3339_parse(buf, 0, &t), -1);
}

/* Cross-check against the C library over a century of random instants. */
static void test_parse_matches_timegm(void **state)
{
    uint64_t x = 88172645463325252ULL;

    (void)state;
    for (int i = 0; i < 20000; i++) {
        time_t sec;
        struct tm tm;
        char s[40];
        clv_ms got;

        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        sec = (time_t)((int64_t)(x % 6311390400ULL) - 2208988800LL); /* 1900..2100 */
        gmtime_r(&sec, &tm);
        strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%SZ", &tm);
        assert_int_equal(parse(s, &got), 0);
        assert_int_equal(got, (clv_ms)sec * 1000);
    }
}

/* ---- rfc3339_format ----------------------------------------------------- */

static void test_format_known(void **state)
{
    (void)state;
    assert_formats(0, "1970-01-01T00:00:00.000Z");
    assert_formats(T_2026_03_02_10 + 1234, "2026-03-02T10:00:01.234Z");
    assert_formats(951827696000LL, "2000-02-29T12:34:56.000Z");
    assert_formats(-1, "1969-12-31T23:59:59.999Z");
    assert_formats(-1000, "1969-12-31T23:59:59.000Z");
    assert_formats(-86400000LL, "1969-12-31T00:00:00.000Z");
    assert_formats(-86400001LL, "1969-12-30T23:59:59.999Z");
    assert_formats(-2208988800000LL, "1900-01-01T00:00:00.000Z");
    assert_formats(-62135596800000LL, "0001-01-01T00:00:00.000Z");
    assert_formats(253402300799999LL, "9999-12-31T23:59:59.999Z");
}

static void test_format_clamps_and_small_buffer(void **state)
{
    char buf[32], small[24] = "x";

    (void)state;
    assert_formats(253402300800000LL, "9999-12-31T23:59:59.999Z");
    assert_formats(INT64_MAX, "9999-12-31T23:59:59.999Z");
    assert_formats(INT64_MIN, "0000-01-01T00:00:00.000Z");
    assert_int_equal(rfc3339_format(0, small, sizeof(small)), -1);
    assert_string_equal(small, "");
    assert_int_equal(rfc3339_format(0, buf, 25), 24);
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
}

static void test_format_parse_round_trip(void **state)
{
    uint64_t x = 2463534242ULL;
    const int64_t span = 253402300799999LL + 62167219200000LL;

    (void)state;
    for (int i = 0; i < 200000; i++) {
        char buf[32];
        clv_ms t, back = 0;

        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        t = (clv_ms)(x % (uint64_t)span) - 62167219200000LL; /* year 0000..9999 */
        assert_int_equal(rfc3339_format(t, buf, sizeof(buf)), 24);
        assert_int_equal(rfc3339_parse(buf, 24, &back), 0);
        if (back != t)
            fail_msg("round trip %lld -> %s -> %lld", (long long)t, buf, (long long)back);
    }
}

/* ---- utf8_valid --------------------------------------------------------- */

static int valid(const char *s)
{
    return utf8_valid(s, strlen(s));
}

static void test_utf8_accepts(void **state)
{
    (void)state;
    assert_true(utf8_valid("", 0));
    assert_true(valid("plain ascii, longer than eight bytes"));
    assert_true(valid("J\xc3\xbcrgen"));               /* U+00FC */
    assert_true(valid("\xc2\x80"));                    /* U+0080, smallest 2-byte */
    assert_true(valid("\xe0\xa0\x80"));                /* U+0800, smallest 3-byte */
    assert_true(valid("\xe2\x82\xac"));                /* U+20AC */
    assert_true(valid("\xed\x9f\xbf"));                /* U+D7FF, below surrogates */
    assert_true(valid("\xee\x80\x80"));                /* U+E000, above surrogates */
    assert_true(valid("\xef\xbf\xbf"));                /* U+FFFF */
    assert_true(valid("\xf0\x90\x80\x80"));            /* U+10000 */
    assert_true(valid("\xf0\x9f\x98\x80"));            /* U+1F600 */
    assert_true(valid("\xf4\x8f\xbf\xbf"));            /* U+10FFFF */
    assert_true(utf8_valid("a\0b", 3));                /* NUL is well-formed */
    assert_true(valid("0123456789abcdef\xc3\xa9xyz")); /* after the fast path */
}

static void test_utf8_rejects_overlong(void **state)
{
    (void)state;
    assert_false(valid("\xc0\xaf")); /* '/' as 2 bytes */
    assert_false(valid("\xc1\xbf"));
    assert_false(valid("\xc0\x80"));         /* "modified UTF-8" NUL */
    assert_false(valid("\xe0\x80\xaf"));     /* '/' as 3 bytes */
    assert_false(valid("\xe0\x9f\xbf"));     /* U+07FF as 3 bytes */
    assert_false(valid("\xf0\x80\x80\xaf")); /* '/' as 4 bytes */
    assert_false(valid("\xf0\x8f\xbf\xbf")); /* U+FFFF as 4 bytes */
}

static void test_utf8_rejects_surrogates_and_range(void **state)
{
    (void)state;
    assert_false(valid("\xed\xa0\x80"));             /* U+D800 */
    assert_false(valid("\xed\xbf\xbf"));             /* U+DFFF */
    assert_false(valid("\xed\xa0\xbd\xed\xb8\x80")); /* CESU-8 pair */
    assert_false(valid("\xf4\x90\x80\x80"));         /* U+110000 */
    assert_false(valid("\xf5\x80\x80\x80"));
    assert_false(valid("\xf8\x88\x80\x80\x80")); /* 5-byte form */
    assert_false(valid("\xfe"));
    assert_false(valid("\xff"));
}

static void test_utf8_rejects_truncated_and_stray(void **state)
{
    (void)state;
    assert_false(valid("\x80")); /* lone continuation */
    assert_false(valid("a\xbf"));
    assert_false(valid("\xc3")); /* truncated at end */
    assert_false(valid("\xe2\x82"));
    assert_false(valid("\xf0\x9f\x98"));
    assert_false(valid("\xe2\x28\xa1")); /* bad continuation */
    assert_false(valid("\xc3\x28"));
    assert_false(valid("\xf0\x9f\x28\x80"));
    assert_false(valid("0123456789abcdef\xc3")); /* after the fast path */
    /* the length, not a NUL, ends the input: a cut sequence is invalid */
    assert_false(utf8_valid("\xc3\xa9", 1));
}

/* ---- base64 ------------------------------------------------------------- */

static void assert_b64(const char *in, size_t n, const char *want)
{
    char out[64];

    memset(out, 'x', sizeof(out));
    assert_int_equal(base64_len(n), strlen(want));
    assert_int_equal(base64_encode((const unsigned char *)in, n, out), strlen(want));
    assert_string_equal(out, want);
}

static void test_base64_rfc4648_vectors(void **state)
{
    (void)state;
    assert_b64("", 0, "");
    assert_b64("f", 1, "Zg==");
    assert_b64("fo", 2, "Zm8=");
    assert_b64("foo", 3, "Zm9v");
    assert_b64("foob", 4, "Zm9vYg==");
    assert_b64("fooba", 5, "Zm9vYmE=");
    assert_b64("foobar", 6, "Zm9vYmFy");
}

static void test_base64_binary(void **state)
{
    (void)state;
    assert_b64("\xff\xfe\x00", 3, "//4A");
    assert_b64("\x00", 1, "AA==");
    assert_b64("\xfb\xff", 2, "+/8=");
    assert_b64("\xc3\x28", 2, "wyg="); /* invalid UTF-8, as dead letters hold */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_basic_and_separators),
        cmocka_unit_test(test_parse_fraction),
        cmocka_unit_test(test_parse_offsets),
        cmocka_unit_test(test_parse_calendar_ranges),
        cmocka_unit_test(test_parse_leap_second),
        cmocka_unit_test(test_parse_trailing_and_length),
        cmocka_unit_test(test_parse_matches_timegm),
        cmocka_unit_test(test_format_known),
        cmocka_unit_test(test_format_clamps_and_small_buffer),
        cmocka_unit_test(test_format_parse_round_trip),
        cmocka_unit_test(test_utf8_accepts),
        cmocka_unit_test(test_utf8_rejects_overlong),
        cmocka_unit_test(test_utf8_rejects_surrogates_and_range),
        cmocka_unit_test(test_utf8_rejects_truncated_and_stray),
        cmocka_unit_test(test_base64_rfc4648_vectors),
        cmocka_unit_test(test_base64_binary),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
