/* test_event.c -- input message validation (SPEC section 3).
 *
 * Every message is parsed twice: by one event_parser shared by the whole
 * run (so handle reuse after every kind of bad message is exercised) and by
 * the convenience event_parse(); both must agree. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"

#define NOW 1772445600000LL /* 2026-03-02T10:00:00Z */
#define SKEW (5 * CLV_MS_PER_MIN)

static const struct clv_event_limits LIM = {.max_message_bytes = 65536, .max_future_skew = SKEW};

/* ---- harness ------------------------------------------------------------ */

static struct event_parser *shared_parser;

static int group_setup(void **state)
{
    char err[CLV_ERRLEN];

    (void)state;
    shared_parser = event_parser_create(err, sizeof(err));
    return shared_parser == NULL ? -1 : 0;
}

static int group_teardown(void **state)
{
    (void)state;
    event_parser_free(shared_parser);
    return 0;
}

/* Parse with both entry points; returns rc, reason in `reason` (or ""). */
static int parse_lim(enum clv_event_type t, const char *buf, size_t len,
                     const struct clv_event_limits *lim, struct clv_event *ev, char *reason)
{
    struct clv_event ev2;
    char reason2[64] = "";
    int rc, rc2;

    reason[0] = '\0';
    memset(ev, 0x5a, sizeof(*ev)); /* stale garbage must not leak through */
    memset(&ev2, 0x5a, sizeof(ev2));
    rc = event_parser_parse(shared_parser, buf, len, t, lim, NOW, ev, reason, 64);
    rc2 = event_parse(buf, len, t, lim, NOW, &ev2, reason2, sizeof(reason2));
    assert_int_equal(rc, rc2);
    assert_string_equal(reason, reason2);
    if (rc == 0) {
        assert_string_equal(reason, "");
        assert_int_equal(ev->ts, ev2.ts);
        assert_string_equal(ev->event_id, ev2.event_id);
        assert_string_equal(ev->customer_id, ev2.customer_id);
        assert_string_equal(ev->channel, ev2.channel);
        assert_true(ev->amount == ev2.amount);
        assert_int_equal(ev->type, t);
    }
    return rc;
}

static int parse(enum clv_event_type t, const char *json, struct clv_event *ev, char *reason)
{
    return parse_lim(t, json, strlen(json), &LIM, ev, reason);
}

static void expect_ok(enum clv_event_type t, const char *json, struct clv_event *ev)
{
    char reason[64];

    if (parse(t, json, ev, reason) != 0)
        fail_msg("rejected (%s): %s", reason, json);
}

static void expect_reason(enum clv_event_type t, const char *json, const char *want)
{
    struct clv_event ev;
    char reason[64];

    if (parse(t, json, &ev, reason) == 0)
        fail_msg("accepted, wanted %s: %s", want, json);
    if (strcmp(reason, want) != 0)
        fail_msg("reason %s, wanted %s: %s", reason, want, json);
}

/* A valid purchase with one field's raw JSON value replaced ("" = omitted). */
static void purchase_with(char *out, size_t cap, const char *field, const char *value)
{
    static const char *const names[] = {"event_id", "customer_id", "ts", "amount"};
    static const char *const defaults[] = {"\"e-1\"", "\"c-1\"", "\"2026-03-02T09:00:00Z\"",
                                           "12.5"};
    size_t n = 0;

    n += (size_t)snprintf(out + n, cap - n, "{\"order_id\":\"o-9\"");
    for (size_t i = 0; i < 4; i++) {
        const char *v = strcmp(names[i], field) == 0 ? value : defaults[i];

        if (v[0] != '\0')
            n += (size_t)snprintf(out + n, cap - n, ",\"%s\":%s", names[i], v);
    }
    snprintf(out + n, cap - n, "}");
}

static void expect_field_reason(const char *field, const char *value, const char *want)
{
    char json[4096];

    purchase_with(json, sizeof(json), field, value);
    expect_reason(CLV_EV_PURCHASE, json, want);
}

static void expect_field_ok(const char *field, const char *value, struct clv_event *ev)
{
    char json[4096];

    purchase_with(json, sizeof(json), field, value);
    expect_ok(CLV_EV_PURCHASE, json, ev);
}

/* A JSON string literal of n copies of c. */
static char *repeat_literal(char c, size_t n)
{
    char *s = malloc(n + 3);

    assert_non_null(s);
    s[0] = '"';
    memset(s + 1, c, n);
    s[n + 1] = '"';
    s[n + 2] = '\0';
    return s;
}

/* ---- valid messages ----------------------------------------------------- */

static void test_valid_purchase_both_ts_forms(void **state)
{
    struct clv_event ev;

    (void)state;
    expect_ok(CLV_EV_PURCHASE,
              "{\"event_id\":\"e-1\",\"customer_id\":\"c42\",\"ts\":\"2026-03-02T09:00:00.250Z\","
              "\"type\":\"purchase\",\"amount\":58.93,\"order_id\":\"o-1\",\"currency\":\"EUR\","
              "\"channel\":\"search\"}",
              &ev);
    assert_int_equal(ev.type, CLV_EV_PURCHASE);
    assert_string_equal(ev.event_id, "e-1");
    assert_int_equal(ev.event_id_len, 3);
    assert_string_equal(ev.customer_id, "c42");
    assert_int_equal(ev.customer_id_len, 3);
    assert_int_equal(ev.ts, NOW - CLV_MS_PER_HOUR + 250);
    assert_true(ev.amount == 58.93);
    assert_string_equal(ev.channel, "search");

    expect_ok(CLV_EV_PURCHASE,
              "{\"amount\":0,\"ts\":1772442000000,\"customer_id\":\"c42\",\"event_id\":\"e-2\"}",
              &ev);
    assert_int_equal(ev.ts, NOW - CLV_MS_PER_HOUR);
    assert_true(ev.amount == 0.0);
    assert_string_equal(ev.channel, ""); /* absent */
}

static void test_valid_login_and_visit(void **state)
{
    struct clv_event ev;

    (void)state;
    expect_ok(CLV_EV_LOGIN,
              "{\"event_id\":\"l-1\",\"customer_id\":\"c7\",\"ts\":\"2026-03-02T12:00:00+02:00\","
              "\"type\":\"login\"}",
              &ev);
    assert_int_equal(ev.type, CLV_EV_LOGIN);
    assert_int_equal(ev.ts, NOW);
    assert_true(ev.amount == 0.0);

    expect_ok(CLV_EV_VISIT, "{\"event_id\":\"v-1\",\"customer_id\":\"c7\",\"ts\":1772445600000}",
              &ev);
    assert_int_equal(ev.type, CLV_EV_VISIT);
    assert_int_equal(ev.ts, NOW);

    /* amount of a login/visit is ignored, whatever it holds */
    expect_ok(CLV_EV_VISIT,
              "{\"event_id\":\"v-2\",\"customer_id\":\"c7\",\"ts\":0,\"amount\":\"lots\"}", &ev);
    assert_true(ev.amount == 0.0);
    assert_int_equal(ev.ts, 0);
    expect_ok(CLV_EV_LOGIN, "{\"event_id\":\"l-2\",\"customer_id\":\"c7\",\"ts\":0,\"amount\":-5}",
              &ev);
    assert_true(ev.amount == 0.0);
}

static void test_escapes_decoded(void **state)
{
    struct clv_event ev;

    (void)state;
    expect_ok(CLV_EV_LOGIN,
              "{\"event_id\":\"a\\\"b\\\\c\\/d\\te\",\"customer_id\":\"k\\u00fcnde\\ud83d\\ude00\","
              "\"ts\":\"2026-03-02T09:00:00Z\",\"channel\":\"caf\\u00e9\"}",
              &ev);
    assert_string_equal(ev.event_id, "a\"b\\c/d\te");
    assert_int_equal(ev.event_id_len, 9);
    assert_string_equal(ev.customer_id, "k\xc3\xbcnde\xf0\x9f\x98\x80");
    assert_int_equal(ev.customer_id_len, 10);
    assert_string_equal(ev.channel, "caf\xc3\xa9");

    /* escaped key names are the same key */
    expect_ok(CLV_EV_LOGIN,
              "{\"event\\u005fid\":\"e\",\"customer_id\":\"c\",\"\\u0074s\":1772445600000}", &ev);
    assert_string_equal(ev.event_id, "e");
    assert_int_equal(ev.ts, NOW);

    /* "\\ud800" is an escaped backslash and text, not an escape */
    expect_ok(CLV_EV_LOGIN, "{\"event_id\":\"x\\\\ud800\",\"customer_id\":\"c\",\"ts\":0}", &ev);
    assert_string_equal(ev.event_id, "x\\ud800");

    /* raw (unescaped) UTF-8 */
    expect_ok(CLV_EV_LOGIN, "{\"event_id\":\"e\",\"customer_id\":\"J\xc3\xbcrgen\",\"ts\":0}", &ev);
    assert_string_equal(ev.customer_id, "J\xc3\xbcrgen");
}

static void test_unknown_fields_ignored(void **state)
{
    struct clv_event ev;

    (void)state;
    expect_ok(CLV_EV_PURCHASE,
              "{\"x\":null,\"meta\":{\"event_id\":5,\"customer_id\":[],\"ts\":true,"
              "\"amount\":\"no\",\"deep\":[{\"type\":1},[[[]]]]},\"event_id\":\"e\","
              "\"list\":[\"amount\",{\"channel\":9}],\"customer_id\":\"c\",\"ts\":0,"
              "\"amount\":1,\"flag\":false,\"n\":-1.5e300,\"Event_Id\":7,\"s\":\"\\u0000\"}",
              &ev);
    assert_string_equal(ev.event_id, "e");
    assert_string_equal(ev.customer_id, "c");
    assert_true(ev.amount == 1.0);
}

/* ---- too_large ---------------------------------------------------------- */

/* A valid login padded with an unknown field to exactly `size` bytes. */
static char *login_of_size(size_t size)
{
    const char *head = "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0,\"pad\":\"";
    size_t hl = strlen(head);
    char *s = malloc(size + 1);

    assert_non_null(s);
    assert_true(size >= hl + 2);
    memcpy(s, head, hl);
    memset(s + hl, 'p', size - hl - 2);
    memcpy(s + size - 2, "\"}", 3);
    assert_int_equal(strlen(s), size);
    return s;
}

static void test_too_large_boundary(void **state)
{
    struct clv_event_limits lim = {.max_message_bytes = 200, .max_future_skew = SKEW};
    struct clv_event ev;
    char reason[64];
    char *exact = login_of_size(200), *over = login_of_size(201);
    char *big_default = login_of_size(65537), *exact_default = login_of_size(65536);

    (void)state;
    assert_int_equal(parse_lim(CLV_EV_LOGIN, exact, 200, &lim, &ev, reason), 0);
    assert_int_equal(parse_lim(CLV_EV_LOGIN, over, 201, &lim, &ev, reason), -1);
    assert_string_equal(reason, "too_large");
    assert_int_equal(parse(CLV_EV_LOGIN, exact_default, &ev, reason), 0);
    assert_int_equal(parse(CLV_EV_LOGIN, big_default, &ev, reason), -1);
    assert_string_equal(reason, "too_large");
    /* checked before parsing: oversized garbage is too_large, not invalid_json */
    memset(over, 0xff, 201);
    assert_int_equal(parse_lim(CLV_EV_LOGIN, over, 201, &lim, &ev, reason), -1);
    assert_string_equal(reason, "too_large");
    free(exact);
    free(over);
    free(big_default);
    free(exact_default);
}

/* ---- invalid_json / not_object ------------------------------------------ */

static void test_invalid_json(void **state)
{
    static const char *const bad[] = {
        "",
        "   ",
        "{",
        "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0",
        "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0}}",
        "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0} x",
        "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0}{}",
        "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0} {}",
        "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0} 1",
        "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0,}",
        "{'event_id':'e'}",
        "{\"event_id\":\"e\" /* c */,\"customer_id\":\"c\",\"ts\":0}",
        "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":01}",
        "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":+1}",
        "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0,\"amount\":NaN}",
        "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0,\"amount\":1.}",
        "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0,\"amount\":0x10}",
        "{\"event_id\":\"e\tx\",\"customer_id\":\"c\",\"ts\":0}", /* raw control */
        "{\"event_id\":\"e\\x\",\"customer_id\":\"c\",\"ts\":0}", /* bad escape */
        "{\"event_id\":\"e\\u12\",\"customer_id\":\"c\",\"ts\":0}",
        "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0,\"x\":tru}",
        /* a bad field before the syntax error: invalid_json still wins */
        "{\"event_id\":5,\"customer_id\":\"c\",\"ts\":0,",
        /* invalid UTF-8 inside and outside strings */
        "{\"event_id\":\"\xc3\x28\",\"customer_id\":\"c\",\"ts\":0}",
        "{\"event_id\":\"\xc0\xaf\",\"customer_id\":\"c\",\"ts\":0}",
        "{\"event_id\":\"\xed\xa0\x80\",\"customer_id\":\"c\",\"ts\":0}",
        "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0,\"x\":\"\xe2\x82\"}",
        "\xef\xbb\xbf{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0}", /* BOM */
        /* unpaired surrogate escapes */
        "{\"event_id\":\"\\ud800\",\"customer_id\":\"c\",\"ts\":0}",
        "{\"event_id\":\"\\udc00x\",\"customer_id\":\"c\",\"ts\":0}",
        "{\"event_id\":\"\\ud83d\\u0041\",\"customer_id\":\"c\",\"ts\":0}",
        "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0,\"x\":\"\\ud83d\"}",
        "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0,\"x\":\"\\ude00\\ud83d\"}",
    };

    (void)state;
    for (size_t i = 0; i < CLV_ARRAY_LEN(bad); i++)
        expect_reason(CLV_EV_LOGIN, bad[i], "invalid_json");
}

static void test_invalid_json_embedded_nul(void **state)
{
    static const char msg[] = "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0}\0";
    struct clv_event ev;
    char reason[64];

    (void)state;
    assert_int_equal(parse_lim(CLV_EV_LOGIN, msg, sizeof(msg) - 1, &LIM, &ev, reason), -1);
    assert_string_equal(reason, "invalid_json");
    /* without the NUL it is fine: the length is authoritative */
    assert_int_equal(parse_lim(CLV_EV_LOGIN, msg, sizeof(msg) - 2, &LIM, &ev, reason), 0);
}

static void test_duplicate_keys_rejected(void **state)
{
    static const char *const dup[] = {
        "{\"event_id\":\"e\",\"event_id\":\"f\",\"customer_id\":\"c\",\"ts\":0}",
        "{\"event_id\":\"e\",\"customer_id\":\"c\",\"customer_id\":\"c\",\"ts\":0}",
        "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0,\"ts\":1}",
        "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0,\"type\":\"login\",\"type\":\"login\"}",
        "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0,\"channel\":1,\"channel\":\"a\"}",
        "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0,\"amount\":1,\"amount\":2}",
        "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0,\"event\\u005fid\":\"e\"}",
    };
    struct clv_event ev;

    (void)state;
    for (size_t i = 0; i < CLV_ARRAY_LEN(dup); i++)
        expect_reason(CLV_EV_LOGIN, dup[i], "invalid_json");
    /* duplicates among unknown or nested keys are none of clvd's business */
    expect_ok(CLV_EV_LOGIN,
              "{\"x\":1,\"x\":2,\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0,"
              "\"m\":{\"event_id\":1,\"event_id\":2}}",
              &ev);
}

static void test_not_object(void **state)
{
    (void)state;
    expect_reason(CLV_EV_LOGIN, "[]", "not_object");
    expect_reason(CLV_EV_LOGIN, "1", "not_object");
    expect_reason(CLV_EV_LOGIN, " -2.5e3 ", "not_object");
    expect_reason(CLV_EV_LOGIN, "\"{}\"", "not_object");
    expect_reason(CLV_EV_LOGIN, "null", "not_object");
    expect_reason(CLV_EV_LOGIN, "true", "not_object");
    expect_reason(CLV_EV_LOGIN, "[{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0}]",
                  "not_object");
    /* but a broken non-object is invalid_json */
    expect_reason(CLV_EV_LOGIN, "[1,", "invalid_json");
    expect_reason(CLV_EV_LOGIN, "[] []", "invalid_json");
}

/* ---- missing_field / bad_type ------------------------------------------- */

static void test_missing_fields(void **state)
{
    (void)state;
    expect_field_reason("event_id", "", "missing_field:event_id");
    expect_field_reason("customer_id", "", "missing_field:customer_id");
    expect_field_reason("ts", "", "missing_field:ts");
    expect_field_reason("amount", "", "missing_field:amount");
    expect_reason(CLV_EV_PURCHASE, "{}", "missing_field:event_id");
    expect_reason(CLV_EV_LOGIN, "{\"event_id\":\"e\",\"ts\":0}", "missing_field:customer_id");
    /* nested keys do not count */
    expect_reason(CLV_EV_LOGIN, "{\"event_id\":\"e\",\"customer_id\":\"c\",\"x\":{\"ts\":0}}",
                  "missing_field:ts");
}

static void test_bad_types(void **state)
{
    static const char *const not_string[] = {"5", "null", "true", "[]", "{}", "[\"e\"]"};

    (void)state;
    for (size_t i = 0; i < CLV_ARRAY_LEN(not_string); i++) {
        expect_field_reason("event_id", not_string[i], "bad_type:event_id");
        expect_field_reason("customer_id", not_string[i], "bad_type:customer_id");
    }
    expect_field_reason("ts", "true", "bad_type:ts");
    expect_field_reason("ts", "null", "bad_type:ts");
    expect_field_reason("ts", "{\"ms\":1}", "bad_type:ts");
    expect_field_reason("ts", "[1772445600000]", "bad_type:ts");
    /* ts numbers must be integer literals */
    expect_field_reason("ts", "1772445600000.0", "bad_type:ts");
    expect_field_reason("ts", "1.7724456e12", "bad_type:ts");
    expect_field_reason("ts", "1E3", "bad_type:ts");
    expect_field_reason("amount", "\"12.5\"", "bad_type:amount");
    expect_field_reason("amount", "null", "bad_type:amount");
    expect_field_reason("amount", "true", "bad_type:amount");
    expect_field_reason("amount", "{}", "bad_type:amount");
    expect_field_reason("amount", "[1]", "bad_type:amount");
    expect_reason(CLV_EV_PURCHASE,
                  "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0,\"amount\":1,\"type\":7}",
                  "bad_type:type");
    expect_reason(CLV_EV_LOGIN, "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0,\"type\":null}",
                  "bad_type:type");
}

/* Several problems: the first in SPEC table order is reported. */
static void test_reason_order(void **state)
{
    (void)state;
    expect_reason(CLV_EV_PURCHASE,
                  "{\"amount\":-1,\"type\":\"login\",\"ts\":\"x\",\"customer_id\":\"\","
                  "\"event_id\":\"\"}",
                  "bad_event_id");
    expect_reason(CLV_EV_PURCHASE,
                  "{\"amount\":-1,\"type\":\"login\",\"ts\":\"x\",\"customer_id\":\"\","
                  "\"event_id\":\"e\"}",
                  "bad_customer_id");
    expect_reason(CLV_EV_PURCHASE,
                  "{\"amount\":-1,\"type\":\"login\",\"ts\":\"x\",\"customer_id\":\"c\","
                  "\"event_id\":\"e\"}",
                  "bad_timestamp");
    expect_reason(CLV_EV_PURCHASE,
                  "{\"amount\":-1,\"type\":\"login\",\"ts\":0,\"customer_id\":\"c\","
                  "\"event_id\":\"e\"}",
                  "type_mismatch");
    expect_reason(CLV_EV_PURCHASE,
                  "{\"amount\":-1,\"type\":\"purchase\",\"ts\":0,\"customer_id\":\"c\","
                  "\"event_id\":\"e\"}",
                  "negative_amount");
}

/* ---- ids ---------------------------------------------------------------- */

static void test_event_id_limits(void **state)
{
    struct clv_event ev;
    char *ok128 = repeat_literal('e', 128), *bad129 = repeat_literal('e', 129);

    (void)state;
    expect_field_ok("event_id", ok128, &ev);
    assert_int_equal(ev.event_id_len, 128);
    assert_int_equal(strlen(ev.event_id), 128);
    expect_field_reason("event_id", bad129, "bad_event_id");
    expect_field_reason("event_id", "\"\"", "bad_event_id");
    expect_field_reason("event_id", "\"a\\u0000b\"", "bad_event_id");
    /* 128 bytes after unescaping: 64 x U+00E9 written as \u00e9 */
    {
        char lit[64 * 6 + 8] = "\"";

        for (int i = 0; i < 64; i++)
            strcat(lit, "\\u00e9");
        strcat(lit, "\"");
        expect_field_ok("event_id", lit, &ev);
        assert_int_equal(ev.event_id_len, 128);
        lit[strlen(lit) - 1] = '\0';
        strcat(lit, "x\"");
        expect_field_reason("event_id", lit, "bad_event_id");
    }
    free(ok128);
    free(bad129);
}

static void test_customer_id_limits(void **state)
{
    struct clv_event ev;
    char *ok128 = repeat_literal('c', 128), *bad129 = repeat_literal('c', 129);
    char multibyte[200];

    (void)state;
    expect_field_ok("customer_id", ok128, &ev);
    assert_int_equal(ev.customer_id_len, 128);
    assert_int_equal(ev.customer_id[128], '\0');
    expect_field_reason("customer_id", bad129, "bad_customer_id");
    expect_field_reason("customer_id", "\"\"", "bad_customer_id");
    /* 42 x U+20AC (3 bytes) + "ab" = 128 bytes; one more byte is too many */
    strcpy(multibyte, "\"");
    for (int i = 0; i < 42; i++)
        strcat(multibyte, "\xe2\x82\xac");
    strcat(multibyte, "ab\"");
    expect_field_ok("customer_id", multibyte, &ev);
    assert_int_equal(ev.customer_id_len, 128);
    multibyte[strlen(multibyte) - 1] = '\0';
    strcat(multibyte, "c\"");
    expect_field_reason("customer_id", multibyte, "bad_customer_id");
    free(ok128);
    free(bad129);
}

static void test_customer_id_controls(void **state)
{
    static const char *const bad[] = {
        "\"\\u0000\"", "\"a\\u0001\"", "\"a\\nb\"",    "\"\\t\"",     "\"x\\u001f\"",
        "\"\\u007f\"", "\"\\u0080\"",  "\"a\\u0085\"", "\"\\u009f\"", "\"\xc2\x85\"",
    };
    static const char *const good[] = {
        "\"a b\"",     "\"\\u00a0\"", "\"\xc2\xa0x\"",
        "\"\\u00ff\"", "\"~\"",       "\"\xe4\xb8\xad\xe6\x96\x87\"",
        "\"\\u2028\"",
    };
    struct clv_event ev;

    (void)state;
    for (size_t i = 0; i < CLV_ARRAY_LEN(bad); i++)
        expect_field_reason("customer_id", bad[i], "bad_customer_id");
    for (size_t i = 0; i < CLV_ARRAY_LEN(good); i++)
        expect_field_ok("customer_id", good[i], &ev);
}

/* ---- ts ----------------------------------------------------------------- */

static void test_bad_timestamp(void **state)
{
    static const char *const bad[] = {
        "\"yesterday\"",
        "\"\"",
        "\"2026-02-30T00:00:00Z\"",
        "\"2026-03-02T10:00:00\"",
        "\"2026-03-02T10:00:00Z \"",
        "\"2026-03-02T10:00:00Z\\u0000\"",
        "\"1969-12-31T23:59:59.999Z\"",
        "\"1970-01-01T00:30:00+01:00\"",
        "\"10000-01-01T00:00:00Z\"",
        "-1",
        "-1772445600000",
        "253402300800000",
        "99999999999999999999999999999",
        "-99999999999999999999999999999",
    };
    struct clv_event ev;

    (void)state;
    for (size_t i = 0; i < CLV_ARRAY_LEN(bad); i++)
        expect_field_reason("ts", bad[i], "bad_timestamp");
    expect_field_ok("ts", "\"1970-01-01T00:00:00Z\"", &ev);
    assert_int_equal(ev.ts, 0);
    expect_field_ok("ts", "-0", &ev);
    assert_int_equal(ev.ts, 0);
}

static void test_future_skew_boundary(void **state)
{
    struct clv_event ev;
    char v[64];

    (void)state;
    snprintf(v, sizeof(v), "%lld", (long long)(NOW + SKEW));
    expect_field_ok("ts", v, &ev);
    assert_int_equal(ev.ts, NOW + SKEW);
    snprintf(v, sizeof(v), "%lld", (long long)(NOW + SKEW + 1));
    expect_field_reason("ts", v, "future_timestamp");
    expect_field_ok("ts", "\"2026-03-02T10:05:00.000Z\"", &ev);
    expect_field_reason("ts", "\"2026-03-02T10:05:00.001Z\"", "future_timestamp");
    expect_field_reason("ts", "\"2026-03-02T11:05:00.001+01:00\"", "future_timestamp");
    expect_field_ok("ts", "\"2026-03-02T11:05:00+01:00\"", &ev);
    /* far future but inside 9999 is future, beyond 9999 is bad */
    expect_field_reason("ts", "\"9999-12-31T23:59:59.999Z\"", "future_timestamp");
    expect_field_reason("ts", "253402300799999", "future_timestamp");
}

/* ---- type --------------------------------------------------------------- */

static void test_type_mismatch(void **state)
{
    struct clv_event ev;

    (void)state;
    expect_reason(CLV_EV_PURCHASE,
                  "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0,\"amount\":1,"
                  "\"type\":\"login\"}",
                  "type_mismatch");
    expect_reason(CLV_EV_LOGIN,
                  "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0,\"type\":\"visit\"}",
                  "type_mismatch");
    expect_reason(CLV_EV_VISIT,
                  "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0,\"type\":\"Visit\"}",
                  "type_mismatch");
    expect_reason(CLV_EV_VISIT, "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0,\"type\":\"\"}",
                  "type_mismatch");
    expect_reason(CLV_EV_VISIT,
                  "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0,\"type\":\"visits\"}",
                  "type_mismatch");
    expect_reason(CLV_EV_VISIT,
                  "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0,\"type\":\"visit\\u0000\"}",
                  "type_mismatch");
    expect_ok(CLV_EV_VISIT,
              "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0,\"type\":\"visit\"}", &ev);
    expect_ok(CLV_EV_LOGIN,
              "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0,\"type\":\"l\\u006fgin\"}", &ev);
}

/* ---- amount ------------------------------------------------------------- */

static void test_amount_values(void **state)
{
    struct clv_event ev;
    char *longnum;

    (void)state;
    expect_field_reason("amount", "-0.01", "negative_amount");
    expect_field_reason("amount", "-1e300", "negative_amount");
    expect_field_reason("amount", "1e999", "bad_amount");
    expect_field_reason("amount", "-1e999", "bad_amount");
    expect_field_reason("amount", "123456789e400", "bad_amount");
    expect_field_ok("amount", "-0", &ev);
    assert_true(ev.amount == 0.0 && !signbit(ev.amount));
    expect_field_ok("amount", "-0.0e5", &ev);
    assert_true(!signbit(ev.amount));
    expect_field_ok("amount", "1e-999", &ev); /* underflow to 0 is a fine amount */
    assert_true(ev.amount >= 0.0 && ev.amount < 1e-300);
    expect_field_ok("amount", "10", &ev);
    assert_true(ev.amount == 10.0);
    expect_field_ok("amount", "1.5E2", &ev);
    assert_true(ev.amount == 150.0);
    expect_field_ok("amount", "1.7976931348623157e308", &ev);
    assert_true(isfinite(ev.amount));
    expect_field_ok("amount", "99999999999999999999999", &ev); /* big integer: a double */
    assert_true(ev.amount == 1e23);

    /* number text: 511 characters converts, 512 is refused */
    longnum = malloc(600);
    assert_non_null(longnum);
    strcpy(longnum, "1.");
    memset(longnum + 2, '0', 509);
    longnum[511] = '\0';
    expect_field_ok("amount", longnum, &ev);
    assert_true(ev.amount == 1.0);
    strcat(longnum, "0");
    expect_field_reason("amount", longnum, "bad_amount");
    free(longnum);
}

static void test_amount_ignores_locale(void **state)
{
    struct clv_event ev;
    const char *names[] = {"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "fr_FR.utf8"};
    int switched = 0;

    (void)state;
    for (size_t i = 0; i < CLV_ARRAY_LEN(names) && !switched; i++)
        switched = setlocale(LC_NUMERIC, names[i]) != NULL;
    if (!switched)
        skip(); /* no comma-decimal locale installed */
    expect_field_ok("amount", "12.5", &ev);
    setlocale(LC_NUMERIC, "C");
    assert_true(ev.amount == 12.5);
}

/* ---- channel ------------------------------------------------------------ */

static void test_channel(void **state)
{
    struct clv_event ev;
    char lit[200];

    (void)state;
    /* exactly 64 bytes kept */
    snprintf(lit, sizeof(lit),
             "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0,\"channel\":\"%.64s\"}",
             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    expect_ok(CLV_EV_LOGIN, lit, &ev);
    assert_int_equal(strlen(ev.channel), 64);
    /* 63 ASCII + U+00E9 (2 bytes): cut before the character, not inside it */
    snprintf(lit, sizeof(lit),
             "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0,\"channel\":\"%.63s\xc3\xa9zz\"}",
             "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    expect_ok(CLV_EV_LOGIN, lit, &ev);
    assert_int_equal(strlen(ev.channel), 63);
    /* 62 ASCII + U+00E9: ends exactly at 64 */
    snprintf(lit, sizeof(lit),
             "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0,\"channel\":\"%.62s\xc3\xa9zz\"}",
             "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    expect_ok(CLV_EV_LOGIN, lit, &ev);
    assert_int_equal(strlen(ev.channel), 64);
    assert_memory_equal(ev.channel + 62, "\xc3\xa9", 2);
    /* 61 ASCII + U+1F600 (4 bytes) does not fit: 61 kept */
    snprintf(
        lit, sizeof(lit),
        "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0,\"channel\":\"%.61s\\ud83d\\ude00\"}",
        "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    expect_ok(CLV_EV_LOGIN, lit, &ev);
    assert_int_equal(strlen(ev.channel), 61);
    /* not a string, or not printable: ignored, not an error */
    expect_ok(CLV_EV_LOGIN, "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0,\"channel\":42}",
              &ev);
    assert_string_equal(ev.channel, "");
    expect_ok(CLV_EV_LOGIN,
              "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0,\"channel\":{\"a\":[1]}}", &ev);
    assert_string_equal(ev.channel, "");
    expect_ok(CLV_EV_LOGIN,
              "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0,\"channel\":\"a\\u0007\"}", &ev);
    assert_string_equal(ev.channel, "");
    expect_ok(CLV_EV_LOGIN, "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":0,\"channel\":\"\"}",
              &ev);
    assert_string_equal(ev.channel, "");
}

/* ---- parser reuse and API ----------------------------------------------- */

static void test_parser_reuse_after_errors(void **state)
{
    static const char *const bad[] = {
        "{", "{} {}", "[1", "123", "\"x\"", "}", "{\"a\":tru", "{\"event_id\":\"e\"", "", "nul"};
    const char *good = "{\"event_id\":\"e\",\"customer_id\":\"c\",\"ts\":1772445600000}";
    struct event_parser *p = event_parser_create(NULL, 0);
    struct clv_event ev;
    char reason[64];

    (void)state;
    assert_non_null(p);
    for (size_t i = 0; i < CLV_ARRAY_LEN(bad); i++) {
        assert_int_equal(event_parser_parse(p, bad[i], strlen(bad[i]), CLV_EV_VISIT, &LIM, NOW, &ev,
                                            reason, sizeof(reason)),
                         -1);
        reason[0] = '\0';
        if (event_parser_parse(p, good, strlen(good), CLV_EV_VISIT, &LIM, NOW, &ev, reason,
                               sizeof(reason)) != 0)
            fail_msg("good message rejected (%s) after \"%s\"", reason, bad[i]);
        assert_int_equal(ev.ts, NOW);
    }
    event_parser_free(p);
    event_parser_free(NULL);
}

static void test_reason_buffer_truncation(void **state)
{
    struct clv_event ev;
    char small[8];
    const char *msg = "{\"event_id\":\"e\",\"ts\":0}";

    (void)state;
    memset(small, 'x', sizeof(small));
    assert_int_equal(
        event_parse(msg, strlen(msg), CLV_EV_LOGIN, &LIM, NOW, &ev, small, sizeof(small)), -1);
    assert_string_equal(small, "missing");
}

static void test_event_type_names(void **state)
{
    (void)state;
    assert_string_equal(event_type_name(CLV_EV_PURCHASE), "purchase");
    assert_string_equal(event_type_name(CLV_EV_LOGIN), "login");
    assert_string_equal(event_type_name(CLV_EV_VISIT), "visit");
    assert_string_equal(event_type_name((enum clv_event_type)7), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_purchase_both_ts_forms),
        cmocka_unit_test(test_valid_login_and_visit),
        cmocka_unit_test(test_escapes_decoded),
        cmocka_unit_test(test_unknown_fields_ignored),
        cmocka_unit_test(test_too_large_boundary),
        cmocka_unit_test(test_invalid_json),
        cmocka_unit_test(test_invalid_json_embedded_nul),
        cmocka_unit_test(test_duplicate_keys_rejected),
        cmocka_unit_test(test_not_object),
        cmocka_unit_test(test_missing_fields),
        cmocka_unit_test(test_bad_types),
        cmocka_unit_test(test_reason_order),
        cmocka_unit_test(test_event_id_limits),
        cmocka_unit_test(test_customer_id_limits),
        cmocka_unit_test(test_customer_id_controls),
        cmocka_unit_test(test_bad_timestamp),
        cmocka_unit_test(test_future_skew_boundary),
        cmocka_unit_test(test_type_mismatch),
        cmocka_unit_test(test_amount_values),
        cmocka_unit_test(test_amount_ignores_locale),
        cmocka_unit_test(test_channel),
        cmocka_unit_test(test_parser_reuse_after_errors),
        cmocka_unit_test(test_reason_buffer_truncation),
        cmocka_unit_test(test_event_type_names),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
